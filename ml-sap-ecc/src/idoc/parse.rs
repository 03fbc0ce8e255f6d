//! The IDoc XML parser: a packet posted by an SAP "XML HTTP" port (WE21) -> [`Idoc`]s.
//!
//! Shape: root = the IDoc type (`<ORDERS05>`), one or more `<IDOC BEGIN="1">`, each
//! holding the control record `<EDI_DC40 SEGMENT="1">` first, then data segments marked
//! `SEGMENT="1"` whose fields are child elements with text, segments nesting segments.
//! Bounded: depth, element count and field length are capped, a `<!DOCTYPE>` is refused
//! (no entity expansion of any kind), and every failure is an [`IdocError`], never a panic.

use std::collections::BTreeMap;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use serde_json::{Map, Value};

use super::IdocError;

/// The deepest element nesting accepted (root, IDOC, segments, fields).
pub const MAX_DEPTH: usize = 16;
/// The most elements one packet may hold.
pub const MAX_ELEMENTS: usize = 200_000;
/// The most IDocs one packet may hold.
pub const MAX_IDOCS: usize = 5_000;
/// The longest field text accepted (SAP fields are at most a few hundred characters).
pub const MAX_FIELD: usize = 4_096;

/// One data segment: its fields in document order and its child segments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// The segment name (`E1EDK01`, `Z1ACME`).
    pub name: String,
    /// Field name -> text (trimmed; SAP pads CHAR fields).
    pub fields: Vec<(String, String)>,
    /// Child segments.
    pub children: Vec<Segment>,
}

impl Segment {
    /// A field's text.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The child segments named `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Segment> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("segment".into(), Value::String(self.name.clone()));
        let fields: Map<String, Value> = self
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        m.insert("fields".into(), Value::Object(fields));
        if !self.children.is_empty() {
            m.insert(
                "children".into(),
                Value::Array(self.children.iter().map(Segment::to_json).collect()),
            );
        }
        Value::Object(m)
    }
}

/// The control record `EDI_DC40`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlRecord {
    /// Every field as sent (`TABNAM`, `MANDT`, `DOCNUM`, `DOCREL`, `STATUS`, `DIRECT`,
    /// `OUTMOD`, `IDOCTYP`, `CIMTYP`, `MESTYP`, `MESCOD`, `MESFCT`, `SNDPOR`, `SNDPRT`,
    /// `SNDPRN`, `RCVPOR`, `RCVPRT`, `RCVPRN`, `CREDAT`, `CRETIM`, `SERIAL`, ...).
    pub fields: BTreeMap<String, String>,
}

impl ControlRecord {
    /// A field's text (trimmed; `None` when empty).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// `DOCNUM`: the IDoc number, the idempotency key.
    pub fn docnum(&self) -> Option<&str> {
        self.get("DOCNUM")
    }

    /// `IDOCTYP`: the basic type (`ORDERS05`).
    pub fn idoc_type(&self) -> Option<&str> {
        self.get("IDOCTYP")
    }

    /// `MESTYP`: the message type (`ORDERS`).
    pub fn message_type(&self) -> Option<&str> {
        self.get("MESTYP")
    }
}

/// One IDoc of a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idoc {
    /// The root element's name (the basic type, or the extension type with `CIMTYP`).
    pub root: String,
    /// The control record.
    pub control: ControlRecord,
    /// The data segments, in document order.
    pub segments: Vec<Segment>,
}

impl Idoc {
    /// The top-level segments named `name`.
    pub fn segments_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Segment> + 'a {
        self.segments.iter().filter(move |s| s.name == name)
    }

    /// The first top-level segment named `name`.
    pub fn segment(&self, name: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.name == name)
    }

    /// The IDoc as JSON (control fields and segments, every value the exact text sent):
    /// what the journal keeps as the raw item.
    pub fn to_json(&self) -> Value {
        let control: Map<String, Value> = self
            .control
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        serde_json::json!({
            "idoc": self.root,
            "control": control,
            "segments": self.segments.iter().map(Segment::to_json).collect::<Vec<_>>(),
        })
    }
}

