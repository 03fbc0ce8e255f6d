//! Conformance suites and test doubles (feature `testing`). Every implementation of a
//! core trait runs the matching suite: the in-memory ones in this crate, the durable
//! journal in `ml-store`, every connector's source and sink against its sandbox.

pub mod audit;

pub use crate::limiter_conformance as limiter;
pub use audit::audit_store_conformance;
