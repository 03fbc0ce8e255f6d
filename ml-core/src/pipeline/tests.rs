use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use super::*;
use crate::ErrorClass;
use crate::audit::{AuditQuery, AuditStoreExt, AuditWrite, Claimant, DeliveryStatus, OwnerId};
use crate::clock::TokioClock;
use crate::limiter::{GcraLimiter, Quota};
use crate::memory::{MemoryAuditStore, MemorySink, MemorySource, SinkFault, SourceTable};
use crate::money::Money;
use crate::record::{BusinessFields, EntityKind, Record};
use crate::routing::{Condition, MatchMode, Rule};

const START: &str = "2026-11-02T09:00:00Z";

fn start() -> Timestamp {
    START.parse().expect("ts")
}

pub(super) fn invoice(key: &str, secs: i64, amount: &str) -> Record {
    // Modified an hour before the rig's clock starts, `secs` apart.
    let modified = start() + jiff::SignedDuration::from_secs(secs - 3600);
    Record::new("Memory(erp)", EntityKind::SupplierInvoice, key, modified).with_fields(
        BusinessFields {
            document_number: Some(format!("INV-{key}")),
            supplier: Some("ACME".into()),
            amount: Some(Money::parse(amount, "USD").expect("money")),
            ..BusinessFields::default()
        },
    )
}

pub(super) fn router() -> Router {
    Router::new(
        MatchMode::AllMatch,
        vec![
            Rule {
                name: "all".into(),
                when: vec![Condition::Kind(vec![EntityKind::SupplierInvoice])],
                to: vec!["chat:#procurement".into()],
            },
            Rule {
                name: "large".into(),
                when: vec![Condition::AmountAtLeast(
                    Money::parse("10000", "USD").expect("m"),
                )],
                to: vec!["chat:#finance".into()],
            },
        ],
    )
    .expect("router")
}

pub(super) struct Rig {
    pub(super) table: SourceTable,
    pub(super) source: Arc<MemorySource>,
    pub(super) sink: MemorySink,
    pub(super) store: Arc<MemoryAuditStore>,
    pub(super) clock: Arc<TokioClock>,
}

impl Rig {
    pub(super) fn new(sink: MemorySink) -> Self {
        let clock = Arc::new(TokioClock::starting_at(start()));
        let table = SourceTable::default();
        let source = Arc::new(
            MemorySource::new("erp", EntityKind::SupplierInvoice, table.clone())
                .with_page_size(3)
                .with_clock(clock.clone()),
        );
        Self {
            table,
            source,
            sink,
            store: Arc::new(MemoryAuditStore::new()),
            clock,
        }
    }

    pub(super) fn builder(&self) -> PipelineBuilder {
        Pipeline::builder()
            .store(self.store.clone())
            .stream(Stream::new(
                "invoices",
                self.source.clone(),
                Schedule::every(Duration::from_secs(300)).expect("schedule"),
            ))
            .router(router())
            .sink("chat", Arc::new(self.sink.clone()))
            .clock(self.clock.clone())
            .retry(
                RetryPolicy::default()
                    .with_base_delay(Duration::from_secs(1))
                    .with_max_delay(Duration::from_secs(8))
                    .with_max_attempts(6),
            )
    }

    fn pipeline(&self) -> Pipeline {
        self.builder().build().expect("pipeline")
    }
}

pub(super) fn keys(sent: &[crate::memory::SentMessage]) -> Vec<String> {
    sent.iter().map(|m| m.record_key.clone()).collect()
}

#[tokio::test(start_paused = true)]
async fn delivers_routes_in_order_and_dedupes_reruns() {
    let rig = Rig::new(MemorySink::new("chat"));
    for (i, amount) in ["100", "25000", "5", "12000", "1", "2", "3"]
        .iter()
        .enumerate()
    {
        rig.table.upsert(invoice(&format!("{i}"), i as i64, amount));
    }
    let p = rig.pipeline();
    let s = p.run_once().await.expect("run");
    assert_eq!(
        (s.polled, s.journaled, s.deliveries.delivered),
        (7, 7, 9),
        "{s}"
    );
    let proc = rig.sink.sent_to(&Destination::new("chat", "#procurement"));
    assert_eq!(keys(&proc), ["0", "1", "2", "3", "4", "5", "6"]);
    let fin = rig.sink.sent_to(&Destination::new("chat", "#finance"));
    assert_eq!(keys(&fin), ["1", "3"]);
    // A second pass re-reads the overlap and adds nothing.
    let s = p.run_once().await.expect("run");
    assert_eq!((s.journaled, s.deliveries.attempts), (0, 0), "{s}");
    assert!(s.duplicates > 0);
    assert_eq!(rig.sink.sent().len(), 9);
}

