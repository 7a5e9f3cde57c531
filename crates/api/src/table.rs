//! Server-side printing: the columns `kubectl get` shows for each resource, computed from the
//! object as upstream's printers compute them, and the `Table` object that carries them.
//!
//! Upstream's API server prints every row wide (all columns, whatever their priority); kubectl
//! hides the priority-1 columns unless asked for `-o wide`. Resources upstream has no printer
//! for (limit ranges, roles, cluster roles) get its default table: `Name` and `Created At`.
//! Where upstream's defaulting always fills a field that the printer reads (a CronJob's
//! `suspend`, a PersistentVolume's `volumeMode`, ...), the API server's defaulting fills it
//! too; an object stored without it still prints as the default would.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::resources::Resource;
use crate::selector::LabelSelector;

/// One column of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The header, as kubectl upper-cases it.
    pub name: &'static str,
    /// `string`, `integer`, `boolean` or `date`.
    pub kind: &'static str,
    /// 0 for the default view, 1 for `-o wide` only.
    pub priority: u8,
}

const fn col(name: &'static str, kind: &'static str, priority: u8) -> Column {
    Column {
        name,
        kind,
        priority,
    }
}

const NAME: Column = col("Name", "string", 0);
const AGE: Column = col("Age", "string", 0);

/// The columns of a resource's table.
#[expect(
    clippy::too_many_lines,
    reason = "written before the 150-line limit; to be split along its steps (issue 15)"
)]
pub fn columns(r: &Resource) -> Vec<Column> {
    let s = |n| col(n, "string", 0);
    let i = |n| col(n, "integer", 0);
    let b = |n| col(n, "boolean", 0);
    let wide = |n| col(n, "string", 1);
    let template = [wide("Containers"), wide("Images"), wide("Selector")];
    let with = |head: &[Column], tail: &[Column]| [head, tail].concat();
    match (r.group, r.plural) {
        ("", "namespaces") => vec![NAME, s("Status"), AGE],
        ("", "pods") => vec![
            NAME,
            s("Ready"),
            s("Status"),
            s("Restarts"),
            AGE,
            wide("IP"),
            wide("Node"),
            wide("Nominated Node"),
            wide("Readiness Gates"),
        ],
        ("", "podtemplates") => vec![NAME, s("Containers"), s("Images"), s("Pod Labels")],
        ("", "services") => vec![
            NAME,
            s("Type"),
            s("Cluster-IP"),
            s("External-IP"),
            s("Port(s)"),
            AGE,
            wide("Selector"),
        ],
        ("", "configmaps") => vec![NAME, s("Data"), AGE],
        ("", "secrets") => vec![NAME, s("Type"), s("Data"), AGE],
        ("", "serviceaccounts") => vec![NAME, s("Secrets"), AGE],
        ("", "endpoints") => vec![NAME, s("Endpoints"), AGE],
        ("", "nodes") => vec![
            NAME,
            s("Status"),
            s("Roles"),
            AGE,
            s("Version"),
            wide("Internal-IP"),
            wide("External-IP"),
            wide("OS-Image"),
            wide("Kernel-Version"),
            wide("Container-Runtime"),
        ],
        ("", "events") => vec![
            s("Last Seen"),
            s("Type"),
            s("Reason"),
            s("Object"),
            wide("Subobject"),
            wide("Source"),
            s("Message"),
            wide("First Seen"),
            wide("Count"),
            wide("Name"),
        ],
        ("", "persistentvolumes") => vec![
            NAME,
            s("Capacity"),
            s("Access Modes"),
            s("Reclaim Policy"),
            s("Status"),
            s("Claim"),
            s("StorageClass"),
            s("VolumeAttributesClass"),
            s("Reason"),
            AGE,
            wide("VolumeMode"),
        ],
        ("", "persistentvolumeclaims") => vec![
            NAME,
            s("Status"),
            s("Volume"),
            s("Capacity"),
            s("Access Modes"),
            s("StorageClass"),
            s("VolumeAttributesClass"),
            AGE,
            wide("VolumeMode"),
        ],
        ("", "resourcequotas") => vec![NAME, s("Request"), s("Limit"), AGE],
        ("apps", "deployments") => with(
            &[NAME, s("Ready"), s("Up-to-date"), s("Available"), AGE],
            &template,
        ),
        ("apps", "replicasets") | ("", "replicationcontrollers") => with(
            &[NAME, i("Desired"), i("Current"), i("Ready"), AGE],
            &template,
        ),
        ("apps", "statefulsets") => vec![NAME, s("Ready"), AGE, wide("Containers"), wide("Images")],
        ("apps", "daemonsets") => with(
            &[
                NAME,
                i("Desired"),
                i("Current"),
                i("Ready"),
                i("Up-to-date"),
                i("Available"),
                s("Node Selector"),
                AGE,
            ],
            &template,
        ),
        ("apps", "controllerrevisions") => vec![NAME, s("Controller"), s("Revision"), AGE],
        ("batch", "jobs") => with(
            &[NAME, s("Status"), s("Completions"), s("Duration"), AGE],
            &template,
        ),
        ("batch", "cronjobs") => with(
            &[
                NAME,
                s("Schedule"),
                s("Timezone"),
                b("Suspend"),
                i("Active"),
                s("Last Schedule"),
                AGE,
            ],
            &template,
        ),
        ("autoscaling", "horizontalpodautoscalers") => vec![
            NAME,
            s("Reference"),
            s("Targets"),
            s("MinPods"),
            s("MaxPods"),
            s("Replicas"),
            AGE,
        ],
        ("policy", "poddisruptionbudgets") => vec![
            NAME,
            s("Min Available"),
            s("Max Unavailable"),
            i("Allowed Disruptions"),
            AGE,
        ],
        ("networking.k8s.io", "ingresses") => {
            vec![NAME, s("Class"), s("Hosts"), s("Address"), s("Ports"), AGE]
        }
        ("networking.k8s.io", "ingressclasses") => {
            vec![NAME, s("Controller"), s("Parameters"), AGE]
        }
        ("networking.k8s.io", "networkpolicies") => vec![NAME, s("Pod-Selector"), AGE],
        ("storage.k8s.io", "storageclasses") => vec![
            NAME,
            s("Provisioner"),
            s("ReclaimPolicy"),
            s("VolumeBindingMode"),
            s("AllowVolumeExpansion"),
            AGE,
        ],
        ("storage.k8s.io", "csidrivers") => vec![
            NAME,
            b("AttachRequired"),
            b("PodInfoOnMount"),
            b("StorageCapacity"),
            s("TokenRequests"),
            b("RequiresRepublish"),
            s("Modes"),
            AGE,
        ],
        ("storage.k8s.io", "csinodes") => vec![NAME, i("Drivers"), AGE],
        ("storage.k8s.io", "volumeattachments") => {
            vec![NAME, s("Attacher"), s("PV"), s("Node"), b("Attached"), AGE]
        }
        ("scheduling.k8s.io", "priorityclasses") => vec![
            NAME,
            i("Value"),
            b("Global-Default"),
            AGE,
            s("PreemptionPolicy"),
        ],
        ("node.k8s.io", "runtimeclasses") => vec![NAME, s("Handler"), AGE],
        ("discovery.k8s.io", "endpointslices") => {
            vec![NAME, s("AddressType"), s("Ports"), s("Endpoints"), AGE]
        }
        ("certificates.k8s.io", "certificatesigningrequests") => vec![
            NAME,
            AGE,
            s("SignerName"),
            s("Requestor"),
            s("RequestedDuration"),
            s("Condition"),
        ],
        ("coordination.k8s.io", "leases") => vec![NAME, s("Holder"), AGE],
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            vec![
                NAME,
                s("Role"),
                AGE,
                wide("Users"),
                wide("Groups"),
                wide("ServiceAccounts"),
            ]
        }
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations" | "validatingwebhookconfigurations",
        ) => vec![NAME, i("Webhooks"), AGE],
        _ => vec![NAME, col("Created At", "date", 0)],
    }
}

