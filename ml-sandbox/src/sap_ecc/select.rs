//! The WHERE clause of `RFC_READ_TABLE`, as strict as the server: each `OPTIONS` line is
//! tokenised on its own (a literal cannot continue on the next line), operators and
//! parentheses must stand alone between blanks (SAP_BASIS 7.5x), field names must exist,
//! literals are in internal format and no longer than their field.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::ddic::FieldDef;

/// Why a clause was refused: the ABAP exception and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `OPTION_NOT_VALID`.
    Option(String),
    /// A runtime error (`SYSTEM_FAILURE`), e.g. a literal longer than its field.
    Dump(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Lit(String),
    Open,
    Close,
    Comma,
}

fn tokenize_line(line: &str) -> Result<Vec<Tok>, Refusal> {
    let bad = |why: &str| Refusal::Option(format!("{why} in OPTIONS line `{line}`"));
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == ' ' {
            i += 1;
            continue;
        }
        let start = i;
        if chars[i] == '\'' {
            let mut lit = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(bad("literal not closed on its line")),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        lit.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        lit.push(*c);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Lit(lit));
            // A comma may follow a literal directly; anything else needs a blank.
            if chars.get(i) == Some(&',') {
                out.push(Tok::Comma);
                i += 1;
            }
            if chars.get(i).is_some_and(|c| *c != ' ') {
                return Err(bad("no blank after a literal"));
            }
            continue;
        }
        while i < chars.len() && chars[i] != ' ' {
            if chars[i] == '\'' {
                return Err(bad("a literal must follow a blank"));
            }
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        out.push(match word.as_str() {
            "(" => Tok::Open,
            ")" => Tok::Close,
            "," => Tok::Comma,
            w if w.contains('(') || w.contains(')') => {
                return Err(bad("parentheses need blanks around them"));
            }
            w => Tok::Word(w.to_ascii_uppercase()),
        });
    }
    Ok(out)
}

/// A parsed condition.
#[derive(Clone, Debug)]
pub(crate) enum Cond {
    True,
    Cmp(usize, Ordering, bool, String),
    In(usize, Vec<String>),
    Like(usize, String),
    Between(usize, String, String),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
}

struct Parser<'a> {
    toks: Vec<Tok>,
    at: usize,
    defs: &'a [FieldDef],
}

fn op_of(w: &str) -> Option<(Ordering, bool)> {
    // (ordering compared against, negate)
    Some(match w {
        "=" | "EQ" => (Ordering::Equal, false),
        "<>" | "NE" => (Ordering::Equal, true),
        "<" | "LT" => (Ordering::Less, false),
        ">=" | "GE" => (Ordering::Less, true),
        ">" | "GT" => (Ordering::Greater, false),
        "<=" | "LE" => (Ordering::Greater, true),
        _ => return None,
    })
}

