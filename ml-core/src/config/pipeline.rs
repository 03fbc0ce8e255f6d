//! The pipeline description: what a TOML file such as
//! `examples/config/oracle_fusion_to_slack.toml` says.
//!
//! ```toml
//! [journal]
//! sqlite = "${ML_AUDIT_DB:-ml-audit.db}"
//!
//! [sources.oracle]
//! connector = "oracle-fusion"
//! sandbox = "auto"                      # the in-process emulator when the ${…} are unset
//! settings = { url = "${ORACLE_FUSION_URL}", user = "${ORACLE_FUSION_USER}",
//!              password = "${ORACLE_FUSION_PASSWORD}", cost_center_segment = "1" }
//!
//! [sinks.slack]
//! connector = "slack"
//! settings = { bot_token = "${SLACK_BOT_TOKEN}" }
//! channels = { finance = "C0FINANCE1", procurement = "#ap-invoices" }
//! render = { line_detail = ["finance"] }
//!
//! [[streams]]
//! name = "invoices"
//! source = "oracle"
//! resource = "invoices"
//! schedule = { every = "10m" }
//!
//! [routes]
//! mode = "all_match"
//! [[routes.rules]]
//! name = "large invoices"
//! when = [{ kind = ["supplier_invoice"] },
//!         { amount_at_least = { amount = "10000", currency = "USD" } }]
//! to = ["slack:finance"]
//! ```
//!
//! * Every section refuses unknown keys; every error names its key path
//!   (`streams[2].schedule`, `sinks.slack.connector`).
//! * `settings` are the connector builder's own keys (its environment variables, or their
//!   short form: `bot_token` for `SLACK_BOT_TOKEN`); unknown ones are refused. Values may
//!   use `${NAME}` ([`interpolate`](super::interpolate::interpolate)).
//! * A destination `sink:alias` whose alias is a key of the sink's `channels` or
//!   `recipients` goes to the mapped address (a channel id or `#name`, a phone number, an
//!   email address); any other address is used as written.
//! * Schedules: `{ every = "10m" }` (1 s at least), business hours, `daily_at` or `cron`
//!   ([`ScheduleSpec`]). The documented default for ERP
//!   streams is 5 to 15 minutes.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::Env;
use super::interpolate::required_vars;
use crate::error::{Error, Result};
use crate::routing::{MatchMode, Router, Rule};
use crate::schedule::{Schedule, ScheduleSpec};
use crate::sink::Destination;

/// The smallest polling interval a configuration accepts.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A whole pipeline. See the [module documentation](self).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Where the journal lives.
    pub journal: JournalConfig,
    /// Named source connections (`[sources.oracle]`), used by streams.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// Named sinks (`[sinks.slack]`); the name is the `sink` of a destination.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,
    /// The streams, polled on their schedules.
    #[serde(default)]
    pub streams: Vec<StreamConfig>,
    /// The routing rules.
    #[serde(default)]
    pub routes: RoutesConfig,
    /// Inbound webhook receivers served beside the pipeline (`[receivers]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receivers: Option<ReceiversConfig>,
    /// Where the per-destination rate budgets live (`[limiter]`); absent: in process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limiter: Option<LimiterConfig>,
}

/// `[limiter]`: a rate limiter shared by several replicas, e.g.
/// `url = "redis://127.0.0.1:6379"` (needs a limiter backend compiled in: the facade's
/// `redis` feature). Without it each process paces on its own, which is right for one
/// replica and multiplies every channel's budget by the number of replicas otherwise.
/// The quotas are the sinks' own (`per_address_per_second`, or the connector's default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimiterConfig {
    /// The backend's URL (may use `${NAME}`).
    pub url: String,
    /// The backend's own settings (its environment variables or their short form, such as
    /// `fallback = "local:3"` for Redis); unknown ones are refused by the backend.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// `[journal]`: exactly one of `sqlite` (a file path) or `url` (`postgres://…`, for the
/// journal backends that take a URL).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// A SQLite file (may use `${NAME:-default}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<String>,
    /// A database URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// When a connector uses its in-process emulator instead of the real system.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    /// Always the real system (a missing `${NAME}` is an error).
    #[default]
    Never,
    /// The emulator when none of the settings' `${NAME}`s is set (of those with a default,
    /// the endpoints: `…_URL`) and no `${credential:NAME}` is named; the real system when every one they
    /// require is set; an error naming the first missing one when only some are. A sink
    /// is never run against its emulator this way while a source of the file reads a real
    /// system (its records would be lost there): that is an error too.
    Auto,
    /// Always the emulator (needs the `sandbox` feature of the facade).
    Always,
}

