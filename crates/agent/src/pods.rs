//! The pods bound to this node: a watch on `spec.nodeName=<node>` feeds one worker per pod,
//! which brings the host in line with the pod (sandbox, init containers in order, then the
//! app containers, restarts with back-off, probes) and reports what it sees in the pod's
//! status, as the kubelet's pod workers do. Deleting a pod stops its containers within the
//! grace period, then removes the object.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher;
use runtime::cni;
use runtime::rootfs::Snapshot;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::Config;
use crate::containers::{self, Meta, Record};
use crate::env::Sources;
use crate::events::Recorder;
use crate::probe::Probes;

/// How often a worker looks at its pod when nothing happens.
const RESYNC: Duration = Duration::from_secs(1);
/// The longest crash-loop back-off, and how long a container must run to reset it.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How often projected volumes are refreshed from their sources.
const VOLUME_RESYNC: Duration = Duration::from_secs(10);

/// A container by namespace, pod name and container name.
pub(crate) type ContainerKey = (String, String, String);

/// What every worker shares.
pub(crate) struct Ctx {
    pub(crate) client: kube::Client,
    pub(crate) config: Arc<Config>,
    pub(crate) runc: runtime::runc::Runc,
    pub(crate) images: image::Store,
    pub(crate) network: cni::Network,
    pub(crate) events: Recorder,
    /// The binary that runs `shim`.
    pub(crate) exe: PathBuf,
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

/// A pod's sandbox: its namespaces and address.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sandbox {
    ips: Vec<String>,
    host_network: bool,
    #[serde(default)]
    cni_result: Option<Value>,
    #[serde(default)]
    ports: Vec<(u16, u16, String, Option<String>)>,
}

impl Sandbox {
    fn ip(&self) -> &str {
        self.ips.first().map(String::as_str).unwrap_or("")
    }

    fn port_mappings(&self) -> Vec<cni::PortMapping> {
        self.ports
            .iter()
            .map(|(h, c, p, ip)| cni::PortMapping {
                host_port: *h,
                container_port: *c,
                protocol: p.clone(),
                host_ip: ip.clone(),
            })
            .collect()
    }
}

/// Why a container is not running, for its `waiting` state.
#[derive(Debug, Clone, PartialEq)]
struct Waiting {
    reason: String,
    message: Option<String>,
}

/// Image pulls that failed, by image, for ImagePullBackOff.
#[derive(Debug, Clone)]
struct PullFailure {
    failures: u32,
    until: Instant,
    message: String,
}

