//! The relationship half of upstream's Node authorizer: a node may read a Secret, ConfigMap,
//! PersistentVolumeClaim or PersistentVolume only when a pod bound to it uses that object, and
//! (as upstream's NodeRestriction admission) change the status of, delete or evict only pods
//! bound to it.
//! Upstream keeps a graph fed by informers; here the node's pods are listed when such a read
//! comes (a node agent makes them when it starts containers and refreshes volumes).

use serde_json::Value;

use crate::podlogs::resource;
use crate::registry::{ListOptions, Registry};
use api::Status;
use api::request::RequestInfo;

/// Refuses what node `node` (user `user`) may not do for want of a relationship: `Ok(())` for
/// requests that need none.
pub async fn check(
    reg: &Registry,
    user: &str,
    node: &str,
    info: &RequestInfo,
) -> Result<(), Status> {
    let r = info.resource;
    let Some(name) = info.name.as_deref().filter(|_| r.group.is_empty()) else {
        return Ok(());
    };
    // A pod's status, deletion and eviction: only pods bound to the node (NodeRestriction).
    let what = match (r.plural, info.subresource.as_deref(), info.verb) {
        ("pods", Some("status"), "update" | "patch") => Some("update pod status for"),
        ("pods", None, "delete") => Some("delete"),
        ("pods", Some("eviction"), _) => Some("evict"),
        _ => None,
    };
    if let Some(what) = what {
        return match reg.get(r, info.namespace.as_deref(), name).await {
            Ok(pod) if pod["spec"]["nodeName"].as_str() != Some(node) => Err(Status::new(
                403,
                "Forbidden",
                format!(
                    "pods {name:?} is forbidden: node {node:?} can only {what} pods with spec.nodeName set to itself"
                ),
            )),
            // Not there: the request itself says so.
            Ok(_) | Err(Status { code: 404, .. }) => Ok(()),
            Err(s) => Err(s),
        };
    }
    if !matches!(
        r.plural,
        "secrets" | "configmaps" | "persistentvolumeclaims" | "persistentvolumes"
    ) {
        return Ok(());
    }
    if related(reg, node, info, name).await? {
        return Ok(());
    }
    let s = Status::forbidden(r, name, user, info.verb, info.namespace.as_deref());
    let message = format!(
        "{}: no relationship found between node '{node}' and this object",
        s.message
    );
    Err(Status { message, ..s })
}

/// Whether one of the node's pods uses the secret, config map, claim or volume `name`.
async fn related(
    reg: &Registry,
    node: &str,
    info: &RequestInfo,
    name: &str,
) -> Result<bool, Status> {
    let r = info.resource;
    let kind = r.plural;
    let pods = node_pods(
        reg,
        node,
        info.namespace.as_deref().filter(|_| r.namespaced),
    )
    .await?;
    if kind != "persistentvolumes" {
        return Ok(pods.iter().any(|p| uses(p, kind).iter().any(|n| n == name)));
    }
    // A volume is the node's when one of its pods' claims is bound to it.
    for p in &pods {
        let ns = p["metadata"]["namespace"].as_str().unwrap_or_default();
        for claim in uses(p, "persistentvolumeclaims") {
            if let Ok(pvc) = reg
                .get(resource("persistentvolumeclaims"), Some(ns), &claim)
                .await
                && pvc["spec"]["volumeName"].as_str() == Some(name)
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The pods bound to `node`, in `ns` or everywhere.
async fn node_pods(reg: &Registry, node: &str, ns: Option<&str>) -> Result<Vec<Value>, Status> {
    let mut opts = ListOptions::default();
    opts.fields
        .0
        .push(("spec.nodeName".into(), true, node.to_string()));
    Ok(reg.list(resource("pods"), ns, &opts).await?.items)
}

/// The names of the objects of `kind` that `pod` uses.
fn uses(pod: &Value, kind: &str) -> Vec<String> {
    let spec = &pod["spec"];
    let mut names = Vec::new();
    let mut add = |v: &Value| {
        if let Some(n) = v.as_str().filter(|n| !n.is_empty()) {
            names.push(n.to_string());
        }
    };
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let containers: Vec<Value> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| list(&spec[*k]))
        .collect();
    let volumes = list(&spec["volumes"]);
    // Secrets and config maps are named alike from environments and projected volumes.
    let refs = match kind {
        "secrets" => Some(("secretKeyRef", "secretRef", "secret")),
        "configmaps" => Some(("configMapKeyRef", "configMapRef", "configMap")),
        _ => None,
    };
    if let Some((key_ref, from_ref, source)) = refs {
        for c in &containers {
            for e in list(&c["env"]) {
                add(&e["valueFrom"][key_ref]["name"]);
            }
            for e in list(&c["envFrom"]) {
                add(&e[from_ref]["name"]);
            }
        }
        for v in &volumes {
            for s in list(&v["projected"]["sources"]) {
                add(&s[source]["name"]);
            }
        }
    }
    match kind {
        "secrets" => {
            for s in list(&spec["imagePullSecrets"]) {
                add(&s["name"]);
            }
            for v in &volumes {
                add(&v["secret"]["secretName"]);
                add(&v["azureFile"]["secretName"]);
                for plugin in [
                    "cephfs",
                    "rbd",
                    "iscsi",
                    "flexVolume",
                    "scaleIO",
                    "storageos",
                ] {
                    add(&v[plugin]["secretRef"]["name"]);
                }
                add(&v["csi"]["nodePublishSecretRef"]["name"]);
            }
        }
        "configmaps" => {
            for v in &volumes {
                add(&v["configMap"]["name"]);
            }
        }
        "persistentvolumeclaims" => {
            let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
            for v in &volumes {
                add(&v["persistentVolumeClaim"]["claimName"]);
                if !v["ephemeral"].is_null() {
                    // A generic ephemeral volume's claim is named after the pod and volume.
                    let volume = v["name"].as_str().unwrap_or_default();
                    add(&Value::String(format!("{pod_name}-{volume}")));
                }
            }
        }
        _ => {}
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_uses_what_it_names() {
        let pod = json!({"metadata": {"name": "web"}, "spec": {
            "imagePullSecrets": [{"name": "pull"}],
            "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
            "containers": [{"name": "c", "env": [
                {"name": "A", "valueFrom": {"secretKeyRef": {"name": "env", "key": "k"}}},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}]}],
            "volumes": [
                {"name": "s", "secret": {"secretName": "certs"}},
                {"name": "p", "projected": {"sources": [{"configMap": {"name": "bundle"}}, {"secret": {"name": "token"}}]}},
                {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {}}}]}});
        let mut secrets = uses(&pod, "secrets");
        secrets.sort();
        assert_eq!(secrets, ["certs", "env", "init-env", "pull", "token"]);
        assert_eq!(uses(&pod, "configmaps"), ["settings", "bundle"]);
        assert_eq!(
            uses(&pod, "persistentvolumeclaims"),
            ["data", "web-scratch"]
        );
    }
}
