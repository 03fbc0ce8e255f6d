//! No secret in the logs or the journal: a full pipeline (Oracle Fusion -> Slack, Twilio
//! SMS, SendGrid email) and the three receivers run against the emulators with failures
//! on every path (401, 5xx, an invalid channel, the Oracle token endpoint refusing, wrong
//! credentials, forged callbacks) while every `tracing` event at TRACE is captured. Then
//! the captured text and the raw journal files (the SQLite database and its `-wal`) are
//! searched for every credential, the Basic header, and the Slack `response_url`: zero
//! hits.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use ml_core::audit::{AuditStore, DeliveryFilter, DeliveryStatus};
use ml_core::clock::TokioClock;
use ml_core::http::ClientOptions;
use ml_core::record::EntityKind;
use ml_core::retry::RetryPolicy;
use ml_core::routing::{Condition, MatchMode, Router, Rule};
use ml_core::source::Source as _;
use ml_core::{Pipeline, Schedule, Stream};
use ml_oracle_fusion::OracleFusionBuilder;
use ml_sandbox::fault::{Fault, FaultRule};
use ml_sandbox::oracle::{OracleEmulator, invoice_json};
use ml_sandbox::sendgrid::SendGridEmulator;
use ml_sandbox::server::{Binding, Server};
use ml_sandbox::slack::{SendOptions, SlackEmulator, SlashCommand};
use ml_sandbox::twilio::TwilioEmulator;
use ml_slack::SlackBuilder;
use ml_slack::events::Inbound;
use ml_slack::responder::{Responder, ResponseMessage};
use ml_store::{SqliteAuditStore, SqliteReplayCache};
use ml_twilio::receiver::axum_router;
use ml_twilio::{SendGridEventReceiver, TwilioBuilder, TwilioStatusReceiver};
use tracing_subscriber::fmt::MakeWriter;

/// Every byte the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Where `needle` occurs in `hay`, with some context, or `None`.
fn find(hay: &[u8], needle: &str) -> Option<String> {
    let n = needle.as_bytes();
    if n.is_empty() {
        return None;
    }
    hay.windows(n.len()).position(|w| w == n).map(|i| {
        let from = i.saturating_sub(120);
        let to = (i + n.len() + 120).min(hay.len());
        String::from_utf8_lossy(&hay[from..to]).into_owned()
    })
}

fn journal_files(db: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for suffix in ["", "-wal"] {
        let p = format!("{}{suffix}", db.display());
        if let Ok(bytes) = std::fs::read(&p) {
            out.push((p, bytes));
        }
    }
    out
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .with_base_delay(Duration::from_millis(100))
        .with_max_attempts(4)
}

