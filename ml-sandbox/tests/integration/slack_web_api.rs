//! The Slack Web API methods: successes and Slack's error answers.

use std::sync::Arc;
use std::time::Duration;

use ml_core::clock::ManualClock;
use ml_sandbox::slack::{Channel, GENERAL_ID, SlackEmulator};
use serde_json::{Value, json};

use crate::common::{call, call_as, call_form, call_raw, post_many, unlimited};

fn is_slack_ts(ts: &str) -> bool {
    let (secs, micros) = ts.split_once('.').unwrap();
    secs.len() == 10 && micros.len() == 6 && ts.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[tokio::test]
async fn post_message_success_shape_and_storage() {
    let slack = unlimited().await;
    let metadata = json!({"event_type": "invoice_approved", "event_payload": {"id": "INV-1"}});
    let blocks = json!([{"type": "section", "text": {"type": "mrkdwn", "text": "*INV-1*"}}]);
    let r = call(
        &slack,
        "chat.postMessage",
        json!({"channel": GENERAL_ID, "text": "INV-1", "blocks": blocks, "metadata": metadata, "unfurl_links": false}),
    )
    .await;
    let body = r.ok();
    assert!(body.get("warning").is_none(), "{body}");
    assert_eq!(body["channel"], GENERAL_ID);
    let ts = body["ts"].as_str().unwrap();
    assert!(is_slack_ts(ts), "{ts}");
    let message = &body["message"];
    assert_eq!(message["ts"], ts);
    assert_eq!(message["text"], "INV-1");
    assert_eq!(message["type"], "message");
    assert_eq!(message["user"], slack.bot_user_id());
    assert_eq!(message["bot_id"], slack.bot_id());
    assert_eq!(message["blocks"], blocks);
    assert_eq!(message["metadata"], metadata);
    assert_eq!(r.headers["content-type"], "application/json; charset=utf-8");

    let stored = slack.messages("#general");
    assert_eq!(stored.len(), 1);
    let m = &stored[0];
    assert_eq!((m.ts.as_str(), m.text.as_str()), (ts, "INV-1"));
    assert_eq!(m.blocks.as_ref(), Some(&blocks));
    assert_eq!(m.metadata.as_ref(), Some(&metadata));
    assert_eq!(m.args["unfurl_links"], false);
    assert_eq!(m.bot_id.as_deref(), Some(slack.bot_id().as_str()));

    // ts are unique and increasing, also across channels.
    let other = slack.add_channel(Channel::public("alerts"));
    let mut last = ts.to_owned();
    for channel in ["alerts", "#alerts", other.as_str(), "general"] {
        let r = call(
            &slack,
            "chat.postMessage",
            json!({"channel": channel, "text": "x"}),
        )
        .await;
        let ts = r.ok()["ts"].as_str().unwrap().to_owned();
        assert!(ts > last, "{ts} after {last}");
        last = ts;
    }
    assert_eq!(slack.messages(&other).len(), 3);
    assert_eq!(slack.all_messages().len(), 5);
}

#[tokio::test]
async fn content_types_and_charsets() {
    let slack = unlimited().await;
    let r = call_raw(
        &slack,
        "chat.postMessage",
        Some("application/json"),
        r#"{"channel":"general","text":"no charset"}"#,
    )
    .await;
    assert_eq!(r.ok()["warning"], "missing_charset");
    assert_eq!(
        r.body["response_metadata"]["warnings"],
        json!(["missing_charset"])
    );

    let blocks = json!([{"type": "divider"}]).to_string();
    let metadata = json!({"event_type": "t", "event_payload": {}}).to_string();
    let r = call_form(
        &slack,
        "chat.postMessage",
        Some(&slack.bot_token()),
        &[
            ("channel", "general"),
            ("text", "form"),
            ("blocks", &blocks),
            ("metadata", &metadata),
        ],
    )
    .await;
    assert!(r.ok().get("warning").is_none());
    assert_eq!(r.body["message"]["blocks"], json!([{"type": "divider"}]));
    assert_eq!(r.body["message"]["metadata"]["event_type"], "t");

    let r = call_raw(
        &slack,
        "chat.postMessage",
        Some("application/x-www-form-urlencoded; charset=utf-8"),
        "channel=general&text=x",
    )
    .await;
    assert_eq!(r.ok()["warning"], "superfluous_charset");

    // Form token argument instead of the header.
    let r = call_form(
        &slack,
        "chat.postMessage",
        None,
        &[
            ("token", &slack.bot_token()),
            ("channel", "general"),
            ("text", "t"),
        ],
    )
    .await;
    r.ok();
    // ... but not inside a JSON body.
    let r = call_as(
        &slack,
        "chat.postMessage",
        None,
        json!({"token": slack.bot_token(), "channel": "general", "text": "t"}),
    )
    .await;
    assert_eq!(r.error(), "not_authed");

    let cases = [
        (Some("text/plain"), "hello", "invalid_post_type"),
        (None, "hello", "missing_post_type"),
        (
            Some("application/json; charset=utf-8"),
            "{not json",
            "invalid_json",
        ),
        (
            Some("application/json; charset=utf-8"),
            "[1,2]",
            "json_not_object",
        ),
        (
            Some("application/json; charset=latin1"),
            "{}",
            "invalid_charset",
        ),
    ];
    for (ct, body, code) in cases {
        let r = call_raw(&slack, "chat.postMessage", ct, body).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.error(), code, "{ct:?} {body}");
    }
    let r = call(&slack, "chat.nope", json!({})).await;
    assert_eq!(r.error(), "unknown_method");
}

