//! The pods bound to simulated nodes, handled as a kubelet would, with no containers:
//!
//! - a pod not yet Running is made Running through its `status` subresource: a pod IP from its
//!   node's /24 (or the node's IP with `hostNetwork`), the five kubelet conditions True, a
//!   running status for each container (init containers completed, sidecars running);
//! - a Running pod whose containers no longer match its spec (an image changed, an ephemeral
//!   container added) gets its container statuses brought in line, as a restart would;
//! - a pod marked for graceful deletion is finished: deleted with grace period 0 and a uid
//!   precondition;
//! - pods that Succeeded or Failed are left alone; nothing ever completes by itself.
//!
//! One watch (`spec.nodeName!=`) feeds one loop that decides ([`running_status`], [`Ipam`],
//! both pure) and hands each API call to a task; at most [`CONCURRENCY`] are in flight. Status
//! writes carry the resourceVersion they were computed from: if the pod changed meanwhile, the
//! write fails with a conflict and the watch's next event is handled instead.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::nodes::{NodeTable, SimNode, pod_block};
use crate::retry::{is_conflict, is_not_found, retry};
use crate::{Sim, Stats, hex_digest};

/// API calls about pods in flight at once.
pub(crate) const CONCURRENCY: usize = 64;

/// The conditions a kubelet sets on a running pod, in upstream's order.
const CONDITIONS: [&str; 5] = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
];

/// The lowest and highest host numbers handed out in a node's /24 (.1 is the node's bridge in
/// upstream's usual CNI set-ups; .255 the broadcast address).
const FIRST_HOST: u8 = 2;
const LAST_HOST: u8 = 254;

/// Pod IPs: each node's /24 ([`pod_block`]), handed out round-robin (as upstream's host-local
/// IPAM does, so an address is not reused at once), and who holds which.
#[derive(Debug, Default)]
pub(crate) struct Ipam {
    blocks: HashMap<usize, Block>,
    /// Pod uid → (node index, host number).
    owners: HashMap<String, (usize, u8)>,
}

#[derive(Debug)]
struct Block {
    used: [u64; 4],
    next: u8,
}

impl Block {
    fn new() -> Block {
        Block {
            used: [0; 4],
            next: FIRST_HOST,
        }
    }

    fn is_used(&self, host: u8) -> bool {
        self.used[usize::from(host / 64)] & (1 << (host % 64)) != 0
    }

    fn set(&mut self, host: u8, used: bool) {
        let (word, bit) = (usize::from(host / 64), 1u64 << (host % 64));
        if used {
            self.used[word] |= bit;
        } else {
            self.used[word] &= !bit;
        }
    }
}

fn address(node: usize, host: u8) -> Ipv4Addr {
    let [a, b, c, _] = pod_block(node).octets();
    Ipv4Addr::new(a, b, c, host)
}

impl Ipam {
    /// The address of pod `uid` on node `node`: the one it holds, or a free one (None when the
    /// node's block is full).
    pub(crate) fn assign(&mut self, node: usize, uid: &str) -> Option<Ipv4Addr> {
        match self.owners.get(uid) {
            Some(&(n, host)) if n == node => return Some(address(node, host)),
            Some(_) => self.release(uid),
            None => {}
        }
        let block = self.blocks.entry(node).or_insert_with(Block::new);
        let count = u16::from(LAST_HOST - FIRST_HOST) + 1;
        for k in 0..count {
            let offset = (u16::from(block.next - FIRST_HOST) + k) % count;
            let host = FIRST_HOST + offset as u8;
            if !block.is_used(host) {
                block.set(host, true);
                block.next = if host == LAST_HOST {
                    FIRST_HOST
                } else {
                    host + 1
                };
                self.owners.insert(uid.to_string(), (node, host));
                return Some(address(node, host));
            }
        }
        None
    }

