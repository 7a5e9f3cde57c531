//! Conformance, scheduling: LimitRanges (listed across namespaces by label, patched, deleted
//! as a collection in one namespace; their defaults and bounds applied to new pods by
//! admission) and PriorityClasses (listed; description patched and updated; the value refused
//! a change).

use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use testkit::{TestServer, eventually};

fn limit_range(name: &str, default_cpu: &str) -> LimitRange {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"e2e-limitrange": "true"}},
        "spec": {"limits": [{"type": "Container",
            "default": {"cpu": default_cpu, "memory": "500Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "200Mi"}}]},
    }))
    .unwrap()
}

/// The first limit's default CPU.
fn default_cpu(lr: &LimitRange) -> Value {
    json!(
        lr.spec.as_ref().unwrap().limits[0]
            .default
            .as_ref()
            .unwrap()["cpu"]
    )
}

// conformance: 640
#[tokio::test]
async fn limit_ranges_are_listed_patched_and_deleted_as_a_collection() {
    let server = TestServer::start().await;
    let namespaces: Api<Namespace> = Api::all(server.client());
    let other = serde_json::from_value(json!({"metadata": {"name": "limits-other"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &other)
        .await
        .unwrap();
    let here: Api<LimitRange> = Api::namespaced(server.client(), "default");
    let there: Api<LimitRange> = Api::namespaced(server.client(), "limits-other");
    for api in [&here, &there] {
        api.create(&PostParams::default(), &limit_range("e2e-limits", "500m"))
            .await
            .unwrap();
    }
    let everywhere: Api<LimitRange> = Api::all(server.client());
    let labelled = ListParams::default().labels("e2e-limitrange=true");
    assert_eq!(everywhere.list(&labelled).await.unwrap().items.len(), 2);

    let patch = json!({"metadata": {"labels": {"e2e-patched": "true"}},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "1", "memory": "1Gi"}}]}});
    let patched = here
        .patch("e2e-limits", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(default_cpu(&patched), json!("1"));
    let read = here.get("e2e-limits").await.unwrap();
    assert_eq!(default_cpu(&read), json!("1"));
    assert_eq!(read.metadata.labels.unwrap()["e2e-patched"], "true");

    here.delete_collection(&DeleteParams::default(), &labelled)
        .await
        .unwrap();
    let left = everywhere.list(&labelled).await.unwrap().items;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].metadata.namespace.as_deref(), Some("limits-other"));
}

fn priority_class(name: &str, value: i32) -> PriorityClass {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"e2e-priority": "true"}},
        "value": value,
    }))
    .unwrap()
}

/// The status code of a failed request.
fn code<K: std::fmt::Debug>(result: kube::Result<K>) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

// conformance: 652
#[tokio::test]
async fn priority_classes_change_their_description_but_not_their_value() {
    let server = TestServer::start().await;
    let classes: Api<PriorityClass> = Api::all(server.client());
    for (i, name) in ["p1", "p2", "p3"].iter().enumerate() {
        classes
            .create(
                &PostParams::default(),
                &priority_class(name, 100 + i as i32),
            )
            .await
            .unwrap();
    }
    let value = json!({"value": 999});
    let refused = classes
        .patch("p1", &PatchParams::default(), &Patch::Merge(&value))
        .await;
    assert_eq!(code(refused), 422);
    let mut current = classes.get("p1").await.unwrap();
    current.value = 999;
    assert_eq!(
        code(
            classes
                .replace("p1", &PostParams::default(), &current)
                .await
        ),
        422
    );

    let description = json!({"description": "patched"});
    for name in ["p1", "p2", "p3"] {
        let patched = classes
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Strategic(&description),
            )
            .await
            .unwrap();
        assert_eq!(patched.description.as_deref(), Some("patched"));
    }
    let mut current = classes.get("p2").await.unwrap();
    current.description = Some("updated".into());
    classes
        .replace("p2", &PostParams::default(), &current)
        .await
        .unwrap();

    let labelled = ListParams::default().labels("e2e-priority=true");
    let listed = classes.list(&labelled).await.unwrap().items;
    let seen: Vec<(String, i32, Option<String>)> = listed
        .into_iter()
        .map(|pc| (pc.metadata.name.unwrap(), pc.value, pc.description))
        .collect();
    let expected = [
        ("p1", 100, "patched"),
        ("p2", 101, "updated"),
        ("p3", 102, "patched"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(n, v, d)| (n.to_string(), *v, Some(d.to_string())))
        .collect();
    assert_eq!(seen, expected);
}

