//! Pod garbage collection, as upstream's `pod-garbage-collector` controller does it, every
//! 20 seconds:
//!
//! - finished pods (Succeeded, Failed) beyond `--terminated-pod-gc-threshold` (12,500) are
//!   deleted, the oldest first;
//! - pods bound to a node that no longer exists (still missing 40 s after it was first
//!   missed, and confirmed by asking the API server) are force-deleted, with the
//!   DisruptionTarget condition (`DeletionByPodGC`);
//! - pods being deleted that were never scheduled, and those on a NotReady node carrying the
//!   `node.kubernetes.io/out-of-service` taint, are force-deleted.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use crate::runtime::{self, Informers, Result, Shared};

/// How long a node must stay missing before its pods are collected.
const QUARANTINE: Duration = Duration::from_secs(40);
/// How often the collector looks.
const PERIOD: Duration = Duration::from_secs(20);

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    threshold: usize,
    /// Nodes found missing, and since when.
    missing: Mutex<HashMap<String, Instant>>,
}

/// Starts the pod garbage collector.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        pods: informers.store::<Pod>(),
        nodes: informers.store::<Node>(),
        threshold: shared.options.terminated_pod_gc_threshold,
        missing: Mutex::new(HashMap::new()),
    });
    runtime::periodic(
        "pod-garbage-collector-controller",
        shared,
        PERIOD,
        ctx,
        collect,
    )
}

/// The finished pods to delete to get down to `threshold`: the oldest.
fn over_threshold(all: &[Arc<Pod>], threshold: usize) -> Vec<Arc<Pod>> {
    let mut finished: Vec<Arc<Pod>> = all
        .iter()
        .filter(|p| pod::is_terminal(p))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .cloned()
        .collect();
    if finished.len() <= threshold {
        return Vec::new();
    }
    finished.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let excess = finished.len() - threshold;
    finished.truncate(excess);
    finished
}

fn out_of_service(node: &Node) -> bool {
    let not_ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status != "True");
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| {
            ts.iter()
                .any(|t| t.key == "node.kubernetes.io/out-of-service" && t.effect == "NoExecute")
        });
    not_ready && tainted
}

async fn collect(ctx: Arc<Ctx>) -> Result<()> {
    let all = ctx.pods.state();
    if ctx.threshold > 0 {
        for pod in over_threshold(&all, ctx.threshold) {
            delete(&ctx, &pod, None).await;
        }
    }
    // Nodes gone: quarantined first, then confirmed with the API server.
    let now = Instant::now();
    let wanted: HashSet<String> = all
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .filter(|n| !n.is_empty())
        .collect();
    let mut gone: HashSet<String> = HashSet::new();
    {
        let mut missing = ctx.missing.lock().unwrap_or_else(|e| e.into_inner());
        missing.retain(|n, _| wanted.contains(n));
        for name in &wanted {
            if ctx.nodes.get(&ObjectRef::new(name)).is_some() {
                missing.remove(name);
                continue;
            }
            let since = *missing.entry(name.clone()).or_insert(now);
            if now.duration_since(since) >= QUARANTINE {
                gone.insert(name.clone());
            }
        }
    }
    let api: Api<Node> = Api::all(ctx.client.clone());
    let mut confirmed: HashSet<String> = HashSet::new();
    for name in gone {
        if let Ok(None) = api.get_opt(&name).await {
            confirmed.insert(name);
        }
    }
    for pod in &all {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        if !node.is_empty() && confirmed.contains(&node) {
            delete(&ctx, pod, Some("PodGC: node no longer exists")).await;
        } else if node.is_empty() && pod.metadata.deletion_timestamp.is_some() {
            delete(&ctx, pod, None).await;
        } else if pod.metadata.deletion_timestamp.is_some()
            && ctx
                .nodes
                .get(&ObjectRef::new(&node))
                .is_some_and(|n| out_of_service(&n))
        {
            delete(&ctx, pod, Some("PodGC: node is out of service")).await;
        }
    }
    Ok(())
}

/// Deletes `pod`: force-deleted (grace 0) with the DisruptionTarget condition when `why` is
/// given, a plain deletion otherwise.
async fn delete(ctx: &Ctx, pod: &Pod, why: Option<&str>) {
    let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(message) = why {
        let condition = json!({"status": {"conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByPodGC",
            "message": message,
            "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }]}});
        let _ = api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(condition))
            .await;
    }
    let force = why.is_some() || pod.metadata.deletion_timestamp.is_some();
    let params = DeleteParams {
        grace_period_seconds: force.then_some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => tracing::info!("pod GC deleted {ns}/{name}"),
        Err(e) => tracing::debug!("pod GC deleting {ns}/{name}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, phase: &str, created: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "creationTimestamp": created},
                "status": {"phase": phase}}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn the_oldest_finished_pods_go_beyond_the_threshold() {
        let all = vec![
            pod("new-done", "Succeeded", "2026-01-03T00:00:00Z"),
            pod("running", "Running", "2026-01-01T00:00:00Z"),
            pod("old-failed", "Failed", "2026-01-01T00:00:00Z"),
            pod("mid-done", "Succeeded", "2026-01-02T00:00:00Z"),
        ];
        let names: Vec<String> = over_threshold(&all, 1)
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(names, ["old-failed", "mid-done"]);
        assert!(over_threshold(&all, 3).is_empty());
    }
}
