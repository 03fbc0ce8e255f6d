//! From a [`PipelineConfig`] to a running [`Pipeline`]: connectors plug in through one small
//! factory each ([`SourceFactory`], [`SinkFactory`], [`JournalFactory`]) registered in a
//! [`Registry`]. The facade crate registers every connector compiled in
//! (`ml_connector::connectors::registry()`); a host can add its own.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::Env;
use super::interpolate::{interpolate, required_vars};
use super::pipeline::{
    JournalConfig, LimiterConfig, PipelineConfig, SettingValue, Settings, SinkConfig, SourceConfig,
    StreamConfig, use_sandbox,
};
use crate::audit::AuditStore;
use crate::error::{Error, Result};
use crate::limiter::{GcraLimiter, Quota, RateLimiter};
use crate::memory::{MemoryAuditStore, MemorySink, MemorySource, SourceTable};
use crate::pipeline::{Pipeline, PipelineBuilder, Stream};
use crate::record::EntityKind;
use crate::sink::Sink;
use crate::source::Source;

/// One setting after `${NAME}` interpolation.
pub struct ResolvedSetting {
    /// The key as written (`bot_token`).
    pub key: String,
    /// Its full path (`sinks.slack.settings.bot_token`), for errors.
    pub path: String,
    /// The value. May be a secret: hand it to the builder, never print it.
    pub value: String,
}

impl fmt::Debug for ResolvedSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedSetting")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What a factory sees of its section.
pub struct Section<'a> {
    /// The section's name (`oracle` in `[sources.oracle]`).
    pub name: &'a str,
    /// Its path (`sources.oracle`).
    pub path: String,
    /// Whether to use the in-process emulator (see
    /// [`SandboxMode`](super::pipeline::SandboxMode)).
    pub sandbox: bool,
    /// Its settings as written.
    pub settings: &'a Settings,
    /// The environment `${NAME}` reads.
    pub env: &'a dyn Env,
    /// The whole configuration (a Slack sink looks up channel aliases in it).
    pub config: &'a PipelineConfig,
    /// The pipeline's journal (a source writes operator notes into it, e.g. a refresh
    /// token about to expire).
    pub journal: &'a Arc<dyn AuditStore>,
}

impl Section<'_> {
    /// The settings with `${NAME}` replaced. In sandbox mode, settings that refer to an
    /// unset variable (the real system's URL and credentials) are left out.
    pub fn resolved(&self) -> Result<Vec<ResolvedSetting>> {
        resolve_settings(&self.path, self.settings, self.env, self.sandbox)
    }
}

/// `settings` of the section at `path` with `${NAME}` replaced (see [`Section::resolved`]).
pub fn resolve_settings(
    path: &str,
    settings: &Settings,
    env: &dyn Env,
    sandbox: bool,
) -> Result<Vec<ResolvedSetting>> {
    let mut out = Vec::with_capacity(settings.len());
    for (key, value) in settings {
        let at = format!("{path}.settings.{key}");
        let value = match value {
            SettingValue::Text(raw) => {
                let missing = required_vars(raw)
                    .iter()
                    .any(|v| env.var(v).is_none_or(|x| x.trim().is_empty()));
                if sandbox && missing {
                    continue;
                }
                let value = interpolate(&at, raw, env)?;
                // A URL to another host (a default such as
                // `${TWILIO_API_URL:-https://api.twilio.com}`, or a public callback URL)
                // belongs to the real systems: against emulators nothing leaves the
                // machine, so it must not replace the emulator's.
                if sandbox && leaves_the_machine(&value) {
                    continue;
                }
                value
            }
            other => other.to_string(),
        };
        out.push(ResolvedSetting {
            key: key.clone(),
            path: at,
            value,
        });
    }
    Ok(out)
}

/// Whether `value` is an http(s) URL to another host than this one.
fn leaves_the_machine(value: &str) -> bool {
    url::Url::parse(value.trim()).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https" | "ws" | "wss") && !super::is_loopback(&u)
    })
}

/// An emulator a connector started in sandbox mode, kept alive with the pipeline.
pub trait SandboxReport: Send + Sync {
    /// One line saying what runs where ("the in-process Slack sandbox at http://…").
    fn banner(&self) -> String;
    /// What landed in it so far (posted messages), one line each.
    fn report(&self) -> Vec<String> {
        Vec::new()
    }
}

