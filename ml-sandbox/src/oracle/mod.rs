//! The Oracle Fusion Cloud ERP REST emulator (`fscmRestApi`), with an IDCS-style token
//! endpoint.
//!
//! Served at `<base_url>` = `http://127.0.0.1:<port>/` (the "pod" URL):
//! * `GET fscmRestApi/resources/<version>/<resource>` for `invoices`, `purchaseOrders`,
//!   `payablesPayments`, `journalBatches`, `suppliers`, `receivablesInvoices` (and any
//!   resource added with [`OracleEmulator::define_resource`]). `<version>` is the
//!   configured one (default `11.13.18.05`) or `latest`; anything else is 404.
//! * `POST fscmRestApi/resources/<version>/<resource>` creates an item and `PATCH
//!   .../<resource>/<key>` updates one (body `application/json` or
//!   `application/vnd.oracle.adf.resourceitem+json`; the server stamps `CreationDate` /
//!   `LastUpdateDate` from the emulator clock, as Fusion's who-columns are). `PUT
//!   sandbox/oracle/<resource>` (sandbox control, no auth) stores an item exactly as given,
//!   timestamps included, to stage late commits during a run.
//! * `POST oauth2/v1/token`: `grant_type=client_credentials` (client id and secret by HTTP
//!   Basic or form fields, `scope` recorded) or
//!   `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` with an `assertion`: an RS256
//!   JWT whose signature verifies with a key trusted by [`OracleEmulator::trust_jwt_key`]
//!   (the certificate uploaded to the confidential application; the header's `kid` picks
//!   it when given), `iss` the client id, `sub` non-empty, `aud` the identity domain
//!   audience [`JWT_AUDIENCE`], and `exp` not passed on the emulator clock; anything else is
//!   `invalid_grant`. Tokens live [`token_lifetime`] (default 1 h) on the emulator clock;
//!   an expired or unknown token is HTTP 401.
//!
//! Collection queries, as the emulator enforces them:
//! * Auth: `Authorization: Basic` (the configured user) or `Bearer` (a live token), else 401.
//! * `q`: with header `REST-Framework-Version: 2` (or higher) the expression subset:
//!   comparisons `Attr OP value` (`>=`, `>`, `<=`, `<`, `=`, `!=`, `<>`) joined by `and` /
//!   `or` (`and` binds tighter; `;` also means `and`) and grouped with parentheses;
//!   timestamp attributes (`LastUpdateDate`, `CreationDate`) compare as instants (RFC 3339
//!   literal, quoted with `'` or `"` or bare), numbers as numbers, others as text. Traps
//!   for keyset readers: [`OracleEmulator::refuse_disjunction`] (400 on `or`) and
//!   [`OracleEmulator::hide_sub_millisecond_precision`]. Without the header (version 1) only
//!   query-by-example `Attr=value;Attr2=value`. Anything else: HTTP 400 with an ADF error
//!   body.
//! * `orderBy=Attr:asc|desc,...` on `LastUpdateDate`, `CreationDate` and the key attribute
//!   (others: 400); default order is by key.
//! * `limit` (default 25) is **clamped** to [`MAX_LIMIT`] (500): the envelope's `limit`
//!   says what was applied. (Real pods reportedly cap at 499 or 500; unconfirmed.)
//!   `offset` (default 0), `totalResults=true`, `onlyData=true` (no `links`), `fields=A,B`
//!   (projection). Envelope: `items`, `count`, `hasMore`, `limit`, `offset`, `links`,
//!   `totalResults` when asked.
//! * Child collections (an item attribute holding an array of objects, e.g. an invoice's
//!   `invoiceLines`, each with `invoiceDistributions`) are served inside the item only
//!   when asked for, as Oracle does: with `fields` child groups
//!   (`fields=A,B;invoiceLines:LineNumber,LineAmount;invoiceLines.invoiceDistributions:DistributionAmount`;
//!   a nested group implies its parent, served with all its attributes; a child not
//!   named is omitted), or, without `fields`, with `expand=invoiceLines`,
//!   `expand=invoiceLines.invoiceDistributions` (both levels) or `expand=all` (`fields`
//!   wins when both are given). Otherwise children are omitted (with `onlyData=false`
//!   the item's `links` name them, `rel` `child`). With `REST-Framework-Version` 2 (or 1)
//!   children are JSON arrays of items; from version 3 they are collection objects
//!   (`items`, `count`, `hasMore` false, `limit`, `offset`): the sandbox serves every child
//!   item (whether real pods cap expanded children at a default limit is unconfirmed).
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
mod write;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use jiff::{SignedDuration, Timestamp};
use ml_core::clock::Clock;
use serde_json::value::RawValue;

