//! How many batches delete in a store at once: at most the configured
//! `max_in_flight`, fewer while the store asks lethe to slow down.
//!
//! Each batch holds one permit from its first delete to its last check (on
//! S3 and Azure one bulk request at a time: a DeleteObjects of up to 1,000
//! keys, a blob batch of 256; on GCS and local folders object_store's own
//! per-object concurrency inside it). When a batch meets throttling (HTTP 503
//! SlowDown, Azure ServerBusy, HTTP 429), the number allowed halves, down to
//! one: the permits given back by batches in flight are withheld until the
//! count in flight is below the new bound. Each batch that then finishes
//! without throttling allows one more, up to the configured bound (additive
//! increase, multiplicative decrease, as TCP and the AWS SDKs' adaptive
//! retry mode do). The bound is never exceeded: permits are only ever added
//! back up to it.

use std::sync::Mutex;

use tokio::sync::{Semaphore, SemaphorePermit};

pub use crate::config::{DEFAULT_IN_FLIGHT, MAX_IN_FLIGHT};

#[derive(Debug)]
pub struct Throttle {
    max: usize,
    permits: Semaphore,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Batches allowed in flight now (1..=max).
    allowed: usize,
    /// Permits to withhold as batches give them back (after a decrease).
    withheld: usize,
    /// Slow-downs asked for so far.
    slow_downs: u64,
}

/// A batch's permit; given back (or withheld, after a slow-down) on drop.
pub struct InFlight<'a> {
    throttle: &'a Throttle,
    permit: Option<SemaphorePermit<'a>>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut state = self
            .throttle
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(permit) = self.permit.take()
            && state.withheld > 0
        {
            state.withheld -= 1;
            permit.forget();
        }
    }
}

impl Throttle {
    pub fn new(max: usize) -> Self {
        let max = max.clamp(1, MAX_IN_FLIGHT);
        Self {
            max,
            permits: Semaphore::new(max),
            state: Mutex::new(State {
                allowed: max,
                withheld: 0,
                slow_downs: 0,
            }),
        }
    }

    /// The configured bound.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Batches allowed in flight now.
    pub fn allowed(&self) -> usize {
        self.lock().allowed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until one more batch may delete.
    pub async fn acquire(&self) -> InFlight<'_> {
        // The semaphore is never closed.
        let permit = self.permits.acquire().await.ok();
        InFlight {
            throttle: self,
            permit,
        }
    }

    /// How many times the store has asked to slow down: a batch during
    /// which this did not change went well.
    pub fn slow_downs(&self) -> u64 {
        self.lock().slow_downs
    }

    /// A batch met throttling: halve the batches allowed (at least one).
    pub fn slow_down(&self) {
        let mut state = self.lock();
        state.slow_downs += 1;
        let target = (state.allowed / 2).max(1);
        let cut = state.allowed - target;
        if cut == 0 {
            return;
        }
        state.allowed = target;
        // Take what is free now; withhold the rest as batches finish.
        let mut taken = 0;
        while taken < cut {
            match self.permits.try_acquire() {
                Ok(p) => {
                    p.forget();
                    taken += 1;
                }
                Err(_) => break,
            }
        }
        state.withheld += cut - taken;
        tracing::info!(
            allowed = target,
            "the store asks to slow down: fewer batches in flight"
        );
    }

    /// A batch finished without throttling: allow one more, up to the bound.
    pub fn went_well(&self) {
        let mut state = self.lock();
        if state.allowed >= self.max {
            return;
        }
        state.allowed += 1;
        if state.withheld > 0 {
            state.withheld -= 1;
        } else {
            self.permits.add_permits(1);
        }
    }
}

/// Whether a store's error text says it is throttling lethe: S3's
/// `SlowDown` and HTTP 503, Azure's `ServerBusy`, GCS's and others' HTTP 429
/// and `rateLimitExceeded`.
pub fn is_throttling(text: &str) -> bool {
    const SIGNS: [&str; 7] = [
        "SlowDown",
        "ServerBusy",
        "rateLimitExceeded",
        "Too Many Requests",
        "Service Unavailable",
        "HTTP 503",
        "HTTP 429",
    ];
    SIGNS.iter().any(|s| text.contains(s)) || text.contains(" 503 ") || text.contains(" 429 ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_more_in_flight_than_allowed() {
        let t = Throttle::new(4);
        let a = t.acquire().await;
        let b = t.acquire().await;
        let c = t.acquire().await;
        let d = t.acquire().await;
        assert_eq!(t.permits.available_permits(), 0);
        // Halved to 2 while 4 are in flight: two permits are withheld as
        // they come back, so two stay in flight at most.
        t.slow_down();
        assert_eq!(t.allowed(), 2);
        drop(a);
        drop(b);
        assert_eq!(t.permits.available_permits(), 0);
        drop(c);
        assert_eq!(t.permits.available_permits(), 1);
        let _e = t.acquire().await;
        assert!(t.permits.try_acquire().is_err(), "a third batch in flight");
        drop(d);
        // Down to one, then back up one batch at a time, never past the bound.
        t.slow_down();
        assert_eq!(t.allowed(), 1);
        t.slow_down();
        assert_eq!(t.allowed(), 1);
        for _ in 0..10 {
            t.went_well();
        }
        assert_eq!(t.allowed(), 4);
        drop(_e);
        assert_eq!(t.permits.available_permits(), 4);
    }

    #[tokio::test]
    async fn a_slow_down_while_nothing_is_in_flight_takes_free_permits() {
        let t = Throttle::new(8);
        t.slow_down();
        assert_eq!((t.allowed(), t.permits.available_permits()), (4, 4));
        t.went_well();
        assert_eq!((t.allowed(), t.permits.available_permits()), (5, 5));
        assert_eq!(Throttle::new(0).max(), 1);
        assert_eq!(Throttle::new(1000).max(), MAX_IN_FLIGHT);
    }

    #[test]
    fn throttling_is_recognised_by_its_signs() {
        assert!(is_throttling("injected throttling (HTTP 503 SlowDown)"));
        assert!(is_throttling(
            "Error performing DeleteObjects: SlowDown: Please reduce your request rate"
        ));
        assert!(is_throttling(
            "Server returned non-2xx status code: 503 Service Unavailable"
        ));
        assert!(is_throttling(
            "ServerBusy: Ingress is over the account limit"
        ));
        assert!(is_throttling("429 Too Many Requests"));
        assert!(!is_throttling(
            "injected transient error (HTTP 500 InternalError)"
        ));
        assert!(!is_throttling("AccessDenied"));
        assert!(!is_throttling("key calls/2503/x.wav not found"));
    }
}
