//! Where a pod is in its life. Two meanings of "done" that must not be confused: a terminal
//! pod has finished (phase Succeeded or Failed) and will never run again; a terminating pod
//! is being deleted (`metadata.deletionTimestamp` set) and may still be running. A pod can be
//! both, either, or neither.

use k8s_openapi::api::core::v1::Pod;

/// `status.phase`, or "" when unset.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether `phase` is Succeeded or Failed (upstream's `podutil.IsPodPhaseTerminal`).
pub fn is_terminal_phase(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Failed")
}

/// Finished for good: phase Succeeded or Failed (upstream's `podutil.IsPodTerminal`). A
/// kubelet leaves such a pod alone; its containers will not run again.
pub fn is_terminal(pod: &Pod) -> bool {
    is_terminal_phase(phase(pod))
}

/// Being deleted: `metadata.deletionTimestamp` is set, whatever the phase (the StatefulSet
/// controller's `isTerminating`; not the controllers' `IsPodTerminating`, which also requires
/// the pod not to be terminal).
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Neither terminal nor terminating (upstream's `controller.IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && !is_terminating(pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_phase_is_empty_when_unset() {
        assert_eq!(phase(&pod(json!({}))), "");
        assert_eq!(
            phase(&pod(json!({"status": {"phase": "Running"}}))),
            "Running"
        );
    }

    #[test]
    fn succeeded_and_failed_are_terminal() {
        for (p, terminal) in [
            ("Succeeded", true),
            ("Failed", true),
            ("Running", false),
            ("Pending", false),
            ("Unknown", false),
            ("", false),
        ] {
            assert_eq!(is_terminal_phase(p), terminal, "{p}");
            let pod = pod(json!({"status": {"phase": p}}));
            assert_eq!(is_terminal(&pod), terminal, "{p}");
        }
    }

    #[test]
    fn terminal_terminating_and_active_are_independent() {
        let running = pod(json!({"status": {"phase": "Running"}}));
        assert!(!is_terminal(&running) && !is_terminating(&running) && is_active(&running));
        let deleting = pod(
            json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"},
            "status": {"phase": "Running"}}),
        );
        assert!(!is_terminal(&deleting) && is_terminating(&deleting) && !is_active(&deleting));
        let done = pod(json!({"status": {"phase": "Succeeded"}}));
        assert!(is_terminal(&done) && !is_terminating(&done) && !is_active(&done));
        let both = pod(
            json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"},
            "status": {"phase": "Failed"}}),
        );
        assert!(is_terminal(&both) && is_terminating(&both) && !is_active(&both));
    }
}
