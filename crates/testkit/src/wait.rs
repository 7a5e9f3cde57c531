//! Waiting for what a test expects: [`eventually`] (this happens, however long it takes short
//! of a hang) and [`consistently`] (this does not happen: checked over a bounded period,
//! failing at the first check where it does not hold, rather than a sleep and one assert).
//! The same two for tests without a runtime are in [`blocking`].

use std::time::{Duration, Instant};

/// How long [`eventually`] waits before giving up: a hang guard, not a timing check.
pub const EVENTUALLY_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the async helpers check (in-process requests are quick).
const INTERVAL: Duration = Duration::from_millis(50);

/// Polls `cond` every 50 ms until it holds; panics naming `what` after 60 s.
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + EVENTUALLY_TIMEOUT;
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what} after {EVENTUALLY_TIMEOUT:?}"
        );
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Checks `cond` at once, then every 50 ms for `period`, the last check once `period` has
/// passed; panics naming `what` at the first check where it does not hold.
pub async fn consistently<F, Fut>(what: &str, period: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let checks = Checks::new(period, INTERVAL);
    for check in 1.. {
        assert!(cond().await, "{}", checks.failure(what, check));
        match checks.pause() {
            Some(pause) => tokio::time::sleep(pause).await,
            None => return,
        }
    }
}

/// The schedule of a `consistently`: when to check next, and what to say when a check fails.
struct Checks {
    start: Instant,
    period: Duration,
    interval: Duration,
}

impl Checks {
    fn new(period: Duration, interval: Duration) -> Checks {
        Checks {
            start: Instant::now(),
            period,
            interval,
        }
    }

    /// How long to wait before the next check; `None` once a check has run after the period.
    fn pause(&self) -> Option<Duration> {
        let left = self.period.checked_sub(self.start.elapsed())?;
        Some(left.min(self.interval))
    }

    fn failure(&self, what: &str, check: u32) -> String {
        format!(
            "{what} stopped holding at check {check}, {:?} into {:?}",
            self.start.elapsed(),
            self.period
        )
    }
}

/// [`eventually`](super::eventually) and [`consistently`](super::consistently) for tests
/// that block a thread (the end-to-end tests driving kubectl).
pub mod blocking {
    use std::time::{Duration, Instant};

    use super::{Checks, EVENTUALLY_TIMEOUT};

    /// How often [`eventually`] checks.
    const EVENTUALLY_INTERVAL: Duration = Duration::from_millis(50);

    /// How often [`consistently`] checks: each check usually runs kubectl once or more.
    const CONSISTENTLY_INTERVAL: Duration = Duration::from_millis(200);

    /// Polls `cond` every 50 ms until it holds; panics naming `what` after 60 s.
    #[track_caller]
    pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + EVENTUALLY_TIMEOUT;
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "gave up waiting for {what} after {EVENTUALLY_TIMEOUT:?}"
            );
            std::thread::sleep(EVENTUALLY_INTERVAL);
        }
    }

    /// Checks `cond` at once, then every 200 ms for `period`, the last check once `period`
    /// has passed; panics naming `what` at the first check where it does not hold.
    #[track_caller]
    pub fn consistently(what: &str, period: Duration, mut cond: impl FnMut() -> bool) {
        let checks = Checks::new(period, CONSISTENTLY_INTERVAL);
        for check in 1.. {
            assert!(cond(), "{}", checks.failure(what, check));
            match checks.pause() {
                Some(pause) => std::thread::sleep(pause),
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn consistently_checks_until_the_period_has_passed() {
        let (started, checks) = (Instant::now(), AtomicU32::new(0));
        consistently("always true", Duration::from_millis(120), || async {
            checks.fetch_add(1, Ordering::Relaxed);
            true
        })
        .await;
        assert!(started.elapsed() >= Duration::from_millis(120));
        assert!(checks.load(Ordering::Relaxed) >= 3);
    }

    #[tokio::test]
    #[should_panic(expected = "the count stays below 3 stopped holding at check 3")]
    async fn consistently_fails_at_the_first_check_that_does_not_hold() {
        let checks = AtomicU32::new(0);
        consistently(
            "the count stays below 3",
            Duration::from_secs(60),
            || async { checks.fetch_add(1, Ordering::Relaxed) < 2 },
        )
        .await;
    }

    #[tokio::test]
    async fn eventually_returns_once_the_condition_holds() {
        let checks = AtomicU32::new(0);
        eventually("the third check", || async {
            checks.fetch_add(1, Ordering::Relaxed) == 2
        })
        .await;
        assert_eq!(checks.load(Ordering::Relaxed), 3);
    }

    #[test]
    #[should_panic(expected = "nothing changes stopped holding at check 2")]
    fn blocking_consistently_fails_at_the_first_check_that_does_not_hold() {
        let mut checks = 0;
        blocking::consistently("nothing changes", Duration::from_secs(60), || {
            checks += 1;
            checks < 2
        });
    }

    #[test]
    fn blocking_consistently_checks_at_least_once_more_after_the_period() {
        let (started, mut checks) = (Instant::now(), 0);
        blocking::consistently("always true", Duration::from_millis(250), || {
            checks += 1;
            true
        });
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(checks >= 2, "{checks}");
    }
}
