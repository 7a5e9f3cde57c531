//! Conformance, api-machinery: what the API server alone shows: the server version,
//! discovery (every group's versions and preferred version), namespaces (update, label patch,
//! the status subresource, the finalize subresource), ResourceQuota API lifecycles, and watch
//! semantics (label-selected watchers, an object leaving and re-entering a selector, and
//! watches resumed from earlier resourceVersions seeing the same sequence), and the API
//! Priority and Fairness objects (every verb, and their status).

mod support;

use std::collections::BTreeMap;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ResourceQuota};
use k8s_openapi::api::flowcontrol::v1::{FlowSchema, PriorityLevelConfiguration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIGroupList, APIResourceList};
use kube::api::{
    Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use serde_json::json;
use testkit::TestServer;

async fn get<T: k8s_openapi::serde::de::DeserializeOwned>(server: &TestServer, path: &str) -> T {
    let req = http::Request::get(path).body(Vec::new()).unwrap();
    server.client().request(req).await.unwrap()
}

// conformance: 178
#[tokio::test]
async fn the_server_version_is_numeric() {
    let server = TestServer::start().await;
    let info = server.client().apiserver_version().await.unwrap();
    for part in [&info.major, &info.minor] {
        assert!(
            !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()),
            "{info:?}"
        );
    }
    assert!(info.git_version.starts_with('v'), "{info:?}");
}

// conformance: 105, 106
#[tokio::test]
async fn every_group_serves_its_versions_and_prefers_one() {
    let server = TestServer::start().await;
    let groups: APIGroupList = get(&server, "/apis").await;
    assert!(!groups.groups.is_empty());
    for group in groups.groups {
        let preferred = group.preferred_version.expect("a preferred version");
        assert!(
            group
                .versions
                .iter()
                .any(|v| v.group_version == preferred.group_version),
            "{}: preferred {} is not served",
            group.name,
            preferred.group_version
        );
        for version in &group.versions {
            let path = format!("/apis/{}", version.group_version);
            let list: APIResourceList = get(&server, &path).await;
            assert_eq!(list.group_version, version.group_version);
            assert!(
                list.resources
                    .iter()
                    .any(|r| !r.name.is_empty() && !r.verbs.is_empty()),
                "{path} lists no resource"
            );
        }
    }
}

/// Creates namespace `name`; returns the API over namespaces.
async fn namespace(server: &TestServer, name: &str) -> Api<Namespace> {
    let namespaces: Api<Namespace> = Api::all(server.client());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    namespaces
}

// conformance: 131, 135
#[tokio::test]
async fn a_namespace_is_updated_and_patched() {
    let server = TestServer::start().await;
    let namespaces = namespace(&server, "nspatchtest").await;
    let patch = json!({"metadata": {"labels": {"testLabel": "testValue"}}});
    namespaces
        .patch(
            "nspatchtest",
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .unwrap();
    let labels = namespaces.get("nspatchtest").await.unwrap().metadata.labels;
    assert_eq!(labels.unwrap()["testLabel"], "testValue");

    let mut current = namespaces.get("nspatchtest").await.unwrap();
    current
        .metadata
        .labels
        .get_or_insert_default()
        .insert("e2e-update".into(), "updated".into());
    namespaces
        .replace("nspatchtest", &PostParams::default(), &current)
        .await
        .unwrap();
    let labels = namespaces.get("nspatchtest").await.unwrap().metadata.labels;
    assert_eq!(labels.unwrap()["e2e-update"], "updated");
}

fn condition_types(ns: &Namespace) -> Vec<String> {
    let conditions = ns.status.as_ref().and_then(|s| s.conditions.clone());
    conditions
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.type_)
        .collect()
}

