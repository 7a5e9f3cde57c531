//! Counting finished pods exactly once (upstream's
//! `trackJobStatusAndRemoveFinalizers`): their uids go to `uncountedTerminatedPods`, the
//! tracking finalizer is removed, then they move to `succeeded` / `failed`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::assess::Assessment;
use super::conditions::condition;
use super::failure_policy::{failure_counts, pod_failed};
use super::indexed::{completion_index, index_below};
use super::{TRACKING_FINALIZER, is_indexed, tracked, uid};

/// The most pods added to `uncountedTerminatedPods` in one sync.
const MAX_UNCOUNTED: usize = 500;

/// Removes the tracking finalizer from `pod` (a JSON patch checking the uid and the entry).
pub(super) async fn remove_finalizer(api: &Api<Pod>, pod: &Pod) -> kube::Result<()> {
    let fins = pod.finalizers();
    let Some(i) = fins.iter().position(|f| f == TRACKING_FINALIZER) else {
        return Ok(());
    };
    let remove = if fins.len() == 1 {
        json!({"op": "remove", "path": "/metadata/finalizers"})
    } else {
        json!({"op": "remove", "path": format!("/metadata/finalizers/{i}")})
    };
    let ops = json!([
        {"op": "test", "path": "/metadata/uid", "value": pod.metadata.uid},
        {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": TRACKING_FINALIZER},
        remove,
    ]);
    json_patch(api, pod, ops).await
}

/// Adds the tracking finalizer to an adopted `pod`.
pub(super) async fn add_finalizer(api: &Api<Pod>, pod: &Pod) -> kube::Result<()> {
    let add = if pod.finalizers().is_empty() {
        json!({"op": "add", "path": "/metadata/finalizers", "value": [TRACKING_FINALIZER]})
    } else {
        json!({"op": "add", "path": "/metadata/finalizers/-", "value": TRACKING_FINALIZER})
    };
    let ops = json!([{"op": "test", "path": "/metadata/uid", "value": pod.metadata.uid}, add]);
    json_patch(api, pod, ops).await
}

async fn json_patch(api: &Api<Pod>, pod: &Pod, ops: Value) -> kube::Result<()> {
    let patch: json_patch::Patch = serde_json::from_value(ops).map_err(kube::Error::SerdeError)?;
    api.patch(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await
    .map(|_| ())
}

/// Pod uids whose finalizer removal each Job (by key) waits to see in the cache.
#[derive(Default)]
pub(super) struct Removals(Mutex<HashMap<String, HashSet<String>>>);

impl Removals {
    pub(super) fn expect(&self, job: &str, uid: &str) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(job.to_string())
            .or_default()
            .insert(uid.to_string());
    }

    pub(super) fn observed(&self, job: &str, uid: &str) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = m.get_mut(job) {
            s.remove(uid);
        }
    }

    /// The removals `job` still waits for: those whose pod the cache shows with the
    /// finalizer (`still(uid)`).
    pub(super) fn pending(&self, job: &str, still: impl Fn(&str) -> bool) -> HashSet<String> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = m.get_mut(job) else {
            return HashSet::new();
        };
        s.retain(|u| still(u));
        let out = s.clone();
        if s.is_empty() {
            m.remove(job);
        }
        out
    }

    pub(super) fn forget(&self, job: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(job);
    }
}

/// What counting finished pods decided.
#[derive(Debug, Default)]
pub(super) struct Tracking {
    /// Pods to free of the tracking finalizer.
    pub(super) release: Vec<Arc<Pod>>,
    /// Uids of the pods still carrying it (not counting removals in flight).
    pub(super) with_finalizer: HashSet<String>,
    /// The condition the Job finishes with once no pod is left uncounted or terminating.
    pub(super) finished: Option<JobCondition>,
    /// Too many pods to count in one sync.
    pub(super) reached_max: bool,
}

