//! The OData v2 `$filter` subset the emulator evaluates: `eq ne gt ge lt le`, `and`,
//! `or`, `not`, parentheses; literals `'text'` (`''` escapes a quote), `datetime'...'`,
//! `datetimeoffset'...'`, integers, `12.5M`, `5L`, `true`/`false`, `null`. Anything else
//! (functions such as `substringof`, arithmetic) is refused with a message, as a service
//! whose DPC does not implement it answers 400.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

/// A literal.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Lit {
    Text(String),
    Instant(Timestamp),
    /// Compared as `f64`: the emulator filters amounts only for convenience.
    Number(f64),
    Bool(bool),
    Null,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    Cmp(String, Op, Lit),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Lit(Lit),
    Open,
    Close,
}

/// Parses `YYYY-MM-DDTHH:MM[:SS[.fffffff]]` as UTC wall time (Edm.DateTime), or with `Z`
/// or an offset (Edm.DateTimeOffset).
fn instant(text: &str, offset_kind: bool) -> Result<Timestamp, String> {
    if offset_kind {
        if let Ok(t) = text.parse::<Timestamp>() {
            return Ok(t);
        }
        return Err(format!("`{text}` is not a datetimeoffset"));
    }
    let dt: DateTime = text
        .parse()
        .map_err(|_| format!("`{text}` is not a datetime (YYYY-MM-DDThh:mm[:ss[.fff]])"))?;
    if !text.contains('T') {
        return Err(format!(
            "`{text}` is not a datetime (YYYY-MM-DDThh:mm[:ss[.fff]])"
        ));
    }
    dt.to_zoned(TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(|e| e.to_string())
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let quoted = |i: &mut usize| -> Result<String, String> {
        // At a `'`.
        *i += 1;
        let mut text = String::new();
        loop {
            match chars.get(*i) {
                None => return Err("unterminated string literal".into()),
                Some('\'') if chars.get(*i + 1) == Some(&'\'') => {
                    text.push('\'');
                    *i += 2;
                }
                Some('\'') => {
                    *i += 1;
                    return Ok(text);
                }
                Some(c) => {
                    text.push(*c);
                    *i += 1;
                }
            }
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            out.push(Tok::Open);
            i += 1;
        } else if c == ')' {
            out.push(Tok::Close);
            i += 1;
        } else if c == '\'' {
            out.push(Tok::Lit(Lit::Text(quoted(&mut i)?)));
        } else if c.is_ascii_digit() || c == '-' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            if i < chars.len() && matches!(chars[i], 'M' | 'm' | 'L' | 'l' | 'd' | 'D') {
                i += 1;
            }
            let n = text
                .parse::<f64>()
                .map_err(|_| format!("`{text}` is not a number"))?;
            out.push(Tok::Lit(Lit::Number(n)));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '/')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if chars.get(i) == Some(&'\'') {
                let text = quoted(&mut i)?;
                let lit = match word.as_str() {
                    "datetime" => Lit::Instant(instant(&text, false)?),
                    "datetimeoffset" => Lit::Instant(instant(&text, true)?),
                    other => return Err(format!("unsupported literal type `{other}`")),
                };
                out.push(Tok::Lit(lit));
            } else {
                out.push(match word.as_str() {
                    "true" => Tok::Lit(Lit::Bool(true)),
                    "false" => Tok::Lit(Lit::Bool(false)),
                    "null" => Tok::Lit(Lit::Null),
                    _ => Tok::Ident(word),
                });
            }
        } else {
            return Err(format!("unexpected character `{c}`"));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.at), Some(Tok::Ident(x)) if x == w)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.at += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while self.peek_word("and") {
            self.at += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        self.depth += 1;
        if self.depth > 64 {
            return Err("the filter nests too deeply".into());
        }
        let out = if self.peek_word("not") {
            self.at += 1;
            Ok(Expr::Not(Box::new(self.unary()?)))
        } else if self.toks.get(self.at) == Some(&Tok::Open) {
            self.at += 1;
            let e = self.or()?;
            if self.toks.get(self.at) != Some(&Tok::Close) {
                return Err("missing `)`".into());
            }
            self.at += 1;
            Ok(e)
        } else {
            self.cmp()
        };
        self.depth -= 1;
        out
    }

    fn cmp(&mut self) -> Result<Expr, String> {
        let Some(Tok::Ident(prop)) = self.toks.get(self.at).cloned() else {
            return Err("expected a property name".into());
        };
        if self.toks.get(self.at + 1) == Some(&Tok::Open) {
            return Err(format!("function `{prop}` is not supported"));
        }
        let op = match self.toks.get(self.at + 1) {
            Some(Tok::Ident(o)) => match o.as_str() {
                "eq" => Op::Eq,
                "ne" => Op::Ne,
                "gt" => Op::Gt,
                "ge" => Op::Ge,
                "lt" => Op::Lt,
                "le" => Op::Le,
                other => return Err(format!("unsupported operator `{other}`")),
            },
            _ => return Err(format!("expected an operator after `{prop}`")),
        };
        let Some(Tok::Lit(lit)) = self.toks.get(self.at + 2).cloned() else {
            return Err(format!("expected a literal after `{prop}`"));
        };
        self.at += 3;
        Ok(Expr::Cmp(prop, op, lit))
    }
}

