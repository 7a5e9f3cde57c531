//! Upstream's Node authorizer: what a node agent (`system:node:<name>` in `system:nodes`) may
//! do. Its rules are the `system:node` role's, and where the URL names the object, only its own
//! Node and Lease (what upstream's NodeRestriction admission adds). A node reads a Secret,
//! ConfigMap, PersistentVolumeClaim or PersistentVolume only by name, and only when a pod bound
//! to it uses that object, and a token only for an account one of its pods runs as (the token
//! request checks the pod it is bound to). Upstream keeps a graph fed by informers; here the node's pods are
//! listed when such a read comes (an agent makes them when it starts containers and refreshes
//! volumes).
//!
//! The pod half of upstream's NodeRestriction (a node changes the status of, deletes or evicts
//! only pods bound to it) is an admission step, `admission::node_restriction`.

use api::Status;
use api::request::RequestInfo;
use futures::future::BoxFuture;
use serde_json::Value;

use super::{Attributes, Authorizer, Decision};
use crate::authn::Identity;
use crate::podlogs::resource;
use crate::registry::{ListOptions, Registry};

/// The Node authorizer; it reads the node's pods from the registry.
pub(super) struct NodeAuthorizer {
    registry: Registry,
}

impl NodeAuthorizer {
    pub(super) fn new(registry: Registry) -> NodeAuthorizer {
        NodeAuthorizer { registry }
    }
}

impl Authorizer for NodeAuthorizer {
    fn authorize<'a>(&'a self, a: &'a Attributes<'a>) -> BoxFuture<'a, Result<Decision, Status>> {
        Box::pin(async move {
            let no_opinion = Ok(Decision::NoOpinion(String::new()));
            let (Some(node), Some(info)) = (node_name(a.user), a.request) else {
                return no_opinion;
            };
            if !node_may(node, a.verb, info) {
                return no_opinion;
            }
            if !self.related(node, info).await? {
                return Ok(Decision::NoOpinion(format!(
                    "no relationship found between node '{node}' and this object"
                )));
            }
            Ok(Decision::Allow(String::new()))
        })
    }
}

impl NodeAuthorizer {
    /// Whether the node may read the object `info` names, for the kinds reached only through
    /// a pod; true for every other request.
    async fn related(&self, node: &str, info: &RequestInfo) -> Result<bool, Status> {
        let r = &*info.resource;
        let Some(name) = info.name.as_deref().filter(|_| r.group.is_empty()) else {
            return Ok(true);
        };
        if !matches!(
            r.plural.as_str(),
            "secrets"
                | "configmaps"
                | "persistentvolumeclaims"
                | "persistentvolumes"
                | "serviceaccounts"
        ) {
            return Ok(true);
        }
        related(&self.registry, node, info, name).await
    }
}

/// The node a node agent's identity names (`system:node:<name>` in `system:nodes`).
pub fn node_name(who: &Identity) -> Option<&str> {
    if who.groups.iter().any(|g| g == "system:nodes") {
        who.user.strip_prefix("system:node:")
    } else {
        None
    }
}

/// What node `node`'s agent may do: the rules of upstream's Node authorizer (its `system:node`
/// role), and, where the URL names the object, only to its own Node and Lease (what upstream's
/// NodeRestriction admission adds). Reading Secrets, ConfigMaps and volumes is limited to `get`
/// by name, and further to those its pods use ([`related`]).
fn node_may(node: &str, verb: &str, info: &RequestInfo) -> bool {
    let read = matches!(verb, "get" | "list" | "watch");
    let own = info.name.as_deref() == Some(node);
    let r = &*info.resource;
    match (
        r.group.as_str(),
        r.plural.as_str(),
        info.subresource.as_deref(),
    ) {
        ("", "nodes", None) => {
            read || verb == "create" || (own && matches!(verb, "update" | "patch" | "delete"))
        }
        ("", "nodes", Some("status")) => own && matches!(verb, "get" | "update" | "patch"),
        ("", "pods", None) => read || matches!(verb, "create" | "delete"),
        ("", "pods", Some("status")) => matches!(verb, "get" | "update" | "patch"),
        ("", "pods", Some("eviction")) => verb == "create",
        ("", "services" | "endpoints", None) | ("discovery.k8s.io", "endpointslices", None) => read,
        ("", "configmaps" | "secrets" | "persistentvolumeclaims" | "persistentvolumes", None) => {
            verb == "get"
        }
        ("", "events", None) | ("events.k8s.io", "events", None) => {
            matches!(verb, "create" | "update" | "patch")
        }
        ("coordination.k8s.io", "leases", None) => {
            info.namespace.as_deref() == Some("kube-node-lease")
                && (verb == "create"
                    || (own && matches!(verb, "get" | "update" | "patch" | "delete")))
        }
        ("certificates.k8s.io", "certificatesigningrequests", None) => {
            matches!(verb, "create" | "get" | "list" | "watch")
        }
        // Tokens for its pods' accounts; which pod a token is bound to, the token request
        // itself checks (upstream's NodeRestriction).
        ("", "serviceaccounts", Some("token")) => verb == "create",
        ("authentication.k8s.io", "tokenreviews", None)
        | ("authorization.k8s.io", "subjectaccessreviews", None) => verb == "create",
        ("node.k8s.io", "runtimeclasses", None)
        | ("storage.k8s.io", "csidrivers" | "csinodes" | "volumeattachments", None) => read,
        _ => false,
    }
}

/// Whether one of the node's pods uses the secret, config map, claim, volume or service
/// account `name`.
async fn related(
    reg: &Registry,
    node: &str,
    info: &RequestInfo,
    name: &str,
) -> Result<bool, Status> {
    let r = &*info.resource;
    let kind = r.plural.as_str();
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
        "serviceaccounts" => add(&spec["serviceAccountName"]),
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
