//! Journal notes checks of the [`AuditStore`] conformance suite
//! ([`audit_store_conformance`](super::audit_store_conformance)).

use jiff::Timestamp;

use crate::audit::{
    AuditStore, JournalNote, KIND_PAIRING_NEEDED, KIND_REFRESH_TOKEN_EXPIRY, NoteFilter,
    NoteSeverity,
};
use crate::error::Error;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("timestamp")
}

fn expiry(at: i64, dedupe: &str, message: &str) -> JournalNote {
    JournalNote::new(
        t(at),
        KIND_REFRESH_TOKEN_EXPIRY,
        NoteSeverity::Warning,
        dedupe,
        message,
    )
}

/// `note` writes once per (kind, dedupe), keeps every field (unicode included), and
/// `notes` filters by time, kind and stream, newest first, limited.
pub async fn notes_are_written_once_and_filtered(s: &dyn AuditStore) {
    assert!(
        s.notes(&NoteFilter::default())
            .await
            .expect("notes")
            .is_empty(),
        "a new journal holds no notes"
    );
    let first = expiry(10, "x3.token:6d", "Zürich: expires in 6 d");
    assert!(
        s.note(first.clone()).await.expect("note"),
        "a new note is written"
    );
    // The same warning raised again (every renewal raises it) is not.
    assert!(
        !s.note(expiry(20, "x3.token:6d", "raised again"))
            .await
            .expect("again"),
        "same (kind, dedupe): not written again"
    );
    // The same dedupe under another kind is another note.
    let pairing = JournalNote::new(
        t(30),
        KIND_PAIRING_NEEDED,
        NoteSeverity::Error,
        "x3.token:6d",
        "pair again",
    )
    .with_stream("x3-purchase-orders");
    assert!(s.note(pairing.clone()).await.expect("pairing"));
    let later = expiry(40, "x3.token:5d", "expires in 5 d");
    assert!(s.note(later.clone()).await.expect("later"));
    // Written last, raised at the same time as `later`: it comes first among equals.
    let tie = expiry(40, "other.token:5d", "another credential");
    assert!(s.note(tie.clone()).await.expect("tie"));

    let all = s.notes(&NoteFilter::default()).await.expect("all");
    assert_eq!(
        all,
        vec![tie.clone(), later.clone(), pairing.clone(), first.clone()],
        "newest first, ties latest written first, every field kept"
    );
    let expiries = s
        .notes(&NoteFilter::kind(KIND_REFRESH_TOKEN_EXPIRY))
        .await
        .expect("kind");
    assert_eq!(expiries, vec![tie.clone(), later.clone(), first.clone()]);
    let since = s
        .notes(&NoteFilter {
            since: Some(t(30)),
            ..NoteFilter::default()
        })
        .await
        .expect("since");
    assert_eq!(
        since,
        vec![tie.clone(), later.clone(), pairing.clone()],
        "since is inclusive"
    );
    let stream = s
        .notes(&NoteFilter {
            stream: Some("x3-purchase-orders".into()),
            ..NoteFilter::default()
        })
        .await
        .expect("stream");
    assert_eq!(stream, vec![pairing]);
    let limited = s
        .notes(&NoteFilter {
            kind: Some(KIND_REFRESH_TOKEN_EXPIRY.into()),
            limit: Some(2),
            ..NoteFilter::default()
        })
        .await
        .expect("limit");
    assert_eq!(limited, vec![tie, later], "the newest `limit`");
    let none = s
        .notes(&NoteFilter::kind("no_such_kind"))
        .await
        .expect("none");
    assert!(none.is_empty());
    // A note nobody could deduplicate is refused, and nothing is written.
    let bad = JournalNote::new(t(50), "", NoteSeverity::Info, "d", "m");
    assert!(matches!(s.note(bad).await, Err(Error::InvalidRecord(_))));
    assert_eq!(s.notes(&NoteFilter::default()).await.expect("all").len(), 4);
}
