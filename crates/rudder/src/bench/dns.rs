//! `rudder bench dns`: cluster DNS against Knot DNS (Debian's `knot`), both serving the A
//! records of the same Services on loopback and asked the same names by Debian's `dnsperf` in
//! the same run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Service;

use super::{Report, free_port, on_path, rss_bytes};
use crate::cli::DnsBench;

/// What dnsperf measured against one server.
struct Measured {
    qps: f64,
    average_ms: f64,
    lost: f64,
}

pub(crate) async fn run(opts: DnsBench) -> Result<()> {
    for (tool, package) in [
        ("dnsperf", "dnsperf"),
        ("knotd", "knot"),
        ("dig", "dnsutils"),
    ] {
        if !on_path(tool) {
            bail!("{tool} not found (Debian: apt-get install {package})");
        }
    }
    let dir = tempfile::tempdir()?;
    let queries = dir.path().join("queries");
    let names: Vec<String> = (0..opts.services)
        .map(|i| format!("svc-{i}.bench.svc.cluster.local"))
        .collect();
    std::fs::write(&queries, query_file(&names))?;

    let before = rss_bytes();
    let mut records = dns::Records::default();
    for i in 0..opts.services {
        records.apply_service(&service(i)?);
    }
    let model_mb = (rss_bytes().saturating_sub(before)) as f64 / 1e6;
    let (udp, tcp) = udp_and_tcp().await?;
    let port = udp.local_addr()?.port();
    let server = tokio::spawn(dns::serve(
        udp,
        tcp,
        Arc::new(RwLock::new(records)),
        Vec::new(),
    ));
    wait_for_answer(port, &names[0]).await?;
    let ours = dnsperf(port, &queries, opts.seconds).await?;
    server.abort();

    let knot_port = free_port()?;
    let mut knot = start_knot(dir.path(), knot_port, opts.services)?;
    let theirs = match wait_for_answer(knot_port, &names[0]).await {
        Ok(()) => dnsperf(knot_port, &queries, opts.seconds).await,
        Err(e) => Err(e),
    };
    let _ = knot.kill();
    let _ = knot.wait();
    let theirs = theirs?;

    let mut r = Report::new(format!(
        "cluster DNS: {} Services, {} s of dnsperf each, against Knot DNS",
        opts.services, opts.seconds
    ));
    r.add("services", "Services", opts.services as f64);
    r.add("rudder_qps", "rudder queries/s", ours.qps);
    r.add("knot_qps", "Knot DNS queries/s", theirs.qps);
    r.add(
        "rudder_over_knot",
        "rudder / Knot (queries/s)",
        ours.qps / theirs.qps.max(1e-9),
    );
    r.add(
        "rudder_avg_latency_ms",
        "rudder average latency (ms)",
        ours.average_ms,
    );
    r.add(
        "knot_avg_latency_ms",
        "Knot DNS average latency (ms)",
        theirs.average_ms,
    );
    r.add("rudder_lost", "rudder queries lost", ours.lost);
    r.add("knot_lost", "Knot DNS queries lost", theirs.lost);
    r.add("model_mb", "rudder's records in memory (MB)", model_mb);
    r.print(opts.json);
    Ok(())
}

fn service(i: usize) -> Result<Service> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
        "spec": {"clusterIP": cluster_ip(i), "ports": [{"name": "http", "port": 80}]},
    }))?)
}

fn cluster_ip(i: usize) -> String {
    format!("10.43.{}.{}", 1 + i / 250, 1 + i % 250)
}

/// One `name A` line per name, in a scrambled but fixed order (no two runs differ).
fn query_file(names: &[String]) -> String {
    let n = names.len().max(1);
    // A step coprime with n visits every name once.
    let step = (1..n)
        .rev()
        .find(|s| gcd(*s, n) == 1 && *s > n / 3)
        .unwrap_or(1);
    (0..n)
        .filter_map(|k| names.get((k * step) % n))
        .map(|name| format!("{name} A\n"))
        .collect()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A UDP socket and a TCP listener on one free loopback port. The UDP port comes from the
/// kernel; its TCP twin may be taken by someone else, and then another port is tried.
async fn udp_and_tcp() -> Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let port = udp.local_addr()?.port();
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.expect("a bind was tried").into())
}

/// Knot DNS serving the same A records from a zone file, on `port`.
fn start_knot(dir: &Path, port: u16, services: usize) -> Result<std::process::Child> {
    let mut zone = String::from(
        "$ORIGIN cluster.local.\n$TTL 5\n@ SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5\n@ NS ns.dns.cluster.local.\nns.dns A 127.0.0.1\n",
    );
    for i in 0..services {
        zone.push_str(&format!("svc-{i}.bench.svc A {}\n", cluster_ip(i)));
    }
    std::fs::write(dir.join("cluster.local.zone"), zone)?;
    let d = dir.display();
    let config = format!(
        "server:\n  listen: 127.0.0.1@{port}\n  rundir: {d}\ndatabase:\n  storage: {d}\ncontrol:\n  listen: {d}/knot.sock\ntemplate:\n  - id: default\n    storage: {d}\n    file: \"%s.zone\"\nzone:\n  - domain: cluster.local\nlog:\n  - target: stderr\n    any: error\n"
    );
    let path = dir.join("knot.conf");
    std::fs::write(&path, config)?;
    Command::new("knotd")
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting knotd")
}

/// Waits (ten seconds at most) until the server on `port` answers `name`.
async fn wait_for_answer(port: u16, name: &str) -> Result<()> {
    for _ in 0..100 {
        let out = tokio::process::Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &port.to_string(),
                "+short",
                "+time=1",
                "+tries=1",
                name,
            ])
            .output()
            .await?;
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the server on port {port} never answered {name}")
}

async fn dnsperf(port: u16, queries: &Path, seconds: u64) -> Result<Measured> {
    let out = tokio::process::Command::new("dnsperf")
        .args([
            "-s",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-l",
            &seconds.to_string(),
        ])
        .args(["-c", "8", "-q", "200", "-d"])
        .arg(queries)
        .output()
        .await
        .context("running dnsperf")?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_dnsperf(&text).with_context(|| format!("reading dnsperf's report:\n{text}"))
}

fn parse_dnsperf(text: &str) -> Option<Measured> {
    let number = |key: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.trim_start().starts_with(key))?;
        line.split(':')
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(Measured {
        qps: number("Queries per second")?,
        average_ms: number("Average Latency (s)")? * 1000.0,
        lost: number("Queries lost")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dnsperf_reports_are_read() {
        let report = "Statistics:\n\n  Queries sent:         100\n  Queries completed:    99 (99.00%)\n  Queries lost:         1 (1.00%)\n\n  Response codes:       NOERROR 99 (100.00%)\n  Run time (s):         5.000\n  Queries per second:   31234.567\n\n  Average Latency (s):  0.000321 (min 0.000010, max 0.004000)\n";
        let m = parse_dnsperf(report).unwrap();
        assert_eq!((m.qps, m.lost), (31234.567, 1.0));
        assert!((m.average_ms - 0.321).abs() < 1e-9);
    }

    #[test]
    fn every_name_is_asked_once() {
        let names: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
        let file = query_file(&names);
        let mut asked: Vec<&str> = file.lines().collect();
        assert_ne!(asked[1], "n1 A");
        asked.sort_unstable();
        assert_eq!(asked.len(), 10);
        asked.dedup();
        assert_eq!(asked.len(), 10);
    }
}
