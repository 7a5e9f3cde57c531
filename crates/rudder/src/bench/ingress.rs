//! `rudder bench ingress`: the Ingress controller's proxy against Debian's nginx proxying to
//! the same backend, both loaded by Debian's `wrk` in the same run, on loopback.
//!
//! The backend (the "pod") is an nginx answering a short text. Rudder's side is the Ingress
//! controller's own proxy with a routing table built from an Ingress, a Service and an
//! EndpointSlice as the controller builds it; nginx's side is configured as ingress-nginx
//! proxies (HTTP/1.1 to the backend with kept-alive connections, the `X-Forwarded-*`
//! headers), with as many workers as this process has runtime threads. Each proxy is loaded
//! twice, alternately; the better run of each is kept.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::json;

use super::{Report, free_port, on_path};
use crate::cli::IngressBench;

/// What wrk measured through one proxy.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

pub(crate) async fn run(opts: IngressBench) -> Result<()> {
    for (tool, package) in [("wrk", "wrk"), ("nginx", "nginx-light")] {
        if !on_path(tool) {
            bail!("{tool} not found (Debian: apt-get install {package})");
        }
    }
    let dir = tempfile::tempdir()?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let backend_port = free_port()?;
    let backend = Nginx::start(&dir.path().join("backend"), &backend_conf(backend_port))?;
    let nginx_port = free_port()?;
    let conf = proxy_conf(nginx_port, backend_port, threads);
    let nginx = Nginx::start(&dir.path().join("proxy"), &conf)?;

    let ours = Arc::new(ingress::proxy::Proxy::new());
    ours.set_table(table(backend_port)?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let our_port = listener.local_addr()?.port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ours.serve(listener, None, async move {
        let _ = stopped.await;
    }));
    for port in [backend_port, nginx_port, our_port] {
        wait_for_answer(port).await?;
    }

    let (mut rudder, mut theirs) = (Measured::default(), Measured::default());
    for _ in 0..2 {
        rudder = better(rudder, wrk(our_port, &opts).await?);
        theirs = better(theirs, wrk(nginx_port, &opts).await?);
    }
    let _ = stop.send(());
    let _ = server.await;
    drop((nginx, backend));

    let mut r = Report::new(format!(
        "Ingress: wrk, {} connections, {} s, through Rudder's proxy and nginx to one backend",
        opts.connections, opts.seconds
    ));
    r.add("rudder_rps", "rudder requests/s", rudder.rps);
    r.add("nginx_rps", "nginx requests/s", theirs.rps);
    r.add(
        "rudder_over_nginx",
        "rudder / nginx (requests/s)",
        rudder.rps / theirs.rps.max(1e-9),
    );
    r.add("rudder_p50_ms", "rudder p50 ms", rudder.p50_ms);
    r.add("rudder_p99_ms", "rudder p99 ms", rudder.p99_ms);
    r.add("nginx_p50_ms", "nginx p50 ms", theirs.p50_ms);
    r.add("nginx_p99_ms", "nginx p99 ms", theirs.p99_ms);
    r.print(opts.json);
    Ok(())
}

fn better(a: Measured, b: Measured) -> Measured {
    if b.rps > a.rps { b } else { a }
}

/// The routing table the controller would build for host `bench.example` to a Service whose
/// one endpoint is the backend.
fn table(backend_port: u16) -> Result<ingress::routes::Table> {
    let ingress: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "bench", "namespace": "bench", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"ingressClassName": "rudder", "rules": [{"host": "bench.example", "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]},
    }))?;
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "bench"},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }))?;
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "web-1", "namespace": "bench",
            "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": backend_port, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
    }))?;
    let table = ingress::routes::Table::build(&[&ingress], &[&service], &[&slice]);
    if table.route(Some("bench.example"), "/").is_none() {
        bail!("the benchmark's Ingress routes nowhere");
    }
    Ok(table)
}

fn backend_conf(port: u16) -> String {
    format!(
        "worker_processes 1;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 \"hello from the pod\\n\"; }}
  }}
}}
"
    )
}

fn proxy_conf(port: u16, backend: u16, workers: usize) -> String {
    format!(
        "worker_processes {workers};
events {{ worker_connections 1024; }}
http {{
  access_log off;
  upstream pod {{ server 127.0.0.1:{backend}; keepalive 320; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://pod;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host $host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Port $server_port;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}
"
    )
}

/// An nginx with its own prefix directory; stopped when dropped.
struct Nginx(Child);

impl Nginx {
    fn start(prefix: &Path, conf: &str) -> Result<Nginx> {
        std::fs::create_dir_all(prefix.join("logs"))?;
        let file = prefix.join("nginx.conf");
        let conf = format!(
            "pid {};\nerror_log {} warn;\n{conf}",
            prefix.join("nginx.pid").display(),
            prefix.join("logs/error.log").display()
        );
        std::fs::write(&file, conf)?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&file)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nginx")?;
        Ok(Nginx(child))
    }
}

impl Drop for Nginx {
    /// SIGTERM, nginx's fast shutdown: the master stops its workers before it exits (killed,
    /// it would leave them running).
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

async fn wrk(port: u16, opts: &IngressBench) -> Result<Measured> {
    let out = tokio::process::Command::new("wrk")
        .args(["-t", "2", "--latency", "-H", "Host: bench.example"])
        .arg(format!("-c{}", opts.connections))
        .arg(format!("-d{}s", opts.seconds))
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .await
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_wrk(&text).with_context(|| format!("reading wrk's report:\n{text}"))
}

/// Requests/s and the 50th and 99th latency percentiles from wrk's `--latency` report.
fn parse_wrk(text: &str) -> Option<Measured> {
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    if let Some(errors) = field("Non-2xx or 3xx responses:") {
        tracing::warn!("wrk: {errors} answers were not 2xx or 3xx");
    }
    Some(Measured {
        rps: field("Requests/sec:")?.parse().ok()?,
        p50_ms: millis(field("50%")?)?,
        p99_ms: millis(field("99%")?)?,
    })
}

/// wrk's durations (`812.00us`, `1.20ms`, `2.01s`) in milliseconds.
fn millis(s: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e3)
    } else {
        return None;
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// Waits until `port` answers 200 for `bench.example`.
async fn wait_for_answer(port: u16) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for _ in 0..100 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let ask = b"GET / HTTP/1.1\r\nHost: bench.example\r\nConnection: close\r\n\r\n";
            let mut answer = Vec::new();
            if s.write_all(ask).await.is_ok()
                && s.read_to_end(&mut answer).await.is_ok()
                && answer.starts_with(b"HTTP/1.1 200")
            {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("nothing answered 200 on 127.0.0.1:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_reports_are_read() {
        let report = "Running 1s test @ http://127.0.0.1:1/
  Latency Distribution
     50%  812.00us
     75%    1.20ms
     90%    2.00ms
     99%    2.01s
  1000 requests in 1.00s, 1.00MB read
Requests/sec:   9876.54
Transfer/sec:      1.00MB
";
        let m = parse_wrk(report).unwrap();
        assert_eq!(m.rps, 9876.54);
        assert!((m.p50_ms - 0.812).abs() < 1e-9);
        assert!((m.p99_ms - 2010.0).abs() < 1e-9);
    }
}
