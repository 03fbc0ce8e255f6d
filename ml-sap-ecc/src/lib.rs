//! SAP ECC source for ml-connector (docs pending).

pub mod client;
pub mod error;
pub mod idoc;
pub mod odata;
pub mod options;
pub mod read_table;
pub mod rfc;
pub mod soap;

pub use client::RfcClient;
pub use error::SapEccError;
pub use read_table::{CodePage, RfcReadTable};
pub use rfc::{RfcCall, RfcError, RfcErrorKind, RfcResponse, RfcRow, RfcTransport, RfcValue};
pub use soap::SoapRfcTransport;
