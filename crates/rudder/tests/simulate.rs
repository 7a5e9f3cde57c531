//! `rudder simulate` against a real server, checked with the real kubectl: simulated nodes
//! register Ready with their zones, renew their leases, run the pods bound to them and finish
//! their graceful deletion.

mod support;

use support::{Cluster, Simulator, eventually};

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
