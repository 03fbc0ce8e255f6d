use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;

use super::*;

/// A table ordered by (modified, key), served with `>= since`, offset and limit, the way
/// Oracle Fusion / IFS / Sage X3 serve their REST collections.
#[derive(Default)]
struct Table {
    rows: BTreeMap<u32, (u32, i64)>, // key -> (version, modified seconds)
    /// Stored times are milliseconds, served truncated to seconds (a server that keeps more
    /// precision than it shows); `rows` then hold milliseconds.
    hidden_millis: bool,
    /// Transactions stamped at their start and not committed yet: invisible to reads.
    pending: Vec<(u32, (u32, i64))>,
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).expect("ts")
}

fn key(k: u32) -> String {
    format!("k{k:05}")
}

struct Served {
    rows: Vec<(String, String, Timestamp)>,
    more: bool,
}

impl Table {
    fn stored(&self, m: i64) -> Timestamp {
        if self.hidden_millis {
            Timestamp::from_millisecond(m).expect("ts")
        } else {
            t(m)
        }
    }

    fn served(&self, m: i64) -> Timestamp {
        if self.hidden_millis {
            t(m.div_euclid(1000))
        } else {
            t(m)
        }
    }

    /// Commits the pending transactions stamped before `t`.
    fn commit_older_than(&mut self, t: i64) {
        let (old, young): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|(_, (_, m))| *m < t);
        self.pending = young;
        self.rows.extend(old);
    }

    fn query(&self, plan: &ReadPlan, limit: usize) -> Served {
        let mut all: Vec<(i64, u32, u32)> = self
            .rows
            .iter()
            .map(|(k, (v, m))| (*m, *k, *v))
            .filter(|(m, k, _)| match (plan.since, &plan.after_key) {
                (None, _) => true,
                (Some(s), None) => self.stored(*m) >= s,
                (Some(s), Some(after)) => {
                    let at = self.stored(*m);
                    at > s || (at == s && key(*k) > *after)
                }
            })
            .filter(|(m, _, _)| {
                let at = self.stored(*m);
                plan.within.is_empty() || plan.within.iter().any(|w| w.lo <= at && at <= w.hi)
            })
            .collect();
        all.sort_unstable();
        let offset = plan.offset as usize;
        let rows: Vec<_> = all
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(m, k, v)| (key(*k), v.to_string(), self.served(*m)))
            .collect();
        Served {
            more: all.len() > offset + limit,
            rows,
        }
    }
}

struct Reader {
    cursor: WatermarkCursor,
    pos: Option<Position>,
    journal: HashSet<(String, String)>,
    calls: usize,
    dupes: usize,
    /// Rows served, re-reads included.
    rows_read: usize,
    /// The stamp of the last row served (seconds).
    last_frontier: i64,
}

impl Reader {
    fn new(overlap_secs: u64) -> Self {
        Self::with_paging(overlap_secs, Paging::AnchoredOffset)
    }

    fn with_paging(overlap_secs: u64, paging: Paging) -> Self {
        Self {
            cursor: WatermarkCursor::new(Duration::from_secs(overlap_secs)).with_paging(paging),
            pos: None,
            journal: HashSet::new(),
            calls: 0,
            dupes: 0,
            rows_read: 0,
            last_frontier: 0,
        }
    }

    /// Reads one page; returns whether the cycle goes on.
    fn page(&mut self, table: &Table, limit: usize, now: i64) -> bool {
        let plan = self.cursor.plan(self.pos.as_ref()).expect("plan");
        let served = table.query(&plan, limit);
        self.calls += 1;
        self.rows_read += served.rows.len();
        if let Some((_, _, m)) = served.rows.last() {
            self.last_frontier = m.as_second();
        }
        let seen: Vec<Seen<'_>> = served
            .rows
            .iter()
            .map(|(k, v, m)| Seen {
                key: k,
                version: v,
                modified_at: *m,
            })
            .collect();
        let adv = self
            .cursor
            .advance(self.pos.as_ref(), &seen, served.more, None, t(now))
            .expect("advance");
        for (i, (k, v, _)) in served.rows.iter().enumerate() {
            let fresh = self.journal.insert((k.clone(), v.clone()));
            if !fresh {
                self.dupes += 1;
            }
            if adv.already_seen.contains(&i) {
                assert!(!fresh, "cursor claimed {k}@{v} was served, but it was not");
            }
        }
        // A saved position survives a round trip through its text form.
        let text = adv.position.to_json_string();
        self.pos = Some(Position::parse(&text).expect("parse"));
        adv.more
    }

