use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::error::{Error, ErrorClass, Result};
use crate::render::Rendered;
use crate::sink::{Destination, Outbound, Receipt, Reconciled, Sink};

/// A message a [`MemorySink`] accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct SentMessage {
    /// The journal's delivery id.
    pub delivery_id: i64,
    /// The record key.
    pub record_key: String,
    /// Where it went.
    pub destination: Destination,
    /// What was sent.
    pub rendered: Rendered,
    /// The remote id given back.
    pub remote_id: String,
    /// The thread it replied to, if any.
    pub thread: Option<String>,
}

/// A scripted failure of the next `send`.
#[derive(Clone, Debug)]
pub enum SinkFault {
    /// Fail before applying, with this class (`Retryable` models 429 / 5xx).
    Fail(ErrorClass),
    /// Apply the message, then report `InDoubt` (the client timed out after the remote side
    /// accepted it).
    AppliedThenLost,
    /// Do not apply, but report `InDoubt` (timed out before the remote side saw it).
    LostBeforeApplied,
    /// Panic inside `send` (a buggy sink; the pipeline must survive it).
    Panic,
    /// Refuse our credentials for good ([`Error::Auth`], permanent: a revoked token).
    CredentialsRefused,
}

#[derive(Debug, Default)]
struct State {
    sent: Vec<SentMessage>,
    faults: VecDeque<SinkFault>,
    calls: u64,
    next_id: u64,
}

/// An in-memory [`Sink`]: keeps every accepted message for assertions, with scripted
/// faults and an optional `reconcile` (by delivery id, like Slack metadata lookups).
#[derive(Clone)]
pub struct MemorySink {
    name: String,
    reconcile: bool,
    reconcile_refused: bool,
    rate_keyed: bool,
    state: Arc<Mutex<State>>,
}

impl MemorySink {
    /// A sink named `name` (used in remote ids and `Display`) that can reconcile.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            reconcile: true,
            reconcile_refused: false,
            rate_keyed: false,
            state: Arc::default(),
        }
    }

    /// Turns `reconcile` support on or off.
    pub fn with_reconcile(mut self, on: bool) -> Self {
        self.reconcile = on;
        self
    }

    /// Offers `reconcile` but refuses it for good (a scope not granted, as a Slack bot
    /// without `channels:history`): a permanent error from every `reconcile`.
    pub fn with_reconcile_refused(mut self, on: bool) -> Self {
        self.reconcile_refused = on;
        self
    }

    /// Gives each destination its own rate-limiter key (`name:address`).
    pub fn with_rate_keys(mut self, on: bool) -> Self {
        self.rate_keyed = on;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Scripts the next sends' faults, in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = SinkFault>) {
        self.lock().faults.extend(faults);
    }

    /// Everything accepted so far, in order.
    pub fn sent(&self) -> Vec<SentMessage> {
        self.lock().sent.clone()
    }

    /// Accepted messages for one destination, in order.
    pub fn sent_to(&self, destination: &Destination) -> Vec<SentMessage> {
        self.lock()
            .sent
            .iter()
            .filter(|m| &m.destination == destination)
            .cloned()
            .collect()
    }

    /// How many times `send` was called.
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    fn apply(&self, state: &mut State, msg: &Outbound) -> Receipt {
        state.next_id += 1;
        let remote_id = format!("{}-{}", self.name, state.next_id);
        state.sent.push(SentMessage {
            delivery_id: msg.delivery_id.0,
            record_key: msg.record_key.clone(),
            destination: msg.destination.clone(),
            rendered: msg.rendered.clone(),
            remote_id: remote_id.clone(),
            thread: msg.thread.as_ref().map(|t| t.remote_id.clone()),
        });
        Receipt::new(remote_id)
    }
}

impl fmt::Debug for MemorySink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySink")
            .field("name", &self.name)
            .field("reconcile", &self.reconcile)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for MemorySink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemorySink({})", self.name)
    }
}

#[async_trait]
impl Sink for MemorySink {
    async fn send(&self, msg: &Outbound) -> Result<Receipt> {
        let fault = {
            let mut st = self.lock();
            st.calls += 1;
            st.faults.pop_front()
        };
        let system = self.to_string();
        match fault {
            None => Ok(self.apply(&mut self.lock(), msg)),
            Some(SinkFault::Fail(class)) => {
                Err(Error::remote(system, class, "injected failure").with_code("injected"))
            }
            Some(SinkFault::CredentialsRefused) => Err(Error::Auth {
                class: ErrorClass::Permanent,
                message: format!("{system}: token revoked (injected)"),
            }),
            Some(SinkFault::AppliedThenLost) => {
                self.apply(&mut self.lock(), msg);
                Err(Error::remote(
                    system,
                    ErrorClass::InDoubt,
                    "timed out after sending",
                ))
            }
            Some(SinkFault::LostBeforeApplied) => Err(Error::remote(
                system,
                ErrorClass::InDoubt,
                "timed out after sending",
            )),
            Some(SinkFault::Panic) => panic!("{system}: injected panic"),
        }
    }

    fn can_reconcile(&self) -> bool {
        self.reconcile
    }

    async fn reconcile(&self, msg: &Outbound) -> Result<Reconciled> {
        if !self.reconcile {
            return Err(Error::Unsupported(format!("{self} cannot reconcile")));
        }
        if self.reconcile_refused {
            return Err(Error::remote(
                self.to_string(),
                ErrorClass::Permanent,
                "missing_scope: the history cannot be read",
            ));
        }
        Ok(self
            .lock()
            .sent
            .iter()
            .find(|m| m.delivery_id == msg.delivery_id.0)
            .map_or(Reconciled::NotFound, |m| {
                Reconciled::Found(Receipt::new(m.remote_id.clone()))
            }))
    }

    fn rate_key(&self, destination: &Destination) -> Option<String> {
        self.rate_keyed
            .then(|| format!("{}:{}", self.name, destination.address))
    }
}
