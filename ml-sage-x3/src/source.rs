//! [`SageX3Source`]: an api1 or GraphQL reader behind one type, and what both share.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::tz::TimeZone;
use ml_core::auth::RotationStatus;
use ml_core::clock::Clock;
use ml_core::cursor::Position;
use ml_core::error::Result;
use ml_core::http::{ApiClient, ErrorModel, Request, Transport, TransportError};
use ml_core::money::Currency;
use ml_core::record::EntityKind;
use ml_core::retry::RetryPolicy;
use ml_core::source::{Page, Source};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::auth::Auth;
use crate::class::ClassSpec;
use crate::error::{SageX3Error, parse_error};
use crate::graphql::SageX3GraphqlSource;
use crate::model::Mapping;
use crate::notes::JournalNotes;
use crate::rest::SageX3RestSource;

/// What both readers share.
#[derive(Clone)]
pub(crate) struct Common {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) auth: Auth,
    pub(crate) system: String,
    pub(crate) folder: String,
    pub(crate) spec: ClassSpec,
    pub(crate) page_size: usize,
    pub(crate) zone: TimeZone,
    pub(crate) currency: Option<Currency>,
    pub(crate) retry: RetryPolicy,
    pub(crate) clock: Arc<dyn Clock>,
    /// Where token warnings are journaled, if anywhere.
    pub(crate) notes: Option<Arc<JournalNotes>>,
}

impl Common {
    pub(crate) fn api(&self) -> ApiClient {
        ApiClient::new(Arc::clone(&self.transport))
            .with_credentials(self.auth.credentials())
            .with_clock(Arc::clone(&self.clock))
    }

    /// One request through ml-core's `ApiClient` (credentials, one token refresh after a
    /// 401, bounded body), errors as [`SageX3Error`]; the body as text.
    pub(crate) async fn send_once(
        &self,
        request: Request,
    ) -> std::result::Result<String, SageX3Error> {
        let model = Errors {
            system: &self.system,
        };
        let response = self.api().send(&model, request).await?;
        String::from_utf8(response.body).map_err(|_| SageX3Error::Decode {
            system: self.system.clone(),
            message: "the answer is not UTF-8".into(),
        })
    }

    /// The same with the retry policy (429, 5xx, connection errors).
    pub(crate) async fn send(&self, make: impl Fn() -> Result<Request>) -> Result<String> {
        ml_core::retry::retry(&self.retry, || async {
            let request = make()?;
            self.send_once(request).await.map_err(Into::into)
        })
        .await
    }

    pub(crate) fn mapping<'a>(
        &'a self,
        keys: &'a [String],
        stamp: &'a str,
        fields: &'a crate::class::FieldMap,
    ) -> Mapping<'a> {
        Mapping {
            system: &self.system,
            kind: &self.spec.kind,
            keys,
            stamp,
            fields,
            zone: &self.zone,
            default_currency: self.currency,
        }
    }

    pub(crate) fn decode_error(&self, message: impl Into<String>) -> SageX3Error {
        SageX3Error::Decode {
            system: self.system.clone(),
            message: message.into(),
        }
    }
}

struct Errors<'a> {
    system: &'a str,
}

impl ErrorModel for Errors<'_> {
    type Error = SageX3Error;

    fn parse_error(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        now: jiff::Timestamp,
    ) -> Option<SageX3Error> {
        (!status.is_success()).then(|| {
            parse_error(
                self.system,
                status,
                headers,
                &String::from_utf8_lossy(body),
                now,
            )
        })
    }

    fn transport_error(&self, err: TransportError) -> SageX3Error {
        SageX3Error::Transport {
            system: self.system.to_owned(),
            class: err.class,
            message: err.message,
        }
    }

    fn credentials_error(&self, err: ml_core::Error) -> SageX3Error {
        let class = err.class();
        let message = match err {
            ml_core::Error::Auth { message, .. } => message,
            other => other.to_string(),
        };
        SageX3Error::Token { class, message }
    }
}

/// A Sage X3 source: api1 REST or GraphQL, as configured (`SAGE_X3_API`).
#[derive(Debug)]
pub enum SageX3Source {
    /// Syracuse REST api1.
    Rest(SageX3RestSource),
    /// The GraphQL API.
    Graphql(SageX3GraphqlSource),
}

impl SageX3Source {
    fn common(&self) -> &Common {
        match self {
            Self::Rest(s) => &s.common,
            Self::Graphql(s) => &s.common,
        }
    }

    /// Whether token renewals work or a new pairing is needed (X3 Cloud): a source whose
    /// refresh token died reports [`RotationStatus::PairingNeeded`] and fails its polls at
    /// once with the same permanent error, without calling the token API again.
    pub fn auth_status(&self) -> RotationStatus {
        self.common().auth.status()
    }

    /// The class description in use.
    pub fn spec(&self) -> &ClassSpec {
        &self.common().spec
    }

    /// The page size.
    pub fn page_size(&self) -> usize {
        self.common().page_size
    }

    /// Writes what the token provider raised into the journal (with
    /// [`SageX3Builder::with_journal_notes`](crate::SageX3Builder::with_journal_notes)):
    /// queued expiry warnings, and, after a failure, a needed pairing.
    async fn journal_notes(&self, failed: bool) {
        let common = self.common();
        let Some(notes) = &common.notes else {
            return;
        };
        if failed && let RotationStatus::PairingNeeded { reason } = self.auth_status() {
            let expires_at = common.auth.refresh_expires_at().await;
            notes.pairing_needed(&reason, expires_at).await;
        } else if !failed {
            notes.polled_ok().await;
        }
        notes.flush().await;
    }
}

impl fmt::Display for SageX3Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.common().system)
    }
}

#[async_trait]
impl Source for SageX3Source {
    fn kind(&self) -> EntityKind {
        self.common().spec.kind.clone()
    }

    async fn poll(&self, from: Option<&Position>) -> Result<Page> {
        let out = match self {
            Self::Rest(s) => s.poll(from).await,
            Self::Graphql(s) => s.poll(from).await,
        };
        self.journal_notes(out.is_err()).await;
        out
    }

    async fn healthcheck(&self) -> Result<()> {
        let out = match self {
            Self::Rest(s) => s.healthcheck().await,
            Self::Graphql(s) => s.healthcheck().await,
        };
        self.journal_notes(out.is_err()).await;
        out
    }
}
