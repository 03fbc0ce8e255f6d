//! The pseudo-random journal history shared by the differential tests: the same
//! operations (large pages with duplicates inside and across pages, claims, every attempt
//! outcome, crashes, replays, callbacks) run on a reference store and on the store under
//! test, and every answer must match.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use jiff::Timestamp;
use ml_core::audit::{
    AttemptOutcome, AuditStore, CallbackUpdate, Claimant, CycleEnd, DeliveryFilter, DeliveryId,
    DeliveryStatus, ErrorInfo, OwnerId, PageCommit, PlannedRecord, RemoteStatus,
};
use ml_core::record::Rejected;
use ml_core::sink::Receipt;
use ml_core::testing::audit::sample_record;
use ml_core::{Destination, Position};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The claimant of these tests.
fn me() -> Claimant {
    Claimant::new(OwnerId::new("test"))
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("timestamp")
}

fn page(rng: &mut Rng, stream: &str, cycle: ml_core::audit::CycleId, at: i64) -> PageCommit {
    let n = [1, 7, 64, 65, 130, 200][rng.below(6) as usize];
    let records = (0..n)
        .map(|_| {
            // A small key space: duplicates inside a page, across pages, new versions.
            let key = rng.below(300).to_string();
            let version = rng.below(3).to_string();
            let mut record = sample_record(&key, &version);
            if rng.below(10) == 0 {
                record = record.with_idempotency_key(format!("REF-{}", rng.below(100)));
            }
            let destinations = (0..rng.below(4))
                .map(|_| {
                    Destination::new(
                        ["slack", "sms"][rng.below(2) as usize],
                        format!("#{}", rng.below(6)),
                    )
                })
                .collect();
            PlannedRecord {
                record,
                destinations,
            }
        })
        .collect();
    let rejected = (0..rng.below(3))
        .map(|_| {
            let k = rng.below(20);
            Rejected::new(
                k.is_multiple_of(2).then(|| k.to_string()),
                "missing amount",
                serde_json::json!({ "k": k }),
            )
        })
        .collect();
    PageCommit {
        stream: stream.into(),
        cycle,
        records,
        rejected,
        position: Position::from_json(serde_json::json!({ "at": at })),
        at: t(at),
    }
}

fn error(rng: &mut Rng) -> ErrorInfo {
    ErrorInfo {
        class: "retryable".into(),
        code: (rng.below(2) == 0).then(|| "429".to_owned()),
        message: format!("failure {}", rng.below(1000)),
    }
}

async fn compare_everything(m: &dyn AuditStore, s: &dyn AuditStore, streams: &[&str]) {
    let all = DeliveryFilter::default();
    let dm = m.deliveries(&all).await.expect("memory");
    let ds = s.deliveries(&all).await.expect("sqlite");
    assert_eq!(dm, ds, "deliveries");
    for d in &dm {
        assert_eq!(
            m.attempts(d.id).await.expect("m"),
            s.attempts(d.id).await.expect("s"),
            "attempts of {}",
            d.id
        );
    }
    assert_eq!(
        m.stats().await.expect("m"),
        s.stats().await.expect("s"),
        "stats"
    );
    assert_eq!(
        m.next_due_at().await.expect("m"),
        s.next_due_at().await.expect("s")
    );
    for stream in streams {
        assert_eq!(
            m.load_position(stream).await.expect("m"),
            s.load_position(stream).await.expect("s")
        );
        assert_eq!(
            m.cycles(stream, 1000).await.expect("m"),
            s.cycles(stream, 1000).await.expect("s"),
            "cycles of {stream}"
        );
        for key in ["0", "1", "17", "299"] {
            assert_eq!(
                m.record_history(stream, key).await.expect("m"),
                s.record_history(stream, key).await.expect("s"),
                "history of {stream}/{key}"
            );
        }
    }
    assert_eq!(
        m.rejected(None, 1000).await.expect("m"),
        s.rejected(None, 1000).await.expect("s")
    );
    for st in DeliveryStatus::ALL {
        let f = DeliveryFilter {
            status: Some(st),
            limit: Some(5),
            ..DeliveryFilter::default()
        };
        assert_eq!(
            m.deliveries(&f).await.expect("m"),
            s.deliveries(&f).await.expect("s")
        );
    }
    let f = DeliveryFilter {
        destination: Some(Destination::new("sms", "#3")),
        since: Some(t(40)),
        ..DeliveryFilter::default()
    };
    assert_eq!(
        m.deliveries(&f).await.expect("m"),
        s.deliveries(&f).await.expect("s")
    );
}

