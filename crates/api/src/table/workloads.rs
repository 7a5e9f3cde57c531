//! Printers of the workload resources and what scales or guards them: deployments, replica
//! sets and replication controllers, stateful sets, daemon sets, controller revisions, jobs,
//! cron jobs, horizontal pod autoscalers and pod disruption budgets.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{
    AGE, NAME, Printer, age, at, boolean, condition_true, containers_and_images, deleting,
    human_duration, int_at, integer, list_at, name, selector_cell, selector_string, since, str_at,
    str_or, string, string_or_number, time_at, wide,
};

/// The Containers, Images and Selector cells that close a workload's row (`-o wide`).
fn template(pod_spec: &Value, selector: Option<&Value>) -> [Value; 3] {
    let (c, i) = containers_and_images(pod_spec);
    [c, i, selector_cell(selector)]
}

/// A row: its own cells, then its template's.
fn with(head: Vec<Value>, tail: [Value; 3]) -> Vec<Value> {
    [head, tail.to_vec()].concat()
}

/// Deployments: ready, up-to-date and available replicas.
pub(super) static DEPLOYMENTS: Printer = Printer {
    columns: &[
        NAME,
        string("Ready"),
        string("Up-to-date"),
        string("Available"),
        AGE,
        wide("Containers"),
        wide("Images"),
        wide("Selector"),
    ],
    cells: deployment_cells,
};

fn deployment_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (c, i) = containers_and_images(&obj["spec"]["template"]["spec"]);
    vec![
        name(obj),
        Value::from(format!(
            "{}/{}",
            int_at(obj, "status.readyReplicas"),
            int_at(obj, "spec.replicas")
        )),
        Value::from(int_at(obj, "status.updatedReplicas")),
        Value::from(int_at(obj, "status.availableReplicas")),
        age(obj, now),
        c,
        i,
        Value::from(selector_string(at(obj, "spec.selector"))),
    ]
}

/// Replica sets and replication controllers: desired, current and ready replicas.
pub(super) static REPLICA_SETS: Printer = Printer {
    columns: &[
        NAME,
        integer("Desired"),
        integer("Current"),
        integer("Ready"),
        AGE,
        wide("Containers"),
        wide("Images"),
        wide("Selector"),
    ],
    cells: replica_set_cells,
};

fn replica_set_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    with(
        vec![
            name(obj),
            Value::from(
                at(obj, "spec.replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1),
            ),
            Value::from(int_at(obj, "status.replicas")),
            Value::from(int_at(obj, "status.readyReplicas")),
            age(obj, now),
        ],
        template(&obj["spec"]["template"]["spec"], at(obj, "spec.selector")),
    )
}

/// Stateful sets: ready out of desired replicas.
pub(super) static STATEFUL_SETS: Printer = Printer {
    columns: &[
        NAME,
        string("Ready"),
        AGE,
        wide("Containers"),
        wide("Images"),
    ],
    cells: stateful_set_cells,
};

fn stateful_set_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (c, i) = containers_and_images(&obj["spec"]["template"]["spec"]);
    vec![
        name(obj),
        Value::from(format!(
            "{}/{}",
            int_at(obj, "status.readyReplicas"),
            at(obj, "spec.replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        )),
        age(obj, now),
        c,
        i,
    ]
}

/// Daemon sets: their pod counts and node selector.
pub(super) static DAEMON_SETS: Printer = Printer {
    columns: &[
        NAME,
        integer("Desired"),
        integer("Current"),
        integer("Ready"),
        integer("Up-to-date"),
        integer("Available"),
        string("Node Selector"),
        AGE,
        wide("Containers"),
        wide("Images"),
        wide("Selector"),
    ],
    cells: daemon_set_cells,
};

fn daemon_set_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    with(
        vec![
            name(obj),
            Value::from(int_at(obj, "status.desiredNumberScheduled")),
            Value::from(int_at(obj, "status.currentNumberScheduled")),
            Value::from(int_at(obj, "status.numberReady")),
            Value::from(int_at(obj, "status.updatedNumberScheduled")),
            Value::from(int_at(obj, "status.numberAvailable")),
            selector_cell(at(obj, "spec.template.spec.nodeSelector")),
            age(obj, now),
        ],
        template(&obj["spec"]["template"]["spec"], at(obj, "spec.selector")),
    )
}

/// Controller revisions: their controller and revision number.
pub(super) static CONTROLLER_REVISIONS: Printer = Printer {
    columns: &[NAME, string("Controller"), string("Revision"), AGE],
    cells: controller_revision_cells,
};

fn controller_revision_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(controller_of(obj)),
        Value::from(int_at(obj, "revision")),
        age(obj, now),
    ]
}

