//! The DaemonSet controller: one pod per eligible node, as upstream's `daemonset`
//! controller runs them.
//!
//! A node is eligible when it matches the template's `nodeSelector` and required node
//! affinity and its NoSchedule/NoExecute taints are tolerated, counting the tolerations every
//! daemon pod gets (not-ready and unreachable NoExecute, the pressure and unschedulable
//! NoSchedule taints, network-unavailable for host-network pods). Each pod is pinned to its
//! node by node affinity on `metadata.name` and placed by the scheduler. Pods on nodes no
//! longer eligible, extra pods, and failed pods are deleted. Each template is a
//! ControllerRevision (`<set>-<hash>`, the hash in the pods' `controller-revision-hash`
//! label); RollingUpdate replaces old pods within `maxUnavailable` (deleting first) or
//! `maxSurge` (the new pod first), OnDelete only when they are deleted. Status counts
//! desired, current, misscheduled, ready, updated, available and unavailable nodes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::events::{Recorder, Type, reference};
use crate::expectations::Expectations;
use crate::pod_control::PodControl;
use crate::pods;
use crate::runtime::{self, Informers, Result, Shared};

/// The pods' revision label.
const REVISION_HASH: &str = "controller-revision-hash";

struct Ctx {
    client: kube::Client,
    sets: Store<DaemonSet>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    expectations: Expectations,
    events: Recorder,
}

/// Starts the DaemonSet controller.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let sets = informers.store::<DaemonSet>();
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        sets: sets.clone(),
        pods: informers.store::<Pod>(),
        nodes: informers.store::<Node>(),
        revisions: informers.store::<ControllerRevision>(),
        expectations: Expectations::default(),
        events: shared.recorder("daemonset-controller"),
    });
    let all = sets.clone();
    let controller = Controller::for_stream(informers.subscribe::<DaemonSet>(), sets)
        .watches_stream(informers.subscribe::<Pod>(), |pod: Pod| {
            let ns = pod.namespace().unwrap_or_default();
            pods::controller_of(&pod.metadata)
                .filter(|c| c.kind == "DaemonSet")
                .map(|c| ObjectRef::new(&c.name).within(&ns))
        })
        // Any node change may change where daemons run.
        .watches_stream(informers.subscribe::<Node>(), move |_node: Node| {
            all.state()
                .iter()
                .map(|d| ObjectRef::from_obj(d.as_ref()))
                .collect::<Vec<_>>()
        });
    runtime::run("daemonset-controller", controller, shared, ctx, reconcile)
}

/// The tolerations every daemon pod gets (upstream's `AddOrUpdateDaemonPodTolerations`).
fn daemon_tolerations(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<Toleration> {
    let mut out = spec.tolerations.clone().unwrap_or_default();
    let mut add = |key: &str, effect: &str| {
        if !out
            .iter()
            .any(|t| t.key.as_deref() == Some(key) && t.effect.as_deref() == Some(effect))
        {
            out.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some(effect.into()),
                ..Default::default()
            });
        }
    };
    add("node.kubernetes.io/not-ready", "NoExecute");
    add("node.kubernetes.io/unreachable", "NoExecute");
    add("node.kubernetes.io/disk-pressure", "NoSchedule");
    add("node.kubernetes.io/memory-pressure", "NoSchedule");
    add("node.kubernetes.io/pid-pressure", "NoSchedule");
    add("node.kubernetes.io/unschedulable", "NoSchedule");
    if spec.host_network.unwrap_or(false) {
        add("node.kubernetes.io/network-unavailable", "NoSchedule");
    }
    out
}

/// Whether a daemon pod from `template` should run on `node`.
fn should_run(template: &PodTemplateSpec, node: &Node) -> bool {
    let Some(spec) = &template.spec else {
        return false;
    };
    let name = node.metadata.name.as_deref().unwrap_or("");
    if !pod::required_node_affinity_matches(spec, node.labels(), name) {
        return false;
    }
    let tolerations = daemon_tolerations(spec);
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|taint| pod::any_tolerates(&tolerations, taint))
}

/// The pod to create on `node`: the template, pinned to the node, with the daemon
/// tolerations and the revision labels.
fn pod_for(ds: &DaemonSet, template: &PodTemplateSpec, node: &str, hash: &str) -> Pod {
    let ns = ds.namespace().unwrap_or_default();
    let mut pod = pods::from_template(
        template,
        pods::controller_ref(ds),
        &ns,
        &format!("{}-", ds.name_any()),
    );
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(REVISION_HASH.into(), hash.into());
    labels.insert(
        "pod-template-generation".into(),
        ds.metadata.generation.unwrap_or(1).to_string(),
    );
    if let Some(spec) = pod.spec.as_mut() {
        spec.tolerations = Some(daemon_tolerations(spec));
        let affinity = spec.affinity.get_or_insert_with(Affinity::default);
        let node_affinity = affinity
            .node_affinity
            .get_or_insert_with(NodeAffinity::default);
        node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: None,
                match_fields: Some(vec![NodeSelectorRequirement {
                    key: "metadata.name".into(),
                    operator: "In".into(),
                    values: Some(vec![node.into()]),
                }]),
            }],
        });
    }
    pod
}

