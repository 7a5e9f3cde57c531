//! What a sync finds of a Job and its pods before acting (upstream's `syncJobCtx`):
//! the pods active, ready and terminating, those newly finished, and whether the Job
//! finishes and how.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::Pod;

use crate::pods;

use super::backoff::Backoff;
use super::conditions::{condition, failure, true_condition};
use super::failure_policy::{
    fail_job_message, failure_counts, past_backoff_limit_on_failure, pod_failed,
};
use super::indexed::{Intervals, delayed_deletions, index_below, index_failed, success_policy_met};
use super::{is_indexed, suspended, terminating, tracked, uid};

/// Uids already written to `status.uncountedTerminatedPods`.
#[derive(Debug, Default)]
pub(super) struct Uncounted {
    pub(super) succeeded: HashSet<String>,
    pub(super) failed: HashSet<String>,
}

impl Uncounted {
    fn of(status: &JobStatus) -> Uncounted {
        let set = |v: Option<&Vec<String>>| v.into_iter().flatten().cloned().collect();
        let u = status.uncounted_terminated_pods.as_ref();
        Uncounted {
            succeeded: set(u.and_then(|u| u.succeeded.as_ref())),
            failed: set(u.and_then(|u| u.failed.as_ref())),
        }
    }
}

/// What a sync finds of a Job and its pods before acting (upstream's `syncJobCtx`).
#[derive(Debug, Default)]
pub(super) struct Assessment {
    /// Pods neither finished nor being deleted.
    pub(super) active: Vec<Arc<Pod>>,
    pub(super) ready: i32,
    pub(super) terminating: i32,
    pub(super) succeeded: i32,
    pub(super) uncounted: Uncounted,
    pub(super) backoff: Backoff,
    /// How the Job finishes, if it does: FailureTarget, SuccessCriteriaMet, or Failed where a
    /// FailureTarget was already written.
    pub(super) finished: Option<JobCondition>,
    pub(super) prev_succeeded: Intervals,
    pub(super) succeeded_indexes: Intervals,
    pub(super) failed_indexes: Option<Intervals>,
    /// Per index, the failed pod kept until its replacement exists (`backoffLimitPerIndex`).
    pub(super) delayed: HashMap<i32, Arc<Pod>>,
    /// When the active deadline passes.
    pub(super) deadline_in: Option<Duration>,
}

/// Looks at `job` (its start time already set) and its `pods` at `now`; `removing` are the
/// pods whose finalizer removal the cache does not show yet, `backoff` the back-off so far.
pub(super) fn assess(
    job: &Job,
    spec: &JobSpec,
    pods: &[Arc<Pod>],
    removing: &HashSet<String>,
    backoff: Backoff,
    now: Timestamp,
) -> Assessment {
    let status = job.status.clone().unwrap_or_default();
    let indexed = is_indexed(spec);
    let completions = spec.completions.unwrap_or(0);
    let uncounted = Uncounted::of(&status);
    let active: Vec<Arc<Pod>> = pods.iter().filter(|p| pod::is_active(p)).cloned().collect();
    let ready = active.iter().filter(|p| pods::is_ready(p)).count() as i32;
    let terminating_n = pods.iter().filter(|p| terminating(p)).count() as i32;
    // Pods not counted yet: still tracked, not written as uncounted, and for Indexed Jobs
    // with a valid index.
    let countable = |p: &&Arc<Pod>| {
        tracked(p)
            && !removing.contains(uid(p))
            && (!indexed || index_below(p, completions).is_some())
    };
    let new_succeeded: Vec<&Pod> = pods
        .iter()
        .filter(countable)
        .filter(|p| pod::phase(p) == "Succeeded" && !uncounted.succeeded.contains(uid(p)))
        .map(|p| p.as_ref())
        .collect();
    let new_failed: Vec<&Pod> = pods
        .iter()
        .filter(countable)
        .filter(|p| pod_failed(p, spec) && !uncounted.failed.contains(uid(p)))
        .map(|p| p.as_ref())
        .collect();
    let succeeded = status.succeeded.unwrap_or(0)
        + new_succeeded.len() as i32
        + uncounted.succeeded.len() as i32;
    let failed = status.failed.unwrap_or(0)
        + new_failed
            .iter()
            .filter(|p| failure_counts(spec, p))
            .count() as i32
        + uncounted.failed.len() as i32;
    let backoff = backoff.after(&new_succeeded, &new_failed);

    let mut finished = true_condition(job, "SuccessCriteriaMet").cloned();
    if finished.is_none() {
        if let Some(target) = true_condition(job, "FailureTarget") {
            finished = Some(condition(
                "Failed",
                "True",
                target.reason.as_deref().unwrap_or(""),
                target.message.as_deref().unwrap_or(""),
                now,
            ));
        } else if let Some(message) = fail_job_message(spec, pods) {
            finished = Some(failure("PodFailurePolicy", &message, now));
        }
    }
    let mut deadline_in = None;
    if finished.is_none() {
        let start = status.start_time.as_ref().map(|t| t.0);
        let deadline = spec
            .active_deadline_seconds
            .zip(start)
            .filter(|_| !suspended(spec))
            .map(|(s, start)| start + jiff::SignedDuration::from_secs(s));
        if failed > spec.backoff_limit.unwrap_or(6) || past_backoff_limit_on_failure(spec, pods) {
            finished = Some(failure(
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                now,
            ));
        } else if let Some(deadline) = deadline {
            if now >= deadline {
                finished = Some(failure(
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                    now,
                ));
            } else {
                deadline_in = Duration::try_from(deadline.duration_since(now)).ok();
            }
        }
    }

    let mut a = Assessment {
        active,
        ready,
        terminating: terminating_n,
        succeeded,
        uncounted,
        backoff,
        finished,
        deadline_in,
        ..Default::default()
    };
    if indexed {
        assess_indexes(&mut a, spec, &status, pods, removing, now);
    }
    a
}

