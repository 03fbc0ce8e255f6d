//! Both sinks against the emulators: conformance, error classification, reconcile after
//! an in-doubt send, length policies, symbolic recipients.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ml_core::ErrorClass;
use ml_core::sink::{Destination, Reconciled, Sink};
use ml_core::testing::sink_conformance;
use ml_sandbox::fault::{Fault, FaultRule};
use ml_sandbox::sendgrid::SendGridEmulator;
use ml_sandbox::twilio::TwilioEmulator;
use ml_twilio::recipients::{Channel, MemoryDirectory, Role};
use ml_twilio::segments::{LengthPolicy, measure};

use common::{builder, outbound, po};

#[tokio::test]
async fn both_sinks_conform() {
    let tw = TwilioEmulator::start().await.expect("twilio");
    let sg = SendGridEmulator::start().await.expect("sendgrid");
    let b = builder(&tw, Some(&sg));
    let sms = b.build_sms().expect("sms");
    sink_conformance(
        &sms,
        &Destination::new("sms", "+4915112345678"),
        1,
        &[tw.auth_token()],
    )
    .await;
    let email = b.build_email().expect("email");
    sink_conformance(
        &email,
        &Destination::new("email", "ap@example.com"),
        1,
        &[sg.api_key()],
    )
    .await;
    // API key auth works too.
    let (k, s) = tw.api_key();
    let by_key = b.clone().with_api_key(k, s).build_sms().expect("sms");
    sink_conformance(
        &by_key,
        &Destination::new("sms", "+4915112345679"),
        10,
        &[s, tw.auth_token()],
    )
    .await;
    assert_eq!(tw.messages().len(), 2);
    assert_eq!(sg.mails().len(), 1);
}

#[tokio::test]
async fn twilio_errors_are_classified() {
    let tw = TwilioEmulator::start().await.expect("twilio");
    let sms = builder(&tw, None).build_sms().expect("sms");
    let r = po("1", 0);
    let send = |to: &str| outbound(&sms, 1, Destination::new("sms", to), &r);
    // Local E.164 check: nothing sent.
    let e = sms.send(&send("0151 1234")).await.expect_err("invalid");
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert_eq!(e.code(), Some("invalid_e164"));
    tw.opt_out("+4915100000001");
    let e = sms
        .send(&send("+4915100000001"))
        .await
        .expect_err("opted out");
    assert_eq!(
        (e.class(), e.code()),
        (ErrorClass::Permanent, Some("21610"))
    );
    assert!(e.to_string().contains("unsubscribed"), "{e}");
    tw.block_region("+8613800000000");
    let e = sms.send(&send("+8613800000000")).await.expect_err("region");
    assert_eq!(
        (e.class(), e.code()),
        (ErrorClass::Permanent, Some("21408"))
    );
    tw.faults().push(FaultRule::on(
        "Messages.json",
        Fault::TooManyRequests { retry_after: 2 },
    ));
    let e = sms.send(&send("+4915100000002")).await.expect_err("429");
    assert_eq!(
        e.class().retry_after(),
        Some(std::time::Duration::from_secs(2))
    );
    assert_eq!(e.code(), Some("20429"));
    tw.faults()
        .push(FaultRule::on("Messages.json", Fault::Status(503)));
    assert_eq!(
        sms.send(&send("+4915100000002"))
            .await
            .expect_err("503")
            .class(),
        ErrorClass::InDoubt,
        "a 5xx may come after the message was created: reconcile before resending"
    );
    assert_eq!(tw.messages().len(), 0);
    let bad = builder(&tw, None)
        .with_auth_token("wrong")
        .build_sms()
        .expect("sms");
    let e = bad.send(&send("+4915100000002")).await.expect_err("401");
    assert!(matches!(e, ml_core::Error::Auth { .. }), "{e}");
    assert!(!e.to_string().contains("wrong"));
    assert!(bad.healthcheck().await.is_err());
    assert!(sms.healthcheck().await.is_ok());
}

