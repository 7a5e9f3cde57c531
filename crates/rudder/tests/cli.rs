//! The checklist's kubectl lines (upstream's `test/e2e/kubectl`), with the real kubectl
//! against the real server: versions, cluster-info, proxy, diff, expose and server-side dry
//! run need no node; run, label, annotate, replace, describe, replication controllers,
//! scale and logs run real containers on a node agent (as root).

#[path = "support/pods.rs"]
mod pods;
mod support;
#[path = "../../image/tests/support/testimage.rs"]
mod testimage;

use std::io::{Read, Write};
use std::path::Path;

use pods::{get, jsonpath, node_ready, patiently, patiently_see};
use serde_json::Value;
use support::{Cluster, terminate};

/// `text` without terminal colour sequences (`ESC [ ... m`), as upstream's test reads it.
fn without_colours(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            out.push(ch);
        }
    }
    out
}

// conformance: 682, 683, 692
#[test]
fn kubectl_reports_versions_and_the_control_plane() {
    let c = Cluster::start(&[]);
    let versions = c.kubectl(&["api-versions"]).out().to_string();
    assert!(versions.lines().any(|l| l == "v1"), "{versions}");
    let info = without_colours(c.kubectl(&["cluster-info"]).out());
    let running = format!(
        "Kubernetes control plane is running at https://127.0.0.1:{}",
        c.port
    );
    assert!(info.contains(&running), "{info}");
    let plain = c.kubectl(&["version"]).out().to_string();
    assert!(
        plain.contains("Client Version: v1.") && plain.contains("Server Version: v1.33"),
        "{plain}"
    );
    let v: Value = serde_json::from_str(c.kubectl(&["version", "-o", "json"]).out()).unwrap();
    for side in ["clientVersion", "serverVersion"] {
        // The server's gitCommit and buildDate are empty: the binary does not record them.
        for key in ["major", "minor", "gitVersion", "platform"] {
            let field = v[side][key].as_str().unwrap_or_default();
            assert!(!field.is_empty(), "{side}.{key} in {v}");
        }
    }
    assert_eq!(v["serverVersion"]["major"], "1");
    assert_eq!(v["serverVersion"]["minor"], "33");
}

/// The body of an HTTP/1.0 `GET /api` over `stream`.
fn get_api(mut stream: impl Read + Write) -> Value {
    stream
        .write_all(b"GET /api HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    serde_json::from_str(body).unwrap()
}

/// What a `kubectl proxy` writing to `out` printed once it is serving.
fn serving(out: &Path) -> String {
    let mut said = String::new();
    patiently("kubectl proxy to serve", 30, || {
        said = std::fs::read_to_string(out).unwrap_or_default();
        said.contains("Starting to serve on")
    });
    said
}

// conformance: 693, 694
#[test]
fn kubectl_proxy_serves_on_a_random_port_and_on_a_unix_socket() {
    let c = Cluster::start(&[]);
    let out = c.dir.path().join("proxy-port.out");
    let proxy = c.kubectl_background(&["proxy", "--port=0"], &out);
    let said = serving(&out);
    let port: u16 = said
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {said:?}"));
    assert_ne!(port, 0);
    let api = get_api(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    assert!(
        api["versions"].as_array().is_some_and(|v| !v.is_empty()),
        "{api}"
    );
    terminate(proxy);

    let socket = c.dir.path().join("proxy.sock");
    let out = c.dir.path().join("proxy-socket.out");
    let arg = format!("--unix-socket={}", socket.display());
    let proxy = c.kubectl_background(&["proxy", &arg], &out);
    serving(&out);
    let api = get_api(std::os::unix::net::UnixStream::connect(&socket).unwrap());
    assert!(
        api["versions"].as_array().is_some_and(|v| !v.is_empty()),
        "{api}"
    );
    terminate(proxy);
}

fn deployment(image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, labels: {{app: web}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: '{image}'}}]
"
    )
}

