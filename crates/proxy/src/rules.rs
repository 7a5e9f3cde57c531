//! The nftables rules for a list of [`ServicePort`]s, in the proxy's own table and no other.
//! [`Ruleset::build`] computes what the table must hold; [`Ruleset::script`] turns it into
//! one `nft -f` script, a single transaction, that either builds the table afresh or, given
//! what the last script left, touches only the chains, sets and map elements that changed
//! (so session-affinity sets keep their entries). The layout follows upstream kube-proxy's
//! nftables mode:
//!
//! - `services` is reached from the NAT prerouting and output hooks; a verdict map keyed by
//!   address, protocol and port sends each ClusterIP port, external IP and load balancer
//!   address (and, for local destinations, each NodePort) to its Service's chain; the node's
//!   own clients reach NodePorts on 127.0.0.1 as well;
//! - a Service chain marks traffic from outside the pod network for masquerading, sends a
//!   client remembered by session affinity back to its endpoint, else picks an endpoint chain
//!   at random; an endpoint chain marks hairpin traffic (a pod reaching itself), remembers
//!   the client when the Service asks for affinity, and DNATs to the endpoint;
//! - what still goes to a ClusterIP after DNAT (a port without endpoints, or one the Service
//!   does not have) is rejected, and so is anything else addressed to the service range, so
//!   no such packet leaves by the default route; an address the node holds itself (cluster
//!   DNS listens on its Service's address) is delivered.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddrV4;

use crate::model::ServicePort;

/// The bit of the packet mark that asks for masquerading (upstream's 0x4000).
const MASQUERADE_MARK: u32 = 0x4000;

/// The sets and maps whose elements change with the Services.
const ELEMENT_SETS: [&str; 3] = ["cluster-ips", "service-ips", "service-nodeports"];

/// What the rules depend on besides the Services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The table's name (family `ip`).
    pub table: String,
    /// The pod network: traffic from elsewhere to a Service is masqueraded.
    pub cluster_cidr: Option<String>,
    /// The service range: traffic to an address of it that no Service holds is rejected.
    pub service_cidr: Option<String>,
    /// This node's name: its endpoints are the local ones of the `Local` traffic policies.
    pub node: Option<String>,
}

/// What the table must hold: chains with their rules, sets with their definitions, and the
/// elements of the three sets the Services fill.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    chains: BTreeMap<String, Vec<String>>,
    sets: BTreeMap<String, String>,
    elements: BTreeMap<&'static str, Vec<String>>,
}

impl Ruleset {
    /// The rules for `ports`.
    pub fn build(config: &Config, ports: &[ServicePort]) -> Ruleset {
        let mut r = Ruleset::default();
        r.fixed(config);
        r.elements = elements(ports);
        for p in ports.iter().filter(|p| outside_path(p).is_some()) {
            r.service(config, p);
        }
        r
    }

    /// The script that makes the table hold this ruleset: afresh, or from `previous` (what
    /// the last successful script left) touching only what differs.
    pub fn script(&self, table: &str, previous: Option<&Ruleset>) -> String {
        match previous {
            // A set defined differently cannot be changed in place: start again.
            Some(old)
                if old
                    .sets
                    .iter()
                    .all(|(n, d)| self.sets.get(n).is_none_or(|x| x == d)) =>
            {
                self.update(table, old)
            }
            _ => self.fresh(table),
        }
    }

    fn fresh(&self, t: &str) -> String {
        // Create the table if absent so that deleting it cannot fail, then build it afresh.
        let mut s = format!("add table ip {t}\ndelete table ip {t}\ntable ip {t} {{\n");
        for (name, def) in &self.sets {
            let _ = writeln!(s, "  {def_kind} {name} {{ {def} }}", def_kind = kind(name));
        }
        for name in ELEMENT_SETS {
            let _ = writeln!(s, "  {} {name} {{ {} }}", kind(name), element_type(name));
        }
        for (name, rules) in &self.chains {
            let _ = writeln!(s, "  chain {name} {{");
            for rule in rules {
                let _ = writeln!(s, "    {rule}");
            }
            s.push_str("  }\n");
        }
        s.push_str("}\n");
        s.push_str(&self.fill(t, None));
        s
    }

