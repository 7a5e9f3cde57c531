//! The routing table (pure): which Service endpoints a request's host and path go to, built
//! from our Ingresses, the Services and their EndpointSlices as upstream's Ingress API
//! (networking.k8s.io/v1) defines it.
//!
//! Hosts match exactly or by a `*.` wildcard covering one leading label; a rule without a host
//! matches any. Paths match `Exact`ly or by `Prefix` element-wise on `/`
//! (`ImplementationSpecific` is `Prefix`). Among the rules that match, an exact host beats a
//! wildcard beats no host, then the longest path wins, `Exact` before `Prefix` at equal
//! length, then the older Ingress. When none match, the oldest Ingress's `defaultBackend`
//! does, if any.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, ServiceBackendPort};

/// The label tying an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Where requests go: one rule per Ingress path, in precedence order, and the default backend.
#[derive(Debug, Default)]
pub struct Table {
    rules: Vec<Rule>,
    default: Option<Arc<Backend>>,
}

/// One Ingress path under one host.
#[derive(Debug)]
struct Rule {
    host: HostMatch,
    path: PathMatch,
    backend: Arc<Backend>,
}

/// Which request hosts a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    /// This host only (lower case).
    Exact(String),
    /// One label followed by this domain (`*.example.com` holds `example.com`).
    Wildcard(String),
    /// Any host.
    Any,
}

/// Which request paths a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathMatch {
    /// This path only.
    Exact(String),
    /// This path and those under it; held without a trailing `/` (so `/` is empty).
    Prefix(String),
}

/// A Service port and its ready endpoints, chosen from in turn.
#[derive(Debug)]
pub struct Backend {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub service: String,
    /// The port as the Ingress names it (a number or a port name).
    pub port: String,
    endpoints: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Backend {
    /// The ready endpoints, sorted.
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    /// The next endpoint in round-robin order, if there is any.
    pub fn pick(&self) -> Option<SocketAddr> {
        if self.endpoints.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        Some(self.endpoints[turn % self.endpoints.len()])
    }
}

/// A random number, from the standard library's randomly keyed hasher.
fn random_start() -> usize {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as usize
}

/// The Services and EndpointSlices backends are resolved against.
struct Cluster<'a> {
    services: BTreeMap<(&'a str, &'a str), &'a Service>,
    slices: &'a [&'a EndpointSlice],
    /// Backends already resolved, shared so that their rules share one round-robin turn.
    backends: BTreeMap<(String, String, String), Arc<Backend>>,
}

impl Table {
    /// The table for `ingresses` (ours, oldest first: see [`crate::class::ours`]).
    pub fn build(
        ingresses: &[&Ingress],
        services: &[&Service],
        slices: &[&EndpointSlice],
    ) -> Table {
        let mut cluster = Cluster {
            services: services
                .iter()
                .filter_map(|s| {
                    Some((
                        (
                            s.metadata.namespace.as_deref()?,
                            s.metadata.name.as_deref()?,
                        ),
                        *s,
                    ))
                })
                .collect(),
            slices,
            backends: BTreeMap::new(),
        };
        let mut ranked = Vec::new();
        let mut default = None;
        for (age, ing) in ingresses.iter().enumerate() {
            let Some(spec) = &ing.spec else { continue };
            let namespace = ing.metadata.namespace.as_deref().unwrap_or_default();
            if default.is_none() {
                default = spec
                    .default_backend
                    .as_ref()
                    .and_then(|b| cluster.backend(namespace, b));
            }
            for rule in spec.rules.iter().flatten() {
                let host = HostMatch::parse(rule.host.as_deref());
                for path in rule.http.iter().flat_map(|h| &h.paths) {
                    let Some(backend) = cluster.backend(namespace, &path.backend) else {
                        continue;
                    };
                    let path = PathMatch::parse(&path.path_type, path.path.as_deref());
                    ranked.push((
                        rank(&host, &path, age),
                        Rule {
                            host: host.clone(),
                            path,
                            backend,
                        },
                    ));
                }
            }
        }
        // Stable: rules of equal rank keep their order in the Ingress.
        ranked.sort_by_key(|(rank, _)| *rank);
        Table {
            rules: ranked.into_iter().map(|(_, rule)| rule).collect(),
            default,
        }
    }

    /// The backend for a request to `host` (as the Host header or `:authority` gives it, a
    /// port allowed) and `path`, or `None` for a 404.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&Arc<Backend>> {
        let host = host.map(normalize_host).unwrap_or_default();
        self.rules
            .iter()
            .find(|r| r.host.matches(&host) && r.path.matches(path))
            .map(|r| &r.backend)
            .or(self.default.as_ref())
    }

    /// How many rules the table holds (the default backend aside).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the table routes nothing at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.default.is_none()
    }
}

