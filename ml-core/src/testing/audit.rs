//! The `AuditStore` conformance suite.

use std::future::Future;
use std::sync::Arc;

use jiff::Timestamp;

use crate::audit::{
    AttemptOutcome, AuditStore, AuditStoreExt, CallbackApplied, CallbackUpdate, Claimant, CycleEnd,
    DeliveryFilter, DeliveryId, DeliveryStatus, ErrorInfo, OwnerId, PageCommit, PlannedRecord,
    RemoteStatus,
};
use crate::cursor::Position;
use crate::error::Error;
use crate::money::Money;
use crate::record::{BusinessFields, EntityKind, RawJson, Record, Rejected};
use crate::sink::{Destination, Receipt};

/// The claimant most checks use.
fn me() -> Claimant {
    Claimant::new(OwnerId::new("conformance-a"))
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("timestamp")
}

/// A record used by the suite.
pub fn sample_record(key: &str, version: &str) -> Record {
    Record::new("Conformance(test)", EntityKind::SupplierInvoice, key, t(0))
        .with_version(version)
        .with_fields(BusinessFields {
            document_number: Some(format!("INV-{key}")),
            supplier: Some("Zürich Präzision AG".into()),
            amount: Some(Money::parse("-1234.56", "CHF").expect("money")),
            ..BusinessFields::default()
        })
        // An amount no f64 holds: the journal must keep the source's text exactly.
        .with_raw(
            RawJson::from_text(format!(
                r#"{{"id":"{key}","v":"{version}","InvoiceAmount":98765432109876.54,"note":"ünïcödé"}}"#
            ))
            .expect("json"),
        )
}

fn dest(a: &str) -> Destination {
    Destination::new("slack", a)
}

fn pos(n: u64) -> Position {
    Position::from_json(serde_json::json!({ "n": n }))
}

fn planned(key: &str, version: &str, to: &[&str]) -> PlannedRecord {
    PlannedRecord {
        record: sample_record(key, version),
        destinations: to.iter().map(|a| dest(a)).collect(),
    }
}

fn err(class: &str, msg: &str) -> ErrorInfo {
    ErrorInfo {
        class: class.into(),
        code: Some("E1".into()),
        message: msg.into(),
    }
}

async fn commit(
    s: &dyn AuditStore,
    stream: &str,
    records: Vec<PlannedRecord>,
    position: u64,
) -> crate::audit::PageCommitted {
    let cycle = s.begin_cycle(stream, t(1)).await.expect("begin_cycle");
    let out = s
        .commit_page(PageCommit {
            stream: stream.into(),
            cycle,
            records,
            rejected: vec![],
            position: pos(position),
            at: t(1),
        })
        .await
        .expect("commit_page");
    s.end_cycle(
        cycle,
        CycleEnd {
            at: t(2),
            ..CycleEnd::default()
        },
    )
    .await
    .expect("end_cycle");
    out
}

fn delivered(id: &str) -> AttemptOutcome {
    AttemptOutcome::Delivered {
        receipt: Receipt::new(id).with_scope("C1"),
        after_doubt: false,
    }
}

/// Runs every check against fresh stores from `make`. Panics with a message naming the
/// broken rule.
pub async fn audit_store_conformance<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn AuditStore>>,
{
    positions_commit_atomically(&*make().await).await;
    records_are_deduplicated(&*make().await).await;
    rejected_items_are_journaled(&*make().await).await;
    claims_follow_destination_order(&*make().await).await;
    retries_wait_until_due(&*make().await).await;
    held_deliveries_are_retried_at_start(&*make().await).await;
    streams_can_be_renamed(&*make().await).await;
    send_ends_are_kept_per_destination(&*make().await).await;
    attempts_need_a_claim(&*make().await).await;
    crash_recovery_marks_doubt(&*make().await).await;
    replay_requeues_failed(&*make().await).await;
    failed_deliveries_can_be_sent_elsewhere(&*make().await).await;
    callbacks_never_downgrade(&*make().await).await;
    callbacks_ahead_of_their_send_are_kept(&*make().await).await;
    later_versions_thread_on_the_first(&*make().await).await;
    queries_answer(&*make().await).await;
    concurrent_claims_are_exclusive(make().await).await;
    leases_protect_live_claims(&*make().await).await;
    stream_leases_are_exclusive(&*make().await).await;
    super::audit_runs::runs_follow_destination_order(&*make().await).await;
    super::audit_runs::run_claims_are_exclusive(make().await).await;
    super::audit_runs::group_commits_record_every_outcome(&*make().await).await;
    super::audit_runs::unfinished_runs_are_recovered_in_doubt(&*make().await).await;
    super::audit_notes::notes_are_written_once_and_filtered(&*make().await).await;
}

