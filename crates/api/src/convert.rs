//! Resources served in more than one version over one storage: `events.k8s.io/v1` Events
//! (stored as core `v1` Events) and `autoscaling/v1` HorizontalPodAutoscalers (stored as
//! `autoscaling/v2`). Objects are stored in the storage version; these functions convert
//! between it and the version a request speaks, field for field as upstream's conversions.
//!
//! Everything else is served in the version it is stored in, and the functions are the
//! identity for it.

use serde_json::{Map, Value, json};

use crate::resources::{Resource, find};

/// The resource whose storage `r` shares, when `r` is served by conversion.
pub fn storage_of(r: &Resource) -> Option<&'static Resource> {
    match (r.group.as_str(), r.version.as_str(), r.plural.as_str()) {
        ("events.k8s.io", "v1", "events") => find("", "v1", "events"),
        ("autoscaling", "v1", "horizontalpodautoscalers") => {
            find("autoscaling", "v2", "horizontalpodautoscalers")
        }
        _ => None,
    }
}

/// events.k8s.io/v1 field name -> core/v1 field name; the other fields share their names.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
];

/// A field selector label of `r` as its storage names it; `None` if `r` does not offer it.
pub fn field_label(r: &Resource, label: &str) -> Option<String> {
    if r.group_plural() != ("events.k8s.io", "events") {
        return Some(label.to_string());
    }
    if let Some(rest) = label.strip_prefix("regarding.") {
        return Some(format!("involvedObject.{rest}"));
    }
    match label {
        "reportingController" => Some("reportingComponent".into()),
        "reason" | "type" | "source" | "metadata.name" | "metadata.namespace" => {
            Some(label.to_string())
        }
        _ => None,
    }
}

fn rename(obj: Value, pairs: &[(&str, &str)], forward: bool) -> Value {
    let Value::Object(m) = obj else {
        return obj;
    };
    let mut out = Map::new();
    for (k, v) in m {
        let to = pairs
            .iter()
            .find(|(a, b)| if forward { *a == k } else { *b == k })
            .map(|(a, b)| if forward { *b } else { *a });
        out.insert(to.map(str::to_string).unwrap_or(k), v);
    }
    Value::Object(out)
}

/// Converts an object of `r`'s version into its storage version.
pub fn to_storage(r: &Resource, obj: Value) -> Value {
    let Some(storage) = storage_of(r) else {
        return obj;
    };
    let mut out = match r.group.as_str() {
        "events.k8s.io" => rename(obj, EVENT_FIELDS, true),
        _ => hpa::v1_to_v2(obj),
    };
    out["apiVersion"] = json!(storage.api_version());
    out
}

/// Converts a stored object into `r`'s version.
pub fn from_storage(r: &Resource, obj: Value) -> Value {
    if storage_of(r).is_none() {
        return obj;
    }
    let mut out = match r.group.as_str() {
        "events.k8s.io" => rename(obj, EVENT_FIELDS, false),
        _ => hpa::v2_to_v1(obj),
    };
    out["apiVersion"] = json!(r.api_version());
    out
}

/// autoscaling/v1 <-> v2. v1 has one target (CPU utilization); every other metric, the
/// current metrics, the conditions and the scaling behaviour travel in annotations, in the
/// older `autoscaling/v2beta1`-like shapes upstream uses there.
mod hpa {
    use serde_json::{Map, Value, json};

    const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
    const CURRENT: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
    const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
    const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

    fn is_cpu(m: &Value) -> bool {
        m["type"] == "Resource" && m["resource"]["name"] == "cpu"
    }

    fn set(obj: &mut Map<String, Value>, key: &str, v: &Value) {
        if !v.is_null() {
            obj.insert(key.into(), v.clone());
        }
    }

