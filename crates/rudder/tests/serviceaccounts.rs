//! Service-account credentials in real pods, as root: the ServiceAccount admission step mounts
//! a token, the cluster CA and the namespace into every container unless automounting is
//! off, the agent fetches the token through the TokenRequest API bound to the pod, and a
//! projected token for another audience is what it says.

#[path = "support/pods.rs"]
mod pods;
mod support;
#[path = "../../image/tests/support/testimage.rs"]
mod testimage;

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
