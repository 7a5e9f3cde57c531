//! The pod conditions a kubelet reports (`PodReadyToStartContainers`, `Initialized`, `Ready`,
//! `ContainersReady`, `PodScheduled`), computed from the pod's spec, its phase and its
//! container statuses as upstream's `pkg/kubelet/status/generate.go` does, then merged with
//! the pod's previous conditions as its status manager does: conditions the kubelet does not
//! own are kept, and a condition keeps its `lastTransitionTime` while its status stays.
//!
//! Container statuses are passed as one list, init containers' then regular ones' (upstream's
//! `allContainerStatuses`); a container is found in it by name.
//!
//! `Ready` also waits for the pod's readiness gates: the conditions others (load balancer
//! controllers, say) set on the pod for each `spec.readinessGates` entry.

use k8s_openapi::api::core::v1::{Container, ContainerStatus, PodCondition, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The reason of a Succeeded pod's `Ready`, `ContainersReady` and `Initialized` conditions.
pub const POD_COMPLETED: &str = "PodCompleted";
/// The reason of a Failed pod's `Ready` and `ContainersReady` conditions.
pub const POD_FAILED: &str = "PodFailed";
/// The reason of `Ready` and `ContainersReady` while some container is not ready.
pub const CONTAINERS_NOT_READY: &str = "ContainersNotReady";
/// The reason of `Initialized` while some init container has not completed (or started).
pub const CONTAINERS_NOT_INITIALIZED: &str = "ContainersNotInitialized";
/// The reason of `Ready` while the containers are ready but a readiness gate is not.
pub const READINESS_GATES_NOT_READY: &str = "ReadinessGatesNotReady";

/// The condition types the kubelet owns, in the order it reports them.
pub const KUBELET_CONDITIONS: [&str; 5] = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
];

/// Every condition the kubelet reports for a pod with `spec`, in `phase`, with container
/// statuses `statuses` (init then regular), whose sandbox is (`sandbox_ready`) or is not
/// ready, given its `old` conditions, at `now`: the conditions of `old` the kubelet does not
/// own first (readiness gates' conditions, `DisruptionTarget`), then [`KUBELET_CONDITIONS`]
/// (`PodScheduled` always True), each keeping its old `lastTransitionTime` while its status
/// stays ([`with_transition_time`]). Upstream: `generateAPIPodStatus`, then the status
/// manager's `mergePodStatus` and `updateLastTransitionTime`.
pub fn kubelet_conditions(
    spec: &PodSpec,
    old: &[PodCondition],
    statuses: &[ContainerStatus],
    phase: &str,
    sandbox_ready: bool,
    now: &Time,
) -> Vec<PodCondition> {
    let scheduled = PodCondition {
        type_: "PodScheduled".into(),
        status: "True".into(),
        ..Default::default()
    };
    let owned = [
        ready_to_start_containers_condition(sandbox_ready),
        initialized_condition(spec, statuses, phase),
        pod_ready_condition(spec, statuses, phase, old),
        containers_ready_condition(spec, statuses, phase),
        scheduled,
    ];
    old.iter()
        .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
        .cloned()
        .chain(owned.into_iter().map(|c| with_transition_time(c, old, now)))
        .collect()
}

/// `condition` with its `lastTransitionTime`: the one of the condition of its type in `old`
/// if that has the same status (and a time), else `now` (upstream's
/// `updateLastTransitionTime`).
pub fn with_transition_time(
    mut condition: PodCondition,
    old: &[PodCondition],
    now: &Time,
) -> PodCondition {
    let kept = old
        .iter()
        .find(|c| c.type_ == condition.type_)
        .filter(|c| c.status == condition.status)
        .and_then(|c| c.last_transition_time.clone());
    condition.last_transition_time = Some(kept.unwrap_or_else(|| now.clone()));
    condition
}

/// `PodReadyToStartContainers`: True while the pod's sandbox (and its network) exists
/// (upstream's `GeneratePodReadyToStartContainersCondition`).
pub fn ready_to_start_containers_condition(sandbox_ready: bool) -> PodCondition {
    condition("PodReadyToStartContainers", sandbox_ready, None, None)
}

