//! The namespace controller (upstream's `namespace-controller`): empties a namespace being
//! deleted, then lets it go.
//!
//! A deleted namespace (the API server sets its `deletionTimestamp` and the `Terminating`
//! phase) is held by the `kubernetes` entry of its `spec.finalizers` until nothing is left in
//! it. For every namespaced resource discovery shows as deletable (each group's preferred
//! version), the controller deletes the namespace's objects — one `deletecollection` where
//! the resource has it, else a list and a delete per object, in the background — then lists
//! what remains. Each pass is reported with upstream's five conditions on the namespace's
//! status (`NamespaceDeletionDiscoveryFailure`, `NamespaceDeletionGroupVersionParsingFailure`,
//! `NamespaceDeletionContentFailure`, `NamespaceContentRemaining`,
//! `NamespaceFinalizersRemaining`). While content remains, the next pass comes after
//! upstream's estimate (half the longest grace period of the namespace's terminating pods, or
//! of 15 s while objects wait on finalizers), or as soon as one of its terminating pods
//! changes or goes. Once nothing remains, `kubernetes` is removed through the `finalize`
//! subresource, and the API server deletes the namespace when no other finalizer holds it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::discovery::{ApiCapabilities, Scope, verbs};
use kube::error::DiscoveryError;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;

use crate::runtime::{self, Informers, Result, Shared};

/// The controller's name.
const NAME: &str = "namespace-controller";
/// The entry of `spec.finalizers` this controller owns.
const FINALIZER: &str = "kubernetes";
/// Upstream's wait for objects held by finalizers, in seconds.
const FINALIZER_ESTIMATE: i64 = 15;

/// Starts the namespace controller: namespaces from the shared informer, and a pass over a
/// namespace whenever one of its terminating pods changes or goes.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let namespaces = informers.subscribe::<Namespace>();
    let controller = Controller::for_stream(namespaces, informers.store::<Namespace>())
        .watches_stream(informers.subscribe::<Pod>(), |pod: Pod| {
            let terminating = pod.metadata.deletion_timestamp.is_some();
            let ns = pod.metadata.namespace.filter(|_| terminating);
            ns.map(|ns| ObjectRef::<Namespace>::new(&ns))
        });
    let client = Arc::new(shared.client.clone());
    runtime::run(NAME, controller, shared, client, reconcile)
}

