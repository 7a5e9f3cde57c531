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

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobSpec, JobStatus, PodFailurePolicy, SuccessPolicy, UncountedTerminatedPods,
};
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::{Value, json};

use crate::events::{Recorder, Type, reference};
use crate::expectations::Expectations;
use crate::pod_control::{PodControl, namespace_terminating};
use crate::pods;
use crate::runtime::{self, Informers, Result, Shared};

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
/// The variable an Indexed Job's containers read their index from.
const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// The `spec.managedBy` value of Jobs this controller syncs (as when it is unset).
const MANAGED_BY: &str = "kubernetes.io/job-controller";
/// The back-off after the first failure; it doubles with each one after.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// The longest back-off.
const BACKOFF_MAX: Duration = Duration::from_secs(600);
/// The most pods added to `uncountedTerminatedPods` in one sync.
const MAX_UNCOUNTED: usize = 500;
/// The most pods created or deleted in one sync.
const BURST: usize = 500;
/// When to sync again after a status write found the Job changed since it was read (the
/// change itself brings a sync; this is a safety net).
const STALE_RETRY: Duration = Duration::from_secs(1);
/// The longest name prefix the API server accepts before adding its random suffix.
const MAX_GENERATED_PREFIX: usize = 58;

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

/// Whether a Job is done: Complete or Failed.
fn is_finished(job: &Job) -> bool {
    finished_condition(job).is_some()
}

/// The Job's true Complete or Failed condition, if it finished.
pub(crate) fn finished_condition(job: &Job) -> Option<&JobCondition> {
    conditions(job)
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

fn conditions(job: &Job) -> &[JobCondition] {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
}

fn true_condition<'a>(job: &'a Job, ty: &str) -> Option<&'a JobCondition> {
    conditions(job)
        .iter()
        .find(|c| c.type_ == ty && c.status == "True")
}

fn is_indexed(spec: &JobSpec) -> bool {
    spec.completion_mode.as_deref() == Some("Indexed")
}

fn suspended(spec: &JobSpec) -> bool {
    spec.suspend == Some(true)
}

/// Only failed pods are replaced (not terminating ones): `podReplacementPolicy: Failed`, or a
/// pod failure policy.
fn only_replace_failed(spec: &JobSpec) -> bool {
    spec.pod_replacement_policy.as_deref() == Some("Failed") || spec.pod_failure_policy.is_some()
}

/// Whether a pod counts as failed (upstream's `isPodFailed`): Failed, or being deleted
/// without having succeeded unless only failed pods are replaced.
fn pod_failed(pod: &Pod, spec: &JobSpec) -> bool {
    match pod::phase(pod) {
        "Failed" => true,
        "Succeeded" => false,
        _ => !only_replace_failed(spec) && pod::is_terminating(pod),
    }
}

/// Being deleted and not yet finished (upstream's `controller.IsPodTerminating`).
fn terminating(pod: &Pod) -> bool {
    !pod::is_terminal(pod) && pod::is_terminating(pod)
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// A pod's completion index, if it has a valid one.
fn completion_index(pod: &Pod) -> Option<i32> {
    pod.annotations()
        .get(COMPLETION_INDEX)?
        .parse::<i32>()
        .ok()
        .filter(|i| *i >= 0)
}

/// A pod's completion index, if it is below `completions`.
fn index_below(pod: &Pod, completions: i32) -> Option<i32> {
    completion_index(pod).filter(|i| *i < completions)
}

fn annotation_count(pod: &Pod, key: &str) -> i32 {
    pod.annotations()
        .get(key)
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|n| *n >= 0)
        .unwrap_or(0)
}

/// When a finished pod finished: its containers' last exit, else when it stopped being
/// ready, else when its deletion began, else when it was created.
fn finish_time(pod: &Pod) -> Timestamp {
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

/// What a pod failure policy rule does with a failed pod it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PolicyAction {
    /// The Job fails.
    FailJob,
    /// The pod's index fails (`backoffLimitPerIndex`).
    FailIndex,
    /// The failure is not counted.
    Ignore,
    /// The failure is counted, as without a rule.
    Count,
}

