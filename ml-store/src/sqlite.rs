//! [`SqliteAuditStore`]: the connections, how work reaches them, and the
//! [`AuditStore`] implementation (which delegates to [`crate::write`],
//! [`crate::deliver`] and [`crate::query`]).

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use jiff::Timestamp;
use ml_core::audit::{
    AttemptOutcome, AttemptView, AuditQuery, AuditWrite, CallbackApplied, CallbackUpdate, Claimant,
    ClaimedDelivery, CycleEnd, CycleId, CycleView, DeliveryFilter, DeliveryId, DeliveryView,
    FinishedAttempt, JournalNote, JournalStats, NoteFilter, PageCommit, PageCommitted,
    RecordHistory, RejectedView, RunLengths,
};
use ml_core::{Destination, Position, Result};
use rusqlite::Connection;

use crate::builder::{Location, SqliteBuilder};
use crate::checkpoint::{Checkpointer, WRITER_AUTOCHECKPOINT};
use crate::error::{StoreError, StoreResult, is_corruption};
use crate::recent::{RECENT_RECORDS, Recent};
use crate::{codec, deliver, query, schema, write};

/// The page size of a new journal file, in bytes.
const PAGE_SIZE: i64 = 16_384;

/// Prepared statements kept per connection (the journal uses about 40 distinct ones).
const STATEMENT_CACHE: usize = 128;

/// The durable, embedded [`AuditStore`](ml_core::AuditStore): one SQLite file in WAL mode.
///
/// * Every write (`commit_page`, `claim_due`, `finish_attempt`, ...) is one
///   `BEGIN IMMEDIATE` transaction on the writer connection, so it takes SQLite's write lock
///   up front: two handles (or two processes) on the same file serialise their claims and
///   never claim a delivery twice. Claims carry their owner and a lease (see the crate
///   docs, "Several processes on one journal").
/// * Queries use a second, read-only connection (file journals), so they never wait for a
///   commit: WAL readers see the last committed state.
/// * rusqlite is blocking: each call runs on tokio's blocking pool
///   (`spawn_blocking`), never on an async worker thread.
/// * File journals are checkpointed by a background thread with its own connection
///   (`PASSIVE` checkpoints after commits, at most one per 25 ms), so commits do not copy
///   the WAL into the database file while holding the write lock; new files use 16 KB
///   pages.
/// * A record's body is its JSON, LZ4-compressed before the write lock when that saves a
///   tenth or more (about 3:1 for records with their source's raw payload): a third of the
///   bytes through the lock, the WAL, the checkpoint and the file.
/// * Claims are made in runs ([`AuditWrite::claim_runs`]) and outcomes recorded in groups
///   ([`AuditWrite::finish_attempts`]), each one transaction; records are decoded after
///   the write lock is released.
/// * Durability: WAL with `synchronous=NORMAL` by default (survives a process crash
///   completely; a power loss may lose the last commits but never corrupts), or
///   `synchronous=FULL` with [`SqliteBuilder::with_synchronous_full`].
///
/// Cloning is cheap and shares the connections.
#[derive(Clone)]
pub struct SqliteAuditStore {
    shared: Arc<Shared>,
}

struct Shared {
    label: String,
    writer: Mutex<Connection>,
    /// `None` for an in-memory journal, which has only one connection.
    reader: Option<Mutex<Connection>>,
    /// `None` for an in-memory journal (no WAL), or when the thread could not start.
    checkpointer: Option<Checkpointer>,
    /// The records this handle journaled last, decoded.
    recent: Mutex<Recent>,
    /// Nanoseconds the writer connection was held, in all.
    writer_held_ns: AtomicU64,
}

impl Shared {
    /// The writer connection, held (and its time counted) until the guard is dropped.
    fn writer(&self) -> WriterGuard<'_> {
        WriterGuard {
            conn: lock(&self.writer),
            since: std::time::Instant::now(),
            held_ns: &self.writer_held_ns,
        }
    }

    fn recent(&self) -> MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// After a commit: the background checkpointer copies it into the database file.
    fn committed(&self) {
        if let Some(c) = &self.checkpointer {
            c.nudge();
        }
    }
}

/// The writer connection while held: adds the time it was held to the journal's total
/// ([`SqliteAuditStore::write_lock_held`]) when dropped.
struct WriterGuard<'a> {
    conn: MutexGuard<'a, Connection>,
    since: std::time::Instant,
    held_ns: &'a AtomicU64,
}

impl std::ops::Deref for WriterGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for WriterGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        let held = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.held_ns.fetch_add(held, Ordering::Relaxed);
    }
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while the lock was held dropped its transaction (rolled back): the
    // connection is usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The pragmas every connection gets.