/// One pod's worker state.
struct PodState {
    uid: String,
    /// When this agent first saw the pod (its place at [`Ctx::gate`]).
    arrival: u64,
    sandbox: Option<Sandbox>,
    /// Every attempt of every container still on record, by container name, oldest first.
    records: BTreeMap<String, Vec<Record>>,
    waiting: BTreeMap<String, Waiting>,
    pulls: HashMap<String, PullFailure>,
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

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// The crash-loop delay before attempt `attempt` (0 = the first run).
fn backoff(attempt: u32) -> Duration {
    if attempt <= 1 {
        return Duration::ZERO;
    }
    let secs = 10u64.saturating_mul(1 << (attempt - 2).min(10));
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

/// Whether a container that ended with `code` runs again under `policy`.
fn restarts(policy: &str, code: i32) -> bool {
    match policy {
        "Always" => true,
        "OnFailure" => code != 0,
        _ => false,
    }
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

    /// Reads exit files of running containers and releases what ended.
    async fn refresh(&mut self, ctx: &Ctx) {
        for list in self.records.values_mut() {
            for r in list.iter_mut() {
                if r.exit.is_none() && r.meta.start_error.is_none() {
                    r.exit =
                        runtime::shim::read_exit(&containers::exit_file(ctx.data(), &r.meta.id));
                    if r.exit.is_some() {
                        r.oom = runtime::cgroups::oom_killed(&r.meta.cgroup);
                    }
                }
                if (r.exit.is_some() || r.meta.start_error.is_some()) && !r.released {
                    release(ctx, r).await;
                }
            }
            // Keep the current and the previous attempt.
            while list.len() > 2 {
                let old = list.remove(0);
                remove_record(ctx, &old).await;
            }
        }
    }

    async fn ensure_sandbox(&mut self, ctx: &Ctx, pod: &Pod) -> Result<(), String> {
        if let Some(sb) = &self.sandbox {
            let own = own_namespaces(pod);
            let paths = runtime::namespaces::Paths::under(&ctx.pod_dir(&self.uid), own);
            if sb.host_network || paths.exist() {
                return Ok(());
            }
        }
        runtime_handler(ctx, pod).await?;
        let _pass = ctx.gate.enter(self.arrival).await;
        let dir = ctx.pod_dir(&self.uid);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        // The pod's group, limited before any container starts in it.
        runtime::cgroups::limit(&pod_cgroup(pod, &self.uid), &pod_limits(pod))
            .map_err(|e| format!("limiting the pod's cgroup: {e}"))?;
        let own = own_namespaces(pod);
        let hostname = pod_hostname(pod);
        let paths =
            runtime::namespaces::create(&dir, own, &hostname).map_err(|e| format!("{e:#}"))?;
        let ports = host_ports(pod);
        let sandbox = if let Some(net) = &paths.net {
            let mappings: Vec<cni::PortMapping> = ports
                .iter()
                .map(|(h, c, p, ip)| cni::PortMapping {
                    host_port: *h,
                    container_port: *c,
                    protocol: p.clone(),
                    host_ip: ip.clone(),
                })
                .collect();
            let att = ctx
                .network
                .add(&self.uid, net, &mappings)
                .await
                .map_err(|e| {
                    format!(
                        "failed to set up sandbox container network for pod {:?}: {e:#}",
                        pod.name_any()
                    )
                })?;
            Sandbox {
                ips: att.ips.iter().map(|i| i.to_string()).collect(),
                host_network: false,
                cni_result: Some(att.result),
                ports,
            }
        } else {
            Sandbox {
                ips: vec![ctx.config.node_ip.to_string()],
                host_network: true,
                cni_result: None,
                ports: Vec::new(),
            }
        };
        write_etc(
            &dir,
            pod,
            &hostname,
            sandbox.ip(),
            ctx.config.cluster_dns.as_ref(),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(
            dir.join("sandbox.json"),
            serde_json::to_vec(&sandbox).unwrap_or_default(),
        )
        .map_err(|e| e.to_string())?;
        self.sandbox = Some(sandbox);
        Ok(())
    }

    /// One pass over the pod.
    async fn sync(&mut self, ctx: &Ctx, pod: &Pod) {
        self.refresh(ctx).await;
        if self.start_time.is_none() {
            self.start_time = pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0)
                .or_else(|| Some(Timestamp::now()));
        }
        let deadline = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds);
        if let (Some(secs), Some(start), false) = (deadline, self.start_time, self.finished)
            && Timestamp::now().duration_since(start).as_secs() >= secs
        {
            let msg = "Pod was active on the node longer than the specified deadline";
            ctx.events
                .pod(pod, None, true, "DeadlineExceeded", msg.into());
            self.failure = Some(("DeadlineExceeded".into(), msg.into()));
            self.stop_all(ctx, pod, grace_period(pod)).await;
            self.finished = true;
            self.teardown_sandbox(ctx, pod).await;
            self.post_status(ctx, pod).await;
            return;
        }
        if self.finished || pod::is_terminal(pod) {
            if !self.finished {
                self.finished = true;
                self.stop_all(ctx, pod, Duration::from_secs(0)).await;
                self.teardown_sandbox(ctx, pod).await;
            }
            self.post_status(ctx, pod).await;
            return;
        }
        if self.sandbox.is_none()
            && let Some(bad) = forbidden_sysctl(pod, &ctx.config.allowed_unsafe_sysctls)
        {
            // Refused before anything runs, as the kubelet's admission refuses it.
            let msg = format!("forbidden sysctl: {bad:?} not allowlisted");
            ctx.events
                .pod(pod, None, true, "SysctlForbidden", msg.clone());
            self.failure = Some(("SysctlForbidden".into(), format!("Pod was rejected: {msg}")));
            self.finished = true;
            self.post_status(ctx, pod).await;
            return;
        }
        if let Err(msg) = self.ensure_sandbox(ctx, pod).await {
            tracing::warn!(pod = %pod.name_any(), "{msg}");
            ctx.events
                .pod(pod, None, true, "FailedCreatePodSandBox", msg);
            self.post_status(ctx, pod).await;
            return;
        }
        let policy = restart_policy(pod).to_string();
        let (inits, apps) = spec_containers(pod);
        let mut initialized = true;
        for c in &inits {
            if is_sidecar(c) {
                // A restartable init container: the next one waits until it has started.
                match self.latest(&c.name).filter(|r| r.running()) {
                    Some(r) => {
                        let (id, started) = (r.meta.id.clone(), r.meta.started_at.clone());
                        self.run_probes(ctx, pod, c, &id, started.as_deref()).await;
                        if self.probes.ready_map().get(&c.name).is_none_or(|(_, s)| *s) {
                            continue;
                        }
                    }
                    None => self.start_if_due(ctx, pod, c, true).await,
                }
                initialized = false;
                break;
            }
            match self.latest(&c.name).map(|r| (r.running(), r.exit_code())) {
                Some((_, Some(0))) => continue,
                Some((true, _)) => {
                    initialized = false;
                    break;
                }
                Some((false, Some(_))) if policy == "Never" => {
                    // Failed for good: the pod fails.
                    initialized = false;
                    break;
                }
                _ => {
                    self.start_if_due(ctx, pod, c, true).await;
                    initialized = false;
                    break;
                }
            }
        }
        if initialized {
            // Sidecars restart whenever they end, for as long as the pod runs.
            for c in inits.iter().filter(|c| is_sidecar(c)) {
                match self.latest(&c.name) {
                    Some(r) if r.running() => {}
                    _ => self.start_if_due(ctx, pod, c, true).await,
                }
            }
            for c in &apps {
                match self.latest(&c.name) {
                    None => self.start_if_due(ctx, pod, c, false).await,
                    Some(r) if r.running() => {
                        let (id, started) = (r.meta.id.clone(), r.meta.started_at.clone());
                        self.run_probes(ctx, pod, c, &id, started.as_deref()).await;
                    }
                    Some(r) => {
                        let code = r.exit_code().unwrap_or(0);
                        if restarts(&policy, code) {
                            self.start_if_due(ctx, pod, c, false).await;
                        }
                    }
                }
            }
            // Ephemeral containers run once, never restarted.
            for (c, _) in ephemeral_containers(pod) {
                if self.latest(&c.name).is_none() {
                    self.start_if_due(ctx, pod, &c, false).await;
                }
            }
        }
        self.refresh_volumes(ctx, pod).await;
        self.mark_running(ctx, pod);
        self.post_status(ctx, pod).await;
    }

    /// Brings configMap, secret and downwardAPI volumes up to date every [`VOLUME_RESYNC`],
    /// as the kubelet's periodic sync does.
    async fn refresh_volumes(&mut self, ctx: &Ctx, pod: &Pod) {
        if self
            .volumes_synced
            .is_some_and(|t| t.elapsed() < VOLUME_RESYNC)
        {
            return;
        }
        let Some(sb) = &self.sandbox else { return };
        self.volumes_synced = Some(Instant::now());
        let sources = Sources::new(ctx.client.clone(), pod.namespace().unwrap_or_default());
        let host_ip = ctx.config.node_ip.to_string();
        let at = crate::volumes::Downward {
            pod_ip: sb.ip(),
            host_ip: &host_ip,
            node: ctx.capacity,
        };
        if let Err(msg) = crate::volumes::ensure(pod, &ctx.pod_dir(&self.uid), &sources, at).await {
            self.mount_failed(ctx, pod, msg);
        }
    }

    /// Reports a volume that cannot be provided with a `FailedMount` event, once per distinct
    /// message (the sync loop retries every second).
    fn mount_failed(&mut self, ctx: &Ctx, pod: &Pod, msg: String) {
        if self.mount_error.as_ref() != Some(&msg) {
            tracing::warn!(pod = %pod.name_any(), "{msg}");
            ctx.events.pod(pod, None, true, "FailedMount", msg.clone());
            self.mount_error = Some(msg);
        }
    }

    fn mark_running(&self, ctx: &Ctx, pod: &Pod) {
        let ns = pod.namespace().unwrap_or_default();
        let netns =
            runtime::namespaces::Paths::under(&ctx.pod_dir(&self.uid), own_namespaces(pod)).net;
        let mut running = ctx.running.lock().unwrap_or_else(|e| e.into_inner());
        for (name, list) in &self.records {
            let key = (ns.clone(), pod.name_any(), name.clone());
            if let Some(r) = list.last().filter(|r| r.running()) {
                running.insert(
                    key,
                    Running {
                        uid: self.uid.clone(),
                        cgroup: r.meta.cgroup.clone(),
                        id: r.meta.id.clone(),
                        netns: netns.clone(),
                    },
                );
            } else {
                running.remove(&key);
            }
        }
    }

    async fn run_probes(
        &mut self,
        ctx: &Ctx,
        pod: &Pod,
        c: &Container,
        id: &str,
        started: Option<&str>,
    ) {
        let ip = self
            .sandbox
            .as_ref()
            .map(|s| s.ip().to_string())
            .unwrap_or_default();
        let started = started.and_then(parse_time).unwrap_or_else(Timestamp::now);
        let outcome = self.probes.run(ctx, pod, c, id, &ip, started).await;
        if let Some(why) = outcome.kill {
            ctx.events
                .pod(pod, Some(field(c, false)), false, "Killing", why);
            let _ = ctx.runc.kill(id, "KILL").await;
        }
    }

    /// Starts container `c` (a new attempt) unless it is backing off.
    async fn start_if_due(&mut self, ctx: &Ctx, pod: &Pod, c: &Container, init: bool) {
        let previous = self.latest(&c.name).cloned();
        let attempt = previous.as_ref().map(|r| r.meta.attempt + 1).unwrap_or(0);
        if let Some(prev) = &previous {
            let finished = prev
                .exit
                .as_ref()
                .and_then(|e| parse_time(&e.finished_at))
                .unwrap_or_else(Timestamp::now);
            let ran = prev
                .meta
                .started_at
                .as_deref()
                .and_then(parse_time)
                .map(|s| finished.duration_since(s).unsigned_abs())
                .unwrap_or_default();
            let delay = if ran > BACKOFF_RESET {
                Duration::ZERO
            } else {
                backoff(attempt)
            };
            let waited = Timestamp::now().duration_since(finished).unsigned_abs();
            if waited < delay {
                let msg = format!(
                    "back-off {}s restarting failed container={} pod={}_{}({})",
                    delay.as_secs(),
                    c.name,
                    pod.name_any(),
                    pod.namespace().unwrap_or_default(),
                    self.uid
                );
                let w = Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(msg),
                };
                if self.waiting.get(&c.name) != Some(&w) {
                    event(
                        ctx,
                        pod,
                        c,
                        init,
                        true,
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {} in pod {}_{}({})",
                            c.name,
                            pod.name_any(),
                            pod.namespace().unwrap_or_default(),
                            self.uid
                        ),
                    );
                }
                self.waiting.insert(c.name.clone(), w);
                return;
            }
        }
        match self.start(ctx, pod, c, init, attempt).await {
            Ok(record) => {
                self.waiting.remove(&c.name);
                self.probes.reset(&c.name);
                self.records.entry(c.name.clone()).or_default().push(record);
            }
            Err(w) => {
                self.waiting.insert(c.name.clone(), w);
            }
        }
    }

    /// Pulls the image if need be; the image or the waiting state to show.
    async fn image(
        &mut self,
        ctx: &Ctx,
        pod: &Pod,
        c: &Container,
        init: bool,
    ) -> Result<image::Image, Waiting> {
        let name = c.image.clone().unwrap_or_default();
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            if name.ends_with(":latest") || !name.rsplit('/').next().unwrap_or("").contains(':') {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        let local = ctx.images.get(&name);
        if let Some(img) = &local
            && policy != "Always"
        {
            return Ok(img.clone());
        }
        if policy == "Never" {
            let msg = format!("Container image {name:?} is not present with pull policy of Never");
            event(ctx, pod, c, init, true, "ErrImageNeverPull", msg.clone());
            return Err(Waiting {
                reason: "ErrImageNeverPull".into(),
                message: Some(msg),
            });
        }
        if let Some(f) = self.pulls.get(&name)
            && Instant::now() < f.until
        {
            return Err(Waiting {
                reason: "ImagePullBackOff".into(),
                message: Some(format!("Back-off pulling image {name:?}: {}", f.message)),
            });
        }
        event(
            ctx,
            pod,
            c,
            init,
            false,
            "Pulling",
            format!("Pulling image {name:?}"),
        );
        let t0 = Instant::now();
        let auth = pull_auth(ctx, pod, &name).await;
        match ctx.images.pull(&name, &auth, &ctx.config.registries).await {
            Ok(img) => {
                self.pulls.remove(&name);
                let took = t0.elapsed().as_secs_f64();
                event(
                    ctx,
                    pod,
                    c,
                    init,
                    false,
                    "Pulled",
                    format!(
                        "Successfully pulled image {name:?} in {took:.3}s ({took:.3}s including waiting). Image size: {} bytes.",
                        img.size
                    ),
                );
                Ok(img)
            }
            Err(e) => {
                let message = e.to_string();
                let failures = self.pulls.get(&name).map(|f| f.failures + 1).unwrap_or(1);
                let delay =
                    Duration::from_secs(10 * (1u64 << (failures - 1).min(5))).min(MAX_BACKOFF);
                self.pulls.insert(
                    name.clone(),
                    PullFailure {
                        failures,
                        until: Instant::now() + delay,
                        message: message.clone(),
                    },
                );
                event(
                    ctx,
                    pod,
                    c,
                    init,
                    true,
                    "Failed",
                    format!("Failed to pull image {name:?}: {message}"),
                );
                event(
                    ctx,
                    pod,
                    c,
                    init,
                    true,
                    "Failed",
                    "Error: ErrImagePull".into(),
                );
                Err(Waiting {
                    reason: "ErrImagePull".into(),
                    message: Some(message),
                })
            }
        }
    }

    /// Creates and starts one attempt of container `c`.
    #[expect(
        clippy::too_many_lines,
        reason = "written before the 150-line limit; to be split along its steps (issue 15)"
    )]
    async fn start(
        &mut self,
        ctx: &Ctx,
        pod: &Pod,
        c: &Container,
        init: bool,
        attempt: u32,
    ) -> Result<Record, Waiting> {
        self.waiting.insert(
            c.name.clone(),
            Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
        );
        let img = self.image(ctx, pod, c, init).await?;
        let pass = ctx.gate.enter(self.arrival).await;
        let ns = pod.namespace().unwrap_or_default();
        let sources = Sources::new(ctx.client.clone(), ns.clone());
        let sandbox = self.sandbox.clone().ok_or_else(|| Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        })?;
        let host_ip = ctx.config.node_ip.to_string();
        let config_error = |msg: String| {
            event(ctx, pod, c, init, true, "Failed", format!("Error: {msg}"));
            Waiting {
                reason: "CreateContainerConfigError".into(),
                message: Some(msg),
            }
        };
        let env = crate::env::build(
            pod,
            c,
            &img.config.env,
            &sources,
            sandbox.ip(),
            &host_ip,
            ctx.capacity,
        )
        .await
        .map_err(config_error)?;
        let at = crate::volumes::Downward {
            pod_ip: sandbox.ip(),
            host_ip: &host_ip,
            node: ctx.capacity,
        };
        let vols = match crate::volumes::ensure(pod, &ctx.pod_dir(&self.uid), &sources, at).await {
            Ok(vols) => {
                self.mount_error = None;
                vols
            }
            Err(msg) => {
                self.mount_failed(ctx, pod, msg);
                return Err(Waiting {
                    reason: "ContainerCreating".into(),
                    message: None,
                });
            }
        };
        let vars = crate::env::as_map(&env);
        let expand = |v: &Vec<String>| {
            v.iter()
                .map(|s| crate::env::expand(s, &vars))
                .collect::<Vec<_>>()
        };
        let (mut args, cmd) = match (&c.command, &c.args) {
            (Some(command), args) => (
                expand(command),
                args.as_ref().map(expand).unwrap_or_default(),
            ),
            (None, Some(args)) => (img.config.entrypoint.clone(), expand(args)),
            (None, None) => (img.config.entrypoint.clone(), img.config.cmd.clone()),
        };
        args.extend(cmd);
        if args.is_empty() {
            return Err(config_error("no command specified".into()));
        }
        let id = containers::new_id();
        let dir = containers::dir(ctx.data(), &id);
        let log = ctx
            .config
            .pod_log_dir
            .join(format!("{ns}_{}_{}", pod.name_any(), self.uid))
            .join(&c.name)
            .join(format!("{attempt}.log"));
        let sec = c.security_context.clone().unwrap_or_default();
        let pod_sec = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.clone())
            .unwrap_or_default();
        let (image_uid, image_gid) =
            image_user(img.config.user.as_deref().unwrap_or(""), &img.layers);
        let uid = sec
            .run_as_user
            .or(pod_sec.run_as_user)
            .map(|u| u as u32)
            .unwrap_or(image_uid);
        let gid = sec
            .run_as_group
            .or(pod_sec.run_as_group)
            .map(|g| g as u32)
            .unwrap_or(image_gid);
        if sec.run_as_non_root.or(pod_sec.run_as_non_root) == Some(true) && uid == 0 {
            return Err(config_error(
                "container has runAsNonRoot and image will run as root".into(),
            ));
        }
        let mut extra_gids: Vec<u32> = pod_sec
            .supplemental_groups
            .iter()
            .flatten()
            .map(|g| *g as u32)
            .collect();
        if let Some(fs) = pod_sec.fs_group {
            extra_gids.push(fs as u32);
        }
        let meta = Meta {
            id: id.clone(),
            pod_uid: self.uid.clone(),
            name: c.name.clone(),
            init,
            attempt,
            image: c.image.clone().unwrap_or_default(),
            image_id: img.repo_digest.clone().unwrap_or_else(|| img.id.clone()),
            created_at: Timestamp::now().to_string(),
            started_at: None,
            cgroup: format!("{}/{id}", pod_cgroup(pod, &self.uid)),
            log: log.clone(),
            start_error: None,
        };
        let mut record = Record::new(meta);
        let create_error = |msg: String| Waiting {
            reason: "CreateContainerError".into(),
            message: Some(msg),
        };
        record
            .save(ctx.data())
            .map_err(|e| create_error(format!("{e:#}")))?;
        let snapshot = Snapshot::under(&dir);
        snapshot
            .mount(&img.layers)
            .map_err(|e| create_error(format!("{e:#}")))?;
        let mut volumes = Vec::new();
        let pod_dir = ctx.pod_dir(&self.uid);
        for (file, dest) in [
            ("hosts", "/etc/hosts"),
            ("hostname", "/etc/hostname"),
            ("resolv.conf", "/etc/resolv.conf"),
        ] {
            volumes.push(runtime::spec::Volume::Bind {
                source: pod_dir.join(file),
                destination: dest.into(),
                read_only: false,
            });
        }
        // Mode 0666, as the kubelet makes it: a container running as any user can write it.
        let term = dir.join("termination-log");
        let _ = std::fs::write(&term, b"");
        let _ = std::fs::set_permissions(&term, std::fs::Permissions::from_mode(0o666));
        volumes.push(runtime::spec::Volume::Bind {
            source: term,
            destination: c
                .termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
            read_only: false,
        });
        for m in c.volume_mounts.iter().flatten() {
            let Some(v) = vols.get(&m.name) else {
                return Err(create_error(format!(
                    "volume {:?} not found in the pod",
                    m.name
                )));
            };
            let mut source = v.path.clone();
            let sub = match (m.sub_path_expr.as_deref(), m.sub_path.as_deref()) {
                (Some(expr), _) if !expr.is_empty() => {
                    Some(crate::env::expand_sub_path(expr, &vars).map_err(config_error)?)
                }
                (_, Some(sub)) if !sub.is_empty() => Some(sub.to_string()),
                _ => None,
            };
            if let Some(sub) = sub {
                if sub.starts_with('/') {
                    return Err(config_error(format!(
                        "error SubPath `{sub}` must not be an absolute path"
                    )));
                }
                if sub.split('/').any(|p| p == "..") {
                    return Err(config_error(format!(
                        "unable to provision SubPath `{sub}`: must not contain '..'"
                    )));
                }
                source = source.join(sub);
                if !source.exists() {
                    let _ = std::fs::create_dir_all(&source);
                }
            }
            volumes.push(runtime::spec::Volume::Bind {
                source,
                destination: m.mount_path.clone(),
                read_only: m.read_only.unwrap_or(false) || v.read_only,
            });
        }
        let mut join = Vec::new();
        // An ephemeral container with a target shares the target's processes.
        if let Some(target) = ephemeral_containers(pod)
            .into_iter()
            .find(|(e, _)| e.name == c.name)
            .and_then(|(_, t)| t)
            && let Some(id) = self
                .latest(&target)
                .filter(|r| r.running())
                .map(|r| r.meta.id.clone())
            && let Some(state) = ctx.runc.state(&id).await
        {
            join.push((
                "pid".to_string(),
                PathBuf::from(format!("/proc/{}/ns/pid", state.pid)),
            ));
        }
        let paths = runtime::namespaces::Paths::under(&pod_dir, own_namespaces(pod));
        for (kind, p) in [
            ("network", &paths.net),
            ("uts", &paths.uts),
            ("ipc", &paths.ipc),
        ] {
            if let Some(p) = p {
                join.push((kind.to_string(), p.clone()));
            }
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let mut host = Vec::new();
        if spec.host_network == Some(true) {
            host.extend(["network".to_string(), "uts".into()]);
        }
        if spec.host_ipc == Some(true) {
            host.push("ipc".into());
        }
        if spec.host_pid == Some(true) {
            host.push("pid".into());
        }
        let seccomp = seccomp(
            ctx,
            sec.seccomp_profile
                .as_ref()
                .or(pod_sec.seccomp_profile.as_ref()),
        )
        .map_err(create_error)?;
        let caps = sec.capabilities.clone().unwrap_or_default();
        let container = runtime::spec::Container {
            args,
            env,
            cwd: c
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| img.config.working_dir.clone().unwrap_or_default()),
            uid,
            gid,
            additional_gids: extra_gids,
            hostname: pod_hostname(pod),
            rootfs: snapshot.rootfs.clone(),
            read_only_rootfs: sec.read_only_root_filesystem.unwrap_or(false),
            join,
            host,
            volumes,
            cgroups_path: record.meta.cgroup.clone(),
            resources: resources(c),
            privileged: sec.privileged.unwrap_or(false),
            cap_add: caps.add.unwrap_or_default(),
            cap_drop: caps.drop.unwrap_or_default(),
            no_new_privileges: sec.allow_privilege_escalation == Some(false),
            terminal: c.tty == Some(true),
            seccomp,
            sysctls: sysctls(pod),
        };
        container
            .write(&dir)
            .map_err(|e| create_error(format!("{e:#}")))?;
        let shim = runtime::shim::Args {
            runtime: ctx.runc.binary.clone(),
            root: ctx.runc.root.clone(),
            id: id.clone(),
            bundle: dir.clone(),
            log,
            exit_file: containers::exit_file(ctx.data(), &id),
            stdin: c.stdin == Some(true),
            stdin_once: c.stdin_once == Some(true),
            tty: c.tty == Some(true),
        };
        match runtime::shim::spawn(&ctx.exe, &shim).await {
            Ok(_pid) => {}
            Err(e) => {
                let msg = format!(
                    "failed to create containerd task: failed to create shim task: OCI runtime create failed: {e:#}: unknown"
                );
                event(ctx, pod, c, init, true, "Failed", format!("Error: {msg}"));
                record.meta.start_error = Some(msg);
                record.meta.started_at = Some(Timestamp::now().to_string());
                let _ = record.save(ctx.data());
                return Ok(record);
            }
        }
        event(
            ctx,
            pod,
            c,
            init,
            false,
            "Created",
            format!("Created container: {}", c.name),
        );
        if let Err(e) = ctx.runc.start(&id).await {
            let msg = format!("{e:#}");
            event(ctx, pod, c, init, true, "Failed", format!("Error: {msg}"));
            let _ = ctx.runc.delete(&id).await;
            record.meta.start_error = Some(msg);
            record.meta.started_at = Some(Timestamp::now().to_string());
            let _ = record.save(ctx.data());
            return Ok(record);
        }
        record.meta.started_at = Some(Timestamp::now().to_string());
        let _ = record.save(ctx.data());
        drop(pass);
        if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref())
            && let Err(msg) = crate::probe::hook(ctx, c, &id, sandbox.ip(), h).await
        {
            event(
                ctx,
                pod,
                c,
                init,
                true,
                "FailedPostStartHook",
                format!("PostStartHook failed: {msg}"),
            );
            let _ = ctx.runc.kill(&id, "KILL").await;
        }
        event(
            ctx,
            pod,
            c,
            init,
            false,
            "Started",
            format!("Started container {}", c.name),
        );
        Ok(record)
    }

    /// Stops every running container: SIGTERM, then SIGKILL after `grace`.
    async fn stop_all(&mut self, ctx: &Ctx, pod: &Pod, grace: Duration) {
        let running: Vec<(String, String)> = self
            .records
            .values()
            .filter_map(|l| l.last())
            .filter(|r| r.running())
            .map(|r| (r.meta.id.clone(), r.meta.name.clone()))
            .collect();
        if running.is_empty() {
            return;
        }
        let t0 = Instant::now();
        self.pre_stop(ctx, pod, &running, grace).await;
        let grace = grace.saturating_sub(t0.elapsed());
        for (id, name) in &running {
            ctx.events.pod(
                pod,
                Some(format!("spec.containers{{{name}}}")),
                false,
                "Killing",
                format!("Stopping container {name}"),
            );
            let signal = if grace.is_zero() { "KILL" } else { "TERM" };
            if let Err(e) = ctx.runc.kill(id, signal).await {
                tracing::debug!("{e:#}");
            }
        }
        let deadline = Instant::now() + grace;
        let all_done = |ctx: &Ctx| {
            running
                .iter()
                .all(|(id, _)| containers::exit_file(ctx.data(), id).exists())
        };
        while !all_done(ctx) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !all_done(ctx) {
            for (id, _) in &running {
                let _ = ctx.runc.kill(id, "KILL").await;
            }
            let hard = Instant::now() + Duration::from_secs(5);
            while !all_done(ctx) && Instant::now() < hard {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.refresh(ctx).await;
        self.mark_running(ctx, pod);
    }

    /// Runs the preStop hooks of the running containers, all at once, within `grace`.
    async fn pre_stop(&self, ctx: &Ctx, pod: &Pod, running: &[(String, String)], grace: Duration) {
        let (inits, apps) = spec_containers(pod);
        let ip = self
            .sandbox
            .as_ref()
            .map(|s| s.ip().to_string())
            .unwrap_or_default();
        let hooks = running.iter().filter_map(|(id, name)| {
            let c = apps.iter().chain(inits.iter()).find(|c| &c.name == name)?;
            let h = c.lifecycle.as_ref()?.pre_stop.as_ref()?;
            Some((id, c, h))
        });
        let runs = hooks.map(|(id, c, h)| {
            let ip = ip.clone();
            async move {
                let r = tokio::time::timeout(grace, crate::probe::hook(ctx, c, id, &ip, h)).await;
                let err = match r {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => e,
                    Err(_) => format!(
                        "the hook did not finish within the grace period ({}s)",
                        grace.as_secs()
                    ),
                };
                ctx.events.pod(
                    pod,
                    Some(field(c, false)),
                    true,
                    "FailedPreStopHook",
                    format!("PreStopHook failed: {err}"),
                );
            }
        });
        futures::future::join_all(runs).await;
    }

    async fn teardown_sandbox(&mut self, ctx: &Ctx, pod: &Pod) {
        let dir = ctx.pod_dir(&self.uid);
        if let Some(sb) = self.sandbox.take()
            && !sb.host_network
        {
            let net = dir.join("ns").join("net");
            if let Err(e) = ctx
                .network
                .del(&self.uid, &net, &sb.port_mappings(), sb.cni_result.as_ref())
                .await
            {
                tracing::warn!(pod = %pod.name_any(), "tearing down the pod network: {e:#}");
            }
        }
        if let Err(e) = runtime::namespaces::remove(&dir) {
            tracing::warn!(pod = %pod.name_any(), "{e:#}");
        }
        let _ = std::fs::remove_file(dir.join("sandbox.json"));
    }

    /// Removes everything of the pod from the host.
    async fn cleanup(&mut self, ctx: &Ctx, pod: Option<&Pod>) {
        for list in std::mem::take(&mut self.records).into_values() {
            for r in list {
                let _ = ctx.runc.delete(&r.meta.id).await;
                remove_record(ctx, &r).await;
            }
        }
        let dir = ctx.pod_dir(&self.uid);
        if let Some(pod) = pod {
            self.teardown_sandbox(ctx, pod).await;
            let cg = pod_cgroup(pod, &self.uid);
            runtime::cgroups::remove(&cg);
        } else {
            if let Some(sb) = self.sandbox.take()
                && !sb.host_network
            {
                let _ = ctx
                    .network
                    .del(
                        &self.uid,
                        &dir.join("ns/net"),
                        &sb.port_mappings(),
                        sb.cni_result.as_ref(),
                    )
                    .await;
            }
            let _ = runtime::namespaces::remove(&dir);
            for qos in ["", "/burstable", "/besteffort"] {
                runtime::cgroups::remove(&format!("/rudder{qos}/pod{}", self.uid));
            }
        }
        crate::volumes::teardown(&dir);
        runtime::rootfs::unmount_below(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        // The pod's log directory goes with it, as the kubelet's does.
        let suffix = format!("_{}", self.uid);
        for e in std::fs::read_dir(&ctx.config.pod_log_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name().to_string_lossy().ends_with(&suffix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Graceful deletion: stop within the grace period, report, remove the object.
    async fn terminate(&mut self, ctx: &Ctx, pod: &Pod) {
        self.stop_all(ctx, pod, grace_period(pod)).await;
        self.finished = true;
        self.post_status(ctx, pod).await;
        self.cleanup(ctx, Some(pod)).await;
        let api: Api<Pod> =
            Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&pod.name_any(), &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(pod = %pod.name_any(), "removing the pod: {e}"),
        }
    }

    /// Computes the status and patches it when it changed.
    async fn post_status(&mut self, ctx: &Ctx, pod: &Pod) {
        let status = crate::status::build(&crate::status::Input {
            pod,
            records: &self.records,
            waiting: &self
                .waiting
                .iter()
                .map(|(k, w)| (k.clone(), (w.reason.clone(), w.message.clone())))
                .collect(),
            ready: &self.probes.ready_map(),
            sandbox_ready: self.sandbox.is_some() && !self.finished,
            ips: self
                .sandbox
                .as_ref()
                .map(|s| s.ips.clone())
                .unwrap_or_default(),
            host_ip: ctx.config.node_ip.to_string(),
            start_time: self.start_time,
            runtime: ctx.runc.name(),
            deleting: pod::is_terminating(pod) || self.finished,
            data: ctx.data(),
            failure: self.failure.clone(),
        });
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> =
            Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
        let mut patch = json!({"status": status.clone()});
        patch["metadata"] = json!({"uid": pod.uid()});
        match api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => self.last_status = Some(status),
            Err(e) => tracing::debug!(pod = %pod.name_any(), "posting the pod status: {e}"),
        }
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

/// The pod's grace period for stopping its containers.
fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0);
    Duration::from_secs(secs as u64)
}

fn own_namespaces(pod: &Pod) -> runtime::namespaces::Own {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_net = spec.host_network == Some(true);
    runtime::namespaces::Own {
        net: !host_net,
        uts: !host_net,
        ipc: spec.host_ipc != Some(true),
    }
}

fn pod_hostname(pod: &Pod) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.host_network == Some(true) {
        return std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string();
    }
    let name = spec
        .hostname
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.name_any());
    name.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_string()
}

/// hostPorts of the pod's containers: (host, container, protocol, host IP).
fn host_ports(pod: &Pod) -> Vec<(u16, u16, String, Option<String>)> {
    let (_, apps) = spec_containers(pod);
    let mut out = Vec::new();
    for c in &apps {
        for p in c.ports.iter().flatten() {
            if let Some(h) = p.host_port.filter(|h| *h > 0) {
                out.push((
                    h as u16,
                    p.container_port as u16,
                    p.protocol
                        .clone()
                        .unwrap_or_else(|| "TCP".into())
                        .to_lowercase(),
                    p.host_ip.clone().filter(|s| !s.is_empty()),
                ));
            }
        }
    }
    out
}

/// The pod's cgroup under the QoS tiers, as the kubelet's cgroupfs layout.
fn pod_cgroup(pod: &Pod, uid: &str) -> String {
    let qos = pod
        .status
        .as_ref()
        .and_then(|s| s.qos_class.as_deref())
        .unwrap_or("BestEffort");
    match qos {
        "Guaranteed" => format!("/rudder/pod{uid}"),
        "Burstable" => format!("/rudder/burstable/pod{uid}"),
        _ => format!("/rudder/besteffort/pod{uid}"),
    }
}

/// The pod group's limits, as upstream's `ResourceConfigForPod`: memory and CPU limits are
/// the sums of the app containers' (or the largest init container's, if larger) when every
/// container has one, CPU shares the sum of the requests.
fn pod_limits(pod: &Pod) -> runtime::cgroups::Limits {
    let (inits, apps) = spec_containers(pod);
    let of =
        |cs: &[Container]| -> Vec<runtime::spec::Resources> { cs.iter().map(resources).collect() };
    let (inits, apps) = (of(&inits), of(&apps));
    let sum_or_none = |rs: &[runtime::spec::Resources],
                       f: &dyn Fn(&runtime::spec::Resources) -> Option<u64>| {
        rs.iter().map(f).sum::<Option<u64>>()
    };
    let need = |f: &dyn Fn(&runtime::spec::Resources) -> Option<u64>| -> Option<u64> {
        let apps = sum_or_none(&apps, f)?;
        let init = inits.iter().map(f).collect::<Option<Vec<u64>>>()?;
        Some(apps.max(init.into_iter().max().unwrap_or(0)))
    };
    let period = 100_000u64;
    // The RuntimeClass's overhead (`spec.overhead`) adds to each sum, as upstream's.
    let overhead = |k: &str| {
        pod.spec
            .as_ref()
            .and_then(|s| s.overhead.as_ref())
            .and_then(|o| o.get(k))
            .and_then(|q| api::quantity::Quantity::parse(&q.0).ok())
    };
    let cpu_overhead = overhead("cpu").map_or(0, |q| q.milli().max(0) as u64);
    let memory_overhead = overhead("memory").map_or(0, |q| q.units().max(0) as u64);
    let memory = need(&|r| r.memory_limit.map(|m| m.max(0) as u64)).map(|m| m + memory_overhead);
    let quota =
        need(&|r| r.cpu_quota.map(|q| q.max(0) as u64)).map(|q| q + cpu_overhead * period / 1000);
    // Containers without a CPU request (the minimum 2 shares) add nothing.
    let overhead_shares = if cpu_overhead > 0 {
        runtime::spec::cpu_shares(cpu_overhead)
    } else {
        0
    };
    let shares = (need(&|r| Some(r.cpu_shares.filter(|s| *s > 2).unwrap_or(0))).unwrap_or(0)
        + overhead_shares)
        .max(2);
    runtime::cgroups::Limits {
        memory,
        cpu_shares: shares,
        cpu_quota: quota.map(|q| (q, period)),
    }
}

/// Limits from the container's resources.
fn resources(c: &Container) -> runtime::spec::Resources {
    let r = c.resources.clone().unwrap_or_default();
    let get =
        |m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
         k: &str| {
            m.as_ref()
                .and_then(|m| m.get(k))
                .and_then(|q| api::quantity::Quantity::parse(&q.0).ok())
        };
    let cpu_req = get(&r.requests, "cpu").or_else(|| get(&r.limits, "cpu"));
    let cpu_lim = get(&r.limits, "cpu");
    let mem_lim = get(&r.limits, "memory");
    let period = 100_000u64;
    runtime::spec::Resources {
        cpu_shares: Some(
            cpu_req
                .map(|q| runtime::spec::cpu_shares(q.milli().max(0) as u64))
                .unwrap_or(2),
        ),
        cpu_quota: cpu_lim.map(|q| runtime::spec::cpu_quota(q.milli().max(0) as u64, period)),
        cpu_period: cpu_lim.map(|_| period),
        memory_limit: mem_lim.map(|q| q.units() as i64),
        pids_limit: None,
    }
}

/// The image's `user` (`uid`, `uid:gid`, or a name looked up in its /etc/passwd).
fn image_user(user: &str, layers: &[PathBuf]) -> (u32, u32) {
    if user.is_empty() {
        return (0, 0);
    }
    let (u, g) = user
        .split_once(':')
        .map(|(u, g)| (u, Some(g)))
        .unwrap_or((user, None));
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        for l in layers.iter().rev() {
            if let Ok(text) = std::fs::read_to_string(l.join(file)) {
                for line in text.lines() {
                    let f: Vec<&str> = line.split(':').collect();
                    if f.len() >= 4 && f[0] == name {
                        return Some((f[2].parse().ok()?, f[3].parse().ok()?));
                    }
                }
            }
        }
        None
    };
    let (uid, mut gid) = match u.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) => lookup("etc/passwd", u).unwrap_or((0, 0)),
    };
    if let Some(g) = g {
        gid = g
            .parse()
            .ok()
            .or_else(|| lookup("etc/group", g).map(|x| x.0))
            .unwrap_or(gid);
    }
    (uid, gid)
}

