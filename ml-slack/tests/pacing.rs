//! Pacing of `chat.postMessage` as Slack measures it: per channel, at ARRIVAL. `SlackSink`
//! in ml-core's `Pipeline` with `GcraLimiter` (`slack:` 1/s, burst 1) against the Slack
//! emulator at its strictest (one accepted post per channel per second, no burst), with
//! responses and requests held by the fault layer. Paused tokio time throughout.

mod common;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use ml_core::clock::TokioClock;
use ml_core::limiter::{GcraLimiter, Quota};
use ml_core::memory::{MemorySource, SourceTable};
use ml_core::record::EntityKind;
use ml_core::routing::{Condition, MatchMode, Router, Rule};
use ml_core::{Pipeline, Schedule, Stream};
use ml_sandbox::fault::{Fault, FaultRule};
use ml_sandbox::slack::{Channel, PostArrival, SlackEmulator};
use ml_slack::SlackSink;

use common::{drain, invoice};

const INTERVAL: Duration = Duration::from_secs(1);

/// The scopes of a bot that may post and read history but not list channels.
const NO_CHANNELS_READ: &str = "chat:write,channels:history,groups:history";

/// Routes cost center `CC-nn` to `routes[nn]` (each a list of `slack:<address>`).
fn router(routes: &[&[&str]]) -> Router {
    Router::new(
        MatchMode::AllMatch,
        routes
            .iter()
            .enumerate()
            .map(|(c, to)| Rule {
                name: format!("cc{c:02}"),
                when: vec![Condition::CostCenter(vec![format!("CC-{c:02}")])],
                to: to.iter().map(|d| format!("slack:{d}")).collect(),
            })
            .collect(),
    )
    .expect("router")
}

fn pipeline(sink: SlackSink, table: &SourceTable, routes: &[&[&str]]) -> Pipeline {
    pipeline_with(
        sink,
        table,
        routes,
        Quota::with_period(INTERVAL).expect("quota"),
    )
}

fn pipeline_with(
    sink: SlackSink,
    table: &SourceTable,
    routes: &[&[&str]],
    quota: Quota,
) -> Pipeline {
    let source = MemorySource::new("invoices", EntityKind::SupplierInvoice, table.clone());
    Pipeline::builder()
        .store(common::store())
        .stream(Stream::new(
            "invoices",
            Arc::new(source),
            Schedule::every(Duration::from_secs(3600)).expect("schedule"),
        ))
        .router(router(routes))
        .sink("slack", Arc::new(sink))
        .limiter(Arc::new(
            GcraLimiter::builder().prefix("slack:", quota).build(),
        ))
        .clock(Arc::new(TokioClock::default()))
        .max_in_flight(8)
        .build()
        .expect("pipeline")
}

/// Adds `n` invoices for cost center `CC-cc`, modified after everything already there.
fn add(table: &SourceTable, cc: usize, from: i64, n: i64) {
    for i in from..from + n {
        let mut r = invoice(&format!("cc{cc:02}-{i:03}"), "Validated", i);
        r.fields.cost_center = Some(format!("CC-{cc:02}"));
        table.upsert(r);
    }
}

/// Runs one pass and then drains retries.
async fn deliver(p: &Pipeline) {
    p.run_once().await.expect("run");
    drain(p, 60).await.expect("drain");
}

fn accepted(arrivals: &[PostArrival]) -> Vec<Timestamp> {
    arrivals
        .iter()
        .filter(|a| a.accepted)
        .map(|a| a.at)
        .collect()
}

