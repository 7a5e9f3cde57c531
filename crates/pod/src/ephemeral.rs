//! The claims a pod's volumes use: `persistentVolumeClaim` ones by name, and the claim behind
//! a generic `ephemeral` volume and whether the pod owns it (upstream's
//! `ephemeral.VolumeClaimName` and `VolumeIsForPod`).

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Volume};

/// The name of the claim behind `pod`'s ephemeral volume `v`: `<pod>-<volume>`.
pub fn ephemeral_claim_name(pod: &Pod, v: &Volume) -> String {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    format!("{pod_name}-{}", v.name)
}

/// The names of the claims `pod`'s volumes use (in its namespace), ephemeral ones included.
pub fn claim_names(pod: &Pod) -> Vec<String> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes
        .into_iter()
        .flatten()
        .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(c), _) => Some(c.claim_name.clone()),
            (None, Some(_)) => Some(ephemeral_claim_name(pod, v)),
            (None, None) => None,
        })
        .collect()
}

/// Whether `pod` is `claim`'s controlling owner, so the claim was made for it.
pub fn claim_is_for_pod(claim: &PersistentVolumeClaim, pod: &Pod) -> bool {
    let owners = claim.metadata.owner_references.iter().flatten();
    owners.into_iter().any(|o| {
        o.controller == Some(true) && o.kind == "Pod" && Some(&o.uid) == pod.metadata.uid.as_ref()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_claim_is_named_after_pod_and_volume_and_owned_by_the_pod() {
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "web", "uid": "u1"}})).unwrap();
        let v: Volume = serde_json::from_value(json!({"name": "scratch"})).unwrap();
        assert_eq!(ephemeral_claim_name(&pod, &v), "web-scratch");
        let mut with_volumes = pod.clone();
        with_volumes.spec = serde_json::from_value(json!({"containers": [], "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
            {"name": "tmp", "emptyDir": {}}]}))
        .unwrap();
        assert_eq!(claim_names(&with_volumes), ["data", "web-scratch"]);
        let claim = |uid: &str, controller: bool| -> PersistentVolumeClaim {
            serde_json::from_value(json!({"metadata": {"ownerReferences": [{"apiVersion": "v1",
                "kind": "Pod", "name": "web", "uid": uid, "controller": controller}]}}))
            .unwrap()
        };
        assert!(claim_is_for_pod(&claim("u1", true), &pod));
        assert!(!claim_is_for_pod(&claim("u2", true), &pod));
        assert!(!claim_is_for_pod(&claim("u1", false), &pod));
    }
}
