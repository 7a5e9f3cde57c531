//! The Job controller (`job-controller`): runs a batch/v1 Job's pods to completion, as
//! upstream's `job` controller does.
//!
//! Each sync claims the pods the Job's selector matches, counts the ones that finished and
//! creates or deletes pods so that at most `parallelism` run and no more than the remaining
//! `completions` do (slow-start batches, at most 500 per sync). Pods are made from the
//! template with the Job as controller and the `batch.kubernetes.io/job-tracking` finalizer;
//! an Indexed Job's pods also get their completion index (annotation and label
//! `batch.kubernetes.io/job-completion-index`, the `JOB_COMPLETION_INDEX` variable, hostname
//! `<job>-<index>`, name `<job>-<index>-<random>`).
//!
//! Finished pods are counted the way upstream counts them, so that no pod is counted twice
//! nor lost: their uids are first written to `status.uncountedTerminatedPods`, then their
//! finalizer is removed, then they move to `succeeded` / `failed` (Indexed Jobs count
//! indexes in `completedIndexes` instead). A pod being deleted without having succeeded
//! counts as failed. Failed pods are replaced after an exponential back-off (10 s doubling,
//! at most 10 minutes, upstream's `MaxJobPodFailureBackOff`); with `backoffLimitPerIndex` the
//! back-off and the failure count (`batch.kubernetes.io/job-index-failure-count`) are per
//! index, and an index failing too often is written to `failedIndexes`.
//!
//! A Job fails (condition `FailureTarget`, then `Failed` once no pod is left running) when
//! its failures exceed `backoffLimit` (`BackoffLimitExceeded`), it ran longer than
//! `activeDeadlineSeconds` (`DeadlineExceeded`), a `podFailurePolicy` rule says `FailJob`
//! (`PodFailurePolicy`), or too many indexes failed (`MaxFailedIndexesExceeded`,
//! `FailedIndexes`); it succeeds (`SuccessCriteriaMet`, then `Complete` with its
//! `completionTime`) when enough pods succeeded (`CompletionsReached`) or its
//! `successPolicy` is met (`SuccessPolicy`). A suspended Job's pods are deleted (condition
//! `Suspended`); resuming resets `startTime`. Status also reports `active`, `ready` and
//! `terminating`. Pods whose Job is gone or finished lose the tracking finalizer.
//!
//! The module's parts:
//! - this file: the controller's loops ([`start`]), which Jobs a pod change concerns,
//!   freeing orphaned pods, and the entry of a Job's sync ([`reconcile`], adopting pods
//!   with [`claim`]);
//! - [`assess`]: what a sync finds of a Job and its pods before acting, and whether and
//!   how the Job finishes;
//! - [`sync`]: one sync's order of work, status writes, suspension and finishing events;
//! - [`manage`]: creating and deleting pods towards `parallelism` and `completions`;
//! - [`tracking`]: counting finished pods through `uncountedTerminatedPods` and the
//!   tracking finalizer;
//! - [`conditions`]: the Job's conditions, and its final Complete or Failed one;
//! - [`failure_policy`]: which pods count as failed, `podFailurePolicy` rules and the
//!   `OnFailure` restart limit;
//! - [`backoff`]: the back-off before failed pods are replaced;
//! - [`indexed`]: Indexed Jobs' completion indexes, per-index limits and `successPolicy`;
//! - `fixtures` (tests only): the Jobs and pods the unit tests build; each part's tests
//!   live with it.

mod assess;
mod backoff;
mod conditions;
mod failure_policy;
#[cfg(test)]
mod fixtures;
mod indexed;
mod manage;
mod sync;
mod tracking;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::events::{Recorder, Type, reference};
use crate::expectations::Expectations;
use crate::pod_control::PodControl;
use crate::runtime::{Informers, Result, Shared};
use crate::{pods, runtime};

use self::backoff::Backoff;
use self::conditions::is_finished;
use self::sync::Sync;
use self::tracking::{Removals, add_finalizer, remove_finalizer};

pub(crate) use self::conditions::finished_condition;

/// The controller's name, and its events' component.
const NAME: &str = "job-controller";
/// The finalizer that keeps a finished pod until the controller has counted it.
const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// An Indexed Job pod's index (annotation and label).
const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Failures so far of a pod's index (`backoffLimitPerIndex`).
const INDEX_FAILURES: &str = "batch.kubernetes.io/job-index-failure-count";
/// Failures of a pod's index that a pod failure policy ignored.
const INDEX_IGNORED_FAILURES: &str = "batch.kubernetes.io/job-index-ignored-failure-count";
/// The `spec.managedBy` value of Jobs this controller syncs (as when it is unset).
const MANAGED_BY: &str = "kubernetes.io/job-controller";

