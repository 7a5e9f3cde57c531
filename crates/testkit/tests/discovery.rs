//! What clients read as text: discovery documents in upstream's field and resource order
//! with upstream's `storageVersionHash`es, the newline upstream's encoder ends every JSON
//! answer with, and the request metrics `/metrics` shows afterwards.

use serde_json::Value;
use testkit::TestServer;

const JSON: &str = "application/json";
const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// The body of `method path` (with `body`, if any, of `content_type`), as text.
async fn text(
    server: &TestServer,
    method: &str,
    path: &str,
    accept: &str,
    body: Option<(&str, &str)>,
) -> String {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Accept", accept);
    if let Some((content_type, _)) = body {
        req = req.header("Content-Type", content_type);
    }
    let bytes = body.map_or_else(Vec::new, |(_, b)| b.as_bytes().to_vec());
    let req = req.body(bytes).unwrap();
    server.client().request_text(req).await.unwrap()
}

async fn get(server: &TestServer, path: &str, accept: &str) -> String {
    text(server, "GET", path, accept, None).await
}

/// The resource names of an APIResourceList, in order.
fn names(list: &str) -> Vec<String> {
    let list: Value = serde_json::from_str(list).unwrap();
    let resources = list["resources"].as_array().unwrap();
    let names = resources.iter().map(|r| r["name"].as_str().unwrap().into());
    names.collect()
}

const ALL_VERBS: &str =
    r#"["create","delete","deletecollection","get","list","patch","update","watch"]"#;

#[tokio::test]
async fn legacy_discovery_reads_as_upstream_writes_it() {
    let server = TestServer::start().await;
    let core = get(&server, "/api/v1", JSON).await;
    // Fields in Go's struct order, resources sorted by name, storageVersionHash the first
    // 8 bytes of sha256("/v1/ConfigMap") in base64.
    let head = format!(
        r#"{{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"v1","resources":[{{"name":"configmaps","singularName":"configmap","namespaced":true,"kind":"ConfigMap","verbs":{ALL_VERBS},"shortNames":["cm"],"storageVersionHash":"qFsyl6wFWjQ="}},"#
    );
    assert!(core.starts_with(&head), "{core}");
    assert!(core.ends_with("]}\n"), "{core}");
    // sha256("/v1/Pod"), then the pod's subresources right after it, sorted.
    let pods = format!(
        r#"{{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":{ALL_VERBS},"shortNames":["po"],"categories":["all"],"storageVersionHash":"xPOwRZ+Yhw8="}},{{"name":"pods/attach","singularName":"","namespaced":true,"kind":"PodAttachOptions","verbs":["create","get"]}},"#
    );
    assert!(core.contains(&pods), "{core}");
    assert!(
        core.contains(r#"{"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]}"#),
        "{core}"
    );
    let names = names(&core);
    let at = names.iter().position(|n| n == "pods").unwrap();
    assert_eq!(
        names[at..at + 11],
        [
            "pods",
            "pods/attach",
            "pods/binding",
            "pods/ephemeralcontainers",
            "pods/eviction",
            "pods/exec",
            "pods/log",
            "pods/portforward",
            "pods/proxy",
            "pods/status",
            "podtemplates",
        ]
    );
    // sha256("apps/v1/Deployment").
    let apps = get(&server, "/apis/apps/v1", JSON).await;
    assert!(
        apps.contains(&format!(
            r#"{{"name":"deployments","singularName":"deployment","namespaced":true,"kind":"Deployment","verbs":{ALL_VERBS},"shortNames":["deploy"],"categories":["all"],"storageVersionHash":"8aSe+NMegvE="}},{{"name":"deployments/scale","singularName":"","namespaced":true,"group":"autoscaling","version":"v1","kind":"Scale","verbs":["get","patch","update"]}},"#
        )),
        "{apps}"
    );
    for path in ["/api", "/apis", "/apis/apps", "/apis/apps/v1"] {
        let doc = get(&server, path, JSON).await;
        assert!(doc.ends_with("}\n"), "{path}: {doc}");
    }
}

#[tokio::test]
async fn aggregated_discovery_lists_subresources_in_order() {
    let server = TestServer::start().await;
    let core = get(&server, "/api", AGGREGATED).await;
    assert!(core.ends_with("}]}\n"), "{core}");
    let doc: Value = serde_json::from_str(&core).unwrap();
    let resources = doc["items"][0]["versions"][0]["resources"]
        .as_array()
        .unwrap();
    let pods = resources.iter().find(|r| r["resource"] == "pods").unwrap();
    let subs: Vec<&str> = pods["subresources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subresource"].as_str().unwrap())
        .collect();
    assert_eq!(
        subs,
        [
            "attach",
            "binding",
            "ephemeralcontainers",
            "eviction",
            "exec",
            "log",
            "portforward",
            "proxy",
            "status"
        ]
    );
    let named = get(&server, "/apis", AGGREGATED).await;
    assert!(named.ends_with("}]}\n"), "{named}");
}

#[tokio::test]
async fn every_json_answer_ends_with_a_newline() {
    let server = TestServer::start().await;
    let base = "/api/v1/namespaces/default/configmaps";
    let created = text(
        &server,
        "POST",
        base,
        JSON,
        Some((JSON, r#"{"metadata":{"name":"nl"},"data":{"a":"1"}}"#)),
    )
    .await;
    let one = format!("{base}/nl");
    let patch = Some(("application/merge-patch+json", r#"{"data":{"a":"2"}}"#));
    let answers = [
        ("create", created),
        ("get", get(&server, &one, JSON).await),
        ("list", get(&server, base, JSON).await),
        ("table", get(&server, base, TABLE).await),
        ("table of one", get(&server, &one, TABLE).await),
        (
            "list with a selector",
            get(&server, &format!("{base}?labelSelector=x%3Dy"), JSON).await,
        ),
        ("patch", text(&server, "PATCH", &one, JSON, patch).await),
        ("delete", text(&server, "DELETE", &one, JSON, None).await),
    ];
    for (what, body) in answers {
        assert!(body.ends_with("}\n"), "{what}: {body:?}");
        assert!(!body.ends_with("\n\n"), "{what}: {body:?}");
        serde_json::from_str::<Value>(&body).unwrap();
    }
}

#[tokio::test]
async fn metrics_count_and_time_the_requests_served() {
    let server = TestServer::start().await;
    let base = "/api/v1/namespaces/default/configmaps";
    let body = Some((JSON, r#"{"metadata":{"name":"m"}}"#));
    text(&server, "POST", base, JSON, body).await;
    get(&server, base, JSON).await;
    get(&server, &format!("{base}/m"), JSON).await;
    let metrics = get(&server, "/metrics", "text/plain").await;
    for line in [
        r#"apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1"} 1"#,
        r#"apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="configmaps",scope="namespace",subresource="",verb="LIST",version="v1"} 1"#,
        r#"apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="GET",version="v1"} 1"#,
        r#"apiserver_request_duration_seconds_count{component="apiserver",dry_run="",group="",resource="configmaps",scope="namespace",subresource="",verb="LIST",version="v1"} 1"#,
        r#"apiserver_request_duration_seconds_bucket{le="60.0",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1"} 1"#,
        "# TYPE apiserver_current_inflight_requests gauge",
        r#"apiserver_current_inflight_requests{request_kind="mutating"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} missing in:\n{metrics}");
    }
}