impl Parser<'_> {
    fn bad(&self, why: &str) -> Refusal {
        Refusal::Option(format!("{why} at token {}", self.at + 1))
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.at), Some(Tok::Word(x)) if x == w)
    }

    fn expr(&mut self) -> Result<Cond, Refusal> {
        let mut left = self.term()?;
        while self.peek_word("OR") {
            self.at += 1;
            let right = self.term()?;
            left = Cond::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Cond, Refusal> {
        let mut left = self.factor()?;
        while self.peek_word("AND") {
            self.at += 1;
            let right = self.factor()?;
            left = Cond::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn literal(&mut self, field: usize) -> Result<String, Refusal> {
        match self.next() {
            Some(Tok::Lit(v)) => {
                let def = &self.defs[field];
                if v.chars().count() > def.len && !matches!(def.typ, 'P') {
                    return Err(Refusal::Dump(format!(
                        "CONVT_DATA_LOSS: Data was lost while copying a value ({} is {} characters wide)",
                        def.name, def.len
                    )));
                }
                Ok(v)
            }
            _ => Err(self.bad("literal expected")),
        }
    }

    fn factor(&mut self) -> Result<Cond, Refusal> {
        match self.next() {
            Some(Tok::Open) => {
                let e = self.expr()?;
                match self.next() {
                    Some(Tok::Close) => Ok(e),
                    _ => Err(self.bad("`)` expected")),
                }
            }
            Some(Tok::Word(w)) if w == "NOT" => Ok(Cond::Not(Box::new(self.factor()?))),
            Some(Tok::Word(name)) => {
                let field = self
                    .defs
                    .iter()
                    .position(|d| d.name == name)
                    .ok_or_else(|| self.bad(&format!("unknown field {name}")))?;
                match self.next() {
                    Some(Tok::Word(op)) if op_of(&op).is_some() => {
                        let (ord, neg) = op_of(&op).unwrap_or((Ordering::Equal, false));
                        let v = self.literal(field)?;
                        Ok(Cond::Cmp(field, ord, neg, v))
                    }
                    Some(Tok::Word(op)) if op == "LIKE" => {
                        Ok(Cond::Like(field, self.literal(field)?))
                    }
                    Some(Tok::Word(op)) if op == "BETWEEN" => {
                        let lo = self.literal(field)?;
                        if !self.peek_word("AND") {
                            return Err(self.bad("AND expected in BETWEEN"));
                        }
                        self.at += 1;
                        let hi = self.literal(field)?;
                        Ok(Cond::Between(field, lo, hi))
                    }
                    Some(Tok::Word(op)) if op == "IN" => {
                        if self.next() != Some(Tok::Open) {
                            return Err(self.bad("`(` expected after IN"));
                        }
                        let mut values = vec![self.literal(field)?];
                        loop {
                            match self.next() {
                                Some(Tok::Comma) => values.push(self.literal(field)?),
                                Some(Tok::Close) => break,
                                _ => return Err(self.bad("`,` or `)` expected in IN list")),
                            }
                        }
                        Ok(Cond::In(field, values))
                    }
                    _ => Err(self.bad("operator expected (blanks around operators)")),
                }
            }
            _ => Err(self.bad("condition expected")),
        }
    }
}

/// Parses the `OPTIONS` lines of one call against a table's fields.
pub(crate) fn parse(lines: &[String], defs: &[FieldDef]) -> Result<Cond, Refusal> {
    let mut toks = Vec::new();
    for l in lines {
        toks.extend(tokenize_line(l)?);
    }
    if toks.is_empty() {
        return Ok(Cond::True);
    }
    let mut p = Parser { toks, at: 0, defs };
    let c = p.expr()?;
    if p.at != p.toks.len() {
        return Err(p.bad("unexpected token"));
    }
    Ok(c)
}

/// Compares two packed numbers given as text (`-12.50`), exactly.
fn cmp_number(a: &str, b: &str) -> Ordering {
    fn parts(s: &str) -> (bool, String, String) {
        let s = s.trim();
        let (neg, s) = match s.strip_suffix('-').or_else(|| s.strip_prefix('-')) {
            Some(rest) => (true, rest.trim()),
            None => (false, s),
        };
        let (i, f) = s.split_once('.').unwrap_or((s, ""));
        let i = i.trim_start_matches('0').to_owned();
        let f = f.trim_end_matches('0').to_owned();
        let zero = i.is_empty() && f.is_empty();
        (neg && !zero, i, f)
    }
    let (na, ia, fa) = parts(a);
    let (nb, ib, fb) = parts(b);
    let mag = ia
        .len()
        .cmp(&ib.len())
        .then_with(|| ia.cmp(&ib))
        .then_with(|| fa.cmp(&fb));
    match (na, nb) {
        (false, false) => mag,
        (true, true) => mag.reverse(),
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
    }
}

fn cmp_value(def: &FieldDef, stored: &str, lit: &str) -> Ordering {
    if def.typ == 'P' {
        return cmp_number(stored, lit);
    }
    // CHAR semantics: trailing blanks do not count.
    stored.trim_end().cmp(lit.trim_end())
}

fn like(value: &str, pattern: &str) -> bool {
    fn go(v: &[char], p: &[char]) -> bool {
        match p.first() {
            None => v.is_empty(),
            Some('%') => (0..=v.len()).any(|i| go(&v[i..], &p[1..])),
            Some('_') => !v.is_empty() && go(&v[1..], &p[1..]),
            Some(c) => v.first() == Some(c) && go(&v[1..], &p[1..]),
        }
    }
    let v: Vec<char> = value.trim_end().chars().collect();
    let p: Vec<char> = pattern.trim_end().chars().collect();
    go(&v, &p)
}

/// Whether `row` satisfies `cond`.
pub(crate) fn matches(cond: &Cond, defs: &[FieldDef], row: &BTreeMap<String, String>) -> bool {
    let val = |i: usize| row.get(defs[i].name).map_or("", String::as_str);
    match cond {
        Cond::True => true,
        Cond::Cmp(i, ord, neg, lit) => (cmp_value(&defs[*i], val(*i), lit) == *ord) != *neg,
        Cond::In(i, values) => values
            .iter()
            .any(|v| cmp_value(&defs[*i], val(*i), v) == Ordering::Equal),
        Cond::Like(i, p) => like(val(*i), p),
        Cond::Between(i, lo, hi) => {
            cmp_value(&defs[*i], val(*i), lo) != Ordering::Less
                && cmp_value(&defs[*i], val(*i), hi) != Ordering::Greater
        }
        Cond::And(a, b) => matches(a, defs, row) && matches(b, defs, row),
        Cond::Or(a, b) => matches(a, defs, row) || matches(b, defs, row),
        Cond::Not(a) => !matches(a, defs, row),
    }
}

#[cfg(test)]
mod tests {
    use super::super::ddic::{LFA1, RBKP};
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn strict_about_blanks_and_literals() {
        assert!(parse(&lines(&["BUKRS = '1000'"]), RBKP).is_ok());
        for bad in [
            "BUKRS='1000'",
            "BUKRS >='1000'",
            "(BUKRS = '1000')",
            "BUKRS = '1000",
            "NOPE = '1'",
            "BUKRS = '1000' AND",
            "BUKRS IN ('1000','2000')",
        ] {
            assert!(
                matches!(parse(&lines(&[bad]), RBKP), Err(Refusal::Option(_))),
                "{bad}"
            );
        }
        // A literal split over two lines is refused.
        assert!(parse(&lines(&["NAME1 = 'A", "B'"]), LFA1).is_err());
        assert!(matches!(
            parse(&lines(&["BUKRS = '10000'"]), RBKP),
            Err(Refusal::Dump(_))
        ));
        assert!(
            parse(
                &lines(&["BUKRS IN ( '1000' , '2000' )", "AND GJAHR = '2026'"]),
                RBKP
            )
            .is_ok()
        );
        assert!(parse(&lines(&["BUKRS IN ( '1000', '2000' )"]), RBKP).is_ok());
    }

    #[test]
    fn evaluation() {
        let row: BTreeMap<String, String> = [
            ("BUKRS", "1000"),
            ("RMWWR", "-12.50"),
            ("XBLNR", "A'B C"),
            ("CPUDT", "20260301"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let yes = |c: &str| matches(&parse(&lines(&[c]), RBKP).expect(c), RBKP, &row);
        assert!(yes("RMWWR < '0'"));
        assert!(yes("RMWWR > '-13'"));
        assert!(yes("XBLNR = 'A''B C'"));
        assert!(yes("XBLNR LIKE 'A%C'"));
        assert!(yes(
            "NOT ( BUKRS = '2000' ) AND CPUDT BETWEEN '20260101' AND '20261231'"
        ));
        assert!(!yes(
            "CPUDT > '20260301' OR ( CPUDT = '20260301' AND BUKRS > '1000' )"
        ));
        assert_eq!(cmp_number("100.00", "99.5"), Ordering::Greater);
        assert_eq!(cmp_number("0.00-", "0"), Ordering::Equal);
    }
}
