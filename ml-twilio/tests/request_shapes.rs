//! Every request the sinks send is checked against the OpenAPI specs in `shared/specs`
//! (beside the workspace): the Twilio `CreateMessage` form parameters exist and the
//! required ones (and the `x-twilio.conditional` one-of groups) are present; the SendGrid
//! mail-send body satisfies the schema's required properties and known property names.

mod common;

use std::path::PathBuf;

use ml_core::sink::{Destination, Sink as _};
use ml_sandbox::sendgrid::SendGridEmulator;
use ml_sandbox::twilio::TwilioEmulator;
use serde_json::Value;

use common::{builder, outbound, po};

fn spec(name: &str) -> Value {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/specs")).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): the specs live in shared/specs beside the workspace checkout",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("spec JSON")
}

fn resolve<'a>(root: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => {
            let mut cur = root;
            for part in r.trim_start_matches("#/").split('/') {
                cur = &cur[part];
            }
            resolve(root, cur)
        }
        None => v,
    }
}

/// Checks `value` against `schema` for required properties, known property names (where
/// the schema lists them and allows nothing else), types of objects/arrays/strings and
/// `maxItems`. Returns the problems found.
fn check(root: &Value, schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let schema = resolve(root, schema);
    match schema["type"].as_str() {
        Some("object") => {
            let Some(obj) = value.as_object() else {
                out.push(format!("{path}: not an object"));
                return;
            };
            for r in schema["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap_or_default();
                if !obj.contains_key(r) {
                    out.push(format!("{path}.{r}: required"));
                }
            }
            if let Some(props) = schema["properties"].as_object() {
                for (k, v) in obj {
                    match props.get(k) {
                        Some(s) => check(root, s, v, &format!("{path}.{k}"), out),
                        None if schema["additionalProperties"].is_object()
                            || schema["additionalProperties"] == true => {}
                        None => out.push(format!("{path}.{k}: not in the spec")),
                    }
                }
            }
        }
        Some("array") => {
            let Some(items) = value.as_array() else {
                out.push(format!("{path}: not an array"));
                return;
            };
            if let Some(max) = schema["maxItems"].as_u64()
                && items.len() as u64 > max
            {
                out.push(format!("{path}: more than {max} items"));
            }
            for (i, it) in items.iter().enumerate() {
                check(root, &schema["items"], it, &format!("{path}[{i}]"), out);
            }
        }
        Some("string") if !value.is_string() => out.push(format!("{path}: not a string")),
        _ => {}
    }
}

#[tokio::test]
async fn twilio_requests_match_create_message() {
    let spec = spec("twilio_api_v2010.json");
    let path = &spec["paths"]["/2010-04-01/Accounts/{AccountSid}/Messages.json"];
    let op = &path["post"];
    assert_eq!(op["operationId"], "CreateMessage");
    let schema = &op["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"];
    let props = schema["properties"].as_object().expect("properties");
    let required: Vec<&str> = schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let conditional = op["x-twilio"]["conditional"]
        .as_array()
        .expect("conditional");
    let list_params: Vec<&str> = path["get"]["parameters"]
        .as_array()
        .expect("params")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();

    let tw = TwilioEmulator::start().await.expect("twilio");
    let by_from = builder(&tw, None)
        .with_status_callback_url("https://hooks.example.com/twilio/status")
        .build_sms()
        .expect("sms");
    let by_service = builder(&tw, None)
        .with_from("")
        .with_messaging_service_sid("MG0123456789abcdef0123456789abcdef")
        .build_sms()
        .expect("sms");
    for sink in [&by_from, &by_service] {
        let msg = outbound(
            sink,
            5,
            Destination::new("sms", "+4915112345678"),
            &po("1", 0),
        );
        let form = sink.form_for(&msg).expect("form");
        let names: Vec<&str> = form.iter().map(|(k, _)| *k).collect();
        for n in &names {
            assert!(
                props.contains_key(*n),
                "`{n}` is not a CreateMessage parameter"
            );
        }
        for r in &required {
            assert!(names.contains(r), "required `{r}` missing");
        }
        for group in conditional {
            // snake_case in x-twilio; PascalCase on the wire.
            let wire: Vec<String> = group
                .as_array()
                .expect("group")
                .iter()
                .filter_map(Value::as_str)
                .map(|s| {
                    s.split('_')
                        .map(|w| {
                            let mut c = w.chars();
                            c.next()
                                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                                .unwrap_or_default()
                        })
                        .collect::<String>()
                })
                .collect();
            assert!(
                wire.iter().any(|w| names.contains(&w.as_str())),
                "none of {wire:?} present in {names:?}"
            );
        }
        // And the emulator (strict like Twilio) accepts it.
        sink.send(&msg).await.expect("accepted");
    }
    // The reconcile query uses only list parameters of the spec.
    for p in ["To", "From", "PageSize"] {
        assert!(
            list_params.contains(&p),
            "{p} is not a Messages list parameter"
        );
    }
}

#[tokio::test]
async fn sendgrid_bodies_match_mail_send() {
    let spec = spec("sendgrid_mail_v3.json");
    let rb = resolve(
        &spec,
        &spec["paths"]["/v3/mail/send"]["post"]["requestBody"],
    );
    let schema = &rb["content"]["application/json"]["schema"];
    let tw = TwilioEmulator::start().await.expect("twilio");
    let sg = SendGridEmulator::start().await.expect("sendgrid");
    for sandbox_mode in [false, true] {
        let email = builder(&tw, Some(&sg))
            .with_sendgrid_from_name("ERP")
            .with_sendgrid_sandbox_mode(sandbox_mode)
            .build_email()
            .expect("email");
        let msg = outbound(
            &email,
            9,
            Destination::new("email", "ap@example.com"),
            &po("2", 0),
        );
        let body = email.body_for(&msg).expect("body");
        let mut problems = Vec::new();
        check(&spec, schema, &body, "body", &mut problems);
        assert!(problems.is_empty(), "{problems:#?}\n{body:#}");
        email.send(&msg).await.expect("accepted");
    }
    // The checker does catch a broken body.
    let mut problems = Vec::new();
    check(
        &spec,
        schema,
        &serde_json::json!({"personalizations": [{"to": [{}]}], "bogus": 1}),
        "body",
        &mut problems,
    );
    assert!(problems.iter().any(|p| p.contains("from")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("bogus")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("email")), "{problems:?}");
}