    fn update(&self, t: &str, old: &Ruleset) -> String {
        let mut s = String::new();
        for (name, def) in self.sets.iter().filter(|(n, _)| !old.sets.contains_key(*n)) {
            let _ = writeln!(s, "add set ip {t} {name} {{ {def} }}");
        }
        // Every new chain exists before any rule or map element names it.
        for name in self.chains.keys().filter(|n| !old.chains.contains_key(*n)) {
            let _ = writeln!(s, "add chain ip {t} {name}");
        }
        for (name, rules) in &self.chains {
            if old.chains.get(name) == Some(rules) {
                continue;
            }
            let _ = writeln!(s, "flush chain ip {t} {name}");
            for rule in rules {
                let _ = writeln!(s, "add rule ip {t} {name} {rule}");
            }
        }
        s.push_str(&self.fill(t, Some(old)));
        // Last, what nothing refers to any more.
        // Emptied first, all of them, so that no gone chain still jumps to another.
        let gone: Vec<&String> = old
            .chains
            .keys()
            .filter(|n| !self.chains.contains_key(*n))
            .collect();
        for name in &gone {
            let _ = writeln!(s, "flush chain ip {t} {name}");
        }
        for name in &gone {
            let _ = writeln!(s, "delete chain ip {t} {name}");
        }
        for name in old.sets.keys().filter(|n| !self.sets.contains_key(*n)) {
            let _ = writeln!(s, "delete set ip {t} {name}");
        }
        s
    }

    /// Flushes and refills the element sets that differ from `old`'s.
    fn fill(&self, t: &str, old: Option<&Ruleset>) -> String {
        let mut s = String::new();
        for name in ELEMENT_SETS {
            let items = self
                .elements
                .get(name)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let before = old.map(|o| o.elements.get(name).map(Vec::as_slice).unwrap_or_default());
            if before == Some(items) {
                continue;
            }
            if old.is_some() {
                let _ = writeln!(s, "flush {} ip {t} {name}", kind(name));
            }
            if !items.is_empty() {
                let _ = writeln!(s, "add element ip {t} {name} {{ {} }}", items.join(", "));
            }
        }
        s
    }

    fn fixed(&mut self, config: &Config) {
        for (name, ty, hook, prio, body) in [
            (
                "nat-prerouting",
                "nat",
                "prerouting",
                "dstnat",
                &["jump services"][..],
            ),
            (
                "nat-output",
                "nat",
                "output",
                "-100",
                // NodePorts answer on 127.0.0.1 too, for the node's own clients.
                &[
                    "jump services",
                    "ip daddr 127.0.0.1 meta l4proto . th dport vmap @service-nodeports",
                ],
            ),
            (
                "nat-postrouting",
                "nat",
                "postrouting",
                "srcnat",
                &["jump masquerading"],
            ),
            (
                "filter-input",
                "filter",
                "input",
                "filter",
                &["jump localhost-check"],
            ),
            (
                "filter-forward",
                "filter",
                "forward",
                "filter",
                &["jump cluster-ips-check"],
            ),
            (
                "filter-output",
                "filter",
                "output",
                "filter",
                &["jump cluster-ips-check"],
            ),
        ] {
            let mut rules = vec![format!(
                "type {ty} hook {hook} priority {prio}; policy accept;"
            )];
            rules.extend(body.iter().map(|r| (*r).to_string()));
            self.chain(name, rules);
        }
        // Localhost NodePorts need `route_localnet`, which would also let packets from the
        // network reach the node's 127.0.0.1 services; as upstream, those are dropped.
        self.chain(
            "localhost-check",
            ["ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct state != { established, related } ct status & dnat == 0 drop".into()],
        );
        self.chain(
            "services",
            [
                "ip daddr . meta l4proto . th dport vmap @service-ips".into(),
                "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports".into(),
            ],
        );
        self.chain(
            "mark-for-masquerade",
            [format!("meta mark set meta mark | {MASQUERADE_MARK:#x}")],
        );
        self.chain(
            "masquerading",
            [
                format!("meta mark & {MASQUERADE_MARK:#x} == 0 return"),
                format!("meta mark set meta mark ^ {MASQUERADE_MARK:#x}"),
                "masquerade fully-random".into(),
            ],
        );
        let mut check = vec![
            "fib daddr type local return".to_string(),
            "ip daddr @cluster-ips reject".to_string(),
        ];
        check.extend(
            config
                .service_cidr
                .iter()
                .map(|r| format!("ip daddr {r} reject")),
        );
        self.chain("cluster-ips-check", check);
    }

    fn chain(&mut self, name: &str, rules: impl IntoIterator<Item = String>) {
        self.chains
            .insert(name.to_string(), rules.into_iter().collect());
    }

