//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take only pods that tolerate the
//! `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::{Pod, Taint};

use crate::framework::{NodeInfo, Plugin, Prepared, Verdict};

/// The NodeUnschedulable plugin.
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, pod: &Pod, node: &NodeInfo, _: &Prepared) -> Verdict {
        let cordoned = node
            .node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref());
        if cordoned && !pod::any_tolerates(tolerations.unwrap_or_default(), &taint) {
            Verdict::Unschedulable(vec!["node(s) were unschedulable".into()])
        } else {
            Verdict::Fits
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn cordoned_nodes_take_only_pods_that_tolerate_it() {
        let cordoned = node("n", json!({"spec": {"unschedulable": true}}));
        let plain = pod(json!({"containers": []}));
        assert_eq!(
            NodeUnschedulable.filter(&plain, &cordoned, &None),
            Verdict::Unschedulable(vec!["node(s) were unschedulable".into()])
        );
        let tolerant = pod(json!({"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}));
        assert_eq!(
            NodeUnschedulable.filter(&tolerant, &cordoned, &None),
            Verdict::Fits
        );
    }
}
