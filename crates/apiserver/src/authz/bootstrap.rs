//! Bootstrappers (the join token's `system:bootstrappers`) may create and read
//! CertificateSigningRequests, as upstream's `system:node-bootstrapper` ClusterRole lets them.

use api::Status;
use futures::future::BoxFuture;

use super::{Attributes, Authorizer, Decision};
use crate::authn::BOOTSTRAPPERS;

/// Allows what joining a node takes.
pub(super) struct Bootstrappers;

impl Authorizer for Bootstrappers {
    fn authorize<'a>(&'a self, a: &'a Attributes<'a>) -> BoxFuture<'a, Result<Decision, Status>> {
        let allowed = a.member(BOOTSTRAPPERS)
            && a.request.is_some_and(|info| {
                info.resource.group == "certificates.k8s.io"
                    && info.resource.plural == "certificatesigningrequests"
                    && info.subresource.is_none()
                    && ["create", "get", "list", "watch"].contains(&a.verb)
            });
        let decision = if allowed {
            Decision::Allow(String::new())
        } else {
            Decision::NoOpinion(String::new())
        };
        Box::pin(async { Ok(decision) })
    }
}
