//! `rudder bench streaming`: exec and port-forward through the API server (as root). The same
//! server and separate agent as `rudder bench pods`; one busybox pod serving a file over HTTP.
//! Measured: the round trip of `exec true` through kube-rs (WebSocket, v5.channel.k8s.io), and
//! the throughput of downloading the file through a port-forward (kube-rs over WebSocket
//! channels, and `kubectl port-forward`, SPDY tunnelled over WebSocket, when kubectl is
//! installed) against a direct connection to the pod's address.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::pods::{BenchNode, IMAGE};
use super::{Report, quantile_ms};
use crate::cli::StreamingBench;

const POD: &str = "stream-bench";
const PORT: u16 = 8080;

/// Sends `GET /big` over `conn` and reads the answer to its end; the bytes read.
async fn download(mut conn: impl AsyncRead + AsyncWrite + Unpin) -> Result<u64> {
    conn.write_all(b"GET /big HTTP/1.0\r\nHost: bench\r\n\r\n")
        .await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// MB/s of the best of `runs` downloads made by `fetch`.
async fn throughput<F, Fut>(runs: usize, size_mb: u64, mut fetch: F) -> Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    let mut best = 0.0f64;
    for _ in 0..runs {
        let t0 = Instant::now();
        let bytes = fetch().await?;
        let secs = t0.elapsed().as_secs_f64();
        if bytes < size_mb << 20 {
            bail!("a download ended early ({bytes} bytes)");
        }
        best = best.max(bytes as f64 / (1 << 20) as f64 / secs);
    }
    Ok(best)
}

pub(crate) async fn run(opts: StreamingBench) -> Result<()> {
    let progress = |phase: &str| {
        if !opts.json {
            eprintln!("running: {phase}");
        }
    };
    let node = BenchNode::start("10.213.0.0/16", &progress).await?;
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), "default");
    let script = format!(
        "mkdir -p /w && head -c {} /dev/zero > /w/big && exec httpd -f -p {PORT} -h /w",
        opts.size_mb << 20
    );
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": POD},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "web", "image": IMAGE, "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 1}}],
        },
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    progress("waiting for the pod");
    let deadline = Instant::now() + Duration::from_secs(120);
    let ip = loop {
        let p = pods.get(POD).await?;
        let status = p.status.unwrap_or_default();
        let ready = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready && let Some(ip) = status.pod_ip {
            break ip;
        }
        if Instant::now() > deadline {
            bail!("the benchmark pod did not become Ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    progress("exec round trips");
    let mut trips = Vec::new();
    for _ in 0..opts.execs {
        let t0 = Instant::now();
        let mut proc = pods
            .exec(
                POD,
                ["true"],
                &AttachParams::default().stdout(true).stderr(false),
            )
            .await
            .context("exec")?;
        let status = proc.take_status().context("no status channel")?;
        let mut out = proc.stdout().context("no stdout")?;
        let mut sink = Vec::new();
        out.read_to_end(&mut sink).await?;
        let status = status.await.context("no status")?;
        if status.status.as_deref() != Some("Success") {
            bail!("exec true failed: {status:?}");
        }
        proc.join().await?;
        trips.push(t0.elapsed());
    }

    progress("downloads");
    let runs = 3;
    let direct = throughput(runs, opts.size_mb, || async {
        download(tokio::net::TcpStream::connect((ip.as_str(), PORT)).await?).await
    })
    .await?;
    let kube_rs = throughput(runs, opts.size_mb, || async {
        let mut pf = pods.portforward(POD, &[PORT]).await?;
        let stream = pf.take_stream(PORT).context("no stream")?;
        let n = download(stream).await?;
        drop(pf);
        Ok(n)
    })
    .await?;
    let kubectl = match kubectl_throughput(&node, runs, opts.size_mb).await {
        Ok(v) => Some(v),
        Err(e) => {
            progress(&format!("kubectl port-forward skipped: {e:#}"));
            None
        }
    };
    drop(node);

    let mut report = Report::new("Streaming into a pod through the API server");
    report.add(
        "exec_p50_ms",
        "exec `true` round trip (kube-rs), p50 (ms)",
        quantile_ms(&mut trips, 0.5),
    );
    report.add(
        "exec_p99_ms",
        "exec `true` round trip (kube-rs), p99 (ms)",
        quantile_ms(&mut trips, 0.99),
    );
    report.add("direct_mb_s", "download from the pod's IP (MB/s)", direct);
    report.add(
        "portforward_kube_mb_s",
        "through kube-rs port-forward (MB/s)",
        kube_rs,
    );
    report.add(
        "portforward_kube_ratio",
        "kube-rs port-forward / direct",
        kube_rs / direct,
    );
    if let Some(k) = kubectl {
        report.add(
            "portforward_kubectl_mb_s",
            "through kubectl port-forward (MB/s)",
            k,
        );
        report.add(
            "portforward_kubectl_ratio",
            "kubectl port-forward / direct",
            k / direct,
        );
    }
    report.add("file_mb", "file size (MB)", opts.size_mb as f64);
    report.print(opts.json);
    Ok(())
}

/// The throughput through `kubectl port-forward` (the best of `runs`).
async fn kubectl_throughput(node: &BenchNode, runs: usize, size_mb: u64) -> Result<f64> {
    let kubeconfig = node.work.path().join("kubeconfig-bench");
    std::fs::copy(node.kubeconfig(), &kubeconfig)?;
    let local = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "port-forward",
            &format!("pod/{POD}"),
            &format!("{local}:{PORT}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("kubectl is not installed")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", local))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("kubectl port-forward did not listen");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let result = throughput(runs, size_mb, || async {
        download(tokio::net::TcpStream::connect(("127.0.0.1", local)).await?).await
    })
    .await;
    let _ = child.kill().await;
    result
}
