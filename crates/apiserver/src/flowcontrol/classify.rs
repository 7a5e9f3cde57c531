//! Which FlowSchema a request falls under, as upstream matches: a rule of the schema names one
//! of the caller's subjects (user, group or service account, `*` for any) and the request's
//! verb and target (a resource rule for a resource request, a non-resource rule for a path).

use k8s_openapi::api::flowcontrol::v1 as fc;

use crate::authn::Identity;

/// What classification looks at.
pub(crate) struct Request<'a> {
    /// The caller, after impersonation.
    pub user: &'a Identity,
    /// The request's verb (`get`, `list`, `watch`, ... for resources; the lower-case method
    /// for paths).
    pub verb: &'a str,
    /// What it addresses.
    pub target: Target<'a>,
}

/// A request's target.
pub(crate) enum Target<'a> {
    /// A resource: its group, `plural` or `plural/subresource`, and namespace (`None` for a
    /// cluster-scoped object or a request across all namespaces).
    Resource {
        group: &'a str,
        resource: &'a str,
        namespace: Option<&'a str>,
    },
    /// Anything else: the path.
    Path(&'a str),
}

/// Whether one of the schema's rules matches the request.
pub(crate) fn matches(spec: &fc::FlowSchemaSpec, req: &Request) -> bool {
    spec.rules.iter().flatten().any(|rule| {
        rule.subjects.iter().any(|s| subject_matches(s, req.user))
            && match &req.target {
                Target::Resource {
                    group,
                    resource,
                    namespace,
                } => rule.resource_rules.iter().flatten().any(|r| {
                    has(&r.verbs, req.verb)
                        && has(&r.api_groups, group)
                        && has(&r.resources, resource)
                        && match namespace {
                            None => r.cluster_scope == Some(true),
                            Some(ns) => has(r.namespaces.as_deref().unwrap_or_default(), ns),
                        }
                }),
                Target::Path(path) => {
                    rule.non_resource_rules.iter().flatten().any(|r| {
                        has(&r.verbs, req.verb) && path_matches(&r.non_resource_urls, path)
                    })
                }
            }
    })
}

/// The flow a request belongs to within its schema: the user (`ByUser`), the namespace
/// (`ByNamespace`), or one flow for all (no distinguisher).
pub(crate) fn distinguisher(spec: &fc::FlowSchemaSpec, req: &Request) -> String {
    let method = spec.distinguisher_method.as_ref().map(|m| m.type_.as_str());
    match (method, &req.target) {
        (Some("ByUser"), _) => req.user.user.clone(),
        (Some("ByNamespace"), Target::Resource { namespace, .. }) => {
            namespace.unwrap_or_default().to_string()
        }
        _ => String::new(),
    }
}

fn subject_matches(s: &fc::Subject, who: &Identity) -> bool {
    match s.kind.as_str() {
        "User" => s
            .user
            .as_ref()
            .is_some_and(|u| u.name == "*" || u.name == who.user),
        "Group" => s
            .group
            .as_ref()
            .is_some_and(|g| g.name == "*" || who.groups.contains(&g.name)),
        "ServiceAccount" => s.service_account.as_ref().is_some_and(|sa| {
            let account = who.user.strip_prefix("system:serviceaccount:");
            account
                .and_then(|a| a.split_once(':'))
                .is_some_and(|(ns, name)| ns == sa.namespace && (sa.name == "*" || sa.name == name))
        }),
        _ => false,
    }
}

/// Whether `list` holds `item` or `*`.
fn has(list: &[String], item: &str) -> bool {
    list.iter().any(|i| i == "*" || i == item)
}

/// Whether a non-resource rule's URLs cover `path`: `*`, the path itself, or a prefix
/// ending in `*`.
fn path_matches(urls: &[String], path: &str) -> bool {
    urls.iter().any(|u| {
        u == "*"
            || u == path
            || u.strip_suffix('*')
                .is_some_and(|prefix| path.starts_with(prefix))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(v: serde_json::Value) -> fc::FlowSchemaSpec {
        serde_json::from_value(v).unwrap()
    }

    fn who(user: &str, groups: &[&str]) -> Identity {
        Identity::new(user.into(), groups.iter().map(|g| g.to_string()).collect())
    }

    fn resource<'a>(user: &'a Identity, verb: &'a str, ns: Option<&'a str>) -> Request<'a> {
        Request {
            user,
            verb,
            target: Target::Resource {
                group: "",
                resource: "pods",
                namespace: ns,
            },
        }
    }

    #[test]
    fn subjects_match_users_groups_and_service_accounts() {
        let s = spec(
            json!({"priorityLevelConfiguration": {"name": "p"}, "rules": [{
            "subjects": [{"kind": "User", "user": {"name": "ann"}},
                         {"kind": "Group", "group": {"name": "devs"}},
                         {"kind": "ServiceAccount", "serviceAccount": {"namespace": "ci", "name": "*"}}],
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"]}]}]}),
        );
        let ann = who("ann", &[]);
        let dev = who("bob", &["devs"]);
        let robot = who("system:serviceaccount:ci:builder", &[]);
        let other = who("system:serviceaccount:prod:builder", &[]);
        for (user, expected) in [(&ann, true), (&dev, true), (&robot, true), (&other, false)] {
            assert_eq!(matches(&s, &resource(user, "get", Some("a"))), expected);
        }
    }

    #[test]
    fn resource_rules_need_cluster_scope_for_requests_without_a_namespace() {
        let s = spec(
            json!({"priorityLevelConfiguration": {"name": "p"}, "rules": [{
            "subjects": [{"kind": "Group", "group": {"name": "*"}}],
            "resourceRules": [{"verbs": ["list"], "apiGroups": [""], "resources": ["pods"], "namespaces": ["team"]}]}]}),
        );
        let ann = who("ann", &[]);
        assert!(matches(&s, &resource(&ann, "list", Some("team"))));
        assert!(!matches(&s, &resource(&ann, "list", Some("other"))));
        assert!(!matches(&s, &resource(&ann, "list", None)));
        assert!(!matches(&s, &resource(&ann, "create", Some("team"))));
        let path = Request {
            user: &ann,
            verb: "get",
            target: Target::Path("/apis"),
        };
        assert!(!matches(&s, &path), "resource rules do not match paths");
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_prefix() {
        let urls = ["/healthz".to_string(), "/apis/*".to_string()];
        assert!(path_matches(&urls, "/healthz"));
        assert!(!path_matches(&urls, "/healthz/etcd"));
        assert!(path_matches(&urls, "/apis/apps/v1"));
        assert!(!path_matches(&urls, "/api"));
    }

    #[test]
    fn flows_are_told_apart_by_user_or_namespace() {
        let ann = who("ann", &[]);
        let req = resource(&ann, "get", Some("team"));
        let by = |m: &str| {
            let s = spec(json!({"priorityLevelConfiguration": {"name": "p"},
                "distinguisherMethod": {"type": m}}));
            distinguisher(&s, &req)
        };
        assert_eq!(by("ByUser"), "ann");
        assert_eq!(by("ByNamespace"), "team");
        let none = spec(json!({"priorityLevelConfiguration": {"name": "p"}}));
        assert_eq!(distinguisher(&none, &req), "");
    }
}
