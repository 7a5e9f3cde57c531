//! Authorization: whether an authenticated user may make a request. Authorizers are asked in
//! order, as upstream's union authorizer asks them: the first to allow or deny decides; when
//! every one has no opinion the request is refused, with their reasons. The chain:
//! [`privileged::PrivilegedGroups`] (`system:masters`), [`node::NodeAuthorizer`] (node agents:
//! upstream's Node authorizer, rules and relationships), [`rbac::Rbac`] (roles and bindings,
//! with upstream's bootstrap policy) and [`bootstrap::Bootstrappers`] (joining nodes). Another
//! authorizer is one more module and one more line in [`Chain::new`].
//!
//! [`review`] answers the access reviews (`kubectl auth can-i`) from the same chain.

mod bootstrap;
pub mod node;
mod privileged;
pub mod rbac;
pub mod review;

use api::Status;
use api::request::RequestInfo;
use futures::future::BoxFuture;

use crate::authn::Identity;
use crate::registry::Registry;

/// What an authorizer concludes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The request may go on; with the reason (possibly empty), for the audit log and
    /// access reviews.
    Allow(String),
    /// The request is refused, whatever later authorizers would say; with the reason.
    Deny(String),
    /// This authorizer does not decide; the reason (possibly empty) is kept for the refusal.
    NoOpinion(String),
}

/// What the authorizers see of a request (upstream's `authorizer.Attributes`).
pub struct Attributes<'a> {
    /// Who asks.
    pub user: &'a Identity,
    /// What the request does: the resource verb (`get`, `list`, ..., also `escalate`, `bind`
    /// and the like from an access review), or the lower-case HTTP method for a non-resource
    /// path. Authorizers read it here, not from `request`.
    pub verb: &'a str,
    /// The resource request, or `None` for a non-resource path (discovery, ...).
    pub request: Option<&'a RequestInfo>,
    /// The URL's path: what a non-resource request asks for (`/api`, `/metrics`).
    pub path: &'a str,
}

impl Attributes<'_> {
    /// Whether the user is in `group`.
    pub fn member(&self, group: &str) -> bool {
        self.user.groups.iter().any(|g| g == group)
    }
}

/// One way of deciding.
pub trait Authorizer: Send + Sync {
    /// Decides on the request.
    fn authorize<'a>(&'a self, a: &'a Attributes<'a>) -> BoxFuture<'a, Result<Decision, Status>>;
}

/// The authorizers in order.
pub struct Chain(Vec<Box<dyn Authorizer>>);

impl Chain {
    /// The built-in chain; the Node authorizer reads the node's pods from `registry`.
    pub fn new(registry: Registry) -> Chain {
        Chain(vec![
            Box::new(privileged::PrivilegedGroups),
            Box::new(node::NodeAuthorizer::new(registry.clone())),
            Box::new(rbac::Rbac::new(registry)),
            Box::new(bootstrap::Bootstrappers),
        ])
    }

    /// The first decision that is not `NoOpinion`; else `NoOpinion` with every reason given,
    /// a line each.
    pub async fn authorize(&self, a: &Attributes<'_>) -> Result<Decision, Status> {
        let mut reasons = Vec::new();
        for authorizer in &self.0 {
            match authorizer.authorize(a).await? {
                Decision::NoOpinion(reason) => {
                    if !reason.is_empty() {
                        reasons.push(reason);
                    }
                }
                decided => return Ok(decided),
            }
        }
        Ok(Decision::NoOpinion(reasons.join("\n")))
    }
}

/// A request no URL made (an access review's, an impersonation's) on `resource` (namespaced
/// when a namespace is given): what the authorizers are asked about. Its verb is left empty;
/// authorizers read the verb from the [`Attributes`].
pub fn made_up_request(
    mut resource: api::Resource,
    subresource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
) -> RequestInfo {
    resource.namespaced = namespace.is_some();
    RequestInfo {
        resource: std::sync::Arc::new(resource),
        namespace,
        name,
        subresource,
        verb: "",
    }
}

