//! Where time enters lethe: the only module that reads the machine's
//! wall clock (`clippy.toml` bans `Utc::now` and `SystemTime::now`
//! everywhere else: `grep -rn "disallowed_methods" src` shows the one
//! exception, here).
//!
//! A command reads "now" once and passes it down. A run goes further: its
//! clock is the database's, which every worker shares, read once at the
//! start (after checking it against this machine's, see `pass`) and then
//! advanced by the monotonic clock, so that decisions, outcomes, ledger rows
//! and the certificate of one run all tell the same time, and a step of the
//! machine's clock during a run (an NTP correction) changes none of them.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// A clock shared by the stages of a run.
pub type SharedClock = Arc<dyn Clock>;

/// This machine's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// Reads this machine's wall clock: the one place lethe does.
    #[allow(clippy::disallowed_methods)]
    pub fn read() -> DateTime<Utc> {
        Utc::now()
    }

    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Self::read()
    }
}

/// A reading of another clock (the database's), advanced by this machine's
/// monotonic clock since it was taken.
#[derive(Debug, Clone, Copy)]
pub struct Anchored {
    at: DateTime<Utc>,
    since: Instant,
}

impl Anchored {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self {
            at,
            since: Instant::now(),
        }
    }

    /// The instant it was anchored at.
    pub fn start(&self) -> DateTime<Utc> {
        self.at
    }
}

impl Clock for Anchored {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.since.elapsed()).unwrap_or_default();
        self.at + elapsed
    }
}

/// A clock that stands still, for tests and for plans `--as-of` a time.
#[derive(Debug, Clone, Copy)]
pub struct Fixed(pub DateTime<Utc>);

impl Clock for Fixed {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anchored_clock_starts_at_its_reading_and_moves_forward_only() {
        let at = "2026-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let clock = Anchored::new(at);
        let first = clock.now();
        assert!(first >= at && first - at < chrono::Duration::seconds(5));
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(clock.now() > first);
        assert_eq!(clock.start(), at);
        assert_eq!(Fixed(at).now(), at);
    }
}