/// An opened source connection (`[sources.<name>]`), making one source per stream.
pub trait SourceConnection: Send + Sync {
    /// The source of one stream. `path` names the stream in errors (`streams[2]`).
    fn stream(&self, stream: &StreamConfig, path: &str, env: &dyn Env) -> Result<Arc<dyn Source>>;

    /// The emulator, in sandbox mode.
    fn sandbox(&self) -> Option<&dyn SandboxReport> {
        None
    }
}

/// Makes source connections for one connector name.
#[async_trait]
pub trait SourceFactory: Send + Sync {
    /// The `connector = "…"` it answers to.
    fn connector(&self) -> &'static str;

    /// Opens `[sources.<name>]` (starting its emulator in sandbox mode).
    async fn open(&self, section: Section<'_>) -> Result<Box<dyn SourceConnection>>;
}

/// An opened sink.
pub struct OpenedSink {
    /// The sink.
    pub sink: Arc<dyn Sink>,
    /// Sends per second to one address, when the remote system limits it.
    pub per_address: Option<Quota>,
    /// The emulator, in sandbox mode.
    pub sandbox: Option<Box<dyn SandboxReport>>,
}

impl fmt::Debug for OpenedSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedSink")
            .field("sink", &self.sink.to_string())
            .finish_non_exhaustive()
    }
}

/// Makes sinks for one connector name.
#[async_trait]
pub trait SinkFactory: Send + Sync {
    /// The `connector = "…"` it answers to.
    fn connector(&self) -> &'static str;

    /// Opens `[sinks.<name>]`.
    async fn open(&self, section: Section<'_>, sink: &SinkConfig) -> Result<OpenedSink>;

    /// Whether its messages never leave the process (the `memory` sink): demo data sent
    /// there reaches no one. The default: `false`, a real system.
    fn in_process(&self) -> bool {
        false
    }
}

/// Opens the journal of `[journal]`.
#[async_trait]
pub trait JournalFactory: Send + Sync {
    /// Opens it; `None` when this factory does not handle that kind of journal.
    async fn open(
        &self,
        journal: &JournalConfig,
        env: &dyn Env,
    ) -> Result<Option<Arc<dyn AuditStore>>>;
}

/// Opens the shared rate limiter of `[limiter]`.
#[async_trait]
pub trait LimiterFactory: Send + Sync {
    /// Opens it with the quotas of the sinks (`(key prefix, quota)`, e.g.
    /// `("slack:", 1/s)`); `None` when this factory does not handle that URL.
    async fn open(
        &self,
        limiter: &LimiterConfig,
        quotas: &[(String, Quota)],
        env: &dyn Env,
    ) -> Result<Option<Arc<dyn RateLimiter>>>;
}

/// The connectors a configuration can name.
#[derive(Clone, Default)]
pub struct Registry {
    sources: BTreeMap<&'static str, Arc<dyn SourceFactory>>,
    sinks: BTreeMap<&'static str, Arc<dyn SinkFactory>>,
    journals: Vec<Arc<dyn JournalFactory>>,
    limiters: Vec<Arc<dyn LimiterFactory>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("sinks", &self.sinks.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A pipeline assembled from a configuration, with what the CLI needs around it.
pub struct Assembled {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// Each stream's source, by stream name (for health checks).
    pub sources: Vec<(String, Arc<dyn Source>)>,
    /// The sinks, by name.
    pub sinks: BTreeMap<String, Arc<dyn Sink>>,
    /// The emulators started in sandbox mode, with the section path.
    pub sandboxes: Vec<(String, Box<dyn SandboxReport>)>,
    connections: Vec<(String, Box<dyn SourceConnection>)>,
}

impl fmt::Debug for Assembled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assembled")
            .field("pipeline", &self.pipeline)
            .field("sandboxes", &self.sandbox_banners())
            .finish_non_exhaustive()
    }
}

impl Assembled {
    /// One line per emulator started in sandbox mode.
    pub fn sandbox_banners(&self) -> Vec<String> {
        let sinks = self.sandboxes.iter().map(|(p, s)| (p, s.as_ref()));
        let sources = self
            .connections
            .iter()
            .filter_map(|(p, c)| c.sandbox().map(|s| (p, s)));
        sources
            .chain(sinks)
            .map(|(p, s)| format!("{p}: {}", s.banner()))
            .collect()
    }

