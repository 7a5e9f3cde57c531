//! A watch-fed copy of the objects under one store prefix, for the admission steps and the
//! RBAC authorizer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use api::Status;
use futures::StreamExt;
use serde_json::Value;
use store::{RangeOptions, Store, WatchEvent, WatchOptions};

/// Stored objects by key, with the revision they were written at.
pub(crate) type Objects = Arc<RwLock<BTreeMap<String, (i64, Value)>>>;

/// The objects under one store prefix, listed once and then followed by a watch (what
/// upstream's admission plugins read from informers), so an admission step costs no store
/// read; listed again if the watch ends.
pub(crate) struct Watched {
    prefix: &'static str,
    current: tokio::sync::Mutex<Option<(Objects, Arc<AtomicBool>)>>,
    /// Counts the changes to the copy (each event, each new listing), for what is derived
    /// from it and must be derived again when it changes, and wakes who waits for one.
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Watched {
    /// The objects under `prefix` (e.g. `/registry/priorityclasses/`).
    pub(crate) fn new(prefix: &'static str) -> Watched {
        Watched {
            prefix,
            current: tokio::sync::Mutex::new(None),
            generation: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    /// The objects, and the generation they are at (read before them: a change in between
    /// makes a later call see a newer generation).
    pub(crate) async fn tracked(&self, store: &Arc<dyn Store>) -> Result<(Objects, u64), Status> {
        let generation = *self.generation.borrow();
        Ok((self.objects(store).await?, generation))
    }

    /// A receiver that sees each change of the copy (once it is listed).
    pub(crate) fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub(crate) async fn objects(&self, store: &Arc<dyn Store>) -> Result<Objects, Status> {
        let mut current = self.current.lock().await;
        if let Some((objects, alive)) = current.as_ref()
            && alive.load(Ordering::Acquire)
        {
            return Ok(objects.clone());
        }
        let unavailable = |e: store::Error| Status::unavailable(e.to_string());
        let listed = store
            .range(self.prefix, RangeOptions::default())
            .await
            .map_err(unavailable)?;
        let mut map = BTreeMap::new();
        for kv in listed.kvs {
            if let Ok(v) = serde_json::from_slice::<Value>(&kv.value) {
                map.insert(kv.key, (kv.mod_revision, v));
            }
        }
        let objects: Objects = Arc::new(RwLock::new(map));
        self.generation.send_modify(|g| *g += 1);
        let alive = Arc::new(AtomicBool::new(true));
        let mut events = store
            .watch(self.prefix, listed.revision + 1, WatchOptions::default())
            .await
            .map_err(unavailable)?;
        let (o, a, g) = (objects.clone(), alive.clone(), self.generation.clone());
        tokio::spawn(async move {
            while let Some(Ok(event)) = events.next().await {
                let mut map = o.write().unwrap_or_else(|e| e.into_inner());
                match event {
                    WatchEvent::Put { kv, .. } => {
                        if let Ok(v) = serde_json::from_slice::<Value>(&kv.value) {
                            map.insert(kv.key, (kv.mod_revision, v));
                        }
                    }
                    WatchEvent::Delete { key, .. } => {
                        map.remove(&key);
                    }
                    WatchEvent::Progress { .. } => continue,
                }
                g.send_modify(|g| *g += 1);
            }
            a.store(false, Ordering::Release);
        });
        *current = Some((objects.clone(), alive));
        Ok(objects)
    }

    /// The object stored at `key`, if any.
    pub(crate) async fn get(
        &self,
        store: &Arc<dyn Store>,
        key: &str,
    ) -> Result<Option<Value>, Status> {
        let objects = self.objects(store).await?;
        let map = objects.read().unwrap_or_else(|e| e.into_inner());
        Ok(map.get(key).map(|(_, v)| v.clone()))
    }

    /// The objects whose keys start with `prefix` (within this cache's), with their keys
    /// and revisions.
    pub(crate) async fn under(
        &self,
        store: &Arc<dyn Store>,
        prefix: &str,
    ) -> Result<Vec<(String, i64, Value)>, Status> {
        let objects = self.objects(store).await?;
        let map = objects.read().unwrap_or_else(|e| e.into_inner());
        Ok(map
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (rev, v))| (k.clone(), *rev, v.clone()))
            .collect())
    }
}
