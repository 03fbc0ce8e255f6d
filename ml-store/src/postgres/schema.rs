//! The PostgreSQL journal's schema and its migrations.
//!
//! The same data model as the SQLite journal ([`crate::schema`]): timestamps are BIGINT
//! nanoseconds since the Unix epoch, records, positions, errors and rejected items are
//! JSON text (TEXT, not JSONB: a record's raw item must come back byte for byte, and JSONB
//! would reorder keys and round numbers).
//!
//! The version lives in the table `ml_schema_version` (one row, with the application name
//! as a marker). Migrations run in one transaction under a transaction-level advisory
//! lock, so replicas starting at once apply each migration exactly once, and a crash
//! mid-migration leaves the previous version intact (PostgreSQL DDL is transactional).
//!
//! Delivery and record ids are not column defaults: `commit_page` takes them from their
//! sequences under the page-commit lock, so ids follow commit order across replicas and
//! page order within a page (the journal's contract).

use deadpool_postgres::GenericClient;
use ml_core::{Error, Result};

use super::error::Db;

/// The marker stored beside the version: a database of another application that happens
/// to have a table of that name is refused.
const APPLICATION: &str = "ml-connector journal";

/// Version 1: the journal (the SQLite schema up to its version 4: leases included).
const V1: &str = r"
CREATE TABLE positions (
    stream      TEXT PRIMARY KEY,
    position    TEXT NOT NULL,
    cycle_id    BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE cycles (
    id          BIGSERIAL PRIMARY KEY,
    stream      TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    pages       BIGINT NOT NULL DEFAULT 0,
    inserted    BIGINT NOT NULL DEFAULT 0,
    duplicates  BIGINT NOT NULL DEFAULT 0,
    rejected    BIGINT NOT NULL DEFAULT 0,
    deliveries  BIGINT NOT NULL DEFAULT 0,
    error       TEXT,
    position    TEXT,
    watermark   BIGINT
);
CREATE INDEX cycles_by_stream ON cycles (stream, id);

CREATE SEQUENCE records_id_seq;
CREATE TABLE records (
    id             BIGINT PRIMARY KEY,
    stream         TEXT NOT NULL,
    dedupe_key     TEXT NOT NULL,
    dedupe_version TEXT NOT NULL,
    record_key     TEXT NOT NULL,
    cycle_id       BIGINT NOT NULL,
    journaled_at   BIGINT NOT NULL,
    body           TEXT NOT NULL,
    UNIQUE (stream, dedupe_key, dedupe_version)
);
CREATE INDEX records_by_key ON records (stream, record_key, id);

CREATE TABLE destinations (
    id      BIGSERIAL PRIMARY KEY,
    sink    TEXT NOT NULL,
    address TEXT NOT NULL,
    UNIQUE (sink, address)
);

CREATE SEQUENCE deliveries_id_seq;
CREATE TABLE deliveries (
    id                 BIGINT PRIMARY KEY,
    record_id          BIGINT NOT NULL REFERENCES records (id),
    dest_id            BIGINT NOT NULL REFERENCES destinations (id),
    status             TEXT NOT NULL,
    attempts           BIGINT NOT NULL DEFAULT 0,
    in_doubt           BOOLEAN NOT NULL DEFAULT false,
    resent_after_doubt BIGINT NOT NULL DEFAULT 0,
    remote_id          TEXT,
    remote_scope       TEXT,
    remote_status      TEXT,
    last_error         TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    next_attempt_at    BIGINT,
    first_attempt_at   BIGINT,
    round_base         BIGINT NOT NULL DEFAULT 0,
    claimed_by         TEXT,
    lease_until        BIGINT
);
CREATE INDEX deliveries_head ON deliveries (dest_id, id)
    WHERE status IN ('pending', 'in_flight', 'retrying');
CREATE INDEX deliveries_status ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_by_record ON deliveries (record_id);
CREATE INDEX deliveries_remote ON deliveries (remote_id) WHERE remote_id IS NOT NULL;

CREATE TABLE attempts (
    delivery_id BIGINT NOT NULL REFERENCES deliveries (id),
    number      BIGINT NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    outcome     TEXT,
    remote_id   TEXT,
    error       TEXT,
    PRIMARY KEY (delivery_id, number)
);

CREATE TABLE rejected (
    id       BIGSERIAL PRIMARY KEY,
    stream   TEXT NOT NULL,
    identity TEXT NOT NULL,
    item     TEXT NOT NULL,
    cycle_id BIGINT NOT NULL,
    at       BIGINT NOT NULL,
    UNIQUE (stream, identity)
);
CREATE INDEX rejected_by_stream ON rejected (stream, id);

CREATE TABLE stream_leases (
    stream      TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);
";

/// Version 2: credentials at rest (`PostgresCredentialStore`), envelope-encrypted as in
/// the SQLite journal.
const V2_CREDENTIALS: &str = r"
CREATE TABLE credentials (
    name        TEXT PRIMARY KEY,
    version     BIGINT NOT NULL,
    key_id      TEXT NOT NULL,
    wrapped_key BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL
);
";

/// Version 3: the webhook replay cache shared by every replica (`PostgresReplayCache`), so a
/// request replayed to another replica is refused as it is by the one that saw it.
const V3_WEBHOOK_SEEN: &str = r"
CREATE TABLE webhook_seen (
    key        TEXT PRIMARY KEY,
    seen_at    BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX webhook_seen_by_expiry ON webhook_seen (expires_at);
";

/// Version 4: journal notes (warnings a person must act on, such as a refresh token about to
/// expire), written once per (kind, dedupe) key and read newest first (`at`, then `id`).
/// Timestamps are nanoseconds since the epoch, as in the other tables.
const V4_JOURNAL_NOTES: &str = r"
CREATE TABLE journal_notes (
    id        BIGSERIAL PRIMARY KEY,
    at        BIGINT NOT NULL,
    stream    TEXT,
    kind      TEXT NOT NULL,
    severity  TEXT NOT NULL,
    dedupe    TEXT NOT NULL,
    message   TEXT NOT NULL,
    UNIQUE (kind, dedupe)
);
CREATE INDEX journal_notes_by_at ON journal_notes (at);
";

/// Version 5: when the latest send to each destination ended (nanoseconds), so that a
/// process started right after another paces its first send from there.
const V5_SEND_ENDS: &str = "ALTER TABLE destinations ADD COLUMN last_send_end BIGINT;";

/// The migrations, in order: `MIGRATIONS[i]` takes version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    V1,
    V2_CREDENTIALS,
    V3_WEBHOOK_SEEN,
    V4_JOURNAL_NOTES,
    V5_SEND_ENDS,
];

/// The schema version this code writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock key migrations hold ("MLCJ" + 1): one migrator at a time per database.
const MIGRATION_LOCK: i64 = 0x4D4C_434A_0000_0001;

/// Creates the schema (when missing) and brings it up to [`SCHEMA_VERSION`], in one
/// transaction under [`MIGRATION_LOCK`].
pub(crate) async fn migrate(
    client: &mut deadpool_postgres::Object,
    schema: &str,
    label: &str,
) -> Result<()> {
    let ctx = |what: &str| format!("{label}: migrating the journal schema: {what}");
    let tx = client.transaction().await.db(&ctx("begin"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .db(&ctx("waiting for the migration lock"))?;
    tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .await
        .db(&ctx("creating the schema"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS ml_schema_version (
             version     BIGINT NOT NULL,
             application TEXT NOT NULL
         )",
    )
    .await
    .db(&ctx("the version table"))?;
    let rows = tx
        .query("SELECT version, application FROM ml_schema_version", &[])
        .await
        .db(&ctx("reading the version"))?;
    let mut version = match rows.as_slice() {
        [] => {
            let tables: i64 = tx
                .query_one(
                    "SELECT count(*) FROM information_schema.tables \
                     WHERE table_schema = $1 AND table_name <> 'ml_schema_version'",
                    &[&schema],
                )
                .await
                .db(&ctx("inspecting the schema"))?
                .get(0);
            if tables > 0 {
                return Err(Error::Corrupt(format!(
                    "{label}: schema `{schema}` holds {tables} tables of another application \
                     and no journal version; choose another schema (ML_POSTGRES_SCHEMA)"
                )));
            }
            tx.execute(
                "INSERT INTO ml_schema_version (version, application) VALUES (0, $1)",
                &[&APPLICATION],
            )
            .await
            .db(&ctx("initialising the version"))?;
            0
        }
        [row] => {
            let app: String = row.get(1);
            if app != APPLICATION {
                return Err(Error::Corrupt(format!(
                    "{label}: schema `{schema}` belongs to `{app}`, not to an ml-connector journal"
                )));
            }
            row.get::<_, i64>(0)
        }
        _ => {
            return Err(Error::Corrupt(format!(
                "{label}: ml_schema_version holds {} rows; a journal has exactly one",
                rows.len()
            )));
        }
    };
    if !(0..=SCHEMA_VERSION).contains(&version) {
        return Err(Error::Corrupt(format!(
            "{label}: journal schema version {version}, but this ml-store knows versions up to \
             {SCHEMA_VERSION}; open it with a newer ml-store"
        )));
    }
    while version < SCHEMA_VERSION {
        let sql = MIGRATIONS[usize::try_from(version).unwrap_or(0)];
        tx.batch_execute(sql)
            .await
            .db(&ctx(&format!("to version {}", version + 1)))?;
        version += 1;
        tracing::info!(journal = label, version, "journal schema migrated");
    }
    tx.execute("UPDATE ml_schema_version SET version = $1", &[&version])
        .await
        .db(&ctx("writing the version"))?;
    tx.commit().await.db(&ctx("commit"))?;
    Ok(())
}

/// The journal's schema version as stored (tests and `check`).
pub(crate) async fn version(client: &impl GenericClient) -> Result<i64> {
    Ok(client
        .query_one("SELECT version FROM ml_schema_version", &[])
        .await
        .db("reading the journal schema version")?
        .get(0))
}
