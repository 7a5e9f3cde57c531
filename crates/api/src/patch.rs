//! The three patch types of PATCH requests: JSON patch (RFC 6902), JSON merge patch
//! (RFC 7386), and Kubernetes' strategic merge patch, which merges lists of named things
//! (containers, env, ports, volumes, ...) by key instead of replacing them, and understands
//! the `$patch`, `$retainKeys`, `$setElementOrder` and `$deleteFromPrimitiveList` directives.
//! Strategic merge is what client-side `kubectl apply`, `label`, `scale`, `set image` and
//! `edit` send for built-in types.

use serde_json::{Map, Value};

/// The patch type, from the request's Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// The patch type a Content-Type names.
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// Why a JSON patch was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonPatchError {
    /// The body is not a list of operations (upstream answers 400).
    Malformed(String),
    /// An operation failed on this document (upstream answers 422), in the words of the Go
    /// library upstream uses where they differ from the crate's (`testing value /x failed:
    /// test failed`).
    Failed(String),
}

/// Applies a JSON patch document.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, JsonPatchError> {
    let patch: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| JsonPatchError::Malformed(format!("invalid JSON patch: {e}")))?;
    let mut out = doc.clone();
    json_patch::patch(&mut out, &patch).map_err(|e| {
        JsonPatchError::Failed(match e.kind {
            json_patch::PatchErrorKind::TestFailed => {
                format!("testing value {} failed: test failed", e.path)
            }
            _ => e.to_string(),
        })
    })?;
    Ok(out)
}

/// Applies a JSON merge patch.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    out
}

/// How a list field merges in a strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy {
    /// Replace the whole list (the default).
    Replace,
    /// Merge elements by this key.
    MergeKey(&'static str),
    /// Union of primitive values.
    Union,
}

/// Upstream's `patchStrategy:"merge"` fields, by field name (and, for `ports`, by where it
/// appears: container ports merge on `containerPort`, service ports on `port`).
fn strategy(field: &str, path: &[String]) -> ListStrategy {
    use ListStrategy::*;
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "secrets" => MergeKey("name"),
        "volumeMounts" => MergeKey("mountPath"),
        "volumeDevices" => MergeKey("devicePath"),
        "hostAliases" => MergeKey("ip"),
        "ownerReferences" => MergeKey("uid"),
        "conditions" | "addresses" => MergeKey("type"),
        "topologySpreadConstraints" => MergeKey("topologyKey"),
        "ports" if path.iter().any(|p| p.ends_with("ontainers")) => MergeKey("containerPort"),
        "ports" if path.last().is_some_and(|p| p == "spec") => MergeKey("port"),
        "finalizers" => Union,
        _ => Replace,
    }
}

/// Applies a strategic merge patch to `doc`.
pub fn strategic_merge(doc: &Value, patch: &Value) -> Result<Value, String> {
    let Some(patch) = patch.as_object() else {
        return Err("strategic merge patch must be a JSON object".into());
    };
    let mut out = doc.clone();
    match out.as_object_mut() {
        Some(map) => merge_map(map, patch, &mut Vec::new())?,
        None => return Err("the object to patch is not a JSON object".into()),
    }
    Ok(out)
}

fn merge_map(
    orig: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<(), String> {
    if let Some(directive) = patch.get("$patch").and_then(Value::as_str) {
        match directive {
            "replace" => {
                *orig = strip_directives(patch);
                return Ok(());
            }
            "delete" => {
                orig.clear();
                return Ok(());
            }
            "merge" => {}
            other => return Err(format!("unknown patch type: {other:?}")),
        }
    }
    for (key, pv) in patch {
        if key == "$patch" || key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) = (orig.get_mut(field), pv.as_array()) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if pv.is_null() {
            orig.remove(key);
            continue;
        }
        path.push(key.clone());
        match (orig.get_mut(key), pv) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                if p.get("$patch").and_then(Value::as_str) == Some("delete") {
                    orig.remove(key);
                } else {
                    merge_map(o, p, path)?;
                }
            }
            (Some(Value::Array(o)), Value::Array(p)) => {
                let path_before = path[..path.len() - 1].to_vec();
                let merged = merge_list(o, p, strategy(key, &path_before), path)?;
                *o = merged;
            }
            (_, Value::Object(p)) => {
                if p.get("$patch").and_then(Value::as_str) != Some("delete") {
                    let mut fresh = Map::new();
                    merge_map(&mut fresh, p, path)?;
                    orig.insert(key.clone(), Value::Object(fresh));
                }
            }
            (_, Value::Array(p)) => {
                let cleaned: Vec<Value> = p
                    .iter()
                    .filter(|v| v.get("$patch").is_none())
                    .map(|v| match v {
                        Value::Object(m) => Value::Object(strip_directives(m)),
                        other => other.clone(),
                    })
                    .collect();
                orig.insert(key.clone(), Value::Array(cleaned));
            }
            (_, other) => {
                orig.insert(key.clone(), other.clone());
            }
        }
        path.pop();
    }
    if let Some(retain) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, order) in patch {
        let Some(field) = key.strip_prefix("$setElementOrder/") else {
            continue;
        };
        if let (Some(Value::Array(list)), Some(order)) = (orig.get_mut(field), order.as_array()) {
            let path_here = path.clone();
            reorder(list, order, strategy(field, &path_here));
        }
    }
    Ok(())
}