    /// Records that pod `uid` on node `node` holds `ip` (seen on a running pod, e.g. after a
    /// restart of the simulator). Addresses outside the node's block, or held by another pod,
    /// are not recorded.
    pub(crate) fn reserve(&mut self, node: usize, uid: &str, ip: Ipv4Addr) {
        let [a, b, c, host] = ip.octets();
        if [a, b, c] != pod_block(node).octets()[..3] || !(FIRST_HOST..=LAST_HOST).contains(&host) {
            return;
        }
        if self.owners.get(uid) == Some(&(node, host)) {
            return;
        }
        let block = self.blocks.entry(node).or_insert_with(Block::new);
        if block.is_used(host) {
            return;
        }
        block.set(host, true);
        self.release(uid);
        self.owners.insert(uid.to_string(), (node, host));
    }

    /// Frees pod `uid`'s address, if it holds one.
    pub(crate) fn release(&mut self, uid: &str) {
        if let Some((node, host)) = self.owners.remove(uid)
            && let Some(block) = self.blocks.get_mut(&node)
        {
            block.set(host, false);
        }
    }

    /// Frees the addresses of every pod not in `live`.
    pub(crate) fn retain(&mut self, live: &HashSet<&str>) {
        let dead: Vec<String> = self
            .owners
            .keys()
            .filter(|uid| !live.contains(uid.as_str()))
            .cloned()
            .collect();
        for uid in dead {
            self.release(&uid);
        }
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Marked for graceful deletion.
pub(crate) fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Succeeded or Failed: a kubelet leaves such a pod alone.
pub(crate) fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn pod_ip(pod: &Pod) -> Option<Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// Whether a pod's status already says what [`running_status`] would: Running, with an IP and
/// one status per container of the spec, for that container's image.
pub(crate) fn in_sync(pod: &Pod) -> bool {
    let (Some(spec), Some(status)) = (&pod.spec, &pod.status) else {
        return false;
    };
    let matches = |containers: &[Container], statuses: &Option<Vec<ContainerStatus>>| {
        let statuses = statuses.as_deref().unwrap_or_default();
        containers.len() == statuses.len()
            && containers.iter().all(|c| {
                statuses
                    .iter()
                    .any(|s| s.name == c.name && Some(&s.image) == c.image.as_ref())
            })
    };
    let ephemeral = spec.ephemeral_containers.as_deref().unwrap_or_default();
    let ephemeral_statuses = status
        .ephemeral_container_statuses
        .as_deref()
        .unwrap_or_default();
    status.phase.as_deref() == Some("Running")
        && pod_ip(pod).is_some()
        && matches(&spec.containers, &status.container_statuses)
        && matches(
            spec.init_containers.as_deref().unwrap_or_default(),
            &status.init_container_statuses,
        )
        && ephemeral.len() == ephemeral_statuses.len()
        && ephemeral
            .iter()
            .all(|c| ephemeral_statuses.iter().any(|s| s.name == c.name))
}

/// The container ID of container `name` of pod `uid` after `restarts` restarts.
fn container_id(uid: &str, name: &str, restarts: i32) -> String {
    let scheme = crate::nodes::RUNTIME_VERSION
        .split("://")
        .next()
        .unwrap_or("rudder-sim");
    if restarts == 0 {
        format!("{scheme}://{uid}-{name}")
    } else {
        format!("{scheme}://{uid}-{name}-{restarts}")
    }
}

/// A made-up but stable image ID: the image with a digest derived from its name.
fn image_id(image: &str) -> String {
    let repo = image.split('@').next().unwrap_or(image);
    format!("{repo}@sha256:{}", hex_digest(image, 64))
}

/// How a container runs: running and ready, completed (an init container that is not a
/// sidecar), or running and never ready (an ephemeral container).
enum Run {
    Running,
    Completed,
    /// An ephemeral container: running, never ready.
    Ephemeral,
}

/// The status of `container`, given its previous status: kept as it was if it already ran
/// this image, otherwise started `now` (counting a restart if it ran before).
fn container_status(
    uid: &str,
    container: &Container,
    previous: Option<&ContainerStatus>,
    run: Run,
    now: Timestamp,
) -> ContainerStatus {
    let image = container.image.clone().unwrap_or_default();
    let (restarts, since, last_state) = match previous {
        Some(p) if p.image == image => (p.restart_count, None, p.last_state.clone()),
        Some(p) => (
            p.restart_count + 1,
            Some(now),
            Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 0,
                    reason: Some("Completed".into()),
                    container_id: p.container_id.clone(),
                    started_at: p
                        .state
                        .as_ref()
                        .and_then(|s| s.running.as_ref())
                        .and_then(|r| r.started_at.clone()),
                    finished_at: Some(Time(now)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        ),
        None => (0, None, None),
    };
    let previous_start = previous
        .filter(|p| p.image == image)
        .and_then(|p| p.state.as_ref())
        .and_then(|s| {
            s.running
                .as_ref()
                .and_then(|r| r.started_at.clone())
                .or_else(|| s.terminated.as_ref().and_then(|t| t.started_at.clone()))
        });
    let started_at = since.map(Time).or(previous_start).unwrap_or(Time(now));
    let id = container_id(uid, &container.name, restarts);
    let (state, ready, started) = match run {
        Run::Running => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(started_at),
                }),
                ..Default::default()
            },
            true,
            true,
        ),
        Run::Ephemeral => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(started_at),
                }),
                ..Default::default()
            },
            false,
            true,
        ),
        Run::Completed => (
            ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 0,
                    reason: Some("Completed".into()),
                    container_id: Some(id.clone()),
                    started_at: Some(started_at.clone()),
                    finished_at: Some(started_at),
                    ..Default::default()
                }),
                ..Default::default()
            },
            true,
            false,
        ),
    };
    ContainerStatus {
        name: container.name.clone(),
        image_id: image_id(&image),
        image,
        container_id: Some(id),
        ready,
        started: Some(started),
        restart_count: restarts,
        state: Some(state),
        last_state,
        ..Default::default()
    }
}

