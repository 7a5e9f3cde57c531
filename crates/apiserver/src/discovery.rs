//! Discovery, legacy and aggregated (`apidiscovery.k8s.io/v2`), of the resources the
//! [`Catalog`] serves now: a resource added at run time shows on the next request.
//!
//! The discovery documents are typed structs, not `serde_json::Value`s: a `Value` object
//! writes its keys sorted, while clients and upstream's tests read these documents as text
//! in the field order of upstream's Go types (`metav1.APIResourceList` and friends in
//! apimachinery's `pkg/apis/meta/v1/types.go`, `apidiscovery/v2` in `k8s.io/api`). Each
//! struct lists its fields in that order; a field Go marks `omitempty` is skipped when
//! empty, and every other field is always written.

use api::Resource;
use api::resources::{Catalog, VERBS};
use base64::Engine as _;
use serde::Serialize;
use sha2::Digest as _;

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

/// `metav1.GroupVersionKind`: a subresource's kind, or a response's in aggregated discovery.
/// No field is `omitempty`: the core group is written as `""`.
#[derive(Clone, Serialize)]
struct Gvk {
    group: String,
    version: String,
    kind: String,
}

impl Gvk {
    /// A kind of the parent's own group and version: both written empty, as upstream's
    /// installer leaves them for a built-in resource and most of its subresources.
    fn local(kind: impl Into<String>) -> Gvk {
        Gvk {
            group: String::new(),
            version: String::new(),
            kind: kind.into(),
        }
    }

    /// A kind of another group (a `scale`'s `autoscaling/v1`, an eviction's `policy/v1`).
    fn of(group: &str, version: &str, kind: &str) -> Gvk {
        Gvk {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
        }
    }
}

/// The verbs of `get`, `update` and `patch` on a subresource (status, scale, ...).
const GET_UPDATE: &[&str] = &["get", "patch", "update"];
/// A streaming connect subresource (exec, attach, port-forward): upstream's connecters take
/// GET and POST, which discovery lists as `create` and `get`.
const CONNECT: &[&str] = &["create", "get"];
/// A proxy subresource: every proxied method discovery has a verb for.
const PROXY: &[&str] = &["create", "delete", "get", "patch", "update"];
/// A custom resource's verbs, in the order upstream's definitions controller lists them.
const CUSTOM_VERBS: &[&str] = &[
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "create",
    "update",
    "watch",
];

/// The subresources Rudder serves, with the kind and verbs upstream's discovery reports for
/// each (the kind its REST storage's `New` returns, the verbs of the methods it serves).
fn subresource_info(r: &Resource, sub: &str) -> Option<(Gvk, &'static [&'static str])> {
    let same = Gvk::local(r.kind.clone());
    Some(match sub {
        "status" | "approval" | "ephemeralcontainers" => (same, GET_UPDATE),
        "scale" => (Gvk::of("autoscaling", "v1", "Scale"), GET_UPDATE),
        "binding" => (Gvk::local("Binding"), &["create"]),
        "token" => (
            Gvk::of("authentication.k8s.io", "v1", "TokenRequest"),
            &["create"],
        ),
        // kubectl drain evicts only when discovery lists this with the policy group.
        "eviction" => (Gvk::of("policy", "v1", "Eviction"), &["create"]),
        "finalize" => (same, &["update"]),
        "log" => (same, &["get"]),
        "exec" => (Gvk::local("PodExecOptions"), CONNECT),
        "attach" => (Gvk::local("PodAttachOptions"), CONNECT),
        "portforward" => (Gvk::local("PodPortForwardOptions"), CONNECT),
        // PodProxyOptions, NodeProxyOptions, ServiceProxyOptions.
        "proxy" => (Gvk::local(format!("{}ProxyOptions", r.kind)), PROXY),
        _ => return None,
    })
}

/// Whether `r` is one of the built-in resources (not a custom resource).
fn built_in(r: &Resource) -> bool {
    api::resources::find(&r.group, &r.version, &r.plural).is_some()
}

/// A resource's kind as aggregated discovery reports it: a built-in resource's with an
/// empty group and version (upstream converts its legacy entries), a custom resource's
/// with its own (upstream's definitions controller fills them in).
fn response_kind(r: &Resource, kind: String) -> Gvk {
    if built_in(r) {
        Gvk::local(kind)
    } else {
        Gvk::of(&r.group, &r.version, &kind)
    }
}

