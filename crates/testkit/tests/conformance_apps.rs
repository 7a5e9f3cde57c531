//! Conformance, apps: the workload APIs through the API server alone (no controller runs):
//! the status subresources of Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs and
//! CronJobs, the scale subresources of Deployments, ReplicaSets and ReplicationControllers,
//! label-selected lists and deletecollection of DaemonSets, ReplicaSets and StatefulSets, the
//! lifecycles of CronJobs, suspended Jobs and ReplicationControllers (watched), and
//! PodDisruptionBudgets (every verb, their status, deletecollection) and ControllerRevisions.

mod support;

use std::fmt::Debug;

use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use k8s_openapi::serde::Serialize;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{Value, json};
use support::next;
use testkit::TestServer;

/// A pod template labelled `app: <app>`.
fn template(app: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
    })
}

/// A workload of `kind` (Deployment, ReplicaSet, StatefulSet, DaemonSet) named `name`.
fn workload<K: DeserializeOwned>(name: &str) -> K {
    let spec = json!({"selector": {"matchLabels": {"app": name}}, "template": template(name)});
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn condition_types(obj: &impl Serialize) -> Vec<String> {
    let value = serde_json::to_value(obj).unwrap();
    let conditions = value["status"]["conditions"].as_array().cloned();
    conditions
        .unwrap_or_default()
        .iter()
        .map(|c| c["type"].as_str().unwrap().to_string())
        .collect()
}

/// Reads `name`'s status, replaces it with a `StatusUpdate` condition added, then patches in
/// a `StatusPatched` condition and an annotation; checks each change on a later read.
async fn status_round_trip<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let read = api.get_status(name).await.unwrap();
    assert_eq!(read.meta().name.as_deref(), Some(name));
    let mut value = serde_json::to_value(&read).unwrap();
    let update = json!({"type": "StatusUpdate", "status": "True", "reason": "E2E",
        "message": "Set from e2e test"});
    value["status"]["conditions"] = json!([update]);
    let updated: K = serde_json::from_value(value).unwrap();
    api.replace_status(name, &PostParams::default(), &updated)
        .await
        .unwrap();
    assert_eq!(
        condition_types(&api.get(name).await.unwrap()),
        ["StatusUpdate"]
    );

    let patch = json!({"metadata": {"annotations": {"patchedstatus": "true"}},
        "status": {"conditions": [{"type": "StatusPatched", "status": "True"}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let read = api.get_status(name).await.unwrap();
    assert_eq!(condition_types(&read), ["StatusPatched"]);
    let annotations = read.meta().annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("patchedstatus").map(String::as_str),
        Some("true")
    );
}

/// Creates `name` of kind `K` in `default` and round-trips its status.
async fn check_status<K>(server: &TestServer, name: &str)
where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    K: Clone + DeserializeOwned + Serialize + Debug,
{
    let api: Api<K> = Api::namespaced(server.client(), "default");
    api.create(&PostParams::default(), &workload(name))
        .await
        .unwrap();
    status_round_trip(&api, name).await;
}

// conformance: 213
#[tokio::test]
async fn a_deployment_status_is_read_replaced_and_patched() {
    let server = TestServer::start().await;
    check_status::<Deployment>(&server, "test-deployment").await;
}

// conformance: 241
#[tokio::test]
async fn a_replica_set_status_is_read_replaced_and_patched() {
    let server = TestServer::start().await;
    check_status::<ReplicaSet>(&server, "test-rs").await;
}

// conformance: 261
#[tokio::test]
async fn a_stateful_set_status_is_read_replaced_and_patched() {
    let server = TestServer::start().await;
    check_status::<StatefulSet>(&server, "test-ss").await;
}

// conformance: 202
#[tokio::test]
async fn a_daemon_set_status_is_read_replaced_and_patched() {
    let server = TestServer::start().await;
    check_status::<DaemonSet>(&server, "test-ds").await;
}

fn job(name: &str) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"suspend": true, "template": {
            "spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}},
    }))
    .unwrap()
}

