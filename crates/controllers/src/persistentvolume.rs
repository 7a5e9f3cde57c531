//! The PersistentVolume binder (`persistentvolume-binder-controller`): a claim binds to the
//! smallest available volume that satisfies it (class, volume mode, access modes, size,
//! selector) or to the volume it names, and a volume follows its claim: `Available` while
//! free, `Bound` while claimed, `Released` once its claim is gone (then, for the `Delete`
//! reclaim policy, deleted, and `Failed` if this node cannot delete such a volume). A bound
//! claim whose volume went is `Lost`. Phases, annotations and events are upstream's.
//!
//! Binding writes the volume first (its `claimRef`), then the claim (its `volumeName`), each
//! then its status, as upstream does: a crash between the steps leaves a volume claimed by a
//! claim that names nothing, which the next sync completes.
//!
//! A claim no volume satisfies, of a class with a provisioner, is handed to that provisioner
//! as upstream hands claims to external ones: the `volume.kubernetes.io/storage-provisioner`
//! annotation (and its beta twin) and an `ExternalProvisioning` event; under
//! `WaitForFirstConsumer`, only once the scheduler has put the node it chose in
//! `volume.kubernetes.io/selected-node`. The provisioner makes a volume pre-bound to the
//! claim, which then binds here. A claim naming no class at all that nothing satisfies gets
//! the default class once there is one (upstream's retroactive assignment).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeStatus,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::events::{Recorder, Type, reference};
use crate::runtime::{self, Informers, Shared};

/// The controller's name.
const NAME: &str = "persistentvolume-binder-controller";
/// On a claim: the binding is complete (the controller owns the claim's fate from then on).
const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// On a claim or volume: the controller, not the user, made the binding.
const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// On a claim: the provisioner expected to make its volume (and the older, beta key).
pub(crate) const STORAGE_PROVISIONER: [&str; 2] = [
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
];
/// On a volume: the provisioner that made it.
pub(crate) const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// On a claim: the node the scheduler chose for its first consumer.
pub(crate) const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

struct Ctx {
    client: kube::Client,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    recorder: Recorder,
}

/// Starts the controller: one loop over claims (all of them again when a volume or a
/// StorageClass changes) and one over volumes (all again when a claim changes).
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        claims: informers.store::<PersistentVolumeClaim>(),
        volumes: informers.store::<PersistentVolume>(),
        classes: informers.store::<StorageClass>(),
        recorder: shared.recorder(NAME),
    });
    let volumes_changed = informers.subscribe::<PersistentVolume>().map(|_| ());
    let classes_changed = informers.subscribe::<StorageClass>().map(|_| ());
    let claims = Controller::for_stream(
        informers.subscribe::<PersistentVolumeClaim>(),
        ctx.claims.clone(),
    )
    .reconcile_all_on(futures::stream::select(volumes_changed, classes_changed));
    let claims_changed = informers.subscribe::<PersistentVolumeClaim>().map(|_| ());
    let volumes = Controller::for_stream(
        informers.subscribe::<PersistentVolume>(),
        ctx.volumes.clone(),
    )
    .reconcile_all_on(claims_changed);
    let claims = runtime::run(NAME, claims, shared, ctx.clone(), sync_claim);
    let volumes = runtime::run(NAME, volumes, shared, ctx, sync_volume);
    Box::pin(async move {
        futures::join!(claims, volumes);
    })
}

pub(crate) fn annotated(meta: &kube::api::ObjectMeta, key: &str) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(key))
}

