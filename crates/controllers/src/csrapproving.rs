//! The CSR approver (`certificatesigningrequest-approving-controller`, upstream's
//! `csrapproving`, `pkg/controller/certificates/approver/sarapprove.go`): approves node agents'
//! requests for client certificates, so that `rudder agent --token` can join.
//!
//! A pending request for signer `kubernetes.io/kube-apiserver-client-kubelet` that passes
//! upstream's kubelet client checks (CN `system:node:<name>`, O exactly `system:nodes`, no
//! subject alternative names, usages digital signature and client auth) is approved when the
//! node asks for itself (`spec.username` is the CN, in `system:nodes`: upstream's
//! `selfnodeclient`) or a bootstrapper, or an admin, asks (`nodeclient`). Upstream asks a
//! SubjectAccessReview for those two permissions, which kubeadm and k3s bind to these groups;
//! Rudder's bootstrap policy has no such bindings, so the groups decide.
//!
//! Requests for `kubernetes.io/kubelet-serving` are approved too when a node asks for its own
//! name: upstream leaves these to the admin (or an external approver), as only they know
//! which names and addresses a node may claim; k3s hands its agents serving certificates
//! without asking anyone, and Rudder does likewise, so that the API server can reach a joined
//! agent's HTTPS endpoint (logs). Approval is written through the `approval` subresource; the
//! signer ([`crate::csrsigning`]) does the rest.

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestStatus,
};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};

use crate::certificates::{self as certs, NODES};
use crate::runtime::{self, Informers, Result, Shared};

/// The controller's name.
const NAME: &str = "certificatesigningrequest-approving-controller";

/// Upstream's messages, by what was recognized.
const SELF_CLIENT: &str =
    "Auto approving self kubelet client certificate after SubjectAccessReview.";
const CLIENT: &str = "Auto approving kubelet client certificate after SubjectAccessReview.";
const SELF_SERVING: &str = "Auto approving self kubelet serving certificate.";

struct Ctx {
    client: kube::Client,
}

/// Starts the approver.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
    });
    let controller = Controller::for_stream(
        informers.subscribe::<CertificateSigningRequest>(),
        informers.store::<CertificateSigningRequest>(),
    );
    runtime::run(NAME, controller, shared, ctx, reconcile)
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Ctx>) -> Result<Action> {
    let Some(message) = decide(&csr).map_err(|e| runtime::Error::Failed(e.to_string()))? else {
        return Ok(Action::await_change());
    };
    let mut approved = (*csr).clone();
    approved
        .status
        .get_or_insert_with(CertificateSigningRequestStatus::default)
        .conditions
        .get_or_insert_with(Vec::new)
        .push(certs::condition("Approved", "AutoApproved", message));
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    api.replace_subresource(
        "approval",
        &csr.name_any(),
        &PostParams::default(),
        &approved,
    )
    .await?;
    tracing::info!("{NAME}: approved {}: {message}", csr.name_any());
    Ok(Action::await_change())
}

