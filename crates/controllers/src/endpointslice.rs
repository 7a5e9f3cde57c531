//! The EndpointSlice controller (`endpointslice-controller`), as upstream's: every Service
//! with a selector gets `discovery.k8s.io/v1` EndpointSlices (named `<service>-<random>`,
//! labelled `kubernetes.io/service-name` and managed by `endpointslice-controller.k8s.io`,
//! owned by the Service) listing the pods it selects: their addresses of the slice's family,
//! their conditions (ready, serving, terminating; terminating pods stay listed, not ready),
//! node, zone, hostname and a reference to them. Pods are grouped by the ports they serve
//! (a named `targetPort` resolves per pod), at most [`MAX_ENDPOINTS_PER_SLICE`] to a slice.
//! A Service with no endpoints keeps one empty placeholder slice.
//!
//! Slices are kept stable, as upstream keeps them: unchanged slices are not rewritten, slices
//! that change anyway are filled first, then a slice with room for what is left, and only then
//! are new slices made; a slice to delete is reused for one to create. [`plan`] is that pure
//! part; the reconcile writes its outcome and, until the cache has seen what it created and
//! deleted, waits instead of acting on stale slices.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::endpoints::{
    HEADLESS_LABEL, STALE_RETRY, families, find_port, hostname, is_headless, pod_ips, publishable,
    published, selected, services_of, stale, target_ref,
};
use crate::expectations::Expectations;
use crate::runtime::{self, Informers, Shared};
use crate::serviceaccount::namespace_terminating;

/// The controller's name.
const NAME: &str = "endpointslice-controller";

/// The label naming a slice's Service.
pub(crate) const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// The label naming the controller that manages a slice.
pub(crate) const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";

/// This controller's value of [`MANAGED_BY`].
const CONTROLLER: &str = "endpointslice-controller.k8s.io";

/// The node label giving an endpoint's zone.
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The most endpoints one slice holds (upstream's `--max-endpoints-per-slice` default).
const MAX_ENDPOINTS_PER_SLICE: usize = 100;

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    slices: Store<EndpointSlice>,
    expectations: Expectations,
}

/// Starts the controller: a loop over Services, woken by their pods and their slices.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let services = informers.store::<Service>();
    let slices = informers.store::<EndpointSlice>();
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        pods: informers.store::<Pod>(),
        nodes: informers.store::<Node>(),
        slices: slices.clone(),
        expectations: Expectations::default(),
    });
    let lookup = services.clone();
    let controller = Controller::for_stream(informers.subscribe::<Service>(), services)
        .watches_stream(informers.subscribe::<Pod>(), move |pod: Pod| {
            let listing = services_listing(&slices, &pod);
            services_of(&lookup, &pod, |svc| listing.contains(&svc.name_any()))
        })
        .watches_stream(
            informers.subscribe::<EndpointSlice>(),
            |slice: EndpointSlice| {
                let service = managed_by(&slice, CONTROLLER)?;
                Some(ObjectRef::new(service).within(&slice.namespace().unwrap_or_default()))
            },
        );
    runtime::run(NAME, controller, shared, ctx, reconcile)
}

/// The Service `slice` belongs to, if `controller` manages it.
pub(crate) fn managed_by<'a>(slice: &'a EndpointSlice, controller: &str) -> Option<&'a str> {
    let labels = slice.labels();
    (labels.get(MANAGED_BY).map(String::as_str) == Some(controller))
        .then(|| labels.get(SERVICE_NAME).map(String::as_str))
        .flatten()
}

