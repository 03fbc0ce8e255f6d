//! Stream positions and the tie-proof watermark cursor.
//!
//! Incremental reads by modification time have a classic hole: records that share the
//! boundary timestamp, records committed late with an earlier timestamp, and rows that
//! shift under offset paging when a served row is updated between two page requests.
//! [`WatermarkCursor`] closes them:
//!
//! * A cycle's forward scan starts reading at `min(watermark, cycle start) - overlap`
//!   (`>=`), so late commits up to `overlap` old are read again; the journal's dedupe on
//!   key + version removes what was already journaled. `overlap` must exceed the source's
//!   longest commit latency (a row stamped `s` is visible before the server stamps
//!   anything later than `s + overlap`).
//! * Late commits behind *any* page, not only the last one (windows and sweeps). The
//!   server's own stamps are the only clock that counts: this host's clock need not track
//!   them. Every page the forward scan reads leaves the window `[f - overlap, f]` behind its
//!   frontier `f` (its last row's time) in the position, merged with the others. The next
//!   cycle opens with a *sweep*: it reads the windows again ([`ReadPlan::within`], up to 16
//!   windows a request, paged like the forward scan: keyset or anchored offsets within
//!   them, so a window holding more rows than a page still advances), then starts its
//!   forward scan. A window's part above where that forward scan starts is dropped at the
//!   end of the cycle (the scan reads it anyway). Contract: a record that becomes visible
//!   during or after a cycle with a stamp no more than `overlap` behind any position the
//!   cursor's forward scan read in it is delivered in that cycle or the next.
//!
//!   Read cost: the rows inside the windows, once more, one cycle later, in
//!   `ceil(rows / limit)` requests or one request per 16 windows, whichever is more. For a
//!   backfill spread over time (a page spans more than `overlap`) that is the rows of the
//!   last `overlap` of each page: 2,000 rows one a minute, 50 a page, a 5-minute overlap
//!   re-read 6 rows a page, 12 % (`a_backfill_spread_over_time_is_read_about_once`). Where a
//!   page spans less than `overlap` the windows join and everything is read twice: no
//!   stamp proves those rows had committed. A steady cycle that reads one page leaves no
//!   window (its forward-scan start re-reads it); one that reads several re-reads at most
//!   the `overlap` below the next scan's start.
//!
//!   Bounded position: at most 32 windows. Beyond that (a backfill over more than about
//!   32 pages), the oldest windows the watermark is already an `overlap` past are swept at
//!   once, 16 together, and the forward scan resumes after; those rely on the commit
//!   latency bound above. If none is, the two closest windows are merged (the rows between
//!   them are read again).
//! * Within a cycle, pages continue after the last row served (the *anchor*), in one of two
//!   ways ([`Paging`]):
//!   - [`Paging::Keyset`]: `modified > t OR (modified = t AND key > anchor)`. Rows that move
//!     or vanish cannot shift this query, and no row is read twice in the scan, so a
//!     backfill of `N` rows takes exactly `ceil(N / limit)` requests (plus the next
//!     cycle's sweep). It needs a server that can express the
//!     disjunction (Oracle Fusion with `REST-Framework-Version: 2`) and that compares the
//!     timestamp exactly as it serves it. If the anchor comes back in the next page, the
//!     server keeps more precision than it serves: the cursor rewinds to the start of `t`
//!     and uses anchored offsets for the stream from then on (recorded in the position).
//!   - [`Paging::AnchoredOffset`] (the default; works with any server that filters `>=` and
//!     pages by offset): `modified >= t` with an offset equal to the anchor's index among
//!     the rows at `t`. The anchor itself is re-read as the first row of the next page; if
//!     it is not there, rows shifted (a row at `t` was updated away, deleted, or inserted)
//!     and the cursor rewinds to the start of `t` instead of skipping a row. The price is
//!     one re-read row per continuation page: `1 + ceil((N - limit) / (limit - 1))`
//!     requests for a backfill of `N`.
//! * Opaque server tokens (OData `@odata.nextLink`, `$skiptoken`) are carried as they are.
//!
//! Both modes assume the server's order is (modification time, key) ascending and that a
//! served timestamp is never later than the stored one (truncated, not rounded up).

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::error::{Error, Result};
use crate::record::SourceItem;
use crate::source::Page;