    /// A v2 MetricSpec as the v1 annotation carries it.
    fn spec_to_v1(m: &Value) -> Value {
        let ty = m["type"].as_str().unwrap_or("");
        let mut inner = Map::new();
        match ty {
            "Resource" | "ContainerResource" => {
                let src = if ty == "Resource" {
                    &m["resource"]
                } else {
                    &m["containerResource"]
                };
                set(&mut inner, "name", &src["name"]);
                set(&mut inner, "container", &src["container"]);
                set(
                    &mut inner,
                    "targetAverageUtilization",
                    &src["target"]["averageUtilization"],
                );
                set(
                    &mut inner,
                    "targetAverageValue",
                    &src["target"]["averageValue"],
                );
            }
            "Pods" => {
                set(&mut inner, "metricName", &m["pods"]["metric"]["name"]);
                set(&mut inner, "selector", &m["pods"]["metric"]["selector"]);
                set(
                    &mut inner,
                    "targetAverageValue",
                    &m["pods"]["target"]["averageValue"],
                );
            }
            "Object" => {
                let o = &m["object"];
                set(&mut inner, "target", &o["describedObject"]);
                set(&mut inner, "metricName", &o["metric"]["name"]);
                set(&mut inner, "selector", &o["metric"]["selector"]);
                set(&mut inner, "targetValue", &o["target"]["value"]);
                set(&mut inner, "averageValue", &o["target"]["averageValue"]);
            }
            "External" => {
                let e = &m["external"];
                set(&mut inner, "metricName", &e["metric"]["name"]);
                set(&mut inner, "metricSelector", &e["metric"]["selector"]);
                set(&mut inner, "targetValue", &e["target"]["value"]);
                set(
                    &mut inner,
                    "targetAverageValue",
                    &e["target"]["averageValue"],
                );
            }
            _ => return m.clone(),
        }
        json!({"type": ty, lower_first(ty): inner})
    }

    /// A v1 annotation MetricSpec as v2 has it.
    fn spec_to_v2(m: &Value) -> Value {
        let ty = m["type"].as_str().unwrap_or("");
        let src = &m[lower_first(ty)];
        let target = |value: &str, average: &str| {
            if !src[average].is_null() {
                json!({"type": "AverageValue", "averageValue": src[average]})
            } else {
                json!({"type": "Value", "value": src[value]})
            }
        };
        let metric = |selector: &str| {
            let mut id = Map::new();
            set(&mut id, "name", &src["metricName"]);
            set(&mut id, "selector", &src[selector]);
            Value::Object(id)
        };
        match ty {
            "Resource" | "ContainerResource" => {
                let t = if src["targetAverageUtilization"].is_null() {
                    json!({"type": "AverageValue", "averageValue": src["targetAverageValue"]})
                } else {
                    json!({"type": "Utilization", "averageUtilization": src["targetAverageUtilization"]})
                };
                let mut inner = Map::new();
                set(&mut inner, "name", &src["name"]);
                set(&mut inner, "container", &src["container"]);
                inner.insert("target".into(), t);
                json!({"type": ty, lower_first(ty): inner})
            }
            "Pods" => json!({"type": ty, "pods": {"metric": metric("selector"),
                "target": {"type": "AverageValue", "averageValue": src["targetAverageValue"]}}}),
            "Object" => json!({"type": ty, "object": {"describedObject": src["target"],
                "metric": metric("selector"), "target": target("targetValue", "averageValue")}}),
            "External" => json!({"type": ty, "external": {"metric": metric("metricSelector"),
                "target": target("targetValue", "targetAverageValue")}}),
            _ => m.clone(),
        }
    }

    /// A v2 MetricStatus as the v1 annotation carries it.
    fn status_to_v1(m: &Value) -> Value {
        let ty = m["type"].as_str().unwrap_or("");
        let src = &m[lower_first(ty)];
        let mut inner = Map::new();
        set(&mut inner, "name", &src["name"]);
        set(&mut inner, "container", &src["container"]);
        set(&mut inner, "metricName", &src["metric"]["name"]);
        set(&mut inner, "target", &src["describedObject"]);
        set(
            &mut inner,
            "currentAverageUtilization",
            &src["current"]["averageUtilization"],
        );
        set(
            &mut inner,
            "currentAverageValue",
            &src["current"]["averageValue"],
        );
        set(&mut inner, "currentValue", &src["current"]["value"]);
        json!({"type": ty, lower_first(ty): inner})
    }

