//! The node agent end to end, as root: real containers through runc, a CNI bridge network,
//! images pulled from a real registry on loopback, driven by the real kubectl.

#[path = "support/pods.rs"]
mod pods;
#[path = "support/probe_servers.rs"]
mod probe_servers;
mod support;
#[path = "../../image/tests/support/testimage.rs"]
mod testimage;

use std::time::Duration;

use pods::{busybox, get, jsonpath, node_ready, patiently, patiently_see};
use support::{Cluster, consistently, eventually};

/// HTTP GET from the host, the body.
fn http_get(ip: &str, port: u16) -> Option<String> {
    pods::http_get_path(ip, port, "/")
}

// conformance: 462
#[test]
fn pods_run_as_containers_with_logs_network_and_graceful_deletion() {
    let image = busybox();
    let c = Cluster::start_with_agent("node-a", 201, &[]);
    node_ready(&c, "node-a");
    let nodes = get(&c, &["get", "nodes", "-o", "wide"]);
    assert!(nodes.contains("control-plane"), "{nodes}");
    assert!(nodes.contains("runc://"), "{nodes}");

    a_run_completes_with_its_logs(&c, &image.name);
    let pods = web_pods_serve_at_their_addresses(&c, &image.name);
    let (first_name, first_ip) = &pods[0];
    another_pod_reaches_a_web_pod(&c, &image.name, first_name, first_ip);
    api_server_proxies_to_pods_and_services(&c, first_name);
    graceful_deletion_within_the_grace_period(&c, first_name, first_ip);
}

/// `kubectl run`: the container runs, the pod completes, its output is in the logs.
fn a_run_completes_with_its_logs(c: &Cluster, image: &str) {
    c.kubectl(&[
        "run",
        "hi",
        "--image",
        image,
        "--restart=Never",
        "--",
        "echo",
        "hi",
    ])
    .out();
    patiently("the pod to succeed", 60, || {
        jsonpath(c, &["pod", "hi"], "{.status.phase}") == "Succeeded"
    });
    assert_eq!(get(c, &["logs", "hi"]), "hi");
    // Following a finished container's log ends with it.
    assert_eq!(get(c, &["logs", "-f", "hi"]), "hi");
    let line = get(c, &["get", "pod", "hi", "--no-headers"]);
    assert!(line.contains("Completed"), "{line}");
    assert_eq!(
        jsonpath(
            c,
            &["pod", "hi"],
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "0"
    );
    let stamped = get(c, &["logs", "hi", "--timestamps"]);
    assert!(
        stamped.ends_with(" hi") && stamped.contains('T'),
        "{stamped}"
    );
}

/// A Deployment of three web servers, Ready through a readiness probe, each serving at an
/// address of its own; returns their names and addresses.
fn web_pods_serve_at_their_addresses(c: &Cluster, image: &str) -> Vec<(String, String)> {
    // A Deployment of three web servers: distinct addresses, reachable from the host and from
    // another pod, Ready through a readiness probe.
    let manifest = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 3
      containers:
      - name: httpd
        image: {}
        command: [sh, -c, 'echo hello from $(hostname) > /var/www/index.html && exec httpd -f -p 8080 -h /var/www']
        ports: [{{containerPort: 8080, name: http}}]
        readinessProbe:
          httpGet: {{path: /, port: http}}
          periodSeconds: 1
",
        image
    );
    c.apply(&manifest).out();
    patiently("three ready web pods", 90, || {
        jsonpath(c, &["deployment", "web"], "{.status.readyReplicas}") == "3"
    });
    let pods = get(
        c,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.podIP}{\"\\n\"}{end}",
        ],
    );
    let pods: Vec<(String, String)> = pods
        .lines()
        .map(|l| {
            let (n, ip) = l.split_once(' ').unwrap();
            (n.to_string(), ip.to_string())
        })
        .collect();
    assert_eq!(pods.len(), 3);
    let mut ips: Vec<&str> = pods.iter().map(|(_, ip)| ip.as_str()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "{pods:?}");
    for (name, ip) in &pods {
        assert!(ip.starts_with("10.201."), "{ip}");
        let body = http_get(ip, 8080).unwrap_or_default();
        assert!(
            body.contains(&format!("hello from {name}")),
            "{name} at {ip}: {body}"
        );
    }
    pods
}

/// A pod reaches a web server at its address.
fn another_pod_reaches_a_web_pod(c: &Cluster, image: &str, first_name: &str, first_ip: &str) {
    c.kubectl(&[
        "run",
        "client",
        "--image",
        image,
        "--restart=Never",
        "--",
        "wget",
        "-qO-",
        &format!("http://{first_ip}:8080/"),
    ])
    .out();
    patiently("the client pod to finish", 60, || {
        jsonpath(c, &["pod", "client"], "{.status.phase}") == "Succeeded"
    });
    assert_eq!(
        get(c, &["logs", "client"]),
        format!("hello from {first_name}")
    );
}

/// The API server's proxy subresources: to a pod's port, and to a service's endpoints.
fn api_server_proxies_to_pods_and_services(c: &Cluster, first_name: &str) {
    assert_eq!(
        get(
            c,
            &[
                "get",
                "--raw",
                &format!("/api/v1/namespaces/default/pods/{first_name}:8080/proxy/")
            ]
        ),
        format!("hello from {first_name}")
    );
    // Other methods go through as they are: busybox httpd refuses a POST to a file.
    let post = c.kubectl_in(
        &[
            "create",
            "--raw",
            &format!("/api/v1/namespaces/default/pods/{first_name}:8080/proxy/index.html"),
            "-f",
            "-",
        ],
        Some("{}"),
    );
    assert!(
        post.err().contains("501 Not Implemented"),
        "{}",
        post.stderr
    );
    c.kubectl(&[
        "expose",
        "deployment",
        "web",
        "--port",
        "80",
        "--target-port",
        "8080",
    ])
    .out();
    patiently("the service's endpoints", 60, || {
        get(
            c,
            &[
                "get",
                "--raw",
                "/api/v1/namespaces/default/services/web:80/proxy/",
            ],
        )
        .starts_with("hello from web-")
    });
    let absent = c.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/web:81/proxy/",
    ]);
    assert!(
        absent
            .err()
            .contains("no service port \"81\" found for service \"web\""),
        "{}",
        absent.stderr
    );
}

/// Graceful deletion within the grace period; the Deployment replaces the pod.
fn graceful_deletion_within_the_grace_period(c: &Cluster, first_name: &str, first_ip: &str) {
    // Graceful deletion: the pod goes within its grace period (3 s; httpd ignores SIGTERM as
    // pid 1, so it takes the SIGKILL), and its address stops answering.
    let t0 = std::time::Instant::now();
    c.kubectl(&["delete", "pod", first_name, "--wait=true"])
        .out();
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "deletion took {:?}",
        t0.elapsed()
    );
    assert!(http_get(first_ip, 8080).is_none());
    patiently("the replacement", 90, || {
        jsonpath(c, &["deployment", "web"], "{.status.readyReplicas}") == "3"
    });
    c.kubectl(&["delete", "deployment", "web"]).out();
    patiently("the web pods gone", 60, || {
        get(c, &["get", "pods", "-l", "app=web", "-o", "name"]).is_empty()
    });
}

