//! The [`ReplayCache`] conformance suite.
//!
//! Every cache runs it: the in-process [`MemoryReplayCache`](crate::webhook::MemoryReplayCache)
//! here, the journal-backed ones in `ml-store` (SQLite, PostgreSQL). It takes two handles
//! on one cache, `a` and `b`: for a shared cache they are two replicas (two processes on
//! one SQLite file, two pools on one PostgreSQL schema), so what one replica records the
//! other must see; an in-process cache passes the same `Arc` twice.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use crate::clock::add;
use crate::webhook::ReplayCache;

/// How many tasks race to insert one key.
const RACERS: usize = 16;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).expect("a valid timestamp")
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Checks the [`ReplayCache`] contract on an empty cache reached through two handles `a`
/// and `b` (see the [module documentation](self)):
///
/// * the first insert of a key is accepted and a repeat refused, on either handle;
/// * a key is held up to and including its expiry, and re-admitted once `now` is past it;
/// * `remove` and `remove_all` re-admit, across handles; removing an unknown key is a no-op;
/// * keys are distinct, case-sensitive and may be long or non-ASCII;
/// * sixteen tasks inserting one key at once, half through each handle, are answered
///   with exactly one `Ok(true)` and no error; so is the re-admission of an expired key.
///
/// Time comes only from the `now` each call passes (the receivers' injected clock).
pub async fn replay_cache_conformance(a: Arc<dyn ReplayCache>, b: Arc<dyn ReplayCache>) {
    let t = at(1_800_000_000);
    let until = add(t, secs(300));

    // First insert wins; a repeat is refused on both handles.
    assert_eq!(a.insert_if_absent("c:first", until, t).await, Ok(true));
    assert_eq!(a.insert_if_absent("c:first", until, t).await, Ok(false));
    assert_eq!(
        b.insert_if_absent("c:first", until, add(t, secs(1))).await,
        Ok(false),
        "a key recorded through one handle is held for the other"
    );

    // Held up to its expiry included, re-admitted after it, then held again.
    assert_eq!(
        b.insert_if_absent("c:first", add(until, secs(300)), until)
            .await,
        Ok(false),
        "a key is held at its expiry instant"
    );
    let later = add(until, secs(1));
    let later_until = add(later, secs(300));
    assert_eq!(
        b.insert_if_absent("c:first", later_until, later).await,
        Ok(true),
        "an expired key is re-admitted"
    );
    assert_eq!(
        a.insert_if_absent("c:first", later_until, later).await,
        Ok(false),
        "a re-admitted key is held with its new expiry"
    );
    assert_eq!(
        a.insert_if_absent("c:first", add(later_until, secs(1)), add(later, secs(10)))
            .await,
        Ok(false),
        "the new expiry, not the old one, decides"
    );

    // Distinct keys: case, length, non-ASCII.
    let long = format!("c:{}", "x".repeat(512));
    for key in ["c:First", "c:first2", "c:ü€𝄞", long.as_str()] {
        assert_eq!(
            a.insert_if_absent(key, until, t).await,
            Ok(true),
            "{key:.20} is a key of its own"
        );
        assert_eq!(b.insert_if_absent(key, until, t).await, Ok(false));
    }

    // remove re-admits, across handles; removing an unknown key does nothing.
    a.remove("c:never-inserted").await;
    assert_eq!(a.insert_if_absent("c:removed", until, t).await, Ok(true));
    b.remove("c:removed").await;
    assert_eq!(
        a.insert_if_absent("c:removed", until, t).await,
        Ok(true),
        "a removed key is re-admitted"
    );
    assert_eq!(b.insert_if_absent("c:removed", until, t).await, Ok(false));

    // remove_all re-admits every key it names and leaves the others held.
    for k in ["c:batch/1", "c:batch/2", "c:batch/3"] {
        assert_eq!(a.insert_if_absent(k, until, t).await, Ok(true));
    }
    b.remove_all(&[
        "c:batch/1".to_owned(),
        "c:batch/3".to_owned(),
        "c:batch/unknown".to_owned(),
    ])
    .await;
    b.remove_all(&[]).await;
    assert_eq!(a.insert_if_absent("c:batch/1", until, t).await, Ok(true));
    assert_eq!(a.insert_if_absent("c:batch/2", until, t).await, Ok(false));
    assert_eq!(a.insert_if_absent("c:batch/3", until, t).await, Ok(true));

    // Many tasks, one key, two handles: exactly one wins.
    let winners = race(&a, &b, "c:race", until, t).await;
    assert_eq!(
        winners, 1,
        "exactly one of {RACERS} concurrent inserts wins"
    );
    // And once it expired, exactly one re-admission wins too.
    let winners = race(&a, &b, "c:race", later_until, later).await;
    assert_eq!(
        winners, 1,
        "exactly one of {RACERS} concurrent re-admissions of an expired key wins"
    );
    assert_eq!(
        a.insert_if_absent("c:race", later_until, later).await,
        Ok(false)
    );
}

/// Inserts `key` from [`RACERS`] tasks at once, half through each handle; the number of
/// `Ok(true)` answers. An error fails the suite: a live race is not a reason to refuse.
async fn race(
    a: &Arc<dyn ReplayCache>,
    b: &Arc<dyn ReplayCache>,
    key: &'static str,
    until: Timestamp,
    now: Timestamp,
) -> usize {
    let start = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let cache = Arc::clone(if i % 2 == 0 { a } else { b });
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                cache.insert_if_absent(key, until, now).await
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        match task.await.expect("a racing task panicked") {
            Ok(true) => winners += 1,
            Ok(false) => {}
            Err(e) => panic!("a concurrent insert was refused with {e:?}"),
        }
    }
    winners
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::MemoryReplayCache;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn memory_replay_cache_conforms() {
        let cache: Arc<dyn ReplayCache> = Arc::new(MemoryReplayCache::new(64));
        replay_cache_conformance(Arc::clone(&cache), cache).await;
    }
}
