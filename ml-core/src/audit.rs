//! The `AuditStore` trait: the durable journal, and the only source of truth for what
//! happened to every record and every delivery.

use std::collections::HashMap;
use std::fmt::{self, Debug};
use std::str::FromStr;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::cursor::Position;
use crate::error::{Error, Result};
use crate::record::{Record, Rejected};
use crate::sink::{Destination, Receipt};

mod notes;

pub use notes::{
    JournalNote, KIND_DESTINATION_HELD, KIND_PAIRING_NEEDED, KIND_PAIRING_RESTORED,
    KIND_REFRESH_TOKEN_EXPIRY, KIND_STREAM_PAUSED, NOTE_KINDS, NoteFilter, NoteSeverity,
};

/// A delivery's id in the journal. Increasing in commit order, so per-destination order is
/// id order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeliveryId(pub i64);

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Debug for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeliveryId({})", self.0)
    }
}

/// A poll cycle's id in the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CycleId(pub i64);

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Planned, not yet attempted.
    Pending,
    /// Claimed by a worker and being sent. After a crash, in-flight deliveries are
    /// requeued as in doubt.
    InFlight,
    /// An attempt failed retryably (or in doubt); another is scheduled.
    Retrying,
    /// Accepted by the remote side (or found there by reconcile).
    Delivered,
    /// Failed permanently or ran out of retries; replayable.
    Failed,
}

impl DeliveryStatus {
    /// Every status.
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::InFlight,
        Self::Retrying,
        Self::Delivered,
        Self::Failed,
    ];

    /// The stable label stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InFlight => "in_flight",
            Self::Retrying => "retrying",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// Whether no further attempt will be made without a replay.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Delivered | Self::Failed)
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| Error::Corrupt(format!("unknown delivery status `{s}`")))
    }
}

/// The status a remote system reports for a delivered message (Twilio status callbacks,
/// SendGrid events). Ordered: a later status never downgrades an earlier one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteStatus {
    /// Accepted and queued.
    Queued,
    /// Being sent.
    Sending,
    /// Handed to the carrier / the receiving mail server.
    Sent,
    /// Delivered to the handset / inbox.
    Delivered,
    /// Read or opened.
    Read,
    /// Could not be delivered (Twilio `undelivered`, SendGrid `bounce`).
    Undelivered,
    /// Failed (Twilio `failed`, SendGrid `dropped`).
    Failed,
}

impl RemoteStatus {
    /// Every status.
    pub const ALL: [Self; 7] = [
        Self::Queued,
        Self::Sending,
        Self::Sent,
        Self::Delivered,
        Self::Read,
        Self::Undelivered,
        Self::Failed,
    ];

    /// The stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Undelivered => "undelivered",
            Self::Failed => "failed",
        }
    }

    /// Whether the remote side gave up on the message.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Undelivered | Self::Failed)
    }

    /// Whether `self` may replace `current`: progress only, and a final failure is final.
    pub fn supersedes(self, current: Self) -> bool {
        fn rank(s: RemoteStatus) -> u8 {
            match s {
                RemoteStatus::Queued => 1,
                RemoteStatus::Sending => 2,
                RemoteStatus::Sent => 3,
                RemoteStatus::Delivered | RemoteStatus::Undelivered | RemoteStatus::Failed => 4,
                RemoteStatus::Read => 5,
            }
        }
        if current.is_failure() {
            return false;
        }
        if self == Self::Read && current != Self::Delivered && rank(current) >= 4 {
            return false;
        }
        rank(self) > rank(current)
    }
}

impl fmt::Display for RemoteStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RemoteStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| Error::Corrupt(format!("unknown remote status `{s}`")))
    }
}

/// A journaled error: its class, remote code and message. Never holds a secret: errors
/// are built from `Display` of typed errors, which never print one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// `retryable`, `permanent` or `in_doubt`.
    pub class: String,
    /// The remote error code, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The message.
    pub message: String,
}

impl From<&Error> for ErrorInfo {
    fn from(e: &Error) -> Self {
        Self {
            class: e.class().as_str().to_owned(),
            code: e.code().map(str::to_owned),
            message: e.to_string(),
        }
    }
}

/// A record to journal, with the destinations routing chose for it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedRecord {
    /// The record.
    pub record: Record,
    /// Where it goes (deduplicated by the store).
    pub destinations: Vec<Destination>,
}

