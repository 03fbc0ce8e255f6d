//! Poll cycles: source -> route -> journal, one transaction per page.

use std::sync::Arc;

use jiff::Timestamp;
use tracing::Instrument;

use super::{CycleSummary, DryRun, Inner, PlannedMessage, Stream, StreamHealth};
use crate::audit::{CycleEnd, CycleId, ErrorInfo, PageCommit, PlannedRecord};
use crate::clock;
use crate::error::{Error, ErrorClass, Result};
use crate::record::{Rejected, SourceItem};
use crate::routing::Router;

/// Releases a stream's "being polled" mark when the cycle ends, however it ends.
struct PollGuard<'a> {
    inner: &'a Inner,
    stream: String,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        self.inner
            .polling
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.stream);
    }
}

pub(super) fn paused_until(inner: &Inner, stream: &str) -> Option<Timestamp> {
    inner
        .health
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(stream)
        .and_then(|h| h.paused_until)
}

fn set_health(inner: &Inner, stream: &str, h: StreamHealth) {
    inner
        .health
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(stream.to_owned(), h);
}

/// The health after a failed cycle: a permanent error pauses the stream for the fixed
/// slow cadence (trying sooner cannot help, and must not hammer the system); anything
/// else backs off with jitter, honouring the server's `Retry-After`.
fn failed_health(inner: &Inner, stream: &str, e: &Error) -> StreamHealth {
    let failures = inner
        .health
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(stream)
        .map_or(0, |h| h.failures)
        .saturating_add(1);
    let class = e.class();
    let permanent = class == ErrorClass::Permanent;
    let waiting_for = match e {
        Error::Unavailable { waiting_for, .. } => Some(waiting_for.clone()),
        _ => None,
    };
    let wait = if let Error::Unavailable { recheck, .. } = e {
        // A local check, no traffic: a short fixed cadence resumes the stream soon after
        // its dependency returns, with no growing backoff.
        (*recheck).clamp(std::time::Duration::from_secs(1), inner.permanent_pause)
    } else if permanent {
        inner.permanent_pause
    } else {
        let wait = inner
            .source_backoff
            .jittered_delay(failures - 1, &mut rand::rng());
        class.retry_after().map_or(wait, |ra| wait.max(ra))
    };
    StreamHealth {
        failures,
        paused_until: Some(clock::add(inner.now(), wait)),
        error: Some(ErrorInfo::from(e)),
        permanent,
        waiting_for,
    }
}

/// Journals a [`KIND_STREAM_PAUSED`](crate::audit::KIND_STREAM_PAUSED) note, so the pause
/// shows in `ml-connector audit notes` after the log has rotated away.
async fn pause_note(inner: &Inner, stream: &str, e: &Error) {
    let message = format!(
        "stream `{stream}` paused by a permanent source error, retried every {}s until \
         fixed: {e}",
        inner.permanent_pause.as_secs()
    );
    inner
        .daily_note(crate::audit::KIND_STREAM_PAUSED, stream, stream, e, message)
        .await;
}

/// `ml_stream_paused{stream, reason}`: 1 for the reason the stream is paused now
/// (`permanent`, `backoff` or `unavailable`), 0 for the others; all 0 when it runs (`None`).
fn set_paused_gauge(stream: &str, health: Option<&StreamHealth>) {
    let unavailable = health.is_some_and(|h| h.waiting_for.is_some());
    let permanent = health.map(|h| h.permanent);
    for (reason, on) in [
        ("permanent", permanent == Some(true) && !unavailable),
        ("backoff", permanent == Some(false) && !unavailable),
        ("unavailable", unavailable),
    ] {
        metrics::gauge!("ml_stream_paused", "stream" => stream.to_owned(), "reason" => reason)
            .set(if on { 1.0 } else { 0.0 });
    }
}

/// Splits a page's items into planned records and rejected items; a record that fails
/// validation is rejected with the reason.
fn plan(router: &Router, items: Vec<SourceItem>) -> (Vec<PlannedRecord>, Vec<Rejected>) {
    let mut records = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for item in items {
        match item {
            SourceItem::Record(r) => match r.validate() {
                Ok(()) => records.push(PlannedRecord {
                    destinations: router.route(&r),
                    record: *r,
                }),
                Err(e) => rejected.push(Rejected {
                    key: Some(r.key.clone()).filter(|k| !k.trim().is_empty()),
                    reason: e.to_string(),
                    modified_at: Some(r.modified_at),
                    raw: r.raw,
                }),
            },
            SourceItem::Rejected(x) => rejected.push(x),
        }
    }
    (records, rejected)
}

