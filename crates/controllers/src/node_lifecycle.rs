//! Node health, as upstream's `node-lifecycle` and `taint-eviction` controllers keep it.
//!
//! - A node whose heartbeat (its Lease in `kube-node-lease`, or its Ready condition's
//!   `lastHeartbeatTime`) has not moved for the grace period (50 s) gets its Ready,
//!   MemoryPressure, DiskPressure and PIDPressure conditions set to Unknown
//!   (`NodeStatusUnknown`, "Kubelet stopped posting node status.").
//! - Conditions become taints: `node.kubernetes.io/not-ready` (Ready False) and
//!   `node.kubernetes.io/unreachable` (Ready Unknown) with the NoExecute effect, and the
//!   NoSchedule taints of upstream's TaintNodesByCondition (not-ready, unreachable,
//!   memory-pressure, disk-pressure, pid-pressure, network-unavailable, and unschedulable for
//!   cordoned nodes).
//! - NoExecute taints are added at most one node per ten seconds per zone. A zone where more
//!   than 55% of at least three nodes are unhealthy is partially disrupted: small clusters
//!   (50 nodes or fewer) stop adding them there, large ones slow to one per 100 s. When every
//!   node of every zone is unhealthy the fault is more likely the control plane's own
//!   network: no NoExecute taint is added and those present are removed.
//! - Taint eviction: a pod on a node with a NoExecute taint it does not tolerate is deleted
//!   at once; one that tolerates it for `tolerationSeconds` is deleted that long after the
//!   taint was added (the DefaultTolerationSeconds admission step gives pods 300 s). The pod
//!   gets the DisruptionTarget condition and a TaintManagerEviction event first.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::Store;
use serde_json::json;

use crate::events::{Recorder, Type, reference};
use crate::runtime::{self, Informers, Result, Shared};

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The NoSchedule taints that follow conditions, with the condition and status they follow.
const CONDITION_TAINTS: &[(&str, &str, &str)] = &[
    ("Ready", "False", NOT_READY),
    ("Ready", "Unknown", UNREACHABLE),
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
];
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// Conditions set to Unknown when the heartbeat stops.
const WATCHED_CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
/// NoExecute taints added per second and zone, normally and in a partially disrupted large
/// zone.
const EVICTION_QPS: f64 = 0.1;
const SECONDARY_QPS: f64 = 0.01;
/// Clusters bigger than this keep tainting (slowly) in partially disrupted zones.
const LARGE_CLUSTER: usize = 50;
const UNHEALTHY_ZONE_THRESHOLD: f64 = 0.55;

/// A zone's rate limiter: one token, refilled at the zone's rate.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, qps: f64, now: Instant) -> bool {
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * qps).min(1.0);
        self.at = now;
        if qps > 0.0 && self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        false
    }
}

struct Ctx {
    client: kube::Client,
    nodes: Store<Node>,
    leases: Store<Lease>,
    grace: Duration,
    /// Per node: the last heartbeat seen and when this controller saw it change (its own
    /// clock, so clock skew does not matter).
    heartbeats: Mutex<HashMap<String, (String, Instant)>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    events: Recorder,
}

/// Starts the node-lifecycle controller.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        nodes: informers.store::<Node>(),
        leases: informers.store::<Lease>(),
        grace: shared.options.node_monitor_grace_period,
        heartbeats: Mutex::new(HashMap::new()),
        buckets: Mutex::new(HashMap::new()),
        events: shared.recorder("node-controller"),
    });
    runtime::periodic(
        "node-lifecycle-controller",
        shared,
        Duration::from_secs(1),
        ctx,
        monitor,
    )
}

/// Starts the taint-eviction controller.
pub(crate) fn start_eviction(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let ctx = Arc::new(Eviction {
        client: shared.client.clone(),
        nodes: informers.store::<Node>(),
        pods: informers.store::<Pod>(),
        events: shared.recorder("taint-eviction-controller"),
    });
    runtime::periodic(
        "taint-eviction-controller",
        shared,
        Duration::from_millis(500),
        ctx,
        evict,
    )
}

