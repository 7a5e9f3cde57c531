//! Pod Security admission end to end, with the real kubectl: namespace labels enforce, warn
//! about and validate the Pod Security Standards in upstream's words; workloads get warnings;
//! relabelling a namespace warns about its pods; an AdmissionConfiguration file sets the
//! cluster's defaults and exemptions. AlwaysPullImages, once enabled, makes every container
//! pull its image.

mod support;

use support::Cluster;
use testkit::blocking::eventually;

/// A pod named `name` with `spec_extra` (YAML lines at the spec's indentation) and a
/// container `c` with `container_extra`.
fn pod(name: &str, spec_extra: &str, container_extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{spec_extra}  containers:\n  - name: c\n    image: busybox\n{container_extra}"
    )
}

const PRIVILEGED: &str = "    securityContext:\n      privileged: true\n";

const COMPLIANT_SPEC: &str =
    "  securityContext:\n    runAsNonRoot: true\n    seccompProfile:\n      type: RuntimeDefault\n";

const COMPLIANT_CONTAINER: &str = "    securityContext:\n      allowPrivilegeEscalation: false\n      capabilities:\n        drop: [ALL]\n";

/// `kubectl create -f -` of `manifest` in `ns`.
fn create(c: &Cluster, ns: &str, manifest: &str) -> support::Run {
    c.kubectl_in(&["create", "-n", ns, "-f", "-"], Some(manifest))
}

fn label(c: &Cluster, target: &[&str], label: &str) -> support::Run {
    let mut args = vec!["label", "--overwrite"];
    args.extend_from_slice(target);
    args.push(label);
    c.kubectl(&args)
}

#[test]
fn the_restricted_level_refuses_listing_every_violated_control() {
    let c = Cluster::start(&[]);
    c.kubectl(&["create", "namespace", "locked"]).out();
    let enforce = "pod-security.kubernetes.io/enforce=restricted";
    label(&c, &["namespace", "locked"], enforce).out();

    let refused = create(&c, "locked", &pod("priv", "", PRIVILEGED));
    assert_eq!(
        refused.err().trim(),
        concat!(
            r#"Error from server (Forbidden): error when creating "STDIN": pods "priv" is forbidden: violates PodSecurity "restricted:latest": "#,
            r#"privileged (container "c" must not set securityContext.privileged=true), "#,
            r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), "#,
            r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), "#,
            r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), "#,
            r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
        )
    );
    let admitted = create(
        &c,
        "locked",
        &pod("ok", COMPLIANT_SPEC, COMPLIANT_CONTAINER),
    );
    assert_eq!(admitted.out().trim(), "pod/ok created");
    assert_eq!(admitted.stderr, "");

    // A workload is admitted with a warning; the pods it asks for are refused.
    let deployment = c.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "-n",
        "locked",
    ]);
    assert_eq!(deployment.out().trim(), "deployment.apps/web created");
    assert!(
        deployment.stderr.starts_with(
            r#"Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "busybox" must set securityContext.allowPrivilegeEscalation=false), "#
        ),
        "{}",
        deployment.stderr
    );
    eventually("the ReplicaSet reports the refusal", || {
        let events = c
            .kubectl(&[
                "get",
                "events",
                "-n",
                "locked",
                "-o",
                "jsonpath={.items[*].message}",
            ])
            .out()
            .to_string();
        events.contains(r#"is forbidden: violates PodSecurity "restricted:latest""#)
    });

    let bad = label(
        &c,
        &["namespace", "locked"],
        "pod-security.kubernetes.io/warn=loud",
    );
    assert_eq!(
        bad.err().trim(),
        r#"The Namespace "locked" is invalid: metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: "loud": must be one of privileged, baseline, restricted"#
    );
}

