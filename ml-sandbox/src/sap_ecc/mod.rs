//! The SAP ECC emulator: SOAP-RFC over HTTP (`/sap/bc/soap/rfc`), written from the API
//! notes (`shared/apis/sap-ecc.md`).
//!
//! Served at `<base_url>` = `http://127.0.0.1:<port>` (the ICM URL):
//! * `POST /sap/bc/soap/rfc?sap-client=NNN[&sap-language=EN]`: HTTP Basic (the configured
//!   user, else 401 with `WWW-Authenticate: Basic`); `sap-client` must be the configured
//!   client (else 401: the logon fails); `Content-Type: text/xml` (else 415). The body is a
//!   SOAP 1.1 envelope whose body holds one element named like the function module in
//!   `urn:sap-com:document:sap:rfc:functions`; anything else is a SOAP fault (HTTP 500).
//! * Answers are `<n0:FM.Response>` (with [`SapEccEmulatorBuilder::bare_response_names`]:
//!   `FMResponse`, also seen in the wild); tables as `<item>` rows; tables the request did
//!   not send are left out of the answer (unconfirmed for real systems; a client must send
//!   the tables it wants back). Faults: HTTP 500, `faultcode` `soap-env:Client` for ABAP
//!   exceptions and `soap-env:Server` for runtime errors, `faultstring` = the exception,
//!   `detail/FM.Exception/Name` + `Text` (the real shape is unconfirmed).
//! * `RFC_READ_TABLE` over EKKO, EKPO, EKKN, RBKP, RSEG, BKPF, BSEG, LFA1, CDHDR with real
//!   field names and output widths: `TABLE_NOT_AVAILABLE`, `NOT_AUTHORIZED`
//!   ([`SapEccEmulator::deny_table`]), `FIELD_NOT_VALID`, `DATA_BUFFER_EXCEEDED` when the
//!   selected fields are wider than 512 (not checked with `NO_DATA = 'X'`),
//!   `OPTION_NOT_VALID` for bad `OPTIONS` lines (each line is tokenised alone, lines are
//!   cut at 72 characters, blanks are required around operators and parentheses), a
//!   runtime error for a literal longer than its field, `TSV_TNEW_PAGE_ALLOC_FAILED` when
//!   the rows read (skipped ones included) exceed the memory budget. Rows come in no
//!   useful order (a seeded hash of the key), as a SELECT without ORDER BY does; values are
//!   fixed width by UTF-16 code units, numbers right-aligned with a trailing minus, and
//!   trailing blanks of `WA` are dropped.
//! * `BAPI_PO_GETDETAIL1` with `RETURN` rows (type E for an unknown or not zero-padded PO
//!   number, or for a PO set with [`SapEccEmulator::fail_bapi_for`]; W for a PO blocked for
//!   release).
//! * Concurrency: more than [`SapEccEmulatorBuilder::max_sessions`] calls at once answer
//!   `SYSTEM_FAILURE` (no free work process); [`SapEccEmulator::max_in_flight`] reports the
//!   most calls seen at once. [`SapEccEmulator::fail_next`] injects `SYSTEM_FAILURE`s and
//!   memory dumps for the next calls, [`SapEccEmulator::storm`] recurring storms (the first
//!   `burst` of every `every` calls).
//! * Data: [`SapEccEmulator::load_traps`] (POs whose only change is a CDHDR row, invoices
//!   sharing one `CPUDT`/`CPUTM`, a late invoice, ALPHA keys, `|` and `;` and a character
//!   outside the BMP in vendor names, a phone that cannot receive SMS, a BAPI `RETURN` E
//!   row, a credit memo), [`SapEccEmulator::load_invoice_backfill`], and
//!   `add_*`/`change_purchase_order`/[`SapEccEmulator::upsert`] while a client runs.
//! * Guesses (unconfirmed in the notes): the fault shape, leaving out tables not sent,
//!   `LENGTH` of packed fields = DDIC output length, PO creation writing no CDHDR row.
//! * Times are application-server local ([`SapEccEmulatorBuilder::timezone`], default
//!   `Europe/Berlin`), with no zone in the data, as in ECC.
//!
//! The server, seed, clock and fault layer are the shared [`EmulatorCore`] (HTTP faults
//! target `"rfc"`); [`Emulator::env`] gives `SAP_ECC_URL`, `SAP_ECC_CLIENT`,
//! `SAP_ECC_USER`, `SAP_ECC_PASSWORD` and `SAP_ECC_TIMEZONE`.

