//! The RFC call model and the [`RfcTransport`] trait every way of reaching SAP implements
//! (SOAP-RFC over HTTP here; a relay agent or a JCo/NCo bridge in a host).

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use ml_core::error::ErrorClass;
use serde::{Deserialize, Serialize};

/// One row of a table parameter, or the fields of a structure: field name -> value, as
/// SAP's external format text (dates `YYYYMMDD`, ALPHA keys with their leading zeros).
pub type RfcRow = BTreeMap<String, String>;

/// A parameter value. Serialisable (JSON: `{"scalar": "..."}`, ...) so that a relay
/// transport can carry calls and answers over its own connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RfcValue {
    /// A scalar (CHAR, NUMC, INT4, DATS, ...), as text.
    Scalar(String),
    /// A structure: named fields.
    Structure(RfcRow),
    /// A table: rows of named fields.
    Table(Vec<RfcRow>),
}

/// One call of a function module: its name and its parameters (imports, structures,
/// tables sent; tables to be filled are sent empty with [`RfcCall::expect_table`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RfcCall {
    function: String,
    params: Vec<(String, RfcValue)>,
}

impl RfcCall {
    /// A call of `function` (e.g. `RFC_READ_TABLE`) without parameters.
    pub fn new(function: impl Into<String>) -> Self {
        Self {
            function: function.into(),
            params: Vec::new(),
        }
    }

    /// Adds a scalar import.
    pub fn with_import(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params
            .push((name.into(), RfcValue::Scalar(value.into())));
        self
    }

    /// Adds a structure import.
    pub fn with_structure(mut self, name: impl Into<String>, fields: RfcRow) -> Self {
        self.params.push((name.into(), RfcValue::Structure(fields)));
        self
    }

    /// Adds a table parameter with rows.
    pub fn with_table(mut self, name: impl Into<String>, rows: Vec<RfcRow>) -> Self {
        self.params.push((name.into(), RfcValue::Table(rows)));
        self
    }

    /// Sends a table empty so that the server returns it filled (SOAP-RFC may leave out
    /// tables that were not sent: unconfirmed, so every table wanted back is sent).
    pub fn expect_table(self, name: impl Into<String>) -> Self {
        self.with_table(name, Vec::new())
    }

    /// The function module.
    pub fn function(&self) -> &str {
        &self.function
    }

    /// The parameters, in the order they were added.
    pub fn params(&self) -> &[(String, RfcValue)] {
        &self.params
    }

    /// A scalar import by name.
    pub fn import(&self, name: &str) -> Option<&str> {
        self.params.iter().find_map(|(n, v)| match v {
            RfcValue::Scalar(s) if n == name => Some(s.as_str()),
            _ => None,
        })
    }

    /// Replaces (or adds) a scalar import: how a smaller `ROWCOUNT` is retried.
    pub fn set_import(&mut self, name: &str, value: impl Into<String>) {
        let value = RfcValue::Scalar(value.into());
        match self.params.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value,
            None => self.params.push((name.to_owned(), value)),
        }
    }
}

/// The answer of a successful call: exports, changing parameters and tables, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RfcResponse {
    /// Every parameter the server returned.
    pub params: BTreeMap<String, RfcValue>,
}

impl RfcResponse {
    /// A scalar export (`None` when absent or not a scalar).
    pub fn export(&self, name: &str) -> Option<&str> {
        match self.params.get(name)? {
            RfcValue::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// A structure export. An empty element counts as an empty structure.
    pub fn structure(&self, name: &str) -> Option<&RfcRow> {
        static EMPTY: RfcRow = BTreeMap::new();
        match self.params.get(name)? {
            RfcValue::Structure(s) => Some(s),
            RfcValue::Scalar(s) if s.trim().is_empty() => Some(&EMPTY),
            _ => None,
        }
    }

    /// A table's rows; absent or empty tables (`<DATA/>`) are empty.
    pub fn table(&self, name: &str) -> &[RfcRow] {
        match self.params.get(name) {
            Some(RfcValue::Table(rows)) => rows,
            _ => &[],
        }
    }
}

/// What kind of RFC failure happened, following the RFC SDK's error groups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RfcErrorKind {
    /// The network, the gateway or the HTTP layer failed (`RFC_COMMUNICATION_FAILURE`):
    /// retryable with backoff.
    Communication,
    /// The logon was refused (`RFC_LOGON_FAILURE`, HTTP 401): permanent, the stream stops
    /// until the credentials are fixed.
    Logon,
    /// The function raised a named ABAP exception (`DATA_BUFFER_EXCEEDED`,
    /// `TABLE_NOT_AVAILABLE`, `NOT_AUTHORIZED`, ...): permanent for that call's input.
    AbapException(String),
    /// `SYSTEM_FAILURE` or a runtime error (short dump): retryable with backoff; when
    /// `memory` (e.g. `TSV_TNEW_PAGE_ALLOC_FAILED`) the read is retried with a smaller
    /// `ROWCOUNT`.
    SystemFailure {
        /// The dump is a memory shortage.
        memory: bool,
    },
    /// An ABAP `MESSAGE` of type E/A ended the call (`RFC_ABAP_MESSAGE`): permanent.
    AbapMessage,
    /// The function module does not exist or the service is not reachable as configured
    /// (`FU_NOT_FOUND`, HTTP 404 on an inactive ICF node): permanent.
    NotFound,
    /// The answer could not be understood (not SOAP, wrong element): retryable, as a proxy
    /// or a restarting server answers that way.
    Protocol,
    /// No route to the system right now (no relay agent connected): nothing was sent.
    /// Permanent for this call, so that [`crate::client::RfcClient`] does not retry; the
    /// host pauses the stream until the route returns.
    Unavailable,
}

impl fmt::Display for RfcErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Communication => f.write_str("communication failure"),
            Self::Logon => f.write_str("logon failure"),
            Self::AbapException(name) => write!(f, "ABAP exception {name}"),
            Self::SystemFailure { memory: true } => f.write_str("SYSTEM_FAILURE (memory)"),
            Self::SystemFailure { memory: false } => f.write_str("SYSTEM_FAILURE"),
            Self::AbapMessage => f.write_str("ABAP message"),
            Self::NotFound => f.write_str("not found"),
            Self::Protocol => f.write_str("unexpected answer"),
            Self::Unavailable => f.write_str("unavailable"),
        }
    }
}

