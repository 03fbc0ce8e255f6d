//! A Twilio status callback through the receiver (form or JSON body, query string as
//! received), signed by the harness unless told not to, so the parameter parsing is
//! reached; plus the URL and signature math on the raw input. Input: 1 selector byte, the
//! query string up to the first NUL, then the body.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ml_twilio::receiver::TwilioStatusReceiver;
use ml_twilio::signature::{twilio_signature, url_variants, verify_twilio_json};

const PUBLIC: &str = "https://hooks.example.com/cb";

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(2, |b| *b == 0);
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default();
    let json = sel & 1 == 1;
    let url = format!("{PUBLIC}?{query}");
    let _ = url_variants(&query);
    let _ = verify_twilio_json(b"tok", &query, body, &query);
    let signature = if sel & 2 == 2 {
        String::from_utf8_lossy(body).chars().take(40).collect()
    } else if json {
        twilio_signature(b"tok", &url, &[])
    } else {
        // The pairs as the receiver reads them, so the harness signs what it checks.
        let params: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
        twilio_signature(b"tok", &url, &params)
    };
    let Ok(req) = http::Request::post(format!("/cb?{query}"))
        .header(
            "content-type",
            if json {
                "application/json"
            } else {
                "application/x-www-form-urlencoded"
            },
        )
        .header("x-twilio-signature", signature)
        .body(Bytes::copy_from_slice(body))
    else {
        return;
    };
    let rx = TwilioStatusReceiver::new("tok", PUBLIC);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let _ = rt.block_on(rx.verify(&req));
});
