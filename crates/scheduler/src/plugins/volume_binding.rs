//! VolumeBinding: a pod's PersistentVolumeClaims (its `persistentVolumeClaim` and generic
//! `ephemeral` volumes) must exist and be bound, or be bindable on the node, as upstream's
//! plugin decides. PreFilter refuses every node when a claim is missing, being deleted or
//! unbound under `Immediate` binding; Filter checks bound claims' volumes (they exist, their
//! node affinity admits the node) and `WaitForFirstConsumer` claims (an available volume
//! matches on the node, or the class can provision one).
//!
//! PreBind binds each `WaitForFirstConsumer` claim for the chosen node, as upstream's does:
//! the smallest matching available volume gets the claim in its `claimRef` (the
//! PersistentVolume controller completes the binding), else the claim gets the
//! `volume.kubernetes.io/selected-node` annotation its class's provisioner acts on. Unlike
//! upstream, the pod is bound without waiting for the claims: the node agent keeps it from
//! starting until they are bound.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

use serde_json::json;

use crate::framework::{Cluster, NodeInfo, Plugin, PreBind, Prepared, Verdict};

/// The VolumeBinding plugin.
pub struct VolumeBinding;

/// Upstream's reasons at Filter.
const BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
const NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
const PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";

/// On a claim: the node its volume is to be provisioned on.
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// The provisioner name that means "no dynamic provisioning".
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// A pod's claims, sorted as upstream's `GetPodVolumeClaims` sorts them.
#[derive(Default)]
struct Claims {
    /// Bound claims: the names of their volumes.
    bound: Vec<String>,
    /// Unbound claims under `WaitForFirstConsumer`.
    delayed: Vec<PersistentVolumeClaim>,
    /// How many claims are unbound under `Immediate` binding (or pre-bound, not yet bound).
    immediate: usize,
}

/// What Filter needs of a pod's claims, worked out once per pod.
struct State {
    /// The volumes of its bound claims (`None`: the volume does not exist).
    bound: Vec<Option<PersistentVolume>>,
    /// Its `WaitForFirstConsumer` claims, with their classes.
    delayed: Vec<(PersistentVolumeClaim, Option<StorageClass>)>,
    /// Every volume, when there are such claims to match.
    volumes: Vec<PersistentVolume>,
}

/// The claim's storage class: the beta annotation first, then `spec.storageClassName`.
fn class_of(pvc: &PersistentVolumeClaim) -> &str {
    pvc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
        .map(String::as_str)
        .or_else(|| pvc.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or("")
}

/// Whether the claim waits for its first consumer (its class says so).
fn delay_binding(pvc: &PersistentVolumeClaim, cluster: &Cluster) -> bool {
    let class = class_of(pvc);
    !class.is_empty()
        && cluster
            .classes
            .get(class)
            .and_then(|c| c.volume_binding_mode.as_deref())
            == Some("WaitForFirstConsumer")
}

/// Whether the claim is bound: it names its volume and the binding completed.
fn fully_bound(pvc: &PersistentVolumeClaim) -> Option<&str> {
    let name = pvc.spec.as_ref()?.volume_name.as_deref()?;
    let done = pvc
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("pv.kubernetes.io/bind-completed"));
    (done && !name.is_empty()).then_some(name)
}

/// The pod's claims, or PreFilter's refusal.
fn claims(pod: &Pod, cluster: &Cluster) -> Result<Claims, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    let mut out = Claims::default();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let (name, ephemeral) = match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(c), _) => (c.claim_name.clone(), false),
            (None, Some(_)) => (pod::ephemeral_claim_name(pod, v), true),
            (None, None) => continue,
        };
        let Some(pvc) = cluster.claims.get(&format!("{ns}/{name}")) else {
            return Err(if ephemeral {
                format!(
                    "waiting for ephemeral volume controller to create the persistentvolumeclaim {name:?}"
                )
            } else {
                format!("persistentvolumeclaim {name:?} not found")
            });
        };
        if ephemeral && !pod::claim_is_for_pod(pvc, pod) {
            return Err(format!(
                "PVC {ns}/{name} was not created for pod {ns}/{pod_name} (pod is not owner)"
            ));
        }
        if pvc.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim {name:?} is being deleted"));
        }
        // A claim that names its volume before binding completed is pre-bound: it counts as
        // an unbound immediate claim, as upstream.
        let prebound = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .is_some_and(|v| !v.is_empty());
        match fully_bound(pvc) {
            Some(volume) => out.bound.push(volume.to_string()),
            None if delay_binding(pvc, cluster) && !prebound => out.delayed.push(pvc.clone()),
            None => out.immediate += 1,
        }
    }
    Ok(out)
}