/// The verbs of a resource: every verb, in upstream's order for its kind of resource.
fn verbs_of(r: &Resource) -> &'static [&'static str] {
    match r {
        r if r.create_only => &["create"],
        r if built_in(r) => VERBS,
        _ => CUSTOM_VERBS,
    }
}

/// The subresources discovery lists for `r`, in upstream's order: a built-in resource's
/// sorted by name (upstream installs its storage paths sorted), a custom resource's
/// `status` then `scale` (as upstream's definitions controller appends them).
fn served_subresources(r: &Resource) -> Vec<(&str, Gvk, &'static [&'static str])> {
    let mut subs: Vec<_> = r
        .subresources
        .iter()
        .filter_map(|s| subresource_info(r, s).map(|(kind, verbs)| (s.as_str(), kind, verbs)))
        .collect();
    if built_in(r) {
        subs.sort_by(|a, b| a.0.cmp(b.0));
    } else {
        subs.sort_by_key(|(s, _, _)| *s != "status");
    }
    subs
}

/// Upstream's `storageVersionHash` of a resource: the first 8 bytes of the SHA-256 of
/// `<group>/<version>/<kind>` of the version it is stored as (`/v1/Pod` for the core group),
/// in standard base64. A resource served over another's storage (events.k8s.io/v1 events
/// are core v1 Events, autoscaling/v1 HPAs are autoscaling/v2 ones) has its storage's hash,
/// so both versions report the same value, as upstream's do. A resource that is never
/// stored has none.
fn storage_version_hash(r: &Resource) -> String {
    if r.create_only {
        return String::new();
    }
    let stored = api::convert::storage_of(r).unwrap_or(r);
    // Upstream still encodes CustomResourceDefinitions in etcd as v1beta1; a custom
    // resource's hash names its definition's storage version, whichever version is served.
    let version = match stored.group_plural() {
        ("apiextensions.k8s.io", "customresourcedefinitions") => "v1beta1",
        _ if !stored.stored_version.is_empty() => &stored.stored_version,
        _ => &stored.version,
    };
    let gvk = format!("{}/{version}/{}", stored.group, stored.kind);
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
    name: String,
    versions: Vec<GroupVersionForDiscovery>,
    // `omitempty` on a Go struct never omits it.
    preferred_version: GroupVersionForDiscovery,
}

/// `metav1.GroupVersionForDiscovery`.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupVersionForDiscovery {
    group_version: String,
    version: String,
}

fn group_entry(name: String, versions: Vec<String>) -> ApiGroup {
    let versions: Vec<GroupVersionForDiscovery> = versions
        .into_iter()
        .map(|v| GroupVersionForDiscovery {
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
pub fn group_list(served: &Catalog) -> ApiGroupList {
    let groups = served
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_entry(g, vs))
        .collect();
    ApiGroupList {
        kind: "APIGroupList",
        api_version: "v1",
        groups,
    }
}

/// `/apis/<group>`, if the group exists.
pub fn group(served: &Catalog, name: &str) -> Option<ApiGroup> {
    let (g, vs) = served
        .groups()
        .into_iter()
        .find(|(g, _)| *g == name && !g.is_empty())?;
    Some(ApiGroup {
        kind: "APIGroup",
        api_version: "v1",
        ..group_entry(g, vs)
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
    singular_name: String,
    namespaced: bool,
    // Set only when a subresource's kind is of another group (deployments/scale).
    #[serde(skip_serializing_if = "String::is_empty")]
    group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    version: String,
    kind: String,
    verbs: &'static [&'static str],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    short_names: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    categories: Vec<String>,
    // Resources only; subresources leave it empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    storage_version_hash: String,
}

/// The resources served in `group`/`version`, sorted by name: upstream installs a group
/// version's storage paths in sorted order and lists them in that order. (A resource's
/// name holds only lowercase letters, which sort after `/`, so each resource's subresources
/// follow it directly, as in upstream's sorted list.)
fn served_in(served: &Catalog, group: &str, version: &str) -> Vec<std::sync::Arc<Resource>> {
    let snapshot = served.snapshot();
    let mut list: Vec<_> = snapshot
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .cloned()
        .collect();
    list.sort_by(|a, b| a.plural.cmp(&b.plural));
    list
}

/// The legacy entries of `r`: the resource, then its subresources.
fn legacy_entries(r: &Resource) -> Vec<ApiResource> {
    let mut entries = vec![ApiResource {
        name: r.plural.clone(),
        singular_name: r.singular.clone(),
        namespaced: r.namespaced,
        group: String::new(),
        version: String::new(),
        kind: r.kind.clone(),
        verbs: verbs_of(r),
        short_names: r.short_names.clone(),
        categories: r.categories.clone(),
        storage_version_hash: storage_version_hash(r),
    }];
    for (sub, kind, verbs) in served_subresources(r) {
        entries.push(ApiResource {
            name: format!("{}/{sub}", r.plural),
            singular_name: String::new(),
            namespaced: r.namespaced,
            group: kind.group,
            version: kind.version,
            kind: kind.kind,
            verbs,
            short_names: Vec::new(),
            categories: Vec::new(),
            storage_version_hash: String::new(),
        });
    }
    entries
}

/// `/api/v1` or `/apis/<group>/<version>`: the legacy APIResourceList.
pub fn resource_list(served: &Catalog, group: &str, version: &str) -> Option<ApiResourceList> {
    let rs = served_in(served, group, version);
    if rs.is_empty() {
        return None;
    }
    let resources = rs.iter().flat_map(|r| legacy_entries(r)).collect();
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
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    creation_timestamp: (),
}

/// `APIVersionDiscovery`.
#[derive(Serialize)]
struct ApiVersionDiscovery {
    version: String,
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
    resource: String,
    response_kind: Gvk,
    scope: &'static str,
    singular_resource: String,
    verbs: &'static [&'static str],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    short_names: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    categories: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subresources: Vec<ApiSubresourceDiscovery>,
}

/// `APISubresourceDiscovery`. `responseKind` is always set, as upstream does;
/// `acceptedTypes` (`omitempty`) is never set, so left out.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiSubresourceDiscovery {
    subresource: String,
    response_kind: Gvk,
    verbs: &'static [&'static str],
}

