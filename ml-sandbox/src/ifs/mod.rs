//! The IFS Cloud emulator: IFS IAM (Keycloak) client-credentials tokens and OData v4
//! projections, written from `shared/apis/ifs-cloud.md`.
//!
//! Served at `<base_url>` = `http://127.0.0.1:<port>` (the environment URL, `IFS_URL`):
//! * `POST auth/realms/<realm>/protocol/openid-connect/token`: the shared
//!   [`TokenIssuer`] (client id/secret by HTTP Basic or form fields,
//!   `grant_type=client_credentials`, `scope` recorded); tokens live 180 s as IFS IAM's
//!   do ([`IfsEmulatorBuilder::token_lifetime`]); another realm is 404.
//! * `{main|int}/ifsapplications/projection/v1/<Projection>.svc/...`, bearer token
//!   required (401 otherwise):
//!   - `GET <Set>`: `$filter` (see `filter.rs`: comparisons, `and`/`or`/`not`,
//!     `startswith`/`endswith`/`contains`, typed literals; a quoted DateTimeOffset, an
//!     unknown property, `has` or lambdas are 400/501 with an OData error body),
//!     `$select`, `$orderby` (default: by key), `$top`, `$skip`, `$count=true`,
//!     `$skiptoken`; `$expand`/`$apply` answer 501 `ODP_NOT_IMPLEMENTED`; unknown `$`
//!     options 400. Query strings are form-decoded as servlet containers do: a `+`
//!     not sent as `%2B` arrives as a space and breaks a `+01:00` literal (400).
//!   - Server paging by OFFSET: pages of `min(Prefer: odata.maxpagesize, cap)` rows (cap
//!     [`DEFAULT_MAX_PAGE`] = 5000, [`IfsEmulator::set_max_page_size`]), answered with
//!     `Preference-Applied`, and an `@odata.nextLink` carrying `$skiptoken=<offset>`
//!     recomputed on the data as it is when followed: rows edited or inserted between
//!     two pages shift it (the trap a reader must survive).
//!   - `GET <Set>(<keys>)`: one entity with `@odata.context`, `@odata.etag` and an
//!     `ETag` header; 404 `ODP_RESOURCE_NOTFOUND`; a key literal of the wrong type 400.
//!   - `POST <Set>(<keys>)/IfsApp.<Projection>.<Entity>_<Action>` (bound actions,
//!     `Content-Type: application/json` else 415): without `If-Match` 428, with a stale
//!     one 412, in a state the action does not allow 400 (`FND_STATE_ERROR`), on an
//!     action denied with [`IfsEmulator::deny_action`] 403; success 204 with the new
//!     `ETag`. Every call is kept ([`IfsEmulator::action_calls`]).
//!   - `PATCH <Set>(<keys>)` with `If-Match` (same 428/412), `POST <Set>` to create.
//!   - Every write bumps the row's version (a new ETag) and stamps `ModifiedDateTime` with
//!     the emulator clock truncated to the second (IFS stores Oracle `DATE`s: ties).
//! * Values: Edm.Decimal as JSON strings only when `Accept` has `IEEE754Compatible=true`
//!   (numbers otherwise, exact text); Edm.DateTimeOffset in UTC only with
//!   `X-Ifs-Time-Zone-Aware-Request: true`. Without it (the time-zone trap) the server
//!   writes the site's wall-clock time (default `Europe/Stockholm`) still suffixed `Z`,
//!   and reads filter literals as site wall-clock time even when they say `Z`.
//! * The history log, `HistoryLogHandling.svc/HistoryLogOverviewSet` (see `history.rs`):
//!   read-only, served like any entity set; an entry per insert and update of an entity
//!   whose LU has logging enabled ([`IfsEmulator::enable_history_log`]), none otherwise;
//!   403 / 404 when not granted / not installed ([`IfsEmulator::set_history_access`]);
//!   [`IfsEmulator::append_history_entry`] adds a late entry,
//!   [`IfsEmulator::update_unstamped`] changes a row without its stamp.
//! * [`IfsEmulator::metadata_refresh`]: the next `n` projection requests answer 503
//!   `MI_MODIFIED_ERROR` with `Retry-After: 1`.
//!
//! Guesses (the API notes leave them unconfirmed): projection names other than
//! `PurchaseOrderHandling` / `SuppliersHandling`, the `ModifiedDateTime` attribute, the
//! error codes of 412/428/400 (`ODP_PRECONDITION_FAILED`, `ODP_PRECONDITION_REQUIRED`,
//! `FND_STATE_ERROR`), invoice states (`AwaitingApproval` -> `Approved` / `Rejected`),
//! the ETag format, and 204 for actions.
//!
//! The server, seed, clock and fault layer are the shared [`EmulatorCore`] (fault targets:
//! the last path segment, e.g. `"ManSuppInvoiceSet"`, `"token"`); [`Emulator::env`]
//! gives `IFS_URL`, `IFS_REALM`, `IFS_CLIENT_ID`, `IFS_CLIENT_SECRET`.

