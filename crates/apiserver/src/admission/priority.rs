//! `Priority`: a new pod's `priorityClassName` (or the cluster's `globalDefault` class)
//! becomes its `spec.priority` and `spec.preemptionPolicy`; an unknown class is refused. On
//! update, what it set stays when the new pod leaves it out (validation refuses any other
//! change of it), as upstream's plugin does.

use api::Status;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Attributes, Mutating, Operation, forbidden, name_of};
use crate::registry::Registry;
use crate::watched::Watched;

/// The step, with its copy of the PriorityClasses.
pub(super) struct Priority {
    classes: Watched,
}

impl Default for Priority {
    fn default() -> Priority {
        Priority {
            classes: Watched::new("/registry/priorityclasses/"),
        }
    }
}

impl Mutating for Priority {
    fn name(&self) -> &'static str {
        "Priority"
    }

    fn admit<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        pod: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            match (a.is_pod(), a.operation, a.old) {
                (true, Operation::Create, _) => self.on_create(reg, pod).await,
                (true, Operation::Update, Some(old)) => {
                    keep_priority(old, pod);
                    Ok(())
                }
                _ => Ok(()),
            }
        })
    }
}

impl Priority {
    async fn on_create(&self, reg: &Registry, pod: &mut Value) -> Result<(), Status> {
        let name = name_of(pod);
        let class = self.class_of(reg, pod).await?;
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

    /// The class the pod names, or the global default when it names none.
    async fn class_of(&self, reg: &Registry, pod: &Value) -> Result<Option<Value>, Status> {
        let resource =
            api::resources::find("scheduling.k8s.io", "v1", "priorityclasses").expect("served");
        let class_name = pod["spec"]["priorityClassName"].as_str().unwrap_or("");
        let known = self.classes.objects(reg.store()).await?;
        let cached = {
            let known = known.read().unwrap_or_else(|e| e.into_inner());
            if class_name.is_empty() {
                // With several global defaults, upstream takes the lowest value.
                known
                    .values()
                    .map(|(_, c)| c)
                    .filter(|c| c["globalDefault"] == json!(true))
                    .min_by_key(|c| c["value"].as_i64().unwrap_or(0))
                    .cloned()
            } else {
                known
                    .get(&resource.key(None, class_name))
                    .map(|(_, c)| c.clone())
            }
        };
        if class_name.is_empty() || cached.is_some() {
            return Ok(cached);
        }
        // Not seen by the watch yet (just created?): ask the store itself.
        match reg.get(resource, None, class_name).await {
            Ok(c) => Ok(Some(c)),
            Err(s) if s.code == 404 => Err(forbidden(
                &name_of(pod),
                format!("no PriorityClass with name {class_name} was found"),
            )),
            Err(s) => Err(s),
        }
    }
}

/// What the step set on create stays when an update leaves it out.
fn keep_priority(old: &Value, new: &mut Value) {
    for field in ["priority", "preemptionPolicy"] {
        if new["spec"].get(field).is_none()
            && let Some(v) = old["spec"].get(field)
            && let Some(spec) = new["spec"].as_object_mut()
        {
            spec.insert(field.into(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use crate::registry::Caller;

    #[tokio::test]
    async fn pods_take_their_class_or_the_global_default() {
        let (_dir, reg) = crate::registry::scratch(&["d"]).await;
        let find = |g, v, p| api::resources::find(g, v, p).unwrap();
        let (classes, pods) = (
            find("scheduling.k8s.io", "v1", "priorityclasses"),
            find("", "v1", "pods"),
        );
        for (name, value, default) in [("base", 5, true), ("gold", 100, false)] {
            let pc = json!({"metadata": {"name": name}, "value": value, "globalDefault": default});
            reg.create(classes, None, pc, Caller::SERVER).await.unwrap();
        }
        let pod = |name: &str, class: Option<&str>| {
            let mut p = json!({"metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
            if let Some(c) = class {
                p["spec"]["priorityClassName"] = json!(c);
            }
            p
        };
        let plain = reg
            .create(pods, Some("d"), pod("a", None), Caller::SERVER)
            .await
            .unwrap();
        assert_eq!(plain["spec"]["priority"], 5);
        assert_eq!(plain["spec"]["priorityClassName"], "base");
        let gold = reg
            .create(pods, Some("d"), pod("b", Some("gold")), Caller::SERVER)
            .await
            .unwrap();
        assert_eq!(gold["spec"]["priority"], 100);
        assert_eq!(gold["spec"]["preemptionPolicy"], "PreemptLowerPriority");
        let e = reg
            .create(pods, Some("d"), pod("c", Some("nope")), Caller::SERVER)
            .await
            .unwrap_err();
        assert_eq!(
            e.message,
            "pods \"c\" is forbidden: no PriorityClass with name nope was found"
        );
    }
}
