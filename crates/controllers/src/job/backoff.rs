//! The back-off before failed pods are replaced: 10 s doubling per failure, at most
//! 10 minutes, counted from the last failure, reset by a success.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

/// The back-off after the first failure; it doubles with each one after.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// The longest back-off.
const BACKOFF_MAX: Duration = Duration::from_secs(600);

/// When a finished pod finished: its containers' last exit, else when it stopped being
/// ready, else when its deletion began, else when it was created.
pub(super) fn finish_time(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    let exits: Option<Vec<Timestamp>> = status
        .and_then(|s| s.container_statuses.as_ref())
        .filter(|cs| !cs.is_empty())
        .and_then(|cs| {
            cs.iter()
                .map(|c| {
                    let t = c.state.as_ref()?.terminated.as_ref()?;
                    Some(
                        t.finished_at
                            .as_ref()
                            .map_or(Timestamp::UNIX_EPOCH, |f| f.0),
                    )
                })
                .collect()
        });
    if let Some(t) = exits.and_then(|e| e.into_iter().max()) {
        return t;
    }
    let unready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "Ready" && c.status == "False")
        })
        .and_then(|c| c.last_transition_time.as_ref());
    if let Some(t) = unready {
        return t.0;
    }
    pod.metadata
        .deletion_timestamp
        .as_ref()
        .or(pod.metadata.creation_timestamp.as_ref())
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

/// The back-off state of a Job's pod recreation: failures since the last success, and when
/// the last of them happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Backoff {
    failures: u32,
    last_failure: Option<Timestamp>,
}

impl Backoff {
    /// The state after pods newly `succeeded` and `failed` (upstream's `newBackoffRecord`):
    /// a success resets the count to the failures that came after it.
    pub(super) fn after(self, succeeded: &[&Pod], failed: &[&Pod]) -> Backoff {
        let mut failed_at: Vec<Timestamp> = failed.iter().map(|p| finish_time(p)).collect();
        failed_at.sort();
        let Some(last_success) = succeeded.iter().map(|p| finish_time(p)).max() else {
            if failed_at.is_empty() {
                return self;
            }
            return Backoff {
                failures: self.failures + failed_at.len() as u32,
                last_failure: failed_at.last().copied(),
            };
        };
        let later: Vec<Timestamp> = failed_at
            .into_iter()
            .filter(|t| *t > last_success)
            .collect();
        Backoff {
            failures: later.len() as u32,
            last_failure: later.last().copied(),
        }
    }

    /// How long pod creation must still wait at `now`.
    pub(super) fn remaining(self, now: Timestamp) -> Duration {
        delay_left(self.failures, self.last_failure, now)
    }
}

/// The back-off left at `now` after `failures` failures, the last at `last`: 10 s doubling
/// per failure, at most [`BACKOFF_MAX`], counted from the last failure.
pub(super) fn delay_left(failures: u32, last: Option<Timestamp>, now: Timestamp) -> Duration {
    let Some(last) = last.filter(|_| failures > 0) else {
        return Duration::ZERO;
    };
    let mut delay = BACKOFF_BASE;
    for _ in 1..failures {
        delay = delay.saturating_mul(2);
        if delay >= BACKOFF_MAX {
            delay = BACKOFF_MAX;
            break;
        }
    }
    let elapsed = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
    delay.saturating_sub(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::job::fixtures::{at, pod};

    #[test]
    fn back_off_doubles_from_ten_seconds_up_to_ten_minutes() {
        let t0 = at("2026-01-01T00:00:00Z");
        assert_eq!(delay_left(0, Some(t0), t0), Duration::ZERO);
        assert_eq!(delay_left(1, Some(t0), t0), Duration::from_secs(10));
        assert_eq!(delay_left(2, Some(t0), t0), Duration::from_secs(20));
        assert_eq!(delay_left(3, Some(t0), t0), Duration::from_secs(40));
        assert_eq!(delay_left(20, Some(t0), t0), Duration::from_secs(600));
        let later = t0 + jiff::SignedDuration::from_secs(15);
        assert_eq!(delay_left(2, Some(t0), later), Duration::from_secs(5));
        assert_eq!(delay_left(1, Some(t0), later), Duration::ZERO);
    }

    #[test]
    fn a_success_resets_the_back_off_to_the_failures_after_it() {
        let f1 = pod("f1", "Failed", "2026-01-01T00:01:00Z", json!({}));
        let f2 = pod("f2", "Failed", "2026-01-01T00:03:00Z", json!({}));
        let s = pod("s", "Succeeded", "2026-01-01T00:02:00Z", json!({}));
        let b = Backoff::default().after(&[], &[&f1, &f2]);
        assert_eq!(b.failures, 2);
        assert_eq!(b.last_failure, Some(at("2026-01-01T00:03:00Z")));
        let b = b.after(&[&s], &[&f1, &f2]);
        assert_eq!(b.failures, 1);
        let b = b.after(&[&s], &[]);
        assert_eq!(b, Backoff::default());
    }
}
