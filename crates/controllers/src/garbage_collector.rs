//! The garbage collector (upstream's `garbage-collector-controller`): deletes objects whose
//! owners are gone, and completes the deletions the API server leaves to it
//! (`propagationPolicy: Foreground` and `Orphan`, which `kubectl delete
//! --cascade=foreground|orphan` sends; `Background` deletes the owner at once and leaves its
//! dependents to the first rule).
//!
//! It follows the metadata of every resource discovery lists as listable, watchable and
//! deletable (events excepted, as upstream; discovery is run again every 30 s) and keeps
//! upstream's graph of `ownerReferences`: each object seen, and for each owner uid the
//! objects naming it. Changes to the graph queue work, in upstream's two queues:
//!
//! - *attempt to delete* an object whose owners may be gone. Each owner reference is checked
//!   by a GET of its apiVersion, kind and name — in the dependent's namespace for a namespaced
//!   kind, so an owner elsewhere counts as absent — and a comparison of uids. With every owner
//!   gone, the object is deleted (in the background, or as its own finalizers ask); with some
//!   gone, the references to those are removed. A dependent of an owner deleted in the
//!   foreground (`foregroundDeletion` finalizer) is deleted too, and the owner loses the
//!   finalizer once no dependent with `blockOwnerDeletion` is left. A cluster-scoped object
//!   naming an owner of a namespaced kind is left alone, with an `OwnerRefInvalidNamespace`
//!   warning event.
//! - *attempt to orphan* an owner deleted with the `orphan` finalizer: its dependents lose
//!   their references to it, then it loses the finalizer.
//!
//! Cycles end as upstream's do: a dependent whose owner waits for its dependents while one of
//! its own dependents waits too drops its blocking references before being deleted in the
//! foreground, so no two objects wait on each other.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio::task::{AbortHandle, JoinSet};

use crate::events::{Recorder, Type};
use crate::runtime::{Error, Informers, Result, Shared};

/// The controller's name, also its events' source.
const NAME: &str = "garbage-collector-controller";
/// The finalizer of an owner deleted in the foreground.
const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer of an owner deleted with its dependents orphaned.
const ORPHAN: &str = "orphan";
/// How often discovery runs again, to follow resources that appear.
const REDISCOVERY: Duration = Duration::from_secs(30);
/// How long the workers wait for every watch's first listing before working anyway.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Workers of the attempt-to-delete queue (upstream runs 20 by default).
const DELETE_WORKERS: usize = 4;
/// Workers of the attempt-to-orphan queue.
const ORPHAN_WORKERS: usize = 2;
/// Owners remembered as absent; beyond this the memory starts afresh.
const ABSENT_REMEMBERED: usize = 10_000;

/// Starts the garbage collector. It keeps its own metadata watches (its resources are only
/// known at run time), not the shared informers.
pub(crate) fn start(shared: &Shared, _informers: &mut Informers) -> BoxFuture<'static, ()> {
    let collector = Arc::new(Collector {
        client: shared.client.clone(),
        graph: Mutex::default(),
        kinds: RwLock::default(),
        absent: Mutex::default(),
        deletes: Arc::default(),
        orphans: Arc::default(),
        recorder: shared.recorder(NAME),
    });
    run(collector).boxed()
}

/// A resource whose objects the collector reads or follows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kind {
    resource: ApiResource,
    namespaced: bool,
}

impl Kind {
    /// `apiVersion/plural`, naming one followed resource.
    fn key(&self) -> String {
        format!("{}/{}", self.resource.api_version, self.resource.plural)
    }
}

/// Where an object is and which one it is (upstream's `objectReference`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    kind: Arc<Kind>,
    namespace: Option<String>,
    name: String,
    uid: String,
}

impl Identity {
    fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.kind.resource.api_version.clone()),
            kind: Some(self.kind.resource.kind.clone()),
            namespace: self.namespace.clone(),
            name: Some(self.name.clone()),
            uid: Some(self.uid.clone()),
            ..Default::default()
        }
    }
}

/// Where an object is in its deletion, as far as the collector cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not being deleted.
    Live,
    /// Being deleted, waiting on nothing the collector does.
    Deleting,
    /// Being deleted in the foreground: waits for its dependents to go.
    DeletingDependents,
    /// Being deleted with the `orphan` finalizer: waits for its dependents to be released.
    Orphaning,
}

impl Phase {
    fn of(meta: &ObjectMeta) -> Phase {
        if meta.deletion_timestamp.is_none() {
            return Phase::Live;
        }
        if has_finalizer(meta, ORPHAN) {
            Phase::Orphaning
        } else if has_finalizer(meta, FOREGROUND) {
            Phase::DeletingDependents
        } else {
            Phase::Deleting
        }
    }
}

fn has_finalizer(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

fn blocks(owner: &OwnerReference) -> bool {
    owner.block_owner_deletion == Some(true)
}

/// The API group of an `apiVersion` ("" for the core group's `v1`).
fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

/// One object of the graph.
#[derive(Debug)]
struct Node {
    identity: Identity,
    owners: Vec<OwnerReference>,
    phase: Phase,
}

/// Work the graph's changes call for, by uid.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Work {
    /// Check whether the object is to be deleted, released or freed of its finalizer.
    Delete(String),
    /// Release the object's dependents, then drop its `orphan` finalizer.
    Orphan(String),
}

/// An object of the graph as a worker needs it.
#[derive(Debug)]
struct Item {
    identity: Identity,
    phase: Phase,
    /// Every owner is in the graph, where its reference says, and not deleting dependents.
    owners_solid: bool,
    has_dependents: bool,
    /// One of its dependents is itself deleting its dependents (a possible cycle).
    dependent_deleting_dependents: bool,
}