// conformance: 318, 347
#[test]
fn failing_containers_report_like_upstream() {
    let image = busybox();
    let c = Cluster::start_with_agent("node-b", 202, &[]);
    node_ready(&c, "node-b");
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: crash}}
spec:
  containers:
  - {{name: crash, image: {img}, command: [sh, -c, 'echo crashing; exit 3']}}
---
apiVersion: v1
kind: Pod
metadata: {{name: nocmd}}
spec:
  restartPolicy: Never
  containers:
  - {{name: nocmd, image: {img}, command: [no-such-command]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: noimage}}
spec:
  containers:
  - {{name: c, image: '{missing}'}}
---
apiVersion: v1
kind: Pod
metadata: {{name: nocm}}
spec:
  containers:
  - name: c
    image: {img}
    command: [sleep, '3600']
    env:
    - name: X
      valueFrom: {{configMapKeyRef: {{name: absent, key: k}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: hog}}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: {img}
    command: [sh, -c, 'tail /dev/zero']
    resources: {{limits: {{memory: 32Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: limited}}
spec:
  containers:
  - name: a
    image: {img}
    command: [sleep, '3600']
    resources: {{limits: {{memory: 32Mi, cpu: 100m}}}}
  - name: b
    image: {img}
    command: [sleep, '3600']
    resources: {{limits: {{memory: 16Mi, cpu: 150m}}}}
",
        img = image.name,
        missing = image.name.replace("busybox:1", "nothere:1"),
    );
    c.apply(&manifest).out();

    crash_loop_with_back_off(&c);
    missing_command_is_a_start_error(&c);
    missing_image_backs_off(&c);
    missing_config_map_holds_the_container_until_created(&c);
    guaranteed_pod_group_carries_the_summed_limits(&c);
    over_its_memory_limit_oom_killed(&c);
}

/// Crash loop: restarts with back-off, the previous attempt's logs.
fn crash_loop_with_back_off(c: &Cluster) {
    patiently("CrashLoopBackOff", 90, || {
        let line = get(c, &["get", "pod", "crash", "--no-headers"]);
        line.contains("CrashLoopBackOff")
            && jsonpath(
                c,
                &["pod", "crash"],
                "{.status.containerStatuses[0].restartCount}",
            )
            .parse::<u32>()
            .is_ok_and(|n| n >= 2)
    });
    assert_eq!(get(c, &["logs", "crash", "--previous"]), "crashing");
    assert_eq!(
        jsonpath(
            c,
            &["pod", "crash"],
            "{.status.containerStatuses[0].lastState.terminated.exitCode}"
        ),
        "3"
    );
}

/// A command that does not exist: StartError, exit code 128, the runtime's message.
fn missing_command_is_a_start_error(c: &Cluster) {
    patiently("the start error", 60, || {
        jsonpath(
            c,
            &["pod", "nocmd"],
            "{.status.containerStatuses[0].state.terminated.reason}",
        ) == "StartError"
    });
    assert_eq!(
        jsonpath(
            c,
            &["pod", "nocmd"],
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "128"
    );
    let msg = jsonpath(
        c,
        &["pod", "nocmd"],
        "{.status.containerStatuses[0].state.terminated.message}",
    );
    assert!(msg.contains("no-such-command"), "{msg}");
    assert_eq!(jsonpath(c, &["pod", "nocmd"], "{.status.phase}"), "Failed");
}

/// A missing image: ErrImagePull, then ImagePullBackOff.
fn missing_image_backs_off(c: &Cluster) {
    patiently("ErrImagePull", 60, || {
        let reason = jsonpath(
            c,
            &["pod", "noimage"],
            "{.status.containerStatuses[0].state.waiting.reason}",
        );
        reason == "ErrImagePull" || reason == "ImagePullBackOff"
    });
    patiently("ImagePullBackOff", 60, || {
        jsonpath(
            c,
            &["pod", "noimage"],
            "{.status.containerStatuses[0].state.waiting.reason}",
        ) == "ImagePullBackOff"
    });
    let events = get(
        c,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=noimage",
        ],
    );
    assert!(events.contains("Failed to pull image"), "{events}");
}

/// A missing ConfigMap: CreateContainerConfigError with upstream's message, until it exists.
fn missing_config_map_holds_the_container_until_created(c: &Cluster) {
    // A missing ConfigMap: CreateContainerConfigError with upstream's message.
    patiently("CreateContainerConfigError", 60, || {
        get(c, &["get", "pod", "nocm", "--no-headers"]).contains("CreateContainerConfigError")
    });
    assert_eq!(
        jsonpath(
            c,
            &["pod", "nocm"],
            "{.status.containerStatuses[0].state.waiting.message}"
        ),
        "configmap \"absent\" not found"
    );
    // ... which the pod gets over once the ConfigMap exists.
    c.kubectl(&["create", "configmap", "absent", "--from-literal=k=v"])
        .out();
    patiently("nocm running", 60, || {
        jsonpath(c, &["pod", "nocm"], "{.status.phase}") == "Running"
    });
}

/// A Guaranteed pod's group carries the sums of its containers' limits.
fn guaranteed_pod_group_carries_the_summed_limits(c: &Cluster) {
    patiently("the limited pod running", 60, || {
        jsonpath(c, &["pod", "limited"], "{.status.phase}") == "Running"
    });
    assert_eq!(
        jsonpath(c, &["pod", "limited"], "{.status.qosClass}"),
        "Guaranteed"
    );
    let uid = jsonpath(c, &["pod", "limited"], "{.metadata.uid}");
    let read = |candidates: &[String]| {
        candidates
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_else(|| panic!("none of {candidates:?}"))
            .trim()
            .to_string()
    };
    let group = format!("rudder/pod{uid}");
    let memory = read(&[
        format!("/sys/fs/cgroup/memory/{group}/memory.limit_in_bytes"),
        format!("/sys/fs/cgroup/{group}/memory.max"),
    ]);
    assert_eq!(memory, (48u64 << 20).to_string());
    let cpu = read(&[
        format!("/sys/fs/cgroup/cpu,cpuacct/{group}/cpu.cfs_quota_us"),
        format!("/sys/fs/cgroup/cpu/{group}/cpu.cfs_quota_us"),
        format!("/sys/fs/cgroup/{group}/cpu.max"),
    ]);
    assert!(cpu == "25000" || cpu == "25000 100000", "{cpu}");
}

/// Over its memory limit: OOMKilled.
fn over_its_memory_limit_oom_killed(c: &Cluster) {
    // Over its memory limit: OOMKilled (filling 48 MiB can take a minute on a loaded machine).
    patiently_see("the OOM kill", 120, "\"reason\":\"OOMKilled\"", || {
        jsonpath(c, &["pod", "hog"], "{.status.containerStatuses[0].state}")
    });
}

// conformance: 267, 389, 415, 469, 512, 522, 559
#[test]
fn config_maps_and_secrets_reach_env_and_volumes_and_containers_survive_restarts() {
    let image = busybox();
    let mut c = Cluster::start_with_agent("node-c", 203, &[]);
    node_ready(&c, "node-c");
    create_config_map_and_secret(&c);
    reader_sees_env_and_volumes(&c, &image.name);
    config_map_change_reaches_the_volume(&c);
    stats_summary_and_node_proxy(&c);
    containers_survive_the_agent_restart(&mut c);
    deleting_the_pod_leaves_no_mounts(&c);
    volumes_the_agent_cannot_provide_keep_the_pod_from_starting(&c, &image.name);
}

/// A ConfigMap (with bytes that are not UTF-8) and a Secret.
fn create_config_map_and_secret(c: &Cluster) {
    // Bytes that are not UTF-8: kubectl puts them in binaryData.
    let blob = c.dir.path().join("blob");
    std::fs::write(&blob, [0xff, 0xfe, b'x']).unwrap();
    c.kubectl(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=greeting=hello",
        "--from-literal=colour=blue",
        &format!("--from-file=blob={}", blob.display()),
    ])
    .out();
    c.kubectl(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=s3cret",
    ])
    .out();
}

