//! Known-answer signature tests: Twilio's docs example and vectors made with the official
//! twilio-python library; SendGrid vectors signed with a P-256 key (fixtures/make_vectors.py).

use std::sync::Arc;

use bytes::Bytes;
use ml_core::audit::RemoteStatus;
use ml_core::clock::ManualClock;
use ml_twilio::receiver::{Rejection, SendGridEventReceiver, TwilioStatusReceiver, Verified};
use ml_twilio::signature::{
    SendGridPublicKey, twilio_signature, verify_twilio_form, verify_twilio_json,
};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("fixtures/signature_vectors.json")).expect("fixture")
}

fn params(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .expect("params")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("str").to_owned()))
        .collect()
}

#[test]
fn twilio_python_form_vectors() {
    let all = vectors();
    for v in all["twilio"].as_array().expect("twilio") {
        let token = v["auth_token"].as_str().expect("token").as_bytes();
        let url = v["url"].as_str().expect("url");
        let sig = v["signature"].as_str().expect("sig");
        if v["kind"] == "form" {
            let p = params(&v["params"]);
            assert_eq!(twilio_signature(token, url, &p), sig, "{url}");
            assert!(verify_twilio_form(token, url, &p, sig));
            let mut tampered = p.clone();
            tampered[0].1.push('x');
            assert!(!verify_twilio_form(token, url, &tampered, sig));
        } else if v["kind"] == "form_multi" {
            let p: Vec<(String, String)> = v["pairs"]
                .as_array()
                .expect("pairs")
                .iter()
                .map(|kv| {
                    (
                        kv[0].as_str().expect("k").to_owned(),
                        kv[1].as_str().expect("v").to_owned(),
                    )
                })
                .collect();
            assert_eq!(twilio_signature(token, url, &p), sig, "repeated names");
            assert!(verify_twilio_form(token, url, &p, sig));
        } else {
            let body = v["body"].as_str().expect("body").as_bytes();
            assert!(verify_twilio_json(token, url, body, sig), "{url}");
            assert!(!verify_twilio_json(
                token,
                url,
                b"{\"MessageSid\":\"x\"}",
                sig
            ));
        }
    }
}

#[test]
fn port_variants_accept_what_twilio_python_signed() {
    let all = vectors();
    let v = &all["twilio"][1]; // signed with :443 in the URL
    let p = params(&v["params"]);
    let sig = v["signature"].as_str().expect("sig");
    assert!(verify_twilio_form(
        b"12345",
        "https://hooks.example.com/twilio/status?delivery_id=42",
        &p,
        sig
    ));
    assert!(!verify_twilio_form(
        b"12345",
        "https://hooks.example.com:8443/twilio/status?delivery_id=42",
        &p,
        sig
    ));
}

fn form_request(url_path_query: &str, body: &str, sig: Option<&str>) -> http::Request<Bytes> {
    let mut b = http::Request::post(url_path_query)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(s) = sig {
        b = b.header("x-twilio-signature", s);
    }
    b.body(Bytes::from(body.to_owned())).expect("request")
}

