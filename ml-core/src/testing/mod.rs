//! Conformance suites (feature `testing`). Every implementation of a core trait runs the
//! matching suite: the in-memory ones in this crate, the durable journal in `ml-store`,
//! every connector's source and sink against its sandbox emulator. Test doubles that fail
//! on purpose live in [`crate::memory`] ([`crate::memory::SinkFault`],
//! [`crate::memory::MemorySource::fail_next`]).

pub mod audit;
pub mod audit_notes;
pub mod audit_runs;
pub mod credential;
pub mod replay;
pub mod sink;
pub mod source;

pub use crate::limiter_conformance as limiter;
pub use audit::audit_store_conformance;
pub use credential::credential_store_conformance;
pub use replay::replay_cache_conformance;
pub use sink::{InjectedFault, SinkFaultInjector, sink_conformance, sink_fault_conformance};
pub use source::{SourceExpectations, source_conformance};
