//! `ml-connector`: runs pipelines described in TOML, and the operator's view of the
//! journal.
//!
//! ```text
//! ml-connector run --config F [--once]     poll, deliver, serve [receivers]; Ctrl-C or SIGTERM stops
//! ml-connector check --config F            health check of every connector and destination
//! ml-connector dry-run --config F [--max N] what would be sent where (nothing journaled)
//! ml-connector explain --config F STREAM KEY which rules matched a journaled record, and why
//! ml-connector audit [--config F | --journal DB] list [STATUS] [--stream S] [--destination D]
//!                    [--since 24h] [--limit N] | show STREAM KEY |
//!                    replay ID | replay-failed [same narrowing] | rejected |
//!                    notes [--since 7d] [--kind K] [--stream S]
//! ```
//!
//! Connectors with `sandbox = "auto"` and none of their `${NAME}` variables set run against
//! the in-process emulators (feature `sandbox`), and the tool says so.
//!
//! Exit codes: 0 done; 1 an error stopped the command (configuration, journal, arguments);
//! 3 `run --once` finished but left work undone that needs attention (a stream's cycle
//! failed or is paused, a delivery failed, a destination is held, or Ctrl-C / SIGTERM
//! stopped it: sends in flight finish first), so cron and CI notice.

/// `println!` that ignores a closed stdout (`run --once | head -3`): the run goes on to
/// its end (the journal is its record) instead of panicking mid-run.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod check;
mod logging;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
use ml_connector::audit::{
    AuditStore, DeliveryFilter, DeliveryId, DeliveryStatus, JournalNote, NoteFilter, NoteSeverity,
};
use ml_connector::config::{Assembled, PipelineConfig, ProcessEnv};
use ml_connector::{Error, Result, connectors};

