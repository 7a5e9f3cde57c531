//! The pod's /etc/hosts, /etc/hostname and /etc/resolv.conf, as the kubelet writes them.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// /etc/hosts, /etc/hostname and /etc/resolv.conf for the pod's containers.
pub(super) fn write_etc(
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
}
