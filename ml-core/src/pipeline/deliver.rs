//! Delivery workers: claim runs (in flight) -> per destination, in order: limiter -> send
//! -> limiter (completed) -> the outcome to the group committer, which journals the
//! outcomes of every destination in one transaction.
//!
//! A run is a destination's head of line and the due deliveries right behind it, claimed
//! in one transaction ([`AuditWrite::claim_runs`](crate::audit::AuditWrite::claim_runs)). Its
//! length adapts to what the destination delivered in about a second ([`RUN_WINDOW`]):
//! a paced destination (a Slack channel at 1 message/s) gets runs of 1, a fast sink grows
//! to [`PipelineBuilder::max_run`](super::PipelineBuilder::max_run). So what may be in doubt
//! after a crash (claimed, perhaps sent, outcome not yet journaled) stays about a second
//! of the destination's own rate, while fast sinks pay two transactions per run, not per
//! message.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::{Checkpoint, DeliverySummary, Inner};
use crate::audit::{AttemptOutcome, ClaimedDelivery, DeliveryId, ErrorInfo, FinishedAttempt};
use crate::clock;
use crate::error::{Error, ErrorClass, Result};
use crate::sink::{Destination, Outbound, Reconciled, Sink};

/// A destination's runs are sized by what it delivered in about this long.
pub(super) const RUN_WINDOW: Duration = Duration::from_secs(1);

/// Outcomes journaled in one transaction at most.
const MAX_GROUP: usize = 1024;

/// When a delivery pass ends.
pub(super) enum Until {
    /// When nothing is due any more.
    Idle,
    /// When `stop` turns true (waiting for new work until then); sends in flight finish,
    /// the unsent rest of their runs is given back.
    Stopped(watch::Receiver<bool>),
    /// Waits for new work until `polled` turns true, then goes on until nothing is due
    /// (`run_once`: delivering overlaps polling).
    Drained(watch::Receiver<bool>),
    /// When nothing is due any more, or earlier when `stop` turns true (as for `Stopped`).
    IdleOrStopped(watch::Receiver<bool>),
}

/// One attempt's outcome on its way to the journal, and who waits for it.
struct Finished {
    attempt: FinishedAttempt,
    ack: oneshot::Sender<Result<()>>,
}

/// Sends every due delivery, `max_in_flight` destinations at a time (each its run, in
/// order), until [`Until`] says so. While waiting for work, it sleeps until the next
/// delivery is due or a poll plans new ones. The leases of the deliveries claimed are
/// renewed every third of the lease, so no other process takes over a slow send.
pub(super) async fn until_idle(inner: &Arc<Inner>, until: Until) -> Result<DeliverySummary> {
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let (committed_tx, committed_rx) = mpsc::unbounded_channel();
    let committer = tokio::spawn(commit_outcomes(Arc::clone(inner), done_rx, committed_tx));
    let result = deliver(inner, until, &done_tx, committed_rx).await;
    // The committer ends when the last run task (each holds a sender) is gone.
    drop(done_tx);
    if let Err(e) = committer.await {
        return Err(task_failed("outcome committer", &e));
    }
    result
}

fn task_failed(what: &str, e: &tokio::task::JoinError) -> Error {
    Error::store(ErrorClass::Permanent, format!("{what} failed: {e}"), None)
}

