//! PodTopologySpread: a pod's `topologySpreadConstraints` keep matching pods spread over
//! topology domains (zones, hosts). A `DoNotSchedule` constraint filters out nodes where the
//! skew (this domain's matching pods, plus the pod itself, minus the emptiest domain's) would
//! pass `maxSkew`; `ScheduleAnyway` constraints prefer the domains with fewer matching pods.
//!
//! A pod without constraints gets the default ones (upstream's `defaultingType: System`:
//! at most 3 more per host and 5 more per zone, `ScheduleAnyway`) over the pods its Services
//! and owning controller select; `PodTopologySpreadArgs` may list others instead.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::node_affinity::NodeAffinity;
use super::taint_toleration::TaintToleration;
use crate::Error;
use crate::framework::{Cluster, NodeInfo, Normalize, Plugin, PodMatcher, Prepared, Verdict};

/// The PodTopologySpread plugin, with the constraints given to pods that have none.
pub struct PodTopologySpread {
    /// Constraints (without selectors) for pods that set none.
    pub defaults: Vec<TopologySpreadConstraint>,
}

impl Default for PodTopologySpread {
    /// Upstream's system defaults.
    fn default() -> PodTopologySpread {
        let soft = |key: &str, max_skew| TopologySpreadConstraint {
            topology_key: key.into(),
            max_skew,
            when_unsatisfiable: "ScheduleAnyway".into(),
            ..Default::default()
        };
        PodTopologySpread {
            defaults: vec![
                soft("kubernetes.io/hostname", 3),
                soft("topology.kubernetes.io/zone", 5),
            ],
        }
    }
}