/// /etc/hosts, /etc/hostname and /etc/resolv.conf for the pod's containers.
fn write_etc(
    dir: &Path,
    pod: &Pod,
    hostname: &str,
    ip: &str,
    dns: Option<&crate::ClusterDns>,
) -> std::io::Result<()> {
    let domain = dns.map_or("cluster.local", |d| d.domain.as_str());
    let mut hosts = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let spec = pod.spec.clone().unwrap_or_default();
    if !host_network(pod) {
        let fqdn = spec
            .subdomain
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                format!(
                    "{hostname}.{s}.{}.svc.{domain}\t",
                    pod.namespace().unwrap_or_default()
                )
            })
            .unwrap_or_default();
        hosts.push_str(&format!("{ip}\t{fqdn}{hostname}\n"));
    } else if let Ok(h) = std::fs::read_to_string("/etc/hosts") {
        // The host's file, as upstream's kubelet copies it for host-network pods.
        hosts = h;
    }
    for a in spec.host_aliases.iter().flatten() {
        hosts.push_str(&format!(
            "\n# Entries added by HostAliases.\n{}\t{}\n",
            a.ip,
            a.hostnames.clone().unwrap_or_default().join("\t")
        ));
    }
    std::fs::write(dir.join("hosts"), hosts)?;
    std::fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let namespace = pod.namespace().unwrap_or_default();
    let text = resolv_conf(&spec, &host, dns.map(|d| (d, namespace.as_str())));
    std::fs::write(dir.join("resolv.conf"), text)
}

