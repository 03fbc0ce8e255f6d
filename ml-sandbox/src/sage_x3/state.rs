//! What the Sage X3 emulator holds: classes with their representation's properties, rows
//! keyed by the class key, hidden (late) rows, and the token state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::value::RawValue;

/// One stored row: its properties as raw JSON (amounts keep their exact text).
#[derive(Clone, Debug)]
pub(super) struct Row {
    pub(super) props: BTreeMap<String, Box<RawValue>>,
    pub(super) stamp: Timestamp,
}

/// A class and its default representation.
#[derive(Debug)]
pub(super) struct Class {
    /// The representation served (`<name>.$query`).
    pub(super) representation: String,
    /// The key properties.
    pub(super) keys: Vec<String>,
    /// The properties of the representation's query facet.
    pub(super) properties: BTreeSet<String>,
    /// Properties this release lacks (answered with HTTP 500 when named).
    pub(super) lacking: BTreeSet<String>,
    /// Rows by key values.
    pub(super) rows: BTreeMap<Vec<String>, Row>,
    /// Rows stamped but not committed yet (invisible): a late commit.
    pub(super) hidden: BTreeMap<Vec<String>, Row>,
}

impl Class {
    pub(super) fn new(representation: &str, keys: &[&str], properties: &[&str]) -> Self {
        Self {
            representation: representation.to_owned(),
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            properties: properties.iter().map(|p| (*p).to_owned()).collect(),
            lacking: BTreeSet::new(),
            rows: BTreeMap::new(),
            hidden: BTreeMap::new(),
        }
    }

    /// Whether the representation serves `prop`.
    pub(super) fn has(&self, prop: &str) -> bool {
        self.properties.contains(prop) && !self.lacking.contains(prop)
    }
}

/// A refresh token the token API issued.
#[derive(Clone, Debug)]
pub(super) struct Refresh {
    pub(super) expires_at: Timestamp,
    pub(super) spent: bool,
}

#[derive(Debug, Default)]
pub(super) struct Tokens {
    /// Access tokens -> expiry.
    pub(super) access: HashMap<String, Timestamp>,
    /// Refresh tokens (spent ones kept to refuse their reuse).
    pub(super) refresh: HashMap<String, Refresh>,
    pub(super) next: u64,
    /// Successful renewals.
    pub(super) renewals: u64,
    /// Refused renewals (reuse of a spent token, unknown, expired).
    pub(super) refused: u64,
}

pub(super) struct Inner {
    pub(super) classes: BTreeMap<String, Class>,
    pub(super) tokens: Tokens,
    /// The zone `UPDDATTIM` is served in (UTC: with `Z`; else civil, no offset).
    pub(super) zone: TimeZone,
    /// Renewed refresh tokens get a fresh 30 days (`true`) or keep the pairing's expiry.
    pub(super) sliding: bool,
    /// Renewals say when the new refresh token expires (`refresh_token_expires_in`).
    pub(super) report_refresh_expiry: bool,
}

pub(super) fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The served text of a stamp (`2026-03-20T14:53:51Z`, or civil in a non-UTC zone).
pub(super) fn stamp_text(t: Timestamp, zone: &TimeZone) -> String {
    if zone == &TimeZone::UTC {
        t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.to_zoned(zone.clone())
            .datetime()
            .strftime("%Y-%m-%dT%H:%M:%S")
            .to_string()
    }
}

/// Reads a date-time as X3 would: with an offset as is, without one in `zone`, a bare
/// date as its midnight.
pub(super) fn parse_instant(s: &str, zone: &TimeZone) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    let civil = s.replacen(' ', "T", 1);
    let dt = civil.parse::<jiff::civil::DateTime>().ok().or_else(|| {
        civil
            .parse::<jiff::civil::Date>()
            .ok()
            .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
    })?;
    dt.to_zoned(zone.clone()).ok().map(|z| z.timestamp())
}

/// A scalar property as text (a string's content, a number's text), `None` when absent,
/// null or structured.
pub(super) fn scalar(raw: &RawValue) -> Option<String> {
    let t = raw.get().trim();
    if t.starts_with('"') {
        serde_json::from_str::<String>(t).ok()
    } else if t == "null" || t.starts_with('{') || t.starts_with('[') {
        None
    } else {
        Some(t.to_owned())
    }
}
