//! The OpenAPI documents kubectl reads before `apply`, `create -f` and `explain`: the v3
//! index, one v3 document per group/version, and the one Swagger 2.0 document.
//!
//! Documents follow the [`Catalog`]: each is built from the resources served now and kept
//! until they change (a fingerprint of those resources tells), and the index's `hash`
//! parameter is that fingerprint, so a client's cached copy goes stale exactly when the
//! served resources do.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use api::Resource;
use api::resources::{Catalog, builtin};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::typed::{self, ApiType, Typed};

/// The key of a group/version in the OpenAPI v3 index: `api/v1`, `apis/apps/v1`.
fn openapi_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The resources of `served` that the v3 document under `key` describes.
fn in_key<'a>(served: &'a [Arc<Resource>], key: &'a str) -> impl Iterator<Item = &'a Resource> {
    served
        .iter()
        .map(|r| &**r)
        .filter(move |r| openapi_key(&r.group, &r.version) == key)
}

/// What a document is built from, as a number that changes when any of it does.
fn fingerprint<'a>(resources: impl Iterator<Item = &'a Resource>) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    for r in resources {
        r.hash(&mut h);
    }
    env!("CARGO_PKG_VERSION").hash(&mut h);
    h.finish()
}

/// `/openapi/v3`: the index of per-group/version documents.
pub fn index(served: &Catalog) -> Value {
    let snapshot = served.snapshot();
    let mut paths = serde_json::Map::new();
    for (g, vs) in served.groups() {
        for v in vs {
            let key = openapi_key(&g, &v);
            let hash = format!("{:016X}", fingerprint(in_key(&snapshot, &key)));
            let url = format!("/openapi/v3/{key}?hash={hash}");
            paths.insert(key, json!({"serverRelativeURL": url}));
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<key>`: one group/version's paths and object schemas.
///
/// Each resource's item path has get/put/patch/delete operations carrying
/// `x-kubernetes-group-version-kind` and the `fieldValidation` parameter, which is what
/// kubectl checks before it leaves validation to the server. The schemas (k8s-openapi's,
/// under upstream's names such as `io.k8s.api.core.v1.Pod`) are what `kubectl explain`
/// reads. The PATCH operations do not advertise strategic merge patch bodies, so kubectl
/// computes those patches from its compiled-in types, not from these schemas.
pub fn document(served: &Catalog, key: &str) -> Option<Arc<Value>> {
    let snapshot = served.snapshot();
    let resources: Vec<&Resource> = in_key(&snapshot, key).collect();
    cached(key, resources, |rs| build_document(false, rs))
}

/// `/openapi/v2`: every served type in one Swagger 2.0 document (JSON), for older clients
/// and tools that still read it.
pub fn v2(served: &Catalog) -> Arc<Value> {
    let snapshot = served.snapshot();
    let resources: Vec<&Resource> = snapshot.iter().map(|r| &**r).collect();
    cached("/v2", resources, |rs| build_document(true, rs)).expect("resources are served")
}

/// The document under `key` built from `resources`: the kept one if they have not changed
/// since it was built.
fn cached(
    key: &str,
    resources: Vec<&Resource>,
    build: impl FnOnce(&[&Resource]) -> Option<Value>,
) -> Option<Arc<Value>> {
    type Docs = Mutex<HashMap<String, (u64, Arc<Value>)>>;
    static DOCS: OnceLock<Docs> = OnceLock::new();
    let docs = DOCS.get_or_init(Default::default);
    let print = fingerprint(resources.iter().copied());
    if let Some((p, doc)) = docs.lock().expect("poisoned").get(key)
        && *p == print
    {
        return Some(doc.clone());
    }
    let doc = Arc::new(build(&resources)?);
    docs.lock()
        .expect("poisoned")
        .insert(key.to_string(), (print, doc.clone()));
    Some(doc)
}

/// Where a field sits in the schema: the struct that has it and its Go type.
#[derive(Debug, PartialEq)]
pub struct SchemaField {
    /// The struct's name, as Go calls it (`DeploymentSpec`).
    pub parent: String,
    /// The field's Go type (`int32`, `[]v1.Container`, `map[string]string`).
    pub go_type: String,
}

/// Follows `path` through the resource's OpenAPI schema to its last field.
pub fn schema_field(r: &Resource, path: &[crate::fieldcheck::Step]) -> Option<SchemaField> {
    use crate::fieldcheck::Step;
    let key = openapi_key(&r.group, &r.version);
    let builtin: Vec<&Resource> = builtin()
        .iter()
        .filter(|b| openapi_key(&b.group, &b.version) == key)
        .collect();
    let doc = cached(&key, builtin, |rs| build_document(false, rs))?;
    let schemas = &doc["components"]["schemas"];
    let name_of = |node: &Value| -> Option<String> {
        let reference = node["$ref"]
            .as_str()
            .or_else(|| node["allOf"][0]["$ref"].as_str())?;
        Some(reference.rsplit('/').next()?.to_string())
    };
    let mut parent = typed::visit(r, SchemaName)?;
    let mut node = &schemas[&parent];
    for step in path {
        if let Some(name) = name_of(node) {
            node = &schemas[&name];
            parent = name;
        }
        node = match step {
            Step::Key(k) if node["properties"].get(k).is_some() => &node["properties"][k],
            Step::Key(_) => node.get("additionalProperties")?,
            Step::Index(_) => node.get("items")?,
        };
    }
    fn go_type(node: &Value, name_of: &dyn Fn(&Value) -> Option<String>) -> String {
        if let Some(name) = name_of(node) {
            let mut parts = name.rsplit('.');
            let ty = parts.next().unwrap_or_default();
            return format!("{}.{ty}", parts.next().unwrap_or_default());
        }
        match (node["type"].as_str(), node["format"].as_str()) {
            (Some("integer"), Some(f)) => f.to_string(),
            (Some("integer"), None) => "int64".into(),
            (Some("number"), _) => "float64".into(),
            (Some("boolean"), _) => "bool".into(),
            (Some("array"), _) => format!("[]{}", go_type(&node["items"], name_of)),
            (Some("object"), _) if node.get("additionalProperties").is_some() => format!(
                "map[string]{}",
                go_type(&node["additionalProperties"], name_of)
            ),
            _ => "string".into(),
        }
    }
    let parent = parent.rsplit('.').next().unwrap_or_default().to_string();
    Some(SchemaField {
        parent,
        go_type: go_type(node, &name_of),
    })
}

/// A resource's schema name (`io.k8s.api.apps.v1.Deployment`).
struct SchemaName;

impl Typed for SchemaName {
    type Out = String;
    fn visit<T: ApiType>(self) -> String {
        T::schema_name().into_owned()
    }
}

/// Adds a resource's schema (and those it refers to) to a generator; answers its name.
struct AddSchema<'a>(&'a mut schemars::SchemaGenerator);

impl Typed for AddSchema<'_> {
    type Out = String;
    fn visit<T: ApiType>(self) -> String {
        self.0.subschema_for::<T>();
        T::schema_name().into_owned()
    }
}

/// A custom resource's schema name, as upstream publishes it: the group reversed, then
/// version and kind (`com.example.stable.v1.CronTab`).
fn custom_name(r: &Resource) -> String {
    let group: Vec<&str> = r.group.rsplit('.').collect();
    format!("{}.{}.{}", group.join("."), r.version, r.kind)
}

/// A custom resource's published schema: its definition's, with `apiVersion`, `kind` and
/// `metadata` (ObjectMeta's schema) added as upstream adds them.
fn custom_schema(r: &Resource, schema: &Value, v2: bool) -> (String, Value) {
    let mut out = schema.clone();
    let meta = if v2 {
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    } else {
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    };
    if let Some(obj) = out.as_object_mut() {
        let props = obj.entry("properties").or_insert_with(|| json!({}));
        if let Some(props) = props.as_object_mut() {
            let text = |what: &str| json!({"type": "string", "description": what});
            props.insert(
                "apiVersion".into(),
                text("The version of the schema the object is written in."),
            );
            props.insert("kind".into(), text("The kind of the object."));
            props.insert(
                "metadata".into(),
                json!({"allOf": [{"$ref": meta}], "description": "The object's metadata."}),
            );
        }
    }
    (custom_name(r), out)
}

/// The paths and schemas of `resources`, as OpenAPI v3 or (`v2`) Swagger 2.0.
fn build_document(v2: bool, resources: &[&Resource]) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    let mut settings = schemars::generate::SchemaSettings::openapi3();
    if v2 {
        settings.definitions_path = "/definitions".into();
    }
    let mut generator = settings.into_generator();
    let mut kinds = Vec::new();
    let mut custom = Vec::new();
    for r in resources {
        let base = if r.group.is_empty() {
            format!("/api/{}", r.version)
        } else {
            format!("/apis/{}/{}", r.group, r.version)
        };
        let item = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{base}/{}/{{name}}", r.plural)
        };
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let params: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation"]
            .iter()
            .map(|name| {
                let ty = json!({"type": "string", "uniqueItems": true});
                if v2 {
                    json!({"name": name, "in": "query", "type": "string", "uniqueItems": true})
                } else {
                    json!({"name": name, "in": "query", "schema": ty})
                }
            })
            .collect();
        let tag = openapi_key(&r.group, &r.version).replace('/', "_");
        let op = |action: &str| {
            json!({
                "tags": [tag],
                "operationId": format!("{action}{}", r.kind),
                "parameters": params,
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        if r.create_only {
            // Only created: the collection path, with POST alone.
            let collection = item.trim_end_matches("/{name}").to_string();
            paths.insert(collection, json!({"post": op("post")}));
        } else {
            paths.insert(item, json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
        }
        if let Some(name) = typed::visit(r, AddSchema(&mut generator)) {
            kinds.push((name, gvk));
        } else if let Some(schema) = &r.schema {
            generator.subschema_for::<ObjectMeta>();
            custom.push(custom_schema(r, &schema.0, v2));
            kinds.push((custom_name(r), gvk));
        }
    }
    if paths.is_empty() {
        return None;
    }
    let mut schemas = generator.take_definitions(true);
    for (name, schema) in custom {
        schemas.insert(name, schema);
    }
    for (name, gvk) in kinds {
        if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
            schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
        }
    }
    let info = json!({"title": "Kubernetes", "version": "v1.33.0"});
    Some(if v2 {
        json!({"swagger": "2.0", "info": info, "paths": paths, "definitions": schemas})
    } else {
        json!({"openapi": "3.0.0", "info": info, "paths": paths, "components": {"schemas": schemas}})
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents() {
        let served = Catalog::new();
        let idx = index(&served);
        assert!(
            idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/apps/v1?hash=")
        );
        let doc = document(&served, "apis/apps/v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(document(&served, "apis/nope/v1").is_none());
        let schema = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            schema["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        let spec = schema["properties"]["spec"].to_string();
        assert!(
            spec.contains("#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"),
            "{spec}"
        );
    }

    #[test]
    fn the_index_hash_changes_with_the_served_resources() {
        let served = Catalog::new();
        let url = |idx: &Value| idx["paths"]["apis/apps/v1"]["serverRelativeURL"].clone();
        let before = url(&index(&served));
        let mut widgets = api::resources::find("apps", "v1", "deployments")
            .unwrap()
            .clone();
        widgets.plural = "widgets".into();
        served.add(widgets);
        assert_ne!(url(&index(&served)), before);
        let doc = document(&served, "apis/apps/v1").unwrap();
        assert!(
            doc["paths"]
                .get("/apis/apps/v1/namespaces/{namespace}/widgets/{name}")
                .is_some()
        );
        served.remove("apps", "v1", "widgets");
        assert_eq!(url(&index(&served)), before);
    }

    #[test]
    fn custom_resources_publish_their_schema() {
        let served = Catalog::new();
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object"}}});
        served.add(Resource {
            group: "stable.example.com".into(),
            version: "v1".into(),
            kind: "CronTab".into(),
            plural: "crontabs".into(),
            namespaced: true,
            schema: Some(api::resources::Schema(Arc::new(schema))),
            ..Resource::default()
        });
        let doc = document(&served, "apis/stable.example.com/v1").unwrap();
        let published = &doc["components"]["schemas"]["com.example.stable.v1.CronTab"];
        assert_eq!(
            published["x-kubernetes-group-version-kind"][0]["kind"],
            "CronTab"
        );
        assert_eq!(published["properties"]["spec"]["type"], "object");
        let meta = published["properties"]["metadata"]["allOf"][0]["$ref"]
            .as_str()
            .unwrap();
        let meta = meta.rsplit('/').next().unwrap();
        assert!(doc["components"]["schemas"].get(meta).is_some(), "{meta}");
        let v2 = v2(&served);
        assert!(
            v2["definitions"]
                .get("com.example.stable.v1.CronTab")
                .is_some()
        );
    }
}
