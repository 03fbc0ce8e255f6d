//! `connector = "sap-ecc-relay"` sources: SAP ECC reached through `ml-sap-agent`s on the
//! customer network. The section serves the relay endpoint (the agents connect out to
//! it), and each stream is a SAP ECC source over the relay, paused as "unavailable until a
//! relay agent returns" while none is connected.
//!
//! Settings: `ML_RELAY_LISTEN` (default `127.0.0.1:8787`), `ML_RELAY_SYSTEM` (default the
//! section's name), `ML_RELAY_AGENTS` (comma-separated ids), one `ML_RELAY_KEY_<ID>` per
//! agent (the id upper-cased, `-` and `.` as `_`), `ML_RELAY_CALL_TIMEOUT_SECS`, and the
//! host-side `SAP_ECC_*` keys (time zone, cap, page size, ...). The SAP URL and logon
//! belong on the agent and are refused here.
//!
//! In sandbox mode the SAP ECC emulator runs in-process, and every agent whose key is not
//! set runs in-process too (with a random key), connected over 127.0.0.1.

use super::rekey;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ml_core::config::Env;
use ml_core::config::Registry;
use ml_core::config::assemble::{
    SandboxReport, Section, SourceConnection, SourceFactory, resolve_settings,
};
use ml_core::config::pipeline::StreamConfig;
use ml_core::{Error, Result, Source};
use ml_sap_agent::{RelayHub, RelaySource};
use ml_sap_ecc::{Category, SapEccBuilder};
use secrecy::SecretString;

use super::under;

/// Adds the relay source factory to `r`.
pub(crate) fn register(r: Registry) -> Registry {
    r.with_source(Arc::new(SapRelayFactory))
}

pub(crate) struct SapRelayFactory;

struct RelayConnection {
    builder: SapEccBuilder,
    hub: RelayHub,
    system: String,
    report: RelayReport,
}

struct RelayReport {
    lines: Vec<String>,
    sandbox: bool,
    #[cfg(feature = "sandbox")]
    _emulator: Option<ml_sandbox::sap_ecc::SapEccEmulator>,
}

impl SandboxReport for RelayReport {
    fn banner(&self) -> String {
        self.lines.join("; ")
    }
}

/// `ML_RELAY_KEY_PLANT_A` for `plant-a`.
fn key_name(id: &str) -> String {
    let up: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("ML_RELAY_KEY_{up}")
}