/// The node a daemon pod is meant for: its nodeName, or its pinned affinity's.
fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
}

fn max_unavailable_and_surge(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let ru = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let scaled = |v: Option<&IntOrString>, up: bool, default: i32| match v {
        None => default,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let p: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let x = p * i64::from(desired);
            (if up { (x + 99) / 100 } else { x / 100 }) as i32
        }
    };
    let surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), true, 0);
    let unavailable = scaled(ru.and_then(|r| r.max_unavailable.as_ref()), true, 1);
    if surge == 0 && unavailable == 0 {
        return (1, 0);
    }
    (unavailable, surge)
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action> {
    let Some(ds) = ctx.sets.get(&ObjectRef::from_obj(ds.as_ref())) else {
        return Ok(Action::await_change());
    };
    let ns = ds.namespace().unwrap_or_default();
    let key = pods::key(ds.meta());
    let Some(template) = ds.spec.as_ref().map(|s| s.template.clone()) else {
        return Ok(Action::await_change());
    };
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let in_ns: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let synced = ctx.expectations.satisfied_by(&key, &in_ns);
    let selector = ds.spec.as_ref().map(|s| s.selector.clone());
    let owner_ref = pods::controller_ref(ds.as_ref());
    let candidates: Vec<Arc<Pod>> = in_ns
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let mine = pods::claim(
        &pod_api,
        ds.meta(),
        &owner_ref,
        selector.as_ref(),
        candidates,
    )
    .await;
    let collisions = ds
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let hash = crate::deployment::template_hash(Some(&template), collisions);
    ensure_revision(&ctx, &ds, &template, &hash).await?;
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let now = jiff::Timestamp::now();
    let plan = plan(
        &ds,
        &template,
        &hash,
        &mine,
        &ctx.nodes.state(),
        min_ready,
        now,
    );
    if synced && ds.metadata.deletion_timestamp.is_none() {
        let control = PodControl::new(pod_api, ds.as_ref(), &ctx.events, &ctx.expectations);
        act(&ctx, &ds, &control, &template, &hash, &plan).await?;
    }
    let counts = &plan.counts;
    let status = status_of(&ds, counts, collisions);
    let old = serde_json::to_value(&ds.status).unwrap_or_default();
    if status != old {
        let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(
            &ds.name_any(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(runtime::status_patch(&old, &status)),
        )
        .await?;
    }
    if min_ready > 0 && counts.ready != counts.available {
        return Ok(Action::requeue(Duration::from_secs(min_ready as u64)));
    }
    Ok(Action::await_change())
}

/// What a sync does with a set's pods, and the counts its status reports.
#[derive(Default)]
struct Plan {
    /// Nodes to create a pod on.
    create: Vec<String>,
    /// Pods to delete.
    delete: Vec<Arc<Pod>>,
    /// Failed pods to delete (they are made again), with their node.
    failed: Vec<(Arc<Pod>, String)>,
    counts: Counts,
}

/// Decides node by node which of the set's pods `mine` go and which nodes get one: a node
/// that should run the set keeps the oldest pod of each revision (`hash` the current one),
/// failed pods are replaced, pods of other nodes go; then the rolling update of the nodes
/// running only old pods.
fn plan(
    ds: &DaemonSet,
    template: &PodTemplateSpec,
    hash: &str,
    mine: &[Arc<Pod>],
    nodes: &[Arc<Node>],
    min_ready: i32,
    now: jiff::Timestamp,
) -> Plan {
    // Pods by node.
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for p in mine {
        if let Some(n) = target_node(p) {
            by_node.entry(n).or_default().push(p.clone());
        }
    }
    let is_new = |p: &Pod| p.labels().get(REVISION_HASH).is_some_and(|h| h == hash);
    let mut plan = Plan::default();
    let (create, delete, counts) = (&mut plan.create, &mut plan.delete, &mut plan.counts);
    // Nodes whose only pods are old (for the rolling update).
    let mut old_only: Vec<(String, Vec<Arc<Pod>>)> = Vec::new();
    let mut unavailable_nodes = 0;
    for node in nodes {
        let name = node.name_any();
        let mut here = by_node.remove(&name).unwrap_or_default();
        let run = should_run(template, node);
        if !run {
            if !here.is_empty() {
                counts.misscheduled += 1;
                delete.extend(here);
            }
            continue;
        }
        counts.desired += 1;
        // Failed pods go, and are recreated.
        let (dead, alive): (Vec<_>, Vec<_>) =
            here.drain(..).partition(|p| pod::phase(p) == "Failed");
        for p in dead {
            plan.failed.push((p, name.clone()));
        }
        let mut alive = alive;
        if alive.is_empty() {
            create.push(name.clone());
            unavailable_nodes += 1;
            continue;
        }
        counts.current += 1;
        // Keep the oldest of each revision, delete the rest.
        alive.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let (new, old): (Vec<_>, Vec<_>) = alive.into_iter().partition(|p| is_new(p));
        let keep_new = new.first().cloned();
        delete.extend(new.into_iter().skip(1));
        let available_here = keep_new
            .as_ref()
            .is_some_and(|p| pods::is_available(p, min_ready, now))
            || old.iter().any(|p| pods::is_available(p, min_ready, now));
        if keep_new.as_ref().is_some_and(|p| pods::is_ready(p))
            || old.iter().any(|p| pods::is_ready(p))
        {
            counts.ready += 1;
        }
        if available_here {
            counts.available += 1;
        } else {
            unavailable_nodes += 1;
        }
        match keep_new {
            Some(p) => {
                counts.updated += 1;
                // The new pod is available: old ones on the node go.
                if pods::is_available(&p, min_ready, now) || old.len() > 1 {
                    delete.extend(old);
                }
            }
            None => old_only.push((name.clone(), old)),
        }
    }
    // Pods for nodes that no longer exist.
    for (_, pods) in by_node {
        delete.extend(pods);
    }
    // The rolling update of old-only nodes.
    let rolling = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    if rolling && !old_only.is_empty() {
        roll(ds, old_only, unavailable_nodes, min_ready, now, &mut plan);
    }
    plan
}

/// The rolling update of the nodes running only old pods (`old_only`), while
/// `unavailable_nodes` are unavailable: an unavailable old pod goes at once; an available
/// one gets a new pod beside it within `maxSurge`, else goes within `maxUnavailable`.
fn roll(
    ds: &DaemonSet,
    old_only: Vec<(String, Vec<Arc<Pod>>)>,
    unavailable_nodes: i32,
    min_ready: i32,
    now: jiff::Timestamp,
    plan: &mut Plan,
) {
    let (max_unavailable, max_surge) = max_unavailable_and_surge(ds, plan.counts.desired);
    let mut budget = max_unavailable - unavailable_nodes;
    let mut surge = max_surge;
    for (node, old) in old_only {
        let available = old.iter().any(|p| pods::is_available(p, min_ready, now));
        if !available {
            // An unavailable old pod costs nothing to replace.
            plan.delete.extend(old);
        } else if max_surge > 0 {
            if surge > 0 {
                plan.create.push(node);
                surge -= 1;
            }
        } else if budget > 0 {
            plan.delete.extend(old);
            budget -= 1;
        }
    }
}

/// Carries out `plan`: deletes the failed pods (with an event each) and the unwanted ones,
/// then creates the missing ones; the first error ends it.
async fn act(
    ctx: &Ctx,
    ds: &DaemonSet,
    control: &PodControl<'_>,
    template: &PodTemplateSpec,
    hash: &str,
    plan: &Plan,
) -> Result<()> {
    let ns = ds.namespace().unwrap_or_default();
    for (p, node) in &plan.failed {
        ctx.events
            .publish(
                &reference(ds),
                Type::Warning,
                "FailedDaemonPod",
                &format!(
                    "Found failed daemon pod {ns}/{} on node {node}, will try to kill it",
                    p.name_any()
                ),
            )
            .await;
        control.delete(p).await?;
    }
    for p in &plan.delete {
        control.delete(p).await?;
    }
    for node in &plan.create {
        control.create(&pod_for(ds, template, node, hash)).await?;
    }
    Ok(())
}

/// The status a sync writes: zero counts left out (but for the four upstream always
/// writes), and the collision count when there were collisions.
fn status_of(ds: &DaemonSet, counts: &Counts, collisions: i32) -> Value {
    let status = json!({
        "currentNumberScheduled": counts.current,
        "numberMisscheduled": counts.misscheduled,
        "desiredNumberScheduled": counts.desired,
        "numberReady": counts.ready,
        "observedGeneration": ds.metadata.generation.unwrap_or(0),
        "updatedNumberScheduled": counts.updated,
        "numberAvailable": counts.available,
        "numberUnavailable": (counts.desired - counts.available).max(0),
    });
    let mut status = status;
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| {
            v != &json!(0)
                || [
                    "currentNumberScheduled",
                    "numberMisscheduled",
                    "desiredNumberScheduled",
                    "numberReady",
                ]
                .contains(&k.as_str())
        });
    }
    if collisions > 0 {
        status["collisionCount"] = json!(collisions);
    }
    status
}

