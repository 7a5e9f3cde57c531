//! The node agent, Rudder's kubelet: it registers its host as a Node, keeps the node's Lease
//! and status fresh, and runs the pods bound to it as real containers through an OCI runtime
//! (runc, or crun on cgroup v2), with a CNI network per pod and CRI-format log files that the
//! API server reads through the agent's HTTPS endpoint.
//!
//! It owns everything under its data directory (`containers/`, `pods/`, `images/`, the
//! runtime's state in `runtime/`, `cni/`) and the pod log directory. It talks to the control
//! plane only through the Kubernetes API (a kube `Client`); host work (namespaces, mounts,
//! cgroups, runc, CNI) goes through the `runtime` crate, images through the `image` crate.
//! The pod workers and the streaming server (exec, attach, port-forward sessions) reach the
//! machine only through the `runtime::host::Host` trait they hold (`pods::Ctx::host`), so
//! their decisions are tested against a fake without root. Only `rudder reset` (`reset`)
//! calls the runtime's modules directly. A node joined with a token gets its certificates
//! through the CSR flow (`bootstrap`) and renews them while it runs (`rotation`).
//!
//! Start reading at [`run`], then `pods/` (one worker per pod: `PodState::sync` in
//! `pods/sync.rs`), then `status.rs` (what the pod's status says).

pub mod bootstrap;
mod containers;
mod env;
mod error;
mod events;
mod gate;
mod imagegc;
mod node;
mod pods;
mod probe;
pub mod rotation;
mod server;
mod spdy;
mod stats;
mod status;
mod stream;
mod volumes;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Context;
pub use crate::error::{Error, Result};

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Node's name.
    pub node_name: String,
    /// Where the agent keeps its state.
    pub data_dir: PathBuf,
    /// Where container logs go (`/var/log/pods`).
    pub pod_log_dir: PathBuf,
    /// The OCI runtime to use (`runc`, `crun` or a path); chosen for the host when None.
    pub runtime: Option<String>,
    /// The node's address, as the control plane and other nodes reach it.
    pub node_ip: IpAddr,
    /// The port of the agent's HTTPS endpoint.
    pub port: u16,
    /// The name of the node's pod bridge.
    pub bridge: String,
    /// The pod address range when the control plane assigns none.
    pub pod_cidr: Option<String>,
    /// Whether this node runs the control plane (the control-plane role label).
    pub control_plane: bool,
    /// The most pods the node takes.
    pub max_pods: u32,
    /// Registry mirrors, credentials and plain-HTTP registries.
    pub registries: image::Registries,
    /// For the agent's HTTPS endpoint: the cluster CA (PEM), which its clients' certificates
    /// must chain to, and the certificate it serves (replaceable while it runs).
    pub tls: Option<(String, std::sync::Arc<tls::ServingCertificate>)>,
    /// When unused images are removed.
    pub image_gc: ImageGc,
    /// Sysctls allowed beyond the safe set (`kernel.msg*`: a prefix).
    pub allowed_unsafe_sysctls: Vec<String>,
    /// The cluster DNS address and domain (the kubelet's `--cluster-dns`, `--cluster-domain`):
    /// `ClusterFirst` pods resolve through it. None: they use the node's resolvers.
    pub cluster_dns: Option<ClusterDns>,
}

/// Where a node's pods find cluster DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    /// The DNS server's address (the `kube-dns` Service's).
    pub address: IpAddr,
    /// The cluster domain, `cluster.local` by default.
    pub domain: String,
}

/// The image garbage collector's policy (the kubelet's image GC settings).
#[derive(Debug, Clone, Copy)]
pub struct ImageGc {
    /// Disk use, percent, above which it removes images.
    pub high: u8,
    /// Disk use, percent, it frees down to.
    pub low: u8,
    /// How often it looks.
    pub period: std::time::Duration,
    /// Images pulled more recently than this stay.
    pub min_age: std::time::Duration,
}

/// The names and defaults a user sees.
pub const DEFAULT_BRIDGE: &str = "rudder0";
/// The kubelet's port.
pub const DEFAULT_PORT: u16 = 10250;

fn dirs(config: &Config) -> Result<()> {
    for d in ["containers", "pods", "images", "runtime", "cni/networks"] {
        let p = config.data_dir.join(d);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
    }
    std::fs::create_dir_all(&config.pod_log_dir)
        .with_context(|| format!("creating {}", config.pod_log_dir.display()))?;
    Ok(())
}

/// The CNI plugin directories searched, Debian's first.
fn plugin_dirs() -> Vec<PathBuf> {
    vec!["/usr/lib/cni".into(), "/opt/cni/bin".into()]
}

