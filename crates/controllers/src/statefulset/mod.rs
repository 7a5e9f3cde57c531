//! The StatefulSet controller (`statefulset-controller`): runs a StatefulSet's pods with
//! stable identities and storage, as upstream's `statefulset` controller does.
//!
//! Pod `<set>-<ordinal>` (ordinals from `spec.ordinals.start`, 0 by default) is made from
//! the template with hostname `<set>-<ordinal>`, subdomain `spec.serviceName`, the labels
//! `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index` and
//! `controller-revision-hash`, and for each volumeClaimTemplate a volume on claim
//! `<template>-<set>-<ordinal>`, which is created first (labels: the template's plus the
//! selector's). The claims' owner references follow `persistentVolumeClaimRetentionPolicy`:
//! `whenDeleted: Delete` makes the set an owner of its pods' claims, `whenScaled: Delete`
//! makes a pod scaled away the owner of its claims, so the garbage collector removes them.
//!
//! Every distinct template is kept as a ControllerRevision `<set>-<hash>` (labels: the
//! template's and `controller.kubernetes.io/hash`; `data` the template as upstream's
//! strategic-merge patch; numbered in `revision`), going back to an older template
//! renumbers its revision, and unused ones beyond `revisionHistoryLimit` are deleted.
//! `status.currentRevision` is the revision the set rolls from, `updateRevision` the one it
//! rolls to.
//!
//! Each sync follows upstream's `updateStatefulSet`: pods Failed or Succeeded are deleted
//! and made again once gone; missing pods are created and pods beyond the replicas deleted,
//! from the highest ordinal. With `podManagementPolicy: OrderedReady` one step at a time:
//! a pod is created only when every lower one is Running, Ready and available
//! (`minReadySeconds`), and one is deleted only when the others are, after the one above
//! it is gone. `Parallel` does all at once. A RollingUpdate then deletes pods of an old
//! revision from the highest ordinal down to `partition` (they are made again at the new
//! one) while fewer than `maxUnavailable` pods (1 by default) are unavailable; OnDelete
//! leaves that to the user. The controller waits until the cache shows its previous
//! creations and deletions before acting again ([`crate::expectations`]). Status reports
//! replicas, readyReplicas, availableReplicas, currentReplicas, updatedReplicas, the
//! revisions, collisionCount and observedGeneration, which `kubectl rollout status` reads.
//!
//! The module's parts:
//! - this file: the controller ([`start`]), which sets an object's change concerns, and
//!   one sync ([`reconcile`]): adopt revisions and pods, pick the revisions, act, write
//!   status, trim the history;
//! - [`identity`]: ordinals, pod names and identity labels, and the pods made for them;
//! - [`claims`]: the pods' PersistentVolumeClaims and their owners under the retention
//!   policy;
//! - [`revisions`]: ControllerRevisions: their data, hashes and names, picking or making
//!   the update revision, and the history kept;
//! - [`plan`](mod@plan): what a sync does, in order: pod management policy and update
//!   strategy;
//! - [`status`]: readiness and availability, and the status a sync writes;
//! - [`sync`]: carrying out a plan against the API, with upstream's events;
//! - `fixtures` (tests only): the sets and pods the unit tests build; each part's tests
//!   live with it.

mod claims;
#[cfg(test)]
mod fixtures;
mod identity;
mod plan;
mod revisions;
mod status;
mod sync;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::events::{Recorder, reference};
use crate::expectations::Expectations;
use crate::runtime::{Informers, Result, Shared};
use crate::{pods, runtime};

use self::identity::{ordinal_of, pod_revision, replicas};
use self::plan::plan;
use self::revisions::{find_revisions, history_to_delete, sort_revisions, template_of};
use self::status::{complete_rolling_update, min_ready_seconds, status_of};
use self::sync::{Sync, api_error, is_code};

/// The controller's name, and its events' component.
const NAME: &str = "statefulset-controller";
/// The revision a pod was made from: the ControllerRevision's name.
const REVISION_LABEL: &str = "controller-revision-hash";
/// A pod's own name, so a Service can select one pod.
const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// A pod's ordinal.
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

struct Ctx {
    client: kube::Client,
    sets: Store<StatefulSet>,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    claims: Store<PersistentVolumeClaim>,
    expectations: Expectations,
    events: Recorder,
}

/// Starts the StatefulSet controller.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let sets = informers.store::<StatefulSet>();
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        sets: sets.clone(),
        pods: informers.store::<Pod>(),
        revisions: informers.store::<ControllerRevision>(),
        claims: informers.store::<PersistentVolumeClaim>(),
        expectations: Expectations::default(),
        events: shared.recorder(NAME),
    });
    let (by_pod, by_claim) = (sets.clone(), sets.clone());
    let controller = Controller::for_stream(informers.subscribe::<StatefulSet>(), sets)
        .watches_stream(informers.subscribe::<Pod>(), move |pod: Pod| {
            sets_of(&by_pod, &pod.metadata)
        })
        .watches_stream(
            informers.subscribe::<ControllerRevision>(),
            |rev: ControllerRevision| {
                let ns = rev.namespace().unwrap_or_default();
                pods::controller_of(&rev.metadata)
                    .filter(|c| c.kind == "StatefulSet")
                    .map(|c| ObjectRef::new(&c.name).within(&ns))
                    .into_iter()
                    .collect::<Vec<_>>()
            },
        )
        // A claim going away may unblock a pod waiting for it.
        .watches_stream(
            informers.subscribe::<PersistentVolumeClaim>(),
            move |claim: PersistentVolumeClaim| selecting(&by_claim, &claim.metadata),
        );
    runtime::run(NAME, controller, shared, ctx, reconcile)
}