/// Counts finished pods into `status` (upstream's `trackJobStatusAndRemoveFinalizers` up to
/// the first write): uids of pods done to `uncountedTerminatedPods`, succeeded indexes to
/// `completedIndexes`, and the interim condition (FailureTarget, SuccessCriteriaMet).
#[allow(clippy::too_many_arguments)]
pub(super) fn track(
    job: &Job,
    spec: &JobSpec,
    status: &mut JobStatus,
    pods: &[Arc<Pod>],
    removing: &HashSet<String>,
    a: &Assessment,
    finished: Option<JobCondition>,
    now: Timestamp,
) -> Tracking {
    let indexed = is_indexed(spec);
    let completions = spec.completions.unwrap_or(0);
    let mut t = Tracking {
        with_finalizer: pods
            .iter()
            .filter(|p| tracked(p) && !removing.contains(uid(p)))
            .map(|p| uid(p).to_string())
            .collect(),
        ..Default::default()
    };
    settle_uncounted(status, &t.with_finalizer);
    let mut ordered: Vec<&Arc<Pod>> = pods.iter().collect();
    if indexed {
        ordered.sort_by_key(|p| completion_index(p).unwrap_or(i32::MAX));
    }
    let finishing_badly = finished
        .as_ref()
        .is_some_and(|c| c.type_ != "SuccessCriteriaMet");
    let uncounted = status
        .uncounted_terminated_pods
        .get_or_insert_with(UncountedTerminatedPods::default);
    let mut new_indexes = Vec::new();
    for pod in ordered {
        let id = uid(pod);
        if !tracked(pod) || removing.contains(id) {
            continue;
        }
        let failed = pod_failed(pod, spec);
        let removable = job.metadata.deletion_timestamp.is_some()
            || finished.is_some()
            || pod::phase(pod) == "Succeeded"
            || (failed
                && completion_index(pod)
                    .and_then(|ix| a.delayed.get(&ix))
                    .is_none_or(|d| uid(d) != id));
        if !removable {
            continue;
        }
        t.release.push(pod.clone());
        if pod::phase(pod) == "Succeeded" && !a.uncounted.failed.contains(id) {
            if indexed {
                if let Some(ix) = index_below(pod, completions)
                    && !a.prev_succeeded.has(ix)
                {
                    new_indexes.push(ix);
                }
            } else if !a.uncounted.succeeded.contains(id) {
                uncounted
                    .succeeded
                    .get_or_insert_with(Vec::new)
                    .push(id.to_string());
            }
        } else if (failed || finishing_badly)
            && !a.uncounted.failed.contains(id)
            && (!indexed || index_below(pod, completions).is_some())
            && failure_counts(spec, pod)
        {
            uncounted
                .failed
                .get_or_insert_with(Vec::new)
                .push(id.to_string());
        }
        let n = new_indexes.len()
            + uncounted.succeeded.as_ref().map_or(0, Vec::len)
            + uncounted.failed.as_ref().map_or(0, Vec::len);
        if n >= MAX_UNCOUNTED {
            t.reached_max = true;
            break;
        }
    }
    if indexed {
        let succeeded = a.succeeded_indexes.with(new_indexes);
        status.succeeded = Some(succeeded.total()).filter(|n| *n != 0);
        status.completed_indexes = Some(succeeded.to_string()).filter(|s| !s.is_empty());
        status.failed_indexes = a.failed_indexes.as_ref().map(|f| f.to_string());
    }
    t.finished = match finished {
        Some(c) if c.type_ == "FailureTarget" => {
            let final_ = condition(
                "Failed",
                "True",
                c.reason.as_deref().unwrap_or(""),
                c.message.as_deref().unwrap_or(""),
                now,
            );
            status.conditions.get_or_insert_with(Vec::new).push(c);
            Some(final_)
        }
        Some(c) if c.type_ == "SuccessCriteriaMet" => {
            let list = status.conditions.get_or_insert_with(Vec::new);
            if !list
                .iter()
                .any(|x| x.type_ == "SuccessCriteriaMet" && x.status == "True")
            {
                list.push(c.clone());
            }
            Some(condition(
                "Complete",
                "True",
                c.reason.as_deref().unwrap_or(""),
                c.message.as_deref().unwrap_or(""),
                now,
            ))
        }
        other => other,
    };
    t
}

