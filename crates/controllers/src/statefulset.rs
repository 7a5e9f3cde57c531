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

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod,
    PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::events::{Recorder, Type, reference};
use crate::expectations::Expectations;
use crate::pod_control::{Deleted, delete_same};
use crate::pods;
use crate::runtime::{self, Error, Informers, Result, Shared};

/// The controller's name, and its events' component.
const NAME: &str = "statefulset-controller";
/// The revision a pod was made from: the ControllerRevision's name.
const REVISION_LABEL: &str = "controller-revision-hash";
/// A pod's own name, so a Service can select one pod.
const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// A pod's ordinal.
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// A ControllerRevision's hash.
const HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// Names tried for a new revision before a sync gives up (each hash collision moves on).
const MAX_COLLISIONS: i32 = 64;

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

// ----- What a set asks for -----

/// `spec.replicas` (1 when unset).
fn replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

/// The first ordinal, `spec.ordinals.start` (0 when unset).
fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref()?.start)
        .unwrap_or(0)
        .max(0)
}

/// Whether `ordinal` is one of the set's replicas (upstream's `podInOrdinalRange`).
fn in_range(set: &StatefulSet, ordinal: i32) -> bool {
    let start = start_ordinal(set);
    ordinal >= start && ordinal < start + replicas(set)
}

/// `podManagementPolicy: Parallel`.
fn is_parallel(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        == Some("Parallel")
}

fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// The update strategy's type; RollingUpdate when unset.
fn strategy_type(set: &StatefulSet) -> &str {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref()?.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

fn is_on_delete(set: &StatefulSet) -> bool {
    strategy_type(set) == "OnDelete"
}

/// `rollingUpdate.partition`, if the strategy has a `rollingUpdate`.
fn partition(set: &StatefulSet) -> Option<i32> {
    let ru = set
        .spec
        .as_ref()?
        .update_strategy
        .as_ref()?
        .rolling_update
        .as_ref()?;
    Some(ru.partition.unwrap_or(0).max(0))
}

/// `rollingUpdate.maxUnavailable` as a pod count of the replicas (percentages round up),
/// at least 1; 1 when unset.
fn max_unavailable(set: &StatefulSet) -> usize {
    let value = set.spec.as_ref().and_then(|s| {
        s.update_strategy
            .as_ref()?
            .rolling_update
            .as_ref()?
            .max_unavailable
            .as_ref()
    });
    let n = match value {
        None => 1,
        Some(IntOrString::Int(n)) => i64::from(*n),
        Some(IntOrString::String(s)) => {
            let percent: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            (percent * i64::from(replicas(set)) + 99) / 100
        }
    };
    n.max(1) as usize
}

/// `persistentVolumeClaimRetentionPolicy` as (whenDeleted is Delete, whenScaled is Delete).
fn retention(set: &StatefulSet) -> (bool, bool) {
    let policy = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let delete = |v: Option<&String>| v.is_some_and(|v| v == "Delete");
    (
        delete(policy.and_then(|p| p.when_deleted.as_ref())),
        delete(policy.and_then(|p| p.when_scaled.as_ref())),
    )
}

// ----- Names and identities -----

/// The name of the set's pod with `ordinal`.
fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// The claim of volumeClaimTemplate `template` for the pod with `ordinal`.
fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The ordinal of pod `pod` if it is named as a pod of set `set` (`<set>-<ordinal>`).
fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let (parent, digits) = pod.rsplit_once('-')?;
    if parent != set || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i32 = digits.parse().ok()?;
    (n.to_string() == digits).then_some(n)
}

/// The revision a pod was made from (its `controller-revision-hash` label).
fn pod_revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map(String::as_str)
        .unwrap_or("")
}

/// Whether the pod carries its name and ordinal as it should (upstream's `identityMatches`).
fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let name = pod.name_any();
    let Some(ordinal) = ordinal_of(&set.name_any(), &name) else {
        return false;
    };
    let labels = pod.labels();
    pod.metadata.namespace == set.metadata.namespace
        && labels.get(POD_NAME_LABEL) == Some(&name)
        && labels.get(POD_INDEX_LABEL) == Some(&ordinal.to_string())
}

fn running_and_ready(pod: &Pod) -> bool {
    pod::phase(pod) == "Running" && pods::is_ready(pod)
}

fn running_and_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    pod::phase(pod) == "Running" && pods::is_available(pod, min_ready_seconds, now)
}

/// Running, Ready and not being deleted (upstream's `isHealthy`).
fn is_healthy(pod: &Pod) -> bool {
    running_and_ready(pod) && !pod::is_terminating(pod)
}

// ----- Pods and claims -----

/// The claims of the pod with `ordinal`, by volume name, in template order: named
/// `<template>-<set>-<ordinal>`, labelled with the template's labels and the selector's
/// `matchLabels`.
fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let Some(spec) = set.spec.as_ref() else {
        return Vec::new();
    };
    let set_name = set.name_any();
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let volume = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector.clone());
            let claim = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&volume, &set_name, ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: (!labels.is_empty()).then_some(labels),
                    annotations: t.metadata.annotations.clone(),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            };
            (volume, claim)
        })
        .collect()
}

/// The set's pod with `ordinal` made from `template` at `revision` (upstream's
/// `newVersionedStatefulSetPod`).
fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let set_name = set.name_any();
    let ns = set.namespace().unwrap_or_default();
    let mut pod = pods::from_template(
        template,
        pods::controller_ref(set),
        &ns,
        &format!("{set_name}-"),
    );
    let name = pod_name(&set_name, ordinal);
    pod.metadata.name = Some(name.clone());
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.into());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name);
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    let claims = claims_for(set, ordinal);
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(volume, claim)| Volume {
            name: volume.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.name_any(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    volumes.extend(
        spec.volumes
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !claims.iter().any(|(name, _)| *name == v.name)),
    );
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    pod
}

/// Whether a pod made now for `ordinal` gets the update revision rather than the current
/// one: ordinals below the partition keep the current revision (upstream's
/// `newVersionedStatefulSetPod`).
fn at_update(set: &StatefulSet, ordinal: i32) -> bool {
    let start = start_ordinal(set);
    let current = set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    let keep_current = match partition(set) {
        Some(p) => ordinal < start + p,
        None => strategy_type(set) == "RollingUpdate" && ordinal < start + current,
    };
    !keep_current
}

