//! Storage kinds, which have plain defaults only: PersistentVolumes, their claims,
//! StorageClasses and CSIDrivers.

use serde_json::json;

use super::defaults::Plain;

/// PersistentVolumes.
pub(super) static PERSISTENT_VOLUMES: Plain = Plain(|| {
    vec![
        ("/spec/persistentVolumeReclaimPolicy", json!("Retain")),
        ("/spec/volumeMode", json!("Filesystem")),
        ("/status/phase", json!("Pending")),
    ]
});

/// PersistentVolumeClaims.
pub(super) static PERSISTENT_VOLUME_CLAIMS: Plain = Plain(|| {
    vec![
        ("/spec/volumeMode", json!("Filesystem")),
        ("/status/phase", json!("Pending")),
    ]
});

/// StorageClasses.
pub(super) static STORAGE_CLASSES: Plain = Plain(|| {
    vec![
        ("/reclaimPolicy", json!("Delete")),
        ("/volumeBindingMode", json!("Immediate")),
    ]
});

/// CSIDrivers.
pub(super) static CSI_DRIVERS: Plain = Plain(|| {
    vec![
        ("/spec/attachRequired", json!(true)),
        ("/spec/podInfoOnMount", json!(false)),
        ("/spec/storageCapacity", json!(false)),
        ("/spec/fsGroupPolicy", json!("ReadWriteOnceWithFSType")),
        ("/spec/requiresRepublish", json!(false)),
        ("/spec/seLinuxMount", json!(false)),
        ("/spec/volumeLifecycleModes", json!(["Persistent"])),
    ]
});