/// The object's controller as `kind.group/name` in lower case, `<none>` without one.
fn controller_of(obj: &Value) -> String {
    let Some(owner) = list_at(obj, "metadata.ownerReferences")
        .iter()
        .find(|o| o["controller"].as_bool() == Some(true))
    else {
        return "<none>".into();
    };
    let group = str_at(owner, "apiVersion")
        .rsplit_once('/')
        .map_or("", |(g, _)| g);
    let name = str_at(owner, "name");
    match (str_at(owner, "kind"), group) {
        ("", "") => name.to_string(),
        (kind, "") => format!("{}/{name}", kind.to_lowercase()),
        (kind, group) => format!("{}.{}/{name}", kind.to_lowercase(), group.to_lowercase()),
    }
}

/// Jobs: state, completions and how long they ran.
pub(super) static JOBS: Printer = Printer {
    columns: &[
        NAME,
        string("Status"),
        string("Completions"),
        string("Duration"),
        AGE,
        wide("Containers"),
        wide("Images"),
        wide("Selector"),
    ],
    cells: job_cells,
};

fn job_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    with(
        vec![
            name(obj),
            Value::from(job_status(obj)),
            Value::from(job_completions(obj)),
            Value::from(job_duration(obj, now)),
            age(obj, now),
        ],
        template(&obj["spec"]["template"]["spec"], at(obj, "spec.selector")),
    )
}

/// A Job's state, by its conditions in upstream's order of precedence.
fn job_status(job: &Value) -> &'static str {
    let conditions = list_at(job, "status.conditions");
    let has = |ty| condition_true(conditions, ty);
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if deleting(job) {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

/// Succeeded pods out of the completions asked for: `1/3`, `0/1`, or `0/1 of 4` for a work
/// queue (no completions) with parallelism.
fn job_completions(job: &Value) -> String {
    let succeeded = int_at(job, "status.succeeded");
    match at(job, "spec.completions").and_then(Value::as_i64) {
        Some(n) => format!("{succeeded}/{n}"),
        None => match int_at(job, "spec.parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    }
}

/// How long a Job ran (or has run so far); empty before it started.
fn job_duration(job: &Value, now: Timestamp) -> String {
    match (
        time_at(job, "status.startTime"),
        time_at(job, "status.completionTime"),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.duration_since(start)),
        (Some(start), Some(end)) => human_duration(end.duration_since(start)),
    }
}

/// Cron jobs: schedule, time zone, suspension, active jobs and the last run.
pub(super) static CRON_JOBS: Printer = Printer {
    columns: &[
        NAME,
        string("Schedule"),
        string("Timezone"),
        boolean("Suspend"),
        integer("Active"),
        string("Last Schedule"),
        AGE,
        wide("Containers"),
        wide("Images"),
        wide("Selector"),
    ],
    cells: cron_job_cells,
};

fn cron_job_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let suspend = match at(obj, "spec.suspend").and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) | None => "False",
    };
    let last = match at(obj, "status.lastScheduleTime") {
        Some(_) => since(obj, "status.lastScheduleTime", now),
        None => Value::from("<none>"),
    };
    let job = &obj["spec"]["jobTemplate"]["spec"];
    with(
        vec![
            name(obj),
            Value::from(str_at(obj, "spec.schedule")),
            Value::from(str_or(obj, "spec.timeZone", "<none>")),
            Value::from(suspend),
            Value::from(list_at(obj, "status.active").len()),
            last,
            age(obj, now),
        ],
        template(&job["template"]["spec"], at(job, "selector")),
    )
}

/// Horizontal pod autoscalers: what they scale, on which metrics, within which bounds.
pub(super) static HORIZONTAL_POD_AUTOSCALERS: Printer = Printer {
    columns: &[
        NAME,
        string("Reference"),
        string("Targets"),
        string("MinPods"),
        string("MaxPods"),
        string("Replicas"),
        AGE,
    ],
    cells: hpa_cells,
};

fn hpa_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(format!(
            "{}/{}",
            str_at(obj, "spec.scaleTargetRef.kind"),
            str_at(obj, "spec.scaleTargetRef.name")
        )),
        Value::from(hpa_targets(obj)),
        Value::from(
            at(obj, "spec.minReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .to_string(),
        ),
        Value::from(int_at(obj, "spec.maxReplicas")),
        Value::from(int_at(obj, "status.currentReplicas")),
        age(obj, now),
    ]
}

