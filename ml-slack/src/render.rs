//! Block Kit rendering: one message layout per entity kind, with a plain-text fallback, and
//! [`enforce_limits`], which keeps any renderer's blocks within Slack's limits.
//!
//! Layout ([`BlockKitRenderer`]):
//! 1. a `header` with the title (`Supplier invoice INV-7`);
//! 2. a `section` with up to ten fields in the order that suits the kind: supplier, amount
//!    with currency, document number, status, GL account, cost center, company, reference,
//!    then the source's extra fields while slots remain;
//! 3. a `section` listing the document lines (PO lines, invoice lines / GL distributions,
//!    journal lines) with their GL account and cost center, truncated with a marker when
//!    they do not fit; [`LineDetail`] chooses the destinations that get it
//!    ([`BlockKitRenderer::lines_for`]: only `#finance`, say);
//! 4. a `context` line with the source system and, when the record has one, a link back.
//!
//! Every value from the ERP is escaped for Slack's mrkdwn (`&`, `<`, `>`), so a supplier
//! named `<!channel>` cannot ping a channel or forge a link. The fallback `text` (used in
//! notifications and by screen readers) is escaped the same way.
//!
//! Limits (per Slack's Block Kit reference): at most 50 blocks per message, section text
//! at most 3000 characters, at most 10 section fields of at most 2000 characters each,
//! header text at most 150 characters, `block_id` at most 255. Truncated text ends in
//! `… (truncated)`. Slack does not say which unit "characters" counts; lengths here are
//! counted in UTF-16 code units, which is never fewer than the number of characters, so
//! the limits hold either way.

use std::borrow::Cow;
use std::fmt::Write as _;

use ml_core::money::Money;
use ml_core::record::{EntityKind, Line, Record};
use ml_core::render::{Rendered, Renderer};
use ml_core::sink::Destination;
use serde_json::{Value, json};

/// Most blocks in one message.
pub const MAX_BLOCKS: usize = 50;
/// Most characters in a section's `text`.
pub const MAX_SECTION_TEXT: usize = 3000;
/// Most fields in a section.
pub const MAX_FIELDS: usize = 10;
/// Most characters in one section field.
pub const MAX_FIELD_TEXT: usize = 2000;
/// Most characters in a header.
pub const MAX_HEADER_TEXT: usize = 150;
/// Most characters in a context element (the same as a field; unconfirmed).
pub const MAX_CONTEXT_TEXT: usize = 2000;
/// Most characters in a `block_id`.
pub const MAX_BLOCK_ID: usize = 255;
/// Most characters of the fallback `text` this crate sends (Slack truncates above 40,000).
pub const MAX_TEXT: usize = 40_000;
/// What ends truncated text.
pub const TRUNCATION_MARKER: &str = "… (truncated)";

/// Which destinations get the document lines section (and the `N line(s)` of the
/// fallback text).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineDetail {
    /// Every destination (the default).
    #[default]
    All,
    /// Only these destinations, compared as routed (`slack:#finance` is
    /// `Destination::new("slack", "#finance")`; a channel id is a different destination).
    Only(Vec<Destination>),
    /// No destination.
    None,
}

impl LineDetail {
    /// Whether `destination` gets the lines.
    pub fn shows(&self, destination: &Destination) -> bool {
        match self {
            Self::All => true,
            Self::Only(d) => d.contains(destination),
            Self::None => false,
        }
    }
}

/// The default Slack renderer: Block Kit per entity kind with a plain-text fallback.
///
/// `Rendered::body` holds the JSON array of blocks; `Rendered::text` the fallback;
/// `Rendered::subject` the title. By default every destination gets the document lines;
/// [`lines_for`](Self::lines_for) keeps the GL detail to some destinations:
///
/// ```
/// use ml_core::Destination;
/// use ml_slack::render::{BlockKitRenderer, LineDetail};
///
/// let r = BlockKitRenderer::lines_for([Destination::new("slack", "#finance")]);
/// assert!(r.line_detail().shows(&Destination::new("slack", "#finance")));
/// assert!(!r.line_detail().shows(&Destination::new("slack", "#procurement")));
/// assert_eq!(BlockKitRenderer::new().line_detail(), &LineDetail::All);
/// ```
#[derive(Clone, Debug, Default)]
pub struct BlockKitRenderer {
    lines: LineDetail,
}

