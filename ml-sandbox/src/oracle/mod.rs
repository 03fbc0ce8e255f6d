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
//! * `POST oauth2/v1/token`, served by the shared [`TokenIssuer`] (tokens
//!   `sbx-oracle-token-<n>`): `grant_type=client_credentials` (client id and secret by HTTP
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
//!   literal, quoted with `'` or `"` or bare; [`OracleEmulator::accept_date_literals`]
//!   narrows that to the forms one pod takes, 400 for the others: public clients disagree
//!   on the form and which ones a pod accepts is unconfirmed), numbers as numbers, others
//!   as text. Traps for keyset readers: [`OracleEmulator::refuse_disjunction`] (400 on `or`) and
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
//! * Pods differ by release: [`OracleEmulator::lack_attributes`] runs the pod as one whose
//!   resource has no such attributes. Naming one in `fields`, `q` or `orderBy` is HTTP 400
//!   with an ADF error body whose detail names the attribute and the parameter (Oracle's
//!   exact wording is unconfirmed: clients should not depend on it), and `describe`
//!   leaves it out. Other names a resource does not have are served as absent (a real
//!   pod answers 400 to those too).
//! * `GET .../<resource>/describe`: `{"Resources":{"<resource>":{"attributes":[{"name",
//!   "type","mandatory","queryable","updatable",...}]}}}` (see `describe.rs`; the
//!   attribute list is the resource's catalogue plus whatever stored items hold).
//! * Timestamps are served as `2026-03-20T14:53:51.123+00:00`; amounts as JSON numbers,
//!   served with their exact text.
//!
//! Data: [`OracleEmulator::upsert`] / [`upsert_raw`](OracleEmulator::upsert_raw) /
//! [`touch`](OracleEmulator::touch) / [`remove`](OracleEmulator::remove) change records
//! while a client runs; [`load_invoice_traps`](OracleEmulator::load_invoice_traps) loads a
//! backfill with the known traps; [`set_synthetic`](OracleEmulator::set_synthetic) serves
//! `n` invoices generated from their index (nothing held in memory), for big benches.
//!
//! The server, seed, clock and fault layer are the shared [`EmulatorCore`];
//! [`Emulator::env`] gives `ORACLE_FUSION_URL`, `ORACLE_FUSION_TOKEN_URL`,
//! `ORACLE_FUSION_CLIENT_ID` and `ORACLE_FUSION_CLIENT_SECRET`.
//!
//! Faults: the shared [`crate::fault`] layer; target a resource by its last path segment
//! (`"invoices"`, `"token"`), and count requests the same way.
//!
//! [`token_lifetime`]: OracleEmulatorBuilder::token_lifetime

mod auth;
mod collection;
mod describe;
mod fixtures;
mod query;
mod state;
mod write;

pub use auth::JWT_AUDIENCE;

/// How a date-time literal is written in `q` ([`OracleEmulator::accept_date_literals`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DateLiteralForm {
    /// `LastUpdateDate >= '2026-01-01T00:00:00Z'`.
    SingleQuoted,
    /// `LastUpdateDate >= "2026-01-01T00:00:00Z"`.
    DoubleQuoted,
    /// `LastUpdateDate >= 2026-01-01T00:00:00Z`.
    Bare,
}

impl DateLiteralForm {
    pub(crate) fn of(quote: Option<char>) -> Self {
        match quote {
            Some('\'') => Self::SingleQuoted,
            Some(_) => Self::DoubleQuoted,
            None => Self::Bare,
        }
    }
}
use auth::refusal;
pub use fixtures::{invoice_json, invoice_lines_json, oracle_ts, unvalidated_invoice_json};
use state::{Collection, Inner, Row, Shared, SortKey, Synthetic};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use jiff::Timestamp;
use ml_core::clock::Clock;
use serde_json::value::RawValue;

use crate::emulator::{Emulator, EmulatorCore, EmulatorOptions};
use crate::error::Result;
use crate::fault::Faults;
use crate::oauth2::TokenIssuer;

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
                date_literals: Vec::new(),
            }),
        });
        let router = Router::new()
            .route(
                "/fscmRestApi/resources/{version}/{resource}",
                get(collection::collection).post(write::create),
            )
            .route(
                "/fscmRestApi/resources/{version}/{resource}/describe",
                get(describe::describe),
            )
            .route(
                "/fscmRestApi/resources/{version}/{resource}/{key}",
                patch(write::update),
            )
            .route("/sandbox/oracle/{resource}", put(write::put_raw))
            .route("/oauth2/v1/token", post(auth::token))
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

    /// Runs this pod as a release whose `resource` has none of `attrs` (replacing any
    /// earlier list; empty: every attribute back, as after an upgrade). Naming one in
    /// `fields`, `q` or `orderBy` is then HTTP 400 naming it; it is left out of served
    /// items and of `describe`. A child collection's attribute is written
    /// `<accessor path>:<attribute>` (`invoiceLines.invoiceDistributions:DistributionLineType`):
    /// naming it in a `fields` child group is a 400, and it is left out of served children.
    ///
    /// # Panics
    /// When the resource is unknown (a test bug).
    pub fn lack_attributes(&self, resource: &str, attrs: &[&str]) {
        let mut inner = self.shared.lock();
        let Some(c) = inner.resources.get_mut(resource) else {
            panic!("unknown resource {resource}");
        };
        c.lacking = attrs.iter().map(|a| (*a).to_owned()).collect();
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

    /// Takes date-time literals in `q` only in these forms; a comparison of `LastUpdateDate`
    /// or `CreationDate` written otherwise is HTTP 400 naming the attribute and the value
    /// (as a pod whose parser wants one form would). An empty list takes every form again.
    pub fn accept_date_literals(&self, forms: &[DateLiteralForm]) {
        self.shared.lock().date_literals = forms.to_vec();
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