/// Every pair of consecutive arrivals is at least `min` apart.
fn assert_gaps(what: &str, at: &[Timestamp], min: Duration) {
    for pair in at.windows(2) {
        let gap = ml_core::clock::until(pair[0], pair[1]);
        assert!(
            gap >= min,
            "{what}: arrivals {} and {} are {gap:?} apart, less than {min:?}; all: {at:?}",
            pair[0],
            pair[1]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn first_posts_to_a_new_name_are_paced_without_channels_read() {
    let slack = SlackEmulator::start().await.expect("emulator");
    let id = slack.add_channel(Channel::public("finance"));
    let token = slack.add_bot_token_with_scopes(NO_CHANNELS_READ);
    let sink = common::builder(&slack)
        .with_bot_token(token)
        .build()
        .expect("sink");
    // The bot cannot list channels: the name is learned from the first reply only.
    let refused = sink
        .resolve_channel("#finance")
        .await
        .expect_err("no channels:read");
    assert_eq!(refused.code(), Some("missing_scope"));

    let table = SourceTable::default();
    add(&table, 0, 0, 3);
    let p = pipeline(sink, &table, &[&["#finance"]]);
    deliver(&p).await;

    assert_eq!(slack.messages(&id).len(), 3);
    let arrivals = slack.post_arrivals_in(&id);
    assert_eq!(
        slack.rate_limited_count(),
        0,
        "no 429 at the emulator: {arrivals:?}"
    );
    assert_eq!(accepted(&arrivals).len(), 3, "{arrivals:?}");
    assert_gaps("#finance", &accepted(&arrivals), INTERVAL);
}

#[tokio::test(start_paused = true)]
async fn a_held_response_paces_the_next_post_from_the_answer() {
    const HELD: Duration = Duration::from_secs(3);
    let slack = SlackEmulator::start().await.expect("emulator");
    let id = slack.add_channel(Channel::public("ap"));
    slack.faults().push(FaultRule::on(
        "chat.postMessage",
        Fault::AppliedThenDelayed(HELD),
    ));
    let table = SourceTable::default();
    add(&table, 0, 0, 2);
    let p = pipeline(common::sink(&slack), &table, &[&[id.as_str()]]);
    deliver(&p).await;

    let arrivals = slack.post_arrivals_in(&id);
    assert_eq!(slack.rate_limited_count(), 0, "{arrivals:?}");
    let at = accepted(&arrivals);
    assert_eq!(at.len(), 2, "{arrivals:?}");
    // The first answer left the emulator HELD after the first arrival; the next post may
    // arrive one interval after that answer, not one interval after the first start.
    let answered = ml_core::clock::add(at[0], HELD);
    let gap = ml_core::clock::until(answered, at[1]);
    assert!(
        at[1] >= ml_core::clock::add(answered, INTERVAL),
        "the second post arrived {gap:?} after the first answer; arrivals: {at:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_held_in_the_network_does_not_make_the_next_collide() {
    const HELD: Duration = Duration::from_secs(3);
    let slack = SlackEmulator::start().await.expect("emulator");
    let id = slack.add_channel(Channel::public("ap"));
    // The first post reaches Slack 3 s after it started; its answer comes back at once.
    slack
        .faults()
        .push(FaultRule::on("chat.postMessage", Fault::Latency(HELD)));
    let table = SourceTable::default();
    add(&table, 0, 0, 3);
    let p = pipeline(common::sink(&slack), &table, &[&[id.as_str()]]);
    deliver(&p).await;

    let arrivals = slack.post_arrivals_in(&id);
    assert_eq!(slack.rate_limited_count(), 0, "{arrivals:?}");
    assert_eq!(accepted(&arrivals).len(), 3, "{arrivals:?}");
    assert_gaps("#ap", &accepted(&arrivals), INTERVAL);
}

#[tokio::test(start_paused = true)]
async fn a_name_and_its_id_share_one_budget_once_known() {
    let slack = SlackEmulator::start().await.expect("emulator");
    let id = slack.add_channel(Channel::public("finance"));
    let token = slack.add_bot_token_with_scopes(NO_CHANNELS_READ);
    let sink = common::builder(&slack)
        .with_bot_token(token)
        .build()
        .expect("sink");
    let table = SourceTable::default();
    // CC-00 goes to the name only; CC-01 to the name AND the id: two destinations, one
    // channel.
    add(&table, 0, 0, 1);
    let p = pipeline(sink, &table, &[&["#finance"], &["#finance", id.as_str()]]);
    deliver(&p).await;
    add(&table, 1, 1, 3);
    deliver(&p).await;

    assert_eq!(slack.messages(&id).len(), 1 + 3 * 2);
    let arrivals = slack.post_arrivals_in(&id);
    assert_eq!(slack.rate_limited_count(), 0, "{arrivals:?}");
    assert_eq!(accepted(&arrivals).len(), 7, "{arrivals:?}");
    assert_gaps("#finance and its id", &accepted(&arrivals), INTERVAL);
}

#[tokio::test(start_paused = true)]
async fn a_name_and_its_id_in_flight_at_once_wait_for_each_other() {
    let slack = SlackEmulator::start().await.expect("emulator");
    let id = slack.add_channel(Channel::public("finance"));
    let sink = common::sink(&slack);
    let table = SourceTable::default();
    add(&table, 0, 0, 1);
    // One post in flight per channel: the next waits for the answer, whichever
    // destination (name or id) it comes from.
    let quota = Quota::with_period(INTERVAL)
        .and_then(|q| q.in_flight(1, Duration::from_secs(60)))
        .expect("quota");
    let p = pipeline_with(
        sink,
        &table,
        &[&["#finance"], &["#finance", id.as_str()]],
        quota,
    );
    deliver(&p).await;
    // Both destinations now post at once; the first post of the pair reaches Slack one
    // interval after it started, right when the other would be permitted by rate alone.
    slack
        .faults()
        .push(FaultRule::on("chat.postMessage", Fault::Latency(INTERVAL)));
    add(&table, 1, 1, 2);
    deliver(&p).await;

    assert_eq!(slack.messages(&id).len(), 1 + 2 * 2);
    let arrivals = slack.post_arrivals_in(&id);
    assert_eq!(slack.rate_limited_count(), 0, "{arrivals:?}");
    assert_gaps("#finance and its id", &accepted(&arrivals), INTERVAL);
}

#[tokio::test(start_paused = true)]
async fn the_emulator_measures_at_arrival_and_holds_answers_after_applying() {
    let slack = SlackEmulator::builder()
        .post_message_burst(2)
        .start()
        .await
        .expect("emulator");
    let id = slack.add_channel(Channel::public("ops"));
    let sink = common::sink(&slack);
    let rec = invoice("1", "New", 0);
    let send = |n: i64| {
        let m = common::outbound(&sink, n, &id, &rec);
        let s = &sink;
        async move { ml_core::sink::Sink::send(s, &m).await }
    };
    // Burst 2: two at once pass, the third is refused.
    send(1).await.expect("first");
    send(2).await.expect("second, within the burst");
    assert!(send(3).await.is_err(), "third within the interval");
    // An answer held 2 s: the arrival is recorded when the request came in, not when the
    // answer left.
    tokio::time::sleep(Duration::from_secs(5)).await;
    slack.faults().push(FaultRule::on(
        "chat.postMessage",
        Fault::AppliedThenDelayed(Duration::from_secs(2)),
    ));
    let clock_start = slack.clock().now();
    send(4).await.expect("held, then answered");
    let arrivals = slack.post_arrivals_in(&id);
    let last = arrivals.last().expect("arrival");
    assert!(last.accepted);
    assert!(
        ml_core::clock::until(clock_start, last.at) < Duration::from_millis(100),
        "arrival {} is at the request, not at the answer (sent at {clock_start})",
        last.at
    );
    assert!(ml_core::clock::until(clock_start, slack.clock().now()) >= Duration::from_secs(2));
    let refused: Vec<bool> = arrivals.iter().map(|a| a.accepted).collect();
    assert_eq!(refused, [true, true, false, true]);
}
