//! `rudder simulate` against a real server, checked with the real kubectl: simulated nodes
//! register Ready with their zones, renew their leases, run the pods bound to them and finish
//! their graceful deletion; Job pods complete, annotated pods fail or crash-loop; a node
//! annotated dead stops renewing its lease and handling its pods until the annotation goes;
//! processes given disjoint index ranges (`--first-index`) hand out distinct addresses.

mod support;

use std::time::Duration;

use support::{Cluster, Simulator, consistently, eventually};

const POD: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  nodeName: sim-1
  containers:
  - name: nginx
    image: nginx:1.25
";

/// The leases' renew times, by lease name.
fn renew_times(c: &Cluster) -> Vec<String> {
    let out = c.kubectl(&[
        "get",
        "leases",
        "-n",
        "kube-node-lease",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.spec.renewTime}{\"\\n\"}{end}",
    ]);
    let mut lines: Vec<String> = out.out().lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn simulated_nodes_register_renew_leases_and_run_pods() {
    let c = Cluster::start(&[]);
    let mut sim = Simulator::start(
        &c,
        &["--nodes", "3", "--zones", "2", "--lease-seconds", "1"],
    );

    // Three Ready nodes, spread over two zones, with the simulator's kubelet version.
    let mut nodes = String::new();
    eventually("three Ready nodes", || {
        sim.assert_running();
        let run = c.kubectl(&["get", "nodes", "-L", "topology.kubernetes.io/zone"]);
        nodes = run.stdout;
        run.ok
            && nodes
                .lines()
                .skip(1)
                .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
                .count()
                == 3
    });
    let rows: Vec<Vec<&str>> = nodes
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "ZONE"]
    );
    let mut seen: Vec<(&str, &str, &str, &str)> =
        rows[1..].iter().map(|r| (r[0], r[1], r[4], r[5])).collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("sim-0", "Ready", "v1.33.0-rudder-sim", "zone-0"),
            ("sim-1", "Ready", "v1.33.0-rudder-sim", "zone-1"),
            ("sim-2", "Ready", "v1.33.0-rudder-sim", "zone-0"),
        ],
        "{nodes}"
    );
    let ip = c.kubectl(&[
        "get",
        "node",
        "sim-1",
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    let node_ip = ip.out().to_string();
    assert!(node_ip.starts_with("10.200."), "{node_ip}");

    // One lease per node, renewed again and again.
    let mut first = Vec::new();
    eventually("a lease per node", || {
        first = renew_times(&c);
        first.len() == 3
    });
    for (lease, node) in first.iter().zip(["sim-0", "sim-1", "sim-2"]) {
        assert!(lease.starts_with(&format!("{node}=")), "{first:?}");
    }
    eventually("every lease renewed", || {
        sim.assert_running();
        let now = renew_times(&c);
        now.len() == 3 && now.iter().zip(&first).all(|(a, b)| a != b)
    });
    let holder = c.kubectl(&[
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        "sim-2",
        "-o",
        "jsonpath={.spec.holderIdentity} {.spec.leaseDurationSeconds}",
    ]);
    assert_eq!(holder.out(), "sim-2 40");

    // A pod bound to sim-1 (bypassing the scheduler) runs there with an IP of sim-1's block.
    assert_eq!(c.apply(POD).out(), "pod/web created\n");
    let mut line = String::new();
    eventually("the pod Running and ready", || {
        sim.assert_running();
        line = c.kubectl(&["get", "pod", "web", "--no-headers"]).stdout;
        let cols: Vec<&str> = line.split_whitespace().collect();
        cols.get(1) == Some(&"1/1") && cols.get(2) == Some(&"Running")
    });
    let wide = c.kubectl(&[
        "get",
        "pod",
        "web",
        "-o",
        "jsonpath={.status.podIP} {.status.hostIP} {.spec.nodeName} {.status.containerStatuses[0].containerID}",
    ]);
    let fields: Vec<&str> = wide.out().split(' ').collect();
    assert!(fields[0].starts_with("10.64.1."), "{fields:?}");
    assert_eq!(fields[1], node_ip);
    assert_eq!(fields[2], "sim-1");
    assert!(fields[3].starts_with("rudder-sim://"), "{fields:?}");
    let ready = c.kubectl(&[
        "get",
        "pod",
        "web",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(ready.out(), "True");

    // kubectl delete waits for the pod to go: the simulator finishes the graceful deletion.
    let deleted = c.kubectl(&["delete", "pod", "web", "--timeout=60s"]);
    assert_eq!(deleted.out(), "pod \"web\" deleted\n");
    let gone = c.kubectl(&["get", "pod", "web"]);
    assert!(gone.err().contains("NotFound"), "{}", gone.stderr);
    sim.assert_running();
}

/// The seconds since midnight of an RFC 3339 time such as `2025-01-01T12:34:56Z`.
fn seconds_of_day(time: &str) -> u32 {
    let clock = &time[time.find('T').unwrap() + 1..time.len() - 1];
    clock
        .split(':')
        .map(|part| part.parse::<u32>().unwrap())
        .fold(0, |total, part| total * 60 + part)
}

/// Waits until every node named is Ready.
fn wait_ready(c: &Cluster, sim: &mut Simulator, nodes: &[&str]) {
    eventually("the nodes Ready", || {
        sim.assert_running();
        let run = c.kubectl(&["get", "nodes", "--no-headers"]);
        let ready: Vec<&str> = run
            .stdout
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        run.ok && nodes.iter().all(|n| ready.contains(n))
    });
}

/// `kubectl get pod NAME -o jsonpath=PATH`.
fn pod_field(c: &Cluster, name: &str, path: &str) -> String {
    let run = c.kubectl(&["get", "pod", name, "-o", &format!("jsonpath={path}")]);
    run.out().to_string()
}

/// The STATUS and RESTARTS columns of `kubectl get pod NAME`.
fn pod_columns(c: &Cluster, name: &str) -> (String, String) {
    let line = c.kubectl(&["get", "pod", name, "--no-headers"]).stdout;
    let cols: Vec<&str> = line.split_whitespace().collect();
    (
        cols.get(2).unwrap_or(&"").to_string(),
        cols.get(3).unwrap_or(&"").to_string(),
    )
}

const JOB: &str = "
apiVersion: batch/v1
kind: Job
metadata:
  name: pi
spec:
  suspend: true
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: pi
        image: perl:5.34
";

#[test]
fn job_pods_complete_and_annotated_pods_fail_or_restart() {
    // The pod below plays the Job controller's part: the real one stays out of it.
    let c = Cluster::start(&["--disable-controller=job"]);
    let mut sim = Simulator::start(&c, &["--nodes", "1", "--lease-seconds", "1"]);
    wait_ready(&c, &mut sim, &["sim-0"]);

    job_pod_completes_and_others_run_on(&c, &mut sim);
    annotated_pod_fails(&c, &mut sim);
    annotated_pod_crash_loops(&c, &mut sim);
    finished_pods_are_left_alone(&c, &mut sim);
}

/// A pod owned by the Job succeeds after about a second, with upstream's statuses; a pod of
/// nobody's runs on.
fn job_pod_completes_and_others_run_on(c: &Cluster, sim: &mut Simulator) {
    // A pod owned by a Job (as the Job controller would create it) runs about a second and
    // succeeds; a pod of nobody's runs on.
    assert_eq!(c.apply(JOB).out(), "job.batch/pi created\n");
    let job = c.kubectl(&["get", "job", "pi", "-o", "jsonpath={.metadata.uid}"]);
    let job_uid = job.out().to_string();
    let pods = format!(
        "
apiVersion: v1
kind: Pod
metadata:
  name: pi-x7k2p
  labels:
    job-name: pi
  ownerReferences:
  - apiVersion: batch/v1
    kind: Job
    name: pi
    uid: {job_uid}
    controller: true
    blockOwnerDeletion: true
spec:
  nodeName: sim-0
  restartPolicy: Never
  containers:
  - name: pi
    image: perl:5.34
---
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  nodeName: sim-0
  containers:
  - name: nginx
    image: nginx:1.25
"
    );
    c.apply(&pods).out();
    eventually("the Job's pod Completed", || {
        sim.assert_running();
        pod_columns(c, "pi-x7k2p").0 == "Completed"
    });
    assert_eq!(pod_field(c, "pi-x7k2p", "{.status.phase}"), "Succeeded");
    let terminated = pod_field(
        c,
        "pi-x7k2p",
        "{.status.containerStatuses[0].state.terminated.exitCode} \
         {.status.containerStatuses[0].state.terminated.reason} \
         {.status.containerStatuses[0].ready} {.status.containerStatuses[0].started}",
    );
    assert_eq!(terminated, "0 Completed false false");
    let times = pod_field(
        c,
        "pi-x7k2p",
        "{.status.containerStatuses[0].state.terminated.startedAt} \
         {.status.containerStatuses[0].state.terminated.finishedAt}",
    );
    let (started, finished) = times.split_once(' ').unwrap();
    assert_eq!(
        (seconds_of_day(finished) + 86400 - seconds_of_day(started)) % 86400,
        1,
        "ran one second: {times}"
    );
    let reasons = pod_field(
        c,
        "pi-x7k2p",
        "{range .status.conditions[*]}{.type}={.status}/{.reason} {end}",
    );
    assert!(reasons.contains("Ready=False/PodCompleted"), "{reasons}");
    assert!(
        reasons.contains("ContainersReady=False/PodCompleted"),
        "{reasons}"
    );
    assert!(
        reasons.contains("PodReadyToStartContainers=False/"),
        "{reasons}"
    );
    assert_eq!(pod_columns(c, "web"), ("Running".into(), "0".into()));
}

/// A pod annotated to exit with code 3 fails.
fn annotated_pod_fails(c: &Cluster, sim: &mut Simulator) {
    // Annotations: exit code 3 at once, never restarted: Failed with reason Error.
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: fails
  annotations:
    simulate.rudder.dev/exit-code: "3"
    simulate.rudder.dev/duration: 0s
spec:
  nodeName: sim-0
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
"#,
    )
    .out();
    eventually("the failing pod in Error", || {
        sim.assert_running();
        pod_columns(c, "fails").0 == "Error"
    });
    let failed = pod_field(
        c,
        "fails",
        "{.status.phase} {.status.containerStatuses[0].state.terminated.exitCode} \
         {.status.containerStatuses[0].state.terminated.reason}",
    );
    assert_eq!(failed, "Failed 3 Error");
}

/// A pod annotated to exit with code 1 and restarting on failure crash-loops.
fn annotated_pod_crash_loops(c: &Cluster, sim: &mut Simulator) {
    // The same with restartPolicy OnFailure: restarted again and again after a back-off.
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: crashes
  annotations:
    simulate.rudder.dev/exit-code: "1"
    simulate.rudder.dev/duration: 0s
spec:
  nodeName: sim-0
  restartPolicy: OnFailure
  containers:
  - name: main
    image: busybox
"#,
    )
    .out();
    eventually("the crashing pod restarted twice", || {
        sim.assert_running();
        let restarts = pod_field(c, "crashes", "{.status.containerStatuses[0].restartCount}");
        restarts.parse::<u32>().is_ok_and(|n| n >= 2)
    });
    let crashing = pod_field(
        c,
        "crashes",
        "{.status.phase} {.status.containerStatuses[0].lastState.terminated.exitCode}",
    );
    assert_eq!(crashing, "Running 1");
    let (status, _) = pod_columns(c, "crashes");
    assert!(
        ["CrashLoopBackOff", "Running", "Error"].contains(&status.as_str()),
        "{status}"
    );
}

/// The finished pods stay finished and the running one runs on.
fn finished_pods_are_left_alone(c: &Cluster, sim: &mut Simulator) {
    // The Job's pod and the failed one are left alone from then on.
    consistently(
        "the finished pods and the running one left alone",
        Duration::from_secs(1),
        || {
            pod_columns(c, "pi-x7k2p").0 == "Completed"
                && pod_columns(c, "fails").0 == "Error"
                && pod_columns(c, "web") == ("Running".into(), "0".into())
        },
    );
    sim.assert_running();
}

/// A lease's renew time.
fn renew_time(c: &Cluster, node: &str) -> String {
    let run = c.kubectl(&[
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        node,
        "-o",
        "jsonpath={.spec.renewTime}",
    ]);
    run.out().to_string()
}

/// The STATUS column of `kubectl get node NAME`.
fn node_status(c: &Cluster, node: &str) -> String {
    let line = c.kubectl(&["get", "node", node, "--no-headers"]).stdout;
    line.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_node_annotated_dead_stops_until_the_annotation_goes() {
    let c = Cluster::start(&[]);
    let mut sim = Simulator::start(&c, &["--nodes", "2", "--lease-seconds", "1"]);
    wait_ready(&c, &mut sim, &["sim-0", "sim-1"]);
    assert_eq!(
        c.apply(&POD.replace("sim-1", "sim-0")).out(),
        "pod/web created\n"
    );
    eventually("the pod Running", || {
        sim.assert_running();
        pod_columns(&c, "web").0 == "Running"
    });

    // Dead: sim-0's lease is no longer renewed (sim-1's still is).
    let dead = c.kubectl(&["annotate", "node", "sim-0", "simulate.rudder.dev/dead=true"]);
    assert_eq!(dead.out(), "node/sim-0 annotated\n");
    // A renewal in flight may still land.
    std::thread::sleep(Duration::from_millis(1500));
    let (frozen, other) = (renew_time(&c, "sim-0"), renew_time(&c, "sim-1"));
    consistently(
        "the dead node's lease not renewed",
        Duration::from_secs(3),
        || {
            sim.assert_running();
            renew_time(&c, "sim-0") == frozen
        },
    );
    assert_ne!(renew_time(&c, "sim-1"), other, "the live node's is");

    // What a node-lifecycle controller does to a node whose lease expired: Ready Unknown. A dead
    // node does not answer it, nor does it finish its pods' graceful deletion.
    let unknown = r#"{"status":{"conditions":[{"type":"Ready","status":"Unknown","reason":"NodeStatusUnknown","message":"Kubelet stopped posting node status."}]}}"#;
    let patch = |node: &str| {
        c.kubectl(&[
            "patch",
            "node",
            node,
            "--subresource=status",
            "--type=strategic",
            "-p",
            unknown,
        ])
    };
    patch("sim-0").out();
    let deleted = c.kubectl(&["delete", "pod", "web", "--wait=false"]);
    assert_eq!(deleted.out(), "pod \"web\" deleted\n");
    consistently(
        "the dead node NotReady, its pod Terminating",
        Duration::from_secs(2),
        || node_status(&c, "sim-0") == "NotReady" && pod_columns(&c, "web").0 == "Terminating",
    );

    // A live node answers at once: its Ready condition is True again.
    patch("sim-1").out();
    eventually("sim-1 Ready again", || node_status(&c, "sim-1") == "Ready");

    // The annotation removed: the lease is renewed, the node Ready, the deletion finished.
    let alive = c.kubectl(&["annotate", "node", "sim-0", "simulate.rudder.dev/dead-"]);
    assert_eq!(alive.out(), "node/sim-0 annotated\n");
    eventually("sim-0's lease renewed again", || {
        sim.assert_running();
        renew_time(&c, "sim-0") != frozen
    });
    eventually("sim-0 Ready again", || node_status(&c, "sim-0") == "Ready");
    eventually("the pod gone", || !c.kubectl(&["get", "pod", "web"]).ok);
    let gone = c.kubectl(&["get", "pod", "web"]);
    assert!(gone.err().contains("NotFound"), "{}", gone.stderr);
    sim.assert_running();
}

#[test]
fn ready_waits_for_the_pods_readiness_gates() {
    let c = Cluster::start(&[]);
    let mut sim = Simulator::start(&c, &["--nodes", "1", "--lease-seconds", "1"]);
    wait_ready(&c, &mut sim, &["sim-0"]);
    c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: gated}\nspec:\n  nodeName: sim-0\n  \
         readinessGates: [{conditionType: example.com/lb}]\n  \
         containers: [{name: c, image: busybox}]\n",
    )
    .out();
    let ready = "{.status.conditions[?(@.type==\"Ready\")]}";
    let (status, reason) = (
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "{.status.conditions[?(@.type==\"Ready\")].reason}",
    );
    eventually("the gated pod's containers ready, the pod not", || {
        sim.assert_running();
        pod_field(&c, "gated", "{.status.containerStatuses[0].ready}") == "true"
            && pod_field(&c, "gated", reason) == "ReadinessGatesNotReady"
    });
    assert!(
        pod_field(&c, "gated", ready).contains(
            "corresponding condition of pod readiness gate \\\"example.com/lb\\\" does not exist."
        ),
        "{}",
        pod_field(&c, "gated", ready)
    );
    // What a load balancer controller does once it routes to the pod.
    c.kubectl(&[
        "patch",
        "pod",
        "gated",
        "--subresource=status",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/status/conditions/-","value":{"type":"example.com/lb","status":"True"}}]"#,
    ])
    .out();
    eventually("the pod Ready once its gate is True", || {
        sim.assert_running();
        pod_field(&c, "gated", status) == "True"
    });
}

