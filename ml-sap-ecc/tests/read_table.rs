//! RfcReadTable against the SAP ECC emulator: chunked wide reads joined on the key, memory
//! dumps retried with fewer rows, and typed ABAP exceptions.

use std::sync::Arc;

use ml_core::config::MapEnv;
use ml_core::error::ErrorClass;
use ml_core::retry::RetryPolicy;
use ml_sandbox::Emulator as _;
use ml_sandbox::sap_ecc::{Failure, SapEccEmulator, ddic};
use ml_sap_ecc::options::Expr;
use ml_sap_ecc::read_table::{ReadRequest, RfcReadTable};
use ml_sap_ecc::{Category, RfcErrorKind, SapEccBuilder, SapEccError};

fn reader(e: &SapEccEmulator) -> Arc<RfcReadTable> {
    let env = e
        .env()
        .into_iter()
        .fold(MapEnv::new(), |env, (k, v)| env.with(k, v));
    let s = SapEccBuilder::from_env_with(&env)
        .with_category(Category::GlDocuments)
        .with_retry(
            RetryPolicy::default()
                .with_base_delay(std::time::Duration::from_millis(1))
                .with_max_attempts(5),
        )
        .build()
        .expect("source");
    Arc::clone(s.read_table())
}

#[tokio::test]
async fn every_bseg_column_in_chunks_joined_on_the_key() {
    let e = SapEccEmulator::start().await.expect("emulator");
    let t = e.load_traps();
    let rt = reader(&e);
    let all: Vec<&str> = ddic::BSEG.iter().map(|d| d.name).collect();
    let width: usize = ddic::BSEG.iter().map(|d| d.len).sum();
    assert!(width > 512, "BSEG is {width} wide");
    let key = ["MANDT", "BUKRS", "BELNR", "GJAHR", "BUZEI"];
    let filter = Expr::and([
        Expr::eq("BUKRS", "1000"),
        Expr::is_in(
            "BELNR",
            t.gl_documents
                .iter()
                .map(|k| k.split('/').nth(1).unwrap_or_default().to_owned()),
        ),
    ]);
    let calls = e.calls("RFC_READ_TABLE");
    let out = rt
        .read(&ReadRequest {
            table: "BSEG",
            fields: &all,
            key: &key,
            filter: &filter,
            rowcount: 100,
        })
        .await
        .expect("chunked read");
    // One metadata call and two chunks.
    assert_eq!(e.calls("RFC_READ_TABLE") - calls, 3);
    assert_eq!(out.rows.len(), 9);
    let stored = e.rows("BSEG");
    for row in &out.rows {
        assert_eq!(row.len(), all.len(), "every column joined");
        let same = stored
            .iter()
            .find(|s| key.iter().all(|k| s.get(*k) == row.get(*k)))
            .expect("stored row");
        assert_eq!(row["SGTXT"], same["SGTXT"]);
        assert_eq!(row["HKONT"], same["HKONT"], "ALPHA kept");
        assert_eq!(row["DMBE3"], "0", "last chunk's numbers parsed by offset");
    }
}

#[tokio::test]
async fn a_memory_dump_is_retried_with_half_the_rows() {
    let e = SapEccEmulator::start().await.expect("emulator");
    e.load_traps();
    let rt = reader(&e);
    rt.metadata("RBKP").await.expect("metadata");
    e.fail_next(2, Failure::MemoryDump);
    let out = rt
        .read(&ReadRequest {
            table: "RBKP",
            fields: &["BELNR", "GJAHR", "RMWWR"],
            key: &["BELNR", "GJAHR"],
            filter: &Expr::True,
            rowcount: 400,
        })
        .await
        .expect("read after two dumps");
    assert_eq!(out.rowcount, 100);
    assert_eq!(out.rows.len(), 7);
    assert_eq!(e.injected_failures(), 2);
}

#[tokio::test]
async fn abap_exceptions_are_typed_and_permanent() {
    let e = SapEccEmulator::start().await.expect("emulator");
    e.load_traps();
    let rt = reader(&e);
    let read = |table: &'static str, fields: &'static [&'static str]| {
        let rt = Arc::clone(&rt);
        async move {
            rt.read(&ReadRequest {
                table,
                fields,
                key: &[],
                filter: &Expr::True,
                rowcount: 10,
            })
            .await
        }
    };
    let exception = |r: Result<_, SapEccError>| -> (String, ErrorClass) {
        let err = r.expect_err("exception");
        let class = err.class();
        match err.rfc_error().map(|e| e.kind.clone()) {
            Some(RfcErrorKind::AbapException(name)) => (name, class),
            other => panic!("not an ABAP exception: {other:?} ({err})"),
        }
    };
    assert_eq!(
        exception(read("ZZ_NOPE", &["X"]).await),
        ("TABLE_NOT_AVAILABLE".to_owned(), ErrorClass::Permanent)
    );
    e.deny_table("LFA1");
    assert_eq!(
        exception(read("LFA1", &["LIFNR"]).await).0,
        "NOT_AUTHORIZED"
    );
    // A field the table lacks is caught before any data call, naming it.
    let err = read("RBKP", &["NOPE"]).await.expect_err("unknown field");
    assert!(err.to_string().contains("NOPE"), "{err}");
}