/// The status a kubelet reports for `pod` once it runs on a node at `host_ip` with address
/// `pod_ip`: phase Running, the five conditions True (transition times kept for those that
/// already were), a status per container; the start time and containers that already ran
/// their image keep theirs. Fields not written here (qosClass, other conditions) are kept.
pub(crate) fn running_status(
    pod: &Pod,
    host_ip: Ipv4Addr,
    pod_ip: Ipv4Addr,
    now: Timestamp,
) -> PodStatus {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let start = old.start_time.as_ref().map(|t| t.0).unwrap_or(now);
    let spec = pod.spec.clone().unwrap_or_default();
    let old_conditions = old.conditions.unwrap_or_default();
    let mut conditions: Vec<PodCondition> = CONDITIONS
        .iter()
        .map(|&type_| {
            let since = old_conditions
                .iter()
                .find(|c| c.type_ == type_ && c.status == "True")
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            PodCondition {
                type_: type_.into(),
                status: "True".into(),
                last_transition_time: Some(since),
                ..Default::default()
            }
        })
        .collect();
    conditions.extend(
        old_conditions
            .into_iter()
            .filter(|c| !CONDITIONS.contains(&c.type_.as_str())),
    );
    let statuses = |containers: &[Container],
                    old: &Option<Vec<ContainerStatus>>,
                    run: &dyn Fn(&Container) -> Run| {
        let old = old.as_deref().unwrap_or_default();
        let list: Vec<ContainerStatus> = containers
            .iter()
            .map(|c| {
                let previous = old.iter().find(|s| s.name == c.name);
                container_status(uid, c, previous, run(c), now)
            })
            .collect();
        (!list.is_empty()).then_some(list)
    };
    let containers = statuses(&spec.containers, &old.container_statuses, &|_| Run::Running);
    let init = statuses(
        spec.init_containers.as_deref().unwrap_or_default(),
        &old.init_container_statuses,
        &|c| {
            if c.restart_policy.as_deref() == Some("Always") {
                Run::Running
            } else {
                Run::Completed
            }
        },
    );
    let ephemeral: Vec<Container> = spec
        .ephemeral_containers
        .unwrap_or_default()
        .into_iter()
        .map(|e| Container {
            name: e.name,
            image: e.image,
            ..Default::default()
        })
        .collect();
    let ephemeral = statuses(&ephemeral, &old.ephemeral_container_statuses, &|_| {
        Run::Ephemeral
    });
    PodStatus {
        phase: Some("Running".into()),
        conditions: Some(conditions),
        host_ip: Some(host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: host_ip.to_string(),
        }]),
        pod_ip: Some(pod_ip.to_string()),
        pod_ips: Some(vec![PodIP {
            ip: pod_ip.to_string(),
        }]),
        start_time: Some(Time(start)),
        container_statuses: containers,
        init_container_statuses: init,
        ephemeral_container_statuses: ephemeral,
        ..Default::default()
    }
}