/// A claim's storage class: its `storageClassName` ("" for none).
fn claim_class(c: &PersistentVolumeClaim) -> &str {
    let spec = c.spec.as_ref();
    spec.and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

fn volume_class(v: &PersistentVolume) -> &str {
    let spec = v.spec.as_ref();
    spec.and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

fn claim_phase(c: &PersistentVolumeClaim) -> &str {
    let status = c.status.as_ref();
    status.and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

fn volume_phase(v: &PersistentVolume) -> &str {
    let status = v.status.as_ref();
    status.and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

fn claim_ref(v: &PersistentVolume) -> Option<&ObjectReference> {
    v.spec.as_ref()?.claim_ref.as_ref()
}

/// Whether `r` names claim `c`: the same namespace and name, and its uid when it has one (a
/// user pre-binding a volume names the claim only).
fn names_claim(r: &ObjectReference, c: &PersistentVolumeClaim) -> bool {
    r.namespace == c.metadata.namespace
        && r.name == c.metadata.name
        && r.uid
            .as_ref()
            .is_none_or(|u| Some(u) == c.metadata.uid.as_ref())
}

async fn sync_claim(claim: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> runtime::Result<Action> {
    if claim.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if annotated(&claim.metadata, BIND_COMPLETED) {
        return sync_bound_claim(&claim, &ctx).await;
    }
    let named = claim.spec.as_ref().and_then(|s| s.volume_name.clone());
    let volume = match named.filter(|n| !n.is_empty()) {
        Some(name) => match ctx.volumes.get(&ObjectRef::new(&name)) {
            Some(v) if claim_ref(&v).is_none_or(|r| names_claim(r, &claim)) => Some(v),
            Some(_) => {
                let why = format!("volume \"{name}\" already bound to a different claim.");
                return pending(&claim, &ctx, &why).await;
            }
            None => return pending(&claim, &ctx, "").await,
        },
        None => {
            let volumes = ctx.volumes.state();
            let found = best_match(&claim, volumes.iter().map(Arc::as_ref));
            // Under WaitForFirstConsumer only a volume reserved for the claim binds here;
            // the others wait for the scheduler to choose a node.
            let class = ctx.classes.get(&ObjectRef::new(claim_class(&claim)));
            let wait = class.is_some_and(|c| delayed(&c));
            found
                .filter(|v| !wait || claim_ref(v).is_some_and(|r| names_claim(r, &claim)))
                .map(|v| Arc::new(v.clone()))
        }
    };
    match volume {
        Some(v) => bind(&claim, &v, &ctx).await,
        None => {
            if assign_default_class(&claim, &ctx).await? {
                return Ok(Action::await_change());
            }
            let (ty, reason, why) = no_volume(&claim, &ctx);
            let claim = match reason {
                "ExternalProvisioning" => Arc::new(hand_to_provisioner(&claim, &ctx).await?),
                _ => claim,
            };
            let r = reference(claim.as_ref());
            ctx.recorder.publish(&r, ty, reason, &why).await;
            pending(&claim, &ctx, "").await
        }
    }
}

/// The annotations marking the default StorageClass.
const DEFAULT_CLASS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];
/// The annotation that named a claim's class before `spec.storageClassName`.
const BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// The default class among `classes`: the newest of those marked default, then the first by
/// name (as the `DefaultStorageClass` admission step chooses).
fn default_class<'a>(classes: impl Iterator<Item = &'a StorageClass>) -> Option<&'a str> {
    let marked = |c: &&StorageClass| {
        let annotations = c.metadata.annotations.as_ref();
        DEFAULT_CLASS.iter().any(|k| {
            annotations
                .and_then(|a| a.get(*k))
                .is_some_and(|v| v == "true")
        })
    };
    let created = |c: &StorageClass| c.metadata.creation_timestamp.clone();
    classes
        .filter(marked)
        .min_by(|a, b| {
            created(b)
                .cmp(&created(a))
                .then(a.metadata.name.cmp(&b.metadata.name))
        })
        .and_then(|c| c.metadata.name.as_deref())
}

/// Gives a claim that names no class at all the default class, when one is marked now
/// (upstream's retroactive default StorageClass assignment); says whether it did.
async fn assign_default_class(claim: &PersistentVolumeClaim, ctx: &Ctx) -> runtime::Result<bool> {
    let named = claim
        .spec
        .as_ref()
        .is_some_and(|s| s.storage_class_name.is_some())
        || annotated(&claim.metadata, BETA_CLASS);
    if named {
        return Ok(false);
    }
    let classes = ctx.classes.state();
    let Some(class) = default_class(classes.iter().map(Arc::as_ref)) else {
        return Ok(false);
    };
    let mut c = claim.clone();
    c.spec
        .get_or_insert_with(Default::default)
        .storage_class_name = Some(class.into());
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
    claims
        .replace(&c.name_any(), &PostParams::default(), &c)
        .await?;
    Ok(true)
}

/// Names the claim's provisioner in its annotations (upstream's `setClaimProvisioner`).
async fn hand_to_provisioner(
    claim: &PersistentVolumeClaim,
    ctx: &Ctx,
) -> runtime::Result<PersistentVolumeClaim> {
    let class = ctx.classes.get(&ObjectRef::new(claim_class(claim)));
    let provisioner = class.map(|c| c.provisioner.clone()).unwrap_or_default();
    let mut c = claim.clone();
    for key in STORAGE_PROVISIONER {
        c.annotations_mut().insert(key.into(), provisioner.clone());
    }
    if c == *claim {
        return Ok(c);
    }
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
    Ok(claims
        .replace(&c.name_any(), &PostParams::default(), &c)
        .await?)
}

/// The event saying why no volume is there for `claim`, in upstream's words.
fn no_volume(claim: &PersistentVolumeClaim, ctx: &Ctx) -> (Type, &'static str, String) {
    let class = claim_class(claim);
    if class.is_empty() {
        let why = "no persistent volumes available for this claim and no storage class is set";
        return (Type::Normal, "FailedBinding", why.into());
    }
    match ctx.classes.get(&ObjectRef::new(class)) {
        None => (
            Type::Warning,
            "ProvisioningFailed",
            format!("storageclass.storage.k8s.io \"{class}\" not found"),
        ),
        Some(c) if delayed(&c) && !annotated(&claim.metadata, SELECTED_NODE) => (
            Type::Normal,
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding".into(),
        ),

        Some(c) => (
            Type::Normal,
            "ExternalProvisioning",
            format!(
                "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                c.provisioner
            ),
        ),
    }
}

/// Whether a class binds its claims only once a pod uses them.
fn delayed(class: &StorageClass) -> bool {
    class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
}

/// Leaves `claim` Pending, with a `FailedBinding` warning saying `why` (none when empty).
async fn pending(claim: &PersistentVolumeClaim, ctx: &Ctx, why: &str) -> runtime::Result<Action> {
    if !why.is_empty() {
        let r = reference(claim);
        ctx.recorder
            .publish(&r, Type::Warning, "FailedBinding", why)
            .await;
    }
    set_claim_status(claim, ctx, "Pending", None).await?;
    Ok(Action::await_change())
}

/// The volume `claim` binds to: one already reserved for it (pre-bound) first, else the
/// smallest that satisfies it.
fn best_match<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl Iterator<Item = &'a PersistentVolume>,
) -> Option<&'a PersistentVolume> {
    let fitting: Vec<&PersistentVolume> = volumes.filter(|v| satisfies(v, claim)).collect();
    let reserved = fitting
        .iter()
        .find(|v| claim_ref(v).is_some_and(|r| names_claim(r, claim)));
    reserved
        .copied()
        .or_else(|| fitting.into_iter().min_by_key(|v| capacity(v)))
}

