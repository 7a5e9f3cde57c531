//! Server-side printing: the columns `kubectl get` shows for each resource, computed from the
//! object as upstream's printers compute them, and the `Table` object that carries them.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::resources::Resource;
use crate::selector::LabelSelector;

/// One column of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The header, as kubectl upper-cases it.
    pub name: &'static str,
    /// `string`, `integer` or `date`.
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
pub fn columns(r: &Resource) -> Vec<Column> {
    let s = |n| col(n, "string", 0);
    let i = |n| col(n, "integer", 0);
    let wide = |n| col(n, "string", 1);
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
        ("", "services") => vec![
            NAME,
            s("Type"),
            s("Cluster-IP"),
            s("External-IP"),
            s("Port(s)"),
            AGE,
            wide("Selector"),
        ],
        ("", "configmaps") => vec![NAME, i("Data"), AGE],
        ("", "secrets") => vec![NAME, s("Type"), i("Data"), AGE],
        ("", "serviceaccounts") => vec![NAME, i("Secrets"), AGE],
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
            s("Message"),
        ],
        ("apps", "deployments") => vec![
            NAME,
            s("Ready"),
            i("Up-to-date"),
            i("Available"),
            AGE,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        ("apps", "replicasets") | ("", "replicationcontrollers") => vec![
            NAME,
            i("Desired"),
            i("Current"),
            i("Ready"),
            AGE,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        ("apps", "statefulsets") => vec![NAME, s("Ready"), AGE, wide("Containers"), wide("Images")],
        ("apps", "daemonsets") => vec![
            NAME,
            i("Desired"),
            i("Current"),
            i("Ready"),
            i("Up-to-date"),
            i("Available"),
            s("Node Selector"),
            AGE,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
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
        _ => vec![NAME, col("Created At", "date", 0)],
    }
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    path.split('.')
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn int_at(v: &Value, path: &str) -> i64 {
    path.split('.')
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_i64)
        .unwrap_or(0)
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

/// Time since an RFC 3339 timestamp field, as the AGE column prints it.
fn since(v: &Value, path: &str, now: Timestamp) -> Value {
    match str_at(v, path).parse::<Timestamp>() {
        Ok(t) => Value::from(human_duration(now.duration_since(t))),
        Err(_) => Value::from("<unknown>"),
    }
}

/// A selector (object or plain map) in its query form, or "" when absent or malformed.
fn selector_string(sel: Option<&Value>) -> String {
    sel.and_then(|s| LabelSelector::from_any(s).ok())
        .map(|s| s.to_string())
        .unwrap_or_default()
}

fn containers_and_images(pod_spec: &Value) -> (Value, Value) {
    let cs: Vec<&Value> = pod_spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let names: Vec<&str> = cs.iter().map(|c| str_at(c, "name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| str_at(c, "image")).collect();
    (Value::from(names.join(",")), Value::from(images.join(",")))
}

fn pod_status(pod: &Value) -> String {
    let mut reason = str_at(pod, "status.reason").to_string();
    if reason.is_empty() {
        reason = str_at(pod, "status.phase").to_string();
    }
    for c in pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let waiting = str_at(c, "state.waiting.reason");
        let terminated = str_at(c, "state.terminated.reason");
        if !waiting.is_empty() {
            reason = waiting.to_string();
        } else if !terminated.is_empty() {
            reason = terminated.to_string();
        }
    }
    if pod["metadata"].get("deletionTimestamp").is_some() {
        reason = "Terminating".into();
    }
    if reason.is_empty() {
        "Pending".into()
    } else {
        reason
    }
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = match str_at(p, "protocol") {
                "" => "TCP",
                x => x,
            };
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(np) => format!("{}:{np}/{proto}", int_at(p, "port")),
                None => format!("{}/{proto}", int_at(p, "port")),
            }
        })
        .collect();
    ports.join(",")
}

fn node_status(node: &Value) -> String {
    let ready = node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| str_at(c, "type") == "Ready")
        .map(|c| str_at(c, "status") == "True");
    let mut s = match ready {
        Some(true) => "Ready".to_string(),
        Some(false) | None => "NotReady".to_string(),
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
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
        .collect();
    roles.sort();
    roles.join(",")
}

