//! Discovery (legacy and aggregated `apidiscovery.k8s.io/v2`) and the OpenAPI v3 index that
//! kubectl consults before `apply` and `create -f`.
//!
//! The discovery documents are typed structs, not `serde_json::Value`s: a `Value` object
//! writes its keys sorted, while clients and upstream's tests read these documents as text
//! in the field order of upstream's Go types (`metav1.APIResourceList` and friends in
//! apimachinery's `pkg/apis/meta/v1/types.go`, `apidiscovery/v2` in `k8s.io/api`). Each
//! struct lists its fields in that order; a field Go marks `omitempty` is skipped when
//! empty, and every other field is always written.

use api::Resource;
use api::resources::{RESOURCES, VERBS, groups};
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Digest as _;

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

/// Go's `omitempty` for a list.
fn is_empty<T>(list: &&[T]) -> bool {
    list.is_empty()
}

/// `metav1.GroupVersionKind`: a subresource's kind, or a response's in aggregated discovery.
/// No field is `omitempty`: the core group is written as `""`.
#[derive(Clone, Copy, Serialize)]
struct Gvk {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
}

/// The subresources Rudder serves, with the kind and verbs discovery reports for each.
fn subresource_info(r: &Resource, sub: &str) -> Option<(Gvk, &'static [&'static str])> {
    let same = Gvk {
        group: "",
        version: "",
        kind: r.kind,
    };
    match sub {
        "status" => Some((same, &["get", "patch", "update"])),
        "scale" => Some((
            Gvk {
                group: "autoscaling",
                version: "v1",
                kind: "Scale",
            },
            &["get", "patch", "update"],
        )),
        "binding" => Some((
            Gvk {
                group: "",
                version: "",
                kind: "Binding",
            },
            &["create"],
        )),
        // kubectl drain evicts only when discovery lists this with the policy group.
        "eviction" => Some((
            Gvk {
                group: "policy",
                version: "v1",
                kind: "Eviction",
            },
            &["create"],
        )),
        "finalize" => Some((same, &["update"])),
        "approval" | "ephemeralcontainers" => Some((same, &["get", "patch", "update"])),
        _ => None,
    }
}

fn served_subresources(
    r: &Resource,
) -> impl Iterator<Item = (&'static str, Gvk, &'static [&'static str])> + '_ {
    r.subresources
        .iter()
        .filter_map(|s| subresource_info(r, s).map(|(kind, verbs)| (*s, kind, verbs)))
}

/// Upstream's `storageVersionHash` of a resource: the first 8 bytes of the SHA-256 of
/// `<group>/<version>/<kind>` of the version it is stored as (`/v1/Pod` for the core group),
/// in standard base64. A resource served over another's storage (events.k8s.io/v1 events
/// are core v1 Events, autoscaling/v1 HPAs are autoscaling/v2 ones) has its storage's hash,
/// so both versions report the same value, as upstream's do.
fn storage_version_hash(r: &Resource) -> String {
    let stored = api::convert::storage_of(r).unwrap_or(r);
    let gvk = format!("{}/{}/{}", stored.group, stored.version, stored.kind);
    let sum = sha2::Sha256::digest(gvk.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&sum.as_slice()[..8])
}

/// `/api`'s document: `metav1.APIVersions`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiVersions {
    // TypeMeta; upstream leaves apiVersion empty here.
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    api_version: &'static str,
    versions: &'static [&'static str],
    #[serde(rename = "serverAddressByClientCIDRs")]
    server_address_by_client_cidrs: Vec<ServerAddressByClientCidr>,
}

/// `metav1.ServerAddressByClientCIDR`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerAddressByClientCidr {
    #[serde(rename = "clientCIDR")]
    client_cidr: &'static str,
    server_address: String,
}

/// `/api`: the core group's versions.
pub fn core_versions(server_address: &str) -> ApiVersions {
    ApiVersions {
        kind: "APIVersions",
        api_version: "",
        versions: &["v1"],
        server_address_by_client_cidrs: vec![ServerAddressByClientCidr {
            client_cidr: "0.0.0.0/0",
            server_address: server_address.to_string(),
        }],
    }
}

/// `/apis`'s document: `metav1.APIGroupList`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroupList {
    kind: &'static str,
    api_version: &'static str,
    groups: Vec<ApiGroup>,
}