fn condition<'a>(node: &'a Node, ty: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
}

fn zone(node: &Node) -> String {
    node.labels()
        .get("topology.kubernetes.io/zone")
        .cloned()
        .unwrap_or_default()
}

/// How a zone fares (upstream's zone states).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

fn zone_state(ready: usize, not_ready: usize) -> ZoneState {
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2
        && not_ready as f64 / (ready + not_ready) as f64 >= UNHEALTHY_ZONE_THRESHOLD
    {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// The taints `node` should carry given its conditions: the controller's keys only, with
/// their effect. `no_execute` says whether NoExecute taints may be there at all.
fn wanted_taints(node: &Node, no_execute: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (ty, status, key) in CONDITION_TAINTS {
        if condition(node, ty).is_some_and(|c| c.status == *status) {
            out.push((key.to_string(), "NoSchedule".to_string()));
        }
    }
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        out.push((UNSCHEDULABLE.to_string(), "NoSchedule".to_string()));
    }
    if no_execute {
        match condition(node, "Ready").map(|c| c.status.as_str()) {
            Some("False") => out.push((NOT_READY.to_string(), "NoExecute".to_string())),
            Some("Unknown") => out.push((UNREACHABLE.to_string(), "NoExecute".to_string())),
            _ => {}
        }
    }
    out
}

fn managed(t: &Taint) -> bool {
    t.key == UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == t.key)
}

