//! The built-in dynamic provisioner `rancher.io/local-path` (`local-path-provisioner`), as
//! k3s ships it: a directory per volume on the node the claim's first pod was scheduled to.
//!
//! At start it makes the `local-path` StorageClass (the cluster's default, under
//! `WaitForFirstConsumer`, reclaim policy `Delete`) unless one of that name exists. A claim
//! handed to it (the PersistentVolume controller's `volume.kubernetes.io/storage-provisioner`
//! annotation) with the scheduler's `volume.kubernetes.io/selected-node` gets a directory
//! `<dir>/pvc-<uid>_<namespace>_<name>` on that node, made by a helper pod there
//! (`mkdir -m 0777`, as k3s' setup script), then a `hostPath` PersistentVolume `pvc-<uid>`
//! pinned to the node by its node affinity and pre-bound to the claim. A `Released` volume of
//! its own under `Delete` has its directory removed by another helper pod, then the volume
//! object deleted. Events are the external provisioner library's: `Provisioning`,
//! `ProvisioningSucceeded`, `ProvisioningFailed`, `VolumeFailedDelete`.
//!
//! Helper pods run in `kube-system` with the image [`crate::Options::local_path_helper_image`];
//! each names the claim or volume it works for in an annotation, which wakes that loop when
//! the pod changes.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::{Value, json};

use crate::events::{Recorder, Type, reference};
use crate::persistentvolume::{PROVISIONED_BY, SELECTED_NODE, STORAGE_PROVISIONER};
use crate::runtime::{self, Informers, Shared};

/// The controller's name.
const NAME: &str = "local-path-provisioner";
/// The provisioner's name in StorageClasses.
const PROVISIONER: &str = "rancher.io/local-path";
/// The StorageClass made at start.
const CLASS: &str = "local-path";
/// Where helper pods run.
const NAMESPACE: &str = "kube-system";
/// On a volume of ours: the node its directory is on (k3s' annotation).
const VOLUME_NODE: &str = "local.path.provisioner/selected-node";
/// On a helper pod: the claim (`namespace/name`) or volume it works for.
const FOR_CLAIM: &str = "local.path.provisioner/claim";
const FOR_VOLUME: &str = "local.path.provisioner/volume";

struct Ctx {
    client: kube::Client,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    pods: Store<Pod>,
    recorder: Recorder,
    dir: String,
    image: String,
}

/// Starts the provisioner: the class, then one loop over claims and one over volumes, each
/// woken by its helper pods.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let options = &shared.options;
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        volumes: informers.store::<PersistentVolume>(),
        classes: informers.store::<StorageClass>(),
        pods: informers.store::<Pod>(),
        recorder: shared.recorder(&format!("{PROVISIONER}_{NAME}")),
        dir: options.local_storage_path.display().to_string(),
        image: options.local_path_helper_image.clone(),
    });
    let claims = Controller::for_stream(
        informers.subscribe::<PersistentVolumeClaim>(),
        informers.store::<PersistentVolumeClaim>(),
    )
    .watches_stream(informers.subscribe::<Pod>(), |p: Pod| {
        let (ns, name) = helper_for(&p, FOR_CLAIM)?.split_once('/')?;
        Some(ObjectRef::new(name).within(ns))
    });
    let volumes = Controller::for_stream(
        informers.subscribe::<PersistentVolume>(),
        ctx.volumes.clone(),
    )
    .watches_stream(informers.subscribe::<Pod>(), |p: Pod| {
        helper_for(&p, FOR_VOLUME).map(ObjectRef::new)
    });
    let class = ensure_class(shared.client.clone());
    let claims = runtime::run(NAME, claims, shared, ctx.clone(), sync_claim);
    let volumes = runtime::run(NAME, volumes, shared, ctx, sync_volume);
    Box::pin(async move {
        futures::join!(class, claims, volumes);
    })
}

/// What a helper pod works for, from its annotation `key`.
fn helper_for<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    let ours = pod.metadata.namespace.as_deref() == Some(NAMESPACE);
    annotation(&pod.metadata, key).filter(|_| ours)
}

