//! Inbound hooks: what a connector asks the receivers of `[receivers]` to hand it.
//!
//! A connector that acts on Slack requests (IFS approvals: `/approve-invoice` and the
//! Approve / Reject buttons) registers a [`SlackRoute`] while its section is opened: the
//! slash commands and button `action_id`s it handles, and how to make its handler once
//! the journal is open. `ml-connector run` builds one [`SlackDispatcher`] from every route
//! and mounts it as the handler of the Slack receiver, which keeps its guarantees
//! (signature, window, replay cache, retry dedupe, ack within 3 s, work on a task);
//! requests no route claims are logged, as before. The receivers module knows no
//! connector: the coupling is this module's types only.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ml_connector::Result<()> {
//! use ml_connector::config::{MapEnv, PipelineConfig};
//! let config = PipelineConfig::from_toml_str("[journal]\nurl = \"memory:\"")?;
//! let (_assembled, hooks) =
//!     ml_connector::connectors::assemble_with_hooks(&config, &MapEnv::new()).await?;
//! assert!(hooks.is_empty(), "no connector asked for Slack requests");
//! # Ok(()) }
//! ```

use std::sync::Arc;
#[cfg(feature = "slack")]
use std::sync::{Mutex, PoisonError};

use ml_core::AuditStore;
#[cfg(feature = "slack")]
use ml_core::Result;

/// What a route's handler is made from, once the pipeline's journal is open.
#[derive(Clone)]
pub struct HookContext {
    /// The pipeline's journal (approval decisions are audited there).
    pub journal: Arc<dyn AuditStore>,
}

/// Makes a route's handler.
#[cfg(feature = "slack")]
pub type MakeSlackHandler =
    Box<dyn FnOnce(&HookContext) -> Result<Arc<dyn ml_slack::receiver::SlackHandler>> + Send>;

/// Slack requests one connector handles.
#[cfg(feature = "slack")]
pub struct SlackRoute {
    /// Who registered it (`sources.ifs`), for logs and errors.
    pub owner: String,
    /// Slash commands (`/approve-invoice`).
    pub commands: Vec<String>,
    /// Block action ids (buttons).
    pub action_ids: Vec<String>,
    make: MakeSlackHandler,
}

#[cfg(feature = "slack")]
impl SlackRoute {
    /// A route of `owner` for `commands` and `action_ids`, its handler made by `make`.
    pub fn new(
        owner: impl Into<String>,
        commands: Vec<String>,
        action_ids: Vec<String>,
        make: MakeSlackHandler,
    ) -> Self {
        Self {
            owner: owner.into(),
            commands,
            action_ids,
            make,
        }
    }
}

#[cfg(feature = "slack")]
impl std::fmt::Debug for SlackRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackRoute")
            .field("owner", &self.owner)
            .field("commands", &self.commands)
            .field("action_ids", &self.action_ids)
            .finish_non_exhaustive()
    }
}

/// Wraps the renderer of every Slack sink (IFS approvals add their Approve / Reject
/// buttons to the messages of the invoices they act on).
#[cfg(feature = "slack")]
pub type SlackRendererLayer = Box<
    dyn Fn(Arc<dyn ml_core::render::Renderer>) -> Arc<dyn ml_core::render::Renderer> + Send + Sync,
>;

/// The routes connectors registered while a configuration was assembled. Clones share
/// them.
#[derive(Clone, Default)]
pub struct InboundHooks {
    #[cfg(feature = "slack")]
    slack: Arc<Mutex<Vec<SlackRoute>>>,
    #[cfg(feature = "slack")]
    renderers: Arc<Mutex<Vec<(String, SlackRendererLayer)>>>,
}

impl std::fmt::Debug for InboundHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("InboundHooks");
        #[cfg(feature = "slack")]
        d.field(
            "slack",
            &*self.slack.lock().unwrap_or_else(PoisonError::into_inner),
        )
        .field(
            "renderer_layers",
            &self
                .renderers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(owner, _)| owner.clone())
                .collect::<Vec<_>>(),
        );
        d.finish()
    }
}

impl InboundHooks {
    /// No routes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no connector registered anything.
    pub fn is_empty(&self) -> bool {
        #[cfg(feature = "slack")]
        {
            self.slack
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
        }
        #[cfg(not(feature = "slack"))]
        {
            true
        }
    }

