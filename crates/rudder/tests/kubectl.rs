//! The API server driven by the real kubectl (the dispatcher picks kubectl 1.33 for our 1.33
//! server): what users type, and what kubectl prints back.

mod support;

use base64::Engine;
use support::{Cluster, eventually};

const DEPLOYMENT: &str = "
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
";

// conformance: 489
#[test]
fn a_new_cluster_has_its_namespaces_and_the_kubernetes_service() {
    let c = Cluster::start(&[]);
    let ns = c.kubectl(&["get", "namespaces"]);
    let lines: Vec<&str> = ns.out().lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "STATUS", "AGE"]
    );
    for name in ["default", "kube-node-lease", "kube-public", "kube-system"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(name) && l.contains("Active")),
            "{name} in {lines:?}"
        );
    }
    let svc = c.kubectl(&[
        "get",
        "svc",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP} {.spec.ports[0].port}",
    ]);
    assert_eq!(svc.out(), "10.43.0.1 443");
    let version = c.kubectl(&["version"]);
    assert!(
        version.out().contains("Server Version: v1.33.0+rudder"),
        "{}",
        version.stdout
    );
    let resources = c.kubectl(&["api-resources"]);
    for line in [
        "deployments                       deploy       apps/v1",
        "pods                              po           v1",
    ] {
        assert!(
            resources.out().contains(line),
            "{line:?} in\n{}",
            resources.stdout
        );
    }
}

#[test]
fn apply_is_created_then_unchanged_then_configured() {
    let c = Cluster::start(&[]);
    assert_eq!(c.apply(DEPLOYMENT).out(), "deployment.apps/web created\n");
    assert_eq!(c.apply(DEPLOYMENT).out(), "deployment.apps/web unchanged\n");
    assert_eq!(
        c.apply(&DEPLOYMENT.replace("replicas: 2", "replicas: 3"))
            .out(),
        "deployment.apps/web configured\n"
    );
    let got = c.kubectl(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.replicas} {.metadata.generation} {.spec.strategy.type}",
    ]);
    assert_eq!(got.out(), "3 2 RollingUpdate");
    let wide = c.kubectl(&["get", "deployments", "-o", "wide"]);
    let header: Vec<&str> = wide
        .out()
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert!(
        wide.stdout.lines().nth(1).unwrap().contains("0/3"),
        "{}",
        wide.stdout
    );
    assert_eq!(
        c.kubectl(&["get", "deploy", "-o", "name"]).out(),
        "deployment.apps/web\n"
    );
}

#[test]
fn scale_label_annotate_set_image_and_the_three_patch_types() {
    let c = Cluster::start(&[]);
    c.apply(DEPLOYMENT).out();
    let jp = |path: &str| {
        c.kubectl(&["get", "deploy", "web", "-o", &format!("jsonpath={path}")])
            .out()
            .to_string()
    };
    assert_eq!(
        c.kubectl(&["scale", "deploy", "web", "--replicas=5"]).out(),
        "deployment.apps/web scaled\n"
    );
    assert_eq!(jp("{.spec.replicas}"), "5");
    assert_eq!(
        c.kubectl(&["label", "deploy", "web", "tier=front"]).out(),
        "deployment.apps/web labeled\n"
    );
    assert_eq!(
        c.kubectl(&["annotate", "deploy", "web", "note=hi"]).out(),
        "deployment.apps/web annotated\n"
    );
    assert_eq!(
        jp("{.metadata.labels.tier} {.metadata.annotations.note}"),
        "front hi"
    );
    assert_eq!(
        c.kubectl(&["set", "image", "deploy/web", "nginx=nginx:1.26"])
            .out(),
        "deployment.apps/web image updated\n"
    );
    assert_eq!(
        jp(
            "{.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}"
        ),
        "nginx:1.26 80"
    );
    c.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":1}]"#,
    ])
    .out();
    c.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"paused":true}}"#,
    ])
    .out();
    c.kubectl(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}"#,
    ])
    .out();
    assert_eq!(
        jp("{.spec.replicas} {.spec.paused} {.spec.template.spec.containers[*].name}"),
        "1 true nginx sidecar"
    );
    let bad = c.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":9}]"#,
    ]);
    // Upstream's 422 for a patch that does not apply: the Go library's words as the cause,
    // which kubectl prints after an empty field name.
    assert!(
        bad.err()
            .contains("The request is invalid: : testing value /spec/replicas failed: test failed"),
        "{}",
        bad.stderr
    );
}

