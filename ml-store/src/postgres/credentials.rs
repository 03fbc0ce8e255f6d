//! [`PostgresCredentialStore`]: credentials at rest in the PostgreSQL journal,
//! envelope-encrypted exactly as in the SQLite journal
//! ([`ml_core::credential::envelope`]).

use std::fmt;

use async_trait::async_trait;
use jiff::Timestamp;
use ml_core::credential::envelope::{ENV_MASTER_KEY, ENV_MASTER_KEY_FILE, KeyId, KeyRing, Sealed};
use ml_core::credential::{CredentialInfo, CredentialName, CredentialStore};
use ml_core::{Error, Result};
use secrecy::SecretString;

use super::error::Db;
use super::{PostgresAuditStore, PostgresBuilder};
use crate::codec;

/// What [`PostgresCredentialStore::rotate`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PostgresRotation {
    /// Credentials whose data key was re-wrapped under the current master key.
    pub rewrapped: u64,
    /// Credentials already under the current master key.
    pub unchanged: u64,
}

/// Named secrets in the PostgreSQL journal (table `credentials` of its schema), each
/// encrypted with its own data key wrapped by the master key ([`KeyRing`]); the name and
/// version are bound as associated data, so a ciphertext moved to another row does not
/// open.
///
/// * `put` is one transaction that locks the row (`SELECT … FOR UPDATE`, or the insert's
///   conflict), so two replicas writing one name get versions n+1 and n+2, never two n+1;
///   when it returns the commit is durable (PostgreSQL's `synchronous_commit`, on by
///   default).
/// * Opening refuses a journal holding credentials when no master key is configured, or
///   when a credential was wrapped by a key the ring does not hold, naming the credential.
/// * [`rotate`](Self::rotate) re-wraps one row per statement (compare-and-set on the old
///   key id): a crash leaves every row under one key or the other, both in the ring.
/// * Names, versions and times are stored in clear; values never are.
#[derive(Clone)]
pub struct PostgresCredentialStore {
    journal: PostgresAuditStore,
    keys: Option<KeyRing>,
}

impl fmt::Debug for PostgresCredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresCredentialStore")
            .field("journal", &self.journal.label())
            .field("keys", &self.keys)
            .finish()
    }
}

impl fmt::Display for PostgresCredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresCredentialStore({})", self.journal.label())
    }
}

fn no_key_error(count: usize, label: &str) -> Error {
    Error::config(
        ENV_MASTER_KEY,
        format!(
            "the journal `{label}` holds {count} encrypted credential(s) but no master key is \
             configured; set {ENV_MASTER_KEY} (base64) or {ENV_MASTER_KEY_FILE}"
        ),
    )
}

impl PostgresCredentialStore {
    /// The credentials of the journal `b` opens (creating or migrating it), with the
    /// master keys from the environment ([`KeyRing::from_env`]).
    pub async fn open_from_env(b: PostgresBuilder) -> Result<Self> {
        Self::open(b.build().await?, KeyRing::from_env()?).await
    }

    /// The credentials of `journal` with `keys` (`None`: no master key; allowed only while
    /// no credential is stored). Checks that every stored credential was wrapped by a key
    /// of the ring.
    pub async fn open(journal: PostgresAuditStore, keys: Option<KeyRing>) -> Result<Self> {
        let ctx = journal.ctx("opening credentials");
        let client = journal.client("opening credentials").await?;
        let in_use: Vec<(String, String)> = client
            .query(
                "SELECT name, key_id FROM credentials ORDER BY name COLLATE \"C\"",
                &[],
            )
            .await
            .db(&ctx)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        drop(client);
        match &keys {
            None if !in_use.is_empty() => return Err(no_key_error(in_use.len(), journal.label())),
            None => {}
            Some(ring) => {
                let known = ring.ids();
                let unknown: Vec<&(String, String)> = in_use
                    .iter()
                    .filter(|(_, id)| !known.contains(&KeyId::from_stored(id.clone())))
                    .collect();
                if let Some((name, id)) = unknown.first() {
                    return Err(Error::Credential {
                        name: name.clone(),
                        message: format!(
                            "was encrypted with master key {id}, which is not configured \
                             (configured: {}); {} credential(s) are affected. Set \
                             {ENV_MASTER_KEY} to the key they were written with (during a \
                             rotation: the new key, and ML_MASTER_KEY_PREVIOUS to the old)",
                            known
                                .iter()
                                .map(KeyId::as_str)
                                .collect::<Vec<_>>()
                                .join(", "),
                            unknown.len()
                        ),
                    });
                }
            }
        }
        Ok(Self { journal, keys })
    }

    fn ring(&self) -> Result<&KeyRing> {
        self.keys
            .as_ref()
            .ok_or_else(|| no_key_error(0, self.journal.label()))
    }

