//! `StorageObjectInUseProtection`: a new PersistentVolumeClaim gets the
//! `kubernetes.io/pvc-protection` finalizer and a new PersistentVolume the
//! `kubernetes.io/pv-protection` one, so neither goes while in use: the `pvc-protection` and
//! `pv-protection` controllers remove them once no pod uses the claim, or once the volume is
//! no longer bound.

use api::Status;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Attributes, Mutating, Operation};
use crate::registry::Registry;

/// The step.
pub(super) struct StorageObjectInUseProtection;

impl Mutating for StorageObjectInUseProtection {
    fn name(&self) -> &'static str {
        "StorageObjectInUseProtection"
    }

    fn admit<'a>(
        &'a self,
        _reg: &'a Registry,
        a: &'a Attributes<'a>,
        obj: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            let r = a.resource;
            let finalizer = match r.plural.as_str() {
                "persistentvolumeclaims" => "kubernetes.io/pvc-protection",
                "persistentvolumes" => "kubernetes.io/pv-protection",
                _ => return Ok(()),
            };
            if r.group.is_empty() && a.subresource.is_none() && a.operation == Operation::Create {
                add_finalizer(obj, finalizer);
            }
            Ok(())
        })
    }
}

/// Adds `finalizer` to `obj`'s unless it is there.
fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let list = &mut obj["metadata"]["finalizers"];
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(items) = list.as_array_mut()
        && !items.iter().any(|f| f == finalizer)
    {
        items.push(json!(finalizer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finalizer_is_added_once() {
        let mut claim = json!({"metadata": {"name": "data"}});
        add_finalizer(&mut claim, "kubernetes.io/pvc-protection");
        add_finalizer(&mut claim, "kubernetes.io/pvc-protection");
        assert_eq!(
            claim["metadata"]["finalizers"],
            json!(["kubernetes.io/pvc-protection"])
        );
        let mut kept = json!({"metadata": {"finalizers": ["example.com/keep"]}});
        add_finalizer(&mut kept, "kubernetes.io/pv-protection");
        assert_eq!(
            kept["metadata"]["finalizers"],
            json!(["example.com/keep", "kubernetes.io/pv-protection"])
        );
    }
}
