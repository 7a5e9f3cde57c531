//! The agent's Node: registration (labels, capacity, addresses, system info), the status
//! heartbeat and the Lease in `kube-node-lease` renewed every ten seconds, as the kubelet does.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Context, Result};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::Config;

/// How often the Lease is renewed and the status posted.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// The Lease's duration, upstream's default.
const LEASE_SECONDS: i32 = 40;
/// The version the node reports as its kubelet's.
pub(crate) const KUBELET_VERSION: &str = "v1.33.0";

/// What the host has to offer, read once at start.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    cpus: usize,
    memory_kib: u64,
    storage_bytes: u64,
    kernel: String,
    os_image: String,
    machine_id: String,
    boot_id: String,
    pub(crate) runtime_version: String,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The host's memory (MemTotal), KiB.
pub(crate) fn memory_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The size of the filesystem holding `dir`, bytes.
pub(crate) fn storage_bytes(dir: &std::path::Path) -> u64 {
    nix::sys::statvfs::statvfs(dir)
        .map(|s| s.blocks() * s.fragment_size())
        .unwrap_or(0)
}

impl Host {
    pub(crate) fn read(config: &Config, runtime_version: String) -> Host {
        let memory_kib = memory_kib();
        let storage_bytes = storage_bytes(&config.data_dir);
        let os_image = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                Some(
                    l.strip_prefix("PRETTY_NAME=")?
                        .trim_matches('"')
                        .to_string(),
                )
            })
            .unwrap_or_else(|| "Linux".into());
        Host {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_kib,
            storage_bytes,
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            os_image,
            machine_id: read_trimmed("/etc/machine-id"),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            runtime_version,
        }
    }
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn labels(config: &Config) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (
            "kubernetes.io/hostname".to_string(),
            config.node_name.clone(),
        ),
        ("kubernetes.io/os".into(), "linux".into()),
        ("kubernetes.io/arch".into(), arch().into()),
        ("beta.kubernetes.io/os".into(), "linux".into()),
        ("beta.kubernetes.io/arch".into(), arch().into()),
    ]);
    if config.control_plane {
        l.insert(
            "node-role.kubernetes.io/control-plane".into(),
            "true".into(),
        );
    }
    l
}

/// The status the node posts: capacity, conditions (Ready, no pressure), addresses, info.
fn status(config: &Config, host: &Host, since: Timestamp, now: Timestamp) -> Value {
    let capacity = json!({
        "cpu": host.cpus.to_string(),
        "memory": format!("{}Ki", host.memory_kib),
        "ephemeral-storage": format!("{}Ki", host.storage_bytes / 1024),
        "pods": config.max_pods.to_string(),
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    });
    let cond = |ty: &str, status: &str, reason: &str, message: &str| {
        json!({"type": ty, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now.to_string(), "lastTransitionTime": since.to_string()})
    };
    json!({
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": config.node_ip.to_string()},
            {"type": "Hostname", "address": config.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": config.port}},
        "nodeInfo": {
            "machineID": host.machine_id,
            "systemUUID": host.machine_id,
            "bootID": host.boot_id,
            "kernelVersion": host.kernel,
            "osImage": host.os_image,
            "containerRuntimeVersion": host.runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": arch(),
        },
    })
}

/// Registers the node (or takes over an existing Node of that name: labels merged), then
/// posts its first status.
pub(crate) async fn register(client: &kube::Client, config: &Config, host: &Host) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let labels = labels(config);
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": config.node_name, "labels": labels,
            "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
    }))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %config.node_name, "node registered"),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            nodes
                .patch(
                    &config.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": labels}})),
                )
                .await
                .context("updating the node's labels")?;
            tracing::info!(node = %config.node_name, "node already registered: taken over");
        }
        Err(e) => return Err(e).context("registering the node"),
    }
    let now = Timestamp::now();
    post_status(client, config, host, now, now).await
}

async fn post_status(
    client: &kube::Client,
    config: &Config,
    host: &Host,
    since: Timestamp,
    now: Timestamp,
) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(
            &config.node_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status(config, host, since, now)})),
        )
        .await
        .context("posting the node status")?;
    Ok(())
}

async fn renew_lease(
    client: &kube::Client,
    config: &Config,
    node_uid: Option<String>,
) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let micro = MicroTime(Timestamp::now());
    let renewal = json!({"spec": {"holderIdentity": config.node_name, "renewTime": micro}});
    match leases
        .patch(
            &config.node_name,
            &PatchParams::default(),
            &Patch::Merge(&renewal),
        )
        .await
    {
        Ok(_) => return Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e).context("renewing the node lease"),
    }
    let mut lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": config.node_name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": config.node_name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": micro},
    });
    if let Some(uid) = node_uid {
        lease["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Node",
            "name": config.node_name, "uid": uid}]);
    }
    leases
        .create(&PostParams::default(), &serde_json::from_value(lease)?)
        .await
        .context("creating the node lease")?;
    Ok(())
}

/// Renews the Lease and posts the status every [`HEARTBEAT`] until the process ends.
pub(crate) async fn heartbeat(client: kube::Client, config: std::sync::Arc<Config>, host: Host) {
    let since = Timestamp::now();
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        let uid = nodes
            .get_opt(&config.node_name)
            .await
            .ok()
            .flatten()
            .and_then(|n| n.metadata.uid);
        if let Err(e) = renew_lease(&client, &config, uid).await {
            tracing::warn!("{e:#}");
        }
        if let Err(e) = post_status(&client, &config, &host, since, Timestamp::now()).await {
            tracing::warn!("{e:#}");
        }
        tokio::time::sleep(HEARTBEAT).await;
    }
}

/// Waits until the node has a podCIDR (from the node IPAM controller) and returns it.
pub(crate) async fn pod_cidr(client: &kube::Client, config: &Config) -> Result<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut waited = Duration::ZERO;
    loop {
        let node = nodes
            .get(&config.node_name)
            .await
            .context("reading the node")?;
        if let Some(cidr) = node.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty()) {
            return Ok(cidr);
        }
        if waited.as_secs() == 10 {
            tracing::warn!(
                "the node has no podCIDR yet: is the node-ipam controller running? (or pass --pod-cidr)"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        waited += Duration::from_millis(200);
    }
}
