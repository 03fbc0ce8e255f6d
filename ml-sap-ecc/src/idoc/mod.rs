//! IDoc push: an HTTP receiver for IDoc XML posted by an SAP "XML HTTP" port (WE21 port
//! -> SM59 type G destination -> our URL; WE20 partner profile), feeding the pipeline as a
//! push [`Source`](ml_core::Source).
//!
//! ```no_run
//! use std::sync::Arc;
//! use ml_sap_ecc::idoc::{IdocAuth, IdocInboxBuilder};
//!
//! # async fn demo(pipeline: ml_core::Pipeline) {
//! let inbox = IdocInboxBuilder::new(
//!     "SapEccIdoc(PRD, client=100)",
//!     IdocAuth::Basic { user: "SAPIDOC".into(), password: "from-a-secret-store".into() },
//! )
//! .build();
//! // The pipeline holds `inbox.source()` as stream "idocs"; serve `inbox.handle(request)`
//! // (or `inbox.router("/sap/idoc")` with the `axum` feature) and poll on arrival:
//! inbox.drive(&pipeline, "idocs", std::future::pending()).await;
//! # }
//! ```
//!
//! # What it does
//! * Accepts `POST` bodies up to a limit (default 4 MiB; a declared `Content-Length` over
//!   it is refused before reading), authenticated by HTTP Basic or a shared-secret header,
//!   compared in constant time. Any content type (what the port sends is unconfirmed).
//! * Parses the packet ([`parse_packet`]): the XML declaration's encoding (via
//!   `encoding_rs`), root = IDoc type, `IDOC` elements, the `EDI_DC40` control record
//!   first (`DOCNUM`, `IDOCTYP`, `MESTYP`, `SNDPRN`, `CREDAT`/`CRETIM`, ...), data segments
//!   marked `SEGMENT="1"`, nested segments. Bounded depth, element count and field length;
//!   a `DOCTYPE` is refused. Bad XML, an element at segment level not marked as a segment,
//!   a name not shaped like a segment (`E1…`, `E2…`, `Z1…`, `Y1…`), or a field holding
//!   elements: 400, nothing journaled (SAP keeps the IDoc in error status). Segments with
//!   segment-shaped names the mapping does not know are kept in the raw item.
//! * Maps ([`map_idoc`]) `ORDERS05` (`E1EDK01` `CURCY`/`BELNR`, `E1EDK02`, `E1EDKA1`
//!   partner `LF`/`AG`, `E1EDK14` `011` company code, `E1EDP01` items with `E1EDP19`
//!   material, `E1EDS01` `002` total or the items' `NETWR` sum) and `INVOIC02` (same
//!   scheme, partner `RS`/`LF`, totals `E1EDS01` `011`/`010`/`002`) to records with money
//!   as `Decimal` + currency from the exact text (SAP's trailing minus `100.00-` read as
//!   negative). Any other IDoc type, or one missing what its mapping needs, is journaled
//!   as rejected with the reason.
//! * `DOCNUM` is the idempotency key (`IDOC-<DOCNUM>`, fixed version): a re-sent IDoc is
//!   journaled once; a re-send of one already committed is answered 200 at once.
//! * 2xx only after the journal commit (see [`receiver`]'s docs for how).
//!
//! # Unconfirmed
//! * The port's `Content-Type`, whether it sends one IDoc or a packet per POST, and how
//!   it treats 503 (assumed: error status, resent by `RBDMANI2`/manual restart).
//! * INVOIC02's `E1EDS01` `SUMID` meanings and partner roles; the kind of INVOIC02 (an SD
//!   billing document is a receivable: configure `with_kind("INVOIC02", Customer)`).
//! * `CREDAT`/`CRETIM` are the SAP server's local time: set its zone.

mod map;
mod parse;
pub mod receiver;

pub use map::{IdocMapping, map_idoc, sap_number};
pub use parse::{
    ControlRecord, Idoc, MAX_DEPTH, MAX_ELEMENTS, MAX_FIELD, MAX_IDOCS, Segment, parse_packet,
};
pub use receiver::{
    DEFAULT_ACK_TIMEOUT, DEFAULT_CAPACITY, DEFAULT_MAX_BODY, IdocAuth, IdocInbox, IdocInboxBuilder,
    IdocSource,
};

/// Why an IDoc packet was refused. Converts into [`ml_core::Error`] (permanent: the same
/// bytes never parse), except [`IdocError::Busy`] (retryable).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdocError {
    /// The body is not well-formed XML (or not in its declared encoding).
    #[error("not well-formed XML: {0}")]
    Xml(String),
    /// Well-formed XML that is not an IDoc packet.
    #[error("not an IDoc packet: {0}")]
    Structure(String),
    /// The inbox holds as many uncommitted IDocs as it may.
    #[error("the IDoc inbox is full")]
    Busy,
}

impl From<IdocError> for ml_core::Error {
    fn from(e: IdocError) -> Self {
        let class = match e {
            IdocError::Busy => ml_core::ErrorClass::RETRYABLE,
            _ => ml_core::ErrorClass::Permanent,
        };
        ml_core::Error::remote("SapEccIdoc", class, e.to_string())
    }
}