/// An HPA's metrics, each as `current/target` (`cpu: 45%/80%`, `<unknown>` before the first
/// measurement), the first two and a count of the rest.
fn hpa_targets(hpa: &Value) -> String {
    // Without metrics, upstream's defaulting scales on 80% CPU.
    let cpu = json!({"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 80}}});
    let specs = match list_at(hpa, "spec.metrics") {
        [] => std::slice::from_ref(&cpu),
        specs => specs,
    };
    let statuses = list_at(hpa, "status.currentMetrics");
    // A quantity as upstream's `Quantity.String` prints it, `<nil>` where there is none.
    let q = |v: Option<&Value>| string_or_number(v).unwrap_or_else(|| "<nil>".into());
    let unknown = || "<unknown>".to_string();
    let mut list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let status_of = |key: &str| statuses.get(i).and_then(|s| at(s, key));
            match str_at(spec, "type") {
                ty @ ("External" | "Object") => {
                    let key = if ty == "External" {
                        "external"
                    } else {
                        "object"
                    };
                    let target = &spec[key]["target"];
                    let status = status_of(key);
                    match at(target, "averageValue") {
                        Some(avg) => {
                            let current = status
                                .and_then(|s| at(s, "current.averageValue"))
                                .map_or_else(unknown, |v| q(Some(v)));
                            format!("{current}/{} (avg)", q(Some(avg)))
                        }
                        None => {
                            let current =
                                status.map_or_else(unknown, |s| q(at(s, "current.value")));
                            format!("{current}/{}", q(at(target, "value")))
                        }
                    }
                }
                "Pods" => {
                    let current = status_of("pods")
                        .map_or_else(unknown, |s| q(at(s, "current.averageValue")));
                    format!("{current}/{}", q(at(spec, "pods.target.averageValue")))
                }
                ty @ ("Resource" | "ContainerResource") => {
                    let key = if ty == "Resource" {
                        "resource"
                    } else {
                        "containerResource"
                    };
                    let source = &spec[key];
                    let name = str_at(source, "name");
                    let status = status_of(key);
                    match at(source, "target.averageValue") {
                        Some(avg) => {
                            let current =
                                status.map_or_else(unknown, |s| q(at(s, "current.averageValue")));
                            format!("{name}: {current}/{}", q(Some(avg)))
                        }
                        None => {
                            let percent = |v: Option<&Value>| {
                                v.and_then(Value::as_i64).map(|p| format!("{p}%"))
                            };
                            let current = status
                                .and_then(|s| percent(at(s, "current.averageUtilization")))
                                .unwrap_or_else(unknown);
                            let target = percent(at(source, "target.averageUtilization"))
                                .unwrap_or_else(|| "<auto>".into());
                            format!("{name}: {current}/{target}")
                        }
                    }
                }
                _ => "<unknown type>".into(),
            }
        })
        .collect();
    let count = list.len();
    list.truncate(2);
    let shown = list.join(", ");
    if count > 2 {
        format!("{shown} + {} more...", count - 2)
    } else {
        shown
    }
}

/// Pod disruption budgets: their bounds and the disruptions they allow now.
pub(super) static POD_DISRUPTION_BUDGETS: Printer = Printer {
    columns: &[
        NAME,
        string("Min Available"),
        string("Max Unavailable"),
        integer("Allowed Disruptions"),
        AGE,
    ],
    cells: pdb_cells,
};