#[derive(Default)]
struct Counts {
    desired: i32,
    current: i32,
    misscheduled: i32,
    ready: i32,
    updated: i32,
    available: i32,
}

/// The ControllerRevision of the current template: created as `<set>-<hash>` with the next
/// revision number, or renumbered when an older template comes back (a rollback).
async fn ensure_revision(
    ctx: &Ctx,
    ds: &DaemonSet,
    template: &PodTemplateSpec,
    hash: &str,
) -> Result<()> {
    let ns = ds.namespace().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let owned: Vec<Arc<ControllerRevision>> = ctx
        .revisions
        .state()
        .into_iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|r| pods::controller_of(&r.metadata).is_some_and(|c| c.uid == uid))
        .collect();
    let max = owned.iter().map(|r| r.revision).max().unwrap_or(0);
    let name = format!("{}-{hash}", ds.name_any());
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(current) = owned.iter().find(|r| r.name_any() == name) {
        if current.revision < max {
            let mut bumped = (**current).clone();
            bumped.revision = max + 1;
            api.replace(&name, &PostParams::default(), &bumped).await?;
        }
        return Ok(());
    }
    let mut template_json = serde_json::to_value(template)?;
    template_json["$patch"] = Value::String("replace".into());
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_HASH.into(), hash.into());
    let revision = ControllerRevision {
        metadata: kube::api::ObjectMeta {
            name: Some(name),
            namespace: Some(ns),
            labels: Some(labels),
            annotations: ds
                .annotations()
                .get("kubernetes.io/change-cause")
                .map(|c| [("kubernetes.io/change-cause".to_string(), c.clone())].into()),
            owner_references: Some(vec![pods::controller_ref(ds)]),
            ..Default::default()
        },
        data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
            json!({"spec": {"template": template_json}}),
        )),
        revision: max + 1,
    };
    match api.create(&PostParams::default(), &revision).await {
        Ok(_) => Ok(()),
        // Already there (the cache is behind): fine.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(v: Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn template(v: Value) -> PodTemplateSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn daemons_run_where_selectors_and_taints_allow() {
        let t = template(json!({"spec": {"containers": [], "nodeSelector": {"role": "edge"}}}));
        let edge = node(json!({"metadata": {"name": "a", "labels": {"role": "edge"}}}));
        let core = node(json!({"metadata": {"name": "b", "labels": {"role": "core"}}}));
        assert!(should_run(&t, &edge));
        assert!(!should_run(&t, &core));
        // Cordoned and not-ready nodes still run daemons; a foreign taint keeps them out.
        let plain = template(json!({"spec": {"containers": []}}));
        let cordoned = node(
            json!({"metadata": {"name": "c"}, "spec": {"unschedulable": true,
            "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                       {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]}}),
        );
        assert!(should_run(&plain, &cordoned));
        let dedicated = node(json!({"metadata": {"name": "d"}, "spec": {
            "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}));
        assert!(!should_run(&plain, &dedicated));
        let by_name = template(
            json!({"spec": {"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}]}}}}}),
        );
        assert!(should_run(&by_name, &edge) && !should_run(&by_name, &core));
    }

    #[test]
    fn pods_are_pinned_to_their_node() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "kube-system", "uid": "u", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": []}}}
        }))
        .unwrap();
        let t = ds.spec.as_ref().unwrap().template.clone();
        let pod = pod_for(&ds, &t, "n1", "abc");
        assert_eq!(target_node(&pod).as_deref(), Some("n1"));
        assert_eq!(
            pod.labels().get(REVISION_HASH).map(String::as_str),
            Some("abc")
        );
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("agent-"));
        let tolerations = pod.spec.unwrap().tolerations.unwrap();
        assert!(
            tolerations
                .iter()
                .any(|t| t.key.as_deref() == Some("node.kubernetes.io/unreachable"))
        );
    }

    #[test]
    fn rolling_update_defaults_to_one_unavailable() {
        let ds: DaemonSet = serde_json::from_value(json!({"spec": {"selector": {},
            "template": {}, "updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": "10%", "maxSurge": 0}}}}))
        .unwrap();
        assert_eq!(max_unavailable_and_surge(&ds, 20), (2, 0));
        assert_eq!(max_unavailable_and_surge(&ds, 0), (1, 0));
    }
}
