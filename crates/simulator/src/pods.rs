//! The pods bound to simulated nodes, handled as a kubelet would, with no containers:
//!
//! - a pod not yet Running is made Running through its `status` subresource: a pod IP from its
//!   node's /24 (or the node's IP with `hostNetwork`), the five kubelet conditions True, a
//!   running status for each container (init containers completed, sidecars running);
//! - its regular containers then live by the pod's [`Life`] ([`life`]: the annotations, the
//!   [`Behaviour`] for Job pods and others): each exits when its time is up, then stays
//!   terminated or is restarted after a back-off by the pod's restart policy; once all have
//!   exited for good the pod is Succeeded or Failed (see the crate's documentation);
//! - a Running pod whose containers no longer match its spec (an image changed, an ephemeral
//!   container added) gets its container statuses brought in line, as a restart would;
//! - a pod marked for graceful deletion is finished: deleted with grace period 0 and a uid
//!   precondition;
//! - pods that Succeeded or Failed are left alone, and so are all the pods of a node marked
//!   dead, until it revives.
//!
//! One watch (`spec.nodeName!=`) feeds one loop that decides ([`pod_status`], [`next_change`],
//! [`Ipam`], all pure), keeps [`Timers`] for the pods whose containers change at a known time,
//! and hands each API call to a task; at most [`CONCURRENCY`] are in flight. Status writes
//! carry the resourceVersion they were computed from: if the pod changed meanwhile, the write
//! fails with a conflict and the watch's next event is handled instead. Each write moves the
//! pod one step (started; a container exited, backed off or restarted; completed), and the
//! watch event it causes brings the next.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;

use crate::nodes::{NodeTable, SimNode, pod_block};
use crate::retry::{is_conflict, is_not_found, retry};
use crate::{
    Behaviour, DURATION_ANNOTATION, EXIT_CODE_ANNOTATION, Sim, Stats, hex_digest, parse_duration,
};

/// API calls about pods in flight at once.
pub(crate) const CONCURRENCY: usize = 64;

/// The waiting reason of a container between an exit and its restart.
const CRASH_LOOP: &str = "CrashLoopBackOff";
/// The first restart back-off (upstream: 10 s).
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The longest restart back-off (upstream: 5 minutes).
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The lowest and highest host numbers handed out in a node's /24 (.1 is the node's bridge in
/// upstream's usual CNI set-ups; .255 the broadcast address).
const FIRST_HOST: u8 = 2;
const LAST_HOST: u8 = 254;

/// Pod IPs: each node's /24 ([`pod_block`]), handed out round-robin (as upstream's host-local
/// IPAM does, so an address is not reused at once), and who holds which.
#[derive(Debug, Default)]
pub(crate) struct Ipam {
    /// Node index ([`SimNode::index`], from which the block comes) → its block.
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

fn pod_ip(pod: &Pod) -> Option<Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// Whether a pod's status already has what [`pod_status`] starts: Running, with an IP and
/// one status per container of the spec, for that container's image, and a `Ready` condition
/// that agrees with its readiness gates' conditions (which others set).
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
        && gates_settled(spec, status)
}

/// Whether the stored `Ready` condition is what the readiness gates' conditions make it.
fn gates_settled(spec: &PodSpec, status: &PodStatus) -> bool {
    if spec.readiness_gates.as_ref().is_none_or(Vec::is_empty) {
        return true;
    }
    let all: Vec<ContainerStatus> = [&status.init_container_statuses, &status.container_statuses]
        .into_iter()
        .flatten()
        .flatten()
        .cloned()
        .collect();
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let phase = status.phase.as_deref().unwrap_or_default();
    let want = pod::pod_ready_condition(spec, &all, phase, conditions).status;
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == want)
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

/// Whether a container that exited is started again, by the pod's `restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Restart {
    Always,
    OnFailure,
    Never,
}

impl Restart {
    /// The pod's policy (`Always` when unset, as the API server defaults it).
    fn of(pod: &Pod) -> Restart {
        match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
            Some("Never") => Restart::Never,
            Some("OnFailure") => Restart::OnFailure,
            _ => Restart::Always,
        }
    }

    /// Whether a container that exited with `code` is restarted.
    fn after(self, code: i32) -> bool {
        match self {
            Restart::Always => true,
            Restart::OnFailure => code != 0,
            Restart::Never => false,
        }
    }
}

/// How a pod's regular containers live: how long each run lasts, how it ends, what follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Life {
    /// How long a container runs before it exits; `None`: until the pod is deleted.
    pub(crate) runs_for: Option<Duration>,
    /// The code it exits with.
    pub(crate) exit_code: i32,
    /// Whether it is then restarted.
    pub(crate) restart: Restart,
}

/// Whether a `batch/v1` Job owns `pod`.
pub(crate) fn owned_by_job(pod: &Pod) -> bool {
    pod.metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|o| o.kind == "Job" && o.api_version == "batch/v1")
}

