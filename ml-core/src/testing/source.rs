//! The `Source` conformance suite.

use std::collections::BTreeSet;

use crate::cursor::Position;
use crate::error::Error;
use crate::record::SourceItem;
use crate::source::Source;

/// What [`source_conformance`] needs to know about the data behind the source.
#[derive(Clone, Debug)]
pub struct SourceExpectations {
    /// How many distinct items (records and rejected items, by key) the stream holds.
    pub items: usize,
    /// The largest page the source may return.
    pub max_page: usize,
}

fn item_key(i: &SourceItem) -> String {
    match i {
        SourceItem::Record(r) => format!("r:{}@{}", r.key, r.dedupe_version()),
        SourceItem::Rejected(x) => format!("x:{}", x.identity()),
    }
}

/// Checks a source's contract: bounded pages, a full read from the start that terminates
/// and sees every item, repeatable polls from a saved (and text round-tripped) position,
/// and a typed error for a malformed position. The data must not change while it runs.
pub async fn source_conformance(source: &dyn Source, expect: &SourceExpectations) {
    assert!(
        !source.to_string().trim().is_empty(),
        "Display must name the system"
    );
    let mut seen = BTreeSet::new();
    let mut position: Option<Position> = None;
    let mut positions = Vec::new();
    let max_calls = expect
        .items
        .div_ceil(expect.max_page.saturating_sub(1).max(1))
        * 2
        + 10;
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(
            calls <= max_calls,
            "{source}: a full read did not terminate within {max_calls} polls"
        );
        let page = source
            .poll(position.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{source}: poll failed: {e}"));
        assert!(
            page.items.len() <= expect.max_page,
            "{source}: page of {} items exceeds the maximum {}",
            page.items.len(),
            expect.max_page
        );
        for i in &page.items {
            seen.insert(item_key(i));
        }
        // Positions are stored as text: the round trip must be lossless.
        let text = page.next.to_json_string();
        let back = Position::parse(&text)
            .unwrap_or_else(|e| panic!("{source}: position does not parse back: {e}"));
        assert_eq!(back, page.next, "{source}: position text round trip");
        positions.push(position.clone());
        position = Some(back);
        if !page.more {
            break;
        }
    }
    assert_eq!(
        seen.len(),
        expect.items,
        "{source}: a full read saw {} distinct items, expected {}",
        seen.len(),
        expect.items
    );
    // Polling twice from the same saved position returns the same items.
    let mid = positions.get(positions.len() / 2).cloned().flatten();
    let a = source.poll(mid.as_ref()).await.expect("poll a");
    let b = source.poll(mid.as_ref()).await.expect("poll b");
    let ka: Vec<String> = a.items.iter().map(item_key).collect();
    let kb: Vec<String> = b.items.iter().map(item_key).collect();
    assert_eq!(ka, kb, "{source}: polls from one position differ");
    assert_eq!(
        a.next, b.next,
        "{source}: positions after one position differ"
    );
    // A malformed position is a typed error, not a panic.
    let bad = Position::from_json(serde_json::json!(["not", "a", "position"]));
    match source.poll(Some(&bad)).await {
        Err(Error::InvalidPosition(_)) => {}
        other => {
            panic!("{source}: a malformed position must be Error::InvalidPosition, got {other:?}")
        }
    }
}

fn item_stamp(i: &SourceItem) -> Option<jiff::Timestamp> {
    match i {
        SourceItem::Record(r) => Some(r.modified_at),
        SourceItem::Rejected(x) => x.modified_at,
    }
}

fn item_source_key(i: &SourceItem) -> Option<&str> {
    match i {
        SourceItem::Record(r) => Some(&r.key),
        SourceItem::Rejected(x) => x.key.as_deref(),
    }
}