/// Runs the agent until `shutdown` completes. Containers keep running when it stops; the
/// next start picks them up again.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let mode = runtime::cgroups::detect();
    let binary = runtime::runc::choose(config.runtime.as_deref(), mode)?;
    dirs(&config)?;
    let runc = runtime::runc::Runc {
        binary,
        root: config.data_dir.join("runtime"),
    };
    let version = runc.version()?;
    tracing::info!(
        node = %config.node_name,
        "node agent: OCI runtime {} ({version}) on {mode}",
        runc.binary.display()
    );
    let semver = version
        .split_whitespace()
        .nth(2)
        .unwrap_or("unknown")
        .to_string();
    let host = node::Host::read(&config, format!("{}://{semver}", runc.name()));
    let images = image::Store::open(&config.data_dir.join("images"))?;
    node::register(&client, &config, &host).await?;
    let config = Arc::new(config);
    let heartbeat = tokio::spawn(node::heartbeat(
        client.clone(),
        config.clone(),
        host.clone(),
    ));
    let subnet = match &config.pod_cidr {
        Some(c) => c.clone(),
        None => node::pod_cidr(&client, &config).await?,
    };
    let conflist = config.data_dir.join("cni/10-rudder.conflist");
    let net = runtime::cni::default_config(
        &config.bridge,
        &subnet,
        &config.data_dir.join("cni/networks"),
    );
    std::fs::write(&conflist, serde_json::to_vec_pretty(&net)?)
        .with_context(|| format!("writing {}", conflist.display()))?;
    runtime::cni::ensure_masquerade(&subnet, &config.bridge).await?;
    tracing::info!(subnet, bridge = %config.bridge, "pod network: CNI configuration {}", conflist.display());
    let memory = node::memory_kib() * 1024;
    let machine = runtime::host::Local {
        runc,
        monitor: std::env::current_exe()
            .context("finding the rudder binary for the container monitor")?,
        network: runtime::cni::Network {
            config: conflist,
            plugin_dirs: plugin_dirs(),
        },
    };
    let ctx = Arc::new(pods::Ctx {
        client: client.clone(),
        config: config.clone(),
        host: Arc::new(machine),
        images,
        events: events::Recorder::new(client.clone(), config.node_name.clone()),
        capacity: env::Allocatable {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u64)
                .unwrap_or(1),
            memory,
            // As the node reports it: whole KiB.
            ephemeral_storage: node::storage_bytes(&config.data_dir) / 1024 * 1024,
        },
        running: Default::default(),
        // One more than the cores: the steps also wait on the runtime and CNI plugins.
        gate: gate::Gate::new(
            std::thread::available_parallelism()
                .map(|n| n.get() + 1)
                .unwrap_or(2),
        ),
        arrivals: Default::default(),
    });
    let endpoint = match &config.tls {
        Some((ca, serving)) => {
            let tls = server::tls_config(ca, serving.clone())?;
            let listener = tokio::net::TcpListener::bind((config.node_ip, config.port))
                .await
                .with_context(|| format!("listening on {}:{}", config.node_ip, config.port))?;
            let running = ctx.clone();
            let logs = server::Logs {
                root: config.pod_log_dir.clone(),
                running: Arc::new(move |ns: &str, pod: &str, c: &str| {
                    running
                        .running
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains_key(&(ns.to_string(), pod.to_string(), c.to_string()))
                }),
                summary: {
                    let ctx = ctx.clone();
                    Arc::new(move || stats::summary(&ctx))
                },
                node_logs: PathBuf::from("/var/log"),
            };
            let streaming = stream::Streaming {
                host: ctx.host.clone(),
                data: config.data_dir.clone(),
                container: {
                    let ctx = ctx.clone();
                    Arc::new(move |ns: &str, pod: &str, c: &str| {
                        let running = ctx.running.lock().unwrap_or_else(|e| e.into_inner());
                        running
                            .get(&(ns.to_string(), pod.to_string(), c.to_string()))
                            .map(|r| r.id.clone())
                    })
                },
                network: {
                    let ctx = ctx.clone();
                    Arc::new(move |ns: &str, pod: &str| {
                        let running = ctx.running.lock().unwrap_or_else(|e| e.into_inner());
                        running
                            .iter()
                            .find(|((n, p, _), _)| n == ns && p == pod)
                            .map(|(_, r)| {
                                let network = match &r.netns {
                                    Some(path) => stream::Network::Pod(path.clone()),
                                    None => stream::Network::Host,
                                };
                                (r.uid.clone(), network)
                            })
                    })
                },
            };
            let app = server::router(Arc::new(logs)).merge(stream::router(Arc::new(streaming)));
            Some(tokio::spawn(server::serve(listener, tls, app)))
        }
        None => None,
    };
    let image_gc = tokio::spawn(imagegc::run(ctx.clone(), config.image_gc));
    tokio::select! {
        _ = pods::run(ctx) => {}
        _ = shutdown => {}
    }
    image_gc.abort();
    heartbeat.abort();
    if let Some(e) = endpoint {
        e.abort();
    }
    tracing::info!("node agent stopped; its containers keep running");
    Ok(())
}

/// What an agent's data directory holds (see [`reset`]); a server's data directory holds none
/// of these, its agent's state is in its `agent` subdirectory.
const AGENT_STATE: [&str; 5] = ["runtime", "pods", "containers", "cni", "images"];

