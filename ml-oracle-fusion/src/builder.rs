//! [`OracleFusionBuilder`]: configuration from the environment or code, checked at `build()`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use ml_core::auth::{BasicCredentials, TokenCache};
use ml_core::clock::{Clock, SystemClock};
use ml_core::config::{ConfigValues, check_url};
use ml_core::cursor::{Paging, WatermarkCursor};
use ml_core::http::ClientOptions;
use ml_core::money::Currency;
use ml_core::retry::RetryPolicy;
use secrecy::SecretString;

use ml_core::auth::oauth2::Grant;

use crate::auth::{Auth, JWT_AUDIENCE, signing_key, token_cache};
use crate::error::OracleFusionError;
use crate::resource::{OracleResource, ResourceSpec};
use crate::source::OracleFusionSource;

/// The default API version path segment.
pub const DEFAULT_API_VERSION: &str = "11.13.18.05";
/// The largest page size the REST API serves (unconfirmed; some pods reportedly cap at 499).
pub const MAX_PAGE_SIZE: usize = 500;

ml_core::config_keys! {
    /// A configuration key, named as its environment variable.
    pub enum OracleFusionConfigKey: prefix "ORACLE_FUSION_" {
        /// `ORACLE_FUSION_URL`: the pod base URL (`https://acme.fa.us2.oraclecloud.com`).
        Url = "ORACLE_FUSION_URL",
        /// `ORACLE_FUSION_TOKEN_URL`: the identity domain's token endpoint.
        TokenUrl = "ORACLE_FUSION_TOKEN_URL",
        /// `ORACLE_FUSION_CLIENT_ID`.
        ClientId = "ORACLE_FUSION_CLIENT_ID",
        /// `ORACLE_FUSION_CLIENT_SECRET`.
        ClientSecret = "ORACLE_FUSION_CLIENT_SECRET" (secret),
        /// `ORACLE_FUSION_SCOPE`: e.g. `https://acme.fa.us2.oraclecloud.com:443urn:opc:resource:consumer::all`.
        Scope = "ORACLE_FUSION_SCOPE",
        /// `ORACLE_FUSION_USER`: Basic user, or the JWT `sub`.
        User = "ORACLE_FUSION_USER",
        /// `ORACLE_FUSION_PASSWORD`: Basic password.
        Password = "ORACLE_FUSION_PASSWORD" (secret),
        /// `ORACLE_FUSION_JWT_PRIVATE_KEY`: PKCS#8 PEM RSA key for the JWT user assertion.
        JwtPrivateKey = "ORACLE_FUSION_JWT_PRIVATE_KEY" (secret),
        /// `ORACLE_FUSION_JWT_KEY_ID`: the `kid` header (certificate alias).
        JwtKeyId = "ORACLE_FUSION_JWT_KEY_ID",
        /// `ORACLE_FUSION_JWT_AUDIENCE` (default `https://identity.oraclecloud.com/`).
        JwtAudience = "ORACLE_FUSION_JWT_AUDIENCE",
        /// `ORACLE_FUSION_API_VERSION` (default `11.13.18.05`).
        ApiVersion = "ORACLE_FUSION_API_VERSION",
        /// `ORACLE_FUSION_RESOURCE`: `invoices`, `purchaseOrders`, ... (default `invoices`).
        Resource = "ORACLE_FUSION_RESOURCE",
        /// `ORACLE_FUSION_PAGE_SIZE`: 1..=500 (default 500).
        PageSize = "ORACLE_FUSION_PAGE_SIZE",
        /// `ORACLE_FUSION_OVERLAP_SECS`: the cursor's re-read window (default 300).
        OverlapSecs = "ORACLE_FUSION_OVERLAP_SECS",
        /// `ORACLE_FUSION_TIME_ZONE`: IANA zone for timestamps without an offset (default UTC).
        TimeZone = "ORACLE_FUSION_TIME_ZONE",
        /// `ORACLE_FUSION_PAGING`: `keyset` (default) or `offset` (see
        /// [`OracleFusionBuilder::with_paging`]).
        Paging = "ORACLE_FUSION_PAGING",
        /// `ORACLE_FUSION_DATE_LITERAL`: how `q` writes date-times, `single`, `double` or
        /// `bare` (see [`crate::source::DateLiteral`]); unset: single-quoted, with the other
        /// forms tried once if the pod refuses it.
        DateLiteral = "ORACLE_FUSION_DATE_LITERAL",
        /// `ORACLE_FUSION_COST_CENTER_SEGMENT`: which segment of an account combination is the
        /// cost center, `<index>` or `<index>:<separator>` (`1`, `2:.`; separator default `-`).
        /// Unset: no cost center, only the whole combination as the GL account.
        CostCenterSegment = "ORACLE_FUSION_COST_CENTER_SEGMENT",
        /// `ORACLE_FUSION_KEY_ATTRIBUTE`: the resource's key attribute, when this pod names
        /// it otherwise (payments: `CheckId` by default, `PaymentId` on some releases).
        KeyAttribute = "ORACLE_FUSION_KEY_ATTRIBUTE",
        /// `ORACLE_FUSION_TIMESTAMP_ATTRIBUTE`: the attribute the cursor polls on (default
        /// `LastUpdateDate`).
        TimestampAttribute = "ORACLE_FUSION_TIMESTAMP_ATTRIBUTE",
        /// `ORACLE_FUSION_AMOUNT_ATTRIBUTE`: the amount attribute (`none`: no amount).
        AmountAttribute = "ORACLE_FUSION_AMOUNT_ATTRIBUTE",
        /// `ORACLE_FUSION_CURRENCY_ATTRIBUTE`: the amount's currency attribute.
        CurrencyAttribute = "ORACLE_FUSION_CURRENCY_ATTRIBUTE",
        /// `ORACLE_FUSION_CURRENCY`: the currency (ISO 4217) of amounts whose row has no
        /// currency (a release without `CurrencyCode` on `journalBatches`): the ledger's.
        /// Unset: such an amount is rejected as having no currency.
        Currency = "ORACLE_FUSION_CURRENCY",
        /// `ORACLE_FUSION_DOCUMENT_ATTRIBUTE`: the document number attribute (`none`: none).
        DocumentAttribute = "ORACLE_FUSION_DOCUMENT_ATTRIBUTE",
        /// `ORACLE_FUSION_SUPPLIER_ATTRIBUTE`: the supplier (payee) name attribute
        /// (`none`: none).
        SupplierAttribute = "ORACLE_FUSION_SUPPLIER_ATTRIBUTE",
        /// `ORACLE_FUSION_STATUS_ATTRIBUTE`: the status attribute (`none`: none).
        StatusAttribute = "ORACLE_FUSION_STATUS_ATTRIBUTE",
    }
}

