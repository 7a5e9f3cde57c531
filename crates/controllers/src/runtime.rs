//! What every controller stands on: shared informers (one watch and one cache per resource,
//! followed by every controller that needs it, as upstream's SharedInformerFactory) and a
//! runner that turns a reconcile function into a kube-runtime [`Controller`] that waits for
//! the caches, backs off per object on errors and survives a panicking reconcile.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::Instrument as _;

/// What a reconcile may fail with (the object is tried again after a back-off), or
/// starting the controllers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed. Its text is the error's and its sources', joined by `: `.
    #[error("{}", chain(.0))]
    Api(kube::Error),
    /// A JSON document (a patch, an object) could not be made or read.
    #[error("{}", chain(.0))]
    Json(serde_json::Error),
    /// The reconcile cannot finish yet: an object in the way, a node not found, no room
    /// left, a panic; the message says what.
    #[error("{0}")]
    Failed(String),
    /// A step of a reconcile failed.
    #[error("{what}: {source}")]
    Step {
        /// The step, e.g. `removing the tracking finalizer`.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: Box<Error>,
    },
    /// The options are not valid; the message says which and why.
    #[error("{0}")]
    Options(String),
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Error {
        Error::Api(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::Json(e)
    }
}

/// An error and its sources, joined by `: `.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A reconcile's outcome.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A resource the informers can follow.
pub trait Watched:
    Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
}

impl<K> Watched for K where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
}

/// One resource's shared watch: the cache every user reads, the subscribers it feeds, and
/// the writer that keeps the cache until [`Informers::start`] takes it.
struct Informer<K: Watched> {
    store: Store<K>,
    writer: Option<reflector::store::Writer<K>>,
    subscribers: Vec<mpsc::UnboundedSender<K>>,
}

/// The shared informers of one controller-manager run. Controllers ask for caches
/// ([`Informers::store`]) and change streams ([`Informers::subscribe`]) while they are
/// built; [`Informers::start`] then starts one watch per resource asked for.
///
/// Every subscriber sees every object as it is listed, changed **or deleted** (the deleted
/// object itself), always after the cache has taken the change, so a reconcile triggered by
/// it reads a cache at least that new. After a re-list, objects that vanished meanwhile are
/// sent as deleted ones.
pub struct Informers {
    client: kube::Client,
    entries: HashMap<TypeId, Box<dyn Any + Send>>,
    starters: Vec<Starter>,
    ready: Vec<BoxFuture<'static, ()>>,
}

/// Starts one informer's watch, taking its writer and subscribers.
type Starter = Box<dyn FnOnce(&mut Informers) -> BoxFuture<'static, ()> + Send>;

impl Informers {
    /// No informers yet, for `client`.
    pub fn new(client: kube::Client) -> Informers {
        Informers {
            client,
            entries: HashMap::new(),
            starters: Vec::new(),
            ready: Vec::new(),
        }
    }

    fn entry<K: Watched>(&mut self) -> &mut Informer<K> {
        let id = TypeId::of::<K>();
        if !self.entries.contains_key(&id) {
            let writer = reflector::store::Writer::<K>::default();
            let store = writer.as_reader();
            let ready = store.clone();
            self.ready.push(
                async move {
                    let _ = ready.wait_until_ready().await;
                }
                .boxed(),
            );
            self.entries.insert(
                id,
                Box::new(Informer {
                    store,
                    writer: Some(writer),
                    subscribers: Vec::new(),
                }),
            );
            self.starters.push(Box::new(|me: &mut Informers| {
                let entry = me.entry::<K>();
                let (writer, subscribers) =
                    (entry.writer.take(), std::mem::take(&mut entry.subscribers));
                let api: Api<K> = Api::all(me.client.clone());
                match writer {
                    Some(writer) => follow(api, writer, subscribers).boxed(),
                    None => futures::future::ready(()).boxed(),
                }
            }));
        }
        self.entries
            .get_mut(&id)
            .and_then(|e| e.downcast_mut::<Informer<K>>())
            .expect("one informer per type")
    }

    /// The cache of every `K`, kept by the shared watch.
    pub fn store<K: Watched>(&mut self) -> Store<K> {
        self.entry::<K>().store.clone()
    }

    /// Every `K` as it is listed, changed or deleted, from the shared watch; made for
    /// kube-runtime's `Controller::for_stream`, `owns_stream` and `watches_stream`.
    pub fn subscribe<K: Watched>(
        &mut self,
    ) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        self.entry::<K>().subscribers.push(tx);
        tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(Ok)
    }

    /// Starts the watches: the future runs them until dropped. The second future completes
    /// once every cache has been filled by its first listing.
    pub fn start(mut self) -> (BoxFuture<'static, ()>, BoxFuture<'static, ()>) {
        let starters = std::mem::take(&mut self.starters);
        let watches: Vec<_> = starters.into_iter().map(|s| s(&mut self)).collect();
        let ready = futures::future::join_all(std::mem::take(&mut self.ready)).map(|_| ());
        (
            futures::future::join_all(watches).map(|_| ()).boxed(),
            ready.boxed(),
        )
    }
}

