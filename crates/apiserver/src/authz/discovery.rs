//! Every authenticated user may read discovery and the other non-resource paths behind
//! `/api` and `/apis` (upstream grants this through RBAC's `system:discovery` role, bound to
//! `system:authenticated`; this module goes when RBAC's bootstrap policy comes). `/metrics`
//! is not among them: upstream's `system:monitoring` role grants it, to the
//! `system:monitoring` group (and `system:masters` may do everything).

use api::Status;
use futures::future::BoxFuture;

use super::{Attributes, Authorizer, Decision};

/// The non-resource paths only monitoring may read.
const MONITORING_PATHS: &[&str] = &["/metrics"];

/// The group upstream's `system:monitoring` binding names.
const MONITORING_GROUP: &str = "system:monitoring";

/// Allows non-resource requests.
pub(super) struct Discovery;

impl Authorizer for Discovery {
    fn authorize<'a>(&'a self, a: &'a Attributes<'a>) -> BoxFuture<'a, Result<Decision, Status>> {
        let decision = match a.request {
            None if !MONITORING_PATHS.contains(&a.path) => Decision::Allow,
            None if a.member(MONITORING_GROUP) => Decision::Allow,
            _ => Decision::NoOpinion(String::new()),
        };
        Box::pin(async { Ok(decision) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::Identity;

    async fn decide(user: &Identity, path: &str) -> Decision {
        let a = Attributes {
            user,
            request: None,
            path,
        };
        Discovery.authorize(&a).await.unwrap()
    }

    #[tokio::test]
    async fn metrics_are_for_monitoring_and_discovery_for_everyone() {
        let bob = Identity::new("bob".into(), vec![]);
        let prometheus = Identity::new("prom".into(), vec![MONITORING_GROUP.into()]);
        assert_eq!(decide(&bob, "/apis").await, Decision::Allow);
        assert_eq!(
            decide(&bob, "/metrics").await,
            Decision::NoOpinion(String::new())
        );
        assert_eq!(decide(&prometheus, "/metrics").await, Decision::Allow);
    }
}
