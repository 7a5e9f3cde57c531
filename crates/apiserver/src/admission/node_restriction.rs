//! `NodeRestriction`, its pod half: a node agent (`system:node:<name>`) changes the status
//! of, deletes and evicts only the pods bound to it. Which Node and Lease a node may write is
//! the Node authorizer's (`authz::node`), since the URL names them.

use api::Status;
use futures::future::BoxFuture;
use serde_json::Value;

use super::{Attributes, Operation, Validating, forbidden};
use crate::authz::node::node_name;
use crate::registry::Registry;

/// The step; it reads an evicted pod from the store.
pub(super) struct NodeRestriction;

impl Validating for NodeRestriction {
    fn name(&self) -> &'static str {
        "NodeRestriction"
    }

    fn validate<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        obj: &'a Value,
    ) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            let Some(node) = a.user.and_then(node_name) else {
                return Ok(());
            };
            let r = a.resource;
            if !(r.group.is_empty() && r.plural == "pods") {
                return Ok(());
            }
            let (what, pod) = match (a.operation, a.subresource) {
                (Operation::Update, Some("status")) => ("update pod status for", a.old),
                (Operation::Delete, None) => ("delete", a.old),
                (Operation::Create, Some("eviction")) => ("evict", None),
                _ => return Ok(()),
            };
            let name = super::name_of(obj);
            let evicted;
            let pod = match pod {
                Some(pod) => pod,
                None => match reg.get(r, a.namespace, &name).await {
                    Ok(p) => {
                        evicted = p;
                        &evicted
                    }
                    // Not there: the eviction itself says so.
                    Err(Status { code: 404, .. }) => return Ok(()),
                    Err(s) => return Err(s),
                },
            };
            if pod["spec"]["nodeName"].as_str() == Some(node) {
                return Ok(());
            }
            Err(forbidden(
                &name,
                format!("node {node:?} can only {what} pods with spec.nodeName set to itself"),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::authn::Identity;
    use crate::registry::{Caller, DeleteOptions};

    #[tokio::test]
    async fn a_node_deletes_and_updates_only_its_own_pods() {
        let (_dir, reg) = crate::registry::scratch(&["default"]).await;
        let pods = api::resources::find("", "v1", "pods").unwrap();
        for (name, node) in [("mine", "n1"), ("theirs", "n2")] {
            let pod = json!({"metadata": {"name": name},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}});
            reg.create(pods, Some("default"), pod, Caller::SERVER)
                .await
                .unwrap();
        }
        let n1 = Identity {
            user: "system:node:n1".into(),
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
        };
        let caller = Caller {
            user: Some(&n1),
            dry_run: true,
        };
        let set_status = |p: &serde_json::Value| {
            let mut p = p.clone();
            p["status"]["phase"] = json!("Running");
            Ok(p)
        };
        let status = |name: &'static str| {
            reg.guaranteed_update(
                pods,
                Some("default"),
                name,
                caller,
                set_status,
                Some("status"),
            )
        };
        assert_eq!(
            status("theirs").await.unwrap_err().message,
            r#"pods "theirs" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set to itself"#
        );
        status("mine").await.unwrap();
        let options = DeleteOptions::default();
        let delete = |name: &'static str| reg.delete(pods, Some("default"), name, &options, caller);
        let refused = delete("theirs").await.unwrap_err();
        assert_eq!(refused.code, 403);
        assert_eq!(
            refused.message,
            r#"pods "theirs" is forbidden: node "n1" can only delete pods with spec.nodeName set to itself"#
        );
        delete("mine").await.unwrap();
    }
}
