//! The relay protocol: the signed WebSocket handshake, the signed frames both ways, and the
//! serde mirrors of the RFC call model.
//!
//! Every frame is `{"from","agent","session","ts","nonce","seq","body","sig"}` where `body`
//! is the message's JSON text exactly as signed and `sig` is the lowercase hex
//! HMAC-SHA256, under the agent's key, of
//! `ml-relay-v1\n{from}\n{agent}\n{session}\n{ts}\n{nonce}\n{seq}\n{body}`. The direction
//! and the session (the nonce of the agent's signed upgrade request) are signed, so a frame
//! can be neither reflected back to its sender nor replayed into another session; `seq`
//! must rise with every frame of a direction, so a frame cannot be replayed within its
//! session either. (The upgrade request's nonce is what a
//! [`ReplayCache`](ml_core::webhook::ReplayCache) remembers: a per-frame cache would add
//! nothing to these checks, and a busy session would fill it.)

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac as _};
use jiff::Timestamp;
use ml_core::webhook::{Rejection, check_timestamp, ct_eq};
use ml_sap_ecc::{RfcCall, RfcError, RfcErrorKind, RfcResponse, RfcRow, RfcValue};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The protocol label, signed into every message.
pub const PROTOCOL: &str = "ml-relay-v1";
/// The host's WebSocket path.
pub const CONNECT_PATH: &str = "/relay/v1/connect";
/// Upgrade request header: the agent id.
pub const H_AGENT: &str = "x-ml-relay-agent";
/// Upgrade request header: unix seconds.
pub const H_TIMESTAMP: &str = "x-ml-relay-timestamp";
/// Upgrade request header: 32 hex characters, fresh per connection (it names the session).
pub const H_NONCE: &str = "x-ml-relay-nonce";
/// Upgrade request header: `v1=` + hex HMAC-SHA256 of
/// `ml-relay-v1\nconnect\n{agent}\n{ts}\n{nonce}`.
pub const H_SIGNATURE: &str = "x-ml-relay-signature";
/// The default timestamp window (either way).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// The largest frame accepted (a 5,000-row `RFC_READ_TABLE` page is ~3 MB).
pub const MAX_FRAME: usize = 32 * 1024 * 1024;

/// Who sent a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The ml-connector host.
    Host,
    /// The agent on the customer network.
    Agent,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Agent => "agent",
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &SecretString, parts: &[&str]) -> [u8; 32] {
    // HMAC takes keys of any length: this cannot fail.
    let mut m = <HmacSha256 as hmac::KeyInit>::new_from_slice(key.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            m.update(b"\n");
        }
        m.update(p.as_bytes());
    }
    m.finalize().into_bytes().into()
}

/// 16 random bytes as 32 lowercase hex characters.
pub fn new_nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// A fresh agent key: 32 random bytes as 64 hex characters (what `openssl rand -hex 32`
/// prints).
pub fn new_key() -> SecretString {
    SecretString::from(hex::encode(rand::random::<[u8; 32]>()))
}

fn is_nonce(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The signature header value of an agent's upgrade request.
pub fn connect_signature(key: &SecretString, agent: &str, ts: i64, nonce: &str) -> String {
    format!(
        "v1={}",
        hex::encode(mac(
            key,
            &[PROTOCOL, "connect", agent, &ts.to_string(), nonce]
        ))
    )
}

/// Checks an upgrade request's signature, timestamp and nonce (not the replay: the caller
/// records the nonce once the signature holds). Returns the timestamp.
pub fn verify_connect(
    key: &SecretString,
    agent: &str,
    ts: &str,
    nonce: &str,
    signature: &str,
    now: Timestamp,
    window: Duration,
) -> Result<i64, Rejection> {
    let secs = check_timestamp(ts, now, window)?;
    if !is_nonce(nonce) {
        return Err(Rejection::BadHeader(H_NONCE));
    }
    let sig = signature
        .strip_prefix("v1=")
        .and_then(|h| hex::decode(h).ok())
        .filter(|b| b.len() == 32)
        .ok_or(Rejection::BadSignatureFormat)?;
    let want = mac(key, &[PROTOCOL, "connect", agent, &secs.to_string(), nonce]);
    if ct_eq(&sig, &want) {
        Ok(secs)
    } else {
        Err(Rejection::SignatureMismatch)
    }
}

/// One signed frame on the socket.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frame {
    /// The sender.
    pub from: Direction,
    /// The agent id.
    pub agent: String,
    /// The session (the upgrade request's nonce).
    pub session: String,
    /// Unix seconds.
    pub ts: i64,
    /// 32 hex characters, fresh per frame.
    pub nonce: String,
    /// 1, 2, 3, ... per direction and session.
    pub seq: u64,
    /// The message's JSON text.
    pub body: String,
    /// Hex HMAC-SHA256.
    pub sig: String,
}