// conformance: 685, 686, 691
#[test]
fn kubectl_diff_server_side_dry_run_and_expose_change_nothing_they_should_not() {
    let c = Cluster::start(&[]);
    c.apply(&deployment("example.com/web:1")).out();
    let diff = c.kubectl_in(&["diff", "-f", "-"], Some(&deployment("example.com/web:2")));
    // kubectl diff exits 1 when it found differences.
    assert!(!diff.ok, "no difference found: {}", diff.stdout);
    let changed = |sign: char, image: &str| {
        diff.stdout
            .lines()
            .any(|l| l.starts_with(sign) && l.contains(&format!("image: {image}")))
    };
    assert!(
        changed('-', "example.com/web:1") && changed('+', "example.com/web:2"),
        "{}",
        diff.stdout
    );
    let image = |what: &[&str]| jsonpath(&c, what, "{..containers[0].image}");
    assert_eq!(image(&["deployment", "web"]), "example.com/web:1");

    c.kubectl(&["run", "dry", "--image=example.com/a:1", "--restart=Never"])
        .out();
    let patch = r#"{"spec":{"containers":[{"name":"dry","image":"example.com/a:2"}]}}"#;
    let would = c
        .kubectl(&[
            "patch",
            "pod",
            "dry",
            "-p",
            patch,
            "--dry-run=server",
            "-o",
            "yaml",
        ])
        .out()
        .to_string();
    assert!(would.contains("image: example.com/a:2"), "{would}");
    assert_eq!(image(&["pod", "dry"]), "example.com/a:1");

    expose_a_controller_then_its_service(&c);
}

/// `kubectl expose` of a replication controller, then of the Service that made.
fn expose_a_controller_then_its_service(c: &Cluster) {
    c.apply(
        "apiVersion: v1
kind: ReplicationController
metadata: {name: redis, labels: {app: redis}}
spec:
  replicas: 1
  selector: {app: redis}
  template:
    metadata: {labels: {app: redis}}
    spec:
      containers: [{name: redis, image: example.com/redis:1, ports: [{name: redis-server, containerPort: 6379}]}]
",
    )
    .out();
    c.kubectl(&[
        "expose",
        "rc",
        "redis",
        "--name=rm2",
        "--port=1234",
        "--target-port=6379",
    ])
    .out();
    c.kubectl(&[
        "expose",
        "service",
        "rm2",
        "--name=rm3",
        "--port=2345",
        "--target-port=6379",
    ])
    .out();
    for (name, port) in [("rm2", "1234"), ("rm3", "2345")] {
        let ports = jsonpath(
            c,
            &["service", name],
            "{.spec.ports[0].port}/{.spec.ports[0].targetPort}",
        );
        assert_eq!(ports, format!("{port}/6379"));
        let selector = jsonpath(c, &["service", name], "{.spec.selector.app}");
        assert_eq!(selector, "redis");
    }
}

/// A registry holding one busybox image under two names, for a replace that changes it.
struct Images {
    _registry: testimage::Registry,
    _layout: tempfile::TempDir,
    first: String,
    second: String,
}

fn images() -> Images {
    let registry = testimage::Registry::start();
    let layout = tempfile::tempdir().unwrap();
    testimage::busybox_layout(layout.path(), "1");
    let first = registry.push_layout(layout.path(), "1", "busybox");
    let second = registry.push_layout(layout.path(), "1", "other");
    Images {
        _registry: registry,
        _layout: layout,
        first,
        second,
    }
}

fn running(c: &Cluster, pod: &str) {
    patiently("the pod to run", 90, || {
        jsonpath(c, &["pod", pod], "{.status.phase}") == "Running"
    });
}

// conformance: 684, 687, 688, 689, 690, 695, 696, 700
#[test]
fn kubectl_runs_labels_replaces_scales_describes_and_reads_logs() {
    let images = images();
    let c = Cluster::start_with_agent("node-k", 216, &[]);
    node_ready(&c, "node-k");
    run_label_and_replace(&c, &images);
    logs(&c, &images.first);
    replication_controller(&c, &images.first);
    describe(&c);
}