#[tokio::test]
async fn receiver_refuses_forged_wrong_url_and_replayed_callbacks() {
    let all = vectors();
    let v = &all["twilio"][0];
    let p = params(&v["params"]);
    let sig = v["signature"].as_str().expect("sig");
    let body = serde_urlencoded::to_string(&p).expect("form");
    // Public URL from configuration; the request arrives rewritten by a proxy.
    let rx = TwilioStatusReceiver::new("12345", "https://hooks.example.com/twilio/status");
    let req = form_request(
        "http://10.0.0.7:8080/twilio/status?delivery_id=42",
        &body,
        Some(sig),
    );
    match rx.verify(&req).await.expect("verified") {
        Verified::Update(u) => {
            assert_eq!(u.status, RemoteStatus::Delivered);
            assert_eq!(u.remote_id, format!("SM{}", "0".repeat(32)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rx.verify(&req).await, Ok(Verified::Duplicate), "replay");
    let wrong_url = TwilioStatusReceiver::new("12345", "https://evil.example.com/twilio/status");
    assert_eq!(
        wrong_url.verify(&req).await,
        Err(Rejection::SignatureMismatch)
    );
    let wrong_query = form_request("/twilio/status?delivery_id=43", &body, Some(sig));
    let fresh = TwilioStatusReceiver::new("12345", "https://hooks.example.com/twilio/status");
    assert_eq!(
        fresh.verify(&wrong_query).await,
        Err(Rejection::SignatureMismatch)
    );
    let forged = form_request(
        "/twilio/status?delivery_id=42",
        &body.replace("delivered", "failed"),
        Some(sig),
    );
    assert_eq!(
        fresh.verify(&forged).await,
        Err(Rejection::SignatureMismatch)
    );
    let unsigned = form_request("/twilio/status?delivery_id=42", &body, None);
    assert!(matches!(
        fresh.verify(&unsigned).await,
        Err(Rejection::MissingHeader("x-twilio-signature"))
    ));
    let get = http::Request::get("/twilio/status")
        .body(Bytes::new())
        .expect("req");
    assert_eq!(fresh.verify(&get).await, Err(Rejection::MethodNotAllowed));
    assert!(!format!("{fresh:?}").contains("12345"));
}

#[tokio::test]
async fn receiver_verifies_json_bodies_with_body_sha256() {
    let all = vectors();
    let v = &all["twilio"][5];
    let url = v["url"].as_str().expect("url");
    let (_, query) = url.split_once('?').expect("query");
    let rx = TwilioStatusReceiver::new("12345", "https://hooks.example.com/twilio/json");
    let req = http::Request::post(format!("/twilio/json?{query}"))
        .header("content-type", "application/json")
        .header("x-twilio-signature", v["signature"].as_str().expect("sig"))
        .body(Bytes::from(v["body"].as_str().expect("body").to_owned()))
        .expect("req");
    assert!(
        matches!(rx.verify(&req).await, Ok(Verified::Update(u)) if u.status == RemoteStatus::Sent)
    );
}

fn sg_request(ts: &str, body: &str, sig: &str) -> http::Request<Bytes> {
    http::Request::post("/sendgrid/events")
        .header("content-type", "application/json")
        .header("x-twilio-email-event-webhook-signature", sig)
        .header("x-twilio-email-event-webhook-timestamp", ts)
        .body(Bytes::from(body.to_owned()))
        .expect("req")
}

#[tokio::test]
async fn sendgrid_vectors_verify_and_tampering_fails() {
    let all = vectors();
    let key_b64 = all["sendgrid"]["public_key"].as_str().expect("key");
    let key = SendGridPublicKey::from_base64(key_b64).expect("key");
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{key_b64}\n-----END PUBLIC KEY-----\n");
    assert!(SendGridPublicKey::from_base64(&pem).is_ok());
    for v in all["sendgrid"]["vectors"].as_array().expect("vectors") {
        let ts = v["timestamp"].as_str().expect("ts");
        let body = v["body"].as_str().expect("body");
        let sig = v["signature"].as_str().expect("sig");
        assert!(key.verify(sig, ts, body.as_bytes()));
        assert!(!key.verify(sig, "1600000000", body.as_bytes()));
        if body.ends_with("\r\n") {
            assert!(
                !key.verify(sig, ts, body.trim_end().as_bytes()),
                "CRLF is signed"
            );
        }
        assert!(!key.verify("bm90IGEgc2ln", ts, body.as_bytes()));
    }
    let v = &all["sendgrid"]["vectors"][0];
    let ts = v["timestamp"].as_str().expect("ts");
    let now = jiff::Timestamp::from_second(ts.parse::<i64>().expect("ts") + 60).expect("now");
    let clock = Arc::new(ManualClock::new(now));
    let rx = SendGridEventReceiver::new(key_b64)
        .expect("rx")
        .with_clock(clock.clone());
    let req = sg_request(
        ts,
        v["body"].as_str().expect("b"),
        v["signature"].as_str().expect("s"),
    );
    let updates = rx.verify(&req).await.expect("verified");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].remote_id, "14c5d75ce93");
    assert_eq!(updates[0].status, RemoteStatus::Delivered);
    assert!(
        rx.verify(&req).await.expect("replay").is_empty(),
        "same sg_event_id is dropped"
    );
    clock.advance(std::time::Duration::from_secs(3600));
    let stale = SendGridEventReceiver::new(key_b64)
        .expect("rx")
        .with_clock(clock);
    assert_eq!(stale.verify(&req).await, Err(Rejection::Stale));
}
