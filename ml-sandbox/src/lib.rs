//! # ml-sandbox
//!
//! Faithful offline emulators of the APIs ml-connector talks to, for tests, benches and
//! examples. Each emulator is an axum server bound to `127.0.0.1` on a free port that
//! returns its base URL; none ever touches the network beyond loopback.
//!
//! ```
//! use ml_sandbox::slack::SlackEmulator;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let slack = SlackEmulator::start().await?;
//!
//! // Any client pointed at `base_url()` talks to the emulator as it would to
//! // https://slack.com/api/ (build reqwest clients through ml-core's ClientOptions).
//! let client = ml_core::http::ClientOptions::default().client()?;
//! let answer: serde_json::Value = client
//!     .post(format!("{}chat.postMessage", slack.base_url()))
//!     .bearer_auth(slack.bot_token())
//!     .json(&serde_json::json!({
//!         "channel": "#general",
//!         "text": "Invoice INV-1 approved",
//!         "metadata": {"event_type": "invoice_approved", "event_payload": {"id": "INV-1"}},
//!     }))
//!     .send()
//!     .await?
//!     .json()
//!     .await?;
//! assert_eq!(answer["ok"], true);
//!
//! // Every accepted message is kept for assertions.
//! let stored = slack.messages("general");
//! assert_eq!(stored.len(), 1);
//! assert_eq!(stored[0].text, "Invoice INV-1 approved");
//! assert_eq!(stored[0].ts, answer["ts"].as_str().unwrap());
//! # Ok(()) }
//! ```
//!
//! ## Modules
//! * [`emulator`]: the shell every emulator shares (seed, clock, faults, server, base URL,
//!   `env()`), and the one HTTP Basic decoder.
//! * [`oauth2`]: an OAuth 2.0 token endpoint (client credentials, JWT bearer) to mount.
//! * [`server`]: serve any router on `127.0.0.1:<free port>`; shut down on drop.
//! * [`fault`]: the fault-injection layer every emulator shares (latency, 5xx, 429 with
//!   `Retry-After`, connections dropped before or after the request was applied) and
//!   per-path request counters.
//! * [`slack`]: the Slack Web API, Socket Mode, and Slack calling us (signed events, slash
//!   commands, interactivity).
//!
//! Time: emulators read an injected [`ml_core::clock::Clock`]; the default
//! [`ml_core::clock::TokioClock`] follows `tokio::time::pause()`, so rate limits and
//! expiries can be tested without waiting.

pub mod emulator;
pub mod error;
pub mod fault;
pub mod ifs;
pub mod oauth2;
pub mod oracle;
pub mod sage_x3;
pub mod sap_ecc;
pub mod sap_odata;
pub mod sendgrid;
pub mod server;
pub mod slack;
pub mod twilio;

pub use emulator::Emulator;
pub use error::{Result, SandboxError};
