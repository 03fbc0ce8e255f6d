//! [`SqliteCredentialStore`]: credentials at rest in the journal file, envelope-encrypted
//! (see [`ml_core::credential::envelope`]).

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use jiff::Timestamp;
use ml_core::credential::envelope::{ENV_MASTER_KEY, ENV_MASTER_KEY_FILE, KeyId, KeyRing, Sealed};
use ml_core::credential::{CredentialInfo, CredentialName, CredentialStore};
use ml_core::{Error, Result};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use secrecy::SecretString;

use crate::codec;
use crate::error::{SqlContext, StoreError, StoreResult, is_corruption};
use crate::schema;

/// What [`SqliteCredentialStore::rotate`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Credentials whose data key was re-wrapped under the current master key.
    pub rewrapped: u64,
    /// Credentials already under the current master key.
    pub unchanged: u64,
}

/// Named secrets in the journal file (table `credentials`), each encrypted with its own
/// data key wrapped by the master key ([`KeyRing`]).
///
/// * `put` is one `BEGIN IMMEDIATE` transaction on a connection with
///   `synchronous=FULL`: when it returns, the value is on disk (a rotated refresh token must
///   survive a power loss, not only a crash), and a crash at any point leaves the old or the
///   new value.
/// * Opening refuses a journal that holds credentials when no master key is configured, or
///   when a credential was wrapped by a key the ring does not hold: the error says which
///   credentials and which key, so a pipeline never starts with secrets it cannot read.
/// * [`rotate`](Self::rotate) moves every data key to the ring's current key, one row per
///   transaction; until it completes, the old key must stay in the ring as previous.
/// * Names, versions and times are stored in clear (they are listed); values never are,
///   neither in the file nor its WAL.
#[derive(Clone)]
pub struct SqliteCredentialStore {
    inner: Arc<Inner>,
}

struct Inner {
    label: String,
    conn: Mutex<Connection>,
    keys: Option<KeyRing>,
}

impl fmt::Debug for SqliteCredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteCredentialStore")
            .field("journal", &self.inner.label)
            .field("keys", &self.inner.keys)
            .finish()
    }
}

impl fmt::Display for SqliteCredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqliteCredentialStore({})", self.inner.label)
    }
}

fn no_key_error(count: i64, label: &str) -> Error {
    Error::config(
        ENV_MASTER_KEY,
        format!(
            "the journal `{label}` holds {count} encrypted credential(s) but no master key is \
             configured; set {ENV_MASTER_KEY} (base64) or {ENV_MASTER_KEY_FILE}"
        ),
    )
}

impl SqliteCredentialStore {
    /// Opens the credential table of the journal at `path` (creating or migrating the
    /// journal as [`crate::SqliteAuditStore`] does), with the master keys from the
    /// environment ([`KeyRing::from_env`]). Blocking.
    pub fn open_from_env(path: impl AsRef<Path>) -> Result<Self> {
        Self::open(path, KeyRing::from_env()?)
    }