/// Keeps `writer`'s cache from a watch of `api` and tells `subscribers` of every change.
async fn follow<K: Watched>(
    api: Api<K>,
    mut writer: reflector::store::Writer<K>,
    mut subscribers: Vec<mpsc::UnboundedSender<K>>,
) {
    let reader = writer.as_reader();
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    // Objects of a listing in progress, told once the listing is complete.
    let mut listed: Vec<K> = Vec::new();
    let mut before: Vec<Arc<K>> = Vec::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("watching {}: {e}", K::plural(&()));
                continue;
            }
        };
        writer.apply_watcher_event(&event);
        let mut tell: Vec<K> = Vec::new();
        match event {
            watcher::Event::Init => {
                before = reader.state();
                listed.clear();
            }
            watcher::Event::InitApply(obj) => listed.push(obj),
            watcher::Event::InitDone => {
                let present: std::collections::HashSet<String> =
                    listed.iter().map(|o| object_key(o)).collect();
                tell.extend(
                    before
                        .drain(..)
                        .filter(|o| !present.contains(&object_key(o.as_ref())))
                        .map(|o| (*o).clone()),
                );
                tell.append(&mut listed);
            }
            watcher::Event::Apply(obj) | watcher::Event::Delete(obj) => tell.push(obj),
        }
        for obj in tell {
            subscribers.retain(|s| s.send(obj.clone()).is_ok());
        }
    }
}

/// Everything a controller is given: the API client, what the controller manager was told,
/// and a signal that the shared caches are filled.
#[derive(Clone)]
pub struct Shared {
    /// The API client, acting as the controller's own identity when there is one.
    pub client: kube::Client,
    /// The controller manager's options.
    pub options: Arc<crate::Options>,
    synced: tokio::sync::watch::Receiver<bool>,
}

impl Shared {
    /// A context for `client`; `synced` turns true once the caches are filled.
    pub fn new(
        client: kube::Client,
        options: Arc<crate::Options>,
        synced: tokio::sync::watch::Receiver<bool>,
    ) -> Shared {
        Shared {
            client,
            options,
            synced,
        }
    }

    /// The same context for a controller whose requests go through `client` (its own
    /// identity; [`crate::credentials`]).
    pub fn acting_as(&self, client: kube::Client) -> Shared {
        Shared {
            client,
            ..self.clone()
        }
    }

    /// An event recorder writing as `component` (`replicaset-controller`, ...).
    pub fn recorder(&self, component: &str) -> crate::events::Recorder {
        crate::events::Recorder::new(self.client.clone(), component)
    }