    /// Re-wraps every data key under the ring's current master key (configure the new key
    /// as current and the old one as previous first). Safe to run again after a crash, and
    /// beside replicas that keep writing.
    pub async fn rotate(&self) -> Result<PostgresRotation> {
        let ring = self.ring()?;
        let ctx = self.journal.ctx("credential rotate");
        let client = self.journal.client("credential rotate").await?;
        let rows = client
            .query(
                "SELECT name, version, key_id, wrapped_key, ciphertext FROM credentials \
                 ORDER BY name COLLATE \"C\"",
                &[],
            )
            .await
            .db(&ctx)?;
        let mut report = PostgresRotation::default();
        for row in &rows {
            let (name, sealed) = sealed(row, &ctx)?;
            let Some(new) = ring.rewrap(&name, &sealed)? else {
                report.unchanged += 1;
                continue;
            };
            let changed = client
                .execute(
                    "UPDATE credentials SET key_id = $1, wrapped_key = $2 \
                     WHERE name = $3 AND version = $4 AND key_id = $5",
                    &[
                        &new.key_id.as_str(),
                        &new.wrapped_key,
                        &name.as_str(),
                        &(new.version as i64),
                        &sealed.key_id.as_str(),
                    ],
                )
                .await
                .db(&ctx)?;
            // 0: a concurrent put replaced it, already under the current key.
            report.rewrapped += changed;
        }
        tracing::info!(journal = %self.journal.label(), rewrapped = report.rewrapped, key = %ring.current_id(), "credential master key rotated");
        Ok(report)
    }
}

fn sealed(row: &tokio_postgres::Row, ctx: &str) -> Result<(CredentialName, Sealed)> {
    let name: String = row.get(0);
    let version: i64 = row.get(1);
    let name = CredentialName::new(name.clone()).map_err(|_| {
        Error::Corrupt(format!(
            "{ctx}: credential row with an invalid name `{}`",
            name.escape_debug()
        ))
    })?;
    Ok((
        name,
        Sealed {
            version: version as u64,
            key_id: KeyId::from_stored(row.get::<_, String>(2)),
            wrapped_key: row.get(3),
            ciphertext: row.get(4),
        },
    ))
}

#[async_trait]
impl CredentialStore for PostgresCredentialStore {
    async fn get(&self, name: &CredentialName) -> Result<Option<SecretString>> {
        let ring = self.ring()?;
        let ctx = self.journal.ctx("credential get");
        let client = self.journal.client("credential get").await?;
        let stmt = client
            .prepare_cached(
                "SELECT name, version, key_id, wrapped_key, ciphertext FROM credentials \
                 WHERE name = $1",
            )
            .await
            .db(&ctx)?;
        let Some(row) = client.query_opt(&stmt, &[&name.as_str()]).await.db(&ctx)? else {
            return Ok(None);
        };
        let (_, sealed) = sealed(&row, &ctx)?;
        ring.open(name, &sealed).map(Some)
    }

    async fn put(&self, name: &CredentialName, value: &SecretString) -> Result<CredentialInfo> {
        let ring = self.ring()?;
        let ctx = self.journal.ctx("credential put");
        let now = Timestamp::now();
        let at = codec::ts(now).db(&ctx)?;
        let mut client = self.journal.client("credential put").await?;
        let tx = client.transaction().await.db(&ctx)?;
        // Serialises writers of one name, including the first (no row to lock yet).
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("ml-credential:{name}")],
        )
        .await
        .db(&ctx)?;
        let current: Option<i64> = tx
            .query_opt(
                "SELECT version FROM credentials WHERE name = $1 FOR UPDATE",
                &[&name.as_str()],
            )
            .await
            .db(&ctx)?
            .map(|r| r.get(0));
        let version = current.unwrap_or(0) as u64 + 1;
        let sealed = ring.seal(name, version, value)?;
        tx.execute(
            "INSERT INTO credentials (name, version, key_id, wrapped_key, ciphertext, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name) DO UPDATE SET version = excluded.version, \
               key_id = excluded.key_id, wrapped_key = excluded.wrapped_key, \
               ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
            &[
                &name.as_str(),
                &(version as i64),
                &sealed.key_id.as_str(),
                &sealed.wrapped_key,
                &sealed.ciphertext,
                &at,
            ],
        )
        .await
        .db(&ctx)?;
        tx.commit().await.db(&ctx)?;
        Ok(CredentialInfo {
            name: name.clone(),
            version,
            updated_at: now,
        })
    }

    async fn delete(&self, name: &CredentialName) -> Result<bool> {
        let ctx = self.journal.ctx("credential delete");
        let client = self.journal.client("credential delete").await?;
        let n = client
            .execute("DELETE FROM credentials WHERE name = $1", &[&name.as_str()])
            .await
            .db(&ctx)?;
        Ok(n > 0)
    }

    async fn list(&self) -> Result<Vec<CredentialInfo>> {
        let ctx = self.journal.ctx("credential list");
        let client = self.journal.client("credential list").await?;
        let rows = client
            .query(
                "SELECT name, version, updated_at FROM credentials ORDER BY name COLLATE \"C\"",
                &[],
            )
            .await
            .db(&ctx)?;
        rows.iter()
            .map(|r| {
                let name: String = r.get(0);
                let version: i64 = r.get(1);
                Ok(CredentialInfo {
                    name: CredentialName::new(name)
                        .map_err(|e| Error::Corrupt(format!("{ctx}: {e}")))?,
                    version: version as u64,
                    updated_at: codec::ts_from(r.get(2), "credential updated_at").db(&ctx)?,
                })
            })
            .collect()
    }
}
