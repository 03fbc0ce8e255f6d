//! The `Sink` conformance suites: [`sink_conformance`] (the contract against a working
//! destination) and [`sink_fault_conformance`] (classification of the faults every remote
//! API shows, against the sink's emulator with fault injection).

use std::time::Duration;

use crate::error::ErrorClass;
use crate::record::{EntityKind, Record};
use crate::sink::{Destination, Outbound, Receipt, Reconciled, Sink};

/// Checks a sink's contract against a working destination: `send` returns a receipt with a
/// remote id; `reconcile` (when offered) finds what was sent and does not find what was
/// not; `Display` names the system; neither `Debug` nor `Display` shows any of `secrets`.
/// `first_delivery_id` must not have been used on that destination before.
pub async fn sink_conformance(
    sink: &dyn Sink,
    destination: &Destination,
    first_delivery_id: i64,
    secrets: &[&str],
) {
    let shown = format!("{sink} {sink:?}");
    assert!(
        !sink.to_string().trim().is_empty(),
        "Display must name the system"
    );
    for s in secrets {
        assert!(
            !shown.contains(s),
            "a secret leaks through Display/Debug: {shown}"
        );
    }
    let msg = message(sink, destination, first_delivery_id);
    let receipt = sink
        .send(&msg)
        .await
        .unwrap_or_else(|e| panic!("{sink}: send failed: {e}"));
    assert!(
        !receipt.remote_id.trim().is_empty(),
        "{sink}: empty remote id"
    );
    if sink.can_reconcile() {
        match sink.reconcile(&msg).await {
            Ok(Reconciled::Found(r)) => assert_eq!(
                r.remote_id, receipt.remote_id,
                "{sink}: reconcile found another message"
            ),
            other => panic!("{sink}: reconcile must find a sent message, got {other:?}"),
        }
        let never = Outbound {
            delivery_id: crate::audit::DeliveryId(first_delivery_id + 1),
            ..msg.clone()
        };
        match sink.reconcile(&never).await {
            Ok(Reconciled::NotFound) => {}
            other => panic!("{sink}: reconcile must not find an unsent message, got {other:?}"),
        }
    } else {
        assert!(
            sink.reconcile(&msg).await.is_err(),
            "{sink}: reconcile without support must be an error"
        );
    }
}

/// An outbound message for `delivery_id`, rendered by the sink (a record of its own per
/// delivery id, so deliveries never look alike).
fn message(sink: &dyn Sink, destination: &Destination, delivery_id: i64) -> Outbound {
    let record = Record::new(
        "Conformance(test)",
        EntityKind::SupplierInvoice,
        format!("conf-{delivery_id}"),
        jiff::Timestamp::from_second(1_800_000_000).expect("ts"),
    );
    let rendered = sink.render(&record, destination);
    assert!(
        !rendered.text.trim().is_empty(),
        "rendering produced no text"
    );
    Outbound {
        delivery_id: crate::audit::DeliveryId(delivery_id),
        stream: "conformance".into(),
        record_key: record.key.clone(),
        destination: destination.clone(),
        rendered,
        thread: None,
        attempt: 1,
        planned_at: jiff::Timestamp::now(),
    }
}

/// A fault [`sink_fault_conformance`] asks the emulator to inject into the sink's next send
/// request (the emulator's fault layer maps it: with `ml_sandbox::fault`, to
/// `Fault::TooManyRequests`, `Fault::Status(503)` and `Fault::AppliedThenDropped`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InjectedFault {
    /// HTTP 429 with `Retry-After: <whole seconds>`, nothing applied.
    TooManyRequests {
        /// The `Retry-After` value.
        retry_after: Duration,
    },
    /// HTTP 503 Service Unavailable, nothing applied: the 5xx every API documents as
    /// "not processed, try again". (A 500 may have been partly applied, and sinks rightly
    /// class it in doubt; the suite does not ask for it.)
    ServiceUnavailable,
    /// The request is applied (the message exists remotely), then the connection is closed
    /// before the answer.
    AppliedThenDropped,
}

