//! The Oracle Fusion Cloud ERP REST emulator (`fscmRestApi`), with an IDCS-style token
//! endpoint.
//!
//! Served at `<base_url>` = `http://127.0.0.1:<port>/` (the "pod" URL):
//! * `GET fscmRestApi/resources/<version>/<resource>` for `invoices`, `purchaseOrders`,
//!   `payablesPayments`, `journalBatches`, `suppliers`, `receivablesInvoices` (and any
//!   resource added with [`OracleEmulator::define_resource`]). `<version>` is the
//!   configured one (default `11.13.18.05`) or `latest`; anything else is 404.
//! * `POST oauth2/v1/token`: `grant_type=client_credentials` (client id and secret by HTTP
//!   Basic or form fields, `scope` recorded) or
//!   `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` with an `assertion` whose
//!   `iss` is the client id and `sub` non-empty (the signature is not checked: the
//!   emulator has no certificate store). Tokens live [`token_lifetime`] (default 1 h) on the
//!   emulator clock; an expired or unknown token is HTTP 401.
//!
//! Collection queries, as the emulator enforces them:
//! * Auth: `Authorization: Basic` (the configured user) or `Bearer` (a live token), else 401.
//! * `q`: with header `REST-Framework-Version: 2` (or higher) the expression subset
//!   `Attr OP 'value' [and ...]` with `>=`, `>`, `<=`, `<`, `=`; timestamp attributes
//!   (`LastUpdateDate`, `CreationDate`) compare as instants (RFC 3339 literal, quoted with
//!   `'` or `"` or bare), others as text. Without the header (version 1) only
//!   query-by-example `Attr=value;Attr2=value`. Anything else: HTTP 400 with an ADF error
//!   body.
//! * `orderBy=Attr:asc|desc,...` on `LastUpdateDate`, `CreationDate` and the key attribute
//!   (others: 400); default order is by key.
//! * `limit` (default 25) is **clamped** to [`MAX_LIMIT`] (500): the envelope's `limit`
//!   says what was applied. (Real pods reportedly cap at 499 or 500; unconfirmed.)
//!   `offset` (default 0), `totalResults=true`, `onlyData=true` (no `links`), `fields=A,B`
//!   (projection). Envelope: `items`, `count`, `hasMore`, `limit`, `offset`, `links`,
//!   `totalResults` when asked.
//! * Timestamps are served as `2026-03-20T14:53:51.123+00:00`; amounts as JSON numbers,
//!   served with their exact text.
//!
//! Data: [`OracleEmulator::upsert`] / [`upsert_raw`](OracleEmulator::upsert_raw) /
//! [`touch`](OracleEmulator::touch) / [`remove`](OracleEmulator::remove) change records
//! while a client runs; [`load_invoice_traps`](OracleEmulator::load_invoice_traps) loads a
//! backfill with the known traps; [`set_synthetic`](OracleEmulator::set_synthetic) serves
//! `n` invoices generated from their index (nothing held in memory), for big benches.
//!
//! Faults: the shared [`crate::fault`] layer; target a resource by its last path segment
//! (`"invoices"`, `"token"`), and count requests the same way.
//!
//! [`token_lifetime`]: OracleEmulatorBuilder::token_lifetime

mod query;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::{SignedDuration, Timestamp};
use ml_core::clock::{Clock, TokioClock};
use serde_json::value::RawValue;

use crate::error::Result;
use crate::fault::Faults;
use crate::server::{Binding, Server};

use query::{Clause, Op};

/// The largest `limit` served; larger values are clamped.
pub const MAX_LIMIT: usize = 500;
/// The default API version path segment.
pub const DEFAULT_VERSION: &str = "11.13.18.05";
/// The default OAuth client id.
pub const CLIENT_ID: &str = "ml-sandbox-client";
/// The default OAuth client secret.
pub const CLIENT_SECRET: &str = "sandbox-client-secret";
/// The default Basic user.
pub const USER: &str = "casey.brown";
/// The default Basic password.
pub const PASSWORD: &str = "Welcome1";

