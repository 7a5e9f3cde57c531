//! NodeResourcesFit: the pod's requests must fit in what the node has left (CPU, memory, the
//! pod count and extended resources). Scoring strategies, as upstream's: LeastAllocated (the
//! default, emptier nodes first), MostAllocated (bin packing), RequestedToCapacityRatio (a
//! shape from utilization to score), each over weighted resources.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{NodeInfo, Plugin, Prepared, Resources, Verdict, pod_requests};

/// How nodes are scored.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// Emptier nodes score higher.
    LeastAllocated,
    /// Fuller nodes score higher.
    MostAllocated,
    /// Piecewise-linear (utilization %, score 0-10) points.
    RequestedToCapacityRatio(Vec<(i64, i64)>),
}

/// The NodeResourcesFit plugin.
pub struct NodeResourcesFit {
    /// The scoring strategy.
    pub strategy: Strategy,
    /// Scored resources and their weights (`cpu`, `memory`, or extended resources).
    pub resources: Vec<(String, i64)>,
}

impl Default for NodeResourcesFit {
    fn default() -> NodeResourcesFit {
        NodeResourcesFit {
            strategy: Strategy::LeastAllocated,
            resources: vec![("cpu".into(), 1), ("memory".into(), 1)],
        }
    }
}

fn amount(r: &Resources, name: &str) -> i64 {
    match name {
        "cpu" => r.milli_cpu,
        "memory" => r.memory,
        other => r.scalar.get(other).copied().unwrap_or(0),
    }
}

fn shaped(points: &[(i64, i64)], utilization: i64) -> i64 {
    let Some(first) = points.first() else {
        return 0;
    };
    if utilization <= first.0 {
        return first.1 * 10;
    }
    for w in points.windows(2) {
        let ((u0, s0), (u1, s1)) = (w[0], w[1]);
        if utilization <= u1 {
            return (s0 * 10) + (s1 - s0) * 10 * (utilization - u0) / (u1 - u0).max(1);
        }
    }
    points.last().map_or(0, |p| p.1 * 10)
}

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

impl NodeResourcesFit {
    fn resource_score(&self, requested: i64, capacity: i64) -> i64 {
        if capacity <= 0 {
            return 0;
        }
        match &self.strategy {
            Strategy::LeastAllocated if requested > capacity => 0,
            Strategy::LeastAllocated => (capacity - requested) * 100 / capacity,
            Strategy::MostAllocated => requested.min(capacity) * 100 / capacity,
            Strategy::RequestedToCapacityRatio(points) => {
                shaped(points, requested.min(capacity) * 100 / capacity)
            }
        }
    }
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
        let (mut total, mut weights) = (0, 0);
        for (name, weight) in &self.resources {
            let requested = amount(&node.requested, name) + amount(&want, name);
            total += self.resource_score(requested, amount(&node.allocatable, name)) * weight;
            weights += weight;
        }
        Some(if weights > 0 { total / weights } else { 0 })
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
            NodeResourcesFit::default().filter(&big, &n, &None),
            Verdict::Unschedulable(vec![
                "Insufficient cpu".into(),
                "Insufficient memory".into(),
                "Insufficient example.com/gpu".into()
            ])
        );
        let small =
            pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}));
        assert_eq!(
            NodeResourcesFit::default().filter(&small, &n, &None),
            Verdict::Fits
        );
        n.requested.pods = 110;
        assert_eq!(
            NodeResourcesFit::default().filter(&small, &n, &None),
            Verdict::Unschedulable(vec!["Too many pods".into()])
        );
    }

    #[test]
    fn most_allocated_packs_and_shapes_map_utilization() {
        let pack = NodeResourcesFit {
            strategy: Strategy::MostAllocated,
            ..Default::default()
        };
        let empty = node("a", json!({}));
        let mut busy = node("b", json!({}));
        busy.requested.milli_cpu = 1000;
        busy.requested.memory = 2 * 1024 * 1024 * 1024;
        let p = pod(json!({"containers": [{"name": "c"}]}));
        assert!(pack.score(&p, &busy, &None) > pack.score(&p, &empty, &None));
        assert_eq!(shaped(&[(0, 10), (100, 0)], 25), 75);
        assert_eq!(shaped(&[(0, 0), (100, 10)], 100), 100);
    }

    #[test]
    fn emptier_nodes_score_higher() {
        let empty = node("a", json!({}));
        let mut busy = node("b", json!({}));
        busy.requested.milli_cpu = 1000;
        busy.requested.memory = 2 * 1024 * 1024 * 1024;
        let p = pod(json!({"containers": [{"name": "c"}]}));
        assert!(
            NodeResourcesFit::default().score(&p, &empty, &None)
                > NodeResourcesFit::default().score(&p, &busy, &None)
        );
    }
}