// conformance: 228
#[tokio::test]
async fn a_job_status_is_patched_replaced_and_read() {
    let server = TestServer::start().await;
    let jobs: Api<Job> = Api::namespaced(server.client(), "default");
    let created = jobs
        .create(&PostParams::default(), &job("status-job"))
        .await
        .unwrap();
    let patch = json!({"metadata": {"annotations": {"patchedstatus": "true"}},
        "status": {"startTime": "2026-01-01T00:00:00Z"}});
    let patched = jobs
        .patch_status("status-job", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let start = patched.status.as_ref().and_then(|s| s.start_time.clone());
    assert_eq!(start.unwrap().0.to_string(), "2026-01-01T00:00:00Z");
    assert_eq!(
        patched.metadata.annotations.unwrap()["patchedstatus"],
        "true"
    );

    let mut current = jobs.get_status("status-job").await.unwrap();
    let later = json!("2026-01-02T00:00:00Z");
    current.status.as_mut().unwrap().start_time = Some(serde_json::from_value(later).unwrap());
    let updated = jobs
        .replace_status("status-job", &PostParams::default(), &current)
        .await
        .unwrap();
    let start = updated.status.and_then(|s| s.start_time).unwrap();
    assert_eq!(start.0.to_string(), "2026-01-02T00:00:00Z");

    let read = jobs.get_status("status-job").await.unwrap();
    assert_eq!(read.metadata.uid, created.metadata.uid);
}

fn cron_job(name: &str) -> CronJob {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"special-label": "cronjob-test"}},
        "spec": {"schedule": "*/1 * * * ?", "jobTemplate": {"spec": {"template": {
            "spec": {"restartPolicy": "OnFailure",
                "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}}},
    }))
    .unwrap()
}

/// The next watch event's type and the object's annotations.
async fn next_cron_job(
    events: &mut (impl Stream<Item = kube::Result<WatchEvent<CronJob>>> + Unpin),
) -> (&'static str, Value) {
    let (kind, obj) = match events.next().await.expect("the watch ended").unwrap() {
        WatchEvent::Added(o) => ("ADDED", o),
        WatchEvent::Modified(o) => ("MODIFIED", o),
        WatchEvent::Deleted(o) => ("DELETED", o),
        other => panic!("unexpected watch event {other:?}"),
    };
    (kind, json!(obj.metadata.annotations))
}

// conformance: 192
#[tokio::test]
async fn the_cron_job_api_serves_every_verb() {
    let server = TestServer::start().await;
    let req = http::Request::get("/apis/batch/v1")
        .body(Vec::new())
        .unwrap();
    let discovered: APIResourceList = server.client().request(req).await.unwrap();
    let names: Vec<&str> = discovered
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert!(
        names.contains(&"cronjobs") && names.contains(&"cronjobs/status"),
        "{names:?}"
    );

    let cron_jobs: Api<CronJob> = Api::namespaced(server.client(), "default");
    let labelled = ListParams::default().labels("special-label=cronjob-test");
    let rv = cron_jobs
        .list(&labelled)
        .await
        .unwrap()
        .metadata
        .resource_version;
    let watch = WatchParams::default().labels("special-label=cronjob-test");
    let mut events = cron_jobs.watch(&watch, &rv.unwrap()).await.unwrap().boxed();
    for name in ["cronjob-1", "cronjob-2", "cronjob-3"] {
        cron_jobs
            .create(&PostParams::default(), &cron_job(name))
            .await
            .unwrap();
        assert_eq!(next_cron_job(&mut events).await.0, "ADDED");
    }
    let got = cron_jobs.get("cronjob-1").await.unwrap();
    assert_eq!(got.spec.unwrap().schedule, "*/1 * * * ?");
    assert_eq!(cron_jobs.list(&labelled).await.unwrap().items.len(), 3);
    let everywhere: Api<CronJob> = Api::all(server.client());
    assert_eq!(everywhere.list(&labelled).await.unwrap().items.len(), 3);

    let patch = json!({"metadata": {"annotations": {"patched": "true"}}});
    let patched = cron_jobs
        .patch("cronjob-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(patched.metadata.annotations.unwrap()["patched"], "true");
    let seen = next_cron_job(&mut events).await;
    assert_eq!(seen, ("MODIFIED", json!({"patched": "true"})));
    let mut current = cron_jobs.get("cronjob-1").await.unwrap();
    current
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("updated".into(), "true".into());
    let updated = cron_jobs
        .replace("cronjob-1", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(updated.metadata.annotations.unwrap()["updated"], "true");
    assert_eq!(next_cron_job(&mut events).await.0, "MODIFIED");

    cron_job_status(&cron_jobs).await;

    cron_jobs
        .delete("cronjob-1", &DeleteParams::default())
        .await
        .unwrap();
    assert!(cron_jobs.get_opt("cronjob-1").await.unwrap().is_none());
    cron_jobs
        .delete_collection(&DeleteParams::default(), &labelled)
        .await
        .unwrap();
    assert!(cron_jobs.list(&labelled).await.unwrap().items.is_empty());
}

/// cronjobs/status: get, a patch (with an annotation) and an update.
async fn cron_job_status(cron_jobs: &Api<CronJob>) {
    let read = cron_jobs.get_status("cronjob-1").await.unwrap();
    let uid = read.metadata.uid.clone();
    let patch = json!({"metadata": {"annotations": {"patchedstatus": "true"}},
        "status": {"lastScheduleTime": "2026-01-01T00:00:00Z"}});
    let patched = cron_jobs
        .patch_status("cronjob-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let last = patched
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.clone());
    assert_eq!(last.unwrap().0.to_string(), "2026-01-01T00:00:00Z");
    assert_eq!(
        patched.metadata.annotations.unwrap()["patchedstatus"],
        "true"
    );

    let mut current = cron_jobs.get_status("cronjob-1").await.unwrap();
    let later = serde_json::from_value(json!("2026-01-02T00:00:00Z")).unwrap();
    current.status.as_mut().unwrap().last_schedule_time = Some(later);
    let updated = cron_jobs
        .replace_status("cronjob-1", &PostParams::default(), &current)
        .await
        .unwrap();
    let last = updated.status.and_then(|s| s.last_schedule_time).unwrap();
    assert_eq!(last.0.to_string(), "2026-01-02T00:00:00Z");
    let read = cron_jobs.get_status("cronjob-1").await.unwrap();
    assert_eq!(read.metadata.uid, uid);
}

// conformance: 246
#[tokio::test]
async fn a_replication_controller_scale_is_read_and_updated() {
    let server = TestServer::start().await;
    let rcs: Api<ReplicationController> = Api::namespaced(server.client(), "default");
    let rc = serde_json::from_value(json!({
        "metadata": {"name": "e2e-rc"},
        "spec": {"replicas": 1, "selector": {"app": "e2e-rc"}, "template": template("e2e-rc")},
    }))
    .unwrap();
    rcs.create(&PostParams::default(), &rc).await.unwrap();
    let scale = rcs.get_scale("e2e-rc").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));

    let patch = json!({"spec": {"replicas": 2}});
    let patched = rcs
        .patch_scale("e2e-rc", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().replicas, Some(2));
    let mut scale = rcs.get_scale("e2e-rc").await.unwrap();
    scale.spec.as_mut().unwrap().replicas = Some(3);
    rcs.replace_scale("e2e-rc", &PostParams::default(), &scale)
        .await
        .unwrap();
    let stored = rcs.get("e2e-rc").await.unwrap();
    assert_eq!(stored.spec.unwrap().replicas, Some(3));
}

fn pdb(name: &str, min_available: i32) -> PodDisruptionBudget {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"e2e-pdb": "true"}},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"foo": "bar"}}},
    }))
    .unwrap()
}

