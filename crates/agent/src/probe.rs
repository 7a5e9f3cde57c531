//! Startup, readiness and liveness probes (exec, httpGet, tcpSocket, grpc) with upstream's timing
//! fields and thresholds. A failed liveness or startup probe kills the container (it restarts
//! per the pod's policy); readiness gates the container's `ready`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction, LifecycleHandler, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::pods::Ctx;

mod grpc;

#[derive(Debug, Default)]
struct Counter {
    successes: u32,
    failures: u32,
    next: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    started: bool,
    ready: bool,
    startup: Counter,
    readiness: Counter,
    liveness: Counter,
}

/// Probe state of a pod's running containers.
#[derive(Debug, Default)]
pub(crate) struct Probes {
    state: HashMap<String, State>,
}

/// What the probes ask for.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Kill the container, for this reason.
    pub(crate) kill: Option<String>,
}

enum Kind {
    Startup,
    Readiness,
    Liveness,
}

impl Probes {
    /// Forgets a container's results (a new attempt starts afresh).
    pub(crate) fn reset(&mut self, name: &str) {
        self.state.remove(name);
    }

    /// Readiness by container name, for those probed so far.
    pub(crate) fn ready_map(&self) -> BTreeMap<String, (bool, bool)> {
        self.state
            .iter()
            .map(|(k, s)| (k.clone(), (s.ready, s.started)))
            .collect()
    }

    /// Runs the probes that are due for running container `c`.
    pub(crate) async fn run(
        &mut self,
        ctx: &Ctx,
        pod: &Pod,
        c: &Container,
        id: &str,
        ip: &str,
        started: Timestamp,
    ) -> Outcome {
        let st = self.state.entry(c.name.clone()).or_insert_with(|| State {
            started: c.startup_probe.is_none(),
            ready: false,
            ..Default::default()
        });
        let since_start = Timestamp::now().duration_since(started).unsigned_abs();
        let mut out = Outcome::default();
        if !st.started {
            if let Some(p) = &c.startup_probe {
                match step(
                    ctx,
                    pod,
                    c,
                    id,
                    ip,
                    p,
                    &mut st.startup,
                    since_start,
                    Kind::Startup,
                )
                .await
                {
                    Some(true) => st.started = true,
                    Some(false) if st.startup.failures >= threshold(p.failure_threshold, 3) => {
                        out.kill = Some(format!(
                            "Container {} failed startup probe, will be restarted",
                            c.name
                        ));
                    }
                    _ => {}
                }
            }
            return out;
        }
        match &c.readiness_probe {
            None => st.ready = true,
            Some(p) => match step(
                ctx,
                pod,
                c,
                id,
                ip,
                p,
                &mut st.readiness,
                since_start,
                Kind::Readiness,
            )
            .await
            {
                Some(true) if st.readiness.successes >= threshold(p.success_threshold, 1) => {
                    st.ready = true
                }
                Some(false) if st.readiness.failures >= threshold(p.failure_threshold, 3) => {
                    st.ready = false
                }
                _ => {}
            },
        }
        if let Some(p) = &c.liveness_probe
            && step(
                ctx,
                pod,
                c,
                id,
                ip,
                p,
                &mut st.liveness,
                since_start,
                Kind::Liveness,
            )
            .await
                == Some(false)
            && st.liveness.failures >= threshold(p.failure_threshold, 3)
        {
            out.kill = Some(format!(
                "Container {} failed liveness probe, will be restarted",
                c.name
            ));
        }
        out
    }
}

fn threshold(v: Option<i32>, default: u32) -> u32 {
    v.filter(|n| *n > 0).map(|n| n as u32).unwrap_or(default)
}

/// Runs probe `p` if due; Some(result) when it ran.
#[allow(clippy::too_many_arguments)]
async fn step(
    ctx: &Ctx,
    pod: &Pod,
    c: &Container,
    id: &str,
    ip: &str,
    p: &Probe,
    counter: &mut Counter,
    since_start: Duration,
    kind: Kind,
) -> Option<bool> {
    let delay = Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64);
    if since_start < delay {
        return None;
    }
    let now = Instant::now();
    if counter.next.is_some_and(|n| now < n) {
        return None;
    }
    let period = Duration::from_secs(p.period_seconds.filter(|n| *n > 0).unwrap_or(10) as u64);
    counter.next = Some(now + period);
    let timeout = Duration::from_secs(p.timeout_seconds.filter(|n| *n > 0).unwrap_or(1) as u64);
    let result = action(ctx, c, id, ip, p, timeout).await;
    match result {
        Ok(()) => {
            counter.successes += 1;
            counter.failures = 0;
            Some(true)
        }
        Err(msg) => {
            counter.failures += 1;
            counter.successes = 0;
            let what = match kind {
                Kind::Startup => "Startup",
                Kind::Readiness => "Readiness",
                Kind::Liveness => "Liveness",
            };
            ctx.events.pod(
                pod,
                Some(format!("spec.containers{{{}}}", c.name)),
                true,
                "Unhealthy",
                format!("{what} probe failed: {msg}"),
            );
            Some(false)
        }
    }
}