/// One resource of aggregated discovery, its subresources inside it.
fn aggregated_resource(r: &Resource) -> ApiResourceDiscovery {
    let subresources = served_subresources(r)
        .into_iter()
        .map(|(sub, kind, verbs)| ApiSubresourceDiscovery {
            subresource: sub.to_string(),
            response_kind: if kind.group.is_empty() {
                response_kind(r, kind.kind)
            } else {
                kind
            },
            verbs,
        })
        .collect();
    ApiResourceDiscovery {
        resource: r.plural.clone(),
        response_kind: response_kind(r, r.kind.clone()),
        scope: if r.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        },
        singular_resource: r.singular.clone(),
        verbs: verbs_of(r),
        short_names: r.short_names.clone(),
        categories: r.categories.clone(),
        subresources,
    }
}

fn aggregated_group(served: &Catalog, name: String, versions: Vec<String>) -> ApiGroupDiscovery {
    let versions = versions
        .into_iter()
        .map(|v| ApiVersionDiscovery {
            resources: served_in(served, &name, &v)
                .iter()
                .map(|r| aggregated_resource(r))
                .collect(),
            version: v,
            freshness: "Current",
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
pub fn aggregated(served: &Catalog, core: bool) -> ApiGroupDiscoveryList {
    let items = served
        .groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, vs)| aggregated_group(served, g, vs))
        .collect();
    ApiGroupDiscoveryList {
        kind: "APIGroupDiscoveryList",
        api_version: "apidiscovery.k8s.io/v2",
        metadata: ListMeta {},
        items,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        Catalog::new()
    }

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
        let core = serde_json::to_value(aggregated(&catalog(), true)).unwrap();
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
        let apps = serde_json::to_value(resource_list(&catalog(), "apps", "v1").unwrap()).unwrap();
        assert!(
            apps["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "deployments/scale" && r["group"] == "autoscaling")
        );
        assert!(resource_list(&catalog(), "nope", "v1").is_none());
        assert!(
            serde_json::to_value(group_list(&catalog())).unwrap()["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["name"] == "apps")
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
        let core = resource_list(&catalog(), "", "v1").unwrap();
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
        let apps = resource_list(&catalog(), "apps", "v1").unwrap();
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
            serde_json::to_string(&group(&catalog(), "apps").unwrap()).unwrap(),
            format!(r#"{{"kind":"APIGroup","apiVersion":"v1",{apps}}}"#)
        );
        assert!(group(&catalog(), "").is_none());
        let list = serde_json::to_string(&group_list(&catalog())).unwrap();
        let head = format!(r#"{{"kind":"APIGroupList","apiVersion":"v1","groups":[{{{apps}}},"#);
        assert!(list.starts_with(&head), "{list}");
        // The preferred version is the first served: autoscaling/v2 before v1.
        assert!(
            list.contains(r#"{"name":"autoscaling","versions":[{"groupVersion":"autoscaling/v2","version":"v2"},{"groupVersion":"autoscaling/v1","version":"v1"}],"preferredVersion":{"groupVersion":"autoscaling/v2","version":"v2"}}"#),
            "{list}"
        );
        let core = serde_json::to_string(&resource_list(&catalog(), "", "v1").unwrap()).unwrap();
        let head = format!(
            r#"{{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"v1","resources":[{{"name":"configmaps","singularName":"configmap","namespaced":true,"kind":"ConfigMap","verbs":{ALL_VERBS},"shortNames":["cm"],"storageVersionHash":"qFsyl6wFWjQ="}},{{"name":"endpoints","#
        );
        assert!(core.starts_with(&head), "{core}");
        let apps =
            serde_json::to_string(&resource_list(&catalog(), "apps", "v1").unwrap()).unwrap();
        assert!(
            apps.starts_with(
                r#"{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"apps/v1","resources":[{"name":"controllerrevisions","#
            ),
            "{apps}"
        );
    }

    /// The names of an APIResourceList, in order.
    fn names(group: &str, version: &str) -> Vec<String> {
        let list = resource_list(&catalog(), group, version).unwrap();
        list.resources.into_iter().map(|r| r.name).collect()
    }

    #[test]
    fn resources_are_listed_sorted_with_their_subresources_as_upstream() {
        assert_eq!(
            names("", "v1"),
            [
                "configmaps",
                "endpoints",
                "events",
                "limitranges",
                "namespaces",
                "namespaces/finalize",
                "namespaces/status",
                "nodes",
                "nodes/proxy",
                "nodes/status",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "persistentvolumes",
                "persistentvolumes/status",
                "pods",
                "pods/attach",
                "pods/binding",
                "pods/ephemeralcontainers",
                "pods/eviction",
                "pods/exec",
                "pods/log",
                "pods/portforward",
                "pods/proxy",
                "pods/status",
                "podtemplates",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
                "secrets",
                "serviceaccounts",
                "serviceaccounts/token",
                "services",
                "services/proxy",
                "services/status",
            ]
        );
        assert_eq!(
            names("apps", "v1"),
            [
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ]
        );
    }

    #[test]
    fn connect_subresources_have_upstream_kinds_and_verbs() {
        let core = resource_list(&catalog(), "", "v1").unwrap();
        let connect = r#""verbs":["create","get"]}"#;
        let proxy = r#""verbs":["create","delete","get","patch","update"]}"#;
        for (name, kind, verbs) in [
            ("pods/attach", "PodAttachOptions", connect),
            ("pods/exec", "PodExecOptions", connect),
            ("pods/portforward", "PodPortForwardOptions", connect),
            ("pods/log", "Pod", r#""verbs":["get"]}"#),
            ("pods/proxy", "PodProxyOptions", proxy),
            ("nodes/proxy", "NodeProxyOptions", proxy),
            ("services/proxy", "ServiceProxyOptions", proxy),
        ] {
            let text = entry(&core, name);
            assert!(
                text.ends_with(&format!(r#""kind":"{kind}",{verbs}"#)),
                "{text}"
            );
        }
    }

    #[test]
    fn aggregated_documents_in_upstream_field_order() {
        let core = serde_json::to_string(&aggregated(&catalog(), true)).unwrap();
        let ns = r#"{"group":"","version":"","kind":"Namespace"}"#;
        let head = r#"{"kind":"APIGroupDiscoveryList","apiVersion":"apidiscovery.k8s.io/v2","metadata":{},"items":[{"metadata":{"creationTimestamp":null},"versions":[{"version":"v1","resources":[{"resource":"configmaps","#;
        assert!(core.starts_with(head), "{core}");
        let namespaces = format!(
            r#"{{"resource":"namespaces","responseKind":{ns},"scope":"Cluster","singularResource":"namespace","verbs":{ALL_VERBS},"shortNames":["ns"],"subresources":[{{"subresource":"finalize","responseKind":{ns},"verbs":["update"]}},{{"subresource":"status","responseKind":{ns},"verbs":["get","patch","update"]}}]}},"#
        );
        assert!(core.contains(&namespaces), "{core}");
        assert!(core.ends_with(r#"}],"freshness":"Current"}]}]}"#), "{core}");
        // No storageVersionHash in aggregated discovery: APIResourceDiscovery has none.
        assert!(!core.contains("storageVersionHash"));
        let named = serde_json::to_string(&aggregated(&catalog(), false)).unwrap();
        let head = r#"{"kind":"APIGroupDiscoveryList","apiVersion":"apidiscovery.k8s.io/v2","metadata":{},"items":[{"metadata":{"name":"apps","creationTimestamp":null},"versions":[{"version":"v1","resources":[{"resource":"controllerrevisions","#;
        assert!(named.starts_with(head), "{named}");
        let deployments = format!(
            r#"{{"resource":"deployments","responseKind":{{"group":"","version":"","kind":"Deployment"}},"scope":"Namespaced","singularResource":"deployment","verbs":{ALL_VERBS},"shortNames":["deploy"],"categories":["all"],"subresources":[{{"subresource":"scale","responseKind":{{"group":"autoscaling","version":"v1","kind":"Scale"}},"verbs":["get","patch","update"]}},{{"subresource":"status","responseKind":{{"group":"","version":"","kind":"Deployment"}},"verbs":["get","patch","update"]}}]}},"#
        );
        assert!(named.contains(&deployments), "{named}");
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
            (
                "flowcontrol.apiserver.k8s.io/v1/flowschemas",
                "GJVAJZSZBIw=",
            ),
            (
                "flowcontrol.apiserver.k8s.io/v1/prioritylevelconfigurations",
                "Kir5PVfvNeI=",
            ),
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
            (
                "apiextensions.k8s.io/v1/customresourcedefinitions",
                "jfWCUB31mvA=",
            ),
            // Never stored: no hash.
            ("authentication.k8s.io/v1/tokenreviews", ""),
            ("authentication.k8s.io/v1/selfsubjectreviews", ""),
            ("authorization.k8s.io/v1/selfsubjectrulesreviews", ""),
            ("authorization.k8s.io/v1/selfsubjectaccessreviews", ""),
            ("authorization.k8s.io/v1/subjectaccessreviews", ""),
            ("authorization.k8s.io/v1/localsubjectaccessreviews", ""),
        ];
        for r in api::resources::builtin() {
            let key = format!("{}/{}", r.api_version(), r.plural);
            let want = upstream.iter().find(|(k, _)| *k == key);
            let want = want.unwrap_or_else(|| panic!("no upstream hash listed for {key}"));
            assert_eq!(storage_version_hash(r), want.1, "{key}");
            // The same value in the served list.
            let list = resource_list(&catalog(), &r.group, &r.version).unwrap();
            let served = list.resources.iter().find(|e| e.name == r.plural).unwrap();
            assert_eq!(served.storage_version_hash, want.1, "{key}");
        }
    }

    #[test]
    fn a_resource_added_at_run_time_is_discovered_until_removed() {
        let served = catalog();
        let mut widgets = api::resources::find("apps", "v1", "deployments")
            .unwrap()
            .clone();
        (
            widgets.group,
            widgets.kind,
            widgets.plural,
            widgets.singular,
        ) = (
            "example.com".into(),
            "Widget".into(),
            "widgets".into(),
            "widget".into(),
        );
        widgets.stored_version = "v2".into();
        served.add(widgets);
        let list = resource_list(&served, "example.com", "v1").unwrap();
        // Upstream's definitions controller: its verb order, the status before the scale,
        // the hash of the storage version (sha256 of "example.com/v2/Widget").
        assert_eq!(
            entry(&list, "widgets"),
            r#"{"name":"widgets","singularName":"widget","namespaced":true,"kind":"Widget","verbs":["delete","deletecollection","get","list","patch","create","update","watch"],"shortNames":["deploy"],"categories":["all"],"storageVersionHash":"zRcoV5EeA3s="}"#
        );
        let names: Vec<&str> = list.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["widgets", "widgets/status", "widgets/scale"]);
        assert!(entry(&list, "widgets/scale").contains(r#""kind":"Scale""#));
        let widget = aggregated_resource(&served.find("example.com", "v1", "widgets").unwrap());
        let text = serde_json::to_string(&widget).unwrap();
        let own = r#"{"group":"example.com","version":"v1","kind":"Widget"}"#;
        assert!(text.starts_with(&format!(r#"{{"resource":"widgets","responseKind":{own},"#)));
        assert!(text.contains(&format!(
            r#"{{"subresource":"status","responseKind":{own},"#
        )));
        assert!(group(&served, "example.com").is_some());
        let named = serde_json::to_value(aggregated(&served, false)).unwrap();
        let last = named["items"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["metadata"]["name"], "example.com");
        served.remove("example.com", "v1", "widgets");
        assert!(resource_list(&served, "example.com", "v1").is_none());
        assert!(group(&served, "example.com").is_none());
    }
}
