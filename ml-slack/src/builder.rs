//! [`SlackBuilder`]: configuration from the environment or typed setters; everything is
//! checked in `build()`, and errors name the key.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ml_core::auth::{RefreshTokenStore, RotatingTokenProvider, TokenCache};
use ml_core::clock::{Clock, SystemClock};
use ml_core::config::{ConfigKey, Env, ProcessEnv, check_url, unknown_key};
use ml_core::http::ClientOptions;
use ml_core::render::Renderer;
use secrecy::{ExposeSecret as _, SecretString};
use url::Url;

use crate::client::{BotToken, SlackClient};
use crate::error::SlackError;
use crate::oauth::{OAuthClient, OAuthConfig};
use crate::receiver::SlackReceiver;
use crate::render::{BlockKitRenderer, LineDetail};
use crate::signature::SignatureVerifier;
use crate::sink::{ReconcileOptions, SlackSink, UpdateMode};

/// The default Web API base URL.
pub const DEFAULT_API_URL: &str = "https://slack.com/api/";

ml_core::config_keys! {
    /// Configuration keys, as environment variables (`SLACK_…`) and for
    /// [`SlackBuilder::with_config`].
    pub enum SlackConfigKey: prefix "SLACK_" {
        /// `SLACK_BOT_TOKEN`: the bot token (`xoxb-…`, or `xoxe.xoxb-…` with rotation).
        BotToken = "SLACK_BOT_TOKEN" (secret),
        /// `SLACK_SIGNING_SECRET`: the app's signing secret (for the receiver).
        SigningSecret = "SLACK_SIGNING_SECRET" (secret),
        /// `SLACK_API_URL`: the Web API base (default `https://slack.com/api/`).
        ApiUrl = "SLACK_API_URL",
        /// `SLACK_APP_TOKEN`: the app-level token (`xapp-…`) for Socket Mode.
        AppToken = "SLACK_APP_TOKEN" (secret),
        /// `SLACK_CLIENT_ID`: the OAuth client id.
        ClientId = "SLACK_CLIENT_ID",
        /// `SLACK_CLIENT_SECRET`: the OAuth client secret.
        ClientSecret = "SLACK_CLIENT_SECRET" (secret),
        /// `SLACK_REDIRECT_URI`: the OAuth redirect URI.
        RedirectUri = "SLACK_REDIRECT_URI",
        /// `SLACK_UPDATE_MODE`: `thread` (default), `thread_broadcast` or `edit`.
        UpdateMode = "SLACK_UPDATE_MODE",
        /// `SLACK_INSTANCE`: a name put in each post's metadata and required by `reconcile`,
        /// for several journals posting to the same channels (staging and production).
        Instance = "SLACK_INSTANCE",
        /// `SLACK_JOIN_CHANNELS`: `true` (default) joins a public channel the app is not in
        /// when a post answers `not_in_channel` (scope `channels:join`), then posts again;
        /// `false` fails the post with that error.
        JoinChannels = "SLACK_JOIN_CHANNELS",
    }
}

impl FromStr for SlackConfigKey {
    type Err = SlackError;

    fn from_str(s: &str) -> Result<Self, SlackError> {
        <Self as ConfigKey>::from_name(s)
            .ok_or_else(|| SlackError::config(s.trim(), "unknown Slack configuration key"))
    }
}

/// Token rotation settings: the OAuth client and where the rotating refresh token lives.
#[derive(Clone)]
struct Rotation {
    store: Arc<dyn RefreshTokenStore>,
}

