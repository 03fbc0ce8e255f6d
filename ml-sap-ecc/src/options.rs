//! `RFC_READ_TABLE` selections: WHERE clauses as expressions, written with blanks around
//! every operator and parenthesis, and split into `OPTIONS` lines of at most 72
//! characters at token boundaries (never inside a literal).

use std::fmt;

use crate::error::SapEccError;

/// The width of one `OPTIONS-TEXT` line (CHAR72).
pub const OPTIONS_LINE: usize = 72;

/// A comparison operator of Open SQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "<>",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }
}

/// A WHERE expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// `FIELD op 'value'` (values in internal format: `'20240101'`, `'0000100001'`).
    Cmp(String, Op, String),
    /// `FIELD IN ( 'a' , 'b' )`.
    In(String, Vec<String>),
    /// `FIELD LIKE 'pattern'`.
    Like(String, String),
    /// All of these.
    And(Vec<Expr>),
    /// Any of these.
    Or(Vec<Expr>),
    /// `NOT ( ... )`.
    Not(Box<Expr>),
    /// Always true (an empty `And`).
    True,
}

impl Expr {
    /// `field op value`.
    pub fn cmp(field: &str, op: Op, value: impl Into<String>) -> Self {
        Self::Cmp(field.to_owned(), op, value.into())
    }

    /// `field = value`.
    pub fn eq(field: &str, value: impl Into<String>) -> Self {
        Self::cmp(field, Op::Eq, value)
    }

    /// `field IN (values)`.
    pub fn is_in(field: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self::In(
            field.to_owned(),
            values.into_iter().map(Into::into).collect(),
        )
    }

    /// Conjunction, dropping `True`s.
    pub fn and(parts: impl IntoIterator<Item = Expr>) -> Self {
        let parts: Vec<Expr> = parts.into_iter().filter(|p| *p != Expr::True).collect();
        match parts.len() {
            0 => Expr::True,
            1 => parts.into_iter().next().unwrap_or(Expr::True),
            _ => Expr::And(parts),
        }
    }

    /// Disjunction (`True` when any part is).
    pub fn or(parts: impl IntoIterator<Item = Expr>) -> Self {
        let parts: Vec<Expr> = parts.into_iter().collect();
        if parts.is_empty() || parts.contains(&Expr::True) {
            return Expr::True;
        }
        if parts.len() == 1 {
            return parts.into_iter().next().unwrap_or(Expr::True);
        }
        Expr::Or(parts)
    }

    /// Lexicographic comparison of the tuple `fields` with `values`: `>` (`strict`) or `>=`
    /// when `greater`, else `<` or `<=`. Written as `f1 > a OR ( f1 = a AND ( f2 > b ...
    /// ) )`, which Open SQL can evaluate without row constructors.
    pub fn lex(fields: &[&str], values: &[String], greater: bool, strict: bool) -> Self {
        let n = fields.len().min(values.len());
        if n == 0 {
            return if strict {
                Expr::Or(Vec::new())
            } else {
                Expr::True
            };
        }
        let last = n - 1;
        let op_last = match (greater, strict) {
            (true, true) => Op::Gt,
            (true, false) => Op::Ge,
            (false, true) => Op::Lt,
            (false, false) => Op::Le,
        };
        let op_mid = if greater { Op::Gt } else { Op::Lt };
        let mut e = Expr::cmp(fields[last], op_last, values[last].clone());
        for i in (0..last).rev() {
            e = Expr::Or(vec![
                Expr::cmp(fields[i], op_mid, values[i].clone()),
                Expr::And(vec![Expr::eq(fields[i], values[i].clone()), e]),
            ]);
        }
        e
    }

    /// The tokens of the clause, each one unbreakable.
    pub fn tokens(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.push_tokens(&mut out, false);
        out
    }

