//! Jobs and CronJobs: their defaults, the selector a Job gets on create, and its immutable
//! selector (upstream's `pkg/registry/batch`).

use api::validation::FieldError;
use serde_json::{Value, json};

use super::defaults::set_absent;
use super::workloads::template_defaults;
use super::{Strategy, immutable, podspec, set_default};

/// Jobs.
pub(super) struct Job;

impl Strategy for Job {
    fn defaults(&self, obj: &mut Value) {
        // A job with neither completions nor parallelism runs one pod to completion; one with
        // only parallelism is a work queue and keeps completions unset.
        if obj["spec"].get("completions").is_none()
            && obj["spec"].get("parallelism").is_none()
            && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.insert("completions".into(), json!(1));
        }
        // With a per-index limit, the global one is unlimited unless given.
        if obj["spec"].get("backoffLimitPerIndex").is_some()
            && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.entry("backoffLimit").or_insert(json!(i32::MAX));
        }
        set_absent(
            obj,
            vec![
                ("/spec/parallelism", json!(1)),
                ("/spec/backoffLimit", json!(6)),
                ("/spec/completionMode", json!("NonIndexed")),
                ("/spec/suspend", json!(false)),
                ("/spec/podReplacementPolicy", json!("TerminatingOrFailed")),
            ],
        );
        template_defaults(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        job_selector(obj);
    }

    fn validate_update(
        &self,
        old: &Value,
        new: &Value,
        _sub: Option<&str>,
        errs: &mut Vec<FieldError>,
    ) {
        immutable(old, new, "/spec/selector", errs);
    }
}

/// CronJobs.
pub(super) struct CronJob;

impl Strategy for CronJob {
    fn defaults(&self, obj: &mut Value) {
        set_absent(
            obj,
            vec![
                ("/spec/concurrencyPolicy", json!("Allow")),
                ("/spec/suspend", json!(false)),
                ("/spec/successfulJobsHistoryLimit", json!(3)),
                ("/spec/failedJobsHistoryLimit", json!(1)),
            ],
        );
        if let Some(t) = obj.pointer_mut("/spec/jobTemplate/spec/template/spec") {
            podspec::default_pod_spec(t);
        }
    }
}

/// Unless a Job asks for a manual selector, labels its pod template with its name and uid
/// (`batch.kubernetes.io/job-name`, `batch.kubernetes.io/controller-uid`, and the legacy
/// `job-name`, `controller-uid`) and selects its pods by the uid, as upstream's Job strategy
/// does on create. Labels the user set are kept.
fn job_selector(obj: &mut Value) {
    if obj["spec"]["manualSelector"] == json!(true) || !obj["spec"].is_object() {
        return;
    }
    let name = obj["metadata"]["name"].clone();
    let uid = obj["metadata"]["uid"].clone();
    let spec = &mut obj["spec"];
    set_default(spec, "template", json!({}));
    set_default(&mut spec["template"], "metadata", json!({}));
    let meta = &mut spec["template"]["metadata"];
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    let labels = &mut meta["labels"];
    for (key, value) in [
        ("job-name", &name),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("batch.kubernetes.io/controller-uid", &uid),
    ] {
        set_default(labels, key, value.clone());
    }
    set_default(spec, "selector", json!({}));
    let selector = &mut spec["selector"];
    if !selector["matchLabels"].is_object() {
        selector["matchLabels"] = json!({});
    }
    set_default(
        &mut selector["matchLabels"],
        "batch.kubernetes.io/controller-uid",
        uid,
    );
}