/// `/apis/<group>`'s document, and one group of `/apis`: `metav1.APIGroup`.
///
/// Its last field, `serverAddressByClientCIDRs` (`omitempty`), is left out: upstream's
/// aggregator, which serves these paths, does not fill it in either.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroup {
    // TypeMeta: empty (so left out) inside an APIGroupList.
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    api_version: &'static str,
    name: &'static str,
    versions: Vec<GroupVersionForDiscovery>,
    // `omitempty` on a Go struct never omits it.
    preferred_version: GroupVersionForDiscovery,
}

/// `metav1.GroupVersionForDiscovery`.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupVersionForDiscovery {
    group_version: String,
    version: &'static str,
}

fn group_entry(name: &'static str, versions: &[&'static str]) -> ApiGroup {
    let versions: Vec<GroupVersionForDiscovery> = versions
        .iter()
        .map(|&v| GroupVersionForDiscovery {
            group_version: format!("{name}/{v}"),
            version: v,
        })
        .collect();
    ApiGroup {
        kind: "",
        api_version: "",
        name,
        preferred_version: versions[0].clone(),
        versions,
    }
}

/// `/apis`: every named group.
pub fn group_list() -> ApiGroupList {
    let groups = groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_entry(g, &vs))
        .collect();
    ApiGroupList {
        kind: "APIGroupList",
        api_version: "v1",
        groups,
    }
}

/// `/apis/<group>`, if the group exists.
pub fn group(name: &str) -> Option<ApiGroup> {
    let (g, vs) = groups()
        .into_iter()
        .find(|(g, _)| *g == name && !g.is_empty())?;
    Some(ApiGroup {
        kind: "APIGroup",
        api_version: "v1",
        ..group_entry(g, &vs)
    })
}

/// `/api/v1`'s and `/apis/<group>/<version>`'s document: `metav1.APIResourceList`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResourceList {
    kind: &'static str,
    api_version: &'static str,
    group_version: String,
    resources: Vec<ApiResource>,
}

/// `metav1.APIResource`: a resource or (`name` with a `/`) a subresource.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiResource {
    name: String,
    // Not `omitempty`: subresources write `""`.
    singular_name: &'static str,
    namespaced: bool,
    // Set only when a subresource's kind is of another group (deployments/scale).
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    version: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
    #[serde(skip_serializing_if = "is_empty")]
    short_names: &'static [&'static str],
    #[serde(skip_serializing_if = "is_empty")]
    categories: &'static [&'static str],
    // Resources only; subresources leave it empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    storage_version_hash: String,
}

/// The resources served in `group`/`version`, in the resource table's order.
fn served_in<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static Resource> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// `/api/v1` or `/apis/<group>/<version>`: the legacy APIResourceList.
pub fn resource_list(group: &str, version: &str) -> Option<ApiResourceList> {
    let rs: Vec<&Resource> = served_in(group, version).collect();
    if rs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in rs {
        resources.push(ApiResource {
            name: r.plural.to_string(),
            singular_name: r.singular,
            namespaced: r.namespaced,
            group: "",
            version: "",
            kind: r.kind,
            verbs: VERBS,
            short_names: r.short_names,
            categories: r.categories,
            storage_version_hash: storage_version_hash(r),
        });
        for (sub, kind, verbs) in served_subresources(r) {
            resources.push(ApiResource {
                name: format!("{}/{sub}", r.plural),
                singular_name: "",
                namespaced: r.namespaced,
                group: kind.group,
                version: kind.version,
                kind: kind.kind,
                verbs,
                short_names: &[],
                categories: &[],
                storage_version_hash: String::new(),
            });
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(ApiResourceList {
        kind: "APIResourceList",
        api_version: "v1",
        group_version,
        resources,
    })
}

/// The aggregated discovery document: `apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroupDiscoveryList {
    kind: &'static str,
    api_version: &'static str,
    metadata: ListMeta,
    items: Vec<ApiGroupDiscovery>,
}

/// An empty `metav1.ListMeta`: `{}` (each of its fields is `omitempty`).
#[derive(Serialize)]
struct ListMeta {}

/// `APIGroupDiscovery`. Its TypeMeta is empty, so left out.
#[derive(Serialize)]
struct ApiGroupDiscovery {
    metadata: GroupMeta,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    versions: Vec<ApiVersionDiscovery>,
}

/// The `metav1.ObjectMeta` of a group: its name (none for the core group) and the zero
/// creation timestamp, which Go writes as `null`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupMeta {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'static str,
    creation_timestamp: (),
}