/// `namespace/name` of a pod, for logs.
fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The pod loop's state.
struct Kubelet {
    sim: Arc<Sim>,
    nodes: Arc<NodeTable>,
    ipam: Ipam,
    tasks: JoinSet<()>,
    permits: Arc<Semaphore>,
}

/// Watches the pods bound to any node and handles those on ours. Runs until cancelled.
pub(crate) async fn run(sim: Arc<Sim>, nodes: Arc<NodeTable>) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::all(sim.client.clone());
    let config = watcher::Config::default().fields("spec.nodeName!=");
    let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
    let mut kubelet = Kubelet {
        sim,
        nodes,
        ipam: Ipam::default(),
        tasks: JoinSet::new(),
        permits: Arc::new(Semaphore::new(CONCURRENCY)),
    };
    let mut listed: Vec<Pod> = Vec::new();
    while let Some(event) = events.next().await {
        while kubelet.tasks.try_join_next().is_some() {}
        match event {
            Err(e) => tracing::warn!(error = %e, "watching pods failed; retrying"),
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(pod)) => listed.push(pod),
            Ok(Event::InitDone) => kubelet.resync(std::mem::take(&mut listed)).await,
            Ok(Event::Apply(pod)) => {
                kubelet.observe(&pod);
                kubelet.handle(pod).await;
            }
            Ok(Event::Delete(pod)) => {
                if let Some(uid) = &pod.metadata.uid {
                    kubelet.ipam.release(uid);
                }
            }
        }
    }
    anyhow::bail!("the pod watch ended")
}

impl Kubelet {
    /// Our node for `pod`, if it is bound to one of ours.
    fn node_of(&self, pod: &Pod) -> Option<&SimNode> {
        let name = pod.spec.as_ref()?.node_name.as_deref()?;
        self.nodes.get(name)
    }

    /// After a (re-)list: forget the pods that went, record the addresses running pods hold,
    /// then handle every pod.
    async fn resync(&mut self, pods: Vec<Pod>) {
        let live: HashSet<&str> = pods
            .iter()
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        self.ipam.retain(&live);
        for pod in &pods {
            self.observe(pod);
        }
        tracing::debug!(pods = pods.len(), "pods bound to nodes listed");
        for pod in pods {
            self.handle(pod).await;
        }
    }

    /// Keeps the address book in line with what a pod's status says.
    fn observe(&mut self, pod: &Pod) {
        let (Some(node), Some(uid)) = (self.node_of(pod), pod.metadata.uid.as_deref()) else {
            return;
        };
        let node = node.index;
        if is_finished(pod) {
            self.ipam.release(uid);
        } else if !host_network(pod)
            && let Some(ip) = pod_ip(pod)
        {
            self.ipam.reserve(node, uid, ip);
        }
    }

