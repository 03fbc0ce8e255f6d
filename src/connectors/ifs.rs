//! `connector = "ifs"` sources: one `[sources.<name>]` per IFS Cloud environment (one
//! IAM token), one source per stream (`resource = "supplier_invoices"`, ...).

use super::rekey;
use super::streams::configure;
use std::sync::Arc;

use async_trait::async_trait;
use ml_core::config::assemble::{SandboxReport, Section, SourceConnection, SourceFactory};
use ml_core::config::pipeline::StreamConfig;
use ml_core::config::{ConfigKey as _, Env, Registry};
use ml_core::{Error, Result, Source};
use ml_ifs::{IfsBuilder, IfsConfigKey, IfsResource};

use super::inbound::InboundHooks;
#[cfg(feature = "slack")]
use super::inbound::{HookContext, SlackRoute};
use super::under_applied;

/// Adds this crate's factories to `r`.
pub(crate) fn register(r: Registry) -> Registry {
    r.with_source(Arc::new(IfsFactory { hooks: None }))
}

/// Like [`register`], connections with approvals configured (`approvers = ...`)
/// registering their Slack route (slash command, Approve / Reject buttons) in `hooks`.
pub(crate) fn register_with_hooks(r: Registry, hooks: &InboundHooks) -> Registry {
    r.with_source(Arc::new(IfsFactory {
        hooks: Some(hooks.clone()),
    }))
}

/// The Slack user the sandbox lets approve when the file asks for approvals but
/// `IFS_APPROVERS` is unset (the Slack emulator's default user), as ALICE.
#[cfg(feature = "sandbox")]
const SANDBOX_APPROVERS: &str = "U00HUMAN01=ALICE:approve+reject";

pub(crate) struct IfsFactory {
    hooks: Option<InboundHooks>,
}

struct IfsConnection {
    builder: IfsBuilder,
    #[cfg(feature = "sandbox")]
    emulator: Option<IfsSandbox>,
}

#[cfg(feature = "sandbox")]
struct IfsSandbox(ml_sandbox::ifs::IfsEmulator, Option<String>);

#[cfg(feature = "sandbox")]
impl SandboxReport for IfsSandbox {
    fn banner(&self) -> String {
        format!(
            "no credentials set: using the in-process IFS Cloud sandbox at {} (realm {}) with demo data \
             (suppliers, purchase orders, invoices awaiting approval in company 10){}",
            self.0.base_url(),
            self.0.realm(),
            self.1
                .as_deref()
                .map(|a| format!("; Slack approvals by {a}"))
                .unwrap_or_default()
        )
    }
}

#[async_trait]
impl SourceFactory for IfsFactory {
    fn connector(&self) -> &'static str {
        "ifs"
    }

    async fn open(&self, section: Section<'_>) -> Result<Box<dyn SourceConnection>> {
        #[allow(unused_mut)]
        let mut builder = IfsBuilder::new();
        #[cfg(feature = "sandbox")]
        let emulator = if section.sandbox {
            let e = ml_sandbox::ifs::IfsEmulator::start()
                .await
                .map_err(|e| Error::config(format!("{}.sandbox", section.path), e.to_string()))?;
            e.seed_demo()
                .map_err(|e| Error::config(format!("{}.sandbox", section.path), e.to_string()))?;
            builder = builder
                .with_url(e.base_url())
                .with_realm(e.realm())
                .with_client_credentials(e.client_id(), e.client_secret().to_owned())
                .with_company("10");
            Some(IfsSandbox(e, None))
        } else {
            None
        };
        #[cfg(not(feature = "sandbox"))]
        if section.sandbox {
            return Err(super::no_sandbox(&section.path));
        }
        let mut applied = Vec::new();
        // An empty value means unset: it must not clear what the sandbox set
        // (`realm = "${IFS_REALM:-}"`).
        for s in section
            .resolved()?
            .into_iter()
            .filter(|s| !s.value.trim().is_empty())
        {
            if let Some(k) = IfsConfigKey::from_name(&s.key) {
                applied.push((k.env_name(), s.path.clone()));
            }
            builder = builder
                .with_config_str(&s.key, s.value)
                .map_err(rekey(&s.path))?;
        }
        // The file asks for approvals but names no approver: in the sandbox, the Slack
        // emulator's default user approves (nothing real can be approved).
        #[cfg(feature = "sandbox")]
        let emulator = match emulator {
            Some(IfsSandbox(e, _))
                if section.settings.contains_key("approvers")
                    && !builder.approvals_configured() =>
            {
                builder = builder.with_config(IfsConfigKey::Approvers, SANDBOX_APPROVERS);
                Some(IfsSandbox(e, Some(SANDBOX_APPROVERS.to_owned())))
            }
            other => other,
        };
        // Checks the URL, the credentials and every value now, before any stream is built.
        builder
            .clone()
            .build()
            .map_err(under_applied(&section.path, &applied))?;
        let approvals = builder
            .approval_settings()
            .map_err(under_applied(&section.path, &applied))?;
        let builder = builder
            .with_shared_token_cache()
            .map_err(under_applied(&section.path, &applied))?;
        if let (Some(settings), Some(hooks)) = (approvals, &self.hooks) {
            register_approvals(hooks, &section.path, &builder, settings);
        }
        Ok(Box::new(IfsConnection {
            builder,
            #[cfg(feature = "sandbox")]
            emulator,
        }))
    }
}