/// The value at a dotted path, if it is there and not null.
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(v, |v, k| v.get(k))
        .filter(|v| !v.is_null())
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

fn int_at(v: &Value, path: &str) -> i64 {
    at(v, path).and_then(Value::as_i64).unwrap_or(0)
}

fn list_at<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn time_at(v: &Value, path: &str) -> Option<Timestamp> {
    str_at(v, path).parse().ok()
}

/// A string field, or `default` when it is absent or empty.
fn str_or<'a>(v: &'a Value, path: &str, default: &'a str) -> &'a str {
    match str_at(v, path) {
        "" => default,
        s => s,
    }
}

fn or_none(s: &str) -> Value {
    Value::from(if s.is_empty() { "<none>" } else { s })
}

/// upstream's `HumanDuration`: `45s`, `5m10s`, `3h`, `2d5h`, `1y20d`.
pub fn human_duration(d: SignedDuration) -> String {
    let secs = d.as_secs();
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    let (m, h) = (secs / 60, secs / 3600);
    let (d_, y) = (h / 24, h / (24 * 365));
    let two = |big: i64, unit: &str, small: i64, sunit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{sunit}")
        }
    };
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        two(m, "m", secs % 60, "s")
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        two(h, "h", m % 60, "m")
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        two(d_, "d", h % 24, "h")
    } else if h < 24 * 365 * 2 {
        format!("{d_}d")
    } else if h < 24 * 365 * 8 {
        two(y, "y", d_ % 365, "d")
    } else {
        format!("{y}y")
    }
}

/// Time since `t`, as the AGE column prints it; `<unknown>` without a time.
fn ago(t: Option<Timestamp>, now: Timestamp) -> String {
    t.map_or_else(
        || "<unknown>".into(),
        |t| human_duration(now.duration_since(t)),
    )
}

/// Time since an RFC 3339 timestamp field.
fn since(v: &Value, path: &str, now: Timestamp) -> Value {
    Value::from(ago(time_at(v, path), now))
}

/// Whether the first condition of type `ty` has status `True`.
fn condition_true(conditions: &[Value], ty: &str) -> bool {
    conditions
        .iter()
        .find(|c| str_at(c, "type") == ty)
        .is_some_and(|c| str_at(c, "status") == "True")
}

