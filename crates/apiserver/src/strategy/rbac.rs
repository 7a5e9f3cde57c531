//! RBAC's kinds (roles, bindings and their cluster-wide forms): names are path segments.

use api::validation::NameRule;

use super::Strategy;

/// Every kind of `rbac.authorization.k8s.io`.
pub(super) struct Rbac;

impl Strategy for Rbac {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
}
