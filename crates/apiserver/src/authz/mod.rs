//! Authorization: whether an authenticated user may make a request. Authorizers are asked in
//! order, as upstream's union authorizer asks them: the first to allow or deny decides; when
//! every one has no opinion the request is refused, with their reasons. The chain today:
//! [`privileged::PrivilegedGroups`] (`system:masters`), [`discovery::Discovery`] (non-resource
//! paths for every authenticated user), [`node::NodeAuthorizer`] (node agents: upstream's Node
//! authorizer, rules and relationships) and [`bootstrap::Bootstrappers`] (joining nodes). RBAC
//! will be one more module and one more line in [`Chain::new`].

mod bootstrap;
mod discovery;
pub mod node;
mod privileged;

use api::Status;
use api::request::{RequestInfo, Target};
use futures::future::BoxFuture;

use crate::authn::Identity;
use crate::registry::Registry;

/// What an authorizer concludes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The request may go on.
    Allow,
    /// The request is refused, whatever later authorizers would say; with the reason.
    Deny(String),
    /// This authorizer does not decide; the reason (possibly empty) is kept for the refusal.
    NoOpinion(String),
}

/// What the authorizers see of a request (upstream's `authorizer.Attributes`).
pub struct Attributes<'a> {
    /// Who asks.
    pub user: &'a Identity,
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
            Box::new(discovery::Discovery),
            Box::new(node::NodeAuthorizer::new(registry)),
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

/// The refusal of `target` (at `path`) for `user`, with the authorizers' reason, in upstream's
/// words.
pub fn forbidden(target: &Target, path: &str, user: &str, reason: &str) -> Status {
    let s = match target {
        Target::Resource(info) => Status::forbidden(
            &info.resource,
            info.name.as_deref().unwrap_or(""),
            user,
            info.verb,
            info.namespace.as_deref(),
        ),
        _ => Status::new(
            403,
            "Forbidden",
            format!("forbidden: User \"{user}\" cannot get path \"{path}\""),
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
        (dir, reg.clone(), Chain::new(reg))
    }

    async fn decide(chain: &Chain, who: &Identity, request: Option<&RequestInfo>) -> Decision {
        // A non-resource request here is discovery's.
        let a = Attributes {
            user: who,
            request,
            path: "/api",
        };
        chain.authorize(&a).await.unwrap()
    }

    async fn allows(chain: &Chain, who: &Identity, request: Option<&RequestInfo>) -> bool {
        decide(chain, who, request).await == Decision::Allow
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
        let target = Target::Resource(other);
        assert_eq!(
            forbidden(&target, "", &node.user, &reason).message,
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
}
