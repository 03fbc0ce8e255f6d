//! Background WAL checkpoints: a thread with its own connection copies committed WAL
//! frames into the database file while the writer goes on, instead of the writer doing it
//! inside a commit (SQLite's auto-checkpoint runs in the commit that crosses the
//! threshold, holding the journal's write lock for the copy and its fsyncs).
//!
//! `PASSIVE` checkpoints never wait for readers or the writer and never block them. The
//! writer keeps a high auto-checkpoint threshold as a fallback, so the WAL stays bounded
//! even if this thread falls behind. Durability is unchanged: a checkpoint only copies
//! what is already committed in the WAL, and a crash in the middle of one is recovered
//! by SQLite from the WAL.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// The writer's own auto-checkpoint threshold, in pages (about 32 MB of WAL): only reached
/// when the background checkpoints fall behind.
pub(crate) const WRITER_AUTOCHECKPOINT: u32 = 8_000;

/// Checkpoints at least this often while the journal is open, even without a nudge.
const PERIOD: Duration = Duration::from_secs(1);

/// After a checkpoint, the nudges of this long are answered by one checkpoint. At
/// hundreds of commits a second, a checkpoint per commit copies the same hot pages (the
/// tails of tables and indexes) again and again and fsyncs twice each time; gathered,
/// each page is copied once per gap. The WAL then holds at most this long of commits
/// (and the writer's fallback threshold bounds it in any case).
const MIN_GAP: Duration = Duration::from_millis(25);

/// The background checkpointer of one journal file. Dropping it stops the thread (after
/// the checkpoint in progress, if any).
pub(crate) struct Checkpointer {
    nudge: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread with a new connection to `path`. `None` when the thread or the
    /// connection cannot be had: the writer's auto-checkpoint then does the work, as
    /// SQLite does by default.
    pub(crate) fn start(path: &Path, busy_timeout: Duration, label: &str) -> Option<Self> {
        let conn = match Connection::open(path) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(journal = label, error = %e, "no background checkpoints");
                return None;
            }
        };
        if let Err(e) = conn.busy_timeout(busy_timeout) {
            tracing::warn!(journal = label, error = %e, "no background checkpoints");
            return None;
        }
        let (nudge, nudged) = mpsc::sync_channel::<()>(1);
        let label = label.to_owned();
        let thread = std::thread::Builder::new()
            .name("ml-store-checkpoint".into())
            .spawn(move || run(&conn, &nudged, &label))
            .map_err(|e| tracing::warn!(error = %e, "no background checkpoints"))
            .ok()?;
        Some(Self {
            nudge: Some(nudge),
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint soon (after a commit); never waits.
    pub(crate) fn nudge(&self) {
        if let Some(n) = &self.nudge {
            // Full: a checkpoint is already asked for. Disconnected: the thread is gone and
            // the writer's auto-checkpoint does the work.
            let _: Result<(), TrySendError<()>> = n.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Disconnecting wakes the thread, which then exits.
        self.nudge = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(conn: &Connection, nudged: &mpsc::Receiver<()>, label: &str) {
    let mut asked = false;
    loop {
        if !asked {
            match nudged.recv_timeout(PERIOD) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        if let Err(e) = done {
            // Busy or failing: the writer's fallback threshold keeps the WAL bounded.
            tracing::debug!(journal = label, error = %e, "background checkpoint skipped");
        }
        match gather(nudged, MIN_GAP) {
            Some(more) => asked = more,
            None => return,
        }
    }
}

/// Sleeps `gap` (a nudge meanwhile waits in the channel and wakes nobody), then says
/// whether any came: `Some(true)` when a checkpoint is due at once, `None` when the
/// journal is closing.
fn gather(nudged: &mpsc::Receiver<()>, gap: Duration) -> Option<bool> {
    std::thread::sleep(gap);
    match nudged.try_recv() {
        Ok(()) => Some(true),
        Err(TryRecvError::Empty) => Some(false),
        Err(TryRecvError::Disconnected) => None,
    }
}
