//! CustomResourceDefinitions through the API alone: discovery (legacy and aggregated) of
//! the definitions and of a defined resource, a watch on custom objects, the definition's
//! status subresource, a label-selected list and deletecollection of definitions.

use futures::{Stream, StreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use serde_json::{Value, json};
use testkit::{TestServer, eventually};

/// A namespaced definition `<plural>.<group>` of kind `kind`, labelled `labels`.
fn definition(group: &str, plural: &str, kind: &str, labels: Value) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{plural}.{group}"), "labels": labels},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "kind": kind},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    }))
    .unwrap()
}

/// Creates the definition and waits until it is `Established`.
async fn establish(server: &TestServer, crd: &CustomResourceDefinition) {
    let crds: Api<CustomResourceDefinition> = Api::all(server.client());
    crds.create(&PostParams::default(), crd).await.unwrap();
    let name = crd.metadata.name.clone().unwrap();
    eventually("the definition is established", || async {
        let got = crds.get_status(&name).await.unwrap();
        let conditions = got.status.and_then(|s| s.conditions).unwrap_or_default();
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    })
    .await;
}

/// A GET of `path` with `accept`, as JSON.
async fn get(server: &TestServer, path: &str, accept: &str) -> Value {
    let req = http::Request::get(path)
        .header("Accept", accept)
        .body(Vec::new())
        .unwrap();
    let text = server.client().request_text(req).await.unwrap();
    serde_json::from_str(&text).unwrap()
}

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

// conformance: 66, 68, 89
#[tokio::test]
async fn definitions_and_defined_resources_are_discovered() {
    let server = TestServer::start().await;
    let groups = get(&server, "/apis", "application/json").await;
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert!(names.contains(&"apiextensions.k8s.io"), "{names:?}");
    let group = get(&server, "/apis/apiextensions.k8s.io", "application/json").await;
    assert_eq!(
        group["preferredVersion"]["groupVersion"],
        "apiextensions.k8s.io/v1"
    );
    let list = get(&server, "/apis/apiextensions.k8s.io/v1", "application/json").await;
    assert!(
        list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "customresourcedefinitions")
    );

    establish(
        &server,
        &definition("stable.example.com", "crontabs", "CronTab", json!({})),
    )
    .await;
    let aggregated = get(&server, "/apis", AGGREGATED).await;
    assert_eq!(aggregated["kind"], "APIGroupDiscoveryList");
    let stable = aggregated["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "stable.example.com")
        .expect("the defined group is in aggregated discovery");
    assert_eq!(
        stable["versions"][0]["resources"][0]["resource"],
        "crontabs"
    );
    assert_eq!(
        stable["versions"][0]["resources"][0]["responseKind"]["kind"],
        "CronTab"
    );
}

/// The next event on `events`: its type and the object's `spec.size`.
async fn next(
    events: &mut (impl Stream<Item = kube::Result<WatchEvent<DynamicObject>>> + Unpin),
) -> (&'static str, Value) {
    let (kind, obj) = match events.next().await.expect("the watch ended").unwrap() {
        WatchEvent::Added(o) => ("ADDED", o),
        WatchEvent::Modified(o) => ("MODIFIED", o),
        WatchEvent::Deleted(o) => ("DELETED", o),
        other => panic!("unexpected watch event {other:?}"),
    };
    (kind, obj.data["spec"]["size"].clone())
}