/// The agent data directory `rudder reset --data-dir DIR` resets: `DIR` itself when it holds an
/// agent's state; `DIR/agent` when `DIR` is a server's data directory (no agent state of its
/// own, an `agent` subdirectory), with a note saying so; else `DIR`, with a note that it holds
/// nothing to reset.
pub fn reset_dir(dir: &Path) -> (PathBuf, Option<String>) {
    let holds_state = |d: &Path| AGENT_STATE.iter().any(|s| d.join(s).exists());
    if holds_state(dir) {
        return (dir.to_path_buf(), None);
    }
    let agent = dir.join("agent");
    if agent.is_dir() {
        let note = format!(
            "{} is a server's data directory: resetting its node agent in {}",
            dir.display(),
            agent.display()
        );
        return (agent, Some(note));
    }
    let note = format!(
        "{} holds no node agent state ({}): no containers or pods to reset",
        dir.display(),
        AGENT_STATE.map(|s| format!("{s}/")).join(", ")
    );
    (dir.to_path_buf(), Some(note))
}

/// What `rudder reset` does for an agent's data directory: stops every container started
/// from it, removes pod networks, namespaces, mounts and cgroups, and deletes `bridge`.
pub async fn reset(data_dir: &Path, bridge: &str) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let mode = runtime::cgroups::detect();
    let runc = runtime::runc::Runc {
        binary: runtime::runc::choose(None, mode).unwrap_or_else(|_| "runc".into()),
        root: data_dir.join("runtime"),
    };
    for id in runc.list().await.unwrap_or_default() {
        let _ = runc.kill(&id, "KILL").await;
        let _ = runc.delete(&id).await;
        done.push(format!("container {id} stopped"));
    }
    let network = runtime::cni::Network {
        config: data_dir.join("cni/10-rudder.conflist"),
        plugin_dirs: plugin_dirs(),
    };
    for e in std::fs::read_dir(data_dir.join("pods"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let uid = e.file_name().to_string_lossy().into_owned();
        let net = e.path().join("ns/net");
        if net.exists() {
            let sandbox = std::fs::read(e.path().join("sandbox.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .unwrap_or_default();
            let ports: Vec<runtime::cni::PortMapping> = sandbox["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    Some(runtime::cni::PortMapping {
                        host_port: p[0].as_u64()? as u16,
                        container_port: p[1].as_u64()? as u16,
                        protocol: p[2].as_str()?.to_string(),
                        host_ip: p[3].as_str().map(str::to_string),
                    })
                })
                .collect();
            let result = Some(sandbox["cni_result"].clone()).filter(|r| !r.is_null());
            let _ = network.del(&uid, &net, &ports, result.as_ref()).await;
        }
        let _ = runtime::namespaces::remove(&e.path());
        for qos in ["", "/burstable", "/besteffort"] {
            runtime::cgroups::remove(&format!("/rudder{qos}/pod{uid}"));
        }
        done.push(format!("pod {uid} torn down"));
    }
    // The QoS parent groups go too once empty. Not recursively: another agent's container
    // that just exited has an empty group its agent has yet to read (its OOM kill count).
    for parent in ["/rudder/burstable", "/rudder/besteffort", "/rudder"] {
        runtime::cgroups::remove_if_empty(parent);
    }
    for m in runtime::rootfs::unmount_below(data_dir) {
        done.push(format!("unmounted {}", m.display()));
    }
    let list = std::fs::read(data_dir.join("cni/10-rudder.conflist"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    if let Some(subnet) = list.as_ref().and_then(runtime::cni::subnet_of) {
        runtime::cni::remove_masquerade(&subnet, bridge).await?;
        done.push(format!("masquerading for {subnet} removed"));
    }
    let out = tokio::process::Command::new("ip")
        .args(["link", "delete", bridge])
        .output()
        .await;
    if out.is_ok_and(|o| o.status.success()) {
        done.push(format!("bridge {bridge} deleted"));
    }
    let _ = std::fs::remove_dir_all(data_dir.join("containers"));
    let _ = std::fs::remove_dir_all(data_dir.join("pods"));
    let _ = std::fs::remove_dir_all(data_dir.join("cni/networks"));
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_finds_the_agent_of_a_server_data_dir() {
        let server = tempfile::tempdir().unwrap();
        // Nothing there yet: the directory itself, with a note.
        let (dir, note) = reset_dir(server.path());
        assert_eq!(dir, server.path());
        assert!(note.unwrap().contains("holds no node agent state"));
        // A server's data directory: its agent's.
        std::fs::create_dir_all(server.path().join("tls")).unwrap();
        std::fs::create_dir_all(server.path().join("agent/runtime")).unwrap();
        let (dir, note) = reset_dir(server.path());
        assert_eq!(dir, server.path().join("agent"));
        assert!(note.unwrap().contains("is a server's data directory"));
        // The agent's own directory, and a joined agent's: as given, silently.
        let (dir, note) = reset_dir(&server.path().join("agent"));
        assert_eq!(dir, server.path().join("agent"));
        assert_eq!(note, None);
        let joined = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(joined.path().join("pods")).unwrap();
        assert_eq!(
            reset_dir(joined.path()),
            (joined.path().to_path_buf(), None)
        );
    }
}
