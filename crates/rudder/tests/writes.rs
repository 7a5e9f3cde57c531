//! Nothing is lost on a write: dry runs never change the store (whether `dryRun` comes in the
//! URL or in the body), defaults are applied on every write so an unchanged object sent back
//! is unchanged, and the system namespaces cannot be deleted; and paged lists say how many
//! items are left and outlive the compaction of their revision. Driven by the real kubectl.

mod support;

use support::Cluster;

const POD: &str = "
apiVersion: v1
kind: Pod
metadata: {name: keep}
spec:
  # What the ServiceAccount admission step would add otherwise, which a replace with this
  # manifest would then try to take away (upstream refuses that too).
  serviceAccountName: default
  automountServiceAccountToken: false
  containers:
  - name: c
    image: busybox:1.36
    env:
    - name: NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
  volumes:
  - name: scratch
";

const DEPLOYMENT: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: 'nginx:1.25'}]
";

fn jsonpath(c: &Cluster, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let expr = format!("jsonpath={path}");
    args.extend(["-o", expr.as_str()]);
    c.kubectl(&args).out().to_string()
}

#[test]
fn dry_runs_in_the_body_or_the_url_change_nothing() {
    let c = Cluster::start(&[]);
    c.kubectl(&["create", "configmap", "cm", "--from-literal=a=1"])
        .out();
    c.kubectl(&["create", "namespace", "team"]).out();
    c.kubectl_in(&["create", "-f", "-"], Some(POD)).out();
    // kubectl sends a delete's dry run in the DeleteOptions body.
    assert_eq!(
        c.kubectl(&["delete", "cm", "cm", "--dry-run=server"]).out(),
        "configmap \"cm\" deleted (server dry run)\n"
    );
    assert_eq!(
        c.kubectl(&["delete", "ns", "team", "--dry-run=server"])
            .out(),
        "namespace \"team\" deleted (server dry run)\n"
    );
    c.kubectl(&["delete", "cm", "--all", "--dry-run=server"])
        .out();
    // And in the URL, with no body.
    c.kubectl(&[
        "delete",
        "--raw",
        "/api/v1/namespaces/default/configmaps/cm?dryRun=All",
    ])
    .out();
    assert_eq!(jsonpath(&c, &["cm", "cm"], "{.data.a}"), "1");
    assert_eq!(jsonpath(&c, &["ns", "team"], "{.status.phase}"), "Active");
    // An eviction's dry run in its deleteOptions (kubectl drain --dry-run=server).
    let eviction = r#"{"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": "keep", "namespace": "default"},
        "deleteOptions": {"dryRun": ["All"]}}"#;
    let file = c.dir.path().join("eviction.json");
    std::fs::write(&file, eviction).unwrap();
    let path = "/api/v1/namespaces/default/pods/keep/eviction";
    c.kubectl(&["create", "--raw", path, "-f", &file.display().to_string()])
        .out();
    let both = format!("{path}?dryRun=All");
    c.kubectl(&["create", "--raw", &both, "-f", &file.display().to_string()])
        .out();
    assert_eq!(jsonpath(&c, &["pod", "keep"], "{.metadata.name}"), "keep");
    assert!(
        jsonpath(&c, &["pod", "keep"], "{.metadata.deletionTimestamp}").is_empty(),
        "a dry-run eviction marked the pod"
    );
}

#[test]
fn an_unchanged_object_replaced_keeps_its_defaults() {
    let c = Cluster::start(&[]);
    c.kubectl_in(&["create", "-f", "-"], Some(POD)).out();
    // The sent pod lacks every default the stored one has; replace must not read that as a
    // change of the immutable spec.
    assert_eq!(
        c.kubectl_in(&["replace", "-f", "-"], Some(POD)).out(),
        "pod/keep replaced\n"
    );
    assert_eq!(
        jsonpath(
            &c,
            &["pod", "keep"],
            "{.spec.containers[0].env[0].valueFrom.fieldRef.apiVersion} {.spec.volumes[0].emptyDir}"
        ),
        "v1 {}"
    );
    c.kubectl_in(&["create", "-f", "-"], Some(DEPLOYMENT)).out();
    let generation = jsonpath(&c, &["deploy", "web"], "{.metadata.generation}");
    c.kubectl_in(&["replace", "-f", "-"], Some(DEPLOYMENT))
        .out();
    assert_eq!(
        jsonpath(
            &c,
            &["deploy", "web"],
            "{.spec.strategy.type} {.spec.revisionHistoryLimit} {.spec.replicas} {.metadata.generation}"
        ),
        format!("RollingUpdate 10 1 {generation}")
    );
    // A merge patch that removes a defaulted field gets the default back.
    c.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec": {"progressDeadlineSeconds": null}}"#,
    ])
    .out();
    assert_eq!(
        jsonpath(&c, &["deploy", "web"], "{.spec.progressDeadlineSeconds}"),
        "600"
    );
}