/// Upstream's `namespacedResourcesDeleter.Delete`.
async fn reconcile(ns: Arc<Namespace>, client: Arc<kube::Client>) -> Result<Action> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let api: Api<Namespace> = Api::all((*client).clone());
    let name = ns.name_any();
    let Some(mut latest) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let Some(deleted_at) = latest.metadata.deletion_timestamp.clone() else {
        return Ok(Action::await_change());
    };
    let status = latest.status.get_or_insert_with(Default::default);
    if status.phase.as_deref() != Some("Terminating") {
        status.phase = Some("Terminating".into());
        latest = api
            .replace_status(&name, &PostParams::default(), &latest)
            .await?;
    }
    let finalizers = latest
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if finalizers.is_empty() {
        return Ok(Action::await_change());
    }
    let (latest, estimate) = delete_content(&client, &api, latest, deleted_at.0).await?;
    if estimate > 0 {
        let wait = u64::try_from(estimate / 2 + 1).unwrap_or(1);
        return Ok(Action::requeue(Duration::from_secs(wait)));
    }
    // Upstream keeps the other finalizers, sorted.
    let rest: BTreeSet<String> = finalizers.into_iter().filter(|f| f != FINALIZER).collect();
    let mut finalized = latest;
    finalized
        .spec
        .get_or_insert_with(Default::default)
        .finalizers = Some(rest.into_iter().collect());
    match api
        .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
        .await
    {
        Ok(_) => {
            tracing::debug!("{NAME}: namespace {name} is empty and finalized");
            Ok(Action::await_change())
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// The namespaced resources discovery shows as deletable, each group's preferred version.
async fn deletable(client: &kube::Client) -> kube::Result<Vec<(ApiResource, ApiCapabilities)>> {
    let discovery = crate::garbage_collector::discovery(client).await?;
    Ok(discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .filter(|(_, caps)| {
            caps.scope == Scope::Namespaced && caps.supports_operation(verbs::DELETE)
        })
        .collect())
}

/// Upstream's `deleteAllContent`: deletes everything in the namespace, records the pass in
/// its conditions, and tells how many seconds to wait before looking again (0 once empty).
/// Returns the namespace as last written.
async fn delete_content(
    client: &kube::Client,
    api: &Api<Namespace>,
    mut ns: Namespace,
    deleted_at: jiff::Timestamp,
) -> Result<(Namespace, i64)> {
    let name = ns.name_any();
    let mut pass = Pass::default();
    let mut errors = Vec::new();
    let resources = deletable(client).await.unwrap_or_else(|e| {
        let message = e.to_string();
        if matches!(
            e,
            kube::Error::Discovery(DiscoveryError::InvalidGroupVersion(_))
        ) {
            pass.group_versions = Some(message.clone());
        } else {
            pass.discovery = Some(message.clone());
        }
        errors.push(message);
        Vec::new()
    });
    let mut estimate = 0;
    for (resource, caps) in &resources {
        let (remaining, error) = delete_all_of(client, &name, resource, caps, deleted_at).await;
        if let Some(e) = error {
            pass.content_errors.push(e.clone());
            errors.push(e);
        }
        estimate = estimate.max(remaining.estimate);
        if remaining.count > 0 {
            let what = format!("{}.{}", resource.plural, resource.group);
            pass.remaining.push((what, remaining.count));
            for (f, n) in remaining.finalizers {
                *pass.finalizers.entry(f).or_default() += n;
            }
        }
    }
    let status = ns.status.get_or_insert_with(Default::default);
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if update_conditions(conditions, pass.conditions(), &Time(jiff::Timestamp::now())) {
        match api.replace_status(&name, &PostParams::default(), &ns).await {
            Ok(updated) => ns = updated,
            Err(e) => tracing::debug!(
                "{NAME}: couldn't update status condition for namespace {name:?}: {e}"
            ),
        }
    }
    if !errors.is_empty() {
        return Err(runtime::Error::Failed(errors.join(", ")));
    }
    Ok((ns, estimate))
}

/// What is left of one resource in the namespace after a pass.
#[derive(Debug, Default)]
struct Remaining {
    /// Seconds to wait before looking again.
    estimate: i64,
    count: usize,
    /// Finalizer → objects it holds.
    finalizers: BTreeMap<String, usize>,
}

fn not_supported(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 405)
}

/// Upstream's `deleteAllContentForGroupVersionResource`: deletes the namespace's objects of
/// one resource and tells what remains, with the error that stopped it, if any.
async fn delete_all_of(
    client: &kube::Client,
    ns: &str,
    resource: &ApiResource,
    caps: &ApiCapabilities,
    deleted_at: jiff::Timestamp,
) -> (Remaining, Option<String>) {
    let failed = |estimate: i64, e: kube::Error| {
        let remaining = Remaining {
            estimate,
            ..Default::default()
        };
        (remaining, Some(e.to_string()))
    };
    let estimate = if resource.group.is_empty() && resource.plural == "pods" {
        match pods_estimate(client, ns, deleted_at).await {
            Ok(estimate) => estimate,
            Err(e) => return failed(0, e),
        }
    } else {
        0
    };
    let api: Api<PartialObjectMeta<DynamicObject>> =
        Api::namespaced_with(client.clone(), ns, resource);
    let listable = caps.supports_operation(verbs::LIST);
    let mut each = !caps.supports_operation(verbs::DELETE_COLLECTION);
    if !each {
        match api
            .delete_collection(&DeleteParams::background(), &ListParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if not_supported(&e) => each = true,
            Err(e) => return failed(estimate, e),
        }
    }
    if each && listable {
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                for item in list {
                    match api
                        .delete(&item.name_any(), &DeleteParams::background())
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if not_supported(&e) => {}
                        Err(e) => return failed(estimate, e),
                    }
                }
            }
            Err(e) if not_supported(&e) => {}
            Err(e) => return failed(estimate, e),
        }
    }
    let unknown = Remaining {
        estimate,
        ..Default::default()
    };
    if !listable {
        return (unknown, None);
    }
    let left = match api.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) if not_supported(&e) => return (unknown, None),
        Err(e) => return failed(estimate, e),
    };
    if left.is_empty() {
        return (Remaining::default(), None);
    }
    let mut finalizers = BTreeMap::new();
    for f in left.iter().flat_map(|o| o.finalizers()) {
        *finalizers.entry(f.clone()).or_default() += 1;
    }
    let count = left.len();
    if estimate != 0 {
        return (
            Remaining {
                estimate,
                count,
                finalizers,
            },
            None,
        );
    }
    if !finalizers.is_empty() {
        let remaining = Remaining {
            estimate: FINALIZER_ESTIMATE,
            count,
            finalizers,
        };
        return (remaining, None);
    }
    let unexpected = format!(
        "unexpected items still remain in namespace: {ns} for gvr: {}/{}, Resource={}",
        resource.group, resource.version, resource.plural
    );
    let remaining = Remaining {
        count,
        ..Default::default()
    };
    (remaining, Some(unexpected))
}

