//! [`SageX3RestSource`]: one api1 class, read with the key-walk cursor ([`crate::walk`]).
//!
//! Requests: `GET <url>/api1/x3/erp/<FOLDER>/<CLASS>?representation=<REPR>.$query&count=N
//! &where=…&orderBy=…`, then `$links.$next.$url` to the end of the window. The `$next`
//! link's path and query are followed on the configured server only (its host is ignored,
//! so credentials never go anywhere else), and only when its path is the class's.
//!
//! An HTTP 500 to a new query (the probe or a walk's first page) is what X3 answers to a
//! property the representation lacks. The source then asks for one plain resource
//! (`count=1`, no `where`, no `orderBy`): if the class answers and the resource lacks a
//! property the query named, that is a permanent configuration error naming it; if it
//! has them all and the query fails again, the query form itself is refused (also
//! permanent); otherwise it is an outage and is retried.

use std::fmt;

use jiff::Timestamp;
use ml_core::cursor::{PageRow, Position};
use ml_core::error::{ErrorClass, Result};
use ml_core::http::Request;
use ml_core::source::Page;
use reqwest::header::{ACCEPT, HeaderValue};
use serde_json::value::RawValue;

use crate::error::SageX3Error;
use crate::model::map_item;
use crate::sdata::{is_civil, parse_datetime, stamp_window};
use crate::source::Common;
use crate::walk::{KeyWalk, WalkState};

/// How many times a query is sent again, after a 500 and a plain read that answered fine,
/// before its refusal is taken as permanent.
const CONFIRMING_500S: u32 = 3;

/// Reads one api1 class incrementally (see the module docs).
pub struct SageX3RestSource {
    pub(crate) common: Common,
    origin: url::Url,
    collection_path: String,
    cursor: KeyWalk,
}

impl fmt::Debug for SageX3RestSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SageX3RestSource")
            .field("system", &self.common.system)
            .field("collection", &self.collection_path)
            .field("auth", &self.common.auth)
            .field("page_size", &self.common.page_size)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct Envelope {
    #[serde(rename = "$resources", default)]
    resources: Vec<Box<RawValue>>,
    #[serde(rename = "$links", default)]
    links: Option<Links>,
}

#[derive(serde::Deserialize)]
struct Links {
    #[serde(rename = "$next", default)]
    next: Option<Link>,
}

#[derive(serde::Deserialize)]
struct Link {
    #[serde(rename = "$url")]
    url: String,
}

/// What a plain query says after a 500.
enum Diagnosis {
    /// The representation lacks a property the query named.
    Lacks(SageX3Error),
    /// The class answers with every property named.
    ClassFine,
    /// Cannot tell (the plain query failed too, or the class is empty).
    Unknown,
}

/// Which new query a request is (for the 500 diagnosis).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Query {
    Probe,
    Walk,
}

impl SageX3RestSource {
    pub(crate) fn new(common: Common, url: url::Url, cursor: KeyWalk) -> Self {
        let base_path = url.path().trim_end_matches('/').to_owned();
        let collection_path = format!(
            "{base_path}/api1/x3/erp/{}/{}",
            common.folder, common.spec.class
        );
        let mut origin = url;
        origin.set_path("/");
        origin.set_query(None);
        origin.set_fragment(None);
        Self {
            common,
            origin,
            collection_path,
            cursor,
        }
    }

    fn url_of(&self, path_and_query: &str) -> Result<url::Url> {
        self.origin.join(path_and_query).map_err(|e| {
            self.common
                .decode_error(format!("bad link {path_and_query}: {e}"))
                .into()
        })
    }

    fn representation(&self) -> String {
        format!("{}.$query", self.common.spec.representation)
    }

    fn request(&self, params: &[(&str, String)]) -> Result<Request> {
        let url = self.url_of(&self.collection_path)?;
        Ok(Request::from_url(reqwest::Method::GET, url)
            .query(params)
            .header(ACCEPT, HeaderValue::from_static("application/json")))
    }

    /// Whether `where` literals are civil time: as learned from the server, else from the
    /// configured zone (UTC: `Z` literals).
    fn civil(&self, st: &WalkState) -> bool {
        st.civil
            .unwrap_or(self.common.zone != jiff::tz::TimeZone::UTC)
    }

    /// The probe's parameters: the latest stamp at or after `lo`.
    pub fn probe_query(&self, lo: Option<Timestamp>, civil: bool) -> Vec<(&'static str, String)> {
        let spec = &self.common.spec;
        let mut q = vec![
            ("representation", self.representation()),
            ("count", "1".to_owned()),
        ];
        if let Some(w) = stamp_window(&spec.stamp, lo, None, &self.common.zone, civil) {
            q.push(("where", w));
        }
        q.push(("orderBy", format!("{} desc", spec.stamp)));
        q
    }

