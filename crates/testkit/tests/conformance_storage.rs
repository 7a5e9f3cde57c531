//! Conformance, storage: the storage APIs' lifecycles through the API server alone:
//! StorageClasses, CSIDrivers, CSINodes and VolumeAttachments (create, get, list by label,
//! watch, patch, update, delete, deletecollection), PersistentVolumes with their claims
//! (lifecycle and status), and a VolumeAttachment's status.

mod support;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::{CSIDriver, CSINode, StorageClass, VolumeAttachment};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{discovered, every_verb, object};
use testkit::TestServer;

// conformance: 620
#[tokio::test]
async fn storage_classes_live_through_every_verb() {
    let server = TestServer::start().await;
    assert!(
        discovered(&server, "storage.k8s.io/v1")
            .await
            .contains(&"storageclasses".into())
    );
    let api: Api<StorageClass> = Api::all(server.client());
    every_verb(&api, |name| {
        object(name, json!({"provisioner": "e2e-fake-provisioner"}))
    })
    .await;
}

// conformance: 499
#[tokio::test]
async fn csi_drivers_live_through_every_verb() {
    let server = TestServer::start().await;
    let api: Api<CSIDriver> = Api::all(server.client());
    every_verb(&api, |name| {
        object(name, json!({"spec": {"attachRequired": true}}))
    })
    .await;
}

// conformance: 504
#[tokio::test]
async fn csi_nodes_live_through_every_verb() {
    let server = TestServer::start().await;
    let api: Api<CSINode> = Api::all(server.client());
    let driver = json!({"name": "e2e.example.com", "nodeID": "node-1", "topologyKeys": []});
    every_verb(&api, |name| {
        object(name, json!({"spec": {"drivers": [driver]}}))
    })
    .await;
}

fn attachment(name: &str) -> VolumeAttachment {
    let spec = json!({"attacher": "e2e.example.com", "nodeName": "node-1",
        "source": {"persistentVolumeName": format!("pv-{name}")}});
    object(name, json!({"spec": spec}))
}

// conformance: 633
#[tokio::test]
async fn volume_attachments_live_through_every_verb() {
    let server = TestServer::start().await;
    let api: Api<VolumeAttachment> = Api::all(server.client());
    every_verb(&api, attachment).await;
}

fn attached(va: &VolumeAttachment) -> bool {
    va.status.as_ref().is_some_and(|s| s.attached)
}

// conformance: 632
#[tokio::test]
async fn a_volume_attachment_status_is_read_patched_and_replaced() {
    let server = TestServer::start().await;
    let api: Api<VolumeAttachment> = Api::all(server.client());
    api.create(&PostParams::default(), &attachment("va-status"))
        .await
        .unwrap();
    let label = json!({"metadata": {"labels": {"va-patched": "true"}}});
    let patched = api
        .patch("va-status", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["va-patched"], "true");
    assert!(!attached(&api.get_status("va-status").await.unwrap()));

    let status = json!({"status": {"attached": true}});
    let patched = api
        .patch_status("va-status", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert!(attached(&patched));
    let mut current = api.get_status("va-status").await.unwrap();
    current.status.as_mut().unwrap().attached = false;
    let updated = api
        .replace_status("va-status", &PostParams::default(), &current)
        .await
        .unwrap();
    assert!(!attached(&updated));
    assert!(!attached(&api.get("va-status").await.unwrap()));

    api.delete("va-status", &DeleteParams::default())
        .await
        .unwrap();
    assert!(api.get_opt("va-status").await.unwrap().is_none());
}

/// A CSI PersistentVolume `name` labelled `e2e-pv-pool=pv-e2e`.
fn volume(name: &str) -> PersistentVolume {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"e2e-pv-pool": "pv-e2e"}},
        "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "e2e", "persistentVolumeReclaimPolicy": "Retain",
            "csi": {"driver": "e2e-driver", "volumeHandle": "e2e-conformance"}},
    }))
    .unwrap()
}

