//! The endpoints controller (`endpoints-controller`), as upstream's: every Service with a
//! selector gets an Endpoints object of its name that lists the addresses of the pods it
//! selects, ready ones under `addresses`, the others under `notReadyAddresses`, grouped into
//! subsets by the ports they serve (a named `targetPort` is looked up in each pod, so pods
//! without it are left out of that port). Endpoints of Services without a selector are left
//! to whoever writes them; the Endpoints of a deleted Service are deleted (they have no
//! owner), and so are, once at start, leftover ones whose Service is gone.
//!
//! The pure part ([`subsets`], [`desired`]) builds the object and compares it with the one
//! stored, so nothing is written unless its content changes. The helpers that say which pods
//! a Service publishes and on which ports are shared with the EndpointSlice controllers.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::events::{self, Recorder, Type};
use crate::runtime::{self, Informers, Shared};

/// The controller's name.
const NAME: &str = "endpoints-controller";

/// Label on the Endpoints (and EndpointSlices) of a Service without a cluster IP.
pub(crate) const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// Annotation set to `truncated` on Endpoints that list only [`MAX_ADDRESSES`] of their
/// addresses.
const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

/// Annotation of the Endpoints that old leader elections used as locks: never deleted.
pub(crate) const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// The most addresses (ready and not) one Endpoints object lists.
const MAX_ADDRESSES: usize = 1000;

struct Ctx {
    client: kube::Client,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    recorder: Recorder,
}

/// Starts the controller: one loop over Services (woken by their pods and their Endpoints),
/// one that deletes the Endpoints of Services that are gone.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let services = informers.store::<Service>();
    let endpoints = informers.store::<Endpoints>();
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        services: services.clone(),
        pods: informers.store::<Pod>(),
        endpoints: endpoints.clone(),
        recorder: shared.recorder(NAME),
    });
    let (by_pod, listed) = (services.clone(), endpoints.clone());
    let sync = Controller::for_stream(informers.subscribe::<Service>(), services.clone())
        .watches_stream(informers.subscribe::<Pod>(), move |pod: Pod| {
            services_of(&by_pod, &pod, |svc| {
                listed
                    .get(&same_name::<Service, Endpoints>(svc))
                    .is_some_and(|ep| lists(&ep, &pod))
            })
        })
        .watches_stream(informers.subscribe::<Endpoints>(), |ep: Endpoints| {
            Some(same_name(&ep))
        });
    let cleanup = Controller::for_stream(after_sync(shared, endpoints.clone()), endpoints)
        .reconcile_on(
            deleted(informers.subscribe::<Service>(), services)
                .map(|svc| same_name::<Service, Endpoints>(&svc)),
        );
    futures::future::join(
        runtime::run(NAME, sync, shared, ctx.clone(), reconcile),
        runtime::run(NAME, cleanup, shared, ctx, remove_orphan),
    )
    .map(|_| ())
    .boxed()
}

/// The object of kind `B` with the name and namespace of `obj`.
pub(crate) fn same_name<A: kube::Resource, B: kube::Resource<DynamicType = ()>>(
    obj: &A,
) -> ObjectRef<B> {
    ObjectRef::new(&obj.name_any()).within(&obj.namespace().unwrap_or_default())
}

/// Every object `store` holds once the caches are filled, then nothing more: a controller
/// over it visits each object once at start.
fn after_sync<K: runtime::Watched>(
    shared: &Shared,
    store: Store<K>,
) -> impl futures::Stream<Item = Result<K, kube::runtime::watcher::Error>> + Send + 'static {
    let shared = shared.clone();
    futures::stream::once(async move {
        shared.synced().await;
        futures::stream::iter(store.state())
    })
    .flatten()
    .map(|obj| Ok((*obj).clone()))
    .chain(futures::stream::pending())
}

