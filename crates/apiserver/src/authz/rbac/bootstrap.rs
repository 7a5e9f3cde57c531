//! Upstream's bootstrap policy (`policy.yaml`: `cluster-admin`, `admin`/`edit`/`view` and
//! their aggregated parts, the `system:*` roles and bindings), written at every start as
//! upstream's `rbac/bootstrap-roles` hook does: a missing object is created; one that exists
//! gets what it lacks (labels, annotations, rules it does not cover, subjects, aggregation
//! selectors) unless its `rbac.authorization.kubernetes.io/autoupdate` annotation is
//! `"false"`. Nothing a user added is removed.
//!
//! The controllers' roles (`controller-policy.yaml`, `system:controller:<account>`) each get
//! a binding of the same name to the service account `kube-system/<account>` that the
//! controller acts as.

use api::Status;
use api::resources::find;
use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::{Value, json};

use super::rules;
use crate::registry::{Caller, Registry};

/// The policy, one object per YAML document.
const POLICY: &str = include_str!("policy.yaml");
/// The controllers' roles, rules only.
const CONTROLLER_POLICY: &str = include_str!("controller-policy.yaml");
/// The prefix of a controller's role; the rest is its account's name.
const CONTROLLER_PREFIX: &str = "system:controller:";

/// The annotation that stops reconciliation when `"false"`.
const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// The bootstrap policy's objects.
pub fn objects() -> Vec<Value> {
    let mut all: Vec<Value> =
        serde_saphyr::from_multiple(POLICY).expect("the bootstrap policy is valid YAML");
    all.extend(controller_policy());
    all
}

/// The controllers' roles with the metadata every bootstrap object has, then their bindings.
fn controller_policy() -> Vec<Value> {
    let mut roles: Vec<Value> = serde_saphyr::from_multiple(CONTROLLER_POLICY)
        .expect("the controller policy is valid YAML");
    let mut bindings = Vec::new();
    for role in &mut roles {
        let name = role["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let account = name.strip_prefix(CONTROLLER_PREFIX).unwrap_or_default();
        let metadata = json!({"name": name,
            "annotations": {AUTOUPDATE: "true"},
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}});
        role["apiVersion"] = json!("rbac.authorization.k8s.io/v1");
        role["metadata"] = metadata.clone();
        bindings.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": metadata,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": "kube-system"}],
        }));
    }
    roles.extend(bindings);
    roles
}

/// Creates or completes every object of the policy.
pub async fn reconcile(registry: &Registry) -> Result<(), Status> {
    for wanted in objects() {
        let plural = match wanted["kind"].as_str() {
            Some("ClusterRole") => "clusterroles",
            _ => "clusterrolebindings",
        };
        let r = find("rbac.authorization.k8s.io", "v1", plural).expect("served");
        let name = wanted["metadata"]["name"].as_str().unwrap_or_default();
        let existing = match registry.get(r, None, name).await {
            Ok(existing) => existing,
            Err(s) if s.code == 404 => {
                match registry.create(r, None, wanted, Caller::SERVER).await {
                    Err(s) if s.code != 409 => return Err(s),
                    _ => continue,
                }
            }
            Err(s) => return Err(s),
        };
        if let Some(updated) = completed(&existing, &wanted) {
            match registry
                .update(r, None, name, updated, None, Caller::SERVER)
                .await
            {
                Err(s) if s.code != 409 => return Err(s),
                _ => {}
            }
        }
    }
    Ok(())
}

/// `existing` with what `wanted` has and it lacks, or `None` when nothing is missing or it
/// must not be touched.
fn completed(existing: &Value, wanted: &Value) -> Option<Value> {
    if existing["metadata"]["annotations"][AUTOUPDATE] == "false" {
        return None;
    }
    let mut out = existing.clone();
    for field in ["labels", "annotations"] {
        if let Some(want) = wanted["metadata"][field].as_object() {
            let have = out["metadata"]
                .as_object_mut()?
                .entry(field)
                .or_insert_with(|| Value::Object(Default::default()));
            for (k, v) in want {
                if have.get(k).is_none() {
                    have[k] = v.clone();
                }
            }
        }
    }
    if wanted.get("aggregationRule").is_some() {
        add_missing(&mut out, wanted, "/aggregationRule/clusterRoleSelectors");
    } else if wanted["kind"] == "ClusterRole" {
        let rules_of = |v: &Value| -> Vec<PolicyRule> {
            serde_json::from_value(v["rules"].clone()).unwrap_or_default()
        };
        let missing = rules::missing(&rules_of(existing), &rules_of(wanted));
        if !missing.is_empty() {
            let mut all = rules_of(existing);
            all.extend(missing);
            out["rules"] = serde_json::to_value(all).ok()?;
        }
    } else {
        add_missing(&mut out, wanted, "/subjects");
    }
    (out != *existing).then_some(out)
}

