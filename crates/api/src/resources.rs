//! The resources Rudder serves: the built-in table, upstream's names and shapes, and the
//! [`Catalog`] of what is served right now, which grows and shrinks at run time (custom
//! resources and aggregated APIs add entries; removing them stops serving them).
//!
//! Each [`Resource`] says where it lives in the API (group, version, plural), how it is
//! addressed (namespaced or cluster-wide), what discovery shows for it (short names,
//! categories, verbs, subresources), where it is stored (upstream's etcd key prefixes, so
//! `etcdctl` users find objects where they expect), which fields a field selector may use,
//! and where its `scale` subresource reads and writes replicas.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock, RwLock};

use serde_json::Value;

/// One resource of the API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Resource {
    /// API group; "" for the core group.
    pub group: String,
    /// API version within the group.
    pub version: String,
    /// The object kind.
    pub kind: String,
    /// The plural resource name used in URLs.
    pub plural: String,
    /// The singular name.
    pub singular: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names kubectl accepts.
    pub short_names: Vec<String>,
    /// Categories, such as `all`.
    pub categories: Vec<String>,
    /// Subresources served under `<plural>/<name>/`.
    pub subresources: Vec<String>,
    /// The key prefix under `/registry/` (upstream's, e.g. `minions` for nodes).
    pub storage: String,
    /// The version a custom resource's objects are stored as (its definition's storage
    /// version), which discovery's `storageVersionHash` names; empty for a built-in one.
    pub stored_version: String,
    /// Fields a field selector may use besides `metadata.name` and `metadata.namespace`.
    pub fields: Vec<String>,
    /// Where the `scale` subresource finds replicas, for resources that have one.
    pub scale: Option<ScalePaths>,
    /// A custom resource's schema, from its definition: what its objects are pruned to,
    /// defaulted by and validated against.
    pub schema: Option<Schema>,
    /// A custom resource's `additionalPrinterColumns`, shown after its name by `kubectl get`.
    pub columns: Vec<PrinterColumn>,
    /// A resource that is only created and never stored (the access and token reviews): a
    /// create is answered by computing its status.
    pub create_only: bool,
}

/// One of a custom resource's `additionalPrinterColumns`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PrinterColumn {
    /// The header.
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub kind: String,
    /// A format hint (`name`, `int32`, ...), passed on to clients.
    pub format: String,
    /// What the column shows, passed on to clients.
    pub description: String,
    /// 0 for the default view, more for `-o wide` only.
    pub priority: u8,
    /// Where in the object the cell comes from, a JSONPath such as `.status.replicas`.
    pub json_path: String,
}

/// A custom resource version's OpenAPI v3 schema (`schema.openAPIV3Schema`), shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema(pub Arc<Value>);

impl Hash for Schema {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.to_string().hash(h);
    }
}

/// Where a resource keeps what its `scale` subresource shows: paths in upstream's
/// `.spec.replicas` form, as a CustomResourceDefinition's `subresources.scale` names them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScalePaths {
    /// The desired replicas, written by a scale update.
    pub spec_replicas: String,
    /// The observed replicas.
    pub status_replicas: String,
    /// The pods' label selector: a string in selector syntax, or (for the built-in
    /// workloads) a label selector object rendered to that syntax.
    pub label_selector: Option<String>,
}

impl ScalePaths {
    /// The paths of the built-in workloads: `.spec.replicas`, `.status.replicas` and the
    /// selector in `.spec.selector`.
    pub fn workload() -> ScalePaths {
        ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: Some(".spec.selector".into()),
        }
    }
}

