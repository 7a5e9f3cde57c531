//! Printers of the core group's own resources: namespaces, pods and pod templates, services
//! and endpoints, config maps, secrets, service accounts, nodes, events and resource quotas.
//! (Volumes and claims print in `storage`, replication controllers in `workloads`.)

use jiff::Timestamp;
use serde_json::Value;

use super::{
    AGE, NAME, Printer, age, ago, at, condition_true, containers_and_images, deleting, int_at,
    list_at, load_balancer_addresses, name, or_none, selector_cell, since, str_at, str_or, string,
    string_or_number, time_at, wide,
};

/// Namespaces: their phase.
pub(super) static NAMESPACES: Printer = Printer {
    columns: &[NAME, string("Status"), AGE],
    cells: namespace_cells,
};

fn namespace_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(str_at(obj, "status.phase")),
        age(obj, now),
    ]
}

/// Pods: readiness, state and restarts as upstream reads the container statuses; where they
/// run with `-o wide`.
pub(super) static PODS: Printer = Printer {
    columns: &[
        NAME,
        string("Ready"),
        string("Status"),
        string("Restarts"),
        AGE,
        wide("IP"),
        wide("Node"),
        wide("Nominated Node"),
        wide("Readiness Gates"),
    ],
    cells: pod_cells,
};

/// What [`pod_cells`] reads (the printers' tests check that a pod cut down to these prints
/// the same).
pub(super) const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.creationTimestamp",
    "metadata.deletionTimestamp",
    "spec.containers.name",
    "spec.initContainers.name",
    "spec.initContainers.restartPolicy",
    "spec.nodeName",
    "spec.readinessGates",
    "status",
];

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

/// Pod templates: their containers, images and pod labels.
pub(super) static POD_TEMPLATES: Printer = Printer {
    columns: &[
        NAME,
        string("Containers"),
        string("Images"),
        string("Pod Labels"),
    ],
    cells: pod_template_cells,
};

fn pod_template_cells(obj: &Value, _now: Timestamp) -> Vec<Value> {
    let (c, i) = containers_and_images(&obj["template"]["spec"]);
    vec![
        name(obj),
        c,
        i,
        selector_cell(at(obj, "template.metadata.labels")),
    ]
}

/// Services: type, addresses, ports; the selector with `-o wide`.
pub(super) static SERVICES: Printer = Printer {
    columns: &[
        NAME,
        string("Type"),
        string("Cluster-IP"),
        string("External-IP"),
        string("Port(s)"),
        AGE,
        wide("Selector"),
    ],
    cells: service_cells,
};

fn service_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let cluster_ip = list_at(obj, "spec.clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_at(obj, "spec.clusterIP"));
    vec![
        name(obj),
        Value::from(str_or(obj, "spec.type", "ClusterIP")),
        or_none(cluster_ip),
        Value::from(service_external_ip(obj)),
        or_none(&service_ports(obj)),
        age(obj, now),
        selector_cell(at(obj, "spec.selector")),
    ]
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

/// Config maps: how many keys they hold, text and binary.
pub(super) static CONFIG_MAPS: Printer = Printer {
    columns: &[NAME, string("Data"), AGE],
    cells: config_map_cells,
};

fn config_map_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(entries(obj, "data") + entries(obj, "binaryData")),
        age(obj, now),
    ]
}

/// Secrets: their type and how many keys they hold.
pub(super) static SECRETS: Printer = Printer {
    columns: &[NAME, string("Type"), string("Data"), AGE],
    cells: secret_cells,
};

fn secret_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(str_at(obj, "type")),
        Value::from(entries(obj, "data")),
        age(obj, now),
    ]
}

/// How many entries the map at `path` has; 0 when it is absent or not a map.
fn entries(obj: &Value, path: &str) -> usize {
    at(obj, path)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

/// Service accounts: how many secrets they list.
pub(super) static SERVICE_ACCOUNTS: Printer = Printer {
    columns: &[NAME, string("Secrets"), AGE],
    cells: service_account_cells,
};

fn service_account_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(list_at(obj, "secrets").len()),
        age(obj, now),
    ]
}

/// Endpoints: their first addresses.
pub(super) static ENDPOINTS: Printer = Printer {
    columns: &[NAME, string("Endpoints"), AGE],
    cells: endpoints_cells,
};

fn endpoints_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(obj), Value::from(endpoints_string(obj)), age(obj, now)]
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

/// Nodes: readiness, roles and kubelet version; addresses and software with `-o wide`.
pub(super) static NODES: Printer = Printer {
    columns: &[
        NAME,
        string("Status"),
        string("Roles"),
        AGE,
        string("Version"),
        wide("Internal-IP"),
        wide("External-IP"),
        wide("OS-Image"),
        wide("Kernel-Version"),
        wide("Container-Runtime"),
    ],
    cells: node_cells,
};

fn node_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let addr = |t: &str| {
        list_at(obj, "status.addresses")
            .iter()
            .find(|a| str_at(a, "type") == t)
            .map_or("", |a| str_at(a, "address"))
    };
    let info = |field: &str| Value::from(str_or(obj, field, "<unknown>"));
    vec![
        name(obj),
        Value::from(node_status(obj)),
        or_none(&node_roles(obj)),
        age(obj, now),
        Value::from(str_at(obj, "status.nodeInfo.kubeletVersion")),
        or_none(addr("InternalIP")),
        or_none(addr("ExternalIP")),
        info("status.nodeInfo.osImage"),
        info("status.nodeInfo.kernelVersion"),
        info("status.nodeInfo.containerRuntimeVersion"),
    ]
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

/// Events: when, what and about which object; the name is a wide column, not the first.
pub(super) static EVENTS: Printer = Printer {
    columns: &[
        string("Last Seen"),
        string("Type"),
        string("Reason"),
        string("Object"),
        wide("Subobject"),
        wide("Source"),
        string("Message"),
        wide("First Seen"),
        wide("Count"),
        wide("Name"),
    ],
    cells: event_cells,
};

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

/// Resource quotas: used out of hard, requests and limits apart.
pub(super) static RESOURCE_QUOTAS: Printer = Printer {
    columns: &[NAME, string("Request"), string("Limit"), AGE],
    cells: resource_quota_cells,
};

fn resource_quota_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (requests, limits) = quota_columns(obj);
    vec![
        name(obj),
        Value::from(requests),
        Value::from(limits),
        age(obj, now),
    ]
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{meta, row};

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
    fn quota_rows() {
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
    fn endpoints_and_events() {
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
    }

    #[test]
    fn service_rows() {
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
    }
}
