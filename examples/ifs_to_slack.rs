//! IFS Cloud -> Slack, and approvals back from Slack into IFS, in one process: the
//! pipeline of `examples/config/ifs_to_slack.toml` (supplier invoices to #finance with
//! Approve / Reject buttons, purchase orders and suppliers to #procurement) polls IFS,
//! and the Slack receiver (events, slash commands, interactivity) serves `[receivers]`
//! (`ML_LISTEN` overrides the address), acting on `/approve-invoice <id>` and the buttons
//! with ETag-safe IFS actions, every decision journaled.
//!
//! ```text
//! cargo run --features cli,ifs,slack,sandbox --example ifs_to_slack -- --once
//! cargo run --features cli,ifs,slack,sandbox --example ifs_to_slack -- my.toml
//! ```
//!
//! * Without `IFS_URL`, the IFS emulator starts in-process with demo data; without
//!   `SLACK_BOT_TOKEN`, the Slack emulator does (channels #finance, #procurement), and
//!   it says so. With them set (and `IFS_REALM`/`IFS_CLIENT_ID`/`IFS_CLIENT_SECRET`,
//!   `SLACK_SIGNING_SECRET`) it talks to the real systems.
//! * Approvers: `IFS_APPROVERS="U0123ABCD=ALICE:approve+reject;U0456EFGH=BOB:approve"`
//!   (Slack user id = IFS identity : actions). Anyone else is refused (ephemeral, journaled).
//! * `--once`: one cycle per stream; in sandbox mode it then plays a Slack user typing
//!   `/approve-invoice 5001` (signed like Slack), prints the answer, and exits. Otherwise it
//!   polls and serves until Ctrl-C. Audit: `ml-connector audit --config <file> show
//!   ifs.approvals "Company='10',InvoiceId=5001"`.
//! * Without Rust, `ml-connector run --config examples/config/ifs_to_slack.toml` does the
//!   same from the file (`approvers = ...` in `[sources.ifs.settings]`); this example shows
//!   the pieces: the Approve / Reject buttons renderer and an [`Approvals`] mounted as the
//!   receiver's handler.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ml_connector::config::assemble::{OpenedSink, Section, SinkFactory};
use ml_connector::config::interpolate::interpolate;
use ml_connector::config::pipeline::SinkConfig;
use ml_connector::config::{Env, PipelineConfig, ProcessEnv};
use ml_connector::limiter::Quota;
use ml_connector::{AuditStore, Error, Result, connectors};
use ml_ifs::approval::DEFAULT_STREAM;
use ml_ifs::{ApprovalButtons, Approvals, Approver, IfsBuilder, IfsResource};
use ml_sandbox::Emulator as _;
use ml_slack::render::BlockKitRenderer;
use ml_slack::{SignatureVerifier, SlackBuilder};

/// The process environment with the emulators' variables on top.
struct Layered(BTreeMap<String, String>);

impl Env for Layered {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned().or_else(|| ProcessEnv.var(name))
    }
}

/// `connector = "slack"`, with the Approve / Reject buttons on invoices awaiting approval.
struct SlackWithButtons;

