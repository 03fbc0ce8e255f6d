//! `SlackSink` against the Slack emulator: conformance, request contents, threads, edits,
//! classification of failures, reconcile, token rotation, secrets.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ml_core::auth::{MemoryRefreshTokenStore, RefreshTokenStore as _};
use ml_core::sink::{Destination, DestinationCheck, Receipt, Reconciled, Sink};
use ml_core::testing::sink_conformance;
use ml_core::{Error, ErrorClass};
use ml_sandbox::fault::{Fault, FaultRule};
use ml_sandbox::slack::{Channel, SlackEmulator, TEAM_ID};
use ml_slack::ids::ChannelId;
use ml_slack::{SlackBuilder, UpdateMode};

use common::{builder, invoice, outbound, sink};

fn class_of(r: &ml_core::Result<Receipt>) -> ErrorClass {
    r.as_ref().expect_err("an error").class()
}

/// The Slack emulator without its per-channel pace (these tests check behaviour, not
/// pacing).
async fn unpaced() -> SlackEmulator {
    SlackEmulator::builder()
        .post_message_interval(None)
        .start()
        .await
        .expect("emulator")
}

#[tokio::test]
async fn conforms_against_the_emulator() {
    let slack = unpaced().await;
    let id = slack.add_channel(Channel::public("procurement"));
    let sink = sink(&slack);
    let token = slack.bot_token();
    sink_conformance(&sink, &Destination::new("slack", &id), 1, &[&token]).await;
    // By name too.
    sink_conformance(
        &sink,
        &Destination::new("slack", "#procurement"),
        100,
        &[&token],
    )
    .await;
    assert_eq!(slack.messages(&id).len(), 2);
}

#[tokio::test]
async fn healthcheck_names_the_team() {
    let slack = SlackEmulator::start().await.expect("emulator");
    let sink = sink(&slack);
    assert!(sink.to_string().starts_with("Slack(127.0.0.1:"), "{sink}");
    sink.healthcheck().await.expect("auth.test");
    assert_eq!(sink.to_string(), format!("Slack({TEAM_ID})"));
    let bad = builder(&slack)
        .with_bot_token("xoxb-not-a-token")
        .build()
        .expect("sink");
    let err = bad.healthcheck().await.expect_err("invalid_auth");
    assert_eq!(err.code(), Some("invalid_auth"));
    assert_eq!(err.class(), ErrorClass::Permanent);
}

#[tokio::test]
async fn posts_blocks_text_and_metadata() {
    let slack = SlackEmulator::start().await.expect("emulator");
    let id = slack.add_channel(Channel::public("ap"));
    let sink = sink(&slack);
    let msg = outbound(&sink, 42, "#ap", &invoice("7", "Validated", 0));
    let receipt = sink.send(&msg).await.expect("posted");
    assert_eq!(receipt.remote_scope.as_deref(), Some(id.as_str()));
    let stored = slack.messages(&id);
    assert_eq!(stored.len(), 1);
    let m = &stored[0];
    assert_eq!(m.ts, receipt.remote_id);
    assert!(m.text.starts_with("Supplier invoice INV-7"), "{}", m.text);
    let blocks = m.blocks.as_ref().expect("blocks");
    assert_eq!(blocks[0]["type"], "header");
    let meta = m.metadata.as_ref().expect("metadata");
    assert_eq!(meta["event_type"], "ml_connector_delivery");
    assert_eq!(meta["event_payload"]["delivery_id"], 42);
    assert_eq!(meta["event_payload"]["record_key"], "7");
    assert_eq!(m.args.get("unfurl_links"), Some(&serde_json::json!(false)));
    // The name was learned: the key and the next post use the id.
    assert_eq!(
        sink.rate_key(&Destination::new("slack", "#ap")),
        Some(format!("slack:{id}"))
    );
}

