//! The `scale` subresource: an `autoscaling/v1` Scale read from, and written to, the
//! replica fields a resource names in its [`ScalePaths`] (the built-in workloads'
//! `.spec.replicas`, or whatever a custom resource's definition says).

use api::resources::ScalePaths;
use api::{Resource, Status};
use serde_json::{Value, json};

use crate::object::set_pointer;
use crate::registry::{Caller, Registry};

/// A path in upstream's `.spec.replicas` form as a JSON pointer: `/spec/replicas`.
fn pointer(path: &str) -> String {
    path.replace('.', "/")
}

/// The paths of `r`'s scale subresource; a resource served with one always has them.
fn paths(r: &Resource) -> Result<&ScalePaths, Status> {
    r.scale.as_ref().ok_or_else(Status::path_not_found)
}

/// The pods' selector as a string: a string at the path as it is, a label selector object
/// (the built-in workloads' `spec.selector`) in selector syntax.
fn selector(obj: &Value, paths: &ScalePaths) -> String {
    let Some(at) = paths.label_selector.as_deref() else {
        return String::new();
    };
    match obj.pointer(&pointer(at)) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => api::selector::LabelSelector::from_any(other)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        None => String::new(),
    }
}

fn replicas(obj: &Value, path: &str) -> i64 {
    obj.pointer(&pointer(path))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// The `scale` subresource of an object of `r`, as an `autoscaling/v1` Scale.
pub fn scale_of(r: &Resource, obj: &Value) -> Result<Value, Status> {
    let paths = paths(r)?;
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": replicas(obj, &paths.spec_replicas)},
        "status": {
            "replicas": replicas(obj, &paths.status_replicas),
            "selector": selector(obj, paths),
        },
    }))
}

impl Registry {
    /// Sets the desired replicas through the `scale` subresource (PUT or PATCH of a
    /// Scale): `scale_change` turns the current Scale into the wanted one.
    pub async fn set_scale(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        scale_change: impl Fn(&Value) -> Result<Value, Status>,
        who: Caller<'_>,
    ) -> Result<Value, Status> {
        let at = pointer(&paths(r)?.spec_replicas);
        let change = |current: &Value| {
            let scale = scale_change(&scale_of(r, current)?)?;
            let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
            if replicas < 0 {
                let field = api::validation::FieldError::invalid(
                    "spec.replicas",
                    &json!(replicas),
                    "must be greater than or equal to 0",
                );
                return Err(Status::invalid(r, name, &[field]));
            }
            let mut new = current.clone();
            set_pointer(&mut new, &at, Some(json!(replicas)));
            Ok(new)
        };
        let updated = self
            .guaranteed_update(r, ns, name, who, change, None)
            .await?;
        scale_of(r, &updated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widgets(label_selector: Option<&str>) -> Resource {
        Resource {
            kind: "Widget".into(),
            scale: Some(ScalePaths {
                spec_replicas: ".spec.size".into(),
                status_replicas: ".status.ready.count".into(),
                label_selector: label_selector.map(Into::into),
            }),
            ..Resource::default()
        }
    }

    #[test]
    fn scale_reads_the_paths_a_resource_names() {
        let w = json!({
            "metadata": {"name": "w"},
            "spec": {"size": 3},
            "status": {"ready": {"count": 2}, "selector": "app=w"},
        });
        let s = scale_of(&widgets(Some(".status.selector")), &w).unwrap();
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"], json!({"replicas": 2, "selector": "app=w"}));
        let s = scale_of(&widgets(None), &w).unwrap();
        assert_eq!(s["status"]["selector"], "");
        assert_eq!(scale_of(&Resource::default(), &w).unwrap_err().code, 404);
    }

    #[test]
    fn workloads_show_their_selector_object_as_a_string() {
        let deploy = api::resources::find("apps", "v1", "deployments").unwrap();
        let d = json!({
            "metadata": {"name": "d"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}},
        });
        let s = scale_of(deploy, &d).unwrap();
        assert_eq!(s["status"], json!({"replicas": 0, "selector": "app=web"}));
    }

    #[tokio::test]
    async fn a_scale_update_writes_the_spec_path() {
        let (_dir, reg) = crate::registry::scratch(&["d"]).await;
        let served = widgets(Some(".status.selector"));
        let mut w = json!({"apiVersion": "v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "d"}});
        w["spec"] = json!({"size": 1});
        reg.served().add(Resource {
            version: "v1".into(),
            plural: "widgets".into(),
            singular: "widget".into(),
            namespaced: true,
            storage: "widgets".into(),
            subresources: vec!["scale".into()],
            ..served.clone()
        });
        let r = reg.served().find("", "v1", "widgets").unwrap();
        reg.create(&r, Some("d"), w, Caller::SERVER).await.unwrap();
        let to_five = |s: &Value| {
            let mut s = s.clone();
            s["spec"]["replicas"] = json!(5);
            Ok(s)
        };
        let s = reg
            .set_scale(&r, Some("d"), "w", to_five, Caller::SERVER)
            .await
            .unwrap();
        assert_eq!(s["spec"]["replicas"], 5);
        let stored = reg.get(&r, Some("d"), "w").await.unwrap();
        assert_eq!(stored["spec"]["size"], 5);
    }
}
