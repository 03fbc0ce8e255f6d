//! Money: a `rust_decimal::Decimal` amount with its ISO 4217 currency. Never a float.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// An ISO 4217 currency code (three upper-case ASCII letters, e.g. `EUR`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a code; lower case is accepted and upper-cased, anything else is an error.
    pub fn new(code: &str) -> Result<Self> {
        let b = code.trim().as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_alphabetic) {
            return Err(Error::InvalidRecord(format!(
                "currency `{code}` is not a three-letter ISO 4217 code"
            )));
        }
        Ok(Self([
            b[0].to_ascii_uppercase(),
            b[1].to_ascii_uppercase(),
            b[2].to_ascii_uppercase(),
        ]))
    }

    /// The code as a string slice.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// Whether ISO 4217 lists the code (current codes, funds and precious metals included).
    pub fn is_iso_4217(&self) -> bool {
        ISO_4217.binary_search(&self.as_str()).is_ok()
    }

    /// Its minor units (ISO 4217 exponent): 0 for JPY, KRW, ...; 3 for BHD, KWD, ...; 2
    /// otherwise (unknown codes included).
    pub fn minor_units(&self) -> u32 {
        const ZERO: &[&str] = &[
            "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
            "VND", "VUV", "XAF", "XOF", "XPF",
        ];
        const THREE: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
        let code = self.as_str();
        if ZERO.contains(&code) {
            0
        } else if THREE.contains(&code) {
            3
        } else {
            2
        }
    }
}

/// ISO 4217 alphabetic codes (list one of 2024), sorted.
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS",
    "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW",
    "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN",
    "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR",
    "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL",
    "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY",
    "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES",
    "VND", "VUV", "WST", "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG", "XDR",
    "XOF", "XPD", "XPF", "XPT", "XSU", "XTS", "XUA", "XXX", "YER", "ZAR", "ZMW", "ZWG", "ZWL",
];

impl FromStr for Currency {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount of money in one currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// The amount, exact. Negative for credit memos.
    pub amount: Decimal,
    /// The currency of `amount`.
    pub currency: Currency,
}

impl Money {
    /// Money from an amount and a currency.
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Self { amount, currency }
    }

    /// Parses an amount string (`"1234.50"`) and a currency code, as ERP APIs give them.
    pub fn parse(amount: &str, currency: &str) -> Result<Self> {
        let amount = Decimal::from_str(amount.trim()).map_err(|e| {
            Error::InvalidRecord(format!("amount `{amount}` is not a decimal number: {e}"))
        })?;
        Ok(Self::new(amount, Currency::new(currency)?))
    }

    /// `Some(self.amount >= other.amount)` when the currencies agree, `None` otherwise:
    /// amounts in different currencies are never compared (no silent FX).
    pub fn at_least(&self, other: &Money) -> Option<bool> {
        (self.currency == other.currency).then(|| self.amount >= other.amount)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            format_amount_with(self.amount, self.currency.minor_units()),
            self.currency
        )
    }
}

/// Formats an amount with thousands separators and at least two decimals: `12,345.60`.
pub fn format_amount(amount: Decimal) -> String {
    format_amount_with(amount, 2)
}

/// Formats an amount with thousands separators and at least `decimals` decimals (the
/// currency's minor units: `1,500 JPY`, `12.500 KWD`); never fewer than the amount has.
pub fn format_amount_with(amount: Decimal, decimals: u32) -> String {
    let scaled = if amount.scale() < decimals {
        let mut a = amount;
        a.rescale(decimals);
        a
    } else {
        amount
    };
    let s = scaled.abs().to_string();
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let mut out = String::with_capacity(s.len() + s.len() / 3 + 1);
    if scaled.is_sign_negative() && !scaled.is_zero() {
        out.push('-');
    }
    let n = int.len();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (n - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_validation() {
        assert_eq!(Currency::new("eur").expect("eur").as_str(), "EUR");
        assert!(Currency::new("EURO").is_err());
        assert!(Currency::new("E1R").is_err());
        assert!(Currency::new("").is_err());
        let err = serde_json::from_str::<Currency>("\"12\"").expect_err("bad");
        assert!(err.to_string().contains("ISO 4217"));
    }

    #[test]
    fn money_parse_and_compare() {
        let a = Money::parse("1234567.5", "USD").expect("money");
        assert_eq!(a.to_string(), "1,234,567.50 USD");
        let credit = Money::parse("-120.00", "USD").expect("money");
        assert_eq!(credit.to_string(), "-120.00 USD");
        let threshold = Money::parse("10000", "USD").expect("money");
        assert_eq!(a.at_least(&threshold), Some(true));
        assert_eq!(credit.at_least(&threshold), Some(false));
        let eur = Money::parse("10000", "EUR").expect("money");
        assert_eq!(a.at_least(&eur), None);
        assert!(Money::parse("12,5", "USD").is_err());
        assert!(Money::parse("NaN", "USD").is_err());
        let json = serde_json::to_string(&a).expect("json");
        assert_eq!(json, r#"{"amount":"1234567.5","currency":"USD"}"#);
        assert_eq!(serde_json::from_str::<Money>(&json).expect("back"), a);
    }

    #[test]
    fn format_small_amounts() {
        assert_eq!(format_amount(Decimal::new(5, 1)), "0.50");
        assert_eq!(format_amount(Decimal::new(100, 0)), "100.00");
        assert_eq!(format_amount(Decimal::new(1_000, 0)), "1,000.00");
        assert_eq!(format_amount(Decimal::new(12_3456, 4)), "12.3456");
    }

    #[test]
    fn iso_4217_is_known_and_sorted() {
        assert!(ISO_4217.windows(2).all(|w| w[0] < w[1]));
        for code in ["EUR", "USD", "JPY", "CHF", "XAU"] {
            assert!(Currency::new(code).expect("c").is_iso_4217(), "{code}");
        }
        assert!(!Currency::new("XYZ").expect("shape").is_iso_4217());
    }

    #[test]
    fn amounts_show_their_currency_s_minor_units() {
        let m = |a: &str, c: &str| Money::parse(a, c).expect("money").to_string();
        assert_eq!(m("-15000", "JPY"), "-15,000 JPY");
        assert_eq!(
            m("1500.5", "JPY"),
            "1,500.5 JPY",
            "never drops digits it has"
        );
        assert_eq!(m("12.5", "KWD"), "12.500 KWD");
        assert_eq!(m("0.3", "EUR"), "0.30 EUR");
    }
}
