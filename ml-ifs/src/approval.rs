//! Approvals from Slack back into IFS, ETag-safe and exactly once.
//!
//! [`Approvals`] is a [`SlackHandler`]: mount it behind ml-slack's [`SlackReceiver`]
//! (which verifies the signature, the 5-minute window and replays, acknowledges within
//! Slack's 3 seconds and dedupes retries by `trigger_id`), and it handles
//! `/approve-invoice <id>` (and `/approve-invoice reject <id>`) and the Approve / Reject
//! buttons of [`invoice_buttons`] (`block_actions`):
//!
//! 1. **Authorization**: the Slack user must be in the approver map with the action
//!    allowed; anyone else gets an ephemeral refusal, and the refusal is journaled.
//! 2. **Exactly once**: a request id (the command's `trigger_id`, the button's
//!    `action_ts`) already handled is answered from memory or the journal without acting;
//!    one invoice is handled by one request at a time, and a request that finds the
//!    invoice already in the target state does not act (a double click answers "already
//!    approved").
//! 3. **The action**: re-read the invoice for a fresh `@odata.etag`, then `POST
//!    <Set>(<keys>)/IfsApp.<Projection>.<Entity>_Approve` with `If-Match`. 412 (changed
//!    since the read) is shown as a conflict with the current state and never retried;
//!    428, 400 (wrong state) and 403 are explained; 429/503 answers are retried (safe:
//!    `If-Match` makes a repeat fail with 412 rather than act twice).
//! 4. **Audit**: every decision is a record on the journal stream (default
//!    `ifs.approvals`), keyed by the invoice key, version = the request id, its raw JSON
//!    holding who (Slack user, IFS identity), when, the record and ETag, the outcome and
//!    IFS's answer: `ml-connector audit show ifs.approvals "Company='10',InvoiceId=1234"`.
//!    Before IFS is asked to act, a `started` entry (version `<request id>:started`) is
//!    journaled, so a process that dies between IFS applying the action and journaling
//!    its outcome still leaves who asked for what.
//! 5. **Answer**: through the request's `response_url` (ephemeral for refusals).
//!
//! [`SlackReceiver`]: ml_slack::SlackReceiver

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use ml_core::AuditStore;
use ml_core::audit::{CycleEnd, PageCommit, PlannedRecord};
use ml_core::clock::{Clock, SystemClock};
use ml_core::cursor::Position;
use ml_core::record::{BusinessFields, EntityKind, RawJson, Record};
use ml_slack::events::{Inbound, Interaction, Received};
use ml_slack::receiver::SlackHandler;
use ml_slack::responder::{Responder, ResponseMessage, ResponseType};
use serde_json::{Value, json};

use crate::error::IfsError;
use crate::odata::{ODataClient, retry_refusals};
use crate::resource::ResourceSpec;

/// The default slash command.
pub const DEFAULT_COMMAND: &str = "/approve-invoice";
/// The default journal stream of approvals.
pub const DEFAULT_STREAM: &str = "ifs.approvals";
/// The `action_id` of the Approve button.
pub const APPROVE_ACTION_ID: &str = "ifs_invoice_approve";
/// The `action_id` of the Reject button.
pub const REJECT_ACTION_ID: &str = "ifs_invoice_reject";

/// What an approver may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApprovalAction {
    /// `<Entity>_Approve`.
    Approve,
    /// `<Entity>_Reject`.
    Reject,
}

impl ApprovalAction {
    /// The bound action suffix (`Approve`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Approve => "Approve",
            Self::Reject => "Reject",
        }
    }

    /// Parses `approve` / `reject`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "approve" => Some(Self::Approve),
            "reject" => Some(Self::Reject),
            _ => None,
        }
    }

    fn past(self) -> &'static str {
        match self {
            Self::Approve => "approved",
            Self::Reject => "rejected",
        }
    }
}

/// A Slack user allowed to act, with the IFS identity acting is attributed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approver {
    /// The IFS user the action is attributed to in the audit.
    pub ifs_identity: String,
    /// What the user may do.
    pub actions: BTreeSet<ApprovalAction>,
}

impl Approver {
    /// An approver mapped to `ifs_identity`, allowed `actions`.
    pub fn new(ifs_identity: impl Into<String>, actions: &[ApprovalAction]) -> Self {
        Self {
            ifs_identity: ifs_identity.into(),
            actions: actions.iter().copied().collect(),
        }
    }

