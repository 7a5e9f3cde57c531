//! The Deployment controller: rolls a Deployment's pod template out through ReplicaSets, as
//! upstream's `deployment` controller does.
//!
//! The ReplicaSet whose template equals the Deployment's (ignoring `pod-template-hash`) is
//! the new one; it is named `<deployment>-<hash>` and created when missing. The others are
//! old. RollingUpdate scales the new one up within `maxSurge` and the old ones down within
//! `maxUnavailable` (unhealthy old pods first); Recreate scales every old one to zero, waits
//! for their pods to go, then scales the new one up. A change of `spec.replicas` alone scales
//! the active ReplicaSets in proportion (by their `max-replicas` annotations). Revisions are
//! numbered in `deployment.kubernetes.io/revision`, old empty ReplicaSets beyond
//! `revisionHistoryLimit` are deleted, a paused Deployment only scales, and status carries
//! the replica counts and upstream's Available and Progressing conditions (with
//! `progressDeadlineSeconds`), which `kubectl rollout status` reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::events::{Recorder, Type, reference};
use crate::pods;
use crate::runtime::{self, Error, Informers, Result, Shared};

/// The revision of a ReplicaSet (and of its Deployment).
const REVISION: &str = "deployment.kubernetes.io/revision";
/// Revisions a reused ReplicaSet held before.
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when a ReplicaSet was last scaled.
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's replicas plus surge when a ReplicaSet was last scaled.
const MAX: &str = "deployment.kubernetes.io/max-replicas";
/// The label that tells ReplicaSets of one Deployment apart.
const HASH: &str = "pod-template-hash";

struct Ctx {
    client: kube::Client,
    deployments: Store<Deployment>,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    events: Recorder,
}

/// Starts the Deployment controller.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let deployments = informers.store::<Deployment>();
    let replica_sets = informers.store::<ReplicaSet>();
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        deployments: deployments.clone(),
        replica_sets: replica_sets.clone(),
        pods: informers.store::<Pod>(),
        events: shared.recorder("deployment-controller"),
    });
    let (by_rs, by_pod, rs_lookup) = (deployments.clone(), deployments.clone(), replica_sets);
    let controller = Controller::for_stream(informers.subscribe::<Deployment>(), deployments)
        .watches_stream(
            informers.subscribe::<ReplicaSet>(),
            move |rs: ReplicaSet| owners_of_rs(&by_rs, &rs),
        )
        .watches_stream(informers.subscribe::<Pod>(), move |pod: Pod| {
            // Recreate waits for old pods to go: a pod's change concerns its ReplicaSet's
            // Deployment when that one recreates (the others follow their ReplicaSets).
            let ns = pod.namespace().unwrap_or_default();
            pods::controller_of(&pod.metadata)
                .filter(|c| c.kind == "ReplicaSet")
                .and_then(|c| rs_lookup.get(&ObjectRef::new(&c.name).within(&ns)))
                .and_then(|rs| pods::controller_of(&rs.metadata).cloned())
                .filter(|c| c.kind == "Deployment")
                .map(|c| ObjectRef::new(&c.name).within(&ns))
                .into_iter()
                .filter(|r| by_pod.get(r).is_some_and(|d| !is_rolling(&d)))
                .collect::<Vec<_>>()
        });
    runtime::run("deployment-controller", controller, shared, ctx, reconcile)
}

/// The Deployments a ReplicaSet change concerns: its controller, or, for an orphan, those
/// whose selector matches it.
fn owners_of_rs(deployments: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace().unwrap_or_default();
    if let Some(c) = pods::controller_of(&rs.metadata) {
        return match c.kind.as_str() {
            "Deployment" => vec![ObjectRef::new(&c.name).within(&ns)],
            _ => Vec::new(),
        };
    }
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
        .filter(|d| pods::selects(d.spec.as_ref().map(|s| &s.selector), rs.labels()))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

fn replicas_of(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn rs_status(
    rs: &ReplicaSet,
    f: impl Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32,
) -> i32 {
    rs.status.as_ref().map(f).unwrap_or(0)
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        != "Recreate"
}

/// An int-or-percent of `total`, rounded up or down (upstream's
/// `GetScaledValueFromIntOrPercent`).
fn scaled(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => 0,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let percent: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let product = percent * i64::from(total);
            let v = if round_up {
                (product + 99) / 100
            } else {
                product / 100
            };
            v as i32
        }
    }
}

