//! The ReplicaSet and ReplicationController controllers: keep `spec.replicas` pods from the
//! template running, as upstream's `replicaset` and `replicationcontroller` controllers do.
//!
//! Each sync claims the pods the owner's selector matches (adopting orphans, releasing pods
//! it no longer selects), then creates the missing pods in slow-start batches (1, 2, 4, ...,
//! at most 500 per sync) or deletes the surplus, the least valuable first: unscheduled before
//! scheduled, pending before running, not ready before ready, lower
//! `controller.kubernetes.io/pod-deletion-cost` first, more pods of the same owner on the node
//! first, ready more recently first, more restarts first, newer first. It waits until the
//! cache shows its previous creations and deletions before acting again
//! ([`crate::expectations`]), and reports replicas, fullyLabeledReplicas, readyReplicas,
//! availableReplicas (ready for `minReadySeconds`), observedGeneration and the
//! ReplicaFailure condition in status.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::events::Recorder;
use crate::expectations::Expectations;
use crate::pod_control::{PodControl, error_message};
use crate::pods;
use crate::runtime::{self, Informers, Result, Shared, Watched};

/// The most pods created or deleted in one sync (upstream's `burstReplicas`).
const BURST: usize = 500;

/// What the controller needs of a ReplicaSet or a ReplicationController.
pub(crate) trait Replicated: Watched {
    /// The controller's name.
    const NAME: &'static str;
    /// Its events' component.
    const COMPONENT: &'static str;
    /// The pod selector.
    fn selector(&self) -> Option<LabelSelector>;
    /// `spec.replicas` (1 when unset).
    fn replicas(&self) -> i32;
    /// `spec.minReadySeconds`.
    fn min_ready_seconds(&self) -> i32;
    /// `spec.template`.
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// `status` as JSON.
    fn status_json(&self) -> Value;
}

impl Replicated for ReplicaSet {
    const NAME: &'static str = "replicaset-controller";
    const COMPONENT: &'static str = "replicaset-controller";
    fn selector(&self) -> Option<LabelSelector> {
        self.spec.as_ref().map(|s| s.selector.clone())
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn status_json(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or_default()
    }
}

impl Replicated for ReplicationController {
    const NAME: &'static str = "replicationcontroller-controller";
    const COMPONENT: &'static str = "replication-controller";
    fn selector(&self) -> Option<LabelSelector> {
        let spec = self.spec.as_ref()?;
        let labels = spec
            .selector
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| spec.template.as_ref()?.metadata.as_ref()?.labels.clone())?;
        Some(LabelSelector {
            match_labels: Some(labels),
            match_expressions: None,
        })
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn status_json(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or_default()
    }
}

struct Ctx<K: Watched> {
    client: kube::Client,
    owners: Store<K>,
    pods: Store<Pod>,
    expectations: Expectations,
    events: Recorder,
}

/// Starts the ReplicaSet controller.
pub(crate) fn start_replicasets(
    shared: &Shared,
    informers: &mut Informers,
) -> BoxFuture<'static, ()> {
    start::<ReplicaSet>(shared, informers)
}

/// Starts the ReplicationController controller.
pub(crate) fn start_replication_controllers(
    shared: &Shared,
    informers: &mut Informers,
) -> BoxFuture<'static, ()> {
    start::<ReplicationController>(shared, informers)
}

fn start<K>(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()>
where
    K: Replicated + Resource<Scope = kube::core::NamespaceResourceScope>,
{
    let owners = informers.store::<K>();
    let pods = informers.store::<Pod>();
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        owners: owners.clone(),
        pods,
        expectations: Expectations::default(),
        events: shared.recorder(K::COMPONENT),
    });
    let lookup = owners.clone();
    let controller = Controller::for_stream(informers.subscribe::<K>(), owners)
        .watches_stream(informers.subscribe::<Pod>(), move |pod: Pod| {
            owners_of(&lookup, &pod)
        });
    runtime::run(K::NAME, controller, shared, ctx, reconcile::<K>)
}

/// The owners a pod change concerns: its controller if it is one of ours, else every owner
/// in its namespace whose selector matches it (it may be adopted).
fn owners_of<K: Replicated>(owners: &Store<K>, pod: &Pod) -> Vec<ObjectRef<K>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(c) = pods::controller_of(&pod.metadata) {
        if c.kind == K::kind(&()) {
            return vec![ObjectRef::new(&c.name).within(&ns)];
        }
        return Vec::new();
    }
    let labels = pod.labels();
    owners
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
        .filter(|o| pods::selects(o.selector().as_ref(), labels))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