fn configure(conn: &Connection, b: &SqliteBuilder) -> rusqlite::Result<()> {
    conn.busy_timeout(b.busy_timeout)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(
        None,
        "synchronous",
        if b.synchronous_full { "FULL" } else { "NORMAL" },
    )?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Plans never depend on bound values: with STAT4 compiled in, SQLite otherwise
    // re-prepares a cached statement whenever a bound value might change its plan, which
    // cost more than the hot statements themselves.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// Maps an error met while opening: a file that is not a (healthy) SQLite database is not
/// a journal.
fn opening(label: &str, e: rusqlite::Error) -> StoreError {
    if is_corruption(&e) {
        StoreError::NotAJournal {
            path: label.to_owned(),
            reason: e.to_string(),
        }
    } else {
        StoreError::sqlite(format!("opening `{label}`"), e)
    }
}

impl SqliteAuditStore {
    /// Opens (or creates) the journal at `path` with the default settings (see
    /// [`SqliteBuilder`]). Blocking.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        SqliteBuilder::new().with_path(path).build()
    }

    /// A new in-memory journal (tests, dry runs): nothing survives it.
    pub fn open_in_memory() -> Result<Self> {
        SqliteBuilder::new().in_memory().build()
    }

    /// A builder with the defaults.
    pub fn builder() -> SqliteBuilder {
        SqliteBuilder::new()
    }

    /// The journal file (`:memory:` for an in-memory journal).
    pub fn path(&self) -> &str {
        &self.shared.label
    }

    /// How long, in all, journal writes through this handle held its one write connection
    /// since it was opened. Every write (a page, a claim, a group of outcomes) is one
    /// transaction under it, so compared with the wall time of a run this is how much of
    /// the journal's write capacity the run used: near 100 % the journal bounds throughput
    /// (`benches/compare.sh` prints it).
    pub fn write_lock_held(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.shared.writer_held_ns.load(Ordering::Relaxed))
    }

    pub(crate) fn open_with(b: &SqliteBuilder) -> StoreResult<Self> {
        let label = b.location.label();
        let (writer, reader, checkpointer) = match &b.location {
            Location::Memory => {
                let mut conn = Connection::open_in_memory().map_err(|e| opening(&label, e))?;
                configure(&conn, b).map_err(|e| opening(&label, e))?;
                schema::migrate(&mut conn, &label)?;
                (conn, None, None)
            }
            Location::File(path) => {
                crate::fs::refuse_network_fs(path, &label)?;
                let mut conn = Connection::open(path).map_err(|e| opening(&label, e))?;
                configure(&conn, b).map_err(|e| opening(&label, e))?;
                // A new journal gets larger pages: a journaled record (a couple of KB of
                // JSON) spans fewer of them, and a commit appends a quarter of the WAL frames
                // (each frame is a write call). Ignored for an existing file.
                conn.pragma_update(None, "page_size", PAGE_SIZE)
                    .map_err(|e| opening(&label, e))?;
                // The first statement that reads the file: a file that is not a SQLite
                // database fails here.
                let mode: String = conn
                    .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                    .map_err(|e| opening(&label, e))?;
                if !mode.eq_ignore_ascii_case("wal") {
                    tracing::warn!(
                        journal = %label,
                        mode,
                        "the journal could not switch to WAL mode; using {mode}"
                    );
                }
                schema::migrate(&mut conn, &label)?;
                let reader = Connection::open(path).map_err(|e| opening(&label, e))?;
                configure(&reader, b).map_err(|e| opening(&label, e))?;
                reader
                    .pragma_update(None, "query_only", true)
                    .map_err(|e| opening(&label, e))?;
                let checkpointer = Checkpointer::start(path, b.busy_timeout, &label);
                if checkpointer.is_some() {
                    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT)
                        .map_err(|e| opening(&label, e))?;
                }
                (conn, Some(reader), checkpointer)
            }
        };
        tracing::debug!(journal = %label, "journal opened");
        Ok(Self {
            shared: Arc::new(Shared {
                label,
                writer: Mutex::new(writer),
                reader: reader.map(Mutex::new),
                checkpointer,
                recent: Mutex::new(Recent::new(RECENT_RECORDS)),
                writer_held_ns: AtomicU64::new(0),
            }),
        })
    }

    /// Runs `f` on the writer connection, on the blocking pool.
    pub(crate) async fn write<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        run(op, &self.shared.label, move || {
            let out = f(&mut shared.writer());
            shared.committed();
            out
        })
        .await
    }

    /// Runs `f` on the reader connection (the writer for in-memory journals), on the
    /// blocking pool.
    async fn read<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        run(op, &self.shared.label, move || {
            let mut conn = lock(shared.reader.as_ref().unwrap_or(&shared.writer));
            f(&mut conn)
        })
        .await
    }
}