/// The first rule of `policy` a failed pod matches, with the failure message for FailJob
/// (upstream's `matchPodFailurePolicy`).
fn policy_match(policy: &PodFailurePolicy, pod: &Pod) -> Option<(PolicyAction, Option<String>)> {
    let status = pod.status.as_ref();
    let who = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
    for (i, rule) in policy.rules.iter().enumerate() {
        let action = match rule.action.as_str() {
            "FailJob" => PolicyAction::FailJob,
            "FailIndex" => PolicyAction::FailIndex,
            "Ignore" => PolicyAction::Ignore,
            "Count" => PolicyAction::Count,
            _ => continue,
        };
        let matched = if let Some(req) = &rule.on_exit_codes {
            let statuses = status
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten()
                .chain(
                    status
                        .and_then(|s| s.init_container_statuses.as_ref())
                        .into_iter()
                        .flatten(),
                );
            statuses
                .filter(|c| req.container_name.as_ref().is_none_or(|n| *n == c.name))
                .find_map(|c| {
                    let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
                    let listed = req.values.contains(&code);
                    let hit = code != 0
                        && match req.operator.as_str() {
                            "In" => listed,
                            "NotIn" => !listed,
                            _ => false,
                        };
                    hit.then(|| {
                        format!(
                            "Container {} for pod {who} failed with exit code {code} matching FailJob rule at index {i}",
                            c.name
                        )
                    })
                })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .find(|c| {
                    patterns.iter().any(|p| {
                        let want = if p.status.is_empty() {
                            "True"
                        } else {
                            &p.status
                        };
                        p.type_ == c.type_ && want == c.status
                    })
                })
                .map(|c| {
                    format!(
                        "Pod {who} has condition {} matching FailJob rule at index {i}",
                        c.type_
                    )
                })
        } else {
            None
        };
        if let Some(message) = matched {
            return Some((action, (action == PolicyAction::FailJob).then_some(message)));
        }
    }
    None
}

/// Whether a failed pod counts against the Job (a policy may ignore it).
fn failure_counts(spec: &JobSpec, pod: &Pod) -> bool {
    spec.pod_failure_policy
        .as_ref()
        .and_then(|p| policy_match(p, pod))
        .is_none_or(|(a, _)| a != PolicyAction::Ignore)
}

/// The message of the first failed pod a FailJob rule matches.
fn fail_job_message(spec: &JobSpec, pods: &[Arc<Pod>]) -> Option<String> {
    let policy = spec.pod_failure_policy.as_ref()?;
    pods.iter()
        .filter(|p| pod_failed(p, spec))
        .find_map(|p| match policy_match(policy, p) {
            Some((PolicyAction::FailJob, message)) => message,
            _ => None,
        })
}

/// With `restartPolicy: OnFailure`, whether the running pods' container restarts reached
/// the backoff limit.
fn past_backoff_limit_on_failure(spec: &JobSpec, pods: &[Arc<Pod>]) -> bool {
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    if !on_failure {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(pod::phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    match spec.backoff_limit.unwrap_or(6) {
        0 => restarts > 0,
        limit => restarts >= limit,
    }
}

/// The back-off state of a Job's pod recreation: failures since the last success, and when
/// the last of them happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Backoff {
    failures: u32,
    last_failure: Option<Timestamp>,
}

impl Backoff {
    /// The state after pods newly `succeeded` and `failed` (upstream's `newBackoffRecord`):
    /// a success resets the count to the failures that came after it.
    fn after(self, succeeded: &[&Pod], failed: &[&Pod]) -> Backoff {
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
    fn remaining(self, now: Timestamp) -> Duration {
        delay_left(self.failures, self.last_failure, now)
    }
}

/// The back-off left at `now` after `failures` failures, the last at `last`: 10 s doubling
/// per failure, at most [`BACKOFF_MAX`], counted from the last failure.
fn delay_left(failures: u32, last: Option<Timestamp>, now: Timestamp) -> Duration {
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

/// Completion indexes as ordered, disjoint, non-adjacent intervals (`0-2,4,6,7`, as
/// `completedIndexes` and `failedIndexes` write them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Intervals(Vec<(i32, i32)>);

impl Intervals {
    /// Parses `s`, keeping what lies below `completions`; unreadable parts are skipped.
    fn parse(s: &str, completions: i32) -> Intervals {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
                None => (part.parse::<i32>(), part.parse::<i32>()),
            };
            let (Ok(first), Ok(last)) = (a, b) else {
                continue;
            };
            if first < 0 || last < first || first >= completions {
                continue;
            }
            out.push((first, last.min(completions - 1)));
        }
        Intervals::normalized(out)
    }

    fn normalized(mut v: Vec<(i32, i32)>) -> Intervals {
        v.sort();
        let mut out: Vec<(i32, i32)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Intervals(out)
    }

    /// These and `indexes`.
    fn with(&self, indexes: impl IntoIterator<Item = i32>) -> Intervals {
        let mut v = self.0.clone();
        v.extend(indexes.into_iter().map(|i| (i, i)));
        Intervals::normalized(v)
    }

    /// These and `other`'s.
    fn union(&self, other: &Intervals) -> Intervals {
        let mut v = self.0.clone();
        v.extend(other.0.iter().copied());
        Intervals::normalized(v)
    }

    fn total(&self) -> i32 {
        self.0.iter().map(|(a, b)| b - a + 1).sum()
    }

    fn has(&self, i: i32) -> bool {
        self.0.iter().any(|(a, b)| *a <= i && i <= *b)
    }

    /// How many of these are also in `other`.
    fn common(&self, other: &Intervals) -> i32 {
        let mut n = 0;
        for (a, b) in &self.0 {
            for (c, d) in &other.0 {
                let overlap = b.min(d) - a.max(c) + 1;
                if overlap > 0 {
                    n += overlap;
                }
            }
        }
        n
    }
}

impl fmt::Display for Intervals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (a, b)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}")?;
            if b > a {
                let sep = if *b == a + 1 { "," } else { "-" };
                write!(f, "{sep}{b}")?;
            }
        }
        Ok(())
    }
}