/// `(maxSurge, maxUnavailable)` as pod counts; never both zero (upstream's
/// `ResolveFenceposts`). Recreate has neither.
fn fenceposts(d: &Deployment) -> (i32, i32) {
    if !is_rolling(d) {
        return (0, 0);
    }
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".into());
    let replicas = replicas_of(d);
    let surge = scaled(
        Some(ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&default)),
        replicas,
        true,
    );
    let unavailable = scaled(
        Some(
            ru.and_then(|r| r.max_unavailable.as_ref())
                .unwrap_or(&default),
        ),
        replicas,
        false,
    );
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

/// The template without the `pod-template-hash` label, as JSON, for comparisons.
fn template_without_hash(t: Option<&PodTemplateSpec>) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or_default();
    if let Some(labels) = v
        .pointer_mut("/metadata/labels")
        .and_then(|l| l.as_object_mut())
    {
        labels.remove(HASH);
        if labels.is_empty() {
            v["metadata"].as_object_mut().map(|m| m.remove("labels"));
        }
    }
    if v["metadata"].as_object().is_some_and(|m| m.is_empty()) {
        v.as_object_mut().map(|m| m.remove("metadata"));
    }
    v
}

/// The `pod-template-hash` of a template: FNV-1a over its JSON and the collision count,
/// spelled with upstream's safe alphabet (no vowels, no look-alike digits).
pub(crate) fn template_hash(t: Option<&PodTemplateSpec>, collisions: i32) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let text = format!("{}{collisions}", template_without_hash(t));
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| SAFE[usize::from(b) % SAFE.len()] as char)
        .collect()
}

