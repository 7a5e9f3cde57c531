//! The controls of the Pod Security Standards, as upstream's `pod-security-admission`
//! evaluates them: each check looks at a pod's metadata and spec (or a template's) and names
//! what it forbids in upstream's words. A check that changed over time carries the minor
//! version it applies from.

use std::collections::BTreeSet;

use serde_json::Value;

use super::policy::{Level, LevelVersion};

/// What one check forbids: upstream's reason (`privileged`) and detail (`container "c" must
/// not set securityContext.privileged=true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) reason: String,
    pub(crate) detail: String,
}

type CheckFn = fn(&Value, &Value, u32) -> Option<Violation>;

/// One control, the minor version it applies from, and the baseline check it replaces at the
/// restricted level.
struct Check {
    id: &'static str,
    level: Level,
    since: u32,
    overrides: Option<(&'static str, u32)>,
    check: CheckFn,
}

/// Every check, baseline then restricted, each list sorted by ID: upstream's order, which is
/// the order of the reasons in a message.
const CHECKS: &[Check] = &[
    baseline("appArmorProfile", app_armor),
    baseline("capabilities_baseline", capabilities_baseline),
    baseline("hostNamespaces", host_namespaces),
    baseline("hostPathVolumes", host_path_volumes),
    baseline("hostPorts", host_ports),
    baseline("privileged", privileged),
    baseline("procMount", proc_mount),
    baseline("seLinuxOptions", se_linux_options),
    baseline("seccompProfile_baseline", seccomp_baseline),
    baseline("sysctls", sysctls),
    baseline("windowsHostProcess", windows_host_process),
    restricted(
        "allowPrivilegeEscalation",
        8,
        None,
        allow_privilege_escalation,
    ),
    restricted(
        "capabilities_restricted",
        22,
        Some(("capabilities_baseline", 22)),
        capabilities_restricted,
    ),
    restricted(
        "restrictedVolumes",
        0,
        Some(("hostPathVolumes", 0)),
        restricted_volumes,
    ),
    restricted("runAsNonRoot", 0, None, run_as_non_root),
    restricted("runAsUser", 23, None, run_as_user),
    restricted(
        "seccompProfile_restricted",
        19,
        Some(("seccompProfile_baseline", 19)),
        seccomp_restricted,
    ),
];

const fn baseline(id: &'static str, check: CheckFn) -> Check {
    Check {
        id,
        level: Level::Baseline,
        since: 0,
        overrides: None,
        check,
    }
}

const fn restricted(
    id: &'static str,
    since: u32,
    overrides: Option<(&'static str, u32)>,
    check: CheckFn,
) -> Check {
    Check {
        id,
        level: Level::Restricted,
        since,
        overrides,
        check,
    }
}

/// What `meta` and `spec` (a pod's or a pod template's) violate at `lv`, in upstream's order.
pub(crate) fn evaluate(lv: LevelVersion, meta: &Value, spec: &Value) -> Vec<Violation> {
    let minor = lv.version.evaluated();
    let applies = |c: &Check| c.level <= lv.level && c.since <= minor;
    let overridden = |id: &str| {
        lv.level == Level::Restricted
            && CHECKS.iter().any(|c| {
                applies(c) && matches!(c.overrides, Some((o, since)) if o == id && since <= minor)
            })
    };
    CHECKS
        .iter()
        .filter(|c| applies(c) && !overridden(c.id))
        .filter_map(|c| (c.check)(meta, spec, minor))
        .collect()
}

/// Upstream's rendering of violations: `reason (detail), reason (detail)`.
pub(crate) fn detail(violations: &[Violation]) -> String {
    let shown: Vec<String> = violations
        .iter()
        .map(|v| match v.detail.as_str() {
            "" => v.reason.clone(),
            d => format!("{} ({d})", v.reason),
        })
        .collect();
    shown.join(", ")
}

/// Upstream's short rendering: the reasons alone.
pub(crate) fn reasons(violations: &[Violation]) -> String {
    let reasons: Vec<&str> = violations.iter().map(|v| v.reason.as_str()).collect();
    reasons.join(", ")
}

fn violation(reason: impl Into<String>, detail: impl Into<String>) -> Option<Violation> {
    Some(Violation {
        reason: reason.into(),
        detail: detail.into(),
    })
}

/// Init containers, containers, then ephemeral containers.
fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |list| spec[list].as_array().into_iter().flatten())
}

