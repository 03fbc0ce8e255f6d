//! What every polling source takes from a `[[streams]]` entry: where a new stream starts,
//! the cursor's overlap, and the stream's own settings, with errors re-keyed to the
//! entry's path.

use ml_core::Result;
use ml_core::config::assemble::resolve_settings;
use ml_core::config::pipeline::StreamConfig;
use ml_core::config::{ConfigKey, Env};

use super::rekey;

/// A source builder a stream entry configures.
pub(crate) trait StreamOptions: Sized {
    /// The builder's configuration keys (for naming a bad setting by its path).
    type Key: ConfigKey;
    /// Where a stream that never ran starts.
    fn start_at(self, t: jiff::Timestamp) -> Self;
    /// The cursor's re-read window.
    fn overlap(self, d: std::time::Duration) -> Self;
    /// One setting by name.
    fn setting(self, name: &str, value: String) -> Result<Self>;
}

/// `b` with the stream's `start_at`, `overlap` and (non-empty) settings applied, and the
/// settings it applied as (variable, path in the file), for [`super::under_applied`] on
/// the builder's `build()` errors.
pub(crate) fn configure<B: StreamOptions>(
    mut b: B,
    st: &StreamConfig,
    path: &str,
    env: &dyn Env,
    sandbox: bool,
) -> Result<(B, Vec<(&'static str, String)>)> {
    if let Some(t) = st.start_at {
        b = b.start_at(t);
    }
    if let Some(o) = st.overlap {
        b = b.overlap(o);
    }
    let mut applied = Vec::new();
    for s in resolve_settings(path, &st.settings, env, sandbox)? {
        if s.value.trim().is_empty() {
            continue;
        }
        if let Some(k) = B::Key::from_name(&s.key) {
            applied.push((k.env_name(), s.path.clone()));
        }
        b = b.setting(&s.key, s.value).map_err(rekey(&s.path))?;
    }
    Ok((b, applied))
}

/// Implements [`StreamOptions`] for a builder with the usual setters.
macro_rules! stream_options {
    ($builder:ty, $key:ty) => {
        impl $crate::connectors::streams::StreamOptions for $builder {
            type Key = $key;
            fn start_at(self, t: jiff::Timestamp) -> Self {
                self.with_start_at(t)
            }
            fn overlap(self, d: std::time::Duration) -> Self {
                self.with_overlap(d)
            }
            fn setting(self, name: &str, value: String) -> ml_core::Result<Self> {
                self.with_config_str(name, value)
            }
        }
    };
}
pub(crate) use stream_options;