use crate::emulator::{Emulator, EmulatorCore, EmulatorOptions, basic_credentials};
use crate::error::Result;
use crate::fault::Faults;
use crate::oauth2::TokenIssuer;

use query::{Clause, Expr};

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

/// A payables invoice as JSON text (`amount` is written verbatim, so it stays exact),
/// validated, with 1–3 `invoiceLines` of 1–2 `invoiceDistributions` each whose amounts sum
/// exactly to `amount` (see [`invoice_lines_json`]).
pub fn invoice_json(id: i64, updated: Timestamp, amount: &str, supplier: &str) -> String {
    invoice_json_with(id, updated, amount, supplier, true)
}

/// An invoice that is not validated yet: `ValidationStatus` `Not Validated`, and its lines
/// have no distributions (Payables generates them at validation).
pub fn unvalidated_invoice_json(
    id: i64,
    updated: Timestamp,
    amount: &str,
    supplier: &str,
) -> String {
    invoice_json_with(id, updated, amount, supplier, false).replacen(
        r#""ValidationStatus":"Validated""#,
        r#""ValidationStatus":"Not Validated""#,
        1,
    )
}

/// Department segments of the generated account combinations.
const DEPARTMENTS: [&str; 4] = ["110", "520", "610", "740"];
/// Natural-account segments of the generated account combinations.
const ACCOUNTS: [&str; 4] = ["7640", "7699", "5110", "6420"];
/// Line descriptions of generated invoices.
const LINE_TEXTS: [&str; 3] = ["Office supplies", "Laptops", "Freight"];

/// An exact decimal as `(minor units, scale)`: `-310.40` is `(-31040, 2)`. `None` for
/// exponent forms and anything with more than 30 digits.
fn minor_units(amount: &str) -> Option<(i128, u32)> {
    let t = amount.trim();
    let (neg, t) = t.strip_prefix('-').map_or((false, t), |r| (true, r));
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty()
        || int.len() + frac.len() > 30
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut units: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        units = units * 10 + i128::from(b - b'0');
    }
    let scale = u32::try_from(frac.len()).ok()?;
    Some((if neg { -units } else { units }, scale))
}

/// Writes `units` at `scale` as a JSON number (`-310.40`).
fn write_units(out: &mut String, units: i128, scale: u32) {
    if units < 0 {
        out.push('-');
    }
    let abs = units.unsigned_abs();
    if scale == 0 {
        let _ = write!(out, "{abs}");
    } else {
        let p = 10u128.pow(scale);
        let _ = write!(out, "{}.{:0w$}", abs / p, abs % p, w = scale as usize);
    }
}

/// `units` split by `weights` (truncating, the remainder on the last part): the parts sum
/// exactly to `units` and keep its sign.
fn split_units(units: i128, weights: &[i128]) -> [i128; 3] {
    let total: i128 = weights.iter().sum();
    let mut parts = [0i128; 3];
    let mut rest = units;
    for (i, w) in weights.iter().enumerate() {
        parts[i] = if i + 1 == weights.len() {
            rest
        } else {
            units * w / total
        };
        rest -= parts[i];
    }
    parts
}

