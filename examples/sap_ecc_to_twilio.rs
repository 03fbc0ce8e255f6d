//! SAP ECC -> Twilio SMS + SendGrid email (seed 001), embedded in your own program: an SMS
//! to the buyer for every new purchase order (number by purchasing group), an email to
//! accounts payable for every vendor invoice, and the example itself serves the signed
//! Twilio status-callback and SendGrid event receivers, so the journal ends up with
//! delivered / undelivered per message. Pipeline, routes and recipients live in
//! `examples/config/sap_ecc_to_twilio.toml`.
//!
//! ```text
//! cargo run --features cli,sap-ecc,twilio,sandbox --example sap_ecc_to_twilio -- --once
//! ```
//!
//! * For each of SAP ECC (`SAP_ECC_URL`), Twilio (`TWILIO_ACCOUNT_SID`) and SendGrid
//!   (`SENDGRID_API_KEY`) left unset, its emulator starts in-process on 127.0.0.1 and it
//!   says so. In the sandbox, buyer 003's phone cannot receive SMS: its message ends
//!   `undelivered` (30003) in the journal.
//! * The receivers listen on a free loopback port (`ML_LISTEN` overrides it; with real
//!   Twilio/SendGrid they must be reachable at `TWILIO_STATUS_CALLBACK_URL` and the
//!   SendGrid Event Webhook URL).
//! * `--once` runs one cycle per stream, waits for the callbacks and prints each
//!   delivery's remote status; otherwise it polls on schedule until Ctrl-C.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ml_connector::audit::DeliveryFilter;
use ml_connector::config::{Env, PipelineConfig, ProcessEnv};
use ml_connector::{AuditStore, Error, Result, connectors, serve};
use ml_sandbox::Emulator as _;

/// The example's own variables first, then the process environment.
struct Layered(BTreeMap<String, String>);

impl Env for Layered {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned().or_else(|| ProcessEnv.var(name))
    }
}

fn unset(name: &str) -> bool {
    ProcessEnv.var(name).is_none_or(|v| v.trim().is_empty())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let once = args.iter().any(|a| a == "--once");
    let path = args.iter().find(|a| !a.starts_with("--")).map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/config/sap_ecc_to_twilio.toml"
            ))
        },
        PathBuf::from,
    );
    let mut config = PipelineConfig::from_file(&path)?;

    // The receivers' address is needed before the sinks are built (callback URLs).
    let listen = match ProcessEnv.var("ML_LISTEN") {
        Some(l) if !l.trim().is_empty() => l,
        _ => {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")
                .map_err(|e| Error::config("receivers.listen", e.to_string()))?;
            let addr = probe
                .local_addr()
                .map_err(|e| Error::config("receivers.listen", e.to_string()))?;
            addr.to_string()
        }
    };
    if let Some(r) = config.receivers.as_mut() {
        r.listen.clone_from(&listen);
    }
    let local = format!("http://{listen}");

    let mut vars = BTreeMap::new();
    let sap = if unset("SAP_ECC_URL") {
        let e = ml_sandbox::sap_ecc::SapEccEmulator::start()
            .await
            .map_err(|e| Error::config("SAP_ECC_URL", e.to_string()))?;
        let traps = e.load_traps();
        for (k, v) in e.env() {
            vars.insert(k.to_owned(), v);
        }
        println!(
            "no SAP_ECC_URL set: using the in-process SAP ECC sandbox (SOAP-RFC) at {} with demo data",
            e.base_url()
        );
        Some((e, traps))
    } else {
        None
    };
    let twilio = if unset("TWILIO_ACCOUNT_SID") {
        let e = ml_sandbox::twilio::TwilioEmulator::builder()
            .callback_delay(Duration::from_millis(300))
            .start()
            .await
            .map_err(|e| Error::config("TWILIO_ACCOUNT_SID", e.to_string()))?;
        let bad = sap
            .as_ref()
            .map_or("+15005550009", |(_, t)| t.undeliverable_phone.as_str());
        e.set_outcome(bad, ml_sandbox::twilio::Outcome::Undelivered(30003));
        for (k, v) in e.env() {
            vars.insert(k.to_owned(), v);
        }
        vars.insert("TWILIO_FROM".into(), "+15005550006".into());
        vars.insert(
            "TWILIO_STATUS_CALLBACK_URL".into(),
            format!("{local}/twilio/status"),
        );
        println!(
            "no TWILIO_ACCOUNT_SID set: using the in-process Twilio sandbox at {}",
            e.base_url()
        );
        Some(e)
    } else {
        None
    };
    let sendgrid = if unset("SENDGRID_API_KEY") {
        let e = ml_sandbox::sendgrid::SendGridEmulator::builder()
            .event_webhook(format!("{local}/sendgrid/events"))
            .event_delay(Duration::from_millis(300))
            .start()
            .await
            .map_err(|e| Error::config("SENDGRID_API_KEY", e.to_string()))?;
        for (k, v) in e.env() {
            vars.insert(k.to_owned(), v);
        }
        vars.insert("SENDGRID_FROM".into(), "erp@example.com".into());
        vars.insert("SENDGRID_WEBHOOK_PUBLIC_KEY".into(), e.public_key());
        println!(
            "no SENDGRID_API_KEY set: using the in-process SendGrid sandbox at {}",
            e.base_url()
        );
        Some(e)
    } else {
        None
    };
    let env = Layered(vars);

    let assembled = connectors::assemble(&config, &env).await?;
    let pipeline = &assembled.pipeline;
    let store: Arc<dyn AuditStore> = Arc::clone(pipeline.store());
    let receivers = config.receivers.as_ref().ok_or_else(|| {
        Error::config(
            "receivers",
            "the example serves the receivers: keep [receivers]",
        )
    })?;
    let app = serve::router(receivers, &store, &env, None)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, server) = serve::bind(receivers, &ProcessEnv, app, async {
        let _ = stop_rx.await;
    })
    .await?;
    println!("receivers: http://{addr}/twilio/status and http://{addr}/sendgrid/events");

    let summary = if once {
        let summary = pipeline.run_once().await?;
        // Let the status callbacks and events arrive.
        if let Some(t) = &twilio {
            t.wait_callbacks_idle().await;
        }
        if sendgrid.is_some() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        summary
    } else {
        println!("polling each stream on its schedule; Ctrl-C to stop");
        pipeline
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?
    };
    for d in store.deliveries(&DeliveryFilter::default()).await? {
        println!(
            "{} {} -> {}: {:?}, remote {}",
            d.stream,
            d.record_key,
            d.destination,
            d.status,
            d.remote_status.map_or_else(
                || "no callback yet".to_owned(),
                |s| format!("{s:?}").to_lowercase()
            )
        );
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    for line in assembled.sandbox_report() {
        println!("{line}");
    }
    println!(
        "summary: polled {}, delivered {}, failed {}, rejected {}",
        summary.polled, summary.deliveries.delivered, summary.deliveries.failed, summary.rejected
    );
    drop(sap);
    Ok(())
}
