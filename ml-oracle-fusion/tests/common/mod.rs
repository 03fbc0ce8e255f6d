//! Shared helpers of the ml-oracle-fusion integration tests (against ml-sandbox on 127.0.0.1).
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use jiff::Timestamp;
use ml_core::cursor::Position;
use ml_core::record::SourceItem;
use ml_core::retry::RetryPolicy;
use ml_core::source::Source;
use ml_oracle_fusion::{OracleFusionBuilder, OracleFusionSource};

use ml_sandbox::oracle::OracleEmulator;

pub fn t0() -> Timestamp {
    "2026-03-01T08:00:00Z".parse().expect("t0")
}

/// A builder with client credentials against the emulator.
pub fn builder(e: &OracleEmulator) -> OracleFusionBuilder {
    OracleFusionBuilder::new()
        .with_url(e.base_url())
        .with_client_credentials(e.token_url(), e.client_id(), e.client_secret())
        .with_scope("urn:opc:resource:consumer::all")
        .with_retry(
            RetryPolicy::default()
                .with_base_delay(Duration::from_millis(100))
                .with_max_attempts(10),
        )
}

pub fn source(e: &OracleEmulator, page: usize) -> OracleFusionSource {
    builder(e).with_page_size(page).build().expect("source")
}

/// Reads one whole cycle from `from`; returns (items, position, pages).
pub async fn cycle(
    s: &dyn Source,
    from: Option<Position>,
) -> (Vec<SourceItem>, Option<Position>, u64) {
    let mut pos = from;
    let mut items = Vec::new();
    let mut pages = 0;
    loop {
        let page = s.poll(pos.as_ref()).await.expect("poll");
        pages += 1;
        items.extend(page.items);
        pos = Some(page.next);
        if !page.more {
            return (items, pos, pages);
        }
    }
}

pub fn key(i: &SourceItem) -> String {
    match i {
        SourceItem::Record(r) => r.key.clone(),
        SourceItem::Rejected(x) => x.key.clone().unwrap_or_default(),
    }
}

/// Pages of a backfill of `n` rows with page size `l` under keyset paging (the default):
/// `ceil(n / l)`, one request for an empty resource.
pub fn expected_pages(n: u64, l: u64) -> u64 {
    n.div_ceil(l).max(1)
}

/// Pages of the same backfill under anchored offsets, when nothing shifts: every
/// continuation page re-reads the previous page's last row.
#[allow(dead_code)]
pub fn expected_pages_anchored(n: u64, l: u64) -> u64 {
    if n <= l {
        1
    } else {
        1 + (n - l).div_ceil(l - 1)
    }
}