mod data;
mod filter;
mod handlers;
mod history;

pub use data::{ActionDef, EntitySetDef, PropType};
pub use history::{HISTORY_PROJECTION, HISTORY_SET, HISTORY_USER, HistoryAccess};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{any, post};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use ml_core::clock::Clock;
use serde_json::{Value, json};

use crate::emulator::{Emulator, EmulatorCore, EmulatorOptions};
use crate::error::Result;
use crate::fault::Faults;
use crate::oauth2::TokenIssuer;
use data::{Row, SetData, Val};

/// The default server page cap.
pub const DEFAULT_MAX_PAGE: usize = 5000;
/// The default realm.
pub const REALM: &str = "ifs-sandbox";
/// The default IAM client id.
pub const CLIENT_ID: &str = "ml-connector";
/// The default IAM client secret.
pub const CLIENT_SECRET: &str = "sandbox-ifs-secret";
/// The default site time zone (the time-zone trap).
pub const SITE_TIME_ZONE: &str = "Europe/Stockholm";

/// One bound action request that reached the action checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionCall {
    /// The entity set.
    pub set: String,
    /// The key values.
    pub key: Vec<String>,
    /// The action (`Approve`).
    pub action: String,
    /// The `If-Match` sent.
    pub if_match: Option<String>,
    /// The status answered (204 when applied).
    pub status: u16,
}

pub(super) struct Inner {
    sets: BTreeMap<String, SetData>,
    site_tz: TimeZone,
    actions: Vec<ActionCall>,
    /// Applied when the next bound action arrives, before its checks (a user editing the
    /// record between a client's read and its action).
    edit_before_action: Option<(String, Vec<String>, Value)>,
    /// The history log (`HistoryLogHandling`).
    history: history::HistoryLog,
}

pub(super) struct Shared {
    issuer: TokenIssuer,
    clock: Arc<dyn Clock>,
    realm: String,
    root: String,
    mi_burst: AtomicU64,
    max_page: AtomicUsize,
    next_rowid: AtomicU64,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `http://127.0.0.1:<port>/main/ifsapplications/projection/v1`.
    fn service_base(&self) -> String {
        format!("{}/main/ifsapplications/projection/v1", self.root)
    }

