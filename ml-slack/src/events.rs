//! Typed inbound values: what Slack sends us over HTTP (Events API, slash commands,
//! interactivity) or Socket Mode, parsed from the raw bytes.
//!
//! The legacy verification `token` that Slack still includes in payloads is dropped on
//! parsing (it is a credential, and requests are authenticated by their signature).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Rejection;

/// One inbound item, handed to the host.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Inbound {
    /// An Events API `event_callback`.
    Event(EventCallback),
    /// A slash command.
    SlashCommand(SlashCommand),
    /// An interaction (`block_actions`, `view_submission`, ...).
    Interaction(Interaction),
}

impl Inbound {
    /// The key retries are deduplicated on: the `event_id` of an event, the `trigger_id` of
    /// a command or interaction.
    pub fn dedupe_key(&self) -> Option<String> {
        match self {
            Self::Event(e) => Some(format!("event:{}", e.event_id)),
            Self::SlashCommand(c) => c.trigger_id.as_ref().map(|t| format!("trigger:{t}")),
            Self::Interaction(Interaction::BlockActions(b)) => {
                let first = b.actions.first().and_then(|a| a.action_ts.clone());
                b.trigger_id
                    .as_ref()
                    .map(|t| format!("trigger:{t}:{}", first.unwrap_or_default()))
            }
            Self::Interaction(Interaction::Other { raw, .. }) => raw
                .get("trigger_id")
                .and_then(Value::as_str)
                .map(|t| format!("trigger:{t}")),
        }
    }
}

/// How an inbound item reached us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// An HTTP request, with Slack's retry headers when it was a retry.
    Http {
        /// `X-Slack-Retry-Num`.
        retry_num: Option<u32>,
        /// `X-Slack-Retry-Reason`.
        retry_reason: Option<String>,
    },
    /// A Socket Mode envelope.
    SocketMode {
        /// The envelope id (already acknowledged).
        envelope_id: String,
        /// The envelope's `retry_attempt`.
        retry_attempt: Option<u32>,
    },
}

/// An inbound item as handed to the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    /// What arrived.
    pub inbound: Inbound,
    /// How.
    pub via: Via,
    /// When (the receiver's clock).
    pub received_at: Timestamp,
}

/// One entry of an event's `authorizations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    /// The enterprise id, if any.
    #[serde(default)]
    pub enterprise_id: Option<String>,
    /// The team id.
    #[serde(default)]
    pub team_id: Option<String>,
    /// The authorized user (the bot user).
    #[serde(default)]
    pub user_id: Option<String>,
    /// Whether it is a bot.
    #[serde(default)]
    pub is_bot: bool,
}

/// The inner `event` of an Events API callback.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The event type (`message`, `app_mention`, `reaction_added`, ...).
    pub kind: String,
    /// The subtype, if any.
    pub subtype: Option<String>,
    /// The user who caused it.
    pub user: Option<String>,
    /// The channel it happened in.
    pub channel: Option<String>,
    /// The message text, if any.
    pub text: Option<String>,
    /// The message `ts`, if any.
    pub ts: Option<String>,
    /// The thread, if the message is a reply.
    pub thread_ts: Option<String>,
    /// When the event happened.
    pub event_ts: Option<String>,
    /// The whole event.
    pub raw: Value,
}

/// An Events API `event_callback` envelope.
#[derive(Clone, Debug, PartialEq)]
pub struct EventCallback {
    /// The workspace.
    pub team_id: Option<String>,
    /// The enterprise, if any.
    pub enterprise_id: Option<String>,
    /// The app.
    pub api_app_id: Option<String>,
    /// The unique event id (the dedupe key).
    pub event_id: String,
    /// When the event was dispatched (unix seconds).
    pub event_time: Option<i64>,
    /// The installations the event is for.
    pub authorizations: Vec<Authorization>,
    /// Whether the channel is shared with another organisation.
    pub is_ext_shared_channel: Option<bool>,
    /// The event.
    pub event: Event,
}