#[tokio::test]
async fn a_dropped_answer_is_in_doubt_and_reconcile_finds_it() {
    let tw = TwilioEmulator::start().await.expect("twilio");
    let sms = builder(&tw, None).build_sms().expect("sms");
    let r = po("7", 0);
    let msg = outbound(&sms, 77, Destination::new("sms", "+4915112345678"), &r);
    tw.faults()
        .push(FaultRule::on("Messages.json", Fault::AppliedThenDropped));
    let e = sms.send(&msg).await.expect_err("dropped");
    assert_eq!(e.class(), ErrorClass::InDoubt);
    match sms.reconcile(&msg).await.expect("reconcile") {
        Reconciled::Found(receipt) => assert_eq!(receipt.remote_id, tw.messages()[0].sid),
        Reconciled::NotFound => panic!("the applied message was not found"),
    }
    // Same text, another delivery: the marker tells them apart.
    let other = outbound(&sms, 78, Destination::new("sms", "+4915112345678"), &r);
    assert_eq!(
        sms.reconcile(&other).await.expect("reconcile"),
        Reconciled::NotFound
    );
    tw.faults()
        .push(FaultRule::on("Messages.json", Fault::DropBeforeResponse));
    let e = sms.send(&other).await.expect_err("dropped before");
    assert_eq!(
        e.class(),
        ErrorClass::InDoubt,
        "a POST whose connection dropped is in doubt"
    );
    assert_eq!(
        sms.reconcile(&other).await.expect("reconcile"),
        Reconciled::NotFound
    );
}

/// Right after an in-doubt send the message is usually still `queued`: it has no
/// `date_sent` yet, and a `DateSent` filter would hide it (and the text would go twice).
#[tokio::test]
async fn reconcile_finds_a_message_still_queued() {
    let tw = TwilioEmulator::builder()
        .callback_delay(Duration::from_secs(3600))
        .start()
        .await
        .expect("twilio");
    let sms = builder(&tw, None)
        .with_status_callback_url("http://127.0.0.1:9/twilio/status")
        .build_sms()
        .expect("sms");
    let r = po("8", 0);
    let msg = outbound(&sms, 81, Destination::new("sms", "+4915112345678"), &r);
    tw.faults()
        .push(FaultRule::on("Messages.json", Fault::AppliedThenDropped));
    let e = sms.send(&msg).await.expect_err("dropped");
    assert_eq!(e.class(), ErrorClass::InDoubt);
    assert_eq!(tw.messages()[0].status, "queued");
    assert_eq!(tw.messages()[0].sent, None);
    match sms.reconcile(&msg).await.expect("reconcile") {
        Reconciled::Found(receipt) => assert_eq!(receipt.remote_id, tw.messages()[0].sid),
        Reconciled::NotFound => panic!("the queued message was not found: it would go twice"),
    }
}

#[tokio::test]
async fn reconcile_pages_through_a_busy_number() {
    let tw = TwilioEmulator::start().await.expect("twilio");
    let sms = builder(&tw, None).build_sms().expect("sms");
    let first = outbound(
        &sms,
        1,
        Destination::new("sms", "+4915112345678"),
        &po("first", 0),
    );
    sms.send(&first).await.expect("send");
    for i in 2..260 {
        sms.send(&outbound(
            &sms,
            i,
            Destination::new("sms", "+4915112345678"),
            &po(&i.to_string(), i),
        ))
        .await
        .expect("send");
    }
    assert!(matches!(
        sms.reconcile(&first).await.expect("reconcile"),
        Reconciled::Found(_)
    ));
}

