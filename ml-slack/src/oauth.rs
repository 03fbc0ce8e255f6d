//! OAuth v2 install: the authorize URL with scopes and a CSRF `state`, the
//! `oauth.v2.access` code exchange, token rotation (refresh), and where installations are
//! kept ([`InstallationStore`]).
//!
//! ```
//! use ml_slack::oauth::{OAuthClient, OAuthConfig};
//!
//! let config = OAuthConfig::new("123.456", "client-secret")
//!     .with_scopes(["chat:write", "channels:history", "commands"])
//!     .with_redirect_uri("https://erp-bridge.example.com/slack/oauth");
//! let http = ml_core::http::ClientOptions::default().client()?;
//! let oauth = OAuthClient::new(config, http);
//! let now = jiff::Timestamp::now();
//! // Bind the state to the browser session (e.g. a cookie value) and redirect:
//! let state = oauth.issue_state("session-cookie-value", now);
//! let url = oauth.install_url(&state);
//! assert!(url.as_str().starts_with("https://slack.com/oauth/v2/authorize?client_id=123.456&scope=chat%3Awrite%2Cchannels%3Ahistory%2Ccommands"));
//! // ... on the callback, before exchanging the code:
//! oauth.verify_state(&state, "session-cookie-value", now)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The `state` is stateless: `<expiry>.<nonce>.<HMAC>` keyed with the client secret over
//! the expiry, the nonce and a session binding (a value only the user's browser holds,
//! such as a cookie), so a state from another session, a forged one or an expired one
//! (10 minutes) is refused; each state is accepted once per process.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use ml_core::ErrorClass;
use ml_core::auth::Credentials;
use ml_core::auth::{AccessToken, BasicCredentials, RefreshGrant, StoredRefreshToken, TokenGrant};
use ml_core::clock::{Clock, SystemClock, add};
use ml_core::http::{ApiClient, Request};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use url::Url;

use crate::builder::DEFAULT_API_URL;
use crate::client::send_checked;
use crate::error::SlackError;

/// Slack's authorize page.
pub const AUTHORIZE_URL: &str = "https://slack.com/oauth/v2/authorize";

/// How long a `state` is valid.
pub const STATE_TTL: Duration = Duration::from_secs(600);

/// The OAuth app: client id and secret, scopes, redirect URI, endpoints.
#[derive(Clone)]
pub struct OAuthConfig {
    client_id: String,
    client_secret: SecretString,
    scopes: Vec<String>,
    user_scopes: Vec<String>,
    redirect_uri: Option<String>,
    authorize_url: String,
    api_url: Url,
}

impl OAuthConfig {
    /// An app with its client id and secret.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<SecretString>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scopes: Vec::new(),
            user_scopes: Vec::new(),
            redirect_uri: None,
            authorize_url: AUTHORIZE_URL.to_owned(),
            api_url: Url::parse(DEFAULT_API_URL).unwrap_or_else(|_| unreachable!("a valid URL")),
        }
    }

    /// Sets the bot scopes (`chat:write`, `channels:history`, ...).
    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the user scopes.
    pub fn with_user_scopes<S: Into<String>>(
        mut self,
        scopes: impl IntoIterator<Item = S>,
    ) -> Self {
        self.user_scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the redirect URI (must match the app's configuration and the exchange).
    pub fn with_redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uri = Some(uri.into());
        self
    }

    /// Sets the authorize page (for the sandbox).
    pub fn with_authorize_url(mut self, url: impl Into<String>) -> Self {
        self.authorize_url = url.into();
        self
    }

    /// Sets the Web API base (`oauth.v2.access` is called there).
    pub fn with_api_url(mut self, url: Url) -> Self {
        self.api_url = url;
        self
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
}

impl fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("user_scopes", &self.user_scopes)
            .field("redirect_uri", &self.redirect_uri)
            .field("authorize_url", &self.authorize_url)
            .field("api_url", &self.api_url.as_str())
            .finish()
    }
}

