//! The `Sink` trait: delivers one rendered message to one destination.

use std::fmt::{self, Debug, Display};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::audit::DeliveryId;
use crate::error::{Error, Result};
use crate::record::Record;
use crate::render::{PlainTextRenderer, Rendered, Renderer};

/// Where a message goes: a sink (by the name it was registered under) and an address in it
/// (`#finance`, `C0123456789`, `+4915112345678`, `ap@example.com`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Destination {
    /// The sink's registered name (`slack`, `sms`, `email`).
    pub sink: String,
    /// The address within that sink.
    pub address: String,
}

impl Destination {
    /// A destination.
    pub fn new(sink: impl Into<String>, address: impl Into<String>) -> Self {
        Self {
            sink: sink.into(),
            address: address.into(),
        }
    }

    /// Parses `sink:address` (the first colon separates).
    pub fn parse(s: &str) -> Result<Self> {
        match s.split_once(':') {
            Some((sink, addr)) if !sink.trim().is_empty() && !addr.trim().is_empty() => {
                Ok(Self::new(sink.trim(), addr.trim()))
            }
            _ => Err(Error::config(
                "destination",
                format!("`{s}` is not of the form sink:address (e.g. slack:#finance)"),
            )),
        }
    }
}

impl Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.sink, self.address)
    }
}

impl Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Destination({self})")
    }
}

/// What a sink got back from the remote side for an accepted message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The remote id (Slack `ts`, Twilio `SM...` sid, SendGrid message id).
    pub remote_id: String,
    /// Where the remote id lives when it needs context (Slack channel id for a `ts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_scope: Option<String>,
    /// The remote status at acceptance (`queued`, `accepted`), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl Receipt {
    /// A receipt with a remote id.
    pub fn new(remote_id: impl Into<String>) -> Self {
        Self {
            remote_id: remote_id.into(),
            remote_scope: None,
            status: None,
        }
    }

    /// Sets the scope of the remote id.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.remote_scope = Some(scope.into());
        self
    }

    /// Sets the remote status.
    pub fn with_status(mut self, status: impl Into<String>) -> Self {
        self.status = Some(status.into());
        self
    }
}

/// A message ready to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Outbound {
    /// The journal's delivery id. Sinks put it in the message's metadata (Slack metadata,
    /// Twilio `StatusCallback` URL) so `reconcile` and callbacks can find it.
    pub delivery_id: DeliveryId,
    /// The stream the record came from.
    pub stream: String,
    /// The record's source key.
    pub record_key: String,
    /// Where it goes.
    pub destination: Destination,
    /// The rendered content.
    pub rendered: Rendered,
    /// The first receipt for the same record and destination, when there is one: later
    /// versions of a record reply in its thread (Slack `thread_ts`) or edit it.
    pub thread: Option<Receipt>,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// When the delivery was planned (journaled). No message for it can be older, so
    /// `reconcile` searches the remote side from here (less clock skew) rather than guessing
    /// a window.
    pub planned_at: jiff::Timestamp,
}

/// What `reconcile` found on the remote side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reconciled {
    /// The message was applied; here is its receipt. It must not be sent again.
    Found(Receipt),
    /// The remote side has no such message; sending it again cannot duplicate it.
    NotFound,
}

/// Delivers one rendered message to one destination.
///
/// Contract (checked by `testing::sink_conformance`):
/// * `send` returns a [`Receipt`] with the remote id once the remote side accepted the
///   message, or an error classified as `Retryable` (with the server's retry-after when it
///   gave one; a 429 must carry it), `Permanent` (bad destination, revoked credentials), or
///   `InDoubt` (the request may have been applied: timeout after sending, connection dropped
///   before the answer).
/// * A sink that can look a message up on the remote side returns `true` from
///   `can_reconcile` and implements `reconcile`: given the same [`Outbound`] as the in-doubt
///   send, it answers whether that delivery was applied, so a crash or timeout never turns
///   into a double post. Sinks that cannot reconcile are re-sent after doubt (at least once;
///   the journal counts these).
/// * `rate_key` names the limiter key for a destination (`slack:C123`), so every sender on
///   that key shares one budget; `None` means unlimited.
/// * `Display` names the system and instance; `Debug` never shows a secret.
#[async_trait]
pub trait Sink: Send + Sync + Debug + Display {
    /// Sends one message.
    async fn send(&self, msg: &Outbound) -> Result<Receipt>;

    /// Whether `e` (from [`send`](Self::send)) refuses our credentials for good (a revoked
    /// token, a deactivated app): no message can get through until someone fixes them, so
    /// the pipeline holds the destination's deliveries instead of failing each one. The
    /// default: a permanent [`Error::Auth`].
    fn credentials_refused(&self, e: &crate::Error) -> bool {
        matches!(
            e,
            crate::Error::Auth {
                class: crate::ErrorClass::Permanent,
                ..
            }
        )
    }

    /// Whether `reconcile` is implemented.
    fn can_reconcile(&self) -> bool {
        false
    }

    /// Looks an in-doubt delivery up on the remote side.
    async fn reconcile(&self, msg: &Outbound) -> Result<Reconciled> {
        let _ = msg;
        Err(Error::Unsupported(format!("{self} cannot reconcile")))
    }

    /// Told, after `reconcile` failed for good, the remote scope the journal holds for an
    /// earlier message to `destination` (a Slack channel's id for a channel given by
    /// name): `true` when the sink did not know it and `reconcile` is worth trying again
    /// (a replica taking over a crashed one's in-doubt post, without `channels:read`).
    /// The default: `false`.
    fn remember_scope(&self, destination: &Destination, scope: &str) -> bool {
        let _ = (destination, scope);
        false
    }

    /// The rate-limiter key for a destination; `None` for no limit.
    fn rate_key(&self, destination: &Destination) -> Option<String> {
        let _ = destination;
        None
    }

    /// Renders a record for a destination. The default is a plain-text rendering; sinks
    /// with rich formats (Slack Block Kit) override this, and hosts can wrap a sink to
    /// supply their own renderer.
    fn render(&self, record: &Record, destination: &Destination) -> Rendered {
        PlainTextRenderer.render(record, destination)
    }

    /// Does real work to prove the sink is reachable and the credentials work.
    async fn healthcheck(&self) -> Result<()> {
        Ok(())
    }

    /// Checks, without sending anything, that `destination` can receive messages (a Slack
    /// channel exists, is not archived and the bot may post in it), for an operator's
    /// `check` before the first send finds out. An error: it cannot (why). The default:
    /// [`DestinationCheck::Unchecked`].
    async fn check_destination(&self, destination: &Destination) -> Result<DestinationCheck> {
        let _ = destination;
        Ok(DestinationCheck::Unchecked(
            "this sink cannot tell without sending".to_owned(),
        ))
    }
}

/// What [`Sink::check_destination`] found out, when the destination is not refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DestinationCheck {
    /// It can receive messages (what was found, e.g. the channel's id).
    Ready(String),
    /// It could not be checked (why: a scope not granted, a sink that cannot tell); the
    /// first send finds out.
    Unchecked(String),
}
