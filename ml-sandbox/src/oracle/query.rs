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
    Ne,
}

impl Op {
    /// Whether `ord` (actual compared with wanted) satisfies the operator.
    pub(crate) fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            Op::Ge => ord != Less,
            Op::Gt => ord == Greater,
            Op::Le => ord != Greater,
            Op::Lt => ord == Less,
            Op::Eq => ord == Equal,
            Op::Ne => ord != Equal,
        }
    }
}

/// One `Attr OP value` clause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Clause {
    pub(crate) attr: String,
    pub(crate) op: Op,
    pub(crate) value: String,
    /// How the value was written: `Some('\'')`, `Some('"')`, or `None` for bare.
    pub(crate) quote: Option<char>,
}

/// A parsed `q` filter: comparisons combined with `and`, `or` and parentheses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expr {
    Cmp(Clause),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    /// Evaluates the filter, asking `cmp` for each comparison it needs.
    pub(crate) fn eval<F>(&self, cmp: &mut F) -> Result<bool, String>
    where
        F: FnMut(&Clause) -> Result<bool, String>,
    {
        match self {
            Expr::Cmp(c) => cmp(c),
            Expr::And(v) => {
                for e in v {
                    if !e.eval(cmp)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Expr::Or(v) => {
                for e in v {
                    if e.eval(cmp)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    }

    /// Whether the filter uses `or` anywhere.
    pub(crate) fn has_or(&self) -> bool {
        match self {
            Expr::Cmp(_) => false,
            Expr::Or(_) => true,
            Expr::And(v) => v.iter().any(Expr::has_or),
        }
    }

    /// Every comparison in the filter.
    pub(crate) fn clauses(&self) -> Vec<&Clause> {
        match self {
            Expr::Cmp(c) => vec![c],
            Expr::And(v) | Expr::Or(v) => v.iter().flat_map(Expr::clauses).collect(),
        }
    }
}

fn unquote(v: &str) -> (&str, Option<char>) {
    let v = v.trim();
    for q in ['\'', '"'] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return (&v[1..v.len() - 1], Some(q));
        }
    }
    (v, None)
}

fn is_attr(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Word(String),
    /// A quoted literal and its quote character.
    Literal(String, char),
    Op(Op),
}

fn tokenize(q: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = q.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Token::Open);
            }
            ')' => {
                chars.next();
                out.push(Token::Close);
            }
            // `;` joins clauses like `and` (query-by-example habit, accepted by v2 too).
            ';' => {
                chars.next();
                out.push(Token::And);
            }
            '\'' | '"' => {
                chars.next();
                let mut lit = String::new();
                let mut closed = false;
                while let Some((_, ch)) = chars.next() {
                    if ch == c {
                        // A doubled quote is an escaped quote.
                        if chars.peek().is_some_and(|&(_, n)| n == c) {
                            chars.next();
                            lit.push(c);
                            continue;
                        }
                        closed = true;
                        break;
                    }
                    lit.push(ch);
                }
                if !closed {
                    return Err(format!("unterminated literal at {i}"));
                }
                out.push(Token::Literal(lit, c));
            }
            '<' | '>' | '=' | '!' => {
                chars.next();
                let next = chars.peek().map(|&(_, n)| n);
                let (op, two) = match (c, next) {
                    ('>', Some('=')) => (Op::Ge, true),
                    ('<', Some('=')) => (Op::Le, true),
                    ('<', Some('>')) | ('!', Some('=')) => (Op::Ne, true),
                    ('>', _) => (Op::Gt, false),
                    ('<', _) => (Op::Lt, false),
                    ('=', _) => (Op::Eq, false),
                    _ => return Err(format!("unsupported operator at {i}")),
                };
                if two {
                    chars.next();
                }
                out.push(Token::Op(op));
            }
            _ => {
                let mut w = String::new();
                while let Some(&(_, ch)) = chars.peek() {
                    if ch.is_whitespace() || "()<>=!;'\"".contains(ch) {
                        break;
                    }
                    w.push(ch);
                    chars.next();
                }
                out.push(match w.to_ascii_lowercase().as_str() {
                    "and" => Token::And,
                    "or" => Token::Or,
                    _ => Token::Word(w),
                });
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut v = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::Or(v)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut v = vec![self.atom()?];
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            v.push(self.atom()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::And(v)
        })
    }

    fn atom(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Token::Open) => {
                let e = self.or()?;
                match self.next() {
                    Some(Token::Close) => Ok(e),
                    _ => Err("missing `)`".into()),
                }
            }
            Some(Token::Word(attr)) if is_attr(&attr) => {
                let op = match self.next() {
                    Some(Token::Op(op)) => op,
                    other => {
                        return Err(format!("unsupported expression after `{attr}`: {other:?}"));
                    }
                };
                let (value, quote) = match self.next() {
                    Some(Token::Literal(v, q)) => (v, Some(q)),
                    Some(Token::Word(v)) => (v, None),
                    other => return Err(format!("missing value after `{attr}`: {other:?}")),
                };
                Ok(Expr::Cmp(Clause {
                    attr,
                    op,
                    value,
                    quote,
                }))
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

/// Parses `q` under REST framework version 2: comparisons (`=`, `!=`, `<>`, `<`, `<=`,
/// `>`, `>=`) of an attribute with a quoted or bare literal, joined by `and` / `or` (`and`
/// binds tighter) and grouped with parentheses.
pub(crate) fn parse_v2(q: &str) -> Result<Expr, String> {
    let mut p = Parser {
        tokens: tokenize(q)?,
        at: 0,
    };
    let e = p.or()?;
    if p.at != p.tokens.len() {
        return Err(format!("unexpected {:?}", p.tokens[p.at]));
    }
    Ok(e)
}

/// Parses `q` under REST framework version 1 (query by example): `Attr=value;Attr2=value`.
pub(crate) fn parse_v1(q: &str) -> Result<Expr, String> {
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
            let (value, quote) = unquote(value);
            Ok(Expr::Cmp(Clause {
                attr: attr.to_owned(),
                op: Op::Eq,
                value: value.to_owned(),
                quote,
            }))
        })
        .collect::<Result<Vec<_>, String>>()
        .map(Expr::And)
}

