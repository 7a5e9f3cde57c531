//! The service proxy: makes each Service's ClusterIP (and NodePort) reach its endpoints by
//! programming the kernel with nftables, as upstream kube-proxy's nftables mode does.
//!
//! It owns one nftables table (`rudder` by default, family `ip`) and nothing else: each
//! change is one `nft -f` transaction that rewrites only the chains, sets and map elements
//! that differ from what the last one left ([`rules::Ruleset`]); the first builds the table
//! afresh. No other table is read or flushed. It talks to the cluster only through the Kubernetes API (a
//! watch on Services and EndpointSlices) and to the host only through [`host::Host`].
//!
//! Start reading at [`run`]; then [`model::service_ports`] (what to program, pure) and
//! [`rules::Ruleset`] (how, pure). [`host::Recording`] stands in for the kernel in tests.

pub mod conntrack;
pub mod health;
pub mod host;
pub mod model;
pub mod rules;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

/// How long changes gather before the rules are rebuilt once for all of them.
const SETTLE: Duration = Duration::from_millis(50);

/// After a failed sync the next waits this long, doubling with each failure up to
/// [`RETRY_MAX`], whether or not anything changed (upstream's proxy retries a failed sync
/// on a timer too).
const RETRY_MIN: Duration = Duration::from_millis(500);

/// The longest wait between two failed syncs.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// How long to wait before the next sync after `failures` failed ones in a row.
fn wait_before_sync(failures: u32) -> Duration {
    match failures {
        0 => SETTLE,
        n => RETRY_MIN
            .saturating_mul(1 << (n - 1).min(16))
            .min(RETRY_MAX),
    }
}

/// Follows Services and EndpointSlices and keeps the kernel's rules in step until `shutdown`,
/// then removes the table.
pub async fn run(
    client: kube::Client,
    config: rules::Config,
    host: Arc<dyn host::Host>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), host::Error> {
    // Bridged pod-to-pod traffic must pass the IP hooks, or a reply from a Service's endpoint
    // on the same bridge skips the reverse translation.
    host.sysctl("net.bridge.bridge-nf-call-iptables", "1")?;
    host.sysctl("net.ipv4.ip_forward", "1")?;
    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let svc_events = reflector::reflector(
        svc_writer,
        watcher(Api::<Service>::all(client.clone()), Default::default()),
    )
    .default_backoff();
    let slice_events = reflector::reflector(
        slice_writer,
        watcher(Api::<EndpointSlice>::all(client), Default::default()),
    )
    .default_backoff();
    // Which of the two lists are complete: rules are written only once both are.
    let mut listed = [false, false];
    let mut events = std::pin::pin!(futures::stream::select(
        svc_events.map(|e| (0, e.map(|e| listed_all(&e)))),
        slice_events.map(|e| (1, e.map(|e| listed_all(&e)))),
    ));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut state = Applied::default();
    let mut dirty = false;
    let mut failures = 0;
    loop {
        let ready = listed == [true, true];
        tokio::select! {
            () = &mut shutdown => break,
            event = events.next() => match event {
                Some((which, Ok(done))) => {
                    listed[which] |= done;
                    dirty = true;
                }
                Some((_, Err(e))) => tracing::warn!("watching Services and EndpointSlices: {e}"),
                None => break,
            },
            () = tokio::time::sleep(wait_before_sync(failures)), if dirty && ready => {
                let applied = sync(&host, &config, &services, &slices, &mut state).await;
                // A failed sync is tried again, changes or not.
                dirty = !applied;
                failures = if applied { 0 } else { failures + 1 };
            }
        }
    }
    host.apply(&rules::remove(&config.table)).await
}

/// NodePorts on 127.0.0.1 need it: translated packets keep their loopback source until
/// masqueraded. It would also let the network reach the node's loopback services, which the
/// table's `localhost-check` prevents, so it is turned on only once the table is there. As
/// upstream's kube-proxy, the proxy leaves it on when it stops (other proxies on the host may
/// rely on it).
const LOCALNET: &str = "net.ipv4.conf.all.route_localnet";

fn listed_all<K>(event: &watcher::Event<K>) -> bool {
    matches!(event, watcher::Event::InitDone)
}

/// What the kernel and the health check ports hold since the last successful sync.
#[derive(Default)]
struct Applied {
    /// The rules (none after a failure: the next sync rebuilds the table).
    rules: Option<rules::Ruleset>,
    /// The ports they were built from.
    ports: Vec<model::ServicePort>,
    /// The health check node ports' servers.
    health: health::Servers,
    /// Whether `route_localnet` is on.
    localnet: bool,
}

/// Applies what changed since the last success (everything, after a failure), forgets the
/// UDP flows the change left stale and updates the health check ports. Whether the rules
/// went in.
async fn sync(
    host: &Arc<dyn host::Host>,
    config: &rules::Config,
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    state: &mut Applied,
) -> bool {
    let (services, slices) = (services.state(), slices.state());
    let ports = model::service_ports(
        services.iter().map(Arc::as_ref),
        slices.iter().map(Arc::as_ref),
        config.node.as_deref(),
    );
    let wanted = rules::Ruleset::build(config, &ports);
    let script = wanted.script(&config.table, state.rules.as_ref());
    let first = state.rules.is_none() && state.ports.is_empty();
    if !script.is_empty() {
        if let Err(e) = host.apply(&script).await {
            tracing::error!("{e}");
            state.rules = None;
            state.health.update(model::health_checks(&ports), false);
            return false;
        }
        tracing::debug!(ports = ports.len(), "service rules applied");
        state.rules = Some(wanted);
    }
    state.health.update(model::health_checks(&ports), true);
    if !state.localnet {
        match host.sysctl(LOCALNET, "1") {
            Ok(_) => state.localnet = true,
            Err(e) => tracing::warn!("NodePorts on 127.0.0.1 stay closed: {e}"),
        }
    }
    // After a (re)start nothing is known of the flows before: those left are kept.
    let stale = if first {
        Vec::new()
    } else {
        conntrack::stale(&state.ports, &ports)
    };
    if !stale.is_empty() {
        // One `conntrack` run per flow: beside the rules, not in their way.
        let host = host.clone();
        tokio::spawn(async move {
            for flow in stale {
                if let Err(e) = host.forget(&flow).await {
                    tracing::warn!("{e}");
                }
            }
        });
    }
    state.ports = ports;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_syncs_are_retried_ever_more_slowly() {
        let waits: Vec<u128> = (0..9).map(|n| wait_before_sync(n).as_millis()).collect();
        assert_eq!(
            waits,
            [50, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
        assert_eq!(wait_before_sync(u32::MAX), RETRY_MAX);
    }
}
