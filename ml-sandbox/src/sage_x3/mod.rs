//! The Sage X3 emulator: Syracuse REST **api1**, the **GraphQL** API, and the X3 Cloud
//! token API with rotating refresh tokens. Written from `shared/apis/sage-x3.md`; where the
//! doc marks something unconfirmed, the choice made here is said below.
//!
//! Served at `<base_url>` = `http://127.0.0.1:<port>/`:
//! * `GET api1/x3/erp/<FOLDER>/<CLASS>?representation=<REPR>.$query` for `PORDER`,
//!   `PINVOICE`, `GACCENTRY` (key `TYP~NUM`, lines in `GACCENTRYD`), `BPSUPPLIER`. Folder
//!   [`FOLDER`] (`SEED`); another folder, class or representation is 404; a facet other
//!   than `$query` or no `representation` is 400.
//!   - `count` (default 20, **clamped** to [`MAX_COUNT`]; `$itemsPerPage` echoes it),
//!     `where` (SData: `eq ne lt le gt ge`, `and`, `or`, `not`, parentheses, `left(P,n)`;
//!     `'text'` with `''`, `@date@` / `@date-time@` literals, numbers; `UPDDATTIM` compares
//!     as an instant, a literal without offset read in the emulator's zone),
//!     `orderBy=P asc|desc,...`, `key=gt.<k>` (`ge.`, `lt.`, `le.`; composite keys joined
//!     by `~`).
//!   - **An unknown property in `where` or `orderBy` is HTTP 500** with `$diagnoses`
//!     (`[{"$severity":"error","$message":"Property 'X' does not exist in representation R"}]`),
//!     as X3 does. [`SageX3Emulator::lack_properties`] runs a release whose
//!     representation lacks properties (left out of resources too).
//!   - Envelope: `{"$itemsPerPage","$resources":[{"$key":…,…}],"$links":{"$next":{"$url",
//!     "$type","$method"}}}`, `$next` only when more rows match. **`$next` continues with
//!     `key=gt.<last key served>` whatever the `orderBy`** (the trap: a stamp-ordered scan
//!     following it skips lower keys with later stamps).
//!   - `UPDDATTIM` is served `2026-03-20T14:53:51Z` (UTC) or, with
//!     [`SageX3EmulatorBuilder::zone`], as civil time in that zone without an offset.
//!     Amounts are JSON numbers served with their exact text.
//!   - Auth: Basic ([`USER`] / [`PASSWORD`]) or a live cloud access token; else 401.
//! * `POST xtrem/api`: GraphQL (see `graphql.rs`), folder in the `x-xtrem-endpoint`
//!   header (the name is unconfirmed; 400 without it), auth by Basic, a cloud access token,
//!   or the connected application's HS256 JWT (`iss` [`CLIENT_ID`], `aud` the endpoint
//!   URL, signed with [`CLIENT_SECRET`], `exp` within the 600 s token validity).
//! * `POST v1/token`: the X3 Cloud token API, `grant_type=refresh_token` with
//!   `refresh_token`, `client_id`, `client_secret` (form; the exact renew path is
//!   unconfirmed). Access tokens live 5 minutes; every renewal returns a new refresh token
//!   and spends the old one: presenting it again is `400 invalid_grant`, as are unknown and
//!   expired ones. Refresh tokens keep the pairing's 30 days (or get fresh ones:
//!   [`SageX3Emulator::set_sliding_refresh`]; which one X3 does is unconfirmed), and the
//!   answer says when only with [`SageX3Emulator::set_reports_refresh_expiry`].
//!   [`SageX3Emulator::pair`] stands for the browser pairing.
//! * `PUT sandbox/x3/<CLASS>` (sandbox control, no auth): stores a row; `UPDDATTIM` is the
//!   emulator clock's now unless the body gives one (to stage a backdated row).
//!
//! Data: [`load_demo`](SageX3Emulator::load_demo) loads the traps: ties on `UPDDATTIM`
//! across a page, a low-key row updated later, credit notes, unicode names, a malformed
//! invoice; [`stage_late`](SageX3Emulator::stage_late) /
//! [`commit_late`](SageX3Emulator::commit_late) a late commit;
//! [`upsert`](SageX3Emulator::upsert) / [`touch`](SageX3Emulator::touch) change data while a
//! client runs; [`load_synthetic`](SageX3Emulator::load_synthetic) a big backfill.

