//! Parsers for the GraphQL subset the emulator executes (one operation, fields with
//! arguments and selections, variables) and for X3's Mongo-like filter / orderBy strings
//! (`{_updateStamp:{_gte:'2026-…'}}`, `{_updateStamp:1,id:1}`).

use std::collections::BTreeMap;

/// A GraphQL value.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Value {
    Var(String),
    Str(String),
    Int(i64),
    Bool(bool),
    Null,
    Enum(String),
}

/// A field with its arguments and selection.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Field {
    pub(super) name: String,
    pub(super) args: Vec<(String, Value)>,
    pub(super) selection: Vec<Field>,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Punct(char),
    Name(String),
    Str(String),
    Int(i64),
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() || ch == ',' {
            i += 1;
        } else if ch == '#' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if "{}():$![]=@".contains(ch) {
            out.push(Tok::Punct(ch));
            i += 1;
        } else if ch == '"' {
            let mut text = String::new();
            i += 1;
            loop {
                match c.get(i) {
                    None => return Err("unterminated string".into()),
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        match c.get(i + 1) {
                            Some('n') => text.push('\n'),
                            Some('t') => text.push('\t'),
                            Some(x) => text.push(*x),
                            None => return Err("unterminated string".into()),
                        }
                        i += 2;
                    }
                    Some(x) => {
                        text.push(*x);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(text));
        } else if ch.is_ascii_digit() || ch == '-' {
            let start = i;
            i += 1;
            while i < c.len() && c[i].is_ascii_digit() {
                i += 1;
            }
            let t: String = c[start..i].iter().collect();
            out.push(Tok::Int(t.parse().map_err(|_| format!("bad number {t}"))?));
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Tok::Name(c[start..i].iter().collect()));
        } else {
            return Err(format!("Syntax Error: unexpected character \"{ch}\""));
        }
    }
    Ok(out)
}