/// The sets an object's change concerns: its controller if that is a StatefulSet, else
/// every set in its namespace whose selector matches it.
fn sets_of(sets: &Store<StatefulSet>, meta: &ObjectMeta) -> Vec<ObjectRef<StatefulSet>> {
    match pods::controller_of(meta) {
        Some(c) if c.kind == "StatefulSet" => {
            vec![ObjectRef::new(&c.name).within(meta.namespace.as_deref().unwrap_or(""))]
        }
        Some(_) => Vec::new(),
        None => selecting(sets, meta),
    }
}

/// The sets in the object's namespace whose selector matches its labels.
fn selecting(sets: &Store<StatefulSet>, meta: &ObjectMeta) -> Vec<ObjectRef<StatefulSet>> {
    let labels = meta.labels.clone().unwrap_or_default();
    sets.state()
        .iter()
        .filter(|s| s.metadata.namespace == meta.namespace)
        .filter(|s| pods::selects(s.spec.as_ref().map(|s| &s.selector), &labels))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action> {
    let key = pods::key(set.meta());
    // Act on the newest copy the cache has.
    let Some(set) = ctx.sets.get(&ObjectRef::from_obj(set.as_ref())) else {
        ctx.expectations.forget(&key);
        return Ok(Action::await_change());
    };
    let Some(spec) = set.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let ns = set.namespace().unwrap_or_default();
    let set_name = set.name_any();
    let owner_ref = pods::controller_ref(set.as_ref());
    let selector = Some(&spec.selector);

    let rev_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let candidates: Vec<Arc<ControllerRevision>> = ctx
        .revisions
        .state()
        .into_iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let mut revisions: Vec<ControllerRevision> =
        pods::claim(&rev_api, set.meta(), &owner_ref, selector, candidates)
            .await
            .into_iter()
            .map(|r| (*r).clone())
            .collect();
    sort_revisions(&mut revisions);

    let in_ns: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let synced = ctx.expectations.satisfied_by(&key, &in_ns);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let candidates: Vec<Arc<Pod>> = in_ns
        .into_iter()
        .filter(|p| ordinal_of(&set_name, &p.name_any()).is_some())
        .collect();
    let mine = pods::claim(&pod_api, set.meta(), &owner_ref, selector, candidates).await;

    let (current, update, collisions) = find_revisions(&set, &rev_api, &mut revisions).await?;
    let now = Timestamp::now();
    let current_name = current.name_any();
    let update_name = update.name_any();
    let mut status = status_of(&set, &mine, &current_name, &update_name, collisions, now);
    let mut outcome = Ok(());
    if synced && set.metadata.deletion_timestamp.is_none() {
        let mut sync = Sync {
            ctx: &ctx,
            set: &set,
            key: key.clone(),
            regarding: reference(set.as_ref()),
            pods: pod_api,
            claims: Api::namespaced(ctx.client.clone(), &ns),
            fresh: HashMap::new(),
            current: (
                template_of(&current).unwrap_or_else(|| spec.template.clone()),
                current_name.clone(),
            ),
            update: (
                template_of(&update).unwrap_or_else(|| spec.template.clone()),
                update_name.clone(),
            ),
        };
        let steps = plan(&set, &mine, &update_name, &|n| sync.claim(n), now);
        let (updated, result) = sync.run(steps).await;
        status.current -= updated;
        outcome = result;
    }
    complete_rolling_update(&set, &mut status);
    let old = serde_json::to_value(&set.status)?;
    let new = status.to_json(&old);
    if new != old {
        let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
        sets.patch_status(
            &set_name,
            &PatchParams::default(),
            &Patch::Merge(runtime::status_patch(&old, &new)),
        )
        .await?;
    }

    // Keep the history within its limit.
    let mut live: HashSet<&str> = [current_name.as_str(), update_name.as_str()].into();
    live.extend(mine.iter().map(|p| pod_revision(p)));
    let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    for rev in history_to_delete(&revisions, &live, limit) {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: rev.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match rev_api.delete(&rev.name_any(), &params).await {
            Ok(_) => {}
            Err(e) if is_code(&e, 404) || is_code(&e, 409) => {}
            Err(e) => return Err(api_error(e)),
        }
    }
    outcome?;
    // Pods ready but not yet available become available after minReadySeconds.
    let min_ready = min_ready_seconds(&set);
    if min_ready > 0 && status.available != replicas(&set) {
        return Ok(Action::requeue(Duration::from_secs(min_ready as u64)));
    }
    Ok(Action::await_change())
}
