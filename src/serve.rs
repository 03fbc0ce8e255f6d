//! The webhook receivers of `[receivers]`, served beside the pipeline by
//! `ml-connector run` (feature `cli`): Slack Events / slash commands / interactivity, Twilio
//! status callbacks, SendGrid events, and a health endpoint for load balancers.
//!
//! Each receiver is the connector crate's own (its signature check, timestamp window,
//! replay cache and body limit); this module only mounts them on one listener.

use std::net::SocketAddr;
use std::sync::Arc;

use ml_core::config::Env;
#[cfg(any(feature = "slack", feature = "twilio"))]
use ml_core::config::interpolate::interpolate;
use ml_core::config::pipeline::ReceiversConfig;
use ml_core::{AuditStore, Error, Result};

/// The router of `[receivers]`: `GET <health_path>` (200 when the journal answers, 503
/// otherwise) and one route per configured receiver. A receiver whose connector is not
/// compiled in is an error naming its section.
///
/// `replay`: where seen requests are remembered (a journal-backed cache refuses a replay
/// after a restart too, which matters for Twilio: its callbacks carry no timestamp; the
/// PostgreSQL journal's is shared by every replica, see [`replay_cache`]); `None` keeps
/// each receiver's in-memory cache.
pub fn router(
    config: &ReceiversConfig,
    store: &Arc<dyn AuditStore>,
    env: &dyn Env,
    replay: Option<Arc<dyn ml_core::webhook::ReplayCache>>,
) -> Result<axum::Router> {
    let health_store = Arc::clone(store);
    let mut app = axum::Router::new().route(
        &config.health_path,
        axum::routing::get(move || {
            let store = Arc::clone(&health_store);
            async move {
                match store.stats().await {
                    Ok(_) => (http::StatusCode::OK, "ok"),
                    Err(_) => (http::StatusCode::SERVICE_UNAVAILABLE, "journal unavailable"),
                }
            }
        }),
    );
    if let Some(slack) = &config.slack {
        app = app.merge(slack_router(slack, env, replay.clone())?);
    }
    if let Some(twilio) = &config.twilio {
        app = app.merge(twilio_router(
            twilio,
            Arc::clone(store),
            env,
            replay.clone(),
        )?);
    }
    if let Some(sendgrid) = &config.sendgrid {
        app = app.merge(sendgrid_router(sendgrid, Arc::clone(store), env, replay)?);
    }
    Ok(app)
}

/// The webhook replay cache that goes with `journal`, for [`router`]: with
/// `url = "postgres://…"` (feature `postgres`) the journal's `webhook_seen` table on a
/// pool of its own, shared by every replica, so a request replayed to another replica
/// behind the load balancer is refused; with `sqlite = "<file>"` the file's table, kept
/// across restarts; `None` for an in-memory journal.
pub async fn replay_cache(
    journal: &ml_core::config::pipeline::JournalConfig,
    env: &dyn Env,
) -> Result<Option<Arc<dyn ml_core::webhook::ReplayCache>>> {
    crate::connectors::replay_cache(journal, env).await
}

#[cfg(feature = "slack")]
fn slack_router(
    c: &ml_core::config::pipeline::SlackReceiverConfig,
    env: &dyn Env,
    replay: Option<Arc<dyn ml_core::webhook::ReplayCache>>,
) -> Result<axum::Router> {
    let secret = interpolate("receivers.slack.signing_secret", &c.signing_secret, env)?;
    let receiver = ml_slack::SlackBuilder::new()
        .with_signing_secret(secret)
        .build_receiver()
        .map_err(|e| Error::config("receivers.slack.signing_secret", e.to_string()))?;
    let receiver = match replay {
        Some(cache) => receiver.with_replay_cache(cache),
        None => receiver,
    };
    let (receiver, mut inbound) = receiver.with_channel(1024);
    // The host's hand-off: each verified item is logged here; an application that acts on
    // commands embeds the receiver with its own handler instead.
    tokio::spawn(async move {
        while let Some(item) = inbound.recv().await {
            tracing::info!(via = ?item.via, "slack: verified inbound item");
        }
    });
    Ok(ml_slack::receiver::router(Arc::new(receiver), &c.path))
}

#[cfg(not(feature = "slack"))]
fn slack_router(
    _: &ml_core::config::pipeline::SlackReceiverConfig,
    _: &dyn Env,
    _: Option<Arc<dyn ml_core::webhook::ReplayCache>>,
) -> Result<axum::Router> {
    Err(Error::config(
        "receivers.slack",
        "this build has no Slack connector (feature `slack`)",
    ))
}

