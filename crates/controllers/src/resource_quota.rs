//! The ResourceQuota controller: keeps each quota's `status.hard` (its `spec.hard`) and
//! `status.used`, counted from the objects in its namespace: pods that are not finished
//! (within the quota's scopes) for the compute resources and pod counts, and the objects of
//! each `count/<resource>[.<group>]` or legacy name (`services`, `secrets`, ...). The API
//! server's quota admission adds each admitted object to `status.used` at once; this
//! controller recounts after changes to the quota and its namespace's pods, and every
//! minute for the other kinds.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::Value;

use crate::runtime::{self, Informers, Result, Shared};

/// How often counts of kinds other than pods are refreshed.
const RESYNC: Duration = Duration::from_secs(60);

struct Ctx {
    client: kube::Client,
    quotas: Store<ResourceQuota>,
    pods: Store<Pod>,
}

/// Starts the ResourceQuota controller.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let quotas = informers.store::<ResourceQuota>();
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        quotas: quotas.clone(),
        pods: informers.store::<Pod>(),
    });
    let lookup = quotas.clone();
    let controller = Controller::for_stream(informers.subscribe::<ResourceQuota>(), quotas)
        .watches_stream(informers.subscribe::<Pod>(), move |pod: Pod| {
            let ns = pod.namespace().unwrap_or_default();
            lookup
                .state()
                .iter()
                .filter(|q| q.namespace().as_deref() == Some(ns.as_str()))
                .map(|q| ObjectRef::from_obj(q.as_ref()))
                .collect::<Vec<_>>()
        });
    runtime::run(
        "resourcequota-controller",
        controller,
        shared,
        ctx,
        reconcile,
    )
}

/// The served resource a quota name counts (`count/deployments.apps`, `services`, ...),
/// other than pods.
fn counted(name: &str) -> Option<&'static api::resources::Resource> {
    let (group, plural) = match name {
        "services" | "services.nodeports" | "services.loadbalancers" => ("", "services"),
        "secrets"
        | "configmaps"
        | "replicationcontrollers"
        | "resourcequotas"
        | "persistentvolumeclaims" => ("", name),
        "requests.storage" => ("", "persistentvolumeclaims"),
        other => {
            let rest = other.strip_prefix("count/")?;
            match rest.split_once('.') {
                Some((plural, group)) => (group, plural),
                None => ("", rest),
            }
        }
    };
    if (group, plural) == ("", "pods") {
        return None;
    }
    api::resources::builtin()
        .iter()
        .find(|r| r.group == group && r.plural == plural && r.namespaced)
}

async fn reconcile(quota: Arc<ResourceQuota>, ctx: Arc<Ctx>) -> Result<Action> {
    let Some(quota) = ctx.quotas.get(&ObjectRef::from_obj(quota.as_ref())) else {
        return Ok(Action::await_change());
    };
    let ns = quota.namespace().unwrap_or_default();
    let spec = serde_json::to_value(&quota.spec)?;
    let hard = api::quota::parse(&spec["hard"]);
    let scopes: Vec<String> = quota
        .spec
        .as_ref()
        .and_then(|s| s.scopes.clone())
        .unwrap_or_default();
    let mut used: api::quota::Usage = hard.keys().map(|k| (k.clone(), 0)).collect();
    // Pods from the cache.
    for pod in ctx.pods.state() {
        if pod.metadata.namespace.as_deref() != Some(ns.as_str()) || pod::is_terminal(&pod) {
            continue;
        }
        let obj = serde_json::to_value(pod.as_ref())?;
        if !api::quota::covers(&scopes, "pods", &obj) {
            continue;
        }
        for (k, v) in api::quota::usage("", "pods", &obj) {
            if let Some(u) = used.get_mut(&k) {
                *u += v;
            }
        }
    }
    // Other kinds, listed (only for quotas without scopes: scopes cover pods alone).
    if scopes.is_empty() {
        let mut listed: Vec<&'static api::resources::Resource> = Vec::new();
        for key in hard.keys() {
            if let Some(r) = counted(key)
                && !listed.contains(&r)
            {
                listed.push(r);
            }
        }
        for r in listed {
            let ar = ApiResource {
                group: r.group.clone(),
                version: r.version.clone(),
                api_version: r.api_version(),
                kind: r.kind.clone(),
                plural: r.plural.clone(),
            };
            let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &ar);
            for obj in api.list(&ListParams::default()).await?.items {
                let v = serde_json::to_value(&obj)?;
                for (k, n) in api::quota::usage(&r.group, &r.plural, &v) {
                    if let Some(u) = used.get_mut(&k) {
                        *u += n;
                    }
                }
            }
        }
    }
    let status = serde_json::json!({
        "hard": spec["hard"].clone(),
        "used": api::quota::to_list(&used),
    });
    let old = serde_json::to_value(&quota.status).unwrap_or(Value::Null);
    if !same_status(&old, &status) {
        let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(
            &quota.name_any(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": status})),
        )
        .await?;
    }
    Ok(Action::requeue(RESYNC))
}

/// Equal statuses, comparing quantities by value (`1000m` is `1`).
fn same_status(old: &Value, new: &Value) -> bool {
    ["hard", "used"].iter().all(|k| {
        api::quota::parse(&old[*k]) == api::quota::parse(&new[*k])
            && old[*k].as_object().map(|m| m.len()) == new[*k].as_object().map(|m| m.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_names_map_to_served_resources() {
        assert_eq!(
            counted("count/deployments.apps").map(|r| r.kind.as_str()),
            Some("Deployment")
        );
        assert_eq!(
            counted("configmaps").map(|r| r.kind.as_str()),
            Some("ConfigMap")
        );
        assert_eq!(
            counted("services.nodeports").map(|r| r.kind.as_str()),
            Some("Service")
        );
        assert_eq!(
            counted("count/secrets").map(|r| r.kind.as_str()),
            Some("Secret")
        );
        assert!(counted("pods").is_none());
        assert!(counted("requests.cpu").is_none());
        assert!(counted("count/nodes").is_none(), "cluster-scoped");
    }

    #[test]
    fn statuses_compare_by_value() {
        let a = serde_json::json!({"hard": {"cpu": "1"}, "used": {"cpu": "1000m"}});
        let b = serde_json::json!({"hard": {"cpu": "1"}, "used": {"cpu": "1"}});
        assert!(same_status(&a, &b));
        let c = serde_json::json!({"hard": {"cpu": "1"}, "used": {"cpu": "2"}});
        assert!(!same_status(&a, &c));
    }
}