/// A PersistentVolumeClaim `name` labelled `e2e-pvc-pool=pvc-e2e`.
fn claim(name: &str) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"e2e-pvc-pool": "pvc-e2e"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "e2e",
            "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .unwrap()
}

/// Whether `obj` carries the label `key=value`.
fn labelled_with(obj: &impl kube::Resource, key: &str, value: &str) -> bool {
    let labels = obj.meta().labels.as_ref();
    labels.and_then(|l| l.get(key)).is_some_and(|v| v == value)
}

/// The finalizers the `StorageObjectInUseProtection` admission step adds.
const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// A deleted claim or volume stays while its protection finalizer holds it; the protection
/// controllers (the test kit runs none) remove the finalizer once nothing uses it: do so.
async fn release<K>(api: &Api<K>, name: &str, finalizer: &str)
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
{
    let held = api.get(name).await.unwrap();
    assert!(
        held.meta().deletion_timestamp.is_some(),
        "{name} is being deleted"
    );
    assert_eq!(held.meta().finalizers, Some(vec![finalizer.to_string()]));
    let unheld = json!({"metadata": {"finalizers": null}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&unheld))
        .await
        .unwrap();
}

// conformance: 564
#[tokio::test]
async fn a_pv_and_a_pvc_live_through_every_verb() {
    let server = TestServer::start().await;
    let pvs: Api<PersistentVolume> = Api::all(server.client());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(server.client(), "default");
    let pv = pvs
        .create(&PostParams::default(), &volume("pv-e2e"))
        .await
        .unwrap();
    let pvc = pvcs
        .create(&PostParams::default(), &claim("pvc-e2e"))
        .await
        .unwrap();
    let pv_selector = ListParams::default().labels("e2e-pv-pool=pv-e2e");
    assert_eq!(pvs.list(&pv_selector).await.unwrap().items.len(), 1);
    assert_eq!(
        pvcs.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );

    let patch = json!({"metadata": {"labels": {"pv-e2e": "patched"}}});
    let patched = pvs
        .patch("pv-e2e", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert!(labelled_with(&patched, "pv-e2e", "patched"));
    let patch = json!({"metadata": {"labels": {"pvc-e2e": "patched"}}});
    let patched = pvcs
        .patch("pvc-e2e", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert!(labelled_with(&patched, "pvc-e2e", "patched"));
    assert_eq!(
        pvs.get("pv-e2e").await.unwrap().metadata.uid,
        pv.metadata.uid
    );
    assert_eq!(
        pvcs.get("pvc-e2e").await.unwrap().metadata.uid,
        pvc.metadata.uid
    );

    pvcs.delete("pvc-e2e", &DeleteParams::default())
        .await
        .unwrap();
    pvs.delete("pv-e2e", &DeleteParams::default())
        .await
        .unwrap();
    release(&pvcs, "pvc-e2e", PVC_PROTECTION).await;
    release(&pvs, "pv-e2e", PV_PROTECTION).await;
    assert!(pvcs.get_opt("pvc-e2e").await.unwrap().is_none());
    assert!(pvs.get_opt("pv-e2e").await.unwrap().is_none());

    pvs.create(&PostParams::default(), &volume("pv-e2e-2"))
        .await
        .unwrap();
    pvcs.create(&PostParams::default(), &claim("pvc-e2e-2"))
        .await
        .unwrap();
    let mut current = pvs.get("pv-e2e-2").await.unwrap();
    current
        .metadata
        .labels
        .get_or_insert_default()
        .insert("pv-e2e".into(), "updated".into());
    let updated = pvs
        .replace("pv-e2e-2", &PostParams::default(), &current)
        .await
        .unwrap();
    assert!(labelled_with(&updated, "pv-e2e", "updated"));
    let mut current = pvcs.get("pvc-e2e-2").await.unwrap();
    current
        .metadata
        .labels
        .get_or_insert_default()
        .insert("pvc-e2e".into(), "updated".into());
    let updated = pvcs
        .replace("pvc-e2e-2", &PostParams::default(), &current)
        .await
        .unwrap();
    assert!(labelled_with(&updated, "pvc-e2e", "updated"));

    let pvc_selector = ListParams::default().labels("pvc-e2e=updated");
    let everywhere: Api<PersistentVolumeClaim> = Api::all(server.client());
    assert_eq!(everywhere.list(&pvc_selector).await.unwrap().items.len(), 1);
    pvcs.delete_collection(&DeleteParams::default(), &pvc_selector)
        .await
        .unwrap();
    release(&pvcs, "pvc-e2e-2", PVC_PROTECTION).await;
    assert!(pvcs.list(&pvc_selector).await.unwrap().items.is_empty());
    pvs.delete_collection(&DeleteParams::default(), &pv_selector)
        .await
        .unwrap();
    release(&pvs, "pv-e2e-2", PV_PROTECTION).await;
    assert!(pvs.list(&pv_selector).await.unwrap().items.is_empty());
}

fn claim_condition_types(pvc: &PersistentVolumeClaim) -> Vec<String> {
    let conditions = pvc.status.as_ref().and_then(|s| s.conditions.clone());
    conditions
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.type_)
        .collect()
}

// conformance: 563
#[tokio::test]
async fn pv_and_pvc_statuses_are_read_patched_and_replaced() {
    let server = TestServer::start().await;
    let pvs: Api<PersistentVolume> = Api::all(server.client());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(server.client(), "default");
    pvs.create(&PostParams::default(), &volume("pv-status"))
        .await
        .unwrap();
    pvcs.create(&PostParams::default(), &claim("pvc-status"))
        .await
        .unwrap();
    let phase = pvcs
        .get_status("pvc-status")
        .await
        .unwrap()
        .status
        .unwrap()
        .phase;
    assert!(
        matches!(phase.as_deref(), Some("Pending" | "Bound")),
        "{phase:?}"
    );
    let phase = pvs
        .get_status("pv-status")
        .await
        .unwrap()
        .status
        .unwrap()
        .phase;
    assert!(
        matches!(phase.as_deref(), Some("Available" | "Bound" | "Pending")),
        "{phase:?}"
    );

    let patch = json!({"status": {"conditions": [{"type": "StatusPatched", "status": "True",
        "reason": "E2E patchedStatus", "message": "Set from e2e test"}]}});
    let patched = pvcs
        .patch_status("pvc-status", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(claim_condition_types(&patched), ["StatusPatched"]);
    let patch = json!({"status": {"message": "StatusPatched", "reason": "E2E patchStatus"}});
    let patched = pvs
        .patch_status("pv-status", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let status = patched.status.unwrap();
    assert_eq!(
        (status.reason.as_deref(), status.message.as_deref()),
        (Some("E2E patchStatus"), Some("StatusPatched"))
    );

    let mut current = pvcs.get("pvc-status").await.unwrap();
    let condition = json!({"type": "StatusUpdated", "status": "True",
        "reason": "E2E updateStatus", "message": "Set from e2e test"});
    let conditions = current
        .status
        .as_mut()
        .unwrap()
        .conditions
        .get_or_insert_default();
    conditions.push(serde_json::from_value(condition).unwrap());
    let updated = pvcs
        .replace_status("pvc-status", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(
        claim_condition_types(&updated),
        ["StatusPatched", "StatusUpdated"]
    );
    let mut current = pvs.get("pv-status").await.unwrap();
    let status = current.status.as_mut().unwrap();
    status.reason = Some("E2E updateStatus".into());
    status.message = Some("StatusUpdated".into());
    let updated = pvs
        .replace_status("pv-status", &PostParams::default(), &current)
        .await
        .unwrap();
    let status = updated.status.unwrap();
    assert_eq!(
        (status.reason.as_deref(), status.message.as_deref()),
        (Some("E2E updateStatus"), Some("StatusUpdated"))
    );
}
