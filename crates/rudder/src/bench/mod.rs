//! `rudder bench ...`: self-contained benchmarks that print a table, or one JSON object on the
//! last line with `--json`. Their latest numbers are kept in docs/benchmarks.md.

pub(crate) mod api;
pub(crate) mod authz;
mod client;
pub(crate) mod controllers;
pub(crate) mod dns;
pub(crate) mod ingress;
pub(crate) mod pods;
pub(crate) mod scheduler;
pub(crate) mod services;
pub(crate) mod store;
pub(crate) mod streaming;

use std::time::Duration;

/// The measurements of one benchmark run, in the order they were taken.
pub(crate) struct Report {
    title: String,
    rows: Vec<(&'static str, &'static str, f64)>,
}

impl Report {
    pub(crate) fn new(title: impl Into<String>) -> Report {
        Report {
            title: title.into(),
            rows: Vec::new(),
        }
    }

    /// Records one number under its JSON key, with a human label for the table.
    pub(crate) fn add(&mut self, key: &'static str, label: &'static str, value: f64) {
        self.rows.push((key, label, value));
    }

    pub(crate) fn print(&self, json: bool) {
        if json {
            let map: serde_json::Map<String, serde_json::Value> = self
                .rows
                .iter()
                .map(|(key, _, v)| (key.to_string(), json_number(*v)))
                .collect();
            println!("{}", serde_json::Value::Object(map));
            return;
        }
        println!("{}", self.title);
        let width = self.rows.iter().map(|(_, l, _)| l.len()).max().unwrap_or(0);
        for (_, label, value) in &self.rows {
            println!("  {label:<width$}  {:>14}", format_number(*value));
        }
    }
}

/// Whole numbers as JSON integers, others rounded like the table.
fn json_number(v: f64) -> serde_json::Value {
    let v = round(v);
    if v.fract() == 0.0 && v.abs() < 9e15 {
        serde_json::json!(v as i64)
    } else {
        serde_json::json!(v)
    }
}

fn round(v: f64) -> f64 {
    if v.abs() >= 100.0 {
        v.round()
    } else {
        (v * 1000.0).round() / 1000.0
    }
}

fn format_number(v: f64) -> String {
    let v = round(v);
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// `nodes` simulated nodes as the benchmarks run them: 32 CPUs, 256 GiB and 110 pods each,
/// over three zones, leases renewed every 10 s.
pub(crate) fn simulated_nodes(nodes: usize) -> simulator::Options {
    simulator::Options {
        nodes,
        first_index: 0,
        name_prefix: "sim-".into(),
        cpu: "32".into(),
        memory: "256Gi".into(),
        pods: 110,
        extended: Vec::new(),
        zones: 3,
        labels: Vec::new(),
        taints: Vec::new(),
        lease_interval: std::time::Duration::from_secs(10),
    }
}

/// Whether `tool` is on PATH (or in /usr/sbin, which a root shell may lack).
pub(crate) fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        || std::path::Path::new("/usr/sbin").join(tool).is_file()
}

/// A loopback port nothing listens on just now (TCP; free for UDP too, most likely).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// This process's resident memory, in bytes.
pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Operations per second.
pub(crate) fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// The `q` quantile (0..=1) of `samples` in milliseconds (sorted in place).
pub(crate) fn quantile_ms(samples: &mut [Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let idx = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[idx].as_secs_f64() * 1000.0
}

/// Creates namespace `ns`'s `default` ServiceAccount, which the ServiceAccount admission step
/// needs before any pod, as the service account controller would (the API and scheduler
/// benchmarks run without controllers).
pub(crate) async fn default_account(client: &kube::Client, ns: &str) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), ns);
    let account = serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}}))?;
    match accounts.create(&Default::default(), &account).await {
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        other => other.map(drop).map_err(Into::into),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let mut s: Vec<_> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&mut s, 0.5), 51.0);
        assert_eq!(quantile_ms(&mut s, 0.99), 99.0);
        assert_eq!(quantile_ms(&mut s, 0.0), 1.0);
        assert_eq!(quantile_ms(&mut [], 0.5), 0.0);
    }

    #[test]
    fn numbers_are_rounded_for_people() {
        assert_eq!(format_number(12345.678), "12346");
        assert_eq!(format_number(1.23456), "1.235");
        assert_eq!(format_number(3.0), "3");
    }
}
