//! The scheduler inside `rudder server`, driven through kubectl: pods land on nodes that fit
//! them (resources, selectors, taints), pods that fit nowhere say why in upstream's words,
//! and a node joining later takes them.

mod support;

use std::time::Duration;

use support::{Cluster, consistently, eventually};

/// A node object with `cpu` CPUs, zone `zone`, and the given taints (a YAML list).
fn node(c: &Cluster, name: &str, cpu: &str, zone: &str, taints: &str) {
    c.apply(&format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: \
         {{kubernetes.io/hostname: {name}, topology.kubernetes.io/zone: {zone}}}\n\
         spec: {{taints: {taints}}}\n"
    ))
    .out();
    c.kubectl(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(
            r#"{{"status":{{"allocatable":{{"cpu":"{cpu}","memory":"4Gi","pods":"110"}},"capacity":{{"cpu":"{cpu}","memory":"4Gi","pods":"110"}},"conditions":[{{"type":"Ready","status":"True"}}]}}}}"#
        ),
    ])
    .out();
}

fn pod(c: &Cluster, name: &str, cpu: &str, extra: &str) {
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{extra}  containers:\n  \
         - name: app\n    image: nginx\n    resources: {{requests: {{cpu: '{cpu}'}}}}\n"
    ))
    .out();
}

fn node_of(c: &Cluster, pod: &str) -> String {
    c.kubectl(&["get", "pod", pod, "-o", "jsonpath={.spec.nodeName}"])
        .out()
        .to_string()
}

// conformance: 644, 645
#[test]
fn pods_go_where_they_fit_and_say_why_when_nothing_fits() {
    let c = Cluster::start(&[]);
    node(&c, "a1", "2", "a", "[]");
    node(&c, "b1", "2", "b", "[]");
    node(
        &c,
        "cp",
        "8",
        "a",
        "[{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]",
    );

    pod(&c, "web", "1", "");
    pod(
        &c,
        "zoned",
        "500m",
        "  nodeSelector: {topology.kubernetes.io/zone: b}\n",
    );
    pod(
        &c,
        "admin",
        "100m",
        "  nodeSelector: {kubernetes.io/hostname: cp}\n  tolerations: \
         [{key: node-role.kubernetes.io/control-plane, operator: Exists}]\n",
    );
    pod(&c, "other", "100m", "  schedulerName: someone-else\n");
    eventually("the pods to be bound", || {
        ["web", "zoned", "admin"]
            .iter()
            .all(|p| !node_of(&c, p).is_empty())
    });
    assert!(["a1", "b1"].contains(&node_of(&c, "web").as_str()));
    assert_eq!(node_of(&c, "zoned"), "b1");
    assert_eq!(node_of(&c, "admin"), "cp");
    assert_eq!(node_of(&c, "other"), "", "another scheduler's pod stays");

    // Too big for the free nodes, and the big one is tainted.
    pod(&c, "huge", "3", "");
    let why = "0/3 nodes are available: 1 node(s) had untolerated taint \
               {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 \
               nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption \
               victims found for incoming pod.";
    eventually("the pod to be reported unschedulable", || {
        c.kubectl(&[
            "get",
            "pod",
            "huge",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}",
        ])
        .out()
            == why
    });
    assert_eq!(
        c.kubectl(&[
            "get",
            "pod",
            "huge",
            "-o",
            "jsonpath={.status.conditions[0].status} {.status.conditions[0].reason}"
        ])
        .out(),
        "False Unschedulable"
    );
    let events = c
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=huge,reason=FailedScheduling",
            "-o",
            "jsonpath={.items[0].message}",
        ])
        .out()
        .to_string();
    assert_eq!(events, why);
    let described = c.kubectl(&["describe", "pod", "huge"]).out().to_string();
    assert!(
        described.contains("FailedScheduling") && described.contains("default-scheduler"),
        "{described}"
    );
    let scheduled = c
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=zoned,reason=Scheduled",
            "-o",
            "jsonpath={.items[0].message}",
        ])
        .out()
        .to_string();
    assert_eq!(scheduled, "Successfully assigned default/zoned to b1");

    // A node with room joins: the pod is tried again and lands there.
    node(&c, "big", "4", "b", "[]");
    eventually("the pending pod to land on the new node", || {
        node_of(&c, "huge") == "big"
    });
}

