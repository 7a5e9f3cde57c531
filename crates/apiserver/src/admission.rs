//! Admission steps that need other objects than the one being written (upstream's admission
//! plugins of the same names). Run on create, after defaulting, before validation.
//!
//! - `Priority`: a pod's `priorityClassName` (or the cluster's `globalDefault` class) becomes
//!   its `spec.priority` and `spec.preemptionPolicy`; an unknown class is refused.

use api::Status;
use serde_json::{Value, json};

use crate::registry::{ListOptions, Registry};

fn forbidden(name: &str, why: String) -> Status {
    Status::new(
        403,
        "Forbidden",
        format!("pods {name:?} is forbidden: {why}"),
    )
}

/// The Priority admission step for a new pod.
pub async fn pod_priority(reg: &Registry, pod: &mut Value) -> Result<(), Status> {
    let classes =
        api::resources::find("scheduling.k8s.io", "v1", "priorityclasses").expect("served");
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let class_name = pod["spec"]["priorityClassName"].as_str().unwrap_or("");
    let class = if class_name.is_empty() {
        let all = reg.list(classes, None, &ListOptions::default()).await?;
        // With several global defaults, upstream takes the lowest value.
        all.items
            .into_iter()
            .filter(|c| c["globalDefault"] == json!(true))
            .min_by_key(|c| c["value"].as_i64().unwrap_or(0))
    } else {
        match reg.get(classes, None, class_name).await {
            Ok(c) => Some(c),
            Err(s) if s.code == 404 => {
                return Err(forbidden(
                    &name,
                    format!("no PriorityClass with name {class_name} was found"),
                ));
            }
            Err(s) => return Err(s),
        }
    };
    let (priority, policy) = match &class {
        Some(c) => (
            c["value"].as_i64().unwrap_or(0),
            c["preemptionPolicy"]
                .as_str()
                .unwrap_or("PreemptLowerPriority")
                .to_string(),
        ),
        None => (0, "PreemptLowerPriority".to_string()),
    };
    if let Some(given) = pod["spec"]["priority"].as_i64()
        && given != priority
    {
        return Err(forbidden(
            &name,
            format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
            ),
        ));
    }
    if let Some(given) = pod["spec"]["preemptionPolicy"].as_str()
        && given != policy
    {
        return Err(forbidden(
            &name,
            format!(
                "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
            ),
        ));
    }
    if let Some(spec) = pod["spec"].as_object_mut() {
        if let Some(c) = &class {
            spec.insert("priorityClassName".into(), c["metadata"]["name"].clone());
        }
        spec.insert("priority".into(), json!(priority));
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}