/// Compares two timestamps under `op`.
pub(crate) fn cmp_ts(actual: Timestamp, op: Op, wanted: Timestamp) -> bool {
    op.holds(actual.cmp(&wanted))
}

/// Compares an attribute's JSON value with a literal under `op`: numerically when both are
/// integers, as text otherwise.
pub(crate) fn cmp_value(actual: &serde_json::Value, op: Op, wanted: &str) -> bool {
    let text = match actual {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        _ => return false,
    };
    let ord = match (text.parse::<i128>(), wanted.parse::<i128>()) {
        (Ok(a), Ok(b)) if !matches!(actual, serde_json::Value::String(_)) => a.cmp(&b),
        _ => text.as_str().cmp(wanted),
    };
    op.holds(ord)
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
        let e = parse_v2("LastUpdateDate >= '2026-01-01T00:00:00Z' and InvoiceId=5").expect("q");
        let c = e.clauses();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].op, Op::Ge);
        assert_eq!(c[0].value, "2026-01-01T00:00:00Z");
        assert_eq!(c[1].attr, "InvoiceId");
        assert!(parse_v2("LastUpdateDate like 'x'").is_err());
        assert!(parse_v2("(A = 1").is_err());
        assert!(parse_v2("A = 'x").is_err());
        assert!(parse_v2("A = 1 B = 2").is_err());
        assert!(parse_v1("LastUpdateDate>='x'").is_err());
        assert_eq!(parse_v1("A=1;B=x").expect("qbe").clauses().len(), 2);
        assert_eq!(
            parse_order("LastUpdateDate:asc,InvoiceId").expect("o"),
            vec![("LastUpdateDate".into(), true), ("InvoiceId".into(), true)]
        );
        assert!(parse_ts("2026-01-01").is_some());
        assert!(parse_ts("2026-01-01T00:00:00.000+02:00").is_some());
    }

    #[test]
    fn keyset_disjunction_and_precedence() {
        let e = parse_v2(
            "LastUpdateDate > '2026-01-01T00:00:00Z' or (LastUpdateDate = '2026-01-01T00:00:00Z' and InvoiceId > 41)",
        )
        .expect("q");
        let Expr::Or(v) = &e else { panic!("{e:?}") };
        assert_eq!(v.len(), 2);
        assert!(matches!(&v[1], Expr::And(a) if a.len() == 2));
        // `and` binds tighter than `or`.
        assert!(matches!(
            parse_v2("A = 1 or B = 2 and C = 3").expect("q"),
            Expr::Or(v) if matches!(&v[1], Expr::And(_))
        ));
        let row = |id: i64, secs: i64| {
            move |c: &Clause| -> Result<bool, String> {
                Ok(match c.attr.as_str() {
                    "LastUpdateDate" => cmp_ts(
                        Timestamp::from_second(1_767_225_600 + secs).expect("t"),
                        c.op,
                        parse_ts(&c.value).ok_or("ts")?,
                    ),
                    _ => cmp_value(&serde_json::json!(id), c.op, &c.value),
                })
            }
        };
        assert!(!e.eval(&mut row(41, 0)).expect("eval"));
        assert!(e.eval(&mut row(42, 0)).expect("eval"));
        assert!(e.eval(&mut row(1, 1)).expect("eval"));
        assert!(!e.eval(&mut row(100, -1)).expect("eval"));
        // Numbers compare as numbers, strings as text; doubled quotes escape.
        assert!(cmp_value(&serde_json::json!(100), Op::Gt, "41"));
        assert!(!cmp_value(&serde_json::json!("100"), Op::Gt, "41"));
        let e = parse_v2("Supplier = 'O''Brien Ltd' and X != 2").expect("q");
        assert_eq!(e.clauses()[0].value, "O'Brien Ltd");
        assert_eq!(e.clauses()[1].op, Op::Ne);
    }
}
