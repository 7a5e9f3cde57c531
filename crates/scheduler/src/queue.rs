//! The scheduling queue: pods waiting for a node. Three parts, as upstream's: the active
//! queue (highest priority first, then oldest), the back-off queue (a pod that failed waits
//! 1 s, doubling per attempt up to 10 s), and the unschedulable pool, which cluster events
//! (a node added or changed, a pod gone) move back, or five minutes at most.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use crate::cache::key;

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

/// Where a queued pod is.
#[derive(Clone, Copy)]
enum Place {
    Active,
    /// Handed out by `pop`, until the attempt ends (`remove` or `failed`).
    InFlight,
    Backoff(Instant),
    Unschedulable {
        since: Instant,
        ready: Instant,
    },
}

struct Entry {
    pod: Pod,
    place: Place,
    attempts: u32,
}

/// Active order: priority (higher first), creation time, key.
type Order = (std::cmp::Reverse<i32>, String, String);

fn order(pod: &Pod) -> Order {
    let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    (std::cmp::Reverse(priority), created, key(pod))
}

/// The queue. Each part is ordered, so every operation costs a logarithm of its size, however
/// many pods wait.
#[derive(Default)]
pub struct Queue {
    entries: HashMap<String, Entry>,
    active: BTreeSet<Order>,
    /// (ready at, key).
    backoff: BTreeSet<(Instant, String)>,
    /// (unschedulable since, key).
    unschedulable: BTreeSet<(Instant, String)>,
}

impl Queue {
    /// Takes `key` out of whichever part holds it; its entry stays.
    fn detach(&mut self, key: &str) {
        let Some(e) = self.entries.get(key) else {
            return;
        };
        match e.place {
            Place::Active => {
                self.active.remove(&order(&e.pod));
            }
            Place::InFlight => {}
            Place::Backoff(ready) => {
                self.backoff.remove(&(ready, key.to_string()));
            }
            Place::Unschedulable { since, .. } => {
                self.unschedulable.remove(&(since, key.to_string()));
            }
        }
    }

    /// Puts `key` (which has an entry) into a part.
    fn attach(&mut self, key: &str, place: Place) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.place = place;
        match place {
            Place::Active => {
                self.active.insert(order(&e.pod));
            }
            Place::InFlight => {}
            Place::Backoff(ready) => {
                self.backoff.insert((ready, key.to_string()));
            }
            Place::Unschedulable { since, .. } => {
                self.unschedulable.insert((since, key.to_string()));
            }
        }
    }

    /// Adds a pending pod, or refreshes the one queued; an update to an unschedulable pod
    /// gives it another try.
    pub fn add(&mut self, pod: Pod) {
        let k = key(&pod);
        let Some(place) = self.entries.get(&k).map(|e| e.place) else {
            self.entries.insert(
                k.clone(),
                Entry {
                    pod,
                    place: Place::InFlight,
                    attempts: 0,
                },
            );
            self.attach(&k, Place::Active);
            return;
        };
        self.detach(&k);
        if let Some(e) = self.entries.get_mut(&k) {
            e.pod = pod;
        }
        let place = match place {
            Place::Unschedulable { ready, .. } => Place::Backoff(ready),
            other => other,
        };
        self.attach(&k, place);
    }

    /// Drops a pod (bound, being bound, or deleted).
    pub fn remove(&mut self, key: &str) {
        self.detach(key);
        self.entries.remove(key);
    }

    /// The next pod to schedule, if any is active.
    pub fn pop(&mut self, now: Instant) -> Option<Pod> {
        self.flush(now);
        let first = self.active.pop_first()?;
        let e = self.entries.get_mut(&first.2)?;
        e.attempts += 1;
        e.place = Place::InFlight;
        Some(e.pod.clone())
    }

    /// A pod found no node: it waits in the unschedulable pool (or, after an error, just
    /// backs off).
    pub fn failed(&mut self, key: &str, unschedulable: bool, now: Instant) {
        let Some(attempts) = self.entries.get(key).map(|e| e.attempts) else {
            return;
        };
        self.detach(key);
        let ready = now + backoff(attempts);
        let place = if unschedulable {
            Place::Unschedulable { since: now, ready }
        } else {
            Place::Backoff(ready)
        };
        self.attach(key, place);
    }

    /// Something changed in the cluster that may let unschedulable pods fit.
    pub fn cluster_changed(&mut self) {
        let waiting: Vec<String> = std::mem::take(&mut self.unschedulable)
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        for k in waiting {
            if let Some(Place::Unschedulable { ready, .. }) = self.entries.get(&k).map(|e| e.place)
            {
                self.attach(&k, Place::Backoff(ready));
            }
        }
    }

    /// Moves pods whose back-off is over (or that sat unschedulable too long) to active.
    fn flush(&mut self, now: Instant) {
        while let Some((ready, k)) = self.backoff.first().cloned()
            && ready <= now
        {
            self.backoff.pop_first();
            self.attach(&k, Place::Active);
        }
        while let Some((since, k)) = self.unschedulable.first().cloned()
            && now.duration_since(since) >= MAX_UNSCHEDULABLE
        {
            self.unschedulable.pop_first();
            self.attach(&k, Place::Active);
        }
    }

    /// Pending pods per part: (active, backoff, unschedulable).
    pub fn lens(&self) -> (usize, usize, usize) {
        (
            self.active.len(),
            self.backoff.len(),
            self.unschedulable.len(),
        )
    }

    /// When the next backed-off pod is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.backoff.first().map(|(ready, _)| *ready)
    }
}

fn backoff(attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(8);
    (INITIAL_BACKOFF * factor).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, priority: i32, created: &str) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "d", "creationTimestamp": created},
            "spec": {"containers": [], "priority": priority}}),
        )
        .unwrap()
    }

    #[test]
    fn higher_priority_then_older_first_and_failures_back_off() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.add(pod("late", 0, "2026-01-01T00:00:02Z"));
        q.add(pod("early", 0, "2026-01-01T00:00:01Z"));
        q.add(pod("vip", 100, "2026-01-01T00:00:03Z"));
        let names: Vec<String> = std::iter::from_fn(|| q.pop(now))
            .map(|p| p.metadata.name.unwrap())
            .collect();
        assert_eq!(names, ["vip", "early", "late"]);
        q.failed("d/early", true, now);
        assert!(
            q.pop(now + Duration::from_secs(60))
                .map(|p| p.metadata.name.unwrap())
                != Some("early".into())
        );
        q.cluster_changed();
        assert_eq!(
            q.pop(now + Duration::from_secs(61))
                .and_then(|p| p.metadata.name),
            Some("early".into())
        );
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(10), Duration::from_secs(10));
    }
}