fn name(c: &Value) -> String {
    c["name"].as_str().unwrap_or_default().to_string()
}

/// The names of the containers for which `bad` holds.
fn bad_containers(spec: &Value, mut bad: impl FnMut(&Value) -> bool) -> Vec<String> {
    containers(spec).filter(|c| bad(c)).map(name).collect()
}

fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let quoted: Vec<String> = items
        .into_iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect();
    quoted.join(", ")
}

fn plural(singular: &'static str, plural: &'static str, n: usize) -> &'static str {
    if n == 1 { singular } else { plural }
}

/// `container "a"` or `containers "a", "b"`.
fn named_containers(names: &[String]) -> String {
    let word = plural("container", "containers", names.len());
    format!("{word} {}", join_quote(names))
}

/// `pod and containers "a", "b"`: who set something, the pod first.
fn setters(pod: bool, names: &[String]) -> Vec<String> {
    let mut setters = Vec::new();
    if pod {
        setters.push("pod".to_string());
    }
    if !names.is_empty() {
        setters.push(named_containers(names));
    }
    setters
}

fn windows(spec: &Value) -> bool {
    spec["os"]["name"] == "windows"
}

fn is_true(v: &Value) -> bool {
    v.as_bool() == Some(true)
}

fn app_armor(meta: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let allowed = |t: &Value| t.is_null() || t == "RuntimeDefault" || t == "Localhost";
    let mut values = BTreeSet::new();
    let pod_type = &spec["securityContext"]["appArmorProfile"]["type"];
    let pod = spec["securityContext"]["appArmorProfile"].is_object() && !allowed(pod_type);
    if pod {
        values.insert(pod_type.as_str().unwrap_or_default().to_string());
    }
    let names = bad_containers(spec, |c| {
        let t = &c["securityContext"]["appArmorProfile"]["type"];
        let bad = c["securityContext"]["appArmorProfile"].is_object() && !allowed(t);
        if bad {
            values.insert(t.as_str().unwrap_or_default().to_string());
        }
        bad
    });
    let mut values: Vec<String> = values.into_iter().collect();
    let mut setters = setters(pod, &names);
    let mut annotations: Vec<String> = annotations(meta)
        .filter(|(k, v)| {
            k.starts_with("container.apparmor.security.beta.kubernetes.io/")
                && !(v.is_empty() || *v == "runtime/default" || v.starts_with("localhost/"))
        })
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if !annotations.is_empty() {
        annotations.sort();
        setters.push(plural("annotation", "annotations", annotations.len()).into());
        values.extend(annotations);
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        plural(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    )
}

fn annotations(meta: &Value) -> impl Iterator<Item = (&str, &str)> {
    meta["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()))
}

/// The capabilities a container adds.
fn added(c: &Value) -> impl Iterator<Item = &str> {
    c["securityContext"]["capabilities"]["add"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

const DEFAULT_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Containers adding a capability `allowed` refuses, and the capabilities.
fn adding(spec: &Value, allowed: impl Fn(&str) -> bool) -> Option<String> {
    let mut caps = BTreeSet::new();
    let names = bad_containers(spec, |c| {
        let bad: Vec<&str> = added(c).filter(|a| !allowed(a)).collect();
        caps.extend(bad.iter().map(|s| s.to_string()));
        !bad.is_empty()
    });
    (!names.is_empty()).then(|| {
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            named_containers(&names),
            join_quote(&caps)
        )
    })
}

fn capabilities_baseline(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let detail = adding(spec, |cap| DEFAULT_CAPABILITIES.contains(&cap))?;
    violation("non-default capabilities", detail)
}

fn host_namespaces(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let used: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|f| is_true(&spec[f]))
        .map(|f| format!("{f}=true"))
        .collect();
    (!used.is_empty()).then(|| Violation {
        reason: "host namespaces".into(),
        detail: used.join(", "),
    })
}

fn volumes(spec: &Value) -> impl Iterator<Item = &Value> {
    spec["volumes"].as_array().into_iter().flatten()
}

fn host_path_volumes(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let names: Vec<String> = volumes(spec)
        .filter(|v| v["hostPath"].is_object())
        .map(name)
        .collect();
    let word = plural("volume", "volumes", names.len());
    (!names.is_empty())
        .then(|| format!("{word} {}", join_quote(&names)))
        .and_then(|detail| violation("hostPath volumes", detail))
}

fn host_ports(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let mut ports = BTreeSet::new();
    let names = bad_containers(spec, |c| {
        let used: Vec<String> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["hostPort"].as_i64().filter(|&h| h != 0))
            .map(|h| h.to_string())
            .collect();
        ports.extend(used.iter().cloned());
        !used.is_empty()
    });
    if names.is_empty() {
        return None;
    }
    let ports: Vec<String> = ports.into_iter().collect();
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            named_containers(&names),
            plural("uses", "use", names.len()),
            plural("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    )
}

/// `reason` with `containers "a", "b" <rule>`, when any container breaks the rule.
fn by_containers(names: &[String], reason: &str, rule: &str) -> Option<Violation> {
    let detail = format!("{} {rule}", named_containers(names));
    (!names.is_empty()).then(|| Violation {
        reason: reason.into(),
        detail,
    })
}

/// A rule the pod could meet for all its containers: `pod or containers "a" ...`.
fn pod_or(v: Violation) -> Violation {
    Violation {
        detail: format!("pod or {}", v.detail),
        ..v
    }
}

fn privileged(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let names = bad_containers(spec, |c| is_true(&c["securityContext"]["privileged"]));
    let rule = "must not set securityContext.privileged=true";
    by_containers(&names, "privileged", rule)
}

fn proc_mount(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let mut kinds = BTreeSet::new();
    let names = bad_containers(spec, |c| {
        let pm = c["securityContext"]["procMount"].as_str();
        let bad = pm.is_some_and(|pm| pm != "Default");
        if let Some(pm) = pm.filter(|_| bad) {
            kinds.insert(pm.to_string());
        }
        bad
    });
    let rule = format!(
        "must not set securityContext.procMount to {}",
        join_quote(&kinds)
    );
    by_containers(&names, "procMount", &rule)
}

fn se_linux_options(_: &Value, spec: &Value, minor: u32) -> Option<Violation> {
    let mut allowed = vec!["", "container_t", "container_init_t", "container_kvm_t"];
    if minor >= 31 {
        allowed.push("container_engine_t");
    }
    let (mut types, mut user, mut role) = (BTreeSet::new(), false, false);
    let mut valid = |opts: &Value| {
        let t = opts["type"].as_str().unwrap_or_default();
        let bad_type = !allowed.contains(&t);
        if bad_type {
            types.insert(t.to_string());
        }
        let set = |f: &str| !opts[f].as_str().unwrap_or_default().is_empty();
        user |= set("user");
        role |= set("role");
        !(bad_type || set("user") || set("role"))
    };
    let pod_opts = &spec["securityContext"]["seLinuxOptions"];
    let pod = pod_opts.is_object() && !valid(pod_opts);
    let names = bad_containers(spec, |c| {
        let opts = &c["securityContext"]["seLinuxOptions"];
        opts.is_object() && !valid(opts)
    });
    let setters = setters(pod, &names);
    if setters.is_empty() {
        return None;
    }
    let mut bad = Vec::new();
    if !types.is_empty() {
        let word = plural("type", "types", types.len());
        bad.push(format!("{word} {}", join_quote(&types)));
    }
    if user {
        bad.push("user may not be set".to_string());
    }
    if role {
        bad.push("role may not be set".to_string());
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            bad.join("; ")
        ),
    )
}

fn valid_seccomp(t: &Value) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

/// Before v1.19 the profile was an annotation.
fn seccomp_annotations(meta: &Value, spec: &Value) -> Option<Violation> {
    let valid =
        |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let mut keys = vec!["seccomp.security.alpha.kubernetes.io/pod".to_string()];
    keys.extend(
        containers(spec)
            .map(|c| format!("container.seccomp.security.alpha.kubernetes.io/{}", name(c))),
    );
    let forbidden: BTreeSet<String> = keys
        .iter()
        .filter_map(|k| {
            let v = meta["annotations"][k].as_str()?;
            (!valid(v)).then(|| format!("{k}={v:?}"))
        })
        .collect();
    let word = plural("annotation", "annotations", forbidden.len());
    let shown: Vec<String> = forbidden.into_iter().collect();
    (!shown.is_empty()).then(|| Violation {
        reason: "seccompProfile".into(),
        detail: format!("forbidden {word} {}", shown.join(", ")),
    })
}

/// Who sets a seccomp profile type that is not allowed, and which types; and the containers
/// that set none while the pod sets no valid one either.
struct Seccomp {
    setters: Vec<String>,
    values: BTreeSet<String>,
    unset: Vec<String>,
}

fn seccomp(spec: &Value) -> Seccomp {
    let mut values = BTreeSet::new();
    let pod_profile = &spec["securityContext"]["seccompProfile"];
    let pod_bad = pod_profile.is_object() && !valid_seccomp(&pod_profile["type"]);
    if pod_bad {
        values.insert(pod_profile["type"].as_str().unwrap_or_default().to_string());
    }
    let pod_set = pod_profile.is_object() && !pod_bad;
    let mut unset = Vec::new();
    let names = bad_containers(spec, |c| {
        let profile = &c["securityContext"]["seccompProfile"];
        if !profile.is_object() {
            if !pod_set {
                unset.push(name(c));
            }
            return false;
        }
        let bad = !valid_seccomp(&profile["type"]);
        if bad {
            values.insert(profile["type"].as_str().unwrap_or_default().to_string());
        }
        bad
    });
    Seccomp {
        setters: setters(pod_bad, &names),
        values,
        unset,
    }
}

fn seccomp_set_badly(s: &Seccomp) -> Option<Violation> {
    (!s.setters.is_empty()).then(|| Violation {
        reason: "seccompProfile".into(),
        detail: format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            s.setters.join(" and "),
            join_quote(&s.values)
        ),
    })
}