/// The part of [`assess`] for Indexed Jobs: the succeeded indexes (their count is
/// `succeeded`), with `backoffLimitPerIndex` the failed indexes and the failed pods kept per
/// index, and unless `a.finished` already says how the Job finishes, whether too many failed
/// indexes, every index done with some failed, or the `successPolicy` finish it.
fn assess_indexes(
    a: &mut Assessment,
    spec: &JobSpec,
    status: &JobStatus,
    pods: &[Arc<Pod>],
    removing: &HashSet<String>,
    now: Timestamp,
) {
    let completions = spec.completions.unwrap_or(0);
    let prev = Intervals::parse(
        status.completed_indexes.as_deref().unwrap_or(""),
        completions,
    );
    let done = pods
        .iter()
        .filter(|p| pod::phase(p) == "Succeeded" && tracked(p))
        .filter_map(|p| index_below(p, completions));
    let succeeded_indexes = prev.with(done);
    a.succeeded = succeeded_indexes.total();
    if let Some(per_index) = spec.backoff_limit_per_index {
        let prev_failed =
            Intervals::parse(status.failed_indexes.as_deref().unwrap_or(""), completions);
        let failed_now = pods
            .iter()
            .filter(|p| index_failed(spec, p, per_index))
            .filter_map(|p| index_below(p, completions));
        let failed_indexes = prev_failed.with(failed_now);
        if a.finished.is_none() {
            if spec
                .max_failed_indexes
                .is_some_and(|m| failed_indexes.total() > m)
            {
                a.finished = Some(failure(
                    "MaxFailedIndexesExceeded",
                    "Job has exceeded the specified maximal number of failed indexes",
                    now,
                ));
            } else if failed_indexes.total() > 0
                && failed_indexes.total() + succeeded_indexes.total() >= completions
            {
                a.finished = Some(failure("FailedIndexes", "Job has failed indexes", now));
            }
        }
        a.delayed = delayed_deletions(
            spec,
            pods,
            &a.active,
            removing,
            &succeeded_indexes,
            &failed_indexes,
        );
        a.failed_indexes = Some(failed_indexes);
    }
    if a.finished.is_none()
        && let Some(message) = success_policy_met(
            spec.success_policy.as_ref(),
            completions,
            &succeeded_indexes,
        )
    {
        a.finished = Some(condition(
            "SuccessCriteriaMet",
            "True",
            "SuccessPolicy",
            &message,
            now,
        ));
    }
    a.prev_succeeded = prev;
    a.succeeded_indexes = succeeded_indexes;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::job::fixtures::{at, job, pod, spec_of};

    #[test]
    fn failures_beyond_the_backoff_limit_fail_the_job() {
        let j = job(
            json!({"completions": 3, "parallelism": 1, "backoffLimit": 1}),
            json!({"failed": 1, "startTime": "2026-01-01T00:00:00Z"}),
        );
        let pods = vec![pod("f", "Failed", "2026-01-01T00:01:00Z", json!({}))];
        let now = at("2026-01-01T00:02:00Z");
        let a = assess(
            &j,
            &spec_of(&j),
            &pods,
            &HashSet::new(),
            Backoff::default(),
            now,
        );
        let c = a.finished.unwrap();
        assert_eq!(
            (c.type_.as_str(), c.reason.as_deref()),
            ("FailureTarget", Some("BackoffLimitExceeded"))
        );
        assert_eq!(
            c.message.as_deref(),
            Some("Job has reached the specified backoff limit")
        );
    }

    #[test]
    fn the_active_deadline_fails_the_job_or_sets_a_timer() {
        let j = job(
            json!({"activeDeadlineSeconds": 60}),
            json!({"startTime": "2026-01-01T00:00:00Z"}),
        );
        let spec = spec_of(&j);
        let a = assess(
            &j,
            &spec,
            &[],
            &HashSet::new(),
            Backoff::default(),
            at("2026-01-01T00:00:50Z"),
        );
        assert!(a.finished.is_none());
        assert_eq!(a.deadline_in, Some(Duration::from_secs(10)));
        let a = assess(
            &j,
            &spec,
            &[],
            &HashSet::new(),
            Backoff::default(),
            at("2026-01-01T00:01:00Z"),
        );
        assert_eq!(
            a.finished.unwrap().reason.as_deref(),
            Some("DeadlineExceeded")
        );
    }
}
