//! Service-account credentials in real pods, as root: the ServiceAccount admission step mounts
//! a token, the cluster CA and the namespace into every container unless automounting is
//! off, the agent fetches the token through the TokenRequest API bound to the pod, and a
//! projected token for another audience is what it says. The official Python client, run in a
//! pod, lists pods with the pod's own identity once RBAC lets it, through the `kubernetes`
//! Service.

#[path = "support/pods.rs"]
mod pods;
mod support;
#[path = "../../image/tests/support/testimage.rs"]
mod testimage;

use std::process::Command;

use pods::{busybox, get, jsonpath, node_ready, patiently};
use support::Cluster;

const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Runs `script` in a pod `name` until it succeeds; `container` and `pod` are YAML lines
/// added to its container and its spec. Its log lines.
fn run(
    c: &Cluster,
    image: &str,
    name: &str,
    (container, pod): (&str, &str),
    script: &str,
) -> Vec<String> {
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n{pod}  containers:\n  - name: c\n    image: {image}\n    command: [sh, -c, {script:?}]\n{container}"
    );
    c.apply(&manifest).out();
    patiently("the pod to succeed", 90, || {
        jsonpath(c, &["pod", name], "{.status.phase}") == "Succeeded"
    });
    get(c, &["logs", name])
        .lines()
        .map(str::to_string)
        .collect()
}

/// TokenReview of `token` for `audiences`: authenticated, user name, pod name, audiences.
fn review(c: &Cluster, token: &str, audiences: &str) -> String {
    let body = format!(
        "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: {token}\n  audiences: {audiences}\n"
    );
    let path = "jsonpath={.status.authenticated} {.status.user.username} {.status.user.extra.authentication\\.kubernetes\\.io/pod-name} {.status.audiences}";
    let args = ["create", "--validate=false", "-f", "-", "-o", path];
    c.kubectl_in(&args, Some(&body)).out().to_string()
}

// conformance: 666, 668, 669
#[test]
fn pods_get_their_accounts_credentials_and_projected_tokens() {
    let image = busybox();
    let c = Cluster::start_with_agent("node-sa", 220, &[]);
    node_ready(&c, "node-sa");
    let script =
        format!("cat {MOUNT}/namespace; echo; head -n 1 {MOUNT}/ca.crt; cat {MOUNT}/token");
    let lines = run(&c, &image.name, "reader", ("", ""), &script);
    assert_eq!(lines[0], "default");
    assert_eq!(lines[1], "-----BEGIN CERTIFICATE-----");
    assert_eq!(
        review(&c, &lines[2], "[]"),
        r#"true system:serviceaccount:default:default ["reader"] ["https://kubernetes.default.svc.cluster.local"]"#
    );
    // A projected token for another audience, shorter-lived, at a path of the pod's choosing.
    let pod = "  volumes:\n  - name: vault\n    projected:\n      sources:\n      - serviceAccountToken: {audience: vault, expirationSeconds: 600, path: vault-token}\n";
    let container = "    volumeMounts:\n    - {name: vault, mountPath: /vault}\n";
    let lines = run(
        &c,
        &image.name,
        "vaulted",
        (container, pod),
        "cat /vault/vault-token",
    );
    assert_eq!(
        review(&c, &lines[0], "[vault]"),
        r#"true system:serviceaccount:default:default ["vaulted"] ["vault"]"#
    );
    assert!(
        review(&c, &lines[0], "[]").starts_with(" "),
        "not for the API server"
    );
    automounting_follows_the_pod_then_the_account(&c, &image.name);
}

/// Whether the credentials volume is added: the pod's `automountServiceAccountToken` wins, then
/// the account's, then yes.
fn automounting_follows_the_pod_then_the_account(c: &Cluster, image: &str) {
    c.kubectl(&["create", "serviceaccount", "quiet"]).out();
    c.kubectl(&[
        "patch",
        "serviceaccount",
        "quiet",
        "-p",
        r#"{"automountServiceAccountToken":false}"#,
    ])
    .out();
    for (name, account, pod, mounted) in [
        ("a", "default", "", true),
        (
            "b",
            "default",
            "  automountServiceAccountToken: false\n",
            false,
        ),
        ("c", "quiet", "", false),
        ("d", "quiet", "  automountServiceAccountToken: true\n", true),
    ] {
        let manifest = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  serviceAccountName: {account}\n{pod}  containers:\n  - {{name: c, image: {image}}}\n"
        );
        c.apply(&manifest).out();
        let mounts = jsonpath(
            c,
            &["pod", name],
            "{.spec.containers[0].volumeMounts[*].mountPath}",
        );
        assert_eq!(mounts == MOUNT, mounted, "pod {name}: {mounts:?}");
    }
}