/// Whether volume `v` can serve `claim`: free (or reserved for it), not going away, of its
/// class and volume mode, with its access modes, at least its size, and matching its
/// selector.
fn satisfies(v: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let (Some(vs), Some(cs)) = (v.spec.as_ref(), claim.spec.as_ref()) else {
        return false;
    };
    let free = claim_ref(v).is_none_or(|r| names_claim(r, claim));
    let mode = |m: &Option<String>| m.clone().unwrap_or_else(|| "Filesystem".into());
    let modes = vs.access_modes.clone().unwrap_or_default();
    let wanted = cs.access_modes.clone().unwrap_or_default();
    free && v.metadata.deletion_timestamp.is_none()
        && !matches!(volume_phase(v), "Released" | "Failed")
        && volume_class(v) == claim_class(claim)
        && mode(&vs.volume_mode) == mode(&cs.volume_mode)
        && wanted.iter().all(|m| modes.contains(m))
        && capacity(v) >= requested(claim)
        && selected(v, claim)
}

fn selected(v: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(sel) = claim.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return true;
    };
    let labels = serde_json::to_value(&v.metadata.labels).unwrap_or_default();
    let sel = serde_json::to_value(sel).unwrap_or_default();
    api::selector::LabelSelector::from_object(&sel).is_ok_and(|s| s.matches(Some(&labels)))
}