#[test]
fn create_get_describe_delete_and_not_found() {
    let c = Cluster::start(&[]);
    let cm =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: '1', b: '2'}\n";
    assert_eq!(
        c.kubectl_in(&["create", "-f", "-"], Some(cm)).out(),
        "configmap/settings created\n"
    );
    let again = c.kubectl_in(&["create", "-f", "-"], Some(cm));
    assert!(again.err().contains("Error from server (AlreadyExists): error when creating \"STDIN\": configmaps \"settings\" already exists"), "{}", again.stderr);
    let got = c.kubectl(&["get", "cm", "settings"]);
    let row: Vec<&str> = got
        .out()
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&row[..2], ["settings", "2"]);
    let described = c.kubectl(&["describe", "configmap", "settings"]);
    assert!(
        described.out().contains("Name:         settings"),
        "{}",
        described.stdout
    );
    let yaml = c.kubectl(&["get", "cm", "settings", "-o", "yaml"]);
    assert!(
        yaml.out().contains("uid: ") && yaml.stdout.contains("resourceVersion: "),
        "{}",
        yaml.stdout
    );
    assert_eq!(
        c.kubectl(&["delete", "cm", "settings"]).out(),
        "configmap \"settings\" deleted\n"
    );
    let gone = c.kubectl(&["get", "cm", "settings"]);
    assert_eq!(
        gone.err().trim(),
        "Error from server (NotFound): configmaps \"settings\" not found"
    );
    let pod = c.kubectl(&[
        "run",
        "hello",
        "--image=busybox",
        "--restart=Never",
        "--",
        "echo",
        "hi",
    ]);
    assert_eq!(pod.out(), "pod/hello created\n");
    let pods = c.kubectl(&["get", "pods"]);
    let header: Vec<&str> = pods
        .out()
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert!(
        pods.stdout.contains("0/1") && pods.stdout.contains("Pending"),
        "{}",
        pods.stdout
    );
}

#[test]
fn invalid_objects_get_upstream_field_errors() {
    let c = Cluster::start(&[]);
    let bad = c.kubectl_in(
        &["apply", "-f", "-"],
        Some(&DEPLOYMENT.replace(
            "template:\n    metadata:\n      labels: {app: web}",
            "template:\n    metadata:\n      labels: {app: x}",
        )),
    );
    assert!(
        bad.err().contains("The Deployment \"web\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`"),
        "{}",
        bad.stderr
    );
    let ns = c.kubectl_in(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata: {name: Bad_Name}\n"),
    );
    assert!(ns.err().contains("The Namespace \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of"), "{}", ns.stderr);
    let pod = c.kubectl_in(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n"),
    );
    assert!(
        pod.err()
            .contains("spec.containers[0].image: Required value"),
        "{}",
        pod.stderr
    );
    let typed = c.kubectl_in(
        &["apply", "-f", "-"],
        Some(&DEPLOYMENT.replace("replicas: 2", "replicas: three")),
    );
    assert!(
        typed.err().contains(
            "Deployment in version \"v1\" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
        ),
        "{}",
        typed.stderr
    );
    let cm = c.kubectl_in(
        &["create", "-n", "nowhere", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"),
    );
    assert!(
        cm.err().contains("namespaces \"nowhere\" not found"),
        "{}",
        cm.stderr
    );
    // Nothing was stored.
    assert_eq!(
        c.kubectl(&["get", "deploy,pods"]).stderr.trim(),
        "No resources found in default namespace."
    );
}

#[test]
fn malformed_and_oversized_bodies_get_a_status_and_the_server_keeps_serving() {
    let c = Cluster::start(&[]);
    let dir = c.dir.path();
    std::fs::write(dir.join("bad.json"), "{\"apiVersion\": \"v1\", \"kind\": ").unwrap();
    let bad = c.kubectl(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        dir.join("bad.json").to_str().unwrap(),
    ]);
    assert!(bad.err().contains("the object provided is unrecognized (must be of type ConfigMap): couldn't get version/kind; json parse error"), "{}", bad.stderr);
    std::fs::write(
        dir.join("big.json"),
        format!("{{\"data\": {{\"a\": \"{}\"}}}}", "x".repeat(4 << 20)),
    )
    .unwrap();
    let big = c.kubectl(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        dir.join("big.json").to_str().unwrap(),
    ]);
    assert!(
        big.err()
            .contains("Request entity too large: limit is 3145728"),
        "{}",
        big.stderr
    );
    std::fs::write(
        dir.join("wrong.json"),
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#,
    )
    .unwrap();
    let wrong = c.kubectl(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        dir.join("wrong.json").to_str().unwrap(),
    ]);
    assert!(
        wrong
            .err()
            .contains("the kind in the data (Secret) does not match the expected kind (ConfigMap)"),
        "{}",
        wrong.stderr
    );
    std::fs::write(dir.join("ns.json"), r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"kube-system"}}"#).unwrap();
    let ns = c.kubectl(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        dir.join("ns.json").to_str().unwrap(),
    ]);
    assert!(
        ns.err().contains(
            "the namespace of the provided object does not match the namespace sent on the request"
        ),
        "{}",
        ns.stderr
    );
    assert!(c.kubectl(&["get", "--raw", "/readyz"]).out() == "ok");
}

