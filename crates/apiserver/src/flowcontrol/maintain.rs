//! Keeping the configuration in place, as upstream's config producer and the status half of
//! its consumer do: [`ensure`] creates upstream's bootstrap objects that are missing, puts
//! back their specs where the `apf.kubernetes.io/autoupdate-spec` annotation allows (always
//! for the mandatory `exempt` and `catch-all`), and removes objects the server once made
//! that it no longer ships; [`maintain`] runs it at every change and every minute, and sets
//! each FlowSchema's `Dangling` condition (whether its priority level exists).

use std::sync::Arc;
use std::time::Duration;

use api::Status;
use api::resources::find;
use serde_json::{Value, json};

use super::FlowControl;
use super::bootstrap::{self, AUTOUPDATE};
use crate::registry::{Caller, DeleteOptions, ListOptions, Registry};

const GROUP: &str = "flowcontrol.apiserver.k8s.io";

/// Keeps the bootstrap objects and the schemas' conditions current, for as long as it runs.
pub(crate) async fn maintain(fc: Arc<FlowControl>, registry: Registry) {
    let (mut schemas, mut levels) = (fc.schemas.changes(), fc.levels.changes());
    loop {
        if let Err(s) = keep(&fc, &registry).await {
            tracing::warn!(error = %s.message, "priority and fairness: keeping the configuration");
        }
        tokio::select! {
            _ = schemas.changed() => {}
            _ = levels.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}

/// One pass over the watched copies: the bootstrap objects, then the schemas' conditions.
async fn keep(fc: &FlowControl, registry: &Registry) -> Result<(), Status> {
    let store = registry.store();
    let values = |all: Vec<(String, i64, Value)>| -> Vec<Value> {
        all.into_iter().map(|(_, _, v)| v).collect()
    };
    let levels = values(fc.levels.under(store, "").await?);
    let schemas = values(fc.schemas.under(store, "").await?);
    ensure_with(registry, &levels, &schemas).await?;
    conditions(registry, &levels, &schemas).await
}

/// Upstream's bootstrap objects in place, at start-up: as [`ensure_with`], over what is
/// stored now.
pub(crate) async fn ensure(registry: &Registry) -> Result<(), Status> {
    let all = ListOptions::default();
    let levels = registry.list(levels_resource(), None, &all).await?.items;
    let schemas = registry.list(schemas_resource(), None, &all).await?.items;
    ensure_with(registry, &levels, &schemas).await
}

fn levels_resource() -> &'static api::Resource {
    find(GROUP, "v1", "prioritylevelconfigurations").expect("served")
}

fn schemas_resource() -> &'static api::Resource {
    find(GROUP, "v1", "flowschemas").expect("served")
}

/// Upstream's bootstrap objects in place, given the stored levels and schemas: the suggested
/// levels and schemas, then the mandatory ones; then the server's own objects it no longer
/// ships removed. Only what must change is written.
async fn ensure_with(
    registry: &Registry,
    levels: &[Value],
    schemas: &[Value],
) -> Result<(), Status> {
    let (shipped_levels, shipped_schemas) =
        (bootstrap::priority_levels(), bootstrap::flow_schemas());
    let kinds = [
        (levels_resource(), &shipped_levels, levels),
        (schemas_resource(), &shipped_schemas, schemas),
    ];
    for mandatory in [false, true] {
        for (r, shipped, stored) in kinds {
            for (wanted, m) in shipped.iter().filter(|(_, m)| *m == mandatory) {
                let name = &wanted["metadata"]["name"];
                let existing = stored.iter().find(|o| o["metadata"]["name"] == *name);
                ensure_one(registry, r, wanted, *m, existing).await?;
            }
        }
    }
    for (r, shipped, stored) in kinds.into_iter().rev() {
        let names: Vec<&Value> = shipped
            .iter()
            .map(|(v, _)| &v["metadata"]["name"])
            .collect();
        for obj in stored {
            let ours = parse_bool(&obj["metadata"]["annotations"][AUTOUPDATE]) == Some(true);
            if ours && !names.contains(&&obj["metadata"]["name"]) {
                let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                let gone = registry
                    .delete(r, None, name, &DeleteOptions::default(), Caller::SERVER)
                    .await;
                tolerate(gone.map(|_| ()))?;
            }
        }
    }
    Ok(())
}