    fn cycle(&mut self, table: &Table, limit: usize, now: i64) {
        let mut guard = 0;
        while self.page(table, limit, now) {
            guard += 1;
            assert!(guard < 10_000, "cycle does not terminate");
        }
    }

    fn missing(&self, table: &Table) -> Vec<String> {
        table
            .rows
            .iter()
            .filter(|(k, (v, _))| !self.journal.contains(&(key(**k), v.to_string())))
            .map(|(k, (v, m))| format!("{}@{v} (t={m})", key(*k)))
            .collect()
    }
}

#[test]
fn keyset_paging_reads_each_row_once_in_ceil_n_over_limit_requests() {
    let mut table = Table::default();
    // Ties across every page boundary: 23 rows over 4 timestamps.
    for k in 0..23 {
        table.rows.insert(k, (1, 100 + i64::from(k / 6)));
    }
    for limit in 1..=8 {
        let mut r = Reader::with_paging(0, Paging::Keyset);
        r.cycle(&table, limit, 200);
        assert!(r.missing(&table).is_empty(), "{:?}", r.missing(&table));
        assert_eq!(r.dupes, 0, "limit {limit}");
        assert_eq!(r.calls, 23usize.div_ceil(limit), "limit {limit}");
    }
    // The anchored mode pays one re-read row per continuation page.
    let mut r = Reader::new(0);
    r.cycle(&table, 5, 200);
    assert_eq!(r.calls, 1 + (23usize - 5).div_ceil(4));
}

#[test]
fn keyset_plan_names_the_anchor() {
    let c = WatermarkCursor::new(Duration::ZERO).with_paging(Paging::Keyset);
    assert_eq!(c.paging(), Paging::Keyset);
    let rows = [
        Seen {
            key: "a",
            version: "1",
            modified_at: t(10),
        },
        Seen {
            key: "b",
            version: "1",
            modified_at: t(10),
        },
    ];
    let a = c.advance(None, &rows, true, None, t(20)).expect("adv");
    let plan = c.plan(Some(&a.position)).expect("plan");
    assert_eq!(plan.since, Some(t(10)));
    assert_eq!(plan.after_key.as_deref(), Some("b"));
    assert_eq!(plan.offset, 0);
    // The same position read by an anchored cursor re-reads `b` at its index.
    let plan = WatermarkCursor::new(Duration::ZERO)
        .plan(Some(&a.position))
        .expect("plan");
    assert_eq!((plan.offset, plan.after_key), (1, None));
}

#[test]
fn keyset_falls_back_when_the_server_hides_timestamp_precision() {
    let mut table = Table {
        hidden_millis: true,
        ..Table::default()
    };
    // Rows within the same served second, stored with distinct milliseconds.
    for k in 0..12 {
        table.rows.insert(k, (1, 100_000 + i64::from(k) * 7));
    }
    let mut r = Reader::with_paging(0, Paging::Keyset);
    r.cycle(&table, 4, 200);
    assert!(r.missing(&table).is_empty(), "{:?}", r.missing(&table));
    let st = r.cursor.decode(r.pos.as_ref()).expect("state");
    assert!(
        st.keyset_unusable,
        "the fallback is recorded in the position"
    );
    // Later cycles stay on anchored offsets and still lose nothing.
    for k in 12..20 {
        table.rows.insert(k, (1, 100_900 + i64::from(k)));
    }
    r.cycle(&table, 4, 201);
    r.cycle(&table, 4, 202);
    assert!(r.missing(&table).is_empty(), "{:?}", r.missing(&table));
}

#[test]
fn ties_across_page_boundaries_are_all_read() {
    let mut table = Table::default();
    for k in 0..7 {
        table.rows.insert(k, (1, 100));
    }
    for k in 7..10 {
        table.rows.insert(k, (1, 101));
    }
    let mut r = Reader::new(0);
    r.cycle(&table, 3, 200);
    assert!(r.missing(&table).is_empty(), "{:?}", r.missing(&table));
    // 10 rows, 3 per page, one anchor row re-read per continuation page.
    assert_eq!(r.calls, 5);
    // A second cycle with nothing new re-reads only the rows at the watermark.
    let before = r.journal.len();
    r.cycle(&table, 3, 201);
    assert_eq!(r.journal.len(), before);
}

