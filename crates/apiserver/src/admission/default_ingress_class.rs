//! `DefaultIngressClass`: a new Ingress that names no class (neither
//! `spec.ingressClassName` nor the legacy `kubernetes.io/ingress.class` annotation) gets the
//! default IngressClass, the one annotated `ingressclass.kubernetes.io/is-default-class:
//! "true"`; with several, the most recently created ([`super::newest_default`]).

use api::Status;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Attributes, Mutating, Operation, newest_default};
use crate::registry::{ListOptions, Registry};

/// The annotation marking the default class.
const DEFAULT: &str = "ingressclass.kubernetes.io/is-default-class";
/// The annotation that named an Ingress's class before `spec.ingressClassName`.
const LEGACY: &str = "kubernetes.io/ingress.class";

/// The step; it lists the classes from the store.
pub(super) struct DefaultIngressClass;

impl Mutating for DefaultIngressClass {
    fn name(&self) -> &'static str {
        "DefaultIngressClass"
    }

    fn admit<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        ingress: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            let r = a.resource;
            let concerned = r.group == "networking.k8s.io"
                && r.plural == "ingresses"
                && a.subresource.is_none()
                && a.operation == Operation::Create;
            if !concerned || names_a_class(ingress) {
                return Ok(());
            }
            let classes =
                api::resources::find("networking.k8s.io", "v1", "ingressclasses").expect("served");
            let listed = reg.list(classes, None, &ListOptions::default()).await?;
            if let Some(name) = newest_default(&listed.items, &[DEFAULT]) {
                ingress["spec"]["ingressClassName"] = json!(name);
            }
            Ok(())
        })
    }
}

fn names_a_class(ingress: &Value) -> bool {
    ingress["spec"]["ingressClassName"]
        .as_str()
        .is_some_and(|c| !c.is_empty())
        || ingress["metadata"]["annotations"].get(LEGACY).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, created: &str, default: bool) -> Value {
        json!({"metadata": {"name": name, "creationTimestamp": created,
            "annotations": {DEFAULT: if default { "true" } else { "false" }}}})
    }

    #[test]
    fn the_newest_default_class_is_chosen() {
        let classes = [
            class("old", "2026-01-01T00:00:00Z", true),
            class("new", "2026-02-01T00:00:00Z", true),
            class("newest", "2026-03-01T00:00:00Z", false),
        ];
        assert_eq!(newest_default(&classes, &[DEFAULT]), Some("new"));
        assert_eq!(newest_default(&classes[2..], &[DEFAULT]), None);
        let tied = [
            class("b", "2026-01-01T00:00:00Z", true),
            class("a", "2026-01-01T00:00:00Z", true),
        ];
        assert_eq!(newest_default(&tied, &[DEFAULT]), Some("a"));
    }

    #[test]
    fn a_class_named_either_way_is_kept() {
        assert!(names_a_class(&json!({"spec": {"ingressClassName": "x"}})));
        assert!(names_a_class(
            &json!({"metadata": {"annotations": {LEGACY: "nginx"}}, "spec": {}})
        ));
        assert!(!names_a_class(&json!({"spec": {}})));
    }
}
