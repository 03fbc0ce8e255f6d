//! The SAP Gateway OData v2 emulator, written from `shared/apis/sap-ecc.md` (e).
//!
//! Served at `<base_url>` = `http://127.0.0.1:<port>` (the Gateway host, no trailing
//! slash), under `/sap/opu/odata/sap/<SERVICE>/` (default service [`SERVICE`]):
//! * `GET <Set>` with `sap-client`, `$format=json` (or `Accept: application/json`; else an
//!   Atom XML answer a JSON client cannot read), `$filter`, `$orderby`, `$top`, `$skip`,
//!   `$skiptoken`, `$inlinecount=allpages`. Answer `{"d":{"results":[...],"__count":"N",
//!   "__next":"<absolute URL>"}}`; each entity carries `__metadata` (`uri`, `type`,
//!   `etag`), its stamp property `ChangedAt` as `/Date(<ms>)/` (Edm.DateTime, UTC,
//!   milliseconds), `Edm.Decimal` amounts and `Edm.Int64` counts as JSON strings.
//! * Server-driven paging: at most [`SapODataEmulator::set_max_page`] entities an answer
//!   (default [`DEFAULT_MAX_PAGE`], lower than clients usually ask), then `__next` with
//!   `$skiptoken=<offset>` into the same query (the emulator's skiptoken is a row offset,
//!   as many hand-written DPCs use: a row already served that changes mid-chain shifts
//!   the rest, which is the trap). `$top` bounds the whole chain.
//! * `GET <Set>('<key>')`: one entity `{"d":{...}}`; `GET` of the service root: the
//!   service document (`EntitySets`).
//! * CSRF: any `GET` with `X-CSRF-Token: Fetch` answers a token in `x-csrf-token` and the
//!   session cookies `SAP_SESSIONID_<SID>_<client>` and `sap-usercontext`. `POST <Set>`,
//!   `PUT`/`MERGE`/`PATCH`/`DELETE <Set>('<key>')` need the token **and** the session
//!   cookie it was issued with; otherwise 403 with `x-csrf-token: Required` and the body
//!   `CSRF token validation failed`. [`SapODataEmulator::expire_csrf_tokens`] invalidates
//!   every token (as a session timeout does). Writes stamp `ChangedAt` with the emulator
//!   clock, as the ABAP side would.
//! * Auth: HTTP Basic with the configured user, and `sap-client` equal to the configured
//!   client ([`CLIENT`]); a wrong user, password or client (or none: the system's default
//!   client is not ours) is 401 with an HTML body and `www-authenticate`.
//! * Errors: the v2 error JSON `{"error":{"code","message":{"lang","value"},
//!   "innererror":{"errordetails":[]}}}` (400 for a `$filter`, `$orderby`, `$top`,
//!   `$skip` or `$skiptoken` it cannot evaluate, 404 for an unknown set or key) with a
//!   `sap-message` header on write warnings. The error codes are the emulator's own
//!   (`/IWBEP/CM_MGW_RT/...`-shaped; the real codes per case are unconfirmed).
//!
//! Data: [`SapODataEmulator::upsert`] (any properties; the stamp given), `touch` (an
//! update of a served row), `insert_late` (a commit behind the frontier), and
//! [`load_traps`](SapODataEmulator::load_traps): ties (three rows per stamp), unicode
//! names, negative amounts and malformed amounts.
//!
//! Guesses (unconfirmed by the doc): the status of a logon failure (401), the shape of
//! the service document, that `$top` bounds the whole `__next` chain, and the Atom body.

mod filter;
mod http;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::any;
use jiff::Timestamp;
use ml_core::clock::Clock;
use serde_json::{Map, Value, json};

use crate::emulator::{Emulator, EmulatorCore, EmulatorOptions};
use crate::error::Result;
use crate::fault::Faults;

