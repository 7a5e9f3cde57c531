//! Conformance, node: API lifecycles that need no running pod: ConfigMaps (create, patch,
//! list by label, deletecollection), Secrets (create, list, patch of data and labels,
//! deletecollection), coordination.k8s.io Leases (create, get, update, patch, labelled list,
//! deletecollection, delete), node.k8s.io RuntimeClasses (discovery and every verb; a pod
//! naming a deleted one is refused), PodTemplates (patch, replace, list, deletecollection) and
//! a fake Node (create, patch, list, update, delete).

use std::collections::BTreeMap;

use futures::{Stream, StreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, PodTemplate, Secret};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;
use testkit::TestServer;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The status code of a failed request.
fn code(err: kube::Error) -> u16 {
    match err {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other}"),
    }
}

// conformance: 270
#[tokio::test]
async fn a_configmap_is_patched_listed_by_label_and_deleted_as_a_collection() {
    let server = TestServer::start().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "test-configmap", "labels": {"test-configmap-static": "true"}},
        "data": {"valueName": "value"},
    }))
    .unwrap();
    configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();

    let patch = json!({"metadata": {"labels": {"test-configmap": "patched"}},
        "data": {"valueName": "value1"}});
    configmaps
        .patch(
            "test-configmap",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let got = configmaps.get("test-configmap").await.unwrap();
    assert_eq!(got.data.unwrap()["valueName"], "value1");
    assert_eq!(got.metadata.labels.unwrap()["test-configmap"], "patched");

    let everywhere: Api<ConfigMap> = Api::all(server.client());
    let selected = ListParams::default().labels("test-configmap-static=true");
    let listed = everywhere.list(&selected).await.unwrap().items;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].data.as_ref().unwrap()["valueName"], "value1");

    configmaps
        .delete_collection(&DeleteParams::default(), &selected)
        .await
        .unwrap();
    assert!(everywhere.list(&selected).await.unwrap().items.is_empty());
}

// conformance: 392
#[tokio::test]
async fn a_secret_is_patched_then_deleted_by_label() {
    let server = TestServer::start().await;
    let secrets: Api<Secret> = Api::namespaced(server.client(), "default");
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("test-secret".into()),
            labels: Some(labels(&[("testsecret-constant", "true")])),
            ..Default::default()
        },
        data: Some([("key".into(), ByteString(b"value".to_vec()))].into()),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let everywhere: Api<Secret> = Api::all(server.client());
    let selected = ListParams::default().labels("testsecret-constant=true");
    assert_eq!(everywhere.list(&selected).await.unwrap().items.len(), 1);

    // "dmFsdWUx" is "value1" in base64.
    let patch = json!({"metadata": {"labels": {"testsecret": "true"}},
        "data": {"key": "dmFsdWUx"}});
    secrets
        .patch(
            "test-secret",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let got = secrets.get("test-secret").await.unwrap();
    assert_eq!(got.data.unwrap()["key"], ByteString(b"value1".to_vec()));
    assert_eq!(got.metadata.labels.unwrap()["testsecret"], "true");

    secrets
        .delete_collection(&DeleteParams::default(), &selected)
        .await
        .unwrap();
    assert!(everywhere.list(&selected).await.unwrap().items.is_empty());
}

fn lease(name: &str, holder: &str) -> Lease {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"lease-test": "true"}},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 30,
            "acquireTime": "2026-01-01T00:00:00.000000Z",
            "renewTime": "2026-01-01T00:00:00.000000Z",
            "leaseTransitions": 0,
        },
    }))
    .unwrap()
}

