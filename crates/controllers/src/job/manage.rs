//! Creating and deleting a Job's pods towards what it wants running (upstream's
//! `manageJob`): which pods to delete first, the pods made from the template, and
//! slow-start creation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use kube::ResourceExt;

use crate::pod_control::namespace_terminating;
use crate::pods;

use super::assess::Assessment;
use super::backoff::{delay_left, finish_time};
use super::failure_policy::only_replace_failed;
use super::indexed::{annotation_count, first_pending, index_below, index_failure_counts};
use super::sync::Sync;
use super::tracking::remove_finalizer;
use super::{
    COMPLETION_INDEX, INDEX_FAILURES, INDEX_IGNORED_FAILURES, TRACKING_FINALIZER, is_indexed,
    suspended,
};

/// The variable an Indexed Job's containers read their index from.
const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// The most pods created or deleted in one sync.
const BURST: usize = 500;
/// The longest name prefix the API server accepts before adding its random suffix.
const MAX_GENERATED_PREFIX: usize = 58;

/// Upstream's ordering of active pods, the first to delete first: unscheduled, pending,
/// not ready, ready more recently, restarted more, newer.
fn deletion_order(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let phase = |p: &Pod| match pod::phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    let restarts = |p: &Pod| -> i32 {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).sum())
            .unwrap_or(0)
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(a)
        .cmp(&scheduled(b))
        .then(phase(a).cmp(&phase(b)))
        .then(pods::is_ready(a).cmp(&pods::is_ready(b)))
        .then(pods::ready_since(b).cmp(&pods::ready_since(a)))
        .then(restarts(b).cmp(&restarts(a)))
        .then(created(b).cmp(&created(a)))
}

/// The active pods to delete: for Indexed Jobs every pod without a valid index and all but
/// the most valuable of each repeated index; then the first by [`deletion_order`] until at
/// least `at_least` are chosen.
pub(super) fn to_remove(spec: &JobSpec, active: &[Arc<Pod>], at_least: usize) -> Vec<Arc<Pod>> {
    let mut rm: Vec<Arc<Pod>> = Vec::new();
    let mut left: Vec<Arc<Pod>> = Vec::new();
    if is_indexed(spec) {
        let completions = spec.completions.unwrap_or(0);
        let mut by_index: HashMap<i32, Vec<Arc<Pod>>> = HashMap::new();
        for p in active {
            match index_below(p, completions) {
                Some(ix) => by_index.entry(ix).or_default().push(p.clone()),
                None => rm.push(p.clone()),
            }
        }
        let mut indexes: Vec<i32> = by_index.keys().copied().collect();
        indexes.sort();
        for ix in indexes {
            let mut same = by_index.remove(&ix).unwrap_or_default();
            same.sort_by(|a, b| deletion_order(a, b));
            if let Some(keep) = same.pop() {
                left.push(keep);
            }
            rm.extend(same);
        }
    } else {
        left = active.to_vec();
    }
    if rm.len() < at_least {
        left.sort_by(|a, b| deletion_order(a, b));
        let more = (at_least - rm.len()).min(left.len());
        rm.extend(left.into_iter().take(more));
    }
    rm
}