/// A connector's settings: its builder keys to values (strings, numbers or booleans).
pub type Settings = BTreeMap<String, SettingValue>;

/// One setting's value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SettingValue {
    /// Text (may use `${NAME}`).
    Text(String),
    /// An integer.
    Integer(i64),
    /// A number.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl fmt::Display for SettingValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(s) => f.write_str(s),
            Self::Integer(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// `[sources.<name>]`: one connection to a source system, shared by its streams.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The connector (`oracle-fusion`, `memory`, ...), as a [`SourceFactory`] names it.
    ///
    /// [`SourceFactory`]: super::assemble::SourceFactory
    pub connector: String,
    /// Real system or emulator.
    #[serde(default)]
    pub sandbox: SandboxMode,
    /// The connector builder's settings.
    #[serde(default)]
    pub settings: Settings,
}

/// `[sinks.<name>]`: one sink, registered under its name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// The connector (`slack`, `twilio-sms`, `sendgrid-email`, `memory`).
    pub connector: String,
    /// Real system or emulator.
    #[serde(default)]
    pub sandbox: SandboxMode,
    /// The connector builder's settings.
    #[serde(default)]
    pub settings: Settings,
    /// Channel aliases (Slack): alias -> `#name` or channel id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channels: BTreeMap<String, String>,
    /// Recipient aliases (SMS, email): alias -> phone number or email address.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub recipients: BTreeMap<String, String>,
    /// How messages are rendered.
    #[serde(default, skip_serializing_if = "RenderConfig::is_default")]
    pub render: RenderConfig,
    /// Sends per second to one address (channel, number); unset: the connector's default
    /// (Slack: 1 per channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_address_per_second: Option<u32>,
}

impl SinkConfig {
    /// The address an alias stands for (the alias itself when it is none).
    pub fn address<'a>(&'a self, alias: &'a str) -> &'a str {
        self.channels
            .get(alias)
            .or_else(|| self.recipients.get(alias))
            .map_or(alias, String::as_str)
    }
}

/// `render = { … }` of a sink.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderConfig {
    /// Which destinations see document lines (GL detail): aliases or addresses. Unset: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_detail: Option<Vec<String>>,
}

impl RenderConfig {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// `[[streams]]`: a source resource polled on a schedule.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// The stream's name (unique; it keys the journal).
    pub name: String,
    /// The `[sources.<name>]` it reads from.
    pub source: String,
    /// The connector's resource (`invoices`, `purchaseOrders`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// When it is polled.
    pub schedule: Schedule,
    /// Where a stream that never ran starts: a time (RFC 3339), `"now"` (only what changes
    /// from the first run on), or a span back from when the file is loaded (`"7d ago"`,
    /// `"-12h"`); unset: the beginning (the whole history is sent on the first run).
    /// Ignored once the stream has a saved position.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "start_at_de"
    )]
    pub start_at: Option<Timestamp>,
    /// The stream's former name, after a rename in the file: at start, the journal's
    /// stream of that name becomes this one (position, records, history), so it goes on
    /// where it was instead of starting over and sending its whole history again. Done
    /// once (later starts find it done); harmless to leave in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
    /// The cursor's re-read window (`"5m"`); unset: the connector's default.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "jiff::fmt::serde::unsigned_duration::friendly::compact::optional"
    )]
    pub overlap: Option<Duration>,
    /// Per-stream connector settings (override the source's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: Settings,
}

/// `[routes]`: today's [`RouterSpec`](crate::routing::RouterSpec).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesConfig {
    /// How rules combine (default `all_match`).
    #[serde(default)]
    pub mode: MatchMode,
    /// The rules, in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// `[receivers]`: webhook receivers served by `ml-connector run` on one listen address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiversConfig {
    /// The listen address (`0.0.0.0:8080`, `127.0.0.1:0`); `${NAME}` and
    /// `${NAME:-default}` are read from the environment
    /// ([`listen_addr`](Self::listen_addr)).
    pub listen: String,
    /// The health endpoint for load balancers (default `/healthz`).
    #[serde(default = "default_health")]
    pub health_path: String,
    /// Slack Events API, slash commands and interactivity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackReceiverConfig>,
    /// Twilio message status callbacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio: Option<TwilioReceiverConfig>,
    /// SendGrid event webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sendgrid: Option<SendGridReceiverConfig>,
}

impl ReceiversConfig {
    /// The listen address with `${NAME}` references resolved from `env`, checked to be an
    /// IP address and port.
    pub fn listen_addr(&self, env: &dyn Env) -> Result<std::net::SocketAddr> {
        let raw = super::interpolate::interpolate("receivers.listen", &self.listen, env)?;
        raw.trim().parse().map_err(|e| {
            Error::config(
                "receivers.listen",
                format!("`{raw}` is not an address and port: {e}"),
            )
        })
    }
}

