//! RBAC's escalation check (upstream keeps it in the RBAC storage, not among its admission
//! plugins; here it is a validating step): a user writes a Role or ClusterRole only with rules
//! they hold themselves, and a binding only to a role whose rules they hold, unless RBAC
//! grants them `escalate` on the role or `bind` on the bound role. `system:masters` may do
//! both. Setting a ClusterRole's `aggregationRule`, which can gather anything, takes every
//! permission. A write that leaves a role's rules and aggregation as they were is not
//! checked.

use api::{Resource, Status};
use futures::future::BoxFuture;
use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::{Value, json};

use super::{Attributes, Operation, Validating, forbidden_as, name_of};
use crate::authn::Identity;
use crate::authz::rbac::rules::{self, Request};
use crate::registry::Registry;

const GROUP: &str = "rbac.authorization.k8s.io";

/// Refuses role and binding writes that would grant what their author does not hold.
pub(super) struct RbacEscalation;

impl Validating for RbacEscalation {
    fn name(&self) -> &'static str {
        "RBACEscalation"
    }

    fn validate<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        obj: &'a Value,
    ) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            let (Some(user), Operation::Create | Operation::Update) = (a.user, a.operation) else {
                return Ok(());
            };
            if a.resource.group != GROUP
                || a.subresource.is_some()
                || user.groups.iter().any(|g| g == "system:masters")
            {
                return Ok(());
            }
            match a.resource.plural.as_str() {
                "roles" | "clusterroles" => check_role(reg, a, user, obj).await,
                "rolebindings" | "clusterrolebindings" => check_binding(reg, a, user, obj).await,
                _ => Ok(()),
            }
        })
    }
}

/// Whether RBAC grants `user` the verb on the role `name` (of `plural`) in `ns`.
async fn granted(
    reg: &Registry,
    user: &Identity,
    verb: &str,
    plural: &str,
    name: &str,
    ns: Option<&str>,
) -> Result<bool, Status> {
    let req = Request {
        verb,
        group: GROUP,
        resource: Some(plural),
        subresource: None,
        name: Some(name),
        namespace: ns,
        path: "",
    };
    Ok(reg.rbac().decide(reg.store(), user, &req).await?.is_ok())
}

async fn check_role(
    reg: &Registry,
    a: &Attributes<'_>,
    user: &Identity,
    obj: &Value,
) -> Result<(), Status> {
    let unchanged = a.old.is_some_and(|old| {
        old["rules"] == obj["rules"] && old["aggregationRule"] == obj["aggregationRule"]
    });
    let name = name_of(obj);
    if unchanged
        || granted(
            reg,
            user,
            "escalate",
            &a.resource.plural,
            &name,
            a.namespace,
        )
        .await?
    {
        return Ok(());
    }
    let rules: Vec<PolicyRule> = serde_json::from_value(obj["rules"].clone()).unwrap_or_default();
    confirm_no_escalation(reg, a.resource, user, a.namespace, &name, &rules).await?;
    if obj.get("aggregationRule").is_some_and(|r| !r.is_null()) {
        let everything: Vec<PolicyRule> = serde_json::from_value(json!([
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]},
        ]))
        .unwrap_or_default();
        let (held, _) = reg.rbac().rules_for(reg.store(), user, None).await?;
        if !rules::missing(&held, &everything).is_empty() {
            let why = "must have cluster-admin privileges to use the aggregationRule";
            return Err(forbidden_as(a.resource, &name, why));
        }
    }
    Ok(())
}

async fn check_binding(
    reg: &Registry,
    a: &Attributes<'_>,
    user: &Identity,
    obj: &Value,
) -> Result<(), Status> {
    let role_ref = &obj["roleRef"];
    let role = role_ref["name"].as_str().unwrap_or_default();
    let plural = match role_ref["kind"].as_str() {
        Some("Role") => "roles",
        _ => "clusterroles",
    };
    if granted(reg, user, "bind", plural, role, a.namespace).await? {
        return Ok(());
    }
    let rules = match reg
        .rbac()
        .role_rules(reg.store(), role_ref, a.namespace)
        .await?
    {
        Ok(rules) => rules,
        Err(not_found) => return Err(Status::new(404, "NotFound", not_found)),
    };
    let name = name_of(obj);
    confirm_no_escalation(reg, a.resource, user, a.namespace, &name, &rules).await
}

/// Upstream's `ConfirmNoEscalation`: refuses when `rules` hold anything `user`'s own rules in
/// `ns` do not, listing what is missing.
async fn confirm_no_escalation(
    reg: &Registry,
    r: &Resource,
    user: &Identity,
    ns: Option<&str>,
    name: &str,
    rules: &[PolicyRule],
) -> Result<(), Status> {
    let (held, errors) = reg.rbac().rules_for(reg.store(), user, ns).await?;
    let missing = rules::missing(&held, rules);
    if missing.is_empty() {
        return Ok(());
    }
    let mut lines: Vec<String> = missing.iter().map(rules::compact_string).collect();
    lines.sort();
    lines.dedup();
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let mut why = format!(
        "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.user,
        groups.join(" "),
        lines.join("\n")
    );
    if !errors.is_empty() {
        why.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    Err(forbidden_as(r, name, &why))
}