#[derive(Default)]
struct Node {
    name: String,
    segment: bool,
    text: String,
    children: Vec<Node>,
}

fn structure(message: impl Into<String>) -> IdocError {
    IdocError::Structure(message.into())
}

fn node_of(e: &BytesStart<'_>) -> Result<Node, IdocError> {
    let local = e.local_name();
    let name: &str = local.as_ref();
    let name = name.to_owned();
    let mut segment = false;
    for a in e.attributes() {
        let a = a.map_err(|e| IdocError::Xml(format!("bad attribute: {e}")))?;
        let local = a.key.local_name();
        let key: &str = local.as_ref();
        if key == "SEGMENT" {
            segment = true;
        }
    }
    Ok(Node {
        name,
        segment,
        ..Node::default()
    })
}

/// Decodes the body to UTF-8 by its XML declaration's `encoding` (UTF-8 when absent; a
/// byte-order mark wins), with `encoding_rs`. Unknown encodings are refused.
fn decode(body: &[u8]) -> Result<String, IdocError> {
    if let Some((enc, _)) = encoding_rs::Encoding::for_bom(body) {
        let (text, _, bad) = enc.decode(body);
        return if bad {
            Err(IdocError::Xml(format!("not valid {}", enc.name())))
        } else {
            Ok(text.into_owned())
        };
    }
    let head = &body[..body.len().min(200)];
    let declared = std::str::from_utf8(head)
        .ok()
        .or_else(|| std::str::from_utf8(&head[..head.len().saturating_sub(3)]).ok())
        .and_then(|h| {
            let h = h.trim_start();
            if !h.starts_with("<?xml") {
                return None;
            }
            let end = h.find("?>")?;
            let decl = &h[..end];
            let at = decl.find("encoding")?;
            let rest = decl[at + 8..].trim_start().strip_prefix('=')?.trim_start();
            // Only `"` or `'` delimit the value (a multi-byte "quote" found by fuzzing once
            // sliced inside a character).
            let quote = rest.chars().next().filter(|c| matches!(c, '"' | '\''))?;
            let rest = &rest[quote.len_utf8()..];
            Some(rest[..rest.find(quote)?].to_owned())
        });
    match declared {
        None => {
            String::from_utf8(body.to_vec()).map_err(|_| IdocError::Xml("not valid UTF-8".into()))
        }
        Some(label) => {
            let enc = encoding_rs::Encoding::for_label(label.as_bytes())
                .ok_or_else(|| IdocError::Xml(format!("unknown encoding `{label}`")))?;
            let (text, bad) = enc.decode_without_bom_handling(body);
            if bad {
                return Err(IdocError::Xml(format!("not valid {}", enc.name())));
            }
            Ok(text.into_owned())
        }
    }
}

fn tree(xml: &str) -> Result<Node, IdocError> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Node> = vec![Node::default()];
    let mut elements = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| IdocError::Xml(e.to_string()))?;
        let mut open = |e: &BytesStart<'_>, stack: &mut Vec<Node>| -> Result<Node, IdocError> {
            elements += 1;
            if elements > MAX_ELEMENTS {
                return Err(structure(format!("more than {MAX_ELEMENTS} elements")));
            }
            if stack.len() > MAX_DEPTH {
                return Err(structure(format!("nested deeper than {MAX_DEPTH}")));
            }
            node_of(e)
        };
        match event {
            Event::Start(e) => {
                let node = open(&e, &mut stack)?;
                stack.push(node);
            }
            Event::Empty(e) => {
                let node = open(&e, &mut stack)?;
                if let Some(top) = stack.last_mut() {
                    top.children.push(node);
                }
            }
            Event::End(_) => {
                let node = stack
                    .pop()
                    .ok_or_else(|| IdocError::Xml("unbalanced XML".into()))?;
                match stack.last_mut() {
                    Some(top) => top.children.push(node),
                    None => return Err(IdocError::Xml("unbalanced XML".into())),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                    if top.text.len() > MAX_FIELD {
                        return Err(structure(format!("a text longer than {MAX_FIELD} bytes")));
                    }
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&c.xml10_content());
                    if top.text.len() > MAX_FIELD {
                        return Err(structure(format!("a text longer than {MAX_FIELD} bytes")));
                    }
                }
            }
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => resolve_predefined_entity(&r)
                        .ok_or_else(|| IdocError::Xml(format!("unknown entity &{};", &*r)))?
                        .to_owned(),
                    Err(e) => return Err(IdocError::Xml(format!("bad character reference: {e}"))),
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&ch);
                }
            }
            Event::DocType(_) => return Err(IdocError::Xml("a DOCTYPE is not accepted".into())),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if stack.len() != 1 {
        return Err(IdocError::Xml("truncated XML".into()));
    }
    stack
        .pop()
        .ok_or_else(|| IdocError::Xml("empty XML".into()))
}