#[tokio::test(start_paused = true)]
async fn bad_records_are_rejected_and_the_stream_goes_on() {
    let rig = Rig::new(MemorySink::new("chat"));
    rig.table.upsert(invoice("1", 1, "10"));
    rig.table.insert_malformed(
        "2",
        start(),
        serde_json::json!({"InvoiceId": 2, "InvoiceAmount": null}),
        "missing InvoiceAmount",
    );
    let mut no_key = invoice("3", 3, "10");
    no_key.system = String::new();
    rig.table.upsert(no_key);
    rig.table.upsert(invoice("4", 4, "10"));
    let p = rig.pipeline();
    let s = p.run_once().await.expect("run");
    assert_eq!((s.journaled, s.rejected), (2, 2), "{s}");
    assert_eq!(keys(&rig.sink.sent()), ["1", "4"]);
    let rejected = rig
        .store
        .rejected(Some("invoices"), 10)
        .await
        .expect("rejected");
    let reasons: Vec<&str> = rejected.iter().map(|r| r.item.reason.as_str()).collect();
    assert!(reasons.contains(&"missing InvoiceAmount"), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("names no source system")),
        "{reasons:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_permanent_source_error_leaves_one_note_for_the_operator() {
    let rig = Rig::new(MemorySink::new("chat"));
    let p = rig.pipeline();
    let notes = || async {
        rig.store
            .notes(&crate::audit::NoteFilter::default())
            .await
            .expect("notes")
    };
    rig.source.fail_next([Error::remote(
        "Memory(erp)",
        ErrorClass::RETRYABLE,
        "503 Service Unavailable",
    )]);
    p.poll_stream("invoices").await.expect("poll");
    assert!(notes().await.is_empty(), "a backoff is not a pause");
    tokio::time::advance(Duration::from_secs(3600)).await;
    let refused = || {
        Error::remote(
            "Memory(erp)",
            ErrorClass::Permanent,
            "401 Unauthorized: user or password refused",
        )
    };
    rig.source.fail_next([refused()]);
    let c = p.poll_stream("invoices").await.expect("poll");
    assert!(c.error.is_some());
    // The pause repeats on the slow cadence; the note is written once.
    tokio::time::advance(Duration::from_secs(3600)).await;
    rig.source.fail_next([refused()]);
    p.poll_stream("invoices").await.expect("poll");
    let n = notes().await;
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(n[0].kind, crate::audit::KIND_STREAM_PAUSED);
    assert_eq!(n[0].stream.as_deref(), Some("invoices"));
    assert!(
        n[0].message.contains("password refused"),
        "{}",
        n[0].message
    );
}

#[tokio::test(start_paused = true)]
async fn a_down_source_pauses_and_resumes_from_its_position() {
    let rig = Rig::new(MemorySink::new("chat"));
    for i in 0..6 {
        rig.table.upsert(invoice(&i.to_string(), i, "1"));
    }
    // The ERP answers a first cycle, then goes down.
    let p = rig.pipeline();
    let c = p.poll_stream("invoices").await.expect("poll");
    assert_eq!(c.journaled, 6);
    for i in 6..9 {
        rig.table.upsert(invoice(&i.to_string(), i, "1"));
    }
    rig.source.fail_next([Error::remote(
        "Memory(erp)",
        ErrorClass::RETRYABLE,
        "503 Service Unavailable",
    )]);
    let c = p.poll_stream("invoices").await.expect("poll");
    assert_eq!(
        c.error.as_deref(),
        Some("Memory(erp): 503 Service Unavailable")
    );
    let cycles = rig.store.cycles("invoices", 1).await.expect("cycles");
    assert!(
        cycles[0].error.is_some(),
        "the failure is journaled with its cycle"
    );
    // While paused, polls are skipped, not hammered at the ERP.
    let polls = rig.source.polls();
    let c = p.poll_stream("invoices").await.expect("poll");
    assert!(c.skipped);
    assert_eq!(rig.source.polls(), polls);
    tokio::time::advance(Duration::from_secs(3600)).await;
    let c = p.poll_stream("invoices").await.expect("poll");
    assert_eq!((c.journaled, c.error.clone()), (3, None), "{c:?}");
    p.deliver_due().await.expect("deliver");
    assert_eq!(rig.sink.sent().len(), 9);
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_back_off_then_deliver() {
    let sink = MemorySink::new("chat");
    sink.push_faults([
        SinkFault::Fail(ErrorClass::RETRYABLE),
        SinkFault::Fail(ErrorClass::RETRYABLE),
    ]);
    let rig = Rig::new(sink);
    rig.table.upsert(invoice("1", 1, "1"));
    let p = rig.pipeline();
    let s = p.run_once().await.expect("run");
    assert_eq!(s.deliveries.retried, 1);
    for _ in 0..10 {
        tokio::time::advance(Duration::from_secs(10)).await;
        p.deliver_due().await.expect("deliver");
    }
    let d = &rig
        .store
        .deliveries(&DeliveryFilter::default())
        .await
        .expect("list")[0];
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Delivered, 3));
    let attempts = rig.store.attempts(d.id).await.expect("attempts");
    let outcomes: Vec<_> = attempts
        .iter()
        .map(|a| a.outcome.clone().unwrap_or_default())
        .collect();
    assert_eq!(outcomes, ["retry", "retry", "delivered"]);
    assert!(
        attempts[1].started_at > attempts[0].finished_at.expect("finished"),
        "backed off"
    );
}

/// shared/apis/slack.md: a refused token means "stop, alert operator". Failing every
/// message for it would burn the backlog (each then needing a replay): the destination is
/// held, once per pause, visible, and delivers everything once the credentials work.
#[tokio::test(start_paused = true)]
async fn refused_credentials_hold_the_destination_instead_of_failing_its_messages() {
    let sink = MemorySink::new("chat");
    sink.push_faults([SinkFault::CredentialsRefused, SinkFault::CredentialsRefused]);
    let rig = Rig::new(sink);
    for i in 0..5 {
        rig.table.upsert(invoice(&i.to_string(), i, "1"));
    }
    let p = rig.pipeline();
    let s = p.run_once().await.expect("run");
    assert_eq!(
        (
            s.deliveries.failed,
            s.deliveries.delivered,
            s.deliveries.held
        ),
        (0, 0, 1),
        "{s:?}"
    );
    assert_eq!(rig.sink.calls(), 1, "one attempt, the rest wait behind it");
    let stats = rig.store.stats().await.expect("stats");
    assert_eq!((stats.failed, stats.retrying, stats.pending), (0, 1, 4));
    let notes = rig
        .store
        .notes(&crate::audit::NoteFilter::default())
        .await
        .expect("notes");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].kind, crate::audit::KIND_DESTINATION_HELD);
    // Nothing is tried again before the pause ends.
    tokio::time::advance(Duration::from_secs(60)).await;
    p.deliver_due().await.expect("deliver");
    assert_eq!(rig.sink.calls(), 1);
    // Still refused at the next check (far past any retry budget), then fixed.
    tokio::time::advance(Duration::from_secs(24 * 3600)).await;
    let d = p.deliver_due().await.expect("deliver");
    assert_eq!(rig.sink.calls(), 2);
    assert_eq!(d.held, 1, "{d:?}");
    assert_eq!(rig.store.stats().await.expect("stats").failed, 0);
    tokio::time::advance(Duration::from_secs(24 * 3600)).await;
    p.deliver_due().await.expect("deliver");
    assert_eq!(rig.sink.sent().len(), 5, "everything, once");
    assert_eq!(rig.store.stats().await.expect("stats").delivered, 5);
}

