//! The requests `SlackSink` sends are valid against the shapes in `shared/apis/slack.md`
//! and, where it applies, the Web API spec (`shared/specs/slack_web_openapi_v2.json`):
//! every argument is one the method knows (the spec's, plus `metadata` and
//! `include_all_metadata`, which the 2021 spec predates), required ones are present, JSON
//! bodies carry `Content-Type: application/json; charset=utf-8` and the token only in
//! `Authorization: Bearer` (never in the body), and Block Kit stays within its limits.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::routing::any;
use ml_core::sink::{Receipt, Sink};
use ml_sandbox::server::Server;
use ml_slack::{SlackBuilder, UpdateMode};
use serde_json::{Value, json};

#[derive(Clone, Debug)]
struct Captured {
    method: Method,
    api: String,
    headers: HeaderMap,
    query: Option<String>,
    body: Bytes,
}

type Log = Arc<Mutex<Vec<Captured>>>;

async fn capture(
    State(log): State<Log>,
    Path(api): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> axum::Json<Value> {
    let answer = match api.as_str() {
        "chat.postMessage" | "chat.update" => {
            json!({"ok": true, "channel": "C0CAPTURE1", "ts": "1800000000.000100", "text": "x", "message": {"text": "x"}})
        }
        "auth.test" => {
            json!({"ok": true, "url": "https://x.slack.com/", "team": "x", "user": "bot", "team_id": "T0CAPTURE", "user_id": "U0BOT"})
        }
        _ => json!({"ok": true, "messages": [], "has_more": false}),
    };
    log.lock().expect("lock").push(Captured {
        method,
        api,
        headers,
        query,
        body,
    });
    axum::Json(answer)
}

/// Each method's arguments: from the spec when it is beside the workspace, else the same
/// lists as recorded here (checked against the spec whenever it is present).
fn known_args() -> HashMap<&'static str, BTreeSet<String>> {
    let recorded: [(&str, &[&str]); 5] = [
        (
            "chat.postMessage",
            &[
                "as_user",
                "attachments",
                "blocks",
                "channel",
                "icon_emoji",
                "icon_url",
                "link_names",
                "mrkdwn",
                "parse",
                "reply_broadcast",
                "text",
                "thread_ts",
                "unfurl_links",
                "unfurl_media",
                "username",
            ],
        ),
        (
            "chat.update",
            &[
                "as_user",
                "attachments",
                "blocks",
                "channel",
                "link_names",
                "parse",
                "text",
                "ts",
            ],
        ),
        (
            "conversations.history",
            &[
                "channel",
                "latest",
                "oldest",
                "inclusive",
                "limit",
                "cursor",
            ],
        ),
        (
            "conversations.replies",
            &[
                "channel",
                "ts",
                "latest",
                "oldest",
                "inclusive",
                "limit",
                "cursor",
            ],
        ),
        ("auth.test", &[]),
    ];
    let mut out: HashMap<&'static str, BTreeSet<String>> = recorded
        .iter()
        .map(|(m, a)| (*m, a.iter().map(|s| (*s).to_owned()).collect()))
        .collect();
    let spec_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/specs/slack_web_openapi_v2.json"
    );
    match std::fs::read_to_string(spec_path) {
        Ok(text) => {
            let spec: Value = serde_json::from_str(&text).expect("spec");
            for (method, args) in &out {
                let op = spec["paths"][format!("/{method}")]
                    .as_object()
                    .and_then(|o| o.values().next())
                    .expect("method in spec");
                let from_spec: BTreeSet<String> = op["parameters"]
                    .as_array()
                    .expect("params")
                    .iter()
                    .map(|p| p["name"].as_str().expect("name").to_owned())
                    .filter(|n| n != "token")
                    .collect();
                assert_eq!(
                    &from_spec, args,
                    "{method}: recorded arguments differ from the spec"
                );
            }
        }
        Err(_) => eprintln!("note: {spec_path} not found; using the recorded argument lists"),
    }
    // Newer than the 2021 spec, documented in slack.md.
    for m in ["chat.postMessage", "chat.update"] {
        out.get_mut(m).expect("m").insert("metadata".into());
    }
    for m in ["conversations.history", "conversations.replies"] {
        out.get_mut(m)
            .expect("m")
            .insert("include_all_metadata".into());
    }
    out
}