    /// What landed in the sandbox emulators.
    pub fn sandbox_report(&self) -> Vec<String> {
        self.sandboxes
            .iter()
            .flat_map(|(_, s)| s.report())
            .collect()
    }

    /// Whether any connector runs against its emulator.
    pub fn is_sandboxed(&self) -> bool {
        !self.sandbox_banners().is_empty()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The connectors of `ml-core` itself: `memory` sink, `memory` source (over
    /// `tables`), and the `url = "memory:"` journal.
    pub fn with_memory(self, tables: BTreeMap<String, SourceTable>) -> Self {
        self.with_source(Arc::new(MemorySourceFactory { tables }))
            .with_sink(Arc::new(MemorySinkFactory))
            .with_journal(Arc::new(MemoryJournalFactory))
    }

    /// Adds (or replaces) a source connector.
    #[must_use]
    pub fn with_source(mut self, f: Arc<dyn SourceFactory>) -> Self {
        self.sources.insert(f.connector(), f);
        self
    }

    /// Adds (or replaces) a sink connector.
    #[must_use]
    pub fn with_sink(mut self, f: Arc<dyn SinkFactory>) -> Self {
        self.sinks.insert(f.connector(), f);
        self
    }

    /// Adds a journal backend (tried in the order added).
    #[must_use]
    pub fn with_journal(mut self, f: Arc<dyn JournalFactory>) -> Self {
        self.journals.push(f);
        self
    }

    /// Adds a shared rate limiter backend for `[limiter]` (tried in the order added).
    #[must_use]
    pub fn with_limiter(mut self, f: Arc<dyn LimiterFactory>) -> Self {
        self.limiters.push(f);
        self
    }

    /// The source connector names.
    pub fn source_connectors(&self) -> Vec<&'static str> {
        self.sources.keys().copied().collect()
    }

    /// The sink connector names.
    pub fn sink_connectors(&self) -> Vec<&'static str> {
        self.sinks.keys().copied().collect()
    }

    /// Checks that every connector named in `config` is registered (the first unknown one
    /// is an error naming its path and the connectors compiled in).
    pub fn check(&self, config: &PipelineConfig) -> Result<()> {
        for (name, s) in &config.sources {
            self.source(name, s)?;
        }
        for (name, s) in &config.sinks {
            self.sink(name, s)?;
        }
        Ok(())
    }

    fn source(&self, name: &str, s: &SourceConfig) -> Result<&Arc<dyn SourceFactory>> {
        self.sources.get(s.connector.as_str()).ok_or_else(|| {
            Error::config(
                format!("sources.{name}.connector"),
                format!(
                    "unknown source connector `{}` (compiled in: {})",
                    s.connector,
                    self.source_connectors().join(", ")
                ),
            )
        })
    }

    fn sink(&self, name: &str, s: &SinkConfig) -> Result<&Arc<dyn SinkFactory>> {
        self.sinks.get(s.connector.as_str()).ok_or_else(|| {
            Error::config(
                format!("sinks.{name}.connector"),
                format!(
                    "unknown sink connector `{}` (compiled in: {})",
                    s.connector,
                    self.sink_connectors().join(", ")
                ),
            )
        })
    }

    /// Opens the shared rate limiter of `[limiter]` with `quotas`.
    pub async fn shared_limiter(
        &self,
        limiter: &LimiterConfig,
        quotas: &[(String, Quota)],
        env: &dyn Env,
    ) -> Result<Arc<dyn RateLimiter>> {
        for f in &self.limiters {
            if let Some(l) = f.open(limiter, quotas, env).await? {
                return Ok(l);
            }
        }
        Err(Error::config(
            "limiter.url",
            "no shared limiter backend compiled in handles this URL (redis:// needs the \
             `redis` feature)",
        ))
    }

    /// Opens the journal.
    pub async fn journal(
        &self,
        config: &PipelineConfig,
        env: &dyn Env,
    ) -> Result<Arc<dyn AuditStore>> {
        for f in &self.journals {
            if let Some(store) = f.open(&config.journal, env).await? {
                return Ok(store);
            }
        }
        Err(Error::config(
            "journal",
            "no journal backend compiled in handles this journal (sqlite needs the `store` feature)",
        ))
    }

