//! The workload controllers inside `rudder server`, driven through kubectl on simulated
//! nodes: ReplicaSets, ReplicationControllers and Deployments keep their pods, scale and
//! roll out as upstream's do.

mod support;

use std::time::Duration;

use support::{Cluster, Simulator, consistently, eventually};

fn get(c: &Cluster, args: &[&str]) -> String {
    c.kubectl(args).stdout.trim().to_string()
}

/// Names of the pods with label app=`app` that are not being deleted.
fn live_pods(c: &Cluster, app: &str) -> Vec<String> {
    let out = get(
        c,
        &[
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "-o",
            "jsonpath={range .items[?(@.metadata.deletionTimestamp)]}-{.metadata.name} {end}|{range .items[*]}{.metadata.name} {end}",
        ],
    );
    let (dying, all) = out.split_once('|').unwrap_or(("", ""));
    let dying: Vec<&str> = dying.split_whitespace().map(|n| &n[1..]).collect();
    all.split_whitespace()
        .filter(|n| !dying.contains(n))
        .map(str::to_string)
        .collect()
}

#[test]
fn replica_sets_keep_scale_adopt_and_release_their_pods() {
    let c = Cluster::start(&[]);
    let _sim = Simulator::start(&c, &["--nodes", "2"]);
    c.apply(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: web}\nspec:\n  replicas: 3\n  \
         selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    \
         spec: {containers: [{name: app, image: nginx}]}\n",
    )
    .out();
    eventually("three ready replicas", || {
        get(
            &c,
            &["get", "rs", "web", "-o", "jsonpath={.status.readyReplicas}"],
        ) == "3"
    });
    let listed = get(&c, &["get", "rs", "web", "--no-headers"]);
    let cols: Vec<&str> = listed.split_whitespace().collect();
    assert_eq!(&cols[..4], ["web", "3", "3", "3"], "{listed}");
    let events = get(
        &c,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web,reason=SuccessfulCreate",
            "-o",
            "jsonpath={.items[*].message}",
        ],
    );
    assert!(events.contains("Created pod: web-"), "{events}");

    // A pod deleted is replaced.
    let pods = live_pods(&c, "web");
    c.kubectl(&["delete", "pod", &pods[0], "--wait=false"])
        .out();
    eventually("a replacement", || {
        let now = live_pods(&c, "web");
        now.len() == 3 && !now.contains(&pods[0])
    });

    // Scaling down deletes the surplus; scaling up creates.
    c.kubectl(&["scale", "rs", "web", "--replicas=1"]).out();
    eventually("one replica left", || live_pods(&c, "web").len() == 1);
    c.kubectl(&["scale", "rs", "web", "--replicas=2"]).out();
    eventually("two replicas", || {
        get(
            &c,
            &["get", "rs", "web", "-o", "jsonpath={.status.readyReplicas}"],
        ) == "2"
    });

    // An orphan with matching labels is adopted (and the surplus deleted); a pod relabelled
    // out of the selector is released.
    c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: stray, labels: {app: web}}\n\
         spec: {containers: [{name: app, image: nginx}]}\n",
    )
    .out();
    eventually("the stray pod adopted or deleted", || {
        let owner = c.kubectl(&[
            "get",
            "pod",
            "stray",
            "-o",
            "jsonpath={.metadata.ownerReferences[0].name}",
        ]);
        owner.stdout == "web" || owner.stderr.contains("not found")
    });
    eventually("two pods again", || live_pods(&c, "web").len() == 2);
    let kept = live_pods(&c, "web")[0].clone();
    c.kubectl(&["label", "pod", &kept, "app=other", "--overwrite"])
        .out();
    eventually("the relabelled pod released", || {
        get(
            &c,
            &[
                "get",
                "pod",
                &kept,
                "-o",
                "jsonpath={.metadata.ownerReferences}",
            ],
        )
        .is_empty()
    });
    eventually("a replacement for the released pod", || {
        live_pods(&c, "web").len() == 2
    });
}

#[test]
fn replication_controllers_keep_their_pods() {
    let c = Cluster::start(&[]);
    let _sim = Simulator::start(&c, &["--nodes", "1"]);
    c.apply(
        "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: old}\nspec:\n  replicas: 2\n  \
         template:\n    metadata: {labels: {app: old}}\n    \
         spec: {containers: [{name: app, image: nginx}]}\n",
    )
    .out();
    eventually("two ready replicas", || {
        get(
            &c,
            &["get", "rc", "old", "-o", "jsonpath={.status.readyReplicas}"],
        ) == "2"
    });
    let listed = get(&c, &["get", "rc", "old", "--no-headers"]);
    let cols: Vec<&str> = listed.split_whitespace().collect();
    assert_eq!(&cols[..4], ["old", "2", "2", "2"], "{listed}");
}

