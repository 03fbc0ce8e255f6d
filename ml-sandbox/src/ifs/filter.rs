//! The `$filter` subset IFS documents: comparisons (`eq ne gt ge lt le`) of a property
//! with a literal, `and`, `or`, `not`, parentheses, and `startswith`, `endswith`,
//! `contains`. Literals are typed as OData v4 writes them: `'text'` (quote doubled),
//! numbers, Edm.Date `2026-03-01` and Edm.DateTimeOffset `2026-03-01T09:00:00Z` /
//! `...+01:00` unquoted, `null`, `true`/`false`, enum literals `Ns.Type'Member'`. A
//! literal of the wrong type (a quoted timestamp against a DateTimeOffset) is an error,
//! as on a real server. Unsupported: `has`, lambdas, arithmetic (`ODP_NOT_IMPLEMENTED`).

use std::cmp::Ordering;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::data::{EntitySetDef, PropType, Row, Val, cmp_decimal};

/// A parse or type error: (code, message).
pub(super) type FilterError = (&'static str, String);

fn bad(msg: impl Into<String>) -> FilterError {
    ("ODP_BAD_REQUEST", msg.into())
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    /// A bare literal: number, date, date-time.
    Bare(String),
    Enum(String),
    LParen,
    RParen,
    Comma,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, FilterError> {
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            out.push(Tok::LParen);
            i += 1;
        } else if c == ')' {
            out.push(Tok::RParen);
            i += 1;
        } else if c == ',' {
            out.push(Tok::Comma);
            i += 1;
        } else if c == '\'' {
            let (text, next) = quoted(&b, i)?;
            out.push(Tok::Str(text));
            i = next;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_' || b[i] == '.') {
                i += 1;
            }
            let word: String = b[start..i].iter().collect();
            if i < b.len() && b[i] == '\'' && word.contains('.') {
                let (member, next) = quoted(&b, i)?;
                out.push(Tok::Enum(member));
                i = next;
            } else {
                out.push(Tok::Ident(word));
            }
        } else if c.is_ascii_digit() || c == '-' {
            let start = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || ":.+-".contains(b[i])) {
                i += 1;
            }
            out.push(Tok::Bare(b[start..i].iter().collect()));
        } else {
            return Err(bad(format!("unexpected `{c}` in $filter")));
        }
    }
    Ok(out)
}

fn quoted(b: &[char], start: usize) -> Result<(String, usize), FilterError> {
    let mut i = start + 1;
    let mut text = String::new();
    loop {
        match b.get(i) {
            None => return Err(bad("unterminated string literal in $filter")),
            Some('\'') if b.get(i + 1) == Some(&'\'') => {
                text.push('\'');
                i += 2;
            }
            Some('\'') => return Ok((text, i + 1)),
            Some(c) => {
                text.push(*c);
                i += 1;
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A parsed filter.
#[derive(Clone, Debug)]
pub(super) enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(String, Op, Val),
    Func(String, String, String),
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    def: &'a EntitySetDef,
    /// Without the time-zone header, literals are read in the site zone even with `Z`.
    literal_tz: Option<TimeZone>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w == k)
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut e = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut e = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        if self.keyword("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.or()?;
            if self.next() != Some(Tok::RParen) {
                return Err(bad("missing `)` in $filter"));
            }
            return Ok(e);
        }
        let Some(Tok::Ident(name)) = self.next() else {
            return Err(bad("expected a property or function in $filter"));
        };
        if self.peek() == Some(&Tok::LParen) {
            return self.func(name);
        }
        let ty = self.prop_type(&name)?;
        let op = match self.next() {
            Some(Tok::Ident(o)) => match o.as_str() {
                "eq" => Op::Eq,
                "ne" => Op::Ne,
                "gt" => Op::Gt,
                "ge" => Op::Ge,
                "lt" => Op::Lt,
                "le" => Op::Le,
                "has" | "add" | "sub" | "mul" | "div" | "mod" => {
                    return Err((
                        "ODP_NOT_IMPLEMENTED",
                        format!("operator `{o}` is not supported"),
                    ));
                }
                other => return Err(bad(format!("unknown operator `{other}`"))),
            },
            _ => return Err(bad(format!("expected an operator after `{name}`"))),
        };
        let lit = self.next().ok_or_else(|| bad("expected a literal"))?;
        let val = self.literal(&name, ty, lit)?;
        Ok(Expr::Cmp(name, op, val))
    }

    fn prop_type(&self, name: &str) -> Result<PropType, FilterError> {
        self.def.prop(name).ok_or_else(|| {
            bad(format!(
                "property `{name}` does not exist in type {}",
                self.def.entity
            ))
        })
    }

    fn func(&mut self, name: String) -> Result<Expr, FilterError> {
        if !matches!(name.as_str(), "startswith" | "endswith" | "contains") {
            return Err((
                "ODP_NOT_IMPLEMENTED",
                format!("function `{name}` is not supported"),
            ));
        }
        self.pos += 1;
        let Some(Tok::Ident(prop)) = self.next() else {
            return Err(bad(format!("{name} needs a property")));
        };
        if self.prop_type(&prop)? != PropType::String {
            return Err(bad(format!("{name} needs a string property")));
        }
        let (Some(Tok::Comma), Some(Tok::Str(arg)), Some(Tok::RParen)) =
            (self.next(), self.next(), self.next())
        else {
            return Err(bad(format!("{name}(Property,'text') expected")));
        };
        Ok(Expr::Func(name, prop, arg))
    }

    fn literal(&self, prop: &str, ty: PropType, tok: Tok) -> Result<Val, FilterError> {
        let mismatch = |t: &str| {
            bad(format!(
                "the literal {t} is not compatible with property `{prop}` ({ty:?})"
            ))
        };
        match tok {
            Tok::Ident(w) if w == "null" => Ok(Val::Null),
            Tok::Str(s) if ty == PropType::String => Ok(Val::Str(s)),
            Tok::Enum(m) if ty == PropType::String => Ok(Val::Str(m)),
            Tok::Str(s) => Err(mismatch(&format!("'{s}'"))),
            Tok::Bare(b) => match ty {
                PropType::Int => b.parse().map(Val::Int).map_err(|_| mismatch(&b)),
                PropType::Decimal => cmp_decimal(&b, "0")
                    .map(|_| Val::Dec(b.clone()))
                    .ok_or_else(|| mismatch(&b)),
                PropType::Date => b.parse().map(Val::Date).map_err(|_| mismatch(&b)),
                PropType::DateTimeOffset => self.dto(&b).ok_or_else(|| mismatch(&b)),
                PropType::String => Err(mismatch(&b)),
            },
            other => Err(bad(format!("unexpected {other:?} after `{prop}`"))),
        }
    }

    fn dto(&self, b: &str) -> Option<Val> {
        let t: Timestamp = b.parse().ok()?;
        Some(Val::Dto(match &self.literal_tz {
            None => t,
            Some(tz) => {
                // Not time-zone aware: the wall time as written, read in the site zone.
                let civil: jiff::civil::DateTime = b
                    .get(..19)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| t.to_zoned(TimeZone::UTC).datetime());
                civil.to_zoned(tz.clone()).ok()?.timestamp()
            }
        }))
    }
}

