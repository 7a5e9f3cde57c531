//! The EndpointSlice mirroring controller (`endpointslice-mirroring-controller`), as
//! upstream's: an Endpoints object written by hand for a Service without a selector is
//! mirrored into EndpointSlices, so consumers of slices see it too. The slices (managed by
//! `endpointslicemirroring-controller.k8s.io`, labelled with the Service's name, carrying the
//! Endpoints' labels and annotations) are owned by the Endpoints, as upstream's are: one slice
//! per subset and address family, at most [`MAX_PER_SUBSET`] addresses of each subset.
//!
//! Nothing is mirrored for Endpoints labelled `endpointslice.kubernetes.io/skip-mirror:
//! "true"` (as the API server's own are), for leader-election locks, or when the Service is
//! missing or has a selector (the EndpointSlice controller serves those): then the mirrored
//! slices are deleted, as they are when the Endpoints goes.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ObjectMeta, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::endpoints::{
    LEADER_ANNOTATION, STALE_RETRY, deleted, expand, family, repack, same_name, selector,
};
use crate::endpointslice::{
    MANAGED_BY, Plan, PortsKey, SERVICE_NAME, after, managed_by, owned_slices, ports_key,
    seen_own_changes, take_over, write,
};
use crate::events::{self, Recorder, Type};
use crate::expectations::Expectations;
use crate::runtime::{self, Informers, Shared};

/// The controller's name.
const NAME: &str = "endpointslice-mirroring-controller";

/// This controller's value of the managed-by label.
const CONTROLLER: &str = "endpointslicemirroring-controller.k8s.io";

/// The Endpoints label that turns mirroring off (`"true"`).
const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";

/// Endpoints annotations not copied to the slices.
const NOT_COPIED: &[&str] = &[
    "endpoints.kubernetes.io/last-change-trigger-time",
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// The most addresses of one subset mirrored (upstream's
/// `--mirroring-max-endpoints-per-subset` default).
const MAX_PER_SUBSET: usize = 1000;

struct Ctx {
    client: kube::Client,
    endpoints: Store<Endpoints>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    expectations: Expectations,
    recorder: Recorder,
}

/// Starts the controller: a loop over Endpoints, woken by their Service and their mirrored
/// slices, and a task deleting the slices of Endpoints that are gone.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let endpoints = informers.store::<Endpoints>();
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        endpoints: endpoints.clone(),
        services: informers.store::<Service>(),
        slices: informers.store::<EndpointSlice>(),
        expectations: Expectations::default(),
        recorder: shared.recorder(NAME),
    });
    let controller = Controller::for_stream(informers.subscribe::<Endpoints>(), endpoints.clone())
        .watches_stream(informers.subscribe::<Service>(), |svc: Service| {
            Some(same_name::<Service, Endpoints>(&svc))
        })
        .watches_stream(
            informers.subscribe::<EndpointSlice>(),
            |slice: EndpointSlice| {
                let name = managed_by(&slice, CONTROLLER)?;
                Some(ObjectRef::new(name).within(&slice.namespace().unwrap_or_default()))
            },
        );
    let gone = deleted(informers.subscribe::<Endpoints>(), endpoints);
    let (cleaner, synced) = (ctx.clone(), shared.clone());
    let cleanup = async move {
        synced.synced().await;
        gone.for_each(|ep| unmirror(cleaner.clone(), ep)).await;
    };
    futures::future::join(
        runtime::run(NAME, controller, shared, ctx, reconcile),
        cleanup,
    )
    .map(|_| ())
    .boxed()
}

/// Deletes the mirrored slices of `ep`, deleted, unless an Endpoints of its name is back.
async fn unmirror(ctx: Arc<Ctx>, ep: Endpoints) {
    let ns = ep.namespace().unwrap_or_default();
    if ctx.endpoints.get(&same_name(&ep)).is_some() {
        return;
    }
    ctx.expectations.forget(&format!("{ns}/{}", ep.name_any()));
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    for slice in owned_slices(&ctx.slices, &ns, &ep.name_any(), CONTROLLER) {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: slice.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(e) = api.delete(&slice.name_any(), &params).await {
            // Owned by the Endpoints, the slice is left to the garbage collector.
            tracing::debug!("{NAME}: deleting {ns}/{}: {e}", slice.name_any());
        }
    }
}