/// One page to journal in ONE transaction: its records, the deliveries they plan, the
/// rejected items, and the stream position after the page.
#[derive(Clone, Debug, PartialEq)]
pub struct PageCommit {
    /// The stream.
    pub stream: String,
    /// The poll cycle this page belongs to.
    pub cycle: CycleId,
    /// Records in source order.
    pub records: Vec<PlannedRecord>,
    /// Rejected items.
    pub rejected: Vec<Rejected>,
    /// The position after this page.
    pub position: Position,
    /// When the page was read.
    pub at: Timestamp,
}

/// What a committed page added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageCommitted {
    /// Records (key + version) journaled for the first time.
    pub inserted: u64,
    /// Records already in the journal (the overlap re-read, a re-poll after a crash).
    pub duplicates: u64,
    /// Rejected items journaled for the first time.
    pub rejected: u64,
    /// Deliveries planned.
    pub deliveries: u64,
}

/// How a poll cycle ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CycleEnd {
    /// When.
    pub at: Timestamp,
    /// The error that ended it early, if any.
    pub error: Option<ErrorInfo>,
    /// The stream's watermark after the cycle.
    pub watermark: Option<Timestamp>,
}

/// A delivery claimed for sending: it is in flight in the journal until its attempt is
/// finished.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedDelivery {
    /// The delivery.
    pub id: DeliveryId,
    /// The stream of its record.
    pub stream: String,
    /// Where it goes.
    pub destination: Destination,
    /// The record (as journaled).
    pub record: Record,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// A previous attempt's outcome is unknown (timeout after sending, crash while in
    /// flight): reconcile before sending, where the sink can.
    pub in_doubt: bool,
    /// The first delivered receipt for the same stream, record key and destination.
    pub thread: Option<Receipt>,
    /// When the delivery was planned.
    pub created_at: Timestamp,
    /// This attempt's number within the current retry round, from 1. A replay starts a new
    /// round (a fresh retry budget); `attempt` keeps counting across rounds.
    pub round_attempt: u32,
    /// When the current round's first attempt started (now, for a first attempt): retry
    /// budgets count from here.
    pub first_attempt_at: Timestamp,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptOutcome {
    /// The remote side accepted the message.
    Delivered {
        /// The remote receipt.
        receipt: Receipt,
        /// The message was sent again while an earlier attempt's outcome was unknown and
        /// could not be reconciled: it may have been posted twice. Counted in the journal.
        after_doubt: bool,
    },
    /// Reconcile found an in-doubt attempt applied on the remote side; nothing was sent.
    Reconciled(Receipt),
    /// Try again at `next_at`.
    Retry {
        /// What went wrong.
        error: ErrorInfo,
        /// When to try again.
        next_at: Timestamp,
        /// Whether the attempt may have been applied.
        in_doubt: bool,
    },
    /// Give up; the delivery is failed and replayable. An unresolved doubt is kept, so a
    /// replay reconciles before it sends.
    Failed(ErrorInfo),
}

impl AttemptOutcome {
    /// The stable label of the outcome stored with the attempt.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Delivered { .. } => "delivered",
            Self::Reconciled(_) => "reconciled",
            Self::Retry { in_doubt: true, .. } => "in_doubt",
            Self::Retry { .. } => "retry",
            Self::Failed(_) => "failed",
        }
    }
}

/// How many consecutive deliveries of one destination one claim may take
/// ([`AuditWrite::claim_runs`]): 1 (the head alone) unless a destination is given more.
///
/// The pipeline sizes a destination's run by what it delivered in about a second, so a
/// paced destination (a Slack channel, 1 message/s) gets runs of 1 and a fast sink gets
/// long ones: what may be in doubt after a crash stays bounded by the destination's own rate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunLengths {
    per_destination: HashMap<Destination, usize>,
}

impl RunLengths {
    /// Runs of 1 everywhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `destination` take runs of up to `len` deliveries (at least 1).
    #[must_use]
    pub fn with(mut self, destination: Destination, len: usize) -> Self {
        self.set(destination, len);
        self
    }

    /// Sets the run length of `destination` (at least 1; 1 is the default and is not kept).
    pub fn set(&mut self, destination: Destination, len: usize) {
        if len > 1 {
            self.per_destination.insert(destination, len);
        } else {
            self.per_destination.remove(&destination);
        }
    }