/// Precedence, lowest first: host kind, then longer paths, then `Exact`, then older Ingress.
fn rank(
    host: &HostMatch,
    path: &PathMatch,
    age: usize,
) -> (u8, std::cmp::Reverse<usize>, u8, usize) {
    let host = match host {
        HostMatch::Exact(_) => 0,
        HostMatch::Wildcard(_) => 1,
        HostMatch::Any => 2,
    };
    let (len, kind) = match path {
        PathMatch::Exact(p) => (p.len(), 0),
        PathMatch::Prefix(p) => (p.len(), 1),
    };
    (host, std::cmp::Reverse(len), kind, age)
}

/// A request host as rules compare it: lower case, without port or trailing dot.
pub fn normalize_host(host: &str) -> String {
    let host = if let Some(bracketed) = host.strip_prefix('[') {
        // An IPv6 literal, `[::1]:8080`.
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl HostMatch {
    fn parse(host: Option<&str>) -> HostMatch {
        match host.map(str::trim) {
            None | Some("") => HostMatch::Any,
            Some(h) => match h.strip_prefix("*.") {
                Some(domain) => HostMatch::Wildcard(domain.to_ascii_lowercase()),
                None => HostMatch::Exact(h.trim_end_matches('.').to_ascii_lowercase()),
            },
        }
    }

    /// Whether `host` (normalized) is covered.
    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h == host,
            HostMatch::Wildcard(domain) => wildcard_matches(domain, host),
            HostMatch::Any => true,
        }
    }
}

/// Whether `host` is one non-empty label followed by `.domain`.
fn wildcard_matches(domain: &str, host: &str) -> bool {
    host.split_once('.')
        .is_some_and(|(label, rest)| !label.is_empty() && rest == domain)
}

impl PathMatch {
    fn parse(path_type: &str, path: Option<&str>) -> PathMatch {
        let path = path.unwrap_or("/");
        match path_type {
            "Exact" => PathMatch::Exact(path.to_owned()),
            // `Prefix`, and `ImplementationSpecific` as this implementation specifies it.
            _ => PathMatch::Prefix(path.trim_end_matches('/').to_owned()),
        }
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) => path
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }
}

impl Cluster<'_> {
    /// The Service backend `backend` names in `namespace`; `None` for a resource backend.
    fn backend(&mut self, namespace: &str, backend: &IngressBackend) -> Option<Arc<Backend>> {
        let svc = backend.service.as_ref()?;
        let port = svc.port.as_ref().map(port_text).unwrap_or_default();
        let key = (namespace.to_owned(), svc.name.clone(), port);
        if let Some(found) = self.backends.get(&key) {
            return Some(found.clone());
        }
        let endpoints = svc
            .port
            .as_ref()
            .and_then(|p| {
                let service = self.services.get(&(namespace, svc.name.as_str()))?;
                service_port(service, p)
            })
            .map(|sp| self.endpoints(namespace, &svc.name, sp))
            .unwrap_or_default();
        let made = Arc::new(Backend {
            namespace: key.0.clone(),
            service: key.1.clone(),
            port: key.2.clone(),
            endpoints,
            // A table is rebuilt on every change in the cluster: each starts its turns at a
            // random endpoint, or the first would get more than its share.
            next: AtomicUsize::new(random_start()),
        });
        self.backends.insert(key, made.clone());
        Some(made)
    }

    /// The ready addresses of the Service's slices, at the slice port named as `port` is.
    fn endpoints(&self, namespace: &str, service: &str, port: &ServicePort) -> Vec<SocketAddr> {
        let name = port.name.as_deref().unwrap_or_default();
        let mut found = Vec::new();
        for slice in self
            .slices
            .iter()
            .filter(|s| slice_of(s, namespace, service))
        {
            let Some(number) = slice_port(slice, name) else {
                continue;
            };
            for ep in &slice.endpoints {
                if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                    continue;
                }
                let ips = ep.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok());
                found.extend(ips.map(|ip| SocketAddr::new(ip, number)));
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }
}

/// Whether `slice` is one of Service `namespace/service`'s.
fn slice_of(slice: &EndpointSlice, namespace: &str, service: &str) -> bool {
    slice.metadata.namespace.as_deref() == Some(namespace)
        && slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .is_some_and(|s| s == service)
}

