//! Ingress end to end, as root: the built-in Ingress controller routes hosts and paths to
//! real pods through their Services, serves TLS from a Secret by SNI, and announces the
//! node's address, driven by the real kubectl and checked with Debian's curl.

#[path = "support/pods.rs"]
mod pods;
mod support;
#[path = "../../image/tests/support/testimage.rs"]
mod testimage;

use std::process::Command;

use pods::{busybox, get, jsonpath, node_ready, patiently};
use support::{Cluster, eventually, free_port};

/// Pods in 10.215.0.0/16, Services in 10.245.0.0/16.
const NET: u8 = 215;

/// A Deployment of one busybox httpd answering its pod's name at every path under /, and
/// its Service on port 80.
fn app(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: {image}
        command: [sh, -c, 'mkdir -p /www/api && hostname | tee /www/index.html /www/api/index.html /www/exact > /dev/null && exec httpd -f -p 8080 -h /www']
        ports: [{{containerPort: 8080, name: http}}]
        readinessProbe:
          httpGet: {{path: /, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: web, port: 80, targetPort: http}}]
"
    )
}

const INGRESS: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: two-hosts}
spec:
  tls:
  - hosts: [a.example]
    secretName: a-tls
  rules:
  - host: a.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: one, port: {name: web}}}}
  - host: b.example
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: two, port: {number: 80}}}}
      - {path: /exact, pathType: Exact, backend: {service: {name: one, port: {number: 80}}}}
";

/// `curl` to `url`, the names resolved to `ip`: the status code and the body.
fn curl(url: &str, resolve: &str, extra: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--resolve", resolve])
        .args(["-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl (Debian: curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.trim().to_string())
}

/// A CA and a certificate it signed for `a.example`: the CA's PEM, the certificate's and
/// its key's.
fn certificates() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "ingress test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

#[test]
fn an_ingress_routes_two_hosts_and_two_paths_and_serves_tls_by_name() {
    let image = busybox();
    let (http, https) = (free_port(), free_port());
    let c = Cluster::start_with_agent(
        "node-i",
        NET,
        &[
            "--ingress-http-port",
            &http.to_string(),
            "--ingress-https-port",
            &https.to_string(),
        ],
    );
    node_ready(&c, "node-i");
    // The class is there, the default, as k3s' traefik.
    eventually("the rudder IngressClass", || {
        c.kubectl(&["get", "ingressclass", "rudder"]).ok
    });
    let class = get(&c, &["get", "ingressclass", "rudder", "-o", "yaml"]);
    assert!(
        class.contains("ingressclass.kubernetes.io/is-default-class: \"true\""),
        "{class}"
    );

    c.apply(&app("one", &image.name)).out();
    c.apply(&app("two", &image.name)).out();
    let (ca, cert, key) = certificates();
    let dir = tempfile::tempdir().unwrap();
    let (ca_file, cert_file, key_file) = (
        dir.path().join("ca.crt"),
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
    );
    for (path, pem) in [(&ca_file, &ca), (&cert_file, &cert), (&key_file, &key)] {
        std::fs::write(path, pem).unwrap();
    }
    c.kubectl(&[
        "create",
        "secret",
        "tls",
        "a-tls",
        "--cert",
        cert_file.to_str().unwrap(),
        "--key",
        key_file.to_str().unwrap(),
    ])
    .out();
    c.apply(INGRESS).out();
    for app in ["one", "two"] {
        patiently(&format!("{app} ready"), 90, || {
            jsonpath(&c, &["deployment", app], "{.status.readyReplicas}") == "1"
        });
    }
    let pod = |app: &str| {
        get(
            &c,
            &["get", "pods", "-l", &format!("app={app}"), "-o", "name"],
        )
    };
    let (one, two) = (
        pod("one").replace("pod/", ""),
        pod("two").replace("pod/", ""),
    );

    // The node's address in the status, as kubectl shows it.
    let node_ip = jsonpath(
        &c,
        &["node", "node-i"],
        "{.status.addresses[?(@.type==\"InternalIP\")].address}",
    );
    eventually("the Ingress's address", || {
        let row = get(&c, &["get", "ingress", "two-hosts", "--no-headers"]);
        let cols: Vec<&str> = row.split_whitespace().collect();
        cols.get(1) == Some(&"rudder") && cols.get(3) == Some(&node_ip.as_str())
    });

    let at = |host: &str, path: &str| {
        let url = format!("http://{host}:{http}{path}");
        curl(&url, &format!("{host}:{http}:{node_ip}"), &[])
    };
    eventually("a.example routed to one", || {
        at("a.example", "/") == ("200".into(), one.clone())
    });
    assert_eq!(at("b.example", "/api/"), ("200".into(), two.clone()));
    assert_eq!(at("b.example", "/exact"), ("200".into(), one.clone()));
    // Exact is exact; a prefix is whole path segments; an unknown host has no route.
    assert_eq!(at("b.example", "/exact/more").0, "404");
    assert_eq!(at("b.example", "/apix").0, "404");
    assert_eq!(at("c.example", "/").0, "404");

    // TLS for a.example, with the Secret's certificate (curl checks it against the CA).
    let tls = |host: &str| {
        let url = format!("https://{host}:{https}/");
        let resolve = format!("{host}:{https}:{node_ip}");
        curl(&url, &resolve, &["--cacert", ca_file.to_str().unwrap()])
    };
    assert_eq!(tls("a.example"), ("200".into(), one.clone()));
    // Another name gets the default certificate, which that CA did not sign.
    assert_ne!(tls("b.example").0, "200");

    // No endpoints: 503. The Ingress deleted: nothing routed.
    c.kubectl(&["scale", "deployment", "two", "--replicas", "0"])
        .out();
    eventually("503 without endpoints", || {
        at("b.example", "/api/").0 == "503"
    });
    c.kubectl(&["delete", "ingress", "two-hosts"]).out();
    eventually("nothing routed once deleted", || {
        at("a.example", "/").0 == "404"
    });
}
