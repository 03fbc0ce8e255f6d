//! The IDoc receiver: parsing and mapping of ORDERS05 / INVOIC02, refusals (bad XML,
//! unknown segments, huge bodies, wrong credentials: never a panic), 2xx only after the
//! journal commit, and 1,000 IDocs with 10 % re-sends delivered once each.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::{Request, StatusCode};
use ml_core::memory::MemorySink;
use ml_core::record::SourceItem;
use ml_core::routing::{Condition, MatchMode, Router, Rule};
use ml_core::source::Source as _;
use ml_core::{EntityKind, Pipeline, Schedule, Stream};
use ml_sap_ecc::idoc::{IdocAuth, IdocInbox, IdocInboxBuilder, parse_packet, sap_number};
use ml_store::SqliteAuditStore;

const USER: &str = "SAPIDOC";
const PASSWORD: &str = "idoc-hunter2";

fn control(docnum: &str, idoctyp: &str, mestyp: &str) -> String {
    format!(
        "<EDI_DC40 SEGMENT=\"1\"><TABNAM>EDI_DC40</TABNAM><MANDT>100</MANDT><DOCNUM>{docnum}</DOCNUM>\
         <DOCREL>701</DOCREL><STATUS>30</STATUS><DIRECT>1</DIRECT><OUTMOD>2</OUTMOD>\
         <IDOCTYP>{idoctyp}</IDOCTYP><MESTYP>{mestyp}</MESTYP><SNDPOR>SAPPRD</SNDPOR>\
         <SNDPRT>LS</SNDPRT><SNDPRN>PRDCLNT100</SNDPRN><RCVPOR>MLCONN</RCVPOR><RCVPRT>LI</RCVPRT>\
         <RCVPRN>0000100001</RCVPRN><CREDAT>20240301</CREDAT><CRETIM>081502</CRETIM></EDI_DC40>"
    )
}

fn orders05(docnum: &str, po: &str, total: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ORDERS05><IDOC BEGIN=\"1\">{}\
         <E1EDK01 SEGMENT=\"1\"><CURCY>EUR</CURCY><BSART>NB</BSART><BELNR>{po}</BELNR></E1EDK01>\
         <E1EDK14 SEGMENT=\"1\"><QUALF>011</QUALF><ORGID>1000</ORGID></E1EDK14>\
         <E1EDKA1 SEGMENT=\"1\"><PARVW>LF</PARVW><PARTN>0000100001</PARTN><NAME1>Müller &amp; Söhne GmbH</NAME1></E1EDKA1>\
         <E1EDP01 SEGMENT=\"1\"><POSEX>00010</POSEX><MENGE>10.000</MENGE><MEINS>PCE</MEINS><NETWR>{total}</NETWR>\
           <E1EDP19 SEGMENT=\"1\"><QUALF>001</QUALF><IDTNR>MAT-4711</IDTNR><KTEXT>Bolt M8</KTEXT></E1EDP19>\
           <E1EDP20 SEGMENT=\"1\"><WMENG>10.000</WMENG><EDATU>20240315</EDATU></E1EDP20>\
         </E1EDP01>\
         <Z1ACME SEGMENT=\"1\"><NOTE>customer extension</NOTE></Z1ACME>\
         <E1EDS01 SEGMENT=\"1\"><SUMID>002</SUMID><SUMME>{total}</SUMME><SUNIT>EUR</SUNIT></E1EDS01>\
         </IDOC></ORDERS05>",
        control(docnum, "ORDERS05", "ORDERS")
    )
}