#[test]
fn cordoned_nodes_take_no_new_pods_and_freed_room_is_reused() {
    let c = Cluster::start(&[]);
    node(&c, "n1", "1", "a", "[]");
    node(&c, "n2", "1", "a", "[]");
    c.kubectl(&["cordon", "n1"]).out();
    pod(&c, "first", "800m", "");
    eventually("the first pod to be bound", || {
        !node_of(&c, "first").is_empty()
    });
    assert_eq!(node_of(&c, "first"), "n2");
    pod(&c, "second", "800m", "");
    eventually("the second pod to be reported unschedulable", || {
        c.kubectl(&[
            "get",
            "pod",
            "second",
            "-o",
            "jsonpath={.status.conditions[0].message}",
        ])
        .out()
        .contains("1 node(s) were unschedulable")
    });
    // Freeing room (the first pod goes) lets the second one in.
    c.kubectl(&["delete", "pod", "first", "--grace-period=0", "--force"])
        .out();
    eventually("the second pod to take the freed room", || {
        node_of(&c, "second") == "n2"
    });
}

#[test]
fn topology_spread_levels_zones_and_anti_affinity_keeps_replicas_apart() {
    let c = Cluster::start(&[]);
    for (name, zone) in [("z1a", "z1"), ("z1b", "z1"), ("z2a", "z2"), ("z3a", "z3")] {
        node(&c, name, "8", zone, "[]");
    }
    let spread = "  topologySpreadConstraints:\n  - maxSkew: 1\n    topologyKey: \
                  topology.kubernetes.io/zone\n    whenUnsatisfiable: DoNotSchedule\n    \
                  labelSelector: {matchLabels: {app: web}}\n";
    for i in 0..6 {
        c.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web-{i}, labels: {{app: web}}}}\n\
             spec:\n{spread}  containers: [{{name: app, image: nginx}}]\n"
        ))
        .out();
    }
    eventually("the spread pods to be bound", || {
        (0..6).all(|i| !node_of(&c, &format!("web-{i}")).is_empty())
    });
    let mut per_zone = std::collections::BTreeMap::new();
    for i in 0..6 {
        let zone = match node_of(&c, &format!("web-{i}")).as_str() {
            "z1a" | "z1b" => "z1",
            "z2a" => "z2",
            _ => "z3",
        };
        *per_zone.entry(zone).or_insert(0) += 1;
    }
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "{per_zone:?}"
    );

    let apart = "  affinity:\n    podAntiAffinity:\n      \
                 requiredDuringSchedulingIgnoredDuringExecution:\n      - labelSelector: \
                 {matchLabels: {app: db}}\n        topologyKey: kubernetes.io/hostname\n";
    for i in 0..5 {
        c.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: db-{i}, labels: {{app: db}}}}\n\
             spec:\n{apart}  containers: [{{name: db, image: postgres}}]\n"
        ))
        .out();
    }
    eventually(
        "four replicas on four nodes, the fifth unschedulable",
        || {
            let placed: Vec<String> = (0..5)
                .map(|i| node_of(&c, &format!("db-{i}")))
                .filter(|n| !n.is_empty())
                .collect();
            let mut distinct = placed.clone();
            distinct.sort();
            distinct.dedup();
            placed.len() == 4 && distinct.len() == 4
        },
    );
    let waiting = (0..5)
        .map(|i| format!("db-{i}"))
        .find(|p| node_of(&c, p).is_empty())
        .unwrap();
    eventually("the fifth replica to say why", || {
        c.kubectl(&[
            "get",
            "pod",
            &waiting,
            "-o",
            "jsonpath={.status.conditions[0].message}",
        ])
        .out()
            == "0/4 nodes are available: 4 node(s) didn't match pod anti-affinity rules. \
                preemption: 0/4 nodes are available: 4 No preemption victims found for incoming pod."
    });
}

