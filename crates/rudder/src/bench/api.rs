//! `rudder bench api`: the API server under load, measured from outside.
//!
//! It starts a `rudder server` child process on a temporary data directory (so the memory
//! figures are the server's own), then: creates `--pods` pods from `--clients` concurrent
//! clients (throughput and latency), measures the raw store's concurrent writes of the same
//! objects in the same run for comparison, LISTs the pods whole and in pages of 500, stores
//! `--configmaps` ConfigMaps, reads the server's RSS idle and loaded, and finally has
//! `--watchers` watchers follow `--updates` updates of one object (delivery latency, from
//! sending the update to each watcher decoding its event).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper::Method;
use serde_json::{Value, json};

use super::client::{Client, Credentials};
use super::{Report, per_second, quantile_ms};
use crate::cli::ApiBench;

fn pod(i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("pod-{i:06}"), "labels": {"app": "bench", "shard": (i % 16).to_string()}},
        "spec": {"containers": [{
            "name": "app",
            "image": "registry.example/app:1.0",
            "ports": [{"containerPort": 8080}],
            "env": [{"name": "MODE", "value": "benchmark"}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
        }]},
    }))
    .expect("encodes")
}

fn rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")?;
    Ok(kb / 1024.0)
}

/// The server under test, killed on drop.
pub(crate) struct ServerProcess {
    child: std::process::Child,
    dir: tempfile::TempDir,
    pub(super) credentials: Credentials,
    port: u16,
}