/// The `invoiceLines` array of a generated invoice, deterministic from `id`: 1–3 lines of
/// 1–2 distributions each (or none, when `distributed` is false), whose amounts sum exactly
/// to `amount` (credit memos: all negative), on combinations such as
/// `01-520-7640-0000-000`. An amount in exponent form (or too long to split) gets one line
/// and one distribution carrying it verbatim.
pub fn invoice_lines_json(id: i64, amount: &str, distributed: bool) -> String {
    let split = minor_units(amount).filter(|(u, _)| u.unsigned_abs() >= 100);
    let n_lines = if split.is_some() {
        1 + id.rem_euclid(3) as usize
    } else {
        1
    };
    let line_weights: &[i128] = &[5, 3, 2][..n_lines];
    let (units, scale) = split.unwrap_or((0, 0));
    let line_parts = split_units(units, line_weights);
    let mut out = String::with_capacity(280 * n_lines);
    out.push('[');
    let mut amount_text = String::with_capacity(amount.len() + 2);
    for (k, line_units) in line_parts.iter().take(n_lines).enumerate() {
        if k > 0 {
            out.push(',');
        }
        let freight = n_lines == 3 && k == 2;
        let (kind, text) = if freight {
            ("Freight", LINE_TEXTS[2])
        } else {
            ("Item", LINE_TEXTS[(id.rem_euclid(2) as usize + k) % 2])
        };
        let account = ACCOUNTS[(id.rem_euclid(7) as usize + k) % ACCOUNTS.len()];
        amount_text.clear();
        if split.is_some() {
            write_units(&mut amount_text, *line_units, scale);
        } else {
            amount_text.push_str(amount.trim());
        }
        let _ = write!(
            out,
            concat!(
                r#"{{"LineNumber":{n},"LineAmount":{a},"LineType":"{kind}","Description":"{text}","#,
                r#""DistributionCombination":"01-000-{account}-0000-000","AccountingDate":"2026-01-15","#,
                r#""invoiceDistributions":["#
            ),
            n = k + 1,
            a = amount_text,
            kind = kind,
            text = text,
            account = account,
        );
        if distributed {
            let n_dists = if split.is_some() && line_units.unsigned_abs() >= 100 {
                1 + (id.rem_euclid(2) as usize + k) % 2
            } else {
                1
            };
            let dist_parts = split_units(*line_units, &[7, 3][..n_dists]);
            for (j, dist_units) in dist_parts.iter().take(n_dists).enumerate() {
                if j > 0 {
                    out.push(',');
                }
                let dept = DEPARTMENTS[(id.rem_euclid(4) as usize + k + j) % DEPARTMENTS.len()];
                amount_text.clear();
                if split.is_some() {
                    write_units(&mut amount_text, *dist_units, scale);
                } else {
                    amount_text.push_str(amount.trim());
                }
                let _ = write!(
                    out,
                    concat!(
                        r#"{{"InvoiceDistributionId":{did},"DistributionLineNumber":{n},"#,
                        r#""DistributionLineType":"{kind}","DistributionAmount":{a},"#,
                        r#""DistributionCombination":"01-{dept}-{account}-0000-000","#,
                        r#""AccountingDate":"2026-01-15","Description":"{text}"}}"#
                    ),
                    did = id
                        .saturating_mul(100)
                        .saturating_add((k as i64 + 1) * 10 + j as i64 + 1),
                    n = j + 1,
                    kind = kind,
                    a = amount_text,
                    dept = dept,
                    account = account,
                    text = text,
                );
            }
        }
        out.push_str("]}");
    }
    out.push(']');
    out
}