/// The end of a `--once` run: retries due within the window are waited for and sent; a
/// destination held behind its head (its backlog long due, but not claimable) ends the
/// wait instead of spinning on it.
#[tokio::test(start_paused = true)]
async fn delivering_what_comes_due_waits_for_near_retries_and_stops_at_a_held_line() {
    let sink = MemorySink::new("chat");
    sink.push_faults([
        SinkFault::Fail(ErrorClass::Retryable {
            retry_after: Some(Duration::from_secs(30)),
        }),
        SinkFault::CredentialsRefused,
    ]);
    let rig = Rig::new(sink);
    for i in 0..3 {
        rig.table.upsert(invoice(&i.to_string(), i, "1"));
    }
    let p = rig.pipeline();
    let s = p.run_once().await.expect("run");
    assert_eq!(s.deliveries.retried, 1, "{s:?}");
    let started = tokio::time::Instant::now();
    let d = tokio::time::timeout(
        Duration::from_secs(3600),
        p.deliver_coming_due(Duration::from_secs(120)),
    )
    .await
    .expect("returns, does not spin")
    .expect("deliver");
    // The retry 30 s later is refused for good: held, with two deliveries behind it long
    // due (pending since the start) that the hint no longer reports as due.
    assert_eq!((d.held, d.delivered, d.failed), (1, 0, 0), "{d:?}");
    assert_eq!(rig.sink.calls(), 2);
    assert!(started.elapsed() >= Duration::from_secs(30));
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{:?}",
        started.elapsed()
    );
    let due = rig.store.next_due_at().await.expect("due").expect("some");
    assert!(
        due >= clock::add(rig.clock.now(), Duration::from_secs(60)),
        "the held head's next check, not its backlog: {due}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_penalizes_the_key() {
    let sink = MemorySink::new("chat").with_rate_keys(true);
    sink.push_faults([SinkFault::Fail(ErrorClass::Retryable {
        retry_after: Some(Duration::from_secs(30)),
    })]);
    let rig = Rig::new(sink);
    rig.table.upsert(invoice("1", 1, "1"));
    let limiter = Arc::new(
        GcraLimiter::builder()
            .prefix("chat:", Quota::per_second(1).expect("q"))
            .build(),
    );
    let p = rig.builder().limiter(limiter).build().expect("p");
    p.run_once().await.expect("run");
    let d = &rig
        .store
        .deliveries(&DeliveryFilter::default())
        .await
        .expect("list")[0];
    let wait = clock::until(rig.clock.now(), d.next_attempt_at.expect("next"));
    assert!(wait >= Duration::from_secs(29), "{wait:?}");
    tokio::time::advance(Duration::from_secs(31)).await;
    p.deliver_due().await.expect("deliver");
    assert_eq!(rig.sink.sent().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_fail_then_replay() {
    let sink = MemorySink::new("chat");
    sink.push_faults([SinkFault::Fail(ErrorClass::Permanent)]);
    let rig = Rig::new(sink);
    rig.table.upsert(invoice("1", 1, "1"));
    rig.table.upsert(invoice("2", 2, "1"));
    let p = rig.pipeline();
    let s = p.run_once().await.expect("run");
    assert_eq!((s.deliveries.failed, s.deliveries.delivered), (1, 1));
    let failed = rig.store.failed(10).await.expect("failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0]
            .last_error
            .as_ref()
            .and_then(|e| e.code.as_deref()),
        Some("injected")
    );
    // A failed head does not block the destination: record 2 went out.
    assert_eq!(keys(&rig.sink.sent()), ["2"]);
    p.replay(failed[0].id).await.expect("replay");
    p.deliver_due().await.expect("deliver");
    assert_eq!(keys(&rig.sink.sent()), ["2", "1"]);
    assert!(matches!(
        p.replay(failed[0].id).await,
        Err(Error::InvalidState(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn in_doubt_sends_are_reconciled_not_reposted() {
    let sink = MemorySink::new("chat");
    sink.push_faults([SinkFault::AppliedThenLost]);
    let rig = Rig::new(sink);
    rig.table.upsert(invoice("1", 1, "1"));
    let p = rig.pipeline();
    let s = p.run_once().await.expect("run");
    assert_eq!(s.deliveries.in_doubt, 1);
    tokio::time::advance(Duration::from_secs(60)).await;
    let d = p.deliver_due().await.expect("deliver");
    assert_eq!(d.reconciled, 1);
    assert_eq!(rig.sink.sent().len(), 1, "posted exactly once");
    assert_eq!(rig.sink.calls(), 1, "reconcile found it: nothing re-sent");
    let v = &rig
        .store
        .deliveries(&DeliveryFilter::default())
        .await
        .expect("l")[0];
    assert_eq!(v.status, DeliveryStatus::Delivered);
    assert_eq!(v.remote_id.as_deref(), Some("chat-1"));
}

#[tokio::test(start_paused = true)]
async fn in_doubt_without_reconcile_is_resent_and_counted() {
    let sink = MemorySink::new("chat").with_reconcile(false);
    sink.push_faults([SinkFault::AppliedThenLost]);
    let rig = Rig::new(sink);
    rig.table.upsert(invoice("1", 1, "1"));
    let p = rig.pipeline();
    p.run_once().await.expect("run");
    tokio::time::advance(Duration::from_secs(60)).await;
    let d = p.deliver_due().await.expect("deliver");
    assert_eq!((d.delivered, d.resent_after_doubt), (1, 1));
    assert_eq!(
        rig.sink.sent().len(),
        2,
        "at least once: the duplicate is real and counted"
    );
    assert_eq!(
        rig.store.stats().await.expect("stats").resent_after_doubt,
        1
    );
}

/// The sink can reconcile, but the check is refused for good (a Slack bot without
/// `channels:history`): as for a sink that cannot reconcile, the message is sent again and
/// counted, never failed unsent (it may never have arrived).
#[tokio::test(start_paused = true)]
async fn in_doubt_whose_check_is_refused_is_resent_and_counted() {
    let sink = MemorySink::new("chat").with_reconcile_refused(true);
    sink.push_faults([SinkFault::LostBeforeApplied]);
    let rig = Rig::new(sink);
    rig.table.upsert(invoice("1", 1, "1"));
    let p = rig.pipeline();
    let s = p.run_once().await.expect("run");
    assert_eq!(s.deliveries.in_doubt, 1);
    tokio::time::advance(Duration::from_secs(60)).await;
    let d = p.deliver_due().await.expect("deliver");
    assert_eq!((d.delivered, d.resent_after_doubt, d.failed), (1, 1, 0));
    assert_eq!(
        rig.sink.sent().len(),
        1,
        "it had not arrived: now it has, once"
    );
}

#[tokio::test(start_paused = true)]
async fn lost_before_applied_is_reconciled_as_not_found_and_sent_once() {
    let sink = MemorySink::new("chat");
    sink.push_faults([SinkFault::LostBeforeApplied]);
    let rig = Rig::new(sink);
    rig.table.upsert(invoice("1", 1, "1"));
    let p = rig.pipeline();
    p.run_once().await.expect("run");
    tokio::time::advance(Duration::from_secs(60)).await;
    p.deliver_due().await.expect("deliver");
    assert_eq!(rig.sink.sent().len(), 1);
    assert_eq!(rig.store.stats().await.expect("s").resent_after_doubt, 0);
}

#[tokio::test(start_paused = true)]
async fn crash_while_in_flight_is_recovered_by_reconcile() {
    let rig = Rig::new(MemorySink::new("chat"));
    rig.table.upsert(invoice("1", 1, "1"));
    let p = rig.pipeline();
    p.poll_stream("invoices").await.expect("poll");
    // A previous process claimed the delivery, posted it, and died before journaling.
    let dead = Claimant::new(OwnerId::new("dead-process"));
    let claimed = rig
        .store
        .claim_due(&dead, rig.clock.now(), 10)
        .await
        .expect("claim");
    let msg = crate::sink::Outbound {
        delivery_id: claimed[0].id,
        stream: claimed[0].stream.clone(),
        record_key: claimed[0].record.key.clone(),
        destination: claimed[0].destination.clone(),
        rendered: crate::render::Rendered::text("x"),
        thread: None,
        attempt: 1,
        planned_at: claimed[0].created_at,
    };
    rig.sink.send(&msg).await.expect("the dead process's post");
    // While its lease holds, the claim may be a live process's: not touched.
    let s = p.run_once().await.expect("beside a live claim");
    assert_eq!((s.recovered, s.deliveries.attempts), (0, 0));
    assert_eq!(
        rig.store.stats().await.expect("stats").in_flight,
        1,
        "a live claim of another owner is never requeued"
    );
    tokio::time::advance(dead.lease + Duration::from_secs(1)).await;
    let s = p.run_once().await.expect("restart");
    assert_eq!(s.recovered, 1);
    assert_eq!(s.deliveries.reconciled, 1);
    assert_eq!(rig.sink.sent().len(), 1, "no double post after the crash");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_sink_does_not_take_the_pipeline_down() {
    let sink = MemorySink::new("chat");
    sink.push_faults([SinkFault::Panic]);
    let rig = Rig::new(sink);
    rig.table.upsert(invoice("1", 1, "1"));
    let p = rig.pipeline();
    let s = p.run_once().await.expect("run");
    assert_eq!((s.deliveries.retried, s.deliveries.in_doubt), (1, 1));
    // In doubt: the retry (which reconciles first) waits for the remote side's listings.
    let due = rig.store.next_due_at().await.expect("due").expect("some");
    assert!(
        due >= clock::add(rig.clock.now(), deliver::IN_DOUBT_SETTLE),
        "{due}"
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    p.deliver_due().await.expect("deliver");
    assert_eq!(rig.sink.sent().len(), 1);
}

/// A sink that holds sends to one address until released.
#[derive(Debug)]
struct GatedSink {
    inner: MemorySink,
    gate: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Display for GatedSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatedSink")
    }
}

#[async_trait::async_trait]
impl Sink for GatedSink {
    async fn send(&self, msg: &crate::sink::Outbound) -> Result<crate::sink::Receipt> {
        if msg.destination.address == "#finance" {
            let _permit = self.gate.acquire().await.expect("gate");
        }
        self.inner.send(msg).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_stuck_destination_does_not_stall_the_others() {
    let rig = Rig::new(MemorySink::new("chat"));
    for i in 0..10 {
        rig.table.upsert(invoice(&i.to_string(), i, "50000"));
    }
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let gated = Arc::new(GatedSink {
        inner: rig.sink.clone(),
        gate: gate.clone(),
    });
    let p = Pipeline::builder()
        .store(rig.store.clone())
        .stream(Stream::new(
            "invoices",
            rig.source.clone(),
            Schedule::every(Duration::from_secs(60)).expect("s"),
        ))
        .router(router())
        .sink("chat", gated)
        .clock(rig.clock.clone())
        .build()
        .expect("p");
    p.poll_stream("invoices").await.expect("poll");
    let task = tokio::spawn({
        let p = p.clone();
        async move { p.deliver_due().await }
    });
    for _ in 0..200 {
        if rig
            .sink
            .sent_to(&Destination::new("chat", "#procurement"))
            .len()
            == 10
        {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        rig.sink
            .sent_to(&Destination::new("chat", "#procurement"))
            .len(),
        10
    );
    assert!(
        rig.sink
            .sent_to(&Destination::new("chat", "#finance"))
            .is_empty()
    );
    gate.add_permits(100);
    task.await.expect("join").expect("deliver");
    assert_eq!(
        keys(&rig.sink.sent_to(&Destination::new("chat", "#finance"))),
        (0..10).map(|i| i.to_string()).collect::<Vec<_>>()
    );
}

#[tokio::test(start_paused = true)]
async fn per_channel_rate_limit_spaces_sends() {
    let rig = Rig::new(MemorySink::new("chat").with_rate_keys(true));
    for i in 0..5 {
        rig.table.upsert(invoice(&i.to_string(), i, "50000"));
    }
    let limiter = Arc::new(
        GcraLimiter::builder()
            .prefix(
                "chat:",
                Quota::per_second(1).expect("q").burst(1).expect("b"),
            )
            .build(),
    );
    let p = rig.builder().limiter(limiter).build().expect("p");
    let t0 = tokio::time::Instant::now();
    let s = p.run_once().await.expect("run");
    assert_eq!(s.deliveries.delivered, 10);
    // Two channels, five messages each, one per second per channel, in parallel.
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(6),
        "{took:?}"
    );
}

fn one_per_second() -> Arc<GcraLimiter> {
    Arc::new(
        GcraLimiter::builder()
            .prefix(
                "chat:",
                Quota::per_second(1).expect("q").burst(1).expect("b"),
            )
            .build(),
    )
}

/// A process started right after another (`run --once` back to back, a restart) has a
/// fresh limiter: the journal's last send end paces its first send, as the server sees
/// arrivals; after a pause longer than the interval nothing waits.
#[tokio::test(start_paused = true)]
async fn the_next_process_paces_its_first_send_from_the_journal() {
    let rig = Rig::new(MemorySink::new("chat").with_rate_keys(true));
    rig.table.upsert(invoice("1", 1, "5"));
    let first = rig.builder().limiter(one_per_second()).build().expect("p");
    assert_eq!(first.run_once().await.expect("run").deliveries.delivered, 1);
    let ended = tokio::time::Instant::now();
    rig.table.upsert(invoice("2", 2, "5"));
    let next = rig.builder().limiter(one_per_second()).build().expect("p");
    assert_eq!(next.run_once().await.expect("run").deliveries.delivered, 1);
    let gap = ended.elapsed();
    assert!(
        gap >= Duration::from_secs(1) && gap < Duration::from_millis(1100),
        "the next process posted {gap:?} after the previous one's last send"
    );
    tokio::time::advance(Duration::from_secs(5)).await;
    rig.table.upsert(invoice("3", 3, "5"));
    let later = rig.builder().limiter(one_per_second()).build().expect("p");
    let t0 = tokio::time::Instant::now();
    assert_eq!(later.run_once().await.expect("run").deliveries.delivered, 1);
    assert!(
        t0.elapsed() < Duration::from_millis(10),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(keys(&rig.sink.sent()), ["1", "2", "3"]);
}

/// A send cut off by a crash may have arrived up to the recovery: the reconciling
/// process's first post to that destination waits one interval from there.
#[tokio::test(start_paused = true)]
async fn a_send_cut_off_by_a_crash_paces_the_first_send_after_recovery() {
    let rig = Rig::new(MemorySink::new("chat").with_rate_keys(true));
    rig.table.upsert(invoice("1", 1, "5"));
    rig.table.upsert(invoice("2", 2, "5"));
    let p = rig.builder().limiter(one_per_second()).build().expect("p");
    p.poll_stream("invoices").await.expect("poll");
    let dead = Claimant::new(OwnerId::new("dead-process"));
    let claimed = rig
        .store
        .claim_due(&dead, rig.clock.now(), 1)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    tokio::time::advance(dead.lease + Duration::from_secs(1)).await;
    let t0 = tokio::time::Instant::now();
    let s = p.run_once().await.expect("restart");
    assert_eq!((s.recovered, s.deliveries.delivered), (1, 2));
    let sent = rig.sink.sent();
    assert_eq!(keys(&sent), ["1", "2"]);
    // Both went out after a full interval from the recovery, one second apart.
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "{:?} for a recovered post and the next one",
        t0.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn run_polls_on_schedule_and_picks_up_new_records() {
    let rig = Rig::new(MemorySink::new("chat"));
    rig.table.upsert(invoice("1", 1, "1"));
    let p = rig.pipeline();
    let (tx, run) = spawn_run(&p);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(keys(&rig.sink.sent()), ["1"]);
    // Added mid-run with a current timestamp; picked up by the next scheduled cycle.
    rig.table.upsert(Record::new(
        "Memory(erp)",
        EntityKind::SupplierInvoice,
        "2",
        rig.clock.now(),
    ));
    tokio::time::sleep(Duration::from_secs(400)).await;
    assert_eq!(keys(&rig.sink.sent()), ["1", "2"]);
    tx.send(()).expect("stop");
    let s = run.await.expect("join").expect("run");
    assert!(s.cycles >= 2, "{s:?}");
    assert_eq!(s.deliveries.delivered, 2);
}

#[tokio::test(start_paused = true)]
async fn dry_run_sends_and_journals_nothing() {
    let rig = Rig::new(MemorySink::new("chat"));
    rig.table.upsert(invoice("1", 1, "20000"));
    rig.table
        .insert_malformed("2", start(), serde_json::Value::Null, "bad date");
    let p = rig.pipeline();
    let d = p.dry_run(100).await.expect("dry");
    let plan: Vec<(String, String)> = d
        .messages
        .iter()
        .map(|m| (m.destination.to_string(), m.rules.join(",")))
        .collect();
    assert_eq!(
        plan,
        [
            ("chat:#procurement".into(), "all".into()),
            ("chat:#finance".into(), "large".into())
        ]
    );
    assert_eq!(d.rejected.len(), 1);
    assert_eq!(
        rig.store.stats().await.expect("s"),
        crate::audit::JournalStats::default()
    );
    assert!(rig.sink.sent().is_empty());
    // `max` items a stream, even from one page holding more; 0 reads nothing.
    for i in 3..10 {
        rig.table.upsert(invoice(&i.to_string(), i, "10"));
    }
    let two = p.dry_run(2).await.expect("dry");
    let mut keys: Vec<&str> = two
        .messages
        .iter()
        .map(|m| m.record_key.as_str())
        .chain(two.rejected.iter().filter_map(|(_, r)| r.key.as_deref()))
        .collect();
    keys.dedup();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let none = p.dry_run(0).await.expect("dry");
    assert!(none.messages.is_empty() && none.rejected.is_empty());
}

#[tokio::test]
async fn builder_errors_name_the_problem() {
    let rig = Rig::new(MemorySink::new("chat"));
    let e = Pipeline::builder().build().expect_err("no store");
    assert!(e.to_string().contains("AuditStore"), "{e}");
    let e = Pipeline::builder()
        .store(rig.store.clone())
        .router(router())
        .build()
        .expect_err("no sink");
    assert!(e.to_string().contains("no sink named `chat`"), "{e}");
    let s = || {
        Stream::new(
            "x",
            rig.source.clone(),
            Schedule::every(Duration::from_secs(1)).expect("s"),
        )
    };
    let e = Pipeline::builder()
        .store(rig.store.clone())
        .stream(s())
        .stream(s())
        .build()
        .expect_err("dup");
    assert!(e.to_string().contains("defined twice"), "{e}");
    let e = Pipeline::builder()
        .store(rig.store.clone())
        .sink("a", Arc::new(MemorySink::new("a")))
        .sink("a", Arc::new(MemorySink::new("a")))
        .build()
        .expect_err("dup sink");
    assert!(e.to_string().contains("registered twice"), "{e}");
}

/// A source whose polls wait at a gate.
#[derive(Debug)]
struct GatedSource {
    inner: Arc<MemorySource>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Display for GatedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatedSource")
    }
}

#[async_trait::async_trait]
impl Source for GatedSource {
    fn kind(&self) -> EntityKind {
        EntityKind::SupplierInvoice
    }

    async fn poll(&self, from: Option<&crate::cursor::Position>) -> Result<crate::source::Page> {
        let _permit = self.gate.acquire().await.expect("gate");
        self.inner.poll(from).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_is_never_polled_twice_at_once() {
    let rig = Rig::new(MemorySink::new("chat"));
    rig.table.upsert(invoice("1", 1, "1"));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let source = Arc::new(GatedSource {
        inner: rig.source.clone(),
        gate: gate.clone(),
    });
    let p = Pipeline::builder()
        .store(rig.store.clone())
        .stream(Stream::new(
            "invoices",
            source,
            Schedule::every(Duration::from_secs(60)).expect("s"),
        ))
        .router(router())
        .sink("chat", Arc::new(rig.sink.clone()))
        .clock(rig.clock.clone())
        .build()
        .expect("p");
    let first = tokio::spawn({
        let p = p.clone();
        async move { p.poll_stream("invoices").await }
    });
    tokio::task::yield_now().await;
    let second = p.poll_stream("invoices").await.expect("second");
    assert!(second.skipped, "a second poll of a busy stream is skipped");
    gate.add_permits(10);
    let first = first.await.expect("join").expect("first");
    assert!(!first.skipped);
    assert_eq!(first.journaled, 1);
    // Once the first finished, the stream can be polled again.
    assert!(!p.poll_stream("invoices").await.expect("third").skipped);
}

/// A minimal `metrics` recorder keeping counter totals and last gauge values by name.
#[derive(Default)]
struct Recorded {
    values: std::sync::Mutex<std::collections::HashMap<String, Arc<Cell>>>,
}

#[derive(Default)]
struct Cell(std::sync::atomic::AtomicU64);

impl metrics::CounterFn for Cell {
    fn increment(&self, v: u64) {
        self.0.fetch_add(v, std::sync::atomic::Ordering::Relaxed);
    }
    fn absolute(&self, v: u64) {
        self.0.store(v, std::sync::atomic::Ordering::Relaxed);
    }
}

impl metrics::GaugeFn for Cell {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, v: f64) {
        self.0.store(v as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Recorded {
    fn cell(&self, key: &metrics::Key) -> Arc<Cell> {
        let mut name = key.name().to_owned();
        for l in key.labels() {
            let _ = std::fmt::Write::write_fmt(
                &mut name,
                format_args!("{{{}={}}}", l.key(), l.value()),
            );
        }
        self.values
            .lock()
            .expect("lock")
            .entry(name)
            .or_default()
            .clone()
    }

    fn get(&self, name: &str) -> u64 {
        self.values
            .lock()
            .expect("lock")
            .get(name)
            .map_or(0, |c| c.0.load(std::sync::atomic::Ordering::Relaxed))
    }
}

impl metrics::Recorder for Recorded {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[test]
fn counters_and_the_lag_gauge_are_reported() {
    let rec = Recorded::default();
    metrics::with_local_recorder(&rec, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        rt.block_on(async {
            let sink = MemorySink::new("chat");
            sink.push_faults([
                SinkFault::Fail(ErrorClass::RETRYABLE),
                SinkFault::Fail(ErrorClass::Permanent),
            ]);
            let rig = Rig::new(sink);
            rig.table.upsert(invoice("1", 1, "1"));
            // Invoice 2 also goes to #finance: #procurement is held behind invoice 1's retry.
            rig.table.upsert(invoice("2", 2, "20000"));
            let older = start() - jiff::SignedDuration::from_hours(2);
            rig.table
                .insert_malformed("3", older, serde_json::Value::Null, "bad");
            let p = rig.pipeline();
            p.run_once().await.expect("run");
        });
    });
    assert_eq!(rec.get("ml_records_polled_total{stream=invoices}"), 3);
    assert_eq!(rec.get("ml_records_journaled_total{stream=invoices}"), 2);
    assert_eq!(rec.get("ml_records_rejected_total{stream=invoices}"), 1);
    assert_eq!(rec.get("ml_deliveries_retried_total{sink=chat}"), 1);
    assert_eq!(rec.get("ml_deliveries_failed_total{sink=chat}"), 1);
    assert_eq!(rec.get("ml_deliveries_delivered_total{sink=chat}"), 0);
    // The newest record was modified an hour before the rig's clock: lag ~ 3600 s.
    let lag = rec.get("ml_stream_lag_seconds{stream=invoices}");
    assert!((3590..=3600).contains(&lag), "lag {lag}");
}

/// A rig with two streams: `bad` (its own table) and the rig's `invoices`.
fn two_streams(rig: &Rig, pause: Option<Duration>) -> (Arc<MemorySource>, Pipeline) {
    let bad = Arc::new(
        MemorySource::new(
            "bad-erp",
            EntityKind::SupplierInvoice,
            SourceTable::default(),
        )
        .with_clock(rig.clock.clone()),
    );
    let mut b = rig.builder().stream(Stream::new(
        "bad",
        bad.clone(),
        Schedule::every(Duration::from_secs(60)).expect("schedule"),
    ));
    if let Some(p) = pause {
        b = b.permanent_pause(p);
    }
    (bad, b.build().expect("pipeline"))
}

fn config_error() -> Error {
    Error::config(
        "purchaseOrders.Ordered",
        "the pod has no attribute `Ordered` (required)",
    )
}

#[tokio::test(start_paused = true)]
async fn a_permanent_source_error_pauses_that_stream_slowly_and_visibly() {
    let rig = Rig::new(MemorySink::new("chat"));
    rig.table.upsert(invoice("1", 1, "1"));
    let (bad, p) = two_streams(&rig, None);
    bad.fail_next([config_error(), config_error()]);
    let c = p.poll_stream("bad").await.expect("poll");
    assert!(c.error.is_some());
    // Visible: the status, and the journaled cycle with its class.
    let status = p.stream_status();
    let bad_status = status.iter().find(|s| s.stream == "bad").expect("bad");
    let StreamState::Paused { until, error, .. } = &bad_status.state else {
        panic!("not paused: {bad_status:?}");
    };
    assert_eq!(
        *until,
        rig.clock.now() + jiff::SignedDuration::from_mins(15)
    );
    assert_eq!(error.class, "permanent");
    assert!(
        error.message.contains("purchaseOrders.Ordered"),
        "{error:?}"
    );
    let cycles = rig.store.cycles("bad", 1).await.expect("cycles");
    assert_eq!(
        cycles[0].error.as_ref().map(|e| e.class.as_str()),
        Some("permanent")
    );
    // Other streams keep flowing.
    let c = p.poll_stream("invoices").await.expect("poll");
    assert_eq!((c.journaled, c.error), (1, None));
    let ok = status.iter().find(|s| s.stream == "invoices").expect("ok");
    assert_eq!(ok.state, StreamState::Running);
    // Not hammered: nothing before the slow cadence is up, then exactly one try.
    tokio::time::advance(Duration::from_secs(14 * 60 + 59)).await;
    assert!(p.poll_stream("bad").await.expect("poll").skipped);
    assert_eq!(bad.polls(), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(p.poll_stream("bad").await.expect("poll").error.is_some());
    assert_eq!(bad.polls(), 2);
    // Fixed, it resumes and reports running again.
    tokio::time::advance(Duration::from_secs(15 * 60)).await;
    let c = p.poll_stream("bad").await.expect("poll");
    assert_eq!(c.error, None);
    let status = p.stream_status();
    assert!(
        status.iter().all(|s| s.state == StreamState::Running),
        "{status:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unavailable_source_pauses_its_stream_until_it_returns() {
    let rig = Rig::new(MemorySink::new("chat"));
    let (bad, p) = two_streams(&rig, None);
    let gone = || {
        Error::unavailable(
            "SapEcc(PRD)",
            "relay agent for PRD",
            "no agent connected",
            Duration::from_secs(5),
        )
    };
    bad.fail_next([gone(), gone()]);
    assert!(p.poll_stream("bad").await.expect("poll").error.is_some());
    let status = p.stream_status();
    let s = status.iter().find(|s| s.stream == "bad").expect("bad");
    let StreamState::Unavailable {
        until,
        waiting_for,
        error,
        failures,
    } = &s.state
    else {
        panic!("not unavailable: {s:?}");
    };
    // A fixed short re-check, no growing backoff.
    assert_eq!(*until, rig.clock.now() + jiff::SignedDuration::from_secs(5));
    assert_eq!(
        (waiting_for.as_str(), *failures),
        ("relay agent for PRD", 1)
    );
    assert_eq!(error.class, "retryable");
    assert!(p.poll_stream("bad").await.expect("poll").skipped);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(p.poll_stream("bad").await.expect("poll").error.is_some());
    let StreamState::Unavailable {
        until, failures, ..
    } = &p.stream_status()[1].state
    else {
        panic!("still unavailable");
    };
    assert_eq!(*until, rig.clock.now() + jiff::SignedDuration::from_secs(5));
    assert_eq!(*failures, 2);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(p.poll_stream("bad").await.expect("poll").error, None);
    assert_eq!(p.stream_status()[1].state, StreamState::Running);
}

#[tokio::test(start_paused = true)]
async fn run_retries_a_permanently_failing_stream_on_the_slow_cadence_only() {
    let rig = Rig::new(MemorySink::new("chat"));
    let (bad, p) = two_streams(&rig, Some(Duration::from_secs(600)));
    bad.fail_next((0..100).map(|_| config_error()));
    let table = rig.table.clone();
    let summary = p
        .run(async move {
            tokio::time::sleep(Duration::from_secs(1800)).await;
            table.upsert(invoice("late", 10, "1"));
            tokio::time::sleep(Duration::from_secs(1190)).await;
        })
        .await
        .expect("run");
    // t = 0, 600, 1200, 1800, 2400 (2990 s run).
    assert_eq!(bad.polls(), 5, "{summary}");
    // Every 300 s (jittered) meanwhile.
    assert!(
        rig.source.polls() >= 8,
        "the other stream polls on its schedule"
    );
    assert_eq!(keys(&rig.sink.sent()), ["late"]);
    assert!(matches!(
        p.stream_status()
            .iter()
            .find(|s| s.stream == "bad")
            .map(|s| &s.state),
        Some(StreamState::Paused { .. })
    ));
}

#[test]
fn a_paused_stream_is_a_gauge_and_a_counter() {
    let rec = Recorded::default();
    metrics::with_local_recorder(&rec, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        rt.block_on(async {
            let rig = Rig::new(MemorySink::new("chat"));
            let (bad, p) = two_streams(&rig, None);
            bad.fail_next([config_error()]);
            p.poll_stream("bad").await.expect("poll");
        });
    });
    assert_eq!(rec.get("ml_stream_paused{stream=bad}{reason=permanent}"), 1);
    assert_eq!(
        rec.get("ml_poll_failures_total{stream=bad}{class=permanent}"),
        1
    );
}

#[test]
fn the_permanent_pause_is_clamped() {
    let rig = Rig::new(MemorySink::new("chat"));
    let p = rig
        .builder()
        .permanent_pause(Duration::from_secs(365 * 86_400))
        .build()
        .expect("p");
    assert_eq!(p.permanent_pause(), MAX_PERMANENT_PAUSE);
    let p = rig
        .builder()
        .permanent_pause(Duration::ZERO)
        .build()
        .expect("p");
    assert_eq!(p.permanent_pause(), Duration::from_secs(1));
}

/// `p.run` on a task until the returned sender is used (or dropped).
fn spawn_run(
    p: &Pipeline,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<RunSummary>>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let p = p.clone();
    let run = tokio::spawn(async move {
        p.run(async {
            let _ = rx.await;
        })
        .await
    });
    (tx, run)
}

/// A limiter that never grants (a shared limiter paused while its Redis is away).
#[derive(Debug)]
struct NeverGrants;

#[async_trait::async_trait]
impl crate::limiter::RateLimiter for NeverGrants {
    async fn acquire(&self, _key: &str) -> Result<()> {
        std::future::pending().await
    }

    async fn penalize(&self, _key: &str, _retry_after: Duration) -> Result<()> {
        Ok(())
    }
}

/// A shutdown ends a wait for the rate limiter: the service stops at once, nothing was sent
/// or counted as an attempt, and the claims go back to pending for whoever runs next.
#[tokio::test(start_paused = true)]
async fn a_shutdown_ends_a_wait_for_the_rate_limiter() {
    let rig = Rig::new(MemorySink::new("chat").with_rate_keys(true));
    rig.table.upsert(invoice("1", 1, "1"));
    rig.table.upsert(invoice("2", 2, "1"));
    let p = rig
        .builder()
        .limiter(Arc::new(NeverGrants))
        .build()
        .expect("p");
    let (tx, run) = spawn_run(&p);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stats = rig.store.stats().await.expect("stats");
    assert!(stats.in_flight > 0, "{stats:?}");
    tx.send(()).expect("stop");
    let s = tokio::time::timeout(Duration::from_secs(1), run)
        .await
        .expect("stops without waiting for the limiter")
        .expect("join")
        .expect("run");
    assert_eq!(s.deliveries.attempts, 0, "{s:?}");
    assert!(rig.sink.sent().is_empty());
    let stats = rig.store.stats().await.expect("stats");
    assert_eq!((stats.in_flight, stats.pending), (0, 2), "{stats:?}");
}

/// Two replicas on one journal, each keeping the stream's schedule: one turn per interval
/// reads the ERP and the other finds it polled (not one read per replica); when the one
/// that polls stops, the other's next turn polls.
#[tokio::test(start_paused = true)]
async fn replicas_take_turns_instead_of_each_reading_the_erp() {
    let rig = Rig::new(MemorySink::new("chat"));
    rig.table.upsert(invoice("1", 1, "100"));
    let (a, b) = (rig.pipeline(), rig.pipeline());
    let (stop_a, run_a) = spawn_run(&a);
    let (stop_b, run_b) = spawn_run(&b);
    // Ten intervals of the rig's five-minute schedule.
    tokio::time::sleep(Duration::from_secs(3000)).await;
    let both = rig.store.cycles("invoices", 1000).await.expect("cycles");
    assert!(
        (9..=13).contains(&both.len()),
        "{} cycles in ten intervals with two replicas",
        both.len()
    );
    let _ = stop_a.send(());
    run_a.await.expect("join").expect("run a");
    rig.table.upsert(invoice("2", 2, "100"));
    tokio::time::sleep(Duration::from_secs(900)).await;
    let after = rig.store.cycles("invoices", 1000).await.expect("cycles");
    assert!(after.len() >= both.len() + 2, "the other replica took over");
    assert_eq!(keys(&rig.sink.sent()), ["1", "2"]);
    let _ = stop_b.send(());
    run_b.await.expect("join").expect("run b");
}

/// A dry run after a run: what the source serves again (the cursor's overlap) is already
/// journaled in that version, so it is named as such and not listed as messages; a new
/// version of a record is listed.
#[tokio::test(start_paused = true)]
async fn dry_run_names_what_the_journal_already_holds() {
    let rig = Rig::new(MemorySink::new("chat"));
    for i in 0..3 {
        rig.table.upsert(invoice(&i.to_string(), i, "100"));
    }
    let p = rig.pipeline();
    p.run_once().await.expect("run");
    assert_eq!(rig.sink.sent().len(), 3);
    let d = p.dry_run(100).await.expect("dry");
    assert!(d.messages.is_empty(), "{:?}", d.messages);
    assert!(!d.already_journaled.is_empty());
    assert!(d.already_journaled.iter().all(|(s, _)| s == "invoices"));
    rig.table.upsert(invoice("1", 30, "100"));
    let d = p.dry_run(100).await.expect("dry");
    let listed: Vec<&str> = d.messages.iter().map(|m| m.record_key.as_str()).collect();
    assert_eq!(listed, ["1"], "{d:?}");
}