/// `commit_page` writes records, deliveries and position together, or nothing.
pub async fn positions_commit_atomically(s: &dyn AuditStore) {
    assert_eq!(s.load_position("inv").await.expect("load"), None);
    commit(s, "inv", vec![planned("1", "a", &["#a"])], 7).await;
    assert_eq!(s.load_position("inv").await.expect("load"), Some(pos(7)));
    let h = s.record_history("inv", "1").await.expect("history");
    assert_eq!(
        h.versions[0].record.raw.as_str(),
        sample_record("1", "a").raw.as_str(),
        "the raw item is journaled as its exact text"
    );
    assert!(
        h.versions[0]
            .record
            .raw
            .as_str()
            .contains("98765432109876.54")
    );
    assert_eq!(s.load_position("other").await.expect("load"), None);

    // An invalid record fails the whole page: position, records and deliveries unchanged.
    let before = s.stats().await.expect("stats");
    let cycle = s.begin_cycle("inv", t(3)).await.expect("begin");
    let mut bad = planned("", "a", &["#a"]);
    bad.record.key = String::new();
    let e = s
        .commit_page(PageCommit {
            stream: "inv".into(),
            cycle,
            records: vec![planned("2", "a", &["#a"]), bad],
            rejected: vec![],
            position: pos(8),
            at: t(3),
        })
        .await
        .expect_err("a page with an invalid record must fail");
    assert!(matches!(e, Error::InvalidRecord(_)), "{e}");
    assert_eq!(
        s.load_position("inv").await.expect("load"),
        Some(pos(7)),
        "position moved"
    );
    assert_eq!(s.stats().await.expect("stats"), before, "partial commit");
}

/// Dedupe on (stream, key, version); duplicates plan nothing.
pub async fn records_are_deduplicated(s: &dyn AuditStore) {
    let c = commit(
        s,
        "inv",
        vec![
            planned("1", "a", &["#a", "#b", "#a"]),
            planned("1", "a", &["#a"]),
        ],
        1,
    )
    .await;
    assert_eq!((c.inserted, c.duplicates, c.deliveries), (1, 1, 2), "{c:?}");
    let c = commit(s, "inv", vec![planned("1", "a", &["#a"])], 2).await;
    assert_eq!(
        (c.inserted, c.duplicates, c.deliveries),
        (0, 1, 0),
        "re-poll must add nothing"
    );
    let c = commit(s, "inv", vec![planned("1", "b", &["#a"])], 3).await;
    assert_eq!(
        (c.inserted, c.deliveries),
        (1, 1),
        "a new version is a new record"
    );
    let c = commit(s, "other", vec![planned("1", "a", &["#a"])], 1).await;
    assert_eq!(c.inserted, 1, "dedupe is per stream");
    // The idempotency key wins over the source key.
    let mut a = planned("10", "x", &["#a"]);
    a.record = a.record.with_idempotency_key("REF-1");
    let mut b = planned("11", "x", &["#a"]);
    b.record = b.record.with_idempotency_key("REF-1");
    let c = commit(s, "inv", vec![a, b], 4).await;
    assert_eq!((c.inserted, c.duplicates), (1, 1), "idempotency key");
    let stats = s.stats().await.expect("stats");
    assert_eq!(stats.records, 4);
    assert_eq!(stats.pending, 5);
}

/// Rejected items are journaled once, with their reason, newest first.
pub async fn rejected_items_are_journaled(s: &dyn AuditStore) {
    let cycle = s.begin_cycle("inv", t(1)).await.expect("begin");
    let rej = |k: Option<&str>, why: &str| {
        Rejected::new(k.map(str::to_owned), why, serde_json::json!({"k": k}))
    };
    let out = s
        .commit_page(PageCommit {
            stream: "inv".into(),
            cycle,
            records: vec![planned("1", "a", &["#a"])],
            rejected: vec![
                rej(Some("9"), "missing amount"),
                rej(None, "unparseable date"),
                rej(Some("9"), "missing amount"),
            ],
            position: pos(1),
            at: t(1),
        })
        .await
        .expect("commit");
    assert_eq!(out.rejected, 2);
    let list = s.rejected(Some("inv"), 10).await.expect("rejected");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].item.reason, "unparseable date", "newest first");
    assert_eq!(list[1].item.key.as_deref(), Some("9"));
    assert_eq!(list[1].item.raw, serde_json::json!({"k": "9"}));
    assert!(
        s.rejected(Some("nope"), 10)
            .await
            .expect("rejected")
            .is_empty()
    );
    assert_eq!(s.stats().await.expect("stats").rejected, 2);
    let cycles = s.cycles("inv", 5).await.expect("cycles");
    assert_eq!(cycles[0].counts.rejected, 2);
}

/// Only the head of each destination is claimable; in-flight heads block their
/// destination and nothing else; ids follow source order.
pub async fn claims_follow_destination_order(s: &dyn AuditStore) {
    commit(
        s,
        "inv",
        vec![
            planned("1", "a", &["#a", "#b"]),
            planned("2", "a", &["#a"]),
            planned("3", "a", &["#b", "#c"]),
        ],
        1,
    )
    .await;
    let first = s.claim_due(&me(), t(5), 10).await.expect("claim");
    let got: Vec<(String, String)> = first
        .iter()
        .map(|c| (c.destination.address.clone(), c.record.key.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("#a".into(), "1".into()),
            ("#b".into(), "1".into()),
            ("#c".into(), "3".into())
        ],
        "heads in id order"
    );
    assert!(first.windows(2).all(|w| w[0].id < w[1].id));
    assert!(first.iter().all(|c| c.attempt == 1
        && c.round_attempt == 1
        && !c.in_doubt
        && c.first_attempt_at == t(5)));
    assert!(
        s.claim_due(&me(), t(5), 10)
            .await
            .expect("claim")
            .is_empty(),
        "in-flight heads block their destinations"
    );
    s.finish_attempt(first[0].id, delivered("r1"), t(6))
        .await
        .expect("finish");
    assert!(
        s.claim_due(&me(), t(6), 0).await.expect("claim").is_empty(),
        "limit 0 claims nothing, even with work due"
    );
    let next = s.claim_due(&me(), t(6), 10).await.expect("claim");
    assert_eq!(next.len(), 1);
    assert_eq!(
        (
            next[0].destination.address.as_str(),
            next[0].record.key.as_str()
        ),
        ("#a", "2")
    );
    let v = s.delivery(first[0].id).await.expect("delivery");
    assert_eq!(v.status, DeliveryStatus::Delivered);
    assert_eq!(v.remote_id.as_deref(), Some("r1"));
    assert_eq!(v.attempts, 1);
    let a = s.attempts(first[0].id).await.expect("attempts");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].outcome.as_deref(), Some("delivered"));
    assert_eq!(a[0].finished_at, Some(t(6)));
}