mod bapi;
pub mod ddic;
mod fixtures;
mod read_table;
mod select;
mod soap;

pub use fixtures::{GlDocument, GlLine, Invoice, PoItem, PurchaseOrder, TrapSummary, Vendor};

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jiff::tz::TimeZone;
use ml_core::clock::Clock;

use crate::emulator::{Emulator, EmulatorCore, EmulatorOptions, basic_credentials};
use crate::error::Result;

/// The default client.
pub const CLIENT: &str = "100";
/// The default user.
pub const USER: &str = "RFC_ML";
/// The default password.
pub const PASSWORD: &str = "Sandbox#2026";
/// The default application-server time zone.
pub const TIMEZONE: &str = "Europe/Berlin";

/// An injected failure for the next call(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// `SYSTEM_FAILURE` (a short dump or a resource shortage): retryable.
    SystemFailure,
    /// A memory dump (`TSV_TNEW_PAGE_ALLOC_FAILED`).
    MemoryDump,
}

type Row = BTreeMap<String, String>;

pub(crate) struct Inner {
    /// Table -> primary key -> row.
    pub(crate) tables: BTreeMap<&'static str, BTreeMap<String, Row>>,
    pub(crate) denied: BTreeSet<String>,
    /// `TABLE-FIELD`s this system's dictionary does not have (a release, a tailoring).
    pub(crate) removed: BTreeSet<String>,
    pub(crate) bapi_errors: BTreeMap<String, String>,
    fail_next: VecDeque<Failure>,
    storm: Option<(u64, u64)>,
    changenr: u64,
}

pub(crate) struct Shared {
    pub(crate) client: String,
    user: String,
    password: String,
    pub(crate) seed: u64,
    pub(crate) tz: TimeZone,
    clock: Arc<dyn Clock>,
    pub(crate) memory_bytes: usize,
    pub(crate) latin1: bool,
    /// POHEADER fields this release's BAPIMEPOHEADER does not have.
    pub(crate) po_header_omits: BTreeSet<String>,
    /// `RFC_READ_TABLE` raises `TABLE_WITHOUT_DATA` on a table with no rows.
    pub(crate) empty_raises: bool,
    /// `RFC_READ_TABLE` returns at most this many rows, whatever `ROWCOUNT` asks, and
    /// says nothing (a server cap lower than asked).
    pub(crate) silent_cap: Option<usize>,
    /// Rows served in key order (see [`SapEccEmulatorBuilder::key_order`]).
    pub(crate) key_order: bool,
    bare: bool,
    max_sessions: usize,
    latency: Duration,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    calls: Mutex<BTreeMap<String, u64>>,
    total: AtomicU64,
    refused: AtomicU64,
    injected: AtomicU64,
    inner: Mutex<Inner>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a function answered.
pub(crate) enum Answer {
    Ok(&'static str, Vec<(&'static str, soap::Param)>),
    Exception(String, String),
    SystemFailure(String),
}

/// Configures a [`SapEccEmulator`].
pub struct SapEccEmulatorBuilder {
    options: EmulatorOptions,
    client: String,
    timezone: String,
    max_sessions: usize,
    latency: Duration,
    bare: bool,
    memory_bytes: usize,
    latin1: bool,
    po_header_omits: BTreeSet<String>,
    empty_raises: bool,
    silent_cap: Option<usize>,
    key_order: bool,
}

impl Default for SapEccEmulatorBuilder {
    fn default() -> Self {
        Self {
            options: EmulatorOptions::new(0),
            client: CLIENT.into(),
            timezone: TIMEZONE.into(),
            max_sessions: 10,
            latency: Duration::from_millis(2),
            bare: false,
            memory_bytes: 16 * 1024 * 1024,
            latin1: false,
            po_header_omits: BTreeSet::new(),
            empty_raises: false,
            silent_cap: None,
            key_order: false,
        }
    }
}

impl SapEccEmulatorBuilder {
    /// Seeds the row order and the fault layer.
    pub fn seed(mut self, seed: u64) -> Self {
        self.options.set_seed(seed);
        self
    }

