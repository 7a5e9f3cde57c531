//! The pod's sysctls: their names, and which of them this node allows.

use k8s_openapi::api::core::v1::Pod;

/// Sysctls upstream's kubelet allows without `--allowed-unsafe-sysctls`: namespaced, and
/// unable to affect other pods or the node.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// A sysctl name with dots as separators (`net/ipv4/conf/eth0.1/rp_filter` is
/// `net.ipv4.conf.eth0/1.rp_filter`).
fn sysctl_name(name: &str) -> String {
    let first = name.find(['.', '/']);
    if first.is_some_and(|i| name.as_bytes()[i] == b'/') {
        name.chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect()
    } else {
        name.to_string()
    }
}

/// The pod's sysctls, names with dots.
pub(super) fn sysctls(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.sysctls.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|s| (sysctl_name(&s.name), s.value))
        .collect()
}

/// The first of the pod's sysctls this agent does not allow: neither safe nor matched by one
/// of `allowed` (`--allowed-unsafe-sysctls`; `kernel.msg*` matches a prefix).
pub(super) fn forbidden_sysctl(pod: &Pod, allowed: &[String]) -> Option<String> {
    let matches = |name: &str, pattern: &str| match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    };
    sysctls(pod).into_iter().map(|(name, _)| name).find(|name| {
        !SAFE_SYSCTLS.contains(&name.as_str()) && !allowed.iter().any(|p| matches(name, p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_separated_sysctls_are_renamed() {
        assert_eq!(
            sysctl_name("net/ipv4/conf/eth0.1/rp_filter"),
            "net.ipv4.conf.eth0/1.rp_filter"
        );
        assert_eq!(
            sysctl_name("kernel.shm_rmid_forced"),
            "kernel.shm_rmid_forced"
        );
    }
}
