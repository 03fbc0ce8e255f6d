//! X3 Cloud rotating refresh tokens against the emulator's token API: one renewal for a
//! hundred concurrent polls at expiry, persist before use, reuse refused -> "pairing
//! needed" without a retry loop, expiry warnings.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{RecordingStore, RecordingTransport, assert_saved_before_use, env};
use jiff::Timestamp;
use ml_core::Source as _;
use ml_core::auth::{
    ExpiryWarning, MemoryRefreshTokenStore, RefreshTokenStore, StoredRefreshToken,
};
use ml_core::clock::ManualClock;
use ml_core::http::{ClientOptions, ReqwestTransport};
use ml_sage_x3::{RotationStatus, SageX3Builder, X3Class};
use ml_sandbox::sage_x3::SageX3Emulator;
use secrecy::{ExposeSecret as _, SecretString};

fn start() -> Timestamp {
    "2026-03-02T09:00:00Z".parse().expect("t")
}

async fn emulator(clock: &Arc<ManualClock>) -> SageX3Emulator {
    let e = SageX3Emulator::builder()
        .clock(Arc::clone(clock) as _)
        .start()
        .await
        .expect("emulator");
    e.load_demo();
    e
}

/// A cloud builder on `clock` with `store` (seeded by the pairing token when empty).
fn cloud(
    e: &SageX3Emulator,
    clock: &Arc<ManualClock>,
    store: Arc<dyn RefreshTokenStore>,
    log: Option<&std::path::Path>,
) -> SageX3Builder {
    let mut b = SageX3Builder::from_env_with(&env(e.cloud_env()))
        .with_clock(Arc::clone(clock) as _)
        .with_refresh_token_store(store);
    if let Some(log) = log {
        let inner = Arc::new(ReqwestTransport::new(
            ClientOptions::default().client().expect("client"),
        ));
        b = b.with_transport(Arc::new(RecordingTransport {
            inner,
            log: log.to_owned(),
        }));
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_polls_at_expiry_renew_once_and_persist_first() {
    let clock = Arc::new(ManualClock::new(start()));
    let e = emulator(&clock).await;
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("events.log");
    let memory = Arc::new(MemoryRefreshTokenStore::default());
    let store = Arc::new(RecordingStore {
        inner: Arc::clone(&memory) as _,
        log: log.clone(),
    });
    let shared = cloud(&e, &clock, store, Some(&log))
        .with_shared_auth()
        .expect("auth");
    // Four streams of one process share one token.
    let sources: Vec<Arc<ml_sage_x3::SageX3Source>> = X3Class::ALL
        .iter()
        .map(|c| Arc::new(shared.clone().with_class(*c).build().expect("source")))
        .collect();
    for s in &sources {
        s.poll(None).await.expect("first poll");
    }
    assert_eq!(e.renewals(), 1, "one token for every stream");

    clock.advance(Duration::from_secs(301));
    let polls: Vec<_> = (0..100)
        .map(|i| {
            let s = Arc::clone(&sources[i % sources.len()]);
            tokio::spawn(async move { s.poll(None).await.map(|p| p.items.len()) })
        })
        .collect();
    for p in polls {
        p.await.expect("join").expect("poll");
    }
    assert_eq!(e.renewals(), 2, "a hundred polls at expiry: one renewal");
    assert_eq!(e.refused_renewals(), 0);
    let held = memory.current().expect("stored");
    assert!(
        e.is_live_refresh_token(held.token.expose_secret()),
        "the store holds the live token"
    );
    assert!(assert_saved_before_use(&log) >= 100);
}

#[tokio::test]
async fn a_refused_refresh_token_latches_pairing_needed_without_a_retry_loop() {
    let clock = Arc::new(ManualClock::new(start()));
    let e = emulator(&clock).await;
    let first = Arc::new(MemoryRefreshTokenStore::default());
    let s = cloud(&e, &clock, Arc::clone(&first) as _, None)
        .build()
        .expect("source");
    s.poll(None).await.expect("poll");
    // A second process still holding the pairing token (already rotated away).
    let spent = e.pair();
    let store = Arc::new(MemoryRefreshTokenStore::new(Some(StoredRefreshToken::new(
        spent.clone(),
        None,
    ))));
    let a = cloud(&e, &clock, Arc::clone(&store) as _, None)
        .build()
        .expect("a");
    a.poll(None).await.expect("a renews once");
    let stale = Arc::new(MemoryRefreshTokenStore::new(Some(StoredRefreshToken::new(
        spent, None,
    ))));
    let b = cloud(&e, &clock, Arc::clone(&stale) as _, None)
        .build()
        .expect("b");
    let refused_before = e.refused_renewals();
    let err = b.poll(None).await.expect_err("reuse refused");
    assert_eq!(err.class(), ml_core::ErrorClass::Permanent);
    assert!(err.to_string().contains("pairing needed"), "{err}");
    assert!(
        !err.to_string().contains("sbx-x3-refresh"),
        "no secret in errors: {err}"
    );
    assert!(matches!(
        b.auth_status(),
        RotationStatus::PairingNeeded { .. }
    ));
    for _ in 0..5 {
        let again = b.poll(None).await.expect_err("still dead");
        assert!(again.to_string().contains("pairing needed"), "{again}");
    }
    assert_eq!(
        e.refused_renewals() - refused_before,
        1,
        "the dead token is presented once, never again"
    );
    // A new pairing written to the store revives the stream.
    stale
        .save(&StoredRefreshToken::new(SecretString::from(e.pair()), None))
        .await
        .expect("save");
    b.poll(None).await.expect("after pairing");
    assert_eq!(b.auth_status(), RotationStatus::Ready);
}

#[tokio::test]
async fn refresh_token_expiry_is_warned_days_ahead() {
    let clock = Arc::new(ManualClock::new(start()));
    let e = emulator(&clock).await;
    let token = e.pair_expiring_in(Duration::from_secs(3 * 86_400));
    let store = Arc::new(MemoryRefreshTokenStore::new(Some(StoredRefreshToken::new(
        token,
        Some(start() + jiff::SignedDuration::from_hours(72)),
    ))));
    let seen: Arc<Mutex<Vec<ExpiryWarning>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let s = cloud(&e, &clock, store, None)
        .with_config_str("refresh_warn_days", "7")
        .expect("key")
        .with_expiry_observer(Arc::new(move |w: &ExpiryWarning| {
            sink.lock().expect("l").push(w.clone());
        }))
        .build()
        .expect("source");
    s.poll(None).await.expect("poll");
    let warnings = seen.lock().expect("l").clone();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].remaining, Duration::from_secs(3 * 86_400));
    assert!(warnings[0].to_string().contains("pair the connector again"));
    // When the token dies, the stream says pairing needed.
    clock.advance(Duration::from_secs(3 * 86_400 + 1));
    let err = s.poll(None).await.expect_err("expired");
    assert!(
        err.to_string().contains("authorise the connector again"),
        "{err}"
    );
    assert!(matches!(
        s.auth_status(),
        RotationStatus::PairingNeeded { .. }
    ));
}

