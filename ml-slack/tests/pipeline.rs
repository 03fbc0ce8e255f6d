//! The proof: `SlackSink` inside ml-core's `Pipeline`, with `GcraLimiter` (`slack:` 1/s,
//! burst 1), the memory journal and a memory source, against the Slack emulator with its
//! own 1 msg/s/channel limit and injected faults. Runs on tokio's paused clock (the
//! pipeline, the limiter and the emulator all use it), so no test waits on the wall clock.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ml_core::audit::{AuditQuery as _, DeliveryFilter, DeliveryStatus};
use ml_core::auth::{AccessToken, TokenCache, TokenProvider};
use ml_core::clock::TokioClock;
use ml_core::http::ClientOptions;
use ml_core::limiter::{GcraLimiter, Quota};
use ml_core::memory::{MemorySource, SourceTable};
use ml_core::record::{EntityKind, Record};
use ml_core::retry::RetryPolicy;
use ml_core::routing::{Condition, MatchMode, Router, Rule};
use ml_core::{Pipeline, Schedule, Stream};
use ml_sandbox::fault::{Fault, FaultRule};
use ml_sandbox::slack::{Channel, SlackEmulator, StoredMessage};
use ml_slack::SlackSink;

use common::{builder, drain, invoice, with_status};

/// One record per (channel, n), in source order: record i is modified at second i.
fn records(table: &SourceTable, channels: usize, per_channel: usize) {
    let mut i = 0i64;
    for n in 0..per_channel {
        for c in 0..channels {
            let mut r = invoice(&format!("c{c:02}-{n:03}"), "Validated", i);
            r.fields.cost_center = Some(format!("CC-{c:02}"));
            table.upsert(r);
            i += 1;
        }
    }
}

/// Routes cost center `CC-nn` to `destinations[nn]`.
fn router(destinations: &[String]) -> Router {
    Router::new(
        MatchMode::AllMatch,
        destinations
            .iter()
            .enumerate()
            .map(|(c, d)| Rule {
                name: format!("cc{c:02}"),
                when: vec![Condition::CostCenter(vec![format!("CC-{c:02}")])],
                to: vec![format!("slack:{d}")],
            })
            .collect(),
    )
    .expect("router")
}

fn slack_limiter() -> Arc<GcraLimiter> {
    Arc::new(
        GcraLimiter::builder()
            .prefix(
                "slack:",
                Quota::per_second(1).expect("q").burst(1).expect("b"),
            )
            .build(),
    )
}