    /// The longest run `destination` may take (at least 1).
    pub fn get(&self, destination: &Destination) -> usize {
        self.per_destination
            .get(destination)
            .copied()
            .unwrap_or(1)
            .max(1)
    }

    /// The longest run any destination may take.
    pub fn max(&self) -> usize {
        self.per_destination.values().copied().max().unwrap_or(1)
    }
}

/// The latest end per destination among `ends`, ordered by destination (sink, then
/// address): what [`AuditWrite::record_send_ends`] keeps, in an order that lets backends
/// lock rows consistently.
pub fn latest_send_ends(ends: &[(Destination, Timestamp)]) -> Vec<(&Destination, Timestamp)> {
    let mut latest: std::collections::BTreeMap<(&str, &str), (&Destination, Timestamp)> =
        std::collections::BTreeMap::new();
    for (d, at) in ends {
        let e = latest
            .entry((d.sink.as_str(), d.address.as_str()))
            .or_insert((d, *at));
        e.1 = e.1.max(*at);
    }
    latest.into_values().collect()
}

/// How one in-flight attempt ended, for [`AuditWrite::finish_attempts`].
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedAttempt {
    /// The delivery.
    pub id: DeliveryId,
    /// How the attempt ended.
    pub outcome: AttemptOutcome,
    /// When.
    pub at: Timestamp,
}

/// Which deliveries a query or a replay applies to. Empty fields match everything; the
/// time window applies to the delivery's last update.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// One delivery.
    pub id: Option<DeliveryId>,
    /// One stream.
    pub stream: Option<String>,
    /// One record key (within `stream` when given).
    pub record_key: Option<String>,
    /// One destination.
    pub destination: Option<Destination>,
    /// One status.
    pub status: Option<DeliveryStatus>,
    /// Updated at or after.
    pub since: Option<Timestamp>,
    /// Updated before.
    pub until: Option<Timestamp>,
    /// At most this many, oldest first.
    pub limit: Option<usize>,
}

impl DeliveryFilter {
    /// Deliveries with one status.
    pub fn status(status: DeliveryStatus) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }

    /// Whether a delivery matches (for in-memory implementations).
    pub fn matches(&self, d: &DeliveryView) -> bool {
        self.id.is_none_or(|id| id == d.id)
            && self.stream.as_ref().is_none_or(|s| *s == d.stream)
            && self.record_key.as_ref().is_none_or(|k| *k == d.record_key)
            && self
                .destination
                .as_ref()
                .is_none_or(|x| *x == d.destination)
            && self.status.is_none_or(|s| s == d.status)
            && self.since.is_none_or(|t| d.updated_at >= t)
            && self.until.is_none_or(|t| d.updated_at < t)
    }
}

/// A delivery as the journal holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryView {
    /// Its id.
    pub id: DeliveryId,
    /// The record's stream.
    pub stream: String,
    /// The record's source key.
    pub record_key: String,
    /// The record's version (key + version identify the journaled record).
    pub record_version: String,
    /// Where it goes.
    pub destination: Destination,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// Whether the last attempt's outcome is unknown.
    pub in_doubt: bool,
    /// How many times it was sent again after an unresolved doubt (possible duplicates).
    pub resent_after_doubt: u32,
    /// The remote id, once delivered.
    pub remote_id: Option<String>,
    /// Where within the destination the remote id lives (a Slack channel id), once
    /// delivered, when the sink said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_scope: Option<String>,
    /// The remote status from callbacks.
    pub remote_status: Option<RemoteStatus>,
    /// The last error.
    pub last_error: Option<ErrorInfo>,
    /// When it was planned.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When the next attempt is due (pending / retrying).
    pub next_attempt_at: Option<Timestamp>,
}

/// One attempt of a delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptView {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The attempt number, from 1.
    pub number: u32,
    /// When it was claimed.
    pub started_at: Timestamp,
    /// When it ended (`None` while in flight).
    pub finished_at: Option<Timestamp>,
    /// `delivered`, `reconciled`, `retry`, `in_doubt`, `failed`, `interrupted` (crash), or
    /// `None` while in flight.
    pub outcome: Option<String>,
    /// The remote id, when delivered.
    pub remote_id: Option<String>,
    /// The error, when it failed.
    pub error: Option<ErrorInfo>,
}

