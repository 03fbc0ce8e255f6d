//! E.164 phone numbers.

/// Checks that `number` is E.164: `+`, a country code not starting with 0, digits only,
/// 7 to 15 digits in all. Returns the reason when it is not.
pub fn check_e164(number: &str) -> Result<(), &'static str> {
    let Some(digits) = number.strip_prefix('+') else {
        return Err("must start with +");
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must hold digits only after +");
    }
    if digits.starts_with('0') {
        return Err("country code cannot start with 0");
    }
    if !(7..=15).contains(&digits.len()) {
        return Err("must have 7 to 15 digits");
    }
    Ok(())
}

/// Whether `number` is E.164.
pub fn is_e164(number: &str) -> bool {
    check_e164(number).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164() {
        assert!(is_e164("+15558675310"));
        assert!(is_e164("+4915112345678"));
        assert!(is_e164("+6834002"));
        for bad in [
            "15558675310",
            "+0155586753",
            "+1 555 867 5310",
            "+1555-8675310",
            "+1234",
            "+1234567890123456",
            "",
            "+",
            "whatsapp:+15558675310",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }
}