    /// A walk's first page: the window `[lo, hi]` in key order.
    pub fn walk_query(
        &self,
        lo: Option<Timestamp>,
        hi: Timestamp,
        civil: bool,
    ) -> Vec<(&'static str, String)> {
        let spec = &self.common.spec;
        let mut q = vec![
            ("representation", self.representation()),
            ("count", self.common.page_size.to_string()),
        ];
        if let Some(w) = stamp_window(&spec.stamp, lo, Some(hi), &self.common.zone, civil) {
            q.push(("where", w));
        }
        let order: Vec<String> = spec.keys.iter().map(|k| format!("{k} asc")).collect();
        q.push(("orderBy", order.join(",")));
        q
    }

    /// Sends a new query; a 500 is diagnosed (module docs) before any retry.
    async fn new_query(&self, params: &[(&'static str, String)], kind: Query) -> Result<String> {
        match self.common.send_once(self.request(params)?).await {
            Ok(body) => return Ok(body),
            Err(SageX3Error::Http { status: 500, .. }) => {}
            Err(e) if e.class().is_retryable() => {
                return self.common.send(|| self.request(params)).await;
            }
            Err(e) => return Err(e.into()),
        }
        match self.diagnose_500(kind).await? {
            Diagnosis::Lacks(e) => Err(e.into()),
            Diagnosis::Unknown => self.common.send(|| self.request(params)).await,
            Diagnosis::ClassFine => match self.resend_after_500(params).await? {
                Ok(body) => Ok(body),
                Err(SageX3Error::Http {
                    status: 500,
                    message,
                    system,
                    ..
                }) => Err(SageX3Error::Config {
                    key: crate::builder::SageX3ConfigKey::TimeZone
                        .as_env()
                        .to_owned(),
                    message: format!(
                        "{system}: the server refuses the query (HTTP 500: {message}) although \
                         the class answers and has every property it names; check the date-time \
                         literal form for this release and SAGE_X3_TIME_ZONE"
                    ),
                }
                .into()),
                Err(_) => self.common.send(|| self.request(params)).await,
            },
        }
    }

    /// Sends the query again after a 500 whose class answers fine: up to
    /// [`CONFIRMING_500S`] times, waiting the retry policy's delays between, so a burst of
    /// transient 500s is not taken for a refused query (which would pause the stream).
    /// The last error when every attempt failed.
    async fn resend_after_500(
        &self,
        params: &[(&'static str, String)],
    ) -> Result<std::result::Result<String, SageX3Error>> {
        let mut attempt = 0;
        loop {
            match self.common.send_once(self.request(params)?).await {
                Err(SageX3Error::Http { status: 500, .. }) if attempt + 1 < CONFIRMING_500S => {
                    tokio::time::sleep(self.common.retry.delay_ceiling(attempt)).await;
                    attempt += 1;
                }
                other => return Ok(other),
            }
        }
    }

    /// After a 500 to a new query, asks for one plain resource to tell a missing property
    /// from an outage.
    async fn diagnose_500(&self, kind: Query) -> Result<Diagnosis> {
        let spec = &self.common.spec;
        let plain = [
            ("representation", self.representation()),
            ("count", "1".to_owned()),
        ];
        let Ok(body) = self.common.send_once(self.request(&plain)?).await else {
            return Ok(Diagnosis::Unknown);
        };
        let env: Envelope = serde_json::from_str(&body).map_err(|e| {
            self.common
                .decode_error(format!("not an api1 envelope: {e}"))
        })?;
        let Some(first) = env.resources.first() else {
            return Ok(Diagnosis::Unknown);
        };
        let obj: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(first.get()).unwrap_or_default();
        let mut named: Vec<(&str, &str)> = vec![(spec.stamp.as_str(), "SAGE_X3_STAMP")];
        if kind == Query::Walk {
            named.extend(spec.keys.iter().map(|k| (k.as_str(), "SAGE_X3_KEY")));
        }
        Ok(named
            .into_iter()
            .find(|(p, _)| !obj.contains_key(*p))
            .map_or(Diagnosis::ClassFine, |(p, hint)| {
                Diagnosis::Lacks(SageX3Error::UnknownProperty {
                    system: self.common.system.clone(),
                    api: "api1 representation",
                    property: p.to_owned(),
                    hint: hint.to_owned(),
                })
            }))
    }

    fn parse(&self, body: &str) -> Result<Envelope> {
        serde_json::from_str(body).map_err(|e| {
            self.common
                .decode_error(format!("not an api1 envelope ($resources): {e}"))
                .into()
        })
    }

    /// The `$next` link as a path and query on our server, or an error when it points at
    /// another collection.
    fn next_of(&self, link: &str) -> Result<String> {
        let url = match url::Url::parse(link) {
            Ok(u) => u,
            Err(url::ParseError::RelativeUrlWithoutBase) => self.url_of(link)?,
            Err(e) => {
                return Err(self
                    .common
                    .decode_error(format!("bad $next link: {e}"))
                    .into());
            }
        };
        if !url.path().eq_ignore_ascii_case(&self.collection_path) {
            return Err(SageX3Error::Http {
                system: self.common.system.clone(),
                status: 200,
                class: ErrorClass::Permanent,
                message: format!(
                    "the $next link leads to {} instead of {}",
                    url.path(),
                    self.collection_path
                ),
            }
            .into());
        }
        Ok(match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        })
    }

    pub(crate) async fn poll(&self, from: Option<&Position>) -> Result<Page> {
        let mut st: WalkState = self.cursor.decode(from)?;
        if st.walk.is_none() {
            let lo = self.cursor.lower_bound(&st);
            let civil = self.civil(&st);
            let body = self
                .new_query(&self.probe_query(lo, civil), Query::Probe)
                .await?;
            let env = self.parse(&body)?;
            let spec = &self.common.spec;
            let probed = match env.resources.first() {
                None => None,
                Some(raw) => {
                    let obj: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str(raw.get()).unwrap_or_default();
                    let text = obj
                        .get(&spec.stamp)
                        .and_then(|v| v.as_str())
                        .unwrap_or_default();
                    if !text.is_empty() {
                        st.civil = Some(is_civil(text));
                    }
                    Some(parse_datetime(text, &self.common.zone).ok_or_else(|| {
                        if obj.contains_key(&spec.stamp) {
                            self.common.decode_error(format!(
                                "the latest {} is not a date-time ({text})",
                                spec.stamp
                            ))
                        } else {
                            SageX3Error::UnknownProperty {
                                system: self.common.system.clone(),
                                api: "api1 representation",
                                property: spec.stamp.clone(),
                                hint: "SAGE_X3_STAMP".into(),
                            }
                        }
                    })?)
                }
            };
            if !self.cursor.begin(&mut st, probed) {
                return self.cursor.idle(&st);
            }
        }
        let Some(walk) = st.walk.clone() else {
            return self.cursor.idle(&st);
        };
        let body = match &walk.next {
            None => {
                let civil = self.civil(&st);
                self.new_query(&self.walk_query(walk.lo, walk.hi, civil), Query::Walk)
                    .await?
            }
            Some(next) => {
                let next = next.clone();
                self.common
                    .send(|| {
                        Ok(Request::from_url(reqwest::Method::GET, self.url_of(&next)?)
                            .header(ACCEPT, HeaderValue::from_static("application/json")))
                    })
                    .await?
            }
        };
        let env = self.parse(&body)?;
        let next = match env.links.and_then(|l| l.next) {
            Some(link) => {
                let n = self.next_of(&link.url)?;
                if walk.next.as_deref() == Some(n.as_str()) {
                    return Err(SageX3Error::Http {
                        system: self.common.system.clone(),
                        status: 200,
                        class: ErrorClass::Permanent,
                        message: "the $next link repeats the page just read".into(),
                    }
                    .into());
                }
                Some(n)
            }
            None => None,
        };
        let spec = &self.common.spec;
        let mapping = self.common.mapping(&spec.keys, &spec.stamp, &spec.fields);
        let rows: Vec<PageRow> = env
            .resources
            .iter()
            .map(|raw| map_item(&mapping, raw))
            .collect();
        self.cursor.fold(st, rows, next)
    }

    pub(crate) async fn healthcheck(&self) -> Result<()> {
        let spec = &self.common.spec;
        let plain = [
            ("representation", self.representation()),
            ("count", "1".to_owned()),
        ];
        let body = self.common.send(|| self.request(&plain)).await?;
        let env = self.parse(&body)?;
        if let Some(first) = env.resources.first() {
            let obj: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(first.get()).unwrap_or_default();
            let required = std::iter::once((spec.stamp.as_str(), "SAGE_X3_STAMP"))
                .chain(spec.keys.iter().map(|k| (k.as_str(), "SAGE_X3_KEY")));
            for (p, hint) in required {
                if !obj.contains_key(p) {
                    return Err(SageX3Error::UnknownProperty {
                        system: self.common.system.clone(),
                        api: "api1 representation",
                        property: p.to_owned(),
                        hint: hint.to_owned(),
                    }
                    .into());
                }
            }
        }
        Ok(())
    }
}
