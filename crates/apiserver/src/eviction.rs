//! The `pods/eviction` subresource (what `kubectl drain` posts): deletes a pod unless that
//! would take its PodDisruptionBudget below what it allows.
//!
//! As upstream: pods that are not running yet, finished or already terminating go at once;
//! otherwise the one PDB selecting the pod must have been processed by the disruption
//! controller (`status.observedGeneration`) and allow a disruption, which is then taken from
//! `status.disruptionsAllowed` and recorded in `status.disruptedPods` before the pod is
//! deleted. More than one matching PDB is an error, as upstream.

use api::Status;
use api::selector::LabelSelector;
use serde_json::{Value, json};

use crate::object::now;
use crate::registry::{Caller, DeleteOptions, ListOptions, Registry};

/// What an eviction request asks for.
pub struct Eviction<'a> {
    /// The delete options to delete the pod with.
    pub options: DeleteOptions,
    /// Who evicts, and whether only as a dry run.
    pub caller: Caller<'a>,
}

fn resource(group: &str, version: &str, plural: &str) -> &'static api::Resource {
    api::resources::find(group, version, plural).expect("served resource")
}

fn too_many_requests(message: String, retry_after: u64) -> Status {
    let mut details = json!({"causes": [{"reason": "DisruptionBudget", "message": message}]});
    if retry_after > 0 {
        details["retryAfterSeconds"] = json!(retry_after);
    }
    Status {
        details: Some(details),
        ..Status::new(
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.",
        )
    }
}

