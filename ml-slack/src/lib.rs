#![doc = include_str!("../docs.md")]

pub mod builder;
pub mod client;
pub mod error;
pub mod events;
pub mod ids;
pub mod installations;
pub mod oauth;
pub mod receiver;
pub mod render;
pub mod responder;
pub mod signature;
pub mod sink;
#[cfg(feature = "socket-mode")]
pub mod socket;

pub use builder::{DEFAULT_API_URL, SlackBuilder, SlackConfigKey};
pub use client::SlackClient;
pub use error::{Rejection, SlackError, parse_error};
pub use installations::CredentialInstallationStore;
pub use receiver::SlackReceiver;
pub use render::BlockKitRenderer;
pub use signature::SignatureVerifier;
pub use sink::{ReconcileOptions, SlackSink, UpdateMode};