/// The objects of `changes` that `store` no longer holds: the deleted ones.
pub(crate) fn deleted<K: runtime::Watched>(
    changes: impl futures::Stream<Item = Result<K, kube::runtime::watcher::Error>> + Send + 'static,
    store: Store<K>,
) -> impl futures::Stream<Item = K> + Send + 'static {
    changes.filter_map(move |change| {
        let gone = change
            .ok()
            .filter(|obj| store.get(&ObjectRef::from_obj(obj)).is_none());
        futures::future::ready(gone)
    })
}

/// The Services of `pod`'s namespace a change of `pod` concerns: those that select it, and
/// those for which `lists` says their published objects list it (it may have left them).
pub(crate) fn services_of(
    services: &Store<Service>,
    pod: &Pod,
    lists: impl Fn(&Service) -> bool,
) -> Vec<ObjectRef<Service>> {
    let ns = pod.namespace();
    services
        .state()
        .into_iter()
        .filter(|svc| svc.namespace() == ns)
        .filter(|svc| published(svc).is_some_and(|sel| matches(sel, pod)) || lists(svc))
        .map(|svc| ObjectRef::from_obj(svc.as_ref()))
        .collect()
}

/// Whether `ep` lists `pod` among its addresses.
fn lists(ep: &Endpoints, pod: &Pod) -> bool {
    let name = pod.name_any();
    ep.subsets.iter().flatten().any(|s| {
        s.addresses
            .iter()
            .chain(s.not_ready_addresses.iter())
            .flatten()
            .any(|a| {
                a.target_ref
                    .as_ref()
                    .is_some_and(|r| r.name.as_deref() == Some(name.as_str()))
            })
    })
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> runtime::Result<Action> {
    let Some(sel) = published(&svc) else {
        return Ok(Action::await_change());
    };
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let pods = selected(&ctx.pods, &ns, sel);
    let current = ctx.endpoints.get(&same_name(svc.as_ref()));
    let Some(want) = desired(&svc, current.as_deref(), subsets(&svc, &pods)) else {
        return Ok(Action::await_change());
    };
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let written = match &current {
        None => api.create(&PostParams::default(), &want).await,
        Some(_) => api.replace(&name, &PostParams::default(), &want).await,
    };
    match written {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if stale(&e) => Ok(Action::requeue(STALE_RETRY)),
        Err(e) if current.is_none() && crate::serviceaccount::namespace_terminating(&e) => {
            Ok(Action::await_change())
        }
        Err(e) => {
            let (reason, what) = match current {
                None => ("FailedToCreateEndpoint", "create endpoint for service"),
                Some(_) => ("FailedToUpdateEndpoint", "update endpoint"),
            };
            let note = format!("Failed to {what} {ns}/{name}: {e}");
            let target = events::reference(&want);
            ctx.recorder
                .publish(&target, Type::Warning, reason, &note)
                .await;
            Err(e.into())
        }
    }
}

/// How soon work refused for a stale cache is tried again (the cache's catching up usually
/// triggers it sooner).
pub(crate) const STALE_RETRY: Duration = Duration::from_secs(1);

/// Whether a write was refused because the cache it was computed from is behind (the object
/// changed, or already exists): not a failure, the work is redone once the cache catches up,
/// as upstream's EndpointSlice controller quietly waits for its cache.
pub(crate) fn stale(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Deletes an Endpoints object whose Service is gone (unless it is an old leader-election
/// lock).
async fn remove_orphan(ep: Arc<Endpoints>, ctx: Arc<Ctx>) -> runtime::Result<Action> {
    let leader = ep.annotations().contains_key(LEADER_ANNOTATION);
    if leader || ctx.services.get(&same_name(ep.as_ref())).is_some() {
        return Ok(Action::await_change());
    }
    let api: Api<Endpoints> =
        Api::namespaced(ctx.client.clone(), &ep.namespace().unwrap_or_default());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: ep.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&ep.name_any(), &params).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// The selector of the pods `svc` publishes: none for a Service without one (its endpoints
/// are written by hand) or an ExternalName Service (it has no endpoints).
pub(crate) fn published(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let external = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
    selector(svc).filter(|_| !external)
}

/// The selector of `svc`, unless it has none (a missing or empty selector selects nothing:
/// such Services' endpoints are written by hand).
pub(crate) fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// Whether `pod`'s labels carry every pair of `selector`.
fn matches(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.labels();
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The pods of namespace `ns` that `selector` selects, by name.
pub(crate) fn selected(
    pods: &Store<Pod>,
    ns: &str,
    selector: &BTreeMap<String, String>,
) -> Vec<Arc<Pod>> {
    let mut found: Vec<Arc<Pod>> = pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns) && matches(selector, p))
        .collect();
    found.sort_by_key(|p| p.name_any());
    found
}

/// Whether `pod` is published at all: not finished, with an IP, and not terminating unless
/// `include_terminating` (upstream's `ShouldPodBeInEndpoints`).
pub(crate) fn publishable(pod: &Pod, include_terminating: bool) -> bool {
    !pod::is_terminal(pod)
        && !pod_ips(pod).is_empty()
        && (include_terminating || !pod::is_terminating(pod))
}

/// The pod's IPs: `status.podIPs`, or `status.podIP`.
pub(crate) fn pod_ips(pod: &Pod) -> Vec<&str> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let listed: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.as_str())
        .filter(|ip| !ip.is_empty())
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    status
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
        .into_iter()
        .collect()
}

