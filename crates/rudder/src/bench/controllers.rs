//! `rudder bench controllers`: how fast Deployments come up and roll out on simulated nodes.
//!
//! Starts a `rudder server` child (scheduler and controller manager inside), then in this
//! process `--nodes` simulated nodes. Measures, each from the API call to the state a
//! watch reports: a Deployment of `--replicas` pods until all are available; a new image
//! rolled out over them (default 25% surge and unavailability) until the rollout is
//! complete; `--deployments` Deployments of 10 replicas created at once until all are
//! available. Write amplification is the store revisions spent per pod during the first
//! step (pods, ReplicaSet and Deployment updates, events, leases included).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use super::Report;
use super::api::start_server;
use crate::cli::ControllersBench;

fn deployment(name: &str, replicas: usize) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
            },
        },
    }))?)
}

/// Whether the Deployment's rollout is complete with every replica available.
fn done(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(s) = &d.status else {
        return false;
    };
    s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && s.updated_replicas.unwrap_or(0) == want
        && s.replicas.unwrap_or(0) == want
        && s.available_replicas.unwrap_or(0) == want
}

/// Waits until every Deployment in `names` is [`done`]: seconds since `started`.
async fn until_done(api: &Api<Deployment>, names: &[String], started: Instant) -> Result<f64> {
    let mut events = watcher::watcher(api.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let mut finished = std::collections::HashSet::new();
    let wait = async {
        while let Some(d) = events.next().await {
            let d = d?;
            let name = d.metadata.name.clone().unwrap_or_default();
            if names.contains(&name) && done(&d) {
                finished.insert(name);
                if finished.len() == names.len() {
                    return anyhow::Ok(started.elapsed().as_secs_f64());
                }
            }
        }
        bail!("the deployment watch ended")
    };
    tokio::time::timeout(Duration::from_secs(600), wait)
        .await
        .context("the deployments did not finish within 10 minutes")?
}

/// The store's current revision, read from a fresh write.
async fn revision(client: &kube::Client) -> Result<i64> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"generateName": "bench-rv-"}}))?;
    let made = api.create(&PostParams::default(), &cm).await?;
    Ok(made
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

pub(crate) async fn run(opts: ControllersBench) -> Result<()> {
    let progress = |phase: &str| {
        if !opts.json {
            eprintln!("running: {phase}");
        }
    };
    let server = start_server(&["--disable-agent"]).await?;
    let client = crate::client::from_kubeconfig(&server.kubeconfig()).await?;
    progress("registering simulated nodes");
    let sim = super::simulated_nodes(opts.nodes);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let simulation = tokio::spawn(simulator::run(client.clone(), sim, async move {
        let mut rx = stopped;
        let _ = rx.changed().await;
    }));
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(300);
    while nodes.list(&ListParams::default()).await?.items.len() < opts.nodes {
        if Instant::now() > deadline || simulation.is_finished() {
            bail!("the simulated nodes did not all register");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut report = Report::new(format!(
        "Controller benchmark ({} simulated nodes)",
        opts.nodes
    ));

    progress("one big deployment");
    let before = revision(&client).await?;
    let started = Instant::now();
    api.create(&PostParams::default(), &deployment("big", opts.replicas)?)
        .await?;
    let available = until_done(&api, &["big".to_string()], started).await?;
    let after = revision(&client).await?;
    report.add(
        "available_s",
        "replicas created to available (s)",
        available,
    );
    report.add(
        "writes_per_pod",
        "store writes per pod created",
        (after - before) as f64 / opts.replicas.max(1) as f64,
    );

    progress("rolling update");
    let started = Instant::now();
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "registry.example/app:2.0"}]}}}});
    api.patch("big", &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    let rolled = until_done(&api, &["big".to_string()], started).await?;
    report.add("rollout_s", "rolling update complete (s)", rolled);
    api.delete("big", &Default::default()).await?;

    progress("many deployments");
    let names: Vec<String> = (0..opts.deployments).map(|i| format!("d{i:03}")).collect();
    let started = Instant::now();
    let creates = names.iter().map(|n| {
        let api = api.clone();
        let d = deployment(n, 10);
        async move {
            api.create(&PostParams::default(), &d?)
                .await
                .map_err(anyhow::Error::from)
        }
    });
    for r in futures::future::join_all(creates).await {
        r?;
    }
    let many = until_done(&api, &names, started).await?;
    report.add(
        "many_available_s",
        "deployments of 10 all available (s)",
        many,
    );
    report.add(
        "replicas",
        "replicas of the big deployment",
        opts.replicas as f64,
    );
    report.add("deployments", "deployments of 10", opts.deployments as f64);
    let _ = stop.send(true);
    let _ = simulation.await;
    report.print(opts.json);
    Ok(())
}
