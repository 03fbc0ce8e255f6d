use super::*;

const ENV: &str = r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body>"#;
const END: &str = "</SOAP-ENV:Body></SOAP-ENV:Envelope>";

fn read_table(table: &str, fields: &[&str], options: &[&str], extra: &str) -> String {
    let fields: String = fields
        .iter()
        .map(|f| ["<item><FIELDNAME>", f, "</FIELDNAME></item>"].concat())
        .collect();
    let options: String = options
        .iter()
        .map(|o| ["<item><TEXT>", o, "</TEXT></item>"].concat())
        .collect();
    format!(
        r#"{ENV}<rfc:RFC_READ_TABLE xmlns:rfc="urn:sap-com:document:sap:rfc:functions"><QUERY_TABLE>{table}</QUERY_TABLE>{extra}<OPTIONS>{options}</OPTIONS><FIELDS>{fields}</FIELDS><DATA/></rfc:RFC_READ_TABLE>{END}"#
    )
}

async fn post(e: &SapEccEmulator, client: &str, user: &str, body: String) -> (u16, String) {
    let r = ml_core::http::ClientOptions::default()
        .client()
        .expect("client")
        .post(format!(
            "{}/sap/bc/soap/rfc?sap-client={client}",
            e.base_url()
        ))
        .basic_auth(user, Some(e.password()))
        .header("content-type", "text/xml; charset=utf-8")
        .body(body)
        .send()
        .await
        .expect("send");
    (r.status().as_u16(), r.text().await.expect("text"))
}

#[tokio::test]
async fn logon_client_and_shapes() {
    let e = SapEccEmulator::start().await.expect("start");
    e.load_traps();
    let body = read_table(
        "LFA1",
        &["LIFNR", "NAME1"],
        &["LIFNR = '0000100001'"],
        "<ROWCOUNT>10</ROWCOUNT>",
    );
    assert_eq!(post(&e, "200", USER, body.clone()).await.0, 401);
    assert_eq!(post(&e, CLIENT, "OTHER", body.clone()).await.0, 401);
    let (status, xml) = post(&e, CLIENT, USER, body).await;
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains("<n0:RFC_READ_TABLE.Response"), "{xml}");
    assert!(
        xml.contains("<WA>0000100001Müller | Söhne; Werkzeuge</WA>"),
        "{xml}"
    );
    assert!(
        xml.contains("<OFFSET>000010</OFFSET><TYPE>C</TYPE>")
            || xml.contains("<OFFSET>000010</OFFSET>")
    );
    assert_eq!(e.calls("RFC_READ_TABLE"), 1);
}