async fn namespace(server: &TestServer, name: &str) {
    let namespaces: Api<Namespace> = Api::all(server.client());
    let ns = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

// conformance: 219
#[tokio::test]
async fn a_pdb_is_created_updated_patched_and_deleted() {
    let server = TestServer::start().await;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(server.client(), "default");
    pdbs.create(&PostParams::default(), &pdb("foo", 2))
        .await
        .unwrap();
    let mut current = pdbs.get("foo").await.unwrap();
    current.spec.as_mut().unwrap().min_available =
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(3));
    let updated = pdbs
        .replace("foo", &PostParams::default(), &current)
        .await
        .unwrap();
    let min = json!(updated.spec.unwrap().min_available);
    assert_eq!(min, json!(3));

    let patch = json!({"spec": {"minAvailable": "60%"}});
    pdbs.patch("foo", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let read = pdbs.get("foo").await.unwrap();
    assert_eq!(json!(read.spec.unwrap().min_available), json!("60%"));

    pdbs.delete("foo", &DeleteParams::default()).await.unwrap();
    assert!(pdbs.get_opt("foo").await.unwrap().is_none());
}

// conformance: 217
#[tokio::test]
async fn pdbs_are_listed_everywhere_and_deleted_as_a_collection() {
    let server = TestServer::start().await;
    namespace(&server, "pdb-other").await;
    for (ns, name) in [
        ("default", "pdb-a"),
        ("default", "pdb-b"),
        ("pdb-other", "pdb-c"),
    ] {
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(server.client(), ns);
        pdbs.create(&PostParams::default(), &pdb(name, 1))
            .await
            .unwrap();
    }
    let everywhere: Api<PodDisruptionBudget> = Api::all(server.client());
    assert_eq!(
        everywhere
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );

    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(server.client(), "default");
    pdbs.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    assert!(
        pdbs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        everywhere
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

// conformance: 221
#[tokio::test]
async fn a_pdb_status_is_updated_and_patched() {
    let server = TestServer::start().await;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(server.client(), "default");
    pdbs.create(&PostParams::default(), &pdb("status-pdb", 1))
        .await
        .unwrap();
    let mut current = pdbs.get_status("status-pdb").await.unwrap();
    let status = current.status.get_or_insert_default();
    status.disrupted_pods = Some(
        [(
            "pod-1".into(),
            serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap(),
        )]
        .into(),
    );
    pdbs.replace_status("status-pdb", &PostParams::default(), &current)
        .await
        .unwrap();
    let read = pdbs.get_status("status-pdb").await.unwrap().status.unwrap();
    assert!(read.disrupted_pods.unwrap().contains_key("pod-1"));

    let patch = json!({"status": {"disruptedPods": {"pod-2": "2026-01-01T00:00:00Z"}}});
    pdbs.patch_status("status-pdb", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let read = pdbs.get_status("status-pdb").await.unwrap().status.unwrap();
    let pods = read.disrupted_pods.unwrap();
    assert!(
        pods.contains_key("pod-1") && pods.contains_key("pod-2"),
        "{pods:?}"
    );
}

fn revision(name: &str, number: i64, owner: &DaemonSet) -> ControllerRevision {
    let uid = owner.metadata.uid.clone().unwrap();
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"e2e-revision": "e2e-ds"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "e2e-ds",
                "uid": uid, "controller": true, "blockOwnerDeletion": true}]},
        "data": {"spec": {"template": template("e2e-ds")}},
        "revision": number,
    }))
    .unwrap()
}