/// The number of the TCP port called `name` (`""`: the unnamed one) in `slice`.
fn slice_port(slice: &EndpointSlice, name: &str) -> Option<u16> {
    let port = slice.ports.iter().flatten().find(|p| {
        p.name.as_deref().unwrap_or_default() == name
            && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
    })?;
    u16::try_from(port.port?).ok()
}

/// The Service port an Ingress backend names, by number or by name (TCP only).
fn service_port<'s>(service: &'s Service, port: &ServiceBackendPort) -> Option<&'s ServicePort> {
    service.spec.as_ref()?.ports.iter().flatten().find(|sp| {
        sp.protocol.as_deref().unwrap_or("TCP") == "TCP"
            && match (&port.number, &port.name) {
                (Some(n), _) => sp.port == *n,
                (None, Some(name)) => sp.name.as_deref() == Some(name.as_str()),
                (None, None) => false,
            }
    })
}

fn port_text(port: &ServiceBackendPort) -> String {
    match (&port.number, &port.name) {
        (Some(n), _) => n.to_string(),
        (None, Some(name)) => name.clone(),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn ingress(name: &str, spec: Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "web"},
            "spec": spec,
        }))
        .unwrap()
    }

    /// A `Prefix` (or other type) path to a Service's port number.
    fn path(path_type: &str, path: &str, service: &str) -> Value {
        json!({"path": path, "pathType": path_type,
               "backend": {"service": {"name": service, "port": {"number": 80}}}})
    }

    fn rule(host: Option<&str>, paths: Vec<Value>) -> Value {
        let mut rule = json!({"http": {"paths": paths}});
        if let Some(host) = host {
            rule["host"] = host.into();
        }
        rule
    }

    fn service(name: &str) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "web"},
            "spec": {"ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "admin", "port": 9000, "targetPort": 9001},
            ]},
        }))
        .unwrap()
    }

    /// A slice of `service` in `web` with its `http` port at 8080 and `admin` at 9001.
    fn slice(service: &str, endpoints: Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{service}-x"), "namespace": "web",
                         "labels": {(SERVICE_NAME_LABEL): service}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                      {"name": "admin", "port": 9001}],
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    /// The Services `a` to `e`, each with one ready endpoint 10.0.0.<n>.
    fn cluster() -> (Vec<Service>, Vec<EndpointSlice>) {
        let names = ["a", "b", "c", "d", "e"];
        let services = names.iter().map(|n| service(n)).collect();
        let slices = names
            .iter()
            .enumerate()
            .map(|(i, n)| slice(n, json!([{"addresses": [format!("10.0.0.{}", i + 1)]}])))
            .collect();
        (services, slices)
    }

    fn table(ingresses: &[Ingress]) -> Table {
        let (services, slices) = cluster();
        let ings: Vec<&Ingress> = ingresses.iter().collect();
        let services: Vec<&Service> = services.iter().collect();
        let slices: Vec<&EndpointSlice> = slices.iter().collect();
        Table::build(&ings, &services, &slices)
    }

    /// The Service a request goes to, or "404".
    fn to(table: &Table, host: &str, path: &str) -> String {
        table
            .route(Some(host), path)
            .map_or_else(|| "404".into(), |b| b.service.clone())
    }

    #[test]
    fn prefix_paths_match_whole_elements() {
        let t = table(&[ingress(
            "i",
            json!({"rules": [rule(None, vec![
                path("Prefix", "/foo", "a"),
                path("Prefix", "/bar/", "b"),
            ])]}),
        )]);
        for p in ["/foo", "/foo/", "/foo/bar"] {
            assert_eq!(to(&t, "x", p), "a", "{p}");
        }
        assert_eq!(to(&t, "x", "/foobar"), "404");
        // A trailing slash in the rule is ignored.
        for p in ["/bar", "/bar/", "/bar/baz"] {
            assert_eq!(to(&t, "x", p), "b", "{p}");
        }
        assert_eq!(to(&t, "x", "/"), "404");
    }

    #[test]
    fn a_slash_prefix_matches_everything_and_implementation_specific_is_prefix() {
        let t = table(&[ingress(
            "i",
            json!({"rules": [rule(None, vec![
                path("Prefix", "/", "a"),
                path("ImplementationSpecific", "/api", "b"),
            ])]}),
        )]);
        assert_eq!(to(&t, "x", "/"), "a");
        assert_eq!(to(&t, "x", "/anything/at/all"), "a");
        assert_eq!(to(&t, "x", "/api/v1"), "b");
        assert_eq!(to(&t, "x", "/apis"), "a");
    }

    #[test]
    fn exact_paths_match_only_themselves_and_win_ties() {
        let t = table(&[ingress(
            "i",
            json!({"rules": [rule(None, vec![
                path("Prefix", "/foo", "a"),
                path("Exact", "/foo", "b"),
                path("Exact", "/bar/", "c"),
            ])]}),
        )]);
        assert_eq!(to(&t, "x", "/foo"), "b");
        assert_eq!(to(&t, "x", "/foo/"), "a");
        assert_eq!(to(&t, "x", "/bar/"), "c");
        assert_eq!(to(&t, "x", "/bar"), "404");
    }

    #[test]
    fn the_longest_matching_path_wins() {
        let t = table(&[ingress(
            "i",
            json!({"rules": [rule(None, vec![
                path("Prefix", "/", "a"),
                path("Prefix", "/api/v1", "c"),
                path("Prefix", "/api", "b"),
            ])]}),
        )]);
        assert_eq!(to(&t, "x", "/api/v1/pods"), "c");
        assert_eq!(to(&t, "x", "/api/v2"), "b");
        assert_eq!(to(&t, "x", "/other"), "a");
    }

    #[test]
    fn hosts_match_exactly_case_insensitively_and_without_port() {
        let t = table(&[ingress(
            "i",
            json!({"rules": [
                rule(Some("Foo.Example.com"), vec![path("Prefix", "/", "a")]),
            ]}),
        )]);
        assert_eq!(to(&t, "foo.example.com", "/"), "a");
        assert_eq!(to(&t, "FOO.example.COM:8080", "/x"), "a");
        assert_eq!(to(&t, "foo.example.com.", "/"), "a");
        assert_eq!(to(&t, "bar.example.com", "/"), "404");
        assert_eq!(t.route(None, "/").map(|b| b.service.as_str()), None);
    }

    #[test]
    fn a_wildcard_covers_exactly_one_leading_label() {
        let t = table(&[ingress(
            "i",
            json!({"rules": [
                rule(Some("*.example.com"), vec![path("Prefix", "/", "a")]),
            ]}),
        )]);
        assert_eq!(to(&t, "foo.example.com", "/"), "a");
        assert_eq!(to(&t, "BAR.example.com:443", "/"), "a");
        assert_eq!(to(&t, "example.com", "/"), "404");
        assert_eq!(to(&t, "a.b.example.com", "/"), "404");
        assert_eq!(to(&t, ".example.com", "/"), "404");
    }

    #[test]
    fn exact_hosts_beat_wildcards_beat_hostless_rules() {
        let t = table(&[ingress(
            "i",
            json!({"rules": [
                rule(None, vec![path("Prefix", "/long/path", "c")]),
                rule(Some("*.example.com"), vec![path("Prefix", "/", "b")]),
                rule(Some("foo.example.com"), vec![path("Prefix", "/", "a")]),
            ]}),
        )]);
        assert_eq!(to(&t, "foo.example.com", "/long/path"), "a");
        assert_eq!(to(&t, "bar.example.com", "/long/path"), "b");
        assert_eq!(to(&t, "elsewhere", "/long/path"), "c");
        assert_eq!(to(&t, "elsewhere", "/"), "404");
    }

    #[test]
    fn a_host_whose_paths_do_not_match_falls_through_to_less_specific_rules() {
        let t = table(&[ingress(
            "i",
            json!({"rules": [
                rule(Some("foo.example.com"), vec![path("Prefix", "/api", "a")]),
                rule(None, vec![path("Prefix", "/", "b")]),
            ]}),
        )]);
        assert_eq!(to(&t, "foo.example.com", "/api"), "a");
        assert_eq!(to(&t, "foo.example.com", "/web"), "b");
    }

    #[test]
    fn the_older_ingress_wins_a_conflict() {
        let t = table(&[
            ingress(
                "old",
                json!({"rules": [rule(Some("x"), vec![path("Prefix", "/", "a")])]}),
            ),
            ingress(
                "new",
                json!({"rules": [rule(Some("x"), vec![path("Prefix", "/", "b")])]}),
            ),
        ]);
        assert_eq!(to(&t, "x", "/"), "a");
    }

    #[test]
    fn the_oldest_default_backend_answers_what_no_rule_matches() {
        let backend = |svc: &str| json!({"service": {"name": svc, "port": {"number": 80}}});
        let t = table(&[
            ingress(
                "rules-only",
                json!({"rules": [rule(Some("x"), vec![path("Prefix", "/", "a")])]}),
            ),
            ingress("first", json!({"defaultBackend": backend("b")})),
            ingress("second", json!({"defaultBackend": backend("c")})),
        ]);
        assert_eq!(to(&t, "x", "/"), "a");
        assert_eq!(to(&t, "y", "/"), "b");
        assert_eq!(t.route(None, "/").unwrap().service, "b");
    }

    #[test]
    fn resource_backends_are_not_routes() {
        let resource =
            json!({"resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "b"}});
        let t = table(&[ingress(
            "i",
            json!({
                "defaultBackend": resource,
                "rules": [rule(None, vec![
                    json!({"path": "/static", "pathType": "Prefix", "backend": resource}),
                    path("Prefix", "/", "a"),
                ])],
            }),
        )]);
        assert_eq!(to(&t, "x", "/static"), "a");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn endpoints_are_the_ready_addresses_at_the_slice_port_named_as_the_service_port() {
        let services = [service("a")];
        let slices = [
            slice(
                "a",
                json!([
                    {"addresses": ["10.0.0.2"], "conditions": {"ready": true}},
                    {"addresses": ["10.0.0.1"]},
                    {"addresses": ["10.0.0.3"], "conditions": {"ready": false}},
                ]),
            ),
            slice("a", json!([{"addresses": ["10.0.0.1", "not-an-ip"]}])),
            slice("other", json!([{"addresses": ["10.9.9.9"]}])),
        ];
        let by_port = |port: Value| {
            let ing = ingress(
                "i",
                json!({"defaultBackend": {"service": {"name": "a", "port": port}}}),
            );
            let t = Table::build(
                &[&ing],
                &services.iter().collect::<Vec<_>>(),
                &slices.iter().collect::<Vec<_>>(),
            );
            t.route(None, "/").unwrap().endpoints().to_vec()
        };
        let at = |port: u16| -> Vec<SocketAddr> {
            ["10.0.0.1", "10.0.0.2"]
                .iter()
                .map(|ip| SocketAddr::new(ip.parse().unwrap(), port))
                .collect()
        };
        assert_eq!(by_port(json!({"number": 80})), at(8080));
        assert_eq!(by_port(json!({"name": "admin"})), at(9001));
        assert_eq!(by_port(json!({"number": 8080})), []);
        assert_eq!(by_port(json!({"name": "nope"})), []);
    }

    #[test]
    fn slices_elsewhere_or_of_another_protocol_do_not_count() {
        let services = [service("a")];
        let mut other_ns = slice("a", json!([{"addresses": ["10.0.0.1"]}]));
        other_ns.metadata.namespace = Some("elsewhere".into());
        let mut udp = slice("a", json!([{"addresses": ["10.0.0.2"]}]));
        udp.ports.as_mut().unwrap()[0].protocol = Some("UDP".into());
        let ing = ingress(
            "i",
            json!({"rules": [rule(None, vec![path("Prefix", "/", "a")])]}),
        );
        let t = Table::build(
            &[&ing],
            &services.iter().collect::<Vec<_>>(),
            &[&other_ns, &udp],
        );
        assert_eq!(t.route(None, "/").unwrap().endpoints(), []);
    }

    #[test]
    fn a_missing_service_is_a_backend_without_endpoints() {
        let t = table(&[ingress(
            "i",
            json!({"rules": [rule(None, vec![path("Prefix", "/", "missing")])]}),
        )]);
        let backend = t.route(Some("x"), "/").unwrap();
        assert_eq!(backend.service, "missing");
        assert_eq!(backend.pick(), None);
    }

    #[test]
    fn endpoints_are_picked_in_turn_and_shared_by_rules_of_one_backend() {
        let services = [service("a")];
        let slices = [slice("a", json!([{"addresses": ["10.0.0.1", "10.0.0.2"]}]))];
        let ing = ingress(
            "i",
            json!({"rules": [rule(None, vec![
                path("Prefix", "/x", "a"),
                path("Prefix", "/y", "a"),
            ])]}),
        );
        let t = Table::build(
            &[&ing],
            &services.iter().collect::<Vec<_>>(),
            &slices.iter().collect::<Vec<_>>(),
        );
        let picks: Vec<String> = ["/x", "/y", "/x", "/y"]
            .iter()
            .map(|p| t.route(None, p).unwrap().pick().unwrap().to_string())
            .collect();
        // Wherever the turns start, they alternate across both rules.
        assert_ne!(picks[0], picks[1]);
        assert_eq!(picks[0], picks[2]);
        assert_eq!(picks[1], picks[3]);
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(normalize_host("Example.COM"), "example.com");
        assert_eq!(normalize_host("example.com:8443"), "example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "::1");
        assert_eq!(normalize_host("10.0.0.1:80"), "10.0.0.1");
    }

    #[test]
    fn an_empty_table_routes_nothing() {
        let t = table(&[]);
        assert!(t.is_empty());
        assert_eq!(to(&t, "x", "/"), "404");
    }
}
