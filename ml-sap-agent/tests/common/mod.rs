//! Shared rig of the relay tests: a hub served on 127.0.0.1, agents as tasks, a fake SAP.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ml_core::config::MapEnv;
use ml_core::retry::RetryPolicy;
use ml_sandbox::Emulator as _;
use ml_sandbox::sap_ecc::SapEccEmulator;
use ml_sap_agent::{Agent, AgentConfigKey, RelayHub};
use ml_sap_ecc::{RfcCall, RfcError, RfcResponse, RfcTransport, RfcValue, SapEccBuilder};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const KEY_A: &str = "a4c1f0e9b2d74c3e8f61a0b9c8d7e6f5-plant-a";
pub const KEY_B: &str = "0f9e8d7c6b5a49382716a5b4c3d2e1f0-plant-b";

pub fn key(k: &str) -> SecretString {
    SecretString::from(k.to_owned())
}

/// Serves `hub.router()` on 127.0.0.1; returns the `ws://` endpoint.
pub async fn serve(hub: &RelayHub) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = hub.router();
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("ws://{addr}/relay/v1/connect")
}

/// An agent to `url` as `id` with `key`, over `transport`, reconnecting fast.
pub fn agent(url: &str, id: &str, key: &str, transport: Arc<dyn RfcTransport>) -> Arc<Agent> {
    Arc::new(
        Agent::builder()
            .with_config(AgentConfigKey::Url, url)
            .with_config(AgentConfigKey::AgentId, id)
            .with_key(SecretString::from(key.to_owned()))
            .with_transport(transport)
            .with_backoff(
                RetryPolicy::default()
                    .with_base_delay(Duration::from_millis(5))
                    .with_max_delay(Duration::from_millis(50)),
            )
            .build()
            .expect("agent"),
    )
}

/// An agent whose local transport is SOAP-RFC to the emulator, configured by the same
/// `SAP_ECC_*` variables a real one reads.
pub fn emulator_agent(url: &str, id: &str, key: &str, e: &SapEccEmulator) -> Arc<Agent> {
    let env = e
        .env()
        .into_iter()
        .fold(MapEnv::new(), |env, (k, v)| env.with(k, v))
        .with("ML_RELAY_URL", url)
        .with("ML_RELAY_AGENT_ID", id)
        .with("ML_RELAY_KEY", key);
    Arc::new(
        ml_sap_agent::AgentBuilder::from_env_with(&env)
            .with_backoff(
                RetryPolicy::default()
                    .with_base_delay(Duration::from_millis(5))
                    .with_max_delay(Duration::from_millis(50)),
            )
            .build()
            .expect("agent"),
    )
}

/// Runs `agent` until the handle is aborted (a killed process).
pub fn spawn(agent: &Arc<Agent>) -> JoinHandle<()> {
    let a = Arc::clone(agent);
    tokio::spawn(async move { a.run(std::future::pending()).await })
}

/// Answers `Z_ECHO` with its imports, hangs on `Z_HANG`, counts calls and calls at once.
#[derive(Debug, Default)]
pub struct FakeSap {
    pub calls: AtomicUsize,
    pub now: AtomicUsize,
    pub max: AtomicUsize,
    pub seen: Mutex<HashMap<String, usize>>,
    /// Notified (one stored permit) whenever a call starts.
    pub started: tokio::sync::Notify,
}

#[async_trait]
impl RfcTransport for FakeSap {
    async fn call(&self, call: &RfcCall) -> Result<RfcResponse, RfcError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        *self
            .seen
            .lock()
            .expect("lock")
            .entry(call.function().to_owned())
            .or_default() += 1;
        self.started.notify_one();
        if call.function() == "Z_HANG" {
            std::future::pending::<()>().await;
        }
        tokio::task::yield_now().await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        let mut r = RfcResponse::default();
        for (n, v) in call.params() {
            r.params.insert(n.clone(), v.clone());
        }
        r.params.insert(
            "FUNCTION".into(),
            RfcValue::Scalar(call.function().to_owned()),
        );
        Ok(r)
    }

    fn system(&self) -> String {
        "fake-sap, client 100".into()
    }
}

/// A source builder for the emulator's system reached through `hub`.
pub fn relay_builder(hub: &RelayHub, system: &str, e: &SapEccEmulator) -> SapEccBuilder {
    SapEccBuilder::new()
        .with_transport(Arc::new(hub.transport(system).expect("transport")))
        .with_timezone(e.timezone())
        .with_retry(
            RetryPolicy::default()
                .with_base_delay(Duration::from_millis(5))
                .with_max_attempts(20),
        )
}
