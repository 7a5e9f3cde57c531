//! The pod status the agent reports, computed from what it knows of the pod's containers:
//! phase, conditions, container statuses (waiting/running/terminated, lastState,
//! restartCount, ids, ready, started), addresses and start time, in upstream's shape and words
//! so that `kubectl get pods` and `describe` read as they do against a kubelet.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, ContainerState, ContainerStatus, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use crate::containers::Record;

/// What the status is computed from.
pub(crate) struct Input<'a> {
    pub(crate) pod: &'a Pod,
    pub(crate) records: &'a BTreeMap<String, Vec<Record>>,
    /// Why containers wait: reason and message.
    pub(crate) waiting: &'a BTreeMap<String, (String, Option<String>)>,
    /// Probe results: (ready, started).
    pub(crate) ready: &'a BTreeMap<String, (bool, bool)>,
    pub(crate) sandbox_ready: bool,
    pub(crate) ips: Vec<String>,
    pub(crate) host_ip: String,
    pub(crate) start_time: Option<Timestamp>,
    /// The runtime's name, the scheme of container IDs.
    pub(crate) runtime: String,
    /// Being deleted or finished: nothing restarts any more.
    pub(crate) deleting: bool,
    /// The agent's data directory (containers' termination-log files).
    pub(crate) data: &'a std::path::Path,
    /// The pod failed as a whole: reason and message (DeadlineExceeded).
    pub(crate) failure: Option<(String, String)>,
}

fn terminated(r: &Record, c: &Container, i: &Input) -> Value {
    let runtime = &i.runtime;
    let code = r.exit_code().unwrap_or(0);
    let reason = if r.meta.start_error.is_some() {
        "StartError"
    } else if r.oom {
        "OOMKilled"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    };
    let finished = r
        .exit
        .as_ref()
        .map(|e| e.finished_at.clone())
        .or_else(|| r.meta.started_at.clone());
    let mut t = json!({
        "exitCode": code,
        "reason": reason,
        "startedAt": r.meta.started_at,
        "finishedAt": finished,
        "containerID": format!("{runtime}://{}", r.meta.id),
    });
    if let Some(msg) = &r.meta.start_error {
        t["message"] = json!(msg);
    } else if let Some(msg) = termination_message(r, i.data) {
        t["message"] = json!(msg);
    } else if code != 0
        && c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        && let Ok(text) = runtime::logs::tail(&r.meta.log, FALLBACK_LINES, FALLBACK_BYTES)
        && !text.is_empty()
    {
        t["message"] = json!(text);
    }
    if let Some(sig) = r.exit.as_ref().and_then(|e| e.signal) {
        t["signal"] = json!(sig);
    }
    json!({"terminated": t})
}

/// How much of the log a failed container's message takes under `FallbackToLogsOnError`
/// (upstream's limits).
const FALLBACK_LINES: usize = 80;
const FALLBACK_BYTES: usize = 2048;

/// What the container wrote to its termination-log file, if anything (4 KiB at most).
fn termination_message(r: &Record, data: &std::path::Path) -> Option<String> {
    let bytes =
        std::fs::read(crate::containers::dir(data, &r.meta.id).join("termination-log")).ok()?;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned();
    (!text.is_empty()).then_some(text)
}

fn will_restart(policy: &str, r: &Record) -> bool {
    match r.exit_code() {
        None => false,
        Some(code) => match policy {
            "Always" => true,
            "OnFailure" => code != 0,
            _ => false,
        },
    }
}

/// One container's status; also whether it has finished for good.
fn container_status(
    i: &Input,
    c: &Container,
    init: bool,
    blocked: bool,
    policy: &str,
) -> (Value, bool) {
    let list = i.records.get(&c.name);
    let latest = list.and_then(|l| l.last());
    let previous = list.and_then(|l| {
        if l.len() >= 2 {
            l.get(l.len() - 2)
        } else {
            None
        }
    });
    let waiting = i.waiting.get(&c.name);
    let mut s = json!({
        "name": c.name,
        "image": c.image,
        "imageID": latest.map(|r| r.meta.image_id.clone()).unwrap_or_default(),
        "restartCount": latest.map(|r| r.meta.attempt).unwrap_or(0),
        "ready": false,
        "started": false,
        "lastState": {},
    });
    let (mut ready, mut done) = (false, false);
    let wait = |reason: &str, message: Option<&String>| {
        let mut w = json!({"reason": reason});
        if let Some(m) = message {
            w["message"] = json!(m);
        }
        json!({"waiting": w})
    };
    match latest {
        None => {
            let reason = if blocked {
                "PodInitializing"
            } else {
                "ContainerCreating"
            };
            s["state"] = match waiting {
                Some((r, m)) if !blocked => wait(r, m.as_ref()),
                _ => wait(reason, None),
            };
        }
        Some(r) => {
            s["containerID"] = json!(format!("{}://{}", i.runtime, r.meta.id));
            if r.running() {
                s["state"] = json!({"running": {"startedAt": r.meta.started_at}});
                let (probe_ready, started) = i.ready.get(&c.name).copied().unwrap_or((
                    c.readiness_probe.is_none() && c.startup_probe.is_none(),
                    c.startup_probe.is_none(),
                ));
                s["started"] = json!(started);
                ready = probe_ready && started && !init;
                if let Some(prev) = previous {
                    s["lastState"] = terminated(prev, c, i);
                }
            } else if r.meta.started_at.is_none() {
                s["state"] = wait("ContainerCreating", None);
            } else if let Some((reason, message)) =
                waiting.filter(|_| !i.deleting && will_restart(policy, r))
            {
                s["state"] = wait(reason, message.as_ref());
                s["lastState"] = terminated(r, c, i);
            } else {
                s["state"] = terminated(r, c, i);
                done = i.deleting || !will_restart(policy, r);
                if let Some(prev) = previous {
                    s["lastState"] = terminated(prev, c, i);
                }
            }
        }
    }
    s["ready"] = json!(ready);
    (s, done)
}