/// `ContainersReady` (upstream's `GenerateContainersReadyCondition`): False with
/// [`POD_COMPLETED`] once Succeeded, [`POD_FAILED`] once Failed; False with
/// [`CONTAINERS_NOT_READY`] and `containers with unready status: [a b]` while a regular
/// container or a sidecar (an init container with `restartPolicy: Always`) is not ready (or
/// `containers with unknown status: [...]` while one has no status); True otherwise.
pub fn containers_ready_condition(
    spec: &PodSpec,
    statuses: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    let counted = init_containers(spec)
        .iter()
        .filter(|c| is_restartable_init_container(c))
        .chain(&spec.containers);
    let (mut unknown, mut unready) = (Vec::new(), Vec::new());
    for c in counted {
        match status_of(statuses, &c.name) {
            None => unknown.push(c.name.as_str()),
            Some(s) if !s.ready => unready.push(c.name.as_str()),
            Some(_) => {}
        }
    }
    let type_ = "ContainersReady";
    match phase {
        "Succeeded" if unknown.is_empty() => condition(type_, false, Some(POD_COMPLETED), None),
        "Failed" => condition(type_, false, Some(POD_FAILED), None),
        _ => match message(&[("unknown", &unknown), ("unready", &unready)]) {
            Some(m) => condition(type_, false, Some(CONTAINERS_NOT_READY), Some(m)),
            None => condition(type_, true, None, None),
        },
    }
}

/// `Ready` (upstream's `GeneratePodReadyCondition`): as [`containers_ready_condition`], under
/// type `Ready`; once the containers are ready, False with [`READINESS_GATES_NOT_READY`] while
/// a readiness gate's condition among `conditions` (the pod's current ones) is missing or not
/// True, in upstream's words.
pub fn pod_ready_condition(
    spec: &PodSpec,
    statuses: &[ContainerStatus],
    phase: &str,
    conditions: &[PodCondition],
) -> PodCondition {
    let containers = containers_ready_condition(spec, statuses, phase);
    if containers.status != "True" {
        return PodCondition {
            type_: "Ready".into(),
            ..containers
        };
    }
    let unready: Vec<String> = spec
        .readiness_gates
        .iter()
        .flatten()
        .filter_map(|gate| {
            let name = &gate.condition_type;
            match conditions.iter().find(|c| &c.type_ == name) {
                None => Some(format!(
                    "corresponding condition of pod readiness gate {name:?} does not exist."
                )),
                Some(c) if c.status != "True" => Some(format!(
                    "the status of pod readiness gate {name:?} is not \"True\", but {}",
                    c.status
                )),
                Some(_) => None,
            }
        })
        .collect();
    if unready.is_empty() {
        return condition("Ready", true, None, None);
    }
    condition(
        "Ready",
        false,
        Some(READINESS_GATES_NOT_READY),
        Some(unready.join(", ")),
    )
}

/// `Initialized` (upstream's `GeneratePodInitializedCondition`): True with [`POD_COMPLETED`]
/// once Succeeded; True once a regular container has started (running or terminated: a
/// restarting sidecar does not undo it); False with [`CONTAINERS_NOT_INITIALIZED`] and
/// `containers with incomplete status: [a b]` while an init container is not ready (a
/// completed one is) or a sidecar has not started; True otherwise.
pub fn initialized_condition(
    spec: &PodSpec,
    statuses: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    let (mut unknown, mut incomplete) = (Vec::new(), Vec::new());
    for c in init_containers(spec) {
        match status_of(statuses, &c.name) {
            None => unknown.push(c.name.as_str()),
            Some(s) if !is_init_container_initialized(c, s) => incomplete.push(c.name.as_str()),
            Some(_) => {}
        }
    }
    let type_ = "Initialized";
    if phase == "Succeeded" && unknown.is_empty() {
        return condition(type_, true, Some(POD_COMPLETED), None);
    }
    if any_regular_container_started(spec, statuses) {
        return condition(type_, true, None, None);
    }
    match message(&[("unknown", &unknown), ("incomplete", &incomplete)]) {
        Some(m) => condition(type_, false, Some(CONTAINERS_NOT_INITIALIZED), Some(m)),
        None => condition(type_, true, None, None),
    }
}