#[test]
fn secrets_merge_string_data_and_controllers_default_their_selector() {
    let c = Cluster::start(&[]);
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n\
                  data: {a: b2xk, b: Yg==}\nstringData: {a: new}\n";
    c.kubectl_in(&["create", "-f", "-"], Some(secret)).out();
    assert_eq!(
        jsonpath(&c, &["secret", "s"], "{.data.a} {.data.b} {.stringData}"),
        "bmV3 Yg== "
    );
    let rc = "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: rc}\n\
              spec:\n  replicas: 0\n  template:\n    metadata: {labels: {app: rc}}\n    \
              spec: {containers: [{name: c, image: 'busybox:1.36'}]}\n";
    c.kubectl_in(&["create", "-f", "-"], Some(rc)).out();
    assert_eq!(
        jsonpath(
            &c,
            &["rc", "rc"],
            "{.spec.selector.app} {.metadata.labels.app}"
        ),
        "rc rc"
    );
}

#[test]
fn system_namespaces_cannot_be_deleted() {
    let c = Cluster::start(&[]);
    let refused = c.kubectl(&["delete", "namespace", "default"]);
    assert_eq!(
        refused.err().trim(),
        "Error from server (Forbidden): namespaces \"default\" is forbidden: this namespace may not be deleted"
    );
    c.kubectl(&["create", "namespace", "scratch"]).out();
    // Every other namespace goes; the three the cluster needs stay Active.
    let all = c.kubectl(&["delete", "namespace", "--all", "--wait=false"]);
    assert!(!all.ok, "{}", all.stdout);
    assert!(
        all.stdout.contains("namespace \"scratch\" deleted"),
        "{}",
        all.stdout
    );
    for ns in ["default", "kube-system", "kube-public"] {
        assert!(
            all.stderr
                .contains(&format!("namespaces \"{ns}\" is forbidden")),
            "{}",
            all.stderr
        );
        assert_eq!(jsonpath(&c, &["ns", ns], "{.status.phase}"), "Active");
    }
}

// conformance: 269, 391, 521
#[test]
fn empty_keys_immutable_objects_and_priority_values_are_refused() {
    let c = Cluster::start(&[]);
    for kind in ["ConfigMap", "Secret"] {
        let obj = format!(
            "apiVersion: v1\nkind: {kind}\nmetadata: {{name: empty}}\ndata: {{'': YQ==}}\n"
        );
        let refused = c.kubectl_in(&["create", "-f", "-"], Some(&obj));
        assert!(
            refused.err().contains(&format!(
                "{kind} \"empty\" is invalid: data[]: Invalid value: \"\": a valid config key must \
                 consist of alphanumeric characters"
            )),
            "{}",
            refused.stderr
        );
    }
    let frozen = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: frozen}\ndata: {a: '1'}\nimmutable: true\n";
    c.kubectl_in(&["create", "-f", "-"], Some(frozen)).out();
    let thaw = c.kubectl(&[
        "patch",
        "cm",
        "frozen",
        "--type=merge",
        "-p",
        r#"{"immutable": false}"#,
    ]);
    assert!(
        thaw.err()
            .contains("immutable: Forbidden: field is immutable when `immutable` is set"),
        "{}",
        thaw.stderr
    );
    let change = c.kubectl(&[
        "patch",
        "cm",
        "frozen",
        "--type=merge",
        "-p",
        r#"{"data": {"a": "2"}}"#,
    ]);
    assert!(
        change.err().contains("data: Forbidden"),
        "{}",
        change.stderr
    );
    c.kubectl(&["label", "cm", "frozen", "edited=yes"]).out();
    c.kubectl(&["delete", "cm", "frozen"]).out();

    c.kubectl(&["create", "priorityclass", "high", "--value=1000"])
        .out();
    let revalued = c.kubectl(&[
        "patch",
        "pc",
        "high",
        "--type=merge",
        "-p",
        r#"{"value": 5}"#,
    ]);
    assert!(
        revalued
            .err()
            .contains("value: Forbidden: may not be changed in an update."),
        "{}",
        revalued.stderr
    );
    c.kubectl(&[
        "patch",
        "pc",
        "high",
        "--type=merge",
        "-p",
        r#"{"description": "d"}"#,
    ])
    .out();
    assert_eq!(
        jsonpath(&c, &["pc", "high"], "{.value} {.description}"),
        "1000 d"
    );
}