/// The life of `pod`'s containers: its annotations first, then the `behaviour` for Job pods
/// or for the others (see the crate's documentation); and what was wrong with the
/// annotations (those values are ignored).
pub(crate) fn life(pod: &Pod, behaviour: &Behaviour) -> (Life, Vec<String>) {
    let mut problems = Vec::new();
    let annotation = |key: &str| {
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(|v| v.trim())
    };
    let duration = match annotation(DURATION_ANNOTATION).map(parse_duration) {
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            problems.push(format!("{DURATION_ANNOTATION}: {e}"));
            None
        }
        None => None,
    };
    let exit_code = match annotation(EXIT_CODE_ANNOTATION) {
        Some(v) => match v.parse::<i32>() {
            Ok(code) if (0..=255).contains(&code) => Some(code),
            _ => {
                problems.push(format!(
                    "{EXIT_CODE_ANNOTATION}: {v:?} is not an exit code from 0 to 255"
                ));
                None
            }
        },
        None => None,
    };
    let default = if owned_by_job(pod) {
        Some(behaviour.job_pod_duration)
    } else {
        behaviour.pod_duration
    };
    let life = Life {
        runs_for: duration
            .or(default)
            .or(exit_code.map(|_| behaviour.job_pod_duration)),
        exit_code: exit_code.unwrap_or(0),
        restart: Restart::of(pod),
    };
    (life, problems)
}

/// The back-off before a container's restart number `restarts` (1 for the first): upstream's
/// doubling, shortened to 1 s at first and 30 s at most.
pub(crate) fn backoff(restarts: i32) -> Duration {
    let doublings = u32::try_from(restarts.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    (BACKOFF_FIRST * 2u32.pow(doublings)).min(BACKOFF_MAX)
}

/// `t` + `d`, or `None` past the end of time.
fn plus(t: Timestamp, d: Duration) -> Option<Timestamp> {
    t.checked_add(d).ok()
}

fn started_at(state: &ContainerState) -> Option<Timestamp> {
    let running = state.running.as_ref().and_then(|r| r.started_at.as_ref());
    let terminated = state
        .terminated
        .as_ref()
        .and_then(|t| t.started_at.as_ref());
    running.or(terminated).map(|t| t.0)
}

/// Whether a container is waiting out a restart back-off.
fn backing_off(state: &ContainerState) -> bool {
    state
        .waiting
        .as_ref()
        .is_some_and(|w| w.reason.as_deref() == Some(CRASH_LOOP))
}

/// When regular container `status` next changes by itself under `life`: a running container
/// exits `runs_for` after its start, one in back-off restarts when the back-off is over, an
/// exited one to be restarted goes into back-off at once. `None`: never.
fn due_at(status: &ContainerStatus, life: &Life) -> Option<Timestamp> {
    let Some(state) = &status.state else {
        return Some(Timestamp::UNIX_EPOCH);
    };
    if state.running.is_some() {
        return plus(started_at(state)?, life.runs_for?);
    }
    if let Some(t) = &state.terminated {
        return life.restart.after(t.exit_code).then(|| {
            t.finished_at
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |f| f.0)
        });
    }
    if backing_off(state) {
        let finished = status
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.finished_at.as_ref());
        return match finished {
            Some(f) => plus(f.0, backoff(status.restart_count)),
            None => Some(Timestamp::UNIX_EPOCH),
        };
    }
    // Waiting for another reason (not ours): start it.
    Some(Timestamp::UNIX_EPOCH)
}

/// When `pod`'s status next changes by itself under `life` (see [`due_at`]); `None` for a pod
/// that is not running or whose containers all run for good.
pub(crate) fn next_change(pod: &Pod, life: &Life) -> Option<Timestamp> {
    if pod::phase(pod) != "Running" {
        return None;
    }
    let statuses = pod.status.as_ref()?.container_statuses.as_deref()?;
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .filter_map(|c| statuses.iter().find(|s| s.name == c.name))
        .filter_map(|s| due_at(s, life))
        .min()
}

/// A running state since `started`: the state, whether ready, whether started.
fn running(started: Timestamp, ready: bool) -> (ContainerState, bool, bool) {
    let state = ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(Time(started)),
        }),
        ..Default::default()
    };
    (state, ready, true)
}

/// A terminated state: `Completed` for code 0, `Error` for others.
fn terminated(
    exit_code: i32,
    container_id: Option<String>,
    started: Option<Timestamp>,
    finished: Timestamp,
) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code,
            reason: Some(if exit_code == 0 { "Completed" } else { "Error" }.into()),
            container_id,
            started_at: started.map(Time),
            finished_at: Some(Time(finished)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What kind of container a status is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A container of `spec.containers`: it lives by the pod's [`Life`].
    Regular,
    /// An init container that is not a sidecar: completed at once.
    Init,
    /// An init container with `restartPolicy: Always`: runs until the pod ends.
    Sidecar,
    /// An ephemeral container: runs, never ready, until the pod ends.
    Ephemeral,
}