// conformance: 184
#[tokio::test]
async fn controller_revisions_live_through_every_verb() {
    let server = TestServer::start().await;
    let daemon_sets: Api<DaemonSet> = Api::namespaced(server.client(), "default");
    let ds = daemon_sets
        .create(&PostParams::default(), &workload("e2e-ds"))
        .await
        .unwrap();
    let revisions: Api<ControllerRevision> = Api::namespaced(server.client(), "default");
    let labelled = ListParams::default().labels("e2e-revision=e2e-ds");
    revisions
        .create(&PostParams::default(), &revision("e2e-ds-1", 1, &ds))
        .await
        .unwrap();
    let everywhere: Api<ControllerRevision> = Api::all(server.client());
    assert_eq!(everywhere.list(&labelled).await.unwrap().items.len(), 1);

    let patch = json!({"metadata": {"labels": {"patched": "true"}}});
    let patched = revisions
        .patch("e2e-ds-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["patched"], "true");

    revisions
        .create(&PostParams::default(), &revision("e2e-ds-2", 2, &ds))
        .await
        .unwrap();
    assert_eq!(revisions.list(&labelled).await.unwrap().items.len(), 2);
    revisions
        .delete("e2e-ds-1", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(revisions.list(&labelled).await.unwrap().items.len(), 1);

    let mut current = revisions.get("e2e-ds-2").await.unwrap();
    current.revision = 3;
    current
        .metadata
        .labels
        .get_or_insert_default()
        .insert("updated".into(), "true".into());
    revisions
        .replace("e2e-ds-2", &PostParams::default(), &current)
        .await
        .unwrap();
    let read = revisions.get("e2e-ds-2").await.unwrap();
    assert_eq!(
        (
            read.revision,
            read.metadata.labels.unwrap()["updated"].as_str()
        ),
        (3, "true")
    );

    revisions
        .delete_collection(&DeleteParams::default(), &labelled)
        .await
        .unwrap();
    assert!(revisions.list(&labelled).await.unwrap().items.is_empty());
}

/// Creates `name` of kind `K` labelled `e2e-collection=<name>`, finds it by label across
/// namespaces, patches it (a label), and deletes it by label as a collection.
async fn listed_patched_and_deleted<K>(server: &TestServer, name: &str)
where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    K: Clone + DeserializeOwned + Serialize + Debug,
{
    let api: Api<K> = Api::namespaced(server.client(), "default");
    let mut obj: K = workload(name);
    let labels = obj.meta_mut().labels.get_or_insert_default();
    labels.insert("e2e-collection".into(), name.into());
    api.create(&PostParams::default(), &obj).await.unwrap();
    let selected = ListParams::default().labels(&format!("e2e-collection={name}"));
    let everywhere: Api<K> = Api::all(server.client());
    assert_eq!(everywhere.list(&selected).await.unwrap().items.len(), 1);

    let patch = json!({"metadata": {"labels": {"e2e-patched": "true"}}});
    let patched = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let labels = patched.meta().labels.clone().unwrap_or_default();
    assert_eq!(labels.get("e2e-patched").map(String::as_str), Some("true"));

    api.delete_collection(&DeleteParams::default(), &selected)
        .await
        .unwrap();
    assert!(everywhere.list(&selected).await.unwrap().items.is_empty());
}

// conformance: 196
#[tokio::test]
async fn daemon_sets_are_listed_and_deleted_as_a_collection() {
    let server = TestServer::start().await;
    listed_patched_and_deleted::<DaemonSet>(&server, "daemon-set").await;
}

// conformance: 239
#[tokio::test]
async fn replica_sets_are_listed_and_deleted_as_a_collection() {
    let server = TestServer::start().await;
    listed_patched_and_deleted::<ReplicaSet>(&server, "test-rs").await;
}

// conformance: 258
#[tokio::test]
async fn stateful_sets_are_listed_patched_and_deleted_as_a_collection() {
    let server = TestServer::start().await;
    listed_patched_and_deleted::<StatefulSet>(&server, "test-ss").await;
}

/// Reads `name`'s scale (1 replica), updates it to 2 and patches it to 4, checking the
/// object's `spec.replicas` after each.
async fn scale_round_trip<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let replicas = |obj: &K| serde_json::to_value(obj).unwrap()["spec"]["replicas"].clone();
    let mut scale = api.get_scale(name).await.unwrap();
    assert_eq!(scale.spec.as_ref().unwrap().replicas, Some(1));
    scale.spec.as_mut().unwrap().replicas = Some(2);
    let updated = api
        .replace_scale(name, &PostParams::default(), &scale)
        .await
        .unwrap();
    assert_eq!(updated.spec.unwrap().replicas, Some(2));
    assert_eq!(replicas(&api.get(name).await.unwrap()), 2);

    let patch = json!({"spec": {"replicas": 4}});
    let patched = api
        .patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().replicas, Some(4));
    assert_eq!(replicas(&api.get(name).await.unwrap()), 4);
}

