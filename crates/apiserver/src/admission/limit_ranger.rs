//! `LimitRanger`: a new pod's containers take the `default` limits and `defaultRequest`
//! requests of the namespace's LimitRanges, and are refused beyond their `min`, `max` and
//! `maxLimitRequestRatio` (per Container and per Pod), in upstream's words.

use api::Status;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Attributes, Mutating, Operation, forbidden_as, name_of};
use crate::registry::Registry;
use crate::watched::Watched;

/// The step, with its copy of the LimitRanges.
pub(super) struct LimitRanger {
    ranges: Watched,
}

impl Default for LimitRanger {
    fn default() -> LimitRanger {
        LimitRanger {
            ranges: Watched::new("/registry/limitranges/"),
        }
    }
}

impl Mutating for LimitRanger {
    fn name(&self) -> &'static str {
        "LimitRanger"
    }

    fn admit<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        pod: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            match a.namespace {
                Some(ns) if a.is_pod() && a.operation == Operation::Create => {
                    self.on_create(reg, ns, pod).await
                }
                _ => Ok(()),
            }
        })
    }
}

impl LimitRanger {
    async fn on_create(&self, reg: &Registry, ns: &str, pod: &mut Value) -> Result<(), Status> {
        let ranges = api::resources::find("", "v1", "limitranges").expect("served");
        let found = self
            .ranges
            .under(reg.store(), &ranges.prefix(Some(ns)))
            .await?;
        let mut errors: Vec<String> = Vec::new();
        for (_, _, range) in &found {
            for item in range["spec"]["limits"].as_array().into_iter().flatten() {
                match item["type"].as_str().unwrap_or("") {
                    "Container" => containers(item, pod, &mut errors),
                    "Pod" => whole_pod(item, pod, &mut errors),
                    _ => {}
                }
            }
        }
        let pods = api::resources::find("", "v1", "pods").expect("served");
        match errors.len() {
            0 => Ok(()),
            1 => Err(forbidden_as(pods, &name_of(pod), &errors[0])),
            _ => Err(forbidden_as(
                pods,
                &name_of(pod),
                &format!("[{}]", errors.join(", ")),
            )),
        }
    }
}

/// A quantity in milli-units.
fn milli(v: &Value) -> i128 {
    api::quota::parse(&json!({"x": v}))
        .get("x")
        .copied()
        .unwrap_or(0)
}

/// A quantity for messages: as written in the LimitRange, or from milli-units.
fn shown(resource: &str, v: i128) -> String {
    api::quota::format(resource, v)
}

/// A `Container` item: its defaults go into every container, then its bounds are checked.
fn containers(item: &Value, pod: &mut Value, errors: &mut Vec<String>) {
    for list in ["containers", "initContainers"] {
        let Some(containers) = pod["spec"][list].as_array_mut() else {
            continue;
        };
        for c in containers {
            // Defaults first: limits from `default`, requests from `defaultRequest` (or the
            // default limit).
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
            check_limits(item, &c["resources"], "Container", errors);
        }
    }
}

/// A `Pod` item: its bounds are checked against the sums over the pod's containers.
fn whole_pod(item: &Value, pod: &Value, errors: &mut Vec<String>) {
    let mut sums = json!({"requests": {}, "limits": {}});
    for (k, v) in &api::quota::usage("", "pods", pod) {
        if let Some(r) = k.strip_prefix("requests.") {
            sums["requests"][r] = json!(shown(r, *v));
        } else if let Some(l) = k.strip_prefix("limits.") {
            sums["limits"][l] = json!(shown(l, *v));
        }
    }
    check_limits(item, &sums, "Pod", errors);
}

/// Checks one LimitRange item's min, max and ratio against `resources` (requests and
/// limits) of a Container or Pod.
fn check_limits(item: &Value, resources: &Value, what: &str, errors: &mut Vec<String>) {
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
