//! [`IfsBuilder`]: configuration from the environment or code, checked at `build()`; and
//! IFS IAM (Keycloak) client-credentials tokens through ml-core's `TokenEndpoint` and
//! `TokenCache`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::http::header::{HeaderName, HeaderValue};
use jiff::Timestamp;
use ml_core::auth::oauth2::{ClientAuth, Grant, TokenEndpoint};
use ml_core::auth::{Credentials, TokenCache};
use ml_core::clock::{Clock, SystemClock};
use ml_core::config::{ConfigValues, check_url};
use ml_core::cursor::{Paging, WatermarkCursor};
use ml_core::http::{ApiClient, ClientOptions};
use ml_core::retry::RetryPolicy;
use secrecy::SecretString;

use crate::error::IfsError;
use crate::history::ChangeDetection;
use crate::odata::{MAX_PAGE_SIZE, ODataClient, TIME_ZONE_AWARE_HEADER};
use crate::resource::{IfsResource, KeyAttr, ResourceSpec};
use crate::source::IfsSource;

/// The default service path under `IFS_URL` (UI projections; integration projections
/// live under `int/ifsapplications/projection/v1`).
pub const DEFAULT_API_PATH: &str = "main/ifsapplications/projection/v1";
/// The default scope asked of IFS IAM.
pub const DEFAULT_SCOPE: &str = "openid microprofile-jwt";
/// The default page size.
pub const DEFAULT_PAGE_SIZE: usize = 1000;

ml_core::config_keys! {
    /// A configuration key, named as its environment variable.
    pub enum IfsConfigKey: prefix "IFS_" {
        /// `IFS_URL`: the environment's base URL (`https://acme.ifs.cloud`).
        Url = "IFS_URL",
        /// `IFS_REALM`: the IAM realm (the token URL is `<IFS_URL>/auth/realms/<realm>/protocol/openid-connect/token`).
        Realm = "IFS_REALM",
        /// `IFS_TOKEN_URL`: the token endpoint, instead of the realm.
        TokenUrl = "IFS_TOKEN_URL",
        /// `IFS_CLIENT_ID`: the IAM client (service account enabled).
        ClientId = "IFS_CLIENT_ID",
        /// `IFS_CLIENT_SECRET`.
        ClientSecret = "IFS_CLIENT_SECRET" (secret),
        /// `IFS_SCOPE` (default `openid microprofile-jwt`).
        Scope = "IFS_SCOPE",
        /// `IFS_CLIENT_AUTH`: how the client authenticates to IFS IAM: `post` (default:
        /// `client_id` / `client_secret` in the form body, as IFS documents the client
        /// credentials flow) or `basic` (HTTP Basic, which Keycloak also takes).
        ClientAuth = "IFS_CLIENT_AUTH",
        /// `IFS_COMPANY`: only records of this company (entity sets that have a company).
        Company = "IFS_COMPANY",
        /// `IFS_RESOURCE`: `purchase_orders`, `supplier_invoices`, `gl_vouchers`, `payments`,
        /// `suppliers` (default `supplier_invoices`).
        Resource = "IFS_RESOURCE",
        /// `IFS_PROJECTION`: overrides the resource's projection (`PurchaseOrderHandling`).
        Projection = "IFS_PROJECTION",
        /// `IFS_ENTITY_SET`: overrides the entity set.
        EntitySet = "IFS_ENTITY_SET",
        /// `IFS_ENTITY`: overrides the entity type (bound action names).
        Entity = "IFS_ENTITY",
        /// `IFS_KEYS`: overrides the key attributes, `Company:text,InvoiceId:number`.
        Keys = "IFS_KEYS",
        /// `IFS_STAMP_ATTRIBUTE`: the change stamp (default `ModifiedDateTime`).
        StampAttribute = "IFS_STAMP_ATTRIBUTE",
        /// `IFS_AMOUNT_ATTRIBUTE`: overrides the amount attribute (`none` for none).
        AmountAttribute = "IFS_AMOUNT_ATTRIBUTE",
        /// `IFS_CURRENCY_ATTRIBUTE`: overrides the currency attribute.
        CurrencyAttribute = "IFS_CURRENCY_ATTRIBUTE",
        /// `IFS_STATUS_ATTRIBUTE`: overrides the state attribute (default `Objstate`).
        StatusAttribute = "IFS_STATUS_ATTRIBUTE",
        /// `IFS_API_PATH`: the service path (default `main/ifsapplications/projection/v1`).
        ApiPath = "IFS_API_PATH",
        /// `IFS_PAGE_SIZE`: 2..=5000 (default 1000).
        PageSize = "IFS_PAGE_SIZE",
        /// `IFS_OVERLAP_SECS`: the cursor's re-read window (default 300).
        OverlapSecs = "IFS_OVERLAP_SECS",
        /// `IFS_PAGING`: `keyset` (default) or `offset`.
        Paging = "IFS_PAGING",
        /// `IFS_SELECT`: send `$select` (default true).
        Select = "IFS_SELECT",
        /// `IFS_CHANGE_DETECTION`: `stamp` (default: the entity set's change stamp) or
        /// `history_log` (the IFS history log, where the customer enabled it per LU).
        ChangeDetection = "IFS_CHANGE_DETECTION",
        /// `IFS_HISTORY_LU_NAMES`: the logical units (tables) whose history-log entries are
        /// watched, comma-separated (default: the resource's entity name).
        HistoryLuNames = "IFS_HISTORY_LU_NAMES",
        /// `IFS_HISTORY_PATH`: the history log entity set (default
        /// `HistoryLogHandling.svc/HistoryLogOverviewSet`).
        HistoryPath = "IFS_HISTORY_PATH",
        /// `IFS_APPROVERS`: Slack user -> IFS identity : actions,
        /// `U0123ABCD=ALICE:approve+reject;U0456EFGH=BOB:approve`. Setting it turns approvals
        /// from Slack on for this connection.
        Approvers = "IFS_APPROVERS",
        /// `IFS_APPROVAL_COMMAND`: the slash command (default `/approve-invoice`).
        ApprovalCommand = "IFS_APPROVAL_COMMAND",
        /// `IFS_APPROVAL_RESOURCE`: the resource approvals act on (default
        /// `supplier_invoices`).
        ApprovalResource = "IFS_APPROVAL_RESOURCE",
        /// `IFS_APPROVAL_STREAM`: the journal stream of approval decisions (default
        /// `ifs.approvals`).
        ApprovalStream = "IFS_APPROVAL_STREAM",
        /// `IFS_APPROVAL_RESPONSE_BASE`: one more base allowed for Slack `response_url`s
        /// besides `https://hooks.slack.com/` (an egress proxy, or an emulator in tests).
        ApprovalResponseBase = "IFS_APPROVAL_RESPONSE_BASE",
    }
}

