//! The pods bound to this node: a watch on `spec.nodeName=<node>` feeds one worker per pod,
//! which brings the host in line with the pod (sandbox, init containers in order, then the
//! app containers, restarts with back-off, probes) and reports what it sees in the pod's
//! status, as the kubelet's pod workers do. Deleting a pod stops its containers within the
//! grace period, then removes the object.
//!
//! This file owns what the worker's steps share: the context every worker holds ([`Ctx`]),
//! one pod's worker state ([`PodState`]) and small readings of the pod spec. The steps live
//! in the submodules: `worker` (the watch and the loop), `sync` (one pass), `init` and
//! `restart` (which containers start), `pull` and `start` (one attempt), `sandbox`, `etc`,
//! `resources` and `sysctl` (the pod's host side), `stop` (termination and deletion) and
//! `report` (the status). Everything they do to the machine goes through [`Ctx::host`] (the
//! `runtime::host::Host` seam), so `tests` runs the workers' decisions on a recording fake.

mod etc;
mod init;
mod pull;
mod report;
mod resources;
mod restart;
mod sandbox;
mod start;
mod stop;
mod sync;
mod sysctl;
#[cfg(test)]
mod tests;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::Value;

use crate::Config;
use crate::containers::Record;
use crate::events::Recorder;
use crate::probe::Probes;

pub(crate) use worker::run;

/// A container by namespace, pod name and container name.
pub(crate) type ContainerKey = (String, String, String);

/// What every worker shares.
pub(crate) struct Ctx {
    pub(crate) client: kube::Client,
    pub(crate) config: Arc<Config>,
    pub(crate) images: image::Store,
    /// The machine: containers, sandboxes, mounts (the real one, or a fake in tests).
    pub(crate) host: Arc<dyn runtime::host::Host>,
    pub(crate) events: Recorder,
    /// The node's allocatable cpus, memory and ephemeral storage (for resource fields
    /// without a limit).
    pub(crate) capacity: crate::env::Allocatable,
    /// Running containers by (namespace, pod, container). For `kubectl logs -f`,
    /// `/stats/summary`, exec and port-forward.
    pub(crate) running: Mutex<HashMap<ContainerKey, Running>>,
    /// Admission to sandbox and container starts, a few at a time, oldest pod first.
    pub(crate) gate: Arc<crate::gate::Gate>,
    /// Pods seen so far: a pod's number is its priority at the gate.
    pub(crate) arrivals: std::sync::atomic::AtomicU64,
}

/// A running container, as the agent's endpoint needs it.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    /// The pod's UID.
    pub(crate) uid: String,
    /// The container's cgroup.
    pub(crate) cgroup: String,
    /// The container's id (the runtime's).
    pub(crate) id: String,
    /// The pod's network namespace; None on the host's network.
    pub(crate) netns: Option<PathBuf>,
}

impl Ctx {
    fn data(&self) -> &Path {
        &self.config.data_dir
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.data().join("pods").join(uid)
    }
}

/// Why a container is not running, for its `waiting` state.
#[derive(Debug, Clone, PartialEq)]
struct Waiting {
    reason: String,
    message: Option<String>,
}

/// One pod's worker state.
struct PodState {
    uid: String,
    /// When this agent first saw the pod (its place at [`Ctx::gate`]).
    arrival: u64,
    sandbox: Option<sandbox::Sandbox>,
    /// Every attempt of every container still on record, by container name, oldest first.
    records: BTreeMap<String, Vec<Record>>,
    waiting: BTreeMap<String, Waiting>,
    pulls: HashMap<String, pull::PullFailure>,
    probes: Probes,
    start_time: Option<Timestamp>,
    last_status: Option<Value>,
    finished: bool,
    /// When the projected volumes (configMap, secret, downwardAPI) were last brought up to date.
    volumes_synced: Option<Instant>,
    /// The last `FailedMount` message reported, so a repeated one is not reported again.
    mount_error: Option<String>,
    /// Why the pod failed as a whole (reason, message), e.g. DeadlineExceeded.
    failure: Option<(String, String)>,
}

fn spec_containers(pod: &Pod) -> (Vec<Container>, Vec<Container>) {
    let spec = pod.spec.clone().unwrap_or_default();
    (spec.init_containers.unwrap_or_default(), spec.containers)
}

/// The pod's ephemeral containers (`kubectl debug`) as containers, with the container whose
/// process namespace each targets.
pub(crate) fn ephemeral_containers(pod: &Pod) -> Vec<(Container, Option<String>)> {
    let spec = pod.spec.clone().unwrap_or_default();
    spec.ephemeral_containers
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| {
            let target = e.target_container_name.clone();
            let mut v = serde_json::to_value(e).ok()?;
            if let Some(o) = v.as_object_mut() {
                o.remove("targetContainerName");
            }
            Some((serde_json::from_value(v).ok()?, target))
        })
        .collect()
}

fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

impl PodState {
    fn new(uid: String, recovered: Vec<Record>, ctx: &Ctx) -> PodState {
        let mut records: BTreeMap<String, Vec<Record>> = BTreeMap::new();
        for r in recovered {
            records.entry(r.meta.name.clone()).or_default().push(r);
        }
        let sandbox = std::fs::read(ctx.pod_dir(&uid).join("sandbox.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        PodState {
            uid,
            arrival: ctx
                .arrivals
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            sandbox,
            records,
            waiting: BTreeMap::new(),
            pulls: HashMap::new(),
            probes: Probes::default(),
            start_time: None,
            last_status: None,
            finished: false,
            volumes_synced: None,
            mount_error: None,
            failure: None,
        }
    }

    fn latest(&self, name: &str) -> Option<&Record> {
        self.records.get(name).and_then(|v| v.last())
    }
}

/// Records an event about container `c` of `pod`.
fn event(
    ctx: &Ctx,
    pod: &Pod,
    c: &Container,
    init: bool,
    warning: bool,
    reason: &str,
    message: String,
) {
    ctx.events
        .pod(pod, Some(field(c, init)), warning, reason, message);
}

/// The container's field path in events.
fn field(c: &Container, init: bool) -> String {
    let list = if init { "initContainers" } else { "containers" };
    format!("spec.{list}{{{}}}", c.name)
}

/// A restartable init container (a sidecar).
pub(crate) fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}
