//! Simulated nodes (`rudder simulate`), in the way of KWOK: Node objects that behave like real
//! ones from the API's point of view, for testing the control plane at scale.
//!
//! Owns: the fake nodes' objects, their leases and the status of the pods bound to them.
//! Must not: touch the host (no containers, no network); it is only an API client.
//!
//! Start reading at [`run_with`]: it checks the [`Options`], registers the nodes
//! (`nodes::register_all`), then runs three loops until shutdown: `nodes::keep_alive` renews
//! each node's Lease (and now and then its Ready heartbeat), `nodes::watch` follows the Node
//! objects (the [`DEAD_ANNOTATION`], a Ready condition someone else changed), and `pods::run`
//! watches the pods bound to the nodes and answers as a kubelet would (Running with an IP;
//! containers that exit after their time and restart or not by the pod's restart policy;
//! graceful deletion finished). The objects themselves are built by pure functions
//! (`nodes::node_object`, `nodes::node_status`, `pods::life`, `pods::pod_status`,
//! `pods::next_change`, the pod IP allocator `pods::Ipam`), tested next to them; `retry` is the
//! one back-off policy for transient API errors.
//!
//! # How long pods run
//!
//! A pod bound to a simulated node turns Running. What happens next is its *life*:
//!
//! - a pod owned by a `batch/v1` Job (an `ownerReferences` entry) has its containers exit with
//!   code 0 after [`Behaviour::job_pod_duration`] (1 s by default), so Jobs and CronJobs
//!   complete;
//! - any other pod runs until it is deleted, unless [`Behaviour::pod_duration`] is set;
//! - per pod, the annotations [`DURATION_ANNOTATION`] (`simulate.rudder.dev/duration: 5s`, a
//!   Go duration such as `0s`, `500ms`, `1m30s`; see [`parse_duration`]) and
//!   [`EXIT_CODE_ANNOTATION`] (`simulate.rudder.dev/exit-code: "1"`, 0 to 255) override both;
//!   an exit code alone on a pod that would otherwise run forever makes it exit after the job
//!   pod duration. Unreadable values are ignored with a warning.
//!
//! The duration counts from each container's start. Then, as upstream's kubelet does by the
//! pod's `restartPolicy`: with `Never`, or `OnFailure` and code 0, the container stays
//! terminated (reason `Completed`, or `Error` for a non-zero code) and once every container
//! has, the pod is `Succeeded` (all codes 0) or `Failed`, its Ready and ContainersReady
//! conditions False with reason `PodCompleted` or `PodFailed`. With `Always`, or `OnFailure`
//! and a non-zero code, the container is restarted instead: `restartCount` + 1, the exit in
//! `lastState.terminated`, state `waiting` (`CrashLoopBackOff`) for a back-off of 1 s doubling
//! up to 30 s, then running again. Init containers complete at once and sidecars run until the
//! pod ends; the duration and exit code apply to the regular containers.
//!
//! # Dead nodes
//!
//! A Node annotated [`DEAD_ANNOTATION`] (`kubectl annotate node sim-0
//! simulate.rudder.dev/dead=true`) is left as a stopped kubelet leaves it: its Lease is no
//! longer renewed, its status no longer updated and its pods no longer touched (they neither
//! start, nor finish, nor finish their graceful deletion), so a node-lifecycle controller sees
//! it go NotReady. Removing the annotation brings it back at once: lease renewed, Ready
//! heartbeat posted, its pods handled again.
//!
//! # Several processes
//!
//! Each process handles only its own nodes (and the pods bound to them), so several can share
//! the work. A process runs the nodes with indices [`Options::first_index`] to `first_index +
//! nodes - 1`, named `<name_prefix><index>`; the node's InternalIP, its /24 of pod IPs and its
//! zone are derived from that index alone. So processes given disjoint index ranges hand out
//! disjoint addresses (and spread their nodes over the zones as one process would), whatever
//! their prefixes; processes whose ranges overlap hand out the same addresses. Every index is
//! below [`MAX_NODES`], which [`Options::check`] enforces for the highest one.

mod nodes;
mod pods;
mod retry;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What the simulator can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The options are not valid; the message says which and why.
    #[error("{0}")]
    Options(String),
    /// A node could not be registered: `what` says which step for which node.
    #[error("{what}: {source}")]
    Register {
        /// The step and the node, as in "creating node sim-0".
        what: String,
        /// The API's answer.
        #[source]
        source: kube::Error,
    },
    /// A loop that runs until shutdown ended early (a bug).
    #[error("{0}")]
    Stopped(&'static str),
}