/// A pod reads both through its environment and its volumes.
fn reader_sees_env_and_volumes(c: &Cluster, image: &str) {
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: reader, labels: {{tier: back}}}}
spec:
  containers:
  - name: reader
    image: {}
    command: [sh, -c, 'echo \"$GREETING $PASSWORD $POD_NAME $(COLOUR)\"; while true; do cat /config/greeting; echo; sleep 1; done']
    env:
    - name: GREETING
      valueFrom: {{configMapKeyRef: {{name: settings, key: greeting}}}}
    - name: PASSWORD
      valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}
    - name: POD_NAME
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    envFrom:
    - configMapRef: {{name: settings}}
      prefix: CM_
    - configMapRef: {{name: settings}}
    volumeMounts:
    - {{name: config, mountPath: /config}}
    - {{name: secret, mountPath: /secret}}
    - {{name: scratch, mountPath: /scratch}}
  volumes:
  - name: config
    configMap: {{name: settings}}
  - name: secret
    secret: {{secretName: creds}}
  - name: scratch
    emptyDir: {{medium: Memory, sizeLimit: 1Mi}}
",
        image
    );
    c.apply(&manifest.replace("$(COLOUR)", "$(colour)")).out();
    patiently("the reader running", 60, || {
        jsonpath(c, &["pod", "reader"], "{.status.phase}") == "Running"
    });
    patiently("the first line", 30, || {
        c.kubectl(&["logs", "reader"])
            .stdout
            .lines()
            .next()
            .is_some()
    });
    let first = c
        .kubectl(&["logs", "reader"])
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(first, "hello s3cret reader blue");
    assert_eq!(
        get(
            c,
            &[
                "exec",
                "reader",
                "--",
                "busybox",
                "od",
                "-An",
                "-tx1",
                "/config/blob"
            ]
        ),
        "ff fe 78"
    );
}

/// A change to the ConfigMap reaches the volume (not the environment).
fn config_map_change_reaches_the_volume(c: &Cluster) {
    c.kubectl(&[
        "patch",
        "configmap",
        "settings",
        "-p",
        r#"{"data":{"greeting":"bonjour"}}"#,
    ])
    .out();
    patiently("the new content in the volume", 60, || {
        c.kubectl(&["logs", "reader", "--tail", "1"]).stdout.trim() == "bonjour"
    });
}

/// The agent's /stats/summary, its health and logs, directly and through the node proxy.
fn stats_summary_and_node_proxy(c: &Cluster) {
    // The agent's /stats/summary (for metrics-server): the pod and its container, from cgroups.
    let port = jsonpath(
        c,
        &["node", "node-c"],
        "{.status.daemonEndpoints.kubeletEndpoint.Port}",
    );
    let tls = c.dir.path().join("tls");
    let out = std::process::Command::new("curl")
        .arg("-sf")
        .arg("--cacert")
        .arg(tls.join("ca.crt"))
        .arg("--cert")
        .arg(tls.join("kubelet-client.crt"))
        .arg("--key")
        .arg(tls.join("kubelet-client.key"))
        .arg(format!("https://127.0.0.1:{port}/stats/summary"))
        .output()
        .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(summary["node"]["nodeName"], "node-c");
    let reader = summary["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podRef"]["name"] == "reader")
        .unwrap();
    assert_eq!(reader["containers"][0]["name"], "reader");
    assert!(
        reader["memory"]["workingSetBytes"].as_u64().unwrap() > 0,
        "{reader}"
    );
    assert!(
        reader["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0,
        "{reader}"
    );
    // Without a client certificate from the cluster CA: refused.
    let anonymous = std::process::Command::new("curl")
        .args(["-sf", "-k"])
        .arg(format!("https://127.0.0.1:{port}/stats/summary"))
        .status()
        .unwrap();
    assert!(!anonymous.success());
    // The same through the API server's node proxy.
    let proxied = get(
        c,
        &["get", "--raw", "/api/v1/nodes/node-c/proxy/stats/summary"],
    );
    let proxied: serde_json::Value = serde_json::from_str(&proxied).unwrap();
    assert_eq!(proxied["node"]["nodeName"], "node-c");
    assert_eq!(
        get(c, &["get", "--raw", "/api/v1/nodes/node-c/proxy/healthz"]),
        "ok"
    );
    // The node's /var/log, as the kubelet's /logs/ serves it.
    let listing = get(c, &["get", "--raw", "/api/v1/nodes/node-c/proxy/logs/"]);
    assert!(
        listing.starts_with("<!doctype html>") && listing.contains("<pre>"),
        "{listing}"
    );
}

/// The agent restarts (with the server): no container restarts.
fn containers_survive_the_agent_restart(c: &mut Cluster) {
    let id = jsonpath(
        c,
        &["pod", "reader"],
        "{.status.containerStatuses[0].containerID}",
    );
    assert!(id.starts_with("runc://"), "{id}");
    c.restart();
    node_ready(c, "node-c");
    consistently(
        "the container running on, unrestarted, after the agent's restart",
        Duration::from_secs(3),
        || {
            let status = "{.status.containerStatuses[0].containerID} \
                          {.status.containerStatuses[0].restartCount} {.status.phase}";
            jsonpath(c, &["pod", "reader"], status) == format!("{id} 0 Running")
        },
    );
    // Logs follow on after the restart too.
    patiently("logs after the restart", 30, || {
        c.kubectl(&["logs", "reader", "--tail", "1"]).stdout.trim() == "bonjour"
    });
}

/// Deleting the pod leaves nothing mounted under the agent's directory.
fn deleting_the_pod_leaves_no_mounts(c: &Cluster) {
    c.kubectl(&["delete", "pod", "reader", "--grace-period", "1"])
        .out();
    let dir = std::fs::canonicalize(c.agent_dir()).unwrap();
    eventually("no mounts left", || {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let pods = dir.join("pods");
        !mounts.lines().any(|l| l.contains(pods.to_str().unwrap()))
            && !mounts
                .lines()
                .any(|l| l.contains(dir.join("containers").to_str().unwrap()))
    });
}