/// Builds an [`IfsSource`] (and the [`ODataClient`] approvals use). Values are parsed at
/// [`build`](Self::build), whose errors name the key.
#[derive(Clone)]
pub struct IfsBuilder {
    values: ConfigValues<IfsConfigKey>,
    spec: Option<ResourceSpec>,
    client_options: ClientOptions,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    token_cache: Option<Arc<TokenCache>>,
    start_at: Option<Timestamp>,
}

impl fmt::Debug for IfsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IfsBuilder")
            .field("values", &self.values)
            .finish_non_exhaustive()
    }
}

impl Default for IfsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl IfsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self {
            values: ConfigValues::new(),
            spec: None,
            client_options: ClientOptions::default(),
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            token_cache: None,
            start_at: None,
        }
    }

    ml_core::config_builder_methods!(IfsConfigKey, "IFS_*");

    /// The environment's base URL.
    pub fn with_url(self, url: impl Into<String>) -> Self {
        self.with_config(IfsConfigKey::Url, url)
    }

    /// The IAM realm.
    pub fn with_realm(self, realm: impl Into<String>) -> Self {
        self.with_config(IfsConfigKey::Realm, realm)
    }

    /// Client credentials of an IAM client.
    pub fn with_client_credentials(
        mut self,
        client_id: impl Into<String>,
        secret: impl Into<SecretString>,
    ) -> Self {
        self.values.set(IfsConfigKey::ClientId, client_id);
        self.values
            .set_secret(IfsConfigKey::ClientSecret, secret.into());
        self
    }

    /// Only records of this company.
    pub fn with_company(self, company: impl Into<String>) -> Self {
        self.with_config(IfsConfigKey::Company, company)
    }

    /// A built-in resource.
    pub fn with_resource(self, r: IfsResource) -> Self {
        self.with_config(IfsConfigKey::Resource, r.name())
    }

    /// A full resource description.
    pub fn with_resource_spec(mut self, spec: ResourceSpec) -> Self {
        self.spec = Some(spec);
        self
    }

    /// Page size, 2..=5000.
    pub fn with_page_size(self, n: usize) -> Self {
        self.with_config(IfsConfigKey::PageSize, n.to_string())
    }

    /// The cursor overlap.
    pub fn with_overlap(self, d: Duration) -> Self {
        self.with_config(IfsConfigKey::OverlapSecs, d.as_secs().to_string())
    }

    /// Keyset (default) or anchored offsets.
    pub fn with_paging(self, paging: Paging) -> Self {
        let v = match paging {
            Paging::Keyset => "keyset",
            Paging::AnchoredOffset => "offset",
        };
        self.with_config(IfsConfigKey::Paging, v)
    }

    /// Where a stream that never ran starts (default: the beginning).
    pub fn with_start_at(mut self, t: Timestamp) -> Self {
        self.start_at = Some(t);
        self
    }

    /// HTTP client options.
    pub fn with_client_options(mut self, o: ClientOptions) -> Self {
        self.client_options = o;
        self
    }

    /// The retry policy of reads (429 / 5xx / `MI_MODIFIED_ERROR` / connection errors).
    pub fn with_retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }

    /// The clock (cursor cycle starts, token expiry).
    pub fn with_clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = c;
        self
    }

    /// Shares a token cache between sources of one environment.
    pub fn with_token_cache(mut self, c: Arc<TokenCache>) -> Self {
        self.token_cache = Some(c);
        self
    }

    pub(crate) fn val(&self, k: IfsConfigKey) -> Option<&str> {
        self.values.get(k)
    }

    pub(crate) fn client_options(&self) -> &ClientOptions {
        &self.client_options
    }

    fn parse_url(key: IfsConfigKey, raw: &str) -> Result<url::Url, IfsError> {
        check_url(key.as_env(), raw).map_err(|e| match e {
            ml_core::Error::Config { key, message } => IfsError::config(key, message),
            other => IfsError::config(key.as_env(), other.to_string()),
        })
    }

    fn base(&self) -> Result<(url::Url, String), IfsError> {
        use IfsConfigKey as K;
        let raw = self.val(K::Url).ok_or_else(|| {
            IfsError::config(K::Url.as_env(), "required (the IFS Cloud base URL)")
        })?;
        let url = Self::parse_url(K::Url, raw)?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => String::new(),
        };
        Ok((url, host))
    }

    /// The token URL: `IFS_TOKEN_URL`, or the realm's Keycloak endpoint under `IFS_URL`.
    pub fn token_url(&self) -> ml_core::Result<String> {
        self.token_url_inner().map_err(Into::into)
    }

    fn token_url_inner(&self) -> Result<String, IfsError> {
        use IfsConfigKey as K;
        if let Some(t) = self.val(K::TokenUrl) {
            Self::parse_url(K::TokenUrl, t)?;
            return Ok(t.to_owned());
        }
        let realm = self.val(K::Realm).ok_or_else(|| {
            IfsError::config(
                K::Realm.as_env(),
                "required with a client id (or set IFS_TOKEN_URL)",
            )
        })?;
        if realm.contains(['/', '?', '#']) {
            return Err(IfsError::config(K::Realm.as_env(), "must be a realm name"));
        }
        let (url, _) = self.base()?;
        Ok(format!(
            "{}/auth/realms/{realm}/protocol/openid-connect/token",
            url.as_str().trim_end_matches('/')
        ))
    }

    fn credentials(&self, client: &reqwest::Client) -> Result<Arc<TokenCache>, IfsError> {
        use IfsConfigKey as K;
        if let Some(c) = &self.token_cache {
            return Ok(Arc::clone(c));
        }
        let id = self.val(K::ClientId).ok_or_else(|| {
            IfsError::config(
                K::ClientId.as_env(),
                "no credentials: set IFS_CLIENT_ID, IFS_CLIENT_SECRET and IFS_REALM (or IFS_TOKEN_URL)",
            )
        })?;
        let secret = self
            .values
            .secret(K::ClientSecret)
            .cloned()
            .ok_or_else(|| {
                IfsError::config(K::ClientSecret.as_env(), "required with a client id")
            })?;
        let url = self.token_url_inner()?;
        let auth = match self
            .val(K::ClientAuth)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("post") => ClientAuth::Post,
            Some("basic") => ClientAuth::Basic,
            Some(other) => {
                return Err(IfsError::config(
                    K::ClientAuth.as_env(),
                    format!("`{other}` is neither `post` nor `basic`"),
                ));
            }
        };
        let endpoint =
            TokenEndpoint::new(client.clone(), url, id, secret, Grant::ClientCredentials)
                .map_err(|e| IfsError::config(K::TokenUrl.as_env(), e.to_string()))?
                .with_client_auth(auth)
                .with_scope(self.val(K::Scope).unwrap_or(DEFAULT_SCOPE))
                .with_clock(Arc::clone(&self.clock));
        // IAM tokens live about 3 minutes: the cache renews 60 s ahead.
        Ok(Arc::new(
            TokenCache::new(Arc::new(endpoint)).with_clock(Arc::clone(&self.clock)),
        ))
    }

    /// Obtains the credentials once so the sources built from clones share one token.
    pub fn with_shared_token_cache(self) -> ml_core::Result<Self> {
        if self.token_cache.is_some() {
            return Ok(self);
        }
        let client = self
            .client_options
            .client()
            .map_err(|e| IfsError::config("ClientOptions", e.to_string()))?;
        let cache = self.credentials(&client)?;
        Ok(self.with_token_cache(cache))
    }

    /// The service root URL (`<IFS_URL>/main/ifsapplications/projection/v1`).
    pub fn service_root(&self) -> ml_core::Result<String> {
        let (url, _) = self.base()?;
        let path = self
            .val(IfsConfigKey::ApiPath)
            .unwrap_or(DEFAULT_API_PATH)
            .trim_matches('/');
        Ok(format!("{}/{path}", url.as_str().trim_end_matches('/')))
    }

    /// An OData client for this environment (credentials, the time-zone header), named
    /// `system` in errors; what the approvals use.
    pub fn odata_client(&self, system: impl Into<String>) -> ml_core::Result<ODataClient> {
        let client = self
            .client_options
            .client()
            .map_err(|e| IfsError::config("ClientOptions", e.to_string()))?;
        let cache = self.credentials(&client)?;
        let api = ApiClient::reqwest(client)
            .with_credentials(Credentials::Tokens(cache))
            .with_clock(Arc::clone(&self.clock));
        Ok(ODataClient::new(api, system).with_header(
            HeaderName::from_static(TIME_ZONE_AWARE_HEADER),
            HeaderValue::from_static("true"),
        ))
    }

    /// The resource description after the `IFS_*` overrides.
    pub fn resource_spec(&self) -> ml_core::Result<ResourceSpec> {
        self.spec_inner().map_err(Into::into)
    }

    fn spec_inner(&self) -> Result<ResourceSpec, IfsError> {
        use IfsConfigKey as K;
        let mut spec = match (&self.spec, self.val(K::Resource)) {
            (Some(s), _) => s.clone(),
            (None, Some(r)) => IfsResource::from_name(r)
                .ok_or_else(|| {
                    let known: Vec<&str> = IfsResource::ALL.iter().map(|r| r.name()).collect();
                    IfsError::config(
                        K::Resource.as_env(),
                        format!("unknown resource `{r}` (known: {})", known.join(", ")),
                    )
                })?
                .spec(),
            (None, None) => IfsResource::SupplierInvoices.spec(),
        };
        let name_ok = |k: IfsConfigKey, v: &str| -> Result<String, IfsError> {
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(IfsError::config(
                    k.as_env(),
                    format!("`{v}` is not an OData name"),
                ));
            }
            Ok(v.to_owned())
        };
        if let Some(v) = self.val(K::Projection) {
            spec.projection = name_ok(K::Projection, v.trim_end_matches(".svc"))?;
        }
        if let Some(v) = self.val(K::EntitySet) {
            spec.entity_set = name_ok(K::EntitySet, v)?;
        }
        if let Some(v) = self.val(K::Entity) {
            spec.entity = name_ok(K::Entity, v)?;
        }
        if let Some(v) = self.val(K::StampAttribute) {
            spec.stamp = name_ok(K::StampAttribute, v)?;
        }
        for (k, field) in [
            (K::AmountAttribute, &mut spec.amount),
            (K::CurrencyAttribute, &mut spec.currency),
            (K::StatusAttribute, &mut spec.status),
        ] {
            if let Some(v) = self.val(k) {
                *field = if v.eq_ignore_ascii_case("none") {
                    None
                } else {
                    Some(name_ok(k, v)?)
                };
            }
        }
        if let Some(v) = self.val(K::Keys) {
            let mut keys = Vec::new();
            for part in v.split(',') {
                let (name, ty) = part.split_once(':').unwrap_or((part, "text"));
                let name = name_ok(K::Keys, name.trim())?;
                keys.push(match ty.trim().to_ascii_lowercase().as_str() {
                    "text" | "string" => KeyAttr::text(&name),
                    "number" | "int" => KeyAttr::number(&name),
                    other => {
                        return Err(IfsError::config(
                            K::Keys.as_env(),
                            format!("`{other}` is neither text nor number"),
                        ));
                    }
                });
            }
            spec.keys = keys;
        }
        if spec.keys.is_empty() || spec.projection.is_empty() || spec.entity_set.is_empty() {
            return Err(IfsError::config(
                K::Resource.as_env(),
                "the resource needs a projection, an entity set and keys",
            ));
        }
        Ok(spec)
    }

    /// Builds the source.
    pub fn build(self) -> ml_core::Result<IfsSource> {
        self.build_inner().map_err(Into::into)
    }

    fn build_inner(self) -> Result<IfsSource, IfsError> {
        use IfsConfigKey as K;
        let (_, host) = self.base()?;
        let spec = self.spec_inner()?;
        let page_size = match self.val(K::PageSize) {
            None => DEFAULT_PAGE_SIZE,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (2..=MAX_PAGE_SIZE).contains(&n) => n,
                _ => {
                    return Err(IfsError::config(
                        K::PageSize.as_env(),
                        format!("`{v}` is not a number in 2..=5000"),
                    ));
                }
            },
        };
        let overlap = match self.val(K::OverlapSecs) {
            None => Duration::from_secs(300),
            Some(v) => Duration::from_secs(v.parse().map_err(|_| {
                IfsError::config(
                    K::OverlapSecs.as_env(),
                    format!("`{v}` is not a number of seconds"),
                )
            })?),
        };
        let paging = match self.val(K::Paging).map(str::to_ascii_lowercase).as_deref() {
            None | Some("keyset") => Paging::Keyset,
            Some("offset") => Paging::AnchoredOffset,
            Some(other) => {
                return Err(IfsError::config(
                    K::Paging.as_env(),
                    format!("`{other}` is neither `keyset` nor `offset`"),
                ));
            }
        };
        let use_select = match self.val(K::Select).map(str::to_ascii_lowercase).as_deref() {
            None | Some("true" | "1" | "yes") => true,
            Some("false" | "0" | "no") => false,
            Some(other) => {
                return Err(IfsError::config(
                    K::Select.as_env(),
                    format!("`{other}` is not a boolean"),
                ));
            }
        };
        let company = self.val(K::Company).map(str::to_owned);
        let change_detection = self.change_detection(&spec)?;
        let root = self
            .service_root()
            .map_err(|e| IfsError::config(K::ApiPath.as_env(), e.to_string()))?;
        let system = format!("Ifs({host}, {})", spec.path());
        let odata = self.odata_client(system).map_err(|e| match e {
            ml_core::Error::Config { key, message } => IfsError::Config { key, message },
            other => IfsError::config("ClientOptions", other.to_string()),
        })?;
        let mut cursor = WatermarkCursor::new(overlap).with_paging(paging);
        if let Some(t) = self.start_at {
            cursor = cursor.with_start_at(t);
        }
        Ok(IfsSource {
            odata,
            collection_url: format!("{root}/{}", spec.path()),
            host,
            spec,
            company,
            cursor,
            page_size,
            retry: self.retry,
            clock: self.clock,
            use_select,
            select_refused: std::sync::atomic::AtomicBool::new(false),
            change_detection,
        })
    }

    fn change_detection(&self, spec: &ResourceSpec) -> Result<ChangeDetection, IfsError> {
        use IfsConfigKey as K;
        match self
            .val(K::ChangeDetection)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("stamp") => Ok(ChangeDetection::Stamp),
            Some("history_log" | "history") => {
                let lu_names: Vec<String> = match self.val(K::HistoryLuNames) {
                    Some(v) => v
                        .split(',')
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    None => vec![spec.entity.clone()],
                };
                if let Some(bad) = lu_names
                    .iter()
                    .find(|l| !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                {
                    return Err(IfsError::config(
                        K::HistoryLuNames.as_env(),
                        format!("`{bad}` is not an LU name"),
                    ));
                }
                if lu_names.is_empty() {
                    return Err(IfsError::config(K::HistoryLuNames.as_env(), "names no LU"));
                }
                let path = self
                    .val(K::HistoryPath)
                    .unwrap_or(crate::history::DEFAULT_HISTORY_PATH)
                    .trim_matches('/');
                if !path.contains(".svc/") || path.contains(['?', '#', ' ']) {
                    return Err(IfsError::config(
                        K::HistoryPath.as_env(),
                        format!("`{path}` is not <Projection>.svc/<EntitySet>"),
                    ));
                }
                let root = self
                    .service_root()
                    .map_err(|e| IfsError::config(K::ApiPath.as_env(), e.to_string()))?;
                Ok(ChangeDetection::HistoryLog {
                    url: format!("{root}/{path}"),
                    lu_names,
                })
            }
            Some(other) => Err(IfsError::config(
                K::ChangeDetection.as_env(),
                format!("`{other}` is neither `stamp` nor `history_log`"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use ml_core::config::MapEnv;

    use super::*;

    fn key_of(r: ml_core::Result<IfsSource>) -> String {
        match r {
            Err(ml_core::Error::Config { key, message }) => {
                assert!(!message.contains("hunter2"), "{message}");
                key
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn config_plumbing_and_token_url() {
        assert!(
            IfsBuilder::new()
                .with_config_str("IFS_PAGESIZE", "10")
                .is_err()
        );
        let env = MapEnv::from([
            ("IFS_URL", "https://acme.ifs.cloud"),
            ("IFS_CLIENT_ID", "ml"),
            ("IFS_CLIENT_SECRET", "hunter2"),
            ("IFS_COMPANY", "10"),
        ]);
        let b = IfsBuilder::from_env_with(&env);
        assert!(!format!("{b:?}").contains("hunter2"));
        assert_eq!(key_of(b.clone().build()), "IFS_REALM");
        let b = b.with_realm("acme-prod");
        assert_eq!(
            b.token_url().expect("url"),
            "https://acme.ifs.cloud/auth/realms/acme-prod/protocol/openid-connect/token"
        );
        let s = b.clone().build().expect("build");
        assert_eq!(s.company(), Some("10"));
        assert_eq!(
            s.collection_url(),
            "https://acme.ifs.cloud/main/ifsapplications/projection/v1/ManualSupplierInvoiceHandling.svc/ManSuppInvoiceSet"
        );
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(
            key_of(b.clone().with_page_size(5001).build()),
            "IFS_PAGE_SIZE"
        );
        assert_eq!(
            key_of(b.clone().with_config(IfsConfigKey::Keys, "A:date").build()),
            "IFS_KEYS"
        );
        assert_eq!(
            key_of(b.clone().with_url("http://acme.ifs.cloud").build()),
            "IFS_URL"
        );
        let custom = b
            .with_config_str("projection", "PurchaseOrderHandling.svc")
            .and_then(|b| b.with_config_str("entity_set", "PurchaseOrderSet"))
            .and_then(|b| b.with_config_str("keys", "OrderNo"))
            .expect("keys")
            .build()
            .expect("custom");
        assert_eq!(
            custom.spec().path(),
            "PurchaseOrderHandling.svc/PurchaseOrderSet"
        );
    }
}
