//! Hot paths: verifying a Twilio status callback, verifying a SendGrid event batch, and
//! measuring / fitting an SMS body.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ml_twilio::segments::{measure, truncate_to};
use ml_twilio::signature::{SendGridPublicKey, twilio_signature, verify_twilio_form};
use serde_json::Value;

fn benches(c: &mut Criterion) {
    let vectors: Value =
        serde_json::from_str(include_str!("../tests/fixtures/signature_vectors.json"))
            .expect("fixture");
    let v = &vectors["twilio"][0];
    let url = v["url"].as_str().expect("url").to_owned();
    let params: Vec<(String, String)> = v["params"]
        .as_object()
        .expect("params")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("s").to_owned()))
        .collect();
    let sig = twilio_signature(b"12345", &url, &params);
    c.bench_function("twilio_verify_form_callback", |b| {
        b.iter(|| {
            assert!(verify_twilio_form(
                black_box(b"12345"),
                black_box(&url),
                black_box(&params),
                black_box(&sig)
            ));
        });
    });
    let sg = &vectors["sendgrid"];
    let key = SendGridPublicKey::from_base64(sg["public_key"].as_str().expect("key")).expect("key");
    let sv = &sg["vectors"][0];
    let (ts, body, ssig) = (
        sv["timestamp"].as_str().expect("ts"),
        sv["body"].as_str().expect("body").as_bytes(),
        sv["signature"].as_str().expect("sig"),
    );
    c.bench_function("sendgrid_verify_event_batch", |b| {
        b.iter(|| assert!(key.verify(black_box(ssig), black_box(ts), black_box(body))));
    });
    let text =
        "Purchase order 4500000001 - Zürich Präzision AG - 12,400.00 CHF - Released ".repeat(8);
    c.bench_function("sms_measure_600_chars", |b| {
        b.iter(|| measure(black_box(&text)));
    });
    c.bench_function("sms_truncate_to_3_segments", |b| {
        b.iter(|| truncate_to(black_box(&text), " (ref 123456)", 3));
    });
}

criterion_group!(twilio, benches);
criterion_main!(twilio);