/// Appends to the list at `pointer` in `out` the entries of `wanted`'s that it lacks.
fn add_missing(out: &mut Value, wanted: &Value, pointer: &str) {
    let Some(want) = wanted.pointer(pointer).and_then(Value::as_array) else {
        return;
    };
    let mut have = out
        .pointer(pointer)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for w in want {
        if !have.contains(w) {
            have.push(w.clone());
        }
    }
    let (parent, key) = pointer.rsplit_once('/').unwrap_or_default();
    if parent.is_empty() {
        out[key] = Value::Array(have);
    } else if let Some(p) = out.pointer_mut(parent) {
        p[key] = Value::Array(have);
    } else {
        out[&parent[1..]] = serde_json::json!({ key: have });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_has_upstreams_roles_and_bindings() {
        let objects = objects();
        let names: Vec<&str> = objects
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        for name in ["cluster-admin", "admin", "edit", "view", "system:discovery"] {
            assert!(names.contains(&name), "{name}");
        }
        let binding = objects
            .iter()
            .find(|o| o["kind"] == "ClusterRoleBinding" && o["metadata"]["name"] == "cluster-admin")
            .unwrap();
        assert_eq!(binding["subjects"][0]["name"], "system:masters");
    }

    #[test]
    fn every_controller_role_is_bound_to_its_account() {
        let objects = objects();
        let roles: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "ClusterRole")
            .filter(|o| {
                o["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with(CONTROLLER_PREFIX)
            })
            .collect();
        assert!(roles.len() > 30, "{}", roles.len());
        for role in roles {
            let name = &role["metadata"]["name"];
            assert_eq!(role["metadata"]["annotations"][AUTOUPDATE], "true");
            assert!(
                role["rules"].as_array().is_some_and(|r| !r.is_empty()),
                "{name}"
            );
            let binding = objects
                .iter()
                .find(|o| o["kind"] == "ClusterRoleBinding" && o["metadata"]["name"] == *name)
                .unwrap_or_else(|| panic!("{name} is not bound"));
            assert_eq!(binding["roleRef"]["name"], *name);
            let account = name
                .as_str()
                .unwrap()
                .strip_prefix(CONTROLLER_PREFIX)
                .unwrap();
            assert_eq!(
                binding["subjects"],
                json!([{"kind": "ServiceAccount", "name": account, "namespace": "kube-system"}])
            );
        }
    }

    #[test]
    fn reconciling_adds_what_is_missing_and_keeps_what_users_added() {
        let wanted = json!({"kind": "ClusterRole", "metadata": {"name": "r", "labels": {"a": "1"}},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]});
        let edited = json!({"kind": "ClusterRole", "metadata": {"name": "r", "labels": {"b": "2"}},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                      {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]});
        let done = completed(&edited, &wanted).unwrap();
        assert_eq!(done["metadata"]["labels"], json!({"a": "1", "b": "2"}));
        assert_eq!(done["rules"].as_array().unwrap().len(), 3);
        assert_eq!(done["rules"][2]["verbs"], json!(["list"]));
        assert_eq!(completed(&done, &wanted), None, "complete already");
        let mut frozen = edited.clone();
        frozen["metadata"]["annotations"] = json!({AUTOUPDATE: "false"});
        assert_eq!(completed(&frozen, &wanted), None);
        let binding = json!({"kind": "ClusterRoleBinding", "metadata": {"name": "b"},
            "subjects": [{"kind": "Group", "name": "g"}]});
        let kept = json!({"kind": "ClusterRoleBinding", "metadata": {"name": "b"},
            "subjects": [{"kind": "User", "name": "u"}]});
        let done = completed(&kept, &binding).unwrap();
        assert_eq!(done["subjects"].as_array().unwrap().len(), 2);
    }
}