/// A plain (not controller) owner reference, as the retention policy sets on claims.
fn owner(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// The owner references claim `claim` of `pod` should have under the set's retention policy,
/// if they differ from its own (upstream's `updateClaimOwnerRefForSetAndPod`): the set owns
/// it with `whenDeleted: Delete` unless the pod is scaled down with `whenScaled: Delete`, in
/// which case the pod owns it. A claim referring to an older set or pod of the same name,
/// with more than two owners, or controlled by someone else (under a Delete policy) is left
/// alone.
fn claim_owners(
    claim: &ObjectMeta,
    set: &StatefulSet,
    pod: &Pod,
    scaled_down: bool,
) -> Option<Vec<OwnerReference>> {
    let refs = claim.owner_references.clone().unwrap_or_default();
    let (set_name, set_uid) = (set.name_any(), set.metadata.uid.clone().unwrap_or_default());
    let (pod_name, pod_uid) = (pod.name_any(), pod.metadata.uid.clone().unwrap_or_default());
    let is_set = |r: &OwnerReference| r.kind == "StatefulSet" && r.name == set_name;
    let is_pod = |r: &OwnerReference| r.kind == "Pod" && r.name == pod_name;
    let stale = refs
        .iter()
        .any(|r| (is_set(r) && r.uid != set_uid) || (is_pod(r) && r.uid != pod_uid));
    let (when_deleted, when_scaled) = retention(set);
    let foreign_controller = (when_deleted || when_scaled)
        && refs
            .iter()
            .any(|r| r.controller == Some(true) && !is_set(r) && !is_pod(r));
    if stale || refs.len() > 2 || foreign_controller {
        return None;
    }
    let want_set = when_deleted && !(when_scaled && scaled_down);
    let want_pod = when_scaled && scaled_down;
    let mut wanted: Vec<OwnerReference> = refs
        .iter()
        .filter(|r| (want_set || !is_set(r)) && (want_pod || !is_pod(r)))
        .cloned()
        .collect();
    if want_set && !refs.iter().any(is_set) {
        wanted.push(owner("apps/v1", "StatefulSet", &set.metadata));
    }
    if want_pod && !refs.iter().any(is_pod) {
        wanted.push(owner("v1", "Pod", &pod.metadata));
    }
    (wanted != refs).then_some(wanted)
}

/// What the cache holds under a claim's name.
type Claims<'a> = &'a dyn Fn(&str) -> Option<Arc<PersistentVolumeClaim>>;

/// Whether every existing claim of `pod` has the owners the retention policy wants.
fn claims_match(set: &StatefulSet, pod: &Pod, scaled_down: bool, claims: Claims<'_>) -> bool {
    let Some(ordinal) = ordinal_of(&set.name_any(), &pod.name_any()) else {
        return true;
    };
    claims_for(set, ordinal).iter().all(|(_, c)| {
        claims(&c.name_any()).is_none_or(|existing| {
            claim_owners(&existing.metadata, set, pod, scaled_down).is_none()
        })
    })
}

/// Whether a claim of the pod to create for `ordinal` still belongs to an older pod of that
/// name (`whenScaled: Delete`): the pod must wait until the garbage collector removed it
/// (upstream's `PodClaimIsStale`).
fn claims_stale(set: &StatefulSet, ordinal: i32, claims: Claims<'_>) -> bool {
    if !retention(set).1 {
        return false;
    }
    let name = pod_name(&set.name_any(), ordinal);
    claims_for(set, ordinal).iter().any(|(_, c)| {
        claims(&c.name_any()).is_some_and(|existing| {
            existing
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.kind == "Pod" && r.name == name)
        })
    })
}

// ----- Revisions -----

/// A revision's `data`: the template as a strategic-merge patch of the set, as upstream's
/// `getPatch` writes it.
fn revision_data(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The template a revision holds.
fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

/// A revision's hash: FNV-1a over its data and the collision count, spelled with upstream's
/// safe alphabet (no vowels, no look-alike digits).
fn revision_hash(data: &Value, collisions: i32) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in data
        .to_string()
        .bytes()
        .chain(collisions.to_string().bytes())
    {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| SAFE[usize::from(b) % SAFE.len()] as char)
        .collect()
}

/// A revision's name: `<set>-<hash>`, the set's name cut to 223 characters.
fn revision_name(set: &str, hash: &str) -> String {
    let prefix: String = set.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// Oldest first: by number, then creation, then name (upstream's `SortControllerRevisions`).
fn sort_revisions(revisions: &mut [ControllerRevision]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let t =
                    |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
                t(a).cmp(&t(b))
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// One past the highest revision number (1 for the first).
fn next_revision(revisions: &[ControllerRevision]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// Where the update revision comes from.
#[derive(Debug, PartialEq, Eq)]
enum Choice {
    /// The newest revision (at this index) already holds the template.
    Keep(usize),
    /// An older revision holds it: it is renumbered as the newest (a rollback).
    Renumber(usize),
    /// No revision holds it: a new one is made.
    Create,
}

/// Picks the update revision among `revisions` (sorted) for `data` (upstream's
/// `getStatefulSetRevisions`).
fn choose_update(revisions: &[ControllerRevision], data: &Value) -> Choice {
    let equal = revisions
        .iter()
        .rposition(|r| r.data.as_ref().map(|d| &d.0) == Some(data));
    match equal {
        Some(i) if i + 1 == revisions.len() => Choice::Keep(i),
        Some(i) => Choice::Renumber(i),
        None => Choice::Create,
    }
}

/// A new revision of `set` holding `data`, numbered `number`, with hash `hash`.
fn new_revision(set: &StatefulSet, data: &Value, number: i64, hash: &str) -> ControllerRevision {
    let mut labels: BTreeMap<String, String> = set
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref()?.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(&set.name_any(), hash)),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: set.metadata.annotations.clone().filter(|a| !a.is_empty()),
            owner_references: Some(vec![pods::controller_ref(set)]),
            ..Default::default()
        },
        data: Some(RawExtension(data.clone())),
        revision: number,
    }
}

/// The revisions no longer used (not current, not update, no pod made from it) to delete so
/// that at most `limit` of them remain, oldest first.
fn history_to_delete<'a>(
    revisions: &'a [ControllerRevision],
    live: &HashSet<&str>,
    limit: usize,
) -> Vec<&'a ControllerRevision> {
    let history: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| !live.contains(r.metadata.name.as_deref().unwrap_or("")))
        .collect();
    let surplus = history.len().saturating_sub(limit);
    history.into_iter().take(surplus).collect()
}

// ----- Deciding -----

