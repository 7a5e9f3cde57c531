//! The kubelet's `/stats/summary` document (the shape metrics-server reads): the node's and
//! each running pod's and container's CPU and memory, from cgroups.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::pods::Ctx;

fn cpu_memory(u: runtime::cgroups::Usage, time: &str) -> (Value, Value) {
    (
        json!({"time": time, "usageCoreNanoSeconds": u.cpu_nanos}),
        json!({"time": time, "workingSetBytes": u.working_set_bytes}),
    )
}

/// The node's CPU time (all cpus, from /proc/stat) and memory in use (MemTotal - MemAvailable).
fn node_usage() -> runtime::cgroups::Usage {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .map(|l| {
            l.split_whitespace()
                .take(3)
                .chain(l.split_whitespace().skip(5).take(3))
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |key: &str| {
        meminfo
            .lines()
            .find_map(|l| {
                l.strip_prefix(key)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    runtime::cgroups::Usage {
        // USER_HZ is 100 on Linux.
        cpu_nanos: ticks * 10_000_000,
        working_set_bytes: kib("MemTotal:").saturating_sub(kib("MemAvailable:")) * 1024,
    }
}

/// The summary, now.
pub(crate) fn summary(ctx: &Ctx) -> Value {
    let time = jiff::Timestamp::now().to_string();
    let running = ctx
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut pods: BTreeMap<(String, String, String), Vec<(String, runtime::cgroups::Usage)>> =
        BTreeMap::new();
    for ((ns, pod, container), c) in running {
        let usage = runtime::cgroups::usage(&c.cgroup);
        pods.entry((ns, pod, c.uid))
            .or_default()
            .push((container, usage));
    }
    let pods: Vec<Value> = pods
        .into_iter()
        .map(|((ns, name, uid), containers)| {
            let total = containers
                .iter()
                .fold(runtime::cgroups::Usage::default(), |a, (_, u)| {
                    runtime::cgroups::Usage {
                        cpu_nanos: a.cpu_nanos + u.cpu_nanos,
                        working_set_bytes: a.working_set_bytes + u.working_set_bytes,
                    }
                });
            let (cpu, memory) = cpu_memory(total, &time);
            let containers: Vec<Value> = containers
                .into_iter()
                .map(|(c, u)| {
                    let (cpu, memory) = cpu_memory(u, &time);
                    json!({"name": c, "cpu": cpu, "memory": memory})
                })
                .collect();
            json!({"podRef": {"name": name, "namespace": ns, "uid": uid},
                "cpu": cpu, "memory": memory, "containers": containers})
        })
        .collect();
    let (cpu, memory) = cpu_memory(node_usage(), &time);
    json!({
        "node": {"nodeName": ctx.config.node_name, "cpu": cpu, "memory": memory},
        "pods": pods,
    })
}