struct Ctx {
    client: kube::Client,
    jobs: Store<Job>,
    pods: Store<Pod>,
    expectations: Expectations,
    removals: Removals,
    backoffs: Mutex<HashMap<String, Backoff>>,
    events: Recorder,
}

/// Starts the Job controller: one loop over Jobs, one that frees the pods of Jobs gone or
/// finished from the tracking finalizer.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let jobs = informers.store::<Job>();
    let pods = informers.store::<Pod>();
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        jobs: jobs.clone(),
        pods: pods.clone(),
        expectations: Expectations::default(),
        removals: Removals::default(),
        backoffs: Mutex::new(HashMap::new()),
        events: shared.recorder(NAME),
    });
    let lookup = jobs.clone();
    let syncs = Controller::for_stream(informers.subscribe::<Job>(), jobs.clone())
        .watches_stream(informers.subscribe::<Pod>(), move |pod: Pod| {
            jobs_of(&lookup, &pod)
        });
    let tracked = informers
        .subscribe::<Pod>()
        .filter(|p| futures::future::ready(matches!(p, Ok(p) if tracked(p))));
    let all_pods = pods.clone();
    let orphans = Controller::for_stream(tracked, pods)
        .watches_stream(informers.subscribe::<Job>(), move |job: Job| {
            pods_to_release(&jobs, &all_pods, &job)
        });
    let a = runtime::run(NAME, syncs, shared, ctx.clone(), reconcile);
    let b = runtime::run(NAME, orphans, shared, ctx, release_orphan);
    futures::future::join(a, b).map(|_| ()).boxed()
}

/// The Jobs a pod change concerns: its controller if that is a Job, else every Job in its
/// namespace whose selector matches it (it may be adopted).
fn jobs_of(jobs: &Store<Job>, pod: &Pod) -> Vec<ObjectRef<Job>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(c) = pods::controller_of(&pod.metadata) {
        if c.kind == "Job" {
            return vec![ObjectRef::new(&c.name).within(&ns)];
        }
        return Vec::new();
    }
    jobs.state()
        .iter()
        .filter(|j| j.namespace().as_deref() == Some(ns.as_str()))
        .filter(|j| pods::selects(selector(j).as_ref(), pod.labels()))
        .map(|j| ObjectRef::from_obj(j.as_ref()))
        .collect()
}