/// Builds an [`OracleFusionSource`]. Values are parsed at [`build`](Self::build), whose
/// errors name the key. Auth is chosen from what is set: a JWT key (+ client id, secret,
/// token URL, user) -> JWT user assertion; a client id + secret + token URL -> client
/// credentials; a user + password -> Basic.
#[derive(Clone)]
pub struct OracleFusionBuilder {
    values: ConfigValues<OracleFusionConfigKey>,
    spec: Option<ResourceSpec>,
    resource_path: Option<String>,
    timestamp_attr: Option<String>,
    client_options: ClientOptions,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    token_cache: Option<Arc<TokenCache>>,
    start_at: Option<Timestamp>,
    use_fields: bool,
    default_currency: Option<String>,
}

impl fmt::Debug for OracleFusionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OracleFusionBuilder")
            .field("values", &self.values)
            .field("resource_path", &self.resource_path)
            .finish_non_exhaustive()
    }
}

impl Default for OracleFusionBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl OracleFusionBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self {
            values: ConfigValues::new(),
            spec: None,
            resource_path: None,
            timestamp_attr: None,
            client_options: ClientOptions::default(),
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            token_cache: None,
            start_at: None,
            use_fields: true,
            default_currency: None,
        }
    }

    ml_core::config_builder_methods!(OracleFusionConfigKey, "ORACLE_FUSION_*");

    /// The pod base URL.
    pub fn with_url(self, url: impl Into<String>) -> Self {
        self.with_config(OracleFusionConfigKey::Url, url)
    }

    /// OAuth 2.0 client credentials against `token_url`.
    pub fn with_client_credentials(
        mut self,
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
    ) -> Self {
        self.values
            .set(OracleFusionConfigKey::TokenUrl, token_url.into());
        self.values
            .set(OracleFusionConfigKey::ClientId, client_id.into());
        self.values
            .set_secret(OracleFusionConfigKey::ClientSecret, client_secret.into());
        self
    }

    /// The OAuth scope. Default: the pod's audience with the consumer scope,
    /// `https://<pod>:443urn:opc:resource:consumer::all` (the pod URL's scheme, host and
    /// port), as Oracle documents for the client-credentials and JWT-assertion grants; set
    /// it when the confidential app's primary audience is another URL.
    pub fn with_scope(self, scope: impl Into<String>) -> Self {
        self.with_config(OracleFusionConfigKey::Scope, scope)
    }

    /// JWT user assertion: `user` is the Fusion user (`sub`), `pem` a PKCS#8 RSA key.
    /// Needs the client credentials too.
    pub fn with_jwt_assertion(
        mut self,
        user: impl Into<String>,
        pem: impl Into<SecretString>,
    ) -> Self {
        self.values.set(OracleFusionConfigKey::User, user.into());
        self.values
            .set_secret(OracleFusionConfigKey::JwtPrivateKey, pem.into());
        self
    }

    /// HTTP Basic (fallback).
    pub fn with_basic(
        mut self,
        user: impl Into<String>,
        password: impl Into<SecretString>,
    ) -> Self {
        self.values.set(OracleFusionConfigKey::User, user.into());
        self.values
            .set_secret(OracleFusionConfigKey::Password, password.into());
        self
    }

    /// The API version path segment.
    pub fn with_api_version(self, v: impl Into<String>) -> Self {
        self.with_config(OracleFusionConfigKey::ApiVersion, v)
    }

    /// One of the built-in resources.
    pub fn with_resource(mut self, r: OracleResource) -> Self {
        self.spec = Some(r.spec());
        self
    }

    /// Which segment (0-based) of an account combination split on `separator` is the cost
    /// center, for every resource read with lines (the chart of accounts decides; e.g.
    /// `01-520-7640-0000-000` with `('-', 1)` has cost center `520`). Kept by
    /// [`build_many`](Self::build_many).
    pub fn with_cost_center_segment(self, separator: char, index: usize) -> Self {
        self.with_config(
            OracleFusionConfigKey::CostCenterSegment,
            format!("{index}:{separator}"),
        )
    }

    /// A full resource description (custom attributes).
    pub fn with_resource_spec(mut self, spec: ResourceSpec) -> Self {
        self.spec = Some(spec);
        self
    }

    /// Overrides the resource path segment (e.g. a custom child path).
    pub fn with_resource_path(mut self, path: impl Into<String>) -> Self {
        self.resource_path = Some(path.into());
        self
    }

    /// Polls on this timestamp attribute (`CreationDate` for insert-only streams).
    pub fn with_timestamp_attribute(mut self, attr: impl Into<String>) -> Self {
        self.timestamp_attr = Some(attr.into());
        self
    }

    /// Page size, 1..=500.
    pub fn with_page_size(self, n: usize) -> Self {
        self.with_config(OracleFusionConfigKey::PageSize, n.to_string())
    }

    /// The cursor overlap.
    pub fn with_overlap(self, d: Duration) -> Self {
        self.with_config(OracleFusionConfigKey::OverlapSecs, d.as_secs().to_string())
    }

    /// Where a stream that never ran starts (default: the beginning).
    pub fn with_start_at(mut self, t: Timestamp) -> Self {
        self.start_at = Some(t);
        self
    }

    /// The zone of timestamps that come without an offset.
    pub fn with_time_zone(self, iana: impl Into<String>) -> Self {
        self.with_config(OracleFusionConfigKey::TimeZone, iana)
    }

    /// HTTP client options.
    pub fn with_client_options(mut self, o: ClientOptions) -> Self {
        self.client_options = o;
        self
    }

    /// The retry policy of each request (429 / 5xx / connection errors).
    pub fn with_retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }

    /// The clock (cursor cycle starts, token expiry).
    pub fn with_clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = c;
        self
    }

    /// Shares a token cache between sources of one pod.
    pub fn with_token_cache(mut self, c: Arc<TokenCache>) -> Self {
        self.token_cache = Some(c);
        self
    }

    /// Pins how `q` writes date-times (`ORACLE_FUSION_DATE_LITERAL`): no probe of the
    /// other forms when the pod answers 400.
    pub fn with_date_literal(self, form: crate::source::DateLiteral) -> Self {
        self.with_config(OracleFusionConfigKey::DateLiteral, form.name())
    }

    /// How pages continue within a cycle (default [`Paging::Keyset`]: `q=LastUpdateDate >
    /// 'T' or (LastUpdateDate = 'T' and InvoiceId > K)`, exactly `ceil(N / limit)` requests
    /// for `N` rows). The source falls back to [`Paging::AnchoredOffset`] by itself when the
    /// pod answers a keyset query with 400, or when it serves timestamps less precisely than
    /// it compares them (see [`ml_core::cursor`]).
    pub fn with_paging(self, paging: Paging) -> Self {
        let v = match paging {
            Paging::Keyset => "keyset",
            Paging::AnchoredOffset => "offset",
        };
        self.with_config(OracleFusionConfigKey::Paging, v)
    }

    /// Whether to send `fields=` (default true; turn off if a pod refuses an attribute).
    pub fn with_fields_param(mut self, on: bool) -> Self {
        self.use_fields = on;
        self
    }

    /// The currency of amounts whose item has no currency attribute.
    pub fn with_default_currency(mut self, c: impl Into<String>) -> Self {
        self.default_currency = Some(c.into());
        self
    }

    fn val(&self, k: OracleFusionConfigKey) -> Option<&str> {
        self.values.get(k)
    }

    fn parse_url(key: OracleFusionConfigKey, raw: &str) -> Result<url::Url, OracleFusionError> {
        check_url(key.as_env(), raw).map_err(|e| match e {
            ml_core::Error::Config { key, message } => OracleFusionError::config(key, message),
            other => OracleFusionError::config(key.as_env(), other.to_string()),
        })
    }

    fn auth(&self, client: &reqwest::Client) -> Result<Auth, OracleFusionError> {
        use OracleFusionConfigKey as K;
        if let Some(c) = &self.token_cache {
            return Ok(Auth::Bearer(c.clone()));
        }
        let client_id = self.val(K::ClientId);
        if let Some(id) = client_id {
            let token_url = self.val(K::TokenUrl).ok_or_else(|| {
                OracleFusionError::config(K::TokenUrl.as_env(), "required with a client id")
            })?;
            Self::parse_url(K::TokenUrl, token_url)?;
            let secret = self
                .values
                .secret(K::ClientSecret)
                .cloned()
                .ok_or_else(|| {
                    OracleFusionError::config(K::ClientSecret.as_env(), "required with a client id")
                })?;
            let grant = match self.values.secret(K::JwtPrivateKey) {
                Some(pem) => Grant::JwtBearer {
                    user: self
                        .val(K::User)
                        .ok_or_else(|| {
                            OracleFusionError::config(
                                K::User.as_env(),
                                "the JWT assertion needs the Fusion user",
                            )
                        })?
                        .to_owned(),
                    key: Box::new(signing_key(
                        K::JwtPrivateKey.as_env(),
                        pem,
                        self.val(K::JwtKeyId).map(str::to_owned),
                    )?),
                    audience: self.val(K::JwtAudience).unwrap_or(JWT_AUDIENCE).to_owned(),
                },
                None => Grant::ClientCredentials,
            };
            let scope = match self.val(K::Scope) {
                Some(s) => Some(s.to_owned()),
                None => self.val(K::Url).and_then(default_scope),
            };
            return Ok(Auth::Bearer(token_cache(
                client,
                token_url,
                id,
                secret,
                scope.as_deref(),
                grant,
                &self.clock,
            )?));
        }
        match (self.val(K::User), self.values.secret(K::Password)) {
            (Some(u), Some(p)) => {
                if u.contains(':') {
                    return Err(OracleFusionError::config(
                        K::User.as_env(),
                        "must not contain `:`",
                    ));
                }
                Ok(Auth::Basic(BasicCredentials::new(u, p.clone())))
            }
            (Some(_), None) => Err(OracleFusionError::config(
                K::Password.as_env(),
                "required with a user",
            )),
            _ => Err(OracleFusionError::config(
                K::ClientId.as_env(),
                "no credentials: set ORACLE_FUSION_CLIENT_ID/_CLIENT_SECRET/_TOKEN_URL or ORACLE_FUSION_USER/_PASSWORD",
            )),
        }
    }

    /// Obtains the pod's credentials once, so that the sources built from clones of this
    /// builder share one token cache (one token for the pod, as
    /// [`build_many`](Self::build_many) does). Basic auth needs no sharing.
    pub fn with_shared_token_cache(self) -> ml_core::Result<Self> {
        if self.token_cache.is_some() {
            return Ok(self);
        }
        let client = self
            .client_options
            .client()
            .map_err(|e| OracleFusionError::config("ClientOptions", e.to_string()))?;
        Ok(match self.auth(&client)? {
            Auth::Bearer(cache) => self.with_token_cache(cache),
            Auth::Basic(_) => self,
        })
    }

    /// Builds the source.
    pub fn build(self) -> ml_core::Result<OracleFusionSource> {
        self.build_inner().map_err(Into::into)
    }

    /// Builds one source per resource, sharing one token cache (one token for the pod).
    pub fn build_many(
        self,
        resources: &[OracleResource],
    ) -> ml_core::Result<Vec<OracleFusionSource>> {
        let first = self
            .clone()
            .with_resource(
                resources
                    .first()
                    .copied()
                    .unwrap_or(OracleResource::Invoices),
            )
            .build_inner()?;
        let shared = self.clone();
        let shared = match &first.auth {
            Auth::Bearer(c) => shared.with_token_cache(c.clone()),
            Auth::Basic(_) => shared,
        };
        let mut out = vec![first];
        for r in resources.iter().skip(1) {
            out.push(shared.clone().with_resource(*r).build_inner()?);
        }
        Ok(out)
    }

    /// Applies the attribute names set by key (`ORACLE_FUSION_*_ATTRIBUTE`): this pod's
    /// names for what the resource description reads. An optional one set to `none` is
    /// not read.
    fn rename_attributes(&self, spec: &mut ResourceSpec) -> Result<(), OracleFusionError> {
        use OracleFusionConfigKey as K;
        let name = |k: K| -> Result<Option<String>, OracleFusionError> {
            let Some(v) = self.val(k).map(str::trim) else {
                return Ok(None);
            };
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(OracleFusionError::config(
                    k.as_env(),
                    format!("`{v}` is not an attribute name (letters, digits, `_`)"),
                ));
            }
            Ok(Some(v.to_owned()))
        };
        let required = |k: K, v: &str| {
            if v.eq_ignore_ascii_case("none") {
                Err(OracleFusionError::config(
                    k.as_env(),
                    "required: the source cannot read without it",
                ))
            } else {
                Ok(v.to_owned())
            }
        };
        if let Some(v) = name(K::KeyAttribute)? {
            spec.key = required(K::KeyAttribute, &v)?;
        }
        if let Some(v) = name(K::TimestampAttribute)? {
            spec.timestamp = required(K::TimestampAttribute, &v)?;
        }
        if let Some(v) = name(K::CurrencyAttribute)? {
            spec.currency = Some(required(K::CurrencyAttribute, &v)?);
        }
        let optional = |v: String| (!v.eq_ignore_ascii_case("none")).then_some(v);
        if let Some(v) = name(K::AmountAttribute)? {
            spec.amount = optional(v);
            if spec.amount.is_none() {
                spec.amount_required = false;
            }
        }
        if let Some(v) = name(K::DocumentAttribute)? {
            spec.document_number = optional(v);
        }
        if let Some(v) = name(K::SupplierAttribute)? {
            spec.supplier = optional(v);
        }
        if let Some(v) = name(K::StatusAttribute)? {
            spec.status = optional(v);
        }
        Ok(())
    }

    fn build_inner(self) -> Result<OracleFusionSource, OracleFusionError> {
        use OracleFusionConfigKey as K;
        let raw = self.val(K::Url).ok_or_else(|| {
            OracleFusionError::config(K::Url.as_env(), "required (the pod base URL)")
        })?;
        let url = Self::parse_url(K::Url, raw)?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let host = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        let mut spec = match (&self.spec, self.val(K::Resource)) {
            (Some(s), _) => s.clone(),
            (None, Some(r)) => OracleResource::from_path(r)
                .ok_or_else(|| {
                    OracleFusionError::config(
                        K::Resource.as_env(),
                        format!("unknown resource `{r}`"),
                    )
                })?
                .spec(),
            (None, None) => OracleResource::Invoices.spec(),
        };
        if let Some(p) = &self.resource_path {
            spec.path.clone_from(p);
        }
        if let Some(t) = &self.timestamp_attr {
            spec.timestamp.clone_from(t);
        }
        self.rename_attributes(&mut spec)?;
        if let Some(v) = self.val(K::CostCenterSegment) {
            let (index, sep) = v.split_once(':').unwrap_or((v, "-"));
            let bad = || {
                OracleFusionError::config(
                    K::CostCenterSegment.as_env(),
                    format!("`{v}` is not <index> or <index>:<separator> (e.g. 1 or 2:.)"),
                )
            };
            let index: usize = index.trim().parse().map_err(|_| bad())?;
            let mut chars = sep.chars();
            let (Some(sep), None) = (chars.next(), chars.next()) else {
                return Err(bad());
            };
            spec = spec.with_cost_center_segment(sep, index);
        }
        let version = self.val(K::ApiVersion).unwrap_or(DEFAULT_API_VERSION);
        if version.contains('/') {
            return Err(OracleFusionError::config(
                K::ApiVersion.as_env(),
                "must be one path segment",
            ));
        }
        let page_size = match self.val(K::PageSize) {
            None => MAX_PAGE_SIZE,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (2..=MAX_PAGE_SIZE).contains(&n) => n,
                _ => {
                    return Err(OracleFusionError::config(
                        K::PageSize.as_env(),
                        format!("`{v}` is not a number in 2..=500"),
                    ));
                }
            },
        };
        let overlap = match self.val(K::OverlapSecs) {
            None => Duration::from_secs(300),
            Some(v) => Duration::from_secs(v.parse().map_err(|_| {
                OracleFusionError::config(
                    K::OverlapSecs.as_env(),
                    format!("`{v}` is not a number of seconds"),
                )
            })?),
        };
        let tz = match self.val(K::TimeZone) {
            None => TimeZone::UTC,
            Some(z) => TimeZone::get(z).map_err(|e| {
                OracleFusionError::config(K::TimeZone.as_env(), format!("unknown time zone: {e}"))
            })?,
        };
        let default_currency = match (self.default_currency.as_deref(), self.val(K::Currency)) {
            (Some(c), _) => {
                Some(Currency::new(c).map_err(|e| {
                    OracleFusionError::config("with_default_currency", e.to_string())
                })?)
            }
            (None, Some(c)) => Some(
                Currency::new(c)
                    .map_err(|e| OracleFusionError::config(K::Currency.as_env(), e.to_string()))?,
            ),
            (None, None) => None,
        };
        let client = self
            .client_options
            .client()
            .map_err(|e| OracleFusionError::config("ClientOptions", e.to_string()))?;
        let auth = self.auth(&client)?;
        let paging = match self.val(K::Paging).map(str::to_ascii_lowercase).as_deref() {
            None | Some("keyset") => Paging::Keyset,
            Some("offset") => Paging::AnchoredOffset,
            Some(other) => {
                return Err(OracleFusionError::config(
                    K::Paging.as_env(),
                    format!("`{other}` is neither `keyset` nor `offset`"),
                ));
            }
        };
        let date_literal = match self.val(K::DateLiteral) {
            None => None,
            Some(v) => Some(crate::source::DateLiteral::from_name(v).ok_or_else(|| {
                OracleFusionError::config(
                    K::DateLiteral.as_env(),
                    format!("`{v}` is none of `single`, `double`, `bare`"),
                )
            })?),
        };
        let mut cursor = WatermarkCursor::new(overlap).with_paging(paging);
        if let Some(t) = self.start_at {
            cursor = cursor.with_start_at(t);
        }
        let base = url.as_str().trim_end_matches('/');
        Ok(OracleFusionSource {
            client,
            collection_url: format!("{base}/fscmRestApi/resources/{version}/{}", spec.path),
            host,
            spec,
            auth,
            cursor,
            keyset_rejected: std::sync::atomic::AtomicBool::new(false),
            date_literal: std::sync::atomic::AtomicU8::new(crate::source::DateLiteral::index(
                date_literal.unwrap_or_default(),
            )),
            date_settled: std::sync::atomic::AtomicBool::new(date_literal.is_some()),
            attributes: crate::attributes::Attributes::default(),
            page_size,
            retry: self.retry,
            clock: self.clock,
            tz,
            use_fields: self.use_fields,
            default_currency,
        })
    }
}

