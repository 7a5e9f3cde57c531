//! The pod's sandbox: its cgroup, shared namespaces, CNI network and /etc files, set up
//! before its first container and torn down when the pod ends.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;
use runtime::cni;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::etc::write_etc;
use super::resources::{pod_cgroup, pod_limits};
use super::{Ctx, PodState, spec_containers};

/// A pod's sandbox: its namespaces and address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Sandbox {
    pub(super) ips: Vec<String>,
    pub(super) host_network: bool,
    #[serde(default)]
    pub(super) cni_result: Option<Value>,
    #[serde(default)]
    pub(super) ports: Vec<(u16, u16, String, Option<String>)>,
}

impl Sandbox {
    pub(super) fn ip(&self) -> &str {
        self.ips.first().map(String::as_str).unwrap_or("")
    }

    pub(super) fn port_mappings(&self) -> Vec<cni::PortMapping> {
        self.ports
            .iter()
            .map(|(h, c, p, ip)| cni::PortMapping {
                host_port: *h,
                container_port: *c,
                protocol: p.clone(),
                host_ip: ip.clone(),
            })
            .collect()
    }
}

impl PodState {
    pub(super) async fn ensure_sandbox(&mut self, ctx: &Ctx, pod: &Pod) -> Result<(), String> {
        if let Some(sb) = &self.sandbox {
            let own = own_namespaces(pod);
            let paths = runtime::namespaces::Paths::under(&ctx.pod_dir(&self.uid), own);
            if sb.host_network || ctx.host.namespaces_exist(&paths) {
                return Ok(());
            }
        }
        runtime_handler(ctx, pod).await?;
        let _pass = ctx.gate.enter(self.arrival).await;
        let dir = ctx.pod_dir(&self.uid);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        // The pod's group, limited before any container starts in it.
        ctx.host
            .limit_cgroup(&pod_cgroup(pod, &self.uid), &pod_limits(pod))
            .map_err(|e| format!("limiting the pod's cgroup: {e}"))?;
        let own = own_namespaces(pod);
        let hostname = pod_hostname(pod);
        let paths = ctx
            .host
            .create_namespaces(&dir, own, &hostname)
            .map_err(|e| format!("{e:#}"))?;
        let ports = host_ports(pod);
        let sandbox = if let Some(net) = &paths.net {
            let mappings: Vec<cni::PortMapping> = ports
                .iter()
                .map(|(h, c, p, ip)| cni::PortMapping {
                    host_port: *h,
                    container_port: *c,
                    protocol: p.clone(),
                    host_ip: ip.clone(),
                })
                .collect();
            let att = ctx
                .host
                .network_add(&self.uid, net, &mappings)
                .await
                .map_err(|e| {
                    format!(
                        "failed to set up sandbox container network for pod {:?}: {e:#}",
                        pod.name_any()
                    )
                })?;
            Sandbox {
                ips: att.ips.iter().map(|i| i.to_string()).collect(),
                host_network: false,
                cni_result: Some(att.result),
                ports,
            }
        } else {
            Sandbox {
                ips: vec![ctx.config.node_ip.to_string()],
                host_network: true,
                cni_result: None,
                ports: Vec::new(),
            }
        };
        write_etc(
            &dir,
            pod,
            &hostname,
            sandbox.ip(),
            ctx.config.cluster_dns.as_ref(),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(
            dir.join("sandbox.json"),
            serde_json::to_vec(&sandbox).unwrap_or_default(),
        )
        .map_err(|e| e.to_string())?;
        self.sandbox = Some(sandbox);
        Ok(())
    }

    pub(super) async fn teardown_sandbox(&mut self, ctx: &Ctx, pod: &Pod) {
        let dir = ctx.pod_dir(&self.uid);
        if let Some(sb) = self.sandbox.take()
            && !sb.host_network
        {
            let net = dir.join("ns").join("net");
            if let Err(e) = ctx
                .host
                .network_del(&self.uid, &net, &sb.port_mappings(), sb.cni_result.as_ref())
                .await
            {
                tracing::warn!(pod = %pod.name_any(), "tearing down the pod network: {e:#}");
            }
        }
        if let Err(e) = ctx.host.remove_namespaces(&dir) {
            tracing::warn!(pod = %pod.name_any(), "{e:#}");
        }
        let _ = std::fs::remove_file(dir.join("sandbox.json"));
    }
}

pub(super) fn own_namespaces(pod: &Pod) -> runtime::namespaces::Own {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_net = spec.host_network == Some(true);
    runtime::namespaces::Own {
        net: !host_net,
        uts: !host_net,
        ipc: spec.host_ipc != Some(true),
    }
}

pub(super) fn pod_hostname(pod: &Pod) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.host_network == Some(true) {
        return std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string();
    }
    let name = spec
        .hostname
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.name_any());
    name.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_string()
}

/// hostPorts of the pod's containers: (host, container, protocol, host IP).
fn host_ports(pod: &Pod) -> Vec<(u16, u16, String, Option<String>)> {
    let (_, apps) = spec_containers(pod);
    let mut out = Vec::new();
    for c in &apps {
        for p in c.ports.iter().flatten() {
            if let Some(h) = p.host_port.filter(|h| *h > 0) {
                out.push((
                    h as u16,
                    p.container_port as u16,
                    p.protocol
                        .clone()
                        .unwrap_or_else(|| "TCP".into())
                        .to_lowercase(),
                    p.host_ip.clone().filter(|s| !s.is_empty()),
                ));
            }
        }
    }
    out
}

/// Checks that the pod's RuntimeClass names this agent's runtime (`runc`, or `crun`) as its
/// handler, as containerd refuses handlers it has no runtime for.
async fn runtime_handler(ctx: &Ctx, pod: &Pod) -> Result<(), String> {
    let Some(class) = pod
        .spec
        .as_ref()
        .and_then(|s| s.runtime_class_name.as_deref())
        .filter(|n| !n.is_empty())
    else {
        return Ok(());
    };
    let api: Api<k8s_openapi::api::node::v1::RuntimeClass> = Api::all(ctx.client.clone());
    let handler = api
        .get(class)
        .await
        .map_err(|e| format!("Failed to create pod sandbox: getting RuntimeClass {class:?}: {e}"))?
        .handler;
    if handler == ctx.host.runtime_name() {
        Ok(())
    } else {
        Err(format!(
            "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox runtime: no runtime for {handler:?} is configured"
        ))
    }
}