/// Whether a pod resolves through cluster DNS, as the kubelet decides: `ClusterFirst` (the
/// default) unless on the host's network, `ClusterFirstWithHostNet` always.
fn cluster_first(spec: &k8s_openapi::api::core::v1::PodSpec) -> bool {
    let host_network = spec.host_network.unwrap_or(false);
    match spec.dns_policy.as_deref().unwrap_or("ClusterFirst") {
        "ClusterFirst" => !host_network,
        "ClusterFirstWithHostNet" => true,
        _ => false,
    }
}

/// The pod's resolv.conf, as the kubelet makes it: cluster DNS for the cluster-first policies
/// when the node has it (`dns`, with the pod's namespace), the service search domains before
/// the node's and `ndots:5`; else the node's (`Default`, and cluster-first without cluster
/// DNS, as the kubelet without `--cluster-dns`), or nothing (`None`); then `dnsConfig`'s
/// nameservers (three at most in all) and searches appended and its options merged by name.
fn resolv_conf(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    host: &str,
    dns: Option<(&crate::ClusterDns, &str)>,
) -> String {
    let (mut servers, mut searches, mut options) = (Vec::new(), Vec::new(), Vec::new());
    let cluster = dns.filter(|_| cluster_first(spec));
    if spec.dns_policy.as_deref() != Some("None") {
        for line in host.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => servers.extend(words.next().map(str::to_string)),
                // The last search or domain line wins, as in resolv.conf(5).
                Some("search" | "domain") => searches = words.map(str::to_string).collect(),
                Some("options") => options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
    }
    if let Some((dns, namespace)) = cluster {
        // The node's nameservers give way; its search domains follow the cluster's.
        servers = vec![dns.address.to_string()];
        let d = &dns.domain;
        let mut all = vec![
            format!("{namespace}.svc.{d}"),
            format!("svc.{d}"),
            d.clone(),
        ];
        for s in searches {
            if !all.contains(&s) {
                all.push(s);
            }
        }
        searches = all;
        options = vec!["ndots:5".to_string()];
    }
    if let Some(cfg) = &spec.dns_config {
        for n in cfg.nameservers.iter().flatten() {
            if !servers.contains(n) {
                servers.push(n.clone());
            }
        }
        for d in cfg.searches.iter().flatten() {
            if !searches.contains(d) {
                searches.push(d.clone());
            }
        }
        for o in cfg.options.iter().flatten() {
            let opt = match &o.value {
                Some(v) => format!("{}:{v}", o.name.clone().unwrap_or_default()),
                None => o.name.clone().unwrap_or_default(),
            };
            let name = |s: &String| s.split(':').next().unwrap_or_default().to_string();
            options.retain(|old| name(old) != name(&opt));
            options.push(opt);
        }
    }
    servers.truncate(3);
    let mut out = String::new();
    for s in &servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

async fn pull_auth(ctx: &Ctx, pod: &Pod, name: &str) -> image::Auth {
    let registry = image::Reference::parse(name)
        .map(|r| r.registry)
        .unwrap_or_default();
    let sources = Sources::new(ctx.client.clone(), pod.namespace().unwrap_or_default());
    for s in pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .into_iter()
        .flatten()
    {
        if let Ok(Some(data)) = sources.secret(&s.name).await
            && let Some(json) = data.get(".dockerconfigjson")
            && let Some(auth) = image::auth_from_docker_config(json, &registry)
        {
            return auth;
        }
    }
    image::Auth::Anonymous
}

/// Releases a container that ended: its runtime state, cgroup and root filesystem.
async fn release(ctx: &Ctx, r: &mut Record) {
    if let Err(e) = ctx.runc.delete(&r.meta.id).await {
        tracing::debug!("{e:#}");
    }
    runtime::cgroups::remove(&r.meta.cgroup);
    if let Err(e) = Snapshot::under(&containers::dir(ctx.data(), &r.meta.id)).remove() {
        tracing::warn!("{e:#}");
    }
    r.released = true;
}

/// Forgets a container: its directory and log file.
async fn remove_record(ctx: &Ctx, r: &Record) {
    let dir = containers::dir(ctx.data(), &r.meta.id);
    let _ = Snapshot::under(&dir).remove();
    runtime::cgroups::remove(&r.meta.cgroup);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&r.meta.log);
}

