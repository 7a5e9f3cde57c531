//! Auditing end to end: a policy file decides what real kubectl requests leave in the audit
//! log (upstream's `audit.k8s.io/v1` events, bodies by level, stages), secrets' data stays
//! out of it at the `Metadata` level, a watch gets its `ResponseStarted` and
//! `ResponseComplete`, Pod Security's audit mode annotates the events of violating pods, and
//! the webhook backend receives the same events as `EventList`s. The log also shows each
//! controller acting as its own service account, allowed by its `system:controller:*` role,
//! and the scheduler and the controller manager as upstream's users.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use support::Cluster;
use testkit::blocking::eventually;

const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: RequestResponse
  users: ["system:admin"]
  resources:
  - group: ""
    resources: [configmaps]
- level: Metadata
  resources:
  - group: ""
    resources: [secrets, pods]
- level: None
"#;

/// A plain-HTTP receiver that keeps every `EventList` POSTed to it.
fn receiver() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok()
                && let Ok(list) = serde_json::from_slice::<Value>(&body)
            {
                keep.lock().unwrap().push(list);
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (port, got)
}

fn events(log: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_policy_decides_what_the_log_and_the_webhook_receive() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, log) = (
        dir.path().join("policy.yaml"),
        dir.path().join("audit/audit.log"),
    );
    std::fs::write(&policy, POLICY).unwrap();
    let (port, received) = receiver();
    let webhook = dir.path().join("webhook.yaml");
    std::fs::write(
        &webhook,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: sink\n  cluster:\n    server: http://127.0.0.1:{port}/events\ncontexts:\n- name: sink\n  context:\n    cluster: sink\n    user: sink\nusers:\n- name: sink\n  user: {{}}\ncurrent-context: sink\n"),
    )
    .unwrap();
    let c = Cluster::start(&[
        "--audit-policy-file",
        policy.to_str().unwrap(),
        "--audit-log-path",
        log.to_str().unwrap(),
        "--audit-webhook-config-file",
        webhook.to_str().unwrap(),
        "--audit-webhook-batch-max-wait",
        "200ms",
    ]);
    c.kubectl(&["create", "configmap", "cm", "--from-literal=k=v"])
        .out();
    c.kubectl(&[
        "create",
        "secret",
        "generic",
        "s",
        "--from-literal=password=hunter2",
    ])
    .out();
    c.kubectl(&["get", "secret", "s", "-o", "name"]).out();
    c.kubectl(&["create", "namespace", "watched"]).out();
    let audit_label = "pod-security.kubernetes.io/audit=restricted";
    c.kubectl(&["label", "namespace", "watched", audit_label])
        .out();
    c.kubectl(&["run", "p", "--image=busybox", "-n", "watched"])
        .out();
    let watch = "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1";
    c.kubectl(&["get", "--raw", watch]).out();

    let all = events(&log);
    assert!(
        all.iter()
            .all(|e| e["apiVersion"] == "audit.k8s.io/v1" && e["kind"] == "Event")
    );
    assert!(
        all.iter().all(|e| e["stage"] != "RequestReceived"),
        "omitted stage written"
    );
    let create = all
        .iter()
        .find(|e| e["verb"] == "create" && e["objectRef"]["name"] == "cm")
        .unwrap_or_else(|| panic!("the configmap's create is not audited: {all:#?}"));
    assert_eq!(create["level"], "RequestResponse");
    assert_eq!(create["stage"], "ResponseComplete");
    assert_eq!(create["user"]["username"], "system:admin");
    assert_eq!(create["objectRef"]["namespace"], "default");
    assert_eq!(create["objectRef"]["resource"], "configmaps");
    assert_eq!(create["requestObject"]["data"]["k"], "v");
    assert_eq!(create["responseObject"]["metadata"]["name"], "cm");
    assert_eq!(create["responseStatus"]["code"], 201);
    assert_eq!(
        create["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
    assert!(create["userAgent"].as_str().unwrap().starts_with("kubectl"));
    assert!(create["sourceIPs"][0] == "127.0.0.1");

    let secrets: Vec<&Value> = all
        .iter()
        .filter(|e| e["objectRef"]["resource"] == "secrets" && e["objectRef"]["name"] == "s")
        .collect();
    assert_eq!(secrets.len(), 2, "the secret's create and get");
    assert!(
        secrets
            .iter()
            .all(|e| e["level"] == "Metadata" && e.get("requestObject").is_none())
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("hunter2") && !text.contains("aHVudGVyMg"),
        "secret data in the log"
    );
    assert!(
        all.iter().all(|e| e["objectRef"]["resource"] != "events"),
        "level None written"
    );

    let pod = all
        .iter()
        .find(|e| e["verb"] == "create" && e["objectRef"]["name"] == "p")
        .expect("the pod's create is audited");
    let annotations = &pod["annotations"];
    assert_eq!(
        annotations["pod-security.kubernetes.io/enforce-policy"],
        "privileged:latest"
    );
    let violations = annotations["pod-security.kubernetes.io/audit-violations"]
        .as_str()
        .unwrap();
    assert!(
        violations.starts_with(
            r#"would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false"#
        ),
        "{violations}"
    );

    let watched: Vec<&str> = all
        .iter()
        .filter(|e| {
            e["requestURI"] == "/api/v1/namespaces/default/configmaps?timeoutSeconds=1&watch=1"
        })
        .map(|e| e["stage"].as_str().unwrap())
        .collect();
    assert_eq!(watched, ["ResponseStarted", "ResponseComplete"]);

    eventually("the webhook receives the events", || {
        let lists = received.lock().unwrap();
        let items: Vec<&Value> = lists
            .iter()
            .flat_map(|l| l["items"].as_array().unwrap())
            .collect();
        lists.iter().all(|l| l["kind"] == "EventList")
            && items.iter().any(|e| e["auditID"] == create["auditID"])
    });
}

/// Every request at the `Metadata` level.
const EVERYTHING: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n";

#[test]
fn each_controller_and_component_acts_as_its_own_user() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, log) = (dir.path().join("policy.yaml"), dir.path().join("audit.log"));
    std::fs::write(&policy, EVERYTHING).unwrap();
    let c = Cluster::start(&[
        "--audit-policy-file",
        policy.to_str().unwrap(),
        "--audit-log-path",
        log.to_str().unwrap(),
    ]);
    c.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=2",
    ])
    .out();
    let by_user = |verb: &str, resource: &str, user: &str| {
        events(&log).into_iter().find(|e| {
            e["verb"] == verb
                && e["objectRef"]["resource"] == resource
                && e["user"]["username"] == user
        })
    };
    let by = |verb: &str, resource: &str, account: &str| {
        by_user(
            verb,
            resource,
            &format!("system:serviceaccount:kube-system:{account}"),
        )
    };
    eventually("the deployment controller makes a ReplicaSet", || {
        by("create", "replicasets", "deployment-controller").is_some()
    });
    let created = by("create", "replicasets", "deployment-controller").unwrap();
    assert_eq!(created["responseStatus"]["code"], 201);
    assert_eq!(
        created["annotations"]["authorization.k8s.io/reason"],
        "RBAC: allowed by ClusterRoleBinding \"system:controller:deployment-controller\" of \
         ClusterRole \"system:controller:deployment-controller\" to ServiceAccount \
         \"deployment-controller/kube-system\""
    );
    eventually("the replica set controller makes the pods", || {
        by("create", "pods", "replicaset-controller").is_some()
    });
    let groups = &created["user"]["groups"];
    assert!(
        groups
            .as_array()
            .unwrap()
            .contains(&"system:serviceaccounts:kube-system".into()),
        "{groups}"
    );

    // The scheduler and the controller manager act as upstream's users: they hold their
    // leases, and the controller manager asks for its controllers' tokens.
    for (user, resource) in [
        ("system:kube-scheduler", "leases"),
        ("system:kube-controller-manager", "leases"),
        ("system:kube-controller-manager", "serviceaccounts"),
    ] {
        eventually(&format!("a create of {resource} by {user}"), || {
            by_user("create", resource, user).is_some()
        });
    }

    // Each account exists, and its role allows what its controller does and no more.
    let sa = [
        "get",
        "serviceaccount",
        "-n",
        "kube-system",
        "deployment-controller",
    ];
    c.kubectl(&[&sa[..], &["-o", "name"]].concat()).out();
    let binding = c
        .kubectl(&[
            "get",
            "clusterrolebinding",
            "system:controller:replicaset-controller",
            "-o",
            "jsonpath={.roleRef.name} {.subjects[0].kind} {.subjects[0].namespace}/{.subjects[0].name}",
        ])
        .out()
        .to_string();
    assert_eq!(
        binding,
        "system:controller:replicaset-controller ServiceAccount kube-system/replicaset-controller"
    );
    let can = |verb: &str, what: &str| {
        let r = c.kubectl(&[
            "auth",
            "can-i",
            verb,
            what,
            "--as=system:serviceaccount:kube-system:deployment-controller",
        ]);
        r.stdout.trim().to_string()
    };
    assert_eq!(can("create", "replicasets"), "yes");
    assert_eq!(can("delete", "deployments"), "no");
    assert_eq!(can("get", "secrets"), "no");

    // No controller or component was refused anything on the way.
    let refused: Vec<Value> = events(&log)
        .into_iter()
        .filter(|e| {
            let user = e["user"]["username"].as_str().unwrap_or_default();
            let component = ["system:kube-scheduler", "system:kube-controller-manager"];
            (user.starts_with("system:serviceaccount:kube-system:") || component.contains(&user))
                && e["responseStatus"]["code"] == 403
        })
        .collect();
    assert!(refused.is_empty(), "controllers were refused: {refused:#?}");
}