fn invoic02(docnum: &str, invoice: &str, gross: &str) -> String {
    format!(
        "<INVOIC02><IDOC BEGIN=\"1\">{}\
         <E1EDK01 SEGMENT=\"1\"><CURCY>USD</CURCY></E1EDK01>\
         <E1EDK02 SEGMENT=\"1\"><QUALF>009</QUALF><BELNR>{invoice}</BELNR></E1EDK02>\
         <E1EDKA1 SEGMENT=\"1\"><PARVW>RS</PARVW><PARTN>0000200002</PARTN><NAME1>Acme Supplies</NAME1></E1EDKA1>\
         <E1EDP01 SEGMENT=\"1\"><POSEX>000001</POSEX><MENGE>1</MENGE><NETWR>100.00</NETWR></E1EDP01>\
         <E1EDS01 SEGMENT=\"1\"><SUMID>011</SUMID><SUMME>{gross}</SUMME></E1EDS01>\
         </IDOC></INVOIC02>",
        control(docnum, "INVOIC02", "INVOIC")
    )
}

fn inbox() -> IdocInbox {
    IdocInboxBuilder::new(
        "SapEccIdoc(PRD, client=100)",
        IdocAuth::Basic {
            user: USER.into(),
            password: PASSWORD.into(),
        },
    )
    .with_max_body(256 * 1024)
    .with_ack_timeout(Duration::from_secs(5))
    .build()
}

fn post(body: impl Into<Vec<u8>>, password: &str) -> Request<Vec<u8>> {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    Request::post("/sap/idoc")
        .header("authorization", format!("Basic {auth}"))
        .header("content-type", "application/xml")
        .body(body.into())
        .expect("request")
}

#[test]
fn orders05_and_invoic02_map_to_records_with_exact_money() {
    let idocs = parse_packet(orders05("0000000000123456", "4500000001", "1234.50").as_bytes())
        .expect("parse");
    let mapping = ml_sap_ecc::idoc::IdocMapping::new("S");
    let now = jiff::Timestamp::UNIX_EPOCH;
    let SourceItem::Record(r) = ml_sap_ecc::idoc::map_idoc(&idocs[0], &mapping, now) else {
        panic!("record expected");
    };
    assert_eq!(r.kind, EntityKind::PurchaseOrder);
    assert_eq!(r.key, "4500000001");
    assert_eq!(r.dedupe_key(), "IDOC-0000000000123456");
    assert_eq!(r.modified_at.to_string(), "2024-03-01T08:15:02Z");
    let amount = r.fields.amount.expect("amount");
    assert_eq!(amount.amount.to_string(), "1234.50");
    assert_eq!(amount.currency.as_str(), "EUR");
    assert_eq!(r.fields.supplier.as_deref(), Some("Müller & Söhne GmbH"));
    assert_eq!(r.fields.supplier_id.as_deref(), Some("0000100001"));
    assert_eq!(r.fields.company_code.as_deref(), Some("1000"));
    assert_eq!(r.fields.lines[0].material.as_deref(), Some("MAT-4711"));
    assert_eq!(r.fields.lines[0].quantity.expect("q").to_string(), "10.000");
    // The customer segment the mapping does not know stays in the raw item.
    assert!(r.raw.as_str().contains("Z1ACME"));

    let idocs = parse_packet(invoic02("0000000000777777", "90001234", "118.99-").as_bytes())
        .expect("parse");
    let SourceItem::Record(r) = ml_sap_ecc::idoc::map_idoc(&idocs[0], &mapping, now) else {
        panic!("record expected");
    };
    assert_eq!(r.kind, EntityKind::SupplierInvoice);
    assert_eq!(r.key, "90001234");
    assert_eq!(r.fields.amount.expect("a").amount.to_string(), "-118.99");
    assert_eq!(r.fields.supplier.as_deref(), Some("Acme Supplies"));

    // An unknown IDoc type is a rejected item with the reason.
    let x = orders05("0000000000999999", "1", "1.00").replace("ORDERS05", "DESADV01");
    let idocs = parse_packet(x.as_bytes()).expect("parse");
    let SourceItem::Rejected(x) = ml_sap_ecc::idoc::map_idoc(&idocs[0], &mapping, now) else {
        panic!("rejected expected");
    };
    assert!(
        x.reason.contains("DESADV01") && x.reason.contains("not supported"),
        "{}",
        x.reason
    );
    assert_eq!(x.key.as_deref(), Some("IDOC-0000000000999999"));
    // A bad amount: rejected, never a float.
    let idocs = parse_packet(orders05("0000000000999998", "2", "12,50").as_bytes()).expect("parse");
    assert!(matches!(
        ml_sap_ecc::idoc::map_idoc(&idocs[0], &mapping, now),
        SourceItem::Rejected(_)
    ));
    assert_eq!(
        sap_number("100.00-").map(|d| d.to_string()),
        Some("-100.00".into())
    );
    assert_eq!(sap_number("1e3"), None);
}

