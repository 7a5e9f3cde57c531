//! The pod spec's defaults and checks, shared by pods and by every workload's pod template
//! (upstream's `SetDefaults_PodSpec` and `ValidatePodSpec`).

use api::validation::FieldError;
use serde_json::{Value, json};

use super::set_default;

/// Pod spec defaults, as upstream's defaulting sets them.
pub(super) fn default_pod_spec(spec: &mut Value) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    default_containers(
        spec,
        &["initContainers", "containers", "ephemeralContainers"],
    );
    for v in spec
        .get_mut("volumes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        // A volume that names no source is an emptyDir.
        if v.as_object().is_some_and(|o| o.keys().all(|k| k == "name")) {
            v["emptyDir"] = json!({});
        }
        if let Some(items) = v.pointer_mut("/downwardAPI/items") {
            default_field_refs(items);
        }
        for source in v
            .pointer_mut("/projected/sources")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(items) = source.pointer_mut("/downwardAPI/items") {
                default_field_refs(items);
            }
        }
    }
}

/// `fieldRef.apiVersion` defaults to `v1` wherever a field is referenced: downward API items
/// (passed as their array) or a container's env.
fn default_field_refs(items: &mut Value) {
    for item in items.as_array_mut().into_iter().flatten() {
        let field_ref = if item.get("fieldRef").is_some() {
            item.get_mut("fieldRef")
        } else {
            item.pointer_mut("/valueFrom/fieldRef")
        };
        if let Some(f) = field_ref {
            set_default(f, "apiVersion", json!("v1"));
        }
    }
}

/// Container defaults for the lists `lists` of a pod spec.
pub(super) fn default_containers(spec: &mut Value, lists: &[&str]) {
    for list in lists {
        for c in spec
            .get_mut(*list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
            set_default(c, "terminationMessagePolicy", json!("File"));
            set_default(c, "resources", json!({}));
            if let Some(env) = c.get_mut("env") {
                default_field_refs(env);
            }
            let image = c.get("image").and_then(Value::as_str).unwrap_or("");
            let tag = image.rsplit('/').next().unwrap_or("");
            let latest = !tag.contains(':') && !image.contains('@') || tag.ends_with(":latest");
            set_default(
                c,
                "imagePullPolicy",
                json!(if latest { "Always" } else { "IfNotPresent" }),
            );
            for p in c
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                set_default(p, "protocol", json!("TCP"));
            }
        }
    }
}

/// Checks a pod spec found at `path` (`spec`, `spec.template.spec`, ...).
pub(super) fn pod_spec_errors(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    dns_errors(spec, path, errs);
    sysctl_errors(
        &spec["securityContext"]["sysctls"],
        &format!("{path}.securityContext.sysctls"),
        errs,
    );
    seccomp_errors(
        &spec["securityContext"]["seccompProfile"],
        &format!("{path}.securityContext.seccompProfile"),
        errs,
    );
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        None => errs.push(FieldError::required(format!("{path}.containers"), "")),
        Some(cs) if cs.is_empty() => {
            errs.push(FieldError::required(format!("{path}.containers"), ""))
        }
        Some(cs) => {
            let mut seen = Vec::new();
            for (i, c) in cs.iter().enumerate() {
                let field = format!("{path}.containers[{i}]");
                match c.get("name").and_then(Value::as_str) {
                    None | Some("") => errs.push(FieldError::required(format!("{field}.name"), "")),
                    Some(name) => {
                        for e in api::validation::dns1123_label(name) {
                            errs.push(FieldError::invalid(
                                format!("{field}.name"),
                                &json!(name),
                                e,
                            ));
                        }
                        if seen.contains(&name) {
                            errs.push(FieldError::duplicate(format!("{field}.name"), &json!(name)));
                        }
                        seen.push(name);
                    }
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .trim()
                    .is_empty()
                {
                    errs.push(FieldError::required(format!("{field}.image"), ""));
                }
                resource_errors(&c["resources"], &format!("{field}.resources"), errs);
                seccomp_errors(
                    &c["securityContext"]["seccompProfile"],
                    &format!("{field}.securityContext.seccompProfile"),
                    errs,
                );
                for (j, p) in c["ports"].as_array().into_iter().flatten().enumerate() {
                    let port = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
                    if !(1..=65535).contains(&port) {
                        errs.push(FieldError::invalid(
                            format!("{field}.ports[{j}].containerPort"),
                            &json!(port),
                            "must be between 1 and 65535, inclusive",
                        ));
                    }
                }
            }
        }
    }
}

