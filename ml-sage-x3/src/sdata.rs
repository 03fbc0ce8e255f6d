//! SData query literals and predicates for api1 `where` (`@…@` date-times, quoted strings),
//! and reading X3 date-times in the site's zone.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

/// A string literal: single quotes, a quote inside doubled (`'O''Brien'`).
pub fn string_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A date-time literal for `t`: `@2026-03-20T14:53:51Z@`, or with `civil` the civil time
/// in `zone` without an offset (`@2026-03-20T15:53:51@`), for a server that serves (and
/// compares) `UPDDATTIM` without an offset. Whole seconds are written as such; a fraction
/// only when `t` has one.
pub fn datetime_literal(t: Timestamp, zone: &TimeZone, civil: bool) -> String {
    if civil {
        let dt = t.to_zoned(zone.clone()).datetime();
        format!("@{}@", dt.strftime("%Y-%m-%dT%H:%M:%S%.f"))
    } else {
        format!("@{}@", t.strftime("%Y-%m-%dT%H:%M:%S%.fZ"))
    }
}

/// `STAMP ge @lo@ and STAMP le @hi@` (either bound optional); `None` without bounds.
pub fn stamp_window(
    stamp: &str,
    lo: Option<Timestamp>,
    hi: Option<Timestamp>,
    zone: &TimeZone,
    civil: bool,
) -> Option<String> {
    let lo = lo.map(|t| format!("{stamp} ge {}", datetime_literal(t, zone, civil)));
    let hi = hi.map(|t| format!("{stamp} le {}", datetime_literal(t, zone, civil)));
    match (lo, hi) {
        (Some(l), Some(h)) => Some(format!("({l}) and ({h})")),
        (Some(x), None) | (None, Some(x)) => Some(x),
        (None, None) => None,
    }
}

/// Whether a served date-time carries no offset (`2026-03-20T15:53:51`): the server then
/// compares literals as civil time too.
pub fn is_civil(s: &str) -> bool {
    s.trim().parse::<Timestamp>().is_err()
}

/// Reads an X3 date-time: RFC 3339 with an offset or `Z` as is; without one (or with a
/// space instead of `T`) as civil time in `zone`; a bare date as its midnight in `zone`.
pub fn parse_datetime(s: &str, zone: &TimeZone) -> Option<Timestamp> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    let civil = s.replacen(' ', "T", 1);
    let dt: DateTime = civil.parse().ok().or_else(|| {
        civil
            .parse::<jiff::civil::Date>()
            .ok()
            .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
    })?;
    dt.to_zoned(zone.clone()).ok().map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(string_literal("O'Brien"), "'O''Brien'");
        let t: Timestamp = "2026-03-20T14:53:51Z".parse().expect("t");
        let paris = TimeZone::get("Europe/Paris").expect("tz");
        assert_eq!(datetime_literal(t, &paris, false), "@2026-03-20T14:53:51Z@");
        assert_eq!(datetime_literal(t, &paris, true), "@2026-03-20T15:53:51@");
        assert!(is_civil("2026-03-20T15:53:51") && !is_civil("2026-03-20T14:53:51Z"));
        assert_eq!(
            stamp_window("UPDDATTIM", Some(t), None, &TimeZone::UTC, false).as_deref(),
            Some("UPDDATTIM ge @2026-03-20T14:53:51Z@")
        );
        assert_eq!(
            stamp_window("U", Some(t), Some(t), &TimeZone::UTC, false).as_deref(),
            Some("(U ge @2026-03-20T14:53:51Z@) and (U le @2026-03-20T14:53:51Z@)")
        );
    }

    #[test]
    fn datetimes_in_the_site_zone() {
        let paris = TimeZone::get("Europe/Paris").expect("tz");
        let want: Timestamp = "2026-03-20T14:53:51Z".parse().expect("t");
        assert_eq!(parse_datetime("2026-03-20T14:53:51Z", &paris), Some(want));
        assert_eq!(parse_datetime("2026-03-20T15:53:51", &paris), Some(want));
        assert_eq!(parse_datetime("2026-03-20 15:53:51", &paris), Some(want));
        assert_eq!(
            parse_datetime("2026-03-20T16:53:51+02:00", &paris),
            Some(want)
        );
        assert!(parse_datetime("2026-03-20", &TimeZone::UTC).is_some());
        assert_eq!(parse_datetime("yesterday", &paris), None);
        assert_eq!(parse_datetime("", &paris), None);
    }
}