#[test]
fn late_commit_needs_the_overlap() {
    for (overlap, expect_lost) in [(0, true), (30, false)] {
        let mut table = Table::default();
        table.rows.insert(1, (1, 100));
        table.rows.insert(2, (1, 110));
        let mut r = Reader::new(overlap);
        r.cycle(&table, 10, 110);
        // A transaction that stamped t=105 commits after t=110 was served.
        table.rows.insert(3, (1, 105));
        r.cycle(&table, 10, 112);
        assert_eq!(
            !r.missing(&table).is_empty(),
            expect_lost,
            "overlap {overlap}"
        );
    }
}

#[test]
fn a_commit_behind_any_page_frontier_arrives_by_the_next_cycle() {
    for paging in [Paging::Keyset, Paging::AnchoredOffset] {
        for behind_page in 1..=4usize {
            let mut table = Table::default();
            // A row every 20 s: a page of 5 spans 100 s, more than the 60 s overlap.
            for k in 0..40 {
                table.rows.insert(k, (1, 1_000 + 20 * i64::from(k)));
            }
            let mut r = Reader::with_paging(60, paging);
            let mut frontier = 0;
            for _ in 0..behind_page {
                assert!(r.page(&table, 5, 5_000));
                frontier = r.last_frontier;
            }
            // Committed now, stamped 50 s behind the frontier just read.
            table.rows.insert(100, (1, frontier - 50));
            r.cycle(&table, 5, 5_000);
            r.cycle(&table, 5, 5_001);
            assert!(
                r.missing(&table).is_empty(),
                "{paging:?}, behind page {behind_page}: {:?}",
                r.missing(&table)
            );
        }
    }
}

/// Reads cycles until one ends; returns the largest saved position (bytes).
fn largest_position(r: &mut Reader, table: &Table, limit: usize, now: i64) -> usize {
    let mut largest = 0;
    while r.page(table, limit, now) {
        largest = largest.max(r.pos.as_ref().map_or(0, |p| p.to_json_string().len()));
    }
    largest
}

#[test]
fn a_backfill_spread_over_time_is_read_about_once() {
    for paging in [Paging::Keyset, Paging::AnchoredOffset] {
        let mut table = Table::default();
        // 2,000 rows, one a minute: a page of 50 spans 50 minutes, its window 5.
        for k in 0..2_000 {
            table.rows.insert(k, (1, 100_000 + 60 * i64::from(k)));
        }
        let mut r = Reader::with_paging(300, paging);
        let mut largest = largest_position(&mut r, &table, 50, 300_000);
        largest = largest.max(largest_position(&mut r, &table, 50, 300_001));
        assert!(r.missing(&table).is_empty(), "{:?}", r.missing(&table));
        // Each window holds the 6 rows of the overlap before a page's end (of 50): about
        // an eighth of the backfill is read twice (plus anchored offsets' one row a page),
        // never all of it.
        assert!(
            r.rows_read <= 2_000 + 2_000 * 3 / 20,
            "{paging:?}: {} rows read for 2,000",
            r.rows_read
        );
        assert!(r.dupes <= 2_000 * 3 / 20, "{paging:?}: {} dupes", r.dupes);
        // The position stays small: at most 32 windows (backfill pressure sweeps early).
        assert!(largest < 3_000, "{paging:?}: a position of {largest} bytes");
        // A quiet cycle after it reads only the overlap before the watermark again.
        let before = r.rows_read;
        r.cycle(&table, 50, 300_002);
        assert!(r.rows_read - before <= 12, "{}", r.rows_read - before);
    }
}

#[test]
fn windows_holding_more_rows_than_a_page_are_swept_in_pages() {
    for paging in [Paging::Keyset, Paging::AnchoredOffset] {
        let mut table = Table::default();
        // 600 rows within one overlap (300 s): every window holds 100 pages of 3.
        for k in 0..600 {
            table.rows.insert(k, (1, 100_000 + i64::from(k) / 2));
        }
        let mut r = Reader::with_paging(300, paging);
        r.page(&table, 3, 200_000);
        r.page(&table, 3, 200_000);
        // Late commits behind the frontiers just read, and behind later ones.
        table.rows.insert(10_000, (1, 100_000));
        r.page(&table, 3, 200_000);
        table.rows.insert(10_001, (1, 100_001));
        r.cycle(&table, 3, 200_000);
        table.rows.insert(10_002, (1, 100_250));
        r.cycle(&table, 3, 200_001);
        r.cycle(&table, 3, 200_002);
        assert!(
            r.missing(&table).is_empty(),
            "{paging:?}: {:?}",
            r.missing(&table)
        );
        // Dense data: every cycle re-reads the overlap (here all of it), and the opening
        // sweeps add only the windows' part below the next forward scan (a few rows).
        // Anchored offsets re-read one row of every 3.
        let per_cycle = match paging {
            Paging::Keyset => 603,
            Paging::AnchoredOffset => 603 * 3 / 2,
        };
        assert!(
            r.rows_read <= 3 * per_cycle + 60,
            "{paging:?}: {}",
            r.rows_read
        );
    }
}

