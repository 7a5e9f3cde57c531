//! Per-resource behaviour on top of the generic registry (upstream's `Strategy`): defaults
//! filled in on every write, what a create adds, validation, and how names are checked. Resources without an entry here
//! get the generic behaviour: metadata checks only.

pub mod csr;
mod defaults;
mod ephemeral;
pub(crate) mod service;

use api::Resource;
use api::selector::LabelSelector;
use api::validation::{FieldError, NameRule, object_meta};
use serde_json::{Value, json};

/// How this resource's names are checked.
pub fn name_rule(r: &Resource) -> NameRule {
    match (r.group, r.plural) {
        ("", "namespaces") => NameRule::Label,
        ("", "services") => NameRule::Dns1035,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

fn set_default(obj: &mut Value, key: &str, value: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.entry(key).or_insert(value);
    }
}

/// Pod spec defaults, as upstream's defaulting sets them.
fn default_pod_spec(spec: &mut Value) {
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
pub fn default_containers(spec: &mut Value, lists: &[&str]) {
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

/// upstream's QoS class from container requests and limits.
fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let has = |c: &Value, k: &str| c["resources"][k].as_object().is_some_and(|m| !m.is_empty());
    if containers
        .iter()
        .all(|c| !has(c, "requests") && !has(c, "limits"))
    {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        let limits = &c["resources"]["limits"];
        let requests = &c["resources"]["requests"];
        ["cpu", "memory"]
            .iter()
            .all(|k| !limits[k].is_null() && (requests[k].is_null() || requests[k] == limits[k]))
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// What a create adds besides the defaults (upstream's `PrepareForCreate`): a Job's
/// generated selector, a namespace's finalizer and phase, a pod's and a Service's first status.
pub fn prepare_for_create(r: &Resource, obj: &mut Value) {
    match (r.group, r.plural) {
        ("batch", "jobs") => job_selector(obj),
        ("", "namespaces") => {
            // Every namespace gets the namespace controller's finalizer.
            set_default(obj, "spec", json!({}));
            set_default(&mut obj["spec"], "finalizers", json!([]));
            if let Some(f) = obj["spec"]["finalizers"].as_array_mut()
                && !f.contains(&json!("kubernetes"))
            {
                f.push(json!("kubernetes"));
            }
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "pods") => {
            let qos = qos_class(&obj["spec"]);
            set_default(obj, "status", json!({}));
            set_default(&mut obj["status"], "phase", json!("Pending"));
            set_default(&mut obj["status"], "qosClass", json!(qos));
        }
        ("", "services") => set_default(obj, "status", json!({"loadBalancer": {}})),
        _ => {}
    }
}

/// Fills in defaults, as upstream's decoder does on every write (create, update, patch): an
/// unchanged object sent back (`kubectl replace`) reads as the stored one.
pub fn defaults(r: &Resource, obj: &mut Value) {
    defaults::apply(r, obj);
    if (r.group, r.plural) == ("", "replicationcontrollers") {
        rc_selector(obj);
    }
    match (r.group, r.plural) {
        ("", "secrets") => {
            set_default(obj, "type", json!("Opaque"));
            merge_string_data(obj);
        }
        ("", "pods") => {
            set_default(obj, "spec", json!({}));
            default_pod_spec(&mut obj["spec"]);
        }
        ("", "services") => {
            set_default(obj, "spec", json!({}));
            let spec = &mut obj["spec"];
            set_default(spec, "type", json!("ClusterIP"));
            set_default(spec, "sessionAffinity", json!("None"));
            for p in spec
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                set_default(p, "protocol", json!("TCP"));
                let port = p.get("port").cloned().unwrap_or(Value::Null);
                set_default(p, "targetPort", port);
            }
        }
        ("apps", "deployments") => {
            set_default(obj, "spec", json!({}));
            let spec = &mut obj["spec"];
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            set_default(
                spec,
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            );
            if let Some(t) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
                default_pod_spec(t);
            }
        }
        ("batch", "cronjobs") => {
            if let Some(t) = obj.pointer_mut("/spec/jobTemplate/spec/template/spec") {
                default_pod_spec(t);
            }
        }
        ("apps", "replicasets" | "statefulsets" | "daemonsets")
        | ("", "replicationcontrollers" | "podtemplates")
        | ("batch", "jobs") => {
            let path = if obj.pointer("/spec/template/spec").is_some() {
                "/spec/template/spec"
            } else {
                "/template/spec"
            };
            if let Some(t) = obj.pointer_mut(path) {
                default_pod_spec(t);
            }
        }
        _ => {}
    }
}

/// A Secret's `stringData` is written into `data` (base64, winning over a `data` key of the
/// same name) and dropped, as upstream's conversion does.
fn merge_string_data(obj: &mut Value) {
    use base64::Engine as _;
    let Some(strings) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    let Some(strings) = strings.as_object() else {
        return;
    };
    if !obj["data"].is_object() {
        obj["data"] = json!({});
    }
    for (k, v) in strings {
        let text = v.as_str().unwrap_or_default();
        obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

/// A ReplicationController without a selector selects its template's labels, and takes them
/// as its own labels when it has none (upstream's `SetDefaults_ReplicationController`).
fn rc_selector(obj: &mut Value) {
    let labels = obj.pointer("/spec/template/metadata/labels").cloned();
    let Some(labels) = labels.filter(|l| l.as_object().is_some_and(|m| !m.is_empty())) else {
        return;
    };
    let empty = |v: Option<&Value>| v.and_then(Value::as_object).is_none_or(|m| m.is_empty());
    if empty(obj.pointer("/spec/selector")) {
        obj["spec"]["selector"] = labels.clone();
    }
    if empty(obj.pointer("/metadata/labels")) && obj["metadata"].is_object() {
        obj["metadata"]["labels"] = labels;
    }
}

/// Unless a Job asks for a manual selector, labels its pod template with its name and uid
/// (`batch.kubernetes.io/job-name`, `batch.kubernetes.io/controller-uid`, and the legacy
/// `job-name`, `controller-uid`) and selects its pods by the uid, as upstream's Job strategy
/// does on create. Labels the user set are kept.
fn job_selector(obj: &mut Value) {
    if obj["spec"]["manualSelector"] == json!(true) || !obj["spec"].is_object() {
        return;
    }
    let name = obj["metadata"]["name"].clone();
    let uid = obj["metadata"]["uid"].clone();
    let spec = &mut obj["spec"];
    set_default(spec, "template", json!({}));
    set_default(&mut spec["template"], "metadata", json!({}));
    let meta = &mut spec["template"]["metadata"];
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    let labels = &mut meta["labels"];
    for (key, value) in [
        ("job-name", &name),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("batch.kubernetes.io/controller-uid", &uid),
    ] {
        set_default(labels, key, value.clone());
    }
    set_default(spec, "selector", json!({}));
    let selector = &mut spec["selector"];
    if !selector["matchLabels"].is_object() {
        selector["matchLabels"] = json!({});
    }
    set_default(
        &mut selector["matchLabels"],
        "batch.kubernetes.io/controller-uid",
        uid,
    );
}

fn pod_spec_errors(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
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

/// Checks a workload's selector against its pod template's labels.
fn selector_errors(kind_path: &Value, errs: &mut Vec<FieldError>) {
    let spec = &kind_path["spec"];
    let Some(selector) = spec.get("selector") else {
        errs.push(FieldError::required("spec.selector", ""));
        return;
    };
    let labels = &spec["template"]["metadata"]["labels"];
    match LabelSelector::from_object(selector) {
        Ok(sel) if sel.is_empty() => errs.push(FieldError::invalid(
            "spec.selector",
            selector,
            "empty selector is invalid for deployment",
        )),
        Ok(sel) if !sel.matches(Some(labels)) => errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            labels,
            "`selector` does not match template `labels`",
        )),
        Ok(_) => {}
        Err(e) => errs.push(FieldError::invalid("spec.selector", selector, e)),
    }
}

/// Validates an object about to be stored.
pub fn validate(r: &Resource, obj: &Value) -> Vec<FieldError> {
    let mut errs = object_meta(&obj["metadata"], r.namespaced, name_rule(r));
    match (r.group, r.plural) {
        ("", "pods") => pod_spec_errors(&obj["spec"], "spec", &mut errs),
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets") => {
            selector_errors(obj, &mut errs);
            if let Some(replicas) = obj["spec"]
                .get("replicas")
                .and_then(Value::as_i64)
                .filter(|n| *n < 0)
            {
                errs.push(FieldError::invalid(
                    "spec.replicas",
                    &json!(replicas),
                    "must be greater than or equal to 0",
                ));
            }
            pod_spec_errors(
                &obj["spec"]["template"]["spec"],
                "spec.template.spec",
                &mut errs,
            );
        }
        ("", "services") => errs.extend(service::validate(obj)),
        ("certificates.k8s.io", "certificatesigningrequests") => errs.extend(csr::validate(obj)),
        ("", "configmaps") => {
            config_key_errors(&obj["data"], "data", &mut errs);
            config_key_errors(&obj["binaryData"], "binaryData", &mut errs);
        }
        ("", "secrets") => config_key_errors(&obj["data"], "data", &mut errs),
        _ => {}
    }
    errs
}

/// The keys of a ConfigMap's or Secret's `data` (or `binaryData`) must be config keys.
fn config_key_errors(data: &Value, field: &str, errs: &mut Vec<FieldError>) {
    for key in data.as_object().into_iter().flat_map(|m| m.keys()) {
        for e in api::validation::config_key(key) {
            errs.push(FieldError::invalid(
                format!("{field}[{key}]"),
                &json!(key),
                e,
            ));
        }
    }
}

/// Checks what may not change on update.
///
/// `sub` is the subresource the update came through, if any.
pub fn validate_update(
    r: &Resource,
    old: &Value,
    new: &Value,
    sub: Option<&str>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let immutable = |o: &Value, n: &Value, path: &str, errs: &mut Vec<FieldError>| {
        let (a, b) = (o.pointer(path), n.pointer(path));
        if a != b {
            let field = path.trim_start_matches('/').replace('/', ".");
            errs.push(FieldError::invalid(
                field,
                b.unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
    };
    if old["immutable"] == json!(true) && matches!(r.plural, "configmaps" | "secrets") {
        for field in ["/data", "/binaryData", "/stringData", "/immutable"] {
            if old.pointer(field) != new.pointer(field) {
                errs.push(FieldError::forbidden(
                    field.trim_start_matches('/'),
                    "field is immutable when `immutable` is set",
                ));
            }
        }
    }
    match (r.group, r.plural) {
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
        | ("batch", "jobs") => immutable(old, new, "/spec/selector", &mut errs),
        ("", "services")
            if old["spec"]["clusterIP"]
                .as_str()
                .is_some_and(|ip| !ip.is_empty())
                && !service::cluster_ip_may_change(old, new) =>
        {
            immutable(old, new, "/spec/clusterIP", &mut errs)
        }
        ("", "pods") => {
            // Only images, tolerations (additions) and activeDeadlineSeconds may change;
            // ephemeral containers have rules of their own.
            errs.extend(ephemeral::validate_update(old, new));
            let mut a = old["spec"].clone();
            let mut b = new["spec"].clone();
            for s in [&mut a, &mut b] {
                for list in ["containers", "initContainers"] {
                    for c in s
                        .get_mut(list)
                        .and_then(Value::as_array_mut)
                        .into_iter()
                        .flatten()
                    {
                        c.as_object_mut().map(|m| m.remove("image"));
                    }
                }
                if let Some(m) = s.as_object_mut() {
                    m.remove("tolerations");
                    m.remove("activeDeadlineSeconds");
                    m.remove("ephemeralContainers");
                }
            }
            if a != b {
                errs.push(FieldError::forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                ));
            }
        }
        ("", "namespaces") => errs.extend(namespace_finalizers(new)),
        ("scheduling.k8s.io", "priorityclasses") => {
            if old["value"] != new["value"] {
                errs.push(FieldError::forbidden(
                    "value",
                    "may not be changed in an update.",
                ));
            }
            immutable(old, new, "/preemptionPolicy", &mut errs);
        }
        // A node's pod CIDRs go from none to some, and then stay.
        ("", "nodes")
            if old["spec"]["podCIDRs"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
                && old["spec"]["podCIDRs"] != new["spec"]["podCIDRs"] =>
        {
            errs.push(FieldError::forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            ))
        }
        ("certificates.k8s.io", "certificatesigningrequests") => {
            errs.extend(csr::validate_update(old, new, sub == Some("approval")))
        }
        _ => {}
    }
    errs
}

/// A namespace's `spec.finalizers`: standard names, or qualified ones with a domain.
fn namespace_finalizers(ns: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let finalizers = ns["spec"]["finalizers"].as_array().cloned();
    for (i, f) in finalizers.into_iter().flatten().enumerate() {
        let field = format!("spec.finalizers[{i}]");
        let name = f.as_str().unwrap_or("");
        for msg in api::validation::qualified_name(name) {
            errs.push(FieldError::invalid(&field, &f, msg));
        }
        if !name.contains('/') && !["kubernetes", "orphan", "foregroundDeletion"].contains(&name) {
            errs.push(FieldError::invalid(
                &field,
                &f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::resources::find;

    /// What a create applies: the defaults, then what only a create adds.
    fn on_create(r: &Resource, obj: &mut Value) {
        defaults(r, obj);
        prepare_for_create(r, obj);
    }

    #[test]
    fn every_write_gets_defaults_that_need_no_create() {
        let rcs = find("", "v1", "replicationcontrollers").unwrap();
        let mut rc = json!({"metadata": {"name": "rc"}, "spec": {"template": {
            "metadata": {"labels": {"app": "a"}}, "spec": {"containers": []}}}});
        defaults(rcs, &mut rc);
        assert_eq!(rc["spec"]["selector"], json!({"app": "a"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "a"}));
        let secrets = find("", "v1", "secrets").unwrap();
        let mut secret = json!({"data": {"a": "b2xk"}, "stringData": {"a": "new", "b": "x"}});
        defaults(secrets, &mut secret);
        assert_eq!(secret["data"], json!({"a": "bmV3", "b": "eA=="}));
        assert!(secret.get("stringData").is_none());
        let pods = find("", "v1", "pods").unwrap();
        let mut pod = json!({"spec": {"containers": [{"name": "c", "env": [
            {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
            "volumes": [{"name": "v"}, {"name": "d", "downwardAPI": {"items": [
                {"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}});
        defaults(pods, &mut pod);
        let spec = &pod["spec"];
        assert_eq!(
            spec["containers"][0]["env"][0]["valueFrom"]["fieldRef"]["apiVersion"],
            "v1"
        );
        assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(
            spec["volumes"][1]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"],
            "v1"
        );
        // Status is a create's business, not every write's.
        assert!(pod.get("status").is_none());
    }

    #[test]
    fn jobs_get_a_selector_by_uid_unless_manual() {
        let jobs = find("batch", "v1", "jobs").unwrap();
        let mut job = json!({"metadata": {"name": "pi", "uid": "u1"}, "spec": {
            "template": {"metadata": {"labels": {"app": "pi"}}, "spec": {"containers": []}}}});
        on_create(jobs, &mut job);
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}})
        );
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"],
            json!({"app": "pi", "job-name": "pi", "batch.kubernetes.io/job-name": "pi",
                "controller-uid": "u1", "batch.kubernetes.io/controller-uid": "u1"})
        );
        let mut manual = json!({"metadata": {"name": "m", "uid": "u2"}, "spec": {
            "manualSelector": true, "selector": {"matchLabels": {"app": "m"}},
            "backoffLimitPerIndex": 1, "template": {"metadata": {"labels": {"app": "m"}}}}});
        on_create(jobs, &mut manual);
        assert_eq!(
            manual["spec"]["selector"],
            json!({"matchLabels": {"app": "m"}})
        );
        assert_eq!(
            manual["spec"]["template"]["metadata"]["labels"],
            json!({"app": "m"})
        );
        assert_eq!(manual["spec"]["backoffLimit"], json!(i32::MAX));
    }

    #[test]
    fn deployment_selector_must_match_labels() {
        let d = find("apps", "v1", "deployments").unwrap();
        let obj = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        let errs = validate(d, &obj);
        let status = api::Status::invalid(d, "web", &errs);
        assert_eq!(
            status.message,
            "The Deployment \"web\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`"
        );
    }

    #[test]
    fn pods_get_upstream_defaults_and_checks() {
        let p = find("", "v1", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}, {"name": "d", "image": "busybox"}]}});
        on_create(p, &mut pod);
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(
            pod["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(pod["spec"]["containers"][1]["imagePullPolicy"], "Always");
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
        assert!(validate(p, &pod).is_empty());
        let quantities = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"limits": {"cpu": "1", "memory": "64Mx"}, "requests": {"cpu": "2"}}}]}});
        let text: Vec<String> = validate(p, &quantities)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(text.contains(&"spec.containers[0].resources.limits[memory]: Invalid value: \"64Mx\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'".to_string()), "{text:?}");
        assert!(text.contains(&"spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1".to_string()), "{text:?}");
        let bad = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c"}]}});
        assert_eq!(
            validate(p, &bad)[0].to_string(),
            "spec.containers[0].image: Required value"
        );
        let dns = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
            "dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.x"]},
            "containers": [{"name": "c", "image": "i"}]}});
        let text: Vec<String> = validate(p, &dns).iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            ["spec.dnsConfig.nameservers[0]: Invalid value: \"1.1.1.x\": must be valid IP address"]
        );
        let none = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
            "dnsPolicy": "None", "containers": [{"name": "c", "image": "i"}]}});
        assert_eq!(
            validate(p, &none)[0].to_string(),
            "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"
        );
        let sysctls = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
            "securityContext": {"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"},
                {"name": "foo-", "value": "1"}, {"name": "bar..", "value": "1"},
                {"name": "kernel.shm_rmid_forced", "value": "0"}]},
            "containers": [{"name": "c", "image": "i"}]}});
        let text: Vec<String> = validate(p, &sysctls)
            .iter()
            .map(ToString::to_string)
            .collect();
        let pattern = "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$";
        assert_eq!(
            text,
            [
                format!("spec.securityContext.sysctls[1].name: Invalid value: \"foo-\": {pattern}"),
                format!(
                    "spec.securityContext.sysctls[2].name: Invalid value: \"bar..\": {pattern}"
                ),
                "spec.securityContext.sysctls[3].name: Duplicate value: \"kernel.shm_rmid_forced\""
                    .to_string(),
            ]
        );
        let seccomp = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
            "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "../x.json"}},
            "containers": [{"name": "c", "image": "i", "securityContext": {"seccompProfile": {"type": "Default"}}}]}});
        let text: Vec<String> = validate(p, &seccomp)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            [
                "spec.securityContext.seccompProfile.localhostProfile: Invalid value: \"../x.json\": must not contain '..'",
                "spec.containers[0].securityContext.seccompProfile.type: Unsupported value: \"Default\": supported values: \"Localhost\", \"RuntimeDefault\", \"Unconfined\"",
            ]
        );
        let mut changed = pod.clone();
        changed["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert!(validate_update(p, &pod, &changed, None).is_empty());
        changed["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(validate_update(p, &pod, &changed, None).len(), 1);
    }

    #[test]
    fn a_node_keeps_its_pod_cidr_once_given() {
        let nodes = find("", "v1", "nodes").unwrap();
        let bare = json!({"metadata": {"name": "n"}, "spec": {}});
        let given = json!({"metadata": {"name": "n"},
            "spec": {"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"]}});
        assert!(validate_update(nodes, &bare, &given, None).is_empty());
        let mut other = given.clone();
        other["spec"] = json!({"podCIDR": "10.42.2.0/24", "podCIDRs": ["10.42.2.0/24"]});
        let errs = validate_update(nodes, &given, &other, None);
        assert_eq!(errs.len(), 1);
        assert!(validate_update(nodes, &given, &given, None).is_empty());
    }
}