const WEB: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  \
    replicas: 3\n  selector: {matchLabels: {app: web}}\n  strategy:\n    type: RollingUpdate\n    \
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}\n  template:\n    \
    metadata: {labels: {app: web}}\n    spec: {containers: [{name: app, image: nginx:1.25}]}\n";

fn image_of(c: &Cluster) -> String {
    get(
        c,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    )
}

#[test]
fn deployments_roll_out_without_dropping_below_the_desired_availability() {
    let c = Cluster::start(&[]);
    let _sim = Simulator::start(&c, &["--nodes", "2"]);
    first_rollout_completes(&c);
    new_image_rolls_out_keeping_availability(&c);
    history_and_undo(&c);
    scale_pause_and_resume(&c);
}

/// The Deployment rolls out its three replicas and turns Available.
fn first_rollout_completes(c: &Cluster) {
    c.apply(WEB).out();
    let status = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(
        status
            .stdout
            .contains("deployment \"web\" successfully rolled out"),
        "{} {}",
        status.stdout,
        status.stderr
    );
    let listed = get(c, &["get", "deploy", "web", "--no-headers"]);
    let cols: Vec<&str> = listed.split_whitespace().collect();
    assert_eq!(&cols[..4], ["web", "3/3", "3", "3"], "{listed}");
    assert_eq!(
        get(
            c,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Available\")].reason}"
            ]
        ),
        "MinimumReplicasAvailable"
    );
}

/// A new image rolls out while a watch sees availability never drop below three.
fn new_image_rolls_out_keeping_availability(c: &Cluster) {
    // Watch availability through the rollout of a new image.
    let watched = c.dir.path().join("watch.txt");
    let mut watch = c.kubectl_background(
        &[
            "get",
            "deploy",
            "web",
            "-w",
            "-o",
            "jsonpath={.status.availableReplicas}{\"\\n\"}",
        ],
        &watched,
    );
    c.kubectl(&["set", "image", "deployment/web", "app=nginx:1.26"])
        .out();
    let status = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(
        status.stdout.contains("successfully rolled out"),
        "{} {}",
        status.stdout,
        status.stderr
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = watch.kill();
    let _ = watch.wait();
    let seen = std::fs::read_to_string(&watched).unwrap();
    let counts: Vec<i64> = seen
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().unwrap_or(0))
        .collect();
    assert!(counts.len() > 1, "{seen}");
    assert!(
        counts.iter().all(|n| *n >= 3),
        "availability dropped: {counts:?}"
    );
}

/// The rollout left two ReplicaSets and a history; undo brings the first template back.
fn history_and_undo(c: &Cluster) {
    // Two ReplicaSets, the old one scaled to zero; history and undo.
    let sets = get(
        c,
        &[
            "get",
            "rs",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.spec.replicas} {end}",
        ],
    );
    let mut sizes: Vec<&str> = sets.split_whitespace().collect();
    sizes.sort();
    assert_eq!(sizes, ["0", "3"]);
    let history = get(c, &["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );
    assert_eq!(
        get(
            c,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
            ]
        ),
        "2"
    );
    c.kubectl(&["rollout", "undo", "deployment/web"]).out();
    eventually("the first template back", || image_of(c) == "nginx:1.25");
    let status = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(
        status.stdout.contains("successfully rolled out"),
        "{}",
        status.stderr
    );
    // The first ReplicaSet is reused as revision 3.
    assert_eq!(
        get(
            c,
            &[
                "get",
                "rs",
                "-l",
                "app=web",
                "-o",
                "jsonpath={range .items[?(@.spec.replicas==3)]}{.metadata.annotations.deployment\\.kubernetes\\.io/revision}{end}"
            ]
        ),
        "3"
    );
    let events = get(
        c,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web,reason=ScalingReplicaSet",
            "-o",
            "jsonpath={.items[*].message}",
        ],
    );
    assert!(events.contains("Scaled up replica set web-"), "{events}");
    assert!(events.contains("Scaled down replica set web-"), "{events}");
}

