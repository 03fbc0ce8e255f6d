//! A Twilio callback replayed after a restart: the journal's replay cache
//! (`ml_store::SqliteReplayCache`) still knows it, so it is not applied again.

use std::sync::Arc;

use bytes::Bytes;
use ml_core::audit::AuditQuery as _;
use ml_core::memory::MemoryAuditStore;
use ml_store::{SqliteAuditStore, SqliteReplayCache};
use ml_twilio::TwilioStatusReceiver;
use ml_twilio::receiver::{Handled, Verified};

const PUBLIC: &str = "https://hooks.example.com/twilio/status";

fn callback() -> http::Request<Bytes> {
    let params = vec![
        ("MessageSid".to_owned(), format!("SM{}", "a".repeat(32))),
        ("MessageStatus".to_owned(), "delivered".to_owned()),
    ];
    let url = format!("{PUBLIC}?delivery_id=7");
    http::Request::post("/twilio/status?delivery_id=7")
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "x-twilio-signature",
            ml_sandbox::twilio::sign("tok", &url, &params),
        )
        .body(Bytes::from(
            serde_urlencoded::to_string(&params).expect("form"),
        ))
        .expect("request")
}

fn receiver(journal: &SqliteAuditStore) -> TwilioStatusReceiver {
    TwilioStatusReceiver::new("tok", PUBLIC)
        .with_replay_cache(Arc::new(SqliteReplayCache::new(journal)))
}

#[tokio::test]
async fn a_twilio_replay_is_refused_after_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("ml-audit.db");
    let applied_to = MemoryAuditStore::new();
    {
        let journal = SqliteAuditStore::open(&path).expect("journal");
        let rx = receiver(&journal);
        assert!(matches!(
            rx.handle(&callback(), &applied_to).await,
            Ok(Handled::Applied(_))
        ));
        assert_eq!(
            rx.handle(&callback(), &applied_to).await,
            Ok(Handled::Duplicate)
        );
    }
    // The process restarts: a new store on the same file, a new receiver.
    let journal = SqliteAuditStore::open(&path).expect("reopen");
    let rx = receiver(&journal);
    assert_eq!(rx.verify(&callback()).await, Ok(Verified::Duplicate));
    assert_eq!(
        rx.handle(&callback(), &applied_to).await,
        Ok(Handled::Duplicate),
        "a replay after the restart is not applied"
    );
    // An in-memory cache would have let it in: the control.
    let forgetful = TwilioStatusReceiver::new("tok", PUBLIC);
    assert!(matches!(
        forgetful.verify(&callback()).await,
        Ok(Verified::Update(_))
    ));
    assert!(journal.stats().await.is_ok());
}
