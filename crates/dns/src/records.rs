//! The in-memory model the DNS answers are computed from: the cluster's Services, their
//! EndpointSlices and its Pods, reduced to what DNS needs and keyed by namespace and name so a
//! watch can feed it change by change (`apply_*` for an added or modified object, `delete_*`
//! for a removed one, `replace_*` after a relist).
//!
//! It keeps what CoreDNS's `kubernetes` plugin keeps: a Service's kind (ClusterIP addresses,
//! headless or ExternalName), its ports and `publishNotReadyAddresses`; an EndpointSlice's
//! Service (label `kubernetes.io/service-name`), ports and endpoints (addresses, `hostname`,
//! readiness); a Pod's addresses and whether it is being deleted; the Namespaces' names.
//! Nothing here talks to the API.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How names under `<ns>.pod.<zone>` are answered (CoreDNS's `pods` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodMode {
    /// `pods insecure` (the default Corefile's choice): `1-2-3-4.<ns>.pod.<zone>` answers
    /// 1.2.3.4 without checking that a pod has that address.
    #[default]
    Insecure,
    /// `pods verified`: answer only when a pod of that namespace, not being deleted, has
    /// that address.
    Verified,
    /// `pods disabled`: every name under `pod.<zone>` is NXDOMAIN.
    Disabled,
}

/// A port of a Service or an EndpointSlice, as DNS sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Port {
    /// The port's name, empty when unnamed.
    pub(crate) name: String,
    /// `TCP`, `UDP` or `SCTP` (TCP when unset).
    pub(crate) protocol: String,
    pub(crate) port: u16,
}

/// What a Service resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServiceKind {
    /// A Service with cluster IPs (`spec.clusterIPs`, or `spec.clusterIP`).
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the endpoints' addresses.
    Headless,
    /// `type: ExternalName`: a CNAME to `spec.externalName`.
    ExternalName(Name),
}

/// One Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceEntry {
    pub(crate) kind: ServiceKind,
    pub(crate) ports: Vec<Port>,
    pub(crate) publish_not_ready: bool,
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) addresses: Vec<IpAddr>,
    /// `hostname`, set for pods with `spec.hostname` and a `spec.subdomain` naming the Service.
    pub(crate) hostname: Option<String>,
    /// `conditions.ready`, where unset means ready.
    pub(crate) ready: bool,
}

/// One EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slice {
    pub(crate) ports: Vec<Port>,
    pub(crate) endpoints: Vec<Endpoint>,
}

/// One Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PodEntry {
    ips: Vec<IpAddr>,
    deleting: bool,
}

type Key = (String, String);

/// The cluster's DNS data: Services, EndpointSlices and Pods, reduced to what names need.
#[derive(Debug, Clone)]
pub struct Records {
    zone: Name,
    pod_mode: PodMode,
    serial: u32,
    services: BTreeMap<Key, ServiceEntry>,
    /// (namespace, service, slice) → slice.
    slices: BTreeMap<(String, String, String), Slice>,
    /// (namespace, slice) → the service it belongs to, to delete or relabel it.
    slice_service: BTreeMap<Key, String>,
    pods: BTreeMap<Key, PodEntry>,
    namespaces: BTreeSet<String>,
}

impl Default for Records {
    fn default() -> Records {
        Records::new("cluster.local").expect("cluster.local is a valid domain")
    }
}

impl Records {
    /// An empty model for the cluster domain `domain` (`cluster.local`, kubelet's
    /// `clusterDomain`). Fails when `domain` is not a domain name.
    pub fn new(domain: &str) -> Result<Records, String> {
        let mut zone = Name::from_ascii(domain.trim_end_matches('.'))
            .map_err(|e| format!("cluster domain {domain:?}: {e}"))?
            .to_lowercase();
        zone.set_fqdn(true);
        if zone.is_root() {
            return Err("the cluster domain must not be the root".into());
        }
        if crate::answer::nameserver(&zone).is_none() || crate::answer::hostmaster(&zone).is_none()
        {
            return Err(format!("cluster domain {domain:?}: too long"));
        }
        Ok(Records {
            zone,
            pod_mode: PodMode::default(),
            serial: now_serial(),
            services: BTreeMap::new(),
            slices: BTreeMap::new(),
            slice_service: BTreeMap::new(),
            pods: BTreeMap::new(),
            namespaces: BTreeSet::new(),
        })
    }

