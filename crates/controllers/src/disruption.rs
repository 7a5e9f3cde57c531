//! The disruption controller: keeps each PodDisruptionBudget's status, which the API
//! server's `pods/eviction` reads to allow or refuse an eviction (429).
//!
//! For the pods the budget selects it counts `expectedPods` (the pods themselves for an
//! integer `minAvailable`, else the summed scale of their controllers: Deployment (through
//! its ReplicaSet), ReplicaSet, ReplicationController, StatefulSet), `desiredHealthy` (from
//! `minAvailable`, or `expectedPods` minus `maxUnavailable`, percentages rounded up),
//! `currentHealthy` (Ready pods not being deleted and not recently evicted), and
//! `disruptionsAllowed`, with the DisruptionAllowed condition (SufficientPods,
//! InsufficientPods, or SyncFailed when a percentage needs controllers the pods lack).
//! Evictions recorded in `disruptedPods` are forgotten once the pod is gone or being
//! deleted, or after two minutes.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::{Value, json};

use crate::pods;
use crate::runtime::{self, Informers, Result, Shared};

/// How long an eviction is remembered if the pod does not go.
const DELETION_TIMEOUT: jiff::SignedDuration = jiff::SignedDuration::from_secs(120);

struct Ctx {
    client: kube::Client,
    budgets: Store<PodDisruptionBudget>,
    pods: Store<Pod>,
    replica_sets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    controllers: Store<ReplicationController>,
    stateful_sets: Store<StatefulSet>,
}

/// Starts the disruption controller.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let budgets = informers.store::<PodDisruptionBudget>();
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        budgets: budgets.clone(),
        pods: informers.store::<Pod>(),
        replica_sets: informers.store::<ReplicaSet>(),
        deployments: informers.store::<Deployment>(),
        controllers: informers.store::<ReplicationController>(),
        stateful_sets: informers.store::<StatefulSet>(),
    });
    let lookup = budgets.clone();
    let controller = Controller::for_stream(informers.subscribe::<PodDisruptionBudget>(), budgets)
        .watches_stream(informers.subscribe::<Pod>(), move |pod: Pod| {
            let ns = pod.namespace().unwrap_or_default();
            lookup
                .state()
                .iter()
                .filter(|b| b.namespace().as_deref() == Some(ns.as_str()))
                .filter(|b| selects(b, &pod))
                .map(|b| ObjectRef::from_obj(b.as_ref()))
                .collect::<Vec<_>>()
        });
    runtime::run("disruption-controller", controller, shared, ctx, reconcile)
}

/// Whether the budget selects `pod`: a missing selector selects nothing, an empty one every
/// pod of the namespace (policy/v1).
fn selects(budget: &PodDisruptionBudget, pod: &Pod) -> bool {
    let selector = budget.spec.as_ref().and_then(|s| s.selector.as_ref());
    selector.is_some() && pods::selects(selector, pod.labels())
}

/// An int-or-percent of `total`, percentages rounded up.
fn scaled_up(v: &IntOrString, total: i32) -> std::result::Result<i32, String> {
    match v {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let p: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            Ok(((p * i64::from(total) + 99) / 100) as i32)
        }
    }
}

impl Ctx {
    /// The scale of the controller of `pod`, by `Kind/namespace/name` so each counts once.
    fn scale_of(&self, pod: &Pod) -> Option<(String, i32)> {
        let ns = pod.namespace().unwrap_or_default();
        let c = pods::controller_of(&pod.metadata)?;
        match c.kind.as_str() {
            "ReplicaSet" => {
                let rs = self
                    .replica_sets
                    .get(&ObjectRef::new(&c.name).within(&ns))?;
                if let Some(d) =
                    pods::controller_of(&rs.metadata).filter(|o| o.kind == "Deployment")
                {
                    let dep = self.deployments.get(&ObjectRef::new(&d.name).within(&ns))?;
                    let n = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    return Some((format!("Deployment/{ns}/{}", d.name), n));
                }
                let n = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                Some((format!("ReplicaSet/{ns}/{}", c.name), n))
            }
            "ReplicationController" => {
                let rc = self.controllers.get(&ObjectRef::new(&c.name).within(&ns))?;
                let n = rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                Some((format!("ReplicationController/{ns}/{}", c.name), n))
            }
            "StatefulSet" => {
                let sts = self
                    .stateful_sets
                    .get(&ObjectRef::new(&c.name).within(&ns))?;
                let n = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                Some((format!("StatefulSet/{ns}/{}", c.name), n))
            }
            _ => None,
        }
    }

