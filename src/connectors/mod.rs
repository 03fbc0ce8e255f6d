//! The connectors compiled into this build, as configuration factories: a
//! [`PipelineConfig`] names them by `connector = "…"`.
//!
//! | connector | kind | feature |
//! |---|---|---|
//! | `memory` | source, sink; journal `url = "memory:"` | (always) |
//! | `oracle-fusion` | source | `oracle-fusion` |
//! | `slack` | sink | `slack` |
//! | `twilio-sms`, `sendgrid-email` | sinks | `twilio` |
//! | journal `sqlite = "…"` | journal | `store` |
//! | journal `url = "postgres://…"` | journal shared by replicas | `postgres` |
//! | `[limiter] url = "redis://…"` | rate limiter shared by replicas | `redis` |
//!
//! With the `sandbox` feature, a section with `sandbox = "auto"` and none of its `${NAME}`
//! variables set runs against the in-process emulator (Oracle with demo data, Slack with
//! the configured channels, Twilio, SendGrid) and says so.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ml_connector::Result<()> {
//! use ml_connector::config::{MapEnv, PipelineConfig};
//!
//! let config = PipelineConfig::from_toml_str(r#"
//!     [journal]
//!     url = "memory:"
//!     [sinks.chat]
//!     connector = "memory"
//! "#)?;
//! let assembled = ml_connector::connectors::assemble(&config, &MapEnv::new()).await?;
//! assert!(assembled.pipeline.streams().is_empty());
//! # Ok(()) }
//! ```

#[cfg(all(feature = "sandbox", feature = "oracle-fusion"))]
pub mod demo;
#[cfg(feature = "ifs")]
mod ifs;
pub mod inbound;
#[cfg(feature = "oracle-fusion")]
mod oracle;
#[cfg(feature = "sage-x3")]
mod sage_x3;
#[cfg(feature = "sap-agent")]
mod sap_agent;
#[cfg(feature = "sap-ecc")]
mod sap_ecc;
#[cfg(feature = "slack")]
mod slack;
#[cfg(feature = "store")]
mod store;
#[cfg(any(
    feature = "oracle-fusion",
    feature = "sap-ecc",
    feature = "ifs",
    feature = "sage-x3"
))]
mod streams;
#[cfg(feature = "cli")]
pub(crate) use store::replay_cache;
#[cfg(feature = "twilio")]
mod twilio;

use std::collections::BTreeMap;
use std::path::Path;

use ml_core::config::{Assembled, Env, PipelineConfig, Registry};
use ml_core::{Error, Result};

/// Every connector compiled into this build.
pub fn registry() -> Registry {
    #[allow(unused_mut)]
    let mut r = Registry::new().with_memory(BTreeMap::new());
    #[cfg(feature = "store")]
    {
        r = r.with_journal(std::sync::Arc::new(store::SqliteJournal));
    }
    #[cfg(feature = "postgres")]
    {
        r = r.with_journal(std::sync::Arc::new(store::PostgresJournal));
    }
    #[cfg(feature = "redis")]
    {
        r = r.with_limiter(std::sync::Arc::new(store::RedisLimiter));
    }
    #[cfg(feature = "oracle-fusion")]
    {
        r = r.with_source(std::sync::Arc::new(oracle::OracleFactory));
    }
    #[cfg(feature = "slack")]
    {
        r = r.with_sink(std::sync::Arc::new(slack::SlackFactory { hooks: None }));
    }
    #[cfg(feature = "twilio")]
    {
        r = r
            .with_sink(std::sync::Arc::new(twilio::SmsFactory))
            .with_sink(std::sync::Arc::new(twilio::EmailFactory));
    }
    #[cfg(feature = "sap-ecc")]
    {
        r = sap_ecc::register(r);
    }
    #[cfg(feature = "sap-agent")]
    {
        r = sap_agent::register(r);
    }
    #[cfg(feature = "ifs")]
    {
        r = ifs::register(r);
    }
    #[cfg(feature = "sage-x3")]
    {
        r = sage_x3::register(r);
    }
    r
}