    /// Answers pod names as `mode` says (CoreDNS's `pods` option; `insecure` by default).
    #[must_use]
    pub fn with_pod_mode(mut self, mode: PodMode) -> Records {
        self.pod_mode = mode;
        self
    }

    /// The zone answered, lowercase and fully qualified (`cluster.local.`).
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// How pod names are answered.
    pub fn pod_mode(&self) -> PodMode {
        self.pod_mode
    }

    /// The SOA serial: the Unix time of the last change, as CoreDNS's.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    fn touch(&mut self) {
        self.serial = now_serial().max(self.serial);
    }

    /// Adds or replaces a Service (a watch's added or modified event).
    pub fn apply_service(&mut self, service: &Service) {
        let Some(key) = key_of(&service.metadata) else {
            return;
        };
        match service_entry(service) {
            Some(entry) => {
                self.services.insert(key, entry);
            }
            None => {
                self.services.remove(&key);
            }
        }
        self.touch();
    }

    /// Forgets the Service `namespace/name` (its slices stay until they are deleted too).
    pub fn delete_service(&mut self, namespace: &str, name: &str) {
        self.services
            .remove(&(namespace.to_owned(), name.to_owned()));
        self.touch();
    }

    /// Replaces every Service with `services` (a relist).
    pub fn replace_services<'a>(&mut self, services: impl IntoIterator<Item = &'a Service>) {
        self.services.clear();
        for service in services {
            self.apply_service(service);
        }
        self.touch();
    }

    /// Adds or replaces an EndpointSlice; one without the `kubernetes.io/service-name` label
    /// belongs to no Service and is dropped.
    pub fn apply_slice(&mut self, slice: &EndpointSlice) {
        let Some((namespace, name)) = key_of(&slice.metadata) else {
            return;
        };
        self.delete_slice(&namespace, &name);
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(SERVICE_NAME_LABEL))
            .filter(|service| !service.is_empty());
        let Some(service) = service else { return };
        self.slice_service
            .insert((namespace.clone(), name.clone()), service.clone());
        self.slices
            .insert((namespace, service.clone(), name), slice_entry(slice));
    }

    /// Forgets the EndpointSlice `namespace/name`.
    pub fn delete_slice(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(service) = self.slice_service.remove(&key) {
            self.slices.remove(&(key.0, service, key.1));
        }
        self.touch();
    }

    /// Replaces every EndpointSlice with `slices` (a relist).
    pub fn replace_slices<'a>(&mut self, slices: impl IntoIterator<Item = &'a EndpointSlice>) {
        self.slices.clear();
        self.slice_service.clear();
        for slice in slices {
            self.apply_slice(slice);
        }
        self.touch();
    }

    /// Adds or replaces a Pod.
    pub fn apply_pod(&mut self, pod: &Pod) {
        let Some(key) = key_of(&pod.metadata) else {
            return;
        };
        let status = pod.status.as_ref();
        let mut ips: Vec<IpAddr> = status
            .and_then(|s| s.pod_ips.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|ip| ip.ip.parse().ok())
            .collect();
        if let Some(ip) = status
            .and_then(|s| s.pod_ip.as_ref())
            .and_then(|ip| ip.parse().ok())
            && !ips.contains(&ip)
        {
            ips.push(ip);
        }
        let deleting = pod.metadata.deletion_timestamp.is_some();
        self.pods.insert(key, PodEntry { ips, deleting });
        self.touch();
    }

    /// Forgets the Pod `namespace/name`.
    pub fn delete_pod(&mut self, namespace: &str, name: &str) {
        self.pods.remove(&(namespace.to_owned(), name.to_owned()));
        self.touch();
    }

    /// Replaces every Pod with `pods` (a relist).
    pub fn replace_pods<'a>(&mut self, pods: impl IntoIterator<Item = &'a Pod>) {
        self.pods.clear();
        for pod in pods {
            self.apply_pod(pod);
        }
        self.touch();
    }

    /// Adds a Namespace: `<ns>.svc.<zone>` and `<ns>.pod.<zone>` exist (NODATA, not
    /// NXDOMAIN), and `pods insecure` answers names under the latter.
    pub fn apply_namespace(&mut self, namespace: &Namespace) {
        if let Some(name) = &namespace.metadata.name {
            self.namespaces.insert(name.clone());
            self.touch();
        }
    }

    /// Forgets the Namespace `name`.
    pub fn delete_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
        self.touch();
    }

    /// Replaces every Namespace with `namespaces` (a relist).
    pub fn replace_namespaces<'a>(&mut self, namespaces: impl IntoIterator<Item = &'a Namespace>) {
        self.namespaces.clear();
        for namespace in namespaces {
            self.apply_namespace(namespace);
        }
        self.touch();
    }

    /// The Service `namespace/name`.
    pub(crate) fn service(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.services.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// Whether the namespace exists (CoreDNS's check): a Namespace was applied, or a Service
    /// or Pod of the model lives in it (so a model fed without Namespaces still works).
    pub(crate) fn namespace_known(&self, namespace: &str) -> bool {
        if self.namespaces.contains(namespace) {
            return true;
        }
        let start = (namespace.to_owned(), String::new());
        let first_service = self.services.range(start.clone()..).next();
        let first_pod = self.pods.range(start..).next();
        first_service.is_some_and(|((ns, _), _)| ns == namespace)
            || first_pod.is_some_and(|((ns, _), _)| ns == namespace)
    }

    /// The published endpoints of the Service `namespace/name` with their slice's ports:
    /// the ready ones, and the others too when the Service publishes not-ready addresses.
    pub(crate) fn endpoints(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Iterator<Item = (&Endpoint, &[Port])> {
        let publish_all = self
            .service(namespace, name)
            .is_some_and(|s| s.publish_not_ready);
        let start = (namespace.to_owned(), name.to_owned(), String::new());
        self.slices
            .range(start..)
            .take_while(move |((ns, svc, _), _)| ns == namespace && svc == name)
            .flat_map(|(_, slice)| slice.endpoints.iter().map(|e| (e, slice.ports.as_slice())))
            .filter(move |(endpoint, _)| endpoint.ready || publish_all)
    }

    /// The Service whose cluster IP is `ip`, as (namespace, name).
    pub(crate) fn service_with_ip(&self, ip: IpAddr) -> Option<(&str, &str)> {
        self.services
            .iter()
            .find_map(|((ns, name), entry)| match &entry.kind {
                ServiceKind::ClusterIp(ips) if ips.contains(&ip) => {
                    Some((ns.as_str(), name.as_str()))
                }
                _ => None,
            })
    }

    /// Every published endpoint with address `ip`, as (namespace, service, endpoint label).
    pub(crate) fn endpoints_with_ip(&self, ip: IpAddr) -> Vec<(&str, &str, String)> {
        let mut found = Vec::new();
        for ((ns, svc, _), slice) in &self.slices {
            let publish_all = self.service(ns, svc).is_some_and(|s| s.publish_not_ready);
            for endpoint in &slice.endpoints {
                if (endpoint.ready || publish_all) && endpoint.addresses.contains(&ip) {
                    found.push((ns.as_str(), svc.as_str(), endpoint_label(endpoint, ip)));
                }
            }
        }
        found
    }

    /// Whether a Pod of `namespace`, not being deleted, has the address `ip`.
    pub(crate) fn pod_has_ip(&self, namespace: &str, ip: IpAddr) -> bool {
        let start = (namespace.to_owned(), String::new());
        self.pods
            .range(start..)
            .take_while(|((ns, _), _)| ns == namespace)
            .any(|(_, pod)| !pod.deleting && pod.ips.contains(&ip))
    }
}

/// The first label of an endpoint's name: its `hostname`, or its address with dashes
/// (`10-1-2-3`, `fd00--1`), as CoreDNS names endpoints.
pub(crate) fn endpoint_label(endpoint: &Endpoint, ip: IpAddr) -> String {
    match &endpoint.hostname {
        Some(hostname) if !hostname.is_empty() => hostname.to_ascii_lowercase(),
        _ => dashed(ip),
    }
}

/// An address with its dots or colons turned into dashes.
pub(crate) fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

fn now_serial() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(secs).unwrap_or(u32::MAX)
}

