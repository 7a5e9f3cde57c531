//! Helpers the conformance tests share: a lifecycle of every verb on objects of one kind,
//! watch events, discovery of a group version, labelled objects.

#![allow(dead_code, unreachable_pub)]

use std::fmt::Debug;

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use k8s_openapi::serde::Serialize;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;
use testkit::TestServer;

/// The next watch event's type and the object's name.
pub async fn next<K: kube::Resource>(
    events: &mut (impl Stream<Item = kube::Result<WatchEvent<K>>> + Unpin),
) -> (&'static str, String) {
    let (kind, obj) = match events.next().await.expect("the watch ended").unwrap() {
        WatchEvent::Added(o) => ("ADDED", o),
        WatchEvent::Modified(o) => ("MODIFIED", o),
        WatchEvent::Deleted(o) => ("DELETED", o),
        _ => panic!("unexpected watch event"),
    };
    (kind, obj.meta().name.clone().unwrap())
}

pub fn labelled() -> ListParams {
    ListParams::default().labels("e2e-lifecycle=true")
}

pub fn annotation(obj: &impl kube::Resource, key: &str) -> Option<String> {
    obj.meta().annotations.as_ref()?.get(key).cloned()
}

/// Every verb on objects `make` builds (each labelled `e2e-lifecycle: "true"`): creates
/// three, seen ADDED by a watch; get; list by label; a patch and an update, seen MODIFIED;
/// a delete (then 404, DELETED); deletecollection of the rest by label.
pub async fn every_verb<K>(api: &Api<K>, make: impl Fn(&str) -> K)
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let rv = api
        .list(&labelled())
        .await
        .unwrap()
        .metadata
        .resource_version;
    let watch = WatchParams::default().labels("e2e-lifecycle=true");
    let mut events = api.watch(&watch, &rv.unwrap()).await.unwrap().boxed();
    for name in ["e2e-1", "e2e-2", "e2e-3"] {
        api.create(&PostParams::default(), &make(name))
            .await
            .unwrap();
        assert_eq!(next(&mut events).await, ("ADDED", name.into()));
    }
    assert_eq!(
        api.get("e2e-1").await.unwrap().meta().name.as_deref(),
        Some("e2e-1")
    );
    assert_eq!(api.list(&labelled()).await.unwrap().items.len(), 3);

    let patch = json!({"metadata": {"annotations": {"patched": "true"}}});
    let patched = api
        .patch("e2e-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(annotation(&patched, "patched").as_deref(), Some("true"));
    assert_eq!(next(&mut events).await, ("MODIFIED", "e2e-1".into()));
    let mut current = api.get("e2e-1").await.unwrap();
    let annotations = current.meta_mut().annotations.get_or_insert_default();
    annotations.insert("updated".into(), "true".into());
    let updated = api
        .replace("e2e-1", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(annotation(&updated, "updated").as_deref(), Some("true"));
    assert_eq!(next(&mut events).await, ("MODIFIED", "e2e-1".into()));

    api.delete("e2e-1", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("e2e-1").await.unwrap().is_none());
    assert_eq!(next(&mut events).await, ("DELETED", "e2e-1".into()));
    assert_eq!(api.list(&labelled()).await.unwrap().items.len(), 2);
    api.delete_collection(&DeleteParams::default(), &labelled())
        .await
        .unwrap();
    assert!(api.list(&labelled()).await.unwrap().items.is_empty());
}

/// The resources `/apis/<group_version>` lists.
pub async fn discovered(server: &TestServer, group_version: &str) -> Vec<String> {
    let path = format!("/apis/{group_version}");
    let req = http::Request::get(path).body(Vec::new()).unwrap();
    let list: APIResourceList = server.client().request(req).await.unwrap();
    list.resources.into_iter().map(|r| r.name).collect()
}

/// An object of kind `K` named `name`, labelled for `every_verb`, with `rest` added.
pub fn object<K: DeserializeOwned>(name: &str, rest: serde_json::Value) -> K {
    let mut obj = json!({"metadata": {"name": name, "labels": {"e2e-lifecycle": "true"}}});
    obj.as_object_mut()
        .unwrap()
        .extend(rest.as_object().unwrap().clone());
    serde_json::from_value(obj).unwrap()
}