    /// Assembles the pipeline: opens the journal, every source and sink (starting
    /// emulators in sandbox mode), one source per stream, the router and the limiter.
    /// `customize` may add anything else to the builder (a clock, retry policy).
    pub async fn assemble(
        &self,
        config: &PipelineConfig,
        env: &dyn Env,
        customize: impl FnOnce(PipelineBuilder) -> PipelineBuilder + Send,
    ) -> Result<Assembled> {
        config.validate()?;
        self.check(config)?;
        let store = self.journal(config, env).await?;
        let mut builder = Pipeline::builder()
            .store(Arc::clone(&store))
            .router(config.router()?);

        let mut connections = Vec::new();
        let mut real_source = None;
        let mut demo_source = None;
        for (name, s) in &config.sources {
            let path = format!("sources.{name}");
            let sandbox = use_sandbox(&path, s.sandbox, &s.settings, env)?;
            if !sandbox && real_source.is_none() {
                real_source = Some(path.clone());
            }
            if sandbox && s.sandbox == super::pipeline::SandboxMode::Auto && demo_source.is_none() {
                demo_source = Some(path.clone());
            }
            let conn = self
                .source(name, s)?
                .open(Section {
                    name,
                    path: path.clone(),
                    sandbox,
                    settings: &s.settings,
                    env,
                    config,
                    journal: &store,
                })
                .await?;
            connections.push((path, conn));
        }
        let mut sources = Vec::new();
        for (i, st) in config.streams.iter().enumerate() {
            let path = format!("streams[{i}]");
            let want = format!("sources.{}", st.source);
            let Some((_, conn)) = connections.iter().find(|(p, _)| *p == want) else {
                return Err(Error::config(format!("{path}.source"), "no such source"));
            };
            let source = conn.stream(st, &path, env)?;
            sources.push((st.name.clone(), Arc::clone(&source)));
            builder = builder.stream(
                Stream::new(st.name.clone(), source, st.schedule.clone())
                    .with_renamed_from(st.renamed_from.clone()),
            );
        }

        let mut sinks = BTreeMap::new();
        let mut sandboxes = Vec::new();
        let mut limiter = GcraLimiter::builder();
        let mut limited = false;
        let mut quotas: Vec<(String, Quota)> = Vec::new();
        for (name, s) in &config.sinks {
            let path = format!("sinks.{name}");
            let sandbox = use_sandbox(&path, s.sandbox, &s.settings, env)?;
            if let (true, super::pipeline::SandboxMode::Auto, Some(real)) =
                (sandbox, s.sandbox, &real_source)
            {
                // Real records "delivered" into an in-process emulator would be lost.
                return Err(Error::config(
                    path,
                    format!(
                        "none of its variables are set, but `{real}` reads a real system: \
                         its records would be delivered into the in-process sandbox and lost. \
                         Set this sink's variables (or `sandbox = \"always\"` to send them \
                         to the sandbox on purpose)"
                    ),
                ));
            }
            let factory = self.sink(name, s)?;
            if let (false, false, Some(demo)) = (sandbox, factory.in_process(), &demo_source) {
                // The sandbox's demo invoices would be posted to real channels and phones.
                return Err(Error::config(
                    demo.clone(),
                    format!(
                        "none of its variables are set, so it would read the in-process \
                         sandbox's demo data, but `{path}` is real: the demo records would be \
                         sent to your real destinations. Set this source's variables (or \
                         `sandbox = \"always\"` on it to send demo data on purpose)"
                    ),
                ));
            }
            let opened = factory
                .open(
                    Section {
                        name,
                        path: path.clone(),
                        sandbox,
                        settings: &s.settings,
                        env,
                        config,
                        journal: &store,
                    },
                    s,
                )
                .await?;
            let quota = match s.per_address_per_second {
                Some(n) => Some(Quota::per_second(n).map_err(|e| {
                    Error::config(format!("{path}.per_address_per_second"), e.to_string())
                })?),
                None => opened.per_address,
            };
            if let Some(q) = quota {
                limiter = limiter.prefix(format!("{name}:"), q);
                quotas.push((format!("{name}:"), q));
                limited = true;
            }
            if let Some(sb) = opened.sandbox {
                sandboxes.push((path, sb));
            }
            builder = builder.sink(name.clone(), Arc::clone(&opened.sink));
            sinks.insert(name.clone(), opened.sink);
        }
        if let Some(shared) = &config.limiter {
            builder = builder.limiter(self.shared_limiter(shared, &quotas, env).await?);
        } else if limited {
            builder = builder.limiter(Arc::new(limiter.build()));
        }
        let pipeline = customize(builder).build()?;
        Ok(Assembled {
            pipeline,
            sources,
            sinks,
            sandboxes,
            connections,
        })
    }
}

/// `connector = "memory"` sources: streams read the [`SourceTable`] named by their
/// `resource` (tests and demos).
struct MemorySourceFactory {
    tables: BTreeMap<String, SourceTable>,
}

struct MemoryConnection {
    tables: BTreeMap<String, SourceTable>,
    kind: EntityKind,
}

#[async_trait]
impl SourceFactory for MemorySourceFactory {
    fn connector(&self) -> &'static str {
        "memory"
    }

