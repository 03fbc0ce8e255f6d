//! Delivery workers: claim (in flight) -> limiter -> send -> limiter (completed) -> journal
//! the outcome.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::time::Instant;
use tracing::Instrument;

use super::{Checkpoint, DeliverySummary, Inner};
use crate::audit::{AttemptOutcome, ClaimedDelivery, DeliveryId, ErrorInfo};
use crate::clock;
use crate::error::{Error, ErrorClass, Result};
use crate::sink::{Outbound, Reconciled};

/// Sends every due delivery, `max_in_flight` at a time and one per destination, until
/// nothing is due (`stop` = None) or until `stop` turns true (then waits for the sends in
/// flight). While running with `stop`, it sleeps until the next delivery is due or a poll
/// plans new ones. The leases of the deliveries in flight are renewed every third of the
/// lease, so no other process takes over a slow send.
pub(super) async fn until_idle(
    inner: &Arc<Inner>,
    mut stop: Option<tokio::sync::watch::Receiver<bool>>,
) -> Result<DeliverySummary> {
    let mut summary = DeliverySummary::default();
    let mut running = tokio::task::JoinSet::new();
    let mut held: HashSet<DeliveryId> = HashSet::new();
    let renew_every = inner.claimant.lease / 3;
    let mut next_renew = Instant::now() + renew_every;
    loop {
        if !held.is_empty() && Instant::now() >= next_renew {
            let ids: Vec<DeliveryId> = held.iter().copied().collect();
            let kept = inner
                .store
                .renew_claims(&inner.claimant, &ids, inner.now())
                .await?;
            if kept < ids.len() as u64 {
                tracing::warn!(
                    held = ids.len(),
                    kept,
                    "some claims were lost (lease ran out and another process took them over)"
                );
            }
            next_renew = Instant::now() + renew_every;
        }
        let stopping = stop.as_ref().is_some_and(|s| *s.borrow());
        let free = inner.max_in_flight.saturating_sub(running.len());
        let mut claimed_any = false;
        if !stopping && free > 0 {
            let claimed = inner
                .store
                .claim_due(&inner.claimant, inner.now(), free)
                .await?;
            // A short claim took every head that is due: claiming again at once would be an
            // empty write transaction. The next claim follows a finished send or new work.
            claimed_any = claimed.len() >= free;
            if held.is_empty() {
                next_renew = Instant::now() + renew_every;
            }
            for c in claimed {
                let inner = Arc::clone(inner);
                held.insert(c.id);
                running.spawn(async move {
                    let id = c.id;
                    (id, one(&inner, c).await)
                });
            }
        }
        if claimed_any {
            continue;
        }
        if let Some(joined) = running.try_join_next() {
            record(&mut summary, &mut held, joined)?;
            continue;
        }
        if running.is_empty() {
            let Some(stop) = stop.as_mut() else {
                return Ok(summary);
            };
            if stopping {
                return Ok(summary);
            }
            let now = inner.now();
            let wait = match inner.store.next_due_at().await? {
                Some(t) if t <= now => Duration::from_millis(50),
                Some(t) => clock::until(now, t).min(Duration::from_secs(60)),
                None => Duration::from_secs(60),
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = inner.wake_delivery.notified() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        // Sends are in flight: wait for one to finish (or, when running, for new work, or
        // for the next lease renewal).
        if let Some(stop) = stop.as_mut().filter(|_| !stopping && free > 0) {
            tokio::select! {
                joined = running.join_next() => {
                    if let Some(j) = joined { record(&mut summary, &mut held, j)?; }
                }
                () = inner.wake_delivery.notified() => {}
                _ = stop.changed() => {}
                () = tokio::time::sleep_until(next_renew) => {}
            }
        } else {
            tokio::select! {
                joined = running.join_next() => {
                    if let Some(j) = joined { record(&mut summary, &mut held, j)?; }
                }
                () = tokio::time::sleep_until(next_renew) => {}
            }
        }
    }
}

type Joined = std::result::Result<(DeliveryId, Result<DeliverySummary>), tokio::task::JoinError>;

fn record(
    summary: &mut DeliverySummary,
    held: &mut HashSet<DeliveryId>,
    joined: Joined,
) -> Result<()> {
    match joined {
        Ok((id, Ok(s))) => {
            held.remove(&id);
            summary.merge(&s);
            Ok(())
        }
        // The journal failed: stop delivering; the delivery stays in flight and is
        // recovered (as in doubt) at the next start, or by another process after its lease.
        Ok((_, Err(e))) => Err(e),
        Err(e) => Err(Error::store(
            ErrorClass::Permanent,
            format!("delivery task failed: {e}"),
            None,
        )),
    }
}

/// One attempt of one claimed delivery. Only journal errors are returned; everything the
/// sink does ends up journaled as the attempt's outcome.
async fn one(inner: &Inner, c: ClaimedDelivery) -> Result<DeliverySummary> {
    let span = tracing::info_span!(
        "delivery",
        id = c.id.0,
        destination = %c.destination,
        attempt = c.attempt,
        stream = %c.stream,
        record = %c.record.key,
    );
    async move {
        let mut s = DeliverySummary {
            attempts: 1,
            ..DeliverySummary::default()
        };
        let outcome = attempt(inner, &c).await;
        let sink_label = c.destination.sink.clone();
        match &outcome {
            AttemptOutcome::Delivered { after_doubt, .. } => {
                s.delivered = 1;
                s.resent_after_doubt = u64::from(*after_doubt);
                metrics::counter!("ml_deliveries_delivered_total", "sink" => sink_label)
                    .increment(1);
            }
            AttemptOutcome::Reconciled(_) => {
                s.reconciled = 1;
                metrics::counter!("ml_deliveries_reconciled_total", "sink" => sink_label)
                    .increment(1);
            }
            AttemptOutcome::Retry {
                in_doubt, error, ..
            } => {
                s.retried = 1;
                s.in_doubt = u64::from(*in_doubt);
                tracing::info!(error = %error.message, in_doubt, "delivery will be retried");
                metrics::counter!("ml_deliveries_retried_total", "sink" => sink_label).increment(1);
            }
            AttemptOutcome::Failed(error) => {
                s.failed = 1;
                tracing::warn!(error = %error.message, "delivery failed");
                metrics::counter!("ml_deliveries_failed_total", "sink" => sink_label).increment(1);
            }
        }
        inner
            .store
            .finish_attempt(c.id, outcome, inner.now())
            .await?;
        inner.checkpoint(&Checkpoint::AfterFinish { delivery: c.id });
        Ok(s)
    }
    .instrument(span)
    .await
}

async fn attempt(inner: &Inner, c: &ClaimedDelivery) -> AttemptOutcome {
    let Some(sink) = inner.sinks.get(&c.destination.sink) else {
        return AttemptOutcome::Failed(ErrorInfo::from(&Error::config(
            "sink",
            format!("no sink named `{}` is registered", c.destination.sink),
        )));
    };
    let msg = Outbound {
        delivery_id: c.id,
        stream: c.stream.clone(),
        record_key: c.record.key.clone(),
        rendered: sink.render(&c.record, &c.destination),
        destination: c.destination.clone(),
        thread: c.thread.clone(),
        attempt: c.attempt,
        planned_at: c.created_at,
    };
    let reconcilable = sink.can_reconcile();
    if c.in_doubt && reconcilable {
        match sink.reconcile(&msg).await {
            Ok(Reconciled::Found(receipt)) => return AttemptOutcome::Reconciled(receipt),
            Ok(Reconciled::NotFound) => {}
            Err(e) => return retry_or_fail(inner, c, &e, true),
        }
    }
    let after_doubt = c.in_doubt && !reconcilable;
    let key = sink.rate_key(&c.destination);
    if let Some(k) = &key
        && let Err(e) = inner.limiter.acquire(k).await
    {
        return retry_or_fail(inner, c, &e, c.in_doubt && !reconcilable);
    }
    inner.checkpoint(&Checkpoint::BeforeSend { delivery: c.id });
    let sent = AssertUnwindSafe(sink.send(&msg)).catch_unwind().await;
    inner.checkpoint(&Checkpoint::AfterSend { delivery: c.id });
    if let Some(k) = &key {
        completed(inner, sink.as_ref(), c, k).await;
    }
    match sent {
        Ok(Ok(receipt)) => AttemptOutcome::Delivered {
            receipt,
            after_doubt,
        },
        Ok(Err(e)) => {
            if let (Some(k), Some(ra)) = (&key, e.class().retry_after()) {
                // A 429 slows every sender on this key, not just this delivery.
                if let Err(le) = inner.limiter.penalize(k, ra).await {
                    tracing::warn!(error = %le, "rate limiter refused a penalty");
                }
            }
            let doubt = e.class() == ErrorClass::InDoubt || (c.in_doubt && !reconcilable);
            retry_or_fail(inner, c, &e, doubt)
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "unknown panic".into());
            let e = Error::remote(
                sink.to_string(),
                ErrorClass::InDoubt,
                format!("sink panicked: {what}"),
            );
            retry_or_fail(inner, c, &e, true)
        }
    }
}

/// Tells the limiter the send on `key` has ended, whatever its outcome: the next send on the
/// key is paced from now, the latest the request can have reached the server. When the
/// send taught the sink a different key for the destination (a Slack `#name` whose channel
/// id came back in the reply), the new key is told too, so the budget carries over and the
/// next send under it cannot leave within the interval.
async fn completed(inner: &Inner, sink: &dyn crate::sink::Sink, c: &ClaimedDelivery, key: &str) {
    let mut keys = vec![key.to_owned()];
    if let Some(now_key) = sink.rate_key(&c.destination)
        && now_key != key
    {
        keys.push(now_key);
    }
    for k in &keys {
        if let Err(e) = inner.limiter.completed(k).await {
            tracing::warn!(error = %e, key = %k, "rate limiter refused a completion");
        }
    }
}

/// Schedules a retry with full-jitter backoff (the server's retry-after wins), or gives up.
/// In-doubt attempts are retried like retryable ones: the next attempt reconciles first.
fn retry_or_fail(inner: &Inner, c: &ClaimedDelivery, e: &Error, in_doubt: bool) -> AttemptOutcome {
    let now = inner.now();
    let class = match e.class() {
        ErrorClass::InDoubt => ErrorClass::RETRYABLE,
        other => other,
    };
    let elapsed = clock::until(c.first_attempt_at, now);
    let delay = inner.retry.next_delay(
        c.round_attempt.saturating_sub(1),
        elapsed,
        class,
        &mut rand::rng(),
    );
    match delay {
        Some(d) => AttemptOutcome::Retry {
            error: ErrorInfo::from(e),
            next_at: clock::add(now, d),
            in_doubt,
        },
        None => AttemptOutcome::Failed(ErrorInfo::from(e)),
    }
}