/// The status of `container` at `now`, one step on from its `previous` one: a new container
/// (or a changed image) starts; a regular container whose time is due ([`due_at`]) exits, is
/// restarted or leaves its back-off; otherwise the status stays as it was. `who` names the
/// pod in back-off messages (`name_namespace(uid)`, as upstream's kubelet writes it).
fn container_status(
    uid: &str,
    who: &str,
    container: &Container,
    previous: Option<&ContainerStatus>,
    kind: Kind,
    life: &Life,
    now: Timestamp,
) -> ContainerStatus {
    let image = container.image.clone().unwrap_or_default();
    let name = container.name.clone();
    let fresh = |restarts: i32, last_state: Option<ContainerState>, since: Timestamp| {
        let id = container_id(uid, &name, restarts);
        let (state, ready, started) = match kind {
            Kind::Regular | Kind::Sidecar => running(since, true),
            Kind::Ephemeral => running(since, false),
            Kind::Init => (
                terminated(0, Some(id.clone()), Some(since), since),
                true,
                false,
            ),
        };
        ContainerStatus {
            name: name.clone(),
            image_id: image_id(&image),
            image: image.clone(),
            container_id: Some(id),
            ready,
            started: Some(started),
            restart_count: restarts,
            state: Some(state),
            last_state,
            ..Default::default()
        }
    };
    let Some(p) = previous else {
        return fresh(0, None, now);
    };
    let state = p.state.clone().unwrap_or_default();
    if p.image != image {
        // A new image: the old container is stopped and a new one started.
        return if state.terminated.is_some() {
            fresh(p.restart_count + 1, Some(state), now)
        } else if state.running.is_some() {
            let stopped = terminated(0, p.container_id.clone(), started_at(&state), now);
            fresh(p.restart_count + 1, Some(stopped), now)
        } else {
            // Waiting: the restart it waited for (already counted) happens now.
            fresh(p.restart_count, p.last_state.clone(), now)
        };
    }
    if kind != Kind::Regular {
        // Kept as it ran (or started now if it had no start).
        return fresh(
            p.restart_count,
            p.last_state.clone(),
            started_at(&state).unwrap_or(now),
        );
    }
    let due = due_at(p, life).filter(|&at| at <= now);
    let mut next = p.clone();
    match due {
        None => {
            // Nothing due: as it was, readiness as its state says.
            let alive = state.running.is_some();
            next.ready = alive;
            next.started = Some(alive);
        }
        Some(end) if state.running.is_some() => {
            // Its time is up: it exits.
            let exited = terminated(
                life.exit_code,
                p.container_id.clone(),
                started_at(&state),
                end,
            );
            next.ready = false;
            next.started = Some(false);
            if life.restart.after(life.exit_code) {
                next = back_off(next, exited, who);
            } else {
                next.state = Some(exited);
            }
        }
        Some(_) if state.terminated.is_some() => {
            // Exited and to be restarted: into back-off.
            next = back_off(next, state, who);
        }
        Some(_) => {
            // Back-off over (or waiting for a reason not ours): started again.
            return fresh(p.restart_count, p.last_state.clone(), now);
        }
    }
    next
}

/// `status` after its container exited as `exited`, to be restarted after a back-off: the
/// restart counted, the exit in `lastState`, waiting in `CrashLoopBackOff`.
fn back_off(mut status: ContainerStatus, exited: ContainerState, who: &str) -> ContainerStatus {
    status.restart_count += 1;
    let delay = backoff(status.restart_count).as_secs();
    status.state = Some(ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(CRASH_LOOP.into()),
            message: Some(format!(
                "back-off {delay}s restarting failed container={} pod={who}",
                status.name
            )),
        }),
        ..Default::default()
    });
    status.last_state = Some(exited);
    status.ready = false;
    status.started = Some(false);
    status
}

/// A running sidecar or ephemeral container stopped with its pod at `end`.
fn stop(mut status: ContainerStatus, end: Timestamp) -> ContainerStatus {
    let state = status.state.clone().unwrap_or_default();
    if state.running.is_some() {
        let start = started_at(&state);
        status.state = Some(terminated(0, status.container_id.clone(), start, end));
        status.ready = false;
        status.started = Some(false);
    }
    status
}

/// The status a kubelet reports for `pod` on a node at `host_ip`, with address `pod_ip`, at
/// `now`: every container one step on ([`container_status`]); phase Running, or once every
/// regular container has exited for good Succeeded (all with code 0) or Failed, with the
/// sidecars and ephemeral containers stopped; the kubelet's conditions to match
/// ([`pod::kubelet_conditions`], the sandbox ready until the pod ends). The start time and
/// unchanged containers keep theirs. Fields not written here (qosClass, other conditions) are
/// kept.
pub(crate) fn pod_status(
    pod: &Pod,
    host_ip: Ipv4Addr,
    pod_ip: Ipv4Addr,
    life: &Life,
    now: Timestamp,
) -> PodStatus {
    let meta = &pod.metadata;
    let uid = meta.uid.as_deref().unwrap_or_default();
    let who = format!(
        "{}_{}({uid})",
        meta.name.as_deref().unwrap_or_default(),
        meta.namespace.as_deref().unwrap_or_default()
    );
    let old = pod.status.clone().unwrap_or_default();
    let start = old.start_time.as_ref().map(|t| t.0).unwrap_or(now);
    let spec = pod.spec.clone().unwrap_or_default();
    let statuses = |containers: &[Container],
                    old: &Option<Vec<ContainerStatus>>,
                    kind: &dyn Fn(&Container) -> Kind| {
        let old = old.as_deref().unwrap_or_default();
        containers
            .iter()
            .map(|c| {
                let previous = old.iter().find(|s| s.name == c.name);
                container_status(uid, &who, c, previous, kind(c), life, now)
            })
            .collect::<Vec<_>>()
    };
    let containers = statuses(&spec.containers, &old.container_statuses, &|_| {
        Kind::Regular
    });
    let mut init = statuses(
        spec.init_containers.as_deref().unwrap_or_default(),
        &old.init_container_statuses,
        &|c| {
            if c.restart_policy.as_deref() == Some("Always") {
                Kind::Sidecar
            } else {
                Kind::Init
            }
        },
    );
    let ephemeral: Vec<Container> = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|e| Container {
            name: e.name.clone(),
            image: e.image.clone(),
            ..Default::default()
        })
        .collect();
    let mut ephemeral = statuses(&ephemeral, &old.ephemeral_container_statuses, &|_| {
        Kind::Ephemeral
    });
    let exits: Option<Vec<&ContainerStateTerminated>> = containers
        .iter()
        .map(|s| s.state.as_ref().and_then(|s| s.terminated.as_ref()))
        .collect();
    let phase = match exits {
        Some(exits) if !exits.is_empty() => {
            let end = exits
                .iter()
                .filter_map(|t| t.finished_at.as_ref().map(|f| f.0))
                .max()
                .unwrap_or(now);
            init = init.into_iter().map(|s| stop(s, end)).collect();
            ephemeral = ephemeral.into_iter().map(|s| stop(s, end)).collect();
            if exits.iter().all(|t| t.exit_code == 0) {
                "Succeeded"
            } else {
                "Failed"
            }
        }
        _ => "Running",
    };
    let all: Vec<ContainerStatus> = init.iter().chain(&containers).cloned().collect();
    let old_conditions = old.conditions.unwrap_or_default();
    let sandbox_ready = !pod::is_terminal_phase(phase);
    let conditions = pod::kubelet_conditions(
        &spec,
        &old_conditions,
        &all,
        phase,
        sandbox_ready,
        &Time(now),
    );
    let some = |list: Vec<ContainerStatus>| (!list.is_empty()).then_some(list);
    PodStatus {
        phase: Some(phase.into()),
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
        container_statuses: some(containers),
        init_container_statuses: some(init),
        ephemeral_container_statuses: some(ephemeral),
        ..Default::default()
    }
}