/// Builds a [`SlackSink`], a [`SlackReceiver`], an [`OAuthClient`] and (feature
/// `socket-mode`) a Socket Mode client.
///
/// ```
/// use ml_slack::{SlackBuilder, SlackConfigKey};
///
/// let sink = SlackBuilder::new()
///     .with_bot_token("xoxb-not-a-real-token")
///     .with_config(SlackConfigKey::ApiUrl, "http://127.0.0.1:9/api/")
///     .build()?;
/// assert_eq!(sink.to_string(), "Slack(127.0.0.1:9)");
/// # Ok::<(), ml_core::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct SlackBuilder {
    bot_token: Option<SecretString>,
    signing_secret: Option<SecretString>,
    api_url: Option<String>,
    app_token: Option<SecretString>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    redirect_uri: Option<String>,
    update_mode: Option<String>,
    instance: Option<String>,
    join_channels: Option<String>,
    options: Option<ClientOptions>,
    renderer: Option<Arc<dyn Renderer>>,
    line_detail: LineDetail,
    reconcile: ReconcileOptions,
    rotation: Option<Rotation>,
    token_cache: Option<Arc<TokenCache>>,
    clock: Option<Arc<dyn Clock>>,
    unfurl: bool,
    allow_plain_http: bool,
}

impl SlackBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder from `SLACK_BOT_TOKEN`, `SLACK_SIGNING_SECRET`, `SLACK_API_URL`,
    /// `SLACK_APP_TOKEN`, `SLACK_CLIENT_ID`, `SLACK_CLIENT_SECRET`, `SLACK_REDIRECT_URI`,
    /// `SLACK_UPDATE_MODE`, `SLACK_INSTANCE` and `SLACK_JOIN_CHANNELS` (unset and empty variables are skipped;
    /// nothing is checked before `build`). Same as `from_env_with(&ProcessEnv)`.
    pub fn from_env() -> Self {
        Self::from_env_with(&ProcessEnv)
    }

    /// Like [`from_env`](Self::from_env), reading any [`Env`] (a map in tests).
    pub fn from_env_with(env: &impl Env) -> Self {
        let mut b = Self::new();
        for &key in SlackConfigKey::ALL {
            if let Some(v) = env.var(key.as_env())
                && !v.trim().is_empty()
            {
                b = b.with_config(key, v);
            }
        }
        b
    }

    /// Sets a value by name: the environment variable or its short form (`bot_token`).
    /// An unknown name is an error naming it.
    pub fn with_config_str(self, name: &str, value: impl Into<String>) -> ml_core::Result<Self> {
        let key = <SlackConfigKey as ConfigKey>::from_name(name)
            .ok_or_else(|| unknown_key::<SlackConfigKey>(name))?;
        Ok(self.with_config(key, value))
    }

    /// Sets a value by key (checked at `build`).
    pub fn with_config(mut self, key: SlackConfigKey, value: impl Into<String>) -> Self {
        let v: String = value.into();
        match key {
            SlackConfigKey::BotToken => self.bot_token = Some(v.into()),
            SlackConfigKey::SigningSecret => self.signing_secret = Some(v.into()),
            SlackConfigKey::ApiUrl => self.api_url = Some(v),
            SlackConfigKey::AppToken => self.app_token = Some(v.into()),
            SlackConfigKey::ClientId => self.client_id = Some(v),
            SlackConfigKey::ClientSecret => self.client_secret = Some(v.into()),
            SlackConfigKey::RedirectUri => self.redirect_uri = Some(v),
            SlackConfigKey::UpdateMode => self.update_mode = Some(v),
            SlackConfigKey::Instance => self.instance = Some(v),
            SlackConfigKey::JoinChannels => self.join_channels = Some(v),
        }
        self
    }

    /// Sets the bot token.
    pub fn with_bot_token(mut self, token: impl Into<SecretString>) -> Self {
        self.bot_token = Some(token.into());
        self
    }

    /// Sets the signing secret.
    pub fn with_signing_secret(mut self, secret: impl Into<SecretString>) -> Self {
        self.signing_secret = Some(secret.into());
        self
    }

    /// Sets the Web API base URL (a trailing `/` is added when missing). Must be `https`,
    /// or `http` to a loopback address (the sandbox).
    pub fn with_api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = Some(url.into());
        self
    }

    /// Sets the app-level token (`xapp-…`) for Socket Mode.
    pub fn with_app_token(mut self, token: impl Into<SecretString>) -> Self {
        self.app_token = Some(token.into());
        self
    }

    /// Sets the OAuth client id and secret.
    pub fn with_oauth_client(
        mut self,
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
    ) -> Self {
        self.client_id = Some(client_id.into());
        self.client_secret = Some(client_secret.into());
        self
    }

    /// Sets the OAuth redirect URI.
    pub fn with_redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uri = Some(uri.into());
        self
    }

    /// Sets the HTTP client options (timeouts, proxy, user agent).
    pub fn with_client_options(mut self, options: ClientOptions) -> Self {
        self.options = Some(options);
        self
    }

    /// Uses a host renderer instead of [`BlockKitRenderer`].
    pub fn with_renderer(mut self, renderer: Arc<dyn Renderer>) -> Self {
        self.renderer = Some(renderer);
        self
    }

    /// Which destinations the default [`BlockKitRenderer`] shows document lines (GL
    /// detail) to (default: all). Ignored with [`with_renderer`](Self::with_renderer).
    pub fn with_line_detail(mut self, lines: LineDetail) -> Self {
        self.line_detail = lines;
        self
    }

    /// The renderer the sink will use: the host's ([`with_renderer`](Self::with_renderer)),
    /// else a [`BlockKitRenderer`] with the [`line detail`](Self::with_line_detail) set.
    /// To wrap it (buttons on some messages), pass the wrapper back to `with_renderer`.
    pub fn renderer(&self) -> Arc<dyn Renderer> {
        self.renderer.clone().unwrap_or_else(|| {
            Arc::new(BlockKitRenderer::new().with_line_detail(self.line_detail.clone()))
        })
    }

    /// Sets what later versions of a posted record do.
    pub fn with_update_mode(mut self, mode: UpdateMode) -> Self {
        self.update_mode = Some(
            match mode {
                UpdateMode::Thread => "thread",
                UpdateMode::ThreadBroadcast => "thread_broadcast",
                UpdateMode::Edit => "edit",
            }
            .to_owned(),
        );
        self
    }

    /// Sets how `reconcile` searches.
    pub fn with_reconcile(mut self, options: ReconcileOptions) -> Self {
        self.reconcile = options;
        self
    }

    /// Sets the instance name carried in the metadata (see [`SlackConfigKey::Instance`]).
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Turns link and media unfurling on (off by default: ERP links rarely preview well).
    pub fn with_unfurl(mut self, on: bool) -> Self {
        self.unfurl = on;
        self
    }

    /// Whether a post that answers `not_in_channel` joins the (public) channel and posts
    /// again (default `true`; needs the `channels:join` scope, else the post fails with
    /// `not_in_channel` and what to do about it).
    pub fn with_join_channels(mut self, on: bool) -> Self {
        self.join_channels = Some(on.to_string());
        self
    }

    /// Turns token rotation on: the bot token comes from `oauth.v2.access`
    /// (`grant_type=refresh_token`, with the OAuth client id and secret), refreshed ahead
    /// of expiry and once more when Slack answers `token_expired`; each rotated refresh
    /// token is saved in `store` before the new access token is used. The bot token, if
    /// set, is ignored.
    pub fn with_token_rotation(mut self, store: Arc<dyn RefreshTokenStore>) -> Self {
        self.rotation = Some(Rotation { store });
        self
    }

    /// Takes bot tokens from the host's own cache (any `TokenProvider`).
    pub fn with_token_cache(mut self, cache: Arc<TokenCache>) -> Self {
        self.token_cache = Some(cache);
        self
    }

    /// Sets the clock (reconcile windows, OAuth state, `Retry-After` dates, rotation).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Allows `http://` API URLs to any host (never do this in production: the bot token
    /// would travel in clear). Loopback addresses are always allowed.
    pub fn with_plain_http(mut self, allow: bool) -> Self {
        self.allow_plain_http = allow;
        self
    }

    fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone().unwrap_or_else(|| Arc::new(SystemClock))
    }

    fn http(&self) -> Result<reqwest::Client, SlackError> {
        self.options
            .clone()
            .unwrap_or_default()
            .client()
            .map_err(|e| match e {
                ml_core::Error::Config { key, message } => SlackError::config(key, message),
                other => SlackError::config("ClientOptions", other.to_string()),
            })
    }

    /// The checked API base URL.
    pub(crate) fn api_url(&self) -> Result<Url, SlackError> {
        let key = SlackConfigKey::ApiUrl.as_env();
        let raw = self.api_url.as_deref().unwrap_or(DEFAULT_API_URL).trim();
        let mut url = match check_url(key, raw) {
            Ok(url) => url,
            // The one explicit exception to the shared policy (`with_plain_http`).
            Err(_)
                if self.allow_plain_http
                    && Url::parse(raw).is_ok_and(|u| {
                        u.scheme() == "http"
                            && u.username().is_empty()
                            && u.password().is_none()
                            && u.query().is_none()
                            && u.fragment().is_none()
                    }) =>
            {
                Url::parse(raw).map_err(|e| SlackError::config(key, e.to_string()))?
            }
            Err(ml_core::Error::Config { key, message }) => {
                return Err(SlackError::config(key, message));
            }
            Err(other) => return Err(SlackError::config(key, other.to_string())),
        };
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        Ok(url)
    }

    fn oauth_config(&self) -> Result<OAuthConfig, SlackError> {
        let id = self
            .client_id
            .clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| SlackError::config(SlackConfigKey::ClientId.as_env(), "is not set"))?;
        let secret = self
            .client_secret
            .clone()
            .filter(|s| !s.expose_secret().trim().is_empty())
            .ok_or_else(|| {
                SlackError::config(SlackConfigKey::ClientSecret.as_env(), "is not set")
            })?;
        let mut c = OAuthConfig::new(id, secret).with_api_url(self.api_url()?);
        if let Some(r) = &self.redirect_uri {
            c = c.with_redirect_uri(r.clone());
        }
        Ok(c)
    }

    fn bot_token(&self) -> Result<BotToken, SlackError> {
        if let Some(cache) = &self.token_cache {
            return Ok(BotToken::Cache(Arc::clone(cache)));
        }
        if let Some(rot) = &self.rotation {
            let oauth =
                OAuthClient::new(self.oauth_config()?, self.http()?).with_clock(self.clock());
            let provider = RotatingTokenProvider::new(Arc::new(oauth), Arc::clone(&rot.store))
                .with_clock(self.clock());
            let cache = TokenCache::new(Arc::new(provider)).with_clock(self.clock());
            return Ok(BotToken::Cache(Arc::new(cache)));
        }
        let key = SlackConfigKey::BotToken.as_env();
        let token = self
            .bot_token
            .clone()
            .ok_or_else(|| SlackError::config(key, "is not set"))?;
        let t = token.expose_secret().trim();
        if t.is_empty() {
            return Err(SlackError::config(key, "is empty"));
        }
        if t.starts_with("xapp-") {
            return Err(SlackError::config(
                key,
                "is an app-level token (xapp-); that belongs in SLACK_APP_TOKEN",
            ));
        }
        if !(t.starts_with("xox") || t.starts_with("xoxe.")) {
            return Err(SlackError::config(
                key,
                "does not look like a Slack token (expected xoxb-…)",
            ));
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(SlackError::config(key, "contains whitespace"));
        }
        Ok(BotToken::Static(SecretString::from(t.to_owned())))
    }

    fn join_channels(&self) -> Result<bool, SlackError> {
        match self
            .join_channels
            .as_deref()
            .map(|v| v.trim().to_ascii_lowercase())
        {
            None => Ok(true),
            Some(v) => match v.as_str() {
                "" | "true" | "yes" | "on" | "1" => Ok(true),
                "false" | "no" | "off" | "0" => Ok(false),
                _ => Err(SlackError::config(
                    SlackConfigKey::JoinChannels.as_env(),
                    format!("`{v}`: expected true or false"),
                )),
            },
        }
    }

    fn update_mode(&self) -> Result<UpdateMode, SlackError> {
        match self.update_mode.as_deref().map(str::trim) {
            None | Some("" | "thread") => Ok(UpdateMode::Thread),
            Some("thread_broadcast") => Ok(UpdateMode::ThreadBroadcast),
            Some("edit") => Ok(UpdateMode::Edit),
            Some(other) => Err(SlackError::config(
                SlackConfigKey::UpdateMode.as_env(),
                format!("`{other}` is not one of thread, thread_broadcast, edit"),
            )),
        }
    }

    /// The Web API client (bot token).
    pub fn build_client(&self) -> Result<SlackClient, SlackError> {
        Ok(
            SlackClient::new(self.http()?, self.api_url()?, self.bot_token()?)
                .with_clock(self.clock()),
        )
    }

    /// Builds the sink. Errors name the key (`SLACK_BOT_TOKEN`, `SLACK_API_URL`, ...).
    pub fn build(self) -> ml_core::Result<SlackSink> {
        self.try_build().map_err(Into::into)
    }

    fn try_build(self) -> Result<SlackSink, SlackError> {
        if self.reconcile.page_size == 0 || self.reconcile.page_size > 999 {
            return Err(SlackError::config(
                "with_reconcile",
                "page_size must be between 1 and 999",
            ));
        }
        let client = self.build_client()?;
        let mode = self.update_mode()?;
        let join = self.join_channels()?;
        let instance = self.instance.clone().filter(|s| !s.trim().is_empty());
        Ok(SlackSink::new(
            client,
            self.renderer(),
            mode,
            self.reconcile,
            instance,
            self.unfurl,
        )
        .with_join_channels(join))
    }

    /// Builds the inbound receiver (needs `SLACK_SIGNING_SECRET`).
    pub fn build_receiver(&self) -> ml_core::Result<SlackReceiver> {
        let key = SlackConfigKey::SigningSecret.as_env();
        let secret = self
            .signing_secret
            .clone()
            .filter(|s| !s.expose_secret().trim().is_empty())
            .ok_or_else(|| SlackError::config(key, "is not set"))?;
        Ok(SlackReceiver::new(SignatureVerifier::new(&secret)).with_clock(self.clock()))
    }

    /// Builds the OAuth client (needs `SLACK_CLIENT_ID` and `SLACK_CLIENT_SECRET`).
    pub fn build_oauth(&self) -> ml_core::Result<OAuthClient> {
        Ok(OAuthClient::new(self.oauth_config()?, self.http()?).with_clock(self.clock()))
    }

    /// Builds the Socket Mode client (needs `SLACK_APP_TOKEN`).
    #[cfg(feature = "socket-mode")]
    pub fn build_socket_mode(
        &self,
        receiver: Arc<SlackReceiver>,
    ) -> ml_core::Result<crate::socket::SocketModeClient> {
        let key = SlackConfigKey::AppToken.as_env();
        let token = self
            .app_token
            .clone()
            .ok_or_else(|| SlackError::config(key, "is not set"))?;
        if !token.expose_secret().trim().starts_with("xapp-") {
            return Err(SlackError::config(key, "must be an app-level token (xapp-…)").into());
        }
        Ok(crate::socket::SocketModeClient::new(
            self.http()?,
            self.api_url()?,
            token,
            receiver,
        ))
    }

    /// How long the HTTP client waits for a whole request.
    pub fn timeout(&self) -> Duration {
        self.options.clone().unwrap_or_default().timeout()
    }
}