mod api1;
mod auth;
mod fixtures;
mod gql;
mod graphql;
mod query;
mod state;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use ml_core::clock::Clock;
use serde_json::value::RawValue;

use crate::emulator::{Emulator, EmulatorCore, EmulatorOptions};
use crate::error::Result;
use crate::fault::Faults;
use state::{Class, Inner, Row, Tokens, lock, parse_instant, scalar};

/// The folder (Syracuse endpoint) served.
pub const FOLDER: &str = "SEED";
/// The Syracuse user for Basic.
pub const USER: &str = "admin";
/// Its password.
pub const PASSWORD: &str = "sbx-x3-password";
/// The connected application's / cloud app's client id.
pub const CLIENT_ID: &str = "sbx-x3-client";
/// Its secret.
pub const CLIENT_SECRET: &str = "sbx-x3-client-secret";
/// The default `count`.
pub const DEFAULT_COUNT: usize = 20;
/// The largest `count` served (X3's own cap is unconfirmed).
pub const MAX_COUNT: usize = 200;
/// The update stamp property.
pub const STAMP: &str = "UPDDATTIM";

/// What every route shares.
struct Shared {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
    folder: String,
    user: String,
    password: String,
    client_id: String,
    client_secret: String,
    /// `http://127.0.0.1:<port>/`.
    root_url: String,
    access_lifetime: Duration,
    refresh_lifetime: Duration,
    jwt_validity: Duration,
    api1_calls: AtomicU64,
    graphql_calls: AtomicU64,
}

/// Configures a [`SageX3Emulator`].
pub struct SageX3EmulatorBuilder {
    options: EmulatorOptions,
    zone: TimeZone,
    access_lifetime: Duration,
}

impl Default for SageX3EmulatorBuilder {
    fn default() -> Self {
        Self {
            options: EmulatorOptions::new(0),
            zone: TimeZone::UTC,
            access_lifetime: Duration::from_secs(300),
        }
    }
}

impl SageX3EmulatorBuilder {
    /// Seeds the fault layer's random draws.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.options.set_seed(seed);
        self
    }

    /// The clock (stamps, token expiry).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.options.set_clock(clock);
        self
    }

    /// Serves `UPDDATTIM` as civil time in `zone` (no offset) and reads literals without
    /// an offset in it.
    #[must_use]
    pub fn zone(mut self, zone: TimeZone) -> Self {
        self.zone = zone;
        self
    }

    /// How long access tokens live (default 5 minutes, as X3 Cloud).
    #[must_use]
    pub fn access_lifetime(mut self, d: Duration) -> Self {
        self.access_lifetime = d;
        self
    }

    /// Binds 127.0.0.1 and starts serving (no data: see [`SageX3Emulator::load_demo`]).
    pub async fn start(self) -> Result<SageX3Emulator> {
        let bound = EmulatorCore::bind(&self.options, "/", Arc::new(fault_body)).await?;
        let clock = Arc::clone(bound.core().clock());
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                classes: fixtures::classes(),
                tokens: Tokens::default(),
                zone: self.zone,
                sliding: false,
                report_refresh_expiry: false,
            }),
            clock,
            folder: FOLDER.into(),
            user: USER.into(),
            password: PASSWORD.into(),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            root_url: bound.root_url(),
            access_lifetime: self.access_lifetime,
            refresh_lifetime: Duration::from_secs(30 * 86_400),
            jwt_validity: Duration::from_secs(600),
            api1_calls: AtomicU64::new(0),
            graphql_calls: AtomicU64::new(0),
        });
        let router = Router::new()
            .route("/api1/x3/erp/{folder}/{class}", get(api1::query))
            .route("/xtrem/api", post(graphql::graphql))
            .route("/v1/token", post(auth::token))
            .route("/sandbox/x3/{class}", put(put_row))
            .with_state(Arc::clone(&shared));
        Ok(SageX3Emulator {
            shared,
            core: bound.serve(router),
        })
    }
}

