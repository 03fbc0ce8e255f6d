//! [`ReplayCache`] and its in-process implementation.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use jiff::Timestamp;

use super::Rejection;

/// Remembers keys (signatures, event ids, `sid/status` pairs) until they expire, so that a
/// replayed or retried webhook is recognised. Object-safe: receivers hold an
/// `Arc<dyn ReplayCache>`, and every replica receiving one sender's webhooks should share
/// one (a journal table, Redis `SET NX PX`).
///
/// Every implementation runs the conformance suite `testing::replay_cache_conformance`
/// (feature `testing`): refusal of a repeat, expiry, removal, and exactly one winner among
/// concurrent inserts of one key, through two handles (two replicas) on one cache.
#[async_trait]
pub trait ReplayCache: Send + Sync + fmt::Debug {
    /// Records `key` until `expires_at`. `Ok(true)` when it was new, `Ok(false)` when it is
    /// already held and not expired at `now`. An error refuses the request
    /// ([`Rejection::Busy`] or [`Rejection::Unavailable`]: the sender retries).
    async fn insert_if_absent(
        &self,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, Rejection>;

    /// Forgets `key` (a request that was not handed off or not applied, so that its retry
    /// gets through). Failures are logged, not returned: the worst case is a retry
    /// answered as a duplicate.
    async fn remove(&self, key: &str);

    /// Forgets every key of a request that was not applied (a batch the sender retries
    /// whole). One [`remove`](Self::remove) per key unless the cache does better.
    async fn remove_all(&self, keys: &[String]) {
        for k in keys {
            self.remove(k).await;
        }
    }
}

/// What a [`MemoryReplayCache`] does when it is full of unexpired keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnFull {
    /// Refuse new keys with [`Rejection::Busy`] (the sender retries later). Right when a
    /// forgotten key would let a replay in (signatures within a timestamp window).
    #[default]
    Refuse,
    /// Forget the key closest to expiry. Right when the cache only saves work (callbacks
    /// whose application is idempotent anyway).
    EvictOldest,
}

#[derive(Debug, Default)]
struct Entries {
    by_key: HashMap<String, (Timestamp, u64)>,
    by_expiry: BTreeSet<(Timestamp, u64, String)>,
    seq: u64,
}

impl Entries {
    fn remove(&mut self, key: &str) {
        if let Some((exp, seq)) = self.by_key.remove(key) {
            self.by_expiry.remove(&(exp, seq, key.to_owned()));
        }
    }

    fn prune(&mut self, now: Timestamp) {
        while let Some(first) = self.by_expiry.first() {
            if first.0 >= now {
                break;
            }
            if let Some((_, _, key)) = self.by_expiry.pop_first() {
                self.by_key.remove(&key);
            }
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((_, _, key)) = self.by_expiry.pop_first() {
            self.by_key.remove(&key);
        }
    }
}

/// A [`ReplayCache`] in this process's memory, bounded in size (at most `max_entries`
/// keys) and by age (a key is forgotten once it expires). Lost on restart and not shared
/// between replicas.
#[derive(Debug)]
pub struct MemoryReplayCache {
    entries: Mutex<Entries>,
    max_entries: usize,
    on_full: OnFull,
}

impl Default for MemoryReplayCache {
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl MemoryReplayCache {
    /// A cache holding at most `max_entries` (at least 1) unexpired keys, refusing new ones
    /// when full ([`OnFull::Refuse`]).
    pub fn new(max_entries: usize) -> Self {
        Self {
            entries: Mutex::new(Entries::default()),
            max_entries: max_entries.max(1),
            on_full: OnFull::Refuse,
        }
    }

    /// Sets what happens when the cache is full.
    pub fn on_full(mut self, policy: OnFull) -> Self {
        self.on_full = policy;
        self
    }

    /// How many keys are held (expired ones included until the next insert prunes them).
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_key
            .len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl ReplayCache for MemoryReplayCache {
    async fn insert_if_absent(
        &self,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, Rejection> {
        let mut e = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((exp, _)) = e.by_key.get(key) {
            if *exp >= now {
                return Ok(false);
            }
            e.remove(key);
        }
        e.prune(now);
        if e.by_key.len() >= self.max_entries {
            match self.on_full {
                OnFull::Refuse => {
                    tracing::warn!(entries = e.by_key.len(), "replay cache is full; refusing");
                    return Err(Rejection::Busy);
                }
                OnFull::EvictOldest => e.evict_oldest(),
            }
        }
        e.seq += 1;
        let seq = e.seq;
        e.by_key.insert(key.to_owned(), (expires_at, seq));
        e.by_expiry.insert((expires_at, seq, key.to_owned()));
        Ok(true)
    }

    async fn remove(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}
