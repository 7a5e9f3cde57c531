//! The PVC protection controller (`pvc-protection-controller`), as upstream's: a claim being
//! deleted keeps its `kubernetes.io/pvc-protection` finalizer (added at creation by the
//! `StorageObjectInUseProtection` admission step) while a pod uses it: a pod placed on a
//! node and not finished, with a `persistentVolumeClaim` volume naming the claim or a generic
//! ephemeral volume whose claim it is. Once none does, seen in the cache and then in a live
//! list of the namespace's pods (a pod just made may not be cached yet), the finalizer goes
//! and the deletion completes.

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::runtime::{self, Informers, Shared};

/// The controller's name.
const NAME: &str = "pvc-protection-controller";
/// The finalizer it removes.
const FINALIZER: &str = "kubernetes.io/pvc-protection";

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
}

/// Starts the controller: a loop over claims, woken for the claims a pod uses when the pod
/// changes or goes.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        pods: informers.store::<Pod>(),
    });
    let controller = Controller::for_stream(
        informers.subscribe::<PersistentVolumeClaim>(),
        informers.store::<PersistentVolumeClaim>(),
    )
    .watches_stream(informers.subscribe::<Pod>(), |p: Pod| {
        let ns = p.namespace().unwrap_or_default();
        pod::claim_names(&p)
            .into_iter()
            .map(|c| ObjectRef::new(&c).within(&ns))
            .collect::<Vec<_>>()
    });
    runtime::run(NAME, controller, shared, ctx, reconcile)
}

/// Whether `pod` keeps claim `name` of its namespace in use: it is on a node (the agent
/// refuses to start a pod whose claim is being deleted, so only placed pods count) and not
/// finished.
fn uses(pod: &Pod, name: &str) -> bool {
    let placed = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    placed && !pod::is_terminal(pod) && pod::claim_names(pod).iter().any(|c| c == name)
}

async fn reconcile(claim: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> runtime::Result<Action> {
    let finalizers = claim.metadata.finalizers.as_deref().unwrap_or_default();
    if claim.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let (ns, name) = (claim.namespace().unwrap_or_default(), claim.name_any());
    let cached = ctx.pods.state();
    let in_namespace = |p: &&Arc<Pod>| p.metadata.namespace.as_deref() == Some(ns.as_str());
    if cached.iter().filter(in_namespace).any(|p| uses(p, &name)) {
        return Ok(Action::await_change());
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let live = pods.list(&ListParams::default()).await?;
    if live.items.iter().any(|p| uses(p, &name)) {
        return Ok(Action::await_change());
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    runtime::remove_finalizer(&claims, &claim.metadata, FINALIZER).await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_placed_unfinished_pods_use_their_claims() {
        let pod = |node: &str, phase: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"nodeName": node, "containers": [], "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "tmp", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]},
                "status": {"phase": phase}}))
            .unwrap()
        };
        let running = pod("n1", "Running");
        assert_eq!(pod::claim_names(&running), ["data", "web-tmp"]);
        assert!(uses(&running, "data") && uses(&running, "web-tmp"));
        assert!(!uses(&running, "other"));
        assert!(!uses(&pod("", "Pending"), "data"), "not placed");
        assert!(!uses(&pod("n1", "Succeeded"), "data"), "finished");
    }
}
