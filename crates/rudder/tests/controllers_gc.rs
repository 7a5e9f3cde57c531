//! The garbage collector and the namespace controller inside `rudder server`, driven through
//! kubectl: owner graphs built by hand from ConfigMaps and Secrets, deleted with each
//! `--cascade`, and namespaces deleted with their content.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Cluster, Simulator, consistently, eventually};

fn get(c: &Cluster, args: &[&str]) -> String {
    c.kubectl(args).stdout.trim().to_string()
}

/// Whether `kubectl get` says the object is not there.
fn gone(c: &Cluster, args: &[&str]) -> bool {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    let run = c.kubectl(&all);
    !run.ok && run.stderr.contains("NotFound")
}

fn uid(c: &Cluster, args: &[&str]) -> String {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "jsonpath={.metadata.uid}"]);
    let uid = get(c, &all);
    assert!(!uid.is_empty(), "no uid for {args:?}");
    uid
}

/// A reference to the ConfigMap `name` with `uid`.
fn owned_by(name: &str, uid: &str, block: bool) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": uid, "blockOwnerDeletion": block})
}

/// Creates a ConfigMap (or, with `kind` Secret, a Secret) with these owners and finalizers.
fn create(
    c: &Cluster,
    kind: &str,
    ns: &str,
    name: &str,
    owners: &[serde_json::Value],
    finalizers: &[&str],
) {
    let mut obj = json!({
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "data": {},
    });
    if !owners.is_empty() {
        obj["metadata"]["ownerReferences"] = json!(owners);
    }
    if !finalizers.is_empty() {
        obj["metadata"]["finalizers"] = json!(finalizers);
    }
    c.apply(&obj.to_string()).out();
}

