//! The conformance checks of run claims and group commits
//! ([`AuditWrite::claim_runs`](crate::audit::AuditWrite::claim_runs),
//! [`AuditWrite::finish_attempts`](crate::audit::AuditWrite::finish_attempts),
//! [`AuditWrite::release_claims`](crate::audit::AuditWrite::release_claims)), run by
//! [`audit_store_conformance`](super::audit_store_conformance). They hold for the trait's
//! default implementations (runs of 1) as well as for stores that claim longer runs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;

use super::audit::sample_record;
use crate::audit::{
    AttemptOutcome, AuditStore, AuditStoreExt, Claimant, ClaimedDelivery, CycleEnd, DeliveryId,
    DeliveryStatus, ErrorInfo, FinishedAttempt, OwnerId, PageCommit, PlannedRecord, RunLengths,
};
use crate::cursor::Position;
use crate::error::Error;
use crate::sink::{Destination, Receipt};

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("timestamp")
}

fn owner(name: &str) -> Claimant {
    Claimant::new(OwnerId::new(name))
}

fn dest(a: &str) -> Destination {
    Destination::new("slack", a)
}

fn runs_of(n: usize, to: &[&str]) -> RunLengths {
    to.iter().fold(RunLengths::new(), |r, a| r.with(dest(a), n))
}