/// A running Sage X3 emulator; stops when dropped.
pub struct SageX3Emulator {
    shared: Arc<Shared>,
    core: EmulatorCore,
}

impl std::fmt::Debug for SageX3Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SageX3Emulator")
            .field("base_url", &self.core.base_url())
            .finish_non_exhaustive()
    }
}

impl Emulator for SageX3Emulator {
    fn core(&self) -> &EmulatorCore {
        &self.core
    }

    /// `SAGE_X3_URL`, `SAGE_X3_FOLDER`, `SAGE_X3_USER`, `SAGE_X3_PASSWORD` (api1 with
    /// Basic, as on premises). For X3 Cloud see [`SageX3Emulator::cloud_env`].
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SAGE_X3_URL", self.base_url().to_owned()),
            ("SAGE_X3_FOLDER", FOLDER.to_owned()),
            ("SAGE_X3_USER", USER.to_owned()),
            ("SAGE_X3_PASSWORD", PASSWORD.to_owned()),
        ]
    }
}

impl SageX3Emulator {
    /// Starts an emulator with the defaults (no data).
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// Configures an emulator.
    pub fn builder() -> SageX3EmulatorBuilder {
        SageX3EmulatorBuilder::default()
    }

    /// `http://127.0.0.1:<port>/` (`SAGE_X3_URL`).
    pub fn base_url(&self) -> &str {
        self.core.base_url()
    }

    /// The token API (`SAGE_X3_TOKEN_URL`).
    pub fn token_url(&self) -> String {
        format!("{}v1/token", self.base_url())
    }

    /// The GraphQL endpoint (`SAGE_X3_GRAPHQL_URL`, the JWT `aud`).
    pub fn graphql_url(&self) -> String {
        format!("{}xtrem/api", self.base_url())
    }

    /// The fault rules and per-path request counters (`requests("PORDER")`,
    /// `requests("token")`).
    pub fn faults(&self) -> &Faults {
        self.core.faults()
    }