fn check_json_post(c: &Captured, args: &BTreeSet<String>, required: &[&str]) -> Value {
    assert_eq!(c.method, Method::POST, "{}", c.api);
    assert_eq!(c.headers["content-type"], "application/json; charset=utf-8");
    let auth = c.headers["authorization"].to_str().expect("ascii");
    assert!(auth.starts_with("Bearer xoxb-"), "{auth}");
    let body: Value = serde_json::from_slice(&c.body).expect("a JSON body");
    let obj = body.as_object().expect("an object");
    for k in obj.keys() {
        assert!(args.contains(k), "{}: unknown argument `{k}`", c.api);
    }
    assert!(
        !obj.contains_key("token"),
        "the token never goes in the body"
    );
    for r in required {
        assert!(obj.contains_key(*r), "{}: `{r}` is required", c.api);
    }
    body
}

fn check_content(body: &Value) {
    let text = body["text"].as_str().expect("text is always sent");
    assert!(!text.trim().is_empty());
    assert!(
        body.get("markdown_text").is_none(),
        "markdown_text conflicts with text"
    );
    if let Some(blocks) = body.get("blocks") {
        let blocks = blocks.as_array().expect("blocks is a JSON array");
        assert!(!blocks.is_empty() && blocks.len() <= 50);
        for b in blocks {
            let kind = b["type"].as_str().expect("type");
            assert!(
                ["header", "section", "context", "divider", "actions"].contains(&kind),
                "{kind}"
            );
            if kind == "section" {
                if let Some(t) = b["text"]["text"].as_str() {
                    assert!(t.chars().count() <= 3000);
                }
                if let Some(f) = b["fields"].as_array() {
                    assert!(f.len() <= 10);
                    for x in f {
                        assert_eq!(x["type"], "mrkdwn");
                        assert!(x["text"].as_str().expect("t").chars().count() <= 2000);
                    }
                }
            }
            if kind == "header" {
                assert_eq!(b["text"]["type"], "plain_text");
                assert!(b["text"]["text"].as_str().expect("t").chars().count() <= 150);
            }
        }
    }
}

fn check_metadata(body: &Value, delivery_id: i64) {
    let meta = &body["metadata"];
    assert_eq!(meta["event_type"], "ml_connector_delivery");
    let payload = meta["event_payload"].as_object().expect("payload object");
    assert_eq!(payload["delivery_id"], delivery_id);
    for (k, v) in payload {
        assert!(v.is_string() || v.is_number(), "flat payload: {k}");
    }
}

#[tokio::test]
async fn requests_match_the_documented_shapes() {
    let log: Log = Arc::default();
    let router = axum::Router::new()
        .route("/api/{api}", any(capture))
        .with_state(log.clone());
    let server = Server::start(router).await.expect("server");
    let base = format!("{}api/", server.base_url());
    let args = known_args();

    let sink = SlackBuilder::new()
        .with_bot_token("xoxb-capture")
        .with_api_url(&base)
        .build()
        .expect("sink");
    let editor = SlackBuilder::new()
        .with_bot_token("xoxb-capture")
        .with_api_url(&base)
        .with_update_mode(UpdateMode::ThreadBroadcast)
        .build()
        .expect("sink");
    let record = common::invoice("7", "Validated", 0);
    let first = common::outbound(&sink, 1, "#procurement", &record);
    let receipt = sink.send(&first).await.expect("post");
    let mut reply = common::outbound(&editor, 2, "#procurement", &record);
    reply.thread = Some(Receipt::new("1800000000.000100").with_scope("C0CAPTURE1"));
    editor.send(&reply).await.expect("reply");
    let edit_sink = SlackBuilder::new()
        .with_bot_token("xoxb-capture")
        .with_api_url(&base)
        .with_update_mode(UpdateMode::Edit)
        .build()
        .expect("sink");
    let mut edit = common::outbound(&edit_sink, 3, "#procurement", &record);
    edit.thread = Some(receipt.clone());
    edit_sink.send(&edit).await.expect("edit");
    sink.reconcile(&reply).await.expect("reconcile reply");
    sink.reconcile(&first).await.expect("reconcile");
    sink.healthcheck().await.expect("auth.test");

    let log = log.lock().expect("lock").clone();
    let apis: Vec<&str> = log.iter().map(|c| c.api.as_str()).collect();
    assert_eq!(
        apis,
        [
            "chat.postMessage",
            "chat.postMessage",
            "chat.update",
            "conversations.replies",
            "conversations.history",
            "auth.test"
        ]
    );

    let post = check_json_post(&log[0], &args["chat.postMessage"], &["channel", "text"]);
    assert_eq!(post["channel"], "#procurement");
    check_content(&post);
    check_metadata(&post, 1);
    assert!(post.get("thread_ts").is_none());

    let reply = check_json_post(
        &log[1],
        &args["chat.postMessage"],
        &["channel", "text", "thread_ts"],
    );
    assert_eq!(reply["channel"], "C0CAPTURE1");
    assert_eq!(reply["thread_ts"], "1800000000.000100");
    assert_eq!(reply["reply_broadcast"], true);
    check_content(&reply);
    check_metadata(&reply, 2);

    let update = check_json_post(&log[2], &args["chat.update"], &["channel", "ts", "text"]);
    assert_eq!(update["ts"], receipt.remote_id);
    check_content(&update);
    assert!(
        update.get("metadata").is_none(),
        "an edit keeps the first post's metadata"
    );

    for c in &log[3..] {
        assert_eq!(c.method, Method::GET, "{}", c.api);
        assert!(c.body.is_empty());
        assert!(
            c.headers["authorization"]
                .to_str()
                .expect("a")
                .starts_with("Bearer ")
        );
        let query: Vec<(String, String)> =
            serde_urlencoded::from_str(c.query.as_deref().unwrap_or_default()).expect("query");
        for (k, _) in &query {
            assert!(
                args[c.api.as_str()].contains(k),
                "{}: unknown argument `{k}`",
                c.api
            );
        }
        if c.api.starts_with("conversations.") {
            let q: HashMap<_, _> = query.into_iter().collect();
            assert_eq!(q["channel"], "C0CAPTURE1");
            assert_eq!(q["include_all_metadata"], "true");
            assert!(q["oldest"].parse::<f64>().is_ok());
            assert!(q["limit"].parse::<u32>().expect("limit") <= 999);
            if c.api == "conversations.replies" {
                assert_eq!(q["ts"], "1800000000.000100");
            }
        }
    }
}

