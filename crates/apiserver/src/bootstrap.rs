//! The objects every cluster starts with: the four system namespaces, the `kubernetes`
//! Service in `default`, and the two system PriorityClasses, created on every start if
//! missing and never overwritten; and the `kubernetes` Service's Endpoints and EndpointSlice,
//! pointing at this API server, rewritten on every start (upstream's endpoint reconciler);
//! and RBAC's bootstrap policy ([`crate::authz::rbac::bootstrap`]).

use std::net::IpAddr;

use api::resources::find;
use serde_json::{Value, json};

use crate::registry::{Caller, Registry};

/// Namespaces created at start-up.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates what is missing; points the `kubernetes` Service at `advertise:port` when given.
pub async fn ensure_defaults(
    registry: &Registry,
    port: u16,
    advertise: Option<IpAddr>,
) -> Result<(), api::Status> {
    let namespaces = find("", "v1", "namespaces").expect("served");
    for ns in SYSTEM_NAMESPACES {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        ignore_existing(registry.create(namespaces, None, obj, Caller::SERVER).await)?;
    }
    let services = find("", "v1", "services").expect("served");
    let ip = registry.service_range().nth(1).to_string();
    let svc = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
        },
    });
    ignore_existing(
        registry
            .create(services, Some("default"), svc, Caller::SERVER)
            .await,
    )?;
    if let Some(address) = advertise {
        put(registry, ("", "v1", "endpoints"), endpoints(address, port)).await?;
        put(
            registry,
            ("discovery.k8s.io", "v1", "endpointslices"),
            endpoint_slice(address, port),
        )
        .await?;
    }
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
        ignore_existing(registry.create(classes, None, pc, Caller::SERVER).await)?;
    }
    crate::authz::rbac::bootstrap::reconcile(registry).await
}

/// The `kubernetes` Endpoints: labelled so that the mirroring controller leaves it alone, as
/// upstream's is (the API server writes the EndpointSlice itself).
fn endpoints(address: IpAddr, port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{
            "addresses": [{"ip": address.to_string()}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }],
    })
}

fn endpoint_slice(address: IpAddr, port: u16) -> Value {
    let family = if address.is_ipv4() { "IPv4" } else { "IPv6" };
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": family,
        "endpoints": [{"addresses": [address.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    })
}

/// Creates `obj` in `default`, or replaces what is there unless it already says the same.
async fn put(
    registry: &Registry,
    (group, version, plural): (&str, &str, &str),
    mut obj: Value,
) -> Result<(), api::Status> {
    let r = find(group, version, plural).expect("served");
    let ns = Some("default");
    match registry.get(r, ns, "kubernetes").await {
        Err(s) if s.code == 404 => {
            ignore_existing(registry.create(r, ns, obj, Caller::SERVER).await)
        }
        Err(s) => Err(s),
        Ok(current) => {
            let same = ["subsets", "endpoints", "ports"]
                .iter()
                .all(|k| current.get(*k) == obj.get(*k));
            if same {
                return Ok(());
            }
            obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            registry
                .update(r, ns, "kubernetes", obj, None, Caller::SERVER)
                .await
                .map(drop)
        }
    }
}

fn ignore_existing(r: Result<serde_json::Value, api::Status>) -> Result<(), api::Status> {
    match r {
        Ok(_) => Ok(()),
        Err(s) if s.code == 409 => Ok(()),
        Err(s) => Err(s),
    }
}