fn default_health() -> String {
    "/healthz".to_owned()
}

/// `[receivers.slack]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackReceiverConfig {
    /// The path (default `/slack/events`; commands and interactivity post there too).
    #[serde(default = "default_slack_path")]
    pub path: String,
    /// The signing secret, normally `${SLACK_SIGNING_SECRET}`.
    pub signing_secret: String,
}

fn default_slack_path() -> String {
    "/slack/events".to_owned()
}

/// `[receivers.twilio]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioReceiverConfig {
    /// The path served. Default: the path of `public_url` (the URL Twilio calls, so no
    /// proxy rewrite is needed), or `/twilio/status` when that has none. Set it when a
    /// proxy maps the public path onto another one.
    #[serde(default)]
    pub path: Option<String>,
    /// The Auth Token that signs callbacks, normally `${TWILIO_AUTH_TOKEN}`.
    pub auth_token: String,
    /// The public URL Twilio calls (and signs), as given to the SMS sink.
    pub public_url: String,
}

impl TwilioReceiverConfig {
    /// The path served, given `public_url` as resolved from the environment (see
    /// [`Self::path`]).
    pub fn path_for(&self, public_url: &str) -> String {
        if let Some(p) = &self.path {
            return p.clone();
        }
        match url::Url::parse(public_url) {
            Ok(u) if u.path() != "/" && !u.path().is_empty() => u.path().to_owned(),
            _ => "/twilio/status".to_owned(),
        }
    }
}

/// `[receivers.sendgrid]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendGridReceiverConfig {
    /// The path (default `/sendgrid/events`).
    #[serde(default = "default_sendgrid_path")]
    pub path: String,
    /// The webhook verification public key (base64), normally
    /// `${SENDGRID_WEBHOOK_PUBLIC_KEY}`.
    pub public_key: String,
}

fn default_sendgrid_path() -> String {
    "/sendgrid/events".to_owned()
}

