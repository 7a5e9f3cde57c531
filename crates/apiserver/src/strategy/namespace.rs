//! Namespaces: label names, the `kubernetes` finalizer and `Active` phase a create adds, the
//! `kubernetes.io/metadata.name` label every write sets, and finalizers that only the
//! `finalize` subresource writes.

use api::validation::{FieldError, NameRule};
use serde_json::{Value, json};

use super::{Strategy, set_default};
use crate::object::set_pointer;

/// The namespace strategy.
pub(super) struct Namespace;

impl Strategy for Namespace {
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        // Every namespace gets the namespace controller's finalizer.
        set_default(obj, "spec", json!({}));
        set_default(&mut obj["spec"], "finalizers", json!([]));
        if let Some(f) = obj["spec"]["finalizers"].as_array_mut()
            && !f.contains(&json!("kubernetes"))
        {
            f.push(json!("kubernetes"));
        }
        obj["status"] = json!({"phase": "Active"});
        label_name(obj);
    }

    fn prepare_for_update(&self, old: &Value, new: &mut Value, sub: Option<&str>) {
        label_name(new);
        if sub.is_none() {
            set_pointer(
                new,
                "/spec/finalizers",
                old.pointer("/spec/finalizers").cloned(),
            );
        }
    }

    /// A namespace stays, `Terminating`, until the namespace controller has emptied it and
    /// removed the finalizers in its spec.
    fn holds_deletion(&self, obj: &Value) -> bool {
        obj["spec"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    }

    fn mark_deleting(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Terminating"});
    }

    fn validate_update(
        &self,
        _old: &Value,
        new: &Value,
        _sub: Option<&str>,
        errs: &mut Vec<FieldError>,
    ) {
        errs.extend(namespace_finalizers(new));
    }
}

/// The label that names the namespace, set on every write as upstream's defaulting does
/// (whatever the client sent), so selectors can pick namespaces by name.
fn label_name(ns: &mut Value) {
    let name = ns["metadata"]["name"].clone();
    set_default(&mut ns["metadata"], "labels", json!({}));
    ns["metadata"]["labels"][NAME_LABEL] = name;
}

/// The label holding a namespace's name.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A namespace's `spec.finalizers`: standard names, or qualified ones with a domain.
fn namespace_finalizers(ns: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let finalizers = ns["spec"]["finalizers"].as_array().cloned();
    for (i, f) in finalizers.into_iter().flatten().enumerate() {
        let field = format!("spec.finalizers[{i}]");
        let name = f.as_str().unwrap_or("");
        for msg in api::validation::qualified_name(name) {
            errs.push(FieldError::invalid(&field, &f, msg));
        }
        if !name.contains('/') && !["kubernetes", "orphan", "foregroundDeletion"].contains(&name) {
            errs.push(FieldError::invalid(
                &field,
                &f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_labels_the_namespace_with_its_name() {
        let mut ns = json!({"metadata": {"name": "team", "labels": {NAME_LABEL: "other"}}});
        Namespace.prepare_for_create(&mut ns);
        assert_eq!(ns["metadata"]["labels"][NAME_LABEL], "team");
        let old = ns.clone();
        let mut new = json!({"metadata": {"name": "team", "labels": null}});
        Namespace.prepare_for_update(&old, &mut new, None);
        assert_eq!(new["metadata"]["labels"], json!({NAME_LABEL: "team"}));
    }
}