    /// Now, truncated to the second (IFS `DATE` columns).
    fn stamp_now(&self) -> Timestamp {
        Timestamp::from_second(self.clock.now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// Creates a row from JSON (the stamp, when absent, is now).
    fn insert_value(&self, set: &str, v: &Value) -> std::result::Result<Vec<String>, String> {
        let stamp_now = self.stamp_now();
        let mut inner = self.lock();
        let data = inner
            .sets
            .get_mut(set)
            .ok_or_else(|| format!("no entity set {set}"))?;
        let mut row = Row {
            values: BTreeMap::new(),
            version: 1,
            rowid: self.next_rowid.fetch_add(1, Ordering::Relaxed),
        };
        handlers::apply_changes(data, &mut row, v, true)?;
        row.values
            .entry(data.def.stamp.clone())
            .or_insert(Val::Dto(stamp_now));
        let key = data
            .key_of(&row.values)
            .ok_or_else(|| format!("every key property is required: {:?}", data.def.keys))?;
        if data.rows.contains_key(&key) {
            return Err(format!("an entity with key {key:?} exists"));
        }
        data.rows.insert(key.clone(), row);
        history::log_change(&mut inner, set, &key, "Insert", stamp_now);
        Ok(key)
    }
}

/// A data change the emulator refused (unknown set or property, wrong type, duplicate
/// key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("IFS emulator: {0}")]
pub struct DataError(pub String);

/// Configures an [`IfsEmulator`].
pub struct IfsEmulatorBuilder {
    options: EmulatorOptions,
    token_lifetime: Duration,
    site_tz: TimeZone,
}

impl Default for IfsEmulatorBuilder {
    fn default() -> Self {
        Self {
            options: EmulatorOptions::new(0),
            token_lifetime: Duration::from_secs(180),
            site_tz: TimeZone::get(SITE_TIME_ZONE).unwrap_or(TimeZone::UTC),
        }
    }
}

impl IfsEmulatorBuilder {
    /// Seeds the fault layer's random draws.
    pub fn seed(mut self, seed: u64) -> Self {
        self.options.set_seed(seed);
        self
    }

    /// The clock (token expiry, stamps).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.options.set_clock(clock);
        self
    }

    /// How long issued tokens live (default 180 s).
    pub fn token_lifetime(mut self, d: Duration) -> Self {
        self.token_lifetime = d;
        self
    }

    /// The site's zone (the time-zone trap; default `Europe/Stockholm`).
    pub fn site_time_zone(mut self, tz: TimeZone) -> Self {
        self.site_tz = tz;
        self
    }

    /// Binds 127.0.0.1 and starts serving.
    pub async fn start(self) -> Result<IfsEmulator> {
        let site_tz = self.site_tz;
        let bound = EmulatorCore::bind(&self.options, "", Arc::new(fault_body)).await?;
        let clock = Arc::clone(bound.core().clock());
        let sets = data::builtin_sets()
            .into_iter()
            .chain([history::history_def()])
            .map(|def| {
                (
                    format!("{}.svc/{}", def.projection, def.set),
                    SetData {
                        def,
                        rows: BTreeMap::new(),
                        denied: Vec::new(),
                    },
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            issuer: TokenIssuer::new(
                "sbx-ifs-token",
                CLIENT_ID,
                CLIENT_SECRET,
                "ifs",
                self.token_lifetime,
                Arc::clone(&clock),
            ),
            clock,
            realm: REALM.into(),
            root: bound.root_url().trim_end_matches('/').to_owned(),
            mi_burst: AtomicU64::new(0),
            max_page: AtomicUsize::new(DEFAULT_MAX_PAGE),
            next_rowid: AtomicU64::new(1),
            inner: Mutex::new(Inner {
                sets,
                site_tz,
                actions: Vec::new(),
                edit_before_action: None,
                history: history::HistoryLog::default(),
            }),
        });
        let router = Router::new()
            .route(
                "/auth/realms/{realm}/protocol/openid-connect/token",
                post(handlers::token),
            )
            .route(
                "/{area}/ifsapplications/projection/v1/{*rest}",
                any(handlers::projection),
            )
            .with_state(Arc::clone(&shared));
        Ok(IfsEmulator {
            shared,
            core: bound.serve(router),
        })
    }
}

/// A running IFS emulator; stops when dropped.
pub struct IfsEmulator {
    shared: Arc<Shared>,
    core: EmulatorCore,
}

impl std::fmt::Debug for IfsEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IfsEmulator")
            .field("base_url", &self.core.base_url())
            .finish_non_exhaustive()
    }
}

impl Emulator for IfsEmulator {
    fn core(&self) -> &EmulatorCore {
        &self.core
    }

