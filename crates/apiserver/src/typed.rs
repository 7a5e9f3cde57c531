//! The typed form of each built-in resource (k8s-openapi's structs for the 1.33 API), for the
//! code that needs a resource's schema: field validation and the OpenAPI documents.

use api::Resource;

/// What a typed resource offers: decoding, encoding, and its OpenAPI schema.
pub trait ApiType: serde::de::DeserializeOwned + serde::Serialize + schemars::JsonSchema {}
impl<T: serde::de::DeserializeOwned + serde::Serialize + schemars::JsonSchema> ApiType for T {}

/// Something to do with a resource's type, chosen at run time by [`visit`].
pub trait Typed {
    /// What it produces.
    type Out;
    /// Does it with the type `T`.
    fn visit<T: ApiType>(self) -> Self::Out;
}

macro_rules! types {
    ($r:expr, $v:expr; $($group:literal $kind:literal => $ty:ty),* $(,)?) => {
        match ($r.group.as_str(), $r.kind.as_str()) {
            $(($group, $kind) => Some($v.visit::<$ty>()),)*
            _ => None,
        }
    };
}

/// Runs `v` with the type of `r`; `None` for a resource without a typed form here.
pub fn visit<V: Typed>(r: &Resource, v: V) -> Option<V::Out> {
    use k8s_openapi::api::{
        admissionregistration::v1 as adm, apps::v1 as apps, authentication::v1 as authn,
        authorization::v1 as authz, autoscaling::v1 as hpa1, autoscaling::v2 as hpa,
        batch::v1 as batch, certificates::v1 as cert, coordination::v1 as coord, core::v1 as core,
        discovery::v1 as disc, events::v1 as events, flowcontrol::v1 as fc, networking::v1 as net,
        node::v1 as node, policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as sched,
        storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as crd;
    if (r.group.as_str(), r.version.as_str()) == ("autoscaling", "v1") {
        return Some(v.visit::<hpa1::HorizontalPodAutoscaler>());
    }
    types!(r, v;
        "" "Namespace" => core::Namespace, "" "Pod" => core::Pod, "" "Service" => core::Service,
        "" "Endpoints" => core::Endpoints, "" "ConfigMap" => core::ConfigMap, "" "Secret" => core::Secret,
        "" "ServiceAccount" => core::ServiceAccount, "" "Node" => core::Node, "" "Event" => core::Event,
        "" "LimitRange" => core::LimitRange, "" "ResourceQuota" => core::ResourceQuota,
        "" "PersistentVolume" => core::PersistentVolume, "" "PersistentVolumeClaim" => core::PersistentVolumeClaim,
        "" "ReplicationController" => core::ReplicationController, "" "PodTemplate" => core::PodTemplate,
        "apps" "Deployment" => apps::Deployment, "apps" "ReplicaSet" => apps::ReplicaSet,
        "apps" "StatefulSet" => apps::StatefulSet, "apps" "DaemonSet" => apps::DaemonSet,
        "apps" "ControllerRevision" => apps::ControllerRevision,
        "batch" "Job" => batch::Job, "batch" "CronJob" => batch::CronJob,
        "autoscaling" "HorizontalPodAutoscaler" => hpa::HorizontalPodAutoscaler,
        "policy" "PodDisruptionBudget" => policy::PodDisruptionBudget,
        "networking.k8s.io" "Ingress" => net::Ingress, "networking.k8s.io" "IngressClass" => net::IngressClass,
        "networking.k8s.io" "NetworkPolicy" => net::NetworkPolicy,
        "storage.k8s.io" "StorageClass" => storage::StorageClass, "storage.k8s.io" "CSIDriver" => storage::CSIDriver,
        "storage.k8s.io" "CSINode" => storage::CSINode, "storage.k8s.io" "VolumeAttachment" => storage::VolumeAttachment,
        "rbac.authorization.k8s.io" "Role" => rbac::Role, "rbac.authorization.k8s.io" "RoleBinding" => rbac::RoleBinding,
        "rbac.authorization.k8s.io" "ClusterRole" => rbac::ClusterRole,
        "rbac.authorization.k8s.io" "ClusterRoleBinding" => rbac::ClusterRoleBinding,
        "coordination.k8s.io" "Lease" => coord::Lease, "scheduling.k8s.io" "PriorityClass" => sched::PriorityClass,
        "discovery.k8s.io" "EndpointSlice" => disc::EndpointSlice,
        "flowcontrol.apiserver.k8s.io" "FlowSchema" => fc::FlowSchema,
        "flowcontrol.apiserver.k8s.io" "PriorityLevelConfiguration" => fc::PriorityLevelConfiguration,
        "certificates.k8s.io" "CertificateSigningRequest" => cert::CertificateSigningRequest,
        "node.k8s.io" "RuntimeClass" => node::RuntimeClass,
        "admissionregistration.k8s.io" "MutatingWebhookConfiguration" => adm::MutatingWebhookConfiguration,
        "admissionregistration.k8s.io" "ValidatingWebhookConfiguration" => adm::ValidatingWebhookConfiguration,
        "events.k8s.io" "Event" => events::Event,
        "authentication.k8s.io" "TokenReview" => authn::TokenReview,
        "authentication.k8s.io" "SelfSubjectReview" => authn::SelfSubjectReview,
        "authorization.k8s.io" "SubjectAccessReview" => authz::SubjectAccessReview,
        "authorization.k8s.io" "SelfSubjectAccessReview" => authz::SelfSubjectAccessReview,
        "authorization.k8s.io" "LocalSubjectAccessReview" => authz::LocalSubjectAccessReview,
        "authorization.k8s.io" "SelfSubjectRulesReview" => authz::SelfSubjectRulesReview,
        "apiextensions.k8s.io" "CustomResourceDefinition" => crd::CustomResourceDefinition,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Name;
    impl Typed for Name {
        type Out = String;
        fn visit<T: ApiType>(self) -> String {
            T::schema_name().into_owned()
        }
    }

    #[test]
    fn every_served_resource_has_its_type() {
        for r in api::resources::builtin() {
            let name = visit(r, Name).unwrap_or_else(|| panic!("{} has no typed form", r.plural));
            assert!(
                name.ends_with(&format!(".{}", r.kind)),
                "{} -> {name}",
                r.plural
            );
        }
    }
}
