//! Slack's signature headers: `X-Slack-Request-Timestamp` and `X-Slack-Signature` as
//! received, over a body. Input: timestamp, signature and body separated by NUL bytes.
#![no_main]

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use ml_slack::signature::SignatureVerifier;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let ts = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let sig = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let body = parts.next().unwrap_or_default();
    let v = SignatureVerifier::new(&"fuzz-secret".into());
    let now = Timestamp::from_second(1_800_000_000).expect("now");
    let _ = v.verify_at(&ts, body, &sig, now);
    // What we sign ourselves verifies whenever the timestamp is in the window.
    let signed = v.sign(&ts, body);
    if let Ok(secs) = ml_core::webhook::check_timestamp(&ts, now, v.window()) {
        assert!(v.verify_at(&ts, body, &signed, now).is_ok(), "{secs}");
    }
});
