//! The contract every backend implements: the [`Store`] trait, its value types and its errors.
//!
//! The semantics are etcd v3's as the Kubernetes API server uses them: one cluster-wide revision
//! that grows by one with every successful write, per-key `create_revision`/`mod_revision`/
//! `version`, compare-and-swap on `mod_revision`, reads at a past revision, and a watch that
//! replays history from any revision not yet compacted.

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;

/// The largest value the store accepts, in bytes: etcd's default request limit (1.5 MiB).
pub const MAX_VALUE_BYTES: usize = 1_572_864;

/// A revision of the whole store. Revisions start at 1; 0 means "none" or "current".
pub type Revision = i64;

/// One key's state at some revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The opaque value.
    pub value: Vec<u8>,
    /// The revision of the write that created this key (since its last deletion).
    pub create_revision: Revision,
    /// The revision of the last write to this key.
    pub mod_revision: Revision,
    /// How many times the key was written since it was created; 1 after the create.
    pub version: i64,
}

/// The result of a successful delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The revision of the delete itself.
    pub revision: Revision,
    /// The key's last state before the delete.
    pub prev: KeyValue,
}

/// What to read with [`Store::range`].
#[derive(Debug, Clone, Default)]
pub struct RangeOptions {
    /// Return at most this many keys; 0 means no limit.
    pub limit: usize,
    /// Start after this key (exclusive): the last key of the previous page.
    pub after: Option<String>,
    /// Read the store as of this revision; 0 means the current revision.
    pub revision: Revision,
    /// The caller knows how many keys follow the page already (a paged LIST carries the
    /// count from its first page): the store may leave [`RangeResponse::remaining`] at 0
    /// rather than count them.
    pub skip_count: bool,
}

/// The answer to [`Store::range`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResponse {
    /// The keys in key order.
    pub kvs: Vec<KeyValue>,
    /// The revision the read was served at: pass it back to read the next page consistently.
    pub revision: Revision,
    /// Whether more keys matched beyond `limit`.
    pub more: bool,
    /// How many keys of the range at `revision` come after the last one returned: 0 unless
    /// `more`. Counted only when a page is cut short by `limit` (etcd's `count` less the keys
    /// returned; a count at the same revision elsewhere), so reading the last page costs nothing.
    pub remaining: usize,
}

/// One item of a watch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or updated. `prev` is absent for a create (and may be absent when the
    /// previous state has been compacted away).
    Put {
        /// The key's new state.
        kv: KeyValue,
        /// The key's state before this write.
        prev: Option<KeyValue>,
    },
    /// A key was deleted at `revision`.
    Delete {
        /// The key.
        key: String,
        /// The revision of the delete.
        revision: Revision,
        /// The key's last state before the delete, when history still holds it.
        prev: Option<KeyValue>,
    },
    /// Nothing matching the watch happened up to and including `revision`: a bookmark.
    Progress {
        /// Every event at or below this revision has been delivered.
        revision: Revision,
    },
}

impl WatchEvent {
    /// The revision this event happened at (for a progress notification, the revision it
    /// vouches for).
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } | WatchEvent::Progress { revision } => *revision,
        }
    }
}

/// Options of [`Store::watch`].
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// Send a [`WatchEvent::Progress`] after this long without an event.
    pub progress_interval: Option<Duration>,
}

/// A watch: events in revision order, each exactly once. The stream ends after yielding an
/// error; dropping it cancels the watch.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

/// What can go wrong. Messages are lowercase and name the key, file or endpoint concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A create found the key already present.
    #[error("key {key:?} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// An update or delete found no such key.
    #[error("key {key:?} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// A compare-and-swap found another `mod_revision` than expected.
    #[error("key {key:?} was modified: expected mod_revision {expected}, found {}", current.mod_revision)]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The key's current state, so the caller can retry without another read.
        current: Box<KeyValue>,
    },
    /// The requested revision is older than the oldest one history still holds.
    #[error("revision {requested} has been compacted (compacted through {compact_revision})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The store's compaction revision.
        compact_revision: Revision,
    },
    /// The requested revision is newer than the current one.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The current revision.
        current: Revision,
    },
    /// A value over [`MAX_VALUE_BYTES`].
    #[error("value for key {key:?} is {size} bytes, over the limit of {limit} bytes")]
    ValueTooLarge {
        /// The key.
        key: String,
        /// The value's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The database file is damaged or is not a Rudder database.
    #[error("database file {path} is unusable: {detail}")]
    Corrupt {
        /// The file.
        path: String,
        /// What the database engine said.
        detail: String,
    },
    /// The database is held by another process.
    #[error("database file {path} is in use by another process")]
    Locked {
        /// The file.
        path: String,
    },
    /// The backend cannot be reached.
    #[error("datastore {endpoint} is unavailable: {detail}")]
    Unavailable {
        /// The endpoint or file.
        endpoint: String,
        /// The underlying failure.
        detail: String,
    },
    /// A datastore URL that names no known backend or is malformed.
    #[error("invalid datastore endpoint {endpoint:?}: {detail}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Any other backend failure.
    #[error("datastore error: {0}")]
    Internal(String),
}

/// Results of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A revisioned key-value store shaped like etcd v3.
///
/// Contract (shared by every backend and checked by [`crate::testing::suite`]):
/// - every successful create, update and delete takes the next revision; reads never do;
/// - a write is durable once its future resolves;
/// - `range` at a revision is a consistent snapshot, so pages read at the same revision never
///   miss or repeat a key however many writes happen in between;
/// - a watch delivers every matching event with revision >= its start, in order, exactly once.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The key's current state, or `None`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// The keys starting with `prefix`, in key order.
    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangeResponse>;

    /// Creates `key`; fails with [`Error::AlreadyExists`] if it is present.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;

    /// Replaces `key`'s value if its `mod_revision` is still `expected`
    /// ([`Error::Conflict`] otherwise, [`Error::NotFound`] if absent).
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue>;

    /// Deletes `key`, if given only when its `mod_revision` is still `expected`.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted>;

    /// The revision of the latest write.
    async fn current_revision(&self) -> Result<Revision>;

    /// Discards history older than `revision`: reads and watches before it then fail with
    /// [`Error::Compacted`]. The state at `revision` and after stays readable.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Watches the keys starting with `prefix` from revision `from` (inclusive; 0 means events
    /// after the current revision).
    async fn watch(&self, prefix: &str, from: Revision, opts: WatchOptions) -> Result<WatchStream>;

    /// The space the data takes on disk, in bytes (for etcd, the size its status reports).
    async fn db_size(&self) -> Result<u64>;

    /// Stops the store: pending writes finish, later calls fail with [`Error::Unavailable`],
    /// open watches end, and the data files are released.
    async fn close(&self) -> Result<()>;

    /// A short name of the backend and where it keeps its data, for logs.
    fn describe(&self) -> String;
}

/// Refuses values over [`MAX_VALUE_BYTES`]; every backend calls this before writing.
pub(crate) fn check_value(key: &str, value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::ValueTooLarge {
            key: key.to_string(),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// The first key after every key starting with `prefix` (etcd's range end for a prefix), or
/// `None` when the prefix is empty or all 0xff, meaning "to the end of the keyspace".
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(
            prefix_end(b"/registry/pods/"),
            Some(b"/registry/pods0".to_vec())
        );
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn values_over_the_limit_are_refused() {
        assert!(check_value("k", &vec![0; MAX_VALUE_BYTES]).is_ok());
        let err = check_value("k", &vec![0; MAX_VALUE_BYTES + 1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "value for key \"k\" is 1572865 bytes, over the limit of 1572864 bytes"
        );
    }
}
