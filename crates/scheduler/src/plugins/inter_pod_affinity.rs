//! InterPodAffinity: required pod affinity puts a pod in a topology domain that already runs
//! matching pods; required anti-affinity (its own, and that of the pods already placed) keeps
//! it out of domains that do; preferred terms add or take their weights in the score.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};

use crate::framework::{Cluster, NodeInfo, Normalize, Plugin, PodMatcher, Prepared, Verdict};

/// The InterPodAffinity plugin.
pub struct InterPodAffinity;

/// A term with its selector compiled and the domains holding pods it matches.
struct Term {
    key: String,
    /// Domains (values of `key`) with at least one matching pod, and how many.
    domains: BTreeMap<String, i64>,
    weight: i64,
}

struct State {
    affinity: Vec<Term>,
    /// Whether some pod anywhere matches each required affinity term.
    any_match: Vec<bool>,
    /// The pod matches its own required affinity terms (the first of a group may go anywhere).
    self_match: Vec<bool>,
    anti: Vec<Term>,
    /// Domains (key, value) that existing pods' anti-affinity forbids to this pod.
    forbidden: Vec<(String, String)>,
    preferred: Vec<Term>,
}

/// The term's selector over the namespaces it names or selects (`namespaceSelector`).
fn compile(term: &PodAffinityTerm, pod_ns: &str, cluster: &Cluster) -> Option<PodMatcher> {
    let sel = serde_json::to_value(term.label_selector.as_ref()?).ok()?;
    PodMatcher::new(&sel, cluster.term_namespaces(term, pod_ns))
}