impl PipelineConfig {
    /// Parses and checks a TOML description (no environment is read: `${NAME}` stays as
    /// written until the pipeline is assembled). Errors name the key path.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| Error::config("(file)", located(text, &e)))?;
        let config: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." {
                "(file)".to_owned()
            } else {
                path
            };
            let mut message = located(text, e.inner());
            if path.contains("schedule")
                && e.inner()
                    .span()
                    .is_some_and(|r| text.get(r).is_some_and(|v| v.contains("${")))
            {
                message.push_str(
                    "; `${NAME}` in a schedule is read by `from_toml_str_with_env` / \
                     `from_file_with_env` (the command line does), not here: write the \
                     schedule itself (e.g. `every = \"10m\"`) or use those",
                );
            }
            Error::config(path, message)
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a file; errors name the file and the key path.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        Self::read_file(path, None)
    }

    /// As [`Self::from_toml_str`], with `${NAME}` (and `${NAME:-default}`) in stream
    /// schedules read from `env` first (`schedule = { every = "${POLL_EVERY:-10m}" }`):
    /// schedules are parsed with the file, before connectors read their settings, so
    /// they are the one place outside settings where a file may read the environment.
    pub fn from_toml_str_with_env(text: &str, env: &(impl Env + ?Sized)) -> Result<Self> {
        Self::from_toml_str(&expand_schedules(text, env)?)
    }

    /// As [`Self::from_file`], with schedules read as [`Self::from_toml_str_with_env`].
    pub fn from_file_with_env(path: &std::path::Path, env: &dyn Env) -> Result<Self> {
        Self::read_file(path, Some(env))
    }

    fn read_file(path: &std::path::Path, env: Option<&dyn Env>) -> Result<Self> {
        let in_file = |e: Error| match e {
            Error::Config { key, message } => {
                Error::config(format!("{}: {key}", path.display()), message)
            }
            other => other,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(path.display().to_string(), e.to_string()))?;
        let text = match env {
            Some(env) => expand_schedules(&text, env).map_err(in_file)?,
            None => text,
        };
        Self::from_toml_str(&text).map_err(in_file)
    }

    /// The TOML form (with `${NAME}` references as written, never their values).
    pub fn to_toml_string(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::config("(file)", e.to_string()))
    }

    /// Checks what serde cannot: one journal, unique stream names, known sources, intervals
    /// of a second at least, rules sending to configured sinks.
    pub fn validate(&self) -> Result<()> {
        match (&self.journal.sqlite, &self.journal.url) {
            (Some(_), Some(_)) => {
                return Err(Error::config("journal", "set `sqlite` or `url`, not both"));
            }
            (None, None) => {
                return Err(Error::config("journal", "needs `sqlite` (a file) or `url`"));
            }
            _ => {}
        }
        let mut names = HashSet::new();
        for (i, s) in self.streams.iter().enumerate() {
            let at = |k: &str| format!("streams[{i}].{k}");
            if s.name.trim().is_empty() {
                return Err(Error::config(at("name"), "a stream needs a name"));
            }
            if !names.insert(s.name.as_str()) {
                return Err(Error::config(
                    at("name"),
                    format!("another stream is also named `{}`", s.name),
                ));
            }
            if !self.sources.contains_key(&s.source) {
                return Err(Error::config(
                    at("source"),
                    format!(
                        "no `[sources.{}]` (configured: {})",
                        s.source,
                        list(self.sources.keys())
                    ),
                ));
            }
            if let Some(old) = &s.renamed_from
                && self.streams[..i]
                    .iter()
                    .any(|o| o.renamed_from.as_ref() == Some(old))
            {
                return Err(Error::config(
                    at("renamed_from"),
                    format!("another stream was also renamed from `{old}`"),
                ));
            }
            if let Some(old) = &s.renamed_from
                && (old == &s.name || self.streams.iter().any(|o| &o.name == old))
            {
                return Err(Error::config(
                    at("renamed_from"),
                    format!("`{old}` is a stream of this file, not a former name"),
                ));
            }
            if let ScheduleSpec::Every { interval, .. } = s.schedule.spec()
                && interval < MIN_INTERVAL
            {
                return Err(Error::config(
                    at("schedule"),
                    "the polling interval must be at least 1s",
                ));
            }
        }
        self.router().map_err(|e| match e {
            Error::InvalidRule { rule, message } => {
                let i = self
                    .routes
                    .rules
                    .iter()
                    .position(|r| r.name == rule)
                    .map_or_else(String::new, |i| format!("[{i}]"));
                Error::config(format!("routes.rules{i}"), format!("`{rule}`: {message}"))
            }
            other => other,
        })?;
        for (i, rule) in self.routes.rules.iter().enumerate() {
            for (j, to) in rule.to.iter().enumerate() {
                let d = Destination::parse(to).map_err(|e| {
                    Error::config(format!("routes.rules[{i}].to[{j}]"), e.to_string())
                })?;
                if !self.sinks.contains_key(&d.sink) {
                    return Err(Error::config(
                        format!("routes.rules[{i}].to[{j}]"),
                        format!(
                            "no `[sinks.{}]` (configured: {})",
                            d.sink,
                            list(self.sinks.keys())
                        ),
                    ));
                }
            }
        }
        if let Some(r) = &self.receivers {
            // With `${NAME}` in it, the address is known (and checked) when it is resolved.
            if required_vars(&r.listen).is_empty() && !r.listen.contains("${") {
                r.listen.parse::<std::net::SocketAddr>().map_err(|e| {
                    Error::config("receivers.listen", format!("`{}`: {e}", r.listen))
                })?;
            }
        }
        Ok(())
    }

    /// The router, with every destination alias replaced by its sink's address.
    pub fn router(&self) -> Result<Router> {
        let rules = self
            .routes
            .rules
            .iter()
            .map(|r| Rule {
                to: r.to.iter().map(|d| self.resolve_destination(d)).collect(),
                ..r.clone()
            })
            .collect();
        Router::new(self.routes.mode, rules)
    }

    /// Every destination the file names, resolved and each once: the routes' `to` and the
    /// sinks' `channels` and `recipients` (what `check` looks at before the first send).
    pub fn destinations(&self) -> Vec<Destination> {
        let routed = self
            .routes
            .rules
            .iter()
            .flat_map(|r| &r.to)
            .filter_map(|d| Destination::parse(&self.resolve_destination(d)).ok());
        let aliased = self.sinks.iter().flat_map(|(name, cfg)| {
            cfg.channels
                .values()
                .chain(cfg.recipients.values())
                .map(move |a| Destination::new(name.clone(), a.clone()))
        });
        let mut all: Vec<Destination> = routed.chain(aliased).collect();
        all.sort_by(|a, b| (&a.sink, &a.address).cmp(&(&b.sink, &b.address)));
        all.dedup();
        all
    }

    /// `sink:alias` -> `sink:address` (unchanged when the alias is none).
    pub fn resolve_destination(&self, destination: &str) -> String {
        match destination.split_once(':') {
            Some((sink, alias)) => match self.sinks.get(sink) {
                Some(cfg) => format!("{sink}:{}", cfg.address(alias)),
                None => destination.to_owned(),
            },
            None => destination.to_owned(),
        }
    }
}

