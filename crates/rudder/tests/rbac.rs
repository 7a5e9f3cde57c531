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
        Users::start_with(&[])
    }

    /// As [`Users::start`], with a namespace `team`.
    fn with_team() -> Users {
        let u = Users::start();
        u.c.kubectl(&["create", "namespace", "team"]).out();
        u
    }

    /// As [`Users::start`], with more flags for the server.
    fn start_with(extra: &[&str]) -> Users {
        let tokens = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            tokens.path(),
            "bobtoken,bob,2,\"dev\"\ncaroltoken,carol,3\n",
        )
        .unwrap();
        let mut args = vec!["--token-auth-file", tokens.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        let c = Cluster::start(&args);
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
        // Named after the token's hash: a JWT is longer than a file name may be.
        let hash = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), token);
        let path = self.c.dir.path().join(format!("user-{hash:x}.yaml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// GET `path` with no credentials at all (with curl: kubectl would ask for a password).
    fn anonymous(&self, path: &str) -> String {
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "10", "--cacert"])
            .arg(self.c.dir.path().join("tls/ca.crt"))
            .arg(format!("https://127.0.0.1:{}{path}", self.c.port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl as the user whose token is `token`.
    fn as_user(&self, token: &str, args: &[&str]) -> Run {
        self.c.kubectl_with(&self.config(token), args, None)
    }
}

#[test]
fn bindings_decide_what_each_user_may_do_and_where() {
    let u = Users::with_team();
    let c = &u.c;
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
    let u = Users::with_team();
    let c = &u.c;
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

#[test]
fn service_account_tokens_authenticate_until_what_they_name_is_gone() {
    let u = Users::with_team();
    let c = &u.c;
    c.kubectl(&["create", "serviceaccount", "robot", "-n", "team"])
        .out();
    let token = c
        .kubectl(&["create", "token", "robot", "-n", "team"])
        .out()
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let pods = ["get", "pods", "-n", "team"];
    let refused = u.as_user(&token, &pods);
    assert!(
        refused.err().contains(
            r#"User "system:serviceaccount:team:robot" cannot list resource "pods" in API group "" in the namespace "team""#
        ),
        "{}",
        refused.stderr
    );
    c.kubectl(&[
        "create",
        "rolebinding",
        "robot-view",
        "--clusterrole=view",
        "--serviceaccount=team:robot",
        "-n",
        "team",
    ])
    .out();
    eventually("the service account's binding to apply", || {
        u.as_user(&token, &pods).ok
    });
    let whoami = u.as_user(&token, &["auth", "whoami"]);
    let text = whoami.out();
    assert!(text.contains("system:serviceaccount:team:robot"), "{text}");
    assert!(
        text.contains("[system:serviceaccounts system:serviceaccounts:team system:authenticated]"),
        "{text}"
    );
    let review = format!(
        "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: {token}\n"
    );
    let reviewed = c.kubectl_in(
        &[
            "create",
            "-f",
            "-",
            // Client-side validation of a create-only kind reads /openapi/v2 as protobuf,
            // which Rudder does not serve (docs/apiserver.md).
            "--validate=false",
            "-o",
            "jsonpath={.status.authenticated} {.status.user.username} {.status.audiences}",
        ],
        Some(&review),
    );
    assert_eq!(
        reviewed.out(),
        r#"true system:serviceaccount:team:robot ["https://kubernetes.default.svc.cluster.local"]"#
    );
    let short = c.kubectl(&["create", "token", "robot", "-n", "team", "--duration=5m"]);
    assert!(
        short.err().contains("spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes"),
        "{}",
        short.stderr
    );
    // A token bound to a pod dies with the pod; every token dies with the account.
    c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: team\nspec:\n  serviceAccountName: robot\n  containers:\n  - name: c\n    image: busybox\n",
    )
    .out();
    let bound = c
        .kubectl(&[
            "create",
            "token",
            "robot",
            "-n",
            "team",
            "--bound-object-kind=Pod",
            "--bound-object-name=p",
        ])
        .out()
        .trim()
        .to_string();
    assert!(u.as_user(&bound, &pods).ok);
    c.kubectl(&[
        "delete",
        "pod",
        "p",
        "-n",
        "team",
        "--grace-period=0",
        "--force",
    ]);
    eventually("the pod to be gone", || {
        !c.kubectl(&["get", "pod", "p", "-n", "team"]).ok
    });
    let gone = u.as_user(&bound, &pods);
    assert!(gone.err().contains("Unauthorized"), "{}", gone.stderr);
    c.kubectl(&["delete", "serviceaccount", "robot", "-n", "team"])
        .out();
    // Accounts are read from a watched copy, as upstream reads an informer: the deletion
    // counts once the copy has it.
    eventually("the deleted account's tokens to be refused", || {
        let refused = u.as_user(&token, &pods);
        !refused.ok && refused.stderr.contains("Unauthorized")
    });
    // The issuer's discovery documents.
    let config = c
        .kubectl(&["get", "--raw", "/.well-known/openid-configuration"])
        .out()
        .to_string();
    assert!(
        config.contains(r#""issuer":"https://kubernetes.default.svc.cluster.local""#),
        "{config}"
    );
    let jwks = c
        .kubectl(&["get", "--raw", "/openid/v1/jwks"])
        .out()
        .to_string();
    assert!(
        jwks.contains(r#""alg":"RS256""#) && jwks.contains(r#""kty":"RSA""#),
        "{jwks}"
    );
}

#[test]
fn secret_based_tokens_are_made_on_request_and_end_with_their_secret_or_account() {
    let u = Users::with_team();
    let c = &u.c;
    c.kubectl(&["create", "serviceaccount", "robot", "-n", "team"])
        .out();
    let secret = |name: &str, account: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: team\n  annotations: {{kubernetes.io/service-account.name: {account}}}\ntype: kubernetes.io/service-account-token\n"
        )
    };
    c.apply(&secret("robot-token", "robot")).out();
    let read = |name: &str, path: &str| {
        let out = c.kubectl(&[
            "get",
            "secret",
            name,
            "-n",
            "team",
            "-o",
            &format!("jsonpath={path}"),
        ]);
        if out.ok { out.stdout } else { String::new() }
    };
    eventually("the token filled in", || {
        !read("robot-token", "{.data.token}").is_empty()
    });
    let decode = |b64: &str| {
        use base64::Engine as _;
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap()
    };
    let token = decode(&read("robot-token", "{.data.token}"));
    assert_eq!(decode(&read("robot-token", "{.data.namespace}")), "team");
    assert!(
        decode(&read("robot-token", "{.data.ca\\.crt}")).starts_with("-----BEGIN CERTIFICATE-----")
    );
    let uid = read(
        "robot-token",
        "{.metadata.annotations.kubernetes\\.io/service-account\\.uid}",
    );
    assert_eq!(
        uid,
        c.kubectl(&[
            "get",
            "sa",
            "robot",
            "-n",
            "team",
            "-o",
            "jsonpath={.metadata.uid}"
        ])
        .out()
    );

    let whoami = u.as_user(&token, &["auth", "whoami"]);
    assert!(
        whoami.out().contains("system:serviceaccount:team:robot"),
        "{}",
        whoami.stdout
    );
    eventually("the use noted", || {
        !read(
            "robot-token",
            "{.metadata.labels.kubernetes\\.io/legacy-token-last-used}",
        )
        .is_empty()
    });
    c.kubectl(&["delete", "secret", "robot-token", "-n", "team"])
        .out();
    let refused = u.as_user(&token, &["auth", "whoami"]);
    assert!(refused.err().contains("Unauthorized"), "{}", refused.stderr);

    // A Secret naming no account is refused; one naming a missing account is removed, as
    // are an account's Secrets when the account goes.
    let unnamed = "apiVersion: v1\nkind: Secret\nmetadata: {name: unnamed, namespace: team}\ntype: kubernetes.io/service-account-token\n";
    let refused = c.apply(unnamed);
    assert!(
        refused
            .err()
            .contains("metadata.annotations[kubernetes.io/service-account.name]: Required value"),
        "{}",
        refused.stderr
    );
    c.apply(&secret("orphan-token", "nobody")).out();
    eventually("the orphan removed", || {
        !c.kubectl(&["get", "secret", "orphan-token", "-n", "team"])
            .ok
    });
    c.apply(&secret("second-token", "robot")).out();
    eventually("the second token", || {
        !read("second-token", "{.data.token}").is_empty()
    });
    c.kubectl(&["delete", "serviceaccount", "robot", "-n", "team"])
        .out();
    eventually("the account's secret removed", || {
        !c.kubectl(&["get", "secret", "second-token", "-n", "team"])
            .ok
    });
}

/// `rudder certificate <args> --data-dir <the cluster's>`.
fn certificate(c: &Cluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rudder"))
        .arg("certificate")
        .args(args)
        .arg("--data-dir")
        .arg(c.dir.path())
        .output()
        .unwrap()
}

#[test]
fn certificates_and_the_signing_key_rotate_and_earlier_tokens_stay_valid() {
    let mut u = Users::start();
    let checked = certificate(&u.c, &["check"]);
    let table = String::from_utf8_lossy(&checked.stdout).into_owned();
    let row = |file: &str| {
        table
            .lines()
            .find(|l| l.starts_with(file))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        row("tls/admin.crt").contains("CN=system:admin, O=system:masters"),
        "{table}"
    );
    assert!(
        row("tls/admin.crt")
            .split_whitespace()
            .any(|c| c == "364d" || c == "365d"),
        "a year: {table}"
    );
    assert!(row("tls/admin.crt").ends_with("OK"), "{table}");
    assert!(
        row("tls/ca.crt")
            .split_whitespace()
            .any(|c| c == "9y" || c == "10y"),
        "ten years: {table}"
    );
    let json = certificate(&u.c, &["check", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["file"] == "tls/server.crt" && c["status"] == "OK")
    );

    u.c.kubectl(&["create", "serviceaccount", "robot"]).out();
    let before =
        u.c.kubectl(&["create", "token", "robot"])
            .out()
            .trim()
            .to_string();
    let admin = |c: &Cluster| std::fs::read_to_string(c.dir.path().join("tls/admin.crt")).unwrap();
    let old_admin = admin(&u.c);
    u.c.stop();
    let bogus = certificate(&u.c, &["rotate", "--service", "bogus"]);
    assert!(String::from_utf8_lossy(&bogus.stderr).contains("unknown service \"bogus\""));
    let rotated = certificate(&u.c, &["rotate"]);
    let said = String::from_utf8_lossy(&rotated.stdout).into_owned();
    assert!(
        rotated.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(
        said.contains("admin: admin.crt, admin.key set aside in"),
        "{said}"
    );
    assert!(said.contains("service-account: new signing key"), "{said}");
    u.c.restart();

    assert_ne!(admin(&u.c), old_admin, "a new admin certificate");
    let whoami = u.as_user(&before, &["auth", "whoami"]);
    assert!(
        whoami.out().contains("system:serviceaccount:default:robot"),
        "a token of the old key"
    );
    let after =
        u.c.kubectl(&["create", "token", "robot"])
            .out()
            .trim()
            .to_string();
    assert!(
        u.as_user(&after, &["auth", "whoami"]).ok,
        "a token of the new key"
    );
    let jwks: serde_json::Value =
        serde_json::from_str(u.c.kubectl(&["get", "--raw", "/openid/v1/jwks"]).out()).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");

    // A key kept elsewhere verifies what it signed when --service-account-key-file names it;
    // the retired key, removed, no longer does.
    u.c.stop();
    let tls = u.c.dir.path().join("tls");
    let kept = u.c.dir.path().join("kept.key");
    std::fs::rename(tls.join("service-account.key"), &kept).unwrap();
    std::fs::remove_dir_all(tls.join("service-account-retired")).unwrap();
    u.c.restart_with(&["--service-account-key-file", kept.to_str().unwrap()]);
    let whoami = u.as_user(&after, &["auth", "whoami"]);
    assert!(
        whoami.ok,
        "a token of the key the flag names: {}",
        whoami.stderr
    );
    assert!(
        !u.as_user(&before, &["auth", "whoami"]).ok,
        "the retired key is gone"
    );
}

/// Creates `review` (YAML) with kubectl and prints `jsonpath`.
fn review(c: &Cluster, review: &str, jsonpath: &str) -> String {
    let args = ["create", "-f", "-", "--validate=false", "-o", jsonpath];
    c.kubectl_in(&args, Some(review)).out().to_string()
}

// conformance: 675
#[test]
fn impersonation_takes_the_verb_and_reviews_agree_with_what_the_account_may_do() {
    let u = Users::with_team();
    let c = &u.c;
    c.kubectl(&["create", "serviceaccount", "robot", "-n", "team"])
        .out();
    c.kubectl(&[
        "create",
        "role",
        "cm-reader",
        "--verb=get,list",
        "--resource=configmaps",
        "-n",
        "team",
    ])
    .out();
    c.kubectl(&[
        "create",
        "rolebinding",
        "robot-reads",
        "--role=cm-reader",
        "--serviceaccount=team:robot",
        "-n",
        "team",
    ])
    .out();
    let robot = "--as=system:serviceaccount:team:robot";
    eventually("the account's binding to apply", || {
        c.kubectl(&["get", "configmaps", "-n", "team", robot]).ok
    });
    c.kubectl(&["create", "configmap", "settings", "-n", "team"])
        .out();
    let delete = c.kubectl(&["delete", "configmap", "settings", "-n", "team", robot]);
    assert!(
        delete.err().contains(
            r#"configmaps "settings" is forbidden: User "system:serviceaccount:team:robot" cannot delete resource "configmaps" in API group "" in the namespace "team""#
        ),
        "{}",
        delete.stderr
    );
    assert_eq!(
        c.kubectl(&["auth", "can-i", "get", "configmaps", "-n", "team", robot])
            .out(),
        "yes\n"
    );
    // What the impersonated account may do is what the reviews say for it.
    for (verb, allowed) in [("get", "true"), ("delete", "false")] {
        let attributes =
            format!("resourceAttributes: {{namespace: team, verb: {verb}, resource: configmaps}}");
        let sar = format!(
            "apiVersion: authorization.k8s.io/v1\nkind: SubjectAccessReview\nspec:\n  user: system:serviceaccount:team:robot\n  groups: [system:serviceaccounts, system:serviceaccounts:team, system:authenticated]\n  {attributes}\n"
        );
        assert_eq!(
            review(c, &sar, "jsonpath={.status.allowed}"),
            allowed,
            "{verb}"
        );
        let local = sar.replace(
            "kind: SubjectAccessReview",
            "kind: LocalSubjectAccessReview\nmetadata: {namespace: team}",
        );
        assert_eq!(
            review(c, &local, "jsonpath={.status.allowed}"),
            allowed,
            "{verb}"
        );
    }
    // Impersonating takes the `impersonate` verb on what is asked for.
    let as_carol = [
        "get",
        "--raw",
        "/api/v1/namespaces/team/configmaps",
        "--as=carol",
    ];
    assert_eq!(
        u.as_user("bobtoken", &as_carol).err().trim(),
        r#"Error from server (Forbidden): users "carol" is forbidden: User "bob" cannot impersonate resource "users" in API group "" at the cluster scope"#
    );
    c.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: impersonate-carol}\nrules:\n- apiGroups: [\"\"]\n  resources: [users]\n  resourceNames: [carol]\n  verbs: [impersonate]\n",
    )
    .out();
    c.kubectl(&[
        "create",
        "clusterrolebinding",
        "bob-as-carol",
        "--clusterrole=impersonate-carol",
        "--user=bob",
    ])
    .out();
    eventually("bob to act as carol", || {
        let whoami = u.as_user("bobtoken", &["auth", "whoami", "--as=carol"]);
        whoami.ok && whoami.stdout.contains("Username    carol")
    });
    let with_group: Vec<&str> = as_carol.iter().copied().chain(["--as-group=ops"]).collect();
    let group = u.as_user("bobtoken", &with_group);
    assert!(
        group.err().contains(
            r#"groups "ops" is forbidden: User "bob" cannot impersonate resource "groups""#
        ),
        "{}",
        group.stderr
    );
}

/// A small OIDC issuer on loopback over HTTPS (its own self-signed certificate): the
/// discovery document and one ES256 key, and ID tokens signed with it.
struct Issuer {
    url: String,
    ca: tempfile::NamedTempFile,
    key: jsonwebtoken::EncodingKey,
    _runtime: tokio::runtime::Runtime,
}

impl Issuer {
    fn start() -> Issuer {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let key = rcgen::KeyPair::generate().unwrap();
        let raw = key.public_key_raw();
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
            "use": "sig", "alg": "ES256", "x": b64(&raw[1..33]), "y": b64(&raw[33..65])}]});
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let discovery = serde_json::json!({"issuer": url, "jwks_uri": format!("{url}/keys")});
        let serving = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let ca = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca.path(), serving.cert.pem()).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![serving.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(serving.signing_key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
        let (discovery, jwks) = (discovery.to_string(), jwks.to_string());
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, discovery, jwks) = (acceptor.clone(), discovery.clone(), jwks.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let serve = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let body = match req.uri().path() {
                            "/.well-known/openid-configuration" => discovery.clone(),
                            _ => jwks.clone(),
                        };
                        async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(body)) }
                    });
                    let io = hyper_util::rt::TokioIo::new(tls);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, serve).await;
                });
            }
        });
        let key = jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der());
        Issuer {
            url,
            ca,
            key,
            _runtime: runtime,
        }
    }

    /// An ID token of this issuer with `claims` (and `iss`, `exp`, `iat` filled in).
    fn token(&self, mut claims: serde_json::Value, lifetime: i64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        claims["iss"] = self.url.clone().into();
        claims["iat"] = (now - 10).into();
        claims["exp"] = (now + lifetime).into();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

#[test]
fn oidc_id_tokens_authenticate_with_their_claims() {
    let issuer = Issuer::start();
    let ca = issuer.ca.path().to_str().unwrap();
    let u = Users::start_with(&[
        "--oidc-issuer-url",
        &issuer.url,
        "--oidc-client-id",
        "rudder",
        "--oidc-username-claim",
        "email",
        "--oidc-groups-claim",
        "groups",
        "--oidc-groups-prefix",
        "oidc:",
        "--oidc-ca-file",
        ca,
    ]);
    let jane = serde_json::json!({"sub": "u-1", "aud": "rudder", "email": "jane@example.com",
        "email_verified": true, "groups": ["devs"]});
    let token = issuer.token(jane.clone(), 600);
    let whoami = u.as_user(&token, &["auth", "whoami"]);
    let text = whoami.out();
    assert!(text.contains("Username    jane@example.com"), "{text}");
    assert!(text.contains("[oidc:devs system:authenticated]"), "{text}");
    let pods = ["get", "pods", "-n", "default"];
    assert!(
        u.as_user(&token, &pods)
            .err()
            .contains(r#"User "jane@example.com" cannot list resource "pods""#)
    );
    u.c.kubectl(&[
        "create",
        "rolebinding",
        "devs-view",
        "--clusterrole=view",
        "--group=oidc:devs",
        "-n",
        "default",
    ])
    .out();
    eventually("the group's binding to apply", || {
        u.as_user(&token, &pods).ok
    });
    // Another audience, an expired token, an unverified email: not jane.
    let mut other = jane.clone();
    other["aud"] = "someone-else".into();
    let mut unverified = jane.clone();
    unverified["email_verified"] = false.into();
    for bad in [
        issuer.token(other, 600),
        issuer.token(jane, -120),
        issuer.token(unverified, 600),
    ] {
        let refused = u.as_user(&bad, &pods);
        assert!(refused.err().contains("Unauthorized"), "{}", refused.stderr);
    }
}

#[test]
fn other_paths_answer_as_upstream_does_for_each_caller() {
    let u = Users::start();
    let root = u.c.kubectl(&["get", "--raw", "/"]).out().to_string();
    let paths: serde_json::Value = serde_json::from_str(&root).unwrap();
    let paths: Vec<&str> = paths["paths"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        paths.contains(&"/apis/apps/v1") && paths.contains(&"/version"),
        "{paths:?}"
    );
    let missing = u.c.kubectl(&["get", "--raw", "/nothing-here"]);
    assert!(
        missing
            .err()
            .contains("the server could not find the requested resource"),
        "{}",
        missing.stderr
    );
    let bob = u.as_user("bobtoken", &["get", "--raw", "/"]);
    assert!(
        bob.err()
            .contains(r#"forbidden: User "bob" cannot get path "/""#),
        "{}",
        bob.stderr
    );
    let nobody = u.as_user("not-a-token", &["get", "--raw", "/nothing-here"]);
    assert!(nobody.err().contains("Unauthorized"), "{}", nobody.stderr);
    let unauthorized = r#""reason":"Unauthorized","code":401"#;
    for path in ["/version", "/healthz", "/", "/api/v1/pods"] {
        assert!(u.anonymous(path).contains(unauthorized), "{path}");
    }
}

#[test]
fn anonymous_requests_reach_only_the_public_endpoints() {
    let u = Users::start_with(&["--anonymous-auth"]);
    assert!(u.anonymous("/version").contains(r#""minor":"33""#));
    assert_eq!(u.anonymous("/readyz"), "ok");
    let pods = u.anonymous("/api/v1/namespaces/default/pods");
    let forbidden = r#"pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""#;
    assert!(pods.contains(forbidden), "{pods}");
    let bad_token = u.as_user("not-a-token", &["get", "--raw", "/version"]);
    assert!(
        bad_token.err().contains("Unauthorized"),
        "{}",
        bad_token.stderr
    );
}