/// A slash command (`/approve-invoice INV-7`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct SlashCommand {
    /// The command (`/approve-invoice`).
    pub command: String,
    /// The text after the command.
    pub text: String,
    /// Who ran it.
    pub user_id: String,
    /// Their name (deprecated by Slack).
    pub user_name: Option<String>,
    /// Where.
    pub channel_id: Option<String>,
    /// The channel's name.
    pub channel_name: Option<String>,
    /// The workspace.
    pub team_id: Option<String>,
    /// The workspace's domain.
    pub team_domain: Option<String>,
    /// The enterprise, if any.
    pub enterprise_id: Option<String>,
    /// The app.
    pub api_app_id: Option<String>,
    /// Whether the app is installed org-wide (`"true"`/`"false"`).
    pub is_enterprise_install: Option<String>,
    /// Where to answer (up to 5 times within 30 minutes).
    pub response_url: Option<String>,
    /// For opening a modal (short-lived).
    pub trigger_id: Option<String>,
}

/// An interaction payload.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Interaction {
    /// A button, select or other block element was used.
    BlockActions(Box<BlockActions>),
    /// Another payload type (`view_submission`, `shortcut`, ...), untyped.
    Other {
        /// The payload `type`.
        kind: String,
        /// The payload (without the legacy `token`).
        raw: Value,
    },
}

/// The user of an interaction.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InteractionUser {
    /// The user id.
    pub id: String,
    /// The user name.
    pub username: Option<String>,
    /// The display name.
    pub name: Option<String>,
    /// The user's team.
    pub team_id: Option<String>,
}

/// One action of a `block_actions` payload.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Action {
    /// The element's `action_id`.
    pub action_id: String,
    /// The block's `block_id`.
    pub block_id: Option<String>,
    /// The button's `value`, if any.
    pub value: Option<String>,
    /// The element type (`button`, `static_select`, ...).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// When the action happened.
    pub action_ts: Option<String>,
}

/// A `block_actions` payload.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockActions {
    /// Who acted.
    pub user: InteractionUser,
    /// The workspace id.
    pub team_id: Option<String>,
    /// The channel id, when the message is in a channel.
    pub channel_id: Option<String>,
    /// The message's `ts`, when the action was on a message.
    pub message_ts: Option<String>,
    /// The actions (usually one).
    pub actions: Vec<Action>,
    /// Where to answer.
    pub response_url: Option<String>,
    /// For opening a modal.
    pub trigger_id: Option<String>,
    /// The app.
    pub api_app_id: Option<String>,
    /// The whole payload (without the legacy `token`).
    pub raw: Value,
}

/// What a parsed request body is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Parsed {
    /// `url_verification`: answer with the challenge.
    UrlVerification(String),
    /// `app_rate_limited` and other envelopes that only need an acknowledgement.
    AckOnly(String),
    /// Something for the host.
    Inbound(Box<Inbound>),
}

fn malformed(why: impl Into<String>) -> Rejection {
    Rejection::Malformed(why.into())
}

fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().map(str::to_owned)
}

fn strip_token(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("token");
    }
    v
}

/// Parses an Events API JSON body (`url_verification`, `event_callback`, ...).
pub(crate) fn parse_events_json(body: &[u8]) -> Result<Parsed, Rejection> {
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let kind = str_at(&v, &["type"]).ok_or_else(|| malformed("no `type`"))?;
    match kind.as_str() {
        "url_verification" => {
            let c = str_at(&v, &["challenge"]).ok_or_else(|| malformed("no `challenge`"))?;
            Ok(Parsed::UrlVerification(c))
        }
        "event_callback" => Ok(Parsed::Inbound(Box::new(Inbound::Event(event_callback(
            &strip_token(v),
        )?)))),
        "app_rate_limited" => Ok(Parsed::AckOnly(kind)),
        _ => Err(malformed(format!("unknown envelope type `{kind}`"))),
    }
}

/// Parses an `event_callback` envelope (also used by Socket Mode's `events_api`).
pub(crate) fn event_callback(v: &Value) -> Result<EventCallback, Rejection> {
    let event_id = str_at(v, &["event_id"]).ok_or_else(|| malformed("no `event_id`"))?;
    let event = v
        .get("event")
        .filter(|e| e.is_object())
        .cloned()
        .ok_or_else(|| malformed("no `event` object"))?;
    let authorizations = v
        .get("authorizations")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| malformed(format!("bad `authorizations`: {e}")))?
        .unwrap_or_default();
    Ok(EventCallback {
        team_id: str_at(v, &["team_id"]),
        enterprise_id: str_at(v, &["enterprise_id"]),
        api_app_id: str_at(v, &["api_app_id"]),
        event_id,
        event_time: v.get("event_time").and_then(Value::as_i64),
        authorizations,
        is_ext_shared_channel: v.get("is_ext_shared_channel").and_then(Value::as_bool),
        event: Event {
            kind: str_at(&event, &["type"]).ok_or_else(|| malformed("event has no `type`"))?,
            subtype: str_at(&event, &["subtype"]),
            user: str_at(&event, &["user"]),
            channel: str_at(&event, &["channel"]),
            text: str_at(&event, &["text"]),
            ts: str_at(&event, &["ts"]),
            thread_ts: str_at(&event, &["thread_ts"]),
            event_ts: str_at(&event, &["event_ts"]),
            raw: event,
        },
    })
}