/// The names of the Services whose slices (ours) list `pod`.
fn services_listing(slices: &Store<EndpointSlice>, pod: &Pod) -> HashSet<String> {
    let (ns, name) = (pod.namespace(), pod.name_any());
    slices
        .state()
        .iter()
        .filter(|s| s.namespace() == ns)
        .filter(|s| {
            s.endpoints.iter().any(|e| {
                e.target_ref
                    .as_ref()
                    .is_some_and(|r| r.name.as_deref() == Some(name.as_str()))
            })
        })
        .filter_map(|s| managed_by(s, CONTROLLER).map(str::to_string))
        .collect()
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> runtime::Result<Action> {
    let Some(sel) = published(&svc) else {
        return Ok(Action::await_change());
    };
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let key = format!("{ns}/{name}");
    if !seen_own_changes(&ctx.expectations, &ctx.slices, &key, &ns) {
        return Ok(Action::requeue(STALE_RETRY));
    }
    let existing = owned_slices(&ctx.slices, &ns, &name, CONTROLLER);
    let pods = selected(&ctx.pods, &ns, sel);
    let zone = |node: &str| {
        ctx.nodes
            .get(&ObjectRef::new(node))
            .map(|n| n.labels().get(ZONE_LABEL).cloned())
    };
    let (plan, skipped) = plan(&svc, &pods, zone, existing, MAX_ENDPOINTS_PER_SLICE);
    let creating = svc.metadata.deletion_timestamp.is_none();
    let written = write(&ctx.client, &ctx.expectations, &key, &ns, plan, creating).await?;
    if !matches!(written, Written::Done) {
        return Ok(after(&written));
    }
    if !skipped.is_empty() {
        // Retried after a back-off, as upstream retries: the node may yet show up.
        return Err(runtime::Error::Failed(format!(
            "skipping pods {} of Service {key}: their node was not found",
            skipped.join(", ")
        )));
    }
    Ok(Action::await_change())
}

/// Whether the cache (`slices`) shows every slice created and deleted for `key`, a Service
/// or Endpoints in namespace `ns`.
pub(crate) fn seen_own_changes(
    expectations: &Expectations,
    slices: &Store<EndpointSlice>,
    key: &str,
    ns: &str,
) -> bool {
    let in_ns: Vec<Arc<EndpointSlice>> = slices
        .state()
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
        .collect();
    expectations.satisfied_by(key, &in_ns)
}

/// The slices in `ns` labelled for Service `name` and managed by `controller`, by name,
/// without those being deleted.
pub(crate) fn owned_slices(
    slices: &Store<EndpointSlice>,
    ns: &str,
    name: &str,
    controller: &str,
) -> Vec<Arc<EndpointSlice>> {
    let mut found: Vec<Arc<EndpointSlice>> = slices
        .state()
        .into_iter()
        .filter(|s| s.namespace().as_deref() == Some(ns))
        .filter(|s| managed_by(s, controller) == Some(name))
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .collect();
    found.sort_by_key(|s| s.name_any());
    found
}

/// How writing a plan went.
pub(crate) enum Written {
    /// Everything written.
    Done,
    /// A write was refused for a stale cache: to be redone once it catches up.
    Stale,
    /// The namespace is being terminated: nothing more to do there.
    Terminating,
}

/// Writes `plan` for the owner `key` in `ns`: creates (unless not `creating`), updates, then
/// deletes, remembering what it created and deleted.
pub(crate) async fn write(
    client: &kube::Client,
    expectations: &Expectations,
    key: &str,
    ns: &str,
    plan: Plan,
    creating: bool,
) -> runtime::Result<Written> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let params = PostParams::default();
    for slice in plan.create.iter().filter(|_| creating) {
        match api.create(&params, slice).await {
            Ok(made) => expectations.created(key, format!("{ns}/{}", made.name_any())),
            Err(e) if namespace_terminating(&e) => return Ok(Written::Terminating),
            Err(e) if stale(&e) => return Ok(Written::Stale),
            Err(e) => return Err(e.into()),
        }
    }
    for slice in &plan.update {
        match api.replace(&slice.name_any(), &params, slice).await {
            Ok(_) => {}
            Err(e) if stale(&e) => return Ok(Written::Stale),
            Err(e) => return Err(e.into()),
        }
    }
    for slice in &plan.delete {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: slice.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&slice.name_any(), &params).await {
            Ok(_) => expectations.deleted(key, slice.uid().unwrap_or_default()),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) if stale(&e) => return Ok(Written::Stale),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Written::Done)
}

/// What a reconcile does after writing: waits for a change, or tries again when the cache
/// was stale.
pub(crate) fn after(written: &Written) -> Action {
    match written {
        Written::Stale => Action::requeue(STALE_RETRY),
        Written::Done | Written::Terminating => Action::await_change(),
    }
}