async fn reconcile(ep: Arc<Endpoints>, ctx: Arc<Ctx>) -> runtime::Result<Action> {
    let ns = ep.namespace().unwrap_or_default();
    let name = ep.name_any();
    let key = format!("{ns}/{name}");
    if !seen_own_changes(&ctx.expectations, &ctx.slices, &key, &ns) {
        return Ok(Action::requeue(STALE_RETRY));
    }
    let existing = owned_slices(&ctx.slices, &ns, &name, CONTROLLER);
    let service = ctx.services.get(&same_name(ep.as_ref()));
    let selectorless = service.is_some_and(|svc| selector(&svc).is_none());
    let plan = if mirrored(&ep) && selectorless {
        let mirror = plan(&ep, existing, MAX_PER_SUBSET);
        report(&ctx.recorder, &ep, &mirror).await;
        mirror.plan
    } else {
        Plan {
            delete: existing,
            ..Plan::default()
        }
    };
    let written = write(&ctx.client, &ctx.expectations, &key, &ns, plan, true).await?;
    Ok(after(&written))
}

/// Whether `ep` may be mirrored at all: not marked to skip, not a leader-election lock.
fn mirrored(ep: &Endpoints) -> bool {
    ep.labels().get(SKIP_MIRROR).map(String::as_str) != Some("true")
        && !ep.annotations().contains_key(LEADER_ANNOTATION)
}

/// Warns, on the Endpoints, of addresses not mirrored.
async fn report(recorder: &Recorder, ep: &Endpoints, mirror: &Mirror) {
    let target = events::reference(ep);
    if mirror.invalid > 0 {
        let note = format!(
            "Skipped {} invalid IP addresses when mirroring to EndpointSlices",
            mirror.invalid
        );
        recorder
            .publish(&target, Type::Warning, "InvalidIPAddress", &note)
            .await;
    }
    if mirror.skipped > mirror.invalid {
        let note = format!(
            "A max of {MAX_PER_SUBSET} addresses can be mirrored to EndpointSlices per Endpoints \
             subset. {} addresses were skipped",
            mirror.skipped
        );
        recorder
            .publish(&target, Type::Warning, "TooManyAddressesToMirror", &note)
            .await;
    }
}

/// What mirroring one Endpoints takes.
struct Mirror {
    /// The writes.
    plan: Plan,
    /// Addresses that are not IPs.
    invalid: usize,
    /// Addresses not mirrored, the invalid ones included.
    skipped: usize,
}

/// One slice's worth: ports and endpoints of one address family.
struct Wanted {
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
}

/// What to write so that `existing` (the slices mirrored from `ep`) mirror `ep`: one slice per
/// (address family, subset), at most `max` addresses of a subset. The first existing slice of
/// a kind is kept and rewritten only if it differs; the others are deleted (or reused).
fn plan(ep: &Endpoints, existing: Vec<Arc<EndpointSlice>>, max: usize) -> Mirror {
    let mut wanted: BTreeMap<(&'static str, PortsKey), Wanted> = BTreeMap::new();
    let (mut invalid, mut skipped) = (0, 0);
    for subset in repack(expand(ep.subsets.as_deref().unwrap_or_default())) {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let key = ports_key(&ports);
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| (a, false));
        let mut added = 0;
        for (address, ready) in ready.chain(not_ready) {
            if added >= max {
                skipped += 1;
                continue;
            }
            let Some(fam) = family(&address.ip) else {
                invalid += 1;
                skipped += 1;
                continue;
            };
            let slot = wanted.entry((fam, key.clone())).or_insert_with(|| Wanted {
                ports: ports.clone(),
                endpoints: Vec::new(),
            });
            slot.endpoints.push(endpoint(address, ready));
            added += 1;
        }
    }
    let mut out = Plan::default();
    let mut current: BTreeMap<(String, PortsKey), Vec<Arc<EndpointSlice>>> = BTreeMap::new();
    for slice in existing {
        let key = (
            slice.address_type.clone(),
            ports_key(slice.ports.as_deref().unwrap_or_default()),
        );
        current.entry(key).or_default().push(slice);
    }
    for ((fam, key), want) in wanted {
        let mut slices = current
            .remove(&(fam.to_string(), key))
            .unwrap_or_default()
            .into_iter();
        let first = slices.next();
        out.delete.extend(slices);
        let slice = new_slice(ep, fam, want);
        match first {
            Some(old) if same(&old, &slice) => {}
            Some(old) => out.update.push(take_over(slice, &old)),
            None => out.create.push(slice),
        }
    }
    out.delete.extend(current.into_values().flatten());
    out.recycle(|_| true);
    Mirror {
        plan: out,
        invalid,
        skipped,
    }
}