/// An nfs volume (this node has no NFS client) and a claim that nothing binds, on pods placed
/// on the node directly: neither pod starts, FailedMount says why, and no directory stands in
/// for either volume.
fn volumes_the_agent_cannot_provide_keep_the_pod_from_starting(c: &Cluster, img: &str) {
    c.apply(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: unbound}\nspec:\n  \
         accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n",
    )
    .out();
    for (name, volume) in [
        ("share", "nfs: {server: 127.0.0.1, path: /exports}"),
        ("claimed", "persistentVolumeClaim: {claimName: unbound}"),
    ] {
        c.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: node-c\n  \
             restartPolicy: Never\n  containers:\n  - {{name: c, image: {img}, command: [sh, -c, \
             'echo kept > /data/file'], volumeMounts: [{{name: data, mountPath: /data}}]}}\n  \
             volumes: [{{name: data, {volume}}}]\n"
        ))
        .out();
    }
    let failed_mount = |pod: &str| {
        c.kubectl(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={pod},reason=FailedMount"),
            "-o",
            "jsonpath={.items[0].message}",
        ])
        .stdout
    };
    eventually("FailedMount for both pods", || {
        failed_mount("share").starts_with("MountVolume.SetUp failed for volume \"data\" : ")
            && !failed_mount("claimed").is_empty()
    });
    assert_eq!(
        failed_mount("share"),
        "MountVolume.SetUp failed for volume \"data\" : volume type nfs is not supported by this node"
    );
    // Watched over several of the agent's syncs (one a second): still waiting, nothing written.
    let stand_in = |pod: &str| {
        let uid = jsonpath(c, &["pod", pod], "{.metadata.uid}");
        c.agent_dir().join("pods").join(uid).join("volumes/data")
    };
    let waiting = "{.status.phase} {.status.containerStatuses[0].state.waiting.reason}";
    consistently(
        "both pods waiting in ContainerCreating, no directory standing in for their volumes",
        Duration::from_secs(5),
        || {
            ["share", "claimed"].iter().all(|pod| {
                jsonpath(c, &["pod", pod], waiting) == "Pending ContainerCreating"
                    && !stand_in(pod).exists()
            })
        },
    );
    let described = c.kubectl(&["describe", "pod", "claimed"]).out().to_string();
    assert!(
        described.contains("FailedMount")
            && described.contains("error processing PVC default/unbound: PVC is not bound"),
        "{described}"
    );
}

// conformance: 274, 276, 309, 540
#[test]
fn hooks_sidecars_deadlines_and_host_ports() {
    let image = busybox();
    let c = Cluster::start_with_agent("node-d", 204, &[]);
    node_ready(&c, "node-d");
    let host_dir = tempfile::tempdir().unwrap();
    let host_port = support::free_port();
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  terminationGracePeriodSeconds: 5
  initContainers:
  - name: sidecar
    image: {img}
    restartPolicy: Always
    command: [sh, -c, 'echo sidecar > /work/sidecar; exec sleep 3600']
    volumeMounts: [{{name: work, mountPath: /work}}]
  - name: init
    image: {img}
    command: [sh, -c, 'cat /work/sidecar > /work/init']
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: app
    image: {img}
    command: [sh, -c, 'echo \"init saw $(cat /work/init)\"; exec httpd -f -p 8080 -h /work']
    ports: [{{containerPort: 8080, hostPort: {host_port}}}]
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, 'echo started > /work/post']}}}}
      preStop: {{exec: {{command: [sh, -c, 'echo stopping > /host/prestop']}}}}
    volumeMounts:
    - {{name: work, mountPath: /work}}
    - {{name: host, mountPath: /host}}
  volumes:
  - {{name: work, emptyDir: {{}}}}
  - {{name: host, hostPath: {{path: {host}, type: Directory}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: deadline}}
spec:
  activeDeadlineSeconds: 3
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: c, image: {img}, command: [sleep, '3600']}}
",
        img = image.name,
        host = host_dir.path().display(),
    );
    c.apply(&manifest).out();
    patiently("hooked running and ready", 60, || {
        get(&c, &["get", "pod", "hooked", "--no-headers"])
            .split_whitespace()
            .nth(1)
            == Some("2/2")
    });
    // The sidecar ran before the init container, which ran before the app.
    assert_eq!(
        get(&c, &["logs", "hooked", "-c", "app"]),
        "init saw sidecar"
    );
    assert_eq!(
        jsonpath(
            &c,
            &["pod", "hooked"],
            "{.status.initContainerStatuses[0].started}"
        ),
        "true"
    );
    // postStart ran; the app serves its file through the node's host port.
    patiently("the host port", 30, || {
        pods::http_get_path("127.0.0.1", host_port, "/sidecar")
            .is_some_and(|b| b.contains("sidecar"))
    });
    let post = pods::http_get_path("127.0.0.1", host_port, "/post").unwrap_or_default();
    assert!(post.contains("started"), "{post}");
    // preStop runs before the container is stopped.
    c.kubectl(&["delete", "pod", "hooked"]).out();
    assert_eq!(
        std::fs::read_to_string(host_dir.path().join("prestop"))
            .unwrap_or_default()
            .trim(),
        "stopping"
    );

    // activeDeadlineSeconds: the pod fails as upstream's kubelet fails it.
    pods::pod_fails_with(
        &c,
        "deadline",
        "DeadlineExceeded",
        "Pod was active on the node longer than the specified deadline",
    );
}

#[test]
fn a_hundred_pods_created_and_deleted_leave_nothing_behind() {
    let image = busybox();
    let c = Cluster::start_with_agent("node-e", 205, &[]);
    node_ready(&c, "node-e");
    let agent = std::fs::canonicalize(c.agent_dir()).unwrap();
    let mut uids = Vec::new();
    for round in 0..10 {
        let mut manifest = String::new();
        for i in 0..10 {
            manifest.push_str(&format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: cycle-{round}-{i}, labels: {{cycle: x}}}}\n\
                 spec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {}, command: [sleep, '3600']}}\n",
                image.name
            ));
        }
        c.apply(&manifest).out();
        patiently("ten pods running", 90, || {
            let phases = get(
                &c,
                &[
                    "get",
                    "pods",
                    "-l",
                    "cycle=x",
                    "-o",
                    "jsonpath={.items[*].status.phase}",
                ],
            );
            phases
                .split_whitespace()
                .filter(|p| *p == "Running")
                .count()
                == 10
        });
        let ids = get(
            &c,
            &[
                "get",
                "pods",
                "-l",
                "cycle=x",
                "-o",
                "jsonpath={.items[*].metadata.uid}",
            ],
        );
        uids.extend(ids.split_whitespace().map(str::to_string));
        c.kubectl(&["delete", "pods", "-l", "cycle=x", "--wait=true"])
            .out();
    }
    assert_eq!(uids.len(), 100);
    // Nothing of theirs is left: mounts, containers, sandboxes, addresses, veths, cgroups, logs.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let ours: Vec<&str> = mounts
        .lines()
        .filter(|l| l.contains(agent.to_str().unwrap()))
        .collect();
    assert!(ours.is_empty(), "{ours:?}");
    for dir in ["containers", "pods"] {
        let left: Vec<_> = std::fs::read_dir(agent.join(dir)).unwrap().collect();
        assert!(left.is_empty(), "{dir}: {left:?}");
    }
    let leases: Vec<String> = std::fs::read_dir(agent.join("cni/networks/rudder"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("10."))
        .collect();
    assert!(leases.is_empty(), "addresses still leased: {leases:?}");
    let veths = std::process::Command::new("ip")
        .args(["link", "show", "master", "rdt205"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&veths.stdout).trim().is_empty(),
        "{}",
        String::from_utf8_lossy(&veths.stdout)
    );
    let logs: Vec<_> = std::fs::read_dir(c.dir.path().join("pod-logs"))
        .unwrap()
        .collect();
    assert!(logs.is_empty(), "{logs:?}");
    // Their cgroups, in every hierarchy (v1: one per controller; v2: the one).
    let mut roots: Vec<std::path::PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    roots.push("/sys/fs/cgroup".into());
    for uid in &uids {
        for root in &roots {
            for qos in ["", "besteffort/", "burstable/"] {
                let dir = root.join(format!("rudder/{qos}pod{uid}"));
                assert!(!dir.exists(), "{} left behind", dir.display());
            }
        }
    }
}

