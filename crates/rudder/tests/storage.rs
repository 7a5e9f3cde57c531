//! Persistent volumes end to end, as root, with the real kubectl: a claim binds to the
//! smallest hand-made hostPath volume that fits, a pod writes to it and another reads what
//! the first wrote once it is gone, a claim nothing fits stays Pending with upstream's event,
//! and the claim's deletion releases its volume (Retain keeps the data).

#[path = "support/pods.rs"]
mod pods;
mod support;
#[path = "../../image/tests/support/testimage.rs"]
mod testimage;

use pods::{busybox, get, jsonpath, node_ready, patiently, patiently_see};
use support::Cluster;

/// Two volumes of the directory `dir` (1 GiB and 100 MiB) and claims of 500 MiB and 5 GiB.
fn volumes_and_claims(dir: &str) -> String {
    let volume = |name: &str, size: &str| {
        format!(
            "apiVersion: v1
kind: PersistentVolume
metadata: {{name: {name}}}
spec:
  capacity: {{storage: {size}}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ''
  hostPath: {{path: '{dir}', type: Directory}}
---
"
        )
    };
    let claim = |name: &str, size: &str| {
        format!(
            "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {name}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ''
  resources: {{requests: {{storage: {size}}}}}
---
"
        )
    };
    [
        volume("big", "1Gi"),
        volume("small", "100Mi"),
        claim("data", "500Mi"),
        claim("huge", "5Gi"),
    ]
    .concat()
}

/// A pod that runs `script` once with the claim `data` at /data.
fn pod(name: &str, image: &str, script: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: {image}
    command: [sh, -c, '{script}']
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes: [{{name: data, persistentVolumeClaim: {{claimName: data}}}}]
"
    )
}

fn succeeded(c: &Cluster, pod: &str) {
    patiently("the pod to succeed", 90, || {
        jsonpath(c, &["pod", pod], "{.status.phase}") == "Succeeded"
    });
}

#[test]
fn a_claim_binds_a_volume_whose_data_outlives_its_pods() {
    let image = busybox();
    let c = Cluster::start_with_agent("node-pv", 218, &[]);
    node_ready(&c, "node-pv");
    let dir = c.dir.path().join("volume");
    std::fs::create_dir(&dir).unwrap();
    c.apply(&volumes_and_claims(&dir.display().to_string()))
        .out();
    patiently("the claim to bind", 30, || {
        jsonpath(&c, &["pvc", "data"], "{.status.phase}") == "Bound"
    });
    assert_eq!(jsonpath(&c, &["pvc", "data"], "{.spec.volumeName}"), "big");
    let row = get(&c, &["get", "pvc", "data", "--no-headers"]);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[..5], ["data", "Bound", "big", "1Gi", "RWO"], "{row}");
    patiently("the volume to be Bound", 30, || {
        jsonpath(&c, &["pv", "big"], "{.status.phase}") == "Bound"
    });
    assert_eq!(
        jsonpath(&c, &["pv", "big"], "{.spec.claimRef.name}"),
        "data"
    );
    assert_eq!(
        jsonpath(&c, &["pv", "small"], "{.status.phase}"),
        "Available"
    );

    // Nothing fits 5Gi: Pending, with upstream's event.
    patiently_see(
        "the FailedBinding event",
        30,
        "no persistent volumes available for this claim and no storage class is set",
        || {
            get(
                &c,
                &[
                    "get",
                    "events",
                    "--field-selector",
                    "involvedObject.name=huge",
                    "-o",
                    "jsonpath={.items[*].message}",
                ],
            )
        },
    );
    assert_eq!(jsonpath(&c, &["pvc", "huge"], "{.status.phase}"), "Pending");

    c.apply(&pod("writer", &image.name, "echo kept > /data/file"))
        .out();
    succeeded(&c, "writer");
    assert_eq!(std::fs::read_to_string(dir.join("file")).unwrap(), "kept\n");
    c.kubectl(&["delete", "pod", "writer"]).out();
    c.apply(&pod("reader", &image.name, "cat /data/file")).out();
    succeeded(&c, "reader");
    assert_eq!(c.kubectl(&["logs", "reader"]).out(), "kept\n");
    c.kubectl(&["delete", "pod", "reader"]).out();

    c.kubectl(&["delete", "pvc", "data"]).out();
    patiently("the volume to be released", 30, || {
        jsonpath(&c, &["pv", "big"], "{.status.phase}") == "Released"
    });
    assert!(dir.join("file").exists(), "Retain keeps the data");
}