/// One action of a sync.
#[derive(Debug)]
enum Step {
    /// Delete a Failed or Succeeded pod; it is made again once gone.
    Recreate(Arc<Pod>),
    /// Create the pod with this ordinal (its claims first), at the update revision or not.
    Create { ordinal: i32, at_update: bool },
    /// Create the missing claims of a pending pod.
    CreateClaims(Arc<Pod>),
    /// Bring a pod's identity labels and its claims' owners in line; whether it is scaled
    /// down.
    Fix(Arc<Pod>, bool),
    /// Delete a pod beyond the replicas.
    Condemn(Arc<Pod>),
    /// Delete a pod of an old revision, to be made again at the update revision.
    Update(Arc<Pod>),
}

/// What a sync of `set` does with its pods `mine`, in order (upstream's
/// `updateStatefulSet`); the steps after one that fails are not taken. `update` names the
/// update revision; `claims` looks claims up.
fn plan(
    set: &StatefulSet,
    mine: &[Arc<Pod>],
    update: &str,
    claims: Claims<'_>,
    now: Timestamp,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let start = start_ordinal(set);
    let set_name = set.name_any();
    let monotonic = !is_parallel(set);
    let min_ready = min_ready_seconds(set);
    let mut slots: Vec<Option<Arc<Pod>>> = vec![None; replicas(set) as usize];
    let mut condemned: Vec<(i32, Arc<Pod>)> = Vec::new();
    for pod in mine {
        match ordinal_of(&set_name, &pod.name_any()) {
            Some(o) if in_range(set, o) => slots[(o - start) as usize] = Some(pod.clone()),
            Some(o) => condemned.push((o, pod.clone())),
            None => {}
        }
    }
    condemned.sort_by_key(|(o, _)| Reverse(*o));
    // The lowest unhealthy pod, when it is a condemned one, may be deleted unhealthy.
    let first_unhealthy = slots
        .iter()
        .all(|s| s.as_deref().is_some_and(is_healthy))
        .then(|| condemned.iter().rev().find(|(_, p)| !is_healthy(p)))
        .flatten()
        .map(|(o, _)| *o);

    for (i, slot) in slots.iter().enumerate() {
        let ordinal = start + i as i32;
        let pod = match slot {
            Some(p) if pod::is_terminal(p) => {
                if !pod::is_terminating(p) {
                    steps.push(Step::Recreate(p.clone()));
                }
                if monotonic {
                    return steps;
                }
                continue;
            }
            Some(p) => p,
            None => {
                if !claims_stale(set, ordinal, claims) {
                    steps.push(Step::Create {
                        ordinal,
                        at_update: at_update(set, ordinal),
                    });
                }
                if monotonic {
                    return steps;
                }
                continue;
            }
        };
        if pod::phase(pod) == "Pending"
            && claims_for(set, ordinal)
                .iter()
                .any(|(_, c)| claims(&c.name_any()).is_none())
        {
            steps.push(Step::CreateClaims(pod.clone()));
        }
        if monotonic
            && (pod::is_terminating(pod)
                || !running_and_ready(pod)
                || !running_and_available(pod, min_ready, now))
        {
            return steps;
        }
        if !identity_matches(set, pod) || !claims_match(set, pod, false, claims) {
            steps.push(Step::Fix(pod.clone(), false));
        }
    }

    for (_, pod) in &condemned {
        if !claims_match(set, pod, true, claims) {
            steps.push(Step::Fix(pod.clone(), true));
        }
    }

    for (ordinal, pod) in &condemned {
        if pod::is_terminating(pod) {
            if monotonic {
                return steps;
            }
            continue;
        }
        let first = first_unhealthy == Some(*ordinal);
        if monotonic
            && !first
            && (!running_and_ready(pod) || !running_and_available(pod, min_ready, now))
        {
            return steps;
        }
        steps.push(Step::Condemn(pod.clone()));
        if monotonic {
            return steps;
        }
    }

    if is_on_delete(set) {
        return steps;
    }
    let available = |p: &Pod| is_healthy(p) && running_and_available(p, min_ready, now);
    let unavailable = slots
        .iter()
        .filter(|s| !s.as_deref().is_some_and(available))
        .count();
    let mut budget = max_unavailable(set).saturating_sub(unavailable);
    let from = partition(set).unwrap_or(0) as usize;
    for slot in slots.iter().skip(from).rev() {
        if budget == 0 {
            break;
        }
        if let Some(pod) = slot
            && pod_revision(pod) != update
            && !pod::is_terminating(pod)
        {
            steps.push(Step::Update(pod.clone()));
            budget -= 1;
        }
    }
    steps
}

// ----- Status -----

/// The status a sync writes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Status {
    replicas: i32,
    ready: i32,
    available: i32,
    current: i32,
    updated: i32,
    current_revision: String,
    update_revision: String,
    collisions: i32,
    observed_generation: i64,
}

impl Status {
    /// As upstream's JSON: zero counts and empty revisions left out, but `replicas`,
    /// `availableReplicas` and `collisionCount` always there; `conditions` kept from `old`.
    fn to_json(&self, old: &Value) -> Value {
        let mut v = json!({
            "replicas": self.replicas,
            "readyReplicas": self.ready,
            "availableReplicas": self.available,
            "currentReplicas": self.current,
            "updatedReplicas": self.updated,
            "currentRevision": self.current_revision,
            "updateRevision": self.update_revision,
            "collisionCount": self.collisions,
            "observedGeneration": self.observed_generation,
        });
        if let Some(m) = v.as_object_mut() {
            m.retain(|k, v| {
                matches!(
                    k.as_str(),
                    "replicas" | "availableReplicas" | "collisionCount"
                ) || (v != &json!(0) && v != &json!(""))
            });
        }
        if let Some(c) = old.get("conditions").filter(|c| !c.is_null()) {
            v["conditions"] = c.clone();
        }
        v
    }
}

/// The status of `set` with pods `mine` between revisions `current` and `update`
/// (upstream's `updateStatus`).
fn status_of(
    set: &StatefulSet,
    mine: &[Arc<Pod>],
    current: &str,
    update: &str,
    collisions: i32,
    now: Timestamp,
) -> Status {
    let min_ready = min_ready_seconds(set);
    let mut s = Status {
        current_revision: current.into(),
        update_revision: update.into(),
        collisions,
        observed_generation: set.metadata.generation.unwrap_or(0),
        ..Default::default()
    };
    let set_name = set.name_any();
    for pod in mine
        .iter()
        .filter(|p| ordinal_of(&set_name, &p.name_any()).is_some())
    {
        s.replicas += 1;
        if running_and_ready(pod) {
            s.ready += 1;
            if running_and_available(pod, min_ready, now) {
                s.available += 1;
            }
        }
        if !pod::is_terminating(pod) {
            let rev = pod_revision(pod);
            s.current += i32::from(rev == current);
            s.updated += i32::from(rev == update);
        }
    }
    s
}

