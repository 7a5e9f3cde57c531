//! The StatefulSet controller inside `rudder server`, driven through kubectl on simulated
//! nodes: pods come up one at a time in ordinal order with their claims, scale down from
//! the highest ordinal, roll out down to the partition with ControllerRevisions `kubectl
//! rollout` reads, and a Parallel set creates and deletes all at once.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{Cluster, Simulator, consistently, eventually};

fn get(c: &Cluster, args: &[&str]) -> String {
    c.kubectl(args).stdout.trim().to_string()
}

fn jsonpath(c: &Cluster, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let path = format!("jsonpath={path}");
    args.extend(["-o", path.as_str()]);
    get(c, &args)
}

/// Names of the pods with label app=`app` that are not being deleted, sorted.
fn live_pods(c: &Cluster, app: &str) -> Vec<String> {
    let out = get(
        c,
        &[
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ],
    );
    let mut names: Vec<String> = out
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?;
            f.next().is_none().then(|| name.to_string())
        })
        .collect();
    names.sort();
    names
}

/// The lines of a `kubectl get pods -w` log (`name|ready|deletionTimestamp`).
fn watched(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The index of the first watched line about `pod` that satisfies `cond` (fields: name,
/// Ready status, deletion timestamp).
fn first(lines: &[String], pod: &str, cond: impl Fn(&[&str]) -> bool) -> Option<usize> {
    lines.iter().position(|l| {
        let f: Vec<&str> = l.split('|').collect();
        f.first() == Some(&pod) && cond(&f)
    })
}

/// Whether a watched line shows the pod being deleted.
fn is_going(f: &[&str]) -> bool {
    f.get(2).is_some_and(|t| !t.is_empty())
}

const WATCH: &str = "jsonpath={.metadata.name}|{.status.conditions[?(@.type==\"Ready\")].status}|\
    {.metadata.deletionTimestamp}{\"\\n\"}";

/// The claims wait for their first consumer in a class that provisions (as k3s' local-path):
/// the scheduler places their pods, where unbound Immediate claims would keep them Pending.
const WEB: &str = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: local}\n\
    provisioner: rancher.io/local-path\nvolumeBindingMode: WaitForFirstConsumer\n---\n\
    apiVersion: v1\nkind: Service\nmetadata: {name: nginx}\nspec:\n  \
    clusterIP: None\n  selector: {app: web}\n  ports: [{port: 80, name: web}]\n---\n\
    apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web}\nspec:\n  replicas: 3\n  \
    serviceName: nginx\n  selector: {matchLabels: {app: web}}\n  template:\n    \
    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: app\n        \
    image: nginx:1.25\n        volumeMounts: [{name: data, mountPath: /data}]\n  \
    volumeClaimTemplates:\n  - metadata: {name: data}\n    spec:\n      \
    storageClassName: local\n      \
    accessModes: [ReadWriteOnce]\n      resources: {requests: {storage: 1Gi}}\n";

/// The image of pod `pod`'s first container.
fn image_of(c: &Cluster, pod: &str) -> String {
    jsonpath(c, &["pod", pod], "{.spec.containers[0].image}")
}

#[test]
fn ordered_sets_start_in_order_with_claims_scale_down_and_roll_out_to_the_partition() {
    let c = Cluster::start(&[]);
    let _sim = Simulator::start(&c, &["--nodes", "2"]);
    let log = c.dir.path().join("pods.log");
    let mut watch =
        c.kubectl_background(&["get", "pods", "-l", "app=web", "-w", "-o", WATCH], &log);
    // Give the watch a moment to be established before anything happens.
    std::thread::sleep(std::time::Duration::from_secs(2));
    pods_start_in_ordinal_order(&c, &log);
    pods_have_identity_claims_and_a_revision(&c);
    scale_down_from_the_highest_ordinal(&c, &log);
    let update = roll_out_down_to_the_partition(&c, &log);
    finish_the_rollout(&c, &update);
    let _ = watch.kill();
    let _ = watch.wait();
}

/// The set rolls out its three pods, each created only once the one before it was Ready.
fn pods_start_in_ordinal_order(c: &Cluster, log: &Path) {
    c.apply(WEB).out();
    let rollout = c.kubectl(&["rollout", "status", "statefulset/web", "--timeout=120s"]);
    assert!(
        rollout.out().contains("3 new pods have been updated"),
        "{}",
        rollout.stdout
    );
    assert_eq!(live_pods(c, "web"), ["web-0", "web-1", "web-2"]);

    // Each pod appeared only once the one before it was Ready.
    eventually("the watch to see web-2", || {
        first(&watched(log), "web-2", |_| true).is_some()
    });
    let lines = watched(log);
    for (before, after) in [("web-0", "web-1"), ("web-1", "web-2")] {
        let ready = first(&lines, before, |f| f.get(1) == Some(&"True"))
            .unwrap_or_else(|| panic!("{before} never Ready: {lines:?}"));
        let created = first(&lines, after, |_| true).unwrap();
        assert!(
            ready < created,
            "{after} before {before} was Ready: {lines:?}"
        );
    }
    let ready_at = jsonpath(
        c,
        &["pod", "web-0"],
        "{.status.conditions[?(@.type==\"Ready\")].lastTransitionTime}",
    );
    let created_at = jsonpath(c, &["pod", "web-1"], "{.metadata.creationTimestamp}");
    assert!(created_at >= ready_at, "{created_at} < {ready_at}");
}