#[tokio::test]
async fn later_versions_reply_in_the_thread_or_edit() {
    let slack = unpaced().await;
    let id = slack.add_channel(Channel::public("ap"));
    let threaded = sink(&slack);
    let first = threaded
        .send(&outbound(&threaded, 1, &id, &invoice("7", "Validated", 0)))
        .await
        .expect("first");
    let mut approved = outbound(&threaded, 2, &id, &invoice("7", "Approved", 60));
    approved.thread = Some(first.clone());
    let reply = threaded.send(&approved).await.expect("reply");
    let stored = slack.messages(&id);
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].ts, reply.remote_id);
    assert_eq!(
        stored[1].thread_ts.as_deref(),
        Some(first.remote_id.as_str())
    );
    assert!(stored[1].text.contains("Approved"));
    // A thread reply is reconciled through conversations.replies.
    assert_eq!(
        threaded.reconcile(&approved).await.expect("reconcile"),
        Reconciled::Found(reply.clone())
    );

    let editing = builder(&slack)
        .with_update_mode(UpdateMode::Edit)
        .build()
        .expect("sink");
    let mut paid = outbound(&editing, 3, &id, &invoice("7", "Paid", 120));
    paid.thread = Some(first.clone());
    let edited = editing.send(&paid).await.expect("edit");
    assert_eq!(edited.remote_id, first.remote_id);
    let stored = slack.messages(&id);
    assert_eq!(stored.len(), 2, "an edit posts nothing new");
    assert!(stored[0].text.contains("Paid"));
    assert_eq!(stored[0].edits.len(), 1);
    // The edit kept the first delivery's metadata.
    assert_eq!(
        stored[0].metadata.as_ref().expect("meta")["event_payload"]["delivery_id"],
        1
    );
    assert_eq!(
        editing.reconcile(&paid).await.expect("reconcile"),
        Reconciled::NotFound
    );
}