/// Checks the late-commit contract of a cursor-driven source (see [`crate::cursor`]): from
/// the stream's start, reads page 1 (which must not be the last), then calls `commit_late`
/// with a stamp `behind` the newest row of that page; `commit_late` must make a new record
/// with that modification time visible and return its key. The record must be delivered
/// in the rest of this cycle or in the next one. `behind` must not exceed the source's
/// overlap; the rows after page 1 should span more than the overlap, so that the end of
/// the cycle is no help.
pub async fn late_commit_conformance(
    source: &dyn Source,
    behind: std::time::Duration,
    commit_late: impl AsyncFnOnce(jiff::Timestamp) -> String,
) {
    let first = source
        .poll(None)
        .await
        .unwrap_or_else(|e| panic!("{source}: poll failed: {e}"));
    assert!(first.more, "{source}: the stream must span several pages");
    let newest = first
        .items
        .iter()
        .filter_map(item_stamp)
        .max()
        .unwrap_or_else(|| panic!("{source}: page 1 has no stamped item"));
    let key = commit_late(crate::clock::sub(newest, behind)).await;
    let mut position = Some(first.next);
    let mut delivered = false;
    for cycle in 0..2 {
        let mut calls = 0;
        loop {
            calls += 1;
            assert!(calls < 100_000, "{source}: cycle {cycle} does not end");
            let page = source
                .poll(position.as_ref())
                .await
                .unwrap_or_else(|e| panic!("{source}: poll failed: {e}"));
            delivered |= page
                .items
                .iter()
                .any(|i| item_source_key(i) == Some(key.as_str()));
            position = Some(page.next);
            if !page.more {
                break;
            }
        }
    }
    assert!(
        delivered,
        "{source}: a record committed {behind:?} behind page 1's newest row ({newest}) was \
         not delivered in that cycle or the next"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cursor::{Paging, WatermarkCursor};
    use crate::memory::{MemorySource, SourceTable};
    use crate::record::{EntityKind, Record};

    #[tokio::test]
    async fn memory_source_conforms() {
        let table = SourceTable::default();
        let t0 = jiff::Timestamp::from_second(1_800_000_000).expect("ts");
        for i in 0..23 {
            // Ties: three records per timestamp.
            let t = t0 + jiff::SignedDuration::from_secs(i / 3);
            table.upsert(Record::new(
                "Memory(x)",
                EntityKind::PurchaseOrder,
                format!("{i:03}"),
                t,
            ));
        }
        table.insert_malformed("bad", t0, serde_json::json!({"x": 1}), "no amount");
        for paging in [Paging::AnchoredOffset, Paging::Keyset] {
            let s = MemorySource::new("x", EntityKind::PurchaseOrder, table.clone())
                .with_page_size(4)
                .with_cursor(WatermarkCursor::default().with_paging(paging));
            source_conformance(
                &s,
                &SourceExpectations {
                    items: 24,
                    max_page: 4,
                },
            )
            .await;
            // 24 rows, 4 per page: keyset needs no re-read anchor rows.
            let before = s.polls();
            let mut pos = None;
            loop {
                let p = s.poll(pos.as_ref()).await.expect("poll");
                pos = Some(p.next);
                if !p.more {
                    break;
                }
            }
            let expected = match paging {
                Paging::Keyset => 6,
                Paging::AnchoredOffset => 1 + 20u64.div_ceil(3),
            };
            assert_eq!(s.polls() - before, expected, "{paging:?}");
        }
    }

    #[tokio::test]
    async fn memory_source_delivers_a_late_commit_behind_page_one() {
        for paging in [Paging::AnchoredOffset, Paging::Keyset] {
            let table = SourceTable::default();
            // Stamps from 2023: this host's clock (the cursor's cycle start) is far ahead.
            let t0 = jiff::Timestamp::from_second(1_700_000_000).expect("ts");
            // One record every 20 s, 5 a page: a page spans more than the 60 s overlap.
            for i in 0..40 {
                table.upsert(Record::new(
                    "Memory(x)",
                    EntityKind::PurchaseOrder,
                    format!("{i:03}"),
                    t0 + jiff::SignedDuration::from_secs(20 * i),
                ));
            }
            let s = MemorySource::new("x", EntityKind::PurchaseOrder, table.clone())
                .with_page_size(5)
                .with_cursor(
                    WatermarkCursor::new(std::time::Duration::from_secs(60)).with_paging(paging),
                );
            late_commit_conformance(&s, std::time::Duration::from_secs(50), async |t| {
                table.upsert(Record::new(
                    "Memory(x)",
                    EntityKind::PurchaseOrder,
                    "late",
                    t,
                ));
                "late".to_owned()
            })
            .await;
        }
    }
}
