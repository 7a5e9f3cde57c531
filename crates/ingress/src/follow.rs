//! The watches: Ingresses, IngressClasses, Services, EndpointSlices and TLS Secrets, each
//! kept in a kube-runtime reflector; once all are listed, every burst of changes rebuilds the
//! routing table and the certificates as a whole and brings the Ingresses' status in step.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use rustls::crypto::CryptoProvider;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::proxy::Proxy;
use crate::routes::Table;
use crate::tls::{Certs, Resolver};
use crate::{class, status};

/// How long changes gather, from the first, before the table is rebuilt once for all of them.
const SETTLE: Duration = Duration::from_millis(50);

/// How long after a failed status write it is tried again.
const STATUS_RETRY: Duration = Duration::from_secs(1);

/// Where a rebuild's results go.
pub(crate) struct Sinks {
    pub(crate) class: String,
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) resolver: Arc<Resolver>,
    pub(crate) provider: Arc<CryptoProvider>,
    pub(crate) status: status::Writer,
    /// The certificates the last rebuild loaded.
    pub(crate) loaded: crate::tls::Loaded,
}

/// The reflectors' caches.
struct Stores {
    ingresses: Store<Ingress>,
    classes: Store<IngressClass>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    secrets: Store<Secret>,
}

/// One watch's events: its index, and whether the event completed a listing.
type Events = BoxStream<'static, (usize, Result<bool, watcher::Error>)>;

/// Follows the cluster and keeps `sinks` in step until `shutdown` (or until the watches end).
pub(crate) async fn follow(
    client: kube::Client,
    mut sinks: Sinks,
    shutdown: impl Future<Output = ()>,
) {
    let all = watcher::Config::default();
    let (ingresses, e0) = reflect(Api::all(client.clone()), all.clone(), 0);
    let (classes, e1) = reflect(Api::all(client.clone()), all.clone(), 1);
    let (services, e2) = reflect(Api::all(client.clone()), all.clone(), 2);
    let (slices, e3) = reflect(Api::all(client.clone()), all, 3);
    let tls_only = watcher::Config::default().fields("type=kubernetes.io/tls");
    let (secrets, e4) = reflect(Api::all(client), tls_only, 4);
    let stores = Stores {
        ingresses,
        classes,
        services,
        slices,
        secrets,
    };
    let mut events = futures::stream::select_all([e0, e1, e2, e3, e4]);
    let mut listed = [false; 5];
    let mut shutdown = std::pin::pin!(shutdown);
    // When the changes gathered so far are acted on: a burst is bounded by SETTLE, however
    // steady the stream of changes.
    let mut settle_at: Option<Instant> = None;
    let mut retry: Option<Instant> = None;
    loop {
        let ready = listed.iter().all(|l| *l);
        let rebuild_at = settle_at.filter(|_| ready);
        tokio::select! {
            () = &mut shutdown => break,
            event = events.next() => match event {
                Some((which, Ok(done))) => {
                    listed[which] |= done;
                    settle_at.get_or_insert_with(|| Instant::now() + SETTLE);
                }
                Some((_, Err(e))) => tracing::warn!("ingress controller's watch: {e}"),
                None => break,
            },
            () = sleep_until(rebuild_at), if rebuild_at.is_some() => {
                settle_at = None;
                let written = rebuild(&stores, &mut sinks).await;
                retry = (!written).then(|| Instant::now() + STATUS_RETRY);
            }
            () = sleep_until(retry), if retry.is_some() => {
                retry = None;
                settle_at.get_or_insert_with(Instant::now);
            }
        }
    }
}

/// Sleeps until `at` (at once for none; the caller guards that case).
async fn sleep_until(at: Option<Instant>) {
    tokio::time::sleep_until(at.unwrap_or_else(Instant::now)).await;
}

/// A reflector over `api`'s objects, and its events tagged `index`.
fn reflect<K>(api: Api<K>, config: watcher::Config, index: usize) -> (Store<K>, Events)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (store, writer) = reflector::store();
    let events = reflector::reflector(writer, watcher(api, config))
        .default_backoff()
        .map(move |e| (index, e.map(|e| matches!(e, watcher::Event::InitDone))))
        .boxed();
    (store, events)
}

/// Rebuilds the table and the certificates, and writes the status (ours, and others' that
/// still list our addresses); false if a status write failed.
async fn rebuild(stores: &Stores, sinks: &mut Sinks) -> bool {
    let ingresses = stores.ingresses.state();
    let classes = stores.classes.state();
    let ours = class::ours(
        &sinks.class,
        ingresses.iter().map(Arc::as_ref),
        classes.iter().map(Arc::as_ref),
    );
    let default = class::is_default(&sinks.class, classes.iter().map(Arc::as_ref));
    let others: Vec<&Ingress> = ingresses
        .iter()
        .map(Arc::as_ref)
        .filter(|i| !class::owns(&sinks.class, default, i))
        .collect();
    let services = stores.services.state();
    let slices = stores.slices.state();
    let secrets = stores.secrets.state();
    let table = Table::build(&ours, &refs(&services), &refs(&slices));
    let certs = Certs::build(&ours, &refs(&secrets), &sinks.provider, &mut sinks.loaded);
    tracing::debug!(
        ingresses = ours.len(),
        rules = table.len(),
        certificates = certs.len(),
        "ingress routes rebuilt"
    );
    sinks.proxy.set_table(table);
    sinks.resolver.set(certs);
    sinks.status.sync(&ours, &others).await
}

fn refs<K>(objects: &[Arc<K>]) -> Vec<&K> {
    objects.iter().map(Arc::as_ref).collect()
}
