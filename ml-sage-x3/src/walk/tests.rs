use std::collections::{BTreeMap, BTreeSet};

use ml_core::record::{EntityKind, Record, SourceItem};
use proptest::prelude::*;

use super::*;

fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).expect("ts")
}

/// A model of api1: rows by key with a stamp, a server clock, `$next` by key.
struct Server {
    rows: BTreeMap<String, i64>,
    now: i64,
    /// Rows stamped but not visible yet (late commits): key -> stamp.
    pending: BTreeMap<String, i64>,
}

impl Server {
    fn probe(&self, lo: Option<Timestamp>) -> Option<Timestamp> {
        self.rows
            .values()
            .map(|s| ts(*s))
            .filter(|t| lo.is_none_or(|lo| *t >= lo))
            .max()
    }

    fn page(&self, walk: &Walk, n: usize) -> (Vec<PageRow>, Option<String>) {
        let after = walk
            .next
            .as_deref()
            .and_then(|n| n.split("key=gt.").nth(1))
            .map(str::to_owned);
        let mut hits = self.rows.iter().filter(|(k, s)| {
            let t = ts(**s);
            walk.lo.is_none_or(|lo| t >= lo)
                && t <= walk.hi
                && after.as_deref().is_none_or(|a| k.as_str() > a)
        });
        let page: Vec<(String, i64)> = hits
            .by_ref()
            .take(n)
            .map(|(k, s)| (k.clone(), *s))
            .collect();
        let more = hits.next().is_some();
        let next = match (more, page.last()) {
            (true, Some((k, _))) => Some(format!("/api1/x3/erp/SEED/PORDER?key=gt.{k}")),
            _ => None,
        };
        let rows = page
            .into_iter()
            .map(|(k, s)| PageRow {
                key: k.clone(),
                version: ts(s).to_string(),
                modified_at: Some(ts(s)),
                item: SourceItem::Record(Box::new(Record::new(
                    "s",
                    EntityKind::PurchaseOrder,
                    k,
                    ts(s),
                ))),
            })
            .collect();
        (rows, next)
    }

    fn update(&mut self, key: &str) {
        self.now += 1;
        self.rows.insert(key.to_owned(), self.now);
    }
}

/// One poll as the source does it: probe when no walk is in progress, then one page.
fn poll(cursor: &KeyWalk, server: &Server, from: Option<&Position>, n: usize) -> Page {
    let mut st = cursor.decode(from).expect("decode");
    if st.walk.is_none() {
        let probed = server.probe(cursor.lower_bound(&st));
        if !cursor.begin(&mut st, probed) {
            return cursor.idle(&st).expect("idle");
        }
    }
    let walk = st.walk.clone().expect("walk");
    let (rows, next) = server.page(&walk, n);
    cursor.fold(st, rows, next).expect("fold")
}

fn served(page: &Page, out: &mut Vec<(String, Timestamp)>) {
    for i in &page.items {
        if let SourceItem::Record(r) = i {
            out.push((r.key.clone(), r.modified_at));
        }
    }
}

#[test]
fn a_low_key_row_updated_later_is_not_skipped() {
    // Stamp order is the reverse of key order: following `$next` of a stamp-ordered query
    // would lose every row but the first page.
    let mut server = Server {
        rows: BTreeMap::new(),
        now: 0,
        pending: BTreeMap::new(),
    };
    for i in (0..10).rev() {
        server.update(&format!("PO{i:03}"));
    }
    let cursor = KeyWalk::new(Duration::from_secs(60));
    let mut pos = None;
    let mut out = Vec::new();
    let mut calls = 0;
    loop {
        calls += 1;
        let page = poll(&cursor, &server, pos.as_ref(), 3);
        served(&page, &mut out);
        pos = Some(page.next.clone());
        if !page.more {
            break;
        }
    }
    assert_eq!(calls, 4, "ceil(10 / 3) pages");
    let keys: BTreeSet<_> = out.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys.len(), 10);
    // The next cycle re-reads the overlap but serves nothing again.
    let mut again = Vec::new();
    loop {
        let page = poll(&cursor, &server, pos.as_ref(), 3);
        served(&page, &mut again);
        pos = Some(page.next.clone());
        if !page.more {
            break;
        }
    }
    assert!(again.is_empty(), "{again:?}");
    // Ties: five rows on one stamp, served exactly once across pages of 2.
    server.now += 5;
    for i in 0..5 {
        server.rows.insert(format!("TIE{i}"), server.now);
    }
    let mut out = Vec::new();
    loop {
        let page = poll(&cursor, &server, pos.as_ref(), 2);
        served(&page, &mut out);
        pos = Some(page.next.clone());
        if !page.more {
            break;
        }
    }
    assert_eq!(out.len(), 5, "{out:?}");
}

