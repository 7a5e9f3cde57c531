//! NodeResourcesFit: the pod's requests must fit in what the node has left (CPU, memory, the
//! pod count and extended resources); scores with LeastAllocated, upstream's default strategy,
//! preferring the emptier nodes.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{NodeInfo, Plugin, Prepared, Resources, Verdict, pod_requests};

/// The NodeResourcesFit plugin (LeastAllocated scoring).
pub struct NodeResourcesFit;

/// Requests used for scoring: a pod asking for nothing still counts as 100m CPU and 200 MiB,
/// as upstream's scoring does, so empty pods spread too.
pub fn scoring_requests(pod: &Pod) -> Resources {
    let mut r = pod_requests(pod);
    if r.milli_cpu == 0 {
        r.milli_cpu = 100;
    }
    if r.memory == 0 {
        r.memory = 200 * 1024 * 1024;
    }
    r
}

fn least_allocated(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * 100 / capacity
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn preemption_helps(&self) -> bool {
        true
    }

    fn filter(&self, pod: &Pod, node: &NodeInfo, _: &Prepared) -> Verdict {
        let want = pod_requests(pod);
        let (have, used) = (&node.allocatable, &node.requested);
        let mut reasons = Vec::new();
        if used.pods + 1 > have.pods {
            reasons.push("Too many pods".to_string());
        }
        if want.milli_cpu > 0 && used.milli_cpu + want.milli_cpu > have.milli_cpu {
            reasons.push("Insufficient cpu".into());
        }
        if want.memory > 0 && used.memory + want.memory > have.memory {
            reasons.push("Insufficient memory".into());
        }
        for (name, amount) in want.scalar.iter().filter(|(_, a)| **a > 0) {
            let free = have.scalar.get(name).copied().unwrap_or(0)
                - used.scalar.get(name).copied().unwrap_or(0);
            if *amount > free {
                reasons.push(format!("Insufficient {name}"));
            }
        }
        if reasons.is_empty() {
            Verdict::Fits
        } else {
            Verdict::Unschedulable(reasons)
        }
    }

    fn score(&self, pod: &Pod, node: &NodeInfo, _: &Prepared) -> Option<i64> {
        let want = scoring_requests(pod);
        let cpu = least_allocated(
            node.requested.milli_cpu + want.milli_cpu,
            node.allocatable.milli_cpu,
        );
        let memory = least_allocated(node.requested.memory + want.memory, node.allocatable.memory);
        Some((cpu + memory) / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn requests_must_fit_what_is_left() {
        let mut n = node(
            "n",
            json!({"status": {"allocatable": {"example.com/gpu": "1"}}}),
        );
        n.requested.milli_cpu = 1500;
        let big = pod(
            json!({"containers": [{"name": "c", "resources": {"requests": {
            "cpu": "600m", "memory": "8Gi", "example.com/gpu": "2"}}}]}),
        );
        assert_eq!(
            NodeResourcesFit.filter(&big, &n, &None),
            Verdict::Unschedulable(vec![
                "Insufficient cpu".into(),
                "Insufficient memory".into(),
                "Insufficient example.com/gpu".into()
            ])
        );
        let small =
            pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}));
        assert_eq!(NodeResourcesFit.filter(&small, &n, &None), Verdict::Fits);
        n.requested.pods = 110;
        assert_eq!(
            NodeResourcesFit.filter(&small, &n, &None),
            Verdict::Unschedulable(vec!["Too many pods".into()])
        );
    }

    #[test]
    fn emptier_nodes_score_higher() {
        let empty = node("a", json!({}));
        let mut busy = node("b", json!({}));
        busy.requested.milli_cpu = 1000;
        busy.requested.memory = 2 * 1024 * 1024 * 1024;
        let p = pod(json!({"containers": [{"name": "c"}]}));
        assert!(
            NodeResourcesFit.score(&p, &empty, &None) > NodeResourcesFit.score(&p, &busy, &None)
        );
    }
}
