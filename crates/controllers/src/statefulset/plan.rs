//! Deciding a sync's steps (upstream's `updateStatefulSet`): pods to recreate, create,
//! fix or delete, ordered by `podManagementPolicy`, then the RollingUpdate strategy's
//! partition and `maxUnavailable`.

use std::cmp::Reverse;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::claims::{Claims, claims_for, claims_match, claims_stale};
use super::identity::{
    identity_matches, in_range, ordinal_of, pod_revision, replicas, start_ordinal,
};
use super::status::{is_healthy, min_ready_seconds, running_and_available, running_and_ready};

/// `podManagementPolicy: Parallel`.
fn is_parallel(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        == Some("Parallel")
}

/// The update strategy's type; RollingUpdate when unset.
pub(super) fn strategy_type(set: &StatefulSet) -> &str {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref()?.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

fn is_on_delete(set: &StatefulSet) -> bool {
    strategy_type(set) == "OnDelete"
}

/// `rollingUpdate.partition`, if the strategy has a `rollingUpdate`.
fn partition(set: &StatefulSet) -> Option<i32> {
    let ru = set
        .spec
        .as_ref()?
        .update_strategy
        .as_ref()?
        .rolling_update
        .as_ref()?;
    Some(ru.partition.unwrap_or(0).max(0))
}

/// `rollingUpdate.maxUnavailable` as a pod count of the replicas (percentages round up),
/// at least 1; 1 when unset.
fn max_unavailable(set: &StatefulSet) -> usize {
    let value = set.spec.as_ref().and_then(|s| {
        s.update_strategy
            .as_ref()?
            .rolling_update
            .as_ref()?
            .max_unavailable
            .as_ref()
    });
    let n = match value {
        None => 1,
        Some(IntOrString::Int(n)) => i64::from(*n),
        Some(IntOrString::String(s)) => {
            let percent: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            (percent * i64::from(replicas(set)) + 99) / 100
        }
    };
    n.max(1) as usize
}

/// Whether a pod made now for `ordinal` gets the update revision rather than the current
/// one: ordinals below the partition keep the current revision (upstream's
/// `newVersionedStatefulSetPod`).
fn at_update(set: &StatefulSet, ordinal: i32) -> bool {
    let start = start_ordinal(set);
    let current = set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    let keep_current = match partition(set) {
        Some(p) => ordinal < start + p,
        None => strategy_type(set) == "RollingUpdate" && ordinal < start + current,
    };
    !keep_current
}

/// One action of a sync.
#[derive(Debug)]
pub(super) enum Step {
    /// Delete a Failed or Succeeded pod; it is made again once gone.
    Recreate(Arc<Pod>),
    /// Create the pod with this ordinal (its claims first), at the update revision or not.
    Create { ordinal: i32, at_update: bool },
    /// Create the missing claims of a pending pod.
    CreateClaims(Arc<Pod>),
    /// Bring a pod's identity labels and its claims' owners in line; whether it is scaled
    /// down.
    Fix(Arc<Pod>, bool),
    /// Delete a pod beyond the replicas.
    Condemn(Arc<Pod>),
    /// Delete a pod of an old revision, to be made again at the update revision.
    Update(Arc<Pod>),
}

/// What a sync of `set` does with its pods `mine`, in order (upstream's
/// `updateStatefulSet`); the steps after one that fails are not taken. `update` names the
/// update revision; `claims` looks claims up.
pub(super) fn plan(
    set: &StatefulSet,
    mine: &[Arc<Pod>],
    update: &str,
    claims: Claims<'_>,
    now: Timestamp,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let start = start_ordinal(set);
    let set_name = set.name_any();
    let monotonic = !is_parallel(set);
    let min_ready = min_ready_seconds(set);
    let mut slots: Vec<Option<Arc<Pod>>> = vec![None; replicas(set) as usize];
    let mut condemned: Vec<(i32, Arc<Pod>)> = Vec::new();
    for pod in mine {
        match ordinal_of(&set_name, &pod.name_any()) {
            Some(o) if in_range(set, o) => slots[(o - start) as usize] = Some(pod.clone()),
            Some(o) => condemned.push((o, pod.clone())),
            None => {}
        }
    }
    condemned.sort_by_key(|(o, _)| Reverse(*o));
    // The lowest unhealthy pod, when it is a condemned one, may be deleted unhealthy.
    let first_unhealthy = slots
        .iter()
        .all(|s| s.as_deref().is_some_and(is_healthy))
        .then(|| condemned.iter().rev().find(|(_, p)| !is_healthy(p)))
        .flatten()
        .map(|(o, _)| *o);

    for (i, slot) in slots.iter().enumerate() {
        let ordinal = start + i as i32;
        let pod = match slot {
            Some(p) if pod::is_terminal(p) => {
                if !pod::is_terminating(p) {
                    steps.push(Step::Recreate(p.clone()));
                }
                if monotonic {
                    return steps;
                }
                continue;
            }
            Some(p) => p,
            None => {
                if !claims_stale(set, ordinal, claims) {
                    steps.push(Step::Create {
                        ordinal,
                        at_update: at_update(set, ordinal),
                    });
                }
                if monotonic {
                    return steps;
                }
                continue;
            }
        };
        if pod::phase(pod) == "Pending"
            && claims_for(set, ordinal)
                .iter()
                .any(|(_, c)| claims(&c.name_any()).is_none())
        {
            steps.push(Step::CreateClaims(pod.clone()));
        }
        if monotonic
            && (pod::is_terminating(pod)
                || !running_and_ready(pod)
                || !running_and_available(pod, min_ready, now))
        {
            return steps;
        }
        if !identity_matches(set, pod) || !claims_match(set, pod, false, claims) {
            steps.push(Step::Fix(pod.clone(), false));
        }
    }

    for (_, pod) in &condemned {
        if !claims_match(set, pod, true, claims) {
            steps.push(Step::Fix(pod.clone(), true));
        }
    }

    for (ordinal, pod) in &condemned {
        if pod::is_terminating(pod) {
            if monotonic {
                return steps;
            }
            continue;
        }
        let first = first_unhealthy == Some(*ordinal);
        if monotonic
            && !first
            && (!running_and_ready(pod) || !running_and_available(pod, min_ready, now))
        {
            return steps;
        }
        steps.push(Step::Condemn(pod.clone()));
        if monotonic {
            return steps;
        }
    }

    if is_on_delete(set) {
        return steps;
    }
    let available = |p: &Pod| is_healthy(p) && running_and_available(p, min_ready, now);
    let unavailable = slots
        .iter()
        .filter(|s| !s.as_deref().is_some_and(available))
        .count();
    let mut budget = max_unavailable(set).saturating_sub(unavailable);
    let from = partition(set).unwrap_or(0) as usize;
    for slot in slots.iter().skip(from).rev() {
        if budget == 0 {
            break;
        }
        if let Some(pod) = slot
            && pod_revision(pod) != update
            && !pod::is_terminating(pod)
        {
            steps.push(Step::Update(pod.clone()));
            budget -= 1;
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use serde_json::json;

    use crate::statefulset::POD_INDEX_LABEL;
    use crate::statefulset::fixtures::{describe, now, pod, set};

    /// Every claim exists, owned by no one.
    fn bare_claims(name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        Some(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        ))
    }

    fn planned(set: &StatefulSet, mine: &[Arc<Pod>]) -> Vec<String> {
        describe(&plan(set, mine, "web-new", &bare_claims, now()))
    }

    #[test]
    fn ordered_ready_creates_one_pod_at_a_time_in_order() {
        let s = set(json!({}));
        assert_eq!(planned(&s, &[]), ["create 0"]);
        assert!(planned(&s, &[pod(0, "web-new", "pending")]).is_empty());
        assert!(planned(&s, &[pod(0, "web-new", "unready")]).is_empty());
        assert_eq!(planned(&s, &[pod(0, "web-new", "ready")]), ["create 1"]);
        // A gap is filled first.
        assert_eq!(
            planned(
                &s,
                &[pod(0, "web-new", "ready"), pod(2, "web-new", "ready")]
            ),
            ["create 1"]
        );
        let all: Vec<_> = (0..3).map(|o| pod(o, "web-new", "ready")).collect();
        assert!(planned(&s, &all).is_empty());
        // Parallel creates them all at once, whatever their state.
        let p = set(json!({"spec": {"podManagementPolicy": "Parallel"}}));
        assert_eq!(planned(&p, &[]), ["create 0", "create 1", "create 2"]);
        assert_eq!(
            planned(&p, &[pod(1, "web-new", "pending")]),
            ["create 0", "create 2"]
        );
    }

    #[test]
    fn ordinals_start_where_the_set_says() {
        let s = set(json!({"spec": {"ordinals": {"start": 5}, "replicas": 2}}));
        assert_eq!(planned(&s, &[]), ["create 5"]);
        assert_eq!(planned(&s, &[pod(5, "web-new", "ready")]), ["create 6"]);
        // web-0 is outside 5..7: condemned.
        assert_eq!(
            planned(
                &s,
                &[
                    pod(0, "web-new", "ready"),
                    pod(5, "web-new", "ready"),
                    pod(6, "web-new", "ready")
                ]
            ),
            ["condemn web-0"]
        );
    }

    #[test]
    fn scaling_down_goes_from_the_highest_ordinal_one_at_a_time() {
        let s = set(json!({"spec": {"replicas": 2}}));
        let mut mine: Vec<_> = (0..4).map(|o| pod(o, "web-new", "ready")).collect();
        assert_eq!(planned(&s, &mine), ["condemn web-3"]);
        mine[3] = pod(3, "web-new", "terminating");
        assert!(planned(&s, &mine).is_empty());
        mine.pop();
        assert_eq!(planned(&s, &mine), ["condemn web-2"]);
        // An unready replica blocks scaling down.
        mine[1] = pod(1, "web-new", "unready");
        assert!(planned(&s, &mine).is_empty());
        // An unhealthy condemned pod goes only if it is the lowest unhealthy one.
        let mine = vec![
            pod(0, "web-new", "ready"),
            pod(1, "web-new", "ready"),
            pod(2, "web-new", "unready"),
            pod(3, "web-new", "unready"),
        ];
        assert!(planned(&s, &mine).is_empty());
        let mine = vec![
            pod(0, "web-new", "ready"),
            pod(1, "web-new", "ready"),
            pod(2, "web-new", "ready"),
            pod(3, "web-new", "unready"),
        ];
        assert_eq!(planned(&s, &mine), ["condemn web-3"]);
        // Parallel deletes them all at once.
        let p = set(json!({"spec": {"replicas": 2, "podManagementPolicy": "Parallel"}}));
        let mine: Vec<_> = (0..4).map(|o| pod(o, "web-new", "ready")).collect();
        assert_eq!(planned(&p, &mine), ["condemn web-3", "condemn web-2"]);
    }

    #[test]
    fn failed_pods_are_deleted_then_made_again() {
        let s = set(json!({}));
        let mine = vec![pod(0, "web-new", "failed"), pod(1, "web-new", "ready")];
        assert_eq!(planned(&s, &mine), ["recreate web-0"]);
        // Being deleted: wait for it to go, then it is created again.
        let mut dying = (*pod(0, "web-new", "failed")).clone();
        dying.metadata.deletion_timestamp = pod(0, "x", "terminating")
            .metadata
            .deletion_timestamp
            .clone();
        assert!(planned(&s, &[Arc::new(dying), pod(1, "web-new", "ready")]).is_empty());
        assert_eq!(planned(&s, &[pod(1, "web-new", "ready")]), ["create 0"]);
    }

    #[test]
    fn rolling_updates_go_down_to_the_partition() {
        let s = set(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 1}}}}));
        let mut mine: Vec<_> = (0..3).map(|o| pod(o, "web-old", "ready")).collect();
        assert_eq!(planned(&s, &mine), ["update web-2"]);
        mine[2] = pod(2, "web-old", "terminating");
        assert!(planned(&s, &mine).is_empty());
        mine.pop();
        // Made again at the update revision (at or above the partition).
        assert_eq!(planned(&s, &mine), ["create 2"]);
        mine.push(pod(2, "web-new", "unready"));
        assert!(planned(&s, &mine).is_empty());
        mine[2] = pod(2, "web-new", "ready");
        assert_eq!(planned(&s, &mine), ["update web-1"]);
        mine[1] = pod(1, "web-new", "ready");
        // web-0 is below the partition: kept, and made again at the current revision.
        assert!(planned(&s, &mine).is_empty());
        assert_eq!(planned(&s, &mine[1..]), ["create 0 current"]);
        assert!(!at_update(&s, 0) && at_update(&s, 1));
    }

    #[test]
    fn max_unavailable_bounds_the_pods_updated_at_once() {
        let s = set(
            json!({"spec": {"podManagementPolicy": "Parallel", "replicas": 4,
            "updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}}}}),
        );
        let mut mine: Vec<_> = (0..4).map(|o| pod(o, "web-old", "ready")).collect();
        assert_eq!(planned(&s, &mine), ["update web-3", "update web-2"]);
        mine[3] = pod(3, "web-old", "terminating");
        assert_eq!(planned(&s, &mine), ["update web-2"]);
        let half = set(json!({"spec": {"replicas": 4,
            "updateStrategy": {"rollingUpdate": {"maxUnavailable": "50%"}}}}));
        assert_eq!(max_unavailable(&half), 2);
        assert_eq!(max_unavailable(&set(json!({}))), 1);
        let zero =
            set(json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0}}}}));
        assert_eq!(max_unavailable(&zero), 1);
    }

    #[test]
    fn on_delete_only_replaces_deleted_pods() {
        let s =
            set(json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}}));
        let mine: Vec<_> = (0..3).map(|o| pod(o, "web-old", "ready")).collect();
        assert!(planned(&s, &mine).is_empty());
        // A deleted pod comes back at the update revision.
        assert_eq!(planned(&s, &mine[1..]), ["create 0"]);
    }

    #[test]
    fn identity_labels_are_put_back() {
        let s = set(json!({}));
        let mut bare = (*pod(0, "web-new", "ready")).clone();
        bare.metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(POD_INDEX_LABEL);
        assert!(!identity_matches(&s, &bare));
        let mine = vec![
            Arc::new(bare),
            pod(1, "web-new", "ready"),
            pod(2, "web-new", "ready"),
        ];
        assert_eq!(planned(&s, &mine), ["fix web-0"]);
    }
}
