//! The pipeline: schedule tick -> `Source::poll` -> journal (records + planned deliveries +
//! position, one transaction) -> delivery workers (limiter -> `Sink::send` -> journal
//! outcome) -> retry with backoff, or failed (replayable).
//!
//! The five invariants it keeps:
//! 1. A stream position is saved only in the transaction that journals the records it
//!    covers ([`AuditWrite::commit_page`](crate::audit::AuditWrite::commit_page)), so a crash loses nothing and a re-poll adds
//!    nothing twice.
//! 2. A delivery is marked in flight (claimed, with this pipeline's owner id and a lease
//!    renewed while it sends) before it is sent; recovery turns this pipeline's own
//!    in-flight deliveries and those whose lease ran out (a crashed process) into in-doubt
//!    retries, which are reconciled with the sink when it can (`Sink::reconcile`) or
//!    re-sent (at least once, and counted) when it cannot. Another live process's
//!    deliveries are never touched, and one process polls a stream at a time.
//! 3. Per destination, deliveries go out in source order, one at a time; other
//!    destinations are never held up by a slow or failing one.
//! 4. A bad record is journaled as rejected with its reason and the stream goes on; a
//!    source that is down pauses its stream with backoff (journaled per cycle) and resumes
//!    from its saved position; a permanent source error pauses only that stream, retried
//!    on a slow cadence ([`PipelineBuilder::permanent_pause`]), visible in
//!    [`Pipeline::stream_status`], the journaled cycle, the `ml_stream_paused` gauge and a
//!    warning.
//! 5. Secrets never reach the journal, logs or errors: only typed errors' `Display` is
//!    journaled, and connector types never print a secret.

mod deliver;
mod poll;
mod summary;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Notify;

use crate::audit::{
    AuditStore, Claimant, DeliveryFilter, DeliveryId, ErrorInfo, OwnerId, RunLengths,
};
use crate::clock::{self, Clock, SystemClock};
use crate::error::{Error, Result};
use crate::limiter::{NoLimit, RateLimiter};
use crate::record::Rejected;
use crate::render::Rendered;
use crate::retry::RetryPolicy;
use crate::routing::Router;
use crate::schedule::Schedule;
use crate::sink::{Destination, Sink};
use crate::source::Source;

pub use summary::{CycleSummary, DeliverySummary, RunSummary};

/// A named point in the pipeline's work, reported to a [`CheckpointHook`]: used by the
/// crash tests to kill the process at exact points, and usable for tracing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checkpoint {
    /// About to poll a stream.
    BeforePoll {
        /// The stream.
        stream: String,
    },
    /// A page (records + position) was committed to the journal.
    AfterCommit {
        /// The stream.
        stream: String,
    },
    /// A delivery is claimed (in flight) and about to be sent.
    BeforeSend {
        /// The delivery.
        delivery: DeliveryId,
    },
    /// The sink returned (successfully or not); the outcome is not journaled yet.
    AfterSend {
        /// The delivery.
        delivery: DeliveryId,
    },
    /// The outcome was journaled.
    AfterFinish {
        /// The delivery.
        delivery: DeliveryId,
    },
}

/// A callback run at each [`Checkpoint`].
pub type CheckpointHook = Arc<dyn Fn(&Checkpoint) + Send + Sync>;

/// One stream: a source polled on a schedule.
#[derive(Clone)]
pub struct Stream {
    name: String,
    source: Arc<dyn Source>,
    schedule: Schedule,
    renamed_from: Option<String>,
}

impl Stream {
    /// A stream named `name` (unique within the pipeline; it keys the journal).
    pub fn new(name: impl Into<String>, source: Arc<dyn Source>, schedule: Schedule) -> Self {
        Self {
            name: name.into(),
            source,
            schedule,
            renamed_from: None,
        }
    }

    /// The stream's former name: the journal's stream of that name becomes this one at
    /// the next start ([`Pipeline::recover`]), so it goes on where it was instead of
    /// starting over (and sending its whole history again).
    #[must_use]
    pub fn with_renamed_from(mut self, old: Option<String>) -> Self {
        self.renamed_from = old;
        self
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The former name it takes over in the journal, when it was renamed.
    pub fn renamed_from(&self) -> Option<&str> {
        self.renamed_from.as_deref()
    }
}

/// `invoices: OracleFusion(pod, invoices), every 10m`.
impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}, {}", self.name, self.source, self.schedule)
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("name", &self.name)
            .field("source", &self.source.to_string())
            .field("schedule", &self.schedule.to_string())
            .field("renamed_from", &self.renamed_from)
            .finish()
    }
}