impl PodTopologySpread {
    /// From `PodTopologySpreadArgs`: `defaultingType: List` uses `defaultConstraints`
    /// (none when absent); `System`, or no arguments, upstream's defaults.
    pub fn from_args(args: Option<&serde_json::Value>) -> crate::Result<PodTopologySpread> {
        let Some(args) = args.filter(|a| !a.is_null()) else {
            return Ok(PodTopologySpread::default());
        };
        match args["defaultingType"].as_str().unwrap_or("System") {
            "System"
                if args["defaultConstraints"]
                    .as_array()
                    .is_some_and(|c| !c.is_empty()) =>
            {
                Err(Error::Invalid("defaultConstraints: Invalid value: \"array\": when .defaultingType is \"System\", .defaultConstraints must be empty".into()))
            }
            "System" => Ok(PodTopologySpread::default()),
            "List" => {
                let defaults: Vec<TopologySpreadConstraint> = match &args["defaultConstraints"] {
                    serde_json::Value::Null => Vec::new(),
                    list => serde_json::from_value(list.clone())
                        .map_err(|e| Error::Invalid(format!("defaultConstraints: {e}")))?,
                };
                if defaults.iter().any(|c| c.label_selector.is_some()) {
                    return Err(Error::Invalid("defaultConstraints[0].labelSelector: Forbidden: constraint must not define a selector, as they deduced for each pod".into()));
                }
                Ok(PodTopologySpread { defaults })
            }
            other => Err(Error::Invalid(format!("defaultingType: Unsupported value: {other:?}: supported values: \"List\", \"System\""))),
        }
    }
}

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

    fn prepare(&self, pod: &Pod, nodes: &[&NodeInfo], cluster: &Cluster) -> Prepared {
        let own_constraints = pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.clone())
            .unwrap_or_default();
        let constraints = if !own_constraints.is_empty() {
            own_constraints
        } else if self.defaults.is_empty() {
            return None;
        } else {
            // The defaults select what the pod's Services and controller select.
            let selector = cluster.default_selector(pod)?;
            let selector: LabelSelector = serde_json::from_value(selector).ok()?;
            self.defaults
                .iter()
                .map(|c| TopologySpreadConstraint {
                    label_selector: Some(selector.clone()),
                    ..c.clone()
                })
                .collect()
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let own = serde_json::to_value(pod.metadata.labels.clone().unwrap_or_default())
            .unwrap_or_default();
        let mut out = Vec::new();
        for c in &constraints {
            let Some(sel) = selector(c, pod) else {
                continue;
            };
            let mut counts: BTreeMap<String, i64> = BTreeMap::new();
            // Which nodes' pods count: those the pod could go to by its node affinity
            // (nodeAffinityPolicy Honor, the default) and, under nodeTaintsPolicy Honor,
            // whose taints it tolerates.
            let honor_affinity = c.node_affinity_policy.as_deref() != Some("Ignore");
            let honor_taints = c.node_taints_policy.as_deref() == Some("Honor");
            for node in nodes.iter().filter(|n| {
                (!honor_affinity || NodeAffinity.filter(pod, n, &None) == Verdict::Fits)
                    && (!honor_taints || TaintToleration.filter(pod, n, &None) == Verdict::Fits)
            }) {
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
        let state = PodTopologySpread::default().prepare(&p, &refs, &Cluster::default());
        assert_eq!(
            PodTopologySpread::default().filter(&p, &nodes[0], &state),
            Verdict::Unschedulable(vec![
                "node(s) didn't match pod topology spread constraints".into()
            ])
        );
        assert_eq!(
            PodTopologySpread::default().filter(&p, &nodes[1], &state),
            Verdict::Fits
        );
        let bare = node("x", json!({}));
        assert!(matches!(
            PodTopologySpread::default().filter(&p, &bare, &state),
            Verdict::Unschedulable(_)
        ));
    }

    #[test]
    fn pods_without_constraints_spread_by_their_services() {
        let nodes = [zone_node("a", "z1", 2), zone_node("b", "z2", 0)];
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let mut p = pod(json!({"containers": []}));
        p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        let plugin = PodTopologySpread::default();
        assert!(
            plugin.prepare(&p, &refs, &Cluster::default()).is_none(),
            "nothing selects the pod"
        );
        let mut cluster = Cluster::default();
        cluster.services.insert(
            "default".into(),
            [(
                "web".to_string(),
                [("app".to_string(), "web".to_string())].into(),
            )]
            .into(),
        );
        let state = plugin.prepare(&p, &refs, &cluster);
        assert!(state.is_some());
        // Soft constraints: both nodes fit, the emptier zone and host score better.
        assert_eq!(plugin.filter(&p, &nodes[0], &state), Verdict::Fits);
        let (a, b) = (
            plugin.score(&p, &nodes[0], &state).unwrap(),
            plugin.score(&p, &nodes[1], &state).unwrap(),
        );
        assert!(a > b, "{a} matching pods around a, {b} around b");

        let listed =
            PodTopologySpread::from_args(Some(&json!({"defaultingType": "List"}))).unwrap();
        assert!(listed.prepare(&p, &refs, &cluster).is_none());
        let err = PodTopologySpread::from_args(Some(&json!({"defaultingType": "Sometimes"})))
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("defaultingType: Unsupported value")
        );
    }

    #[test]
    fn node_taints_policy_honor_leaves_tainted_domains_out() {
        let mut tainted = zone_node("a", "z1", 0);
        tainted.node.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            taints: Some(vec![k8s_openapi::api::core::v1::Taint {
                key: "dedicated".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let nodes = [tainted, zone_node("b", "z2", 1)];
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let spec = |policy: &str| {
            let mut p = pod(
                json!({"containers": [], "topologySpreadConstraints": [{"maxSkew": 1,
                "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "nodeTaintsPolicy": policy,
                "labelSelector": {"matchLabels": {"app": "web"}}}]}),
            );
            p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
            p
        };
        let plugin = PodTopologySpread::default();
        // Ignore: the empty tainted zone z1 is the minimum, so z2 (1 pod) would skew by 2.
        let p = spec("Ignore");
        let st = plugin.prepare(&p, &refs, &Cluster::default());
        assert!(matches!(
            plugin.filter(&p, &nodes[1], &st),
            Verdict::Unschedulable(_)
        ));
        // Honor: z1 does not count, z2 alone is the minimum.
        let p = spec("Honor");
        let st = plugin.prepare(&p, &refs, &Cluster::default());
        assert_eq!(plugin.filter(&p, &nodes[1], &st), Verdict::Fits);
    }
}