/// A selector (object or plain map) in its query form, or "" when absent or malformed.
fn selector_string(sel: Option<&Value>) -> String {
    sel.and_then(|s| LabelSelector::from_any(s).ok())
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// A selector or label map as upstream's printers show it: `a=b,c=d`, `<none>` when empty.
fn selector_cell(sel: Option<&Value>) -> Value {
    or_none(&selector_string(sel))
}

/// A field that is a string or a bare number, as text: quantities (`500m`, `2`) and
/// int-or-string fields (`1`, `50%`).
fn string_or_number(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Up to `max` items, then `+ N more...`; `<unset>` when there are none.
fn list_with_more(items: Vec<String>, max: usize) -> String {
    let count = items.len();
    let shown = items[..count.min(max)].join(",");
    if count > max {
        format!("{shown} + {} more...", count - max)
    } else if shown.is_empty() {
        "<unset>".into()
    } else {
        shown
    }
}

fn containers_and_images(pod_spec: &Value) -> (Value, Value) {
    let cs = list_at(pod_spec, "containers");
    let names: Vec<&str> = cs.iter().map(|c| str_at(c, "name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| str_at(c, "image")).collect();
    (Value::from(names.join(",")), Value::from(images.join(",")))
}

fn deleting(obj: &Value) -> bool {
    at(obj, "metadata.deletionTimestamp").is_some()
}

/// The Ready, Status and Restarts cells of a pod, following upstream's reading of container
/// states: init containers first, then the app containers (the first one's state wins).
fn pod_state(pod: &Value, now: Timestamp) -> (String, String, String) {
    let status = &pod["status"];
    let inits = list_at(pod, "spec.initContainers");
    let sidecar = |name: &str| {
        inits
            .iter()
            .any(|c| str_at(c, "name") == name && str_at(c, "restartPolicy") == "Always")
    };
    let total = list_at(pod, "spec.containers").len()
        + inits
            .iter()
            .filter(|c| str_at(c, "restartPolicy") == "Always")
            .count();
    let conditions = list_at(status, "conditions");
    let phase = str_at(status, "phase");
    let mut reason = str_or(status, "reason", phase).to_string();
    if conditions
        .iter()
        .any(|c| str_at(c, "type") == "PodScheduled" && str_at(c, "reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }
    let finished = |c: &Value| time_at(c, "lastState.terminated.finishedAt");
    let (mut ready, mut restarts, mut last_restart) = (0, 0, None);
    let (mut sidecar_restarts, mut last_sidecar_restart) = (0, None);
    let mut initializing = false;
    for (i, c) in list_at(status, "initContainerStatuses").iter().enumerate() {
        restarts += int_at(c, "restartCount");
        last_restart = last_restart.max(finished(c));
        let is_sidecar = sidecar(str_at(c, "name"));
        if is_sidecar {
            sidecar_restarts += int_at(c, "restartCount");
            last_sidecar_restart = last_sidecar_restart.max(finished(c));
        }
        let terminated = at(c, "state.terminated");
        let waiting = str_at(c, "state.waiting.reason");
        if terminated.is_some_and(|t| int_at(t, "exitCode") == 0) {
            continue;
        }
        if is_sidecar && c["started"].as_bool() == Some(true) {
            if c["ready"].as_bool() == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = match terminated {
            Some(t) => match str_at(t, "reason") {
                "" if int_at(t, "signal") != 0 => format!("Init:Signal:{}", int_at(t, "signal")),
                "" => format!("Init:ExitCode:{}", int_at(t, "exitCode")),
                r => format!("Init:{r}"),
            },
            None if !waiting.is_empty() && waiting != "PodInitializing" => {
                format!("Init:{waiting}")
            }
            None => format!("Init:{i}/{}", inits.len()),
        };
        initializing = true;
        break;
    }
    if !initializing || condition_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let (mut running, mut error_reason) = (false, String::new());
        for c in list_at(status, "containerStatuses").iter().rev() {
            restarts += int_at(c, "restartCount");
            last_restart = last_restart.max(finished(c));
            let waiting = str_at(c, "state.waiting.reason");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = at(c, "state.terminated") {
                reason = match str_at(t, "reason") {
                    "" if int_at(t, "signal") != 0 => format!("Signal:{}", int_at(t, "signal")),
                    "" => format!("ExitCode:{}", int_at(t, "exitCode")),
                    r => r.to_string(),
                };
                if int_at(t, "exitCode") != 0 {
                    error_reason = reason.clone();
                }
            } else if c["ready"].as_bool() == Some(true) && at(c, "state.running").is_some() {
                running = true;
                ready += 1;
            }
        }
        if reason == "Completed" {
            if running && condition_true(conditions, "Ready") {
                reason = "Running".into();
            } else if !error_reason.is_empty() {
                reason = error_reason;
            } else if running {
                reason = "NotReady".into();
            }
        }
    }
    if deleting(pod) && str_at(status, "reason") == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting(pod) && !matches!(phase, "Succeeded" | "Failed") {
        reason = "Terminating".into();
    }
    let restarts = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", ago(Some(t), now)),
        _ => restarts.to_string(),
    };
    (format!("{ready}/{total}"), reason, restarts)
}

fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let (ready, status, restarts) = pod_state(pod, now);
    let ip = list_at(pod, "status.podIPs")
        .first()
        .map_or_else(|| str_at(pod, "status.podIP"), |ip| str_at(ip, "ip"));
    let gates = list_at(pod, "spec.readinessGates");
    let gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = list_at(pod, "status.conditions");
        let met = gates
            .iter()
            .filter(|g| condition_true(conditions, str_at(g, "conditionType")))
            .count();
        format!("{met}/{}", gates.len())
    };
    vec![
        Value::from(str_at(pod, "metadata.name")),
        Value::from(ready),
        Value::from(status),
        Value::from(restarts),
        since(pod, "metadata.creationTimestamp", now),
        or_none(ip),
        or_none(str_at(pod, "spec.nodeName")),
        or_none(str_at(pod, "status.nominatedNodeName")),
        Value::from(gates),
    ]
}

/// `host:port`, with IPv6 hosts in brackets.
fn host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// An Endpoints object's addresses: `ip:port` for each port of each subset, the first three
/// and a count of the rest; `<none>` without subsets.
fn endpoints_string(eps: &Value) -> String {
    let subsets = list_at(eps, "subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut all = Vec::new();
    for subset in subsets {
        let addresses = list_at(subset, "addresses");
        let ports = list_at(subset, "ports");
        if ports.is_empty() {
            all.extend(addresses.iter().map(|a| str_at(a, "ip").to_string()));
        }
        for p in ports {
            all.extend(
                addresses
                    .iter()
                    .map(|a| host_port(str_at(a, "ip"), int_at(p, "port"))),
            );
        }
    }
    let shown = all[..all.len().min(3)].join(",");
    if all.len() > 3 {
        format!("{shown} + {} more...", all.len() - 3)
    } else {
        shown
    }
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = list_at(svc, "spec.ports")
        .iter()
        .map(|p| {
            let proto = str_or(p, "protocol", "TCP");
            match int_at(p, "nodePort") {
                np if np > 0 => format!("{}:{np}/{proto}", int_at(p, "port")),
                _ => format!("{}/{proto}", int_at(p, "port")),
            }
        })
        .collect();
    ports.join(",")
}

/// Load-balancer ingress points (IPs, else hostnames), sorted and without repeats.
fn load_balancer_addresses(obj: &Value) -> Vec<&str> {
    let mut addrs: Vec<&str> = list_at(obj, "status.loadBalancer.ingress")
        .iter()
        .map(|i| str_or(i, "ip", str_at(i, "hostname")))
        .filter(|a| !a.is_empty())
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    addrs
}

fn service_external_ip(svc: &Value) -> String {
    let external: Vec<&str> = list_at(svc, "spec.externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match str_or(svc, "spec.type", "ClusterIP") {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".into(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let mut all = load_balancer_addresses(svc);
            all.extend(external);
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(svc, "spec.externalName").into(),
        _ => "<unknown>".into(),
    }
}

fn node_status(node: &Value) -> String {
    let ready = list_at(node, "status.conditions")
        .iter()
        .find(|c| str_at(c, "type") == "Ready")
        .map(|c| str_at(c, "status") == "True");
    let mut s = match ready {
        Some(true) => "Ready".to_string(),
        Some(false) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if node["spec"]["unschedulable"].as_bool() == Some(true) {
        s.push_str(",SchedulingDisabled");
    }
    s
}

fn node_roles(node: &Value) -> String {
    let mut roles: Vec<&str> = node["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(role) => Some(role),
            None if k == "kubernetes.io/role" => v.as_str(),
            None => None,
        })
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort_unstable();
    roles.dedup();
    roles.join(",")
}

/// A Job's state, by its conditions in upstream's order of precedence.
fn job_status(job: &Value) -> &'static str {
    let conditions = list_at(job, "status.conditions");
    let has = |ty| condition_true(conditions, ty);
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if deleting(job) {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

/// Succeeded pods out of the completions asked for: `1/3`, `0/1`, or `0/1 of 4` for a work
/// queue (no completions) with parallelism.
fn job_completions(job: &Value) -> String {
    let succeeded = int_at(job, "status.succeeded");
    match at(job, "spec.completions").and_then(Value::as_i64) {
        Some(n) => format!("{succeeded}/{n}"),
        None => match int_at(job, "spec.parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    }
}

/// How long a Job ran (or has run so far); empty before it started.
fn job_duration(job: &Value, now: Timestamp) -> String {
    match (
        time_at(job, "status.startTime"),
        time_at(job, "status.completionTime"),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.duration_since(start)),
        (Some(start), Some(end)) => human_duration(end.duration_since(start)),
    }
}

/// An HPA's metrics, each as `current/target` (`cpu: 45%/80%`, `<unknown>` before the first
/// measurement), the first two and a count of the rest.
fn hpa_targets(hpa: &Value) -> String {
    // Without metrics, upstream's defaulting scales on 80% CPU.
    let cpu = json!({"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 80}}});
    let specs = match list_at(hpa, "spec.metrics") {
        [] => std::slice::from_ref(&cpu),
        specs => specs,
    };
    let statuses = list_at(hpa, "status.currentMetrics");
    // A quantity as upstream's `Quantity.String` prints it, `<nil>` where there is none.
    let q = |v: Option<&Value>| string_or_number(v).unwrap_or_else(|| "<nil>".into());
    let unknown = || "<unknown>".to_string();
    let mut list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let status_of = |key: &str| statuses.get(i).and_then(|s| at(s, key));
            match str_at(spec, "type") {
                ty @ ("External" | "Object") => {
                    let key = if ty == "External" {
                        "external"
                    } else {
                        "object"
                    };
                    let target = &spec[key]["target"];
                    let status = status_of(key);
                    match at(target, "averageValue") {
                        Some(avg) => {
                            let current = status
                                .and_then(|s| at(s, "current.averageValue"))
                                .map_or_else(unknown, |v| q(Some(v)));
                            format!("{current}/{} (avg)", q(Some(avg)))
                        }
                        None => {
                            let current =
                                status.map_or_else(unknown, |s| q(at(s, "current.value")));
                            format!("{current}/{}", q(at(target, "value")))
                        }
                    }
                }
                "Pods" => {
                    let current = status_of("pods")
                        .map_or_else(unknown, |s| q(at(s, "current.averageValue")));
                    format!("{current}/{}", q(at(spec, "pods.target.averageValue")))
                }
                ty @ ("Resource" | "ContainerResource") => {
                    let key = if ty == "Resource" {
                        "resource"
                    } else {
                        "containerResource"
                    };
                    let source = &spec[key];
                    let name = str_at(source, "name");
                    let status = status_of(key);
                    match at(source, "target.averageValue") {
                        Some(avg) => {
                            let current =
                                status.map_or_else(unknown, |s| q(at(s, "current.averageValue")));
                            format!("{name}: {current}/{}", q(Some(avg)))
                        }
                        None => {
                            let percent = |v: Option<&Value>| {
                                v.and_then(Value::as_i64).map(|p| format!("{p}%"))
                            };
                            let current = status
                                .and_then(|s| percent(at(s, "current.averageUtilization")))
                                .unwrap_or_else(unknown);
                            let target = percent(at(source, "target.averageUtilization"))
                                .unwrap_or_else(|| "<auto>".into());
                            format!("{name}: {current}/{target}")
                        }
                    }
                }
                _ => "<unknown type>".into(),
            }
        })
        .collect();
    let count = list.len();
    list.truncate(2);
    let shown = list.join(", ");
    if count > 2 {
        format!("{shown} + {} more...", count - 2)
    } else {
        shown
    }
}

/// A CSR's state: `Pending`, `Approved` or `Denied` (by condition type), then `,Failed` and
/// `,Issued` (a certificate is in the status).
fn csr_condition(csr: &Value) -> String {
    let conditions = list_at(csr, "status.conditions");
    let has = |ty: &str| conditions.iter().any(|c| str_at(c, "type") == ty);
    let mut s = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        s.push_str(",Failed");
    }
    if !str_at(csr, "status.certificate").is_empty() {
        s.push_str(",Issued");
    }
    s
}

/// Access modes abbreviated, in upstream's fixed order: `RWO,ROX,RWX,RWOP`.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|x| x.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| has(m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// A volume's or claim's class: the beta annotation if set, else `spec.storageClassName`.
fn storage_class(obj: &Value) -> &str {
    obj["metadata"]["annotations"]
        .get("volume.beta.kubernetes.io/storage-class")
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_at(obj, "spec.storageClassName"))
}

/// The object's controller as `kind.group/name` in lower case, `<none>` without one.
fn controller_of(obj: &Value) -> String {
    let Some(owner) = list_at(obj, "metadata.ownerReferences")
        .iter()
        .find(|o| o["controller"].as_bool() == Some(true))
    else {
        return "<none>".into();
    };
    let group = str_at(owner, "apiVersion")
        .rsplit_once('/')
        .map_or("", |(g, _)| g);
    let name = str_at(owner, "name");
    match (str_at(owner, "kind"), group) {
        ("", "") => name.to_string(),
        (kind, "") => format!("{}/{name}", kind.to_lowercase()),
        (kind, group) => format!("{}.{}/{name}", kind.to_lowercase(), group.to_lowercase()),
    }
}

/// A quota's `resource: used/hard` pairs, requests and `limits.*` apart, sorted by resource.
fn quota_columns(quota: &Value) -> (String, String) {
    let hard = quota["status"]["hard"].as_object();
    let mut names: Vec<&String> = hard.into_iter().flat_map(|h| h.keys()).collect();
    names.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for name in names {
        let used =
            string_or_number(quota["status"]["used"].get(name)).unwrap_or_else(|| "0".into());
        let max = string_or_number(hard.and_then(|h| h.get(name))).unwrap_or_else(|| "0".into());
        let pair = format!("{name}: {used}/{max}");
        if name
            .split_once('.')
            .is_some_and(|(head, _)| head == "limits")
        {
            limits.push(pair);
        } else {
            requests.push(pair);
        }
    }
    (requests.join(", "), limits.join(", "))
}

/// An Ingress's hosts: the first three named ones and a count of the remaining rules; `*`
/// when no rule names a host.
fn ingress_hosts(ing: &Value) -> String {
    let rules = list_at(ing, "spec.rules");
    let mut hosts = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == 3 {
            more = true;
            break;
        }
        if !str_at(rule, "host").is_empty() {
            hosts.push(str_at(rule, "host"));
        }
    }
    if hosts.is_empty() {
        return "*".into();
    }
    let shown = hosts.join(",");
    if more {
        format!("{shown} + {} more...", rules.len() - 3)
    } else {
        shown
    }
}

fn binding_subjects(obj: &Value, kind: &str) -> Value {
    let names: Vec<String> = list_at(obj, "subjects")
        .iter()
        .filter(|s| str_at(s, "kind") == kind)
        .map(|s| match kind {
            "ServiceAccount" => format!("{}/{}", str_at(s, "namespace"), str_at(s, "name")),
            _ => str_at(s, "name").to_string(),
        })
        .collect();
    Value::from(names.join(", "))
}

fn event_cells(ev: &Value, now: Timestamp) -> Vec<Value> {
    let first = match time_at(ev, "firstTimestamp") {
        Some(t) => ago(Some(t), now),
        None => ago(time_at(ev, "eventTime"), now),
    };
    let mut last = match time_at(ev, "lastTimestamp") {
        Some(t) => ago(Some(t), now),
        None => first.clone(),
    };
    let mut count = int_at(ev, "count");
    if let Some(series) = at(ev, "series") {
        last = ago(time_at(series, "lastObservedTime"), now);
        count = int_at(series, "count");
    } else if count == 0 {
        count = 1;
    }
    let kind = str_at(ev, "involvedObject.kind").to_lowercase();
    let object = match str_at(ev, "involvedObject.name") {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = str_or(ev, "source.component", str_at(ev, "reportingComponent"));
    let source = match str_or(ev, "source.host", str_at(ev, "reportingInstance")) {
        "" => component.to_string(),
        instance => format!("{component}, {instance}"),
    };
    vec![
        Value::from(last),
        Value::from(str_at(ev, "type")),
        Value::from(str_at(ev, "reason")),
        Value::from(object),
        Value::from(str_at(ev, "involvedObject.fieldPath")),
        Value::from(source),
        Value::from(str_at(ev, "message").trim()),
        Value::from(first),
        Value::from(count),
        Value::from(str_at(ev, "metadata.name")),
    ]
}

/// One row's cells, in the order of [`columns`].
#[expect(
    clippy::too_many_lines,
    reason = "written before the 150-line limit; to be split along its steps (issue 15)"
)]
pub fn cells(r: &Resource, obj: &Value, now: Timestamp) -> Vec<Value> {
    let name = Value::from(str_at(obj, "metadata.name"));
    let age = since(obj, "metadata.creationTimestamp", now);
    let count = |path: &str| {
        at(obj, path)
            .and_then(Value::as_object)
            .map_or(0, |m| m.len())
    };
    let len = |path: &str| list_at(obj, path).len();
    let flag = |path: &str, default: bool| {
        Value::from(at(obj, path).and_then(Value::as_bool).unwrap_or(default))
    };
    // The Containers, Images and Selector cells of a workload.
    let template = |pod_spec: &Value, selector: Option<&Value>| {
        let (c, i) = containers_and_images(pod_spec);
        [c, i, selector_cell(selector)]
    };
    let with = |head: Vec<Value>, tail: [Value; 3]| [head, tail.to_vec()].concat();
    match (r.group, r.plural) {
        ("", "namespaces") => vec![name, Value::from(str_at(obj, "status.phase")), age],
        ("", "pods") => pod_cells(obj, now),
        ("", "podtemplates") => {
            let (c, i) = containers_and_images(&obj["template"]["spec"]);
            vec![
                name,
                c,
                i,
                selector_cell(at(obj, "template.metadata.labels")),
            ]
        }
        ("", "services") => {
            let cluster_ip = list_at(obj, "spec.clusterIPs")
                .first()
                .and_then(Value::as_str)
                .unwrap_or_else(|| str_at(obj, "spec.clusterIP"));
            vec![
                name,
                Value::from(str_or(obj, "spec.type", "ClusterIP")),
                or_none(cluster_ip),
                Value::from(service_external_ip(obj)),
                or_none(&service_ports(obj)),
                age,
                selector_cell(at(obj, "spec.selector")),
            ]
        }
        ("", "configmaps") => vec![name, Value::from(count("data") + count("binaryData")), age],
        ("", "secrets") => vec![
            name,
            Value::from(str_at(obj, "type")),
            Value::from(count("data")),
            age,
        ],
        ("", "serviceaccounts") => vec![name, Value::from(len("secrets")), age],
        ("", "endpoints") => vec![name, Value::from(endpoints_string(obj)), age],
        ("", "nodes") => {
            let addr = |t: &str| {
                list_at(obj, "status.addresses")
                    .iter()
                    .find(|a| str_at(a, "type") == t)
                    .map_or("", |a| str_at(a, "address"))
            };
            let info = |field: &str| Value::from(str_or(obj, field, "<unknown>"));
            vec![
                name,
                Value::from(node_status(obj)),
                or_none(&node_roles(obj)),
                age,
                Value::from(str_at(obj, "status.nodeInfo.kubeletVersion")),
                or_none(addr("InternalIP")),
                or_none(addr("ExternalIP")),
                info("status.nodeInfo.osImage"),
                info("status.nodeInfo.kernelVersion"),
                info("status.nodeInfo.containerRuntimeVersion"),
            ]
        }
        ("", "events") => event_cells(obj, now),
        ("", "persistentvolumes") => {
            let claim = at(obj, "spec.claimRef").map_or(String::new(), |c| {
                format!("{}/{}", str_at(c, "namespace"), str_at(c, "name"))
            });
            let phase = if deleting(obj) {
                "Terminating"
            } else {
                str_or(obj, "status.phase", "Pending")
            };
            vec![
                name,
                Value::from(
                    string_or_number(obj["spec"]["capacity"].get("storage"))
                        .unwrap_or_else(|| "0".into()),
                ),
                Value::from(access_modes(list_at(obj, "spec.accessModes"))),
                Value::from(str_or(obj, "spec.persistentVolumeReclaimPolicy", "Retain")),
                Value::from(phase),
                Value::from(claim),
                Value::from(storage_class(obj)),
                Value::from(
                    at(obj, "spec.volumeAttributesClassName")
                        .and_then(Value::as_str)
                        .unwrap_or("<unset>"),
                ),
                Value::from(str_at(obj, "status.reason")),
                age,
                Value::from(str_or(obj, "spec.volumeMode", "Filesystem")),
            ]
        }
        ("", "persistentvolumeclaims") => {
            let phase = if deleting(obj) {
                "Terminating"
            } else {
                str_or(obj, "status.phase", "Pending")
            };
            // Capacity and access modes are the bound volume's, so shown once bound.
            let bound = !str_at(obj, "spec.volumeName").is_empty();
            let (capacity, modes) = if bound {
                (
                    string_or_number(obj["status"]["capacity"].get("storage"))
                        .unwrap_or_else(|| "0".into()),
                    access_modes(list_at(obj, "status.accessModes")),
                )
            } else {
                (String::new(), String::new())
            };
            vec![
                name,
                Value::from(phase),
                Value::from(str_at(obj, "spec.volumeName")),
                Value::from(capacity),
                Value::from(modes),
                Value::from(storage_class(obj)),
                Value::from(
                    at(obj, "spec.volumeAttributesClassName")
                        .and_then(Value::as_str)
                        .unwrap_or("<unset>"),
                ),
                age,
                Value::from(str_or(obj, "spec.volumeMode", "Filesystem")),
            ]
        }
        ("", "resourcequotas") => {
            let (requests, limits) = quota_columns(obj);
            vec![name, Value::from(requests), Value::from(limits), age]
        }
        ("apps", "deployments") => {
            let (c, i) = containers_and_images(&obj["spec"]["template"]["spec"]);
            vec![
                name,
                Value::from(format!(
                    "{}/{}",
                    int_at(obj, "status.readyReplicas"),
                    int_at(obj, "spec.replicas")
                )),
                Value::from(int_at(obj, "status.updatedReplicas")),
                Value::from(int_at(obj, "status.availableReplicas")),
                age,
                c,
                i,
                Value::from(selector_string(at(obj, "spec.selector"))),
            ]
        }
        ("apps", "replicasets") | ("", "replicationcontrollers") => with(
            vec![
                name,
                Value::from(
                    at(obj, "spec.replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1),
                ),
                Value::from(int_at(obj, "status.replicas")),
                Value::from(int_at(obj, "status.readyReplicas")),
                age,
            ],
            template(&obj["spec"]["template"]["spec"], at(obj, "spec.selector")),
        ),
        ("apps", "statefulsets") => {
            let (c, i) = containers_and_images(&obj["spec"]["template"]["spec"]);
            vec![
                name,
                Value::from(format!(
                    "{}/{}",
                    int_at(obj, "status.readyReplicas"),
                    at(obj, "spec.replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                )),
                age,
                c,
                i,
            ]
        }
        ("apps", "daemonsets") => with(
            vec![
                name,
                Value::from(int_at(obj, "status.desiredNumberScheduled")),
                Value::from(int_at(obj, "status.currentNumberScheduled")),
                Value::from(int_at(obj, "status.numberReady")),
                Value::from(int_at(obj, "status.updatedNumberScheduled")),
                Value::from(int_at(obj, "status.numberAvailable")),
                selector_cell(at(obj, "spec.template.spec.nodeSelector")),
                age,
            ],
            template(&obj["spec"]["template"]["spec"], at(obj, "spec.selector")),
        ),
        ("apps", "controllerrevisions") => vec![
            name,
            Value::from(controller_of(obj)),
            Value::from(int_at(obj, "revision")),
            age,
        ],
        ("batch", "jobs") => with(
            vec![
                name,
                Value::from(job_status(obj)),
                Value::from(job_completions(obj)),
                Value::from(job_duration(obj, now)),
                age,
            ],
            template(&obj["spec"]["template"]["spec"], at(obj, "spec.selector")),
        ),
        ("batch", "cronjobs") => {
            let suspend = match at(obj, "spec.suspend").and_then(Value::as_bool) {
                Some(true) => "True",
                Some(false) | None => "False",
            };
            let last = match at(obj, "status.lastScheduleTime") {
                Some(_) => since(obj, "status.lastScheduleTime", now),
                None => Value::from("<none>"),
            };
            let job = &obj["spec"]["jobTemplate"]["spec"];
            with(
                vec![
                    name,
                    Value::from(str_at(obj, "spec.schedule")),
                    Value::from(str_or(obj, "spec.timeZone", "<none>")),
                    Value::from(suspend),
                    Value::from(len("status.active")),
                    last,
                    age,
                ],
                template(&job["template"]["spec"], at(job, "selector")),
            )
        }
        ("autoscaling", "horizontalpodautoscalers") => vec![
            name,
            Value::from(format!(
                "{}/{}",
                str_at(obj, "spec.scaleTargetRef.kind"),
                str_at(obj, "spec.scaleTargetRef.name")
            )),
            Value::from(hpa_targets(obj)),
            Value::from(
                at(obj, "spec.minReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
                    .to_string(),
            ),
            Value::from(int_at(obj, "spec.maxReplicas")),
            Value::from(int_at(obj, "status.currentReplicas")),
            age,
        ],
        ("policy", "poddisruptionbudgets") => {
            let bound = |path| string_or_number(at(obj, path)).unwrap_or_else(|| "N/A".into());
            vec![
                name,
                Value::from(bound("spec.minAvailable")),
                Value::from(bound("spec.maxUnavailable")),
                Value::from(int_at(obj, "status.disruptionsAllowed")),
                age,
            ]
        }
        ("networking.k8s.io", "ingresses") => {
            let ports = if len("spec.tls") == 0 {
                "80"
            } else {
                "80, 443"
            };
            vec![
                name,
                Value::from(str_or(obj, "spec.ingressClassName", "<none>")),
                Value::from(ingress_hosts(obj)),
                Value::from(load_balancer_addresses(obj).join(",")),
                Value::from(ports),
                age,
            ]
        }
        ("networking.k8s.io", "ingressclasses") => {
            let parameters = at(obj, "spec.parameters").map_or("<none>".into(), |p| {
                match at(p, "apiGroup").and_then(Value::as_str) {
                    Some(group) => {
                        format!("{}.{group}/{}", str_at(p, "kind"), str_at(p, "name"))
                    }
                    None => format!("{}/{}", str_at(p, "kind"), str_at(p, "name")),
                }
            });
            vec![
                name,
                Value::from(str_at(obj, "spec.controller")),
                Value::from(parameters),
                age,
            ]
        }
        ("networking.k8s.io", "networkpolicies") => {
            vec![name, selector_cell(at(obj, "spec.podSelector")), age]
        }
        ("storage.k8s.io", "storageclasses") => {
            let annotations = &obj["metadata"]["annotations"];
            let default = [
                "storageclass.kubernetes.io/is-default-class",
                "storageclass.beta.kubernetes.io/is-default-class",
            ]
            .iter()
            .any(|a| annotations[a].as_str() == Some("true"));
            let shown = if default {
                format!("{} (default)", str_at(obj, "metadata.name"))
            } else {
                str_at(obj, "metadata.name").to_string()
            };
            vec![
                Value::from(shown),
                Value::from(str_at(obj, "provisioner")),
                Value::from(str_or(obj, "reclaimPolicy", "Delete")),
                Value::from(str_or(obj, "volumeBindingMode", "Immediate")),
                flag("allowVolumeExpansion", false),
                age,
            ]
        }
        ("storage.k8s.io", "csidrivers") => {
            let audiences = at(obj, "spec.tokenRequests").map_or("<unset>".into(), |t| {
                let list: Vec<&str> = t
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| str_at(t, "audience"))
                    .collect();
                list.join(",")
            });
            let modes: Vec<&str> = list_at(obj, "spec.volumeLifecycleModes")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            vec![
                name,
                flag("spec.attachRequired", true),
                flag("spec.podInfoOnMount", false),
                flag("spec.storageCapacity", false),
                Value::from(audiences),
                flag("spec.requiresRepublish", false),
                Value::from(if modes.is_empty() {
                    "Persistent".to_string()
                } else {
                    modes.join(",")
                }),
                age,
            ]
        }
        ("storage.k8s.io", "csinodes") => vec![name, Value::from(len("spec.drivers")), age],
        ("storage.k8s.io", "volumeattachments") => vec![
            name,
            Value::from(str_at(obj, "spec.attacher")),
            Value::from(str_at(obj, "spec.source.persistentVolumeName")),
            Value::from(str_at(obj, "spec.nodeName")),
            flag("status.attached", false),
            age,
        ],
        ("scheduling.k8s.io", "priorityclasses") => vec![
            name,
            Value::from(int_at(obj, "value")),
            flag("globalDefault", false),
            age,
            Value::from(str_or(obj, "preemptionPolicy", "PreemptLowerPriority")),
        ],
        ("node.k8s.io", "runtimeclasses") => {
            vec![name, Value::from(str_at(obj, "handler")), age]
        }
        ("discovery.k8s.io", "endpointslices") => {
            let ports = list_at(obj, "ports")
                .iter()
                .map(|p| match at(p, "port").and_then(Value::as_i64) {
                    Some(port) => port.to_string(),
                    None => str_or(p, "name", "*").to_string(),
                })
                .collect();
            let addresses = list_at(obj, "endpoints")
                .iter()
                .flat_map(|e| list_at(e, "addresses"))
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            vec![
                name,
                Value::from(str_at(obj, "addressType")),
                Value::from(list_with_more(ports, 3)),
                Value::from(list_with_more(addresses, 3)),
                age,
            ]
        }
        ("certificates.k8s.io", "certificatesigningrequests") => {
            let duration = at(obj, "spec.expirationSeconds")
                .and_then(Value::as_i64)
                .map_or("<none>".into(), |s| {
                    human_duration(SignedDuration::from_secs(s))
                });
            vec![
                name,
                age,
                Value::from(str_or(obj, "spec.signerName", "<none>")),
                Value::from(str_at(obj, "spec.username")),
                Value::from(duration),
                Value::from(csr_condition(obj)),
            ]
        }
        ("coordination.k8s.io", "leases") => {
            vec![name, Value::from(str_at(obj, "spec.holderIdentity")), age]
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => vec![
            name,
            Value::from(format!(
                "{}/{}",
                str_at(obj, "roleRef.kind"),
                str_at(obj, "roleRef.name")
            )),
            age,
            binding_subjects(obj, "User"),
            binding_subjects(obj, "Group"),
            binding_subjects(obj, "ServiceAccount"),
        ],
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations" | "validatingwebhookconfigurations",
        ) => vec![name, Value::from(len("webhooks")), age],
        _ => {
            let created = str_at(obj, "metadata.creationTimestamp");
            let created = match created.parse::<Timestamp>() {
                Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                Err(_) => created.to_string(),
            };
            vec![name, Value::from(created)]
        }
    }
}

/// How much of each object a table row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    /// No object.
    None,
    /// `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole object.
    Object,
}

/// One object's row: its cells and, as `include` asks, its metadata or itself. Built by
/// moving values into maps (`json!` would serialize every borrowed value anew).
fn row(r: &Resource, mut o: Value, include: Include, now: Timestamp) -> Value {
    let mut row = serde_json::Map::new();
    row.insert("cells".into(), Value::Array(cells(r, &o, now)));
    let object = match include {
        Include::None => None,
        Include::Metadata => {
            let mut partial = serde_json::Map::new();
            partial.insert("kind".into(), Value::from("PartialObjectMetadata"));
            partial.insert("apiVersion".into(), Value::from("meta.k8s.io/v1"));
            partial.insert("metadata".into(), o["metadata"].take());
            Some(Value::Object(partial))
        }
        Include::Object => {
            o["kind"] = Value::from(r.kind);
            o["apiVersion"] = Value::from(r.api_version());
            Some(o)
        }
    };
    if let Some(object) = object {
        row.insert("object".into(), object);
    }
    Value::Object(row)
}

/// Builds a `meta.k8s.io/v1` Table for `objects`, with the list metadata `meta`
/// (`resourceVersion`, and for a page `continue` and `remainingItemCount`).
pub fn table(
    r: &Resource,
    objects: Vec<Value>,
    include: Include,
    meta: Value,
    now: Timestamp,
) -> Value {
    let defs: Vec<Value> = columns(r)
        .iter()
        .map(|c| {
            // upstream marks the attacher of a VolumeAttachment as a name too.
            let named = c.name == "Name" || (r.plural == "volumeattachments" && c.name == "Attacher");
            let format = if named { "name" } else { "" };
            json!({"name": c.name, "type": c.kind, "format": format, "description": c.name, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .into_iter()
        .map(|o| row(r, o, include, now))
        .collect();
    let mut table = serde_json::Map::new();
    table.insert("kind".into(), Value::from("Table"));
    table.insert("apiVersion".into(), Value::from("meta.k8s.io/v1"));
    table.insert("metadata".into(), meta);
    table.insert("columnDefinitions".into(), Value::Array(defs));
    table.insert("rows".into(), Value::Array(rows));
    Value::Object(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{RESOURCES, find};

    const NOW: &str = "2026-01-01T01:00:00Z";

    /// One row of `obj` as `group/plural` prints it, an hour after midnight.
    fn row(group: &str, version: &str, plural: &str, obj: Value) -> Vec<Value> {
        let r = find(group, version, plural).unwrap();
        let cells = cells(r, &obj, NOW.parse().unwrap());
        assert_eq!(columns(r).len(), cells.len(), "{plural}");
        cells
    }

    fn meta() -> Value {
        json!({"name": "x", "creationTimestamp": "2026-01-01T00:00:00Z"})
    }

    #[test]
    fn durations_print_like_kubectl() {
        let d = |s| human_duration(SignedDuration::from_secs(s));
        assert_eq!(d(5), "5s");
        assert_eq!(d(119), "119s");
        assert_eq!(d(310), "5m10s");
        assert_eq!(d(600), "10m");
        assert_eq!(d(3 * 3600 + 120), "3h2m");
        assert_eq!(d(20 * 3600), "20h");
        assert_eq!(d(3 * 86400 + 3600), "3d1h");
        assert_eq!(d(30 * 86400), "30d");
        assert_eq!(d(-5), "<invalid>");
    }

    #[test]
    fn every_resource_has_as_many_cells_as_columns() {
        let now: Timestamp = NOW.parse().unwrap();
        for r in RESOURCES {
            let obj = json!({"metadata": meta()});
            assert_eq!(columns(r).len(), cells(r, &obj, now).len(), "{}", r.plural);
        }
    }

    #[test]
    fn pod_rows() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:50:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.42.0.5", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        });
        assert_eq!(
            row("", "v1", "pods", pod.clone()),
            vec![
                json!("web"),
                json!("1/2"),
                json!("CrashLoopBackOff"),
                json!("3"),
                json!("10m"),
                json!("10.42.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("<none>"),
            ]
        );
        let mut restarted = pod.clone();
        restarted["status"]["containerStatuses"][1]["lastState"] =
            json!({"terminated": {"exitCode": 1, "finishedAt": "2026-01-01T00:55:00Z"}});
        assert_eq!(row("", "v1", "pods", restarted)[3], json!("3 (5m ago)"));
        let init = json!({"metadata": meta(),
            "spec": {"initContainers": [{"name": "setup"}, {"name": "proxy", "restartPolicy": "Always"}],
                "containers": [{"name": "app"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "setup", "state": {"waiting": {"reason": "PodInitializing"}}}]}});
        let cells = row("", "v1", "pods", init);
        assert_eq!(cells[1], json!("0/2"), "a sidecar counts as a container");
        assert_eq!(cells[2], json!("Init:0/2"));
        let done = json!({"metadata": meta(), "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
        assert_eq!(row("", "v1", "pods", done)[2], json!("Completed"));
    }

    #[test]
    fn job_status_completions_and_duration() {
        let job = |spec: Value, status: Value| {
            row(
                "batch",
                "v1",
                "jobs",
                json!({"metadata": meta(), "spec": spec, "status": status}),
            )
        };
        let cells = job(
            json!({"completions": 3, "selector": {"matchLabels": {"job": "x"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}),
            json!({"succeeded": 1, "startTime": "2026-01-01T00:30:00Z"}),
        );
        assert_eq!(
            cells,
            vec![
                json!("x"),
                json!("Running"),
                json!("1/3"),
                json!("30m"),
                json!("60m"),
                json!("c"),
                json!("busybox"),
                json!("job=x"),
            ]
        );
        let complete = job(
            json!({}),
            json!({"succeeded": 1, "startTime": "2026-01-01T00:00:00Z",
                "completionTime": "2026-01-01T00:00:42Z",
                "conditions": [{"type": "Complete", "status": "True"}]}),
        );
        assert_eq!(
            &complete[1..4],
            [json!("Complete"), json!("1/1"), json!("42s")]
        );
        let queue = job(json!({"parallelism": 4}), json!({}));
        assert_eq!(
            &queue[1..4],
            [json!("Running"), json!("0/1 of 4"), json!("")]
        );
        let failed = job(
            json!({}),
            json!({"conditions": [{"type": "Complete", "status": "False"},
                {"type": "Failed", "status": "True"}]}),
        );
        assert_eq!(failed[1], json!("Failed"));
        let suspended = job(
            json!({"suspend": true}),
            json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
        );
        assert_eq!(suspended[1], json!("Suspended"));
        assert_eq!(suspended[7], json!("<none>"));
    }

    #[test]
    fn cronjob_last_schedule_and_suspend() {
        let spec = json!({"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec":
            {"containers": [{"name": "c", "image": "busybox"}]}}}}});
        let never = row(
            "batch",
            "v1",
            "cronjobs",
            json!({"metadata": meta(), "spec": spec}),
        );
        assert_eq!(
            never,
            vec![
                json!("x"),
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(0),
                json!("<none>"),
                json!("60m"),
                json!("c"),
                json!("busybox"),
                json!("<none>"),
            ]
        );
        let mut ran = spec.clone();
        ran["suspend"] = json!(true);
        ran["timeZone"] = json!("Europe/Paris");
        let ran = row(
            "batch",
            "v1",
            "cronjobs",
            json!({"metadata": meta(), "spec": ran, "status": {
                "active": [{"name": "x-1"}], "lastScheduleTime": "2026-01-01T00:55:00Z"}}),
        );
        assert_eq!(
            &ran[2..6],
            [json!("Europe/Paris"), json!("True"), json!(1), json!("5m")]
        );
    }

    #[test]
    fn hpa_targets_and_bounds() {
        let hpa = |spec: Value, status: Value| {
            let mut spec = spec;
            spec["scaleTargetRef"] = json!({"kind": "Deployment", "name": "web"});
            spec["maxReplicas"] = json!(5);
            row(
                "autoscaling",
                "v2",
                "horizontalpodautoscalers",
                json!({"metadata": meta(), "spec": spec, "status": status}),
            )
        };
        let cpu = json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}});
        assert_eq!(
            hpa(json!({"minReplicas": 2, "metrics": [cpu]}), json!({})),
            vec![
                json!("x"),
                json!("Deployment/web"),
                json!("cpu: <unknown>/80%"),
                json!("2"),
                json!(5),
                json!(0),
                json!("60m"),
            ]
        );
        let measured = hpa(
            json!({"metrics": [cpu]}),
            json!({"currentReplicas": 3, "currentMetrics": [{"type": "Resource",
                "resource": {"name": "cpu", "current": {"averageUtilization": 45, "averageValue": "90m"}}}]}),
        );
        assert_eq!(
            &measured[2..6],
            [json!("cpu: 45%/80%"), json!("1"), json!(5), json!(3)]
        );
        let memory = json!({"type": "Resource", "resource": {"name": "memory",
            "target": {"type": "AverageValue", "averageValue": "512Mi"}}});
        let pods = json!({"type": "Pods", "pods": {"metric": {"name": "qps"},
            "target": {"type": "AverageValue", "averageValue": "10"}}});
        let external = json!({"type": "External", "external": {"metric": {"name": "queue"},
            "target": {"type": "Value", "value": "30"}}});
        let many = hpa(
            json!({"metrics": [memory, pods, external]}),
            json!({"currentMetrics": [{"type": "Resource",
                "resource": {"name": "memory", "current": {"averageValue": "100Mi"}}}]}),
        );
        assert_eq!(
            many[2],
            json!("memory: 100Mi/512Mi, <unknown>/10 + 1 more...")
        );
        assert_eq!(hpa(json!({}), json!({}))[2], json!("cpu: <unknown>/80%"));
    }

    #[test]
    fn pdb_bounds() {
        let pdb = |spec: Value, allowed: i64| {
            row(
                "policy",
                "v1",
                "poddisruptionbudgets",
                json!({"metadata": meta(), "spec": spec, "status": {"disruptionsAllowed": allowed}}),
            )
        };
        assert_eq!(
            pdb(json!({"minAvailable": 2}), 1),
            vec![json!("x"), json!("2"), json!("N/A"), json!(1), json!("60m")]
        );
        assert_eq!(
            &pdb(json!({"maxUnavailable": "25%"}), 0)[1..4],
            [json!("N/A"), json!("25%"), json!(0)]
        );
    }

    #[test]
    fn csr_condition_and_duration() {
        let csr = |conditions: Value, certificate: Option<&str>| {
            let mut status = json!({"conditions": conditions});
            if let Some(c) = certificate {
                status["certificate"] = json!(c);
            }
            row(
                "certificates.k8s.io",
                "v1",
                "certificatesigningrequests",
                json!({"metadata": meta(), "spec": {"signerName": "kubernetes.io/kube-apiserver-client",
                    "username": "alice", "expirationSeconds": 86400}, "status": status}),
            )
        };
        assert_eq!(
            csr(json!([]), None),
            vec![
                json!("x"),
                json!("60m"),
                json!("kubernetes.io/kube-apiserver-client"),
                json!("alice"),
                json!("24h"),
                json!("Pending"),
            ]
        );
        let approved = json!([{"type": "Approved", "status": "True"}]);
        assert_eq!(csr(approved.clone(), None)[5], json!("Approved"));
        assert_eq!(csr(approved, Some("LS0t"))[5], json!("Approved,Issued"));
        let denied = json!([{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"},
            {"type": "Failed", "status": "True"}]);
        assert_eq!(csr(denied, None)[5], json!("Denied,Failed"));
    }

    #[test]
    fn network_and_storage_rows() {
        let ing = row(
            "networking.k8s.io",
            "v1",
            "ingresses",
            json!({"metadata": meta(), "spec": {"ingressClassName": "nginx", "tls": [{}],
                "rules": [{"host": "a.example"}, {}, {"host": "b.example"}, {"host": "c.example"}, {"host": "d.example"}]},
                "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}, {"hostname": "lb.example"}, {"ip": "10.0.0.2"}]}}}),
        );
        assert_eq!(
            &ing[1..5],
            [
                json!("nginx"),
                json!("a.example,b.example,c.example + 2 more..."),
                json!("10.0.0.2,lb.example"),
                json!("80, 443"),
            ]
        );
        let slice = row(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            json!({"metadata": meta(), "addressType": "IPv4", "ports": [{"port": 80}, {"name": "dns"}],
                "endpoints": [{"addresses": ["10.0.0.1", "10.0.0.2"]}, {"addresses": ["10.0.0.3"]}, {"addresses": ["10.0.0.4"]}]}),
        );
        assert_eq!(
            &slice[1..4],
            [
                json!("IPv4"),
                json!("80,dns"),
                json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...")
            ]
        );
        let empty = row(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            json!({"metadata": meta(), "addressType": "IPv4"}),
        );
        assert_eq!(&empty[2..4], [json!("<unset>"), json!("<unset>")]);
        let sc = row(
            "storage.k8s.io",
            "v1",
            "storageclasses",
            json!({"metadata": {"name": "local", "creationTimestamp": "2026-01-01T00:00:00Z",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}),
        );
        assert_eq!(
            sc,
            vec![
                json!("local (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false),
                json!("60m"),
            ]
        );
        let pv = row(
            "",
            "v1",
            "persistentvolumes",
            json!({"metadata": meta(), "spec": {"capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteMany", "ReadWriteOnce"], "storageClassName": "local",
                "claimRef": {"namespace": "default", "name": "data"}}, "status": {"phase": "Bound"}}),
        );
        assert_eq!(
            &pv[1..8],
            [
                json!("10Gi"),
                json!("RWO,RWX"),
                json!("Retain"),
                json!("Bound"),
                json!("default/data"),
                json!("local"),
                json!("<unset>"),
            ]
        );
        let quota = row(
            "",
            "v1",
            "resourcequotas",
            json!({"metadata": meta(), "status": {
                "hard": {"requests.cpu": "1", "pods": "10", "limits.memory": "1Gi"},
                "used": {"pods": "2", "limits.memory": "256Mi"}}}),
        );
        assert_eq!(
            &quota[1..3],
            [
                json!("pods: 2/10, requests.cpu: 0/1"),
                json!("limits.memory: 256Mi/1Gi")
            ]
        );
    }

    #[test]
    fn endpoints_events_and_revisions() {
        let eps = row(
            "",
            "v1",
            "endpoints",
            json!({"metadata": meta(), "subsets": [
                {"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}], "ports": [{"port": 80}, {"port": 443}]}]}),
        );
        assert_eq!(
            eps[1],
            json!("10.0.0.1:80,[fd00::1]:80,10.0.0.1:443 + 1 more...")
        );
        assert_eq!(
            row("", "v1", "endpoints", json!({"metadata": meta()}))[1],
            json!("<none>")
        );
        let ev = row(
            "",
            "v1",
            "events",
            json!({"metadata": meta(), "type": "Normal", "reason": "Scheduled",
                "involvedObject": {"kind": "Pod", "name": "web"}, "message": " assigned \n",
                "source": {"component": "default-scheduler"}, "eventTime": "2026-01-01T00:58:00.000000Z"}),
        );
        assert_eq!(
            ev,
            vec![
                json!("2m"),
                json!("Normal"),
                json!("Scheduled"),
                json!("pod/web"),
                json!(""),
                json!("default-scheduler"),
                json!("assigned"),
                json!("2m"),
                json!(1),
                json!("x"),
            ]
        );
        let rev = row(
            "apps",
            "v1",
            "controllerrevisions",
            json!({"metadata": {"name": "web-5d4", "creationTimestamp": "2026-01-01T00:00:00Z",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}]},
                "revision": 2}),
        );
        assert_eq!(&rev[1..3], [json!("statefulset.apps/web"), json!(2)]);
    }

    #[test]
    fn service_rows_and_default_tables() {
        let obj = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIP": "10.43.0.10",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP"}], "selector": {"app": "web"}}});
        let c = row("", "v1", "services", obj.clone());
        assert_eq!(c[2], json!("10.43.0.10"));
        assert_eq!(c[3], json!("<none>"));
        assert_eq!(c[4], json!("80:30080/TCP,53/UDP"));
        assert_eq!(c[6], json!("app=web"));
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "externalIPs": ["192.0.2.9"]},
            "status": {"loadBalancer": {}}});
        assert_eq!(row("", "v1", "services", lb)[3], json!("192.0.2.9"));
        let lr = find("", "v1", "limitranges").unwrap();
        let now: Timestamp = NOW.parse().unwrap();
        let t = table(
            lr,
            vec![obj],
            Include::Metadata,
            json!({"resourceVersion": "7"}),
            now,
        );
        assert_eq!(t["columnDefinitions"][1]["name"], "Created At");
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
        let roles = find("rbac.authorization.k8s.io", "v1", "roles").unwrap();
        assert_eq!(columns(roles)[1].name, "Created At");
        let va = find("storage.k8s.io", "v1", "volumeattachments").unwrap();
        let t = table(va, vec![], Include::None, json!({}), now);
        assert_eq!(t["columnDefinitions"][1]["format"], "name");
        let cj = find("batch", "v1", "cronjobs").unwrap();
        let wide: Vec<&str> = columns(cj)
            .iter()
            .filter(|c| c.priority == 1)
            .map(|c| c.name)
            .collect();
        assert_eq!(wide, ["Containers", "Images", "Selector"]);
    }
}