    /// `IFS_URL`, `IFS_REALM`, `IFS_CLIENT_ID`, `IFS_CLIENT_SECRET`.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("IFS_URL", self.base_url().to_owned()),
            ("IFS_REALM", self.realm().to_owned()),
            ("IFS_CLIENT_ID", self.client_id().to_owned()),
            ("IFS_CLIENT_SECRET", self.client_secret().to_owned()),
        ]
    }
}

impl IfsEmulator {
    /// Starts an emulator with the defaults (no rows).
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// Configures an emulator.
    pub fn builder() -> IfsEmulatorBuilder {
        IfsEmulatorBuilder::default()
    }

    /// The environment URL, `http://127.0.0.1:<port>` (`IFS_URL`).
    pub fn base_url(&self) -> &str {
        self.core.base_url()
    }

    /// The service root of UI projections.
    pub fn service_root(&self) -> String {
        self.shared.service_base()
    }

    /// The IAM realm.
    pub fn realm(&self) -> &str {
        &self.shared.realm
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!(
            "{}/auth/realms/{}/protocol/openid-connect/token",
            self.base_url(),
            self.realm()
        )
    }

    /// The IAM client id.
    pub fn client_id(&self) -> &str {
        self.shared.issuer.client_id()
    }

    /// The IAM client secret.
    pub fn client_secret(&self) -> &str {
        self.shared.issuer.client_secret()
    }

    /// The token issuer (expire tokens, count them, read scopes).
    pub fn issuer(&self) -> &TokenIssuer {
        &self.shared.issuer
    }

    /// The fault rules and per-path request counters.
    pub fn faults(&self) -> &Faults {
        self.core.faults()
    }

    /// The next `n` projection requests answer 503 `MI_MODIFIED_ERROR`.
    pub fn metadata_refresh(&self, n: u64) {
        self.shared.mi_burst.store(n, Ordering::SeqCst);
    }

    /// The server's page cap (default 5000).
    pub fn set_max_page_size(&self, n: usize) {
        self.shared.max_page.store(n.max(1), Ordering::Relaxed);
    }

    /// Adds (or replaces) an entity set.
    pub fn define_entity_set(&self, def: EntitySetDef) {
        let key = format!("{}.svc/{}", def.projection, def.set);
        self.shared.lock().sets.insert(
            key,
            SetData {
                def,
                rows: BTreeMap::new(),
                denied: Vec::new(),
            },
        );
    }

    /// Removes `prop` from the entity set `set` (every projection serving it), as a release
    /// or a tailoring without the attribute: it is no longer served, and naming it in
    /// `$select`, `$filter` or `$orderby` is a 400.
    pub fn remove_property(&self, set: &str, prop: &str) {
        for data in self.shared.lock().sets.values_mut() {
            if data.def.set == set {
                data.def.props.retain(|(n, _)| n != prop);
            }
        }
    }

    /// The integration user lacks the permission for `action` on `set` (403).
    pub fn deny_action(&self, set: &str, action: &str) {
        let mut inner = self.shared.lock();
        for d in inner.sets.values_mut().filter(|d| d.def.set == set) {
            d.denied.push(action.to_owned());
        }
    }

    fn set_path(&self, set: &str) -> std::result::Result<String, DataError> {
        self.shared
            .lock()
            .sets
            .iter()
            .find(|(_, d)| d.def.set == set)
            .map(|(k, _)| k.clone())
            .ok_or_else(|| DataError(format!("no entity set {set}")))
    }

    /// Creates an entity in `set` (by entity set name). Values are JSON (decimals as
    /// strings for exactness); `ModifiedDateTime` given is kept (a late commit), else now.
    pub fn insert(&self, set: &str, v: &Value) -> std::result::Result<Vec<String>, DataError> {
        let path = self.set_path(set)?;
        self.shared.insert_value(&path, v).map_err(DataError)
    }