    /// Does what a kubelet would for `pod`, if it is ours.
    async fn handle(&mut self, pod: Pod) {
        let Some(node) = self.node_of(&pod) else {
            return;
        };
        let (index, host_ip, node_name) = (node.index, node.ip, node.name.clone());
        let (Some(name), Some(namespace), Some(uid)) = (
            pod.metadata.name.clone(),
            pod.metadata.namespace.clone(),
            pod.metadata.uid.clone(),
        ) else {
            return;
        };
        let api: Api<Pod> = Api::namespaced(self.sim.client.clone(), &namespace);
        let sim = self.sim.clone();
        if is_terminating(&pod) {
            self.spawn(finish(sim, api, name, uid)).await;
            return;
        }
        if is_finished(&pod) || in_sync(&pod) {
            return;
        }
        let ip = if host_network(&pod) {
            host_ip
        } else if let Some(ip) = pod_ip(&pod).filter(|_| phase(&pod) == "Running") {
            // Running already: its address stays.
            ip
        } else {
            match self.ipam.assign(index, &uid) {
                Some(ip) => ip,
                None => {
                    tracing::warn!(pod = %key(&pod), node = %node_name, "no pod IP left on the node; the pod stays Pending");
                    return;
                }
            }
        };
        let status = running_status(&pod, host_ip, ip, Timestamp::now());
        let rv = pod.metadata.resource_version.clone();
        let patch = json!({
            "metadata": {"uid": uid, "resourceVersion": rv},
            "status": status,
        });
        self.spawn(start(sim, api, name, patch)).await;
    }

    /// Runs `call` as a task once one of the [`CONCURRENCY`] slots is free.
    async fn spawn(&mut self, call: impl Future<Output = ()> + Send + 'static) {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        self.tasks.spawn(async move {
            call.await;
            drop(permit);
        });
    }
}

/// Writes a pod's running status (`patch`, with its preconditions).
async fn start(sim: Arc<Sim>, api: Api<Pod>, name: String, patch: serde_json::Value) {
    let r = retry("updating a pod's status", None, || async {
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
    })
    .await;
    let ns = api.namespace().unwrap_or_default();
    match r {
        Ok(_) => {
            Stats::add(&sim.stats.pods_started);
            tracing::debug!(pod = %format!("{ns}/{name}"), ip = patch["status"]["podIP"].as_str().unwrap_or_default(), "pod running");
        }
        // Gone, or changed since: the watch brings what to do next.
        Err(e) if is_not_found(&e) || is_conflict(&e) => {
            tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "pod status not written");
        }
        Err(e) => {
            Stats::add(&sim.stats.errors);
            tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "writing the pod's status failed");
        }
    }
}