impl BlockKitRenderer {
    /// The renderer with every section for every destination.
    pub fn new() -> Self {
        Self::default()
    }

    /// A renderer that shows document lines only to `destinations`.
    pub fn lines_for(destinations: impl IntoIterator<Item = Destination>) -> Self {
        Self::new().with_line_detail(LineDetail::Only(destinations.into_iter().collect()))
    }

    /// Sets which destinations get the document lines.
    #[must_use]
    pub fn with_line_detail(mut self, lines: LineDetail) -> Self {
        self.lines = lines;
        self
    }

    /// Which destinations get the document lines.
    pub fn line_detail(&self) -> &LineDetail {
        &self.lines
    }
}

impl Renderer for BlockKitRenderer {
    fn render(&self, record: &Record, destination: &Destination) -> Rendered {
        let show_lines = !record.fields.lines.is_empty() && self.lines.shows(destination);
        let title = record.title();
        let fields = fields_for(record);
        let mut blocks = vec![json!({
            "type": "header",
            "text": {"type": "plain_text", "text": truncate_marked(&title, MAX_HEADER_TEXT), "emoji": false},
        })];
        if !fields.is_empty() {
            let items: Vec<Value> = fields
                .iter()
                .take(MAX_FIELDS)
                .map(|(label, value)| {
                    let text = format!("*{label}*\n{}", escape(value));
                    json!({"type": "mrkdwn", "text": truncate_marked(&text, MAX_FIELD_TEXT)})
                })
                .collect();
            blocks.push(json!({"type": "section", "fields": items}));
        }
        if show_lines {
            let text = lines_text(&record.kind, &record.fields.lines);
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
        }
        let mut context = format!("Source: {}", escape(&record.system));
        if let Some(link) = record.link.as_deref().and_then(safe_link) {
            let _ = write!(context, " · <{link}|Open in source>");
        }
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": truncate_marked(&context, MAX_CONTEXT_TEXT)}],
        }));

        let mut text = escape(&title).into_owned();
        for (label, value) in &fields {
            let _ = write!(text, "\n{label}: {}", escape(value));
        }
        if show_lines {
            let _ = write!(text, "\n{} line(s)", record.fields.lines.len());
        }
        let _ = write!(text, "\nSource: {}", escape(&record.system));
        if let Some(link) = record.link.as_deref().and_then(safe_link) {
            let _ = write!(text, "\nLink: {link}");
        }
        Rendered {
            text: truncate_marked(&text, MAX_TEXT).into_owned(),
            subject: Some(title),
            body: Some(enforce_limits(Value::Array(blocks))),
        }
    }
}

/// The labelled fields of a record, in the order that suits its kind.
fn fields_for(record: &Record) -> Vec<(String, String)> {
    let f = &record.fields;
    let supplier = f.supplier.clone().or_else(|| f.supplier_id.clone());
    let amount = f.amount.as_ref().map(Money::to_string);
    let doc_label = match record.kind {
        EntityKind::SupplierInvoice => "Invoice number",
        EntityKind::PurchaseOrder => "PO number",
        EntityKind::GlJournal => "Journal",
        EntityKind::Payment => "Payment",
        _ => "Document",
    };
    let doc = f.document_number.clone();
    let status = f.status.clone();
    let gl = f.gl_account.clone();
    let cc = f.cost_center.clone();
    let company = f.company_code.clone();
    let reference = f.reference.clone();
    let ordered: Vec<(&str, Option<String>)> = match record.kind {
        EntityKind::GlJournal => vec![
            (doc_label, doc),
            ("Amount", amount),
            ("GL account", gl),
            ("Cost center", cc),
            ("Company", company),
            ("Status", status),
            ("Reference", reference),
            ("Supplier", supplier),
        ],
        EntityKind::Payment => vec![
            ("Payee", supplier),
            ("Amount", amount),
            (doc_label, doc),
            ("Status", status),
            ("Reference", reference),
            ("Company", company),
            ("GL account", gl),
            ("Cost center", cc),
        ],
        _ => vec![
            ("Supplier", supplier),
            ("Amount", amount),
            (doc_label, doc),
            ("Status", status),
            ("GL account", gl),
            ("Cost center", cc),
            ("Company", company),
            ("Reference", reference),
        ],
    };
    let mut out: Vec<(String, String)> = ordered
        .into_iter()
        .filter_map(|(label, value)| value.map(|v| (label.to_owned(), v)))
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    for (k, v) in &f.extra {
        if out.len() >= MAX_FIELDS {
            break;
        }
        if !v.trim().is_empty() {
            out.push((humanize(k), v.clone()));
        }
    }
    out
}

