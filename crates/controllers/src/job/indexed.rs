//! Indexed Jobs: pods' completion indexes, index intervals as `completedIndexes` and
//! `failedIndexes` write them, per-index failure limits (`backoffLimitPerIndex`), which
//! indexes to run next, and `successPolicy`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::{JobSpec, SuccessPolicy};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::assess::Assessment;
use super::backoff::finish_time;
use super::failure_policy::{
    PolicyAction, failure_counts, only_replace_failed, pod_failed, policy_match,
};
use super::{COMPLETION_INDEX, INDEX_FAILURES, INDEX_IGNORED_FAILURES, terminating, tracked, uid};

/// A pod's completion index, if it has a valid one.
pub(super) fn completion_index(pod: &Pod) -> Option<i32> {
    pod.annotations()
        .get(COMPLETION_INDEX)?
        .parse::<i32>()
        .ok()
        .filter(|i| *i >= 0)
}

/// A pod's completion index, if it is below `completions`.
pub(super) fn index_below(pod: &Pod, completions: i32) -> Option<i32> {
    completion_index(pod).filter(|i| *i < completions)
}

pub(super) fn annotation_count(pod: &Pod, key: &str) -> i32 {
    pod.annotations()
        .get(key)
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|n| *n >= 0)
        .unwrap_or(0)
}

/// Completion indexes as ordered, disjoint, non-adjacent intervals (`0-2,4,6,7`, as
/// `completedIndexes` and `failedIndexes` write them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Intervals(Vec<(i32, i32)>);

impl Intervals {
    /// Parses `s`, keeping what lies below `completions`; unreadable parts are skipped.
    pub(super) fn parse(s: &str, completions: i32) -> Intervals {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
                None => (part.parse::<i32>(), part.parse::<i32>()),
            };
            let (Ok(first), Ok(last)) = (a, b) else {
                continue;
            };
            if first < 0 || last < first || first >= completions {
                continue;
            }
            out.push((first, last.min(completions - 1)));
        }
        Intervals::normalized(out)
    }

    fn normalized(mut v: Vec<(i32, i32)>) -> Intervals {
        v.sort();
        let mut out: Vec<(i32, i32)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Intervals(out)
    }

    /// These and `indexes`.
    pub(super) fn with(&self, indexes: impl IntoIterator<Item = i32>) -> Intervals {
        let mut v = self.0.clone();
        v.extend(indexes.into_iter().map(|i| (i, i)));
        Intervals::normalized(v)
    }

    /// These and `other`'s.
    fn union(&self, other: &Intervals) -> Intervals {
        let mut v = self.0.clone();
        v.extend(other.0.iter().copied());
        Intervals::normalized(v)
    }

    pub(super) fn total(&self) -> i32 {
        self.0.iter().map(|(a, b)| b - a + 1).sum()
    }

    pub(super) fn has(&self, i: i32) -> bool {
        self.0.iter().any(|(a, b)| *a <= i && i <= *b)
    }

    /// How many of these are also in `other`.
    fn common(&self, other: &Intervals) -> i32 {
        let mut n = 0;
        for (a, b) in &self.0 {
            for (c, d) in &other.0 {
                let overlap = b.min(d) - a.max(c) + 1;
                if overlap > 0 {
                    n += overlap;
                }
            }
        }
        n
    }
}

impl fmt::Display for Intervals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (a, b)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}")?;
            if b > a {
                let sep = if *b == a + 1 { "," } else { "-" };
                write!(f, "{sep}{b}")?;
            }
        }
        Ok(())
    }
}

/// The message of the first `successPolicy` rule the succeeded indexes meet.
pub(super) fn success_policy_met(
    policy: Option<&SuccessPolicy>,
    completions: i32,
    succeeded: &Intervals,
) -> Option<String> {
    let policy = policy?;
    if succeeded.total() == 0 {
        return None;
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        let met = match (&rule.succeeded_indexes, rule.succeeded_count) {
            (Some(required), count) => {
                let required = Intervals::parse(required, completions);
                if required.total() == 0 {
                    continue;
                }
                let done = required.common(succeeded);
                done == required.total() || count.is_some_and(|c| done >= c)
            }
            (None, Some(count)) => succeeded.total() >= count,
            (None, None) => false,
        };
        if met {
            return Some(format!("Matched rules at index {i}"));
        }
    }
    None
}

