#![doc = include_str!("../docs.md")]

pub mod agent;
pub mod error;
pub mod host;
pub mod source;
pub mod wire;

pub use agent::{Agent, AgentBuilder, AgentConfigKey, AgentStats};
pub use error::RelayError;
pub use host::{RelayHub, RelayHubBuilder, RelayTransport, SystemStats};
pub use source::RelaySource;