/// Finishes a graceful deletion: the containers are "stopped", the pod goes at once.
async fn finish(sim: Arc<Sim>, api: Api<Pod>, name: String, uid: String) {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    let r = retry("deleting a pod", None, || api.delete(&name, &params)).await;
    let ns = api.namespace().unwrap_or_default();
    match r {
        Ok(_) => {
            Stats::add(&sim.stats.pods_finished);
            tracing::debug!(pod = %format!("{ns}/{name}"), "pod deleted");
        }
        // Already gone, or another pod of that name now.
        Err(e) if is_not_found(&e) || is_conflict(&e) => {}
        Err(e) => {
            Stats::add(&sim.stats.errors);
            tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "deleting the pod failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn pod(yaml: serde_json::Value) -> Pod {
        serde_json::from_value(yaml).unwrap()
    }

    fn web() -> Pod {
        pod(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "resourceVersion": "5"},
            "spec": {
                "nodeName": "sim-1",
                "containers": [
                    {"name": "nginx", "image": "nginx:1.25"},
                    {"name": "log", "image": "busybox"},
                ],
            },
            "status": {
                "phase": "Pending",
                "qosClass": "BestEffort",
                "conditions": [{
                    "type": "PodScheduled", "status": "True",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                }],
            },
        }))
    }

    const HOST: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
    const IP: Ipv4Addr = Ipv4Addr::new(10, 64, 1, 2);

    #[test]
    fn a_pending_pod_becomes_running_with_ready_containers() {
        let now = at("2025-01-01T00:00:05Z");
        let p = web();
        assert!(!in_sync(&p));
        let status = running_status(&p, HOST, IP, now);
        let v = serde_json::to_value(&status).unwrap();
        assert_eq!(v["phase"], "Running");
        assert_eq!(v["hostIP"], "10.200.0.2");
        assert_eq!(v["hostIPs"], json!([{"ip": "10.200.0.2"}]));
        assert_eq!(v["podIP"], "10.64.1.2");
        assert_eq!(v["podIPs"], json!([{"ip": "10.64.1.2"}]));
        assert_eq!(v["startTime"], "2025-01-01T00:00:05Z");
        assert!(v.get("qosClass").is_none(), "left as it is");
        let conditions = v["conditions"].as_array().unwrap();
        let types: Vec<&str> = conditions
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, CONDITIONS);
        for c in conditions {
            assert_eq!(c["status"], "True");
            let since = if c["type"] == "PodScheduled" {
                "2025-01-01T00:00:00Z"
            } else {
                "2025-01-01T00:00:05Z"
            };
            assert_eq!(c["lastTransitionTime"], since, "{c}");
        }
        let nginx = &v["containerStatuses"][0];
        assert_eq!(nginx["name"], "nginx");
        assert_eq!(nginx["image"], "nginx:1.25");
        assert!(
            nginx["imageID"]
                .as_str()
                .unwrap()
                .starts_with("nginx:1.25@sha256:")
        );
        assert_eq!(nginx["containerID"], "rudder-sim://u1-nginx");
        assert_eq!(nginx["ready"], true);
        assert_eq!(nginx["started"], true);
        assert_eq!(nginx["restartCount"], 0);
        assert_eq!(
            nginx["state"],
            json!({"running": {"startedAt": "2025-01-01T00:00:05Z"}})
        );
        assert_eq!(v["containerStatuses"][1]["name"], "log");
        assert!(v.get("initContainerStatuses").is_none());

        // Once written, the pod is in sync and nothing more is done.
        let mut running = p.clone();
        running.status = Some(status);
        assert!(in_sync(&running));
        let again = running_status(&running, HOST, IP, at("2025-01-01T00:09:00Z"));
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            v,
            "a second computation changes nothing"
        );
    }

    #[test]
    fn init_containers_complete_and_sidecars_run() {
        let mut p = web();
        p.spec.as_mut().unwrap().init_containers = Some(
            serde_json::from_value(json!([
                {"name": "setup", "image": "busybox"},
                {"name": "proxy", "image": "envoy", "restartPolicy": "Always"},
            ]))
            .unwrap(),
        );
        let now = at("2025-01-01T00:00:05Z");
        let v = serde_json::to_value(running_status(&p, HOST, IP, now)).unwrap();
        let init = &v["initContainerStatuses"];
        assert_eq!(init[0]["state"]["terminated"]["reason"], "Completed");
        assert_eq!(init[0]["state"]["terminated"]["exitCode"], 0);
        assert_eq!(init[0]["ready"], true);
        assert_eq!(init[0]["started"], false);
        assert!(init[1]["state"]["running"].is_object());
        assert_eq!(init[1]["ready"], true);
    }

    #[test]
    fn a_changed_image_restarts_the_container() {
        let mut p = web();
        p.status = Some(running_status(&p, HOST, IP, at("2025-01-01T00:00:05Z")));
        p.spec.as_mut().unwrap().containers[0].image = Some("nginx:1.26".into());
        assert!(!in_sync(&p));
        let later = at("2025-01-01T01:00:00Z");
        let v = serde_json::to_value(running_status(&p, HOST, IP, later)).unwrap();
        let nginx = &v["containerStatuses"][0];
        assert_eq!(nginx["image"], "nginx:1.26");
        assert_eq!(nginx["restartCount"], 1);
        assert_eq!(nginx["containerID"], "rudder-sim://u1-nginx-1");
        assert_eq!(
            nginx["state"]["running"]["startedAt"],
            "2025-01-01T01:00:00Z"
        );
        assert_eq!(
            nginx["lastState"]["terminated"]["startedAt"],
            "2025-01-01T00:00:05Z"
        );
        let log = &v["containerStatuses"][1];
        assert_eq!(log["restartCount"], 0);
        assert_eq!(log["state"]["running"]["startedAt"], "2025-01-01T00:00:05Z");
        assert_eq!(v["startTime"], "2025-01-01T00:00:05Z");
    }

    #[test]
    fn ephemeral_containers_get_a_status() {
        let mut p = web();
        p.status = Some(running_status(&p, HOST, IP, at("2025-01-01T00:00:05Z")));
        p.spec.as_mut().unwrap().ephemeral_containers = Some(
            serde_json::from_value(json!([{"name": "debugger", "image": "busybox"}])).unwrap(),
        );
        assert!(!in_sync(&p));
        p.status = Some(running_status(&p, HOST, IP, at("2025-01-01T00:01:00Z")));
        assert!(in_sync(&p));
        let e = &p
            .status
            .as_ref()
            .unwrap()
            .ephemeral_container_statuses
            .as_ref()
            .unwrap()[0];
        assert_eq!(e.name, "debugger");
        assert!(!e.ready);
    }

    #[test]
    fn finished_and_terminating_pods_are_recognised() {
        let mut p = web();
        assert!(!is_finished(&p) && !is_terminating(&p));
        p.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(is_finished(&p));
        p.metadata.deletion_timestamp = Some(Time(at("2025-01-01T00:00:00Z")));
        assert!(is_terminating(&p));
    }

    #[test]
    fn pod_ips_come_from_the_nodes_block_round_robin() {
        let mut ipam = Ipam::default();
        assert_eq!(ipam.assign(1, "a"), Some(Ipv4Addr::new(10, 64, 1, 2)));
        assert_eq!(ipam.assign(1, "a"), Some(Ipv4Addr::new(10, 64, 1, 2)));
        assert_eq!(ipam.assign(1, "b"), Some(Ipv4Addr::new(10, 64, 1, 3)));
        assert_eq!(ipam.assign(300, "c"), Some(Ipv4Addr::new(10, 65, 44, 2)));
        ipam.release("a");
        // Not reused at once.
        assert_eq!(ipam.assign(1, "d"), Some(Ipv4Addr::new(10, 64, 1, 4)));
        // A running pod's address is recorded and skipped.
        ipam.reserve(1, "e", Ipv4Addr::new(10, 64, 1, 5));
        assert_eq!(ipam.assign(1, "f"), Some(Ipv4Addr::new(10, 64, 1, 6)));
        // Foreign or taken addresses are not recorded.
        ipam.reserve(1, "g", Ipv4Addr::new(10, 64, 1, 5));
        ipam.reserve(1, "h", Ipv4Addr::new(192, 168, 0, 1));
        assert!(!ipam.owners.contains_key("g") && !ipam.owners.contains_key("h"));
        // Pods that went free their addresses.
        ipam.retain(&HashSet::from(["b", "c"]));
        assert_eq!(ipam.owners.len(), 2);
    }

    #[test]
    fn a_full_block_hands_out_nothing_until_an_address_frees() {
        let mut ipam = Ipam::default();
        let count = usize::from(LAST_HOST - FIRST_HOST) + 1;
        let mut seen = HashSet::new();
        for i in 0..count {
            let ip = ipam.assign(0, &format!("p{i}")).unwrap();
            assert!(seen.insert(ip), "{ip} twice");
        }
        assert_eq!(ipam.assign(0, "extra"), None);
        ipam.release("p7");
        assert_eq!(ipam.assign(0, "extra"), Some(Ipv4Addr::new(10, 64, 0, 9)));
    }
}