// conformance: 328
#[tokio::test]
async fn the_lease_api_round_trips_every_verb() {
    let server = TestServer::start().await;
    let leases: Api<Lease> = Api::namespaced(server.client(), "default");
    let created = leases
        .create(&PostParams::default(), &lease("lease", "holder"))
        .await
        .unwrap();
    let got = leases.get("lease").await.unwrap();
    assert_eq!(got.spec, created.spec);
    assert_eq!(
        got.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("holder")
    );

    let mut changed = got;
    let spec = changed.spec.as_mut().unwrap();
    spec.holder_identity = Some("holder2".into());
    spec.lease_transitions = Some(1);
    leases
        .replace("lease", &PostParams::default(), &changed)
        .await
        .unwrap();
    let got = leases.get("lease").await.unwrap();
    assert_eq!(got.spec, changed.spec);

    let patch = json!({"spec": {"holderIdentity": "holder3", "leaseTransitions": 2}});
    leases
        .patch("lease", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let spec = leases.get("lease").await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("holder3"));
    assert_eq!(spec.lease_transitions, Some(2));

    for name in ["lease2", "lease3"] {
        leases
            .create(&PostParams::default(), &lease(name, "holder"))
            .await
            .unwrap();
    }
    let selected = ListParams::default().labels("lease-test=true");
    let everywhere: Api<Lease> = Api::all(server.client());
    assert_eq!(everywhere.list(&selected).await.unwrap().items.len(), 3);
    leases
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("lease-test=true"),
        )
        .await
        .unwrap();
    assert!(everywhere.list(&selected).await.unwrap().items.is_empty());

    leases
        .create(&PostParams::default(), &lease("lease", "holder"))
        .await
        .unwrap();
    leases
        .delete("lease", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(code(leases.get("lease").await.unwrap_err()), 404);
}

fn runtime_class(name: &str) -> RuntimeClass {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"test": "runtimeclass-api"}},
        "handler": "runc",
    }))
    .unwrap()
}

/// The next watch event's type and the object's name.
async fn next(
    events: &mut (impl Stream<Item = kube::Result<WatchEvent<RuntimeClass>>> + Unpin),
) -> (&'static str, String) {
    let (kind, obj) = match events.next().await.expect("the watch ended").unwrap() {
        WatchEvent::Added(o) => ("ADDED", o),
        WatchEvent::Modified(o) => ("MODIFIED", o),
        WatchEvent::Deleted(o) => ("DELETED", o),
        other => panic!("unexpected watch event {other:?}"),
    };
    (kind, obj.metadata.name.unwrap())
}

// conformance: 385
#[tokio::test]
async fn runtime_classes_are_discovered_and_serve_every_verb() {
    let server = TestServer::start().await;
    let client = server.client();
    let req = http::Request::get("/apis/node.k8s.io/v1")
        .body(Vec::new())
        .unwrap();
    let discovered: APIResourceList = client.request(req).await.unwrap();
    assert!(
        discovered
            .resources
            .iter()
            .any(|r| r.name == "runtimeclasses")
    );

    let classes: Api<RuntimeClass> = Api::all(client);
    let selected = ListParams::default().labels("test=runtimeclass-api");
    let watch = WatchParams::default().labels("test=runtimeclass-api");
    let mut events = classes.watch(&watch, "0").await.unwrap().boxed();
    for name in ["rc1", "rc2", "rc3"] {
        classes
            .create(&PostParams::default(), &runtime_class(name))
            .await
            .unwrap();
        assert_eq!(next(&mut events).await, ("ADDED", name.to_string()));
    }
    assert_eq!(classes.get("rc1").await.unwrap().handler, "runc");
    assert_eq!(classes.list(&selected).await.unwrap().items.len(), 3);

    let patch = json!({"metadata": {"annotations": {"patched": "true"}}});
    let patched = classes
        .patch("rc1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(patched.metadata.annotations.unwrap()["patched"], "true");
    assert_eq!(next(&mut events).await, ("MODIFIED", "rc1".to_string()));
    let mut current = classes.get("rc1").await.unwrap();
    current
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("updated".into(), "true".into());
    let updated = classes
        .replace("rc1", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(updated.metadata.annotations.unwrap()["updated"], "true");
    assert_eq!(next(&mut events).await, ("MODIFIED", "rc1".to_string()));

    classes
        .delete("rc1", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(code(classes.get("rc1").await.unwrap_err()), 404);
    assert_eq!(next(&mut events).await, ("DELETED", "rc1".to_string()));
    assert_eq!(classes.list(&selected).await.unwrap().items.len(), 2);
    classes
        .delete_collection(&DeleteParams::default(), &selected)
        .await
        .unwrap();
    assert!(classes.list(&selected).await.unwrap().items.is_empty());
}

// conformance: 337
#[tokio::test]
async fn a_fake_node_is_created_patched_listed_updated_and_deleted() {
    let server = TestServer::start().await;
    let nodes: Api<Node> = Api::all(server.client());
    let node = serde_json::from_value(json!({"metadata": {"name": "e2e-fake-node"}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    assert_eq!(
        nodes
            .get("e2e-fake-node")
            .await
            .unwrap()
            .metadata
            .name
            .as_deref(),
        Some("e2e-fake-node")
    );
    let patch = json!({"metadata": {"labels": {"e2e-fake-node": "patched"}}});
    nodes
        .patch(
            "e2e-fake-node",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let selected = ListParams::default().labels("e2e-fake-node=patched");
    assert_eq!(nodes.list(&selected).await.unwrap().items.len(), 1);

    let mut current = nodes.get("e2e-fake-node").await.unwrap();
    let annotations = current.metadata.annotations.get_or_insert_default();
    annotations.insert("updated".into(), "true".into());
    let updated = nodes
        .replace("e2e-fake-node", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(updated.metadata.annotations.unwrap()["updated"], "true");

    nodes
        .delete("e2e-fake-node", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(code(nodes.get("e2e-fake-node").await.unwrap_err()), 404);
}

fn pod_template(name: &str) -> PodTemplate {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"podtemplate-static": "true"}},
        "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:latest"}]}},
    }))
    .unwrap()
}