/// Parses a form body: a slash command, or an interaction (`payload=<JSON>`).
pub(crate) fn parse_form(body: &[u8]) -> Result<Parsed, Rejection> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|e| malformed(format!("bad form: {e}")))?;
    if let Some((_, payload)) = pairs.iter().find(|(k, _)| k == "payload") {
        let v: Value = serde_json::from_str(payload)
            .map_err(|e| malformed(format!("`payload` is not JSON: {e}")))?;
        return Ok(Parsed::Inbound(Box::new(Inbound::Interaction(
            interaction(v)?,
        ))));
    }
    if pairs.iter().any(|(k, _)| k == "command") {
        return Ok(Parsed::Inbound(Box::new(Inbound::SlashCommand(
            slash_command(body)?,
        ))));
    }
    Err(malformed("a form with neither `command` nor `payload`"))
}

/// Parses a slash command form.
pub(crate) fn slash_command(body: &[u8]) -> Result<SlashCommand, Rejection> {
    let c: SlashCommand = serde_urlencoded::from_bytes(body)
        .map_err(|e| malformed(format!("bad command form: {e}")))?;
    if c.command.is_empty() {
        return Err(malformed("no `command`"));
    }
    Ok(c)
}

/// Parses an interaction payload.
pub(crate) fn interaction(v: Value) -> Result<Interaction, Rejection> {
    let v = strip_token(v);
    let kind = str_at(&v, &["type"]).ok_or_else(|| malformed("payload has no `type`"))?;
    if kind != "block_actions" {
        return Ok(Interaction::Other { kind, raw: v });
    }
    let user: InteractionUser = v
        .get("user")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| malformed(format!("bad `user`: {e}")))?
        .ok_or_else(|| malformed("no `user`"))?;
    let actions: Vec<Action> = v
        .get("actions")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| malformed(format!("bad `actions`: {e}")))?
        .unwrap_or_default();
    Ok(Interaction::BlockActions(Box::new(BlockActions {
        user,
        team_id: str_at(&v, &["team", "id"]),
        channel_id: str_at(&v, &["channel", "id"])
            .or_else(|| str_at(&v, &["container", "channel_id"])),
        message_ts: str_at(&v, &["message", "ts"])
            .or_else(|| str_at(&v, &["container", "message_ts"])),
        actions,
        response_url: str_at(&v, &["response_url"]),
        trigger_id: str_at(&v, &["trigger_id"]),
        api_app_id: str_at(&v, &["api_app_id"]),
        raw: v,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_url_verification_and_events() {
        let p = parse_events_json(br#"{"token":"t","challenge":"abc","type":"url_verification"}"#)
            .expect("ok");
        assert_eq!(p, Parsed::UrlVerification("abc".into()));
        let body = br#"{"token":"legacy-secret","team_id":"T1","api_app_id":"A1","event":{"type":"app_mention","user":"U1","text":"hi","ts":"1.2","channel":"C1","event_ts":"1.2"},"type":"event_callback","event_id":"Ev1","event_time":1800000000,"authorizations":[{"team_id":"T1","user_id":"UB","is_bot":true}]}"#;
        let Parsed::Inbound(i) = parse_events_json(body).expect("ok") else {
            panic!("not an event");
        };
        let Inbound::Event(e) = *i else {
            panic!("not an event");
        };
        assert_eq!(e.event_id, "Ev1");
        assert_eq!(e.event.kind, "app_mention");
        assert_eq!(e.event.channel.as_deref(), Some("C1"));
        assert_eq!(e.authorizations[0].user_id.as_deref(), Some("UB"));
        assert!(!format!("{e:?}").contains("legacy-secret"));
        assert_eq!(Inbound::Event(e).dedupe_key().as_deref(), Some("event:Ev1"));
    }

    #[test]
    fn refuses_bad_json() {
        for bad in [
            &b"not json"[..],
            br#"{"no":"type"}"#,
            br#"{"type":"event_callback","event":{"type":"x"}}"#,
            br#"{"type":"event_callback","event_id":"E","event":"x"}"#,
            br#"{"type":"whatever"}"#,
        ] {
            assert!(
                matches!(parse_events_json(bad), Err(Rejection::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn parses_forms() {
        let body = b"token=secret&team_id=T1&channel_id=C1&user_id=U1&command=%2Fapprove-invoice&text=INV-7&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1&trigger_id=1.2.3";
        let Parsed::Inbound(i) = parse_form(body).expect("ok") else {
            panic!("not a command");
        };
        let Inbound::SlashCommand(c) = *i else {
            panic!("not a command");
        };
        assert_eq!(c.command, "/approve-invoice");
        assert_eq!(c.text, "INV-7");
        assert_eq!(
            c.response_url.as_deref(),
            Some("https://hooks.slack.com/commands/1")
        );
        assert!(!format!("{c:?}").contains("secret"));

        let payload = serde_json::json!({
            "type": "block_actions", "token": "secret",
            "user": {"id": "U1", "username": "ana"}, "team": {"id": "T1"},
            "channel": {"id": "C1"}, "message": {"ts": "9.9"}, "trigger_id": "1.2.4",
            "actions": [{"action_id": "approve", "block_id": "b", "value": "INV-7", "type": "button", "action_ts": "5.5"}]
        });
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).expect("form");
        let Parsed::Inbound(i) = parse_form(body.as_bytes()).expect("ok") else {
            panic!("not block actions");
        };
        let Inbound::Interaction(Interaction::BlockActions(b)) = *i else {
            panic!("not block actions");
        };
        assert_eq!(b.actions[0].value.as_deref(), Some("INV-7"));
        assert_eq!(b.channel_id.as_deref(), Some("C1"));
        assert_eq!(b.message_ts.as_deref(), Some("9.9"));
        assert!(b.raw.get("token").is_none());

        let other = serde_urlencoded::to_string([("payload", r#"{"type":"view_submission"}"#)])
            .expect("form");
        assert!(matches!(
            parse_form(other.as_bytes()),
            Ok(Parsed::Inbound(i)) if matches!(*i, Inbound::Interaction(Interaction::Other { .. }))
        ));
        assert!(parse_form(b"a=b").is_err());
        assert!(parse_form(b"payload=%7Bnot").is_err());
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "type",
                        "event_id",
                        "event",
                        "authorizations",
                        "challenge",
                        "user",
                        "channel",
                        "actions",
                        "trigger_id",
                        "action_ts",
                        "team",
                        "message",
                        "view",
                        "x",
                    ])
                    .prop_map(str::to_owned),
                    inner,
                    0..6,
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_or_refuse(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            for r in [parse_events_json(&body), parse_form(&body)] {
                if let Err(e) = r {
                    proptest::prop_assert!(matches!(e, Rejection::Malformed(_)));
                }
            }
        }

        #[test]
        fn any_json_envelope_or_payload_parses_or_refuses(
            v in json_value(),
            kind in proptest::sample::select(vec!["event_callback", "url_verification", "block_actions", "app_rate_limited", "view_submission"]),
        ) {
            let mut v = v;
            if let Some(o) = v.as_object_mut() {
                o.insert("type".into(), Value::from(kind));
            }
            let _ = parse_events_json(v.to_string().as_bytes());
            let form = serde_urlencoded::to_string([("payload", v.to_string())]).expect("form");
            let _ = parse_form(form.as_bytes());
            let _ = interaction(v.clone());
            let _ = event_callback(&v);
        }

        #[test]
        fn any_command_form_parses_or_refuses(
            fields in proptest::collection::vec(
                (proptest::sample::select(vec!["command", "text", "user_id", "channel_id", "response_url", "trigger_id", "team_id", "is_enterprise_install"]), ".{0,16}"),
                0..8,
            ),
        ) {
            let form = serde_urlencoded::to_string(&fields).expect("form");
            let _ = parse_form(form.as_bytes());
            let _ = slash_command(form.as_bytes());
        }
    }
}
