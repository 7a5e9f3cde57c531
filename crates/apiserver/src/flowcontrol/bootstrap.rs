//! Upstream's bootstrap configuration of API Priority and Fairness (v1.33): the mandatory
//! `exempt` and `catch-all` objects and the suggested ones, each with
//! `apf.kubernetes.io/autoupdate-spec: "true"`.

use serde_json::{Value, json};

/// The annotation that lets the server keep an object's spec as it ships it.
pub(crate) const AUTOUPDATE: &str = "apf.kubernetes.io/autoupdate-spec";

/// The priority levels, mandatory first, then the suggested ones.
pub(crate) fn priority_levels() -> Vec<(Value, bool)> {
    let mut levels = vec![
        (
            level(
                "exempt",
                json!({"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}}),
            ),
            true,
        ),
        (
            level(
                "catch-all",
                json!({"type": "Limited", "limited": {"nominalConcurrencyShares": 5, "lendablePercent": 0,
                    "limitResponse": {"type": "Reject"}}}),
            ),
            true,
        ),
    ];
    for (name, shares, lendable, queues, hand_size) in [
        ("system", 30, 33, 64, 6),
        ("node-high", 40, 25, 64, 6),
        ("leader-election", 10, 0, 16, 4),
        ("workload-high", 40, 50, 128, 6),
        ("workload-low", 100, 90, 128, 6),
        ("global-default", 20, 50, 128, 6),
    ] {
        let spec = json!({"type": "Limited", "limited": {
            "nominalConcurrencyShares": shares, "lendablePercent": lendable,
            "limitResponse": {"type": "Queue", "queuing": {
                "queues": queues, "handSize": hand_size, "queueLengthLimit": 50}}}});
        levels.push((level(name, spec), false));
    }
    levels
}

/// The flow schemas, mandatory first, then the suggested ones.
pub(crate) fn flow_schemas() -> Vec<(Value, bool)> {
    let everyone = [
        group("system:unauthenticated"),
        group("system:authenticated"),
    ];
    let all = |subjects: &[Value]| everything(subjects);
    let leases = |verbs: &[&str]| {
        json!({"verbs": verbs, "apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
               "namespaces": ["*"], "clusterScope": false})
    };
    let controller_manager = user("system:kube-controller-manager");
    let scheduler = user("system:kube-scheduler");
    let kube_system_accounts = json!({"kind": "ServiceAccount", "serviceAccount": {"namespace": "kube-system", "name": "*"}});
    let mut leader_subjects = vec![controller_manager.clone(), scheduler.clone()];
    leader_subjects.push(kube_system_accounts.clone());
    vec![
        (
            schema(
                "exempt",
                "exempt",
                1,
                None,
                vec![all(&[group("system:masters")])],
            ),
            true,
        ),
        (
            schema(
                "catch-all",
                "catch-all",
                10000,
                Some("ByUser"),
                vec![all(&everyone)],
            ),
            true,
        ),
        (
            schema(
                "system-nodes",
                "system",
                500,
                Some("ByUser"),
                vec![all(&[group("system:nodes")])],
            ),
            false,
        ),
        (
            schema(
                "system-node-high",
                "node-high",
                400,
                Some("ByUser"),
                vec![json!({
                "subjects": [group("system:nodes")],
                "resourceRules": [
                    {"verbs": ["*"], "apiGroups": [""], "resources": ["nodes", "nodes/status"],
                     "namespaces": ["*"], "clusterScope": true},
                    leases(&["*"]),
                ]})],
            ),
            false,
        ),
        (
            schema(
                "probes",
                "exempt",
                2,
                None,
                vec![json!({
                "subjects": everyone,
                "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/readyz", "/livez"]}]})],
            ),
            false,
        ),
        (
            schema(
                "system-leader-election",
                "leader-election",
                100,
                Some("ByUser"),
                vec![json!({
                "subjects": leader_subjects,
                "resourceRules": [leases(&["get", "create", "update"])]})],
            ),
            false,
        ),
        (
            schema(
                "kube-controller-manager",
                "workload-high",
                800,
                Some("ByNamespace"),
                vec![all(&[controller_manager])],
            ),
            false,
        ),
        (
            schema(
                "kube-scheduler",
                "workload-high",
                800,
                Some("ByNamespace"),
                vec![all(&[scheduler])],
            ),
            false,
        ),
        (
            schema(
                "kube-system-service-accounts",
                "workload-high",
                900,
                Some("ByNamespace"),
                vec![all(&[kube_system_accounts])],
            ),
            false,
        ),
        (
            schema(
                "service-accounts",
                "workload-low",
                9000,
                Some("ByUser"),
                vec![all(&[group("system:serviceaccounts")])],
            ),
            false,
        ),
        (
            schema(
                "global-default",
                "global-default",
                9900,
                Some("ByUser"),
                vec![all(&everyone)],
            ),
            false,
        ),
    ]
}

fn metadata(name: &str) -> Value {
    json!({"name": name, "annotations": {AUTOUPDATE: "true"}})
}

fn level(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
           "metadata": metadata(name), "spec": spec})
}

fn schema(name: &str, level: &str, precedence: i32, by: Option<&str>, rules: Vec<Value>) -> Value {
    let mut spec = json!({"priorityLevelConfiguration": {"name": level},
                          "matchingPrecedence": precedence, "rules": rules});
    if let Some(by) = by {
        spec["distinguisherMethod"] = json!({"type": by});
    }
    json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
           "metadata": metadata(name), "spec": spec})
}

/// A rule for every verb on every resource (cluster-wide too) and every path.
fn everything(subjects: &[Value]) -> Value {
    json!({"subjects": subjects,
           "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                              "namespaces": ["*"], "clusterScope": true}],
           "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]})
}

fn group(name: &str) -> Value {
    json!({"kind": "Group", "group": {"name": name}})
}

fn user(name: &str) -> Value {
    json!({"kind": "User", "user": {"name": name}})
}
