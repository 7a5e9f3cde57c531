//! Node health inside `rudder server`, driven through kubectl on simulated nodes: a node
//! that stops heartbeating turns NotReady, is tainted unreachable, and its pods are evicted
//! once their toleration runs out.

mod support;

use support::{Cluster, Simulator, eventually};

fn get(c: &Cluster, args: &[&str]) -> String {
    c.kubectl(args).stdout.trim().to_string()
}

fn pod_on(c: &Cluster, name: &str, node: &str, tolerations: &str) {
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  \
         nodeSelector: {{kubernetes.io/hostname: {node}}}\n{tolerations}  \
         containers: [{{name: app, image: nginx}}]\n"
    ))
    .out();
}

#[test]
fn a_silent_node_turns_not_ready_and_its_pods_leave_after_their_toleration() {
    let c = Cluster::start(&["--node-monitor-grace-period", "3s"]);
    let _sim = Simulator::start(&c, &["--nodes", "2", "--lease-seconds", "1"]);
    nodes_ready_with_pod_cidrs(&c);
    pods_running_with_default_tolerations(&c);
    silenced_node_turns_not_ready_and_tainted(&c);
    only_the_hasty_pod_is_evicted(&c);
    revived_node_turns_ready_and_untainted(&c);
}

/// Both simulated nodes turn Ready and get a pod CIDR each.
fn nodes_ready_with_pod_cidrs(c: &Cluster) {
    eventually("two Ready nodes", || {
        get(c, &["get", "nodes", "--no-headers"])
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count()
            == 2
    });
    // Node IPAM: a /24 of the cluster CIDR each.
    eventually("pod CIDRs", || {
        let cidrs = get(
            c,
            &[
                "get",
                "nodes",
                "-o",
                "jsonpath={range .items[*]}{.spec.podCIDR} {end}",
            ],
        );
        let mut cidrs: Vec<&str> = cidrs.split_whitespace().collect();
        cidrs.sort();
        cidrs == ["10.42.0.0/24", "10.42.1.0/24"]
    });
}

/// Three pods run, two on sim-0 (one tolerating unreachable for two seconds only), with the
/// default tolerations added.
fn pods_running_with_default_tolerations(c: &Cluster) {
    // Defaults from DefaultTolerationSeconds: five minutes.
    pod_on(c, "patient", "sim-0", "");
    pod_on(
        c,
        "hasty",
        "sim-0",
        "  tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, \
         effect: NoExecute, tolerationSeconds: 2}]\n",
    );
    pod_on(c, "elsewhere", "sim-1", "");
    eventually("the pods running", || {
        get(
            c,
            &["get", "pods", "-o", "jsonpath={.items[*].status.phase}"],
        ) == "Running Running Running"
    });
    assert_eq!(
        get(
            c,
            &[
                "get",
                "pod",
                "patient",
                "-o",
                "jsonpath={.spec.tolerations[?(@.key==\"node.kubernetes.io/not-ready\")].tolerationSeconds}"
            ]
        ),
        "300"
    );
}

/// sim-0 stops heartbeating: NotReady, NodeStatusUnknown, tainted unreachable.
fn silenced_node_turns_not_ready_and_tainted(c: &Cluster) {
    c.kubectl(&["annotate", "node", "sim-0", "simulate.rudder.dev/dead=true"])
        .out();
    eventually("sim-0 NotReady", || {
        get(c, &["get", "node", "sim-0", "--no-headers"])
            .split_whitespace()
            .nth(1)
            == Some("NotReady")
    });
    assert_eq!(
        get(
            c,
            &[
                "get",
                "node",
                "sim-0",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}"
            ]
        ),
        "NodeStatusUnknown"
    );
    eventually("the unreachable taints", || {
        get(
            c,
            &[
                "get",
                "node",
                "sim-0",
                "-o",
                "jsonpath={range .spec.taints[*]}{.key}:{.effect} {end}",
            ],
        ) == "node.kubernetes.io/unreachable:NoSchedule node.kubernetes.io/unreachable:NoExecute"
    });
}

/// The pod tolerating two seconds is evicted, the others stay.
fn only_the_hasty_pod_is_evicted(c: &Cluster) {
    // The pod tolerating two seconds is evicted (it stays Terminating: its kubelet is gone).
    eventually("the hasty pod evicted", || {
        !get(
            c,
            &[
                "get",
                "pod",
                "hasty",
                "-o",
                "jsonpath={.metadata.deletionTimestamp}",
            ],
        )
        .is_empty()
    });
    assert_eq!(
        get(
            c,
            &[
                "get",
                "pod",
                "hasty",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"DisruptionTarget\")].reason}"
            ]
        ),
        "DeletionByTaintManager"
    );
    let evicted = get(
        c,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=hasty,reason=TaintManagerEviction",
            "-o",
            "jsonpath={.items[0].message}",
        ],
    );
    assert_eq!(evicted, "Marking for deletion Pod default/hasty");
    for still in ["patient", "elsewhere"] {
        assert!(
            get(
                c,
                &[
                    "get",
                    "pod",
                    still,
                    "-o",
                    "jsonpath={.metadata.deletionTimestamp}"
                ]
            )
            .is_empty(),
            "{still} was evicted"
        );
    }
}

/// sim-0 heartbeats again.
fn revived_node_turns_ready_and_untainted(c: &Cluster) {
    // Back to life: Ready again, the taints go.
    c.kubectl(&["annotate", "node", "sim-0", "simulate.rudder.dev/dead-"])
        .out();
    eventually("sim-0 Ready and untainted", || {
        get(c, &["get", "node", "sim-0", "--no-headers"])
            .split_whitespace()
            .nth(1)
            == Some("Ready")
            && get(
                c,
                &["get", "node", "sim-0", "-o", "jsonpath={.spec.taints}"],
            )
            .is_empty()
    });
}

#[test]
fn finished_pods_beyond_the_threshold_are_collected_oldest_first() {
    let c = Cluster::start(&["--terminated-pod-gc-threshold", "1"]);
    let _sim = Simulator::start(&c, &["--nodes", "1"]);
    for name in ["first", "second", "third"] {
        c.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  \
             annotations: {{simulate.rudder.dev/duration: 1s}}\nspec:\n  restartPolicy: Never\n  \
             containers: [{{name: app, image: busybox}}]\n"
        ))
        .out();
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    // The collector looks every 20 s; only the newest finished pod stays.
    eventually("one finished pod left", || {
        get(
            &c,
            &["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"],
        ) == "third"
    });
}
