//! End to end on the sandbox: ml-core's `Pipeline` with a memory source and journal,
//! both sinks against the emulators, and both receivers (axum routers on 127.0.0.1)
//! folding out-of-order, duplicated callbacks and events into the journal. Runs on tokio's
//! paused clock: the callback delays are virtual.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ml_core::audit::{AuditQuery, AuditStore, DeliveryFilter, DeliveryStatus, RemoteStatus};
use ml_core::clock::TokioClock;
use ml_core::memory::{MemoryAuditStore, MemorySource, SourceTable};
use ml_core::record::EntityKind;
use ml_core::routing::{Condition, MatchMode, Router, Rule};
use ml_core::{Pipeline, Schedule, Stream};
use ml_sandbox::sendgrid::{MailOutcome, SendGridEmulator};
use ml_sandbox::server::Server;
use ml_sandbox::twilio::{Outcome, TwilioEmulator};
use ml_twilio::receiver::axum_router;
use ml_twilio::{SendGridEventReceiver, TwilioStatusReceiver};

const SMS: usize = 1_000;
const EMAILS: usize = 200;

fn phone(i: usize) -> String {
    format!("+4915{:08}", 10_000_000 + i)
}

#[tokio::test(start_paused = true)]
async fn thousand_sms_two_hundred_emails_out_of_order_callbacks_and_a_replay() {
    let store = Arc::new(MemoryAuditStore::new());
    let tw = TwilioEmulator::builder()
        .out_of_order(true)
        .duplicate_callbacks(true)
        .callback_delay(Duration::from_secs(5))
        .start()
        .await
        .expect("twilio");
    let sg = SendGridEmulator::builder()
        .out_of_order(true)
        .start()
        .await
        .expect("sendgrid");

    // The host's receivers, on their own loopback server.
    let binding = ml_sandbox::server::Binding::new().await.expect("bind");
    let base = binding.base_url();
    let twilio_rx = Arc::new(
        TwilioStatusReceiver::new(tw.auth_token(), format!("{base}twilio/status"))
            .with_clock(Arc::new(TokioClock::default())),
    );
    let sg_rx = Arc::new(
        SendGridEventReceiver::new(&sg.public_key())
            .expect("key")
            .with_clock(Arc::new(TokioClock::default())),
    );
    let store_dyn: Arc<dyn AuditStore> = store.clone();
    let _receivers: Server = binding.serve(
        axum_router::twilio("/twilio/status", twilio_rx, store_dyn.clone()).merge(
            axum_router::sendgrid("/sendgrid/events", sg_rx, store_dyn.clone()),
        ),
    );
    sg.set_event_webhook(format!("{base}sendgrid/events"));

    // Records: every PO texts its buyer; 200 of them also mail the buyer.
    let table = SourceTable::default();
    for i in 0..SMS {
        let mut r = common::po(&format!("{i:04}"), i as i64);
        r.fields.extra.insert("buyer_phone".into(), phone(i));
        if i < EMAILS {
            r.fields
                .extra
                .insert("buyer_email".into(), format!("buyer{i}@example.com"));
            r.fields.extra.insert("notify".into(), "email".into());
        }
        table.upsert(r);
    }
    // Every 50th number is filtered by the carrier (30007); one mailbox bounces.
    let mut expected_failed = Vec::new();
    for i in (0..SMS).step_by(50) {
        tw.set_outcome(&phone(i), Outcome::Undelivered(30007));
        expected_failed.push(phone(i));
    }
    sg.set_outcome("buyer7@example.com", MailOutcome::Bounce);

    let router = Router::new(
        MatchMode::AllMatch,
        vec![
            Rule {
                name: "buyer sms".into(),
                when: vec![Condition::Kind(vec![EntityKind::PurchaseOrder])],
                to: vec!["sms:buyer".into()],
            },
            Rule {
                name: "buyer email".into(),
                when: vec![Condition::Field {
                    field: "notify".into(),
                    values: vec!["email".into()],
                }],
                to: vec!["email:buyer".into()],
            },
        ],
    )
    .expect("router");
    let b =
        common::builder(&tw, Some(&sg)).with_status_callback_url(format!("{base}twilio/status"));
    let pipeline = Pipeline::builder()
        .store(store.clone())
        .stream(Stream::new(
            "pos",
            Arc::new(
                MemorySource::new("pos", EntityKind::PurchaseOrder, table).with_page_size(500),
            ),
            Schedule::every(Duration::from_secs(3600)).expect("schedule"),
        ))
        .router(router)
        .sink("sms", Arc::new(b.build_sms().expect("sms")))
        .sink("email", Arc::new(b.build_email().expect("email")))
        .clock(Arc::new(TokioClock::default()))
        .max_in_flight(64)
        .build()
        .expect("pipeline");

    let summary = pipeline.run_once().await.expect("run");
    assert_eq!(
        summary.deliveries.delivered,
        (SMS + EMAILS) as u64,
        "{summary}"
    );
    tw.wait_callbacks_idle().await;
    sg.wait_events_idle().await;
    assert_eq!(tw.messages().len(), SMS);
    assert_eq!(sg.mails().len(), EMAILS);
    let callbacks = tw.callbacks();
    assert_eq!(callbacks.len(), SMS * 4, "sent + final, each twice");
    assert!(
        callbacks.iter().all(|c| c.answer == Some(204)),
        "every callback verified"
    );
    assert!(sg.event_posts().iter().all(|a| *a == Some(204)));

    let all = store
        .deliveries(&DeliveryFilter::default())
        .await
        .expect("deliveries");
    let by_status: HashMap<(String, DeliveryStatus, Option<RemoteStatus>), usize> =
        all.iter().fold(HashMap::new(), |mut m, d| {
            *m.entry((d.destination.sink.clone(), d.status, d.remote_status))
                .or_default() += 1;
            m
        });
    let failed_sms = expected_failed.len();
    assert_eq!(
        by_status.get(&(
            "sms".into(),
            DeliveryStatus::Delivered,
            Some(RemoteStatus::Delivered)
        )),
        Some(&(SMS - failed_sms)),
        "{by_status:?}"
    );
    assert_eq!(
        by_status.get(&(
            "sms".into(),
            DeliveryStatus::Failed,
            Some(RemoteStatus::Undelivered)
        )),
        Some(&failed_sms),
        "{by_status:?}"
    );
    assert_eq!(
        by_status.get(&(
            "email".into(),
            DeliveryStatus::Delivered,
            Some(RemoteStatus::Delivered)
        )),
        Some(&(EMAILS - 1)),
        "{by_status:?}"
    );
    assert_eq!(
        by_status.get(&(
            "email".into(),
            DeliveryStatus::Failed,
            Some(RemoteStatus::Undelivered)
        )),
        Some(&1),
        "{by_status:?}"
    );
    let failed = store
        .deliveries(&DeliveryFilter::status(DeliveryStatus::Failed))
        .await
        .expect("failed");
    let sms_failed: Vec<_> = failed
        .iter()
        .filter(|d| d.destination.sink == "sms")
        .collect();
    assert!(
        sms_failed
            .iter()
            .all(|d| d.last_error.as_ref().and_then(|e| e.code.as_deref()) == Some("30007"))
    );

    // The carrier relents: replaying one failed delivery sends it again, and it is delivered.
    let target = sms_failed[0];
    let old_sid = target.remote_id.clone().expect("sid");
    let number = tw
        .messages()
        .iter()
        .find(|m| m.sid == old_sid)
        .map(|m| m.to.clone())
        .expect("message");
    tw.set_outcome(&number, Outcome::Delivered);
    pipeline.replay(target.id).await.expect("replay");
    let again = pipeline.deliver_due().await.expect("deliver");
    assert_eq!(again.delivered, 1, "{again:?}");
    tw.wait_callbacks_idle().await;
    let d = store
        .deliveries(&DeliveryFilter {
            id: Some(target.id),
            ..DeliveryFilter::default()
        })
        .await
        .expect("delivery")
        .remove(0);
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_ne!(
        d.remote_id.as_deref(),
        Some(old_sid.as_str()),
        "a new message was sent"
    );
    assert_eq!(tw.messages().iter().filter(|m| m.to == number).count(), 2);
    // The new message's own callbacks are folded in; the failed one's error is gone.
    assert_eq!(d.remote_status, Some(RemoteStatus::Delivered));
    assert_eq!(d.last_error, None);
}

