//! Block Kit validation for messages, with Slack's limits.
//!
//! Problems are reported the way Slack reports them in `response_metadata.messages`:
//! `"[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]"`.

use serde_json::{Map, Value};

/// Most blocks in one message.
pub(crate) const MAX_BLOCKS: usize = 50;
/// Longest section `text`.
pub(crate) const MAX_SECTION_TEXT: usize = 3000;
/// Most section `fields`.
pub(crate) const MAX_FIELDS: usize = 10;
/// Longest section field.
pub(crate) const MAX_FIELD_TEXT: usize = 2000;
/// Longest header text.
pub(crate) const MAX_HEADER_TEXT: usize = 150;
/// Longest `block_id` / `action_id`.
pub(crate) const MAX_ID: usize = 255;

/// Block types Slack accepts in messages.
const KNOWN_TYPES: &[&str] = &[
    "actions",
    "context",
    "divider",
    "file",
    "header",
    "image",
    "input",
    "markdown",
    "rich_text",
    "section",
    "table",
    "video",
];

/// Why blocks were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BlocksError {
    /// Not a JSON array of objects: `invalid_blocks_format`.
    Format,
    /// Valid JSON that breaks Block Kit rules: `invalid_blocks`, with the explanations.
    Invalid(Vec<String>),
}

/// Parses `blocks` (an array, or a string holding one as in form posts) and checks it.
pub(crate) fn parse_and_validate(raw: &Value) -> Result<Value, BlocksError> {
    let value = match raw {
        Value::String(s) => serde_json::from_str(s).map_err(|_| BlocksError::Format)?,
        other => other.clone(),
    };
    let Value::Array(blocks) = &value else {
        return Err(BlocksError::Format);
    };
    if blocks.iter().any(|b| !b.is_object()) {
        return Err(BlocksError::Format);
    }
    let mut errors = Vec::new();
    if blocks.len() > MAX_BLOCKS {
        errors.push(error(
            &format!("no more than {MAX_BLOCKS} items allowed"),
            "/blocks",
        ));
    }
    let mut seen_ids = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        if let Value::Object(block) = block {
            check_block(block, &format!("/blocks/{i}"), &mut seen_ids, &mut errors);
        }
    }
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(BlocksError::Invalid(errors))
    }
}