async fn run<T, F>(op: &'static str, label: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    let out = match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::Task(format!("{op}: {e}"))),
    };
    out.map_err(|e| {
        let e = e.in_journal(label, op);
        tracing::debug!(journal = label, op, error = %e, "journal call failed");
        e.into()
    })
}

impl fmt::Display for SqliteAuditStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqliteAuditStore({})", self.shared.label)
    }
}

impl fmt::Debug for SqliteAuditStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[async_trait]
impl AuditWrite for SqliteAuditStore {
    async fn load_position(&self, stream: &str) -> Result<Option<Position>> {
        let stream = stream.to_owned();
        self.read("load_position", move |c| query::load_position(c, &stream))
            .await
    }

    async fn begin_cycle(&self, stream: &str, at: Timestamp) -> Result<CycleId> {
        let stream = stream.to_owned();
        let at = codec::ts(at)?;
        self.write("begin_cycle", move |c| write::begin_cycle(c, &stream, at))
            .await
    }

    async fn commit_page(&self, page: PageCommit) -> Result<PageCommitted> {
        // Validate before anything else: an invalid record fails the whole page.
        for p in &page.records {
            p.record.validate()?;
        }
        let shared = Arc::clone(&self.shared);
        run("commit_page", &self.shared.label, move || {
            // Encode outside the lock: JSON is the costly part of a page.
            let mut page = write::encode_page(page)?;
            let mut journaled = Vec::with_capacity(page.records.len());
            let out = write::commit_page(&mut shared.writer(), &page, &mut journaled);
            shared.committed();
            if out.is_ok() {
                let mut recent = shared.recent();
                for (id, i) in journaled {
                    if let Some((r, body)) =
                        page.records.get_mut(i).and_then(write::EncodedRecord::take)
                    {
                        recent.put(id, r, body);
                    }
                }
            }
            out
        })
        .await
    }

    async fn end_cycle(&self, cycle: CycleId, end: CycleEnd) -> Result<()> {
        self.write("end_cycle", move |c| write::end_cycle(c, cycle, &end))
            .await
    }

    async fn claim_due(
        &self,
        by: &Claimant,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        Ok(self
            .claim_runs(by, now, limit, &RunLengths::new())
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    async fn claim_runs(
        &self,
        by: &Claimant,
        now: Timestamp,
        limit: usize,
        runs: &RunLengths,
    ) -> Result<Vec<Vec<ClaimedDelivery>>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (by, runs) = (by.clone(), runs.clone());
        let shared = Arc::clone(&self.shared);
        run("claim_runs", &self.shared.label, move || {
            let raw = deliver::claim_runs(&mut shared.writer(), &by, now, limit, &runs);
            shared.committed();
            // Decoding the records waits for no lock: it overlaps the next commit.
            let (claimed, corrupt) = deliver::decode_runs(raw?, &shared.recent())?;
            if !corrupt.is_empty() {
                deliver::quarantine_claims(&mut shared.writer(), &corrupt, now)?;
                shared.committed();
            }
            Ok(claimed)
        })
        .await
    }

    async fn finish_attempts(&self, done: Vec<FinishedAttempt>) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        self.write("finish_attempts", move |c| {
            deliver::finish_attempts(c, &done)
        })
        .await
    }

    async fn release_claims(
        &self,
        by: &Claimant,
        unsent: &[ClaimedDelivery],
        now: Timestamp,
    ) -> Result<u64> {
        if unsent.is_empty() {
            return Ok(0);
        }
        let by = by.clone();
        let ids: Vec<DeliveryId> = unsent.iter().map(|c| c.id).collect();
        self.write("release_claims", move |c| {
            deliver::release_claims(c, &by, &ids, now)
        })
        .await
    }