    /// Changes an entity as a user in IFS would: new version (ETag), stamp now.
    pub fn update(
        &self,
        set: &str,
        key: &[&str],
        changes: &Value,
    ) -> std::result::Result<String, DataError> {
        self.change(set, key, changes, true)
    }

    /// A new version of an entity (the history log records it when enabled), its stamp
    /// set to now when `stamped`.
    fn change(
        &self,
        set: &str,
        key: &[&str],
        changes: &Value,
        stamped: bool,
    ) -> std::result::Result<String, DataError> {
        let path = self.set_path(set)?;
        let stamp = self.shared.stamp_now();
        let mut inner = self.shared.lock();
        let data = inner
            .sets
            .get_mut(&path)
            .ok_or_else(|| DataError(format!("no entity set {set}")))?;
        let k: Vec<String> = key.iter().map(|s| (*s).to_owned()).collect();
        let mut row = data
            .rows
            .get(&k)
            .cloned()
            .ok_or_else(|| DataError(format!("no entity {k:?} in {set}")))?;
        handlers::apply_changes(data, &mut row, changes, false).map_err(DataError)?;
        row.version += 1;
        if stamped {
            row.values.insert(data.def.stamp.clone(), Val::Dto(stamp));
        }
        let etag = row.etag();
        data.rows.insert(k.clone(), row);
        history::log_change(&mut inner, &path, &k, "Update", stamp);
        Ok(etag)
    }

    /// Enables history logging for the LU `lu` (the entity type name, `ManSuppInvoice`):
    /// from now on its inserts and updates get history-log entries.
    pub fn enable_history_log(&self, lu: &str) {
        self.shared.lock().history.enabled.insert(lu.to_owned());
    }

    /// Turns history logging for `lu` off again (changes go unlogged).
    pub fn disable_history_log(&self, lu: &str) {
        self.shared.lock().history.enabled.remove(lu);
    }

    /// Whether the integration user may read `HistoryLogHandling` (403 / 404 otherwise).
    pub fn set_history_access(&self, access: HistoryAccess) {
        self.shared.lock().history.access = access;
    }

    /// Appends a history entry for `lu` as a transaction that commits late would: with
    /// the given `at` (earlier than entries already visible). `key` in the LU's key order.
    pub fn append_history_entry(
        &self,
        set: &str,
        key: &[&str],
        history_type: &str,
        at: Timestamp,
    ) -> std::result::Result<(), DataError> {
        let path = self.set_path(set)?;
        let mut inner = self.shared.lock();
        let def = inner
            .sets
            .get(&path)
            .map(|d| d.def.clone())
            .ok_or_else(|| DataError(format!("no entity set {set}")))?;
        let keys = history::keys_text(&def.keys, key);
        history::append(&mut inner, &def.entity, &keys, history_type, at);
        Ok(())
    }

    /// How many history-log entries exist.
    pub fn history_entries(&self) -> usize {
        self.count(HISTORY_SET)
    }

    /// Changes an entity without touching the stamp attribute (an entity set whose
    /// modification date is not maintained: what the history log is for); the ETag
    /// changes, and the history log records it when enabled.
    pub fn update_unstamped(
        &self,
        set: &str,
        key: &[&str],
        changes: &Value,
    ) -> std::result::Result<String, DataError> {
        self.change(set, key, changes, false)
    }

    /// An entity's JSON as served time-zone aware with decimals as strings.
    pub fn get(&self, set: &str, key: &[&str]) -> Option<Value> {
        let path = self.set_path(set).ok()?;
        let inner = self.shared.lock();
        let data = inner.sets.get(&path)?;
        let k: Vec<String> = key.iter().map(|s| (*s).to_owned()).collect();
        let row = data.rows.get(&k)?;
        let render = data::Render {
            ieee754: true,
            tz_aware: true,
            site_tz: inner.site_tz.clone(),
        };
        serde_json::from_str(&row.to_json(&data.def, &render, None, None)).ok()
    }

    /// How many entities `set` holds.
    pub fn count(&self, set: &str) -> usize {
        let Ok(path) = self.set_path(set) else {
            return 0;
        };
        self.shared
            .lock()
            .sets
            .get(&path)
            .map_or(0, |d| d.rows.len())
    }