/// A RollingUpdate with every pod updated and ready is complete: the update revision
/// becomes the current one (upstream's `completeRollingUpdate`).
fn complete_rolling_update(set: &StatefulSet, s: &mut Status) {
    if strategy_type(set) == "RollingUpdate" && s.updated == s.replicas && s.ready == s.replicas {
        s.current = s.updated;
        s.current_revision = s.update_revision.clone();
    }
}

// ----- Acting -----

/// An API error as upstream prints it: the server's message.
fn api_error(e: kube::Error) -> Error {
    match e {
        kube::Error::Api(s) => Error(anyhow::anyhow!(s.message)),
        other => Error(other.into()),
    }
}

fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Capitalised: `create` → `Create`.
fn title(verb: &str) -> String {
    let mut c = verb.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
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

/// The current and update revisions of `set` among its `revisions` (sorted), and the
/// collision count: the update revision is found, renumbered (a rollback) or created, the
/// current one is the one `status.currentRevision` names, else the update one (upstream's
/// `getStatefulSetRevisions`). `revisions` takes what was created or renumbered.
async fn find_revisions(
    set: &StatefulSet,
    api: &Api<ControllerRevision>,
    revisions: &mut Vec<ControllerRevision>,
) -> Result<(ControllerRevision, ControllerRevision, i32)> {
    let status = set.status.as_ref();
    let mut collisions = status.and_then(|s| s.collision_count).unwrap_or(0);
    let template = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let data = revision_data(&template);
    let next = next_revision(revisions);
    let update = match choose_update(revisions, &data) {
        Choice::Keep(i) => revisions[i].clone(),
        Choice::Renumber(i) => {
            let renumbered = api
                .patch(
                    &revisions[i].name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"revision": next})),
                )
                .await
                .map_err(api_error)?;
            revisions[i] = renumbered.clone();
            renumbered
        }
        Choice::Create => {
            let created = create_revision(set, api, &data, next, &mut collisions).await?;
            revisions.push(created.clone());
            created
        }
    };
    let wanted = status.and_then(|s| s.current_revision.as_deref());
    let current = revisions
        .iter()
        .find(|r| {
            r.metadata
                .name
                .as_deref()
                .is_some_and(|n| Some(n) == wanted)
        })
        .cloned()
        .unwrap_or_else(|| update.clone());
    Ok((current, update, collisions))
}

/// Creates the revision holding `data`, numbered `number`, moving to the next hash while
/// another revision holds its name (upstream's `CreateControllerRevision`). A revision of
/// that name with the same data is taken as it is.
async fn create_revision(
    set: &StatefulSet,
    api: &Api<ControllerRevision>,
    data: &Value,
    number: i64,
    collisions: &mut i32,
) -> Result<ControllerRevision> {
    for _ in 0..MAX_COLLISIONS {
        let rev = new_revision(set, data, number, &revision_hash(data, *collisions));
        match api.create(&PostParams::default(), &rev).await {
            Ok(created) => return Ok(created),
            Err(e) if is_code(&e, 409) => {
                let existing = api.get(&rev.name_any()).await.map_err(api_error)?;
                if existing.data.as_ref().map(|d| &d.0) == Some(data) {
                    return Ok(existing);
                }
                *collisions += 1;
            }
            Err(e) => return Err(api_error(e)),
        }
    }
    Err(Error(anyhow::anyhow!(
        "no free name for a new revision of {} after {MAX_COLLISIONS} hash collisions",
        set.name_any()
    )))
}

/// One sync's actions on one set.
struct Sync<'a> {
    ctx: &'a Ctx,
    set: &'a StatefulSet,
    key: String,
    regarding: ObjectReference,
    pods: Api<Pod>,
    claims: Api<PersistentVolumeClaim>,
    /// Claims created or changed in this sync, newer than the cache.
    fresh: HashMap<String, Arc<PersistentVolumeClaim>>,
    /// The template and name of the current revision.
    current: (PodTemplateSpec, String),
    /// The template and name of the update revision.
    update: (PodTemplateSpec, String),
}

