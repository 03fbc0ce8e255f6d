//! Helpers shared by the sandbox tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use ml_core::Source;
use ml_core::config::MapEnv;
use ml_core::cursor::Position;
use ml_core::record::{Record, SourceItem};
use ml_sage_x3::SageX3Builder;
use ml_sandbox::Emulator as _;
use ml_sandbox::sage_x3::SageX3Emulator;

/// The environment of `pairs` as a [`MapEnv`].
pub fn env(pairs: Vec<(&'static str, String)>) -> MapEnv {
    let mut m = MapEnv::new();
    for (k, v) in pairs {
        m.set(k, v);
    }
    m
}

/// An api1 builder with Basic, pointed at `e`, without retries' waiting.
pub fn rest(e: &SageX3Emulator) -> SageX3Builder {
    SageX3Builder::from_env_with(&env(e.env())).with_retry(
        ml_core::retry::RetryPolicy::default()
            .with_base_delay(std::time::Duration::from_millis(1))
            .with_max_delay(std::time::Duration::from_millis(5)),
    )
}

/// Polls until the cycle ends; the records and rejected items served, and the position.
pub async fn cycle(
    source: &dyn Source,
    mut pos: Option<Position>,
) -> (Vec<SourceItem>, Option<Position>) {
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let page = source.poll(pos.as_ref()).await.expect("poll");
        out.extend(page.items);
        pos = Some(page.next);
        if !page.more {
            return (out, pos);
        }
    }
    panic!("the cycle did not end");
}

/// The records among `items`.
pub fn records(items: &[SourceItem]) -> Vec<&Record> {
    items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Record(r) => Some(&**r),
            SourceItem::Rejected(_) => None,
        })
        .collect()
}

/// A shared handle.
pub fn arc<T>(t: T) -> Arc<T> {
    Arc::new(t)
}

/// Appends `line` to the event log at `path` (one write: whole lines survive a SIGKILL).
pub fn log_event(path: &std::path::Path, line: &str) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("event log");
    f.write_all(format!("{line}\n").as_bytes())
        .expect("write event");
}

/// A refresh-token store that logs `saved <token>` once the inner save has returned.
#[derive(Debug)]
pub struct RecordingStore {
    pub inner: Arc<dyn ml_core::auth::RefreshTokenStore>,
    pub log: std::path::PathBuf,
}

#[async_trait::async_trait]
impl ml_core::auth::RefreshTokenStore for RecordingStore {
    async fn load(&self) -> ml_core::Result<Option<ml_core::auth::StoredRefreshToken>> {
        self.inner.load().await
    }

    async fn save(&self, token: &ml_core::auth::StoredRefreshToken) -> ml_core::Result<()> {
        use secrecy::ExposeSecret as _;
        self.inner.save(token).await?;
        log_event(&self.log, &format!("saved {}", token.token.expose_secret()));
        Ok(())
    }
}

/// A transport that logs `used <bearer token>` before sending a request that carries one.
#[derive(Debug)]
pub struct RecordingTransport {
    pub inner: Arc<dyn ml_core::http::Transport>,
    pub log: std::path::PathBuf,
}

#[async_trait::async_trait]
impl ml_core::http::Transport for RecordingTransport {
    async fn exchange(
        &self,
        request: ml_core::http::Request,
        body_limit: usize,
    ) -> Result<ml_core::http::Response, ml_core::http::TransportError> {
        if let Some(token) = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            log_event(&self.log, &format!("used {token}"));
        }
        self.inner.exchange(request, body_limit).await
    }
}

/// Checks the log: every access token used was issued with a refresh token (same number)
/// that had been saved before. Returns how many uses were checked.
pub fn assert_saved_before_use(log: &std::path::Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut saved = std::collections::BTreeSet::new();
    let mut uses = 0;
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("saved sbx-x3-refresh-") {
            saved.insert(t.to_owned());
        } else if let Some(t) = line.strip_prefix("used sbx-x3-access-") {
            assert!(
                saved.contains(t),
                "access token {t} used before its refresh token was saved:\n{text}"
            );
            uses += 1;
        }
    }
    uses
}
