//! The nftables ruleset for a list of [`ServicePort`]s, as one `nft -f` script that replaces
//! the proxy's own table in a single transaction and touches no other table. The layout
//! follows upstream kube-proxy's nftables mode:
//!
//! - `services` is reached from the NAT prerouting and output hooks; a verdict map keyed by
//!   address, protocol and port sends each ClusterIP port, external IP and load balancer
//!   address (and, for local destinations, each NodePort) to its Service's chain;
//! - a Service chain marks traffic from outside the pod network for masquerading, then picks
//!   an endpoint chain at random; an endpoint chain marks hairpin traffic (a pod reaching
//!   itself) and DNATs to the endpoint;
//! - what still goes to a ClusterIP after DNAT (a port without endpoints, or one the Service
//!   does not have) is rejected, and so is anything else addressed to the service range, so
//!   no such packet leaves by the default route; an address the node holds itself (cluster
//!   DNS listens on its Service's address) is delivered.

use std::fmt::Write;

use crate::model::ServicePort;

/// The bit of the packet mark that asks for masquerading (upstream's 0x4000).
const MASQUERADE_MARK: u32 = 0x4000;

/// What the rules depend on besides the Services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The table's name (family `ip`).
    pub table: String,
    /// The pod network: traffic from elsewhere to a Service is masqueraded.
    pub cluster_cidr: Option<String>,
    /// The service range: traffic to an address of it that no Service holds is rejected.
    pub service_cidr: Option<String>,
}

/// The script that makes the table hold exactly the rules for `ports`.
pub fn render(config: &Config, ports: &[ServicePort]) -> String {
    let t = &config.table;
    let mut s = String::new();
    // Create the table if absent so that deleting it cannot fail, then build it afresh: one
    // transaction, so packets see the old rules or the new ones, never a mix.
    let _ = writeln!(s, "add table ip {t}\ndelete table ip {t}\ntable ip {t} {{");
    s.push_str(&hooks());
    s.push_str(&maps(ports));
    s.push_str(&fixed_chains(config));
    for p in ports {
        s.push_str(&service_chain(config, p));
        for (i, e) in p.endpoints.iter().enumerate() {
            let _ = writeln!(
                s,
                "  chain {} {{\n    ip saddr {} jump mark-for-masquerade\n    meta l4proto {} dnat to {e}\n  }}",
                endpoint_chain(p, i),
                e.ip(),
                p.protocol.nft()
            );
        }
    }
    s.push_str("}\n");
    s
}

/// The script that removes the table (and nothing else).
pub fn remove(table: &str) -> String {
    format!("add table ip {table}\ndelete table ip {table}\n")
}

fn hooks() -> String {
    [
        ("nat-prerouting", "nat", "prerouting", "dstnat", "jump services"),
        ("nat-output", "nat", "output", "-100", "jump services"),
        ("nat-postrouting", "nat", "postrouting", "srcnat", "jump masquerading"),
        ("filter-forward", "filter", "forward", "filter", "jump cluster-ips-check"),
        ("filter-output", "filter", "output", "filter", "jump cluster-ips-check"),
    ]
    .iter()
    .map(|(name, ty, hook, prio, body)| {
        format!(
            "  chain {name} {{\n    type {ty} hook {hook} priority {prio}; policy accept;\n    {body}\n  }}\n"
        )
    })
    .collect()
}

fn maps(ports: &[ServicePort]) -> String {
    let mut ips: Vec<String> = ports.iter().map(|p| p.cluster_ip.to_string()).collect();
    ips.sort();
    ips.dedup();
    let served = ports.iter().filter(|p| !p.endpoints.is_empty());
    let by_ip: Vec<String> = served
        .clone()
        .flat_map(|p| {
            std::iter::once(&p.cluster_ip)
                .chain(&p.external)
                .map(move |ip| {
                    format!(
                        "{ip} . {} . {} : goto {}",
                        p.protocol.nft(),
                        p.port,
                        service_chain_name(p)
                    )
                })
        })
        .collect();
    let by_node_port: Vec<String> = served
        .filter_map(|p| {
            let n = p.node_port?;
            Some(format!(
                "{} . {n} : goto {}",
                p.protocol.nft(),
                service_chain_name(p)
            ))
        })
        .collect();
    format!(
        "  set cluster-ips {{\n    type ipv4_addr\n{}  }}\n  map service-ips {{\n    type ipv4_addr . inet_proto . inet_service : verdict\n{}  }}\n  map service-nodeports {{\n    type inet_proto . inet_service : verdict\n{}  }}\n",
        elements(&ips),
        elements(&by_ip),
        elements(&by_node_port)
    )
}