// conformance: 343
#[tokio::test]
async fn a_pod_template_is_patched_listed_and_deleted() {
    let server = TestServer::start().await;
    let templates: Api<PodTemplate> = Api::namespaced(server.client(), "default");
    templates
        .create(&PostParams::default(), &pod_template("nginx-pod-template"))
        .await
        .unwrap();
    let patch = json!({"metadata": {"labels": {"podtemplate": "patched"}}});
    templates
        .patch(
            "nginx-pod-template",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let got = templates.get("nginx-pod-template").await.unwrap();
    assert_eq!(got.metadata.labels.unwrap()["podtemplate"], "patched");
    let everywhere: Api<PodTemplate> = Api::all(server.client());
    let selected = ListParams::default().labels("podtemplate-static=true");
    let listed = everywhere.list(&selected).await.unwrap().items;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].metadata.labels.as_ref().unwrap()["podtemplate"],
        "patched"
    );
    templates
        .delete("nginx-pod-template", &DeleteParams::default())
        .await
        .unwrap();
    assert!(everywhere.list(&selected).await.unwrap().items.is_empty());
}

// conformance: 341
#[tokio::test]
async fn pod_templates_are_deleted_as_a_collection() {
    let server = TestServer::start().await;
    let templates: Api<PodTemplate> = Api::namespaced(server.client(), "default");
    for name in ["podtemplate-1", "podtemplate-2", "podtemplate-3"] {
        templates
            .create(&PostParams::default(), &pod_template(name))
            .await
            .unwrap();
    }
    let selected = ListParams::default().labels("podtemplate-static=true");
    assert_eq!(templates.list(&selected).await.unwrap().items.len(), 3);
    templates
        .delete_collection(&DeleteParams::default(), &selected)
        .await
        .unwrap();
    assert!(templates.list(&selected).await.unwrap().items.is_empty());
}

// conformance: 342
#[tokio::test]
async fn a_pod_template_is_replaced() {
    let server = TestServer::start().await;
    let templates: Api<PodTemplate> = Api::namespaced(server.client(), "default");
    templates
        .create(&PostParams::default(), &pod_template("podtemplate-replace"))
        .await
        .unwrap();
    let mut current = templates.get("podtemplate-replace").await.unwrap();
    let annotations = current.metadata.annotations.get_or_insert_default();
    annotations.insert("updated".into(), "true".into());
    templates
        .replace("podtemplate-replace", &PostParams::default(), &current)
        .await
        .unwrap();
    let read = templates.get("podtemplate-replace").await.unwrap();
    assert_eq!(read.metadata.annotations.unwrap()["updated"], "true");
}

// conformance: 381
#[tokio::test]
async fn a_pod_naming_a_deleted_runtime_class_is_refused() {
    let server = TestServer::start().await;
    let classes: Api<RuntimeClass> = Api::all(server.client());
    classes
        .create(&PostParams::default(), &runtime_class("delete-me"))
        .await
        .unwrap();
    classes
        .delete("delete-me", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(code(classes.get("delete-me").await.unwrap_err()), 404);

    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let pod = serde_json::from_value(json!({
        "metadata": {"name": "test-runtimeclass-delete-me"},
        "spec": {"runtimeClassName": "delete-me",
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
    }))
    .unwrap();
    let err = pods.create(&PostParams::default(), &pod).await.unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err}");
    };
    assert_eq!(status.code, 403, "{status:?}");
    assert!(
        status
            .message
            .contains(r#"pod rejected: RuntimeClass "delete-me" not found"#),
        "{}",
        status.message
    );
}