#[test]
fn positions_saved_before_sweeps_still_load() {
    let c = WatermarkCursor::new(Duration::from_secs(60));
    let old = Position::parse(
        r#"{"v":1,"wm":"2026-03-01T08:00:00Z","seen":{"a":"1"},"floor":"2026-03-01T08:00:00Z","mode":{"at":"after","t":"2026-03-01T07:59:00Z","anchor":"x","index":2}}"#,
    )
    .expect("json");
    let plan = c.plan(Some(&old)).expect("plan");
    assert_eq!((plan.since, plan.offset), (Some(t(1_772_351_940)), 2));
    assert!(plan.within.is_empty());
    let bad = Position::parse(r#"{"v":1,"lw":[["2026-03-01T08:00:00Z","2026-03-01T07:00:00Z"]]}"#)
        .expect("json");
    assert!(matches!(c.plan(Some(&bad)), Err(Error::InvalidPosition(_))));
}

#[test]
fn boundary_row_updated_between_pages_is_not_skipped() {
    let mut table = Table::default();
    for k in 0..6 {
        table.rows.insert(k, (1, 100));
    }
    let mut r = Reader::new(0);
    assert!(r.page(&table, 3, 100));
    // k0 and k1 (served) are edited: they move to t=150, and every row at t=100 shifts
    // back by two (one more than the re-read anchor row absorbs).
    table.rows.insert(0, (2, 150));
    table.rows.insert(1, (2, 150));
    r.cycle(&table, 3, 150);
    assert!(r.missing(&table).is_empty(), "{:?}", r.missing(&table));
}

#[test]
fn long_cycle_does_not_outrun_late_commits() {
    let mut table = Table::default();
    for k in 0..20 {
        table.rows.insert(k, (1, 1_000 + i64::from(k)));
    }
    let mut r = Reader::new(10);
    // The cycle starts at t=1000 and reads two pages.
    assert!(r.page(&table, 5, 1_000));
    assert!(r.page(&table, 5, 1_001));
    // Behind the scan, a late commit stamped t=1002 appears.
    table.rows.insert(100, (1, 1_002));
    // Rows keep arriving while the cycle runs, pushing the watermark far ahead.
    for k in 20..40 {
        table.rows.insert(k, (1, 1_000 + i64::from(k) * 10));
    }
    r.cycle(&table, 5, 1_400);
    r.cycle(&table, 5, 1_401);
    assert!(r.missing(&table).is_empty(), "{:?}", r.missing(&table));
}

#[test]
fn token_paging_is_followed_then_dropped() {
    let c = WatermarkCursor::new(Duration::from_secs(60));
    let rows = [Seen {
        key: "a",
        version: "1",
        modified_at: t(10),
    }];
    let a = c
        .advance(None, &rows, true, Some("skip=1".into()), t(20))
        .expect("adv");
    assert!(a.more);
    assert_eq!(
        c.plan(Some(&a.position)).expect("plan").token.as_deref(),
        Some("skip=1")
    );
    let b = c
        .advance(Some(&a.position), &[], false, None, t(21))
        .expect("adv");
    assert!(!b.more);
    let plan = c.plan(Some(&b.position)).expect("plan");
    assert_eq!(plan.token, None);
    assert_eq!(plan.since, Some(t(10 - 60)));
}

#[test]
fn malformed_positions_are_clear_errors() {
    let c = WatermarkCursor::default();
    for bad in [
        r"[1,2]",
        r#"{"v":1,"wm":"yesterday"}"#,
        r#"{"v":99}"#,
        r#"{"v":1,"mode":{"at":"token","token":""}}"#,
        r#"{"v":1,"mode":{"at":"after","t":"2026-01-01T00:00:00Z"}}"#,
    ] {
        let p = Position::parse(bad).expect("json");
        let e = c.plan(Some(&p)).expect_err(bad);
        assert!(matches!(e, Error::InvalidPosition(_)), "{bad}: {e}");
    }
    assert!(matches!(
        Position::parse("{not json"),
        Err(Error::InvalidPosition(_))
    ));
}

#[test]
fn start_at_applies_only_to_a_new_stream() {
    let c = WatermarkCursor::new(Duration::ZERO).with_start_at(t(500));
    assert_eq!(c.plan(None).expect("plan").since, Some(t(500)));
}

#[derive(Clone, Debug)]
enum Op {
    Insert {
        lag: i64,
    },
    /// A transaction stamps a row `lag` before now and commits later (see `Commit`).
    Begin {
        lag: i64,
    },
    Commit {
        pick: usize,
    },
    Update {
        pick: usize,
    },
    Delete {
        pick: usize,
    },
    Tick {
        secs: i64,
    },
    Read,
}

/// The commit latency bound of the generated histories (and the cursors' overlap).
const OVERLAP: i64 = 300;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop_oneof![Just(0i64), Just(1), Just(2), Just(OVERLAP), 0..=OVERLAP]
            .prop_map(|lag| Op::Insert { lag }),
        1 => (0i64..=2).prop_map(|lag| Op::Begin { lag }),
        1 => any::<usize>().prop_map(|pick| Op::Commit { pick }),
        2 => any::<usize>().prop_map(|pick| Op::Update { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Delete { pick }),
        3 => prop_oneof![Just(0i64), Just(1), Just(2), Just(60), Just(200)]
            .prop_map(|secs| Op::Tick { secs }),
        5 => Just(Op::Read),
    ]
}