/// The ownership graph (upstream's `uidToNode`): the objects seen, by uid, and who names
/// whom. Kept by the watches, read by the workers.
#[derive(Debug, Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    /// Owner uid → uids of the objects naming it. An owner need not be in `nodes` (it may be
    /// gone, or not seen yet): upstream's "virtual" nodes.
    dependents: HashMap<String, BTreeSet<String>>,
    /// Followed resource → uids its watch shows.
    by_resource: HashMap<String, HashSet<String>>,
}

impl Graph {
    /// Takes in an object a watch listed, added or changed.
    fn observe(&mut self, identity: Identity, meta: &ObjectMeta) -> Vec<Work> {
        let uid = identity.uid.clone();
        self.by_resource
            .entry(identity.kind.key())
            .or_default()
            .insert(uid.clone());
        let owners = meta.owner_references.clone().unwrap_or_default();
        let phase = Phase::of(meta);
        let node = Node {
            identity: identity.clone(),
            owners: owners.clone(),
            phase,
        };
        let (old_owners, old_phase) = match self.nodes.insert(uid.clone(), node) {
            Some(old) => (old.owners, Some(old.phase)),
            None => (Vec::new(), None),
        };
        let mut work = Vec::new();
        // A reference dropped or no longer blocking may free an owner waiting on it.
        for old in &old_owners {
            let kept = owners.iter().find(|o| o.uid == old.uid);
            if kept.is_none() {
                self.unlink(&old.uid, &uid);
            }
            let unblocked = kept.is_none_or(|k| blocks(old) && !blocks(k));
            if unblocked && self.phase(&old.uid) == Some(Phase::DeletingDependents) {
                work.push(Work::Delete(old.uid.clone()));
            }
        }
        // A new reference to an owner the graph cannot vouch for is checked.
        let mut verify = false;
        for new in owners
            .iter()
            .filter(|n| !old_owners.iter().any(|o| o.uid == n.uid))
        {
            self.dependents
                .entry(new.uid.clone())
                .or_default()
                .insert(uid.clone());
            verify |= !self.solid(&identity, new);
        }
        if verify {
            work.push(Work::Delete(uid.clone()));
        }
        if old_phase != Some(phase) {
            match phase {
                Phase::Orphaning => work.push(Work::Orphan(uid)),
                Phase::DeletingDependents => {
                    work.extend(self.dependents_of(&uid).map(Work::Delete));
                    work.push(Work::Delete(uid));
                }
                Phase::Live | Phase::Deleting => {}
            }
        }
        work
    }

    /// Takes in an object the watch of `resource` saw deleted.
    fn forget(&mut self, resource: &str, uid: &str) -> Vec<Work> {
        if let Some(uids) = self.by_resource.get_mut(resource) {
            uids.remove(uid);
        }
        match self.nodes.get(uid) {
            Some(n) if n.identity.kind.key() == resource => self.remove(uid),
            _ => Vec::new(),
        }
    }

    /// Removes an object known to be gone: its owners waiting on it and its dependents are
    /// to be looked at again.
    fn remove(&mut self, uid: &str) -> Vec<Work> {
        let Some(node) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        if let Some(uids) = self.by_resource.get_mut(&node.identity.kind.key()) {
            uids.remove(uid);
        }
        let mut work = Vec::new();
        for owner in &node.owners {
            self.unlink(&owner.uid, uid);
            if self.phase(&owner.uid) == Some(Phase::DeletingDependents) {
                work.push(Work::Delete(owner.uid.clone()));
            }
        }
        work.extend(self.dependents_of(uid).map(Work::Delete));
        work
    }

    /// After a (re)listing of `resource` that showed `listed`: the objects it no longer shows
    /// were deleted meanwhile.
    fn resync(&mut self, resource: &str, listed: &HashSet<String>) -> Vec<Work> {
        let vanished: Vec<String> = self
            .by_resource
            .get(resource)
            .map(|uids| uids.difference(listed).cloned().collect())
            .unwrap_or_default();
        vanished
            .iter()
            .flat_map(|uid| self.forget(resource, uid))
            .collect()
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(deps) = self.dependents.get_mut(owner) {
            deps.remove(dependent);
            if deps.is_empty() {
                self.dependents.remove(owner);
            }
        }
    }

    fn phase(&self, uid: &str) -> Option<Phase> {
        self.nodes.get(uid).map(|n| n.phase)
    }