#[async_trait]
impl SinkFactory for SlackWithButtons {
    fn connector(&self) -> &'static str {
        "slack"
    }

    async fn open(&self, section: Section<'_>, _sink: &SinkConfig) -> Result<OpenedSink> {
        if section.sandbox {
            return Err(Error::config(
                format!("{}.sandbox", section.path),
                "the example starts the Slack emulator itself; set SLACK_BOT_TOKEN or let it",
            ));
        }
        let mut builder = SlackBuilder::new();
        if let Some(url) = section.env.var("SLACK_API_URL") {
            builder = builder.with_api_url(url);
        }
        for s in section.resolved()? {
            builder = builder.with_config_str(&s.key, s.value)?;
        }
        let renderer = Arc::new(ApprovalButtons::new(Arc::new(BlockKitRenderer::new())));
        let sink = builder.with_renderer(renderer).build()?;
        Ok(OpenedSink {
            sink: Arc::new(sink),
            per_address: Some(
                Quota::per_second(1)?
                    .burst(1)?
                    .in_flight(1, Duration::from_secs(120))?,
            ),
            sandbox: None,
        })
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let once = args.iter().any(|a| a == "--once");
    let path = args.iter().find(|a| !a.starts_with("--")).map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/config/ifs_to_slack.toml"
            ))
        },
        PathBuf::from,
    );
    let config = PipelineConfig::from_file(&path)?;

    // Emulators when no credentials are set.
    let mut vars = BTreeMap::new();
    let ifs = if ProcessEnv
        .var("IFS_URL")
        .is_none_or(|v| v.trim().is_empty())
    {
        let e = ml_sandbox::ifs::IfsEmulator::start()
            .await
            .map_err(|e| Error::config("IFS_URL", e.to_string()))?;
        e.seed_demo()
            .map_err(|e| Error::config("IFS_URL", e.to_string()))?;
        for (k, v) in e.env() {
            vars.insert(k.to_owned(), v);
        }
        vars.insert("IFS_COMPANY".into(), "10".into());
        println!(
            "no IFS_URL set: using the in-process IFS Cloud sandbox at {} with demo data",
            e.base_url()
        );
        Some(e)
    } else {
        None
    };
    let slack = if ProcessEnv
        .var("SLACK_BOT_TOKEN")
        .is_none_or(|v| v.trim().is_empty())
    {
        use ml_sandbox::slack::{Channel, SlackEmulator};
        let e = SlackEmulator::builder()
            .channel(Channel::public("finance"))
            .channel(Channel::public("procurement"))
            .start()
            .await
            .map_err(|e| Error::config("SLACK_BOT_TOKEN", e.to_string()))?;
        for (k, v) in e.env() {
            vars.insert(k.to_owned(), v);
        }
        println!(
            "no SLACK_BOT_TOKEN set: using the in-process Slack sandbox at {}",
            e.base_url()
        );
        if ifs.is_some() {
            // The emulator's default user approves in the demo.
            vars.insert(
                "IFS_APPROVERS".into(),
                "U00HUMAN01=ALICE:approve+reject".into(),
            );
        }
        Some(e)
    } else {
        None
    };
    let env = Layered(vars);

    let registry = connectors::registry().with_sink(Arc::new(SlackWithButtons));
    let assembled = registry.assemble(&config, &env, |b| b).await?;
    let pipeline = &assembled.pipeline;
    let store: Arc<dyn AuditStore> = Arc::clone(pipeline.store());

    // Approvals: the same IFS environment as the invoices stream.
    let source = IfsBuilder::from_env_with(&env)
        .with_resource(IfsResource::SupplierInvoices)
        .build()?;
    let approvers = Approver::parse_map(&env.var("IFS_APPROVERS").unwrap_or_default())?;
    if approvers.is_empty() {
        println!("warning: IFS_APPROVERS is empty: every approval will be refused");
    }
    let http = ml_connector::http::ClientOptions::default().client()?;
    let mut responder = ml_slack::responder::Responder::new(http);
    if let Some(s) = &slack {
        responder = responder
            .with_allowed_base(&s.root_url())
            .map_err(|e| Error::config("response_url", e.to_string()))?;
    }
    let approvals = Arc::new(
        Approvals::for_source(&source)
            .with_approvers(approvers)
            .with_journal(Arc::clone(&store), DEFAULT_STREAM)
            .with_responder(responder),
    );

    // The Slack receiver, on `[receivers]` (or ML_LISTEN).
    let receivers = config
        .receivers
        .clone()
        .ok_or_else(|| Error::config("receivers", "the example needs [receivers.slack]"))?;
    let slack_receiver = receivers
        .slack
        .clone()
        .ok_or_else(|| Error::config("receivers.slack", "required"))?;
    let secret = interpolate(
        "receivers.slack.signing_secret",
        &slack_receiver.signing_secret,
        &env,
    )?;
    let receiver = Arc::new(
        ml_slack::SlackReceiver::new(SignatureVerifier::new(&secrecy::SecretString::from(secret)))
            .with_handler(approvals.clone()),
    );
    let app = ml_slack::receiver::router(Arc::clone(&receiver), &slack_receiver.path);
    let listen = receivers.listen_addr(&env)?;
    let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| {
        Error::config(
            "receivers.listen",
            format!("cannot listen on {listen}: {e}"),
        )
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::config("receivers.listen", e.to_string()))?;
    println!("Slack receiver on http://{addr}{}", slack_receiver.path);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("receiver stopped: {e}");
        }
    });

    let summary = if once {
        let mut summary = pipeline.run_once().await?;
        // One cycle: also send what is queued behind Slack's 1 msg/s/channel, and retries
        // due within two minutes; later ones stay in the journal for the next run.
        let more = pipeline
            .deliver_coming_due(std::time::Duration::from_secs(120))
            .await?;
        summary.deliveries.merge(&more);
        if let (Some(s), Some(_)) = (&slack, &ifs) {
            demo_approval(
                s,
                &format!("http://{addr}{}", slack_receiver.path),
                &receiver,
            )
            .await;
        }
        summary
    } else {
        println!("polling each stream on its schedule and serving Slack; Ctrl-C to stop");
        pipeline
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?
    };
    if let Some(s) = &slack {
        for m in s.all_messages() {
            let buttons = m
                .blocks
                .as_ref()
                .is_some_and(|b| b.to_string().contains(ml_ifs::approval::APPROVE_ACTION_ID));
            println!(
                "[sandbox slack] {}{}",
                m.text.lines().next().unwrap_or_default(),
                if buttons { "  [Approve] [Reject]" } else { "" }
            );
        }
    }
    println!(
        "summary: polled {}, delivered {}, failed {}, rejected {}",
        summary.polled, summary.deliveries.delivered, summary.deliveries.failed, summary.rejected
    );
    println!(
        "journal: {:?}; approvals: `ml-connector audit --config {} show {DEFAULT_STREAM} \"Company='10',InvoiceId=5001\"`",
        pipeline.store(),
        path.display()
    );
    Ok(())
}

/// Plays a Slack user typing `/approve-invoice 5001`, then prints the answer.
async fn demo_approval(
    slack: &ml_sandbox::slack::SlackEmulator,
    url: &str,
    receiver: &ml_slack::SlackReceiver,
) {
    use ml_sandbox::slack::SlashCommand;
    let caller = slack.caller();
    match caller
        .send_slash_command(url, &SlashCommand::new("/approve-invoice", "5001"))
        .await
    {
        Ok(r) => println!(
            "sandbox: /approve-invoice 5001 -> HTTP {} (acknowledged)",
            r.status
        ),
        Err(e) => {
            println!("sandbox: the slash command failed: {e}");
            return;
        }
    }
    // The command was acknowledged: the receiver counted its work; wait for it to end.
    receiver.idle().await;
    match slack.response_url_posts().last() {
        Some(p) => println!("sandbox: answer in Slack: {}", p.body["text"]),
        None => println!("sandbox: no answer"),
    }
}