    /// Registers a Slack route.
    #[cfg(feature = "slack")]
    pub fn add_slack(&self, route: SlackRoute) {
        self.slack
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(route);
    }

    /// Registers a layer around every Slack sink's renderer. Sources are opened before
    /// sinks, so a source's layer applies to every sink of the configuration.
    #[cfg(feature = "slack")]
    pub fn add_slack_renderer(&self, owner: impl Into<String>, layer: SlackRendererLayer) {
        self.renderers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((owner.into(), layer));
    }

    /// `base` wrapped in every registered layer, in registration order; `None` when no
    /// layer is registered (the sink keeps its own renderer).
    #[cfg(feature = "slack")]
    pub fn slack_renderer(
        &self,
        base: Arc<dyn ml_core::render::Renderer>,
    ) -> Option<Arc<dyn ml_core::render::Renderer>> {
        let layers = self
            .renderers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if layers.is_empty() {
            return None;
        }
        Some(layers.iter().fold(base, |r, (_, layer)| layer(r)))
    }

    /// Makes every registered route's handler and the dispatcher over them (`None` when
    /// nothing is registered). Two routes claiming one command or action id are a
    /// configuration error naming both owners. The routes are consumed.
    #[cfg(feature = "slack")]
    pub fn slack_dispatcher(&self, ctx: &HookContext) -> Result<Option<Arc<SlackDispatcher>>> {
        let routes =
            std::mem::take(&mut *self.slack.lock().unwrap_or_else(PoisonError::into_inner));
        if routes.is_empty() {
            return Ok(None);
        }
        let mut built: Vec<Built> = Vec::new();
        for r in routes {
            for c in &r.commands {
                if let Some(other) = built.iter().find(|b| b.commands.contains(c)) {
                    return Err(ml_core::Error::config(
                        &r.owner,
                        format!("slash command {c} is also handled by {}", other.owner),
                    ));
                }
            }
            for a in &r.action_ids {
                if let Some(other) = built.iter().find(|b| b.action_ids.contains(a)) {
                    return Err(ml_core::Error::config(
                        &r.owner,
                        format!("Slack action `{a}` is also handled by {}", other.owner),
                    ));
                }
            }
            let handler = (r.make)(ctx)?;
            built.push(Built {
                owner: r.owner,
                commands: r.commands,
                action_ids: r.action_ids,
                handler,
            });
        }
        Ok(Some(Arc::new(SlackDispatcher { routes: built })))
    }
}

#[cfg(feature = "slack")]
struct Built {
    owner: String,
    commands: Vec<String>,
    action_ids: Vec<String>,
    handler: Arc<dyn ml_slack::receiver::SlackHandler>,
}

/// Hands each verified Slack request to the route that claims it (by slash command or
/// button `action_id`); logs the others.
#[cfg(feature = "slack")]
pub struct SlackDispatcher {
    routes: Vec<Built>,
}

#[cfg(feature = "slack")]
impl std::fmt::Debug for SlackDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes: Vec<(&str, &[String], &[String])> = self
            .routes
            .iter()
            .map(|b| {
                (
                    b.owner.as_str(),
                    b.commands.as_slice(),
                    b.action_ids.as_slice(),
                )
            })
            .collect();
        f.debug_struct("SlackDispatcher")
            .field("routes", &routes)
            .finish()
    }
}

#[cfg(feature = "slack")]
impl SlackDispatcher {
    /// The slash commands routed.
    pub fn commands(&self) -> Vec<&str> {
        self.routes
            .iter()
            .flat_map(|b| b.commands.iter().map(String::as_str))
            .collect()
    }

    fn route(&self, inbound: &ml_slack::events::Inbound) -> Option<&Built> {
        use ml_slack::events::{Inbound, Interaction};
        match inbound {
            Inbound::SlashCommand(c) => {
                let command = c.command.trim();
                self.routes
                    .iter()
                    .find(|b| b.commands.iter().any(|x| x == command))
            }
            Inbound::Interaction(Interaction::BlockActions(a)) => self.routes.iter().find(|b| {
                a.actions
                    .iter()
                    .any(|x| b.action_ids.contains(&x.action_id))
            }),
            _ => None,
        }
    }
}