    async fn open(&self, section: Section<'_>) -> Result<Box<dyn SourceConnection>> {
        let mut kind = EntityKind::SupplierInvoice;
        for s in section.resolved()? {
            match s.key.as_str() {
                "kind" => {
                    kind = serde_json::from_value(serde_json::Value::String(s.value.clone()))
                        .map_err(|e| Error::config(&s.path, e.to_string()))?;
                }
                _ => return Err(Error::config(&s.path, "unknown setting (known: kind)")),
            }
        }
        Ok(Box::new(MemoryConnection {
            tables: self.tables.clone(),
            kind,
        }))
    }
}

impl SourceConnection for MemoryConnection {
    fn stream(&self, stream: &StreamConfig, path: &str, _: &dyn Env) -> Result<Arc<dyn Source>> {
        let resource = stream.resource.as_deref().unwrap_or(&stream.name);
        let table = self.tables.get(resource).ok_or_else(|| {
            Error::config(
                format!("{path}.resource"),
                format!("no memory table `{resource}`"),
            )
        })?;
        Ok(Arc::new(MemorySource::new(
            resource,
            self.kind.clone(),
            table.clone(),
        )))
    }
}

/// `connector = "memory"` sinks.
struct MemorySinkFactory;

#[async_trait]
impl SinkFactory for MemorySinkFactory {
    fn connector(&self) -> &'static str {
        "memory"
    }

    async fn open(&self, section: Section<'_>, _: &SinkConfig) -> Result<OpenedSink> {
        if let Some(s) = section.resolved()?.first() {
            return Err(Error::config(&s.path, "the memory sink has no settings"));
        }
        Ok(OpenedSink {
            sink: Arc::new(MemorySink::new(section.name)),
            per_address: None,
            sandbox: None,
        })
    }

    fn in_process(&self) -> bool {
        true
    }
}

/// `url = "memory:"`: an in-memory journal (lost at exit).
struct MemoryJournalFactory;

#[async_trait]
impl JournalFactory for MemoryJournalFactory {
    async fn open(
        &self,
        journal: &JournalConfig,
        _: &dyn Env,
    ) -> Result<Option<Arc<dyn AuditStore>>> {
        Ok((journal.url.as_deref() == Some("memory:"))
            .then(|| Arc::new(MemoryAuditStore::new()) as Arc<dyn AuditStore>))
    }
}

#[cfg(test)]
mod sandbox_tests {
    use super::*;
    use crate::config::MapEnv;
    use crate::config::pipeline::SettingValue;

    fn settings() -> Settings {
        [
            ("token", "${TOKEN}"),
            ("api_url", "${API_URL:-https://api.example.com}"),
            ("callback", "https://ml.example.com/cb"),
            ("local", "${LOCAL_URL:-http://127.0.0.1:9000}"),
            ("zone", "${ZONE:-Europe/Paris}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), SettingValue::Text(v.to_owned())))
        .collect()
    }

    fn keys(out: &[ResolvedSetting]) -> Vec<&str> {
        out.iter().map(|s| s.key.as_str()).collect()
    }

    #[test]
    fn against_emulators_no_setting_points_off_the_machine() {
        let env = MapEnv::new();
        let out = resolve_settings("sinks.x", &settings(), &env, true).expect("resolve");
        // The credential is unset, the two real-service URLs (a default and a literal)
        // are left out; loopback URLs and other defaults stay.
        assert_eq!(keys(&out), ["local", "zone"]);
        let out = resolve_settings(
            "sinks.x",
            &settings(),
            &MapEnv::from([("TOKEN", "t")]),
            false,
        )
        .expect("resolve");
        assert_eq!(
            keys(&out),
            ["api_url", "callback", "local", "token", "zone"]
        );
    }
}
