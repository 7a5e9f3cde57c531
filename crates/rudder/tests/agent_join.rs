//! Joining a node with the join token, end to end and as root: `rudder agent --server
//! --token-file` asks for its client and serving certificates, the controller manager
//! approves and signs them, the node registers and turns Ready; the token alone may do
//! nothing else. With short-lived certificates, the running agent renews both and goes on
//! past the first ones' end. No containers run.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Cluster, free_port};

/// The pod bridge of the joined node (never created: no pod runs), removed by `rudder reset`.
const BRIDGE: &str = "rdj0";
/// The joined node's service proxy table.
const PROXY_TABLE: &str = "rudder-tj";

/// A `rudder agent` joined with the token; stopped with SIGTERM and its host state reset
/// (`rudder reset`) when dropped, also when the test fails.
struct Agent {
    child: Option<Child>,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Agent {
    fn start(c: &Cluster, port: u16) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("agent.log");
        let mut agent = Agent {
            child: None,
            dir,
            log,
        };
        agent.spawn(c, port);
        agent
    }

    fn spawn(&mut self, c: &Cluster, port: u16) {
        let data = self.dir.path().join("data");
        let child = Command::new(env!("CARGO_BIN_EXE_rudder"))
            .arg("agent")
            .arg("--server")
            .arg(format!("https://127.0.0.1:{}", c.port))
            .arg("--token-file")
            .arg(c.dir.path().join("token"))
            .arg("--ca-file")
            .arg(c.dir.path().join("tls/ca.crt"))
            .args(["--node-name", "joined", "--node-ip", "127.0.0.1"])
            .args(["--kubelet-port", &port.to_string()])
            .arg("--data-dir")
            .arg(&data)
            .arg("--pod-log-dir")
            .arg(self.dir.path().join("logs"))
            .args(["--bridge", BRIDGE, "--pod-cidr", "10.209.0.0/24"])
            // The service proxy runs beside it, with the node's credentials.
            .args([
                "--proxy-table",
                PROXY_TABLE,
                "--cluster-cidr",
                "10.209.0.0/16",
            ])
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log if the agent exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
            panic!("rudder agent exited with {status}:\n{}", self.log());
        }
    }

    /// SIGTERM, then wait (SIGKILL after 20 s).
    fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            support::terminate(child);
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- the agent's log ---\n{}", self.log());
        }
        self.stop();
        let _ = Command::new(env!("CARGO_BIN_EXE_rudder"))
            .arg("reset")
            .arg("--data-dir")
            .arg(self.data())
            .args(["--bridge", BRIDGE, "--proxy-table", PROXY_TABLE])
            .stdout(Stdio::null())
            .status();
    }
}