/// What to write for one Service: slices to create (named by `generateName`), to replace
/// (whole, with the resource version they were read at), to delete.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// New slices.
    pub(crate) create: Vec<EndpointSlice>,
    /// Changed slices.
    pub(crate) update: Vec<EndpointSlice>,
    /// Slices no longer wanted.
    pub(crate) delete: Vec<Arc<EndpointSlice>>,
}

impl Plan {
    /// Turns pairs of a slice to create and one to delete (of the same address type, and
    /// `reusable`) into an update of the latter, which takes the former's content, labels,
    /// annotations and owners: fewer writes, steadier names.
    pub(crate) fn recycle(&mut self, reusable: impl Fn(&EndpointSlice) -> bool) {
        let mut i = 0;
        while i < self.delete.len() {
            let old = &self.delete[i];
            let fit = self
                .create
                .iter()
                .rposition(|new| new.address_type == old.address_type)
                .filter(|_| reusable(old));
            let Some(pos) = fit else {
                i += 1;
                continue;
            };
            let new = self.create.remove(pos);
            let old = self.delete.remove(i);
            self.update.push(take_over(new, &old));
        }
    }
}

/// `new` written over the stored slice `old`: `old`'s name, uid and resource version (so the
/// write fails on a conflict), `new`'s content, labels, annotations and owners.
pub(crate) fn take_over(mut new: EndpointSlice, old: &EndpointSlice) -> EndpointSlice {
    let meta = std::mem::take(&mut new.metadata);
    new.metadata = ObjectMeta {
        labels: meta.labels,
        annotations: meta.annotations,
        owner_references: meta.owner_references,
        ..old.metadata.clone()
    };
    new
}

/// A port list's identity, whatever its order.
pub(crate) type PortsKey = Vec<(String, i32, String, String)>;

/// The identity of `ports`: sorted (name, port, protocol, application protocol).
pub(crate) fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    let mut key: PortsKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.clone().unwrap_or_default(),
                p.app_protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    key.sort();
    key
}

