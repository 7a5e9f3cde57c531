//! Conformance, auth: API lifecycles the API server alone serves: ServiceAccounts (watched
//! through create, patch and delete; updated) and CertificateSigningRequests (discovery, every
//! verb, and the approval and status subresources).

mod support;

use futures::StreamExt;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use serde_json::{Value, json};
use support::next;
use testkit::TestServer;

// conformance: 670
#[tokio::test]
async fn a_service_account_is_watched_through_patch_and_delete() {
    let server = TestServer::start().await;
    let accounts: Api<ServiceAccount> = Api::namespaced(server.client(), "default");
    let selector = "test-serviceaccount-static=true";
    let rv = accounts
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap();
    let watch = WatchParams::default().labels(selector);
    let mut events = accounts
        .watch(&watch, &rv.metadata.resource_version.unwrap())
        .await
        .unwrap()
        .boxed();
    let sa = serde_json::from_value(json!({
        "metadata": {"name": "test-serviceaccount",
            "labels": {"test-serviceaccount-static": "true"}},
    }))
    .unwrap();
    accounts.create(&PostParams::default(), &sa).await.unwrap();
    assert_eq!(
        next(&mut events).await,
        ("ADDED", "test-serviceaccount".into())
    );

    let patch = json!({"metadata": {"labels": {"test-serviceaccount": "patched"}},
        "automountServiceAccountToken": false});
    accounts
        .patch(
            "test-serviceaccount",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    assert_eq!(
        next(&mut events).await,
        ("MODIFIED", "test-serviceaccount".into())
    );
    let listed = accounts
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].metadata.labels.as_ref().unwrap()["test-serviceaccount"],
        "patched"
    );
    assert_eq!(listed[0].automount_service_account_token, Some(false));

    accounts
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(selector),
        )
        .await
        .unwrap();
    assert_eq!(
        next(&mut events).await,
        ("DELETED", "test-serviceaccount".into())
    );
}

// conformance: 671
#[tokio::test]
async fn a_service_account_is_updated() {
    let server = TestServer::start().await;
    let accounts: Api<ServiceAccount> = Api::namespaced(server.client(), "default");
    let sa = serde_json::from_value(json!({"metadata": {"name": "e2e-sa"}})).unwrap();
    accounts.create(&PostParams::default(), &sa).await.unwrap();
    let mut current = accounts.get("e2e-sa").await.unwrap();
    current.automount_service_account_token = Some(true);
    let updated = accounts
        .replace("e2e-sa", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(updated.automount_service_account_token, Some(true));
    let read = accounts.get("e2e-sa").await.unwrap();
    assert_eq!(read.automount_service_account_token, Some(true));
}

/// A PEM certificate request for CN=e2e.example.com (base64, as `spec.request` holds it).
const REQUEST: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlIak1JR0tBZ0VBTUNneEdEQVdCZ05WQkFNTUQyVXlaUzVsZUdGdGNHeGxMbU52YlRFTU1Bb0dBMVVFQ2d3RApaVEpsTUZrd0V3WUhLb1pJemowQ0FRWUlLb1pJemowREFRY0RRZ0FFYlVqT3A1S1luWXJBS0RHdTVkL3N1a2NuClYwRHVRdlc3b0ZCcDY3L2EyZldLbG9qQXFsYW1POS9aSlJVZitlUWNiaC9uZy80RFNscWFqRjZlZ3VoNDBxQUEKTUFvR0NDcUdTTTQ5QkFNQ0EwZ0FNRVVDSVFDMEkrNU95eDhSbzk5MzE2L29MRWZ6NVRyRG5Qb1pjYjBlM21JSwpiVVcyc1FJZ1E4OFpTdTQ5TS9nWm9CVVJMU0U1N1JlUWlvbnV6UGtzVjE2OEljcDdMU1E9Ci0tLS0tRU5EIENFUlRJRklDQVRFIFJFUVVFU1QtLS0tLQo=";

/// A PEM certificate for the same key (base64, as `status.certificate` holds it).
const CERTIFICATE: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJwRENDQVV1Z0F3SUJBZ0lVRmYwTDgzRGF5bzAyREwwdUJDZHdObEtOZzJrd0NnWUlLb1pJemowRUF3SXcKS0RFWU1CWUdBMVVFQXd3UFpUSmxMbVY0WVcxd2JHVXVZMjl0TVF3d0NnWURWUVFLREFObE1tVXdIaGNOTWpZeApNakEzTURnMU5EUTVXaGNOTXpZeE1qQTBNRGcxTkRRNVdqQW9NUmd3RmdZRFZRUUREQTlsTW1VdVpYaGhiWEJzClpTNWpiMjB4RERBS0JnTlZCQW9NQTJVeVpUQlpNQk1HQnlxR1NNNDlBZ0VHQ0NxR1NNNDlBd0VIQTBJQUJHMUkKenFlU21KMkt3Q2d4cnVYZjdMcEhKMWRBN2tMMXU2QlFhZXUvMnRuMWlwYUl3S3BXcGp2ZjJTVVZIL25rSEc0Zgo1NFArQTBwYW1veGVub0xvZU5LalV6QlJNQjBHQTFVZERnUVdCQlJSZWJrUjhFZkl6eTZDOERiU29aeHQveTZ2CnJUQWZCZ05WSFNNRUdEQVdnQlJSZWJrUjhFZkl6eTZDOERiU29aeHQveTZ2clRBUEJnTlZIUk1CQWY4RUJUQUQKQVFIL01Bb0dDQ3FHU000OUJBTUNBMGNBTUVRQ0lIRERBOHd1UHozOHhnTjJ2QUVLcXd3NzhvazIzR01YOVAveQpUa3Fhc2s0YUFpQks0T3lLZENvVkhqUlU4WDQ4Rjd4dklnTEg0NzNZUWhqaGlPbFZKcE9LU3c9PQotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==";

fn csr(name: &str) -> CertificateSigningRequest {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"e2e-csr": "true"}},
        "spec": {"request": REQUEST, "signerName": "example.com/e2e",
            "usages": ["digital signature", "key encipherment", "client auth"]},
    }))
    .unwrap()
}