fn frame_mac(key: &SecretString, f: &Frame) -> [u8; 32] {
    mac(
        key,
        &[
            PROTOCOL,
            f.from.as_str(),
            &f.agent,
            &f.session,
            &f.ts.to_string(),
            &f.nonce,
            &f.seq.to_string(),
            &f.body,
        ],
    )
}

/// Seals outgoing frames of one direction of one session.
pub struct Signer {
    key: SecretString,
    from: Direction,
    agent: String,
    session: String,
    seq: u64,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("from", &self.from)
            .field("agent", &self.agent)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for frames `from` one side of `session`.
    pub fn new(key: SecretString, from: Direction, agent: &str, session: &str) -> Self {
        Self {
            key,
            from,
            agent: agent.to_owned(),
            session: session.to_owned(),
            seq: 0,
        }
    }

    /// The next frame carrying `body`, as socket text.
    pub fn seal(&mut self, body: &str, now: Timestamp) -> String {
        self.seq += 1;
        let mut f = Frame {
            from: self.from,
            agent: self.agent.clone(),
            session: self.session.clone(),
            ts: now.as_second(),
            nonce: new_nonce(),
            seq: self.seq,
            body: body.to_owned(),
            sig: String::new(),
        };
        f.sig = hex::encode(frame_mac(&self.key, &f));
        serde_json::to_string(&f).unwrap_or_else(|_| unreachable!("a frame always serialises"))
    }
}

/// Opens incoming frames of one direction of one session: signature, direction, agent,
/// session, timestamp window and sequence, in that order (nothing is remembered for a
/// frame whose signature does not hold).
pub struct Verifier {
    key: SecretString,
    expect: Direction,
    agent: String,
    session: String,
    window: Duration,
    last_seq: u64,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("expect", &self.expect)
            .field("agent", &self.agent)
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier of frames `expect`ed from one side of `session`.
    pub fn new(
        key: SecretString,
        expect: Direction,
        agent: &str,
        session: &str,
        window: Duration,
    ) -> Self {
        Self {
            key,
            expect,
            agent: agent.to_owned(),
            session: session.to_owned(),
            window,
            last_seq: 0,
        }
    }

    /// The body of a genuine, fresh, first-seen frame.
    pub fn open(&mut self, text: &str, now: Timestamp) -> Result<String, Rejection> {
        let f: Frame = serde_json::from_str(text)
            .map_err(|e| Rejection::Malformed(format!("not a relay frame: {e}")))?;
        let sig = hex::decode(&f.sig)
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or(Rejection::BadSignatureFormat)?;
        if !ct_eq(&sig, &frame_mac(&self.key, &f)) {
            return Err(Rejection::SignatureMismatch);
        }
        // Signed, but for another direction or session: a reflection or a replay across
        // sessions.
        if f.from != self.expect || f.agent != self.agent || f.session != self.session {
            return Err(Rejection::Replayed);
        }
        check_timestamp(&f.ts.to_string(), now, self.window)?;
        if !is_nonce(&f.nonce) {
            return Err(Rejection::Malformed("bad nonce".into()));
        }
        if f.seq <= self.last_seq {
            return Err(Rejection::Replayed);
        }
        self.last_seq = f.seq;
        Ok(f.body)
    }
}

/// A parameter value on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireValue {
    /// A scalar.
    Scalar(String),
    /// A structure.
    Structure(RfcRow),
    /// A table.
    Table(Vec<RfcRow>),
}

impl From<&RfcValue> for WireValue {
    fn from(v: &RfcValue) -> Self {
        match v {
            RfcValue::Scalar(s) => Self::Scalar(s.clone()),
            RfcValue::Structure(r) => Self::Structure(r.clone()),
            RfcValue::Table(t) => Self::Table(t.clone()),
        }
    }
}

impl From<WireValue> for RfcValue {
    fn from(v: WireValue) -> Self {
        match v {
            WireValue::Scalar(s) => Self::Scalar(s),
            WireValue::Structure(r) => Self::Structure(r),
            WireValue::Table(t) => Self::Table(t),
        }
    }
}

/// An [`RfcCall`] on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireCall {
    /// The function module.
    pub function: String,
    /// Its parameters, in order.
    pub params: Vec<(String, WireValue)>,
}

impl From<&RfcCall> for WireCall {
    fn from(c: &RfcCall) -> Self {
        Self {
            function: c.function().to_owned(),
            params: c
                .params()
                .iter()
                .map(|(n, v)| (n.clone(), v.into()))
                .collect(),
        }
    }
}

impl From<WireCall> for RfcCall {
    fn from(w: WireCall) -> Self {
        w.params
            .into_iter()
            .fold(RfcCall::new(w.function), |c, (n, v)| match v {
                WireValue::Scalar(s) => c.with_import(n, s),
                WireValue::Structure(r) => c.with_structure(n, r),
                WireValue::Table(t) => c.with_table(n, t),
            })
    }
}