fn invoice_json_with(
    id: i64,
    updated: Timestamp,
    amount: &str,
    supplier: &str,
    distributed: bool,
) -> String {
    let ts = oracle_ts(updated);
    let supplier = serde_json::to_string(supplier).unwrap_or_else(|_| "\"?\"".into());
    format!(
        concat!(
            r#"{{"InvoiceId":{id},"InvoiceNumber":"INV-{id}","InvoiceAmount":{amount},"#,
            r#""InvoiceCurrency":"USD","PaymentCurrency":"USD","InvoiceDate":"2026-01-15","#,
            r#""BusinessUnit":"US1 Business Unit","Supplier":{supplier},"SupplierNumber":"S{sn}","#,
            r#""InvoiceType":"Standard","ValidationStatus":"Validated","ApprovalStatus":"Approved","#,
            r#""Description":"Office supplies","CreationDate":"{ts}","LastUpdateDate":"{ts}","#,
            r#""invoiceLines":{lines}}}"#
        ),
        id = id,
        amount = amount,
        supplier = supplier,
        sn = 1000 + id % 97,
        ts = ts,
        lines = invoice_lines_json(id, amount, distributed),
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

impl Synthetic {
    /// The `LastUpdateDate` of row `i`.
    fn at(self, i: u64) -> Timestamp {
        self.start + SignedDuration::from_secs((i / self.per_second) as i64)
    }
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
    /// Stored timestamps carry microseconds the served (millisecond) text does not show.
    hidden_precision: bool,
    /// Answer a `q` with `or` with 400, like a pod whose framework cannot express it.
    refuse_or: bool,
}

impl Inner {
    /// Stores an item as given (its key and timestamps from the JSON; a missing timestamp
    /// is `now`). Returns the key.
    fn store(
        &mut self,
        resource: &str,
        json: &str,
        now: Timestamp,
    ) -> std::result::Result<String, String> {
        let map: BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(json).map_err(|e| format!("an item is a JSON object: {e}"))?;
        let hidden_on = self.hidden_precision;
        let coll = self
            .resources
            .get_mut(resource)
            .ok_or_else(|| format!("unknown resource {resource}"))?;
        let key_raw = map
            .get(&coll.key_attr)
            .ok_or_else(|| format!("item without {}", coll.key_attr))?
            .get();
        let key = key_raw.trim_matches('"').to_owned();
        let ts = |a: &str| {
            map.get(a)
                .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
                .and_then(|s| query::parse_ts(&s))
                .unwrap_or(now)
        };
        // A database column finer than the JSON text: the row is stored some microseconds
        // after the instant it is served with (derived from the key, so it is stable).
        let hidden = if hidden_on {
            let h = key
                .bytes()
                .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            SignedDuration::from_micros(1 + (h % 998) as i64)
        } else {
            SignedDuration::ZERO
        };
        let row = Row {
            key: key.clone(),
            updated: ts("LastUpdateDate") + hidden,
            created: ts("CreationDate"),
            raw: RawValue::from_string(json.to_owned()).map_err(|e| e.to_string())?,
        };
        coll.rows.insert(SortKey::of(&key), row);
        Ok(key)
    }
}

struct Shared {
    clock: Arc<dyn Clock>,
    version: String,
    issuer: TokenIssuer,
    user: String,
    password: String,
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
    options: EmulatorOptions,
    version: String,
    token_lifetime: Duration,
}

impl Default for OracleEmulatorBuilder {
    fn default() -> Self {
        Self {
            options: EmulatorOptions::new(0),
            version: DEFAULT_VERSION.into(),
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

impl OracleEmulatorBuilder {
    /// Seeds the fault layer's random draws.
    pub fn seed(mut self, seed: u64) -> Self {
        self.options.set_seed(seed);
        self
    }

    /// The clock for token expiry (default: a [`TokioClock`](ml_core::clock::TokioClock)).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.options.set_clock(clock);
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
        let bound = EmulatorCore::bind(&self.options, "/", Arc::new(fault_body)).await?;
        let clock = Arc::clone(bound.core().clock());
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
            issuer: TokenIssuer::new(
                "sbx-oracle-token",
                CLIENT_ID,
                CLIENT_SECRET,
                JWT_AUDIENCE,
                self.token_lifetime,
                Arc::clone(&clock),
            ),
            clock,
            version: self.version,
            user: USER.into(),
            password: PASSWORD.into(),
            collection_calls: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                resources,
                hidden_precision: false,
                refuse_or: false,
            }),
        });
        let router = Router::new()
            .route(
                "/fscmRestApi/resources/{version}/{resource}",
                get(collection).post(write::create),
            )
            .route(
                "/fscmRestApi/resources/{version}/{resource}/{key}",
                patch(write::update),
            )
            .route("/sandbox/oracle/{resource}", put(write::put_raw))
            .route("/oauth2/v1/token", post(token))
            .with_state(shared.clone());
        Ok(OracleEmulator {
            shared,
            core: bound.serve(router),
        })
    }
}