fn pipeline(
    sink: SlackSink,
    table: &SourceTable,
    destinations: &[String],
    retry: RetryPolicy,
) -> Pipeline {
    let source = MemorySource::new("invoices", EntityKind::SupplierInvoice, table.clone())
        .with_page_size(200);
    Pipeline::builder()
        .store(common::store())
        .stream(Stream::new(
            "invoices",
            Arc::new(source),
            Schedule::every(Duration::from_secs(3600)).expect("schedule"),
        ))
        .router(router(destinations))
        .sink("slack", Arc::new(sink))
        .limiter(slack_limiter())
        .clock(Arc::new(TokioClock::default()))
        .max_in_flight(destinations.len().max(1))
        .retry(retry)
        .build()
        .expect("pipeline")
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

fn expected_keys(c: usize, per_channel: usize) -> Vec<String> {
    (0..per_channel)
        .map(|n| format!("c{c:02}-{n:03}"))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn twenty_channels_fifty_messages_in_order_without_a_429() {
    const CHANNELS: usize = 20;
    const PER_CHANNEL: usize = 50;
    let slack = SlackEmulator::start().await.expect("emulator"); // 1 msg/s/channel
    let sink = common::sink(&slack);
    let mut destinations = Vec::new();
    for c in 0..CHANNELS {
        let id = slack.add_channel(Channel::public(format!("ch{c:02}")));
        if c % 2 == 0 {
            destinations.push(id);
        } else {
            // By name; the host tells the sink the id up front (or calls resolve_channel),
            // so the limiter key is the id from the first message on.
            sink.remember_channel(&format!("#ch{c:02}"), &ml_slack::ids::ChannelId(id));
            destinations.push(format!("#ch{c:02}"));
        }
    }
    let table = SourceTable::default();
    records(&table, CHANNELS, PER_CHANNEL);
    let p = pipeline(sink, &table, &destinations, RetryPolicy::default());
    let started = tokio::time::Instant::now();
    let summary = p.run_once().await.expect("run");
    assert_eq!(
        summary.deliveries.delivered,
        (CHANNELS * PER_CHANNEL) as u64,
        "{summary}"
    );
    assert_eq!(slack.rate_limited_count(), 0, "the limiter kept under 1/s");
    assert_eq!(
        slack.api_calls("chat.postMessage"),
        (CHANNELS * PER_CHANNEL) as u64,
        "no retries at all"
    );
    for c in 0..CHANNELS {
        let id = slack.channel_id(&format!("ch{c:02}")).expect("id");
        assert_eq!(
            keys(&slack.messages(&id)),
            expected_keys(c, PER_CHANNEL),
            "ch{c:02}"
        );
    }
    // 50 messages per channel at 1/s with burst 1: about 49 s of (virtual) time.
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(49), "{took:?}");
}

/// Messages of a channel: exactly the expected keys, in order, each once.
fn assert_exactly(slack: &SlackEmulator, channel: &str, expected: &[String]) {
    let got = keys(&slack.messages(channel));
    let unique: HashSet<_> = got.iter().collect();
    assert_eq!(
        unique.len(),
        got.len(),
        "a duplicate post in {channel}: {got:?}"
    );
    assert_eq!(got, expected, "{channel}");
}

#[tokio::test(start_paused = true)]
async fn a_429_storm_and_5xx_faults_lose_nothing() {
    const CHANNELS: usize = 3;
    const PER_CHANNEL: usize = 20;
    let slack = SlackEmulator::start().await.expect("emulator");
    let ids: Vec<String> = (0..CHANNELS)
        .map(|c| slack.add_channel(Channel::public(format!("f{c}"))))
        .collect();
    let f = slack.faults();
    f.push(
        FaultRule::on(
            "chat.postMessage",
            Fault::TooManyRequests { retry_after: 2 },
        )
        .times(15),
    );
    f.push(FaultRule::on("chat.postMessage", Fault::Status(500)).times(4));
    f.push(FaultRule::on("chat.postMessage", Fault::Status(503)).times(4));
    f.push(
        FaultRule::on(
            "chat.postMessage",
            Fault::StatusWithBody {
                status: 502,
                content_type: "text/html".into(),
                body: "<html>502 Bad Gateway</html>".into(),
            },
        )
        .times(3),
    );
    f.push(FaultRule::on("chat.postMessage", Fault::DropBeforeResponse).times(3));
    f.push(
        FaultRule::on("chat.postMessage", Fault::Status(500))
            .with_probability(0.1)
            .always(),
    );
    let table = SourceTable::default();
    records(&table, CHANNELS, PER_CHANNEL);
    let p = pipeline(
        common::sink(&slack),
        &table,
        &ids,
        RetryPolicy::default().with_max_attempts(30),
    );
    p.run_once().await.expect("run");
    drain(&p, 400).await.expect("drain");
    let store = p.store();
    assert_eq!(
        with_status(store.as_ref(), DeliveryStatus::Delivered)
            .await
            .len(),
        CHANNELS * PER_CHANNEL
    );
    for (c, id) in ids.iter().enumerate() {
        assert_exactly(&slack, id, &expected_keys(c, PER_CHANNEL));
    }
    assert!(f.status_count("chat.postMessage", 429) >= 15);
}

#[tokio::test(start_paused = true)]
async fn applied_then_dropped_is_reconciled_not_posted_twice() {
    const PER_CHANNEL: usize = 10;
    // The emulator's own rate limit is off here: this test is about lost answers.
    let slack = SlackEmulator::builder()
        .post_message_interval(None)
        .start()
        .await
        .expect("emulator");
    let id = slack.add_channel(Channel::public("ap"));
    let f = slack.faults();
    f.push(
        FaultRule::on("chat.postMessage", Fault::AppliedThenDropped)
            .after(1)
            .times(2),
    );
    f.push(
        FaultRule::on(
            "chat.postMessage",
            Fault::AppliedThenDelayed(Duration::from_secs(60)),
        )
        .after(5),
    );
    let sink = builder(&slack)
        .with_client_options(ClientOptions::default().with_timeout(Duration::from_secs(5)))
        .build()
        .expect("sink");
    let table = SourceTable::default();
    records(&table, 1, PER_CHANNEL);
    // Deliver by name: the dropped answers never told the sink the channel's id, so
    // reconcile must find the channel by the id it learned from earlier answers.
    let p = pipeline(sink, &table, &["#ap".to_owned()], RetryPolicy::default());
    p.run_once().await.expect("run");
    drain(&p, 100).await.expect("drain");
    assert_exactly(&slack, &id, &expected_keys(0, PER_CHANNEL));
    // Every post that got past the rate limit was applied exactly once: the three whose
    // answers were lost were reconciled, never sent again.
    assert_eq!(
        slack.api_calls("chat.postMessage"),
        PER_CHANNEL as u64,
        "no second post for the in-doubt ones ({:?})",
        slack.faults().stats()
    );
    let store = p.store();
    let delivered = with_status(store.as_ref(), DeliveryStatus::Delivered).await;
    assert_eq!(delivered.len(), PER_CHANNEL);
    let mut reconciled = 0;
    for d in &delivered {
        let attempts = store.attempts(d.id).await.expect("attempts");
        if attempts
            .iter()
            .any(|a| a.outcome.as_deref() == Some("reconciled"))
        {
            reconciled += 1;
            // The journal holds the ts of the message that was applied.
            let m = slack
                .messages(&id)
                .into_iter()
                .find(|m| m.ts == *d.remote_id.as_ref().expect("remote id"))
                .expect("the reconciled message");
            assert_eq!(
                m.metadata.as_ref().expect("meta")["event_payload"]["delivery_id"],
                d.id.0
            );
        }
    }
    assert_eq!(reconciled, 3);
}

/// A token source the operator can fix at run time (a secrets manager).
#[derive(Debug)]
struct Swappable(Mutex<String>);

#[async_trait]
impl TokenProvider for Swappable {
    async fn fetch_token(&self) -> ml_core::Result<AccessToken> {
        let t = self.0.lock().expect("lock").clone();
        Ok(AccessToken::new(t, None))
    }
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_fail_then_replay_after_the_fix() {
    let slack = SlackEmulator::start().await.expect("emulator");
    let ok_id = slack.add_channel(Channel::public("ok"));
    let table = SourceTable::default();
    records(&table, 2, 3);

    // 1. channel_not_found: routed to a channel that does not exist yet.
    let destinations = vec![ok_id.clone(), "#missing".to_owned()];
    let p = pipeline(
        common::sink(&slack),
        &table,
        &destinations,
        RetryPolicy::default(),
    );
    p.run_once().await.expect("run");
    drain(&p, 20).await.expect("drain");
    let failed = with_status(p.store().as_ref(), DeliveryStatus::Failed).await;
    assert_eq!(failed.len(), 3);
    for d in &failed {
        let e = d.last_error.as_ref().expect("error");
        assert_eq!(
            (e.class.as_str(), e.code.as_deref()),
            ("permanent", Some("channel_not_found"))
        );
        assert_eq!(d.attempts, 1, "a permanent error is not retried");
    }
    // The fix: the channel is created (and the bot invited); replay.
    let missing = slack.add_channel(Channel::public("missing"));
    let n = p
        .replay_failed(&DeliveryFilter::status(DeliveryStatus::Failed))
        .await
        .expect("replay");
    assert_eq!(n, 3);
    drain(&p, 20).await.expect("drain");
    assert_exactly(&slack, &missing, &expected_keys(1, 3));
    assert_exactly(&slack, &ok_id, &expected_keys(0, 3));

    // 2. invalid_auth: a wrong token, fixed in the secret store, then replayed.
    let slack = SlackEmulator::start().await.expect("emulator");
    let id = slack.add_channel(Channel::public("ap"));
    let secret = Arc::new(Swappable(Mutex::new("xoxb-wrong-token".into())));
    let sink = builder(&slack)
        .with_token_cache(Arc::new(TokenCache::new(secret.clone())))
        .build()
        .expect("sink");
    let table = SourceTable::default();
    records(&table, 1, 4);
    let p = pipeline(
        sink,
        &table,
        std::slice::from_ref(&id),
        RetryPolicy::default(),
    );
    p.run_once().await.expect("run");
    drain(&p, 20).await.expect("drain");
    // A refused token fails no message ("stop, alert operator"): the channel's line is
    // held behind one retrying delivery, visibly, none burnt.
    assert!(
        with_status(p.store().as_ref(), DeliveryStatus::Failed)
            .await
            .is_empty()
    );
    let held = with_status(p.store().as_ref(), DeliveryStatus::Retrying).await;
    assert_eq!(held.len(), 1);
    let e = held[0].last_error.as_ref().expect("error");
    assert!(e.message.contains("invalid_auth"), "{}", e.message);
    assert!(!e.message.contains("xoxb-wrong-token"), "{}", e.message);
    assert_eq!(
        with_status(p.store().as_ref(), DeliveryStatus::Pending)
            .await
            .len(),
        3
    );
    // The token is fixed in the secret store: at the next check everything goes, once,
    // without a replay.
    *secret.0.lock().expect("lock") = slack.bot_token();
    tokio::time::advance(Duration::from_secs(16 * 60)).await;
    drain(&p, 20).await.expect("drain");
    assert_exactly(&slack, &id, &expected_keys(0, 4));
}

#[tokio::test(start_paused = true)]
async fn an_approved_invoice_replies_in_the_thread_of_its_first_post() {
    let slack = SlackEmulator::start().await.expect("emulator");
    let id = slack.add_channel(Channel::public("ap"));
    let table = SourceTable::default();
    let mut first: Record = invoice("4711", "Needs approval", 0);
    first.fields.cost_center = Some("CC-00".into());
    table.upsert(first.clone());
    let p = pipeline(
        common::sink(&slack),
        &table,
        std::slice::from_ref(&id),
        RetryPolicy::default(),
    );
    p.run_once().await.expect("run");
    let mut approved = first.clone();
    approved.fields.status = Some("Approved".into());
    approved.modified_at = first.modified_at + jiff::SignedDuration::from_secs(3600);
    table.upsert(approved);
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.run_once().await.expect("run");
    let messages = slack.messages(&id);
    assert_eq!(messages.len(), 2);
    assert!(messages[0].thread_ts.is_none());
    assert_eq!(
        messages[1].thread_ts.as_deref(),
        Some(messages[0].ts.as_str())
    );
    assert!(messages[1].text.contains("Approved"));
}

/// A replica takes over another's in-doubt post to a channel given by name, with a bot
/// that may not list channels (no `channels:read`): its sink cannot resolve the name, but
/// the journal holds the channel id an earlier message to it was given, so the post is
/// found in the channel's history instead of being posted twice.
#[tokio::test(start_paused = true)]
async fn a_taken_over_post_by_name_is_found_with_the_journal_s_channel_id() {
    const NO_CHANNELS_READ: &str = "chat:write,channels:history,groups:history";
    let slack = SlackEmulator::builder()
        .post_message_interval(None)
        .start()
        .await
        .expect("emulator");
    let id = slack.add_channel(Channel::public("ap"));
    // The second post is applied but its answer is lost.
    slack.faults().push(
        FaultRule::on("chat.postMessage", Fault::AppliedThenDropped)
            .after(1)
            .times(1),
    );
    let table = SourceTable::default();
    records(&table, 1, 2);
    let store = common::store();
    let replica = |table: &SourceTable| {
        let sink = builder(&slack)
            .with_bot_token(slack.add_bot_token_with_scopes(NO_CHANNELS_READ))
            .with_client_options(ClientOptions::default().with_timeout(Duration::from_secs(5)))
            .build()
            .expect("sink");
        let source = MemorySource::new("invoices", EntityKind::SupplierInvoice, table.clone());
        Pipeline::builder()
            .store(store.clone())
            .stream(Stream::new(
                "invoices",
                Arc::new(source),
                Schedule::every(Duration::from_secs(3600)).expect("schedule"),
            ))
            .router(router(&["#ap".to_owned()]))
            .sink("slack", Arc::new(sink))
            .clock(Arc::new(TokioClock::default()))
            .build()
            .expect("pipeline")
    };
    // The first replica posts the first message and loses the answer to the second; its
    // in-doubt retry is not due yet when it stops (a crash, as far as the journal knows).
    replica(&table).run_once().await.expect("run");
    let in_doubt = store
        .deliveries(&DeliveryFilter::default())
        .await
        .expect("deliveries");
    assert!(
        in_doubt.iter().any(|d| d.in_doubt),
        "the second post is in doubt: {in_doubt:?}"
    );
    // Another replica, with a sink that has never seen the channel, finishes the work.
    let other = replica(&table);
    drain(&other, 100).await.expect("drain");
    assert_eq!(slack.messages(&id).len(), 2, "posted once each");
    let delivered = with_status(store.as_ref(), DeliveryStatus::Delivered).await;
    assert_eq!(delivered.len(), 2);
    assert!(
        delivered.iter().all(|d| d.resent_after_doubt == 0),
        "{delivered:?}"
    );
}