/// Whether a pod makes its index fail: a FailIndex rule matched it, or it is a counted
/// failure beyond the per-index backoff limit.
pub(super) fn index_failed(spec: &JobSpec, pod: &Pod, per_index: i32) -> bool {
    if !pod_failed(pod, spec) {
        return false;
    }
    let counted = match spec
        .pod_failure_policy
        .as_ref()
        .and_then(|p| policy_match(p, pod))
    {
        Some((PolicyAction::FailIndex, _)) => return true,
        Some((PolicyAction::Ignore, _)) => false,
        _ => true,
    };
    counted && annotation_count(pod, INDEX_FAILURES) >= per_index
}

/// Per index neither succeeded, failed nor running, the latest failed pod: it keeps its
/// finalizer until a replacement carries its failure count on.
pub(super) fn delayed_deletions(
    spec: &JobSpec,
    pods: &[Arc<Pod>],
    active: &[Arc<Pod>],
    removing: &HashSet<String>,
    succeeded: &Intervals,
    failed: &Intervals,
) -> HashMap<i32, Arc<Pod>> {
    let completions = spec.completions.unwrap_or(0);
    let running: HashSet<i32> = active.iter().filter_map(|p| completion_index(p)).collect();
    let absolute =
        |p: &Pod| annotation_count(p, INDEX_FAILURES) + annotation_count(p, INDEX_IGNORED_FAILURES);
    let mut out: HashMap<i32, Arc<Pod>> = HashMap::new();
    for p in pods {
        if !tracked(p) || removing.contains(uid(p)) || !pod_failed(p, spec) {
            continue;
        }
        let Some(ix) = index_below(p, completions) else {
            continue;
        };
        if succeeded.has(ix) || failed.has(ix) || running.contains(&ix) {
            continue;
        }
        match out.get(&ix) {
            Some(last) if absolute(last) > absolute(p) || finish_time(p) < finish_time(last) => {}
            _ => {
                out.insert(ix, p.clone());
            }
        }
    }
    out
}

/// The failure counts a replacement of `replaced` in its index starts with.
pub(super) fn index_failure_counts(spec: &JobSpec, replaced: Option<&Pod>) -> (i32, i32) {
    let Some(p) = replaced else {
        return (0, 0);
    };
    let (failures, ignored) = (
        annotation_count(p, INDEX_FAILURES),
        annotation_count(p, INDEX_IGNORED_FAILURES),
    );
    if failure_counts(spec, p) {
        (failures + 1, ignored)
    } else {
        (failures, ignored + 1)
    }
}

