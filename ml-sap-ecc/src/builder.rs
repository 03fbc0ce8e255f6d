//! [`SapEccBuilder`]: configuration from the environment or code, checked at `build()`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use ml_core::auth::BasicCredentials;
use ml_core::clock::{Clock, SystemClock};
use ml_core::config::{ConfigValues, check_url};
use ml_core::cursor::{Paging, WatermarkCursor};
use ml_core::http::ClientOptions;
use ml_core::retry::RetryPolicy;
use rust_decimal::Decimal;
use secrecy::SecretString;

use crate::client::{DEFAULT_MAX_CONCURRENT_RFC, MAX_CONCURRENT_RFC, RfcClient};
use crate::error::SapEccError;
use crate::model::IdempotencyKey;
use crate::read_table::{CodePage, ROW_BUFFER, RfcReadTable};
use crate::rfc::RfcTransport;
use crate::scan::{naive_now, parse_timezone};
use crate::soap::SoapRfcTransport;
use crate::source::{Category, SapEccSource};

/// The default page size (documents per poll).
pub const DEFAULT_PAGE_SIZE: usize = 500;
/// The largest page size accepted.
pub const MAX_PAGE_SIZE: usize = 5_000;

ml_core::config_keys! {
    /// A configuration key, named as its environment variable.
    pub enum SapEccConfigKey: prefix "SAP_ECC_" {
        /// `SAP_ECC_URL`: the ICM base URL (`https://erp.example.com:44300`).
        Url = "SAP_ECC_URL",
        /// `SAP_ECC_CLIENT`: the SAP client (`100`), sent as `sap-client`.
        Client = "SAP_ECC_CLIENT",
        /// `SAP_ECC_USER`: the RFC user.
        User = "SAP_ECC_USER",
        /// `SAP_ECC_PASSWORD`: its password.
        Password = "SAP_ECC_PASSWORD" (secret),
        /// `SAP_ECC_LANGUAGE`: the logon language (default `EN`).
        Language = "SAP_ECC_LANGUAGE",
        /// `SAP_ECC_MAX_CONCURRENT_RFC`: calls in flight per system, 1..=50 (default 10).
        MaxConcurrentRfc = "SAP_ECC_MAX_CONCURRENT_RFC",
        /// `SAP_ECC_TIMEZONE`: the application server's zone, IANA name or fixed offset
        /// (default `UTC`): SAP dates and times carry no zone.
        Timezone = "SAP_ECC_TIMEZONE",
        /// `SAP_ECC_CATEGORY`: `purchase_orders`, `invoices` (default) or `gl`.
        Category = "SAP_ECC_CATEGORY",
        /// `SAP_ECC_PAGE_SIZE`: documents per poll, 2..=5000 (default 500).
        PageSize = "SAP_ECC_PAGE_SIZE",
        /// `SAP_ECC_OVERLAP_SECS`: the cursor's re-read window (default 600).
        OverlapSecs = "SAP_ECC_OVERLAP_SECS",
        /// `SAP_ECC_CODEPAGE`: the system code page (`4103` Unicode, default; `1100`, `8000`,
        /// ... for non-Unicode systems).
        Codepage = "SAP_ECC_CODEPAGE",
        /// `SAP_ECC_COMPANY_CODES`: comma-separated `BUKRS` to read (default all).
        CompanyCodes = "SAP_ECC_COMPANY_CODES",
        /// `SAP_ECC_IDEMPOTENCY_KEY`: `document` (default: number + fiscal year) or
        /// `reference` (`XBLNR` / `REF_DOC_NO`, invoices).
        IdempotencyKey = "SAP_ECC_IDEMPOTENCY_KEY",
        /// `SAP_ECC_MAX_ROW_WIDTH`: the widest row one `RFC_READ_TABLE` call selects (default
        /// 512; lower it where the system fails below 512).
        MaxRowWidth = "SAP_ECC_MAX_ROW_WIDTH",
    }
}

