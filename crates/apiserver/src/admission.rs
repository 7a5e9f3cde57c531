//! Admission steps that need other objects than the one being written (upstream's admission
//! plugins of the same names). Run on create, after defaulting, before validation.
//!
//! - `Priority`: a pod's `priorityClassName` (or the cluster's `globalDefault` class) becomes
//!   its `spec.priority` and `spec.preemptionPolicy`; an unknown class is refused. The classes
//!   are read from [`PriorityClasses`], a copy kept current by a store watch (what upstream's
//!   admission reads from an informer), so a pod create costs no extra store read.
//! - `DefaultTolerationSeconds`: a pod that does not tolerate the `not-ready` and
//!   `unreachable` NoExecute taints gets tolerations of them for 300 seconds, so its node's
//!   failure evicts it after five minutes rather than at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use api::Status;
use futures::StreamExt;
use serde_json::{Value, json};
use store::{RangeOptions, Store, WatchEvent, WatchOptions};

use crate::registry::Registry;

const PREFIX: &str = "/registry/priorityclasses/";

type Classes = Arc<RwLock<HashMap<String, Value>>>;

/// The PriorityClasses by storage key, listed once and then followed by a watch; listed
/// again if the watch ends.
#[derive(Default)]
pub struct PriorityClasses {
    current: tokio::sync::Mutex<Option<(Classes, Arc<AtomicBool>)>>,
}

impl PriorityClasses {
    async fn classes(&self, store: &Arc<dyn Store>) -> Result<Classes, Status> {
        let mut current = self.current.lock().await;
        if let Some((classes, alive)) = current.as_ref()
            && alive.load(Ordering::Acquire)
        {
            return Ok(classes.clone());
        }
        let unavailable = |e: store::Error| Status::unavailable(e.to_string());
        let listed = store
            .range(PREFIX, RangeOptions::default())
            .await
            .map_err(unavailable)?;
        let mut map = HashMap::new();
        for kv in listed.kvs {
            if let Ok(v) = serde_json::from_slice::<Value>(&kv.value) {
                map.insert(kv.key, v);
            }
        }
        let classes: Classes = Arc::new(RwLock::new(map));
        let alive = Arc::new(AtomicBool::new(true));
        let mut events = store
            .watch(PREFIX, listed.revision + 1, WatchOptions::default())
            .await
            .map_err(unavailable)?;
        let (c, a) = (classes.clone(), alive.clone());
        tokio::spawn(async move {
            while let Some(Ok(event)) = events.next().await {
                let mut map = c.write().unwrap_or_else(|e| e.into_inner());
                match event {
                    WatchEvent::Put { kv, .. } => {
                        if let Ok(v) = serde_json::from_slice::<Value>(&kv.value) {
                            map.insert(kv.key, v);
                        }
                    }
                    WatchEvent::Delete { key, .. } => {
                        map.remove(&key);
                    }
                    WatchEvent::Progress { .. } => {}
                }
            }
            a.store(false, Ordering::Release);
        });
        *current = Some((classes.clone(), alive));
        Ok(classes)
    }
}

fn forbidden(name: &str, why: String) -> Status {
    Status::new(
        403,
        "Forbidden",
        format!("pods {name:?} is forbidden: {why}"),
    )
}

/// The Priority admission step for a new pod.
pub async fn pod_priority(
    reg: &Registry,
    store: &Arc<dyn Store>,
    pod: &mut Value,
) -> Result<(), Status> {
    let resource =
        api::resources::find("scheduling.k8s.io", "v1", "priorityclasses").expect("served");
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let class_name = pod["spec"]["priorityClassName"].as_str().unwrap_or("");
    let known = reg.priority_classes.classes(store).await?;
    let cached = {
        let known = known.read().unwrap_or_else(|e| e.into_inner());
        if class_name.is_empty() {
            // With several global defaults, upstream takes the lowest value.
            known
                .values()
                .filter(|c| c["globalDefault"] == json!(true))
                .min_by_key(|c| c["value"].as_i64().unwrap_or(0))
                .cloned()
        } else {
            known.get(&resource.key(None, class_name)).cloned()
        }
    };
    let class = if class_name.is_empty() || cached.is_some() {
        cached
    } else {
        // Not seen by the watch yet (just created?): ask the store itself.
        match reg.get(resource, None, class_name).await {
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

/// How long pods tolerate their node being not ready or unreachable by default.
const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// The DefaultTolerationSeconds admission step for a new pod.
pub fn default_toleration_seconds(pod: &mut Value) {
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
    use std::sync::Arc;

    use serde_json::json;
    use store::sqlite::{SqliteOptions, SqliteStore};

    use crate::registry::Registry;

    #[tokio::test]
    async fn pods_take_their_class_or_the_global_default() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("db"), SqliteOptions { durable: false })
            .await
            .unwrap();
        let reg = Registry::new(Arc::new(s));
        let find = |g, v, p| api::resources::find(g, v, p).unwrap();
        let (ns, classes, pods) = (
            find("", "v1", "namespaces"),
            find("scheduling.k8s.io", "v1", "priorityclasses"),
            find("", "v1", "pods"),
        );
        reg.create(ns, None, json!({"metadata": {"name": "d"}}), false)
            .await
            .unwrap();
        for (name, value, default) in [("base", 5, true), ("gold", 100, false)] {
            let pc = json!({"metadata": {"name": name}, "value": value, "globalDefault": default});
            reg.create(classes, None, pc, false).await.unwrap();
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
            .create(pods, Some("d"), pod("a", None), false)
            .await
            .unwrap();
        assert_eq!(plain["spec"]["priority"], 5);
        assert_eq!(plain["spec"]["priorityClassName"], "base");
        let gold = reg
            .create(pods, Some("d"), pod("b", Some("gold")), false)
            .await
            .unwrap();
        assert_eq!(gold["spec"]["priority"], 100);
        assert_eq!(gold["spec"]["preemptionPolicy"], "PreemptLowerPriority");
        let e = reg
            .create(pods, Some("d"), pod("c", Some("nope")), false)
            .await
            .unwrap_err();
        assert_eq!(
            e.message,
            "pods \"c\" is forbidden: no PriorityClass with name nope was found"
        );
    }

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