impl fmt::Debug for SlackBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |o: &Option<SecretString>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("SlackBuilder")
            .field("bot_token", &set(&self.bot_token))
            .field("signing_secret", &set(&self.signing_secret))
            .field("app_token", &set(&self.app_token))
            .field("client_secret", &set(&self.client_secret))
            .field("api_url", &self.api_url)
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("update_mode", &self.update_mode)
            .field("instance", &self.instance)
            .field("options", &self.options)
            .field("reconcile", &self.reconcile)
            .field("rotation", &self.rotation.is_some())
            .field("line_detail", &self.line_detail)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(r: ml_core::Result<SlackSink>) -> String {
        match r {
            Err(ml_core::Error::Config { key, message }) => {
                assert!(!message.contains("hunter2"), "{message}");
                key
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn config_errors_name_their_key() {
        assert_eq!(key_of(SlackBuilder::new().build()), "SLACK_BOT_TOKEN");
        assert_eq!(
            key_of(SlackBuilder::new().with_bot_token("xapp-1-hunter2").build()),
            "SLACK_BOT_TOKEN"
        );
        assert_eq!(
            key_of(SlackBuilder::new().with_bot_token("hunter2").build()),
            "SLACK_BOT_TOKEN"
        );
        for bad in [
            "not a url",
            "ftp://slack.com/api/",
            "http://slack.com/api/",
            "https://u:hunter2@slack.com/api/",
            "https://slack.com/api/?x=1",
        ] {
            assert_eq!(
                key_of(
                    SlackBuilder::new()
                        .with_bot_token("xoxb-hunter2")
                        .with_api_url(bad)
                        .build()
                ),
                "SLACK_API_URL",
                "{bad}"
            );
        }
        assert_eq!(
            key_of(
                SlackBuilder::new()
                    .with_bot_token("xoxb-1")
                    .with_config(SlackConfigKey::UpdateMode, "sometimes")
                    .build()
            ),
            "SLACK_UPDATE_MODE"
        );
        let err = SlackBuilder::new().build_receiver().expect_err("no secret");
        assert!(matches!(err, ml_core::Error::Config { key, .. } if key == "SLACK_SIGNING_SECRET"));
        let err = SlackBuilder::new().build_oauth().expect_err("no client");
        assert!(matches!(err, ml_core::Error::Config { key, .. } if key == "SLACK_CLIENT_ID"));
    }

    #[test]
    fn defaults_and_normalisation() {
        let b = SlackBuilder::new().with_bot_token("xoxb-hunter2");
        assert_eq!(b.api_url().expect("url").as_str(), DEFAULT_API_URL);
        let b = b.with_api_url("http://127.0.0.1:8080/api");
        assert_eq!(
            b.api_url().expect("url").as_str(),
            "http://127.0.0.1:8080/api/"
        );
        let sink = b.clone().build().expect("sink");
        assert_eq!(sink.to_string(), "Slack(127.0.0.1:8080)");
        assert_eq!(sink.update_mode(), UpdateMode::Thread);
        let shown = format!("{sink} {sink:?} {b:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(
            "bot_token"
                .to_uppercase()
                .parse::<SlackConfigKey>()
                .expect("k"),
            SlackConfigKey::BotToken
        );
        assert_eq!(
            "SLACK_API_URL".parse::<SlackConfigKey>().expect("k"),
            SlackConfigKey::ApiUrl
        );
        assert!("NOPE".parse::<SlackConfigKey>().is_err());
    }

    #[test]
    fn shared_config_plumbing() {
        use ml_core::config::MapEnv;
        let err = SlackBuilder::new()
            .with_config_str("SLACK_BOT_TOKN", "x")
            .expect_err("unknown key");
        assert!(
            matches!(&err, ml_core::Error::Config { key, .. } if key == "SLACK_BOT_TOKN"),
            "{err}"
        );
        let b = SlackBuilder::new()
            .with_config_str("bot_token", "xoxb-hunter2")
            .expect("short name")
            .with_config_str("SLACK_API_URL", "http://slack.example.com/api/")
            .expect("long name");
        assert_eq!(key_of(b.build()), "SLACK_API_URL");
        let env = MapEnv::from([
            ("SLACK_BOT_TOKEN", "xoxb-hunter2"),
            ("SLACK_SIGNING_SECRET", "hunter2-signing"),
            ("SLACK_API_URL", ""),
            ("SLACK_INSTANCE", "  "),
        ]);
        let b = SlackBuilder::from_env_with(&env);
        assert!(!format!("{b:?}").contains("hunter2"));
        // Empty variables are skipped: the default URL, no instance.
        assert_eq!(b.api_url().expect("url").as_str(), DEFAULT_API_URL);
        assert!(b.build().is_ok());
    }
}