/// Gaps between the rows already in the table when the stream starts (a backfill spread
/// over time: some pages span less than the overlap, some more).
fn backfill() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(prop_oneof![Just(0i64), 1i64..=30, 100i64..=700], 0..60)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Over random histories with ties (the clock often does not move), late commits (up
    /// to the overlap behind the server's clock, so behind any page frontier read before
    /// them, in the cycle in progress or the last one), long transactions (stamped at
    /// their start, visible at their commit up to the overlap later: several reads and
    /// clock jumps in between), edits of served rows and deletions, over a backfill spread
    /// in time, interleaved with page reads at any point, in both paging modes and with
    /// pages smaller than an overlap window: after the writes stop, every row's current
    /// version is journaled, and the journal never holds a (key, version) twice (it is a
    /// set; the cursor's `already_seen` is checked against it in `Reader::page`).
    #[test]
    fn no_record_is_lost(
        gaps in backfill(),
        ops in prop::collection::vec(op(), 1..160),
        limit in 1usize..6,
        keyset in any::<bool>(),
        skew in prop_oneof![Just(0i64), Just(10_000_000)],
    ) {
        // This host's clock need not track the server's stamps: only stamps count.
        let host = |clock: i64| clock + skew;
        let mut table = Table::default();
        let paging = if keyset { Paging::Keyset } else { Paging::AnchoredOffset };
        // Anchored offsets need room for the anchor and one new row (see `Paging`).
        let limit = if keyset { limit } else { limit.max(2) };
        let mut r = Reader::with_paging(OVERLAP as u64, paging);
        let mut next_key = 0u32;
        let mut stamp = 100_000i64;
        for gap in gaps {
            stamp += gap;
            table.rows.insert(next_key, (1, stamp));
            next_key += 1;
        }
        // The server's clock: never behind a stamp.
        let mut clock = stamp + 1;
        for op in ops {
            match op {
                Op::Insert { lag } => {
                    table.rows.insert(next_key, (1, clock - lag));
                    next_key += 1;
                }
                Op::Begin { lag } => {
                    table.pending.push((next_key, (1, clock - lag)));
                    next_key += 1;
                }
                Op::Commit { pick } if !table.pending.is_empty() => {
                    let (k, row) = table.pending.remove(pick % table.pending.len());
                    table.rows.insert(k, row);
                }
                Op::Update { pick } if !table.rows.is_empty() => {
                    let k = *table.rows.keys().nth(pick % table.rows.len()).expect("k");
                    let e = table.rows.get_mut(&k).expect("row");
                    *e = (e.0 + 1, clock);
                }
                Op::Delete { pick } if !table.rows.is_empty() => {
                    let k = *table.rows.keys().nth(pick % table.rows.len()).expect("k");
                    table.rows.remove(&k);
                }
                Op::Tick { secs } => {
                    // A transaction commits before it is an overlap old.
                    table.commit_older_than(clock + secs - OVERLAP);
                    clock += secs;
                }
                Op::Read => {
                    r.page(&table, limit, host(clock));
                }
                _ => {}
            }
        }
        // Writes stop; let the commit latency pass, then poll two full cycles.
        table.commit_older_than(i64::MAX);
        clock += OVERLAP + 1;
        r.cycle(&table, limit, host(clock));
        r.cycle(&table, limit, host(clock + 1));
        let missing = r.missing(&table);
        prop_assert!(missing.is_empty(), "lost: {:?}", missing);
    }
}
