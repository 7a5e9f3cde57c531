//! Jobs and pods that the Job controller's unit tests build.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::testing::merge;

use super::TRACKING_FINALIZER;

pub(super) fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub(super) fn job(spec: Value, status: Value) -> Job {
    let mut spec = spec;
    if spec.get("template").is_none() {
        spec["template"] = json!({"spec": {"containers": [{"name": "c", "image": "busybox"}],
            "restartPolicy": "Never"}});
    }
    serde_json::from_value(json!({
        "metadata": {"name": "pi", "namespace": "d", "uid": "job-uid"},
        "spec": spec,
        "status": status,
    }))
    .unwrap()
}

/// A pod of the job: `phase`, finished at `done` (if terminal), with `extra` merged in.
pub(super) fn pod(name: &str, phase: &str, done: &str, extra: Value) -> Arc<Pod> {
    let terminated = pod::is_terminal_phase(phase);
    let code = if phase == "Failed" { 1 } else { 0 };
    let mut v = json!({
        "metadata": {"name": name, "namespace": "d", "uid": format!("uid-{name}"),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "finalizers": [TRACKING_FINALIZER],
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi",
                "uid": "job-uid", "controller": true}]},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": phase, "containerStatuses": [{
            "name": "c", "image": "busybox", "imageID": "", "ready": !terminated,
            "restartCount": 0,
            "state": if terminated {
                json!({"terminated": {"exitCode": code, "finishedAt": done}})
            } else {
                json!({"running": {}})
            }}]},
    });
    merge(&mut v, extra);
    Arc::new(serde_json::from_value(v).unwrap())
}

pub(super) fn spec_of(j: &Job) -> JobSpec {
    j.spec.clone().unwrap()
}