#[tokio::test]
async fn limits_and_exceptions() {
    let e = SapEccEmulator::start().await.expect("start");
    e.load_traps();
    // Every BSEG column: wider than 512.
    let (s, xml) = post(
        &e,
        CLIENT,
        USER,
        read_table("BSEG", &[], &[], "<ROWCOUNT>1</ROWCOUNT>"),
    )
    .await;
    assert_eq!(s, 500);
    assert!(xml.contains("<Name>DATA_BUFFER_EXCEEDED</Name>"), "{xml}");
    // ... but fine for a NO_DATA metadata call.
    let (s, xml) = post(
        &e,
        CLIENT,
        USER,
        read_table("BSEG", &[], &[], "<NO_DATA>X</NO_DATA>"),
    )
    .await;
    assert_eq!(s, 200, "{xml}");
    assert!(xml.contains("<FIELDNAME>SGTXT</FIELDNAME>"));
    let (_, xml) = post(
        &e,
        CLIENT,
        USER,
        read_table(
            "RBKP",
            &["BELNR"],
            &["BUKRS='1000'"],
            "<ROWCOUNT>5</ROWCOUNT>",
        ),
    )
    .await;
    assert!(xml.contains("<Name>OPTION_NOT_VALID</Name>"), "{xml}");
    let (_, xml) = post(&e, CLIENT, USER, read_table("ZZZ", &[], &[], "")).await;
    assert!(xml.contains("<Name>TABLE_NOT_AVAILABLE</Name>"), "{xml}");
    let (_, xml) = post(&e, CLIENT, USER, read_table("RBKP", &["NOPE"], &[], "")).await;
    assert!(xml.contains("<Name>FIELD_NOT_VALID</Name>"), "{xml}");
    e.deny_table("BKPF");
    let (_, xml) = post(&e, CLIENT, USER, read_table("BKPF", &["BELNR"], &[], "")).await;
    assert!(xml.contains("<Name>NOT_AUTHORIZED</Name>"), "{xml}");
    // Unbounded reads of a big table dump.
    let small = SapEccEmulator::builder()
        .memory_bytes(100)
        .start()
        .await
        .expect("start");
    small.load_traps();
    let (s, xml) = post(
        &small,
        CLIENT,
        USER,
        read_table("RBKP", &["BELNR", "XBLNR"], &[], "<ROWCOUNT>0</ROWCOUNT>"),
    )
    .await;
    assert_eq!(s, 500);
    assert!(xml.contains("TSV_TNEW_PAGE_ALLOC_FAILED"), "{xml}");
    // Credit memos end in a minus; the DATA table is there because it was sent.
    let (_, xml) = post(
        &e,
        CLIENT,
        USER,
        read_table(
            "RBKP",
            &["BELNR", "RMWWR"],
            &["BELNR = '5100000106'"],
            "<ROWCOUNT>5</ROWCOUNT>",
        ),
    )
    .await;
    assert!(xml.contains("<WA>5100000106         125.00-</WA>"), "{xml}");
}

#[tokio::test]
async fn bapi_return_rows() {
    let e = SapEccEmulator::builder()
        .bare_response_names(true)
        .start()
        .await
        .expect("start");
    let traps = e.load_traps();
    let call = |po: &str| {
        format!(
            r#"{ENV}<rfc:BAPI_PO_GETDETAIL1 xmlns:rfc="urn:sap-com:document:sap:rfc:functions"><PURCHASEORDER>{po}</PURCHASEORDER><ACCOUNT_ASSIGNMENT>X</ACCOUNT_ASSIGNMENT><POITEM/><POACCOUNT/><RETURN/></rfc:BAPI_PO_GETDETAIL1>{END}"#
        )
    };
    let (s, xml) = post(&e, CLIENT, USER, call("4500000101")).await;
    assert_eq!(s, 200);
    assert!(xml.contains("BAPI_PO_GETDETAIL1Response"), "{xml}");
    assert!(xml.contains("<COSTCENTER>0000004711</COSTCENTER>"), "{xml}");
    assert!(xml.contains("<RETURN/>"), "{xml}");
    let (s, xml) = post(&e, CLIENT, USER, call(&traps.bapi_error_po)).await;
    assert_eq!(s, 200);
    assert!(xml.contains("<TYPE>E</TYPE>"), "{xml}");
    let (_, xml) = post(&e, CLIENT, USER, call("7")).await;
    assert!(xml.contains("does not exist"), "{xml}");
}

#[tokio::test(start_paused = true)]
async fn over_the_cap_is_system_failure() {
    let e = Arc::new(
        SapEccEmulator::builder()
            .max_sessions(2)
            .latency(Duration::from_millis(50))
            .start()
            .await
            .expect("start"),
    );
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let e = Arc::clone(&e);
        tasks.push(tokio::spawn(async move {
            post(
                &e,
                CLIENT,
                USER,
                read_table("LFA1", &["LIFNR"], &[], "<ROWCOUNT>1</ROWCOUNT>"),
            )
            .await
        }));
    }
    let mut failures = 0;
    for t in tasks {
        let (s, xml) = t.await.expect("join");
        if s == 500 {
            assert!(xml.contains("SYSTEM_FAILURE"));
            failures += 1;
        }
    }
    assert!(failures >= 1);
    assert_eq!(e.capacity_refusals(), failures);
    assert!(e.max_in_flight() > 2);
}
