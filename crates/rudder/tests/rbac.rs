//! RBAC end to end: users from a token file, driven by the real kubectl. Bindings decide what
//! each may do and where, `kubectl auth can-i` (with `--list`) answers from the same rules,
//! aggregation grows `edit`, escalation is refused in upstream's words, and the bootstrap
//! policy is there and survives a restart without losing what an admin added.

mod support;

use std::path::PathBuf;

use support::{Cluster, Run};
use testkit::blocking::eventually;

/// A cluster whose token file knows `bob` (group `dev`) and `carol`.
struct Users {
    c: Cluster,
    _tokens: tempfile::NamedTempFile,
}

impl Users {
    fn start() -> Users {
        let tokens = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            tokens.path(),
            "bobtoken,bob,2,\"dev\"\ncaroltoken,carol,3\n",
        )
        .unwrap();
        let c = Cluster::start(&["--token-auth-file", tokens.path().to_str().unwrap()]);
        Users { c, _tokens: tokens }
    }

    /// A kubeconfig that authenticates with `token` instead of the admin certificate.
    fn config(&self, token: &str) -> PathBuf {
        let admin = std::fs::read_to_string(self.c.kubeconfig()).unwrap();
        let text: String = admin
            .lines()
            .filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"))
            .map(|l| match l {
                "  user:" => format!("  user:\n    token: {token}\n"),
                _ => format!("{l}\n"),
            })
            .collect();
        let path = self.c.dir.path().join(format!("{token}.yaml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// kubectl as the user whose token is `token`.
    fn as_user(&self, token: &str, args: &[&str]) -> Run {
        self.c.kubectl_with(&self.config(token), args, None)
    }
}

#[test]
fn bindings_decide_what_each_user_may_do_and_where() {
    let u = Users::start();
    let c = &u.c;
    c.kubectl(&["create", "namespace", "team"]).out();
    c.kubectl(&[
        "create",
        "rolebinding",
        "bob-view",
        "--clusterrole=view",
        "--user=bob",
        "-n",
        "team",
    ])
    .out();
    c.kubectl(&[
        "create",
        "rolebinding",
        "carol-edit",
        "--clusterrole=edit",
        "--user=carol",
        "-n",
        "team",
    ])
    .out();
    eventually("view to be aggregated and bound", || {
        u.as_user("bobtoken", &["get", "pods", "-n", "team"]).ok
    });
    let denied = u.as_user("bobtoken", &["delete", "configmap", "x", "-n", "team"]);
    assert!(
        denied.err().contains(
            r#"configmaps "x" is forbidden: User "bob" cannot delete resource "configmaps" in API group "" in the namespace "team""#
        ),
        "{}",
        denied.stderr
    );
    let elsewhere = u.as_user("bobtoken", &["get", "pods", "-n", "default"]);
    assert!(
        elsewhere
            .err()
            .contains(r#"cannot list resource "pods" in API group "" in the namespace "default""#)
    );
    assert_eq!(
        u.as_user("bobtoken", &["auth", "can-i", "list", "pods", "-n", "team"])
            .out(),
        "yes\n"
    );
    let no = u.as_user(
        "bobtoken",
        &["auth", "can-i", "delete", "pods", "-n", "team"],
    );
    assert_eq!((no.ok, no.stdout.as_str()), (false, "no\n"));
    // A namespaced edit binding stops at its namespace.
    let cm = ["create", "configmap", "c1", "--from-literal=a=b"];
    eventually("edit to be aggregated", || {
        u.as_user("caroltoken", &[&cm[..], &["-n", "team"]].concat())
            .ok
    });
    let outside = u.as_user("caroltoken", &[&cm[..], &["-n", "default"]].concat());
    assert!(
        outside
            .err()
            .contains(r#"User "carol" cannot create resource "configmaps""#)
    );
    // Aggregation adds to edit what a labelled role grants.
    let quota = ["auth", "can-i", "create", "resourcequotas", "-n", "team"];
    assert_eq!(u.as_user("caroltoken", &quota).stdout, "no\n");
    c.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: quota-edit\n  labels:\n    rbac.authorization.k8s.io/aggregate-to-edit: \"true\"\nrules:\n- apiGroups: [\"\"]\n  resources: [\"resourcequotas\"]\n  verbs: [\"create\"]\n",
    )
    .out();
    eventually("edit to gain the quota rule", || {
        u.as_user("caroltoken", &quota).stdout == "yes\n"
    });
    // What bob may do in team, as `can-i --list` shows it.
    let list = u.as_user("bobtoken", &["auth", "can-i", "--list", "-n", "team"]);
    let text = list.out();
    assert!(text.starts_with("Resources"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("pods ") && l.ends_with("[get list watch]")),
        "{text}"
    );
    assert!(
        text.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("[/api/*]") && l.ends_with("[get]")),
        "{text}"
    );
}

#[test]
fn escalation_is_refused_unless_held_or_granted() {
    let u = Users::start();
    let c = &u.c;
    c.kubectl(&["create", "namespace", "team"]).out();
    // bob may write roles and bindings in team, and read pods there.
    c.kubectl(&[
        "create",
        "role",
        "rbac-writer",
        "--verb=create,get,update",
        "--resource=roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io",
        "-n",
        "team",
    ])
    .out();
    c.kubectl(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods",
        "-n",
        "team",
    ])
    .out();
    for role in ["rbac-writer", "pod-reader"] {
        c.kubectl(&[
            "create",
            "rolebinding",
            &format!("bob-{role}"),
            &format!("--role={role}"),
            "--user=bob",
            "-n",
            "team",
        ])
        .out();
    }
    eventually("bob's bindings to apply", || {
        u.as_user("bobtoken", &["get", "pods", "-n", "team"]).ok
    });
    let sneaky = u.as_user(
        "bobtoken",
        &[
            "create",
            "role",
            "sneaky",
            "--verb=get,list,delete",
            "--resource=pods",
            "-n",
            "team",
        ],
    );
    assert_eq!(
        sneaky.err().trim_end(),
        "Error from server (Forbidden): roles.rbac.authorization.k8s.io \"sneaky\" is forbidden: user \"bob\" (groups=[\"dev\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"
    );
    let within = u.as_user(
        "bobtoken",
        &[
            "create",
            "role",
            "reader-copy",
            "--verb=get",
            "--resource=pods",
            "-n",
            "team",
        ],
    );
    assert_eq!(
        within.out(),
        "role.rbac.authorization.k8s.io/reader-copy created\n"
    );
    let bind_admin = u.as_user(
        "bobtoken",
        &[
            "create",
            "rolebinding",
            "me-admin",
            "--clusterrole=admin",
            "--user=bob",
            "-n",
            "team",
        ],
    );
    assert!(
        bind_admin
            .err()
            .contains("is attempting to grant RBAC permissions not currently held"),
        "{}",
        bind_admin.stderr
    );
    let share = u.as_user(
        "bobtoken",
        &[
            "create",
            "rolebinding",
            "carol-reads",
            "--role=pod-reader",
            "--user=carol",
            "-n",
            "team",
        ],
    );
    assert_eq!(
        share.out(),
        "rolebinding.rbac.authorization.k8s.io/carol-reads created\n"
    );
    // `bind` on a role lets bob bind it without holding its rules.
    c.kubectl(&[
        "create",
        "role",
        "binder",
        "--verb=bind",
        "--resource=roles.rbac.authorization.k8s.io",
        "--resource-name=rbac-writer",
        "-n",
        "team",
    ])
    .out();
    c.kubectl(&[
        "create",
        "rolebinding",
        "bob-binder",
        "--role=binder",
        "--user=bob",
        "-n",
        "team",
    ])
    .out();
    eventually("bind to be granted", || {
        u.as_user(
            "bobtoken",
            &[
                "create",
                "rolebinding",
                "carol-writes",
                "--role=rbac-writer",
                "--user=carol",
                "-n",
                "team",
            ],
        )
        .ok
    });
}

#[test]
fn the_bootstrap_policy_is_written_and_kept_across_restarts() {
    let mut u = Users::start();
    let c = &mut u.c;
    let bindings = c
        .kubectl(&["get", "clusterrolebindings", "-o", "name"])
        .out()
        .to_string();
    for name in [
        "cluster-admin",
        "system:discovery",
        "system:basic-user",
        "system:public-info-viewer",
    ] {
        assert!(
            bindings.contains(&format!(
                "clusterrolebinding.rbac.authorization.k8s.io/{name}\n"
            )),
            "{bindings}"
        );
    }
    let groups = c
        .kubectl(&[
            "get",
            "clusterrolebinding",
            "cluster-admin",
            "-o",
            "jsonpath={.subjects[*].name}",
        ])
        .out()
        .to_string();
    assert_eq!(groups, "system:masters");
    c.kubectl(&["label", "clusterrole", "system:basic-user", "team=mine"])
        .out();
    c.restart();
    let labels = c
        .kubectl(&[
            "get",
            "clusterrole",
            "system:basic-user",
            "-o",
            "jsonpath={.metadata.labels}",
        ])
        .out()
        .to_string();
    assert!(
        labels.contains("\"team\":\"mine\"") && labels.contains("rbac-defaults"),
        "{labels}"
    );
    // Every authenticated user reads discovery and asks what they may do.
    assert_eq!(
        u.as_user("caroltoken", &["auth", "can-i", "create", "pods"])
            .stdout,
        "no\n"
    );
    assert!(
        u.as_user("caroltoken", &["api-versions"])
            .out()
            .contains("rbac.authorization.k8s.io/v1")
    );
}