#[test]
fn rbac_objects_take_any_path_segment_as_their_name() {
    let c = Cluster::start(&[]);
    assert_eq!(
        c.kubectl(&[
            "create",
            "rolebinding",
            "testing-RB",
            "--clusterrole=view",
            "--user=u"
        ])
        .out(),
        "rolebinding.rbac.authorization.k8s.io/testing-RB created\n"
    );
    let role = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: 'a:b..'}\nrules: []\n";
    c.kubectl_in(&["create", "-f", "-"], Some(role)).out();
    let dots = role.replace("'a:b..'", "'..'");
    let refused = c.kubectl_in(&["create", "-f", "-"], Some(&dots));
    assert!(
        refused.err().contains("may not be '..'"),
        "{}",
        refused.stderr
    );
}

/// A `GET` with the admin certificate through curl: status code and body, whatever the
/// status (kubectl prints no body for an error).
fn curl_get(c: &Cluster, path: &str) -> (u16, serde_json::Value) {
    let tls = c.dir.path().join("tls");
    let out = std::process::Command::new("curl")
        .args(["-sk", "--max-time", "10", "-w", "\n%{http_code}", "--cert"])
        .arg(tls.join("admin.crt"))
        .arg("--key")
        .arg(tls.join("admin.key"))
        .arg(format!("https://127.0.0.1:{}{path}", c.port))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text
        .rsplit_once('\n')
        .expect("curl printed the status code");
    (
        code.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

fn names(list: &serde_json::Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect()
}

// conformance: 154
// conformance: 155
#[test]
fn paged_lists_count_what_is_left_and_survive_compaction() {
    // History older than about a second is compacted away.
    let c = Cluster::start(&["--etcd-compaction-interval=1s"]);
    let mut manifest = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: paging}\n");
    for i in 0..10 {
        manifest.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i:02}, namespace: paging}}\n"
        ));
    }
    c.apply(&manifest).out();
    // The root CA publisher adds its own: eleven configmaps.
    testkit::blocking::eventually("kube-root-ca.crt in paging", || {
        c.kubectl(&["get", "cm", "kube-root-ca.crt", "-n", "paging"])
            .ok
    });

    let path = "/api/v1/namespaces/paging/configmaps";
    let first: serde_json::Value = serde_json::from_str(
        c.kubectl(&["get", "--raw", &format!("{path}?limit=3")])
            .out(),
    )
    .unwrap();
    assert_eq!(names(&first), ["cm-00", "cm-01", "cm-02"]);
    assert_eq!(first["metadata"]["remainingItemCount"], 8);
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    let last: serde_json::Value = serde_json::from_str(
        c.kubectl(&["get", "--raw", &format!("{path}?limit=8&continue={token}")])
            .out(),
    )
    .unwrap();
    assert_eq!(names(&last).len(), 8);
    assert!(last["metadata"].get("remainingItemCount").is_none());
    assert!(last["metadata"].get("continue").is_none());

    // A write after the first page, then the compactor passes its revision: the token expires
    // and the 410 offers one that goes on at the latest revision.
    c.kubectl(&["create", "cm", "late", "-n", "paging"]).out();
    let mut expired = serde_json::Value::Null;
    testkit::blocking::eventually("the continue token to expire", || {
        let (code, body) = curl_get(&c, &format!("{path}?limit=500&continue={token}"));
        expired = body;
        code == 410
    });
    assert_eq!(expired["reason"], "Expired");
    assert_eq!(expired["code"], 410);
    assert_eq!(
        expired["message"],
        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."
    );
    let fresh = expired["metadata"]["continue"].as_str().unwrap();
    let rest: serde_json::Value = serde_json::from_str(
        c.kubectl(&[
            "get",
            "--raw",
            &format!("{path}?limit=500&continue={fresh}"),
        ])
        .out(),
    )
    .unwrap();
    assert_eq!(
        names(&rest),
        [
            "cm-03",
            "cm-04",
            "cm-05",
            "cm-06",
            "cm-07",
            "cm-08",
            "cm-09",
            "kube-root-ca.crt",
            "late"
        ]
    );
}