    /// Opens the credential table of the journal at `path` with `keys` (`None`: no master
    /// key; allowed only while no credential is stored, for `list`-style inspection).
    /// Blocking.
    pub fn open(path: impl AsRef<Path>, keys: Option<KeyRing>) -> Result<Self> {
        let label = path.as_ref().display().to_string();
        let conn = open_conn(path.as_ref(), &label)
            .map_err(|e| Error::from(e.in_journal(&label, "opening credentials")))?;
        let in_use: Vec<(String, String)> = {
            let mut stmt = conn
                .prepare("SELECT name, key_id FROM credentials ORDER BY name")
                .map_err(|e| {
                    Error::from(StoreError::sqlite(format!("`{label}`: credentials"), e))
                })?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(Iterator::collect)
                .map_err(|e| {
                    Error::from(StoreError::sqlite(format!("`{label}`: credentials"), e))
                })?
        };
        match &keys {
            None if !in_use.is_empty() => return Err(no_key_error(in_use.len() as i64, &label)),
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
        Ok(Self {
            inner: Arc::new(Inner {
                label,
                conn: Mutex::new(conn),
                keys,
            }),
        })
    }

    /// The journal file.
    pub fn path(&self) -> &str {
        &self.inner.label
    }

    fn ring(&self) -> Result<&KeyRing> {
        self.inner
            .keys
            .as_ref()
            .ok_or_else(|| no_key_error(0, &self.inner.label))
    }

    async fn with_conn<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Inner) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        match tokio::task::spawn_blocking(move || {
            let mut conn = inner.conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn, &inner)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => Err(StoreError::Task(format!("{op}: {e}")).into()),
        }
    }

    /// Re-wraps every data key under the ring's current master key (after configuring the
    /// new key as current and the old one as previous). Each credential is its own
    /// transaction, so a crash leaves every row under one key or the other, both of which
    /// the ring opens; running it again finishes the job.
    pub async fn rotate(&self) -> Result<Rotation> {
        self.ring()?;
        self.with_conn("rotate", |conn, inner| {
            let label = inner.label.clone();
            let ring = inner.keys.as_ref().ok_or_else(|| no_key_error(0, &label))?;
            let rows = load_all(conn).map_err(|e| Error::from(e.in_journal(&label, "rotate")))?;
            let mut report = Rotation::default();
            for (name, sealed) in rows {
                let Some(new) = ring.rewrap(&name, &sealed)? else {
                    report.unchanged += 1;
                    continue;
                };
                let changed = conn
                    .execute(
                        "UPDATE credentials SET key_id = ?1, wrapped_key = ?2
                         WHERE name = ?3 AND version = ?4 AND key_id = ?5",
                        params![
                            new.key_id.as_str(),
                            new.wrapped_key,
                            name.as_str(),
                            new.version as i64,
                            sealed.key_id.as_str()
                        ],
                    )
                    .ctx("re-wrapping a data key")
                    .map_err(|e| Error::from(e.in_journal(&label, "rotate")))?;
                // 0: a concurrent put replaced it, already under the current key.
                report.rewrapped += changed as u64;
            }
            tracing::info!(journal = %label, rewrapped = report.rewrapped, key = %ring.current_id(), "credential master key rotated");
            Ok(report)
        })
        .await
    }
}

fn open_conn(path: &Path, label: &str) -> StoreResult<Connection> {
    let opening = |e: rusqlite::Error| {
        if is_corruption(&e) {
            StoreError::NotAJournal {
                path: label.to_owned(),
                reason: e.to_string(),
            }
        } else {
            StoreError::sqlite(format!("opening `{label}`"), e)
        }
    };
    let mut conn = Connection::open(path).map_err(opening)?;
    conn.busy_timeout(crate::DEFAULT_BUSY_TIMEOUT)
        .map_err(opening)?;
    let _: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(opening)?;
    // A rotated refresh token must survive a power loss, not only a crash.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(opening)?;
    schema::migrate(&mut conn, label)?;
    Ok(conn)
}

fn row_to_sealed(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, Sealed)> {
    let version: i64 = r.get(1)?;
    Ok((
        r.get(0)?,
        Sealed {
            version: version as u64,
            key_id: KeyId::from_stored(r.get::<_, String>(2)?),
            wrapped_key: r.get(3)?,
            ciphertext: r.get(4)?,
        },
    ))
}

fn load_all(conn: &Connection) -> StoreResult<Vec<(CredentialName, Sealed)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT name, version, key_id, wrapped_key, ciphertext FROM credentials ORDER BY name",
        )
        .ctx("reading credentials")?;
    let rows: Vec<(String, Sealed)> = stmt
        .query_map([], row_to_sealed)
        .and_then(Iterator::collect)
        .ctx("reading credentials")?;
    rows.into_iter()
        .map(|(n, s)| {
            CredentialName::new(n.clone()).map(|n| (n, s)).map_err(|_| {
                StoreError::corrupt(format!(
                    "credential row with an invalid name `{}`",
                    n.escape_debug()
                ))
            })
        })
        .collect()
}