/// Waits (longer than `eventually`: the node registers, then reports Ready) for `cond`.
fn patiently(what: &str, agent: &mut Agent, mut cond: impl FnMut(&Agent) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond(agent) {
        agent.assert_running();
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A kubeconfig that authenticates with `token` alone.
fn token_kubeconfig(c: &Cluster, token: &str) -> PathBuf {
    let path = c.dir.path().join("token-kubeconfig.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
            c.port,
            c.dir.path().join("tls/ca.crt").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_node_joins_with_the_token_and_gets_its_certificates_signed() {
    let mut c = Cluster::start(&[]);
    let token_file = c.dir.path().join("token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let token = token.trim();
    assert_eq!(mode(&token_file), 0o600);
    let (id, secret) = token.split_once('.').unwrap();
    assert_eq!((id.len(), secret.len()), (6, 16), "{token}");

    let port = free_port();
    let mut agent = Agent::start(&c, port);
    node_joins_ready_with_its_proxy(&c, &mut agent);
    let bootstrapper = certificates_requested_approved_and_issued(&c, id);
    let kubeconfig = lease_renewed_and_credentials_private(&c, &agent);
    token_reads_only_certificate_requests(&c, token, &bootstrapper);
    node_reaches_only_its_own_nodes_and_leases(&c, &kubeconfig);
    node_reaches_only_its_own_pods_and_their_secrets(&c, &kubeconfig);
    agent_endpoint_serves_the_api_server_and_administrators(&c, &agent, port);
    restart_reuses_the_certificates(&c, &mut agent, port);
    certificates_are_renewed_while_the_agent_runs(&mut c, &mut agent, port);
}

/// The node registers and turns Ready, and its service proxy fills its table.
fn node_joins_ready_with_its_proxy(c: &Cluster, agent: &mut Agent) {
    patiently("the node joined Ready", agent, |_| {
        c.kubectl(&["get", "node", "joined", "--no-headers"])
            .stdout
            .split_whitespace()
            .nth(1)
            == Some("Ready")
    });
    // The service proxy beside it, with the node's credentials: the kubernetes Service's
    // address is in its table.
    patiently("the joined node's proxy table", agent, |_| {
        proxy_table().contains("10.43.0.1")
    });
}

/// Both certificate requests are approved and issued; returns the bootstrapper's user name.
fn certificates_requested_approved_and_issued(c: &Cluster, id: &str) -> String {
    // Two requests, both approved and issued: the client certificate asked by the token's
    // bootstrapper, the serving certificate by the node itself.
    let csrs = c.kubectl(&["get", "csr"]).out().to_string();
    let lines: Vec<Vec<&str>> = csrs
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "NAME",
            "AGE",
            "SIGNERNAME",
            "REQUESTOR",
            "REQUESTEDDURATION",
            "CONDITION"
        ],
        "{csrs}"
    );
    let mut rows: Vec<(&str, &str, &str, &str)> = lines[1..]
        .iter()
        .map(|r| (r[2], r[3], r[4], r[5]))
        .collect();
    rows.sort();
    let bootstrapper = format!("system:bootstrap:{id}");
    assert_eq!(
        rows,
        [
            (
                "kubernetes.io/kube-apiserver-client-kubelet",
                bootstrapper.as_str(),
                "<none>",
                "Approved,Issued"
            ),
            (
                "kubernetes.io/kubelet-serving",
                "system:node:joined",
                "<none>",
                "Approved,Issued"
            ),
        ],
        "{csrs}"
    );
    assert!(
        lines[1..].iter().all(|r| r[0].starts_with("node-csr-")),
        "{csrs}"
    );
    let reasons = c
        .kubectl(&[
            "get",
            "csr",
            "-o",
            "jsonpath={range .items[*]}{.status.conditions[0].reason}: {.status.conditions[0].message}{\"\\n\"}{end}",
        ])
        .out()
        .to_string();
    assert!(
        reasons.contains(
            "AutoApproved: Auto approving kubelet client certificate after SubjectAccessReview."
        ),
        "{reasons}"
    );
    bootstrapper
}

/// The field at the JSONPath `path` of the joined node's Lease.
fn lease(c: &Cluster, path: &str) -> String {
    let path = format!("jsonpath={path}");
    let args = [
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        "joined",
        "-o",
        &path,
    ];
    c.kubectl(&args).out().to_string()
}

/// The agent renews its lease and keeps its credentials private; returns its kubeconfig.
fn lease_renewed_and_credentials_private(c: &Cluster, agent: &Agent) -> PathBuf {
    // The node's lease, renewed by the agent with its new identity.
    assert_eq!(lease(c, "{.spec.holderIdentity}"), "joined");
    let kubeconfig = agent.data().join("kubeconfig.yaml");
    assert_eq!(mode(&kubeconfig), 0o600);
    assert_eq!(mode(&agent.data().join("pki/kubelet-client.key")), 0o600);
    kubeconfig
}

/// The token alone reads certificate requests and nothing else.
fn token_reads_only_certificate_requests(c: &Cluster, token: &str, bootstrapper: &str) {
    let as_token = token_kubeconfig(c, token);
    assert!(c.kubectl_with(&as_token, &["get", "csr"], None).ok);
    let pods = c.kubectl_with(&as_token, &["get", "pods"], None);
    assert!(
        pods.err().contains(&format!(
            "pods is forbidden: User \"{bootstrapper}\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        )),
        "{}",
        pods.stderr
    );
    let nodes = c.kubectl_with(&as_token, &["get", "nodes"], None);
    assert!(
        nodes.err().contains(&format!(
            "nodes is forbidden: User \"{bootstrapper}\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
        )),
        "{}",
        nodes.stderr
    );
}

/// The node's identity reaches what an agent needs, and of nodes and leases only its own.
fn node_reaches_only_its_own_nodes_and_leases(c: &Cluster, kubeconfig: &Path) {
    // The node's own identity reaches what an agent needs, and of nodes and leases only its
    // own: upstream's Node authorizer and NodeRestriction.
    let node_fence = "apiVersion: v1\nkind: Node\nmetadata: {name: other}\n";
    c.apply(node_fence).out();
    let as_node = |args: &[&str]| c.kubectl_with(kubeconfig, args, None);
    assert!(as_node(&["get", "pods", "-A"]).ok);
    assert!(as_node(&["get", "nodes"]).ok);
    assert!(as_node(&["label", "node", "joined", "rack=r1"]).ok);
    let other = as_node(&["label", "node", "other", "rack=r1"]);
    assert!(
        other.err().contains(
            "nodes \"other\" is forbidden: User \"system:node:joined\" cannot patch resource \"nodes\" in API group \"\" at the cluster scope"
        ),
        "{}",
        other.stderr
    );
    let lease = as_node(&["delete", "lease", "-n", "kube-node-lease", "other"]);
    assert!(lease.err().contains("forbidden"), "{}", lease.stderr);
    let secrets = as_node(&["get", "secrets", "-A"]);
    assert!(
        secrets.err().contains(
            "secrets is forbidden: User \"system:node:joined\" cannot list resource \"secrets\" in API group \"\" at the cluster scope"
        ),
        "{}",
        secrets.stderr
    );
    let create = as_node(&["create", "deployment", "d", "--image=busybox"]);
    assert!(create.err().contains("forbidden"), "{}", create.stderr);
}

/// Of secrets, the node reads only those its pods use; of pods, it deletes only its own.
fn node_reaches_only_its_own_pods_and_their_secrets(c: &Cluster, kubeconfig: &Path) {
    let as_node = |args: &[&str]| c.kubectl_with(kubeconfig, args, None);
    // Of secrets, only those its pods use (the image is on loopback, nothing is pulled).
    c.kubectl(&[
        "create",
        "secret",
        "generic",
        "related",
        "--from-literal=k=v",
    ])
    .out();
    c.kubectl(&[
        "create",
        "secret",
        "generic",
        "unrelated",
        "--from-literal=k=v",
    ])
    .out();
    c.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: user}
spec:
  nodeName: joined
  containers:
  - name: c
    image: 127.0.0.1:1/none
    env: [{name: K, valueFrom: {secretKeyRef: {name: related, key: k}}}]
",
    )
    .out();
    assert!(as_node(&["get", "secret", "related"]).ok);
    // Of pods, it deletes only its own.
    c.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: elsewhere}
spec:
  nodeName: other
  containers: [{name: c, image: 127.0.0.1:1/none}]
",
    )
    .out();
    let delete = as_node(&["delete", "pod", "elsewhere", "--wait=false"]);
    assert!(
        delete.err().contains(
            "pods \"elsewhere\" is forbidden: node \"joined\" can only delete pods with spec.nodeName set to itself"
        ),
        "{}",
        delete.stderr
    );
    assert!(as_node(&["delete", "pod", "user", "--wait=false"]).ok);
    let unrelated = as_node(&["get", "secret", "unrelated"]);
    assert!(
        unrelated.err().contains(
            "secrets \"unrelated\" is forbidden: User \"system:node:joined\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\": no relationship found between node 'joined' and this object"
        ),
        "{}",
        unrelated.stderr
    );
}

/// The agent's endpoint serves the API server and administrators, not nodes.
fn agent_endpoint_serves_the_api_server_and_administrators(c: &Cluster, agent: &Agent, port: u16) {
    // The agent's own endpoint serves the API server and administrators, not other
    // holders of cluster certificates such as nodes.
    let curl = |cert: &Path, key: &Path| {
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "10", "--cert"])
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg(format!("https://127.0.0.1:{port}/healthz"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let pki = agent.data().join("pki");
    assert_eq!(
        curl(
            &pki.join("kubelet-client.crt"),
            &pki.join("kubelet-client.key")
        ),
        "Forbidden (user=system:node:joined, verb=get, resource=nodes, subresource=proxy)"
    );
    let tls = c.dir.path().join("tls");
    assert_eq!(curl(&tls.join("admin.crt"), &tls.join("admin.key")), "ok");
}

/// A restarted agent reuses its certificates; a stopped one leaves no proxy table.
fn restart_reuses_the_certificates(c: &Cluster, agent: &mut Agent, port: u16) {
    // A restart reuses the certificates: no new request.
    agent.stop();
    agent.spawn(c, port);
    patiently("the agent to reuse its certificates", agent, |a| {
        a.log().contains("reusing the node's serving certificate")
    });
    assert_eq!(
        c.kubectl(&["get", "csr", "--no-headers"])
            .out()
            .lines()
            .count(),
        2
    );
    agent.stop();
    assert_eq!(proxy_table(), "", "the proxy's table outlived the agent");
}

/// The joined node's proxy table, as `nft` lists it (empty when there is none).
fn proxy_table() -> String {
    let out = Command::new("nft")
        .args(["list", "table", "ip", PROXY_TABLE])
        .output()
        .expect("nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Signed for 90 s only, the node's certificates are renewed by the running agent (a third
/// of the way to their end, as their backdated 70% is already past), which goes on working
/// after the first ones have expired: its lease is renewed, its endpoint serves.
fn certificates_are_renewed_while_the_agent_runs(c: &mut Cluster, agent: &mut Agent, port: u16) {
    c.restart_with(&["--cluster-signing-duration", "90s"]);
    let pki = agent.data().join("pki");
    for f in ["kubelet-client.crt", "kubelet-serving.crt"] {
        std::fs::remove_file(pki.join(f)).unwrap();
    }
    agent.spawn(c, port);
    patiently("new certificates", agent, |_| {
        pki.join("kubelet-serving.crt").exists()
    });
    let issued = jiff::Timestamp::now().as_second();
    let by_node = |signer: &str| {
        let path = r#"jsonpath={range .items[*]}{.spec.signerName} {.spec.username}{"\n"}{end}"#;
        let wanted = format!("{signer} system:node:joined");
        c.kubectl(&["get", "csr", "-o", path])
            .out()
            .lines()
            .filter(|l| *l == wanted)
            .count()
    };
    // The node asked for its client certificate itself (the bootstrapper asked for the
    // others), and for a third serving certificate.
    patiently("the agent to renew both certificates", agent, |_| {
        by_node("kubernetes.io/kube-apiserver-client-kubelet") >= 1
            && by_node("kubernetes.io/kubelet-serving") >= 3
    });
    // Past the end of the first ones, the agent still reaches the API server as the node and
    // its endpoint still serves, with a certificate that verifies.
    let past = issued + 95;
    patiently("the first certificates' end", agent, |_| {
        jiff::Timestamp::now().as_second() > past
    });
    patiently("a lease renewed after it", agent, |_| {
        let renewed = lease(c, "{.spec.renewTime}");
        renewed.parse::<jiff::Timestamp>().unwrap().as_second() > past
    });
    let tls = c.dir.path().join("tls");
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--cacert"])
        .arg(tls.join("ca.crt"))
        .arg("--cert")
        .arg(tls.join("admin.crt"))
        .arg("--key")
        .arg(tls.join("admin.key"))
        .arg(format!("https://127.0.0.1:{port}/healthz"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok", "{out:?}");
    agent.stop();
}
