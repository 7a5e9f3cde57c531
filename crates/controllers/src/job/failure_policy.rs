//! Which pods count as failed, what `podFailurePolicy` rules do with them, and the
//! `backoffLimit` of container restarts under `restartPolicy: OnFailure`.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::{JobSpec, PodFailurePolicy};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// Only failed pods are replaced (not terminating ones): `podReplacementPolicy: Failed`, or a
/// pod failure policy.
pub(super) fn only_replace_failed(spec: &JobSpec) -> bool {
    spec.pod_replacement_policy.as_deref() == Some("Failed") || spec.pod_failure_policy.is_some()
}

/// Whether a pod counts as failed (upstream's `isPodFailed`): Failed, or being deleted
/// without having succeeded unless only failed pods are replaced.
pub(super) fn pod_failed(pod: &Pod, spec: &JobSpec) -> bool {
    match pod::phase(pod) {
        "Failed" => true,
        "Succeeded" => false,
        _ => !only_replace_failed(spec) && pod::is_terminating(pod),
    }
}

/// What a pod failure policy rule does with a failed pod it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PolicyAction {
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
pub(super) fn policy_match(
    policy: &PodFailurePolicy,
    pod: &Pod,
) -> Option<(PolicyAction, Option<String>)> {
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
pub(super) fn failure_counts(spec: &JobSpec, pod: &Pod) -> bool {
    spec.pod_failure_policy
        .as_ref()
        .and_then(|p| policy_match(p, pod))
        .is_none_or(|(a, _)| a != PolicyAction::Ignore)
}

/// The message of the first failed pod a FailJob rule matches.
pub(super) fn fail_job_message(spec: &JobSpec, pods: &[Arc<Pod>]) -> Option<String> {
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
pub(super) fn past_backoff_limit_on_failure(spec: &JobSpec, pods: &[Arc<Pod>]) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::job::fixtures::{job, pod, spec_of};

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