impl ServerProcess {
    /// The admin kubeconfig.
    pub(super) fn kubeconfig(&self) -> std::path::PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    /// The server's URL.
    pub(super) fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The file holding the join token for agents.
    pub(super) fn token_file(&self) -> std::path::PathBuf {
        self.dir.path().join("token")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `rudder server` (with `extra` flags) on a temporary data directory; returns once it
/// is ready.
pub(super) async fn start_server(extra: &[&str]) -> Result<ServerProcess> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = std::process::Command::new(std::env::current_exe()?)
        .args([
            "server",
            "--bind-address",
            "127.0.0.1",
            "--log-level",
            "warn",
        ])
        .arg("--https-listen-port")
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(dir.path())
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting rudder server")?;
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(credentials) = kubeconfig
            .exists()
            .then(|| Credentials::load(&kubeconfig).ok())
            .flatten()
            && let Ok(c) = credentials.connect().await
            && c.call(Method::GET, "/readyz", None).await.is_ok()
        {
            return Ok(ServerProcess {
                child,
                dir,
                credentials,
                port,
            });
        }
        if Instant::now() > deadline {
            bail!("rudder server did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn run(opts: ApiBench) -> Result<()> {
    let progress = |phase: &str| {
        if !opts.json {
            eprintln!("running: {phase}");
        }
    };
    // The API server alone: no agent, and no scheduler or controllers acting on the
    // benchmark's pods.
    let server = start_server(&[
        "--disable-agent",
        "--disable-scheduler",
        "--disable-controller-manager",
    ])
    .await?;
    let pid = server.child.id();
    let mut report = Report::new("API server benchmark (rudder server on embedded SQLite)");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_mb(pid)?;

    progress("raw store writes");
    let store_rate = raw_store_writes(&opts).await?;

    progress("creates");
    let admin = crate::client::from_kubeconfig(&server.kubeconfig()).await?;
    super::default_account(&admin, "default").await?;
    let mut clients = Vec::new();
    for _ in 0..opts.clients.max(1) {
        clients.push(server.credentials.connect().await?);
    }
    let (elapsed, mut latencies) =
        create_all(&clients, "/api/v1/namespaces/default/pods", opts.pods, pod).await?;
    report.add(
        "create_per_s",
        "pod creates/s",
        per_second(opts.pods, elapsed),
    );
    report.add(
        "store_write_per_s",
        "raw store writes/s (same objects)",
        store_rate,
    );
    report.add(
        "create_p50_ms",
        "create latency p50 (ms)",
        quantile_ms(&mut latencies, 0.5),
    );
    report.add(
        "create_p99_ms",
        "create latency p99 (ms)",
        quantile_ms(&mut latencies, 0.99),
    );

    progress("lists");
    let c = &clients[0];
    let pods_path = "/api/v1/namespaces/default/pods";
    let mut full = timed_lists(c, pods_path, "application/json", "items", opts.pods).await?;
    report.add(
        "list_10k_ms",
        "full LIST of the pods (ms, median of 3)",
        quantile_ms(&mut full, 0.5),
    );
    let started = Instant::now();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let path = format!("/api/v1/namespaces/default/pods?limit=500&continue={token}");
        let page: Value = serde_json::from_slice(&c.call(Method::GET, &path, None).await?)?;
        pages += 1;
        token = page["metadata"]["continue"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if token.is_empty() {
            break;
        }
    }
    report.add(
        "list_pages_ms",
        "LIST in pages of 500, all pages (ms)",
        started.elapsed().as_secs_f64() * 1000.0,
    );
    report.add("list_pages", "pages", pages as f64);

    progress("configmaps");
    let cm = |i: usize| {
        serde_json::to_vec(&json!({"metadata": {"name": format!("cm-{i:06}")}, "data": {"key": "value".repeat(20)}})).expect("encodes")
    };
    create_all(
        &clients,
        "/api/v1/namespaces/default/configmaps",
        opts.configmaps,
        cm,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_loaded = rss_mb(pid)?;
    // After the RSS reading: decoding every pod for the Table grows the heap, which the
    // allocator keeps, and the loaded figure is meant to show what the objects cost.
    let mut tables = timed_lists(c, pods_path, KUBECTL_TABLE, "rows", opts.pods).await?;
    let (json_ms, table_ms) = (quantile_ms(&mut full, 0.5), quantile_ms(&mut tables, 0.5));
    report.add(
        "list_table_10k_ms",
        "full LIST of the pods as a Table, as kubectl get asks (ms, median of 3)",
        table_ms,
    );
    report.add(
        "table_over_list",
        "Table LIST time over JSON LIST time",
        table_ms / json_ms,
    );

    progress("watch fan-out");
    let mut delivery = watch_fanout(&server.credentials, c, &opts).await?;
    report.add(
        "watch_p50_ms",
        "watch delivery p50 (ms)",
        quantile_ms(&mut delivery, 0.5),
    );
    report.add(
        "watch_p99_ms",
        "watch delivery p99 (ms)",
        quantile_ms(&mut delivery, 0.99),
    );
    report.add("watchers", "watchers", opts.watchers as f64);
    report.add("rss_idle_mb", "server RSS idle (MB)", rss_idle);
    report.add(
        "rss_loaded_mb",
        "server RSS with the objects stored (MB)",
        rss_loaded,
    );
    report.print(opts.json);
    Ok(())
}

/// What `kubectl get` sends as its Accept header.
const KUBECTL_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

/// Three full LISTs of `path` answered as `accept` asks, each checked to hold `expected`
/// entries under `field`; their times.
async fn timed_lists(
    c: &Client,
    path: &str,
    accept: &str,
    field: &str,
    expected: usize,
) -> Result<Vec<Duration>> {
    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let body = c.call_as(Method::GET, path, None, accept).await?;
        times.push(started.elapsed());
        let list: Value = serde_json::from_slice(&body)?;
        let n = list[field].as_array().map_or(0, Vec::len);
        if n != expected {
            bail!("LIST ({accept}) returned {n} {field}, expected {expected}");
        }
    }
    Ok(times)
}

/// The raw store's concurrent create throughput for the same pods, on its own database.
async fn raw_store_writes(opts: &ApiBench) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let s = Arc::new(
        store::sqlite::SqliteStore::open(
            dir.path().join("raw.db"),
            store::sqlite::SqliteOptions::default(),
        )
        .await?,
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..opts.clients.max(1))
        .map(|_| {
            let (s, next, total) = (s.clone(), next.clone(), opts.pods);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        return anyhow::Ok(());
                    }
                    store::Store::create(
                        &*s,
                        &format!("/registry/pods/default/pod-{i:06}"),
                        pod(i),
                    )
                    .await?;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let rate = per_second(opts.pods, started.elapsed());
    store::Store::close(&*s).await?;
    Ok(rate)
}

/// POSTs `count` objects to `path` from every client concurrently; wall time and latencies.
pub(super) async fn create_all(
    clients: &[Client],
    path: &str,
    count: usize,
    body: impl Fn(usize) -> Vec<u8> + Send + Sync + 'static,
) -> Result<(Duration, Vec<Duration>)> {
    let body = Arc::new(body);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .map(|c| {
            let (c, body, next, path) = (c.clone(), body.clone(), next.clone(), path.to_string());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        return anyhow::Ok(lat);
                    }
                    let t = Instant::now();
                    c.call(Method::POST, &path, Some(body(i))).await?;
                    lat.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((started.elapsed(), all))
}

/// `opts.watchers` watchers of one ConfigMap, `opts.updates` updates of it; the delivery
/// latency of every event at every watcher.
async fn watch_fanout(
    credentials: &Credentials,
    c: &Client,
    opts: &ApiBench,
) -> Result<Vec<Duration>> {
    let created: Value = serde_json::from_slice(
        &c.call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(serde_json::to_vec(
                &json!({"metadata": {"name": "watched"}}),
            )?),
        )
        .await?,
    )?;
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let base = Instant::now();
    let path = format!(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Dwatched"
    );
    // Spread the watchers over connections, 50 streams each.
    let mut conns = Vec::new();
    for _ in 0..opts.watchers.div_ceil(50).max(1) {
        conns.push(credentials.connect().await?);
    }
    let mut watchers = Vec::new();
    for w in 0..opts.watchers {
        let body = conns[w / 50].stream(&path).await?;
        let updates = opts.updates;
        watchers.push(tokio::spawn(
            async move { follow(body, base, updates).await },
        ));
    }
    // Let every watch get established before the first update.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..opts.updates {
        let sent = base.elapsed().as_nanos().to_string();
        let patch =
            json!({"metadata": {"annotations": {"bench/sent": sent, "bench/seq": i.to_string()}}});
        let resp = c.call(
            Method::PATCH,
            "/api/v1/namespaces/default/configmaps/watched",
            Some(serde_json::to_vec(&patch)?),
        );
        resp.await.context("updating the watched object")?;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut all = Vec::new();
    for w in watchers {
        all.extend(
            tokio::time::timeout(Duration::from_secs(120), w)
                .await
                .context("watchers did not receive every update")???,
        );
    }
    Ok(all)
}

/// Reads watch events until `updates` MODIFIED events have arrived.
async fn follow(
    mut body: hyper::body::Incoming,
    base: Instant,
    updates: usize,
) -> Result<Vec<Duration>> {
    use http_body_util::BodyExt;
    let mut buf: Vec<u8> = Vec::new();
    let mut lat = Vec::with_capacity(updates);
    while lat.len() < updates {
        let frame = body.frame().await.context("watch ended")??;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let ev: Value = serde_json::from_slice(&line)?;
            if ev["type"] == "MODIFIED" {
                let sent: u128 = ev["object"]["metadata"]["annotations"]["bench/sent"]
                    .as_str()
                    .unwrap_or("0")
                    .parse()?;
                lat.push(
                    base.elapsed()
                        .saturating_sub(Duration::from_nanos(sent as u64)),
                );
            }
        }
    }
    Ok(lat)
}