/// The default longest run of one destination's deliveries claimed at once
/// ([`PipelineBuilder::max_run`]).
pub const DEFAULT_MAX_RUN: usize = 128;

/// How long a permanently failing stream is paused at most ([`PipelineBuilder::permanent_pause`]).
pub const MAX_PERMANENT_PAUSE: Duration = Duration::from_secs(24 * 3600);

/// The default pause of a permanently failing stream.
pub const DEFAULT_PERMANENT_PAUSE: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Default, Clone)]
struct StreamHealth {
    failures: u32,
    paused_until: Option<Timestamp>,
    /// The error that paused the stream (`None`: healthy).
    error: Option<ErrorInfo>,
    /// Whether that error was permanent (slow cadence) rather than a backoff.
    permanent: bool,
    /// Set when the source said it is unavailable until this returns
    /// ([`Error::Unavailable`]).
    waiting_for: Option<String>,
}

/// What a stream is doing, as [`Pipeline::stream_status`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamState {
    /// Polled on its schedule: its last cycle succeeded, or it has not run yet.
    Running,
    /// Its source failed with a retryable (or in-doubt) error: no poll before `until`.
    BackingOff {
        /// The next try.
        until: Timestamp,
        /// Consecutive failed cycles.
        failures: u32,
        /// The last error, as journaled with its cycle.
        error: ErrorInfo,
    },
    /// Its source failed permanently (a configuration error, a missing privilege, an
    /// attribute the pod lacks): tried again only on the slow cadence
    /// ([`PipelineBuilder::permanent_pause`]) until someone fixes the cause.
    Paused {
        /// The next try.
        until: Timestamp,
        /// Consecutive failed cycles.
        failures: u32,
        /// Why, as journaled with its cycle.
        error: ErrorInfo,
    },
    /// Its source cannot reach its system until something returns ([`Error::Unavailable`]:
    /// an on-premises relay agent is not connected). Nothing is queued meanwhile; the
    /// pipeline checks again at `until` (a local check) and resumes from the saved position.
    Unavailable {
        /// The next check.
        until: Timestamp,
        /// Consecutive failed cycles.
        failures: u32,
        /// What must come back.
        waiting_for: String,
        /// The error, as journaled with its cycle.
        error: ErrorInfo,
    },
}

/// One stream's status ([`Pipeline::stream_status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamStatus {
    /// The stream.
    pub stream: String,
    /// Whether a cycle of it is running right now.
    pub polling: bool,
    /// Its state.
    pub state: StreamState,
}

struct Inner {
    streams: Vec<Stream>,
    router: Router,
    sinks: HashMap<String, Arc<dyn Sink>>,
    limiter: Arc<dyn RateLimiter>,
    store: Arc<dyn AuditStore>,
    retry: RetryPolicy,
    source_backoff: RetryPolicy,
    permanent_pause: Duration,
    clock: Arc<dyn Clock>,
    max_in_flight: usize,
    max_run: usize,
    run_lengths: Mutex<RunLengths>,
    max_pages_per_cycle: u64,
    hook: Option<CheckpointHook>,
    claimant: Claimant,
    health: Mutex<HashMap<String, StreamHealth>>,
    polling: Mutex<HashSet<String>>,
    wake_delivery: Notify,
    /// Destinations whose last send before this process was looked up in the journal (and
    /// told to the limiter) before this process's first send to them.
    paced_from_journal: Mutex<HashSet<Destination>>,
    /// Sends that ended since the last outcome group, to journal with the next one.
    send_ends: Mutex<HashMap<Destination, Timestamp>>,
}

impl Inner {
    /// Journals an error note of `kind` about `subject` (for `stream`): once a day per
    /// subject and error (what raises it repeats every slow cycle; the note need not). A
    /// journal that keeps no notes is only logged.
    async fn daily_note(
        &self,
        kind: &str,
        subject: &str,
        stream: &str,
        e: &Error,
        message: String,
    ) {
        let now = self.now();
        let day = now.to_zoned(jiff::tz::TimeZone::UTC).date();
        let note = crate::audit::JournalNote::new(
            now,
            kind,
            crate::audit::NoteSeverity::Error,
            format!("{subject}\n{e}\n{day}"),
            message,
        )
        .with_stream(stream);
        if let Err(n) = self.store.note(note).await {
            tracing::debug!(stream, error = %n, "the journal keeps no notes");
        }
    }