/// A retrying head waits until due and holds back its destination only.
pub async fn retries_wait_until_due(s: &dyn AuditStore) {
    commit(
        s,
        "inv",
        vec![planned("1", "a", &["#a"]), planned("2", "a", &["#a", "#b"])],
        1,
    )
    .await;
    let c = s.claim_due(&me(), t(5), 1).await.expect("claim");
    assert_eq!(c.len(), 1, "limit");
    s.finish_attempt(
        c[0].id,
        AttemptOutcome::Retry {
            error: err("retryable", "429"),
            next_at: t(60),
            in_doubt: false,
        },
        t(6),
    )
    .await
    .expect("finish");
    let c2 = s.claim_due(&me(), t(7), 10).await.expect("claim");
    assert_eq!(c2.len(), 1, "only #b: #a waits for its head");
    assert_eq!(c2[0].destination.address, "#b");
    assert_eq!(
        s.next_due_at().await.expect("due"),
        Some(t(60)),
        "#a's second delivery, pending since t(1), waits for its head (due at t(60)); \
         #b's is in flight"
    );
    let early = s.claim_due(&me(), t(59), 10).await.expect("claim");
    assert!(early.is_empty());
    let due = s.claim_due(&me(), t(60), 10).await.expect("claim");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, c[0].id);
    assert_eq!((due[0].attempt, due[0].round_attempt), (2, 2));
    assert_eq!(
        due[0].first_attempt_at,
        t(5),
        "budget counts from the first attempt"
    );
    let v = s.delivery(c[0].id).await.expect("delivery");
    assert_eq!(
        v.last_error.as_ref().map(|e| e.message.as_str()),
        Some("429")
    );
    assert_eq!(v.status, DeliveryStatus::InFlight);
}

/// A held delivery (retrying after a permanent error: credentials refused) is made due at
/// once by `retry_held_now`; a retry after a retryable error keeps its time.
pub async fn held_deliveries_are_retried_at_start(s: &dyn AuditStore) {
    commit(s, "inv", vec![planned("1", "a", &["#a", "#b"])], 1).await;
    let c = s.claim_due(&me(), t(5), 10).await.expect("claim");
    assert_eq!(c.len(), 2);
    for d in &c {
        let class = if d.destination.address == "#a" {
            "permanent"
        } else {
            "retryable"
        };
        s.finish_attempt(
            d.id,
            AttemptOutcome::Retry {
                error: err(class, "refused"),
                next_at: t(900),
                in_doubt: false,
            },
            t(6),
        )
        .await
        .expect("finish");
    }
    assert!(
        s.claim_due(&me(), t(10), 10)
            .await
            .expect("claim")
            .is_empty()
    );
    assert_eq!(s.retry_held_now(t(10)).await.expect("held"), 1);
    let due = s.claim_due(&me(), t(10), 10).await.expect("claim");
    assert_eq!(due.len(), 1, "only the held one");
    assert_eq!(due[0].destination.address, "#a");
    assert_eq!(
        s.retry_held_now(t(11)).await.expect("held"),
        0,
        "in flight now"
    );
}

/// A stream renamed in the journal goes on from its position with its records: what it
/// journaled is still a duplicate under the new name, its deliveries and history answer
/// to it; renaming onto a stream that exists is refused, an unknown one is nothing.
pub async fn streams_can_be_renamed(s: &dyn AuditStore) {
    commit(s, "inv", vec![planned("1", "a", &["#a"])], 7).await;
    commit(s, "other", vec![planned("9", "a", &["#a"])], 1).await;
    assert_eq!(s.streams().await.expect("streams"), ["inv", "other"]);
    assert!(s.rename_stream("inv", "ap-inv").await.expect("rename"));
    assert_eq!(s.streams().await.expect("streams"), ["ap-inv", "other"]);
    assert_eq!(s.load_position("inv").await.expect("position"), None);
    assert_eq!(
        s.load_position("ap-inv").await.expect("position"),
        Some(pos(7))
    );
    let again = commit(s, "ap-inv", vec![planned("1", "a", &["#a"])], 8).await;
    assert_eq!(
        (again.inserted, again.duplicates),
        (0, 1),
        "still a duplicate"
    );
    let h = s.record_history("ap-inv", "1").await.expect("history");
    assert_eq!((h.versions.len(), h.deliveries.len()), (1, 1));
    assert_eq!(h.deliveries[0].stream, "ap-inv");
    assert!(
        s.record_history("inv", "1")
            .await
            .expect("h")
            .versions
            .is_empty()
    );
    assert!(!s.cycles("ap-inv", 10).await.expect("cycles").is_empty());
    assert!(matches!(
        s.rename_stream("ap-inv", "other").await,
        Err(Error::InvalidState(_))
    ));
    assert!(!s.rename_stream("nowhere", "else").await.expect("nothing"));
}