/// The approval message for `csr`, if this controller approves it; nothing for requests
/// already decided or issued, or not recognized. A request that does not parse is an error.
fn decide(csr: &CertificateSigningRequest) -> Result<Option<&'static str>, String> {
    if certs::issued(csr)
        || certs::has_condition(csr, "Approved")
        || certs::has_condition(csr, "Denied")
    {
        return Ok(None);
    }
    let signer = csr.spec.signer_name.as_str();
    if signer != certs::KUBELET_CLIENT_SIGNER && signer != certs::KUBELET_SERVING_SIGNER {
        return Ok(None);
    }
    let req = certs::parse(&csr.spec.request.0)
        .map_err(|e| format!("unable to parse csr {:?}: {e}", csr.name_any()))?;
    let usages = certs::usages(csr);
    let user = csr.spec.username.as_deref().unwrap_or("");
    let groups = csr.spec.groups.as_deref().unwrap_or_default();
    let member = |g: &str| groups.iter().any(|x| x == g);
    let itself = !user.is_empty() && user == req.common_name && member(NODES);
    Ok(match signer {
        certs::KUBELET_CLIENT_SIGNER => {
            if certs::validate_kubelet_client(&req, &usages).is_err() {
                None
            } else if itself {
                Some(SELF_CLIENT)
            } else if (member("system:bootstrappers") && user.starts_with("system:bootstrap:"))
                || member("system:masters")
            {
                Some(CLIENT)
            } else {
                None
            }
        }
        _ => (itself && certs::validate_kubelet_serving(&req, &usages).is_ok())
            .then_some(SELF_SERVING),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificates::testing::{NODE_AND_MASTERS, csr, request_pem};
    use crate::certificates::{CLIENT_SIGNER, KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER};

    const BOOTSTRAP: (&str, &[&str]) = ("system:bootstrap:abcdef", &["system:bootstrappers"]);
    const NODE_A: (&str, &[&str]) = ("system:node:a", &["system:nodes"]);
    const NODE_B: (&str, &[&str]) = ("system:node:b", &["system:nodes"]);
    const ADMIN: (&str, &[&str]) = ("system:admin", &["system:masters"]);
    const BOB: (&str, &[&str]) = ("bob", &["dev"]);
    const CLIENT_USAGES: &[&str] = &["digital signature", "client auth"];
    const SERVING_USAGES: &[&str] = &["digital signature", "key encipherment", "server auth"];

    #[test]
    fn who_gets_which_certificate_approved() {
        let node_a = request_pem("system:node:a", &["system:nodes"], &[]);
        let masters = request_pem("system:node:a", &["system:masters"], &[]);
        let with_san = request_pem("system:node:a", &["system:nodes"], &["a"]);
        let alice = request_pem("alice", &["system:nodes"], &[]);
        let serving_a = request_pem("system:node:a", &["system:nodes"], &["a", "10.0.0.1"]);
        let serving_bare = request_pem("system:node:a", &["system:nodes"], &[]);
        type Row<'a> = (
            &'a str,
            &'a str,
            &'a [&'a str],
            (&'a str, &'a [&'a str]),
            Option<&'a str>,
        );
        #[rustfmt::skip]
        let table: &[Row<'_>] = &[
            // Client certificates: the bootstrapper, the node itself, an admin.
            (&node_a, KUBELET_CLIENT_SIGNER, CLIENT_USAGES, BOOTSTRAP, Some(CLIENT)),
            (&node_a, KUBELET_CLIENT_SIGNER, &["key encipherment", "digital signature", "client auth"], BOOTSTRAP, Some(CLIENT)),
            (&node_a, KUBELET_CLIENT_SIGNER, CLIENT_USAGES, NODE_A, Some(SELF_CLIENT)),
            (&node_a, KUBELET_CLIENT_SIGNER, CLIENT_USAGES, ADMIN, Some(CLIENT)),
            // Another node, or anyone else, may not ask for node a.
            (&node_a, KUBELET_CLIENT_SIGNER, CLIENT_USAGES, NODE_B, None),
            (&node_a, KUBELET_CLIENT_SIGNER, CLIENT_USAGES, BOB, None),
            // Requests that are not a kubelet's client certificate.
            (&masters, KUBELET_CLIENT_SIGNER, CLIENT_USAGES, BOOTSTRAP, None),
            (NODE_AND_MASTERS, KUBELET_CLIENT_SIGNER, CLIENT_USAGES, BOOTSTRAP, None),
            (NODE_AND_MASTERS, KUBELET_CLIENT_SIGNER, CLIENT_USAGES, NODE_A, None),
            (&with_san, KUBELET_CLIENT_SIGNER, CLIENT_USAGES, BOOTSTRAP, None),
            (&alice, KUBELET_CLIENT_SIGNER, CLIENT_USAGES, BOOTSTRAP, None),
            (&node_a, KUBELET_CLIENT_SIGNER, &["client auth"], BOOTSTRAP, None),
            (&node_a, KUBELET_CLIENT_SIGNER, &["digital signature", "client auth", "server auth"], BOOTSTRAP, None),
            (&node_a, CLIENT_SIGNER, CLIENT_USAGES, BOOTSTRAP, None),
            (&node_a, "example.com/other", CLIENT_USAGES, ADMIN, None),
            // Serving certificates: only the node itself, for its own name.
            (&serving_a, KUBELET_SERVING_SIGNER, SERVING_USAGES, NODE_A, Some(SELF_SERVING)),
            (&serving_a, KUBELET_SERVING_SIGNER, &["digital signature", "server auth"], NODE_A, Some(SELF_SERVING)),
            (&serving_a, KUBELET_SERVING_SIGNER, SERVING_USAGES, NODE_B, None),
            (&serving_a, KUBELET_SERVING_SIGNER, SERVING_USAGES, BOOTSTRAP, None),
            (&serving_a, KUBELET_SERVING_SIGNER, SERVING_USAGES, ADMIN, None),
            (&serving_bare, KUBELET_SERVING_SIGNER, SERVING_USAGES, NODE_A, None),
            (&serving_a, KUBELET_SERVING_SIGNER, CLIENT_USAGES, NODE_A, None),
        ];
        for (i, (pem, signer, usages, (user, groups), want)) in table.iter().enumerate() {
            let got = decide(&csr(pem, signer, usages, user, groups)).unwrap();
            assert_eq!(got, *want, "row {i}: {user} asking {signer} for {usages:?}");
        }
    }

    #[test]
    fn decided_or_issued_requests_are_left_alone() {
        let pem = request_pem("system:node:a", &["system:nodes"], &[]);
        let pending = csr(
            &pem,
            KUBELET_CLIENT_SIGNER,
            CLIENT_USAGES,
            BOOTSTRAP.0,
            BOOTSTRAP.1,
        );
        for (ty, certificate) in [("Approved", false), ("Denied", false), ("Failed", true)] {
            let mut c = pending.clone();
            c.status = Some(CertificateSigningRequestStatus {
                conditions: Some(vec![certs::condition(ty, "Because", "so")]),
                certificate: certificate.then(|| k8s_openapi::ByteString(b"cert".to_vec())),
            });
            assert_eq!(decide(&c).unwrap(), None, "{ty}");
        }
        let mut garbled = pending.clone();
        garbled.spec.request = k8s_openapi::ByteString(b"garbage".to_vec());
        assert!(
            decide(&garbled)
                .unwrap_err()
                .contains("unable to parse csr")
        );
    }
}