/// Upstream's `estimateGracefulTerminationForPods`: the longest grace period of the
/// namespace's unfinished pods, or 0 once that long has passed since the namespace's deletion.
async fn pods_estimate(
    client: &kube::Client,
    ns: &str,
    deleted_at: jiff::Timestamp,
) -> kube::Result<i64> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let estimate = pods
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|p| !pod::is_terminal(p))
        .filter_map(|p| p.spec.as_ref()?.termination_grace_period_seconds)
        .max()
        .unwrap_or(0);
    let elapsed = jiff::Timestamp::now().duration_since(deleted_at);
    if elapsed >= jiff::SignedDuration::from_secs(estimate) {
        return Ok(0);
    }
    Ok(estimate)
}

/// What one pass over a namespace's content ran into.
#[derive(Debug, Default)]
struct Pass {
    /// Discovery failed.
    discovery: Option<String>,
    /// A group version did not parse.
    group_versions: Option<String>,
    /// The errors of the resources whose content could not all be deleted.
    content_errors: Vec<String>,
    /// `resource.group` → objects left.
    remaining: Vec<(String, usize)>,
    /// Finalizer → objects it holds.
    finalizers: BTreeMap<String, usize>,
}

/// A condition without its transition time.
fn condition(ty: &str, failing: bool, reason: &str, message: String) -> NamespaceCondition {
    NamespaceCondition {
        type_: ty.into(),
        status: if failing { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: None,
    }
}

impl Pass {
    /// Upstream's five conditions for this pass, in upstream's order: True with what went
    /// wrong or remains, else False with upstream's all-clear.
    fn conditions(&self) -> Vec<NamespaceCondition> {
        let mut out = Vec::new();
        out.push(match &self.discovery {
            Some(e) => condition(
                "NamespaceDeletionDiscoveryFailure",
                true,
                "DiscoveryFailed",
                e.clone(),
            ),
            None => condition(
                "NamespaceDeletionDiscoveryFailure",
                false,
                "ResourcesDiscovered",
                "All resources successfully discovered".into(),
            ),
        });
        out.push(match &self.group_versions {
            Some(e) => condition(
                "NamespaceDeletionGroupVersionParsingFailure",
                true,
                "GroupVersionParsingFailed",
                e.clone(),
            ),
            None => condition(
                "NamespaceDeletionGroupVersionParsingFailure",
                false,
                "ParsedGroupVersions",
                "All legacy kube types successfully parsed".into(),
            ),
        });
        out.push(if self.content_errors.is_empty() {
            condition(
                "NamespaceDeletionContentFailure",
                false,
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization".into(),
            )
        } else {
            let mut errors = self.content_errors.clone();
            errors.sort();
            condition(
                "NamespaceDeletionContentFailure",
                true,
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    errors.len(),
                    errors.join(", ")
                ),
            )
        });
        out.push(if self.remaining.is_empty() {
            condition(
                "NamespaceContentRemaining",
                false,
                "ContentRemoved",
                "All content successfully removed".into(),
            )
        } else {
            let mut left: Vec<String> = self
                .remaining
                .iter()
                .map(|(what, n)| format!("{what} has {n} resource instances"))
                .collect();
            left.sort();
            condition(
                "NamespaceContentRemaining",
                true,
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", left.join(", ")),
            )
        });
        out.push(if self.finalizers.is_empty() {
            condition(
                "NamespaceFinalizersRemaining",
                false,
                "ContentRemoved",
                "All content successfully removed".into(),
            )
        } else {
            let held: Vec<String> = self
                .finalizers
                .iter()
                .map(|(f, n)| format!("{f} in {n} resource instances"))
                .collect();
            condition(
                "NamespaceFinalizersRemaining",
                true,
                "SomeFinalizerRemain",
                format!("Some finalizers are remaining: {}", held.join(", ")),
            )
        });
        out
    }
}

