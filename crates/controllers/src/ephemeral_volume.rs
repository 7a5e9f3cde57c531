//! The ephemeral volume controller (`ephemeral-volume-controller`), as upstream's: a pod's
//! generic ephemeral volume (`ephemeral.volumeClaimTemplate`) gets a PersistentVolumeClaim
//! named `<pod>-<volume>`, made from the template and owned by the pod (controller,
//! blocking its deletion), so it goes with the pod through the garbage collector. A claim of
//! that name the pod does not own is left alone and reported. Pods being deleted get none.

use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::events::{Recorder, Type, reference};
use crate::runtime::{self, Informers, Shared};

/// The controller's name.
const NAME: &str = "ephemeral-volume-controller";

struct Ctx {
    client: kube::Client,
    claims: Store<PersistentVolumeClaim>,
    recorder: Recorder,
}

/// Starts the controller: a loop over pods, woken for a pod when a claim it owns changes.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        claims: informers.store::<PersistentVolumeClaim>(),
        recorder: shared.recorder(NAME),
    });
    // Only pods with an ephemeral volume have anything to do here: the others' events (every
    // status write in the cluster) never reach the queue.
    let pods = informers
        .subscribe::<Pod>()
        .filter(|p| futures::future::ready(p.as_ref().is_ok_and(has_ephemeral_volumes)));
    let controller = Controller::for_stream(pods, informers.store::<Pod>()).watches_stream(
        informers.subscribe::<PersistentVolumeClaim>(),
        |c: PersistentVolumeClaim| {
            let ns = c.namespace()?;
            let owner = c.owner_references().iter().find(|o| o.kind == "Pod")?;
            Some(ObjectRef::new(&owner.name).within(&ns))
        },
    );
    runtime::run(NAME, controller, shared, ctx, reconcile)
}

fn has_ephemeral_volumes(pod: &Pod) -> bool {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes.into_iter().flatten().any(|v| v.ephemeral.is_some())
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> runtime::Result<Action> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    let ns = pod.namespace().unwrap_or_default();
    for v in volumes.into_iter().flatten() {
        let Some(template) = v
            .ephemeral
            .as_ref()
            .and_then(|e| e.volume_claim_template.as_ref())
        else {
            continue;
        };
        let name = pod::ephemeral_claim_name(&pod, v);
        if let Some(existing) = ctx.claims.get(&ObjectRef::new(&name).within(&ns)) {
            if !pod::claim_is_for_pod(&existing, &pod) {
                let why = format!(
                    "PVC {ns}/{name} was not created for pod {ns}/{} (pod is not owner)",
                    pod.name_any()
                );
                let r = reference(pod.as_ref());
                ctx.recorder
                    .publish(&r, Type::Warning, "FailedBinding", &why)
                    .await;
            }
            continue;
        }
        let meta = template.metadata.clone().unwrap_or_default();
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(ns.clone()),
                labels: meta.labels,
                annotations: meta.annotations,
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Pod".into(),
                    name: pod.name_any(),
                    uid: pod.metadata.uid.clone().unwrap_or_default(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..ObjectMeta::default()
            },
            spec: Some(template.spec.clone()),
            status: None,
        };
        let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
        match api.create(&PostParams::default(), &claim).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}