#[async_trait]
impl SourceFactory for SapRelayFactory {
    fn connector(&self) -> &'static str {
        "sap-ecc-relay"
    }

    async fn open(&self, section: Section<'_>) -> Result<Box<dyn SourceConnection>> {
        let mut listen = "127.0.0.1:8787".to_owned();
        let mut system = section.name.to_owned();
        let mut agents: Vec<String> = Vec::new();
        let mut keys: Vec<(String, SecretString)> = Vec::new();
        let mut timeout = None;
        let mut builder = SapEccBuilder::new();
        for s in section.resolved()? {
            let upper = s.key.trim().to_ascii_uppercase();
            match upper.as_str() {
                "ML_RELAY_LISTEN" | "LISTEN" => listen = s.value,
                "ML_RELAY_SYSTEM" | "SYSTEM" => system = s.value,
                "ML_RELAY_AGENTS" | "AGENTS" => {
                    agents = s
                        .value
                        .split(',')
                        .map(|a| a.trim().to_owned())
                        .filter(|a| !a.is_empty())
                        .collect();
                }
                "ML_RELAY_CALL_TIMEOUT_SECS" => {
                    let secs = s
                        .value
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| Error::config(&s.path, "not a whole number of seconds"))?;
                    timeout = Some(Duration::from_secs(secs));
                }
                k if k.starts_with("ML_RELAY_KEY_") => {
                    keys.push((k.to_owned(), SecretString::from(s.value)));
                }
                "SAP_ECC_URL" | "SAP_ECC_CLIENT" | "SAP_ECC_USER" | "SAP_ECC_PASSWORD"
                | "SAP_ECC_LANGUAGE" | "URL" | "CLIENT" | "USER" | "PASSWORD" => {
                    return Err(Error::config(
                        &s.path,
                        "the SAP URL and logon belong on the agent (ml-sap-agent's SAP_ECC_* variables), not on the host",
                    ));
                }
                _ => {
                    builder = builder
                        .with_config_str(&s.key, s.value)
                        .map_err(rekey(&s.path))?;
                }
            }
        }
        let mut hub = RelayHub::builder();
        if let Some(t) = timeout {
            hub = hub.call_timeout(t);
        }
        let mut lines = Vec::new();
        let mut in_process = Vec::new();
        for id in &agents {
            let name = key_name(id);
            match keys.iter().find(|(k, _)| *k == name) {
                Some((_, key)) => hub = hub.agent(id.clone(), key.clone(), system.clone()),
                None if section.sandbox => {
                    let key = ml_sap_agent::wire::new_key();
                    hub = hub.agent(id.clone(), key.clone(), system.clone());
                    in_process.push((id.clone(), key));
                }
                None => {
                    return Err(Error::config(
                        format!("{}.settings.{name}", section.path),
                        format!("required: the key of relay agent `{id}`"),
                    ));
                }
            }
        }
        if agents.is_empty() {
            if section.sandbox {
                let key = ml_sap_agent::wire::new_key();
                hub = hub.agent("sandbox-agent", key.clone(), system.clone());
                in_process.push(("sandbox-agent".to_owned(), key));
            } else {
                return Err(Error::config(
                    format!("{}.settings.ML_RELAY_AGENTS", section.path),
                    "required: the ids of the relay agents allowed to serve this system",
                ));
            }
        }
        let hub = hub
            .build()
            .map_err(|e| Error::config(format!("{}.settings", section.path), e.to_string()))?;
        let bound = hub.listen(&listen).await.map_err(|e| {
            Error::config(
                format!("{}.settings.ML_RELAY_LISTEN", section.path),
                e.to_string(),
            )
        })?;
        lines.push(format!(
            "relay endpoint for SAP system `{system}` at ws://{bound}{}",
            ml_sap_agent::wire::CONNECT_PATH
        ));
        #[cfg(feature = "sandbox")]
        let emulator = if section.sandbox {
            let e = ml_sandbox::sap_ecc::SapEccEmulator::start()
                .await
                .map_err(|e| Error::config(format!("{}.sandbox", section.path), e.to_string()))?;
            e.load_traps();
            builder = builder.with_timezone(e.timezone());
            lines.push(format!(
                "in-process SAP ECC sandbox (SOAP-RFC) at {} client {} user {} (server time zone {})",
                e.base_url(),
                e.client(),
                e.user(),
                e.timezone()
            ));
            for (id, key) in &in_process {
                let agent = ml_sap_agent::AgentBuilder::new()
                    .with_config(ml_sap_agent::AgentConfigKey::Url, format!("ws://{bound}"))
                    .with_config(ml_sap_agent::AgentConfigKey::AgentId, id.clone())
                    .with_key(key.clone())
                    .with_sap(
                        SapEccBuilder::new()
                            .with_url(e.base_url())
                            .with_client(e.client())
                            .with_credentials(e.user(), e.password().to_owned())
                            .with_timezone(e.timezone()),
                    )
                    .build()
                    .map_err(|err| {
                        Error::config(format!("{}.sandbox", section.path), err.to_string())
                    })?;
                tokio::spawn(async move { agent.run(std::future::pending()).await });
                lines.push(format!("in-process relay agent `{id}` connects out to it"));
            }
            // So that a `--once` run finds them connected.
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                hub.wait_for_agents(&system, in_process.len()),
            )
            .await;
            let external: Vec<&String> = agents
                .iter()
                .filter(|a| !in_process.iter().any(|(id, _)| id == *a))
                .collect();
            if !external.is_empty() {
                lines.push(format!(
                    "run ml-sap-agent for {external:?} with ML_RELAY_URL=ws://{bound} SAP_ECC_URL={} SAP_ECC_CLIENT={} SAP_ECC_USER={} and the sandbox password",
                    e.base_url(),
                    e.client(),
                    e.user()
                ));
            }
            Some(e)
        } else {
            None
        };
        #[cfg(not(feature = "sandbox"))]
        if section.sandbox && !in_process.is_empty() {
            return Err(super::no_sandbox(&section.path));
        }
        let transport = hub
            .transport(&system)
            .map_err(|e| Error::config(format!("{}.settings", section.path), e.to_string()))?;
        builder = builder.with_transport(Arc::new(transport));
        builder
            .clone()
            .build()
            .map_err(|e| rekey(&section.path)(e))?;
        Ok(Box::new(RelayConnection {
            builder,
            hub,
            system,
            report: RelayReport {
                lines,
                sandbox: section.sandbox,
                #[cfg(feature = "sandbox")]
                _emulator: emulator,
            },
        }))
    }
}

impl SourceConnection for RelayConnection {
    fn stream(&self, st: &StreamConfig, path: &str, env: &dyn Env) -> Result<Arc<dyn Source>> {
        let resource = st.resource.as_deref().unwrap_or(&st.name);
        let category = Category::parse(resource).ok_or_else(|| {
            Error::config(
                format!("{path}.resource"),
                format!(
                    "unknown SAP ECC category `{resource}` (known: purchase_orders, invoices, gl)"
                ),
            )
        })?;
        let mut b = self.builder.clone().with_category(category);
        if let Some(t) = st.start_at {
            b = b.with_start_at(t);
        }
        if let Some(o) = st.overlap {
            b = b.with_overlap(o);
        }
        for s in resolve_settings(path, &st.settings, env, self.report.sandbox)? {
            b = b.with_config_str(&s.key, s.value).map_err(rekey(&s.path))?;
        }
        let source = b.build().map_err(under(path))?;
        Ok(Arc::new(RelaySource::new(
            Arc::new(source),
            self.hub.clone(),
            self.system.clone(),
        )))
    }

    fn sandbox(&self) -> Option<&dyn SandboxReport> {
        self.report
            .sandbox
            .then_some(&self.report as &dyn SandboxReport)
    }
}
