//! NodeAffinity: `spec.nodeSelector` and required node affinity must match the node's labels
//! (and `metadata.name` for field terms); preferred terms add their weights to the score.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{NodeInfo, Normalize, Plugin, Prepared, Verdict};

/// The NodeAffinity plugin.
pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, pod: &Pod, node: &NodeInfo, _: &Prepared) -> Verdict {
        let empty = BTreeMap::new();
        let labels = node.node.metadata.labels.as_ref().unwrap_or(&empty);
        let fits = pod
            .spec
            .as_ref()
            .is_none_or(|spec| pod::required_node_affinity_matches(spec, labels, node.name()));
        if fits {
            Verdict::Fits
        } else {
            Verdict::Unschedulable(vec![
                "node(s) didn't match Pod's node affinity/selector".into(),
            ])
        }
    }

    fn score(&self, pod: &Pod, node: &NodeInfo, _: &Prepared) -> Option<i64> {
        let empty = BTreeMap::new();
        let labels = node.node.metadata.labels.as_ref().unwrap_or(&empty);
        let preferred = pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_deref()
            })
            .unwrap_or_default();
        Some(
            preferred
                .iter()
                .filter(|p| pod::term_matches(&p.preference, labels, node.name()))
                .map(|p| i64::from(p.weight))
                .sum(),
        )
    }

    fn weight(&self) -> i64 {
        2
    }

    fn normalize(&self) -> Normalize {
        Normalize::Max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn selectors_and_required_terms_filter_preferred_terms_score() {
        let ssd = node(
            "a",
            json!({"metadata": {"labels": {"disk": "ssd", "gen": "5"}}}),
        );
        let hdd = node(
            "b",
            json!({"metadata": {"labels": {"disk": "hdd", "gen": "3"}}}),
        );
        let p = pod(json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
        assert_eq!(NodeAffinity.filter(&p, &ssd, &None), Verdict::Fits);
        assert!(matches!(
            NodeAffinity.filter(&p, &hdd, &None),
            Verdict::Unschedulable(_)
        ));
        let p = pod(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}},
            "preferredDuringSchedulingIgnoredDuringExecution": []}}));
        assert_eq!(NodeAffinity.filter(&p, &ssd, &None), Verdict::Fits);
        assert_eq!(NodeAffinity.filter(&p, &hdd, &None), Verdict::Fits);
        let p = pod(json!({"containers": [], "affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]}}]}}}));
        assert_eq!(NodeAffinity.score(&p, &hdd, &None), Some(10));
        assert_eq!(NodeAffinity.score(&p, &ssd, &None), Some(0));
    }
}