/// One full cycle of one stream. Never fails: errors end the cycle, are journaled with it
/// (message and class), and pause the stream: with jittered backoff, or, for a permanent
/// error, for the slow cadence.
pub(super) async fn cycle(inner: &Arc<Inner>, stream: &Stream) -> CycleSummary {
    let mut summary = CycleSummary {
        stream: stream.name.clone(),
        ..CycleSummary::default()
    };
    let now = inner.now();
    if paused_until(inner, &stream.name).is_some_and(|t| t > now) {
        summary.skipped = true;
        return summary;
    }
    {
        let mut polling = inner
            .polling
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !polling.insert(stream.name.clone()) {
            summary.skipped = true;
            return summary;
        }
    }
    let _guard = PollGuard {
        inner,
        stream: stream.name.clone(),
    };
    let span = tracing::info_span!("poll_cycle", stream = %stream.name, source = %stream.source);
    let result = run_cycle(inner, stream, &mut summary)
        .instrument(span)
        .await;
    let labels = [("stream", stream.name.clone())];
    metrics::counter!("ml_records_polled_total", &labels).increment(summary.polled);
    metrics::counter!("ml_records_journaled_total", &labels).increment(summary.journaled);
    metrics::counter!("ml_records_rejected_total", &labels).increment(summary.rejected);
    if let Err(e) = result {
        let health = failed_health(inner, &stream.name, &e);
        let class = e.class();
        let failure_labels = [
            ("stream", stream.name.clone()),
            ("class", class.as_str().to_owned()),
        ];
        metrics::counter!("ml_poll_failures_total", &failure_labels).increment(1);
        set_paused_gauge(&stream.name, Some(&health));
        if let Some(w) = &health.waiting_for {
            tracing::warn!(
                stream = %stream.name,
                error = %e,
                waiting_for = %w,
                until = ?health.paused_until,
                "source unavailable: stream paused until it returns (nothing queued)"
            );
        } else if health.permanent {
            tracing::warn!(
                stream = %stream.name,
                error = %e,
                failures = health.failures,
                until = ?health.paused_until,
                "permanent source error: stream paused, retried on the slow cadence only"
            );
            pause_note(inner, &stream.name, &e).await;
        } else {
            tracing::warn!(stream = %stream.name, error = %e, failures = health.failures, "poll cycle failed; stream backing off");
        }
        set_health(inner, &stream.name, health);
        summary.error = Some(e.to_string());
    } else {
        let was_failing = inner
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&stream.name)
            .is_some_and(|h| h.error.is_some());
        if was_failing {
            tracing::info!(stream = %stream.name, "stream recovered");
            set_paused_gauge(&stream.name, None);
        }
        set_health(inner, &stream.name, StreamHealth::default());
    }
    if summary.planned > 0 {
        inner.wake_delivery.notify_one();
    }
    summary
}

/// The id of `stream`'s newest cycle in the journal, by any process (`None`: none yet, or
/// the journal could not say).
pub(super) async fn newest_cycle(inner: &Inner, stream: &str) -> Option<CycleId> {
    match inner.store.cycles(stream, 1).await {
        Ok(c) => c.first().map(|c| c.id),
        Err(e) => {
            tracing::debug!(stream, error = %e, "could not read the newest cycle");
            None
        }
    }
}

/// Whether a cycle of `stream` newer than `seen` (the newest this process knew of when
/// it last polled or looked) ended well: another process sharing the journal polled it
/// since. Replicas each keep the stream's schedule; without this each would read the
/// ERP every interval (the journal drops the repeats, but the ERP is read N times). With
/// it, one turn per interval polls and the others find it done; when that replica stops,
/// the next one due finds nothing newer and polls. Returns the newest cycle's id too.
pub(super) async fn polled_elsewhere(
    inner: &Inner,
    stream: &str,
    seen: Option<CycleId>,
) -> (bool, Option<CycleId>) {
    let Some(seen) = seen else {
        return (false, None);
    };
    match inner.store.cycles(stream, 1).await {
        Ok(c) => match c.first() {
            Some(newest) if newest.id > seen => (
                newest.finished_at.is_some() && newest.error.is_none(),
                Some(newest.id),
            ),
            _ => (false, Some(seen)),
        },
        Err(e) => {
            tracing::debug!(stream, error = %e, "could not read the newest cycle; polling");
            (false, Some(seen))
        }
    }
}