    /// Waits until the shared caches are filled.
    pub async fn synced(&self) {
        let mut rx = self.synced.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Runs `tick` every `period` once the caches are filled, as `name`: controllers that look
/// at the whole cluster on a clock (node health, pod garbage) rather than per object. An
/// error or a panic in one tick is logged; the next tick comes all the same.
pub fn periodic<C, F>(
    name: &'static str,
    shared: &Shared,
    period: Duration,
    ctx: Arc<C>,
    tick: fn(Arc<C>) -> F,
) -> BoxFuture<'static, ()>
where
    C: Send + Sync + 'static,
    F: Future<Output = Result<()>> + Send + 'static,
{
    let shared = shared.clone();
    async move {
        shared.synced().await;
        loop {
            match AssertUnwindSafe(tick(ctx.clone())).catch_unwind().await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("{name}: {e}"),
                Err(_) => tracing::error!("{name}: a tick panicked"),
            }
            tokio::time::sleep(period).await;
        }
    }
    .boxed()
}

/// A merge patch that turns status `old` into `new`: fields `new` leaves out (zero counts,
/// cleared conditions) are removed with `null`, as a merge patch only sets what it names.
pub fn status_patch(old: &serde_json::Value, new: &serde_json::Value) -> serde_json::Value {
    let mut patch = new.clone();
    if let (Some(old), Some(p)) = (old.as_object(), patch.as_object_mut()) {
        for k in old.keys() {
            if !p.contains_key(k) {
                p.insert(k.clone(), serde_json::Value::Null);
            }
        }
    }
    serde_json::json!({ "status": patch })
}

/// The JSON patch that removes `finalizer` from an object with metadata `meta`, or `None`
/// when it has none: it tests the uid and the finalizer's place first, so it fails rather
/// than remove another one if the object changed.
pub fn finalizer_removal(
    meta: &kube::api::ObjectMeta,
    finalizer: &str,
) -> Option<Vec<serde_json::Value>> {
    let finalizers = meta.finalizers.as_deref().unwrap_or_default();
    let i = finalizers.iter().position(|f| f == finalizer)?;
    let remove = if finalizers.len() == 1 {
        "/metadata/finalizers".to_string()
    } else {
        format!("/metadata/finalizers/{i}")
    };
    Some(vec![
        serde_json::json!({"op": "test", "path": "/metadata/uid", "value": meta.uid}),
        serde_json::json!({"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": finalizer}),
        serde_json::json!({"op": "remove", "path": remove}),
    ])
}

/// Removes `finalizer` from the object of `api` with metadata `meta` if it has it
/// ([`finalizer_removal`]); an object already gone is no error.
pub async fn remove_finalizer<K>(
    api: &kube::Api<K>,
    meta: &kube::api::ObjectMeta,
    finalizer: &str,
) -> kube::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(ops) = finalizer_removal(meta, finalizer) else {
        return Ok(());
    };
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::Value::Array(ops)).map_err(kube::Error::SerdeError)?;
    let params = kube::api::PatchParams::default();
    let name = meta.name.as_deref().unwrap_or_default();
    match api
        .patch(name, &params, &kube::api::Patch::Json::<()>(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Per-object failure counts, for the exponential back-off (upstream's work queue: 5 ms
/// doubling to 1000 s).
#[derive(Default)]
struct Failures(Mutex<HashMap<String, u32>>);

impl Failures {
    fn next_delay(&self, key: &str) -> Duration {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key.to_string()).or_default();
        *n = n.saturating_add(1);
        let millis = 5u64.saturating_mul(1u64 << (*n - 1).min(20));
        Duration::from_millis(millis.min(1_000_000))
    }

    fn forget(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

fn object_key<K: Resource>(obj: &K) -> String {
    match obj.meta().namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", obj.name_any()),
        None => obj.name_any(),
    }
}

/// Runs `controller` with `reconcile` until dropped, logging as `name`; each reconcile runs in
/// a `reconcile` span (controller, object). Each reconcile waits
/// for the caches first; an error or a panic is logged and the object tried again after a
/// per-object exponential back-off.
pub fn run<K, C, F>(
    name: &'static str,
    controller: Controller<K>,
    shared: &Shared,
    ctx: Arc<C>,
    reconcile: fn(Arc<K>, Arc<C>) -> F,
) -> BoxFuture<'static, ()>
where
    K: Watched,
    C: Send + Sync + 'static,
    F: Future<Output = Result<Action>> + Send + 'static,
{
    let failures = Arc::new(Failures::default());
    let shared = shared.clone();
    let (f1, f2) = (failures.clone(), failures);
    controller
        .run(
            move |obj: Arc<K>, ctx: Arc<C>| {
                let shared = shared.clone();
                let failures = f1.clone();
                let key = object_key(obj.as_ref());
                // What a reconcile logs says which controller and object.
                let span = tracing::debug_span!("reconcile", controller = name, object = %key);
                async move {
                    shared.synced().await;
                    let outcome = AssertUnwindSafe(reconcile(obj, ctx)).catch_unwind().await;
                    match outcome {
                        Ok(Ok(action)) => {
                            failures.forget(&key);
                            Ok(action)
                        }
                        Ok(Err(e)) => Err(e),
                        Err(panic) => {
                            let what = panic
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| panic.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "a panic".into());
                            Err(Error::Failed(format!("reconcile panicked: {what}")))
                        }
                    }
                }
                .instrument(span)
            },
            move |obj: Arc<K>, err: &Error, _ctx: Arc<C>| {
                let key = object_key(obj.as_ref());
                let delay = f2.next_delay(&key);
                tracing::warn!("{name}: syncing {key}: {err} (again in {delay:?})");
                Action::requeue(delay)
            },
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_patches_remove_what_the_new_status_leaves_out() {
        let old = serde_json::json!({"replicas": 2, "readyReplicas": 1});
        let new = serde_json::json!({"replicas": 0});
        assert_eq!(
            status_patch(&old, &new),
            serde_json::json!({"status": {"replicas": 0, "readyReplicas": null}})
        );
    }

    #[test]
    fn failures_back_off_exponentially_and_reset() {
        let f = Failures::default();
        assert_eq!(f.next_delay("a"), Duration::from_millis(5));
        assert_eq!(f.next_delay("a"), Duration::from_millis(10));
        assert_eq!(f.next_delay("a"), Duration::from_millis(20));
        assert_eq!(f.next_delay("b"), Duration::from_millis(5));
        for _ in 0..40 {
            f.next_delay("a");
        }
        assert_eq!(f.next_delay("a"), Duration::from_secs(1000));
        f.forget("a");
        assert_eq!(f.next_delay("a"), Duration::from_millis(5));
    }
}
