//! The SendGrid Event Webhook: the event batch parser on the raw body, the ECDSA check on
//! fuzzed signature and timestamp headers, and the receiver with those headers. Input:
//! signature, timestamp and body separated by NUL bytes.
#![no_main]

use bytes::Bytes;
use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use ml_twilio::receiver::{SendGridEventReceiver, parse_sendgrid_events};
use ml_twilio::signature::SendGridPublicKey;

/// A P-256 SubjectPublicKeyInfo (the one of ml-twilio's signature fixtures).
const KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEvlJlgmwRvKMyH/K7ocJNLFK6gVb5L/UvF3EEvmRYYoOsa2lMC/rSyk/GFxN0TCCQhRSIUonD5NA+G+IXsVv8bQ==";

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let sig = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let ts = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default();
    let _ = parse_sendgrid_events(body, Timestamp::UNIX_EPOCH);
    let _ = parse_sendgrid_events(data, Timestamp::UNIX_EPOCH);
    let _ = SendGridPublicKey::from_base64(&sig);
    let key = SendGridPublicKey::from_base64(KEY).expect("key");
    assert!(
        key.check(&sig, &ts, body).is_err(),
        "a forged signature verified"
    );
    let Ok(req) = http::Request::post("/events")
        .header("content-type", "application/json")
        .header("x-twilio-email-event-webhook-signature", sig.as_str())
        .header("x-twilio-email-event-webhook-timestamp", ts.as_str())
        .body(Bytes::copy_from_slice(body))
    else {
        return;
    };
    let rx = SendGridEventReceiver::new(KEY).expect("receiver");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    assert!(rt.block_on(rx.verify(&req)).is_err());
});
