//! Services through the API alone (no proxy, no controllers): the status subresource, a
//! deletecollection by label, the `kubernetes` Service in every listing.

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;
use testkit::TestServer;

fn service(name: &str, group: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"group": group}},
        "spec": {"ports": [{"port": 80}]},
    }))
    .unwrap()
}

/// The next event on `events`: its type and the Service.
async fn next(
    events: &mut (impl Stream<Item = kube::Result<WatchEvent<Service>>> + Unpin),
) -> (&'static str, Service) {
    match events.next().await.expect("the watch ended").unwrap() {
        WatchEvent::Modified(s) => ("MODIFIED", s),
        WatchEvent::Deleted(s) => ("DELETED", s),
        WatchEvent::Added(s) => ("ADDED", s),
        other => panic!("unexpected watch event {other:?}"),
    }
}

// conformance: 484
#[tokio::test]
async fn the_status_subresource_is_read_patched_and_replaced_and_each_change_is_watched() {
    let server = TestServer::start().await;
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let created = api
        .create(&PostParams::default(), &service("lb", "a"))
        .await
        .unwrap();
    let watch = WatchParams::default().fields("metadata.name=lb");
    let version = created.metadata.resource_version.clone().unwrap();
    let mut events = api.watch(&watch, &version).await.unwrap().boxed();

    let status = api.get_status("lb").await.unwrap();
    assert_eq!(status.metadata.name.as_deref(), Some("lb"));
    let ingress = json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}}});
    api.patch_status("lb", &PatchParams::default(), &Patch::Merge(&ingress))
        .await
        .unwrap();
    let (kind, seen) = next(&mut events).await;
    let lb = seen.status.unwrap().load_balancer.unwrap();
    assert_eq!(
        (kind, lb.ingress.unwrap()[0].ip.as_deref()),
        ("MODIFIED", Some("203.0.113.1"))
    );

    // A replaced status: a condition added.
    let mut current = api.get_status("lb").await.unwrap();
    let condition = json!({"type": "StatusUpdate", "status": "True", "reason": "E2E",
        "message": "set by the test", "lastTransitionTime": "2026-01-01T00:00:00Z"});
    current.status.as_mut().unwrap().conditions =
        Some(vec![serde_json::from_value(condition).unwrap()]);
    api.replace_status("lb", &PostParams::default(), &current)
        .await
        .unwrap();
    let (kind, seen) = next(&mut events).await;
    let conditions = seen.status.unwrap().conditions.unwrap();
    assert_eq!(
        (kind, conditions[0].type_.as_str()),
        ("MODIFIED", "StatusUpdate")
    );

    // The Service itself patched; then deleted.
    let labels = json!({"metadata": {"labels": {"patched": "yes"}}});
    api.patch("lb", &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .unwrap();
    let (kind, seen) = next(&mut events).await;
    assert_eq!(
        (kind, seen.metadata.labels.unwrap()["patched"].as_str()),
        ("MODIFIED", "yes")
    );
    api.delete("lb", &DeleteParams::default()).await.unwrap();
    assert_eq!(next(&mut events).await.0, "DELETED");
}

// conformance: 485, 486
#[tokio::test]
async fn services_are_deleted_by_label_and_the_kubernetes_service_is_listed() {
    let server = TestServer::start().await;
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    for (name, group) in [("one", "gone"), ("two", "gone"), ("three", "kept")] {
        api.create(&PostParams::default(), &service(name, group))
            .await
            .unwrap();
    }
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("group=gone"),
    )
    .await
    .unwrap();
    let left: Vec<String> = api
        .list(&ListParams::default().labels("group"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    assert_eq!(left, ["three"]);
    // Traffic policies asked for on create are kept (the server defaults only what is unset).
    let local: Service = serde_json::from_value(json!({
        "metadata": {"name": "local"},
        "spec": {"type": "NodePort", "ports": [{"port": 80}],
                 "internalTrafficPolicy": "Local", "externalTrafficPolicy": "Local"},
    }))
    .unwrap();
    let spec = api
        .create(&PostParams::default(), &local)
        .await
        .unwrap()
        .spec
        .unwrap();
    let policies = (spec.internal_traffic_policy, spec.external_traffic_policy);
    assert_eq!(policies, (Some("Local".into()), Some("Local".into())));
    let defaulted = api.get("three").await.unwrap().spec.unwrap();
    assert_eq!(
        defaulted.internal_traffic_policy.as_deref(),
        Some("Cluster")
    );
    let everywhere: Api<Service> = Api::all(server.client());
    let all = everywhere.list(&ListParams::default()).await.unwrap();
    assert!(
        all.items
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some("kubernetes")
                && s.metadata.namespace.as_deref() == Some("default")),
        "{:?}",
        all.items
            .iter()
            .map(|s| &s.metadata.name)
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_local_load_balancer_holds_a_health_check_port_until_its_policy_changes() {
    let server = TestServer::start().await;
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let lb: Service = serde_json::from_value(json!({
        "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]},
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &lb).await.unwrap();
    let port = created
        .spec
        .unwrap()
        .health_check_node_port
        .expect("a health check port");
    assert!((30000..=32767).contains(&port), "{port}");

    // Taken: another Service may not ask for it.
    let mut other = service("other", "b");
    let spec = other.spec.as_mut().unwrap();
    spec.type_ = Some("LoadBalancer".into());
    spec.external_traffic_policy = Some("Local".into());
    spec.health_check_node_port = Some(port);
    let err = api
        .create(&PostParams::default(), &other)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "spec.healthCheckNodePort: Invalid value: {port}: provided port is already allocated"
                .replace("{port}", &port.to_string())
                .as_str()
        ),
        "{err}"
    );

    // An update that leaves it out keeps it; the Cluster policy gives it back.
    let mut replaced = api.get("lb").await.unwrap();
    replaced.spec.as_mut().unwrap().health_check_node_port = None;
    let kept = api
        .replace("lb", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(kept.spec.unwrap().health_check_node_port, Some(port));
    let cluster = json!({"spec": {"externalTrafficPolicy": "Cluster"}});
    let patched = api
        .patch("lb", &PatchParams::default(), &Patch::Merge(&cluster))
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().health_check_node_port, None);
    api.create(&PostParams::default(), &other).await.unwrap();
}
