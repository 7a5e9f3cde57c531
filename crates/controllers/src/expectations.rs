//! Expectations, as upstream's controllers keep them: after creating or deleting pods a
//! controller must not act again on the same owner until its cache has seen those changes,
//! or it would create (or delete) them twice. Here they are checked against the cache itself:
//! the names created must have appeared in it, the objects deleted must be gone or
//! terminating. Expectations older than five minutes are dropped, as upstream's expire.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a change may stay unseen before it is no longer waited for.
const EXPIRY: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Pending {
    /// `namespace/name` of objects created, not yet seen.
    created: HashSet<String>,
    /// uid of objects deleted, still seen alive.
    deleted: HashSet<String>,
    since: Option<Instant>,
}

/// The changes each owner (by key) waits to see.
#[derive(Default)]
pub struct Expectations(Mutex<HashMap<String, Pending>>);

/// What the cache shows of an object the owner created or deleted.
pub enum Seen {
    /// Not there.
    Absent,
    /// There, and not being deleted.
    Alive,
    /// There, with a deletion timestamp.
    Terminating,
}

impl Expectations {
    /// Records that `owner` created `name` (`namespace/name`).
    pub fn created(&self, owner: &str, name: String) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let p = m.entry(owner.to_string()).or_default();
        p.created.insert(name);
        p.since.get_or_insert_with(Instant::now);
    }

    /// Records that `owner` deleted the object with `uid`.
    pub fn deleted(&self, owner: &str, uid: String) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let p = m.entry(owner.to_string()).or_default();
        p.deleted.insert(uid);
        p.since.get_or_insert_with(Instant::now);
    }

    /// Whether every change `owner` made is visible: `by_name` tells what the cache holds
    /// under a created name, `by_uid` what it holds for a deleted uid. Changes seen are
    /// forgotten.
    pub fn satisfied(
        &self,
        owner: &str,
        by_name: impl Fn(&str) -> Seen,
        by_uid: impl Fn(&str) -> Seen,
    ) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = m.get_mut(owner) else {
            return true;
        };
        p.created.retain(|n| matches!(by_name(n), Seen::Absent));
        p.deleted.retain(|u| matches!(by_uid(u), Seen::Alive));
        let expired = p.since.is_some_and(|s| s.elapsed() > EXPIRY);
        if p.created.is_empty() && p.deleted.is_empty() || expired {
            m.remove(owner);
            return true;
        }
        false
    }

    /// [`Expectations::satisfied`] against `objects`, what the cache holds in the owner's
    /// namespace: a name or uid absent from them is absent, one with a deletion timestamp
    /// terminating.
    pub fn satisfied_by<K: kube::Resource>(&self, owner: &str, objects: &[Arc<K>]) -> bool {
        let by_name: HashMap<String, &K> = objects
            .iter()
            .map(|o| (crate::pods::key(o.meta()), o.as_ref()))
            .collect();
        let by_uid: HashMap<&str, &K> = objects
            .iter()
            .filter_map(|o| Some((o.meta().uid.as_deref()?, o.as_ref())))
            .collect();
        let seen = |o: Option<&&K>| match o {
            None => Seen::Absent,
            Some(o) if o.meta().deletion_timestamp.is_some() => Seen::Terminating,
            Some(_) => Seen::Alive,
        };
        self.satisfied(owner, |n| seen(by_name.get(n)), |u| seen(by_uid.get(u)))
    }

    /// Forgets `owner` (deleted).
    pub fn forget(&self, owner: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_wait_until_their_changes_show() {
        let e = Expectations::default();
        assert!(e.satisfied("rs", |_| Seen::Absent, |_| Seen::Absent));
        e.created("rs", "ns/a".into());
        e.deleted("rs", "uid-b".into());
        assert!(!e.satisfied("rs", |_| Seen::Absent, |_| Seen::Alive));
        assert!(!e.satisfied("rs", |_| Seen::Alive, |_| Seen::Alive));
        // The creation was seen and forgotten; the deletion now shows as terminating.
        assert!(e.satisfied("rs", |_| Seen::Absent, |_| Seen::Terminating));
        e.created("rs", "ns/c".into());
        e.forget("rs");
        assert!(e.satisfied("rs", |_| Seen::Absent, |_| Seen::Alive));
    }
}
