//! The journal codec: any column text decodes to a value or a typed error, and a record
//! that decodes survives a write and a read unchanged; the same bytes as a record body,
//! compressed or JSON, decode to a record or a typed error. Input: 8 bytes of an integer
//! column, then the text column.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (int, text) = data.split_at(data.len().min(8));
    let mut n = [0u8; 8];
    n[..int.len()].copy_from_slice(int);
    let text = String::from_utf8_lossy(text);
    if let Err(broken) = ml_store::fuzzing::decode_columns(&text, i64::from_le_bytes(n)) {
        panic!("{broken}");
    }
    if let Err(broken) = ml_store::fuzzing::decode_body(text.as_bytes()) {
        panic!("{broken}");
    }
});
