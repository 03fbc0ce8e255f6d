//! [`SapODataBuilder`]: configuration from the environment or code, checked at `build()`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use ml_core::auth::BasicCredentials;
use ml_core::clock::{Clock, SystemClock};
use ml_core::config::{ConfigValues, check_url};
use ml_core::cursor::WatermarkCursor;
use ml_core::http::ClientOptions;
use ml_core::record::EntityKind;
use ml_core::retry::RetryPolicy;
use secrecy::SecretString;

use super::error::ODataError;
use super::model::EntitySpec;
use super::source::{SapODataPaging, SapODataSource};
use super::value::DateKind;

/// The default page size (`$top`). Gateway has no fixed maximum; services cap pages with
/// server-driven paging (`__next`) at whatever their implementation chose.
pub const DEFAULT_PAGE_SIZE: usize = 500;
/// The largest page size accepted.
pub const MAX_PAGE_SIZE: usize = 5_000;

ml_core::config_keys! {
    /// A configuration key of the OData source, named as its environment variable.
    pub enum SapODataConfigKey: prefix "SAP_ECC_" {
        /// `SAP_ECC_URL`: the Gateway's base URL (`https://sapgw.acme.local:44300`).
        Url = "SAP_ECC_URL",
        /// `SAP_ECC_CLIENT`: the three-digit client (`sap-client`).
        Client = "SAP_ECC_CLIENT",
        /// `SAP_ECC_USER`: the Basic user.
        User = "SAP_ECC_USER",
        /// `SAP_ECC_PASSWORD`: the Basic password.
        Password = "SAP_ECC_PASSWORD" (secret),
        /// `SAP_ECC_ODATA_SERVICE`: the service name (`ZML_PO_SRV`).
        Service = "SAP_ECC_ODATA_SERVICE",
        /// `SAP_ECC_ODATA_ENTITY_SET` (default `PurchaseOrderSet`).
        EntitySet = "SAP_ECC_ODATA_ENTITY_SET",
        /// `SAP_ECC_ODATA_KIND`: the entity kind (`purchase_order`, `supplier_invoice`,
        /// `gl_journal`, `payment`, `supplier`, `customer`, `cost_center`, `material`, or any
        /// other name).
        Kind = "SAP_ECC_ODATA_KIND",
        /// `SAP_ECC_ODATA_KEY_PROPERTY` (default `PurchaseOrder`).
        KeyProperty = "SAP_ECC_ODATA_KEY_PROPERTY",
        /// `SAP_ECC_ODATA_STAMP_PROPERTY` (default `ChangedAt`).
        StampProperty = "SAP_ECC_ODATA_STAMP_PROPERTY",
        /// `SAP_ECC_ODATA_STAMP_TYPE`: `datetime` (default) or `datetimeoffset`.
        StampType = "SAP_ECC_ODATA_STAMP_TYPE",
        /// `SAP_ECC_ODATA_AMOUNT_PROPERTY` (default `NetAmount`; `-` for none).
        AmountProperty = "SAP_ECC_ODATA_AMOUNT_PROPERTY",
        /// `SAP_ECC_ODATA_CURRENCY_PROPERTY` (default `Currency`).
        CurrencyProperty = "SAP_ECC_ODATA_CURRENCY_PROPERTY",
        /// `SAP_ECC_ODATA_PAGE_SIZE`: `$top`, 2..=5000 (default 500).
        PageSize = "SAP_ECC_ODATA_PAGE_SIZE",
        /// `SAP_ECC_ODATA_OVERLAP_SECS`: the cursor's re-read window (default 300).
        OverlapSecs = "SAP_ECC_ODATA_OVERLAP_SECS",
        /// `SAP_ECC_ODATA_PAGING`: `offset` (default), `next` or `keyset`.
        Paging = "SAP_ECC_ODATA_PAGING",
    }
}

/// Builds a [`SapODataSource`]. Values are parsed at [`build`](Self::build), whose errors
/// name the key.
#[derive(Clone)]
pub struct SapODataBuilder {
    values: ConfigValues<SapODataConfigKey>,
    spec: Option<EntitySpec>,
    client_options: ClientOptions,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    start_at: Option<Timestamp>,
}