/// Annotations a ReplicaSet takes from its Deployment: all but kubectl's last applied
/// configuration and the controller's own.
fn copied_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.annotations()
        .iter()
        .filter(|(k, _)| {
            ![
                "kubectl.kubernetes.io/last-applied-configuration",
                REVISION,
                REVISION_HISTORY,
                DESIRED,
                MAX,
            ]
            .contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The ReplicaSets of one sync: the new one (if it exists) and the old ones.
struct Sets {
    new: Option<ReplicaSet>,
    old: Vec<ReplicaSet>,
}

impl Sets {
    fn all(&self) -> impl Iterator<Item = &ReplicaSet> {
        self.old.iter().chain(self.new.iter())
    }
}

fn split(d: &Deployment, owned: Vec<ReplicaSet>) -> Sets {
    let want = template_without_hash(d.spec.as_ref().map(|s| &s.template));
    let mut new = None;
    let mut old = Vec::new();
    // The oldest equal one is the new one, as upstream picks it.
    let mut owned = owned;
    owned.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0));
    for rs in owned {
        let same = new.is_none()
            && template_without_hash(rs.spec.as_ref().and_then(|s| s.template.as_ref())) == want;
        if same {
            new = Some(rs);
        } else {
            old.push(rs);
        }
    }
    Sets { new, old }
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action> {
    let Some(d) = ctx.deployments.get(&ObjectRef::from_obj(d.as_ref())) else {
        return Ok(Action::await_change());
    };
    let ns = d.namespace().unwrap_or_default();
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = d.spec.as_ref().map(|s| s.selector.clone());
    let candidates: Vec<Arc<ReplicaSet>> = ctx
        .replica_sets
        .state()
        .into_iter()
        .filter(|rs| rs.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let owner_ref = pods::controller_ref(d.as_ref());
    let owned: Vec<ReplicaSet> =
        pods::claim(&rs_api, d.meta(), &owner_ref, selector.as_ref(), candidates)
            .await
            .into_iter()
            .map(|rs| (*rs).clone())
            .collect();
    let mut sync = Sync {
        ctx: &ctx,
        d: (*d).clone(),
        rs_api,
        sets: split(&d, owned),
        new_condition: None,
    };
    if d.metadata.deletion_timestamp.is_some() {
        return sync.status().await;
    }
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    if paused {
        sync.scale().await?;
        return sync.status().await;
    }
    if sync.is_scaling_event() {
        sync.scale().await?;
        return sync.status().await;
    }
    if is_rolling(&d) {
        sync.rolling().await
    } else {
        sync.recreate().await
    }
}

/// One sync of one Deployment.
struct Sync<'a> {
    ctx: &'a Ctx,
    d: Deployment,
    rs_api: Api<ReplicaSet>,
    sets: Sets,
    /// A Progressing condition this sync earned (new ReplicaSet created or found).
    new_condition: Option<(String, String)>,
}

impl Sync<'_> {
    fn name(&self) -> String {
        self.d.name_any()
    }

    /// Whether `spec.replicas` changed since the active ReplicaSets were last scaled.
    fn is_scaling_event(&self) -> bool {
        let want = replicas_of(&self.d).to_string();
        self.sets
            .all()
            .filter(|rs| rs_replicas(rs) > 0)
            .any(|rs| rs.annotations().get(DESIRED).is_some_and(|v| *v != want))
    }

    /// Scales `rs` to `to` (recording the Deployment's sizes in its annotations) with an
    /// event; the ReplicaSet in `self.sets` is updated too.
    async fn scale_rs(&mut self, rs: &ReplicaSet, to: i32) -> Result<()> {
        let (surge, _) = fenceposts(&self.d);
        let replicas = replicas_of(&self.d);
        let from = rs_replicas(rs);
        let mut updated = rs.clone();
        let annotations = updated
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        let desired = replicas.to_string();
        let max = (replicas + surge).to_string();
        let annotations_changed =
            annotations.get(DESIRED) != Some(&desired) || annotations.get(MAX) != Some(&max);
        if from == to && !annotations_changed {
            return Ok(());
        }
        annotations.insert(DESIRED.into(), desired);
        annotations.insert(MAX.into(), max);
        if let Some(spec) = updated.spec.as_mut() {
            spec.replicas = Some(to);
        }
        // A replace carries the resourceVersion read: a stale decision fails and is retried.
        let written = self
            .rs_api
            .replace(&rs.name_any(), &PostParams::default(), &updated)
            .await?;
        for slot in self.sets.old.iter_mut().chain(self.sets.new.iter_mut()) {
            if slot.metadata.uid == written.metadata.uid {
                *slot = written.clone();
            }
        }
        if from != to {
            let way = if to > from { "up" } else { "down" };
            self.ctx
                .events
                .publish(
                    &reference(&self.d),
                    Type::Normal,
                    "ScalingReplicaSet",
                    &format!(
                        "Scaled {way} replica set {} from {from} to {to}",
                        rs.name_any()
                    ),
                )
                .await;
        }
        Ok(())
    }

    /// The next revision: one past the highest of the old ReplicaSets.
    fn next_revision(&self) -> i64 {
        self.sets.old.iter().map(revision).max().unwrap_or(0) + 1
    }

    /// Records that the new ReplicaSet `name` was found, as upstream does only for a
    /// Deployment with no Progressing condition yet; otherwise its progress is reported as
    /// ReplicaSetUpdated.
    fn found_new(&mut self, name: &str) {
        let progressing = self.d.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Progressing")
        });
        if !progressing {
            self.new_condition = Some((
                "FoundNewReplicaSet".into(),
                format!("Found new replica set \"{name}\""),
            ));
        }
    }

    /// Finds or creates the new ReplicaSet, bringing its revision and annotations up to date
    /// (upstream's `getNewReplicaSet`).
    async fn ensure_new(&mut self, create: bool) -> Result<()> {
        let revision = self.next_revision();
        if let Some(rs) = self.sets.new.clone() {
            let mut updated = rs.clone();
            let annotations = updated
                .metadata
                .annotations
                .get_or_insert_with(Default::default);
            let mut changed = false;
            let current: i64 = annotations
                .get(REVISION)
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            if current < revision {
                if current > 0 {
                    let history = match annotations.get(REVISION_HISTORY) {
                        Some(h) if !h.is_empty() => format!("{h},{current}"),
                        _ => current.to_string(),
                    };
                    annotations.insert(REVISION_HISTORY.into(), history);
                }
                annotations.insert(REVISION.into(), revision.to_string());
                changed = true;
            }
            for (k, v) in copied_annotations(&self.d) {
                if annotations.get(&k) != Some(&v) {
                    annotations.insert(k, v);
                    changed = true;
                }
            }
            let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if let Some(spec) = updated.spec.as_mut()
                && spec.min_ready_seconds != min_ready
            {
                spec.min_ready_seconds = min_ready;
                changed = true;
            }
            if changed {
                let written = self
                    .rs_api
                    .replace(&rs.name_any(), &PostParams::default(), &updated)
                    .await?;
                self.sets.new = Some(written);
            }
            let rs_revision = revision.max(current);
            self.set_deployment_revision(rs_revision).await?;
            self.found_new(&rs.name_any());
            return Ok(());
        }
        if !create {
            return Ok(());
        }
        let spec = self.d.spec.clone().unwrap_or_default();
        let collisions = self
            .d
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let hash = template_hash(Some(&spec.template), collisions);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(HASH.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(HASH.into(), hash.clone());
        let mut annotations = copied_annotations(&self.d);
        annotations.insert(REVISION.into(), revision.to_string());
        let (surge, _) = fenceposts(&self.d);
        annotations.insert(DESIRED.into(), replicas_of(&self.d).to_string());
        annotations.insert(MAX.into(), (replicas_of(&self.d) + surge).to_string());
        let replicas = self.new_rs_replicas();
        let name = format!("{}-{hash}", self.name());
        let rs = ReplicaSet {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.namespace(),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: Some(annotations),
                owner_references: Some(vec![pods::controller_ref(&self.d)]),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                if replicas > 0 {
                    self.ctx
                        .events
                        .publish(
                            &reference(&self.d),
                            Type::Normal,
                            "ScalingReplicaSet",
                            &format!("Scaled up replica set {name} from 0 to {replicas}"),
                        )
                        .await;
                }
                self.sets.new = Some(created);
                self.set_deployment_revision(revision).await?;
                self.new_condition = Some((
                    "NewReplicaSetCreated".into(),
                    format!("Created new replica set \"{name}\""),
                ));
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Ours, not yet in the cache: fine. Someone else's or another template: a hash
                // collision, counted so the next try uses another name.
                let existing = self.rs_api.get(&name).await?;
                let ours = pods::controller_of(&existing.metadata)
                    .is_some_and(|c| Some(&c.uid) == self.d.metadata.uid.as_ref());
                let same =
                    template_without_hash(existing.spec.as_ref().and_then(|s| s.template.as_ref()))
                        == template_without_hash(Some(&spec.template));
                if ours && same {
                    self.sets.new = Some(existing);
                    return Ok(());
                }
                let api: Api<Deployment> = Api::namespaced(
                    self.ctx.client.clone(),
                    &self.d.namespace().unwrap_or_default(),
                );
                api.patch_status(
                    &self.name(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"collisionCount": collisions + 1}})),
                )
                .await?;
                Err(Error::Failed(format!(
                    "replica set {name} exists with another template; collision count now {}",
                    collisions + 1
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn set_deployment_revision(&mut self, revision: i64) -> Result<()> {
        let value = revision.to_string();
        if self.d.annotations().get(REVISION) == Some(&value) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(
            self.ctx.client.clone(),
            &self.d.namespace().unwrap_or_default(),
        );
        let patch = json!({"metadata": {"annotations": {REVISION: value}}});
        self.d = api
            .patch(&self.name(), &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    /// How many replicas the new ReplicaSet should have now (upstream's
    /// `NewRSNewReplicas`).
    fn new_rs_replicas(&self) -> i32 {
        let replicas = replicas_of(&self.d);
        if !is_rolling(&self.d) {
            return replicas;
        }
        let current = self.sets.new.as_ref().map(rs_replicas).unwrap_or(0);
        let (surge, _) = fenceposts(&self.d);
        let total: i32 = self.sets.all().map(rs_replicas).sum();
        let max_total = replicas + surge;
        if total >= max_total {
            return current;
        }
        current + (max_total - total).min(replicas - current).max(0)
    }

    async fn rolling(&mut self) -> Result<Action> {
        self.ensure_new(true).await?;
        // Scale the new ReplicaSet up (or down to the target).
        if let Some(new) = self.sets.new.clone() {
            let want = replicas_of(&self.d);
            let to = if rs_replicas(&new) > want {
                want
            } else {
                self.new_rs_replicas()
            };
            if to != rs_replicas(&new) {
                self.scale_rs(&new, to).await?;
                return self.status().await;
            }
        }
        if self.scale_down_old().await? {
            return self.status().await;
        }
        if self.complete() {
            self.cleanup().await?;
        }
        self.status().await
    }

    /// Scales old ReplicaSets down as far as `maxUnavailable` allows, unhealthy pods first
    /// (upstream's `reconcileOldReplicaSets`). Whether anything was scaled.
    async fn scale_down_old(&mut self) -> Result<bool> {
        let old_count: i32 = self.sets.old.iter().map(rs_replicas).sum();
        if old_count == 0 {
            return Ok(false);
        }
        let replicas = replicas_of(&self.d);
        let (_, unavailable) = fenceposts(&self.d);
        let all: i32 = self.sets.all().map(rs_replicas).sum();
        let min_available = replicas - unavailable;
        let new_unavailable = self
            .sets
            .new
            .as_ref()
            .map(|rs| rs_replicas(rs) - rs_status(rs, |s| s.available_replicas.unwrap_or(0)))
            .unwrap_or(0);
        let max_down = all - min_available - new_unavailable;
        if max_down <= 0 {
            return Ok(false);
        }
        let mut old = self.sets.old.clone();
        old.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0));
        // First the pods that are not available anyway.
        let mut cleaned = 0;
        for rs in &old {
            if cleaned >= max_down {
                break;
            }
            let replicas = rs_replicas(rs);
            let available = rs_status(rs, |s| s.available_replicas.unwrap_or(0));
            if replicas == 0 || replicas == available {
                continue;
            }
            let down = (max_down - cleaned).min(replicas - available);
            self.scale_rs(rs, replicas - down).await?;
            cleaned += down;
        }
        // Then available ones, down to minAvailable.
        let available: i32 = self
            .sets
            .all()
            .map(|rs| rs_status(rs, |s| s.available_replicas.unwrap_or(0)))
            .sum();
        let mut total_down = 0;
        if available > min_available {
            let budget = available - min_available;
            let old: Vec<ReplicaSet> = {
                let mut o = self.sets.old.clone();
                o.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0));
                o
            };
            for rs in &old {
                if total_down >= budget {
                    break;
                }
                let replicas = rs_replicas(rs);
                if replicas == 0 {
                    continue;
                }
                let down = replicas.min(budget - total_down);
                self.scale_rs(rs, replicas - down).await?;
                total_down += down;
            }
        }
        Ok(cleaned + total_down > 0)
    }

    async fn recreate(&mut self) -> Result<Action> {
        self.ensure_new(false).await?;
        // Every old ReplicaSet to zero first.
        let mut scaled = false;
        for rs in self.sets.old.clone() {
            if rs_replicas(&rs) > 0 {
                self.scale_rs(&rs, 0).await?;
                scaled = true;
            }
        }
        if scaled {
            return self.status().await;
        }
        // Then wait until their pods are gone.
        let old_uids: Vec<String> = self
            .sets
            .old
            .iter()
            .filter_map(|rs| rs.metadata.uid.clone())
            .collect();
        let ns = self.d.namespace().unwrap_or_default();
        let old_running = self.ctx.pods.state().iter().any(|p| {
            p.metadata.namespace.as_deref() == Some(ns.as_str())
                && pods::controller_of(&p.metadata).is_some_and(|c| old_uids.contains(&c.uid))
                && !pod::is_terminal(p)
        });
        if old_running {
            return self.status().await;
        }
        self.ensure_new(true).await?;
        if let Some(new) = self.sets.new.clone() {
            let want = replicas_of(&self.d);
            if rs_replicas(&new) != want {
                self.scale_rs(&new, want).await?;
                return self.status().await;
            }
        }
        if self.complete() {
            self.cleanup().await?;
        }
        self.status().await
    }

    /// Scales the active ReplicaSets after a change of `spec.replicas` alone (upstream's
    /// `scale`, proportional during a rollout).
    async fn scale(&mut self) -> Result<()> {
        self.ensure_new(false).await?;
        let replicas = replicas_of(&self.d);
        let active: Vec<ReplicaSet> = self
            .sets
            .all()
            .filter(|rs| rs_replicas(rs) > 0)
            .cloned()
            .collect();
        if active.len() <= 1 {
            let target = match active.first() {
                Some(rs) => Some(rs.clone()),
                None => self.sets.new.clone().or_else(|| {
                    let mut old = self.sets.old.clone();
                    old.sort_by_key(|rs| {
                        std::cmp::Reverse(rs.metadata.creation_timestamp.as_ref().map(|t| t.0))
                    });
                    old.into_iter().next()
                }),
            };
            if let Some(rs) = target {
                self.scale_rs(&rs, replicas).await?;
            }
            return Ok(());
        }
        // The new one saturated: the old ones go.
        if let Some(new) = &self.sets.new
            && rs_replicas(new) == replicas
            && rs_status(new, |s| s.available_replicas.unwrap_or(0)) == replicas
        {
            for rs in self.sets.old.clone() {
                if rs_replicas(&rs) > 0 {
                    self.scale_rs(&rs, 0).await?;
                }
            }
            return Ok(());
        }
        if !is_rolling(&self.d) {
            return Ok(());
        }
        let (surge, _) = fenceposts(&self.d);
        let allowed = if replicas > 0 { replicas + surge } else { 0 };
        let current: i32 = active.iter().map(rs_replicas).sum();
        let to_add = allowed - current;
        let sizes = proportions(
            &active,
            replicas + surge,
            to_add,
            self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        );
        for (rs, size) in active.iter().zip(sizes) {
            self.scale_rs(rs, size).await?;
        }
        Ok(())
    }

    fn complete(&self) -> bool {
        let s = self.computed_status();
        let replicas = replicas_of(&self.d);
        s.updated == replicas && s.replicas == replicas && s.available == replicas
    }

    /// Deletes the oldest empty old ReplicaSets beyond `revisionHistoryLimit`.
    async fn cleanup(&mut self) -> Result<()> {
        let limit = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
        let mut empty: Vec<&ReplicaSet> = self
            .sets
            .old
            .iter()
            .filter(|rs| {
                rs_replicas(rs) == 0
                    && rs_status(rs, |s| s.replicas) == 0
                    && rs.metadata.deletion_timestamp.is_none()
            })
            .collect();
        if empty.len() <= limit {
            return Ok(());
        }
        empty.sort_by_key(|rs| revision(rs));
        let doomed = empty.len() - limit;
        for rs in empty.into_iter().take(doomed) {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: rs.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match self.rs_api.delete(&rs.name_any(), &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn computed_status(&self) -> Counts {
        let sum = |f: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32| -> i32 {
            self.sets.all().map(|rs| rs_status(rs, f)).sum()
        };
        Counts {
            replicas: sum(|s| s.replicas),
            updated: self
                .sets
                .new
                .as_ref()
                .map(|rs| rs_status(rs, |s| s.replicas))
                .unwrap_or(0),
            ready: sum(|s| s.ready_replicas.unwrap_or(0)),
            available: sum(|s| s.available_replicas.unwrap_or(0)),
        }
    }

    /// Writes the status (counts and conditions) when it changed; asks to be woken for the
    /// progress deadline while a rollout is under way.
    async fn status(&mut self) -> Result<Action> {
        let now = jiff::Timestamp::now();
        let counts = self.computed_status();
        let old = serde_json::to_value(&self.d.status).unwrap_or_default();
        let status = status_of(
            &self.d,
            &old,
            &counts,
            &self.sets,
            self.new_condition.take(),
            now,
        );
        if status != old {
            let api: Api<Deployment> = Api::namespaced(
                self.ctx.client.clone(),
                &self.d.namespace().unwrap_or_default(),
            );
            api.patch_status(
                &self.name(),
                &PatchParams::default(),
                &Patch::Merge(runtime::status_patch(&old, &status)),
            )
            .await?;
        }
        let replicas = replicas_of(&self.d);
        let done = counts.updated == replicas
            && counts.replicas == replicas
            && counts.available == replicas;
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        match self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
        {
            Some(deadline) if !done && !paused => {
                Ok(Action::requeue(Duration::from_secs(deadline.max(1) as u64)))
            }
            _ => Ok(Action::await_change()),
        }
    }
}

/// Replica counts summed over a Deployment's ReplicaSets.
struct Counts {
    replicas: i32,
    updated: i32,
    ready: i32,
    available: i32,
}

/// New sizes for `active` ReplicaSets sharing `to_add` replicas in proportion to their
/// sizes against their `max-replicas` annotations (upstream's `GetProportion`); the
/// leftover goes to the largest.
fn proportions(active: &[ReplicaSet], deployment_max: i32, to_add: i32, fallback: i32) -> Vec<i32> {
    let mut order: Vec<usize> = (0..active.len()).collect();
    let newest = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    if to_add > 0 {
        // Largest first, newer first among equals.
        order.sort_by(|a, b| {
            rs_replicas(&active[*b])
                .cmp(&rs_replicas(&active[*a]))
                .then(newest(&active[*b]).cmp(&newest(&active[*a])))
        });
    } else {
        // Largest first, older first among equals.
        order.sort_by(|a, b| {
            rs_replicas(&active[*b])
                .cmp(&rs_replicas(&active[*a]))
                .then(newest(&active[*a]).cmp(&newest(&active[*b])))
        });
    }
    let mut sizes: Vec<i32> = active.iter().map(rs_replicas).collect();
    let mut added = 0;
    for &i in &order {
        let rs = &active[i];
        if to_add == 0 {
            break;
        }
        let annotated = rs
            .annotations()
            .get(MAX)
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(fallback);
        let fraction = if annotated <= 0 {
            0
        } else {
            let target = (f64::from(rs_replicas(rs)) * f64::from(deployment_max)
                / f64::from(annotated))
            .round() as i32;
            target - rs_replicas(rs)
        };
        let allowed = to_add - added;
        let part = if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        };
        sizes[i] += part;
        added += part;
    }
    if let Some(&first) = order.first() {
        sizes[first] += to_add - added;
    }
    sizes.iter().map(|s| (*s).max(0)).collect()
}

/// One condition in upstream's shape: the transition time kept while the status stays.
fn condition(old: &Value, ty: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    let previous = old["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty));
    let transition = previous
        .filter(|p| p["status"] == status)
        .map(|p| p["lastTransitionTime"].clone())
        .unwrap_or_else(|| json!(now));
    // An unchanged condition keeps its update time too, so status writes stop.
    let update = previous
        .filter(|p| p["status"] == status && p["reason"] == reason && p["message"] == message)
        .map(|p| p["lastUpdateTime"].clone())
        .unwrap_or_else(|| json!(now));
    json!({
        "type": ty,
        "status": status,
        "lastUpdateTime": update,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    })
}

/// The Deployment's status from its ReplicaSets (upstream's `calculateStatus` and
/// `syncRolloutStatus`).
fn status_of(
    d: &Deployment,
    old: &Value,
    counts: &Counts,
    sets: &Sets,
    earned: Option<(String, String)>,
    now: jiff::Timestamp,
) -> Value {
    let stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let replicas = replicas_of(d);
    let (_, max_unavailable) = fenceposts(d);
    let mut status = json!({
        "observedGeneration": d.metadata.generation.unwrap_or(0),
        "replicas": counts.replicas,
        "updatedReplicas": counts.updated,
        "readyReplicas": counts.ready,
        "availableReplicas": counts.available,
        "unavailableReplicas": (replicas - counts.available).max(0),
    });
    if let Some(c) = old.get("collisionCount").filter(|c| !c.is_null()) {
        status["collisionCount"] = c.clone();
    }
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| k == "observedGeneration" || k == "collisionCount" || v != &json!(0));
    }
    let mut conditions: Vec<Value> = Vec::new();
    let available = counts.available >= replicas - max_unavailable;
    conditions.push(if available {
        condition(
            old,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            &stamp,
        )
    } else {
        condition(
            old,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            &stamp,
        )
    });
    let new_name = sets.new.as_ref().map(|rs| rs.name_any());
    if let Some(p) = progressing(d, old, counts, new_name, earned, now, &stamp) {
        conditions.push(p);
    }
    // A ReplicaSet's failure to create pods shows on its Deployment.
    if let Some(failure) = sets.all().find_map(|rs| {
        rs.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
            .cloned()
    }) {
        conditions.push(condition(
            old,
            "ReplicaFailure",
            "True",
            failure.reason.as_deref().unwrap_or(""),
            failure.message.as_deref().unwrap_or(""),
            &stamp,
        ));
    }
    status["conditions"] = Value::Array(conditions);
    status
}

/// The Progressing condition: Unknown while paused and once resumed, none without a
/// progress deadline, True when the new ReplicaSet is available, as `earned` says, or while
/// it progresses, False past the deadline, else as it was (upstream's `syncRolloutStatus`).
fn progressing(
    d: &Deployment,
    old: &Value,
    counts: &Counts,
    new_name: Option<String>,
    earned: Option<(String, String)>,
    now: jiff::Timestamp,
    stamp: &str,
) -> Option<Value> {
    let replicas = replicas_of(d);
    let previous = old["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"))
        .cloned();
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    let complete =
        counts.updated == replicas && counts.replicas == replicas && counts.available == replicas;
    if paused {
        Some(condition(
            old,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused",
            stamp,
        ))
    } else if previous
        .as_ref()
        .is_some_and(|p| p["reason"] == "DeploymentPaused")
    {
        Some(condition(
            old,
            "Progressing",
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed",
            stamp,
        ))
    } else if d
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .is_none()
    {
        None
    } else if complete && let Some(name) = &new_name {
        Some(condition(
            old,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{name}\" has successfully progressed."),
            stamp,
        ))
    } else if let Some((reason, message)) = earned.filter(|_| !complete) {
        Some(condition(
            old,
            "Progressing",
            "True",
            &reason,
            &message,
            stamp,
        ))
    } else if made_progress(old, counts)
        && let Some(name) = &new_name
    {
        Some(condition(
            old,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            &format!("ReplicaSet \"{name}\" is progressing."),
            stamp,
        ))
    } else if timed_out(d, previous.as_ref(), now) {
        let what = new_name
            .map(|n| format!("ReplicaSet \"{n}\""))
            .unwrap_or_else(|| format!("Deployment \"{}\"", d.name_any()));
        Some(condition(
            old,
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            &format!("{what} has timed out progressing."),
            stamp,
        ))
    } else {
        previous
    }
}