/// Checks that `body` (a policy/v1 Eviction) names the pod in the URL.
pub fn check_body(name: &str, body: &Value) -> Result<(), Status> {
    if body["metadata"]["name"].as_str() != Some(name) {
        return Err(Status::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    Ok(())
}

/// Evicts pod `name` in `ns`.
pub async fn evict(reg: &Registry, ns: &str, name: &str, ev: Eviction<'_>) -> Result<(), Status> {
    let pods = resource("", "v1", "pods");
    let pod = reg.get(pods, Some(ns), name).await?;
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    let terminating = pod["metadata"].get("deletionTimestamp").is_some();
    if terminating || matches!(phase, "Pending" | "Succeeded" | "Failed") {
        return delete(reg, &pod, ev).await;
    }
    let pdbs = resource("policy", "v1", "poddisruptionbudgets");
    let all = reg.list(pdbs, Some(ns), &ListOptions::default()).await?;
    let labels = pod["metadata"]["labels"].clone();
    let matching: Vec<&Value> = all
        .items
        .iter()
        .filter(|pdb| {
            // A missing selector selects nothing; an empty one selects every pod.
            let sel = &pdb["spec"]["selector"];
            !sel.is_null()
                && LabelSelector::from_object(sel).is_ok_and(|s| s.matches(Some(&labels)))
        })
        .collect();
    let pdb_name = match matching.as_slice() {
        [] => return delete(reg, &pod, ev).await,
        [one] => one["metadata"]["name"].as_str().unwrap_or("").to_string(),
        _ => {
            return Err(Status::new(
                500,
                "",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
    };
    let ready = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    for _ in 0..20 {
        let pdb = reg.get(pdbs, Some(ns), &pdb_name).await?;
        let status = &pdb["status"];
        let (current, desired) = (
            status["currentHealthy"].as_i64().unwrap_or(0),
            status["desiredHealthy"].as_i64().unwrap_or(0),
        );
        if !ready
            && (pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
                || (current >= desired && desired > 0))
        {
            // An unready pod does not count towards the budget: no disruption is used.
            return delete(reg, &pod, ev).await;
        }
        let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
        if status["observedGeneration"].as_i64().unwrap_or(0) < generation {
            return Err(too_many_requests(
                format!("The disruption budget {pdb_name} is still being processed by the server."),
                10,
            ));
        }
        let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
        let forbidden = |why: &str| {
            Status::new(
                403,
                "Forbidden",
                format!("poddisruptionbudget.policy {pdb_name:?} is forbidden: {why}"),
            )
        };
        if allowed < 0 {
            return Err(forbidden("pdb disruptions allowed is negative"));
        }
        if status["disruptedPods"]
            .as_object()
            .is_some_and(|m| m.len() > 2000)
        {
            return Err(forbidden(
                "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
            ));
        }
        if allowed == 0 {
            return Err(too_many_requests(
                format!(
                    "The disruption budget {pdb_name} needs {desired} healthy pods and has {current} currently"
                ),
                0,
            ));
        }
        if ev.caller.dry_run {
            return Ok(());
        }
        let mut updated = pdb.clone();
        updated["status"]["disruptionsAllowed"] = json!(allowed - 1);
        if updated["status"]["disruptedPods"].as_object().is_none() {
            updated["status"]["disruptedPods"] = json!({});
        }
        updated["status"]["disruptedPods"][name] = json!(now());
        if allowed == 1 {
            // No disruption left.
            put_condition(
                &mut updated["status"],
                json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
                       "message": "", "observedGeneration": generation, "lastTransitionTime": now()}),
            );
        }
        match reg
            .update(
                pdbs,
                Some(ns),
                &pdb_name,
                updated,
                Some("status"),
                Caller::SERVER,
            )
            .await
        {
            Ok(_) => return delete(reg, &pod, ev).await,
            Err(s) if s.code == 409 => continue,
            Err(s) => return Err(s),
        }
    }
    Err(Status {
        details: Some(json!({"retryAfterSeconds": 10})),
        ..Status::timeout(format!(
            "Timeout: couldn't update PodDisruptionBudget {pdb_name:?} due to conflicts"
        ))
    })
}

/// Sets a condition in `status.conditions`, replacing one of the same type.
fn put_condition(status: &mut Value, condition: Value) {
    let mut conditions: Vec<Value> = status["conditions"].as_array().cloned().unwrap_or_default();
    conditions.retain(|c| c["type"] != condition["type"]);
    conditions.push(condition);
    status["conditions"] = json!(conditions);
}

/// Marks the pod as a disruption target, then deletes it.
async fn delete(reg: &Registry, pod: &Value, ev: Eviction<'_>) -> Result<(), Status> {
    let pods = resource("", "v1", "pods");
    let ns = pod["metadata"]["namespace"].as_str();
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    if ev.caller.dry_run {
        reg.delete(pods, ns, name, &ev.options, ev.caller).await?;
        return Ok(());
    }
    let mut marked = pod.clone();
    if let Some(rv) = &ev.options.resource_version {
        marked["metadata"]["resourceVersion"] = json!(rv);
    }
    put_condition(
        &mut marked["status"],
        json!({"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
               "message": "Eviction API: evicting", "lastTransitionTime": now()}),
    );
    if pod["metadata"].get("deletionTimestamp").is_none() {
        let updated = reg
            .update(pods, ns, name, marked, Some("status"), ev.caller)
            .await?;
        let mut options = ev.options;
        if options.resource_version.is_some() {
            options.resource_version = updated["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string);
        }
        reg.delete(pods, ns, name, &options, ev.caller).await?;
        return Ok(());
    }
    reg.delete(pods, ns, name, &ev.options, ev.caller).await?;
    Ok(())
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::*;

    async fn registry() -> (tempfile::TempDir, Registry) {
        crate::registry::scratch(&["default"]).await
    }

    fn eviction(dry_run: bool) -> Eviction<'static> {
        Eviction {
            options: DeleteOptions::default(),
            caller: Caller {
                user: None,
                dry_run,
            },
        }
    }

    async fn pod(reg: &Registry, name: &str, labels: Value, phase: &str) {
        let pods = resource("", "v1", "pods");
        reg.create(
            pods,
            Some("default"),
            json!({"metadata": {"name": name, "labels": labels},
                   "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
            Caller::SERVER,
        )
        .await
        .unwrap();
        let mut p = reg.get(pods, Some("default"), name).await.unwrap();
        p["status"]["phase"] = json!(phase);
        p["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        reg.update(
            pods,
            Some("default"),
            name,
            p,
            Some("status"),
            Caller::SERVER,
        )
        .await
        .unwrap();
    }

    async fn pdb(reg: &Registry, name: &str, status: Option<Value>) {
        let pdbs = resource("policy", "v1", "poddisruptionbudgets");
        reg.create(
            pdbs,
            Some("default"),
            json!({"metadata": {"name": name},
                   "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}),
            Caller::SERVER,
        )
        .await
        .unwrap();
        if let Some(s) = status {
            let mut p = reg.get(pdbs, Some("default"), name).await.unwrap();
            p["status"] = s;
            reg.update(
                pdbs,
                Some("default"),
                name,
                p,
                Some("status"),
                Caller::SERVER,
            )
            .await
            .unwrap();
        }
    }

    #[tokio::test]
    async fn budgets_the_controller_has_not_seen_ask_to_retry_later() {
        let (_d, reg) = registry().await;
        pod(&reg, "web", json!({"app": "web"}), "Running").await;
        pdb(&reg, "budget", None).await;
        let e = evict(&reg, "default", "web", eviction(false))
            .await
            .unwrap_err();
        assert_eq!((e.code, e.reason), (429, "TooManyRequests"));
        let details = e.details.unwrap();
        assert_eq!(details["retryAfterSeconds"], 10);
        assert_eq!(
            details["causes"][0]["message"],
            "The disruption budget budget is still being processed by the server."
        );
    }

    #[tokio::test]
    async fn pending_pods_go_at_once_and_two_budgets_are_an_error() {
        let (_d, reg) = registry().await;
        pod(&reg, "new", json!({"app": "web"}), "Pending").await;
        pod(&reg, "web", json!({"app": "web"}), "Running").await;
        pdb(&reg, "a", None).await;
        pdb(&reg, "b", None).await;
        evict(&reg, "default", "new", eviction(false))
            .await
            .unwrap();
        let pods = resource("", "v1", "pods");
        assert_eq!(
            reg.get(pods, Some("default"), "new")
                .await
                .unwrap_err()
                .code,
            404
        );
        let e = evict(&reg, "default", "web", eviction(false))
            .await
            .unwrap_err();
        assert_eq!(e.code, 500);
        assert_eq!(
            e.message,
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
        );
    }

    #[tokio::test]
    async fn dry_runs_leave_pod_and_budget_alone() {
        let (_d, reg) = registry().await;
        pod(&reg, "web", json!({"app": "web"}), "Running").await;
        let status = json!({"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 2, "desiredHealthy": 1});
        pdb(&reg, "budget", Some(status)).await;
        evict(&reg, "default", "web", eviction(true)).await.unwrap();
        let pods = resource("", "v1", "pods");
        assert!(reg.get(pods, Some("default"), "web").await.is_ok());
        let pdbs = resource("policy", "v1", "poddisruptionbudgets");
        let b = reg.get(pdbs, Some("default"), "budget").await.unwrap();
        assert_eq!(b["status"]["disruptionsAllowed"], 1);
    }
}