/// The ports `pod` serves for `svc`: each Service port whose target the pod has.
fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_deref());
    ports
        .unwrap_or_default()
        .iter()
        .filter_map(|port| {
            Some(EndpointPort {
                name: Some(port.name.clone().unwrap_or_default()),
                port: Some(find_port(pod, port)?),
                protocol: port.protocol.clone(),
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect()
}

/// `pod`'s endpoint for `svc` with `addresses`, in `zone`.
fn endpoint(svc: &Service, pod: &Pod, addresses: Vec<String>, zone: Option<String>) -> Endpoint {
    let serving = crate::pods::is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let publish_all = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(publish_all || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname(pod, svc),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(target_ref(pod)),
        zone,
        ..Endpoint::default()
    }
}

/// The labels of `svc`'s slices: the Service's own (but the reserved ones), the headless
/// label for a Service without a cluster IP, the Service's name and this controller's.
fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let reserved = [SERVICE_NAME, MANAGED_BY, HEADLESS_LABEL];
    let mut labels: BTreeMap<String, String> = svc
        .labels()
        .iter()
        .filter(|(k, _)| !reserved.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels.insert(SERVICE_NAME.into(), svc.name_any());
    labels.insert(MANAGED_BY.into(), CONTROLLER.into());
    labels
}

/// Whether `slice` is controlled by the object with `uid` and `kind`.
fn owned_by(slice: &EndpointSlice, kind: &str, uid: &str) -> bool {
    slice
        .owner_references()
        .iter()
        .any(|o| o.kind == kind && o.uid == uid)
}

/// The desired slices of one address type and port list.
struct Group {
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
}

/// What to write so that `svc`'s slices (`existing`: those labelled for it and managed by
/// this controller) list `pods` (those it selects), at most `max` endpoints to a slice.
/// `zone` tells a node's zone label, nothing for an unknown node: a pod on an unknown node is
/// left out (unless the Service publishes not-ready addresses), its name returned second.
fn plan(
    svc: &Service,
    pods: &[Arc<Pod>],
    zone: impl Fn(&str) -> Option<Option<String>>,
    existing: Vec<Arc<EndpointSlice>>,
    max: usize,
) -> (Plan, Vec<String>) {
    let uid = svc.uid().unwrap_or_default();
    let publish_all = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let families = families(svc);
    let labels = slice_labels(svc);
    let mut plan = Plan::default();
    let mut skipped = Vec::new();
    let mut by_family: HashMap<&str, BTreeMap<PortsKey, Vec<Arc<EndpointSlice>>>> = HashMap::new();
    for slice in existing {
        let family = families.iter().find(|f| **f == slice.address_type.as_str());
        match family {
            Some(f) if owned_by(&slice, "Service", &uid) => by_family
                .entry(f)
                .or_default()
                .entry(ports_key(slice.ports.as_deref().unwrap_or_default()))
                .or_default()
                .push(slice),
            _ => plan.delete.push(slice),
        }
    }
    let existing_count = by_family
        .values()
        .flat_map(|g| g.values())
        .map(Vec::len)
        .sum::<usize>()
        + plan.delete.len();
    for family in &families {
        let mut groups: BTreeMap<PortsKey, Group> = BTreeMap::new();
        for pod in pods {
            if !publishable(pod, true) {
                continue;
            }
            let addresses: Vec<String> = pod_ips(pod)
                .into_iter()
                .filter(|ip| crate::endpoints::family(ip) == Some(family))
                .map(str::to_string)
                .collect();
            if addresses.is_empty() {
                continue;
            }
            let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
            let pod_zone = match node.and_then(&zone) {
                Some(z) => z,
                None if publish_all => None,
                None => {
                    skipped.push(pod.name_any());
                    continue;
                }
            };
            let ports = endpoint_ports(svc, pod);
            let group = groups.entry(ports_key(&ports)).or_insert_with(|| Group {
                ports,
                endpoints: Vec::new(),
            });
            group
                .endpoints
                .push(endpoint(svc, pod, addresses, pod_zone));
        }
        let mut current = by_family.remove(family).unwrap_or_default();
        for (key, group) in groups {
            let slices = current.remove(&key).unwrap_or_default();
            fill(svc, family, &labels, group, slices, max, &mut plan);
        }
        plan.delete.extend(current.into_values().flatten());
    }
    let placeholder = new_slice(svc, families[0], &labels, Vec::new(), Vec::new());
    if existing_count == plan.delete.len() && plan.create.is_empty() {
        let is_placeholder = |s: &EndpointSlice| {
            s.endpoints.is_empty()
                && s.ports.as_deref().unwrap_or_default().is_empty()
                && s.address_type == placeholder.address_type
                && s.labels() == placeholder.labels()
                && owned_by(s, "Service", &uid)
        };
        if plan.delete.len() == 1 && is_placeholder(&plan.delete[0]) {
            plan.delete.clear();
        } else {
            plan.create.push(placeholder);
        }
    }
    plan.recycle(|s| owned_by(s, "Service", &uid));
    (plan, skipped)
}

/// An endpoint's identity within a slice: its addresses, what it points at, its hostname.
type EndpointKey = (Vec<String>, Option<String>, Option<String>, Option<String>);

fn endpoint_key(e: &Endpoint) -> EndpointKey {
    let target = e.target_ref.as_ref();
    (
        e.addresses.clone(),
        target.and_then(|r| r.namespace.clone()),
        target.and_then(|r| r.name.clone()),
        e.hostname.clone(),
    )
}

/// Plans one group's slices (upstream's `reconcileByPortMapping`): existing slices keep the
/// endpoints still wanted (updated to their current state) and are deleted when none is
/// left; slices changed anyway are filled up first, fullest first; what remains goes into
/// new full slices, and a last partial chunk into the fullest unchanged slice with room for
/// it, or a new one.
fn fill(
    svc: &Service,
    family: &str,
    labels: &BTreeMap<String, String>,
    group: Group,
    slices: Vec<Arc<EndpointSlice>>,
    max: usize,
    plan: &mut Plan,
) {
    let mut wanted: HashMap<EndpointKey, Endpoint> = HashMap::new();
    let mut order = Vec::new();
    for e in group.endpoints {
        let key = endpoint_key(&e);
        if wanted.insert(key.clone(), e).is_none() {
            order.push(key);
        }
    }
    let mut changed: Vec<EndpointSlice> = Vec::new();
    let mut unchanged: Vec<Arc<EndpointSlice>> = Vec::new();
    for slice in slices {
        let mut dirty = slice.labels() != labels || slice.endpoints.len() > max;
        let mut kept = Vec::new();
        for e in slice.endpoints.iter() {
            match wanted.remove(&endpoint_key(e)) {
                Some(want) if kept.len() < max => {
                    dirty |= want != *e;
                    kept.push(want);
                }
                Some(want) => {
                    // Over the limit (a smaller one than it was written with): placed anew.
                    wanted.insert(endpoint_key(e), want);
                }
                None => dirty = true,
            }
        }
        if kept.is_empty() {
            plan.delete.push(slice);
        } else if dirty {
            let mut next = (*slice).clone();
            next.metadata.labels = Some(labels.clone());
            next.endpoints = kept;
            next.ports = Some(group.ports.clone());
            changed.push(next);
        } else {
            unchanged.push(slice);
        }
    }
    let mut rest: VecDeque<Endpoint> = order.iter().filter_map(|k| wanted.remove(k)).collect();
    changed.sort_by_key(|s| Reverse(s.endpoints.len()));
    for slice in &mut changed {
        while slice.endpoints.len() < max {
            let Some(e) = rest.pop_front() else { break };
            slice.endpoints.push(e);
        }
    }
    while !rest.is_empty() {
        if rest.len() < max {
            let roomy = unchanged
                .iter()
                .enumerate()
                .filter(|(_, s)| s.endpoints.len() + rest.len() <= max)
                .max_by_key(|(_, s)| s.endpoints.len())
                .map(|(i, _)| i);
            if let Some(i) = roomy {
                let mut next = (*unchanged.remove(i)).clone();
                next.endpoints.extend(rest.drain(..));
                changed.push(next);
                break;
            }
        }
        let take = rest.len().min(max);
        let endpoints: Vec<Endpoint> = rest.drain(..take).collect();
        plan.create.push(new_slice(
            svc,
            family,
            labels,
            group.ports.clone(),
            endpoints,
        ));
    }
    plan.update.extend(changed);
}

/// A new slice for `svc`, named by `generateName`, owned by it.
fn new_slice(
    svc: &Service,
    family: &str,
    labels: &BTreeMap<String, String>,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", svc.name_any())),
            namespace: svc.namespace(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![crate::pods::controller_ref(svc)]),
            ..ObjectMeta::default()
        },
        address_type: family.into(),
        endpoints,
        ports: Some(ports),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::tests::{pod, service};
    use serde_json::json;

    fn zones(node: &str) -> Option<Option<String>> {
        match node {
            "node-1" => Some(Some("zone-a".into())),
            "bare" => Some(None),
            _ => None,
        }
    }

    /// `plan`'s creations as they would be stored, named `<svc>-<i>`.
    fn store(plan: &Plan, from: usize) -> Vec<Arc<EndpointSlice>> {
        let mut made: Vec<Arc<EndpointSlice>> = plan
            .update
            .iter()
            .cloned()
            .chain(plan.create.iter().enumerate().map(|(i, s)| {
                let mut s = s.clone();
                s.metadata.name = Some(format!("web-{}", from + i));
                s.metadata.uid = Some(format!("slice-{}", from + i));
                s
            }))
            .map(Arc::new)
            .collect();
        made.sort_by_key(|s| s.name_any());
        made
    }

    fn pods(n: usize) -> Vec<Arc<Pod>> {
        (0..n)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    &format!("10.64.{}.{}", i / 200, i % 200 + 1),
                    true,
                    json!({}),
                )
            })
            .collect()
    }

    #[test]
    fn slices_list_endpoints_with_conditions_zone_and_references() {
        let svc = service(json!({"metadata": {"labels": {"tier": "front",
            "kubernetes.io/service-name": "spoof"}}}));
        let pods = [
            pod("a", "10.64.0.1", true, json!({})),
            pod("b", "10.64.0.2", false, json!({})),
            pod(
                "c",
                "10.64.0.3",
                true,
                json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}),
            ),
            pod(
                "d",
                "10.64.0.4",
                true,
                json!({"spec": {"nodeName": "bare"}}),
            ),
            pod(
                "done",
                "10.64.0.9",
                true,
                json!({"status": {"phase": "Failed"}}),
            ),
        ];
        let (plan, skipped) = plan(&svc, &pods, zones, Vec::new(), 100);
        assert!(skipped.is_empty() && plan.update.is_empty() && plan.delete.is_empty());
        assert_eq!(plan.create.len(), 1);
        let s = &plan.create[0];
        assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(s.address_type, "IPv4");
        let labels = s.labels();
        assert_eq!(labels[SERVICE_NAME], "web");
        assert_eq!(labels[MANAGED_BY], "endpointslice-controller.k8s.io");
        assert_eq!(labels["tier"], "front");
        assert!(!labels.contains_key(HEADLESS_LABEL));
        let owner = &s.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Service", "svc-uid")
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        let port = &s.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.port, port.protocol.as_deref()),
            (Some(""), Some(8080), Some("TCP"))
        );
        let conditions: Vec<(&str, bool, bool, bool)> = s
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.as_ref().unwrap();
                (
                    e.addresses[0].as_str(),
                    c.ready.unwrap(),
                    c.serving.unwrap(),
                    c.terminating.unwrap(),
                )
            })
            .collect();
        assert_eq!(
            conditions,
            [
                ("10.64.0.1", true, true, false),
                ("10.64.0.2", false, false, false),
                ("10.64.0.3", false, true, true),
                ("10.64.0.4", true, true, false),
            ]
        );
        let a = &s.endpoints[0];
        assert_eq!(a.zone.as_deref(), Some("zone-a"));
        assert_eq!(a.node_name.as_deref(), Some("node-1"));
        assert_eq!(a.target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
        assert_eq!(s.endpoints[3].zone, None);
    }

    #[test]
    fn pods_on_unknown_nodes_wait_unless_every_address_is_published() {
        let lost = [pod(
            "a",
            "10.64.0.1",
            true,
            json!({"spec": {"nodeName": "gone"}}),
        )];
        let (plan, skipped) = super::plan(&service(json!({})), &lost, zones, Vec::new(), 100);
        assert_eq!(skipped, ["a"]);
        assert!(plan.create[0].endpoints.is_empty());
        let publish = service(json!({"spec": {"publishNotReadyAddresses": true}}));
        let (plan, skipped) = super::plan(&publish, &lost, zones, Vec::new(), 100);
        assert!(skipped.is_empty());
        assert_eq!(plan.create[0].endpoints.len(), 1);
    }

    #[test]
    fn a_hundred_endpoints_to_a_slice_and_steady_slices_stay_untouched() {
        let svc = service(json!({}));
        let all = pods(250);
        let (first, _) = plan(&svc, &all, zones, Vec::new(), 100);
        let sizes: Vec<usize> = first.create.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let stored = store(&first, 0);
        let (again, _) = plan(&svc, &all, zones, stored.clone(), 100);
        assert!(
            again.create.is_empty() && again.update.is_empty() && again.delete.is_empty(),
            "{again:?}"
        );
        // Ten more pods fit in the half-full slice; only it is written.
        let more = pods(260);
        let (grown, _) = plan(&svc, &more, zones, stored.clone(), 100);
        assert!(grown.create.is_empty() && grown.delete.is_empty());
        assert_eq!(grown.update.len(), 1);
        assert_eq!(grown.update[0].name_any(), "web-2");
        assert_eq!(grown.update[0].endpoints.len(), 60);
        // A pod gone from a full slice: that slice alone is rewritten, and refilled.
        let mut fewer = all.clone();
        fewer.remove(5);
        let (shrunk, _) = plan(&svc, &fewer, zones, stored.clone(), 100);
        assert_eq!(shrunk.update.len(), 1, "{shrunk:?}");
        assert_eq!(shrunk.update[0].name_any(), "web-0");
        assert_eq!(shrunk.update[0].endpoints.len(), 99);
        // One pod's readiness changes: only its slice is rewritten.
        let mut flipped = all.clone();
        flipped[150] = pod("p150", "10.64.0.151", false, json!({}));
        let (one, _) = plan(&svc, &flipped, zones, stored.clone(), 100);
        assert_eq!(one.update.len(), 1);
        assert_eq!(one.update[0].name_any(), "web-1");
        // Everything gone: the slices go, one kept (recycled) as the empty placeholder.
        let (none, _) = plan(&svc, &[], zones, stored, 100);
        assert!(none.create.is_empty(), "{none:?}");
        assert_eq!(none.update.len(), 1);
        assert!(none.update[0].endpoints.is_empty());
        assert_eq!(none.delete.len(), 2);
        let placeholder = store(&none, 10);
        let (still, _) = plan(&svc, &[], zones, placeholder, 100);
        assert!(still.create.is_empty() && still.update.is_empty() && still.delete.is_empty());
    }

    #[test]
    fn pods_serving_different_ports_get_different_slices() {
        let svc = service(
            json!({"spec": {"ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}),
        );
        let pods = [
            pod("a", "10.64.0.1", true, json!({})),
            pod(
                "b",
                "10.64.0.2",
                true,
                json!({"spec": {"containers": [{"name": "app",
                "ports": [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]}]}}),
            ),
            pod(
                "c",
                "10.64.0.3",
                true,
                json!({"spec": {"containers": [{"name": "app"}]}}),
            ),
        ];
        let (plan, _) = plan(&svc, &pods, zones, Vec::new(), 100);
        let shape: Vec<(Vec<Option<i32>>, usize)> = plan
            .create
            .iter()
            .map(|s| {
                (
                    s.ports.iter().flatten().map(|p| p.port).collect(),
                    s.endpoints.len(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [(vec![], 1), (vec![Some(3000)], 1), (vec![Some(8080)], 1)]
        );
    }

    #[test]
    fn foreign_and_mislabelled_slices_are_replaced() {
        let svc = service(json!({"spec": {"clusterIP": "None"}}));
        let all = pods(3);
        let (first, _) = plan(&svc, &all, zones, Vec::new(), 100);
        assert_eq!(first.create[0].labels()[HEADLESS_LABEL], "");
        let mut stored = store(&first, 0);
        // A slice left by an older Service of the same name is deleted, its name reused.
        let mut old = (*stored[0]).clone();
        old.metadata.owner_references.as_mut().unwrap()[0].uid = "old".into();
        let (replaced, _) = plan(&svc, &all, zones, vec![Arc::new(old)], 100);
        assert_eq!(replaced.delete.len(), 1);
        assert_eq!(replaced.create.len(), 1);
        // A slice whose labels were edited is put right.
        let mut edited = (*stored[0]).clone();
        edited
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("x".into(), "y".into());
        stored[0] = Arc::new(edited);
        let (fixed, _) = plan(&svc, &all, zones, stored, 100);
        assert_eq!(fixed.update.len(), 1);
        assert!(!fixed.update[0].labels().contains_key("x"));
    }

    #[test]
    fn recycling_turns_a_create_and_a_delete_into_an_update() {
        let svc = service(json!({}));
        let (made, _) = plan(&svc, &pods(1), zones, Vec::new(), 100);
        let mut old = made.create[0].clone();
        old.metadata.name = Some("web-old".into());
        old.metadata.resource_version = Some("42".into());
        old.metadata.labels = Some(BTreeMap::new());
        let mut p = Plan {
            create: made.create.clone(),
            update: Vec::new(),
            delete: vec![Arc::new(old)],
        };
        p.recycle(|_| true);
        assert!(p.create.is_empty() && p.delete.is_empty());
        assert_eq!(p.update[0].name_any(), "web-old");
        assert_eq!(p.update[0].metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(p.update[0].labels()[SERVICE_NAME], "web");
        assert_eq!(p.update[0].endpoints.len(), 1);
    }
}
