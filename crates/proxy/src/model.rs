//! What the proxy must program, computed from Services and EndpointSlices alone: one
//! [`ServicePort`] per port of every Service that has a ClusterIP, with the endpoints its
//! traffic goes to. Pure: the rules are rendered from this in `rules.rs`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use k8s_openapi::api::core::v1::{Service, ServicePort as SpecPort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

/// The label linking an EndpointSlice to its Service.
const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// A transport protocol, as nftables names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    fn parse(p: Option<&str>) -> Option<Protocol> {
        match p.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// nftables' name: `tcp`, `udp`, `sctp`.
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One port of one Service, and where its traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// `namespace/name/protocol/port-name` (the port number when unnamed): names its chains.
    pub id: String,
    /// The ClusterIP.
    pub cluster_ip: Ipv4Addr,
    /// The protocol.
    pub protocol: Protocol,
    /// The Service's port.
    pub port: u16,
    /// The NodePort, for NodePort and LoadBalancer Services.
    pub node_port: Option<u16>,
    /// Other addresses that lead to the port: `externalIPs` and the load balancer's ingress
    /// addresses (sorted).
    pub external: Vec<Ipv4Addr>,
    /// Session affinity `ClientIP`: how long, in seconds, a client sticks to its endpoint.
    pub affinity: Option<u32>,
    /// The endpoints traffic goes to (sorted; empty: rejected); with `internalTrafficPolicy:
    /// Local`, only this node's.
    pub endpoints: Vec<SocketAddrV4>,
    /// With `externalTrafficPolicy: Local`: this node's endpoints, where traffic from outside
    /// the cluster goes, its client address kept (none: such traffic is dropped).
    pub local_endpoints: Option<Vec<SocketAddrV4>>,
    /// The Service's `healthCheckNodePort`, where load balancers ask whether this node has
    /// local endpoints.
    pub health_check: Option<u16>,
    /// With a health check: this node's ready endpoints (terminating ones do not count, as
    /// upstream, so a draining node stops getting new connections).
    pub local_ready: Vec<SocketAddrV4>,
}

/// What a Service's health check node port answers on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// How many of its ready endpoints (addresses) run on this node.
    pub local_endpoints: usize,
}

/// The health check node ports of `ports`' Services, each with its Service's local endpoints.
pub fn health_checks(ports: &[ServicePort]) -> BTreeMap<u16, HealthCheck> {
    let mut out: BTreeMap<u16, (HealthCheck, Vec<Ipv4Addr>)> = BTreeMap::new();
    for p in ports {
        let Some(port) = p.health_check else {
            continue;
        };
        let mut id = p.id.splitn(3, '/');
        let (namespace, name) = (id.next().unwrap_or(""), id.next().unwrap_or(""));
        let (_, addresses) = out.entry(port).or_insert_with(|| {
            let check = HealthCheck {
                namespace: namespace.to_string(),
                name: name.to_string(),
                local_endpoints: 0,
            };
            (check, Vec::new())
        });
        addresses.extend(p.local_ready.iter().map(|e| *e.ip()));
    }
    out.into_iter()
        .map(|(port, (mut check, mut addresses))| {
            addresses.sort();
            addresses.dedup();
            check.local_endpoints = addresses.len();
            (port, check)
        })
        .collect()
}

/// The ports of every Service with a ClusterIP, sorted by id, as seen from node `node` (whose
/// endpoints are the local ones).
pub fn service_ports<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    node: Option<&str>,
) -> Vec<ServicePort> {
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let labels = slice.metadata.labels.as_ref();
        if let (Some(ns), Some(svc)) = (
            slice.metadata.namespace.clone(),
            labels.and_then(|l| l.get(SERVICE_NAME)).cloned(),
        ) {
            by_service.entry((ns, svc)).or_default().push(slice);
        }
    }
    let mut out = Vec::new();
    for svc in services {
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let slices = by_service
            .get(&(ns.clone(), name.clone()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        out.extend(ports_of(svc, &format!("{ns}/{name}"), slices, node));
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

fn ports_of(
    svc: &Service,
    id: &str,
    slices: &[&EndpointSlice],
    node: Option<&str>,
) -> Vec<ServicePort> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let Some(ip) = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
    else {
        return Vec::new();
    };
    let external = external_addresses(svc);
    let affinity = affinity(svc);
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let health_check = spec
        .health_check_node_port
        .and_then(|n| u16::try_from(n).ok());
    spec.ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let protocol = Protocol::parse(p.protocol.as_deref())?;
            let port = u16::try_from(p.port).ok()?;
            let label = p.name.clone().unwrap_or_else(|| port.to_string());
            let candidates = candidates(p, slices, node);
            Some(ServicePort {
                id: format!("{id}/{}/{label}", protocol.nft()),
                cluster_ip: ip,
                protocol,
                port,
                node_port: p.node_port.and_then(|n| u16::try_from(n).ok()),
                external: external.clone(),
                affinity,
                endpoints: candidates.pick(internal_local),
                local_endpoints: external_local.then(|| candidates.pick(true)),
                local_ready: if health_check.is_some() {
                    candidates.ready(true)
                } else {
                    Vec::new()
                },
                health_check,
            })
        })
        .collect()
}

