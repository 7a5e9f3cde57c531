//! Ephemeral containers (`pods/ephemeralcontainers`, what `kubectl debug` adds): they may be
//! added to a pod, never changed or removed, and only through that subresource.

use api::validation::FieldError;
use serde_json::{Value, json};

fn list(spec: &Value, key: &str) -> Vec<Value> {
    spec[key].as_array().cloned().unwrap_or_default()
}

/// Checks the pod's ephemeral containers against the old pod's.
pub(super) fn validate_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (before, after) = (
        list(&old["spec"], "ephemeralContainers"),
        list(&new["spec"], "ephemeralContainers"),
    );
    for o in &before {
        let name = o["name"].as_str().unwrap_or("");
        match after.iter().find(|n| n["name"] == o["name"]) {
            None => errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers {name:?} may not be removed\n"),
            )),
            Some(n) if n != o => errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers {name:?} may not be changed\n"),
            )),
            Some(_) => {}
        }
    }
    let regular: Vec<Value> = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| list(&new["spec"], k))
        .collect();
    let mut names: Vec<&Value> = regular.iter().map(|c| &c["name"]).collect();
    for (i, c) in after.iter().enumerate() {
        let path = format!("spec.ephemeralContainers[{i}]");
        if c["name"].as_str().is_none_or(str::is_empty) {
            errs.push(FieldError::required(format!("{path}.name"), ""));
        } else if names.contains(&&c["name"]) {
            errs.push(FieldError::duplicate(format!("{path}.name"), &c["name"]));
        }
        names.push(&c["name"]);
        if c["image"].as_str().is_none_or(str::is_empty) {
            errs.push(FieldError::required(format!("{path}.image"), ""));
        }
        if let Some(target) = c["targetContainerName"].as_str()
            && !regular.iter().any(|r| r["name"] == target)
        {
            errs.push(FieldError::invalid(
                format!("{path}.targetContainerName"),
                &json!(target),
                "must be the name of a container in the pod",
            ));
        }
        for field in [
            "ports",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "lifecycle",
        ] {
            if c.get(field).is_some() {
                errs.push(FieldError::forbidden(
                    format!("{path}.{field}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_containers_are_added_never_changed_or_removed() {
        let pod = |eph: Value| json!({"spec": {"containers": [{"name": "app", "image": "nginx"}], "ephemeralContainers": eph}});
        let none = pod(json!([]));
        let one = pod(json!([{"name": "debug", "image": "busybox", "targetContainerName": "app"}]));
        assert!(validate_update(&none, &one).is_empty());
        let text = |e: Vec<FieldError>| e.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            text(validate_update(&one, &none)),
            [
                "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"debug\" may not be removed\n"
            ]
        );
        let changed =
            pod(json!([{"name": "debug", "image": "alpine", "targetContainerName": "app"}]));
        assert_eq!(validate_update(&one, &changed).len(), 1);
        let clash =
            pod(json!([{"name": "app", "image": "busybox", "ports": [{"containerPort": 1}]}]));
        assert_eq!(
            text(validate_update(&none, &clash)),
            [
                "spec.ephemeralContainers[0].name: Duplicate value: \"app\"",
                "spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral Container"
            ]
        );
    }
}
