//! End to end on the sandbox: Oracle emulator -> OracleFusionSource -> Pipeline (routing,
//! memory journal, GcraLimiter `slack:` 1/s burst 1) -> SlackSink -> Slack emulator (its own
//! 1 msg/s/channel limit). Runs on tokio's paused clock: the limiter and both emulators
//! follow virtual time; loopback I/O is real.

mod common;
#[path = "../../ml-oracle-fusion/tests/common/mod.rs"]
mod oracle;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::slack_pipeline;
use jiff::SignedDuration;
use ml_core::EntityKind;
use ml_core::clock::TokioClock;
use ml_core::routing::{Condition, MatchMode, Router, Rule};
use ml_sandbox::fault::{Fault, FaultRule};
use ml_sandbox::oracle::{OracleEmulator, invoice_json};
use ml_sandbox::slack::{Channel, SlackEmulator, StoredMessage};
use ml_slack::SlackBuilder;
use oracle::{builder, t0};

const SUPPLIERS: [&str; 5] = [
    "Müller GmbH",
    "株式会社テスト",
    "Ørsted A/S",
    "Acme 🚀 Supplies",
    "Plain Supplier Inc",
];

fn router() -> Router {
    // Spread over one channel per supplier so that the 10,000 posts run five at a time.
    Router::new(
        MatchMode::AllMatch,
        SUPPLIERS
            .iter()
            .enumerate()
            .map(|(i, s)| Rule {
                name: format!("procurement-{i}"),
                when: vec![
                    Condition::Kind(vec![EntityKind::SupplierInvoice]),
                    Condition::Supplier(vec![(*s).to_owned()]),
                ],
                to: vec![format!("slack:#procurement-{i}")],
            })
            .collect(),
    )
    .expect("router")
}

fn keys(messages: &[StoredMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            m.metadata.as_ref().expect("metadata")["event_payload"]["record_key"]
                .as_str()
                .expect("key")
                .to_owned()
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_invoices_with_traps_exactly_once_in_order_without_a_429() {
    const N: i64 = 10_000;
    let oracle = OracleEmulator::builder()
        .token_lifetime(Duration::from_secs(600))
        .start()
        .await
        .expect("oracle");
    let bad = oracle.load_invoice_traps(N, t0());
    let slack = SlackEmulator::start().await.expect("slack"); // 1 msg/s/channel
    let mut channels = Vec::new();
    for i in 0..SUPPLIERS.len() {
        channels.push(slack.add_channel(Channel::public(format!("procurement-{i}"))));
    }
    let sink = SlackBuilder::new()
        .with_bot_token(slack.bot_token())
        .with_api_url(slack.base_url())
        .build()
        .expect("sink");
    for (i, id) in channels.iter().enumerate() {
        sink.remember_channel(
            &format!("#procurement-{i}"),
            &ml_slack::ids::ChannelId(id.clone()),
        );
    }
    let clock = Arc::new(TokioClock::default());
    let source = builder(&oracle)
        .with_clock(clock.clone())
        .build()
        .expect("source");
    let p = slack_pipeline(
        source,
        router(),
        Arc::new(sink),
        clock,
        Some(SUPPLIERS.len()),
    );

    // Faults mid-backfill: a 5xx storm and a token expiry.
    oracle.faults().push(
        FaultRule::on("invoices", Fault::Status(503))
            .after(5)
            .times(3),
    );
    oracle
        .faults()
        .push(FaultRule::on("invoices", Fault::Status(502)).after(9));
    oracle.set_token_lifetime(Duration::from_secs(1)); // later tokens die fast
    let summary = p.run_once().await.expect("run");
    assert_eq!(summary.rejected, bad.len() as u64, "{summary}");
    let delivered = (N as u64) - bad.len() as u64;
    assert_eq!(summary.deliveries.delivered, delivered, "{summary}");
    assert_eq!(slack.rate_limited_count(), 0, "no 429 from Slack");
    assert_eq!(
        oracle.faults().status_count("invoices", 429),
        0,
        "no 429 from Oracle"
    );
    // Each exactly once, in source order per channel.
    let mut all = HashSet::new();
    for id in &channels {
        let k = keys(&slack.messages(id));
        let nums: Vec<i64> = k.iter().map(|s| s.parse().expect("n")).collect();
        // Source order is (LastUpdateDate, InvoiceId); the trap data's timestamps grow with
        // the id, so per channel the ids must ascend.
        assert!(nums.windows(2).all(|w| w[0] < w[1]), "order in {id}");
        for x in k {
            assert!(all.insert(x), "duplicate post");
        }
    }
    assert_eq!(all.len() as u64, delivered);

    // Mid-run changes arrive in a later cycle: a late commit, an update, a new invoice.
    let wm = t0() + SignedDuration::from_secs((N - 1200) / 10);
    oracle.upsert_raw(
        "invoices",
        &invoice_json(
            N + 1,
            wm - SignedDuration::from_secs(100),
            "-75.00",
            SUPPLIERS[0],
        ),
    );
    oracle.upsert_raw(
        "invoices",
        &invoice_json(
            N + 2,
            wm + SignedDuration::from_secs(60),
            "12.00",
            SUPPLIERS[1],
        ),
    );
    assert!(oracle.touch(
        "invoices",
        "5",
        wm + SignedDuration::from_secs(30),
        Some(("InvoiceAmount", serde_json::json!(1)))
    ));
    let before = slack.all_messages().len();
    let summary = p.run_once().await.expect("second run");
    assert_eq!(summary.deliveries.delivered, 3, "{summary}");
    assert_eq!(slack.all_messages().len(), before + 3);
    assert_eq!(slack.rate_limited_count(), 0);
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for m in slack.all_messages() {
        *per_key
            .entry(keys(std::slice::from_ref(&m))[0].clone())
            .or_default() += 1;
    }
    assert_eq!(per_key.get("5"), Some(&2), "the update is a new version");
    assert_eq!(per_key.get(&(N + 1).to_string()), Some(&1));
    assert!(
        oracle.tokens_issued() >= 2,
        "tokens expired and were refreshed"
    );
}