// conformance: 132
#[tokio::test]
async fn a_namespace_status_is_read_patched_and_replaced() {
    let server = TestServer::start().await;
    let namespaces = namespace(&server, "nsstatus").await;
    let status = namespaces.get_status("nsstatus").await.unwrap().status;
    assert_eq!(status.unwrap().phase.as_deref(), Some("Active"));

    let patch = json!({"status": {"conditions": [{"type": "StatusPatch", "status": "True",
        "reason": "E2E", "message": "Patched by an e2e test"}]}});
    let patched = namespaces
        .patch_status("nsstatus", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(condition_types(&patched), ["StatusPatch"]);

    let mut current = namespaces.get_status("nsstatus").await.unwrap();
    let condition = json!({"type": "StatusUpdate", "status": "True", "reason": "E2E",
        "message": "Updated by an e2e test"});
    current
        .status
        .as_mut()
        .unwrap()
        .conditions
        .get_or_insert_default()
        .push(serde_json::from_value(condition).unwrap());
    namespaces
        .replace_status("nsstatus", &PostParams::default(), &current)
        .await
        .unwrap();
    let read = namespaces.get("nsstatus").await.unwrap();
    assert_eq!(condition_types(&read), ["StatusPatch", "StatusUpdate"]);
}

fn finalizers(ns: &Namespace) -> Vec<String> {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default()
}

/// Writes `ns` through the namespace's finalize subresource; returns what it answers.
async fn finalize(namespaces: &Api<Namespace>, ns: &Namespace) -> Namespace {
    let name = ns.metadata.name.as_deref().unwrap();
    namespaces
        .replace_subresource("finalize", name, &PostParams::default(), ns)
        .await
        .unwrap()
}

// conformance: 130
#[tokio::test]
async fn a_finalizer_is_added_and_removed_through_finalize() {
    let server = TestServer::start().await;
    let namespaces = namespace(&server, "nsfinalize").await;
    let fake = "e2e.example.com/fakeFinalizer".to_string();
    let mut current = namespaces.get("nsfinalize").await.unwrap();
    current
        .spec
        .get_or_insert_default()
        .finalizers
        .get_or_insert_default()
        .push(fake.clone());
    let answered = finalize(&namespaces, &current).await;
    assert!(finalizers(&answered).contains(&fake));
    let mut current = namespaces.get("nsfinalize").await.unwrap();
    assert!(finalizers(&current).contains(&fake));

    let kept: Vec<String> = finalizers(&current)
        .into_iter()
        .filter(|f| *f != fake)
        .collect();
    current.spec.as_mut().unwrap().finalizers = Some(kept);
    finalize(&namespaces, &current).await;
    let read = namespaces.get("nsfinalize").await.unwrap();
    assert!(
        !finalizers(&read).contains(&fake),
        "{:?}",
        finalizers(&read)
    );
}

fn quota(name: &str, cpu: &str, memory: &str) -> ResourceQuota {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"e2e-rq-label": name}},
        "spec": {"hard": {"cpu": cpu, "memory": memory}},
    }))
    .unwrap()
}