impl fmt::Debug for SapODataBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SapODataBuilder")
            .field("values", &self.values)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Default for SapODataBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn parse_kind(s: &str) -> EntityKind {
    match s.trim().to_ascii_lowercase().as_str() {
        "purchase_order" => EntityKind::PurchaseOrder,
        "supplier_invoice" => EntityKind::SupplierInvoice,
        "gl_journal" => EntityKind::GlJournal,
        "payment" => EntityKind::Payment,
        "supplier" => EntityKind::Supplier,
        "customer" => EntityKind::Customer,
        "cost_center" => EntityKind::CostCenter,
        "material" => EntityKind::Material,
        _ => EntityKind::Other(s.trim().to_owned()),
    }
}

/// An OData identifier (service, entity set, property): letters, digits, `_`, and `/` in
/// namespaced service names. Refusing the rest keeps `$filter` and paths unambiguous.
fn identifier(key: SapODataConfigKey, v: &str) -> Result<String, ODataError> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'/')
        && !v.starts_with('/');
    if ok {
        Ok(v.to_owned())
    } else {
        Err(ODataError::config(
            key.as_env(),
            format!("`{v}` is not an OData identifier"),
        ))
    }
}

impl SapODataBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self {
            values: ConfigValues::new(),
            spec: None,
            client_options: ClientOptions::default(),
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            start_at: None,
        }
    }

    ml_core::config_builder_methods!(SapODataConfigKey, "SAP_ECC_*");

    /// The Gateway base URL.
    pub fn with_url(self, url: impl Into<String>) -> Self {
        self.with_config(SapODataConfigKey::Url, url)
    }

    /// The SAP client (`100`).
    pub fn with_client(self, client: impl Into<String>) -> Self {
        self.with_config(SapODataConfigKey::Client, client)
    }

    /// HTTP Basic credentials.
    pub fn with_basic(
        mut self,
        user: impl Into<String>,
        password: impl Into<SecretString>,
    ) -> Self {
        self.values.set(SapODataConfigKey::User, user.into());
        self.values
            .set_secret(SapODataConfigKey::Password, password.into());
        self
    }

    /// The service (`ZML_PO_SRV`).
    pub fn with_service(self, service: impl Into<String>) -> Self {
        self.with_config(SapODataConfigKey::Service, service)
    }

    /// The whole entity description (property names beyond the configuration keys). The
    /// configuration keys, when set, override its fields.
    pub fn with_entity_spec(mut self, spec: EntitySpec) -> Self {
        self.spec = Some(spec);
        self
    }

    /// `$top`, 2..=5000.
    pub fn with_page_size(self, n: usize) -> Self {
        self.with_config(SapODataConfigKey::PageSize, n.to_string())
    }

    /// The cursor overlap.
    pub fn with_overlap(self, d: Duration) -> Self {
        self.with_config(SapODataConfigKey::OverlapSecs, d.as_secs().to_string())
    }

    /// How pages continue (default [`SapODataPaging::Offset`]).
    pub fn with_paging(self, paging: SapODataPaging) -> Self {
        let v = match paging {
            SapODataPaging::NextLink => "next",
            SapODataPaging::Keyset => "keyset",
            SapODataPaging::Offset => "offset",
        };
        self.with_config(SapODataConfigKey::Paging, v)
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

    /// The retry policy of each read (429 / 5xx / connection errors).
    pub fn with_retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }

    /// The clock (cursor cycle starts, `Retry-After` dates).
    pub fn with_clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = c;
        self
    }

    /// Builds the source.
    pub fn build(self) -> ml_core::Result<SapODataSource> {
        self.build_inner().map_err(Into::into)
    }

    fn val(&self, k: SapODataConfigKey) -> Option<&str> {
        self.values.get(k)
    }

    fn build_inner(self) -> Result<SapODataSource, ODataError> {
        use SapODataConfigKey as K;
        let raw = self
            .val(K::Url)
            .ok_or_else(|| ODataError::config(K::Url.as_env(), "required (the Gateway URL)"))?;
        let url = check_url(K::Url.as_env(), raw).map_err(|e| match e {
            ml_core::Error::Config { key, message } => ODataError::config(key, message),
            other => ODataError::config(K::Url.as_env(), other.to_string()),
        })?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let host = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        let origin = format!("{}://{host}", url.scheme());
        let sap_client = self
            .val(K::Client)
            .ok_or_else(|| ODataError::config(K::Client.as_env(), "required (e.g. 100)"))?
            .trim()
            .to_owned();
        if sap_client.len() != 3 || !sap_client.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ODataError::config(
                K::Client.as_env(),
                format!("`{sap_client}` is not a three-digit client"),
            ));
        }
        let user = self
            .val(K::User)
            .ok_or_else(|| ODataError::config(K::User.as_env(), "required"))?;
        if user.contains(':') {
            return Err(ODataError::config(K::User.as_env(), "must not contain `:`"));
        }
        let password = self
            .values
            .secret(K::Password)
            .cloned()
            .ok_or_else(|| ODataError::config(K::Password.as_env(), "required with a user"))?;
        let service = identifier(
            K::Service,
            self.val(K::Service).ok_or_else(|| {
                ODataError::config(K::Service.as_env(), "required (the Gateway service name)")
            })?,
        )?;
        let mut spec = self.spec.clone().unwrap_or_default();
        if let Some(v) = self.val(K::EntitySet) {
            spec.entity_set = identifier(K::EntitySet, v)?;
        }
        identifier(K::EntitySet, &spec.entity_set)?;
        if let Some(v) = self.val(K::Kind) {
            spec.kind = parse_kind(v);
        }
        if let Some(v) = self.val(K::KeyProperty) {
            spec.key = identifier(K::KeyProperty, v)?;
        }
        identifier(K::KeyProperty, &spec.key)?;
        if let Some(v) = self.val(K::StampProperty) {
            spec.stamp = identifier(K::StampProperty, v)?;
        }
        identifier(K::StampProperty, &spec.stamp)?;
        spec.stamp_kind = match self
            .val(K::StampType)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None => spec.stamp_kind,
            Some("datetime") => DateKind::DateTime,
            Some("datetimeoffset") => DateKind::DateTimeOffset,
            Some(other) => {
                return Err(ODataError::config(
                    K::StampType.as_env(),
                    format!("`{other}` is neither `datetime` nor `datetimeoffset`"),
                ));
            }
        };
        match self.val(K::AmountProperty) {
            Some("-") => spec.amount = None,
            Some(v) => spec.amount = Some(identifier(K::AmountProperty, v)?),
            None => {}
        }
        if let Some(v) = self.val(K::CurrencyProperty) {
            spec.currency = Some(identifier(K::CurrencyProperty, v)?);
        }
        if spec.amount.is_some() && spec.currency.is_none() {
            return Err(ODataError::config(
                K::CurrencyProperty.as_env(),
                "required with an amount property (money is amount + currency)",
            ));
        }
        let page_size = match self.val(K::PageSize) {
            None => DEFAULT_PAGE_SIZE,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (2..=MAX_PAGE_SIZE).contains(&n) => n,
                _ => {
                    return Err(ODataError::config(
                        K::PageSize.as_env(),
                        format!("`{v}` is not a number in 2..={MAX_PAGE_SIZE}"),
                    ));
                }
            },
        };
        let overlap = match self.val(K::OverlapSecs) {
            None => Duration::from_secs(300),
            Some(v) => Duration::from_secs(v.trim().parse().map_err(|_| {
                ODataError::config(
                    K::OverlapSecs.as_env(),
                    format!("`{v}` is not a number of seconds"),
                )
            })?),
        };
        let paging = match self.val(K::Paging).map(str::to_ascii_lowercase).as_deref() {
            Some("next") => SapODataPaging::NextLink,
            Some("keyset") => SapODataPaging::Keyset,
            None | Some("offset") => SapODataPaging::Offset,
            Some(other) => {
                return Err(ODataError::config(
                    K::Paging.as_env(),
                    format!("`{other}` is not `next`, `keyset` or `offset`"),
                ));
            }
        };
        let client = self
            .client_options
            .client()
            .map_err(|e| ODataError::config("ClientOptions", e.to_string()))?;
        let mut cursor = WatermarkCursor::new(overlap);
        if let Some(t) = self.start_at {
            cursor = cursor.with_start_at(t);
        }
        let base_path = url.path().trim_end_matches('/');
        Ok(SapODataSource {
            client,
            origin,
            service_path: format!("{base_path}/sap/opu/odata/sap/{service}/"),
            service,
            sap_client,
            host,
            spec,
            credentials: BasicCredentials::new(user, password),
            cursor,
            paging,
            page_size,
            retry: self.retry,
            clock: self.clock,
            csrf: tokio::sync::Mutex::new(None),
        })
    }
}