    /// A v1 annotation MetricStatus as v2 has it.
    fn status_to_v2(m: &Value) -> Value {
        let ty = m["type"].as_str().unwrap_or("");
        let src = &m[lower_first(ty)];
        let mut current = Map::new();
        set(
            &mut current,
            "averageUtilization",
            &src["currentAverageUtilization"],
        );
        set(&mut current, "averageValue", &src["currentAverageValue"]);
        set(&mut current, "value", &src["currentValue"]);
        let mut inner = Map::new();
        set(&mut inner, "name", &src["name"]);
        set(&mut inner, "container", &src["container"]);
        set(&mut inner, "describedObject", &src["target"]);
        if !src["metricName"].is_null() {
            inner.insert("metric".into(), json!({"name": src["metricName"]}));
        }
        inner.insert("current".into(), Value::Object(current));
        json!({"type": ty, lower_first(ty): inner})
    }

    fn lower_first(s: &str) -> String {
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_lowercase().chain(c).collect())
            .unwrap_or_default()
    }

    fn upper_first(s: &str) -> String {
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect())
            .unwrap_or_default()
    }

    /// Recases every object key (the behaviour annotation uses Go's field names).
    fn recase(v: &Value, f: fn(&str) -> String) -> Value {
        match v {
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (f(k), recase(v, f))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(|v| recase(v, f)).collect()),
            other => other.clone(),
        }
    }

    fn annotation(obj: &mut Value, key: &str, v: &Value) {
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        if !obj["metadata"]["annotations"].is_object() {
            obj["metadata"]["annotations"] = json!({});
        }
        obj["metadata"]["annotations"][key] = json!(v.to_string());
    }

    fn take_annotation(obj: &mut Value, key: &str) -> Option<Value> {
        let annotations = obj["metadata"]["annotations"].as_object_mut()?;
        let raw = annotations.remove(key)?;
        if annotations.is_empty() {
            obj["metadata"].as_object_mut()?.remove("annotations");
        }
        serde_json::from_str(raw.as_str()?).ok()
    }

    pub(super) fn v2_to_v1(mut obj: Value) -> Value {
        let spec = obj["spec"].take();
        let status = obj["status"].take();
        let metrics: Vec<Value> = spec["metrics"].as_array().cloned().unwrap_or_default();
        let cpu = metrics.iter().find(|m| is_cpu(m));
        let others: Vec<Value> = metrics
            .iter()
            .filter(|m| !is_cpu(m) || m["resource"]["target"]["averageUtilization"].is_null())
            .map(spec_to_v1)
            .collect();
        let mut v1 = Map::new();
        set(&mut v1, "scaleTargetRef", &spec["scaleTargetRef"]);
        set(&mut v1, "minReplicas", &spec["minReplicas"]);
        set(&mut v1, "maxReplicas", &spec["maxReplicas"]);
        if let Some(cpu) = cpu {
            set(
                &mut v1,
                "targetCPUUtilizationPercentage",
                &cpu["resource"]["target"]["averageUtilization"],
            );
        }
        obj["spec"] = Value::Object(v1);
        if !others.is_empty() {
            annotation(&mut obj, METRICS, &json!(others));
        }
        if !spec["behavior"].is_null() {
            annotation(&mut obj, BEHAVIOR, &recase(&spec["behavior"], upper_first));
        }
        if status.is_object() {
            let mut s = Map::new();
            for k in [
                "observedGeneration",
                "lastScaleTime",
                "currentReplicas",
                "desiredReplicas",
            ] {
                set(&mut s, k, &status[k]);
            }
            let current: Vec<Value> = status["currentMetrics"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if let Some(u) = current
                .iter()
                .rfind(|m| is_cpu(m) && !m["resource"]["current"]["averageUtilization"].is_null())
            {
                set(
                    &mut s,
                    "currentCPUUtilizationPercentage",
                    &u["resource"]["current"]["averageUtilization"],
                );
            }
            obj["status"] = Value::Object(s);
            if !current.is_empty() {
                let v1: Vec<Value> = current.iter().map(status_to_v1).collect();
                annotation(&mut obj, CURRENT, &json!(v1));
            }
            if let Some(c) = status["conditions"].as_array().filter(|c| !c.is_empty()) {
                annotation(&mut obj, CONDITIONS, &json!(c));
            }
        } else if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
        obj
    }

    pub(super) fn v1_to_v2(mut obj: Value) -> Value {
        let spec = obj["spec"].take();
        let status = obj["status"].take();
        let mut metrics: Vec<Value> = take_annotation(&mut obj, METRICS)
            .and_then(|m| m.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(spec_to_v2)
            .collect();
        if !spec["targetCPUUtilizationPercentage"].is_null() {
            metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": spec["targetCPUUtilizationPercentage"]}}}));
        }
        let mut v2 = Map::new();
        set(&mut v2, "scaleTargetRef", &spec["scaleTargetRef"]);
        set(&mut v2, "minReplicas", &spec["minReplicas"]);
        set(&mut v2, "maxReplicas", &spec["maxReplicas"]);
        if !metrics.is_empty() {
            v2.insert("metrics".into(), json!(metrics));
        }
        if let Some(b) = take_annotation(&mut obj, BEHAVIOR) {
            v2.insert("behavior".into(), recase(&b, lower_first));
        }
        obj["spec"] = Value::Object(v2);
        let current = take_annotation(&mut obj, CURRENT);
        let conditions = take_annotation(&mut obj, CONDITIONS);
        if status.is_object() {
            let mut s = Map::new();
            for k in [
                "observedGeneration",
                "lastScaleTime",
                "currentReplicas",
                "desiredReplicas",
            ] {
                set(&mut s, k, &status[k]);
            }
            let metrics = match (&current, &status["currentCPUUtilizationPercentage"]) {
                (Some(Value::Array(c)), _) => c.iter().map(status_to_v2).collect(),
                (_, Value::Null) => Vec::new(),
                (_, u) => vec![json!({"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": u}}})],
            };
            if !metrics.is_empty() {
                s.insert("currentMetrics".into(), json!(metrics));
            }
            if let Some(c) = conditions {
                s.insert("conditions".into(), c);
            }
            obj["status"] = Value::Object(s);
        } else if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
        obj
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_rename_their_fields_both_ways() {
        let ev = find("events.k8s.io", "v1", "events").unwrap();
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "hi", "count": 2,
            "reportingComponent": "kubelet", "reason": "Started"});
        let v1 = from_storage(ev, core.clone());
        assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v1["regarding"]["name"], "p");
        assert_eq!(v1["note"], "hi");
        assert_eq!(v1["deprecatedCount"], 2);
        assert_eq!(v1["reportingController"], "kubelet");
        assert_eq!(v1["reason"], "Started");
        assert_eq!(to_storage(ev, v1), core);
        assert_eq!(
            field_label(ev, "regarding.name").as_deref(),
            Some("involvedObject.name")
        );
        assert_eq!(field_label(ev, "involvedObject.name"), None);
    }

    #[test]
    fn hpa_v1_keeps_its_cpu_target_and_carries_the_rest_in_annotations() {
        let v1r = find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}}},
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
                "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}}},
            "status": {"currentReplicas": 2, "desiredReplicas": 3,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 55}}}],
                "conditions": [{"type": "AbleToScale", "status": "True"}]}});
        let v1 = from_storage(v1r, v2.clone());
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 70);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 55);
        let ann = &v1["metadata"]["annotations"];
        assert_eq!(
            ann["autoscaling.alpha.kubernetes.io/metrics"],
            r#"[{"resource":{"name":"memory","targetAverageValue":"1Gi"},"type":"Resource"}]"#
        );
        assert_eq!(
            ann["autoscaling.alpha.kubernetes.io/behavior"],
            r#"{"ScaleUp":{"StabilizationWindowSeconds":0}}"#
        );
        let back = to_storage(v1r, v1);
        assert_eq!(back["spec"]["metrics"], v2["spec"]["metrics"]);
        assert_eq!(back["spec"]["behavior"], v2["spec"]["behavior"]);
        assert_eq!(back["status"]["conditions"], v2["status"]["conditions"]);
        assert!(back["metadata"].get("annotations").is_none());
        assert_eq!(back["apiVersion"], "autoscaling/v2");
    }
}
