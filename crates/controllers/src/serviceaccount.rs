//! The service-account controller (`serviceaccount-controller`), as upstream's: every
//! active namespace has a ServiceAccount named `default`, created when the namespace appears
//! and again whenever it is deleted. Namespaces being terminated are left alone.

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::runtime::{self, Informers, Shared};

/// The controller's name.
const NAME: &str = "serviceaccount-controller";

/// The ServiceAccount every namespace has.
const DEFAULT: &str = "default";

struct Ctx {
    client: kube::Client,
    accounts: Store<ServiceAccount>,
}

/// Starts the controller: a loop over namespaces, woken when a `default` ServiceAccount
/// changes or goes.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        accounts: informers.store::<ServiceAccount>(),
    });
    let controller = Controller::for_stream(
        informers.subscribe::<Namespace>(),
        informers.store::<Namespace>(),
    )
    .watches_stream(
        informers.subscribe::<ServiceAccount>(),
        |sa: ServiceAccount| {
            (sa.name_any() == DEFAULT).then(|| ObjectRef::new(&sa.namespace().unwrap_or_default()))
        },
    );
    runtime::run(NAME, controller, shared, ctx, reconcile)
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> runtime::Result<Action> {
    let name = ns.name_any();
    let present = ctx
        .accounts
        .get(&ObjectRef::new(DEFAULT).within(&name))
        .is_some();
    if !is_active(&ns) || present {
        return Ok(Action::await_change());
    }
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT.into()),
            namespace: Some(name),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Action::await_change()),
        Err(e) if namespace_terminating(&e) => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// Whether `ns` is Active and not being deleted: the namespaces controllers fill.
pub(crate) fn is_active(ns: &Namespace) -> bool {
    let phase = ns.status.as_ref().and_then(|s| s.phase.as_deref());
    ns.metadata.deletion_timestamp.is_none() && phase == Some("Active")
}

/// Whether a create failed because its namespace is being terminated: such work is dropped,
/// as upstream's controllers drop it, since it would keep failing.
pub(crate) fn namespace_terminating(e: &kube::Error) -> bool {
    let kube::Error::Api(s) = e else {
        return false;
    };
    let cause = s
        .details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"));
    s.code == 403 && (cause || s.message.contains("because it is being terminated"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_active_namespaces_are_filled() {
        let ns = |v| serde_json::from_value::<Namespace>(v).unwrap();
        assert!(is_active(&ns(
            json!({"metadata": {"name": "a"}, "status": {"phase": "Active"}})
        )));
        assert!(!is_active(&ns(
            json!({"metadata": {"name": "a"}, "status": {"phase": "Terminating"}})
        )));
        assert!(!is_active(&ns(json!({"metadata": {"name": "a",
            "deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Active"}}))));
    }

    #[test]
    fn terminating_namespaces_are_told_by_the_refusal() {
        let refusal = |code, message: &str| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                message: message.into(),
                ..kube::core::Status::failure(message, "Forbidden")
            }))
        };
        assert!(namespace_terminating(&refusal(
            403,
            "serviceaccounts \"default\" is forbidden: unable to create new content in \
             namespace x because it is being terminated"
        )));
        assert!(!namespace_terminating(&refusal(403, "forbidden by policy")));
        assert!(!namespace_terminating(&refusal(409, "already exists")));
    }
}
