//! TaintToleration: a node's NoSchedule and NoExecute taints keep off pods that do not
//! tolerate them; PreferNoSchedule taints lower its score for such pods.

use k8s_openapi::api::core::v1::{Pod, Taint};

use crate::framework::{NodeInfo, Normalize, Plugin, Prepared, Verdict};

/// The TaintToleration plugin.
pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter(&self, pod: &Pod, node: &NodeInfo, _: &Prepared) -> Verdict {
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default();
        let taints = node
            .node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default();
        match taints.iter().find(|t| {
            matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
                && !pod::any_tolerates(tolerations, t)
        }) {
            Some(t) => Verdict::Unschedulable(vec![format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            )]),
            None => Verdict::Fits,
        }
    }

    /// The number of PreferNoSchedule taints the pod does not tolerate (fewer is better).
    fn score(&self, pod: &Pod, node: &NodeInfo, _: &Prepared) -> Option<i64> {
        let taints = node
            .node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default();
        let soft = taints.iter().filter(|t| t.effect == "PreferNoSchedule");
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default();
        // Only tolerations of PreferNoSchedule (or of every effect) count here.
        let tolerates = |t: &Taint| {
            tolerations.iter().any(|tol| {
                tol.effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
                    && pod::tolerates(tol, t)
            })
        };
        Some(soft.filter(|t| !tolerates(t)).count() as i64)
    }

    fn weight(&self) -> i64 {
        3
    }

    fn normalize(&self) -> Normalize {
        Normalize::Reverse
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn untolerated_taints_keep_pods_off() {
        let cp = node(
            "cp",
            json!({"spec": {"taints": [
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}}),
        );
        let p = pod(json!({"containers": []}));
        assert_eq!(
            TaintToleration.filter(&p, &cp, &None),
            Verdict::Unschedulable(vec![
                "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }".into()
            ])
        );
        let tolerant = pod(json!({"containers": [], "tolerations": [
            {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}));
        assert_eq!(TaintToleration.filter(&tolerant, &cp, &None), Verdict::Fits);
        let soft = node(
            "s",
            json!({"spec": {"taints": [{"key": "spot", "value": "yes", "effect": "PreferNoSchedule"}]}}),
        );
        assert_eq!(TaintToleration.filter(&p, &soft, &None), Verdict::Fits);
        assert_eq!(TaintToleration.score(&p, &soft, &None), Some(1));
    }
}
