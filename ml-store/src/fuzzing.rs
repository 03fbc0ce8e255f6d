//! Entry points for fuzzing the journal codec (feature `fuzzing`). Not a stable API: it
//! exists so that the `fuzz/` crate and the property tests reach the decoders the journal
//! applies to every column it reads back.

use ml_core::audit::ErrorInfo;
use ml_core::record::Rejected;
use ml_core::{Position, Record};

use crate::body::Body;
use crate::codec;
use crate::error::StoreError;

/// Decodes `text` as every JSON column the journal holds (record, position, error,
/// rejected item), `text` as a status and a remote status, and `ns` as a timestamp and a
/// counter. Each decoder gives a value or a typed [`StoreError`] (their results are
/// returned), never a panic. `Err` only when the journal's own invariant breaks: a record
/// that decodes must encode and decode back to the same text (what is journaled is what
/// is read).
pub fn decode_columns(text: &str, ns: i64) -> Result<Vec<Result<(), StoreError>>, String> {
    let record = codec::from_json::<Record>(text, "fuzz record");
    if let Ok(r) = &record {
        roundtrip(r)?;
    }
    Ok(vec![
        record.map(drop),
        codec::from_json::<Position>(text, "fuzz position").map(drop),
        codec::from_json::<ErrorInfo>(text, "fuzz error").map(drop),
        codec::from_json::<Rejected>(text, "fuzz rejected").map(drop),
        codec::status(text, "fuzz status").map(drop),
        codec::remote_status(Some(text), "fuzz remote status").map(drop),
        codec::ts_from(ns, "fuzz timestamp").map(drop),
        codec::count_u32(ns, "fuzz count").map(drop),
    ])
}

/// Decodes `bytes` as a record body in both stored forms: as a compressed body (BLOB) and
/// as JSON (TEXT). Each gives a record or a typed [`StoreError`], never a panic (nor an
/// allocation larger than a declared length the decoder accepts). `Err` only when a record
/// that decodes does not survive being journaled again (compressed or not).
pub fn decode_body(bytes: &[u8]) -> Result<Vec<Result<(), StoreError>>, String> {
    let mut out = Vec::with_capacity(2);
    for body in [Body::Lz4(bytes.to_vec()), Body::Json(bytes.to_vec())] {
        let record = body.decode("fuzz body");
        if let Ok(r) = &record {
            let again =
                Body::encode(r).map_err(|e| format!("a decoded body does not encode: {e}"))?;
            let back = again
                .decode("fuzz body (again)")
                .map_err(|e| format!("a journaled body does not decode: {e}"))?;
            roundtrip(&back)?;
        }
        out.push(record.map(drop));
    }
    Ok(out)
}

fn roundtrip(r: &Record) -> Result<(), String> {
    let text = codec::to_json(r).map_err(|e| format!("a decoded record does not encode: {e}"))?;
    let back: Record = codec::from_json(&text, "fuzz record (again)")
        .map_err(|e| format!("an encoded record does not decode: {e}"))?;
    let again = codec::to_json(&back).map_err(|e| e.to_string())?;
    if again == text {
        Ok(())
    } else {
        Err(format!(
            "a record does not survive the journal: {text} became {again}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::body::MAGIC;

    proptest! {
        #[test]
        fn any_column_decodes_or_errs(text in ".{0,200}", ns in any::<i64>()) {
            let decoded = decode_columns(&text, ns);
            prop_assert!(decoded.is_ok(), "{decoded:?}");
        }

        #[test]
        fn json_shaped_columns_decode_or_err(
            text in r#"\{("[a-z_]{1,12}":("[^"\\]{0,10}"|[0-9.eE+-]{1,12}|null|true|\[\]|\{\}),?){0,8}\}"#,
        ) {
            let decoded = decode_columns(&text, 0);
            prop_assert!(decoded.is_ok(), "{decoded:?}");
            for r in decoded.unwrap_or_default() {
                if let Err(e) = r {
                    prop_assert!(matches!(e, StoreError::CorruptRow { .. }), "{e:?}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn any_body_decodes_or_errs(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&tail);
            let decoded = decode_body(&bytes);
            prop_assert!(decoded.is_ok(), "{decoded:?}");
            let decoded = decode_body(&tail);
            prop_assert!(decoded.is_ok(), "{decoded:?}");
        }
    }

    #[test]
    fn a_compressed_journaled_record_survives() {
        let r = Record::new(
            "Demo",
            ml_core::EntityKind::SupplierInvoice,
            "INV-1",
            jiff::Timestamp::from_second(1_700_000_000).expect("ts"),
        )
        .with_raw(
            ml_core::RawJson::from_text(format!("[{}]", ["{\"a\":\"bbbb\"}"; 100].join(",")))
                .expect("raw"),
        );
        let Body::Lz4(stored) = Body::encode(&r).expect("encode") else {
            panic!("a 1 KB body is compressed");
        };
        let results = decode_body(&stored).expect("survives");
        assert!(results[0].is_ok(), "{:?}", results[0]);
        assert!(results[1].is_err(), "compressed bytes are not JSON");
    }

    #[test]
    fn a_journaled_record_survives() {
        let r = Record::new(
            "Demo",
            ml_core::EntityKind::SupplierInvoice,
            "INV-1",
            jiff::Timestamp::from_second(1_700_000_000).expect("ts"),
        );
        let text = codec::to_json(&r).expect("json");
        let results = decode_columns(&text, 1).expect("survives");
        assert!(results[0].is_ok(), "{:?}", results[0]);
        assert!(results[4].is_err(), "a record is not a status");
    }

    /// The first input of the `journal_codec` fuzz target that stopped it: a status
    /// decoder's error echoes the column, marker text included; only the round trip decides.
    #[test]
    fn an_error_echoing_the_input_is_not_a_broken_record() {
        let text = "{\"system\":\"Demo\"pplier_inv\"system\":\"Demo\"pplier_invodoes not \
                    survive the journalice\",\"key\":\"\u{cb}\u{cb},\"modified_at\":\"2023-11-14T22:1\
                    currency\":\"EUR\"}},\"\"aw\":null}";
        let results = decode_columns(text, 1).expect("no record decoded, nothing broken");
        assert!(results.iter().filter(|r| r.is_err()).count() >= 5);
    }
}
