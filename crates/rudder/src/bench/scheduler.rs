//! `rudder bench scheduler`: pods per second from creation to binding, on simulated nodes.
//!
//! Starts a `rudder server` child without its scheduler, then in this process: `--nodes`
//! simulated nodes over three zones (leases renewed every 10 s, as real agents do) and the
//! scheduler with the default profile. Two workloads of `--pods` pods each are created from
//! 32 clients and followed by a watch until every pod is bound: plain pods (100m CPU,
//! 128 MiB), then pods with a zone topology-spread constraint (maxSkew 1) and preferred
//! anti-affinity on the host, in groups of 50, like upstream's scheduler_perf. Each
//! scheduling attempt's duration (filter, score, assume) comes from the scheduler itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use super::api::{create_all, start_server};
use super::{Report, per_second, quantile_ms};
use crate::cli::SchedulerBench;

fn plain(i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("plain-{i:06}")},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
    }))
    .expect("encodes")
}

fn spread(i: usize) -> Vec<u8> {
    let group = format!("group-{}", i / 50);
    let selector = json!({"matchLabels": {"group": group}});
    serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("spread-{i:06}"), "labels": {"group": group}},
        "spec": {
            "containers": [{"name": "app", "image": "registry.example/app:1.0",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector}],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"labelSelector": selector,
                    "topologyKey": "kubernetes.io/hostname"}}]}},
        },
    }))
    .expect("encodes")
}

/// Creates `count` pods in namespace `ns` and waits until all are bound; pods/s end to end.
async fn workload(
    client: &kube::Client,
    clients: &[super::client::Client],
    ns: &str,
    count: usize,
    body: fn(usize) -> Vec<u8>,
) -> Result<f64> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
    namespaces
        .create(&PostParams::default(), &namespace)
        .await?;
    super::default_account(client, ns).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    let watch = tokio::spawn(async move {
        let mut bound = std::collections::HashSet::new();
        let mut events = watcher::watcher(pods, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(pod) = events.next().await {
            let pod = pod?;
            if pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some()
            {
                bound.insert(pod.metadata.name.unwrap_or_default());
                if bound.len() >= count {
                    return anyhow::Ok(());
                }
            }
        }
        bail!("the pod watch ended")
    });
    create_all(
        clients,
        &format!("/api/v1/namespaces/{ns}/pods"),
        count,
        body,
    )
    .await?;
    tokio::time::timeout(Duration::from_secs(1800), watch)
        .await
        .context("pods were not all bound within 30 minutes")???;
    Ok(per_second(count, started.elapsed()))
}

pub(crate) async fn run(opts: SchedulerBench) -> Result<()> {
    let progress = |phase: &str| {
        if !opts.json {
            eprintln!("running: {phase}");
        }
    };
    // The scheduler alone: the controllers would only add their own load.
    let server = start_server(&[
        "--disable-scheduler",
        "--disable-controller-manager",
        "--disable-agent",
    ])
    .await?;
    let client = crate::client::from_kubeconfig(&server.kubeconfig()).await?;

    progress("registering simulated nodes");
    let sim = super::simulated_nodes(opts.nodes);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop_signal = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.changed().await;
    };
    let simulation = tokio::spawn(simulator::run(
        client.clone(),
        sim,
        stop_signal(stopped.clone()),
    ));
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(600);
    while nodes
        .list(&ListParams::default().limit(1))
        .await?
        .items
        .is_empty()
        || nodes.list(&ListParams::default()).await?.items.len() < opts.nodes
    {
        if Instant::now() > deadline || simulation.is_finished() {
            bail!("the simulated nodes did not all register");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let scheduler = Arc::new(scheduler::scheduler::Scheduler::new(
        client.clone(),
        vec![scheduler::config::Profile::default_profile()],
        Default::default(),
    ));
    let serving = tokio::spawn(scheduler.clone().serve());
    let mut clients = Vec::new();
    for _ in 0..32 {
        clients.push(server.credentials.connect().await?);
    }
    let mut report = Report::new(format!(
        "Scheduler benchmark ({} simulated nodes, {} pods per workload)",
        opts.nodes, opts.pods
    ));

    progress("plain pods");
    let plain_rate = workload(&client, &clients, "bench-plain", opts.pods, plain).await?;
    let plain_attempts = scheduler.attempt_latencies();
    progress("spread pods");
    let spread_rate = workload(&client, &clients, "bench-spread", opts.pods, spread).await?;
    let all = scheduler.attempt_latencies();
    let spread_attempts = all[plain_attempts.len().min(all.len())..].to_vec();

    let ms = |v: &[f64], q: f64| {
        let mut d: Vec<Duration> = v
            .iter()
            .map(|m| Duration::from_secs_f64(m / 1000.0))
            .collect();
        quantile_ms(&mut d, q)
    };
    report.add(
        "plain_pods_per_s",
        "plain pods/s, created to bound",
        plain_rate,
    );
    report.add(
        "attempt_p50_ms",
        "attempt latency p50 (ms), plain",
        ms(&plain_attempts, 0.5),
    );
    report.add(
        "attempt_p99_ms",
        "attempt latency p99 (ms), plain",
        ms(&plain_attempts, 0.99),
    );
    report.add(
        "spread_pods_per_s",
        "spread+anti-affinity pods/s",
        spread_rate,
    );
    report.add(
        "spread_attempt_p99_ms",
        "attempt latency p99 (ms), spread",
        ms(&spread_attempts, 0.99),
    );
    report.add("nodes", "simulated nodes", opts.nodes as f64);
    // Quiet down before the server goes: no binding in flight, no watch left.
    serving.abort();
    let _ = serving.await;
    scheduler.bindings_settled().await;
    let _ = stop.send(true);
    let _ = simulation.await;
    report.print(opts.json);
    Ok(())
}
