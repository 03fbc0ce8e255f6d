//! [`JournalNotes`]: the refresh token's expiry warnings and a needed pairing, written into
//! the pipeline's journal as notes (`ml-connector audit notes`), once each.
//!
//! The token provider reports a warning synchronously, from inside a renewal; the note is
//! queued there and written by the source at the end of the poll that caused the renewal
//! (the journal is async), so a poll that returns has journaled what it raised.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use jiff::Timestamp;
use ml_core::audit::{
    AuditStore, JournalNote, KIND_PAIRING_NEEDED, KIND_PAIRING_RESTORED, KIND_REFRESH_TOKEN_EXPIRY,
    NoteFilter, NoteSeverity,
};
use ml_core::auth::{ExpiryObserver, ExpiryWarning};
use ml_core::clock::{Clock, SystemClock};

/// Writes a source's token warnings into a journal as [`JournalNote`]s.
///
/// * Expiry (`refresh_token_expiry`, warning): once per credential, expiry date and day
///   left (`<credential>:<expiry date>:<days>d`), however many renewals raise it.
/// * Pairing needed (`pairing_needed`, error): once per credential and dead token (told
///   apart by its expiry date: `<credential>:<expiry date>`).
///
/// Messages hold the credential's name, dates and the provider's reason, never a token. A
/// journal that fails (or keeps no notes) is logged; the poll goes on (the warning is in
/// the log and the metrics already).
pub struct JournalNotes {
    store: Arc<dyn AuditStore>,
    credential: String,
    clock: Arc<dyn Clock>,
    pending: Mutex<Vec<JournalNote>>,
    /// Whether a successful poll has looked for an unresolved pairing note since this
    /// process started (or since it last noted one).
    restored_checked: AtomicBool,
}

impl fmt::Debug for JournalNotes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalNotes")
            .field("store", &self.store)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

impl JournalNotes {
    /// Notes into `store` about the refresh token known as `credential` (its name, e.g.
    /// `sage_x3.x3.refresh_token`, never its value).
    pub fn new(store: Arc<dyn AuditStore>, credential: impl Into<String>) -> Self {
        Self {
            store,
            credential: credential.into(),
            clock: Arc::new(SystemClock),
            pending: Mutex::new(Vec::new()),
            restored_checked: AtomicBool::new(false),
        }
    }

    /// Stamps notes with `clock`'s time.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The credential's name.
    pub fn credential(&self) -> &str {
        &self.credential
    }

    /// An [`ExpiryObserver`] queuing a note for each warning (written by
    /// [`flush`](Self::flush)).
    pub fn observer(self: &Arc<Self>) -> ExpiryObserver {
        let me = Arc::clone(self);
        Arc::new(move |w: &ExpiryWarning| me.queue(me.expiry_note(w)))
    }