fn condition_types(csr: &CertificateSigningRequest) -> Vec<String> {
    let conditions = csr.status.as_ref().and_then(|s| s.conditions.clone());
    conditions
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.type_)
        .collect()
}

// conformance: 661
#[tokio::test]
async fn certificate_signing_requests_serve_every_verb_and_subresource() {
    let server = TestServer::start().await;
    let req = http::Request::get("/apis/certificates.k8s.io/v1")
        .body(Vec::new())
        .unwrap();
    let discovered: APIResourceList = server.client().request(req).await.unwrap();
    let names: Vec<&str> = discovered
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    for name in [
        "certificatesigningrequests",
        "certificatesigningrequests/approval",
        "certificatesigningrequests/status",
    ] {
        assert!(names.contains(&name), "{names:?}");
    }

    let csrs: Api<CertificateSigningRequest> = Api::all(server.client());
    let signed = ListParams::default().fields("spec.signerName=example.com/e2e");
    let rv = csrs.list(&signed).await.unwrap().metadata.resource_version;
    let watch = WatchParams::default().labels("e2e-csr=true");
    let mut events = csrs.watch(&watch, &rv.unwrap()).await.unwrap().boxed();
    for name in ["e2e-csr-1", "e2e-csr-2", "e2e-csr-3"] {
        csrs.create(&PostParams::default(), &csr(name))
            .await
            .unwrap();
        assert_eq!(next(&mut events).await, ("ADDED", name.into()));
    }
    let got = csrs.get("e2e-csr-1").await.unwrap();
    assert_eq!(json!(got.spec.request), json!(REQUEST));
    assert_eq!(csrs.list(&signed).await.unwrap().items.len(), 3);

    let patch = json!({"metadata": {"annotations": {"patched": "true"}}});
    let patched = csrs
        .patch("e2e-csr-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(patched.metadata.annotations.unwrap()["patched"], "true");
    assert_eq!(next(&mut events).await, ("MODIFIED", "e2e-csr-1".into()));
    let mut current = csrs.get("e2e-csr-1").await.unwrap();
    current
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("updated".into(), "true".into());
    let updated = csrs
        .replace("e2e-csr-1", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(updated.metadata.annotations.unwrap()["updated"], "true");

    approval(&csrs, &got).await;
    status(&csrs, &got).await;

    csrs.delete("e2e-csr-1", &DeleteParams::default())
        .await
        .unwrap();
    assert!(csrs.get_opt("e2e-csr-1").await.unwrap().is_none());
    assert_eq!(csrs.list(&signed).await.unwrap().items.len(), 2);
    csrs.delete_collection(&DeleteParams::default(), &signed)
        .await
        .unwrap();
    assert!(csrs.list(&signed).await.unwrap().items.is_empty());
}

/// certificatesigningrequests/approval: get, patch (a condition and an annotation), update
/// (approved).
async fn approval(csrs: &Api<CertificateSigningRequest>, created: &CertificateSigningRequest) {
    let read: CertificateSigningRequest =
        csrs.get_subresource("approval", "e2e-csr-1").await.unwrap();
    assert_eq!(read.metadata.uid, created.metadata.uid);
    let patch = json!({"metadata": {"annotations": {"patchedapproval": "true"}},
        "status": {"conditions": [{"type": "ApprovalPatch", "status": "True", "reason": "e2e"}]}});
    let mut patched = csrs
        .patch_subresource(
            "approval",
            "e2e-csr-1",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    assert_eq!(condition_types(&patched), ["ApprovalPatch"]);
    let annotations = patched.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("patchedapproval").map(String::as_str),
        Some("true")
    );

    let approved = json!({"type": "Approved", "status": "True", "reason": "E2E",
        "message": "Set from an e2e test"});
    patched
        .status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()
        .push(serde_json::from_value(approved).unwrap());
    let updated = csrs
        .replace_subresource("approval", "e2e-csr-1", &PostParams::default(), &patched)
        .await
        .unwrap();
    assert_eq!(condition_types(&updated), ["ApprovalPatch", "Approved"]);
}

/// certificatesigningrequests/status: get, patch (the certificate and an annotation), update
/// (a condition).
async fn status(csrs: &Api<CertificateSigningRequest>, created: &CertificateSigningRequest) {
    let read = csrs.get_status("e2e-csr-1").await.unwrap();
    assert_eq!(read.metadata.uid, created.metadata.uid);
    let patch = json!({"metadata": {"annotations": {"patchedstatus": "true"}},
        "status": {"certificate": CERTIFICATE}});
    let mut patched = csrs
        .patch_status("e2e-csr-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let certificate: Value = json!(patched.status.as_ref().unwrap().certificate);
    assert_eq!(certificate, json!(CERTIFICATE));
    let annotations = patched.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("patchedstatus").map(String::as_str),
        Some("true")
    );

    let condition = json!({"type": "StatusUpdate", "status": "True", "reason": "E2E",
        "message": "Set from an e2e test"});
    let conditions = patched
        .status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap();
    conditions.push(serde_json::from_value(condition).unwrap());
    let updated = csrs
        .replace_status("e2e-csr-1", &PostParams::default(), &patched)
        .await
        .unwrap();
    let types = condition_types(&updated);
    assert_eq!(types, ["ApprovalPatch", "Approved", "StatusUpdate"]);
}
