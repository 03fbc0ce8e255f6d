//! # ml-connector
//!
//! Moves business events out of ERP systems (SAP ECC, Oracle Fusion Cloud ERP, IFS Cloud,
//! Sage X3) into the places people watch (Slack, SMS, email), with nothing lost, nothing
//! posted twice, every step journaled and every failure replayable.
//!
//! This facade re-exports [`ml_core`] (always) and each connector crate behind a feature:
//!
//! | feature | crate | what |
//! |---|---|---|
//! | (always) | `ml-core` | traits, record model, routing, cursors, retry, limits, auth, pipeline |
//! | `store` (default) | `ml-store` | the durable SQLite journal ([`store::SqliteAuditStore`]) |
//! | `slack` | `ml-slack` | Slack sink, verified receiver, OAuth v2, Socket Mode |
//! | `oracle-fusion` | `ml-oracle-fusion` | Oracle Fusion Cloud ERP REST source |
//! | `twilio` | `ml-twilio` | Twilio SMS and SendGrid email sinks, verified status receivers |
//! | `sandbox` | `ml-sandbox` | in-process emulators for `sandbox = "auto"` connectors |
//! | `cli` | | the `ml-connector` command line |
//!
//! Pipelines can be described in TOML ([`config::PipelineConfig`]) and assembled with every
//! connector compiled in ([`connectors::load`]); the `ml-connector` binary (feature `cli`)
//! runs them: `ml-connector run --config examples/config/oracle_fusion_to_slack.toml`.
//!
//! ```
//! use std::sync::Arc;
//! use ml_connector::memory::{MemoryAuditStore, MemorySink, MemorySource, SourceTable};
//! use ml_connector::routing::{MatchMode, Router, Rule};
//! use ml_connector::{EntityKind, Pipeline, Record, Schedule, Stream};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ml_connector::Result<()> {
//! let table = SourceTable::default();
//! table.upsert(Record::new("Demo", EntityKind::PurchaseOrder, "PO-1", jiff::Timestamp::now()));
//! let sink = MemorySink::new("chat");
//! let pipeline = Pipeline::builder()
//!     .store(Arc::new(MemoryAuditStore::new()))
//!     .stream(Stream::new(
//!         "purchase-orders",
//!         Arc::new(MemorySource::new("erp", EntityKind::PurchaseOrder, table)),
//!         Schedule::every(std::time::Duration::from_secs(600))?,
//!     ))
//!     .router(Router::new(MatchMode::AllMatch, vec![Rule {
//!         name: "every PO".into(),
//!         when: vec![],
//!         to: vec!["chat:#operations".into()],
//!     }])?)
//!     .sink("chat", Arc::new(sink.clone()))
//!     .build()?;
//! pipeline.run_once().await?;
//! assert_eq!(sink.sent().len(), 1);
//! # Ok(()) }
//! ```

pub use ml_core::*;

pub mod connectors;
#[cfg(feature = "cli")]
pub mod serve;

/// The durable journal (feature `store`).
#[cfg(feature = "store")]
pub use ml_store as store;

/// Slack (feature `slack`).
#[cfg(feature = "slack")]
pub use ml_slack as slack;

/// Oracle Fusion Cloud ERP (feature `oracle-fusion`).
#[cfg(feature = "oracle-fusion")]
pub use ml_oracle_fusion as oracle_fusion;

/// Twilio SMS and SendGrid email (feature `twilio`).
#[cfg(feature = "twilio")]
pub use ml_twilio as twilio;

/// SAP ECC: RFC, OData v2, IDoc push (feature `sap-ecc`).
#[cfg(feature = "sap-ecc")]
pub use ml_sap_ecc as sap_ecc;

/// The SAP relay agent and host transport (feature `sap-agent`).
#[cfg(feature = "sap-agent")]
pub use ml_sap_agent as sap_agent;

/// IFS Cloud OData v4 and Slack approvals (feature `ifs`).
#[cfg(feature = "ifs")]
pub use ml_ifs as ifs;

/// Sage X3 api1 REST and GraphQL (feature `sage-x3`).
#[cfg(feature = "sage-x3")]
pub use ml_sage_x3 as sage_x3;

/// Compiles the README's examples as doc tests, so the page users start from stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