/// The scope Oracle documents for a Fusion pod: its primary audience (scheme, host and
/// port, the port always written) followed by `urn:opc:resource:consumer::all`.
fn default_scope(pod_url: &str) -> Option<String> {
    let u = url::Url::parse(pod_url).ok()?;
    let host = u.host_str()?;
    let port = u.port_or_known_default()?;
    Some(format!(
        "{}://{host}:{port}urn:opc:resource:consumer::all",
        u.scheme()
    ))
}

#[cfg(test)]
mod tests {
    use ml_core::config::MapEnv;

    use super::*;

    fn key_of(r: ml_core::Result<OracleFusionSource>) -> String {
        match r {
            Err(ml_core::Error::Config { key, message }) => {
                assert!(!message.contains("hunter2"), "{message}");
                key
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn shared_config_plumbing() {
        let err = OracleFusionBuilder::new()
            .with_config_str("ORACLE_FUSION_PAGESIZE", "10")
            .expect_err("unknown key");
        assert!(
            matches!(&err, ml_core::Error::Config { key, .. } if key == "ORACLE_FUSION_PAGESIZE"),
            "{err}"
        );
        let env = MapEnv::from([
            ("ORACLE_FUSION_URL", "http://erp.example.com"),
            ("ORACLE_FUSION_USER", "u"),
            ("ORACLE_FUSION_PASSWORD", "hunter2"),
            ("ORACLE_FUSION_PAGE_SIZE", ""),
        ]);
        let b = OracleFusionBuilder::from_env_with(&env);
        assert!(!format!("{b:?}").contains("hunter2"));
        assert_eq!(key_of(b.clone().build()), "ORACLE_FUSION_URL");
        let b = b
            .with_config_str("url", "http://127.0.0.1:9")
            .expect("short name");
        assert!(
            b.clone().build().is_ok(),
            "the empty page size counts as unset"
        );
        let b = b
            .with_config_str("token_url", "http://idcs.example.com/oauth2/v1/token")
            .and_then(|b| b.with_config_str("client_id", "c"))
            .and_then(|b| b.with_config_str("client_secret", "hunter2"))
            .expect("keys");
        assert_eq!(key_of(b.build()), "ORACLE_FUSION_TOKEN_URL");
    }
}