#[tokio::test]
async fn auth_errors() {
    let slack = unlimited().await;
    let body = json!({"channel": "general", "text": "x"});
    assert_eq!(
        call_as(&slack, "chat.postMessage", None, body.clone())
            .await
            .error(),
        "not_authed"
    );
    assert_eq!(
        call_as(
            &slack,
            "chat.postMessage",
            Some("xoxb-1-2-nope"),
            body.clone()
        )
        .await
        .error(),
        "invalid_auth"
    );
    assert_eq!(
        call_as(
            &slack,
            "chat.postMessage",
            Some(&slack.app_token()),
            body.clone()
        )
        .await
        .error(),
        "not_allowed_token_type"
    );
    let second = slack.add_bot_token();
    call_as(&slack, "auth.test", Some(&second), json!({}))
        .await
        .ok();
    assert!(slack.revoke_token(&second));
    assert_eq!(
        call_as(&slack, "auth.test", Some(&second), json!({}))
            .await
            .error(),
        "token_revoked"
    );
    let third = slack.add_bot_token();
    assert!(slack.expire_token(&third));
    assert_eq!(
        call_as(&slack, "chat.postMessage", Some(&third), body)
            .await
            .error(),
        "token_expired"
    );
    assert!(!slack.revoke_token("xoxb-unknown"));
    assert!(slack.messages("general").is_empty());
}

#[tokio::test]
async fn auth_test_shape() {
    let slack = SlackEmulator::builder()
        .team("Acme Corp", "acme")
        .start()
        .await
        .unwrap();
    let r = call(&slack, "auth.test", json!({})).await;
    let b = r.ok();
    assert_eq!(b["url"], "https://acme.slack.com/");
    assert_eq!(b["team"], "Acme Corp");
    assert_eq!(b["team_id"], slack.team_id());
    assert_eq!(b["user_id"], slack.bot_user_id());
    assert_eq!(b["bot_id"], slack.bot_id());
    assert!(b["user"].is_string());
    assert!(slack.bot_token().starts_with("xoxb-"));
    assert!(slack.app_token().starts_with("xapp-"));
}

#[tokio::test]
async fn channel_errors() {
    let slack = unlimited().await;
    slack.add_channel(Channel::public("outside").without_bot());
    slack.add_channel(Channel::public("old").archived());
    slack.add_channel(Channel::private("secret").without_bot());
    let finance = slack.add_channel(Channel::private("finance"));
    let post = |channel: &str| json!({"channel": channel, "text": "x"});
    for (channel, code) in [
        ("C0NOPE", "channel_not_found"),
        ("#nope", "channel_not_found"),
        ("", "channel_not_found"),
        ("outside", "not_in_channel"),
        ("old", "is_archived"),
        ("secret", "channel_not_found"),
    ] {
        let r = call(&slack, "chat.postMessage", post(channel)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.error(), code, "{channel}");
    }
    call(&slack, "chat.postMessage", post(&finance)).await.ok();
    assert!(slack.set_archived("finance", true));
    assert_eq!(
        call(&slack, "chat.postMessage", post(&finance))
            .await
            .error(),
        "is_archived"
    );
    assert!(slack.set_bot_member("outside", true));
    call(&slack, "chat.postMessage", post("outside")).await.ok();
    assert_eq!(slack.all_messages().len(), 2);
}