/// A stream's saved position: opaque to the pipeline and the journal, understood by the
/// stream's cursor. Stored as JSON.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(serde_json::Value);

impl Position {
    /// A position from a JSON value.
    pub fn from_json(v: serde_json::Value) -> Self {
        Self(v)
    }

    /// Parses a stored position; malformed JSON is [`Error::InvalidPosition`].
    pub fn parse(s: &str) -> Result<Self> {
        serde_json::from_str(s)
            .map(Self)
            .map_err(|e| Error::InvalidPosition(format!("not JSON: {e}")))
    }

    /// The JSON value.
    pub fn as_json(&self) -> &serde_json::Value {
        &self.0
    }

    /// The JSON text, for storage.
    pub fn to_json_string(&self) -> String {
        self.0.to_string()
    }
}

impl Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position({})", self.0)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// What the next request to the source should ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadPlan {
    /// Read records modified at or after this instant (`>=`); `None`: from the beginning.
    pub since: Option<Timestamp>,
    /// Skip this many rows of the result ordered by (modification time, key).
    pub offset: u64,
    /// A server paging token to follow instead of `since`/`offset`.
    pub token: Option<String>,
    /// Keyset continuation ([`Paging::Keyset`]): read only rows after the row with this key
    /// at `since`, i.e. `modified > since OR (modified = since AND key > after_key)`. When
    /// set, `offset` is 0.
    pub after_key: Option<String>,
    /// A sweep (module docs): read only rows whose modification time lies in one of these
    /// closed ranges, ascending and disjoint; empty: no such restriction. A source that
    /// cannot filter this way may ignore it: the cursor then stops the sweep at the first
    /// row past the last range, at the cost of reading the rows between the ranges.
    pub within: Vec<Window>,
}

/// A closed range of modification times `[lo, hi]`, stored as a two-element array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(Timestamp, Timestamp)", into = "(Timestamp, Timestamp)")]
pub struct Window {
    /// The earliest time in the range.
    pub lo: Timestamp,
    /// The latest time in the range.
    pub hi: Timestamp,
}

impl From<(Timestamp, Timestamp)> for Window {
    fn from((lo, hi): (Timestamp, Timestamp)) -> Self {
        Self { lo, hi }
    }
}

impl From<Window> for (Timestamp, Timestamp) {
    fn from(w: Window) -> Self {
        (w.lo, w.hi)
    }
}

/// How a [`WatermarkCursor`] continues a cycle from one page to the next (module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Paging {
    /// `modified >= t`, an offset, and the previous page's last row re-read and checked.
    /// Needs a page size of at least 2 (the anchor and one new row): with 1, every other
    /// step cannot be checked and a row shifting at that moment can be skipped.
    #[default]
    AnchoredOffset,
    /// `modified > t OR (modified = t AND key > k)`: no row read twice.
    Keyset,
}

/// One row as the source served it, in server order, for [`Cursor::advance`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen<'a> {
    /// The row's source key.
    pub key: &'a str,
    /// The row's version (see [`crate::Record::dedupe_version`]).
    pub version: &'a str,
    /// The row's modification time.
    pub modified_at: Timestamp,
}

/// The outcome of [`Cursor::advance`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advanced {
    /// The position after the page; saved with the page's records in one transaction.
    pub position: Position,
    /// Whether the cycle should read another page now. The cursor may ask for one more
    /// page than the server announced (after a detected shift).
    pub more: bool,
    /// Rows of the page the cursor knows were already served (by index). Dropping them is
    /// an optimisation only: the journal's dedupe is the guarantee.
    pub already_seen: Vec<usize>,
    /// The highest modification time seen so far (for the lag gauge).
    pub watermark: Option<Timestamp>,
}

