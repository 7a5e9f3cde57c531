//! `DefaultTolerationSeconds`: a pod that does not tolerate the `not-ready` and `unreachable`
//! NoExecute taints gets tolerations of them for 300 seconds, so its node's failure evicts it
//! after five minutes rather than at once. On create and update.

use api::Status;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Attributes, Mutating};
use crate::registry::Registry;

/// How long pods tolerate their node being not ready or unreachable by default.
const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// The step.
pub(super) struct DefaultTolerationSeconds;

impl Mutating for DefaultTolerationSeconds {
    fn name(&self) -> &'static str {
        "DefaultTolerationSeconds"
    }

    fn admit<'a>(
        &'a self,
        _: &'a Registry,
        a: &'a Attributes<'a>,
        pod: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), Status>> {
        if a.is_pod() {
            default_toleration_seconds(pod);
        }
        Box::pin(async { Ok(()) })
    }
}

/// Adds the tolerations the pod lacks.
fn default_toleration_seconds(pod: &mut Value) {
    let Some(spec) = pod["spec"].as_object_mut() else {
        return;
    };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        // Upstream's test: a toleration with this key (or none, with Exists) and the
        // NoExecute effect (or any effect).
        let tolerated = list.iter().any(|t| {
            let key_ok = t["key"].as_str().unwrap_or("") == key
                || (t["key"].as_str().unwrap_or("").is_empty() && t["operator"] == "Exists");
            let effect = t["effect"].as_str().unwrap_or("");
            key_ok && (effect.is_empty() || effect == "NoExecute")
        });
        if !tolerated {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn pods_tolerate_node_failure_for_five_minutes_unless_they_say_otherwise() {
        let mut pod = json!({"spec": {"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 5}]}});
        super::default_toleration_seconds(&mut pod);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 5},
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        let mut everything = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        super::default_toleration_seconds(&mut everything);
        assert_eq!(
            everything["spec"]["tolerations"].as_array().unwrap().len(),
            1
        );
    }
}
