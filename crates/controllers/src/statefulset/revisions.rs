//! ControllerRevisions: a template's revision data, hash and name, choosing, renumbering
//! or creating the update revision, and the unused history to delete.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::pods;
use crate::runtime::{Error, Result};

use super::sync::{api_error, is_code};

/// A ControllerRevision's hash.
const HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// Names tried for a new revision before a sync gives up (each hash collision moves on).
const MAX_COLLISIONS: i32 = 64;

/// A revision's `data`: the template as a strategic-merge patch of the set, as upstream's
/// `getPatch` writes it.
fn revision_data(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The template a revision holds.
pub(super) fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

/// A revision's hash: FNV-1a over its data and the collision count, spelled with upstream's
/// safe alphabet (no vowels, no look-alike digits).
fn revision_hash(data: &Value, collisions: i32) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in data
        .to_string()
        .bytes()
        .chain(collisions.to_string().bytes())
    {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| SAFE[usize::from(b) % SAFE.len()] as char)
        .collect()
}

/// A revision's name: `<set>-<hash>`, the set's name cut to 223 characters.
pub(super) fn revision_name(set: &str, hash: &str) -> String {
    let prefix: String = set.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// Oldest first: by number, then creation, then name (upstream's `SortControllerRevisions`).
pub(super) fn sort_revisions(revisions: &mut [ControllerRevision]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let t =
                    |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
                t(a).cmp(&t(b))
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// One past the highest revision number (1 for the first).
fn next_revision(revisions: &[ControllerRevision]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// Where the update revision comes from.
#[derive(Debug, PartialEq, Eq)]
enum Choice {
    /// The newest revision (at this index) already holds the template.
    Keep(usize),
    /// An older revision holds it: it is renumbered as the newest (a rollback).
    Renumber(usize),
    /// No revision holds it: a new one is made.
    Create,
}

/// Picks the update revision among `revisions` (sorted) for `data` (upstream's
/// `getStatefulSetRevisions`).
fn choose_update(revisions: &[ControllerRevision], data: &Value) -> Choice {
    let equal = revisions
        .iter()
        .rposition(|r| r.data.as_ref().map(|d| &d.0) == Some(data));
    match equal {
        Some(i) if i + 1 == revisions.len() => Choice::Keep(i),
        Some(i) => Choice::Renumber(i),
        None => Choice::Create,
    }
}

/// A new revision of `set` holding `data`, numbered `number`, with hash `hash`.
fn new_revision(set: &StatefulSet, data: &Value, number: i64, hash: &str) -> ControllerRevision {
    let mut labels: BTreeMap<String, String> = set
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref()?.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(&set.name_any(), hash)),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: set.metadata.annotations.clone().filter(|a| !a.is_empty()),
            owner_references: Some(vec![pods::controller_ref(set)]),
            ..Default::default()
        },
        data: Some(RawExtension(data.clone())),
        revision: number,
    }
}

/// The revisions no longer used (not current, not update, no pod made from it) to delete so
/// that at most `limit` of them remain, oldest first.
pub(super) fn history_to_delete<'a>(
    revisions: &'a [ControllerRevision],
    live: &HashSet<&str>,
    limit: usize,
) -> Vec<&'a ControllerRevision> {
    let history: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| !live.contains(r.metadata.name.as_deref().unwrap_or("")))
        .collect();
    let surplus = history.len().saturating_sub(limit);
    history.into_iter().take(surplus).collect()
}

/// The current and update revisions of `set` among its `revisions` (sorted), and the
/// collision count: the update revision is found, renumbered (a rollback) or created, the
/// current one is the one `status.currentRevision` names, else the update one (upstream's
/// `getStatefulSetRevisions`). `revisions` takes what was created or renumbered.
pub(super) async fn find_revisions(
    set: &StatefulSet,
    api: &Api<ControllerRevision>,
    revisions: &mut Vec<ControllerRevision>,
) -> Result<(ControllerRevision, ControllerRevision, i32)> {
    let status = set.status.as_ref();
    let mut collisions = status.and_then(|s| s.collision_count).unwrap_or(0);
    let template = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let data = revision_data(&template);
    let next = next_revision(revisions);
    let update = match choose_update(revisions, &data) {
        Choice::Keep(i) => revisions[i].clone(),
        Choice::Renumber(i) => {
            let renumbered = api
                .patch(
                    &revisions[i].name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"revision": next})),
                )
                .await
                .map_err(api_error)?;
            revisions[i] = renumbered.clone();
            renumbered
        }
        Choice::Create => {
            let created = create_revision(set, api, &data, next, &mut collisions).await?;
            revisions.push(created.clone());
            created
        }
    };
    let wanted = status.and_then(|s| s.current_revision.as_deref());
    let current = revisions
        .iter()
        .find(|r| {
            r.metadata
                .name
                .as_deref()
                .is_some_and(|n| Some(n) == wanted)
        })
        .cloned()
        .unwrap_or_else(|| update.clone());
    Ok((current, update, collisions))
}

