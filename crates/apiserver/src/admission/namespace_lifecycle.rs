//! `NamespaceLifecycle`: nothing new is created in a namespace that does not exist or is
//! being terminated, and the namespaces the cluster cannot do without are never deleted.

use api::Status;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Attributes, Operation, Validating, forbidden_as, name_of};
use crate::registry::Registry;

/// The namespaces never deleted.
const IMMORTAL_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

/// The step; it reads the namespace from the store.
pub(super) struct NamespaceLifecycle;

impl Validating for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }

    fn validate<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        obj: &'a Value,
    ) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            if a.operation == Operation::Delete {
                return deletable(a, obj);
            }
            let Some(ns) = a.namespace.filter(|_| a.resource.namespaced) else {
                return Ok(());
            };
            // Creates of objects only: an eviction in a namespace being emptied goes on.
            if a.operation != Operation::Create || a.subresource.is_some() {
                return Ok(());
            }
            let namespaces =
                api::resources::find("", "v1", "namespaces").expect("namespaces are served");
            let namespace = reg.get(namespaces, None, ns).await?;
            if namespace["status"]["phase"] == "Terminating" {
                let why = format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                );
                return Err(forbidden_as(a.resource, &name_of(obj), &why));
            }
            Ok(())
        })
    }
}

/// Refuses to delete a namespace the cluster cannot do without, in upstream's words.
fn deletable(a: &Attributes<'_>, obj: &Value) -> Result<(), Status> {
    let name = name_of(obj);
    let namespace = a.resource.group.is_empty() && a.resource.plural == "namespaces";
    if namespace && IMMORTAL_NAMESPACES.contains(&name.as_str()) {
        return Err(Status {
            details: Some(json!({"name": name, "kind": "namespaces"})),
            ..forbidden_as(a.resource, &name, "this namespace may not be deleted")
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    use crate::authn::Identity;
    use crate::registry::Caller;

    #[tokio::test]
    async fn deletes_pass_the_chain_and_the_cluster_keeps_its_namespaces() {
        let (_dir, reg) = crate::registry::scratch(&["default", "scratch"]).await;
        let namespaces = api::resources::find("", "v1", "namespaces").unwrap();
        let admin = Identity {
            user: "admin".into(),
            groups: vec!["system:masters".into()],
        };
        let caller = Caller {
            user: Some(&admin),
            dry_run: false,
        };
        let opts = Default::default();
        let refused = reg
            .delete(namespaces, None, "default", &opts, caller)
            .await
            .unwrap_err();
        assert_eq!(
            (refused.code, refused.message.as_str()),
            (
                403,
                "namespaces \"default\" is forbidden: this namespace may not be deleted"
            )
        );
        let gone = reg
            .delete(namespaces, None, "scratch", &opts, caller)
            .await
            .unwrap();
        assert_eq!(gone["status"]["phase"], "Terminating");
    }
}