    /// The clock (row stamps); default a `TokioClock`.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.options.set_clock(clock);
        self
    }

    /// The SAP client (`MANDT`) served.
    pub fn client(mut self, client: impl Into<String>) -> Self {
        self.client = client.into();
        self
    }

    /// The application server's time zone (IANA).
    pub fn timezone(mut self, tz: impl Into<String>) -> Self {
        self.timezone = tz.into();
        self
    }

    /// Calls allowed at once; more answer `SYSTEM_FAILURE`.
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n.max(1);
        self
    }

    /// How long each call takes (tokio time).
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = d;
        self
    }

    /// Names answers `FMResponse` instead of `FM.Response`.
    pub fn bare_response_names(mut self, on: bool) -> Self {
        self.bare = on;
        self
    }

    /// The memory a `RFC_READ_TABLE` call may use (rows read x row width) before it dumps.
    pub fn memory_bytes(mut self, n: usize) -> Self {
        self.memory_bytes = n;
        self
    }

    /// Runs as a non-Unicode system on code page 1100 (Latin-1): characters it cannot
    /// hold are served as `#`.
    pub fn latin1(mut self, on: bool) -> Self {
        self.latin1 = on;
        self
    }

    /// Leaves `field` out of `BAPI_PO_GETDETAIL1`'s POHEADER, as a release whose
    /// BAPIMEPOHEADER lacks it does (`PUR_GROUP` is not in every release's notes).
    pub fn po_header_without(mut self, field: impl Into<String>) -> Self {
        self.po_header_omits.insert(field.into());
        self
    }

    /// Raises `TABLE_WITHOUT_DATA` from `RFC_READ_TABLE` on a table with no rows of the
    /// client (some systems do, the notes say; unconfirmed), even for `NO_DATA`.
    pub fn empty_tables_raise(mut self, on: bool) -> Self {
        self.empty_raises = on;
        self
    }

    /// Caps every `RFC_READ_TABLE` answer at `rows` rows whatever `ROWCOUNT` asks, in the
    /// database's order and without a word: a page capped lower than asked.
    pub fn silent_row_cap(mut self, rows: usize) -> Self {
        self.silent_cap = Some(rows.max(1));
        self
    }

    /// Serves rows in key order instead of the database's own (a table scan along the
    /// primary index, as some databases do without ORDER BY): with a silent cap, the same
    /// first rows every time.
    pub fn key_order(mut self) -> Self {
        self.key_order = true;
        self
    }

    /// Binds 127.0.0.1 and starts serving.
    pub async fn start(self) -> Result<SapEccEmulator> {
        let bound = EmulatorCore::bind(&self.options, "", Arc::new(fault_body)).await?;
        let tz = TimeZone::get(&self.timezone).unwrap_or(TimeZone::UTC);
        let shared = Arc::new(Shared {
            client: self.client,
            user: USER.into(),
            password: PASSWORD.into(),
            seed: self.options.seed(),
            tz,
            clock: Arc::clone(bound.core().clock()),
            memory_bytes: self.memory_bytes,
            latin1: self.latin1,
            po_header_omits: self.po_header_omits,
            empty_raises: self.empty_raises,
            silent_cap: self.silent_cap,
            key_order: self.key_order,
            bare: self.bare,
            max_sessions: self.max_sessions,
            latency: self.latency,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            calls: Mutex::new(BTreeMap::new()),
            total: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                tables: BTreeMap::new(),
                denied: BTreeSet::new(),
                removed: BTreeSet::new(),
                bapi_errors: BTreeMap::new(),
                fail_next: VecDeque::new(),
                storm: None,
                changenr: 0,
            }),
        });
        let router = Router::new()
            .route("/sap/bc/soap/rfc", post(rfc))
            .with_state(Arc::clone(&shared));
        Ok(SapEccEmulator {
            shared,
            core: bound.serve(router),
            timezone: self.timezone,
        })
    }
}

fn fault_body(status: u16) -> (String, String) {
    (
        "text/html; charset=utf-8".into(),
        format!("<html><body><h1>{status}</h1>ICM error</body></html>"),
    )
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn unauthorized(shared: &Shared) -> Response {
    let mut r = (StatusCode::UNAUTHORIZED, "Logon failed").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "Basic realm=\"SAP NetWeaver Application Server [ECC/{}]\"",
        shared.client
    )) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