/// `APIVersionDiscovery`.
#[derive(Serialize)]
struct ApiVersionDiscovery {
    version: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resources: Vec<ApiResourceDiscovery>,
    #[serde(skip_serializing_if = "str::is_empty")]
    freshness: &'static str,
}

/// `APIResourceDiscovery`. `responseKind` is a Go pointer marked `omitempty`, but upstream
/// always sets it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiResourceDiscovery {
    resource: &'static str,
    response_kind: Gvk,
    scope: &'static str,
    singular_resource: &'static str,
    verbs: &'static [&'static str],
    #[serde(skip_serializing_if = "is_empty")]
    short_names: &'static [&'static str],
    #[serde(skip_serializing_if = "is_empty")]
    categories: &'static [&'static str],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subresources: Vec<ApiSubresourceDiscovery>,
}

/// `APISubresourceDiscovery`. `responseKind` is always set, as upstream does;
/// `acceptedTypes` (`omitempty`) is never set, so left out.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiSubresourceDiscovery {
    subresource: &'static str,
    response_kind: Gvk,
    verbs: &'static [&'static str],
}

fn aggregated_group(name: &'static str, versions: &[&'static str]) -> ApiGroupDiscovery {
    let versions = versions
        .iter()
        .map(|&v| {
            let resources = served_in(name, v)
                .map(|r| ApiResourceDiscovery {
                    resource: r.plural,
                    response_kind: Gvk {
                        group: "",
                        version: "",
                        kind: r.kind,
                    },
                    scope: if r.namespaced {
                        "Namespaced"
                    } else {
                        "Cluster"
                    },
                    singular_resource: r.singular,
                    verbs: VERBS,
                    short_names: r.short_names,
                    categories: r.categories,
                    subresources: served_subresources(r)
                        .map(|(sub, kind, verbs)| ApiSubresourceDiscovery {
                            subresource: sub,
                            response_kind: kind,
                            verbs,
                        })
                        .collect(),
                })
                .collect();
            ApiVersionDiscovery {
                version: v,
                resources,
                freshness: "Current",
            }
        })
        .collect();
    ApiGroupDiscovery {
        metadata: GroupMeta {
            name,
            creation_timestamp: (),
        },
        versions,
    }
}