/// Runs the same pseudo-random history on `m` (the reference) and `s`, comparing every
/// answer.
pub async fn differential(seed: u64, m: Arc<dyn AuditStore>, s: Arc<dyn AuditStore>) {
    let mut rng = Rng(seed);
    let streams = ["inv", "po"];
    let mut remote = 0u64;
    let mut remotes: Vec<String> = Vec::new();
    for step in 0..60i64 {
        let at = step * 10;
        match rng.below(8) {
            0 | 1 => {
                let stream = streams[rng.below(2) as usize];
                let cm = m.begin_cycle(stream, t(at)).await.expect("m");
                let cs = s.begin_cycle(stream, t(at)).await.expect("s");
                assert_eq!(cm, cs, "cycle ids");
                for _ in 0..=rng.below(2) {
                    let p = page(&mut rng, stream, cm, at);
                    let om = m.commit_page(p.clone()).await.expect("m");
                    let os = s.commit_page(p).await.expect("s");
                    assert_eq!(om, os, "page committed (seed {seed}, step {step})");
                }
                let end = CycleEnd {
                    at: t(at + 1),
                    error: (rng.below(3) == 0).then(|| error(&mut rng)),
                    watermark: None,
                };
                m.end_cycle(cm, end.clone()).await.expect("m");
                s.end_cycle(cs, end).await.expect("s");
            }
            2..=4 => {
                let limit = 1 + rng.below(8) as usize;
                let cm = m.claim_due(&me(), t(at), limit).await.expect("m");
                let cs = s.claim_due(&me(), t(at), limit).await.expect("s");
                assert_eq!(cm, cs, "claims (seed {seed}, step {step})");
                for c in cm {
                    let outcome = match rng.below(6) {
                        0 | 1 => {
                            remote += 1;
                            let id = format!("SM{remote}");
                            remotes.push(id.clone());
                            AttemptOutcome::Delivered {
                                receipt: Receipt::new(id).with_scope("C1"),
                                after_doubt: rng.below(2) == 0,
                            }
                        }
                        2 => {
                            remote += 1;
                            let id = format!("SM{remote}");
                            remotes.push(id.clone());
                            AttemptOutcome::Reconciled(Receipt::new(id))
                        }
                        3 => AttemptOutcome::Retry {
                            error: error(&mut rng),
                            next_at: t(at + rng.below(40) as i64),
                            in_doubt: rng.below(2) == 0,
                        },
                        4 => AttemptOutcome::Failed(error(&mut rng)),
                        // Left in flight.
                        _ => continue,
                    };
                    let fin = t(at + 1);
                    m.finish_attempt(c.id, outcome.clone(), fin)
                        .await
                        .expect("m");
                    s.finish_attempt(c.id, outcome, fin).await.expect("s");
                }
            }
            5 => {
                assert_eq!(
                    m.requeue_in_flight(&me(), t(at)).await.expect("m"),
                    s.requeue_in_flight(&me(), t(at)).await.expect("s")
                );
            }
            6 => {
                let f = DeliveryFilter {
                    since: Some(t(at - 100)),
                    limit: Some(rng.below(4) as usize + 1),
                    ..DeliveryFilter::default()
                };
                assert_eq!(
                    m.replay_failed(&f, t(at)).await.expect("m"),
                    s.replay_failed(&f, t(at)).await.expect("s")
                );
            }
            _ => {
                if remotes.is_empty() {
                    continue;
                }
                // Now and then one that overtook its send's answer: a remote id no
                // delivery has yet, naming a delivery (in flight or not).
                let early = rng.below(4) == 0;
                let id = if early {
                    remote += 1;
                    format!("SMearly{remote}")
                } else {
                    remotes[rng.below(remotes.len() as u64) as usize].clone()
                };
                let update = CallbackUpdate {
                    remote_id: id,
                    status: RemoteStatus::ALL[rng.below(7) as usize],
                    at: t(at + rng.below(20) as i64),
                    error_code: (rng.below(2) == 0).then(|| "30007".to_owned()),
                    delivery: early.then(|| DeliveryId(1 + rng.below(64) as i64)),
                };
                assert_eq!(
                    m.apply_callback(&update).await.expect("m"),
                    s.apply_callback(&update).await.expect("s")
                );
            }
        }
    }
    compare_everything(&*m, &*s, &streams).await;
}