#[cfg(feature = "slack")]
#[async_trait::async_trait]
impl ml_slack::receiver::SlackHandler for SlackDispatcher {
    async fn handle(&self, received: ml_slack::events::Received) {
        match self.route(&received.inbound) {
            Some(b) => {
                tracing::debug!(owner = %b.owner, via = ?received.via, "slack: routed");
                b.handler.handle(received).await;
            }
            None => {
                tracing::info!(via = ?received.via, "slack: verified inbound item (no handler)");
            }
        }
    }
}

#[cfg(all(test, feature = "slack"))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ml_slack::events::{
        Action, BlockActions, Inbound, Interaction, InteractionUser, Received, SlashCommand, Via,
    };
    use ml_slack::receiver::SlackHandler;

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    #[async_trait::async_trait]
    impl SlackHandler for Count {
        async fn handle(&self, _: Received) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn route(owner: &str, command: &str, action: &str, count: &Arc<Count>) -> SlackRoute {
        let count = Arc::clone(count);
        SlackRoute::new(
            owner,
            vec![command.to_owned()],
            vec![action.to_owned()],
            Box::new(move |_: &HookContext| Ok(count as Arc<dyn SlackHandler>)),
        )
    }

    fn ctx() -> HookContext {
        HookContext {
            journal: Arc::new(ml_core::memory::MemoryAuditStore::new()),
        }
    }

    fn received(inbound: Inbound) -> Received {
        Received {
            inbound,
            via: Via::Http {
                retry_num: None,
                retry_reason: None,
            },
            received_at: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    fn command(name: &str) -> Received {
        received(Inbound::SlashCommand(SlashCommand {
            command: name.to_owned(),
            text: "7".to_owned(),
            user_id: "U1".to_owned(),
            ..SlashCommand::default()
        }))
    }

    fn click(action_id: &str) -> Received {
        received(Inbound::Interaction(Interaction::BlockActions(Box::new(
            BlockActions {
                user: InteractionUser {
                    id: "U1".to_owned(),
                    ..InteractionUser::default()
                },
                team_id: None,
                channel_id: None,
                message_ts: None,
                actions: vec![Action {
                    action_id: action_id.to_owned(),
                    block_id: None,
                    value: Some("7".to_owned()),
                    kind: Some("button".to_owned()),
                    action_ts: Some("1.2".to_owned()),
                }],
                response_url: None,
                trigger_id: None,
                api_app_id: None,
                raw: serde_json::Value::Null,
            },
        ))))
    }

    #[tokio::test]
    async fn requests_go_to_the_route_that_claims_them() {
        let hooks = InboundHooks::new();
        assert!(hooks.slack_dispatcher(&ctx()).expect("none").is_none());
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        hooks.add_slack(route("sources.a", "/approve-invoice", "a_approve", &a));
        hooks.add_slack(route("sources.b", "/release-po", "b_release", &b));
        assert!(!hooks.is_empty());
        let d = hooks.slack_dispatcher(&ctx()).expect("ok").expect("some");
        assert!(hooks.is_empty(), "routes are consumed");
        assert_eq!(d.commands(), ["/approve-invoice", "/release-po"]);
        d.handle(command("/approve-invoice")).await;
        d.handle(command(" /release-po ")).await;
        d.handle(click("a_approve")).await;
        d.handle(click("b_release")).await;
        d.handle(command("/other")).await;
        d.handle(click("other")).await;
        assert_eq!(a.0.load(Ordering::SeqCst), 2);
        assert_eq!(b.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn two_routes_for_one_command_or_action_are_an_error_naming_both() {
        let c = Arc::new(Count::default());
        for (second_command, second_action) in
            [("/approve-invoice", "x_other"), ("/other", "a_approve")]
        {
            let hooks = InboundHooks::new();
            hooks.add_slack(route("sources.a", "/approve-invoice", "a_approve", &c));
            hooks.add_slack(route("sources.b", second_command, second_action, &c));
            match hooks.slack_dispatcher(&ctx()) {
                Err(ml_core::Error::Config { key, message }) => {
                    assert_eq!(key, "sources.b");
                    assert!(message.contains("sources.a"), "{message}");
                }
                other => panic!("expected a config error, got {other:?}"),
            }
        }
    }
}
