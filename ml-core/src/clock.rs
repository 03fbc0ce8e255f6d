//! Injected clocks, so that schedules, token expiry and retry times can be tested without
//! waiting on the wall clock.

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// A source of the current time.
pub trait Clock: Send + Sync + Debug {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A wall clock that advances with tokio's clock: under `tokio::time::pause()` it moves only
/// when the test advances time, so whole pipelines can run on virtual time.
#[derive(Debug, Clone)]
pub struct TokioClock {
    wall: Timestamp,
    mono: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `start` now and advancing with `tokio::time::Instant`.
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            wall: start,
            mono: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::starting_at(Timestamp::now())
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = self.mono.elapsed();
        self.wall
            .checked_add(SignedDuration::try_from(elapsed).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX)
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Mutex::new(start))
    }

    /// Sets the time.
    pub fn set(&self, to: Timestamp) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = to;
    }

    /// Moves the time forward.
    pub fn advance(&self, by: Duration) {
        let mut t = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *t = t
            .checked_add(SignedDuration::try_from(by).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Adds a std `Duration` to a timestamp, saturating.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// Subtracts a std `Duration` from a timestamp, saturating.
pub fn sub(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_sub(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MIN)
}

/// The non-negative duration from `from` to `to` (zero when `to` is earlier).
pub fn until(from: Timestamp, to: Timestamp) -> Duration {
    let d = to.duration_since(from);
    if d.is_negative() {
        Duration::ZERO
    } else {
        d.unsigned_abs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let start: Timestamp = "2026-03-29T00:30:00Z".parse().expect("ts");
        let c = TokioClock::starting_at(start);
        assert_eq!(c.now(), start);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(c.now(), add(start, Duration::from_secs(90)));
    }

    #[test]
    fn manual_clock_and_helpers() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let c = ManualClock::new(start);
        c.advance(Duration::from_secs(5));
        assert_eq!(until(start, c.now()), Duration::from_secs(5));
        assert_eq!(until(c.now(), start), Duration::ZERO);
        assert_eq!(sub(c.now(), Duration::from_secs(5)), start);
    }
}
