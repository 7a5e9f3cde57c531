//! The middle tier at work: the real API server in-process, driven through a kube-rs client.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use testkit::{TestServer, consistently, eventually};

fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn config_map(name: &str, colour: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("colour".into(), colour.into())])),
        ..Default::default()
    }
}

/// The next watch event's type, the object's name and its colour.
async fn next_event(
    events: &mut (impl Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin),
) -> (&'static str, String, String) {
    let event = events.next().await.expect("the watch ended").unwrap();
    let (kind, cm) = match event {
        WatchEvent::Added(cm) => ("ADDED", cm),
        WatchEvent::Modified(cm) => ("MODIFIED", cm),
        WatchEvent::Deleted(cm) => ("DELETED", cm),
        other => panic!("unexpected watch event {other:?}"),
    };
    let colour = cm
        .data
        .unwrap_or_default()
        .remove("colour")
        .unwrap_or_default();
    (kind, cm.metadata.name.unwrap_or_default(), colour)
}

#[tokio::test]
async fn config_maps_are_created_and_watched_and_a_dry_run_leaves_nothing() {
    let server = TestServer::start().await;
    let namespaces: Api<Namespace> = Api::all(server.client());
    namespaces
        .create(&PostParams::default(), &namespace("kit"))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "kit");
    let listed = cms.list(&ListParams::default()).await.unwrap();
    let from = listed.metadata.resource_version.unwrap();
    let mut events = cms
        .watch(&WatchParams::default(), &from)
        .await
        .unwrap()
        .boxed();

    cms.create(&PostParams::default(), &config_map("settings", "blue"))
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut events).await,
        ("ADDED", "settings".into(), "blue".into())
    );

    // A dry run answers with the object it would have created, and stores nothing.
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let answered = cms
        .create(&dry_run, &config_map("draft", "red"))
        .await
        .unwrap();
    assert_eq!(answered.metadata.name.as_deref(), Some("draft"));
    consistently(
        "the dry-run ConfigMap absent",
        Duration::from_millis(300),
        || async { cms.get_opt("draft").await.unwrap().is_none() },
    )
    .await;
    // Nor did it reach the watch: the next event is the real change that follows it.
    let green = serde_json::json!({"data": {"colour": "green"}});
    cms.patch("settings", &PatchParams::default(), &Patch::Merge(&green))
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut events).await,
        ("MODIFIED", "settings".into(), "green".into())
    );
}

#[tokio::test]
async fn the_client_is_the_cluster_admin_and_a_deleted_namespace_awaits_its_controller() {
    let server = TestServer::start().await;
    assert!(server.kubeconfig().is_file());
    assert_eq!(server.url(), format!("https://{}", server.address()));
    let namespaces: Api<Namespace> = Api::all(server.client());
    let system = namespaces.list(&ListParams::default()).await.unwrap();
    assert!(
        system
            .items
            .iter()
            .any(|ns| ns.metadata.name.as_deref() == Some("kube-system"))
    );
    namespaces
        .create(&PostParams::default(), &namespace("brief"))
        .await
        .unwrap();
    namespaces
        .delete("brief", &Default::default())
        .await
        .unwrap();
    // No namespace controller runs in-process: the namespace stays Terminating.
    eventually("the namespace marked for deletion", || async {
        let ns = namespaces.get("brief").await.unwrap();
        ns.metadata.deletion_timestamp.is_some()
    })
    .await;
}

#[tokio::test]
async fn dropping_the_server_removes_its_data_directory() {
    let server = TestServer::start().await;
    let dir = server.data_dir().to_path_buf();
    assert!(dir.join("db").is_dir(), "{}", dir.display());
    drop(server);
    assert!(!dir.exists(), "{} is left behind", dir.display());
}
