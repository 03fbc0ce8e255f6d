//! A Slack request through the whole receiver: limits, headers, window, HMAC, replay cache,
//! content type, and the Events API / slash command / interactivity parsers. The harness
//! signs the body with the receiver's secret (unless told not to), so the parsers are
//! reached. Input: 1 selector byte, then the body.
#![no_main]

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use ml_slack::receiver::SlackReceiver;
use ml_slack::signature::SignatureVerifier;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let v = SignatureVerifier::new(&"fuzz-secret".into());
    let (receiver, _inbox) = SlackReceiver::new(v.clone()).with_channel(4);
    let now = Timestamp::from_second(1_800_000_000).expect("now");
    let ts = "1800000000";
    let content_type = match sel & 3 {
        0 => "application/json",
        1 => "application/x-www-form-urlencoded",
        2 => "application/json; charset=utf-8",
        _ => "",
    };
    let signature = if sel & 4 == 0 {
        v.sign(ts, body)
    } else {
        String::from_utf8_lossy(body).chars().take(70).collect()
    };
    let mut b = http::Request::post("/slack").header("x-slack-request-timestamp", ts);
    if let Ok(h) = http::HeaderValue::from_str(&signature) {
        b = b.header("x-slack-signature", h);
    }
    if !content_type.is_empty() {
        b = b.header("content-type", content_type);
    }
    let Ok(req) = b.body(body.to_vec()) else {
        return;
    };
    let resp = rt.block_on(receiver.handle_at(req, now));
    assert!(resp.status().as_u16() >= 200);
});
