//! Helpers shared by the sandbox tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use ml_core::Source;
use ml_core::config::MapEnv;
use ml_core::cursor::Position;
use ml_core::record::{Record, SourceItem};
use ml_sage_x3::SageX3Builder;
use ml_sandbox::Emulator as _;
use ml_sandbox::sage_x3::SageX3Emulator;

/// The environment of `pairs` as a [`MapEnv`].
pub fn env(pairs: Vec<(&'static str, String)>) -> MapEnv {
    let mut m = MapEnv::new();
    for (k, v) in pairs {
        m.set(k, v);
    }
    m
}

/// An api1 builder with Basic, pointed at `e`, without retries' waiting.
pub fn rest(e: &SageX3Emulator) -> SageX3Builder {
    SageX3Builder::from_env_with(&env(e.env())).with_retry(
        ml_core::retry::RetryPolicy::default()
            .with_base_delay(std::time::Duration::from_millis(1))
            .with_max_delay(std::time::Duration::from_millis(5)),
    )
}

/// Polls until the cycle ends; the records and rejected items served, and the position.
pub async fn cycle(source: &dyn Source, mut pos: Option<Position>) -> (Vec<SourceItem>, Option<Position>) {
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let page = source.poll(pos.as_ref()).await.expect("poll");
        out.extend(page.items);
        pos = Some(page.next);
        if !page.more {
            return (out, pos);
        }
    }
    panic!("the cycle did not end");
}

/// The records among `items`.
pub fn records(items: &[SourceItem]) -> Vec<&Record> {
    items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Record(r) => Some(&**r),
            SourceItem::Rejected(_) => None,
        })
        .collect()
}

/// A shared handle.
pub fn arc<T>(t: T) -> Arc<T> {
    Arc::new(t)
}
