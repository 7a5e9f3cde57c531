//! The built-in resources Rudder serves: one static table, upstream's names and shapes.
//!
//! Each [`Resource`] says where it lives in the API (group, version, plural), how it is
//! addressed (namespaced or cluster-wide), what discovery shows for it (short names,
//! categories, verbs, subresources), where it is stored (upstream's etcd key prefixes, so
//! `etcdctl` users find objects where they expect), and which fields a field selector may use.

/// One resource of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// API group; "" for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// The object kind.
    pub kind: &'static str,
    /// The plural resource name used in URLs.
    pub plural: &'static str,
    /// The singular name.
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names kubectl accepts.
    pub short_names: &'static [&'static str],
    /// Categories, such as `all`.
    pub categories: &'static [&'static str],
    /// Subresources served under `<plural>/<name>/`.
    pub subresources: &'static [&'static str],
    /// The key prefix under `/registry/` (upstream's, e.g. `minions` for nodes).
    pub storage: &'static str,
    /// Fields a field selector may use besides `metadata.name` and `metadata.namespace`.
    pub fields: &'static [&'static str],
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
            || self.fields.contains(&field)
    }
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];
const STATUS: &[&str] = &["status"];
const STATUS_SCALE: &[&str] = &["status", "scale"];
const STATUS_PROXY: &[&str] = &["status", "proxy"];

macro_rules! resources {
    ($($group:literal $version:literal $kind:literal $plural:literal $singular:literal
       $namespaced:literal [$($short:literal),*] $categories:ident $subresources:expr,
       $storage:literal [$($field:literal),*];)*) => {
        /// Every built-in resource, in discovery order.
        pub static RESOURCES: &[Resource] = &[$(Resource {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $namespaced,
            short_names: &[$($short),*],
            categories: $categories,
            subresources: $subresources,
            storage: $storage,
            fields: &[$($field),*],
        }),*];
    };
}

resources! {
    "" "v1" "Namespace" "namespaces" "namespace" false ["ns"] NONE &["status", "finalize"], "namespaces" ["status.phase"];
    "" "v1" "Pod" "pods" "pod" true ["po"] ALL &["status", "binding", "eviction", "log", "exec", "attach", "portforward", "proxy", "ephemeralcontainers"], "pods"
        ["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"];
    "" "v1" "Service" "services" "service" true ["svc"] ALL STATUS_PROXY, "services/specs" [];
    "" "v1" "Endpoints" "endpoints" "endpoints" true ["ep"] NONE &[], "services/endpoints" [];
    "" "v1" "ConfigMap" "configmaps" "configmap" true ["cm"] NONE &[], "configmaps" [];
    "" "v1" "Secret" "secrets" "secret" true [] NONE &[], "secrets" ["type"];
    "" "v1" "ServiceAccount" "serviceaccounts" "serviceaccount" true ["sa"] NONE &[], "serviceaccounts" [];
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
    "rbac.authorization.k8s.io" "v1" "Role" "roles" "role" true [] NONE &[], "roles" [];
    "rbac.authorization.k8s.io" "v1" "RoleBinding" "rolebindings" "rolebinding" true [] NONE &[], "rolebindings" [];
    "rbac.authorization.k8s.io" "v1" "ClusterRole" "clusterroles" "clusterrole" false [] NONE &[], "clusterroles" [];
    "rbac.authorization.k8s.io" "v1" "ClusterRoleBinding" "clusterrolebindings" "clusterrolebinding" false [] NONE &[], "clusterrolebindings" [];
    "coordination.k8s.io" "v1" "Lease" "leases" "lease" true [] NONE &[], "leases" [];
    "scheduling.k8s.io" "v1" "PriorityClass" "priorityclasses" "priorityclass" false ["pc"] NONE &[], "priorityclasses" [];
    "discovery.k8s.io" "v1" "EndpointSlice" "endpointslices" "endpointslice" true [] NONE &[], "endpointslices" [];
    "events.k8s.io" "v1" "Event" "events" "event" true ["ev"] NONE &[], "events"
        ["regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid", "regarding.apiVersion", "regarding.resourceVersion", "regarding.fieldPath", "reason", "reportingController", "source", "type"];
    "certificates.k8s.io" "v1" "CertificateSigningRequest" "certificatesigningrequests" "certificatesigningrequest" false ["csr"] NONE &["status", "approval"], "certificatesigningrequests" ["spec.signerName"];
    "node.k8s.io" "v1" "RuntimeClass" "runtimeclasses" "runtimeclass" false [] NONE &[], "runtimeclasses" [];
    "admissionregistration.k8s.io" "v1" "MutatingWebhookConfiguration" "mutatingwebhookconfigurations" "mutatingwebhookconfiguration" false [] NONE &[], "mutatingwebhookconfigurations" [];
    "admissionregistration.k8s.io" "v1" "ValidatingWebhookConfiguration" "validatingwebhookconfigurations" "validatingwebhookconfiguration" false [] NONE &[], "validatingwebhookconfigurations" [];
}

/// The resource served at `group/version` under `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The groups in discovery order, each with its versions (newest first).
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in RESOURCES {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
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
        for (i, a) in RESOURCES.iter().enumerate() {
            assert!(
                a.plural.chars().all(|c| c.is_ascii_lowercase()),
                "{}",
                a.plural
            );
            assert_eq!(a.singular, a.kind.to_ascii_lowercase(), "{}", a.plural);
            for b in &RESOURCES[i + 1..] {
                assert!(
                    (a.group, a.version, a.plural) != (b.group, b.version, b.plural),
                    "{} listed twice",
                    a.plural
                );
            }
        }
        assert_eq!(groups()[0], ("", vec!["v1"]));
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
