//! SIGKILL at random points around token renewals, 50 rounds. The test re-executes its
//! own binary as the child (`crash_child`, selected by `ML_X3_CHILD`): the child polls an
//! X3 Cloud emulator whose access tokens live one second (a renewal every half second),
//! keeping the rotating refresh token in an encrypted SQLite credential store; the parent
//! kills it at a random moment and starts the next one on the same store.
//!
//! Checked: every access token the child used came with a refresh token that had been
//! saved before (the event log: `saved` after the durable write returned, `used` before the
//! request left); a restart continues without a new pairing; the one window no client can
//! close (the token API answered, the process died before the write) ends in a child that
//! exits at once saying "pairing needed", having presented the dead token exactly once.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{RecordingStore, RecordingTransport, assert_saved_before_use, log_event};
use ml_core::Source as _;
use ml_core::auth::{RefreshTokenStore, StoredRefreshToken};
use ml_core::credential::envelope::{KeyRing, MasterKey};
use ml_core::credential::{CredentialName, CredentialRefreshTokenStore};
use ml_core::http::{ClientOptions, ReqwestTransport};
use ml_sage_x3::{RotationStatus, SageX3Builder};
use ml_sandbox::sage_x3::{CLIENT_ID, CLIENT_SECRET, FOLDER, SageX3Emulator};
use secrecy::{ExposeSecret as _, SecretString};

const NAME: &str = "sage_x3.refresh_token";
const PAIRING_NEEDED: i32 = 3;

fn store(db: &std::path::Path, key: &str) -> CredentialRefreshTokenStore {
    let key = MasterKey::from_base64(key, "ML_X3_KEY").expect("key");
    let creds = ml_store::SqliteCredentialStore::open(db, Some(KeyRing::new(key)))
        .expect("credential store");
    CredentialRefreshTokenStore::new(Arc::new(creds), CredentialName::new(NAME).expect("name"))
}

/// The child role: polls until killed; exits with [`PAIRING_NEEDED`] when the stored
/// refresh token is dead. Does nothing unless `ML_X3_CHILD` is set.
#[test]
fn crash_child() {
    let Ok(url) = std::env::var("ML_X3_CHILD") else {
        return;
    };
    let db = PathBuf::from(std::env::var("ML_X3_DB").expect("db"));
    let log = PathBuf::from(std::env::var("ML_X3_LOG").expect("log"));
    let key = std::env::var("ML_X3_KEY").expect("key");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let inner = Arc::new(store(&db, &key));
        let transport = Arc::new(RecordingTransport {
            inner: Arc::new(ReqwestTransport::new(
                ClientOptions::default().client().expect("client"),
            )),
            log: log.clone(),
        });
        let source = SageX3Builder::new()
            .with_url(&url, FOLDER)
            .with_client(CLIENT_ID, SecretString::from(CLIENT_SECRET))
            .with_cloud_tokens(format!("{url}v1/token"), None)
            .with_refresh_token_store(Arc::new(RecordingStore {
                inner,
                log: log.clone(),
            }))
            .with_transport(transport)
            .with_retry(ml_core::retry::RetryPolicy::none())
            .build()
            .expect("source");
        let started = Instant::now();
        let mut pos = None;
        while started.elapsed() < Duration::from_secs(20) {
            match source.poll(pos.as_ref()).await {
                Ok(page) => pos = Some(page.next),
                Err(e) => {
                    if let RotationStatus::PairingNeeded { reason } = source.auth_status() {
                        log_event(
                            &log,
                            &format!("pairing-needed {}", reason.replace('\n', " ")),
                        );
                        std::process::exit(PAIRING_NEEDED);
                    }
                    eprintln!("child: {e}");
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// A small deterministic generator (no clock, no OS randomness: the run is repeatable).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_around_renewals_loses_no_saved_token_and_ends_in_pairing_needed() {
    let e = SageX3Emulator::builder()
        .access_lifetime(Duration::from_secs(1))
        .start()
        .await
        .expect("emulator");
    e.load_demo();
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("journal.db");
    let log = dir.path().join("events.log");
    let key = MasterKey::generate().to_base64();
    let parent_store = store(&db, key.expose_secret());
    parent_store
        .save(&StoredRefreshToken::new(SecretString::from(e.pair()), None))
        .await
        .expect("pairing");
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = Lcg(0x5a6e_7833);
    let (mut continued, mut pairings) = (0, 0);
    for round in 0..50 {
        let refused_before = e.refused_renewals();
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("ML_X3_CHILD", e.base_url())
            .env("ML_X3_DB", &db)
            .env("ML_X3_LOG", &log)
            .env("ML_X3_KEY", key.expose_secret())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("child");
        let kill_after = Duration::from_millis(150 + rng.next(1200));
        let started = Instant::now();
        let exited = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if started.elapsed() >= kill_after {
                child.kill().expect("SIGKILL");
                child.wait().expect("reap");
                break None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        match exited {
            None => continued += 1,
            Some(status) => {
                assert_eq!(
                    status.code(),
                    Some(PAIRING_NEEDED),
                    "round {round}: the child exits only when pairing is needed"
                );
                assert_eq!(
                    e.refused_renewals() - refused_before,
                    1,
                    "round {round}: the dead token was presented once"
                );
                let held = parent_store.load().await.expect("load").expect("a token");
                assert!(
                    !e.is_live_refresh_token(held.token.expose_secret()),
                    "round {round}"
                );
                pairings += 1;
                parent_store
                    .save(&StoredRefreshToken::new(SecretString::from(e.pair()), None))
                    .await
                    .expect("new pairing");
            }
        }
    }
    let uses = assert_saved_before_use(&log);
    eprintln!(
        "50 rounds: {continued} killed and continued, {pairings} ended in pairing needed; {} renewals, {uses} authorised requests checked",
        e.renewals()
    );
    assert!(uses > 100, "the children did real work ({uses} requests)");
    assert!(
        e.renewals() > 50,
        "renewals happened around the kills ({})",
        e.renewals()
    );
    assert!(
        pairings <= 10,
        "the unclosable window is one write wide ({pairings} of 50)"
    );
    assert!(
        continued >= 40,
        "restarts continue without a new pairing ({continued} of 50)"
    );
}
