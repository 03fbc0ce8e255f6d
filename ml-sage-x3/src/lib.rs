#![doc = include_str!("../docs.md")]

pub mod auth;
pub mod builder;
pub mod class;
pub mod error;
pub mod graphql;
pub mod labels;
pub mod model;
pub mod notes;
pub mod rest;
pub mod sdata;
pub mod source;
pub mod walk;

pub use builder::{Api, SageX3Builder, SageX3ConfigKey};
pub use class::{ClassSpec, FieldMap, GraphqlSpec, LineMap, X3Class};
pub use error::{SageX3Error, parse_error};
pub use graphql::SageX3GraphqlSource;
pub use labels::StatusLabels;
pub use ml_core::auth::RotationStatus;
pub use notes::JournalNotes;
pub use rest::SageX3RestSource;
pub use source::SageX3Source;
pub use walk::KeyWalk;