/// The verbs every resource supports.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl Resource {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The resource name qualified by its group, as errors print it: `pods`,
    /// `deployments.apps`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The group and plural, to match a resource on: `("apps", "deployments")`.
    pub fn group_plural(&self) -> (&str, &str) {
        (&self.group, &self.plural)
    }

    /// The kind of the list type, e.g. `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{ns}/{name}", self.storage),
            _ => format!("/registry/{}/{name}", self.storage),
        }
    }

    /// The storage prefix of all objects, or of those in one namespace.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{ns}/", self.storage),
            _ => format!("/registry/{}/", self.storage),
        }
    }

    /// Whether a field selector may use `field` on this resource.
    pub fn selectable(&self, field: &str) -> bool {
        field == "metadata.name"
            || (field == "metadata.namespace" && self.namespaced)
            || self.fields.iter().any(|f| f == field)
    }

    /// Whether `<plural>/<name>/<sub>` is served.
    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.iter().any(|s| s == sub)
    }
}

const ALL: &[&str] = &["all"];
const API_EXTENSIONS: &[&str] = &["api-extensions"];
const NONE: &[&str] = &[];
const STATUS: &[&str] = &["status"];
const STATUS_SCALE: &[&str] = &["status", "scale"];
const STATUS_PROXY: &[&str] = &["status", "proxy"];