/// The first `count` indexes below `completions` that are neither succeeded, failed,
/// running nor (when only failed pods are replaced) terminating.
pub(super) fn first_pending(
    count: usize,
    completions: i32,
    spec: &JobSpec,
    a: &Assessment,
    pods: &[Arc<Pod>],
) -> Vec<i32> {
    let mut busy = a
        .succeeded_indexes
        .with(a.active.iter().filter_map(|p| completion_index(p)));
    if let Some(f) = &a.failed_indexes {
        busy = busy.union(f);
    }
    if only_replace_failed(spec) {
        busy = busy.with(
            pods.iter()
                .filter(|p| terminating(p))
                .filter_map(|p| completion_index(p)),
        );
    }
    let mut out = Vec::new();
    let mut candidate = 0;
    for &(first, last) in busy.0.iter().chain(std::iter::once(&(i32::MAX, i32::MAX))) {
        while candidate < completions && out.len() < count && candidate < first {
            out.push(candidate);
            candidate += 1;
        }
        if out.len() >= count || candidate >= completions {
            break;
        }
        candidate = candidate.max(last.saturating_add(1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::job::assess::assess;
    use crate::job::backoff::Backoff;
    use crate::job::fixtures::{at, job, pod, spec_of};
    use crate::job::manage::{pod_for, to_remove};
    use crate::job::tracking::track;

    #[test]
    fn intervals_parse_merge_and_print_as_upstream_writes_them() {
        let i = Intervals::parse("0-2,4,6-7,9-12", 11);
        assert_eq!(i.to_string(), "0-2,4,6,7,9,10");
        assert_eq!(i.total(), 8);
        assert!(i.has(4) && !i.has(5) && !i.has(11));
        assert_eq!(i.with([3, 5, 8]).to_string(), "0-10");
        assert_eq!(Intervals::parse("x,1-,3", 5).to_string(), "3");
        assert_eq!(Intervals::parse("", 5).to_string(), "");
        let a = Intervals::parse("0-4", 10);
        assert_eq!(a.common(&Intervals::parse("3-7", 10)), 2);
        assert_eq!(a.union(&Intervals::parse("6", 10)).to_string(), "0-4,6");
    }

    #[test]
    fn indexed_jobs_count_indexes_and_pick_the_first_pending_ones() {
        let j = job(
            json!({"completions": 5, "parallelism": 2, "completionMode": "Indexed"}),
            json!({"completedIndexes": "0", "succeeded": 1}),
        );
        let spec = spec_of(&j);
        let ix = |i: i32| json!({"metadata": {"annotations": {COMPLETION_INDEX: i.to_string()}}});
        let pods = vec![
            pod("a", "Succeeded", "2026-01-01T00:01:00Z", ix(2)),
            pod("b", "Running", "", ix(1)),
        ];
        let now = at("2026-01-01T00:02:00Z");
        let a = assess(&j, &spec, &pods, &HashSet::new(), Backoff::default(), now);
        assert_eq!(a.succeeded_indexes.to_string(), "0,2");
        assert_eq!(a.succeeded, 2);
        assert_eq!(first_pending(2, 5, &spec, &a, &pods), vec![3, 4]);
        let mut status = j.status.clone().unwrap();
        track(
            &j,
            &spec,
            &mut status,
            &pods,
            &HashSet::new(),
            &a,
            None,
            now,
        );
        assert_eq!(status.completed_indexes.as_deref(), Some("0,2"));
        assert_eq!(status.succeeded, Some(2));
        // Repeated and out-of-range indexes are removed first.
        let active = vec![
            pod("x", "Running", "", ix(3)),
            pod("y", "Pending", "", ix(3)),
            pod("z", "Running", "", ix(9)),
        ];
        let rm: Vec<String> = to_remove(&spec, &active, 0)
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(rm, ["z", "y"]);
    }

    #[test]
    fn per_index_limits_fail_indexes_and_carry_failure_counts() {
        let j = job(
            json!({"completions": 2, "completionMode": "Indexed", "backoffLimitPerIndex": 1,
                "backoffLimit": 100}),
            json!({}),
        );
        let spec = spec_of(&j);
        let failed = |name: &str, i: i32, count: i32| {
            pod(
                name,
                "Failed",
                "2026-01-01T00:01:00Z",
                json!({"metadata": {"annotations": {
                COMPLETION_INDEX: i.to_string(), INDEX_FAILURES: count.to_string()}}}),
            )
        };
        let pods = vec![failed("a", 0, 0), failed("b", 1, 1)];
        let now = at("2026-01-01T00:01:05Z");
        let a = assess(&j, &spec, &pods, &HashSet::new(), Backoff::default(), now);
        assert_eq!(a.failed_indexes.as_ref().unwrap().to_string(), "1");
        assert_eq!(a.delayed.get(&0).map(|p| p.name_any()), Some("a".into()));
        assert!(a.finished.is_none());
        let replacement = pod_for(&j, &spec, Some(0), a.delayed.get(&0).map(|p| p.as_ref()));
        assert_eq!(replacement.annotations()[INDEX_FAILURES], "1");
        // Index 0 failing past its limit too: every index is done, so the Job fails.
        let pods = vec![failed("a", 0, 1), failed("b", 1, 1)];
        let a = assess(&j, &spec, &pods, &HashSet::new(), Backoff::default(), now);
        assert_eq!(a.finished.unwrap().reason.as_deref(), Some("FailedIndexes"));
    }

    #[test]
    fn success_policies_match_indexes_or_counts() {
        let policy: SuccessPolicy = serde_json::from_value(json!({"rules": [
            {"succeededIndexes": "0-2", "succeededCount": 2},
            {"succeededCount": 4},
        ]}))
        .unwrap();
        let done = Intervals::parse("1,2", 10);
        assert_eq!(
            success_policy_met(Some(&policy), 10, &done).as_deref(),
            Some("Matched rules at index 0")
        );
        let done = Intervals::parse("5-8", 10);
        assert_eq!(
            success_policy_met(Some(&policy), 10, &done).as_deref(),
            Some("Matched rules at index 1")
        );
        assert_eq!(
            success_policy_met(Some(&policy), 10, &Intervals::parse("5", 10)),
            None
        );
    }
}
