//! Approvals from Slack into the IFS emulator, through ml-slack's receiver and the Slack
//! emulator's signed caller: ETag safety, exactly once, authorization, audit, forgery.

use std::collections::BTreeMap;
use std::sync::Arc;

use ml_core::AuditQuery as _;
use ml_core::memory::MemoryAuditStore;
use ml_ifs::approval::{
    APPROVE_ACTION_ID, ApprovalAction, Approvals, Approver, DEFAULT_STREAM, invoice_buttons,
};
use ml_ifs::{ApprovalOutcome, ApprovalRequest, IfsBuilder};
use ml_sandbox::Emulator as _;
use ml_sandbox::ifs::{IfsEmulator, invoice};
use ml_sandbox::server::Server;
use ml_sandbox::slack::{BlockActions, SendOptions, SlackEmulator, SlashCommand};
use ml_slack::SignatureVerifier;
use ml_slack::receiver::{SlackReceiver, router};
use ml_slack::responder::Responder;
use serde_json::json;

const SET: &str = "ManSuppInvoiceSet";
const KEY: &str = "Company='10',InvoiceId=7";
const APPROVER: &str = "U00HUMAN01";

struct World {
    ifs: IfsEmulator,
    slack: SlackEmulator,
    journal: Arc<MemoryAuditStore>,
    approvals: Arc<Approvals>,
    receiver: Arc<SlackReceiver>,
    _server: Server,
    url: String,
}

async fn world() -> World {
    world_with(Some("10")).await
}

/// The world, with IFS_COMPANY set to `company` (or unset).
async fn world_with(company: Option<&str>) -> World {
    let ifs = IfsEmulator::start().await.expect("ifs");
    ifs.insert(SET, &invoice("10", 7, "1250.00", "AwaitingApproval", None))
        .expect("invoice");
    let mut env = ml_core::config::MapEnv::new();
    for (k, v) in ifs.env() {
        env.set(k, v);
    }
    let mut builder = IfsBuilder::from_env_with(&env);
    if let Some(c) = company {
        builder = builder.with_company(c);
    }
    let source = builder.build().expect("source");
    let slack = SlackEmulator::start().await.expect("slack");
    let journal = Arc::new(MemoryAuditStore::new());
    let http = ml_core::http::ClientOptions::default()
        .client()
        .expect("http");
    let approvals = Arc::new(
        Approvals::for_source(&source)
            .with_approvers(BTreeMap::from([(
                APPROVER.to_owned(),
                Approver::new("ALICE", &[ApprovalAction::Approve, ApprovalAction::Reject]),
            )]))
            .with_journal(journal.clone(), DEFAULT_STREAM)
            .with_responder(
                Responder::new(http)
                    .with_allowed_base(&slack.root_url())
                    .expect("base"),
            ),
    );
    let verifier = SignatureVerifier::new(&slack.signing_secret().into());
    let receiver = Arc::new(SlackReceiver::new(verifier).with_handler(approvals.clone()));
    let server = Server::start(router(receiver.clone(), "/slack"))
        .await
        .expect("server");
    let url = format!("{}slack", server.base_url());
    World {
        ifs,
        slack,
        journal,
        approvals,
        receiver,
        _server: server,
        url,
    }
}

/// An approval of `invoice` by `user`, without a `response_url`.
fn approve(id: &str, user: &str, invoice: &str) -> ApprovalRequest {
    ApprovalRequest {
        request_id: id.into(),
        slack_user: user.into(),
        invoice: invoice.into(),
        action: ApprovalAction::Approve,
        response_url: None,
        seen_etag: None,
    }
}