/// `kubectl run`, `label` (added and removed) and `replace` with another image.
fn run_label_and_replace(c: &Cluster, images: &Images) {
    let image = format!("--image={}", images.first);
    c.kubectl(&[
        "run",
        "one",
        &image,
        "--restart=Never",
        "--",
        "sleep",
        "3600",
    ])
    .out();
    running(c, "one");
    let containers = jsonpath(c, &["pod", "one"], "{.spec.containers[*].image}");
    assert_eq!(containers, images.first);
    c.kubectl(&["label", "pods", "one", "testing-label=testing-label-value"])
        .out();
    let labelled = get(c, &["get", "pods", "-l", "testing-label", "-o", "name"]);
    assert_eq!(labelled, "pod/one");
    c.kubectl(&["label", "pods", "one", "testing-label-"]).out();
    assert_eq!(
        get(c, &["get", "pods", "-l", "testing-label", "-o", "name"]),
        ""
    );

    let pod = c
        .kubectl(&["get", "pod", "one", "-o", "json"])
        .out()
        .to_string();
    let replaced = pod.replace(&images.first, &images.second);
    c.kubectl_in(&["replace", "-f", "-"], Some(&replaced)).out();
    assert_eq!(
        jsonpath(c, &["pod", "one"], "{.spec.containers[0].image}"),
        images.second
    );
    patiently_see("the new image to run", 90, &images.second, || {
        jsonpath(c, &["pod", "one"], "{.status.containerStatuses[0].image}")
    });
    c.kubectl(&["delete", "pod", "one", "--grace-period=1"])
        .out();
}

/// `kubectl logs` with `--tail`, `--limit-bytes`, `--timestamps` and `--since`.
fn logs(c: &Cluster, image: &str) {
    let image = format!("--image={image}");
    let script = "for i in 1 2 3 4 5; do echo line $i; done; sleep 3600";
    c.kubectl(&[
        "run",
        "talker",
        &image,
        "--restart=Never",
        "--",
        "sh",
        "-c",
        script,
    ])
    .out();
    running(c, "talker");
    let all = || c.kubectl(&["logs", "talker"]).out().to_string();
    patiently("all five lines", 30, || all().lines().count() == 5);
    assert_eq!(c.kubectl(&["logs", "talker", "--tail=1"]).out(), "line 5\n");
    assert_eq!(c.kubectl(&["logs", "talker", "--limit-bytes=1"]).out(), "l");
    let stamped = c
        .kubectl(&["logs", "talker", "--tail=1", "--timestamps"])
        .out()
        .to_string();
    let (stamp, line) = stamped.trim_end().split_once(' ').unwrap();
    assert_eq!(line, "line 5");
    assert!(rfc3339(stamp), "not RFC 3339: {stamp}");
    assert_eq!(
        c.kubectl(&["logs", "talker", "--since=24h"])
            .out()
            .lines()
            .count(),
        5
    );
    // The lines were all written at the start: a second later, the last second has none.
    patiently("a second without lines", 30, || {
        c.kubectl(&["logs", "talker", "--since=1s"])
            .out()
            .is_empty()
    });
    c.kubectl(&["delete", "pod", "talker", "--grace-period=1"])
        .out();
}

/// Whether `s` reads as an RFC 3339 time in UTC: `2006-01-02T15:04:05[.fraction]Z`.
fn rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && s.ends_with('Z')
}