    /// Parses an approver map: `U123=ALICE:approve+reject;U456=BOB:approve`.
    pub fn parse_map(s: &str) -> ml_core::Result<BTreeMap<String, Self>> {
        let bad = |m: String| ml_core::Error::config("approvers", m);
        let mut out = BTreeMap::new();
        for entry in s
            .split([';', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (user, rest) = entry
                .split_once('=')
                .ok_or_else(|| bad(format!("`{entry}` is not USER=IDENTITY:ACTIONS")))?;
            let (identity, actions) = rest.split_once(':').unwrap_or((rest, "approve"));
            let actions: Option<Vec<ApprovalAction>> = actions
                .split(['+', ','])
                .map(ApprovalAction::parse)
                .collect();
            let actions =
                actions.ok_or_else(|| bad(format!("`{entry}`: actions are approve, reject")))?;
            if user.trim().is_empty() || identity.trim().is_empty() {
                return Err(bad(format!("`{entry}` names no user or identity")));
            }
            let user = user.trim();
            if out
                .insert(user.to_owned(), Self::new(identity.trim(), &actions))
                .is_some()
            {
                // Which one holds would be an accident of order: refused, not guessed.
                return Err(bad(format!("Slack user `{user}` is listed twice")));
            }
        }
        Ok(out)
    }
}

/// One request to act on an invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// What makes the request unique (a retry carries the same id).
    pub request_id: String,
    /// The Slack user id.
    pub slack_user: String,
    /// The invoice: its record key (`Company='10',InvoiceId=1234`) or, with a company
    /// configured, its last key value (`1234`).
    pub invoice: String,
    /// What to do.
    pub action: ApprovalAction,
    /// Where to answer.
    pub response_url: Option<String>,
    /// The ETag of the version the user saw (an Approve / Reject button carries the one
    /// of the message it sits on): when the invoice has changed since, nothing is done and
    /// the user is told to look at the new version. `None`: a typed command, which acts on
    /// the current version.
    pub seen_etag: Option<String>,
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// The action was applied.
    Done {
        /// The invoice key.
        key: String,
        /// The ETag the action was sent with.
        etag: String,
        /// The state after the action (re-read), when known.
        state: Option<String>,
    },
    /// The invoice is already in the target state: nothing sent.
    AlreadyDone {
        /// The invoice key.
        key: String,
        /// Its state.
        state: Option<String>,
    },
    /// 412: the invoice changed between the read and the action. Not retried.
    Conflict {
        /// The invoice key.
        key: String,
        /// Its current state.
        state: Option<String>,
        /// IFS's message.
        message: String,
    },
    /// 400: IFS refused the action in the invoice's state.
    WrongState {
        /// The invoice key.
        key: String,
        /// Its state at the read.
        state: Option<String>,
        /// IFS's message.
        message: String,
    },
    /// 428: IFS wanted an `If-Match` it did not get.
    PreconditionRequired {
        /// The invoice key.
        key: String,
    },
    /// 403: the integration user may not run the action.
    Forbidden {
        /// The invoice key.
        key: String,
        /// IFS's message.
        message: String,
    },
    /// No such invoice.
    NotFound {
        /// The invoice key.
        key: String,
    },
    /// The Slack user may not do this.
    Refused {
        /// Why.
        reason: String,
    },
    /// The request could not be understood.
    Invalid {
        /// Why.
        reason: String,
    },
    /// The request was handled before (a retry or a replay): not acted on again.
    Duplicate {
        /// The earlier outcome's label.
        previous: String,
    },
    /// IFS could not be reached or failed.
    Failed {
        /// The invoice key.
        key: String,
        /// What happened.
        message: String,
    },
}

