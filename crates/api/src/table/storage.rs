//! Printers of storage: persistent volumes and their claims, storage classes, CSI drivers and
//! nodes, volume attachments.

use jiff::Timestamp;
use serde_json::Value;

use super::{
    AGE, NAME, Printer, age, at, boolean, deleting, flag, integer, list_at, name, str_at, str_or,
    string, string_or_number, wide,
};

/// Persistent volumes: size, access, reclaim policy, phase and the claim bound to them.
pub(super) static PERSISTENT_VOLUMES: Printer = Printer {
    columns: &[
        NAME,
        string("Capacity"),
        string("Access Modes"),
        string("Reclaim Policy"),
        string("Status"),
        string("Claim"),
        string("StorageClass"),
        string("VolumeAttributesClass"),
        string("Reason"),
        AGE,
        wide("VolumeMode"),
    ],
    cells: persistent_volume_cells,
};

fn persistent_volume_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let claim = at(obj, "spec.claimRef").map_or(String::new(), |c| {
        format!("{}/{}", str_at(c, "namespace"), str_at(c, "name"))
    });
    let phase = if deleting(obj) {
        "Terminating"
    } else {
        str_or(obj, "status.phase", "Pending")
    };
    vec![
        name(obj),
        Value::from(
            string_or_number(obj["spec"]["capacity"].get("storage")).unwrap_or_else(|| "0".into()),
        ),
        Value::from(access_modes(list_at(obj, "spec.accessModes"))),
        Value::from(str_or(obj, "spec.persistentVolumeReclaimPolicy", "Retain")),
        Value::from(phase),
        Value::from(claim),
        Value::from(storage_class(obj)),
        Value::from(
            at(obj, "spec.volumeAttributesClassName")
                .and_then(Value::as_str)
                .unwrap_or("<unset>"),
        ),
        Value::from(str_at(obj, "status.reason")),
        age(obj, now),
        Value::from(str_or(obj, "spec.volumeMode", "Filesystem")),
    ]
}

/// Persistent volume claims: phase, the bound volume and what it gives them.
pub(super) static PERSISTENT_VOLUME_CLAIMS: Printer = Printer {
    columns: &[
        NAME,
        string("Status"),
        string("Volume"),
        string("Capacity"),
        string("Access Modes"),
        string("StorageClass"),
        string("VolumeAttributesClass"),
        AGE,
        wide("VolumeMode"),
    ],
    cells: persistent_volume_claim_cells,
};

fn persistent_volume_claim_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let phase = if deleting(obj) {
        "Terminating"
    } else {
        str_or(obj, "status.phase", "Pending")
    };
    // Capacity and access modes are the bound volume's, so shown once bound.
    let bound = !str_at(obj, "spec.volumeName").is_empty();
    let (capacity, modes) = if bound {
        (
            string_or_number(obj["status"]["capacity"].get("storage"))
                .unwrap_or_else(|| "0".into()),
            access_modes(list_at(obj, "status.accessModes")),
        )
    } else {
        (String::new(), String::new())
    };
    vec![
        name(obj),
        Value::from(phase),
        Value::from(str_at(obj, "spec.volumeName")),
        Value::from(capacity),
        Value::from(modes),
        Value::from(storage_class(obj)),
        Value::from(
            at(obj, "spec.volumeAttributesClassName")
                .and_then(Value::as_str)
                .unwrap_or("<unset>"),
        ),
        age(obj, now),
        Value::from(str_or(obj, "spec.volumeMode", "Filesystem")),
    ]
}

/// Access modes abbreviated, in upstream's fixed order: `RWO,ROX,RWX,RWOP`.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|x| x.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| has(m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// A volume's or claim's class: the beta annotation if set, else `spec.storageClassName`.
fn storage_class(obj: &Value) -> &str {
    obj["metadata"]["annotations"]
        .get("volume.beta.kubernetes.io/storage-class")
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_at(obj, "spec.storageClassName"))
}