/// Moves the uncounted pods no longer carrying the finalizer to `succeeded` / `failed`
/// (upstream's `cleanUncountedPodsWithoutFinalizers`).
pub(super) fn settle_uncounted(status: &mut JobStatus, with_finalizer: &HashSet<String>) {
    let u = status
        .uncounted_terminated_pods
        .get_or_insert_with(UncountedTerminatedPods::default);
    let settle = |list: &mut Option<Vec<String>>| -> i32 {
        let Some(v) = list.as_mut() else {
            return 0;
        };
        let before = v.len();
        v.retain(|u| with_finalizer.contains(u));
        let moved = (before - v.len()) as i32;
        if v.is_empty() {
            *list = None;
        }
        moved
    };
    let (s, f) = (settle(&mut u.succeeded), settle(&mut u.failed));
    if s > 0 {
        status.succeeded = Some(status.succeeded.unwrap_or(0) + s);
    }
    if f > 0 {
        status.failed = Some(status.failed.unwrap_or(0) + f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use crate::job::assess::assess;
    use crate::job::backoff::Backoff;
    use crate::job::conditions::enact;
    use crate::job::fixtures::{at, job, pod, spec_of};

    #[test]
    fn finished_pods_are_written_uncounted_then_counted_once_freed() {
        let j = job(
            json!({"completions": 2, "parallelism": 2}),
            json!({"startTime": "2026-01-01T00:00:00Z"}),
        );
        let spec = spec_of(&j);
        let pods = vec![
            pod("a", "Succeeded", "2026-01-01T00:01:00Z", json!({})),
            pod("b", "Running", "", json!({})),
        ];
        let now = at("2026-01-01T00:02:00Z");
        let a = assess(&j, &spec, &pods, &HashSet::new(), Backoff::default(), now);
        assert_eq!((a.succeeded, a.active.len()), (1, 1));
        let mut status = j.status.clone().unwrap();
        let t = track(
            &j,
            &spec,
            &mut status,
            &pods,
            &HashSet::new(),
            &a,
            None,
            now,
        );
        assert_eq!(t.release.len(), 1);
        assert_eq!(
            status.uncounted_terminated_pods.as_ref().unwrap().succeeded,
            Some(vec!["uid-a".to_string()])
        );
        assert_eq!(status.succeeded, None);
        // The finalizer is gone: the pod moves to the counters.
        let mut with = t.with_finalizer;
        with.remove("uid-a");
        settle_uncounted(&mut status, &with);
        assert_eq!(status.succeeded, Some(1));
        assert_eq!(
            status.uncounted_terminated_pods,
            Some(UncountedTerminatedPods::default())
        );
        // The next sync sees status succeeded=1 and a pod without finalizer: no recount.
        let mut j2 = j.clone();
        j2.status = Some(status);
        let freed = pod(
            "a",
            "Succeeded",
            "2026-01-01T00:01:00Z",
            json!({"metadata": {"finalizers": null}}),
        );
        let a = assess(
            &j2,
            &spec,
            &[freed, pods[1].clone()],
            &HashSet::new(),
            Backoff::default(),
            now,
        );
        assert_eq!(a.succeeded, 1);
    }

    #[test]
    fn jobs_complete_through_success_criteria_met() {
        let j = job(
            json!({"completions": 1}),
            json!({"startTime": "2026-01-01T00:00:00Z"}),
        );
        let spec = spec_of(&j);
        let now = at("2026-01-01T00:02:00Z");
        let met = condition(
            "SuccessCriteriaMet",
            "True",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
            now,
        );
        let a = Assessment::default();
        let mut status = JobStatus {
            succeeded: Some(1),
            terminating: Some(0),
            ..Default::default()
        };
        let t = track(
            &j,
            &spec,
            &mut status,
            &[],
            &HashSet::new(),
            &a,
            Some(met),
            now,
        );
        let conds = status.conditions.clone().unwrap();
        assert_eq!(conds[0].type_, "SuccessCriteriaMet");
        let fin = t.finished.unwrap();
        assert_eq!(
            (fin.type_.as_str(), fin.reason.as_deref()),
            ("Complete", Some("CompletionsReached"))
        );
        assert!(enact(&mut status, &fin, now));
        let conds = status.conditions.unwrap();
        assert_eq!(
            conds.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            ["SuccessCriteriaMet", "Complete"]
        );
        assert_eq!(status.completion_time, Some(Time(now)));
        // Terminating pods hold the final condition back.
        let mut busy = JobStatus {
            terminating: Some(1),
            ..Default::default()
        };
        assert!(!enact(
            &mut busy,
            &condition("Failed", "True", "x", "y", now),
            now
        ));
    }
}
