//! The PV protection controller (`pv-protection-controller`), as upstream's: a volume being
//! deleted keeps its `kubernetes.io/pv-protection` finalizer (added at creation by the
//! `StorageObjectInUseProtection` admission step) while it is `Bound` to a claim; once not,
//! the finalizer goes and the deletion completes.

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};

use crate::runtime::{self, Informers, Shared};

/// The controller's name.
const NAME: &str = "pv-protection-controller";
/// The finalizer it removes.
const FINALIZER: &str = "kubernetes.io/pv-protection";

/// Starts the controller: a loop over volumes.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let controller = Controller::for_stream(
        informers.subscribe::<PersistentVolume>(),
        informers.store::<PersistentVolume>(),
    );
    let client = Arc::new(shared.client.clone());
    runtime::run(NAME, controller, shared, client, reconcile)
}

async fn reconcile(
    volume: Arc<PersistentVolume>,
    client: Arc<kube::Client>,
) -> runtime::Result<Action> {
    let bound = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    if volume.metadata.deletion_timestamp.is_none() || bound {
        return Ok(Action::await_change());
    }
    let api: Api<PersistentVolume> = Api::all(client.as_ref().clone());
    runtime::remove_finalizer(&api, &volume.metadata, FINALIZER).await?;
    Ok(Action::await_change())
}