/// A LimitRange per container: min 100m/100Mi, max 500m/500Mi, default requests 200m/200Mi
/// and limits 300m/300Mi; `min_cpu` replaces the minimum CPU.
fn bounded_range(min_cpu: &str) -> LimitRange {
    serde_json::from_value(json!({
        "metadata": {"name": "limits"},
        "spec": {"limits": [{"type": "Container",
            "min": {"cpu": min_cpu, "memory": "100Mi"},
            "max": {"cpu": "500m", "memory": "500Mi"},
            "defaultRequest": {"cpu": "200m", "memory": "200Mi"},
            "default": {"cpu": "300m", "memory": "300Mi"}}]},
    }))
    .unwrap()
}

/// A pod named `name` whose one container has `resources`.
fn pod(name: &str, resources: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": resources}]},
    }))
    .unwrap()
}

/// The first container's resources, as JSON.
fn resources(pod: &Pod) -> Value {
    json!(pod.spec.as_ref().unwrap().containers[0].resources)
}

/// Whether a dry-run create of `pod` is admitted.
async fn admitted(pods: &Api<Pod>, pod: &Pod) -> bool {
    pods.create(
        &PostParams {
            dry_run: true,
            ..Default::default()
        },
        pod,
    )
    .await
    .is_ok()
}

// conformance: 639
#[tokio::test]
async fn a_limit_range_defaults_and_bounds_pod_resources() {
    let server = TestServer::start().await;
    let ranges: Api<LimitRange> = Api::namespaced(server.client(), "default");
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    ranges
        .create(&PostParams::default(), &bounded_range("100m"))
        .await
        .unwrap();
    let stored = ranges.get("limits").await.unwrap();
    assert_eq!(json!(stored.spec), json!(bounded_range("100m").spec));

    let bare = pod("pod-no-resources", json!({}));
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    eventually("the LimitRange's defaults apply", || async {
        resources(&pods.create(&dry, &bare).await.unwrap())["limits"]["cpu"] == "300m"
    })
    .await;
    let created = pods.create(&PostParams::default(), &bare).await.unwrap();
    let defaults = json!({"requests": {"cpu": "200m", "memory": "200Mi"},
        "limits": {"cpu": "300m", "memory": "300Mi"}});
    assert_eq!(resources(&created), defaults);

    let partial = json!({"requests": {"cpu": "300m", "memory": "150Mi"},
        "limits": {"cpu": "300m"}});
    let created = pods
        .create(
            &PostParams::default(),
            &pod("pod-partial-resources", partial),
        )
        .await
        .unwrap();
    let kept = json!({"requests": {"cpu": "300m", "memory": "150Mi"},
        "limits": {"cpu": "300m", "memory": "300Mi"}});
    assert_eq!(resources(&created), kept);

    let too_big = pod(
        "pod-too-big",
        json!({"limits": {"cpu": "600m", "memory": "300Mi"}}),
    );
    assert_eq!(
        code(pods.create(&PostParams::default(), &too_big).await),
        403
    );
    let too_small = pod(
        "pod-too-small",
        json!({"requests": {"cpu": "50m", "memory": "150Mi"}}),
    );
    assert_eq!(
        code(pods.create(&PostParams::default(), &too_small).await),
        403
    );

    let mut current = ranges.get("limits").await.unwrap();
    current.spec = bounded_range("20m").spec;
    ranges
        .replace("limits", &PostParams::default(), &current)
        .await
        .unwrap();
    eventually("the lower minimum admits the small pod", || {
        admitted(&pods, &too_small)
    })
    .await;

    ranges
        .delete("limits", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the big pod is admitted without the LimitRange", || {
        admitted(&pods, &too_big)
    })
    .await;
    pods.create(&PostParams::default(), &too_big).await.unwrap();
}
