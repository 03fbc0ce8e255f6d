//! SAP IDoc XML: any body through `parse_packet` and `map_idoc` (a mapped record always
//! validates; money never passes through a float), and through the receiver's
//! `IdocInbox::handle`, which answers 200/400/401/405/413/503 and never panics. Input: the
//! body as posted (the harness adds valid Basic credentials).
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use ml_core::record::SourceItem;
use ml_sap_ecc::idoc::{IdocAuth, IdocInbox, IdocInboxBuilder, IdocMapping, map_idoc, parse_packet};

fn inbox() -> &'static IdocInbox {
    static INBOX: OnceLock<IdocInbox> = OnceLock::new();
    INBOX.get_or_init(|| {
        IdocInboxBuilder::new(
            "SapEccIdoc(FUZZ, client=100)",
            IdocAuth::Basic { user: "U".into(), password: "P".into() },
        )
        .with_max_body(64 * 1024)
        // Nobody journals here: an accepted packet times out at once (503).
        .with_ack_timeout(Duration::ZERO)
        .with_capacity(1_000_000)
        .build()
    })
}

fuzz_target!(|data: &[u8]| {
    let mapping = IdocMapping::new("SapEccIdoc(FUZZ, client=100)");
    if let Ok(idocs) = parse_packet(data) {
        for idoc in &idocs {
            if let SourceItem::Record(r) = map_idoc(idoc, &mapping, jiff::Timestamp::UNIX_EPOCH) {
                r.validate().expect("a mapped IDoc record validates");
                assert!(r.dedupe_key().starts_with("IDOC-"));
            }
        }
    }
    let request = http::Request::post("/sap/idoc")
        .header("authorization", "Basic VTpQ") // U:P
        .body(data.to_vec())
        .expect("request");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let status = rt.block_on(inbox().handle(request)).status().as_u16();
    assert!(matches!(status, 200 | 400 | 413 | 503), "status {status}");
});
