//! `rudder bench services` (as root): the service proxy's data path and rule updates, in three
//! network namespaces of its own (a client, a server and a router between them holding the
//! proxy's table, as a node holds it between two pods), so nothing touches the host's rules.
//!
//! - Throughput: Debian's iperf3 from the client to the server's address, then to a ClusterIP
//!   the proxy's rules translate to it, alternately, twice each; the best of each is kept.
//! - Connection latency: TCP connect, one byte each way and close, to the server directly and
//!   through the ClusterIP; the p50 and p99 of each and the difference.
//! - Rule updates: with `--services` Services in the table, one Service's endpoint changed at
//!   a time, timed from the change to `nft` having applied it (rules computed, the incremental
//!   script applied), against loading the whole table afresh, as a proxy that rewrites
//!   everything would. The watch and the proxy's 50 ms settling time are not included.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use proxy::model::{Protocol, ServicePort};
use proxy::rules::{Config, Ruleset};

use super::{Report, on_path, quantile_ms, rss_bytes};
use crate::cli::ServicesBench;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 251, 1, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 251, 2, 2);
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 252, 0, 10);
const IPERF_PORT: u16 = 5201;
const ECHO_PORT: u16 = 7007;
const TABLE: &str = "rudder-bench";

pub(crate) async fn run(opts: ServicesBench) -> Result<()> {
    for (tool, package) in [
        ("iperf3", "iperf3"),
        ("nft", "nftables"),
        ("ip", "iproute2"),
    ] {
        if !on_path(tool) {
            bail!("{tool} not found (Debian: apt-get install {package})");
        }
    }
    let json = opts.json;
    tokio::task::spawn_blocking(move || measure(&opts))
        .await?
        .map(|r| r.print(json))
}

fn measure(opts: &ServicesBench) -> Result<Report> {
    let net = Namespaces::create()?;
    let config = Config {
        table: TABLE.into(),
        cluster_cidr: Some("10.251.0.0/16".into()),
        service_cidr: Some("10.252.0.0/16".into()),
        node: None,
    };
    let before = rss_bytes();
    let mut ports = filler(opts.services);
    ports.extend(target());
    let mut applied = Ruleset::build(&config, &ports);
    let memory = rss_bytes().saturating_sub(before) as f64;
    let mut full = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        net.nft(&applied.script(TABLE, None))?;
        full.push(started.elapsed());
    }

    let echo = net.echo_server()?;
    let mut iperf = net.iperf_server()?;
    let (mut direct, mut via) = (0f64, 0f64);
    for _ in 0..2 {
        direct = direct.max(net.iperf(SERVER, opts.seconds)?);
        via = via.max(net.iperf(CLUSTER_IP, opts.seconds)?);
    }
    let _ = iperf.kill();
    let _ = iperf.wait();
    let mut direct_lat = net.connections(SERVER, opts.connections)?;
    let mut via_lat = net.connections(CLUSTER_IP, opts.connections)?;
    drop(echo);

    let mut updates = Vec::with_capacity(opts.updates);
    for k in 0..opts.updates {
        let i = (k * 7919) % opts.services.max(1);
        if let Some(p) = ports.get_mut(i) {
            p.endpoints = vec![SocketAddrV4::new(filler_endpoint(i + k + 1), 8080)];
        }
        let started = Instant::now();
        let wanted = Ruleset::build(&config, &ports);
        net.nft(&wanted.script(TABLE, Some(&applied)))?;
        updates.push(started.elapsed());
        applied = wanted;
    }

    let mut r = Report::new(format!(
        "service proxy: {} Services in the table; iperf3 {} s, {} connections, {} updates",
        opts.services, opts.seconds, opts.connections, opts.updates
    ));
    r.add("services", "Services", opts.services as f64);
    r.add("direct_gbps", "iperf3 to the pod, Gbit/s", direct / 1e9);
    r.add(
        "cluster_ip_gbps",
        "iperf3 to the ClusterIP, Gbit/s",
        via / 1e9,
    );
    r.add(
        "cluster_ip_over_direct",
        "ClusterIP / pod (throughput)",
        via / direct.max(1.0),
    );
    let (d50, d99) = (
        quantile_ms(&mut direct_lat, 0.5),
        quantile_ms(&mut direct_lat, 0.99),
    );
    let (v50, v99) = (
        quantile_ms(&mut via_lat, 0.5),
        quantile_ms(&mut via_lat, 0.99),
    );
    r.add(
        "direct_connect_p50_us",
        "connection to the pod p50 µs",
        d50 * 1e3,
    );
    r.add(
        "direct_connect_p99_us",
        "connection to the pod p99 µs",
        d99 * 1e3,
    );
    r.add(
        "cluster_ip_connect_p50_us",
        "connection to the ClusterIP p50 µs",
        v50 * 1e3,
    );
    r.add(
        "cluster_ip_connect_p99_us",
        "connection to the ClusterIP p99 µs",
        v99 * 1e3,
    );
    r.add(
        "added_p99_us",
        "added by the ClusterIP, p99 µs",
        (v99 - d99) * 1e3,
    );
    r.add(
        "update_p50_ms",
        "endpoint change applied p50 ms",
        quantile_ms(&mut updates, 0.5),
    );
    r.add(
        "update_p99_ms",
        "endpoint change applied p99 ms",
        quantile_ms(&mut updates, 0.99),
    );
    r.add(
        "full_load_ms",
        "whole table loaded afresh ms",
        quantile_ms(&mut full, 0.5),
    );
    r.add(
        "rules_mb_per_1000",
        "rules in memory per 1,000 Services MB",
        memory / 1e6 / (opts.services.max(1) as f64 / 1000.0),
    );
    Ok(r)
}