// conformance: 653, 655
#[test]
fn a_high_priority_pod_preempts_a_low_priority_one_on_a_simulated_node() {
    let c = Cluster::start(&[]);
    let _sim =
        support::Simulator::start(&c, &["--nodes", "1", "--cpu", "2", "--lease-seconds", "2"]);
    c.apply(
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: low}\nvalue: 10\n\
         ---\napiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\n\
         value: 1000\n---\napiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\n\
         metadata: {name: polite}\nvalue: 2000\npreemptionPolicy: Never\n",
    )
    .out();
    pod(&c, "batch", "1500m", "  priorityClassName: low\n");
    eventually("the low-priority pod to run", || {
        c.kubectl(&["get", "pod", "batch", "-o", "jsonpath={.status.phase}"])
            .out()
            == "Running"
    });
    assert_eq!(
        c.kubectl(&["get", "pod", "batch", "-o", "jsonpath={.spec.priority}"])
            .out(),
        "10"
    );
    // A pod that may not preempt waits, and says so.
    pod(&c, "waiter", "1", "  priorityClassName: polite\n");
    eventually("the polite pod to say why it waits", || {
        c.kubectl(&[
            "get",
            "pod",
            "waiter",
            "-o",
            "jsonpath={.status.conditions[0].message}",
        ])
        .out()
        .ends_with("preemption: not eligible due to preemptionPolicy=Never.")
    });
    c.kubectl(&["delete", "pod", "waiter"]).out();

    // Held by a finalizer, the victim shows why it goes.
    c.kubectl(&[
        "patch",
        "pod",
        "batch",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ])
    .out();
    pod(&c, "urgent", "1", "  priorityClassName: high\n");
    eventually("the victim to be marked a disruption target", || {
        c.kubectl(&[
            "get",
            "pod",
            "batch",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"DisruptionTarget\")]['status','reason','message']}",
        ])
        .stdout
            == "True PreemptionByScheduler default-scheduler: preempting to accommodate a higher priority pod"
    });
    c.kubectl(&[
        "patch",
        "pod",
        "batch",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ])
    .out();
    eventually("the urgent pod to take the node", || {
        node_of(&c, "urgent") == "sim-0"
    });
    let gone = c.kubectl(&["get", "pod", "batch"]);
    assert!(gone.stderr.contains("not found"), "{}", gone.stdout);
    let preempted = c
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=batch,reason=Preempted",
            "-o",
            "jsonpath={.items[0].message}",
        ])
        .out()
        .to_string();
    assert!(
        preempted.starts_with("Preempted by pod ") && preempted.ends_with(" on node sim-0"),
        "{preempted}"
    );
    let unknown = c.kubectl_in(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  priorityClassName: nope\n  containers: [{name: c, image: nginx}]\n"),
    );
    assert!(
        unknown
            .err()
            .contains("pods \"x\" is forbidden: no PriorityClass with name nope was found"),
        "{}",
        unknown.stderr
    );
}

/// A `rudder scheduler` process, killed when dropped.
struct SchedulerProcess(std::process::Child);

impl SchedulerProcess {
    fn start(c: &Cluster, extra: &[&str]) -> SchedulerProcess {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_rudder"))
            .arg("scheduler")
            .arg("--kubeconfig")
            .arg(c.kubeconfig())
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        SchedulerProcess(child)
    }
}

impl Drop for SchedulerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_standby_scheduler_takes_over_when_the_active_one_is_killed() {
    let c = Cluster::start(&["--disable-scheduler"]);
    node(&c, "n1", "4", "a", "[]");
    // Short leader-election timings, so the hand-over takes seconds.
    let timings = [
        "--leader-elect-lease-duration",
        "3s",
        "--leader-elect-renew-deadline",
        "2s",
        "--leader-elect-retry-period",
        "500ms",
    ];
    let mut schedulers = vec![
        SchedulerProcess::start(&c, &timings),
        SchedulerProcess::start(&c, &timings),
    ];
    let holder = || {
        c.kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-scheduler",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
        .stdout
        .clone()
    };
    eventually("one scheduler to hold the lease", || !holder().is_empty());
    let first = holder();
    pod(&c, "before", "100m", "");
    eventually("the active scheduler to bind a pod", || {
        node_of(&c, "before") == "n1"
    });

    // The holder's identity ends with its pid: kill that process, not the standby.
    let pid: u32 = first.rsplit('_').next().unwrap().parse().unwrap();
    let active = schedulers.iter().position(|s| s.0.id() == pid).unwrap();
    schedulers.remove(active);
    eventually("the standby to take the lease", || {
        let now = holder();
        !now.is_empty() && now != first
    });
    assert_eq!(
        c.kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-scheduler",
            "-o",
            "jsonpath={.spec.leaseTransitions}",
        ])
        .out(),
        "1"
    );
    pod(&c, "after", "100m", "");
    eventually("the new leader to bind a pod", || {
        node_of(&c, "after") == "n1"
    });
}

