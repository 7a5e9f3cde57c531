//! Conformance, network: the APIs of networking objects through the API server alone:
//! IngressClasses, Ingresses (with their status) and EndpointSlices (discovery and every
//! verb), and a v1 Endpoints object's lifecycle.

mod support;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use serde_json::json;
use support::{annotation, discovered, every_verb, labelled, next, object};
use testkit::TestServer;

// conformance: 456
#[tokio::test]
async fn ingress_classes_are_discovered_and_serve_every_verb() {
    let server = TestServer::start().await;
    let resources = discovered(&server, "networking.k8s.io/v1").await;
    assert!(
        resources.contains(&"ingressclasses".into()),
        "{resources:?}"
    );
    let api: Api<IngressClass> = Api::all(server.client());
    let spec = json!({"spec": {"controller": "example.com/controller"}});
    every_verb(&api, |name| object(name, spec.clone())).await;
}

fn ingress(name: &str) -> Ingress {
    let backend = json!({"service": {"name": "default-backend", "port": {"number": 8080}}});
    object(name, json!({"spec": {"defaultBackend": backend}}))
}

// conformance: 452
#[tokio::test]
async fn ingresses_are_discovered_and_serve_every_verb_and_status() {
    let server = TestServer::start().await;
    let resources = discovered(&server, "networking.k8s.io/v1").await;
    for name in ["ingresses", "ingresses/status"] {
        assert!(resources.contains(&name.into()), "{resources:?}");
    }
    let api: Api<Ingress> = Api::namespaced(server.client(), "default");
    every_verb(&api, ingress).await;
    let everywhere: Api<Ingress> = Api::all(server.client());
    assert!(everywhere.list(&labelled()).await.unwrap().items.is_empty());

    api.create(&PostParams::default(), &ingress("status-ingress"))
        .await
        .unwrap();
    let balancer = json!({"ingress": [{"ip": "169.1.1.1"}]});
    let patch = json!({"metadata": {"annotations": {"patchedstatus": "true"}},
        "status": {"loadBalancer": balancer}});
    let patched = api
        .patch_status(
            "status-ingress",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    assert_eq!(
        json!(patched.status.as_ref().unwrap().load_balancer),
        balancer
    );
    assert_eq!(
        annotation(&patched, "patchedstatus").as_deref(),
        Some("true")
    );

    let mut current = api.get_status("status-ingress").await.unwrap();
    let other = json!({"ingress": [{"ip": "169.1.1.2"}]});
    current.status.as_mut().unwrap().load_balancer =
        Some(serde_json::from_value(other.clone()).unwrap());
    let updated = api
        .replace_status("status-ingress", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(json!(updated.status.unwrap().load_balancer), other);
}

fn slice(name: &str) -> EndpointSlice {
    object(
        name,
        json!({
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["1.2.3.4", "5.6.7.8"]}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        }),
    )
}

// conformance: 440
#[tokio::test]
async fn endpoint_slices_are_discovered_and_serve_every_verb() {
    let server = TestServer::start().await;
    let resources = discovered(&server, "discovery.k8s.io/v1").await;
    assert!(
        resources.contains(&"endpointslices".into()),
        "{resources:?}"
    );
    let api: Api<EndpointSlice> = Api::namespaced(server.client(), "default");
    every_verb(&api, slice).await;
}

// conformance: 493
#[tokio::test]
async fn an_endpoints_object_is_updated_patched_and_deleted_by_label() {
    let server = TestServer::start().await;
    let api: Api<Endpoints> = Api::namespaced(server.client(), "default");
    let selector = "test-endpoint-static=true";
    let rv = api
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap();
    let watch = WatchParams::default().labels(selector);
    let mut events = api
        .watch(&watch, &rv.metadata.resource_version.unwrap())
        .await
        .unwrap()
        .boxed();
    let endpoints: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "testservice", "labels": {"test-endpoint-static": "true"}},
        "subsets": [{"addresses": [{"ip": "10.0.0.24"}], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}],
    }))
    .unwrap();
    api.create(&PostParams::default(), &endpoints)
        .await
        .unwrap();
    assert_eq!(next(&mut events).await, ("ADDED", "testservice".into()));

    let mut current = api.get("testservice").await.unwrap();
    let labels = current.metadata.labels.get_or_insert_default();
    labels.insert("test-service".into(), "updated".into());
    api.replace("testservice", &PostParams::default(), &current)
        .await
        .unwrap();
    let read = api.get("testservice").await.unwrap();
    assert_eq!(read.metadata.labels.unwrap()["test-service"], "updated");
    assert_eq!(next(&mut events).await, ("MODIFIED", "testservice".into()));

    let patch = json!({"metadata": {"labels": {"test-service": "patched"}},
        "subsets": [{"addresses": [{"ip": "10.0.0.25"}], "ports": [{"name": "http-test", "port": 8080, "protocol": "TCP"}]}]});
    api.patch(
        "testservice",
        &PatchParams::default(),
        &Patch::Strategic(&patch),
    )
    .await
    .unwrap();
    let subsets = api.get("testservice").await.unwrap().subsets.unwrap();
    assert_eq!(subsets[0].addresses.as_ref().unwrap()[0].ip, "10.0.0.25");
    assert_eq!(subsets[0].ports.as_ref().unwrap()[0].port, 8080);
    assert_eq!(next(&mut events).await, ("MODIFIED", "testservice".into()));

    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(selector),
    )
    .await
    .unwrap();
    assert_eq!(next(&mut events).await, ("DELETED", "testservice".into()));
    assert!(api.get_opt("testservice").await.unwrap().is_none());
}
