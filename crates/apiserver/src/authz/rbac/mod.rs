//! RBAC, upstream's role-based authorizer: a request is allowed when a rule of a role bound
//! to the user allows it. Cluster-wide bindings count everywhere, RoleBindings in their
//! namespace; a RoleBinding may name a Role of its namespace or a ClusterRole. Subjects are
//! users, groups and service accounts (`system:serviceaccount:<ns>:<name>`).
//!
//! [`Policy`] keeps watch-fed copies of the four kinds (upstream's informers), so deciding
//! reads no store and parses nothing: rules are matched on the stored JSON ([`rules`]).
//! [`bootstrap`] writes upstream's default roles and bindings at start-up. The escalation
//! check on writes of roles and bindings is an admission step
//! (`admission::rbac_escalation`); the access reviews are in `authz::review`.

pub mod bootstrap;
pub mod rules;

use std::sync::Arc;

use api::Status;
use futures::future::BoxFuture;
use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::Value;
use store::Store;

use super::{Attributes, Authorizer, Decision};
use crate::authn::Identity;
use crate::registry::Registry;
use crate::watched::{Objects, Watched};
use rules::Request;

/// The roles and bindings, followed by watches.
pub struct Policy {
    roles: Watched,
    role_bindings: Watched,
    cluster_roles: Watched,
    cluster_role_bindings: Watched,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            roles: Watched::new("/registry/roles/"),
            role_bindings: Watched::new("/registry/rolebindings/"),
            cluster_roles: Watched::new("/registry/clusterroles/"),
            cluster_role_bindings: Watched::new("/registry/clusterrolebindings/"),
        }
    }
}

/// The four kinds at one moment.
struct Snapshot {
    roles: Objects,
    role_bindings: Objects,
    cluster_roles: Objects,
    cluster_role_bindings: Objects,
}

/// The binding a rule came from, for upstream's reason (`RBAC: allowed by ...`).
struct Source<'a> {
    binding: &'a Value,
    subject: &'a Value,
}

impl Source<'_> {
    /// `ClusterRoleBinding "b" of ClusterRole "r" to User "alice"`, or for a RoleBinding
    /// `RoleBinding "b/ns" of Role "r" to ServiceAccount "sa/ns"`.
    fn describe(&self) -> String {
        let meta = &self.binding["metadata"];
        let (name, ns) = (str_of(&meta["name"]), meta["namespace"].as_str());
        let (kind, binding) = match ns {
            Some(ns) => ("RoleBinding", format!("{name}/{ns}")),
            None => ("ClusterRoleBinding", name.to_string()),
        };
        let role = &self.binding["roleRef"];
        let subject_kind = str_of(&self.subject["kind"]);
        let mut subject = str_of(&self.subject["name"]).to_string();
        if subject_kind == "ServiceAccount" {
            let sa_ns = self.subject["namespace"].as_str().filter(|s| !s.is_empty());
            subject = format!("{subject}/{}", sa_ns.or(ns).unwrap_or(""));
        }
        format!(
            "{kind} {binding:?} of {} {:?} to {subject_kind} {subject:?}",
            str_of(&role["kind"]),
            str_of(&role["name"]),
        )
    }
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// Whether the binding's subject `subject` is `user` (upstream's `appliesTo`).
fn applies(subject: &Value, user: &Identity, binding_ns: Option<&str>) -> bool {
    let name = str_of(&subject["name"]);
    match str_of(&subject["kind"]) {
        "User" => user.user == name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = subject["namespace"].as_str().filter(|s| !s.is_empty());
            let Some(ns) = ns.or(binding_ns) else {
                return false;
            };
            user.user
                .strip_prefix("system:serviceaccount:")
                .and_then(|rest| rest.strip_prefix(ns))
                .and_then(|rest| rest.strip_prefix(':'))
                == Some(name)
        }
        _ => false,
    }
}

impl Snapshot {
    /// The rules of the role `role_ref` names (a Role in `ns`, or a ClusterRole), or
    /// upstream's not-found text.
    fn role_rules(&self, role_ref: &Value, ns: Option<&str>) -> Result<Vec<Value>, String> {
        let name = str_of(&role_ref["name"]);
        let (objects, key, what) = if str_of(&role_ref["kind"]) == "Role" {
            let ns = ns.unwrap_or("");
            (&self.roles, format!("/registry/roles/{ns}/{name}"), "role")
        } else {
            let key = format!("/registry/clusterroles/{name}");
            (&self.cluster_roles, key, "clusterrole")
        };
        let map = objects.read().unwrap_or_else(|e| e.into_inner());
        match map.get(&key) {
            Some((_, role)) => Ok(role["rules"].as_array().cloned().unwrap_or_default()),
            None => Err(format!(
                "{what}.rbac.authorization.k8s.io {name:?} not found"
            )),
        }
    }

