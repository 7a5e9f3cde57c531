//! DefaultPreemption (the PostFilter step): when a pod fits nowhere, find a node where
//! removing pods of lower priority would make it fit, and the fewest and least important such
//! pods; the scheduler then nominates the node and deletes those victims gracefully.
//!
//! PodDisruptionBudgets are weighed as upstream does: pods whose eviction would overdraw a
//! budget are the first reprieved, and the node whose victims violate the fewest budgets wins.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{Budget, Cluster, NodeInfo, Plugin, PodSummary, Prepared, Verdict};

/// A node to preempt on and the pods to evict there.
pub struct Candidate {
    /// The node.
    pub node: String,
    /// The victims.
    pub victims: Vec<PodSummary>,
    /// How many victims' eviction overdraws a disruption budget.
    pub violations: usize,
}

/// Splits `pods` (most important first) into those whose eviction would overdraw a
/// disruption budget and the others, spending each budget's allowed disruptions in order
/// (upstream's `filterPodsWithPDBViolation`). Budgets without a selector select nothing; pods
/// a budget already counts as disrupted do not spend it again.
fn split_by_budgets(
    pods: Vec<PodSummary>,
    budgets: &HashMap<String, Budget>,
) -> (Vec<PodSummary>, Vec<PodSummary>) {
    let mut left: HashMap<&str, i32> = budgets
        .iter()
        .map(|(k, b)| (k.as_str(), b.allowed))
        .collect();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for p in pods {
        let name = p.key.split_once('/').map_or(p.key.as_str(), |(_, n)| n);
        let mut violates = false;
        for (k, b) in budgets {
            let selects = b.namespace == p.namespace
                && b.selector
                    .as_ref()
                    .is_some_and(|s| s.matches(Some(&p.labels_json)));
            if !selects || b.disrupted.contains(name) {
                continue;
            }
            if let Some(n) = left.get_mut(k.as_str()) {
                *n -= 1;
                violates |= *n < 0;
            }
        }
        if violates {
            violating.push(p);
        } else {
            fine.push(p);
        }
    }
    (violating, fine)
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
    cluster: &Cluster,
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
        // Reprieve as many as possible, as long as the pod still fits: first those whose
        // eviction would overdraw a budget, then the others, the most important first.
        lower.sort_by_key(|p| std::cmp::Reverse(p.priority));
        let (violating, fine) = split_by_budgets(lower, &cluster.budgets);
        let mut victims = Vec::new();
        let mut violations = 0;
        for (overdraws, p) in violating
            .into_iter()
            .map(|p| (true, p))
            .chain(fine.into_iter().map(|p| (false, p)))
        {
            reduced.add_pod(p.clone());
            if !fits(plugins, prepared, pod, &reduced) {
                reduced.remove_pod(&p.key);
                violations += usize::from(overdraws);
                victims.push(p);
            }
        }
        candidates.push(Candidate {
            node: node.name().to_string(),
            victims,
            violations,
        });
    }
    // The least harm: the fewest budgets overdrawn, then the lowest top victim priority, then
    // the lowest sum, then the fewest victims.
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
            (c.violations, top, sum, c.victims.len())
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
        let cluster = Cluster::default();
        let prepared: Vec<Prepared> = plugins
            .iter()
            .map(|pl| pl.prepare(&p, &nodes, &cluster))
            .collect();
        let refused: BTreeMap<String, usize> = [("a".to_string(), 1), ("b".to_string(), 1)].into();
        let c = find(&p, &plugins, &prepared, &nodes, &refused, &cluster).unwrap();
        assert_eq!(c.node, "a");
        let names: Vec<&str> = c.victims.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(names, ["default/low"]);

        let tiny = pod(
            json!({"priority": -10, "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}),
        );
        let e = find(&tiny, &plugins, &prepared, &nodes, &refused, &cluster)
            .err()
            .unwrap();
        assert_eq!(
            e,
            "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn budgets_steer_preemption_to_pods_they_do_not_protect() {
        let owned = default_profile();
        let plugins: Vec<&dyn Plugin> = owned.iter().map(|p| p.as_ref()).collect();
        let labelled = |name: &str, app: &str| {
            let p: Pod = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default",
                "labels": {"app": app}},
                "spec": {"priority": 0, "containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]}}))
            .unwrap();
            PodSummary::of(&p)
        };
        let mut a = node("a", json!({}));
        a.add_pod(labelled("guarded", "db"));
        let mut b = node("b", json!({}));
        b.add_pod(labelled("free", "web"));
        let mut cluster = Cluster::default();
        cluster.budgets.insert(
            "default/db".into(),
            Budget {
                namespace: "default".into(),
                selector: Some(
                    api::selector::LabelSelector::from_object(
                        &json!({"matchLabels": {"app": "db"}}),
                    )
                    .unwrap(),
                ),
                allowed: 0,
                disrupted: Default::default(),
            },
        );
        let p = pod(
            json!({"priority": 100, "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}),
        );
        let nodes = [&a, &b];
        let prepared: Vec<Prepared> = plugins
            .iter()
            .map(|pl| pl.prepare(&p, &nodes, &cluster))
            .collect();
        let refused: BTreeMap<String, usize> = [("a".to_string(), 1), ("b".to_string(), 1)].into();
        let c = find(&p, &plugins, &prepared, &nodes, &refused, &cluster).unwrap();
        assert_eq!((c.node.as_str(), c.violations), ("b", 0));

        // With only the guarded node, it is still chosen, the violation counted.
        let only = [&a];
        let refused: BTreeMap<String, usize> = [("a".to_string(), 1)].into();
        let c = find(&p, &plugins, &prepared, &only, &refused, &cluster).unwrap();
        assert_eq!((c.node.as_str(), c.violations), ("a", 1));
    }
}
