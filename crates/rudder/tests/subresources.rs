//! Subresources driven by the kubectl commands that use them: `drain` (pods/eviction),
//! `certificate approve|deny` (certificatesigningrequests/approval), `debug`
//! (pods/ephemeralcontainers), and namespaces/finalize through `replace --raw`.

mod support;

use support::Cluster;

/// A pod bound to `n1` and reported running (and ready, when `ready`).
fn running_pod(c: &Cluster, name: &str, app: &str, ready: bool) {
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {app}}}}}\n\
         spec: {{nodeName: n1, containers: [{{name: c, image: nginx}}]}}\n"
    ))
    .out();
    let status = if ready { "True" } else { "False" };
    c.kubectl(&[
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(
            r#"{{"status":{{"phase":"Running","conditions":[{{"type":"Ready","status":"{status}"}}]}}}}"#
        ),
    ])
    .out();
}

fn pdb_status(c: &Cluster, patch: &str) {
    c.kubectl(&[
        "patch",
        "pdb",
        "budget",
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    ])
    .out();
}

#[test]
fn drain_evicts_only_what_the_disruption_budget_allows() {
    // The API server's side alone: the budget's status is written here, as the disruption
    // controller would (controllers_workloads.rs drives the real one).
    let c = Cluster::start(&["--disable-controller", "disruption"]);
    c.apply("apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n")
        .out();
    running_pod(&c, "web", "web", true);
    c.apply(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: budget}\n\
         spec: {minAvailable: 1, selector: {matchLabels: {app: web}}}\n",
    )
    .out();
    let drain = ["drain", "n1", "--force", "--grace-period=0", "--timeout=3s"];

    // (Before a disruption controller has processed the budget, eviction answers 429 with
    // Retry-After: 10, which client-go itself retries for 100 s; so the test starts from a
    // processed budget with no disruption left.)
    pdb_status(
        &c,
        r#"{"status":{"observedGeneration":1,"disruptionsAllowed":0,"desiredHealthy":1,"currentHealthy":1,"expectedPods":1}}"#,
    );
    let blocked = c.kubectl(&drain);
    assert!(
        blocked
            .stderr
            .contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{}",
        blocked.stderr
    );
    let eviction = r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web"}}"#;
    let raw = "/api/v1/namespaces/default/pods/web/eviction";
    let full = c.kubectl_in(&["create", "--raw", raw, "-f", "-"], Some(eviction));
    assert!(
        full.stderr.contains("Error from server (TooManyRequests)"),
        "{}",
        full.stderr
    );
    let wrong = c.kubectl_in(
        &["create", "--raw", raw, "-f", "-"],
        Some(&eviction.replace("\"web\"", "\"other\"")),
    );
    assert!(
        wrong
            .stderr
            .contains("name in URL does not match name in Eviction object"),
        "{}",
        wrong.stderr
    );
    assert_eq!(
        c.kubectl(&["get", "pod", "web", "-o", "name"]).out(),
        "pod/web\n"
    );

    // One disruption allowed: drain evicts, the budget records it.
    pdb_status(
        &c,
        r#"{"status":{"disruptionsAllowed":1,"currentHealthy":2}}"#,
    );
    let drained = c.kubectl(&drain);
    assert!(
        drained.out().contains("pod/web evicted"),
        "{}",
        drained.stdout
    );
    assert!(
        drained.stdout.contains("node/n1 drained"),
        "{}",
        drained.stdout
    );
    assert_eq!(
        c.kubectl(&[
            "get",
            "pdb",
            "budget",
            "-o",
            "jsonpath={.status.disruptionsAllowed} {.status.conditions[0].reason} {.status.disruptedPods.web}"
        ])
        .out()
        .split(' ')
        .take(2)
        .collect::<Vec<_>>(),
        ["0", "InsufficientPods"]
    );
    assert_eq!(
        c.kubectl(&["get", "node", "n1", "-o", "jsonpath={.spec.unschedulable}"])
            .out(),
        "true"
    );
    assert_eq!(c.kubectl(&["get", "pods", "-o", "name"]).out(), "");
}

#[test]
fn certificate_approve_and_deny_go_through_the_approval_subresource() {
    let c = Cluster::start(&[]);
    let csr = |name: &str| {
        format!(
            "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\n\
             metadata: {{name: {name}}}\nspec:\n  request: {CSR}\n  \
             signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n"
        )
    };
    c.apply(&csr("alice")).out();
    c.apply(&csr("bob")).out();
    assert_eq!(
        c.kubectl(&["get", "csr", "alice", "-o", "jsonpath={.spec.username}"])
            .out(),
        "system:admin"
    );
    assert_eq!(
        c.kubectl(&["certificate", "approve", "alice"]).out(),
        "certificatesigningrequest.certificates.k8s.io/alice approved\n"
    );
    assert_eq!(
        c.kubectl(&["certificate", "deny", "bob"]).out(),
        "certificatesigningrequest.certificates.k8s.io/bob denied\n"
    );
    let condition = |name: &str| {
        c.kubectl(&[
            "get",
            "csr",
            name,
            "-o",
            "jsonpath={.status.conditions[*].type} {.status.conditions[0].reason}",
        ])
        .out()
        .to_string()
    };
    assert_eq!(condition("alice"), "Approved KubectlApprove");
    assert_eq!(condition("bob"), "Denied KubectlDeny");

    // A plain status update may not decide, and a decision may not be taken back.
    let sneaky = c.kubectl(&[
        "patch",
        "csr",
        "bob",
        "--subresource=status",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/status/conditions","value":[]}]"#,
    ]);
    assert!(
        sneaky
            .stderr
            .contains("updates may not remove a condition of type \"Denied\""),
        "{}",
        sneaky.stderr
    );
    let both = c.kubectl(&[
        "patch",
        "csr",
        "alice",
        "--subresource=approval",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/status/conditions/-","value":{"type":"Denied","status":"True"}}]"#,
    ]);
    assert!(
        both.stderr.contains(
            "status.conditions[1].type: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive"
        ),
        "{}",
        both.stderr
    );
    let bad = c.apply(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\n\
         metadata: {name: junk}\nspec: {request: aGVsbG8=, signerName: example.com/x}\n",
    );
    assert!(
        bad.stderr
            .contains("PEM block type must be CERTIFICATE REQUEST"),
        "{}",
        bad.stderr
    );
}

