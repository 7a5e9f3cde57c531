//! The watch cache (upstream's `storage/cacher`): one store watch per resource, shared by every
//! client watching that resource, so a thousand watchers cost one store watch and one decode
//! per change instead of a thousand.
//!
//! Each resource's cache is started on its first watch: it lists the resource at a revision,
//! then follows the store's watch from there, keeping the current objects and a window of the
//! most recent events. A client watch from a revision inside the window replays the events after
//! it and continues live; a watch from revision 0 starts from the cached state. Anything else
//! (a revision older than the window, or newer than the cache has seen) is served straight from
//! the store by the caller. A client too slow to keep up with the live feed has its watch ended,
//! as upstream does; clients then watch again from their last revision.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use store::{RangeOptions, Revision, Store, WatchEvent, WatchOptions};
use tokio::sync::broadcast;

/// How many events each resource's window keeps.
const WINDOW: usize = 4096;
/// How many live events a watcher may fall behind before its watch is ended.
const FEED: usize = 8192;
/// How often the cache asks the store to vouch for its revision when idle.
const PROGRESS: Duration = Duration::from_secs(5);

/// One change, decoded once for every watcher.
#[derive(Debug)]
pub struct Change {
    /// The storage key.
    pub key: String,
    /// The revision of the change.
    pub revision: Revision,
    /// The object after the change (for a delete: the last state, with the delete's revision).
    pub object: Arc<Value>,
    /// The object before the change; `None` for a create.
    pub prev: Option<Arc<Value>>,
    /// Whether this is a delete.
    pub deleted: bool,
}

/// What the live feed carries: changes, and progress (the cache has seen every change up to a
/// revision).
#[derive(Debug, Clone)]
pub enum Item {
    /// A change.
    Change(Arc<Change>),
    /// Nothing changed up to this revision.
    Progress(Revision),
}

struct State {
    /// The current objects by key.
    objects: BTreeMap<String, Arc<Value>>,
    /// The recent changes, oldest first.
    window: VecDeque<Arc<Change>>,
    /// Every change after this revision is in the window.
    oldest: Revision,
    /// The cache has seen every change up to this revision.
    revision: Revision,
}

struct ResourceCache {
    state: RwLock<State>,
    feed: broadcast::Sender<Item>,
}

/// What a client watch gets from the cache: the changes to replay (or the state to start from),
/// then the live feed.
pub struct Subscription {
    /// For a watch from revision 0: the current objects by key, at `revision`.
    pub snapshot: Option<Vec<(String, Arc<Value>)>>,
    /// For a watch from a revision: the changes after it.
    pub replay: Vec<Arc<Change>>,
    /// The revision the snapshot or the replay reaches.
    pub revision: Revision,
    /// Everything after `revision`.
    pub live: broadcast::Receiver<Item>,
}

/// The watch caches of every resource, keyed by storage prefix.
#[derive(Clone, Default)]
pub struct Cacher {
    caches: Arc<Mutex<HashMap<String, Arc<ResourceCache>>>>,
}

fn decode(bytes: &[u8], revision: Revision) -> Option<Value> {
    let mut obj: Value = serde_json::from_slice(bytes).ok()?;
    obj.get_mut("metadata")?
        .as_object_mut()?
        .insert("resourceVersion".into(), Value::from(revision.to_string()));
    Some(obj)
}

impl Cacher {
    /// Subscribes to the resource stored under `prefix`, from `from` (0: the current state).
    /// `None` means the cache cannot serve that revision: watch the store directly.
    pub async fn subscribe(
        &self,
        store: &Arc<dyn Store>,
        prefix: &str,
        from: Revision,
    ) -> Option<Subscription> {
        let cache = self.cache(store, prefix).await?;
        let state = cache.state.read().expect("poisoned");
        let live = cache.feed.subscribe();
        if from == 0 {
            return Some(Subscription {
                snapshot: Some(
                    state
                        .objects
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                replay: Vec::new(),
                revision: state.revision,
                live,
            });
        }
        if from < state.oldest || from > state.revision {
            return None;
        }
        let replay = state
            .window
            .iter()
            .filter(|c| c.revision > from)
            .cloned()
            .collect();
        Some(Subscription {
            snapshot: None,
            replay,
            revision: state.revision,
            live,
        })
    }

    async fn cache(&self, store: &Arc<dyn Store>, prefix: &str) -> Option<Arc<ResourceCache>> {
        if let Some(c) = self.caches.lock().expect("poisoned").get(prefix) {
            return Some(c.clone());
        }
        let list = store.range(prefix, RangeOptions::default()).await.ok()?;
        let objects = list
            .kvs
            .iter()
            .filter_map(|kv| {
                Some((
                    kv.key.clone(),
                    Arc::new(decode(&kv.value, kv.mod_revision)?),
                ))
            })
            .collect();
        let events = store
            .watch(
                prefix,
                list.revision + 1,
                WatchOptions {
                    progress_interval: Some(PROGRESS),
                },
            )
            .await
            .ok()?;
        let (feed, _) = broadcast::channel(FEED);
        let cache = Arc::new(ResourceCache {
            state: RwLock::new(State {
                objects,
                window: VecDeque::new(),
                oldest: list.revision,
                revision: list.revision,
            }),
            feed,
        });
        {
            let mut caches = self.caches.lock().expect("poisoned");
            // Someone else started the same cache meanwhile: use theirs.
            if let Some(c) = caches.get(prefix) {
                return Some(c.clone());
            }
            caches.insert(prefix.to_string(), cache.clone());
        }
        let (caches, prefix, c) = (self.caches.clone(), prefix.to_string(), cache.clone());
        tokio::spawn(async move {
            let mut events = events;
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(ev) => c.apply(ev),
                    Err(e) => {
                        tracing::warn!(%prefix, error = %e, "watch cache stopped; the next watch restarts it");
                        break;
                    }
                }
            }
            // Dropping the cache closes the feed: its watchers end and watch again.
            caches.lock().expect("poisoned").remove(&prefix);
        });
        Some(cache)
    }
}