/// One shipped object: created when missing; its annotation and spec put back as upstream
/// says. A suggested object without a readable annotation is kept up to date only while
/// nobody changed its spec (generation 1).
async fn ensure_one(
    registry: &Registry,
    r: &api::Resource,
    wanted: &Value,
    mandatory: bool,
    existing: Option<&Value>,
) -> Result<(), Status> {
    let name = wanted["metadata"]["name"].as_str().unwrap_or_default();
    let Some(existing) = existing else {
        let created = registry
            .create(r, None, wanted.clone(), Caller::SERVER)
            .await;
        return tolerate(created.map(|_| ()));
    };
    let annotation = parse_bool(&existing["metadata"]["annotations"][AUTOUPDATE]);
    let autoupdate = mandatory || annotation.unwrap_or(existing["metadata"]["generation"] == 1);
    let mut revised = existing.clone();
    if annotation != Some(autoupdate) {
        revised["metadata"]["annotations"][AUTOUPDATE] = json!(autoupdate.to_string());
    }
    let mut spec = wanted["spec"].clone();
    if name == "exempt" && existing["spec"]["exempt"].is_object() {
        // The exempt level's shares and lendable percentage are the operator's to set.
        spec["exempt"] = existing["spec"]["exempt"].clone();
    }
    if autoupdate && existing["spec"] != spec {
        revised["spec"] = spec;
    }
    if revised == *existing {
        return Ok(());
    }
    tolerate(
        registry
            .update(r, None, name, revised, None, Caller::SERVER)
            .await
            .map(|_| ()),
    )
}

/// Each FlowSchema's `Dangling` condition set to whether its priority level exists.
async fn conditions(
    registry: &Registry,
    levels: &[Value],
    schemas: &[Value],
) -> Result<(), Status> {
    let names: Vec<Value> = levels
        .iter()
        .map(|l| l["metadata"]["name"].clone())
        .collect();
    let stale = schemas.iter().filter_map(|fs| with_condition(fs, &names));
    for fs in stale {
        let name = fs["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let written = registry
            .update(
                schemas_resource(),
                None,
                &name,
                fs,
                Some("status"),
                Caller::SERVER,
            )
            .await;
        tolerate(written.map(|_| ()))?;
    }
    Ok(())
}

/// `fs` with its `Dangling` condition made current, or `None` if it already is.
fn with_condition(fs: &Value, levels: &[Value]) -> Option<Value> {
    let level = &fs["spec"]["priorityLevelConfiguration"]["name"];
    let name = level.as_str().unwrap_or_default();
    let (status, reason, message) = if levels.contains(level) {
        (
            "False",
            "Found",
            format!(
                "This FlowSchema references the PriorityLevelConfiguration object named \"{name}\" and it exists"
            ),
        )
    } else {
        (
            "True",
            "NotFound",
            format!(
                "This FlowSchema references the PriorityLevelConfiguration object named \"{name}\" but there is no such object"
            ),
        )
    };
    let conditions = fs["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let current = conditions.iter().find(|c| c["type"] == "Dangling");
    if current
        .is_some_and(|c| c["status"] == status && c["reason"] == reason && c["message"] == message)
    {
        return None;
    }
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let condition = json!({"type": "Dangling", "status": status, "lastTransitionTime": now,
                           "reason": reason, "message": message});
    let mut conditions: Vec<Value> = conditions
        .into_iter()
        .filter(|c| c["type"] != "Dangling")
        .collect();
    conditions.push(condition);
    let mut out = fs.clone();
    out["status"]["conditions"] = Value::Array(conditions);
    Some(out)
}

/// A write that lost a race (the object changed, appeared or went meanwhile) is left for the
/// next pass.
fn tolerate(result: Result<(), Status>) -> Result<(), Status> {
    match result {
        Err(s) if matches!(s.code, 404 | 409) => Ok(()),
        other => other,
    }
}

/// Go's `strconv.ParseBool`, which upstream reads the annotation with.
fn parse_bool(v: &Value) -> Option<bool> {
    match v.as_str()? {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_gets_dangling_once_and_keeps_it_while_nothing_changes() {
        let fs = json!({"metadata": {"name": "s"}, "spec": {"priorityLevelConfiguration": {"name": "gone"}}});
        let marked = with_condition(&fs, &[json!("other")]).unwrap();
        let c = &marked["status"]["conditions"][0];
        assert_eq!(
            (
                c["type"].as_str(),
                c["status"].as_str(),
                c["reason"].as_str()
            ),
            (Some("Dangling"), Some("True"), Some("NotFound"))
        );
        assert_eq!(
            c["message"],
            "This FlowSchema references the PriorityLevelConfiguration object named \"gone\" but there is no such object"
        );
        assert!(with_condition(&marked, &[json!("other")]).is_none());
        let found = with_condition(&marked, &[json!("gone")]).unwrap();
        assert_eq!(found["status"]["conditions"].as_array().unwrap().len(), 1);
        assert_eq!(found["status"]["conditions"][0]["reason"], "Found");
    }

    #[test]
    fn annotations_read_as_go_reads_booleans() {
        assert_eq!(parse_bool(&json!("True")), Some(true));
        assert_eq!(parse_bool(&json!("0")), Some(false));
        assert_eq!(parse_bool(&json!("yes")), None);
        assert_eq!(parse_bool(&Value::Null), None);
    }
}