/// Each pod has its stable name, its claim and the set's revision; events and status say so.
fn pods_have_identity_claims_and_a_revision(c: &Cluster) {
    // Identity, storage and revision.
    assert_eq!(
        jsonpath(c, &["pod", "web-1"], "{.spec.hostname} {.spec.subdomain}"),
        "web-1 nginx"
    );
    let update = jsonpath(c, &["sts", "web"], "{.status.updateRevision}");
    assert!(update.starts_with("web-"), "{update}");
    assert_eq!(
        jsonpath(
            c,
            &["pod", "web-1"],
            "{.metadata.labels.statefulset\\.kubernetes\\.io/pod-name} \
             {.metadata.labels.apps\\.kubernetes\\.io/pod-index} \
             {.metadata.labels.controller-revision-hash} \
             {.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}"
        ),
        format!("web-1 1 {update} StatefulSet/web")
    );
    assert_eq!(
        jsonpath(
            c,
            &["pod", "web-1"],
            "{.spec.volumes[?(@.name==\"data\")].persistentVolumeClaim.claimName}"
        ),
        "data-web-1"
    );
    assert_eq!(
        jsonpath(c, &["pvc"], "{.items[*].metadata.name}"),
        "data-web-0 data-web-1 data-web-2"
    );
    assert_eq!(
        jsonpath(c, &["pvc", "data-web-0"], "{.metadata.labels.app}"),
        "web"
    );
    let events = jsonpath(
        c,
        &["events", "--field-selector", "involvedObject.name=web"],
        "{range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    );
    for line in [
        "SuccessfulCreate: create Claim data-web-0 Pod web-0 in StatefulSet web success",
        "SuccessfulCreate: create Pod web-0 in StatefulSet web successful",
        "SuccessfulCreate: create Pod web-2 in StatefulSet web successful",
    ] {
        assert!(events.contains(line), "{line} missing from {events}");
    }
    assert_eq!(
        jsonpath(
            c,
            &["controllerrevisions"],
            "{range .items[*]}{.metadata.name} {.revision}{end}"
        ),
        format!("{update} 1")
    );
    let status = jsonpath(
        c,
        &["sts", "web"],
        "{.status.replicas} {.status.readyReplicas} {.status.availableReplicas} \
         {.status.currentReplicas} {.status.updatedReplicas} {.status.currentRevision}",
    );
    assert_eq!(status, format!("3 3 3 3 3 {update}"));
}

/// Scaling down removes the highest ordinal first and keeps the claims; then back to three.
fn scale_down_from_the_highest_ordinal(c: &Cluster, log: &Path) {
    // Scaling down removes the highest ordinal first, one at a time; claims stay.
    c.kubectl(&["scale", "statefulset", "web", "--replicas=1"])
        .out();
    eventually("one pod left", || live_pods(c, "web") == ["web-0"]);
    eventually("web-1 seen going", || {
        first(&watched(log), "web-1", is_going).is_some()
    });
    let lines = watched(log);
    let web2_going = first(&lines, "web-2", is_going).unwrap();
    let web1_going = first(&lines, "web-1", is_going).unwrap();
    assert!(
        web2_going < web1_going,
        "web-1 went before web-2: {lines:?}"
    );
    assert_eq!(
        jsonpath(c, &["pvc"], "{.items[*].metadata.name}"),
        "data-web-0 data-web-1 data-web-2"
    );
    c.kubectl(&["scale", "statefulset", "web", "--replicas=3"])
        .out();
    c.kubectl(&["rollout", "status", "statefulset/web", "--timeout=120s"])
        .out();
}

/// A rollout with partition 1 replaces web-2 then web-1 and keeps web-0; returns the update
/// revision.
fn roll_out_down_to_the_partition(c: &Cluster, log: &Path) -> String {
    // A new image with partition 1: web-2 then web-1 are replaced, web-0 is kept.
    c.kubectl(&[
        "patch",
        "statefulset",
        "web",
        "-p",
        r#"{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":1}}}}"#,
    ])
    .out();
    let mark = watched(log).len();
    c.kubectl(&["set", "image", "statefulset/web", "app=nginx:1.26"])
        .out();
    let rollout = c.kubectl(&["rollout", "status", "statefulset/web", "--timeout=120s"]);
    assert!(
        rollout
            .out()
            .contains("partitioned roll out complete: 2 new pods have been updated"),
        "{}",
        rollout.stdout
    );
    assert_eq!(image_of(c, "web-0"), "nginx:1.25");
    assert_eq!(image_of(c, "web-1"), "nginx:1.26");
    assert_eq!(image_of(c, "web-2"), "nginx:1.26");
    let lines = watched(log)[mark..].to_vec();
    let web2_going = first(&lines, "web-2", is_going).unwrap();
    let web1_going = first(&lines, "web-1", is_going).unwrap();
    assert!(
        web2_going < web1_going,
        "web-1 updated before web-2: {lines:?}"
    );
    let (current, update) = (
        jsonpath(c, &["sts", "web"], "{.status.currentRevision}"),
        jsonpath(c, &["sts", "web"], "{.status.updateRevision}"),
    );
    assert_ne!(current, update);
    assert_eq!(
        jsonpath(
            c,
            &["pod", "web-0"],
            "{.metadata.labels.controller-revision-hash}"
        ),
        current
    );
    assert_eq!(
        jsonpath(
            c,
            &["sts", "web"],
            "{.status.currentReplicas} {.status.updatedReplicas}"
        ),
        "1 2"
    );
    let history = get(c, &["rollout", "history", "statefulset/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    update
}

/// Partition 0 finishes the rollout: the update revision becomes the current one.
fn finish_the_rollout(c: &Cluster, update: &str) {
    c.kubectl(&[
        "patch",
        "statefulset",
        "web",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ])
    .out();
    c.kubectl(&["rollout", "status", "statefulset/web", "--timeout=120s"])
        .out();
    eventually("the rollout complete", || {
        jsonpath(c, &["sts", "web"], "{.status.currentRevision}") == update
    });
    assert_eq!(image_of(c, "web-0"), "nginx:1.26");
}

fn parallel(name: &str, policy: &str) -> String {
    // Pods nothing can schedule: they stay Pending, so only Parallel gets past the first.
    format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: {name}}}\nspec:\n  \
         replicas: 3\n  podManagementPolicy: {policy}\n  serviceName: {name}\n  \
         persistentVolumeClaimRetentionPolicy: {{whenDeleted: Delete, whenScaled: Delete}}\n  \
         selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    \
         metadata: {{labels: {{app: {name}}}}}\n    spec:\n      \
         nodeSelector: {{nowhere: 'true'}}\n      \
         containers: [{{name: app, image: nginx}}]\n  volumeClaimTemplates:\n  \
         - metadata: {{name: data}}\n    spec:\n      accessModes: [ReadWriteOnce]\n      \
         resources: {{requests: {{storage: 1Gi}}}}\n"
    )
}