    fn push_tokens(&self, out: &mut Vec<String>, nested: bool) {
        match self {
            Expr::Cmp(f, op, v) => {
                out.push(f.clone());
                out.push(op.as_str().to_owned());
                out.push(literal(v));
            }
            Expr::Like(f, v) => {
                out.push(f.clone());
                out.push("LIKE".into());
                out.push(literal(v));
            }
            Expr::In(f, vs) => {
                out.push(f.clone());
                out.push("IN".into());
                out.push("(".into());
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        out.push(",".into());
                    }
                    out.push(literal(v));
                }
                out.push(")".into());
            }
            Expr::And(parts) | Expr::Or(parts) => {
                let joiner = if matches!(self, Expr::And(_)) {
                    "AND"
                } else {
                    "OR"
                };
                if parts.is_empty() {
                    // An empty OR is false; an empty AND true. Open SQL has neither.
                    out.extend(
                        if matches!(self, Expr::And(_)) {
                            ["MANDT", "<>", "' '"]
                        } else {
                            ["MANDT", "=", "' '"]
                        }
                        .map(String::from),
                    );
                    return;
                }
                if nested {
                    out.push("(".into());
                }
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        out.push(joiner.into());
                    }
                    p.push_tokens(out, true);
                }
                if nested {
                    out.push(")".into());
                }
            }
            Expr::Not(inner) => {
                out.push("NOT".into());
                out.push("(".into());
                inner.push_tokens(out, false);
                out.push(")".into());
            }
            Expr::True => {}
        }
    }

    /// The `OPTIONS` lines of this clause.
    pub fn lines(&self) -> Result<Vec<String>, SapEccError> {
        split_tokens(&self.tokens())
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tokens().join(" "))
    }
}

/// A quoted Open SQL literal (`'` doubled).
pub fn literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// Splits a clause given as text (a configured filter such as `BUKRS='1000' AND
/// (BSART = 'NB' OR BSART='FO')`) into tokens, putting blanks around operators,
/// parentheses and commas. An unterminated literal is an error.
pub fn tokenize(clause: &str) -> Result<Vec<String>, SapEccError> {
    let chars: Vec<char> = clause.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut lit = String::from('\'');
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(SapEccError::config(
                            "OPTIONS",
                            format!("unterminated literal in `{clause}`"),
                        ));
                    }
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        lit.push_str("''");
                        i += 2;
                    }
                    Some('\'') => {
                        lit.push('\'');
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        lit.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(lit);
        } else if matches!(c, '(' | ')' | ',') {
            out.push(c.to_string());
            i += 1;
        } else if matches!(c, '<' | '>' | '=' | '!') {
            let mut op = String::new();
            while let Some(ch) = chars
                .get(i)
                .filter(|ch| matches!(ch, '<' | '>' | '=' | '!'))
            {
                op.push(*ch);
                i += 1;
            }
            out.push(op);
        } else {
            let mut word = String::new();
            while let Some(ch) = chars.get(i).filter(|ch| {
                !ch.is_whitespace() && !matches!(ch, '\'' | '(' | ')' | ',' | '<' | '>' | '=' | '!')
            }) {
                word.push(*ch);
                i += 1;
            }
            out.push(word);
        }
    }
    Ok(out)
}