/// Makes the `local-path` class unless it exists, trying again while the API refuses.
async fn ensure_class(client: kube::Client) {
    let api: Api<StorageClass> = Api::all(client);
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": CLASS, "annotations": {
            "storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": PROVISIONER,
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
    }))
    .expect("a valid StorageClass");
    let mut delay = Duration::from_millis(200);
    loop {
        match api.create(&PostParams::default(), &class).await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 409 => return,
            Err(e) => tracing::info!("{NAME}: creating StorageClass {CLASS}: {e}"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// The annotation `key` of `meta`.
fn annotation<'a>(meta: &'a kube::api::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The claim's class, when this provisioner serves it.
fn our_class(claim: &PersistentVolumeClaim, ctx: &Ctx) -> Option<Arc<StorageClass>> {
    let name = claim.spec.as_ref()?.storage_class_name.as_deref()?;
    let class = ctx.classes.get(&ObjectRef::new(name))?;
    (class.provisioner == PROVISIONER).then_some(class)
}

async fn sync_claim(claim: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> runtime::Result<Action> {
    let bound = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
    let handed = annotation(&claim.metadata, STORAGE_PROVISIONER[0]) == Some(PROVISIONER);
    let class = our_class(&claim, &ctx);
    let (Some(class), true, None, None) = (
        class,
        handed,
        bound.filter(|v| !v.is_empty()),
        claim.metadata.deletion_timestamp.as_ref(),
    ) else {
        return Ok(Action::await_change());
    };
    let volume = format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or_default());
    let (ns, name) = (claim.namespace().unwrap_or_default(), claim.name_any());
    let path = format!("{}/{volume}_{ns}_{name}", ctx.dir);
    let helper = Helper {
        name: format!("helper-pod-create-{volume}"),
        node: annotation(&claim.metadata, SELECTED_NODE).unwrap_or_default(),
        path: &path,
        annotation: (FOR_CLAIM, format!("{ns}/{name}")),
        script: "mkdir -m 0777 -p \"$VOL_DIR\"",
    };
    if ctx.volumes.get(&ObjectRef::new(&volume)).is_some() {
        // Made; its helper may have outlived a failed removal.
        helper.remove_finished(&ctx).await?;
        return Ok(Action::await_change());
    }
    let r = reference(claim.as_ref());
    if helper.node.is_empty() {
        let why = format!(
            "failed to provision volume with StorageClass \"{}\": configuration error, no node was specified",
            class.name_any()
        );
        ctx.recorder
            .publish(&r, Type::Warning, "ProvisioningFailed", &why)
            .await;
        return Ok(Action::await_change());
    }
    match helper.run(&ctx).await? {
        Step::Started => {
            let why =
                format!("External provisioner is provisioning volume for claim \"{ns}/{name}\"");
            ctx.recorder
                .publish(&r, Type::Normal, "Provisioning", &why)
                .await;
            Ok(Action::await_change())
        }
        Step::Running => Ok(Action::await_change()),
        Step::Failed => {
            let why = format!(
                "failed to provision volume with StorageClass \"{}\": failed to create volume {volume}: the helper pod failed",
                class.name_any()
            );
            ctx.recorder
                .publish(&r, Type::Warning, "ProvisioningFailed", &why)
                .await;
            Ok(Action::requeue(Duration::from_secs(10)))
        }
        Step::Done => {
            let pv = volume_for(&claim, &class, &volume, helper.node, &path);
            let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
            match api.create(&PostParams::default(), &pv).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            let why = format!("Successfully provisioned volume {volume}");
            ctx.recorder
                .publish(&r, Type::Normal, "ProvisioningSucceeded", &why)
                .await;
            helper.remove(&ctx).await?;
            Ok(Action::await_change())
        }
    }
}

/// The volume made for `claim`: its size and access modes, the class's reclaim policy, the
/// directory `path` on `node`, pre-bound to the claim.
fn volume_for(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    name: &str,
    node: &str,
    path: &str,
) -> PersistentVolume {
    let spec = claim.spec.clone().unwrap_or_default();
    let size = spec
        .resources
        .and_then(|r| r.requests?.get("storage").cloned());
    let m = &claim.metadata;
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {
            PROVISIONED_BY: PROVISIONER,
            VOLUME_NODE: node,
        }},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.access_modes,
            "persistentVolumeReclaimPolicy": class.reclaim_policy.as_deref().unwrap_or("Delete"),
            "storageClassName": class.name_any(),
            "volumeMode": "Filesystem",
            "hostPath": {"path": path, "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": m.namespace, "name": m.name, "uid": m.uid,
                "resourceVersion": m.resource_version,
            },
        },
    }))
    .expect("a valid PersistentVolume")
}

/// Where a volume of ours lives: its directory and node.
fn placement(volume: &PersistentVolume) -> Option<(&str, &str)> {
    let path = volume.spec.as_ref()?.host_path.as_ref()?.path.as_str();
    let node = annotation(&volume.metadata, VOLUME_NODE)?;
    Some((path, node))
}