/// Checks `dnsPolicy` and `dnsConfig` as upstream does.
fn dns_errors(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let policy = spec["dnsPolicy"].as_str();
    if let Some(p) = policy
        && !["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"].contains(&p)
    {
        errs.push(FieldError::not_supported(
            format!("{path}.dnsPolicy"),
            &json!(p),
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        ));
    }
    let config = &spec["dnsConfig"];
    let servers = config["nameservers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if policy == Some("None") {
        if config.is_null() {
            errs.push(FieldError::required(
                format!("{path}.dnsConfig"),
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
            return;
        }
        if servers.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.dnsConfig.nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            ));
        }
    }
    if servers.len() > 3 {
        errs.push(FieldError::invalid(
            format!("{path}.dnsConfig.nameservers"),
            &json!(servers),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, ns) in servers.iter().enumerate() {
        if ns
            .as_str()
            .is_none_or(|s| s.parse::<std::net::IpAddr>().is_err())
        {
            errs.push(FieldError::invalid(
                format!("{path}.dnsConfig.nameservers[{i}]"),
                ns,
                "must be valid IP address",
            ));
        }
    }
}

/// Checks sysctl names: upstream's pattern, each name once.
fn sysctl_errors(sysctls: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let segment = |s: &str| {
        let b = s.as_bytes();
        let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        !b.is_empty()
            && b.first().is_some_and(edge)
            && b.last().is_some_and(edge)
            && b.iter().all(|c| edge(c) || *c == b'-' || *c == b'_')
    };
    let mut seen = Vec::new();
    for (i, s) in sysctls.as_array().into_iter().flatten().enumerate() {
        let field = format!("{path}[{i}].name");
        let name = s["name"].as_str().unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(field, ""));
        } else if name.len() > 253 || !name.split(['.', '/']).all(segment) {
            errs.push(FieldError::invalid(
                field,
                &json!(name),
                "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
            ));
        } else if seen.contains(&name) {
            errs.push(FieldError::duplicate(field, &json!(name)));
        }
        seen.push(name);
    }
}

/// Checks a `seccompProfile`: a known type, and a relative path inside the node's profile
/// directory for (and only for) `Localhost`.
fn seccomp_errors(profile: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if profile.is_null() {
        return;
    }
    let kind = profile["type"].as_str().unwrap_or("");
    let local = &profile["localhostProfile"];
    match kind {
        "" => errs.push(FieldError::required(
            format!("{path}.type"),
            "type is required when seccompProfile is set",
        )),
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        other => errs.push(FieldError::not_supported(
            format!("{path}.type"),
            &json!(other),
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
    let field = format!("{path}.localhostProfile");
    match (kind, local.as_str()) {
        ("Localhost", None) => errs.push(FieldError::required(
            field,
            "must be set when seccomp type is Localhost",
        )),
        ("Localhost", Some(p)) => {
            if p.starts_with('/') {
                errs.push(FieldError::invalid(
                    &field,
                    local,
                    "must be a relative path",
                ));
            }
            if p.split('/').any(|part| part == "..") {
                errs.push(FieldError::invalid(&field, local, "must not contain '..'"));
            }
        }
        (_, Some(_)) => errs.push(FieldError::invalid(
            field,
            local,
            "can only be set when seccomp type is Localhost",
        )),
        _ => {}
    }
}

/// Checks a container's requests and limits: quantity syntax, not negative, requests within
/// limits.
fn resource_errors(resources: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let mut parsed = std::collections::HashMap::new();
    for kind in ["limits", "requests"] {
        for (name, v) in resources[kind].as_object().into_iter().flatten() {
            let field = format!("{path}.{kind}[{name}]");
            let shown = match v {
                Value::String(s) => json!(s),
                other => json!(other.to_string()),
            };
            match api::quantity::from_json(v) {
                Err(e) => errs.push(FieldError::invalid(field, &shown, e)),
                Ok(q) if q.is_negative() => errs.push(FieldError::invalid(
                    field,
                    &shown,
                    "must be greater than or equal to 0",
                )),
                Ok(q) => {
                    parsed.insert((kind, name.as_str()), (q, shown));
                }
            }
        }
    }
    for ((kind, name), (request, shown)) in &parsed {
        if *kind != "requests" {
            continue;
        }
        if let Some((limit, limit_shown)) = parsed.get(&("limits", *name))
            && request > limit
        {
            errs.push(FieldError::invalid(
                format!("{path}.requests"),
                shown,
                format!(
                    "must be less than or equal to {name} limit of {}",
                    limit_shown.as_str().unwrap_or_default()
                ),
            ));
        }
    }
}