/// Storage classes: the provisioner and policies; the default class is marked by its name.
pub(super) static STORAGE_CLASSES: Printer = Printer {
    columns: &[
        NAME,
        string("Provisioner"),
        string("ReclaimPolicy"),
        string("VolumeBindingMode"),
        string("AllowVolumeExpansion"),
        AGE,
    ],
    cells: storage_class_cells,
};

fn storage_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let annotations = &obj["metadata"]["annotations"];
    let default = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|a| annotations[a].as_str() == Some("true"));
    let shown = if default {
        format!("{} (default)", str_at(obj, "metadata.name"))
    } else {
        str_at(obj, "metadata.name").to_string()
    };
    vec![
        Value::from(shown),
        Value::from(str_at(obj, "provisioner")),
        Value::from(str_or(obj, "reclaimPolicy", "Delete")),
        Value::from(str_or(obj, "volumeBindingMode", "Immediate")),
        flag(obj, "allowVolumeExpansion", false),
        age(obj, now),
    ]
}

/// CSI drivers: what they ask of the kubelet and the volume modes they serve.
pub(super) static CSI_DRIVERS: Printer = Printer {
    columns: &[
        NAME,
        boolean("AttachRequired"),
        boolean("PodInfoOnMount"),
        boolean("StorageCapacity"),
        string("TokenRequests"),
        boolean("RequiresRepublish"),
        string("Modes"),
        AGE,
    ],
    cells: csi_driver_cells,
};

fn csi_driver_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let audiences = at(obj, "spec.tokenRequests").map_or("<unset>".into(), |t| {
        let list: Vec<&str> = t
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| str_at(t, "audience"))
            .collect();
        list.join(",")
    });
    let modes: Vec<&str> = list_at(obj, "spec.volumeLifecycleModes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    vec![
        name(obj),
        flag(obj, "spec.attachRequired", true),
        flag(obj, "spec.podInfoOnMount", false),
        flag(obj, "spec.storageCapacity", false),
        Value::from(audiences),
        flag(obj, "spec.requiresRepublish", false),
        Value::from(if modes.is_empty() {
            "Persistent".to_string()
        } else {
            modes.join(",")
        }),
        age(obj, now),
    ]
}

/// CSI nodes: how many drivers they run.
pub(super) static CSI_NODES: Printer = Printer {
    columns: &[NAME, integer("Drivers"), AGE],
    cells: csi_node_cells,
};

fn csi_node_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(list_at(obj, "spec.drivers").len()),
        age(obj, now),
    ]
}

/// Volume attachments: which attacher attaches which volume to which node, and whether done.
pub(super) static VOLUME_ATTACHMENTS: Printer = Printer {
    columns: &[
        NAME,
        string("Attacher"),
        string("PV"),
        string("Node"),
        boolean("Attached"),
        AGE,
    ],
    cells: volume_attachment_cells,
};

fn volume_attachment_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(str_at(obj, "spec.attacher")),
        Value::from(str_at(obj, "spec.source.persistentVolumeName")),
        Value::from(str_at(obj, "spec.nodeName")),
        flag(obj, "status.attached", false),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{meta, row};

    #[test]
    fn storage_class_and_volume_rows() {
        let sc = row(
            "storage.k8s.io",
            "v1",
            "storageclasses",
            json!({"metadata": {"name": "local", "creationTimestamp": "2026-01-01T00:00:00Z",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}),
        );
        assert_eq!(
            sc,
            vec![
                json!("local (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false),
                json!("60m"),
            ]
        );
        let pv = row(
            "",
            "v1",
            "persistentvolumes",
            json!({"metadata": meta(), "spec": {"capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteMany", "ReadWriteOnce"], "storageClassName": "local",
                "claimRef": {"namespace": "default", "name": "data"}}, "status": {"phase": "Bound"}}),
        );
        assert_eq!(
            &pv[1..8],
            [
                json!("10Gi"),
                json!("RWO,RWX"),
                json!("Retain"),
                json!("Bound"),
                json!("default/data"),
                json!("local"),
                json!("<unset>"),
            ]
        );
    }
}
