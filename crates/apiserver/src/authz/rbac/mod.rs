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

use std::collections::HashMap;
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

/// The roles and bindings, followed by watches, and the bindings indexed by subject.
pub struct Policy {
    roles: Watched,
    role_bindings: Watched,
    cluster_roles: Watched,
    cluster_role_bindings: Watched,
    index: std::sync::Mutex<Option<Arc<Index>>>,
}

/// Which bindings name each subject (`User:alice`, `Group:dev`, `ServiceAccount:ns:name`),
/// built from the bindings at the watched copies' generations, so that deciding looks only at
/// the caller's bindings however many there are (upstream walks them all).
struct Index {
    generations: (u64, u64),
    by_subject: HashMap<String, Vec<String>>,
}

impl Index {
    fn build(generations: (u64, u64), bindings: &[(&Objects, bool)]) -> Index {
        let mut by_subject: HashMap<String, Vec<String>> = HashMap::new();
        for (objects, namespaced) in bindings {
            let map = objects.read().unwrap_or_else(|e| e.into_inner());
            for (key, (_, binding)) in map.iter() {
                let ns = binding["metadata"]["namespace"]
                    .as_str()
                    .filter(|_| *namespaced);
                let subjects = binding["subjects"].as_array().into_iter().flatten();
                for subject in subjects.filter_map(|s| subject_key(s, ns)) {
                    by_subject.entry(subject).or_default().push(key.clone());
                }
            }
        }
        for keys in by_subject.values_mut() {
            keys.sort();
            keys.dedup();
        }
        Index {
            generations,
            by_subject,
        }
    }

    /// The keys of the bindings naming `user` (as itself, a group of its, or its service
    /// account), in key order: cluster-wide bindings first, as upstream visits them.
    fn bindings_of(&self, user: &Identity) -> Vec<&str> {
        let mut subjects = vec![format!("User:{}", user.user)];
        subjects.extend(user.groups.iter().map(|g| format!("Group:{g}")));
        if let Some(account) = user.user.strip_prefix("system:serviceaccount:") {
            subjects.push(format!("ServiceAccount:{account}"));
        }
        let mut keys: Vec<&str> = subjects
            .iter()
            .filter_map(|s| self.by_subject.get(s))
            .flatten()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

/// A binding subject as the index names it.
fn subject_key(subject: &Value, binding_ns: Option<&str>) -> Option<String> {
    let name = str_of(&subject["name"]);
    match str_of(&subject["kind"]) {
        "User" => Some(format!("User:{name}")),
        "Group" => Some(format!("Group:{name}")),
        "ServiceAccount" => {
            let ns = subject["namespace"].as_str().filter(|s| !s.is_empty());
            Some(format!("ServiceAccount:{}:{name}", ns.or(binding_ns)?))
        }
        _ => None,
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            roles: Watched::new("/registry/roles/"),
            role_bindings: Watched::new("/registry/rolebindings/"),
            cluster_roles: Watched::new("/registry/clusterroles/"),
            cluster_role_bindings: Watched::new("/registry/clusterrolebindings/"),
            index: std::sync::Mutex::new(None),
        }
    }
}

/// The four kinds at one moment, and the bindings' index.
struct Snapshot {
    roles: Objects,
    role_bindings: Objects,
    cluster_roles: Objects,
    cluster_role_bindings: Objects,
    index: Arc<Index>,
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
        let namespaced = namespace.map(|ns| format!("/registry/rolebindings/{ns}/"));
        for key in self.index.bindings_of(user) {
            let (objects, ns) = if key.starts_with("/registry/clusterrolebindings/") {
                (&self.cluster_role_bindings, None)
            } else if namespaced.as_deref().is_some_and(|p| key.starts_with(p)) {
                (&self.role_bindings, namespace)
            } else {
                continue;
            };
            let map = objects.read().unwrap_or_else(|e| e.into_inner());
            let Some((_, binding)) = map.get(key) else {
                continue;
            };
            let subjects = binding["subjects"].as_array().into_iter().flatten();
            let Some(subject) = subjects.into_iter().find(|s| applies(s, user, ns)) else {
                continue;
            };
            let source = Source { binding, subject };
            match self.role_rules(&binding["roleRef"], ns) {
                Ok(rules) => {
                    if rules.iter().any(|rule| visit(&source, rule)) {
                        return Vec::new();
                    }
                }
                Err(e) => errors.push(e),
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
        let (role_bindings, rb) = self.role_bindings.tracked(store).await?;
        let (cluster_role_bindings, crb) = self.cluster_role_bindings.tracked(store).await?;
        let index = {
            let mut cached = self.index.lock().unwrap_or_else(|e| e.into_inner());
            match cached.as_ref().filter(|i| i.generations == (rb, crb)) {
                Some(index) => index.clone(),
                None => {
                    let sources = [(&role_bindings, true), (&cluster_role_bindings, false)];
                    let index = Arc::new(Index::build((rb, crb), &sources));
                    *cached = Some(index.clone());
                    index
                }
            }
        };
        Ok(Snapshot {
            roles: self.roles.objects(store).await?,
            role_bindings,
            cluster_roles: self.cluster_roles.objects(store).await?,
            cluster_role_bindings,
            index,
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
                Ok(source) => Decision::Allow(format!("RBAC: allowed by {source}")),
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
