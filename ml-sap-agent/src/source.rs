//! [`RelaySource`]: any SAP source reached through the relay, whose stream pauses as
//! [`StreamState::Unavailable`](ml_core::pipeline::StreamState::Unavailable) while no agent
//! is connected.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use ml_core::cursor::Position;
use ml_core::error::{Error, Result};
use ml_core::record::EntityKind;
use ml_core::source::{Page, Source};

use crate::host::RelayHub;

/// Wraps a source whose RFC calls go through a [`RelayHub`] (a
/// [`ml_sap_ecc::SapEccSource`] built with the hub's [`crate::RelayTransport`]):
/// * no agent connected: `poll` fails at once with [`Error::Unavailable`] (no call is
///   made, nothing is queued), so the pipeline shows the stream as waiting for the agent
///   and checks again every [`RelayHub::recheck`];
/// * the agent went away mid-cycle: the failed poll is reported the same way; the pages
///   committed before stay committed, and the next cycle resumes from the saved position.
pub struct RelaySource {
    inner: Arc<dyn Source>,
    hub: RelayHub,
    system: String,
}

impl fmt::Debug for RelaySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelaySource")
            .field("inner", &self.inner)
            .field("system", &self.system)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for RelaySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl RelaySource {
    /// `inner` reads SAP system `system` through `hub`.
    pub fn new(inner: Arc<dyn Source>, hub: RelayHub, system: impl Into<String>) -> Self {
        Self {
            inner,
            hub,
            system: system.into(),
        }
    }

    fn unavailable(&self, why: &str) -> Error {
        Error::unavailable(
            self.inner.to_string(),
            format!("a relay agent for `{}`", self.system),
            why,
            self.hub.recheck(),
        )
    }

    fn map(&self, e: Error) -> Error {
        // The transport's own "no agent" (even if one connected meanwhile: the next cycle
        // uses it), or any failure while none is connected (it was lost mid-cycle).
        if e.code() == Some("UNAVAILABLE") || self.hub.connected(&self.system) == 0 {
            metrics::counter!("ml_sap_relay_paused_total", "system" => self.system.clone())
                .increment(1);
            let why = format!("no agent connected (last error: {e})");
            self.unavailable(&why)
        } else {
            e
        }
    }
}

#[async_trait]
impl Source for RelaySource {
    fn kind(&self) -> EntityKind {
        self.inner.kind()
    }

    async fn poll(&self, from: Option<&Position>) -> Result<Page> {
        if self.hub.connected(&self.system) == 0 {
            return Err(self.unavailable("no agent connected"));
        }
        self.inner.poll(from).await.map_err(|e| self.map(e))
    }

    async fn healthcheck(&self) -> Result<()> {
        if self.hub.connected(&self.system) == 0 {
            return Err(self.unavailable("no agent connected"));
        }
        self.inner.healthcheck().await.map_err(|e| self.map(e))
    }
}