fn error(message: &str, pointer: &str) -> String {
    format!("[ERROR] {message} [json-pointer:{pointer}]")
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn too_long(max: usize) -> String {
    format!("must be less than {} characters", max + 1)
}

fn check_block(
    block: &Map<String, Value>,
    at: &str,
    seen_ids: &mut Vec<String>,
    errors: &mut Vec<String>,
) {
    if let Some(id) = block.get("block_id") {
        match id.as_str() {
            Some(id) if chars(id) > MAX_ID => {
                errors.push(error(&too_long(MAX_ID), &format!("{at}/block_id")));
            }
            Some(id) if seen_ids.iter().any(|s| s == id) => {
                errors.push(error(
                    &format!("duplicate block_id `{id}`"),
                    &format!("{at}/block_id"),
                ));
            }
            Some(id) => seen_ids.push(id.to_owned()),
            None => errors.push(error("must be a string", &format!("{at}/block_id"))),
        }
    }
    let Some(kind) = block.get("type").and_then(Value::as_str) else {
        errors.push(error("missing required field: type", at));
        return;
    };
    if !KNOWN_TYPES.contains(&kind) {
        errors.push(error(
            &format!("unsupported type: {kind}"),
            &format!("{at}/type"),
        ));
        return;
    }
    match kind {
        "section" => check_section(block, at, errors),
        "header" => match block.get("text") {
            None => errors.push(error("missing required field: text", at)),
            Some(text) => {
                check_text_object(text, &format!("{at}/text"), MAX_HEADER_TEXT, true, errors);
            }
        },
        "context" => check_elements(block, at, 10, errors),
        "actions" => check_elements(block, at, 25, errors),
        "image" => {
            if !block.contains_key("image_url") && !block.contains_key("slack_file") {
                errors.push(error("missing required field: image_url", at));
            }
            match block.get("alt_text").and_then(Value::as_str) {
                None => errors.push(error("missing required field: alt_text", at)),
                Some(alt) if chars(alt) > 2000 => {
                    errors.push(error(&too_long(2000), &format!("{at}/alt_text")));
                }
                Some(_) => {}
            }
        }
        "markdown" => match block.get("text").and_then(Value::as_str) {
            None => errors.push(error("missing required field: text", at)),
            Some(t) if chars(t) > 12_000 => {
                errors.push(error(&too_long(12_000), &format!("{at}/text")));
            }
            Some(_) => {}
        },
        _ => {}
    }
}

fn check_section(block: &Map<String, Value>, at: &str, errors: &mut Vec<String>) {
    let text = block.get("text");
    let fields = block.get("fields");
    if text.is_none() && fields.is_none() {
        errors.push(error("must provide either text or fields", at));
    }
    if let Some(text) = text {
        check_text_object(text, &format!("{at}/text"), MAX_SECTION_TEXT, false, errors);
    }
    if let Some(fields) = fields {
        let Some(fields) = fields.as_array() else {
            errors.push(error("must be an array", &format!("{at}/fields")));
            return;
        };
        if fields.len() > MAX_FIELDS {
            errors.push(error(
                &format!("no more than {MAX_FIELDS} items allowed"),
                &format!("{at}/fields"),
            ));
        }
        if fields.is_empty() {
            errors.push(error(
                "must provide at least 1 item",
                &format!("{at}/fields"),
            ));
        }
        for (i, field) in fields.iter().enumerate() {
            check_text_object(
                field,
                &format!("{at}/fields/{i}"),
                MAX_FIELD_TEXT,
                false,
                errors,
            );
        }
    }
}

fn check_elements(block: &Map<String, Value>, at: &str, max: usize, errors: &mut Vec<String>) {
    let Some(elements) = block.get("elements").and_then(Value::as_array) else {
        errors.push(error("missing required field: elements", at));
        return;
    };
    if elements.is_empty() {
        errors.push(error(
            "must provide at least 1 item",
            &format!("{at}/elements"),
        ));
    }
    if elements.len() > max {
        errors.push(error(
            &format!("no more than {max} items allowed"),
            &format!("{at}/elements"),
        ));
    }
    for (i, element) in elements.iter().enumerate() {
        let here = format!("{at}/elements/{i}");
        let Some(element) = element.as_object() else {
            errors.push(error("must be an object", &here));
            continue;
        };
        if let Some(id) = element.get("action_id").and_then(Value::as_str)
            && chars(id) > MAX_ID
        {
            errors.push(error(&too_long(MAX_ID), &format!("{here}/action_id")));
        }
        if element.get("type").and_then(Value::as_str) == Some("button") {
            match element.get("text") {
                None => errors.push(error("missing required field: text", &here)),
                Some(text) => check_text_object(text, &format!("{here}/text"), 75, true, errors),
            }
            if let Some(value) = element.get("value").and_then(Value::as_str)
                && chars(value) > 2000
            {
                errors.push(error(&too_long(2000), &format!("{here}/value")));
            }
        }
    }
}

/// A composition text object: `{"type": "plain_text"|"mrkdwn", "text": "..."}`.
fn check_text_object(
    value: &Value,
    at: &str,
    max: usize,
    plain_only: bool,
    errors: &mut Vec<String>,
) {
    let Some(object) = value.as_object() else {
        errors.push(error("must be an object", at));
        return;
    };
    match object.get("type").and_then(Value::as_str) {
        Some("plain_text") => {}
        Some("mrkdwn") if !plain_only => {}
        Some(other) => errors.push(error(
            &format!("unsupported type: {other}"),
            &format!("{at}/type"),
        )),
        None => errors.push(error("missing required field: type", at)),
    }
    match object.get("text").and_then(Value::as_str) {
        None => errors.push(error("missing required field: text", at)),
        Some("") => errors.push(error(
            "must be more than 0 characters",
            &format!("{at}/text"),
        )),
        Some(t) if chars(t) > max => errors.push(error(&too_long(max), &format!("{at}/text"))),
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn section(text: &str) -> Value {
        json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    }

    #[test]
    fn accepts_a_typical_message() {
        let blocks = json!([
            {"type": "header", "text": {"type": "plain_text", "text": "Invoice INV-1"}},
            section("*Amount:* 1,200.00 EUR"),
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "a"}, {"type": "plain_text", "text": "b"}]},
            {"type": "divider"},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "from SAP"}]},
            {"type": "actions", "block_id": "act", "elements": [
                {"type": "button", "action_id": "approve", "text": {"type": "plain_text", "text": "Approve"}, "value": "INV-1"}
            ]},
        ]);
        assert!(parse_and_validate(&blocks).is_ok());
        assert!(parse_and_validate(&Value::String(blocks.to_string())).is_ok());
    }

    #[test]
    fn refuses_what_slack_refuses() {
        let invalid = |v: Value| match parse_and_validate(&v) {
            Err(BlocksError::Invalid(m)) => m,
            other => panic!("expected invalid_blocks, got {other:?}"),
        };
        let m = invalid(Value::Array(vec![json!({"type": "divider"}); 51]));
        assert!(m[0].contains("no more than 50"), "{m:?}");
        let m = invalid(json!([section(&"x".repeat(3001))]));
        assert_eq!(
            m,
            vec!["[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]"]
        );
        assert!(parse_and_validate(&json!([section(&"x".repeat(3000))])).is_ok());
        let fields: Vec<Value> = (0..11)
            .map(|_| json!({"type": "mrkdwn", "text": "f"}))
            .collect();
        invalid(json!([{"type": "section", "fields": fields}]));
        invalid(
            json!([{"type": "section", "fields": [{"type": "mrkdwn", "text": "x".repeat(2001)}]}]),
        );
        invalid(
            json!([{"type": "header", "text": {"type": "plain_text", "text": "x".repeat(151)}}]),
        );
        invalid(json!([{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}]));
        invalid(json!([{"type": "divider", "block_id": "x".repeat(256)}]));
        invalid(
            json!([{"type": "divider", "block_id": "a"}, {"type": "divider", "block_id": "a"}]),
        );
        invalid(json!([{"type": "carousel"}]));
        invalid(json!([{"text": "no type"}]));
        assert_eq!(
            parse_and_validate(&json!("[not json")),
            Err(BlocksError::Format)
        );
        assert_eq!(
            parse_and_validate(&json!({"type": "divider"})),
            Err(BlocksError::Format)
        );
        assert_eq!(parse_and_validate(&json!([1])), Err(BlocksError::Format));
    }
}