/// Creates the revision holding `data`, numbered `number`, moving to the next hash while
/// another revision holds its name (upstream's `CreateControllerRevision`). A revision of
/// that name with the same data is taken as it is.
async fn create_revision(
    set: &StatefulSet,
    api: &Api<ControllerRevision>,
    data: &Value,
    number: i64,
    collisions: &mut i32,
) -> Result<ControllerRevision> {
    for _ in 0..MAX_COLLISIONS {
        let rev = new_revision(set, data, number, &revision_hash(data, *collisions));
        match api.create(&PostParams::default(), &rev).await {
            Ok(created) => return Ok(created),
            Err(e) if is_code(&e, 409) => {
                let existing = api.get(&rev.name_any()).await.map_err(api_error)?;
                if existing.data.as_ref().map(|d| &d.0) == Some(data) {
                    return Ok(existing);
                }
                *collisions += 1;
            }
            Err(e) => return Err(api_error(e)),
        }
    }
    Err(Error::Failed(format!(
        "no free name for a new revision of {} after {MAX_COLLISIONS} hash collisions",
        set.name_any()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statefulset::fixtures::set;

    #[test]
    fn revisions_hash_their_template_and_collision_count() {
        let s = set(json!({}));
        let t = s.spec.as_ref().unwrap().template.clone();
        let data = revision_data(&t);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(revision_hash(&data, 0), revision_hash(&data, 0));
        assert_ne!(revision_hash(&data, 0), revision_hash(&data, 1));
        let mut other = t.clone();
        other.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        assert_ne!(
            revision_hash(&data, 0),
            revision_hash(&revision_data(&other), 0)
        );
        assert!(
            revision_hash(&data, 0)
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
        let rev = new_revision(&s, &data, 3, "abc");
        assert_eq!(rev.name_any(), "web-abc");
        assert_eq!(rev.revision, 3);
        assert_eq!(rev.labels()[HASH_LABEL], "abc");
        assert_eq!(rev.labels()["app"], "web");
        assert_eq!(template_of(&rev), Some(t));
    }

    #[test]
    fn the_update_revision_is_kept_renumbered_or_created() {
        let s = set(json!({}));
        let t1 = s.spec.as_ref().unwrap().template.clone();
        let mut t2 = t1.clone();
        t2.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        let (d1, d2) = (revision_data(&t1), revision_data(&t2));
        let mut revisions = vec![
            new_revision(&s, &d2, 2, "two"),
            new_revision(&s, &d1, 1, "one"),
        ];
        sort_revisions(&mut revisions);
        assert_eq!(revisions[0].name_any(), "web-one");
        assert_eq!(next_revision(&revisions), 3);
        assert_eq!(choose_update(&revisions, &d2), Choice::Keep(1));
        assert_eq!(choose_update(&revisions, &d1), Choice::Renumber(0));
        let mut t3 = t1.clone();
        t3.spec.as_mut().unwrap().containers[0].image = Some("nginx:3".into());
        assert_eq!(
            choose_update(&revisions, &revision_data(&t3)),
            Choice::Create
        );
        assert_eq!(choose_update(&[], &d1), Choice::Create);
        assert_eq!(next_revision(&[]), 1);
    }

    #[test]
    fn history_beyond_the_limit_goes_oldest_first_sparing_live_revisions() {
        let s = set(json!({}));
        let revisions: Vec<_> = (1..=5)
            .map(|i| new_revision(&s, &json!(i), i, &i.to_string()))
            .collect();
        let live: HashSet<&str> = ["web-1", "web-5"].into();
        let names = |limit| {
            history_to_delete(&revisions, &live, limit)
                .iter()
                .map(|r| r.name_any())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(1), ["web-2", "web-3"]);
        assert!(names(3).is_empty());
        assert_eq!(names(0), ["web-2", "web-3", "web-4"]);
    }
}