#[test]
fn unused_images_are_garbage_collected_and_used_ones_kept() {
    let image = busybox();
    // Collect whenever the disk holds anything (threshold 0), images older than 3 s.
    let c = Cluster::start_with_agent(
        "node-g",
        209,
        &[
            "--image-gc-high-threshold",
            "0",
            "--image-gc-low-threshold",
            "0",
            "--image-gc-period",
            "1s",
            "--image-gc-min-age",
            "3s",
        ],
    );
    node_ready(&c, "node-g");
    let images = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rudder"))
            .args(["images", "ls", "--data-dir"])
            .arg(c.agent_dir())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    c.kubectl(&["run", "user", "--image", &image.name, "--", "sleep", "3600"])
        .out();
    patiently("the pod running", 60, || {
        jsonpath(&c, &["pod", "user"], "{.status.phase}") == "Running"
    });
    // In use: kept, past its minimum age too.
    consistently("the image in use kept", Duration::from_secs(6), || {
        images().contains("busybox")
    });
    // Unused once the pod is gone: removed.
    c.kubectl(&["delete", "pod", "user", "--grace-period=0", "--force"])
        .out();
    patiently("the image collected", 60, || !images().contains("busybox"));
}

// conformance: 320, 372
#[test]
fn pull_secrets_seccomp_and_grpc_and_https_probes() {
    // A registry that wants a password: pulls fail without the pod's pull secret.
    let registry = testimage::Registry::start_with_basic_auth();
    let layout = tempfile::tempdir().unwrap();
    testimage::busybox_layout(layout.path(), "1");
    let image = registry.push_layout(layout.path(), "1", "private/busybox");
    let c = Cluster::start_with_agent("node-h", 210, &[]);
    node_ready(&c, "node-h");
    pulls_fail_without_the_pull_secret(&c, &registry, &image);
    seccomp_pods_with_each_profile(&c, &image);
    seccomp_profiles_filter_as_asked(&c);
    // Probes over gRPC and HTTPS, against servers on the host (a host-network pod's address is
    // the node's).
    let servers = probe_servers::ProbeServers::start(&c.dir.path().join("tls"));
    probes_over_grpc_and_https_on_the_host_network(&c, &image, &servers);
    failing_probes_are_reported_and_acted_on(&c, &servers);
    a_repeated_event_is_counted(&c);
}

/// Without credentials the pull fails as unauthorized; the pull secret the later pods use.
fn pulls_fail_without_the_pull_secret(c: &Cluster, registry: &testimage::Registry, image: &str) {
    c.kubectl(&["run", "nosecret", "--image", image, "--", "sleep", "3600"])
        .out();
    patiently("ErrImagePull without credentials", 60, || {
        let reason = jsonpath(
            c,
            &["pod", "nosecret"],
            "{.status.containerStatuses[0].state.waiting.reason}",
        );
        reason == "ErrImagePull" || reason == "ImagePullBackOff"
    });
    let msg = jsonpath(
        c,
        &["pod", "nosecret"],
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(msg.to_lowercase().contains("unauthorized"), "{msg}");
    c.kubectl(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        "--docker-server",
        &registry.host(),
        "--docker-username",
        testimage::REGISTRY_USER,
        "--docker-password",
        testimage::REGISTRY_PASSWORD,
    ])
    .out();
}

