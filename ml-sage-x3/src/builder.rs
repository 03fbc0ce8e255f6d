//! [`SageX3Builder`]: configuration from the environment or code, checked at `build()`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use ml_core::auth::{
    BasicCredentials, ExpiryObserver, MemoryRefreshTokenStore, RefreshTokenStore,
    RotatingTokenProvider, StoredRefreshToken, TokenCache,
};
use ml_core::clock::{Clock, SystemClock, add};
use ml_core::config::{ConfigValues, check_url};
use ml_core::credential::{CredentialName, CredentialRefreshTokenStore, CredentialStore};
use ml_core::http::{ClientOptions, ReqwestTransport, Transport};
use ml_core::money::Currency;
use ml_core::retry::RetryPolicy;
use secrecy::{ExposeSecret as _, SecretString};

use crate::auth::{Auth, CloudRefreshGrant, REFRESH_TOKEN_LIFETIME, SeededStore, SelfSignedJwt};
use crate::class::{ClassSpec, X3Class, valid_name};
use crate::error::SageX3Error;
use crate::graphql::SageX3GraphqlSource;
use crate::labels::StatusLabels;
use crate::notes::JournalNotes;
use crate::rest::SageX3RestSource;
use crate::source::SageX3Source;
use crate::walk::KeyWalk;

/// The largest page size asked for (`count`; X3's own cap is unconfirmed).
pub const MAX_PAGE_SIZE: usize = 1000;
/// The default page size.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The default header naming the X3 endpoint (folder) on GraphQL requests (unconfirmed).
pub const DEFAULT_ENDPOINT_HEADER: &str = "x-xtrem-endpoint";

ml_core::config_keys! {
    /// A configuration key, named as its environment variable.
    pub enum SageX3ConfigKey: prefix "SAGE_X3_" {
        /// `SAGE_X3_URL`: the Syracuse server (`https://x3.example.com:8124`).
        Url = "SAGE_X3_URL",
        /// `SAGE_X3_FOLDER`: the endpoint (folder), e.g. `SEED`.
        Folder = "SAGE_X3_FOLDER",
        /// `SAGE_X3_API`: `rest` (api1, default) or `graphql`.
        Api = "SAGE_X3_API",
        /// `SAGE_X3_TOKEN_URL`: the X3 Cloud token API (rotating refresh tokens).
        TokenUrl = "SAGE_X3_TOKEN_URL",
        /// `SAGE_X3_CLIENT_ID`.
        ClientId = "SAGE_X3_CLIENT_ID",
        /// `SAGE_X3_CLIENT_SECRET`.
        ClientSecret = "SAGE_X3_CLIENT_SECRET" (secret),
        /// `SAGE_X3_REFRESH_TOKEN`: the refresh token from the pairing, used while the durable
        /// store holds none.
        RefreshToken = "SAGE_X3_REFRESH_TOKEN" (secret),
        /// `SAGE_X3_USER`: Basic user (api1 on premises), or the JWT `sub`.
        User = "SAGE_X3_USER",
        /// `SAGE_X3_PASSWORD`: Basic password.
        Password = "SAGE_X3_PASSWORD" (secret),
        /// `SAGE_X3_GRAPHQL_URL`: the GraphQL endpoint (default `<SAGE_X3_URL>/xtrem/api`);
        /// also the self-signed JWT's `aud`.
        GraphqlUrl = "SAGE_X3_GRAPHQL_URL",
        /// `SAGE_X3_ENDPOINT_HEADER`: the header naming the folder on GraphQL requests
        /// (default `x-xtrem-endpoint`).
        EndpointHeader = "SAGE_X3_ENDPOINT_HEADER",
        /// `SAGE_X3_CLASS`: `PORDER`, `PINVOICE`, `GACCENTRY`, `BPSUPPLIER` (or
        /// `purchase_orders`, `supplier_invoices`, `gl_entries`, `suppliers`).
        Class = "SAGE_X3_CLASS",
        /// `SAGE_X3_CLASS_NAME`: the api1 class name when it differs from the built-in one.
        ClassName = "SAGE_X3_CLASS_NAME",
        /// `SAGE_X3_REPRESENTATION`: the api1 representation (default: the class name).
        Representation = "SAGE_X3_REPRESENTATION",
        /// `SAGE_X3_KEY`: the key properties, comma-separated (`TYP,NUM`).
        Key = "SAGE_X3_KEY",
        /// `SAGE_X3_STAMP`: the update-stamp property (default `UPDDATTIM`; GraphQL
        /// `_updateStamp`).
        Stamp = "SAGE_X3_STAMP",
        /// `SAGE_X3_FIELDS`: `role=name,...` overrides (see [`crate::class::FieldMap`]).
        Fields = "SAGE_X3_FIELDS",
        /// `SAGE_X3_GRAPHQL_ROOT`: the path to the node, dot-separated
        /// (`x3Purchasing.purchaseOrder`).
        GraphqlRoot = "SAGE_X3_GRAPHQL_ROOT",
        /// `SAGE_X3_PAGE_SIZE`: 2..=1000 (default 100).
        PageSize = "SAGE_X3_PAGE_SIZE",
        /// `SAGE_X3_OVERLAP_SECS`: the re-read window (default 300).
        OverlapSecs = "SAGE_X3_OVERLAP_SECS",
        /// `SAGE_X3_TIME_ZONE`: the IANA zone of `UPDDATTIM` values served without an offset
        /// (default UTC).
        TimeZone = "SAGE_X3_TIME_ZONE",
        /// `SAGE_X3_CURRENCY`: the currency of classes whose amounts name none.
        Currency = "SAGE_X3_CURRENCY",
        /// `SAGE_X3_REFRESH_WARN_DAYS`: warn this many days before the refresh token expires
        /// (default 7).
        RefreshWarnDays = "SAGE_X3_REFRESH_WARN_DAYS",
        /// `SAGE_X3_JWT_LIFETIME_SECS`: the self-signed JWT's lifetime (default 300).
        JwtLifetimeSecs = "SAGE_X3_JWT_LIFETIME_SECS",
        /// `SAGE_X3_STATUS_LABELS`: labels of the status codes, `code=label,...`
        /// (`1=Not approved,2=Partly approved,3=Approved`), replacing the class's built-in
        /// ones. Per class: set it on a stream. A code without a label is shown as served.
        StatusLabels = "SAGE_X3_STATUS_LABELS",
    }
}