fn list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

/// Whether a section with `mode` and `settings` runs against its emulator: see
/// [`SandboxMode`]. `path` names the section in errors (`sources.oracle`).
pub fn use_sandbox(
    path: &str,
    mode: SandboxMode,
    settings: &Settings,
    env: &(impl Env + ?Sized),
) -> Result<bool> {
    match mode {
        SandboxMode::Never => Ok(false),
        SandboxMode::Always => Ok(true),
        SandboxMode::Auto => {
            // Any required variable set, an endpoint with a default set (`SLACK_API_URL`
            // alone points at a real system; a local listen address does not), or any
            // stored credential named makes the section real; a real section needs every
            // variable it requires.
            let mut set = Vec::new();
            let mut unset = Vec::new();
            for (key, value) in settings {
                if let SettingValue::Text(raw) = value {
                    for (var, required) in super::interpolate::referenced_vars(raw) {
                        let counts = required || var.ends_with("_URL");
                        if var.starts_with(super::interpolate::CREDENTIAL_PREFIX)
                            || (counts && env.var(&var).is_some_and(|v| !v.trim().is_empty()))
                        {
                            set.push(var);
                        } else if required {
                            unset.push((key.clone(), var));
                        }
                    }
                }
            }
            match (set.is_empty(), unset.first()) {
                (_, None) => Ok(set.is_empty()),
                (true, Some(_)) => Ok(true),
                (false, Some((key, var))) => Err(Error::config(
                    format!("{path}.settings.{key}"),
                    format!(
                        "environment variable `{var}` is not set (others of this connector are: set all of them for the real system, or none for the sandbox)"
                    ),
                )),
            }
        }
    }
}

/// Reads `start_at` (see [`StreamConfig::start_at`]).
fn start_at_de<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Timestamp>, D::Error> {
    let text = String::deserialize(d)?;
    parse_start_at(&text, Timestamp::now())
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// `start_at` relative to `now`: a time, `now`, or a span back (`7d ago`, `-12h`).
/// A TOML error's message with where it is in the file (`line 12, column 3`), when known:
/// an operator's editor goes there, where a key path alone may be ambiguous.
/// `text` with every `${NAME}` in a stream's schedule replaced from `env`, line by line
/// (inline tables are one line in TOML, so line numbers stay those of the file): the
/// `schedule = { ... }` line of a `[[streams]]` entry, and the lines of a
/// `[streams.schedule]` table. Errors name `streams[i].schedule`.
fn expand_schedules(text: &str, env: &(impl Env + ?Sized)) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    // The index of the `[[streams]]` entry the line is in, and whether it is in that
    // entry's `[streams.schedule]` table.
    let mut stream: Option<usize> = None;
    let mut streams = 0;
    let mut in_table = false;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('[') {
            let header: String = t.chars().filter(|c| !c.is_whitespace()).collect();
            in_table = false;
            if header.starts_with("[[streams]]") {
                stream = Some(streams);
                streams += 1;
            } else if header.starts_with("[streams.schedule]") {
                in_table = stream.is_some();
            } else if !header.starts_with("[streams.") {
                stream = None;
            }
        }
        let schedule_line = in_table
            || t.strip_prefix("schedule")
                .is_some_and(|rest| rest.trim_start().starts_with('='));
        match stream {
            Some(i) if schedule_line && line.contains("${") => {
                let path = format!("streams[{i}].schedule");
                out.push_str(&super::interpolate::interpolate(&path, line, env)?);
            }
            _ => out.push_str(line),
        }
    }
    Ok(out)
}

fn located(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    let Some(span) = e.span() else {
        return message.to_owned();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{message} (line {line}, column {column})")
}

pub(crate) fn parse_start_at(text: &str, now: Timestamp) -> std::result::Result<Timestamp, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts);
    }
    let back = t
        .strip_suffix("ago")
        .map(str::trim)
        .or_else(|| t.strip_prefix('-').map(str::trim));
    let span = back.and_then(|b| b.parse::<jiff::Span>().ok());
    match span {
        Some(span) if !span.is_negative() => now
            .to_zoned(jiff::tz::TimeZone::UTC)
            .checked_sub(span)
            .map(|z| z.timestamp())
            .map_err(|e| format!("`{t}`: {e}")),
        _ => Err(format!(
            "`{t}` is neither a time (2026-01-01T00:00:00Z), `now`, nor a span back (`7d ago`, `-12h`)"
        )),
    }
}
