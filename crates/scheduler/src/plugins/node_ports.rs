//! NodePorts: a pod's host ports must be free on the node.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{NodeInfo, Plugin, Prepared, Verdict};

/// The NodePorts plugin.
pub struct NodePorts;

/// The host ports a pod asks for: (protocol, host IP, port).
pub fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|p| *p > 0)?;
            Some((
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.host_ip.clone().unwrap_or_default(),
                port,
            ))
        })
        .collect()
}

fn conflict(a: &(String, String, i32), b: &(String, String, i32)) -> bool {
    let any = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
    a.0 == b.0 && a.2 == b.2 && (any(&a.1) || any(&b.1) || a.1 == b.1)
}

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn preemption_helps(&self) -> bool {
        true
    }

    fn filter(&self, pod: &Pod, node: &NodeInfo, _: &Prepared) -> Verdict {
        let wanted = host_ports(pod);
        if wanted
            .iter()
            .any(|w| node.ports.iter().any(|used| conflict(w, used)))
        {
            Verdict::Unschedulable(vec![
                "node(s) didn't have free ports for the requested pod ports".into(),
            ])
        } else {
            Verdict::Fits
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn host_ports_conflict_by_protocol_port_and_address() {
        let mut n = node("n", json!({}));
        n.ports.push(("TCP".into(), "".into(), 8080));
        let same = pod(
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
        );
        let udp = pod(
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]}]}),
        );
        assert!(matches!(
            NodePorts.filter(&same, &n, &None),
            Verdict::Unschedulable(_)
        ));
        assert_eq!(NodePorts.filter(&udp, &n, &None), Verdict::Fits);
    }
}