#[cfg(feature = "twilio")]
fn twilio_router(
    c: &ml_core::config::pipeline::TwilioReceiverConfig,
    store: Arc<dyn AuditStore>,
    env: &dyn Env,
    replay: Option<Arc<dyn ml_core::webhook::ReplayCache>>,
) -> Result<axum::Router> {
    let token = interpolate("receivers.twilio.auth_token", &c.auth_token, env)?;
    let public_url = interpolate("receivers.twilio.public_url", &c.public_url, env)?;
    ml_core::config::check_url("receivers.twilio.public_url", &public_url)?;
    let path = c.path_for(&public_url);
    let mut receiver = ml_twilio::TwilioStatusReceiver::new(token, public_url);
    if let Some(cache) = replay {
        receiver = receiver.with_replay_cache(cache);
    }
    Ok(ml_twilio::receiver::axum_router::twilio(
        &path,
        Arc::new(receiver),
        store,
    ))
}

#[cfg(not(feature = "twilio"))]
fn twilio_router(
    _: &ml_core::config::pipeline::TwilioReceiverConfig,
    _: Arc<dyn AuditStore>,
    _: &dyn Env,
    _: Option<Arc<dyn ml_core::webhook::ReplayCache>>,
) -> Result<axum::Router> {
    Err(Error::config(
        "receivers.twilio",
        "this build has no Twilio connector (feature `twilio`)",
    ))
}

#[cfg(feature = "twilio")]
fn sendgrid_router(
    c: &ml_core::config::pipeline::SendGridReceiverConfig,
    store: Arc<dyn AuditStore>,
    env: &dyn Env,
    replay: Option<Arc<dyn ml_core::webhook::ReplayCache>>,
) -> Result<axum::Router> {
    let key = interpolate("receivers.sendgrid.public_key", &c.public_key, env)?;
    let mut receiver = ml_twilio::SendGridEventReceiver::new(&key)
        .map_err(|e| Error::config("receivers.sendgrid.public_key", e.to_string()))?;
    if let Some(cache) = replay {
        receiver = receiver.with_replay_cache(cache);
    }
    Ok(ml_twilio::receiver::axum_router::sendgrid(
        &c.path,
        Arc::new(receiver),
        store,
    ))
}

#[cfg(not(feature = "twilio"))]
fn sendgrid_router(
    _: &ml_core::config::pipeline::SendGridReceiverConfig,
    _: Arc<dyn AuditStore>,
    _: &dyn Env,
    _: Option<Arc<dyn ml_core::webhook::ReplayCache>>,
) -> Result<axum::Router> {
    Err(Error::config(
        "receivers.sendgrid",
        "this build has no SendGrid connector (feature `twilio`)",
    ))
}

/// Binds `[receivers].listen` (its `${NAME}` references read from `env`) and serves `app`
/// until `shutdown` completes. Returns the bound address (useful with port 0) and the
/// server task.
pub async fn bind(
    config: &ReceiversConfig,
    env: &dyn Env,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listen = config.listen_addr(env)?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        Error::config(
            "receivers.listen",
            format!("cannot listen on {listen}: {e}"),
        )
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::config("receivers.listen", e.to_string()))?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "receiver server stopped");
        }
    });
    Ok((addr, task))
}

/// What connectors asked the receivers to hand them (see
/// [`connectors::inbound`](crate::connectors::inbound)), for [`router_with_hooks`].
#[derive(Clone, Default)]
pub struct ReceiverHooks {
    /// The handler of verified Slack requests (slash commands, interactivity) the
    /// connectors registered (IFS approvals), instead of only logging them.
    #[cfg(feature = "slack")]
    pub slack: Option<Arc<dyn ml_slack::receiver::SlackHandler>>,
    /// The pipeline runs against emulators: a `[receivers.slack]` signing secret whose
    /// variables are all unset is then a random one nobody knows (every request is
    /// refused as forged) instead of an error, so the sample files check and run with
    /// nothing set.
    pub sandbox: bool,
}

impl std::fmt::Debug for ReceiverHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ReceiverHooks");
        #[cfg(feature = "slack")]
        d.field("slack", &self.slack.is_some());
        d.field("sandbox", &self.sandbox).finish()
    }
}

/// The router of [`router_with_hooks`], with what the host needs around it.
pub struct Served {
    /// The router.
    pub router: axum::Router,
    /// Lines for the operator (a receiver left without a signing secret in the sandbox).
    pub notes: Vec<String>,
    #[cfg(feature = "slack")]
    slack: Option<Arc<ml_slack::SlackReceiver>>,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served").finish_non_exhaustive()
    }
}