/// The simulator's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns early with [`Error::Options`], its message formatted.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err(Error::Options(format!($($arg)*)))
    };
}

/// The label every simulated node carries (`rudder.dev/simulated=true`), to tell them apart.
pub const SIMULATED_LABEL: &str = "rudder.dev/simulated";

/// The number of node indices: every simulated node's index, in every process sharing the
/// work, is below it, since each index gets a /24 of pod IPs from 10.64.0.0/10. So it is also
/// the most nodes one simulator runs.
pub const MAX_NODES: usize = 16384;

/// A pod annotation: how long the pod's containers run before they exit (a Go duration such
/// as `5s` or `0s`), instead of the [`Behaviour`]'s default for the pod.
pub const DURATION_ANNOTATION: &str = "simulate.rudder.dev/duration";

/// A pod annotation: the code the pod's containers exit with (0 to 255; 0 by default). A
/// non-zero code makes the pod `Failed`, or its containers restart, by its restart policy.
pub const EXIT_CODE_ANNOTATION: &str = "simulate.rudder.dev/exit-code";

/// A Node annotation: `"true"` makes the simulator treat the node as dead (no lease renewals,
/// no status updates, its pods left alone) until it is removed or set to something else.
pub const DEAD_ANNOTATION: &str = "simulate.rudder.dev/dead";

/// How the pods bound to simulated nodes behave, beyond what their annotations say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    /// How long the containers of a pod owned by a `batch/v1` Job run before they exit with
    /// code 0 (1 s by default).
    pub job_pod_duration: Duration,
    /// How long the containers of every other pod run before they exit with code 0; `None`
    /// (the default) runs them until the pod is deleted.
    pub pod_duration: Option<Duration>,
}

impl Default for Behaviour {
    fn default() -> Behaviour {
        Behaviour {
            job_pod_duration: Duration::from_secs(1),
            pod_duration: None,
        }
    }
}

/// Parses a duration as Go writes them (what the [`DURATION_ANNOTATION`] and the command line
/// take): `0`, or a sequence of decimal numbers each with a unit (`ns`, `us`, `µs`, `ms`, `s`,
/// `m`, `h`), e.g. `1s`, `1.5s`, `500ms`, `1h30m`. No sign: a duration is never negative.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 0s, 500ms, 5s, 2m or 1h30m");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(bad());
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(number_len);
        if !number.bytes().any(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let value: f64 = number.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let nanos_per_unit = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        let nanos = (value * nanos_per_unit).round();
        if !nanos.is_finite() || nanos >= u64::MAX as f64 {
            return Err(bad());
        }
        total = total
            .checked_add(Duration::from_nanos(nanos as u64))
            .ok_or_else(bad)?;
        rest = next;
    }
    Ok(total)
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Options {
    /// How many nodes.
    pub nodes: usize,
    /// The first node's index: the nodes are `first_index .. first_index + nodes`, and their
    /// names and addresses are derived from it (0 by default; give processes sharing the work
    /// disjoint ranges).
    pub first_index: usize,
    /// Node names are `<prefix><index>`.
    pub name_prefix: String,
    /// Each node's CPU capacity (a quantity).
    pub cpu: String,
    /// Each node's memory capacity (a quantity).
    pub memory: String,
    /// Each node's pod capacity.
    pub pods: u32,
    /// Extended resources: (name, quantity).
    pub extended: Vec<(String, String)>,
    /// Zones spread over the nodes round-robin (`topology.kubernetes.io/zone=zone-<i>`); 0 for none.
    pub zones: usize,
    /// Extra labels on every node.
    pub labels: Vec<(String, String)>,
    /// Taints on every node: (key, value, effect).
    pub taints: Vec<(String, String, String)>,
    /// How often each node's Lease is renewed.
    pub lease_interval: Duration,
}

impl Options {
    /// The indices of the nodes to run, from [`Options::first_index`].
    pub(crate) fn indices(&self) -> std::ops::Range<usize> {
        self.first_index..self.first_index + self.nodes
    }