/// A send whose answer never arrives (Twilio applied it; the client timed out) is in
/// doubt; the next attempt reconciles through the Messages list and finds it: one text.
#[tokio::test(start_paused = true)]
async fn a_timed_out_send_is_reconciled_not_sent_twice() {
    let tw = TwilioEmulator::start().await.expect("twilio");
    tw.faults().push(ml_sandbox::fault::FaultRule::on(
        "Messages.json",
        ml_sandbox::fault::Fault::AppliedThenDelayed(Duration::from_secs(120)),
    ));
    let store = Arc::new(MemoryAuditStore::new());
    let table = SourceTable::default();
    let mut r = common::po("0001", 0);
    r.fields.extra.insert("buyer_phone".into(), phone(1));
    table.upsert(r);
    let sink = common::builder(&tw, None)
        .with_client_options(
            ml_core::http::ClientOptions::default().with_timeout(Duration::from_secs(10)),
        )
        .build_sms()
        .expect("sms");
    let pipeline = Pipeline::builder()
        .store(store.clone())
        .stream(Stream::new(
            "pos",
            Arc::new(MemorySource::new("pos", EntityKind::PurchaseOrder, table)),
            Schedule::every(Duration::from_secs(3600)).expect("schedule"),
        ))
        .router(
            Router::new(
                MatchMode::AllMatch,
                vec![Rule {
                    name: "buyer sms".into(),
                    when: vec![Condition::Kind(vec![EntityKind::PurchaseOrder])],
                    to: vec!["sms:buyer".into()],
                }],
            )
            .expect("router"),
        )
        .sink("sms", Arc::new(sink))
        .clock(Arc::new(TokioClock::default()))
        .build()
        .expect("pipeline");
    let first = pipeline.run_once().await.expect("run");
    assert_eq!(first.deliveries.in_doubt, 1, "{first}");
    let mut reconciled = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(30)).await;
        reconciled += pipeline.deliver_due().await.expect("deliver").reconciled;
        if reconciled > 0 {
            break;
        }
    }
    assert_eq!(reconciled, 1);
    assert_eq!(tw.messages().len(), 1, "one text, not two");
    let d = store
        .deliveries(&DeliveryFilter::default())
        .await
        .expect("d")
        .remove(0);
    assert_eq!(d.status, DeliveryStatus::Delivered);
    assert_eq!(d.remote_id.as_deref(), Some(tw.messages()[0].sid.as_str()));
    assert_eq!(d.resent_after_doubt, 0);
}