impl ApprovalOutcome {
    /// A stable label (`done`, `conflict`, `refused`, ...).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Done { .. } => "done",
            Self::AlreadyDone { .. } => "already_done",
            Self::Conflict { .. } => "conflict",
            Self::WrongState { .. } => "wrong_state",
            Self::PreconditionRequired { .. } => "precondition_required",
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound { .. } => "not_found",
            Self::Refused { .. } => "refused",
            Self::Invalid { .. } => "invalid",
            Self::Duplicate { .. } => "duplicate",
            Self::Failed { .. } => "failed",
        }
    }

    /// The text shown in Slack.
    pub fn message(&self, action: ApprovalAction) -> String {
        let st = |s: &Option<String>| s.clone().unwrap_or_else(|| "unknown".into());
        match self {
            Self::Done { key, state, .. } => {
                format!(
                    "Invoice {key} {} in IFS (state: {}).",
                    action.past(),
                    st(state)
                )
            }
            Self::AlreadyDone { key, state } => format!(
                "Invoice {key} is already {} (state: {}); nothing was sent.",
                action.past(),
                st(state)
            ),
            Self::Conflict {
                key,
                state,
                message,
            } => format!(
                "Conflict: invoice {key} changed in IFS since it was read (now {}); it was NOT {}. Check it and try again. ({message})",
                st(state),
                action.past()
            ),
            Self::WrongState {
                key,
                state,
                message,
            } => format!(
                "IFS refused to {} invoice {key} in state {}: {message}",
                action.name().to_ascii_lowercase(),
                st(state)
            ),
            Self::PreconditionRequired { key } => format!(
                "IFS requires the invoice's current version (If-Match) to change {key}; nothing was changed."
            ),
            Self::Forbidden { key, message } => format!(
                "The IFS integration user may not {} invoice {key} (permission set): {message}",
                action.name().to_ascii_lowercase()
            ),
            Self::NotFound { key } => format!("Invoice {key} was not found in IFS."),
            Self::Refused { reason } | Self::Invalid { reason } => reason.clone(),
            Self::Duplicate { previous } => {
                format!("This request was already handled ({previous}); nothing was sent again.")
            }
            Self::Failed { key, message } => format!(
                "Could not {} invoice {key}: {message}. Nothing is retried automatically; try again later.",
                action.name().to_ascii_lowercase()
            ),
        }
    }
}

/// The `action_id`s of the Approve / Reject buttons ([`invoice_buttons`]).
pub fn invoice_action_ids() -> [&'static str; 2] {
    [APPROVE_ACTION_ID, REJECT_ACTION_ID]
}

/// The Approve / Reject buttons for an invoice record (an `actions` block). The value is
/// the record key, with the ETag of the version shown when known (`{"k": key, "e":
/// etag}`), so a click acts on the version the approver saw or not at all.
pub fn invoice_buttons(record_key: &str, etag: Option<&str>) -> Value {
    let value = match etag {
        Some(e) => json!({"k": record_key, "e": e}).to_string(),
        None => record_key.to_owned(),
    };
    json!({
        "type": "actions",
        "block_id": "ifs_invoice_actions",
        "elements": [
            {"type": "button", "action_id": APPROVE_ACTION_ID, "style": "primary",
             "text": {"type": "plain_text", "text": "Approve"}, "value": value},
            {"type": "button", "action_id": REJECT_ACTION_ID, "style": "danger",
             "text": {"type": "plain_text", "text": "Reject"}, "value": value},
        ]
    })
}

/// A button's value: the record key and, from buttons that carry it, the ETag shown.
fn button_value(value: &str) -> (String, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Value {
        k: String,
        e: Option<String>,
    }
    match serde_json::from_str::<Value>(value) {
        Ok(v) => (v.k, v.e),
        Err(_) => (value.to_owned(), None),
    }
}

/// Handles approvals (see the module docs).
pub struct Approvals {
    odata: ODataClient,
    collection_url: String,
    spec: ResourceSpec,
    company: Option<String>,
    approvers: BTreeMap<String, Approver>,
    done_states: BTreeMap<ApprovalAction, Vec<String>>,
    journal: Option<Arc<dyn AuditStore>>,
    stream: String,
    responder: Option<Responder>,
    command: String,
    clock: Arc<dyn Clock>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    handled: Mutex<HashMap<String, &'static str>>,
}

impl fmt::Debug for Approvals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Approvals")
            .field("collection_url", &self.collection_url)
            .field("approvers", &self.approvers.keys().collect::<Vec<_>>())
            .field("stream", &self.stream)
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

impl Approvals {
    /// Approvals on the entity set `spec` at `collection_url` through `odata`, for invoices
    /// of `company` (used when a command names only the last key value).
    pub fn new(
        odata: ODataClient,
        collection_url: impl Into<String>,
        spec: ResourceSpec,
        company: Option<String>,
    ) -> Self {
        let done_states = BTreeMap::from([
            (ApprovalAction::Approve, vec!["Approved".to_owned()]),
            (ApprovalAction::Reject, vec!["Rejected".to_owned()]),
        ]);
        Self {
            odata,
            collection_url: collection_url.into(),
            spec,
            company,
            approvers: BTreeMap::new(),
            done_states,
            journal: None,
            stream: DEFAULT_STREAM.to_owned(),
            responder: None,
            command: DEFAULT_COMMAND.to_owned(),
            clock: Arc::new(SystemClock),
            locks: Mutex::new(HashMap::new()),
            handled: Mutex::new(HashMap::new()),
        }
    }