#[tokio::test]
async fn tokens_persist_in_the_encrypted_credential_store() {
    let clock = Arc::new(ManualClock::new(start()));
    let e = emulator(&clock).await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("journal.db");
    let keys = ml_core::credential::envelope::KeyRing::new(
        ml_core::credential::envelope::MasterKey::generate(),
    );
    let creds =
        Arc::new(ml_store::SqliteCredentialStore::open(&path, Some(keys.clone())).expect("store"));
    let s = SageX3Builder::from_env_with(&env(e.cloud_env()))
        .with_clock(Arc::clone(&clock) as _)
        .with_credential_store(Arc::clone(&creds) as _, "sage_x3.refresh_token")
        .expect("name")
        .build()
        .expect("source");
    s.poll(None).await.expect("poll");
    drop(s);
    // A restart (a new source, the same journal, no SAGE_X3_REFRESH_TOKEN) continues.
    let mut vars = e.cloud_env();
    vars.retain(|(k, _)| *k != "SAGE_X3_REFRESH_TOKEN");
    let creds = Arc::new(ml_store::SqliteCredentialStore::open(&path, Some(keys)).expect("store"));
    clock.advance(Duration::from_secs(400));
    let s = SageX3Builder::from_env_with(&env(vars))
        .with_clock(Arc::clone(&clock) as _)
        .with_credential_store(creds, "sage_x3.refresh_token")
        .expect("name")
        .build()
        .expect("source");
    s.poll(None).await.expect("restart without a new pairing");
    assert_eq!(e.renewals(), 2);
    let raw = std::fs::read(&path).expect("read");
    assert!(
        !raw.windows(15).any(|w| w == b"sbx-x3-refresh-"),
        "the refresh token is encrypted at rest"
    );
}