#[async_trait]
impl CredentialStore for SqliteCredentialStore {
    async fn get(&self, name: &CredentialName) -> Result<Option<SecretString>> {
        self.ring()?;
        let name = name.clone();
        self.with_conn("credential get", move |conn, inner| {
            let found = conn
                .prepare_cached(
                    "SELECT name, version, key_id, wrapped_key, ciphertext FROM credentials WHERE name = ?1",
                )
                .and_then(|mut s| s.query_row([name.as_str()], row_to_sealed).optional())
                .map_err(|e| Error::from(StoreError::sqlite(format!("`{}`: credential get", inner.label), e)))?;
            let ring = inner.keys.as_ref().ok_or_else(|| no_key_error(0, &inner.label))?;
            found.map(|(_, sealed)| ring.open(&name, &sealed)).transpose()
        })
        .await
    }

    async fn put(&self, name: &CredentialName, value: &SecretString) -> Result<CredentialInfo> {
        self.ring()?;
        let (name, value) = (name.clone(), value.clone());
        let now = Timestamp::now();
        self.with_conn("credential put", move |conn, inner| {
            let label = inner.label.clone();
            let sql = |e: StoreError| Error::from(e.in_journal(&label, "credential put"));
            let ring = inner.keys.as_ref().ok_or_else(|| no_key_error(0, &label))?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx("begin")
                .map_err(sql)?;
            let current: Option<i64> = tx
                .query_row(
                    "SELECT version FROM credentials WHERE name = ?1",
                    [name.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .ctx("reading the version")
                .map_err(sql)?;
            let version = current.unwrap_or(0) as u64 + 1;
            let sealed = ring.seal(&name, version, &value)?;
            tx.execute(
                "INSERT INTO credentials (name, version, key_id, wrapped_key, ciphertext, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (name) DO UPDATE SET version = excluded.version,
                     key_id = excluded.key_id, wrapped_key = excluded.wrapped_key,
                     ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
                params![
                    name.as_str(),
                    version as i64,
                    sealed.key_id.as_str(),
                    sealed.wrapped_key,
                    sealed.ciphertext,
                    codec::ts(now).map_err(sql)?
                ],
            )
            .ctx("writing the credential")
            .map_err(sql)?;
            tx.commit().ctx("commit").map_err(sql)?;
            Ok(CredentialInfo {
                name,
                version,
                updated_at: now,
            })
        })
        .await
    }

    async fn delete(&self, name: &CredentialName) -> Result<bool> {
        let name = name.clone();
        self.with_conn("credential delete", move |conn, inner| {
            conn.execute("DELETE FROM credentials WHERE name = ?1", [name.as_str()])
                .map(|n| n > 0)
                .map_err(|e| {
                    Error::from(StoreError::sqlite(
                        format!("`{}`: credential delete", inner.label),
                        e,
                    ))
                })
        })
        .await
    }

    async fn list(&self) -> Result<Vec<CredentialInfo>> {
        self.with_conn("credential list", move |conn, inner| {
            let label = inner.label.clone();
            let rows: Vec<(String, i64, i64)> = conn
                .prepare_cached("SELECT name, version, updated_at FROM credentials ORDER BY name")
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .and_then(Iterator::collect)
                })
                .map_err(|e| {
                    Error::from(StoreError::sqlite(format!("`{label}`: credential list"), e))
                })?;
            rows.into_iter()
                .map(|(n, v, at)| {
                    Ok(CredentialInfo {
                        name: CredentialName::new(n)
                            .map_err(|e| Error::Corrupt(format!("`{label}`: {e}")))?,
                        version: v as u64,
                        updated_at: codec::ts_from(at, "credential updated_at")
                            .map_err(|e| Error::from(e.in_journal(&label, "credential list")))?,
                    })
                })
                .collect()
        })
        .await
    }
}
