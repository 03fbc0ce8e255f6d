//! In-memory implementations of the core traits: [`MemoryAuditStore`], [`MemorySource`],
//! [`MemorySink`]. They follow the same contracts as the real ones (they run the same
//! conformance suites) and carry fault injection for tests.

mod audit;
mod sink;
mod source;

pub use audit::MemoryAuditStore;
pub use sink::{MemorySink, SentMessage, SinkFault};
pub use source::{MemorySource, SourceTable};