/// The default service.
pub const SERVICE: &str = "ZML_PO_SRV";
/// The default client.
pub const CLIENT: &str = "100";
/// The default user.
pub const USER: &str = "ML_RFC_USER";
/// The default password.
pub const PASSWORD: &str = "Init1234!";
/// The system id in the session cookie name.
pub const SID: &str = "ECC";
/// The stamp property of every set.
pub const STAMP: &str = "ChangedAt";
/// The default page cap of server-driven paging.
pub const DEFAULT_MAX_PAGE: usize = 100;
/// The built-in entity sets and their key properties.
pub const SETS: &[(&str, &str, &str)] = &[
    ("PurchaseOrderSet", "PurchaseOrder", "PurchaseOrder"),
    ("SupplierInvoiceSet", "InvoiceDocument", "SupplierInvoice"),
];

#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(crate) stamp: Timestamp,
    pub(crate) props: Map<String, Value>,
}

#[derive(Debug, Default)]
pub(crate) struct EntitySet {
    pub(crate) key: String,
    pub(crate) type_name: String,
    pub(crate) rows: BTreeMap<String, Row>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) sets: BTreeMap<String, EntitySet>,
    pub(crate) max_page: usize,
    /// token -> session id.
    pub(crate) csrf: BTreeMap<String, String>,
    pub(crate) next_id: u64,
}

pub(crate) struct Shared {
    pub(crate) service: String,
    pub(crate) client: String,
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) base_url: String,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) reads: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) csrf_fetches: AtomicU64,
    pub(crate) inner: Mutex<Inner>,
}

impl Shared {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Truncates to milliseconds: what `/Date(ms)/` can carry.
pub(crate) fn ms(t: Timestamp) -> Timestamp {
    Timestamp::from_millisecond(t.as_millisecond()).unwrap_or(t)
}

/// Configures a [`SapODataEmulator`].
pub struct SapODataEmulatorBuilder {
    options: EmulatorOptions,
    service: String,
    client: String,
}

impl Default for SapODataEmulatorBuilder {
    fn default() -> Self {
        Self {
            options: EmulatorOptions::new(0),
            service: SERVICE.into(),
            client: CLIENT.into(),
        }
    }
}

impl SapODataEmulatorBuilder {
    /// Seeds the fault layer's random draws.
    pub fn seed(mut self, seed: u64) -> Self {
        self.options.set_seed(seed);
        self
    }

    /// The clock that stamps writes.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.options.set_clock(clock);
        self
    }

    /// The service name served.
    pub fn service(mut self, s: impl Into<String>) -> Self {
        self.service = s.into();
        self
    }

    /// The SAP client accepted.
    pub fn client(mut self, c: impl Into<String>) -> Self {
        self.client = c.into();
        self
    }

    /// Binds 127.0.0.1 and starts serving.
    pub async fn start(self) -> Result<SapODataEmulator> {
        let bound = EmulatorCore::bind(&self.options, "", Arc::new(fault_body)).await?;
        let clock = Arc::clone(bound.core().clock());
        let sets = SETS
            .iter()
            .map(|(name, key, ty)| {
                (
                    (*name).to_owned(),
                    EntitySet {
                        key: (*key).to_owned(),
                        type_name: format!("{}.{ty}", self.service),
                        rows: BTreeMap::new(),
                    },
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            service: self.service,
            client: self.client,
            user: USER.into(),
            password: PASSWORD.into(),
            base_url: bound.root_url().trim_end_matches('/').to_owned(),
            clock,
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            csrf_fetches: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                sets,
                max_page: DEFAULT_MAX_PAGE,
                csrf: BTreeMap::new(),
                next_id: 1,
            }),
        });
        let router = Router::new()
            .route("/sap/opu/odata/sap/{service}/", any(http::service_root))
            .route("/sap/opu/odata/sap/{service}", any(http::service_root))
            .route(
                "/sap/opu/odata/sap/{service}/{resource}",
                any(http::resource),
            )
            .with_state(Arc::clone(&shared));
        Ok(SapODataEmulator {
            shared,
            core: bound.serve(router),
        })
    }
}