/// The pods of `job` still carrying the tracking finalizer, once the Job is finished or gone
/// (a deleted Job is no longer in the cache when its change is told).
fn pods_to_release(jobs: &Store<Job>, pods: &Store<Pod>, job: &Job) -> Vec<ObjectRef<Pod>> {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let current = jobs
        .get(&ObjectRef::from_obj(job))
        .filter(|j| j.metadata.uid.as_deref() == Some(uid.as_str()));
    if current.is_some_and(|j| !is_finished(&j)) {
        return Vec::new();
    }
    pods.state()
        .iter()
        .filter(|p| tracked(p))
        .filter(|p| pods::controller_of(&p.metadata).is_some_and(|c| c.uid == uid))
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// Removes the tracking finalizer from a pod no unfinished Job of ours controls (upstream's
/// orphan pod queue).
async fn release_orphan(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action> {
    let Some(pod) = ctx.pods.get(&ObjectRef::from_obj(pod.as_ref())) else {
        return Ok(Action::await_change());
    };
    if !tracked(&pod) {
        return Ok(Action::await_change());
    }
    if let Some(c) = pods::controller_of(&pod.metadata) {
        if c.kind != "Job" || c.api_version != "batch/v1" {
            return Ok(Action::await_change());
        }
        let ns = pod.namespace().unwrap_or_default();
        let job = ctx
            .jobs
            .get(&ObjectRef::new(&c.name).within(&ns))
            .filter(|j| j.metadata.uid.as_deref() == Some(c.uid.as_str()));
        if let Some(job) = job
            && (!ours(&job) || !is_finished(&job))
        {
            return Ok(Action::await_change());
        }
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    match remove_finalizer(&api, &pod).await {
        Ok(()) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// Whether the pod carries the tracking finalizer.
fn tracked(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

/// Whether this controller syncs `job` (`spec.managedBy` unset or ours).
fn ours(job: &Job) -> bool {
    job.spec
        .as_ref()
        .and_then(|s| s.managed_by.as_deref())
        .is_none_or(|m| m == MANAGED_BY)
}

/// The Job's selector. The API server generates one on create; a Job stored without one
/// (and not asking for a manual selector) selects by its controller-uid label as if it had.
fn selector(job: &Job) -> Option<LabelSelector> {
    let spec = job.spec.as_ref()?;
    if let Some(s) = &spec.selector {
        return Some(s.clone());
    }
    if spec.manual_selector == Some(true) {
        return None;
    }
    let uid = job.metadata.uid.clone()?;
    Some(LabelSelector {
        match_labels: Some([("batch.kubernetes.io/controller-uid".to_string(), uid)].into()),
        match_expressions: None,
    })
}

fn is_indexed(spec: &JobSpec) -> bool {
    spec.completion_mode.as_deref() == Some("Indexed")
}

fn suspended(spec: &JobSpec) -> bool {
    spec.suspend == Some(true)
}

/// Being deleted and not yet finished (upstream's `controller.IsPodTerminating`).
fn terminating(pod: &Pod) -> bool {
    !pod::is_terminal(pod) && pod::is_terminating(pod)
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action> {
    let key = pods::key(&job.metadata);
    let Some(job) = ctx.jobs.get(&ObjectRef::from_obj(job.as_ref())) else {
        ctx.expectations.forget(&key);
        ctx.removals.forget(&key);
        backoffs(&ctx).remove(&key);
        return Ok(Action::await_change());
    };
    if !ours(&job) {
        return Ok(Action::await_change());
    }
    if is_finished(&job) {
        backoffs(&ctx).remove(&key);
        return Ok(Action::await_change());
    }
    let Some(spec) = job.spec.clone() else {
        return Ok(Action::await_change());
    };
    if !matches!(
        spec.completion_mode.as_deref(),
        None | Some("NonIndexed" | "Indexed")
    ) {
        ctx.events
            .publish(
                &reference(job.as_ref()),
                Type::Warning,
                "UnknownCompletionMode",
                "Skipped Job sync because completion mode is unknown",
            )
            .await;
        return Ok(Action::await_change());
    }
    let ns = job.namespace().unwrap_or_default();
    let in_ns: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let (satisfied, removing) = {
        let by_uid: HashMap<&str, &Arc<Pod>> = in_ns.iter().map(|p| (uid(p), p)).collect();
        let satisfied = ctx.expectations.satisfied_by(&key, &in_ns);
        let removing = ctx
            .removals
            .pending(&key, |u| by_uid.get(u).is_some_and(|p| tracked(p)));
        (satisfied, removing)
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mine = claim(&api, &job, in_ns).await;
    let now =
        Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now());
    let control = PodControl::new(api.clone(), job.as_ref(), &ctx.events, &ctx.expectations);
    let mut sync = Sync {
        ctx: &ctx,
        key: key.clone(),
        job: (*job).clone(),
        api,
        control,
        now,
    };
    sync.run(&spec, &mine, satisfied, &removing).await
}

/// The pods `job` controls, after adopting orphans its selector matches (with the tracking
/// finalizer) and releasing the ones it no longer selects.
async fn claim(api: &Api<Pod>, job: &Job, in_ns: Vec<Arc<Pod>>) -> Vec<Arc<Pod>> {
    let job_uid = job.metadata.uid.clone().unwrap_or_default();
    let candidates: Vec<Arc<Pod>> = in_ns
        .into_iter()
        .filter(|p| pods::controller_of(&p.metadata).is_none_or(|c| c.uid == job_uid))
        .collect();
    let owned: HashSet<String> = candidates
        .iter()
        .filter(|p| pods::controller_of(&p.metadata).is_some())
        .map(|p| uid(p).to_string())
        .collect();
    let sel = selector(job);
    let mine = pods::claim(
        api,
        &job.metadata,
        &pods::controller_ref(job),
        sel.as_ref(),
        candidates,
    )
    .await;
    let mut out = Vec::with_capacity(mine.len());
    for p in mine {
        if owned.contains(uid(&p)) || tracked(&p) {
            out.push(p);
            continue;
        }
        // Adopted: tracked from now on, as upstream's adoption adds the finalizer.
        match add_finalizer(api, &p).await {
            Ok(()) => {
                let mut p = (*p).clone();
                p.metadata
                    .finalizers
                    .get_or_insert_with(Vec::new)
                    .push(TRACKING_FINALIZER.into());
                out.push(Arc::new(p));
            }
            Err(e) => tracing::debug!("tracking adopted pod {}: {e}", pods::key(&p.metadata)),
        }
    }
    out
}

fn backoffs(ctx: &Ctx) -> std::sync::MutexGuard<'_, HashMap<String, Backoff>> {
    ctx.backoffs.lock().unwrap_or_else(|e| e.into_inner())
}
