//! Rendering for SMS (one short line) and email (subject, plain text and HTML).

use std::fmt::Write as _;

use ml_core::record::Record;
use ml_core::render::{PlainTextRenderer, Rendered, Renderer as _};
use ml_core::sink::Destination;
use serde_json::json;

/// The SMS line: `<title> - <supplier> - <amount>` (only the parts the record has), with
/// `" - "` as separator because it is GSM-7 (a `|` would cost two septets and `·` would
/// force UCS-2).
pub fn sms_text(record: &Record) -> String {
    let f = &record.fields;
    let mut parts = vec![record.title()];
    if let Some(s) = f.supplier.clone().or_else(|| f.supplier_id.clone()) {
        parts.push(s);
    }
    if let Some(m) = f.amount {
        parts.push(m.to_string());
    }
    if let Some(s) = &f.status {
        parts.push(s.clone());
    }
    let line = parts.join(" - ");
    line.replace(['\n', '\r'], " ")
}

/// Renders a record as an SMS.
pub fn render_sms(record: &Record) -> Rendered {
    Rendered::text(sms_text(record))
}

/// Escapes text for HTML.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders a record as an email: the subject is the title with supplier and amount, the
/// text part is ml-core's plain-text rendering (one line per field), and `body` is
/// `{"html": "…"}` with the same detail as a table (values escaped) and the record's lines.
pub fn render_email(record: &Record, destination: &Destination) -> Rendered {
    let plain = PlainTextRenderer.render(record, destination);
    let subject = sms_text(record);
    let f = &record.fields;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><body><h2>{}</h2><table>",
        html_escape(&record.title())
    );
    for line in plain.text.lines().skip(1) {
        if let Some((label, value)) = line.split_once(": ") {
            let _ = write!(
                html,
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                html_escape(label),
                html_escape(value)
            );
        }
    }
    html.push_str("</table>");
    if !f.lines.is_empty() {
        html.push_str(
            "<table><tr><th>#</th><th>Description</th><th>Quantity</th><th>Amount</th></tr>",
        );
        for l in &f.lines {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html_escape(&l.number),
                html_escape(l.description.as_deref().unwrap_or("")),
                l.quantity.map(|q| q.to_string()).unwrap_or_default(),
                l.amount
                    .map(|a| html_escape(&a.to_string()))
                    .unwrap_or_default()
            );
        }
        html.push_str("</table>");
    }
    if let Some(link) = &record.link {
        let _ = write!(html, "<p><a href=\"{0}\">{0}</a></p>", html_escape(link));
    }
    html.push_str("</body></html>");
    let mut text = plain.text;
    for l in &f.lines {
        let _ = write!(
            text,
            "\nLine {}: {}{}",
            l.number,
            l.description.as_deref().unwrap_or(""),
            l.amount.map(|a| format!(" {a}")).unwrap_or_default()
        );
    }
    Rendered {
        text,
        subject: Some(subject),
        body: Some(json!({ "html": html })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ml_core::money::Money;
    use ml_core::record::{BusinessFields, EntityKind};

    fn po() -> Record {
        Record::new(
            "SapEcc(PRD)",
            EntityKind::PurchaseOrder,
            "4500000001",
            jiff::Timestamp::UNIX_EPOCH,
        )
        .with_fields(BusinessFields {
            document_number: Some("4500000001".into()),
            supplier: Some("Zürich <Präzision> AG".into()),
            amount: Some(Money::parse("1200.5", "CHF").expect("m")),
            ..BusinessFields::default()
        })
    }

    #[test]
    fn sms_is_one_gsm7_line() {
        let t = sms_text(&po());
        assert!(!t.contains('\n'));
        assert!(t.contains("Zürich <Präzision> AG"), "{t}");
        assert!(t.contains("1,200.50 CHF"), "{t}");
        assert_eq!(
            crate::segments::encoding_of(&t),
            crate::segments::Encoding::Gsm7
        );
    }

    #[test]
    fn email_has_subject_text_and_escaped_html() {
        let r = render_email(&po(), &Destination::new("email", "a@example.com"));
        assert!(
            r.subject
                .as_deref()
                .is_some_and(|s| s.contains("4500000001"))
        );
        assert!(r.text.contains("Supplier: Zürich <Präzision> AG"));
        let html = r
            .body
            .as_ref()
            .and_then(|b| b["html"].as_str())
            .expect("html");
        assert!(html.contains("Zürich &lt;Präzision&gt; AG"), "{html}");
        assert!(!html.contains("<Präzision>"));
    }
}