/// A running Gateway emulator; stops when dropped.
pub struct SapODataEmulator {
    shared: Arc<Shared>,
    core: EmulatorCore,
}

impl std::fmt::Debug for SapODataEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SapODataEmulator")
            .field("base_url", &self.core.base_url())
            .finish_non_exhaustive()
    }
}

impl Emulator for SapODataEmulator {
    fn core(&self) -> &EmulatorCore {
        &self.core
    }

    /// `SAP_ECC_URL`, `SAP_ECC_CLIENT`, `SAP_ECC_USER`, `SAP_ECC_PASSWORD`,
    /// `SAP_ECC_ODATA_SERVICE`.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SAP_ECC_URL", self.base_url().to_owned()),
            ("SAP_ECC_CLIENT", self.shared.client.clone()),
            ("SAP_ECC_USER", self.shared.user.clone()),
            ("SAP_ECC_PASSWORD", self.shared.password.clone()),
            ("SAP_ECC_ODATA_SERVICE", self.shared.service.clone()),
        ]
    }
}

/// A purchase order entity as the built-in set holds it: `NetAmount` an exact decimal
/// string, `ItemCount` an Int64 string.
pub fn purchase_order(key: &str, amount: &str, currency: &str, supplier: &str) -> Value {
    json!({
        "PurchaseOrder": key,
        "CompanyCode": "1000",
        "Supplier": "0000100001",
        "SupplierName": supplier,
        "NetAmount": amount,
        "Currency": currency,
        "ItemCount": "3",
        "Status": "09",
    })
}

impl SapODataEmulator {
    /// Starts an emulator with the defaults.
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// Configures an emulator.
    pub fn builder() -> SapODataEmulatorBuilder {
        SapODataEmulatorBuilder::default()
    }

    /// `http://127.0.0.1:<port>` (`SAP_ECC_URL`).
    pub fn base_url(&self) -> &str {
        self.core.base_url()
    }

    /// The service root URL, with a trailing slash.
    pub fn service_url(&self) -> String {
        format!(
            "{}/sap/opu/odata/sap/{}/",
            self.base_url(),
            self.shared.service
        )
    }

    /// The Basic user.
    pub fn user(&self) -> &str {
        &self.shared.user
    }

    /// The Basic password.
    pub fn password(&self) -> &str {
        &self.shared.password
    }