/// Every connector compiled in (see [`registry`]), the sources that act on inbound
/// requests (IFS approvals from Slack) registering their routes in `hooks`.
pub fn registry_with_hooks(hooks: &inbound::InboundHooks) -> Registry {
    #[allow(unused_mut)]
    let mut r = registry();
    #[cfg(feature = "ifs")]
    {
        r = ifs::register_with_hooks(r, hooks);
    }
    #[cfg(feature = "slack")]
    {
        r = r.with_sink(std::sync::Arc::new(slack::SlackFactory {
            hooks: Some(hooks.clone()),
        }));
    }
    #[cfg(not(any(feature = "ifs", feature = "slack")))]
    let _ = hooks;
    r
}

/// Like [`assemble`], also returning what the connectors asked the receivers to route
/// to them (`ml-connector run` mounts it behind `[receivers.slack]`).
pub async fn assemble_with_hooks(
    config: &PipelineConfig,
    env: &dyn Env,
) -> Result<(Assembled, inbound::InboundHooks)> {
    let hooks = inbound::InboundHooks::new();
    let assembled = registry_with_hooks(&hooks)
        .assemble(config, env, |b| b)
        .await?;
    Ok((assembled, hooks))
}

/// Assembles `config` with every connector compiled in (see [`registry`]).
pub async fn assemble(config: &PipelineConfig, env: &dyn Env) -> Result<Assembled> {
    registry().assemble(config, env, |b| b).await
}

/// Reads a TOML file (schedules may read `env`) and assembles it.
pub async fn load(path: &Path, env: &dyn Env) -> Result<Assembled> {
    let config = PipelineConfig::from_file_with_env(path, env)?;
    assemble(&config, env).await
}

/// A connector error, re-keyed under the configuration path it came from: the builder
/// names `ORACLE_FUSION_TOKEN_URL`, the user reads `sources.oracle.settings.ORACLE_FUSION_TOKEN_URL`.
#[cfg_attr(
    not(any(all(feature = "ifs", feature = "slack"), feature = "sap-agent")),
    allow(dead_code)
)]
pub(crate) fn under(path: &str) -> impl Fn(Error) -> Error + '_ {
    under_applied(path, &[])
}

/// Like [`under`], naming the setting as the file wrote it when the builder's key is one
/// of `applied` (environment name, setting path): `sources.oracle.settings.url`.
pub(crate) fn under_applied<'a>(
    path: &'a str,
    applied: &'a [(&'static str, String)],
) -> impl Fn(Error) -> Error + 'a {
    move |e| match e {
        Error::Config { key, message } => match applied.iter().find(|(env, _)| *env == key) {
            Some((_, at)) => Error::config(at, message),
            None => Error::config(format!("{path}.settings.{key}"), message),
        },
        other => other,
    }
}

/// A builder's configuration error, re-keyed to the configuration path of the section it
/// came from (the message is kept; other errors pass through).
#[cfg_attr(
    not(any(
        feature = "oracle-fusion",
        feature = "sap-ecc",
        feature = "sap-agent",
        feature = "ifs",
        feature = "sage-x3",
        feature = "twilio"
    )),
    allow(dead_code)
)]
pub(crate) fn rekey(path: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        Error::Config { message, .. } => Error::config(path, message),
        other => other,
    }
}

/// The error for `sandbox` when this build has no emulators.
#[cfg_attr(
    any(
        feature = "sandbox",
        not(any(feature = "oracle-fusion", feature = "slack", feature = "twilio"))
    ),
    allow(dead_code)
)]
pub(crate) fn no_sandbox(path: &str) -> Error {
    Error::config(
        format!("{path}.sandbox"),
        "no credentials are set and this build has no sandbox (build with the `sandbox` feature, or set the ${…} variables)",
    )
}