#[cfg(test)]
mod tests {
    use ml_core::config::MapEnv;

    use super::*;

    fn key_of(r: ml_core::Result<SapODataSource>) -> String {
        match r {
            Err(ml_core::Error::Config { key, message }) => {
                assert!(!message.contains("hunter2"), "{message}");
                key
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn config_errors_name_the_key_and_hide_the_password() {
        let err = SapODataBuilder::new()
            .with_config_str("SAP_ECC_ODATA_SERVIC", "x")
            .expect_err("unknown key");
        assert!(err.to_string().contains("SAP_ECC_ODATA_SERVIC"), "{err}");
        let env = MapEnv::from([
            ("SAP_ECC_URL", "http://127.0.0.1:9"),
            ("SAP_ECC_CLIENT", "100"),
            ("SAP_ECC_USER", "ML_USER"),
            ("SAP_ECC_PASSWORD", "hunter2"),
        ]);
        let b = SapODataBuilder::from_env_with(&env);
        assert!(!format!("{b:?}").contains("hunter2"));
        assert_eq!(key_of(b.clone().build()), "SAP_ECC_ODATA_SERVICE");
        let b = b
            .with_config_str("odata_service", "ZML_PO_SRV")
            .expect("short name");
        let s = b.clone().build().expect("source");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(
            s.to_string(),
            "SapOData(127.0.0.1:9, client=100, ZML_PO_SRV/PurchaseOrderSet)"
        );
        assert_eq!(
            key_of(b.clone().with_client("1000").build()),
            "SAP_ECC_CLIENT"
        );
        assert_eq!(
            key_of(b.clone().with_url("http://sap.example.com").build()),
            "SAP_ECC_URL"
        );
        assert_eq!(
            key_of(b.clone().with_page_size(1).build()),
            "SAP_ECC_ODATA_PAGE_SIZE"
        );
        assert_eq!(
            key_of(
                b.clone()
                    .with_config(SapODataConfigKey::EntitySet, "Set?$x")
                    .build()
            ),
            "SAP_ECC_ODATA_ENTITY_SET"
        );
        assert_eq!(
            key_of(
                b.clone()
                    .with_config(SapODataConfigKey::Paging, "pages")
                    .build()
            ),
            "SAP_ECC_ODATA_PAGING"
        );
    }

    #[test]
    fn filters_and_next_links() {
        let s = SapODataBuilder::new()
            .with_url("http://127.0.0.1:9")
            .with_client("100")
            .with_basic("U", "p")
            .with_service("ZML_PO_SRV")
            .build()
            .expect("source");
        let t: Timestamp = "2024-01-01T00:00:00Z".parse().expect("t");
        let plan = ml_core::cursor::ReadPlan {
            since: Some(t),
            after_key: Some("4500000001".into()),
            ..Default::default()
        };
        assert_eq!(
            s.filter(&plan).as_deref(),
            Some(
                "(ChangedAt gt datetime'2024-01-01T00:00:00' or (ChangedAt eq datetime'2024-01-01T00:00:00' and PurchaseOrder gt '4500000001'))"
            )
        );
        let url = s.query_url(&ml_core::cursor::ReadPlan::default());
        assert!(
            url.contains(
                "sap-client=100&$format=json&$orderby=ChangedAt%20asc,PurchaseOrder%20asc&$top=500"
            ),
            "{url}"
        );
        assert_eq!(
            s.next_token("http://internal-host:8000/sap/opu/odata/sap/ZML_PO_SRV/PurchaseOrderSet?$skiptoken=5").expect("abs"),
            "/sap/opu/odata/sap/ZML_PO_SRV/PurchaseOrderSet?$skiptoken=5&sap-client=100&$format=json"
        );
        assert_eq!(
            s.next_token("PurchaseOrderSet?sap-client=100&$skiptoken=5")
                .expect("rel"),
            "/sap/opu/odata/sap/ZML_PO_SRV/PurchaseOrderSet?sap-client=100&$skiptoken=5&$format=json"
        );
        assert!(s.next_token("http://evil/other/path").is_err());
        assert!(s.next_token("/sap/opu/odata/sap/OTHER_SRV/X").is_err());
    }
}
