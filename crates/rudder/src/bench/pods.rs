//! `rudder bench pods`: pod start latency on a real node agent (as root). A `rudder server
//! --disable-agent` and a separate `rudder agent` process (so that the agent's memory is its
//! own) on temporary directories; the busybox image imported beforehand, so no pull is
//! timed. Measured: created-to-Running for pods started one at a time and for a burst, a bare
//! `runc run` of an equivalent bundle in the same run, and the agent's resident memory idle
//! and with the burst's pods running.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

use super::api::start_server;
use super::{Report, quantile_ms};
use crate::cli::PodsBench;

pub(crate) const IMAGE: &str = "docker.io/library/busybox:bench";
const BRIDGE: &str = "rdbench0";
const NODE: &str = "bench-node";

/// The agent process, stopped and its host state reset when dropped.
pub(crate) struct AgentProcess {
    pub(crate) child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ =
            std::process::Command::new(std::env::current_exe().unwrap_or_else(|_| "rudder".into()))
                .args(["reset", "--bridge", BRIDGE, "--data-dir"])
                .arg(&self.dir)
                .stdout(std::process::Stdio::null())
                .status();
    }
}

/// A server and a separate node agent on temporary directories, the agent's node Ready, the
/// busybox image [`IMAGE`] imported; everything stopped and reset when dropped.
pub(crate) struct BenchNode {
    pub(crate) client: kube::Client,
    pub(crate) agent: AgentProcess,
    pub(crate) image_layers: Vec<std::path::PathBuf>,
    pub(crate) work: tempfile::TempDir,
    server: super::api::ServerProcess,
}

impl BenchNode {
    /// The server's admin kubeconfig.
    pub(crate) fn kubeconfig(&self) -> std::path::PathBuf {
        self.server.kubeconfig()
    }

    /// Starts it (as root) with pod network `cidr`; `progress` hears what is under way.
    pub(crate) async fn start(cidr: &str, progress: &dyn Fn(&str)) -> Result<BenchNode> {
        if !std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        {
            bail!("this benchmark runs containers: run it as root");
        }
        let server = start_server(&["--disable-agent", "--cluster-cidr", cidr]).await?;
        let client = crate::client::from_kubeconfig(&server.kubeconfig()).await?;
        let work = tempfile::tempdir()?;
        let agent_dir = work.path().join("agent");
        progress("importing the busybox image");
        let store = image::Store::open(&agent_dir.join("images"))?;
        let img = image::busybox::import(&store, IMAGE)?;
        drop(store);
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        progress("starting the agent");
        let child = std::process::Command::new(std::env::current_exe()?)
            .args([
                "agent",
                "--log-level",
                "warn",
                "--node-name",
                NODE,
                "--node-ip",
                "127.0.0.1",
                "--bridge",
                BRIDGE,
                // Pods only: the agent's memory without the service proxy's.
                "--disable-kube-proxy",
            ])
            // Joining as a node does: a token, then certificates, then the agent's endpoint.
            .arg("--server")
            .arg(server.url())
            .arg("--token-file")
            .arg(server.token_file())
            .arg("--data-dir")
            .arg(&agent_dir)
            .arg("--pod-log-dir")
            .arg(work.path().join("logs"))
            .arg("--kubelet-port")
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(work.path().join("agent.log"))?)
            .spawn()
            .context("starting rudder agent")?;
        let agent = AgentProcess {
            child,
            dir: agent_dir.clone(),
        };
        let nodes: Api<Node> = Api::all(client.clone());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = nodes
                .get_opt(NODE)
                .await?
                .and_then(|n| n.status?.conditions)
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the agent's node did not become Ready (see {}/agent.log)",
                    work.path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(BenchNode {
            client,
            agent,
            image_layers: img.layers,
            work,
            server,
        })
    }
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "pods"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "Never",
                "command": ["sleep", "3600"]}],
        },
    }))
    .expect("a valid pod")
}

