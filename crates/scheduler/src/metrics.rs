//! The scheduler's Prometheus metrics, under upstream's names: scheduling attempts by result
//! and profile (`scheduler_schedule_attempts_total`), their duration
//! (`scheduler_scheduling_attempt_duration_seconds`), the time from a pod's first appearance
//! in the queue to its binding (`scheduler_pod_scheduling_sli_duration_seconds`), and the
//! pods waiting in each part of the queue (`scheduler_pending_pods`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `result` and `profile` of an attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Attempt {
    /// `scheduled`, `unschedulable` or `error`.
    pub result: String,
    /// The profile's scheduler name.
    pub profile: String,
}

/// The part of the queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueuePart {
    /// `active`, `backoff` or `unschedulable`.
    pub queue: String,
}

fn buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The metrics of one scheduler process (kept across leadership changes).
pub struct Metrics {
    registry: Registry,
    attempts: Family<Attempt, Counter>,
    attempt_duration: Family<Attempt, Histogram, fn() -> Histogram>,
    sli: Histogram,
    pending: Family<QueuePart, Gauge>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::default();
        let attempts = Family::<Attempt, Counter>::default();
        let attempt_duration =
            Family::<Attempt, Histogram, fn() -> Histogram>::new_with_constructor(buckets);
        let sli = Histogram::new(exponential_buckets(0.001, 2.0, 18));
        let pending = Family::<QueuePart, Gauge>::default();
        registry.register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result.",
            attempts.clone(),
        );
        registry.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (filter, score, assume).",
            attempt_duration.clone(),
        );
        registry.register(
            "scheduler_pod_scheduling_sli_duration_seconds",
            "Latency from a pod entering the scheduling queue to its binding.",
            sli.clone(),
        );
        registry.register(
            "scheduler_pending_pods",
            "Number of pending pods, by the queue part.",
            pending.clone(),
        );
        Metrics {
            registry,
            attempts,
            attempt_duration,
            sli,
            pending,
        }
    }
}

impl Metrics {
    /// Records one attempt.
    pub fn attempt(&self, result: &str, profile: &str, seconds: f64) {
        let labels = Attempt {
            result: result.into(),
            profile: profile.into(),
        };
        self.attempts.get_or_create(&labels).inc();
        self.attempt_duration
            .get_or_create(&labels)
            .observe(seconds);
    }

    /// Records a pod bound `seconds` after it entered the queue.
    pub fn bound(&self, seconds: f64) {
        self.sli.observe(seconds);
    }

    /// Sets the pending pods per queue part.
    pub fn pending(&self, active: usize, backoff: usize, unschedulable: usize) {
        for (queue, n) in [
            ("active", active),
            ("backoff", backoff),
            ("unschedulable", unschedulable),
        ] {
            self.pending
                .get_or_create(&QueuePart {
                    queue: queue.into(),
                })
                .set(n as i64);
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_read_as_prometheus_text_under_upstream_names() {
        let m = Metrics::default();
        m.attempt("scheduled", "default-scheduler", 0.002);
        m.attempt("unschedulable", "default-scheduler", 0.001);
        m.bound(0.5);
        m.pending(1, 2, 3);
        let text = m.encode();
        for line in [
            "scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"} 1",
            "scheduler_pending_pods{queue=\"unschedulable\"} 3",
            "scheduler_pod_scheduling_sli_duration_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
    }
}