impl Served {
    /// Waits until the Slack handler work started so far has ended (a host stopping
    /// drains it, so an approval acknowledged to Slack is carried out and answered).
    #[cfg_attr(not(feature = "slack"), allow(clippy::unused_async))]
    pub async fn idle(&self) {
        #[cfg(feature = "slack")]
        if let Some(r) = &self.slack {
            r.idle().await;
        }
    }
}

/// Like [`router`], with the connectors' `hooks`: verified Slack requests go to
/// `hooks.slack` (the receiver keeps its checks, retry dedupe and 3-second ack).
pub fn router_with_hooks(
    config: &ReceiversConfig,
    store: &Arc<dyn AuditStore>,
    env: &dyn Env,
    replay: Option<Arc<dyn ml_core::webhook::ReplayCache>>,
    hooks: &ReceiverHooks,
) -> Result<Served> {
    let mut rest = config.clone();
    let mut notes = Vec::new();
    if hooks.sandbox {
        // Against emulators with nothing set, a status receiver has no secret to verify
        // with: it is left out (said so) rather than failing the sample file.
        if rest
            .twilio
            .as_ref()
            .is_some_and(|c| all_unset(&c.auth_token, env))
        {
            rest.twilio = None;
            notes.push(
                "receivers.twilio: not served (sandbox): no auth token is set; set it and \
                 the public URL to receive Twilio's status callbacks"
                    .to_owned(),
            );
        }
        if rest
            .sendgrid
            .as_ref()
            .is_some_and(|c| all_unset(&c.public_key, env))
        {
            rest.sendgrid = None;
            notes.push(
                "receivers.sendgrid: not served (sandbox): no webhook public key is set; set \
                 it to receive SendGrid's event webhook"
                    .to_owned(),
            );
        }
    }
    let Some(slack) = rest.slack.take() else {
        return Ok(Served {
            router: router(&rest, store, env, replay)?,
            notes,
            #[cfg(feature = "slack")]
            slack: None,
        });
    };
    let app = router(&rest, store, env, replay.clone())?;
    let mut served = hooked_slack_router(&slack, env, replay, hooks, app)?;
    notes.append(&mut served.notes);
    served.notes = notes;
    Ok(served)
}

/// Whether `raw` names `${…}` variables and none of them is set.
fn all_unset(raw: &str, env: &dyn Env) -> bool {
    let vars = ml_core::config::interpolate::required_vars(raw);
    !vars.is_empty()
        && vars
            .iter()
            .all(|v| env.var(v).is_none_or(|x| x.trim().is_empty()))
}

#[cfg(feature = "slack")]
fn hooked_slack_router(
    c: &ml_core::config::pipeline::SlackReceiverConfig,
    env: &dyn Env,
    replay: Option<Arc<dyn ml_core::webhook::ReplayCache>>,
    hooks: &ReceiverHooks,
    app: axum::Router,
) -> Result<Served> {
    let mut notes = Vec::new();
    let secret: secrecy::SecretString = if hooks.sandbox && all_unset(&c.signing_secret, env) {
        notes.push(
            "receivers.slack: no signing secret set (sandbox): every Slack request is refused; \
             set the signing secret to try commands and buttons"
                .to_owned(),
        );
        // Random and never shown: nothing can be signed with it.
        ml_core::credential::envelope::MasterKey::generate().to_base64()
    } else {
        interpolate("receivers.slack.signing_secret", &c.signing_secret, env)?.into()
    };
    let receiver = ml_slack::SlackBuilder::new()
        .with_signing_secret(secret)
        .build_receiver()
        .map_err(|e| Error::config("receivers.slack.signing_secret", e.to_string()))?;
    let receiver = match replay {
        Some(cache) => receiver.with_replay_cache(cache),
        None => receiver,
    };
    let receiver = if let Some(h) = &hooks.slack {
        receiver.with_handler(Arc::clone(h))
    } else {
        let (receiver, mut inbound) = receiver.with_channel(1024);
        tokio::spawn(async move {
            while let Some(item) = inbound.recv().await {
                tracing::info!(via = ?item.via, "slack: verified inbound item");
            }
        });
        receiver
    };
    let receiver = Arc::new(receiver);
    Ok(Served {
        router: app.merge(ml_slack::receiver::router(Arc::clone(&receiver), &c.path)),
        notes,
        slack: Some(receiver),
    })
}

#[cfg(not(feature = "slack"))]
fn hooked_slack_router(
    c: &ml_core::config::pipeline::SlackReceiverConfig,
    env: &dyn Env,
    replay: Option<Arc<dyn ml_core::webhook::ReplayCache>>,
    _: &ReceiverHooks,
    _: axum::Router,
) -> Result<Served> {
    slack_router(c, env, replay).map(|router| Served {
        router,
        notes: Vec::new(),
    })
}
