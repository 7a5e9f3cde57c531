//! The scheduling loop: watches keep the [`Cache`] and the [`Queue`] current; one pod at a
//! time is filtered and scored against every node, assumed onto the best, and bound through
//! `pods/binding` while the next one is considered. A pod that fits nowhere gets the
//! `PodScheduled=False` condition and a `FailedScheduling` event in upstream's words.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::cache::{Cache, key};
use crate::config::Profile;
use crate::framework::{Budget, Cluster, NodeInfo, Plugin, PreBind, Prepared, Verdict, normalize};
use crate::metrics::Metrics;
use crate::queue::Queue;

/// The profile pods name in `spec.schedulerName`.
pub const SCHEDULER_NAME: &str = "default-scheduler";

struct State {
    cache: Cache,
    queue: Queue,
    /// The last failure message reported per pod, so a repeated one is not reported again.
    reported: HashMap<String, String>,
    /// Picks among equally good nodes in turn.
    ties: usize,
    /// Where the next pod's search starts, so searches cut short cover every node in turn.
    next_start: usize,
    /// The scheduler names this scheduler serves (one per profile).
    names: Vec<String>,
    /// When each pending pod was first seen, for the end-to-end latency.
    first_seen: HashMap<String, Instant>,
    /// Namespaces, Services, controllers and disruption budgets, for the plugins.
    cluster: Cluster,
}

/// What the scheduler watches, and what each change does to its state.
trait Followed:
    kube::Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + Send
    + 'static
{
    /// For log lines.
    const WHAT: &'static str;
    fn key(&self) -> String;
    fn apply(st: &mut State, obj: Self);
    fn remove(st: &mut State, key: &str);
}

impl Followed for Node {
    const WHAT: &'static str = "node";
    fn key(&self) -> String {
        self.metadata.name.clone().unwrap_or_default()
    }
    fn apply(st: &mut State, node: Node) {
        if let Some(old) = st.cache.node(&Followed::key(&node)) {
            st.cluster.count_images(&old.node, -1);
        }
        st.cluster.count_images(&node, 1);
        st.cache.upsert_node(node);
        st.queue.cluster_changed();
    }
    fn remove(st: &mut State, name: &str) {
        if let Some(old) = st.cache.node(name) {
            st.cluster.count_images(&old.node, -1);
        }
        st.cache.remove_node(name);
        st.queue.cluster_changed();
    }
}

impl Followed for Pod {
    const WHAT: &'static str = "pod";
    fn key(&self) -> String {
        key(self)
    }
    fn apply(st: &mut State, pod: Pod) {
        Scheduler::pod_changed(st, pod);
    }
    fn remove(st: &mut State, key: &str) {
        Scheduler::pod_gone(st, key);
    }
}

