//! `SqliteCredentialStore`: conformance, nothing in clear on disk, wrong / missing keys,
//! tampering, rotation.

use ml_core::credential::envelope::{KeyRing, MasterKey};
use ml_core::credential::{CredentialName, CredentialStore};
use ml_core::testing::credential_store_conformance;
use ml_store::{SqliteAuditStore, SqliteCredentialStore};
use secrecy::{ExposeSecret, SecretString};

fn name(s: &str) -> CredentialName {
    CredentialName::new(s).expect("name")
}

/// Every byte of the journal directory (db, WAL, shm).
fn raw_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| {
            let p = e.expect("entry").path();
            (p.display().to_string(), std::fs::read(&p).expect("read"))
        })
        .collect()
}

fn assert_absent(dir: &std::path::Path, secret: &str) {
    for (file, bytes) in raw_files(dir) {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is in clear in {file}"
        );
    }
}

#[tokio::test]
async fn sqlite_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteCredentialStore::open(
        dir.path().join("j.db"),
        Some(KeyRing::new(MasterKey::generate())),
    )
    .expect("open");
    credential_store_conformance(&store).await;
}

#[tokio::test]
async fn values_never_reach_the_file_the_wal_or_debug_and_survive_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ml-audit.db");
    // The credential table lives in the journal: the audit store opens the same file.
    let _journal = SqliteAuditStore::open(&path).expect("journal");
    let key = MasterKey::generate();
    let store = SqliteCredentialStore::open(&path, Some(KeyRing::new(key.clone()))).expect("open");
    let secrets = [
        ("slack.bot_token", "xoxb-111-222-SECRETVALUEslack"),
        ("twilio.auth_token", "twilio-SECRETVALUE-9f8e7d"),
        ("sage_x3.refresh_token", "rt-SECRETVALUE-rotating-1"),
    ];
    for (n, v) in secrets {
        store
            .put(&name(n), &SecretString::from(v))
            .await
            .expect("put");
    }
    // A rotated value replaces the old one; neither is on disk in clear.
    store
        .put(
            &name("sage_x3.refresh_token"),
            &SecretString::from("rt-SECRETVALUE-rotating-2"),
        )
        .await
        .expect("put");
    assert!(!format!("{store:?} {store}").contains("SECRETVALUE"));
    for (_, v) in secrets {
        assert_absent(dir.path(), v);
    }
    assert_absent(dir.path(), "rt-SECRETVALUE-rotating-2");
    assert_absent(dir.path(), key.to_base64().expose_secret());

    drop(store);
    let reopened = SqliteCredentialStore::open(&path, Some(KeyRing::new(key))).expect("reopen");
    assert_eq!(
        reopened
            .get(&name("sage_x3.refresh_token"))
            .await
            .expect("get")
            .expect("some")
            .expose_secret(),
        "rt-SECRETVALUE-rotating-2"
    );
    let listed = reopened.list().await.expect("list");
    assert_eq!(listed.len(), 3);
    assert_eq!(
        listed[0].version, 2,
        "sage_x3 was written twice: {listed:?}"
    );
}

#[tokio::test]
async fn a_missing_or_wrong_master_key_refuses_to_start_and_names_the_credential() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j.db");
    // No key and nothing stored: fine (e.g. `credentials list` on a new journal).
    assert!(SqliteCredentialStore::open(&path, None).is_ok());
    let store = SqliteCredentialStore::open(&path, Some(KeyRing::new(MasterKey::generate())))
        .expect("open");
    store
        .put(&name("oracle.client_secret"), &SecretString::from("cs-1"))
        .await
        .expect("put");
    drop(store);

    let e = SqliteCredentialStore::open(&path, None)
        .expect_err("no key")
        .to_string();
    assert!(
        e.contains("ML_MASTER_KEY") && e.contains("1 encrypted credential"),
        "{e}"
    );

    let e = SqliteCredentialStore::open(&path, Some(KeyRing::new(MasterKey::generate())))
        .expect_err("wrong key")
        .to_string();
    assert!(
        e.contains("oracle.client_secret") && e.contains("not configured"),
        "{e}"
    );
    assert!(!e.contains("cs-1"), "{e}");
}

#[tokio::test]
async fn a_flipped_bit_on_disk_is_refused_not_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j.db");
    let ring = KeyRing::new(MasterKey::generate());
    let store = SqliteCredentialStore::open(&path, Some(ring.clone())).expect("open");
    store
        .put(&name("sap_ecc.password"), &SecretString::from("p4ssw0rd"))
        .await
        .expect("put");
    for column in ["ciphertext", "wrapped_key"] {
        let conn = rusqlite::Connection::open(&path).expect("raw");
        let mut blob: Vec<u8> = conn
            .query_row(&format!("SELECT {column} FROM credentials"), [], |r| {
                r.get(0)
            })
            .expect("blob");
        let at = blob.len() / 2;
        blob[at] ^= 0x10;
        conn.execute(&format!("UPDATE credentials SET {column} = ?1"), [&blob])
            .expect("tamper");
        let e = store
            .get(&name("sap_ecc.password"))
            .await
            .expect_err(column)
            .to_string();
        assert!(
            e.contains("sap_ecc.password") && e.contains("authentication"),
            "{e}"
        );
        blob[at] ^= 0x10;
        conn.execute(&format!("UPDATE credentials SET {column} = ?1"), [&blob])
            .expect("restore");
        assert!(store.get(&name("sap_ecc.password")).await.is_ok());
    }
    // A value copied under another name does not open either.
    let conn = rusqlite::Connection::open(&path).expect("raw");
    conn.execute(
        "INSERT INTO credentials SELECT 'slack.bot_token', version, key_id, wrapped_key, ciphertext, updated_at FROM credentials",
        [],
    )
    .expect("copy");
    assert!(store.get(&name("slack.bot_token")).await.is_err());
}

#[tokio::test]
async fn rotation_rewraps_every_key_and_the_old_key_is_then_not_needed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j.db");
    let old = MasterKey::generate();
    let new = MasterKey::generate();
    let store = SqliteCredentialStore::open(&path, Some(KeyRing::new(old.clone()))).expect("open");
    for i in 0..5 {
        store
            .put(
                &name(&format!("c{i}")),
                &SecretString::from(format!("value-{i}")),
            )
            .await
            .expect("put");
    }
    drop(store);
    // New key current, old key previous: everything opens during the rotation.
    let rotating = SqliteCredentialStore::open(
        &path,
        Some(KeyRing::new(new.clone()).with_previous(old.clone())),
    )
    .expect("open rotating");
    assert_eq!(
        rotating
            .get(&name("c3"))
            .await
            .expect("get")
            .expect("some")
            .expose_secret(),
        "value-3"
    );
    let report = rotating.rotate().await.expect("rotate");
    assert_eq!((report.rewrapped, report.unchanged), (5, 0));
    assert_eq!(rotating.rotate().await.expect("again").rewrapped, 0);
    drop(rotating);
    let only_new = SqliteCredentialStore::open(&path, Some(KeyRing::new(new))).expect("new only");
    for i in 0..5 {
        assert_eq!(
            only_new
                .get(&name(&format!("c{i}")))
                .await
                .expect("get")
                .expect("some")
                .expose_secret(),
            format!("value-{i}")
        );
    }
    let e = SqliteCredentialStore::open(&path, Some(KeyRing::new(old))).expect_err("old only");
    assert!(e.to_string().contains("not configured"), "{e}");
}
