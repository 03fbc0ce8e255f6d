//! What the emulator holds: the collections (stored or synthetic rows), the token issuer
//! and traps.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use jiff::{SignedDuration, Timestamp};
use ml_core::clock::Clock;
use serde_json::value::RawValue;

use super::query;
use crate::oauth2::TokenIssuer;

#[derive(Debug)]
pub(super) struct Row {
    pub(super) key: String,
    pub(super) updated: Timestamp,
    pub(super) created: Timestamp,
    pub(super) raw: Box<RawValue>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Synthetic {
    pub(super) n: u64,
    pub(super) start: Timestamp,
    pub(super) per_second: u64,
}

impl Synthetic {
    /// The `LastUpdateDate` of row `i`.
    pub(super) fn at(self, i: u64) -> Timestamp {
        self.start + SignedDuration::from_secs((i / self.per_second) as i64)
    }
}

#[derive(Debug, Default)]
pub(super) struct Collection {
    pub(super) key_attr: String,
    pub(super) rows: BTreeMap<SortKey, Row>,
    pub(super) synthetic: Option<Synthetic>,
    /// Attributes this pod's release does not have ([`super::OracleEmulator::lack_attributes`]).
    pub(super) lacking: BTreeSet<String>,
}

/// Keys sort numerically when they are numbers, else as text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum SortKey {
    Num(i64),
    Text(String),
}

impl SortKey {
    pub(super) fn of(k: &str) -> Self {
        k.parse()
            .map_or_else(|_| Self::Text(k.to_owned()), Self::Num)
    }
}

pub(super) struct Inner {
    pub(super) resources: HashMap<String, Collection>,
    /// Stored timestamps carry microseconds the served (millisecond) text does not show.
    pub(super) hidden_precision: bool,
    /// Answer a `q` with `or` with 400, like a pod whose framework cannot express it.
    pub(super) refuse_or: bool,
    /// The date-time literal forms `q` takes (empty: all).
    pub(super) date_literals: Vec<super::DateLiteralForm>,
}

impl Inner {
    /// Stores an item as given (its key and timestamps from the JSON; a missing timestamp
    /// is `now`). Returns the key.
    pub(super) fn store(
        &mut self,
        resource: &str,
        json: &str,
        now: Timestamp,
    ) -> std::result::Result<String, String> {
        let map: BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(json).map_err(|e| format!("an item is a JSON object: {e}"))?;
        let hidden_on = self.hidden_precision;
        let coll = self
            .resources
            .get_mut(resource)
            .ok_or_else(|| format!("unknown resource {resource}"))?;
        let key_raw = map
            .get(&coll.key_attr)
            .ok_or_else(|| format!("item without {}", coll.key_attr))?
            .get();
        let key = key_raw.trim_matches('"').to_owned();
        let ts = |a: &str| {
            map.get(a)
                .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
                .and_then(|s| query::parse_ts(&s))
                .unwrap_or(now)
        };
        // A database column finer than the JSON text: the row is stored some microseconds
        // after the instant it is served with (derived from the key, so it is stable).
        let hidden = if hidden_on {
            let h = key
                .bytes()
                .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            SignedDuration::from_micros(1 + (h % 998) as i64)
        } else {
            SignedDuration::ZERO
        };
        let row = Row {
            key: key.clone(),
            updated: ts("LastUpdateDate") + hidden,
            created: ts("CreationDate"),
            raw: RawValue::from_string(json.to_owned()).map_err(|e| e.to_string())?,
        };
        coll.rows.insert(SortKey::of(&key), row);
        Ok(key)
    }
}

pub(super) struct Shared {
    pub(super) clock: Arc<dyn Clock>,
    pub(super) version: String,
    pub(super) issuer: TokenIssuer,
    pub(super) user: String,
    pub(super) password: String,
    pub(super) collection_calls: AtomicU64,
    pub(super) inner: Mutex<Inner>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