/// The domains of `nodes` holding pods that `term` selects.
fn domains(
    term: &PodAffinityTerm,
    pod_ns: &str,
    nodes: &[&NodeInfo],
    cluster: &Cluster,
    weight: i64,
) -> Term {
    let mut out = Term {
        key: term.topology_key.clone(),
        domains: BTreeMap::new(),
        weight,
    };
    let Some(matcher) = compile(term, pod_ns, cluster) else {
        return out;
    };
    for node in nodes {
        let Some(domain) = node.label(&term.topology_key) else {
            continue;
        };
        let n = matcher.count(node);
        if n > 0 {
            *out.domains.entry(domain.to_string()).or_default() += n;
        }
    }
    out
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn preemption_helps(&self) -> bool {
        true
    }

    fn prepare(&self, pod: &Pod, nodes: &[&NodeInfo], cluster: &Cluster) -> Prepared {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let own = serde_json::to_value(pod.metadata.labels.clone().unwrap_or_default())
            .unwrap_or_default();
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let required = |terms: Option<&Vec<PodAffinityTerm>>| terms.cloned().unwrap_or_default();
        let aff_terms = required(
            affinity
                .and_then(|a| a.pod_affinity.as_ref())
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
        );
        let anti_terms = required(
            affinity
                .and_then(|a| a.pod_anti_affinity.as_ref())
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
        );
        let mut preferred = Vec::new();
        for (sign, weighted) in [
            (
                1,
                affinity
                    .and_then(|a| a.pod_affinity.as_ref())
                    .and_then(|a| {
                        a.preferred_during_scheduling_ignored_during_execution
                            .as_ref()
                    }),
            ),
            (
                -1,
                affinity
                    .and_then(|a| a.pod_anti_affinity.as_ref())
                    .and_then(|a| {
                        a.preferred_during_scheduling_ignored_during_execution
                            .as_ref()
                    }),
            ),
        ] {
            for w in weighted.into_iter().flatten() {
                preferred.push(domains(
                    &w.pod_affinity_term,
                    &ns,
                    nodes,
                    cluster,
                    sign * i64::from(w.weight),
                ));
            }
        }
        // Existing pods whose required anti-affinity selects this pod forbid their domains.
        let mut forbidden = Vec::new();
        for node in nodes.iter().filter(|n| n.anti_affinity_pods > 0) {
            for p in &node.pods {
                for term in &p.anti_affinity {
                    let Some(matcher) = compile(term, &p.namespace, cluster) else {
                        continue;
                    };
                    if matcher.matches(&ns, &own)
                        && let Some(d) = node.label(&term.topology_key)
                    {
                        forbidden.push((term.topology_key.clone(), d.to_string()));
                    }
                }
            }
        }
        if aff_terms.is_empty()
            && anti_terms.is_empty()
            && preferred.is_empty()
            && forbidden.is_empty()
        {
            return None;
        }
        let affinity: Vec<Term> = aff_terms
            .iter()
            .map(|t| domains(t, &ns, nodes, cluster, 0))
            .collect();
        let any_match = affinity.iter().map(|t| !t.domains.is_empty()).collect();
        let self_match = aff_terms
            .iter()
            .map(|t| compile(t, &ns, cluster).is_some_and(|m| m.matches(&ns, &own)))
            .collect();
        Some(Box::new(State {
            affinity,
            any_match,
            self_match,
            anti: anti_terms
                .iter()
                .map(|t| domains(t, &ns, nodes, cluster, 0))
                .collect(),
            forbidden,
            preferred,
        }))
    }

    fn filter(&self, _pod: &Pod, node: &NodeInfo, prepared: &Prepared) -> Verdict {
        let Some(st) = prepared.as_ref().and_then(|p| p.downcast_ref::<State>()) else {
            return Verdict::Fits;
        };
        let domain = |key: &str| node.label(key).map(str::to_string);
        let affinity_ok = st.affinity.iter().enumerate().all(|(i, t)| {
            let here = domain(&t.key).is_some_and(|d| t.domains.contains_key(&d));
            // The first pod of a group that selects itself may start anywhere.
            here || (!st.any_match.iter().any(|m| *m)
                && st.self_match[i]
                && domain(&t.key).is_some())
        });
        if !affinity_ok {
            return Verdict::Unschedulable(vec!["node(s) didn't match pod affinity rules".into()]);
        }
        if st
            .anti
            .iter()
            .any(|t| domain(&t.key).is_some_and(|d| t.domains.contains_key(&d)))
        {
            return Verdict::Unschedulable(vec![
                "node(s) didn't match pod anti-affinity rules".into(),
            ]);
        }
        if st
            .forbidden
            .iter()
            .any(|(k, v)| domain(k).as_ref() == Some(v))
        {
            return Verdict::Unschedulable(vec![
                "node(s) didn't satisfy existing pods anti-affinity rules".into(),
            ]);
        }
        Verdict::Fits
    }

    fn score(&self, _pod: &Pod, node: &NodeInfo, prepared: &Prepared) -> Option<i64> {
        let Some(st) = prepared.as_ref().and_then(|p| p.downcast_ref::<State>()) else {
            return Some(0);
        };
        Some(
            st.preferred
                .iter()
                .map(|t| {
                    node.label(&t.key)
                        .and_then(|d| t.domains.get(d))
                        .map_or(0, |n| n * t.weight)
                })
                .sum(),
        )
    }

    fn weight(&self) -> i64 {
        2
    }

    fn normalize(&self) -> Normalize {
        Normalize::MinMax
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, placed, pod};
    use serde_json::json;

    fn with_web(name: &str, web: bool) -> NodeInfo {
        let mut n = node(name, json!({}));
        if web {
            n.add_pod(placed(&format!("{name}-x"), "web"));
        }
        n
    }

    #[test]
    fn anti_affinity_spreads_and_affinity_gathers() {
        let nodes = [with_web("a", true), with_web("b", false)];
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let term = json!([{"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]);
        let anti = pod(json!({"containers": [], "affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": term}}}));
        let st = InterPodAffinity.prepare(&anti, &refs, &Cluster::default());
        assert_eq!(
            InterPodAffinity.filter(&anti, &nodes[0], &st),
            Verdict::Unschedulable(vec!["node(s) didn't match pod anti-affinity rules".into()])
        );
        assert_eq!(
            InterPodAffinity.filter(&anti, &nodes[1], &st),
            Verdict::Fits
        );
        let near = pod(json!({"containers": [], "affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": term}}}));
        let st = InterPodAffinity.prepare(&near, &refs, &Cluster::default());
        assert_eq!(
            InterPodAffinity.filter(&near, &nodes[0], &st),
            Verdict::Fits
        );
        assert_eq!(
            InterPodAffinity.filter(&near, &nodes[1], &st),
            Verdict::Unschedulable(vec!["node(s) didn't match pod affinity rules".into()])
        );
    }

    #[test]
    fn namespace_selectors_reach_other_namespaces() {
        let mut a = node("a", json!({}));
        let mut other = placed("a-x", "web");
        other.namespace = "team-a".into();
        a.add_pod(other);
        let nodes = [a, node("b", json!({}))];
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let anti = |ns_selector: serde_json::Value| {
            pod(json!({"containers": [], "affinity": {"podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": {"app": "web"}},
                    "namespaceSelector": ns_selector,
                    "topologyKey": "kubernetes.io/hostname"}]}}}))
        };
        let mut cluster = Cluster::default();
        cluster
            .namespaces
            .insert("team-a".into(), json!({"team": "a"}));
        cluster.namespaces.insert("default".into(), json!({}));
        for (selector, refused) in [
            (json!({"matchLabels": {"team": "a"}}), true),
            (json!({}), true),
            (json!({"matchLabels": {"team": "b"}}), false),
        ] {
            let p = anti(selector.clone());
            let st = InterPodAffinity.prepare(&p, &refs, &cluster);
            assert_eq!(
                InterPodAffinity.filter(&p, &nodes[0], &st) != Verdict::Fits,
                refused,
                "{selector}"
            );
        }
    }
}
