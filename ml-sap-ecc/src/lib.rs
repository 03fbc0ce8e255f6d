#![doc = include_str!("../docs.md")]

pub mod builder;
pub mod client;
pub mod error;
// `idoc` and `odata` belong to the OData/IDoc helper: keep these two lines.
pub mod idoc;
pub mod model;
pub mod odata;
pub mod options;
pub mod read_table;
pub mod rfc;
pub mod scan;
pub mod soap;
pub mod source;

pub use builder::{SapEccBuilder, SapEccConfigKey};
pub use client::RfcClient;
pub use error::SapEccError;
pub use model::IdempotencyKey;
pub use read_table::{CodePage, RfcReadTable};
pub use rfc::{RfcCall, RfcError, RfcErrorKind, RfcResponse, RfcRow, RfcTransport, RfcValue};
pub use soap::SoapRfcTransport;
pub use source::{Category, SapEccSource};
