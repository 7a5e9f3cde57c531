//! Which UDP connection-tracking entries must go after a change (upstream kube-proxy's
//! conntrack cleanup): UDP has no connection to close, so without this a client keeps
//! sending to an endpoint that is gone, or to the rejection a Service had before its first
//! endpoint. Pure: [`stale`] computes the flows, the host deletes them.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::model::{Protocol, ServicePort};

/// Tracked UDP flows to forget: those to `destination` (any local address if `None`) on
/// `port`, translated to `endpoint` if given.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Flow {
    /// The original destination address.
    pub destination: Option<Ipv4Addr>,
    /// The original destination port.
    pub port: u16,
    /// The endpoint the flow was translated to.
    pub endpoint: Option<Ipv4Addr>,
}

impl Flow {
    /// The arguments of `conntrack -D` that delete these flows.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["-D".to_string(), "-p".into(), "udp".into()];
        if let Some(d) = self.destination {
            args.extend(["--orig-dst".into(), d.to_string()]);
        }
        args.extend(["--orig-port-dst".into(), self.port.to_string()]);
        if let Some(e) = self.endpoint {
            args.extend(["--dst-nat".into(), e.to_string()]);
        }
        args
    }
}

/// The flows that `before` → `after` leaves stale: those to UDP endpoints that are gone,
/// and those to ports that had no endpoint and now have one.
pub fn stale(before: &[ServicePort], after: &[ServicePort]) -> Vec<Flow> {
    let udp = |ports: &[ServicePort]| -> BTreeMap<String, ServicePort> {
        ports
            .iter()
            .filter(|p| p.protocol == Protocol::Udp)
            .map(|p| (p.id.clone(), p.clone()))
            .collect()
    };
    let (before, after) = (udp(before), udp(after));
    let mut flows = Vec::new();
    for (id, old) in &before {
        let new = after.get(id);
        let kept = new.map(serving).unwrap_or_default();
        for e in serving(old).iter().filter(|e| !kept.contains(e)) {
            flows.extend(entrances(old).map(|(d, port)| Flow {
                destination: d,
                port,
                endpoint: Some(*e.ip()),
            }));
        }
    }
    for (id, new) in &after {
        let had = before.get(id).is_some_and(|p| !serving(p).is_empty());
        if !had && !serving(new).is_empty() {
            flows.extend(entrances(new).map(|(d, port)| Flow {
                destination: d,
                port,
                endpoint: None,
            }));
        }
    }
    flows.sort();
    flows.dedup();
    flows
}

/// Every endpoint a port's traffic may go to.
fn serving(p: &ServicePort) -> Vec<SocketAddrV4> {
    let mut all = p.endpoints.clone();
    all.extend(p.local_endpoints.iter().flatten());
    all
}

/// Where a port's traffic comes in: its ClusterIP, outside addresses and NodePort.
fn entrances(p: &ServicePort) -> impl Iterator<Item = (Option<Ipv4Addr>, u16)> + '_ {
    let addresses = std::iter::once(p.cluster_ip)
        .chain(p.external.iter().copied())
        .map(|a| (Some(a), p.port));
    addresses.chain(p.node_port.map(|n| (None, n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(endpoints: &[&str]) -> ServicePort {
        ServicePort {
            id: "default/dns/udp/dns".into(),
            cluster_ip: "10.43.0.9".parse().unwrap(),
            protocol: Protocol::Udp,
            port: 53,
            node_port: Some(30053),
            external: vec![],
            affinity: None,
            endpoints: endpoints.iter().map(|e| e.parse().unwrap()).collect(),
            local_endpoints: None,
            health_check: None,
            local_ready: Vec::new(),
        }
    }

    #[test]
    fn a_removed_endpoint_loses_its_flows_on_every_entrance() {
        let flows = stale(
            &[dns(&["10.42.0.5:53", "10.42.0.6:53"])],
            &[dns(&["10.42.0.6:53"])],
        );
        let args: Vec<String> = flows.iter().map(|f| f.args().join(" ")).collect();
        assert_eq!(
            args,
            [
                "-D -p udp --orig-port-dst 30053 --dst-nat 10.42.0.5",
                "-D -p udp --orig-dst 10.43.0.9 --orig-port-dst 53 --dst-nat 10.42.0.5",
            ]
        );
    }

    #[test]
    fn a_first_endpoint_clears_what_was_rejected_and_tcp_is_left_alone() {
        let flows = stale(&[dns(&[])], &[dns(&["10.42.0.6:53"])]);
        assert_eq!(flows.len(), 2);
        assert!(flows.iter().all(|f| f.endpoint.is_none()));
        let mut tcp = dns(&["10.42.0.6:53"]);
        tcp.protocol = Protocol::Tcp;
        assert!(stale(&[tcp], &[]).is_empty());
        assert!(stale(&[dns(&["10.42.0.6:53"])], &[dns(&["10.42.0.6:53"])]).is_empty());
    }
}