/// A pod of `job` for `index` (Indexed Jobs), replacing the failed `replaced` of that index.
pub(super) fn pod_for(
    job: &Job,
    spec: &JobSpec,
    index: Option<i32>,
    replaced: Option<&Pod>,
) -> Pod {
    let name = job.name_any();
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    let finalizers = meta.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.into());
    }
    let mut prefix = format!("{name}-");
    if let Some(ix) = index {
        let annotations = meta.annotations.get_or_insert_with(Default::default);
        annotations.insert(COMPLETION_INDEX.into(), ix.to_string());
        if spec.backoff_limit_per_index.is_some() {
            let (failures, ignored) = index_failure_counts(spec, replaced);
            annotations.insert(INDEX_FAILURES.into(), failures.to_string());
            if ignored > 0 {
                annotations.insert(INDEX_IGNORED_FAILURES.into(), ignored.to_string());
            }
        }
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX.into(), ix.to_string());
        if let Some(pod_spec) = template.spec.as_mut() {
            pod_spec.hostname = Some(format!("{name}-{ix}"));
            for c in pod_spec
                .init_containers
                .iter_mut()
                .flatten()
                .chain(pod_spec.containers.iter_mut())
            {
                add_index_env(c);
            }
        }
        let suffix = format!("-{ix}-");
        let keep = MAX_GENERATED_PREFIX
            .saturating_sub(suffix.len())
            .min(name.len());
        prefix = format!("{}{suffix}", &name[..keep]);
    }
    let ns = job.namespace().unwrap_or_default();
    pods::from_template(&template, pods::controller_ref(job), &ns, &prefix)
}

/// Gives a container `JOB_COMPLETION_INDEX` from the index annotation, unless it sets it.
fn add_index_env(c: &mut Container) {
    let env = c.env.get_or_insert_with(Vec::new);
    if env.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
        return;
    }
    env.push(EnvVar {
        name: COMPLETION_INDEX_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
            }),
            ..Default::default()
        }),
    });
}

/// What creating or deleting pods did.
#[derive(Default)]
pub(super) struct Managed {
    pub(super) active: i32,
    /// Deleted pods, and how many of them were ready.
    pub(super) deleted: i32,
    pub(super) deleted_ready: i32,
    /// When to sync again to create pods held back by a back-off.
    pub(super) retry_in: Option<Duration>,
    pub(super) error: Option<crate::runtime::Error>,
}