    /// When the next bound action request arrives, first applies `changes` to the entity
    /// `key` of `set` as a user would (new ETag): the race between a client's re-read and
    /// its action, made deterministic.
    pub fn edit_before_next_action(&self, set: &str, key: &[&str], changes: Value) {
        self.shared.lock().edit_before_action = Some((
            set.to_owned(),
            key.iter().map(|s| (*s).to_owned()).collect(),
            changes,
        ));
    }

    /// Every bound action call that reached the checks, in order.
    pub fn action_calls(&self) -> Vec<ActionCall> {
        self.shared.lock().actions.clone()
    }

    /// Loads `n` supplier invoices of `company` (`InvoiceId` 1..=n) awaiting approval,
    /// `per_second` sharing each `ModifiedDateTime` from `start` (ties), amounts with
    /// cents, a few negative (credit notes) and a unicode supplier name.
    pub fn load_invoices(
        &self,
        company: &str,
        n: u64,
        start: Timestamp,
        per_second: u64,
    ) -> std::result::Result<(), DataError> {
        for i in 1..=n {
            let t = start + jiff::SignedDuration::from_secs((i / per_second.max(1)) as i64);
            let amount = if i % 17 == 0 {
                format!("-{}.{:02}", i % 1000, i % 100)
            } else {
                format!("{}.{:02}", 100 + i, i % 100)
            };
            self.insert(
                "ManSuppInvoiceSet",
                &invoice(company, i, &amount, "AwaitingApproval", Some(t)),
            )?;
        }
        Ok(())
    }

    /// A small demo: suppliers, purchase orders and invoices awaiting approval in
    /// company `10`, stamped an hour ago.
    pub fn seed_demo(&self) -> std::result::Result<(), DataError> {
        let t = self.shared.stamp_now() - jiff::SignedDuration::from_secs(3600);
        for (no, name) in [
            ("S100", "Nordic Steel AB"),
            ("S200", "Müller Industrietechnik GmbH"),
        ] {
            self.insert(
                "SupplierInfoGeneralSet",
                &json!({"VendorNo": no, "VendorName": name, "Country": "SE", "ModifiedDateTime": t.to_string()}),
            )?;
        }
        for (i, (no, amount)) in [("P1001", "12500.00"), ("P1002", "830.40")]
            .iter()
            .enumerate()
        {
            self.insert(
                "PurchaseOrderSet",
                &json!({"OrderNo": no, "Company": "10", "VendorNo": "S100", "VendorName": "Nordic Steel AB",
                        "Objstate": "Released", "Contract": "SE01", "OrderDate": "2026-03-02",
                        "TotalGrossAmount": amount, "CurrencyCode": "SEK",
                        "ModifiedDateTime": (t + jiff::SignedDuration::from_secs(i as i64)).to_string()}),
            )?;
        }
        for (id, amount) in [(5001, "4410.50"), (5002, "-120.00"), (5003, "98000.00")] {
            self.insert(
                "ManSuppInvoiceSet",
                &invoice("10", id, amount, "AwaitingApproval", Some(t)),
            )?;
        }
        Ok(())
    }
}

/// A supplier invoice entity as [`IfsEmulator::insert`] takes it.
pub fn invoice(
    company: &str,
    id: u64,
    amount: &str,
    state: &str,
    stamp: Option<Timestamp>,
) -> Value {
    let mut v = json!({
        "Company": company,
        "InvoiceId": id,
        "InvoiceNo": format!("INV-{id}"),
        "Identity": format!("S{}", 100 + id % 7),
        "IdentityName": if id.is_multiple_of(5) { "Åkesson & Söner AB" } else { "Nordic Steel AB" },
        "Objstate": state,
        "InvoiceDate": "2026-03-01",
        "DueDate": "2026-03-31",
        "GrossAmount": amount,
        "Currency": "SEK",
    });
    if let Some(t) = stamp {
        v["ModifiedDateTime"] = Value::from(t.to_string());
    }
    v
}