/// Parses a `$filter`.
pub(crate) fn parse(s: &str) -> Result<Expr, String> {
    let toks = lex(s)?;
    if toks.is_empty() {
        return Err("empty filter".into());
    }
    let mut p = Parser {
        toks,
        at: 0,
        depth: 0,
    };
    let e = p.or()?;
    if p.at != p.toks.len() {
        return Err("unexpected text after the expression".into());
    }
    Ok(e)
}

/// A property value of a row as the filter sees it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    Text(String),
    Instant(Timestamp),
    Null,
}

fn order<T: PartialOrd>(a: &T, b: &T, op: Op) -> bool {
    match op {
        Op::Eq => a == b,
        Op::Ne => a != b,
        Op::Gt => a > b,
        Op::Ge => a >= b,
        Op::Lt => a < b,
        Op::Le => a <= b,
    }
}

impl Expr {
    /// Checks literal types against the properties (`stamp` is the Edm.DateTime one);
    /// `known` tells whether a property exists.
    pub(crate) fn check(&self, stamp: &str, known: &dyn Fn(&str) -> bool) -> Result<(), String> {
        match self {
            Self::Cmp(p, _, lit) => {
                if !known(p) {
                    return Err(format!("Property '{p}' not found"));
                }
                match (p == stamp, lit) {
                    (true, Lit::Instant(_) | Lit::Null)
                    | (false, Lit::Text(_) | Lit::Number(_) | Lit::Bool(_) | Lit::Null) => Ok(()),
                    (true, _) => Err(format!(
                        "'{p}' is an Edm.DateTime: compare it with datetime'...'"
                    )),
                    (false, _) => Err(format!("'{p}' is not an Edm.DateTime")),
                }
            }
            Self::And(a, b) | Self::Or(a, b) => {
                a.check(stamp, known)?;
                b.check(stamp, known)
            }
            Self::Not(a) => a.check(stamp, known),
        }
    }

    /// Evaluates against a row.
    pub(crate) fn eval(&self, get: &dyn Fn(&str) -> Val) -> bool {
        match self {
            Self::And(a, b) => a.eval(get) && b.eval(get),
            Self::Or(a, b) => a.eval(get) || b.eval(get),
            Self::Not(a) => !a.eval(get),
            Self::Cmp(p, op, lit) => match (get(p), lit) {
                (Val::Instant(a), Lit::Instant(b)) => order(&a, b, *op),
                (Val::Text(a), Lit::Text(b)) => order(&a.as_str(), &b.as_str(), *op),
                (Val::Text(a), Lit::Number(b)) => a.parse::<f64>().is_ok_and(|a| order(&a, b, *op)),
                (Val::Text(a), Lit::Bool(b)) => order(&a.as_str(), &b.to_string().as_str(), *op),
                (Val::Null, Lit::Null) => matches!(op, Op::Eq | Op::Le | Op::Ge),
                (_, Lit::Null) => matches!(op, Op::Ne),
                _ => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_subset() {
        let e = parse("(ChangedAt gt datetime'2024-01-01T00:00:00' or (ChangedAt eq datetime'2024-01-01T00:00:00.120' and PurchaseOrder gt 'O''Brien'))").expect("parse");
        let t0: Timestamp = "2024-01-01T00:00:00Z".parse().expect("t");
        let get = |p: &str| match p {
            "ChangedAt" => Val::Instant(t0 + jiff::SignedDuration::from_millis(120)),
            _ => Val::Text("Z".into()),
        };
        assert!(e.eval(&get));
        assert!(
            parse("ChangedAt ge datetimeoffset'2024-01-01T00:00:00Z' and NetAmount gt 12.5M")
                .is_ok()
        );
        for bad in [
            "",
            "substringof('a', Name)",
            "A eq",
            "A like 'x'",
            "(A eq 'x'",
            "A eq 'x' B",
            "ChangedAt ge datetime'2024-13-01T00:00:00'",
            "A eq 'unterminated",
            "A eq guid'00000000'",
            "A eq 1 ; B eq 2",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let e = parse("ChangedAt ge '2024'").expect("parse");
        assert!(e.check("ChangedAt", &|_| true).is_err());
        let e = parse("Nope eq 'x'").expect("parse");
        assert!(e.check("ChangedAt", &|p| p != "Nope").is_err());
    }
}