/// Which API a source reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// Syracuse REST api1.
    Rest,
    /// The GraphQL API.
    Graphql,
}

/// Builds a [`SageX3Source`] (api1 or GraphQL). Values are parsed at
/// [`build`](Self::build), whose errors name the key. Auth is chosen from what is set: a
/// token URL + client id + secret -> X3 Cloud rotating refresh tokens (stored in the
/// [`with_refresh_token_store`](Self::with_refresh_token_store) store, seeded from
/// `SAGE_X3_REFRESH_TOKEN`); a client id + secret without a token URL (GraphQL) -> the
/// on-premises self-signed JWT; a user + password -> Basic.
#[derive(Clone)]
pub struct SageX3Builder {
    values: ConfigValues<SageX3ConfigKey>,
    spec: Option<ClassSpec>,
    client_options: ClientOptions,
    transport: Option<Arc<dyn Transport>>,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    auth: Option<Auth>,
    store: Option<Arc<dyn RefreshTokenStore>>,
    observer: Option<ExpiryObserver>,
    notes: Option<Arc<JournalNotes>>,
    start_at: Option<Timestamp>,
}

impl fmt::Debug for SageX3Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SageX3Builder")
            .field("values", &self.values)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Default for SageX3Builder {
    fn default() -> Self {
        Self::new()
    }
}

fn cfg(key: SageX3ConfigKey, message: impl Into<String>) -> SageX3Error {
    SageX3Error::config(key.as_env(), message)
}

impl SageX3Builder {
    /// An empty builder.
    pub fn new() -> Self {
        Self {
            values: ConfigValues::new(),
            spec: None,
            client_options: ClientOptions::default(),
            transport: None,
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            auth: None,
            store: None,
            observer: None,
            notes: None,
            start_at: None,
        }
    }

    ml_core::config_builder_methods!(SageX3ConfigKey, "SAGE_X3_*");

    /// The Syracuse server URL and the folder (endpoint).
    #[must_use]
    pub fn with_url(self, url: impl Into<String>, folder: impl Into<String>) -> Self {
        self.with_config(SageX3ConfigKey::Url, url)
            .with_config(SageX3ConfigKey::Folder, folder)
    }

    /// Reads api1 (`Api::Rest`, default) or GraphQL.
    #[must_use]
    pub fn with_api(self, api: Api) -> Self {
        let v = match api {
            Api::Rest => "rest",
            Api::Graphql => "graphql",
        };
        self.with_config(SageX3ConfigKey::Api, v)
    }