    /// The summed scale of the selected pods' controllers; an error names a pod without one.
    fn expected_scale(&self, selected: &[Arc<Pod>]) -> std::result::Result<i32, String> {
        let mut seen: BTreeMap<String, i32> = BTreeMap::new();
        for pod in selected {
            match self.scale_of(pod) {
                Some((key, n)) => {
                    seen.insert(key, n);
                }
                None => {
                    return Err(format!("found no controllers for pod {:?}", pod.name_any()));
                }
            }
        }
        Ok(seen.values().sum())
    }
}

/// `(expectedPods, desiredHealthy)` for the budget over `selected` pods.
fn expectations(
    ctx: &Ctx,
    budget: &PodDisruptionBudget,
    selected: &[Arc<Pod>],
) -> std::result::Result<(i32, i32), String> {
    let spec = budget.spec.clone().unwrap_or_default();
    if let Some(max) = &spec.max_unavailable {
        let expected = ctx.expected_scale(selected)?;
        let unavailable = scaled_up(max, expected)?;
        return Ok((expected, (expected - unavailable).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((selected.len() as i32, *n)),
        Some(percent) => {
            let expected = ctx.expected_scale(selected)?;
            Ok((expected, scaled_up(percent, expected)?))
        }
        None => Ok((selected.len() as i32, 0)),
    }
}

async fn reconcile(budget: Arc<PodDisruptionBudget>, ctx: Arc<Ctx>) -> Result<Action> {
    let Some(budget) = ctx.budgets.get(&ObjectRef::from_obj(budget.as_ref())) else {
        return Ok(Action::await_change());
    };
    let ns = budget.namespace().unwrap_or_default();
    let selected: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| selects(&budget, p))
        .collect();
    let now = jiff::Timestamp::now();
    let old = serde_json::to_value(&budget.status).unwrap_or_default();
    // Evictions still expected to take effect.
    let alive: HashSet<String> = selected
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.name_any())
        .collect();
    let mut disrupted = serde_json::Map::new();
    let mut next_expiry: Option<jiff::Timestamp> = None;
    for (name, at) in old["disruptedPods"].as_object().into_iter().flatten() {
        let Some(when) = at.as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
            continue;
        };
        if alive.contains(name) && when + DELETION_TIMEOUT > now {
            disrupted.insert(name.clone(), at.clone());
            let expiry = when + DELETION_TIMEOUT;
            next_expiry = Some(next_expiry.map_or(expiry, |e| e.min(expiry)));
        }
    }
    let healthy = selected
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && pods::is_ready(p))
        .filter(|p| !disrupted.contains_key(&p.name_any()))
        .count() as i32;
    let stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let generation = budget.metadata.generation.unwrap_or(0);
    let (condition, status) = match expectations(&ctx, &budget, &selected) {
        Ok((expected, desired)) => {
            let allowed = (healthy - desired).max(0);
            let (state, reason) = if allowed > 0 {
                ("True", "SufficientPods")
            } else {
                ("False", "InsufficientPods")
            };
            let mut status = json!({
                "observedGeneration": generation,
                "disruptionsAllowed": allowed,
                "currentHealthy": healthy,
                "desiredHealthy": desired,
                "expectedPods": expected,
            });
            if !disrupted.is_empty() {
                status["disruptedPods"] = Value::Object(disrupted);
            }
            ((state, reason, String::new()), status)
        }
        Err(message) => (
            ("False", "SyncFailed", message),
            json!({
                "observedGeneration": generation,
                "disruptionsAllowed": 0,
                "currentHealthy": healthy,
                "desiredHealthy": old["desiredHealthy"].as_i64().unwrap_or(0),
                "expectedPods": old["expectedPods"].as_i64().unwrap_or(0),
            }),
        ),
    };
    let (state, reason, message) = condition;
    let previous = old["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionAllowed"));
    let transition = previous
        .filter(|p| p["status"] == state)
        .map(|p| p["lastTransitionTime"].clone())
        .unwrap_or_else(|| json!(stamp));
    let mut status = status;
    status["conditions"] = json!([{
        "type": "DisruptionAllowed",
        "status": state,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": transition,
    }]);
    if status != old {
        let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(
            &budget.name_any(),
            &PatchParams::default(),
            &Patch::Merge(runtime::status_patch(&old, &status)),
        )
        .await?;
    }
    Ok(match next_expiry {
        Some(at) => Action::requeue(Duration::from_secs(
            at.duration_since(now).as_secs().max(1) as u64
        )),
        None => Action::await_change(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled_up(&IntOrString::String("50%".into()), 3), Ok(2));
        assert_eq!(scaled_up(&IntOrString::String("10%".into()), 10), Ok(1));
        assert_eq!(scaled_up(&IntOrString::Int(2), 10), Ok(2));
        assert!(scaled_up(&IntOrString::String("half".into()), 10).is_err());
    }
}
