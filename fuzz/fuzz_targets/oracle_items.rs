//! Oracle Fusion item mapping: any collection body, for any built-in resource, maps to
//! records that validate or to rejected items. Input: 1 resource selector byte, then the
//! body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = ml_oracle_fusion::fuzzing::map_any(data) {
        assert!(!e.starts_with("a mapped record is invalid"), "{e}");
    }
});