#[test]
fn warnings_for_new_pods_and_for_existing_pods_on_relabel() {
    let c = Cluster::start(&[]);
    c.kubectl(&["create", "namespace", "open"]).out();
    label(
        &c,
        &["namespace", "open"],
        "pod-security.kubernetes.io/warn=baseline",
    )
    .out();

    let host = create(&c, "open", &pod("host", "  hostNetwork: true\n", ""));
    assert_eq!(host.out().trim(), "pod/host created");
    assert_eq!(
        host.stderr.trim(),
        r#"Warning: would violate PodSecurity "baseline:latest": host namespaces (hostNetwork=true)"#
    );
    create(&c, "open", &pod("priv-a", "", PRIVILEGED)).out();
    create(&c, "open", &pod("priv-b", "", PRIVILEGED)).out();

    let relabel = label(
        &c,
        &["namespace", "open"],
        "pod-security.kubernetes.io/enforce=baseline",
    );
    assert_eq!(relabel.out().trim(), "namespace/open labeled");
    assert_eq!(
        relabel.stderr.trim(),
        [
            r#"Warning: existing pods in namespace "open" violate the new PodSecurity enforce level "baseline:latest""#,
            "Warning: host: host namespaces",
            "Warning: priv-a (and 1 other pod): privileged",
        ]
        .join("\n")
    );
    // Loosening the level, or a pod update that changes no image, passes quietly.
    let update = label(&c, &["pod", "priv-a", "-n", "open"], "touched=yes");
    assert_eq!(
        (update.out().trim(), update.stderr.as_str()),
        ("pod/priv-a labeled", "")
    );
    let looser = label(
        &c,
        &["namespace", "open"],
        "pod-security.kubernetes.io/enforce=privileged",
    );
    assert_eq!(looser.stderr, "");
}

#[test]
fn an_admission_configuration_sets_defaults_and_exemptions() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admission.yaml");
    std::fs::write(
        dir.path().join("pod-security.yaml"),
        "apiVersion: pod-security.admission.config.k8s.io/v1\nkind: PodSecurityConfiguration\ndefaults:\n  enforce: baseline\n  enforce-version: v1.33\nexemptions:\n  namespaces: [tools]\n  runtimeClasses: [trusted]\n",
    )
    .unwrap();
    std::fs::write(
        &file,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: PodSecurity\n  path: pod-security.yaml\n",
    )
    .unwrap();
    let c = Cluster::start(&["--admission-control-config-file", file.to_str().unwrap()]);

    let refused = create(&c, "default", &pod("priv", "", PRIVILEGED));
    assert!(
        refused.err().contains(
            r#"pods "priv" is forbidden: violates PodSecurity "baseline:v1.33": privileged (container "c" must not set securityContext.privileged=true)"#
        ),
        "{}",
        refused.stderr
    );
    c.kubectl(&["create", "namespace", "tools"]).out();
    create(&c, "tools", &pod("priv", "", PRIVILEGED)).out();
    // The label sets the level; the version stays the default's.
    let ignored = label(
        &c,
        &["namespace", "tools"],
        "pod-security.kubernetes.io/enforce=restricted",
    );
    assert_eq!(
        ignored.stderr.trim(),
        r#"Warning: namespace "tools" is exempt from Pod Security, and the policy (enforce=restricted:v1.33) will be ignored"#
    );
    c.apply("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: trusted\nhandler: runc\n")
        .out();
    let trusted = pod("trusted", "  runtimeClassName: trusted\n", PRIVILEGED);
    assert_eq!(
        create(&c, "default", &trusted).out().trim(),
        "pod/trusted created"
    );
}

#[test]
fn always_pull_images_once_enabled_sets_every_containers_policy() {
    let c = Cluster::start(&["--enable-admission-plugins", "AlwaysPullImages"]);
    let manifest = pod(
        "cached",
        "  initContainers:\n  - {name: i, image: busybox, imagePullPolicy: Never}\n",
        "    imagePullPolicy: IfNotPresent\n",
    );
    create(&c, "default", &manifest).out();
    let policies =
        "jsonpath={.spec.initContainers[*].imagePullPolicy} {.spec.containers[*].imagePullPolicy}";
    let got = c.kubectl(&["get", "pod", "cached", "-o", policies]);
    assert_eq!(got.out(), "Always Always");
    // An update without a new image passes untouched.
    c.kubectl(&["label", "pod", "cached", "tier=web"]).out();
}