/// A stream's position and how it advances.
///
/// Contract:
/// * `plan` and `advance` are pure functions of their arguments (no I/O), so a position can
///   be saved, the process killed, and the read resumed exactly.
/// * `advance` receives every row of the page, in server order, including rows the source
///   will reject (their key and time, when known), so offsets stay right.
/// * A malformed position is [`Error::InvalidPosition`], never a panic.
/// * Reading from the plan of a saved position, then deduping on key + version, neither
///   loses a record nor delivers one twice (property-tested for [`WatermarkCursor`]).
pub trait Cursor: Send + Sync + Debug {
    /// What to request next, from a saved position (`None`: the stream has never run).
    fn plan(&self, from: Option<&Position>) -> Result<ReadPlan>;

    /// Folds one served page into the position. `server_more` is the server's
    /// has-more flag, `token` its continuation token, `now` the current time.
    fn advance(
        &self,
        from: Option<&Position>,
        page: &[Seen<'_>],
        server_more: bool,
        token: Option<String>,
        now: Timestamp,
    ) -> Result<Advanced>;
}

/// The decoded state of a [`WatermarkCursor`] position.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkState {
    /// Format version of this state.
    #[serde(rename = "v")]
    pub format: u32,
    /// The highest modification time served so far.
    #[serde(rename = "wm", default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<Timestamp>,
    /// key -> version of the rows served with `modified == watermark`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub seen: BTreeMap<String, String>,
    /// When the cycle in progress started (our clock).
    #[serde(rename = "cs", default, skip_serializing_if = "Option::is_none")]
    pub cycle_start: Option<Timestamp>,
    /// When the last completed cycle started: the next cycle reads from no later than this,
    /// minus the overlap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<Timestamp>,
    /// Where the cycle in progress continues.
    #[serde(default)]
    pub mode: Mode,
    /// Set when keyset paging was seen to re-serve its anchor (the server compares more
    /// precision than it serves): the stream uses anchored offsets from then on.
    #[serde(rename = "nk", default, skip_serializing_if = "std::ops::Not::not")]
    pub keyset_unusable: bool,
    /// The windows `[frontier - overlap, frontier]` of the pages the forward scan has read,
    /// merged (module docs): swept at the start of the next cycle.
    #[serde(rename = "lw", default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
    /// The sweep in progress, if any.
    #[serde(rename = "sw", default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<Sweep>,
}

/// A sweep in progress: re-reading windows behind page frontiers (module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {
    /// The windows still to read, ascending; while sweeping, [`WatermarkState::mode`] is
    /// the continuation within them.
    #[serde(rename = "w")]
    pub windows: Vec<Window>,
    /// Where the forward scan continues when the sweep is done.
    #[serde(rename = "r")]
    pub resume: Box<Mode>,
}

/// Where a [`WatermarkCursor`] continues.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum Mode {
    /// No cycle in progress: the next read starts a cycle (with a sweep of the last
    /// cycle's windows, when it left any).
    #[default]
    Start,
    /// The forward scan of the cycle in progress starts, after its opening sweep.
    Scan {
        /// Read rows modified at or after this instant; `None`: from the beginning.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Timestamp>,
    },
    /// Continue after the anchor row.
    After {
        /// Modification time of the anchor.
        t: Timestamp,
        /// The anchor's key: the next page must start with it. `None` after a page that
        /// held nothing but the anchor (a page size of 1 cannot carry an anchor and a new
        /// row), so the next read steps past it unchecked.
        #[serde(default)]
        anchor: Option<String>,
        /// The anchor's index among the rows modified at `t`.
        index: u64,
    },
    /// Rows shifted under us: re-read every row at `t`.
    Rewind {
        /// The time to re-read from.
        t: Timestamp,
    },
    /// Follow a server token.
    Token {
        /// The token.
        token: String,
    },
}

const FORMAT: u32 = 1;
/// The most windows a position keeps (module docs).
const MAX_WINDOWS: usize = 32;
/// How many windows a pressure sweep takes at once.
const PRESSURE_SWEEP: usize = MAX_WINDOWS / 2;
/// The default number of windows one sweep request names.
const SWEEP_RANGES: usize = 16;
/// Above this many keys sharing the watermark, the `seen` set is not kept (correctness does
/// not depend on it; it only saves re-journaling).
const MAX_SEEN: usize = 10_000;