/// `namespace/name` of a namespaced object.
fn namespaced_key(meta: &kube::api::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

impl Followed for Namespace {
    const WHAT: &'static str = "namespace";
    fn key(&self) -> String {
        self.metadata.name.clone().unwrap_or_default()
    }
    fn apply(st: &mut State, ns: Namespace) {
        let labels = serde_json::to_value(ns.metadata.labels.unwrap_or_default());
        st.cluster.namespaces.insert(
            ns.metadata.name.unwrap_or_default(),
            labels.unwrap_or_default(),
        );
    }
    fn remove(st: &mut State, name: &str) {
        st.cluster.namespaces.remove(name);
    }
}

impl Followed for Service {
    const WHAT: &'static str = "service";
    fn key(&self) -> String {
        namespaced_key(&self.metadata)
    }
    fn apply(st: &mut State, svc: Service) {
        let selector = svc.spec.and_then(|s| s.selector).unwrap_or_default();
        let ns = svc.metadata.namespace.unwrap_or_default();
        let name = svc.metadata.name.unwrap_or_default();
        st.cluster
            .services
            .entry(ns)
            .or_default()
            .insert(name, selector);
    }
    fn remove(st: &mut State, key: &str) {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        if let Some(in_ns) = st.cluster.services.get_mut(ns) {
            in_ns.remove(name);
            if in_ns.is_empty() {
                st.cluster.services.remove(ns);
            }
        }
    }
}

/// Objects kept whole in the [`Cluster`] for the volume plugins: `$field` by `$key`. A change
/// may let unschedulable pods fit (a claim bound, a volume created).
macro_rules! kept {
    ($kind:ty, $what:literal, $field:ident, $key:expr) => {
        impl Followed for $kind {
            const WHAT: &'static str = $what;
            fn key(&self) -> String {
                $key(&self.metadata)
            }
            fn apply(st: &mut State, obj: Self) {
                st.cluster.$field.insert(obj.key(), obj);
                st.queue.cluster_changed();
            }
            fn remove(st: &mut State, key: &str) {
                st.cluster.$field.remove(key);
                st.queue.cluster_changed();
            }
        }
    };
}

fn name_key(meta: &kube::api::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

kept!(
    PersistentVolumeClaim,
    "persistentvolumeclaim",
    claims,
    namespaced_key
);
kept!(PersistentVolume, "persistentvolume", volumes, name_key);
kept!(StorageClass, "storageclass", classes, name_key);

/// Controllers whose selectors feed PodTopologySpread's default constraints.
trait Controller {
    const KIND: &'static str;
    fn selector(&self) -> Value;
}

impl Controller for ReplicaSet {
    const KIND: &'static str = "ReplicaSet";
    fn selector(&self) -> Value {
        serde_json::to_value(self.spec.as_ref().map(|s| &s.selector)).unwrap_or_default()
    }
}

impl Controller for StatefulSet {
    const KIND: &'static str = "StatefulSet";
    fn selector(&self) -> Value {
        serde_json::to_value(self.spec.as_ref().map(|s| &s.selector)).unwrap_or_default()
    }
}

impl Controller for ReplicationController {
    const KIND: &'static str = "ReplicationController";
    fn selector(&self) -> Value {
        json!({"matchLabels": self.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default()})
    }
}

impl<K> Followed for K
where
    K: Controller
        + kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    const WHAT: &'static str = K::KIND;
    fn key(&self) -> String {
        format!("{}/{}", K::KIND, namespaced_key(self.meta()))
    }
    fn apply(st: &mut State, obj: K) {
        let key = obj.key();
        st.cluster.controllers.insert(key, obj.selector());
    }
    fn remove(st: &mut State, key: &str) {
        st.cluster.controllers.remove(key);
    }
}

impl Followed for PodDisruptionBudget {
    const WHAT: &'static str = "poddisruptionbudget";
    fn key(&self) -> String {
        namespaced_key(&self.metadata)
    }
    fn apply(st: &mut State, pdb: PodDisruptionBudget) {
        let key = pdb.key();
        let selector = pdb
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .filter(|s| {
                s.match_labels.as_ref().is_some_and(|m| !m.is_empty())
                    || s.match_expressions.as_ref().is_some_and(|e| !e.is_empty())
            })
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|s| api::selector::LabelSelector::from_object(&s).ok());
        let status = pdb.status.unwrap_or_default();
        st.cluster.budgets.insert(
            key,
            Budget {
                namespace: pdb.metadata.namespace.unwrap_or_default(),
                selector,
                allowed: status.disruptions_allowed,
                disrupted: status
                    .disrupted_pods
                    .unwrap_or_default()
                    .into_keys()
                    .collect(),
            },
        );
    }
    fn remove(st: &mut State, key: &str) {
        st.cluster.budgets.remove(key);
    }
}

/// A decision for one pod.
enum Decision {
    /// The chosen node, and what to write before binding there.
    Node(String, Vec<PreBind>),
    Unschedulable(String),
    /// No node fits, but this one will once the victims are gone.
    Preempt {
        message: String,
        candidate: crate::preemption::Candidate,
    },
}