impl InjectedFault {
    /// The HTTP status the remote side answers with (`None`: no answer at all).
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::TooManyRequests { .. } => Some(429),
            Self::ServiceUnavailable => Some(503),
            Self::AppliedThenDropped => None,
        }
    }
}

/// The emulator side of [`sink_fault_conformance`].
pub trait SinkFaultInjector: Send + Sync {
    /// Makes the sink's NEXT send request fail with `fault` (once; later requests succeed).
    fn inject(&self, fault: InjectedFault);

    /// How many messages the remote side holds for the destination under test (posted
    /// messages, accepted SMS, accepted mails): the suite checks which faults applied.
    fn applied(&self) -> usize;
}

/// How long the suite's 429 asks the sink to wait.
pub const FAULT_RETRY_AFTER: Duration = Duration::from_secs(7);

/// Checks how a sink classifies the faults every remote API shows, against its emulator
/// through `faults`:
///
/// 1. HTTP 429 with `Retry-After` -> [`ErrorClass::Retryable`] carrying that wait (within
///    a second, for sinks that read an HTTP date or a reset header), nothing applied;
/// 2. HTTP 503 -> retryable (or in doubt, reconciled first), nothing applied;
/// 3. applied, then the connection dropped -> [`ErrorClass::InDoubt`] (never retryable:
///    sending again could deliver twice), the message exists remotely, and, when the sink
///    [can reconcile](Sink::can_reconcile), `reconcile` finds it (and does not find a
///    delivery that was never sent); a sink that cannot reconcile refuses to;
/// 4. a send after the faults succeeds: no fault leaves the sink stuck.
///
/// Delivery ids `first_delivery_id ..= first_delivery_id + 4` must be unused on
/// `destination`. The destination must not rate limit the suite's five sends (turn the
/// emulator's own limit off).
pub async fn sink_fault_conformance(
    sink: &dyn Sink,
    destination: &Destination,
    first_delivery_id: i64,
    faults: &dyn SinkFaultInjector,
) {
    let mut id = first_delivery_id;
    let mut next = || {
        let msg = message(sink, destination, id);
        id += 1;
        msg
    };

    let before = faults.applied();
    faults.inject(InjectedFault::TooManyRequests {
        retry_after: FAULT_RETRY_AFTER,
    });
    let class = failed(sink, &next(), "HTTP 429").await;
    let waited = class.retry_after();
    assert!(
        class.is_retryable()
            && waited.is_some_and(|w| w + Duration::from_secs(1) >= FAULT_RETRY_AFTER
                && w <= FAULT_RETRY_AFTER + Duration::from_secs(1)),
        "{sink}: HTTP 429 with Retry-After {FAULT_RETRY_AFTER:?} must be retryable after \
         that wait, got {class}"
    );
    assert_eq!(faults.applied(), before, "{sink}: a 429 applied a message");

    faults.inject(InjectedFault::ServiceUnavailable);
    let class = failed(sink, &next(), "HTTP 503").await;
    // Retried either way: plainly, or after a reconcile when the API documents that a 5xx
    // may come after the message was created (Twilio: "beware duplicates").
    assert!(
        class.is_retryable() || class == ErrorClass::InDoubt,
        "{sink}: HTTP 503 must be retryable or in doubt, got {class}"
    );
    assert_eq!(faults.applied(), before, "{sink}: a 503 applied a message");

    faults.inject(InjectedFault::AppliedThenDropped);
    let dropped = next();
    let class = failed(sink, &dropped, "applied then dropped").await;
    assert_eq!(
        class,
        ErrorClass::InDoubt,
        "{sink}: a request applied and then dropped must be in doubt, got {class}"
    );
    assert_eq!(
        faults.applied(),
        before + 1,
        "{sink}: the emulator should hold the applied-then-dropped message"
    );
    let never = next();
    if sink.can_reconcile() {
        match sink.reconcile(&dropped).await {
            Ok(Reconciled::Found(r)) => assert!(
                !r.remote_id.trim().is_empty(),
                "{sink}: reconcile found the in-doubt message with an empty remote id"
            ),
            other => panic!(
                "{sink}: reconcile must find the applied-then-dropped message, got {other:?}"
            ),
        }
        match sink.reconcile(&never).await {
            Ok(Reconciled::NotFound) => {}
            other => panic!("{sink}: reconcile must not find an unsent message, got {other:?}"),
        }
    } else {
        assert!(
            sink.reconcile(&dropped).await.is_err(),
            "{sink}: reconcile without support must be an error"
        );
    }

    let receipt: Receipt = sink
        .send(&next())
        .await
        .unwrap_or_else(|e| panic!("{sink}: a send after the faults failed: {e}"));
    assert!(
        !receipt.remote_id.trim().is_empty(),
        "{sink}: empty remote id"
    );
    assert_eq!(
        faults.applied(),
        before + 2,
        "{sink}: the last send applied"
    );
}

