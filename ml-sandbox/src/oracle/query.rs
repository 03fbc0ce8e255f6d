//! The subset of the ADF REST `q` and `orderBy` languages the emulator understands.

use jiff::Timestamp;

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

/// One `Attr OP value` clause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Clause {
    pub(crate) attr: String,
    pub(crate) op: Op,
    pub(crate) value: String,
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    for q in ['\'', '"'] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

fn is_attr(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
}

/// Parses `q` under REST framework version 2: `Attr OP 'v' [and Attr OP 'v' ...]`.
pub(crate) fn parse_v2(q: &str) -> Result<Vec<Clause>, String> {
    let mut out = Vec::new();
    let lower = q.to_ascii_lowercase();
    let mut parts = Vec::new();
    let mut rest = 0;
    // Split on " and " outside quotes.
    let bytes = q.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(qc) if b == qc => quote = None,
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if lower[i..].starts_with(" and ") => {
                parts.push(&q[rest..i]);
                rest = i + 5;
                i += 5;
                continue;
            }
            Some(_) | None => {}
        }
        i += 1;
    }
    parts.push(&q[rest..]);
    for part in parts {
        let part = part.trim();
        let (pos, op, len) = ["<=", ">=", "!=", "<>", "=", "<", ">"]
            .iter()
            .filter_map(|o| part.find(o).map(|p| (p, *o, o.len())))
            .min_by_key(|(p, o, _)| (*p, std::cmp::Reverse(o.len())))
            .ok_or_else(|| format!("unsupported expression `{part}`"))?;
        let attr = part[..pos].trim();
        if !is_attr(attr) {
            return Err(format!("unsupported expression `{part}`"));
        }
        let op = match op {
            ">=" => Op::Ge,
            ">" => Op::Gt,
            "<=" => Op::Le,
            "<" => Op::Lt,
            "=" => Op::Eq,
            other => return Err(format!("operator `{other}` is not supported here")),
        };
        let value = unquote(&part[pos + len..]).to_owned();
        out.push(Clause {
            attr: attr.to_owned(),
            op,
            value,
        });
    }
    Ok(out)
}

/// Parses `q` under REST framework version 1 (query by example): `Attr=value;Attr2=value`.
pub(crate) fn parse_v1(q: &str) -> Result<Vec<Clause>, String> {
    q.split(';')
        .filter(|p| !p.trim().is_empty())
        .map(|part| {
            let (attr, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not Attr=value"))?;
            let attr = attr.trim();
            if !is_attr(attr) || value.contains(['<', '>']) || attr.contains(['<', '>', '!']) {
                return Err(format!(
                    "`{part}` is not query-by-example; expressions need REST-Framework-Version 2"
                ));
            }
            Ok(Clause {
                attr: attr.to_owned(),
                op: Op::Eq,
                value: unquote(value).to_owned(),
            })
        })
        .collect()
}

/// Compares two timestamps under `op`.
pub(crate) fn cmp_ts(actual: Timestamp, op: Op, wanted: Timestamp) -> bool {
    match op {
        Op::Ge => actual >= wanted,
        Op::Gt => actual > wanted,
        Op::Le => actual <= wanted,
        Op::Lt => actual < wanted,
        Op::Eq => actual == wanted,
    }
}

/// Parses a timestamp literal: RFC 3339 with an offset or `Z`, or a bare date (midnight UTC).
pub(crate) fn parse_ts(v: &str) -> Option<Timestamp> {
    if let Ok(t) = v.parse::<Timestamp>() {
        return Some(t);
    }
    v.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
}

/// Parses `orderBy=A:asc,B:desc`.
pub(crate) fn parse_order(s: &str) -> Result<Vec<(String, bool)>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (attr, dir) = p.split_once(':').unwrap_or((p, "asc"));
            let attr = attr.trim();
            if !is_attr(attr) {
                return Err(format!("bad orderBy attribute `{attr}`"));
            }
            let asc = match dir.trim().to_ascii_lowercase().as_str() {
                "asc" => true,
                "desc" => false,
                other => return Err(format!("bad orderBy direction `{other}`")),
            };
            Ok((attr.to_owned(), asc))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_expressions() {
        let c = parse_v2("LastUpdateDate >= '2026-01-01T00:00:00Z' and InvoiceId=5").expect("q");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].op, Op::Ge);
        assert_eq!(c[0].value, "2026-01-01T00:00:00Z");
        assert_eq!(c[1].attr, "InvoiceId");
        assert!(parse_v2("LastUpdateDate like 'x'").is_err());
        assert!(parse_v2("x != 1").is_err());
        assert!(parse_v1("LastUpdateDate>='x'").is_err());
        assert_eq!(parse_v1("A=1;B=x").expect("qbe").len(), 2);
        assert_eq!(
            parse_order("LastUpdateDate:asc,InvoiceId").expect("o"),
            vec![("LastUpdateDate".into(), true), ("InvoiceId".into(), true)]
        );
        assert!(parse_ts("2026-01-01").is_some());
        assert!(parse_ts("2026-01-01T00:00:00.000+02:00").is_some());
    }
}