/// The summary of a turn skipped because another process polled the stream since this
/// one's last turn: the stream is healthy there, so it is not paused or backing off here.
pub(super) fn polled_by_another(inner: &Inner, stream: &Stream) -> CycleSummary {
    tracing::debug!(stream = %stream.name, "polled by another process since this one's last turn; skipped");
    let was_failing = inner
        .health
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&stream.name)
        .is_some_and(|h| h.error.is_some());
    if was_failing {
        tracing::info!(stream = %stream.name, "stream polled well by another process");
        set_paused_gauge(&stream.name, None);
    }
    CycleSummary {
        stream: stream.name.clone(),
        skipped: true,
        ..CycleSummary::default()
    }
}

async fn run_cycle(inner: &Inner, stream: &Stream, summary: &mut CycleSummary) -> Result<()> {
    let store = &inner.store;
    // One poller per stream across processes sharing the journal (a `--once` run beside a
    // service): the other skips this cycle.
    if !store
        .acquire_stream(&stream.name, &inner.claimant, inner.now())
        .await?
    {
        tracing::info!(stream = %stream.name, "stream is being polled by another process; cycle skipped");
        summary.skipped = true;
        return Ok(());
    }
    let result = journal_cycle(inner, stream, summary).await;
    if let Err(e) = store.release_stream(&stream.name, &inner.claimant).await {
        // The lease runs out by itself.
        tracing::warn!(stream = %stream.name, error = %e, "could not release the stream lease");
    }
    result
}

async fn journal_cycle(inner: &Inner, stream: &Stream, summary: &mut CycleSummary) -> Result<()> {
    let store = &inner.store;
    let cycle = store.begin_cycle(&stream.name, inner.now()).await?;
    let outcome = pages(inner, stream, cycle, summary).await;
    let end = CycleEnd {
        at: inner.now(),
        error: outcome.as_ref().err().map(ErrorInfo::from),
        watermark: outcome.as_ref().ok().copied().flatten(),
    };
    // The cycle's end is bookkeeping: if the journal refuses it, the page commits stand.
    if let Err(e) = store.end_cycle(cycle, end).await {
        tracing::warn!(stream = %stream.name, error = %e, "could not close the poll cycle");
    }
    outcome.map(|_| ())
}

/// A stream's pages from its saved position, one `poll` each: the loop shared by poll
/// cycles and dry runs. The position moves on with every page served; only the caller's
/// journal commit makes it durable.
struct PageLoop<'a> {
    stream: &'a Stream,
    position: Option<crate::cursor::Position>,
    more: bool,
}

impl<'a> PageLoop<'a> {
    async fn start(inner: &Inner, stream: &'a Stream) -> Result<Self> {
        let mut position = inner.store.load_position(&stream.name).await?;
        if position.is_none()
            && let Some(old) = stream.renamed_from()
        {
            // Not renamed in the journal yet (a dry run before the first start).
            position = inner.store.load_position(old).await?;
        }
        Ok(Self {
            stream,
            position,
            more: true,
        })
    }

    /// The next page, or `None` when the source said the cycle is over.
    async fn next(&mut self) -> Result<Option<crate::source::Page>> {
        if !self.more {
            return Ok(None);
        }
        let page = self.stream.source.poll(self.position.as_ref()).await?;
        self.position = Some(page.next.clone());
        self.more = page.more;
        Ok(Some(page))
    }
}

/// Renews this process's lease on polling `stream` (before every page but the first).
/// Lost only when this process stalled past its lease and another took the stream over:
/// stop, the other continues from the saved position.
async fn renew_lease(inner: &Inner, stream: &Stream) -> Result<()> {
    if inner
        .store
        .acquire_stream(&stream.name, &inner.claimant, inner.now())
        .await?
    {
        Ok(())
    } else {
        Err(Error::InvalidState(format!(
            "lost the lease on stream `{}` to another process",
            stream.name
        )))
    }
}

