//! The TTL-after-finished controller (`ttl-after-finished-controller`): deletes a finished
//! Job `spec.ttlSecondsAfterFinished` seconds after it finished, as upstream's does.
//!
//! A Job finished when its Complete or Failed condition turned True (that condition's
//! `lastTransitionTime`). Until its time is up the Job is looked at again when it is due;
//! then the TTL is checked once more on a fresh read (it may have changed) and the Job is
//! deleted with `propagationPolicy: Foreground` (its pods go first) and a uid precondition.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::job::finished_condition;
use crate::runtime::{self, Informers, Result, Shared};

/// The controller's name.
const NAME: &str = "ttl-after-finished-controller";

struct Ctx {
    client: kube::Client,
    jobs: Store<Job>,
}

/// Starts the TTL-after-finished controller.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let jobs = informers.store::<Job>();
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        jobs: jobs.clone(),
    });
    let controller = Controller::for_stream(informers.subscribe::<Job>(), jobs);
    runtime::run(NAME, controller, shared, ctx, reconcile)
}

/// When a Job with a TTL expires: its finish time plus the TTL. None for a Job without a
/// TTL, not finished, or being deleted; an error for a finished Job without a finish time.
fn expires_at(job: &Job) -> Result<Option<Timestamp>, String> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(None);
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let Some(c) = finished_condition(job) else {
        return Ok(None);
    };
    let finished = c.last_transition_time.as_ref().ok_or_else(|| {
        format!(
            "unable to find the time when the Job {}/{} finished",
            job.namespace().unwrap_or_default(),
            job.name_any()
        )
    })?;
    Ok(Some(
        finished.0 + jiff::SignedDuration::from_secs(i64::from(ttl)),
    ))
}

/// How long until `at`, or none if it has passed.
fn left(at: Timestamp, now: Timestamp) -> Option<Duration> {
    Duration::try_from(at.duration_since(now))
        .ok()
        .filter(|d| !d.is_zero())
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action> {
    let Some(job) = ctx.jobs.get(&ObjectRef::from_obj(job.as_ref())) else {
        return Ok(Action::await_change());
    };
    let Some(at) = expires_at(&job).map_err(|e| runtime::Error::Failed(e.to_string()))? else {
        return Ok(Action::await_change());
    };
    if let Some(wait) = left(at, Timestamp::now()) {
        return Ok(Action::requeue(wait));
    }
    // Due by the cache: check the TTL on a fresh read before deleting.
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let Some(fresh) = api.get_opt(&job.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let Some(at) = expires_at(&fresh).map_err(|e| runtime::Error::Failed(e.to_string()))? else {
        return Ok(Action::await_change());
    };
    if let Some(wait) = left(at, Timestamp::now()) {
        return Ok(Action::requeue(wait));
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: fresh.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    tracing::debug!(
        "{NAME}: deleting job {}/{}",
        fresh.namespace().unwrap_or_default(),
        fresh.name_any()
    );
    match api.delete(&fresh.name_any(), &params).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(spec: serde_json::Value, conditions: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "pi", "namespace": "d"},
            "spec": spec,
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    #[test]
    fn finished_jobs_expire_their_ttl_after_the_final_condition() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let done = json!([
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"},
        ]);
        let j = job(json!({"ttlSecondsAfterFinished": 100}), done.clone());
        assert_eq!(expires_at(&j), Ok(Some(t("2026-01-01T00:01:45Z"))));
        assert_eq!(
            left(t("2026-01-01T00:01:45Z"), t("2026-01-01T00:01:40Z")),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            left(t("2026-01-01T00:01:45Z"), t("2026-01-01T00:01:45Z")),
            None
        );
        // No TTL, not finished, or being deleted: nothing to do.
        assert_eq!(expires_at(&job(json!({}), done.clone())), Ok(None));
        let running = json!([{"type": "SuccessCriteriaMet", "status": "True"}]);
        assert_eq!(
            expires_at(&job(json!({"ttlSecondsAfterFinished": 0}), running)),
            Ok(None)
        );
        let mut deleting = j.clone();
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t("2026-01-01T00:00:00Z")),
        );
        assert_eq!(expires_at(&deleting), Ok(None));
        let failed = json!([{"type": "Failed", "status": "True"}]);
        assert!(expires_at(&job(json!({"ttlSecondsAfterFinished": 0}), failed)).is_err());
    }
}