impl Sync<'_> {
    /// The newest copy of claim `name` known.
    fn claim(&self, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.fresh.get(name).cloned().or_else(|| {
            let ns = self.set.namespace().unwrap_or_default();
            self.ctx.claims.get(&ObjectRef::new(name).within(&ns))
        })
    }

    /// Takes `steps` until one fails; returns how many pods were deleted for the update,
    /// and the failure.
    async fn run(&mut self, steps: Vec<Step>) -> (i32, Result<()>) {
        let mut updated = 0;
        for step in steps {
            let result = match step {
                Step::Recreate(pod) => {
                    let (ty, reason, what) = if pod::phase(&pod) == "Failed" {
                        (Type::Warning, "RecreatingFailedPod", "failed")
                    } else {
                        (Type::Normal, "RecreatingTerminatedPod", "terminated")
                    };
                    let message = format!(
                        "StatefulSet {} is recreating {what} Pod {}",
                        self.key,
                        pod.name_any()
                    );
                    self.ctx
                        .events
                        .publish(&self.regarding, ty, reason, &message)
                        .await;
                    self.delete(&pod).await
                }
                Step::Create { ordinal, at_update } => self.create(ordinal, at_update).await,
                Step::CreateClaims(pod) => {
                    let ordinal = ordinal_of(&self.set.name_any(), &pod.name_any()).unwrap_or(0);
                    self.create_claims(&pod.name_any(), ordinal).await
                }
                Step::Fix(pod, scaled_down) => self.fix(&pod, scaled_down).await,
                Step::Condemn(pod) => self.delete(&pod).await,
                Step::Update(pod) => {
                    let r = self.delete(&pod).await;
                    updated += i32::from(r.is_ok());
                    r
                }
            };
            if let Err(e) = result {
                return (updated, Err(e));
            }
        }
        (updated, Ok(()))
    }

    /// Records `verb` (create, update, delete) of pod `pod` as upstream's `recordPodEvent`.
    async fn pod_event(&self, verb: &str, pod: &str, error: Option<&Error>) {
        let set = self.set.name_any();
        let (ty, reason, message) = match error {
            None => (
                Type::Normal,
                format!("Successful{}", title(verb)),
                format!("{verb} Pod {pod} in StatefulSet {set} successful"),
            ),
            Some(e) => (
                Type::Warning,
                format!("Failed{}", title(verb)),
                format!("{verb} Pod {pod} in StatefulSet {set} failed error: {e}"),
            ),
        };
        self.ctx
            .events
            .publish(&self.regarding, ty, &reason, &message)
            .await;
    }

    /// Records `verb` of claim `claim` for pod `pod` as upstream's `recordClaimEvent`.
    async fn claim_event(&self, verb: &str, claim: &str, pod: &str, error: Option<&Error>) {
        let set = self.set.name_any();
        let (ty, reason, message) = match error {
            None => (
                Type::Normal,
                format!("Successful{}", title(verb)),
                format!("{verb} Claim {claim} Pod {pod} in StatefulSet {set} success"),
            ),
            Some(e) => (
                Type::Warning,
                format!("Failed{}", title(verb)),
                format!(
                    "{verb} Claim {claim} for Pod {pod} in StatefulSet {set} failed error: {e}"
                ),
            ),
        };
        self.ctx
            .events
            .publish(&self.regarding, ty, &reason, &message)
            .await;
    }

    /// Creates the pod with `ordinal` after its claims, then sets its claims' owners.
    async fn create(&mut self, ordinal: i32, at_update: bool) -> Result<()> {
        let (template, revision) = if at_update {
            &self.update
        } else {
            &self.current
        };
        let pod = new_pod(self.set, template, revision, ordinal);
        let name = pod.name_any();
        if let Err(e) = self.create_claims(&name, ordinal).await {
            self.pod_event("create", &name, Some(&e)).await;
            return Err(e);
        }
        match self.pods.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                self.ctx
                    .expectations
                    .created(&self.key, pods::key(&created.metadata));
                if let Err(e) = self.fix_claims(&created, false).await {
                    self.pod_event("update", &name, Some(&e)).await;
                    return Err(e);
                }
                self.pod_event("create", &name, None).await;
                Ok(())
            }
            // Not yet in the cache, or someone else's: tried again later.
            Err(e) if is_code(&e, 409) => Err(api_error(e)),
            Err(e) => {
                let e = api_error(e);
                self.pod_event("create", &name, Some(&e)).await;
                Err(e)
            }
        }
    }

    /// Creates the claims of the pod `pod` with `ordinal` that do not exist; a claim being
    /// deleted is an error (the pod waits for it to go).
    async fn create_claims(&mut self, pod: &str, ordinal: i32) -> Result<()> {
        for (_, claim) in claims_for(self.set, ordinal) {
            let name = claim.name_any();
            let existing = match self.claim(&name) {
                Some(c) => Some(c),
                None => match self.claims.create(&PostParams::default(), &claim).await {
                    Ok(created) => {
                        self.fresh.insert(name.clone(), Arc::new(created));
                        self.claim_event("create", &name, pod, None).await;
                        None
                    }
                    Err(e) if is_code(&e, 409) => {
                        let c = Arc::new(self.claims.get(&name).await.map_err(api_error)?);
                        self.fresh.insert(name.clone(), c.clone());
                        Some(c)
                    }
                    Err(e) => {
                        let e = api_error(e);
                        self.claim_event("create", &name, pod, Some(&e)).await;
                        return Err(Error(anyhow::anyhow!("failed to create PVC {name}: {e}")));
                    }
                },
            };
            if existing.is_some_and(|c| c.metadata.deletion_timestamp.is_some()) {
                return Err(Error(anyhow::anyhow!("pvc {name} is being deleted")));
            }
        }
        Ok(())
    }

    /// Gives `pod` its identity labels and its claims the owners the retention policy
    /// wants.
    async fn fix(&mut self, pod: &Pod, scaled_down: bool) -> Result<()> {
        let name = pod.name_any();
        let mut result = Ok(());
        if !identity_matches(self.set, pod)
            && let Some(ordinal) = ordinal_of(&self.set.name_any(), &name)
        {
            let patch = json!({"metadata": {"labels": {
                POD_NAME_LABEL: name,
                POD_INDEX_LABEL: ordinal.to_string(),
            }}});
            result = self
                .pods
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map(|_| ())
                .map_err(api_error);
        }
        if result.is_ok() {
            result = self.fix_claims(pod, scaled_down).await;
        }
        self.pod_event("update", &name, result.as_ref().err()).await;
        result
    }

    /// Sets the owners of `pod`'s claims as the retention policy wants. Claims not yet in
    /// the cache are done by a later sync.
    async fn fix_claims(&mut self, pod: &Pod, scaled_down: bool) -> Result<()> {
        let Some(ordinal) = ordinal_of(&self.set.name_any(), &pod.name_any()) else {
            return Ok(());
        };
        for (_, claim) in claims_for(self.set, ordinal) {
            let name = claim.name_any();
            let Some(existing) = self.claim(&name) else {
                continue;
            };
            let Some(refs) = claim_owners(&existing.metadata, self.set, pod, scaled_down) else {
                continue;
            };
            let mut ops = vec![json!({"op": "test", "path": "/metadata/uid",
                "value": existing.metadata.uid})];
            ops.push(if refs.is_empty() {
                json!({"op": "remove", "path": "/metadata/ownerReferences"})
            } else {
                json!({"op": "add", "path": "/metadata/ownerReferences", "value": refs})
            });
            let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))?;
            let updated = self
                .claims
                .patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
                .await
                .map_err(api_error)?;
            self.fresh.insert(name, Arc::new(updated));
        }
        Ok(())
    }

    /// Deletes `pod` (if it is still the same pod).
    async fn delete(&self, pod: &Pod) -> Result<()> {
        let name = pod.name_any();
        match delete_same(&self.pods, pod).await {
            Ok(Deleted::Now) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                self.ctx.expectations.deleted(&self.key, uid);
                self.pod_event("delete", &name, None).await;
                Ok(())
            }
            // Gone, or replaced: the next sync sees what is there.
            Ok(Deleted::Already) => Ok(()),
            Err(e) => {
                let e = api_error(e);
                self.pod_event("delete", &name, Some(&e)).await;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::merge;

    fn set(extra: Value) -> StatefulSet {
        let mut v = json!({
            "metadata": {"name": "web", "namespace": "d", "uid": "set-uid", "generation": 2},
            "spec": {
                "replicas": 3,
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "web"}},
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "nginx:1"}],
                        "volumes": [{"name": "data", "emptyDir": {}},
                                    {"name": "cache", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data",
                        "labels": {"tier": "db"}},
                    "spec": {"accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}}}}]
            }
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    /// Pod `web-<ordinal>` at `revision` in `state`: "ready", "pending", "unready",
    /// "terminating", "failed".
    fn pod(ordinal: i32, revision: &str, state: &str) -> Arc<Pod> {
        let (phase, ready) = match state {
            "ready" | "terminating" => ("Running", "True"),
            "pending" => ("Pending", "False"),
            "unready" => ("Running", "False"),
            "failed" => ("Failed", "False"),
            other => panic!("{other}"),
        };
        let name = format!("web-{ordinal}");
        let mut v = json!({
            "metadata": {"name": name, "namespace": "d", "uid": format!("uid-{ordinal}"),
                "labels": {"app": "web", REVISION_LABEL: revision, POD_NAME_LABEL: name,
                    POD_INDEX_LABEL: ordinal.to_string()}},
            "spec": {"containers": []},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready,
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        });
        if state == "terminating" {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn no_claims(_: &str) -> Option<Arc<PersistentVolumeClaim>> {
        None
    }

    /// Every claim exists, owned by no one.
    fn bare_claims(name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        Some(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        ))
    }

    fn describe(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::Recreate(p) => format!("recreate {}", p.name_any()),
                Step::Create { ordinal, at_update } => {
                    format!(
                        "create {ordinal}{}",
                        if *at_update { "" } else { " current" }
                    )
                }
                Step::CreateClaims(p) => format!("claims {}", p.name_any()),
                Step::Fix(p, _) => format!("fix {}", p.name_any()),
                Step::Condemn(p) => format!("condemn {}", p.name_any()),
                Step::Update(p) => format!("update {}", p.name_any()),
            })
            .collect()
    }

    fn now() -> Timestamp {
        "2026-01-02T00:00:00Z".parse().unwrap()
    }

    fn planned(set: &StatefulSet, mine: &[Arc<Pod>]) -> Vec<String> {
        describe(&plan(set, mine, "web-new", &bare_claims, now()))
    }

    #[test]
    fn pods_and_claims_are_named_by_ordinal() {
        assert_eq!(pod_name("web", 3), "web-3");
        assert_eq!(claim_name("data", "web", 0), "data-web-0");
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
        assert_eq!(ordinal_of("web", "webby-0"), None);
        assert_eq!(ordinal_of("my-web", "my-web-4"), Some(4));
        assert_eq!(revision_name("web", "abc"), "web-abc");
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), 225);
    }

    #[test]
    fn new_pods_carry_identity_revision_and_claims() {
        let s = set(json!({}));
        let template = s.spec.as_ref().unwrap().template.clone();
        let p = new_pod(&s, &template, "web-abc", 1);
        assert_eq!(p.name_any(), "web-1");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        let labels = p.labels();
        assert_eq!(labels["app"], "web");
        assert_eq!(labels[REVISION_LABEL], "web-abc");
        assert_eq!(labels[POD_NAME_LABEL], "web-1");
        assert_eq!(labels[POD_INDEX_LABEL], "1");
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-1"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let volumes = spec.volumes.as_ref().unwrap();
        // The claim replaces the template's volume of that name; the others stay.
        assert_eq!(volumes.len(), 2);
        assert_eq!(volumes[0].name, "data");
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "data-web-1"
        );
        assert_eq!(volumes[1].name, "cache");
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("StatefulSet", Some(true))
        );
        assert!(identity_matches(&s, &p));

        let claims = claims_for(&s, 1);
        assert_eq!(claims.len(), 1);
        let (volume, claim) = &claims[0];
        assert_eq!(volume, "data");
        assert_eq!(claim.name_any(), "data-web-1");
        assert_eq!(claim.namespace().as_deref(), Some("d"));
        assert_eq!(
            claim.labels(),
            &BTreeMap::from([
                ("app".to_string(), "web".to_string()),
                ("tier".to_string(), "db".to_string())
            ])
        );
    }

    #[test]
    fn ordered_ready_creates_one_pod_at_a_time_in_order() {
        let s = set(json!({}));
        assert_eq!(planned(&s, &[]), ["create 0"]);
        assert!(planned(&s, &[pod(0, "web-new", "pending")]).is_empty());
        assert!(planned(&s, &[pod(0, "web-new", "unready")]).is_empty());
        assert_eq!(planned(&s, &[pod(0, "web-new", "ready")]), ["create 1"]);
        // A gap is filled first.
        assert_eq!(
            planned(
                &s,
                &[pod(0, "web-new", "ready"), pod(2, "web-new", "ready")]
            ),
            ["create 1"]
        );
        let all: Vec<_> = (0..3).map(|o| pod(o, "web-new", "ready")).collect();
        assert!(planned(&s, &all).is_empty());
        // Parallel creates them all at once, whatever their state.
        let p = set(json!({"spec": {"podManagementPolicy": "Parallel"}}));
        assert_eq!(planned(&p, &[]), ["create 0", "create 1", "create 2"]);
        assert_eq!(
            planned(&p, &[pod(1, "web-new", "pending")]),
            ["create 0", "create 2"]
        );
    }

    #[test]
    fn ordinals_start_where_the_set_says() {
        let s = set(json!({"spec": {"ordinals": {"start": 5}, "replicas": 2}}));
        assert_eq!(planned(&s, &[]), ["create 5"]);
        assert_eq!(planned(&s, &[pod(5, "web-new", "ready")]), ["create 6"]);
        // web-0 is outside 5..7: condemned.
        assert_eq!(
            planned(
                &s,
                &[
                    pod(0, "web-new", "ready"),
                    pod(5, "web-new", "ready"),
                    pod(6, "web-new", "ready")
                ]
            ),
            ["condemn web-0"]
        );
    }

    #[test]
    fn scaling_down_goes_from_the_highest_ordinal_one_at_a_time() {
        let s = set(json!({"spec": {"replicas": 2}}));
        let mut mine: Vec<_> = (0..4).map(|o| pod(o, "web-new", "ready")).collect();
        assert_eq!(planned(&s, &mine), ["condemn web-3"]);
        mine[3] = pod(3, "web-new", "terminating");
        assert!(planned(&s, &mine).is_empty());
        mine.pop();
        assert_eq!(planned(&s, &mine), ["condemn web-2"]);
        // An unready replica blocks scaling down.
        mine[1] = pod(1, "web-new", "unready");
        assert!(planned(&s, &mine).is_empty());
        // An unhealthy condemned pod goes only if it is the lowest unhealthy one.
        let mine = vec![
            pod(0, "web-new", "ready"),
            pod(1, "web-new", "ready"),
            pod(2, "web-new", "unready"),
            pod(3, "web-new", "unready"),
        ];
        assert!(planned(&s, &mine).is_empty());
        let mine = vec![
            pod(0, "web-new", "ready"),
            pod(1, "web-new", "ready"),
            pod(2, "web-new", "ready"),
            pod(3, "web-new", "unready"),
        ];
        assert_eq!(planned(&s, &mine), ["condemn web-3"]);
        // Parallel deletes them all at once.
        let p = set(json!({"spec": {"replicas": 2, "podManagementPolicy": "Parallel"}}));
        let mine: Vec<_> = (0..4).map(|o| pod(o, "web-new", "ready")).collect();
        assert_eq!(planned(&p, &mine), ["condemn web-3", "condemn web-2"]);
    }

    #[test]
    fn failed_pods_are_deleted_then_made_again() {
        let s = set(json!({}));
        let mine = vec![pod(0, "web-new", "failed"), pod(1, "web-new", "ready")];
        assert_eq!(planned(&s, &mine), ["recreate web-0"]);
        // Being deleted: wait for it to go, then it is created again.
        let mut dying = (*pod(0, "web-new", "failed")).clone();
        dying.metadata.deletion_timestamp = pod(0, "x", "terminating")
            .metadata
            .deletion_timestamp
            .clone();
        assert!(planned(&s, &[Arc::new(dying), pod(1, "web-new", "ready")]).is_empty());
        assert_eq!(planned(&s, &[pod(1, "web-new", "ready")]), ["create 0"]);
    }

    #[test]
    fn rolling_updates_go_down_to_the_partition() {
        let s = set(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 1}}}}));
        let mut mine: Vec<_> = (0..3).map(|o| pod(o, "web-old", "ready")).collect();
        assert_eq!(planned(&s, &mine), ["update web-2"]);
        mine[2] = pod(2, "web-old", "terminating");
        assert!(planned(&s, &mine).is_empty());
        mine.pop();
        // Made again at the update revision (at or above the partition).
        assert_eq!(planned(&s, &mine), ["create 2"]);
        mine.push(pod(2, "web-new", "unready"));
        assert!(planned(&s, &mine).is_empty());
        mine[2] = pod(2, "web-new", "ready");
        assert_eq!(planned(&s, &mine), ["update web-1"]);
        mine[1] = pod(1, "web-new", "ready");
        // web-0 is below the partition: kept, and made again at the current revision.
        assert!(planned(&s, &mine).is_empty());
        assert_eq!(planned(&s, &mine[1..]), ["create 0 current"]);
        assert!(!at_update(&s, 0) && at_update(&s, 1));
    }

    #[test]
    fn max_unavailable_bounds_the_pods_updated_at_once() {
        let s = set(
            json!({"spec": {"podManagementPolicy": "Parallel", "replicas": 4,
            "updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}}}}),
        );
        let mut mine: Vec<_> = (0..4).map(|o| pod(o, "web-old", "ready")).collect();
        assert_eq!(planned(&s, &mine), ["update web-3", "update web-2"]);
        mine[3] = pod(3, "web-old", "terminating");
        assert_eq!(planned(&s, &mine), ["update web-2"]);
        let half = set(json!({"spec": {"replicas": 4,
            "updateStrategy": {"rollingUpdate": {"maxUnavailable": "50%"}}}}));
        assert_eq!(max_unavailable(&half), 2);
        assert_eq!(max_unavailable(&set(json!({}))), 1);
        let zero =
            set(json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0}}}}));
        assert_eq!(max_unavailable(&zero), 1);
    }

    #[test]
    fn on_delete_only_replaces_deleted_pods() {
        let s =
            set(json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}}));
        let mine: Vec<_> = (0..3).map(|o| pod(o, "web-old", "ready")).collect();
        assert!(planned(&s, &mine).is_empty());
        // A deleted pod comes back at the update revision.
        assert_eq!(planned(&s, &mine[1..]), ["create 0"]);
    }

    #[test]
    fn identity_labels_are_put_back() {
        let s = set(json!({}));
        let mut bare = (*pod(0, "web-new", "ready")).clone();
        bare.metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(POD_INDEX_LABEL);
        assert!(!identity_matches(&s, &bare));
        let mine = vec![
            Arc::new(bare),
            pod(1, "web-new", "ready"),
            pod(2, "web-new", "ready"),
        ];
        assert_eq!(planned(&s, &mine), ["fix web-0"]);
    }

    fn claim(refs: Value) -> ObjectMeta {
        serde_json::from_value(json!({"name": "data-web-0", "ownerReferences": refs})).unwrap()
    }

    #[test]
    fn claims_are_owned_as_the_retention_policy_says() {
        let p = pod(0, "web-new", "ready");
        let policy = |deleted: &str, scaled: &str| {
            set(json!({"spec": {"persistentVolumeClaimRetentionPolicy":
                {"whenDeleted": deleted, "whenScaled": scaled}}}))
        };
        let kinds = |refs: Option<Vec<OwnerReference>>| {
            refs.map(|r| r.iter().map(|r| r.kind.clone()).collect::<Vec<_>>())
        };
        // Retain, Retain: nothing to do on a bare claim.
        assert_eq!(
            claim_owners(&claim(json!([])), &policy("Retain", "Retain"), &p, false),
            None
        );
        // whenDeleted: Delete: the set owns it.
        let s = policy("Delete", "Retain");
        let refs = claim_owners(&claim(json!([])), &s, &p, false).unwrap();
        assert_eq!(
            (
                refs[0].kind.as_str(),
                refs[0].uid.as_str(),
                refs[0].controller
            ),
            ("StatefulSet", "set-uid", None)
        );
        assert_eq!(
            kinds(claim_owners(&claim(json!([])), &s, &p, true)),
            Some(vec!["StatefulSet".into()])
        );
        // whenScaled: Delete: the pod owns it once scaled down, not before.
        let s = policy("Retain", "Delete");
        assert_eq!(claim_owners(&claim(json!([])), &s, &p, false), None);
        assert_eq!(
            kinds(claim_owners(&claim(json!([])), &s, &p, true)),
            Some(vec!["Pod".into()])
        );
        // Both: the set until scaled down, then the pod alone.
        let s = policy("Delete", "Delete");
        let set_ref = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
            "uid": "set-uid"}]);
        assert_eq!(claim_owners(&claim(set_ref.clone()), &s, &p, false), None);
        assert_eq!(
            kinds(claim_owners(&claim(set_ref.clone()), &s, &p, true)),
            Some(vec!["Pod".into()])
        );
        // Back to Retain: our references go.
        assert_eq!(
            kinds(claim_owners(
                &claim(set_ref),
                &policy("Retain", "Retain"),
                &p,
                false
            )),
            Some(vec![])
        );
        // An older set of the same name, or another controller: left alone.
        let stale = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
            "uid": "old"}]);
        assert_eq!(claim_owners(&claim(stale), &s, &p, false), None);
        let foreign = json!([{"apiVersion": "v1", "kind": "Thing", "name": "x", "uid": "t",
            "controller": true}]);
        assert_eq!(claim_owners(&claim(foreign), &s, &p, false), None);
    }

    #[test]
    fn a_claim_of_an_older_pod_blocks_its_successor() {
        let s = set(json!({"spec": {"persistentVolumeClaimRetentionPolicy":
            {"whenDeleted": "Retain", "whenScaled": "Delete"}}}));
        let old: Arc<PersistentVolumeClaim> = Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "data-web-0", "ownerReferences":
                [{"apiVersion": "v1", "kind": "Pod", "name": "web-0", "uid": "gone"}]}}))
            .unwrap(),
        );
        let lookup = move |n: &str| (n == "data-web-0").then(|| old.clone());
        assert!(claims_stale(&s, 0, &lookup));
        assert!(describe(&plan(&s, &[], "web-new", &lookup, now())).is_empty());
        assert!(!claims_stale(&set(json!({})), 0, &lookup));
        // A pending pod whose claim is missing gets it.
        let pending = [pod(0, "web-new", "pending")];
        assert_eq!(
            describe(&plan(&s, &pending, "web-new", &no_claims, now())),
            ["claims web-0"]
        );
    }

    #[test]
    fn revisions_hash_their_template_and_collision_count() {
        let s = set(json!({}));
        let t = s.spec.as_ref().unwrap().template.clone();
        let data = revision_data(&t);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(revision_hash(&data, 0), revision_hash(&data, 0));
        assert_ne!(revision_hash(&data, 0), revision_hash(&data, 1));
        let mut other = t.clone();
        other.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        assert_ne!(
            revision_hash(&data, 0),
            revision_hash(&revision_data(&other), 0)
        );
        assert!(
            revision_hash(&data, 0)
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
        let rev = new_revision(&s, &data, 3, "abc");
        assert_eq!(rev.name_any(), "web-abc");
        assert_eq!(rev.revision, 3);
        assert_eq!(rev.labels()[HASH_LABEL], "abc");
        assert_eq!(rev.labels()["app"], "web");
        assert_eq!(template_of(&rev), Some(t));
    }

    #[test]
    fn the_update_revision_is_kept_renumbered_or_created() {
        let s = set(json!({}));
        let t1 = s.spec.as_ref().unwrap().template.clone();
        let mut t2 = t1.clone();
        t2.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        let (d1, d2) = (revision_data(&t1), revision_data(&t2));
        let mut revisions = vec![
            new_revision(&s, &d2, 2, "two"),
            new_revision(&s, &d1, 1, "one"),
        ];
        sort_revisions(&mut revisions);
        assert_eq!(revisions[0].name_any(), "web-one");
        assert_eq!(next_revision(&revisions), 3);
        assert_eq!(choose_update(&revisions, &d2), Choice::Keep(1));
        assert_eq!(choose_update(&revisions, &d1), Choice::Renumber(0));
        let mut t3 = t1.clone();
        t3.spec.as_mut().unwrap().containers[0].image = Some("nginx:3".into());
        assert_eq!(
            choose_update(&revisions, &revision_data(&t3)),
            Choice::Create
        );
        assert_eq!(choose_update(&[], &d1), Choice::Create);
        assert_eq!(next_revision(&[]), 1);
    }

    #[test]
    fn history_beyond_the_limit_goes_oldest_first_sparing_live_revisions() {
        let s = set(json!({}));
        let revisions: Vec<_> = (1..=5)
            .map(|i| new_revision(&s, &json!(i), i, &i.to_string()))
            .collect();
        let live: HashSet<&str> = ["web-1", "web-5"].into();
        let names = |limit| {
            history_to_delete(&revisions, &live, limit)
                .iter()
                .map(|r| r.name_any())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(1), ["web-2", "web-3"]);
        assert!(names(3).is_empty());
        assert_eq!(names(0), ["web-2", "web-3", "web-4"]);
    }

    #[test]
    fn status_counts_pods_by_revision_and_readiness() {
        let s = set(json!({"spec": {"minReadySeconds": 10}}));
        let mine = vec![
            pod(0, "web-old", "ready"),
            pod(1, "web-new", "ready"),
            pod(2, "web-new", "terminating"),
            pod(3, "web-new", "pending"),
        ];
        let mut st = status_of(&s, &mine, "web-old", "web-new", 0, now());
        assert_eq!(
            st,
            Status {
                replicas: 4,
                ready: 3,
                available: 3,
                current: 1,
                updated: 2,
                current_revision: "web-old".into(),
                update_revision: "web-new".into(),
                collisions: 0,
                observed_generation: 2,
            }
        );
        // Ready only just: not yet available.
        let fresh = status_of(
            &s,
            &mine,
            "web-old",
            "web-new",
            0,
            "2026-01-01T00:00:05Z".parse().unwrap(),
        );
        assert_eq!(fresh.available, 0);
        complete_rolling_update(&s, &mut st);
        assert_eq!(st.current_revision, "web-old");
        let done: Vec<_> = (0..3).map(|o| pod(o, "web-new", "ready")).collect();
        let mut st = status_of(&s, &done, "web-old", "web-new", 1, now());
        complete_rolling_update(&s, &mut st);
        assert_eq!((st.current, st.current_revision.as_str()), (3, "web-new"));
        assert_eq!(
            st.to_json(&json!({"conditions": [{"type": "X"}]})),
            json!({"replicas": 3, "readyReplicas": 3, "availableReplicas": 3,
                "currentReplicas": 3, "updatedReplicas": 3, "currentRevision": "web-new",
                "updateRevision": "web-new", "collisionCount": 1, "observedGeneration": 2,
                "conditions": [{"type": "X"}]})
        );
        assert_eq!(
            Status::default().to_json(&Value::Null),
            json!({"replicas": 0, "availableReplicas": 0, "collisionCount": 0})
        );
    }

    #[test]
    fn events_are_titled_like_upstream() {
        assert_eq!(title("create"), "Create");
        assert_eq!(title(""), "");
    }
}
