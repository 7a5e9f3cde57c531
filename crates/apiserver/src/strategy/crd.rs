//! CustomResourceDefinitions: the names' defaults, the checks upstream's apiextensions
//! validation makes of names, scope and versions, and deletion held until the definition's
//! custom resources are gone (the `customresourcecleanup.apiextensions.k8s.io` finalizer
//! and the `Terminating` condition, as upstream's definition storage adds on delete).

use api::validation::FieldError;
use serde_json::{Value, json};

use super::defaults::set_absent;
use super::{Strategy, keep_metadata};

/// The finalizer that holds a definition until its custom resources are deleted.
pub(crate) const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// The CustomResourceDefinition strategy.
pub(super) struct CustomResourceDefinition;

impl Strategy for CustomResourceDefinition {
    fn defaults(&self, obj: &mut Value) {
        let kind = obj.pointer("/spec/names/kind").and_then(Value::as_str);
        let kind = kind.unwrap_or_default().to_string();
        if !kind.is_empty() {
            set_absent(
                obj,
                vec![
                    ("/spec/names/singular", json!(kind.to_lowercase())),
                    ("/spec/names/listKind", json!(format!("{kind}List"))),
                ],
            );
        }
        set_absent(obj, vec![("/spec/conversion/strategy", json!("None"))]);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({});
    }

    /// A status write changes the status only, as upstream's definition status strategy.
    fn prepare_for_update(&self, old: &Value, new: &mut Value, sub: Option<&str>) {
        if sub == Some("status") {
            keep_metadata(old, new, &["labels", "annotations", "ownerReferences"]);
        }
    }

    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        let spec = &obj["spec"];
        let group = spec["group"].as_str().unwrap_or_default();
        let plural = spec["names"]["plural"].as_str().unwrap_or_default();
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        if name != format!("{plural}.{group}") {
            errs.push(FieldError::invalid(
                "metadata.name",
                &json!(name),
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
        if group.is_empty() {
            errs.push(FieldError::required("spec.group", ""));
        } else if !group.contains('.') {
            errs.push(FieldError::invalid(
                "spec.group",
                &json!(group),
                "should be a domain with at least one dot",
            ));
        }
        match spec["scope"].as_str() {
            None | Some("") => errs.push(FieldError::required("spec.scope", "")),
            Some("Cluster" | "Namespaced") => {}
            Some(other) => errs.push(FieldError::not_supported(
                "spec.scope",
                &json!(other),
                &["Cluster", "Namespaced"],
            )),
        }
        names(&spec["names"], errs);
        versions(spec, errs);
    }

    /// A definition about to go waits, `Terminating`, until its custom resources are
    /// deleted and the cleanup finalizer is removed.
    fn holds_deletion(&self, obj: &Value) -> bool {
        obj["metadata"].get("deletionTimestamp").is_none() || has_cleanup_finalizer(obj)
    }

    fn mark_deleting(&self, obj: &mut Value) {
        if !has_cleanup_finalizer(obj) {
            let meta = &mut obj["metadata"];
            if !meta["finalizers"].is_array() {
                meta["finalizers"] = json!([]);
            }
            if let Some(f) = meta["finalizers"].as_array_mut() {
                f.push(json!(CLEANUP_FINALIZER));
            }
        }
        set_condition(
            obj,
            "Terminating",
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
        );
    }
}

/// Whether the definition still carries the cleanup finalizer.
pub(crate) fn has_cleanup_finalizer(obj: &Value) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|v| v == CLEANUP_FINALIZER))
}

/// Sets condition `kind` to `True` with `reason` and `message`, keeping its transition time
/// when it was already true.
pub(crate) fn set_condition(obj: &mut Value, kind: &str, reason: &str, message: &str) {
    if !obj["status"]["conditions"].is_array() {
        obj["status"]["conditions"] = json!([]);
    }
    let conditions = obj["status"]["conditions"]
        .as_array_mut()
        .expect("just made a list");
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let old = conditions.iter().position(|c| c["type"] == kind);
    let since = old
        .map(|i| &conditions[i])
        .filter(|c| c["status"] == "True")
        .map_or(json!(now), |c| c["lastTransitionTime"].clone());
    let new = json!({"type": kind, "status": "True", "lastTransitionTime": since, "reason": reason, "message": message});
    match old {
        Some(i) => conditions[i] = new,
        None => conditions.push(new),
    }
}