/// Upstream's `updateConditions`: adds the conditions not there yet, updates those that
/// changed (the transition time moves only with the status). Whether anything changed.
fn update_conditions(
    existing: &mut Vec<NamespaceCondition>,
    new: Vec<NamespaceCondition>,
    now: &Time,
) -> bool {
    let mut changed = false;
    for mut c in new {
        match existing.iter_mut().find(|o| o.type_ == c.type_) {
            None => {
                c.last_transition_time = Some(now.clone());
                existing.push(c);
                changed = true;
            }
            Some(old)
                if old.status != c.status || old.reason != c.reason || old.message != c.message =>
            {
                if old.status != c.status {
                    old.last_transition_time = Some(now.clone());
                }
                old.status = c.status;
                old.reason = c.reason;
                old.message = c.message;
                changed = true;
            }
            Some(_) => {}
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(conditions: &'a [NamespaceCondition], ty: &str) -> &'a NamespaceCondition {
        conditions.iter().find(|c| c.type_ == ty).unwrap()
    }

    #[test]
    fn a_clean_pass_gives_upstreams_all_clear() {
        let c = Pass::default().conditions();
        let types: Vec<&str> = c.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                "NamespaceDeletionDiscoveryFailure",
                "NamespaceDeletionGroupVersionParsingFailure",
                "NamespaceDeletionContentFailure",
                "NamespaceContentRemaining",
                "NamespaceFinalizersRemaining",
            ]
        );
        assert!(c.iter().all(|c| c.status == "False"));
        let remaining = find(&c, "NamespaceContentRemaining");
        assert_eq!(remaining.reason.as_deref(), Some("ContentRemoved"));
        assert_eq!(
            remaining.message.as_deref(),
            Some("All content successfully removed")
        );
        assert_eq!(
            find(&c, "NamespaceDeletionContentFailure")
                .message
                .as_deref(),
            Some("All content successfully deleted, may be waiting on finalization")
        );
    }

    #[test]
    fn remaining_content_and_failures_are_spelled_as_upstream() {
        let pass = Pass {
            discovery: Some("boom".into()),
            content_errors: vec!["z failed".into(), "a failed".into()],
            remaining: vec![("pods.".into(), 2), ("deployments.apps".into(), 1)],
            finalizers: [
                ("example.com/hold".to_string(), 1),
                ("a.io/x".to_string(), 3),
            ]
            .into(),
            ..Default::default()
        };
        let c = pass.conditions();
        let d = find(&c, "NamespaceDeletionDiscoveryFailure");
        assert_eq!(
            (d.status.as_str(), d.reason.as_deref(), d.message.as_deref()),
            ("True", Some("DiscoveryFailed"), Some("boom"))
        );
        assert_eq!(
            find(&c, "NamespaceDeletionContentFailure")
                .message
                .as_deref(),
            Some("Failed to delete all resource types, 2 remaining: a failed, z failed")
        );
        let r = find(&c, "NamespaceContentRemaining");
        assert_eq!(r.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            r.message.as_deref(),
            Some(
                "Some resources are remaining: deployments.apps has 1 resource instances, pods. has 2 resource instances"
            )
        );
        let f = find(&c, "NamespaceFinalizersRemaining");
        assert_eq!(f.reason.as_deref(), Some("SomeFinalizerRemain"));
        assert_eq!(
            f.message.as_deref(),
            Some(
                "Some finalizers are remaining: a.io/x in 3 resource instances, example.com/hold in 1 resource instances"
            )
        );
    }

    #[test]
    fn conditions_change_only_when_they_differ() {
        let t0 = Time(jiff::Timestamp::UNIX_EPOCH);
        let t1 = Time(jiff::Timestamp::now());
        let mut existing = Vec::new();
        assert!(update_conditions(
            &mut existing,
            Pass::default().conditions(),
            &t0
        ));
        assert_eq!(existing.len(), 5);
        assert!(!update_conditions(
            &mut existing,
            Pass::default().conditions(),
            &t1
        ));
        let pass = Pass {
            remaining: vec![("configmaps.".into(), 1)],
            ..Default::default()
        };
        assert!(update_conditions(&mut existing, pass.conditions(), &t1));
        let r = find(&existing, "NamespaceContentRemaining");
        assert_eq!(r.status, "True");
        assert_eq!(r.last_transition_time.as_ref(), Some(&t1));
        // Unchanged status keeps its transition time.
        let d = find(&existing, "NamespaceDeletionDiscoveryFailure");
        assert_eq!(d.last_transition_time.as_ref(), Some(&t0));
    }
}
