//! One request followed through the record to the log file.

use std::sync::Arc;

use api::request::RequestInfo;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::{Auditor, LogOptions, Options};
use crate::authn::Identity;

const POLICY: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  resources:\n  - group: \"\"\n    resources: [events]\n- level: RequestResponse\n  verbs: [create]\n- level: Metadata\n";

fn auditor(dir: &std::path::Path) -> Arc<Auditor> {
    std::fs::write(dir.join("policy.yaml"), POLICY).unwrap();
    let opts = Options {
        policy_file: dir.join("policy.yaml"),
        log: Some(LogOptions {
            path: dir.join("audit.log"),
            max_size_mb: 0,
            max_backups: 0,
            max_age_days: 0,
        }),
        webhook: None,
    };
    Arc::new(Auditor::new(&opts).unwrap())
}

fn events(dir: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("audit.log")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn info(plural: &str, verb: &'static str, name: Option<&str>) -> RequestInfo {
    RequestInfo {
        resource: Arc::new(api::resources::find("", "v1", plural).unwrap().clone()),
        namespace: Some("team".into()),
        name: name.map(String::from),
        subresource: None,
        verb,
    }
}

/// Serves one request as the request path would report it.
async fn serve(
    a: &Arc<Auditor>,
    uri: &str,
    info: RequestInfo,
    body: &'static [u8],
    answer: Value,
) -> Response<Body> {
    let req = Request::post(uri)
        .header("user-agent", "kubectl/v1.33.0")
        .body(Body::from(body))
        .unwrap();
    a.audited(req, |req| async move {
        let bob = Identity::new("bob".into(), vec!["dev".into()]);
        super::authenticated(&bob);
        super::addressed(info.verb, Some(&info), req.uri().path());
        super::annotate("authorization.k8s.io/decision", "allow");
        let body = req.into_body().collect().await.unwrap().to_bytes();
        if let Ok(obj) = serde_json::from_slice(&body) {
            super::request_object(&obj);
        }
        crate::handlers::json_response(StatusCode::CREATED, &answer)
    })
    .await
}

#[tokio::test]
async fn a_create_is_recorded_with_both_bodies_and_the_stages() {
    let dir = tempfile::tempdir().unwrap();
    let a = auditor(dir.path());
    let pod = json!({"metadata": {"name": "p", "uid": "u1"}, "spec": {}});
    let resp = serve(
        &a,
        "/api/v1/namespaces/team/pods?fieldManager=kubectl",
        info("pods", "create", None),
        br#"{"metadata":{"name":"p"},"spec":{}}"#,
        pod.clone(),
    )
    .await;
    let id = resp.headers()["audit-id"].to_str().unwrap().to_string();
    let events = events(dir.path());
    let stages: Vec<&str> = events
        .iter()
        .map(|e| e["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["RequestReceived", "ResponseComplete"]);
    let done = &events[1];
    assert_eq!(done["auditID"], id.as_str());
    assert_eq!(done["level"], "RequestResponse");
    assert_eq!(done["verb"], "create");
    assert_eq!(
        done["requestURI"],
        "/api/v1/namespaces/team/pods?fieldManager=kubectl"
    );
    assert_eq!(
        done["user"],
        json!({"username": "bob", "groups": ["dev", "system:authenticated"]})
    );
    assert_eq!(done["userAgent"], "kubectl/v1.33.0");
    assert_eq!(
        done["objectRef"],
        json!({"resource": "pods", "namespace": "team", "name": "p", "apiVersion": "v1"})
    );
    assert_eq!(done["responseStatus"], json!({"metadata": {}, "code": 201}));
    assert_eq!(done["requestObject"]["metadata"]["name"], "p");
    assert_eq!(done["responseObject"], pod);
    assert_eq!(
        done["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
    assert!(events[0].get("responseStatus").is_none());
    assert!(events[0].get("responseObject").is_none());
}

#[tokio::test]
async fn levels_leave_out_bodies_and_none_leaves_out_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let a = auditor(dir.path());
    let get = info("pods", "get", Some("p"));
    serve(&a, "/api/v1/namespaces/team/pods/p", get, b"", json!({})).await;
    let events_info = info("events", "create", None);
    serve(
        &a,
        "/api/v1/namespaces/team/events",
        events_info,
        b"{}",
        json!({}),
    )
    .await;
    let events = events(dir.path());
    assert_eq!(events.len(), 2, "{events:?}");
    let done = &events[1];
    assert_eq!(done["level"], "Metadata");
    assert!(done.get("requestObject").is_none() && done.get("responseObject").is_none());
}