/// The init containers' statuses (a completed one ready, as upstream's prober manager
/// reports it); whether they are all done (completed, or started for sidecars); whether one
/// failed for good.
fn init_statuses(i: &Input, inits: &[Container], policy: &str) -> (Vec<Value>, bool, bool) {
    let mut statuses = Vec::new();
    let (mut initialized, mut failed) = (true, false);
    for c in inits {
        if crate::pods::is_sidecar(c) {
            // Sidecars count for the pod's readiness, and are done initialising once started.
            let (s, _) = container_status(i, c, false, false, "Always");
            initialized &= s["started"] == json!(true);
            statuses.push(s);
            continue;
        }
        let (mut s, _) = container_status(i, c, true, false, policy);
        let latest = i.records.get(&c.name).and_then(|l| l.last());
        match latest.and_then(Record::exit_code) {
            Some(0) => s["ready"] = json!(true),
            Some(_) if policy == "Never" => {
                failed = true;
                initialized = false;
            }
            _ => initialized = false,
        }
        statuses.push(s);
    }
    (statuses, initialized, failed)
}

/// What the conditions read of a container's status: its name, readiness, whether it started,
/// and whether it is running or terminated.
fn readiness(s: &Value) -> ContainerStatus {
    let has = |state: &str| s["state"].get(state).is_some();
    ContainerStatus {
        name: s["name"].as_str().unwrap_or_default().into(),
        ready: s["ready"] == json!(true),
        started: s["started"].as_bool(),
        state: Some(ContainerState {
            running: has("running").then(Default::default),
            terminated: has("terminated").then(Default::default),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The kubelet's conditions ([`pod::kubelet_conditions`]) from the container statuses (init
/// then regular), each with `lastProbeTime: null` as upstream's serialisation writes it.
fn conditions(i: &Input, spec: &PodSpec, statuses: &[&Value], phase: &str) -> Value {
    let typed: Vec<ContainerStatus> = statuses.iter().map(|s| readiness(s)).collect();
    let old = i.pod.status.as_ref().and_then(|s| s.conditions.as_deref());
    let now = Time(Timestamp::now());
    let list = pod::kubelet_conditions(
        spec,
        old.unwrap_or_default(),
        &typed,
        phase,
        i.sandbox_ready,
        &now,
    );
    let mut v = serde_json::to_value(list).unwrap_or_else(|_| json!([]));
    for c in v.as_array_mut().into_iter().flatten() {
        if c.get("lastProbeTime").is_none() {
            c["lastProbeTime"] = Value::Null;
        }
    }
    v
}

/// The status to post.
pub(crate) fn build(i: &Input) -> Value {
    let pod = i.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let inits = spec.init_containers.clone().unwrap_or_default();
    let (init_statuses, initialized, init_failed) = init_statuses(i, &inits, &policy);
    let mut statuses = Vec::new();
    let (mut all_done, mut any_failed, mut all_created) = (true, false, true);
    for c in &spec.containers {
        let (s, done) = container_status(i, c, false, !initialized, &policy);
        let latest = i.records.get(&c.name).and_then(|l| l.last());
        if latest.is_none() {
            all_created = false;
        }
        if !done {
            all_done = false;
        } else if latest.and_then(Record::exit_code).unwrap_or(0) != 0 {
            any_failed = true;
        }
        statuses.push(s);
    }
    let phase = if init_failed || i.failure.is_some() {
        "Failed"
    } else if all_done && !spec.containers.is_empty() && initialized {
        if any_failed { "Failed" } else { "Succeeded" }
    } else if initialized && all_created {
        "Running"
    } else {
        "Pending"
    };
    let all: Vec<&Value> = init_statuses.iter().chain(&statuses).collect();
    let conditions = conditions(i, &spec, &all, phase);
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": i.host_ip,
        "hostIPs": [{"ip": i.host_ip}],
        "startTime": i.start_time.map(|t| t.to_string()),
        "containerStatuses": statuses,
    });
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    let ephemeral: Vec<Value> = crate::pods::ephemeral_containers(pod)
        .iter()
        .map(|(c, _)| container_status(i, c, false, !initialized, "Never").0)
        .collect();
    if !ephemeral.is_empty() {
        status["ephemeralContainerStatuses"] = json!(ephemeral);
    }
    if let Some(ip) = i.ips.first() {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!(i.ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>());
    } else if let Some(old) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) {
        status["podIP"] = json!(old);
    }
    if let Some((reason, message)) = &i.failure {
        status["reason"] = json!(reason);
        status["message"] = json!(message);
    }
    if let Some(q) = pod.status.as_ref().and_then(|s| s.qos_class.clone()) {
        status["qosClass"] = json!(q);
    }
    status
}