fn fault_body(status: u16) -> (String, String) {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let code = if status == 429 {
        "ODP_TOO_MANY_REQUESTS"
    } else {
        "ODP_SERVER_ERROR"
    };
    (
        "application/json".into(),
        json!({"error": {"code": code, "message": reason}}).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client-credentials access token of `e` (also for the history log's tests).
    pub(super) async fn token(e: &IfsEmulator, http: &reqwest::Client) -> String {
        let v: Value = http
            .post(e.token_url())
            .basic_auth(e.client_id(), Some(e.client_secret()))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("json");
        assert_eq!(v["expires_in"], 180);
        v["access_token"].as_str().expect("token").to_owned()
    }

    #[tokio::test]
    async fn projections_are_strict_like_ifs() {
        let e = IfsEmulator::start().await.expect("start");
        let t0 = Timestamp::from_second(1_780_000_000).expect("t");
        for i in 1..=5 {
            e.insert(
                "ManSuppInvoiceSet",
                &invoice("10", i, "1.10", "AwaitingApproval", Some(t0)),
            )
            .expect("insert");
        }
        let http = ml_core::http::ClientOptions::default()
            .client()
            .expect("http");
        let set = format!(
            "{}/ManualSupplierInvoiceHandling.svc/ManSuppInvoiceSet",
            e.service_root()
        );
        let wrong_realm = e.token_url().replace(REALM, "other");
        let r = http.post(wrong_realm).send().await.expect("realm");
        assert_eq!(r.status().as_u16(), 404);
        assert_eq!(
            http.get(&set).send().await.expect("anon").status().as_u16(),
            401
        );
        let bearer = token(&e, &http).await;
        let get = |q: &str| {
            http.get(format!("{set}?{q}"))
                .bearer_auth(&bearer)
                .header("accept", "application/json;IEEE754Compatible=true")
                .header("x-ifs-time-zone-aware-request", "true")
                .header("prefer", "odata.maxpagesize=2")
        };
        let r = get("$orderby=InvoiceId%20asc").send().await.expect("page");
        assert_eq!(
            r.headers()["preference-applied"].to_str().expect("h"),
            "odata.maxpagesize=2"
        );
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["value"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            v["value"][0]["GrossAmount"], "1.10",
            "IEEE754Compatible: a string"
        );
        assert!(v["value"][0]["@odata.etag"].as_str().is_some());
        let next = v["@odata.nextLink"].as_str().expect("next");
        assert!(next.ends_with("$skiptoken=2"), "{next}");
        for (q, status) in [
            ("$expand=Lines", 501),
            ("$foo=1", 400),
            // `+` sent raw arrives as a space.
            (
                "$filter=ModifiedDateTime%20gt%202026-01-01T00:00:00+01:00",
                400,
            ),
            (
                "$filter=ModifiedDateTime%20gt%20'2026-01-01T00:00:00Z'",
                400,
            ),
            (
                "$filter=ModifiedDateTime%20gt%202026-01-01T00:00:00%2B01:00",
                200,
            ),
            ("$top=-1", 400),
        ] {
            let r = get(q).send().await.expect("q");
            assert_eq!(r.status().as_u16(), status, "{q}");
        }
        e.metadata_refresh(1);
        let r = get("").send().await.expect("503");
        assert_eq!(r.status().as_u16(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["code"], "MI_MODIFIED_ERROR");
        let one = format!("{set}(Company='10',InvoiceId=1)");
        let r = http
            .get(&one)
            .bearer_auth(&bearer)
            .send()
            .await
            .expect("one");
        assert!(r.headers().contains_key("etag"));
        let bad_key = format!("{set}(Company='10',InvoiceId='1')");
        let r = http
            .get(&bad_key)
            .bearer_auth(&bearer)
            .send()
            .await
            .expect("bad");
        assert_eq!(r.status().as_u16(), 400);
    }
}