/// seccomp: pods with the runtime's default profile, a Localhost profile of their own, a
/// missing one, and none; a profile path out of the directory is refused.
fn seccomp_pods_with_each_profile(c: &Cluster, image: &str) {
    // seccomp: the runtime's default profile refuses new namespaces; a Localhost profile of
    // one's own is read from the agent's directory; without a profile, nothing is filtered.
    let profiles = c.agent_dir().join("seccomp/profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(
        profiles.join("no-mkdir.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    let script = "grep Seccomp: /proc/self/status; unshare -U true && echo unshared; mkdir /tmp/d && echo made; sleep 3600";
    let pod = |name: &str, profile: &str| {
        format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  imagePullSecrets: [{{name: regcred}}]
  {profile}
  containers:
  - name: c
    image: {image}
    command: [sh, -c, '{script}']
"
        )
    };
    c.apply(&pod("unconfined", "")).out();
    c.apply(&pod(
        "confined",
        "securityContext: {seccompProfile: {type: RuntimeDefault}}",
    ))
    .out();
    c.apply(&pod(
        "own",
        "securityContext: {seccompProfile: {type: Localhost, localhostProfile: profiles/no-mkdir.json}}",
    ))
    .out();
    c.apply(&pod(
        "lost",
        "securityContext: {seccompProfile: {type: Localhost, localhostProfile: profiles/absent.json}}",
    ))
    .out();
    let bad = c.apply(&pod(
        "escape",
        "securityContext: {seccompProfile: {type: Localhost, localhostProfile: ../x.json}}",
    ));
    assert!(
        bad.err().contains(
            "spec.securityContext.seccompProfile.localhostProfile: Invalid value: \"../x.json\": must not contain '..'"
        ),
        "{}",
        bad.err()
    );
}

/// The runtime's default profile refuses new namespaces; the Localhost profile refuses
/// mkdir; without a profile, nothing is filtered; a missing profile fails the container.
fn seccomp_profiles_filter_as_asked(c: &Cluster) {
    for name in ["unconfined", "confined", "own"] {
        patiently("the seccomp pods running", 60, || {
            get(c, &["logs", name]).contains("Seccomp:")
        });
    }
    patiently("the logs complete", 10, || {
        get(c, &["logs", "own"]).contains("unshared")
    });
    let logs = |name: &str| get(c, &["logs", name]);
    let unconfined = logs("unconfined");
    assert!(unconfined.contains("Seccomp:\t0"), "{unconfined}");
    assert!(unconfined.contains("unshared"), "{unconfined}");
    assert!(unconfined.contains("made"), "{unconfined}");
    let confined = logs("confined");
    assert!(confined.contains("Seccomp:\t2"), "{confined}");
    assert!(!confined.contains("unshared"), "{confined}");
    assert!(confined.contains("Operation not permitted"), "{confined}");
    assert!(confined.contains("made"), "{confined}");
    let own = logs("own");
    assert!(own.contains("Seccomp:\t2"), "{own}");
    assert!(own.contains("unshared"), "{own}");
    assert!(!own.contains("made"), "{own}");
    patiently("CreateContainerError for a missing profile", 60, || {
        jsonpath(
            c,
            &["pod", "lost"],
            "{.status.containerStatuses[0].state.waiting.reason}",
        ) == "CreateContainerError"
    });
    let msg = jsonpath(
        c,
        &["pod", "lost"],
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(
        msg.contains("cannot load seccomp profile") && msg.contains("absent.json"),
        "{msg}"
    );
}

/// The readiness of container `container` of pod `probed`.
fn ready(c: &Cluster, container: &str) -> String {
    jsonpath(
        c,
        &["pod", "probed"],
        &format!("{{.status.containerStatuses[?(@.name==\"{container}\")].ready}}"),
    )
}

/// Readiness over gRPC and HTTPS, in a pod on the host's network.
fn probes_over_grpc_and_https_on_the_host_network(
    c: &Cluster,
    image: &str,
    servers: &probe_servers::ProbeServers,
) {
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: probed}}
spec:
  hostNetwork: true
  hostAliases: [{{ip: 10.9.9.9, hostnames: [alias.example]}}]
  terminationGracePeriodSeconds: 1
  imagePullSecrets: [{{name: regcred}}]
  containers:
  - name: grpc
    image: {image}
    command: [sleep, '3600']
    readinessProbe:
      grpc: {{port: {grpc}, service: rudder}}
      periodSeconds: 1
  - name: https
    image: {image}
    command: [sleep, '3600']
    readinessProbe:
      httpGet: {{scheme: HTTPS, path: /healthz, port: {https}}}
      periodSeconds: 1
  - name: unknown
    image: {image}
    command: [sleep, '3600']
    readinessProbe:
      grpc: {{port: {grpc}, service: other}}
      periodSeconds: 1
  - name: broken
    image: {image}
    command: [sleep, '3600']
    livenessProbe:
      httpGet: {{scheme: HTTPS, path: /broken, port: {https}}}
      periodSeconds: 1
      failureThreshold: 1
",
        grpc = servers.grpc_port,
        https = servers.https_port,
    );
    c.apply(&manifest).out();
    patiently("gRPC and HTTPS readiness", 60, || {
        ready(c, "grpc") == "true" && ready(c, "https") == "true"
    });
    assert_eq!(ready(c, "unknown"), "false");
    // On the host's network: the host's name and hosts file, plus the pod's aliases.
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        get(c, &["exec", "probed", "-c", "grpc", "--", "hostname"]),
        host_name.trim()
    );
    let hosts = get(
        c,
        &["exec", "probed", "-c", "grpc", "--", "cat", "/etc/hosts"],
    );
    assert!(!hosts.contains("Kubernetes-managed"), "{hosts}");
    assert!(
        hosts.contains("# Entries added by HostAliases.\n10.9.9.9\talias.example"),
        "{hosts}"
    );
}

/// Failing probes: readiness lost, a restart for liveness, and events saying why.
fn failing_probes_are_reported_and_acted_on(c: &Cluster, servers: &probe_servers::ProbeServers) {
    servers.status.store(
        probe_servers::NOT_SERVING,
        std::sync::atomic::Ordering::SeqCst,
    );
    patiently("gRPC readiness lost", 30, || ready(c, "grpc") == "false");
    patiently("the broken container restarted", 60, || {
        jsonpath(
            c,
            &["pod", "probed"],
            "{.status.containerStatuses[?(@.name==\"broken\")].restartCount}",
        )
        .parse::<u32>()
        .unwrap_or(0)
            >= 1
    });
    let events = get(
        c,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=probed",
        ],
    );
    for text in [
        "Readiness probe failed: service unhealthy (responded with \"NOT_SERVING\")",
        "Readiness probe failed: error: health rpc probe failed: rpc error: code = NotFound desc = unknown service",
        "Liveness probe failed: HTTP probe failed with statuscode: 503",
        "Container broken failed liveness probe, will be restarted",
    ] {
        assert!(events.contains(text), "{text}\n{events}");
    }
}

/// A repeated event is one Event whose count goes up, shown as kubectl does.
fn a_repeated_event_is_counted(c: &Cluster) {
    patiently("a repeated event counted", 60, || {
        get(c, &["describe", "pod", "probed"]).contains(" over ")
    });
    let describe = get(c, &["describe", "pod", "probed"]);
    let repeated = describe
        .lines()
        .find(|l| l.contains("(x") && l.contains(" over "))
        .unwrap_or_default();
    assert!(repeated.contains("kubelet"), "{describe}");
    let events = get(
        c,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=probed",
        ],
    );
    let unknown = "code = NotFound desc = unknown service";
    assert_eq!(
        events.lines().filter(|l| l.contains(unknown)).count(),
        1,
        "{events}"
    );
}

/// A pod of one container `c` that is not restarted, with an emptyDir volume `work`; `spec`
/// and `container` are lines of the pod's and the container's spec.
fn one_container_pod(image: &str, name: &str, spec: &str, container: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
{spec}
  volumes: [{{name: work, emptyDir: {{}}}}]
  containers:
  - name: c
    image: {}
{container}",
        image
    )
}

// conformance: 281, 283, 382, 383, 384, 408, 409, 416, 417, 433
#[test]
fn termination_messages_sysctls_sub_paths_dns_and_runtime_classes() {
    let image = busybox();
    let c = Cluster::start_with_agent("node-i", 211, &["--allowed-unsafe-sysctls", "kernel.msg*"]);
    node_ready(&c, "node-i");
    apply_termination_message_pods(&c, &image.name);
    let host_value = apply_sysctl_pods(&c, &image.name);
    apply_sub_path_pods(&c, &image.name);
    runtime_classes_admit_pods_by_name(&c, &image.name);
    apply_dns_none_pod(&c, &image.name);
    pods_finish_as_upstream_s_do(&c, &host_value);
    bad_sub_paths_are_refused(&c);
}

/// A failing and a succeeding container whose log is their message on error only.
fn apply_termination_message_pods(c: &Cluster, image: &str) {
    // A failing container's log is its message under FallbackToLogsOnError; a successful one's
    // is not.
    for (name, code) in [("fails", 1), ("succeeds", 0)] {
        c.apply(&one_container_pod(
            image,
            name,
            "",
            &format!(
                "    terminationMessagePolicy: FallbackToLogsOnError\n    command: [sh, -c, 'echo one; echo DONE; exit {code}']\n"
            ),
        ))
        .out();
    }
}