/// The key attribute of each built-in resource.
pub const RESOURCES: &[(&str, &str)] = &[
    ("invoices", "InvoiceId"),
    ("purchaseOrders", "POHeaderId"),
    ("payablesPayments", "CheckId"),
    ("journalBatches", "JeBatchId"),
    ("suppliers", "SupplierId"),
    ("receivablesInvoices", "CustomerTransactionId"),
];

/// Formats an instant as Fusion does: `2026-03-20T14:53:51.123+00:00`.
pub fn oracle_ts(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string()
}

/// A payables invoice as JSON text (`amount` is written verbatim, so it stays exact).
pub fn invoice_json(id: i64, updated: Timestamp, amount: &str, supplier: &str) -> String {
    let ts = oracle_ts(updated);
    let supplier = serde_json::to_string(supplier).unwrap_or_else(|_| "\"?\"".into());
    format!(
        concat!(
            r#"{{"InvoiceId":{id},"InvoiceNumber":"INV-{id}","InvoiceAmount":{amount},"#,
            r#""InvoiceCurrency":"USD","PaymentCurrency":"USD","InvoiceDate":"2026-01-15","#,
            r#""BusinessUnit":"US1 Business Unit","Supplier":{supplier},"SupplierNumber":"S{sn}","#,
            r#""InvoiceType":"Standard","ValidationStatus":"Validated","ApprovalStatus":"Approved","#,
            r#""Description":"Office supplies","CreationDate":"{ts}","LastUpdateDate":"{ts}"}}"#
        ),
        id = id,
        amount = amount,
        supplier = supplier,
        sn = 1000 + id % 97,
        ts = ts,
    )
}

#[derive(Debug)]
struct Row {
    key: String,
    updated: Timestamp,
    created: Timestamp,
    raw: Box<RawValue>,
}

#[derive(Clone, Copy, Debug)]
struct Synthetic {
    n: u64,
    start: Timestamp,
    per_second: u64,
}

#[derive(Debug, Default)]
struct Collection {
    key_attr: String,
    rows: BTreeMap<SortKey, Row>,
    synthetic: Option<Synthetic>,
}

/// Keys sort numerically when they are numbers, else as text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SortKey {
    Num(i64),
    Text(String),
}

impl SortKey {
    fn of(k: &str) -> Self {
        k.parse()
            .map_or_else(|_| Self::Text(k.to_owned()), Self::Num)
    }
}

struct Inner {
    resources: HashMap<String, Collection>,
    tokens: HashMap<String, Timestamp>,
    token_lifetime: Duration,
    next_token: u64,
    scopes: Vec<String>,
}

