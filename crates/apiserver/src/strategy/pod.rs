//! Pods: the pod spec's defaults and checks, the status a create starts with (phase and QoS
//! class), what an update may change, and the `binding` and `ephemeralcontainers`
//! subresources (upstream's `pkg/registry/core/pod/strategy.go`).

use api::validation::FieldError;
use serde_json::{Value, json};

use super::{Strategy, ephemeral, keep_metadata, podspec, set_default};
use crate::object::{now, set_pointer};

/// The pod strategy.
pub(super) struct Pod;

impl Strategy for Pod {
    fn defaults(&self, obj: &mut Value) {
        set_default(obj, "spec", json!({}));
        podspec::default_pod_spec(&mut obj["spec"]);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let qos = qos_class(&obj["spec"]);
        set_default(obj, "status", json!({}));
        set_default(&mut obj["status"], "phase", json!("Pending"));
        set_default(&mut obj["status"], "qosClass", json!(qos));
    }

    fn prepare_for_update(&self, old: &Value, new: &mut Value, sub: Option<&str>) {
        match sub {
            // Ephemeral containers are only the subresource's to write.
            None => set_pointer(
                new,
                "/spec/ephemeralContainers",
                old.pointer("/spec/ephemeralContainers").cloned(),
            ),
            Some("binding") => scheduled(new),
            // Old kubelets corrupted owner references through pods/status (upstream).
            Some("status") => keep_metadata(old, new, &["ownerReferences"]),
            Some("ephemeralcontainers") => {
                podspec::default_containers(&mut new["spec"], &["ephemeralContainers"])
            }
            _ => {}
        }
    }

    /// A pod bound to a node waits for its kubelet to stop it: the requested grace period,
    /// else its own `terminationGracePeriodSeconds`, else 30 seconds.
    fn deletion_grace(&self, obj: &Value, requested: Option<i64>) -> i64 {
        if obj["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
        {
            requested
                .or(obj["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30)
        } else {
            0
        }
    }

    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        podspec::pod_spec_errors(&obj["spec"], "spec", errs);
    }

    fn validate_update(
        &self,
        old: &Value,
        new: &Value,
        _sub: Option<&str>,
        errs: &mut Vec<FieldError>,
    ) {
        // Only images, tolerations (additions) and activeDeadlineSeconds may change;
        // ephemeral containers have rules of their own.
        errs.extend(ephemeral::validate_update(old, new));
        if mutable_parts_removed(&old["spec"]) != mutable_parts_removed(&new["spec"]) {
            errs.push(FieldError::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            ));
        }
    }
}

/// A pod spec without the fields an update may change.
fn mutable_parts_removed(spec: &Value) -> Value {
    let mut s = spec.clone();
    for list in ["containers", "initContainers"] {
        for c in s
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            c.as_object_mut().map(|m| m.remove("image"));
        }
    }
    if let Some(m) = s.as_object_mut() {
        m.remove("tolerations");
        m.remove("activeDeadlineSeconds");
        m.remove("ephemeralContainers");
    }
    s
}

/// As upstream's binding: the pod is scheduled.
fn scheduled(pod: &mut Value) {
    let scheduled = json!({"type": "PodScheduled", "status": "True",
        "lastProbeTime": null, "lastTransitionTime": now()});
    let mut conditions: Vec<Value> = pod["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] != "PodScheduled")
        .collect();
    conditions.push(scheduled);
    pod["status"]["conditions"] = json!(conditions);
}

/// upstream's QoS class from container requests and limits.
fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let has = |c: &Value, k: &str| c["resources"][k].as_object().is_some_and(|m| !m.is_empty());
    if containers
        .iter()
        .all(|c| !has(c, "requests") && !has(c, "limits"))
    {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        let limits = &c["resources"]["limits"];
        let requests = &c["resources"]["requests"];
        ["cpu", "memory"]
            .iter()
            .all(|k| !limits[k].is_null() && (requests[k].is_null() || requests[k] == limits[k]))
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_write_keeps_the_owner_references() {
        let old = json!({"metadata": {"name": "p", "ownerReferences": [{"name": "rs"}]}});
        let mut new = json!({"metadata": {"name": "p", "labels": {"a": "1"},
            "ownerReferences": [{"name": "other"}]}});
        Pod.prepare_for_update(&old, &mut new, Some("status"));
        assert_eq!(new["metadata"]["ownerReferences"], json!([{"name": "rs"}]));
        assert_eq!(new["metadata"]["labels"], json!({"a": "1"}));
    }
}