/// The sum of the regular containers' restart counts.
fn restarts(status: Option<&PodStatus>) -> i64 {
    status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|s| i64::from(s.restart_count))
        .sum()
}

/// `namespace/name` of a pod, for logs.
fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Pods to look at again at a given time (a container's exit, the end of a back-off), each
/// with the last version of it seen.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    queue: BinaryHeap<Reverse<(Timestamp, String)>>,
    /// Pod uid → (when, the pod): the one live entry per pod; queue entries that do not
    /// match it are stale and skipped.
    pods: HashMap<String, (Timestamp, Pod)>,
}

impl Timers {
    /// Looks at `pod` again at `at` (instead of any earlier setting).
    pub(crate) fn set(&mut self, at: Timestamp, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if self.pods.get(&uid).is_none_or(|(t, _)| *t != at) {
            self.queue.push(Reverse((at, uid.clone())));
        }
        self.pods.insert(uid, (at, pod));
        if self.queue.len() > 2 * self.pods.len() + 1024 {
            let pods = &self.pods;
            self.queue
                .retain(|Reverse((at, uid))| pods.get(uid).is_some_and(|(t, _)| t == at));
        }
    }

    /// Forgets pod `uid`.
    pub(crate) fn cancel(&mut self, uid: &str) {
        self.pods.remove(uid);
    }

    /// Forgets every pod not in `live`.
    pub(crate) fn retain(&mut self, live: &HashSet<&str>) {
        self.pods.retain(|uid, _| live.contains(uid.as_str()));
    }

    /// The earliest time set.
    pub(crate) fn next(&mut self) -> Option<Timestamp> {
        while let Some(Reverse((at, uid))) = self.queue.peek() {
            if self.pods.get(uid).is_some_and(|(t, _)| t == at) {
                return Some(*at);
            }
            self.queue.pop();
        }
        None
    }

    /// The pods whose time has come by `now`, forgotten.
    pub(crate) fn take_due(&mut self, now: Timestamp) -> Vec<Pod> {
        let mut due = Vec::new();
        while let Some(at) = self.next()
            && at <= now
        {
            if let Some(Reverse((_, uid))) = self.queue.pop()
                && let Some((_, pod)) = self.pods.remove(&uid)
            {
                due.push(pod);
            }
        }
        due
    }
}

/// Sleeps until `at` by the wall clock; forever for `None`.
async fn sleep_until(at: Option<Timestamp>) {
    match at {
        None => std::future::pending().await,
        Some(at) => {
            let wait = at.duration_since(Timestamp::now());
            tokio::time::sleep(Duration::try_from(wait).unwrap_or(Duration::ZERO)).await;
        }
    }
}

/// The pod loop's state.
struct Kubelet {
    sim: Arc<Sim>,
    nodes: Arc<NodeTable>,
    ipam: Ipam,
    timers: Timers,
    tasks: JoinSet<()>,
    permits: Arc<Semaphore>,
}

