//! A StatefulSet's pod identities: the ordinals it runs, pod names `<set>-<ordinal>`,
//! the identity labels, and the pod made for an ordinal at a revision.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume};
use kube::ResourceExt;

use crate::pods;

use super::claims::claims_for;
use super::{POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_LABEL};

/// `spec.replicas` (1 when unset).
pub(super) fn replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

/// The first ordinal, `spec.ordinals.start` (0 when unset).
pub(super) fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref()?.start)
        .unwrap_or(0)
        .max(0)
}

/// Whether `ordinal` is one of the set's replicas (upstream's `podInOrdinalRange`).
pub(super) fn in_range(set: &StatefulSet, ordinal: i32) -> bool {
    let start = start_ordinal(set);
    ordinal >= start && ordinal < start + replicas(set)
}

/// The name of the set's pod with `ordinal`.
pub(super) fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// The ordinal of pod `pod` if it is named as a pod of set `set` (`<set>-<ordinal>`).
pub(super) fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let (parent, digits) = pod.rsplit_once('-')?;
    if parent != set || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i32 = digits.parse().ok()?;
    (n.to_string() == digits).then_some(n)
}

/// The revision a pod was made from (its `controller-revision-hash` label).
pub(super) fn pod_revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map(String::as_str)
        .unwrap_or("")
}

/// Whether the pod carries its name and ordinal as it should (upstream's `identityMatches`).
pub(super) fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let name = pod.name_any();
    let Some(ordinal) = ordinal_of(&set.name_any(), &name) else {
        return false;
    };
    let labels = pod.labels();
    pod.metadata.namespace == set.metadata.namespace
        && labels.get(POD_NAME_LABEL) == Some(&name)
        && labels.get(POD_INDEX_LABEL) == Some(&ordinal.to_string())
}

/// The set's pod with `ordinal` made from `template` at `revision` (upstream's
/// `newVersionedStatefulSetPod`).
pub(super) fn new_pod(
    set: &StatefulSet,
    template: &PodTemplateSpec,
    revision: &str,
    ordinal: i32,
) -> Pod {
    let set_name = set.name_any();
    let ns = set.namespace().unwrap_or_default();
    let mut pod = pods::from_template(
        template,
        pods::controller_ref(set),
        &ns,
        &format!("{set_name}-"),
    );
    let name = pod_name(&set_name, ordinal);
    pod.metadata.name = Some(name.clone());
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.into());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name);
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    let claims = claims_for(set, ordinal);
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(volume, claim)| Volume {
            name: volume.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.name_any(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    volumes.extend(
        spec.volumes
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !claims.iter().any(|(name, _)| *name == v.name)),
    );
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use serde_json::json;

    use crate::statefulset::claims::claim_name;
    use crate::statefulset::fixtures::set;
    use crate::statefulset::revisions::revision_name;

    #[test]
    fn pods_and_claims_are_named_by_ordinal() {
        assert_eq!(pod_name("web", 3), "web-3");
        assert_eq!(claim_name("data", "web", 0), "data-web-0");
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
        assert_eq!(ordinal_of("web", "webby-0"), None);
        assert_eq!(ordinal_of("my-web", "my-web-4"), Some(4));
        assert_eq!(revision_name("web", "abc"), "web-abc");
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), 225);
    }

    #[test]
    fn new_pods_carry_identity_revision_and_claims() {
        let s = set(json!({}));
        let template = s.spec.as_ref().unwrap().template.clone();
        let p = new_pod(&s, &template, "web-abc", 1);
        assert_eq!(p.name_any(), "web-1");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        let labels = p.labels();
        assert_eq!(labels["app"], "web");
        assert_eq!(labels[REVISION_LABEL], "web-abc");
        assert_eq!(labels[POD_NAME_LABEL], "web-1");
        assert_eq!(labels[POD_INDEX_LABEL], "1");
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-1"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let volumes = spec.volumes.as_ref().unwrap();
        // The claim replaces the template's volume of that name; the others stay.
        assert_eq!(volumes.len(), 2);
        assert_eq!(volumes[0].name, "data");
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "data-web-1"
        );
        assert_eq!(volumes[1].name, "cache");
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("StatefulSet", Some(true))
        );
        assert!(identity_matches(&s, &p));

        let claims = claims_for(&s, 1);
        assert_eq!(claims.len(), 1);
        let (volume, claim) = &claims[0];
        assert_eq!(volume, "data");
        assert_eq!(claim.name_any(), "data-web-1");
        assert_eq!(claim.namespace().as_deref(), Some("d"));
        assert_eq!(
            claim.labels(),
            &BTreeMap::from([
                ("app".to_string(), "web".to_string()),
                ("tier".to_string(), "db".to_string())
            ])
        );
    }
}