    fn dependents_of(&self, uid: &str) -> impl Iterator<Item = String> + '_ {
        self.dependents.get(uid).into_iter().flatten().cloned()
    }

    /// Whether the graph shows `owner` present for `dependent`: the object with its uid
    /// seen, of the group, kind and name the reference says, where the dependent may name it
    /// (cluster-scoped, or in the dependent's namespace), and not deleting its dependents.
    fn solid(&self, dependent: &Identity, owner: &OwnerReference) -> bool {
        let Some(n) = self.nodes.get(&owner.uid) else {
            return false;
        };
        let r = &n.identity.kind.resource;
        group_of(&owner.api_version) == r.group
            && owner.kind == r.kind
            && owner.name == n.identity.name
            && (n.identity.namespace.is_none() || n.identity.namespace == dependent.namespace)
            && n.phase != Phase::DeletingDependents
    }

    fn item(&self, uid: &str) -> Option<Item> {
        let n = self.nodes.get(uid)?;
        let mut dependents = self.dependents_of(uid).peekable();
        let has_dependents = dependents.peek().is_some();
        let dependent_deleting_dependents =
            dependents.any(|d| self.phase(&d) == Some(Phase::DeletingDependents));
        Some(Item {
            identity: n.identity.clone(),
            phase: n.phase,
            owners_solid: n.owners.iter().all(|o| self.solid(&n.identity, o)),
            has_dependents,
            dependent_deleting_dependents,
        })
    }

    /// The dependents of `uid` whose reference to it has `blockOwnerDeletion`, with their
    /// phases.
    fn blocking_dependents(&self, uid: &str) -> Vec<(String, Phase)> {
        self.dependents_of(uid)
            .filter_map(|d| {
                let n = self.nodes.get(&d)?;
                n.owners
                    .iter()
                    .any(|o| o.uid == uid && blocks(o))
                    .then_some((d, n.phase))
            })
            .collect()
    }

    fn dependent_identities(&self, uid: &str) -> Vec<Identity> {
        self.dependents_of(uid)
            .filter_map(|d| self.nodes.get(&d).map(|n| n.identity.clone()))
            .collect()
    }

    /// The namespace an object with `uid` is seen in, if it is seen in one.
    fn namespace_of(&self, uid: &str) -> Option<&str> {
        self.nodes.get(uid)?.identity.namespace.as_deref()
    }
}

/// What an owner reference points at, as the API server shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// No object of that kind, name (and namespace) with that uid.
    Gone,
    /// There, and not waiting for its dependents.
    Solid,
    /// There, deleted in the foreground: waiting for its dependents to go.
    Waiting,
}

/// What to do with an object, given its owners.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Leave it.
    Keep,
    /// Some owner remains: drop the references to these (gone or waiting) owners.
    Unlink(Vec<String>),
    /// No owner remains: delete it with this propagation policy, first turning its
    /// `blockOwnerDeletion` references off when `unblock` (a possible cycle).
    Delete { policy: &'static str, unblock: bool },
}

/// Upstream's decision in `attemptToDeleteItem`, from the states of the object's owners (by
/// uid), whether it has dependents and whether one of them deletes its own dependents, and
/// its finalizers.
fn decide(
    owners: &[(String, Owner)],
    has_dependents: bool,
    dependent_deleting_dependents: bool,
    finalizers: &[String],
) -> Decision {
    if owners.is_empty() {
        return Decision::Keep;
    }
    let not_solid: Vec<String> = owners
        .iter()
        .filter(|(_, s)| *s != Owner::Solid)
        .map(|(uid, _)| uid.clone())
        .collect();
    if not_solid.len() < owners.len() {
        return if not_solid.is_empty() {
            Decision::Keep
        } else {
            Decision::Unlink(not_solid)
        };
    }
    let waiting = owners.iter().any(|(_, s)| *s == Owner::Waiting);
    if waiting && has_dependents {
        return Decision::Delete {
            policy: "Foreground",
            unblock: dependent_deleting_dependents,
        };
    }
    let has = |f: &str| finalizers.iter().any(|x| x == f);
    let policy = if has(ORPHAN) {
        "Orphan"
    } else if has(FOREGROUND) {
        "Foreground"
    } else {
        "Background"
    };
    Decision::Delete {
        policy,
        unblock: false,
    }
}

/// A work queue as upstream's: an item is queued once however often it is added, never
/// worked on by two workers at once (added while worked on, it is queued again after), and
/// retried after an exponential back-off when it fails.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    ready: Notify,
}

#[derive(Default)]
struct QueueState {
    order: VecDeque<String>,
    queued: HashSet<String>,
    busy: HashSet<String>,
    again: HashSet<String>,
    failures: HashMap<String, u32>,
}

impl Queue {
    fn state(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, uid: String) {
        let mut s = self.state();
        if s.busy.contains(&uid) {
            s.again.insert(uid);
        } else if s.queued.insert(uid.clone()) {
            s.order.push_back(uid);
            drop(s);
            self.ready.notify_one();
        }
    }

    /// The next item, marked as worked on until [`Queue::done`].
    async fn next(&self) -> String {
        loop {
            {
                let mut s = self.state();
                if let Some(uid) = s.order.pop_front() {
                    s.queued.remove(&uid);
                    s.busy.insert(uid.clone());
                    return uid;
                }
            }
            self.ready.notified().await;
        }
    }

    /// Ends the work on `uid`: forgets its failures if it `succeeded`, else adds it again
    /// after a back-off (5 ms doubling to 1000 s, upstream's). Queued again at once if it
    /// was added meanwhile.
    fn done(self: &Arc<Self>, uid: &str, succeeded: bool) {
        let (again, delay) = {
            let mut s = self.state();
            s.busy.remove(uid);
            let delay = if succeeded {
                s.failures.remove(uid);
                None
            } else {
                let n = s.failures.entry(uid.to_string()).or_default();
                *n = n.saturating_add(1);
                let millis = 5u64.saturating_mul(1u64 << (*n - 1).min(20));
                Some(Duration::from_millis(millis.min(1_000_000)))
            };
            (s.again.remove(uid), delay)
        };
        if again {
            self.add(uid.to_string());
        }
        if let Some(delay) = delay {
            let queue: Weak<Queue> = Arc::downgrade(self);
            let uid = uid.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Some(q) = queue.upgrade() {
                    q.add(uid);
                }
            });
        }
    }
}

