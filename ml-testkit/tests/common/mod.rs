//! The Oracle Fusion -> Slack pipeline of the cross-connector tests (the Oracle helpers
//! come from ml-oracle-fusion's own test helpers, included as `oracle`).
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use ml_core::clock::TokioClock;
use ml_core::limiter::{GcraLimiter, Quota};
use ml_core::routing::Router;
use ml_core::sink::Sink;
use ml_core::{Pipeline, Schedule, Stream};
use ml_oracle_fusion::OracleFusionSource;

/// The end-to-end pipeline of the tests: one `invoices` stream from `source`, an in-memory
/// SQLite journal, `sink` as `slack`, Slack's 1 message/s per channel as a GCRA limit, on
/// `clock` (tokio's, so paused tests run in virtual time).
pub fn slack_pipeline(
    source: OracleFusionSource,
    router: Router,
    sink: Arc<dyn Sink>,
    clock: Arc<TokioClock>,
    max_in_flight: Option<usize>,
) -> Pipeline {
    let limiter = GcraLimiter::builder()
        .prefix(
            "slack:",
            Quota::per_second(1).expect("q").burst(1).expect("b"),
        )
        .build();
    let mut b = Pipeline::builder()
        .store(Arc::new(
            ml_store::SqliteBuilder::new()
                .in_memory()
                .build()
                .expect("journal"),
        ))
        .stream(Stream::new(
            "invoices",
            Arc::new(source),
            Schedule::every(Duration::from_secs(600)).expect("schedule"),
        ))
        .router(router)
        .sink("slack", sink)
        .limiter(Arc::new(limiter))
        .clock(clock);
    if let Some(n) = max_in_flight {
        b = b.max_in_flight(n);
    }
    b.build().expect("pipeline")
}
