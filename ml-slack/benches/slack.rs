//! Benches: signature verification of a 1 KB body, and messages per second through
//! `SlackSink` to the Slack emulator with no rate limiter (and the emulator's own limit off).
//!
//! `CARGO_TARGET_DIR=/tmp/target-slack cargo bench -p ml-slack --bench slack`
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::Timestamp;
use ml_core::record::{BusinessFields, EntityKind, Record};
use ml_core::sink::{Destination, Outbound, Sink};
use ml_sandbox::slack::{Channel, SlackEmulator};
use ml_slack::SlackBuilder;
use ml_slack::signature::SignatureVerifier;

fn verify(c: &mut Criterion) {
    let v = SignatureVerifier::new(&"8f742231b10e8888abcd99yyyzzz85a5".into());
    let body = vec![b'a'; 1024];
    let ts = "1800000000";
    let sig = v.sign(ts, &body);
    let now = Timestamp::from_second(1_800_000_000).expect("ts");
    let mut g = c.benchmark_group("signature");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("verify_1kb", |b| {
        b.iter(|| {
            v.verify_at(black_box(ts), black_box(&body), black_box(&sig), now)
                .expect("valid")
        });
    });
    g.finish();
}

fn sink_throughput(c: &mut Criterion) {
    const BATCH: usize = 200;
    const CHANNELS: usize = 8;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (slack, sink, channels) = rt.block_on(async {
        let slack = SlackEmulator::builder()
            .post_message_interval(None)
            .start()
            .await
            .expect("emulator");
        let channels: Vec<String> = (0..CHANNELS)
            .map(|i| slack.add_channel(Channel::public(format!("bench{i}"))))
            .collect();
        let sink = SlackBuilder::new()
            .with_bot_token(slack.bot_token())
            .with_api_url(slack.base_url())
            .build()
            .expect("sink");
        (slack, Arc::new(sink), channels)
    });
    let record = Record::new(
        "Bench(erp)",
        EntityKind::SupplierInvoice,
        "INV-1",
        Timestamp::from_second(1_700_000_000).expect("ts"),
    )
    .with_fields(BusinessFields {
        document_number: Some("INV-1".into()),
        supplier: Some("ACME".into()),
        amount: ml_core::money::Money::parse("1200.50", "EUR").ok(),
        ..BusinessFields::default()
    });
    let messages: Vec<Outbound> = (0..BATCH)
        .map(|i| {
            let destination = Destination::new("slack", &channels[i % CHANNELS]);
            Outbound {
                delivery_id: ml_core::audit::DeliveryId(i as i64),
                stream: "bench".into(),
                record_key: record.key.clone(),
                rendered: sink.render(&record, &destination),
                destination,
                thread: None,
                attempt: 1,
                planned_at: jiff::Timestamp::now(),
            }
        })
        .collect();
    let messages = Arc::new(messages);
    let mut g = c.benchmark_group("sink");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);
    g.bench_function("post_message_8_channels_limiter_off", |b| {
        b.iter(|| {
            rt.block_on(async {
                // One sender per channel, each in order (as the pipeline does).
                let mut tasks = tokio::task::JoinSet::new();
                for ch in 0..CHANNELS {
                    let sink = Arc::clone(&sink);
                    let messages = Arc::clone(&messages);
                    tasks.spawn(async move {
                        for m in messages.iter().skip(ch).step_by(CHANNELS) {
                            sink.send(m).await.expect("posted");
                        }
                    });
                }
                while let Some(r) = tasks.join_next().await {
                    r.expect("task");
                }
            });
        });
    });
    g.finish();
    drop(slack);
}

criterion_group!(benches, verify, sink_throughput);
criterion_main!(benches);