    async fn renew_claims(&self, by: &Claimant, ids: &[DeliveryId], now: Timestamp) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let (by, ids) = (by.clone(), ids.to_vec());
        self.write("renew_claims", move |c| {
            deliver::renew_claims(c, &by, &ids, now)
        })
        .await
    }

    async fn acquire_stream(&self, stream: &str, by: &Claimant, now: Timestamp) -> Result<bool> {
        let (stream, by) = (stream.to_owned(), by.clone());
        self.write("acquire_stream", move |c| {
            deliver::acquire_stream(c, &stream, &by, now)
        })
        .await
    }

    async fn release_stream(&self, stream: &str, by: &Claimant) -> Result<()> {
        let (stream, by) = (stream.to_owned(), by.clone());
        self.write("release_stream", move |c| {
            deliver::release_stream(c, &stream, &by)
        })
        .await
    }

    async fn finish_attempt(
        &self,
        id: DeliveryId,
        outcome: AttemptOutcome,
        at: Timestamp,
    ) -> Result<()> {
        self.write("finish_attempt", move |c| {
            deliver::finish_attempt(c, id, &outcome, at)
        })
        .await
    }

    async fn requeue_in_flight(&self, by: &Claimant, now: Timestamp) -> Result<u64> {
        let by = by.clone();
        self.write("requeue_in_flight", move |c| {
            deliver::requeue_in_flight(c, &by, now)
        })
        .await
    }

    async fn record_send_ends(&self, ends: &[(Destination, Timestamp)]) -> Result<()> {
        if ends.is_empty() {
            return Ok(());
        }
        let ends = ends.to_vec();
        self.write("record_send_ends", move |c| {
            deliver::record_send_ends(c, &ends)
        })
        .await
    }

    async fn last_send_end(&self, destination: &Destination) -> Result<Option<Timestamp>> {
        let d = destination.clone();
        self.read("last send end", move |c| query::last_send_end(c, &d))
            .await
    }

    async fn rename_stream(&self, from: &str, to: &str) -> Result<bool> {
        let (from, to) = (from.to_owned(), to.to_owned());
        self.write("rename_stream", move |c| {
            deliver::rename_stream(c, &from, &to)
        })
        .await
    }

    async fn retry_held_now(&self, now: Timestamp) -> Result<u64> {
        self.write("retry_held_now", move |c| deliver::retry_held_now(c, now))
            .await
    }

    async fn replay(&self, id: DeliveryId, now: Timestamp) -> Result<()> {
        self.write("replay", move |c| deliver::replay(c, id, now))
            .await
    }

    async fn replay_failed_to(
        &self,
        filter: &DeliveryFilter,
        to: &Destination,
        now: Timestamp,
    ) -> Result<u64> {
        let (filter, to) = (filter.clone(), to.clone());
        self.write("replay_failed_to", move |c| {
            deliver::replay_failed(c, &filter, Some(&to), now)
        })
        .await
    }

    async fn replay_failed(&self, filter: &DeliveryFilter, now: Timestamp) -> Result<u64> {
        let filter = filter.clone();
        self.write("replay_failed", move |c| {
            deliver::replay_failed(c, &filter, None, now)
        })
        .await
    }

    async fn apply_callback(&self, update: &CallbackUpdate) -> Result<CallbackApplied> {
        let update = update.clone();
        self.write("apply_callback", move |c| {
            deliver::apply_callback(c, &update)
        })
        .await
    }

    async fn next_due_at(&self) -> Result<Option<Timestamp>> {
        self.read("next_due_at", query::next_due_at).await
    }

    async fn note(&self, note: JournalNote) -> Result<bool> {
        note.validate()?;
        self.write("note", move |c| write::note(c, &note)).await
    }
}

#[async_trait]
impl AuditQuery for SqliteAuditStore {
    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryView>> {
        let filter = filter.clone();
        self.read("deliveries", move |c| query::deliveries(c, &filter))
            .await
    }

    async fn attempts(&self, id: DeliveryId) -> Result<Vec<AttemptView>> {
        self.read("attempts", move |c| query::attempts(c, id)).await
    }

    async fn record_history(&self, stream: &str, key: &str) -> Result<RecordHistory> {
        let (stream, key) = (stream.to_owned(), key.to_owned());
        self.read("record_history", move |c| {
            query::record_history(c, &stream, &key)
        })
        .await
    }

    async fn cycles(&self, stream: &str, limit: usize) -> Result<Vec<CycleView>> {
        let stream = stream.to_owned();
        self.read("cycles", move |c| query::cycles(c, &stream, limit))
            .await
    }

    async fn destination_scope(
        &self,
        destination: &ml_core::sink::Destination,
    ) -> Result<Option<String>> {
        let d = destination.clone();
        self.read("destination scope", move |c| {
            query::destination_scope(c, &d)
        })
        .await
    }

    async fn rejected(&self, stream: Option<&str>, limit: usize) -> Result<Vec<RejectedView>> {
        let stream = stream.map(str::to_owned);
        self.read("rejected", move |c| {
            query::rejected(c, stream.as_deref(), limit)
        })
        .await
    }

    async fn stats(&self) -> Result<JournalStats> {
        self.read("stats", query::stats).await
    }

    async fn streams(&self) -> Result<Vec<String>> {
        self.read("streams", query::streams).await
    }

    async fn notes(&self, filter: &NoteFilter) -> Result<Vec<JournalNote>> {
        let filter = filter.clone();
        self.read("notes", move |c| query::notes(c, &filter)).await
    }
}
