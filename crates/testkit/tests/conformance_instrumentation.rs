//! Conformance, instrumentation: the lifecycles of Events through the API alone, in core v1
//! (create, list across namespaces by label, patch, update of the series, delete, and
//! deletecollection by label) and in events.k8s.io/v1 (the same for one event, and a
//! deletecollection of many).

use k8s_openapi::api::core::v1::{Event, Namespace};
use k8s_openapi::api::events::v1::Event as NewEvent;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use testkit::TestServer;

/// Creates namespace `name`.
async fn namespace(server: &TestServer, name: &str) {
    let namespaces: Api<Namespace> = Api::all(server.client());
    let ns = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

/// A core v1 Event `name` about a pod, labelled `testevent-set=true`.
fn core_event(name: &str) -> Event {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"testevent-set": "true"}},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "some-pod", "apiVersion": "v1"},
        "reason": "Testing",
        "message": "This is a test event",
        "type": "Normal",
        "count": 1,
        "source": {"component": "conformance-test"},
    }))
    .unwrap()
}

// conformance: 712
#[tokio::test]
async fn a_core_event_is_created_listed_patched_updated_and_deleted() {
    let server = TestServer::start().await;
    namespace(&server, "events-lifecycle").await;
    let events: Api<Event> = Api::namespaced(server.client(), "events-lifecycle");
    events
        .create(&PostParams::default(), &core_event("event-test"))
        .await
        .unwrap();

    let everywhere: Api<Event> = Api::all(server.client());
    let labelled = ListParams::default().labels("testevent-set=true");
    let found = everywhere.list(&labelled).await.unwrap().items;
    assert_eq!(
        found.len(),
        1,
        "the event is listed across namespaces by label"
    );

    let patch = json!({"message": "This is a patched event"});
    events
        .patch("event-test", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let mut current = events.get("event-test").await.unwrap();
    assert_eq!(current.message.as_deref(), Some("This is a patched event"));

    current.series = Some(
        serde_json::from_value(
            json!({"count": 100, "lastObservedTime": "2026-01-01T00:00:00.000000Z"}),
        )
        .unwrap(),
    );
    events
        .replace("event-test", &PostParams::default(), &current)
        .await
        .unwrap();
    let series = events.get("event-test").await.unwrap().series.unwrap();
    assert_eq!(series.count, Some(100));

    events
        .delete("event-test", &DeleteParams::default())
        .await
        .unwrap();
    assert!(everywhere.list(&labelled).await.unwrap().items.is_empty());
}

// conformance: 711
#[tokio::test]
async fn core_events_are_deleted_as_a_collection_by_label() {
    let server = TestServer::start().await;
    let events: Api<Event> = Api::namespaced(server.client(), "default");
    for name in ["event-1", "event-2", "event-3"] {
        events
            .create(&PostParams::default(), &core_event(name))
            .await
            .unwrap();
    }
    let unlabelled = Event {
        metadata: kube::api::ObjectMeta {
            name: Some("other".into()),
            labels: None,
            ..Default::default()
        },
        ..core_event("other")
    };
    events
        .create(&PostParams::default(), &unlabelled)
        .await
        .unwrap();
    let labelled = ListParams::default().labels("testevent-set=true");
    assert_eq!(events.list(&labelled).await.unwrap().items.len(), 3);

    events
        .delete_collection(&DeleteParams::default(), &labelled)
        .await
        .unwrap();
    assert!(events.list(&labelled).await.unwrap().items.is_empty());
    assert!(events.get_opt("other").await.unwrap().is_some());
}

/// An events.k8s.io/v1 Event `name` about a pod, labelled `test-event=<name>`.
fn new_event(name: &str) -> NewEvent {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"test-event": name}},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "note": "This is a test event",
        "action": "Do",
        "reason": "Test",
        "type": "Normal",
        "regarding": {"kind": "Pod", "namespace": "default", "name": "some-pod", "apiVersion": "v1"},
        "reportingController": "test-controller",
        "reportingInstance": "test-node",
    }))
    .unwrap()
}

// conformance: 707
#[tokio::test]
async fn a_new_event_is_fetched_patched_updated_deleted_and_gone() {
    let server = TestServer::start().await;
    namespace(&server, "new-events").await;
    let events: Api<NewEvent> = Api::namespaced(server.client(), "new-events");
    events
        .create(&PostParams::default(), &new_event("event-test"))
        .await
        .unwrap();
    let got = events.get("event-test").await.unwrap();
    assert_eq!(got.note.as_deref(), Some("This is a test event"));
    assert_eq!(got.reporting_controller.as_deref(), Some("test-controller"));

    let patch = json!({"note": "This is a patched event"});
    events
        .patch("event-test", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let mut current = events.get("event-test").await.unwrap();
    assert_eq!(current.note.as_deref(), Some("This is a patched event"));

    current.series = Some(
        serde_json::from_value(
            json!({"count": 100, "lastObservedTime": "2026-01-01T00:00:01.000000Z"}),
        )
        .unwrap(),
    );
    events
        .replace("event-test", &PostParams::default(), &current)
        .await
        .unwrap();
    let series = events.get("event-test").await.unwrap().series.unwrap();
    assert_eq!(series.count, 100);

    // The same event is read through core v1 too, its note as the message.
    let core: Api<Event> = Api::namespaced(server.client(), "new-events");
    let old = core.get("event-test").await.unwrap();
    assert_eq!(old.message.as_deref(), Some("This is a patched event"));

    events
        .delete("event-test", &DeleteParams::default())
        .await
        .unwrap();
    let everywhere: Api<NewEvent> = Api::all(server.client());
    let names = names_of(&everywhere.list(&ListParams::default()).await.unwrap().items);
    assert!(!names.contains(&"event-test".to_string()), "{names:?}");
}

fn names_of(events: &[NewEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e.metadata.name.clone())
        .collect()
}

// conformance: 706
#[tokio::test]
async fn new_events_are_listed_then_deleted_as_a_collection() {
    let server = TestServer::start().await;
    namespace(&server, "new-events-list").await;
    let events: Api<NewEvent> = Api::namespaced(server.client(), "new-events-list");
    for name in ["event-1", "event-2", "event-3"] {
        let mut event = new_event(name);
        event.metadata.labels = Some([("test-event-set".to_string(), "true".to_string())].into());
        events.create(&PostParams::default(), &event).await.unwrap();
    }
    let labelled = ListParams::default().labels("test-event-set=true");
    let listed = events.list(&labelled).await.unwrap().items;
    assert_eq!(names_of(&listed), ["event-1", "event-2", "event-3"]);

    events
        .delete_collection(&DeleteParams::default(), &labelled)
        .await
        .unwrap();
    let left: Value = serde_json::to_value(events.list(&labelled).await.unwrap().items).unwrap();
    assert_eq!(left, json!([]));
}
