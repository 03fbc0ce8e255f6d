//! Journal notes: operator-facing warnings kept in the journal next to the cycles they
//! concern (a refresh token about to expire, a connector that needs pairing again), so
//! `ml-connector audit notes` shows them after the log has rotated away.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// [`JournalNote::kind`] of a refresh token that expires within the warning horizon.
pub const KIND_REFRESH_TOKEN_EXPIRY: &str = "refresh_token_expiry";
/// [`JournalNote::kind`] of a connector whose refresh token died: only a new pairing helps.
pub const KIND_PAIRING_NEEDED: &str = "pairing_needed";

/// [`JournalNote::kind`] of a stream paused by a permanent source error (a password
/// refused, a table not granted, an attribute this release lacks): it stays paused, retried
/// on the slow cadence only, until someone fixes the cause.
pub const KIND_STREAM_PAUSED: &str = "stream_paused";

/// [`JournalNote::kind`] of a destination whose sink refused our credentials for good (a
/// revoked bot token): its deliveries are held, not failed, until they work again.
pub const KIND_DESTINATION_HELD: &str = "destination_held";

/// [`JournalNote::kind`] (info) of a connector that polls again after a
/// [`KIND_PAIRING_NEEDED`] note for the same credential: that note is resolved. Its
/// dedupe starts with the credential's name and a colon, as the pairing note's does.
pub const KIND_PAIRING_RESTORED: &str = "pairing_restored";

/// Every kind of note this crate family writes.
pub const NOTE_KINDS: &[&str] = &[
    KIND_REFRESH_TOKEN_EXPIRY,
    KIND_PAIRING_NEEDED,
    KIND_PAIRING_RESTORED,
    KIND_STREAM_PAUSED,
    KIND_DESTINATION_HELD,
];

/// How much a note asks of the operator. Ordered: `Info < Warning < Error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteSeverity {
    /// For the record.
    Info,
    /// Act before it becomes an error (a token expiring in days).
    Warning,
    /// Something stopped working until someone acts (pairing needed).
    Error,
}

impl NoteSeverity {
    /// Every severity.
    pub const ALL: [Self; 3] = [Self::Info, Self::Warning, Self::Error];

    /// The stable label stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for NoteSeverity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NoteSeverity {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| Error::Corrupt(format!("unknown note severity `{s}`")))
    }
}

/// A note in the journal. Written once per (`kind`, `dedupe`): a warning raised at every
/// token renewal lands once (the writer chooses how often it may repeat through `dedupe`,
/// e.g. a credential name and the days left).
///
/// Never holds a secret: writers build messages from names and dates only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalNote {
    /// When it was raised.
    pub at: Timestamp,
    /// The stream it concerns, when one (a credential shared by a source's streams has
    /// none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// What it is about ([`KIND_REFRESH_TOKEN_EXPIRY`], [`KIND_PAIRING_NEEDED`], …).
    pub kind: String,
    /// How urgent.
    pub severity: NoteSeverity,
    /// For the operator.
    pub message: String,
    /// With `kind`, what makes it the same note: a second note with the same pair is not
    /// written.
    pub dedupe: String,
}

impl JournalNote {
    /// A note of `kind` raised at `at`, deduplicated on `dedupe`.
    pub fn new(
        at: Timestamp,
        kind: impl Into<String>,
        severity: NoteSeverity,
        dedupe: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            at,
            stream: None,
            kind: kind.into(),
            severity,
            message: message.into(),
            dedupe: dedupe.into(),
        }
    }

    /// The stream it concerns.
    #[must_use]
    pub fn with_stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }

    /// Checks the fields a journal relies on (non-empty kind and dedupe).
    pub fn validate(&self) -> Result<()> {
        if self.kind.trim().is_empty() {
            return Err(Error::InvalidRecord("a journal note needs a kind".into()));
        }
        if self.dedupe.is_empty() {
            return Err(Error::InvalidRecord(
                "a journal note needs a dedupe string".into(),
            ));
        }
        Ok(())
    }
}

/// Which notes [`AuditQuery::notes`](super::AuditQuery::notes) returns: newest first
/// (ties in the order written, latest first). Empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoteFilter {
    /// Raised at or after.
    pub since: Option<Timestamp>,
    /// Of one kind.
    pub kind: Option<String>,
    /// Of one stream.
    pub stream: Option<String>,
    /// At most this many.
    pub limit: Option<usize>,
}

impl NoteFilter {
    /// Notes of one kind.
    pub fn kind(kind: impl Into<String>) -> Self {
        Self {
            kind: Some(kind.into()),
            ..Self::default()
        }
    }

    /// Whether a note matches (for in-memory implementations; `limit` aside).
    pub fn matches(&self, n: &JournalNote) -> bool {
        self.since.is_none_or(|t| n.at >= t)
            && self.kind.as_ref().is_none_or(|k| *k == n.kind)
            && self
                .stream
                .as_ref()
                .is_none_or(|s| n.stream.as_ref() == Some(s))
    }
}