/// One journaled version of a record.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordVersion {
    /// The record as journaled.
    pub record: Record,
    /// When it was journaled.
    pub journaled_at: Timestamp,
}

/// Everything the journal knows about one record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordHistory {
    /// Its versions, oldest first.
    pub versions: Vec<RecordVersion>,
    /// Its deliveries, oldest first.
    pub deliveries: Vec<DeliveryView>,
}

/// A journaled poll cycle.
#[derive(Clone, Debug, PartialEq)]
pub struct CycleView {
    /// Its id.
    pub id: CycleId,
    /// The stream.
    pub stream: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended (`None`: still running, or the process died).
    pub finished_at: Option<Timestamp>,
    /// Pages committed.
    pub pages: u64,
    /// Counts of what the pages added.
    pub counts: PageCommitted,
    /// The error that ended it, if any.
    pub error: Option<ErrorInfo>,
    /// The position after its last committed page.
    pub position: Option<Position>,
    /// The stream's watermark when the cycle ended.
    pub watermark: Option<Timestamp>,
}

/// A journaled rejected item.
#[derive(Clone, Debug, PartialEq)]
pub struct RejectedView {
    /// The stream.
    pub stream: String,
    /// The item.
    pub item: Rejected,
    /// When it was journaled.
    pub at: Timestamp,
}

/// A status callback from a remote system (Twilio, SendGrid).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackUpdate {
    /// The remote id the callback is about (`SM...`, SendGrid message id).
    pub remote_id: String,
    /// The reported status.
    pub status: RemoteStatus,
    /// When the remote side reported it.
    pub at: Timestamp,
    /// The remote error code (Twilio `ErrorCode` 30007).
    pub error_code: Option<String>,
    /// The delivery the callback names, when it names one (the `delivery_id` a Twilio
    /// status callback URL carries, SendGrid's `custom_args`): a callback can overtake the
    /// answer to its own send, and then no delivery has its remote id yet. Such a callback
    /// is kept on the delivery while it is in flight, and the send's outcome, when it
    /// carries the same remote id, keeps it (a failure it reported fails the delivery).
    pub delivery: Option<DeliveryId>,
}

impl CallbackUpdate {
    /// The error journaled when the callback reports a remote failure.
    pub fn failure_info(&self) -> ErrorInfo {
        ErrorInfo {
            class: "permanent".into(),
            code: self.error_code.clone(),
            message: format!("remote reported {}", self.status),
        }
    }
}

/// What applying a callback did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallbackApplied {
    /// The delivery's remote status moved forward.
    Applied(DeliveryId),
    /// The callback is older than what the journal has (out of order or repeated); ignored.
    Stale(DeliveryId),
    /// No delivery has that remote id.
    UnknownRemoteId,
}

/// Counts across the journal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalStats {
    /// Deliveries pending.
    pub pending: u64,
    /// Deliveries in flight.
    pub in_flight: u64,
    /// Deliveries waiting for a retry.
    pub retrying: u64,
    /// Deliveries delivered.
    pub delivered: u64,
    /// Deliveries failed.
    pub failed: u64,
    /// Sends made again after an unresolved doubt (possible duplicates).
    pub resent_after_doubt: u64,
    /// Record versions journaled.
    pub records: u64,
    /// Rejected items journaled.
    pub rejected: u64,
}

/// Who holds claims on the journal: one pipeline instance. Random per process run, so a
/// restarted process never mistakes another live process's claims for its own.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OwnerId(String);

impl OwnerId {
    /// A named owner (tests, or a host that names its replicas). Use [`OwnerId::random`]
    /// unless every process gets a distinct name.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// A fresh owner: the host name's first label (when known), the process id and 64
    /// random bits.
    pub fn random() -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_default();
        let host = host.split('.').next().unwrap_or_default();
        let pid = std::process::id();
        let tag: u64 = rand::random();
        if host.is_empty() {
            Self(format!("pid{pid}-{tag:016x}"))
        } else {
            Self(format!("{host}-pid{pid}-{tag:016x}"))
        }
    }

    /// The id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Debug for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnerId({})", self.0)
    }
}

