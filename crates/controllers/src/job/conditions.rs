//! A Job's conditions: reading them, setting them, and enacting the final Complete
//! or Failed one once no pod is left uncounted or terminating.

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Whether a Job is done: Complete or Failed.
pub(super) fn is_finished(job: &Job) -> bool {
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

pub(super) fn true_condition<'a>(job: &'a Job, ty: &str) -> Option<&'a JobCondition> {
    conditions(job)
        .iter()
        .find(|c| c.type_ == ty && c.status == "True")
}

/// A condition of `ty` set at `now`.
pub(super) fn condition(
    ty: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
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
pub(super) fn ensure_condition(
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
pub(super) fn failure(reason: &str, message: &str, now: Timestamp) -> JobCondition {
    condition("FailureTarget", "True", reason, message, now)
}

/// Sets the final condition `c` (Complete with `completionTime`, or Failed) once no pod is
/// left uncounted or terminating; returns whether it did.
pub(super) fn enact(status: &mut JobStatus, c: &JobCondition, now: Timestamp) -> bool {
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