    /// HTTP Basic (api1 on premises).
    #[must_use]
    pub fn with_basic(
        mut self,
        user: impl Into<String>,
        password: impl Into<SecretString>,
    ) -> Self {
        self.values.set(SageX3ConfigKey::User, user.into());
        self.values
            .set_secret(SageX3ConfigKey::Password, password.into());
        self
    }

    /// The client id and secret (X3 Cloud with a token URL; otherwise the on-premises
    /// connected application).
    #[must_use]
    pub fn with_client(
        mut self,
        client_id: impl Into<String>,
        secret: impl Into<SecretString>,
    ) -> Self {
        self.values.set(SageX3ConfigKey::ClientId, client_id.into());
        self.values
            .set_secret(SageX3ConfigKey::ClientSecret, secret.into());
        self
    }

    /// X3 Cloud: the token API and the refresh token from the pairing (used while the
    /// durable store holds none).
    #[must_use]
    pub fn with_cloud_tokens(
        mut self,
        token_url: impl Into<String>,
        refresh_token: Option<SecretString>,
    ) -> Self {
        self.values.set(SageX3ConfigKey::TokenUrl, token_url.into());
        if let Some(t) = refresh_token {
            self.values.set_secret(SageX3ConfigKey::RefreshToken, t);
        }
        self
    }

    /// Where the rotating refresh token is kept (must be durable: a journal's encrypted
    /// credential table, a secrets manager). Without one, a memory store: a restart then
    /// needs `SAGE_X3_REFRESH_TOKEN` to still be valid, which rotation prevents.
    #[must_use]
    pub fn with_refresh_token_store(mut self, store: Arc<dyn RefreshTokenStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Keeps the refresh token as the credential `name` in `store` (encrypted at rest).
    pub fn with_credential_store(
        self,
        store: Arc<dyn CredentialStore>,
        name: &str,
    ) -> ml_core::Result<Self> {
        let name = CredentialName::new(name)?;
        Ok(self.with_refresh_token_store(Arc::new(CredentialRefreshTokenStore::new(store, name))))
    }

    /// Called with each refresh-token expiry warning (to journal it).
    #[must_use]
    pub fn with_expiry_observer(mut self, observer: ExpiryObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Writes the refresh token's expiry warnings and a needed pairing into a journal as
    /// notes (see [`JournalNotes`]), at the end of the poll that raised them. Set it before
    /// [`with_shared_auth`](Self::with_shared_auth).
    #[must_use]
    pub fn with_journal_notes(mut self, notes: Arc<JournalNotes>) -> Self {
        self.notes = Some(notes);
        self
    }

    /// One of the built-in classes.
    #[must_use]
    pub fn with_class(mut self, class: X3Class) -> Self {
        self.spec = Some(class.spec());
        self
    }

    /// A full class description.
    #[must_use]
    pub fn with_class_spec(mut self, spec: ClassSpec) -> Self {
        self.spec = Some(spec);
        self
    }

    /// Page size (`count` / `first`), 2..=1000.
    #[must_use]
    pub fn with_page_size(self, n: usize) -> Self {
        self.with_config(SageX3ConfigKey::PageSize, n.to_string())
    }

    /// The cursor overlap.
    #[must_use]
    pub fn with_overlap(self, d: Duration) -> Self {
        self.with_config(SageX3ConfigKey::OverlapSecs, d.as_secs().to_string())
    }

    /// Where a stream that never ran starts (default: the beginning).
    #[must_use]
    pub fn with_start_at(mut self, t: Timestamp) -> Self {
        self.start_at = Some(t);
        self
    }

    /// The zone of `UPDDATTIM` values served without an offset.
    #[must_use]
    pub fn with_time_zone(self, iana: impl Into<String>) -> Self {
        self.with_config(SageX3ConfigKey::TimeZone, iana)
    }

    /// HTTP client options.
    #[must_use]
    pub fn with_client_options(mut self, o: ClientOptions) -> Self {
        self.client_options = o;
        self
    }

    /// Sends through `transport` instead of a reqwest client (tests, proxies).
    #[must_use]
    pub fn with_transport(mut self, t: Arc<dyn Transport>) -> Self {
        self.transport = Some(t);
        self
    }

    /// The retry policy of each request.
    #[must_use]
    pub fn with_retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }

    /// The clock (token expiry, JWT times).
    #[must_use]
    pub fn with_clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = c;
        self
    }

    fn val(&self, k: SageX3ConfigKey) -> Option<&str> {
        self.values.get(k)
    }