fn key_of(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
    Some((metadata.namespace.clone()?, metadata.name.clone()?))
}

fn service_entry(service: &Service) -> Option<ServiceEntry> {
    let spec = service.spec.as_ref()?;
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| port(p.name.as_deref(), Some(p.port), p.protocol.as_deref()))
        .collect();
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        let target = spec.external_name.as_deref()?.trim_end_matches('.');
        // CoreDNS answers an ExternalName only when it is a name, not an address.
        if target.is_empty() || target.parse::<IpAddr>().is_ok() {
            return None;
        }
        let mut name = Name::from_ascii(target).ok()?;
        name.set_fqdn(true);
        ServiceKind::ExternalName(name)
    } else {
        let ips: Vec<&String> = match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips.iter().collect(),
            _ => spec.cluster_ip.iter().collect(),
        };
        if ips.iter().any(|ip| ip.as_str() == "None") {
            ServiceKind::Headless
        } else {
            let ips: Vec<IpAddr> = ips.iter().filter_map(|ip| ip.parse().ok()).collect();
            if ips.is_empty() {
                // Not allocated yet: nothing to answer.
                return None;
            }
            ServiceKind::ClusterIp(ips)
        }
    };
    Some(ServiceEntry {
        kind,
        ports,
        publish_not_ready: spec.publish_not_ready_addresses == Some(true),
    })
}