impl ResourceCache {
    fn apply(&self, ev: WatchEvent) {
        let mut state = self.state.write().expect("poisoned");
        let item = match ev {
            WatchEvent::Progress { revision } => {
                state.revision = state.revision.max(revision);
                Item::Progress(state.revision)
            }
            WatchEvent::Put { kv, .. } => {
                let Some(obj) = decode(&kv.value, kv.mod_revision) else {
                    return;
                };
                let object = Arc::new(obj);
                let prev = state.objects.insert(kv.key.clone(), object.clone());
                self.record(
                    &mut state,
                    Change {
                        key: kv.key,
                        revision: kv.mod_revision,
                        object,
                        prev,
                        deleted: false,
                    },
                )
            }
            WatchEvent::Delete { key, revision, .. } => {
                let Some(prev) = state.objects.remove(&key) else {
                    return;
                };
                let mut last = (*prev).clone();
                if let Some(m) = last.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.insert("resourceVersion".into(), Value::from(revision.to_string()));
                }
                self.record(
                    &mut state,
                    Change {
                        key,
                        revision,
                        object: Arc::new(last),
                        prev: Some(prev),
                        deleted: true,
                    },
                )
            }
        };
        // Sent under the lock, so a subscriber sees each change either in its snapshot or
        // replay, or on the feed, never both or neither. No receivers is fine.
        let _ = self.feed.send(item);
    }

    fn record(&self, state: &mut State, change: Change) -> Item {
        let change = Arc::new(change);
        state.revision = change.revision;
        state.window.push_back(change.clone());
        if state.window.len() > WINDOW
            && let Some(dropped) = state.window.pop_front()
        {
            state.oldest = dropped.revision;
        }
        Item::Change(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::sqlite::{SqliteOptions, SqliteStore};

    async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("db"), SqliteOptions { durable: false })
            .await
            .unwrap();
        (dir, Arc::new(s))
    }

    fn obj(name: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"metadata": {"name": name}})).unwrap()
    }

    #[tokio::test]
    async fn snapshot_replay_and_live_changes_meet_without_gaps() {
        let (_dir, s) = store().await;
        s.create("/r/old", obj("old")).await.unwrap();
        let a = s.create("/r/a", obj("a")).await.unwrap();
        let cacher = Cacher::default();
        let first = cacher.subscribe(&s, "/r/", 0).await.unwrap();
        let keys: Vec<&str> = first
            .snapshot
            .as_ref()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(keys, ["/r/a", "/r/old"]);
        assert_eq!(first.revision, a.mod_revision);

        let b = s.create("/r/b", obj("b")).await.unwrap();
        s.delete("/r/a", None).await.unwrap();
        let mut live = first.live;
        let mut seen = Vec::new();
        while seen.len() < 2 {
            if let Item::Change(c) = live.recv().await.unwrap() {
                seen.push((c.key.clone(), c.deleted));
            }
        }
        assert_eq!(
            seen,
            [("/r/b".to_string(), false), ("/r/a".to_string(), true)]
        );

        // From a revision inside the window: the changes after it, in order.
        let later = cacher
            .subscribe(&s, "/r/", b.mod_revision - 1)
            .await
            .unwrap();
        let replayed: Vec<_> = later
            .replay
            .iter()
            .map(|c| (c.key.as_str(), c.revision))
            .collect();
        assert_eq!(
            replayed,
            [("/r/b", b.mod_revision), ("/r/a", b.mod_revision + 1)]
        );
        let deleted = &later.replay[1];
        assert_eq!(
            deleted.object["metadata"]["resourceVersion"],
            (b.mod_revision + 1).to_string()
        );

        // Before the window (the cache started at `a`), or beyond what the cache has seen: the
        // caller asks the store.
        assert!(
            cacher
                .subscribe(&s, "/r/", a.mod_revision - 1)
                .await
                .is_none()
        );
        assert!(
            cacher
                .subscribe(&s, "/r/", b.mod_revision + 100)
                .await
                .is_none()
        );
    }
}