    /// Hands every rule that applies to `user` in `namespace` (cluster-wide bindings, then
    /// the namespace's) to `visit` until it returns true; returns the roles that could not
    /// be found, in upstream's words.
    fn visit(
        &self,
        user: &Identity,
        namespace: Option<&str>,
        visit: &mut dyn FnMut(&Source<'_>, &Value) -> bool,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        let mut bindings = |objects: &Objects, prefix: &str, ns: Option<&str>| {
            let map = objects.read().unwrap_or_else(|e| e.into_inner());
            for (_, (_, binding)) in map
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
            {
                let subjects = binding["subjects"].as_array().into_iter().flatten();
                let Some(subject) = subjects.into_iter().find(|s| applies(s, user, ns)) else {
                    continue;
                };
                let source = Source { binding, subject };
                match self.role_rules(&binding["roleRef"], ns) {
                    Ok(rules) => {
                        if rules.iter().any(|rule| visit(&source, rule)) {
                            return true;
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
            false
        };
        if bindings(
            &self.cluster_role_bindings,
            "/registry/clusterrolebindings/",
            None,
        ) {
            return Vec::new();
        }
        if let Some(ns) = namespace {
            let prefix = format!("/registry/rolebindings/{ns}/");
            if bindings(&self.role_bindings, &prefix, Some(ns)) {
                return Vec::new();
            }
        }
        errors
    }
}

/// Upstream's aggregate of errors: one as it is, several as `[a, b]`.
fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

impl Policy {
    async fn snapshot(&self, store: &Arc<dyn Store>) -> Result<Snapshot, Status> {
        Ok(Snapshot {
            roles: self.roles.objects(store).await?,
            role_bindings: self.role_bindings.objects(store).await?,
            cluster_roles: self.cluster_roles.objects(store).await?,
            cluster_role_bindings: self.cluster_role_bindings.objects(store).await?,
        })
    }

    /// Whether a rule bound to `user` allows `req`: the allowing binding's description, or
    /// the roles that were missing (upstream's reason texts, without the `RBAC: ` prefix).
    pub async fn decide(
        &self,
        store: &Arc<dyn Store>,
        user: &Identity,
        req: &Request<'_>,
    ) -> Result<Result<String, Vec<String>>, Status> {
        let snapshot = self.snapshot(store).await?;
        let mut allowed = None;
        let errors = snapshot.visit(user, req.namespace, &mut |source, rule| {
            let hit = rules::allows(rule, req);
            if hit {
                allowed = Some(source.describe());
            }
            hit
        });
        Ok(allowed.ok_or(errors))
    }

    /// The rules of the role `role_ref` names (a Role in `ns`, or a ClusterRole), or
    /// upstream's not-found text.
    pub async fn role_rules(
        &self,
        store: &Arc<dyn Store>,
        role_ref: &Value,
        ns: Option<&str>,
    ) -> Result<Result<Vec<PolicyRule>, String>, Status> {
        let snapshot = self.snapshot(store).await?;
        Ok(snapshot.role_rules(role_ref, ns).map(|rules| {
            rules
                .into_iter()
                .filter_map(|r| serde_json::from_value(r).ok())
                .collect()
        }))
    }

    /// Every rule bound to `user` in `namespace` (cluster-wide ones too), and the roles that
    /// could not be found.
    pub async fn rules_for(
        &self,
        store: &Arc<dyn Store>,
        user: &Identity,
        namespace: Option<&str>,
    ) -> Result<(Vec<PolicyRule>, Vec<String>), Status> {
        let snapshot = self.snapshot(store).await?;
        let mut found = Vec::new();
        let errors = snapshot.visit(user, namespace, &mut |_, rule| {
            if let Ok(rule) = serde_json::from_value(rule.clone()) {
                found.push(rule);
            }
            false
        });
        Ok((found, errors))
    }
}

/// The request as RBAC sees it. A request on a namespace itself (`/api/v1/namespaces/x`)
/// is in that namespace, as upstream's request info has it.
pub fn request_of<'a>(a: &'a Attributes<'a>) -> Request<'a> {
    let Some(info) = a.request else {
        return Request {
            verb: a.verb,
            group: "",
            resource: None,
            subresource: None,
            name: None,
            namespace: None,
            path: a.path,
        };
    };
    let r = &*info.resource;
    let namespace = match (r.group.as_str(), r.plural.as_str()) {
        ("", "namespaces") => info.name.as_deref(),
        _ => info.namespace.as_deref(),
    };
    Request {
        verb: a.verb,
        group: &r.group,
        resource: Some(&r.plural),
        subresource: info.subresource.as_deref(),
        name: info.name.as_deref(),
        namespace,
        path: a.path,
    }
}

/// The RBAC authorizer: allows what a bound rule allows, else has no opinion (with the roles
/// it could not find as its reason).
pub(super) struct Rbac {
    registry: Registry,
}

impl Rbac {
    pub(super) fn new(registry: Registry) -> Rbac {
        Rbac { registry }
    }
}

impl Authorizer for Rbac {
    fn authorize<'a>(&'a self, a: &'a Attributes<'a>) -> BoxFuture<'a, Result<Decision, Status>> {
        Box::pin(async move {
            let req = request_of(a);
            let reg = &self.registry;
            Ok(match reg.rbac().decide(reg.store(), a.user, &req).await? {
                Ok(_) => Decision::Allow,
                Err(errors) if errors.is_empty() => Decision::NoOpinion(String::new()),
                Err(errors) => Decision::NoOpinion(format!("RBAC: {}", aggregate(&errors))),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn subjects_and_sources_read_as_upstream() {
        let sa = Identity::new("system:serviceaccount:ns1:robot".into(), vec![]);
        let subject = json!({"kind": "ServiceAccount", "name": "robot"});
        assert!(applies(&subject, &sa, Some("ns1")));
        assert!(!applies(&subject, &sa, Some("ns2")));
        assert!(!applies(&subject, &sa, None));
        let group = json!({"kind": "Group", "name": "devs"});
        let dev = Identity::new("dana".into(), vec!["devs".into()]);
        assert!(applies(&group, &dev, None));
        let binding = json!({"metadata": {"name": "b", "namespace": "ns1"},
            "roleRef": {"kind": "ClusterRole", "name": "view"}});
        let source = Source {
            binding: &binding,
            subject: &subject,
        };
        assert_eq!(
            source.describe(),
            r#"RoleBinding "b/ns1" of ClusterRole "view" to ServiceAccount "robot/ns1""#
        );
        assert_eq!(aggregate(&["a".into(), "b".into()]), "[a, b]");
    }
}