/// A replication controller of two runs two pods of its image, is scaled to one and back,
/// has its pods annotated with `kubectl patch`, and is deleted.
fn replication_controller(c: &Cluster, image: &str) {
    c.apply(&format!(
        "apiVersion: v1
kind: ReplicationController
metadata: {{name: rc, labels: {{app: rc}}}}
spec:
  replicas: 2
  selector: {{app: rc}}
  template:
    metadata: {{labels: {{app: rc}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{{name: c, image: '{image}', command: [sleep, '3600']}}]
"
    ))
    .out();
    let running_pods = || {
        let phases = jsonpath(c, &["pods", "-l", "app=rc"], "{.items[*].status.phase}");
        phases
            .split_whitespace()
            .filter(|p| *p == "Running")
            .count()
    };
    let pods = || get(c, &["get", "pods", "-l", "app=rc", "-o", "name"]);
    patiently("two running pods", 90, || {
        running_pods() == 2 && pods().lines().count() == 2
    });
    let images = jsonpath(
        c,
        &["pods", "-l", "app=rc"],
        "{.items[*].spec.containers[0].image}",
    );
    assert_eq!(images, format!("{image} {image}"));
    for pod in pods().lines() {
        c.kubectl(&[
            "patch",
            pod,
            "-p",
            r#"{"metadata":{"annotations":{"x":"y"}}}"#,
        ])
        .out();
    }
    let annotations = jsonpath(
        c,
        &["pods", "-l", "app=rc"],
        "{.items[*].metadata.annotations.x}",
    );
    assert_eq!(annotations, "y y");
    c.kubectl(&["scale", "rc", "rc", "--replicas=1"]).out();
    patiently("one pod", 60, || pods().lines().count() == 1);
    c.kubectl(&["scale", "rc", "rc", "--replicas=2"]).out();
    patiently("two running pods again", 90, || running_pods() == 2);
    describe_the_controller(c);
    c.kubectl(&["delete", "rc", "rc"]).out();
    patiently("the pods to go", 60, || pods().is_empty());
}

fn describe_the_controller(c: &Cluster) {
    let rc = c.kubectl(&["describe", "rc", "rc"]).out().to_string();
    for want in [
        "Name:",
        "rc",
        "Namespace:",
        "default",
        "Selector:",
        "app=rc",
        "Labels:",
        "Replicas:",
        "2 current / 2 desired",
        "Pods Status:",
        "2 Running",
    ] {
        assert!(rc.contains(want), "{want:?} not in {rc}");
    }
    let pod = get(c, &["get", "pods", "-l", "app=rc", "-o", "name"]);
    let pod = pod.lines().next().unwrap();
    let described = c.kubectl(&["describe", pod]).out().to_string();
    for want in [
        "Name:",
        "Namespace:",
        "default",
        "Node:",
        "node-k",
        "Labels:",
        "app=rc",
        "Status:",
        "Running",
        "IP:",
        "Controlled By:",
        "ReplicationController/rc",
    ] {
        assert!(described.contains(want), "{want:?} not in {described}");
    }
}

/// `kubectl describe` of a Service, a node and a namespace.
fn describe(c: &Cluster) {
    c.kubectl(&[
        "create",
        "service",
        "clusterip",
        "described",
        "--tcp=80:8080",
    ])
    .out();
    let service = c
        .kubectl(&["describe", "service", "described"])
        .out()
        .to_string();
    for want in [
        "Name:",
        "described",
        "Namespace:",
        "default",
        "Labels:",
        "app=described",
        "Selector:",
        "Type:",
        "ClusterIP",
        "Port:",
        "80/TCP",
        "TargetPort:",
        "8080/TCP",
    ] {
        assert!(service.contains(want), "{want:?} not in {service}");
    }
    let node = c.kubectl(&["describe", "node", "node-k"]).out().to_string();
    for want in [
        "Name:",
        "node-k",
        "Labels:",
        "kubernetes.io/hostname=node-k",
        "Conditions:",
        "Ready",
        "Addresses:",
        "Capacity:",
        "Allocatable:",
        "System Info:",
        "Non-terminated Pods:",
    ] {
        assert!(node.contains(want), "{want:?} not in {node}");
    }
    let namespace = c
        .kubectl(&["describe", "namespace", "default"])
        .out()
        .to_string();
    for want in [
        "Name:",
        "default",
        "Labels:",
        "kubernetes.io/metadata.name=default",
        "Status:",
        "Active",
    ] {
        assert!(namespace.contains(want), "{want:?} not in {namespace}");
    }
}