fn elements(items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    format!("    elements = {{ {} }}\n", items.join(", "))
}

fn fixed_chains(config: &Config) -> String {
    let mut s = format!(
        "  chain services {{\n    ip daddr . meta l4proto . th dport vmap @service-ips\n    fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports\n  }}\n  chain mark-for-masquerade {{\n    meta mark set meta mark | {MASQUERADE_MARK:#x}\n  }}\n  chain masquerading {{\n    meta mark & {MASQUERADE_MARK:#x} == 0 return\n    meta mark set meta mark ^ {MASQUERADE_MARK:#x}\n    masquerade fully-random\n  }}\n  chain cluster-ips-check {{\n    fib daddr type local return\n    ip daddr @cluster-ips reject\n"
    );
    if let Some(range) = &config.service_cidr {
        let _ = writeln!(s, "    ip daddr {range} reject");
    }
    s.push_str("  }\n");
    s
}

fn service_chain_name(p: &ServicePort) -> String {
    format!("service-{}", p.id)
}

fn endpoint_chain(p: &ServicePort, i: usize) -> String {
    let e = p.endpoints[i];
    // nft names take no colon: upstream's `__address/port`.
    format!("endpoint-{}__{}/{}", p.id, e.ip(), e.port())
}

fn service_chain(config: &Config, p: &ServicePort) -> String {
    if p.endpoints.is_empty() {
        return String::new();
    }
    let mut s = format!("  chain {} {{\n", service_chain_name(p));
    match &config.cluster_cidr {
        Some(cidr) => {
            let _ = writeln!(s, "    ip saddr != {cidr} jump mark-for-masquerade");
        }
        None => s.push_str("    jump mark-for-masquerade\n"),
    }
    let picks: Vec<String> = (0..p.endpoints.len())
        .map(|i| format!("{i} : goto {}", endpoint_chain(p, i)))
        .collect();
    let _ = writeln!(
        s,
        "    numgen random mod {} vmap {{ {} }}\n  }}",
        p.endpoints.len(),
        picks.join(", ")
    );
    s
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
            endpoints: endpoints.iter().map(|e| e.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn a_service_port_goes_to_a_random_endpoint() {
        let s = render(&config(), &[web(&["10.42.0.6:8080", "10.42.0.7:8080"])]);
        assert!(s.starts_with("add table ip rudder\ndelete table ip rudder\ntable ip rudder {\n"));
        assert!(
            s.contains("elements = { 10.43.0.5 . tcp . 80 : goto service-default/web/tcp/http, 192.0.2.2 . tcp . 80 : goto service-default/web/tcp/http }"),
            "{s}"
        );
        assert!(
            s.contains("elements = { tcp . 30080 : goto service-default/web/tcp/http }"),
            "{s}"
        );
        assert!(
            s.contains("ip saddr != 10.42.0.0/16 jump mark-for-masquerade"),
            "{s}"
        );
        assert!(s.contains(
            "numgen random mod 2 vmap { 0 : goto endpoint-default/web/tcp/http__10.42.0.6/8080, 1 : goto endpoint-default/web/tcp/http__10.42.0.7/8080 }"
        ), "{s}");
        assert!(s.contains("  chain endpoint-default/web/tcp/http__10.42.0.7/8080 {\n    ip saddr 10.42.0.7 jump mark-for-masquerade\n    meta l4proto tcp dnat to 10.42.0.7:8080\n  }"), "{s}");
    }

    #[test]
    fn a_port_without_endpoints_keeps_only_its_address_to_be_rejected() {
        let s = render(&config(), &[web(&[])]);
        assert!(
            s.contains("set cluster-ips {\n    type ipv4_addr\n    elements = { 10.43.0.5 }"),
            "{s}"
        );
        assert!(!s.contains("chain service-"), "{s}");
        assert!(
            s.contains("fib daddr type local return\n    ip daddr @cluster-ips reject\n    ip daddr 10.43.0.0/16 reject\n"),
            "{s}"
        );
    }

    #[test]
    fn an_empty_cluster_still_has_its_hooks_and_checks() {
        let s = render(&config(), &[]);
        assert!(s.contains("type nat hook prerouting priority dstnat; policy accept;"));
        assert!(
            s.contains(
                "map service-ips {\n    type ipv4_addr . inet_proto . inet_service : verdict\n  }"
            ),
            "{s}"
        );
        assert_eq!(
            remove("rudder"),
            "add table ip rudder\ndelete table ip rudder\n"
        );
    }
}