/// One row's cells, in the order of [`columns`].
pub fn cells(r: &Resource, obj: &Value, now: Timestamp) -> Vec<Value> {
    let name = Value::from(str_at(obj, "metadata.name"));
    let age = since(obj, "metadata.creationTimestamp", now);
    let count = |path: &str| {
        path.split('.')
            .try_fold(obj, |v, k| v.get(k))
            .and_then(Value::as_object)
            .map_or(0, |m| m.len())
    };
    match (r.group, r.plural) {
        ("", "namespaces") => vec![name, Value::from(str_at(obj, "status.phase")), age],
        ("", "pods") => {
            let statuses: Vec<&Value> = obj["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            let total = obj["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = statuses
                .iter()
                .filter(|c| c["ready"].as_bool() == Some(true))
                .count();
            let restarts: i64 = statuses.iter().map(|c| int_at(c, "restartCount")).sum();
            let gates = obj["spec"]["readinessGates"].as_array().map_or(0, Vec::len);
            vec![
                name,
                Value::from(format!("{ready}/{total}")),
                Value::from(pod_status(obj)),
                Value::from(restarts),
                age,
                or_none(str_at(obj, "status.podIP")),
                or_none(str_at(obj, "spec.nodeName")),
                or_none(str_at(obj, "status.nominatedNodeName")),
                if gates == 0 {
                    Value::from("<none>")
                } else {
                    Value::from(format!("0/{gates}"))
                },
            ]
        }
        ("", "services") => {
            let ty = match str_at(obj, "spec.type") {
                "" => "ClusterIP",
                t => t,
            };
            let external = match ty {
                "ExternalName" => str_at(obj, "spec.externalName").to_string(),
                "LoadBalancer" => {
                    let ingress: Vec<&str> = obj["status"]["loadBalancer"]["ingress"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|i| {
                            if str_at(i, "ip").is_empty() {
                                str_at(i, "hostname")
                            } else {
                                str_at(i, "ip")
                            }
                        })
                        .collect();
                    if ingress.is_empty() {
                        "<pending>".into()
                    } else {
                        ingress.join(",")
                    }
                }
                _ => String::new(),
            };
            vec![
                name,
                Value::from(ty),
                or_none(str_at(obj, "spec.clusterIP")),
                or_none(&external),
                or_none(&service_ports(obj)),
                age,
                or_none(&selector_string(obj["spec"].get("selector"))),
            ]
        }
        ("", "configmaps") => vec![name, Value::from(count("data") + count("binaryData")), age],
        ("", "secrets") => vec![
            name,
            Value::from(str_at(obj, "type")),
            Value::from(count("data")),
            age,
        ],
        ("", "serviceaccounts") => {
            vec![
                name,
                Value::from(obj["secrets"].as_array().map_or(0, Vec::len)),
                age,
            ]
        }
        ("", "endpoints") => {
            let mut eps = Vec::new();
            for subset in obj["subsets"].as_array().into_iter().flatten() {
                for a in subset["addresses"].as_array().into_iter().flatten() {
                    for p in subset["ports"].as_array().into_iter().flatten() {
                        eps.push(format!("{}:{}", str_at(a, "ip"), int_at(p, "port")));
                    }
                }
            }
            vec![name, or_none(&eps.join(",")), age]
        }
        ("", "nodes") => {
            let addr = |t: &str| {
                obj["status"]["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| str_at(a, "type") == t)
                    .map_or("", |a| str_at(a, "address"))
            };
            vec![
                name,
                Value::from(node_status(obj)),
                or_none(&node_roles(obj)),
                age,
                Value::from(str_at(obj, "status.nodeInfo.kubeletVersion")),
                or_none(addr("InternalIP")),
                or_none(addr("ExternalIP")),
                Value::from(str_at(obj, "status.nodeInfo.osImage")),
                Value::from(str_at(obj, "status.nodeInfo.kernelVersion")),
                Value::from(str_at(obj, "status.nodeInfo.containerRuntimeVersion")),
            ]
        }
        ("", "events") => {
            let last = ["lastTimestamp", "eventTime", "metadata.creationTimestamp"]
                .iter()
                .find(|p| !str_at(obj, p).is_empty())
                .map_or(Value::from("<unknown>"), |p| since(obj, p, now));
            let object = format!(
                "{}/{}",
                str_at(obj, "involvedObject.kind").to_ascii_lowercase(),
                str_at(obj, "involvedObject.name")
            );
            vec![
                last,
                Value::from(str_at(obj, "type")),
                Value::from(str_at(obj, "reason")),
                Value::from(object),
                Value::from(str_at(obj, "message")),
            ]
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
                or_none(&selector_string(obj["spec"].get("selector"))),
            ]
        }
        ("apps", "replicasets") | ("", "replicationcontrollers") => {
            let (c, i) = containers_and_images(&obj["spec"]["template"]["spec"]);
            vec![
                name,
                Value::from(int_at(obj, "spec.replicas")),
                Value::from(int_at(obj, "status.replicas")),
                Value::from(int_at(obj, "status.readyReplicas")),
                age,
                c,
                i,
                or_none(&selector_string(obj["spec"].get("selector"))),
            ]
        }
        ("apps", "statefulsets") => {
            let (c, i) = containers_and_images(&obj["spec"]["template"]["spec"]);
            vec![
                name,
                Value::from(format!(
                    "{}/{}",
                    int_at(obj, "status.readyReplicas"),
                    int_at(obj, "spec.replicas")
                )),
                age,
                c,
                i,
            ]
        }
        ("apps", "daemonsets") => {
            let (c, i) = containers_and_images(&obj["spec"]["template"]["spec"]);
            vec![
                name,
                Value::from(int_at(obj, "status.desiredNumberScheduled")),
                Value::from(int_at(obj, "status.currentNumberScheduled")),
                Value::from(int_at(obj, "status.numberReady")),
                Value::from(int_at(obj, "status.updatedNumberScheduled")),
                Value::from(int_at(obj, "status.numberAvailable")),
                or_none(&selector_string(
                    obj["spec"]["template"]["spec"].get("nodeSelector"),
                )),
                age,
                c,
                i,
                or_none(&selector_string(obj["spec"].get("selector"))),
            ]
        }
        ("coordination.k8s.io", "leases") => {
            vec![name, Value::from(str_at(obj, "spec.holderIdentity")), age]
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            let subjects = |kind: &str| {
                let names: Vec<String> = obj["subjects"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|s| str_at(s, "kind") == kind)
                    .map(|s| match str_at(s, "namespace") {
                        "" => str_at(s, "name").to_string(),
                        ns => format!("{ns}/{}", str_at(s, "name")),
                    })
                    .collect();
                Value::from(names.join(", "))
            };
            vec![
                name,
                Value::from(format!(
                    "{}/{}",
                    str_at(obj, "roleRef.kind"),
                    str_at(obj, "roleRef.name")
                )),
                age,
                subjects("User"),
                subjects("Group"),
                subjects("ServiceAccount"),
            ]
        }
        _ => vec![name, Value::from(str_at(obj, "metadata.creationTimestamp"))],
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

/// Builds a `meta.k8s.io/v1` Table for `objects`.
pub fn table(
    r: &Resource,
    objects: &[Value],
    include: Include,
    resource_version: &str,
    continue_token: Option<&str>,
    now: Timestamp,
) -> Value {
    let defs: Vec<Value> = columns(r)
        .iter()
        .map(|c| {
            let format = if c.name == "Name" { "name" } else { "" };
            json!({"name": c.name, "type": c.kind, "format": format, "description": c.name, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(r, o, now)});
            match include {
                Include::None => {}
                Include::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o["metadata"],
                    });
                }
                Include::Object => {
                    let mut full = o.clone();
                    full["kind"] = Value::from(r.kind);
                    full["apiVersion"] = Value::from(r.api_version());
                    row["object"] = full;
                }
            }
            row
        })
        .collect();
    let mut meta = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_token {
        meta["continue"] = Value::from(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

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
    fn pod_rows() {
        let pods = find("", "v1", "pods").unwrap();
        let now: Timestamp = "2026-01-01T00:10:00Z".parse().unwrap();
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.42.0.5", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        });
        let cells = cells(pods, &pod, now);
        assert_eq!(
            cells,
            vec![
                json!("web"),
                json!("1/2"),
                json!("CrashLoopBackOff"),
                json!(3),
                json!("10m"),
                json!("10.42.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("<none>"),
            ]
        );
        assert_eq!(columns(pods).len(), cells.len());
    }

    #[test]
    fn service_rows_and_default_tables() {
        let svc = find("", "v1", "services").unwrap();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let obj = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIP": "10.43.0.10",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP"}], "selector": {"app": "web"}}});
        let c = cells(svc, &obj, now);
        assert_eq!(c[4], json!("80:30080/TCP,53/UDP"));
        assert_eq!(c[6], json!("app=web"));
        let sc = find("storage.k8s.io", "v1", "storageclasses").unwrap();
        let t = table(sc, &[obj], Include::Metadata, "7", None, now);
        assert_eq!(t["columnDefinitions"][1]["name"], "Created At");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
    }
}