/// `spec.names`: the plural, singular and kind a definition must have.
fn names(names: &Value, errs: &mut Vec<FieldError>) {
    for (field, label) in [("plural", true), ("singular", true), ("kind", false)] {
        let value = names[field].as_str().unwrap_or_default();
        let path = format!("spec.names.{field}");
        if value.is_empty() {
            if field != "singular" {
                errs.push(FieldError::required(path, ""));
            }
            continue;
        }
        if label {
            for msg in api::validation::dns1035_label(value) {
                errs.push(FieldError::invalid(&path, &json!(value), msg));
            }
        }
    }
}

/// `spec.versions`: at least one, unique names, exactly one stored, each with a schema.
fn versions(spec: &Value, errs: &mut Vec<FieldError>) {
    let versions = spec["versions"].as_array().map_or(&[][..], Vec::as_slice);
    if versions.is_empty() {
        errs.push(FieldError::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
        return;
    }
    let stored = versions.iter().filter(|v| v["storage"] == true).count();
    if stored != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            &spec["versions"],
            "must have exactly one version marked as storage version",
        ));
    }
    let mut seen = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let name = v["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            errs.push(FieldError::required(format!("spec.versions[{i}].name"), ""));
        } else if seen.contains(&name) {
            errs.push(FieldError::invalid(
                "spec.versions",
                &spec["versions"],
                "must have unique version names",
            ));
        }
        seen.push(name);
        let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
        match v.pointer("/schema/openAPIV3Schema") {
            None => errs.push(FieldError::required(path, "schemas are required")),
            Some(schema) => errs.extend(api::crdschema::structural_errors(schema, &path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widgets() -> Value {
        json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object"}}}],
            },
        })
    }

    #[test]
    fn a_status_write_keeps_labels_and_annotations() {
        let old = widgets();
        let mut new = widgets();
        new["metadata"]["labels"] = json!({"patched": "true"});
        new["metadata"]["annotations"] = json!({"patched": "true"});
        CustomResourceDefinition.prepare_for_update(&old, &mut new, Some("status"));
        assert_eq!(new["metadata"], old["metadata"]);
    }

    fn errors(obj: &Value) -> Vec<String> {
        let mut errs = Vec::new();
        CustomResourceDefinition.validate(obj, &mut errs);
        errs.iter()
            .map(|e| format!("{}: {}", e.field, e.body()))
            .collect()
    }

    #[test]
    fn names_get_upstream_defaults() {
        let mut crd = widgets();
        CustomResourceDefinition.defaults(&mut crd);
        assert_eq!(crd["spec"]["names"]["singular"], "widget");
        assert_eq!(crd["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(crd["spec"]["conversion"]["strategy"], "None");
        assert!(errors(&crd).is_empty(), "{:?}", errors(&crd));
    }

    #[test]
    fn bad_definitions_are_refused_as_upstream_words_it() {
        let mut crd = widgets();
        crd["metadata"]["name"] = json!("gadgets.example.com");
        crd["spec"]["scope"] = json!("Galaxy");
        crd["spec"]["versions"][0]["storage"] = json!(false);
        let errs = errors(&crd);
        assert!(errs.iter().any(|e| e.contains("metadata.name: Invalid value: \"gadgets.example.com\": must be spec.names.plural+\".\"+spec.group")), "{errs:?}");
        assert!(
            errs.iter()
                .any(|e| e.contains("spec.scope: Unsupported value: \"Galaxy\"")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("must have exactly one version marked as storage version")),
            "{errs:?}"
        );
    }

    #[test]
    fn deletion_waits_for_the_cleanup_finalizer() {
        let mut crd = widgets();
        assert!(CustomResourceDefinition.holds_deletion(&crd));
        CustomResourceDefinition.mark_deleting(&mut crd);
        assert!(has_cleanup_finalizer(&crd));
        assert_eq!(crd["status"]["conditions"][0]["type"], "Terminating");
        crd["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(CustomResourceDefinition.holds_deletion(&crd));
        crd["metadata"]["finalizers"] = json!([]);
        assert!(!CustomResourceDefinition.holds_deletion(&crd));
    }
}