struct Shared {
    clock: Arc<dyn Clock>,
    version: String,
    client_id: String,
    client_secret: String,
    user: String,
    password: String,
    token_calls: AtomicU64,
    collection_calls: AtomicU64,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Configures an [`OracleEmulator`].
pub struct OracleEmulatorBuilder {
    seed: u64,
    clock: Option<Arc<dyn Clock>>,
    version: String,
    token_lifetime: Duration,
}

impl Default for OracleEmulatorBuilder {
    fn default() -> Self {
        Self {
            seed: 0,
            clock: None,
            version: DEFAULT_VERSION.into(),
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

impl OracleEmulatorBuilder {
    /// Seeds the fault layer's random draws.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The clock for token expiry (default: a [`TokioClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The API version path segment served (besides `latest`).
    pub fn version(mut self, v: impl Into<String>) -> Self {
        self.version = v.into();
        self
    }

    /// How long issued tokens live (`expires_in`).
    pub fn token_lifetime(mut self, d: Duration) -> Self {
        self.token_lifetime = d;
        self
    }

    /// Binds 127.0.0.1 and starts serving.
    pub async fn start(self) -> Result<OracleEmulator> {
        let binding = Binding::new().await?;
        let clock: Arc<dyn Clock> = self
            .clock
            .unwrap_or_else(|| Arc::new(TokioClock::starting_at(Timestamp::now())));
        let resources = RESOURCES
            .iter()
            .map(|(r, k)| {
                (
                    (*r).to_owned(),
                    Collection {
                        key_attr: (*k).to_owned(),
                        ..Collection::default()
                    },
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            clock,
            version: self.version,
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            user: USER.into(),
            password: PASSWORD.into(),
            token_calls: AtomicU64::new(0),
            collection_calls: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                resources,
                tokens: HashMap::new(),
                token_lifetime: self.token_lifetime,
                next_token: 1,
                scopes: Vec::new(),
            }),
        });
        let faults = Faults::with_error_body(self.seed, Arc::new(fault_body));
        let router = Router::new()
            .route(
                "/fscmRestApi/resources/{version}/{resource}",
                get(collection),
            )
            .route("/oauth2/v1/token", post(token))
            .with_state(shared.clone());
        let router = faults.layer(router);
        let base_url = binding.base_url();
        let server = binding.serve(router);
        Ok(OracleEmulator {
            shared,
            faults,
            base_url,
            _server: server,
        })
    }
}

/// A running Oracle Fusion emulator; stops when dropped.
pub struct OracleEmulator {
    shared: Arc<Shared>,
    faults: Faults,
    base_url: String,
    _server: Server,
}

impl std::fmt::Debug for OracleEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OracleEmulator")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl OracleEmulator {
    /// Starts an emulator with the defaults.
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// Configures an emulator.
    pub fn builder() -> OracleEmulatorBuilder {
        OracleEmulatorBuilder::default()
    }

    /// The pod URL, `http://127.0.0.1:<port>/` (`ORACLE_FUSION_URL`).
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The token endpoint (`ORACLE_FUSION_TOKEN_URL`).
    pub fn token_url(&self) -> String {
        format!("{}oauth2/v1/token", self.base_url)
    }

    /// The served API version segment.
    pub fn version(&self) -> &str {
        &self.shared.version
    }

    /// The OAuth client id.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// The OAuth client secret.
    pub fn client_secret(&self) -> &str {
        &self.shared.client_secret
    }

    /// The Basic user.
    pub fn user(&self) -> &str {
        &self.shared.user
    }

    /// The Basic password.
    pub fn password(&self) -> &str {
        &self.shared.password
    }

    /// The fault rules and per-path request counters (`requests("invoices")`).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Token requests answered with a token.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.token_calls.load(Ordering::Relaxed)
    }

    /// Collection requests that were authorised and answered (any status after auth).
    pub fn collection_calls(&self) -> u64 {
        self.shared.collection_calls.load(Ordering::Relaxed)
    }

    /// The scopes requested at the token endpoint, in order.
    pub fn scopes(&self) -> Vec<String> {
        self.shared.lock().scopes.clone()
    }

    /// Changes the lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, d: Duration) {
        self.shared.lock().token_lifetime = d;
    }

    /// Expires every issued token now (the next call with one is a 401).
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Adds a resource keyed by `key_attr`.
    pub fn define_resource(&self, resource: &str, key_attr: &str) {
        self.shared.lock().resources.insert(
            resource.to_owned(),
            Collection {
                key_attr: key_attr.to_owned(),
                ..Collection::default()
            },
        );
    }

    /// Inserts or replaces an item (by its key attribute). `LastUpdateDate` and
    /// `CreationDate` default to the emulator clock's now when missing or unparseable
    /// (the server's own who-columns are always valid).
    pub fn upsert(&self, resource: &str, item: &serde_json::Value) {
        self.upsert_raw(resource, &item.to_string());
    }

    /// Like [`upsert`](Self::upsert) with the item's exact JSON text (exact amounts).
    ///
    /// # Panics
    /// When the text is not a JSON object with the resource's key, or the resource is
    /// unknown: a test bug.
    pub fn upsert_raw(&self, resource: &str, json: &str) {
        let map: BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(json).expect("an item is a JSON object");
        let mut inner = self.shared.lock();
        let coll = inner
            .resources
            .get_mut(resource)
            .unwrap_or_else(|| panic!("unknown resource {resource}"));
        let key_raw = map
            .get(&coll.key_attr)
            .unwrap_or_else(|| panic!("item without {}", coll.key_attr))
            .get();
        let key = key_raw.trim_matches('"').to_owned();
        let now = self.shared.clock.now();
        let ts = |a: &str| {
            map.get(a)
                .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
                .and_then(|s| query::parse_ts(&s))
                .unwrap_or(now)
        };
        let row = Row {
            key: key.clone(),
            updated: ts("LastUpdateDate"),
            created: ts("CreationDate"),
            raw: RawValue::from_string(json.to_owned()).expect("valid JSON"),
        };
        coll.rows.insert(SortKey::of(&key), row);
    }