#[tokio::test]
async fn rate_limits_carry_retry_after() {
    let slack = SlackEmulator::start().await.expect("emulator");
    let id = slack.add_channel(Channel::public("ap"));
    let sink = sink(&slack);
    slack.faults().push(FaultRule::on(
        "chat.postMessage",
        Fault::TooManyRequests { retry_after: 7 },
    ));
    let r = sink
        .send(&outbound(&sink, 1, &id, &invoice("1", "New", 0)))
        .await;
    let e = r.expect_err("429");
    assert_eq!(
        e.class(),
        ErrorClass::Retryable {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert_eq!(e.code(), Some("ratelimited"));
    // The emulator's own 1 msg/s limit: a second post at once is a 429 too.
    sink.send(&outbound(&sink, 2, &id, &invoice("2", "New", 0)))
        .await
        .expect("first");
    let e = sink
        .send(&outbound(&sink, 3, &id, &invoice("3", "New", 0)))
        .await
        .expect_err("too fast");
    assert!(e.class().retry_after().is_some());
    assert_eq!(slack.messages(&id).len(), 1);
}

#[tokio::test]
async fn failures_are_classified() {
    let slack = unpaced().await;
    let id = slack.add_channel(Channel::public("ap"));
    slack.add_channel(Channel::public("quiet").without_bot());
    slack.add_channel(Channel::public("old").archived());
    let sink = sink(&slack);
    let rec = invoice("1", "New", 0);
    let send = |addr: &str, n: i64| {
        let m = outbound(&sink, n, addr, &rec);
        let s = &sink;
        async move { s.send(&m).await }
    };
    let r = send("#nowhere", 1).await;
    assert_eq!(class_of(&r), ErrorClass::Permanent);
    assert_eq!(r.expect_err("e").code(), Some("channel_not_found"));
    let stay_out = builder(&slack)
        .with_join_channels(false)
        .build()
        .expect("sink");
    let r = stay_out.send(&outbound(&stay_out, 2, "#quiet", &rec)).await;
    let e = r.expect_err("not a member");
    assert_eq!(e.code(), Some("not_in_channel"));
    assert!(e.to_string().contains("/invite"), "what to do: {e}");
    let r = send("#old", 3).await;
    assert_eq!(r.expect_err("e").code(), Some("is_archived"));

    for (status, class) in [
        (500, ErrorClass::InDoubt),
        (503, ErrorClass::RETRYABLE),
        (502, ErrorClass::RETRYABLE),
    ] {
        slack
            .faults()
            .push(FaultRule::on("chat.postMessage", Fault::Status(status)));
        let r = send(&id, 10).await;
        assert_eq!(class_of(&r), class, "HTTP {status}");
    }
    slack.faults().push(FaultRule::on(
        "chat.postMessage",
        Fault::StatusWithBody {
            status: 502,
            content_type: "text/html".into(),
            body: "<html>bad gateway</html>".into(),
        },
    ));
    assert_eq!(class_of(&send(&id, 11).await), ErrorClass::InDoubt);
    slack
        .faults()
        .push(FaultRule::on("chat.postMessage", Fault::DropBeforeResponse));
    assert_eq!(class_of(&send(&id, 12).await), ErrorClass::InDoubt);
    assert!(
        slack.messages(&id).is_empty(),
        "no fault above applied a post"
    );

    let bad = builder(&slack)
        .with_bot_token("xoxb-wrong")
        .build()
        .expect("sink");
    let r = bad.send(&outbound(&bad, 13, &id, &rec)).await;
    let e = r.expect_err("invalid_auth");
    assert_eq!(e.code(), Some("invalid_auth"));
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(!e.to_string().contains("xoxb-wrong"));
}

#[tokio::test]
async fn applied_then_dropped_is_found_by_reconcile() {
    let slack = SlackEmulator::start().await.expect("emulator");
    let id = slack.add_channel(Channel::public("ap"));
    let sink = sink(&slack);
    let msg = outbound(&sink, 77, "#ap", &invoice("9", "New", 0));
    slack
        .faults()
        .push(FaultRule::on("chat.postMessage", Fault::AppliedThenDropped));
    let err = sink.send(&msg).await.expect_err("dropped");
    assert_eq!(err.class(), ErrorClass::InDoubt);
    let stored = slack.messages(&id);
    assert_eq!(stored.len(), 1, "the emulator applied it");
    // The channel was never answered, so the sink resolves `#ap` itself... or knows it.
    sink.remember_channel("#ap", &ChannelId(id.clone()));
    match sink.reconcile(&msg).await.expect("reconcile") {
        Reconciled::Found(r) => {
            assert_eq!(r.remote_id, stored[0].ts);
            assert_eq!(r.remote_scope.as_deref(), Some(id.as_str()));
        }
        Reconciled::NotFound => panic!("the applied post must be found"),
    }
    // Another delivery of the same record is not confused with it.
    let other = ml_core::sink::Outbound {
        delivery_id: ml_core::audit::DeliveryId(78),
        ..msg.clone()
    };
    assert_eq!(
        sink.reconcile(&other).await.expect("reconcile"),
        Reconciled::NotFound
    );
}

#[tokio::test]
async fn reconcile_pages_and_is_bounded() {
    let slack = unpaced().await;
    let id = slack.add_channel(Channel::public("busy"));
    let paged = builder(&slack)
        .with_reconcile(ml_slack::ReconcileOptions {
            page_size: 5,
            max_pages: 10,
            ..ml_slack::ReconcileOptions::default()
        })
        .build()
        .expect("sink");
    let target = outbound(&paged, 1, &id, &invoice("1", "New", 0));
    paged.send(&target).await.expect("posted");
    for i in 0..20 {
        slack.post_as_user(&id, "U0HUMAN01", &format!("chatter {i}"));
    }
    assert!(matches!(
        paged.reconcile(&target).await.expect("found on page 5"),
        Reconciled::Found(_)
    ));
    let capped = builder(&slack)
        .with_reconcile(ml_slack::ReconcileOptions {
            page_size: 5,
            max_pages: 2,
            ..ml_slack::ReconcileOptions::default()
        })
        .build()
        .expect("sink");
    let err = capped.reconcile(&target).await.expect_err("inconclusive");
    assert_eq!(err.code(), Some("reconcile_inconclusive"));

    // Slack serving fewer than asked (5 of 200): the budget is 400 messages, not 2 pages.
    slack.set_page_cap(Some(5));
    let asks_more = builder(&slack)
        .with_reconcile(ml_slack::ReconcileOptions {
            page_size: 200,
            max_pages: 2,
            ..ml_slack::ReconcileOptions::default()
        })
        .build()
        .expect("sink");
    assert!(matches!(
        asks_more.reconcile(&target).await.expect("found on page 5"),
        Reconciled::Found(_)
    ));
}

#[tokio::test]
async fn token_rotation_refreshes_and_retries_once() {
    use secrecy::ExposeSecret as _;

    let slack = SlackEmulator::builder()
        .token_rotation(true)
        .post_message_interval(None)
        .start()
        .await
        .expect("emulator");
    let id = slack.add_channel(Channel::public("ap"));
    // Install: the code exchange gives a rotating token and its refresh token.
    let oauth = builder(&slack)
        .with_redirect_uri("https://app.example/callback")
        .build_oauth()
        .expect("oauth");
    let code = slack.issue_oauth_code(Some("https://app.example/callback"));
    let install = oauth.exchange_code(&code).await.expect("installed");
    assert_eq!(install.team_id.as_deref(), Some(TEAM_ID));
    assert!(install.expires_at.is_some());
    assert!(install.bot_token.expose_secret().starts_with("xoxe.xoxb-"));
    let store = Arc::new(MemoryRefreshTokenStore::new(install.stored_refresh_token()));
    assert!(!format!("{install:?} {store:?}").contains("xox"));

    // The host's token cache over ml-core's rotating provider, refreshing through the
    // same OAuth client (the builder's `with_token_rotation` does exactly this).
    let provider = ml_core::auth::RotatingTokenProvider::new(Arc::new(oauth), store.clone());
    let cache = Arc::new(ml_core::auth::TokenCache::new(Arc::new(provider)));
    let sink = SlackBuilder::new()
        .with_api_url(slack.base_url())
        .with_token_cache(cache.clone())
        .build()
        .expect("sink");
    let first_refresh = store.current().expect("refresh").token;
    sink.send(&outbound(&sink, 1, &id, &invoice("1", "New", 0)))
        .await
        .expect("posted with a refreshed token");
    let rotated = store.load().await.expect("load").expect("some").token;
    assert_ne!(
        rotated.expose_secret(),
        first_refresh.expose_secret(),
        "the refresh token rotated and was saved"
    );
    // Slack expires the token early: the sink refreshes once and repeats the call.
    let current = cache.token().await.expect("token");
    assert!(slack.expire_token(current.expose_secret()));
    let calls_before = slack.api_calls("chat.postMessage");
    sink.send(&outbound(&sink, 2, &id, &invoice("2", "New", 0)))
        .await
        .expect("posted after token_expired");
    assert_eq!(slack.api_calls("chat.postMessage") - calls_before, 2);
    assert_eq!(slack.messages(&id).len(), 2);

    // The builder path: rotation from a stored refresh token.
    let rotating = builder(&slack)
        .with_token_rotation(store.clone())
        .build()
        .expect("sink");
    rotating
        .send(&outbound(&rotating, 3, &id, &invoice("3", "New", 0)))
        .await
        .expect("posted");
}

#[tokio::test]
async fn nothing_shows_a_secret() {
    let slack = SlackEmulator::start().await.expect("emulator");
    let token = slack.bot_token();
    let secret = slack.signing_secret();
    let client_secret = slack.client_secret();
    let b = builder(&slack).with_app_token(slack.app_token());
    let sink = b.clone().build().expect("sink");
    let receiver = b.build_receiver().expect("receiver");
    let oauth = b.build_oauth().expect("oauth");
    let client = b.build_client().expect("client");
    let shown = format!("{b:?} {sink} {sink:?} {receiver:?} {oauth:?} {client:?}");
    for s in [&token, &secret, &client_secret, &slack.app_token()] {
        assert!(!shown.contains(s.as_str()), "secret leaked: {shown}");
    }
    let err: Error = sink
        .send(&outbound(&sink, 1, "#nowhere", &invoice("1", "New", 0)))
        .await
        .expect_err("channel_not_found");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(&token), "{text}");
}

#[tokio::test]
async fn a_public_channel_the_app_is_not_in_is_joined_then_posted_to_once() {
    let slack = unpaced().await;
    let quiet = slack.add_channel(Channel::public("quiet").without_bot());
    let secret = slack.add_channel(Channel::private("secret").without_bot());
    let rec = invoice("1", "New", 0);
    let sink = sink(&slack);
    let started = std::time::Instant::now();
    sink.send(&outbound(&sink, 1, "#quiet", &rec))
        .await
        .expect("posted after joining");
    // The refused post counts toward the channel's pace: the second waited a second.
    assert!(started.elapsed() >= Duration::from_secs(1));
    sink.send(&outbound(&sink, 2, &quiet, &rec))
        .await
        .expect("posted by id, already a member");
    assert_eq!(slack.messages(&quiet).len(), 2, "each post once");
    // A private channel the app is not in cannot be joined (it is not even visible).
    let e = sink
        .send(&outbound(&sink, 3, "#secret", &rec))
        .await
        .expect_err("private");
    assert_eq!(e.code(), Some("channel_not_found"));
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(slack.messages(&secret).is_empty());

    // Without `channels:join` the post fails as Slack answered it, with what to do.
    let token = slack.add_bot_token_with_scopes("chat:write,channels:read");
    let loud = slack.add_channel(Channel::public("loud").without_bot());
    let narrow = builder(&slack).with_bot_token(token).build().expect("sink");
    let e = narrow
        .send(&outbound(&narrow, 4, "#loud", &rec))
        .await
        .expect_err("cannot join");
    assert_eq!(e.code(), Some("not_in_channel"));
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(slack.messages(&loud).is_empty());
}

/// A join that may work later (rate limited, a 5xx) keeps its class: the delivery is
/// retried when Slack says, not failed as `not_in_channel`; the retry joins and posts once.
#[tokio::test]
async fn a_join_refused_for_now_is_retried_not_failed() {
    let slack = unpaced().await;
    let quiet = slack.add_channel(Channel::public("quiet").without_bot());
    let rec = invoice("1", "New", 0);
    let sink = sink(&slack);
    slack.faults().push(FaultRule::on(
        "conversations.join",
        Fault::TooManyRequests { retry_after: 9 },
    ));
    let e = sink
        .send(&outbound(&sink, 1, &quiet, &rec))
        .await
        .expect_err("join rate limited");
    assert_eq!(
        e.class(),
        ErrorClass::Retryable {
            retry_after: Some(Duration::from_secs(9))
        }
    );
    slack
        .faults()
        .push(FaultRule::on("conversations.join", Fault::Status(503)));
    let e = sink
        .send(&outbound(&sink, 1, &quiet, &rec))
        .await
        .expect_err("join unavailable");
    assert!(e.class().is_retryable(), "{e}: {}", e.class());
    assert!(slack.messages(&quiet).is_empty());
    sink.send(&outbound(&sink, 1, &quiet, &rec))
        .await
        .expect("joined and posted");
    assert_eq!(slack.messages(&quiet).len(), 1);
}

/// `conversations.list` is Tier 2 (about 20 calls a minute) and a workspace's list can
/// take many pages: a name missing from a complete listing is not looked up again for a
/// minute (several unknown names at start-up cost one listing, not one each).
#[tokio::test]
async fn a_complete_channel_listing_answers_for_missing_names_a_while() {
    let slack = SlackEmulator::start().await.expect("emulator");
    slack.add_channel(Channel::public("finance"));
    let sink = sink(&slack);
    let before = slack.faults().requests("conversations.list");
    let e = sink.resolve_channel("#nowhere").await.expect_err("missing");
    assert_eq!(e.code(), Some("channel_not_found"), "{e}");
    assert_eq!(e.class(), ErrorClass::Permanent);
    // Missing from the listing of a moment ago: asked again later (a channel created
    // meanwhile is found then), not refused for good on old news.
    for name in ["#nothere", "#gone"] {
        let e = sink.resolve_channel(name).await.expect_err("missing");
        assert!(e.class().is_retryable(), "{e}");
        assert!(e.class().retry_after().is_some(), "{e}");
    }
    assert!(
        sink.resolve_channel("#finance").await.is_ok(),
        "learnt by the listing"
    );
    assert_eq!(
        slack.faults().requests("conversations.list") - before,
        1,
        "one listing for three missing names"
    );
}

async fn check(sink: &ml_slack::SlackSink, address: &str) -> ml_core::Result<DestinationCheck> {
    sink.check_destination(&Destination::new("slack", address))
        .await
}

/// `check` before the first send: a missing, archived or closed channel is refused with
/// Slack's code; a public channel the bot may join is ready; without `channels:read` the
/// sink says it cannot tell instead of guessing.
#[tokio::test]
async fn destinations_are_checked_without_sending() {
    let slack = unpaced().await;
    let ap = slack.add_channel(Channel::public("ap"));
    let quiet = slack.add_channel(Channel::public("quiet").without_bot());
    let old = slack.add_channel(Channel::public("old").archived());
    let closed = slack.add_channel(Channel::private("closed").without_bot());
    let sink = sink(&slack);
    assert_eq!(
        check(&sink, "#ap").await.expect("ready"),
        DestinationCheck::Ready(ap.clone())
    );
    assert_eq!(
        check(&sink, &ap).await.expect("ready"),
        DestinationCheck::Ready(ap.clone())
    );
    let DestinationCheck::Ready(joins) = check(&sink, &quiet).await.expect("joinable") else {
        panic!("not ready");
    };
    assert!(joins.contains("joins"), "{joins}");
    for (address, code) in [
        ("#nowhere", "channel_not_found"),
        ("C0NOWHERE1", "channel_not_found"),
        (old.as_str(), "is_archived"),
        ("#old", "channel_not_found"),
        (closed.as_str(), "channel_not_found"),
    ] {
        let e = check(&sink, address).await.expect_err(address);
        assert_eq!(e.code(), Some(code), "{address}: {e}");
        // A second unknown name within a minute is not listed again (asked later).
        if address != "#old" {
            assert_eq!(e.class(), ErrorClass::Permanent, "{address}");
        }
    }
    let stay_out = builder(&slack)
        .with_join_channels(false)
        .build()
        .expect("sink");
    let e = check(&stay_out, &quiet).await.expect_err("not a member");
    assert_eq!(e.code(), Some("not_in_channel"));
    assert!(slack.messages(&ap).is_empty() && slack.messages(&quiet).is_empty());

    let unread = builder(&slack)
        .with_bot_token(slack.add_bot_token_with_scopes("chat:write,chat:write.public"))
        .build()
        .expect("sink");
    for address in ["#ap", ap.as_str()] {
        let got = check(&unread, address).await.expect("not an error");
        assert!(
            matches!(&got, DestinationCheck::Unchecked(why) if why.contains("channels:read")),
            "{address}: {got:?}"
        );
    }
}
