//! The crate's error type.

/// What can go wrong when starting an emulator or when an emulator calls out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// Binding 127.0.0.1 or reading the bound address failed.
    #[error("sandbox: cannot bind 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    /// The HTTP client used to call out (Slack calling us) could not be built.
    #[error("sandbox: cannot build the HTTP client: {0}")]
    Client(#[from] ml_core::Error),
    /// A request made by an emulator (for example a signed event sent to a receiver) failed
    /// before any HTTP response was read.
    #[error("sandbox: request to {url} failed: {source}")]
    Request {
        /// Where the request went.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
}

/// `Result` with [`SandboxError`].
pub type Result<T, E = SandboxError> = std::result::Result<T, E>;