#[test]
fn a_second_profile_packs_pods_and_unknown_schedulers_pods_stay_untouched() {
    let c = Cluster::start(&["--disable-scheduler"]);
    node(&c, "n1", "4", "a", "[]");
    node(&c, "n2", "4", "a", "[]");
    let config = c.dir.path().join("scheduler.yaml");
    std::fs::write(
        &config,
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
         profiles:\n- schedulerName: default-scheduler\n- schedulerName: packer\n  \
         plugins:\n    score:\n      disabled: [{name: NodeResourcesBalancedAllocation}]\n  \
         pluginConfig:\n  - name: NodeResourcesFit\n    \
         args: {scoringStrategy: {type: MostAllocated}}\n",
    )
    .unwrap();
    let _scheduler = SchedulerProcess::start(&c, &["--config", config.to_str().unwrap()]);
    for i in 0..2 {
        pod(&c, &format!("spread-{i}"), "1", "");
        eventually("the default profile to bind", || {
            !node_of(&c, &format!("spread-{i}")).is_empty()
        });
    }
    assert_ne!(node_of(&c, "spread-0"), node_of(&c, "spread-1"));
    for i in 0..2 {
        pod(
            &c,
            &format!("packed-{i}"),
            "500m",
            "  schedulerName: packer\n",
        );
        eventually("the packer profile to bind", || {
            !node_of(&c, &format!("packed-{i}")).is_empty()
        });
    }
    assert_eq!(node_of(&c, "packed-0"), node_of(&c, "packed-1"));
    pod(&c, "stranger", "100m", "  schedulerName: someone-else\n");
    let untouched = "jsonpath={.spec.nodeName}{.status.conditions}";
    consistently(
        "another scheduler's pod untouched",
        Duration::from_secs(1),
        || {
            c.kubectl(&["get", "pod", "stranger", "-o", untouched])
                .out()
                .is_empty()
        },
    );
}

/// `GET http://<addr>/metrics`, as plain HTTP/1.1.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn the_scheduler_exports_prometheus_metrics() {
    let c = Cluster::start(&["--disable-scheduler"]);
    node(&c, "n1", "1", "a", "[]");
    let addr = format!("127.0.0.1:{}", support::free_port());
    let _scheduler = SchedulerProcess::start(&c, &["--metrics-bind-address", &addr]);
    pod(&c, "fits", "500m", "");
    pod(&c, "too-big", "2", "");
    eventually("the pod to be bound", || node_of(&c, "fits") == "n1");
    eventually("both attempts to be counted", || {
        let text = scrape(&addr);
        text.contains(
            "scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"} 1",
        ) && text.contains(
            "scheduler_schedule_attempts_total{result=\"unschedulable\",profile=\"default-scheduler\"}",
        ) && text.contains("scheduler_pending_pods{queue=\"unschedulable\"} 1")
            && text.contains("scheduler_pod_scheduling_sli_duration_seconds_count 1")
    });
}

fn condition_message(c: &Cluster, pod: &str) -> String {
    c.kubectl(&[
        "get",
        "pod",
        pod,
        "-o",
        "jsonpath={.status.conditions[0].message}",
    ])
    .out()
    .to_string()
}

// conformance: 653
#[test]
fn host_ports_conflict_and_preemption_spares_pods_a_budget_protects() {
    let addr = format!("127.0.0.1:{}", support::free_port());
    let c = Cluster::start(&["--scheduler-metrics-bind-address", &addr]);
    let _sim =
        support::Simulator::start(&c, &["--nodes", "2", "--cpu", "2", "--lease-seconds", "2"]);
    let ported = "  containers:\n  - name: app\n    image: nginx\n    ports: [{containerPort: 80, hostPort: 9000}]\n";
    for name in ["port-a", "port-b", "port-c"] {
        c.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{ported}"
        ))
        .out();
    }
    eventually("the third pod to find no free port", || {
        condition_message(&c, "port-c").starts_with(
            "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports.",
        )
    });
    let (a, b) = (node_of(&c, "port-a"), node_of(&c, "port-b"));
    assert!(!a.is_empty() && !b.is_empty() && a != b, "{a} {b}");
    c.kubectl(&[
        "delete",
        "pod",
        "port-a",
        "port-b",
        "port-c",
        "--grace-period=0",
        "--force",
    ])
    .out();

    // Two low-priority pods fill the two nodes; a budget protects one of them.
    c.apply(
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: low}\nvalue: 10\n\
         ---\napiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\n\
         value: 1000\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\n\
         metadata: {name: db}\nspec:\n  minAvailable: 1\n  selector: {matchLabels: {app: db}}\n",
    )
    .out();
    // The protected one on the node preemption would otherwise try first (ties go to the
    // first node by name).
    for (name, app, node) in [("guarded", "db", "sim-0"), ("free", "web", "sim-1")] {
        c.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {app}}}}}\nspec:\n  \
             nodeSelector: {{kubernetes.io/hostname: {node}}}\n  priorityClassName: low\n  containers:\n  - name: app\n    image: nginx\n    \
             resources: {{requests: {{cpu: 1500m}}}}\n"
        ))
        .out();
    }
    eventually("both low-priority pods to run", || {
        c.kubectl(&[
            "get",
            "pods",
            "guarded",
            "free",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ])
        .out()
            == "Running Running"
    });
    // The disruption controller's verdict: no disruption allowed.
    c.kubectl(&[
        "patch",
        "pdb",
        "db",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"disruptionsAllowed":0,"currentHealthy":1,"desiredHealthy":1,"expectedPods":1}}"#,
    ])
    .out();
    pod(&c, "urgent", "1", "  priorityClassName: high\n");
    eventually("the urgent pod to take the unprotected pod's node", || {
        node_of(&c, "urgent") == "sim-1"
    });
    assert!(
        c.kubectl(&["get", "pod", "free"])
            .stderr
            .contains("not found")
    );
    assert_eq!(
        c.kubectl(&["get", "pod", "guarded", "-o", "jsonpath={.status.phase}"])
            .out(),
        "Running"
    );
    eventually(
        "the in-process scheduler's metrics to count the attempts",
        || {
            scrape(&addr).contains(
            "scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"}",
        )
        },
    );
}

