//! Discovery (legacy and aggregated `apidiscovery.k8s.io/v2`) and the OpenAPI v3 index that
//! kubectl consults before `apply` and `create -f`.

use api::Resource;
use api::resources::{RESOURCES, VERBS, groups};
use serde_json::{Value, json};

use crate::typed::{self, ApiType, Typed};

/// The Content-Type of an aggregated discovery document.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an Accept header asks for aggregated discovery (v2).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

/// The subresources Rudder serves, with the kind and verbs discovery reports for each.
fn subresource_info(r: &Resource, sub: &str) -> Option<(Value, &'static [&'static str])> {
    let same = json!({"group": "", "version": "", "kind": r.kind});
    match sub {
        "status" => Some((same, &["get", "patch", "update"])),
        "scale" => Some((
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
            &["get", "patch", "update"],
        )),
        "binding" => Some((
            json!({"group": "", "version": "", "kind": "Binding"}),
            &["create"],
        )),
        // kubectl drain evicts only when discovery lists this with the policy group.
        "eviction" => Some((
            json!({"group": "policy", "version": "v1", "kind": "Eviction"}),
            &["create"],
        )),
        "finalize" => Some((same, &["update"])),
        "approval" | "ephemeralcontainers" => Some((same, &["get", "patch", "update"])),
        _ => None,
    }
}

fn served_subresources(
    r: &Resource,
) -> impl Iterator<Item = (&'static str, Value, &'static [&'static str])> + '_ {
    r.subresources
        .iter()
        .filter_map(|s| subresource_info(r, s).map(|(kind, verbs)| (*s, kind, verbs)))
}

/// `/api`: the core group's versions.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(name: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs[0]})
}

/// `/apis`: every named group.
pub fn group_list() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_entry(g, &vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`, if the group exists.
pub fn group(name: &str) -> Option<Value> {
    let (g, vs) = groups()
        .into_iter()
        .find(|(g, _)| *g == name && !g.is_empty())?;
    let mut v = group_entry(g, &vs);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Some(v)
}

/// `/api/v1` or `/apis/<group>/<version>`: the legacy APIResourceList.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let rs: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if rs.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for r in rs {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": VERBS,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        out.push(entry);
        for (sub, kind, verbs) in served_subresources(r) {
            let mut e = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind["kind"],
                "verbs": verbs,
            });
            if kind["group"] != "" {
                e["group"] = kind["group"].clone();
                e["version"] = kind["version"].clone();
            }
            out.push(e);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": out}),
    )
}

fn aggregated_group(name: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = RESOURCES
                .iter()
                .filter(|r| r.group == name && r.version == *v)
                .map(|r| {
                    let mut e = json!({
                        "resource": r.plural,
                        "responseKind": {"group": "", "version": "", "kind": r.kind},
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular,
                        "verbs": VERBS,
                    });
                    if !r.short_names.is_empty() {
                        e["shortNames"] = json!(r.short_names);
                    }
                    if !r.categories.is_empty() {
                        e["categories"] = json!(r.categories);
                    }
                    let subs: Vec<Value> = served_subresources(r)
                        .map(|(sub, kind, verbs)| json!({"subresource": sub, "responseKind": kind, "verbs": verbs}))
                        .collect();
                    if !subs.is_empty() {
                        e["subresources"] = json!(subs);
                    }
                    e
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !name.is_empty() {
        metadata["name"] = json!(name);
    }
    json!({"metadata": metadata, "versions": vs})
}

/// The aggregated discovery document for `/api` (core) or `/apis` (named groups).
pub fn aggregated(core: bool) -> Value {
    let items: Vec<Value> = groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, vs)| aggregated_group(g, &vs))
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// The key of a group/version in the OpenAPI v3 index: `api/v1`, `apis/apps/v1`.
fn openapi_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: the index of per-group/version documents.
pub fn openapi_index() -> Value {
    let mut paths = serde_json::Map::new();
    for (g, vs) in groups() {
        for v in vs {
            let key = openapi_key(g, v);
            paths.insert(key.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", env!("CARGO_PKG_VERSION"))}));
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
/// computes those patches from its compiled-in types, not from these schemas. Documents are
/// built once and kept.
pub fn openapi_document(key: &str) -> Option<std::sync::Arc<Value>> {
    static DOCS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Value>>>,
    > = std::sync::OnceLock::new();
    let docs = DOCS.get_or_init(Default::default);
    if let Some(doc) = docs.lock().expect("poisoned").get(key) {
        return Some(doc.clone());
    }
    let doc = std::sync::Arc::new(build_openapi_document(key)?);
    docs.lock()
        .expect("poisoned")
        .insert(key.to_string(), doc.clone());
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
    let doc = openapi_document(&openapi_key(r.group, r.version))?;
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

/// `/openapi/v2`: every served type in one Swagger 2.0 document (JSON), for older clients
/// and tools that still read it. Built once and kept.
pub fn openapi_v2() -> std::sync::Arc<Value> {
    static DOC: std::sync::OnceLock<std::sync::Arc<Value>> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        std::sync::Arc::new(build_document(true, |_| true).expect("resources are served"))
    })
    .clone()
}

fn build_openapi_document(key: &str) -> Option<Value> {
    build_document(false, |r| openapi_key(r.group, r.version) == key)
}

/// The paths and schemas of the resources `keep` selects, as OpenAPI v3 or (`v2`) Swagger 2.0.
fn build_document(v2: bool, keep: impl Fn(&Resource) -> bool) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    let mut settings = schemars::generate::SchemaSettings::openapi3();
    if v2 {
        settings.definitions_path = "/definitions".into();
    }
    let mut generator = settings.into_generator();
    let mut kinds = Vec::new();
    for r in RESOURCES.iter().filter(|r| keep(r)) {
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
        let tag = openapi_key(r.group, r.version).replace('/', "_");
        let op = |action: &str| {
            json!({
                "tags": [tag],
                "operationId": format!("{action}{}", r.kind),
                "parameters": params,
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        paths.insert(item, json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
        if let Some(name) = typed::visit(r, AddSchema(&mut generator)) {
            kinds.push((name, gvk));
        }
    }
    if paths.is_empty() {
        return None;
    }
    let mut schemas = generator.take_definitions(true);
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
    fn accept_headers() {
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated("application/json"));
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        ));
    }

    #[test]
    fn documents() {
        let core = aggregated(true);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        assert!(core["items"][0]["metadata"].get("name").is_none());
        let pods = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap()
            .clone();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["shortNames"], json!(["po"]));
        let apps = resource_list("apps", "v1").unwrap();
        assert!(
            apps["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "deployments/scale" && r["group"] == "autoscaling")
        );
        assert!(resource_list("nope", "v1").is_none());
        assert!(
            group_list()["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["name"] == "apps")
        );
        let idx = openapi_index();
        assert!(
            idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/apps/v1?hash=")
        );
        let doc = openapi_document("apis/apps/v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(openapi_document("apis/nope/v1").is_none());
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
}