/// An address's endpoint: its IP, readiness, node, hostname and target.
fn endpoint(address: &EndpointAddress, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![address.ip.clone()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            ..EndpointConditions::default()
        }),
        hostname: address.hostname.clone().filter(|h| !h.is_empty()),
        node_name: address.node_name.clone(),
        target_ref: address.target_ref.clone(),
        ..Endpoint::default()
    }
}

/// The metadata of a slice mirroring `ep`: named by `generateName`, its labels (with the
/// Service's name and this controller's) and annotations (but a few), owned by it.
fn new_slice_meta(ep: &Endpoints) -> ObjectMeta {
    let mut labels = ep.labels().clone();
    labels.insert(SERVICE_NAME.into(), ep.name_any());
    labels.insert(MANAGED_BY.into(), CONTROLLER.into());
    let annotations: BTreeMap<String, String> = ep
        .annotations()
        .iter()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    ObjectMeta {
        generate_name: Some(format!("{}-", ep.name_any())),
        namespace: ep.namespace(),
        labels: Some(labels),
        annotations: (!annotations.is_empty()).then_some(annotations),
        owner_references: Some(vec![crate::pods::controller_ref(ep)]),
        ..ObjectMeta::default()
    }
}

fn new_slice(ep: &Endpoints, fam: &str, want: Wanted) -> EndpointSlice {
    EndpointSlice {
        metadata: new_slice_meta(ep),
        address_type: fam.into(),
        endpoints: want.endpoints,
        ports: Some(want.ports),
    }
}

