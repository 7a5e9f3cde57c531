//! NodeResourcesBalancedAllocation: prefers nodes whose CPU and memory would be used in
//! similar proportions once the pod is there.

use k8s_openapi::api::core::v1::Pod;

use super::node_resources_fit::scoring_requests;
use crate::framework::{NodeInfo, Plugin, Prepared};

/// The NodeResourcesBalancedAllocation plugin.
pub struct NodeResourcesBalancedAllocation;

impl Plugin for NodeResourcesBalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    fn score(&self, pod: &Pod, node: &NodeInfo, _: &Prepared) -> Option<i64> {
        let want = scoring_requests(pod);
        let fraction = |used: i64, have: i64| {
            if have <= 0 {
                1.0
            } else {
                (used as f64 / have as f64).min(1.0)
            }
        };
        let cpu = fraction(
            node.requested.milli_cpu + want.milli_cpu,
            node.allocatable.milli_cpu,
        );
        let memory = fraction(node.requested.memory + want.memory, node.allocatable.memory);
        // The standard deviation of two fractions is half their distance.
        let deviation = (cpu - memory).abs() / 2.0;
        Some(((1.0 - deviation) * 100.0) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn balanced_use_scores_higher() {
        let p = pod(
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}),
        );
        let lopsided = pod(
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "2", "memory": "100Mi"}}}]}),
        );
        let n = node("n", json!({}));
        assert!(
            NodeResourcesBalancedAllocation.score(&p, &n, &None)
                > NodeResourcesBalancedAllocation.score(&lopsided, &n, &None)
        );
    }
}