fn scheduled_message(c: &Cluster, pod: &str) -> String {
    c.kubectl(&[
        "get",
        "pod",
        pod,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}",
    ])
    .out()
    .to_string()
}

#[test]
fn pods_whose_claims_cannot_be_bound_stay_pending_and_say_why() {
    let c = Cluster::start(&[]);
    node(&c, "a1", "2", "a", "[]");
    node(&c, "b1", "2", "b", "[]");
    let with_claim = |name: &str, claim: &str| {
        pod(
            &c,
            name,
            "100m",
            &format!(
                "  volumes: [{{name: data, persistentVolumeClaim: {{claimName: {claim}}}}}]\n"
            ),
        )
    };
    let pending = |claims: &str| {
        format!(
            "0/2 nodes are available: {claims}. preemption: 0/2 nodes are available: 2 \
             Preemption is not helpful for scheduling."
        )
    };
    // No such claim.
    with_claim("orphan", "missing");
    // A claim nothing can bind: no class (not even the default one), no volume, Immediate
    // binding.
    c.apply(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  \
         storageClassName: ''\n  accessModes: [ReadWriteOnce]\n  \
         resources: {requests: {storage: 1Gi}}\n",
    )
    .out();
    with_claim("db", "data");
    // A WaitForFirstConsumer claim whose class provisions nothing, and one local volume
    // on b1 that matches it.
    c.apply(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: local}\n\
         provisioner: kubernetes.io/no-provisioner\nvolumeBindingMode: WaitForFirstConsumer\n---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: big}\nspec:\n  \
         storageClassName: local\n  accessModes: [ReadWriteOnce]\n  \
         resources: {requests: {storage: 5Gi}}\n---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: small}\nspec:\n  \
         storageClassName: local\n  accessModes: [ReadWriteOnce]\n  \
         resources: {requests: {storage: 1Gi}}\n---\n\
         apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: disk-b1}\nspec:\n  \
         capacity: {storage: 2Gi}\n  accessModes: [ReadWriteOnce]\n  storageClassName: local\n  \
         local: {path: /mnt/disk}\n  nodeAffinity:\n    required:\n      nodeSelectorTerms:\n      \
         - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [b1]}]\n",
    )
    .out();
    with_claim("toobig", "big");
    with_claim("fits", "small");
    eventually("the claim-less and unbound pods to be reported", || {
        scheduled_message(&c, "orphan") == pending("persistentvolumeclaim \"missing\" not found")
            && scheduled_message(&c, "db")
                == pending("pod has unbound immediate PersistentVolumeClaims")
            && scheduled_message(&c, "toobig")
                == "0/2 nodes are available: 2 node(s) didn't find available persistent volumes \
                    to bind. preemption: 0/2 nodes are available: 2 Preemption is not helpful \
                    for scheduling."
    });
    eventually("the pod whose volume is on b1 to go there", || {
        node_of(&c, "fits") == "b1"
    });
    for p in ["orphan", "db", "toobig"] {
        assert_eq!(node_of(&c, p), "", "{p} was bound");
    }
    // The claim appears: the pod is tried again (its claim is still unbound, so it says so;
    // no class, so not the default one either).
    with_claim("late", "later");
    eventually("the missing claim to be reported", || {
        scheduled_message(&c, "late") == pending("persistentvolumeclaim \"later\" not found")
    });
    c.apply(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: later}\nspec:\n  \
         storageClassName: ''\n  accessModes: [ReadWriteOnce]\n  \
         resources: {requests: {storage: 1Gi}}\n",
    )
    .out();
    eventually("the new claim to be seen", || {
        scheduled_message(&c, "late") == pending("pod has unbound immediate PersistentVolumeClaims")
    });
}