/// A workspace's installation of the app, as `oauth.v2.access` returned it. `Debug` never
/// shows a token.
#[derive(Clone)]
pub struct Installation {
    /// The workspace id (absent for an org-wide install).
    pub team_id: Option<String>,
    /// The workspace name.
    pub team_name: Option<String>,
    /// The Enterprise Grid org id, if any.
    pub enterprise_id: Option<String>,
    /// Whether the app was installed org-wide.
    pub is_enterprise_install: bool,
    /// The app id.
    pub app_id: Option<String>,
    /// The bot's user id.
    pub bot_user_id: Option<String>,
    /// The granted bot scopes.
    pub scopes: Vec<String>,
    /// The bot token (`xoxb-…`, or `xoxe.xoxb-…` with rotation).
    pub bot_token: SecretString,
    /// When the bot token expires (token rotation only).
    pub expires_at: Option<Timestamp>,
    /// The refresh token (token rotation only).
    pub refresh_token: Option<SecretString>,
    /// The user who installed the app.
    pub authed_user_id: Option<String>,
}

impl Installation {
    /// The refresh token in the shape `ml_core::auth::RefreshTokenStore` keeps.
    pub fn stored_refresh_token(&self) -> Option<StoredRefreshToken> {
        self.refresh_token
            .clone()
            .map(|t| StoredRefreshToken::new(t, None))
    }
}

impl fmt::Debug for Installation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Installation")
            .field("team_id", &self.team_id)
            .field("team_name", &self.team_name)
            .field("enterprise_id", &self.enterprise_id)
            .field("is_enterprise_install", &self.is_enterprise_install)
            .field("app_id", &self.app_id)
            .field("bot_user_id", &self.bot_user_id)
            .field("scopes", &self.scopes)
            .field("bot_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("authed_user_id", &self.authed_user_id)
            .finish()
    }
}

/// Where installations are kept (the host's database, a secrets manager). Implementations
/// must store tokens encrypted or in a secrets manager, and never log them.
#[async_trait]
pub trait InstallationStore: Send + Sync + fmt::Debug {
    /// Saves (or replaces) the installation of its team / enterprise.
    async fn save(&self, installation: &Installation) -> ml_core::Result<()>;
    /// The installation of a team (or, for org-wide installs, of an enterprise).
    async fn find(
        &self,
        team_id: Option<&str>,
        enterprise_id: Option<&str>,
    ) -> ml_core::Result<Option<Installation>>;
    /// Removes an installation (after `app_uninstalled` / `tokens_revoked`).
    async fn delete(
        &self,
        team_id: Option<&str>,
        enterprise_id: Option<&str>,
    ) -> ml_core::Result<()>;
}

/// `(team id, enterprise id)`.
type InstallationKey = (Option<String>, Option<String>);

/// An [`InstallationStore`] in memory (tests, single-process hosts that persist elsewhere).
#[derive(Debug, Default)]
pub struct MemoryInstallationStore {
    items: Mutex<HashMap<InstallationKey, Installation>>,
}

fn store_key(installation_team: Option<&str>, enterprise: Option<&str>) -> InstallationKey {
    (
        installation_team.map(str::to_owned),
        enterprise.map(str::to_owned),
    )
}

#[async_trait]
impl InstallationStore for MemoryInstallationStore {
    async fn save(&self, i: &Installation) -> ml_core::Result<()> {
        let key = if i.is_enterprise_install {
            store_key(None, i.enterprise_id.as_deref())
        } else {
            store_key(i.team_id.as_deref(), i.enterprise_id.as_deref())
        };
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, i.clone());
        Ok(())
    }

    async fn find(
        &self,
        team_id: Option<&str>,
        enterprise_id: Option<&str>,
    ) -> ml_core::Result<Option<Installation>> {
        let items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(items
            .get(&store_key(team_id, enterprise_id))
            .or_else(|| items.get(&store_key(None, enterprise_id)))
            .cloned())
    }

    async fn delete(
        &self,
        team_id: Option<&str>,
        enterprise_id: Option<&str>,
    ) -> ml_core::Result<()> {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&store_key(team_id, enterprise_id));
        Ok(())
    }
}