    /// A Service port's chains: its endpoints', the cluster path's (`service-...`) and, with
    /// `externalTrafficPolicy: Local`, the outside path's (`external-...`).
    fn service(&mut self, config: &Config, p: &ServicePort) {
        let mut all: Vec<SocketAddrV4> = p.endpoints.clone();
        all.extend(p.local_endpoints.iter().flatten().copied());
        all.sort();
        all.dedup();
        for e in &all {
            self.endpoint(p, *e);
        }
        if !p.endpoints.is_empty() {
            let mut rules = vec![match &config.cluster_cidr {
                Some(cidr) => format!("ip saddr != {cidr} jump mark-for-masquerade"),
                None => "jump mark-for-masquerade".to_string(),
            }];
            rules.extend(self.pick(p, &p.endpoints));
            self.chain(&service_chain(p), rules);
        }
        if let Some(local) = p
            .local_endpoints
            .as_ref()
            .filter(|_| outside_path(p) == Some(external_chain(p)))
        {
            // Pods reaching an outside address take the cluster path; the rest keeps its
            // client address and stays on this node, or is dropped.
            let mut rules = Vec::new();
            if !p.endpoints.is_empty() {
                // The node's own clients (127.0.0.1 above all) take the cluster path too.
                if let Some(cidr) = &config.cluster_cidr {
                    rules.push(format!("ip saddr {cidr} goto {}", service_chain(p)));
                }
                rules.push(format!("fib saddr type local goto {}", service_chain(p)));
            }
            if local.is_empty() {
                rules.push("drop".to_string());
            } else {
                rules.extend(self.pick(p, local));
            }
            self.chain(&external_chain(p), rules);
        }
    }

    /// An endpoint's chain: hairpin traffic masqueraded, the client remembered under
    /// affinity, then the translation.
    fn endpoint(&mut self, p: &ServicePort, e: SocketAddrV4) {
        let mut rules = vec![format!("ip saddr {} jump mark-for-masquerade", e.ip())];
        if let Some(timeout) = p.affinity {
            let set = affinity_set(p, e);
            self.sets.insert(
                set.clone(),
                format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"),
            );
            rules.push(format!("update @{set} {{ ip saddr }}"));
        }
        rules.push(format!("meta l4proto {} dnat to {e}", p.protocol.nft()));
        self.chain(&endpoint_chain(p, e), rules);
    }

    /// The rules choosing among `endpoints`: a remembered client's, else one at random.
    fn pick(&self, p: &ServicePort, endpoints: &[SocketAddrV4]) -> Vec<String> {
        let mut rules = Vec::new();
        if p.affinity.is_some() {
            for e in endpoints {
                let (set, chain) = (affinity_set(p, *e), endpoint_chain(p, *e));
                rules.push(format!("ip saddr @{set} goto {chain}"));
            }
        }
        let picks: Vec<String> = endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{i} : goto {}", endpoint_chain(p, *e)))
            .collect();
        rules.push(format!(
            "numgen random mod {} vmap {{ {} }}",
            endpoints.len(),
            picks.join(", ")
        ));
        rules
    }
}

/// The script that removes the table (and nothing else).
pub fn remove(table: &str) -> String {
    format!("add table ip {table}\ndelete table ip {table}\n")
}

fn kind(name: &str) -> &'static str {
    if name.starts_with("service-") {
        "map"
    } else {
        "set"
    }
}

fn element_type(name: &str) -> &'static str {
    match name {
        "cluster-ips" => "type ipv4_addr;",
        "service-ips" => "type ipv4_addr . inet_proto . inet_service : verdict;",
        _ => "type inet_proto . inet_service : verdict;",
    }
}

fn elements(ports: &[ServicePort]) -> BTreeMap<&'static str, Vec<String>> {
    let mut ips: Vec<String> = ports.iter().map(|p| p.cluster_ip.to_string()).collect();
    ips.sort();
    ips.dedup();
    let (mut by_ip, mut by_node_port) = (Vec::new(), Vec::new());
    for p in ports {
        let proto = p.protocol.nft();
        if !p.endpoints.is_empty() {
            by_ip.push(format!(
                "{} . {proto} . {} : goto {}",
                p.cluster_ip,
                p.port,
                service_chain(p)
            ));
        }
        let Some(outside) = outside_path(p) else {
            continue;
        };
        for ip in &p.external {
            by_ip.push(format!("{ip} . {proto} . {} : goto {outside}", p.port));
        }
        if let Some(n) = p.node_port {
            by_node_port.push(format!("{proto} . {n} : goto {outside}"));
        }
    }
    BTreeMap::from([
        ("cluster-ips", ips),
        ("service-ips", by_ip),
        ("service-nodeports", by_node_port),
    ])
}

