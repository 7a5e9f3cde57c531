//! The pods' PersistentVolumeClaims: one per volumeClaimTemplate and ordinal, and the
//! owner references `persistentVolumeClaimRetentionPolicy` wants on them.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

use super::identity::{ordinal_of, pod_name};

/// `persistentVolumeClaimRetentionPolicy` as (whenDeleted is Delete, whenScaled is Delete).
fn retention(set: &StatefulSet) -> (bool, bool) {
    let policy = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let delete = |v: Option<&String>| v.is_some_and(|v| v == "Delete");
    (
        delete(policy.and_then(|p| p.when_deleted.as_ref())),
        delete(policy.and_then(|p| p.when_scaled.as_ref())),
    )
}

/// The claim of volumeClaimTemplate `template` for the pod with `ordinal`.
pub(super) fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The claims of the pod with `ordinal`, by volume name, in template order: named
/// `<template>-<set>-<ordinal>`, labelled with the template's labels and the selector's
/// `matchLabels`.
pub(super) fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let Some(spec) = set.spec.as_ref() else {
        return Vec::new();
    };
    let set_name = set.name_any();
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let volume = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector.clone());
            let claim = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&volume, &set_name, ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: (!labels.is_empty()).then_some(labels),
                    annotations: t.metadata.annotations.clone(),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            };
            (volume, claim)
        })
        .collect()
}