async fn rfc(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let authorised = basic_credentials(&headers)
        .is_some_and(|(u, p)| u.eq_ignore_ascii_case(&shared.user) && p == shared.password);
    // A wrong or missing client fails the logon like a wrong password.
    if !authorised || query.get("sap-client") != Some(&shared.client) {
        return unauthorized(&shared);
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("text/xml") {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "SOAP 1.1 needs text/xml",
        )
            .into_response();
    }
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InFlight(&shared.in_flight);
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let number = shared.total.fetch_add(1, Ordering::SeqCst) + 1;
    let (fm, params) = match soap::parse_request(&body) {
        Ok(x) => x,
        Err(why) => {
            return xml(
                StatusCode::INTERNAL_SERVER_ERROR,
                soap::fault("Request", false, "SOAP_ERROR", &why),
            );
        }
    };
    *shared
        .calls
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(fm.clone())
        .or_default() += 1;
    if now > shared.max_sessions {
        shared.refused.fetch_add(1, Ordering::SeqCst);
        return xml(
            StatusCode::INTERNAL_SERVER_ERROR,
            soap::fault(
                &fm,
                true,
                "SYSTEM_FAILURE",
                "Resource shortage: no free dialog work process (RFC quota exceeded)",
            ),
        );
    }
    if !shared.latency.is_zero() {
        tokio::time::sleep(shared.latency).await;
    }
    let injected = {
        let mut inner = shared.lock();
        inner.fail_next.pop_front().or_else(|| {
            inner
                .storm
                .filter(|(every, burst)| number % every < *burst)
                .map(|_| Failure::SystemFailure)
        })
    };
    if let Some(f) = injected {
        shared.injected.fetch_add(1, Ordering::SeqCst);
        let text = match f {
            Failure::SystemFailure => "Runtime error DBIF_RSQL_SQL_ERROR: database connection lost",
            Failure::MemoryDump => {
                "Runtime error TSV_TNEW_PAGE_ALLOC_FAILED: no more storage space for an internal table"
            }
        };
        return xml(
            StatusCode::INTERNAL_SERVER_ERROR,
            soap::fault(&fm, true, "SYSTEM_FAILURE", text),
        );
    }
    let answer = {
        let inner = shared.lock();
        match fm.as_str() {
            "RFC_READ_TABLE" => read_table::call(&shared, &inner, &params),
            "BAPI_PO_GETDETAIL1" => bapi::call(&shared, &inner, &params),
            other => Answer::Exception(
                "FU_NOT_FOUND".into(),
                format!("Function module {other} not found"),
            ),
        }
    };
    match answer {
        Answer::Ok(name, out) => xml(StatusCode::OK, soap::response(name, shared.bare, &out)),
        Answer::Exception(name, text) => xml(
            StatusCode::INTERNAL_SERVER_ERROR,
            soap::fault(&fm, false, &name, &text),
        ),
        Answer::SystemFailure(text) => xml(
            StatusCode::INTERNAL_SERVER_ERROR,
            soap::fault(&fm, true, "SYSTEM_FAILURE", &text),
        ),
    }
}

/// A running SAP ECC emulator; stops when dropped.
pub struct SapEccEmulator {
    shared: Arc<Shared>,
    core: EmulatorCore,
    timezone: String,
}

impl std::fmt::Debug for SapEccEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SapEccEmulator")
            .field("base_url", &self.core.base_url())
            .field("client", &self.shared.client)
            .finish_non_exhaustive()
    }
}

impl Emulator for SapEccEmulator {
    fn core(&self) -> &EmulatorCore {
        &self.core
    }

    /// `SAP_ECC_URL`, `SAP_ECC_CLIENT`, `SAP_ECC_USER`, `SAP_ECC_PASSWORD`,
    /// `SAP_ECC_TIMEZONE`.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SAP_ECC_URL", self.base_url().to_owned()),
            ("SAP_ECC_CLIENT", self.shared.client.clone()),
            ("SAP_ECC_USER", self.shared.user.clone()),
            ("SAP_ECC_PASSWORD", self.shared.password.clone()),
            ("SAP_ECC_TIMEZONE", self.timezone.clone()),
        ]
    }
}

impl SapEccEmulator {
    /// Starts an emulator with the defaults.
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// Configures an emulator.
    pub fn builder() -> SapEccEmulatorBuilder {
        SapEccEmulatorBuilder::default()
    }

    /// `http://127.0.0.1:<port>` (`SAP_ECC_URL`).
    pub fn base_url(&self) -> &str {
        self.core.base_url()
    }

    /// The client served.
    pub fn client(&self) -> &str {
        &self.shared.client
    }

    /// The user.
    pub fn user(&self) -> &str {
        &self.shared.user
    }