    /// The client.
    pub fn client(&self) -> &str {
        &self.shared.client
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// The fault rules and per-path request counters (target: the last path segment,
    /// e.g. `"PurchaseOrderSet"`).
    pub fn faults(&self) -> &Faults {
        self.core.faults()
    }

    /// Authorised collection and entity reads answered.
    pub fn reads(&self) -> u64 {
        self.shared.reads.load(Ordering::Relaxed)
    }

    /// Writes applied.
    pub fn writes(&self) -> u64 {
        self.shared.writes.load(Ordering::Relaxed)
    }

    /// CSRF tokens issued (`X-CSRF-Token: Fetch` answered).
    pub fn csrf_fetches(&self) -> u64 {
        self.shared.csrf_fetches.load(Ordering::Relaxed)
    }

    /// The most entities one answer holds before `__next`.
    pub fn set_max_page(&self, n: usize) {
        self.shared.lock().max_page = n.max(1);
    }

    /// Invalidates every CSRF token (a session timeout).
    pub fn expire_csrf_tokens(&self) {
        self.shared.lock().csrf.clear();
    }

    /// Adds an entity set keyed by `key`.
    pub fn define_set(&self, set: &str, key: &str) {
        let type_name = format!("{}.{}", self.shared.service, set.trim_end_matches("Set"));
        self.shared.lock().sets.insert(
            set.to_owned(),
            EntitySet {
                key: key.to_owned(),
                type_name,
                rows: BTreeMap::new(),
            },
        );
    }

    /// Inserts or replaces an entity (by the set's key property) with the stamp `at`
    /// (truncated to milliseconds).
    ///
    /// # Panics
    /// When `props` is not an object with the key, or the set is unknown: a test bug.
    pub fn upsert(&self, set: &str, props: &Value, at: Timestamp) {
        let mut inner = self.shared.lock();
        let s = inner
            .sets
            .get_mut(set)
            .unwrap_or_else(|| panic!("unknown set {set}"));
        let Some(map) = props.as_object() else {
            panic!("not an object");
        };
        let key = map
            .get(&s.key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no key {}", s.key))
            .to_owned();
        let mut props = map.clone();
        props.remove(STAMP);
        props.remove("__metadata");
        s.rows.insert(
            key,
            Row {
                stamp: ms(at),
                props,
            },
        );
    }

    /// A commit behind the frontier: the same as [`upsert`](Self::upsert), named for
    /// what the test stages.
    pub fn insert_late(&self, set: &str, props: &Value, at: Timestamp) {
        self.upsert(set, props, at);
    }

    /// Updates a served entity: its stamp moves to `at`, and optionally one property
    /// changes. False when there is no such entity.
    pub fn touch(&self, set: &str, key: &str, at: Timestamp, prop: Option<(&str, Value)>) -> bool {
        let mut inner = self.shared.lock();
        let Some(row) = inner.sets.get_mut(set).and_then(|s| s.rows.get_mut(key)) else {
            return false;
        };
        row.stamp = ms(at);
        if let Some((p, v)) = prop {
            row.props.insert(p.to_owned(), v);
        }
        true
    }

    /// The entity's properties and stamp, when it exists.
    pub fn get(&self, set: &str, key: &str) -> Option<(Map<String, Value>, Timestamp)> {
        let inner = self.shared.lock();
        let row = inner.sets.get(set)?.rows.get(key)?;
        Some((row.props.clone(), row.stamp))
    }

    /// How many entities a set holds.
    pub fn len(&self, set: &str) -> usize {
        self.shared.lock().sets.get(set).map_or(0, |s| s.rows.len())
    }

    /// Whether a set is empty.
    pub fn is_empty(&self, set: &str) -> bool {
        self.len(set) == 0
    }

    /// Loads `n` purchase orders `4500000001..` with the traps: three per stamp (ties; a
    /// stamp every `step_ms`), unicode supplier names, every 7th amount negative, and
    /// every 500th amount malformed (`"12,50"`, as a badly converted field would be).
    /// Returns the keys of the malformed ones.
    pub fn load_traps(&self, n: u64, start: Timestamp, step_ms: i64) -> BTreeSet<String> {
        const NAMES: [&str; 4] = [
            "Müller GmbH",
            "株式会社テスト",
            "Ørsted A/S",
            "Plain Supplier Inc",
        ];
        let mut bad = BTreeSet::new();
        for i in 1..=n {
            let key = format!("{:010}", 4_500_000_000 + i);
            let amount = if i % 500 == 0 {
                bad.insert(key.clone());
                "12,50".to_owned()
            } else if i % 7 == 0 {
                format!("-{i}.05")
            } else {
                format!("{i}.25")
            };
            let at = start + jiff::SignedDuration::from_millis(((i - 1) / 3) as i64 * step_ms);
            self.upsert(
                "PurchaseOrderSet",
                &purchase_order(&key, &amount, "EUR", NAMES[(i % 4) as usize]),
                at,
            );
        }
        bad
    }
}

/// The body of an injected fault: the v2 error JSON.
fn fault_body(status: u16) -> (String, String) {
    (
        "application/json".into(),
        json!({"error": {"code": "/IWBEP/CM_MGW_RT/000", "message": {"lang": "en", "value": format!("HTTP {status}")}, "innererror": {"errordetails": []}}}).to_string(),
    )
}