/// The refusal of the request `a` describes, with the authorizers' reason, in upstream's
/// words.
pub fn forbidden(a: &Attributes<'_>, reason: &str) -> Status {
    let (user, verb, path) = (&a.user.user, a.verb, a.path);
    let s = match a.request {
        Some(info) => Status::forbidden(
            &info.resource,
            info.name.as_deref().unwrap_or(""),
            user,
            verb,
            info.namespace.as_deref(),
        ),
        None => Status::new(
            403,
            "Forbidden",
            format!("forbidden: User \"{user}\" cannot {verb} path \"{path}\""),
        ),
    };
    if reason.is_empty() {
        return s;
    }
    let message = format!("{}: {reason}", s.message);
    Status { message, ..s }
}

#[cfg(test)]
mod tests {

    use api::request::Target;
    use serde_json::json;

    use super::*;
    use crate::authn::{BOOTSTRAPPERS, Tokens};
    use crate::registry::Caller;

    /// The resource request `method path` (a watch when `watch`).
    fn parse(path: &str, method: &str, watch: bool) -> RequestInfo {
        match api::request::parse(path, method, watch, &Default::default()).unwrap() {
            Target::Resource(info) => info,
            other => panic!("{path} is not a resource request: {other:?}"),
        }
    }

    /// The built-in chain over a registry on a temporary store (kept while the dir lives).
    async fn chain() -> (tempfile::TempDir, Registry, Chain) {
        let (dir, reg) = crate::registry::scratch(&[]).await;
        rbac::bootstrap::reconcile(&reg).await.unwrap();
        (dir, reg.clone(), Chain::new(reg))
    }

    async fn decide(chain: &Chain, who: &Identity, request: Option<&RequestInfo>) -> Decision {
        // A non-resource request here is discovery's.
        let a = Attributes {
            user: who,
            verb: request.map_or("get", |r| r.verb),
            request,
            path: "/api",
        };
        chain.authorize(&a).await.unwrap()
    }

    async fn allows(chain: &Chain, who: &Identity, request: Option<&RequestInfo>) -> bool {
        matches!(decide(chain, who, request).await, Decision::Allow(_))
    }

    #[tokio::test]
    async fn masters_may_everything_others_discovery_and_nodes_their_rules() {
        let (_dir, _, chain) = chain().await;
        let alice = Identity::new("alice".into(), vec!["system:masters".into()]);
        let bob = Identity::new("bob".into(), vec![]);
        let pods = parse("/api/v1/namespaces/default/pods", "GET", false);
        assert!(allows(&chain, &alice, Some(&pods)).await);
        assert!(!allows(&chain, &bob, Some(&pods)).await);
        assert!(
            allows(&chain, &bob, None).await,
            "discovery is open to the authenticated"
        );
        let node = Identity::new("system:node:n1".into(), vec!["system:nodes".into()]);
        assert!(allows(&chain, &node, Some(&pods)).await);
        for (method, path, allowed) in [
            ("PATCH", "/api/v1/nodes/n1/status", true),
            ("PATCH", "/api/v1/nodes/n2/status", false),
            ("DELETE", "/api/v1/nodes/n2", false),
            (
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
                true,
            ),
            (
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n2",
                false,
            ),
            (
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/default/leases/n1",
                false,
            ),
            ("GET", "/api/v1/namespaces/default/secrets", false),
            ("POST", "/api/v1/namespaces/default/configmaps", false),
            ("PATCH", "/api/v1/namespaces/default/pods/p/status", true),
            ("PATCH", "/api/v1/namespaces/default/pods/p", false),
            ("GET", "/api/v1/services", true),
            (
                "POST",
                "/apis/apps/v1/namespaces/default/deployments",
                false,
            ),
        ] {
            let request = parse(path, method, false);
            assert_eq!(
                allows(&chain, &node, Some(&request)).await,
                allowed,
                "{method} {path}"
            );
        }
        let nameless = Identity::new("someone".into(), vec!["system:nodes".into()]);
        assert!(!allows(&chain, &nameless, Some(&pods)).await);
    }

