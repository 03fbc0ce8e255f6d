//! # ml-store
//!
//! Durable [`AuditStore`](ml_core::AuditStore) backends for ml-connector. The default is
//! [`SqliteAuditStore`]: an embedded SQLite journal (one file, WAL mode) holding every poll
//! cycle, record, planned delivery, attempt and callback, with the stream positions
//! committed in the same transaction as the records they cover.
//!
//! ```
//! use ml_core::audit::{AuditQuery, AuditWrite, Claimant, PageCommit, PlannedRecord};
//! use ml_core::{Destination, EntityKind, Position, Record};
//! use ml_store::SqliteAuditStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ml_core::Result<()> {
//! let dir = tempfile::tempdir().expect("tempdir");
//! let store = SqliteAuditStore::open(dir.path().join("ml-audit.db"))?;
//!
//! // One page of a stream: a record for #finance, and the position after it.
//! let now = jiff::Timestamp::now();
//! let cycle = store.begin_cycle("invoices", now).await?;
//! let committed = store
//!     .commit_page(PageCommit {
//!         stream: "invoices".into(),
//!         cycle,
//!         records: vec![PlannedRecord {
//!             record: Record::new("Demo", EntityKind::SupplierInvoice, "INV-1", now),
//!             destinations: vec![Destination::new("slack", "#finance")],
//!         }],
//!         rejected: vec![],
//!         position: Position::from_json(serde_json::json!({ "after": "INV-1" })),
//!         at: now,
//!     })
//!     .await?;
//! assert_eq!((committed.inserted, committed.deliveries), (1, 1));
//!
//! // A delivery worker claims it: it is in flight in the journal, leased to this process,
//! // before anything is sent.
//! let me = Claimant::random();
//! let claimed = store.claim_due(&me, now, 10).await?;
//! assert_eq!(claimed[0].record.key, "INV-1");
//! assert_eq!(claimed[0].destination.address, "#finance");
//! assert_eq!(store.stats().await?.in_flight, 1);
//! # Ok(()) }
//! ```
//!
//! ## Configuration
//!
//! [`SqliteBuilder::from_env`] reads `ML_AUDIT_DB` (the file; default `ml-audit.db` in the
//! working directory, `:memory:` for an in-memory journal), `ML_AUDIT_SYNCHRONOUS`
//! (`normal` or `full`) and `ML_AUDIT_BUSY_TIMEOUT_MS`; see [`SqliteConfigKey`].
//!
//! ## Durability
//!
//! WAL with `synchronous=NORMAL` (the default) survives a process crash (SIGKILL, OOM kill,
//! panic) completely. A power loss or kernel crash may lose the last few commits, never
//! corrupting the journal; since a position is committed with its records, the lost pages
//! are simply read again. [`SqliteBuilder::with_synchronous_full`] fsyncs every commit.
//!
//! ## Several processes on one journal
//!
//! What holds when several processes on one host share a journal file (a service plus a
//! cron-driven `--once`, a CLI replay, a restarted sibling):
//!
//! * Every write takes SQLite's write lock up front (`BEGIN IMMEDIATE`), so a delivery is
//!   never claimed twice.
//! * A claim records its owner (one per pipeline run) and a lease (60 s by default),
//!   renewed while the send runs. Recovery requeues only the process's own claims and those
//!   whose lease ran out: another live process's delivery in flight is never re-sent.
//!   After a crash, the dead process's deliveries are taken over (reconciled first, where
//!   the sink can) once their lease ran out.
//! * One process polls a stream at a time (a lease row per stream, taken when a cycle
//!   starts, renewed per page, released at its end); another skips that cycle.
//! * A journal on a network file system (NFS, SMB/CIFS, AFS, Ceph, ...) is refused when it
//!   is opened: SQLite's WAL needs one host's shared memory and locks. Several machines
//!   need the PostgreSQL backend.
//!
//! Writers are serialised, so more processes add safety, not throughput.
//!
//! ## Several replicas (features `postgres` and `redis`)
//!
//! [`postgres::PostgresAuditStore`] is the same journal on a PostgreSQL schema shared by
//! every replica (claims with `FOR UPDATE SKIP LOCKED` and leases, one poller per stream,
//! credentials in [`postgres::PostgresCredentialStore`]); [`redis::RedisRateLimiter`]
//! keeps the per-destination rate budgets in Redis, so replicas share them. Both pass the
//! same conformance suites as the in-process implementations.
//!
//! ## Webhook replay cache
//!
//! [`SqliteReplayCache`] keeps the keys of webhook callbacks already received in the
//! journal (bounded, each key until it expires), so a replayed Twilio callback is refused
//! after a restart and by every process on the same file. With several replicas,
//! `postgres::PostgresReplayCache` (feature `postgres`) keeps them in the PostgreSQL
//! journal on its pool, shared by every replica: a request accepted by one replica and
//! replayed to another is refused, and a key is admitted once even when two replicas
//! receive it at the same moment. Both bound their table without counting it on every
//! insert, and both pass ml-core's `ReplayCache` conformance suite
//! (`ml_core::testing::replay_cache_conformance`).
//!
//! ## Schema
//!
//! Versioned with `PRAGMA user_version` and migrated on open; a journal written by a newer
//! ml-store, a file that is not a SQLite database, or another application's database is
//! refused with [`ml_core::Error::Corrupt`] naming the file.
//!
//! Records are JSON. From schema version 7 a record's body of 512 bytes or more is stored
//! LZ4-compressed (a BLOB: `MLZ\x01`, the JSON's length as a little-endian u32, an LZ4
//! block) when that saves at least a tenth; smaller ones stay JSON text, and the audit
//! API ([`AuditQuery`](ml_core::audit::AuditQuery)) always answers decoded records.

mod body;
mod builder;
mod checkpoint;
mod codec;
mod credentials;
mod deliver;
mod error;
mod fs;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "postgres")]
pub mod postgres;
mod query;
mod recent;
#[cfg(feature = "redis")]
pub mod redis;
mod replay;
mod schema;
mod sqlite;
mod write;

#[cfg(feature = "redis")]
pub use self::redis::{RedisLimiterBuilder, RedisRateLimiter};
pub use builder::{DEFAULT_BUSY_TIMEOUT, DEFAULT_PATH, SqliteBuilder, SqliteConfigKey};
pub use credentials::{Rotation, SqliteCredentialStore};
pub use error::StoreError;
#[cfg(feature = "postgres")]
pub use postgres::{
    PostgresAuditStore, PostgresBuilder, PostgresCredentialStore, PostgresReplayCache,
};
pub use replay::{DEFAULT_REPLAY_ENTRIES, SqliteReplayCache};
pub use sqlite::SqliteAuditStore;

/// The journal schema version this ml-store writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = schema::SCHEMA_VERSION;