/// The OAuth client: install URL, state, code exchange, refresh. Implements
/// [`RefreshGrant`] so `ml_core::auth::RotatingTokenProvider` can rotate bot tokens.
pub struct OAuthClient {
    config: OAuthConfig,
    http: reqwest::Client,
    state_key: Hmac<Sha256>,
    used_states: Mutex<HashMap<String, Timestamp>>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct AccessResponse {
    access_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    bot_user_id: Option<String>,
    #[serde(default)]
    app_id: Option<String>,
    #[serde(default)]
    team: Option<NamedId>,
    #[serde(default)]
    enterprise: Option<NamedId>,
    #[serde(default)]
    is_enterprise_install: bool,
    #[serde(default)]
    authed_user: Option<NamedId>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct NamedId {
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

impl OAuthClient {
    /// A client for `config`, calling Slack over `http` (from `ClientOptions::client`).
    pub fn new(config: OAuthConfig, http: reqwest::Client) -> Self {
        let state_key = <Hmac<Sha256> as KeyInit>::new_from_slice(
            config.client_secret.expose_secret().as_bytes(),
        )
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Self {
            config,
            http,
            state_key,
            used_states: Mutex::new(HashMap::new()),
            clock: Arc::new(SystemClock),
        }
    }

    /// Uses `clock` for token expiry.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// The URL to send the installing user to, carrying `state`.
    pub fn install_url(&self, state: &str) -> Url {
        let mut url = Url::parse(&self.config.authorize_url)
            .unwrap_or_else(|_| Url::parse(AUTHORIZE_URL).unwrap_or_else(|_| unreachable!()));
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.config.client_id);
            q.append_pair("scope", &self.config.scopes.join(","));
            if !self.config.user_scopes.is_empty() {
                q.append_pair("user_scope", &self.config.user_scopes.join(","));
            }
            if let Some(r) = &self.config.redirect_uri {
                q.append_pair("redirect_uri", r);
            }
            q.append_pair("state", state);
        }
        url
    }

    fn state_mac(&self, expiry: i64, nonce: &str, binding: &str) -> [u8; 32] {
        let mut mac = self.state_key.clone();
        mac.update(b"ml-slack-oauth-state:");
        mac.update(expiry.to_string().as_bytes());
        mac.update(b".");
        mac.update(nonce.as_bytes());
        mac.update(b".");
        mac.update(binding.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A new `state` bound to `session_binding` (a value only the user's browser holds),
    /// valid for [`STATE_TTL`].
    pub fn issue_state(&self, session_binding: &str, now: Timestamp) -> String {
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        let nonce = hex::encode(nonce);
        let expiry = add(now, STATE_TTL).as_second();
        let mac = self.state_mac(expiry, &nonce, session_binding);
        format!("{expiry}.{nonce}.{}", hex::encode(mac))
    }

    /// Checks a `state` from the callback: well-formed, issued by this app for this
    /// session, not expired, and not used before (in this process).
    pub fn verify_state(
        &self,
        state: &str,
        session_binding: &str,
        now: Timestamp,
    ) -> Result<(), SlackError> {
        let mut parts = state.splitn(3, '.');
        let (Some(exp), Some(nonce), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SlackError::InvalidState("malformed"));
        };
        let expiry: i64 = exp
            .parse()
            .map_err(|_| SlackError::InvalidState("malformed"))?;
        let mut given = [0u8; 32];
        if nonce.len() != 32 || hex::decode_to_slice(mac, &mut given).is_err() {
            return Err(SlackError::InvalidState("malformed"));
        }
        let expected = self.state_mac(expiry, nonce, session_binding);
        if !bool::from(expected.ct_eq(&given)) {
            return Err(SlackError::InvalidState("not issued for this session"));
        }
        if now.as_second() > expiry {
            return Err(SlackError::InvalidState("expired"));
        }
        let mut used = self
            .used_states
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        used.retain(|_, exp| *exp >= now);
        let exp_ts = Timestamp::from_second(expiry).unwrap_or(Timestamp::MAX);
        if used.insert(nonce.to_owned(), exp_ts).is_some() {
            return Err(SlackError::InvalidState("already used"));
        }
        Ok(())
    }

    async fn access(&self, form: &[(&str, &str)]) -> Result<AccessResponse, SlackError> {
        const METHOD: &str = "oauth.v2.access";
        let url = self
            .config
            .api_url
            .join(METHOD)
            .map_err(|e| SlackError::config("SLACK_API_URL", e.to_string()))?;
        let basic = BasicCredentials::new(
            self.config.client_id.clone(),
            self.config.client_secret.clone(),
        );
        let request = Request::from_url(http::Method::POST, url)
            .form(form)
            .map_err(|e| SlackError::config("oauth.v2.access", e.to_string()))?
            // A code exchange or refresh that failed was not applied (an in-doubt rotation
            // is handled by ml-core's RotatingTokenProvider running it to completion).
            .idempotent(true);
        let api = ApiClient::reqwest(self.http.clone())
            .with_credentials(Credentials::Basic(basic))
            .with_clock(Arc::clone(&self.clock));
        let body = send_checked(&api, request, METHOD, None).await?;
        serde_json::from_slice(&body).map_err(|e| SlackError::InvalidResponse {
            method: METHOD.to_owned(),
            message: format!("not an oauth.v2.access answer: {e}"),
            class: ErrorClass::RETRYABLE,
        })
    }

    fn installation(&self, r: AccessResponse) -> Result<Installation, SlackError> {
        let token = r.access_token.ok_or_else(|| SlackError::InvalidResponse {
            method: "oauth.v2.access".into(),
            message: "no access_token".into(),
            class: ErrorClass::Permanent,
        })?;
        let now = self.clock.now();
        Ok(Installation {
            team_id: r.team.as_ref().and_then(|t| t.id.clone()),
            team_name: r.team.and_then(|t| t.name),
            enterprise_id: r.enterprise.and_then(|e| e.id),
            is_enterprise_install: r.is_enterprise_install,
            app_id: r.app_id,
            bot_user_id: r.bot_user_id,
            scopes: r
                .scope
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            bot_token: SecretString::from(token),
            expires_at: r.expires_in.map(|s| add(now, Duration::from_secs(s))),
            refresh_token: r.refresh_token.map(SecretString::from),
            authed_user_id: r.authed_user.and_then(|u| u.id),
        })
    }

    /// Exchanges the callback's `code` for an installation (`oauth.v2.access`, client
    /// credentials by HTTP Basic). Verify the `state` first.
    pub async fn exchange_code(&self, code: &str) -> Result<Installation, SlackError> {
        let mut form = vec![("code", code)];
        if let Some(r) = &self.config.redirect_uri {
            form.push(("redirect_uri", r.as_str()));
        }
        let r = self.access(&form).await?;
        self.installation(r)
    }

    /// Exchanges a refresh token for a new bot token and the refresh token that replaces
    /// it (token rotation).
    pub async fn refresh_installation(
        &self,
        refresh_token: &SecretString,
    ) -> Result<Installation, SlackError> {
        let r = self
            .access(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.expose_secret()),
            ])
            .await?;
        self.installation(r)
    }
}

#[async_trait]
impl RefreshGrant for OAuthClient {
    async fn refresh(&self, refresh_token: &SecretString) -> ml_core::Result<TokenGrant> {
        let i = self
            .refresh_installation(refresh_token)
            .await
            .map_err(|e| ml_core::Error::Auth {
                class: e.class(),
                message: e.to_string(),
            })?;
        Ok(TokenGrant {
            access: AccessToken::new(i.bot_token.clone(), i.expires_at),
            refresh: i.stored_refresh_token(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> OAuthClient {
        let http = ml_core::http::ClientOptions::default()
            .client()
            .expect("http");
        OAuthClient::new(
            OAuthConfig::new("123.456", "hunter2-secret")
                .with_scopes(["chat:write", "commands"])
                .with_user_scopes(["search:read"])
                .with_redirect_uri("https://x.example/cb"),
            http,
        )
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("ts")
    }

    #[test]
    fn install_url_carries_everything() {
        let c = client();
        let url = c.install_url("st.ate");
        let q: HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(url.host_str(), Some("slack.com"));
        assert_eq!(url.path(), "/oauth/v2/authorize");
        assert_eq!(q["client_id"], "123.456");
        assert_eq!(q["scope"], "chat:write,commands");
        assert_eq!(q["user_scope"], "search:read");
        assert_eq!(q["redirect_uri"], "https://x.example/cb");
        assert_eq!(q["state"], "st.ate");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn state_is_bound_expiring_and_single_use() {
        let c = client();
        let now = at(1_800_000_000);
        let s = c.issue_state("cookie-a", now);
        assert!(matches!(
            c.verify_state(&s, "cookie-b", now),
            Err(SlackError::InvalidState("not issued for this session"))
        ));
        assert!(matches!(
            c.verify_state(&s, "cookie-a", at(1_800_000_000 + 601)),
            Err(SlackError::InvalidState("expired"))
        ));
        c.verify_state(&s, "cookie-a", now).expect("valid");
        assert!(matches!(
            c.verify_state(&s, "cookie-a", now),
            Err(SlackError::InvalidState("already used"))
        ));
        let mut forged = s.clone();
        forged.replace_range(0..10, "1900000000");
        assert!(c.verify_state(&forged, "cookie-a", now).is_err());
        for bad in ["", "x", "1.2", "1.2.3", "a.b.c"] {
            assert!(c.verify_state(bad, "cookie-a", now).is_err(), "{bad}");
        }
        // Another app's secret cannot mint states.
        let other = OAuthClient::new(
            OAuthConfig::new("123.456", "another"),
            ml_core::http::ClientOptions::default()
                .client()
                .expect("http"),
        );
        let s2 = other.issue_state("cookie-a", now);
        assert!(c.verify_state(&s2, "cookie-a", now).is_err());
    }

    #[test]
    fn installation_debug_hides_tokens() {
        let i = Installation {
            team_id: Some("T1".into()),
            team_name: None,
            enterprise_id: None,
            is_enterprise_install: false,
            app_id: None,
            bot_user_id: None,
            scopes: vec![],
            bot_token: "xoxb-hunter2".into(),
            expires_at: None,
            refresh_token: Some("xoxe-1-hunter2".into()),
            authed_user_id: None,
        };
        assert!(!format!("{i:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn memory_store_round_trip() {
        let s = MemoryInstallationStore::default();
        let i = Installation {
            team_id: Some("T1".into()),
            team_name: Some("Acme".into()),
            enterprise_id: None,
            is_enterprise_install: false,
            app_id: Some("A1".into()),
            bot_user_id: Some("U1".into()),
            scopes: vec!["chat:write".into()],
            bot_token: "xoxb-1".into(),
            expires_at: None,
            refresh_token: None,
            authed_user_id: None,
        };
        s.save(&i).await.expect("save");
        let got = s.find(Some("T1"), None).await.expect("find").expect("some");
        assert_eq!(got.team_name.as_deref(), Some("Acme"));
        s.delete(Some("T1"), None).await.expect("delete");
        assert!(s.find(Some("T1"), None).await.expect("find").is_none());
    }
}
