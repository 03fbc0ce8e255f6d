//! The axum routers of the receivers: what they answer to forged, unsigned, oversized and
//! valid requests, (Out-of-order and duplicate callbacks folding into the journal: tests/pipeline.rs.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use jiff::Timestamp;
use ml_core::Result;
use ml_core::audit::{
    AttemptOutcome, AttemptView, AuditQuery, AuditWrite, CallbackApplied, CallbackUpdate, Claimant,
    ClaimedDelivery, CycleEnd, CycleId, CycleView, DeliveryFilter, DeliveryId, DeliveryView,
    JournalStats, PageCommit, PageCommitted, RecordHistory, RejectedView,
};
use ml_core::cursor::Position;
use ml_twilio::receiver::{Handled, Rejection};

use ml_core::audit::AuditStore;
use ml_core::http::ClientOptions;
use ml_core::memory::MemoryAuditStore;
use ml_sandbox::sendgrid::SendGridEmulator;
use ml_sandbox::server::Server;
use ml_sandbox::twilio::sign;
use ml_twilio::receiver::axum_router;
use ml_twilio::{SendGridEventReceiver, TwilioStatusReceiver};

#[tokio::test]
async fn routers_answer_by_verification_outcome() {
    let store: Arc<dyn AuditStore> = Arc::new(MemoryAuditStore::new());
    let sg = SendGridEmulator::start().await.expect("sendgrid");
    let binding = ml_sandbox::server::Binding::new().await.expect("bind");
    let base = binding.base_url();
    let tw_rx = Arc::new(TwilioStatusReceiver::new("tok", format!("{base}cb")));
    let sg_rx = Arc::new(SendGridEventReceiver::new(&sg.public_key()).expect("key"));
    let _server: Server = binding.serve(
        axum_router::twilio("/cb", tw_rx, store.clone()).merge(axum_router::sendgrid(
            "/events",
            sg_rx,
            store.clone(),
        )),
    );
    let client = ClientOptions::default().client().expect("client");
    let params = vec![
        ("MessageSid".to_owned(), "SM1".to_owned()),
        ("MessageStatus".to_owned(), "delivered".to_owned()),
    ];
    let url = format!("{base}cb?delivery_id=1");
    let post = |sig: Option<String>, body: String| {
        let mut r = client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(s) = sig {
            r = r.header("x-twilio-signature", s);
        }
        r.send()
    };
    let body = serde_urlencoded::to_string(&params).expect("form");
    let good = sign("tok", &url, &params);
    assert_eq!(
        post(Some(good.clone()), body.clone())
            .await
            .expect("ok")
            .status(),
        204
    );
    assert_eq!(
        post(Some(good), body.clone())
            .await
            .expect("replay")
            .status(),
        204,
        "duplicates are acknowledged, not applied"
    );
    assert_eq!(
        post(Some(sign("other", &url, &params)), body.clone())
            .await
            .expect("forged")
            .status(),
        401
    );
    assert_eq!(post(None, body).await.expect("unsigned").status(), 401);
    assert_eq!(
        post(Some("x".into()), "a=".repeat(40_000))
            .await
            .expect("big")
            .status(),
        413
    );
    assert_eq!(client.get(&url).send().await.expect("get").status(), 405);

    // SendGrid: signed now by the emulator's key -> 204; a stale timestamp -> 401.
    let now = jiff::Timestamp::now().as_second().to_string();
    let events =
        r#"[{"event":"delivered","sg_message_id":"abc.filter","sg_event_id":"e1","timestamp":1}]"#;
    let send_events = |ts: String| {
        client
            .post(format!("{base}events"))
            .header("content-type", "application/json")
            .header(
                "x-twilio-email-event-webhook-signature",
                sg.sign(&ts, events.as_bytes()),
            )
            .header("x-twilio-email-event-webhook-timestamp", ts)
            .body(events)
            .send()
    };
    assert_eq!(send_events(now).await.expect("ok").status(), 204);
    assert_eq!(
        send_events("1600000000".into())
            .await
            .expect("stale")
            .status(),
        401
    );
}