async fn monitor(ctx: Arc<Ctx>) -> Result<()> {
    let now = Instant::now();
    let nodes = ctx.nodes.state();
    let api: Api<Node> = Api::all(ctx.client.clone());
    // 1. Heartbeats: stale nodes become Unknown.
    let mut current: Vec<Node> = Vec::with_capacity(nodes.len());
    for node in nodes {
        let name = node.name_any();
        let lease = ctx
            .leases
            .get(&kube::runtime::reflector::ObjectRef::new(&name).within("kube-node-lease"));
        let beat = format!(
            "{:?}|{:?}",
            lease
                .as_ref()
                .and_then(|l| l.spec.as_ref()?.renew_time.clone()),
            condition(&node, "Ready").and_then(|c| c.last_heartbeat_time.clone())
        );
        let stale = {
            let mut seen = ctx.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
            let entry = seen
                .entry(name.clone())
                .or_insert_with(|| (beat.clone(), now));
            if entry.0 != beat {
                *entry = (beat, now);
            }
            now.duration_since(entry.1) > ctx.grace
        };
        let mut node = (*node).clone();
        let unknown = WATCHED_CONDITIONS
            .iter()
            .all(|ty| condition(&node, ty).is_some_and(|c| c.status == "Unknown"));
        if stale && !unknown {
            mark_unknown(&mut node);
            match api
                .replace_status(&name, &PostParams::default(), &node)
                .await
            {
                Ok(written) => {
                    tracing::info!("node {name}: no heartbeat for {:?}, now Unknown", ctx.grace);
                    ctx.events
                        .publish(
                            &reference(&written),
                            Type::Normal,
                            "NodeNotReady",
                            &format!("Node {name} status is now: NodeNotReady"),
                        )
                        .await;
                    node = written;
                }
                Err(e) => tracing::debug!("marking node {name} Unknown: {e}"),
            }
        }
        current.push(node);
    }
    {
        let mut seen = ctx.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|n, _| current.iter().any(|node| node.name_any() == *n));
    }
    // 2. Zones.
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for node in &current {
        let ready = condition(node, "Ready").is_some_and(|c| c.status == "True");
        let e = counts.entry(zone(node)).or_default();
        if ready {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    let states: BTreeMap<String, ZoneState> = counts
        .iter()
        .map(|(z, (r, n))| (z.clone(), zone_state(*r, *n)))
        .collect();
    let all_down = !states.is_empty() && states.values().all(|s| *s == ZoneState::FullDisruption);
    // 3. Taints.
    for node in current {
        let name = node.name_any();
        let existing: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let mut wanted = wanted_taints(&node, !all_down);
        // A new NoExecute taint waits for its zone's turn.
        let is_new = |(k, e): &(String, String)| {
            e == "NoExecute" && !existing.iter().any(|t| t.key == *k && t.effect == *e)
        };
        if wanted.iter().any(is_new) {
            let state = states
                .get(&zone(&node))
                .copied()
                .unwrap_or(ZoneState::Normal);
            let qps = match state {
                ZoneState::PartialDisruption if ctx.nodes.state().len() > LARGE_CLUSTER => {
                    SECONDARY_QPS
                }
                ZoneState::PartialDisruption => 0.0,
                _ => EVICTION_QPS,
            };
            let allowed = {
                let mut buckets = ctx.buckets.lock().unwrap_or_else(|e| e.into_inner());
                buckets
                    .entry(zone(&node))
                    .or_insert(Bucket {
                        tokens: 1.0,
                        at: now,
                    })
                    .take(qps, now)
            };
            if !allowed {
                wanted.retain(|w| !is_new(w));
            }
        }
        let mut taints: Vec<Taint> = existing.iter().filter(|t| !managed(t)).cloned().collect();
        for (key, effect) in &wanted {
            let kept = existing
                .iter()
                .find(|t| t.key == *key && t.effect == *effect)
                .cloned();
            taints.push(kept.unwrap_or_else(|| Taint {
                key: key.clone(),
                effect: effect.clone(),
                value: None,
                time_added: Some(Time(jiff::Timestamp::now())),
            }));
        }
        if taints == existing {
            continue;
        }
        let mut updated = node.clone();
        updated.spec.get_or_insert_with(Default::default).taints =
            (!taints.is_empty()).then_some(taints);
        // Carries the resourceVersion read: a node changed meanwhile is tried next tick.
        if let Err(e) = api.replace(&name, &PostParams::default(), &updated).await {
            tracing::debug!("tainting node {name}: {e}");
        }
    }
    Ok(())
}

/// Sets the watched conditions to Unknown, as a stopped kubelet leaves them.
fn mark_unknown(node: &mut Node) {
    let now = Time(jiff::Timestamp::now());
    let status = node.status.get_or_insert_with(Default::default);
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    for ty in WATCHED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == *ty) {
            Some(c) => {
                if c.status != "Unknown" {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(now.clone());
                }
            }
            None => conditions.push(NodeCondition {
                type_: ty.to_string(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_transition_time: Some(now.clone()),
                last_heartbeat_time: None,
            }),
        }
    }
}

struct Eviction {
    client: kube::Client,
    nodes: Store<Node>,
    pods: Store<Pod>,
    events: Recorder,
}

/// When a pod with `tolerations` must leave a node with these NoExecute `taints`: `Some(0)`
/// at once (a taint not tolerated), `Some(n)` after n seconds from the newest taint, `None`
/// never (upstream's `getMinTolerationTime`).
fn eviction_delay(tolerations: &[Toleration], taints: &[&Taint]) -> Option<i64> {
    let mut min: Option<i64> = None;
    for taint in taints {
        let used: Vec<&Toleration> = tolerations
            .iter()
            .filter(|t| pod::tolerates(t, taint))
            .collect();
        if used.is_empty() {
            return Some(0);
        }
        for t in used {
            if let Some(s) = t.toleration_seconds {
                let s = s.max(0);
                min = Some(min.map_or(s, |m| m.min(s)));
            }
        }
    }
    min
}