/// The collector's state, shared by its watches and workers.
struct Collector {
    client: kube::Client,
    graph: Mutex<Graph>,
    /// Every served kind by (apiVersion, kind), to look owners up.
    kinds: RwLock<HashMap<(String, String), Arc<Kind>>>,
    /// Owners known absent: (uid, namespace or "" for a cluster-scoped kind). A uid never
    /// comes back, so this only saves GETs.
    absent: Mutex<HashSet<(String, String)>>,
    deletes: Arc<Queue>,
    orphans: Arc<Queue>,
    recorder: Recorder,
}

/// What discovery shows.
struct Discovered {
    /// Every kind by (apiVersion, kind).
    kinds: HashMap<(String, String), Arc<Kind>>,
    /// The resources to follow: each group's preferred version of what can be listed,
    /// watched and deleted, events excepted.
    followed: Vec<Arc<Kind>>,
}

/// Runs discovery: aggregated (two requests), or group by group where the server has no
/// aggregated discovery.
pub(crate) async fn discovery(client: &kube::Client) -> kube::Result<Discovery> {
    match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) => Ok(d),
        Err(_) => Discovery::new(client.clone()).run().await,
    }
}

async fn discover(client: &kube::Client) -> kube::Result<Discovered> {
    let discovery = discovery(client).await?;
    let mut kinds = HashMap::new();
    let mut followed = Vec::new();
    for group in discovery.groups() {
        for version in group.versions() {
            for (resource, caps) in group.versioned_resources(version) {
                let kind = Kind {
                    namespaced: caps.scope == Scope::Namespaced,
                    resource,
                };
                let key = (
                    kind.resource.api_version.clone(),
                    kind.resource.kind.clone(),
                );
                kinds.insert(key, Arc::new(kind));
            }
        }
        for (resource, caps) in group.recommended_resources() {
            let usable = [verbs::LIST, verbs::WATCH, verbs::DELETE]
                .iter()
                .all(|v| caps.supports_operation(v));
            let events = resource.plural == "events"
                && matches!(resource.group.as_str(), "" | "events.k8s.io");
            let key = (resource.api_version.clone(), resource.kind.clone());
            if let Some(kind) = kinds.get(&key).filter(|_| usable && !events) {
                followed.push(kind.clone());
            }
        }
    }
    Ok(Discovered { kinds, followed })
}

/// Discovers and follows resources, and runs the workers once the graph is filled.
async fn run(c: Arc<Collector>) {
    let mut tasks = JoinSet::new();
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    for _ in 0..DELETE_WORKERS {
        tasks.spawn(c.clone().work(false, ready_rx.clone()));
    }
    for _ in 0..ORPHAN_WORKERS {
        tasks.spawn(c.clone().work(true, ready_rx.clone()));
    }
    let (synced_tx, mut synced_rx) = mpsc::unbounded_channel::<String>();
    let mut followed: HashMap<String, AbortHandle> = HashMap::new();
    // The resources of the first discovery whose first listing is awaited.
    let mut unsynced: Option<HashSet<String>> = None;
    let mut next_discovery = tokio::time::Instant::now();
    let mut sync_deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
    loop {
        let waiting = !*ready_tx.borrow();
        tokio::select! {
            () = tokio::time::sleep_until(next_discovery) => {
                next_discovery = tokio::time::Instant::now() + REDISCOVERY;
                let found = match discover(&c.client).await {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::warn!("{NAME}: discovery: {e}");
                        if unsynced.is_none() {
                            next_discovery = tokio::time::Instant::now() + Duration::from_secs(1);
                        }
                        continue;
                    }
                };
                *c.kinds.write().unwrap_or_else(|e| e.into_inner()) = found.kinds;
                let keys: HashSet<String> = found.followed.iter().map(|k| k.key()).collect();
                followed.retain(|key, watch| {
                    let kept = keys.contains(key);
                    if !kept {
                        watch.abort();
                        let work = c.graph().resync(key, &HashSet::new());
                        c.enqueue(work);
                    }
                    kept
                });
                let first = unsynced.is_none();
                let pending = unsynced.get_or_insert_with(HashSet::new);
                for kind in found.followed {
                    let key = kind.key();
                    if followed.contains_key(&key) {
                        continue;
                    }
                    if first {
                        pending.insert(key.clone());
                    }
                    let watch = tasks.spawn(c.clone().follow(kind, synced_tx.clone()));
                    followed.insert(key, watch);
                }
                if first {
                    sync_deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
                    if pending.is_empty() {
                        let _ = ready_tx.send(true);
                    }
                }
            }
            Some(key) = synced_rx.recv() => {
                if let Some(pending) = unsynced.as_mut() {
                    pending.remove(&key);
                    if pending.is_empty() && waiting {
                        tracing::debug!("{NAME}: every resource listed; collecting");
                        let _ = ready_tx.send(true);
                    }
                }
            }
            () = tokio::time::sleep_until(sync_deadline), if waiting && unsynced.is_some() => {
                let pending: Vec<String> = unsynced.iter().flatten().cloned().collect();
                tracing::warn!("{NAME}: collecting before these were listed: {}", pending.join(", "));
                let _ = ready_tx.send(true);
            }
            Some(done) = tasks.join_next() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::warn!("{NAME}: a task panicked");
                }
            }
        }
    }
}

