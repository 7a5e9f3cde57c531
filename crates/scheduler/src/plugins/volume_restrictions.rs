//! VolumeRestrictions: a claim with the `ReadWriteOncePod` access mode serves one pod in the
//! whole cluster, so a pod using one that a placed pod already uses fits nowhere, with
//! upstream's reason; preemption may help, by removing that pod. (Upstream's disk conflicts
//! between in-tree cloud volumes do not apply here.)

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{Cluster, NodeInfo, Plugin, PodSummary, Prepared, Verdict};

/// The plugin.
pub struct VolumeRestrictions;

/// Upstream's reason at Filter.
const RWOP_CONFLICT: &str =
    "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode";

/// The pod's `ReadWriteOncePod` claims, and how many placed pods use them, per node.
struct State {
    namespace: String,
    claims: Vec<String>,
    users: HashMap<String, usize>,
    total: usize,
}

impl State {
    /// How many of `pods` use one of the claims.
    fn count(&self, pods: &[PodSummary]) -> usize {
        pods.iter()
            .filter(|p| {
                p.namespace == self.namespace && p.claims.iter().any(|c| self.claims.contains(c))
            })
            .count()
    }
}

/// The claims of `pod` that have the `ReadWriteOncePod` access mode.
fn read_write_once_pod(pod: &Pod, cluster: &Cluster) -> Vec<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    pod::claim_names(pod)
        .into_iter()
        .filter(|name| {
            let claim = cluster.claims.get(&format!("{ns}/{name}"));
            let modes = claim.and_then(|c| c.spec.as_ref()?.access_modes.as_ref());
            modes.is_some_and(|m| m.iter().any(|m| m == "ReadWriteOncePod"))
        })
        .collect()
}

impl Plugin for VolumeRestrictions {
    fn name(&self) -> &'static str {
        "VolumeRestrictions"
    }

    fn prepare(&self, pod: &Pod, nodes: &[&NodeInfo], cluster: &Cluster) -> Prepared {
        let claims = read_write_once_pod(pod, cluster);
        if claims.is_empty() {
            return None;
        }
        let mut state = State {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            claims,
            users: HashMap::new(),
            total: 0,
        };
        for node in nodes {
            let n = state.count(&node.pods);
            if n > 0 {
                state.users.insert(node.name().to_string(), n);
                state.total += n;
            }
        }
        Some(Box::new(state))
    }

    fn filter(&self, _pod: &Pod, node: &NodeInfo, prepared: &Prepared) -> Verdict {
        let Some(s) = prepared.as_ref().and_then(|p| p.downcast_ref::<State>()) else {
            return Verdict::Fits;
        };
        // The node as seen here may lack pods preemption would remove.
        let elsewhere = s.total - s.users.get(node.name()).copied().unwrap_or(0);
        if elsewhere + s.count(&node.pods) > 0 {
            Verdict::Unschedulable(vec![RWOP_CONFLICT.into()])
        } else {
            Verdict::Fits
        }
    }

    fn preemption_helps(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use serde_json::json;

    fn claimant(name: &str, claim: &str) -> Pod {
        let mut p = pod(json!({"containers": [], "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}));
        p.metadata.name = Some(name.into());
        p
    }

    #[test]
    fn a_read_write_once_pod_claim_serves_one_pod_in_the_cluster() {
        let mut cluster = Cluster::default();
        for (name, mode) in [("solo", "ReadWriteOncePod"), ("shared", "ReadWriteOnce")] {
            let claim: PersistentVolumeClaim = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"accessModes": [mode]}}))
            .unwrap();
            cluster.claims.insert(format!("default/{name}"), claim);
        }
        let (mut a, b) = (node("a", json!({})), node("b", json!({})));
        a.add_pod(PodSummary::of(&claimant("first", "solo")));
        a.add_pod(PodSummary::of(&claimant("other", "shared")));
        let second = claimant("second", "solo");
        let prepared = VolumeRestrictions.prepare(&second, &[&a, &b], &cluster);
        let refused = Verdict::Unschedulable(vec![RWOP_CONFLICT.into()]);
        assert_eq!(VolumeRestrictions.filter(&second, &a, &prepared), refused);
        assert_eq!(VolumeRestrictions.filter(&second, &b, &prepared), refused);
        // Without the first pod (as preemption would see node a), it fits there.
        let mut emptied = a.clone();
        emptied.remove_pod("default/first");
        assert_eq!(
            VolumeRestrictions.filter(&second, &emptied, &prepared),
            Verdict::Fits
        );
        let sharing = claimant("sharing", "shared");
        let prepared = VolumeRestrictions.prepare(&sharing, &[&a, &b], &cluster);
        assert!(prepared.is_none());
    }
}