/// A worker: follows its pod until it is gone from the node.
async fn worker(
    ctx: Arc<Ctx>,
    uid: String,
    mut rx: watch::Receiver<Option<Arc<Pod>>>,
    recovered: Vec<Record>,
) {
    let mut st = PodState::new(uid, recovered, &ctx);
    loop {
        let pod = rx.borrow_and_update().clone();
        match pod {
            None => {
                st.stop_all_quick(&ctx).await;
                st.cleanup(&ctx, None).await;
                return;
            }
            Some(pod) if pod::is_terminating(&pod) => {
                st.terminate(&ctx, &pod).await;
                return;
            }
            Some(pod) => st.sync(&ctx, &pod).await,
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return; },
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

impl PodState {
    /// Kills what still runs, at once (the pod object is gone).
    async fn stop_all_quick(&mut self, ctx: &Ctx) {
        for list in self.records.values() {
            if let Some(r) = list.last()
                && r.running()
            {
                let _ = ctx.runc.kill(&r.meta.id, "KILL").await;
            }
        }
    }
}

/// Watches the node's pods and runs a worker for each.
pub(crate) async fn run(ctx: Arc<Ctx>) {
    let mut recovered: HashMap<String, Vec<Record>> = HashMap::new();
    for r in containers::load_all(ctx.data()) {
        recovered.entry(r.meta.pod_uid.clone()).or_default().push(r);
    }
    // Pod directories without containers are recovered too (a sandbox may exist).
    for e in std::fs::read_dir(ctx.data().join("pods"))
        .into_iter()
        .flatten()
        .flatten()
    {
        recovered
            .entry(e.file_name().to_string_lossy().into_owned())
            .or_default();
    }
    if !recovered.is_empty() {
        tracing::info!(
            pods = recovered.len(),
            "picking up the pods this node ran before"
        );
    }
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.config.node_name));
    let mut stream = watcher::watcher(api, cfg).boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
    let mut seen_in_init: HashSet<String> = HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let Some(event) = event else { break };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("watching the node's pods: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        workers.retain(|_, tx| !tx.is_closed());
        let mut apply =
            |pod: Pod, workers: &mut HashMap<String, watch::Sender<Option<Arc<Pod>>>>| {
                let uid = pod.uid().unwrap_or_default();
                let pod = Arc::new(pod);
                if let Some(tx) = workers.get(&uid) {
                    let _ = tx.send(Some(pod));
                    return;
                }
                let (tx, rx) = watch::channel(Some(pod));
                workers.insert(uid.clone(), tx);
                let rec = recovered.remove(&uid).unwrap_or_default();
                tasks.spawn(worker(ctx.clone(), uid, rx, rec));
            };
        match event {
            watcher::Event::Init => seen_in_init.clear(),
            watcher::Event::InitApply(pod) => {
                seen_in_init.insert(pod.uid().unwrap_or_default());
                apply(pod, &mut workers);
            }
            watcher::Event::Apply(pod) => apply(pod, &mut workers),
            watcher::Event::Delete(pod) => {
                if let Some(tx) = workers.get(&pod.uid().unwrap_or_default()) {
                    let _ = tx.send(None);
                }
            }
            watcher::Event::InitDone => {
                for (uid, tx) in &workers {
                    if !seen_in_init.contains(uid) {
                        let _ = tx.send(None);
                    }
                }
                // What ran here before for pods that no longer exist goes.
                for (uid, rec) in recovered.drain() {
                    let ctx = ctx.clone();
                    tasks.spawn(async move {
                        let mut st = PodState::new(uid, rec, &ctx);
                        st.stop_all_quick(&ctx).await;
                        st.cleanup(&ctx, None).await;
                    });
                }
            }
        }
    }
}