/// An [`RfcError`] on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// `communication`, `logon`, `abap_exception`, `system_failure`, `abap_message`,
    /// `not_found`, `protocol`, `unavailable` (anything else is read as `protocol`).
    pub kind: String,
    /// The exception name (`abap_exception`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<String>,
    /// A memory dump (`system_failure`).
    #[serde(default)]
    pub memory: bool,
    /// What SAP (or the agent) said.
    pub message: String,
}

impl From<&RfcError> for WireError {
    fn from(e: &RfcError) -> Self {
        let (kind, exception, memory) = match &e.kind {
            RfcErrorKind::Communication => ("communication", None, false),
            RfcErrorKind::Logon => ("logon", None, false),
            RfcErrorKind::AbapException(n) => ("abap_exception", Some(n.clone()), false),
            RfcErrorKind::SystemFailure { memory } => ("system_failure", None, *memory),
            RfcErrorKind::AbapMessage => ("abap_message", None, false),
            RfcErrorKind::NotFound => ("not_found", None, false),
            RfcErrorKind::Unavailable => ("unavailable", None, false),
            _ => ("protocol", None, false),
        };
        Self {
            kind: kind.to_owned(),
            exception,
            memory,
            message: e.message.clone(),
        }
    }
}

impl From<WireError> for RfcError {
    fn from(w: WireError) -> Self {
        let kind = match w.kind.as_str() {
            "communication" => RfcErrorKind::Communication,
            "logon" => RfcErrorKind::Logon,
            "abap_exception" => {
                RfcErrorKind::AbapException(w.exception.unwrap_or_else(|| "UNKNOWN".into()))
            }
            "system_failure" => RfcErrorKind::SystemFailure { memory: w.memory },
            "abap_message" => RfcErrorKind::AbapMessage,
            "not_found" => RfcErrorKind::NotFound,
            "unavailable" => RfcErrorKind::Unavailable,
            _ => RfcErrorKind::Protocol,
        };
        RfcError::new(kind, w.message)
    }
}

/// The outcome of a call on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireOutcome {
    /// Every parameter SAP returned.
    Ok(BTreeMap<String, WireValue>),
    /// The failure.
    Err(WireError),
}

impl From<&Result<RfcResponse, RfcError>> for WireOutcome {
    fn from(r: &Result<RfcResponse, RfcError>) -> Self {
        match r {
            Ok(resp) => Self::Ok(
                resp.params
                    .iter()
                    .map(|(k, v)| (k.clone(), v.into()))
                    .collect(),
            ),
            Err(e) => Self::Err(e.into()),
        }
    }
}

impl From<WireOutcome> for Result<RfcResponse, RfcError> {
    fn from(o: WireOutcome) -> Self {
        match o {
            WireOutcome::Ok(params) => Ok(RfcResponse {
                params: params.into_iter().map(|(k, v)| (k, v.into())).collect(),
            }),
            WireOutcome::Err(e) => Err(e.into()),
        }
    }
}

/// What the host sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HostMessage {
    /// First frame of a session: proves the host holds the key, names the system.
    Welcome {
        /// The SAP system this agent serves, as configured on the host.
        system: String,
    },
    /// Run one function module before `deadline_ms` (unix milliseconds).
    Call {
        /// The call id (unique per host process).
        id: u64,
        /// Past this instant the agent drops the call and says so.
        deadline_ms: i64,
        /// The call.
        call: WireCall,
    },
}