    #[tokio::test]
    async fn a_node_reads_only_the_secrets_its_pods_use() {
        let (_dir, reg, chain) = chain().await;
        let find = |p| api::resources::find("", "v1", p).unwrap();
        reg.create(
            find("namespaces"),
            None,
            json!({"metadata": {"name": "d"}}),
            Caller::SERVER,
        )
        .await
        .unwrap();
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1",
            "containers": [{"name": "c", "image": "x"}],
            "volumes": [{"name": "v", "secret": {"secretName": "mine"}}]}});
        reg.create(find("pods"), Some("d"), pod, Caller::SERVER)
            .await
            .unwrap();
        let node = Identity::new("system:node:n1".into(), vec!["system:nodes".into()]);
        let mine = parse("/api/v1/namespaces/d/secrets/mine", "GET", false);
        assert!(allows(&chain, &node, Some(&mine)).await);
        let other = parse("/api/v1/namespaces/d/secrets/other", "GET", false);
        let Decision::NoOpinion(reason) = decide(&chain, &node, Some(&other)).await else {
            panic!("a node read a secret none of its pods uses");
        };
        let a = Attributes {
            user: &node,
            verb: "get",
            request: Some(&other),
            path: "",
        };
        assert_eq!(
            forbidden(&a, &reason).message,
            "secrets \"other\" is forbidden: User \"system:node:n1\" cannot get resource \"secrets\" in API group \"\" in the namespace \"d\": no relationship found between node 'n1' and this object"
        );
    }

    #[tokio::test]
    async fn bootstrappers_may_only_ask_for_certificates() {
        let (_dir, _, chain) = chain().await;
        let mut t = Tokens::default();
        t.add_bootstrap("abcdef.0123456789abcdef").unwrap();
        let who = t.authenticate("Bearer abcdef.0123456789abcdef").unwrap();
        assert_eq!(who.user, "system:bootstrap:abcdef");
        assert_eq!(who.groups, [BOOTSTRAPPERS, "system:authenticated"]);
        assert!(t.authenticate("Bearer abcdef.0123456789abcdee").is_none());
        let csrs = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
        let one = format!("{csrs}/node-csr-x");
        let table: &[(&str, &str, bool, bool)] = &[
            (csrs, "POST", false, true),
            (csrs, "GET", false, true),
            (csrs, "GET", true, true),
            (&one, "GET", false, true),
            (&one, "PUT", false, false),
            (&one, "DELETE", false, false),
            (&format!("{one}/approval"), "PUT", false, false),
            (&format!("{one}/status"), "PUT", false, false),
            ("/api/v1/namespaces/default/pods", "GET", false, false),
            ("/api/v1/pods", "GET", false, false),
            ("/api/v1/nodes", "POST", false, false),
            (
                "/api/v1/namespaces/kube-system/secrets",
                "GET",
                false,
                false,
            ),
        ];
        for (path, method, watch, allowed) in table {
            assert_eq!(
                allows(&chain, &who, Some(&parse(path, method, *watch))).await,
                *allowed,
                "{method} {path} (watch: {watch})"
            );
        }
        assert!(allows(&chain, &who, None).await, "discovery");
    }

    /// Creates `obj` of `plural` (RBAC's group) as the server.
    async fn put(reg: &Registry, plural: &str, ns: Option<&str>, obj: serde_json::Value) {
        if let Some(ns) = ns {
            let namespaces = api::resources::find("", "v1", "namespaces").unwrap();
            let namespace = json!({"metadata": {"name": ns}});
            let _ = reg
                .create(namespaces, None, namespace, Caller::SERVER)
                .await;
        }
        let r = api::resources::find("rbac.authorization.k8s.io", "v1", plural).unwrap();
        reg.create(r, ns, obj, Caller::SERVER).await.unwrap();
    }

    /// A `pod-reader` ClusterRole (get and list pods) bound in namespace `e` to `subject`.
    async fn pod_reader_in_e(reg: &Registry, subject: serde_json::Value) {
        let rules = json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]);
        let role = json!({"metadata": {"name": "pod-reader"}, "rules": rules});
        put(reg, "clusterroles", None, role).await;
        let role_ref = json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pod-reader"});
        let binding =
            json!({"metadata": {"name": "readers"}, "roleRef": role_ref, "subjects": [subject]});
        put(reg, "rolebindings", Some("e"), binding).await;
    }

    #[tokio::test]
    async fn rbac_allows_what_bindings_grant_where_they_grant_it() {
        let (_dir, reg, chain) = chain().await;
        let bob = Identity::new("bob".into(), vec![]);
        put(&reg, "rolebindings", Some("d"), json!({"metadata": {"name": "bob-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "bob"}]})).await;
        pod_reader_in_e(
            &reg,
            json!({"kind": "Group", "name": "system:authenticated"}),
        )
        .await;
        for (method, path, allowed) in [
            ("GET", "/api/v1/namespaces/e/pods", true),
            ("DELETE", "/api/v1/namespaces/e/pods/p", false),
            ("GET", "/api/v1/namespaces/f/pods", false),
            ("GET", "/api/v1/pods", false),
        ] {
            let request = parse(path, method, false);
            assert_eq!(
                allows(&chain, &bob, Some(&request)).await,
                allowed,
                "{method} {path}"
            );
        }
        assert!(allows(&chain, &bob, None).await, "system:discovery");
        // `view` is aggregated by a controller this test does not run: it has no rules yet.
        let Decision::NoOpinion(reason) = decide(
            &chain,
            &bob,
            Some(&parse("/api/v1/namespaces/d/pods", "GET", false)),
        )
        .await
        else {
            panic!("view has no rules without its controller");
        };
        assert_eq!(reason, "");
        put(
            &reg,
            "rolebindings",
            Some("d"),
            json!({"metadata": {"name": "dangling"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gone"},
            "subjects": [{"kind": "User", "name": "bob"}]}),
        )
        .await;
        // The binding reaches RBAC's copy through its watch: wait for it, boundedly.
        let secrets = parse("/api/v1/namespaces/d/secrets", "GET", false);
        let want =
            Decision::NoOpinion(r#"RBAC: role.rbac.authorization.k8s.io "gone" not found"#.into());
        let mut last = None;
        for _ in 0..100 {
            let got = decide(&chain, &bob, Some(&secrets)).await;
            if got == want {
                return;
            }
            last = Some(got);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the missing role was never reported: {last:?}");
    }

    #[tokio::test]
    async fn access_reviews_answer_from_the_chain() {
        let (_dir, reg, chain) = chain().await;
        let find = |p| api::resources::find("authorization.k8s.io", "v1", p).unwrap();
        let bob = Identity::new("bob".into(), vec![]);
        pod_reader_in_e(&reg, json!({"kind": "User", "name": "bob"})).await;
        let ask = |verb: &str, ns: &str| {
            json!({"apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"namespace": ns, "verb": verb, "resource": "pods"}}})
        };
        let ssar = find("selfsubjectaccessreviews");
        let answer = review::answer(&chain, &reg, &bob, ssar, None, ask("list", "e"))
            .await
            .unwrap();
        let reason =
            r#"RBAC: allowed by RoleBinding "readers/e" of ClusterRole "pod-reader" to User "bob""#;
        assert_eq!(answer["status"], json!({"allowed": true, "reason": reason}));
        let answer = review::answer(&chain, &reg, &bob, ssar, None, ask("delete", "e"))
            .await
            .unwrap();
        assert_eq!(answer["status"], json!({"allowed": false}));
        let sar = find("subjectaccessreviews");
        let nobody = json!({"spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}});
        let refused = review::answer(&chain, &reg, &bob, sar, None, nobody)
            .await
            .unwrap_err();
        assert_eq!(refused.code, 422);
        assert!(
            refused.message.ends_with(
                "spec.user: Invalid value: \"\": at least one of user or group must be specified"
            ),
            "{}",
            refused.message
        );
        let as_bob = json!({"spec": {"user": "bob", "resourceAttributes": {"namespace": "e", "verb": "get", "resource": "pods", "name": "p"}}});
        let answer = review::answer(&chain, &reg, &bob, sar, None, as_bob)
            .await
            .unwrap();
        assert_eq!(answer["status"]["allowed"], true);
        let rules = json!({"spec": {"namespace": "e"}});
        let ssrr = find("selfsubjectrulesreviews");
        let answer = review::answer(&chain, &reg, &bob, ssrr, None, rules)
            .await
            .unwrap();
        let status = &answer["status"];
        assert_eq!(status["incomplete"], false);
        assert!(status["resourceRules"].as_array().unwrap().contains(
            &json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]})
        ));
        assert!(status["resourceRules"].as_array().unwrap().contains(
            &json!({"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]})), "{status}");
        assert!(!status["nonResourceRules"].as_array().unwrap().is_empty());
    }
}