// conformance: 254
#[test]
fn parallel_sets_create_and_delete_all_at_once_and_claims_follow_the_retention_policy() {
    let c = Cluster::start(&[]);
    c.apply(&parallel("par", "Parallel")).out();
    c.apply(&parallel("ord", "OrderedReady")).out();
    eventually("three parallel pods", || {
        live_pods(&c, "par") == ["par-0", "par-1", "par-2"]
    });
    eventually("the ordered set's first pod", || {
        live_pods(&c, "ord") == ["ord-0"]
    });
    // The ordered set waits for ord-0 to be Ready, which never comes.
    consistently(
        "the ordered set waiting at ord-0",
        Duration::from_secs(2),
        || live_pods(&c, "ord") == ["ord-0"],
    );
    assert_eq!(jsonpath(&c, &["sts", "par"], "{.status.replicas}"), "3");

    // whenDeleted: Delete: the set owns its claims.
    eventually("claims owned by the set", || {
        jsonpath(
            &c,
            &["pvc", "-l", "app=par"],
            "{range .items[*]}{.metadata.name}={.metadata.ownerReferences[*].kind} {end}",
        ) == "data-par-0=StatefulSet data-par-1=StatefulSet data-par-2=StatefulSet"
    });

    // Scaling down deletes every pod beyond at once; whenScaled: Delete hands their claims
    // to the pods, and the garbage collector removes them with the pods.
    c.kubectl(&["scale", "statefulset", "par", "--replicas=1"])
        .out();
    eventually("one parallel pod", || live_pods(&c, "par") == ["par-0"]);
    eventually("the scaled-down claims gone", || {
        jsonpath(&c, &["pvc", "-l", "app=par"], "{.items[*].metadata.name}") == "data-par-0"
    });

    // Deleting the set takes its pods and, by its ownership, the remaining claim.
    c.kubectl(&["delete", "statefulset", "par"]).out();
    eventually("the set's claim gone", || {
        jsonpath(&c, &["pvc", "-l", "app=par"], "{.items[*].metadata.name}").is_empty()
    });
}