/// What the agent sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentMessage {
    /// After a genuine `welcome`: the agent takes calls.
    Ready {
        /// The SAP system the agent's transport reaches (informational).
        system: String,
    },
    /// A call's outcome.
    Result {
        /// The call id.
        id: u64,
        /// What SAP answered.
        outcome: WireOutcome,
    },
    /// The call was dropped: its deadline had passed (before or while it ran).
    Expired {
        /// The call id.
        id: u64,
        /// Whether it was started at all.
        started: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretString {
        SecretString::from("k3y-for-tests-only".to_owned())
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("ts")
    }

    fn verifier(expect: Direction) -> Verifier {
        Verifier::new(key(), expect, "plant-1", &"a".repeat(32), DEFAULT_WINDOW)
    }

    #[test]
    fn frames_round_trip_and_replays_forgeries_and_stale_ones_are_refused() {
        let session = "a".repeat(32);
        let mut s = Signer::new(key(), Direction::Agent, "plant-1", &session);
        let mut v = verifier(Direction::Agent);
        let f1 = s.seal("{\"x\":1}", at(1_000));
        assert_eq!(v.open(&f1, at(1_010)).as_deref(), Ok("{\"x\":1}"));
        // Replayed: same frame again.
        assert_eq!(v.open(&f1, at(1_011)), Err(Rejection::Replayed));
        // Forged: body altered, or signed with another key.
        let f2 = s.seal("{\"x\":2}", at(1_000));
        let tampered = f2.replace("{\\\"x\\\":2}", "{\\\"x\\\":3}");
        assert_ne!(tampered, f2);
        assert_eq!(
            v.open(&tampered, at(1_010)),
            Err(Rejection::SignatureMismatch)
        );
        let mut other = Signer::new(
            SecretString::from("another".to_owned()),
            Direction::Agent,
            "plant-1",
            &session,
        );
        let forged = other.seal("{}", at(1_000));
        assert_eq!(
            v.open(&forged, at(1_010)),
            Err(Rejection::SignatureMismatch)
        );
        // Expired and future-dated.
        let old = s.seal("{}", at(900));
        assert_eq!(v.open(&old, at(1_010)), Err(Rejection::Stale));
        let future = s.seal("{}", at(2_000));
        assert_eq!(v.open(&future, at(1_010)), Err(Rejection::FutureDated));
        // The genuine f2 still gets through after all that.
        assert!(v.open(&f2, at(1_010)).is_ok());
        // Reflected (a host frame sent back as the agent's) and cross-session.
        let mut host = Signer::new(key(), Direction::Host, "plant-1", &session);
        let h = host.seal("{}", at(1_000));
        assert_eq!(v.open(&h, at(1_010)), Err(Rejection::Replayed));
        let mut elsewhere = Signer::new(key(), Direction::Agent, "plant-1", &"b".repeat(32));
        let x = elsewhere.seal("{}", at(1_000));
        assert_eq!(v.open(&x, at(1_010)), Err(Rejection::Replayed));
        assert!(matches!(
            v.open("not json", at(1_010)),
            Err(Rejection::Malformed(_))
        ));
    }

    #[test]
    fn the_connect_signature_binds_agent_time_and_nonce() {
        let n = new_nonce();
        let sig = connect_signature(&key(), "plant-1", 1_000, &n);
        let ok = |agent: &str, ts: &str, nonce: &str, sig: &str| {
            verify_connect(&key(), agent, ts, nonce, sig, at(1_005), DEFAULT_WINDOW)
        };
        assert_eq!(ok("plant-1", "1000", &n, &sig), Ok(1_000));
        assert_eq!(
            ok("plant-2", "1000", &n, &sig),
            Err(Rejection::SignatureMismatch)
        );
        assert_eq!(
            ok("plant-1", "1001", &n, &sig),
            Err(Rejection::SignatureMismatch)
        );
        assert_eq!(
            ok("plant-1", "1000", &new_nonce(), &sig),
            Err(Rejection::SignatureMismatch)
        );
        assert_eq!(ok("plant-1", "100", &n, &sig), Err(Rejection::Stale));
        assert_eq!(
            ok("plant-1", "1000", "short", &sig),
            Err(Rejection::BadHeader(H_NONCE))
        );
        assert_eq!(
            ok("plant-1", "1000", &n, "v1=zz"),
            Err(Rejection::BadSignatureFormat)
        );
    }

    #[test]
    fn calls_outcomes_and_errors_survive_the_wire() {
        let mut row = RfcRow::new();
        row.insert("TEXT".into(), "BUKRS = '1000'".into());
        let call = RfcCall::new("RFC_READ_TABLE")
            .with_import("QUERY_TABLE", "RBKP")
            .with_table("OPTIONS", vec![row.clone()])
            .with_structure("S", row.clone())
            .expect_table("DATA");
        let text = serde_json::to_string(&WireCall::from(&call)).expect("json");
        let back: RfcCall = serde_json::from_str::<WireCall>(&text)
            .expect("parse")
            .into();
        assert_eq!(back, call);
        for e in [
            RfcError::new(
                RfcErrorKind::AbapException("NOT_AUTHORIZED".into()),
                "S_TABU_DIS",
            ),
            RfcError::system_failure("TSV_TNEW_PAGE_ALLOC_FAILED"),
            RfcError::new(RfcErrorKind::Logon, "401"),
            RfcError::new(RfcErrorKind::Unavailable, "gone"),
        ] {
            let o = WireOutcome::from(&Err(e.clone()));
            let text = serde_json::to_string(&o).expect("json");
            let back: Result<RfcResponse, RfcError> = serde_json::from_str::<WireOutcome>(&text)
                .expect("parse")
                .into();
            assert_eq!(back, Err(e));
        }
        let mut resp = RfcResponse::default();
        resp.params
            .insert("DATA".into(), RfcValue::Table(vec![row]));
        let o = WireOutcome::from(&Ok(resp.clone()));
        let back: Result<RfcResponse, RfcError> = o.into();
        assert_eq!(back, Ok(resp));
    }
}