/// Whether `c` is a sidecar: an init container with `restartPolicy: Always` (upstream's
/// `IsRestartableInitContainer`).
fn is_restartable_init_container(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// A sidecar is done initialising once started; another init container once ready (it
/// completed).
fn is_init_container_initialized(c: &Container, s: &ContainerStatus) -> bool {
    if is_restartable_init_container(c) {
        s.started == Some(true)
    } else {
        s.ready
    }
}

/// Whether a regular container is running or has terminated (upstream's
/// `HasAnyRegularContainerStarted`).
fn any_regular_container_started(spec: &PodSpec, statuses: &[ContainerStatus]) -> bool {
    statuses
        .iter()
        .filter(|s| spec.containers.iter().any(|c| c.name == s.name))
        .filter_map(|s| s.state.as_ref())
        .any(|state| state.running.is_some() || state.terminated.is_some())
}

/// `spec.initContainers`, empty when unset.
fn init_containers(spec: &PodSpec) -> &[Container] {
    spec.init_containers.as_deref().unwrap_or_default()
}

/// The status of the container named `name` (upstream's `GetContainerStatus`).
fn status_of<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

/// `containers with <what> status: [a b]` for each non-empty list, joined by `, `; `None`
/// when every list is empty.
fn message(lists: &[(&str, &Vec<&str>)]) -> Option<String> {
    let parts: Vec<String> = lists
        .iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(what, names)| format!("containers with {what} status: [{}]", names.join(" ")))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A condition of `type_`, True when `ok`, with no transition time yet.
fn condition(type_: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.map(Into::into),
        message,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{Value, json};

    fn spec(v: Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    /// A pod with regular containers `a` and `b`, init container `setup` and sidecar `proxy`.
    fn with_init() -> PodSpec {
        spec(json!({
            "initContainers": [
                {"name": "setup", "image": "busybox"},
                {"name": "proxy", "image": "envoy", "restartPolicy": "Always"},
            ],
            "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}],
        }))
    }

    fn plain() -> PodSpec {
        spec(json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}))
    }

    /// A status of `name`: `state` one of running, terminated (code 0), waiting.
    fn status(name: &str, state: &str, ready: bool, started: bool) -> ContainerStatus {
        let state = match state {
            "running" => json!({"running": {"startedAt": "2025-01-01T00:00:00Z"}}),
            "terminated" => json!({"terminated": {"exitCode": 0}}),
            _ => json!({"waiting": {"reason": "ContainerCreating"}}),
        };
        serde_json::from_value(json!({
            "name": name, "image": "x", "imageID": "", "restartCount": 0,
            "ready": ready, "started": started, "state": state,
        }))
        .unwrap()
    }

    fn running(names: &[&str]) -> Vec<ContainerStatus> {
        names
            .iter()
            .map(|n| status(n, "running", true, true))
            .collect()
    }

    /// (status, reason, message) of a condition, "" for what is unset.
    fn view(c: &PodCondition) -> (String, String, String) {
        (
            c.status.clone(),
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    }

    fn v(status: &str, reason: &str, message: &str) -> (String, String, String) {
        (status.into(), reason.into(), message.into())
    }

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn a_running_pod_with_ready_containers_is_ready() {
        let s = plain();
        let all = running(&["a", "b"]);
        for c in [
            containers_ready_condition(&s, &all, "Running"),
            pod_ready_condition(&s, &all, "Running", &[]),
            initialized_condition(&s, &all, "Running"),
        ] {
            assert_eq!(view(&c), v("True", "", ""), "{c:?}");
        }
        assert_eq!(pod_ready_condition(&s, &all, "Running", &[]).type_, "Ready");
        assert_eq!(ready_to_start_containers_condition(true).status, "True");
        assert_eq!(ready_to_start_containers_condition(false).status, "False");
    }

    #[test]
    fn unready_containers_and_sidecars_are_listed() {
        // Both regular containers unready (as the simulator's back-off and the agent's
        // probes leave them), in the spec's order.
        let s = plain();
        let mut all = running(&["a", "b"]);
        all[0].ready = false;
        all[1].ready = false;
        let expect = v(
            "False",
            "ContainersNotReady",
            "containers with unready status: [a b]",
        );
        assert_eq!(
            view(&containers_ready_condition(&s, &all, "Running")),
            expect
        );
        assert_eq!(view(&pod_ready_condition(&s, &all, "Running", &[])), expect);

        // A sidecar counts, before the regular containers; a completed init container does not.
        let s = with_init();
        let mut all = vec![
            status("setup", "terminated", true, false),
            status("proxy", "running", false, true),
        ];
        all.extend(running(&["a", "b"]));
        all[3].ready = false;
        assert_eq!(
            view(&containers_ready_condition(&s, &all, "Running")),
            v(
                "False",
                "ContainersNotReady",
                "containers with unready status: [proxy b]"
            )
        );
        // A container without a status is unknown.
        all.truncate(3);
        assert_eq!(
            view(&containers_ready_condition(&s, &all, "Pending")).2,
            "containers with unknown status: [b], containers with unready status: [proxy]"
        );
    }

    #[test]
    fn completed_and_failed_pods() {
        for s in [plain(), with_init()] {
            let mut all = vec![
                status("setup", "terminated", true, false),
                status("proxy", "terminated", false, false),
            ];
            all.extend(["a", "b"].map(|n| status(n, "terminated", false, false)));
            let done = v("False", "PodCompleted", "");
            assert_eq!(
                view(&containers_ready_condition(&s, &all, "Succeeded")),
                done
            );
            assert_eq!(view(&pod_ready_condition(&s, &all, "Succeeded", &[])), done);
            // Initialized says PodCompleted too, with or without init containers.
            let init = initialized_condition(&s, &all, "Succeeded");
            assert_eq!(view(&init), v("True", "PodCompleted", ""));

            let failed = v("False", "PodFailed", "");
            assert_eq!(
                view(&containers_ready_condition(&s, &all, "Failed")),
                failed
            );
            assert_eq!(view(&pod_ready_condition(&s, &all, "Failed", &[])), failed);
            // Its containers ran: it was initialized.
            let init = initialized_condition(&s, &all, "Failed");
            assert_eq!(view(&init), v("True", "", ""));
        }
    }

    #[test]
    fn a_pod_whose_init_container_failed_is_not_initialized() {
        let s = with_init();
        let mut failed = status("setup", "terminated", false, false);
        failed
            .state
            .as_mut()
            .unwrap()
            .terminated
            .as_mut()
            .unwrap()
            .exit_code = 1;
        let all = vec![
            failed,
            status("proxy", "waiting", false, false),
            status("a", "waiting", false, false),
            status("b", "waiting", false, false),
        ];
        assert_eq!(
            view(&initialized_condition(&s, &all, "Failed")),
            v(
                "False",
                "ContainersNotInitialized",
                "containers with incomplete status: [setup proxy]"
            )
        );
        assert_eq!(
            containers_ready_condition(&s, &all, "Failed")
                .reason
                .as_deref(),
            Some("PodFailed")
        );
    }

    #[test]
    fn init_containers_complete_and_sidecars_start() {
        let s = with_init();
        let waiting = |n: &str| status(n, "waiting", false, false);
        let incomplete = |names: &str| {
            v(
                "False",
                "ContainersNotInitialized",
                &format!("containers with incomplete status: [{names}]"),
            )
        };
        let mut all = vec![status("setup", "running", false, true), waiting("proxy")];
        all.extend(["a", "b"].map(waiting));
        assert_eq!(
            view(&initialized_condition(&s, &all, "Pending")),
            incomplete("setup proxy")
        );

        // Completed (ready), and the sidecar started though not ready: initialized.
        all[0] = status("setup", "terminated", true, false);
        assert_eq!(
            view(&initialized_condition(&s, &all, "Pending")),
            incomplete("proxy")
        );
        all[1] = status("proxy", "running", false, true);
        assert_eq!(
            view(&initialized_condition(&s, &all, "Pending")),
            v("True", "", "")
        );

        // The sidecar restarting once a regular container has started does not undo it.
        all[1] = waiting("proxy");
        all[2] = status("a", "running", true, true);
        assert_eq!(
            view(&initialized_condition(&s, &all, "Running")),
            v("True", "", "")
        );

        // Statuses not reported yet: unknown.
        assert_eq!(
            view(&initialized_condition(&s, &[], "Pending")).2,
            "containers with unknown status: [setup proxy]"
        );
        assert_eq!(
            view(&initialized_condition(&plain(), &[], "Pending")).0,
            "True"
        );
    }

    #[test]
    fn transition_times_stay_while_the_status_does() {
        let before = time("2025-01-01T00:00:00Z");
        let now = time("2025-01-01T00:01:00Z");
        let old = vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(before.clone()),
            ..Default::default()
        }];
        let ready = |ok| condition("Ready", ok, None, None);
        let kept = with_transition_time(ready(true), &old, &now);
        assert_eq!(kept.last_transition_time, Some(before));
        let moved = with_transition_time(ready(false), &old, &now);
        assert_eq!(moved.last_transition_time, Some(now.clone()));
        let new = with_transition_time(condition("Initialized", true, None, None), &old, &now);
        assert_eq!(new.last_transition_time, Some(now));
    }

    #[test]
    fn the_kubelet_reports_its_conditions_after_the_others() {
        let pod: Pod = serde_json::from_value(json!({
            "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]},
            "status": {"conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"},
                {"type": "example.com/gate", "status": "False"},
                {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                 "lastTransitionTime": "2025-01-01T00:00:00Z"},
            ]},
        }))
        .unwrap();
        let old = pod.status.unwrap().conditions.unwrap();
        let now = time("2025-01-01T00:01:00Z");
        let all = running(&["a", "b"]);
        let got = kubelet_conditions(&pod.spec.unwrap(), &old, &all, "Running", true, &now);
        let types: Vec<&str> = got.iter().map(|c| c.type_.as_str()).collect();
        let mut expect = vec!["example.com/gate"];
        expect.extend(KUBELET_CONDITIONS);
        assert_eq!(types, expect);
        assert_eq!(got[0], old[1], "kept as it was");
        for c in &got[1..] {
            assert_eq!(c.status, "True", "{c:?}");
            let since = if c.type_ == "PodScheduled" {
                "2025-01-01T00:00:00Z"
            } else {
                "2025-01-01T00:01:00Z"
            };
            assert_eq!(c.last_transition_time, Some(time(since)), "{c:?}");
        }
        // No PodScheduled before (a pod created with its node): True from now on.
        let got = kubelet_conditions(&plain(), &[], &all, "Running", false, &now);
        assert_eq!(view(&got[4]), v("True", "", ""));
        assert_eq!(got[4].last_transition_time, Some(now));
        assert_eq!(view(&got[0]), v("False", "", ""));
    }

    #[test]
    fn ready_waits_for_the_readiness_gates() {
        let spec: PodSpec = serde_json::from_value(json!({
            "containers": [{"name": "a"}],
            "readinessGates": [{"conditionType": "example.com/lb"},
                               {"conditionType": "example.com/dns"}]}))
        .unwrap();
        let ready: ContainerStatus =
            serde_json::from_value(json!({"name": "a", "ready": true, "restartCount": 0,
                "image": "x", "imageID": "", "state": {"running": {}}}))
            .unwrap();
        let gate = |t: &str, status: &str| PodCondition {
            type_: t.into(),
            status: status.into(),
            ..Default::default()
        };
        let statuses = [ready];
        let got = pod_ready_condition(
            &spec,
            &statuses,
            "Running",
            &[gate("example.com/lb", "False")],
        );
        assert_eq!(got.status, "False");
        assert_eq!(got.reason.as_deref(), Some(READINESS_GATES_NOT_READY));
        assert_eq!(
            got.message.as_deref(),
            Some(
                "the status of pod readiness gate \"example.com/lb\" is not \"True\", but False, corresponding condition of pod readiness gate \"example.com/dns\" does not exist."
            )
        );
        let both = [
            gate("example.com/lb", "True"),
            gate("example.com/dns", "True"),
        ];
        assert_eq!(
            pod_ready_condition(&spec, &statuses, "Running", &both).status,
            "True"
        );
        // Unready containers speak first, whatever the gates say.
        let none = pod_ready_condition(&spec, &[], "Running", &both);
        assert_eq!(none.reason.as_deref(), Some(CONTAINERS_NOT_READY));
        assert_eq!(none.type_, "Ready");
    }
}