/// The default lease of a claim or a stream: renewed well before it runs out while the
/// owner works, taken over by another process only after it ran out.
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// An owner and how long its claims hold without renewal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Claimant {
    /// Who claims.
    pub owner: OwnerId,
    /// How long a claim (a delivery in flight, a stream being polled) holds without
    /// renewal.
    pub lease: std::time::Duration,
}

impl Claimant {
    /// `owner` with the [`DEFAULT_LEASE`].
    pub fn new(owner: OwnerId) -> Self {
        Self {
            owner,
            lease: DEFAULT_LEASE,
        }
    }

    /// A random owner ([`OwnerId::random`]) with the [`DEFAULT_LEASE`].
    pub fn random() -> Self {
        Self::new(OwnerId::random())
    }

    /// Sets the lease.
    #[must_use]
    pub fn with_lease(mut self, lease: std::time::Duration) -> Self {
        self.lease = lease;
        self
    }

    /// When a claim taken or renewed at `now` runs out.
    pub fn lease_until(&self, now: Timestamp) -> Timestamp {
        crate::clock::add(now, self.lease)
    }
}

/// The journal's write path: everything a running pipeline needs (poll cycles, pages,
/// claims, outcomes, recovery, replays, callbacks).
///
/// Contract (checked by `testing::audit_store_conformance`, which every implementation
/// runs):
/// * `commit_page` is ONE transaction: the page's new records, their planned deliveries,
///   its rejected items, the cycle's counters and the stream's position are all written
///   or none is. Records are deduplicated on (stream, [`Record::dedupe_key`],
///   [`Record::dedupe_version`]); a duplicate plans no delivery. An invalid record fails
///   the whole commit with [`Error::InvalidRecord`].
/// * Delivery ids increase in commit order (and in source order within a page).
/// * `claim_due` claims, per destination, only the oldest non-terminal delivery (so
///   per-destination order follows source order), and only when it is pending, or retrying
///   and due. Claiming marks it in flight for the claimant (owner and lease) and opens an
///   attempt, in one transaction, before anything is sent. A destination whose head is in
///   flight or waiting is skipped, so it never blocks another destination. A journaled
///   record that cannot be decoded is quarantined: its deliveries fail with the reason and
///   the claim goes on.
/// * `finish_attempt` applies only to an in-flight delivery ([`Error::InvalidState`]
///   otherwise).
/// * `requeue_in_flight` turns the claimant's own in-flight deliveries, and those whose
///   lease ran out (whoever held them), into due retries marked in doubt, closing their
///   attempts as `interrupted`. Another owner's live claim is never touched.
///   `renew_claims` extends the claimant's leases while it sends.
/// * `acquire_stream` is a per-stream lease: one owner polls a stream at a time; another
///   gets `false` until the holder releases it or its lease runs out.
/// * `replay` / `replay_failed` make failed deliveries pending again, keeping their history
///   and their in-doubt flag, and start a new retry round (`round_attempt` from 1,
///   `first_attempt_at` at the next claim).
/// * `apply_callback` is idempotent and never downgrades a remote status; a remote failure
///   marks the delivery failed (replayable).
/// * Nothing secret is ever stored: records and errors are stored as given, and the types
///   given never hold secrets.
/// * `note` writes a [`JournalNote`] once per (kind, dedupe); `AuditQuery::notes` filters
///   them by time, kind and stream, newest first.
#[async_trait]
pub trait AuditWrite: Send + Sync + Debug {
    /// The saved position of a stream.
    async fn load_position(&self, stream: &str) -> Result<Option<Position>>;

    /// Opens a poll cycle.
    async fn begin_cycle(&self, stream: &str, at: Timestamp) -> Result<CycleId>;

    /// Journals one page atomically (see the trait docs).
    async fn commit_page(&self, page: PageCommit) -> Result<PageCommitted>;

    /// Closes a poll cycle.
    async fn end_cycle(&self, cycle: CycleId, end: CycleEnd) -> Result<()>;

