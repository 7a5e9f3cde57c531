//! Node selectors: a pod's `nodeSelector` and node affinity terms against a node's labels
//! and name, as upstream's `component-helpers/scheduling/corev1/nodeaffinity`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PodSpec};

/// Whether requirement `r` holds for `value`, the node's label (or field) under `r.key` if
/// it has one. `Gt` and `Lt` compare integers; an unparsable side or an unknown operator
/// never holds.
pub fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => compare(&r.operator, value, values.first()),
        _ => false,
    }
}

/// `Gt` or `Lt` of the node's value against the requirement's single bound, as integers.
fn compare(operator: &str, value: Option<&str>, bound: Option<&String>) -> bool {
    let number = |s: &str| s.parse::<i64>().ok();
    let (Some(have), Some(bound)) = (value.and_then(number), bound.and_then(|b| number(b))) else {
        return false;
    };
    if operator == "Gt" {
        have > bound
    } else {
        have < bound
    }
}

/// Whether one term matches a node with `labels` named `name`: all its expressions on the
/// labels and its fields on `metadata.name` (the only field). A term with neither matches
/// nothing, as upstream.
pub fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    name: &str,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(name)))
}

/// Whether a pod with `spec` may run on a node with `labels` named `name`: every
/// `nodeSelector` entry is among the labels, and one of the required node affinity terms (if
/// any) matches (upstream's `GetRequiredNodeAffinity(pod).Match(node)`).
pub fn required_node_affinity_matches(
    spec: &PodSpec,
    labels: &BTreeMap<String, String>,
    name: &str,
) -> bool {
    let selector_ok = spec
        .node_selector
        .as_ref()
        .is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selector_ok
        && required.is_none_or(|r| {
            r.node_selector_terms
                .iter()
                .any(|t| term_matches(t, labels, name))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn labels() -> BTreeMap<String, String> {
        [("disk", "ssd"), ("gen", "5")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into()
    }

    fn req(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn spec(v: Value) -> PodSpec {
        let mut v = v;
        v["containers"] = json!([]);
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn requirements_follow_their_operator() {
        let ssd = Some("ssd");
        assert!(requirement_matches(
            &req("disk", "In", &["ssd", "nvme"]),
            ssd
        ));
        assert!(!requirement_matches(&req("disk", "In", &["hdd"]), ssd));
        assert!(!requirement_matches(&req("disk", "In", &["ssd"]), None));
        assert!(requirement_matches(&req("disk", "NotIn", &["hdd"]), ssd));
        assert!(requirement_matches(&req("disk", "NotIn", &["hdd"]), None));
        assert!(requirement_matches(&req("disk", "Exists", &[]), ssd));
        assert!(!requirement_matches(&req("disk", "Exists", &[]), None));
        assert!(requirement_matches(&req("disk", "DoesNotExist", &[]), None));
        assert!(!requirement_matches(&req("disk", "Bogus", &["ssd"]), ssd));
    }

    #[test]
    fn gt_and_lt_compare_integers() {
        assert!(requirement_matches(&req("gen", "Gt", &["4"]), Some("5")));
        assert!(!requirement_matches(&req("gen", "Gt", &["5"]), Some("5")));
        assert!(requirement_matches(&req("gen", "Lt", &["6"]), Some("5")));
        assert!(!requirement_matches(&req("gen", "Lt", &["x"]), Some("5")));
        assert!(!requirement_matches(
            &req("gen", "Gt", &["4"]),
            Some("five")
        ));
        assert!(!requirement_matches(&req("gen", "Gt", &[]), Some("5")));
        assert!(!requirement_matches(&req("gen", "Gt", &["4"]), None));
    }

    #[test]
    fn terms_need_all_their_requirements_and_match_fields_on_the_name() {
        let term = |exprs: Vec<_>, fields: Vec<_>| NodeSelectorTerm {
            match_expressions: Some(exprs),
            match_fields: Some(fields),
        };
        let l = labels();
        let both = term(
            vec![req("disk", "In", &["ssd"]), req("gen", "Gt", &["4"])],
            vec![],
        );
        assert!(term_matches(&both, &l, "a"));
        let one_fails = term(
            vec![req("disk", "In", &["ssd"]), req("gen", "Gt", &["5"])],
            vec![],
        );
        assert!(!term_matches(&one_fails, &l, "a"));
        let by_name = term(vec![], vec![req("metadata.name", "In", &["a"])]);
        assert!(term_matches(&by_name, &l, "a") && !term_matches(&by_name, &l, "b"));
        let other_field = term(vec![], vec![req("spec.unschedulable", "In", &["a"])]);
        assert!(!term_matches(&other_field, &l, "a"));
        assert!(!term_matches(&term(vec![], vec![]), &l, "a"));
        assert!(!term_matches(&NodeSelectorTerm::default(), &l, "a"));
    }

    #[test]
    fn the_node_selector_and_one_required_term_must_match() {
        let l = labels();
        assert!(required_node_affinity_matches(&spec(json!({})), &l, "a"));
        let sel = |disk: &str| spec(json!({"nodeSelector": {"disk": disk}}));
        assert!(required_node_affinity_matches(&sel("ssd"), &l, "a"));
        assert!(!required_node_affinity_matches(&sel("hdd"), &l, "a"));
        let affinity = spec(
            json!({"nodeSelector": {"disk": "ssd"}, "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["7"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}}),
        );
        assert!(required_node_affinity_matches(&affinity, &l, "b"));
        assert!(!required_node_affinity_matches(&affinity, &l, "a"));
        let none = spec(json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}}));
        assert!(!required_node_affinity_matches(&none, &l, "a"));
    }
}
