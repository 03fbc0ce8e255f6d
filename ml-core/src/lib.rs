//! ml-core (being assembled).
pub mod clock;
pub mod cursor;
pub mod error;
pub mod limiter;
#[cfg(any(test, feature = "testing"))]
pub mod limiter_conformance;
pub mod money;
pub mod record;
pub mod schedule;
pub use error::{Error, ErrorClass, Result};
pub use record::Record;
