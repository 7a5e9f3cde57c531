//! `NamespaceLifecycle`: nothing new is created in a namespace that does not exist or is
//! being terminated.

use api::Status;
use futures::future::BoxFuture;
use serde_json::Value;

use super::{Attributes, Operation, Validating, forbidden_as, name_of};
use crate::registry::Registry;

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
            let Some(ns) = a.namespace.filter(|_| a.resource.namespaced) else {
                return Ok(());
            };
            if a.operation != Operation::Create {
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