#[test]
fn latin1_packets_decode_by_their_declaration() {
    let xml = orders05("0000000000000042", "4500000042", "1.00")
        .replace("encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\"");
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&xml);
    let idocs = parse_packet(&bytes).expect("latin-1");
    let k = idocs[0].segment("E1EDKA1").expect("partner");
    assert_eq!(k.field("NAME1"), Some("Müller & Söhne GmbH"));
}

#[test]
fn malformed_packets_are_typed_errors_never_panics() {
    let good = orders05("0000000000000001", "1", "1.00");
    let deep = format!(
        "<ORDERS05><IDOC>{}{}</IDOC></ORDERS05>",
        "<E1X SEGMENT=\"1\">".repeat(40),
        "</E1X>".repeat(40)
    );
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "empty"),
        ("not xml at all".into(), "text"),
        (good[..good.len() / 2].to_owned(), "truncated"),
        (good.replace("</E1EDK01>", ""), "unbalanced"),
        (
            "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><ORDERS05/>".into(),
            "doctype",
        ),
        (
            good.replace("<E1EDK14 SEGMENT=\"1\">", "<E1EDK14>"),
            "segment without SEGMENT",
        ),
        (good.replace("Z1ACME", "HACK"), "unknown segment name"),
        (
            good.replace("<CURCY>EUR</CURCY>", "<CURCY><X>EUR</X></CURCY>"),
            "field with elements",
        ),
        (
            good.replace("<IDOC BEGIN=\"1\">", "<DOC>")
                .replace("</IDOC>", "</DOC>"),
            "no IDOC",
        ),
        (
            good.replace("<TABNAM>EDI_DC40", "<TABNAM>&bogus;EDI_DC40"),
            "unknown entity",
        ),
        ("<ORDERS05></ORDERS05>".into(), "no IDoc"),
        ("<A/><B/>".into(), "two roots"),
        (deep, "too deep"),
        ("\u{feff}<ORDERS05>\u{0}</ORDERS05>".into(), "nul"),
    ];
    for (body, what) in cases {
        assert!(
            parse_packet(body.as_bytes()).is_err(),
            "{what} should be refused"
        );
    }
    assert!(parse_packet(&[0xff, 0xfe, 0x00, 0xd8]).is_err());
    // Found by the `sap_idoc` fuzz target: a byte-order mark where the quote belongs.
    assert!(
        parse_packet(
            "<?xml version=\"1.0\" encoding=\u{feff}\"U\u{1}VTF-8\"?>\n<ORDERS<IN0IDOC".as_bytes()
        )
        .is_err()
    );
    assert!(parse_packet(b"<?xml version=\"1.0\" encoding=\"x-klingon\"?><A/>").is_err());
}