    fn checkpoint(&self, c: &Checkpoint) {
        if let Some(h) = &self.hook {
            h(c);
        }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// Assembles a [`Pipeline`].
#[derive(Default)]
pub struct PipelineBuilder {
    streams: Vec<Stream>,
    router: Option<Router>,
    sinks: HashMap<String, Arc<dyn Sink>>,
    limiter: Option<Arc<dyn RateLimiter>>,
    store: Option<Arc<dyn AuditStore>>,
    retry: Option<RetryPolicy>,
    source_backoff: Option<RetryPolicy>,
    permanent_pause: Option<Duration>,
    clock: Option<Arc<dyn Clock>>,
    max_in_flight: Option<usize>,
    max_run: Option<usize>,
    max_pages_per_cycle: Option<u64>,
    hook: Option<CheckpointHook>,
    owner: Option<OwnerId>,
    lease: Option<Duration>,
    errors: Vec<Error>,
}

impl PipelineBuilder {
    /// Adds a stream.
    pub fn stream(mut self, stream: Stream) -> Self {
        self.streams.push(stream);
        self
    }

    /// Sets the routing rules.
    pub fn router(mut self, router: Router) -> Self {
        self.router = Some(router);
        self
    }

    /// Registers a sink under a name that destinations use (`slack` in `slack:#finance`).
    pub fn sink(mut self, name: impl Into<String>, sink: Arc<dyn Sink>) -> Self {
        let name = name.into();
        if self.sinks.insert(name.clone(), sink).is_some() {
            self.errors.push(Error::config(
                "sink",
                format!("sink `{name}` is registered twice"),
            ));
        }
        self
    }

    /// Sets the rate limiter (default: [`NoLimit`]).
    pub fn limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Sets the journal (required).
    pub fn store(mut self, store: Arc<dyn AuditStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Sets the delivery retry policy (default: [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Sets the backoff of a stream whose source is down (its attempt and time limits are
    /// ignored: a source is retried for ever, at most `max_delay` apart).
    pub fn source_backoff(mut self, policy: RetryPolicy) -> Self {
        self.source_backoff = Some(policy);
        self
    }

    /// Sets how long a stream is paused after its source failed permanently (a
    /// configuration error, a missing privilege, an attribute the pod lacks: trying again
    /// sooner cannot help) before it is tried again: default
    /// [`DEFAULT_PERMANENT_PAUSE`] (15 min), clamped to 1 s ..= [`MAX_PERMANENT_PAUSE`]
    /// (24 h) so a fixed cause is noticed within a day.
    pub fn permanent_pause(mut self, pause: Duration) -> Self {
        self.permanent_pause = Some(pause);
        self
    }

    /// Sets the clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How many destinations may be sending at once (default 16). Each sends one message
    /// at a time, in order; the rest of its claimed run waits, in flight in the journal.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n);
        self
    }

    /// The longest run of consecutive deliveries one destination claims at once (default
    /// [`DEFAULT_MAX_RUN`]; 1 claims every message on its own). Runs adapt to what a
    /// destination delivers in about a second, up to this: a paced destination (a Slack
    /// channel at 1 message/s) keeps runs of 1, a fast sink pays two journal transactions
    /// per run instead of per message. After a crash, a run's unjournaled messages are in
    /// doubt (reconciled, or re-sent where the sink cannot reconcile): this bounds them
    /// for sinks that no limiter paces.
    pub fn max_run(mut self, n: usize) -> Self {
        self.max_run = Some(n);
        self
    }

    /// Bounds one poll cycle (default 10,000 pages); the next cycle continues from the
    /// saved position.
    pub fn max_pages_per_cycle(mut self, n: u64) -> Self {
        self.max_pages_per_cycle = Some(n);
        self
    }

    /// Names this pipeline instance in the journal's claims (default: [`OwnerId::random`],
    /// fresh per process run). Two live processes must never share an owner.
    pub fn owner(mut self, owner: OwnerId) -> Self {
        self.owner = Some(owner);
        self
    }

    /// How long a claim (a delivery in flight, a stream being polled) holds without renewal
    /// (default [`crate::audit::DEFAULT_LEASE`], 60 s). The pipeline renews its claims at a
    /// third of this while it works; after a crash, another process (a restarted one too:
    /// owners are per run) takes them over once the lease ran out.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Calls `hook` at every [`Checkpoint`].
    pub fn checkpoint_hook(mut self, hook: CheckpointHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Validates and builds. Errors name what is wrong: a missing journal, a duplicate
    /// stream name, a rule sending to a sink that is not registered. When several things
    /// are wrong, the first one (in the order the builder was called) is reported.
    pub fn build(self) -> Result<Pipeline> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        let store = self
            .store
            .ok_or_else(|| Error::config("store", "a pipeline needs an AuditStore"))?;
        let mut names = HashSet::new();
        for s in &self.streams {
            if s.name.trim().is_empty() {
                return Err(Error::config("stream", "a stream needs a name"));
            }
            if !names.insert(s.name.clone()) {
                return Err(Error::config(
                    "stream",
                    format!("stream `{}` is defined twice", s.name),
                ));
            }
        }
        let router = self.router.unwrap_or_default();
        for rule in router.rules() {
            for to in &rule.to {
                let d = Destination::parse(to)?;
                if !self.sinks.contains_key(&d.sink) {
                    return Err(Error::config(
                        "sink",
                        format!(
                            "rule `{}` sends to `{to}`, but no sink named `{}` is registered",
                            rule.name, d.sink
                        ),
                    ));
                }
            }
        }
        let max_in_flight = self.max_in_flight.unwrap_or(16);
        if max_in_flight == 0 {
            return Err(Error::config("max_in_flight", "must be at least 1"));
        }
        let lease = self.lease.unwrap_or(crate::audit::DEFAULT_LEASE);
        if lease < Duration::from_secs(1) {
            return Err(Error::config("lease", "must be at least 1 s"));
        }
        let claimant = Claimant::new(self.owner.unwrap_or_else(OwnerId::random)).with_lease(lease);
        Ok(Pipeline {
            inner: Arc::new(Inner {
                streams: self.streams,
                router,
                sinks: self.sinks,
                limiter: self.limiter.unwrap_or_else(|| Arc::new(NoLimit)),
                store,
                retry: self.retry.unwrap_or_default(),
                source_backoff: self.source_backoff.unwrap_or_else(|| {
                    RetryPolicy::default()
                        .with_base_delay(Duration::from_secs(5))
                        .with_max_delay(Duration::from_secs(900))
                }),
                permanent_pause: self
                    .permanent_pause
                    .unwrap_or(DEFAULT_PERMANENT_PAUSE)
                    .clamp(Duration::from_secs(1), MAX_PERMANENT_PAUSE),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                max_in_flight,
                max_run: self.max_run.unwrap_or(DEFAULT_MAX_RUN).max(1),
                run_lengths: Mutex::default(),
                max_pages_per_cycle: self.max_pages_per_cycle.unwrap_or(10_000).max(1),
                hook: self.hook,
                claimant,
                health: Mutex::default(),
                polling: Mutex::default(),
                wake_delivery: Notify::new(),
                paced_from_journal: Mutex::new(HashSet::new()),
                send_ends: Mutex::new(HashMap::new()),
            }),
        })
    }
}

/// A message a dry run would send.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedMessage {
    /// The stream.
    pub stream: String,
    /// The record's key.
    pub record_key: String,
    /// Where it would go.
    pub destination: Destination,
    /// What would be sent.
    pub rendered: Rendered,
    /// The rules that sent it there.
    pub rules: Vec<String>,
}

/// What a dry run found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DryRun {
    /// Messages that would be sent, in order.
    pub messages: Vec<PlannedMessage>,
    /// Items that would be rejected, with their stream.
    pub rejected: Vec<(String, Rejected)>,
    /// Records that no rule routes anywhere.
    pub unrouted: Vec<(String, String)>,
    /// Records (stream, key) the journal already holds in this version: a run would drop
    /// them as duplicates and send nothing for them (their messages are not listed).
    pub already_journaled: Vec<(String, String)>,
}

/// A running pipeline (cheap to clone; clones share everything).
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("streams", &self.inner.streams)
            .field("sinks", &self.inner.sinks.keys().collect::<Vec<_>>())
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A builder.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder::default()
    }

    /// The journal.
    pub fn store(&self) -> &Arc<dyn AuditStore> {
        &self.inner.store
    }

    /// The streams.
    pub fn streams(&self) -> &[Stream] {
        &self.inner.streams
    }

    /// The router.
    pub fn router(&self) -> &Router {
        &self.inner.router
    }

    /// How long a permanently failing stream is paused between tries.
    pub fn permanent_pause(&self) -> Duration {
        self.inner.permanent_pause
    }

    /// Each stream's state, in stream order: running, backing off after retryable
    /// failures, or paused after a permanent one (with the error, as journaled with the
    /// cycle it ended: `AuditStore::cycles` shows the same from the journal).
    pub fn stream_status(&self) -> Vec<StreamStatus> {
        let health = self
            .inner
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let polling = self
            .inner
            .polling
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.inner
            .streams
            .iter()
            .map(|s| {
                let state = match health.get(&s.name) {
                    Some(StreamHealth {
                        failures,
                        paused_until: Some(until),
                        error: Some(error),
                        permanent,
                        waiting_for,
                    }) => {
                        let (until, failures, error) = (*until, *failures, error.clone());
                        if let Some(w) = waiting_for {
                            StreamState::Unavailable {
                                until,
                                failures,
                                waiting_for: w.clone(),
                                error,
                            }
                        } else if *permanent {
                            StreamState::Paused {
                                until,
                                failures,
                                error,
                            }
                        } else {
                            StreamState::BackingOff {
                                until,
                                failures,
                                error,
                            }
                        }
                    }
                    _ => StreamState::Running,
                };
                StreamStatus {
                    stream: s.name.clone(),
                    polling: polling.contains(&s.name),
                    state,
                }
            })
            .collect()
    }

    /// Who this pipeline claims as in the journal, and for how long.
    pub fn claimant(&self) -> &Claimant {
        &self.inner.claimant
    }

    /// Recovery: the deliveries this pipeline left in flight, and those whose owner's lease
    /// ran out (a crashed process, whatever its owner), become in-doubt retries (reconciled
    /// before they are sent again). Deliveries another live process holds are never
    /// touched, so a `--once` run or a replay beside a running service is safe. `run` calls
    /// it at start-up and `run_once` on every pass.
    ///
    /// After a crash, the dead process's claims wait for their lease (60 s by default, see
    /// [`PipelineBuilder::lease`]) before they are taken over.
    ///
    /// Held deliveries (their destination refused our credentials) are made due at once:
    /// a start may follow a fix of the credentials (see
    /// [`AuditWrite::retry_held_now`](crate::audit::AuditWrite::retry_held_now)).
    pub async fn recover(&self) -> Result<u64> {
        self.apply_renames().await?;
        let held = self.inner.store.retry_held_now(self.inner.now()).await?;
        if held > 0 {
            tracing::info!(
                deliveries = held,
                "held deliveries (credentials refused) get one attempt now: they may work again"
            );
        }
        let n = self
            .inner
            .store
            .requeue_in_flight(&self.inner.claimant, self.inner.now())
            .await?;
        if n > 0 {
            tracing::warn!(
                deliveries = n,
                "requeued in-flight deliveries left by a crash (or an expired lease) as in doubt"
            );
        }
        Ok(n)
    }

    /// Renames in the journal each stream renamed in the configuration
    /// ([`Stream::with_renamed_from`]) that has no position under its new name yet. A
    /// former name the journal does not hold is an error (a typo would otherwise start the
    /// stream over and send its whole history).
    async fn apply_renames(&self) -> Result<()> {
        for s in &self.inner.streams {
            let Some(old) = s.renamed_from.as_deref() else {
                continue;
            };
            if self.inner.store.load_position(&s.name).await?.is_some() {
                continue;
            }
            if self.inner.store.rename_stream(old, &s.name).await? {
                tracing::warn!(from = old, to = %s.name, "renamed the stream in the journal: it goes on where it was");
            } else {
                return Err(Error::config(
                    format!("stream `{}`: renamed_from", s.name),
                    format!(
                        "the journal has no stream `{old}` to rename (check the former name; \
                         without `renamed_from`, `{}` starts as a new stream)",
                        s.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Takes over the deliveries whose lease ran out (a crashed process's, whoever held
    /// them) as in-doubt retries, leaving this pipeline's own claims alone (its sends in
    /// flight renew their leases). `run` calls it every half lease, so a replica that dies
    /// beside live ones has its deliveries resumed by them without anyone restarting.
    pub async fn recover_expired(&self) -> Result<u64> {
        // A claimant that holds nothing: only expired leases qualify.
        let sweeper = Claimant::new(OwnerId::random()).with_lease(self.inner.claimant.lease);
        let n = self
            .inner
            .store
            .requeue_in_flight(&sweeper, self.inner.now())
            .await?;
        if n > 0 {
            tracing::warn!(
                deliveries = n,
                "took over in-flight deliveries whose lease ran out (a crashed process) as in doubt"
            );
            self.inner.wake_delivery.notify_one();
        }
        Ok(n)
    }

    /// One pass: recover, poll every stream through one full cycle, then deliver everything
    /// due now. Retries scheduled for later stay in the journal for the next pass.
    pub async fn run_once(&self) -> Result<RunSummary> {
        let mut summary = RunSummary {
            recovered: self.recover().await?,
            ..RunSummary::default()
        };
        // Delivering overlaps polling: what a page plans goes out while the next page is
        // read and journaled.
        let (polled, polled_rx) = tokio::sync::watch::channel(false);
        let delivering = {
            let inner = Arc::clone(&self.inner);
            tokio::spawn(async move {
                deliver::until_idle(&inner, deliver::Until::Drained(polled_rx)).await
            })
        };
        for s in &self.inner.streams {
            summary.add_cycle(poll::cycle(&self.inner, s).await);
        }
        let _ = polled.send(true);
        summary.deliveries = delivering.await.map_err(|e| {
            Error::store(
                crate::ErrorClass::Permanent,
                format!("delivery task failed: {e}"),
                None,
            )
        })??;
        Ok(summary)
    }

    /// Polls one stream through one cycle (skipped, not queued, when that stream is
    /// already being polled or is paused after failures: see [`Self::stream_status`]).
    pub async fn poll_stream(&self, name: &str) -> Result<CycleSummary> {
        let s = self
            .inner
            .streams
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::NotFound(format!("stream `{name}`")))?;
        Ok(poll::cycle(&self.inner, s).await)
    }

    /// Gives up this pipeline's leases on polling its streams (after a poll was cut short:
    /// a `--once` run stopped by a signal mid-page), so the next run polls them at once
    /// instead of waiting for the lease to run out. A lease it does not hold is left alone.
    pub async fn release_streams(&self) -> Result<()> {
        for s in &self.inner.streams {
            self.inner
                .store
                .release_stream(&s.name, &self.inner.claimant)
                .await?;
        }
        Ok(())
    }

    /// Delivers everything due now, then returns.
    pub async fn deliver_due(&self) -> Result<DeliverySummary> {
        deliver::until_idle(&self.inner, deliver::Until::Idle).await
    }

    /// Delivers everything due now, then waits for and delivers what comes due within
    /// `within` of the call (sends queued behind a rate limit, retries scheduled soon);
    /// what is due later stays in the journal. The end of a `--once` run: it returns
    /// however the journal looks, never spinning on a destination held behind its head
    /// or on deliveries another process holds.
    pub async fn deliver_coming_due(&self, within: Duration) -> Result<DeliverySummary> {
        self.deliver_coming_due_until(within, std::future::pending())
            .await
    }

    /// [`Self::deliver_coming_due`], ended early when `shutdown` completes (a `--once` run
    /// sent SIGTERM): no new send starts, sends in flight finish and are journaled, the
    /// unsent rest of their runs is given back; all of it goes out on the next run.
    pub async fn deliver_coming_due_until(
        &self,
        within: Duration,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<DeliverySummary> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let work = self.coming_due(within, stop_rx);
        tokio::pin!(work);
        tokio::pin!(shutdown);
        tokio::select! {
            r = &mut work => return r,
            () = &mut shutdown => {}
        }
        let _ = stop_tx.send(true);
        work.await
    }

    async fn coming_due(
        &self,
        within: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<DeliverySummary> {
        let pass = |stop: &tokio::sync::watch::Receiver<bool>| {
            deliver::until_idle(&self.inner, deliver::Until::IdleOrStopped(stop.clone()))
        };
        let deadline = clock::add(self.inner.now(), within);
        let mut summary = pass(&stop).await?;
        let mut idle_at = None;
        while let Some(due) = self.inner.store.next_due_at().await? {
            if due > deadline || *stop.borrow() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(clock::until(self.inner.now(), due)) => {}
                _ = stop.wait_for(|v| *v) => break,
            }
            let d = pass(&stop).await?;
            summary.merge(&d);
            if d.attempts > 0 {
                idle_at = None;
            } else if idle_at.replace(due) == Some(due) {
                // Twice due and nothing to claim: not ours to send (another replica's
                // lease), or a clock that does not move; leave it to the next pass.
                break;
            }
        }
        Ok(summary)
    }

    /// Makes a failed delivery pending again; the next delivery pass sends it (after
    /// reconciling, if its last attempt was in doubt).
    pub async fn replay(&self, id: DeliveryId) -> Result<()> {
        self.inner.store.replay(id, self.inner.now()).await?;
        self.inner.wake_delivery.notify_one();
        Ok(())
    }

    /// Makes every failed delivery matching `filter` pending again. Returns how many.
    pub async fn replay_failed(&self, filter: &DeliveryFilter) -> Result<u64> {
        let n = self
            .inner
            .store
            .replay_failed(filter, self.inner.now())
            .await?;
        self.inner.wake_delivery.notify_one();
        Ok(n)
    }

    /// Shows what would be sent where, without journaling or sending anything: reads up to
    /// `max_records` items per stream from the saved positions. Records the journal
    /// already holds in the same version are listed as such, not as messages.
    pub async fn dry_run(&self, max_records: usize) -> Result<DryRun> {
        poll::dry_run(&self.inner, max_records).await
    }

    /// Runs until `shutdown` completes: each stream polled on its schedule (jittered; a
    /// stream is never polled twice at once; a failing source backs off), deliveries sent as
    /// they become due. On shutdown no new work starts and sends in flight finish.
    pub async fn run(
        &self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<RunSummary> {
        let recovered = self.recover().await?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for s in self.inner.streams.clone() {
            let inner = Arc::clone(&self.inner);
            let mut stop = stop_rx.clone();
            tasks.spawn(async move {
                let mut total = RunSummary::default();
                let mut seen = None;
                loop {
                    let (elsewhere, newest) = poll::polled_elsewhere(&inner, &s.name, seen).await;
                    let c = if elsewhere {
                        seen = newest;
                        poll::polled_by_another(&inner, &s)
                    } else {
                        let c = poll::cycle(&inner, &s).await;
                        seen = poll::newest_cycle(&inner, &s.name).await;
                        c
                    };
                    let failed = c.error.is_some();
                    total.add_cycle(c);
                    let now = inner.now();
                    let next = match (failed, poll::paused_until(&inner, &s.name)) {
                        (true, Some(t)) => t,
                        _ => s.schedule.next_fire(now, &mut rand::rng()),
                    };
                    tokio::select! {
                        () = tokio::time::sleep(clock::until(now, next)) => {}
                        _ = stop.wait_for(|v| *v) => break,
                    }
                }
                Ok::<_, Error>(total)
            });
        }
        {
            // Expired leases of processes that died beside this one.
            let me = self.clone();
            let mut stop = stop_rx.clone();
            let every = (self.inner.claimant.lease / 2).max(Duration::from_millis(100));
            tasks.spawn(async move {
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(every) => {}
                        _ = stop.wait_for(|v| *v) => break,
                    }
                    if let Err(e) = me.recover_expired().await {
                        tracing::warn!(error = %e, "could not sweep expired claims");
                    }
                }
                Ok::<_, Error>(RunSummary::default())
            });
        }
        {
            let inner = Arc::clone(&self.inner);
            let stop = stop_rx.clone();
            tasks.spawn(async move {
                let d = deliver::until_idle(&inner, deliver::Until::Stopped(stop)).await?;
                Ok(RunSummary {
                    deliveries: d,
                    ..RunSummary::default()
                })
            });
        }
        shutdown.await;
        let _ = stop_tx.send(true);
        let mut summary = RunSummary {
            recovered,
            ..RunSummary::default()
        };
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(part)) => summary.merge(part),
                Ok(Err(e)) => return Err(e),
                Err(e) => {
                    return Err(Error::store(
                        crate::ErrorClass::Permanent,
                        format!("pipeline task failed: {e}"),
                        None,
                    ));
                }
            }
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod lost_claim_tests;
#[cfg(test)]
mod tests;