async fn evict(ctx: Arc<Eviction>) -> Result<()> {
    let tainted: HashMap<String, Vec<Taint>> = ctx
        .nodes
        .state()
        .iter()
        .filter_map(|n| {
            let taints: Vec<Taint> = n
                .spec
                .as_ref()?
                .taints
                .as_ref()?
                .iter()
                .filter(|t| t.effect == "NoExecute")
                .cloned()
                .collect();
            (!taints.is_empty()).then(|| (n.name_any(), taints))
        })
        .collect();
    if tainted.is_empty() {
        return Ok(());
    }
    let now = jiff::Timestamp::now();
    for pod in ctx.pods.state() {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        let Some(taints) = tainted.get(node) else {
            continue;
        };
        if !pod::is_active(&pod) {
            continue;
        }
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        let refs: Vec<&Taint> = taints.iter().collect();
        let Some(delay) = eviction_delay(&tolerations, &refs) else {
            continue;
        };
        let since = taints
            .iter()
            .filter_map(|t| t.time_added.as_ref().map(|t| t.0))
            .max()
            .unwrap_or(now);
        if since + jiff::SignedDuration::from_secs(delay) > now {
            continue;
        }
        delete(&ctx, &pod).await;
    }
    Ok(())
}

async fn delete(ctx: &Eviction, pod: &Pod) {
    let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    ctx.events
        .publish(
            &reference(pod),
            Type::Normal,
            "TaintManagerEviction",
            &format!("Marking for deletion Pod {ns}/{name}"),
        )
        .await;
    let condition = json!({"status": {"conditions": [{
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "DeletionByTaintManager",
        "message": "Taint manager: deleting due to NoExecute taint",
        "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    }]}});
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(condition))
        .await
    {
        tracing::debug!("marking {ns}/{name} for eviction: {e}");
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => tracing::info!("evicted {ns}/{name} from a NoExecute-tainted node"),
        Err(e) => tracing::debug!("evicting {ns}/{name}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn conditions_become_taints() {
        let n = node(
            json!({"spec": {"unschedulable": true}, "status": {"conditions": [
            {"type": "Ready", "status": "Unknown"},
            {"type": "MemoryPressure", "status": "True"}]}}),
        );
        let want = wanted_taints(&n, true);
        assert!(want.contains(&(UNREACHABLE.into(), "NoExecute".into())));
        assert!(want.contains(&(UNREACHABLE.into(), "NoSchedule".into())));
        assert!(want.contains(&(
            "node.kubernetes.io/memory-pressure".into(),
            "NoSchedule".into()
        )));
        assert!(want.contains(&(UNSCHEDULABLE.into(), "NoSchedule".into())));
        assert!(
            !wanted_taints(&n, false)
                .iter()
                .any(|(_, e)| e == "NoExecute")
        );
    }

    #[test]
    fn zones_are_disrupted_by_share_and_size() {
        assert_eq!(zone_state(3, 0), ZoneState::Normal);
        assert_eq!(zone_state(0, 2), ZoneState::FullDisruption);
        assert_eq!(zone_state(1, 2), ZoneState::Normal, "too few to tell");
        assert_eq!(zone_state(2, 3), ZoneState::PartialDisruption);
    }

    #[test]
    fn buckets_let_one_through_then_refill_at_their_rate() {
        let start = Instant::now();
        let mut b = Bucket {
            tokens: 1.0,
            at: start,
        };
        assert!(b.take(0.1, start));
        assert!(!b.take(0.1, start + Duration::from_secs(5)));
        assert!(b.take(0.1, start + Duration::from_secs(11)));
        assert!(!b.take(0.0, start + Duration::from_secs(100)));
    }

    #[test]
    fn tolerations_delay_or_prevent_eviction() {
        let taint = Taint {
            key: UNREACHABLE.into(),
            effect: "NoExecute".into(),
            ..Default::default()
        };
        let t = |v: serde_json::Value| -> Vec<Toleration> { serde_json::from_value(v).unwrap() };
        assert_eq!(eviction_delay(&[], &[&taint]), Some(0));
        assert_eq!(
            eviction_delay(
                &t(
                    json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                          {"operator": "Exists", "tolerationSeconds": 30}])
                ),
                &[&taint]
            ),
            Some(30)
        );
        assert_eq!(
            eviction_delay(&t(json!([{"operator": "Exists"}])), &[&taint]),
            None
        );
    }
}