/// `IPv4` or `IPv6` for an address, nothing for what is not one.
pub(crate) fn family(ip: &str) -> Option<&'static str> {
    ip.parse::<IpAddr>()
        .ok()
        .map(|a| if a.is_ipv4() { "IPv4" } else { "IPv6" })
}

/// Whether `svc` has no cluster IP (headless, or an ExternalName).
pub(crate) fn is_headless(svc: &Service) -> bool {
    let ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
    matches!(ip, None | Some("" | "None"))
}

/// The IP families `svc` serves: its `ipFamilies`, else that of its cluster IP, else IPv4.
pub(crate) fn families(svc: &Service) -> Vec<&'static str> {
    let spec = svc.spec.as_ref();
    let listed: Vec<&'static str> = spec
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|f| match f.as_str() {
            "IPv4" => Some("IPv4"),
            "IPv6" => Some("IPv6"),
            _ => None,
        })
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    let by_ip = spec.and_then(|s| s.cluster_ip.as_deref()).and_then(family);
    vec![by_ip.unwrap_or("IPv4")]
}

/// The pod's hostname, when it names itself under `svc` (`spec.hostname`, with `svc` as
/// its `spec.subdomain`).
pub(crate) fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let under = spec.subdomain.as_deref() == Some(svc.name_any().as_str())
        && pod.namespace() == svc.namespace();
    under.then(|| host.to_string())
}

/// A reference to `pod` for an address's `targetRef`.
pub(crate) fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: Some(pod.name_any()),
        uid: pod.uid(),
        ..ObjectReference::default()
    }
}

/// The port of `pod` that `port` forwards to: its number, or the container port named by it
/// (regular containers first, then sidecars), of the same protocol. Nothing when the pod has
/// no such port.
pub(crate) fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let name = match &port.target_port {
        None => return Some(port.port),
        Some(IntOrString::Int(n)) => return Some(*n),
        Some(IntOrString::String(name)) => name,
    };
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    let spec = pod.spec.as_ref()?;
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name.as_str())
                && p.protocol.as_deref().unwrap_or("TCP") == protocol
        })
        .map(|p| p.container_port)
}

