//! SOAP 1.1 envelopes of the SOAP-RFC service: the request's function element and its
//! parameters in, `FM.Response` (or `FMResponse`) and faults out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::Event;
use quick_xml::reader::Reader;

/// The RFC namespace.
pub(super) const RFC_NS: &str = "urn:sap-com:document:sap:rfc:functions";
const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// A parameter of a request or an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Param {
    /// Text (also an element without children: an empty table or an empty scalar).
    Scalar(String),
    /// Named fields.
    Structure(BTreeMap<String, String>),
    /// `<item>` rows.
    Table(Vec<BTreeMap<String, String>>),
}

impl Param {
    pub(crate) fn text(&self) -> &str {
        match self {
            Param::Scalar(s) => s,
            _ => "",
        }
    }

    pub(crate) fn rows(&self) -> &[BTreeMap<String, String>] {
        match self {
            Param::Table(r) => r,
            _ => &[],
        }
    }
}

#[derive(Default)]
struct El {
    name: String,
    ns_ok: bool,
    text: String,
    kids: Vec<El>,
}

/// The function module called and its parameters; `Err` with a reason for anything that is
/// not a SOAP 1.1 envelope with one RFC function element in its body.
pub(crate) fn parse_request(xml: &str) -> Result<(String, BTreeMap<String, Param>), String> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(false);
    let mut stack = vec![El::default()];
    let mut saw_rfc_ns = false;
    loop {
        match reader
            .read_event()
            .map_err(|e| format!("malformed XML: {e}"))?
        {
            Event::Start(e) => {
                let mut el = El {
                    name: e.local_name().as_ref().to_owned(),
                    ..El::default()
                };
                for a in e.attributes().flatten() {
                    if a.value.as_ref() == RFC_NS {
                        el.ns_ok = true;
                        saw_rfc_ns = true;
                    }
                }
                stack.push(el);
            }
            Event::Empty(e) => {
                let mut el = El {
                    name: e.local_name().as_ref().to_owned(),
                    ..El::default()
                };
                for a in e.attributes().flatten() {
                    if a.value.as_ref() == RFC_NS {
                        el.ns_ok = true;
                    }
                }
                if let Some(top) = stack.last_mut() {
                    top.kids.push(el);
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or("unbalanced XML")?;
                stack.last_mut().ok_or("unbalanced XML")?.kids.push(el);
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let s = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => resolve_predefined_entity(&r)
                        .ok_or_else(|| format!("unknown entity &{};", &*r))?
                        .to_owned(),
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&s);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err("truncated XML".into());
    }
    let root = stack.pop().ok_or("empty")?;
    let env = root
        .kids
        .iter()
        .find(|k| k.name == "Envelope")
        .ok_or("not a SOAP envelope")?;
    let body = env
        .kids
        .iter()
        .find(|k| k.name == "Body")
        .ok_or("no SOAP Body")?;
    let [func] = body.kids.as_slice() else {
        return Err("the SOAP Body must hold exactly one function element".into());
    };
    if !func.ns_ok && !saw_rfc_ns {
        return Err(format!("{} is not in namespace {RFC_NS}", func.name));
    }
    let mut params = BTreeMap::new();
    for p in &func.kids {
        let v = if p.kids.is_empty() {
            Param::Scalar(p.text.clone())
        } else if p.kids.iter().all(|k| k.name == "item") {
            Param::Table(
                p.kids
                    .iter()
                    .map(|item| {
                        item.kids
                            .iter()
                            .map(|f| (f.name.clone(), f.text.clone()))
                            .collect()
                    })
                    .collect(),
            )
        } else {
            Param::Structure(
                p.kids
                    .iter()
                    .map(|f| (f.name.clone(), f.text.clone()))
                    .collect(),
            )
        };
        params.insert(p.name.clone(), v);
    }
    Ok((func.name.replace("_-", "/"), params))
}

fn push(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&escape(value));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn push_row(out: &mut String, row: &BTreeMap<String, String>) {
    for (k, v) in row {
        push(out, k, v);
    }
}

/// A success answer: `<n0:FM.Response>` (or `FMResponse` when `bare`).
pub(crate) fn response(fm: &str, bare: bool, params: &[(&str, Param)]) -> String {
    let el = fm.replace('/', "_-");
    let suffix = if bare { "Response" } else { ".Response" };
    let mut out = String::with_capacity(1024);
    let _ = write!(
        out,
        r#"<soap-env:Envelope xmlns:soap-env="{SOAP_NS}"><soap-env:Header/><soap-env:Body><n0:{el}{suffix} xmlns:n0="{RFC_NS}">"#
    );
    for (name, p) in params {
        match p {
            Param::Scalar(s) => push(&mut out, name, s),
            Param::Structure(row) => {
                let _ = write!(out, "<{name}>");
                push_row(&mut out, row);
                let _ = write!(out, "</{name}>");
            }
            Param::Table(rows) if rows.is_empty() => {
                let _ = write!(out, "<{name}/>");
            }
            Param::Table(rows) => {
                let _ = write!(out, "<{name}>");
                for r in rows {
                    out.push_str("<item>");
                    push_row(&mut out, r);
                    out.push_str("</item>");
                }
                let _ = write!(out, "</{name}>");
            }
        }
    }
    let _ = write!(
        out,
        "</n0:{el}{suffix}></soap-env:Body></soap-env:Envelope>"
    );
    out
}

/// A SOAP fault naming an ABAP exception (`Client` side) or a runtime error (`Server`).
pub(crate) fn fault(fm: &str, server: bool, name: &str, text: &str) -> String {
    let code = if server { "Server" } else { "Client" };
    let el = fm.replace('/', "_-");
    let mut out = format!(
        r#"<soap-env:Envelope xmlns:soap-env="{SOAP_NS}"><soap-env:Body><soap-env:Fault><faultcode>soap-env:{code}</faultcode>"#
    );
    push(&mut out, "faultstring", name);
    let _ = write!(out, r#"<detail><n0:{el}.Exception xmlns:n0="{RFC_NS}">"#);
    push(&mut out, "Name", name);
    push(&mut out, "Text", text);
    let _ = write!(
        out,
        "</n0:{el}.Exception></detail></soap-env:Fault></soap-env:Body></soap-env:Envelope>"
    );
    out
}