    /// Claims up to `limit` due deliveries for `by`, at most one per destination.
    async fn claim_due(
        &self,
        by: &Claimant,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>>;

    /// Claims, for up to `limit` destinations, a run of consecutive due deliveries each:
    /// the head of the destination (as [`Self::claim_due`] claims it) and, behind it, up
    /// to `runs.get(destination) - 1` more in id order, stopping at the first one that is
    /// not due (in flight, or retrying and not yet due). Each claimed delivery is marked in
    /// flight for `by` with an attempt opened, all in one transaction, exactly as
    /// `claim_due` would; a delivery is never handed to two claimants. Runs come in head id
    /// order, each in id order (per-destination order is source order).
    ///
    /// The default claims the heads alone (runs of 1) with [`Self::claim_due`].
    async fn claim_runs(
        &self,
        by: &Claimant,
        now: Timestamp,
        limit: usize,
        runs: &RunLengths,
    ) -> Result<Vec<Vec<ClaimedDelivery>>> {
        let _ = runs;
        Ok(self
            .claim_due(by, now, limit)
            .await?
            .into_iter()
            .map(|c| vec![c])
            .collect())
    }

    /// Records how several in-flight attempts ended, in order, each as
    /// [`Self::finish_attempt`] would: in one transaction where the backend can (a group
    /// commit). An attempt whose delivery is not in flight (or unknown) does not stop the
    /// others: they are recorded, then the first such refusal is returned
    /// ([`Error::InvalidState`] / [`Error::NotFound`]). Any other error means none of the
    /// remaining outcomes is known to be recorded.
    ///
    /// The default calls [`Self::finish_attempt`] for each.
    async fn finish_attempts(&self, done: Vec<FinishedAttempt>) -> Result<()> {
        let mut refused = None;
        for f in done {
            match self.finish_attempt(f.id, f.outcome, f.at).await {
                Ok(()) => {}
                Err(e @ (Error::InvalidState(_) | Error::NotFound(_))) => {
                    refused.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        refused.map_or(Ok(()), Err)
    }

    /// Gives back claims of `by` that were never sent (the rest of a run cut short by a
    /// retry, or by shutdown): each is due again at once, keeping the doubt it was claimed
    /// with (never adding or losing one), as if it had never been claimed where the backend
    /// can undo the claim (its attempt removed, pending again if it was). Deliveries `by`
    /// no longer holds in flight are left alone. Returns how many were given back.
    ///
    /// The default checks each is still held with [`Self::renew_claims`], then finishes it
    /// with a retry due `now` carrying its doubt (the attempt stays in the history,
    /// labelled `retry` or `in_doubt`, and counts toward its retry round).
    async fn release_claims(
        &self,
        by: &Claimant,
        unsent: &[ClaimedDelivery],
        now: Timestamp,
    ) -> Result<u64> {
        let mut n = 0;
        for c in unsent {
            if self.renew_claims(by, &[c.id], now).await? == 0 {
                continue;
            }
            let outcome = AttemptOutcome::Retry {
                error: ErrorInfo {
                    class: "retryable".into(),
                    code: Some("released".into()),
                    message: "not sent: given back unsent".into(),
                },
                next_at: now,
                in_doubt: c.in_doubt,
            };
            match self.finish_attempt(c.id, outcome, now).await {
                Ok(()) => n += 1,
                Err(Error::InvalidState(_) | Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Extends the leases of `by`'s in-flight deliveries among `ids` to
    /// `by.lease_until(now)`. Returns how many are still held (a delivery whose lease ran
    /// out and was taken over is not).
    async fn renew_claims(&self, by: &Claimant, ids: &[DeliveryId], now: Timestamp) -> Result<u64>;

    /// Records how an in-flight attempt ended.
    async fn finish_attempt(
        &self,
        id: DeliveryId,
        outcome: AttemptOutcome,
        at: Timestamp,
    ) -> Result<()>;

    /// Requeues as in-doubt retries due `now` the in-flight deliveries that `by` holds or
    /// whose lease ran out. Returns how many.
    ///
    /// A requeued delivery's send may have reached its destination at any moment up to
    /// now, so where the backend keeps [send ends](Self::record_send_ends), each requeued
    /// delivery's destination counts as sent to at `now`.
    async fn requeue_in_flight(&self, by: &Claimant, now: Timestamp) -> Result<u64>;

    /// Remembers when the latest send to each destination ended (its answer, timeout or
    /// dropped connection), so that a process started right after this one paces its first
    /// send to a rate-limited destination from there ([`Self::last_send_end`]) instead of
    /// posting within the destination's interval. Per destination the latest time is kept
    /// (an older one never replaces it); one destination may appear several times.
    ///
    /// The default keeps nothing: a restarted process then paces from its own first send.
    async fn record_send_ends(&self, ends: &[(Destination, Timestamp)]) -> Result<()> {
        let _ = ends;
        Ok(())
    }

    /// When the latest send to `destination` ended, as [`Self::record_send_ends`] (or a
    /// requeue) recorded it; `None` when nothing was recorded.
    async fn last_send_end(&self, destination: &Destination) -> Result<Option<Timestamp>> {
        let _ = destination;
        Ok(None)
    }

    /// Takes (or renews) the lease on polling `stream` until `by.lease_until(now)`.
    /// `false`: another owner holds a live lease on it.
    async fn acquire_stream(&self, stream: &str, by: &Claimant, now: Timestamp) -> Result<bool>;

    /// Gives up `by`'s lease on polling `stream` (nothing when it holds none).
    async fn release_stream(&self, stream: &str, by: &Claimant) -> Result<()>;

    /// Makes one failed delivery pending again.
    async fn replay(&self, id: DeliveryId, now: Timestamp) -> Result<()>;

    /// Renames stream `from` to `to` everywhere the journal names it (position, cycles,
    /// records, rejected items, notes), in one transaction, so a renamed stream goes on
    /// from where it was, its records still deduplicated and threaded. Only while `to`
    /// has no position, records or rejected items of its own (else
    /// [`Error::InvalidState`]). `false` when the journal has no stream `from` (nothing
    /// done). The default: [`Error::Unsupported`].
    async fn rename_stream(&self, from: &str, to: &str) -> Result<bool> {
        let _ = (from, to);
        Err(Error::Unsupported(
            "renaming a stream in this journal".into(),
        ))
    }

    /// Makes the held deliveries (retrying after a permanent error: their destination
    /// refused our credentials) due at `now`. A process that starts may have been given new
    /// credentials: each held destination gets one attempt at once instead of waiting out
    /// the slow pause (a refusal holds it again). Returns how many. The default does
    /// nothing.
    async fn retry_held_now(&self, now: Timestamp) -> Result<u64> {
        let _ = now;
        Ok(0)
    }

    /// Makes every failed delivery matching `filter` pending again. Returns how many.
    async fn replay_failed(&self, filter: &DeliveryFilter, now: Timestamp) -> Result<u64>;

    /// As [`Self::replay_failed`], but each replayed delivery goes to `to` from now on: the
    /// fix for messages that failed because their destination was wrong (a channel that
    /// does not exist, a mistyped number) once the configuration names the right one.
    /// Their history keeps the attempts made to the former destination. A delivery whose
    /// record already has a delivery to `to` that has not failed is left failed (its
    /// message went there, or will). Returns how many were replayed.
    ///
    /// The default refuses ([`Error::InvalidState`]): a backend must move deliveries
    /// between destinations in one transaction.
    async fn replay_failed_to(
        &self,
        filter: &DeliveryFilter,
        to: &Destination,
        now: Timestamp,
    ) -> Result<u64> {
        let _ = (filter, to, now);
        Err(Error::InvalidState(
            "this journal cannot send failed deliveries to another destination".into(),
        ))
    }

    /// Applies a remote status callback.
    async fn apply_callback(&self, update: &CallbackUpdate) -> Result<CallbackApplied>;

    /// When a delivery is next due (a hint for sleeping): the earliest due time among the
    /// heads of line (per destination, the oldest delivery not delivered or failed) that
    /// are pending or retrying. Deliveries behind a head are not due before it, so a
    /// destination held for hours behind a retrying head does not make this report "now"
    /// for the backlog queued behind it (a caller would spin). `None` when nothing waits.
    async fn next_due_at(&self) -> Result<Option<Timestamp>>;

    /// Writes an operator note ([`JournalNote`]) unless one with the same `kind` and
    /// `dedupe` is already there: `true` when written, `false` when it was a duplicate.
    /// A note without a kind or dedupe string is [`Error::InvalidRecord`].
    ///
    /// The default returns [`Error::Unsupported`]: a journal that cannot keep the note
    /// says so rather than pretend the warning was recorded; callers log it (the warning
    /// itself has gone to the log and the metrics already).
    async fn note(&self, note: JournalNote) -> Result<bool> {
        let _ = note;
        Err(notes::unsupported())
    }
}

/// The journal's operator queries (the `audit` command, dashboards, tests).
#[async_trait]
pub trait AuditQuery: Send + Sync + Debug {
    /// Deliveries matching a filter, oldest first.
    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryView>>;

    /// The attempts of one delivery, in order.
    async fn attempts(&self, id: DeliveryId) -> Result<Vec<AttemptView>>;

    /// Everything known about one record of a stream.
    async fn record_history(&self, stream: &str, key: &str) -> Result<RecordHistory>;

    /// The latest `limit` cycles of a stream, newest first.
    async fn cycles(&self, stream: &str, limit: usize) -> Result<Vec<CycleView>>;

    /// The remote scope (a Slack channel's id) a message delivered to `destination` was
    /// given, when any was: a sink that cannot resolve the destination by itself (a
    /// channel by name, no `channels:read`) learns it from here to look an in-doubt
    /// message up. Rarely asked (only then); the default reads the delivered deliveries.
    async fn destination_scope(&self, destination: &Destination) -> Result<Option<String>> {
        let delivered = self
            .deliveries(&DeliveryFilter {
                destination: Some(destination.clone()),
                status: Some(DeliveryStatus::Delivered),
                ..DeliveryFilter::default()
            })
            .await?;
        Ok(delivered.into_iter().rev().find_map(|d| d.remote_scope))
    }

    /// The latest `limit` rejected items (of one stream, or of all), newest first.
    async fn rejected(&self, stream: Option<&str>, limit: usize) -> Result<Vec<RejectedView>>;

    /// Counts across the journal.
    async fn stats(&self) -> Result<JournalStats>;

    /// The streams the journal holds a position for, by name, sorted. A stream renamed in
    /// a configuration without `renamed_from` shows here under its old name, next to none
    /// of the configured ones (its records would be read and sent again under the new
    /// name).
    ///
    /// The default lists none.
    async fn streams(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Notes matching `filter`, newest first (notes raised at the same time: the latest
    /// written first), at most `filter.limit`.
    ///
    /// The default returns none: a journal that keeps no notes (its
    /// [`AuditWrite::note`] refuses them) holds none to show.
    async fn notes(&self, filter: &NoteFilter) -> Result<Vec<JournalNote>> {
        let _ = filter;
        Ok(Vec::new())
    }
}

/// The durable journal: the write path ([`AuditWrite`]) and the operator queries
/// ([`AuditQuery`]) of one backend. Implemented for every type that implements both.
pub trait AuditStore: AuditWrite + AuditQuery {}

impl<T: AuditWrite + AuditQuery + ?Sized> AuditStore for T {}

/// Conveniences over any [`AuditStore`].
#[async_trait]
pub trait AuditStoreExt: AuditStore {
    /// One delivery, or [`Error::NotFound`].
    async fn delivery(&self, id: DeliveryId) -> Result<DeliveryView> {
        let found = self
            .deliveries(&DeliveryFilter {
                id: Some(id),
                ..DeliveryFilter::default()
            })
            .await?;
        found
            .into_iter()
            .next()
            .ok_or_else(|| Error::NotFound(format!("delivery {id}")))
    }

    /// Failed deliveries, oldest first.
    async fn failed(&self, limit: usize) -> Result<Vec<DeliveryView>> {
        let mut f = DeliveryFilter::status(DeliveryStatus::Failed);
        f.limit = Some(limit);
        self.deliveries(&f).await
    }
}

impl<T: AuditStore + ?Sized> AuditStoreExt for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_status_never_downgrades() {
        use RemoteStatus::*;
        assert!(Sent.supersedes(Queued));
        assert!(Delivered.supersedes(Sent));
        assert!(!Sent.supersedes(Delivered));
        assert!(!Delivered.supersedes(Delivered));
        assert!(!Delivered.supersedes(Failed));
        assert!(!Read.supersedes(Undelivered));
        assert!(Read.supersedes(Delivered));
        assert!(Failed.supersedes(Sent));
        assert!(!Queued.supersedes(Sending));
        for s in RemoteStatus::ALL {
            assert_eq!(s.as_str().parse::<RemoteStatus>().expect("parse"), s);
        }
        for s in DeliveryStatus::ALL {
            assert_eq!(s.as_str().parse::<DeliveryStatus>().expect("parse"), s);
        }
        assert!(matches!(
            "bogus".parse::<DeliveryStatus>(),
            Err(Error::Corrupt(_))
        ));
    }
}
