//! # ml-core
//!
//! The core of [ml-connector](https://docs.rs/ml-connector): the traits every connector
//! implements ([`Source`], [`Cursor`], [`Sink`], [`RateLimiter`], [`AuditStore`]), the
//! record model, routing, retry, rate limiting, auth plumbing, schedules, and the
//! [`Pipeline`] that moves ERP events to the places people watch with nothing lost and
//! nothing posted twice.
//!
//! ```
//! use std::sync::Arc;
//! use ml_core::memory::{MemoryAuditStore, MemorySink, MemorySource, SourceTable};
//! use ml_core::routing::{Condition, MatchMode, Router, Rule};
//! use ml_core::{EntityKind, Pipeline, Record, Schedule, Stream};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ml_core::Result<()> {
//! // An ERP stream (here in memory) with one new supplier invoice.
//! let table = SourceTable::default();
//! table.upsert(Record::new("Demo", EntityKind::SupplierInvoice, "INV-1", jiff::Timestamp::now()));
//! let source = MemorySource::new("invoices", EntityKind::SupplierInvoice, table);
//!
//! // Every supplier invoice goes to #procurement.
//! let router = Router::new(MatchMode::AllMatch, vec![Rule {
//!     name: "new invoices".into(),
//!     when: vec![Condition::Kind(vec![EntityKind::SupplierInvoice])],
//!     to: vec!["slack:#procurement".into()],
//! }])?;
//!
//! let slack = MemorySink::new("slack");
//! let pipeline = Pipeline::builder()
//!     .store(Arc::new(MemoryAuditStore::new()))
//!     .stream(Stream::new("invoices", Arc::new(source), Schedule::every(std::time::Duration::from_secs(300))?))
//!     .router(router)
//!     .sink("slack", Arc::new(slack.clone()))
//!     .build()?;
//!
//! let summary = pipeline.run_once().await?;
//! assert_eq!(summary.deliveries.delivered, 1);
//! assert_eq!(slack.sent()[0].rendered.text.lines().next(), Some("Supplier invoice INV-1"));
//! # Ok(()) }
//! ```
//!
//! ## Modules
//! * [`record`], [`money`]: the record model; money is `Decimal` + ISO 4217 currency.
//! * [`cursor`]: positions and the tie-proof [`cursor::WatermarkCursor`].
//! * [`source`], [`sink`], [`render`], [`audit`]: the traits and their data.
//! * [`routing`]: named rules with `explain`.
//! * [`retry`], [`limiter`], [`auth`], [`http`]: shared plumbing for connectors.
//! * [`credential`]: named secrets at rest, envelope-encrypted under a master key.
//! * [`config`]: builder plumbing (keys, env, URL policy) and pipelines from TOML.
//! * [`schedule`]: intervals, business hours, daily close, cron, in IANA time zones.
//! * [`pipeline`]: the runner.
//! * [`webhook`]: inbound webhook refusals, limits, timestamp window, replay cache
//!   (feature `axum`: a router helper).
//! * [`memory`]: in-memory implementations of every trait, with fault injection.
//! * `testing` (feature `testing`): conformance suites any implementation can run.

pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod credential;
pub mod cursor;
pub mod error;
pub mod http;
pub mod limiter;
#[cfg(any(test, feature = "testing"))]
pub mod limiter_conformance;
pub mod memory;
pub mod money;
pub mod pipeline;
pub mod record;
pub mod render;
pub mod retry;
pub mod routing;
pub mod schedule;
#[cfg(feature = "signal")]
pub mod shutdown;
pub mod sink;
pub mod source;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod webhook;

pub use audit::{AuditQuery, AuditStore, AuditStoreExt, AuditWrite};
pub use cursor::{Cursor, Position};
pub use error::{Error, ErrorClass, Result};
pub use limiter::RateLimiter;
pub use money::{Currency, Money};
pub use pipeline::{Pipeline, Stream};
pub use record::{EntityKind, RawJson, Record};
pub use schedule::Schedule;
pub use sink::{Destination, Sink};
pub use source::Source;
