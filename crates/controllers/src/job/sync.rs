//! One sync of one Job: the order of its work (assess, manage pods, count finished
//! ones, write status), status writes that fail on a stale read, suspension, and the
//! events of a Job that finished.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;

use crate::events::{Type, reference};
use crate::pod_control::PodControl;
use crate::runtime::Result;

use super::assess::assess;
use super::conditions::{condition, enact, ensure_condition};
use super::tracking::{remove_finalizer, settle_uncounted, track};
use super::{Ctx, NAME, backoffs, suspended, uid};

/// When to sync again after a status write found the Job changed since it was read (the
/// change itself brings a sync; this is a safety net).
const STALE_RETRY: Duration = Duration::from_secs(1);

/// One sync of one Job: what it needs to call the API.
pub(super) struct Sync<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) key: String,
    pub(super) job: Job,
    pub(super) api: Api<Pod>,
    /// Creates and deletes the Job's pods, with expectations and events.
    pub(super) control: PodControl<'a>,
    pub(super) now: Timestamp,
}

fn min_some(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Sync<'_> {
    pub(super) async fn run(
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
            return Err(crate::runtime::Error::Step {
                what: "removing the tracking finalizer",
                source: Box::new(e.into()),
            });
        }
        if let Some(e) = error {
            return Err(e);
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
}