/// Creates the pods at once and returns each one's created-to-Running time.
async fn start(pods: &Api<Pod>, names: &[String]) -> Result<Vec<Duration>> {
    let wp = WatchParams::default().labels("bench=pods");
    let rv = pods
        .list_metadata(&Default::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut stream = pods.watch(&wp, &rv).await?.boxed();
    let mut created = std::collections::HashMap::new();
    for n in names {
        pods.create(&PostParams::default(), &pod(n)).await?;
        created.insert(n.clone(), Instant::now());
    }
    let mut took = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while took.len() < names.len() {
        let ev = tokio::time::timeout_at(deadline, stream.next())
            .await
            .context("pods did not start within two minutes")?;
        let Some(ev) = ev else {
            bail!("the watch ended")
        };
        if let WatchEvent::Modified(p) | WatchEvent::Added(p) = ev? {
            let name = p.metadata.name.clone().unwrap_or_default();
            let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if running && let Some(t0) = created.remove(&name) {
                took.push(t0.elapsed());
            }
        }
    }
    Ok(took)
}

async fn delete_all(pods: &Api<Pod>, names: &[String]) -> Result<()> {
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    for n in names {
        let _ = pods.delete(n, &dp).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pods
        .list_metadata(&kube::api::ListParams::default().labels("bench=pods"))
        .await?
        .items
        .is_empty()
    {
        if Instant::now() > deadline {
            bail!("pods were not removed within two minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A bare `runc run` of `true` in a bundle over the same layers: the runtime's own time.
fn bare_runtime(dir: &Path, layers: &[std::path::PathBuf], runc: &Path) -> Result<Duration> {
    let bundle = dir.join("bare");
    let snapshot = runtime::rootfs::Snapshot::under(&bundle);
    snapshot.mount(layers)?;
    let spec = runtime::spec::Container {
        args: vec!["true".into()],
        env: vec!["PATH=/bin".into()],
        rootfs: snapshot.rootfs.clone(),
        cgroups_path: "/rudder/bench-bare".into(),
        ..Default::default()
    };
    spec.write(&bundle)?;
    let mut runs = Vec::new();
    for i in 0..5 {
        let t0 = Instant::now();
        let status = std::process::Command::new(runc)
            .arg("--root")
            .arg(dir.join("bare-state"))
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(format!("bench-bare-{i}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()?;
        runs.push(t0.elapsed());
        if !status.success() {
            bail!("a bare runc run failed ({status})");
        }
    }
    snapshot.remove()?;
    runtime::cgroups::remove("/rudder/bench-bare");
    runs.sort();
    Ok(runs[runs.len() / 2])
}

pub(crate) async fn run(opts: PodsBench) -> Result<()> {
    let progress = |phase: &str| {
        if !opts.json {
            eprintln!("running: {phase}");
        }
    };
    let node = BenchNode::start("10.212.0.0/16", &progress).await?;
    let (client, agent, work) = (node.client.clone(), &node.agent, node.work.path());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // One first pod sets up the pod network before anything is timed.
    start(&pods, &["warm-up".to_string()]).await?;
    delete_all(&pods, &["warm-up".to_string()]).await?;
    let idle_rss = rss_mb(agent.child.id());

    progress("pods one at a time");
    let mut single = Vec::new();
    for i in 0..opts.single {
        let name = vec![format!("single-{i}")];
        single.extend(start(&pods, &name).await?);
        delete_all(&pods, &name).await?;
    }
    progress("a burst of pods");
    let names: Vec<String> = (0..opts.burst).map(|i| format!("burst-{i}")).collect();
    let t0 = Instant::now();
    let mut burst = start(&pods, &names).await?;
    let burst_wall = t0.elapsed();
    let busy_rss = rss_mb(agent.child.id());
    delete_all(&pods, &names).await?;

    progress("bare runc run");
    let runc = runtime::runc::choose(None, runtime::cgroups::detect())?;
    let bare = bare_runtime(work, &node.image_layers, &runc)?;
    drop(node);

    let mut report = Report::new(format!(
        "Pod start latency (created to Running, image present; {} on {})",
        runc.display(),
        runtime::cgroups::detect()
    ));
    report.add(
        "single_p50_ms",
        "one pod at a time, p50 (ms)",
        quantile_ms(&mut single, 0.5),
    );
    report.add(
        "single_p99_ms",
        "one pod at a time, p99 (ms)",
        quantile_ms(&mut single, 0.99),
    );
    report.add("p50_ms", "burst, p50 (ms)", quantile_ms(&mut burst, 0.5));
    report.add("p99_ms", "burst, p99 (ms)", quantile_ms(&mut burst, 0.99));
    report.add(
        "burst_wall_ms",
        "burst, all Running (ms)",
        burst_wall.as_secs_f64() * 1000.0,
    );
    report.add("burst_pods", "burst size (pods)", opts.burst as f64);
    report.add(
        "runtime_ms",
        "bare runc run of `true`, median (ms)",
        bare.as_secs_f64() * 1000.0,
    );
    report.add("agent_rss_idle_mb", "agent RSS idle (MB)", idle_rss);
    report.add(
        "agent_rss_mb",
        "agent RSS with the burst running (MB)",
        busy_rss,
    );
    report.print(opts.json);
    Ok(())
}