async fn reconcile<K>(owner: Arc<K>, ctx: Arc<Ctx<K>>) -> Result<Action>
where
    K: Replicated + Resource<Scope = kube::core::NamespaceResourceScope>,
{
    let ns = owner.namespace().unwrap_or_default();
    let key = pods::key(owner.meta());
    // Act on the newest copy the cache has.
    let Some(owner) = ctx.owners.get(&ObjectRef::from_obj(owner.as_ref())) else {
        ctx.expectations.forget(&key);
        return Ok(Action::await_change());
    };
    let in_ns: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let synced = ctx.expectations.satisfied_by(&key, &in_ns);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let owner_ref = pods::controller_ref(owner.as_ref());
    let selector = owner.selector();
    // Candidates: active pods (finished ones are neither counted nor adopted).
    let candidates: Vec<Arc<Pod>> = in_ns.into_iter().filter(|p| pod::is_active(p)).collect();
    let mine = pods::claim(
        &api,
        owner.meta(),
        &owner_ref,
        selector.as_ref(),
        candidates,
    )
    .await;
    let mut failure: Option<(String, String)> = None;
    if synced && owner.meta().deletion_timestamp.is_none() {
        failure = manage(&ctx, owner.as_ref(), &api, &mine).await;
    }
    let status = status_of(owner.as_ref(), &mine, failure, jiff::Timestamp::now());
    if status != owner.status_json() {
        let owners: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
        owners
            .patch_status(
                &owner.name_any(),
                &PatchParams::default(),
                &Patch::Merge(runtime::status_patch(&owner.status_json(), &status)),
            )
            .await?;
    }
    // Pods ready but not yet available become available after minReadySeconds.
    let min_ready = owner.min_ready_seconds();
    if min_ready > 0 && status["readyReplicas"] != status["availableReplicas"] {
        return Ok(Action::requeue(Duration::from_secs(min_ready as u64)));
    }
    Ok(Action::await_change())
}

/// Creates or deletes pods towards `spec.replicas`; returns the failure to report, if any
/// (condition reason and message).
async fn manage<K: Replicated>(
    ctx: &Ctx<K>,
    owner: &K,
    api: &Api<Pod>,
    mine: &[Arc<Pod>],
) -> Option<(String, String)> {
    let want = owner.replicas().max(0) as usize;
    let have = mine.len();
    let control = PodControl::new(api.clone(), owner, &ctx.events, &ctx.expectations);
    if have < want {
        let template = owner.template()?;
        let prefix = format!("{}-", owner.name_any());
        let ns = owner.namespace().unwrap_or_default();
        let pod = pods::from_template(template, pods::controller_ref(owner), &ns, &prefix);
        let mut left = (want - have).min(BURST);
        let mut batch = 1;
        while left > 0 {
            let n = batch.min(left);
            let created = futures::future::join_all((0..n).map(|_| control.create(&pod))).await;
            if let Some(e) = created.into_iter().filter_map(|r| r.err()).last() {
                return Some(("FailedCreate".into(), error_message(&e)));
            }
            left -= n;
            batch *= 2;
        }
    } else if have > want {
        let doomed = to_delete(mine, have - want);
        for pod in doomed.into_iter().take(BURST) {
            if let Err(e) = control.delete(&pod).await {
                return Some(("FailedDelete".into(), error_message(&e)));
            }
        }
    }
    None
}

/// The `n` pods to delete first, by upstream's ranking (see the module doc).
fn to_delete(mine: &[Arc<Pod>], n: usize) -> Vec<Arc<Pod>> {
    let mut per_node: HashMap<&str, i64> = HashMap::new();
    for p in mine {
        if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let phase_rank = |p: &Pod| match pod::phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    };
    let cost = |p: &Pod| {
        p.annotations()
            .get("controller.kubernetes.io/pod-deletion-cost")
            .and_then(|c| c.parse::<i32>().ok())
            .unwrap_or(0)
    };
    let restarts = |p: &Pod| -> i32 {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).sum())
            .unwrap_or(0)
    };
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default()
    };
    let mut ranked: Vec<Arc<Pod>> = mine.to_vec();
    ranked.sort_by(|a, b| {
        let (na, nb) = (node(a), node(b));
        (!na.is_empty())
            .cmp(&!nb.is_empty())
            .then(phase_rank(a).cmp(&phase_rank(b)))
            .then(pods::is_ready(a).cmp(&pods::is_ready(b)))
            .then(cost(a).cmp(&cost(b)))
            .then(
                per_node
                    .get(nb.as_str())
                    .unwrap_or(&0)
                    .cmp(per_node.get(na.as_str()).unwrap_or(&0)),
            )
            .then(pods::ready_since(b).cmp(&pods::ready_since(a)))
            .then(restarts(b).cmp(&restarts(a)))
            .then(
                b.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .cmp(&a.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            )
    });
    ranked.truncate(n);
    ranked
}