/// Packs tokens into lines of at most [`OPTIONS_LINE`] characters, one blank between
/// tokens, breaking only between tokens. A single token longer than a line (a literal of
/// more than 70 characters) cannot be sent and is an error.
pub fn split_tokens(tokens: &[String]) -> Result<Vec<String>, SapEccError> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for t in tokens {
        let width = t.chars().count();
        if width > OPTIONS_LINE {
            return Err(SapEccError::config(
                "OPTIONS",
                format!("token of {width} characters does not fit a 72-character OPTIONS line"),
            ));
        }
        let current = line.chars().count();
        if !line.is_empty() && current + 1 + width > OPTIONS_LINE {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(t);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    Ok(lines)
}

/// [`tokenize`] then [`split_tokens`].
pub fn split_options(clause: &str) -> Result<Vec<String>, SapEccError> {
    split_tokens(&tokenize(clause)?)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn blanks_around_operators_and_parentheses() {
        let toks = tokenize("BUKRS='1000' AND(BSART = 'NB' OR BSART<>'F''O')").expect("t");
        assert_eq!(
            toks.join(" "),
            "BUKRS = '1000' AND ( BSART = 'NB' OR BSART <> 'F''O' )"
        );
        assert!(tokenize("NAME1 = 'open").is_err());
        assert_eq!(
            tokenize("NAME1 LIKE '%A (B) = C%'").expect("t"),
            ["NAME1", "LIKE", "'%A (B) = C%'"]
        );
    }

    #[test]
    fn long_in_lists_break_between_literals() {
        let values: Vec<String> = (1..=60).map(|i| format!("{i:010}")).collect();
        let e = Expr::and([
            Expr::eq("BUKRS", "1000"),
            Expr::eq("GJAHR", "2026"),
            Expr::is_in("BELNR", values.clone()),
        ]);
        let lines = e.lines().expect("lines");
        assert!(lines.len() > 10);
        for l in &lines {
            assert!(l.chars().count() <= OPTIONS_LINE, "{l}");
            assert_eq!(l.matches('\'').count() % 2, 0, "literal cut in {l}");
        }
        assert_eq!(lines.join(" "), e.to_string());
        assert!(e.to_string().starts_with(
            "BUKRS = '1000' AND GJAHR = '2026' AND BELNR IN ( '0000000001' , '0000000002'"
        ));
    }

    #[test]
    fn literals_with_blanks_and_quotes_stay_whole() {
        let name = "O'Brien & Sons | Ltd; Müller  GmbH (Wien) = 'x'";
        let e = Expr::and([Expr::eq("NAME1", name), Expr::cmp("ORT01", Op::Ne, "A  B")]);
        let lines = e.lines().expect("lines");
        let lit = literal(name);
        assert!(lines.iter().any(|l| l.contains(&lit)), "{lines:?}");
        let too_long = "x".repeat(71);
        assert!(Expr::eq("SGTXT", too_long).lines().is_err());
        assert!(Expr::eq("SGTXT", "x".repeat(70)).lines().is_ok());
    }

    #[test]
    fn lexicographic_bounds() {
        let e = Expr::lex(
            &["CPUDT", "CPUTM", "BELNR"],
            &["20260301".into(), "120000".into(), "5100000001".into()],
            true,
            true,
        );
        assert_eq!(
            e.to_string(),
            "CPUDT > '20260301' OR ( CPUDT = '20260301' AND ( CPUTM > '120000' OR ( CPUTM = '120000' AND BELNR > '5100000001' ) ) )"
        );
        let e = Expr::and([Expr::eq("BUKRS", "1000"), e]);
        assert!(e.to_string().starts_with("BUKRS = '1000' AND ( CPUDT > "));
        assert_eq!(Expr::or([Expr::True, Expr::eq("A", "1")]), Expr::True);
        assert_eq!(Expr::and([Expr::True]), Expr::True);
        assert!(Expr::True.lines().expect("empty").is_empty());
    }

    fn token_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Z][A-Z0-9_]{0,29}".prop_map(|s| s),
            Just("=".to_owned()),
            Just("<>".to_owned()),
            Just(">=".to_owned()),
            Just("(".to_owned()),
            Just(")".to_owned()),
            Just("AND".to_owned()),
            Just("OR".to_owned()),
            Just(",".to_owned()),
            "[ a-zA-Z0-9'|;()=<>,%äö]{0,40}".prop_map(|s| literal(&s)),
        ]
    }

    proptest! {
        #[test]
        fn splitting_never_cuts_a_token(tokens in proptest::collection::vec(token_strategy(), 0..120)) {
            let tokens: Vec<String> = tokens.into_iter().filter(|t| t.chars().count() <= OPTIONS_LINE).collect();
            let lines = split_tokens(&tokens).expect("fits");
            for l in &lines {
                prop_assert!(l.chars().count() <= OPTIONS_LINE);
                prop_assert!(!l.starts_with(' ') && !l.ends_with(' '));
            }
            // Re-tokenizing the lines one by one gives back the tokens: nothing was cut.
            let mut back = Vec::new();
            for l in &lines {
                back.extend(tokenize(l).expect("each line tokenizes alone"));
            }
            let expected: Vec<String> = tokenize(&tokens.join(" ")).expect("whole");
            prop_assert_eq!(back, expected);
        }

        #[test]
        fn in_lists_of_any_literals_split_safely(values in proptest::collection::vec("[ -~äöü]{0,30}", 1..80)) {
            let e = Expr::and([Expr::eq("BUKRS", "1000"), Expr::is_in("XBLNR", values)]);
            let lines = e.lines().expect("lines");
            for l in &lines {
                prop_assert!(l.chars().count() <= OPTIONS_LINE);
                prop_assert!(tokenize(l).is_ok(), "a literal was cut: {}", l);
            }
            prop_assert_eq!(lines.join(" "), e.to_string());
        }
    }
}