fn port(name: Option<&str>, number: Option<i32>, protocol: Option<&str>) -> Option<Port> {
    Some(Port {
        name: name.unwrap_or_default().to_ascii_lowercase(),
        protocol: protocol.unwrap_or("TCP").to_ascii_uppercase(),
        port: u16::try_from(number?).ok().filter(|p| *p != 0)?,
    })
}

fn slice_entry(slice: &EndpointSlice) -> Slice {
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| port(p.name.as_deref(), p.port, p.protocol.as_deref()))
        .collect();
    let endpoints = slice
        .endpoints
        .iter()
        .map(|e| Endpoint {
            addresses: e.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
            hostname: e.hostname.clone().filter(|h| !h.is_empty()),
            ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
        })
        .collect();
    Slice { ports, endpoints }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A Service from its spec.
    pub(crate) fn service(namespace: &str, name: &str, spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"namespace": namespace, "name": name},
            "spec": spec,
        }))
        .unwrap()
    }

    /// An EndpointSlice of `service` with `endpoints` and `ports` (JSON, as the API has them).
    pub(crate) fn slice(
        namespace: &str,
        name: &str,
        service: &str,
        endpoints: serde_json::Value,
        ports: serde_json::Value,
    ) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {
                "namespace": namespace,
                "name": name,
                "labels": {SERVICE_NAME_LABEL: service},
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        }))
        .unwrap()
    }

    /// A Pod with addresses `ips`.
    pub(crate) fn pod(namespace: &str, name: &str, ips: &[&str]) -> Pod {
        let pod_ips: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        serde_json::from_value(json!({
            "metadata": {"namespace": namespace, "name": name},
            "status": {"podIP": ips.first(), "podIPs": pod_ips},
        }))
        .unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn services_of_each_kind() {
        let mut records = Records::default();
        records.apply_service(&service(
            "ns",
            "web",
            json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "fd00::1"],
                   "ports": [{"name": "HTTP", "port": 80}]}),
        ));
        records.apply_service(&service("ns", "db", json!({"clusterIP": "None"})));
        records.apply_service(&service(
            "ns",
            "ext",
            json!({"type": "ExternalName", "externalName": "example.com."}),
        ));
        records.apply_service(&service(
            "ns",
            "ipext",
            json!({"type": "ExternalName", "externalName": "1.2.3.4"}),
        ));
        let web = records.service("ns", "web").unwrap();
        assert_eq!(
            web.kind,
            ServiceKind::ClusterIp(vec![ip("10.0.0.1"), ip("fd00::1")])
        );
        assert_eq!(
            web.ports,
            vec![Port {
                name: "http".into(),
                protocol: "TCP".into(),
                port: 80
            }]
        );
        assert_eq!(
            records.service("ns", "db").unwrap().kind,
            ServiceKind::Headless
        );
        assert_eq!(
            records.service("ns", "ext").unwrap().kind,
            ServiceKind::ExternalName(Name::from_ascii("example.com.").unwrap())
        );
        assert!(records.service("ns", "ipext").is_none());
        assert_eq!(records.service_with_ip(ip("fd00::1")), Some(("ns", "web")));
        assert!(records.namespace_known("ns"));
        assert!(!records.namespace_known("n"));

        records.delete_service("ns", "web");
        assert!(records.service("ns", "web").is_none());
        assert_eq!(records.service_with_ip(ip("10.0.0.1")), None);
    }

    #[test]
    fn slices_follow_their_label_and_readiness() {
        let mut records = Records::default();
        records.apply_service(&service("ns", "db", json!({"clusterIP": "None"})));
        records.apply_slice(&slice(
            "ns",
            "db-1",
            "db",
            json!([
                {"addresses": ["10.1.0.1"], "hostname": "db-0"},
                {"addresses": ["10.1.0.2"], "conditions": {"ready": false}},
            ]),
            json!([{"name": "sql", "port": 5432, "protocol": "TCP"}]),
        ));
        records.apply_slice(&slice(
            "ns",
            "db-2",
            "db",
            json!([{"addresses": ["10.1.0.3"]}]),
            json!([]),
        ));
        let ready: Vec<_> = records
            .endpoints("ns", "db")
            .map(|(e, _)| e.addresses[0])
            .collect();
        assert_eq!(ready, vec![ip("10.1.0.1"), ip("10.1.0.3")]);
        assert_eq!(
            records.endpoints_with_ip(ip("10.1.0.1")),
            vec![("ns", "db", "db-0".to_owned())]
        );
        assert_eq!(
            records.endpoints_with_ip(ip("10.1.0.3")),
            vec![("ns", "db", "10-1-0-3".to_owned())]
        );

        // publishNotReadyAddresses publishes the not-ready endpoint too.
        records.apply_service(&service(
            "ns",
            "db",
            json!({"clusterIP": "None", "publishNotReadyAddresses": true}),
        ));
        assert_eq!(records.endpoints("ns", "db").count(), 3);

        // A slice moved to another service leaves the first one.
        records.apply_slice(&slice(
            "ns",
            "db-2",
            "other",
            json!([{"addresses": ["10.1.0.3"]}]),
            json!([]),
        ));
        assert_eq!(records.endpoints("ns", "db").count(), 2);
        assert_eq!(records.endpoints("ns", "other").count(), 1);

        records.delete_slice("ns", "db-1");
        assert_eq!(records.endpoints("ns", "db").count(), 0);

        records.replace_slices([]);
        assert_eq!(records.endpoints("ns", "other").count(), 0);
    }

    #[test]
    fn pods_and_their_addresses() {
        let mut records = Records::default();
        records.apply_pod(&pod("ns", "p", &["10.2.0.1", "fd00::2"]));
        assert!(records.pod_has_ip("ns", ip("10.2.0.1")));
        assert!(records.pod_has_ip("ns", ip("fd00::2")));
        assert!(!records.pod_has_ip("other", ip("10.2.0.1")));
        assert!(records.namespace_known("ns"));
        records.delete_pod("ns", "p");
        assert!(!records.pod_has_ip("ns", ip("10.2.0.1")));
        assert!(!records.namespace_known("ns"));
    }

    #[test]
    fn namespaces() {
        let mut records = Records::default();
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "empty"}})).unwrap();
        records.apply_namespace(&namespace);
        assert!(records.namespace_known("empty"));
        records.delete_namespace("empty");
        assert!(!records.namespace_known("empty"));
        records.replace_namespaces([&namespace]);
        assert!(records.namespace_known("empty"));
    }

    #[test]
    fn domain_is_normalised() {
        let records = Records::new("Cluster.Local.").unwrap();
        assert_eq!(records.zone().to_ascii(), "cluster.local.");
        assert!(Records::new(".").is_err());
        assert!(Records::new(&["a".repeat(60).as_str(); 4].join(".")).is_err());
    }

    #[test]
    fn dashed_addresses() {
        assert_eq!(dashed(ip("10.0.0.1")), "10-0-0-1");
        assert_eq!(dashed(ip("fd00::1")), "fd00--1");
    }
}