/// The status for `owner` controlling `mine` at `now`, with the failure of this sync.
fn status_of<K: Replicated>(
    owner: &K,
    mine: &[Arc<Pod>],
    failure: Option<(String, String)>,
    now: jiff::Timestamp,
) -> Value {
    let template_labels: BTreeMap<String, String> = owner
        .template()
        .and_then(|t| t.metadata.as_ref()?.labels.clone())
        .unwrap_or_default();
    let fully = mine
        .iter()
        .filter(|p| {
            template_labels
                .iter()
                .all(|(k, v)| p.labels().get(k) == Some(v))
        })
        .count();
    let ready = mine.iter().filter(|p| pods::is_ready(p)).count();
    let available = mine
        .iter()
        .filter(|p| pods::is_available(p, owner.min_ready_seconds(), now))
        .count();
    let old = owner.status_json();
    let mut status = json!({
        "replicas": mine.len(),
        "fullyLabeledReplicas": fully,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": owner.meta().generation.unwrap_or(0),
    });
    // Zero counts are omitted, as upstream's JSON omits them.
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| k == "replicas" || v != &json!(0));
    }
    let kept = old["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "ReplicaFailure"))
        .cloned();
    match failure {
        Some((reason, message)) => {
            let since = kept
                .as_ref()
                .filter(|c| c["reason"] == reason.as_str())
                .map(|c| c["lastTransitionTime"].clone())
                .unwrap_or_else(|| json!(now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
            status["conditions"] = json!([{
                "type": "ReplicaFailure",
                "status": "True",
                "reason": reason,
                "message": message,
                "lastTransitionTime": since,
            }]);
        }
        // A failure stays reported until a sync succeeds with the pod count right.
        None if kept.is_some() && mine.len() != owner.replicas().max(0) as usize => {
            status["conditions"] = json!([kept]);
        }
        None => {}
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: &str, phase: &str, ready: bool, created: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "d", "creationTimestamp": created,
                    "labels": {"app": "web"}},
                "spec": {"nodeName": node, "containers": []},
                "status": {"phase": phase, "conditions": [
                    {"type": "Ready", "status": if ready {"True"} else {"False"},
                     "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn the_least_valuable_pods_go_first() {
        let mine = vec![
            pod("running-old", "n1", "Running", true, "2026-01-01T00:00:00Z"),
            pod("running-new", "n2", "Running", true, "2026-01-02T00:00:00Z"),
            pod("unscheduled", "", "Pending", false, "2026-01-01T00:00:00Z"),
            pod("not-ready", "n1", "Running", false, "2026-01-01T00:00:00Z"),
            pod("crowded", "n1", "Running", true, "2026-01-01T00:00:00Z"),
        ];
        let names: Vec<String> = to_delete(&mine, 4).iter().map(|p| p.name_any()).collect();
        // Unscheduled, then not ready, then the ready ones on the crowded node (newest
        // first among equals), before the lone pod on n2.
        assert_eq!(names[0], "unscheduled");
        assert_eq!(names[1], "not-ready");
        assert!(
            names[2..]
                .iter()
                .all(|n| n == "running-old" || n == "crowded")
        );
    }

    #[test]
    fn status_counts_ready_available_and_labelled_pods() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "d", "generation": 3},
            "spec": {"replicas": 3, "minReadySeconds": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}}}
        }))
        .unwrap();
        let mine = vec![
            pod("a", "n1", "Running", true, "2026-01-01T00:00:00Z"),
            pod("b", "n1", "Pending", false, "2026-01-01T00:00:00Z"),
        ];
        let s = status_of(&rs, &mine, None, jiff::Timestamp::now());
        assert_eq!(
            s,
            json!({"replicas": 2, "readyReplicas": 1, "availableReplicas": 1, "observedGeneration": 3})
        );
        let s = status_of(
            &rs,
            &mine,
            Some(("FailedCreate".into(), "quota".into())),
            jiff::Timestamp::now(),
        );
        assert_eq!(s["conditions"][0]["reason"], "FailedCreate");
    }

    #[test]
    fn replication_controllers_select_by_their_map_or_template() {
        let rc: ReplicationController = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}}}
        }))
        .unwrap();
        let sel = rc.selector().unwrap();
        assert_eq!(
            sel.match_labels,
            Some([("app".to_string(), "web".to_string())].into())
        );
    }
}
