//! What several controllers need to know of pods and owners: whether a pod is ready or
//! available (whether it is active, terminal or terminating is the `pod` crate's), who
//! controls an object, and how an owner claims the objects its selector matches (adopting
//! orphans, releasing those it no longer selects), as upstream's `ControllerRefManager` does.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// When the pod's Ready condition turned True, if it is True (the epoch if unrecorded).
pub fn ready_since(pod: &Pod) -> Option<jiff::Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        })
}

/// Ready for at least `min_ready_seconds` at `now` (upstream's `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    match ready_since(pod) {
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since + jiff::SignedDuration::from_secs(i64::from(min_ready_seconds)) <= now,
        None => false,
    }
}

/// The owner reference marked `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
}

/// A controller reference to `owner` (`controller` and `blockOwnerDeletion` set), as
/// controllers put on what they create.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `selector` selects `labels`. A missing or unparsable selector selects nothing;
/// an empty one everything.
pub fn selects(
    selector: Option<&LabelSelector>,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    let Some(sel) = selector.and_then(|s| serde_json::to_value(s).ok()) else {
        return false;
    };
    let Ok(parsed) = api::selector::LabelSelector::from_object(&sel) else {
        return false;
    };
    parsed.matches(Some(&json!(labels)))
}

/// A pod to create from `template` for `owner` in `namespace`: the template's labels,
/// annotations and spec, named `<generate_name><random>`, controlled by `owner`.
pub fn from_template(
    template: &PodTemplateSpec,
    owner: OwnerReference,
    namespace: &str,
    generate_name: &str,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name.into()),
            namespace: Some(namespace.into()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// `namespace/name` of an object.
pub fn key(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

/// The objects `owner` controls among `candidates` (same namespace), after adopting the
/// orphans its selector matches and releasing the ones it no longer matches (upstream's
/// `ClaimPods`). An owner being deleted adopts nothing. Adoption and release are JSON
/// patches that check the object's uid, so a replaced object is never touched; an object
/// whose patch fails is left out.
pub async fn claim<K>(
    api: &Api<K>,
    owner: &ObjectMeta,
    owner_ref: &OwnerReference,
    selector: Option<&LabelSelector>,
    candidates: Vec<Arc<K>>,
) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let uid = owner.uid.as_deref().unwrap_or("");
    let mut mine = Vec::new();
    for obj in candidates {
        let meta = obj.meta();
        let labels = meta.labels.clone().unwrap_or_default();
        let matches = selects(selector, &labels);
        match controller_of(meta) {
            Some(c) if c.uid == uid => {
                if matches {
                    mine.push(obj);
                } else if let Err(e) = release(api, meta, uid).await {
                    tracing::debug!("releasing {}: {e}", key(meta));
                }
            }
            Some(_) => {}
            None if matches
                && owner.deletion_timestamp.is_none()
                && meta.deletion_timestamp.is_none() =>
            {
                match adopt(api, meta, owner_ref).await {
                    Ok(adopted) => mine.push(Arc::new(adopted)),
                    Err(e) => tracing::debug!("adopting {}: {e}", key(meta)),
                }
            }
            None => {}
        }
    }
    mine
}

async fn adopt<K>(api: &Api<K>, meta: &ObjectMeta, owner: &OwnerReference) -> kube::Result<K>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut ops = vec![json!({"op": "test", "path": "/metadata/uid", "value": meta.uid})];
    if meta
        .owner_references
        .as_ref()
        .is_some_and(|o| !o.is_empty())
    {
        ops.push(json!({"op": "add", "path": "/metadata/ownerReferences/-", "value": owner}));
    } else {
        ops.push(json!({"op": "add", "path": "/metadata/ownerReferences", "value": [owner]}));
    }
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops)).map_err(kube::Error::SerdeError)?;
    api.patch(
        meta.name.as_deref().unwrap_or(""),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await
}

async fn release<K>(api: &Api<K>, meta: &ObjectMeta, owner_uid: &str) -> kube::Result<K>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let refs = meta.owner_references.clone().unwrap_or_default();
    let Some(i) = refs.iter().position(|r| r.uid == owner_uid) else {
        return api.get(meta.name.as_deref().unwrap_or("")).await;
    };
    let ops = json!([
        {"op": "test", "path": "/metadata/uid", "value": meta.uid},
        {"op": "test", "path": format!("/metadata/ownerReferences/{i}/uid"), "value": owner_uid},
        // The last reference goes with its list, as upstream's empty lists are omitted.
        if refs.len() == 1 {
            json!({"op": "remove", "path": "/metadata/ownerReferences"})
        } else {
            json!({"op": "remove", "path": format!("/metadata/ownerReferences/{i}")})
        },
    ]);
    let patch: json_patch::Patch = serde_json::from_value(ops).map_err(kube::Error::SerdeError)?;
    api.patch(
        meta.name.as_deref().unwrap_or(""),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn readiness_and_availability_follow_the_ready_condition() {
        let now = jiff::Timestamp::now();
        let since = now - jiff::SignedDuration::from_secs(5);
        let ready = pod(json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": since.to_string()}]}}));
        assert!(is_ready(&ready));
        assert!(is_available(&ready, 0, now));
        assert!(is_available(&ready, 5, now));
        assert!(!is_available(&ready, 10, now));
        let done = pod(json!({"status": {"phase": "Succeeded"}}));
        assert!(!is_ready(&done));
    }

    #[test]
    fn selectors_select_labels() {
        let labels = [("app".to_string(), "web".to_string())].into();
        let sel: LabelSelector =
            serde_json::from_value(json!({"matchLabels": {"app": "web"}})).unwrap();
        assert!(selects(Some(&sel), &labels));
        assert!(!selects(None, &labels));
        let other: LabelSelector = serde_json::from_value(
            json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}),
        )
        .unwrap();
        assert!(!selects(Some(&other), &labels));
    }
}