    /// The environment of an X3 Cloud client with a fresh pairing's refresh token.
    pub fn cloud_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SAGE_X3_URL", self.base_url().to_owned()),
            ("SAGE_X3_FOLDER", FOLDER.to_owned()),
            ("SAGE_X3_TOKEN_URL", self.token_url()),
            ("SAGE_X3_CLIENT_ID", CLIENT_ID.to_owned()),
            ("SAGE_X3_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("SAGE_X3_REFRESH_TOKEN", self.pair()),
        ]
    }

    /// A pairing: a new refresh token valid 30 days from now.
    pub fn pair(&self) -> String {
        auth::pair(
            &self.shared,
            self.shared.clock.now(),
            self.shared.refresh_lifetime,
        )
    }

    /// A pairing whose refresh token expires `lifetime` from now.
    pub fn pair_expiring_in(&self, lifetime: Duration) -> String {
        auth::pair(&self.shared, self.shared.clock.now(), lifetime)
    }

    /// Renewed refresh tokens get a fresh 30 days (`true`) or keep the pairing's expiry
    /// (`false`, the default).
    pub fn set_sliding_refresh(&self, on: bool) {
        lock(&self.shared.inner).sliding = on;
    }

    /// Renewal answers carry `refresh_token_expires_in` (the seconds the new refresh
    /// token has left) when `on`; by default they do not (whether X3 sends it is
    /// unconfirmed), and a client must assume the expiry it knew.
    pub fn set_reports_refresh_expiry(&self, on: bool) {
        lock(&self.shared.inner).report_refresh_expiry = on;
    }

    /// Successful token renewals.
    pub fn renewals(&self) -> u64 {
        lock(&self.shared.inner).tokens.renewals
    }

    /// Refused renewals (a spent, unknown or expired refresh token).
    pub fn refused_renewals(&self) -> u64 {
        lock(&self.shared.inner).tokens.refused
    }

    /// Whether `refresh` is a live (issued, unspent, unexpired) refresh token.
    pub fn is_live_refresh_token(&self, refresh: &str) -> bool {
        let now = self.shared.clock.now();
        lock(&self.shared.inner)
            .tokens
            .refresh
            .get(refresh)
            .is_some_and(|r| !r.spent && now < r.expires_at)
    }

    /// Expires every access token now (the next call with one is a 401).
    pub fn expire_access_tokens(&self) {
        lock(&self.shared.inner).tokens.access.clear();
    }

    /// api1 data requests that passed authentication.
    pub fn api1_calls(&self) -> u64 {
        self.shared.api1_calls.load(Ordering::Relaxed)
    }

    /// GraphQL requests that passed authentication.
    pub fn graphql_calls(&self) -> u64 {
        self.shared.graphql_calls.load(Ordering::Relaxed)
    }

    /// Runs a release whose representation of `class` lacks `props` (empty: all back).
    ///
    /// # Panics
    /// When the class is unknown (a test bug).
    pub fn lack_properties(&self, class: &str, props: &[&str]) {
        let mut inner = lock(&self.shared.inner);
        let c = inner.classes.get_mut(class).expect("known class");
        c.lacking = props.iter().map(|p| (*p).to_owned()).collect();
    }

    /// Loads the demo data with its traps (see the module docs).
    pub fn load_demo(&self) {
        let now = self.shared.clock.now();
        for (class, rows) in fixtures::demo(now) {
            for (row, at) in rows {
                self.store(class, &row, Some(at));
            }
        }
    }

    /// Inserts or replaces a row (by the class key), stamped now (the server's own
    /// `UPDDATTIM`).
    ///
    /// # Panics
    /// When the JSON lacks the class key or the class is unknown (a test bug).
    pub fn upsert(&self, class: &str, row: &serde_json::Value) {
        self.store(class, row, None);
    }

    /// Inserts or replaces a row stamped `at`.
    ///
    /// # Panics
    /// As [`upsert`](Self::upsert).
    pub fn upsert_at(&self, class: &str, row: &serde_json::Value, at: Timestamp) {
        self.store(class, row, Some(at));
    }

    /// Updates a row: `UPDDATTIM` = now and optionally one property. False when absent.
    pub fn touch(&self, class: &str, key: &str, set: Option<(&str, serde_json::Value)>) -> bool {
        let now = self.shared.clock.now();
        let mut inner = lock(&self.shared.inner);
        let Some(c) = inner.classes.get_mut(class) else {
            return false;
        };
        let k: Vec<String> = key.split('~').map(str::to_owned).collect();
        let Some(row) = c.rows.get_mut(&k) else {
            return false;
        };
        row.stamp = whole_seconds(now);
        if let Some((p, v)) = set
            && let Ok(raw) = RawValue::from_string(v.to_string())
        {
            row.props.insert(p.to_owned(), raw);
        }
        true
    }

    /// Stages a row stamped `at` that is not visible until [`commit_late`](Self::commit_late)
    /// (a transaction that commits after later stamps were served).
    ///
    /// # Panics
    /// As [`upsert`](Self::upsert).
    pub fn stage_late(&self, class: &str, row: &serde_json::Value, at: Timestamp) {
        let mut inner = lock(&self.shared.inner);
        let c = inner.classes.get_mut(class).expect("known class");
        let (key, row) = build_row(c, row, at).expect("a row with its key");
        c.hidden.insert(key, row);
    }

    /// Makes every staged row visible.
    pub fn commit_late(&self) {
        let mut inner = lock(&self.shared.inner);
        for c in inner.classes.values_mut() {
            let hidden = std::mem::take(&mut c.hidden);
            c.rows.extend(hidden);
        }
    }

    /// Removes a row.
    pub fn remove(&self, class: &str, key: &str) -> bool {
        let k: Vec<String> = key.split('~').map(str::to_owned).collect();
        lock(&self.shared.inner)
            .classes
            .get_mut(class)
            .is_some_and(|c| c.rows.remove(&k).is_some())
    }

    /// How many visible rows a class holds.
    pub fn len(&self, class: &str) -> usize {
        lock(&self.shared.inner)
            .classes
            .get(class)
            .map_or(0, |c| c.rows.len())
    }

    /// Whether a class is empty.
    pub fn is_empty(&self, class: &str) -> bool {
        self.len(class) == 0
    }

    /// Adds `n` purchase orders `PO<i>` (from 1, zero-padded to 7 digits), stamped
    /// `start + (i-1) / per_second` seconds, amount `i.25` EUR: a backfill.
    pub fn load_synthetic(&self, n: u64, start: Timestamp, per_second: u64) {
        let mut inner = lock(&self.shared.inner);
        let c = inner.classes.get_mut("PORDER").expect("PORDER");
        for i in 1..=n {
            let secs = i64::try_from((i - 1) / per_second.max(1)).unwrap_or(i64::MAX);
            let at = start + jiff::SignedDuration::from_secs(secs);
            let row = serde_json::json!({
                "POHNUM": format!("PO{i:07}"),
                "BPSNUM": format!("S{:04}", i % 1000),
                "BPSNAM": format!("Supplier {}", i % 1000),
                "TOTLINAMT": serde_json::Value::Number(serde_json::Number::from_f64(i as f64 + 0.25).unwrap_or_else(|| 0.into())),
                "CUR": "EUR",
                "APPFLG": "3",
                "POHFCY": "FR011",
                "ORDDAT": "2026-03-01",
            });
            if let Some((k, r)) = build_row(c, &row, at) {
                c.rows.insert(k, r);
            }
        }
    }

    fn store(&self, class: &str, row: &serde_json::Value, at: Option<Timestamp>) {
        let now = self.shared.clock.now();
        let mut inner = lock(&self.shared.inner);
        let zone = inner.zone.clone();
        let c = inner.classes.get_mut(class).expect("known class");
        let at = at
            .or_else(|| row[STAMP].as_str().and_then(|s| parse_instant(s, &zone)))
            .unwrap_or(now);
        let (key, row) = build_row(c, row, at).expect("a row with its key");
        c.rows.insert(key, row);
    }
}

