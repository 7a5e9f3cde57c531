//! The objects every cluster starts with: the four system namespaces, the `kubernetes`
//! Service in `default`, and the two system PriorityClasses. Created on every start if
//! missing, never overwritten.

use api::resources::find;
use serde_json::json;

use crate::registry::Registry;

/// The first address of the default service CIDR (10.43.0.0/16), kept for the `kubernetes`
/// Service.
pub const KUBERNETES_SERVICE_IP: &str = "10.43.0.1";

/// Namespaces created at start-up.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates what is missing.
pub async fn ensure_defaults(registry: &Registry, port: u16) -> Result<(), api::Status> {
    let namespaces = find("", "v1", "namespaces").expect("served");
    for ns in SYSTEM_NAMESPACES {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        ignore_existing(registry.create(namespaces, None, obj, false).await)?;
    }
    let services = find("", "v1", "services").expect("served");
    let svc = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": KUBERNETES_SERVICE_IP,
            "clusterIPs": [KUBERNETES_SERVICE_IP],
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
        },
    });
    ignore_existing(registry.create(services, Some("default"), svc, false).await)?;
    let classes = find("scheduling.k8s.io", "v1", "priorityclasses").expect("served");
    for (name, value, description) in [
        (
            "system-node-critical",
            2_000_001_000,
            "Used for system critical pods that must not be moved from their current node.",
        ),
        (
            "system-cluster-critical",
            2_000_000_000,
            "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
        ),
    ] {
        let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value, "description": description});
        ignore_existing(registry.create(classes, None, pc, false).await)?;
    }
    Ok(())
}

fn ignore_existing(r: Result<serde_json::Value, api::Status>) -> Result<(), api::Status> {
    match r {
        Ok(_) => Ok(()),
        Err(s) if s.code == 409 => Ok(()),
        Err(s) => Err(s),
    }
}