async fn list_pages(RawQuery(query): RawQuery, State(log): State<Log>) -> axum::Json<Value> {
    let q: HashMap<String, String> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).expect("query");
    log.lock().expect("lock").push(Captured {
        method: Method::GET,
        api: "conversations.list".into(),
        headers: HeaderMap::new(),
        query: query.clone(),
        body: Bytes::new(),
    });
    axum::Json(match q.get("cursor").map(String::as_str) {
        None => json!({"ok": true, "channels": [{"id": "C0GENERAL1", "name": "general"}],
                        "response_metadata": {"next_cursor": "page2"}}),
        Some("page2") => json!({"ok": true, "channels": [{"id": "C0FINANCE1", "name": "finance"}],
                                "response_metadata": {"next_cursor": ""}}),
        Some(other) => panic!("unexpected cursor {other}"),
    })
}

#[tokio::test]
async fn channel_names_resolve_through_conversations_list() {
    let log: Log = Arc::default();
    let router = axum::Router::new()
        .route("/api/conversations.list", axum::routing::get(list_pages))
        .with_state(log.clone());
    let server = Server::start(router).await.expect("server");
    let sink = SlackBuilder::new()
        .with_bot_token("xoxb-capture")
        .with_api_url(format!("{}api/", server.base_url()))
        .build()
        .expect("sink");
    let finance = ml_core::sink::Destination::new("slack", "#Finance");
    assert_eq!(sink.rate_key(&finance).as_deref(), Some("slack:#finance"));
    let id = sink.resolve_channel("#Finance").await.expect("resolved");
    assert_eq!(id.as_str(), "C0FINANCE1");
    assert_eq!(sink.rate_key(&finance).as_deref(), Some("slack:C0FINANCE1"));
    // Cached: no further calls; an id needs no call at all.
    sink.resolve_channel("finance").await.expect("cached");
    sink.resolve_channel("C0OTHER123").await.expect("an id");
    let err = sink.resolve_channel("#nope").await.expect_err("not found");
    assert_eq!(err.code(), Some("channel_not_found"));
    let calls = log.lock().expect("lock").clone();
    assert_eq!(calls.len(), 4, "two pages, then two pages for #nope");
    let first: HashMap<String, String> =
        serde_urlencoded::from_str(calls[0].query.as_deref().unwrap_or_default()).expect("q");
    assert_eq!(first["types"], "public_channel,private_channel");
    assert_eq!(first["exclude_archived"], "true");
}