/// Sends `msg`, expecting an error; returns its class.
async fn failed(sink: &dyn Sink, msg: &Outbound, what: &str) -> ErrorClass {
    match sink.send(msg).await {
        Ok(r) => panic!("{sink}: send under {what} succeeded ({r:?}); the fault was not injected"),
        Err(e) => e.class(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemorySink, SinkFault};

    #[tokio::test]
    async fn memory_sink_conforms() {
        let d = Destination::new("chat", "#x");
        sink_conformance(&MemorySink::new("chat"), &d, 1, &["xoxb-secret"]).await;
        sink_conformance(&MemorySink::new("chat").with_reconcile(false), &d, 1, &[]).await;
    }

    /// Injects through `MemorySink`'s scripted faults (which model the classes directly).
    struct Scripted<'a>(&'a MemorySink);

    impl SinkFaultInjector for Scripted<'_> {
        fn inject(&self, fault: InjectedFault) {
            self.0.push_faults([match fault {
                InjectedFault::TooManyRequests { retry_after } => {
                    SinkFault::Fail(ErrorClass::Retryable {
                        retry_after: Some(retry_after),
                    })
                }
                InjectedFault::ServiceUnavailable => SinkFault::Fail(ErrorClass::RETRYABLE),
                InjectedFault::AppliedThenDropped => SinkFault::AppliedThenLost,
            }]);
        }

        fn applied(&self) -> usize {
            self.0.sent().len()
        }
    }

    #[tokio::test]
    async fn memory_sink_passes_the_fault_suite() {
        let d = Destination::new("chat", "#x");
        for reconcile in [true, false] {
            let sink = MemorySink::new("chat").with_reconcile(reconcile);
            sink_fault_conformance(&sink, &d, 1, &Scripted(&sink)).await;
        }
    }

    #[tokio::test]
    #[should_panic(expected = "HTTP 429 with Retry-After")]
    async fn the_fault_suite_catches_a_lost_retry_after() {
        struct NoHint<'a>(&'a MemorySink);
        impl SinkFaultInjector for NoHint<'_> {
            fn inject(&self, _fault: InjectedFault) {
                self.0.push_faults([SinkFault::Fail(ErrorClass::RETRYABLE)]);
            }
            fn applied(&self) -> usize {
                self.0.sent().len()
            }
        }
        let sink = MemorySink::new("chat");
        sink_fault_conformance(&sink, &Destination::new("chat", "#x"), 1, &NoHint(&sink)).await;
    }

    #[tokio::test]
    #[should_panic(expected = "must be in doubt")]
    async fn the_fault_suite_catches_an_in_doubt_send_classed_retryable() {
        struct Misclassed<'a>(&'a MemorySink);
        impl SinkFaultInjector for Misclassed<'_> {
            fn inject(&self, fault: InjectedFault) {
                self.0.push_faults([match fault {
                    InjectedFault::TooManyRequests { retry_after } => {
                        SinkFault::Fail(ErrorClass::Retryable {
                            retry_after: Some(retry_after),
                        })
                    }
                    _ => SinkFault::Fail(ErrorClass::RETRYABLE),
                }]);
            }
            fn applied(&self) -> usize {
                self.0.sent().len()
            }
        }
        let sink = MemorySink::new("chat");
        sink_fault_conformance(
            &sink,
            &Destination::new("chat", "#x"),
            1,
            &Misclassed(&sink),
        )
        .await;
    }
}