    /// Updates a served item: sets its `LastUpdateDate` to `at` (and optionally one more
    /// attribute to a JSON value). Returns false when there is no such item.
    pub fn touch(
        &self,
        resource: &str,
        key: &str,
        at: Timestamp,
        set: Option<(&str, serde_json::Value)>,
    ) -> bool {
        let text = {
            let inner = self.shared.lock();
            let Some(row) = inner
                .resources
                .get(resource)
                .and_then(|c| c.rows.get(&SortKey::of(key)))
            else {
                return false;
            };
            let mut map: BTreeMap<String, Box<RawValue>> =
                serde_json::from_str(row.raw.get()).expect("stored JSON");
            map.insert(
                "LastUpdateDate".into(),
                RawValue::from_string(format!("\"{}\"", oracle_ts(at))).expect("ts"),
            );
            if let Some((attr, v)) = set {
                map.insert(
                    attr.to_owned(),
                    RawValue::from_string(v.to_string()).expect("json"),
                );
            }
            serde_json::to_string(&map).expect("serialise")
        };
        self.upsert_raw(resource, &text);
        true
    }

    /// Removes an item.
    pub fn remove(&self, resource: &str, key: &str) -> bool {
        self.shared
            .lock()
            .resources
            .get_mut(resource)
            .is_some_and(|c| c.rows.remove(&SortKey::of(key)).is_some())
    }

    /// How many items a resource holds (synthetic ones included).
    pub fn len(&self, resource: &str) -> u64 {
        self.shared
            .lock()
            .resources
            .get(resource)
            .map_or(0, |c| c.synthetic.map_or(c.rows.len() as u64, |s| s.n))
    }

    /// Whether a resource is empty.
    pub fn is_empty(&self, resource: &str) -> bool {
        self.len(resource) == 0
    }

    /// Serves `n` invoices generated from their index instead of the stored rows: invoice
    /// `i` (from 1) has `LastUpdateDate = start + (i-1) / per_second` seconds, amount
    /// `i.25`, supplier `Supplier <i % 1000>`. Only `LastUpdateDate >=` filters are
    /// supported in this mode.
    pub fn set_synthetic(&self, n: u64, start: Timestamp, per_second: u64) {
        if let Some(c) = self.shared.lock().resources.get_mut("invoices") {
            c.synthetic = Some(Synthetic {
                n,
                start,
                per_second: per_second.max(1),
            });
        }
    }