#[test]
fn debug_adds_ephemeral_containers_that_then_stay() {
    let c = Cluster::start(&[]);
    c.kubectl(&["run", "app", "--image=nginx"]).out();
    c.kubectl(&[
        "debug",
        "app",
        "--image=busybox",
        "--target=app",
        "-c",
        "debugger",
        "--profile=general",
    ])
    .out();
    assert_eq!(
        c.kubectl(&[
            "get",
            "pod",
            "app",
            "-o",
            "jsonpath={.spec.ephemeralContainers[0].name} {.spec.ephemeralContainers[0].targetContainerName} {.spec.ephemeralContainers[0].imagePullPolicy}"
        ])
        .out(),
        "debugger app Always"
    );
    let clash = c.kubectl(&[
        "debug",
        "app",
        "--image=busybox",
        "-c",
        "app",
        "--profile=general",
    ]);
    assert!(
        clash.stderr.contains(
            "The Pod \"app\" is invalid: spec.ephemeralContainers[1].name: Duplicate value: \"app\""
        ),
        "{}",
        clash.stderr
    );
    // A plain update cannot remove them.
    c.kubectl(&[
        "patch",
        "pod",
        "app",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/ephemeralContainers"}]"#,
    ])
    .out();
    assert_eq!(
        c.kubectl(&[
            "get",
            "pod",
            "app",
            "-o",
            "jsonpath={.spec.ephemeralContainers[*].name}"
        ])
        .out(),
        "debugger"
    );
}

#[test]
fn finalize_releases_a_terminating_namespace() {
    // Without the namespace controller, which would finalize the empty namespace itself.
    let c = Cluster::start(&["--disable-controller", "namespace"]);
    c.kubectl(&["create", "namespace", "doomed"]).out();
    assert_eq!(
        c.kubectl(&["get", "ns", "doomed", "-o", "jsonpath={.spec.finalizers}"])
            .out(),
        r#"["kubernetes"]"#
    );
    c.kubectl(&["delete", "namespace", "doomed", "--wait=false"])
        .out();
    assert_eq!(
        c.kubectl(&["get", "ns", "doomed", "-o", "jsonpath={.status.phase}"])
            .out(),
        "Terminating"
    );
    let raw = "/api/v1/namespaces/doomed/finalize";
    let bad = c.kubectl_in(
        &["replace", "--raw", raw, "-f", "-"],
        Some(
            r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"doomed"},"spec":{"finalizers":["cleanup"]}}"#,
        ),
    );
    assert!(
        bad.stderr.contains(
            "spec.finalizers[0]: Invalid value: \"cleanup\": name is neither a standard finalizer name nor is it fully qualified"
        ),
        "{}",
        bad.stderr
    );
    c.kubectl_in(
        &["replace", "--raw", raw, "-f", "-"],
        Some(
            r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"doomed"},"spec":{"finalizers":[]}}"#,
        ),
    )
    .out();
    let gone = c.kubectl(&["get", "ns", "doomed"]);
    assert!(
        gone.stderr.contains("namespaces \"doomed\" not found"),
        "{}",
        gone.stderr
    );
}

/// A PEM certificate request (CN=alice, P-256), base64 as the API carries it.
const CSR: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlIS01ISUNBUUF3RURFT01Bd0dBMVVFQXd3RllXeHBZMlV3V1RBVEJnY3Foa2pPUFFJQkJnZ3Foa2pPUFFNQgpCd05DQUFTWXV5bVZCWVFIU0pFM0daM3ZHcFI2MTFIbWlwdHpEQW9FSHhhR3IyQUZZYnNvRXhZcjhHT2piUlRDCkZGSm1FTWY4M0dJUitnd1dMSUhPOXRWLzBGOVdvQUF3Q2dZSUtvWkl6ajBFQXdJRFNBQXdSUUloQUtCSHZWSDMKdGh0NndmY05hYkdCMG42aVRuWkoxaXV5b3ZLTFVMZkNIQ3hmQWlCYmxMRDZaSEtVekticGhORUlwOVV0ejhNYgp6SzY4S3NKbGhNekwzcVd3N0E9PQotLS0tLUVORCBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K";