/// Registers the connection's approvals as the handler of their slash command and
/// buttons; the handler is made (and journals) once the pipeline's journal is open.
#[cfg(feature = "slack")]
fn register_approvals(
    hooks: &InboundHooks,
    owner: &str,
    builder: &IfsBuilder,
    settings: ml_ifs::ApprovalSettings,
) {
    let builder = builder.clone();
    let owner_for_errors = owner.to_owned();
    // The buttons on the invoices' Slack messages act through the route below.
    let for_buttons = builder.clone();
    let owner_for_buttons = owner.to_owned();
    hooks.add_slack_renderer(
        owner,
        Box::new(
            move |inner| match for_buttons.approval_buttons(Arc::clone(&inner)) {
                Ok(Some(buttons)) => Arc::new(buttons),
                Ok(None) => inner,
                Err(e) => {
                    tracing::warn!(section = %owner_for_buttons, error = %e, "no approval buttons");
                    inner
                }
            },
        ),
    );
    hooks.add_slack(SlackRoute::new(
        owner,
        vec![settings.command],
        ml_ifs::approval::invoice_action_ids()
            .iter()
            .map(|a| (*a).to_owned())
            .collect(),
        Box::new(move |ctx: &HookContext| {
            let approvals = builder
                .build_approvals(Arc::clone(&ctx.journal))
                .map_err(super::under(&owner_for_errors))?
                .ok_or_else(|| Error::config(&owner_for_errors, "approvals are not configured"))?;
            Ok(Arc::new(approvals) as Arc<dyn ml_slack::receiver::SlackHandler>)
        }),
    ));
}

/// Without the Slack connector nothing can route Slack requests: approvals stay off.
#[cfg(not(feature = "slack"))]
fn register_approvals(_: &InboundHooks, owner: &str, _: &IfsBuilder, _: ml_ifs::ApprovalSettings) {
    tracing::warn!(
        section = owner,
        "approvals are configured but this build has no Slack receiver (feature `slack`)"
    );
}

impl SourceConnection for IfsConnection {
    fn stream(&self, st: &StreamConfig, path: &str, env: &dyn Env) -> Result<Arc<dyn Source>> {
        let resource = st.resource.as_deref().unwrap_or(&st.name);
        let r = IfsResource::from_name(resource).ok_or_else(|| {
            let known: Vec<&str> = IfsResource::ALL.iter().map(|r| r.name()).collect();
            Error::config(
                format!("{path}.resource"),
                format!(
                    "unknown IFS resource `{resource}` (known: {})",
                    known.join(", ")
                ),
            )
        })?;
        #[cfg(feature = "sandbox")]
        let sandbox = self.emulator.is_some();
        #[cfg(not(feature = "sandbox"))]
        let sandbox = false;
        let (b, applied) = configure(
            self.builder.clone().with_resource(r),
            st,
            path,
            env,
            sandbox,
        )?;
        Ok(Arc::new(b.build().map_err(under_applied(path, &applied))?))
    }

    fn sandbox(&self) -> Option<&dyn SandboxReport> {
        #[cfg(feature = "sandbox")]
        {
            self.emulator.as_ref().map(|e| e as &dyn SandboxReport)
        }
        #[cfg(not(feature = "sandbox"))]
        {
            None
        }
    }
}

super::streams::stream_options!(IfsBuilder, IfsConfigKey);