    /// Loads `n` invoices (keys `1..=n`) into `invoices`, from `start`, with the traps:
    /// * ten invoices per second, except one run of 1,200 invoices sharing one
    ///   timestamp (crossing several page boundaries) starting at invoice 2,001;
    /// * unicode supplier names (`Müller GmbH`, `株式会社テスト`, `Ørsted A/S`, emoji);
    /// * every 50th invoice is a credit memo (negative amount, `InvoiceType` Credit Memo);
    /// * amounts with many decimals and a very large one (exact only without floats);
    /// * invoice 777 has no `InvoiceAmount`, invoice 778 an unparseable `InvoiceDate`.
    ///
    /// Returns the keys of the malformed invoices.
    pub fn load_invoice_traps(&self, n: i64, start: Timestamp) -> Vec<String> {
        let suppliers = [
            "Müller GmbH",
            "株式会社テスト",
            "Ørsted A/S",
            "Acme 🚀 Supplies",
            "Plain Supplier Inc",
        ];
        let mut bad = Vec::new();
        for id in 1..=n {
            let secs = if (2001..=3200).contains(&id) {
                200
            } else if id > 3200 {
                (id - 1200) / 10
            } else {
                (id - 1) / 10
            };
            let t = start + SignedDuration::from_secs(secs);
            let amount = if id % 50 == 0 {
                format!("-{}.10", id % 900 + 1)
            } else if id == 4242 {
                "98765432109876.54".to_owned()
            } else if id % 7 == 0 {
                "0.30000000000000004".to_owned()
            } else {
                format!("{}.{:02}", 100 + id % 19_000, id % 100)
            };
            let mut text = invoice_json(id, t, &amount, suppliers[(id % 5) as usize]);
            if id % 50 == 0 {
                text = text.replace(
                    r#""InvoiceType":"Standard""#,
                    r#""InvoiceType":"Credit Memo""#,
                );
            }
            if id == 777 {
                text = text.replace(&format!(r#""InvoiceAmount":{amount},"#), "");
                bad.push(id.to_string());
            }
            if id == 778 {
                text = text.replace(
                    r#""InvoiceDate":"2026-01-15""#,
                    r#""InvoiceDate":"31/02/2026""#,
                );
                bad.push(id.to_string());
            }
            if id % 13 == 0 {
                text = text.replace(
                    r#""ValidationStatus":"Validated""#,
                    r#""ValidationStatus":"Needs Revalidation""#,
                );
            }
            self.upsert_raw("invoices", &text);
        }
        bad
    }
}

fn adf_error(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16().to_string(),
        "o:errorDetails": [{"detail": detail, "o:errorCode": "ML-SANDBOX"}],
    });
    (
        status,
        [(
            header::CONTENT_TYPE,
            "application/vnd.oracle.adf.error+json",
        )],
        body.to_string(),
    )
        .into_response()
}

fn fault_body(status: u16) -> (String, String) {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    (
        "application/vnd.oracle.adf.error+json".into(),
        serde_json::json!({"title": reason, "status": status.to_string()}).to_string(),
    )
}

fn unauthorized() -> Response {
    let mut r = adf_error(StatusCode::UNAUTHORIZED, "authentication required");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"oracle\""),
    );
    r
}

fn decode_basic(v: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .ok()?;
    let s = String::from_utf8(b).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

fn authorised(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    if let Some(b) = auth.strip_prefix("Basic ") {
        return decode_basic(b).is_some_and(|(u, p)| u == shared.user && p == shared.password);
    }
    if let Some(t) = auth.strip_prefix("Bearer ") {
        let now = shared.clock.now();
        return shared.lock().tokens.get(t).is_some_and(|exp| now < *exp);
    }
    false
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let oauth_error = |status: StatusCode, e: &str| {
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"error": e, "error_description": e}).to_string(),
        )
            .into_response()
    };
    let creds = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(decode_basic)
        .or_else(|| {
            Some((
                form.get("client_id")?.clone(),
                form.get("client_secret")?.clone(),
            ))
        });
    let Some((id, secret)) = creds else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    if id != shared.client_id || secret != shared.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            let ok = form.get("assertion").is_some_and(|a| {
                let parts: Vec<&str> = a.split('.').collect();
                parts.len() == 3 && {
                    use base64::Engine as _;
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(parts[1])
                        .ok()
                        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                        .is_some_and(|c| {
                            c["iss"] == shared.client_id.as_str()
                                && c["sub"].as_str().is_some_and(|s| !s.is_empty())
                        })
                }
            });
            if !ok {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
    let now = shared.clock.now();
    let (tok, lifetime) = {
        let mut inner = shared.lock();
        let n = inner.next_token;
        inner.next_token += 1;
        let tok = format!("sbx-oracle-token-{n:08}");
        let lifetime = inner.token_lifetime;
        let exp = now
            .checked_add(SignedDuration::try_from(lifetime).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX);
        inner.tokens.insert(tok.clone(), exp);
        if let Some(s) = form.get("scope") {
            inner.scopes.push(s.clone());
        }
        (tok, lifetime)
    };
    shared.token_calls.fetch_add(1, Ordering::Relaxed);
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({
            "access_token": tok,
            "token_type": "Bearer",
            "expires_in": lifetime.as_secs(),
        })
        .to_string(),
    )
        .into_response()
}