/// X3 date-times have whole seconds: the emulator stores what it serves.
fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// A row from JSON: its key values and properties.
fn build_row(c: &Class, row: &serde_json::Value, at: Timestamp) -> Option<(Vec<String>, Row)> {
    let at = whole_seconds(at);
    let obj = row.as_object()?;
    let mut props: BTreeMap<String, Box<RawValue>> = BTreeMap::new();
    for (k, v) in obj {
        props.insert(k.clone(), RawValue::from_string(v.to_string()).ok()?);
    }
    props.insert(
        STAMP.into(),
        RawValue::from_string(serde_json::Value::String(at.to_string()).to_string()).ok()?,
    );
    let key: Option<Vec<String>> = c
        .keys
        .iter()
        .map(|k| props.get(k).and_then(|v| scalar(v)))
        .collect();
    Some((key?, Row { props, stamp: at }))
}

/// `PUT sandbox/x3/<CLASS>`: stores a row (sandbox control, no auth).
async fn put_row(
    State(shared): State<Arc<Shared>>,
    Path(class): Path<String>,
    body: String,
) -> Response {
    let Ok(row) = serde_json::from_str::<serde_json::Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let now = shared.clock.now();
    let mut inner = lock(&shared.inner);
    let zone = inner.zone.clone();
    let Some(c) = inner.classes.get_mut(&class) else {
        return (StatusCode::NOT_FOUND, "unknown class").into_response();
    };
    let at = row[STAMP]
        .as_str()
        .and_then(|s| parse_instant(s, &zone))
        .unwrap_or(now);
    match build_row(c, &row, at) {
        Some((k, r)) => {
            c.rows.insert(k, r);
            StatusCode::NO_CONTENT.into_response()
        }
        None => (StatusCode::BAD_REQUEST, "the row lacks its key").into_response(),
    }
}

fn fault_body(status: u16) -> (String, String) {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    (
        "application/json".into(),
        serde_json::json!({"$diagnoses": [{"$severity": "error", "$message": reason}]}).to_string(),
    )
}