    /// Checks the options before anything is written: the index range, quantities, names,
    /// labels, taints.
    pub fn check(&self) -> Result<()> {
        match self.first_index.checked_add(self.nodes) {
            Some(end) if end <= MAX_NODES => {}
            _ => invalid!(
                "--first-index {} + --nodes {} must be at most {MAX_NODES}, not {}: node indices \
                 go from 0 to {} (each node gets a /24 of pod IPs from 10.64.0.0/10)",
                self.first_index,
                self.nodes,
                self.first_index as u128 + self.nodes as u128,
                MAX_NODES - 1
            ),
        }
        if self.lease_interval.is_zero() {
            invalid!("the lease interval must be at least one second");
        }
        let resources = [("cpu", &self.cpu), ("memory", &self.memory)]
            .into_iter()
            .chain(self.extended.iter().map(|(k, v)| (k.as_str(), v)));
        for (name, quantity) in resources {
            match api::quantity::Quantity::parse(quantity) {
                Ok(q) if q.is_negative() => invalid!("{name}: {quantity:?} must not be negative"),
                Ok(_) => {}
                Err(e) => invalid!("{name}: {quantity:?}: {e}"),
            }
        }
        for (name, _) in &self.extended {
            name_ok("extended resource", name)?;
        }
        if let Some(index) = self.indices().last() {
            let last = nodes::node_name(self, index);
            let errs = api::validation::dns1123_subdomain(&last);
            if !errs.is_empty() {
                invalid!("node name {last:?}: {}", errs.join("; "));
            }
        }
        for (key, value) in &self.labels {
            name_ok("label", key)?;
            value_ok("label", key, value)?;
        }
        for (key, value, effect) in &self.taints {
            name_ok("taint", key)?;
            value_ok("taint", key, value)?;
            if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect.as_str()) {
                invalid!(
                    "taint {key}: effect {effect:?} must be one of NoSchedule, PreferNoSchedule, NoExecute"
                );
            }
        }
        Ok(())
    }
}

fn name_ok(what: &str, name: &str) -> Result<()> {
    let errs = api::validation::qualified_name(name);
    if !errs.is_empty() {
        invalid!("{what} {name:?}: {}", errs.join("; "));
    }
    Ok(())
}

fn value_ok(what: &str, key: &str, value: &str) -> Result<()> {
    let errs = api::validation::label_value(value);
    if !errs.is_empty() {
        invalid!("{what} {key}={value:?}: {}", errs.join("; "));
    }
    Ok(())
}

/// Counters for the stop summary (and debugging).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Pods this run turned Running.
    pub(crate) pods_started: AtomicU64,
    /// Pods this run made Succeeded or Failed.
    pub(crate) pods_completed: AtomicU64,
    /// Containers this run restarted after they exited.
    pub(crate) container_restarts: AtomicU64,
    /// Terminating pods this run finished deleting.
    pub(crate) pods_finished: AtomicU64,
    /// Lease renewals that succeeded.
    pub(crate) lease_renewals: AtomicU64,
    /// API calls that failed for good (after retries), of every kind.
    pub(crate) errors: AtomicU64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What every loop shares: the client, the options and the counters.
pub(crate) struct Sim {
    pub(crate) client: kube::Client,
    pub(crate) opts: Options,
    pub(crate) behaviour: Behaviour,
    pub(crate) stats: Stats,
}

/// Runs the simulated nodes until `shutdown` completes, with the default [`Behaviour`]
/// (see [`run_with`]).
pub async fn run(
    client: kube::Client,
    opts: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    run_with(client, opts, Behaviour::default(), shutdown).await
}

/// Runs the simulated nodes, their pods behaving as `behaviour` says, until `shutdown`
/// completes.
///
/// Registration must succeed (transient errors are retried); afterwards failures are logged
/// and retried, never fatal. On shutdown the nodes are left in place, as a stopped kubelet
/// leaves its Node: their leases expire and the control plane sees them go NotReady.
pub async fn run_with(
    client: kube::Client,
    opts: Options,
    behaviour: Behaviour,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    opts.check()?;
    let sim = Arc::new(Sim {
        client,
        opts,
        behaviour,
        stats: Stats::default(),
    });
    tracing::info!(
        nodes = sim.opts.nodes,
        first_index = sim.opts.first_index,
        prefix = %sim.opts.name_prefix,
        lease_interval = ?sim.opts.lease_interval,
        job_pod_duration = ?sim.behaviour.job_pod_duration,
        pod_duration = ?sim.behaviour.pod_duration,
        "simulator starting"
    );
    let work = {
        let sim = sim.clone();
        async move {
            let nodes = Arc::new(nodes::register_all(&sim).await?);
            tracing::info!(nodes = nodes.len(), "simulated nodes registered and Ready");
            let (revived_tx, revived_rx) = tokio::sync::mpsc::unbounded_channel();
            // The loops run until shutdown drops this future; they only end early on a bug.
            tokio::select! {
                () = nodes::keep_alive(sim.clone(), nodes.clone()) => {
                    Err(Error::Stopped("the lease loop stopped"))
                }
                () = nodes::watch(sim.clone(), nodes.clone(), revived_tx) => {
                    Err(Error::Stopped("the node watch stopped"))
                }
                r = pods::run(sim.clone(), nodes.clone(), revived_rx) => r,
            }
        }
    };
    let result = tokio::select! {
        r = work => r,
        () = shutdown => Ok(()),
    };
    let s = &sim.stats;
    tracing::info!(
        nodes = sim.opts.nodes,
        pods_started = s.pods_started.load(Ordering::Relaxed),
        pods_completed = s.pods_completed.load(Ordering::Relaxed),
        container_restarts = s.container_restarts.load(Ordering::Relaxed),
        pods_finished = s.pods_finished.load(Ordering::Relaxed),
        lease_renewals = s.lease_renewals.load(Ordering::Relaxed),
        errors = s.errors.load(Ordering::Relaxed),
        "simulator stopped; its nodes are left in place"
    );
    result
}

