//! Simulated nodes (`rudder simulate`), in the way of KWOK: Node objects that behave like real
//! ones from the API's point of view, for testing the control plane at scale.
//!
//! Owns: the fake nodes' objects, their leases and the status of the pods bound to them.
//! Must not: touch the host (no containers, no network); it is only an API client.
//!
//! Start reading at [`run`]: it checks the [`Options`], registers the nodes
//! (`nodes::register_all`), then runs two loops until shutdown: `nodes::keep_alive` renews each
//! node's Lease (and now and then its Ready heartbeat), and `pods::run` watches the pods bound
//! to the nodes and answers as a kubelet would (Running with an IP; graceful deletion
//! finished). The objects themselves are built by pure functions (`nodes::node_object`,
//! `nodes::node_status`, `pods::running_status`, the pod IP allocator `pods::Ipam`), tested
//! next to them; `retry` is the one back-off policy for transient API errors.

mod nodes;
mod pods;
mod retry;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;

/// The label every simulated node carries (`rudder.dev/simulated=true`), to tell them apart.
pub const SIMULATED_LABEL: &str = "rudder.dev/simulated";

/// The most nodes one simulator runs: each gets a /24 of pod IPs from 10.64.0.0/10.
pub const MAX_NODES: usize = 16384;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Options {
    /// How many nodes.
    pub nodes: usize,
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
    /// Checks the options before anything is written: quantities, names, labels, taints.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.nodes > MAX_NODES {
            bail!(
                "at most {MAX_NODES} nodes can be simulated, not {}",
                self.nodes
            );
        }
        if self.lease_interval.is_zero() {
            bail!("the lease interval must be at least one second");
        }
        let resources = [("cpu", &self.cpu), ("memory", &self.memory)]
            .into_iter()
            .chain(self.extended.iter().map(|(k, v)| (k.as_str(), v)));
        for (name, quantity) in resources {
            match api::quantity::Quantity::parse(quantity) {
                Ok(q) if q.is_negative() => bail!("{name}: {quantity:?} must not be negative"),
                Ok(_) => {}
                Err(e) => bail!("{name}: {quantity:?}: {e}"),
            }
        }
        for (name, _) in &self.extended {
            name_ok("extended resource", name)?;
        }
        if self.nodes > 0 {
            let last = nodes::node_name(self, self.nodes - 1);
            let errs = api::validation::dns1123_subdomain(&last);
            if !errs.is_empty() {
                bail!("node name {last:?}: {}", errs.join("; "));
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
                bail!(
                    "taint {key}: effect {effect:?} must be one of NoSchedule, PreferNoSchedule, NoExecute"
                );
            }
        }
        Ok(())
    }
}

fn name_ok(what: &str, name: &str) -> anyhow::Result<()> {
    let errs = api::validation::qualified_name(name);
    if !errs.is_empty() {
        bail!("{what} {name:?}: {}", errs.join("; "));
    }
    Ok(())
}

fn value_ok(what: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let errs = api::validation::label_value(value);
    if !errs.is_empty() {
        bail!("{what} {key}={value:?}: {}", errs.join("; "));
    }
    Ok(())
}

/// Counters for the stop summary (and debugging).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Pods this run turned Running (or brought back in sync with their spec).
    pub(crate) pods_started: AtomicU64,
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
    pub(crate) stats: Stats,
}

/// Runs the simulated nodes until `shutdown` completes.
///
/// Registration must succeed (transient errors are retried); afterwards failures are logged
/// and retried, never fatal. On shutdown the nodes are left in place, as a stopped kubelet
/// leaves its Node: their leases expire and the control plane sees them go NotReady.
pub async fn run(
    client: kube::Client,
    opts: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    opts.check()?;
    let sim = Arc::new(Sim {
        client,
        opts,
        stats: Stats::default(),
    });
    tracing::info!(
        nodes = sim.opts.nodes,
        prefix = %sim.opts.name_prefix,
        lease_interval = ?sim.opts.lease_interval,
        "simulator starting"
    );
    let work = {
        let sim = sim.clone();
        async move {
            let nodes = Arc::new(nodes::register_all(&sim).await?);
            tracing::info!(nodes = nodes.len(), "simulated nodes registered and Ready");
            // Both loops run until shutdown drops this future; they only end early on a bug.
            tokio::select! {
                () = nodes::keep_alive(sim.clone(), nodes.clone()) => {
                    bail!("the lease loop stopped")
                }
                r = pods::run(sim.clone(), nodes.clone()) => r,
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
    fn digests_are_stable_and_sized() {
        assert_eq!(hex_digest("a", 40), hex_digest("a", 40));
        assert_ne!(hex_digest("a", 32), hex_digest("b", 32));
        assert_eq!(hex_digest("nginx", 64).len(), 64);
        assert!(hex_digest("x", 64).chars().all(|c| c.is_ascii_hexdigit()));
    }
}