/// A running Oracle Fusion emulator; stops when dropped.
pub struct OracleEmulator {
    shared: Arc<Shared>,
    core: EmulatorCore,
}

impl std::fmt::Debug for OracleEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OracleEmulator")
            .field("base_url", &self.core.base_url())
            .finish_non_exhaustive()
    }
}

impl Emulator for OracleEmulator {
    fn core(&self) -> &EmulatorCore {
        &self.core
    }

    /// `ORACLE_FUSION_URL`, `ORACLE_FUSION_TOKEN_URL`, `ORACLE_FUSION_CLIENT_ID` and
    /// `ORACLE_FUSION_CLIENT_SECRET`.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ORACLE_FUSION_URL", self.base_url().to_owned()),
            ("ORACLE_FUSION_TOKEN_URL", self.token_url()),
            ("ORACLE_FUSION_CLIENT_ID", self.client_id().to_owned()),
            (
                "ORACLE_FUSION_CLIENT_SECRET",
                self.client_secret().to_owned(),
            ),
        ]
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
    pub fn base_url(&self) -> &str {
        self.core.base_url()
    }

    /// The token endpoint (`ORACLE_FUSION_TOKEN_URL`).
    pub fn token_url(&self) -> String {
        format!("{}oauth2/v1/token", self.core.base_url())
    }

    /// The served API version segment.
    pub fn version(&self) -> &str {
        &self.shared.version
    }

    /// The OAuth client id.
    pub fn client_id(&self) -> &str {
        self.shared.issuer.client_id()
    }

    /// The OAuth client secret.
    pub fn client_secret(&self) -> &str {
        self.shared.issuer.client_secret()
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
        self.core.faults()
    }

    /// Token requests answered with a token.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.issuer.tokens_issued()
    }

    /// Collection requests that were authorised and answered (any status after auth).
    pub fn collection_calls(&self) -> u64 {
        self.shared.collection_calls.load(Ordering::Relaxed)
    }

    /// The scopes requested at the token endpoint, in order.
    pub fn scopes(&self) -> Vec<String> {
        self.shared.issuer.scopes()
    }

    /// Changes the lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, d: Duration) {
        self.shared.issuer.set_lifetime(d);
    }

    /// Expires every issued token now (the next call with one is a 401).
    pub fn expire_tokens(&self) {
        self.shared.issuer.expire_all();
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
        let now = self.shared.clock.now();
        if let Err(e) = self.shared.lock().store(resource, json, now) {
            panic!("{e}");
        }
    }

    /// Trusts an RSA public key (DER `RSAPublicKey`, e.g. from
    /// `JwtSigningKey::public_key_der`) for JWT user assertions, under an optional `kid`.
    pub fn trust_jwt_key(&self, kid: Option<&str>, public_key_der: impl Into<Vec<u8>>) {
        self.shared.issuer.trust_jwt_key(kid, public_key_der.into());
    }

    /// Answers any `q` that uses `or` with 400 (as a pod limited to simpler filters would).
    pub fn refuse_disjunction(&self, on: bool) {
        self.shared.lock().refuse_or = on;
    }

    /// From now on, items stored keep microseconds their served `LastUpdateDate` (milliseconds)
    /// does not show, as a database `TIMESTAMP(6)` column serialised to milliseconds does:
    /// `LastUpdateDate = '<served value>'` then matches nothing.
    pub fn hide_sub_millisecond_precision(&self, on: bool) {
        self.shared.lock().hidden_precision = on;
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
    /// * invoice 777 has no `InvoiceAmount`, invoice 778 an unparseable `InvoiceDate`;
    /// * every invoice has 1–3 lines with 1–2 GL distributions each, summing exactly to its
    ///   amount ([`invoice_lines_json`]), except every 101st invoice, which is
    ///   `Not Validated` and whose lines have no distributions yet.
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
            let supplier = suppliers[(id % 5) as usize];
            let mut text = if id % 101 == 0 {
                unvalidated_invoice_json(id, t, &amount, supplier)
            } else {
                invoice_json(id, t, &amount, supplier)
            };
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

/// The audience a JWT user assertion must name (the identity domain).
pub const JWT_AUDIENCE: &str = "https://identity.oraclecloud.com/";

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

/// The checks every REST request passes first (a served API version, then credentials):
/// the answer when one fails.
fn refusal(shared: &Shared, version: &str, headers: &HeaderMap) -> Option<Response> {
    if version != shared.version && version != "latest" {
        return Some(adf_error(StatusCode::NOT_FOUND, "unknown REST API version"));
    }
    (!authorised(shared, headers)).then(unauthorized)
}

fn authorised(shared: &Shared, headers: &HeaderMap) -> bool {
    if let Some((u, p)) = basic_credentials(headers) {
        return u == shared.user && p == shared.password;
    }
    shared.issuer.authorises(headers)
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    shared.issuer.answer(&headers, &body)
}

struct Params {
    filter: Option<Expr>,
    order: Vec<(String, bool)>,
    limit: usize,
    offset: usize,
    only_data: bool,
    total: bool,
    fields: Shape,
}

fn params(q: &HashMap<String, String>, headers: &HeaderMap) -> std::result::Result<Params, String> {
    let framework: u32 = headers
        .get("REST-Framework-Version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1);
    let filter = match q.get("q").map(String::as_str) {
        None | Some("") => None,
        Some(text) if framework >= 2 => Some(query::parse_v2(text)?),
        Some(text) => Some(query::parse_v1(text)?),
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
    let fields = Shape::parse(q, headers)?;
    Ok(Params {
        filter,
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

fn ts_clause(t: Timestamp, c: &Clause) -> std::result::Result<bool, String> {
    let wanted = query::parse_ts(&c.value)
        .ok_or_else(|| format!("`{}` is not a valid date-time for {}", c.value, c.attr))?;
    Ok(query::cmp_ts(t, c.op, wanted))
}

fn row_matches(row: &Row, filter: &Expr) -> std::result::Result<bool, String> {
    let mut attrs: Option<BTreeMap<String, serde_json::Value>> = None;
    filter.eval(&mut |c: &Clause| {
        if let Some(t) = row_ts(row, &c.attr) {
            return ts_clause(t, c);
        }
        if attrs.is_none() {
            attrs = Some(serde_json::from_str(row.raw.get()).map_err(|e| e.to_string())?);
        }
        Ok(attrs
            .as_ref()
            .and_then(|m| m.get(&c.attr))
            .is_some_and(|v| query::cmp_value(v, c.op, &c.value)))
    })
}

/// Whether synthetic row `i` (key `i + 1`, stamped `s.at(i)`) passes the filter.
fn synthetic_matches(
    s: Synthetic,
    key_attr: &str,
    i: u64,
    filter: &Expr,
) -> std::result::Result<bool, String> {
    filter.eval(&mut |c: &Clause| match c.attr.as_str() {
        "LastUpdateDate" | "CreationDate" => ts_clause(s.at(i), c),
        a if a == key_attr => Ok(query::cmp_value(&serde_json::json!(i + 1), c.op, &c.value)),
        a => Err(format!("synthetic mode cannot filter on `{a}`")),
    })
}

/// Which parts of an item are served: `fields` (header attributes and child groups) or,
/// without it, `expand`; and the REST framework version (the shape of child collections).
#[derive(Debug, Default)]
struct Shape {
    /// Whether `fields` was given.
    projected: bool,
    /// The header attributes named in `fields` (`None`: all).
    header: Option<Vec<String>>,
    /// The child groups of `fields`: accessor path (`invoiceLines.invoiceDistributions`)
    /// and attributes.
    children: Vec<(String, Vec<String>)>,
    /// The `expand` paths (only without `fields`); `all` expands every child.
    expand: Vec<String>,
    /// `REST-Framework-Version` (1 when absent).
    framework: u32,
}

fn attr_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect()
}

impl Shape {
    fn parse(
        q: &HashMap<String, String>,
        headers: &HeaderMap,
    ) -> std::result::Result<Self, String> {
        let mut shape = Self {
            framework: headers
                .get("REST-Framework-Version")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(1),
            ..Self::default()
        };
        if let Some(f) = q.get("fields") {
            shape.projected = true;
            for group in f.split(';').map(str::trim).filter(|g| !g.is_empty()) {
                match group.split_once(':') {
                    Some((path, attrs)) => {
                        let path = path.trim();
                        if path.is_empty() || path.split('.').any(|seg| !query_name(seg)) {
                            return Err(format!("fields: `{path}` is not a child accessor"));
                        }
                        shape.children.push((path.to_owned(), attr_list(attrs)));
                    }
                    None => shape
                        .header
                        .get_or_insert_with(Vec::new)
                        .extend(attr_list(group)),
                }
            }
        } else if let Some(e) = q.get("expand") {
            shape.expand = attr_list(e);
        }
        Ok(shape)
    }

    /// Whether the child at `path` is served, and with which attributes.
    fn child(&self, path: &str) -> Served<'_> {
        let nested = |p: &str| {
            p.len() > path.len() && p.starts_with(path) && p.as_bytes()[path.len()] == b'.'
        };
        let served = |yes: bool| if yes { Served::All } else { Served::No };
        if self.projected {
            if let Some((_, attrs)) = self.children.iter().find(|(p, _)| p == path) {
                return Served::Only(attrs);
            }
            // A nested accessor implies its parent.
            return served(self.children.iter().any(|(p, _)| nested(p)));
        }
        served(
            self.expand
                .iter()
                .any(|p| p == "all" || p == path || nested(p)),
        )
    }
}

/// Whether a child collection is served, and with which attributes.
enum Served<'a> {
    /// Omitted.
    No,
    /// With every attribute.
    All,
    /// With these attributes.
    Only(&'a [String]),
}

/// An accessor path segment: letters, digits, `_`.
fn query_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether a raw attribute value is a child collection (an array of objects, or empty).
fn is_child(raw: &RawValue) -> bool {
    let t = raw.get().trim_start();
    t.strip_prefix('[')
        .is_some_and(|r| matches!(r.trim_start().as_bytes().first(), Some(b'{' | b']')))
}

/// An attribute name, borrowed from the item's text unless it holds escapes.
#[derive(PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(transparent)]
struct Key<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

/// An item's attributes with their exact JSON text, borrowed from the stored text (no
/// per-attribute allocation: synthetic backfills render a million of these).
type RawMap<'a> = BTreeMap<Key<'a>, &'a RawValue>;

/// Writes `"key":`.
fn push_key(out: &mut String, k: &str) -> std::result::Result<(), String> {
    if k.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(&serde_json::to_string(k).map_err(|e| e.to_string())?);
    } else {
        out.push('"');
        out.push_str(k);
        out.push('"');
    }
    out.push(':');
    Ok(())
}

/// Writes one item (header or child) with the attributes in `attrs` (`None`: all) and the
/// children `p` asks for, at accessor `path` (`""` for the header).
fn render_object(
    map: &RawMap<'_>,
    path: &str,
    attrs: Option<&[String]>,
    p: &Params,
    self_href: &str,
    out: &mut String,
) -> std::result::Result<(), String> {
    out.push('{');
    let mut first = true;
    let mut sep = |out: &mut String| {
        if !std::mem::take(&mut first) {
            out.push(',');
        }
    };
    let mut child_links = Vec::new();
    let mut child_path = String::new();
    for (k, v) in map {
        let k: &str = &k.0;
        if is_child(v) {
            if !p.only_data {
                child_links.push(k);
            }
            child_path.clear();
            if !path.is_empty() {
                child_path.push_str(path);
                child_path.push('.');
            }
            child_path.push_str(k);
            let child_attrs = match p.fields.child(&child_path) {
                Served::No => continue,
                Served::All => None,
                Served::Only(a) => Some(a),
            };
            let items: Vec<RawMap<'_>> =
                serde_json::from_str(v.get()).map_err(|e| e.to_string())?;
            sep(out);
            push_key(out, k)?;
            let v3 = p.fields.framework >= 3;
            out.push_str(if v3 { "{\"items\":[" } else { "[" });
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let href = if p.only_data {
                    String::new()
                } else {
                    format!("{self_href}/child/{k}/{}", i + 1)
                };
                render_object(item, &child_path, child_attrs, p, &href, out)?;
            }
            if v3 {
                let n = items.len();
                let _ = write!(
                    out,
                    "],\"count\":{n},\"hasMore\":false,\"limit\":{n},\"offset\":0}}"
                );
            } else {
                out.push(']');
            }
            continue;
        }
        if attrs.is_some_and(|a| !a.iter().any(|f| f == k)) {
            continue;
        }
        sep(out);
        push_key(out, k)?;
        out.push_str(v.get());
    }
    if !p.only_data {
        let mut links = vec![
            serde_json::json!({"rel": "self", "href": self_href, "name": "item", "kind": "item"}),
        ];
        for k in child_links {
            links.push(serde_json::json!({
                "rel": "child", "href": format!("{self_href}/child/{k}"), "name": k, "kind": "collection",
            }));
        }
        sep(out);
        out.push_str("\"links\":");
        out.push_str(&serde_json::Value::Array(links).to_string());
    }
    out.push('}');
    Ok(())
}

fn render_item(
    raw: &RawValue,
    p: &Params,
    self_href: &str,
    out: &mut String,
) -> std::result::Result<(), String> {
    // Fast path: nothing to project and (no `[` at all) no child collection to omit.
    if !p.fields.projected && p.only_data && !raw.get().contains('[') {
        out.push_str(raw.get());
        return Ok(());
    }
    let map: RawMap<'_> = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    render_object(&map, "", p.fields.header.as_deref(), p, self_href, out)
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
    if let Some(refused) = refusal(&shared, &version, &headers) {
        return refused;
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
        if inner.refuse_or && p.filter.as_ref().is_some_and(Expr::has_or) {
            return adf_error(StatusCode::BAD_REQUEST, "q: `or` is not supported");
        }
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
            // Index order is (LastUpdateDate, InvoiceId) order, and the filters a cursor
            // sends are lower bounds in that order: the matching rows are a suffix, found
            // by binary search.
            let (mut lo, mut hi) = (0u64, s.n);
            if let Some(f) = &p.filter {
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    match synthetic_matches(s, &coll.key_attr, mid, f) {
                        Ok(true) => hi = mid,
                        Ok(false) => lo = mid + 1,
                        Err(e) => return adf_error(StatusCode::BAD_REQUEST, &e),
                    }
                }
            }
            let first = lo;
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
                let keep = match &p.filter {
                    None => true,
                    Some(f) => match row_matches(row, f) {
                        Ok(keep) => keep,
                        Err(e) => return adf_error(StatusCode::BAD_REQUEST, &e),
                    },
                };
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