/// Pods setting a safe, an unsafe, an allowed unsafe and invalid sysctls; returns the host's
/// value of the safe one.
fn apply_sysctl_pods(c: &Cluster, image: &str) -> String {
    // A safe sysctl is set in the pod's own namespace; an unsafe one is refused.
    let host_value = std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap();
    c.apply(&one_container_pod(
        image,
        "safe",
        "  securityContext: {sysctls: [{name: kernel.shm_rmid_forced, value: '1'}]}",
        "    command: [cat, /proc/sys/kernel/shm_rmid_forced]\n",
    ))
    .out();
    c.apply(&one_container_pod(
        image,
        "unsafe",
        "  securityContext: {sysctls: [{name: net.core.somaxconn, value: '1000'}]}",
        "    command: ['true']\n",
    ))
    .out();
    // One allowed with --allowed-unsafe-sysctls.
    c.apply(&one_container_pod(
        image,
        "allowed",
        "  securityContext: {sysctls: [{name: kernel.msgmax, value: '10000'}]}",
        "    command: [cat, /proc/sys/kernel/msgmax]\n",
    ))
    .out();
    let invalid = c.apply(&one_container_pod(
        image,
        "invalid",
        "  securityContext: {sysctls: [{name: 'foo-', value: '1'}, {name: 'bar..', value: '1'}]}",
        "    command: ['true']\n",
    ));
    for name in ["foo-", "bar.."] {
        assert!(
            invalid.err().contains(&format!(
                "spec.securityContext.sysctls[{}].name: Invalid value: \"{name}\"",
                if name == "foo-" { 0 } else { 1 }
            )),
            "{}",
            invalid.err()
        );
    }
    host_value
}

/// Pods with subPathExpr mounts: one expanded, one absolute and one upward.
fn apply_sub_path_pods(c: &Cluster, image: &str) {
    // subPathExpr: expanded from the container's variables; absolute paths and '..' refused.
    let env = |value: &str| {
        format!(
            "    env:\n    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}\n    - {{name: WHERE, value: '{value}'}}\n"
        )
    };
    c.apply(&one_container_pod(
            image,
        "expanded",
        "",
        &format!(
            "{}    volumeMounts:\n    - {{name: work, mountPath: /mine, subPathExpr: 'logs/$(POD_NAME)'}}\n    - {{name: work, mountPath: /all}}\n    command: [sh, -c, 'echo hi > /mine/f && ls /all/logs/expanded']\n",
            env("x")
        ),
    ))
    .out();
    for (name, value) in [("absolute", "/tmp"), ("upward", "..")] {
        c.apply(&one_container_pod(
            image,
            name,
            "",
            &format!(
                "{}    volumeMounts: [{{name: work, mountPath: /w, subPathExpr: '$(WHERE)'}}]\n    command: ['true']\n",
                env(value)
            ),
        ))
        .out();
    }
}

/// RuntimeClasses: admitted by name, with their overhead.
fn runtime_classes_admit_pods_by_name(c: &Cluster, image: &str) {
    // RuntimeClasses: admitted by name, with their overhead; run only by the agent's handler.
    c.apply(
        "apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: plain}
handler: runc
overhead: {podFixed: {cpu: 100m, memory: 16Mi}}
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: vm}
handler: kata
",
    )
    .out();
    c.apply(&one_container_pod(
        image,
        "classy",
        "  runtimeClassName: plain",
        "    command: ['true']\n",
    ))
    .out();
    c.apply(&one_container_pod(
        image,
        "virtual",
        "  runtimeClassName: vm",
        "    command: ['true']\n",
    ))
    .out();
    let absent = c.apply(&one_container_pod(
        image,
        "nowhere",
        "  runtimeClassName: absent",
        "    command: ['true']\n",
    ));
    assert!(
        absent.err().contains(
            "pods \"nowhere\" is forbidden: pod rejected: RuntimeClass \"absent\" not found"
        ),
        "{}",
        absent.err()
    );
    assert_eq!(
        jsonpath(c, &["pod", "classy"], "{.spec.overhead.memory}"),
        "16Mi"
    );
}

/// A pod with dnsPolicy None.
fn apply_dns_none_pod(c: &Cluster, image: &str) {
    // dnsPolicy None: exactly the pod's dnsConfig.
    c.apply(&one_container_pod(
            image,
        "resolver",
        "  dnsPolicy: None\n  dnsConfig: {nameservers: [1.1.1.1], searches: [resolv.conf.local], options: [{name: ndots, value: '2'}]}",
        "    command: [cat, /etc/resolv.conf]\n",
    ))
    .out();
}

/// The pods finish with their messages, sysctls, sub-paths, runtime handlers and resolver
/// configuration, or are refused as upstream's kubelet refuses them.
fn pods_finish_as_upstream_s_do(c: &Cluster, host_value: &str) {
    let terminated = |name: &str, field: &str| {
        jsonpath(
            c,
            &["pod", name],
            &format!("{{.status.containerStatuses[0].state.terminated.{field}}}"),
        )
    };
    patiently("the pods to finish", 60, || {
        ["fails", "succeeds", "safe", "expanded"]
            .iter()
            .all(|p| !terminated(p, "reason").is_empty())
    });
    assert_eq!(terminated("fails", "message"), "one\nDONE");
    assert_eq!(terminated("succeeds", "message"), "");
    assert_eq!(get(c, &["logs", "safe"]), "1");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap(),
        host_value
    );
    assert_eq!(get(c, &["logs", "expanded"]), "f");
    patiently("the runtime-class pod to finish", 30, || {
        terminated("classy", "reason") == "Completed"
    });
    patiently("no runtime for the vm handler", 30, || {
        get(
            c,
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=virtual",
            ],
        )
        .contains("failed to get sandbox runtime: no runtime for \"kata\" is configured")
    });
    patiently("the resolver pod to finish", 30, || {
        !terminated("resolver", "reason").is_empty()
    });
    assert_eq!(
        get(c, &["logs", "resolver"]),
        "nameserver 1.1.1.1\nsearch resolv.conf.local\noptions ndots:2"
    );
    pods::pod_fails_with(
        c,
        "unsafe",
        "SysctlForbidden",
        "Pod was rejected: forbidden sysctl: \"net.core.somaxconn\" not allowlisted",
    );
    patiently("the allowed sysctl pod to finish", 30, || {
        !terminated("allowed", "reason").is_empty()
    });
    assert_eq!(get(c, &["logs", "allowed"]), "10000");
}

/// Absolute and upward sub-paths are refused: CreateContainerConfigError.
fn bad_sub_paths_are_refused(c: &Cluster) {
    for (name, msg) in [
        (
            "absolute",
            "error SubPath `/tmp` must not be an absolute path",
        ),
        (
            "upward",
            "unable to provision SubPath `..`: must not contain '..'",
        ),
    ] {
        patiently(
            "CreateContainerConfigError for a bad subPathExpr",
            60,
            || {
                jsonpath(
                    c,
                    &["pod", name],
                    "{.status.containerStatuses[0].state.waiting.reason}",
                ) == "CreateContainerConfigError"
            },
        );
        assert_eq!(
            jsonpath(
                c,
                &["pod", name],
                "{.status.containerStatuses[0].state.waiting.message}"
            ),
            msg
        );
    }
}