/// The address of `pod` for `svc`: its IP of the Service's first family, with its node,
/// hostname and a reference to it. Nothing when it has no IP of that family.
fn address(svc: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let ips = pod_ips(pod);
    let want = families(svc)[0];
    let ip = ips.iter().find(|ip| family(ip) == Some(want))?;
    Some(EndpointAddress {
        ip: ip.to_string(),
        hostname: hostname(pod, svc),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(target_ref(pod)),
    })
}

/// One address serving one port (or none, for a headless Service without ports): the
/// expanded form subsets are packed from.
type Entry = (EndpointAddress, bool, Option<EndpointPort>);

/// The subsets listing `pods` (those `svc` selects) for `svc`, packed: each subset holds the
/// ports served by exactly the same addresses. A pod lacking a port's named target is left
/// out of that port; terminating pods are left out unless `publishNotReadyAddresses`, which
/// also counts every pod ready.
fn subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish_all = spec.publish_not_ready_addresses == Some(true);
    let ports = spec.ports.unwrap_or_default();
    let portless = spec.cluster_ip.as_deref() == Some("None") && ports.is_empty();
    let mut entries: Vec<Entry> = Vec::new();
    for pod in pods {
        if !publishable(pod, publish_all) {
            continue;
        }
        let Some(addr) = address(svc, pod) else {
            continue;
        };
        let ready = publish_all || crate::pods::is_ready(pod);
        if portless {
            entries.push((addr, ready, None));
            continue;
        }
        for port in &ports {
            if let Some(number) = find_port(pod, port) {
                let served = EndpointPort {
                    name: port.name.clone().filter(|n| !n.is_empty()),
                    port: number,
                    protocol: port.protocol.clone(),
                    app_protocol: port.app_protocol.clone(),
                };
                entries.push((addr.clone(), ready, Some(served)));
            }
        }
    }
    repack(entries)
}

/// Every (address, readiness, port) that `subsets` lists.
pub(crate) fn expand(subsets: &[EndpointSubset]) -> Vec<Entry> {
    let mut entries = Vec::new();
    for s in subsets {
        let ports: Vec<Option<EndpointPort>> = match s.ports.as_deref() {
            None | Some([]) => vec![None],
            Some(ps) => ps.iter().cloned().map(Some).collect(),
        };
        let addresses = s.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = s.not_ready_addresses.iter().flatten().map(|a| (a, false));
        for (addr, ready) in addresses.chain(not_ready) {
            for port in &ports {
                entries.push((addr.clone(), ready, port.clone()));
            }
        }
    }
    entries
}

/// An address's identity: its IP and the uid of what it points at.
type AddressKey = (String, String);

/// A port's identity: name, number, protocol, application protocol.
type PortKey = (Option<String>, i32, Option<String>, Option<String>);

/// The addresses serving one port, and whether each is ready there.
type Members = BTreeMap<AddressKey, bool>;

