//! DefaultPreemption (the PostFilter step): when a pod fits nowhere, find a node where
//! removing pods of lower priority would make it fit, and the fewest and least important such
//! pods; the scheduler then nominates the node and deletes those victims gracefully.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{NodeInfo, Plugin, PodSummary, Prepared, Verdict};

/// A node to preempt on and the pods to evict there.
pub struct Candidate {
    /// The node.
    pub node: String,
    /// The victims.
    pub victims: Vec<PodSummary>,
}

fn fits(plugins: &[&dyn Plugin], prepared: &[Prepared], pod: &Pod, node: &NodeInfo) -> bool {
    plugins
        .iter()
        .zip(prepared)
        .all(|(p, state)| p.filter(pod, node, state) == Verdict::Fits)
}

/// Looks for the best candidate among `nodes`; `refused` holds, per node name, the plugin
/// that refused it. Fails with upstream's preemption message.
pub fn find(
    pod: &Pod,
    plugins: &[&dyn Plugin],
    prepared: &[Prepared],
    nodes: &[&NodeInfo],
    refused: &BTreeMap<String, usize>,
) -> Result<Candidate, String> {
    let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut candidates = Vec::new();
    for node in nodes {
        let helps = refused
            .get(node.name())
            .is_some_and(|i| plugins[*i].preemption_helps());
        if !helps {
            *reasons
                .entry("Preemption is not helpful for scheduling".into())
                .or_default() += 1;
            continue;
        }
        let mut lower: Vec<PodSummary> = node
            .pods
            .iter()
            .filter(|p| p.priority < priority && !p.terminating)
            .cloned()
            .collect();
        let mut reduced = (*node).clone();
        for v in &lower {
            reduced.remove_pod(&v.key);
        }
        if lower.is_empty() || !fits(plugins, prepared, pod, &reduced) {
            *reasons
                .entry("No preemption victims found for incoming pod".into())
                .or_default() += 1;
            continue;
        }
        // Reprieve the most important pods first, as long as the pod still fits.
        lower.sort_by_key(|p| std::cmp::Reverse(p.priority));
        let mut victims = Vec::new();
        for p in lower {
            reduced.add_pod(p.clone());
            if !fits(plugins, prepared, pod, &reduced) {
                reduced.remove_pod(&p.key);
                victims.push(p);
            }
        }
        candidates.push(Candidate {
            node: node.name().to_string(),
            victims,
        });
    }
    // The least harm: the lowest top victim priority, then the lowest sum, then the fewest.
    candidates
        .into_iter()
        .min_by_key(|c| {
            let top = c
                .victims
                .iter()
                .map(|v| v.priority)
                .max()
                .unwrap_or(i32::MIN);
            let sum: i64 = c.victims.iter().map(|v| i64::from(v.priority)).sum();
            (top, sum, c.victims.len())
        })
        .ok_or_else(|| {
            let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
            parts.sort();
            format!(
                "preemption: 0/{} nodes are available: {}.",
                nodes.len(),
                parts.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::default_profile;
    use crate::plugins::testing::{node, pod};
    use serde_json::json;

    fn running(name: &str, cpu: &str, priority: i32) -> PodSummary {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"priority": priority, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}))
        .unwrap();
        PodSummary::of(&p)
    }

    #[test]
    fn the_fewest_least_important_pods_make_room() {
        let owned = default_profile();
        let plugins: Vec<&dyn Plugin> = owned.iter().map(|p| p.as_ref()).collect();
        let mut a = node("a", json!({}));
        a.add_pod(running("low", "1", 0));
        a.add_pod(running("lower", "500m", -5));
        a.add_pod(running("high", "500m", 1000));
        let mut b = node("b", json!({}));
        b.add_pod(running("mid", "2", 500));
        let p = pod(
            json!({"priority": 100, "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}),
        );
        let nodes = [&a, &b];
        let prepared: Vec<Prepared> = plugins.iter().map(|pl| pl.prepare(&p, &nodes)).collect();
        let refused: BTreeMap<String, usize> = [("a".to_string(), 1), ("b".to_string(), 1)].into();
        let c = find(&p, &plugins, &prepared, &nodes, &refused).unwrap();
        assert_eq!(c.node, "a");
        let names: Vec<&str> = c.victims.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(names, ["default/low"]);

        let tiny = pod(
            json!({"priority": -10, "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}),
        );
        let e = find(&tiny, &plugins, &prepared, &nodes, &refused)
            .err()
            .unwrap();
        assert_eq!(
            e,
            "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
        );
    }
}