struct Params {
    clauses: Vec<Clause>,
    order: Vec<(String, bool)>,
    limit: usize,
    offset: usize,
    only_data: bool,
    total: bool,
    fields: Option<Vec<String>>,
}

fn params(q: &HashMap<String, String>, headers: &HeaderMap) -> std::result::Result<Params, String> {
    let framework: u32 = headers
        .get("REST-Framework-Version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1);
    let clauses = match q.get("q").map(String::as_str) {
        None | Some("") => Vec::new(),
        Some(text) if framework >= 2 => query::parse_v2(text)?,
        Some(text) => query::parse_v1(text)?,
    };
    let order = q
        .get("orderBy")
        .map(|o| query::parse_order(o))
        .transpose()?
        .unwrap_or_default();
    let num = |name: &str, default: usize| -> std::result::Result<usize, String> {
        q.get(name).map_or(Ok(default), |v| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("{name} `{v}` is not a non-negative integer"))
        })
    };
    let limit = num("limit", 25)?.clamp(1, MAX_LIMIT);
    let offset = num("offset", 0)?;
    let flag = |name: &str| q.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let fields = q.get("fields").map(|f| {
        f.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    });
    Ok(Params {
        clauses,
        order,
        limit,
        offset,
        only_data: flag("onlyData"),
        total: flag("totalResults"),
        fields,
    })
}

fn row_ts(row: &Row, attr: &str) -> Option<Timestamp> {
    match attr {
        "LastUpdateDate" => Some(row.updated),
        "CreationDate" => Some(row.created),
        _ => None,
    }
}

fn row_matches(row: &Row, c: &Clause) -> std::result::Result<bool, String> {
    if let Some(t) = row_ts(row, &c.attr) {
        let wanted = query::parse_ts(&c.value)
            .ok_or_else(|| format!("`{}` is not a valid date-time for {}", c.value, c.attr))?;
        return Ok(query::cmp_ts(t, c.op, wanted));
    }
    if c.op != Op::Eq {
        return Err(format!("{} supports only = here", c.attr));
    }
    let map: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(row.raw.get()).map_err(|e| e.to_string())?;
    Ok(map.get(&c.attr).is_some_and(|v| match v {
        serde_json::Value::String(s) => *s == c.value,
        other => serde_json::from_str::<serde_json::Value>(&c.value).is_ok_and(|v| v == *other),
    }))
}

fn render_item(
    raw: &RawValue,
    p: &Params,
    self_href: &str,
    out: &mut String,
) -> std::result::Result<(), String> {
    if p.fields.is_none() && p.only_data {
        out.push_str(raw.get());
        return Ok(());
    }
    let mut map: BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    if let Some(fields) = &p.fields {
        map.retain(|k, _| fields.iter().any(|f| f == k));
    }
    if !p.only_data {
        let links =
            serde_json::json!([{"rel": "self", "href": self_href, "name": "item", "kind": "item"}]);
        map.insert(
            "links".into(),
            RawValue::from_string(links.to_string()).map_err(|e| e.to_string())?,
        );
    }
    out.push_str(&serde_json::to_string(&map).map_err(|e| e.to_string())?);
    Ok(())
}

fn synthetic_item(s: Synthetic, i: u64) -> String {
    let id = i + 1;
    let t = s.start + SignedDuration::from_secs((i / s.per_second) as i64);
    invoice_json(
        id as i64,
        t,
        &format!("{id}.25"),
        &format!("Supplier {}", id % 1000),
    )
}