/// The latest send end is kept per destination (an older one never replaces it), and a
/// requeued in-flight delivery's destination counts as sent to at the requeue.
pub async fn send_ends_are_kept_per_destination(s: &dyn AuditStore) {
    assert_eq!(s.last_send_end(&dest("#a")).await.expect("none yet"), None);
    s.record_send_ends(&[(dest("#a"), t(5)), (dest("#b"), t(3)), (dest("#a"), t(4))])
        .await
        .expect("record");
    s.record_send_ends(&[(dest("#b"), t(2))])
        .await
        .expect("older");
    assert_eq!(s.last_send_end(&dest("#a")).await.expect("a"), Some(t(5)));
    assert_eq!(
        s.last_send_end(&dest("#b")).await.expect("b"),
        Some(t(3)),
        "an older end replaced a newer one"
    );
    assert_eq!(
        s.last_send_end(&Destination::new("twilio", "#a"))
            .await
            .expect("other sink"),
        None,
        "destinations of another sink with the same address are others"
    );
    commit(s, "inv", vec![planned("1", "a", &["#c"])], 1).await;
    assert_eq!(s.claim_due(&me(), t(6), 10).await.expect("claim").len(), 1);
    assert_eq!(s.requeue_in_flight(&me(), t(50)).await.expect("requeue"), 1);
    assert_eq!(
        s.last_send_end(&dest("#c")).await.expect("c"),
        Some(t(50)),
        "a send interrupted by a crash may have arrived up to the requeue"
    );
}

/// finish_attempt requires a claim.
pub async fn attempts_need_a_claim(s: &dyn AuditStore) {
    commit(s, "inv", vec![planned("1", "a", &["#a"])], 1).await;
    let id = s
        .deliveries(&DeliveryFilter::default())
        .await
        .expect("list")[0]
        .id;
    let e = s
        .finish_attempt(id, delivered("x"), t(2))
        .await
        .expect_err("not claimed");
    assert!(matches!(e, Error::InvalidState(_)), "{e}");
    let e = s
        .finish_attempt(DeliveryId(999_999), delivered("x"), t(2))
        .await
        .expect_err("unknown");
    assert!(matches!(e, Error::NotFound(_)), "{e}");
    s.claim_due(&me(), t(3), 1).await.expect("claim");
    s.finish_attempt(id, delivered("x"), t(4))
        .await
        .expect("finish");
    let e = s
        .finish_attempt(id, delivered("y"), t(5))
        .await
        .expect_err("twice");
    assert!(matches!(e, Error::InvalidState(_)), "{e}");
}

/// Start-up recovery turns in-flight deliveries into due, in-doubt retries.
pub async fn crash_recovery_marks_doubt(s: &dyn AuditStore) {
    commit(s, "inv", vec![planned("1", "a", &["#a", "#b"])], 1).await;
    let c = s.claim_due(&me(), t(5), 10).await.expect("claim");
    assert_eq!(c.len(), 2);
    assert_eq!(s.stats().await.expect("stats").in_flight, 2);
    assert_eq!(
        s.requeue_in_flight(&me(), t(100)).await.expect("requeue"),
        2
    );
    assert_eq!(
        s.requeue_in_flight(&me(), t(100)).await.expect("requeue"),
        0
    );
    let a = s.attempts(c[0].id).await.expect("attempts");
    assert_eq!(a[0].outcome.as_deref(), Some("interrupted"));
    let again = s.claim_due(&me(), t(100), 10).await.expect("claim");
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|c| c.in_doubt && c.attempt == 2));
    s.finish_attempt(
        again[0].id,
        AttemptOutcome::Reconciled(Receipt::new("found")),
        t(101),
    )
    .await
    .expect("finish");
    s.finish_attempt(
        again[1].id,
        AttemptOutcome::Delivered {
            receipt: Receipt::new("resent"),
            after_doubt: true,
        },
        t(101),
    )
    .await
    .expect("finish");
    let st = s.stats().await.expect("stats");
    assert_eq!(
        (st.delivered, st.resent_after_doubt, st.in_flight),
        (2, 1, 0)
    );
    let v = s.delivery(again[0].id).await.expect("delivery");
    assert!(!v.in_doubt);
    assert_eq!(v.remote_id.as_deref(), Some("found"));
    assert_eq!(
        s.delivery(again[1].id).await.expect("d").resent_after_doubt,
        1
    );
    let a = s.attempts(again[0].id).await.expect("attempts");
    assert_eq!(
        a.iter()
            .map(|a| a.outcome.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["interrupted", "reconciled"]
    );
}