async fn pages(
    inner: &Inner,
    stream: &Stream,
    cycle: crate::audit::CycleId,
    summary: &mut CycleSummary,
) -> Result<Option<Timestamp>> {
    let store = &inner.store;
    let mut pages = PageLoop::start(inner, stream).await?;
    let mut watermark = None;
    inner.checkpoint(&super::Checkpoint::BeforePoll {
        stream: stream.name.clone(),
    });
    let mut next = pages.next().await?;
    loop {
        let Some(page) = next.take() else {
            return Ok(watermark);
        };
        summary.polled += page.items.len() as u64;
        let last = !page.more || summary.pages + 1 >= inner.max_pages_per_cycle;
        let page_watermark = page.watermark;
        let (records, rejected) = plan(&inner.router, page.items);
        for r in &rejected {
            tracing::info!(stream = %stream.name, key = ?r.key, reason = %r.reason, "record rejected");
        }
        let commit = store.commit_page(PageCommit {
            stream: stream.name.clone(),
            cycle,
            records,
            rejected,
            position: page.next,
            at: inner.now(),
        });
        // Reading the next page overlaps journaling this one. The saved position moves only
        // with a commit, so a page read ahead of a failed commit is simply read again.
        let read_ahead = async {
            if last {
                return Ok(None);
            }
            renew_lease(inner, stream).await?;
            inner.checkpoint(&super::Checkpoint::BeforePoll {
                stream: stream.name.clone(),
            });
            pages.next().await
        };
        let (committed, ahead) = tokio::join!(commit, read_ahead);
        let committed = committed?;
        inner.checkpoint(&super::Checkpoint::AfterCommit {
            stream: stream.name.clone(),
        });
        summary.pages += 1;
        summary.journaled += committed.inserted;
        summary.duplicates += committed.duplicates;
        summary.rejected += committed.rejected;
        summary.planned += committed.deliveries;
        if committed.deliveries > 0 {
            inner.wake_delivery.notify_one();
        }
        if let Some(w) = page_watermark {
            watermark = Some(w);
            let lag = clock::until(w, inner.now());
            metrics::gauge!("ml_stream_lag_seconds", "stream" => stream.name.clone())
                .set(lag.as_secs_f64());
        }
        if last {
            return Ok(watermark);
        }
        next = ahead?;
    }
}

/// Whether the journal holds `record` in this version (a run would drop it as a
/// duplicate).
async fn already_journaled(
    inner: &Inner,
    stream: &Stream,
    record: &crate::record::Record,
) -> Result<bool> {
    let (key, version) = (record.dedupe_key(), record.dedupe_version());
    for name in std::iter::once(stream.name.as_str()).chain(stream.renamed_from()) {
        let history = inner.store.record_history(name, &record.key).await?;
        if history
            .versions
            .iter()
            .any(|v| v.record.dedupe_key() == key && v.record.dedupe_version() == version)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

pub(super) async fn dry_run(inner: &Inner, max_records: usize) -> Result<DryRun> {
    let mut out = DryRun::default();
    for stream in &inner.streams {
        let mut pages = PageLoop::start(inner, stream).await?;
        let mut read = 0usize;
        // Until `max_records` items were read (a page's surplus is left out).
        while read < max_records
            && let Some(page) = pages.next().await?
        {
            let mut items = page.items;
            items.truncate(max_records - read);
            read += items.len();
            let (records, rejected) = plan(&inner.router, items);
            out.rejected
                .extend(rejected.into_iter().map(|r| (stream.name.clone(), r)));
            for p in records {
                if already_journaled(inner, stream, &p.record).await? {
                    out.already_journaled
                        .push((stream.name.clone(), p.record.key.clone()));
                    continue;
                }
                if p.destinations.is_empty() {
                    out.unrouted
                        .push((stream.name.clone(), p.record.key.clone()));
                }
                let explanation = inner.router.explain(&p.record);
                for d in p.destinations {
                    let sink = inner.sinks.get(&d.sink).ok_or_else(|| {
                        Error::config("sink", format!("no sink named `{}`", d.sink))
                    })?;
                    out.messages.push(PlannedMessage {
                        stream: stream.name.clone(),
                        record_key: p.record.key.clone(),
                        rendered: sink.render(&p.record, &d),
                        rules: explanation
                            .rules
                            .iter()
                            .filter(|v| v.applied && v.destinations.contains(&d))
                            .map(|v| v.rule.clone())
                            .collect(),
                        destination: d,
                    });
                }
            }
        }
    }
    Ok(out)
}
