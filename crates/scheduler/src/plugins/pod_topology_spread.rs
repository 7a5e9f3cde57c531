//! PodTopologySpread: a pod's `topologySpreadConstraints` keep matching pods spread over
//! topology domains (zones, hosts). A `DoNotSchedule` constraint filters out nodes where the
//! skew (this domain's matching pods, plus the pod itself, minus the emptiest domain's) would
//! pass `maxSkew`; `ScheduleAnyway` constraints prefer the domains with fewer matching pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};

use super::node_affinity::NodeAffinity;
use crate::framework::{NodeInfo, Normalize, Plugin, PodMatcher, Prepared, Verdict};

/// The PodTopologySpread plugin.
pub struct PodTopologySpread;

/// One constraint, worked out over the cluster for one pod.
struct Constraint {
    key: String,
    max_skew: i64,
    hard: bool,
    /// Matching pods per domain of the eligible nodes.
    counts: BTreeMap<String, i64>,
    /// The pod counts itself when it matches its own selector.
    self_match: i64,
    /// The smallest count over the domains (0 when there are fewer than minDomains).
    min: i64,
}

struct State(Vec<Constraint>);

fn selector(c: &TopologySpreadConstraint, pod: &Pod) -> Option<PodMatcher> {
    let mut sel = serde_json::to_value(c.label_selector.as_ref()?).ok()?;
    // matchLabelKeys: the pod's own values for those keys narrow the selector.
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    for k in c.match_label_keys.iter().flatten() {
        if let Some(v) = labels.get(k) {
            if !sel["matchLabels"].is_object() {
                sel["matchLabels"] = serde_json::json!({});
            }
            sel["matchLabels"][k] = serde_json::json!(v);
        }
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    PodMatcher::new(&sel, vec![ns])
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn preemption_helps(&self) -> bool {
        true
    }

    fn prepare(&self, pod: &Pod, nodes: &[&NodeInfo]) -> Prepared {
        let constraints = pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_deref())
            .unwrap_or_default();
        if constraints.is_empty() {
            return None;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let own = serde_json::to_value(pod.metadata.labels.clone().unwrap_or_default())
            .unwrap_or_default();
        let mut out = Vec::new();
        for c in constraints {
            let Some(sel) = selector(c, pod) else {
                continue;
            };
            let mut counts: BTreeMap<String, i64> = BTreeMap::new();
            // Only nodes the pod could go to by its node affinity count (nodeAffinityPolicy:
            // Honor, upstream's default).
            for node in nodes
                .iter()
                .filter(|n| NodeAffinity.filter(pod, n, &None) == Verdict::Fits)
            {
                let Some(domain) = node.label(&c.topology_key) else {
                    continue;
                };
                let n = sel.count(node);
                match counts.get_mut(domain) {
                    Some(c) => *c += n,
                    None => {
                        counts.insert(domain.to_string(), n);
                    }
                }
            }
            let min_domains = i64::from(c.min_domains.unwrap_or(1));
            let min = if (counts.len() as i64) < min_domains {
                0
            } else {
                counts.values().copied().min().unwrap_or(0)
            };
            out.push(Constraint {
                key: c.topology_key.clone(),
                max_skew: i64::from(c.max_skew),
                hard: c.when_unsatisfiable == "DoNotSchedule",
                counts,
                self_match: i64::from(sel.matches(&ns, &own)),
                min,
            });
        }
        Some(Box::new(State(out)))
    }

    fn filter(&self, _pod: &Pod, node: &NodeInfo, prepared: &Prepared) -> Verdict {
        let Some(State(constraints)) = prepared.as_ref().and_then(|p| p.downcast_ref()) else {
            return Verdict::Fits;
        };
        for c in constraints.iter().filter(|c| c.hard) {
            let Some(domain) = node.label(&c.key) else {
                return Verdict::Unschedulable(vec![
                    "node(s) didn't match pod topology spread constraints (missing required label)"
                        .into(),
                ]);
            };
            let here = c.counts.get(domain).copied().unwrap_or(0);
            if here + c.self_match - c.min > c.max_skew {
                return Verdict::Unschedulable(vec![
                    "node(s) didn't match pod topology spread constraints".into(),
                ]);
            }
        }
        Verdict::Fits
    }

    /// Matching pods in the node's domains under `ScheduleAnyway` constraints (fewer is better).
    fn score(&self, _pod: &Pod, node: &NodeInfo, prepared: &Prepared) -> Option<i64> {
        let Some(State(constraints)) = prepared.as_ref().and_then(|p| p.downcast_ref()) else {
            return Some(0);
        };
        Some(
            constraints
                .iter()
                .filter(|c| !c.hard)
                .map(|c| {
                    node.label(&c.key)
                        .and_then(|d| c.counts.get(d))
                        .copied()
                        .unwrap_or(0)
                })
                .sum(),
        )
    }

    fn weight(&self) -> i64 {
        2
    }

    fn normalize(&self) -> Normalize {
        Normalize::Reverse
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, placed, pod};
    use serde_json::json;

    fn zone_node(name: &str, zone: &str, app_pods: usize) -> NodeInfo {
        let mut n = node(name, json!({"metadata": {"labels": {"zone": zone}}}));
        for i in 0..app_pods {
            n.add_pod(placed(&format!("{name}-{i}"), "web"));
        }
        n
    }

    #[test]
    fn max_skew_keeps_zones_level() {
        let nodes = [
            zone_node("a", "z1", 2),
            zone_node("b", "z2", 1),
            zone_node("c", "z3", 1),
        ];
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let mut p = pod(
            json!({"containers": [], "topologySpreadConstraints": [{"maxSkew": 1,
            "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}}]}),
        );
        p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        let state = PodTopologySpread.prepare(&p, &refs);
        assert_eq!(
            PodTopologySpread.filter(&p, &nodes[0], &state),
            Verdict::Unschedulable(vec![
                "node(s) didn't match pod topology spread constraints".into()
            ])
        );
        assert_eq!(
            PodTopologySpread.filter(&p, &nodes[1], &state),
            Verdict::Fits
        );
        let bare = node("x", json!({}));
        assert!(matches!(
            PodTopologySpread.filter(&p, &bare, &state),
            Verdict::Unschedulable(_)
        ));
    }
}
