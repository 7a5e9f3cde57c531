//! Background compaction that keeps a bounded window of history, as kube-apiserver does for
//! etcd: every `window`, compact up to the revision that was current one window earlier. Every
//! revision of the last `window` therefore stays readable and watchable, and history never
//! grows past two windows.

use std::sync::Arc;
use std::time::Duration;

use crate::kv::{Error, Revision, Store};

/// The default history window (kube-apiserver's `--etcd-compaction-interval`).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

/// Starts compacting `store` in the background; abort the handle to stop.
pub fn spawn(store: Arc<dyn Store>, window: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(window);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut previous: Option<Revision> = None;
        loop {
            ticker.tick().await;
            let current = match store.current_revision().await {
                Ok(rev) => rev,
                Err(e) => {
                    tracing::warn!(error = %e, "compaction skipped: cannot read the revision");
                    continue;
                }
            };
            if let Some(target) = previous.filter(|r| *r > 0) {
                match store.compact(target).await {
                    Ok(()) => tracing::debug!(revision = target, "compacted"),
                    // Someone (another server on the same etcd) got there first.
                    Err(Error::Compacted { .. }) => {}
                    Err(e) => tracing::warn!(error = %e, revision = target, "compaction failed"),
                }
            }
            previous = Some(current);
        }
    })
}