    fn queue(&self, note: JournalNote) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if !pending
            .iter()
            .any(|n| n.kind == note.kind && n.dedupe == note.dedupe)
        {
            pending.push(note);
        }
    }

    fn expiry_note(&self, w: &ExpiryWarning) -> JournalNote {
        let days = w.remaining.as_secs() / 86_400;
        JournalNote::new(
            self.clock.now(),
            KIND_REFRESH_TOKEN_EXPIRY,
            NoteSeverity::Warning,
            // The expiry's date, not its instant: a renewal answer in whole seconds moves
            // the computed instant a little each time, the same token's date stays.
            format!(
                "{}:{}:{days}d",
                self.credential,
                w.expires_at.strftime("%Y-%m-%d")
            ),
            format!("Sage X3 `{}`: {w}", self.credential),
        )
    }

    /// Writes the queued notes. Returns how many were new in the journal.
    pub async fn flush(&self) -> usize {
        let pending =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        let mut written = 0;
        for note in pending {
            written += usize::from(self.write(note).await);
        }
        written
    }

    /// Notes that only a new pairing helps (`reason` as the token provider gives it),
    /// once per dead token (`expires_at`: the stored token's expiry, when known).
    pub async fn pairing_needed(&self, reason: &str, expires_at: Option<Timestamp>) -> bool {
        // The dead token's expiry date tells it from a later pairing's; a date rather than
        // an instant, because a token seeded from the environment (never rotated) is given
        // an assumed expiry at each start.
        let token =
            expires_at.map_or_else(|| "none".to_owned(), |t| t.strftime("%Y-%m-%d").to_string());
        let note = JournalNote::new(
            self.clock.now(),
            KIND_PAIRING_NEEDED,
            NoteSeverity::Error,
            format!("{}:{token}", self.credential),
            format!(
                "Sage X3 `{}`: pairing needed, polls stop until the connector is authorised again: {reason}",
                self.credential
            ),
        );
        self.restored_checked.store(false, Ordering::Relaxed);
        self.write(note).await
    }

    /// A poll succeeded: if the journal's latest pairing note for this credential is newer
    /// than its latest restoration note, notes the pairing as restored (once; looked up
    /// once per process, and again after this process noted a pairing). Returns whether a
    /// note was written.
    pub async fn polled_ok(&self) -> bool {
        if self.restored_checked.swap(true, Ordering::Relaxed) {
            return false;
        }
        let latest = |kind: &'static str| async move {
            let prefix = format!("{}:", self.credential);
            self.store
                .notes(&NoteFilter::kind(kind))
                .await
                .ok()?
                .into_iter()
                .filter(|n| n.dedupe.starts_with(&prefix))
                .map(|n| n.at)
                .max()
        };
        let Some(needed) = latest(KIND_PAIRING_NEEDED).await else {
            return false;
        };
        if latest(KIND_PAIRING_RESTORED)
            .await
            .is_some_and(|restored| restored >= needed)
        {
            return false;
        }
        let now = self.clock.now();
        let note = JournalNote::new(
            now,
            KIND_PAIRING_RESTORED,
            NoteSeverity::Info,
            format!("{}:{now}", self.credential),
            format!(
                "Sage X3 `{}`: polls work again; the pairing needed since {} is resolved",
                self.credential,
                needed.strftime("%Y-%m-%d %H:%M:%SZ")
            ),
        );
        self.write(note).await
    }

    async fn write(&self, note: JournalNote) -> bool {
        let kind = note.kind.clone();
        match self.store.note(note).await {
            Ok(new) => new,
            Err(err) => {
                tracing::warn!(credential = %self.credential, %kind, "journal note not written: {err}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ml_core::audit::{AuditQuery as _, NoteFilter};
    use ml_core::memory::MemoryAuditStore;

    use super::*;

    fn warning(remaining_days: u64) -> ExpiryWarning {
        ExpiryWarning {
            expires_at: Timestamp::from_second(1_800_000_000).expect("t"),
            remaining: Duration::from_secs(remaining_days * 86_400 + 3_600),
        }
    }

    #[tokio::test]
    async fn each_warning_and_pairing_is_noted_once() {
        let store = Arc::new(MemoryAuditStore::new());
        let notes = Arc::new(JournalNotes::new(
            Arc::clone(&store) as Arc<dyn AuditStore>,
            "sage_x3.x3.refresh_token",
        ));
        let observe = notes.observer();
        for _ in 0..3 {
            observe(&warning(5));
        }
        assert_eq!(
            notes.flush().await,
            1,
            "one note for three identical warnings"
        );
        observe(&warning(5));
        assert_eq!(notes.flush().await, 0, "already in the journal");
        observe(&warning(4));
        assert_eq!(notes.flush().await, 1, "a day later: a new note");
        assert!(notes.pairing_needed("the issuer refused it", None).await);
        assert!(!notes.pairing_needed("the issuer refused it", None).await);
        let all = store.notes(&NoteFilter::default()).await.expect("notes");
        let kinds: Vec<&str> = all.iter().map(|n| n.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                KIND_PAIRING_NEEDED,
                KIND_REFRESH_TOKEN_EXPIRY,
                KIND_REFRESH_TOKEN_EXPIRY
            ]
        );
        assert!(all[1].message.contains("(in 4 d 1 h)"), "{:?}", all[1]);
        assert_eq!(all[0].severity, NoteSeverity::Error);
        assert!(
            all.iter()
                .all(|n| n.message.contains("sage_x3.x3.refresh_token"))
        );
    }

    #[tokio::test]
    async fn a_poll_after_a_new_pairing_notes_the_pairing_restored_once() {
        let store = Arc::new(MemoryAuditStore::new());
        let process = |credential: &str| {
            JournalNotes::new(Arc::clone(&store) as Arc<dyn AuditStore>, credential)
        };
        assert!(!process("x3.a").polled_ok().await, "nothing to resolve");
        assert!(process("x3.a").pairing_needed("refused", None).await);
        // The operator pairs again and restarts: the first good poll resolves the note.
        let next = process("x3.a");
        assert!(next.polled_ok().await);
        assert!(!next.polled_ok().await, "once per process");
        assert!(!process("x3.a").polled_ok().await, "already resolved");
        assert!(!process("x3.b").polled_ok().await, "another credential");
        let restored = store
            .notes(&NoteFilter::kind(KIND_PAIRING_RESTORED))
            .await
            .expect("notes");
        assert_eq!(restored.len(), 1);
        assert_eq!(restored[0].severity, NoteSeverity::Info);
        assert!(restored[0].dedupe.starts_with("x3.a:"), "{restored:?}");
    }
}
