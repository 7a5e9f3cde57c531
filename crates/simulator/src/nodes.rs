//! The simulated nodes' own objects: the Node (registered, or taken over when it already
//! exists), its status (capacity, conditions, addresses, system info), and the Lease in
//! `kube-node-lease` that says the node is alive.
//!
//! As upstream's kubelet does, each node renews its Lease every lease interval and refreshes its
//! Ready condition's heartbeat much less often ([`STATUS_PERIOD`]). Renewals are spread evenly
//! over the interval, with at most [`CONCURRENCY`] requests in flight, so that thousands of
//! nodes make a steady trickle of writes rather than a burst.
//!
//! A Node annotated [`DEAD_ANNOTATION`] `"true"` is dead: no renewals, no heartbeats ([`watch`]
//! follows the annotation). When it revives, or when someone else (a node-lifecycle
//! controller) turns a live node's Ready condition to anything but True, the node posts its
//! heartbeat at once, as upstream's kubelet posts a status that differs from its own.
//!
//! Addresses are made up and distinct: node `i` is `10.200.<i / 250>.<i % 250 + 1>`, and its
//! pods get addresses from its own /24 ([`pod_block`]). `i` is the node's index, from
//! [`Options::first_index`] on, not its position in this process's [`NodeTable`]: so processes
//! running disjoint index ranges hand out disjoint addresses.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;

use crate::retry::{is_conflict, is_not_found, retry};
use crate::{DEAD_ANNOTATION, Options, SIMULATED_LABEL, Sim, Stats, hex_digest};

/// The namespace of node leases.
pub(crate) const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Upstream's node lease duration (the kubelet's `nodeLeaseDurationSeconds`); longer when the
/// renewal interval asks for it, so that a lease never expires between two renewals.
const LEASE_DURATION_SECONDS: i32 = 40;
/// How often a node's Ready heartbeat (`lastHeartbeatTime`) is refreshed. Upstream reports
/// node status every 5 minutes when nothing changes; one minute keeps `kubectl describe node`
/// fresh at a small cost (one write per node per minute).
pub(crate) const STATUS_PERIOD: Duration = Duration::from_secs(60);
/// Requests in flight at once, for registration and for renewals.
pub(crate) const CONCURRENCY: usize = 32;
/// Every node's ephemeral storage.
const EPHEMERAL_STORAGE: &str = "100Gi";
/// What the node reports as its kubelet's version (the VERSION column).
pub(crate) const KUBELET_VERSION: &str = "v1.33.0-rudder-sim";
/// What the node reports as its container runtime; also the scheme of container IDs.
pub(crate) const RUNTIME_VERSION: &str = "rudder-sim://0.1";

/// Node `index`'s name (`index` counts from [`Options::first_index`], as in all these
/// functions).
pub(crate) fn node_name(opts: &Options, index: usize) -> String {
    format!("{}{index}", opts.name_prefix)
}

/// Node `index`'s InternalIP.
pub(crate) fn node_ip(index: usize) -> Ipv4Addr {
    // `index < MAX_NODES` (checked with the options) keeps the third octet in range.
    Ipv4Addr::new(10, 200, (index / 250) as u8, (index % 250 + 1) as u8)
}

/// The first address of node `index`'s /24 of pod IPs, inside 10.64.0.0/10.
pub(crate) fn pod_block(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 64 + (index / 256) as u8, (index % 256) as u8, 0)
}

/// Node `index`'s labels: the kubelet's well-known ones, the zone, the simulated marker and the
/// options' extra labels (which win).
pub(crate) fn node_labels(opts: &Options, index: usize) -> BTreeMap<String, String> {
    let name = node_name(opts, index);
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name),
        ("kubernetes.io/os".into(), "linux".into()),
        ("kubernetes.io/arch".into(), "amd64".into()),
        ("beta.kubernetes.io/os".into(), "linux".into()),
        ("beta.kubernetes.io/arch".into(), "amd64".into()),
        (SIMULATED_LABEL.into(), "true".into()),
    ]);
    if opts.zones > 0 {
        labels.insert(
            "topology.kubernetes.io/zone".into(),
            format!("zone-{}", index % opts.zones),
        );
    }
    for (k, v) in &opts.labels {
        labels.insert(k.clone(), v.clone());
    }
    labels
}