/// Builds a [`SapEccSource`]. Values are parsed at [`build`](Self::build), whose errors
/// name the key.
#[derive(Clone)]
pub struct SapEccBuilder {
    values: ConfigValues<SapEccConfigKey>,
    transport: Option<Arc<dyn RfcTransport>>,
    client_options: ClientOptions,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    start_at: Option<Timestamp>,
    category: Option<Category>,
    tolerance: Decimal,
    probe_cap: usize,
}

impl fmt::Debug for SapEccBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SapEccBuilder")
            .field("values", &self.values)
            .field("transport", &self.transport)
            .field("category", &self.category)
            .finish_non_exhaustive()
    }
}

impl Default for SapEccBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SapEccBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self {
            values: ConfigValues::new(),
            transport: None,
            client_options: ClientOptions::default(),
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            start_at: None,
            category: None,
            tolerance: Decimal::new(1, 2),
            probe_cap: 5_000,
        }
    }

    ml_core::config_builder_methods!(SapEccConfigKey, "SAP_ECC_*");

    /// The ICM base URL.
    pub fn with_url(self, url: impl Into<String>) -> Self {
        self.with_config(SapEccConfigKey::Url, url)
    }

    /// The SAP client.
    pub fn with_client(self, client: impl Into<String>) -> Self {
        self.with_config(SapEccConfigKey::Client, client)
    }

    /// The RFC user and password (HTTP Basic).
    pub fn with_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<SecretString>,
    ) -> Self {
        self.values.set(SapEccConfigKey::User, user.into());
        self.values
            .set_secret(SapEccConfigKey::Password, password.into());
        self
    }

    /// What to read.
    pub fn with_category(mut self, c: Category) -> Self {
        self.category = Some(c);
        self
    }

    /// The application server's zone (IANA name or fixed offset).
    pub fn with_timezone(self, tz: impl Into<String>) -> Self {
        self.with_config(SapEccConfigKey::Timezone, tz)
    }

    /// Calls in flight per SAP system (1..=50).
    pub fn with_max_concurrent_rfc(self, n: usize) -> Self {
        self.with_config(SapEccConfigKey::MaxConcurrentRfc, n.to_string())
    }

    /// Documents per poll.
    pub fn with_page_size(self, n: usize) -> Self {
        self.with_config(SapEccConfigKey::PageSize, n.to_string())
    }

    /// The cursor overlap.
    pub fn with_overlap(self, d: Duration) -> Self {
        self.with_config(SapEccConfigKey::OverlapSecs, d.as_secs().to_string())
    }

    /// Only these company codes.
    pub fn with_company_codes(self, codes: &[&str]) -> Self {
        self.with_config(SapEccConfigKey::CompanyCodes, codes.join(","))
    }

    /// The invoice dedupe key.
    pub fn with_idempotency_key(self, k: IdempotencyKey) -> Self {
        let v = match k {
            IdempotencyKey::DocumentNumber => "document",
            IdempotencyKey::Reference => "reference",
        };
        self.with_config(SapEccConfigKey::IdempotencyKey, v)
    }

    /// A host's own transport (a JCo/NCo bridge, a relay agent); URL and credentials are
    /// then not needed.
    pub fn with_transport(mut self, t: Arc<dyn RfcTransport>) -> Self {
        self.transport = Some(t);
        self
    }

    /// HTTP client options (SOAP-RFC).
    pub fn with_client_options(mut self, o: ClientOptions) -> Self {
        self.client_options = o;
        self
    }

    /// The retry policy of each RFC call.
    pub fn with_retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }

    /// The clock (cursor cycle starts).
    pub fn with_clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = c;
        self
    }

    /// Where a stream that never ran starts (default: the beginning of the table).
    pub fn with_start_at(mut self, t: Timestamp) -> Self {
        self.start_at = Some(t);
        self
    }

    /// The largest difference between invoiced and ordered net amounts that still
    /// matches (default 0.01).
    pub fn with_amount_tolerance(mut self, d: Decimal) -> Self {
        self.tolerance = d;
        self
    }

    /// Rows one key probe may return (default 5000).
    pub fn with_probe_cap(mut self, n: usize) -> Self {
        self.probe_cap = n.max(2);
        self
    }

    fn val(&self, k: SapEccConfigKey) -> Option<&str> {
        self.values.get(k)
    }

    fn number(
        &self,
        k: SapEccConfigKey,
        default: usize,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<usize, SapEccError> {
        match self.val(k) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if range.contains(&n) => Ok(n),
                _ => Err(SapEccError::config(
                    k.as_env(),
                    format!(
                        "`{v}` is not a number in {}..={}",
                        range.start(),
                        range.end()
                    ),
                )),
            },
        }
    }

    fn transport(&self) -> Result<Arc<dyn RfcTransport>, SapEccError> {
        use SapEccConfigKey as K;
        if let Some(t) = &self.transport {
            return Ok(Arc::clone(t));
        }
        let raw = self
            .val(K::Url)
            .ok_or_else(|| SapEccError::config(K::Url.as_env(), "required (the ICM base URL)"))?;
        let url = check_url(K::Url.as_env(), raw).map_err(|e| match e {
            ml_core::Error::Config { key, message } => SapEccError::config(key, message),
            other => SapEccError::config(K::Url.as_env(), other.to_string()),
        })?;
        let client = self
            .val(K::Client)
            .ok_or_else(|| SapEccError::config(K::Client.as_env(), "required (e.g. 100)"))?;
        if client.len() != 3 || !client.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SapEccError::config(
                K::Client.as_env(),
                format!("`{client}` is not a 3-digit client"),
            ));
        }
        let language = self.val(K::Language).unwrap_or("EN");
        if language.is_empty()
            || language.len() > 2
            || !language.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(SapEccError::config(
                K::Language.as_env(),
                format!("`{language}` is not a language key"),
            ));
        }
        let user = self
            .val(K::User)
            .ok_or_else(|| SapEccError::config(K::User.as_env(), "required"))?;
        if user.contains(':') {
            return Err(SapEccError::config(
                K::User.as_env(),
                "must not contain `:`",
            ));
        }
        let password = self
            .values
            .secret(K::Password)
            .cloned()
            .ok_or_else(|| SapEccError::config(K::Password.as_env(), "required with a user"))?;
        let http = self
            .client_options
            .client()
            .map_err(|e| SapEccError::config("ClientOptions", e.to_string()))?;
        Ok(Arc::new(SoapRfcTransport::new(
            http,
            &url,
            client,
            &language.to_ascii_uppercase(),
            BasicCredentials::new(user, password),
        )))
    }

    /// Builds the source.
    pub fn build(self) -> ml_core::Result<SapEccSource> {
        self.build_inner().map_err(Into::into)
    }

    fn build_inner(self) -> Result<SapEccSource, SapEccError> {
        use SapEccConfigKey as K;
        let category = match (self.category, self.val(K::Category)) {
            (Some(c), _) => c,
            (None, Some(v)) => Category::parse(v).ok_or_else(|| {
                SapEccError::config(
                    K::Category.as_env(),
                    format!("`{v}` is not purchase_orders, invoices or gl"),
                )
            })?,
            (None, None) => Category::SupplierInvoices,
        };
        let max = self.number(
            K::MaxConcurrentRfc,
            DEFAULT_MAX_CONCURRENT_RFC,
            1..=MAX_CONCURRENT_RFC,
        )?;
        let page_size = self.number(K::PageSize, DEFAULT_PAGE_SIZE, 2..=MAX_PAGE_SIZE)?;
        let overlap = self.number(K::OverlapSecs, 600, 0..=86_400 * 7)?;
        let width = self.number(K::MaxRowWidth, ROW_BUFFER, 64..=ROW_BUFFER)?;
        let tz = match self.val(K::Timezone) {
            None => TimeZone::UTC,
            Some(z) => parse_timezone(z).ok_or_else(|| {
                SapEccError::config(
                    K::Timezone.as_env(),
                    format!("`{z}` is neither an IANA zone nor an offset like +02:00"),
                )
            })?,
        };
        let codepage = match self.val(K::Codepage) {
            None => CodePage::Unicode,
            Some(c) => CodePage::from_sap(c).ok_or_else(|| {
                SapEccError::config(K::Codepage.as_env(), format!("unknown SAP code page `{c}`"))
            })?,
        };
        let company_codes: Vec<String> = self
            .val(K::CompanyCodes)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(bad) = company_codes
            .iter()
            .find(|c| c.chars().count() > 4 || c.contains('\''))
        {
            return Err(SapEccError::config(
                K::CompanyCodes.as_env(),
                format!("`{bad}` is not a company code"),
            ));
        }
        let idempotency = match self
            .val(K::IdempotencyKey)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("document") => IdempotencyKey::DocumentNumber,
            Some("reference" | "ref_doc_no" | "xblnr") => IdempotencyKey::Reference,
            Some(other) => {
                return Err(SapEccError::config(
                    K::IdempotencyKey.as_env(),
                    format!("`{other}` is neither `document` nor `reference`"),
                ));
            }
        };
        let transport = self.transport()?;
        let system = format!("SapEcc({})", transport.system());
        let client = Arc::new(RfcClient::new(transport, max)?.with_retry(self.retry.clone()));
        let rt = RfcReadTable::new(client, system.clone())
            .with_codepage(codepage)
            .with_max_width(width);
        let mut cursor = WatermarkCursor::new(Duration::from_secs(overlap as u64))
            .with_paging(Paging::Keyset)
            .with_sweep_ranges(4);
        if let Some(t) = self.start_at {
            cursor = cursor.with_start_at(naive_now(t, &tz));
        }
        Ok(SapEccSource {
            rt: Arc::new(rt),
            system,
            category,
            cursor,
            page_size,
            probe_cap: self.probe_cap.max(page_size + 1),
            tz,
            clock: self.clock,
            company_codes,
            idempotency,
            tolerance: self.tolerance,
            key_batch: 100,
        })
    }
}