/// The message of the first `successPolicy` rule the succeeded indexes meet.
fn success_policy_met(
    policy: Option<&SuccessPolicy>,
    completions: i32,
    succeeded: &Intervals,
) -> Option<String> {
    let policy = policy?;
    if succeeded.total() == 0 {
        return None;
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        let met = match (&rule.succeeded_indexes, rule.succeeded_count) {
            (Some(required), count) => {
                let required = Intervals::parse(required, completions);
                if required.total() == 0 {
                    continue;
                }
                let done = required.common(succeeded);
                done == required.total() || count.is_some_and(|c| done >= c)
            }
            (None, Some(count)) => succeeded.total() >= count,
            (None, None) => false,
        };
        if met {
            return Some(format!("Matched rules at index {i}"));
        }
    }
    None
}

/// A condition of `ty` set at `now`.
fn condition(ty: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: ty.into(),
        status: status.into(),
        reason: (!reason.is_empty()).then(|| reason.into()),
        message: (!message.is_empty()).then(|| message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets the condition of `ty` to `status`, `reason` and `message` (a False one is not added
/// where there is none); returns whether anything changed.
fn ensure_condition(
    list: &mut Vec<JobCondition>,
    ty: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let new = condition(ty, status, reason, message, now);
    if let Some(c) = list.iter_mut().find(|c| c.type_ == ty) {
        if c.status != new.status || c.reason != new.reason || c.message != new.message {
            *c = new;
            return true;
        }
        return false;
    }
    if status == "False" {
        return false;
    }
    list.push(new);
    true
}

/// The interim failure condition (FailureTarget) for `reason`.
fn failure(reason: &str, message: &str, now: Timestamp) -> JobCondition {
    condition("FailureTarget", "True", reason, message, now)
}

/// Uids already written to `status.uncountedTerminatedPods`.
#[derive(Debug, Default)]
struct Uncounted {
    succeeded: HashSet<String>,
    failed: HashSet<String>,
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
struct Assessment {
    /// Pods neither finished nor being deleted.
    active: Vec<Arc<Pod>>,
    ready: i32,
    terminating: i32,
    succeeded: i32,
    uncounted: Uncounted,
    backoff: Backoff,
    /// How the Job finishes, if it does: FailureTarget, SuccessCriteriaMet, or Failed where a
    /// FailureTarget was already written.
    finished: Option<JobCondition>,
    prev_succeeded: Intervals,
    succeeded_indexes: Intervals,
    failed_indexes: Option<Intervals>,
    /// Per index, the failed pod kept until its replacement exists (`backoffLimitPerIndex`).
    delayed: HashMap<i32, Arc<Pod>>,
    /// When the active deadline passes.
    deadline_in: Option<Duration>,
}

/// Looks at `job` (its start time already set) and its `pods` at `now`; `removing` are the
/// pods whose finalizer removal the cache does not show yet, `backoff` the back-off so far.
fn assess(
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
    let mut succeeded = status.succeeded.unwrap_or(0)
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
        uncounted,
        backoff,
        deadline_in,
        ..Default::default()
    };
    if indexed {
        let prev = Intervals::parse(
            status.completed_indexes.as_deref().unwrap_or(""),
            completions,
        );
        let done = pods
            .iter()
            .filter(|p| pod::phase(p) == "Succeeded" && tracked(p))
            .filter_map(|p| index_below(p, completions));
        let succeeded_indexes = prev.with(done);
        succeeded = succeeded_indexes.total();
        if let Some(per_index) = spec.backoff_limit_per_index {
            let prev_failed =
                Intervals::parse(status.failed_indexes.as_deref().unwrap_or(""), completions);
            let failed_now = pods
                .iter()
                .filter(|p| index_failed(spec, p, per_index))
                .filter_map(|p| index_below(p, completions));
            let failed_indexes = prev_failed.with(failed_now);
            if finished.is_none() {
                if spec
                    .max_failed_indexes
                    .is_some_and(|m| failed_indexes.total() > m)
                {
                    finished = Some(failure(
                        "MaxFailedIndexesExceeded",
                        "Job has exceeded the specified maximal number of failed indexes",
                        now,
                    ));
                } else if failed_indexes.total() > 0
                    && failed_indexes.total() + succeeded_indexes.total() >= completions
                {
                    finished = Some(failure("FailedIndexes", "Job has failed indexes", now));
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
        if finished.is_none()
            && let Some(message) = success_policy_met(
                spec.success_policy.as_ref(),
                completions,
                &succeeded_indexes,
            )
        {
            finished = Some(condition(
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
    a.succeeded = succeeded;
    a.finished = finished;
    a
}

/// Whether a pod makes its index fail: a FailIndex rule matched it, or it is a counted
/// failure beyond the per-index backoff limit.
fn index_failed(spec: &JobSpec, pod: &Pod, per_index: i32) -> bool {
    if !pod_failed(pod, spec) {
        return false;
    }
    let counted = match spec
        .pod_failure_policy
        .as_ref()
        .and_then(|p| policy_match(p, pod))
    {
        Some((PolicyAction::FailIndex, _)) => return true,
        Some((PolicyAction::Ignore, _)) => false,
        _ => true,
    };
    counted && annotation_count(pod, INDEX_FAILURES) >= per_index
}

/// Per index neither succeeded, failed nor running, the latest failed pod: it keeps its
/// finalizer until a replacement carries its failure count on.
fn delayed_deletions(
    spec: &JobSpec,
    pods: &[Arc<Pod>],
    active: &[Arc<Pod>],
    removing: &HashSet<String>,
    succeeded: &Intervals,
    failed: &Intervals,
) -> HashMap<i32, Arc<Pod>> {
    let completions = spec.completions.unwrap_or(0);
    let running: HashSet<i32> = active.iter().filter_map(|p| completion_index(p)).collect();
    let absolute =
        |p: &Pod| annotation_count(p, INDEX_FAILURES) + annotation_count(p, INDEX_IGNORED_FAILURES);
    let mut out: HashMap<i32, Arc<Pod>> = HashMap::new();
    for p in pods {
        if !tracked(p) || removing.contains(uid(p)) || !pod_failed(p, spec) {
            continue;
        }
        let Some(ix) = index_below(p, completions) else {
            continue;
        };
        if succeeded.has(ix) || failed.has(ix) || running.contains(&ix) {
            continue;
        }
        match out.get(&ix) {
            Some(last) if absolute(last) > absolute(p) || finish_time(p) < finish_time(last) => {}
            _ => {
                out.insert(ix, p.clone());
            }
        }
    }
    out
}

/// The failure counts a replacement of `replaced` in its index starts with.
fn index_failure_counts(spec: &JobSpec, replaced: Option<&Pod>) -> (i32, i32) {
    let Some(p) = replaced else {
        return (0, 0);
    };
    let (failures, ignored) = (
        annotation_count(p, INDEX_FAILURES),
        annotation_count(p, INDEX_IGNORED_FAILURES),
    );
    if failure_counts(spec, p) {
        (failures + 1, ignored)
    } else {
        (failures, ignored + 1)
    }
}

/// The first `count` indexes below `completions` that are neither succeeded, failed,
/// running nor (when only failed pods are replaced) terminating.
fn first_pending(
    count: usize,
    completions: i32,
    spec: &JobSpec,
    a: &Assessment,
    pods: &[Arc<Pod>],
) -> Vec<i32> {
    let mut busy = a
        .succeeded_indexes
        .with(a.active.iter().filter_map(|p| completion_index(p)));
    if let Some(f) = &a.failed_indexes {
        busy = busy.union(f);
    }
    if only_replace_failed(spec) {
        busy = busy.with(
            pods.iter()
                .filter(|p| terminating(p))
                .filter_map(|p| completion_index(p)),
        );
    }
    let mut out = Vec::new();
    let mut candidate = 0;
    for &(first, last) in busy.0.iter().chain(std::iter::once(&(i32::MAX, i32::MAX))) {
        while candidate < completions && out.len() < count && candidate < first {
            out.push(candidate);
            candidate += 1;
        }
        if out.len() >= count || candidate >= completions {
            break;
        }
        candidate = candidate.max(last.saturating_add(1));
    }
    out
}

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
fn to_remove(spec: &JobSpec, active: &[Arc<Pod>], at_least: usize) -> Vec<Arc<Pod>> {
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
fn pod_for(job: &Job, spec: &JobSpec, index: Option<i32>, replaced: Option<&Pod>) -> Pod {
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

/// Removes the tracking finalizer from `pod` (a JSON patch checking the uid and the entry).
async fn remove_finalizer(api: &Api<Pod>, pod: &Pod) -> kube::Result<()> {
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
async fn add_finalizer(api: &Api<Pod>, pod: &Pod) -> kube::Result<()> {
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
struct Removals(Mutex<HashMap<String, HashSet<String>>>);

impl Removals {
    fn expect(&self, job: &str, uid: &str) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(job.to_string())
            .or_default()
            .insert(uid.to_string());
    }

    fn observed(&self, job: &str, uid: &str) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = m.get_mut(job) {
            s.remove(uid);
        }
    }

    /// The removals `job` still waits for: those whose pod the cache shows with the
    /// finalizer (`still(uid)`).
    fn pending(&self, job: &str, still: impl Fn(&str) -> bool) -> HashSet<String> {
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

    fn forget(&self, job: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(job);
    }
}

/// One sync of one Job: what it needs to call the API.
struct Sync<'a> {
    ctx: &'a Ctx,
    key: String,
    job: Job,
    api: Api<Pod>,
    /// Creates and deletes the Job's pods, with expectations and events.
    control: PodControl<'a>,
    now: Timestamp,
}

/// What creating or deleting pods did.
#[derive(Default)]
struct Managed {
    active: i32,
    /// Deleted pods, and how many of them were ready.
    deleted: i32,
    deleted_ready: i32,
    /// When to sync again to create pods held back by a back-off.
    retry_in: Option<Duration>,
    error: Option<anyhow::Error>,
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

impl Sync<'_> {
    async fn run(
        &mut self,
        spec: &JobSpec,
        pods: &[Arc<Pod>],
        satisfied: bool,
        removing: &HashSet<String>,
    ) -> Result<Action> {
        let now = self.now;
        // What the server holds, to write only what changed.
        let mut written = self.job.status.clone();
        let mut status = written.clone().unwrap_or_default();
        status
            .uncounted_terminated_pods
            .get_or_insert_with(UncountedTerminatedPods::default);
        if status.start_time.is_none() && !suspended(spec) {
            status.start_time = Some(Time(now));
        }
        self.job.status = Some(status.clone());
        let previous = backoffs(self.ctx)
            .get(&self.key)
            .copied()
            .unwrap_or_default();
        let a = assess(&self.job, spec, pods, removing, previous, now);

        let mut active = a.active.len() as i32;
        let mut ready = a.ready;
        let mut terminating_n = a.terminating;
        let mut finished = a.finished.clone();
        let mut retry_in = a.deadline_in;
        let mut error = None;
        if finished.is_some() {
            let (deleted, deleted_ready, e) = self.delete_active(&a.active).await;
            if deleted != active || !satisfied {
                // Not finished yet: pods remain, or the cache is behind.
                finished = None;
            }
            active -= deleted;
            terminating_n += deleted;
            ready -= deleted_ready;
            error = e;
        } else {
            let mut managed = false;
            if satisfied && self.job.metadata.deletion_timestamp.is_none() {
                let m = self.manage(spec, &a, pods).await;
                active = m.active;
                terminating_n += m.deleted;
                ready -= m.deleted_ready;
                retry_in = min_some(retry_in, m.retry_in);
                error = m.error;
                managed = true;
            }
            let complete = active == 0
                && match spec.completions {
                    None => a.succeeded > 0,
                    Some(c) => a.succeeded >= c,
                };
            if complete {
                finished = Some(condition(
                    "SuccessCriteriaMet",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                ));
            } else if managed {
                self.suspension(spec, &mut status).await;
            }
        }
        status.active = Some(active).filter(|n| *n != 0);
        status.ready = Some(ready);
        status.terminating = Some(terminating_n);

        // Count finished pods: write them as uncounted, free them, then count them.
        let tracking = track(
            &self.job,
            spec,
            &mut status,
            pods,
            removing,
            &a,
            finished,
            now,
        );
        if Some(&status) != written.as_ref() {
            if !self.write(&status).await? {
                return Ok(Action::requeue(STALE_RETRY));
            }
            written = Some(status.clone());
        }
        backoffs(self.ctx).insert(self.key.clone(), a.backoff);
        let mut with_finalizer = tracking.with_finalizer;
        let mut removal_error = None;
        for pod in &tracking.release {
            self.ctx.removals.expect(&self.key, uid(pod));
            match remove_finalizer(&self.api, pod).await {
                Ok(()) => {
                    with_finalizer.remove(uid(pod));
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    self.ctx.removals.observed(&self.key, uid(pod));
                    with_finalizer.remove(uid(pod));
                }
                Err(e) => {
                    self.ctx.removals.observed(&self.key, uid(pod));
                    removal_error = Some(e);
                }
            }
        }
        settle_uncounted(&mut status, &with_finalizer);
        let done = match &tracking.finished {
            Some(c) if !tracking.reached_max => enact(&mut status, c, now),
            _ => false,
        };
        if Some(&status) != written.as_ref() && !self.write(&status).await? {
            return Ok(Action::requeue(STALE_RETRY));
        }
        if done && let Some(c) = &tracking.finished {
            self.record_finished(spec, &status, c).await;
        }
        if let Some(e) = removal_error {
            return Err(anyhow::Error::from(e)
                .context("removing the tracking finalizer")
                .into());
        }
        if let Some(e) = error {
            return Err(e.into());
        }
        if tracking.reached_max {
            retry_in = min_some(retry_in, Some(Duration::from_secs(1)));
        }
        Ok(match retry_in {
            Some(d) => Action::requeue(d),
            None => Action::await_change(),
        })
    }

    /// Sets the Suspended condition by `spec.suspend`, with its event; resuming restarts
    /// the clock of `activeDeadlineSeconds`.
    async fn suspension(&self, spec: &JobSpec, status: &mut JobStatus) {
        let list = status.conditions.get_or_insert_with(Vec::new);
        let (state, reason, message, event) = if suspended(spec) {
            ("True", "JobSuspended", "Job suspended", "Suspended")
        } else {
            ("False", "JobResumed", "Job resumed", "Resumed")
        };
        let changed = ensure_condition(list, "Suspended", state, reason, message, self.now);
        if list.is_empty() {
            status.conditions = None;
        }
        if changed {
            if !suspended(spec) {
                status.start_time = Some(Time(self.now));
            }
            self.ctx
                .events
                .publish(&reference(&self.job), Type::Normal, event, message)
                .await;
        }
    }

    /// Writes `status` (a PUT of the status subresource carrying the resourceVersion read, so
    /// that a stale cache makes it fail rather than lose counts).
    /// Returns false if the Job changed since it was read (the cache is behind: the change
    /// brings another sync).
    async fn write(&mut self, status: &JobStatus) -> Result<bool> {
        let mut job = self.job.clone();
        job.status = Some(status.clone());
        let jobs: Api<Job> = Api::namespaced(
            self.ctx.client.clone(),
            &self.job.namespace().unwrap_or_default(),
        );
        let written = match jobs
            .replace_status(&self.job.name_any(), &PostParams::default(), &job)
            .await
        {
            Ok(j) => j,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                tracing::debug!("{NAME}: {} changed since read; synced again", self.key);
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
        self.job.metadata.resource_version = written.metadata.resource_version;
        self.job.status = Some(status.clone());
        Ok(true)
    }

    /// Events for a Job that just finished.
    async fn record_finished(&self, spec: &JobSpec, status: &JobStatus, c: &JobCondition) {
        let r = reference(&self.job);
        if c.type_ == "Complete" {
            if spec
                .completions
                .is_some_and(|n| status.succeeded.unwrap_or(0) > n)
            {
                self.ctx
                    .events
                    .publish(
                        &r,
                        Type::Warning,
                        "TooManySucceededPods",
                        "Too many succeeded pods running after completion count reached",
                    )
                    .await;
            }
            self.ctx
                .events
                .publish(&r, Type::Normal, "Completed", "Job completed")
                .await;
        } else {
            self.ctx
                .events
                .publish(
                    &r,
                    Type::Warning,
                    c.reason.as_deref().unwrap_or("Failed"),
                    c.message.as_deref().unwrap_or(""),
                )
                .await;
        }
    }

    /// Deletes the active pods of a finishing Job, keeping their finalizers so that they are
    /// counted. Returns how many were deleted, how many of those were ready, and an error.
    async fn delete_active(&self, active: &[Arc<Pod>]) -> (i32, i32, Option<anyhow::Error>) {
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
                m.error = Some(anyhow::Error::from(e).context("removing the tracking finalizer"));
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
    async fn manage(&self, spec: &JobSpec, a: &Assessment, pods: &[Arc<Pod>]) -> Managed {
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

fn min_some(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What counting finished pods decided.
#[derive(Debug, Default)]
struct Tracking {
    /// Pods to free of the tracking finalizer.
    release: Vec<Arc<Pod>>,
    /// Uids of the pods still carrying it (not counting removals in flight).
    with_finalizer: HashSet<String>,
    /// The condition the Job finishes with once no pod is left uncounted or terminating.
    finished: Option<JobCondition>,
    /// Too many pods to count in one sync.
    reached_max: bool,
}

/// Counts finished pods into `status` (upstream's `trackJobStatusAndRemoveFinalizers` up to
/// the first write): uids of pods done to `uncountedTerminatedPods`, succeeded indexes to
/// `completedIndexes`, and the interim condition (FailureTarget, SuccessCriteriaMet).
#[allow(clippy::too_many_arguments)]
fn track(
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
fn settle_uncounted(status: &mut JobStatus, with_finalizer: &HashSet<String>) {
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

/// Sets the final condition `c` (Complete with `completionTime`, or Failed) once no pod is
/// left uncounted or terminating; returns whether it did.
fn enact(status: &mut JobStatus, c: &JobCondition, now: Timestamp) -> bool {
    let uncounted = status.uncounted_terminated_pods.as_ref().map_or(0, |u| {
        u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len)
    });
    if uncounted > 0 || status.terminating.unwrap_or(0) > 0 {
        return false;
    }
    let list = status.conditions.get_or_insert_with(Vec::new);
    ensure_condition(
        list,
        &c.type_,
        &c.status,
        c.reason.as_deref().unwrap_or(""),
        c.message.as_deref().unwrap_or(""),
        now,
    );
    if c.type_ == "Complete" {
        status.completion_time = list
            .iter()
            .find(|x| x.type_ == "Complete")
            .and_then(|x| x.last_transition_time.clone());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::merge;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn job(spec: Value, status: Value) -> Job {
        let mut spec = spec;
        if spec.get("template").is_none() {
            spec["template"] = json!({"spec": {"containers": [{"name": "c", "image": "busybox"}],
                "restartPolicy": "Never"}});
        }
        serde_json::from_value(json!({
            "metadata": {"name": "pi", "namespace": "d", "uid": "job-uid"},
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    /// A pod of the job: `phase`, finished at `done` (if terminal), with `extra` merged in.
    fn pod(name: &str, phase: &str, done: &str, extra: Value) -> Arc<Pod> {
        let terminated = pod::is_terminal_phase(phase);
        let code = if phase == "Failed" { 1 } else { 0 };
        let mut v = json!({
            "metadata": {"name": name, "namespace": "d", "uid": format!("uid-{name}"),
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "finalizers": [TRACKING_FINALIZER],
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi",
                    "uid": "job-uid", "controller": true}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": phase, "containerStatuses": [{
                "name": "c", "image": "busybox", "imageID": "", "ready": !terminated,
                "restartCount": 0,
                "state": if terminated {
                    json!({"terminated": {"exitCode": code, "finishedAt": done}})
                } else {
                    json!({"running": {}})
                }}]},
        });
        merge(&mut v, extra);
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn spec_of(j: &Job) -> JobSpec {
        j.spec.clone().unwrap()
    }

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

    #[test]
    fn intervals_parse_merge_and_print_as_upstream_writes_them() {
        let i = Intervals::parse("0-2,4,6-7,9-12", 11);
        assert_eq!(i.to_string(), "0-2,4,6,7,9,10");
        assert_eq!(i.total(), 8);
        assert!(i.has(4) && !i.has(5) && !i.has(11));
        assert_eq!(i.with([3, 5, 8]).to_string(), "0-10");
        assert_eq!(Intervals::parse("x,1-,3", 5).to_string(), "3");
        assert_eq!(Intervals::parse("", 5).to_string(), "");
        let a = Intervals::parse("0-4", 10);
        assert_eq!(a.common(&Intervals::parse("3-7", 10)), 2);
        assert_eq!(a.union(&Intervals::parse("6", 10)).to_string(), "0-4,6");
    }

    #[test]
    fn pod_failure_policies_match_exit_codes_and_conditions() {
        let policy: PodFailurePolicy = serde_json::from_value(json!({"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 42]}},
        ]}))
        .unwrap();
        let exit = |code: i32| {
            pod(
                "p",
                "Failed",
                "2026-01-01T00:00:00Z",
                json!({"status": {"containerStatuses": [{"name": "c", "image": "busybox",
                    "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": code}}}]}}),
            )
        };
        let (action, message) = policy_match(&policy, &exit(42)).unwrap();
        assert_eq!(action, PolicyAction::FailJob);
        assert_eq!(
            message.unwrap(),
            "Container c for pod d/p failed with exit code 42 matching FailJob rule at index 1"
        );
        assert_eq!(
            policy_match(&policy, &exit(3)).unwrap().0,
            PolicyAction::Count
        );
        assert!(policy_match(&policy, &exit(1)).is_none());
        let disrupted = pod(
            "q",
            "Failed",
            "2026-01-01T00:00:00Z",
            json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True"}]}}),
        );
        assert_eq!(
            policy_match(&policy, &disrupted).unwrap().0,
            PolicyAction::Ignore
        );
        let j = job(json!({"podFailurePolicy": policy}), json!({}));
        assert!(!failure_counts(&spec_of(&j), &disrupted));
        assert_eq!(
            fail_job_message(&spec_of(&j), &[exit(42)]).unwrap(),
            "Container c for pod d/p failed with exit code 42 matching FailJob rule at index 1"
        );
    }

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

    #[test]
    fn indexed_jobs_count_indexes_and_pick_the_first_pending_ones() {
        let j = job(
            json!({"completions": 5, "parallelism": 2, "completionMode": "Indexed"}),
            json!({"completedIndexes": "0", "succeeded": 1}),
        );
        let spec = spec_of(&j);
        let ix = |i: i32| json!({"metadata": {"annotations": {COMPLETION_INDEX: i.to_string()}}});
        let pods = vec![
            pod("a", "Succeeded", "2026-01-01T00:01:00Z", ix(2)),
            pod("b", "Running", "", ix(1)),
        ];
        let now = at("2026-01-01T00:02:00Z");
        let a = assess(&j, &spec, &pods, &HashSet::new(), Backoff::default(), now);
        assert_eq!(a.succeeded_indexes.to_string(), "0,2");
        assert_eq!(a.succeeded, 2);
        assert_eq!(first_pending(2, 5, &spec, &a, &pods), vec![3, 4]);
        let mut status = j.status.clone().unwrap();
        track(
            &j,
            &spec,
            &mut status,
            &pods,
            &HashSet::new(),
            &a,
            None,
            now,
        );
        assert_eq!(status.completed_indexes.as_deref(), Some("0,2"));
        assert_eq!(status.succeeded, Some(2));
        // Repeated and out-of-range indexes are removed first.
        let active = vec![
            pod("x", "Running", "", ix(3)),
            pod("y", "Pending", "", ix(3)),
            pod("z", "Running", "", ix(9)),
        ];
        let rm: Vec<String> = to_remove(&spec, &active, 0)
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(rm, ["z", "y"]);
    }

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

    #[test]
    fn per_index_limits_fail_indexes_and_carry_failure_counts() {
        let j = job(
            json!({"completions": 2, "completionMode": "Indexed", "backoffLimitPerIndex": 1,
                "backoffLimit": 100}),
            json!({}),
        );
        let spec = spec_of(&j);
        let failed = |name: &str, i: i32, count: i32| {
            pod(
                name,
                "Failed",
                "2026-01-01T00:01:00Z",
                json!({"metadata": {"annotations": {
                COMPLETION_INDEX: i.to_string(), INDEX_FAILURES: count.to_string()}}}),
            )
        };
        let pods = vec![failed("a", 0, 0), failed("b", 1, 1)];
        let now = at("2026-01-01T00:01:05Z");
        let a = assess(&j, &spec, &pods, &HashSet::new(), Backoff::default(), now);
        assert_eq!(a.failed_indexes.as_ref().unwrap().to_string(), "1");
        assert_eq!(a.delayed.get(&0).map(|p| p.name_any()), Some("a".into()));
        assert!(a.finished.is_none());
        let replacement = pod_for(&j, &spec, Some(0), a.delayed.get(&0).map(|p| p.as_ref()));
        assert_eq!(replacement.annotations()[INDEX_FAILURES], "1");
        // Index 0 failing past its limit too: every index is done, so the Job fails.
        let pods = vec![failed("a", 0, 1), failed("b", 1, 1)];
        let a = assess(&j, &spec, &pods, &HashSet::new(), Backoff::default(), now);
        assert_eq!(a.finished.unwrap().reason.as_deref(), Some("FailedIndexes"));
    }

    #[test]
    fn success_policies_match_indexes_or_counts() {
        let policy: SuccessPolicy = serde_json::from_value(json!({"rules": [
            {"succeededIndexes": "0-2", "succeededCount": 2},
            {"succeededCount": 4},
        ]}))
        .unwrap();
        let done = Intervals::parse("1,2", 10);
        assert_eq!(
            success_policy_met(Some(&policy), 10, &done).as_deref(),
            Some("Matched rules at index 0")
        );
        let done = Intervals::parse("5-8", 10);
        assert_eq!(
            success_policy_met(Some(&policy), 10, &done).as_deref(),
            Some("Matched rules at index 1")
        );
        assert_eq!(
            success_policy_met(Some(&policy), 10, &Intervals::parse("5", 10)),
            None
        );
    }

    #[test]
    fn deleted_pods_count_as_failed_unless_only_failed_ones_are_replaced() {
        let dying = pod(
            "p",
            "Running",
            "",
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
        );
        let j = job(json!({}), json!({}));
        assert!(pod_failed(&dying, &spec_of(&j)));
        let j = job(json!({"podReplacementPolicy": "Failed"}), json!({}));
        assert!(!pod_failed(&dying, &spec_of(&j)));
    }

    #[test]
    fn restarts_count_against_the_limit_with_on_failure() {
        let j = job(
            json!({"backoffLimit": 2, "template": {"spec": {"restartPolicy": "OnFailure",
            "containers": [{"name": "c", "image": "busybox"}]}}}),
            json!({}),
        );
        let restarted = |n: i32| {
            pod(
                "p",
                "Running",
                "",
                json!({"status": {"containerStatuses": [{
            "name": "c", "image": "busybox", "imageID": "", "ready": true, "restartCount": n}]}}),
            )
        };
        assert!(!past_backoff_limit_on_failure(
            &spec_of(&j),
            &[restarted(1)]
        ));
        assert!(past_backoff_limit_on_failure(&spec_of(&j), &[restarted(2)]));
    }
}