/// Whether the stored `old` already says what `new` would: the same endpoints (in any
/// order), labels and annotations.
fn same(old: &EndpointSlice, new: &EndpointSlice) -> bool {
    let sorted = |s: &EndpointSlice| {
        let mut e = s.endpoints.clone();
        e.sort_by_key(|e| {
            (
                e.addresses.clone(),
                e.target_ref.clone().and_then(|r| r.uid),
            )
        });
        e
    };
    let annotations = |s: &EndpointSlice| s.metadata.annotations.clone().unwrap_or_default();
    sorted(old) == sorted(new)
        && old.labels() == new.labels()
        && annotations(old) == annotations(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn endpoints(subsets: serde_json::Value) -> Endpoints {
        serde_json::from_value(json!({
            "metadata": {"name": "ext", "namespace": "default", "uid": "ep-uid",
                "labels": {"team": "a"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "n"}},
            "subsets": subsets}))
        .unwrap()
    }

    fn stored(plan: &Plan) -> Vec<Arc<EndpointSlice>> {
        plan.create
            .iter()
            .chain(plan.update.iter())
            .enumerate()
            .map(|(i, s)| {
                let mut s = s.clone();
                s.metadata.name.get_or_insert_with(|| format!("ext-{i}"));
                Arc::new(s)
            })
            .collect()
    }

    #[test]
    fn endpoints_are_mirrored_per_subset_and_family() {
        let ep = endpoints(json!([
            {"addresses": [{"ip": "10.1.0.1", "nodeName": "n1", "hostname": "h"},
                           {"ip": "fd00::1"}, {"ip": "not-an-ip"}],
             "notReadyAddresses": [{"ip": "10.1.0.2"}],
             "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
            {"addresses": [{"ip": "10.1.0.3"}], "ports": [{"port": 53, "protocol": "UDP"}]}
        ]));
        let m = plan(&ep, Vec::new(), 1000);
        assert_eq!((m.invalid, m.skipped), (1, 1));
        let shape: Vec<_> = m
            .plan
            .create
            .iter()
            .map(|s| {
                let ips = s
                    .endpoints
                    .iter()
                    .map(|e| e.addresses[0].as_str())
                    .collect();
                let ports = s.ports.iter().flatten().map(|p| p.port).collect();
                (s.address_type.as_str(), ips, ports)
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("IPv4", vec!["10.1.0.3"], vec![Some(53)]),
                ("IPv4", vec!["10.1.0.1", "10.1.0.2"], vec![Some(80)]),
                ("IPv6", vec!["fd00::1"], vec![Some(80)]),
            ]
        );
        let s = &m.plan.create[1];
        let ready: Vec<Option<bool>> = s
            .endpoints
            .iter()
            .map(|e| e.conditions.as_ref().unwrap().ready)
            .collect();
        assert_eq!(ready, [Some(true), Some(false)]);
        assert_eq!(s.endpoints[0].hostname.as_deref(), Some("h"));
        assert_eq!(s.endpoints[0].node_name.as_deref(), Some("n1"));
        assert_eq!(s.endpoints[0].conditions.as_ref().unwrap().serving, None);
        assert_eq!(s.labels()[SERVICE_NAME], "ext");
        assert_eq!(
            s.labels()[MANAGED_BY],
            "endpointslicemirroring-controller.k8s.io"
        );
        assert_eq!(s.labels()["team"], "a");
        assert_eq!(s.annotations().get("note").map(String::as_str), Some("n"));
        assert!(!s.annotations().contains_key(NOT_COPIED[1]));
        let owner = &s.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Endpoints", "ext", "ep-uid")
        );
        assert_eq!(
            m.plan.create[0].ports.as_ref().unwrap()[0].name.as_deref(),
            Some("")
        );
    }

    #[test]
    fn mirrored_slices_are_rewritten_only_on_change_and_go_with_their_subset() {
        let ep = endpoints(
            json!([{"addresses": [{"ip": "10.1.0.1"}, {"ip": "10.1.0.2"}],
            "ports": [{"port": 80, "protocol": "TCP"}]}]),
        );
        let first = plan(&ep, Vec::new(), 1000).plan;
        let slices = stored(&first);
        let again = plan(&ep, slices.clone(), 1000).plan;
        assert!(again.create.is_empty() && again.update.is_empty() && again.delete.is_empty());
        // A duplicate is deleted.
        let mut twice = slices.clone();
        let mut dup = (*slices[0]).clone();
        dup.metadata.name = Some("ext-dup".into());
        twice.push(Arc::new(dup));
        let deduped = plan(&ep, twice, 1000).plan;
        assert_eq!(deduped.delete.len(), 1);
        assert_eq!(deduped.delete[0].name_any(), "ext-dup");
        // A new address rewrites the slice in place.
        let grown = endpoints(
            json!([{"addresses": [{"ip": "10.1.0.1"}, {"ip": "10.1.0.2"},
            {"ip": "10.1.0.9"}], "ports": [{"port": 80, "protocol": "TCP"}]}]),
        );
        let update = plan(&grown, slices.clone(), 1000).plan;
        assert_eq!(update.update.len(), 1);
        assert_eq!(update.update[0].name_any(), "ext-0");
        assert_eq!(update.update[0].endpoints.len(), 3);
        // Another port: the slice is reused for it.
        let moved = endpoints(json!([{"addresses": [{"ip": "10.1.0.1"}],
            "ports": [{"port": 8080, "protocol": "TCP"}]}]));
        let reused = plan(&moved, slices.clone(), 1000).plan;
        assert!(reused.create.is_empty() && reused.delete.is_empty());
        assert_eq!(reused.update[0].name_any(), "ext-0");
        // No subsets: nothing mirrored.
        let empty = plan(&endpoints(json!([])), slices, 1000).plan;
        assert!(empty.create.is_empty() && empty.update.is_empty());
        assert_eq!(empty.delete.len(), 1);
    }

    #[test]
    fn at_most_max_addresses_of_a_subset_are_mirrored() {
        let addresses: Vec<_> = (0..5)
            .map(|i| json!({"ip": format!("10.1.0.{i}")}))
            .collect();
        let ep = endpoints(json!([{"addresses": addresses, "ports": [{"port": 80}]}]));
        let m = plan(&ep, Vec::new(), 3);
        assert_eq!((m.invalid, m.skipped), (0, 2));
        assert_eq!(m.plan.create[0].endpoints.len(), 3);
        assert_eq!(
            m.plan.create[0].ports.as_ref().unwrap()[0]
                .protocol
                .as_deref(),
            Some("TCP")
        );
    }

    #[test]
    fn skip_labels_and_leader_locks_are_not_mirrored() {
        let mut ep = endpoints(json!([]));
        assert!(mirrored(&ep));
        ep.labels_mut().insert(SKIP_MIRROR.into(), "true".into());
        assert!(!mirrored(&ep));
        let mut lock = endpoints(json!([]));
        lock.annotations_mut()
            .insert(LEADER_ANNOTATION.into(), "{}".into());
        assert!(!mirrored(&lock));
    }
}