/// Checks that the pod's RuntimeClass names this agent's runtime (`runc`, or `crun`) as its
/// handler, as containerd refuses handlers it has no runtime for.
async fn runtime_handler(ctx: &Ctx, pod: &Pod) -> Result<(), String> {
    let Some(class) = pod
        .spec
        .as_ref()
        .and_then(|s| s.runtime_class_name.as_deref())
        .filter(|n| !n.is_empty())
    else {
        return Ok(());
    };
    let api: Api<k8s_openapi::api::node::v1::RuntimeClass> = Api::all(ctx.client.clone());
    let handler = api
        .get(class)
        .await
        .map_err(|e| format!("Failed to create pod sandbox: getting RuntimeClass {class:?}: {e}"))?
        .handler;
    if handler == ctx.runc.name() {
        Ok(())
    } else {
        Err(format!(
            "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox runtime: no runtime for {handler:?} is configured"
        ))
    }
}

/// Sysctls upstream's kubelet allows without `--allowed-unsafe-sysctls`: namespaced, and
/// unable to affect other pods or the node.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// A sysctl name with dots as separators (`net/ipv4/conf/eth0.1/rp_filter` is
/// `net.ipv4.conf.eth0/1.rp_filter`).
fn sysctl_name(name: &str) -> String {
    let first = name.find(['.', '/']);
    if first.is_some_and(|i| name.as_bytes()[i] == b'/') {
        name.chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect()
    } else {
        name.to_string()
    }
}

