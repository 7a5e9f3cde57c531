//! Persistent volumes end to end, as root, with the real kubectl: a claim binds to the
//! smallest hand-made hostPath volume that fits, a pod writes to it and another reads what
//! the first wrote once it is gone, a claim nothing fits stays Pending with upstream's event,
//! and the claim's deletion releases its volume (Retain keeps the data); a claim naming no
//! class gets the default one once there is one. A StatefulSet's claim
//! templates are provisioned by the default `local-path` class on the node its pods land on,
//! each pod finds its own file again once the set is recreated, and a deleted claim's
//! directory goes with its volume. A generic ephemeral volume gets a claim owned by its pod,
//! provisioned the same way, and gone with the pod. A `ReadWriteOncePod` claim serves one
//! pod: a second waits, unschedulable, until the first is gone.

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
        || event_messages(&c, "huge"),
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
    a_class_less_claim_gets_the_default_class_once_there_is_one(&c);
}

/// Events about `name`, their messages.
fn event_messages(c: &Cluster, name: &str) -> String {
    let field = format!("involvedObject.name={name}");
    let args = ["get", "events", "--field-selector", &field];
    get(
        c,
        &[&args[..], &["-o", "jsonpath={.items[*].message}"]].concat(),
    )
}

/// With no default class, a claim naming none gets none and waits with upstream's event;
/// once a class is marked default, the claim gets it (upstream's retroactive assignment).
fn a_class_less_claim_gets_the_default_class_once_there_is_one(c: &Cluster) {
    let mark = |on: bool| {
        let annotation = format!("storageclass.kubernetes.io/is-default-class={on}");
        let args = [
            "annotate",
            "storageclass",
            "local-path",
            &annotation,
            "--overwrite",
        ];
        c.kubectl(&args).out();
    };
    mark(false);
    c.apply(
        "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: later}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
",
    )
    .out();
    assert_eq!(
        jsonpath(c, &["pvc", "later"], "{.spec.storageClassName}"),
        ""
    );
    patiently_see(
        "the claim without a class to wait",
        30,
        "no persistent volumes available for this claim and no storage class is set",
        || event_messages(c, "later"),
    );
    mark(true);
    patiently("the default class to be given", 30, || {
        jsonpath(c, &["pvc", "later"], "{.spec.storageClassName}") == "local-path"
    });
}

/// A StatefulSet of `replicas` whose pods write their name to their volume unless it holds
/// one, and log what they found.
fn stateful_set(image: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  replicas: {replicas}
  serviceName: web
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: {image}
        command: [sh, -c, 'if [ -f /data/id ]; then echo found $(cat /data/id); else hostname > /data/id; echo wrote; fi; exec sleep 3600']
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 100Mi}}}}
"
    )
}

fn logs_say(c: &Cluster, pod: &str, want: &str) {
    patiently_see(&format!("{pod} to say {want:?}"), 90, want, || {
        c.kubectl(&["logs", pod]).stdout.trim().to_string()
    });
}

#[test]
fn local_path_volumes_follow_a_statefulsets_pods() {
    let image = busybox();
    let c = Cluster::start_with_agent("node-lp", 219, &["--local-path-helper-image", &image.name]);
    node_ready(&c, "node-lp");
    let row = get(&c, &["get", "storageclass", "local-path", "--no-headers"]);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..6],
        [
            "local-path",
            "(default)",
            "rancher.io/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "false"
        ],
        "{row}"
    );
    c.apply(&stateful_set(&image.name, 3)).out();
    for i in 0..3 {
        logs_say(&c, &format!("web-{i}"), "wrote");
    }
    let storage = c.dir.path().join("storage");
    let volume = jsonpath(&c, &["pvc", "data-web-1"], "{.spec.volumeName}");
    assert_eq!(
        jsonpath(&c, &["pvc", "data-web-1"], "{.spec.storageClassName}"),
        "local-path"
    );
    assert_eq!(
        jsonpath(
            &c,
            &["pv", &volume],
            "{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}"
        ),
        "node-lp"
    );
    let dir = storage.join(format!("{volume}_default_data-web-1"));
    assert_eq!(std::fs::read_to_string(dir.join("id")).unwrap(), "web-1\n");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o777, "the helper makes the directory 0777");

    // The set goes and comes back: each pod finds its own file.
    c.kubectl(&["delete", "statefulset", "web", "--wait=true"])
        .out();
    patiently("the pods to go", 60, || {
        get(&c, &["get", "pods", "-l", "app=web", "-o", "name"]).is_empty()
    });
    c.apply(&stateful_set(&image.name, 3)).out();
    for i in 0..3 {
        logs_say(&c, &format!("web-{i}"), &format!("found web-{i}"));
    }

    // A claim deleted (its pod gone first): the volume and its directory go too.
    c.kubectl(&["scale", "statefulset", "web", "--replicas=2"])
        .out();
    patiently("web-2 to go", 60, || {
        get(
            &c,
            &["get", "pods", "web-2", "--ignore-not-found", "-o", "name"],
        )
        .is_empty()
    });
    let gone = jsonpath(&c, &["pvc", "data-web-2"], "{.spec.volumeName}");
    let gone_dir = storage.join(format!("{gone}_default_data-web-2"));
    assert!(gone_dir.exists());
    c.kubectl(&["delete", "pvc", "data-web-2"]).out();
    patiently("the volume to be deleted", 60, || {
        get(
            &c,
            &["get", "pv", &gone, "--ignore-not-found", "-o", "name"],
        )
        .is_empty()
    });
    assert!(
        !gone_dir.exists(),
        "the helper removed {}",
        gone_dir.display()
    );
    assert!(dir.exists(), "the other volumes stay");
    ephemeral_volumes_go_with_their_pod(&c, &image.name);
    a_read_write_once_pod_claim_serves_one_pod(&c, &image.name);
    patiently("the helper pods to be removed once done", 60, || {
        let helpers = [
            "get",
            "pods",
            "-n",
            "kube-system",
            "-l",
            "app=local-path-provisioner",
        ];
        get(&c, &[&helpers[..], &["-o", "name"]].concat()).is_empty()
    });
}