/// `buyer_email` → `Buyer email`.
fn humanize(key: &str) -> String {
    let spaced = key.replace(['_', '-'], " ");
    let mut chars = spaced.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// The lines section: a title and one bullet per line, truncated with a count of what was
/// left out.
fn lines_text(kind: &EntityKind, lines: &[Line]) -> String {
    let title = match kind {
        EntityKind::PurchaseOrder => "PO lines",
        EntityKind::SupplierInvoice => "Invoice lines",
        EntityKind::GlJournal => "Journal lines",
        _ => "Lines",
    };
    let mut text = format!("*{title}*");
    for (i, line) in lines.iter().enumerate() {
        let bullet = line_text(line);
        let remaining = lines.len() - i - 1;
        let tail = format!("\n… and {} more line(s)", lines.len() - i);
        // Keep room for the "and N more" tail whenever more lines follow this one.
        let reserve = if remaining > 0 { utf16_len(&tail) } else { 0 };
        if utf16_len(&text) + 1 + utf16_len(&bullet) + reserve > MAX_SECTION_TEXT {
            let _ = write!(text, "{tail}");
            return truncate_marked(&text, MAX_SECTION_TEXT).into_owned();
        }
        text.push('\n');
        text.push_str(&bullet);
    }
    text
}

fn line_text(line: &Line) -> String {
    let mut s = format!("• {}", escape(&line.number));
    if let Some(d) = &line.description {
        let _ = write!(s, " {}", escape(d));
    }
    if let Some(m) = &line.material {
        let _ = write!(s, " ({})", escape(m));
    }
    if let Some(q) = &line.quantity {
        let _ = write!(s, " × {q}");
    }
    if let Some(a) = &line.amount {
        let _ = write!(s, " — {a}");
    }
    let mut acct = Vec::new();
    if let Some(g) = &line.gl_account {
        acct.push(format!("GL {}", escape(g)));
    }
    if let Some(c) = &line.cost_center {
        acct.push(format!("CC {}", escape(c)));
    }
    if !acct.is_empty() {
        let _ = write!(s, " — {}", acct.join(", "));
    }
    truncate_marked(&s, MAX_FIELD_TEXT).into_owned()
}

/// Escapes text for Slack mrkdwn: `&` → `&amp;`, `<` → `&lt;`, `>` → `&gt;`.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// An `http`/`https` URL made safe for `<url|label>`, or `None`.
fn safe_link(link: &str) -> Option<String> {
    let url = url::Url::parse(link.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    let s = url
        .as_str()
        .replace('|', "%7C")
        .replace('<', "%3C")
        .replace('>', "%3E");
    (utf16_len(&s) <= 1500).then_some(s)
}

/// Length in UTF-16 code units (≥ the number of characters).
pub fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// `text` cut to at most `max` UTF-16 code units, ending in [`TRUNCATION_MARKER`] when cut.
pub fn truncate_marked(text: &str, max: usize) -> Cow<'_, str> {
    if utf16_len(text) <= max {
        return Cow::Borrowed(text);
    }
    let marker_len = utf16_len(TRUNCATION_MARKER);
    if max <= marker_len {
        // No room for the marker: a hard cut.
        let mut used = 0;
        let cut: String = text
            .chars()
            .take_while(|c| {
                used += c.len_utf16();
                used <= max
            })
            .collect();
        return Cow::Owned(cut);
    }
    let budget = max - marker_len;
    let mut used = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        if used + c.len_utf16() > budget {
            break;
        }
        used += c.len_utf16();
        end = i + c.len_utf8();
    }
    Cow::Owned(format!("{}{TRUNCATION_MARKER}", text[..end].trim_end()))
}