#[test]
fn stale_updates_conflict_with_the_upstream_message() {
    let c = Cluster::start(&[]);
    c.kubectl_in(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {v: '1'}\n"),
    )
    .out();
    let stale = c
        .kubectl(&["get", "cm", "cfg", "-o", "yaml"])
        .out()
        .to_string();
    c.kubectl(&["patch", "cm", "cfg", "-p", r#"{"data":{"v":"2"}}"#])
        .out();
    let conflict = c.kubectl_in(
        &["replace", "-f", "-"],
        Some(&stale.replace("v: \"1\"", "v: \"3\"")),
    );
    assert!(
        conflict.err().contains("Operation cannot be fulfilled on configmaps \"cfg\": the object has been modified; please apply your changes to the latest version and try again"),
        "{}",
        conflict.stderr
    );
}

#[test]
fn selectors_pagination_and_dry_run() {
    let c = Cluster::start(&[]);
    for i in 0..7 {
        let cm = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}, labels: {{group: g{}}}}}\n",
            i % 2
        );
        c.kubectl_in(&["create", "-f", "-"], Some(&cm)).out();
    }
    let paged = c.kubectl(&["get", "cm", "--chunk-size=2", "-o", "name", "-v=6"]);
    // Ours, not the kube-root-ca.crt every namespace gets.
    let names: Vec<&str> = paged
        .out()
        .lines()
        .filter(|n| n.starts_with("configmap/c"))
        .collect();
    assert_eq!(names.len(), 7, "{names:?}");
    assert!(
        paged.stderr.matches("continue=").count() >= 3,
        "{}",
        paged.stderr
    );
    let odd = c.kubectl(&["get", "cm", "-l", "group=g1", "-o", "name"]);
    assert_eq!(
        odd.out().lines().collect::<Vec<_>>(),
        ["configmap/c1", "configmap/c3", "configmap/c5"]
    );
    let set = c.kubectl(&["get", "cm", "-l", "group in (g0),group!=g1", "-o", "name"]);
    assert_eq!(set.out().lines().count(), 4);
    let field = c.kubectl(&[
        "get",
        "cm",
        "--field-selector",
        "metadata.name=c2",
        "-o",
        "name",
    ]);
    assert_eq!(field.out(), "configmap/c2\n");
    let unsupported = c.kubectl(&["get", "cm", "--field-selector", "spec.nope=x"]);
    assert!(
        unsupported
            .err()
            .contains("field label not supported: spec.nope"),
        "{}",
        unsupported.stderr
    );
    let dry = c.kubectl_in(&["apply", "--dry-run=server", "-f", "-"], Some(DEPLOYMENT));
    assert_eq!(dry.out(), "deployment.apps/web created (server dry run)\n");
    assert!(!c.kubectl(&["get", "deploy", "web"]).ok);
}