/// The Node object as registered: metadata and spec (status goes through its subresource).
pub(crate) fn node_object(opts: &Options, index: usize) -> Node {
    let taints: Vec<Taint> = opts
        .taints
        .iter()
        .map(|(key, value, effect)| Taint {
            key: key.clone(),
            value: (!value.is_empty()).then(|| value.clone()),
            effect: effect.clone(),
            time_added: None,
        })
        .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(node_name(opts, index)),
            labels: Some(node_labels(opts, index)),
            annotations: Some(BTreeMap::from([(
                "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!taints.is_empty()).then_some(taints),
            ..Default::default()
        }),
        status: None,
    }
}

/// An existing Node `current` taken over for `desired`: our labels and annotations set (others
/// kept), our taints set, other taints kept (e.g. the control plane's `not-ready` ones, which
/// go once the node is Ready again), and the rest of the spec (cordon, pod CIDR) untouched.
pub(crate) fn take_over(mut current: Node, desired: &Node) -> Node {
    let meta = &mut current.metadata;
    for (field, ours) in [
        (&mut meta.labels, &desired.metadata.labels),
        (&mut meta.annotations, &desired.metadata.annotations),
    ] {
        if let Some(ours) = ours {
            field
                .get_or_insert_with(Default::default)
                .extend(ours.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    let ours: Vec<Taint> = desired
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let spec = current.spec.get_or_insert_with(Default::default);
    let mut taints = ours.clone();
    for t in spec.taints.take().unwrap_or_default() {
        if !ours.iter().any(|o| o.key == t.key && o.effect == t.effect) {
            taints.push(t);
        }
    }
    spec.taints = (!taints.is_empty()).then_some(taints);
    current
}

/// The node's conditions: Ready, no pressure of any kind; `since` is when they last changed.
pub(crate) fn conditions(since: Timestamp, now: Timestamp) -> Vec<NodeCondition> {
    [
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        (
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        (
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        (
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
    ]
    .into_iter()
    .map(|(type_, status, reason, message)| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(since)),
    })
    .collect()
}

/// Node `index`'s whole status at registration (`now`).
pub(crate) fn node_status(opts: &Options, index: usize, now: Timestamp) -> NodeStatus {
    let name = node_name(opts, index);
    let mut resources: BTreeMap<String, Quantity> = [
        ("cpu", opts.cpu.clone()),
        ("memory", opts.memory.clone()),
        ("pods", opts.pods.to_string()),
        ("ephemeral-storage", EPHEMERAL_STORAGE.to_string()),
        ("hugepages-1Gi", "0".to_string()),
        ("hugepages-2Mi", "0".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v)))
    .collect();
    for (k, v) in &opts.extended {
        resources.insert(k.clone(), Quantity(v.clone()));
    }
    let uuid = |seed: &str| {
        let h = hex_digest(&format!("{seed}/{name}"), 32);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    };
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(conditions(now, now)),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: node_ip(index).to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            boot_id: uuid(&format!("boot {now}")),
            container_runtime_version: RUNTIME_VERSION.into(),
            kernel_version: "6.1.0-rudder-sim".into(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: hex_digest(&format!("machine/{name}"), 32),
            operating_system: "linux".into(),
            os_image: "Rudder simulated node".into(),
            swap: None,
            system_uuid: uuid("system"),
        }),
        ..Default::default()
    }
}

/// How long a node's Lease is valid: upstream's 40 s, or four renewal intervals if longer.
pub(crate) fn lease_duration(interval: Duration) -> i32 {
    let four = interval.as_secs().saturating_mul(4);
    LEASE_DURATION_SECONDS.max(i32::try_from(four).unwrap_or(i32::MAX))
}

/// Node `name`'s Lease, held by itself, renewed `now`, owned by the Node (uid `node_uid`) so
/// that it goes when the Node does.
pub(crate) fn lease_object(
    name: &str,
    node_uid: &str,
    interval: Duration,
    now: Timestamp,
) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(LEASE_NAMESPACE.into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: name.into(),
                uid: node_uid.into(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.into()),
            lease_duration_seconds: Some(lease_duration(interval)),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// Whether `node` is annotated [`DEAD_ANNOTATION`]: `"true"`.
pub(crate) fn marked_dead(node: &Node) -> bool {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEAD_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// Whether `node`'s Ready condition is True (as this simulator writes it).
pub(crate) fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// One registered node.
#[derive(Debug)]
pub(crate) struct SimNode {
    /// The node's index (from [`Options::first_index`] on), from which its name and addresses
    /// come; not its position in the [`NodeTable`].
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) ip: Ipv4Addr,
    /// The Node's uid, for its Lease's owner reference.
    uid: String,
    /// Since when the node has been Ready (its conditions' transition time).
    ready_since: Mutex<Timestamp>,
    /// The Node was deleted by someone else: as a kubelet whose Node is gone, stop reporting.
    gone: AtomicBool,
    /// The Node is annotated dead: no renewals, no heartbeats, its pods left alone.
    dead: AtomicBool,
}

impl SimNode {
    /// Whether the node is marked dead (see [`marked_dead`]).
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    fn ready_since(&self) -> Timestamp {
        *self.ready_since.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_ready_since(&self, since: Timestamp) {
        *self.ready_since.lock().unwrap_or_else(|e| e.into_inner()) = since;
    }
}

/// The registered nodes, by position (0 to `nodes - 1`, whatever their indices) and by name.
#[derive(Debug)]
pub(crate) struct NodeTable {
    nodes: Vec<SimNode>,
    /// Name → position in `nodes`.
    by_name: HashMap<String, usize>,
}

impl NodeTable {
    fn new(nodes: Vec<SimNode>) -> NodeTable {
        let by_name = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        NodeTable { nodes, by_name }
    }

    /// The simulated node called `name`, if it is one of ours.
    pub(crate) fn get(&self, name: &str) -> Option<&SimNode> {
        self.by_name.get(name).map(|&i| &self.nodes[i])
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }
}

/// Registers every node ([`CONCURRENCY`] at a time); fails on the first node that cannot be.
pub(crate) async fn register_all(sim: &Sim) -> crate::Result<NodeTable> {
    let nodes: Vec<SimNode> = futures::stream::iter(sim.opts.indices())
        .map(|i| register(sim, i))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok(NodeTable::new(nodes))
}

/// Creates (or takes over) node `index`, writes its status and its Lease.
async fn register(sim: &Sim, index: usize) -> crate::Result<SimNode> {
    let context = |what: String| move |source| crate::Error::Register { what, source };
    let api: Api<Node> = Api::all(sim.client.clone());
    let desired = node_object(&sim.opts, index);
    let name = node_name(&sim.opts, index);
    let pp = PostParams::default();
    let node = loop {
        match retry("creating a node", None, || api.create(&pp, &desired)).await {
            Ok(node) => break node,
            Err(e) if is_conflict(&e) => {}
            Err(e) => return Err(context(format!("creating node {name}"))(e)),
        }
        // It exists: take it over, as a restarted kubelet does.
        let current = match retry("getting a node", None, || api.get(&name)).await {
            Ok(n) => n,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(context(format!("reading node {name}"))(e)),
        };
        let updated = take_over(current, &desired);
        match retry("updating a node", None, || {
            api.replace(&name, &pp, &updated)
        })
        .await
        {
            Ok(node) => break node,
            Err(e) if is_conflict(&e) || is_not_found(&e) => {}
            Err(e) => return Err(context(format!("taking over node {name}"))(e)),
        }
    };
    let now = Timestamp::now();
    let status = json!({"status": node_status(&sim.opts, index, now)});
    retry("writing a node's status", None, || async {
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
    })
    .await
    .map_err(context(format!("writing node {name}'s status")))?;
    let dead = marked_dead(&node);
    let uid = node.metadata.uid.unwrap_or_default();
    write_lease(sim, &name, &uid)
        .await
        .map_err(context(format!("writing node {name}'s lease")))?;
    tracing::debug!(node = %name, "registered");
    if dead {
        tracing::info!(node = %name, "the node is marked dead: no more lease renewals, heartbeats or pod updates");
    }
    Ok(SimNode {
        index,
        name,
        ip: node_ip(index),
        dead: AtomicBool::new(dead),
        uid,
        ready_since: Mutex::new(now),
        gone: AtomicBool::new(false),
    })
}

/// Creates node `name`'s Lease, or takes it over (holder, duration, owner) and renews it.
async fn write_lease(sim: &Sim, name: &str, node_uid: &str) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(sim.client.clone(), LEASE_NAMESPACE);
    let interval = sim.opts.lease_interval;
    let created = retry("creating a lease", None, || async {
        let lease = lease_object(name, node_uid, interval, Timestamp::now());
        api.create(&PostParams::default(), &lease).await
    })
    .await;
    match created {
        Err(e) if is_conflict(&e) => {
            retry("taking over a lease", None, || async {
                let lease = lease_object(name, node_uid, interval, Timestamp::now());
                api.patch(name, &PatchParams::default(), &Patch::Merge(&lease))
                    .await
            })
            .await?;
            Ok(())
        }
        r => r.map(|_| ()),
    }
}

/// Renews every node's Lease each lease interval, spread evenly over it, and refreshes each
/// node's heartbeat every [`STATUS_PERIOD`]. Runs until cancelled.
pub(crate) async fn keep_alive(sim: Arc<Sim>, nodes: Arc<NodeTable>) {
    let n = nodes.len();
    if n == 0 {
        return std::future::pending().await;
    }
    let interval = sim.opts.lease_interval;
    let (ticks, period) = schedule(n, interval);
    let rounds_per_status = rounds_per_status(interval);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    let (mut round, mut tick) = (0u64, 0usize);
    loop {
        ticker.tick().await;
        while tasks.try_join_next().is_some() {}
        let heartbeat = (round + 1) % rounds_per_status == 0;
        for i in tick * n / ticks..(tick + 1) * n / ticks {
            let node = &nodes.nodes[i];
            if node.gone.load(Ordering::Relaxed) || node.is_dead() {
                continue;
            }
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (sim, nodes, failed) = (sim.clone(), nodes.clone(), failed.clone());
            tasks.spawn(async move {
                if !renew(&sim, &nodes.nodes[i], heartbeat).await {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
            });
        }
        tick += 1;
        if tick == ticks {
            tick = 0;
            round += 1;
            let failures = failed.swap(0, Ordering::Relaxed);
            if failures > 0 {
                tracing::warn!(failures, "some lease renewals or heartbeats failed");
            }
        }
    }
}

/// How many ticks a round of renewals takes (at most one per node, at least 10 ms apart), and
/// the time between two ticks.
pub(crate) fn schedule(nodes: usize, interval: Duration) -> (usize, Duration) {
    let max_ticks = usize::try_from(interval.as_millis() / 10)
        .unwrap_or(usize::MAX)
        .max(1);
    let ticks = nodes.clamp(1, max_ticks);
    (ticks, interval / u32::try_from(ticks).unwrap_or(u32::MAX))
}

/// How many lease rounds pass between two heartbeats.
pub(crate) fn rounds_per_status(interval: Duration) -> u64 {
    let interval = interval.as_millis().max(1);
    u64::try_from(STATUS_PERIOD.as_millis().div_ceil(interval))
        .unwrap_or(1)
        .max(1)
}

/// Renews `node`'s Lease (re-creating it if it went) and, with `heartbeat`, its Ready
/// heartbeat. Gives up within one interval: the next round tries again. False on failure.
async fn renew(sim: &Sim, node: &SimNode, heartbeat: bool) -> bool {
    let interval = sim.opts.lease_interval;
    let leases: Api<Lease> = Api::namespaced(sim.client.clone(), LEASE_NAMESPACE);
    let renewed = retry("renewing a lease", Some(interval), || async {
        let patch = json!({"spec": {"renewTime": MicroTime(Timestamp::now())}});
        leases
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
    })
    .await;
    let mut ok = match renewed {
        Ok(_) => {
            Stats::add(&sim.stats.lease_renewals);
            true
        }
        Err(e) if is_not_found(&e) => recreate_lease(sim, node).await,
        Err(e) => {
            tracing::debug!(node = %node.name, error = %e, "renewing the lease failed");
            false
        }
    };
    if heartbeat && !node.gone.load(Ordering::Relaxed) {
        let nodes: Api<Node> = Api::all(sim.client.clone());
        let r = retry("refreshing a node's heartbeat", Some(interval), || async {
            let since = node.ready_since();
            let patch = json!({"status": {"conditions": conditions(since, Timestamp::now())}});
            nodes
                .patch_status(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
        })
        .await;
        match r {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => mark_gone(node),
            Err(e) => {
                tracing::debug!(node = %node.name, error = %e, "the heartbeat failed");
                ok = false;
            }
        }
    }
    if !ok {
        Stats::add(&sim.stats.errors);
    }
    ok
}

/// The Lease went: if the Node is still there, write the Lease again; if not, the node is gone.
async fn recreate_lease(sim: &Sim, node: &SimNode) -> bool {
    let nodes: Api<Node> = Api::all(sim.client.clone());
    match retry("getting a node", Some(sim.opts.lease_interval), || {
        nodes.get(&node.name)
    })
    .await
    {
        Ok(current) if current.metadata.uid.as_deref() == Some(node.uid.as_str()) => {
            match write_lease(sim, &node.name, &node.uid).await {
                Ok(()) => {
                    tracing::info!(node = %node.name, "lease re-created");
                    true
                }
                Err(e) => {
                    tracing::debug!(node = %node.name, error = %e, "re-creating the lease failed");
                    false
                }
            }
        }
        // Deleted, or deleted and created again by someone else: not ours any more.
        Ok(_) => {
            mark_gone(node);
            true
        }
        Err(e) if is_not_found(&e) => {
            mark_gone(node);
            true
        }
        Err(e) => {
            tracing::debug!(node = %node.name, error = %e, "reading the node failed");
            false
        }
    }
}

/// Follows the Node objects: the [`DEAD_ANNOTATION`] on ours (a node that revives gets its
/// lease renewed and its heartbeat posted at once, and its name sent on `revived` for its pods
/// to be handled again), a Ready condition someone else turned (a heartbeat at once, if the node
/// is alive), and deletions. Runs until cancelled.
pub(crate) async fn watch(sim: Arc<Sim>, nodes: Arc<NodeTable>, revived: UnboundedSender<String>) {
    let api: Api<Node> = Api::all(sim.client.clone());
    // All nodes: with a label selector, a node whose label someone removed would look deleted.
    let mut events =
        std::pin::pin!(watcher::watcher(api, watcher::Config::default()).default_backoff());
    let mut tasks = JoinSet::new();
    while let Some(event) = events.next().await {
        while tasks.try_join_next().is_some() {}
        let node = match event {
            Err(e) => {
                tracing::warn!(error = %e, "watching nodes failed; retrying");
                continue;
            }
            Ok(Event::Apply(node) | Event::InitApply(node)) => node,
            Ok(Event::Delete(node)) => {
                if let Some(ours) = ours(&nodes, &node) {
                    mark_gone(ours);
                }
                continue;
            }
            Ok(Event::Init | Event::InitDone) => continue,
        };
        let Some(ours) = ours(&nodes, &node) else {
            continue;
        };
        if ours.gone.load(Ordering::Relaxed) {
            continue;
        }
        let dead = marked_dead(&node);
        let was_dead = ours.dead.swap(dead, Ordering::Relaxed);
        if dead {
            if !was_dead {
                tracing::info!(node = %ours.name, "the node is marked dead: no more lease renewals, heartbeats or pod updates");
            }
            continue;
        }
        let is_ready = ready(&node);
        if !was_dead && is_ready {
            continue;
        }
        if was_dead {
            tracing::info!(node = %ours.name, "the node is alive again");
        } else {
            tracing::info!(node = %ours.name, "the node's Ready condition was changed; posting its status");
        }
        if !is_ready {
            ours.set_ready_since(Timestamp::now());
        }
        let (sim, nodes, revived) = (sim.clone(), nodes.clone(), revived.clone());
        let position = nodes.by_name[&ours.name];
        tasks.spawn(async move {
            let node = &nodes.nodes[position];
            renew(&sim, node, true).await;
            if was_dead {
                let _ = revived.send(node.name.clone());
            }
        });
    }
}

/// Our node that `node` is (same name, same uid), if any.
fn ours<'a>(nodes: &'a NodeTable, node: &Node) -> Option<&'a SimNode> {
    let ours = nodes.get(node.metadata.name.as_deref()?)?;
    (node.metadata.uid.as_deref() == Some(ours.uid.as_str())).then_some(ours)
}

fn mark_gone(node: &SimNode) {
    if !node.gone.swap(true, Ordering::Relaxed) {
        tracing::info!(
            node = %node.name,
            "the node was deleted; it is no longer renewed (restart the simulator to register it again)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::opts;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_node_object_has_the_kubelet_labels_zone_and_taints() {
        let node = node_object(&opts(), 3);
        let value = serde_json::to_value(&node).unwrap();
        assert_eq!(value["metadata"]["name"], "sim-3");
        let labels = &value["metadata"]["labels"];
        assert_eq!(labels["kubernetes.io/hostname"], "sim-3");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        assert_eq!(labels["topology.kubernetes.io/zone"], "zone-1");
        assert_eq!(labels[SIMULATED_LABEL], "true");
        assert_eq!(labels["team"], "a");
        assert_eq!(
            value["spec"]["taints"],
            json!([{"key": "dedicated", "value": "sim", "effect": "NoSchedule"}])
        );
        assert!(value.get("status").is_none());

        let mut o = opts();
        o.zones = 0;
        o.taints.clear();
        let value = serde_json::to_value(node_object(&o, 0)).unwrap();
        assert!(value["metadata"]["labels"]["topology.kubernetes.io/zone"].is_null());
        assert!(value["spec"]["taints"].is_null());
    }

    #[test]
    fn the_status_has_capacity_conditions_addresses_and_info() {
        let now = at("2025-01-02T03:04:05Z");
        let status = serde_json::to_value(node_status(&opts(), 2, now)).unwrap();
        for field in ["capacity", "allocatable"] {
            let r = &status[field];
            assert_eq!(r["cpu"], "4");
            assert_eq!(r["memory"], "16Gi");
            assert_eq!(r["pods"], "110");
            assert_eq!(r["ephemeral-storage"], "100Gi");
            assert_eq!(r["example.com/gpu"], "2");
        }
        let conditions = status["conditions"].as_array().unwrap();
        let types: Vec<&str> = conditions
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
        let ready = &conditions[3];
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["reason"], "KubeletReady");
        assert_eq!(ready["message"], "kubelet is posting ready status");
        assert_eq!(ready["lastHeartbeatTime"], "2025-01-02T03:04:05Z");
        assert_eq!(ready["lastTransitionTime"], "2025-01-02T03:04:05Z");
        assert_eq!(conditions[0]["status"], "False");
        assert_eq!(conditions[0]["reason"], "KubeletHasSufficientMemory");
        assert_eq!(
            status["addresses"],
            json!([
                {"type": "InternalIP", "address": "10.200.0.3"},
                {"type": "Hostname", "address": "sim-2"},
            ])
        );
        let info = &status["nodeInfo"];
        assert_eq!(info["kubeletVersion"], KUBELET_VERSION);
        assert_eq!(info["containerRuntimeVersion"], RUNTIME_VERSION);
        assert_eq!(info["operatingSystem"], "linux");
        assert_eq!(info["architecture"], "amd64");
        for field in [
            "machineID",
            "systemUUID",
            "bootID",
            "osImage",
            "kernelVersion",
        ] {
            assert!(!info[field].as_str().unwrap().is_empty(), "{field}");
        }
        assert_ne!(
            node_status(&opts(), 1, now).node_info.unwrap().system_uuid,
            info["systemUUID"]
        );
        assert_eq!(status["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
    }

    #[test]
    fn heartbeats_keep_the_transition_time() {
        let since = at("2025-01-01T00:00:00Z");
        let now = at("2025-01-01T00:05:00Z");
        for c in conditions(since, now) {
            assert_eq!(c.last_transition_time, Some(Time(since)));
            assert_eq!(c.last_heartbeat_time, Some(Time(now)));
        }
    }

    #[test]
    fn addresses_are_distinct_per_node() {
        let mut nodes = std::collections::HashSet::new();
        let mut blocks = std::collections::HashSet::new();
        for i in 0..crate::MAX_NODES {
            let ip = node_ip(i);
            assert_ne!(ip.octets()[3], 0);
            assert!(nodes.insert(ip), "node {i}: {ip}");
            let block = pod_block(i);
            assert_eq!(block.octets()[3], 0);
            assert!(blocks.insert(block), "node {i}: {block}");
            assert!(block.octets()[1] < 128, "inside 10.64.0.0/10");
        }
        assert_eq!(node_ip(0), Ipv4Addr::new(10, 200, 0, 1));
        assert_eq!(pod_block(1), Ipv4Addr::new(10, 64, 1, 0));
    }

    #[test]
    fn the_first_index_shifts_names_zones_and_addresses() {
        let mut o = opts();
        o.name_prefix = "b-".into();
        o.first_index = 100;
        o.check().unwrap();
        let indices: Vec<usize> = o.indices().collect();
        assert_eq!(indices, [100, 101, 102]);
        let node = serde_json::to_value(node_object(&o, 101)).unwrap();
        assert_eq!(node["metadata"]["name"], "b-101");
        assert_eq!(
            node["metadata"]["labels"]["kubernetes.io/hostname"],
            "b-101"
        );
        assert_eq!(
            node["metadata"]["labels"]["topology.kubernetes.io/zone"],
            "zone-1"
        );
        let status =
            serde_json::to_value(node_status(&o, 101, at("2025-01-01T00:00:00Z"))).unwrap();
        assert_eq!(
            status["addresses"],
            json!([
                {"type": "InternalIP", "address": "10.200.0.102"},
                {"type": "Hostname", "address": "b-101"},
            ])
        );
        assert_eq!(pod_block(101), Ipv4Addr::new(10, 64, 101, 0));

        // Two processes with disjoint ranges: no address in common, whatever their prefixes.
        let mut a = opts();
        a.name_prefix = "a-".into();
        a.nodes = 100;
        let mut b = a.clone();
        b.name_prefix = "b-".into();
        b.first_index = 100;
        let addresses = |o: &Options| -> std::collections::HashSet<(Ipv4Addr, Ipv4Addr)> {
            o.indices().map(|i| (node_ip(i), pod_block(i))).collect()
        };
        let (a, b) = (addresses(&a), addresses(&b));
        assert_eq!((a.len(), b.len()), (100, 100));
        for (node, block) in &a {
            assert!(b.iter().all(|(n, p)| n != node && p != block));
        }
    }

    #[test]
    fn the_last_index_has_addresses_in_range() {
        let last = crate::MAX_NODES - 1;
        assert_eq!(node_ip(last), Ipv4Addr::new(10, 200, 65, 134));
        assert_eq!(pod_block(last), Ipv4Addr::new(10, 127, 255, 0));
    }

    #[test]
    fn taking_over_keeps_what_others_set() {
        let desired = node_object(&opts(), 0);
        let mut current = Node {
            metadata: ObjectMeta {
                name: Some("sim-0".into()),
                resource_version: Some("7".into()),
                labels: Some(BTreeMap::from([
                    ("team".to_string(), "old".to_string()),
                    ("keep".to_string(), "me".to_string()),
                ])),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                unschedulable: Some(true),
                taints: Some(vec![
                    Taint {
                        key: "dedicated".into(),
                        value: Some("old".into()),
                        effect: "NoSchedule".into(),
                        time_added: None,
                    },
                    Taint {
                        key: "node.kubernetes.io/not-ready".into(),
                        value: None,
                        effect: "NoExecute".into(),
                        time_added: None,
                    },
                ]),
                ..Default::default()
            }),
            status: None,
        };
        current = take_over(current, &desired);
        let labels = current.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "a");
        assert_eq!(labels["keep"], "me");
        assert_eq!(labels[SIMULATED_LABEL], "true");
        assert_eq!(current.metadata.resource_version.as_deref(), Some("7"));
        let spec = current.spec.unwrap();
        assert_eq!(spec.unschedulable, Some(true));
        let taints: Vec<(String, Option<String>)> = spec
            .taints
            .unwrap()
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect();
        assert_eq!(
            taints,
            [
                ("dedicated".to_string(), Some("sim".to_string())),
                ("node.kubernetes.io/not-ready".to_string(), None),
            ]
        );
    }

    #[test]
    fn only_a_true_annotation_marks_a_node_dead() {
        let mut node = node_object(&opts(), 0);
        assert!(!marked_dead(&node));
        for (value, dead) in [
            ("true", true),
            ("false", false),
            ("yes", false),
            ("", false),
        ] {
            node.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(DEAD_ANNOTATION.into(), value.into());
            assert_eq!(marked_dead(&node), dead, "{value:?}");
        }
    }

    #[test]
    fn a_ready_node_is_one_whose_ready_condition_is_true() {
        let now = at("2025-01-01T00:00:00Z");
        let mut node = node_object(&opts(), 0);
        assert!(!ready(&node), "no status yet");
        node.status = Some(node_status(&opts(), 0, now));
        assert!(ready(&node));
        let conditions = node.status.as_mut().unwrap().conditions.as_mut().unwrap();
        conditions
            .iter_mut()
            .for_each(|c| c.status = "Unknown".into());
        assert!(!ready(&node), "as a node-lifecycle controller leaves it");
    }

    #[test]
    fn the_lease_is_held_by_and_owned_by_the_node() {
        let now = at("2025-01-02T03:04:05.123456Z");
        let lease = serde_json::to_value(lease_object("sim-0", "u1", Duration::from_secs(10), now))
            .unwrap();
        assert_eq!(lease["metadata"]["namespace"], LEASE_NAMESPACE);
        assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
        assert_eq!(lease["metadata"]["ownerReferences"][0]["uid"], "u1");
        assert_eq!(lease["spec"]["holderIdentity"], "sim-0");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
        assert_eq!(lease["spec"]["renewTime"], "2025-01-02T03:04:05.123456Z");
        assert_eq!(lease_duration(Duration::from_secs(60)), 240);
    }

    #[test]
    fn renewals_are_spread_over_the_interval() {
        // Few nodes: one tick per node.
        assert_eq!(
            schedule(3, Duration::from_secs(1)),
            (
                3,
                Duration::from_millis(333) + Duration::from_nanos(333_333)
            )
        );
        // Many nodes: ticks 10 ms apart, several nodes per tick.
        assert_eq!(
            schedule(5000, Duration::from_secs(10)),
            (1000, Duration::from_millis(10))
        );
        assert_eq!(schedule(0, Duration::from_secs(1)).0, 1);
        assert_eq!(rounds_per_status(Duration::from_secs(10)), 6);
        assert_eq!(rounds_per_status(Duration::from_secs(1)), 60);
        assert_eq!(rounds_per_status(Duration::from_secs(300)), 1);
    }
}
