//! Property tests of everything that reads a callback: whatever arrives, the result is a
//! value or a typed refusal, never a panic.

use bytes::Bytes;
use jiff::Timestamp;
use ml_twilio::receiver::{
    Rejection, SendGridEventReceiver, TwilioStatusReceiver, parse_sendgrid_events,
};
use ml_twilio::signature::{
    SendGridPublicKey, body_sha256, twilio_signature, url_variants, verify_twilio_form,
    verify_twilio_json,
};
use proptest::prelude::*;

/// A P-256 SubjectPublicKeyInfo (from the signature fixtures).
fn key_b64() -> String {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/signature_vectors.json")).expect("fixture");
    v["sendgrid"]["public_key"]
        .as_str()
        .expect("key")
        .to_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

proptest! {
    #[test]
    fn url_and_signature_math_never_panic(
        url in ".{0,60}",
        params in prop::collection::vec((".{0,8}", ".{0,8}"), 0..5),
        sig in ".{0,40}",
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let variants = url_variants(&url);
        prop_assert!(variants.first() == Some(&url));
        let s = twilio_signature(b"tok", &url, &params);
        prop_assert!(verify_twilio_form(b"tok", &url, &params, &s));
        let _ = verify_twilio_form(b"tok", &url, &params, &sig);
        let _ = verify_twilio_json(b"tok", &url, &body, &sig);
        prop_assert_eq!(body_sha256(&body).len(), 64);
    }

    #[test]
    fn twilio_callbacks_verify_or_refuse(
        query in "[ -~]{0,30}",
        body in prop::collection::vec(any::<u8>(), 0..200),
        json in any::<bool>(),
        sign_it in any::<bool>(),
    ) {
        let rx = TwilioStatusReceiver::new("tok", "https://hooks.example.com/cb");
        let public = format!("https://hooks.example.com/cb?{query}");
        // Sign what the receiver will check, so parsing is reached too.
        let signature = if !sign_it {
            "bogus".to_owned()
        } else if json {
            twilio_signature(b"tok", &public, &[])
        } else {
            let params: Vec<(String, String)> =
                serde_urlencoded::from_bytes(&body).unwrap_or_default();
            twilio_signature(b"tok", &public, &params)
        };
        let Ok(req) = http::Request::post(format!("/cb?{query}"))
            .header(
                "content-type",
                if json { "application/json" } else { "application/x-www-form-urlencoded" },
            )
            .header("x-twilio-signature", signature)
            .body(Bytes::from(body))
        else {
            return Ok(());
        };
        if let Err(e) = runtime().block_on(rx.verify(&req)) {
            prop_assert!(!e.is_transient(), "{e:?}");
        }
    }

    #[test]
    fn sendgrid_bodies_parse_or_refuse(body in prop::collection::vec(any::<u8>(), 0..300)) {
        match parse_sendgrid_events(&body, Timestamp::UNIX_EPOCH) {
            Ok(_) => {}
            Err(e) => prop_assert!(matches!(e, Rejection::Malformed(_))),
        }
    }

    #[test]
    fn sendgrid_event_arrays_parse(
        events in prop::collection::vec(
            (
                prop::option::of(prop::sample::select(vec!["delivered", "bounce", "open", "dropped", "processed", "x"])),
                prop::option::of("[a-z0-9.]{0,12}"),
                prop::option::of(any::<i64>()),
                prop::option::of("[a-z0-9]{0,8}"),
            ),
            0..6,
        ),
    ) {
        let arr: Vec<serde_json::Value> = events
            .iter()
            .map(|(ev, mid, ts, id)| serde_json::json!({"event": ev, "sg_message_id": mid, "timestamp": ts, "sg_event_id": id}))
            .collect();
        let body = serde_json::to_vec(&arr).expect("json");
        let parsed = parse_sendgrid_events(&body, Timestamp::UNIX_EPOCH);
        prop_assert_eq!(parsed.map(|p| p.len()).ok(), Some(events.len()));
    }

    #[test]
    fn sendgrid_headers_and_signatures_verify_or_refuse(
        sig in ".{0,80}",
        ts in ".{0,14}",
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let key = SendGridPublicKey::from_base64(&key_b64()).expect("key");
        prop_assert!(key.check(&sig, &ts, &body).is_err());
        let _ = SendGridPublicKey::from_base64(&sig);
        let rx = SendGridEventReceiver::new(&key_b64()).expect("rx");
        let Ok(req) = http::Request::post("/e")
            .header("content-type", "application/json")
            .header("x-twilio-email-event-webhook-signature", sig.as_str())
            .header("x-twilio-email-event-webhook-timestamp", ts.as_str())
            .body(Bytes::from(body))
        else {
            return Ok(());
        };
        prop_assert!(runtime().block_on(rx.verify(&req)).is_err());
    }
}