/// `replay_failed_to` moves failed deliveries to another destination and makes them
/// pending there; one whose record already went there (or will) stays failed; other
/// destinations and statuses are untouched.
pub async fn failed_deliveries_can_be_sent_elsewhere(s: &dyn AuditStore) {
    commit(
        s,
        "inv",
        vec![
            planned("1", "a", &["#typo", "#b"]),
            planned("2", "a", &["#typo"]),
        ],
        1,
    )
    .await;
    commit(s, "po", vec![planned("9", "a", &["#c"])], 1).await;
    let c = s.claim_due(&me(), t(5), 10).await.expect("claim");
    assert_eq!(c.len(), 3, "heads of #typo, #b, #c");
    for d in &c {
        let outcome = match d.destination.address.as_str() {
            "#b" => delivered("ok"),
            _ => AttemptOutcome::Failed(err("permanent", "channel_not_found")),
        };
        s.finish_attempt(d.id, outcome, t(6)).await.expect("finish");
    }
    let next = s.claim_due(&me(), t(7), 10).await.expect("claim");
    assert_eq!(next.len(), 1, "record 2 on #typo");
    s.finish_attempt(
        next[0].id,
        AttemptOutcome::Failed(err("permanent", "channel_not_found")),
        t(8),
    )
    .await
    .expect("finish");
    let typo = DeliveryFilter {
        destination: Some(dest("#typo")),
        ..DeliveryFilter::default()
    };
    // Record 1 already went to #b: only record 2's failed delivery moves.
    assert_eq!(
        s.replay_failed_to(&typo, &dest("#b"), t(10))
            .await
            .expect("redirect"),
        1
    );
    let moved = s.claim_due(&me(), t(10), 10).await.expect("claim");
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(
        (
            moved[0].record.key.as_str(),
            moved[0].destination.address.as_str()
        ),
        ("2", "#b")
    );
    let h = s.record_history("inv", "1").await.expect("history");
    let on_typo: Vec<_> = h
        .deliveries
        .iter()
        .filter(|d| d.destination == dest("#typo"))
        .collect();
    assert_eq!(on_typo.len(), 1);
    assert_eq!(on_typo[0].status, DeliveryStatus::Failed, "stays failed");
    let po = s.record_history("po", "9").await.expect("history");
    assert_eq!(po.deliveries[0].status, DeliveryStatus::Failed, "not named");
    assert_eq!(
        s.replay_failed_to(&typo, &dest("#b"), t(11))
            .await
            .expect("again"),
        0
    );
}

/// Failed deliveries replay; others refuse.
pub async fn replay_requeues_failed(s: &dyn AuditStore) {
    commit(s, "inv", vec![planned("1", "a", &["#a", "#b", "#c"])], 1).await;
    let c = s.claim_due(&me(), t(5), 10).await.expect("claim");
    s.finish_attempt(
        c[0].id,
        AttemptOutcome::Failed(err("permanent", "channel_not_found")),
        t(10),
    )
    .await
    .expect("f");
    s.finish_attempt(
        c[1].id,
        AttemptOutcome::Failed(err("permanent", "invalid_auth")),
        t(20),
    )
    .await
    .expect("f");
    s.finish_attempt(c[2].id, delivered("ok"), t(20))
        .await
        .expect("f");
    let failed = s.failed(10).await.expect("failed");
    assert_eq!(failed.len(), 2);
    assert_eq!(
        failed[0]
            .last_error
            .as_ref()
            .and_then(|e| e.code.as_deref()),
        Some("E1")
    );
    let e = s.replay(c[2].id, t(30)).await.expect_err("delivered");
    assert!(matches!(e, Error::InvalidState(_)), "{e}");
    let e = s
        .replay(DeliveryId(424_242), t(30))
        .await
        .expect_err("unknown");
    assert!(matches!(e, Error::NotFound(_)), "{e}");
    s.replay(c[0].id, t(30)).await.expect("replay");
    let v = s.delivery(c[0].id).await.expect("d");
    assert_eq!(v.status, DeliveryStatus::Pending);
    assert_eq!(v.attempts, 1, "history kept");
    // Window: only the one failed at t(20) is in [15, 25).
    let n = s
        .replay_failed(
            &DeliveryFilter {
                since: Some(t(15)),
                until: Some(t(25)),
                ..DeliveryFilter::default()
            },
            t(31),
        )
        .await
        .expect("replay_failed");
    assert_eq!(n, 1);
    assert_eq!(
        s.replay_failed(&DeliveryFilter::default(), t(32))
            .await
            .expect("again"),
        0
    );
    let again = s.claim_due(&me(), t(40), 10).await.expect("claim");
    assert_eq!(again.len(), 2);
    // A replay starts a fresh retry budget; the attempt count goes on.
    assert!(
        again
            .iter()
            .all(|c| c.attempt == 2 && c.round_attempt == 1 && c.first_attempt_at == t(40)),
        "{again:?}"
    );
}