/// A failed RFC call. The message never holds a secret or the URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{kind}: {message}")]
pub struct RfcError {
    /// What kind of failure.
    pub kind: RfcErrorKind,
    /// What the server (or the transport) said.
    pub message: String,
}

/// Runtime errors that are memory shortages (retried with a smaller `ROWCOUNT`).
const MEMORY_DUMPS: &[&str] = &[
    "TSV_TNEW_PAGE_ALLOC_FAILED",
    "TSV_TNEW_BLOCKS_NO_ROLL_MEMORY",
    "SYSTEM_NO_ROLL",
    "MEMORY_NO_MORE_PAGING",
    "SYSTEM_NO_MEMORY",
];

/// Short dumps that come back the same for the same call (a column type RFC_READ_TABLE
/// cannot cast, a value that does not convert, a WHERE literal cut short): the notes
/// class runtime failures as "usually permanent". Retrying them would only repeat the
/// dump; the stream pauses with it instead. Other runtime failures stay retryable.
const DETERMINISTIC_DUMPS: &[&str] = &[
    "ASSIGN_CASTING_ILLEGAL_CAST",
    "ASSIGN_BASE_WRONG_ALIGNMENT",
    "CONVT_NO_NUMBER",
    "CONVT_OVERFLOW",
    "CONVT_CODEPAGE",
    "SAPSQL_PARSE_ERROR",
    "Data was lost while copying a value",
];