#[test]
fn get_watch_prints_changes_as_they_happen() {
    let c = Cluster::start(&[]);
    c.kubectl_in(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\n"),
    )
    .out();
    let out = c.dir.path().join("watch.out");
    let mut watch = c.kubectl_background(&["get", "cm", "-w", "--output-watch-events"], &out);
    eventually("the initial list", || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("first")
    });
    c.kubectl_in(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: second}\n"),
    )
    .out();
    c.kubectl(&["label", "cm", "first", "x=y"]).out();
    c.kubectl(&["delete", "cm", "second"]).out();
    eventually("three watch events", || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let events: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                Some((words.next()?.to_string(), words.next()?.to_string()))
            })
            .collect();
        let seen = |e: &str, n: &str| events.iter().any(|(a, b)| a == e && b == n);
        seen("ADDED", "second") && seen("MODIFIED", "first") && seen("DELETED", "second")
    });
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn data_survives_a_restart() {
    let mut c = Cluster::start(&[]);
    c.apply(DEPLOYMENT).out();
    let uid = c
        .kubectl(&["get", "deploy", "web", "-o", "jsonpath={.metadata.uid}"])
        .out()
        .to_string();
    c.restart();
    assert_eq!(
        c.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.metadata.uid}"])
            .out(),
        uid
    );
    assert_eq!(c.apply(DEPLOYMENT).out(), "deployment.apps/web unchanged\n");
}

#[test]
fn anonymous_and_foreign_clients_are_refused() {
    let c = Cluster::start(&[]);
    let config = std::fs::read_to_string(c.kubeconfig()).unwrap();
    let ca_only: String = config
        .lines()
        .filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"))
        .map(|l| format!("{l}\n"))
        .collect();
    let anon = c.dir.path().join("anon.yaml");
    std::fs::write(&anon, ca_only.replace("  user:\n", "  user: {}\n")).unwrap();
    let denied = c.kubectl_with(&anon, &["get", "pods", "--token=not-a-known-token"], None);
    // kubectl reports a 401 during discovery as upstream clusters make it do.
    assert!(denied.err().trim().ends_with("error: You must be logged in to the server (the server has asked for the client to provide credentials)"), "{}", denied.stderr);
    // A client certificate from another CA fails the TLS handshake (kubectl reports the
    // closed connection as EOF).
    let other = tempfile::tempdir().unwrap();
    let foreign = apiserver::pki::ensure(other.path(), &["localhost".to_string()]).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mixed = config
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("client-certificate-data") {
                format!(
                    "    client-certificate-data: {}\n",
                    b64(&foreign.admin_cert)
                )
            } else if l.trim_start().starts_with("client-key-data") {
                format!("    client-key-data: {}\n", b64(&foreign.admin_key))
            } else {
                format!("{l}\n")
            }
        })
        .collect::<String>();
    let mixed_path = c.dir.path().join("foreign.yaml");
    std::fs::write(&mixed_path, mixed).unwrap();
    let refused = c.kubectl_with(&mixed_path, &["get", "pods"], None);
    assert!(
        refused.err().contains("EOF") || refused.stderr.contains("tls"),
        "{}",
        refused.stderr
    );
    assert!(c.kubectl(&["get", "pods"]).ok, "the server keeps serving");
}