async fn deliver(
    inner: &Arc<Inner>,
    until: Until,
    done: &mpsc::UnboundedSender<Finished>,
    mut committed: mpsc::UnboundedReceiver<DeliveryId>,
) -> Result<DeliverySummary> {
    let idle_ends = matches!(until, Until::IdleOrStopped(_));
    let (mut stop, mut drain) = match until {
        Until::Idle => (None, false),
        Until::Stopped(s) | Until::IdleOrStopped(s) => (Some(s), false),
        Until::Drained(s) => (Some(s), true),
    };
    let mut summary = DeliverySummary::default();
    let mut running = tokio::task::JoinSet::new();
    let mut held: HashSet<DeliveryId> = HashSet::new();
    let renew_every = inner.claimant.lease / 3;
    let mut next_renew = Instant::now() + renew_every;
    loop {
        if drain && stop.as_ref().is_some_and(|s| *s.borrow()) {
            // Polling is over: deliver what is due, then return.
            (stop, drain) = (None, false);
        }
        // Outcomes already journaled are no longer claims to renew, even while the rest
        // of their run still sends.
        while let Ok(id) = committed.try_recv() {
            held.remove(&id);
        }
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
            let lengths = inner.run_lengths();
            let runs = inner
                .store
                .claim_runs(&inner.claimant, inner.now(), free, &lengths)
                .await?;
            // A short claim took every head that is due: claiming again at once would be an
            // empty write transaction. The next claim follows a finished run or new work.
            claimed_any = runs.len() >= free;
            if held.is_empty() {
                next_renew = Instant::now() + renew_every;
            }
            for run in runs {
                if run.is_empty() {
                    continue;
                }
                held.extend(run.iter().map(|c| c.id));
                let inner = Arc::clone(inner);
                let done = done.clone();
                // Only a shutdown cuts a run short; the end of polling does not.
                let stop = stop.clone().filter(|_| !drain);
                running.spawn(async move {
                    let ids: Vec<DeliveryId> = run.iter().map(|c| c.id).collect();
                    let r = send_run(&inner, run, &done, stop.as_ref()).await;
                    (ids, r)
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
            if stopping || idle_ends {
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
        // Runs are in flight: wait for one to finish (or, when running, for new work, or
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

type Joined =
    std::result::Result<(Vec<DeliveryId>, Result<DeliverySummary>), tokio::task::JoinError>;

fn record(
    summary: &mut DeliverySummary,
    held: &mut HashSet<DeliveryId>,
    joined: Joined,
) -> Result<()> {
    match joined {
        Ok((ids, Ok(s))) => {
            for id in &ids {
                held.remove(id);
            }
            summary.merge(&s);
            Ok(())
        }
        // The journal failed: stop delivering; the deliveries stay in flight and are
        // recovered (as in doubt) at the next start, or by another process after the lease.
        Ok((_, Err(e))) => Err(e),
        Err(e) => Err(task_failed("delivery task", &e)),
    }
}

/// Journals outcomes as they come, each group in one transaction (a group commit): what
/// every run produced while the previous group was being written. Acknowledges each
/// outcome once it is durable, and only then reports [`Checkpoint::AfterFinish`].
async fn commit_outcomes(
    inner: Arc<Inner>,
    mut rx: mpsc::UnboundedReceiver<Finished>,
    committed: mpsc::UnboundedSender<DeliveryId>,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_GROUP).await > 0 {
        let (attempts, acks): (Vec<FinishedAttempt>, Vec<_>) =
            batch.drain(..).map(|f| (f.attempt, f.ack)).unzip();
        let ids: Vec<DeliveryId> = attempts.iter().map(|a| a.id).collect();
        let result = inner.store.finish_attempts(attempts).await;
        if matches!(
            result,
            Ok(()) | Err(Error::InvalidState(_) | Error::NotFound(_))
        ) {
            record_send_ends(&inner).await;
        }
        match result {
            Ok(()) => {
                for id in ids {
                    inner.checkpoint(&Checkpoint::AfterFinish { delivery: id });
                    let _ = committed.send(id);
                }
                for ack in acks {
                    let _ = ack.send(Ok(()));
                }
            }
            // Refusals come after every other outcome of the group was committed: the
            // refused deliveries are no longer ours to finish (taken over after our lease
            // ran out, or finished by hand meanwhile), and whoever holds them now records
            // them. Our send may have been a duplicate; stopping our delivery pass would
            // not undo it, and would stall every other destination.
            Err(e @ (Error::InvalidState(_) | Error::NotFound(_))) => {
                tracing::warn!(
                    error = %e,
                    "an outcome was not journaled: the delivery is no longer this process's claim"
                );
                metrics::counter!("ml_deliveries_claim_lost_total").increment(1);
                for id in ids {
                    inner.checkpoint(&Checkpoint::AfterFinish { delivery: id });
                    let _ = committed.send(id);
                }
                for ack in acks {
                    let _ = ack.send(Ok(()));
                }
            }
            Err(e) => {
                for ack in acks {
                    let _ = ack.send(Err(same_error(&e)));
                }
            }
        }
    }
}

/// Journals when the sends since the last group ended, for the next process's pacing. A
/// failure costs at most one early send after a restart: it is logged, not raised.
async fn record_send_ends(inner: &Inner) {
    let ends: Vec<(Destination, Timestamp)> = {
        let mut pending = inner
            .send_ends
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if pending.is_empty() {
            return;
        }
        pending.drain().collect()
    };
    if let Err(e) = inner.store.record_send_ends(&ends).await {
        tracing::warn!(error = %e, "could not journal when the latest sends ended");
    }
}

/// Before this process's first send to `destination`, tells the limiter when the journal
/// says the last send to it ended (a previous process's, or one interrupted by a crash,
/// which counts as ending at recovery): a process started right after another must not
/// post within the destination's interval.
async fn pace_from_journal(inner: &Inner, destination: &Destination, key: &str) {
    let first = inner
        .paced_from_journal
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(destination.clone());
    if !first {
        return;
    }
    let ended = match inner.store.last_send_end(destination).await {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(error = %e, %destination, "no last send end from the journal");
            return;
        }
    };
    // An end ahead of this clock (another host's) counts as now.
    let ago = clock::until(ended, inner.now());
    if let Err(e) = inner.limiter.completed_earlier(key, ago).await {
        tracing::warn!(error = %e, key, "rate limiter refused the journal's last send");
    }
}

/// The same journal error for every outcome of a failed group.
fn same_error(e: &Error) -> Error {
    match e {
        Error::InvalidState(m) => Error::InvalidState(m.clone()),
        Error::NotFound(m) => Error::NotFound(m.clone()),
        other => Error::store(other.class(), other.to_string(), None),
    }
}

/// Sends one destination's run in order. A retry ends the run (the head must go first):
/// the rest is given back unsent, as on shutdown. Returns once every outcome is journaled,
/// so the destination's next claim sees them. Only journal errors are returned.
async fn send_run(
    inner: &Inner,
    run: Vec<ClaimedDelivery>,
    done: &mpsc::UnboundedSender<Finished>,
    stop: Option<&watch::Receiver<bool>>,
) -> Result<DeliverySummary> {
    let Some(destination) = run.first().map(|c| c.destination.clone()) else {
        return Ok(DeliverySummary::default());
    };
    let started = Instant::now();
    let mut summary = DeliverySummary::default();
    let mut acks = Vec::with_capacity(run.len());
    let mut unsent = Vec::new();
    let mut cut = false;
    let mut run = run.into_iter();
    while let Some(c) = run.next() {
        let Some(outcome) = one(inner, &c, &mut summary, stop).await else {
            // Shut down while waiting for the rate limiter: nothing was sent.
            unsent.push(c);
            unsent.extend(run.by_ref());
            break;
        };
        cut = matches!(outcome, AttemptOutcome::Retry { .. });
        let (ack, acked) = oneshot::channel();
        let finished = Finished {
            attempt: FinishedAttempt {
                id: c.id,
                outcome,
                at: inner.now(),
            },
            ack,
        };
        if done.send(finished).is_err() {
            return Err(Error::store(
                ErrorClass::Permanent,
                "the outcome committer stopped",
                None,
            ));
        }
        acks.push(acked);
        if cut || stop.is_some_and(|s| *s.borrow()) {
            unsent.extend(run.by_ref());
            break;
        }
    }
    let sent = acks.len();
    if !unsent.is_empty() {
        inner
            .store
            .release_claims(&inner.claimant, &unsent, inner.now())
            .await?;
    }
    for acked in acks {
        acked.await.map_err(|_| {
            Error::store(ErrorClass::Permanent, "the outcome committer stopped", None)
        })??;
    }
    inner.adapt_run(&destination, sent, started.elapsed(), cut);
    Ok(summary)
}

/// The next run length of a destination, from how its last run went: `sent` messages in
/// `elapsed`, from a run of up to `current`. A retry starts over at 1; a run that took a
/// window or more shrinks to what was delivered in one window; a full run that took less
/// than half a window doubles. Always within `1..=max`.
pub(super) fn next_run_length(
    current: usize,
    sent: usize,
    elapsed: Duration,
    cut: bool,
    max: usize,
) -> usize {
    let next = if cut {
        1
    } else if elapsed >= RUN_WINDOW {
        // Truncation is the point: whole messages per window.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let per_window = (sent as f64 * RUN_WINDOW.as_secs_f64() / elapsed.as_secs_f64()) as usize;
        per_window
    } else if sent >= current && elapsed < RUN_WINDOW / 2 {
        current.saturating_mul(2)
    } else {
        current
    };
    next.clamp(1, max.max(1))
}

impl Inner {
    /// The run lengths claims use now.
    fn run_lengths(&self) -> crate::audit::RunLengths {
        self.run_lengths
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn adapt_run(&self, destination: &Destination, sent: usize, elapsed: Duration, cut: bool) {
        let mut lengths = self
            .run_lengths
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = lengths.get(destination);
        let next = next_run_length(current, sent, elapsed, cut, self.max_run);
        if next != current {
            lengths.set(destination.clone(), next);
        }
    }
}

/// One attempt of one claimed delivery: its outcome, counted in `s`. Everything the sink
/// does ends up in the outcome. `None` when `stop` came while the attempt waited for the
/// rate limiter (nothing was sent; the claim is to be released).
async fn one(
    inner: &Inner,
    c: &ClaimedDelivery,
    s: &mut DeliverySummary,
    stop: Option<&watch::Receiver<bool>>,
) -> Option<AttemptOutcome> {
    let span = tracing::info_span!(
        "delivery",
        id = c.id.0,
        destination = %c.destination,
        attempt = c.attempt,
        stream = %c.stream,
        record = %c.record.key,
    );
    async move {
        let outcome = attempt(inner, c, stop).await?;
        s.attempts += 1;
        let sink_label = c.destination.sink.clone();
        match &outcome {
            AttemptOutcome::Delivered { after_doubt, .. } => {
                s.delivered += 1;
                s.resent_after_doubt += u64::from(*after_doubt);
                metrics::counter!("ml_deliveries_delivered_total", "sink" => sink_label)
                    .increment(1);
            }
            AttemptOutcome::Reconciled(_) => {
                s.reconciled += 1;
                metrics::counter!("ml_deliveries_reconciled_total", "sink" => sink_label)
                    .increment(1);
            }
            AttemptOutcome::Retry {
                in_doubt, error, ..
            } => {
                s.retried += 1;
                s.in_doubt += u64::from(*in_doubt);
                // Only a hold retries a permanent error (`retry_or_fail` fails those).
                s.held += u64::from(error.class == ErrorClass::Permanent.as_str());
                tracing::info!(error = %error.message, in_doubt, "delivery will be retried");
                metrics::counter!("ml_deliveries_retried_total", "sink" => sink_label).increment(1);
            }
            AttemptOutcome::Failed(error) => {
                s.failed += 1;
                tracing::warn!(error = %error.message, "delivery failed");
                metrics::counter!("ml_deliveries_failed_total", "sink" => sink_label).increment(1);
            }
        }
        Some(outcome)
    }
    .instrument(span)
    .await
}

async fn attempt(
    inner: &Inner,
    c: &ClaimedDelivery,
    stop: Option<&watch::Receiver<bool>>,
) -> Option<AttemptOutcome> {
    let Some(sink) = inner.sinks.get(&c.destination.sink) else {
        return Some(AttemptOutcome::Failed(ErrorInfo::from(&Error::config(
            "sink",
            format!("no sink named `{}` is registered", c.destination.sink),
        ))));
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
    let mut reconciled_blind = false;
    if c.in_doubt && sink.can_reconcile() {
        match reconcile(inner, sink.as_ref(), &msg).await {
            Ok(Reconciled::Found(receipt)) => return Some(AttemptOutcome::Reconciled(receipt)),
            Ok(Reconciled::NotFound) => {}
            // The check itself is refused for good (a scope not granted, a lookup that
            // cannot conclude): as for a sink that cannot reconcile, the message is sent
            // again, at least once and counted (DESIGN invariant 2), rather than failed
            // unsent when it may never have arrived.
            Err(e) if e.class() == ErrorClass::Permanent => {
                tracing::warn!(
                    delivery = c.id.0,
                    destination = %c.destination,
                    error = %e,
                    "cannot check whether the in-doubt message arrived: sending it again (at least once)"
                );
                metrics::counter!("ml_reconcile_refused_total").increment(1);
                reconciled_blind = true;
            }
            Err(e) => return Some(retry_or_fail(inner, c, &e, true)),
        }
    }
    let after_doubt = c.in_doubt && (!sink.can_reconcile() || reconciled_blind);
    let key = sink.rate_key(&c.destination);
    if let Some(k) = &key {
        pace_from_journal(inner, &c.destination, k).await;
        // A limiter may wait long (a shared one paused while its Redis is away): a
        // shutdown ends the wait, and the claim is released unsent.
        let acquired = match stop {
            Some(stop) => {
                let mut stop = stop.clone();
                tokio::select! {
                    // A grant that is ready is taken (its slot must be completed).
                    biased;
                    r = inner.limiter.acquire(k) => Some(r),
                    _ = stop.wait_for(|v| *v) => None,
                }
            }
            None => Some(inner.limiter.acquire(k).await),
        };
        if let Err(e) = acquired? {
            return Some(retry_or_fail(inner, c, &e, after_doubt));
        }
    }
    inner.checkpoint(&Checkpoint::BeforeSend { delivery: c.id });
    let sent = AssertUnwindSafe(sink.send(&msg)).catch_unwind().await;
    inner.checkpoint(&Checkpoint::AfterSend { delivery: c.id });
    if let Some(k) = &key {
        completed(inner, sink.as_ref(), c, k).await;
    }
    Some(match sent {
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
            let doubt = e.class() == ErrorClass::InDoubt || after_doubt;
            if sink.credentials_refused(&e) {
                return Some(held(inner, c, &e, doubt).await);
            }
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
    })
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
    let now = inner.now();
    let mut ends = inner
        .send_ends
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let end = ends.entry(c.destination.clone()).or_insert(now);
    *end = (*end).max(now);
}

/// The sink refused our credentials for good (a revoked token, a deactivated app): no
/// message can get through until someone fixes them, so none is failed for it (each would
/// need replaying). The delivery waits the slow cadence outside its retry budget, which
/// holds its destination's line behind it, a journal note tells the operator, and one
/// attempt per destination per pause checks whether the credentials work again.
async fn held(inner: &Inner, c: &ClaimedDelivery, e: &Error, in_doubt: bool) -> AttemptOutcome {
    let now = inner.now();
    tracing::warn!(
        destination = %c.destination,
        error = %e,
        pause_s = inner.permanent_pause.as_secs(),
        "the sink refused our credentials: deliveries to this destination are held until they work again"
    );
    metrics::counter!("ml_deliveries_held_total", "sink" => c.destination.sink.clone())
        .increment(1);
    let message = format!(
        "deliveries to {} are held (not failed) until the credentials work again, retried \
         every {}s: {e}",
        c.destination,
        inner.permanent_pause.as_secs()
    );
    inner
        .daily_note(
            crate::audit::KIND_DESTINATION_HELD,
            &c.destination.to_string(),
            &c.stream,
            e,
            message,
        )
        .await;
    AttemptOutcome::Retry {
        error: ErrorInfo::from(e),
        next_at: clock::add(now, inner.permanent_pause),
        in_doubt,
    }
}

/// Schedules a retry with jittered exponential backoff (the server's retry-after wins), or gives up.
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
            // The retry of an attempt in doubt reconciles first: give the remote side's
            // listings (Twilio's Messages, Slack's history) time to show what it applied.
            next_at: clock::add(now, if in_doubt { d.max(IN_DOUBT_SETTLE) } else { d }),
            in_doubt,
        },
        None => AttemptOutcome::Failed(ErrorInfo::from(e)),
    }
}

/// The shortest wait before retrying (and first reconciling) an attempt in doubt.
pub(crate) const IN_DOUBT_SETTLE: Duration = Duration::from_secs(5);

/// `sink.reconcile`, tried once more when it failed for good and the journal knows the
/// destination's remote scope the sink did not (see [`Sink::remember_scope`]).
async fn reconcile(inner: &Inner, sink: &dyn Sink, msg: &Outbound) -> Result<Reconciled> {
    let first = sink.reconcile(msg).await;
    let Err(e) = &first else {
        return first;
    };
    if e.class() != ErrorClass::Permanent {
        return first;
    }
    match inner.store.destination_scope(&msg.destination).await {
        Ok(Some(scope)) if sink.remember_scope(&msg.destination, &scope) => {
            tracing::info!(
                delivery = msg.delivery_id.0,
                destination = %msg.destination,
                "looking the in-doubt message up again where the journal says earlier ones went"
            );
            sink.reconcile(msg).await
        }
        Ok(_) => first,
        Err(journal) => {
            tracing::warn!(error = %journal, "could not read the destination's scope from the journal");
            first
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{RUN_WINDOW, next_run_length};

    #[test]
    fn runs_follow_what_a_destination_delivers_in_about_a_second() {
        let ms = Duration::from_millis;
        // A Slack channel (1/s): the first message goes at once, so the run doubles once;
        // the limiter then spaces that run of 2 over ~2 s, which brings it back to 1, where
        // it stays (each run waits ~1 s for its permit).
        assert_eq!(next_run_length(1, 1, ms(5), false, 256), 2);
        assert_eq!(next_run_length(2, 2, ms(2_000), false, 256), 1);
        assert_eq!(next_run_length(1, 1, ms(990), false, 256), 1);
        assert_eq!(next_run_length(1, 1, ms(1_010), false, 256), 1);
        // A fast sink doubles up to the bound.
        assert_eq!(next_run_length(64, 64, ms(3), false, 256), 128);
        assert_eq!(next_run_length(256, 256, ms(3), false, 256), 256);
        // A short run (less was due) does not grow; a retry starts over.
        assert_eq!(next_run_length(64, 10, ms(3), false, 256), 64);
        assert_eq!(next_run_length(64, 3, ms(3), true, 256), 1);
        // 100 sends in 2 s: 50 a second.
        assert_eq!(next_run_length(100, 100, RUN_WINDOW * 2, false, 256), 50);
        assert_eq!(
            next_run_length(8, 8, ms(3), false, 1),
            1,
            "max_run 1: never batched"
        );
    }
}