async fn sync_volume(volume: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> runtime::Result<Action> {
    let spec = volume.spec.as_ref();
    let released = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let delete = spec.and_then(|s| s.persistent_volume_reclaim_policy.as_deref()) == Some("Delete");
    let ours = annotation(&volume.metadata, PROVISIONED_BY) == Some(PROVISIONER);
    let placed = placement(&volume);
    let (true, true, true, Some((path, node)), None) = (
        ours,
        released,
        delete,
        placed,
        volume.metadata.deletion_timestamp.as_ref(),
    ) else {
        return Ok(Action::await_change());
    };
    let name = volume.name_any();
    let helper = Helper {
        name: format!("helper-pod-delete-{name}"),
        node,
        path,
        annotation: (FOR_VOLUME, name.clone()),
        script: "rm -rf \"$VOL_DIR\"",
    };
    match helper.run(&ctx).await? {
        Step::Started | Step::Running => Ok(Action::await_change()),
        Step::Failed => {
            let why = format!("failed to delete volume {name}: the helper pod failed");
            let r = reference(volume.as_ref());
            ctx.recorder
                .publish(&r, Type::Warning, "VolumeFailedDelete", &why)
                .await;
            Ok(Action::requeue(Duration::from_secs(10)))
        }
        Step::Done => {
            let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            helper.remove(&ctx).await?;
            Ok(Action::await_change())
        }
    }
}

/// A helper pod: a shell `script` run on `node` with `VOL_DIR` set to `path`, its parent
/// directory mounted.
struct Helper<'a> {
    name: String,
    node: &'a str,
    path: &'a str,
    annotation: (&'static str, String),
    script: &'static str,
}

/// Where a helper pod is.
enum Step {
    /// Created just now.
    Started,
    /// Not finished.
    Running,
    /// Failed; it was removed, so the next try starts a new one.
    Failed,
    /// Succeeded.
    Done,
}

impl Helper<'_> {
    /// Starts the pod, or says how it went.
    async fn run(&self, ctx: &Ctx) -> runtime::Result<Step> {
        let key = ObjectRef::new(&self.name).within(NAMESPACE);
        let phase = ctx.pods.get(&key).map(|p| {
            let status = p.status.as_ref();
            status.and_then(|s| s.phase.clone()).unwrap_or_default()
        });
        match phase.as_deref() {
            None => {
                let api: Api<Pod> = Api::namespaced(ctx.client.clone(), NAMESPACE);
                match api
                    .create(&PostParams::default(), &self.pod(&ctx.image))
                    .await
                {
                    Ok(_) => Ok(Step::Started),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(Step::Running),
                    Err(e) => Err(e.into()),
                }
            }
            Some("Succeeded") => Ok(Step::Done),
            Some("Failed") => {
                self.remove(ctx).await?;
                Ok(Step::Failed)
            }
            Some(_) => Ok(Step::Running),
        }
    }

    /// Removes the pod if it is still there.
    async fn remove_finished(&self, ctx: &Ctx) -> runtime::Result<()> {
        let key = ObjectRef::new(&self.name).within(NAMESPACE);
        if ctx.pods.get(&key).is_some() {
            self.remove(ctx).await?;
        }
        Ok(())
    }

    async fn remove(&self, ctx: &Ctx) -> runtime::Result<()> {
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), NAMESPACE);
        match api.delete(&self.name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn pod(&self, image: &str) -> Pod {
        let parent = std::path::Path::new(self.path)
            .parent()
            .map_or("/".into(), |p| p.display().to_string());
        let (key, value) = &self.annotation;
        let pod: Value = json!({
            "metadata": {"name": self.name, "namespace": NAMESPACE,
                "labels": {"app": NAME}, "annotations": {*key: value}},
            "spec": {
                "nodeName": self.node,
                "restartPolicy": "Never",
                "tolerations": [{"operator": "Exists"}],
                "containers": [{
                    "name": "helper-pod", "image": image,
                    "command": ["sh", "-c", self.script],
                    "env": [{"name": "VOL_DIR", "value": self.path}],
                    "volumeMounts": [{"name": "data", "mountPath": parent}],
                }],
                "volumes": [{"name": "data",
                    "hostPath": {"path": parent, "type": "DirectoryOrCreate"}}],
            },
        });
        serde_json::from_value(pod).expect("a valid Pod")
    }
}