impl World {
    /// The response_url answers once every request the receiver acknowledged so far was
    /// handled (the handler runs after the ack; the receiver counts it before the ack).
    async fn answers(&self) -> Vec<String> {
        self.receiver.idle().await;
        self.slack
            .response_url_posts()
            .iter()
            .map(|p| p.body["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn applied(&self) -> usize {
        self.ifs
            .action_calls()
            .iter()
            .filter(|c| c.status == 204)
            .count()
    }

    fn state(&self) -> String {
        self.ifs.get(SET, &["10", "7"]).expect("row")["Objstate"]
            .as_str()
            .expect("state")
            .to_owned()
    }
}

#[tokio::test]
async fn a_retried_slash_command_acts_once() {
    let w = world().await;
    let caller = w.slack.caller();
    let body =
        caller.slash_command_body(&SlashCommand::new("/approve-invoice", "7").user(APPROVER));
    let ct = "application/x-www-form-urlencoded";
    let first = caller
        .send_raw(
            &w.url,
            ct,
            body.clone().into_bytes(),
            &SendOptions::default(),
        )
        .await
        .expect("send");
    assert_eq!(first.status, 200, "acknowledged: {}", first.body);
    // Slack retries the same command (timed out on its side): a new timestamp and
    // signature, the same trigger_id.
    let now = w.slack.clock().now().as_second();
    let retry = caller
        .send_raw(
            &w.url,
            ct,
            body.into_bytes(),
            &SendOptions::default()
                .timestamp(now + 1)
                .retry(1, "http_timeout"),
        )
        .await
        .expect("retry");
    assert_eq!(retry.status, 200, "a retry is acknowledged");
    // Quiescence: both requests were acknowledged, so everything they started is done.
    let answers = w.answers().await;
    let progress = *w.receiver.progress().borrow();
    assert_eq!(
        progress.handed_off, 1,
        "the retry was not handed off: {progress:?}"
    );
    assert_eq!(answers.len(), 1, "one answer: {answers:?}");
    assert!(answers[0].contains("approved in IFS"), "{answers:?}");
    assert_eq!(w.applied(), 1);
    assert_eq!(w.ifs.action_calls().len(), 1, "one action request");
    assert_eq!(w.state(), "Approved");
    // The audit: who, IFS identity, record, version, outcome.
    let h = w
        .journal
        .record_history(DEFAULT_STREAM, KEY)
        .await
        .expect("history");
    // Its intent (journaled before IFS was asked), then its decision.
    assert_eq!(h.versions.len(), 2);
    assert_eq!(
        h.versions[0].record.fields.status.as_deref(),
        Some("started")
    );
    let raw = h.versions[1].record.raw.to_value();
    assert_eq!(raw["slack_user"], APPROVER);
    assert_eq!(raw["ifs_identity"], "ALICE");
    assert_eq!(raw["outcome"], "done");
    assert_eq!(raw["ifs_response"]["status"], 204);
    assert!(raw["etag"].as_str().is_some_and(|e| e.starts_with("W/")));
}

#[tokio::test]
async fn a_double_click_acts_once() {
    let w = world().await;
    let caller = w.slack.caller();
    let click = BlockActions::new(APPROVE_ACTION_ID, KEY).user(APPROVER);
    let (a, b) = tokio::join!(
        caller.send_block_actions(&w.url, &click),
        caller.send_block_actions(&w.url, &click)
    );
    assert_eq!(a.expect("a").status, 200);
    assert_eq!(b.expect("b").status, 200);
    let answers = w.answers().await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(w.applied(), 1, "{:?}", w.ifs.action_calls());
    assert!(
        answers.iter().any(|a| a.contains("already approved")),
        "{answers:?}"
    );
}

/// A button acts on the version its message showed: the amount changed in IFS after the
/// post, so Approve on the old message approves nothing and says why; the button of the
/// new version (posted as a reply) approves.
#[tokio::test]
async fn a_button_approves_only_the_version_it_was_posted_with() {
    let w = world().await;
    let etag_now = || {
        w.ifs.get(SET, &["10", "7"]).expect("row")["@odata.etag"]
            .as_str()
            .expect("etag")
            .to_owned()
    };
    let value_of = |etag: &str| {
        invoice_buttons(KEY, Some(etag))["elements"][0]["value"]
            .as_str()
            .expect("value")
            .to_owned()
    };
    let shown = value_of(&etag_now());
    w.ifs
        .update(SET, &["10", "7"], &json!({"GrossAmount": "987654.00"}))
        .expect("edit");
    let caller = w.slack.caller();
    let old_click = BlockActions::new(APPROVE_ACTION_ID, &shown)
        .user(APPROVER)
        .message_ts("1700000000.000100");
    caller
        .send_block_actions(&w.url, &old_click)
        .await
        .expect("click");
    let answers = w.answers().await;
    assert!(
        answers[0].contains("changed in IFS after this message was posted"),
        "{answers:?}"
    );
    let shown_to = |i: usize| w.slack.response_url_posts()[i].body["response_type"].clone();
    assert_eq!(
        shown_to(0),
        "ephemeral",
        "what changed nothing is for the clicker alone"
    );
    assert_eq!(w.applied(), 0, "nothing sent to IFS");
    assert_ne!(w.state(), "Approved");
    let new_click = BlockActions::new(APPROVE_ACTION_ID, value_of(&etag_now()))
        .user(APPROVER)
        .message_ts("1700000000.000200");
    caller
        .send_block_actions(&w.url, &new_click)
        .await
        .expect("click");
    let answers = w.answers().await;
    assert_eq!(w.applied(), 1, "{answers:?}");
    assert_eq!(w.state(), "Approved");
    assert_eq!(
        shown_to(1),
        "in_channel",
        "a decision is for everyone watching"
    );
}

#[tokio::test]
async fn an_approval_racing_an_edit_gets_a_conflict_and_overwrites_nothing() {
    let w = world().await;
    // Someone puts the invoice on hold between our re-read and our action.
    w.ifs
        .edit_before_next_action(SET, &["10", "7"], json!({"Objstate": "OnHold"}));
    let req = ApprovalRequest {
        request_id: "cmd:race".into(),
        slack_user: APPROVER.into(),
        invoice: "7".into(),
        action: ApprovalAction::Approve,
        response_url: None,
        seen_etag: None,
    };
    let outcome = w.approvals.decide(&req).await;
    match &outcome {
        ApprovalOutcome::Conflict { state, .. } => assert_eq!(state.as_deref(), Some("OnHold")),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(
        outcome
            .message(ApprovalAction::Approve)
            .contains("NOT approved")
    );
    let calls = w.ifs.action_calls();
    assert_eq!(calls.len(), 1, "never retried blindly: {calls:?}");
    assert_eq!(calls[0].status, 412);
    assert_eq!(w.state(), "OnHold", "no overwrite");
    // The same request again (a replay after a restart of the receiver's cache) does
    // not act: the journal knows it.
    let again = w.approvals.decide(&req).await;
    assert!(
        matches!(again, ApprovalOutcome::Duplicate { .. }),
        "{again:?}"
    );
    assert_eq!(w.ifs.action_calls().len(), 1);
}

#[tokio::test]
async fn wrong_state_forbidden_and_missing_are_explained() {
    let w = world().await;
    w.ifs
        .insert(SET, &invoice("10", 8, "5.00", "Posted", None))
        .expect("posted");
    let req = |id: &str, invoice: &str| approve(id, APPROVER, invoice);
    let o = w.approvals.decide(&req("a", "8")).await;
    assert!(matches!(o, ApprovalOutcome::WrongState { .. }), "{o:?}");
    assert!(o.message(ApprovalAction::Approve).contains("Posted"));
    let o = w.approvals.decide(&req("b", "999")).await;
    assert!(matches!(o, ApprovalOutcome::NotFound { .. }), "{o:?}");
    w.ifs.deny_action(SET, "Approve");
    let o = w.approvals.decide(&req("c", "7")).await;
    assert!(matches!(o, ApprovalOutcome::Forbidden { .. }), "{o:?}");
    let o = w.approvals.decide(&req("d", "seven")).await;
    assert!(matches!(o, ApprovalOutcome::Invalid { .. }), "{o:?}");
    // The document number shown in Slack (INV-8) finds the invoice too.
    let o = w.approvals.decide(&req("e", "INV-8")).await;
    assert!(
        matches!(&o, ApprovalOutcome::Forbidden { key, .. } if key == "Company='10',InvoiceId=8"),
        "{o:?}"
    );
    assert_eq!(w.state(), "AwaitingApproval");
}

/// What an approver typed is shown, never interpreted: `<!channel>` in an unknown invoice
/// reference would have pinged the whole channel. An invoice not found concerns the
/// requester alone.
#[tokio::test]
async fn typed_text_is_escaped_and_an_unknown_invoice_answered_privately() {
    let w = world().await;
    let caller = w.slack.caller();
    let r = caller
        .send_slash_command(
            &w.url,
            &SlashCommand::new("/approve-invoice", "Company='10',InvoiceId=<!channel>")
                .user(APPROVER),
        )
        .await
        .expect("send");
    assert_eq!(r.status, 200);
    let answers = w.answers().await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(!answers[0].contains("<!channel>"), "{answers:?}");
    assert!(answers[0].contains("&lt;!channel&gt;"), "{answers:?}");
    assert_eq!(
        w.slack.response_url_posts()[0].body["response_type"],
        "ephemeral"
    );
    assert!(w.ifs.action_calls().is_empty());
}

#[tokio::test]
async fn an_unauthorised_user_is_refused_and_the_refusal_journaled() {
    let w = world().await;
    let caller = w.slack.caller();
    let r = caller
        .send_slash_command(
            &w.url,
            &SlashCommand::new("/approve-invoice", "7").user("U0MALLORY"),
        )
        .await
        .expect("send");
    assert_eq!(r.status, 200);
    let answers = w.answers().await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(answers[0].contains("not allowed"), "{answers:?}");
    assert_eq!(
        w.slack.response_url_posts()[0].body["response_type"],
        "ephemeral"
    );
    assert!(w.ifs.action_calls().is_empty());
    let h = w
        .journal
        .record_history(DEFAULT_STREAM, KEY)
        .await
        .expect("history");
    assert_eq!(h.versions.len(), 1);
    assert_eq!(
        h.versions[0].record.fields.status.as_deref(),
        Some("refused")
    );
    assert_eq!(
        h.versions[0].record.raw.to_value()["slack_user"],
        "U0MALLORY"
    );
}

#[tokio::test]
async fn a_bare_invoice_id_is_found_without_a_company() {
    let w = world_with(None).await;
    w.ifs
        .insert(SET, &invoice("20", 9, "5.00", "AwaitingApproval", None))
        .expect("other company");
    w.ifs
        .insert(SET, &invoice("20", 7, "5.00", "AwaitingApproval", None))
        .expect("same id, other company");
    let req = |id: &str, invoice: &str| approve(id, APPROVER, invoice);
    // `/approve-invoice 9`: one invoice has id 9, in company 20.
    let o = w.approvals.decide(&req("a", "9")).await;
    assert!(
        matches!(&o, ApprovalOutcome::Done { key, .. } if key == "Company='20',InvoiceId=9"),
        "{o:?}"
    );
    // Id 7 is in two companies: nothing is acted on, the full key is asked for.
    let o = w.approvals.decide(&req("b", "7")).await;
    assert!(matches!(o, ApprovalOutcome::Invalid { .. }), "{o:?}");
    assert_eq!(w.state(), "AwaitingApproval");
    assert_eq!(w.applied(), 1);
}

/// With IFS_COMPANY set, the connector reads one company and acts on that company only: a
/// full key typed for another company is refused (and journaled), not approved.
#[tokio::test]
async fn an_invoice_of_another_company_is_not_acted_on() {
    let w = world().await; // IFS_COMPANY = 10
    w.ifs
        .insert(SET, &invoice("20", 9, "5.00", "AwaitingApproval", None))
        .expect("other company");
    let o = w
        .approvals
        .decide(&approve("x", APPROVER, "Company='20',InvoiceId=9"))
        .await;
    match &o {
        ApprovalOutcome::Refused { reason } => {
            assert!(
                reason.contains("company 20") && reason.contains("company 10"),
                "{reason}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(w.ifs.action_calls().is_empty());
    assert_eq!(
        w.ifs.get(SET, &["20", "9"]).expect("row")["Objstate"],
        "AwaitingApproval"
    );
    let h = w
        .journal
        .record_history(DEFAULT_STREAM, "Company='20',InvoiceId=9")
        .await
        .expect("history");
    assert_eq!(
        h.versions
            .last()
            .and_then(|v| v.record.fields.status.as_deref()),
        Some("refused")
    );
    // Its own company's invoice, by the same full-key form, goes through.
    let o = w
        .approvals
        .decide(&approve("y", APPROVER, "Company='10',InvoiceId=7"))
        .await;
    assert!(matches!(o, ApprovalOutcome::Done { .. }), "{o:?}");
}

#[tokio::test]
async fn an_unauthorised_user_learns_nothing_about_which_invoices_exist() {
    let w = world().await;
    let req = |id: &str, invoice: &str| approve(id, "U0MALLORY", invoice);
    let known = w.approvals.decide(&req("a", "INV-7")).await;
    let unknown = w.approvals.decide(&req("b", "INV-999")).await;
    assert!(
        matches!(known, ApprovalOutcome::Refused { .. }),
        "{known:?}"
    );
    assert_eq!(
        known.message(ApprovalAction::Approve),
        unknown.message(ApprovalAction::Approve)
    );
    assert!(w.ifs.action_calls().is_empty());
}

#[tokio::test]
async fn forged_and_stale_requests_are_refused() {
    let w = world().await;
    let caller = w.slack.caller();
    let cmd = SlashCommand::new("/approve-invoice", "7").user(APPROVER);
    let forged = caller
        .send_slash_command_with(
            &w.url,
            &cmd,
            &SendOptions::default().signature(format!("v0={}", "0".repeat(64))),
        )
        .await
        .expect("forged");
    assert_eq!(forged.status, 401, "{}", forged.body);
    let now = w.slack.clock().now().as_second();
    let stale = caller
        .send_slash_command_with(&w.url, &cmd, &SendOptions::default().timestamp(now - 600))
        .await
        .expect("stale");
    assert_eq!(stale.status, 401, "{}", stale.body);
    let unsigned = caller
        .send_slash_command_with(&w.url, &cmd, &SendOptions::default().unsigned())
        .await
        .expect("unsigned");
    assert!(unsigned.status >= 400);
    // Nothing was handed off (refused before the hand-off), so nothing can still run.
    w.receiver.idle().await;
    assert_eq!(
        *w.receiver.progress().borrow(),
        ml_slack::receiver::HandlerProgress::default()
    );
    assert!(w.ifs.action_calls().is_empty());
    assert!(w.slack.response_url_posts().is_empty());
    assert_eq!(w.state(), "AwaitingApproval");
}

#[tokio::test]
async fn the_emulator_requires_if_match() {
    let w = world().await;
    let http = ml_core::http::ClientOptions::default()
        .client()
        .expect("http");
    let token: serde_json::Value = http
        .post(w.ifs.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", w.ifs.client_id()),
            ("client_secret", w.ifs.client_secret()),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let url = format!(
        "{}/ManualSupplierInvoiceHandling.svc/ManSuppInvoiceSet(Company='10',InvoiceId=7)/IfsApp.ManualSupplierInvoiceHandling.ManSuppInvoice_Approve",
        w.ifs.service_root()
    );
    let r = http
        .post(&url)
        .bearer_auth(token["access_token"].as_str().expect("t"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 428);
    assert_eq!(w.state(), "AwaitingApproval");
}

/// IFS carries the action out but the gateway answers 503: the retry meets a new ETag
/// (412) on an approved invoice. This request approved it; the journal says so, and no
/// second action went through.
#[tokio::test]
async fn an_action_applied_behind_a_503_is_journaled_as_done() {
    use ml_sandbox::fault::{Fault, FaultRule};
    let w = world().await;
    w.ifs.faults().push(FaultRule::on(
        "IfsApp.ManualSupplierInvoiceHandling.ManSuppInvoice_Approve",
        Fault::AppliedThenStatus(503),
    ));
    let req = ApprovalRequest {
        request_id: "cmd:lost-answer".into(),
        slack_user: APPROVER.into(),
        invoice: "7".into(),
        action: ApprovalAction::Approve,
        response_url: None,
        seen_etag: None,
    };
    let o = w.approvals.decide(&req).await;
    assert!(matches!(o, ApprovalOutcome::Done { .. }), "{o:?}");
    assert_eq!(w.state(), "Approved");
    assert_eq!(w.applied(), 1, "{:?}", w.ifs.action_calls());
    let h = w
        .journal
        .record_history(DEFAULT_STREAM, KEY)
        .await
        .expect("history");
    assert_eq!(h.versions[1].record.fields.status.as_deref(), Some("done"));
}

/// IFS carries the action out and the answer never comes (the connection drops, as on a
/// timeout): the request is not reported "could not approve" while IFS shows it approved;
/// the re-read says it was done, and the journal credits this request.
#[tokio::test]
async fn an_action_applied_without_an_answer_is_journaled_as_done() {
    use ml_sandbox::fault::{Fault, FaultRule};
    let w = world().await;
    w.ifs.faults().push(FaultRule::on(
        "IfsApp.ManualSupplierInvoiceHandling.ManSuppInvoice_Approve",
        Fault::AppliedThenDropped,
    ));
    let req = ApprovalRequest {
        request_id: "cmd:no-answer".into(),
        slack_user: APPROVER.into(),
        invoice: "7".into(),
        action: ApprovalAction::Approve,
        response_url: None,
        seen_etag: None,
    };
    let o = w.approvals.decide(&req).await;
    assert!(matches!(o, ApprovalOutcome::Done { .. }), "{o:?}");
    assert_eq!(w.state(), "Approved");
    assert_eq!(w.applied(), 1, "{:?}", w.ifs.action_calls());
}

/// The journal says who asked for what before IFS is asked: a process that dies while
/// IFS applies the action (here: the decision dropped mid-call) leaves a `started` entry,
/// and the same request retried later is carried out, not refused as handled.
#[tokio::test]
async fn an_approval_is_journaled_as_started_before_ifs_is_asked() {
    use ml_sandbox::fault::{Fault, FaultRule};
    let w = world().await;
    let statuses = |w: &World| {
        let journal = w.journal.clone();
        async move {
            journal
                .record_history(DEFAULT_STREAM, KEY)
                .await
                .expect("history")
                .versions
                .iter()
                .map(|v| {
                    (
                        v.record.version.clone().unwrap_or_default(),
                        v.record.fields.status.clone().unwrap_or_default(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    w.ifs.faults().push(FaultRule::on(
        "IfsApp.ManualSupplierInvoiceHandling.ManSuppInvoice_Approve",
        Fault::Latency(std::time::Duration::from_secs(30)),
    ));
    let req = approve("cmd:killed", APPROVER, "7");
    let cut =
        tokio::time::timeout(std::time::Duration::from_secs(2), w.approvals.decide(&req)).await;
    assert!(cut.is_err(), "the decision was cut off mid-action");
    assert_eq!(
        statuses(&w).await,
        [("cmd:killed:started".to_owned(), "started".to_owned())]
    );
    w.ifs.faults().clear();
    let o = w.approvals.decide(&req).await;
    assert!(
        matches!(
            o,
            ApprovalOutcome::Done { .. } | ApprovalOutcome::AlreadyDone { .. }
        ),
        "{o:?}"
    );
    assert_eq!(w.state(), "Approved");
    let h = statuses(&w).await;
    assert_eq!(h.len(), 2, "the retry's intent is the same entry: {h:?}");
    assert_eq!(h[1].0, "cmd:killed", "{h:?}");
}

#[tokio::test]
async fn slack_is_answered_within_3_seconds_even_when_ifs_is_slow() {
    use ml_sandbox::fault::{Fault, FaultRule};
    let w = world().await;
    // The re-read of the invoice takes 3.5 s.
    w.ifs
        .faults()
        .push(FaultRule::any(Fault::Latency(std::time::Duration::from_millis(3500))).times(1));
    let started = std::time::Instant::now();
    let r = w
        .slack
        .caller()
        .send_slash_command(
            &w.url,
            &SlashCommand::new("/approve-invoice", "7").user(APPROVER),
        )
        .await
        .expect("send");
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "acknowledged before the work: {:?}",
        started.elapsed()
    );
    let answers = w.answers().await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(answers[0].contains("approved in IFS"), "{answers:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(3500));
}

#[tokio::test]
async fn a_request_handled_before_a_restart_is_not_acted_on_again() {
    let w = world().await;
    let req = ApprovalRequest {
        request_id: "cmd:before-restart".into(),
        slack_user: APPROVER.into(),
        invoice: "7".into(),
        action: ApprovalAction::Approve,
        response_url: None,
        seen_etag: None,
    };
    let first = w.approvals.decide(&req).await;
    assert!(matches!(first, ApprovalOutcome::Done { .. }), "{first:?}");
    // A new process (nothing in memory) sharing the journal gets Slack's retry.
    let mut env = ml_core::config::MapEnv::new();
    for (k, v) in w.ifs.env() {
        env.set(k, v);
    }
    let source = IfsBuilder::from_env_with(&env)
        .with_company("10")
        .build()
        .expect("source");
    let restarted = Approvals::for_source(&source)
        .with_approvers(BTreeMap::from([(
            APPROVER.to_owned(),
            Approver::new("ALICE", &[ApprovalAction::Approve]),
        )]))
        .with_journal(w.journal.clone(), DEFAULT_STREAM);
    let again = restarted.decide(&req).await;
    assert!(
        matches!(&again, ApprovalOutcome::Duplicate { previous } if previous == "done"),
        "{again:?}"
    );
    assert_eq!(w.ifs.action_calls().len(), 1);
}