macro_rules! resources {
    ($($group:literal $version:literal $kind:literal $plural:literal $singular:literal
       $namespaced:literal [$($short:literal),*] $categories:ident $subresources:expr,
       $storage:literal [$($field:literal),*];)*) => {
        /// Every built-in resource, in discovery order.
        static BUILTIN: LazyLock<Vec<Resource>> = LazyLock::new(|| vec![$(built_in(Resource {
            group: $group.into(),
            version: $version.into(),
            kind: $kind.into(),
            plural: $plural.into(),
            singular: $singular.into(),
            namespaced: $namespaced,
            short_names: strings(&[$($short),*]),
            categories: strings($categories),
            subresources: strings($subresources),
            storage: $storage.into(),
            stored_version: String::new(),
            fields: strings(&[$($field),*]),
            scale: None,
            schema: None,
            columns: Vec::new(),
            create_only: false,
        })),*]);
    };
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The built-in resources that are only created, never stored.
const CREATE_ONLY: &[(&str, &str)] = &[
    ("authentication.k8s.io", "tokenreviews"),
    ("authentication.k8s.io", "selfsubjectreviews"),
    ("authorization.k8s.io", "subjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "localsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
];

/// A built-in resource with a `scale` subresource keeps its replicas where workloads do.
fn built_in(mut r: Resource) -> Resource {
    if r.has_subresource("scale") {
        r.scale = Some(ScalePaths::workload());
    }
    r.create_only = CREATE_ONLY.contains(&(r.group.as_str(), r.plural.as_str()));
    r
}

resources! {
    "" "v1" "Namespace" "namespaces" "namespace" false ["ns"] NONE &["status", "finalize"], "namespaces" ["status.phase"];
    "" "v1" "Pod" "pods" "pod" true ["po"] ALL &["status", "binding", "eviction", "log", "exec", "attach", "portforward", "proxy", "ephemeralcontainers"], "pods"
        ["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"];
    "" "v1" "Service" "services" "service" true ["svc"] ALL STATUS_PROXY, "services/specs" [];
    "" "v1" "Endpoints" "endpoints" "endpoints" true ["ep"] NONE &[], "services/endpoints" [];
    "" "v1" "ConfigMap" "configmaps" "configmap" true ["cm"] NONE &[], "configmaps" [];
    "" "v1" "Secret" "secrets" "secret" true [] NONE &[], "secrets" ["type"];
    "" "v1" "ServiceAccount" "serviceaccounts" "serviceaccount" true ["sa"] NONE &["token"], "serviceaccounts" [];
    "" "v1" "Node" "nodes" "node" false ["no"] NONE STATUS_PROXY, "minions" ["spec.unschedulable"];
    "" "v1" "Event" "events" "event" true ["ev"] NONE &[], "events"
        ["involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"];
    "" "v1" "LimitRange" "limitranges" "limitrange" true ["limits"] NONE &[], "limitranges" [];
    "" "v1" "ResourceQuota" "resourcequotas" "resourcequota" true ["quota"] NONE STATUS, "resourcequotas" [];
    "" "v1" "PersistentVolume" "persistentvolumes" "persistentvolume" false ["pv"] NONE STATUS, "persistentvolumes" [];
    "" "v1" "PersistentVolumeClaim" "persistentvolumeclaims" "persistentvolumeclaim" true ["pvc"] NONE STATUS, "persistentvolumeclaims" [];
    "" "v1" "ReplicationController" "replicationcontrollers" "replicationcontroller" true ["rc"] ALL STATUS_SCALE, "controllers" ["status.replicas"];
    "" "v1" "PodTemplate" "podtemplates" "podtemplate" true [] NONE &[], "podtemplates" [];
    "apps" "v1" "Deployment" "deployments" "deployment" true ["deploy"] ALL STATUS_SCALE, "deployments" [];
    "apps" "v1" "ReplicaSet" "replicasets" "replicaset" true ["rs"] ALL STATUS_SCALE, "replicasets" ["status.replicas"];
    "apps" "v1" "StatefulSet" "statefulsets" "statefulset" true ["sts"] ALL STATUS_SCALE, "statefulsets" [];
    "apps" "v1" "DaemonSet" "daemonsets" "daemonset" true ["ds"] ALL STATUS, "daemonsets" [];
    "apps" "v1" "ControllerRevision" "controllerrevisions" "controllerrevision" true [] NONE &[], "controllerrevisions" [];
    "batch" "v1" "Job" "jobs" "job" true [] ALL STATUS, "jobs" ["status.successful"];
    "batch" "v1" "CronJob" "cronjobs" "cronjob" true ["cj"] ALL STATUS, "cronjobs" [];
    "autoscaling" "v2" "HorizontalPodAutoscaler" "horizontalpodautoscalers" "horizontalpodautoscaler" true ["hpa"] ALL STATUS, "horizontalpodautoscalers" [];
    "autoscaling" "v1" "HorizontalPodAutoscaler" "horizontalpodautoscalers" "horizontalpodautoscaler" true ["hpa"] ALL STATUS, "horizontalpodautoscalers" [];
    "policy" "v1" "PodDisruptionBudget" "poddisruptionbudgets" "poddisruptionbudget" true ["pdb"] NONE STATUS, "poddisruptionbudgets" [];
    "networking.k8s.io" "v1" "Ingress" "ingresses" "ingress" true ["ing"] NONE STATUS, "ingress" [];
    "networking.k8s.io" "v1" "IngressClass" "ingressclasses" "ingressclass" false [] NONE &[], "ingressclasses" [];
    "networking.k8s.io" "v1" "NetworkPolicy" "networkpolicies" "networkpolicy" true ["netpol"] NONE &[], "networkpolicies" [];
    "storage.k8s.io" "v1" "StorageClass" "storageclasses" "storageclass" false ["sc"] NONE &[], "storageclasses" [];
    "storage.k8s.io" "v1" "CSIDriver" "csidrivers" "csidriver" false [] NONE &[], "csidrivers" [];
    "storage.k8s.io" "v1" "CSINode" "csinodes" "csinode" false [] NONE &[], "csinodes" [];
    "storage.k8s.io" "v1" "VolumeAttachment" "volumeattachments" "volumeattachment" false [] NONE STATUS, "volumeattachments" [];
    "authentication.k8s.io" "v1" "TokenReview" "tokenreviews" "tokenreview" false [] NONE &[], "" [];
    "authentication.k8s.io" "v1" "SelfSubjectReview" "selfsubjectreviews" "selfsubjectreview" false [] NONE &[], "" [];
    "authorization.k8s.io" "v1" "SelfSubjectRulesReview" "selfsubjectrulesreviews" "selfsubjectrulesreview" false [] NONE &[], "" [];
    "authorization.k8s.io" "v1" "SelfSubjectAccessReview" "selfsubjectaccessreviews" "selfsubjectaccessreview" false [] NONE &[], "" [];
    "authorization.k8s.io" "v1" "SubjectAccessReview" "subjectaccessreviews" "subjectaccessreview" false [] NONE &[], "" [];
    "authorization.k8s.io" "v1" "LocalSubjectAccessReview" "localsubjectaccessreviews" "localsubjectaccessreview" true [] NONE &[], "" [];
    "rbac.authorization.k8s.io" "v1" "Role" "roles" "role" true [] NONE &[], "roles" [];
    "rbac.authorization.k8s.io" "v1" "RoleBinding" "rolebindings" "rolebinding" true [] NONE &[], "rolebindings" [];
    "rbac.authorization.k8s.io" "v1" "ClusterRole" "clusterroles" "clusterrole" false [] NONE &[], "clusterroles" [];
    "rbac.authorization.k8s.io" "v1" "ClusterRoleBinding" "clusterrolebindings" "clusterrolebinding" false [] NONE &[], "clusterrolebindings" [];
    "coordination.k8s.io" "v1" "Lease" "leases" "lease" true [] NONE &[], "leases" [];
    "flowcontrol.apiserver.k8s.io" "v1" "FlowSchema" "flowschemas" "flowschema" false [] NONE STATUS, "flowschemas" [];
    "flowcontrol.apiserver.k8s.io" "v1" "PriorityLevelConfiguration" "prioritylevelconfigurations" "prioritylevelconfiguration" false [] NONE STATUS, "prioritylevelconfigurations" [];
    "scheduling.k8s.io" "v1" "PriorityClass" "priorityclasses" "priorityclass" false ["pc"] NONE &[], "priorityclasses" [];
    "discovery.k8s.io" "v1" "EndpointSlice" "endpointslices" "endpointslice" true [] NONE &[], "endpointslices" [];
    "events.k8s.io" "v1" "Event" "events" "event" true ["ev"] NONE &[], "events"
        ["regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid", "regarding.apiVersion", "regarding.resourceVersion", "regarding.fieldPath", "reason", "reportingController", "source", "type"];
    "certificates.k8s.io" "v1" "CertificateSigningRequest" "certificatesigningrequests" "certificatesigningrequest" false ["csr"] NONE &["status", "approval"], "certificatesigningrequests" ["spec.signerName"];
    "node.k8s.io" "v1" "RuntimeClass" "runtimeclasses" "runtimeclass" false [] NONE &[], "runtimeclasses" [];
    "admissionregistration.k8s.io" "v1" "MutatingWebhookConfiguration" "mutatingwebhookconfigurations" "mutatingwebhookconfiguration" false [] NONE &[], "mutatingwebhookconfigurations" [];
    "admissionregistration.k8s.io" "v1" "ValidatingWebhookConfiguration" "validatingwebhookconfigurations" "validatingwebhookconfiguration" false [] NONE &[], "validatingwebhookconfigurations" [];
    "apiextensions.k8s.io" "v1" "CustomResourceDefinition" "customresourcedefinitions" "customresourcedefinition" false ["crd", "crds"] API_EXTENSIONS STATUS, "apiextensions.k8s.io/customresourcedefinitions" [];
}

/// Every built-in resource, in discovery order.
pub fn builtin() -> &'static [Resource] {
    &BUILTIN
}

/// The built-in resource at `group/version` under `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    BUILTIN
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resources served right now: the built-in ones, then those added at run time, in the
/// order they were added. Readers take a snapshot; a change replaces it whole, so a request
/// sees one consistent list.
#[derive(Debug)]
pub struct Catalog {
    served: RwLock<Arc<Vec<Arc<Resource>>>>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::new()
    }
}