#[test]
fn malformed_positions_are_typed_errors() {
    let cursor = KeyWalk::new(Duration::from_secs(60));
    for bad in [
        serde_json::json!({"v": 2}),
        serde_json::json!({"v": 1, "walk": {"hi": "nope"}}),
        serde_json::json!({"v": 1, "walk": {"hi": "2026-01-01T00:00:00Z", "next": "http://evil/x"}}),
        serde_json::json!({"v": 1, "walk": {"lo": "2026-01-02T00:00:00Z", "hi": "2026-01-01T00:00:00Z"}}),
        serde_json::json!([1, 2]),
    ] {
        let p = Position::from_json(bad.clone());
        assert!(
            matches!(cursor.decode(Some(&p)), Err(Error::InvalidPosition(_))),
            "{bad}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random data, random updates between any two pages, late commits within the
    /// overlap, restarts from the saved position: after the updates stop, every row's last
    /// version has been served.
    #[test]
    fn every_last_version_is_served(
        initial in proptest::collection::vec(0u8..40, 0..60),
        ops in proptest::collection::vec((0u8..40, 0u8..4), 0..80),
        page_size in 1usize..7,
    ) {
        let mut server = Server { rows: BTreeMap::new(), now: 0, pending: BTreeMap::new() };
        for k in initial {
            server.update(&format!("K{k:02}"));
        }
        let cursor = KeyWalk::new(Duration::from_secs(10));
        let mut pos: Option<Position> = None;
        let mut out = Vec::new();
        let mut ops = ops.into_iter();
        let mut quiet = 0;
        while quiet < 3 {
            // A commit is visible at most 5 s after its stamp (the overlap is 10 s).
            let due: Vec<(String, i64)> = server
                .pending
                .iter()
                .filter(|(_, s)| server.now - **s >= 5)
                .map(|(k, s)| (k.clone(), *s))
                .collect();
            for (k, s) in due {
                server.pending.remove(&k);
                if server.rows.get(&k).is_none_or(|old| *old < s) {
                    server.rows.insert(k, s);
                }
            }
            // Between two pages: maybe an update, maybe a late commit becomes visible.
            match ops.next() {
                Some((k, 0)) => server.update(&format!("K{k:02}")),
                Some((k, 1)) => {
                    // Stamped now, committed (visible) a little later.
                    server.now += 1;
                    server.pending.insert(format!("K{k:02}"), server.now);
                }
                Some((_, 2)) => {
                    for (k, s) in std::mem::take(&mut server.pending) {
                        if server.rows.get(&k).is_none_or(|old| *old < s) {
                            server.rows.insert(k, s);
                        }
                    }
                }
                Some(_) => server.now += 3,
                None => {
                    for (k, s) in std::mem::take(&mut server.pending) {
                        if server.rows.get(&k).is_none_or(|old| *old < s) {
                            server.rows.insert(k, s);
                        }
                    }
                    quiet += 1;
                }
            }
            let page = poll(&cursor, &server, pos.as_ref(), page_size);
            prop_assert!(page.items.len() <= page_size);
            served(&page, &mut out);
            // Round trip through text, as the journal stores it.
            pos = Some(Position::parse(&page.next.to_json_string()).expect("parse"));
        }
        // The walk in progress, then two whole cycles that start after the last change.
        for _ in 0..3 {
            for _ in 0..10_000 {
                let page = poll(&cursor, &server, pos.as_ref(), page_size);
                served(&page, &mut out);
                pos = Some(page.next.clone());
                if !page.more {
                    break;
                }
            }
        }
        let got: BTreeSet<(String, Timestamp)> = out.iter().cloned().collect();
        for (k, s) in &server.rows {
            prop_assert!(got.contains(&(k.clone(), ts(*s))), "lost {k}@{s}");
        }
    }
}