#[tokio::test]
async fn long_bodies_are_truncated_or_refused() {
    let tw = TwilioEmulator::start().await.expect("twilio");
    let mut r = po("9", 0);
    r.fields.supplier = Some("Łódź ".repeat(80));
    let dest = Destination::new("sms", "+4915112345678");
    let truncating = builder(&tw, None)
        .with_length_policy(LengthPolicy::Truncate { max_segments: 2 })
        .build_sms()
        .expect("sms");
    truncating
        .send(&outbound(&truncating, 1, dest.clone(), &r))
        .await
        .expect("send");
    let stored = &tw.messages()[0];
    let l = measure(&stored.body);
    assert_eq!(l.segments, 2);
    assert!(stored.body.ends_with("… (ref 1)"), "{}", stored.body);
    assert_eq!(stored.num_segments, 2);
    let refusing = builder(&tw, None)
        .with_length_policy(LengthPolicy::Refuse { max_segments: 2 })
        .build_sms()
        .expect("sms");
    let e = refusing
        .send(&outbound(&refusing, 2, dest, &r))
        .await
        .expect_err("too long");
    assert_eq!(
        (e.class(), e.code()),
        (ErrorClass::Permanent, Some("too_many_segments"))
    );
    assert_eq!(tw.messages().len(), 1);
}

#[tokio::test]
async fn symbolic_recipients_resolve_from_fields_and_directory() {
    let tw = TwilioEmulator::start().await.expect("twilio");
    let sg = SendGridEmulator::start().await.expect("sendgrid");
    let dir = MemoryDirectory::new()
        .with(Role::Supplier, "V100", Channel::Sms, "+4915112340000")
        .with(
            Role::CostCenter,
            "CC-10",
            Channel::Email,
            "cc10@example.com",
        );
    let b = builder(&tw, Some(&sg)).with_directory(Arc::new(dir));
    let sms = b.build_sms().expect("sms");
    let email = b.build_email().expect("email");
    let mut r = po("5", 0);
    r.fields.extra.insert(
        "buyer_email".into(),
        "ann@example.com;bob@example.com".into(),
    );
    sms.send(&outbound(&sms, 1, Destination::new("sms", "supplier"), &r))
        .await
        .expect("sms");
    assert_eq!(tw.messages()[0].to, "+4915112340000");
    email
        .send(&outbound(&email, 2, Destination::new("email", "buyer"), &r))
        .await
        .expect("buyer");
    email
        .send(&outbound(
            &email,
            3,
            Destination::new("email", "cost_center"),
            &r,
        ))
        .await
        .expect("cc");
    let mails = sg.mails();
    assert_eq!(
        mails[0].body["personalizations"][0]["to"]
            .as_array()
            .expect("to")
            .len(),
        2
    );
    assert_eq!(
        mails[1].body["personalizations"][0]["to"][0]["email"],
        "cc10@example.com"
    );
    let e = sms
        .send(&outbound(&sms, 4, Destination::new("sms", "buyer"), &r))
        .await
        .expect_err("none");
    assert_eq!(e.code(), Some("unresolved_recipient"));
}

#[tokio::test]
async fn sendgrid_errors_are_classified() {
    let tw = TwilioEmulator::start().await.expect("twilio");
    let sg = SendGridEmulator::builder()
        .max_body(2_000)
        .start()
        .await
        .expect("sendgrid");
    let email = builder(&tw, Some(&sg)).build_email().expect("email");
    let r = po("3", 0);
    let e = email
        .send(&outbound(
            &email,
            1,
            Destination::new("email", "not-an-address"),
            &r,
        ))
        .await
        .expect_err("bad");
    assert_eq!(e.code(), Some("invalid_email"));
    sg.faults().push(FaultRule::on(
        "send",
        Fault::TooManyRequests { retry_after: 5 },
    ));
    let e = email
        .send(&outbound(
            &email,
            1,
            Destination::new("email", "a@example.com"),
            &r,
        ))
        .await
        .expect_err("429");
    assert!(e.class().is_retryable());
    sg.faults().push(FaultRule::on("send", Fault::Status(500)));
    assert_eq!(
        email
            .send(&outbound(
                &email,
                1,
                Destination::new("email", "a@example.com"),
                &r
            ))
            .await
            .expect_err("500")
            .class(),
        ErrorClass::InDoubt,
        "the mail may have been accepted"
    );
    let mut big = r.clone();
    big.fields.reference = Some("x".repeat(3_000));
    let e = email
        .send(&outbound(
            &email,
            1,
            Destination::new("email", "a@example.com"),
            &big,
        ))
        .await
        .expect_err("413");
    assert_eq!(
        (e.class(), e.code()),
        (ErrorClass::Permanent, Some("http_413"))
    );
    let bad = builder(&tw, Some(&sg))
        .with_sendgrid_api_key("SG.wrong")
        .build_email()
        .expect("email");
    let e = bad
        .send(&outbound(
            &bad,
            1,
            Destination::new("email", "a@example.com"),
            &r,
        ))
        .await
        .expect_err("403");
    assert!(matches!(e, ml_core::Error::Auth { .. }));
    let bad_from = builder(&tw, Some(&sg))
        .with_sendgrid_from("erp@localhost")
        .build_email()
        .expect("email");
    let e = bad_from
        .send(&outbound(
            &bad_from,
            1,
            Destination::new("email", "a@example.com"),
            &r,
        ))
        .await
        .expect_err("400");
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(e.to_string().contains("from.email"), "{e}");
}