impl Catalog {
    /// A catalog of the built-in resources.
    pub fn new() -> Catalog {
        let served = builtin().iter().cloned().map(Arc::new).collect();
        Catalog {
            served: RwLock::new(Arc::new(served)),
        }
    }

    /// What is served now.
    pub fn snapshot(&self) -> Arc<Vec<Arc<Resource>>> {
        self.served.read().expect("catalog lock").clone()
    }

    /// The resource served at `group/version` under `plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Resource>> {
        self.snapshot()
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// Serves `r`, replacing what was served at its group, version and plural.
    pub fn add(&self, r: Resource) {
        self.change(|list| {
            list.retain(|o| !same_place(o, &r));
            list.push(Arc::new(r));
        });
    }

    /// Stops serving `group/version` `plural`; whether it was served.
    pub fn remove(&self, group: &str, version: &str, plural: &str) -> bool {
        let mut removed = false;
        self.change(|list| {
            let before = list.len();
            list.retain(|o| !(o.group == group && o.version == version && o.plural == plural));
            removed = list.len() != before;
        });
        removed
    }

    /// The groups in discovery order, each with its versions in the order first served.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        groups_of(self.snapshot().iter().map(|r| &**r))
    }

    fn change(&self, edit: impl FnOnce(&mut Vec<Arc<Resource>>)) {
        let mut served = self.served.write().expect("catalog lock");
        let mut list = Vec::clone(&served);
        edit(&mut list);
        *served = Arc::new(list);
    }
}