#[derive(Parser)]
#[command(
    name = "ml-connector",
    version,
    about = "Moves ERP events to Slack, SMS and email, nothing lost, nothing posted twice."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the pipeline (and the [receivers], if configured) until Ctrl-C or SIGTERM.
    Run {
        /// The pipeline description (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// One cycle per stream, deliver what is due within two minutes, then exit: 0 when
        /// all went well, 3 when a stream failed or is paused, a delivery failed or is held,
        /// or a signal stopped it early (the summary says which; sends in flight finish).
        #[arg(long)]
        once: bool,
        /// Seconds between progress lines while running (0: none).
        #[arg(long, default_value_t = 60)]
        progress_secs: u64,
    },
    /// Checks the configuration and every connector's health.
    Check {
        /// The pipeline description (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Seconds each system may take to answer its check (one that does not answer is
        /// reported FAILED after this, not retried for minutes).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout_secs: u64,
    },
    /// Shows what would be sent where, without journaling or sending anything.
    DryRun {
        /// The pipeline description (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Items read per stream.
        #[arg(long, default_value_t = 50)]
        max: usize,
    },
    /// Says which rules matched a journaled record, and why.
    Explain {
        /// The pipeline description (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// The stream.
        stream: String,
        /// The record key.
        key: String,
    },
    /// The operator's view of the journal.
    Audit {
        /// The pipeline description whose journal to open.
        #[arg(long, short, conflicts_with = "journal")]
        config: Option<PathBuf>,
        /// A SQLite journal file (default: ML_AUDIT_DB, or ml-audit.db).
        #[arg(long)]
        journal: Option<PathBuf>,
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Named secrets kept encrypted in the journal (master key: ML_MASTER_KEY or
    /// ML_MASTER_KEY_FILE); pipeline files refer to them as `${credential:NAME}`.
    Credentials {
        /// A SQLite journal file (default: ML_AUDIT_DB, or ml-audit.db).
        #[arg(long)]
        journal: Option<PathBuf>,
        /// A PostgreSQL journal (`postgres://…`, feature `postgres`; schema from
        /// ML_POSTGRES_SCHEMA), shared by replicas.
        #[arg(long, conflicts_with = "journal")]
        postgres: Option<String>,
        #[command(subcommand)]
        command: CredentialsCommand,
    },
}

#[derive(Subcommand)]
enum CredentialsCommand {
    /// Stores NAME; the value is read from standard input (never from the command line).
    Set {
        /// The credential's name (e.g. slack.bot_token).
        name: String,
    },
    /// Names, versions and update times (never values).
    List,
    /// Removes NAME.
    Delete {
        /// The credential's name.
        name: String,
    },
    /// Re-wraps every credential under ML_MASTER_KEY; the old key is ML_MASTER_KEY_PREVIOUS.
    RotateKey,
    /// Prints a new random master key (base64), for ML_MASTER_KEY or a key file.
    GenerateKey,
}

/// Which deliveries an audit command is about, besides their status.
#[derive(clap::Args)]
struct Narrow {
    /// Only one stream's deliveries.
    #[arg(long)]
    stream: Option<String>,
    /// Only one destination (`slack:#finance`, `sms:buyer-001`, as the journal names it).
    #[arg(long)]
    destination: Option<String>,
    /// Only deliveries updated since: an RFC 3339 time or a span back from now (`24h`).
    #[arg(long)]
    since: Option<String>,
    /// At most this many.
    #[arg(long)]
    limit: Option<usize>,
}

impl Narrow {
    /// The filter: these narrowings and `status`.
    fn filter(
        self,
        status: Option<DeliveryStatus>,
        now: jiff::Timestamp,
        config: Option<&PipelineConfig>,
    ) -> Result<DeliveryFilter> {
        Ok(DeliveryFilter {
            status,
            stream: self.stream,
            destination: self
                .destination
                .map(|d| destination_arg("--destination", &d, config))
                .transpose()?,
            since: self.since.map(|s| parse_since(&s, now)).transpose()?,
            limit: self.limit,
            ..DeliveryFilter::default()
        })
    }
}

/// A destination given on the command line: `sink:address`, or a sink's alias
/// (`sms:buyer-001`) as the file maps it (`sms:+49151...`).
fn destination_arg(
    flag: &str,
    d: &str,
    config: Option<&PipelineConfig>,
) -> Result<ml_core::sink::Destination> {
    let resolved = config.map_or_else(|| d.to_owned(), |c| c.resolve_destination(d));
    ml_core::sink::Destination::parse(&resolved).map_err(|_| {
        Error::config(
            flag,
            format!("`{d}`: expected sink:address, e.g. slack:#finance"),
        )
    })
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Deliveries, oldest first, optionally of one status (pending, in_flight, retrying,
    /// delivered, failed) and narrowed by stream, destination and time.
    List {
        /// The status.
        status: Option<String>,
        #[command(flatten)]
        narrow: Narrow,
    },
    /// A record's versions (with the source item as read) and its deliveries.
    Show {
        /// The stream.
        stream: String,
        /// The record key.
        key: String,
    },
    /// Makes a failed delivery pending again (the next cycle sends it).
    Replay {
        /// The delivery id.
        id: i64,
    },
    /// Makes the failed deliveries pending again (all, or those narrowed down: after
    /// inviting the app to #operations, `--destination slack:#operations`).
    ReplayFailed {
        #[command(flatten)]
        narrow: Narrow,
        /// Sends them to this destination instead (`slack:#finance-ap`, or an alias of the
        /// file): for messages that failed because their address was wrong, once the file
        /// names the right one. One whose record already went there stays failed.
        #[arg(long)]
        to: Option<String>,
    },
    /// Items the sources could not turn into records.
    Rejected,
    /// Operator notes, newest first: refresh tokens about to expire, pairings needed.
    Notes {
        /// Only notes raised since: an RFC 3339 time or a span back from now (`7d`, `12h`).
        #[arg(long)]
        since: Option<String>,
        /// Only one kind (`refresh_token_expiry`, `pairing_needed`, `stream_paused`,
        /// `destination_held`).
        #[arg(long)]
        kind: Option<String>,
        /// Only one stream's notes.
        #[arg(long)]
        stream: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(|k| std::env::var(k).ok()) {
        eprintln!("error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    match dispatch(cli.command).await {
        Ok(Done::Clean) => std::process::ExitCode::SUCCESS,
        Ok(Done::NeedsAttention(why)) => {
            // On stdout with the summary it qualifies: stderr is the log (JSON lines with
            // `ML_LOG_FORMAT=json`).
            say!("attention: {why}");
            std::process::ExitCode::from(NEEDS_ATTENTION)
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The exit code of a `run --once` that finished with work needing attention.
const NEEDS_ATTENTION: u8 = 3;

/// How a command that did not fail ended.
enum Done {
    /// Everything it was asked to do was done.
    Clean,
    /// It ran to the end, but left work undone that an operator must look at (why).
    NeedsAttention(String),
}

async fn dispatch(command: Command) -> Result<Done> {
    match command {
        Command::Run {
            config,
            once,
            progress_secs,
        } => return run(&config, once, progress_secs).await,
        Command::Check {
            config,
            timeout_secs,
        } => check::check(&config, Duration::from_secs(timeout_secs)).await,
        Command::DryRun { config, max } => dry_run(&config, max).await,
        Command::Explain {
            config,
            stream,
            key,
        } => explain(&config, &stream, &key).await,
        Command::Audit {
            config,
            journal,
            command,
        } => {
            let store = open_journal(config.as_deref(), journal.as_deref()).await?;
            let file = config
                .as_deref()
                .map(|c| PipelineConfig::from_file_with_env(c, &ProcessEnv))
                .transpose()?;
            audit(store.as_ref(), command, file.as_ref()).await
        }
        Command::Credentials {
            journal,
            postgres,
            command,
        } => credentials(journal, postgres, command).await,
    }?;
    Ok(Done::Clean)
}

/// What of a finished `run --once` needs an operator, if anything.
fn attention(summary: &ml_connector::pipeline::RunSummary) -> Option<String> {
    let d = &summary.deliveries;
    let mut why = Vec::new();
    if !summary.cycle_errors.is_empty() {
        why.push(format!(
            "{} stream cycle(s) failed, are paused or were not polled",
            summary.cycle_errors.len()
        ));
    }
    if d.failed > 0 {
        why.push(format!(
            "{} delivery(ies) failed (`audit list failed`, then `audit replay-failed`)",
            d.failed
        ));
    }
    if d.held > 0 {
        why.push(format!(
            "{} delivery(ies) held: a destination refused our credentials (`audit notes`)",
            d.held
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// After a `--once` run's own sends are all journaled: deliveries still in flight belong
/// to another process, a live one or a run that crashed (its claims are taken over when
/// their lease runs out), and what queues behind them was left. Said, not hidden behind
/// exit 0.
async fn left_to_others(store: &dyn AuditStore) -> Option<String> {
    let stats = store.stats().await.ok()?;
    (stats.in_flight > 0).then(|| {
        format!(
            "{} delivery(ies) in flight under another process's claim (a live one, or a run \
             that crashed: its claims are taken over once their lease runs out, 60 s by \
             default); {} pending or retrying wait behind or beside them for the next run",
            stats.in_flight,
            stats.pending + stats.retrying
        )
    })
}

fn journal_path(journal: Option<PathBuf>) -> PathBuf {
    journal.unwrap_or_else(|| {
        PathBuf::from(
            std::env::var("ML_AUDIT_DB")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| ml_connector::store::DEFAULT_PATH.to_owned()),
        )
    })
}

/// A journal's credential store, SQLite or PostgreSQL, with its key rotation.
enum Credentials {
    Sqlite(ml_connector::store::SqliteCredentialStore),
    #[cfg(feature = "postgres")]
    Postgres(ml_connector::store::PostgresCredentialStore),
}

impl Credentials {
    fn store(&self) -> &dyn ml_connector::credential::CredentialStore {
        match self {
            Self::Sqlite(s) => s,
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => s,
        }
    }

    /// (re-wrapped, unchanged)
    async fn rotate(&self) -> Result<(u64, u64)> {
        match self {
            Self::Sqlite(s) => s.rotate().await.map(|r| (r.rewrapped, r.unchanged)),
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => s.rotate().await.map(|r| (r.rewrapped, r.unchanged)),
        }
    }
}

async fn credentials(
    journal: Option<PathBuf>,
    postgres: Option<String>,
    command: CredentialsCommand,
) -> Result<()> {
    use ml_connector::credential::CredentialName;
    use ml_connector::credential::envelope::MasterKey;
    use secrecy::ExposeSecret as _;
    if matches!(command, CredentialsCommand::GenerateKey) {
        say!("{}", MasterKey::generate().to_base64().expose_secret());
        return Ok(());
    }
    let store = match postgres {
        #[cfg(feature = "postgres")]
        Some(url) => Credentials::Postgres(
            ml_connector::store::PostgresCredentialStore::open_from_env(
                ml_connector::store::postgres::PostgresBuilder::from_env().with_url(url),
            )
            .await?,
        ),
        #[cfg(not(feature = "postgres"))]
        Some(_) => {
            return Err(Error::config(
                "--postgres",
                "this build has no PostgreSQL journal (feature `postgres`)",
            ));
        }
        None => Credentials::Sqlite(ml_connector::store::SqliteCredentialStore::open_from_env(
            journal_path(journal),
        )?),
    };
    let store_ref = store.store();
    match command {
        CredentialsCommand::Set { name } => {
            let name = CredentialName::new(name)?;
            let mut value = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)
                .map_err(|e| Error::config("stdin", format!("cannot read the value: {e}")))?;
            let value = value.trim_end_matches(['\r', '\n']);
            if value.trim().is_empty() {
                // `printf '%s' "$TOKEN" | ... set` with TOKEN unset: nothing to keep.
                return Err(Error::config(
                    "stdin",
                    format!("the value of `{name}` is empty: nothing stored"),
                ));
            }
            let value = secrecy::SecretString::from(value.to_owned());
            let info = store_ref.put(&name, &value).await?;
            say!("stored {} (version {})", info.name, info.version);
        }
        CredentialsCommand::List => {
            for info in store_ref.list().await? {
                say!(
                    "{}\tversion {}\tupdated {}",
                    info.name,
                    info.version,
                    info.updated_at
                );
            }
        }
        CredentialsCommand::Delete { name } => {
            let name = CredentialName::new(name)?;
            if store_ref.delete(&name).await? {
                say!("deleted {name}");
            } else {
                say!("no credential named {name}");
            }
        }
        CredentialsCommand::RotateKey => {
            let (rewrapped, unchanged) = store.rotate().await?;
            say!(
                "re-wrapped {rewrapped} credential(s) under the current master key ({unchanged} \
                 already were); ML_MASTER_KEY_PREVIOUS is no longer needed"
            );
        }
        CredentialsCommand::GenerateKey => {}
    }
    Ok(())
}

/// The file of a SQLite journal that lives on disk (`None` for a database URL or
/// `:memory:`): where credentials and the webhook replay cache are kept.
fn sqlite_journal_file(config: &PipelineConfig) -> Result<Option<String>> {
    let Some(raw) = &config.journal.sqlite else {
        return Ok(None);
    };
    let path = ml_connector::config::interpolate::interpolate("journal.sqlite", raw, &ProcessEnv)?;
    Ok(Some(path).filter(|p| p != ":memory:"))
}

/// The journal-backed webhook replay cache, so a replayed callback is refused after a
/// restart too, and (PostgreSQL journals) by every replica.
async fn replay_cache(
    config: &PipelineConfig,
) -> Result<Option<std::sync::Arc<dyn ml_connector::webhook::ReplayCache>>> {
    ml_connector::serve::replay_cache(&config.journal, &ProcessEnv).await
}

/// The process environment plus the journal's credentials (`${credential:NAME}`): a
/// journal holding credentials without the master key to open them refuses to start.
async fn pipeline_env(
    config: &PipelineConfig,
) -> Result<ml_connector::credential::CredentialEnv<ProcessEnv>> {
    use ml_connector::credential::{CredentialEnv, MemoryCredentialStore};
    // A PostgreSQL journal keeps the credentials of every replica.
    #[cfg(feature = "postgres")]
    if let Some(raw) = config.journal.url.as_deref()
        && let url =
            ml_connector::config::interpolate::interpolate("journal.url", raw, &ProcessEnv)?
        && (url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        let builder = ml_connector::store::postgres::PostgresBuilder::from_env().with_url(url);
        let store = ml_connector::store::PostgresCredentialStore::open_from_env(builder).await?;
        return CredentialEnv::load(ProcessEnv, &store).await;
    }
    match sqlite_journal_file(config)? {
        Some(path) => {
            let store = ml_connector::store::SqliteCredentialStore::open_from_env(&path)?;
            CredentialEnv::load(ProcessEnv, &store).await
        }
        None => CredentialEnv::load(ProcessEnv, &MemoryCredentialStore::new()).await,
    }
}

async fn load(path: &Path) -> Result<(PipelineConfig, Assembled)> {
    let config = PipelineConfig::from_file_with_env(path, &ProcessEnv)?;
    let env = pipeline_env(&config).await?;
    let assembled = connectors::assemble(&config, &env).await?;
    for line in assembled.sandbox_banners() {
        say!("{line}");
    }
    Ok((config, assembled))
}

/// Like [`load`], with what the connectors asked the receivers to route to them (IFS
/// approvals from Slack).
async fn load_with_hooks(
    path: &Path,
) -> Result<(
    PipelineConfig,
    Assembled,
    ml_connector::connectors::inbound::InboundHooks,
)> {
    let config = PipelineConfig::from_file_with_env(path, &ProcessEnv)?;
    let env = pipeline_env(&config).await?;
    let (assembled, hooks) = connectors::assemble_with_hooks(&config, &env).await?;
    for line in assembled.sandbox_banners() {
        say!("{line}");
    }
    Ok((config, assembled, hooks))
}

/// The receivers' hooks: the Slack dispatcher over the connectors' routes (its handlers
/// journal on the pipeline's journal), and whether the pipeline is sandboxed.
#[cfg_attr(not(feature = "slack"), allow(clippy::unnecessary_wraps))]
fn receiver_hooks(
    hooks: &ml_connector::connectors::inbound::InboundHooks,
    a: &Assembled,
) -> Result<ml_connector::serve::ReceiverHooks> {
    #[cfg(feature = "slack")]
    let slack = {
        let ctx = ml_connector::connectors::inbound::HookContext {
            journal: std::sync::Arc::clone(a.pipeline.store()),
        };
        match hooks.slack_dispatcher(&ctx)? {
            Some(d) => {
                say!("receivers.slack: routes {}", d.commands().join(", "));
                Some(d as std::sync::Arc<dyn ml_connector::slack::receiver::SlackHandler>)
            }
            None => None,
        }
    };
    #[cfg(not(feature = "slack"))]
    let _ = hooks;
    Ok(ml_connector::serve::ReceiverHooks {
        #[cfg(feature = "slack")]
        slack,
        sandbox: a.is_sandboxed(),
    })
}

/// An error as one line: `class code: message`.
fn error_line(e: &ml_connector::audit::ErrorInfo) -> String {
    match &e.code {
        Some(code) => format!("{} {code}: {}", e.class, e.message),
        None => format!("{}: {}", e.class, e.message),
    }
}

/// An operator's query of a journal that is not there (a mistyped path) says so, instead
/// of creating an empty journal and showing nothing.
fn existing_journal(path: &Path, named_by: &str) -> Result<()> {
    if path.is_file() {
        return Ok(());
    }
    Err(Error::config(
        named_by,
        format!(
            "no journal at `{}` (give the path of an existing one, or --config F)",
            path.display()
        ),
    ))
}

async fn open_journal(
    config: Option<&Path>,
    journal: Option<&Path>,
) -> Result<std::sync::Arc<dyn AuditStore>> {
    let store: std::sync::Arc<dyn AuditStore> = match (config, journal) {
        (Some(c), _) => {
            let config = PipelineConfig::from_file_with_env(c, &ProcessEnv)?;
            connectors::registry().journal(&config, &ProcessEnv).await?
        }
        (None, Some(j)) => {
            existing_journal(j, "--journal")?;
            std::sync::Arc::new(
                ml_connector::store::SqliteBuilder::new()
                    .with_path(j)
                    .build()?,
            )
        }
        (None, None) => {
            existing_journal(&journal_path(None), "ML_AUDIT_DB")?;
            std::sync::Arc::new(ml_connector::store::SqliteBuilder::from_env().build()?)
        }
    };
    say!("journal: {store:?}");
    Ok(store)
}

async fn run(path: &Path, once: bool, progress_secs: u64) -> Result<Done> {
    let (config, a, hooks) = load_with_hooks(path).await?;
    let pipeline = a.pipeline.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server = None;
    let mut served = None;
    if let Some(r) = &config.receivers {
        let replay = replay_cache(&config).await?;
        let s = ml_connector::serve::router_with_hooks(
            r,
            pipeline.store(),
            &ProcessEnv,
            replay,
            &receiver_hooks(&hooks, &a)?,
        )?;
        for note in &s.notes {
            say!("{note}");
        }
        let app = s.router.clone();
        served = Some(s);
        let mut stop = stop_rx.clone();
        let (addr, task) = ml_connector::serve::bind(r, &ProcessEnv, app, async move {
            let _ = stop.wait_for(|v| *v).await;
        })
        .await?;
        say!(
            "receivers: listening on http://{addr} (health: {})",
            r.health_path
        );
        server = Some(task);
    }
    for line in check::orphan_streams(&pipeline).await {
        say!("warning: {line}");
    }
    let streams: Vec<String> = pipeline
        .streams()
        .iter()
        .map(|s| s.name().to_owned())
        .collect();
    let mut interrupted = false;
    let summary = if once {
        // A signal stops a `--once` run as it stops the service: no new poll or send
        // starts, sends in flight finish and are journaled (nothing left in doubt for the
        // next run to reconcile), the rest stays queued.
        let (signalled, stop) = tokio::sync::watch::channel(false);
        let watcher = tokio::spawn(async move {
            ml_core::shutdown::signal().await;
            let _ = signalled.send(true);
        });
        let stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stop.wait_for(|v| *v).await;
        };
        let mut summary = ml_connector::pipeline::RunSummary {
            recovered: pipeline.recover().await?,
            ..Default::default()
        };
        for s in &streams {
            // A page is journaled with its cursor in one transaction: a poll cut short
            // between pages loses nothing.
            let c = tokio::select! {
                c = pipeline.poll_stream(s) => c?,
                () = stopped(stop.clone()) => {
                    // The poll was dropped between its lease and its release.
                    if let Err(e) = pipeline.release_streams().await {
                        tracing::warn!(error = %e, "could not release the stream leases (they run out by themselves)");
                    }
                    break;
                }
            };
            if c.skipped {
                // A fresh process pauses nothing: only another's lease skips a stream.
                summary.cycle_errors.push(format!(
                    "{s}: not polled, another process holds it (a live one, or a run that \
                     stopped mid-poll: its claim runs out within 60 s)"
                ));
            }
            say!(
                "cycle {s}: pages {}, polled {}, journaled {}, duplicates {}, rejected {}, planned {}{}",
                c.pages,
                c.polled,
                c.journaled,
                c.duplicates,
                c.rejected,
                c.planned,
                c.error
                    .as_deref()
                    .map(|e| format!(", error: {e}"))
                    .unwrap_or_default()
            );
            summary.cycles += 1;
            summary.polled += c.polled;
            summary.journaled += c.journaled;
            summary.duplicates += c.duplicates;
            summary.rejected += c.rejected;
            summary.planned += c.planned;
            if let Some(e) = c.error {
                summary.cycle_errors.push(format!("{s}: {e}"));
            }
        }
        // Also send what is queued behind a per-channel rate limit, and retries due within
        // two minutes; later ones stay in the journal for the next run.
        summary.deliveries = pipeline
            .deliver_coming_due_until(Duration::from_secs(120), stopped(stop.clone()))
            .await?;
        interrupted = *stop.borrow();
        watcher.abort();
        summary
    } else {
        for s in pipeline.streams() {
            say!("stream {s}");
        }
        say!("running; Ctrl-C or SIGTERM stops it");
        let progress = (progress_secs > 0).then(|| {
            let pipeline = pipeline.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(progress_secs));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    progress_line(&pipeline).await;
                }
            })
        });
        let s = pipeline.run(ml_core::shutdown::signal()).await?;
        if let Some(p) = progress {
            p.abort();
        }
        s
    };
    let _ = stop_tx.send(true);
    if let Some(task) = server {
        let _ = task.await;
    }
    // Work acknowledged to Slack (an approval) is finished before the process exits.
    if let Some(s) = &served {
        s.idle().await;
    }
    for line in a.sandbox_report() {
        say!("{line}");
    }
    say!(
        "summary: cycles {}, polled {}, journaled {}, rejected {}, delivered {}, reconciled {}, retried {}, held {}, failed {}{}",
        summary.cycles,
        summary.polled,
        summary.journaled,
        summary.rejected,
        summary.deliveries.delivered,
        summary.deliveries.reconciled,
        summary.deliveries.retried,
        summary.deliveries.held,
        summary.deliveries.failed,
        match summary.deliveries.resent_after_doubt {
            0 => String::new(),
            n => format!(
                ", sent again after an unresolved doubt {n} (possible duplicates: `audit list` shows them)"
            ),
        }
    );
    for e in &summary.cycle_errors {
        say!("cycle error: {e}");
    }
    say!(
        "journal: {:?}; inspect it with `ml-connector audit --config {} list`",
        pipeline.store(),
        path.display()
    );
    // A long-running `run` reports through the journal, metrics and logs as it goes; only
    // a `--once` run has an end an operator's scheduler looks at.
    let mut why = attention(&summary).filter(|_| once);
    if once && let Some(left) = left_to_others(pipeline.store().as_ref()).await {
        why = Some(why.map_or_else(|| left.clone(), |w| format!("{w}; {left}")));
    }
    Ok(match (why, interrupted) {
        (why, true) => Done::NeedsAttention(
            std::iter::once(
                "stopped by a signal before the end: the rest is queued for the next run"
                    .to_owned(),
            )
            .chain(why)
            .collect::<Vec<_>>()
            .join("; "),
        ),
        (Some(why), false) => Done::NeedsAttention(why),
        (None, false) => Done::Clean,
    })
}

/// One progress line: journal counts, and the lag of the oldest delivery still due.
async fn progress_line(pipeline: &ml_core::pipeline::Pipeline) {
    let store = pipeline.store();
    match store.stats().await {
        Ok(s) => {
            let lag = match store.next_due_at().await {
                Ok(Some(due)) => {
                    let behind = due.duration_until(jiff::Timestamp::now());
                    if behind.is_positive() {
                        format!(", lag {}s", behind.as_secs())
                    } else {
                        String::new()
                    }
                }
                _ => String::new(),
            };
            say!(
                "progress: records {}, rejected {}, pending {}, retrying {}, delivered {}, failed {}{lag}{}",
                s.records,
                s.rejected,
                s.pending,
                s.retrying,
                s.delivered,
                s.failed,
                unhealthy_streams(&pipeline.stream_status())
            );
        }
        Err(e) => say!("progress: journal unavailable: {e}"),
    }
}

/// The streams that are not polling normally, and why (`""` when all are): a paused stream
/// waits for someone to fix its cause, so it is named in every progress line.
fn unhealthy_streams(statuses: &[ml_core::pipeline::StreamStatus]) -> String {
    use ml_core::pipeline::StreamState;
    let parts: Vec<String> = statuses
        .iter()
        .filter_map(|s| match &s.state {
            StreamState::Running => None,
            StreamState::BackingOff { error, .. } => {
                Some(format!("{} backing off ({})", s.stream, error.message))
            }
            StreamState::Paused { error, .. } => {
                Some(format!("{} PAUSED ({})", s.stream, error.message))
            }
            StreamState::Unavailable { waiting_for, .. } => {
                Some(format!("{} waiting for {waiting_for}", s.stream))
            }
            other => Some(format!("{} {other:?}", s.stream)),
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join("; "))
    }
}

async fn dry_run(path: &Path, max: usize) -> Result<()> {
    let (_, a) = load(path).await?;
    let d = a.pipeline.dry_run(max).await?;
    for m in &d.messages {
        say!(
            "{} {} -> {} (rules: {}): {}",
            m.stream,
            m.record_key,
            m.destination,
            m.rules.join(", "),
            m.rendered.text.replace('\n', " | ")
        );
    }
    for (stream, r) in &d.rejected {
        say!(
            "{stream} {}: would reject: {}",
            r.key.as_deref().unwrap_or("(no key)"),
            r.reason
        );
    }
    for (stream, key) in &d.unrouted {
        say!("{stream} {key}: no rule routes it anywhere");
    }
    for (stream, key) in &d.already_journaled {
        say!("{stream} {key}: already journaled in this version (nothing would be sent)");
    }
    say!(
        "dry run: {} messages, {} rejected, {} unrouted, {} already journaled (nothing journaled or sent)",
        d.messages.len(),
        d.rejected.len(),
        d.unrouted.len(),
        d.already_journaled.len()
    );
    Ok(())
}

async fn explain(path: &Path, stream: &str, key: &str) -> Result<()> {
    let config = PipelineConfig::from_file_with_env(path, &ProcessEnv)?;
    let router = config.router()?;
    let store = connectors::registry().journal(&config, &ProcessEnv).await?;
    let history = store.record_history(stream, key).await?;
    let Some(latest) = history.versions.last() else {
        // Rejected records were never routed: their reason is the explanation.
        return show_rejected_or_not_found(store.as_ref(), stream, key, Some(&config)).await;
    };
    say!(
        "{stream} {key}, version {} journaled {}: {}",
        latest.record.dedupe_version(),
        latest.journaled_at,
        latest.record.title()
    );
    say!("{}", router.explain(&latest.record));
    Ok(())
}

/// A record the journal holds no version of: its rejections with their reasons, or an
/// error saying it is neither journaled nor rejected (and when the stream is not one the
/// file names, which streams it does).
async fn show_rejected_or_not_found(
    store: &dyn AuditStore,
    stream: &str,
    key: &str,
    config: Option<&PipelineConfig>,
) -> Result<()> {
    let rejected: Vec<_> = store
        .rejected(Some(stream), 10_000)
        .await?
        .into_iter()
        .filter(|r| r.item.key.as_deref() == Some(key))
        .collect();
    for r in &rejected {
        say!("rejected {}: {}", r.at, r.item.reason);
        if !r.item.raw.is_null() {
            say!("    source item: {}", r.item.raw);
        }
    }
    if !rejected.is_empty() {
        return Ok(());
    }
    let unknown_stream = config
        .filter(|c| !c.streams.iter().any(|s| s.name == stream))
        .map(|c| {
            let names: Vec<&str> = c.streams.iter().map(|s| s.name.as_str()).collect();
            format!(
                "; the file has no stream `{stream}` (streams: {})",
                names.join(", ")
            )
        })
        .unwrap_or_default();
    Err(Error::NotFound(format!(
        "record `{key}` of stream `{stream}` (neither journaled nor rejected; keys are the \
         source's, as `audit list` shows them){unknown_stream}"
    )))
}

async fn audit(
    store: &dyn AuditStore,
    command: AuditCommand,
    config: Option<&PipelineConfig>,
) -> Result<()> {
    let now = jiff::Timestamp::now();
    match command {
        AuditCommand::List { status, narrow } => {
            let status = status
                .map(|s| {
                    s.parse::<DeliveryStatus>()
                        .map_err(|_| Error::config("status", format!("unknown status `{s}`")))
                })
                .transpose()?;
            let filter = narrow.filter(status, now, config)?;
            for d in store.deliveries(&filter).await? {
                say!(
                    "{:>6}  {:<10} {:<22} {:<14} {:<20} attempts {}{}",
                    d.id.to_string(),
                    d.status.as_str(),
                    d.destination.to_string(),
                    d.stream,
                    d.record_key,
                    d.attempts,
                    d.last_error
                        .map(|e| format!("  last error: {}", e.message))
                        .unwrap_or_default()
                );
            }
            recent_warnings(store, now).await?;
        }
        AuditCommand::Show { stream, key } => {
            let h = store.record_history(&stream, &key).await?;
            for v in &h.versions {
                say!(
                    "version {} journaled {}: {} {}",
                    v.record.dedupe_version(),
                    v.journaled_at,
                    v.record.title(),
                    v.record
                        .fields
                        .amount
                        .map(|m| m.to_string())
                        .unwrap_or_default()
                );
                // The source item exactly as it was read (amounts keep every digit).
                if !v.record.raw.is_null() {
                    say!("    source item: {}", v.record.raw);
                }
            }
            if h.versions.is_empty() {
                show_rejected_or_not_found(store, &stream, &key, config).await?;
            }
            for d in &h.deliveries {
                let remote = match (&d.remote_id, d.remote_status) {
                    (Some(id), Some(st)) => format!(", remote {id} {st}"),
                    (Some(id), None) => format!(", remote {id}"),
                    _ => String::new(),
                };
                say!(
                    "delivery {} -> {}: {} ({} attempts{remote})",
                    d.id,
                    d.destination,
                    d.status.as_str(),
                    d.attempts
                );
                if let Some(e) = &d.last_error {
                    say!("    last error: {}", error_line(e));
                }
                for a in store.attempts(d.id).await? {
                    say!(
                        "    attempt {} {} -> {}: {}{}{}",
                        a.number,
                        a.started_at,
                        a.finished_at
                            .map_or_else(|| "(in flight)".to_owned(), |t| t.to_string()),
                        a.outcome.as_deref().unwrap_or("-"),
                        a.remote_id
                            .as_deref()
                            .map(|r| format!(" {r}"))
                            .unwrap_or_default(),
                        a.error
                            .as_ref()
                            .map(|e| format!(" ({})", error_line(e)))
                            .unwrap_or_default()
                    );
                }
            }
        }
        AuditCommand::Replay { id } => {
            store.replay(DeliveryId(id), now).await?;
            say!("delivery {id} is pending again; the next cycle sends it");
        }
        AuditCommand::ReplayFailed { narrow, to } => {
            let filter = narrow.filter(Some(DeliveryStatus::Failed), now, config)?;
            if let Some(to) = to {
                let to = destination_arg("--to", &to, config)?;
                if let Some(c) = config
                    && !c.sinks.contains_key(&to.sink)
                {
                    return Err(Error::config(
                        "--to",
                        format!("`{to}`: the file has no sink named `{}`", to.sink),
                    ));
                }
                let n = store.replay_failed_to(&filter, &to, now).await?;
                say!(
                    "{n} failed deliveries are pending again, to {to} (any whose record \
                     already went there stays failed)"
                );
                return Ok(());
            }
            let unrouted = match config {
                Some(c) => unrouted_destinations(store, &filter, c).await?,
                None => Vec::new(),
            };
            let n = store.replay_failed(&filter, now).await?;
            say!("{n} failed deliveries are pending again");
            for d in unrouted {
                say!(
                    "note: no route of this file sends to {d} any more; if its deliveries \
                     failed for a wrong address, send them to the right one with \
                     `audit replay-failed --destination {d} --to <sink:address>`"
                );
            }
        }
        AuditCommand::Rejected => {
            for r in store.rejected(None, 100).await? {
                say!(
                    "{} {} {}: {}",
                    r.at,
                    r.stream,
                    r.item.key.as_deref().unwrap_or("(no key)"),
                    r.item.reason
                );
            }
        }
        AuditCommand::Notes {
            since,
            kind,
            stream,
            limit,
        } => {
            if let Some(k) = kind.as_deref()
                && !ml_connector::audit::NOTE_KINDS.contains(&k)
            {
                return Err(Error::config(
                    "--kind",
                    format!(
                        "no note kind `{k}` (kinds: {})",
                        ml_connector::audit::NOTE_KINDS.join(", ")
                    ),
                ));
            }
            let filter = NoteFilter {
                since: since.as_deref().map(|s| parse_since(s, now)).transpose()?,
                kind,
                stream,
                limit: Some(limit),
            };
            let notes = store.notes(&filter).await?;
            if notes.is_empty() {
                say!("no notes");
            }
            for n in notes {
                say!("{}", note_line(&n));
            }
        }
    }
    Ok(())
}

/// One note as `audit notes` and `audit list` print it.
/// The destinations of the failed deliveries `filter` names that no route of `config`
/// sends to (a channel since corrected in the file, say).
async fn unrouted_destinations(
    store: &dyn AuditStore,
    filter: &DeliveryFilter,
    config: &PipelineConfig,
) -> Result<Vec<ml_core::sink::Destination>> {
    let routed = config.destinations();
    let sample = DeliveryFilter {
        limit: Some(10_000),
        ..filter.clone()
    };
    let mut unrouted: Vec<ml_core::sink::Destination> = Vec::new();
    for d in store.deliveries(&sample).await? {
        if !routed.contains(&d.destination) && !unrouted.contains(&d.destination) {
            unrouted.push(d.destination);
        }
    }
    Ok(unrouted)
}

fn note_line(n: &JournalNote) -> String {
    format!(
        "{}  {:<7}  {:<20}  {}{}",
        n.at.strftime("%Y-%m-%d %H:%M:%SZ"),
        n.severity.as_str(),
        n.kind,
        n.stream
            .as_deref()
            .map(|s| format!("[{s}] "))
            .unwrap_or_default(),
        n.message
    )
}

/// `--since`: an RFC 3339 time, or a span back from `now` (`30m`, `12h`, `7d`).
fn parse_since(s: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let bad = || {
        Error::config(
            "--since",
            format!("`{s}` is neither an RFC 3339 time nor a span like 7d, 12h, 30m"),
        )
    };
    let (n, unit) = s.trim().split_at(s.trim().len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let span = jiff::SignedDuration::from_secs(n.checked_mul(secs).ok_or_else(bad)?);
    now.checked_sub(span).map_err(|_| bad())
}

/// After `audit list`: the warnings and errors noted in the last 30 days, newest first.
async fn recent_warnings(store: &dyn AuditStore, now: jiff::Timestamp) -> Result<()> {
    let filter = NoteFilter {
        since: now
            .checked_sub(jiff::SignedDuration::from_hours(30 * 24))
            .ok(),
        ..NoteFilter::default()
    };
    let mut open = Vec::new();
    let mut resolved = 0;
    for n in store.notes(&filter).await? {
        if n.severity < NoteSeverity::Warning {
            continue;
        }
        if resolved_since(store, &n).await? {
            resolved += 1;
        } else {
            open.push(n);
        }
    }
    if open.is_empty() && resolved == 0 {
        return Ok(());
    }
    let since_resolved = if resolved > 0 {
        format!(", {resolved} of them since resolved")
    } else {
        String::new()
    };
    say!(
        "{} warning note(s) in the last 30 days{since_resolved} (all: `audit notes`){}",
        open.len() + resolved,
        if open.is_empty() {
            ""
        } else {
            "; newest open:"
        }
    );
    for n in open.iter().take(3) {
        say!("  {}", note_line(n));
    }
    Ok(())
}

/// Whether what `note` warned about has since cleared, as far as the journal shows: a
/// paused stream that has completed a cycle without error after the note, a held
/// destination that has had a delivery after it, a pairing noted as restored after it.
/// Other kinds are never taken as resolved.
async fn resolved_since(store: &dyn AuditStore, note: &JournalNote) -> Result<bool> {
    match note.kind.as_str() {
        ml_connector::audit::KIND_STREAM_PAUSED => {
            let Some(stream) = &note.stream else {
                return Ok(false);
            };
            Ok(store.cycles(stream, 1).await?.first().is_some_and(|c| {
                c.started_at > note.at && c.finished_at.is_some() && c.error.is_none()
            }))
        }
        ml_connector::audit::KIND_DESTINATION_HELD => {
            // The dedupe starts with the destination (`slack:#finance`).
            let Some(d) = note
                .dedupe
                .lines()
                .next()
                .and_then(|d| ml_core::sink::Destination::parse(d).ok())
            else {
                return Ok(false);
            };
            let delivered = store
                .deliveries(&DeliveryFilter {
                    destination: Some(d),
                    status: Some(DeliveryStatus::Delivered),
                    since: Some(note.at),
                    limit: Some(1),
                    ..DeliveryFilter::default()
                })
                .await?;
            Ok(!delivered.is_empty())
        }
        ml_connector::audit::KIND_PAIRING_NEEDED => {
            // `<credential>:<token expiry>`; a restoration note names the credential too.
            let Some((credential, _)) = note.dedupe.split_once(':') else {
                return Ok(false);
            };
            let prefix = format!("{credential}:");
            Ok(store
                .notes(&NoteFilter::kind(
                    ml_connector::audit::KIND_PAIRING_RESTORED,
                ))
                .await?
                .iter()
                .any(|r| r.at >= note.at && r.dedupe.starts_with(&prefix)))
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod notes_tests {
    use super::parse_since;

    #[test]
    fn since_takes_a_time_or_a_span_back_and_names_itself_when_bad() {
        let now: jiff::Timestamp = "2026-12-04T10:00:00Z".parse().expect("now");
        let at = |s: &str| parse_since(s, now).expect(s).to_string();
        assert_eq!(at("7d"), "2026-11-27T10:00:00Z");
        assert_eq!(at("12h"), "2026-12-03T22:00:00Z");
        assert_eq!(at("30m"), "2026-12-04T09:30:00Z");
        assert_eq!(at("2026-12-01T00:00:00Z"), "2026-12-01T00:00:00Z");
        for bad in ["", "7", "d", "7w", "yesterday", "-"] {
            let err = parse_since(bad, now).expect_err(bad);
            assert!(
                matches!(&err, ml_connector::Error::Config { key, .. } if key == "--since"),
                "{bad:?}: {err}"
            );
        }
    }
}