/// Whether a volume's required node affinity admits the node.
fn admits(pv: &PersistentVolume, node: &NodeInfo) -> bool {
    let Some(required) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    let empty = Default::default();
    let labels = node.node.metadata.labels.as_ref().unwrap_or(&empty);
    required
        .node_selector_terms
        .iter()
        .any(|t| pod::term_matches(t, labels, node.name()))
}

/// The smallest available volume that could take the claim on this node (class, access
/// modes, size, volume mode, selector, node affinity), as upstream's `FindMatchingVolume`.
fn matching_volume<'a>(
    pvc: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    node: &NodeInfo,
) -> Option<&'a PersistentVolume> {
    let spec = pvc.spec.clone().unwrap_or_default();
    let wanted = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .map_or(0, storage);
    let selector = spec
        .selector
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .and_then(|s| api::selector::LabelSelector::from_object(&s).ok());
    let mode = spec.volume_mode.as_deref().unwrap_or("Filesystem");
    let capacity = |pv: &PersistentVolume| pv.spec.as_ref()?.capacity.as_ref().map(storage);
    let fits = volumes.into_iter().filter(|pv| {
        let Some(pv_spec) = pv.spec.as_ref() else {
            return false;
        };
        let free = pv_spec.claim_ref.as_ref().is_none_or(|r| {
            r.name.as_deref() == pvc.metadata.name.as_deref()
                && r.namespace.as_deref() == pvc.metadata.namespace.as_deref()
        });
        let size = pv_spec.capacity.as_ref().map_or(0, storage);
        let modes = pv_spec.access_modes.clone().unwrap_or_default();
        let labels = serde_json::to_value(pv.metadata.labels.clone().unwrap_or_default())
            .unwrap_or_default();
        free && pv.metadata.deletion_timestamp.is_none()
            && pv_spec.storage_class_name.as_deref().unwrap_or("") == class_of(pvc)
            && pv_spec.volume_mode.as_deref().unwrap_or("Filesystem") == mode
            && size >= wanted
            && spec
                .access_modes
                .iter()
                .flatten()
                .all(|m| modes.contains(m))
            && selector.as_ref().is_none_or(|s| s.matches(Some(&labels)))
            && admits(pv, node)
    });
    fits.min_by_key(|pv| capacity(pv))
}

