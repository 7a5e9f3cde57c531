//! Which Ingresses are this controller's (pure), and the IngressClass that names it.
//!
//! An Ingress is ours when its `spec.ingressClassName` is our class, when the legacy
//! annotation `kubernetes.io/ingress.class` is, or when it names no class at all and our
//! IngressClass is marked the cluster's default.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressClassSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

/// The IngressClass annotation that makes a class the default for Ingresses naming none.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// The annotation that named an Ingress's class before `spec.ingressClassName`.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// The `spec.controller` of the IngressClass this controller creates.
pub const CONTROLLER: &str = "rudder.dev/ingress-controller";

/// The Ingresses among `ingresses` that belong to `class`, oldest first (then by namespace
/// and name), the order in which conflicts between them are settled.
pub fn ours<'a>(
    class: &str,
    ingresses: impl IntoIterator<Item = &'a Ingress>,
    classes: impl IntoIterator<Item = &'a IngressClass>,
) -> Vec<&'a Ingress> {
    let default = is_default(class, classes);
    let mut ours: Vec<&Ingress> = ingresses
        .into_iter()
        .filter(|ing| owns(class, default, ing))
        .collect();
    ours.sort_by(|a, b| age_key(a).cmp(&age_key(b)));
    ours
}

/// Whether the IngressClass called `class` is marked the default class.
pub fn is_default<'a>(class: &str, classes: impl IntoIterator<Item = &'a IngressClass>) -> bool {
    classes
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(class))
        .and_then(|c| {
            c.metadata
                .annotations
                .as_ref()?
                .get(DEFAULT_CLASS_ANNOTATION)
        })
        .is_some_and(|v| v == "true")
}

/// Whether `ingress` belongs to `class`; `default` says whether that class is the default.
pub fn owns(class: &str, default: bool, ingress: &Ingress) -> bool {
    let named = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref());
    let legacy = ingress
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
        .map(String::as_str);
    match (named, legacy) {
        (None, None) => default,
        (named, legacy) => named == Some(class) || legacy == Some(class),
    }
}

/// What settles conflicts between Ingresses: creation time (a missing one last), namespace,
/// name.
fn age_key(ing: &Ingress) -> (bool, Option<&k8s_openapi::jiff::Timestamp>, &str, &str) {
    let created = ing.metadata.creation_timestamp.as_ref().map(|t| &t.0);
    (
        created.is_none(),
        created,
        ing.metadata.namespace.as_deref().unwrap_or_default(),
        ing.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// The IngressClass this controller creates when none of its name exists: the cluster's
/// default class, as k3s's Traefik class is.
pub fn ingress_class(class: &str) -> IngressClass {
    IngressClass {
        metadata: ObjectMeta {
            name: Some(class.to_owned()),
            annotations: Some(BTreeMap::from([(
                DEFAULT_CLASS_ANNOTATION.to_owned(),
                "true".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(IngressClassSpec {
            controller: Some(CONTROLLER.to_owned()),
            parameters: None,
        }),
    }
}

/// Creates the IngressClass `class` unless one of that name exists; an existing one (whoever
/// made it, however it reads) is left as it is.
pub async fn ensure(client: kube::Client, class: &str) -> Result<(), kube::Error> {
    let api = Api::<IngressClass>::all(client);
    if api.get_opt(class).await?.is_some() {
        return Ok(());
    }
    match api
        .create(&PostParams::default(), &ingress_class(class))
        .await
    {
        Ok(_) => {
            tracing::info!(class, "created the IngressClass");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::networking::v1::IngressSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn ingress(name: &str, class: Option<&str>, legacy: Option<&str>) -> Ingress {
        Ingress {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                annotations: legacy
                    .map(|l| BTreeMap::from([(LEGACY_CLASS_ANNOTATION.to_owned(), l.to_owned())])),
                ..ObjectMeta::default()
            },
            spec: Some(IngressSpec {
                ingress_class_name: class.map(Into::into),
                ..IngressSpec::default()
            }),
            status: None,
        }
    }

    fn created(mut ing: Ingress, seconds: i64) -> Ingress {
        ing.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap(),
        ));
        ing
    }

    #[test]
    fn an_ingress_is_ours_by_class_name_legacy_annotation_or_default_class() {
        assert!(owns("rudder", false, &ingress("a", Some("rudder"), None)));
        assert!(!owns("rudder", true, &ingress("a", Some("nginx"), None)));
        assert!(owns("rudder", false, &ingress("a", None, Some("rudder"))));
        assert!(!owns("rudder", true, &ingress("a", None, Some("nginx"))));
        assert!(owns("rudder", true, &ingress("a", None, None)));
        assert!(!owns("rudder", false, &ingress("a", None, None)));
    }

    #[test]
    fn the_default_mark_is_read_from_our_class_only() {
        let ours = ingress_class("rudder");
        let other = ingress_class("nginx");
        assert!(is_default("rudder", [&ours]));
        assert!(!is_default("rudder", [&other]));
        let mut unmarked = ingress_class("rudder");
        unmarked.metadata.annotations = Some(BTreeMap::from([(
            DEFAULT_CLASS_ANNOTATION.to_owned(),
            "false".to_owned(),
        )]));
        assert!(!is_default("rudder", [&unmarked]));
    }

    #[test]
    fn ours_are_sorted_oldest_first_then_by_name() {
        let classes = [ingress_class("rudder")];
        let ings = [
            created(ingress("young", Some("rudder"), None), 200),
            created(ingress("b", None, None), 100),
            created(ingress("a", Some("rudder"), None), 100),
            created(ingress("theirs", Some("nginx"), None), 1),
        ];
        let names: Vec<_> = ours("rudder", &ings, &classes)
            .iter()
            .map(|i| i.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "young"]);
    }

    #[test]
    fn the_created_class_is_the_default_and_names_our_controller() {
        let class = ingress_class("rudder");
        assert_eq!(class.metadata.name.as_deref(), Some("rudder"));
        assert_eq!(class.spec.unwrap().controller.as_deref(), Some(CONTROLLER));
    }
}
