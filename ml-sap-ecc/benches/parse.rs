//! Rows/s parsed from `RFC_READ_TABLE` answers: the SOAP envelope read with quick-xml,
//! then each `WA` sliced by offset (UTF-16 units) and numbers parsed exactly.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ml_sap_ecc::read_table::{CodePage, FieldMeta, parse_number};
use ml_sap_ecc::soap::decode_response;

fn layout() -> Vec<FieldMeta> {
    let mut offset = 0;
    [
        ("BELNR", 10, 'C'),
        ("GJAHR", 4, 'N'),
        ("CPUDT", 8, 'D'),
        ("CPUTM", 6, 'T'),
        ("XBLNR", 16, 'C'),
        ("LIFNR", 10, 'C'),
        ("NAME1", 35, 'C'),
        ("WAERS", 5, 'C'),
        ("RMWWR", 16, 'P'),
    ]
    .into_iter()
    .map(|(name, length, typ)| {
        let f = FieldMeta {
            name: name.into(),
            offset,
            length,
            typ,
            text: String::new(),
        };
        offset += length;
        f
    })
    .collect()
}

fn answer(rows: usize) -> String {
    let mut xml = String::from(
        r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Body><n0:RFC_READ_TABLE.Response xmlns:n0="urn:sap-com:document:sap:rfc:functions"><DATA>"#,
    );
    for i in 0..rows {
        let amount = if i % 7 == 0 {
            format!("{}.50-", i % 999)
        } else {
            format!("{}.25", i % 99_999)
        };
        let _ = write!(
            xml,
            "<item><WA>{:010}2026202603011200{:<16}{:010}{:<35}EUR  {:>16}</WA></item>",
            5_100_000_000_u64 + i as u64,
            format!("RE-{i}"),
            100_001 + i % 5,
            "Müller &amp; Söhne | Teile; GmbH",
            amount
        );
    }
    xml.push_str("</DATA></n0:RFC_READ_TABLE.Response></soap-env:Body></soap-env:Envelope>");
    xml
}

fn parse(c: &mut Criterion) {
    const ROWS: usize = 5_000;
    let xml = answer(ROWS);
    let fields = layout();
    let mut g = c.benchmark_group("rfc_read_table");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("decode_and_slice_5000_rows", |b| {
        b.iter(|| {
            let r = decode_response("RFC_READ_TABLE", black_box(&xml)).expect("decode");
            let mut total = rust_decimal::Decimal::ZERO;
            for row in r.table("DATA") {
                let values = CodePage::Unicode.slice(&row["WA"], &fields);
                total += parse_number(&values[8]).unwrap_or_default();
            }
            black_box(total)
        });
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
