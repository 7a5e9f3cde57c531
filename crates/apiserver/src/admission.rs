//! Admission steps that need other objects than the one being written (upstream's admission
//! plugins of the same names). Run on create, after defaulting, before validation.
//!
//! - `Priority`: a pod's `priorityClassName` (or the cluster's `globalDefault` class) becomes
//!   its `spec.priority` and `spec.preemptionPolicy`; an unknown class is refused. The classes
//!   are read from a copy kept current by a store watch ([`Watched`], what upstream's
//!   admission reads from an informer), so a pod create costs no extra store read; so are
//!   the LimitRanges and ResourceQuotas below.
//! - `LimitRanger`: a pod's containers take the `default` limits and `defaultRequest`
//!   requests of the namespace's LimitRanges, and are refused beyond their `min`, `max` and
//!   `maxLimitRequestRatio` (per Container and per Pod), in upstream's words.
//! - `ResourceQuota`: an object that would take a namespace's ResourceQuota beyond its
//!   `hard` limits is refused (`exceeded quota: ...`); one admitted is added to the quota's
//!   `status.used` at once (a compare-and-swap on the quota), so concurrent creates cannot
//!   overshoot it; the quota controller recounts from the objects.
//! - `RuntimeClass`: a pod's `runtimeClassName` must name a RuntimeClass (`pod rejected:
//!   RuntimeClass "x" not found`); its fixed overhead becomes the pod's `spec.overhead`, and
//!   its scheduling node selector and tolerations join the pod's.
//! - `DefaultTolerationSeconds`: a pod that does not tolerate the `not-ready` and
//!   `unreachable` NoExecute taints gets tolerations of them for 300 seconds, so its node's
//!   failure evicts it after five minutes rather than at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use api::Status;
use futures::StreamExt;
use serde_json::{Value, json};
use store::{RangeOptions, Store, WatchEvent, WatchOptions};

use crate::registry::Registry;

/// Stored objects by key, with the revision they were written at.
type Objects = Arc<RwLock<BTreeMap<String, (i64, Value)>>>;

/// The objects under one store prefix, listed once and then followed by a watch (what
/// upstream's admission plugins read from informers), so an admission step costs no store
/// read; listed again if the watch ends.
pub struct Watched {
    prefix: &'static str,
    current: tokio::sync::Mutex<Option<(Objects, Arc<AtomicBool>)>>,
}

impl Watched {
    /// The objects under `prefix` (e.g. `/registry/priorityclasses/`).
    pub fn new(prefix: &'static str) -> Watched {
        Watched {
            prefix,
            current: tokio::sync::Mutex::new(None),
        }
    }

