//! [`KeyWalk`]: the api1 cursor. api1 pages by key whatever the `orderBy` (`$next` is
//! `key=gt.<last key>`), so a window on the update stamp is walked in key order.
//!
//! Why not the usual (stamp, key) scan: following `$next` of a query ordered by
//! `UPDDATTIM` continues after the last row's *key*, skipping every row with a lower key
//! and a later stamp (a low-key row updated later). So each cycle:
//!
//! 1. **Probe**: one request, `where=UPDDATTIM ge @lo@&orderBy=UPDDATTIM desc&count=1`,
//!    gives `hi`, the latest stamp on the server now (nothing: the cycle is over).
//!    `lo` is the last cycle's `hi` minus the overlap (or the configured start).
//! 2. **Walk** the closed window `[lo, hi]` in key order, following `$links.$next` to the
//!    end. The window is fixed, so the walk is a plain key scan of a set that only changes
//!    by updates.
//! 3. The next cycle starts at `hi - overlap`.
//!
//! Why nothing is lost: a row whose stamp is in `[lo, hi]` and that is not updated during
//! the walk is read (the key scan passes every key). A row updated during the walk gets a
//! stamp at or after the probe, i.e. `>= hi`: the next window starts at `hi - overlap`, so
//! it is read then (its old version may or may not be read now; both are real versions).
//! A row committed late with a stamp no more than the overlap before `hi` is read by the
//! next window. Ties on the stamp play no part: nothing is compared by stamp between
//! pages.
//!
//! Cost: `1 + ceil(rows in window / page size)` requests a cycle; rows of the last
//! `overlap` before `hi` are read again next cycle and dropped here when already served
//! (the `seen` set; the journal's dedupe on key + stamp is the guarantee).
//!
//! Pure: [`KeyWalk::begin`] and [`KeyWalk::fold`] do no I/O, so a position can be saved,
//! the process killed, and the walk resumed exactly (the `$next` link is in the position).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use ml_core::clock;
use ml_core::cursor::{PageRow, Position};
use ml_core::error::{Error, Result};
use ml_core::source::Page;
use serde::{Deserialize, Serialize};

const FORMAT: u32 = 1;
/// Above this many served keys at the window's top, the `seen` set stops growing
/// (correctness does not depend on it).
const MAX_SEEN: usize = 2_000;

/// The decoded position of a [`KeyWalk`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkState {
    /// Format version.
    #[serde(rename = "v")]
    pub format: u32,
    /// The `hi` of the last completed walk.
    #[serde(rename = "wm", default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<Timestamp>,
    /// key -> stamp of rows served that the next window reads again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub seen: BTreeMap<String, Timestamp>,
    /// The walk in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walk: Option<Walk>,
    /// Whether the server serves the stamp without an offset (learned from the probe):
    /// `where` literals are then written as civil time in the site's zone.
    #[serde(rename = "cz", default, skip_serializing_if = "Option::is_none")]
    pub civil: Option<bool>,
}

/// A walk in progress over `[lo, hi]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Walk {
    /// The window's start (`None`: from the beginning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lo: Option<Timestamp>,
    /// The window's end: the latest stamp on the server when the walk began.
    pub hi: Timestamp,
    /// The server's `$next` link (path and query), when a page is still to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The api1 key-walk cursor (module docs).
#[derive(Clone, Debug)]
pub struct KeyWalk {
    overlap: Duration,
    start_at: Option<Timestamp>,
}

impl KeyWalk {
    /// A cursor re-reading `overlap` below the last window's end.
    pub fn new(overlap: Duration) -> Self {
        Self {
            overlap,
            start_at: None,
        }
    }

    /// Where a stream that never ran starts (default: the beginning).
    #[must_use]
    pub fn with_start_at(mut self, t: Timestamp) -> Self {
        self.start_at = Some(t);
        self
    }

    /// The overlap.
    pub fn overlap(&self) -> Duration {
        self.overlap
    }

