//! Pod readiness and availability, and the status a sync writes (replicas by readiness
//! and revision, the revisions, collisionCount).

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::pods;

use super::identity::{ordinal_of, pod_revision};
use super::plan::strategy_type;

pub(super) fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

pub(super) fn running_and_ready(pod: &Pod) -> bool {
    pod::phase(pod) == "Running" && pods::is_ready(pod)
}

pub(super) fn running_and_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    pod::phase(pod) == "Running" && pods::is_available(pod, min_ready_seconds, now)
}

/// Running, Ready and not being deleted (upstream's `isHealthy`).
pub(super) fn is_healthy(pod: &Pod) -> bool {
    running_and_ready(pod) && !pod::is_terminating(pod)
}

/// The status a sync writes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Status {
    replicas: i32,
    ready: i32,
    pub(super) available: i32,
    pub(super) current: i32,
    updated: i32,
    current_revision: String,
    update_revision: String,
    collisions: i32,
    observed_generation: i64,
}

impl Status {
    /// As upstream's JSON: zero counts and empty revisions left out, but `replicas`,
    /// `availableReplicas` and `collisionCount` always there; `conditions` kept from `old`.
    pub(super) fn to_json(&self, old: &Value) -> Value {
        let mut v = json!({
            "replicas": self.replicas,
            "readyReplicas": self.ready,
            "availableReplicas": self.available,
            "currentReplicas": self.current,
            "updatedReplicas": self.updated,
            "currentRevision": self.current_revision,
            "updateRevision": self.update_revision,
            "collisionCount": self.collisions,
            "observedGeneration": self.observed_generation,
        });
        if let Some(m) = v.as_object_mut() {
            m.retain(|k, v| {
                matches!(
                    k.as_str(),
                    "replicas" | "availableReplicas" | "collisionCount"
                ) || (v != &json!(0) && v != &json!(""))
            });
        }
        if let Some(c) = old.get("conditions").filter(|c| !c.is_null()) {
            v["conditions"] = c.clone();
        }
        v
    }
}

/// The status of `set` with pods `mine` between revisions `current` and `update`
/// (upstream's `updateStatus`).
pub(super) fn status_of(
    set: &StatefulSet,
    mine: &[Arc<Pod>],
    current: &str,
    update: &str,
    collisions: i32,
    now: Timestamp,
) -> Status {
    let min_ready = min_ready_seconds(set);
    let mut s = Status {
        current_revision: current.into(),
        update_revision: update.into(),
        collisions,
        observed_generation: set.metadata.generation.unwrap_or(0),
        ..Default::default()
    };
    let set_name = set.name_any();
    for pod in mine
        .iter()
        .filter(|p| ordinal_of(&set_name, &p.name_any()).is_some())
    {
        s.replicas += 1;
        if running_and_ready(pod) {
            s.ready += 1;
            if running_and_available(pod, min_ready, now) {
                s.available += 1;
            }
        }
        if !pod::is_terminating(pod) {
            let rev = pod_revision(pod);
            s.current += i32::from(rev == current);
            s.updated += i32::from(rev == update);
        }
    }
    s
}

/// A RollingUpdate with every pod updated and ready is complete: the update revision
/// becomes the current one (upstream's `completeRollingUpdate`).
pub(super) fn complete_rolling_update(set: &StatefulSet, s: &mut Status) {
    if strategy_type(set) == "RollingUpdate" && s.updated == s.replicas && s.ready == s.replicas {
        s.current = s.updated;
        s.current_revision = s.update_revision.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statefulset::fixtures::{now, pod, set};

    #[test]
    fn status_counts_pods_by_revision_and_readiness() {
        let s = set(json!({"spec": {"minReadySeconds": 10}}));
        let mine = vec![
            pod(0, "web-old", "ready"),
            pod(1, "web-new", "ready"),
            pod(2, "web-new", "terminating"),
            pod(3, "web-new", "pending"),
        ];
        let mut st = status_of(&s, &mine, "web-old", "web-new", 0, now());
        assert_eq!(
            st,
            Status {
                replicas: 4,
                ready: 3,
                available: 3,
                current: 1,
                updated: 2,
                current_revision: "web-old".into(),
                update_revision: "web-new".into(),
                collisions: 0,
                observed_generation: 2,
            }
        );
        // Ready only just: not yet available.
        let fresh = status_of(
            &s,
            &mine,
            "web-old",
            "web-new",
            0,
            "2026-01-01T00:00:05Z".parse().unwrap(),
        );
        assert_eq!(fresh.available, 0);
        complete_rolling_update(&s, &mut st);
        assert_eq!(st.current_revision, "web-old");
        let done: Vec<_> = (0..3).map(|o| pod(o, "web-new", "ready")).collect();
        let mut st = status_of(&s, &done, "web-old", "web-new", 1, now());
        complete_rolling_update(&s, &mut st);
        assert_eq!((st.current, st.current_revision.as_str()), (3, "web-new"));
        assert_eq!(
            st.to_json(&json!({"conditions": [{"type": "X"}]})),
            json!({"replicas": 3, "readyReplicas": 3, "availableReplicas": 3,
                "currentReplicas": 3, "updatedReplicas": 3, "currentRevision": "web-new",
                "updateRevision": "web-new", "collisionCount": 1, "observedGeneration": 2,
                "conditions": [{"type": "X"}]})
        );
        assert_eq!(
            Status::default().to_json(&Value::Null),
            json!({"replicas": 0, "availableReplicas": 0, "collisionCount": 0})
        );
    }
}