/// The tie-proof modification-time cursor. See the module docs.
#[derive(Clone, Debug)]
pub struct WatermarkCursor {
    overlap: Duration,
    start_at: Option<Timestamp>,
    paging: Paging,
    sweep_ranges: usize,
}

impl Default for WatermarkCursor {
    fn default() -> Self {
        Self::new(Duration::from_secs(300))
    }
}

impl WatermarkCursor {
    /// A cursor that re-reads `overlap` before the watermark at each cycle start.
    pub fn new(overlap: Duration) -> Self {
        Self {
            overlap,
            start_at: None,
            paging: Paging::default(),
            sweep_ranges: SWEEP_RANGES,
        }
    }

    /// How many windows one sweep request may name in [`ReadPlan::within`] (default 16,
    /// at least 1). A server that cannot express `or` needs 1.
    pub fn with_sweep_ranges(mut self, n: usize) -> Self {
        self.sweep_ranges = n.max(1);
        self
    }

    /// How pages continue within a cycle (default [`Paging::AnchoredOffset`]). The source
    /// must then honour [`ReadPlan::after_key`].
    pub fn with_paging(mut self, paging: Paging) -> Self {
        self.paging = paging;
        self
    }

    /// The configured paging.
    pub fn paging(&self) -> Paging {
        self.paging
    }

    /// Whether `st`'s next page is read by keyset.
    fn keyset_next(&self, st: &WatermarkState) -> bool {
        self.paging == Paging::Keyset
            && !st.keyset_unusable
            && matches!(
                st.mode,
                Mode::After {
                    anchor: Some(_),
                    ..
                }
            )
    }

    /// Where a stream that has never run starts (default: from the beginning).
    pub fn with_start_at(mut self, t: Timestamp) -> Self {
        self.start_at = Some(t);
        self
    }

    /// The configured overlap.
    pub fn overlap(&self) -> Duration {
        self.overlap
    }

    /// Decodes a position (a missing one is the initial state).
    pub fn decode(&self, from: Option<&Position>) -> Result<WatermarkState> {
        let Some(p) = from else {
            return Ok(WatermarkState {
                format: FORMAT,
                ..WatermarkState::default()
            });
        };
        let st: WatermarkState = serde_json::from_value(p.as_json().clone())
            .map_err(|e| Error::InvalidPosition(format!("not a watermark position: {e}")))?;
        if st.format != FORMAT {
            return Err(Error::InvalidPosition(format!(
                "watermark position format {} is not supported (expected {FORMAT})",
                st.format
            )));
        }
        if let Mode::Token { token } = &st.mode
            && token.is_empty()
        {
            return Err(Error::InvalidPosition("empty paging token".into()));
        }
        let sweep = st.sweep.as_ref().map_or(&[][..], |s| &s.windows[..]);
        if sweep.is_empty() && st.sweep.is_some() {
            return Err(Error::InvalidPosition("a sweep without windows".into()));
        }
        for w in st.windows.iter().chain(sweep) {
            if w.lo > w.hi {
                return Err(Error::InvalidPosition(format!(
                    "window [{}, {}] ends before it starts",
                    w.lo, w.hi
                )));
            }
        }
        Ok(st)
    }

    fn encode(st: &WatermarkState) -> Result<Position> {
        serde_json::to_value(st)
            .map(Position)
            .map_err(|e| Error::InvalidPosition(format!("cannot encode position: {e}")))
    }

    /// Whether a row is known to have been served already (modified at the watermark with
    /// the same version).
    pub fn is_seen(&self, st: &WatermarkState, row: &Seen<'_>) -> bool {
        st.watermark == Some(row.modified_at)
            && st.seen.get(row.key).is_some_and(|v| v == row.version)
    }