/// What a pod of the Python client runs: `load_incluster_config()`, then who it is and the
/// pods of `default` it may list, or the refusal.
const IN_CLUSTER: &str = r#"import json
from kubernetes import client, config
config.load_incluster_config()
review = client.AuthenticationV1Api().create_self_subject_review(client.V1SelfSubjectReview())
who = review.status.user_info.username
try:
    pods = client.CoreV1Api().list_namespaced_pod("default").items
    print(who, "lists", " ".join(sorted(p.metadata.name for p in pods)))
except client.ApiException as e:
    print(who, e.status, json.loads(e.body)["message"])
"#;

/// The Python of the client tests (`RUDDER_TEST_PYTHON`, set by scripts/test.sh): its real
/// interpreter, its installation's prefix and the directory the `kubernetes` package is in.
fn python_parts() -> [String; 3] {
    let python = std::env::var("RUDDER_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = "import os, sys, kubernetes\nprint(os.path.realpath(sys.executable))\nprint(sys.base_prefix)\nprint(os.path.dirname(os.path.dirname(kubernetes.__file__)))";
    let out = Command::new(&python).args(["-c", probe]).output().unwrap();
    assert!(
        out.status.success(),
        "the Python client is missing: run scripts/test.sh, which installs it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    [lines[0].clone(), lines[1].clone(), lines[2].clone()]
}

#[test]
fn the_python_client_in_a_pod_acts_as_the_pods_account() {
    let image = busybox();
    // Bound to every address: pods reach the API server through the kubernetes Service,
    // which leads to the node's address.
    let c = Cluster::start_with_agent("node-py", 221, &["--bind-address", "0.0.0.0"]);
    node_ready(&c, "node-py");
    // The host's Python and the client's packages, mounted read-only into a busybox pod.
    let [python, prefix, packages] = python_parts();
    let mut dirs = vec!["/usr".to_string(), "/lib".into(), "/lib64".into()];
    let under_usr = |d: &String| d == "/usr" || d.starts_with("/usr/");
    dirs.extend(
        [prefix, packages.clone()]
            .into_iter()
            .filter(|d| !under_usr(d)),
    );
    let (mut mounts, mut volumes) = (String::new(), String::new());
    for (i, dir) in dirs.iter().enumerate() {
        mounts += &format!("    - {{name: h{i}, mountPath: {dir:?}, readOnly: true}}\n");
        volumes += &format!("  - {{name: h{i}, hostPath: {{path: {dir:?}}}}}\n");
    }
    let container = format!(
        "    env: [{{name: PYTHONPATH, value: {packages:?}}}]\n    volumeMounts:\n{mounts}"
    );
    let pod = format!("  volumes:\n{volumes}");
    let script = format!("exec {python} -c '{IN_CLUSTER}'");

    let account = "system:serviceaccount:default:default";
    let run = |name: &str| {
        let manifest = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n{pod}  containers:\n  - name: c\n    image: {}\n    command: [sh, -c, {script:?}]\n{container}",
            image.name
        );
        c.apply(&manifest).out();
        patiently("the pod to finish", 90, || {
            let phase = jsonpath(&c, &["pod", name], "{.status.phase}");
            assert_ne!(phase, "Failed", "{}", get(&c, &["logs", name]));
            phase == "Succeeded"
        });
        get(&c, &["logs", name])
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let refused = run("refused");
    assert_eq!(
        refused,
        [format!(
            "{account} 403 pods is forbidden: User \"{account}\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        )]
    );
    c.kubectl(&[
        "create",
        "rolebinding",
        "lister",
        "--clusterrole=view",
        "--serviceaccount=default:default",
    ])
    .out();
    let listed = run("allowed");
    assert_eq!(listed, [format!("{account} lists allowed refused")]);
}