/// Callbacks apply by remote id, idempotently, never downgrading.
pub async fn callbacks_never_downgrade(s: &dyn AuditStore) {
    commit(s, "inv", vec![planned("1", "a", &["#a", "#b"])], 1).await;
    let c = s.claim_due(&me(), t(5), 10).await.expect("claim");
    s.finish_attempt(c[0].id, delivered("SM1"), t(6))
        .await
        .expect("f");
    s.finish_attempt(c[1].id, delivered("SM2"), t(6))
        .await
        .expect("f");
    let cb = |id: &str, st: RemoteStatus, code: Option<&str>| CallbackUpdate {
        remote_id: id.into(),
        status: st,
        at: t(7),
        error_code: code.map(str::to_owned),
        delivery: None,
    };
    assert_eq!(
        s.apply_callback(&cb("SMx", RemoteStatus::Sent, None))
            .await
            .expect("cb"),
        CallbackApplied::UnknownRemoteId
    );
    assert_eq!(
        s.apply_callback(&cb("SM1", RemoteStatus::Delivered, None))
            .await
            .expect("cb"),
        CallbackApplied::Applied(c[0].id)
    );
    assert_eq!(
        s.apply_callback(&cb("SM1", RemoteStatus::Sent, None))
            .await
            .expect("cb"),
        CallbackApplied::Stale(c[0].id),
        "out of order"
    );
    assert_eq!(
        s.apply_callback(&cb("SM1", RemoteStatus::Delivered, None))
            .await
            .expect("cb"),
        CallbackApplied::Stale(c[0].id),
        "repeat"
    );
    assert_eq!(
        s.delivery(c[0].id).await.expect("d").remote_status,
        Some(RemoteStatus::Delivered)
    );
    assert_eq!(
        s.apply_callback(&cb("SM2", RemoteStatus::Undelivered, Some("30007")))
            .await
            .expect("cb"),
        CallbackApplied::Applied(c[1].id)
    );
    let v = s.delivery(c[1].id).await.expect("d");
    assert_eq!(
        v.status,
        DeliveryStatus::Failed,
        "a remote failure is a failed delivery"
    );
    assert_eq!(
        v.last_error.as_ref().and_then(|e| e.code.as_deref()),
        Some("30007")
    );
    assert_eq!(
        s.apply_callback(&cb("SM2", RemoteStatus::Delivered, None))
            .await
            .expect("cb"),
        CallbackApplied::Stale(c[1].id)
    );
    s.replay(c[1].id, t(8))
        .await
        .expect("a remote failure is replayable");
    // The replay sends a new message: its status starts afresh, the old message's late
    // callbacks no longer match, the new message's do.
    let again = s.claim_due(&me(), t(9), 10).await.expect("claim");
    assert_eq!(again.len(), 1);
    s.finish_attempt(again[0].id, delivered("SM3"), t(10))
        .await
        .expect("f");
    let v = s.delivery(c[1].id).await.expect("d");
    assert_eq!(
        (v.status, v.remote_status, v.last_error.clone()),
        (DeliveryStatus::Delivered, None, None)
    );
    assert_eq!(
        s.apply_callback(&cb("SM2", RemoteStatus::Failed, Some("30003")))
            .await
            .expect("cb"),
        CallbackApplied::UnknownRemoteId,
        "the replaced message"
    );
    assert_eq!(
        s.apply_callback(&cb("SM3", RemoteStatus::Delivered, None))
            .await
            .expect("cb"),
        CallbackApplied::Applied(c[1].id)
    );
    assert_eq!(
        s.delivery(c[1].id).await.expect("d").remote_status,
        Some(RemoteStatus::Delivered)
    );
}

/// A callback naming its delivery can overtake the answer to its send: it is kept on the
/// in-flight delivery and survives the finish when the receipt has the same remote id; a
/// failure it reported fails the delivery. One naming a delivery not in flight, or no
/// delivery, is unknown.
pub async fn callbacks_ahead_of_their_send_are_kept(s: &dyn AuditStore) {
    commit(s, "inv", vec![planned("1", "a", &["#a", "#b", "#c"])], 1).await;
    let c = s.claim_due(&me(), t(5), 10).await.expect("claim");
    assert_eq!(c.len(), 3);
    let cb =
        |id: &str, st: RemoteStatus, code: Option<&str>, d: Option<DeliveryId>| CallbackUpdate {
            remote_id: id.into(),
            status: st,
            at: t(6),
            error_code: code.map(str::to_owned),
            delivery: d,
        };
    let early = |id, st, code, i: usize| cb(id, st, code, Some(c[i].id));
    for (update, expected) in [
        (early("SM1", RemoteStatus::Sent, None, 0), c[0].id),
        (early("SM1", RemoteStatus::Delivered, None, 0), c[0].id),
        (
            early("SM2", RemoteStatus::Undelivered, Some("30006"), 1),
            c[1].id,
        ),
        (early("SMold", RemoteStatus::Delivered, None, 2), c[2].id),
    ] {
        assert_eq!(
            s.apply_callback(&update).await.expect("cb"),
            CallbackApplied::Applied(expected)
        );
    }
    assert_eq!(
        s.delivery(c[0].id).await.expect("d").status,
        DeliveryStatus::InFlight,
        "the send's own outcome decides"
    );
    s.finish_attempt(c[0].id, delivered("SM1"), t(7))
        .await
        .expect("f");
    s.finish_attempt(c[1].id, delivered("SM2"), t(7))
        .await
        .expect("f");
    // The third send's answer names another message: the callback was not about it.
    s.finish_attempt(c[2].id, delivered("SM3"), t(7))
        .await
        .expect("f");
    let v = s.delivery(c[0].id).await.expect("d");
    assert_eq!(
        (v.status, v.remote_status),
        (DeliveryStatus::Delivered, Some(RemoteStatus::Delivered))
    );
    let v = s.delivery(c[1].id).await.expect("d");
    assert_eq!(
        (v.status, v.remote_status),
        (DeliveryStatus::Failed, Some(RemoteStatus::Undelivered)),
        "the carrier's failure, reported before the answer, is not lost"
    );
    assert_eq!(
        v.last_error.as_ref().and_then(|e| e.code.as_deref()),
        Some("30006")
    );
    let v = s.delivery(c[2].id).await.expect("d");
    assert_eq!(
        (v.status, v.remote_id.as_deref(), v.remote_status),
        (DeliveryStatus::Delivered, Some("SM3"), None)
    );
    // Later callbacks find the deliveries by remote id as usual.
    assert_eq!(
        s.apply_callback(&cb("SM1", RemoteStatus::Sent, None, None))
            .await
            .expect("cb"),
        CallbackApplied::Stale(c[0].id)
    );
    // Naming a delivery that is no longer in flight, or none at all, finds nothing.
    assert_eq!(
        s.apply_callback(&cb("SM9", RemoteStatus::Sent, None, Some(c[2].id)))
            .await
            .expect("cb"),
        CallbackApplied::UnknownRemoteId
    );
    assert_eq!(
        s.apply_callback(&cb(
            "SM9",
            RemoteStatus::Sent,
            None,
            Some(DeliveryId(9_999))
        ))
        .await
        .expect("cb"),
        CallbackApplied::UnknownRemoteId
    );
}