fn same_place(a: &Resource, b: &Resource) -> bool {
    (&a.group, &a.version, &a.plural) == (&b.group, &b.version, &b.plural)
}

/// The groups of `resources` in the order first seen, each with its versions.
fn groups_of<'a>(resources: impl Iterator<Item = &'a Resource>) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for r in resources {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => {
                versions.push(r.version.clone())
            }
            Some(_) => {}
            None => out.push((r.group.clone(), vec![r.version.clone()])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_upstream_layout() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/pods/default/web"
        );
        assert_eq!(pods.prefix(None), "/registry/pods/");
        let nodes = find("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(None, "n1"), "/registry/minions/n1");
        let deploy = find("apps", "v1", "deployments").unwrap();
        assert_eq!(deploy.qualified(), "deployments.apps");
        assert_eq!(deploy.api_version(), "apps/v1");
    }

    #[test]
    fn every_resource_is_unique_and_named_consistently() {
        let all = builtin();
        for (i, a) in all.iter().enumerate() {
            assert!(
                a.plural.chars().all(|c| c.is_ascii_lowercase()),
                "{}",
                a.plural
            );
            assert_eq!(a.singular, a.kind.to_ascii_lowercase(), "{}", a.plural);
            for b in &all[i + 1..] {
                assert!(
                    (a.group.as_str(), a.version.as_str(), a.plural.as_str())
                        != (b.group.as_str(), b.version.as_str(), b.plural.as_str()),
                    "{} listed twice",
                    a.plural
                );
            }
        }
        assert_eq!(
            Catalog::new().groups()[0],
            (String::new(), vec!["v1".into()])
        );
    }

    #[test]
    fn the_catalog_replaces_and_removes_entries() {
        let served = Catalog::new();
        let mut crons = find("batch", "v1", "cronjobs").unwrap().clone();
        crons.group = "example.com".into();
        served.add(crons.clone());
        crons.short_names = vec!["cr".into()];
        served.add(crons.clone());
        let found = served.find("example.com", "v1", "cronjobs").unwrap();
        assert_eq!(found.short_names, ["cr"]);
        assert_eq!(served.snapshot().len(), builtin().len() + 1);
        let groups = served.groups();
        assert_eq!(
            groups.last().unwrap(),
            &("example.com".into(), vec!["v1".into()])
        );
        assert!(served.remove("example.com", "v1", "cronjobs"));
        assert!(!served.remove("example.com", "v1", "cronjobs"));
        assert_eq!(served.snapshot().len(), builtin().len());
    }

    #[test]
    fn workloads_scale_where_upstream_keeps_replicas() {
        let deploy = find("apps", "v1", "deployments").unwrap();
        assert_eq!(deploy.scale, Some(ScalePaths::workload()));
        assert_eq!(find("apps", "v1", "daemonsets").unwrap().scale, None);
    }

    #[test]
    fn field_selectors_know_upstream_fields() {
        let pods = find("", "v1", "pods").unwrap();
        assert!(pods.selectable("spec.nodeName"));
        assert!(pods.selectable("metadata.namespace"));
        assert!(!pods.selectable("spec.containers"));
        let ns = find("", "v1", "namespaces").unwrap();
        assert!(!ns.selectable("metadata.namespace"));
    }
}