/// The error of the default [`AuditWrite::note`](super::AuditWrite::note): this journal
/// keeps no notes.
pub(crate) fn unsupported() -> Error {
    Error::Unsupported("this journal keeps no notes (journal notes)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{
        AttemptOutcome, AttemptView, AuditQuery, AuditWrite, CallbackApplied, CallbackUpdate,
        Claimant, ClaimedDelivery, CycleEnd, CycleId, CycleView, DeliveryFilter, DeliveryId,
        DeliveryView, JournalStats, PageCommit, PageCommitted, RecordHistory, RejectedView,
    };
    use crate::cursor::Position;

    /// Implements only the required methods: what a journal without notes gets.
    #[derive(Debug)]
    struct Bare;

    fn no<T>() -> Result<T> {
        Err(Error::Unsupported("bare".into()))
    }

    #[async_trait::async_trait]
    impl AuditWrite for Bare {
        async fn load_position(&self, _: &str) -> Result<Option<Position>> {
            no()
        }
        async fn begin_cycle(&self, _: &str, _: Timestamp) -> Result<CycleId> {
            no()
        }
        async fn commit_page(&self, _: PageCommit) -> Result<PageCommitted> {
            no()
        }
        async fn end_cycle(&self, _: CycleId, _: CycleEnd) -> Result<()> {
            no()
        }
        async fn claim_due(
            &self,
            _: &Claimant,
            _: Timestamp,
            _: usize,
        ) -> Result<Vec<ClaimedDelivery>> {
            no()
        }
        async fn renew_claims(&self, _: &Claimant, _: &[DeliveryId], _: Timestamp) -> Result<u64> {
            no()
        }
        async fn finish_attempt(
            &self,
            _: DeliveryId,
            _: AttemptOutcome,
            _: Timestamp,
        ) -> Result<()> {
            no()
        }
        async fn requeue_in_flight(&self, _: &Claimant, _: Timestamp) -> Result<u64> {
            no()
        }
        async fn acquire_stream(&self, _: &str, _: &Claimant, _: Timestamp) -> Result<bool> {
            no()
        }
        async fn release_stream(&self, _: &str, _: &Claimant) -> Result<()> {
            no()
        }
        async fn replay(&self, _: DeliveryId, _: Timestamp) -> Result<()> {
            no()
        }
        async fn replay_failed(&self, _: &DeliveryFilter, _: Timestamp) -> Result<u64> {
            no()
        }
        async fn apply_callback(&self, _: &CallbackUpdate) -> Result<CallbackApplied> {
            no()
        }
        async fn next_due_at(&self) -> Result<Option<Timestamp>> {
            no()
        }
    }

    #[async_trait::async_trait]
    impl AuditQuery for Bare {
        async fn deliveries(&self, _: &DeliveryFilter) -> Result<Vec<DeliveryView>> {
            no()
        }
        async fn attempts(&self, _: DeliveryId) -> Result<Vec<AttemptView>> {
            no()
        }
        async fn record_history(&self, _: &str, _: &str) -> Result<RecordHistory> {
            no()
        }
        async fn cycles(&self, _: &str, _: usize) -> Result<Vec<CycleView>> {
            no()
        }
        async fn rejected(&self, _: Option<&str>, _: usize) -> Result<Vec<RejectedView>> {
            no()
        }
        async fn stats(&self) -> Result<JournalStats> {
            no()
        }
    }

    #[tokio::test]
    async fn the_defaults_refuse_notes_and_show_none() {
        let t = Timestamp::from_second(1_800_000_000).expect("t");
        let note = JournalNote::new(t, KIND_PAIRING_NEEDED, NoteSeverity::Error, "x", "m");
        let err = Bare.note(note).await.expect_err("no notes");
        assert!(
            matches!(&err, Error::Unsupported(m) if m.contains("notes")),
            "{err}"
        );
        assert!(
            Bare.notes(&NoteFilter::default())
                .await
                .expect("none")
                .is_empty()
        );
    }

    #[test]
    fn severities_round_trip_and_filters_match() {
        for s in NoteSeverity::ALL {
            assert_eq!(s.as_str().parse::<NoteSeverity>().expect("parse"), s);
        }
        assert!(NoteSeverity::Warning < NoteSeverity::Error);
        assert!(matches!(
            "loud".parse::<NoteSeverity>(),
            Err(Error::Corrupt(_))
        ));
        let t = Timestamp::from_second(1_800_000_000).expect("t");
        let n = JournalNote::new(t, "k", NoteSeverity::Info, "d", "m").with_stream("s");
        assert!(NoteFilter::default().matches(&n));
        assert!(NoteFilter::kind("k").matches(&n));
        assert!(!NoteFilter::kind("other").matches(&n));
        let f = NoteFilter {
            stream: Some("t".into()),
            ..NoteFilter::default()
        };
        assert!(!f.matches(&n));
        let f = NoteFilter {
            since: Some(Timestamp::from_second(1_800_000_001).expect("t")),
            ..NoteFilter::default()
        };
        assert!(!f.matches(&n));
        assert!(
            JournalNote::new(t, "", NoteSeverity::Info, "d", "m")
                .validate()
                .is_err()
        );
        assert!(
            JournalNote::new(t, "k", NoteSeverity::Info, "", "m")
                .validate()
                .is_err()
        );
    }
}