impl Collector {
    fn graph(&self) -> MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, work: Vec<Work>) {
        for w in work {
            match w {
                Work::Delete(uid) => self.deletes.add(uid),
                Work::Orphan(uid) => self.orphans.add(uid),
            }
        }
    }

    /// Follows the metadata of every object of `kind` into the graph; tells `synced` after
    /// each complete listing.
    async fn follow(self: Arc<Self>, kind: Arc<Kind>, synced: mpsc::UnboundedSender<String>) {
        let key = kind.key();
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(self.client.clone(), &kind.resource);
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut listed = HashSet::new();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    tracing::debug!("{NAME}: watching {key}: {e}");
                    continue;
                }
            };
            let identity = |meta: &ObjectMeta| {
                Some(Identity {
                    kind: kind.clone(),
                    namespace: meta.namespace.clone(),
                    name: meta.name.clone()?,
                    uid: meta.uid.clone()?,
                })
            };
            let work = match event {
                watcher::Event::Init => {
                    listed.clear();
                    Vec::new()
                }
                watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                    match identity(&obj.metadata) {
                        Some(id) => {
                            listed.insert(id.uid.clone());
                            self.graph().observe(id, &obj.metadata)
                        }
                        None => Vec::new(),
                    }
                }
                watcher::Event::InitDone => {
                    let work = self.graph().resync(&key, &listed);
                    listed.clear();
                    let _ = synced.send(key.clone());
                    work
                }
                watcher::Event::Delete(obj) => match obj.metadata.uid.as_deref() {
                    Some(uid) => self.graph().forget(&key, uid),
                    None => Vec::new(),
                },
            };
            self.enqueue(work);
        }
    }

    /// Works on the attempt-to-delete queue, or with `orphaning` the attempt-to-orphan one,
    /// once `ready`; a panic counts as a failure.
    async fn work(self: Arc<Self>, orphaning: bool, mut ready: tokio::sync::watch::Receiver<bool>) {
        let _ = ready.wait_for(|r| *r).await;
        let queue = if orphaning {
            self.orphans.clone()
        } else {
            self.deletes.clone()
        };
        loop {
            let uid = queue.next().await;
            let attempt = if orphaning {
                self.orphan(&uid).boxed()
            } else {
                self.attempt_to_delete(&uid).boxed()
            };
            let outcome = AssertUnwindSafe(attempt).catch_unwind().await;
            let what = if orphaning { "orphaning" } else { "collecting" };
            let succeeded = match outcome {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::debug!("{NAME}: {what} {uid}: {e:#}");
                    false
                }
                Err(_) => {
                    tracing::warn!("{NAME}: {what} {uid} panicked");
                    false
                }
            };
            queue.done(&uid, succeeded);
        }
    }

    /// Upstream's `attemptToDeleteItem`.
    async fn attempt_to_delete(&self, uid: &str) -> Result<()> {
        let Some(item) = self.graph().item(uid) else {
            return Ok(());
        };
        match item.phase {
            // Being deleted: its dependents are looked at once it is gone.
            Phase::Deleting | Phase::Orphaning => return Ok(()),
            Phase::Live if item.owners_solid => return Ok(()),
            Phase::Live | Phase::DeletingDependents => {}
        }
        let id = &item.identity;
        let latest = match self
            .get_meta(&id.kind, id.namespace.as_deref(), &id.name)
            .await?
        {
            Some(m) if m.uid.as_deref() == Some(uid) => m,
            _ => {
                let work = self.graph().remove(uid);
                self.enqueue(work);
                return Ok(());
            }
        };
        if item.phase == Phase::DeletingDependents {
            return self.delete_dependents_first(&item).await;
        }
        let refs = latest.owner_references.clone().unwrap_or_default();
        let mut owners = Vec::new();
        for r in &refs {
            match self.owner_state(id, r).await? {
                Some(state) => owners.push((r.uid.clone(), state)),
                None => return Ok(()),
            }
        }
        let finalizers = latest.finalizers.clone().unwrap_or_default();
        match decide(
            &owners,
            item.has_dependents,
            item.dependent_deleting_dependents,
            &finalizers,
        ) {
            Decision::Keep => Ok(()),
            Decision::Unlink(uids) => self.unlink(id, &latest, &uids).await,
            Decision::Delete { policy, unblock } => {
                if unblock {
                    self.unblock(id, &latest).await?;
                }
                self.delete(id, &latest, policy).await
            }
        }
    }

    /// Upstream's `processDeletingDependentsItem`: an owner deleted in the foreground loses
    /// its finalizer once no blocking dependent is left; until then they are deleted.
    async fn delete_dependents_first(&self, item: &Item) -> Result<()> {
        let blocking = self.graph().blocking_dependents(&item.identity.uid);
        if blocking.is_empty() {
            return self.remove_finalizer(&item.identity, FOREGROUND).await;
        }
        for (uid, phase) in blocking {
            if phase != Phase::DeletingDependents {
                self.deletes.add(uid);
            }
        }
        Ok(())
    }

    /// Upstream's `attemptToOrphanWorker`: the owner's dependents lose their references to
    /// it, then it loses its `orphan` finalizer.
    async fn orphan(&self, uid: &str) -> Result<()> {
        let (owner, dependents) = {
            let graph = self.graph();
            let Some(node) = graph.nodes.get(uid) else {
                return Ok(());
            };
            (node.identity.clone(), graph.dependent_identities(uid))
        };
        let mut failed = Vec::new();
        for dep in dependents {
            let outcome = match self
                .get_meta(&dep.kind, dep.namespace.as_deref(), &dep.name)
                .await
            {
                Ok(Some(latest)) if latest.uid.as_deref() == Some(dep.uid.as_str()) => {
                    self.unlink(&dep, &latest, &[uid.to_string()]).await
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = outcome {
                failed.push(format!("orphaning {}: {e:#}", dep.name));
            }
        }
        if !failed.is_empty() {
            return Err(Error::Failed(format!(
                "failed to orphan dependents of owner {}: {}",
                owner.name,
                failed.join(", ")
            )));
        }
        self.remove_finalizer(&owner, ORPHAN).await
    }

    /// Where the owner `r` of `dependent` stands; `None` when it never can be told (a
    /// cluster-scoped dependent naming a namespaced kind), which is reported in an event.
    async fn owner_state(&self, dependent: &Identity, r: &OwnerReference) -> Result<Option<Owner>> {
        let kind = self
            .kinds
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(r.api_version.clone(), r.kind.clone()))
            .cloned()
            .ok_or_else(|| {
                Error::Failed(format!(
                    "unable to get REST mapping for {}/{}.",
                    r.api_version, r.kind
                ))
            })?;
        if kind.namespaced && dependent.namespace.is_none() {
            self.report_invalid_namespace(dependent, r).await;
            return Ok(None);
        }
        let namespace = dependent.namespace.as_deref().filter(|_| kind.namespaced);
        let absent_key = (r.uid.clone(), namespace.unwrap_or("").to_string());
        if self.absent().contains(&absent_key) {
            return Ok(Some(Owner::Gone));
        }
        match self.get_meta(&kind, namespace, &r.name).await? {
            Some(owner) if owner.uid.as_deref() == Some(r.uid.as_str()) => {
                let waiting =
                    owner.deletion_timestamp.is_some() && has_finalizer(&owner, FOREGROUND);
                Ok(Some(if waiting {
                    Owner::Waiting
                } else {
                    Owner::Solid
                }))
            }
            _ => {
                let elsewhere = {
                    let graph = self.graph();
                    let seen = graph.namespace_of(&r.uid);
                    kind.namespaced && seen.is_some() && seen != namespace
                };
                if elsewhere {
                    self.report_invalid_namespace(dependent, r).await;
                }
                let mut absent = self.absent();
                if absent.len() >= ABSENT_REMEMBERED {
                    absent.clear();
                }
                absent.insert(absent_key);
                Ok(Some(Owner::Gone))
            }
        }
    }

    fn absent(&self) -> MutexGuard<'_, HashSet<(String, String)>> {
        self.absent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Upstream's `OwnerRefInvalidNamespace` warning on the dependent.
    async fn report_invalid_namespace(&self, dependent: &Identity, r: &OwnerReference) {
        let namespace = dependent.namespace.as_deref().unwrap_or("");
        let note = format!(
            "ownerRef [{}/{}, namespace: {namespace}, name: {}, uid: {}] does not exist in namespace {namespace:?}",
            r.api_version, r.kind, r.name, r.uid
        );
        self.recorder
            .publish(
                &dependent.reference(),
                Type::Warning,
                "OwnerRefInvalidNamespace",
                &note,
            )
            .await;
    }

    fn dynamic(&self, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace.filter(|_| kind.namespaced) {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &kind.resource),
            None => Api::all_with(self.client.clone(), &kind.resource),
        }
    }

    /// The metadata of an object, if there is one by that name.
    async fn get_meta(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> kube::Result<Option<ObjectMeta>> {
        let api: Api<PartialObjectMeta<DynamicObject>> = match namespace.filter(|_| kind.namespaced)
        {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &kind.resource),
            None => Api::all_with(self.client.clone(), &kind.resource),
        };
        Ok(api.get_opt(name).await?.map(|m| m.metadata))
    }

    /// Applies a JSON patch to the object; one that is gone is fine.
    async fn json_patch(&self, id: &Identity, ops: Vec<Value>) -> Result<()> {
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))?;
        let outcome = self
            .dynamic(&id.kind, id.namespace.as_deref())
            .patch(&id.name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await;
        match outcome {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the references to `owners` from the object `latest` shows, checking that
    /// nothing moved meanwhile.
    async fn unlink(&self, id: &Identity, latest: &ObjectMeta, owners: &[String]) -> Result<()> {
        let refs = latest.owner_references.as_deref().unwrap_or_default();
        let drop: Vec<usize> = (0..refs.len())
            .filter(|i| owners.contains(&refs[*i].uid))
            .collect();
        if drop.is_empty() {
            return Ok(());
        }
        let mut ops = vec![json!({"op": "test", "path": "/metadata/uid", "value": id.uid})];
        for i in &drop {
            ops.push(json!({"op": "test", "path": format!("/metadata/ownerReferences/{i}/uid"), "value": refs[*i].uid}));
        }
        if drop.len() == refs.len() {
            // The last references go with their list, as upstream's empty lists are omitted.
            ops.push(json!({"op": "remove", "path": "/metadata/ownerReferences"}));
        } else {
            for i in drop.iter().rev() {
                ops.push(json!({"op": "remove", "path": format!("/metadata/ownerReferences/{i}")}));
            }
        }
        self.json_patch(id, ops).await
    }

    /// Turns off `blockOwnerDeletion` on the object's references.
    async fn unblock(&self, id: &Identity, latest: &ObjectMeta) -> Result<()> {
        let refs = latest.owner_references.as_deref().unwrap_or_default();
        let mut ops = vec![json!({"op": "test", "path": "/metadata/uid", "value": id.uid})];
        for (i, r) in refs.iter().enumerate().filter(|(_, r)| blocks(r)) {
            ops.push(json!({"op": "test", "path": format!("/metadata/ownerReferences/{i}/uid"), "value": r.uid}));
            ops.push(json!({"op": "replace", "path": format!("/metadata/ownerReferences/{i}/blockOwnerDeletion"), "value": false}));
        }
        if ops.len() == 1 {
            return Ok(());
        }
        self.json_patch(id, ops).await
    }

    /// Deletes the object `latest` shows, if it is still that object unchanged.
    async fn delete(&self, id: &Identity, latest: &ObjectMeta, policy: &'static str) -> Result<()> {
        tracing::debug!(
            "{NAME}: deleting {} {}/{} ({policy})",
            id.kind.resource.kind,
            id.namespace.as_deref().unwrap_or(""),
            id.name
        );
        let params = DeleteParams {
            propagation_policy: Some(match policy {
                "Orphan" => PropagationPolicy::Orphan,
                "Foreground" => PropagationPolicy::Foreground,
                _ => PropagationPolicy::Background,
            }),
            preconditions: Some(Preconditions {
                uid: Some(id.uid.clone()),
                resource_version: latest.resource_version.clone(),
            }),
            ..Default::default()
        };
        match self
            .dynamic(&id.kind, id.namespace.as_deref())
            .delete(&id.name, &params)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_not_found() => {
                let work = self.graph().remove(&id.uid);
                self.enqueue(work);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `finalizer` from the object, if it is still there.
    async fn remove_finalizer(&self, id: &Identity, finalizer: &str) -> Result<()> {
        let latest = match self
            .get_meta(&id.kind, id.namespace.as_deref(), &id.name)
            .await?
        {
            Some(m) if m.uid.as_deref() == Some(id.uid.as_str()) => m,
            _ => return Ok(()),
        };
        let Some(ops) = crate::runtime::finalizer_removal(&latest, finalizer) else {
            return Ok(());
        };
        tracing::debug!("{NAME}: removing {finalizer} from {}", id.name);
        self.json_patch(id, ops).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Arc<Kind> {
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Arc::new(Kind {
            resource: ApiResource {
                group: group.into(),
                version: version.into(),
                api_version,
                kind: kind.into(),
                plural: plural.into(),
            },
            namespaced,
        })
    }

    fn configmaps() -> Arc<Kind> {
        kind("", "v1", "ConfigMap", "configmaps", true)
    }

    fn id(ns: Option<&str>, name: &str, uid: &str) -> Identity {
        Identity {
            kind: configmaps(),
            namespace: ns.map(str::to_string),
            name: name.into(),
            uid: uid.into(),
        }
    }

    fn owner(name: &str, uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: name.into(),
            uid: uid.into(),
            block_owner_deletion: block.then_some(true),
            ..Default::default()
        }
    }

    fn meta(owners: Vec<OwnerReference>, deleting: bool, finalizers: &[&str]) -> ObjectMeta {
        ObjectMeta {
            owner_references: (!owners.is_empty()).then_some(owners),
            deletion_timestamp: deleting.then(|| {
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now())
            }),
            finalizers: (!finalizers.is_empty())
                .then(|| finalizers.iter().map(|f| f.to_string()).collect()),
            ..Default::default()
        }
    }

    fn del(uid: &str) -> Work {
        Work::Delete(uid.into())
    }

    #[test]
    fn dependents_of_unseen_owners_are_checked_and_seen_owners_vouch() {
        let mut g = Graph::default();
        // The dependent comes first: its owner is not seen yet, so it is checked.
        let work = g.observe(
            id(Some("a"), "dep", "d1"),
            &meta(vec![owner("own", "o1", false)], false, &[]),
        );
        assert_eq!(work, vec![del("d1")]);
        assert!(
            g.observe(id(Some("a"), "own", "o1"), &meta(vec![], false, &[]))
                .is_empty()
        );
        assert!(g.item("d1").unwrap().owners_solid);
        // A second dependent of a seen owner needs no check.
        let work = g.observe(
            id(Some("a"), "dep2", "d2"),
            &meta(vec![owner("own", "o1", false)], false, &[]),
        );
        assert!(work.is_empty());
        // The owner goes: both dependents are looked at.
        let mut work = g.forget("v1/configmaps", "o1");
        work.sort_by_key(|w| format!("{w:?}"));
        assert_eq!(work, vec![del("d1"), del("d2")]);
        assert!(!g.item("d1").unwrap().owners_solid);
    }

    #[test]
    fn owners_elsewhere_or_of_another_kind_do_not_vouch() {
        let mut g = Graph::default();
        g.observe(id(Some("b"), "own", "o1"), &meta(vec![], false, &[]));
        // Same uid, but the dependent lives in another namespace.
        let work = g.observe(
            id(Some("a"), "dep", "d1"),
            &meta(vec![owner("own", "o1", false)], false, &[]),
        );
        assert_eq!(work, vec![del("d1")]);
        // A reference naming another name for the uid.
        let work = g.observe(
            id(Some("b"), "dep2", "d2"),
            &meta(vec![owner("other", "o1", false)], false, &[]),
        );
        assert_eq!(work, vec![del("d2")]);
        // A cluster-scoped owner vouches for any namespace.
        let nodes = kind("", "v1", "Node", "nodes", false);
        let node = Identity {
            kind: nodes,
            namespace: None,
            name: "n1".into(),
            uid: "n".into(),
        };
        g.observe(node, &meta(vec![], false, &[]));
        let by_node = OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: "n1".into(),
            uid: "n".into(),
            ..Default::default()
        };
        assert!(
            g.observe(
                id(Some("z"), "dep3", "d3"),
                &meta(vec![by_node], false, &[])
            )
            .is_empty()
        );
    }

    #[test]
    fn foreground_and_orphan_deletions_start_once() {
        let mut g = Graph::default();
        g.observe(id(Some("a"), "own", "o1"), &meta(vec![], false, &[]));
        g.observe(
            id(Some("a"), "dep", "d1"),
            &meta(vec![owner("own", "o1", true)], false, &[]),
        );
        let work = g.observe(
            id(Some("a"), "own", "o1"),
            &meta(vec![], true, &[FOREGROUND]),
        );
        assert_eq!(work, vec![del("d1"), del("o1")]);
        assert!(
            g.observe(
                id(Some("a"), "own", "o1"),
                &meta(vec![], true, &[FOREGROUND])
            )
            .is_empty()
        );
        assert_eq!(
            g.blocking_dependents("o1"),
            vec![("d1".to_string(), Phase::Live)]
        );
        // The dependent stops blocking: the owner is looked at again.
        let work = g.observe(
            id(Some("a"), "dep", "d1"),
            &meta(vec![owner("own", "o1", false)], false, &[]),
        );
        assert_eq!(work, vec![del("o1")]);
        assert!(g.blocking_dependents("o1").is_empty());

        let mut g = Graph::default();
        let work = g.observe(
            id(None, "own", "o2"),
            &meta(vec![], true, &[ORPHAN, FOREGROUND]),
        );
        assert_eq!(work, vec![Work::Orphan("o2".into())]);
        // Orphaning done, the foreground deletion it also asked for starts.
        let work = g.observe(id(None, "own", "o2"), &meta(vec![], true, &[FOREGROUND]));
        assert_eq!(work, vec![del("o2")]);
    }

    #[test]
    fn a_dependent_deleted_frees_its_waiting_owner() {
        let mut g = Graph::default();
        g.observe(
            id(Some("a"), "own", "o1"),
            &meta(vec![], true, &[FOREGROUND]),
        );
        g.observe(
            id(Some("a"), "dep", "d1"),
            &meta(vec![owner("own", "o1", true)], true, &["example.com/hold"]),
        );
        assert_eq!(
            g.blocking_dependents("o1"),
            vec![("d1".to_string(), Phase::Deleting)]
        );
        assert_eq!(g.forget("v1/configmaps", "d1"), vec![del("o1")]);
        assert!(g.dependents.is_empty());
        // A deletion seen by another resource's watch is not this one's.
        g.observe(id(Some("a"), "x", "x1"), &meta(vec![], false, &[]));
        assert!(g.forget("apps/v1/deployments", "x1").is_empty());
        assert!(g.nodes.contains_key("x1"));
    }

    #[test]
    fn a_relisting_forgets_what_vanished() {
        let mut g = Graph::default();
        g.observe(id(Some("a"), "own", "o1"), &meta(vec![], false, &[]));
        g.observe(
            id(Some("a"), "dep", "d1"),
            &meta(vec![owner("own", "o1", false)], false, &[]),
        );
        let listed: HashSet<String> = ["d1".to_string()].into();
        assert_eq!(g.resync("v1/configmaps", &listed), vec![del("d1")]);
        assert!(!g.nodes.contains_key("o1") && g.nodes.contains_key("d1"));
        assert_eq!(g.dependents_of("o1").collect::<Vec<_>>(), vec!["d1"]);
    }

    #[test]
    fn decisions_follow_upstream() {
        let s = |v: &[(&str, Owner)]| -> Vec<(String, Owner)> {
            v.iter().map(|(u, o)| (u.to_string(), *o)).collect()
        };
        let none: &[String] = &[];
        assert_eq!(decide(&[], false, false, none), Decision::Keep);
        assert_eq!(
            decide(&s(&[("a", Owner::Solid)]), false, false, none),
            Decision::Keep
        );
        // Some owners gone: only their references go.
        assert_eq!(
            decide(
                &s(&[
                    ("a", Owner::Solid),
                    ("b", Owner::Gone),
                    ("c", Owner::Waiting)
                ]),
                true,
                false,
                none
            ),
            Decision::Unlink(vec!["b".into(), "c".into()])
        );
        // Every owner gone: deleted in the background, or as its finalizers ask.
        assert_eq!(
            decide(&s(&[("a", Owner::Gone)]), true, false, none),
            Decision::Delete {
                policy: "Background",
                unblock: false
            }
        );
        assert_eq!(
            decide(
                &s(&[("a", Owner::Gone)]),
                false,
                false,
                &["orphan".to_string()]
            ),
            Decision::Delete {
                policy: "Orphan",
                unblock: false
            }
        );
        // An owner waits for its dependents: one with dependents of its own goes in the
        // foreground, unblocking its references when a dependent waits too (a cycle).
        assert_eq!(
            decide(&s(&[("a", Owner::Waiting)]), true, true, none),
            Decision::Delete {
                policy: "Foreground",
                unblock: true
            }
        );
        assert_eq!(
            decide(
                &s(&[("a", Owner::Waiting), ("b", Owner::Gone)]),
                false,
                false,
                none
            ),
            Decision::Delete {
                policy: "Background",
                unblock: false
            }
        );
    }

    #[tokio::test]
    async fn the_queue_holds_an_item_once_and_never_twice_at_work() {
        let q = Arc::new(Queue::default());
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        assert_eq!(q.next().await, "a");
        // Added while at work: queued again once done.
        q.add("a".into());
        assert_eq!(q.next().await, "b");
        q.done("b", true);
        assert!(q.state().order.is_empty());
        q.done("a", true);
        assert_eq!(q.next().await, "a");
        q.done("a", false);
        assert_eq!(q.state().failures["a"], 1);
        // Retried after its back-off.
        assert_eq!(q.next().await, "a");
        q.done("a", true);
        assert!(q.state().failures.is_empty());
    }

    #[test]
    fn groups_of_api_versions() {
        assert_eq!(group_of("v1"), "");
        assert_eq!(group_of("apps/v1"), "apps");
    }
}
