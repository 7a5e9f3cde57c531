//! StatefulSets and pods that the StatefulSet controller's unit tests build.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::testing::merge;

use super::plan::Step;
use super::{POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_LABEL};

pub(super) fn set(extra: Value) -> StatefulSet {
    let mut v = json!({
        "metadata": {"name": "web", "namespace": "d", "uid": "set-uid", "generation": 2},
        "spec": {
            "replicas": 3,
            "serviceName": "nginx",
            "selector": {"matchLabels": {"app": "web"}},
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1"}],
                    "volumes": [{"name": "data", "emptyDir": {}},
                                {"name": "cache", "emptyDir": {}}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data",
                    "labels": {"tier": "db"}},
                "spec": {"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

/// Pod `web-<ordinal>` at `revision` in `state`: "ready", "pending", "unready",
/// "terminating", "failed".
pub(super) fn pod(ordinal: i32, revision: &str, state: &str) -> Arc<Pod> {
    let (phase, ready) = match state {
        "ready" | "terminating" => ("Running", "True"),
        "pending" => ("Pending", "False"),
        "unready" => ("Running", "False"),
        "failed" => ("Failed", "False"),
        other => panic!("{other}"),
    };
    let name = format!("web-{ordinal}");
    let mut v = json!({
        "metadata": {"name": name, "namespace": "d", "uid": format!("uid-{ordinal}"),
            "labels": {"app": "web", REVISION_LABEL: revision, POD_NAME_LABEL: name,
                POD_INDEX_LABEL: ordinal.to_string()}},
        "spec": {"containers": []},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    });
    if state == "terminating" {
        v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    Arc::new(serde_json::from_value(v).unwrap())
}

pub(super) fn describe(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|s| match s {
            Step::Recreate(p) => format!("recreate {}", p.name_any()),
            Step::Create { ordinal, at_update } => {
                format!(
                    "create {ordinal}{}",
                    if *at_update { "" } else { " current" }
                )
            }
            Step::CreateClaims(p) => format!("claims {}", p.name_any()),
            Step::Fix(p, _) => format!("fix {}", p.name_any()),
            Step::Condemn(p) => format!("condemn {}", p.name_any()),
            Step::Update(p) => format!("update {}", p.name_any()),
        })
        .collect()
}

pub(super) fn now() -> Timestamp {
    "2026-01-02T00:00:00Z".parse().unwrap()
}
