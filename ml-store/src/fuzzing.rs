//! Entry points for fuzzing the journal codec (feature `fuzzing`). Not a stable API: it
//! exists so that the `fuzz/` crate and the property tests reach the decoders the journal
//! applies to every column it reads back.

use ml_core::audit::ErrorInfo;
use ml_core::record::Rejected;
use ml_core::{Position, Record};

use crate::codec;
use crate::error::StoreError;

/// Decodes `text` as every JSON column the journal holds (record, position, error,
/// rejected item), `text` as a status and a remote status, and `ns` as a timestamp and a
/// counter. Each must give a value or [`StoreError`], never panic. A record that decodes
/// must encode and decode back to an equal record (what is journaled is what is read).
pub fn decode_columns(text: &str, ns: i64) -> Vec<Result<(), StoreError>> {
    let mut out = Vec::new();
    let record = codec::from_json::<Record>(text, "fuzz record");
    if let Ok(r) = &record {
        out.push(roundtrip(r));
    }
    out.push(record.map(drop));
    out.push(codec::from_json::<Position>(text, "fuzz position").map(drop));
    out.push(codec::from_json::<ErrorInfo>(text, "fuzz error").map(drop));
    out.push(codec::from_json::<Rejected>(text, "fuzz rejected").map(drop));
    out.push(codec::status(text, "fuzz status").map(drop));
    out.push(codec::remote_status(Some(text), "fuzz remote status").map(drop));
    out.push(codec::ts_from(ns, "fuzz timestamp").map(drop));
    out.push(codec::count_u32(ns, "fuzz count").map(drop));
    out
}

fn roundtrip(r: &Record) -> Result<(), StoreError> {
    let text = codec::to_json(r)?;
    let back: Record = codec::from_json(&text, "fuzz record (again)")?;
    let again = codec::to_json(&back)?;
    if again == text {
        Ok(())
    } else {
        Err(StoreError::corrupt(format!(
            "a record does not survive the journal: {text} became {again}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_column_decodes_or_errs(text in ".{0,200}", ns in any::<i64>()) {
            let _ = decode_columns(&text, ns);
        }

        #[test]
        fn json_shaped_columns_decode_or_err(
            text in r#"\{("[a-z_]{1,12}":("[^"\\]{0,10}"|[0-9.eE+-]{1,12}|null|true|\[\]|\{\}),?){0,8}\}"#,
        ) {
            for r in decode_columns(&text, 0) {
                if let Err(e) = r {
                    prop_assert!(!matches!(e, StoreError::Task(_)));
                }
            }
        }
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
        let results = decode_columns(&text, 1);
        assert!(results[0].is_ok(), "{:?}", results[0]);
        assert!(results[1].is_ok(), "{:?}", results[1]);
    }
}