    async fn objects(&self, store: &Arc<dyn Store>) -> Result<Objects, Status> {
        let mut current = self.current.lock().await;
        if let Some((objects, alive)) = current.as_ref()
            && alive.load(Ordering::Acquire)
        {
            return Ok(objects.clone());
        }
        let unavailable = |e: store::Error| Status::unavailable(e.to_string());
        let listed = store
            .range(self.prefix, RangeOptions::default())
            .await
            .map_err(unavailable)?;
        let mut map = BTreeMap::new();
        for kv in listed.kvs {
            if let Ok(v) = serde_json::from_slice::<Value>(&kv.value) {
                map.insert(kv.key, (kv.mod_revision, v));
            }
        }
        let objects: Objects = Arc::new(RwLock::new(map));
        let alive = Arc::new(AtomicBool::new(true));
        let mut events = store
            .watch(self.prefix, listed.revision + 1, WatchOptions::default())
            .await
            .map_err(unavailable)?;
        let (o, a) = (objects.clone(), alive.clone());
        tokio::spawn(async move {
            while let Some(Ok(event)) = events.next().await {
                let mut map = o.write().unwrap_or_else(|e| e.into_inner());
                match event {
                    WatchEvent::Put { kv, .. } => {
                        if let Ok(v) = serde_json::from_slice::<Value>(&kv.value) {
                            map.insert(kv.key, (kv.mod_revision, v));
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
        *current = Some((objects.clone(), alive));
        Ok(objects)
    }

    /// The objects whose keys start with `prefix` (within this cache's), with their keys
    /// and revisions.
    async fn under(
        &self,
        store: &Arc<dyn Store>,
        prefix: &str,
    ) -> Result<Vec<(String, i64, Value)>, Status> {
        let objects = self.objects(store).await?;
        let map = objects.read().unwrap_or_else(|e| e.into_inner());
        Ok(map
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (rev, v))| (k.clone(), *rev, v.clone()))
            .collect())
    }
}

/// What the admission steps read, each kept by a store watch.
pub struct Caches {
    priority_classes: Watched,
    limit_ranges: Watched,
    quotas: Watched,
}

impl Default for Caches {
    fn default() -> Caches {
        Caches {
            priority_classes: Watched::new("/registry/priorityclasses/"),
            limit_ranges: Watched::new("/registry/limitranges/"),
            quotas: Watched::new("/registry/resourcequotas/"),
        }
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
    let known = reg.admission.priority_classes.objects(store).await?;
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

/// The RuntimeClass admission step for a new pod: its `runtimeClassName` must name a
/// RuntimeClass, whose `overhead.podFixed` becomes the pod's `spec.overhead` and whose
/// `scheduling` node selector and tolerations join the pod's.
pub async fn runtime_class(reg: &Registry, pod: &mut Value) -> Result<(), Status> {
    let Some(class_name) = pod["spec"]["runtimeClassName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
    else {
        return Ok(());
    };
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let resource = api::resources::find("node.k8s.io", "v1", "runtimeclasses").expect("served");
    let class = match reg.get(resource, None, &class_name).await {
        Ok(c) => c,
        Err(s) if s.code == 404 => {
            return Err(forbidden(
                &name,
                format!("pod rejected: RuntimeClass {class_name:?} not found"),
            ));
        }
        Err(s) => return Err(s),
    };
    let overhead = &class["overhead"]["podFixed"];
    if !overhead.is_null() {
        let given = &pod["spec"]["overhead"];
        if !given.is_null() && given != overhead {
            return Err(forbidden(
                &name,
                "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead".into(),
            ));
        }
        pod["spec"]["overhead"] = overhead.clone();
    }
    let scheduling = &class["scheduling"];
    if let Some(selector) = scheduling["nodeSelector"].as_object() {
        let own = pod["spec"]["nodeSelector"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut merged = own.clone();
        for (k, v) in selector {
            match own.get(k) {
                Some(mine) if mine != v => {
                    return Err(forbidden(
                        &name,
                        "pod rejected: conflict: the pod's nodeSelector conflicts with the RuntimeClass's scheduling nodeSelector".into(),
                    ));
                }
                _ => {
                    merged.insert(k.clone(), v.clone());
                }
            }
        }
        pod["spec"]["nodeSelector"] = Value::Object(merged);
    }
    if let Some(tolerations) = scheduling["tolerations"].as_array() {
        let mut own = pod["spec"]["tolerations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for t in tolerations {
            if !own.contains(t) {
                own.push(t.clone());
            }
        }
        pod["spec"]["tolerations"] = Value::Array(own);
    }
    Ok(())
}

fn forbidden_as(r: &api::Resource, name: &str, why: &str) -> Status {
    Status::new(
        403,
        "Forbidden",
        format!("{} {name:?} is forbidden: {why}", r.qualified()),
    )
}

/// A quantity for messages: as written in the LimitRange, or from milli-units.
fn shown(resource: &str, v: i128) -> String {
    api::quota::format(resource, v)
}

/// The LimitRanger admission step for a new pod in `ns`.
pub async fn limit_ranger(
    reg: &Registry,
    store: &Arc<dyn Store>,
    ns: &str,
    pod: &mut Value,
) -> Result<(), Status> {
    let ranges = api::resources::find("", "v1", "limitranges").expect("served");
    let found = reg
        .admission
        .limit_ranges
        .under(store, &ranges.prefix(Some(ns)))
        .await?;
    if found.is_empty() {
        return Ok(());
    }
    let pods = api::resources::find("", "v1", "pods").expect("served");
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let mut errors: Vec<String> = Vec::new();
    let milli = |v: &Value| {
        api::quota::parse(&json!({"x": v}))
            .get("x")
            .copied()
            .unwrap_or(0)
    };
    for (_, _, range) in &found {
        for item in range["spec"]["limits"].as_array().into_iter().flatten() {
            match item["type"].as_str().unwrap_or("") {
                "Container" => {
                    for list in ["containers", "initContainers"] {
                        let Some(containers) = pod["spec"][list].as_array_mut() else {
                            continue;
                        };
                        for c in containers {
                            // Defaults first: limits from `default`, requests from
                            // `defaultRequest` (or the default limit).
                            for (field, source) in [
                                ("limits", "default"),
                                ("requests", "defaultRequest"),
                                ("requests", "default"),
                            ] {
                                for (k, v) in item[source].as_object().into_iter().flatten() {
                                    if c["resources"][field][k].is_null() {
                                        if !c["resources"].is_object() {
                                            c["resources"] = json!({});
                                        }
                                        if !c["resources"][field].is_object() {
                                            c["resources"][field] = json!({});
                                        }
                                        c["resources"][field][k] = v.clone();
                                    }
                                }
                            }
                            check_limits(item, &c["resources"], "Container", &milli, &mut errors);
                        }
                    }
                }
                "Pod" => {
                    let mut sums = json!({"requests": {}, "limits": {}});
                    let u = api::quota::usage("", "pods", pod);
                    for (k, v) in &u {
                        if let Some(r) = k.strip_prefix("requests.") {
                            sums["requests"][r] = json!(shown(r, *v));
                        } else if let Some(l) = k.strip_prefix("limits.") {
                            sums["limits"][l] = json!(shown(l, *v));
                        }
                    }
                    check_limits(item, &sums, "Pod", &milli, &mut errors);
                }
                _ => {}
            }
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(forbidden_as(pods, &name, &errors[0])),
        _ => Err(forbidden_as(
            pods,
            &name,
            &format!("[{}]", errors.join(", ")),
        )),
    }
}

/// Checks one LimitRange item's min, max and ratio against `resources` (requests and
/// limits) of a Container or Pod.
fn check_limits(
    item: &Value,
    resources: &Value,
    what: &str,
    milli: &dyn Fn(&Value) -> i128,
    errors: &mut Vec<String>,
) {
    let get = |field: &str, k: &str| {
        let v = &resources[field][k];
        (!v.is_null()).then(|| milli(v))
    };
    for (k, min) in item["min"].as_object().into_iter().flatten() {
        let bound = milli(min);
        let text = min
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| min.to_string());
        match get("requests", k) {
            Some(req) if req < bound => errors.push(format!(
                "minimum {k} usage per {what} is {text}, but request is {}",
                shown(k, req)
            )),
            None => errors.push(format!(
                "minimum {k} usage per {what} is {text}.  No request is specified"
            )),
            _ => {}
        }
        if let Some(lim) = get("limits", k)
            && lim < bound
        {
            errors.push(format!(
                "minimum {k} usage per {what} is {text}, but limit is {}",
                shown(k, lim)
            ));
        }
    }
    for (k, max) in item["max"].as_object().into_iter().flatten() {
        let bound = milli(max);
        let text = max
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| max.to_string());
        match get("limits", k) {
            Some(lim) if lim > bound => errors.push(format!(
                "maximum {k} usage per {what} is {text}, but limit is {}",
                shown(k, lim)
            )),
            None => errors.push(format!(
                "maximum {k} usage per {what} is {text}.  No limit is specified"
            )),
            _ => {}
        }
    }
    for (k, ratio) in item["maxLimitRequestRatio"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let bound = milli(ratio);
        if let (Some(lim), Some(req)) = (get("limits", k), get("requests", k))
            && req > 0
        {
            let actual = lim as f64 / req as f64;
            if actual * 1000.0 > bound as f64 {
                let text = ratio
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| ratio.to_string());
                errors.push(format!(
                    "{k} max limit to request ratio per {what} is {text}, but provided ratio is {actual:.6}"
                ));
            }
        }
    }
}

/// The ResourceQuota admission step for a new object of `r` in `ns`.
pub async fn resource_quota(
    reg: &Registry,
    store: &Arc<dyn Store>,
    r: &api::Resource,
    ns: &str,
    obj: &Value,
    dry_run: bool,
) -> Result<(), Status> {
    let quotas = api::resources::find("", "v1", "resourcequotas").expect("served");
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let usage = api::quota::usage(r.group, r.plural, obj);
    // A quota changed meanwhile is read again.
    for attempt in 0..10 {
        // The watch-fed copy first; after a conflict, the store itself.
        let found = if attempt == 0 {
            reg.admission
                .quotas
                .under(store, &quotas.prefix(Some(ns)))
                .await?
        } else {
            let listed = store
                .range(&quotas.prefix(Some(ns)), RangeOptions::default())
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
            listed
                .kvs
                .into_iter()
                .filter_map(|kv| {
                    let v = serde_json::from_slice::<Value>(&kv.value).ok()?;
                    Some((kv.key, kv.mod_revision, v))
                })
                .collect()
        };
        let mut writes = Vec::new();
        for (key, revision, quota) in found {
            let scopes: Vec<String> = quota["spec"]["scopes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect();
            if !api::quota::covers(&scopes, r.plural, obj) {
                continue;
            }
            let qname = quota["metadata"]["name"].as_str().unwrap_or("").to_string();
            let hard = api::quota::parse(&quota["spec"]["hard"]);
            if r.plural == "pods" && r.group.is_empty() {
                let missing = missing_resources(&hard, obj);
                if !missing.is_empty() {
                    return Err(forbidden_as(
                        r,
                        &name,
                        &format!("failed quota: {qname}: must specify {}", missing.join(",")),
                    ));
                }
            }
            let mut used = api::quota::parse(&quota["status"]["used"]);
            let relevant: Vec<&String> = hard.keys().filter(|k| usage.contains_key(*k)).collect();
            if relevant.is_empty() {
                continue;
            }
            let over: Vec<&String> = relevant
                .iter()
                .copied()
                .filter(|k| used.get(*k).copied().unwrap_or(0) + usage[*k] > hard[*k])
                .collect();
            if !over.is_empty() {
                let list = |m: &dyn Fn(&String) -> i128| {
                    over.iter()
                        .map(|k| format!("{k}={}", shown(k, m(k))))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                return Err(forbidden_as(
                    r,
                    &name,
                    &format!(
                        "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                        list(&|k| usage[k]),
                        list(&|k| used.get(k).copied().unwrap_or(0)),
                        list(&|k| hard[k]),
                    ),
                ));
            }
            for k in relevant {
                *used.entry(k.clone()).or_default() += usage[k];
            }
            let mut updated = quota.clone();
            updated["status"]["hard"] = quota["spec"]["hard"].clone();
            updated["status"]["used"] = api::quota::to_list(&used);
            writes.push((key, revision, updated));
        }
        if dry_run || writes.is_empty() {
            return Ok(());
        }
        let mut conflicted = false;
        for (key, revision, updated) in writes {
            let bytes = serde_json::to_vec(&updated).unwrap_or_default();
            match store.update(&key, bytes, revision).await {
                Ok(_) => {}
                Err(store::Error::Conflict { .. }) => {
                    conflicted = true;
                    break;
                }
                Err(e) => return Err(Status::unavailable(e.to_string())),
            }
        }
        if !conflicted {
            return Ok(());
        }
    }
    Err(Status::new(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on resourcequotas: the quotas of namespace {ns} keep changing, try again"
        ),
    ))
}

/// The compute resources a quota limits that some container of the pod does not state.
fn missing_resources(hard: &api::quota::Usage, pod: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    for (key, field, resource) in [
        ("requests.cpu", "requests", "cpu"),
        ("cpu", "requests", "cpu"),
        ("requests.memory", "requests", "memory"),
        ("memory", "requests", "memory"),
        ("limits.cpu", "limits", "cpu"),
        ("limits.memory", "limits", "memory"),
    ] {
        if !hard.contains_key(key) || missing.contains(&key.to_string()) {
            continue;
        }
        let lacking = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["resources"][field][resource].is_null());
        if lacking {
            missing.push(key.to_string());
        }
    }
    missing
}

/// The Priority step on a pod update: what it set on create stays when the new pod leaves it
/// out (validation refuses any other change of it), as upstream's plugin does.
pub fn keep_priority(old: &Value, new: &mut Value) {
    for field in ["priority", "preemptionPolicy"] {
        if new["spec"].get(field).is_none()
            && let Some(v) = old["spec"].get(field)
            && let Some(spec) = new["spec"].as_object_mut()
        {
            spec.insert(field.into(), v.clone());
        }
    }
}

/// How long pods tolerate their node being not ready or unreachable by default.
const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// The DefaultTolerationSeconds admission step, on a pod's create and update.
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
