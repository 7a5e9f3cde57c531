//! Workloads that run pods from a template: Deployments, ReplicaSets, StatefulSets,
//! DaemonSets, ReplicationControllers and PodTemplates, and the HorizontalPodAutoscaler that
//! scales them. Jobs and CronJobs are in `batch.rs`.

use api::selector::LabelSelector;
use api::validation::FieldError;
use serde_json::{Value, json};

use super::defaults::{Plain, set_absent};
use super::{Strategy, immutable, keep_metadata, podspec, set_default};

/// Deployments, ReplicaSets, StatefulSets and DaemonSets: defaults of their own, then the same
/// checks (selector, replicas, pod template) and the same immutable selector; the second field
/// names the metadata a status write may not change (a Deployment's labels, upstream).
pub(super) struct Apps(fn(&mut Value), &'static [&'static str]);

/// Deployments.
pub(super) static DEPLOYMENTS: Apps = Apps(deployment_defaults, &["labels"]);
/// ReplicaSets.
pub(super) static REPLICA_SETS: Apps = Apps(replica_set_defaults, &[]);
/// StatefulSets.
pub(super) static STATEFUL_SETS: Apps = Apps(stateful_set_defaults, &[]);
/// DaemonSets.
pub(super) static DAEMON_SETS: Apps = Apps(daemon_set_defaults, &[]);

impl Strategy for Apps {
    fn defaults(&self, obj: &mut Value) {
        (self.0)(obj);
    }

    fn prepare_for_update(&self, old: &Value, new: &mut Value, sub: Option<&str>) {
        if sub == Some("status") {
            keep_metadata(old, new, self.1);
        }
    }

    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        selector_errors(obj, errs);
        if let Some(replicas) = obj["spec"]
            .get("replicas")
            .and_then(Value::as_i64)
            .filter(|n| *n < 0)
        {
            errs.push(FieldError::invalid(
                "spec.replicas",
                &json!(replicas),
                "must be greater than or equal to 0",
            ));
        }
        podspec::pod_spec_errors(&obj["spec"]["template"]["spec"], "spec.template.spec", errs);
    }

    fn validate_update(
        &self,
        old: &Value,
        new: &Value,
        _sub: Option<&str>,
        errs: &mut Vec<FieldError>,
    ) {
        immutable(old, new, "/spec/selector", errs);
    }
}

fn deployment_defaults(obj: &mut Value) {
    set_default(obj, "spec", json!({}));
    let spec = &mut obj["spec"];
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    set_default(
        spec,
        "strategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
    );
    if let Some(t) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        podspec::default_pod_spec(t);
    }
}

fn replica_set_defaults(obj: &mut Value) {
    set_absent(obj, vec![("/spec/replicas", json!(1))]);
    template_defaults(obj);
}

fn stateful_set_defaults(obj: &mut Value) {
    set_absent(
        obj,
        vec![
            ("/spec/replicas", json!(1)),
            ("/spec/podManagementPolicy", json!("OrderedReady")),
            (
                "/spec/updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            ),
            ("/spec/revisionHistoryLimit", json!(10)),
            (
                "/spec/persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            ),
        ],
    );
    template_defaults(obj);
}

fn daemon_set_defaults(obj: &mut Value) {
    set_absent(
        obj,
        vec![
            (
                "/spec/updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            ),
            ("/spec/revisionHistoryLimit", json!(10)),
        ],
    );
    template_defaults(obj);
}

/// ReplicationControllers: one replica, the selector taken from the template, no checks
/// beyond metadata.
pub(super) struct ReplicationController;

impl Strategy for ReplicationController {
    fn defaults(&self, obj: &mut Value) {
        set_absent(obj, vec![("/spec/replicas", json!(1))]);
        rc_selector(obj);
        template_defaults(obj);
    }
}

/// PodTemplates: the pod spec's defaults.
pub(super) struct PodTemplate;

impl Strategy for PodTemplate {
    fn defaults(&self, obj: &mut Value) {
        template_defaults(obj);
    }
}

/// HorizontalPodAutoscalers: at least one replica, 80% CPU.
pub(super) static HORIZONTAL_POD_AUTOSCALERS: Plain = Plain(|| {
    vec![
        ("/spec/minReplicas", json!(1)),
        (
            "/spec/metrics",
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        ),
    ]
});

/// The pod spec's defaults in a pod template, a workload's (`spec.template`) or a
/// PodTemplate's own (`template`).
pub(super) fn template_defaults(obj: &mut Value) {
    let path = if obj.pointer("/spec/template/spec").is_some() {
        "/spec/template/spec"
    } else {
        "/template/spec"
    };
    if let Some(t) = obj.pointer_mut(path) {
        podspec::default_pod_spec(t);
    }
}

/// A ReplicationController without a selector selects its template's labels, and takes them
/// as its own labels when it has none (upstream's `SetDefaults_ReplicationController`).
fn rc_selector(obj: &mut Value) {
    let labels = obj.pointer("/spec/template/metadata/labels").cloned();
    let Some(labels) = labels.filter(|l| l.as_object().is_some_and(|m| !m.is_empty())) else {
        return;
    };
    let empty = |v: Option<&Value>| v.and_then(Value::as_object).is_none_or(|m| m.is_empty());
    if empty(obj.pointer("/spec/selector")) {
        obj["spec"]["selector"] = labels.clone();
    }
    if empty(obj.pointer("/metadata/labels")) && obj["metadata"].is_object() {
        obj["metadata"]["labels"] = labels;
    }
}

/// Checks a workload's selector against its pod template's labels.
fn selector_errors(kind_path: &Value, errs: &mut Vec<FieldError>) {
    let spec = &kind_path["spec"];
    let Some(selector) = spec.get("selector") else {
        errs.push(FieldError::required("spec.selector", ""));
        return;
    };
    let labels = &spec["template"]["metadata"]["labels"];
    match LabelSelector::from_object(selector) {
        Ok(sel) if sel.is_empty() => errs.push(FieldError::invalid(
            "spec.selector",
            selector,
            "empty selector is invalid for deployment",
        )),
        Ok(sel) if !sel.matches(Some(labels)) => errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            labels,
            "`selector` does not match template `labels`",
        )),
        Ok(_) => {}
        Err(e) => errs.push(FieldError::invalid("spec.selector", selector, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_status_write_keeps_its_labels_but_a_replica_set_does_not() {
        let old = json!({"metadata": {"name": "d", "labels": {"a": "1"}}});
        let new = json!({"metadata": {"name": "d", "labels": {"b": "2"},
            "annotations": {"c": "3"}}});
        let mut deployment = new.clone();
        DEPLOYMENTS.prepare_for_update(&old, &mut deployment, Some("status"));
        assert_eq!(deployment["metadata"]["labels"], json!({"a": "1"}));
        assert_eq!(deployment["metadata"]["annotations"], json!({"c": "3"}));
        let mut replica_set = new.clone();
        REPLICA_SETS.prepare_for_update(&old, &mut replica_set, Some("status"));
        assert_eq!(replica_set, new);
    }
}