/// `n` Services with one endpoint each that nothing answers at.
fn filler(n: usize) -> Vec<ServicePort> {
    (0..n)
        .map(|i| {
            let [_, _, hi, lo] = (u32::try_from(i).unwrap_or(0) + 256).to_be_bytes();
            let ip = Ipv4Addr::new(10, 252, hi, lo);
            let endpoint = SocketAddrV4::new(filler_endpoint(i), 8080);
            service_port(&format!("svc-{i}/tcp/http"), ip, 80, endpoint)
        })
        .collect()
}

fn filler_endpoint(i: usize) -> Ipv4Addr {
    let [_, _, hi, lo] = u32::try_from(i % 60_000).unwrap_or(0).to_be_bytes();
    Ipv4Addr::new(10, 251, 10 + hi, lo)
}

/// The Service measured: iperf3's port and the echo port, on the server.
fn target() -> Vec<ServicePort> {
    [("iperf", IPERF_PORT), ("echo", ECHO_PORT)]
        .into_iter()
        .map(|(name, port)| {
            let endpoint = SocketAddrV4::new(SERVER, port);
            service_port(&format!("target/tcp/{name}"), CLUSTER_IP, port, endpoint)
        })
        .collect()
}

/// A TCP port `name` (in namespace `bench`) of a ClusterIP Service with one endpoint.
fn service_port(name: &str, ip: Ipv4Addr, port: u16, endpoint: SocketAddrV4) -> ServicePort {
    ServicePort {
        id: format!("bench/{name}"),
        cluster_ip: ip,
        protocol: Protocol::Tcp,
        port,
        node_port: None,
        external: Vec::new(),
        affinity: None,
        endpoints: vec![endpoint],
        local_endpoints: None,
        health_check: None,
        local_ready: Vec::new(),
    }
}

/// The client, server and router namespaces; deleted (with their links) when dropped.
struct Namespaces {
    prefix: String,
}