/// The aggregated discovery document for `/api` (core) or `/apis` (named groups).
pub fn aggregated(core: bool) -> ApiGroupDiscoveryList {
    let items = groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, vs)| aggregated_group(g, &vs))
        .collect();
    ApiGroupDiscoveryList {
        kind: "APIGroupDiscoveryList",
        api_version: "apidiscovery.k8s.io/v2",
        metadata: ListMeta {},
        items,
    }
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
        let core = serde_json::to_value(aggregated(true)).unwrap();
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
        let apps = serde_json::to_value(resource_list("apps", "v1").unwrap()).unwrap();
        assert!(
            apps["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "deployments/scale" && r["group"] == "autoscaling")
        );
        assert!(resource_list("nope", "v1").is_none());
        assert!(
            serde_json::to_value(group_list()).unwrap()["groups"]
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

    const ALL_VERBS: &str =
        r#"["create","delete","deletecollection","get","list","patch","update","watch"]"#;

    /// One entry of an APIResourceList, as text.
    fn entry(list: &ApiResourceList, name: &str) -> String {
        let r = list.resources.iter().find(|r| r.name == name).unwrap();
        serde_json::to_string(r).unwrap()
    }

    #[test]
    fn resource_entries_in_upstream_field_order() {
        let core = resource_list("", "v1").unwrap();
        assert_eq!(
            entry(&core, "pods"),
            format!(
                r#"{{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":{ALL_VERBS},"shortNames":["po"],"categories":["all"],"storageVersionHash":"xPOwRZ+Yhw8="}}"#
            )
        );
        assert_eq!(
            entry(&core, "pods/status"),
            r#"{"name":"pods/status","singularName":"","namespaced":true,"kind":"Pod","verbs":["get","patch","update"]}"#
        );
        assert_eq!(
            entry(&core, "pods/eviction"),
            r#"{"name":"pods/eviction","singularName":"","namespaced":true,"group":"policy","version":"v1","kind":"Eviction","verbs":["create"]}"#
        );
        // No shortNames or categories: both left out.
        assert_eq!(
            entry(&core, "secrets"),
            format!(
                r#"{{"name":"secrets","singularName":"secret","namespaced":true,"kind":"Secret","verbs":{ALL_VERBS},"storageVersionHash":"S6u1pOWzb84="}}"#
            )
        );
        let apps = resource_list("apps", "v1").unwrap();
        assert_eq!(
            entry(&apps, "deployments/scale"),
            r#"{"name":"deployments/scale","singularName":"","namespaced":true,"group":"autoscaling","version":"v1","kind":"Scale","verbs":["get","patch","update"]}"#
        );
    }

    #[test]
    fn legacy_documents_in_upstream_field_order() {
        assert_eq!(
            serde_json::to_string(&core_versions("10.0.0.1:6443")).unwrap(),
            r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"10.0.0.1:6443"}]}"#
        );
        let apps = r#""name":"apps","versions":[{"groupVersion":"apps/v1","version":"v1"}],"preferredVersion":{"groupVersion":"apps/v1","version":"v1"}"#;
        assert_eq!(
            serde_json::to_string(&group("apps").unwrap()).unwrap(),
            format!(r#"{{"kind":"APIGroup","apiVersion":"v1",{apps}}}"#)
        );
        assert!(group("").is_none());
        let list = serde_json::to_string(&group_list()).unwrap();
        let head = format!(r#"{{"kind":"APIGroupList","apiVersion":"v1","groups":[{{{apps}}},"#);
        assert!(list.starts_with(&head), "{list}");
        // The preferred version is the first served: autoscaling/v2 before v1.
        assert!(
            list.contains(r#"{"name":"autoscaling","versions":[{"groupVersion":"autoscaling/v2","version":"v2"},{"groupVersion":"autoscaling/v1","version":"v1"}],"preferredVersion":{"groupVersion":"autoscaling/v2","version":"v2"}}"#),
            "{list}"
        );
        let core = serde_json::to_string(&resource_list("", "v1").unwrap()).unwrap();
        let head = format!(
            r#"{{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"v1","resources":[{{"name":"namespaces","singularName":"namespace","namespaced":false,"kind":"Namespace","verbs":{ALL_VERBS},"shortNames":["ns"],"storageVersionHash":"Q3oi5N2YM8M="}},{{"name":"namespaces/status","#
        );
        assert!(core.starts_with(&head), "{core}");
        let apps = serde_json::to_string(&resource_list("apps", "v1").unwrap()).unwrap();
        assert!(
            apps.starts_with(
                r#"{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"apps/v1","resources":[{"name":"deployments","#
            ),
            "{apps}"
        );
    }

    #[test]
    fn aggregated_documents_in_upstream_field_order() {
        let core = serde_json::to_string(&aggregated(true)).unwrap();
        let ns = r#"{"group":"","version":"","kind":"Namespace"}"#;
        let head = format!(
            r#"{{"kind":"APIGroupDiscoveryList","apiVersion":"apidiscovery.k8s.io/v2","metadata":{{}},"items":[{{"metadata":{{"creationTimestamp":null}},"versions":[{{"version":"v1","resources":[{{"resource":"namespaces","responseKind":{ns},"scope":"Cluster","singularResource":"namespace","verbs":{ALL_VERBS},"shortNames":["ns"],"subresources":[{{"subresource":"status","responseKind":{ns},"verbs":["get","patch","update"]}},{{"subresource":"finalize","responseKind":{ns},"verbs":["update"]}}]}},"#
        );
        assert!(core.starts_with(&head), "{core}");
        assert!(core.ends_with(r#"}],"freshness":"Current"}]}]}"#), "{core}");
        // No storageVersionHash in aggregated discovery: APIResourceDiscovery has none.
        assert!(!core.contains("storageVersionHash"));
        let named = serde_json::to_string(&aggregated(false)).unwrap();
        let head = format!(
            r#"{{"kind":"APIGroupDiscoveryList","apiVersion":"apidiscovery.k8s.io/v2","metadata":{{}},"items":[{{"metadata":{{"name":"apps","creationTimestamp":null}},"versions":[{{"version":"v1","resources":[{{"resource":"deployments","responseKind":{{"group":"","version":"","kind":"Deployment"}},"scope":"Namespaced","singularResource":"deployment","verbs":{ALL_VERBS},"shortNames":["deploy"],"categories":["all"],"subresources":[{{"subresource":"status","responseKind":{{"group":"","version":"","kind":"Deployment"}},"verbs":["get","patch","update"]}},{{"subresource":"scale","responseKind":{{"group":"autoscaling","version":"v1","kind":"Scale"}},"verbs":["get","patch","update"]}}]}},"#
        );
        assert!(named.starts_with(&head), "{named}");
    }

    /// The hashes upstream's API server reports (its `storageversionhashdata` test table).
    #[test]
    fn storage_version_hashes_match_upstream() {
        let upstream = [
            ("v1/configmaps", "qFsyl6wFWjQ="),
            ("v1/endpoints", "fWeeMqaN/OA="),
            ("v1/events", "r2yiGXH7wu8="),
            ("v1/limitranges", "EBKMFVe6cwo="),
            ("v1/namespaces", "Q3oi5N2YM8M="),
            ("v1/nodes", "XwShjMxG9Fs="),
            ("v1/persistentvolumeclaims", "QWTyNDq0dC4="),
            ("v1/persistentvolumes", "HN/zwEC+JgM="),
            ("v1/pods", "xPOwRZ+Yhw8="),
            ("v1/podtemplates", "LIXB2x4IFpk="),
            ("v1/replicationcontrollers", "Jond2If31h0="),
            ("v1/resourcequotas", "8uhSgffRX6w="),
            ("v1/secrets", "S6u1pOWzb84="),
            ("v1/serviceaccounts", "pbx9ZvyFpBE="),
            ("v1/services", "0/CO1lhkEBI="),
            ("apps/v1/controllerrevisions", "85nkx63pcBU="),
            ("apps/v1/daemonsets", "dd7pWHUlMKQ="),
            ("apps/v1/deployments", "8aSe+NMegvE="),
            ("apps/v1/replicasets", "P1RzHs8/mWQ="),
            ("apps/v1/statefulsets", "H+vl74LkKdo="),
            ("batch/v1/jobs", "mudhfqk/qZY="),
            ("batch/v1/cronjobs", "sd5LIXh4Fjs="),
            // Both versions are stored as autoscaling/v2.
            ("autoscaling/v2/horizontalpodautoscalers", "qwQve8ut294="),
            ("autoscaling/v1/horizontalpodautoscalers", "qwQve8ut294="),
            ("policy/v1/poddisruptionbudgets", "EVWiDmWqyJw="),
            ("networking.k8s.io/v1/ingresses", "39NQlfNR+bo="),
            ("networking.k8s.io/v1/ingressclasses", "l/iqIbDgFyQ="),
            ("networking.k8s.io/v1/networkpolicies", "YpfwF18m1G8="),
            ("storage.k8s.io/v1/storageclasses", "K+m6uJwbjGY="),
            ("storage.k8s.io/v1/csidrivers", "hL6j/rwBV5w="),
            ("storage.k8s.io/v1/csinodes", "Pe62DkZtjuo="),
            ("storage.k8s.io/v1/volumeattachments", "tJx/ezt6UDU="),
            ("rbac.authorization.k8s.io/v1/roles", "7FuwZcIIItM="),
            ("rbac.authorization.k8s.io/v1/rolebindings", "eGsCzGH6b1g="),
            ("rbac.authorization.k8s.io/v1/clusterroles", "bYE5ZWDrJ44="),
            (
                "rbac.authorization.k8s.io/v1/clusterrolebindings",
                "48tpQ8gZHFc=",
            ),
            ("coordination.k8s.io/v1/leases", "gqkMMb/YqFM="),
            ("scheduling.k8s.io/v1/priorityclasses", "1QwjyaZjj3Y="),
            ("discovery.k8s.io/v1/endpointslices", "qgS0xkrxYAI="),
            // Stored as core v1 Events.
            ("events.k8s.io/v1/events", "r2yiGXH7wu8="),
            (
                "certificates.k8s.io/v1/certificatesigningrequests",
                "95fRKMXA+00=",
            ),
            ("node.k8s.io/v1/runtimeclasses", "WQTu1GL3T2Q="),
            (
                "admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
                "Sqi0GUgDaX0=",
            ),
            (
                "admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
                "B0wHjQmsGNk=",
            ),
        ];
        for r in RESOURCES {
            let key = format!("{}/{}", r.api_version(), r.plural);
            let want = upstream.iter().find(|(k, _)| *k == key);
            let want = want.unwrap_or_else(|| panic!("no upstream hash listed for {key}"));
            assert_eq!(storage_version_hash(r), want.1, "{key}");
            // The same value in the served list.
            let list = resource_list(r.group, r.version).unwrap();
            let served = list.resources.iter().find(|e| e.name == r.plural).unwrap();
            assert_eq!(served.storage_version_hash, want.1, "{key}");
        }
    }
}