    /// Approvals for the source's entity set, client and company.
    pub fn for_source(source: &crate::IfsSource) -> Self {
        Self::new(
            source.odata().clone(),
            source.collection_url(),
            source.spec().clone(),
            source.company().map(str::to_owned),
        )
    }

    /// The Slack user -> IFS identity map.
    #[must_use]
    pub fn with_approvers(mut self, approvers: BTreeMap<String, Approver>) -> Self {
        self.approvers = approvers;
        self
    }

    /// The states that mean `action` is already done (default `Approved`, `Rejected`).
    #[must_use]
    pub fn with_done_states(mut self, action: ApprovalAction, states: Vec<String>) -> Self {
        self.done_states.insert(action, states);
        self
    }

    /// Journals every decision on `stream` of `journal`.
    #[must_use]
    pub fn with_journal(mut self, journal: Arc<dyn AuditStore>, stream: impl Into<String>) -> Self {
        self.journal = Some(journal);
        self.stream = stream.into();
        self
    }

    /// Answers through `response_url`s with `responder`.
    #[must_use]
    pub fn with_responder(mut self, responder: Responder) -> Self {
        self.responder = Some(responder);
        self
    }

    /// The slash command handled (default `/approve-invoice`).
    #[must_use]
    pub fn with_command(mut self, command: impl Into<String>) -> Self {
        self.command = command.into();
        self
    }

    /// The slash command handled.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The journal stream decisions are written to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The clock of audit times.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The request an inbound Slack item stands for, if it is one of ours.
    pub fn request_from(&self, received: &Received) -> Option<ApprovalRequest> {
        match &received.inbound {
            Inbound::SlashCommand(c) if c.command.trim() == self.command => {
                let mut words = c.text.split_whitespace();
                let first = words.next().unwrap_or_default();
                let (action, invoice) = match ApprovalAction::parse(first) {
                    Some(a) => (a, words.next().unwrap_or_default()),
                    None => (ApprovalAction::Approve, first),
                };
                let id = c.trigger_id.clone().unwrap_or_else(|| {
                    format!(
                        "{}:{}:{}",
                        c.user_id,
                        c.text,
                        received.received_at.as_second()
                    )
                });
                Some(ApprovalRequest {
                    request_id: format!("cmd:{id}"),
                    slack_user: c.user_id.clone(),
                    invoice: invoice.to_owned(),
                    action,
                    response_url: c.response_url.clone(),
                    seen_etag: None,
                })
            }
            Inbound::Interaction(Interaction::BlockActions(b)) => {
                let a = b.actions.iter().find(|a| {
                    a.action_id == APPROVE_ACTION_ID || a.action_id == REJECT_ACTION_ID
                })?;
                let action = if a.action_id == APPROVE_ACTION_ID {
                    ApprovalAction::Approve
                } else {
                    ApprovalAction::Reject
                };
                let (invoice, seen_etag) = button_value(a.value.as_deref().unwrap_or_default());
                Some(ApprovalRequest {
                    request_id: format!(
                        "btn:{}:{}:{}",
                        b.user.id,
                        b.message_ts.clone().unwrap_or_default(),
                        a.action_ts.clone().unwrap_or_default()
                    ),
                    slack_user: b.user.id.clone(),
                    invoice,
                    action,
                    response_url: b.response_url.clone(),
                    seen_etag,
                })
            }
            _ => None,
        }
    }

    /// The key values of what the user typed or the button carried.
    fn key_values(&self, invoice: &str) -> Option<Vec<String>> {
        let invoice = invoice.trim();
        if invoice.is_empty() {
            return None;
        }
        if let Some(v) = self.spec.key_values(invoice) {
            return Some(v);
        }
        // `/approve-invoice 1234` with IFS_COMPANY set: the company completes the key.
        match (
            &self.company,
            self.spec.company.as_deref(),
            self.spec.keys.as_slice(),
        ) {
            (Some(c), Some(attr), [first, last]) if first.name == attr => last
                .literal(invoice)
                .map(|_| vec![c.clone(), invoice.to_owned()]),
            _ => None,
        }
    }