/// Parses `$filter` against `def`. `site_tz` is the zone literals are read in when the
/// request is not time-zone aware.
pub(super) fn parse(
    s: &str,
    def: &EntitySetDef,
    site_tz: Option<TimeZone>,
) -> Result<Expr, FilterError> {
    let mut p = Parser {
        toks: tokenize(s)?,
        pos: 0,
        def,
        literal_tz: site_tz,
    };
    let e = p.or()?;
    if p.pos != p.toks.len() {
        return Err(bad(format!(
            "unexpected {:?} in $filter",
            p.toks.get(p.pos)
        )));
    }
    Ok(e)
}

/// Whether `row` matches.
pub(super) fn eval(e: &Expr, row: &Row) -> bool {
    match e {
        Expr::And(a, b) => eval(a, row) && eval(b, row),
        Expr::Or(a, b) => eval(a, row) || eval(b, row),
        Expr::Not(a) => !eval(a, row),
        Expr::Func(f, prop, arg) => match row.get(prop) {
            Val::Str(s) => match f.as_str() {
                "startswith" => s.starts_with(arg.as_str()),
                "endswith" => s.ends_with(arg.as_str()),
                _ => s.contains(arg.as_str()),
            },
            _ => false,
        },
        Expr::Cmp(prop, op, lit) => {
            let v = row.get(prop);
            if matches!(lit, Val::Null) || matches!(v, Val::Null) {
                let both = matches!(lit, Val::Null) && matches!(v, Val::Null);
                return match op {
                    Op::Eq => both,
                    Op::Ne => !both,
                    _ => false,
                };
            }
            let Some(ord) = v.compare(lit) else {
                return false;
            };
            match op {
                Op::Eq => ord == Ordering::Equal,
                Op::Ne => ord != Ordering::Equal,
                Op::Gt => ord == Ordering::Greater,
                Op::Ge => ord != Ordering::Less,
                Op::Lt => ord == Ordering::Less,
                Op::Le => ord != Ordering::Greater,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::data::builtin_sets;
    use super::*;

    fn inv() -> EntitySetDef {
        builtin_sets()
            .into_iter()
            .find(|d| d.set == "ManSuppInvoiceSet")
            .expect("set")
    }

    #[test]
    fn parses_the_keyset_filter_and_refuses_traps() {
        let def = inv();
        let ok = "Company eq 'O''Hara' and (ModifiedDateTime gt 2026-03-01T09:00:00Z or (ModifiedDateTime eq 2026-03-01T09:00:00.5+01:00 and (InvoiceId gt 12))) and GrossAmount ge -1.5 and Objstate eq IfsApp.X.State'Posted' and startswith(InvoiceNo,'IN')";
        parse(ok, &def, None).expect("valid");
        for (f, why) in [
            (
                "ModifiedDateTime gt '2026-03-01T09:00:00Z'",
                "not compatible",
            ),
            (
                "ModifiedDateTime gt 2026-03-01T09:00:00 01:00",
                "not compatible",
            ),
            ("Nope eq 1", "does not exist"),
            ("InvoiceId gt 'x'", "not compatible"),
            ("Company has 'x'", "not supported"),
            ("tolower(Company) eq 'x'", "not supported"),
            ("(Company eq 'x'", "missing"),
        ] {
            let e = parse(f, &def, None).expect_err(f);
            assert!(e.1.contains(why), "{f}: {}", e.1);
        }
    }
}