/// `check` verifies the SendGrid key with `GET /v3/scopes`, which is outside the Mail Send
/// API: where it is not served (404) the key cannot be judged and passes; a refused key
/// fails.
#[tokio::test]
async fn the_sendgrid_check_passes_where_scopes_is_not_served_and_fails_a_refused_key() {
    let tw = TwilioEmulator::start().await.expect("twilio");
    let sg = SendGridEmulator::start().await.expect("sendgrid");
    let email = builder(&tw, Some(&sg)).build_email().expect("email");
    email.healthcheck().await.expect("served and accepted");
    sg.faults()
        .push(FaultRule::on("/v3/scopes", Fault::Status(404)));
    email.healthcheck().await.expect("not served: not judged");
    assert_eq!(sg.faults().pending_rules(), 0, "the 404 was answered");
    let bad = builder(&tw, Some(&sg))
        .with_sendgrid_api_key("SG.wrong")
        .build_email()
        .expect("email");
    let e = bad.healthcheck().await.expect_err("refused key");
    assert!(!e.to_string().contains("SG.wrong"), "{e}");
    // A key that may read its profile but not send mail could send nothing.
    sg.faults().push(FaultRule::on(
        "/v3/scopes",
        Fault::StatusWithBody {
            status: 200,
            content_type: "application/json".into(),
            body: r#"{"scopes":["user.profile.read"]}"#.into(),
        },
    ));
    let e = email.healthcheck().await.expect_err("no mail.send");
    assert!(e.to_string().contains("mail.send"), "{e}");
    assert_eq!(e.class(), ErrorClass::Permanent);
}

/// SendGrid counts arrivals against a window and says so in `X-RateLimit-*`: once an
/// answer reports the budget spent, the next mail waits for the reset instead of drawing
/// a 429. Virtual time: the emulator and the sink share the clock.
#[tokio::test(start_paused = true)]
async fn sendgrid_mail_waits_for_a_spent_budget_to_reset_instead_of_a_429() {
    let clock: Arc<dyn ml_core::clock::Clock> = Arc::new(ml_core::clock::TokioClock::starting_at(
        "2026-03-01T08:00:10Z".parse().expect("t"),
    ));
    let tw = TwilioEmulator::start().await.expect("twilio");
    let sg = SendGridEmulator::builder()
        .clock(Arc::clone(&clock))
        .rate_limit(3, 60)
        .start()
        .await
        .expect("sendgrid");
    let email = builder(&tw, Some(&sg))
        .with_clock(Arc::clone(&clock))
        .build_email()
        .expect("email");
    let started = tokio::time::Instant::now();
    for i in 0..7 {
        let msg = outbound(
            &email,
            100 + i,
            Destination::new("email", "ap@example.com"),
            &po(&i.to_string(), 0),
        );
        email.send(&msg).await.expect("sent without a 429");
    }
    assert_eq!(sg.mails().len(), 7);
    assert_eq!(
        sg.faults().status_count("send", 429),
        0,
        "never over the budget"
    );
    // Three a window: the 4th waited for 08:01:00, the 7th for 08:02:00.
    assert!(
        started.elapsed() >= Duration::from_secs(110),
        "{:?}",
        started.elapsed()
    );
}