#[test]
fn bearer_tokens_authenticate_and_only_masters_are_authorized() {
    let tokens = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        tokens.path(),
        "admintoken,alice,1,\"system:masters\"\nusertoken,bob,2,\"dev\"\n",
    )
    .unwrap();
    let c = Cluster::start(&["--token-auth-file", tokens.path().to_str().unwrap()]);
    let config = std::fs::read_to_string(c.kubeconfig()).unwrap();
    let token_config = |token: &str| {
        let text: String = config
            .lines()
            .filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"))
            .map(|l| {
                if l == "  user:" {
                    format!("  user:\n    token: {token}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let path = c.dir.path().join(format!("{token}.yaml"));
        std::fs::write(&path, text).unwrap();
        path
    };
    assert!(
        c.kubectl_with(&token_config("admintoken"), &["get", "ns", "default"], None)
            .ok
    );
    let bob = c.kubectl_with(
        &token_config("usertoken"),
        &["get", "pods", "-n", "default"],
        None,
    );
    assert!(
        bob.err().contains("pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""),
        "{}",
        bob.stderr
    );
}

#[test]
fn the_store_can_be_an_etcd_over_tls_that_asks_for_client_certificates() {
    // A CA, a serving certificate for 127.0.0.1 and a client certificate, for etcd.
    let pki = tempfile::tempdir().unwrap();
    apiserver::pki::ensure(pki.path(), &["127.0.0.1".to_string()]).unwrap();
    let file = |name: &str| pki.path().join(name);
    let read = |name: &str| std::fs::read_to_string(file(name)).unwrap();
    let client = store::EtcdTls {
        ca: read("ca.crt"),
        identity: Some((read("admin.crt"), read("admin.key"))),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let served = [&file("ca.crt"), &file("server.crt"), &file("server.key")];
    let etcd = rt.block_on(store::testing::EtcdServer::start_tls(
        served.map(|p| p.as_path()),
        client,
    ));
    let endpoint = etcd.endpoint();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    let path = |name: &str| file(name).to_str().unwrap().to_string();
    let c = Cluster::start(&[
        "--datastore-endpoint",
        &endpoint,
        "--datastore-cafile",
        &path("ca.crt"),
        "--datastore-certfile",
        &path("admin.crt"),
        "--datastore-keyfile",
        &path("admin.key"),
    ]);
    c.kubectl(&["create", "configmap", "over-tls", "--from-literal=k=v"])
        .out();
    let data = ["get", "configmap", "over-tls", "-o", "jsonpath={.data.k}"];
    assert_eq!(c.kubectl(&data).out(), "v");
    drop(c);
    drop(etcd);
}

#[test]
fn the_same_flow_runs_on_etcd() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let etcd = rt.block_on(store::testing::EtcdServer::start());
    let endpoint = format!("etcd://{}", etcd.endpoint());
    let mut c = Cluster::start(&["--datastore-endpoint", &endpoint]);
    assert_eq!(c.apply(DEPLOYMENT).out(), "deployment.apps/web created\n");
    assert_eq!(c.apply(DEPLOYMENT).out(), "deployment.apps/web unchanged\n");
    c.kubectl(&["scale", "deploy", "web", "--replicas=4"]).out();
    c.restart();
    assert_eq!(
        c.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
            .out(),
        "4"
    );
    assert!(c.kubectl(&["get", "ns"]).out().contains("kube-system"));
    drop(c);
    drop(etcd);
}

// conformance: 477, 480
#[test]
fn services_get_cluster_ips_and_node_ports_once() {
    let c = Cluster::start(&[]);
    c.apply(DEPLOYMENT).out();
    assert_eq!(
        c.kubectl(&[
            "expose",
            "deployment",
            "web",
            "--port",
            "80",
            "--type",
            "NodePort"
        ])
        .out(),
        "service/web exposed\n"
    );
    let got = c.kubectl(&[
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.spec.clusterIP} {.spec.ports[0].nodePort}",
    ]);
    let (ip, port) = got.out().split_once(' ').unwrap();
    assert!(ip.starts_with("10.43.") && ip != "10.43.0.1", "{ip}");
    let port: u16 = port.parse().unwrap();
    assert!((30000..=32767).contains(&port), "{port}");
    let fixed = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  clusterIP: 10.43.0.10\n  ports: [{{port: 53}}]\n"
        )
    };
    c.apply(&fixed("first")).out();
    let clash = c.apply(&fixed("second"));
    assert!(
        clash.err().contains("The Service \"second\" is invalid: spec.clusterIPs[0]: Invalid value: \"10.43.0.10\": failed to allocate IP 10.43.0.10: provided IP is already allocated"),
        "{}",
        clash.stderr
    );
    c.kubectl(&["delete", "svc", "first"]).out();
    assert_eq!(c.apply(&fixed("second")).out(), "service/second created\n");
    let outside = c.apply(&fixed("third").replace("10.43.0.10", "192.0.2.1"));
    assert!(
        outside
            .err()
            .contains("is not in the valid range. The range of valid IPs is 10.43.0.0/16"),
        "{}",
        outside.stderr
    );
    let immutable = c.kubectl(&[
        "patch",
        "svc",
        "second",
        "-p",
        r#"{"spec":{"clusterIP":"10.43.0.11"}}"#,
    ]);
    assert!(
        immutable.err().contains("field is immutable"),
        "{}",
        immutable.stderr
    );

    // Into ExternalName: the address and the node ports go (and return to the range), as
    // upstream; an ExternalName Service names its target and holds no address.
    let external = r#"{"spec":{"type":"ExternalName","externalName":"example.org"}}"#;
    c.kubectl(&["patch", "svc", "web", "-p", external]).out();
    let got = c.kubectl(&["get", "svc", "web", "-o", "jsonpath={.spec}"]);
    let spec: serde_json::Value = serde_json::from_str(got.out()).unwrap();
    assert!(spec.get("clusterIP").is_none(), "{spec}");
    assert!(spec["ports"][0].get("nodePort").is_none(), "{spec}");
    let bad = c.kubectl(&[
        "patch",
        "svc",
        "second",
        "-p",
        r#"{"spec":{"type":"ExternalName","clusterIP":"10.43.0.12"}}"#,
    ]);
    assert!(
        bad.err().contains("spec.externalName: Required value")
            && bad
                .err()
                .contains("spec.clusterIPs: Forbidden: may not be set for ExternalName services"),
        "{}",
        bad.stderr
    );
    // ... and back: a new address from the range.
    c.kubectl(&[
        "patch",
        "svc",
        "web",
        "-p",
        r#"{"spec":{"type":"ClusterIP","externalName":null}}"#,
    ])
    .out();
    let ip = c.kubectl(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(ip.out().starts_with("10.43."), "{}", ip.stdout);
}

/// Runs `kubectl create ...` and checks it reports `<expect> created`.
fn created(c: &Cluster, args: &[&str], expect: &str) {
    assert_eq!(c.kubectl(args).out(), format!("{expect} created\n"));
}

#[test]
fn kubectl_create_subcommands_send_protobuf_and_it_decodes() {
    let c = Cluster::start(&[]);
    create_configuration_and_access_objects(&c);
    configuration_and_access_objects_decode(&c);
    create_workloads_and_their_policies(&c);
}

/// `kubectl create` of ConfigMaps, Secrets, Namespaces, ServiceAccounts, Services, RBAC,
/// PriorityClasses and quotas.
fn create_configuration_and_access_objects(c: &Cluster) {
    created(
        c,
        &[
            "create",
            "configmap",
            "cm1",
            "--from-literal=a=b",
            "--from-literal=c=d",
        ],
        "configmap/cm1",
    );
    created(
        c,
        &[
            "create",
            "secret",
            "generic",
            "s1",
            "--from-literal=password=hunter2",
        ],
        "secret/s1",
    );
    created(c, &["create", "namespace", "team-a"], "namespace/team-a");
    created(
        c,
        &["create", "serviceaccount", "robot"],
        "serviceaccount/robot",
    );
    created(
        c,
        &["create", "service", "clusterip", "web", "--tcp=80:8080"],
        "service/web",
    );
    created(
        c,
        &[
            "create",
            "role",
            "reader",
            "--verb=get,list",
            "--resource=pods",
        ],
        "role.rbac.authorization.k8s.io/reader",
    );
    created(
        c,
        &["create", "rolebinding", "rb", "--role=reader", "--user=bob"],
        "rolebinding.rbac.authorization.k8s.io/rb",
    );
    created(
        c,
        &["create", "priorityclass", "low", "--value=0"],
        "priorityclass.scheduling.k8s.io/low",
    );
    created(
        c,
        &["create", "quota", "q", "--hard=pods=10,cpu=2"],
        "resourcequota/q",
    );
}

/// What those protobuf bodies carried, read back.
fn configuration_and_access_objects_decode(c: &Cluster) {
    assert_eq!(
        c.kubectl(&["get", "cm", "cm1", "-o", "jsonpath={.data.a}{.data.c}"])
            .out(),
        "bd"
    );
    assert_eq!(
        c.kubectl(&["get", "secret", "s1", "-o", "jsonpath={.data.password}"])
            .out(),
        "aHVudGVyMg=="
    );
    assert_eq!(
        c.kubectl(&[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.ports[0].port}:{.spec.ports[0].targetPort}"
        ])
        .out(),
        "80:8080"
    );
    assert_eq!(
        c.kubectl(&[
            "get",
            "rolebinding",
            "rb",
            "-o",
            "jsonpath={.roleRef.name} {.subjects[0].name}"
        ])
        .out(),
        "reader bob"
    );
    assert_eq!(
        c.kubectl(&["get", "pc", "low", "-o", "jsonpath={.value}"])
            .out(),
        "0"
    );
}

/// `kubectl create` of Deployments, Jobs, CronJobs, PodDisruptionBudgets and Ingresses, and
/// what they carried.
fn create_workloads_and_their_policies(c: &Cluster) {
    created(
        c,
        &[
            "create",
            "deployment",
            "d",
            "--image=nginx",
            "--replicas=0",
            "--port=80",
        ],
        "deployment.apps/d",
    );
    assert_eq!(
        c.kubectl(&[
            "get",
            "deploy",
            "d",
            "-o",
            "jsonpath={.spec.replicas} {.spec.selector.matchLabels.app} \
             {.spec.template.spec.containers[0].image} \
             {.spec.template.spec.containers[0].ports[0].containerPort}"
        ])
        .out(),
        "0 d nginx 80"
    );
    created(
        c,
        &["create", "job", "j", "--image=busybox", "--", "true"],
        "job.batch/j",
    );
    assert_eq!(
        c.kubectl(&[
            "get",
            "job",
            "j",
            "-o",
            "jsonpath={.spec.template.spec.restartPolicy} {.spec.template.spec.containers[0].command}"
        ])
        .out(),
        "Never [\"true\"]"
    );
    created(
        c,
        &[
            "create",
            "cronjob",
            "cj",
            "--image=busybox",
            "--schedule=*/5 * * * *",
        ],
        "cronjob.batch/cj",
    );
    created(
        c,
        &[
            "create",
            "pdb",
            "budget",
            "--selector=app=d",
            "--min-available=0",
        ],
        "poddisruptionbudget.policy/budget",
    );
    assert_eq!(
        c.kubectl(&[
            "get",
            "pdb",
            "budget",
            "-o",
            "jsonpath={.spec.minAvailable}"
        ])
        .out(),
        "0"
    );
    created(
        c,
        &["create", "ingress", "ing", "--rule=example.com/*=web:80"],
        "ingress.networking.k8s.io/ing",
    );
}

#[test]
fn a_watch_from_a_compacted_revision_gets_410_gone() {
    // Compact every second, so the first revision soon leaves history.
    let c = Cluster::start(&["--etcd-compaction-interval", "1s"]);
    c.kubectl_in(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"),
    )
    .out();
    c.kubectl(&["label", "cm", "a", "x=1"]).out();
    let raw = "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=2&timeoutSeconds=1";
    eventually("the first revisions to be compacted", || {
        c.kubectl(&[
            "label",
            "cm",
            "a",
            "--overwrite",
            &format!("x={}", rand_suffix()),
        ])
        .out();
        c.kubectl(&["get", "--raw", raw])
            .stdout
            .contains(r#""type":"ERROR""#)
    });
    let out = c.kubectl(&["get", "--raw", raw]);
    assert!(
        out.stdout.contains(r#""code":410"#) && out.stdout.contains(r#""reason":"Expired""#),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("too old resource version: 2"),
        "{}",
        out.stdout
    );
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn wait_and_edit() {
    let c = Cluster::start(&[]);
    c.kubectl_in(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: e}\ndata: {v: before}\n"),
    )
    .out();
    let editor = c.dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/v: before/v: after/' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let edited = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["edit", "cm", "e"])
        .env("KUBE_EDITOR", &editor)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&edited.stdout),
        "configmap/e edited\n",
        "{}",
        String::from_utf8_lossy(&edited.stderr)
    );
    assert_eq!(
        c.kubectl(&["get", "cm", "e", "-o", "jsonpath={.data.v}"])
            .out(),
        "after"
    );
    let waited = c.kubectl(&[
        "wait",
        "cm/e",
        "--for=jsonpath={.data.v}=after",
        "--timeout=20s",
    ]);
    assert_eq!(waited.out(), "configmap/e condition met\n");
    let deleter = c.kubectl_background(&["delete", "cm", "e"], &c.dir.path().join("delete.out"));
    let gone = c.kubectl(&["wait", "cm/e", "--for=delete", "--timeout=20s"]);
    assert!(
        gone.ok || gone.stderr.contains("not found"),
        "{}",
        gone.stderr
    );
    let _ = { deleter }.wait();
}

#[test]
fn unknown_fields_are_refused_under_strict_and_dropped_with_a_warning_otherwise() {
    let c = Cluster::start(&[]);
    let typo = DEPLOYMENT
        .replace("replicas: 2", "replicas: 2\n  replica: 3")
        .replace(
            "image: nginx:1.25",
            "image: nginx:1.25\n        imagePolicy: x",
        );
    let strict = c.apply(&typo);
    assert!(
        strict.err().contains("Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.replica\", unknown field \"spec.template.spec.containers[0].imagePolicy\""),
        "{}",
        strict.stderr
    );
    let warn = c.kubectl_in(&["apply", "--validate=warn", "-f", "-"], Some(&typo));
    assert_eq!(warn.out(), "deployment.apps/web created\n");
    assert!(
        warn.stderr
            .contains("Warning: unknown field \"spec.replica\""),
        "{}",
        warn.stderr
    );
    // Dropped from the object (the last-applied annotation still quotes the manifest).
    let spec = c
        .kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec}"])
        .out()
        .to_string();
    assert!(
        !spec.contains("\"replica\"")
            && !spec.contains("imagePolicy")
            && spec.contains("\"replicas\":2"),
        "{spec}"
    );
    // A quantity written as a bare number is valid, as upstream accepts it.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: q}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources:\n      limits: {cpu: 1, memory: 64Mi}\n";
    assert_eq!(c.apply(pod).out(), "pod/q created\n");
}