    /// Decodes a position (`None`: a stream that never ran). Malformed:
    /// [`Error::InvalidPosition`].
    pub fn decode(&self, from: Option<&Position>) -> Result<WalkState> {
        let Some(p) = from else {
            return Ok(WalkState {
                format: FORMAT,
                ..WalkState::default()
            });
        };
        let st: WalkState = serde_json::from_value(p.as_json().clone())
            .map_err(|e| Error::InvalidPosition(format!("not a Sage X3 api1 position: {e}")))?;
        if st.format != FORMAT {
            return Err(Error::InvalidPosition(format!(
                "Sage X3 api1 position format {} is not supported (expected {FORMAT})",
                st.format
            )));
        }
        if let Some(w) = &st.walk {
            if w.lo.is_some_and(|lo| lo > w.hi) {
                return Err(Error::InvalidPosition(
                    "a window that ends before it starts".into(),
                ));
            }
            if w.next.as_deref().is_some_and(|n| !n.starts_with('/')) {
                return Err(Error::InvalidPosition(
                    "a $next link that is not a path".into(),
                ));
            }
        }
        Ok(st)
    }

    /// Encodes a state.
    pub fn encode(st: &WalkState) -> Result<Position> {
        serde_json::to_value(st)
            .map(Position::from_json)
            .map_err(|e| Error::InvalidPosition(format!("cannot encode position: {e}")))
    }

    /// Where the next window starts: the last window's end minus the overlap.
    pub fn lower_bound(&self, st: &WalkState) -> Option<Timestamp> {
        st.watermark
            .map(|w| clock::sub(w, self.overlap))
            .or(self.start_at)
    }

    /// Starts a walk up to `probed` (the latest stamp the probe found at or after
    /// [`lower_bound`](Self::lower_bound); `None`: nothing to read).
    pub fn begin(&self, st: &mut WalkState, probed: Option<Timestamp>) -> bool {
        let lo = self.lower_bound(st);
        match probed {
            Some(hi) => {
                st.walk = Some(Walk {
                    lo: lo.map(|l| l.min(hi)),
                    hi,
                    next: None,
                });
                true
            }
            None => false,
        }
    }

    /// Folds one page of the walk: drops rows already served at the same stamp, records
    /// the ones the next window reads again, and continues with `next` (the `$next` path)
    /// or ends the walk.
    pub fn fold(
        &self,
        mut st: WalkState,
        rows: Vec<PageRow>,
        next: Option<String>,
    ) -> Result<Page> {
        let Some(mut walk) = st.walk.take() else {
            return Err(Error::InvalidPosition("no walk in progress".into()));
        };
        let reread_from = clock::sub(walk.hi, self.overlap);
        let mut items = Vec::with_capacity(rows.len());
        let empty = rows.is_empty();
        for row in rows {
            if let Some(t) = row.modified_at
                && !row.key.is_empty()
            {
                if st.seen.get(&row.key) == Some(&t) {
                    continue;
                }
                if t >= reread_from && (st.seen.len() < MAX_SEEN || st.seen.contains_key(&row.key))
                {
                    st.seen.insert(row.key.clone(), t);
                }
            }
            items.push(row.item);
        }
        let more = match next {
            Some(n) if !empty => {
                walk.next = Some(n);
                st.walk = Some(walk.clone());
                true
            }
            _ => {
                st.watermark = Some(st.watermark.map_or(walk.hi, |w| w.max(walk.hi)));
                let keep_from = self.lower_bound(&st);
                if let Some(from) = keep_from {
                    st.seen.retain(|_, t| *t >= from);
                }
                false
            }
        };
        Ok(Page {
            items,
            next: Self::encode(&st)?,
            more,
            watermark: Some(st.watermark.unwrap_or(walk.hi).max(walk.hi)),
        })
    }

    /// The position of a cycle that found nothing to read (unchanged).
    pub fn idle(&self, st: &WalkState) -> Result<Page> {
        Ok(Page {
            items: Vec::new(),
            next: Self::encode(st)?,
            more: false,
            watermark: st.watermark,
        })
    }
}

#[cfg(test)]
mod tests;