/// A journal whose `apply_callback` fails while `down` is set.
#[derive(Debug, Default)]
struct FlakyJournal {
    inner: MemoryAuditStore,
    down: AtomicBool,
}

#[async_trait]
impl AuditWrite for FlakyJournal {
    async fn load_position(&self, stream: &str) -> Result<Option<Position>> {
        self.inner.load_position(stream).await
    }
    async fn begin_cycle(&self, stream: &str, at: Timestamp) -> Result<CycleId> {
        self.inner.begin_cycle(stream, at).await
    }
    async fn commit_page(&self, page: PageCommit) -> Result<PageCommitted> {
        self.inner.commit_page(page).await
    }
    async fn end_cycle(&self, cycle: CycleId, end: CycleEnd) -> Result<()> {
        self.inner.end_cycle(cycle, end).await
    }
    async fn claim_due(
        &self,
        by: &Claimant,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>> {
        self.inner.claim_due(by, now, limit).await
    }
    async fn renew_claims(&self, by: &Claimant, ids: &[DeliveryId], now: Timestamp) -> Result<u64> {
        self.inner.renew_claims(by, ids, now).await
    }
    async fn acquire_stream(&self, stream: &str, by: &Claimant, now: Timestamp) -> Result<bool> {
        self.inner.acquire_stream(stream, by, now).await
    }
    async fn release_stream(&self, stream: &str, by: &Claimant) -> Result<()> {
        self.inner.release_stream(stream, by).await
    }
    async fn finish_attempt(
        &self,
        id: DeliveryId,
        outcome: AttemptOutcome,
        at: Timestamp,
    ) -> Result<()> {
        self.inner.finish_attempt(id, outcome, at).await
    }
    async fn requeue_in_flight(&self, by: &Claimant, now: Timestamp) -> Result<u64> {
        self.inner.requeue_in_flight(by, now).await
    }
    async fn replay(&self, id: DeliveryId, now: Timestamp) -> Result<()> {
        self.inner.replay(id, now).await
    }
    async fn replay_failed(&self, filter: &DeliveryFilter, now: Timestamp) -> Result<u64> {
        self.inner.replay_failed(filter, now).await
    }
    async fn apply_callback(&self, update: &CallbackUpdate) -> Result<CallbackApplied> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ml_core::Error::store(
                ml_core::ErrorClass::RETRYABLE,
                "disk full",
                None,
            ));
        }
        self.inner.apply_callback(update).await
    }
    async fn next_due_at(&self) -> Result<Option<Timestamp>> {
        self.inner.next_due_at().await
    }
}

#[async_trait]
impl AuditQuery for FlakyJournal {
    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryView>> {
        self.inner.deliveries(filter).await
    }
    async fn attempts(&self, id: DeliveryId) -> Result<Vec<AttemptView>> {
        self.inner.attempts(id).await
    }
    async fn record_history(&self, stream: &str, key: &str) -> Result<RecordHistory> {
        self.inner.record_history(stream, key).await
    }
    async fn cycles(&self, stream: &str, limit: usize) -> Result<Vec<CycleView>> {
        self.inner.cycles(stream, limit).await
    }
    async fn rejected(&self, stream: Option<&str>, limit: usize) -> Result<Vec<RejectedView>> {
        self.inner.rejected(stream, limit).await
    }
    async fn stats(&self) -> Result<JournalStats> {
        self.inner.stats().await
    }
}