#[cfg(test)]
mod tests {
    use ml_core::config::MapEnv;

    use super::*;

    fn key_of(r: ml_core::Result<SapEccSource>) -> String {
        match r {
            Err(ml_core::Error::Config { key, message }) => {
                assert!(!message.contains("hunter2"), "{message}");
                key
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn keys_are_checked_at_build() {
        let err = SapEccBuilder::new()
            .with_config_str("SAP_ECC_PAGESIZE", "10")
            .expect_err("unknown");
        assert!(matches!(&err, ml_core::Error::Config { key, .. } if key == "SAP_ECC_PAGESIZE"));
        let env = MapEnv::from([
            ("SAP_ECC_URL", "http://127.0.0.1:9"),
            ("SAP_ECC_CLIENT", "100"),
            ("SAP_ECC_USER", "RFC_ML"),
            ("SAP_ECC_PASSWORD", "hunter2"),
            ("SAP_ECC_TIMEZONE", "Europe/Berlin"),
        ]);
        let b = SapEccBuilder::from_env_with(&env);
        assert!(!format!("{b:?}").contains("hunter2"));
        let s = b.clone().build().expect("builds");
        assert_eq!(s.to_string(), "SapEcc(127.0.0.1:9, client=100, invoices)");
        assert!(!format!("{s:?}").contains("hunter2"));
        for (k, v) in [
            ("SAP_ECC_MAX_CONCURRENT_RFC", "0"),
            ("SAP_ECC_MAX_CONCURRENT_RFC", "51"),
            ("SAP_ECC_CLIENT", "1000"),
            ("SAP_ECC_TIMEZONE", "Mars/Base"),
            ("SAP_ECC_URL", "http://erp.example.com"),
            ("SAP_ECC_CATEGORY", "payments"),
            ("SAP_ECC_CODEPAGE", "9999"),
            ("SAP_ECC_IDEMPOTENCY_KEY", "uuid"),
            ("SAP_ECC_PAGE_SIZE", "1"),
        ] {
            let r = b.clone().with_config_str(k, v).expect("known").build();
            assert_eq!(key_of(r), k, "{k}={v}");
        }
        assert!(
            b.clone()
                .with_config_str("max_concurrent_rfc", "50")
                .expect("k")
                .build()
                .is_ok()
        );
        assert!(
            b.with_config_str("timezone", "+05:30")
                .expect("k")
                .build()
                .is_ok()
        );
        assert_eq!(key_of(SapEccBuilder::new().build()), "SAP_ECC_URL");
    }
}