/// Scaling, and a paused Deployment that rolls out only once resumed.
fn scale_pause_and_resume(c: &Cluster) {
    // Scaling, pause and resume.
    c.kubectl(&["scale", "deployment/web", "--replicas=5"])
        .out();
    eventually("five available", || {
        get(
            c,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.status.availableReplicas}",
            ],
        ) == "5"
    });
    c.kubectl(&["rollout", "pause", "deployment/web"]).out();
    c.kubectl(&["set", "image", "deployment/web", "app=nginx:1.27"])
        .out();
    eventually("the paused condition", || {
        get(
            c,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
            ],
        ) == "DeploymentPaused"
    });
    consistently(
        "no rollout while paused",
        Duration::from_millis(500),
        || {
            get(c, &["get", "rs", "-l", "app=web", "--no-headers"])
                .lines()
                .count()
                == 2
        },
    );
    c.kubectl(&["rollout", "resume", "deployment/web"]).out();
    let status = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(
        status.stdout.contains("successfully rolled out"),
        "{}",
        status.stderr
    );
    assert_eq!(
        get(c, &["get", "rs", "-l", "app=web", "--no-headers"])
            .lines()
            .count(),
        3
    );
}

#[test]
fn recreate_deployments_replace_every_pod_at_once() {
    let c = Cluster::start(&[]);
    let _sim = Simulator::start(&c, &["--nodes", "1"]);
    c.apply(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: db}\nspec:\n  replicas: 2\n  \
         selector: {matchLabels: {app: db}}\n  strategy: {type: Recreate}\n  template:\n    \
         metadata: {labels: {app: db}}\n    spec: {containers: [{name: app, image: postgres:15}]}\n",
    )
    .out();
    let status = c.kubectl(&["rollout", "status", "deployment/db", "--timeout=60s"]);
    assert!(
        status.stdout.contains("successfully rolled out"),
        "{}",
        status.stderr
    );
    c.kubectl(&["rollout", "restart", "deployment/db"]).out();
    let status = c.kubectl(&["rollout", "status", "deployment/db", "--timeout=60s"]);
    assert!(
        status.stdout.contains("successfully rolled out"),
        "{}",
        status.stderr
    );
    let sets = get(
        &c,
        &[
            "get",
            "rs",
            "-l",
            "app=db",
            "-o",
            "jsonpath={range .items[*]}{.spec.replicas} {end}",
        ],
    );
    let mut sizes: Vec<&str> = sets.split_whitespace().collect();
    sizes.sort();
    assert_eq!(sizes, ["0", "2"]);
}

// conformance: 220
#[test]
fn budgets_count_healthy_pods_and_drain_stops_at_them() {
    let c = Cluster::start(&[]);
    let _sim = Simulator::start(&c, &["--nodes", "1"]);
    c.apply(&WEB.replace("replicas: 3", "replicas: 3\n  minReadySeconds: 0"))
        .out();
    c.apply(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\n\
         spec: {minAvailable: 2, selector: {matchLabels: {app: web}}}\n",
    )
    .out();
    eventually("one disruption allowed", || {
        let row = get(&c, &["get", "pdb", "web", "--no-headers"]);
        row.split_whitespace().collect::<Vec<_>>()[..4] == ["web", "2", "N/A", "1"]
    });
    assert_eq!(
        get(
            &c,
            &[
                "get",
                "pdb",
                "web",
                "-o",
                "jsonpath={.status.expectedPods} {.status.currentHealthy} {.status.desiredHealthy} {.status.conditions[0].reason}"
            ]
        ),
        "3 3 2 SufficientPods"
    );
    // Draining evicts one pod, then the budget holds the others.
    let drain = c.kubectl(&["drain", "sim-0", "--ignore-daemonsets", "--timeout=6s"]);
    assert!(!drain.ok, "{}", drain.stdout);
    assert!(
        drain
            .stderr
            .contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{}",
        drain.stderr
    );
    assert_eq!(
        get(
            &c,
            &[
                "get",
                "pdb",
                "web",
                "-o",
                "jsonpath={.status.disruptionsAllowed}"
            ]
        ),
        "0"
    );
    // A percentage needs the pods' controllers: here the Deployment's three replicas.
    c.apply(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: half}\n\
         spec: {maxUnavailable: 50%, selector: {matchLabels: {app: web}}}\n",
    )
    .out();
    eventually("the percentage resolved", || {
        get(
            &c,
            &[
                "get",
                "pdb",
                "half",
                "-o",
                "jsonpath={.status.expectedPods} {.status.desiredHealthy}",
            ],
        ) == "3 1"
    });
}