/// A port by number or by the container's port name.
fn port(c: &Container, p: &IntOrString) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => Ok(*n as u16),
        IntOrString::String(name) => name.parse::<u16>().or_else(|_| {
            c.ports
                .iter()
                .flatten()
                .find(|cp| cp.name.as_deref() == Some(name))
                .map(|cp| cp.container_port as u16)
                .ok_or_else(|| format!("couldn't find port {name:?} in container {:?}", c.name))
        }),
    }
}

async fn action(
    ctx: &Ctx,
    c: &Container,
    id: &str,
    ip: &str,
    p: &Probe,
    timeout: Duration,
) -> Result<(), String> {
    let secs = timeout.as_secs();
    if let Some(e) = &p.exec {
        let command = e.command.as_deref().unwrap_or_default();
        return tokio::time::timeout(timeout, exec_in(ctx, id, command))
            .await
            .unwrap_or_else(|_| Err(format!("command {:?} timed out", command.join(" "))))
            .map(drop);
    }
    if let Some(t) = &p.tcp_socket {
        let host = t
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| ip.to_string());
        let port = port(c, &t.port)?;
        return tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .map_err(|_| format!("dial tcp {host}:{port}: i/o timeout"))?
        .map(drop)
        .map_err(|e| format!("dial tcp {host}:{port}: {e}"));
    }
    if let Some(h) = &p.http_get {
        return tokio::time::timeout(timeout, http_get(c, ip, h))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "Get {:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                    url(c, ip, h)
                ))
            });
    }
    if let Some(g) = &p.grpc {
        return tokio::time::timeout(timeout, grpc::check(ip, g, secs))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "timeout: health rpc did not complete within {secs}s"
                ))
            });
    }
    Err("a probe without a handler".into())
}

/// Where an HTTP GET goes: its URL as upstream prints it, host and port.
fn target(
    c: &Container,
    ip: &str,
    h: &HTTPGetAction,
) -> Result<(String, String, u16, String), String> {
    let host = h
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| ip.to_string());
    let port = port(c, &h.port)?;
    let path = h
        .path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into());
    let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok((format!("{scheme}://{authority}{path}"), host, port, path))
}

fn url(c: &Container, ip: &str, h: &HTTPGetAction) -> String {
    target(c, ip, h).map(|t| t.0).unwrap_or_default()
}

/// An HTTP(S) GET as probes and lifecycle hooks make it: success for a 2xx or 3xx answer.
/// HTTPS does not verify the server's certificate, as upstream's kubelet does not.
pub(crate) async fn http_get(c: &Container, ip: &str, h: &HTTPGetAction) -> Result<(), String> {
    let (url, host, port, path) = target(c, ip, h)?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("Get {url:?}: dial tcp {host}:{port}: {e}"))?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for hd in h.http_headers.iter().flatten() {
        req.push_str(&format!("{}: {}\r\n", hd.name, hd.value));
    }
    req.push_str("\r\n");
    let line = if h.scheme.as_deref() == Some("HTTPS") {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("Get {url:?}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(crate::bootstrap::unverified_client())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("Get {url:?}: {e}"))?;
        status_line(tls, &req).await
    } else {
        status_line(tcp, &req).await
    }
    .map_err(|e| format!("Get {url:?}: {e}"))?;
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("Get {url:?}: malformed HTTP response"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// Sends a request and reads the answer's status line.
async fn status_line<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    req: &str,
) -> std::io::Result<String> {
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Runs a lifecycle hook (postStart, preStop): exec, httpGet or sleep.
pub(crate) async fn hook(
    ctx: &Ctx,
    c: &Container,
    id: &str,
    ip: &str,
    h: &LifecycleHandler,
) -> Result<(), String> {
    if let Some(e) = &h.exec {
        let command = e.command.clone().unwrap_or_default();
        return exec_in(ctx, id, &command).await.map(drop).map_err(|out| {
            format!(
                "command '{}' exited with non-zero code: {out}",
                command.join(" ")
            )
        });
    }
    if let Some(g) = &h.http_get {
        return http_get(c, ip, g).await;
    }
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
        return Ok(());
    }
    Err("a lifecycle hook without a handler".into())
}

/// Runs a command in a running container (`runc exec`); its output, or the failure.
pub(crate) async fn exec_in(ctx: &Ctx, id: &str, command: &[String]) -> Result<String, String> {
    let out = ctx
        .host
        .exec(id, command)
        .await
        .map_err(|e| e.to_string())?;
    if out.success {
        Ok(out.output)
    } else {
        Err(out.output.trim().to_string())
    }
}