fn drop_finalizers(c: &Cluster, args: &[&str]) {
    let mut all = vec!["patch"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    c.kubectl(&all).out();
}

#[test]
fn background_deletion_collects_the_dependents() {
    let c = Cluster::start(&[]);
    create(&c, "ConfigMap", "default", "owner", &[], &[]);
    let owner = uid(&c, &["cm", "owner"]);
    create(
        &c,
        "ConfigMap",
        "default",
        "dep-cm",
        &[owned_by("owner", &owner, false)],
        &[],
    );
    create(
        &c,
        "Secret",
        "default",
        "dep-secret",
        &[owned_by("owner", &owner, true)],
        &[],
    );
    // Owned and alive, they stay.
    consistently(
        "the dependents of a live owner kept",
        Duration::from_secs(1),
        || !gone(&c, &["cm", "dep-cm"]) && !gone(&c, &["secret", "dep-secret"]),
    );

    c.kubectl(&["delete", "cm", "owner"]).out();
    eventually("the dependents collected", || {
        gone(&c, &["cm", "dep-cm"]) && gone(&c, &["secret", "dep-secret"])
    });
}

#[test]
fn orphan_deletion_keeps_the_dependents_without_their_reference() {
    let c = Cluster::start(&[]);
    create(&c, "ConfigMap", "default", "owner", &[], &[]);
    create(&c, "ConfigMap", "default", "other", &[], &[]);
    let owner = uid(&c, &["cm", "owner"]);
    let other = uid(&c, &["cm", "other"]);
    create(
        &c,
        "ConfigMap",
        "default",
        "dep",
        &[owned_by("owner", &owner, true)],
        &[],
    );
    create(
        &c,
        "Secret",
        "default",
        "dep2",
        &[
            owned_by("other", &other, false),
            owned_by("owner", &owner, false),
        ],
        &[],
    );

    c.kubectl(&["delete", "cm", "owner", "--cascade=orphan", "--wait=false"])
        .out();
    eventually("the owner gone", || gone(&c, &["cm", "owner"]));
    assert_eq!(
        get(
            &c,
            &[
                "get",
                "cm",
                "dep",
                "-o",
                "jsonpath={.metadata.ownerReferences}"
            ]
        ),
        ""
    );
    assert_eq!(
        get(
            &c,
            &[
                "get",
                "secret",
                "dep2",
                "-o",
                "jsonpath={.metadata.ownerReferences[*].name}"
            ]
        ),
        "other"
    );
    // Released, the dependents are no one's garbage.
    consistently(
        "the released dependents kept",
        Duration::from_secs(1),
        || !gone(&c, &["cm", "dep"]) && !gone(&c, &["secret", "dep2"]),
    );
}

#[test]
fn foreground_deletion_waits_for_the_blocking_dependents() {
    let c = Cluster::start(&[]);
    create(&c, "ConfigMap", "default", "owner", &[], &[]);
    let owner = uid(&c, &["cm", "owner"]);
    create(
        &c,
        "ConfigMap",
        "default",
        "held",
        &[owned_by("owner", &owner, true)],
        &["example.com/hold"],
    );
    create(
        &c,
        "Secret",
        "default",
        "plain",
        &[owned_by("owner", &owner, false)],
        &[],
    );

    c.kubectl(&[
        "delete",
        "cm",
        "owner",
        "--cascade=foreground",
        "--wait=false",
    ])
    .out();
    eventually(
        "the free dependent deleted, the held one terminating",
        || {
            gone(&c, &["secret", "plain"])
                && !get(
                    &c,
                    &[
                        "get",
                        "cm",
                        "held",
                        "-o",
                        "jsonpath={.metadata.deletionTimestamp}",
                    ],
                )
                .is_empty()
        },
    );
    // The owner waits for the dependent that blocks it.
    let owner = "jsonpath={.metadata.finalizers} {.metadata.deletionTimestamp}";
    consistently(
        "the owner deleting, held by foregroundDeletion",
        Duration::from_secs(1),
        || {
            get(&c, &["get", "cm", "owner", "-o", owner])
                .strip_prefix(r#"["foregroundDeletion"] "#)
                .is_some_and(|deleted_at| !deleted_at.is_empty())
        },
    );

    drop_finalizers(&c, &["cm", "held"]);
    eventually("the held dependent, then the owner, gone", || {
        gone(&c, &["cm", "held"]) && gone(&c, &["cm", "owner"])
    });
}

// conformance: 123
#[test]
fn foreground_deletion_through_an_ownership_cycle_completes() {
    let c = Cluster::start(&[]);
    create(&c, "ConfigMap", "default", "a", &[], &[]);
    let a = uid(&c, &["cm", "a"]);
    create(
        &c,
        "ConfigMap",
        "default",
        "b",
        &[owned_by("a", &a, true)],
        &[],
    );
    let b = uid(&c, &["cm", "b"]);
    // a and b own each other, both blocking.
    create(
        &c,
        "ConfigMap",
        "default",
        "a",
        &[owned_by("b", &b, true)],
        &[],
    );
    let owner_of_a = get(
        &c,
        &[
            "get",
            "cm",
            "a",
            "-o",
            "jsonpath={.metadata.ownerReferences[*].name}",
        ],
    );
    assert_eq!(owner_of_a, "b");
    c.kubectl(&["delete", "cm", "a", "--cascade=foreground", "--wait=false"])
        .out();
    eventually("both gone", || {
        gone(&c, &["cm", "a"]) && gone(&c, &["cm", "b"])
    });
}

#[test]
fn dependents_of_owners_that_are_not_there_are_collected() {
    let c = Cluster::start(&[]);
    // An owner that never existed.
    create(
        &c,
        "ConfigMap",
        "default",
        "orphan",
        &[owned_by(
            "ghost",
            "00000000-0000-0000-0000-000000000001",
            false,
        )],
        &[],
    );
    // An owner by that name exists, but it is another object (another uid).
    create(&c, "ConfigMap", "default", "real", &[], &[]);
    create(
        &c,
        "Secret",
        "default",
        "impostor-dep",
        &[owned_by(
            "real",
            "00000000-0000-0000-0000-000000000002",
            false,
        )],
        &[],
    );
    // The owner exists, in another namespace: a namespaced owner must share the namespace.
    c.kubectl(&["create", "namespace", "elsewhere"]).out();
    create(&c, "ConfigMap", "elsewhere", "far", &[], &[]);
    let far = uid(&c, &["cm", "far", "-n", "elsewhere"]);
    create(
        &c,
        "ConfigMap",
        "default",
        "far-dep",
        &[owned_by("far", &far, false)],
        &[],
    );

    eventually("the dependents collected", || {
        gone(&c, &["cm", "orphan"])
            && gone(&c, &["secret", "impostor-dep"])
            && gone(&c, &["cm", "far-dep"])
    });
    assert!(!gone(&c, &["cm", "real"]) && !gone(&c, &["cm", "far", "-n", "elsewhere"]));
    eventually("a warning about the reference across namespaces", || {
        get(
            &c,
            &[
                "get",
                "events",
                "--field-selector",
                "reason=OwnerRefInvalidNamespace",
                "-o",
                "jsonpath={.items[*].message}",
            ],
        )
        .contains(&format!(
            "ownerRef [v1/ConfigMap, namespace: default, name: far, uid: {far}] does not exist in namespace \"default\""
        ))
    });
}

#[test]
fn a_dependent_of_two_owners_loses_only_the_deleted_ones_reference() {
    let c = Cluster::start(&[]);
    create(&c, "ConfigMap", "default", "one", &[], &[]);
    create(&c, "ConfigMap", "default", "two", &[], &[]);
    let one = uid(&c, &["cm", "one"]);
    let two = uid(&c, &["cm", "two"]);
    create(
        &c,
        "ConfigMap",
        "default",
        "shared",
        &[owned_by("one", &one, true), owned_by("two", &two, true)],
        &[],
    );

    c.kubectl(&["delete", "cm", "one"]).out();
    let owners = || {
        get(
            &c,
            &[
                "get",
                "cm",
                "shared",
                "-o",
                "jsonpath={.metadata.ownerReferences[*].name}",
            ],
        )
    };
    eventually("the reference to the deleted owner dropped", || {
        owners() == "two"
    });
    assert!(!gone(&c, &["cm", "shared"]));

    c.kubectl(&["delete", "cm", "two"]).out();
    eventually("the last owner gone, the dependent too", || {
        gone(&c, &["cm", "shared"])
    });
}

// conformance: 133
#[test]
fn deleting_a_namespace_empties_and_removes_it() {
    let c = Cluster::start(&[]);
    let _sim = Simulator::start(&c, &["--nodes", "1"]);
    c.kubectl(&["create", "namespace", "doomed"]).out();
    create(&c, "ConfigMap", "doomed", "settings", &[], &[]);
    create(&c, "Secret", "doomed", "token", &[], &[]);
    c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: app, namespace: doomed}\n\
         spec: {containers: [{name: app, image: nginx}]}\n",
    )
    .out();
    eventually("the pod running", || {
        get(
            &c,
            &[
                "get",
                "pod",
                "app",
                "-n",
                "doomed",
                "-o",
                "jsonpath={.status.phase}",
            ],
        ) == "Running"
    });

    c.kubectl(&["delete", "namespace", "doomed", "--wait=false"])
        .out();
    eventually("the namespace gone", || gone(&c, &["namespace", "doomed"]));
    assert_eq!(
        get(
            &c,
            &[
                "get",
                "pods,configmaps,secrets",
                "-n",
                "doomed",
                "-o",
                "name"
            ]
        ),
        ""
    );
    // A namespace by that name can be made again.
    c.kubectl(&["create", "namespace", "doomed"]).out();
}

