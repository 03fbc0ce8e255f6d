//! `SqliteAuditStore` against the reference `MemoryAuditStore`: the same pseudo-random
//! sequence of operations (large pages with duplicates inside and across pages, claims,
//! every attempt outcome, crashes, replays, callbacks) must give the same answers.

mod history;

use std::sync::Arc;

use ml_core::audit::AuditStore;
use ml_core::memory::MemoryAuditStore;
use ml_store::SqliteAuditStore;

async fn run(seed: u64, s: Arc<dyn AuditStore>) {
    let m: Arc<dyn AuditStore> = Arc::new(MemoryAuditStore::new());
    history::differential(seed, m, s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_answers_like_the_memory_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    for seed in 1..=12u64 {
        let path = dir.path().join(format!("diff-{seed}.db"));
        let s = Arc::new(SqliteAuditStore::open(path).expect("open"));
        run(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), s).await;
    }
    // And once in memory.
    let s = Arc::new(SqliteAuditStore::open_in_memory().expect("open"));
    run(77, s).await;
}