fn strip_directives(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn merge_list(
    orig: &[Value],
    patch: &[Value],
    strategy: ListStrategy,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, String> {
    if patch
        .iter()
        .any(|v| v.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(patch
            .iter()
            .filter(|v| v.get("$patch").is_none())
            .cloned()
            .collect());
    }
    match strategy {
        ListStrategy::Replace => Ok(patch.to_vec()),
        ListStrategy::Union => {
            let mut out = orig.to_vec();
            for v in patch {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Ok(out)
        }
        ListStrategy::MergeKey(mk) => {
            let mut out = orig.to_vec();
            for p in patch {
                let Some(pm) = p.as_object() else {
                    return Err(format!(
                        "expected a map with merge key {mk:?} in the patch list, got {p}"
                    ));
                };
                let key = pm.get(mk);
                let found = out
                    .iter()
                    .position(|o| o.get(mk).is_some() && o.get(mk) == key);
                let delete = pm.get("$patch").and_then(Value::as_str) == Some("delete");
                match (found, delete) {
                    (Some(i), true) => {
                        out.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => {
                        if let Some(o) = out[i].as_object_mut() {
                            merge_map(o, pm, path)?;
                        }
                    }
                    (None, false) => {
                        let mut fresh = Map::new();
                        merge_map(&mut fresh, pm, path)?;
                        out.push(Value::Object(fresh));
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Orders `list` as `order` lists its elements; elements `order` does not name keep their
/// relative order after those it does.
fn reorder(list: &mut [Value], order: &[Value], strategy: ListStrategy) {
    let rank = |v: &Value| {
        order.iter().position(|o| match strategy {
            ListStrategy::MergeKey(mk) => o.get(mk).is_some() && o.get(mk) == v.get(mk),
            _ => o == v,
        })
    };
    list.sort_by_key(|v| rank(v).unwrap_or(usize::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a"]},
               "spec": {"replicas": 1, "template": {"spec": {"containers": [
                   {"name": "app", "image": "nginx:1", "env": [{"name": "A", "value": "1"}],
                    "ports": [{"containerPort": 80}]},
                   {"name": "sidecar", "image": "busybox"}]}}}})
    }

    #[test]
    fn containers_merge_by_name() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "nginx:2", "env": [{"name": "B", "value": "2"}]}]}}}});
        let out = strategic_merge(&deployment(), &patch).unwrap();
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs.as_array().unwrap().len(), 2);
        assert_eq!(cs[0]["image"], "nginx:2");
        assert_eq!(
            cs[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(cs[0]["ports"], json!([{"containerPort": 80}]));
        assert_eq!(cs[1]["name"], "sidecar");
    }

    #[test]
    fn directives() {
        let del = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "$patch": "delete"}]}}}});
        let out = strategic_merge(&deployment(), &del).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );

        let replace = json!({"metadata": {"labels": {"$patch": "replace", "new": "x"}}});
        let out = strategic_merge(&deployment(), &replace).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"new": "x"}));

        let remove = json!({"metadata": {"labels": {"app": null}}, "spec": {"replicas": 3}});
        let out = strategic_merge(&deployment(), &remove).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({}));
        assert_eq!(out["spec"]["replicas"], 3);

        let fin = json!({"metadata": {"finalizers": ["b"], "$deleteFromPrimitiveList/finalizers": ["a"]}});
        let out = strategic_merge(&deployment(), &fin).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));

        let order = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
            "containers": [{"name": "app", "image": "nginx:3"}]}}}});
        let out = strategic_merge(&deployment(), &order).unwrap();
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(
            (cs[0]["name"].as_str(), cs[1]["image"].as_str()),
            (Some("sidecar"), Some("nginx:3"))
        );

        let retain = json!({"spec": {"$retainKeys": ["template"], "replicas": null}});
        let out = strategic_merge(&deployment(), &retain).unwrap();
        assert!(out["spec"].get("replicas").is_none());
    }

    #[test]
    fn service_ports_merge_on_port_and_other_lists_replace() {
        let svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}], "selector": {"a": "b"}},
                         "x": {"args": ["a", "b"]}});
        let patch =
            json!({"spec": {"ports": [{"port": 443, "name": "https"}]}, "x": {"args": ["c"]}});
        let out = strategic_merge(&svc, &patch).unwrap();
        assert_eq!(out["spec"]["ports"].as_array().unwrap().len(), 2);
        assert_eq!(out["x"]["args"], json!(["c"]));
    }

    #[test]
    fn json_and_merge_patches() {
        let doc = json!({"a": {"b": 1}, "l": [1, 2]});
        let out = json_patch(
            &doc,
            &json!([{"op": "replace", "path": "/a/b", "value": 2},
                                           {"op": "add", "path": "/l/-", "value": 3}]),
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"b": 2}, "l": [1, 2, 3]}));
        assert_eq!(
            json_patch(&doc, &json!([{"op": "test", "path": "/a/b", "value": 9}])),
            Err(JsonPatchError::Failed(
                "testing value /a/b failed: test failed".into()
            ))
        );
        assert!(json_patch(&doc, &json!({"not": "a patch"})).is_err());
        assert_eq!(
            merge_patch(&doc, &json!({"a": null, "c": 1})),
            json!({"l": [1, 2], "c": 1})
        );
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json; charset=utf-8"),
            Some(PatchType::Strategic)
        );
    }
}
