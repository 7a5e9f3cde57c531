//! `DefaultStorageClass`: a new PersistentVolumeClaim that names no class (no
//! `spec.storageClassName` at all, and not the beta annotation; `""` is a choice, "no class")
//! gets the default StorageClass, the one annotated
//! `storageclass.kubernetes.io/is-default-class: "true"` (or the beta annotation); with
//! several, the most recently created ([`super::newest_default`]).

use api::Status;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Attributes, Mutating, Operation, newest_default};
use crate::registry::{ListOptions, Registry};

/// The annotations marking the default class.
const DEFAULT: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];
/// The annotation that named a claim's class before `spec.storageClassName`.
const BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// The step; it lists the classes from the store.
pub(super) struct DefaultStorageClass;

impl Mutating for DefaultStorageClass {
    fn name(&self) -> &'static str {
        "DefaultStorageClass"
    }

    fn admit<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        claim: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            let r = a.resource;
            let concerned = r.group.is_empty()
                && r.plural == "persistentvolumeclaims"
                && a.subresource.is_none()
                && a.operation == Operation::Create;
            if !concerned || names_a_class(claim) {
                return Ok(());
            }
            let classes =
                api::resources::find("storage.k8s.io", "v1", "storageclasses").expect("served");
            let listed = reg.list(classes, None, &ListOptions::default()).await?;
            if let Some(name) = newest_default(&listed.items, &DEFAULT) {
                claim["spec"]["storageClassName"] = json!(name);
            }
            Ok(())
        })
    }
}

/// Whether the claim chose a class, the empty one included.
fn names_a_class(claim: &Value) -> bool {
    !claim["spec"]["storageClassName"].is_null()
        || claim["metadata"]["annotations"].get(BETA_CLASS).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_class_is_a_choice_and_a_missing_one_is_not() {
        assert!(names_a_class(&json!({"spec": {"storageClassName": ""}})));
        assert!(names_a_class(
            &json!({"metadata": {"annotations": {BETA_CLASS: "fast"}}, "spec": {}})
        ));
        assert!(!names_a_class(&json!({"spec": {}})));
    }

    #[test]
    fn either_annotation_marks_the_default() {
        let class = |name: &str, created: &str, key: &str| {
            json!({"metadata": {"name": name, "creationTimestamp": created,
                "annotations": {key: "true"}}})
        };
        let classes = [
            class("local-path", "2026-01-01T00:00:00Z", DEFAULT[0]),
            class("beta", "2026-02-01T00:00:00Z", DEFAULT[1]),
        ];
        assert_eq!(newest_default(&classes, &DEFAULT), Some("beta"));
        assert_eq!(newest_default(&classes[..1], &DEFAULT), Some("local-path"));
    }
}