/// Bytes of storage in `resources` under `storage`, 0 when absent or unreadable.
fn storage(
    resources: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> i128 {
    resources
        .and_then(|r| r.get("storage"))
        .and_then(|q| api::quantity::Quantity::parse(&q.0).ok())
        .map_or(0, |q| q.units())
}

fn capacity(v: &PersistentVolume) -> i128 {
    storage(v.spec.as_ref().and_then(|s| s.capacity.as_ref()))
}

fn requested(claim: &PersistentVolumeClaim) -> i128 {
    let spec = claim.spec.as_ref();
    storage(spec.and_then(|s| s.resources.as_ref()?.requests.as_ref()))
}

/// Binds `claim` and `volume` to each other: the volume's claimRef and phase, then the
/// claim's volumeName, annotations and status.
async fn bind(
    claim: &PersistentVolumeClaim,
    volume: &PersistentVolume,
    ctx: &Ctx,
) -> runtime::Result<Action> {
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let mut v = volume.clone();
    let reserved = claim_ref(&v).is_some();
    let spec = v.spec.get_or_insert_with(Default::default);
    spec.claim_ref = Some(ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.metadata.namespace.clone(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        ..ObjectReference::default()
    });
    if !reserved {
        v.annotations_mut()
            .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
    }
    let v = if v == *volume {
        v
    } else {
        volumes
            .replace(&v.name_any(), &PostParams::default(), &v)
            .await?
    };
    set_volume_status(&v, ctx, "Bound").await?;
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
    let mut c = claim.clone();
    let spec = c.spec.get_or_insert_with(Default::default);
    let named = spec.volume_name.as_ref().is_some_and(|n| !n.is_empty());
    spec.volume_name = Some(v.name_any());
    let annotations = c.annotations_mut();
    annotations.insert(BIND_COMPLETED.into(), "yes".into());
    if !named {
        annotations.insert(BOUND_BY_CONTROLLER.into(), "yes".into());
    }
    let c = claims
        .replace(&c.name_any(), &PostParams::default(), &c)
        .await?;
    set_claim_status(&c, ctx, "Bound", Some(&v)).await?;
    Ok(Action::await_change())
}

/// A claim whose binding completed: Bound while its volume is there and claimed by it, else
/// Lost (once, with upstream's event).
async fn sync_bound_claim(claim: &PersistentVolumeClaim, ctx: &Ctx) -> runtime::Result<Action> {
    let name = claim.spec.as_ref().and_then(|s| s.volume_name.clone());
    let volume = name.and_then(|n| ctx.volumes.get(&ObjectRef::new(&n)));
    let why = match &volume {
        None => "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
        Some(v) if !claim_ref(v).is_some_and(|r| names_claim(r, claim)) => {
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
        }
        Some(v) => {
            set_claim_status(claim, ctx, "Bound", Some(v)).await?;
            return Ok(Action::await_change());
        }
    };
    if claim_phase(claim) != "Lost" {
        let r = reference(claim);
        ctx.recorder
            .publish(&r, Type::Warning, "ClaimLost", why)
            .await;
        set_claim_status(claim, ctx, "Lost", None).await?;
    }
    Ok(Action::await_change())
}

/// Writes `claim`'s phase (and, bound, the volume's access modes and capacity) if it differs.
async fn set_claim_status(
    claim: &PersistentVolumeClaim,
    ctx: &Ctx,
    phase: &str,
    volume: Option<&PersistentVolume>,
) -> runtime::Result<()> {
    let mut status = claim.status.clone().unwrap_or_default();
    status.phase = Some(phase.into());
    if let Some(v) = volume {
        let spec = v.spec.as_ref();
        status.access_modes = spec.and_then(|s| s.access_modes.clone());
        status.capacity = spec.and_then(|s| s.capacity.clone());
    }
    if claim.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut c = claim.clone();
    c.status = Some(status);
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
    match claims
        .replace_status(&c.name_any(), &PostParams::default(), &c)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn sync_volume(volume: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> runtime::Result<Action> {
    if volume.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(r) = claim_ref(&volume).cloned() else {
        set_volume_status(&volume, &ctx, "Available").await?;
        return Ok(Action::await_change());
    };
    if r.uid.is_none() {
        // Reserved by a user for a claim that has not bound yet.
        set_volume_status(&volume, &ctx, "Available").await?;
        return Ok(Action::await_change());
    }
    let key = ObjectRef::new(r.name.as_deref().unwrap_or_default())
        .within(r.namespace.as_deref().unwrap_or_default());
    let cached = ctx.claims.get(&key);
    // The cache may lag behind a claim just made: ask the API server before releasing.
    let claim = match cached {
        Some(c) => Some(c),
        None => live_claim(&ctx, &r).await?.map(Arc::new),
    };
    match claim {
        Some(c) if c.metadata.uid == r.uid => {
            let bound = c.spec.as_ref().and_then(|s| s.volume_name.as_deref());
            if bound == volume.metadata.name.as_deref() {
                set_volume_status(&volume, &ctx, "Bound").await?;
            }
            Ok(Action::await_change())
        }
        _ => released(&volume, &ctx).await,
    }
}

/// The claim `r` names, read from the API server.
async fn live_claim(
    ctx: &Ctx,
    r: &ObjectReference,
) -> runtime::Result<Option<PersistentVolumeClaim>> {
    let ns = r.namespace.as_deref().unwrap_or_default();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    Ok(claims
        .get_opt(r.name.as_deref().unwrap_or_default())
        .await?)
}

/// A volume whose claim is gone: Released, then reclaimed by its policy. `Delete` is left
/// to the provisioner that made the volume; else it deletes the volume object only where
/// nothing outside the cluster holds its data (a hostPath under /tmp, as upstream's hostPath
/// deleter), and fails otherwise, as upstream's does without a deleter for the volume.
async fn released(volume: &PersistentVolume, ctx: &Ctx) -> runtime::Result<Action> {
    if volume_phase(volume) == "Failed" {
        return Ok(Action::await_change());
    }
    set_volume_status(volume, ctx, "Released").await?;
    let spec = volume.spec.as_ref();
    let policy = spec.and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
    // A provisioner's volume is its provisioner's to delete.
    if policy != Some("Delete") || annotated(&volume.metadata, PROVISIONED_BY) {
        return Ok(Action::await_change());
    }
    let host_tmp = spec
        .and_then(|s| s.host_path.as_ref())
        .is_some_and(|h| h.path.starts_with("/tmp/"));
    if host_tmp {
        let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
        match volumes
            .delete(&volume.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Action::await_change());
    }
    let why = format!(
        "error getting deleter volume plugin for volume \"{}\": no deletable volume plugin matched",
        volume.name_any()
    );
    let r = reference(volume);
    ctx.recorder
        .publish(&r, Type::Warning, "VolumeFailedDelete", &why)
        .await;
    set_volume_status(volume, ctx, "Failed").await?;
    Ok(Action::await_change())
}

/// Writes `volume`'s phase if it differs.
async fn set_volume_status(
    volume: &PersistentVolume,
    ctx: &Ctx,
    phase: &str,
) -> runtime::Result<()> {
    if volume_phase(volume) == phase {
        return Ok(());
    }
    let mut v = volume.clone();
    let status = v.status.get_or_insert_with(PersistentVolumeStatus::default);
    status.phase = Some(phase.into());
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match volumes
        .replace_status(&v.name_any(), &PostParams::default(), &v)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn volume(name: &str, size: &str, extra: serde_json::Value) -> PersistentVolume {
        let mut v = json!({"metadata": {"name": name, "labels": {"disk": name}},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "hostPath": {"path": "/tmp/x"}}});
        json_patch::merge(&mut v, &extra);
        serde_json::from_value(v).unwrap()
    }

    fn claim(size: &str, extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut c = json!({"metadata": {"name": "c", "namespace": "d", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}});
        json_patch::merge(&mut c, &extra);
        serde_json::from_value(c).unwrap()
    }

    fn pick<'a>(c: &PersistentVolumeClaim, vs: &'a [PersistentVolume]) -> Option<&'a str> {
        best_match(c, vs.iter()).and_then(|v| v.metadata.name.as_deref())
    }

    #[test]
    fn the_newest_default_class_is_the_default() {
        let class = |name: &str, created: &str, key: &str| -> StorageClass {
            serde_json::from_value(json!({"metadata": {"name": name,
                "creationTimestamp": created, "annotations": {key: "true"}},
                "provisioner": "p"}))
            .unwrap()
        };
        let classes = [
            class("old", "2026-01-01T00:00:00Z", DEFAULT_CLASS[0]),
            class("b", "2026-02-01T00:00:00Z", DEFAULT_CLASS[1]),
            class("a", "2026-02-01T00:00:00Z", DEFAULT_CLASS[0]),
            class("plain", "2026-03-01T00:00:00Z", "other"),
        ];
        assert_eq!(default_class(classes.iter()), Some("a"));
        assert_eq!(default_class(classes[3..].iter()), None);
    }

    #[test]
    fn the_smallest_volume_that_fits_is_chosen() {
        let vs = [
            volume("big", "10Gi", json!({})),
            volume("small", "1Gi", json!({})),
            volume("tiny", "100Mi", json!({})),
        ];
        assert_eq!(pick(&claim("500Mi", json!({})), &vs), Some("small"));
        assert_eq!(pick(&claim("20Gi", json!({})), &vs), None);
    }

    #[test]
    fn class_modes_selector_and_other_claims_rule_volumes_out() {
        let vs = [
            volume("fast", "1Gi", json!({"spec": {"storageClassName": "fast"}})),
            volume(
                "rox",
                "1Gi",
                json!({"spec": {"accessModes": ["ReadOnlyMany"]}}),
            ),
            volume(
                "taken",
                "1Gi",
                json!({"spec": {"claimRef": {"namespace": "d", "name": "other", "uid": "u2"}}}),
            ),
            volume("block", "1Gi", json!({"spec": {"volumeMode": "Block"}})),
        ];
        assert_eq!(pick(&claim("1Gi", json!({})), &vs), None);
        let fast = claim("1Gi", json!({"spec": {"storageClassName": "fast"}}));
        assert_eq!(pick(&fast, &vs), Some("fast"));
        let labelled = claim(
            "1Gi",
            json!({"spec": {"storageClassName": "fast",
            "selector": {"matchLabels": {"disk": "other"}}}}),
        );
        assert_eq!(pick(&labelled, &vs), None);
    }

    #[test]
    fn a_volume_reserved_for_the_claim_wins() {
        let vs = [
            volume("small", "1Gi", json!({})),
            volume(
                "kept",
                "5Gi",
                json!({"spec": {"claimRef": {"namespace": "d", "name": "c"}}}),
            ),
        ];
        assert_eq!(pick(&claim("1Gi", json!({})), &vs), Some("kept"));
    }
}