impl Namespaces {
    fn create() -> Result<Namespaces> {
        let net = Namespaces {
            prefix: format!("rudder-bench-{}", std::process::id()),
        };
        let (r, c, s) = (net.name("r"), net.name("c"), net.name("s"));
        for ns in [&r, &c, &s] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        for (ns, link, router, host) in [
            (&c, "c0", "10.251.1.1/24", CLIENT),
            (&s, "s0", "10.251.2.1/24", SERVER),
        ] {
            ip(&[
                "-n", &r, "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ])?;
            ip(&["-n", &r, "addr", "add", router, "dev", link])?;
            ip(&["-n", &r, "link", "set", link, "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{host}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            let gateway = router.trim_end_matches("/24");
            ip(&["-n", ns, "route", "add", "default", "via", gateway])?;
        }
        ip(&[
            "netns",
            "exec",
            &r,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])?;
        Ok(net)
    }

    fn name(&self, which: &str) -> String {
        format!("{}-{which}", self.prefix)
    }

    /// Applies an nft script in the router.
    fn nft(&self, script: &str) -> Result<()> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name("r"), "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running nft")?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(script.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "nft refused the rules: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn iperf_server(&self) -> Result<std::process::Child> {
        let addr = SERVER.to_string();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.name("s"),
                "iperf3",
                "-s",
                "-B",
                &addr,
            ])
            .stdout(Stdio::null())
            .spawn()
            .context("starting iperf3")?;
        // Until it listens.
        for _ in 0..100 {
            if self
                .in_netns("c", move || {
                    TcpStream::connect((SERVER, IPERF_PORT)).map(drop)
                })?
                .is_ok()
            {
                return Ok(child);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("iperf3 did not start listening")
    }

    /// iperf3's bits per second from the client to `to`.
    fn iperf(&self, to: Ipv4Addr, seconds: u64) -> Result<f64> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name("c"), "iperf3", "-J", "-c"])
            .arg(to.to_string())
            .args(["-t", &seconds.to_string()])
            .output()
            .context("running iperf3")?;
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("iperf3 said: {}", String::from_utf8_lossy(&out.stdout)))?;
        report["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .with_context(|| format!("iperf3 to {to}: {}", report["error"]))
    }

    /// A server answering one byte per connection, in the server namespace, until dropped.
    fn echo_server(&self) -> Result<Echo> {
        let listener = self.in_netns("s", || TcpListener::bind((SERVER, ECHO_PORT)))??;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let mut byte = [0; 1];
                if stream.read_exact(&mut byte).is_ok() {
                    let _ = stream.write_all(&byte);
                }
            }
        });
        let server = self.name("s");
        Ok(Echo { stop, server })
    }

    /// How long each of `n` connections to `to` took: connect, a byte each way, close.
    fn connections(&self, to: Ipv4Addr, n: usize) -> Result<Vec<Duration>> {
        self.in_netns("c", move || -> Result<Vec<Duration>> {
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                let started = Instant::now();
                let mut s = TcpStream::connect((to, ECHO_PORT))?;
                s.set_nodelay(true)?;
                s.write_all(b"x")?;
                let mut byte = [0; 1];
                s.read_exact(&mut byte)?;
                samples.push(started.elapsed());
            }
            Ok(samples)
        })?
    }

    /// Runs `f` on a thread that has entered namespace `which`.
    fn in_netns<T: Send + 'static>(
        &self,
        which: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let path = format!("/var/run/netns/{}", self.name(which));
        Ok(runtime::namespaces::in_network(
            std::path::Path::new(&path),
            f,
        )?)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for which in ["c", "s", "r"] {
            let _ = ip(&["netns", "del", &self.name(which)]);
        }
    }
}

/// The echo server: stopped when dropped (the flag set, then one last connection wakes it).
struct Echo {
    stop: Arc<AtomicBool>,
    server: String,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let path = format!("/var/run/netns/{}", self.server);
        let _ = runtime::namespaces::in_network(std::path::Path::new(&path), || {
            TcpStream::connect((SERVER, ECHO_PORT)).map(drop)
        });
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
