//! The journal's schema and its migrations.
//!
//! The schema version lives in `PRAGMA user_version`; the file is marked as an ml-connector
//! journal with `PRAGMA application_id`. [`MIGRATIONS`] is ordered: migration `i` (from 0)
//! takes the schema from version `i` to version `i + 1`. Each runs in its own IMMEDIATE
//! transaction together with the version bump, so two processes opening a new journal at
//! once apply it once, and a crash mid-migration leaves the previous version intact.
//!
//! Timestamps are integer nanoseconds since the Unix epoch (exact for `jiff::Timestamp`
//! between 1677 and 2262, and ordered correctly by SQL comparisons). Records, positions,
//! errors and rejected items are JSON text.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{SqlContext, StoreError, StoreResult};

/// `PRAGMA application_id` of an ml-connector journal ("MLCJ").
pub(crate) const APPLICATION_ID: i32 = 0x4D4C_434A;

/// Version 1: the initial schema.
const V1: &str = r"
CREATE TABLE positions (
    stream      TEXT PRIMARY KEY NOT NULL,
    position    TEXT NOT NULL,            -- JSON
    cycle_id    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE cycles (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    stream      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    pages       INTEGER NOT NULL DEFAULT 0,
    inserted    INTEGER NOT NULL DEFAULT 0,
    duplicates  INTEGER NOT NULL DEFAULT 0,
    rejected    INTEGER NOT NULL DEFAULT 0,
    deliveries  INTEGER NOT NULL DEFAULT 0,
    error       TEXT,                     -- JSON ErrorInfo
    position    TEXT,                     -- JSON, after the last committed page
    watermark   INTEGER
);
CREATE INDEX cycles_by_stream ON cycles (stream, id);

-- One row per (stream, dedupe key, dedupe version): the record as journaled. The body comes
-- last so that reading the other columns never touches it.
CREATE TABLE records (
    id             INTEGER PRIMARY KEY,
    stream         TEXT NOT NULL,
    dedupe_key     TEXT NOT NULL,
    dedupe_version TEXT NOT NULL,
    record_key     TEXT NOT NULL,
    cycle_id       INTEGER NOT NULL,
    journaled_at   INTEGER NOT NULL,
    body           TEXT NOT NULL          -- JSON Record
);
CREATE UNIQUE INDEX records_dedupe ON records (stream, dedupe_key, dedupe_version);
CREATE INDEX records_by_key ON records (stream, record_key);

CREATE TABLE destinations (
    id      INTEGER PRIMARY KEY,
    sink    TEXT NOT NULL,
    address TEXT NOT NULL,
    UNIQUE (sink, address)
);

-- A planned delivery (record x destination). Its stream, record key and version are the
-- record's (join on record_id).
CREATE TABLE deliveries (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id          INTEGER NOT NULL REFERENCES records (id),
    dest_id            INTEGER NOT NULL REFERENCES destinations (id),
    status             TEXT NOT NULL,     -- pending | in_flight | retrying | delivered | failed
    attempts           INTEGER NOT NULL DEFAULT 0,
    in_doubt           INTEGER NOT NULL DEFAULT 0,
    resent_after_doubt INTEGER NOT NULL DEFAULT 0,
    remote_id          TEXT,
    remote_scope       TEXT,
    remote_status      TEXT,
    last_error         TEXT,              -- JSON ErrorInfo
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    next_attempt_at    INTEGER,
    first_attempt_at   INTEGER,           -- first attempt of the current retry round
    round_base         INTEGER NOT NULL DEFAULT 0  -- attempts when the round began (last replay)
);
-- Head of line: the oldest non-terminal delivery of each destination.
CREATE INDEX deliveries_head ON deliveries (dest_id, id)
    WHERE status IN ('pending', 'in_flight', 'retrying');
-- Status queries, stats, recovery, and the earliest due time.
CREATE INDEX deliveries_status ON deliveries (status, next_attempt_at);
-- By record (queries, history, threading).
CREATE INDEX deliveries_by_record ON deliveries (record_id);
-- Status callbacks.
CREATE INDEX deliveries_remote ON deliveries (remote_id) WHERE remote_id IS NOT NULL;

CREATE TABLE attempts (
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
    number      INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     TEXT,
    remote_id   TEXT,
    error       TEXT,                     -- JSON ErrorInfo
    PRIMARY KEY (delivery_id, number)
) WITHOUT ROWID;

CREATE TABLE rejected (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    stream   TEXT NOT NULL,
    identity TEXT NOT NULL,
    item     TEXT NOT NULL,               -- JSON Rejected
    cycle_id INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    UNIQUE (stream, identity)
);
CREATE INDEX rejected_by_stream ON rejected (stream, id);
";

/// Version 2: credentials at rest (`crate::SqliteCredentialStore`). Values are never
/// stored in clear: a data key wrapped by the master key, and the value encrypted with it.
const V2_CREDENTIALS: &str = r"
CREATE TABLE credentials (
    name        TEXT PRIMARY KEY NOT NULL,
    version     INTEGER NOT NULL,
    key_id      TEXT NOT NULL,            -- fingerprint of the master key that wrapped the data key
    wrapped_key BLOB NOT NULL,            -- nonce + encrypted data key
    ciphertext  BLOB NOT NULL,            -- nonce + encrypted value
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The webhook replay cache ([`crate::SqliteReplayCache`]): keys of callbacks already
/// received (signatures, `sid/status` pairs, event ids), each until it expires.
const WEBHOOK_REPLAY: &str = r"
CREATE TABLE webhook_replay (
    key        TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX webhook_replay_by_expiry ON webhook_replay (expires_at, seen_at);
";

/// Version 4: claims carry an owner and a lease, and one owner polls a stream at a time.
/// In-flight rows from version 1 have no owner: they count as expired (a version-1 process
/// took no lease, so nobody can be relying on one).
const V4_LEASES: &str = r"
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE deliveries ADD COLUMN lease_until INTEGER;

CREATE TABLE stream_leases (
    stream      TEXT PRIMARY KEY NOT NULL,
    owner       TEXT NOT NULL,
    lease_until INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Version 5: the head-of-line index names the two terminal statuses instead of the three
/// live ones. SQLite evaluates an `IN` list of three or more constants through a temporary
/// b-tree built on every execution, and every insert and status change of a delivery
/// evaluates this index's predicate (twice for an update): that cost more than the row
/// change itself. Two constants are compared directly.
const V5_HEAD_INDEX: &str = r"
DROP INDEX deliveries_head;
CREATE INDEX deliveries_head ON deliveries (dest_id, id)
    WHERE status NOT IN ('delivered', 'failed');
";

/// Version 6: operator notes (a refresh token about to expire, a pairing needed), written
/// once per (kind, dedupe) and read newest first.
const V6_JOURNAL_NOTES: &str = r"
CREATE TABLE journal_notes (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    stream    TEXT,
    kind      TEXT NOT NULL,
    severity  TEXT NOT NULL,
    dedupe    TEXT NOT NULL,
    message   TEXT NOT NULL,
    UNIQUE (kind, dedupe)
);
CREATE INDEX journal_notes_by_at ON journal_notes (at, id);
";

/// Version 7: a record's body may be LZ4-compressed (a BLOB, see `body.rs`). Nothing in
/// the tables changes, but a version-6 build cannot read such a body: the version makes it
/// refuse the journal at open (`SchemaTooNew`) instead of failing claims later.
const V7_COMPRESSED_BODIES: &str = "";

/// Version 8: when the latest send to each destination ended, so that a process started
/// right after another paces its first send from there (Slack allows one post a second per
/// channel, and answers a faster one with a 429).
const V8_SEND_ENDS: &str = "ALTER TABLE destinations ADD COLUMN last_send_end INTEGER;";

/// The migrations, in order: `MIGRATIONS[i]` takes version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    V1,
    V2_CREDENTIALS,
    WEBHOOK_REPLAY,
    V4_LEASES,
    V5_HEAD_INDEX,
    V6_JOURNAL_NOTES,
    V7_COMPRESSED_BODIES,
    V8_SEND_ENDS,
];

/// The schema version this code writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn user_version(conn: &Connection, path: &str) -> StoreResult<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .ctx(&format!("`{path}`: reading the schema version"))
}

fn application_id(conn: &Connection, path: &str) -> StoreResult<i32> {
    conn.query_row("PRAGMA application_id", [], |r| r.get(0))
        .ctx(&format!("`{path}`: reading the application id"))
}

/// Checks that the file is an ml-connector journal this code can read, and brings its
/// schema up to [`SCHEMA_VERSION`].
pub(crate) fn migrate(conn: &mut Connection, path: &str) -> StoreResult<()> {
    let found = user_version(conn, path)?;
    check_version_sign(found, path)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return check_application(conn, path);
    }
    let ctx = format!("`{path}`: migrating the journal schema");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx(&ctx)?;
    // Another process may have migrated while we waited for the write lock.
    let mut version = user_version(&tx, path)?;
    check_version_sign(version, path)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version == 0 {
        let objects: i64 = tx
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'",
                [],
                |r| r.get(0),
            )
            .ctx(&ctx)?;
        if objects > 0 {
            return Err(StoreError::NotAJournal {
                path: path.to_owned(),
                reason: format!(
                    "it is a SQLite database of another application ({objects} tables and \
                     indexes, no journal schema version)"
                ),
            });
        }
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .ctx(&ctx)?;
    } else {
        check_application(&tx, path)?;
    }
    while version < SCHEMA_VERSION {
        let sql = usize::try_from(version)
            .ok()
            .and_then(|i| MIGRATIONS.get(i))
            .ok_or_else(|| invalid_version(version, path))?;
        tx.execute_batch(sql)
            .ctx(&format!("{ctx} to version {}", version + 1))?;
        version += 1;
        tracing::info!(journal = path, version, "journal schema migrated");
    }
    tx.pragma_update(None, "user_version", version).ctx(&ctx)?;
    tx.commit().ctx(&ctx)?;
    Ok(())
}

/// A negative `user_version` is never written by ml-store: the file was tampered with.
fn check_version_sign(version: i64, path: &str) -> StoreResult<()> {
    if version < 0 {
        Err(invalid_version(version, path))
    } else {
        Ok(())
    }
}

fn invalid_version(version: i64, path: &str) -> StoreError {
    StoreError::NotAJournal {
        path: path.to_owned(),
        reason: format!("its schema version {version} is not one ml-store ever wrote"),
    }
}

fn check_application(conn: &Connection, path: &str) -> StoreResult<()> {
    let app = application_id(conn, path)?;
    if app == APPLICATION_ID {
        Ok(())
    } else {
        Err(StoreError::NotAJournal {
            path: path.to_owned(),
            reason: format!("its application id is {app:#010x}, not {APPLICATION_ID:#010x}"),
        })
    }
}