#[test]
fn downward_api_resources_fs_groups_and_non_root_termination_messages() {
    let image = busybox();
    let c = Cluster::start_with_agent("node-f", 212, &[]);
    node_ready(&c, "node-f");
    c.kubectl(&[
        "create",
        "secret",
        "generic",
        "fsg",
        "--from-literal=data-1=value-1",
    ])
    .out();
    c.kubectl(&[
        "create",
        "configmap",
        "fsg-cm",
        "--from-literal=greeting=hello",
    ])
    .out();
    // conformance: 284
    // A non-root container writes its custom terminationMessagePath (the file is 0666).
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: nonroot-term}}\nspec:\n  restartPolicy: Never\n  \
         containers:\n  - name: c\n    image: {}\n    securityContext: {{runAsUser: 1000}}\n    \
         terminationMessagePath: /dev/termination-custom-log\n    \
         command: [sh, -c, 'echo -n DONE > /dev/termination-custom-log']\n",
        image.name
    ))
    .out();
    downward_api_volumes_expose_resources(&c, &image.name);
    fs_group_owns_volume_files(&c, &image.name);
    patiently("the non-root container to finish", 60, || {
        !jsonpath(
            &c,
            &["pod", "nonroot-term"],
            "{.status.containerStatuses[0].state.terminated.reason}",
        )
        .is_empty()
    });
    assert_eq!(
        jsonpath(
            &c,
            &["pod", "nonroot-term"],
            "{.status.containerStatuses[0].state.terminated.message}"
        ),
        "DONE"
    );
}

/// Waits for container `container` of pod `pod` to finish; its logs.
fn finished_logs(c: &Cluster, pod: &str, container: &str) -> String {
    let path = format!(
        "{{.status.containerStatuses[?(@.name==\"{container}\")].state.terminated.reason}}"
    );
    patiently("the container to finish", 60, || {
        !jsonpath(c, &["pod", pod], &path).is_empty()
    });
    get(c, &["logs", pod, "-c", container])
}

/// resourceFieldRef items of downwardAPI volumes and projected downwardAPI sources: the
/// container's limits and requests with their divisors, the node's allocatable without a limit.
fn downward_api_volumes_expose_resources(c: &Cluster, img: &str) {
    // conformance: 526, 527, 528, 529, 530, 531, 568, 584, 585, 586, 587, 588, 589, 590
    let item = |path: &str, container: &str, resource: &str, divisor: &str| {
        format!(
            "{{path: {path}, resourceFieldRef: {{containerName: {container}, resource: {resource}{divisor}}}}}"
        )
    };
    let d = [
        item("cpu_limit", "limited", "limits.cpu", ", divisor: 1m"),
        item("cpu_request", "limited", "requests.cpu", ", divisor: 1m"),
        item("memory_limit", "limited", "limits.memory", ", divisor: 1Mi"),
        item(
            "memory_request",
            "limited",
            "requests.memory",
            ", divisor: 1Mi",
        ),
    ]
    .join(", ");
    let p = [
        item("cpu_limit", "limited", "limits.cpu", ""),
        item("memory_limit", "limited", "limits.memory", ""),
        item("default_cpu", "bare", "limits.cpu", ", divisor: 1m"),
        item("default_memory", "bare", "limits.memory", ""),
        "{path: name, fieldRef: {fieldPath: metadata.name}}".to_string(),
    ]
    .join(", ");
    c.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: resources}}
spec:
  restartPolicy: Never
  containers:
  - name: limited
    image: {img}
    resources: {{limits: {{cpu: 1250m, memory: 64Mi}}, requests: {{cpu: 250m, memory: 32Mi}}}}
    command: [sh, -c, 'for f in /d/cpu_limit /d/cpu_request /d/memory_limit /d/memory_request /p/cpu_limit /p/memory_limit /p/default_cpu /p/default_memory /p/name /p/data-1 /p/greeting; do cat $f; echo; done']
    volumeMounts: [{{name: d, mountPath: /d}}, {{name: p, mountPath: /p}}]
  - {{name: bare, image: {img}, command: ['true']}}
  volumes:
  - name: d
    downwardAPI: {{items: [{d}]}}
  - name: p
    projected:
      sources:
      - downwardAPI: {{items: [{p}]}}
      - secret: {{name: fsg}}
      - configMap: {{name: fsg-cm}}
"
    ))
    .out();
    let cpus: u64 = jsonpath(c, &["node", "node-f"], "{.status.allocatable.cpu}")
        .parse()
        .unwrap();
    let memory = jsonpath(c, &["node", "node-f"], "{.status.allocatable.memory}");
    let memory: u64 = memory.strip_suffix("Ki").unwrap().parse::<u64>().unwrap() * 1024;
    assert_eq!(
        finished_logs(c, "resources", "limited"),
        format!(
            "1250\n250\n64\n32\n2\n67108864\n{}\n{memory}\nresources\nvalue-1\nhello",
            cpus * 1000
        )
    );
}

/// A pod's fsGroup owns its volumes' files, with upstream's SetVolumeOwnership modes: a
/// non-root user in that group reads a 0440 secret file; emptyDir is setgid and group-writable.
fn fs_group_owns_volume_files(c: &Cluster, img: &str) {
    // conformance: 600, 611
    c.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: fsgroup}}
spec:
  restartPolicy: Never
  securityContext: {{runAsUser: 1000, fsGroup: 1001}}
  containers:
  - name: c
    image: {img}
    command: [sh, -c, 'busybox id -u; cat /s/data-1; echo; cat /ps/data-1; echo; busybox stat -L -c \"%A %g\" /s/data-1 /ps/data-1 /c/greeting /dw/name /e; busybox touch /e/f && busybox stat -c \"%A %g\" /e/f']
    volumeMounts:
    - {{name: s, mountPath: /s}}
    - {{name: ps, mountPath: /ps}}
    - {{name: c, mountPath: /c}}
    - {{name: dw, mountPath: /dw}}
    - {{name: e, mountPath: /e}}
  volumes:
  - {{name: s, secret: {{secretName: fsg, defaultMode: 288}}}}
  - {{name: ps, projected: {{defaultMode: 288, sources: [{{secret: {{name: fsg}}}}]}}}}
  - {{name: c, configMap: {{name: fsg-cm}}}}
  - {{name: dw, downwardAPI: {{defaultMode: 256, items: [{{path: name, fieldRef: {{fieldPath: metadata.name}}}}]}}}}
  - {{name: e, emptyDir: {{}}}}
"
    ))
    .out();
    assert_eq!(
        finished_logs(c, "fsgroup", "c"),
        "1000\nvalue-1\nvalue-1\n-r--r----- 1001\n-r--r----- 1001\n-rw-r--r-- 1001\n\
         -r--r----- 1001\ndrwxrwsrwx 1001\n-rw-r--r-- 1001"
    );
}