impl Sync<'_> {
    /// Deletes the active pods of a finishing Job, keeping their finalizers so that they are
    /// counted. Returns how many were deleted, how many of those were ready, and an error.
    pub(super) async fn delete_active(
        &self,
        active: &[Arc<Pod>],
    ) -> (i32, i32, Option<crate::runtime::Error>) {
        let (mut deleted, mut ready, mut error) = (0, 0, None);
        for pod in active {
            match self.control.delete_unexpected(pod).await {
                Ok(_) => {
                    deleted += 1;
                    ready += i32::from(pods::is_ready(pod));
                }
                Err(e) => error = Some(e.into()),
            }
        }
        (deleted, ready, error)
    }

    /// Deletes pods the Job no longer wants (freeing them of the finalizer first, so they
    /// are not counted as failures).
    async fn remove_pods(&self, doomed: &[Arc<Pod>], m: &mut Managed) {
        for pod in doomed.iter().take(BURST) {
            if let Err(e) = remove_finalizer(&self.api, pod).await
                && !matches!(&e, kube::Error::Api(s) if s.code == 404)
            {
                m.error = Some(crate::runtime::Error::Step {
                    what: "removing the tracking finalizer",
                    source: Box::new(e.into()),
                });
                continue;
            }
            match self.control.delete(pod).await {
                Ok(_) => {
                    m.active -= 1;
                    m.deleted += 1;
                    m.deleted_ready += i32::from(pods::is_ready(pod));
                }
                Err(e) => m.error = Some(e.into()),
            }
        }
    }

    /// Creates or deletes pods towards what the Job wants running (upstream's `manageJob`).
    pub(super) async fn manage(
        &self,
        spec: &JobSpec,
        a: &Assessment,
        pods: &[Arc<Pod>],
    ) -> Managed {
        let mut m = Managed {
            active: a.active.len() as i32,
            ..Default::default()
        };
        if suspended(spec) {
            let doomed = to_remove(spec, &a.active, a.active.len());
            self.remove_pods(&doomed, &mut m).await;
            return m;
        }
        let parallelism = spec.parallelism.unwrap_or(1).max(0);
        let active = m.active;
        let want = match spec.completions {
            None if a.succeeded > 0 => active,
            None => parallelism,
            Some(c) => (c - a.succeeded).clamp(0, parallelism),
        };
        let doomed = to_remove(spec, &a.active, (active - want).max(0) as usize);
        if !doomed.is_empty() {
            self.remove_pods(&doomed, &mut m).await;
            return m;
        }
        let held = if only_replace_failed(spec) {
            a.terminating
        } else {
            0
        };
        let missing = want - held - active;
        if missing <= 0 {
            return m;
        }
        if spec.backoff_limit_per_index.is_none() {
            let wait = a.backoff.remaining(self.now);
            if !wait.is_zero() {
                m.retry_in = Some(wait.max(Duration::from_secs(1)));
                return m;
            }
        }
        let mut count = (missing as usize).min(BURST);
        let mut indexes: Vec<Option<i32>> = vec![None; count];
        if is_indexed(spec) {
            let mut pending = first_pending(count, spec.completions.unwrap_or(0), spec, a, pods);
            if spec.backoff_limit_per_index.is_some() {
                let left = |ix: &i32| {
                    a.delayed.get(ix).map_or(Duration::ZERO, |p| {
                        let failures = annotation_count(p, INDEX_FAILURES)
                            + annotation_count(p, INDEX_IGNORED_FAILURES)
                            + 1;
                        delay_left(failures as u32, Some(finish_time(p)), self.now)
                    })
                };
                let soonest = pending.iter().map(left).min();
                pending.retain(|ix| left(ix).is_zero());
                if pending.is_empty() {
                    m.retry_in = soonest.map(|d| d.max(Duration::from_secs(1)));
                    return m;
                }
            }
            count = pending.len();
            indexes = pending.into_iter().map(Some).collect();
        }
        self.create(spec, a, &indexes[..count], &mut m).await;
        m
    }

    /// Creates one pod per entry of `indexes` in slow-start batches (1, 2, 4, ...): a batch
    /// with a failure ends the creations of this sync.
    async fn create(
        &self,
        spec: &JobSpec,
        a: &Assessment,
        indexes: &[Option<i32>],
        m: &mut Managed,
    ) {
        let mut rest = indexes;
        let mut batch = 1;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(batch.min(rest.len()));
            rest = later;
            batch *= 2;
            let made = futures::future::join_all(now.iter().map(|ix| {
                let replaced = ix.and_then(|i| a.delayed.get(&i)).map(|p| p.as_ref());
                let pod = pod_for(&self.job, spec, *ix, replaced);
                async move { self.control.create(&pod).await }
            }))
            .await;
            let mut failed = false;
            for result in made {
                match result {
                    Ok(_) => m.active += 1,
                    // The namespace is going away: nothing to do about it.
                    Err(e) if namespace_terminating(&e) => failed = true,
                    Err(e) => {
                        failed = true;
                        m.error = Some(e.into());
                    }
                }
            }
            if failed {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::job::fixtures::{job, spec_of};

    #[test]
    fn indexed_pods_carry_their_index() {
        let j = job(
            json!({"completions": 3, "completionMode": "Indexed"}),
            json!({}),
        );
        let p = pod_for(&j, &spec_of(&j), Some(2), None);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-2-"));
        assert_eq!(p.annotations()[COMPLETION_INDEX], "2");
        assert_eq!(p.labels()[COMPLETION_INDEX], "2");
        assert_eq!(p.finalizers(), [TRACKING_FINALIZER]);
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        let env = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(env.name, "JOB_COMPLETION_INDEX");
        assert_eq!(
            env.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        let long = job(json!({"completionMode": "Indexed"}), json!({}));
        let mut long = long;
        long.metadata.name = Some("x".repeat(60));
        let p = pod_for(&long, &spec_of(&long), Some(12), None);
        let prefix = p.metadata.generate_name.unwrap();
        assert_eq!(prefix.len(), 58);
        assert!(prefix.ends_with("-12-"));
    }
}