fn hard(rq: &ResourceQuota) -> BTreeMap<String, String> {
    let hard = rq.spec.as_ref().and_then(|s| s.hard.clone());
    hard.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

// conformance: 140
#[tokio::test]
async fn a_resource_quota_is_updated_and_deleted() {
    let server = TestServer::start().await;
    let quotas: Api<ResourceQuota> = Api::namespaced(server.client(), "default");
    quotas
        .create(&PostParams::default(), &quota("test-quota", "1", "500Mi"))
        .await
        .unwrap();
    let mut current = quotas.get("test-quota").await.unwrap();
    current.spec = quota("test-quota", "2", "1Gi").spec;
    quotas
        .replace("test-quota", &PostParams::default(), &current)
        .await
        .unwrap();
    let read = quotas.get("test-quota").await.unwrap();
    let expected = [("cpu", "2"), ("memory", "1Gi")];
    assert_eq!(
        hard(&read),
        expected.map(|(k, v)| (k.into(), v.into())).into()
    );

    quotas
        .delete("test-quota", &DeleteParams::default())
        .await
        .unwrap();
    assert!(quotas.get_opt("test-quota").await.unwrap().is_none());
}

// conformance: 148
#[tokio::test]
async fn resource_quotas_are_listed_patched_and_deleted_as_a_collection() {
    let server = TestServer::start().await;
    let quotas: Api<ResourceQuota> = Api::namespaced(server.client(), "default");
    quotas
        .create(&PostParams::default(), &quota("e2e-quota", "1", "500Mi"))
        .await
        .unwrap();
    let everywhere: Api<ResourceQuota> = Api::all(server.client());
    let selected = ListParams::default().labels("e2e-rq-label=e2e-quota");
    assert_eq!(everywhere.list(&selected).await.unwrap().items.len(), 1);

    let patch = json!({"metadata": {"labels": {"e2e-rq-patched": "true"}},
        "spec": {"hard": {"memory": "750Mi"}}});
    let patched = quotas
        .patch("e2e-quota", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(hard(&patched)["memory"], "750Mi");
    let read = quotas.get("e2e-quota").await.unwrap();
    assert_eq!(hard(&read)["memory"], "750Mi");
    assert_eq!(read.metadata.labels.unwrap()["e2e-rq-patched"], "true");

    quotas
        .delete_collection(&DeleteParams::default(), &selected)
        .await
        .unwrap();
    assert!(everywhere.list(&selected).await.unwrap().items.is_empty());
}

/// A watch event as (type, name, `data.mutation`); `None` for a bookmark.
type Seen = (&'static str, String, Option<String>);

async fn next(
    events: &mut (impl Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin),
) -> (Seen, String) {
    let (kind, cm) = match events.next().await.expect("the watch ended").unwrap() {
        WatchEvent::Added(o) => ("ADDED", o),
        WatchEvent::Modified(o) => ("MODIFIED", o),
        WatchEvent::Deleted(o) => ("DELETED", o),
        other => panic!("unexpected watch event {other:?}"),
    };
    let rv = cm.metadata.resource_version.clone().unwrap();
    let mutation = cm.data.and_then(|d| d.get("mutation").cloned());
    ((kind, cm.metadata.name.unwrap(), mutation), rv)
}

async fn watch(
    api: &Api<ConfigMap>,
    labels: &str,
    rv: &str,
) -> impl Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin + use<> {
    let params = WatchParams::default().labels(labels);
    api.watch(&params, rv).await.unwrap().boxed()
}

fn configmap(name: &str, label: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"watch-this-configmap": label}},
    }))
    .unwrap()
}

