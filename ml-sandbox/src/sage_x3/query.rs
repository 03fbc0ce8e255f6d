//! The SData query subset api1 takes: `where` predicates (`eq ne lt le gt ge`, `and`,
//! `or`, `not`, parentheses, `left(P,n)`; literals `'text'` with `''` for a quote,
//! `@2026-03-20@` / `@2026-03-20T14:53:51Z@` dates, numbers) and `orderBy` (`P asc|desc`,
//! comma-separated).

use std::cmp::Ordering;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::state::{Row, parse_instant, scalar};

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Operand {
    Prop(String),
    Left(String, usize),
    Text(String),
    Date(String),
    Number(f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Expr {
    Cmp(Operand, Op, Operand),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Text(String),
    Date(String),
    Number(f64),
    Open,
    Close,
    Comma,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < c.len() {
        match c[i] {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '\'' => {
                let mut text = String::new();
                i += 1;
                loop {
                    match c.get(i) {
                        None => return Err("unterminated string literal".into()),
                        Some('\'') if c.get(i + 1) == Some(&'\'') => {
                            text.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            text.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Text(text));
            }
            '@' => {
                let end = c[i + 1..]
                    .iter()
                    .position(|ch| *ch == '@')
                    .ok_or("unterminated date literal")?;
                out.push(Tok::Date(c[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
            }
            ch if ch.is_ascii_digit() || ch == '-' => {
                let start = i;
                i += 1;
                while i < c.len() && (c[i].is_ascii_digit() || c[i] == '.') {
                    i += 1;
                }
                let text: String = c[start..i].iter().collect();
                out.push(Tok::Number(
                    text.parse().map_err(|_| format!("bad number {text}"))?,
                ));
            }
            ch if ch.is_alphabetic() || ch == '_' || ch == '$' => {
                let start = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '$') {
                    i += 1;
                }
                out.push(Tok::Ident(c[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character `{other}`")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.at), Some(Tok::Ident(x)) if x.eq_ignore_ascii_case(w))
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.peek_word("or") {
            self.at += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.unary()?;
        while self.peek_word("and") {
            self.at += 1;
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.peek_word("not") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.toks.get(self.at) == Some(&Tok::Open) {
            self.at += 1;
            let e = self.or()?;
            if self.next() != Some(Tok::Close) {
                return Err("missing `)`".into());
            }
            return Ok(e);
        }
        let left = self.operand()?;
        let op = match self.next() {
            Some(Tok::Ident(w)) => match w.to_ascii_lowercase().as_str() {
                "eq" => Op::Eq,
                "ne" => Op::Ne,
                "lt" => Op::Lt,
                "le" => Op::Le,
                "gt" => Op::Gt,
                "ge" => Op::Ge,
                other => return Err(format!("unknown operator `{other}`")),
            },
            other => return Err(format!("expected an operator, found {other:?}")),
        };
        let right = self.operand()?;
        Ok(Expr::Cmp(left, op, right))
    }

    fn operand(&mut self) -> Result<Operand, String> {
        match self.next() {
            Some(Tok::Text(t)) => Ok(Operand::Text(t)),
            Some(Tok::Date(d)) => Ok(Operand::Date(d)),
            Some(Tok::Number(n)) => Ok(Operand::Number(n)),
            Some(Tok::Ident(f)) if f.eq_ignore_ascii_case("left") => {
                if self.next() != Some(Tok::Open) {
                    return Err("left( expected".into());
                }
                let Some(Tok::Ident(p)) = self.next() else {
                    return Err("left(<property>, n) expected".into());
                };
                if self.next() != Some(Tok::Comma) {
                    return Err("left(<property>, n) expected".into());
                }
                let Some(Tok::Number(n)) = self.next() else {
                    return Err("left(<property>, n) expected".into());
                };
                if self.next() != Some(Tok::Close) {
                    return Err("missing `)`".into());
                }
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(Operand::Left(p, n.max(0.0) as usize))
            }
            Some(Tok::Ident(p)) => Ok(Operand::Prop(p)),
            other => Err(format!("expected a property or a literal, found {other:?}")),
        }
    }
}

/// Parses a `where` predicate.
pub(super) fn parse_where(s: &str) -> Result<Expr, String> {
    let mut p = Parser {
        toks: lex(s)?,
        at: 0,
    };
    let e = p.or()?;
    if p.at < p.toks.len() {
        return Err("trailing input".into());
    }
    Ok(e)
}

impl Expr {
    /// Every property the predicate names.
    pub(super) fn properties(&self, out: &mut Vec<String>) {
        match self {
            Self::Cmp(a, _, b) => {
                for o in [a, b] {
                    if let Operand::Prop(p) | Operand::Left(p, _) = o {
                        out.push(p.clone());
                    }
                }
            }
            Self::And(a, b) | Self::Or(a, b) => {
                a.properties(out);
                b.properties(out);
            }
            Self::Not(a) => a.properties(out),
        }
    }

    /// Whether `row` matches; `stamp` is the update-stamp property (compared as instants).
    pub(super) fn matches(&self, row: &Row, zone: &TimeZone) -> bool {
        match self {
            Self::Cmp(a, op, b) => {
                let (Some(x), Some(y)) = (value(a, row), value(b, row)) else {
                    return false;
                };
                let Some(ord) = compare(&x, &y, zone) else {
                    return false;
                };
                match op {
                    Op::Eq => ord == Ordering::Equal,
                    Op::Ne => ord != Ordering::Equal,
                    Op::Lt => ord == Ordering::Less,
                    Op::Le => ord != Ordering::Greater,
                    Op::Gt => ord == Ordering::Greater,
                    Op::Ge => ord != Ordering::Less,
                }
            }
            Self::And(a, b) => a.matches(row, zone) && b.matches(row, zone),
            Self::Or(a, b) => a.matches(row, zone) || b.matches(row, zone),
            Self::Not(a) => !a.matches(row, zone),
        }
    }
}

#[derive(Debug)]
enum Val {
    Text(String),
    Date(String),
    Number(f64),
}

fn value(o: &Operand, row: &Row) -> Option<Val> {
    Some(match o {
        // The stamp the row has now (an update moves it), compared as an instant.
        Operand::Prop(p) if p == super::STAMP => Val::Date(row.stamp.to_string()),
        Operand::Prop(p) => Val::Text(scalar(row.props.get(p)?)?),
        Operand::Left(p, n) => Val::Text(scalar(row.props.get(p)?)?.chars().take(*n).collect()),
        Operand::Text(t) => Val::Text(t.clone()),
        Operand::Date(d) => Val::Date(d.clone()),
        Operand::Number(n) => Val::Number(*n),
    })
}

fn compare(x: &Val, y: &Val, zone: &TimeZone) -> Option<Ordering> {
    match (x, y) {
        (Val::Date(a), Val::Text(b) | Val::Date(b)) | (Val::Text(a), Val::Date(b)) => {
            let (a, b): (Timestamp, Timestamp) = (parse_instant(a, zone)?, parse_instant(b, zone)?);
            Some(a.cmp(&b))
        }
        (Val::Number(a), Val::Text(b)) => a.partial_cmp(&b.parse::<f64>().ok()?),
        (Val::Text(a), Val::Number(b)) => a.parse::<f64>().ok()?.partial_cmp(b),
        (Val::Number(a), Val::Number(b)) => a.partial_cmp(b),
        (Val::Text(a), Val::Text(b)) => Some(a.cmp(b)),
        (Val::Date(_), Val::Number(_)) | (Val::Number(_), Val::Date(_)) => None,
    }
}

/// Parses `orderBy`: `(property, descending)` pairs.
pub(super) fn parse_order(s: &str) -> Result<Vec<(String, bool)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let mut words = part.split_whitespace();
            let prop = words.next().ok_or("empty orderBy")?.to_owned();
            let desc = match words.next().map(str::to_ascii_lowercase).as_deref() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(other) => return Err(format!("bad direction `{other}`")),
            };
            Ok((prop, desc))
        })
        .collect()
}

/// Orders two rows by `order`, properties named `stamp` compared as instants, numbers as
/// numbers, the rest as text.
pub(super) fn order_rows(
    a: &Row,
    b: &Row,
    order: &[(String, bool)],
    stamp: &str,
    zone: &TimeZone,
) -> Ordering {
    for (p, desc) in order {
        let ord = if p == stamp {
            a.stamp.cmp(&b.stamp)
        } else {
            let x = a.props.get(p).and_then(|r| scalar(r));
            let y = b.props.get(p).and_then(|r| scalar(r));
            match (
                x.as_deref().map(str::parse::<f64>),
                y.as_deref().map(str::parse::<f64>),
            ) {
                (Some(Ok(m)), Some(Ok(n))) => m.partial_cmp(&n).unwrap_or(Ordering::Equal),
                _ => x.cmp(&y),
            }
        };
        let ord = if *desc { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    let _ = zone;
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_sdata_subset() {
        let e = parse_where("(UPDDATTIM ge @2026-01-01T00:00:00Z@) and (UPDDATTIM le @2026-02-01@) or BPSNAM eq 'O''Brien'")
            .expect("parse");
        let mut props = Vec::new();
        e.properties(&mut props);
        assert_eq!(props, ["UPDDATTIM", "UPDDATTIM", "BPSNAM"]);
        assert!(parse_where("A eq").is_err());
        assert!(parse_where("A eq 'x").is_err());
        assert!(parse_where("A like 'x'").is_err());
        assert!(parse_where("left(BPCNAM,4) eq 'Test'").is_ok());
        assert_eq!(
            parse_order("UPDDATTIM desc, NUM").expect("order"),
            [("UPDDATTIM".to_owned(), true), ("NUM".to_owned(), false)]
        );
    }
}