/// Later versions of a record carry the first delivered receipt for the destination.
pub async fn later_versions_thread_on_the_first(s: &dyn AuditStore) {
    commit(s, "inv", vec![planned("1", "a", &["#a"])], 1).await;
    let c = s.claim_due(&me(), t(5), 10).await.expect("claim");
    assert_eq!(c[0].thread, None);
    s.finish_attempt(c[0].id, delivered("1700.1"), t(6))
        .await
        .expect("f");
    commit(s, "inv", vec![planned("1", "b", &["#a", "#z"])], 2).await;
    let c = s.claim_due(&me(), t(7), 10).await.expect("claim");
    let on_a = c
        .iter()
        .find(|c| c.destination.address == "#a")
        .expect("#a");
    assert_eq!(
        on_a.thread.as_ref().map(|r| r.remote_id.as_str()),
        Some("1700.1")
    );
    assert_eq!(
        on_a.thread.as_ref().and_then(|r| r.remote_scope.as_deref()),
        Some("C1")
    );
    let on_z = c
        .iter()
        .find(|c| c.destination.address == "#z")
        .expect("#z");
    assert_eq!(on_z.thread, None);
    // The scope a destination's messages were given, for a sink that cannot resolve it.
    let first = s.delivery(DeliveryId(1)).await.expect("delivery 1");
    assert_eq!(first.remote_scope.as_deref(), Some("C1"));
    assert_eq!(
        s.destination_scope(&dest("#a")).await.expect("scope"),
        Some("C1".to_owned())
    );
    assert_eq!(
        s.destination_scope(&dest("#z")).await.expect("scope"),
        None,
        "nothing delivered to #z yet"
    );
}

/// Queries by record, destination, status, stream and time; cycles; stats.
pub async fn queries_answer(s: &dyn AuditStore) {
    commit(
        s,
        "inv",
        vec![planned("1", "a", &["#a", "#b"]), planned("2", "a", &["#a"])],
        1,
    )
    .await;
    commit(s, "po", vec![planned("1", "a", &["#a"])], 1).await;
    let cycle = s.begin_cycle("inv", t(50)).await.expect("begin");
    s.end_cycle(
        cycle,
        CycleEnd {
            at: t(51),
            error: Some(err("retryable", "ERP down")),
            watermark: Some(t(40)),
        },
    )
    .await
    .expect("end");
    let all = s.deliveries(&DeliveryFilter::default()).await.expect("all");
    assert_eq!(all.len(), 4);
    let by_dest = s
        .deliveries(&DeliveryFilter {
            destination: Some(dest("#a")),
            ..DeliveryFilter::default()
        })
        .await
        .expect("q");
    assert_eq!(by_dest.len(), 3);
    let by_stream = s
        .deliveries(&DeliveryFilter {
            stream: Some("po".into()),
            ..DeliveryFilter::default()
        })
        .await
        .expect("q");
    assert_eq!(by_stream.len(), 1);
    let by_record = s
        .deliveries(&DeliveryFilter {
            stream: Some("inv".into()),
            record_key: Some("1".into()),
            ..DeliveryFilter::default()
        })
        .await
        .expect("q");
    assert_eq!(by_record.len(), 2);
    let limited = s
        .deliveries(&DeliveryFilter {
            limit: Some(2),
            ..DeliveryFilter::default()
        })
        .await
        .expect("q");
    assert_eq!(
        limited.iter().map(|d| d.id).collect::<Vec<_>>(),
        all[..2].iter().map(|d| d.id).collect::<Vec<_>>()
    );
    let pending = s
        .deliveries(&DeliveryFilter::status(DeliveryStatus::Pending))
        .await
        .expect("q");
    assert_eq!(pending.len(), 4);
    assert!(
        s.deliveries(&DeliveryFilter {
            since: Some(t(2)),
            ..DeliveryFilter::default()
        })
        .await
        .expect("q")
        .is_empty()
    );
    let h = s.record_history("inv", "1").await.expect("history");
    assert_eq!(h.versions.len(), 1);
    assert_eq!(
        h.versions[0].record,
        sample_record("1", "a"),
        "the record round-trips exactly"
    );
    assert_eq!(h.deliveries.len(), 2);
    assert!(
        s.record_history("inv", "nope")
            .await
            .expect("history")
            .versions
            .is_empty()
    );
    let cycles = s.cycles("inv", 10).await.expect("cycles");
    assert_eq!(cycles.len(), 2);
    assert_eq!(
        cycles[0].error.as_ref().map(|e| e.message.as_str()),
        Some("ERP down"),
        "newest first"
    );
    assert_eq!(cycles[0].watermark, Some(t(40)));
    assert_eq!(cycles[1].pages, 1);
    assert_eq!(cycles[1].counts.inserted, 2);
    assert_eq!(cycles[1].position, Some(pos(1)));
    assert_eq!(cycles[1].finished_at, Some(t(2)));
    assert_eq!(s.cycles("inv", 1).await.expect("cycles").len(), 1);
    assert_eq!(s.next_due_at().await.expect("due"), Some(t(1)));
    let st = s.stats().await.expect("stats");
    assert_eq!((st.pending, st.records), (4, 3));
}