/// One scheduler: its plugins, its view of the cluster, its queue.
pub struct Scheduler {
    client: kube::Client,
    profiles: Vec<Profile>,
    state: Mutex<State>,
    wake: Notify,
    /// Bindings in flight at once.
    binds: Arc<tokio::sync::Semaphore>,
    /// How long each scheduling attempt (filter, score, assume) took, in milliseconds.
    latencies: Mutex<Vec<f64>>,
    metrics: Arc<Metrics>,
}

/// Bindings in flight at once: the binding cycle runs beside the scheduling of the next pods.
const MAX_BINDS: usize = 64;

/// Attempt durations kept (the newest).
const MAX_SAMPLES: usize = 100_000;

/// How many feasible nodes are enough to stop looking (upstream's
/// `percentageOfNodesToScore`, adaptive: 50% of small clusters, down to 5% of big ones, at
/// least 100 nodes).
fn feasible_to_find(nodes: usize) -> usize {
    if nodes < 100 {
        return nodes;
    }
    let percent = (50 - nodes as i64 / 125).max(5) as usize;
    (nodes * percent / 100).max(100)
}

/// The profile a pod asks for (`spec.schedulerName`, `default-scheduler` when unset).
fn scheduler_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or(SCHEDULER_NAME)
}

/// Whether a scheduler serving `names` should place `pod`.
fn pending(pod: &Pod, names: &[String]) -> bool {
    let spec = pod.spec.as_ref();
    let name = scheduler_name(pod);
    spec.and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
        .is_empty()
        && names.iter().any(|n| n == name)
        && pod::is_active(pod)
}

/// Every plugin's PreBind writes for `pod` on `node`.
fn pre_bind(
    plugins: &[&dyn Plugin],
    prepared: &[Prepared],
    pod: &Pod,
    node: &NodeInfo,
) -> Vec<PreBind> {
    plugins
        .iter()
        .zip(prepared)
        .flat_map(|(p, state)| p.pre_bind(pod, node, state))
        .collect()
}

/// Upstream's `FitError` text: `0/3 nodes are available: 1 node(s) had untolerated taint
/// {...}, 2 Insufficient cpu.`, reasons counted over nodes and sorted.
fn fit_error(nodes: usize, reasons: &BTreeMap<String, usize>) -> String {
    if nodes == 0 {
        return "no nodes available to schedule pods".into();
    }
    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    format!("0/{nodes} nodes are available: {}.", parts.join(", "))
}

