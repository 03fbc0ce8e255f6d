//! The shell every emulator shares: a seed, an injected clock, the fault layer, the server
//! on `127.0.0.1`, and its base URL; plus the one HTTP Basic decoder.
//!
//! An emulator's builder keeps an [`EmulatorOptions`]; `start` binds an
//! [`EmulatorCore`] with [`EmulatorCore::bind`], builds its router (its state may need the
//! URL and the clock), and serves it behind the fault layer with [`Bound::serve`]. The
//! running emulator implements [`Emulator`], whose [`env`](Emulator::env) gives the
//! connector's environment variables pointing at it.

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, header};
use base64::Engine as _;
use ml_core::clock::{Clock, TokioClock};

use crate::Result;
use crate::fault::{ErrorBody, Faults};
use crate::server::{Binding, Server, ShutdownSignal};

/// Seed and clock: what every emulator builder sets.
#[derive(Clone)]
pub struct EmulatorOptions {
    seed: u64,
    clock: Option<Arc<dyn Clock>>,
}

impl EmulatorOptions {
    /// Options with `seed` and the default clock.
    pub fn new(seed: u64) -> Self {
        Self { seed, clock: None }
    }

    /// Seeds ids, tokens and fault probabilities.
    pub fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
    }

    /// Uses `clock` instead of the default.
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.clock = Some(clock);
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The injected clock, or a [`TokioClock`] starting at the wall-clock now (so it
    /// follows `tokio::time::pause()` / `advance()`).
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock
            .clone()
            .unwrap_or_else(|| Arc::new(TokioClock::default()))
    }
}

impl fmt::Debug for EmulatorOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorOptions")
            .field("seed", &self.seed)
            .field("clock", &self.clock)
            .finish()
    }
}

/// A bound emulator whose router is not built yet: its URL, clock and faults are known
/// ([`core`](Self::core)).
#[derive(Debug)]
pub struct Bound {
    binding: Binding,
    core: EmulatorCore,
}

impl Bound {
    /// `http://127.0.0.1:<port>/`.
    pub fn root_url(&self) -> String {
        self.binding.base_url()
    }

    /// The shell, not serving yet.
    pub fn core(&self) -> &EmulatorCore {
        &self.core
    }

    /// Fires when the server shuts down (for tasks the server does not spawn itself).
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        self.binding.shutdown_signal()
    }

    /// Serves `router` behind the fault layer.
    pub fn serve(self, router: Router) -> EmulatorCore {
        let mut core = self.core;
        core.server = Some(self.binding.serve(core.faults.layer(router)));
        core
    }
}

/// A running emulator's shell: base URL, clock, faults and server. Dropping it stops the
/// server.
#[derive(Debug)]
pub struct EmulatorCore {
    base_url: String,
    clock: Arc<dyn Clock>,
    faults: Faults,
    server: Option<Server>,
}

impl EmulatorCore {
    /// Binds `127.0.0.1:<free port>`. The base URL is the root URL with `path` appended:
    /// `""` gives `http://127.0.0.1:<port>` (no trailing slash), `"/"` gives
    /// `http://127.0.0.1:<port>/`, `"api/"` gives `http://127.0.0.1:<port>/api/`. Faults
    /// answer with `error_body`.
    pub async fn bind(
        options: &EmulatorOptions,
        path: &str,
        error_body: ErrorBody,
    ) -> Result<Bound> {
        let binding = Binding::new().await?;
        let root = binding.base_url();
        let base_url = if path.is_empty() {
            root.trim_end_matches('/').to_owned()
        } else {
            format!("{root}{}", path.trim_start_matches('/'))
        };
        Ok(Bound {
            binding,
            core: EmulatorCore {
                base_url,
                clock: options.clock(),
                faults: Faults::with_error_body(options.seed(), error_body),
                server: None,
            },
        })
    }

    /// The URL the connector is given.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The fault rules and per-path request counters.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// What every running emulator offers.
pub trait Emulator {
    /// The shell.
    fn core(&self) -> &EmulatorCore;

    /// The environment variables that point the connector at this emulator, with the
    /// emulator's credentials (`SLACK_API_URL`, `SLACK_BOT_TOKEN`, ...), for
    /// `Builder::from_env_with` or a child process.
    fn env(&self) -> Vec<(&'static str, String)>;
}

/// The user and password of an `Authorization: Basic` header, when it has a valid one.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let plain = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let plain = String::from_utf8(plain).ok()?;
    let (user, password) = plain.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn basic_credentials_decode_rfc_7617() {
        let mut headers = HeaderMap::new();
        assert_eq!(basic_credentials(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("Aladdin".to_owned(), "open sesame".to_owned()))
        );
        for bad in [
            "Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
            "Basic !!!",
            "Basic QWxhZGRpbg==",
        ] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
            assert_eq!(basic_credentials(&headers), None, "{bad}");
        }
    }

    fn root_port(core: &EmulatorCore) -> String {
        core.base_url()
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .expect("port")
            .to_owned()
    }

    #[tokio::test]
    async fn base_urls_with_and_without_a_path() {
        let options = EmulatorOptions::new(1);
        let body: ErrorBody = Arc::new(|_| ("text/plain".to_owned(), String::new()));
        let bare = EmulatorCore::bind(&options, "", Arc::clone(&body))
            .await
            .expect("bind")
            .serve(Router::new());
        assert!(bare.base_url().starts_with("http://127.0.0.1:"));
        assert!(!bare.base_url().ends_with('/'));
        let api = EmulatorCore::bind(&options, "api/", body)
            .await
            .expect("bind")
            .serve(Router::new());
        assert!(api.base_url().ends_with("/api/"), "{}", api.base_url());
        let root = EmulatorCore::bind(&options, "/", Arc::new(|_| (String::new(), String::new())))
            .await
            .expect("bind")
            .serve(Router::new());
        assert!(root.base_url().ends_with(&format!("{}/", root_port(&root))));
    }
}