/// Whether the counts moved forward since the last status (upstream's
/// `DeploymentProgressing`).
fn made_progress(old: &Value, counts: &Counts) -> bool {
    let was = |k: &str| old[k].as_i64().unwrap_or(0) as i32;
    counts.updated > was("updatedReplicas")
        || counts.ready > was("readyReplicas")
        || counts.available > was("availableReplicas")
        || counts.replicas - counts.updated < was("replicas") - was("updatedReplicas")
}

/// Whether the rollout has not progressed for `progressDeadlineSeconds`.
fn timed_out(d: &Deployment, progressing: Option<&Value>, now: jiff::Timestamp) -> bool {
    let Some(deadline) = d.spec.as_ref().and_then(|s| s.progress_deadline_seconds) else {
        return false;
    };
    let Some(p) = progressing else {
        return false;
    };
    if p["reason"] == "ProgressDeadlineExceeded" {
        return true;
    }
    let Some(since) = p["lastUpdateTime"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return false;
    };
    since + jiff::SignedDuration::from_secs(i64::from(deadline)) < now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(v: Value) -> Deployment {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailability_down() {
        let d = deployment(json!({"spec": {"replicas": 10, "selector": {},
            "template": {}, "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}}));
        assert_eq!(fenceposts(&d), (3, 2));
        let d = deployment(json!({"spec": {"replicas": 3, "selector": {},
            "template": {}, "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}}}}));
        assert_eq!(fenceposts(&d), (0, 1), "never both zero");
        let d = deployment(json!({"spec": {"replicas": 3, "selector": {},
            "template": {}, "strategy": {"type": "Recreate"}}}));
        assert_eq!(fenceposts(&d), (0, 0));
    }

    #[test]
    fn template_hashes_ignore_the_hash_label_and_follow_collisions() {
        let t: PodTemplateSpec = serde_json::from_value(
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "nginx"}]}}),
        )
        .unwrap();
        let mut labelled = t.clone();
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(HASH.into(), "x".into());
        assert_eq!(
            template_hash(Some(&t), 0),
            template_hash(Some(&labelled), 0)
        );
        assert_ne!(template_hash(Some(&t), 0), template_hash(Some(&t), 1));
        assert!(
            template_hash(Some(&t), 0)
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
    }

    fn rs(name: &str, replicas: i32, max: i32, created: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created,
                "annotations": {MAX: max.to_string()}},
            "spec": {"replicas": replicas, "selector": {}}
        }))
        .unwrap()
    }

    #[test]
    fn scaling_mid_rollout_shares_replicas_in_proportion() {
        // 10 replicas + 3 surge, mid-rollout: old 8, new 5; scaled to 20 (+5 surge = 25).
        let active = [
            rs("old", 8, 13, "2026-01-01T00:00:00Z"),
            rs("new", 5, 13, "2026-01-02T00:00:00Z"),
        ];
        let sizes = proportions(&active, 25, 25 - 13, 13);
        assert_eq!(sizes.iter().sum::<i32>(), 25);
        assert_eq!(sizes, vec![15, 10]);
        // Scaling down to zero empties both.
        assert_eq!(proportions(&active, 0, -13, 13), vec![0, 0]);
    }

    #[test]
    fn conditions_read_as_upstream() {
        let d = deployment(json!({"metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 2, "selector": {}, "template": {}, "progressDeadlineSeconds": 600}}));
        let new = rs("web-abc", 2, 3, "2026-01-01T00:00:00Z");
        let sets = Sets {
            new: Some(new),
            old: Vec::new(),
        };
        let counts = Counts {
            replicas: 2,
            updated: 2,
            ready: 2,
            available: 2,
        };
        let s = status_of(&d, &json!({}), &counts, &sets, None, jiff::Timestamp::now());
        assert_eq!(s["conditions"][0]["reason"], "MinimumReplicasAvailable");
        assert_eq!(s["conditions"][1]["reason"], "NewReplicaSetAvailable");
        assert_eq!(
            s["conditions"][1]["message"],
            "ReplicaSet \"web-abc\" has successfully progressed."
        );
        assert_eq!(s["observedGeneration"], 2);
        assert!(s.get("unavailableReplicas").is_none());
        // Unchanged, a second computation is equal: no write loop.
        let again = status_of(&d, &s, &counts, &sets, None, jiff::Timestamp::now());
        assert_eq!(again, s);
    }
}
