//! Each control of the Pod Security Standards: a pod that passes, and a change to it that
//! fails, with upstream's message.

use serde_json::{Value, json};

use super::super::policy::{Level, LevelVersion, Version};
use super::{detail, evaluate};

/// A pod that meets the restricted level.
fn compliant() -> Value {
    json!({
        "metadata": {"name": "p"},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "c",
                "image": "busybox",
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                },
            }],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    })
}

fn at(level: Level, version: Version, pod: &Value) -> String {
    let lv = LevelVersion { level, version };
    detail(&evaluate(lv, &pod["metadata"], &pod["spec"]))
}

fn restricted(pod: &Value) -> String {
    at(Level::Restricted, Version::Latest, pod)
}

fn baseline(pod: &Value) -> String {
    at(Level::Baseline, Version::Latest, pod)
}

/// The compliant pod with `change` applied at `pointer`.
fn with(pointer: &str, change: Value) -> Value {
    let mut pod = compliant();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = pod.pointer_mut(parent).unwrap();
    match (target, key.parse::<usize>()) {
        (Value::Array(a), Ok(i)) if i == a.len() => a.push(change),
        (Value::Array(a), Ok(i)) => a[i] = change,
        (t, _) => t[key] = change,
    }
    pod
}

#[test]
fn the_compliant_pod_passes_every_level() {
    assert_eq!(restricted(&compliant()), "");
    assert_eq!(baseline(&compliant()), "");
    let privileged = LevelVersion::PRIVILEGED;
    let mut pod = with("/spec/hostNetwork", json!(true));
    pod["spec"]["containers"][0]["securityContext"]["privileged"] = json!(true);
    assert!(evaluate(privileged, &pod["metadata"], &pod["spec"]).is_empty());
}

#[test]
fn baseline_controls() {
    let sc = "/spec/containers/0/securityContext";
    let cases = [
        (
            with("/spec/hostPID", json!(true)),
            "host namespaces (hostPID=true)",
        ),
        (
            with(&format!("{sc}/privileged"), json!(true)),
            r#"privileged (container "c" must not set securityContext.privileged=true)"#,
        ),
        (
            with(
                &format!("{sc}/capabilities/add"),
                json!(["NET_ADMIN", "CHOWN"]),
            ),
            r#"non-default capabilities (container "c" must not include "NET_ADMIN" in securityContext.capabilities.add)"#,
        ),
        (
            with(
                "/spec/volumes/1",
                json!({"name": "h", "hostPath": {"path": "/"}}),
            ),
            r#"hostPath volumes (volume "h")"#,
        ),
        (
            with(
                "/spec/containers/0/ports",
                json!([{"containerPort": 80, "hostPort": 8080}]),
            ),
            r#"hostPort (container "c" uses hostPort 8080)"#,
        ),
        (
            with(
                "/spec/securityContext/appArmorProfile",
                json!({"type": "Unconfined"}),
            ),
            r#"forbidden AppArmor profile (pod must not set AppArmor profile type to "Unconfined")"#,
        ),
        (
            with(
                "/spec/securityContext/seLinuxOptions",
                json!({"type": "spc_t", "user": "root"}),
            ),
            r#"seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: type "spc_t"; user may not be set)"#,
        ),
        (
            with(&format!("{sc}/procMount"), json!("Unmasked")),
            r#"procMount (container "c" must not set securityContext.procMount to "Unmasked")"#,
        ),
        (
            with(
                "/spec/securityContext/seccompProfile",
                json!({"type": "Unconfined"}),
            ),
            r#"seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")"#,
        ),
        (
            with(
                "/spec/securityContext/sysctls",
                json!([{"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.tcp_rmem", "value": "1 2 3"}]),
            ),
            "forbidden sysctls (kernel.msgmax)",
        ),
        (
            with(
                &format!("{sc}/windowsOptions"),
                json!({"hostProcess": true}),
            ),
            r#"hostProcess (container "c" must not set securityContext.windowsOptions.hostProcess=true)"#,
        ),
    ];
    for (pod, expected) in cases {
        assert_eq!(baseline(&pod), expected);
    }
}

#[test]
fn restricted_controls() {
    let sc = "/spec/containers/0/securityContext";
    let cases = [
        (
            with(
                "/spec/volumes/1",
                json!({"name": "n", "nfs": {"server": "x", "path": "/"}}),
            ),
            r#"restricted volume types (volume "n" uses restricted volume type "nfs")"#,
        ),
        (
            with(&format!("{sc}/allowPrivilegeEscalation"), json!(true)),
            r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false)"#,
        ),
        (
            with(&format!("{sc}/capabilities"), json!({"add": ["SYS_TIME"]})),
            r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]; container "c" must not include "SYS_TIME" in securityContext.capabilities.add)"#,
        ),
        (
            with("/spec/securityContext/runAsNonRoot", json!(false)),
            "runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)",
        ),
        (
            with(&format!("{sc}/runAsUser"), json!(0)),
            r#"runAsUser=0 (container "c" must not set runAsUser=0)"#,
        ),
        (
            with("/spec/securityContext", json!({"runAsNonRoot": true})),
            r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
        ),
    ];
    for (pod, expected) in cases {
        assert_eq!(restricted(&pod), expected);
    }
}

#[test]
fn a_bare_privileged_pod_lists_every_violated_control_in_upstreams_order() {
    let pod = json!({"metadata": {}, "spec": {"containers": [
        {"name": "c", "image": "busybox", "securityContext": {"privileged": true}},
    ]}});
    assert_eq!(
        restricted(&pod),
        concat!(
            r#"privileged (container "c" must not set securityContext.privileged=true), "#,
            r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), "#,
            r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), "#,
            r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), "#,
            r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
        )
    );
}

#[test]
fn older_versions_apply_older_rules() {
    let sysctl = with(
        "/spec/securityContext/sysctls",
        json!([{"name": "net.ipv4.tcp_rmem", "value": "1 2 3"}]),
    );
    assert_eq!(baseline(&sysctl), "");
    assert_eq!(
        at(Level::Baseline, Version::Minor(31), &sysctl),
        "forbidden sysctls (net.ipv4.tcp_rmem)"
    );
    let root = with("/spec/containers/0/securityContext/runAsUser", json!(0));
    assert_eq!(at(Level::Restricted, Version::Minor(22), &root), "");
    let mut pod = compliant();
    pod["spec"]["containers"][0]["securityContext"] = json!({});
    pod["spec"]["securityContext"] = json!({"runAsNonRoot": true});
    assert_eq!(at(Level::Restricted, Version::Minor(7), &pod), "");
}