    /// The company of `values` when IFS_COMPANY is set and it is another one.
    fn outside_company(&self, values: &[String]) -> Option<String> {
        let company = self.company.as_deref()?;
        let attr = self.spec.company.as_deref()?;
        let i = self.spec.keys.iter().position(|k| k.name == attr)?;
        let theirs = values.get(i)?;
        (theirs != company).then(|| theirs.clone())
    }

    /// The keys of the one invoice whose document number (`InvoiceNo`, what the Slack
    /// message shows) is `text`, within the company when one is configured; else, for a
    /// bare number without IFS_COMPANY (`/approve-invoice 5003`), of the one invoice
    /// whose last key (`InvoiceId`) it is, in whichever company. Several matches find
    /// nothing: the user is asked for the full key.
    async fn find_by_document(&self, text: &str) -> Option<Vec<String>> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let company = match (&self.company, &self.spec.company) {
            (Some(c), Some(attr)) => {
                Some(format!("{attr} eq {}", crate::odata::literal::string(c)))
            }
            _ => None,
        };
        let within = |f: String| match &company {
            Some(c) => format!("{c} and {f}"),
            None => f,
        };
        if let Some(doc) = self.spec.document.as_deref()
            && !self.spec.keys.iter().any(|k| k.name == doc)
        {
            let filter = within(format!("{doc} eq {}", crate::odata::literal::string(text)));
            if let Some(found) = self.find_one(filter).await {
                return Some(found);
            }
        }
        match self.spec.keys.as_slice() {
            [_, .., last] if company.is_none() => {
                let value = last.literal(text)?;
                self.find_one(format!("{} eq {value}", last.name)).await
            }
            _ => None,
        }
    }

    /// The keys of the one invoice `filter` selects (`None` for none, several, or a
    /// failed read).
    async fn find_one(&self, filter: String) -> Option<Vec<String>> {
        let query = crate::odata::ODataQuery::new()
            .filter(filter)
            .select(self.spec.keys.iter().map(|k| k.name.clone()))
            .top(2);
        let page = retry_refusals(4, Duration::from_secs(10), || {
            self.odata.get_collection(&self.collection_url, &query)
        })
        .await
        .ok()?;
        let [one] = page.items.as_slice() else {
            return None;
        };
        let v: Value = serde_json::from_str(one.get()).ok()?;
        self.spec
            .keys
            .iter()
            .map(|k| match &v[&k.name] {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect()
    }

    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut g = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(g.entry(key.to_owned()).or_default())
    }

    async fn previously(&self, key: &str, request_id: &str) -> Option<String> {
        if let Some(l) = self
            .handled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(request_id)
        {
            return Some((*l).to_owned());
        }
        let journal = self.journal.as_ref()?;
        let h = journal.record_history(&self.stream, key).await.ok()?;
        h.versions
            .iter()
            .find(|v| v.record.version.as_deref() == Some(request_id))
            .map(|v| v.record.fields.status.clone().unwrap_or_default())
    }

    /// Decides and carries out one request (see the module docs); journals it.
    pub async fn decide(&self, req: &ApprovalRequest) -> ApprovalOutcome {
        // Who may act is settled before IFS is asked anything: a user who may not act
        // learns nothing about which invoices exist, and costs IFS no query.
        let approver = self
            .approvers
            .get(&req.slack_user)
            .filter(|a| a.actions.contains(&req.action));
        let Some(approver) = approver else {
            let key = self
                .key_values(&req.invoice)
                .and_then(|v| self.spec.record_key(&v))
                .unwrap_or_else(|| req.invoice.trim().to_owned());
            let outcome = ApprovalOutcome::Refused {
                reason: format!(
                    "You are not allowed to {} invoices from Slack. Ask an administrator to add you to the IFS approver map.",
                    req.action.name().to_ascii_lowercase()
                ),
            };
            tracing::warn!(user = %req.slack_user, invoice = %key, "approval refused: not an approver");
            self.journal(req, &key, None, None, &outcome, None).await;
            return outcome;
        };
        let values = match self.key_values(&req.invoice) {
            Some(v) => Some(v),
            None => self.find_by_document(&req.invoice).await,
        };
        let Some(values) = values else {
            let outcome = ApprovalOutcome::Invalid {
                reason: format!(
                    "`{}` is not an invoice id or number (or matches several). Usage: {} <invoice id> (or {} reject <invoice id>)",
                    req.invoice, self.command, self.command
                ),
            };
            self.journal(req, &req.invoice, None, None, &outcome, None)
                .await;
            return outcome;
        };
        let key = self
            .spec
            .record_key(&values)
            .unwrap_or_else(|| req.invoice.clone());
        if let Some(other) = self.outside_company(&values) {
            // IFS_COMPANY bounds what this connector reads; it bounds what it acts on too
            // (a full key typed for another company would approve what nobody here sees).
            let outcome = ApprovalOutcome::Refused {
                reason: format!(
                    "{key} belongs to company {other}; this connector acts only for company {}.",
                    self.company.as_deref().unwrap_or_default()
                ),
            };
            self.journal(req, &key, Some(approver), None, &outcome, None)
                .await;
            return outcome;
        }
        let lock = self.lock_for(&key);
        let _guard = lock.lock().await;
        if let Some(previous) = self.previously(&key, &req.request_id).await {
            return ApprovalOutcome::Duplicate { previous };
        }
        self.journal_intent(req, &key, approver).await;
        let (outcome, etag, response) = self.act(req, &values, &key).await;
        self.journal(
            req,
            &key,
            Some(approver),
            etag.as_deref(),
            &outcome,
            response,
        )
        .await;
        outcome
    }

    fn entity_url(&self, values: &[String]) -> Option<String> {
        self.spec
            .key_segment(values)
            .map(|seg| format!("{}{seg}", self.collection_url))
    }

    async fn read_state(&self, url: &str) -> Result<(Option<String>, Option<String>), IfsError> {
        let entity =
            retry_refusals(4, Duration::from_secs(10), || self.odata.get_entity(url)).await?;
        let state = self
            .spec
            .status
            .as_deref()
            .and_then(|s| entity.value()[s].as_str().map(str::to_owned));
        Ok((state, entity.etag))
    }

    async fn act(
        &self,
        req: &ApprovalRequest,
        values: &[String],
        key: &str,
    ) -> (ApprovalOutcome, Option<String>, Option<Value>) {
        let key = key.to_owned();
        let Some(url) = self.entity_url(values) else {
            return (ApprovalOutcome::NotFound { key }, None, None);
        };
        let (state, etag) = match self.read_state(&url).await {
            Ok(x) => x,
            Err(e) if e.status() == Some(404) => {
                return (ApprovalOutcome::NotFound { key }, None, None);
            }
            Err(e) => {
                return (
                    ApprovalOutcome::Failed {
                        key,
                        message: e.to_string(),
                    },
                    None,
                    None,
                );
            }
        };
        let done = self
            .done_states
            .get(&req.action)
            .cloned()
            .unwrap_or_default();
        if state.as_ref().is_some_and(|s| done.contains(s)) {
            return (ApprovalOutcome::AlreadyDone { key, state }, etag, None);
        }
        if let (Some(seen), Some(now)) = (&req.seen_etag, &etag)
            && seen != now
        {
            // The approver clicked on a version that is no longer the invoice: approving
            // it now would approve what they have not seen (another amount, say).
            return (
                ApprovalOutcome::Conflict {
                    key,
                    state,
                    message: "the invoice changed in IFS after this message was posted; \
                              look at its new version (posted as a reply) before deciding"
                        .into(),
                },
                etag,
                None,
            );
        }
        let Some(etag) = etag else {
            // Without an ETag the action could overwrite a change unseen: not sent.
            return (
                ApprovalOutcome::Failed {
                    key,
                    message: "IFS served the invoice without an ETag; the action was not sent"
                        .into(),
                },
                None,
                None,
            );
        };
        let action_url = format!("{url}/{}", self.spec.action_name(req.action.name()));
        let body = json!({});
        let tries = std::sync::atomic::AtomicU32::new(0);
        let sent = retry_refusals(3, Duration::from_secs(10), || {
            tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.odata.invoke_action(&action_url, &etag, &body)
        })
        .await;
        // An earlier try may have been applied though its answer was lost (a 503 after
        // the action ran): the retry then meets a new ETag (412) on an invoice in the
        // target state, which this request did.
        let resent = tries.load(std::sync::atomic::Ordering::Relaxed) > 1;
        match sent {
            Ok(r) => {
                let after = self.read_state(&url).await.ok().and_then(|(s, _)| s);
                let response = json!({"status": r.status, "etag": r.etag});
                (
                    ApprovalOutcome::Done {
                        key,
                        etag: etag.clone(),
                        state: after,
                    },
                    Some(etag),
                    Some(response),
                )
            }
            Err(e) => {
                let response =
                    json!({"status": e.status(), "code": e.code(), "message": e.to_string()});
                let message = match &e {
                    IfsError::Http { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                let outcome = match e.status() {
                    Some(412) => {
                        let now = self.read_state(&url).await.ok().and_then(|(s, _)| s);
                        if now.as_ref().is_some_and(|s| done.contains(s)) && resent {
                            ApprovalOutcome::Done {
                                key,
                                etag: etag.clone(),
                                state: now,
                            }
                        } else if now.as_ref().is_some_and(|s| done.contains(s)) {
                            // Another replica (or click) did it first: nothing was overwritten.
                            ApprovalOutcome::AlreadyDone { key, state: now }
                        } else {
                            ApprovalOutcome::Conflict {
                                key,
                                state: now,
                                message,
                            }
                        }
                    }
                    Some(428) => ApprovalOutcome::PreconditionRequired { key },
                    Some(400) => ApprovalOutcome::WrongState {
                        key,
                        state,
                        message,
                    },
                    Some(403) => ApprovalOutcome::Forbidden { key, message },
                    Some(404) => ApprovalOutcome::NotFound { key },
                    // No answer (a timeout, a dropped connection): the action may have
                    // run. IFS's state says whether it did, rather than "could not".
                    None => {
                        let now = self.read_state(&url).await.ok().and_then(|(s, _)| s);
                        if now.as_ref().is_some_and(|s| done.contains(s)) {
                            ApprovalOutcome::Done {
                                key,
                                etag: etag.clone(),
                                state: now,
                            }
                        } else {
                            ApprovalOutcome::Failed {
                                key,
                                message: format!(
                                    "IFS did not answer ({e}); the invoice is {} as IFS shows \
                                     it now: check it in IFS before trying again",
                                    now.as_deref().unwrap_or("in an unknown state")
                                ),
                            }
                        }
                    }
                    _ => ApprovalOutcome::Failed {
                        key,
                        message: e.to_string(),
                    },
                };
                (outcome, Some(etag), Some(response))
            }
        }
    }

    async fn journal(
        &self,
        req: &ApprovalRequest,
        key: &str,
        approver: Option<&Approver>,
        etag: Option<&str>,
        outcome: &ApprovalOutcome,
        response: Option<Value>,
    ) {
        {
            let mut handled = self.handled.lock().unwrap_or_else(PoisonError::into_inner);
            // Bounded: older ids are still found in the journal.
            if handled.len() >= 10_000 {
                handled.clear();
            }
            handled.insert(req.request_id.clone(), outcome.label());
        }
        let entry = Entry {
            version: req.request_id.clone(),
            label: outcome.label(),
            message: outcome.message(req.action),
            etag,
            response,
        };
        self.write_entry(req, key, approver, entry).await;
    }

    /// Journals that `req` is about to be sent to IFS, before it is: should the process
    /// die between IFS applying it and its outcome being journaled, the journal still
    /// holds who asked for what and when (an entry `started` without a decision after it;
    /// the invoice's state in IFS says whether it took effect). Its version is not the
    /// request id, so the request still counts as not handled.
    async fn journal_intent(&self, req: &ApprovalRequest, key: &str, approver: &Approver) {
        let entry = Entry {
            version: format!("{}:started", req.request_id),
            label: "started",
            message: format!(
                "{} sent to IFS; the decision follows as its own entry (none after this \
                 one: the process stopped before IFS answered; IFS's state of the invoice \
                 says whether it took effect)",
                req.action.name()
            ),
            etag: req.seen_etag.as_deref(),
            response: None,
        };
        self.write_entry(req, key, Some(approver), entry).await;
    }

    async fn write_entry(
        &self,
        req: &ApprovalRequest,
        key: &str,
        approver: Option<&Approver>,
        entry: Entry<'_>,
    ) {
        let Some(journal) = &self.journal else {
            return;
        };
        let now = self.clock.now();
        let key = if key.trim().is_empty() { "(none)" } else { key };
        let audit = json!({
            "request_id": req.request_id,
            "slack_user": req.slack_user,
            "ifs_identity": approver.map(|a| a.ifs_identity.clone()),
            "action": req.action.name(),
            "invoice": key,
            "entity_set": self.spec.path(),
            "etag": entry.etag,
            "at": now.to_string(),
            "outcome": entry.label,
            "message": entry.message,
            "ifs_response": entry.response,
        });
        let mut extra = BTreeMap::new();
        extra.insert("slack_user".to_owned(), req.slack_user.clone());
        if let Some(a) = approver {
            extra.insert("ifs_identity".to_owned(), a.ifs_identity.clone());
        }
        if let Some(e) = entry.etag {
            extra.insert("etag".to_owned(), e.to_owned());
        }
        extra.insert("action".to_owned(), req.action.name().to_owned());
        let record = Record::new(
            format!("{}:approvals", self.odata.system()),
            EntityKind::Other("ifs_approval".into()),
            key,
            now,
        )
        .with_version(entry.version)
        .with_fields(BusinessFields {
            document_number: Some(key.to_owned()),
            status: Some(entry.label.to_owned()),
            reference: Some(req.request_id.clone()),
            extra,
            ..BusinessFields::default()
        })
        .with_raw(RawJson::from_text(audit.to_string()).unwrap_or_else(|_| RawJson::null()));
        if let Err(e) = write(journal.as_ref(), &self.stream, record, now).await {
            tracing::error!(error = %e, invoice = %key, "could not journal an approval decision");
        }
    }

    /// Posts the outcome to the request's `response_url` (in the channel when the decision
    /// took effect or had already; otherwise ephemeral: what changed nothing concerns the
    /// requester alone). The text is escaped for Slack: what an approver typed (`<!channel>`) or
    /// IFS answered is shown, never interpreted.
    pub async fn respond(&self, req: &ApprovalRequest, outcome: &ApprovalOutcome) {
        let (Some(responder), Some(url)) = (&self.responder, &req.response_url) else {
            return;
        };
        let kind = response_type(outcome);
        let text = outcome.message(req.action);
        let message =
            ResponseMessage::new(ml_slack::render::escape(&text)).with_response_type(kind);
        if let Err(e) = responder.respond(url, &message).await {
            tracing::warn!(error = %e, "could not answer through response_url");
        }
    }
}

/// One journal entry of a request: its intent or its decision.
struct Entry<'a> {
    version: String,
    label: &'static str,
    message: String,
    etag: Option<&'a str>,
    response: Option<Value>,
}

/// Where an outcome is shown: a decision that took effect (or had already) in the
/// channel, for everyone watching the invoice; anything that changed nothing (a refusal, a
/// conflict, IFS failing) to the requester alone, who can act on it.
fn response_type(outcome: &ApprovalOutcome) -> ResponseType {
    match outcome {
        ApprovalOutcome::Done { .. } | ApprovalOutcome::AlreadyDone { .. } => {
            ResponseType::InChannel
        }
        _ => ResponseType::Ephemeral,
    }
}

async fn write(
    journal: &dyn AuditStore,
    stream: &str,
    record: Record,
    now: Timestamp,
) -> ml_core::Result<()> {
    let cycle = journal.begin_cycle(stream, now).await?;
    let committed = journal
        .commit_page(PageCommit {
            stream: stream.to_owned(),
            cycle,
            records: vec![PlannedRecord {
                record,
                destinations: Vec::new(),
            }],
            rejected: Vec::new(),
            position: Position::from_json(json!({"approvals": "journal"})),
            at: now,
        })
        .await;
    journal
        .end_cycle(
            cycle,
            CycleEnd {
                at: now,
                error: committed.as_ref().err().map(Into::into),
                watermark: None,
            },
        )
        .await?;
    committed.map(|_| ())
}

#[async_trait]
impl SlackHandler for Approvals {
    async fn handle(&self, received: Received) {
        let Some(req) = self.request_from(&received) else {
            return;
        };
        let outcome = self.decide(&req).await;
        tracing::info!(
            user = %req.slack_user,
            invoice = %req.invoice,
            action = req.action.name(),
            outcome = outcome.label(),
            "approval handled"
        );
        self.respond(&req, &outcome).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approver_map_parses() {
        let m = Approver::parse_map("U1=ALICE:approve+reject; U2=BOB").expect("map");
        assert_eq!(m["U1"].actions.len(), 2);
        assert_eq!(m["U2"].actions, BTreeSet::from([ApprovalAction::Approve]));
        assert!(Approver::parse_map("U1=ALICE:delete").is_err());
        assert!(Approver::parse_map("nobody").is_err());
        let twice = Approver::parse_map("U1=ALICE:approve;U1=MALLORY:approve+reject")
            .expect_err("listed twice");
        assert!(
            twice.to_string().contains("`U1` is listed twice"),
            "{twice}"
        );
    }
}