fn invalid_blocks_messages(r: &crate::common::Answer) -> Vec<String> {
    assert_eq!(r.error(), "invalid_blocks");
    r.body["response_metadata"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn content_errors() {
    let slack = unlimited().await;
    let post = |extra: Value| {
        let mut body = json!({"channel": "general"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let err = |r: crate::common::Answer| r.error().to_owned();
    assert_eq!(
        err(call(&slack, "chat.postMessage", post(json!({}))).await),
        "no_text"
    );
    assert_eq!(
        err(call(&slack, "chat.postMessage", post(json!({"text": ""}))).await),
        "no_text"
    );
    assert_eq!(
        err(call(
            &slack,
            "chat.postMessage",
            post(json!({"text": "a", "markdown_text": "**b**"}))
        )
        .await),
        "markdown_text_conflict"
    );
    call(
        &slack,
        "chat.postMessage",
        post(json!({"markdown_text": "**b**"})),
    )
    .await
    .ok();
    assert_eq!(
        err(call(
            &slack,
            "chat.postMessage",
            post(json!({"text": "x".repeat(40_001)}))
        )
        .await),
        "msg_too_long"
    );
    call(
        &slack,
        "chat.postMessage",
        post(json!({"text": "é".repeat(40_000)})),
    )
    .await
    .ok();
    let many: Vec<Value> = (0..101).map(|_| json!({"text": "a"})).collect();
    assert_eq!(
        err(call(
            &slack,
            "chat.postMessage",
            post(json!({"attachments": many}))
        )
        .await),
        "too_many_attachments"
    );

    // Blocks.
    let fifty_one: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
    let r = call(
        &slack,
        "chat.postMessage",
        post(json!({"text": "t", "blocks": fifty_one})),
    )
    .await;
    assert!(invalid_blocks_messages(&r)[0].contains("no more than 50 items"));
    let r = call(
        &slack,
        "chat.postMessage",
        post(json!({"text": "t", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x".repeat(3001)}}]})),
    )
    .await;
    assert_eq!(
        invalid_blocks_messages(&r),
        vec!["[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]"]
    );
    let eleven: Vec<Value> = (0..11)
        .map(|_| json!({"type": "mrkdwn", "text": "f"}))
        .collect();
    for blocks in [
        json!([{"type": "section", "fields": eleven}]),
        json!([{"type": "section", "fields": [{"type": "mrkdwn", "text": "x".repeat(2001)}]}]),
        json!([{"type": "header", "text": {"type": "plain_text", "text": "x".repeat(151)}}]),
        json!([{"type": "divider", "block_id": "b".repeat(256)}]),
        json!([{"type": "hologram"}]),
    ] {
        let r = call(
            &slack,
            "chat.postMessage",
            post(json!({"text": "t", "blocks": blocks})),
        )
        .await;
        assert_eq!(invalid_blocks_messages(&r).len(), 1, "{blocks}");
    }
    let r = call_form(
        &slack,
        "chat.postMessage",
        Some(&slack.bot_token()),
        &[
            ("channel", "general"),
            ("text", "t"),
            ("blocks", "[{\"type\":"),
        ],
    )
    .await;
    assert_eq!(r.error(), "invalid_blocks_format");
    assert_eq!(
        err(call(
            &slack,
            "chat.postMessage",
            post(json!({"text": "t", "blocks": {"type": "divider"}}))
        )
        .await),
        "invalid_blocks_format"
    );

    // Metadata.
    for (metadata, code) in [
        (json!("not json"), "invalid_metadata_format"),
        (json!([1]), "invalid_metadata_format"),
        (json!({"event_payload": {}}), "invalid_metadata_schema"),
        (json!({"event_type": "x"}), "invalid_metadata_schema"),
        (
            json!({"event_type": "x", "event_payload": "str"}),
            "invalid_metadata_schema",
        ),
        (
            json!({"event_type": 3, "event_payload": {}}),
            "invalid_metadata_schema",
        ),
    ] {
        let r = call(
            &slack,
            "chat.postMessage",
            post(json!({"text": "t", "metadata": metadata})),
        )
        .await;
        assert_eq!(r.error(), code, "{metadata}");
    }

    // Threads.
    assert_eq!(
        err(call(
            &slack,
            "chat.postMessage",
            post(json!({"text": "t", "thread_ts": "1234567890.000001"}))
        )
        .await),
        "thread_not_found"
    );
    assert_eq!(slack.messages("general").len(), 2);
}

#[tokio::test]
async fn threads_and_history_visibility() {
    let slack = unlimited().await;
    let parent = call(
        &slack,
        "chat.postMessage",
        json!({"channel": "general", "text": "parent"}),
    )
    .await;
    let parent_ts = parent.ok()["ts"].as_str().unwrap().to_owned();
    let reply = call(
        &slack,
        "chat.postMessage",
        json!({"channel": "general", "text": "reply", "thread_ts": parent_ts}),
    )
    .await;
    assert_eq!(reply.ok()["message"]["thread_ts"], parent_ts);
    let reply_ts = reply.body["ts"].as_str().unwrap().to_owned();
    // Replying to a reply threads under the parent.
    let r = call(
        &slack,
        "chat.postMessage",
        json!({"channel": "general", "text": "reply 2", "thread_ts": reply_ts, "reply_broadcast": true}),
    )
    .await;
    assert_eq!(r.ok()["message"]["thread_ts"], parent_ts);

    let h = call(
        &slack,
        "conversations.history",
        json!({"channel": "general"}),
    )
    .await;
    let messages = h.ok()["messages"].as_array().unwrap().clone();
    // The broadcast reply and the parent; the plain reply only lives in the thread.
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[0]["text"], "reply 2");
    assert_eq!(messages[1]["text"], "parent");
    assert_eq!(messages[1]["reply_count"], 2);
    assert_eq!(messages[1]["thread_ts"], parent_ts);

    let r = call(
        &slack,
        "conversations.replies",
        json!({"channel": "general", "ts": parent_ts}),
    )
    .await;
    let texts: Vec<&str> = r.ok()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["parent", "reply", "reply 2"]);
}

#[tokio::test]
async fn one_message_per_second_per_channel_on_an_injected_clock() {
    let start: jiff::Timestamp = "2026-03-02T09:00:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let slack = SlackEmulator::builder()
        .clock(clock.clone())
        .channel(Channel::public("alerts"))
        .start()
        .await
        .unwrap();
    let post = |channel: &str| json!({"channel": channel, "text": "x"});
    let first = call(&slack, "chat.postMessage", post("general")).await;
    assert_eq!(first.ok()["ts"], "1772442000.000000");

    // Same channel, same instant: refused, Slack style.
    let r = call(&slack, "chat.postMessage", post("general")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(r.body, json!({"ok": false, "error": "ratelimited"}));

    // Another channel has its own budget.
    call(&slack, "chat.postMessage", post("alerts")).await.ok();

    clock.advance(Duration::from_millis(999));
    let r = call(&slack, "chat.postMessage", post("general")).await;
    assert_eq!(
        (r.status, r.headers["retry-after"].to_str().unwrap()),
        (429, "1")
    );
    clock.advance(Duration::from_millis(1));
    let ok = call(&slack, "chat.postMessage", post("general")).await;
    assert_eq!(ok.ok()["ts"], "1772442001.000000");

    // Refused messages do not count: exactly one per second goes through.
    for _ in 0..5 {
        clock.advance(Duration::from_millis(500));
        call(&slack, "chat.postMessage", post("general")).await;
    }
    assert_eq!(slack.messages("general").len(), 2 + 2);
    assert_eq!(slack.rate_limited_count(), 2 + 3);
    assert_eq!(slack.faults().status_count("chat.postMessage", 429), 5);
    assert_eq!(slack.api_calls("chat.postMessage"), 10);

    // Two messages a second apart never see a 429.
    slack.faults().reset_counts();
    clock.advance(Duration::from_secs(1));
    for _ in 0..3 {
        call(&slack, "chat.postMessage", post("alerts")).await.ok();
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(slack.faults().status_count("*", 429), 0);

    // Timestamps of messages in the same microsecond stay unique.
    slack.set_post_message_interval(None);
    let a = call(&slack, "chat.postMessage", post("general")).await.body["ts"].clone();
    let b = call(&slack, "chat.postMessage", post("general")).await.body["ts"].clone();
    assert_ne!(a, b);
}

#[tokio::test(start_paused = true)]
async fn limiter_follows_paused_tokio_time_by_default() {
    let slack = SlackEmulator::start().await.unwrap();
    let post = json!({"channel": "general", "text": "x"});
    call(&slack, "chat.postMessage", post.clone()).await.ok();
    assert_eq!(
        call(&slack, "chat.postMessage", post.clone()).await.status,
        429
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    call(&slack, "chat.postMessage", post).await.ok();
}

#[tokio::test]
async fn chat_update() {
    let slack = unlimited().await;
    let metadata = json!({"event_type": "po", "event_payload": {"id": 7}});
    let posted = call(
        &slack,
        "chat.postMessage",
        json!({"channel": "general", "text": "v1", "metadata": metadata}),
    )
    .await;
    let ts = posted.ok()["ts"].as_str().unwrap().to_owned();
    let r = call(
        &slack,
        "chat.update",
        json!({"channel": GENERAL_ID, "ts": ts, "text": "v2"}),
    )
    .await;
    let b = r.ok();
    assert_eq!(
        (b["channel"].as_str(), b["ts"].as_str(), b["text"].as_str()),
        (Some(GENERAL_ID), Some(ts.as_str()), Some("v2"))
    );
    assert_eq!(b["message"]["text"], "v2");
    assert_eq!(
        b["message"]["metadata"], metadata,
        "metadata kept when omitted"
    );
    assert!(b["message"]["edited"]["ts"].is_string());
    let stored = &slack.messages("general")[0];
    assert_eq!(stored.text, "v2");
    assert_eq!(stored.metadata.as_ref(), Some(&metadata));
    assert_eq!(stored.edits.len(), 1);
    assert_eq!(stored.edits[0].previous_text, "v1");
    assert!(stored.edited_ts().is_some());

    let new_metadata = json!({"event_type": "po", "event_payload": {"id": 8}});
    call(
        &slack,
        "chat.update",
        json!({"channel": "general", "ts": ts, "text": "v3", "metadata": new_metadata}),
    )
    .await
    .ok();
    assert_eq!(
        slack.messages("general")[0].metadata.as_ref(),
        Some(&new_metadata)
    );

    let human = slack.post_as_user("general", "U0PERSON1", "hello").unwrap();
    for (body, code) in [
        (
            json!({"channel": "general", "ts": "1111111111.000001", "text": "x"}),
            "message_not_found",
        ),
        (
            json!({"channel": "general", "text": "x"}),
            "message_not_found",
        ),
        (
            json!({"channel": "general", "ts": human, "text": "x"}),
            "cant_update_message",
        ),
        (
            json!({"channel": "C0NOPE", "ts": ts, "text": "x"}),
            "channel_not_found",
        ),
        (json!({"channel": "general", "ts": ts}), "no_text"),
    ] {
        assert_eq!(
            call(&slack, "chat.update", body.clone()).await.error(),
            code,
            "{body}"
        );
    }
}

#[tokio::test]
async fn history_paging_windows_and_metadata() {
    let slack = unlimited().await;
    let mut all_ts = Vec::new();
    for i in 0..5 {
        let r = call(
            &slack,
            "chat.postMessage",
            json!({"channel": "general", "text": format!("m{i}"), "metadata": {"event_type": "n", "event_payload": {"i": i}}}),
        )
        .await;
        all_ts.push(r.ok()["ts"].as_str().unwrap().to_owned());
    }
    // Paging, newest first.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut body = json!({"channel": "general", "limit": 2});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let r = call(&slack, "conversations.history", body).await;
        let b = r.ok().clone();
        pages += 1;
        for m in b["messages"].as_array().unwrap() {
            assert!(
                m.get("metadata").is_none(),
                "metadata only with include_all_metadata"
            );
            seen.push(m["text"].as_str().unwrap().to_owned());
        }
        if b["has_more"] == true {
            cursor = Some(
                b["response_metadata"]["next_cursor"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        } else {
            assert!(
                b["response_metadata"]["next_cursor"]
                    .as_str()
                    .unwrap_or("")
                    .is_empty()
            );
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["m4", "m3", "m2", "m1", "m0"]);

    // Metadata on request; form-encoded arguments.
    let r = call_form(
        &slack,
        "conversations.history",
        Some(&slack.bot_token()),
        &[
            ("channel", "general"),
            ("include_all_metadata", "true"),
            ("limit", "1"),
        ],
    )
    .await;
    let m = &r.ok()["messages"][0];
    assert_eq!(
        m["metadata"],
        json!({"event_type": "n", "event_payload": {"i": 4}})
    );

    // Windows.
    let texts = |r: &crate::common::Answer| -> Vec<String> {
        r.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = call(
        &slack,
        "conversations.history",
        json!({"channel": "general", "oldest": all_ts[1], "latest": all_ts[3]}),
    )
    .await;
    assert_eq!(texts(&r), ["m2"]);
    let r = call(
        &slack,
        "conversations.history",
        json!({"channel": "general", "oldest": all_ts[1], "latest": all_ts[3], "inclusive": true}),
    )
    .await;
    assert_eq!(texts(&r), ["m3", "m2", "m1"]);
    let r = call(
        &slack,
        "conversations.history",
        json!({"channel": "general", "oldest": all_ts[3]}),
    )
    .await;
    assert_eq!(texts(&r), ["m4"]);

    // Limits and errors.
    let r = call(
        &slack,
        "conversations.history",
        json!({"channel": "general", "limit": 5000}),
    )
    .await;
    assert_eq!(r.ok()["messages"].as_array().unwrap().len(), 5);
    for (body, code) in [
        (
            json!({"channel": "general", "cursor": "garbage!"}),
            "invalid_cursor",
        ),
        (
            json!({"channel": "general", "oldest": "yesterday"}),
            "invalid_ts_oldest",
        ),
        (
            json!({"channel": "general", "latest": "1.2.3"}),
            "invalid_ts_latest",
        ),
        (json!({"channel": "C0NOPE"}), "channel_not_found"),
    ] {
        assert_eq!(
            call(&slack, "conversations.history", body.clone())
                .await
                .error(),
            code,
            "{body}"
        );
    }
    slack.add_channel(Channel::public("outside").without_bot());
    assert_eq!(
        call(
            &slack,
            "conversations.history",
            json!({"channel": "outside"})
        )
        .await
        .error(),
        "not_in_channel"
    );
}

#[tokio::test]
async fn history_pages_over_the_default_limit() {
    let slack = unlimited().await;
    post_many(&slack, "general", 150).await;
    let r = call(
        &slack,
        "conversations.history",
        json!({"channel": "general"}),
    )
    .await;
    assert_eq!(r.ok()["messages"].as_array().unwrap().len(), 100);
    assert_eq!(r.body["has_more"], true);
    let cursor = r.body["response_metadata"]["next_cursor"].clone();
    let r = call(
        &slack,
        "conversations.history",
        json!({"channel": "general", "cursor": cursor}),
    )
    .await;
    assert_eq!(r.ok()["messages"].as_array().unwrap().len(), 50);
    assert_eq!(r.body["messages"][49]["text"], "0");
    assert_eq!(r.body["has_more"], false);
}

#[tokio::test]
async fn conversations_join() {
    let slack = unlimited().await;
    let outside = slack.add_channel(Channel::public("outside").without_bot());
    slack.add_channel(Channel::private("finance"));
    slack.add_channel(Channel::public("old").archived().without_bot());
    let post = json!({"channel": outside, "text": "x"});
    assert_eq!(
        call(&slack, "chat.postMessage", post.clone()).await.error(),
        "not_in_channel"
    );
    let r = call(&slack, "conversations.join", json!({"channel": outside})).await;
    let channel = &r.ok()["channel"];
    assert_eq!(channel["id"], outside);
    assert_eq!(channel["is_member"], true);
    assert!(r.body.get("warning").is_none());
    call(&slack, "chat.postMessage", post).await.ok();
    let again = call(&slack, "conversations.join", json!({"channel": "outside"})).await;
    assert_eq!(again.ok()["warning"], "already_in_channel");
    assert_eq!(
        again.body["response_metadata"]["warnings"],
        json!(["already_in_channel"])
    );
    assert_eq!(
        call(&slack, "conversations.join", json!({"channel": "finance"}))
            .await
            .error(),
        "method_not_supported_for_channel_type"
    );
    assert_eq!(
        call(&slack, "conversations.join", json!({"channel": "old"}))
            .await
            .error(),
        "is_archived"
    );
    assert_eq!(
        call(&slack, "conversations.join", json!({"channel": "C0NOPE"}))
            .await
            .error(),
        "channel_not_found"
    );
    assert!(slack.channel("outside").unwrap().bot_member);
}

#[tokio::test]
async fn scopes_are_enforced_for_scoped_tokens() {
    let slack = unlimited().await;
    let token = slack.add_bot_token_with_scopes("commands, channels:history");
    let r = call_as(
        &slack,
        "chat.postMessage",
        Some(&token),
        json!({"channel": "general", "text": "x"}),
    )
    .await;
    assert_eq!(r.error(), "missing_scope");
    assert_eq!(r.body["needed"], "chat:write");
    assert_eq!(r.body["provided"], "commands,channels:history");
    call_as(
        &slack,
        "conversations.history",
        Some(&token),
        json!({"channel": "general"}),
    )
    .await
    .ok();
    slack.add_channel(Channel::private("finance"));
    let r = call_as(
        &slack,
        "conversations.history",
        Some(&token),
        json!({"channel": "finance"}),
    )
    .await;
    assert_eq!(
        (r.error(), r.body["needed"].as_str()),
        ("missing_scope", Some("groups:history"))
    );
    let r = call_as(
        &slack,
        "conversations.join",
        Some(&token),
        json!({"channel": "general"}),
    )
    .await;
    assert_eq!(r.body["needed"], "channels:join");
    call_as(&slack, "auth.test", Some(&token), json!({}))
        .await
        .ok();
}

#[tokio::test]
async fn warnings_combine_and_waiting_for_messages() {
    let slack = unlimited().await;
    let r = call_raw(
        &slack,
        "conversations.join",
        Some("application/json"),
        r#"{"channel":"general"}"#,
    )
    .await;
    assert_eq!(r.ok()["warning"], "already_in_channel,missing_charset");
    assert_eq!(
        r.body["response_metadata"]["warnings"],
        json!(["already_in_channel", "missing_charset"])
    );

    let waiter = {
        let wait = slack.wait_for_messages("general", 2);
        tokio::time::timeout(Duration::from_secs(5), wait)
    };
    let poster = async {
        call(
            &slack,
            "chat.postMessage",
            json!({"channel": "general", "text": "a"}),
        )
        .await
        .ok();
        slack.post_as_user("general", "U0PERSON1", "b").unwrap();
    };
    let (messages, ()) = tokio::join!(waiter, poster);
    assert_eq!(messages.unwrap().len(), 2);
}

#[tokio::test]
async fn conversations_list_pages_and_hides_private_channels_the_bot_is_not_in() {
    let slack = unlimited().await;
    let a = slack.add_channel(Channel::public("alpha"));
    slack.add_channel(Channel::public("beta").archived());
    slack.add_channel(Channel::private("secret").without_bot());
    let mine = slack.add_channel(Channel::private("ours"));
    let names = |r: &Value| -> Vec<String> {
        r["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .map(|c| c["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let r = call(
        &slack,
        "conversations.list",
        json!({"exclude_archived": true}),
    )
    .await;
    let public = names(r.ok());
    assert!(public.contains(&"alpha".to_owned()) && !public.contains(&"beta".to_owned()));
    assert!(
        !public.contains(&"ours".to_owned()),
        "private channels need types=private_channel"
    );
    let r = call(
        &slack,
        "conversations.list",
        json!({"types": "public_channel,private_channel"}),
    )
    .await;
    let all = names(r.ok());
    assert!(all.contains(&"ours".to_owned()) && !all.contains(&"secret".to_owned()));
    // Paging with an opaque cursor covers every channel once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let mut args = json!({"types": "public_channel,private_channel", "limit": 1});
        if !cursor.is_empty() {
            args["cursor"] = json!(cursor);
        }
        let r = call(&slack, "conversations.list", args).await;
        seen.extend(names(r.ok()));
        cursor = r.body["response_metadata"]["next_cursor"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), all.len());
    assert_eq!(
        call(&slack, "conversations.list", json!({"cursor": "garbage"}))
            .await
            .error(),
        "invalid_cursor"
    );
    let _ = (a, mine);
}