fn pdb_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let bound = |path| string_or_number(at(obj, path)).unwrap_or_else(|| "N/A".into());
    vec![
        name(obj),
        Value::from(bound("spec.minAvailable")),
        Value::from(bound("spec.maxUnavailable")),
        Value::from(int_at(obj, "status.disruptionsAllowed")),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::testing::{meta, row};

    #[test]
    fn job_status_completions_and_duration() {
        let job = |spec: Value, status: Value| {
            row(
                "batch",
                "v1",
                "jobs",
                json!({"metadata": meta(), "spec": spec, "status": status}),
            )
        };
        let cells = job(
            json!({"completions": 3, "selector": {"matchLabels": {"job": "x"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}),
            json!({"succeeded": 1, "startTime": "2026-01-01T00:30:00Z"}),
        );
        assert_eq!(
            cells,
            vec![
                json!("x"),
                json!("Running"),
                json!("1/3"),
                json!("30m"),
                json!("60m"),
                json!("c"),
                json!("busybox"),
                json!("job=x"),
            ]
        );
        let complete = job(
            json!({}),
            json!({"succeeded": 1, "startTime": "2026-01-01T00:00:00Z",
                "completionTime": "2026-01-01T00:00:42Z",
                "conditions": [{"type": "Complete", "status": "True"}]}),
        );
        assert_eq!(
            &complete[1..4],
            [json!("Complete"), json!("1/1"), json!("42s")]
        );
        let queue = job(json!({"parallelism": 4}), json!({}));
        assert_eq!(
            &queue[1..4],
            [json!("Running"), json!("0/1 of 4"), json!("")]
        );
        let failed = job(
            json!({}),
            json!({"conditions": [{"type": "Complete", "status": "False"},
                {"type": "Failed", "status": "True"}]}),
        );
        assert_eq!(failed[1], json!("Failed"));
        let suspended = job(
            json!({"suspend": true}),
            json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
        );
        assert_eq!(suspended[1], json!("Suspended"));
        assert_eq!(suspended[7], json!("<none>"));
    }

    #[test]
    fn cronjob_last_schedule_and_suspend() {
        let spec = json!({"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec":
            {"containers": [{"name": "c", "image": "busybox"}]}}}}});
        let never = row(
            "batch",
            "v1",
            "cronjobs",
            json!({"metadata": meta(), "spec": spec}),
        );
        assert_eq!(
            never,
            vec![
                json!("x"),
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(0),
                json!("<none>"),
                json!("60m"),
                json!("c"),
                json!("busybox"),
                json!("<none>"),
            ]
        );
        let mut ran = spec.clone();
        ran["suspend"] = json!(true);
        ran["timeZone"] = json!("Europe/Paris");
        let ran = row(
            "batch",
            "v1",
            "cronjobs",
            json!({"metadata": meta(), "spec": ran, "status": {
                "active": [{"name": "x-1"}], "lastScheduleTime": "2026-01-01T00:55:00Z"}}),
        );
        assert_eq!(
            &ran[2..6],
            [json!("Europe/Paris"), json!("True"), json!(1), json!("5m")]
        );
    }

    #[test]
    fn hpa_targets_and_bounds() {
        let hpa = |spec: Value, status: Value| {
            let mut spec = spec;
            spec["scaleTargetRef"] = json!({"kind": "Deployment", "name": "web"});
            spec["maxReplicas"] = json!(5);
            row(
                "autoscaling",
                "v2",
                "horizontalpodautoscalers",
                json!({"metadata": meta(), "spec": spec, "status": status}),
            )
        };
        let cpu = json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}});
        assert_eq!(
            hpa(json!({"minReplicas": 2, "metrics": [cpu]}), json!({})),
            vec![
                json!("x"),
                json!("Deployment/web"),
                json!("cpu: <unknown>/80%"),
                json!("2"),
                json!(5),
                json!(0),
                json!("60m"),
            ]
        );
        let measured = hpa(
            json!({"metrics": [cpu]}),
            json!({"currentReplicas": 3, "currentMetrics": [{"type": "Resource",
                "resource": {"name": "cpu", "current": {"averageUtilization": 45, "averageValue": "90m"}}}]}),
        );
        assert_eq!(
            &measured[2..6],
            [json!("cpu: 45%/80%"), json!("1"), json!(5), json!(3)]
        );
        let memory = json!({"type": "Resource", "resource": {"name": "memory",
            "target": {"type": "AverageValue", "averageValue": "512Mi"}}});
        let pods = json!({"type": "Pods", "pods": {"metric": {"name": "qps"},
            "target": {"type": "AverageValue", "averageValue": "10"}}});
        let external = json!({"type": "External", "external": {"metric": {"name": "queue"},
            "target": {"type": "Value", "value": "30"}}});
        let many = hpa(
            json!({"metrics": [memory, pods, external]}),
            json!({"currentMetrics": [{"type": "Resource",
                "resource": {"name": "memory", "current": {"averageValue": "100Mi"}}}]}),
        );
        assert_eq!(
            many[2],
            json!("memory: 100Mi/512Mi, <unknown>/10 + 1 more...")
        );
        assert_eq!(hpa(json!({}), json!({}))[2], json!("cpu: <unknown>/80%"));
    }

    #[test]
    fn pdb_bounds() {
        let pdb = |spec: Value, allowed: i64| {
            row(
                "policy",
                "v1",
                "poddisruptionbudgets",
                json!({"metadata": meta(), "spec": spec, "status": {"disruptionsAllowed": allowed}}),
            )
        };
        assert_eq!(
            pdb(json!({"minAvailable": 2}), 1),
            vec![json!("x"), json!("2"), json!("N/A"), json!(1), json!("60m")]
        );
        assert_eq!(
            &pdb(json!({"maxUnavailable": "25%"}), 0)[1..4],
            [json!("N/A"), json!("25%"), json!(0)]
        );
    }

    #[test]
    fn controller_revisions() {
        let rev = row(
            "apps",
            "v1",
            "controllerrevisions",
            json!({"metadata": {"name": "web-5d4", "creationTimestamp": "2026-01-01T00:00:00Z",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}]},
                "revision": 2}),
        );
        assert_eq!(&rev[1..3], [json!("statefulset.apps/web"), json!(2)]);
    }
}