#[tokio::test]
async fn a_journal_failure_answers_503_and_the_retry_is_applied() {
    let journal = FlakyJournal::default();
    journal.down.store(true, Ordering::SeqCst);
    let rx = TwilioStatusReceiver::new("tok", "https://hooks.example.com/cb");
    let params = vec![
        ("MessageSid".to_owned(), "SM9".to_owned()),
        ("MessageStatus".to_owned(), "delivered".to_owned()),
    ];
    let req = http::Request::post("/cb?delivery_id=9")
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "x-twilio-signature",
            sign("tok", "https://hooks.example.com/cb?delivery_id=9", &params),
        )
        .body(Bytes::from(
            serde_urlencoded::to_string(&params).expect("form"),
        ))
        .expect("req");
    let err = rx.handle(&req, &journal).await.expect_err("journal down");
    assert!(matches!(err, Rejection::Unavailable(_)));
    assert_eq!(err.status(), 503);
    journal.down.store(false, Ordering::SeqCst);
    // Twilio's retry is not taken for a duplicate: it reaches the journal.
    assert_eq!(
        rx.handle(&req, &journal).await.expect("applied"),
        Handled::Applied(vec![CallbackApplied::UnknownRemoteId])
    );
    assert_eq!(
        rx.handle(&req, &journal).await.expect("dup"),
        Handled::Duplicate
    );
}

fn sendgrid_request(
    headers: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
) -> http::Request<Bytes> {
    let mut b = http::Request::post("/events").header("content-type", content_type);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Bytes::copy_from_slice(body)).expect("req")
}

const SIG: &str = "x-twilio-email-event-webhook-signature";
const TS: &str = "x-twilio-email-event-webhook-timestamp";

#[tokio::test]
async fn sendgrid_refusals_through_the_receiver() {
    let sg = SendGridEmulator::start().await.expect("sendgrid");
    let now = Timestamp::from_second(1_800_000_000).expect("ts");
    let clock = Arc::new(ml_core::clock::ManualClock::new(now));
    let rx = SendGridEventReceiver::new(&sg.public_key())
        .expect("key")
        .with_clock(clock);
    let store = MemoryAuditStore::new();
    let body =
        br#"[{"event":"delivered","sg_message_id":"abc.filter","sg_event_id":"e1","timestamp":1}]"#;
    let ts = now.as_second().to_string();
    let sig = sg.sign(&ts, body);
    let refuse = |req: http::Request<Bytes>| {
        let (rx, store) = (&rx, &store);
        async move { rx.handle(&req, store).await.expect_err("refused") }
    };
    // Each header missing on its own.
    assert_eq!(
        refuse(sendgrid_request(&[(TS, &ts)], "application/json", body)).await,
        Rejection::MissingHeader(SIG)
    );
    assert_eq!(
        refuse(sendgrid_request(&[(SIG, &sig)], "application/json", body)).await,
        Rejection::MissingHeader(TS)
    );
    // A future timestamp, signed with it (so only the window refuses it).
    let future = (now.as_second() + 601).to_string();
    let future_sig = sg.sign(&future, body);
    assert_eq!(
        refuse(sendgrid_request(
            &[(SIG, &future_sig), (TS, &future)],
            "application/json",
            body
        ))
        .await,
        Rejection::FutureDated
    );
    // A non-numeric timestamp, signed with it.
    let odd = "1.8e9";
    let odd_sig = sg.sign(odd, body);
    assert_eq!(
        refuse(sendgrid_request(
            &[(SIG, &odd_sig), (TS, odd)],
            "application/json",
            body
        ))
        .await,
        Rejection::BadTimestamp
    );
    // A valid signature over another body, and a signature that is not one.
    let other = sg.sign(&ts, b"[]");
    assert_eq!(
        refuse(sendgrid_request(
            &[(SIG, &other), (TS, &ts)],
            "application/json",
            body
        ))
        .await,
        Rejection::SignatureMismatch
    );
    assert_eq!(
        refuse(sendgrid_request(
            &[(SIG, "bm90IGEgc2ln"), (TS, &ts)],
            "application/json",
            body
        ))
        .await,
        Rejection::BadSignatureFormat
    );
    // Over the 4 MiB limit (refused before any signature work).
    let big = vec![b' '; ml_twilio::receiver::SENDGRID_MAX_BODY + 1];
    let big_sig = sg.sign(&ts, &big);
    assert_eq!(
        refuse(sendgrid_request(
            &[(SIG, &big_sig), (TS, &ts)],
            "application/json",
            &big
        ))
        .await,
        Rejection::BodyTooLarge
    );
    // Not JSON by its content type.
    assert!(matches!(
        refuse(sendgrid_request(
            &[(SIG, &sig), (TS, &ts)],
            "text/plain",
            body
        ))
        .await,
        Rejection::UnsupportedContentType(_)
    ));
    // Nothing reached the journal; the genuine request still goes through.
    assert!(matches!(
        rx.handle(&sendgrid_request(&[(SIG, &sig), (TS, &ts)], "application/json", body), &store)
            .await,
        Ok(Handled::Applied(a)) if a.len() == 1
    ));
}

