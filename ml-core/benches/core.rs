//! Hot paths of ml-core: limiter acquire overhead and routing throughput.
//!
//! Run: `cargo bench -p ml-core --bench core`

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ml_core::limiter::{GcraLimiter, NoLimit, Quota, RateLimiter};
use ml_core::money::Money;
use ml_core::record::{BusinessFields, EntityKind, Line, Record};
use ml_core::routing::{Condition, MatchMode, Router, Rule};

fn records(n: usize) -> Vec<Record> {
    let kinds = [
        EntityKind::SupplierInvoice,
        EntityKind::PurchaseOrder,
        EntityKind::Payment,
        EntityKind::GlJournal,
    ];
    (0..n)
        .map(|i| {
            Record::new(
                "Bench(erp)",
                kinds[i % 4].clone(),
                i.to_string(),
                jiff::Timestamp::UNIX_EPOCH,
            )
            .with_fields(BusinessFields {
                amount: Some(
                    Money::parse(
                        &format!("{}.{:02}", i * 37 % 100_000, i % 100),
                        if i % 5 == 0 { "EUR" } else { "USD" },
                    )
                    .expect("money"),
                ),
                cost_center: Some(format!("CC-{}", i % 40)),
                gl_account: Some(format!("{}", 4000 + i % 3000)),
                company_code: Some(format!("{}", 1000 + i % 8 * 1000)),
                supplier_id: Some(format!("S{}", i % 500)),
                status: Some(
                    if i % 7 == 0 {
                        "Needs revalidation"
                    } else {
                        "Validated"
                    }
                    .into(),
                ),
                lines: vec![Line {
                    number: "1".into(),
                    gl_account: Some(format!("{}", 6000 + i % 100)),
                    ..Line::default()
                }],
                ..BusinessFields::default()
            })
        })
        .collect()
}

/// 50 rules of every condition type, as a finance team would write them.
fn rules() -> Vec<Rule> {
    (0..50)
        .map(|i| {
            let when = match i % 5 {
                0 => vec![
                    Condition::Kind(vec![EntityKind::SupplierInvoice]),
                    Condition::AmountAtLeast(
                        Money::parse(&format!("{}", 1000 * (i + 1)), "USD").expect("m"),
                    ),
                ],
                1 => vec![Condition::CostCenter(vec![
                    format!("CC-{i}"),
                    format!("CC-{}", i + 1),
                ])],
                2 => vec![Condition::GlAccountPrefix(vec![format!("6{}", i % 10)])],
                3 => vec![
                    Condition::CompanyCode(vec![format!("{}", 1000 + (i % 8) * 1000)]),
                    Condition::Status(vec!["needs revalidation".into()]),
                ],
                _ => vec![Condition::Supplier(vec![
                    format!("S{i}"),
                    format!("S{}", i * 3),
                ])],
            };
            Rule {
                name: format!("rule-{i}"),
                when,
                to: vec![format!("slack:#team-{}", i % 12)],
            }
        })
        .collect()
}

fn routing(c: &mut Criterion) {
    let recs = records(10_000);
    let router = Router::new(MatchMode::AllMatch, rules()).expect("router");
    let mut g = c.benchmark_group("routing");
    g.throughput(Throughput::Elements(recs.len() as u64));
    g.bench_function("10k_records_50_rules", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for r in &recs {
                n += router.route(r).len();
            }
            n
        });
    });
    g.finish();
}

fn limiter(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("rt");
    // A quota far above the bench rate: this measures the bookkeeping, not waiting.
    let gcra = GcraLimiter::builder()
        .prefix("slack:", Quota::per_second(1_000_000_000).expect("q"))
        .build();
    let keys: Vec<String> = (0..1000).map(|i| format!("slack:C{i:08}")).collect();
    let mut g = c.benchmark_group("limiter");
    g.throughput(Throughput::Elements(1));
    for (name, l) in [
        ("gcra", &gcra as &dyn RateLimiter),
        ("none", &NoLimit as &dyn RateLimiter),
    ] {
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::new("acquire", name), &l, |b, l| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                rt.block_on(l.acquire(&keys[i])).expect("acquire");
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    targets = routing, limiter
}
criterion_main!(benches);