    /// Where the forward scan of a cycle starting from `st` begins.
    fn forward_since(&self, st: &WatermarkState) -> Option<Timestamp> {
        let base = match (st.watermark, st.floor) {
            (Some(w), Some(f)) => Some(w.min(f)),
            (w, _) => w,
        };
        base.map(|b| clock::sub(b, self.overlap)).or(self.start_at)
    }

    /// The windows one sweep request names.
    fn batch(&self, windows: &[Window]) -> Vec<Window> {
        windows.iter().take(self.sweep_ranges).copied().collect()
    }

    /// Adds the window behind the frontier `f` to the ascending, disjoint `windows`.
    fn add_window(&self, windows: &mut Vec<Window>, f: Timestamp) {
        windows.push(Window {
            lo: clock::sub(f, self.overlap),
            hi: f,
        });
        windows.sort_by_key(|w| w.lo);
        let mut merged: Vec<Window> = Vec::with_capacity(windows.len());
        for w in windows.drain(..) {
            match merged.last_mut() {
                Some(last) if w.lo <= last.hi => last.hi = last.hi.max(w.hi),
                _ => merged.push(w),
            }
        }
        *windows = merged;
    }

    /// Keeps at most [`MAX_WINDOWS`] windows: the oldest ones the watermark is an overlap
    /// past are swept now (the forward scan resumes after), or else the two closest
    /// windows are merged (the rows between them will be read again).
    fn relieve(&self, st: &mut WatermarkState) {
        let interruptible = st.sweep.is_none()
            && matches!(
                st.mode,
                Mode::After { .. } | Mode::Rewind { .. } | Mode::Scan { .. }
            );
        if interruptible && let Some(wm) = st.watermark {
            let settled = st
                .windows
                .iter()
                .take(PRESSURE_SWEEP)
                .take_while(|w| clock::add(w.hi, self.overlap) <= wm)
                .count();
            if settled > 0 {
                let windows: Vec<Window> = st.windows.drain(..settled).collect();
                let t = windows[0].lo;
                let resume = std::mem::replace(&mut st.mode, Mode::Rewind { t });
                st.sweep = Some(Sweep {
                    windows,
                    resume: Box::new(resume),
                });
            }
        }
        while st.windows.len() > MAX_WINDOWS {
            let closest = (0..st.windows.len() - 1)
                .min_by_key(|&i| st.windows[i + 1].lo.duration_since(st.windows[i].hi))
                .unwrap_or(0);
            let next = st.windows.remove(closest + 1);
            st.windows[closest].hi = next.hi;
        }
    }
}

impl Cursor for WatermarkCursor {
    fn plan(&self, from: Option<&Position>) -> Result<ReadPlan> {
        let st = self.decode(from)?;
        if matches!(st.mode, Mode::Start)
            && let Some(first) = st.windows.first()
        {
            // The cycle opens with the sweep of the last cycle's windows.
            return Ok(ReadPlan {
                since: Some(first.lo),
                within: self.batch(&st.windows),
                ..ReadPlan::default()
            });
        }
        let keyset = self.keyset_next(&st);
        let within = st
            .sweep
            .as_ref()
            .map(|s| self.batch(&s.windows))
            .unwrap_or_default();
        let plan = match st.mode {
            Mode::Start => ReadPlan {
                since: self.forward_since(&st),
                ..ReadPlan::default()
            },
            Mode::Scan { since } => ReadPlan {
                since,
                ..ReadPlan::default()
            },
            Mode::After { t, anchor, .. } if keyset => ReadPlan {
                since: Some(t),
                after_key: anchor,
                ..ReadPlan::default()
            },
            Mode::After { t, index, .. } => ReadPlan {
                since: Some(t),
                offset: index,
                ..ReadPlan::default()
            },
            Mode::Rewind { t } => ReadPlan {
                since: Some(t),
                ..ReadPlan::default()
            },
            Mode::Token { token } => ReadPlan {
                token: Some(token),
                ..ReadPlan::default()
            },
        };
        Ok(ReadPlan { within, ..plan })
    }

