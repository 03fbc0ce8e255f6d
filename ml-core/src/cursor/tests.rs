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
        }
    }

    /// Reads one page; returns whether the cycle goes on.
    fn page(&mut self, table: &Table, limit: usize, now: i64) -> bool {
        let plan = self.cursor.plan(self.pos.as_ref()).expect("plan");
        let served = table.query(&plan, limit);
        self.calls += 1;
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
    Insert { lag: i64 },
    Update { pick: usize },
    Delete { pick: usize },
    Tick { secs: i64 },
    Read,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0i64..=3).prop_map(|l| Op::Insert { lag: if l == 3 { 20 } else { l } }),
        2 => any::<usize>().prop_map(|pick| Op::Update { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Delete { pick }),
        2 => (0i64..=2).prop_map(|secs| Op::Tick { secs }),
        5 => Just(Op::Read),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Over random histories with ties (the clock often does not move), late commits (up to
    /// the overlap), edits of served rows and deletions, interleaved with page reads at any
    /// point: after the writes stop, every row's current version is journaled, and the
    /// journal never holds a (key, version) twice (it is a set; the cursor's `already_seen`
    /// is checked against it in `Reader::page`).
    #[test]
    fn no_record_is_lost(
        ops in prop::collection::vec(op(), 1..160),
        limit in 1usize..6,
        keyset in any::<bool>(),
    ) {
        const OVERLAP: i64 = 20;
        let mut table = Table::default();
        let paging = if keyset { Paging::Keyset } else { Paging::AnchoredOffset };
        // Anchored offsets need room for the anchor and one new row (see `Paging`).
        let limit = if keyset { limit } else { limit.max(2) };
        let mut r = Reader::with_paging(OVERLAP as u64, paging);
        let mut clock = 1_000i64;
        let mut next_key = 0u32;
        for op in ops {
            match op {
                Op::Insert { lag } => {
                    table.rows.insert(next_key, (1, clock - lag));
                    next_key += 1;
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
                Op::Tick { secs } => clock += secs,
                Op::Read => {
                    r.page(&table, limit, clock);
                }
                _ => {}
            }
        }
        // Writes stop; let the commit latency pass, then poll two full cycles.
        clock += OVERLAP + 1;
        r.cycle(&table, limit, clock);
        r.cycle(&table, limit, clock + 1);
        let missing = r.missing(&table);
        prop_assert!(missing.is_empty(), "lost: {:?}", missing);
    }
}
