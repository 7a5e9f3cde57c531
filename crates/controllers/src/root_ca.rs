//! The root CA publisher (`root-ca-certificate-publisher-controller`), as upstream's: every
//! active namespace has a ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA
//! certificate (PEM), so pods can verify the API server. It is created when the namespace
//! appears, and restored when it is deleted or its data changed. Without a CA to publish the
//! controller does nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::runtime::{self, Informers, Shared};
use crate::serviceaccount::{is_active, namespace_terminating};

/// The controller's name.
const NAME: &str = "root-ca-certificate-publisher-controller";

/// The ConfigMap in every namespace.
const CONFIG_MAP: &str = "kube-root-ca.crt";

/// Its key holding the certificate.
const KEY: &str = "ca.crt";

/// The annotation describing it, and upstream's words for it.
const DESCRIPTION: (&str, &str) = (
    "kubernetes.io/description",
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal \
     endpoints such as the internal service IP or kubernetes.default.svc. No other usage is \
     guaranteed across distributions of Kubernetes clusters.",
);

struct Ctx {
    client: kube::Client,
    config_maps: Store<ConfigMap>,
    ca: String,
}

/// Starts the controller: a loop over namespaces, woken when a `kube-root-ca.crt` changes
/// or goes. Nothing runs without a CA ([`crate::Options::root_ca`]).
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let Some(ca) = shared.options.root_ca.clone() else {
        tracing::info!("{NAME}: no root CA certificate to publish");
        return futures::future::ready(()).boxed();
    };
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        config_maps: informers.store::<ConfigMap>(),
        ca,
    });
    let controller = Controller::for_stream(
        informers.subscribe::<Namespace>(),
        informers.store::<Namespace>(),
    )
    .watches_stream(informers.subscribe::<ConfigMap>(), |cm: ConfigMap| {
        (cm.name_any() == CONFIG_MAP).then(|| ObjectRef::new(&cm.namespace().unwrap_or_default()))
    });
    runtime::run(NAME, controller, shared, ctx, reconcile)
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> runtime::Result<Action> {
    if !is_active(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let current = ctx
        .config_maps
        .get(&ObjectRef::new(CONFIG_MAP).within(&name));
    let Some(want) = desired(&name, current.as_deref(), &ctx.ca) else {
        return Ok(Action::await_change());
    };
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let written = match current {
        None => api.create(&PostParams::default(), &want).await,
        Some(_) => api.replace(CONFIG_MAP, &PostParams::default(), &want).await,
    };
    match written {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if namespace_terminating(&e) => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// The ConfigMap namespace `ns` should have, built on `current` (the stored one, whose other
/// annotations and metadata are kept); nothing when `current` is right: data exactly
/// `ca.crt` = `ca`, and a description.
fn desired(ns: &str, current: Option<&ConfigMap>, ca: &str) -> Option<ConfigMap> {
    let data = BTreeMap::from([(KEY.to_string(), ca.to_string())]);
    if let Some(cm) = current {
        let described = cm
            .annotations()
            .get(DESCRIPTION.0)
            .is_some_and(|d| !d.is_empty());
        if cm.data.as_ref() == Some(&data) && described {
            return None;
        }
    }
    let mut want = current.cloned().unwrap_or_else(|| ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIG_MAP.into()),
            namespace: Some(ns.into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    });
    want.annotations_mut()
        .insert(DESCRIPTION.0.into(), DESCRIPTION.1.into());
    want.data = Some(data);
    Some(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_map_is_created_restored_and_otherwise_left_alone() {
        let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let fresh = desired("team", None, ca).unwrap();
        assert_eq!(fresh.name_any(), CONFIG_MAP);
        assert_eq!(fresh.namespace().as_deref(), Some("team"));
        assert_eq!(fresh.data.as_ref().unwrap()[KEY], ca);
        assert!(fresh.annotations()[DESCRIPTION.0].starts_with("Contains a CA bundle"));
        assert_eq!(desired("team", Some(&fresh), ca), None);
        // Edited data, an extra key or a lost description are put back; other annotations stay.
        let mut edited = fresh.clone();
        edited
            .data
            .as_mut()
            .unwrap()
            .insert("extra".into(), "x".into());
        edited.annotations_mut().insert("mine".into(), "yes".into());
        let restored = desired("team", Some(&edited), ca).unwrap();
        assert_eq!(restored.data, fresh.data);
        assert_eq!(restored.annotations()["mine"], "yes");
        let mut bare = fresh.clone();
        bare.metadata.annotations = None;
        assert!(desired("team", Some(&bare), ca).is_some());
        // A new CA is published.
        assert!(desired("team", Some(&fresh), "other").is_some());
    }
}