    /// The password.
    pub fn password(&self) -> &str {
        &self.shared.password
    }

    /// The application server's zone.
    pub fn timezone(&self) -> &str {
        &self.timezone
    }

    /// Calls of `function` answered or refused so far.
    pub fn calls(&self, function: &str) -> u64 {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(function)
            .copied()
            .unwrap_or(0)
    }

    /// Every call that reached the SOAP handler (authorised).
    pub fn total_calls(&self) -> u64 {
        self.shared.total.load(Ordering::SeqCst)
    }

    /// The most calls seen in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Calls refused with `SYSTEM_FAILURE` for being over the session cap.
    pub fn capacity_refusals(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Failures injected by [`fail_next`](Self::fail_next) so far.
    pub fn injected_failures(&self) -> u64 {
        self.shared.injected.load(Ordering::SeqCst)
    }

    /// Resets the call counters and the in-flight maximum.
    pub fn reset_counts(&self) {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.shared.total.store(0, Ordering::SeqCst);
        self.shared.max_in_flight.store(0, Ordering::SeqCst);
        self.shared.refused.store(0, Ordering::SeqCst);
        self.shared.injected.store(0, Ordering::SeqCst);
    }

    /// The next `n` calls fail with `failure`.
    pub fn fail_next(&self, n: usize, failure: Failure) {
        self.shared
            .lock()
            .fail_next
            .extend(std::iter::repeat_n(failure, n));
    }

    /// From now on, of every `every` calls (counted from the first one) the first `burst`
    /// fail with `SYSTEM_FAILURE`: storms that keep coming back. `every = 0` stops them.
    pub fn storm(&self, every: u64, burst: u64) {
        self.shared.lock().storm = (every > 0).then_some((every, burst.min(every)));
    }

    /// Removes `field` from `table` as this system describes and serves it (`NO_DATA`
    /// lists it no more; naming it in `FIELDS` fails with `FIELD_NOT_VALID`), as a release
    /// or a tailoring without it does.
    pub fn without_field(&self, table: &str, field: &str) {
        self.shared.lock().removed.insert(format!(
            "{}-{}",
            table.to_ascii_uppercase(),
            field.to_ascii_uppercase()
        ));
    }

    /// Refuses `RFC_READ_TABLE` on `table` with `NOT_AUTHORIZED` (S_TABU_DIS).
    pub fn deny_table(&self, table: &str) {
        self.shared.lock().denied.insert(table.to_ascii_uppercase());
    }

    /// `BAPI_PO_GETDETAIL1` for `ebeln` returns a `RETURN` row of type E with `message`.
    pub fn fail_bapi_for(&self, ebeln: &str, message: &str) {
        self.shared
            .lock()
            .bapi_errors
            .insert(ebeln.to_owned(), message.to_owned());
    }

    /// The server-local date (`YYYYMMDD`) and time (`HHMMSS`) now.
    pub fn local_now(&self) -> (String, String) {
        let z = self.shared.clock.now().to_zoned(self.shared.tz.clone());
        (
            z.strftime("%Y%m%d").to_string(),
            z.strftime("%H%M%S").to_string(),
        )
    }

    /// Stores a row exactly as given (the client field is filled in); a row with the same
    /// key is replaced. Fields not given are blank.
    pub fn upsert(&self, table: &str, fields: &[(&str, &str)]) {
        let Some(defs) = ddic::table(table) else {
            return;
        };
        let mut row: Row = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        row.insert(
            ddic::client_field(defs).to_owned(),
            self.shared.client.clone(),
        );
        let key = defs
            .iter()
            .filter(|d| d.key)
            .map(|d| row.get(d.name).map_or("", String::as_str))
            .collect::<Vec<_>>()
            .join("/");
        let name = ddic::TABLES
            .iter()
            .find(|(n, _)| *n == table)
            .map_or("", |(n, _)| *n);
        self.shared
            .lock()
            .tables
            .entry(name)
            .or_default()
            .insert(key, row);
    }

    /// The rows of a table (for assertions).
    pub fn rows(&self, table: &str) -> Vec<BTreeMap<String, String>> {
        self.shared
            .lock()
            .tables
            .get(table)
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default()
    }

    fn next_changenr(&self) -> String {
        let mut inner = self.shared.lock();
        inner.changenr += 1;
        format!("{:010}", inner.changenr)
    }
}

#[cfg(test)]
mod tests;