/// Whether `name` is shaped like an SAP segment name: `E1`/`E2`/`E3` (SAP), `Z1`/`Z2`/
/// `Y1`/`Y2` (customer), then letters, digits or `_`, at most 30 characters (segment
/// names in namespaces come as `/ACME/E1X`, with `/`).
fn segment_name(name: &str) -> bool {
    let body = name.rsplit('/').next().unwrap_or(name);
    name.len() <= 30
        && ["E1", "E2", "E3", "Z1", "Z2", "Y1", "Y2"]
            .iter()
            .any(|p| body.starts_with(p))
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn segment(node: Node) -> Result<Segment, IdocError> {
    if !segment_name(&node.name) {
        return Err(structure(format!(
            "`{}` is not an IDoc segment name",
            node.name
        )));
    }
    let mut out = Segment {
        name: node.name,
        ..Segment::default()
    };
    for child in node.children {
        if child.segment {
            out.children.push(segment(child)?);
        } else if child.children.is_empty() {
            out.fields.push((child.name, child.text.trim().to_owned()));
        } else {
            return Err(structure(format!(
                "field `{}` of `{}` holds elements",
                child.name, out.name
            )));
        }
    }
    Ok(out)
}

fn control(node: Node) -> Result<ControlRecord, IdocError> {
    let mut fields = BTreeMap::new();
    for child in node.children {
        if !child.children.is_empty() {
            return Err(structure(format!(
                "EDI_DC40 field `{}` holds elements",
                child.name
            )));
        }
        fields.insert(child.name, child.text.trim().to_owned());
    }
    Ok(ControlRecord { fields })
}

/// Parses a packet: every `IDOC` under the root.
pub fn parse_packet(body: &[u8]) -> Result<Vec<Idoc>, IdocError> {
    let xml = decode(body)?;
    let document = tree(&xml)?;
    let mut roots = document.children.into_iter();
    let (Some(root), None) = (roots.next(), roots.next()) else {
        return Err(IdocError::Xml("not one root element".into()));
    };
    if root.name.is_empty() || root.name.len() > 30 {
        return Err(structure("the root is not an IDoc type"));
    }
    let mut out = Vec::new();
    for idoc in root.children {
        if idoc.name != "IDOC" {
            return Err(structure(format!(
                "`{}` under `{}` is not IDOC",
                idoc.name, root.name
            )));
        }
        if out.len() >= MAX_IDOCS {
            return Err(structure(format!(
                "more than {MAX_IDOCS} IDocs in one packet"
            )));
        }
        let mut children = idoc.children.into_iter();
        let Some(first) = children.next().filter(|c| c.name == "EDI_DC40") else {
            return Err(structure(
                "the IDoc does not start with the control record EDI_DC40",
            ));
        };
        let control = control(first)?;
        let mut segments = Vec::new();
        for child in children {
            if !child.segment {
                return Err(structure(format!(
                    "`{}` is not marked SEGMENT=\"1\"",
                    child.name
                )));
            }
            segments.push(segment(child)?);
        }
        out.push(Idoc {
            root: root.name.clone(),
            control,
            segments,
        });
    }
    if out.is_empty() {
        return Err(structure("no IDOC in the packet"));
    }
    Ok(out)
}
