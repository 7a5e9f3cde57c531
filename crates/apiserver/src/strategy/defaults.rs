//! Upstream's plain field defaults (`SetDefaults_*`): values an object gets on create when it
//! leaves them out. Defaults that depend on other fields stay with their resource in
//! `mod.rs`.

use api::Resource;
use serde_json::{Value, json};

/// (JSON pointer, value) pairs set where absent; parents are created as needed.
fn table(r: &Resource) -> Vec<(&'static str, Value)> {
    match (r.group, r.plural) {
        ("apps", "replicasets") | ("", "replicationcontrollers") => {
            vec![("/spec/replicas", json!(1))]
        }
        ("apps", "statefulsets") => vec![
            ("/spec/replicas", json!(1)),
            ("/spec/podManagementPolicy", json!("OrderedReady")),
            (
                "/spec/updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            ),
            ("/spec/revisionHistoryLimit", json!(10)),
            (
                "/spec/persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            ),
        ],
        ("apps", "daemonsets") => vec![
            (
                "/spec/updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            ),
            ("/spec/revisionHistoryLimit", json!(10)),
        ],
        ("batch", "jobs") => vec![
            ("/spec/parallelism", json!(1)),
            ("/spec/backoffLimit", json!(6)),
            ("/spec/completionMode", json!("NonIndexed")),
            ("/spec/suspend", json!(false)),
            ("/spec/podReplacementPolicy", json!("TerminatingOrFailed")),
        ],
        ("batch", "cronjobs") => vec![
            ("/spec/concurrencyPolicy", json!("Allow")),
            ("/spec/suspend", json!(false)),
            ("/spec/successfulJobsHistoryLimit", json!(3)),
            ("/spec/failedJobsHistoryLimit", json!(1)),
        ],
        ("autoscaling", "horizontalpodautoscalers") => vec![
            ("/spec/minReplicas", json!(1)),
            (
                "/spec/metrics",
                json!([{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80}}}]),
            ),
        ],
        ("scheduling.k8s.io", "priorityclasses") => {
            vec![("/preemptionPolicy", json!("PreemptLowerPriority"))]
        }
        ("", "persistentvolumes") => vec![
            ("/spec/persistentVolumeReclaimPolicy", json!("Retain")),
            ("/spec/volumeMode", json!("Filesystem")),
            ("/status/phase", json!("Pending")),
        ],
        ("", "persistentvolumeclaims") => vec![
            ("/spec/volumeMode", json!("Filesystem")),
            ("/status/phase", json!("Pending")),
        ],
        ("storage.k8s.io", "storageclasses") => vec![
            ("/reclaimPolicy", json!("Delete")),
            ("/volumeBindingMode", json!("Immediate")),
        ],
        ("storage.k8s.io", "csidrivers") => vec![
            ("/spec/attachRequired", json!(true)),
            ("/spec/podInfoOnMount", json!(false)),
            ("/spec/storageCapacity", json!(false)),
            ("/spec/fsGroupPolicy", json!("ReadWriteOnceWithFSType")),
            ("/spec/requiresRepublish", json!(false)),
            ("/spec/seLinuxMount", json!(false)),
            ("/spec/volumeLifecycleModes", json!(["Persistent"])),
        ],
        _ => Vec::new(),
    }
}

/// Sets the resource's plain defaults on `obj`.
pub(super) fn apply(r: &Resource, obj: &mut Value) {
    // A job with neither completions nor parallelism runs one pod to completion; one with
    // only parallelism is a work queue and keeps completions unset.
    if (r.group, r.plural) == ("batch", "jobs")
        && obj["spec"].get("completions").is_none()
        && obj["spec"].get("parallelism").is_none()
        && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.insert("completions".into(), json!(1));
    }
    // With a per-index limit, the global one is unlimited unless given.
    if (r.group, r.plural) == ("batch", "jobs")
        && obj["spec"].get("backoffLimitPerIndex").is_some()
        && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.entry("backoffLimit").or_insert(json!(i32::MAX));
    }
    for (path, value) in table(r) {
        let mut at = &mut *obj;
        let mut keys = path.split('/').skip(1).peekable();
        while let Some(key) = keys.next() {
            let Some(map) = at.as_object_mut() else {
                break;
            };
            if keys.peek().is_none() {
                map.entry(key).or_insert(value);
                break;
            }
            at = map.entry(key).or_insert_with(|| json!({}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::resources::find;

    #[test]
    fn absent_fields_get_defaults_and_given_ones_stay() {
        let jobs = find("batch", "v1", "jobs").unwrap();
        let mut job = json!({"spec": {"completions": 3}});
        apply(jobs, &mut job);
        assert_eq!(job["spec"]["completions"], 3);
        assert_eq!(job["spec"]["parallelism"], 1);
        assert_eq!(job["spec"]["backoffLimit"], 6);
        let mut queue = json!({"spec": {"parallelism": 2}});
        apply(jobs, &mut queue);
        assert!(queue["spec"].get("completions").is_none());
        let mut one = json!({"spec": {}});
        apply(jobs, &mut one);
        assert_eq!(one["spec"]["completions"], 1);
        let pvs = find("", "v1", "persistentvolumes").unwrap();
        let mut pv = json!({"metadata": {"name": "v"}});
        apply(pvs, &mut pv);
        assert_eq!(pv["status"]["phase"], "Pending");
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    }
}