fn seccomp_baseline(meta: &Value, spec: &Value, minor: u32) -> Option<Violation> {
    if minor < 19 {
        return seccomp_annotations(meta, spec);
    }
    seccomp_set_badly(&seccomp(spec))
}

fn seccomp_restricted(_: &Value, spec: &Value, minor: u32) -> Option<Violation> {
    if minor >= 25 && windows(spec) {
        return None;
    }
    let s = seccomp(spec);
    seccomp_set_badly(&s).or_else(|| {
        let rule =
            r#"must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#;
        by_containers(&s.unset, "seccompProfile", rule).map(pod_or)
    })
}

/// The sysctls the baseline level allows, with the minor version each was added in.
const SAFE_SYSCTLS: [(&str, u32); 12] = [
    ("kernel.shm_rmid_forced", 0),
    ("net.ipv4.ip_local_port_range", 0),
    ("net.ipv4.tcp_syncookies", 0),
    ("net.ipv4.ping_group_range", 0),
    ("net.ipv4.ip_unprivileged_port_start", 0),
    ("net.ipv4.ip_local_reserved_ports", 27),
    ("net.ipv4.tcp_keepalive_time", 29),
    ("net.ipv4.tcp_fin_timeout", 29),
    ("net.ipv4.tcp_keepalive_intvl", 29),
    ("net.ipv4.tcp_keepalive_probes", 29),
    ("net.ipv4.tcp_rmem", 32),
    ("net.ipv4.tcp_wmem", 32),
];