#[tokio::test]
async fn twilio_added_query_parameter_and_tampered_json_are_refused() {
    let store = MemoryAuditStore::new();
    let public = "https://hooks.example.com/cb";
    let rx = TwilioStatusReceiver::new("tok", public);
    // Form: signed for `?delivery_id=9`, received with one more query parameter.
    let params = vec![
        ("MessageSid".to_owned(), "SM9".to_owned()),
        ("MessageStatus".to_owned(), "delivered".to_owned()),
    ];
    let sig = sign("tok", &format!("{public}?delivery_id=9"), &params);
    let form = serde_urlencoded::to_string(&params).expect("form");
    let req = |path: &str, ct: &str, sig: &str, body: String| {
        http::Request::post(path)
            .header("content-type", ct)
            .header("x-twilio-signature", sig)
            .body(Bytes::from(body))
            .expect("req")
    };
    let added = req(
        "/cb?delivery_id=9&admin=1",
        "application/x-www-form-urlencoded",
        &sig,
        form.clone(),
    );
    assert_eq!(
        rx.handle(&added, &store).await,
        Err(Rejection::SignatureMismatch)
    );
    // JSON: Twilio signs the URL with bodySHA256 of the body; the body is then changed.
    let json = r#"{"MessageSid":"SM10","MessageStatus":"delivered"}"#;
    let hash = ml_twilio::signature::body_sha256(json.as_bytes());
    let path = format!("/cb?delivery_id=10&bodySHA256={hash}");
    let json_sig = sign(
        "tok",
        &format!("{public}?delivery_id=10&bodySHA256={hash}"),
        &[],
    );
    let tampered = json.replace("delivered", "failed");
    assert_eq!(
        rx.handle(&req(&path, "application/json", &json_sig, tampered), &store)
            .await,
        Err(Rejection::SignatureMismatch)
    );
    // A JSON body that is signed but not an object is malformed, not a panic.
    let arr = "[1,2]";
    let arr_hash = ml_twilio::signature::body_sha256(arr.as_bytes());
    let arr_path = format!("/cb?bodySHA256={arr_hash}");
    let arr_sig = sign("tok", &format!("{public}?bodySHA256={arr_hash}"), &[]);
    assert!(matches!(
        rx.handle(
            &req(&arr_path, "application/json", &arr_sig, arr.into()),
            &store
        )
        .await,
        Err(Rejection::Malformed(_))
    ));
    // The genuine ones go through.
    assert!(matches!(
        rx.handle(
            &req(
                "/cb?delivery_id=9",
                "application/x-www-form-urlencoded",
                &sig,
                form
            ),
            &store
        )
        .await,
        Ok(Handled::Applied(_))
    ));
    assert!(matches!(
        rx.handle(
            &req(&path, "application/json", &json_sig, json.into()),
            &store
        )
        .await,
        Ok(Handled::Applied(_))
    ));
}