/// Sets `data.mutation` of configmap `name` to `n`.
async fn mutate(api: &Api<ConfigMap>, name: &str, n: u32) {
    let patch = json!({"data": {"mutation": n.to_string()}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

fn seen(kind: &'static str, name: &str, mutation: Option<u32>) -> Seen {
    (kind, name.into(), mutation.map(|n| n.to_string()))
}

// conformance: 172
#[tokio::test]
async fn label_selected_watchers_see_only_their_configmaps() {
    let server = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let rv = api.list(&ListParams::default()).await.unwrap().metadata;
    let rv = rv.resource_version.unwrap();
    let label = "watch-this-configmap";
    let mut a = watch(&api, &format!("{label}=multiple-watchers-A"), &rv).await;
    let mut b = watch(&api, &format!("{label}=multiple-watchers-B"), &rv).await;
    let mut ab = watch(
        &api,
        &format!("{label} in (multiple-watchers-A,multiple-watchers-B)"),
        &rv,
    )
    .await;

    let cm_a = configmap("e2e-watch-test-configmap-a", "multiple-watchers-A");
    api.create(&PostParams::default(), &cm_a).await.unwrap();
    mutate(&api, "e2e-watch-test-configmap-a", 1).await;
    mutate(&api, "e2e-watch-test-configmap-a", 2).await;
    api.delete("e2e-watch-test-configmap-a", &DeleteParams::default())
        .await
        .unwrap();
    let cm_b = configmap("e2e-watch-test-configmap-b", "multiple-watchers-B");
    api.create(&PostParams::default(), &cm_b).await.unwrap();
    api.delete("e2e-watch-test-configmap-b", &DeleteParams::default())
        .await
        .unwrap();

    let name_a = "e2e-watch-test-configmap-a";
    let name_b = "e2e-watch-test-configmap-b";
    let life_a = [
        seen("ADDED", name_a, None),
        seen("MODIFIED", name_a, Some(1)),
        seen("MODIFIED", name_a, Some(2)),
        seen("DELETED", name_a, Some(2)),
    ];
    let life_b = [seen("ADDED", name_b, None), seen("DELETED", name_b, None)];
    for expected in &life_a {
        assert_eq!(&next(&mut a).await.0, expected);
        assert_eq!(&next(&mut ab).await.0, expected);
    }
    for expected in &life_b {
        assert_eq!(
            &next(&mut b).await.0,
            expected,
            "watcher B saw A's configmap"
        );
        assert_eq!(&next(&mut ab).await.0, expected);
    }
}

// conformance: 173
#[tokio::test]
async fn an_object_leaving_the_selector_is_deleted_and_comes_back_added() {
    let server = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let name = "e2e-watch-test-label-changed";
    let selector = "watch-this-configmap=label-changed-and-restored";
    let mut events = watch(&api, selector, "0").await;
    let cm = configmap(name, "label-changed-and-restored");
    api.create(&PostParams::default(), &cm).await.unwrap();
    mutate(&api, name, 1).await;
    let unlabel = json!({"metadata": {"labels": {"watch-this-configmap": "wrong-value"}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&unlabel))
        .await
        .unwrap();
    // Not seen: the configmap does not match the selector now.
    mutate(&api, name, 2).await;
    let relabel =
        json!({"metadata": {"labels": {"watch-this-configmap": "label-changed-and-restored"}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&relabel))
        .await
        .unwrap();
    mutate(&api, name, 3).await;
    api.delete(name, &DeleteParams::default()).await.unwrap();

    for expected in [
        seen("ADDED", name, None),
        seen("MODIFIED", name, Some(1)),
        seen("DELETED", name, Some(1)),
        seen("ADDED", name, Some(2)),
        seen("MODIFIED", name, Some(3)),
        seen("DELETED", name, Some(3)),
    ] {
        assert_eq!(next(&mut events).await.0, expected);
    }
}

// conformance: 174
#[tokio::test]
async fn watches_from_earlier_versions_see_the_same_sequence() {
    let server = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let selector = "watch-this-configmap=consistency";
    let rv = api.list(&ListParams::default()).await.unwrap().metadata;
    let mut first = watch(&api, selector, &rv.resource_version.unwrap()).await;
    let writer = {
        let api = api.clone();
        tokio::spawn(async move { churn(&api).await })
    };
    let written = writer.await.unwrap();
    let mut log: Vec<(Seen, String)> = Vec::new();
    for _ in 0..written {
        log.push(next(&mut first).await);
    }
    // A watch from the resourceVersion of event i replays exactly the events after it.
    for i in [0, 7, 19, 33, written - 2] {
        let mut resumed = watch(&api, selector, &log[i].1).await;
        for expected in &log[i + 1..] {
            assert_eq!(
                &next(&mut resumed).await,
                expected,
                "resumed after event {i}"
            );
        }
    }
}

/// Writes changes to labelled configmaps (creates, updates, deletes); returns how many.
async fn churn(api: &Api<ConfigMap>) -> usize {
    let mut written = 0;
    for round in 0..15u32 {
        let name = format!("consistency-{}", round % 4);
        if api.get_opt(&name).await.unwrap().is_none() {
            written += 1;
        } else {
            api.delete(&name, &DeleteParams::default()).await.unwrap();
            written += 2;
        }
        let cm = configmap(&name, "consistency");
        api.create(&PostParams::default(), &cm).await.unwrap();
        mutate(api, &name, round).await;
        written += 1;
        if round % 2 == 1 {
            mutate(api, &name, round + 100).await;
            written += 1;
        }
    }
    written
}

/// The message of the Status a strict POST of `body` to deployments in `default` fails with.
async fn strict_refusal(server: &TestServer, body: &str) -> String {
    let path = "/apis/apps/v1/namespaces/default/deployments?fieldValidation=Strict";
    let req = http::Request::post(path)
        .header("Content-Type", "application/json")
        .body(body.as_bytes().to_vec())
        .unwrap();
    match server.client().request_text(req).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 400, "{status:?}");
            status.message
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A Deployment's JSON with `meta` and `spec_head` spliced in (keys may repeat).
fn deployment_text(meta: &str, spec_head: &str) -> String {
    format!(
        r#"{{"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {{"name": "my-dep", {meta} "labels": {{"app": "nginx"}}}},
        "spec": {{{spec_head} "selector": {{"matchLabels": {{"app": "nginx"}}}},
            "template": {{"metadata": {{"labels": {{"app": "nginx"}}}},
                "spec": {{"containers": [{{"name": "nginx", "image": "nginx:latest"}}]}}}}}}}}"#
    )
}

// conformance: 114
#[tokio::test]
async fn strict_validation_refuses_unknown_and_duplicate_fields() {
    let server = TestServer::start().await;
    let body = deployment_text(
        "",
        r#""unknownField": "foo", "replicas": 2, "replicas": 3,"#,
    );
    let message = strict_refusal(&server, &body).await;
    let expected = r#"strict decoding error: unknown field "spec.unknownField", duplicate field "spec.replicas""#;
    assert!(message.contains(expected), "{message}");
}

// conformance: 116
#[tokio::test]
async fn strict_validation_refuses_unknown_metadata() {
    let server = TestServer::start().await;
    let body = deployment_text(r#""unknownMeta": "foo","#, "");
    let message = strict_refusal(&server, &body).await;
    let expected = r#"strict decoding error: unknown field "metadata.unknownMeta""#;
    assert!(message.contains(expected), "{message}");
}

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// `(group/version, resource)` of every resource an aggregated document lists.
async fn aggregated(server: &TestServer, path: &str) -> Vec<(String, String)> {
    let req = http::Request::get(path)
        .header("Accept", AGGREGATED)
        .body(Vec::new())
        .unwrap();
    let doc: serde_json::Value = server.client().request(req).await.unwrap();
    assert_eq!(doc["kind"], "APIGroupDiscoveryList", "{path}");
    let mut found = Vec::new();
    for group in doc["items"].as_array().unwrap() {
        let name = group["metadata"]["name"].as_str().unwrap_or_default();
        for version in group["versions"].as_array().unwrap() {
            let version = version["version"].as_str().unwrap();
            let gv = if name.is_empty() {
                version.to_string()
            } else {
                format!("{name}/{version}")
            };
            for r in version_resources(group, version) {
                found.push((gv.clone(), r));
            }
        }
    }
    found
}

fn version_resources(group: &serde_json::Value, version: &str) -> Vec<String> {
    let versions = group["versions"].as_array().unwrap();
    let at = versions.iter().find(|v| v["version"] == version).unwrap();
    at["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["resource"].as_str().unwrap().to_string())
        .collect()
}

/// `(group/version, resource)` of every top-level resource legacy discovery lists.
async fn unaggregated(server: &TestServer) -> Vec<(String, String)> {
    let mut paths = vec!["/api/v1".to_string()];
    let groups: APIGroupList = get(server, "/apis").await;
    for group in groups.groups {
        paths.extend(
            group
                .versions
                .iter()
                .map(|v| format!("/apis/{}", v.group_version)),
        );
    }
    let mut found = Vec::new();
    for path in paths {
        let list: APIResourceList = get(server, &path).await;
        for r in list.resources.iter().filter(|r| !r.name.contains('/')) {
            found.push((list.group_version.clone(), r.name.clone()));
        }
    }
    found
}

// conformance: 65, 67
#[tokio::test]
async fn aggregated_discovery_lists_every_built_in_resource() {
    let server = TestServer::start().await;
    let mut listed = aggregated(&server, "/api").await;
    listed.extend(aggregated(&server, "/apis").await);
    let expected = unaggregated(&server).await;
    assert!(expected.len() > 40, "{expected:?}");
    for resource in &expected {
        assert!(
            listed.contains(resource),
            "{resource:?} is not in aggregated discovery"
        );
    }
    assert!(listed.contains(&("v1".into(), "pods".into())));
    assert!(listed.contains(&("apps/v1".into(), "deployments".into())));
}

/// A status patch of `name` through `api` adds a condition, which a GET of the status shows.
async fn status_patched<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
    K: k8s_openapi::serde::Serialize,
{
    let condition = json!({"type": "StatusUpdated", "status": "True", "reason": "E2E",
        "message": "Set from an e2e test", "lastTransitionTime": "2026-01-01T00:00:00Z"});
    let patch = json!({"status": {"conditions": [condition]}});
    let patched = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let status = serde_json::to_value(&patched).unwrap()["status"].clone();
    assert_eq!(status["conditions"][0]["type"], "StatusUpdated", "{status}");
    let read = serde_json::to_value(api.get_status(name).await.unwrap()).unwrap();
    assert_eq!(read["status"]["conditions"][0]["reason"], "E2E");
}

// conformance: 35
#[tokio::test]
async fn flow_schemas_are_discovered_and_serve_every_verb_and_status() {
    let server = TestServer::start().await;
    let resources = support::discovered(&server, "flowcontrol.apiserver.k8s.io/v1").await;
    for name in ["flowschemas", "flowschemas/status"] {
        assert!(resources.contains(&name.into()), "{resources:?}");
    }
    let api: Api<FlowSchema> = Api::all(server.client());
    let spec = json!({"spec": {"priorityLevelConfiguration": {"name": "global-default"},
        "rules": [{"subjects": [{"kind": "User", "user": {"name": "e2e"}}],
                   "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}]}});
    let names = ["e2e-1", "e2e-2", "e2e-3"];
    for name in names {
        let fs: FlowSchema = support::object(name, spec.clone());
        api.create(&PostParams::default(), &fs).await.unwrap();
    }
    // The server writes each schema's Dangling condition (as upstream's does): wait for it,
    // so that the watch below sees only the test's own changes.
    testkit::eventually("the schemas' conditions", || async {
        let listed = api.list(&support::labelled()).await.unwrap().items;
        listed.len() == 3
            && listed.iter().all(|fs| {
                let conditions = fs.status.as_ref().and_then(|s| s.conditions.as_ref());
                conditions.is_some_and(|c| c.iter().any(|c| c.type_.as_deref() == Some("Dangling")))
            })
    })
    .await;
    let rv = api
        .list(&support::labelled())
        .await
        .unwrap()
        .metadata
        .resource_version;
    let watch = WatchParams::default().labels("e2e-lifecycle=true");
    let mut events = api.watch(&watch, &rv.unwrap()).await.unwrap().boxed();
    let patch = json!({"metadata": {"annotations": {"patched": "true"}}});
    api.patch("e2e-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(
        support::next(&mut events).await,
        ("MODIFIED", "e2e-1".into())
    );
    let mut current = api.get("e2e-1").await.unwrap();
    current
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("updated".into(), "true".into());
    api.replace("e2e-1", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(
        support::next(&mut events).await,
        ("MODIFIED", "e2e-1".into())
    );
    api.delete("e2e-1", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        support::next(&mut events).await,
        ("DELETED", "e2e-1".into())
    );
    api.delete_collection(&DeleteParams::default(), &support::labelled())
        .await
        .unwrap();
    assert!(
        api.list(&support::labelled())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    api.create(&PostParams::default(), &support::object("e2e-status", spec))
        .await
        .unwrap();
    status_patched(&api, "e2e-status").await;
}

// conformance: 36
#[tokio::test]
async fn priority_levels_are_discovered_and_serve_every_verb_and_status() {
    let server = TestServer::start().await;
    let resources = support::discovered(&server, "flowcontrol.apiserver.k8s.io/v1").await;
    for name in [
        "prioritylevelconfigurations",
        "prioritylevelconfigurations/status",
    ] {
        assert!(resources.contains(&name.into()), "{resources:?}");
    }
    let api: Api<PriorityLevelConfiguration> = Api::all(server.client());
    let spec = json!({"spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 2,
        "limitResponse": {"type": "Reject"}}}});
    support::every_verb(&api, |name| support::object(name, spec.clone())).await;
    let created = api
        .create(&PostParams::default(), &support::object("e2e-status", spec))
        .await
        .unwrap();
    let limited = created.spec.and_then(|s| s.limited).unwrap();
    assert_eq!(limited.lendable_percent, Some(0), "defaulted");
    status_patched(&api, "e2e-status").await;
}