fn sysctls(_: &Value, spec: &Value, minor: u32) -> Option<Violation> {
    let safe = |n: &str| SAFE_SYSCTLS.iter().any(|(s, v)| *s == n && *v <= minor);
    let forbidden: Vec<&str> = spec["securityContext"]["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .filter(|n| !safe(n))
        .collect();
    (!forbidden.is_empty()).then(|| Violation {
        reason: "forbidden sysctls".into(),
        detail: forbidden.join(", "),
    })
}

fn windows_host_process(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let host_process = |sc: &Value| is_true(&sc["windowsOptions"]["hostProcess"]);
    let names = bad_containers(spec, |c| host_process(&c["securityContext"]));
    let setters = setters(host_process(&spec["securityContext"]), &names);
    (!setters.is_empty()).then(|| Violation {
        reason: "hostProcess".into(),
        detail: format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    })
}

fn allow_privilege_escalation(_: &Value, spec: &Value, minor: u32) -> Option<Violation> {
    if minor >= 25 && windows(spec) {
        return None;
    }
    let names = bad_containers(spec, |c| {
        c["securityContext"]["allowPrivilegeEscalation"].as_bool() != Some(false)
    });
    let rule = "must set securityContext.allowPrivilegeEscalation=false";
    by_containers(&names, "allowPrivilegeEscalation != false", rule)
}

fn capabilities_restricted(_: &Value, spec: &Value, minor: u32) -> Option<Violation> {
    if minor >= 25 && windows(spec) {
        return None;
    }
    let drops_all = |c: &Value| {
        let drop = c["securityContext"]["capabilities"]["drop"].as_array();
        drop.is_some_and(|d| d.iter().any(|x| x == "ALL"))
    };
    let missing = bad_containers(spec, |c| !drops_all(c));
    let mut details = Vec::new();
    if !missing.is_empty() {
        details.push(format!(
            r#"{} must set securityContext.capabilities.drop=["ALL"]"#,
            named_containers(&missing)
        ));
    }
    details.extend(adding(spec, |cap| cap == "NET_BIND_SERVICE"));
    (!details.is_empty()).then(|| Violation {
        reason: "unrestricted capabilities".into(),
        detail: details.join("; "),
    })
}

/// The volume types the restricted level allows.
const ALLOWED_VOLUMES: [&str; 9] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The volume types upstream names; any other is `unknown`.
const KNOWN_VOLUMES: [&str; 21] = [
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

fn restricted_volumes(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let mut types = BTreeSet::new();
    let names: Vec<String> = volumes(spec)
        .filter(|v| {
            if ALLOWED_VOLUMES.iter().any(|t| v[t].is_object()) {
                return false;
            }
            let known = KNOWN_VOLUMES.iter().find(|t| v[*t].is_object());
            types.insert(known.copied().unwrap_or("unknown"));
            true
        })
        .map(name)
        .collect();
    (!names.is_empty()).then(|| Violation {
        reason: "restricted volume types".into(),
        detail: format!(
            "{} {} {} {} {}",
            plural("volume", "volumes", names.len()),
            join_quote(&names),
            plural("uses", "use", names.len()),
            plural(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
    })
}

fn run_as_non_root(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let pod = spec["securityContext"]["runAsNonRoot"].as_bool();
    let explicit = bad_containers(spec, |c| {
        c["securityContext"]["runAsNonRoot"].as_bool() == Some(false)
    });
    let setters = setters(pod == Some(false), &explicit);
    if !setters.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        );
    }
    let implicit = bad_containers(spec, |c| {
        c["securityContext"]["runAsNonRoot"].is_null() && pod != Some(true)
    });
    let rule = "must set securityContext.runAsNonRoot=true";
    by_containers(&implicit, "runAsNonRoot != true", rule).map(pod_or)
}

fn run_as_user(_: &Value, spec: &Value, _: u32) -> Option<Violation> {
    let root = |sc: &Value| sc["runAsUser"].as_i64() == Some(0);
    let names = bad_containers(spec, |c| root(&c["securityContext"]));
    let setters = setters(root(&spec["securityContext"]), &names);
    (!setters.is_empty()).then(|| Violation {
        reason: "runAsUser=0".into(),
        detail: format!("{} must not set runAsUser=0", setters.join(" and ")),
    })
}

#[cfg(test)]
mod tests;
