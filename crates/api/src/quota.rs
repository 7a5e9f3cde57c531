//! ResourceQuota arithmetic, shared by the API server's quota admission and the quota
//! controller: what an object counts against a quota ([`usage`]), whether a quota's scopes
//! cover a pod ([`covers`]), and quantities in milli-units with upstream's spelling
//! ([`format`]).
//!
//! A pod counts `pods` and `count/pods`, and its requests and limits (`requests.cpu`,
//! `limits.memory`, ...; plain `cpu` and `memory` mean requests), the larger of the
//! containers' sum and any init container's. Other objects count `count/<resource>[.<group>]`,
//! and the legacy names (`services`, `secrets`, `configmaps`, `persistentvolumeclaims`,
//! `replicationcontrollers`, `resourcequotas`), Services their node ports and load balancers,
//! claims their `requests.storage`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::quantity::Quantity;

/// Resource amounts in milli-units, by quota resource name.
pub type Usage = BTreeMap<String, i128>;

fn milli(q: &Value) -> i128 {
    q.as_str()
        .map(|s| Quantity::parse(s).map(|q| q.milli()).unwrap_or(0))
        .or_else(|| q.as_i64().map(|n| i128::from(n) * 1000))
        .unwrap_or(0)
}

/// Sums a pod's container resources under `field` (`requests` or `limits`): the containers'
/// sum or the largest init container's, whichever is larger, plus the overhead.
fn pod_resources(spec: &Value, field: &str) -> BTreeMap<String, i128> {
    let mut sum: BTreeMap<String, i128> = BTreeMap::new();
    for c in spec["containers"].as_array().into_iter().flatten() {
        for (k, v) in c["resources"][field].as_object().into_iter().flatten() {
            *sum.entry(k.clone()).or_default() += milli(v);
        }
    }
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        for (k, v) in c["resources"][field].as_object().into_iter().flatten() {
            let e = sum.entry(k.clone()).or_default();
            *e = (*e).max(milli(v));
        }
    }
    for (k, v) in spec["overhead"].as_object().into_iter().flatten() {
        *sum.entry(k.clone()).or_default() += milli(v);
    }
    sum
}

/// What `obj` (of resource `plural` in `group`) counts against quotas.
pub fn usage(group: &str, plural: &str, obj: &Value) -> Usage {
    let mut u = Usage::new();
    let count = if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    };
    u.insert(count, 1000);
    match (group, plural) {
        ("", "pods") => {
            u.insert("pods".into(), 1000);
            for (field, prefix) in [("requests", "requests."), ("limits", "limits.")] {
                for (k, v) in pod_resources(&obj["spec"], field) {
                    u.insert(format!("{prefix}{k}"), v);
                    if field == "requests" && (k == "cpu" || k == "memory") {
                        u.insert(k, v);
                    }
                }
            }
        }
        ("", "services") => {
            u.insert("services".into(), 1000);
            let ty = obj["spec"]["type"].as_str().unwrap_or("ClusterIP");
            let ports = obj["spec"]["ports"].as_array().map_or(0, Vec::len) as i128;
            if ty == "NodePort" || ty == "LoadBalancer" {
                u.insert("services.nodeports".into(), ports * 1000);
            }
            if ty == "LoadBalancer" {
                u.insert("services.loadbalancers".into(), 1000);
            }
        }
        ("", "persistentvolumeclaims") => {
            u.insert("persistentvolumeclaims".into(), 1000);
            u.insert(
                "requests.storage".into(),
                milli(&obj["spec"]["resources"]["requests"]["storage"]),
            );
        }
        ("", legacy @ ("secrets" | "configmaps" | "replicationcontrollers" | "resourcequotas")) => {
            u.insert(legacy.to_string(), 1000);
        }
        _ => {}
    }
    u
}

/// Whether a pod counts against a quota with these `scopes` (`spec.scopes`): BestEffort
/// (no requests or limits), NotBestEffort, Terminating (`activeDeadlineSeconds` set),
/// NotTerminating. Objects other than pods count only against quotas without scopes.
pub fn covers(scopes: &[String], plural: &str, obj: &Value) -> bool {
    if scopes.is_empty() {
        return true;
    }
    if plural != "pods" {
        return false;
    }
    let spec = &obj["spec"];
    let best_effort =
        pod_resources(spec, "requests").is_empty() && pod_resources(spec, "limits").is_empty();
    let terminating = spec["activeDeadlineSeconds"].as_i64().is_some();
    scopes.iter().all(|s| match s.as_str() {
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        _ => true,
    })
}

/// A quota's `spec.hard` or `status.used` as milli-units.
pub fn parse(list: &Value) -> Usage {
    list.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), milli(v)))
        .collect()
}

/// A milli-unit amount as a quantity: counts and CPU as upstream writes them (`2`, `500m`),
/// byte amounts with a binary suffix when exact (`1Gi`).
pub fn format(resource: &str, milli: i128) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let units = milli / 1000;
    let bytes = resource.contains("memory") || resource.contains("storage");
    if bytes && units != 0 {
        for (suffix, size) in [
            ("Ti", 1i128 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ] {
            if units % size == 0 {
                return format!("{}{suffix}", units / size);
            }
        }
    }
    units.to_string()
}

/// `used` as a quota status list of quantities.
pub fn to_list(used: &Usage) -> Value {
    Value::Object(
        used.iter()
            .map(|(k, v)| (k.clone(), Value::String(format(k, *v))))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_count_their_requests_and_limits() {
        let pod = json!({"spec": {"containers": [
            {"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
            {"resources": {"requests": {"cpu": "250m"}}}],
            "initContainers": [{"resources": {"requests": {"cpu": "2"}}}]}});
        let u = usage("", "pods", &pod);
        assert_eq!(u["pods"], 1000);
        assert_eq!(u["count/pods"], 1000);
        assert_eq!(u["requests.cpu"], 2000, "the init container's is larger");
        assert_eq!(u["cpu"], 2000);
        assert_eq!(u["requests.memory"], 64 * 1024 * 1024 * 1000);
        assert_eq!(u["limits.cpu"], 1000);
        assert_eq!(format("requests.memory", u["requests.memory"]), "64Mi");
        assert_eq!(format("requests.cpu", 500), "500m");
        assert_eq!(format("pods", 3000), "3");
    }

    #[test]
    fn other_objects_count_once_and_services_their_ports() {
        let svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
        let u = usage("", "services", &svc);
        assert_eq!(u["services"], 1000);
        assert_eq!(u["services.nodeports"], 2000);
        let d = usage("apps", "deployments", &json!({}));
        assert_eq!(d, [("count/deployments.apps".to_string(), 1000)].into());
    }

    #[test]
    fn scopes_pick_pods() {
        let best = json!({"spec": {"containers": [{}]}});
        let bounded = json!({"spec": {"activeDeadlineSeconds": 5, "containers": [
            {"resources": {"requests": {"cpu": "1"}}}]}});
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(covers(&s(&["BestEffort"]), "pods", &best));
        assert!(!covers(&s(&["BestEffort"]), "pods", &bounded));
        assert!(covers(
            &s(&["NotBestEffort", "Terminating"]),
            "pods",
            &bounded
        ));
        assert!(!covers(&s(&["NotTerminating"]), "pods", &bounded));
        assert!(!covers(&s(&["BestEffort"]), "configmaps", &json!({})));
        assert!(covers(&[], "configmaps", &json!({})));
    }
}