impl Scheduler {
    /// A scheduler with `profiles` ([`Profile::default_profile`] unless configured),
    /// recording into `metrics`.
    pub fn new(client: kube::Client, profiles: Vec<Profile>, metrics: Arc<Metrics>) -> Scheduler {
        let names = profiles.iter().map(|p| p.scheduler_name.clone()).collect();
        Scheduler {
            client,
            profiles,
            state: Mutex::new(State {
                cache: Cache::default(),
                queue: Queue::default(),
                reported: HashMap::new(),
                ties: 0,
                next_start: 0,
                names,
                first_seen: HashMap::new(),
                cluster: Cluster::default(),
            }),
            binds: Arc::new(tokio::sync::Semaphore::new(MAX_BINDS)),
            latencies: Mutex::new(Vec::new()),
            metrics,
            wake: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the watches and the loop until an error ends a watch for good.
    /// Dropping the future stops them all.
    pub async fn serve(self: Arc<Self>) -> crate::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(self.clone().follow::<Node>());
        tasks.spawn(self.clone().follow::<Pod>());
        tasks.spawn(self.clone().follow::<Namespace>());
        tasks.spawn(self.clone().follow::<Service>());
        tasks.spawn(self.clone().follow::<ReplicaSet>());
        tasks.spawn(self.clone().follow::<StatefulSet>());
        tasks.spawn(self.clone().follow::<ReplicationController>());
        tasks.spawn(self.clone().follow::<PodDisruptionBudget>());
        tasks.spawn(self.clone().follow::<PersistentVolumeClaim>());
        tasks.spawn(self.clone().follow::<PersistentVolume>());
        tasks.spawn(self.clone().follow::<StorageClass>());
        tasks.spawn(self.clone().schedule_loop());
        match tasks.join_next().await {
            Some(r) => r?,
            None => Ok(()),
        }
    }

    /// Follows a watch of every `K`, keeping the state current: objects listed or changed
    /// are applied, deleted ones removed, and after a re-list the ones it no longer shows are
    /// removed too. Each event wakes the scheduling loop.
    async fn follow<K: Followed>(self: Arc<Self>) -> crate::Result<()> {
        let api: Api<K> = Api::all(self.client.clone());
        let mut known: HashSet<String> = HashSet::new();
        let mut relisted: Option<HashSet<String>> = None;
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!("{} watch: {e}", K::WHAT);
                    continue;
                }
            };
            let mut st = self.state();
            match event {
                Event::Init => relisted = Some(HashSet::new()),
                Event::InitApply(obj) | Event::Apply(obj) => {
                    let k = obj.key();
                    if let Some(seen) = relisted.as_mut() {
                        seen.insert(k.clone());
                    }
                    known.insert(k);
                    K::apply(&mut st, obj);
                }
                Event::Delete(obj) => {
                    let k = obj.key();
                    known.remove(&k);
                    K::remove(&mut st, &k);
                }
                Event::InitDone => {
                    let keep = relisted.take().unwrap_or_default();
                    for k in known.difference(&keep) {
                        K::remove(&mut st, k);
                    }
                    known = keep;
                }
            }
            drop(st);
            self.wake.notify_one();
        }
        Ok(())
    }

    fn pod_changed(st: &mut State, pod: Pod) {
        let k = key(&pod);
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let nominated = pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty());
        match nominated {
            Some(n) if node.is_empty() && pending(&pod, &st.names) => st.cache.nominate(&pod, n),
            _ => st.cache.unnominate(&k),
        }
        if pod::is_terminal(&pod) {
            Self::pod_gone(st, &k);
        } else if !node.is_empty() {
            st.queue.remove(&k);
            st.reported.remove(&k);
            st.cache.place(&pod, &node);
        } else if pending(&pod, &st.names) && !st.cache.placed(&k) {
            st.first_seen.entry(k).or_insert_with(Instant::now);
            st.queue.add(pod);
        } else if !pending(&pod, &st.names) {
            st.queue.remove(&k);
        }
    }

    fn pod_gone(st: &mut State, k: &str) {
        st.cache.unnominate(k);
        st.first_seen.remove(k);
        st.queue.remove(k);
        st.reported.remove(k);
        if st.cache.placed(k) {
            st.cache.remove_pod(k);
            // Room was made: unschedulable pods may fit now.
            st.queue.cluster_changed();
        }
    }

    async fn schedule_loop(self: Arc<Self>) -> crate::Result<()> {
        loop {
            let next = {
                let mut st = self.state();
                let (active, backoff, unschedulable) = st.queue.lens();
                self.metrics.pending(active, backoff, unschedulable);
                let now = Instant::now();
                match st.queue.pop(now) {
                    Some(pod) => Ok(pod),
                    None => Err(st.queue.next_due()),
                }
            };
            match next {
                Ok(pod) => self.clone().schedule_one(pod).await,
                Err(due) => {
                    let wait = due
                        .map(|d| d.saturating_duration_since(Instant::now()))
                        .unwrap_or(Duration::from_secs(5))
                        .max(Duration::from_millis(10));
                    let _ = tokio::time::timeout(wait, self.wake.notified()).await;
                }
            }
        }
    }

    /// Filter, score, pick (under the lock, without waiting on anything); the pod is assumed
    /// on the chosen node before the lock is released.
    fn decide(&self, pod: &Pod) -> Decision {
        let wanted = scheduler_name(pod);
        let Some(profile) = self.profiles.iter().find(|p| p.scheduler_name == wanted) else {
            return Decision::Unschedulable(format!("no profile for scheduler {wanted:?}"));
        };
        let plugins: Vec<&dyn Plugin> = profile.plugins.iter().map(|(p, _)| p.as_ref()).collect();
        let mut st = self.state();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut refused: BTreeMap<String, usize> = BTreeMap::new();
        let mut feasible = Vec::new();
        let all: Vec<&NodeInfo> = st.cache.nodes().collect();
        if !all.is_empty()
            && let Some(why) = plugins
                .iter()
                .find_map(|p| p.pre_filter(pod, &st.cluster).err())
        {
            let n = all.len();
            return Decision::Unschedulable(format!(
                "0/{n} nodes are available: {why}. preemption: 0/{n} nodes are available: \
                 {n} Preemption is not helpful for scheduling."
            ));
        }
        let prepared: Vec<Prepared> = plugins
            .iter()
            .map(|p| p.prepare(pod, &all, &st.cluster))
            .collect();
        let (pod_key, priority) = (
            key(pod),
            pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
        );
        let (start, enough) = (
            st.next_start % all.len().max(1),
            feasible_to_find(all.len()),
        );
        let mut looked = 0;
        for i in 0..all.len() {
            if feasible.len() >= enough {
                break;
            }
            looked += 1;
            let node = all[(start + i) % all.len()];
            // Pods at least as important waiting for room here (nominated by preemption)
            // count as if they were on the node.
            let nominated = st.cache.nominated_on(node.name(), priority, &pod_key);
            let with_nominated;
            let seen = if nominated.is_empty() {
                node
            } else {
                let mut n = node.clone();
                for p in nominated {
                    n.add_pod(p);
                }
                with_nominated = n;
                &with_nominated
            };
            let verdict = plugins
                .iter()
                .zip(&prepared)
                .enumerate()
                .map(|(i, (p, state))| (i, p.filter(pod, seen, state)))
                .find(|(_, v)| *v != Verdict::Fits);
            match verdict {
                Some((i, Verdict::Unschedulable(rs))) => {
                    refused.insert(node.name().to_string(), i);
                    for r in rs {
                        *reasons.entry(r).or_default() += 1;
                    }
                }
                _ => feasible.push(node),
            }
        }
        let next_start = start + looked;
        if feasible.is_empty() {
            let message = fit_error(st.cache.node_count(), &reasons);
            if all.is_empty() {
                return Decision::Unschedulable(message);
            }
            let spec = pod.spec.as_ref();
            if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
                return Decision::Unschedulable(format!(
                    "{message} preemption: not eligible due to preemptionPolicy=Never."
                ));
            }
            // A pod whose earlier preemption is still under way waits for it.
            let nominated = pod
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.as_deref())
                .and_then(|n| st.cache.node(n));
            if nominated.is_some_and(|n| {
                n.pods
                    .iter()
                    .any(|p| p.terminating && p.priority < priority)
            }) {
                return Decision::Unschedulable(message);
            }
            return match crate::preemption::find(
                pod,
                &plugins,
                &prepared,
                &all,
                &refused,
                &st.cluster,
            ) {
                Ok(candidate) => Decision::Preempt { message, candidate },
                Err(why) => Decision::Unschedulable(format!("{message} {why}")),
            };
        }
        let mut totals = vec![0i64; feasible.len()];
        for ((plugin, weight), state) in profile.plugins.iter().zip(&prepared) {
            let mut scores: Vec<i64> = Vec::with_capacity(feasible.len());
            for node in &feasible {
                match plugin.score(pod, node, state) {
                    Some(s) => scores.push(s),
                    None => break,
                }
            }
            if scores.len() != feasible.len() {
                continue;
            }
            normalize(plugin.normalize(), &mut scores);
            for (t, s) in totals.iter_mut().zip(scores) {
                *t += s * weight;
            }
        }
        let best = totals.iter().copied().max().unwrap_or(0);
        let ties: Vec<usize> = (0..feasible.len()).filter(|i| totals[*i] == best).collect();
        let node = feasible[ties[st.ties % ties.len()]];
        let (chosen, writes) = (
            node.name().to_string(),
            pre_bind(&plugins, &prepared, pod, node),
        );
        st.ties = st.ties.wrapping_add(1);
        st.next_start = next_start;
        st.cache.place(pod, &chosen);
        // Bound or back in the queue once the binding settles, not before.
        st.queue.remove(&key(pod));
        Decision::Node(chosen, writes)
    }

    async fn schedule_one(self: Arc<Self>, pod: Pod) {
        let k = key(&pod);
        let started = Instant::now();
        let decision = self.decide(&pod);
        let took = started.elapsed().as_secs_f64();
        {
            let mut samples = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
            if samples.len() >= MAX_SAMPLES {
                samples.drain(..MAX_SAMPLES / 2);
            }
            samples.push(took * 1000.0);
        }
        let profile = scheduler_name(&pod);
        let result = match decision {
            Decision::Node(..) => "scheduled",
            _ => "unschedulable",
        };
        self.metrics.attempt(result, profile, took);
        match decision {
            Decision::Node(node, writes) => {
                let permit = self.binds.clone().acquire_owned().await;
                let me = self.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    me.binding_cycle(pod, node, writes).await;
                });
            }
            Decision::Preempt { message, candidate } => {
                {
                    let mut st = self.state();
                    st.queue.failed(&k, true, Instant::now());
                    st.cache.nominate(&pod, &candidate.node);
                }
                tracing::info!(
                    "{k} preempts {} pod(s) on {}",
                    candidate.victims.len(),
                    candidate.node
                );
                self.mark_unschedulable(&pod, &message).await;
                self.nominate(&pod, &candidate.node).await;
                for victim in &candidate.victims {
                    self.evict(&pod, victim, &candidate.node).await;
                }
            }
            Decision::Unschedulable(message) => {
                let repeated = {
                    let mut st = self.state();
                    st.queue.failed(&k, true, Instant::now());
                    st.reported.insert(k.clone(), message.clone()).as_ref() == Some(&message)
                };
                if !repeated {
                    tracing::info!("{k} is unschedulable: {message}");
                    self.mark_unschedulable(&pod, &message).await;
                    self.event(&pod, "Warning", "FailedScheduling", &message)
                        .await;
                }
            }
        }
    }

    /// Writes what the plugins need (PreBind), then binds an assumed pod; a failure puts it
    /// back in the queue.
    async fn binding_cycle(&self, pod: Pod, node: String, writes: Vec<PreBind>) {
        let k = key(&pod);
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let bound = match self.pre_bind(writes).await {
            Ok(()) => self.bind(&ns, &name, &node).await,
            Err(e) => Err(e),
        };
        match bound {
            Ok(()) => {
                tracing::debug!("bound {k} to {node}");
                if let Some(since) = self.state().first_seen.remove(&k) {
                    self.metrics.bound(since.elapsed().as_secs_f64());
                }
                self.event(
                    &pod,
                    "Normal",
                    "Scheduled",
                    &format!("Successfully assigned {k} to {node}"),
                )
                .await;
            }
            Err(e) => {
                tracing::info!("binding {k} to {node} failed: {e}");
                let profile = scheduler_name(&pod);
                self.metrics.attempt("error", profile, 0.0);
                let mut st = self.state();
                st.cache.remove_pod(&k);
                // A pod deleted meanwhile is done with; any other failure is tried again.
                if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                    st.queue.add(pod);
                    st.queue.failed(&k, false, Instant::now());
                }
            }
        }
    }

    /// Waits until no binding is in flight.
    pub async fn bindings_settled(&self) {
        let _ = self.binds.acquire_many(MAX_BINDS as u32).await;
    }

    /// The durations of the latest scheduling attempts (up to 100,000), in milliseconds.
    pub fn attempt_latencies(&self) -> Vec<f64> {
        self.latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn pre_bind(&self, writes: Vec<PreBind>) -> Result<(), kube::Error> {
        let params = PatchParams::default();
        for w in writes {
            match w {
                PreBind::Volume(name, patch) => {
                    let api: Api<PersistentVolume> = Api::all(self.client.clone());
                    api.patch(&name, &params, &Patch::Merge(patch)).await?;
                }
                PreBind::Claim(ns, name, patch) => {
                    let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
                    api.patch(&name, &params, &Patch::Merge(patch)).await?;
                }
            }
        }
        Ok(())
    }

    async fn bind(&self, ns: &str, name: &str, node: &str) -> Result<(), kube::Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        api.create_subresource::<Value, Value>("binding", name, &PostParams::default(), &binding)
            .await
            .map(|_| ())
    }

    async fn mark_unschedulable(&self, pod: &Pod, message: &str) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let patch = json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }]}});
        let name = pod.metadata.name.as_deref().unwrap_or("");
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            tracing::debug!("recording {ns}/{name} as unschedulable: {e}");
        }
    }

    async fn nominate(&self, pod: &Pod, node: &str) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let patch = json!({"status": {"nominatedNodeName": node}});
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            tracing::debug!("nominating {node} for {ns}/{name}: {e}");
        }
    }

    /// Deletes a victim gracefully, with a `Preempted` event on it.
    /// Deletes a victim of preemption, first marking it `DisruptionTarget` as upstream does
    /// (its controller and the disruption controller read why it goes).
    async fn evict(&self, preemptor: &Pod, victim: &crate::framework::PodSummary, node: &str) {
        let (ns, name) = victim.key.split_once('/').unwrap_or(("", &victim.key));
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let condition = json!({"status": {"conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "PreemptionByScheduler",
            "message": format!(
                "{}: preempting to accommodate a higher priority pod",
                scheduler_name(preemptor)
            ),
            "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }]}});
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(condition))
            .await
        {
            tracing::info!("marking {ns}/{name} as a disruption target: {e}");
            return;
        }
        let params = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: Some(victim.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => {
                let mut shown = Pod::default();
                shown.metadata.namespace = Some(ns.to_string());
                shown.metadata.name = Some(name.to_string());
                shown.metadata.uid = Some(victim.uid.clone());
                let by = preemptor.metadata.uid.as_deref().unwrap_or("");
                self.event(
                    &shown,
                    "Normal",
                    "Preempted",
                    &format!("Preempted by pod {by} on node {node}"),
                )
                .await;
            }
            Err(e) => tracing::info!("preempting {ns}/{name}: {e}"),
        }
    }

    /// An events.k8s.io/v1 Event about `pod`, as upstream's scheduler records them.
    async fn event(&self, pod: &Pod, ty: &str, reason: &str, note: &str) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let now = jiff::Timestamp::now();
        let event = json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": format!("{name}.{:x}", now.as_nanosecond()), "namespace": ns},
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            "reportingController": SCHEDULER_NAME,
            "reportingInstance": format!("{SCHEDULER_NAME}-rudder"),
            "action": if ty == "Normal" { "Binding" } else { "Scheduling" },
            "reason": reason,
            "type": ty,
            "note": note,
            "regarding": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": ns,
                "name": name,
                "uid": pod.metadata.uid,
                "resourceVersion": pod.metadata.resource_version,
            },
        });
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), ns);
        let event = match serde_json::from_value(event) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("building an event: {e}");
                return;
            }
        };
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!("recording event {reason} for {ns}/{name}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_errors_read_as_upstream() {
        let mut reasons = BTreeMap::new();
        reasons.insert("Insufficient cpu".to_string(), 2);
        reasons.insert(
            "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }".to_string(),
            1,
        );
        assert_eq!(
            fit_error(3, &reasons),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu."
        );
        assert_eq!(
            fit_error(0, &reasons),
            "no nodes available to schedule pods"
        );
    }
}