async fn commit(s: &dyn AuditStore, records: Vec<(String, String, Vec<&str>)>) {
    let cycle = s.begin_cycle("inv", t(1)).await.expect("begin_cycle");
    s.commit_page(PageCommit {
        stream: "inv".into(),
        cycle,
        records: records
            .into_iter()
            .map(|(key, version, to)| PlannedRecord {
                record: sample_record(&key, &version),
                destinations: to.iter().map(|a| dest(a)).collect(),
            })
            .collect(),
        rejected: vec![],
        position: Position::from_json(serde_json::json!({ "n": 1 })),
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
}

fn delivered(c: &ClaimedDelivery, at: Timestamp) -> FinishedAttempt {
    FinishedAttempt {
        id: c.id,
        outcome: AttemptOutcome::Delivered {
            receipt: Receipt::new(format!("r{}", c.id)),
            after_doubt: false,
        },
        at,
    }
}

/// Checks what every claim of runs must be: one destination per run, at most `limit`
/// runs, each at most its run length, ids increasing within a run, no record key twice in
/// a run, and each run starting at its destination's head (`heads`: the lowest live id
/// per destination before the claim).
fn check_runs(
    runs: &[Vec<ClaimedDelivery>],
    limit: usize,
    lengths: &RunLengths,
    heads: &HashMap<String, DeliveryId>,
) {
    assert!(
        runs.len() <= limit,
        "{} runs for a limit of {limit}",
        runs.len()
    );
    let mut seen = HashSet::new();
    for run in runs {
        assert!(!run.is_empty(), "an empty run");
        let d = &run[0].destination;
        assert!(seen.insert(d.clone()), "two runs for {d}");
        assert!(
            run.len() <= lengths.get(d),
            "a run longer than allowed for {d}"
        );
        assert!(
            run.iter().all(|c| &c.destination == d),
            "a run mixes destinations"
        );
        assert!(
            run.windows(2).all(|w| w[0].id < w[1].id),
            "a run out of order"
        );
        let keys: HashSet<&str> = run.iter().map(|c| c.record.key.as_str()).collect();
        assert_eq!(keys.len(), run.len(), "a record key twice in one run");
        assert_eq!(
            heads.get(&d.address),
            Some(&run[0].id),
            "a run must start at the destination's head"
        );
    }
}

async fn heads(s: &dyn AuditStore) -> HashMap<String, DeliveryId> {
    let mut out = HashMap::new();
    for d in s
        .deliveries(&crate::audit::DeliveryFilter::default())
        .await
        .expect("deliveries")
    {
        if !d.status.is_terminal() {
            out.entry(d.destination.address.clone()).or_insert(d.id);
        }
    }
    out
}

/// Runs are consecutive deliveries of one destination from its head, in source order; a
/// later version of a record in the run waits for the first (it threads on its receipt);
/// everything claimed is in flight with an attempt open; a group commit records every
/// outcome; the next claim goes on where the last run ended.
pub async fn runs_follow_destination_order(s: &dyn AuditStore) {
    let mut records: Vec<(String, String, Vec<&str>)> = (1..=6)
        .map(|i| (i.to_string(), "a".to_owned(), vec!["#a"]))
        .collect();
    records.push(("7".into(), "a".into(), vec!["#b"]));
    // A later version of record 2: threads on the first version's message.
    records.push(("2".into(), "b".into(), vec!["#a"]));
    records.push(("8".into(), "a".into(), vec!["#a", "#b"]));
    commit(s, records).await;
    let me = owner("runs-a");
    let lengths = runs_of(4, &["#a", "#b"]);
    let mut sent: Vec<(String, String, String)> = Vec::new();
    for round in 0..20 {
        let before = heads(s).await;
        let runs = s
            .claim_runs(&me, t(10 + round), 10, &lengths)
            .await
            .expect("claim_runs");
        if runs.is_empty() {
            break;
        }
        check_runs(&runs, 10, &lengths, &before);
        let mut group = Vec::new();
        for c in runs.iter().flatten() {
            let v = s.delivery(c.id).await.expect("delivery");
            assert_eq!(
                v.status,
                DeliveryStatus::InFlight,
                "claimed means in flight"
            );
            let a = s.attempts(c.id).await.expect("attempts");
            assert_eq!(
                a.last().map(|a| (a.number, a.outcome.is_none())),
                Some((1, true))
            );
            if c.record.key == "2" && c.record.dedupe_version() == "b" {
                assert_eq!(
                    c.thread.as_ref().map(|r| r.remote_id.as_str()),
                    s.deliveries(&crate::audit::DeliveryFilter {
                        record_key: Some("2".into()),
                        ..Default::default()
                    })
                    .await
                    .expect("deliveries")[0]
                        .remote_id
                        .as_deref(),
                    "a later version threads on the first one's receipt"
                );
                assert!(c.thread.is_some(), "the first version was delivered first");
            }
            sent.push((
                c.destination.address.clone(),
                c.record.key.clone(),
                c.record.dedupe_version(),
            ));
            group.push(delivered(c, t(11 + round)));
        }
        s.finish_attempts(group).await.expect("group commit");
    }
    let order = |to: &str| -> Vec<(String, String)> {
        sent.iter()
            .filter(|(d, ..)| d == to)
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let kv = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(
        order("#a"),
        [
            kv("1", "a"),
            kv("2", "a"),
            kv("3", "a"),
            kv("4", "a"),
            kv("5", "a"),
            kv("6", "a"),
            kv("2", "b"),
            kv("8", "a")
        ],
        "per-destination order is source order"
    );
    assert_eq!(order("#b"), [kv("7", "a"), kv("8", "a")]);
    let st = s.stats().await.expect("stats");
    assert_eq!(
        (st.delivered, st.in_flight, st.pending),
        (10, 0, 0),
        "{st:?}"
    );
}

/// Two claimants claiming runs at once never get the same delivery, and between them
/// deliver everything once.
pub async fn run_claims_are_exclusive(s: Arc<dyn AuditStore>) {
    let records = (0..60)
        .map(|i| {
            (
                i.to_string(),
                "a".to_owned(),
                vec![["#d0", "#d1", "#d2", "#d3", "#d4"][i % 5]],
            )
        })
        .collect();
    commit(&*s, records).await;
    let lengths = runs_of(8, &["#d0", "#d1", "#d2", "#d3", "#d4"]);
    let mut tasks = Vec::new();
    for name in ["runs-a", "runs-b", "runs-c"] {
        let s = Arc::clone(&s);
        let lengths = lengths.clone();
        tasks.push(tokio::spawn(async move {
            let me = owner(name);
            let mut mine = Vec::new();
            for round in 0..40 {
                let runs = s
                    .claim_runs(&me, t(10 + round), 2, &lengths)
                    .await
                    .expect("claim_runs");
                let group: Vec<FinishedAttempt> = runs
                    .iter()
                    .flatten()
                    .map(|c| delivered(c, t(10 + round)))
                    .collect();
                mine.extend(group.iter().map(|f| f.id));
                s.finish_attempts(group).await.expect("group commit");
                tokio::task::yield_now().await;
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "a delivery was claimed twice");
    assert_eq!(n, 60, "every delivery claimed exactly once");
}

/// A group commit records every outcome it can: a delivery that is not in flight is
/// refused (`InvalidState`) without losing the others.
pub async fn group_commits_record_every_outcome(s: &dyn AuditStore) {
    commit(
        s,
        (1..=4)
            .map(|i| {
                (
                    i.to_string(),
                    "a".to_owned(),
                    vec![["#a", "#b", "#c", "#d"][i - 1]],
                )
            })
            .collect(),
    )
    .await;
    let me = owner("group-a");
    let claimed: Vec<ClaimedDelivery> = s
        .claim_runs(&me, t(5), 10, &RunLengths::new())
        .await
        .expect("claim")
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(claimed.len(), 4);
    let err = |m: &str| ErrorInfo {
        class: "retryable".into(),
        code: None,
        message: m.into(),
    };
    let mut group = vec![
        delivered(&claimed[0], t(6)),
        FinishedAttempt {
            id: claimed[1].id,
            outcome: AttemptOutcome::Retry {
                error: err("busy"),
                next_at: t(60),
                in_doubt: true,
            },
            at: t(6),
        },
        FinishedAttempt {
            id: claimed[2].id,
            outcome: AttemptOutcome::Failed(err("gone")),
            at: t(6),
        },
    ];
    // Already finished above in the same group: refused, the rest stands.
    group.push(delivered(&claimed[0], t(6)));
    group.push(delivered(&claimed[3], t(6)));
    let e = s.finish_attempts(group).await.expect_err("one refusal");
    assert!(matches!(e, Error::InvalidState(_)), "{e}");
    let status = |i: usize| {
        let id = claimed[i].id;
        async move { s.delivery(id).await.expect("delivery") }
    };
    assert_eq!(status(0).await.status, DeliveryStatus::Delivered);
    let retry = status(1).await;
    assert_eq!(
        (retry.status, retry.in_doubt),
        (DeliveryStatus::Retrying, true)
    );
    assert_eq!(status(2).await.status, DeliveryStatus::Failed);
    assert_eq!(status(3).await.status, DeliveryStatus::Delivered);
    let a = s.attempts(claimed[1].id).await.expect("attempts");
    assert_eq!(a[0].outcome.as_deref(), Some("in_doubt"));
}

/// What a crash leaves of a run: outcomes group-committed before it stand; the rest of the
/// run (sent or not, outcome unknown) is recovered as due, in-doubt retries, in order, so
/// the sink reconciles them before anything is sent again. Claims given back unsent are
/// due again at once and never in doubt because of it.
pub async fn unfinished_runs_are_recovered_in_doubt(s: &dyn AuditStore) {
    commit(
        s,
        (1..=6)
            .map(|i| (i.to_string(), "a".to_owned(), vec!["#a"]))
            .collect(),
    )
    .await;
    let me = owner("crash-a");
    let lengths = runs_of(3, &["#a"]);
    let run: Vec<ClaimedDelivery> = s
        .claim_runs(&me, t(5), 10, &lengths)
        .await
        .expect("claim")
        .into_iter()
        .flatten()
        .collect();
    assert!(!run.is_empty() && run.len() <= 3);
    // The first outcome was group-committed; then the process died.
    s.finish_attempts(vec![delivered(&run[0], t(6))])
        .await
        .expect("group commit");
    let left: Vec<DeliveryId> = run[1..].iter().map(|c| c.id).collect();
    let restarted = owner("crash-a");
    assert_eq!(
        s.requeue_in_flight(&restarted, t(20))
            .await
            .expect("requeue"),
        left.len() as u64
    );
    assert_eq!(
        s.delivery(run[0].id).await.expect("delivery").status,
        DeliveryStatus::Delivered,
        "a committed outcome survives"
    );
    for id in &left {
        let d = s.delivery(*id).await.expect("delivery");
        assert_eq!(
            (d.status, d.in_doubt),
            (DeliveryStatus::Retrying, true),
            "{d:?}"
        );
    }
    let again: Vec<ClaimedDelivery> = s
        .claim_runs(&restarted, t(21), 10, &lengths)
        .await
        .expect("claim")
        .into_iter()
        .flatten()
        .collect();
    let ids: Vec<DeliveryId> = again.iter().map(|c| c.id).collect();
    assert_eq!(
        ids.first(),
        left.first().or(ids.first()),
        "the head goes first"
    );
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    for c in &again {
        assert_eq!(
            c.in_doubt,
            left.contains(&c.id),
            "in doubt exactly where unknown"
        );
    }
    // Give back all but the head, unsent: due again at once, not in doubt because of it.
    let (head, rest) = again.split_first().expect("a head");
    assert_eq!(
        s.release_claims(&restarted, rest, t(22))
            .await
            .expect("release"),
        rest.len() as u64
    );
    assert_eq!(
        s.release_claims(&owner("someone-else"), std::slice::from_ref(head), t(22))
            .await
            .expect("release"),
        0,
        "only the claimant's own claims are given back"
    );
    for c in again.iter().skip(1) {
        let d = s.delivery(c.id).await.expect("delivery");
        assert_ne!(d.status, DeliveryStatus::InFlight);
        assert_eq!(d.in_doubt, c.in_doubt, "releasing adds no doubt");
    }
    s.finish_attempts(vec![delivered(head, t(23))])
        .await
        .expect("finish head");
    let next = s
        .claim_runs(&restarted, t(24), 10, &lengths)
        .await
        .expect("claim");
    assert_eq!(
        next.first().and_then(|r| r.first()).map(|c| c.id),
        rest.first()
            .map(|c| c.id)
            .or_else(|| next.first().and_then(|r| r.first()).map(|c| c.id)),
        "the released head is claimed next"
    );
}