/// Concurrent claimers never get the same delivery.
pub async fn concurrent_claims_are_exclusive(s: Arc<dyn AuditStore>) {
    let records: Vec<PlannedRecord> = (0..40)
        .map(|i| planned(&i.to_string(), "a", &[&format!("#d{}", i % 20)]))
        .collect();
    commit(&*s, "inv", records, 1).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for round in 0..20 {
                for c in s.claim_due(&me(), t(10 + round), 3).await.expect("claim") {
                    mine.push(c.id);
                    s.finish_attempt(c.id, delivered(&format!("r{}", c.id)), t(10 + round))
                        .await
                        .expect("finish");
                }
                tokio::task::yield_now().await;
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "a delivery was claimed twice");
    assert_eq!(n, 40, "every delivery claimed exactly once");
}

/// Recovery by another owner never touches a live claim: owner B cannot requeue owner A's
/// in-flight delivery while A's lease holds (renewals extend it), and takes it over (in
/// doubt) once the lease ran out.
pub async fn leases_protect_live_claims(s: &dyn AuditStore) {
    let a = Claimant::new(OwnerId::new("owner-a")).with_lease(std::time::Duration::from_secs(60));
    let b = Claimant::new(OwnerId::new("owner-b")).with_lease(std::time::Duration::from_secs(60));
    commit(
        s,
        "inv",
        vec![planned("1", "a", &["#a"]), planned("2", "a", &["#b"])],
        1,
    )
    .await;
    let ca = s.claim_due(&a, t(10), 1).await.expect("a claims");
    assert_eq!(ca.len(), 1);
    let cb = s.claim_due(&b, t(10), 10).await.expect("b claims");
    assert_eq!(cb.len(), 1);
    assert_ne!(ca[0].id, cb[0].id);
    // B starts up (its own recovery) while A is live: only B's own claim is requeued.
    assert_eq!(
        s.requeue_in_flight(&b, t(20)).await.expect("requeue"),
        1,
        "B requeues its own claim only"
    );
    let d = s.delivery(ca[0].id).await.expect("delivery");
    assert_eq!(
        d.status,
        DeliveryStatus::InFlight,
        "A's live claim is untouched"
    );
    assert!(!d.in_doubt);
    // A renews at t=50: its lease now holds until t=110.
    assert_eq!(
        s.renew_claims(&a, &[ca[0].id, cb[0].id], t(50))
            .await
            .expect("renew"),
        1,
        "A renews only what it holds"
    );
    assert_eq!(
        s.renew_claims(&b, &[ca[0].id], t(50)).await.expect("renew"),
        0
    );
    assert_eq!(s.requeue_in_flight(&b, t(100)).await.expect("requeue"), 0);
    assert_eq!(
        s.delivery(ca[0].id).await.expect("delivery").status,
        DeliveryStatus::InFlight
    );
    // A died: after its lease ran out B takes the delivery over, in doubt.
    assert_eq!(s.requeue_in_flight(&b, t(111)).await.expect("requeue"), 1);
    let d = s.delivery(ca[0].id).await.expect("delivery");
    assert_eq!(d.status, DeliveryStatus::Retrying);
    assert!(d.in_doubt);
    let again = s.claim_due(&b, t(112), 10).await.expect("b claims");
    assert!(again.iter().any(|c| c.id == ca[0].id && c.in_doubt));
    let attempts = s.attempts(ca[0].id).await.expect("attempts");
    assert_eq!(attempts[0].outcome.as_deref(), Some("interrupted"));
}

/// One owner polls a stream at a time; the lease is renewed by its holder, released, or
/// taken over after it ran out.
pub async fn stream_leases_are_exclusive(s: &dyn AuditStore) {
    let a = Claimant::new(OwnerId::new("owner-a")).with_lease(std::time::Duration::from_secs(60));
    let b = Claimant::new(OwnerId::new("owner-b")).with_lease(std::time::Duration::from_secs(60));
    assert!(s.acquire_stream("inv", &a, t(0)).await.expect("a takes"));
    assert!(!s.acquire_stream("inv", &b, t(1)).await.expect("b refused"));
    assert!(
        s.acquire_stream("other", &b, t(1))
            .await
            .expect("another stream")
    );
    assert!(s.acquire_stream("inv", &a, t(50)).await.expect("a renews"));
    assert!(
        !s.acquire_stream("inv", &b, t(100))
            .await
            .expect("renewed lease holds")
    );
    s.release_stream("inv", &b)
        .await
        .expect("release by non-holder");
    assert!(
        !s.acquire_stream("inv", &b, t(100))
            .await
            .expect("still A's")
    );
    s.release_stream("inv", &a).await.expect("release");
    assert!(s.acquire_stream("inv", &b, t(101)).await.expect("b takes"));
    // B dies without releasing: A takes over after the lease.
    assert!(
        !s.acquire_stream("inv", &a, t(160))
            .await
            .expect("b's lease holds")
    );
    assert!(
        s.acquire_stream("inv", &a, t(161))
            .await
            .expect("after expiry")
    );
}