/// The seconds a client sticks to an endpoint under `sessionAffinity: ClientIP` (upstream's
/// default: three hours).
fn affinity(svc: &Service) -> Option<u32> {
    let spec = svc.spec.as_ref()?;
    if spec.session_affinity.as_deref() != Some("ClientIP") {
        return None;
    }
    let timeout = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds)
        .and_then(|t| u32::try_from(t).ok());
    Some(timeout.unwrap_or(10_800))
}

/// `externalIPs` and `status.loadBalancer.ingress` addresses (IPv4), sorted.
fn external_addresses(svc: &Service) -> Vec<Ipv4Addr> {
    let spec_ips = svc
        .spec
        .iter()
        .flat_map(|s| s.external_ips.iter().flatten().cloned());
    let ingress = svc
        .status
        .iter()
        .flat_map(|s| s.load_balancer.iter())
        .flat_map(|lb| lb.ingress.iter().flatten())
        .filter_map(|i| i.ip.clone());
    let mut ips: Vec<Ipv4Addr> = spec_ips
        .chain(ingress)
        .filter_map(|ip| ip.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// The endpoints a Service port might use, with their state and whether they are local.
struct Candidates(Vec<(SocketAddrV4, State, bool)>);

impl Candidates {
    /// The ready endpoints (of this node only, if `local`); when there is none, the serving
    /// ones that are terminating (as upstream, so connections drain during a rollout).
    fn pick(&self, local: bool) -> Vec<SocketAddrV4> {
        let chosen = self.of(State::Ready, local);
        if chosen.is_empty() {
            self.of(State::Draining, local)
        } else {
            chosen
        }
    }

    /// The ready endpoints (of this node only, if `local`), sorted.
    fn ready(&self, local: bool) -> Vec<SocketAddrV4> {
        self.of(State::Ready, local)
    }

    fn of(&self, want: State, local: bool) -> Vec<SocketAddrV4> {
        let mut chosen: Vec<SocketAddrV4> = self
            .0
            .iter()
            .filter(|(_, s, l)| *s == want && (!local || *l))
            .map(|(a, _, _)| *a)
            .collect();
        chosen.sort();
        chosen.dedup();
        chosen
    }
}

fn candidates(port: &SpecPort, slices: &[&EndpointSlice], node: Option<&str>) -> Candidates {
    let want = port.name.as_deref().unwrap_or("");
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    let mut all = Vec::new();
    for slice in slices {
        let Some(target) = slice.ports.iter().flatten().find_map(|p| {
            let same = p.name.as_deref().unwrap_or("") == want
                && p.protocol.as_deref().unwrap_or("TCP") == protocol;
            same.then_some(p.port).flatten()
        }) else {
            continue;
        };
        let Ok(target) = u16::try_from(target) else {
            continue;
        };
        for e in &slice.endpoints {
            let local = node.is_some() && e.node_name.as_deref() == node;
            let state = state(e);
            all.extend(
                e.addresses
                    .iter()
                    .filter_map(|a| a.parse::<Ipv4Addr>().ok())
                    .map(|a| (SocketAddrV4::new(a, target), state, local)),
            );
        }
    }
    Candidates(all)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready,
    Draining,
    Out,
}

fn state(e: &Endpoint) -> State {
    let c = e.conditions.clone().unwrap_or_default();
    let ready = c.ready.unwrap_or(true);
    let serving = c.serving.unwrap_or(ready);
    let terminating = c.terminating.unwrap_or(false);
    if ready && !terminating {
        State::Ready
    } else if serving && terminating {
        State::Draining
    } else {
        State::Out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    fn web() -> Service {
        svc(json!({"metadata": {"name": "web", "namespace": "default"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.2"}, {"hostname": "lb.example"}]}},
            "spec": {"clusterIP": "10.43.0.5", "type": "NodePort", "externalIPs": ["198.51.100.7"], "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
                {"name": "dns", "port": 53, "protocol": "UDP"}]}}))
    }

    fn web_slice(endpoints: serde_json::Value) -> EndpointSlice {
        slice(
            json!({"metadata": {"name": "web-abc", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                      {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": endpoints}),
        )
    }

    #[test]
    fn ports_take_their_target_from_the_slice_port_of_the_same_name() {
        let s = web_slice(json!([
            {"addresses": ["10.42.0.7"], "conditions": {"ready": true}},
            {"addresses": ["10.42.0.6"]},
        ]));
        let ports = service_ports([&web()], [&s], None);
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].id, "default/web/tcp/http");
        assert_eq!(ports[0].node_port, Some(30080));
        let external: Vec<Ipv4Addr> = vec![
            "192.0.2.2".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
        ];
        assert_eq!(ports[0].external, external);
        assert_eq!(ports[0].affinity, None);
        assert_eq!(
            ports[0].endpoints,
            [
                "10.42.0.6:8080".parse().unwrap(),
                "10.42.0.7:8080".parse().unwrap()
            ]
        );
        assert_eq!(ports[1].id, "default/web/udp/dns");
        assert_eq!(
            ports[1].endpoints,
            [
                "10.42.0.6:5353".parse().unwrap(),
                "10.42.0.7:5353".parse().unwrap()
            ]
        );
    }

    #[test]
    fn terminating_endpoints_serve_only_when_nothing_is_ready() {
        let draining = json!({"addresses": ["10.42.0.9"],
            "conditions": {"ready": false, "serving": true, "terminating": true}});
        let both = web_slice(json!([draining, {"addresses": ["10.42.0.7"]},
            {"addresses": ["10.42.0.8"], "conditions": {"ready": false}}]));
        let ports = service_ports([&web()], [&both], None);
        assert_eq!(ports[0].endpoints, ["10.42.0.7:8080".parse().unwrap()]);
        let only = web_slice(json!([draining]));
        let ports = service_ports([&web()], [&only], None);
        assert_eq!(ports[0].endpoints, ["10.42.0.9:8080".parse().unwrap()]);
    }

    #[test]
    fn local_traffic_policies_keep_to_this_nodes_endpoints() {
        let s = web_slice(json!([
            {"addresses": ["10.42.0.7"], "nodeName": "here"},
            {"addresses": ["10.42.1.7"], "nodeName": "there"},
        ]));
        let mut svc = web();
        let ports = service_ports([&svc], [&s], Some("here"));
        assert_eq!(ports[0].endpoints.len(), 2);
        assert_eq!(ports[0].local_endpoints, None);
        let spec = svc.spec.as_mut().unwrap();
        spec.internal_traffic_policy = Some("Local".into());
        spec.external_traffic_policy = Some("Local".into());
        let ports = service_ports([&svc], [&s], Some("here"));
        let here: Vec<SocketAddrV4> = vec!["10.42.0.7:8080".parse().unwrap()];
        assert_eq!(ports[0].endpoints, here);
        assert_eq!(ports[0].local_endpoints, Some(here));
        let elsewhere = service_ports([&svc], [&s], Some("third"));
        assert!(elsewhere[0].endpoints.is_empty());
        assert_eq!(elsewhere[0].local_endpoints, Some(vec![]));
    }

    #[test]
    fn a_health_check_counts_the_services_local_addresses_once() {
        let s = web_slice(json!([
            {"addresses": ["10.42.0.7"], "nodeName": "here"},
            {"addresses": ["10.42.0.8"], "nodeName": "here",
             "conditions": {"ready": false, "serving": true, "terminating": true}},
            {"addresses": ["10.42.1.7"], "nodeName": "there"},
        ]));
        let mut svc = web();
        let spec = svc.spec.as_mut().unwrap();
        spec.type_ = Some("LoadBalancer".into());
        spec.external_traffic_policy = Some("Local".into());
        spec.health_check_node_port = Some(31000);
        let check = |node| health_checks(&service_ports([&svc], [&s], Some(node)));
        let here = check("here");
        let expected = HealthCheck {
            namespace: "default".into(),
            name: "web".into(),
            local_endpoints: 1,
        };
        assert_eq!(here.get(&31000), Some(&expected));
        assert_eq!(check("third")[&31000].local_endpoints, 0);
    }

    #[test]
    fn client_ip_affinity_lasts_three_hours_unless_told() {
        let mut sticky = web();
        let spec = sticky.spec.as_mut().unwrap();
        spec.session_affinity = Some("ClientIP".into());
        assert_eq!(service_ports([&sticky], [], None)[0].affinity, Some(10_800));
        let spec = sticky.spec.as_mut().unwrap();
        spec.session_affinity_config =
            serde_json::from_value(json!({"clientIP": {"timeoutSeconds": 60}})).unwrap();
        assert_eq!(service_ports([&sticky], [], None)[0].affinity, Some(60));
    }

    #[test]
    fn headless_and_external_name_services_get_nothing() {
        let headless = svc(json!({"metadata": {"name": "h", "namespace": "a"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}));
        let external = svc(json!({"metadata": {"name": "e", "namespace": "a"},
            "spec": {"type": "ExternalName", "externalName": "example.com"}}));
        assert!(service_ports([&headless, &external], [], None).is_empty());
    }

    #[test]
    fn slices_of_other_services_and_families_are_ignored() {
        let mut other = web_slice(json!([{"addresses": ["10.42.0.7"]}]));
        other.metadata.namespace = Some("elsewhere".into());
        let mut v6 = web_slice(json!([{"addresses": ["fd00::7"]}]));
        v6.address_type = "IPv6".into();
        let ports = service_ports([&web()], [&other, &v6], None);
        assert!(ports.iter().all(|p| p.endpoints.is_empty()));
    }
}