/// A pod with a generic ephemeral volume: its claim `<pod>-<volume>` is made, owned by the
/// pod, provisioned on the pod's node; once the pod is deleted, the claim, the volume and its
/// directory go.
fn ephemeral_volumes_go_with_their_pod(c: &Cluster, image: &str) {
    c.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: scratch}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command: [sh, -c, 'echo here > /scratch/file && cat /scratch/file && exec sleep 3600']
    volumeMounts: [{{name: work, mountPath: /scratch}}]
  volumes:
  - name: work
    ephemeral:
      volumeClaimTemplate:
        metadata: {{labels: {{kind: scratch}}}}
        spec:
          accessModes: [ReadWriteOnce]
          resources: {{requests: {{storage: 10Mi}}}}
"
    ))
    .out();
    logs_say(c, "scratch", "here");
    assert_eq!(
        jsonpath(
            c,
            &["pvc", "scratch-work"],
            "{.metadata.ownerReferences[0].name}"
        ),
        "scratch"
    );
    assert_eq!(
        jsonpath(c, &["pvc", "scratch-work"], "{.metadata.labels.kind}"),
        "scratch"
    );
    let volume = jsonpath(c, &["pvc", "scratch-work"], "{.spec.volumeName}");
    let dir = c
        .dir
        .path()
        .join("storage")
        .join(format!("{volume}_default_scratch-work"));
    assert_eq!(std::fs::read_to_string(dir.join("file")).unwrap(), "here\n");
    c.kubectl(&["delete", "pod", "scratch"]).out();
    patiently("the claim and its volume to go with the pod", 90, || {
        get(c, &["get", "pvc,pv", "-o", "name"])
            .lines()
            .all(|l| !l.contains("scratch-work") && !l.ends_with(&volume))
    });
    patiently("the directory to go", 60, || !dir.exists());
}

/// Pod `name` running `sleep` with claim `solo` at /data.
fn solo_user(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: c, image: {image}, command: [sleep, '3600'], volumeMounts: [{{name: d, mountPath: /data}}]}}
  volumes: [{{name: d, persistentVolumeClaim: {{claimName: solo}}}}]
"
    )
}

/// A `ReadWriteOncePod` claim: its second pod is refused with upstream's reason until the
/// first is gone, then runs.
fn a_read_write_once_pod_claim_serves_one_pod(c: &Cluster, image: &str) {
    c.apply(
        "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: solo}
spec:
  accessModes: [ReadWriteOncePod]
  resources: {requests: {storage: 10Mi}}
",
    )
    .out();
    c.apply(&solo_user("first", image)).out();
    patiently("the first pod to run", 90, || {
        jsonpath(c, &["pod", "first"], "{.status.phase}") == "Running"
    });
    c.apply(&solo_user("second", image)).out();
    patiently_see(
        "the second pod refused",
        60,
        "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode",
        || {
            jsonpath(
                c,
                &["pod", "second"],
                "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
            )
        },
    );
    c.kubectl(&["delete", "pod", "first"]).out();
    patiently("the second pod to run", 90, || {
        jsonpath(c, &["pod", "second"], "{.status.phase}") == "Running"
    });
    c.kubectl(&["delete", "pod", "second"]).out();
}
