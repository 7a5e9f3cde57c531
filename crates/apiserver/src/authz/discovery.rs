//! Every authenticated user may read discovery and the other non-resource paths behind
//! `/api` and `/apis` (upstream grants this through RBAC's `system:discovery` role, bound to
//! `system:authenticated`; this module goes when RBAC's bootstrap policy comes).

use api::Status;
use futures::future::BoxFuture;

use super::{Attributes, Authorizer, Decision};

/// Allows non-resource requests.
pub(super) struct Discovery;

impl Authorizer for Discovery {
    fn authorize<'a>(&'a self, a: &'a Attributes<'a>) -> BoxFuture<'a, Result<Decision, Status>> {
        let decision = match a.request {
            None => Decision::Allow,
            Some(_) => Decision::NoOpinion(String::new()),
        };
        Box::pin(async { Ok(decision) })
    }
}