/// Keeps a `blocks` value within Slack's limits, whoever rendered it.
///
/// Accepts an array of blocks or an object with a `blocks` array (returned as the array).
/// More than 50 blocks: the first 49 are kept and the 50th is a context block saying how
/// many were left out. Section text, section fields (count and length), header text,
/// context texts and `block_id`s are cut to their limits, text ending in
/// [`TRUNCATION_MARKER`]. Anything that is not a block array becomes an empty array.
pub fn enforce_limits(blocks: Value) -> Value {
    let mut blocks = match blocks {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("blocks") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    if blocks.len() > MAX_BLOCKS {
        let dropped = blocks.len() - (MAX_BLOCKS - 1);
        blocks.truncate(MAX_BLOCKS - 1);
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("… {dropped} more block(s) truncated")}],
        }));
    }
    for block in &mut blocks {
        limit_block(block);
    }
    Value::Array(blocks)
}

fn limit_text_at(obj: &mut Value, max: usize) {
    if let Some(Value::String(s)) = obj.get_mut("text")
        && utf16_len(s) > max
    {
        *s = truncate_marked(s, max).into_owned();
    }
}

fn limit_block(block: &mut Value) {
    let kind = block
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if let Some(Value::String(id)) = block.get("block_id")
        && utf16_len(id) > MAX_BLOCK_ID
        && let Some(o) = block.as_object_mut()
    {
        o.remove("block_id");
    }
    match kind.as_str() {
        "section" => {
            if let Some(t) = block.get_mut("text") {
                limit_text_at(t, MAX_SECTION_TEXT);
            }
            if let Some(Value::Array(fields)) = block.get_mut("fields") {
                if fields.len() > MAX_FIELDS {
                    fields.truncate(MAX_FIELDS - 1);
                    fields.push(json!({"type": "mrkdwn", "text": TRUNCATION_MARKER}));
                }
                for f in fields {
                    limit_text_at(f, MAX_FIELD_TEXT);
                }
            }
        }
        "header" => {
            if let Some(t) = block.get_mut("text") {
                limit_text_at(t, MAX_HEADER_TEXT);
            }
        }
        "context" => {
            if let Some(Value::Array(elements)) = block.get_mut("elements") {
                for e in elements {
                    limit_text_at(e, MAX_CONTEXT_TEXT);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ml_core::record::BusinessFields;

    use super::*;

    fn invoice() -> Record {
        Record::new(
            "SapEcc(PRD,100)",
            EntityKind::SupplierInvoice,
            "5100000001",
            jiff::Timestamp::UNIX_EPOCH,
        )
        .with_fields(BusinessFields {
            document_number: Some("INV-7".into()),
            supplier: Some("Müller & Söhne <GmbH>".into()),
            amount: Some(Money::parse("1200.5", "EUR").expect("m")),
            gl_account: Some("400000".into()),
            cost_center: Some("CC-10".into()),
            status: Some("Approved".into()),
            lines: vec![Line {
                number: "10".into(),
                description: Some("Bolts".into()),
                quantity: Some(rust_decimal::Decimal::new(5, 0)),
                amount: Some(Money::parse("100", "EUR").expect("m")),
                gl_account: Some("400000".into()),
                cost_center: Some("CC-10".into()),
                material: None,
            }],
            ..BusinessFields::default()
        })
        .with_link("https://erp.example.com/inv?id=7|x")
    }

    fn texts(v: &Value) -> String {
        v.to_string()
    }

    #[test]
    fn invoice_layout() {
        let r = BlockKitRenderer::new().render(&invoice(), &Destination::new("slack", "#ap"));
        let blocks = r.body.expect("blocks");
        let arr = blocks.as_array().expect("array");
        assert_eq!(arr[0]["type"], "header");
        assert_eq!(arr[0]["text"]["text"], "Supplier invoice INV-7");
        let fields = arr[1]["fields"].as_array().expect("fields");
        assert_eq!(
            fields[0]["text"],
            "*Supplier*\nMüller &amp; Söhne &lt;GmbH&gt;"
        );
        assert_eq!(fields[1]["text"], "*Amount*\n1,200.50 EUR");
        assert_eq!(fields[2]["text"], "*Invoice number*\nINV-7");
        assert!(texts(&arr[2]).contains("Invoice lines"));
        assert!(texts(&arr[2]).contains("• 10 Bolts × 5 — 100.00 EUR — GL 400000, CC CC-10"));
        let ctx = arr[3]["elements"][0]["text"].as_str().expect("ctx");
        assert!(
            ctx.starts_with(
                "Source: SapEcc(PRD,100) · <https://erp.example.com/inv?id=7%7Cx|Open in source>"
            ),
            "{ctx}"
        );
        assert!(r.text.starts_with("Supplier invoice INV-7\nSupplier: Müller &amp; Söhne &lt;GmbH&gt;\nAmount: 1,200.50 EUR"), "{}", r.text);
        assert_eq!(r.subject.as_deref(), Some("Supplier invoice INV-7"));
    }

    #[test]
    fn line_detail_per_destination() {
        let finance = Destination::new("slack", "#finance");
        let procurement = Destination::new("slack", "#procurement");
        let r = BlockKitRenderer::lines_for([finance.clone()]);
        let with = r.render(&invoice(), &finance);
        let blocks = texts(with.body.as_ref().expect("b"));
        assert!(blocks.contains("Invoice lines"), "{blocks}");
        assert!(blocks.contains("GL 400000, CC CC-10"), "{blocks}");
        assert!(with.text.contains("1 line(s)"), "{}", with.text);
        let without = r.render(&invoice(), &procurement);
        let b = without.body.expect("b");
        assert!(!texts(&b).contains("Invoice lines"), "{b}");
        assert!(!without.text.contains("line(s)"), "{}", without.text);
        // Supplier and amount stay; the header-level fields are not the lines section.
        assert_eq!(b[1]["fields"][1]["text"], "*Amount*\n1,200.50 EUR");
        assert_eq!(b.as_array().expect("a").len(), 3, "header, fields, context");
        // Default: every destination; None: no destination; a channel id is not the name.
        let all = BlockKitRenderer::new().render(&invoice(), &procurement);
        assert!(texts(all.body.as_ref().expect("b")).contains("Invoice lines"));
        let none = BlockKitRenderer::new()
            .with_line_detail(LineDetail::None)
            .render(&invoice(), &finance);
        assert!(!texts(none.body.as_ref().expect("b")).contains("Invoice lines"));
        assert!(
            !r.line_detail()
                .shows(&Destination::new("slack", "C0FINANCE"))
        );
        assert!(!r.line_detail().shows(&Destination::new("sms", "#finance")));
    }

    #[test]
    fn mentions_and_bad_links_are_neutralised() {
        let mut r = invoice();
        r.fields.supplier = Some("<!channel> pay now".into());
        r.link = Some("javascript:alert(1)".into());
        let out = BlockKitRenderer::new().render(&r, &Destination::new("slack", "#ap"));
        let all = format!("{} {}", out.text, texts(out.body.as_ref().expect("b")));
        assert!(!all.contains("<!channel>"), "{all}");
        assert!(!all.contains("javascript"), "{all}");
    }

    #[test]
    fn kinds_order_their_fields() {
        let mut r = invoice();
        r.kind = EntityKind::GlJournal;
        let out = BlockKitRenderer::new().render(&r, &Destination::new("slack", "#gl"));
        let b = out.body.expect("b");
        assert_eq!(b[1]["fields"][0]["text"], "*Journal*\nINV-7");
        assert!(texts(&b[2]).contains("Journal lines"));
        r.kind = EntityKind::PurchaseOrder;
        let out = BlockKitRenderer::new().render(&r, &Destination::new("slack", "#po"));
        let b = out.body.expect("b");
        assert_eq!(b[1]["fields"][2]["text"], "*PO number*\nINV-7");
        assert!(texts(&b[2]).contains("PO lines"));
    }

    #[test]
    fn extras_fill_up_to_ten_fields() {
        let mut r = invoice();
        let mut extra = BTreeMap::new();
        for i in 0..20 {
            extra.insert(format!("extra_{i:02}"), format!("v{i}"));
        }
        r.fields.extra = extra;
        let out = BlockKitRenderer::new().render(&r, &Destination::new("slack", "#ap"));
        let b = out.body.expect("b");
        assert_eq!(b[1]["fields"].as_array().expect("f").len(), MAX_FIELDS);
        assert_eq!(b[1]["fields"][6]["text"], "*Extra 00*\nv0");
    }

    #[test]
    fn long_content_is_truncated_and_marked() {
        let mut r = invoice();
        r.fields.supplier = Some("x".repeat(5000));
        r.fields.document_number = Some("N".repeat(400));
        r.fields.lines = (0..500)
            .map(|i| Line {
                number: format!("{i}"),
                description: Some("a fairly long description of the line".into()),
                ..Line::default()
            })
            .collect();
        let out = BlockKitRenderer::new().render(&r, &Destination::new("slack", "#ap"));
        let b = out.body.expect("b");
        let header = b[0]["text"]["text"].as_str().expect("h");
        assert!(utf16_len(header) <= MAX_HEADER_TEXT && header.ends_with(TRUNCATION_MARKER));
        let f0 = b[1]["fields"][0]["text"].as_str().expect("f");
        assert!(utf16_len(f0) <= MAX_FIELD_TEXT && f0.ends_with(TRUNCATION_MARKER));
        let lines = b[2]["text"]["text"].as_str().expect("l");
        assert!(utf16_len(lines) <= MAX_SECTION_TEXT, "{}", utf16_len(lines));
        assert!(lines.contains("more line(s)"), "{lines}");
        assert!(utf16_len(&out.text) <= MAX_TEXT);
    }

    #[test]
    fn enforce_limits_on_foreign_blocks() {
        let many: Vec<Value> = (0..80)
            .map(|i| json!({"type":"section","text":{"type":"mrkdwn","text":format!("b{i} {}", "é".repeat(4000))}, "block_id": "i".repeat(300)}))
            .collect();
        let out = enforce_limits(json!({ "blocks": many }));
        let arr = out.as_array().expect("arr");
        assert_eq!(arr.len(), MAX_BLOCKS);
        assert!(
            arr[49]["elements"][0]["text"]
                .as_str()
                .expect("t")
                .contains("31 more block(s)")
        );
        for b in &arr[..49] {
            let t = b["text"]["text"].as_str().expect("t");
            assert!(utf16_len(t) <= MAX_SECTION_TEXT);
            assert!(t.ends_with(TRUNCATION_MARKER));
            assert!(b.get("block_id").is_none());
        }
        let fields: Vec<Value> = (0..12)
            .map(|i| json!({"type":"mrkdwn","text": format!("{i}")}))
            .collect();
        let out = enforce_limits(json!([{"type":"section","fields": fields}]));
        assert_eq!(out[0]["fields"].as_array().expect("f").len(), MAX_FIELDS);
        assert_eq!(enforce_limits(json!("nope")), json!([]));
    }

    #[test]
    fn truncation_counts_utf16_and_respects_boundaries() {
        assert_eq!(truncate_marked("short", 10), "short");
        let emoji = "😀".repeat(100); // 200 UTF-16 units
        let t = truncate_marked(&emoji, 50);
        assert!(utf16_len(&t) <= 50);
        assert!(t.ends_with(TRUNCATION_MARKER));
        assert_eq!(truncate_marked("abcdef", 3), "abc");
        assert_eq!(escape("a<b>&c"), "a&lt;b&gt;&amp;c");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(humanize("buyer_email"), "Buyer email");
    }
}
