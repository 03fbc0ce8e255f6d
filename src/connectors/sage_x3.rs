//! Configuration factories (under construction).

use ml_core::config::Registry;

/// Adds this crate's factories to `r`.
pub(crate) fn register(r: Registry) -> Registry {
    r
}