fn service_chain(p: &ServicePort) -> String {
    format!("service-{}", p.id)
}

/// Where traffic to a port's outside addresses (external IPs, load balancer addresses,
/// NodePorts) goes: the outside path under a Local policy, else the cluster path; nowhere
/// (refused) without any endpoint.
fn outside_path(p: &ServicePort) -> Option<String> {
    let local = p.local_endpoints.as_ref();
    if local.is_some_and(|l| !l.is_empty() || !p.endpoints.is_empty()) {
        Some(external_chain(p))
    } else if !p.endpoints.is_empty() {
        Some(service_chain(p))
    } else {
        None
    }
}

fn external_chain(p: &ServicePort) -> String {
    format!("external-{}", p.id)
}

fn endpoint_chain(p: &ServicePort, e: SocketAddrV4) -> String {
    // nft names take no colon: upstream's `__address/port`.
    format!("endpoint-{}__{}/{}", p.id, e.ip(), e.port())
}

fn affinity_set(p: &ServicePort, e: SocketAddrV4) -> String {
    format!("affinity-{}__{}/{}", p.id, e.ip(), e.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn config() -> Config {
        Config {
            table: "rudder".into(),
            cluster_cidr: Some("10.42.0.0/16".into()),
            service_cidr: Some("10.43.0.0/16".into()),
            node: None,
        }
    }

    fn web(endpoints: &[&str]) -> ServicePort {
        ServicePort {
            id: "default/web/tcp/http".into(),
            cluster_ip: "10.43.0.5".parse().unwrap(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: Some(30080),
            external: vec!["192.0.2.2".parse().unwrap()],
            affinity: None,
            endpoints: endpoints.iter().map(|e| e.parse().unwrap()).collect(),
            local_endpoints: None,
            health_check: None,
            local_ready: Vec::new(),
        }
    }

    fn fresh(ports: &[ServicePort]) -> String {
        Ruleset::build(&config(), ports).script("rudder", None)
    }

    #[test]
    fn a_service_port_goes_to_a_random_endpoint() {
        let s = fresh(&[web(&["10.42.0.6:8080", "10.42.0.7:8080"])]);
        assert!(s.starts_with("add table ip rudder\ndelete table ip rudder\ntable ip rudder {\n"));
        assert!(s.contains("add element ip rudder service-ips { 10.43.0.5 . tcp . 80 : goto service-default/web/tcp/http, 192.0.2.2 . tcp . 80 : goto service-default/web/tcp/http }"), "{s}");
        assert!(s.contains("add element ip rudder service-nodeports { tcp . 30080 : goto service-default/web/tcp/http }"), "{s}");
        assert!(
            s.contains("    ip saddr != 10.42.0.0/16 jump mark-for-masquerade\n"),
            "{s}"
        );
        assert!(s.contains(
            "numgen random mod 2 vmap { 0 : goto endpoint-default/web/tcp/http__10.42.0.6/8080, 1 : goto endpoint-default/web/tcp/http__10.42.0.7/8080 }"
        ), "{s}");
        assert!(s.contains("  chain endpoint-default/web/tcp/http__10.42.0.7/8080 {\n    ip saddr 10.42.0.7 jump mark-for-masquerade\n    meta l4proto tcp dnat to 10.42.0.7:8080\n  }"), "{s}");
    }

    #[test]
    fn a_port_without_endpoints_keeps_only_its_address_to_be_rejected() {
        let s = fresh(&[web(&[])]);
        assert!(
            s.contains("add element ip rudder cluster-ips { 10.43.0.5 }"),
            "{s}"
        );
        assert!(!s.contains("chain service-"), "{s}");
        assert!(s.contains("    fib daddr type local return\n    ip daddr @cluster-ips reject\n    ip daddr 10.43.0.0/16 reject\n"), "{s}");
    }

    #[test]
    fn an_empty_cluster_still_has_its_hooks_and_checks() {
        let s = fresh(&[]);
        assert!(s.contains("  chain nat-output {\n    type nat hook output priority -100; policy accept;\n    jump services\n    ip daddr 127.0.0.1 meta l4proto . th dport vmap @service-nodeports\n  }"), "{s}");
        assert!(
            s.contains(
                "type filter hook input priority filter; policy accept;\n    jump localhost-check\n"
            ),
            "{s}"
        );
        assert!(s.contains("type nat hook prerouting priority dstnat; policy accept;"));
        assert!(
            s.contains(
                "  map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }"
            ),
            "{s}"
        );
        assert!(!s.contains("add element"), "{s}");
        assert_eq!(
            remove("rudder"),
            "add table ip rudder\ndelete table ip rudder\n"
        );
    }

    #[test]
    fn an_update_touches_only_what_changed() {
        let before = Ruleset::build(&config(), &[web(&["10.42.0.6:8080", "10.42.0.7:8080"])]);
        let after = Ruleset::build(&config(), &[web(&["10.42.0.7:8080"])]);
        let s = after.script("rudder", Some(&before));
        assert_eq!(
            s,
            "flush chain ip rudder service-default/web/tcp/http\n\
             add rule ip rudder service-default/web/tcp/http ip saddr != 10.42.0.0/16 jump mark-for-masquerade\n\
             add rule ip rudder service-default/web/tcp/http numgen random mod 1 vmap { 0 : goto endpoint-default/web/tcp/http__10.42.0.7/8080 }\n\
             flush chain ip rudder endpoint-default/web/tcp/http__10.42.0.6/8080\n\
             delete chain ip rudder endpoint-default/web/tcp/http__10.42.0.6/8080\n"
        );
        // Nothing changed: nothing to do.
        assert_eq!(after.script("rudder", Some(&after)), "");
        // The Service gone: its map entries first, then its chains.
        let gone = Ruleset::build(&config(), &[]).script("rudder", Some(&after));
        assert!(gone.starts_with("flush set ip rudder cluster-ips\nflush map ip rudder service-ips\nflush map ip rudder service-nodeports\nflush chain ip rudder endpoint-"), "{gone}");
        assert!(
            gone.ends_with("delete chain ip rudder service-default/web/tcp/http\n"),
            "{gone}"
        );
    }

    #[test]
    fn outside_traffic_under_a_local_policy_keeps_its_client_and_this_node() {
        let mut p = web(&["10.42.0.6:8080", "10.42.1.6:8080"]);
        p.local_endpoints = Some(vec!["10.42.0.6:8080".parse().unwrap()]);
        let s = fresh(&[p.clone()]);
        assert!(s.contains("10.43.0.5 . tcp . 80 : goto service-default/web/tcp/http, 192.0.2.2 . tcp . 80 : goto external-default/web/tcp/http }"), "{s}");
        assert!(
            s.contains("{ tcp . 30080 : goto external-default/web/tcp/http }"),
            "{s}"
        );
        assert!(s.contains("  chain external-default/web/tcp/http {\n    ip saddr 10.42.0.0/16 goto service-default/web/tcp/http\n    fib saddr type local goto service-default/web/tcp/http\n    numgen random mod 1 vmap { 0 : goto endpoint-default/web/tcp/http__10.42.0.6/8080 }\n  }"), "{s}");
        // No endpoint here: outside traffic is dropped, the cluster path still served.
        p.local_endpoints = Some(vec![]);
        let s = fresh(&[p]);
        assert!(
            s.contains("goto service-default/web/tcp/http\n    drop\n  }"),
            "{s}"
        );
    }

    #[test]
    fn session_affinity_remembers_clients_in_sets_that_updates_keep() {
        let sticky = |eps: &[&str]| ServicePort {
            affinity: Some(10800),
            ..web(eps)
        };
        let one = Ruleset::build(&config(), &[sticky(&["10.42.0.6:8080"])]);
        let s = one.script("rudder", None);
        let set = "affinity-default/web/tcp/http__10.42.0.6/8080";
        assert!(
            s.contains(&format!(
                "  set {set} {{ type ipv4_addr; flags dynamic,timeout; timeout 10800s; }}"
            )),
            "{s}"
        );
        assert!(
            s.contains(&format!(
                "    ip saddr @{set} goto endpoint-default/web/tcp/http__10.42.0.6/8080\n"
            )),
            "{s}"
        );
        assert!(
            s.contains(&format!(
                "    update @{set} {{ ip saddr }}\n    meta l4proto tcp dnat to 10.42.0.6:8080\n"
            )),
            "{s}"
        );
        // A second endpoint adds its set and leaves the first one's (and its clients) be.
        let two = Ruleset::build(&config(), &[sticky(&["10.42.0.6:8080", "10.42.0.7:8080"])]);
        let s = two.script("rudder", Some(&one));
        assert!(
            s.starts_with("add set ip rudder affinity-default/web/tcp/http__10.42.0.7/8080 {"),
            "{s}"
        );
        assert!(!s.contains(&format!("set ip rudder {set}")), "{s}");
    }
}