async fn collection(
    State(shared): State<Arc<Shared>>,
    Path((version, resource)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if version != shared.version && version != "latest" {
        return adf_error(StatusCode::NOT_FOUND, "unknown REST API version");
    }
    if !authorised(&shared, &headers) {
        return unauthorized();
    }
    shared.collection_calls.fetch_add(1, Ordering::Relaxed);
    let p = match params(&q, &headers) {
        Ok(p) => p,
        Err(e) => return adf_error(StatusCode::BAD_REQUEST, &e),
    };
    let collection_href = format!(
        "http://pod/fscmRestApi/resources/{}/{resource}",
        shared.version
    );
    let mut body = String::from("{\"items\":[");
    let (count, has_more, total) = {
        let inner = shared.lock();
        let Some(coll) = inner.resources.get(&resource) else {
            return adf_error(StatusCode::NOT_FOUND, "unknown resource");
        };
        for (attr, _) in &p.order {
            if attr != "LastUpdateDate" && attr != "CreationDate" && *attr != coll.key_attr {
                return adf_error(
                    StatusCode::BAD_REQUEST,
                    &format!("orderBy on `{attr}` is not supported by the sandbox"),
                );
            }
        }
        if let Some(s) = coll.synthetic {
            // Index order is (LastUpdateDate, InvoiceId) order.
            let mut first = 0u64;
            for c in &p.clauses {
                let ok = c.attr == "LastUpdateDate" && c.op == Op::Ge;
                let Some(t) = query::parse_ts(&c.value).filter(|_| ok) else {
                    return adf_error(
                        StatusCode::BAD_REQUEST,
                        "synthetic mode: LastUpdateDate >= only",
                    );
                };
                let secs = t.duration_since(s.start).as_secs_f64().max(0.0).ceil() as u64;
                first = first.max(secs.saturating_mul(s.per_second));
            }
            let total = s.n.saturating_sub(first);
            let from = first + p.offset as u64;
            let to = (from + p.limit as u64).min(s.n);
            let mut count = 0;
            for i in from..to {
                if count > 0 {
                    body.push(',');
                }
                let raw = RawValue::from_string(synthetic_item(s, i)).expect("json");
                if let Err(e) =
                    render_item(&raw, &p, &format!("{collection_href}/{}", i + 1), &mut body)
                {
                    return adf_error(StatusCode::INTERNAL_SERVER_ERROR, &e);
                }
                count += 1;
            }
            (count, to < s.n, total as usize)
        } else {
            let mut rows = Vec::new();
            for row in coll.rows.values() {
                let mut keep = true;
                for c in &p.clauses {
                    match row_matches(row, c) {
                        Ok(true) => {}
                        Ok(false) => {
                            keep = false;
                            break;
                        }
                        Err(e) => return adf_error(StatusCode::BAD_REQUEST, &e),
                    }
                }
                if keep {
                    rows.push(row);
                }
            }
            // Rows are already in key order; a stable sort keeps it as the last criterion.
            rows.sort_by(|a, b| {
                for (attr, asc) in &p.order {
                    let ord = match row_ts(a, attr).zip(row_ts(b, attr)) {
                        Some((x, y)) => x.cmp(&y),
                        None => SortKey::of(&a.key).cmp(&SortKey::of(&b.key)),
                    };
                    let ord = if *asc { ord } else { ord.reverse() };
                    if ord.is_ne() {
                        return ord;
                    }
                }
                std::cmp::Ordering::Equal
            });
            let total = rows.len();
            let mut count = 0;
            for row in rows.iter().skip(p.offset).take(p.limit) {
                if count > 0 {
                    body.push(',');
                }
                if let Err(e) = render_item(
                    &row.raw,
                    &p,
                    &format!("{collection_href}/{}", row.key),
                    &mut body,
                ) {
                    return adf_error(StatusCode::INTERNAL_SERVER_ERROR, &e);
                }
                count += 1;
            }
            (count, p.offset + count < total, total)
        }
    };
    let _ = write!(
        body,
        "],\"count\":{count},\"hasMore\":{has_more},\"limit\":{},\"offset\":{}",
        p.limit, p.offset
    );
    if p.total {
        let _ = write!(body, ",\"totalResults\":{total}");
    }
    if !p.only_data {
        let _ = write!(
            body,
            ",\"links\":[{{\"rel\":\"self\",\"href\":\"{collection_href}\",\"name\":\"{resource}\",\"kind\":\"collection\"}}]"
        );
    }
    body.push('}');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