/// Packs `entries` into the canonical subsets (upstream's `RepackSubsets`): addresses that
/// serve exactly the same ports share one subset; an address not ready on some port is not
/// ready there. Everything comes out sorted, so two packings of the same entries are equal.
pub(crate) fn repack(entries: Vec<Entry>) -> Vec<EndpointSubset> {
    let mut addresses: BTreeMap<AddressKey, EndpointAddress> = BTreeMap::new();
    let mut by_port: BTreeMap<Option<PortKey>, (Option<EndpointPort>, Members)> = BTreeMap::new();
    for (addr, ready, port) in entries {
        let key = (
            addr.ip.clone(),
            addr.target_ref
                .as_ref()
                .and_then(|r| r.uid.clone())
                .unwrap_or_default(),
        );
        addresses.entry(key.clone()).or_insert(addr);
        let port_key = port.as_ref().map(|p| {
            (
                p.name.clone(),
                p.port,
                p.protocol.clone(),
                p.app_protocol.clone(),
            )
        });
        let (_, members) = by_port
            .entry(port_key)
            .or_insert_with(|| (port, BTreeMap::new()));
        let was = members.entry(key).or_insert(ready);
        *was = *was && ready;
    }
    let mut groups: BTreeMap<Vec<(AddressKey, bool)>, Vec<EndpointPort>> = BTreeMap::new();
    for (port, members) in by_port.into_values() {
        let ports = groups.entry(members.into_iter().collect()).or_default();
        ports.extend(port);
    }
    groups
        .into_iter()
        .map(|(members, ports)| {
            let pick = |ready: bool| {
                let list: Vec<EndpointAddress> = members
                    .iter()
                    .filter(|(_, r)| *r == ready)
                    .map(|(k, _)| addresses[k].clone())
                    .collect();
                (!list.is_empty()).then_some(list)
            };
            EndpointSubset {
                addresses: pick(true),
                not_ready_addresses: pick(false),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

/// Cuts `subsets` down to `max` addresses, sharing the room among the subsets in proportion
/// to their sizes (upstream's rule): ready addresses are kept first; when they alone are too
/// many, no not-ready address is kept. Whether anything was cut.
fn truncate(subsets: &mut [EndpointSubset], max: usize) -> bool {
    let count = |l: &Option<Vec<EndpointAddress>>| l.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if ready + not_ready <= max {
        return false;
    }
    let cut_ready = ready > max;
    let (room, total) = if cut_ready {
        (max, ready)
    } else {
        (max - ready, not_ready)
    };
    let mut left = room;
    for s in subsets {
        if cut_ready {
            s.not_ready_addresses = None;
        }
        let list = if cut_ready {
            &mut s.addresses
        } else {
            &mut s.not_ready_addresses
        };
        if let Some(l) = list {
            let share = (l.len() * room).div_ceil(total).min(left);
            l.truncate(share);
            left -= l.len();
        }
    }
    true
}

/// The labels of `svc`'s Endpoints and EndpointSlices: the Service's, with
/// [`HEADLESS_LABEL`] for a Service without a cluster IP.
fn labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

/// The Endpoints `svc` should have, listing `subsets` (at most [`MAX_ADDRESSES`] of their
/// addresses, with [`OVER_CAPACITY`] when cut), built on `current` (the stored one, whose
/// other annotations and metadata are kept). Nothing when `current` already says the same.
fn desired(
    svc: &Service,
    current: Option<&Endpoints>,
    mut subsets: Vec<EndpointSubset>,
) -> Option<Endpoints> {
    let truncated = truncate(&mut subsets, MAX_ADDRESSES);
    let subsets = repack(expand(&subsets));
    let labels = labels(svc);
    if let Some(cur) = current {
        let stored = repack(expand(cur.subsets.as_deref().unwrap_or_default()));
        let flagged = cur.annotations().get(OVER_CAPACITY).map(String::as_str);
        if stored == subsets
            && cur.labels() == &labels
            && flagged == truncated.then_some("truncated")
        {
            return None;
        }
    }
    let mut want = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: kube::api::ObjectMeta {
            name: Some(svc.name_any()),
            namespace: svc.namespace(),
            ..Default::default()
        },
        ..Endpoints::default()
    });
    want.metadata.labels = (!labels.is_empty()).then_some(labels);
    let annotations = want.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    if annotations.is_empty() {
        want.metadata.annotations = None;
    }
    want.subsets = (!subsets.is_empty()).then_some(subsets);
    Some(want)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::merge;
    use serde_json::{Value, json};

    pub(crate) fn service(v: Value) -> Service {
        let mut base = json!({"metadata": {"name": "web", "namespace": "default", "uid": "svc-uid"},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.43.0.10",
                     "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}});
        merge(&mut base, v);
        serde_json::from_value(base).unwrap()
    }

    /// A running pod named `name` with IP `ip` on node-1, ready or not.
    pub(crate) fn pod(name: &str, ip: &str, ready: bool, extra: Value) -> Arc<Pod> {
        let mut base = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "app",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
        merge(&mut base, extra);
        Arc::new(serde_json::from_value(base).unwrap())
    }

    fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        list.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn ready_and_not_ready_pods_are_listed_apart_with_their_references() {
        let svc = service(json!({}));
        let pods = [
            pod("b", "10.64.0.2", true, json!({})),
            pod("a", "10.64.0.1", true, json!({})),
            pod("c", "10.64.0.3", false, json!({})),
            pod("no-ip", "", true, json!({"status": {"podIPs": []}})),
            pod(
                "done",
                "10.64.0.9",
                true,
                json!({"status": {"phase": "Succeeded"}}),
            ),
            pod(
                "going",
                "10.64.0.8",
                true,
                json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}),
            ),
        ];
        let subsets = subsets(&svc, &pods);
        assert_eq!(subsets.len(), 1, "{subsets:?}");
        let s = &subsets[0];
        assert_eq!(ips(&s.addresses), ["10.64.0.1", "10.64.0.2"]);
        assert_eq!(ips(&s.not_ready_addresses), ["10.64.0.3"]);
        let ports = s.ports.as_ref().unwrap();
        assert_eq!(
            (ports[0].port, ports[0].protocol.as_deref()),
            (8080, Some("TCP"))
        );
        let a = &s.addresses.as_ref().unwrap()[0];
        assert_eq!(a.node_name.as_deref(), Some("node-1"));
        let r = a.target_ref.as_ref().unwrap();
        assert_eq!(
            (
                r.kind.as_deref(),
                r.namespace.as_deref(),
                r.name.as_deref(),
                r.uid.as_deref()
            ),
            (Some("Pod"), Some("default"), Some("a"), Some("uid-a"))
        );
        assert_eq!(a.hostname, None);
    }

    #[test]
    fn publishing_not_ready_addresses_counts_every_pod_ready_even_terminating() {
        let svc = service(json!({"spec": {"publishNotReadyAddresses": true}}));
        let pods = [
            pod("a", "10.64.0.1", false, json!({})),
            pod(
                "going",
                "10.64.0.8",
                true,
                json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}),
            ),
        ];
        let subsets = subsets(&svc, &pods);
        assert_eq!(ips(&subsets[0].addresses), ["10.64.0.1", "10.64.0.8"]);
        assert_eq!(subsets[0].not_ready_addresses, None);
    }

    #[test]
    fn named_target_ports_resolve_per_pod_and_split_subsets() {
        let svc = service(json!({"spec": {"ports": [
            {"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"},
            {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}]}}));
        let other = json!({"spec": {"containers": [{"name": "app",
            "ports": [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]}]}});
        let none = json!({"spec": {"containers": [{"name": "app"}]}});
        let udp = json!({"spec": {"containers": [{"name": "app",
            "ports": [{"name": "http", "containerPort": 53, "protocol": "UDP"}]}]}});
        let pods = [
            pod("a", "10.64.0.1", true, json!({})),
            pod("b", "10.64.0.2", true, other),
            pod("c", "10.64.0.3", true, none),
            pod("d", "10.64.0.4", true, udp),
        ];
        let subsets = subsets(&svc, &pods);
        let shape: Vec<_> = subsets
            .iter()
            .map(|s| {
                let ports = s.ports.iter().flatten();
                (
                    ips(&s.addresses),
                    ports.map(|p| (p.name.as_deref(), p.port)).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                (vec!["10.64.0.1"], vec![(Some("web"), 8080)]),
                (
                    vec!["10.64.0.1", "10.64.0.2", "10.64.0.3", "10.64.0.4"],
                    vec![(Some("metrics"), 9090)]
                ),
                (vec!["10.64.0.2"], vec![(Some("web"), 3000)]),
            ]
        );
        assert_eq!(
            subsets[0].ports.as_ref().unwrap()[0]
                .app_protocol
                .as_deref(),
            Some("http")
        );
        // A sidecar's port counts; an ordinary init container's does not.
        let sidecar = pod(
            "s",
            "10.64.0.5",
            true,
            json!({"spec": {"containers": [{"name": "app"}],
            "initContainers": [
                {"name": "setup", "ports": [{"name": "http", "containerPort": 1, "protocol": "TCP"}]},
                {"name": "proxy", "restartPolicy": "Always",
                 "ports": [{"name": "http", "containerPort": 15001, "protocol": "TCP"}]}]}}),
        );
        let web = &svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
        assert_eq!(find_port(&sidecar, web), Some(15001));
    }

    #[test]
    fn headless_services_list_pods_without_ports_and_hostnames_follow_the_subdomain() {
        let svc = service(json!({"spec": {"clusterIP": "None", "ports": null}}));
        let named = json!({"spec": {"hostname": "db-0", "subdomain": "web"}});
        let elsewhere = json!({"spec": {"hostname": "x", "subdomain": "other"}});
        let pods = [
            pod("a", "10.64.0.1", true, named),
            pod("b", "10.64.0.2", true, elsewhere),
        ];
        let subsets = subsets(&svc, &pods);
        assert_eq!(subsets.len(), 1);
        assert_eq!(subsets[0].ports, None);
        let hosts: Vec<Option<&str>> = subsets[0]
            .addresses
            .iter()
            .flatten()
            .map(|a| a.hostname.as_deref())
            .collect();
        assert_eq!(hosts, [Some("db-0"), None]);
        let want = desired(&svc, None, subsets).unwrap();
        assert_eq!(
            want.labels().get(HEADLESS_LABEL).map(String::as_str),
            Some("")
        );
        // A ClusterIP Service without ports publishes nothing.
        let plain = service(json!({"spec": {"ports": null}}));
        assert!(super::subsets(&plain, &pods).is_empty());
    }

    #[test]
    fn repacking_is_canonical_and_not_ready_wins() {
        let addr = |ip: &str| EndpointAddress {
            ip: ip.into(),
            ..Default::default()
        };
        let port = |n: i32| {
            Some(EndpointPort {
                port: n,
                ..Default::default()
            })
        };
        let a = repack(vec![
            (addr("10.0.0.2"), true, port(80)),
            (addr("10.0.0.1"), true, port(80)),
            (addr("10.0.0.1"), true, port(443)),
            (addr("10.0.0.2"), false, port(443)),
            (addr("10.0.0.2"), true, port(443)),
        ]);
        let b = repack(expand(&a).into_iter().rev().collect());
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
        let with_443 = a
            .iter()
            .find(|s| s.ports.as_ref().unwrap()[0].port == 443)
            .unwrap();
        assert_eq!(ips(&with_443.not_ready_addresses), ["10.0.0.2"]);
        assert_eq!(ips(&with_443.addresses), ["10.0.0.1"]);
    }

    #[test]
    fn unchanged_endpoints_are_not_rewritten() {
        let svc = service(json!({"metadata": {"labels": {"tier": "front"}}}));
        let pods = [
            pod("a", "10.64.0.1", true, json!({})),
            pod("b", "10.64.0.2", false, json!({})),
        ];
        let first = desired(&svc, None, subsets(&svc, &pods)).unwrap();
        assert_eq!(
            first.labels().get("tier").map(String::as_str),
            Some("front")
        );
        assert_eq!(first.labels().get(HEADLESS_LABEL), None);
        let mut stored = first.clone();
        stored.metadata.resource_version = Some("7".into());
        stored.metadata.annotations = Some([("note".to_string(), "kept".to_string())].into());
        assert_eq!(desired(&svc, Some(&stored), subsets(&svc, &pods)), None);
        // Pods given in another order change nothing either.
        let reversed: Vec<_> = pods.iter().rev().cloned().collect();
        assert_eq!(desired(&svc, Some(&stored), subsets(&svc, &reversed)), None);
        // A pod turning ready is written, over what is stored.
        let ready = [pods[0].clone(), pod("b", "10.64.0.2", true, json!({}))];
        let next = desired(&svc, Some(&stored), subsets(&svc, &ready)).unwrap();
        assert_eq!(next.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(
            next.annotations().get("note").map(String::as_str),
            Some("kept")
        );
        assert_eq!(
            ips(&next.subsets.as_ref().unwrap()[0].addresses),
            ["10.64.0.1", "10.64.0.2"]
        );
        // No pods: an Endpoints without subsets.
        let empty = desired(&svc, Some(&stored), Vec::new()).unwrap();
        assert_eq!(empty.subsets, None);
        assert_eq!(desired(&svc, Some(&empty), Vec::new()), None);
    }

    #[test]
    fn over_a_thousand_addresses_are_truncated_and_flagged() {
        let svc = service(json!({}));
        let pods: Vec<Arc<Pod>> = (0..1200)
            .map(|i| {
                let ip = format!("10.64.{}.{}", i / 250, i % 250 + 1);
                pod(&format!("p{i:04}"), &ip, i % 4 != 0, json!({}))
            })
            .collect();
        let want = desired(&svc, None, subsets(&svc, &pods)).unwrap();
        assert_eq!(
            want.annotations().get(OVER_CAPACITY).map(String::as_str),
            Some("truncated")
        );
        let s = &want.subsets.as_ref().unwrap()[0];
        // 900 ready ones are all kept; the 300 not ready share the 100 places left.
        assert_eq!(s.addresses.as_ref().unwrap().len(), 900);
        assert_eq!(s.not_ready_addresses.as_ref().unwrap().len(), 100);
        assert_eq!(desired(&svc, Some(&want), subsets(&svc, &pods)), None);
        // Back under capacity, the flag goes.
        let fewer = desired(&svc, Some(&want), subsets(&svc, &pods[..10])).unwrap();
        assert_eq!(fewer.annotations().get(OVER_CAPACITY), None);
    }

    #[test]
    fn truncation_shares_the_room_in_proportion() {
        let addr = |i: usize| EndpointAddress {
            ip: format!("10.0.{}.{}", i / 200, i % 200),
            ..Default::default()
        };
        let list = |from: usize, n: usize| Some((from..from + n).map(addr).collect::<Vec<_>>());
        let mut subsets = vec![
            EndpointSubset {
                addresses: list(0, 900),
                not_ready_addresses: list(5000, 10),
                ..Default::default()
            },
            EndpointSubset {
                addresses: list(2000, 300),
                ..Default::default()
            },
        ];
        assert!(truncate(&mut subsets, 1000));
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 750);
        assert_eq!(subsets[0].not_ready_addresses, None);
        assert_eq!(subsets[1].addresses.as_ref().unwrap().len(), 250);
        let mut small = vec![EndpointSubset {
            addresses: list(0, 3),
            ..Default::default()
        }];
        assert!(!truncate(&mut small, 1000));
    }

    #[test]
    fn services_without_a_selector_have_none() {
        assert!(selector(&service(json!({"spec": {"selector": null}}))).is_none());
        let mut empty = service(json!({}));
        empty.spec.as_mut().unwrap().selector = Some(BTreeMap::new());
        assert!(selector(&empty).is_none());
        assert!(selector(&service(json!({}))).is_some());
        assert!(published(&service(json!({"spec": {"type": "ExternalName"}}))).is_none());
        assert!(is_headless(&service(
            json!({"spec": {"clusterIP": "None"}})
        )));
        assert!(!is_headless(&service(json!({}))));
        assert_eq!(families(&service(json!({}))), ["IPv4"]);
        assert_eq!(
            families(&service(json!({"spec": {"ipFamilies": ["IPv6", "IPv4"]}}))),
            ["IPv6", "IPv4"]
        );
    }
}
