#![doc = include_str!("../docs.md")]

mod attributes;
pub mod auth;
pub mod builder;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod model;
pub mod resource;
pub mod source;

pub use auth::JwtSigningKey;
pub use builder::{OracleFusionBuilder, OracleFusionConfigKey};
pub use error::{OracleFusionError, parse_error};
pub use ml_core::cursor::Paging;
pub use resource::{AccountSegments, LineSpec, OracleResource, ResourceSpec};
pub use source::OracleFusionSource;