// conformance: 201
#[test]
fn daemon_sets_follow_nodes_and_roll_out() {
    let c = Cluster::start(&[]);
    let _sim = Simulator::start(&c, &["--nodes", "2"]);
    c.apply(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n  \
         selector: {matchLabels: {app: agent}}\n  template:\n    \
         metadata: {labels: {app: agent}}\n    \
         spec: {containers: [{name: app, image: fluentd:1}]}\n",
    )
    .out();
    let status = c.kubectl(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    assert!(
        status
            .stdout
            .contains("daemon set \"agent\" successfully rolled out"),
        "{} {}",
        status.stdout,
        status.stderr
    );
    let row = get(&c, &["get", "ds", "agent", "--no-headers"]);
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>()[..6],
        ["agent", "2", "2", "2", "2", "2"],
        "{row}"
    );
    let nodes = get(
        &c,
        &[
            "get",
            "pods",
            "-l",
            "app=agent",
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName} {end}",
        ],
    );
    let mut nodes: Vec<&str> = nodes.split_whitespace().collect();
    nodes.sort();
    assert_eq!(nodes, ["sim-0", "sim-1"]);

    c.kubectl(&["set", "image", "daemonset/agent", "app=fluentd:2"])
        .out();
    let status = c.kubectl(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    assert!(
        status.stdout.contains("successfully rolled out"),
        "{}",
        status.stderr
    );
    eventually("only new pods", || {
        get(
            &c,
            &[
                "get",
                "pods",
                "-l",
                "app=agent",
                "-o",
                "jsonpath={range .items[*]}{.spec.containers[0].image} {end}",
            ],
        ) == "fluentd:2 fluentd:2"
    });
    let history = get(&c, &["rollout", "history", "daemonset/agent"]);
    assert!(
        history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );

    // A node joining gets a daemon; a node leaving loses it.
    c.apply("apiVersion: v1\nkind: Node\nmetadata: {name: extra}\n")
        .out();
    // (Pinned by node affinity; with no capacity reported the node takes no pod yet.)
    eventually("a daemon for the new node", || {
        pinned_live(&c).contains(&"extra".to_string())
    });
    c.kubectl(&["delete", "node", "extra"]).out();
    eventually("the daemon of the gone node deleted", || {
        // Gone, or being deleted.
        !pinned_live(&c).contains(&"extra".to_string())
    });
}

// conformance: 120, 125
#[test]
fn deleting_a_deployment_cascades_as_asked() {
    let c = Cluster::start(&[]);
    let _sim = Simulator::start(&c, &["--nodes", "1"]);
    for name in ["gone", "kept", "front"] {
        c.apply(
            &WEB.replace("name: web", &format!("name: {name}"))
                .replace("app: web", &format!("app: {name}")),
        )
        .out();
    }
    for name in ["gone", "kept", "front"] {
        let status = c.kubectl(&[
            "rollout",
            "status",
            &format!("deployment/{name}"),
            "--timeout=60s",
        ]);
        assert!(
            status.stdout.contains("successfully rolled out"),
            "{}",
            status.stderr
        );
    }
    // Background (kubectl's default): the ReplicaSet and pods follow.
    c.kubectl(&["delete", "deployment", "gone"]).out();
    eventually("the ReplicaSet and pods collected", || {
        get(&c, &["get", "rs,pods", "-l", "app=gone", "-o", "name"]).is_empty()
    });
    // Orphan: they stay, without their owner.
    c.kubectl(&["delete", "deployment", "kept", "--cascade=orphan"])
        .out();
    let released = || {
        let owners = "jsonpath={range .items[*]}{.metadata.name}={.metadata.ownerReferences};{end}";
        let sets = get(&c, &["get", "rs", "-l", "app=kept", "-o", owners]);
        sets.starts_with("kept-") && sets.ends_with("=;") && sets.matches(';').count() == 1
    };
    eventually("the ReplicaSet without its owner", released);
    consistently(
        "the orphaned ReplicaSet and its three pods kept",
        Duration::from_secs(1),
        || released() && live_pods(&c, "kept").len() == 3,
    );
    // Foreground: the dependents go first, the Deployment last.
    c.kubectl(&[
        "delete",
        "deployment",
        "front",
        "--cascade=foreground",
        "--wait=false",
    ])
    .out();
    eventually("everything gone", || {
        c.kubectl(&["get", "deployment", "front"])
            .stderr
            .contains("not found")
            && get(&c, &["get", "rs", "-l", "app=front", "-o", "name"]).is_empty()
    });
}

/// The nodes the live (not deleting) daemon pods of `app=agent` are pinned to.
fn pinned_live(c: &Cluster) -> Vec<String> {
    let pinned = "jsonpath={range .items[*]}{.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].values[0]}={.metadata.deletionTimestamp} {end}";
    get(c, &["get", "pods", "-l", "app=agent", "-o", pinned])
        .split_whitespace()
        .filter_map(|pair| pair.strip_suffix('='))
        .map(str::to_string)
        .collect()
}
