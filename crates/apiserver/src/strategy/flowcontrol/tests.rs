use serde_json::json;

use super::*;

fn errors(s: &dyn Strategy, mut obj: Value) -> Vec<String> {
    s.defaults(&mut obj);
    let mut errs = Vec::new();
    s.validate(&obj, &mut errs);
    errs.iter()
        .map(|e| format!("{}: {}", e.field, e.body()))
        .collect()
}

#[test]
fn levels_get_upstreams_defaults() {
    let mut pl = json!({"metadata": {"name": "p"}, "spec": {"type": "Limited", "limited": {
        "limitResponse": {"type": "Queue", "queuing": {}}}}});
    PriorityLevelConfiguration.defaults(&mut pl);
    assert_eq!(pl["spec"]["limited"]["nominalConcurrencyShares"], 30);
    assert_eq!(pl["spec"]["limited"]["lendablePercent"], 0);
    assert_eq!(
        pl["spec"]["limited"]["limitResponse"]["queuing"],
        json!({"handSize": 8, "queues": 64, "queueLengthLimit": 50})
    );
    let mut fs = json!({"metadata": {"name": "f"}, "spec": {}});
    FlowSchema.defaults(&mut fs);
    assert_eq!(fs["spec"]["matchingPrecedence"], 1000);
}

#[test]
fn levels_are_refused_with_upstreams_messages() {
    let bad = json!({"metadata": {"name": "p"}, "spec": {"type": "Limited", "limited": {
        "nominalConcurrencyShares": 0, "lendablePercent": 101,
        "limitResponse": {"type": "Queue", "queuing": {"queues": 4, "handSize": 5}}}}});
    let errs = errors(&PriorityLevelConfiguration, bad);
    for expected in [
        "spec.limited.nominalConcurrencyShares: Invalid value: 0: must be positive",
        "spec.limited.lendablePercent: Invalid value: 101: must be between 0 and 100, inclusive",
        "spec.limited.limitResponse.queuing.handSize: Invalid value: 5: should not be greater than queues (4)",
    ] {
        assert!(errs.iter().any(|e| e == expected), "{expected} in {errs:?}");
    }
    let exempt = json!({"metadata": {"name": "other"}, "spec": {"type": "Exempt"}});
    let errs = errors(&PriorityLevelConfiguration, exempt);
    assert_eq!(
        errs,
        [
            r#"spec.type: Invalid value: "Exempt": type must be 'Exempt' if and only if name is 'exempt'"#
        ]
    );
}

#[test]
fn schemas_are_refused_with_upstreams_messages() {
    let bad = json!({"metadata": {"name": "f"}, "spec": {
        "priorityLevelConfiguration": {"name": ""}, "matchingPrecedence": 1,
        "rules": [{"subjects": [{"kind": "User"}],
                   "resourceRules": [{"verbs": ["get", "*"], "apiGroups": [""], "resources": ["pods"]}],
                   "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/health*"]}]}]}});
    let errs = errors(&FlowSchema, bad);
    for expected in [
        "spec.matchingPrecedence: Invalid value: 1: only the schema named 'exempt' may have matchingPrecedence 1",
        "spec.priorityLevelConfiguration.name: Required value: must reference a priority level",
        "spec.rules[0].subjects[0].user: Required value: user is required when subject kind is 'User'",
        "spec.rules[0].resourceRules[0].namespaces: Required value: resource rules that are not cluster scoped must supply at least one namespace",
        "spec.rules[0].nonResourceRules[0].nonResourceURLs[0]: Invalid value: \"/health*\": wildcard can only do suffix matching",
    ] {
        assert!(errs.iter().any(|e| e == expected), "{expected} in {errs:?}");
    }
    assert!(
        errs.iter()
            .any(|e| e.starts_with("spec.rules[0].resourceRules[0].verbs: Invalid value"))
    );
}

#[test]
fn the_mandatory_objects_keep_their_fixed_specs() {
    let catch_all = crate::flowcontrol::mandatory_schema("catch-all").unwrap();
    let ok = json!({"metadata": {"name": "catch-all"}, "spec": catch_all.clone()});
    assert!(errors(&FlowSchema, ok).is_empty());
    let mut changed = catch_all;
    changed["matchingPrecedence"] = json!(9999);
    let errs = errors(
        &FlowSchema,
        json!({"metadata": {"name": "catch-all"}, "spec": changed}),
    );
    assert!(
        errs.iter()
            .any(|e| e.ends_with("spec of 'catch-all' must equal the fixed value")),
        "{errs:?}"
    );
    let exempt = json!({"metadata": {"name": "exempt"}, "spec": {"type": "Exempt",
        "exempt": {"nominalConcurrencyShares": 10}}});
    assert!(
        errors(&PriorityLevelConfiguration, exempt).is_empty(),
        "the exempt level's shares may change"
    );
}
