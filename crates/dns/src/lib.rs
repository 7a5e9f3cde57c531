//! Cluster DNS: the names the Kubernetes DNS specification gives Services, their endpoints
//! and Pods (`<svc>.<ns>.svc.cluster.local`, `_<port>._<proto>.<svc>.<ns>.svc...`,
//! `<hostname>.<subdomain>.<ns>.svc...`, `1-2-3-4.<ns>.pod...`, reverse names), answered as
//! CoreDNS's `kubernetes` plugin answers them with the default Corefile, and every other name
//! forwarded to the upstream resolvers.
//!
//! Owns: the model of Services, EndpointSlices and Pods that DNS needs ([`records`]), the pure
//! answer to one query from it ([`answer`]), the UDP and TCP server with forwarding and its
//! cache ([`server`]), and the watches that feed the model ([`feed`]). Must not: call the
//! Kubernetes API anywhere but in [`feed`] (the model and the answers are pure, so everything
//! else is tested without a cluster), touch the store or the host beyond its sockets.
//!
//! Start reading at [`answer::answer`] (which name means what), then [`records::Records`]
//! (what a watch event changes) and [`server::serve`] (sockets, forwarding, truncation).

pub mod answer;
pub mod records;
pub mod server;

use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

pub use answer::{Answer, Transport, answer};
pub use records::{PodMode, Records};
pub use server::{serve, upstreams_from_resolv_conf};

/// Keeps `records` following the cluster through watches of Services, EndpointSlices and
/// Namespaces, and of Pods when pod names are verified ([`PodMode::Verified`]; CoreDNS watches
/// them only then too), until one fails for good (kube-runtime's default backoff retries the
/// passing failures). A relist replaces that kind's objects as a whole once it is complete.
pub async fn feed(
    client: kube::Client,
    records: Arc<RwLock<Records>>,
) -> Result<(), watcher::Error> {
    let verified = read(&records).pod_mode() == PodMode::Verified;
    let services = watch(Api::<Service>::all(client.clone()), &records);
    let slices = watch(Api::<EndpointSlice>::all(client.clone()), &records);
    let namespaces = watch(Api::<Namespace>::all(client.clone()), &records);
    let pods = async {
        if verified {
            watch(Api::<Pod>::all(client), &records).await
        } else {
            std::future::pending().await
        }
    };
    tokio::try_join!(services, slices, namespaces, pods).map(|_| ())
}

fn read(records: &RwLock<Records>) -> std::sync::RwLockReadGuard<'_, Records> {
    records
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The objects one watch applies to the model.
trait Fed: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static {
    fn apply(records: &mut Records, object: &Self);
    fn delete(records: &mut Records, object: &Self);
    fn replace(records: &mut Records, objects: &[Self]);
}

impl Fed for Service {
    fn apply(records: &mut Records, object: &Self) {
        records.apply_service(object);
    }
    fn delete(records: &mut Records, object: &Self) {
        records.delete_service(&object.namespace().unwrap_or_default(), &object.name_any());
    }
    fn replace(records: &mut Records, objects: &[Self]) {
        records.replace_services(objects);
    }
}

impl Fed for EndpointSlice {
    fn apply(records: &mut Records, object: &Self) {
        records.apply_slice(object);
    }
    fn delete(records: &mut Records, object: &Self) {
        records.delete_slice(&object.namespace().unwrap_or_default(), &object.name_any());
    }
    fn replace(records: &mut Records, objects: &[Self]) {
        records.replace_slices(objects);
    }
}

impl Fed for Pod {
    fn apply(records: &mut Records, object: &Self) {
        records.apply_pod(object);
    }
    fn delete(records: &mut Records, object: &Self) {
        records.delete_pod(&object.namespace().unwrap_or_default(), &object.name_any());
    }
    fn replace(records: &mut Records, objects: &[Self]) {
        records.replace_pods(objects);
    }
}

impl Fed for Namespace {
    fn apply(records: &mut Records, object: &Self) {
        records.apply_namespace(object);
    }
    fn delete(records: &mut Records, object: &Self) {
        records.delete_namespace(&object.name_any());
    }
    fn replace(records: &mut Records, objects: &[Self]) {
        records.replace_namespaces(objects);
    }
}

/// Applies one resource's watch events to `records`; the lock is held for one event at a time.
async fn watch<K: Fed>(api: Api<K>, records: &RwLock<Records>) -> Result<(), watcher::Error>
where
    K::DynamicType: Default,
{
    let kind = K::plural(&K::DynamicType::default()).into_owned();
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listed: Vec<K> = Vec::new();
    while let Some(event) = events.next().await {
        // The backoff retries a failed watch; its errors pass by on the way.
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!("dns: watching {kind}: {e}");
                continue;
            }
        };
        let mut records = records
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::Apply(object) => K::apply(&mut records, &object),
            Event::Delete(object) => K::delete(&mut records, &object),
            Event::Init => listed.clear(),
            Event::InitApply(object) => listed.push(object),
            Event::InitDone => {
                K::replace(&mut records, &listed);
                tracing::debug!("dns: {} {kind} listed", listed.len());
                listed.clear();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `feed` can run on a multi-threaded runtime (no lock is held across an await).
    #[test]
    fn feed_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let _ = |client: kube::Client, records: Arc<RwLock<Records>>| {
            assert_send(&feed(client, records));
        };
    }
}