#[test]
fn a_namespace_held_by_finalized_content_says_so() {
    let c = Cluster::start(&[]);
    c.kubectl(&["create", "namespace", "held"]).out();
    create(&c, "ConfigMap", "held", "kept", &[], &["example.com/hold"]);
    create(&c, "ConfigMap", "held", "free", &[], &[]);

    c.kubectl(&["delete", "namespace", "held", "--wait=false"])
        .out();
    let condition = |ty: &str| {
        get(
            &c,
            &[
                "get",
                "ns",
                "held",
                "-o",
                &format!(
                    "jsonpath={{.status.conditions[?(@.type==\"{ty}\")].status}} {{.status.conditions[?(@.type==\"{ty}\")].reason}}: {{.status.conditions[?(@.type==\"{ty}\")].message}}"
                ),
            ],
        )
    };
    eventually("the remaining content reported", || {
        condition("NamespaceContentRemaining")
            == "True SomeResourcesRemain: Some resources are remaining: configmaps. has 1 resource instances"
    });
    assert_eq!(
        condition("NamespaceFinalizersRemaining"),
        "True SomeFinalizerRemain: Some finalizers are remaining: example.com/hold in 1 resource instances"
    );
    assert_eq!(
        condition("NamespaceDeletionDiscoveryFailure"),
        "False ResourcesDiscovered: All resources successfully discovered"
    );
    assert_eq!(
        get(&c, &["get", "ns", "held", "-o", "jsonpath={.status.phase}"]),
        "Terminating"
    );
    assert!(gone(&c, &["cm", "free", "-n", "held"]));

    drop_finalizers(&c, &["cm", "kept", "-n", "held"]);
    eventually("the namespace gone", || gone(&c, &["namespace", "held"]));
}