/// The volume's `claimRef` for `pvc` and upstream's bound-by-controller annotation, as a
/// merge patch conditional on the volume's resourceVersion.
fn claim_ref_patch(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> serde_json::Value {
    let m = &pvc.metadata;
    json!({
        "metadata": {
            "resourceVersion": pv.metadata.resource_version,
            "annotations": {"pv.kubernetes.io/bound-by-controller": "yes"},
        },
        "spec": {"claimRef": {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "namespace": m.namespace, "name": m.name, "uid": m.uid,
            "resourceVersion": m.resource_version,
        }},
    })
}

/// The `storage` amount of a resource list (a claim's request, a volume's capacity), in bytes.
fn storage(
    list: &std::collections::BTreeMap<
        String,
        k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    >,
) -> i128 {
    list.get("storage")
        .and_then(|q| api::quantity::Quantity::parse(&q.0).ok())
        .map_or(0, |q| q.units())
}

/// Whether the claim's class can provision a volume for it on this node.
fn provisionable(class: Option<&StorageClass>, node: &NodeInfo) -> bool {
    let Some(class) = class else {
        return false;
    };
    if class.provisioner.is_empty() || class.provisioner == NO_PROVISIONER {
        return false;
    }
    let empty = Default::default();
    let labels = node.node.metadata.labels.as_ref().unwrap_or(&empty);
    class.allowed_topologies.as_ref().is_none_or(|terms| {
        terms.is_empty()
            || terms.iter().any(|t| {
                t.match_label_expressions.iter().flatten().all(|e| {
                    labels
                        .get(&e.key)
                        .is_some_and(|v| e.values.iter().any(|x| x == v))
                })
            })
    })
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        "VolumeBinding"
    }

    fn pre_filter(&self, pod: &Pod, cluster: &Cluster) -> Result<(), String> {
        let c = claims(pod, cluster)?;
        if c.immediate > 0 {
            return Err("pod has unbound immediate PersistentVolumeClaims".into());
        }
        Ok(())
    }

    fn prepare(&self, pod: &Pod, _: &[&NodeInfo], cluster: &Cluster) -> Prepared {
        let c = claims(pod, cluster).ok()?;
        if c.bound.is_empty() && c.delayed.is_empty() {
            return None;
        }
        let delayed = c
            .delayed
            .into_iter()
            .map(|pvc| {
                let class = cluster.classes.get(class_of(&pvc)).cloned();
                (pvc, class)
            })
            .collect::<Vec<_>>();
        let volumes = if delayed.is_empty() {
            Vec::new()
        } else {
            cluster.volumes.values().cloned().collect()
        };
        Some(Box::new(State {
            bound: c
                .bound
                .iter()
                .map(|n| cluster.volumes.get(n).cloned())
                .collect(),
            delayed,
            volumes,
        }))
    }

    fn filter(&self, _pod: &Pod, node: &NodeInfo, prepared: &Prepared) -> Verdict {
        let Some(p) = prepared.as_ref().and_then(|p| p.downcast_ref::<State>()) else {
            return Verdict::Fits;
        };
        let mut reasons = Vec::new();
        if p.bound.iter().any(Option::is_none) {
            reasons.push(PV_NOT_EXIST.to_string());
        } else if !p.bound.iter().flatten().all(|pv| admits(pv, node)) {
            reasons.push(NODE_CONFLICT.to_string());
        }
        if !p.delayed.iter().all(|(pvc, class)| {
            matching_volume(pvc, &p.volumes, node).is_some() || provisionable(class.as_ref(), node)
        }) {
            reasons.push(BIND_CONFLICT.to_string());
        }
        if reasons.is_empty() {
            Verdict::Fits
        } else {
            Verdict::Unschedulable(reasons)
        }
    }

    fn pre_bind(&self, _pod: &Pod, node: &NodeInfo, prepared: &Prepared) -> Vec<PreBind> {
        let Some(p) = prepared.as_ref().and_then(|p| p.downcast_ref::<State>()) else {
            return Vec::new();
        };
        let mut taken: Vec<&str> = Vec::new();
        let mut writes = Vec::new();
        for (pvc, _) in &p.delayed {
            let free = p
                .volumes
                .iter()
                .filter(|v| !taken.contains(&v.metadata.name.as_deref().unwrap_or_default()));
            let (ns, name) = (pvc.metadata.namespace.clone(), pvc.metadata.name.clone());
            match matching_volume(pvc, free, node) {
                Some(pv) => {
                    let pv_name = pv.metadata.name.as_deref().unwrap_or_default();
                    taken.push(pv_name);
                    writes.push(PreBind::Volume(pv_name.into(), claim_ref_patch(pv, pvc)));
                }
                None => writes.push(PreBind::Claim(
                    ns.unwrap_or_default(),
                    name.unwrap_or_default(),
                    json!({"metadata": {
                        "resourceVersion": pvc.metadata.resource_version,
                        "annotations": {SELECTED_NODE: node.name()},
                    }}),
                )),
            }
        }
        writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use serde_json::{Value, json};

    fn claim_pod() -> Pod {
        pod(json!({"containers": [], "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]}))
    }

    fn cluster(claim: Value, volumes: &[Value], class: Option<Value>) -> Cluster {
        let mut c = Cluster::default();
        let mut claim_obj = json!({"metadata": {"name": "c", "namespace": "default"}});
        claim_obj
            .as_object_mut()
            .unwrap()
            .extend(claim.as_object().unwrap().clone());
        c.claims.insert(
            "default/c".into(),
            serde_json::from_value(claim_obj).unwrap(),
        );
        for v in volumes {
            let pv: PersistentVolume = serde_json::from_value(v.clone()).unwrap();
            c.volumes.insert(pv.metadata.name.clone().unwrap(), pv);
        }
        if let Some(class) = class {
            let sc: StorageClass = serde_json::from_value(class).unwrap();
            c.classes.insert(sc.metadata.name.clone().unwrap(), sc);
        }
        c
    }

    fn local_pv(name: &str, on: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "local", "local": {"path": "/mnt"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [on]}]}]}}}})
    }

    fn filter(c: &Cluster, n: &NodeInfo) -> Verdict {
        let p = claim_pod();
        let prepared = VolumeBinding.prepare(&p, &[n], c);
        VolumeBinding.filter(&p, n, &prepared)
    }

    #[test]
    fn missing_and_unbound_immediate_claims_refuse_every_node() {
        let p = claim_pod();
        assert_eq!(
            VolumeBinding.pre_filter(&p, &Cluster::default()),
            Err("persistentvolumeclaim \"c\" not found".into())
        );
        let c = cluster(
            json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}}),
            &[],
            None,
        );
        assert_eq!(
            VolumeBinding.pre_filter(&p, &c),
            Err("pod has unbound immediate PersistentVolumeClaims".into())
        );
        let eph = pod(json!({"containers": [], "volumes": [
            {"name": "v", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]}));
        assert_eq!(
            VolumeBinding.pre_filter(&eph, &c),
            Err("waiting for ephemeral volume controller to create the persistentvolumeclaim \"p-v\"".into())
        );
    }

    #[test]
    fn bound_claims_follow_their_volumes_node_affinity() {
        let bound = json!({"metadata": {"name": "c", "namespace": "default",
            "annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
            "spec": {"volumeName": "pv-a"}});
        let c = cluster(bound.clone(), &[local_pv("pv-a", "a")], None);
        assert_eq!(VolumeBinding.pre_filter(&claim_pod(), &c), Ok(()));
        assert_eq!(filter(&c, &node("a", json!({}))), Verdict::Fits);
        assert_eq!(
            filter(&c, &node("b", json!({}))),
            Verdict::Unschedulable(vec![NODE_CONFLICT.into()])
        );
        let gone = cluster(bound, &[], None);
        assert_eq!(
            filter(&gone, &node("a", json!({}))),
            Verdict::Unschedulable(vec![PV_NOT_EXIST.into()])
        );
    }

    #[test]
    fn waiting_claims_need_a_matching_volume_or_a_provisioner() {
        let claim = json!({"spec": {"storageClassName": "local", "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "500Mi"}}}});
        let class = |provisioner: &str| {
            Some(
                json!({"metadata": {"name": "local"}, "provisioner": provisioner,
                "volumeBindingMode": "WaitForFirstConsumer"}),
            )
        };
        let none = cluster(claim.clone(), &[], class(NO_PROVISIONER));
        assert_eq!(VolumeBinding.pre_filter(&claim_pod(), &none), Ok(()));
        assert_eq!(
            filter(&none, &node("a", json!({}))),
            Verdict::Unschedulable(vec![BIND_CONFLICT.into()])
        );
        let one = cluster(
            claim.clone(),
            &[local_pv("pv-b", "b")],
            class(NO_PROVISIONER),
        );
        assert_eq!(filter(&one, &node("b", json!({}))), Verdict::Fits);
        assert!(matches!(
            filter(&one, &node("a", json!({}))),
            Verdict::Unschedulable(_)
        ));
        let dynamic = cluster(claim, &[], class("rancher.io/local-path"));
        assert_eq!(filter(&dynamic, &node("a", json!({}))), Verdict::Fits);
    }

    #[test]
    fn pre_bind_reserves_the_smallest_volume_or_selects_the_node() {
        let claim = json!({"spec": {"storageClassName": "local", "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "500Mi"}}}});
        let class = json!({"metadata": {"name": "local"}, "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer"});
        let mut big = local_pv("big", "a");
        big["spec"]["capacity"]["storage"] = json!("10Gi");
        let volumes = [big, local_pv("small", "a"), local_pv("elsewhere", "b")];
        let c = cluster(claim.clone(), &volumes, Some(class.clone()));
        let (p, a) = (claim_pod(), node("a", json!({})));
        let prepared = VolumeBinding.prepare(&p, &[&a], &c);
        let writes = VolumeBinding.pre_bind(&p, &a, &prepared);
        let [PreBind::Volume(name, patch)] = writes.as_slice() else {
            panic!("{writes:?}")
        };
        assert_eq!(name, "small");
        assert_eq!(patch["spec"]["claimRef"]["name"], "c");
        let dynamic = cluster(claim, &[], Some(class));
        let prepared = VolumeBinding.prepare(&p, &[&a], &dynamic);
        assert_eq!(
            VolumeBinding.pre_bind(&p, &a, &prepared),
            vec![PreBind::Claim(
                "default".into(),
                "c".into(),
                json!({"metadata": {"resourceVersion": null,
                    "annotations": {SELECTED_NODE: "a"}}})
            )]
        );
    }
}