/// The pod's sysctls, names with dots.
fn sysctls(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.sysctls.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|s| (sysctl_name(&s.name), s.value))
        .collect()
}

/// The first of the pod's sysctls this agent does not allow: neither safe nor matched by one
/// of `allowed` (`--allowed-unsafe-sysctls`; `kernel.msg*` matches a prefix).
fn forbidden_sysctl(pod: &Pod, allowed: &[String]) -> Option<String> {
    let matches = |name: &str, pattern: &str| match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    };
    sysctls(pod).into_iter().map(|(name, _)| name).find(|name| {
        !SAFE_SYSCTLS.contains(&name.as_str()) && !allowed.iter().any(|p| matches(name, p))
    })
}

/// The seccomp filter for a container's (or else its pod's) `seccompProfile`. `Localhost`
/// profiles are files under `<data-dir>/seccomp`, as the kubelet's under its root directory.
fn seccomp(
    ctx: &Ctx,
    profile: Option<&k8s_openapi::api::core::v1::SeccompProfile>,
) -> Result<runtime::spec::Seccomp, String> {
    use runtime::spec::Seccomp;
    let Some(p) = profile else {
        return Ok(Seccomp::Unconfined);
    };
    match p.type_.as_str() {
        "RuntimeDefault" => Ok(Seccomp::RuntimeDefault),
        "Localhost" => {
            let path = ctx
                .data()
                .join("seccomp")
                .join(p.localhost_profile.as_deref().unwrap_or_default());
            let text = std::fs::read(&path)
                .map_err(|e| format!("cannot load seccomp profile {:?}: {e}", path.display()))?;
            serde_json::from_slice(&text)
                .map(Seccomp::Profile)
                .map_err(|e| format!("decoding seccomp profile {:?} failed: {e}", path.display()))
        }
        _ => Ok(Seccomp::Unconfined),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_follows_the_dns_policy_and_config() {
        let host = "# generated\nnameserver 10.0.0.2\nsearch corp.example\noptions ndots:2 edns0\n";
        let spec = |v: serde_json::Value| -> k8s_openapi::api::core::v1::PodSpec {
            serde_json::from_value(v).unwrap()
        };
        assert_eq!(
            resolv_conf(&spec(serde_json::json!({"containers": []})), host, None),
            "nameserver 10.0.0.2\nsearch corp.example\noptions ndots:2 edns0\n"
        );
        let custom = spec(
            serde_json::json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["1.1.1.1"], "searches": ["resolv.conf.local"],
            "options": [{"name": "ndots", "value": "5"}]}}),
        );
        assert_eq!(
            resolv_conf(&custom, host, None),
            "nameserver 1.1.1.1\nsearch resolv.conf.local\noptions ndots:5\n"
        );
        let merged = spec(
            serde_json::json!({"containers": [], "dnsPolicy": "Default", "dnsConfig": {
            "nameservers": ["10.0.0.2", "1.1.1.1", "8.8.8.8", "9.9.9.9"],
            "options": [{"name": "ndots", "value": "5"}, {"name": "single-request"}]}}),
        );
        assert_eq!(
            resolv_conf(&merged, host, None),
            "nameserver 10.0.0.2\nnameserver 1.1.1.1\nnameserver 8.8.8.8\nsearch corp.example\noptions edns0 ndots:5 single-request\n"
        );
    }

    #[test]
    fn cluster_first_pods_resolve_through_cluster_dns() {
        let host = "nameserver 10.0.0.2\nsearch corp.example\noptions edns0\n";
        let dns = crate::ClusterDns {
            address: "10.43.0.10".parse().unwrap(),
            domain: "cluster.local".into(),
        };
        let spec = |v: serde_json::Value| -> k8s_openapi::api::core::v1::PodSpec {
            serde_json::from_value(v).unwrap()
        };
        assert_eq!(
            resolv_conf(
                &spec(serde_json::json!({"containers": []})),
                host,
                Some((&dns, "web"))
            ),
            "nameserver 10.43.0.10\nsearch web.svc.cluster.local svc.cluster.local cluster.local corp.example\noptions ndots:5\n"
        );
        // On the host's network, ClusterFirst means the node's resolvers ...
        let host_net = spec(serde_json::json!({"containers": [], "hostNetwork": true}));
        assert!(
            resolv_conf(&host_net, host, Some((&dns, "web"))).starts_with("nameserver 10.0.0.2\n")
        );
        // ... unless ClusterFirstWithHostNet says otherwise.
        let with = spec(serde_json::json!({"containers": [], "hostNetwork": true,
            "dnsPolicy": "ClusterFirstWithHostNet",
            "dnsConfig": {"options": [{"name": "ndots", "value": "2"}]}}));
        assert_eq!(
            resolv_conf(&with, host, Some((&dns, "kube-system"))),
            "nameserver 10.43.0.10\nsearch kube-system.svc.cluster.local svc.cluster.local cluster.local corp.example\noptions ndots:2\n"
        );
    }

    #[test]
    fn the_pod_group_adds_the_runtime_class_overhead() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "overhead": {"cpu": "100m", "memory": "16Mi"},
                "containers": [{"name": "c", "resources": {
                    "limits": {"cpu": "250m", "memory": "32Mi"}}}]}}))
        .unwrap();
        let limits = pod_limits(&pod);
        assert_eq!(limits.memory, Some(48 << 20));
        assert_eq!(limits.cpu_quota, Some((35_000, 100_000)));
        assert_eq!(
            limits.cpu_shares,
            runtime::spec::cpu_shares(250) + runtime::spec::cpu_shares(100)
        );
    }

    #[test]
    fn slash_separated_sysctls_are_renamed() {
        assert_eq!(
            sysctl_name("net/ipv4/conf/eth0.1/rp_filter"),
            "net.ipv4.conf.eth0/1.rp_filter"
        );
        assert_eq!(
            sysctl_name("kernel.shm_rmid_forced"),
            "kernel.shm_rmid_forced"
        );
    }
}