#[tokio::test(start_paused = true)]
async fn no_secret_reaches_the_logs_or_the_journal() {
    let logs = Captured::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(logs.clone())
            .finish(),
    )
    .expect("the only subscriber of this test process");

    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ml-audit.db");
    let journal = SqliteAuditStore::open(&db).expect("journal");

    let slack = SlackEmulator::start().await.expect("slack");
    let tw = TwilioEmulator::start().await.expect("twilio");
    let sg = SendGridEmulator::start().await.expect("sendgrid");
    let oracle = OracleEmulator::start().await.expect("oracle");

    // The host's receivers on one loopback server; Twilio's replay cache is the journal.
    let binding = Binding::new().await.expect("bind");
    let base = binding.base_url();
    let slack_builder = SlackBuilder::new()
        .with_bot_token(slack.bot_token())
        .with_api_url(slack.base_url())
        .with_signing_secret(slack.signing_secret())
        .with_oauth_client(slack.client_id(), slack.client_secret());
    let (slack_rx, mut inbox) = slack_builder
        .build_receiver()
        .expect("receiver")
        .with_channel(16);
    let twilio_rx = Arc::new(
        TwilioStatusReceiver::new(tw.auth_token(), format!("{base}twilio/status"))
            .with_replay_cache(Arc::new(SqliteReplayCache::new(&journal))),
    );
    let sg_rx = Arc::new(SendGridEventReceiver::new(&sg.public_key()).expect("sg key"));
    let store: Arc<dyn AuditStore> = Arc::new(journal.clone());
    let _server: Server = binding.serve(
        ml_slack::receiver::router(Arc::new(slack_rx), "/slack")
            .merge(axum_router::twilio(
                "/twilio/status",
                twilio_rx,
                store.clone(),
            ))
            .merge(axum_router::sendgrid(
                "/sendgrid/events",
                sg_rx,
                store.clone(),
            )),
    );
    sg.set_event_webhook(format!("{base}sendgrid/events"));

    // Three invoices; failures on every outbound path.
    let t0: Timestamp = "2026-03-01T08:00:00Z".parse().expect("t0");
    for i in 1..=3 {
        oracle.upsert_raw(
            "invoices",
            &invoice_json(
                i,
                t0 + SignedDuration::from_secs(i),
                "1200.50",
                "Müller GmbH",
            ),
        );
    }
    oracle.faults().push(
        FaultRule::on(
            "/oauth2/v1/token",
            Fault::StatusWithBody {
                status: 401,
                content_type: "application/json".into(),
                body: r#"{"error":"invalid_client","error_description":"bad client"}"#.into(),
            },
        )
        .times(1),
    );
    slack
        .faults()
        .push(FaultRule::on("chat.postMessage", Fault::Status(401)).times(1));
    slack
        .faults()
        .push(FaultRule::on("chat.postMessage", Fault::Status(500)).times(1));
    tw.faults()
        .push(FaultRule::on("Messages.json", Fault::Status(401)).times(1));
    tw.faults()
        .push(FaultRule::on("Messages.json", Fault::Status(503)).times(1));
    sg.faults()
        .push(FaultRule::on("send", Fault::Status(401)).times(1));
    sg.faults()
        .push(FaultRule::on("send", Fault::Status(500)).times(1));

    let source = OracleFusionBuilder::new()
        .with_url(oracle.base_url())
        .with_client_credentials(
            oracle.token_url(),
            oracle.client_id(),
            oracle.client_secret(),
        )
        .with_scope("urn:opc:resource:consumer::all")
        .with_retry(fast_retry())
        .build()
        .expect("source");
    let tw_builder = TwilioBuilder::new()
        .with_account_sid(tw.account_sid())
        .with_auth_token(tw.auth_token())
        .with_from("+15005550006")
        .with_api_url(tw.base_url())
        .with_status_callback_url(format!("{base}twilio/status"))
        .with_sendgrid_api_key(sg.api_key())
        .with_sendgrid_api_url(sg.base_url())
        .with_sendgrid_from("erp@example.com");
    let router = Router::new(
        MatchMode::AllMatch,
        vec![Rule {
            name: "everyone".into(),
            when: vec![Condition::Kind(vec![EntityKind::SupplierInvoice])],
            to: vec![
                "slack:#general".into(),
                "slack:#no-such-channel".into(),
                "sms:+4915100000001".into(),
                "email:buyer@example.com".into(),
            ],
        }],
    )
    .expect("router");
    // A 401 holds its destination for the slow pause (not failed): short here, so the
    // fixed credentials (the faults fire once) go through within the test.
    let pipeline = Pipeline::builder()
        .permanent_pause(Duration::from_secs(20))
        .store(store.clone())
        .stream(Stream::new(
            "invoices",
            Arc::new(source),
            Schedule::every(Duration::from_secs(600)).expect("schedule"),
        ))
        .router(router)
        .sink(
            "slack",
            Arc::new(slack_builder.build().expect("slack sink")),
        )
        .sink("sms", Arc::new(tw_builder.build_sms().expect("sms sink")))
        .sink(
            "email",
            Arc::new(tw_builder.build_email().expect("email sink")),
        )
        .clock(Arc::new(TokioClock::default()))
        .retry(fast_retry())
        .build()
        .expect("pipeline");

    // The first cycle meets the token endpoint's 401; the stream backs off, then a later
    // cycle reads and plans (virtual time: the waits are instant).
    for _ in 0..30 {
        let _ = pipeline.run_once().await;
        let planned = store
            .deliveries(&DeliveryFilter::default())
            .await
            .expect("deliveries");
        if !planned.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    for _ in 0..30 {
        let _ = pipeline.deliver_due().await;
        let open = store
            .deliveries(&DeliveryFilter::default())
            .await
            .expect("deliveries")
            .iter()
            .filter(|d| !d.status.is_terminal())
            .count();
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let all = store
        .deliveries(&DeliveryFilter::default())
        .await
        .expect("deliveries");
    assert_eq!(all.len(), 12, "3 invoices x 4 destinations");
    assert!(
        all.iter().any(|d| d.status == DeliveryStatus::Delivered),
        "{all:?}"
    );
    assert!(all.iter().all(|d| d.status.is_terminal()), "{all:?}");
    assert!(
        all.iter().any(|d| d.status == DeliveryStatus::Failed),
        "the invalid channel fails"
    );

    // Wrong Oracle credentials: the token endpoint's refusal, as a host would log it.
    let wrong = OracleFusionBuilder::new()
        .with_url(oracle.base_url())
        .with_client_credentials(oracle.token_url(), oracle.client_id(), "wrong-secret-4711")
        .with_retry(fast_retry())
        .build()
        .expect("source");
    let err = wrong.poll(None).await.expect_err("refused");
    tracing::error!(error = %err, debug = ?err, "oracle poll failed");

    // Slack calling us: a slash command (with its response_url), answered through it,
    // and a forged one.
    let slack_url = format!("{base}slack");
    let caller = slack.caller();
    let resp = caller
        .send_slash_command(&slack_url, &SlashCommand::new("/approve-invoice", "INV-1"))
        .await
        .expect("command");
    assert_eq!(resp.status, 200);
    let Inbound::SlashCommand(command) = inbox.recv().await.expect("handed off").inbound else {
        panic!("not a command");
    };
    let response_url = command.response_url.clone().expect("response_url");
    let responder = Responder::new(ClientOptions::default().client().expect("http"))
        .with_allowed_base(&format!("{}commands/", slack.root_url()))
        .expect("base");
    responder
        .respond(&response_url, &ResponseMessage::new("INV-1 approved"))
        .await
        .expect("responded");
    let forged = caller
        .send_slash_command_with(
            &slack_url,
            &SlashCommand::new("/approve-invoice", "INV-2"),
            &SendOptions::default().signature(format!("v0={}", "0".repeat(64))),
        )
        .await
        .expect("forged");
    assert_eq!(forged.status, 401);

    // Bad callbacks to the Twilio and SendGrid receivers.
    let client = ClientOptions::default().client().expect("http");
    let bad_twilio = client
        .post(format!("{base}twilio/status?delivery_id=1"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", "bm90IGEgc2lnbmF0dXJl")
        .body("MessageSid=SM1&MessageStatus=delivered")
        .send()
        .await
        .expect("sent");
    assert_eq!(bad_twilio.status(), 401);
    let bad_sendgrid = client
        .post(format!("{base}sendgrid/events"))
        .header("content-type", "application/json")
        .header(
            "x-twilio-email-event-webhook-signature",
            "bm90IGEgc2lnbmF0dXJl",
        )
        .header(
            "x-twilio-email-event-webhook-timestamp",
            Timestamp::now().as_second().to_string(),
        )
        .body("[]")
        .send()
        .await
        .expect("sent");
    assert_eq!(bad_sendgrid.status(), 401);
    tw.wait_callbacks_idle().await;
    sg.wait_events_idle().await;

    // What must never appear.
    let (api_key_sid, api_key_secret) = tw.api_key();
    let basic = |user: &str, password: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    };
    let secrets: Vec<(&str, String)> = vec![
        ("Slack bot token", slack.bot_token()),
        ("Slack app token", slack.app_token()),
        ("Slack signing secret", slack.signing_secret()),
        ("Slack client secret", slack.client_secret()),
        ("Slack verification token", slack.verification_token()),
        ("Slack response_url", response_url.clone()),
        (
            "Slack response_url path",
            response_url
                .split_once("commands/")
                .map(|(_, p)| p.to_owned())
                .unwrap_or_default(),
        ),
        ("Twilio auth token", tw.auth_token().to_owned()),
        ("Twilio API key secret", api_key_secret.to_owned()),
        (
            "Twilio Basic header",
            basic(tw.account_sid(), tw.auth_token()),
        ),
        ("Twilio API key Basic", basic(api_key_sid, api_key_secret)),
        ("SendGrid API key", sg.api_key().to_owned()),
        ("Oracle client secret", oracle.client_secret().to_owned()),
        ("Oracle wrong client secret", "wrong-secret-4711".to_owned()),
        ("Oracle password", oracle.password().to_owned()),
        (
            "Oracle client Basic",
            basic(oracle.client_id(), oracle.client_secret()),
        ),
        ("a bearer header", "Bearer ".to_owned()),
    ];
    let text = logs.text();
    assert!(
        text.contains("refused") && text.contains("TRACE") && text.len() > 10_000,
        "the subscriber captured the run ({} bytes)",
        text.len()
    );
    let mut hits = Vec::new();
    for (what, secret) in &secrets {
        assert!(secret.len() >= 6, "{what} is a real value");
        if let Some(at) = find(text.as_bytes(), secret) {
            hits.push(format!("logs: {what}: …{at}…"));
        }
        for (file, bytes) in journal_files(&db) {
            if let Some(at) = find(&bytes, secret) {
                hits.push(format!("{file}: {what}: …{at}…"));
            }
        }
    }
    assert!(
        journal_files(&db).len() == 2,
        "both the database and its WAL were searched"
    );
    assert!(hits.is_empty(), "secrets leaked:\n{}", hits.join("\n"));
}