#[test]
fn pod_duration_flags_finish_every_pod() {
    let c = Cluster::start(&[]);
    let mut sim = Simulator::start(
        &c,
        &[
            "--nodes",
            "1",
            "--lease-seconds",
            "1",
            "--pod-duration",
            "500ms",
            "--job-pod-duration",
            "0s",
        ],
    );
    wait_ready(&c, &mut sim, &["sim-0"]);
    c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: brief}\nspec:\n  nodeName: sim-0\n  \
         restartPolicy: Never\n  containers: [{name: c, image: busybox}]\n",
    )
    .out();
    eventually("the pod to complete under --pod-duration", || {
        sim.assert_running();
        pod_columns(&c, "brief").0 == "Completed"
    });
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args(["simulate", "--kubeconfig", "x", "--pod-duration", "-1s"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn processes_with_disjoint_index_ranges_hand_out_distinct_addresses() {
    let c = Cluster::start(&[]);
    let mut a = Simulator::start(&c, &["--name-prefix", "a-", "--nodes", "2"]);
    let mut b = Simulator::start(
        &c,
        &["--name-prefix", "b-", "--first-index", "2", "--nodes", "2"],
    );
    wait_ready(&c, &mut a, &["a-0", "a-1"]);
    wait_ready(&c, &mut b, &["b-2", "b-3"]);
    let ips = c.kubectl(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.status.addresses[?(@.type==\"InternalIP\")].address}{\"\\n\"}{end}",
    ]);
    let mut seen: Vec<&str> = ips.out().lines().collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            "a-0=10.200.0.1",
            "a-1=10.200.0.2",
            "b-2=10.200.0.3",
            "b-3=10.200.0.4"
        ]
    );
    // b-2's pods get addresses from the block of index 2, not 0.
    c.apply(&POD.replace("sim-1", "b-2")).out();
    eventually("the pod on b-2 Running", || {
        b.assert_running();
        pod_columns(&c, "web").0 == "Running"
    });
    let ip = pod_field(&c, "web", "{.status.podIP}");
    assert!(ip.starts_with("10.64.2."), "{ip}");

    // A range past the last index is refused, naming the flags.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args([
            "simulate",
            "--first-index",
            "16383",
            "--nodes",
            "2",
            "--kubeconfig",
        ])
        .arg(c.kubeconfig())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "{err}");
    assert!(
        err.contains("--first-index 16383 + --nodes 2 must be at most 16384"),
        "{err}"
    );
    a.assert_running();
}