    fn advance(
        &self,
        from: Option<&Position>,
        page: &[Seen<'_>],
        server_more: bool,
        token: Option<String>,
        now: Timestamp,
    ) -> Result<Advanced> {
        let mut st = self.decode(from)?;
        if matches!(st.mode, Mode::Start) {
            st.cycle_start = Some(now);
            if let Some(first) = st.windows.first() {
                // This page is the first of the opening sweep (see `plan`).
                let resume = Mode::Scan {
                    since: self.forward_since(&st),
                };
                st.mode = Mode::Rewind { t: first.lo };
                st.sweep = Some(Sweep {
                    windows: std::mem::take(&mut st.windows),
                    resume: Box::new(resume),
                });
            }
        }
        // The windows this page's request named (see `plan`).
        let named = st
            .sweep
            .as_ref()
            .map_or(0, |s| s.windows.len().min(self.sweep_ranges));
        let keyset = self.keyset_next(&st);
        let already_seen: Vec<usize> = page
            .iter()
            .enumerate()
            .filter(|(_, r)| self.is_seen(&st, r))
            .map(|(i, _)| i)
            .collect();

        // Anchored offset: did the page start with the anchor, as planned? If not, rows at
        // the anchor's time shifted between two requests and the cursor re-reads that time
        // from its start. Keyset: the anchor must NOT come back; if it does, the server's
        // `=` does not match the timestamps it serves, and keyset paging is given up.
        let rewind_to = match (&st.mode, page.first()) {
            (
                Mode::After {
                    t,
                    anchor: Some(anchor),
                    ..
                },
                Some(_),
            ) if keyset => {
                let back = page.iter().any(|r| r.key == anchor && r.modified_at == *t);
                if back {
                    tracing::warn!(
                        at = %t,
                        "keyset page re-served its anchor: the server compares timestamps \
                         more precisely than it serves them; using anchored offsets"
                    );
                    st.keyset_unusable = true;
                }
                back.then_some(*t)
            }
            (
                Mode::After {
                    t,
                    anchor: Some(anchor),
                    ..
                },
                Some(first),
            ) if first.key != anchor || first.modified_at != *t => Some(*t),
            _ => None,
        };

        // The run of rows at the page's last timestamp, and the last row's index in it.
        let mut run: Option<(Timestamp, u64)> = None;
        for (i, row) in page.iter().enumerate() {
            run = Some(match (&st.mode, run) {
                // The first row of a continuation page sits at `index` among the rows at
                // `t` (the re-read anchor), or just after it under keyset paging (an
                // unanchored step may already have crossed to a later time).
                (Mode::After { t, index, .. }, None)
                    if i == 0 && rewind_to.is_none() && row.modified_at == *t =>
                {
                    (*t, if keyset { index + 1 } else { *index })
                }
                (_, Some((t, n))) if row.modified_at == t => (t, n + 1),
                _ => (row.modified_at, 0),
            });
            match st.watermark {
                Some(w) if row.modified_at < w => {}
                Some(w) if row.modified_at == w => {
                    if st.seen.len() < MAX_SEEN {
                        st.seen.insert(row.key.to_owned(), row.version.to_owned());
                    }
                }
                _ => {
                    st.watermark = Some(row.modified_at);
                    st.seen.clear();
                    st.seen.insert(row.key.to_owned(), row.version.to_owned());
                }
            }
        }

        let token = token.filter(|t| !t.is_empty());
        let server_more = server_more && (!page.is_empty() || token.is_some());
        let next = if let Some(t) = rewind_to {
            Mode::Rewind { t }
        } else if !server_more {
            Mode::Start
        } else if let Some(token) = token {
            Mode::Token { token }
        } else if let (Some((t, index)), Some(last)) = (run, page.last()) {
            let only_anchor = !keyset
                && page.len() == 1
                && matches!(
                    &st.mode,
                    Mode::After {
                        anchor: Some(_),
                        ..
                    }
                );
            if only_anchor {
                Mode::After {
                    t,
                    anchor: None,
                    index: index + 1,
                }
            } else {
                Mode::After {
                    t,
                    anchor: Some(last.key.to_owned()),
                    index,
                }
            }
        } else {
            Mode::Start
        };
        let frontier = page.last().map(|r| r.modified_at);
        if let Some(mut sweep) = st.sweep.take() {
            // Windows the sweep has read past are done; when the request is exhausted,
            // every window it named is.
            if matches!(next, Mode::Start) {
                sweep.windows.drain(..named.min(sweep.windows.len()));
            } else if let Some(f) = frontier {
                sweep.windows.retain(|w| w.hi >= f);
            }
            st.mode = match sweep.windows.first() {
                None => *sweep.resume,
                Some(first) => {
                    let mode = if matches!(next, Mode::Start) {
                        Mode::Rewind { t: first.lo }
                    } else {
                        next
                    };
                    st.sweep = Some(sweep);
                    mode
                }
            };
        } else {
            if let Some(f) = frontier {
                self.add_window(&mut st.windows, f);
            }
            st.mode = next;
            if matches!(st.mode, Mode::Start) {
                st.floor = st.cycle_start.take().or(st.floor);
                // The next forward scan reads everything from its start again: the part of
                // a window above it needs no sweep.
                match self.forward_since(&st) {
                    Some(since) => {
                        st.windows.retain(|w| w.lo < since);
                        for w in &mut st.windows {
                            w.hi = w.hi.min(since);
                        }
                    }
                    None => st.windows.clear(),
                }
            } else if st.windows.len() > MAX_WINDOWS {
                self.relieve(&mut st);
            }
        }
        Ok(Advanced {
            position: Self::encode(&st)?,
            more: !matches!(st.mode, Mode::Start),
            already_seen,
            watermark: st.watermark,
        })
    }
}

/// One served row for [`fold_page`]: what the cursor needs and the item the page carries.
#[derive(Clone, Debug)]
pub struct PageRow {
    /// The row's source key (for a rejected item: whatever identifies it, may be empty).
    pub key: String,
    /// The row's version (see [`crate::Record::dedupe_version`]).
    pub version: String,
    /// The row's modification time, when it could be read.
    pub modified_at: Option<Timestamp>,
    /// The item: a record or a rejected item.
    pub item: SourceItem,
}

/// Folds one served page into a [`Page`]: the shared tail of every cursor-driven source.
///
/// Contract:
/// * `rows` are every row the server returned, in server order, rejected items included;
///   `plan` is the plan the request was built from (`cursor.plan(from)`).
/// * A row without a modification time borrows its predecessor's (the first one
///   `plan.since`, or the epoch), so the times the cursor sees never go back and offsets
///   stay right.
/// * The cursor advances with `server_more` and `token` (an empty token is none) at `now`;
///   rows it knows were already served are dropped (an optimisation: the journal's dedupe
///   is the guarantee), the others keep their order.
/// * Pure: no I/O. Errors are the cursor's ([`Error::InvalidPosition`]).
pub fn fold_page(
    cursor: &dyn Cursor,
    from: Option<&Position>,
    plan: &ReadPlan,
    rows: Vec<PageRow>,
    server_more: bool,
    token: Option<String>,
    now: Timestamp,
) -> Result<Page> {
    let mut last = plan.since.unwrap_or(Timestamp::UNIX_EPOCH);
    let times: Vec<Timestamp> = rows
        .iter()
        .map(|r| {
            if let Some(t) = r.modified_at {
                last = t;
            }
            last
        })
        .collect();
    let seen: Vec<Seen<'_>> = rows
        .iter()
        .zip(&times)
        .map(|(r, t)| Seen {
            key: &r.key,
            version: &r.version,
            modified_at: *t,
        })
        .collect();
    let adv = cursor.advance(from, &seen, server_more, token, now)?;
    drop(seen);
    let mut dropped = adv.already_seen;
    dropped.sort_unstable();
    let items = rows
        .into_iter()
        .enumerate()
        .filter(|(i, _)| dropped.binary_search(i).is_err())
        .map(|(_, r)| r.item)
        .collect();
    Ok(Page {
        items,
        next: adv.position,
        more: adv.more,
        watermark: adv.watermark,
    })
}

#[cfg(test)]
mod tests;