/// `len` hex digits derived from `input`, the same every time (fake IDs and digests).
pub(crate) fn hex_digest(input: &str, len: usize) -> String {
    let mut out = String::with_capacity(len + 16);
    let mut seed: u64 = 0xcbf2_9ce4_8422_2325;
    while out.len() < len {
        // FNV-1a over the input, reseeded per 16 digits.
        let mut h = seed;
        for b in input.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
        seed = h ^ 0x9e37_79b9_7f4a_7c15;
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn opts() -> Options {
        Options {
            nodes: 3,
            first_index: 0,
            name_prefix: "sim-".into(),
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: 110,
            extended: vec![("example.com/gpu".into(), "2".into())],
            zones: 2,
            labels: vec![("team".into(), "a".into())],
            taints: vec![("dedicated".into(), "sim".into(), "NoSchedule".into())],
            lease_interval: Duration::from_secs(10),
        }
    }

    #[test]
    fn good_options_pass() {
        opts().check().unwrap();
    }

    #[test]
    fn bad_options_are_refused_with_the_reason() {
        type Change = Box<dyn Fn(&mut Options)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|o| o.cpu = "four".into()), "cpu"),
            (Box::new(|o| o.memory = "-1Gi".into()), "negative"),
            (Box::new(|o| o.name_prefix = "Sim_".into()), "node name"),
            (
                Box::new(|o| o.labels.push(("a b".into(), "x".into()))),
                "label",
            ),
            (
                Box::new(|o| o.taints.push(("k".into(), String::new(), "Never".into()))),
                "effect",
            ),
            (Box::new(|o| o.nodes = MAX_NODES + 1), "at most"),
            (
                Box::new(|o| o.first_index = MAX_NODES - 2),
                "--first-index 16382 + --nodes 3 must be at most 16384, not 16385",
            ),
            (Box::new(|o| o.first_index = usize::MAX), "--first-index"),
            (Box::new(|o| o.lease_interval = Duration::ZERO), "lease"),
        ];
        for (change, want) in cases {
            let mut o = opts();
            change(&mut o);
            let err = o.check().unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }

    #[test]
    fn the_highest_index_may_be_the_last_one() {
        let mut o = opts();
        o.first_index = MAX_NODES - o.nodes;
        o.check().unwrap();
        assert_eq!(o.indices(), MAX_NODES - 3..MAX_NODES);
        o.nodes = 0;
        o.first_index = MAX_NODES;
        o.check().unwrap();
        assert!(o.indices().is_empty());
    }

    #[test]
    fn durations_are_read_as_go_writes_them() {
        let ok = [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("1s", Duration::from_secs(1)),
            ("1.5s", Duration::from_millis(1500)),
            (".5s", Duration::from_millis(500)),
            ("500ms", Duration::from_millis(500)),
            ("2m", Duration::from_secs(120)),
            ("1h30m", Duration::from_secs(5400)),
            ("1m0.25s", Duration::from_millis(60_250)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for text in [
            "",
            "5",
            "s",
            "-1s",
            "+1s",
            "1d",
            "1 s",
            "1.2.3s",
            ".s",
            "1s5",
            "99999999999h",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("not a duration"), "{text}: {err}");
        }
    }

    #[test]
    fn the_default_behaviour_completes_job_pods_in_a_second() {
        let b = Behaviour::default();
        assert_eq!(b.job_pod_duration, Duration::from_secs(1));
        assert_eq!(b.pod_duration, None);
    }

    #[test]
    fn digests_are_stable_and_sized() {
        assert_eq!(hex_digest("a", 40), hex_digest("a", 40));
        assert_ne!(hex_digest("a", 32), hex_digest("b", 32));
        assert_eq!(hex_digest("nginx", 64).len(), 64);
        assert!(hex_digest("x", 64).chars().all(|c| c.is_ascii_hexdigit()));
    }
}