impl RfcError {
    /// An error of `kind`.
    pub fn new(kind: RfcErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// An ABAP exception named `name`; a name that is a runtime error (a short dump, e.g.
    /// `TSV_TNEW_PAGE_ALLOC_FAILED`, which some gateways put in the fault's `detail/Name`)
    /// is a [`system_failure`](Self::system_failure) instead, so a memory dump is retried
    /// smaller rather than taken for the function's own, permanent, exception.
    pub fn abap_exception(name: impl Into<String>, message: impl Into<String>) -> Self {
        let name = name.into();
        if MEMORY_DUMPS.contains(&name.as_str()) || DETERMINISTIC_DUMPS.contains(&name.as_str()) {
            return Self::system_failure(format!("Runtime error {name}: {}", message.into()));
        }
        Self::new(RfcErrorKind::AbapException(name), message)
    }

    /// A `SYSTEM_FAILURE` / runtime error, classed as a memory dump when `message` names
    /// one.
    pub fn system_failure(message: impl Into<String>) -> Self {
        let message = message.into();
        let memory = MEMORY_DUMPS.iter().any(|d| message.contains(d));
        Self::new(RfcErrorKind::SystemFailure { memory }, message)
    }

    /// How the caller should handle it.
    pub fn class(&self) -> ErrorClass {
        match self.kind {
            RfcErrorKind::SystemFailure { memory: false } if self.is_deterministic_dump() => {
                ErrorClass::Permanent
            }
            RfcErrorKind::Communication
            | RfcErrorKind::SystemFailure { .. }
            | RfcErrorKind::Protocol => ErrorClass::RETRYABLE,
            RfcErrorKind::Logon
            | RfcErrorKind::AbapException(_)
            | RfcErrorKind::AbapMessage
            | RfcErrorKind::NotFound
            | RfcErrorKind::Unavailable => ErrorClass::Permanent,
        }
    }

    /// The ABAP exception's name, when it is one.
    pub fn exception(&self) -> Option<&str> {
        match &self.kind {
            RfcErrorKind::AbapException(n) => Some(n),
            _ => None,
        }
    }

    /// Whether this is a short dump that the same call repeats (see `DETERMINISTIC_DUMPS`):
    /// permanent, not retried.
    pub fn is_deterministic_dump(&self) -> bool {
        matches!(self.kind, RfcErrorKind::SystemFailure { .. })
            && DETERMINISTIC_DUMPS.iter().any(|d| self.message.contains(d))
    }

    /// Whether this is a memory dump (retried with a smaller `ROWCOUNT`).
    pub fn is_memory_dump(&self) -> bool {
        matches!(self.kind, RfcErrorKind::SystemFailure { memory: true })
    }

    /// A stable code for the journal (`DATA_BUFFER_EXCEEDED`, `SYSTEM_FAILURE`, ...).
    pub fn code(&self) -> &str {
        match &self.kind {
            RfcErrorKind::AbapException(n) => n,
            RfcErrorKind::Communication => "COMMUNICATION_FAILURE",
            RfcErrorKind::Logon => "LOGON_FAILURE",
            RfcErrorKind::SystemFailure { .. } => "SYSTEM_FAILURE",
            RfcErrorKind::AbapMessage => "ABAP_MESSAGE",
            RfcErrorKind::NotFound => "NOT_FOUND",
            RfcErrorKind::Protocol => "PROTOCOL",
            RfcErrorKind::Unavailable => "UNAVAILABLE",
        }
    }
}

/// Calls function modules in one SAP system.
///
/// Contract (any implementation: SOAP-RFC, a relay agent that connects out from the
/// customer network, a JCo/NCo bridge in the host):
/// * `call` performs exactly one call: no retries and no concurrency limit inside (the
///   [`crate::client::RfcClient`] around it does both, so that the cap counts every
///   attempt).
/// * Success returns every export and table the server gave; failures are an
///   [`RfcError`] classed by [`RfcErrorKind`].
/// * Object-safe and `Send + Sync`; `Debug` and [`system`](Self::system) never show a
///   secret.
#[async_trait]
pub trait RfcTransport: Send + Sync + fmt::Debug {
    /// Calls one function module.
    async fn call(&self, call: &RfcCall) -> Result<RfcResponse, RfcError>;

    /// The SAP system and client this transport reaches (`erp.example.com:8000, client
    /// 100`), for `Display` and the concurrency key.
    fn system(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_rfc_error_groups() {
        assert!(
            RfcError::new(RfcErrorKind::Communication, "reset")
                .class()
                .is_retryable()
        );
        assert_eq!(
            RfcError::new(RfcErrorKind::Logon, "401").class(),
            ErrorClass::Permanent
        );
        let e = RfcError::new(
            RfcErrorKind::AbapException("DATA_BUFFER_EXCEEDED".into()),
            "x",
        );
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert_eq!(e.exception(), Some("DATA_BUFFER_EXCEEDED"));
        let dump = RfcError::system_failure("Runtime error TSV_TNEW_PAGE_ALLOC_FAILED");
        assert!(dump.is_memory_dump() && dump.class().is_retryable());
        let busy = RfcError::system_failure("no free work process");
        assert!(!busy.is_memory_dump() && busy.class().is_retryable());
        assert_eq!(busy.code(), "SYSTEM_FAILURE");
        // A dump the same call repeats is permanent: the stream pauses with it, no loop.
        let cast = RfcError::system_failure(
            "Runtime error ASSIGN_CASTING_ILLEGAL_CAST in RFC_READ_TABLE (table ZLOG)",
        );
        assert!(cast.is_deterministic_dump() && !cast.is_memory_dump());
        assert_eq!(cast.class(), ErrorClass::Permanent);
        assert_eq!(cast.code(), "SYSTEM_FAILURE");
    }

    #[test]
    fn calls_and_responses() {
        let mut c = RfcCall::new("RFC_READ_TABLE")
            .with_import("QUERY_TABLE", "EKKO")
            .with_import("ROWCOUNT", "100")
            .expect_table("DATA");
        c.set_import("ROWCOUNT", "50");
        assert_eq!(c.import("ROWCOUNT"), Some("50"));
        assert_eq!(c.params().len(), 3);
        let mut r = RfcResponse::default();
        r.params
            .insert("DATA".into(), RfcValue::Scalar(String::new()));
        assert!(r.table("DATA").is_empty());
        assert!(r.structure("DATA").is_some_and(BTreeMap::is_empty));
        assert_eq!(r.export("NOPE"), None);
        // A relay carries calls, answers and errors as JSON.
        let json = serde_json::to_string(&c).expect("json");
        assert_eq!(serde_json::from_str::<RfcCall>(&json).expect("back"), c);
        let e = RfcError::system_failure("TSV_TNEW_PAGE_ALLOC_FAILED");
        let back: RfcError =
            serde_json::from_str(&serde_json::to_string(&e).expect("json")).expect("back");
        assert!(back.is_memory_dump());
    }
}