// conformance: 206
#[tokio::test]
async fn a_deployment_is_scaled_through_its_scale_subresource() {
    let server = TestServer::start().await;
    let api: Api<Deployment> = Api::namespaced(server.client(), "default");
    let mut deployment: Deployment = workload("test-new-deployment");
    deployment.spec.as_mut().unwrap().replicas = Some(1);
    api.create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    scale_round_trip(&api, "test-new-deployment").await;
}

// conformance: 237
#[tokio::test]
async fn a_replica_set_is_scaled_through_its_scale_subresource() {
    let server = TestServer::start().await;
    let api: Api<ReplicaSet> = Api::namespaced(server.client(), "default");
    let mut rs: ReplicaSet = workload("test-rs-scale");
    rs.spec.as_mut().unwrap().replicas = Some(1);
    api.create(&PostParams::default(), &rs).await.unwrap();
    scale_round_trip(&api, "test-rs-scale").await;
}

// conformance: 231
#[tokio::test]
async fn a_suspended_job_is_patched_replaced_listed_and_deleted_by_label() {
    let server = TestServer::start().await;
    let jobs: Api<Job> = Api::namespaced(server.client(), "default");
    let selected = ListParams::default().labels("e2e-job-label=e2e-job");
    let rv = jobs
        .list(&selected)
        .await
        .unwrap()
        .metadata
        .resource_version;
    let watch = WatchParams::default().labels("e2e-job-label=e2e-job");
    let mut events = jobs.watch(&watch, &rv.unwrap()).await.unwrap().boxed();
    let mut suspended = job("e2e-job");
    suspended.metadata.labels = Some([("e2e-job-label".into(), "e2e-job".into())].into());
    jobs.create(&PostParams::default(), &suspended)
        .await
        .unwrap();
    assert_eq!(next(&mut events).await, ("ADDED", "e2e-job".into()));

    let patch = json!({"metadata": {"labels": {"e2e-job": "patched"}}});
    let patched = jobs
        .patch(
            "e2e-job",
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["e2e-job"], "patched");
    assert_eq!(next(&mut events).await, ("MODIFIED", "e2e-job".into()));
    let mut current = jobs.get("e2e-job").await.unwrap();
    let annotations = current.metadata.annotations.get_or_insert_default();
    annotations.insert("updated".into(), "true".into());
    let updated = jobs
        .replace("e2e-job", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(updated.metadata.annotations.unwrap()["updated"], "true");
    assert_eq!(next(&mut events).await, ("MODIFIED", "e2e-job".into()));

    let everywhere: Api<Job> = Api::all(server.client());
    assert_eq!(everywhere.list(&selected).await.unwrap().items.len(), 1);
    jobs.delete_collection(&DeleteParams::background(), &selected)
        .await
        .unwrap();
    assert_eq!(next(&mut events).await, ("DELETED", "e2e-job".into()));
    assert!(everywhere.list(&selected).await.unwrap().items.is_empty());
}

// conformance: 250
#[tokio::test]
async fn a_replication_controller_lives_through_every_verb() {
    let server = TestServer::start().await;
    let rcs: Api<ReplicationController> = Api::namespaced(server.client(), "default");
    let selected = ListParams::default().labels("test-rc-static=true");
    let rv = rcs.list(&selected).await.unwrap().metadata.resource_version;
    let watch = WatchParams::default().labels("test-rc-static=true");
    let mut events = rcs.watch(&watch, &rv.unwrap()).await.unwrap().boxed();
    let rc = serde_json::from_value(json!({
        "metadata": {"name": "rc-test", "labels": {"test-rc-static": "true"}},
        "spec": {"replicas": 1, "selector": {"app": "rc-test"}, "template": template("rc-test")},
    }))
    .unwrap();
    rcs.create(&PostParams::default(), &rc).await.unwrap();
    assert_eq!(next(&mut events).await, ("ADDED", "rc-test".into()));
    assert_eq!(
        rcs.get("rc-test").await.unwrap().spec.unwrap().replicas,
        Some(1)
    );

    let patch = json!({"metadata": {"labels": {"rc": "patched"}}});
    rcs.patch(
        "rc-test",
        &PatchParams::default(),
        &Patch::Strategic(&patch),
    )
    .await
    .unwrap();
    assert_eq!(next(&mut events).await, ("MODIFIED", "rc-test".into()));
    let status = json!({"status": {"readyReplicas": 0, "availableReplicas": 0, "replicas": 0}});
    rcs.patch_status("rc-test", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(next(&mut events).await, ("MODIFIED", "rc-test".into()));
    let scale = json!({"spec": {"replicas": 2}});
    rcs.patch_scale("rc-test", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .unwrap();
    assert_eq!(next(&mut events).await, ("MODIFIED", "rc-test".into()));

    let everywhere: Api<ReplicationController> = Api::all(server.client());
    let listed = everywhere.list(&selected).await.unwrap().items;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].metadata.labels.as_ref().unwrap()["rc"], "patched");
    assert_eq!(listed[0].spec.as_ref().unwrap().replicas, Some(2));
    rcs.delete_collection(&DeleteParams::default(), &selected)
        .await
        .unwrap();
    assert_eq!(next(&mut events).await, ("DELETED", "rc-test".into()));
}