/// A plain (not controller) owner reference, as the retention policy sets on claims.
fn owner(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// The owner references claim `claim` of `pod` should have under the set's retention policy,
/// if they differ from its own (upstream's `updateClaimOwnerRefForSetAndPod`): the set owns
/// it with `whenDeleted: Delete` unless the pod is scaled down with `whenScaled: Delete`, in
/// which case the pod owns it. A claim referring to an older set or pod of the same name,
/// with more than two owners, or controlled by someone else (under a Delete policy) is left
/// alone.
pub(super) fn claim_owners(
    claim: &ObjectMeta,
    set: &StatefulSet,
    pod: &Pod,
    scaled_down: bool,
) -> Option<Vec<OwnerReference>> {
    let refs = claim.owner_references.clone().unwrap_or_default();
    let (set_name, set_uid) = (set.name_any(), set.metadata.uid.clone().unwrap_or_default());
    let (pod_name, pod_uid) = (pod.name_any(), pod.metadata.uid.clone().unwrap_or_default());
    let is_set = |r: &OwnerReference| r.kind == "StatefulSet" && r.name == set_name;
    let is_pod = |r: &OwnerReference| r.kind == "Pod" && r.name == pod_name;
    let stale = refs
        .iter()
        .any(|r| (is_set(r) && r.uid != set_uid) || (is_pod(r) && r.uid != pod_uid));
    let (when_deleted, when_scaled) = retention(set);
    let foreign_controller = (when_deleted || when_scaled)
        && refs
            .iter()
            .any(|r| r.controller == Some(true) && !is_set(r) && !is_pod(r));
    if stale || refs.len() > 2 || foreign_controller {
        return None;
    }
    let want_set = when_deleted && !(when_scaled && scaled_down);
    let want_pod = when_scaled && scaled_down;
    let mut wanted: Vec<OwnerReference> = refs
        .iter()
        .filter(|r| (want_set || !is_set(r)) && (want_pod || !is_pod(r)))
        .cloned()
        .collect();
    if want_set && !refs.iter().any(is_set) {
        wanted.push(owner("apps/v1", "StatefulSet", &set.metadata));
    }
    if want_pod && !refs.iter().any(is_pod) {
        wanted.push(owner("v1", "Pod", &pod.metadata));
    }
    (wanted != refs).then_some(wanted)
}

/// What the cache holds under a claim's name.
pub(super) type Claims<'a> = &'a dyn Fn(&str) -> Option<Arc<PersistentVolumeClaim>>;

/// Whether every existing claim of `pod` has the owners the retention policy wants.
pub(super) fn claims_match(
    set: &StatefulSet,
    pod: &Pod,
    scaled_down: bool,
    claims: Claims<'_>,
) -> bool {
    let Some(ordinal) = ordinal_of(&set.name_any(), &pod.name_any()) else {
        return true;
    };
    claims_for(set, ordinal).iter().all(|(_, c)| {
        claims(&c.name_any()).is_none_or(|existing| {
            claim_owners(&existing.metadata, set, pod, scaled_down).is_none()
        })
    })
}

/// Whether a claim of the pod to create for `ordinal` still belongs to an older pod of that
/// name (`whenScaled: Delete`): the pod must wait until the garbage collector removed it
/// (upstream's `PodClaimIsStale`).
pub(super) fn claims_stale(set: &StatefulSet, ordinal: i32, claims: Claims<'_>) -> bool {
    if !retention(set).1 {
        return false;
    }
    let name = pod_name(&set.name_any(), ordinal);
    claims_for(set, ordinal).iter().any(|(_, c)| {
        claims(&c.name_any()).is_some_and(|existing| {
            existing
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.kind == "Pod" && r.name == name)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    use crate::statefulset::fixtures::{describe, now, pod, set};
    use crate::statefulset::plan::plan;

    fn no_claims(_: &str) -> Option<Arc<PersistentVolumeClaim>> {
        None
    }

    fn claim(refs: Value) -> ObjectMeta {
        serde_json::from_value(json!({"name": "data-web-0", "ownerReferences": refs})).unwrap()
    }

    #[test]
    fn claims_are_owned_as_the_retention_policy_says() {
        let p = pod(0, "web-new", "ready");
        let policy = |deleted: &str, scaled: &str| {
            set(json!({"spec": {"persistentVolumeClaimRetentionPolicy":
                {"whenDeleted": deleted, "whenScaled": scaled}}}))
        };
        let kinds = |refs: Option<Vec<OwnerReference>>| {
            refs.map(|r| r.iter().map(|r| r.kind.clone()).collect::<Vec<_>>())
        };
        // Retain, Retain: nothing to do on a bare claim.
        assert_eq!(
            claim_owners(&claim(json!([])), &policy("Retain", "Retain"), &p, false),
            None
        );
        // whenDeleted: Delete: the set owns it.
        let s = policy("Delete", "Retain");
        let refs = claim_owners(&claim(json!([])), &s, &p, false).unwrap();
        assert_eq!(
            (
                refs[0].kind.as_str(),
                refs[0].uid.as_str(),
                refs[0].controller
            ),
            ("StatefulSet", "set-uid", None)
        );
        assert_eq!(
            kinds(claim_owners(&claim(json!([])), &s, &p, true)),
            Some(vec!["StatefulSet".into()])
        );
        // whenScaled: Delete: the pod owns it once scaled down, not before.
        let s = policy("Retain", "Delete");
        assert_eq!(claim_owners(&claim(json!([])), &s, &p, false), None);
        assert_eq!(
            kinds(claim_owners(&claim(json!([])), &s, &p, true)),
            Some(vec!["Pod".into()])
        );
        // Both: the set until scaled down, then the pod alone.
        let s = policy("Delete", "Delete");
        let set_ref = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
            "uid": "set-uid"}]);
        assert_eq!(claim_owners(&claim(set_ref.clone()), &s, &p, false), None);
        assert_eq!(
            kinds(claim_owners(&claim(set_ref.clone()), &s, &p, true)),
            Some(vec!["Pod".into()])
        );
        // Back to Retain: our references go.
        assert_eq!(
            kinds(claim_owners(
                &claim(set_ref),
                &policy("Retain", "Retain"),
                &p,
                false
            )),
            Some(vec![])
        );
        // An older set of the same name, or another controller: left alone.
        let stale = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
            "uid": "old"}]);
        assert_eq!(claim_owners(&claim(stale), &s, &p, false), None);
        let foreign = json!([{"apiVersion": "v1", "kind": "Thing", "name": "x", "uid": "t",
            "controller": true}]);
        assert_eq!(claim_owners(&claim(foreign), &s, &p, false), None);
    }

    #[test]
    fn a_claim_of_an_older_pod_blocks_its_successor() {
        let s = set(json!({"spec": {"persistentVolumeClaimRetentionPolicy":
            {"whenDeleted": "Retain", "whenScaled": "Delete"}}}));
        let old: Arc<PersistentVolumeClaim> = Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "data-web-0", "ownerReferences":
                [{"apiVersion": "v1", "kind": "Pod", "name": "web-0", "uid": "gone"}]}}))
            .unwrap(),
        );
        let lookup = move |n: &str| (n == "data-web-0").then(|| old.clone());
        assert!(claims_stale(&s, 0, &lookup));
        assert!(describe(&plan(&s, &[], "web-new", &lookup, now())).is_empty());
        assert!(!claims_stale(&set(json!({})), 0, &lookup));
        // A pending pod whose claim is missing gets it.
        let pending = [pod(0, "web-new", "pending")];
        assert_eq!(
            describe(&plan(&s, &pending, "web-new", &no_claims, now())),
            ["claims web-0"]
        );
    }
}