// conformance: 81, 85
#[tokio::test]
async fn custom_objects_are_watched_through_their_lives() {
    let server = TestServer::start().await;
    establish(
        &server,
        &definition(
            "mygroup.example.com",
            "noxus",
            "WishIHadChosenNoxu",
            json!({}),
        ),
    )
    .await;
    let resource = ApiResource {
        group: "mygroup.example.com".into(),
        version: "v1".into(),
        api_version: "mygroup.example.com/v1".into(),
        kind: "WishIHadChosenNoxu".into(),
        plural: "noxus".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(server.client(), "default", &resource);
    let mut events = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let mut obj = DynamicObject::new("name1", &resource);
    obj.data = json!({"spec": {"size": 1}});
    api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(next(&mut events).await, ("ADDED", json!(1)));
    let change = json!({"spec": {"size": 2}});
    api.patch("name1", &PatchParams::default(), &Patch::Merge(&change))
        .await
        .unwrap();
    assert_eq!(next(&mut events).await, ("MODIFIED", json!(2)));
    api.delete("name1", &DeleteParams::default()).await.unwrap();
    assert_eq!(next(&mut events).await, ("DELETED", json!(2)));

    let crds: Api<CustomResourceDefinition> = Api::all(server.client());
    crds.delete("noxus.mygroup.example.com", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the definition is gone", || async {
        crds.get_opt("noxus.mygroup.example.com")
            .await
            .unwrap()
            .is_none()
    })
    .await;
}

// conformance: 86
#[tokio::test]
async fn the_definition_status_is_read_replaced_and_patched() {
    let server = TestServer::start().await;
    let crd = definition("status.example.com", "gizmos", "Gizmo", json!({}));
    establish(&server, &crd).await;
    let crds: Api<CustomResourceDefinition> = Api::all(server.client());
    let name = "gizmos.status.example.com";
    let mut current = crds.get_status(name).await.unwrap();
    let status = current.status.as_mut().unwrap();
    let condition = json!({"type": "StatusUpdate", "status": "True", "reason": "E2E",
        "message": "Set from an e2e test", "lastTransitionTime": "2026-01-01T00:00:00Z"});
    status
        .conditions
        .get_or_insert_default()
        .push(serde_json::from_value(condition).unwrap());
    crds.replace_status(name, &PostParams::default(), &current)
        .await
        .unwrap();
    let read = crds.get(name).await.unwrap();
    let types: Vec<String> = read
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| c.type_)
        .collect();
    assert!(types.contains(&"StatusUpdate".to_string()), "{types:?}");
    // A status write changes the status only: labels in it are dropped, as upstream does.
    let patch = json!({"metadata": {"labels": {"patched": "true"}},
        "status": {"conditions": [{"type": "StatusPatched", "status": "True", "reason": "E2E",
            "message": "Set from an e2e test", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    let patched = crds
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let labels = patched.metadata.labels.unwrap_or_default();
    assert!(!labels.contains_key("patched"), "{labels:?}");
    let conditions = crds
        .get(name)
        .await
        .unwrap()
        .status
        .unwrap()
        .conditions
        .unwrap();
    // A merge patch replaces the list; the server may add its own conditions back at once
    // (NamesAccepted, Established), as upstream's does.
    let types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
    assert!(types.contains(&"StatusPatched"), "{types:?}");
    assert!(
        !types.contains(&"StatusUpdate"),
        "a merge patch replaces the list: {types:?}"
    );
}

// conformance: 87
#[tokio::test]
async fn definitions_are_listed_and_deleted_by_label() {
    let server = TestServer::start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(server.client());
    for i in 0..10 {
        let crd = definition(
            "list.example.com",
            &format!("kinds{i}"),
            &format!("Kind{i}"),
            json!({"e2e-list-test": "yes"}),
        );
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let other = definition("list.example.com", "others", "Other", json!({}));
    crds.create(&PostParams::default(), &other).await.unwrap();
    let selected = ListParams::default().labels("e2e-list-test=yes");
    assert_eq!(crds.list(&selected).await.unwrap().items.len(), 10);
    crds.delete_collection(&DeleteParams::default(), &selected)
        .await
        .unwrap();
    eventually("the labelled definitions are gone", || async {
        crds.list(&selected).await.unwrap().items.is_empty()
    })
    .await;
    assert!(
        crds.get_opt("others.list.example.com")
            .await
            .unwrap()
            .is_some()
    );
}