    fn parse_url(key: SageX3ConfigKey, raw: &str) -> Result<url::Url, SageX3Error> {
        check_url(key.as_env(), raw).map_err(|e| match e {
            ml_core::Error::Config { key, message } => SageX3Error::config(key, message),
            other => SageX3Error::config(key.as_env(), other.to_string()),
        })
    }

    fn api(&self) -> Result<Api, SageX3Error> {
        match self
            .val(SageX3ConfigKey::Api)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("rest" | "api1") => Ok(Api::Rest),
            Some("graphql") => Ok(Api::Graphql),
            Some(other) => Err(cfg(
                SageX3ConfigKey::Api,
                format!("`{other}` is neither `rest` nor `graphql`"),
            )),
        }
    }

    fn transport(&self) -> Result<Arc<dyn Transport>, SageX3Error> {
        if let Some(t) = &self.transport {
            return Ok(Arc::clone(t));
        }
        let client = self
            .client_options
            .client()
            .map_err(|e| SageX3Error::config("ClientOptions", e.to_string()))?;
        Ok(Arc::new(ReqwestTransport::new(client)))
    }

    fn graphql_url(&self) -> Result<String, SageX3Error> {
        use SageX3ConfigKey as K;
        if let Some(g) = self.val(K::GraphqlUrl) {
            return Ok(Self::parse_url(K::GraphqlUrl, g)?.to_string());
        }
        let raw = self
            .val(K::Url)
            .ok_or_else(|| cfg(K::Url, "required (the Syracuse server URL)"))?;
        let url = Self::parse_url(K::Url, raw)?;
        Ok(format!("{}/xtrem/api", url.as_str().trim_end_matches('/')))
    }

    fn auth(&self, transport: &Arc<dyn Transport>, api: Api) -> Result<Auth, SageX3Error> {
        use SageX3ConfigKey as K;
        if let Some(a) = &self.auth {
            return Ok(a.clone());
        }
        let client_id = self.val(K::ClientId);
        let secret = self.values.secret(K::ClientSecret).cloned();
        if let Some(token_url) = self.val(K::TokenUrl) {
            Self::parse_url(K::TokenUrl, token_url)?;
            let id = client_id.ok_or_else(|| cfg(K::ClientId, "required with a token URL"))?;
            let secret = secret.ok_or_else(|| cfg(K::ClientSecret, "required with a token URL"))?;
            let seed = self
                .values
                .secret(K::RefreshToken)
                .filter(|t| !t.expose_secret().trim().is_empty())
                .map(|t| {
                    StoredRefreshToken::new(
                        t.clone(),
                        Some(add(self.clock.now(), REFRESH_TOKEN_LIFETIME)),
                    )
                });
            if seed.is_none() && self.store.is_none() {
                return Err(cfg(
                    K::RefreshToken,
                    "required with a token URL unless a durable refresh-token store is given (pair the connector first)",
                ));
            }
            let inner: Arc<dyn RefreshTokenStore> = if let Some(s) = &self.store {
                Arc::clone(s)
            } else {
                tracing::warn!(
                    "Sage X3: the rotating refresh token is kept in memory only; a restart needs a new pairing (give a durable store)"
                );
                Arc::new(MemoryRefreshTokenStore::default())
            };
            let store: Arc<dyn RefreshTokenStore> = Arc::new(SeededStore::new(inner, seed));
            let grant = CloudRefreshGrant::new(
                Arc::clone(transport),
                token_url,
                id,
                secret,
                Arc::clone(&self.clock),
                Arc::clone(&store),
            );
            let days: u64 = self
                .values
                .parse(K::RefreshWarnDays)
                .map_err(|_| cfg(K::RefreshWarnDays, "not a number of days"))?
                .unwrap_or(7);
            let mut provider = RotatingTokenProvider::new(Arc::new(grant), store)
                .with_clock(Arc::clone(&self.clock))
                .with_expiry_warning(Duration::from_secs(days * 86_400));
            let journal = self.notes.as_ref().map(JournalNotes::observer);
            match (self.observer.clone(), journal) {
                (Some(o), Some(j)) => {
                    provider = provider.with_expiry_observer(Arc::new(move |w| {
                        o(w);
                        j(w);
                    }));
                }
                (Some(o), None) | (None, Some(o)) => {
                    provider = provider.with_expiry_observer(o);
                }
                (None, None) => {}
            }
            let provider = Arc::new(provider);
            let cache =
                TokenCache::new(Arc::clone(&provider) as _).with_clock(Arc::clone(&self.clock));
            return Ok(Auth::Tokens {
                cache: Arc::new(cache),
                rotating: Some(provider),
            });
        }
        if let (Some(id), Some(secret), Api::Graphql) = (client_id, secret.clone(), api) {
            let lifetime: u64 = self
                .values
                .parse(K::JwtLifetimeSecs)
                .map_err(|_| cfg(K::JwtLifetimeSecs, "not a number of seconds"))?
                .unwrap_or(300);
            if lifetime < 30 {
                return Err(cfg(K::JwtLifetimeSecs, "at least 30 seconds"));
            }
            let jwt = SelfSignedJwt::new(
                id,
                secret,
                self.graphql_url()?,
                self.val(K::User).map(str::to_owned),
                Duration::from_secs(lifetime),
                Arc::clone(&self.clock),
            );
            let cache = TokenCache::new(Arc::new(jwt)).with_clock(Arc::clone(&self.clock));
            return Ok(Auth::Tokens {
                cache: Arc::new(cache),
                rotating: None,
            });
        }
        match (self.val(K::User), self.values.secret(K::Password)) {
            (Some(u), Some(p)) => {
                if u.contains(':') {
                    return Err(cfg(K::User, "must not contain `:`"));
                }
                Ok(Auth::Basic(BasicCredentials::new(u, p.clone())))
            }
            (Some(_), None) => Err(cfg(K::Password, "required with a user")),
            _ => Err(cfg(
                K::ClientId,
                "no credentials: set SAGE_X3_TOKEN_URL/_CLIENT_ID/_CLIENT_SECRET/_REFRESH_TOKEN (X3 Cloud), SAGE_X3_CLIENT_ID/_CLIENT_SECRET (GraphQL on premises) or SAGE_X3_USER/_PASSWORD (api1 on premises)",
            )),
        }
    }

    /// Obtains the credentials once, so that the sources built from clones of this builder
    /// share one token cache: one renewal in flight for all streams of the process, and
    /// one rotating refresh token.
    pub fn with_shared_auth(mut self) -> ml_core::Result<Self> {
        if self.auth.is_none() {
            let transport = self.transport()?;
            let api = self.api()?;
            self.auth = Some(self.auth(&transport, api)?);
        }
        Ok(self)
    }

    /// Builds the source.
    pub fn build(self) -> ml_core::Result<SageX3Source> {
        self.build_inner().map_err(Into::into)
    }

    fn spec(&self, api: Api) -> Result<ClassSpec, SageX3Error> {
        use SageX3ConfigKey as K;
        let mut spec = match (&self.spec, self.val(K::Class)) {
            (Some(s), _) => s.clone(),
            (None, Some(c)) => X3Class::from_name(c)
                .ok_or_else(|| {
                    cfg(
                        K::Class,
                        format!("unknown class `{c}` (PORDER, PINVOICE, GACCENTRY, BPSUPPLIER)"),
                    )
                })?
                .spec(),
            (None, None) => X3Class::PurchaseOrders.spec(),
        };
        let names = |key: K, v: &str| -> Result<Vec<String>, SageX3Error> {
            let parts: Vec<String> = v
                .split([',', '.'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if parts.is_empty() || parts.iter().any(|p| !valid_name(p)) {
                return Err(cfg(key, format!("`{v}` is not a list of property names")));
            }
            Ok(parts)
        };
        let one = |key: K, v: &str| -> Result<String, SageX3Error> {
            if valid_name(v) && !v.contains('.') || (key == K::Stamp && valid_name(v)) {
                Ok(v.to_owned())
            } else {
                Err(cfg(key, format!("`{v}` is not a name")))
            }
        };
        if let Some(v) = self.val(K::ClassName) {
            spec.class = one(K::ClassName, v)?;
        }
        if let Some(v) = self.val(K::Representation) {
            spec.representation = one(K::Representation, v)?;
        }
        if let Some(v) = self.val(K::GraphqlRoot) {
            spec.graphql.root = v
                .split('.')
                .map(|p| one(K::GraphqlRoot, p.trim()))
                .collect::<Result<_, _>>()?;
        }
        match api {
            Api::Rest => {
                if let Some(v) = self.val(K::Key) {
                    spec.keys = v
                        .split(',')
                        .map(|p| one(K::Key, p.trim()))
                        .collect::<Result<_, _>>()?;
                }
                if let Some(v) = self.val(K::Stamp) {
                    spec.stamp = one(K::Stamp, v)?;
                }
                if let Some(v) = self.val(K::Fields) {
                    spec.fields.apply_overrides(K::Fields.as_env(), v)?;
                }
            }
            Api::Graphql => {
                if let Some(v) = self.val(K::Key) {
                    spec.graphql.keys = v
                        .split(',')
                        .map(|p| names(K::Key, p.trim()).map(|n| n.join(".")))
                        .collect::<Result<_, _>>()?;
                }
                if let Some(v) = self.val(K::Stamp) {
                    spec.graphql.stamp = one(K::Stamp, v)?;
                }
                if let Some(v) = self.val(K::Fields) {
                    spec.graphql.fields.apply_overrides(K::Fields.as_env(), v)?;
                }
            }
        }
        if let Some(v) = self.val(K::StatusLabels) {
            let labels = StatusLabels::parse(K::StatusLabels.as_env(), v)?;
            match api {
                Api::Rest => spec.fields.status_labels = labels,
                Api::Graphql => spec.graphql.fields.status_labels = labels,
            }
        }
        Ok(spec)
    }

    fn build_inner(self) -> Result<SageX3Source, SageX3Error> {
        use SageX3ConfigKey as K;
        let api = self.api()?;
        let raw = self
            .val(K::Url)
            .ok_or_else(|| cfg(K::Url, "required (the Syracuse server URL)"))?;
        let url = Self::parse_url(K::Url, raw)?;
        let folder = self
            .val(K::Folder)
            .ok_or_else(|| cfg(K::Folder, "required (the X3 endpoint, e.g. SEED)"))?
            .to_owned();
        if folder.is_empty()
            || !folder
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(cfg(K::Folder, format!("`{folder}` is not a folder name")));
        }
        let spec = self.spec(api)?;
        let page_size = match self.val(K::PageSize) {
            None => DEFAULT_PAGE_SIZE,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (2..=MAX_PAGE_SIZE).contains(&n) => n,
                _ => {
                    return Err(cfg(
                        K::PageSize,
                        format!("`{v}` is not a number in 2..=1000"),
                    ));
                }
            },
        };
        let overlap =
            match self.val(K::OverlapSecs) {
                None => Duration::from_secs(300),
                Some(v) => Duration::from_secs(v.parse().map_err(|_| {
                    cfg(K::OverlapSecs, format!("`{v}` is not a number of seconds"))
                })?),
            };
        let zone = match self.val(K::TimeZone) {
            None => TimeZone::UTC,
            Some(z) => {
                TimeZone::get(z).map_err(|e| cfg(K::TimeZone, format!("unknown time zone: {e}")))?
            }
        };
        let currency = self
            .val(K::Currency)
            .map(Currency::new)
            .transpose()
            .map_err(|e| cfg(K::Currency, e.to_string()))?;
        let endpoint_header = self
            .val(K::EndpointHeader)
            .unwrap_or(DEFAULT_ENDPOINT_HEADER);
        let endpoint_header =
            ::http::HeaderName::from_bytes(endpoint_header.as_bytes()).map_err(|_| {
                cfg(
                    K::EndpointHeader,
                    format!("`{endpoint_header}` is not a header name"),
                )
            })?;
        let transport = self.transport()?;
        let auth = self.auth(&transport, api)?;
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let common = crate::source::Common {
            transport,
            auth,
            system: String::new(),
            folder,
            spec,
            page_size,
            zone,
            currency,
            retry: self.retry.clone(),
            clock: Arc::clone(&self.clock),
            notes: self.notes.clone(),
        };
        Ok(match api {
            Api::Rest => {
                let system = format!("SageX3({host}, {}, {})", common.folder, common.spec.class);
                let mut cursor = KeyWalk::new(overlap);
                if let Some(t) = self.start_at {
                    cursor = cursor.with_start_at(t);
                }
                SageX3Source::Rest(SageX3RestSource::new(
                    crate::source::Common { system, ..common },
                    url,
                    cursor,
                ))
            }
            Api::Graphql => {
                let system = format!(
                    "SageX3({host}, {}, graphql {})",
                    common.folder,
                    common.spec.graphql.root.join(".")
                );
                let mut cursor =
                    ml_core::cursor::WatermarkCursor::new(overlap).with_sweep_ranges(1);
                if let Some(t) = self.start_at {
                    cursor = cursor.with_start_at(t);
                }
                SageX3Source::Graphql(SageX3GraphqlSource::new(
                    crate::source::Common { system, ..common },
                    self.graphql_url()?,
                    endpoint_header,
                    cursor,
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests;