/// Watches the pods bound to any node and handles those on ours, looks at them again when a
/// container's time is up, and handles a node's pods again when it comes back from the dead
/// (its name from `revived`). Runs until cancelled.
pub(crate) async fn run(
    sim: Arc<Sim>,
    nodes: Arc<NodeTable>,
    mut revived: UnboundedReceiver<String>,
) -> crate::Result<()> {
    let api: Api<Pod> = Api::all(sim.client.clone());
    let config = watcher::Config::default().fields("spec.nodeName!=");
    let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
    let mut kubelet = Kubelet {
        sim,
        nodes,
        ipam: Ipam::default(),
        timers: Timers::default(),
        tasks: JoinSet::new(),
        permits: Arc::new(Semaphore::new(CONCURRENCY)),
    };
    let mut listed: Vec<Pod> = Vec::new();
    loop {
        while kubelet.tasks.try_join_next().is_some() {}
        let wake = kubelet.timers.next();
        tokio::select! {
            event = events.next() => match event {
                None => break,
                Some(Err(e)) => tracing::warn!(error = %e, "watching pods failed; retrying"),
                Some(Ok(Event::Init)) => listed.clear(),
                Some(Ok(Event::InitApply(pod))) => listed.push(pod),
                Some(Ok(Event::InitDone)) => kubelet.resync(std::mem::take(&mut listed)).await,
                Some(Ok(Event::Apply(pod))) => {
                    kubelet.observe(&pod);
                    kubelet.handle(pod).await;
                }
                Some(Ok(Event::Delete(pod))) => {
                    if let Some(uid) = &pod.metadata.uid {
                        kubelet.ipam.release(uid);
                        kubelet.timers.cancel(uid);
                    }
                }
            },
            () = sleep_until(wake) => {
                for pod in kubelet.timers.take_due(Timestamp::now()) {
                    kubelet.handle(pod).await;
                }
            }
            Some(node) = revived.recv() => kubelet.revive(&node).await,
        }
    }
    Err(crate::Error::Stopped("the pod watch ended"))
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
        self.timers.retain(&live);
        for pod in &pods {
            self.observe(pod);
        }
        tracing::debug!(pods = pods.len(), "pods bound to nodes listed");
        for pod in pods {
            self.handle(pod).await;
        }
    }

    /// Node `name` is alive again: handle its pods, left alone while it was dead.
    async fn revive(&mut self, name: &str) {
        let api: Api<Pod> = Api::all(self.sim.client.clone());
        let params = ListParams::default().fields(&format!("spec.nodeName={name}"));
        let limit = Some(self.sim.opts.lease_interval.max(Duration::from_secs(10)));
        match retry("listing a node's pods", limit, || api.list(&params)).await {
            Ok(list) => {
                tracing::debug!(node = %name, pods = list.items.len(), "handling the pods of a revived node");
                for pod in list.items {
                    self.observe(&pod);
                    self.handle(pod).await;
                }
            }
            Err(e) => {
                Stats::add(&self.sim.stats.errors);
                tracing::warn!(node = %name, error = %e, "listing the pods of a revived node failed; they are handled at their next change");
            }
        }
    }

    /// Keeps the address book in line with what a pod's status says.
    fn observe(&mut self, pod: &Pod) {
        let (Some(node), Some(uid)) = (self.node_of(pod), pod.metadata.uid.as_deref()) else {
            return;
        };
        let node = node.index;
        if pod::is_terminal(pod) {
            self.ipam.release(uid);
        } else if !host_network(pod)
            && let Some(ip) = pod_ip(pod)
        {
            self.ipam.reserve(node, uid, ip);
        }
    }

    /// Does what a kubelet would for `pod`, if it is ours: finish its deletion, start it, move
    /// its containers on when their time is due, or set a timer for when it will be.
    async fn handle(&mut self, pod: Pod) {
        let Some(node) = self.node_of(&pod) else {
            return;
        };
        let (index, host_ip, node_name, dead) =
            (node.index, node.ip, node.name.clone(), node.is_dead());
        let (Some(name), Some(namespace), Some(uid)) = (
            pod.metadata.name.clone(),
            pod.metadata.namespace.clone(),
            pod.metadata.uid.clone(),
        ) else {
            return;
        };
        if dead {
            // A dead node's kubelet does nothing; the pods are handled again when it revives.
            self.timers.cancel(&uid);
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.sim.client.clone(), &namespace);
        let sim = self.sim.clone();
        if pod::is_terminating(&pod) {
            self.timers.cancel(&uid);
            self.spawn(finish(sim, api, name, uid)).await;
            return;
        }
        if pod::is_terminal(&pod) {
            self.timers.cancel(&uid);
            return;
        }
        let (life, problems) = life(&pod, &self.sim.behaviour);
        let now = Timestamp::now();
        let changes_at = next_change(&pod, &life);
        if in_sync(&pod) && changes_at.is_none_or(|at| at > now) {
            match changes_at {
                Some(at) => self.timers.set(at, pod),
                None => self.timers.cancel(&uid),
            }
            return;
        }
        // Something to write: the watch brings the result back, and with it the next timer.
        self.timers.cancel(&uid);
        if pod::phase(&pod) != "Running" {
            for problem in problems {
                tracing::warn!(pod = %key(&pod), "{problem}; ignored");
            }
        }
        let ip = if host_network(&pod) {
            host_ip
        } else if let Some(ip) = pod_ip(&pod).filter(|_| pod::phase(&pod) == "Running") {
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
        let status = pod_status(&pod, host_ip, ip, &life, now);
        let step = if pod::is_terminal_phase(status.phase.as_deref().unwrap_or("")) {
            Step::Completed
        } else if pod::phase(&pod) != "Running" {
            Step::Started
        } else {
            let n = restarts(Some(&status)) - restarts(pod.status.as_ref());
            Step::Changed(u64::try_from(n).unwrap_or(0))
        };
        let rv = pod.metadata.resource_version.clone();
        let patch = json!({
            "metadata": {"uid": uid, "resourceVersion": rv},
            "status": status,
        });
        self.spawn(write_status(sim, api, name, patch, step)).await;
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

/// What a status write does, for the counters and the log.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// The pod starts running.
    Started,
    /// Containers of a running pod exit, back off or start again (so many restarts).
    Changed(u64),
    /// The pod Succeeded or Failed.
    Completed,
}

/// Writes a pod's status (`patch`, with its preconditions).
async fn write_status(
    sim: Arc<Sim>,
    api: Api<Pod>,
    name: String,
    patch: serde_json::Value,
    step: Step,
) {
    let r = retry("updating a pod's status", None, || async {
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
    })
    .await;
    let ns = api.namespace().unwrap_or_default();
    let pod = format!("{ns}/{name}");
    let phase = patch["status"]["phase"].as_str().unwrap_or_default();
    match r {
        Ok(_) => {
            let stats = &sim.stats;
            match step {
                Step::Started => Stats::add(&stats.pods_started),
                Step::Completed => Stats::add(&stats.pods_completed),
                Step::Changed(n) => {
                    stats.container_restarts.fetch_add(n, Ordering::Relaxed);
                }
            }
            tracing::debug!(%pod, phase, ?step, ip = patch["status"]["podIP"].as_str().unwrap_or_default(), "pod status written");
        }
        // Gone, or changed since: the watch brings what to do next.
        Err(e) if is_not_found(&e) || is_conflict(&e) => {
            tracing::debug!(%pod, error = %e, "pod status not written");
        }
        Err(e) => {
            Stats::add(&sim.stats.errors);
            tracing::warn!(%pod, error = %e, "writing the pod's status failed");
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

    /// Containers that run until the pod is deleted.
    const FOREVER: Life = Life {
        runs_for: None,
        exit_code: 0,
        restart: Restart::Always,
    };

    fn running_status(pod: &Pod, host: Ipv4Addr, ip: Ipv4Addr, now: Timestamp) -> PodStatus {
        pod_status(pod, host, ip, &FOREVER, now)
    }

    fn life_for(exit_code: i32, secs: u64, restart: Restart) -> Life {
        Life {
            runs_for: Some(Duration::from_secs(secs)),
            exit_code,
            restart,
        }
    }

    /// `p` with `status` written (as the server would keep it).
    fn with(mut p: Pod, status: PodStatus) -> Pod {
        p.status = Some(status);
        p
    }

    fn json_of(status: &PodStatus) -> serde_json::Value {
        serde_json::to_value(status).unwrap()
    }

    fn condition<'a>(v: &'a serde_json::Value, type_: &str) -> &'a serde_json::Value {
        v["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .unwrap()
    }

    fn job_pod() -> Pod {
        let mut p = web();
        p.metadata.owner_references = Some(
            serde_json::from_value(json!([{
                "apiVersion": "batch/v1", "kind": "Job", "name": "pi", "uid": "j1", "controller": true,
            }]))
            .unwrap(),
        );
        p.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        p
    }

    fn annotate(mut p: Pod, pairs: &[(&str, &str)]) -> Pod {
        let a = p.metadata.annotations.get_or_insert_with(Default::default);
        for (k, v) in pairs {
            a.insert(k.to_string(), v.to_string());
        }
        p
    }

    #[test]
    fn job_pods_finish_after_the_job_duration_and_others_run_on() {
        let b = Behaviour::default();
        let (l, problems) = life(&job_pod(), &b);
        assert!(problems.is_empty());
        assert_eq!(l, life_for(0, 1, Restart::Never));
        assert!(owned_by_job(&job_pod()) && !owned_by_job(&web()));

        let (l, _) = life(&web(), &b);
        assert_eq!(l.runs_for, None, "runs until deleted");
        assert_eq!(l.restart, Restart::Always);

        let b = Behaviour {
            job_pod_duration: Duration::from_secs(7),
            pod_duration: Some(Duration::from_secs(60)),
        };
        assert_eq!(
            life(&job_pod(), &b).0.runs_for,
            Some(Duration::from_secs(7))
        );
        assert_eq!(life(&web(), &b).0.runs_for, Some(Duration::from_secs(60)));

        // Another group's Job is not a batch/v1 Job.
        let mut p = job_pod();
        p.metadata.owner_references.as_mut().unwrap()[0].api_version = "example.com/v1".into();
        assert!(!owned_by_job(&p));
    }

    #[test]
    fn annotations_override_the_behaviour() {
        let b = Behaviour::default();
        let p = annotate(
            job_pod(),
            &[(DURATION_ANNOTATION, "5s"), (EXIT_CODE_ANNOTATION, "3")],
        );
        assert_eq!(life(&p, &b).0, life_for(3, 5, Restart::Never));
        let p = annotate(web(), &[(DURATION_ANNOTATION, "0s")]);
        assert_eq!(life(&p, &b).0.runs_for, Some(Duration::ZERO));
        // An exit code alone on a pod that would run forever: it exits after the job duration.
        let p = annotate(web(), &[(EXIT_CODE_ANNOTATION, " 1 ")]);
        assert_eq!(life(&p, &b).0, life_for(1, 1, Restart::Always));

        // Bad values are reported and ignored.
        let p = annotate(
            job_pod(),
            &[(DURATION_ANNOTATION, "soon"), (EXIT_CODE_ANNOTATION, "256")],
        );
        let (l, problems) = life(&p, &b);
        assert_eq!(l, life_for(0, 1, Restart::Never));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains(DURATION_ANNOTATION), "{problems:?}");
        assert!(problems[1].contains("from 0 to 255"), "{problems:?}");
        let p = annotate(web(), &[(EXIT_CODE_ANNOTATION, "-1")]);
        assert_eq!(life(&p, &b).1.len(), 1);

        let mut p = web();
        p.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
        assert_eq!(life(&p, &b).0.restart, Restart::OnFailure);
    }

    #[test]
    fn a_job_pod_succeeds_when_its_time_is_up() {
        let life = life_for(0, 1, Restart::Never);
        let p = job_pod();
        let start = at("2025-01-01T00:00:05Z");
        let p = with(p.clone(), pod_status(&p, HOST, IP, &life, start));
        assert_eq!(pod::phase(&p), "Running");
        let end = at("2025-01-01T00:00:06Z");
        assert_eq!(next_change(&p, &life), Some(end));

        // Not yet: nothing changes.
        let early = pod_status(&p, HOST, IP, &life, at("2025-01-01T00:00:05.5Z"));
        assert_eq!(json_of(&early), json_of(p.status.as_ref().unwrap()));

        // Handled late, the exit is still stamped at its due time.
        let done = pod_status(&p, HOST, IP, &life, at("2025-01-01T00:00:09Z"));
        let v = json_of(&done);
        assert_eq!(v["phase"], "Succeeded");
        for c in v["containerStatuses"].as_array().unwrap() {
            let t = &c["state"]["terminated"];
            assert_eq!(t["exitCode"], 0);
            assert_eq!(t["reason"], "Completed");
            assert_eq!(t["startedAt"], "2025-01-01T00:00:05Z");
            assert_eq!(t["finishedAt"], "2025-01-01T00:00:06Z");
            assert_eq!(t["containerID"], c["containerID"]);
            assert!(c["state"].get("running").is_none());
            assert_eq!(c["ready"], false);
            assert_eq!(c["started"], false);
            assert_eq!(c["restartCount"], 0);
        }
        // The conditions' texts are `pod::kubelet_conditions`' (tested there).
        let ready = condition(&v, "Ready");
        assert_eq!(ready["reason"], "PodCompleted");
        assert_eq!(ready["lastTransitionTime"], "2025-01-01T00:00:09Z");
        assert_eq!(
            condition(&v, "PodReadyToStartContainers")["status"],
            "False"
        );
        assert_eq!(
            condition(&v, "PodScheduled")["lastTransitionTime"],
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(v["podIP"], "10.64.1.2", "a finished pod keeps its address");
        assert_eq!(v["startTime"], "2025-01-01T00:00:05Z");
        let p = with(p, done);
        assert!(pod::is_terminal(&p));
        assert_eq!(next_change(&p, &life), None);
    }

    #[test]
    fn a_failing_pod_that_never_restarts_fails() {
        let life = life_for(3, 0, Restart::Never);
        let p = web();
        let now = at("2025-01-01T00:00:05Z");
        let p = with(p.clone(), pod_status(&p, HOST, IP, &life, now));
        // Zero seconds: due at once, but first written as Running (as a kubelet would).
        assert_eq!(pod::phase(&p), "Running");
        assert_eq!(next_change(&p, &life), Some(now));
        let v = json_of(&pod_status(&p, HOST, IP, &life, now));
        assert_eq!(v["phase"], "Failed");
        let t = &v["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(t["exitCode"], 3);
        assert_eq!(t["reason"], "Error");
        assert_eq!(condition(&v, "Ready")["reason"], "PodFailed");
    }

    #[test]
    fn failed_containers_back_off_and_restart() {
        let life = life_for(1, 10, Restart::OnFailure);
        let mut p = web();
        p.spec.as_mut().unwrap().containers.truncate(1);
        let p = with(
            p.clone(),
            pod_status(&p, HOST, IP, &life, at("2025-01-01T00:00:00Z")),
        );
        assert_eq!(next_change(&p, &life), Some(at("2025-01-01T00:00:10Z")));

        // It exits with code 1 and waits out a 1 s back-off, the restart counted.
        let p = with(
            p.clone(),
            pod_status(&p, HOST, IP, &life, at("2025-01-01T00:00:10Z")),
        );
        let v = json_of(p.status.as_ref().unwrap());
        assert_eq!(v["phase"], "Running");
        let c = &v["containerStatuses"][0];
        assert_eq!(c["restartCount"], 1);
        assert_eq!(c["ready"], false);
        assert_eq!(c["started"], false);
        assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(
            c["state"]["waiting"]["message"],
            "back-off 1s restarting failed container=nginx pod=web_default(u1)"
        );
        assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(c["lastState"]["terminated"]["reason"], "Error");
        assert_eq!(
            c["lastState"]["terminated"]["finishedAt"],
            "2025-01-01T00:00:10Z"
        );
        assert_eq!(c["containerID"], "rudder-sim://u1-nginx", "the exited one");
        assert_eq!(condition(&v, "Ready")["status"], "False");
        assert_eq!(condition(&v, "PodReadyToStartContainers")["status"], "True");
        assert_eq!(next_change(&p, &life), Some(at("2025-01-01T00:00:11Z")));

        // After the back-off: running again, a new container, ready.
        let later = at("2025-01-01T00:00:11Z");
        let p = with(p.clone(), pod_status(&p, HOST, IP, &life, later));
        let v = json_of(p.status.as_ref().unwrap());
        let c = &v["containerStatuses"][0];
        assert_eq!(c["restartCount"], 1);
        assert_eq!(c["state"]["running"]["startedAt"], "2025-01-01T00:00:11Z");
        assert_eq!(c["containerID"], "rudder-sim://u1-nginx-1");
        assert_eq!(c["ready"], true);
        assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(condition(&v, "Ready")["status"], "True");
        assert_eq!(
            condition(&v, "Ready")["lastTransitionTime"],
            "2025-01-01T00:00:11Z"
        );

        // The second exit backs off twice as long.
        let p = with(
            p.clone(),
            pod_status(&p, HOST, IP, &life, at("2025-01-01T00:00:21Z")),
        );
        let c = &p
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        assert_eq!(c.restart_count, 2);
        assert_eq!(next_change(&p, &life), Some(at("2025-01-01T00:00:23Z")));
    }

    #[test]
    fn on_failure_a_clean_exit_completes_and_always_restarts_it() {
        let mut p = web();
        p.spec.as_mut().unwrap().containers.truncate(1);
        let start = at("2025-01-01T00:00:00Z");
        let end = at("2025-01-01T00:00:05Z");

        let life = life_for(0, 5, Restart::OnFailure);
        let running = with(p.clone(), pod_status(&p, HOST, IP, &life, start));
        assert_eq!(
            pod_status(&running, HOST, IP, &life, end).phase.as_deref(),
            Some("Succeeded")
        );

        let life = life_for(0, 5, Restart::Always);
        let running = with(p.clone(), pod_status(&p, HOST, IP, &life, start));
        let v = json_of(&pod_status(&running, HOST, IP, &life, end));
        assert_eq!(v["phase"], "Running");
        let c = &v["containerStatuses"][0];
        assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(c["lastState"]["terminated"]["reason"], "Completed");
        assert_eq!(c["restartCount"], 1);
    }

    #[test]
    fn a_pod_ends_when_its_last_container_does() {
        // Two containers started at different times: the pod runs until both have exited.
        let life = life_for(0, 10, Restart::Never);
        let p = web();
        let mut p = with(
            p.clone(),
            pod_status(&p, HOST, IP, &life, at("2025-01-01T00:00:00Z")),
        );
        p.status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[1]
            .state
            .as_mut()
            .unwrap()
            .running
            .as_mut()
            .unwrap()
            .started_at = Some(Time(at("2025-01-01T00:00:04Z")));
        assert_eq!(next_change(&p, &life), Some(at("2025-01-01T00:00:10Z")));
        let p = with(
            p.clone(),
            pod_status(&p, HOST, IP, &life, at("2025-01-01T00:00:10Z")),
        );
        let v = json_of(p.status.as_ref().unwrap());
        assert_eq!(v["phase"], "Running");
        assert!(v["containerStatuses"][0]["state"]["terminated"].is_object());
        assert!(v["containerStatuses"][1]["state"]["running"].is_object());
        assert_eq!(
            condition(&v, "ContainersReady")["message"],
            "containers with unready status: [nginx]"
        );
        assert_eq!(next_change(&p, &life), Some(at("2025-01-01T00:00:14Z")));
        let v = json_of(&pod_status(&p, HOST, IP, &life, at("2025-01-01T00:00:14Z")));
        assert_eq!(v["phase"], "Succeeded");
    }

    #[test]
    fn sidecars_and_ephemeral_containers_stop_with_the_pod() {
        let life = life_for(0, 1, Restart::Never);
        let mut p = job_pod();
        let spec = p.spec.as_mut().unwrap();
        spec.init_containers = Some(
            serde_json::from_value(json!([
                {"name": "setup", "image": "busybox"},
                {"name": "proxy", "image": "envoy", "restartPolicy": "Always"},
            ]))
            .unwrap(),
        );
        spec.ephemeral_containers = Some(
            serde_json::from_value(json!([{"name": "debugger", "image": "busybox"}])).unwrap(),
        );
        let p = with(
            p.clone(),
            pod_status(&p, HOST, IP, &life, at("2025-01-01T00:00:00Z")),
        );
        let v = json_of(&pod_status(&p, HOST, IP, &life, at("2025-01-01T00:00:03Z")));
        assert_eq!(v["phase"], "Succeeded");
        let setup = &v["initContainerStatuses"][0]["state"]["terminated"];
        assert_eq!(setup["finishedAt"], "2025-01-01T00:00:00Z", "unchanged");
        let proxy = &v["initContainerStatuses"][1];
        assert_eq!(
            proxy["state"]["terminated"]["finishedAt"],
            "2025-01-01T00:00:01Z"
        );
        assert_eq!(proxy["state"]["terminated"]["reason"], "Completed");
        assert_eq!(proxy["ready"], false);
        let debugger = &v["ephemeralContainerStatuses"][0];
        assert!(debugger["state"]["terminated"].is_object());
    }

    #[test]
    fn back_offs_double_up_to_a_cap() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(0), BACKOFF_FIRST);
        assert_eq!(backoff(i32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn timers_hand_back_due_pods_once_with_their_last_version() {
        let mut timers = Timers::default();
        assert_eq!(timers.next(), None);
        let t = |s: u64| at("2025-01-01T00:00:00Z") + Duration::from_secs(s);
        let pod = |uid: &str, rv: &str| {
            let mut p = web();
            p.metadata.uid = Some(uid.into());
            p.metadata.resource_version = Some(rv.into());
            p
        };
        timers.set(t(5), pod("a", "1"));
        timers.set(t(3), pod("b", "1"));
        timers.set(t(9), pod("c", "1"));
        // Moved later, and a newer version seen: the old entry is stale.
        timers.set(t(7), pod("b", "2"));
        timers.cancel("c");
        assert_eq!(timers.next(), Some(t(5)));
        assert!(timers.take_due(t(4)).is_empty());
        let due = timers.take_due(t(8));
        let seen: Vec<(&str, &str)> = due
            .iter()
            .map(|p| {
                (
                    p.metadata.uid.as_deref().unwrap(),
                    p.metadata.resource_version.as_deref().unwrap(),
                )
            })
            .collect();
        assert_eq!(seen, [("a", "1"), ("b", "2")]);
        assert_eq!(timers.next(), None);
        assert!(timers.take_due(t(100)).is_empty());

        timers.set(t(1), pod("d", "1"));
        timers.set(t(1), pod("e", "1"));
        timers.retain(&HashSet::from(["e"]));
        assert_eq!(timers.take_due(t(2)).len(), 1);
        // Stale entries do not pile up.
        for i in 0..5000 {
            timers.set(t(i), pod("f", "1"));
        }
        assert!(timers.queue.len() <= 1024 + 2);
    }

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
        assert_eq!(types, pod::KUBELET_CONDITIONS);
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
