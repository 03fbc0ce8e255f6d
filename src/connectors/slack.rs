//! `connector = "slack"` sinks: channels by alias (`channels = { finance = "C0123" }`),
//! GL detail per destination (`render = { line_detail = ["finance"] }`), Slack's one
//! message per second per channel.

use std::sync::Arc;

use async_trait::async_trait;
use ml_core::config::ConfigKey as _;
use ml_core::config::assemble::{OpenedSink, SandboxReport, Section, SinkFactory};
use ml_core::config::pipeline::SinkConfig;
use ml_core::limiter::Quota;
use ml_core::{Destination, Error, Result};
use ml_slack::render::LineDetail;
use ml_slack::{SlackBuilder, SlackConfigKey};

use super::under_applied;

pub(crate) struct SlackFactory {
    /// Renderer layers other connectors registered (IFS approval buttons).
    pub(crate) hooks: Option<super::inbound::InboundHooks>,
}

/// Every address this sink is sent to: its channel aliases, and the addresses the rules
/// name directly.
fn addresses(section: &Section<'_>, sink: &SinkConfig) -> Vec<String> {
    let mut out: Vec<String> = sink.channels.values().cloned().collect();
    for rule in &section.config.routes.rules {
        for to in &rule.to {
            if let Some((name, alias)) = to.split_once(':')
                && name == section.name
            {
                let address = sink.address(alias).to_owned();
                if !out.contains(&address) {
                    out.push(address);
                }
            }
        }
    }
    out
}

#[cfg(feature = "sandbox")]
struct SlackSandbox {
    emulator: ml_sandbox::slack::SlackEmulator,
    /// Channel id -> how the configuration names it (`#finance`).
    names: Vec<(String, String)>,
}

#[cfg(feature = "sandbox")]
impl SandboxReport for SlackSandbox {
    fn banner(&self) -> String {
        format!(
            "no credentials set: using the in-process Slack sandbox at {}",
            self.emulator.base_url()
        )
    }

    fn report(&self) -> Vec<String> {
        let mut out = Vec::new();
        for m in self.emulator.all_messages() {
            let channel = self
                .names
                .iter()
                .find(|(id, _)| *id == m.channel)
                .map_or(m.channel.as_str(), |(_, n)| n.as_str());
            out.push(format!(
                "[sandbox {channel}] {}",
                m.text.replace('\n', " | ")
            ));
            // The lines section of the blocks (GL detail), where there is one.
            for block in m
                .blocks
                .iter()
                .flat_map(|b| b.as_array().into_iter().flatten())
            {
                if let Some(t) = block["text"]["text"].as_str()
                    && t.starts_with("*Invoice lines*")
                {
                    for line in t.lines().skip(1) {
                        out.push(format!("    {line}"));
                    }
                }
            }
        }
        out
    }
}

#[async_trait]
impl SinkFactory for SlackFactory {
    fn connector(&self) -> &'static str {
        "slack"
    }

    async fn open(&self, section: Section<'_>, sink: &SinkConfig) -> Result<OpenedSink> {
        let addresses = addresses(&section, sink);
        #[allow(unused_mut)]
        let mut builder = SlackBuilder::new();
        #[allow(unused_mut)]
        let mut sandbox: Option<Box<dyn SandboxReport>> = None;
        if section.sandbox {
            #[cfg(feature = "sandbox")]
            {
                use ml_sandbox::slack::{Channel, SlackEmulator};
                let mut e = SlackEmulator::builder();
                for (i, address) in addresses.iter().enumerate() {
                    // A channel id: the emulator names the channel after its alias.
                    let channel = if let Some(name) = address.strip_prefix('#') {
                        Channel::public(name)
                    } else {
                        let alias = sink
                            .channels
                            .iter()
                            .find(|(_, a)| *a == address)
                            .map_or_else(|| format!("channel-{i}"), |(k, _)| k.clone());
                        Channel::public(alias).with_id(address.clone())
                    };
                    e = e.channel(channel);
                }
                let e = e.start().await.map_err(|e| {
                    Error::config(format!("{}.sandbox", section.path), e.to_string())
                })?;
                builder = builder
                    .with_bot_token(e.bot_token())
                    .with_api_url(e.base_url());
                let names = addresses
                    .iter()
                    .filter_map(|a| {
                        let id = e.channel_id(a.trim_start_matches('#'))?;
                        Some((id, a.clone()))
                    })
                    .collect();
                sandbox = Some(Box::new(SlackSandbox { emulator: e, names }));
            }
            #[cfg(not(feature = "sandbox"))]
            return Err(super::no_sandbox(&section.path));
        }
        let mut applied = Vec::new();
        for s in section.resolved()? {
            if let Some(k) = SlackConfigKey::from_name(&s.key) {
                applied.push((k.env_name(), s.path.clone()));
            }
            builder = builder
                .with_config_str(&s.key, s.value)
                .map_err(|e| match e {
                    Error::Config { message, .. } => Error::config(&s.path, message),
                    other => other,
                })?;
        }
        if let Some(only) = &sink.render.line_detail {
            builder = builder.with_line_detail(LineDetail::Only(
                only.iter()
                    .map(|a| Destination::new(section.name, sink.address(a)))
                    .collect(),
            ));
        }
        if let Some(layered) = self
            .hooks
            .as_ref()
            .and_then(|h| h.slack_renderer(builder.renderer()))
        {
            builder = builder.with_renderer(layered);
        }
        let slack = builder
            .build()
            .map_err(under_applied(&section.path, &applied))?;
        // The limiter keys on the channel id: learn the ids up front so that the first
        // message of a channel and the later ones share one key.
        for address in &addresses {
            if address.starts_with('#')
                && let Err(e) = slack.resolve_channel(address).await
            {
                tracing::warn!(sink = %section.path, channel = %address, error = %e, "cannot resolve channel");
                if e.class().retry_after().is_some() {
                    // Slack asked us to slow down (conversations.list is Tier 2): the
                    // other names are resolved at their first message, paced, instead of
                    // listing again at once.
                    break;
                }
            }
        }
        Ok(OpenedSink {
            sink: Arc::new(slack),
            // One post per second per channel, measured from the previous answer, and one post in
            // flight per channel (a name and its id may both be configured).
            per_address: Some(
                Quota::per_second(1)?
                    .burst(1)?
                    .in_flight(1, std::time::Duration::from_secs(120))?,
            ),
            sandbox,
        })
    }
}