struct P {
    t: Vec<Tok>,
    i: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }

    fn eat(&mut self, ch: char) -> bool {
        if self.peek() == Some(&Tok::Punct(ch)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn name(&mut self) -> Result<String, String> {
        match self.t.get(self.i).cloned() {
            Some(Tok::Name(n)) => {
                self.i += 1;
                Ok(n)
            }
            other => Err(format!("Syntax Error: expected a name, found {other:?}")),
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        let tok = self.t.get(self.i).cloned();
        self.i += 1;
        Ok(match tok {
            Some(Tok::Punct('$')) => Value::Var(self.name()?),
            Some(Tok::Str(s)) => Value::Str(s),
            Some(Tok::Int(n)) => Value::Int(n),
            Some(Tok::Name(n)) if n == "true" => Value::Bool(true),
            Some(Tok::Name(n)) if n == "false" => Value::Bool(false),
            Some(Tok::Name(n)) if n == "null" => Value::Null,
            Some(Tok::Name(n)) => Value::Enum(n),
            other => return Err(format!("Syntax Error: unexpected {other:?}")),
        })
    }

    fn selection(&mut self) -> Result<Vec<Field>, String> {
        if !self.eat('{') {
            return Err("Syntax Error: expected {".into());
        }
        let mut out = Vec::new();
        while !self.eat('}') {
            if self.peek().is_none() {
                return Err("Syntax Error: unexpected end".into());
            }
            let name = self.name()?;
            let mut args = Vec::new();
            if self.eat('(') {
                while !self.eat(')') {
                    let a = self.name()?;
                    if !self.eat(':') {
                        return Err("Syntax Error: expected :".into());
                    }
                    args.push((a, self.value()?));
                }
            }
            let selection = if self.peek() == Some(&Tok::Punct('{')) {
                self.selection()?
            } else {
                Vec::new()
            };
            out.push(Field {
                name,
                args,
                selection,
            });
        }
        Ok(out)
    }

    fn skip_type(&mut self) -> Result<(), String> {
        if self.eat('[') {
            self.skip_type()?;
            if !self.eat(']') {
                return Err("Syntax Error: expected ]".into());
            }
        } else {
            self.name()?;
        }
        self.eat('!');
        Ok(())
    }
}

/// Parses one operation: `query [Name] [($v: T, …)] { … }` or a bare `{ … }`.
pub(super) fn parse(doc: &str) -> Result<Vec<Field>, String> {
    let mut p = P { t: lex(doc)?, i: 0 };
    if matches!(p.peek(), Some(Tok::Name(n)) if n == "query") {
        p.i += 1;
        if matches!(p.peek(), Some(Tok::Name(_))) {
            p.i += 1;
        }
        if p.eat('(') {
            while !p.eat(')') {
                if !p.eat('$') {
                    return Err("Syntax Error: expected $".into());
                }
                p.name()?;
                if !p.eat(':') {
                    return Err("Syntax Error: expected :".into());
                }
                p.skip_type()?;
                if p.eat('=') {
                    p.value()?;
                }
            }
        }
    } else if matches!(p.peek(), Some(Tok::Name(n)) if n == "mutation" || n == "subscription") {
        return Err("only queries are served".into());
    }
    let sel = p.selection()?;
    if p.peek().is_some() {
        return Err("Syntax Error: one operation only".into());
    }
    Ok(sel)
}

/// A Mongo-like value: X3's filter and orderBy strings.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum MValue {
    Obj(BTreeMap<String, MValue>, Vec<String>),
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

/// Parses `{key:'v', other:{_gte:'x'}}` (keys bare or quoted, strings `'` or `"`).
pub(super) fn parse_mongo(s: &str) -> Result<MValue, String> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let v = mvalue(&c, &mut i)?;
    skip_ws(&c, &mut i);
    if i < c.len() {
        return Err(format!("trailing input in `{s}`"));
    }
    Ok(v)
}

fn skip_ws(c: &[char], i: &mut usize) {
    while *i < c.len() && c[*i].is_whitespace() {
        *i += 1;
    }
}

fn mstring(c: &[char], i: &mut usize) -> Result<String, String> {
    let q = c[*i];
    *i += 1;
    let mut out = String::new();
    while *i < c.len() && c[*i] != q {
        if c[*i] == '\\' && *i + 1 < c.len() {
            *i += 1;
        }
        out.push(c[*i]);
        *i += 1;
    }
    if *i >= c.len() {
        return Err("unterminated string in filter".into());
    }
    *i += 1;
    Ok(out)
}

fn mvalue(c: &[char], i: &mut usize) -> Result<MValue, String> {
    skip_ws(c, i);
    match c.get(*i) {
        Some('{') => {
            *i += 1;
            let mut map = BTreeMap::new();
            let mut order = Vec::new();
            loop {
                skip_ws(c, i);
                match c.get(*i) {
                    Some('}') => {
                        *i += 1;
                        break;
                    }
                    Some(',') => *i += 1,
                    Some('\'' | '"') => {
                        let k = mstring(c, i)?;
                        entry(c, i, k, &mut map, &mut order)?;
                    }
                    Some(ch) if ch.is_alphanumeric() || *ch == '_' || *ch == '$' => {
                        let start = *i;
                        while *i < c.len()
                            && (c[*i].is_alphanumeric() || c[*i] == '_' || c[*i] == '$')
                        {
                            *i += 1;
                        }
                        let k: String = c[start..*i].iter().collect();
                        entry(c, i, k, &mut map, &mut order)?;
                    }
                    other => return Err(format!("unexpected {other:?} in filter object")),
                }
            }
            Ok(MValue::Obj(map, order))
        }
        Some('\'' | '"') => Ok(MValue::Str(mstring(c, i)?)),
        Some(ch) if ch.is_ascii_digit() || *ch == '-' => {
            let start = *i;
            *i += 1;
            while *i < c.len() && (c[*i].is_ascii_digit() || c[*i] == '.') {
                *i += 1;
            }
            let t: String = c[start..*i].iter().collect();
            t.parse()
                .map(MValue::Num)
                .map_err(|_| format!("bad number {t}"))
        }
        Some(_) => {
            let start = *i;
            while *i < c.len() && c[*i].is_alphabetic() {
                *i += 1;
            }
            match c[start..*i].iter().collect::<String>().as_str() {
                "true" => Ok(MValue::Bool(true)),
                "false" => Ok(MValue::Bool(false)),
                "null" => Ok(MValue::Null),
                other => Err(format!("unexpected `{other}` in filter")),
            }
        }
        None => Err("empty filter".into()),
    }
}

fn entry(
    c: &[char],
    i: &mut usize,
    k: String,
    map: &mut BTreeMap<String, MValue>,
    order: &mut Vec<String>,
) -> Result<(), String> {
    skip_ws(c, i);
    if c.get(*i) != Some(&':') {
        return Err(format!("expected : after {k}"));
    }
    *i += 1;
    let v = mvalue(c, i)?;
    order.push(k.clone());
    map.insert(k, v);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_queries_and_filters() {
        let f = parse("query($f: String, $n: Int!) { a { b(filter: $f, first: 3) { edges { node { id } } } } }")
            .expect("parse");
        assert_eq!(f[0].name, "a");
        assert_eq!(f[0].selection[0].args[1], ("first".into(), Value::Int(3)));
        assert!(parse("mutation { x }").is_err());
        assert!(parse("{ a ").is_err());
        let m =
            parse_mongo("{_updateStamp:{_gte:'2026-01-01T00:00:00Z'}, id: 'X'}").expect("mongo");
        let MValue::Obj(map, order) = m else {
            panic!("obj")
        };
        assert_eq!(order, ["_updateStamp", "id"]);
        assert_eq!(map["id"], MValue::Str("X".into()));
        assert!(parse_mongo("{a:").is_err());
    }
}
