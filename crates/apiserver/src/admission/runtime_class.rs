//! `RuntimeClass`: a new pod's `runtimeClassName` must name a RuntimeClass (`pod rejected:
//! RuntimeClass "x" not found`); its fixed overhead becomes the pod's `spec.overhead`, and its
//! scheduling node selector and tolerations join the pod's.

use api::Status;
use futures::future::BoxFuture;
use serde_json::Value;

use super::{Attributes, Mutating, Operation, forbidden};
use crate::registry::Registry;

/// The step; it reads the class from the store.
pub(super) struct RuntimeClass;

impl Mutating for RuntimeClass {
    fn name(&self) -> &'static str {
        "RuntimeClass"
    }

    fn admit<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        pod: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            if a.is_pod() && a.operation == Operation::Create {
                runtime_class(reg, pod).await
            } else {
                Ok(())
            }
        })
    }
}

/// The pod takes its class' overhead and scheduling.
async fn runtime_class(reg: &Registry, pod: &mut Value) -> Result<(), Status> {
    let Some(class_name) = pod["spec"]["runtimeClassName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
    else {
        return Ok(());
    };
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let resource = api::resources::find("node.k8s.io", "v1", "runtimeclasses").expect("served");
    let class = match reg.get(resource, None, &class_name).await {
        Ok(c) => c,
        Err(s) if s.code == 404 => {
            return Err(forbidden(
                &name,
                format!("pod rejected: RuntimeClass {class_name:?} not found"),
            ));
        }
        Err(s) => return Err(s),
    };
    let overhead = &class["overhead"]["podFixed"];
    if !overhead.is_null() {
        let given = &pod["spec"]["overhead"];
        if !given.is_null() && given != overhead {
            return Err(forbidden(
                &name,
                "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead".into(),
            ));
        }
        pod["spec"]["overhead"] = overhead.clone();
    }
    let scheduling = &class["scheduling"];
    if let Some(selector) = scheduling["nodeSelector"].as_object() {
        let own = pod["spec"]["nodeSelector"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut merged = own.clone();
        for (k, v) in selector {
            match own.get(k) {
                Some(mine) if mine != v => {
                    return Err(forbidden(
                        &name,
                        "pod rejected: conflict: the pod's nodeSelector conflicts with the RuntimeClass's scheduling nodeSelector".into(),
                    ));
                }
                _ => {
                    merged.insert(k.clone(), v.clone());
                }
            }
        }
        pod["spec"]["nodeSelector"] = Value::Object(merged);
    }
    if let Some(tolerations) = scheduling["tolerations"].as_array() {
        let mut own = pod["spec"]["tolerations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for t in tolerations {
            if !own.contains(t) {
                own.push(t.clone());
            }
        }
        pod["spec"]["tolerations"] = Value::Array(own);
    }
    Ok(())
}