#[tokio::test(start_paused = true)]
async fn refusals_answer_with_the_right_status() {
    let inbox = inbox();
    let xml = orders05("0000000000000001", "4500000001", "1.00");
    // Wrong password, no credentials, a shared secret that does not match.
    let r = inbox.handle(post(xml.clone(), "wrong")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(!r.body().contains("hunter2"));
    let unauth = Request::post("/")
        .body(xml.clone().into_bytes())
        .expect("r");
    assert_eq!(
        inbox.handle(unauth).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let secret = IdocInboxBuilder::new(
        "S",
        IdocAuth::SharedSecret {
            header: http::HeaderName::from_static("x-ml-idoc-secret"),
            secret: "s3cret".into(),
        },
    )
    .build();
    let wrong = Request::post("/")
        .header("x-ml-idoc-secret", "s3cre")
        .body(Vec::new())
        .expect("r");
    assert_eq!(
        secret.handle(wrong).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Huge bodies: 413, declared or not.
    let huge = vec![b'<'; 300 * 1024];
    assert_eq!(
        inbox.handle(post(huge, PASSWORD)).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let declared = Request::post("/")
        .header("content-length", "999999999")
        .body(Vec::new())
        .expect("r");
    assert_eq!(
        inbox.handle(declared).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // GET: 405. Bad XML: 400 and nothing held.
    let get = Request::get("/").body(Vec::new()).expect("r");
    assert_eq!(
        inbox.handle(get).await.status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    let r = inbox.handle(post("<ORDERS05><IDOC>", PASSWORD)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(inbox.pending(), 0);
    // A good IDoc nobody journals: 503 after the timeout (SAP sends it again).
    let r = inbox.handle(post(xml, PASSWORD)).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(inbox.pending(), 1, "still held for the next poll");
}

#[tokio::test]
async fn the_answer_waits_for_the_commit_and_other_instances_positions_ack_nothing() {
    let inbox = inbox();
    let source = inbox.source();
    let xml = orders05("0000000000000007", "4500000007", "7.00");
    let waiting = tokio::spawn({
        let inbox = inbox.clone();
        async move { inbox.handle(post(xml, PASSWORD)).await }
    });
    inbox.wait_for_work().await;
    let page = source.poll(None).await.expect("poll");
    assert_eq!(page.items.len(), 1);
    assert!(page.more);
    // Served but not committed: no answer yet.
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    // A position saved by another process acknowledges nothing here.
    let foreign = ml_core::Position::from_json(serde_json::json!({"inbox": "0000", "seq": 99}));
    let again = source.poll(Some(&foreign)).await.expect("poll");
    assert_eq!(again.items.len(), 1);
    assert!(!waiting.is_finished());
    assert!(matches!(
        source
            .poll(Some(&ml_core::Position::from_json(serde_json::json!([1]))))
            .await,
        Err(ml_core::Error::InvalidPosition(_))
    ));
    // The poll from the committed position is the acknowledgement.
    let done = source.poll(Some(&page.next)).await.expect("ack poll");
    assert!(done.items.is_empty() && !done.more);
    let r = waiting.await.expect("join");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(inbox.pending(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idocs_with_ten_percent_resent_are_delivered_once_each() {
    let inbox = inbox();
    let sink = MemorySink::new("mem");
    let router = Router::new(
        MatchMode::AllMatch,
        vec![Rule {
            name: "all".into(),
            when: vec![Condition::Kind(vec![
                EntityKind::PurchaseOrder,
                EntityKind::SupplierInvoice,
            ])],
            to: vec!["mem:#finance".into()],
        }],
    )
    .expect("router");
    let pipeline = Arc::new(
        Pipeline::builder()
            .store(Arc::new(
                SqliteAuditStore::open_in_memory().expect("journal"),
            ))
            .stream(Stream::new(
                "idocs",
                Arc::new(inbox.source()),
                Schedule::every(Duration::from_secs(3600)).expect("schedule"),
            ))
            .router(router)
            .sink("mem", Arc::new(sink.clone()))
            .build()
            .expect("pipeline"),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let driver = tokio::spawn({
        let inbox = inbox.clone();
        let pipeline = Arc::clone(&pipeline);
        async move {
            inbox
                .drive(&pipeline, "idocs", async {
                    let _ = stop_rx.await;
                })
                .await;
        }
    });
    // 1,000 IDocs (every 10th an INVOIC02), 100 of them sent twice: some re-sends while
    // the first copy waits, some after it was answered.
    let body = |i: usize| {
        let docnum = format!("{:016}", 1_000_000 + i);
        if i.is_multiple_of(10) {
            invoic02(&docnum, &format!("9{i:08}"), &format!("{i}.99"))
        } else {
            orders05(
                &docnum,
                &format!("{:010}", 4_500_000_000u64 + i as u64),
                &format!("{i}.50"),
            )
        }
    };
    let mut sends: Vec<usize> = (0..1_000).collect();
    sends.extend((0..1_000).step_by(10).map(|i| i + 3));
    let statuses = Arc::new(tokio::sync::Mutex::new(BTreeMap::<u16, usize>::new()));
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for i in sends {
        let permit = Arc::clone(&sem).acquire_owned().await.expect("permit");
        let (inbox, statuses) = (inbox.clone(), Arc::clone(&statuses));
        let xml = body(i);
        tasks.spawn(async move {
            let _permit = permit;
            let r = inbox.handle(post(xml, PASSWORD)).await;
            *statuses
                .lock()
                .await
                .entry(r.status().as_u16())
                .or_default() += 1;
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task");
    }
    assert_eq!(*statuses.lock().await, BTreeMap::from([(200, 1_100)]));
    pipeline.deliver_due().await.expect("deliver");
    let _ = stop_tx.send(());
    driver.await.expect("driver");

    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for m in sink.sent() {
        *per_key.entry(m.record_key).or_default() += 1;
    }
    assert_eq!(per_key.len(), 1_000, "every IDoc delivered");
    assert!(per_key.values().all(|n| *n == 1), "none twice");
    let stats = pipeline.store().stats().await.expect("stats");
    eprintln!("journal: {stats:?}");
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn the_axum_router_reads_no_further_than_the_limit() {
    let inbox = inbox();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/sap/idoc", listener.local_addr().expect("addr"));
    let app = inbox.router("/sap/idoc");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let source = inbox.source();
    let acker = tokio::spawn(async move {
        let mut pos = None;
        loop {
            let page = source.poll(pos.as_ref()).await.expect("poll");
            let done = !page.items.is_empty();
            pos = Some(page.next);
            if done {
                // The commit is simulated: polling from the page's position acknowledges it.
                source.poll(pos.as_ref()).await.expect("ack");
                return;
            }
            tokio::task::yield_now().await;
        }
    });
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let client = ml_core::http::ClientOptions::default()
        .client()
        .expect("client");
    let r = client
        .post(&url)
        .header("authorization", format!("Basic {auth}"))
        .body(orders05("0000000000000099", "4500000099", "9.00"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    acker.await.expect("acker");
    let r = client
        .post(&url)
        .header("authorization", format!("Basic {auth}"))
        .body(vec![b'x'; 1024 * 1024])
        .send()
        .await;
    // Refused (413) or cut off at the limit: never read whole, never a panic.
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    server.abort();
}

#[test]
fn secrets_stay_out_of_debug() {
    let inbox = inbox();
    let shown = format!("{inbox:?}");
    assert!(shown.contains(USER) && !shown.contains(PASSWORD), "{shown}");
    let auth = IdocAuth::SharedSecret {
        header: http::HeaderName::from_static("x-secret"),
        secret: "s3cret-value".into(),
    };
    assert!(!format!("{auth:?}").contains("s3cret-value"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_parse_or_fail_without_panicking(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = parse_packet(&data);
    }

    #[test]
    fn a_mangled_packet_parses_or_fails_and_maps_without_panicking(
        cut in 0usize..2_000,
        insert in "[<>&;/\"= A-Z0-9-]{0,8}",
    ) {
        let mut xml = orders05("0000000000000001", "4500000001", "1.00");
        let at = cut.min(xml.len());
        let at = (0..=at).rev().find(|i| xml.is_char_boundary(*i)).unwrap_or(0);
        xml.insert_str(at, &insert);
        if let Ok(idocs) = parse_packet(xml.as_bytes()) {
            let mapping = ml_sap_ecc::idoc::IdocMapping::new("S");
            for i in &idocs {
                if let SourceItem::Record(r) = ml_sap_ecc::idoc::map_idoc(i, &mapping, jiff::Timestamp::UNIX_EPOCH) {
                    proptest::prop_assert!(r.validate().is_ok());
                }
            }
        }
    }
}