#[test]
fn explain_reads_the_openapi_schemas() {
    let c = Cluster::start(&[]);
    let field = c.kubectl(&["explain", "deployment.spec.replicas"]);
    assert!(
        field.out().contains("FIELD: replicas <integer>"),
        "{}",
        field.stdout
    );
    assert!(
        field.stdout.contains("Number of desired pods."),
        "{}",
        field.stdout
    );
    let kind = c.kubectl(&["explain", "pods"]);
    assert!(
        kind.out().contains("KIND:       Pod") && kind.stdout.contains("FIELDS:"),
        "{}",
        kind.stdout
    );
    let nested = c.kubectl(&["explain", "svc.spec.ports"]);
    assert!(
        nested.out().contains("FIELD: ports <[]ServicePort>"),
        "{}",
        nested.stdout
    );
    // The Swagger 2.0 document, for clients that still read it (as JSON).
    let v2: serde_json::Value =
        serde_json::from_str(c.kubectl(&["get", "--raw", "/openapi/v2"]).out()).unwrap();
    assert_eq!(v2["swagger"], "2.0");
    assert_eq!(
        v2["definitions"]["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"]["allOf"][0]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    );
    assert_eq!(
        v2["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["get"]["x-kubernetes-group-version-kind"]
            ["kind"],
        "Pod"
    );
}
