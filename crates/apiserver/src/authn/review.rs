//! The reviews of `authentication.k8s.io/v1`, each a create that stores nothing:
//! - TokenReview: who does this bearer token stand for? (what webhooks and aggregated servers
//!   ask); service-account tokens answer with their account's UID, audiences and extras
//!   (the pod, node and credential ID), static tokens with their user;
//! - SelfSubjectReview: who am I? (`kubectl auth whoami`).

use serde_json::{Value, json};

use super::serviceaccount::{ISSUER, Signer};
use super::{Identity, Tokens, authenticate_service_account};
use crate::registry::Registry;

/// What the server authenticates with.
pub struct Authenticators<'a> {
    /// Static and bootstrap tokens.
    pub tokens: &'a Tokens,
    /// Service-account tokens.
    pub signer: &'a Signer,
    /// Where accounts and pods are looked up.
    pub registry: &'a Registry,
}

/// Answers the review `review` (of `plural`) asked by `who`.
pub async fn answer(
    auth: &Authenticators<'_>,
    who: &Identity,
    plural: &str,
    mut review: Value,
) -> Value {
    review["status"] = match plural {
        "tokenreviews" => token_review(auth, &review["spec"]).await,
        _ => json!({"userInfo": user_info(who)}),
    };
    if !review["metadata"].is_object() {
        review["metadata"] = json!({});
    }
    review["metadata"]["creationTimestamp"] = Value::Null;
    review
}

fn user_info(who: &Identity) -> Value {
    json!({"username": who.user, "groups": who.groups})
}

async fn token_review(auth: &Authenticators<'_>, spec: &Value) -> Value {
    let token = spec["token"].as_str().unwrap_or_default();
    let asked: Vec<&str> = spec["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let audiences = if asked.is_empty() {
        vec![ISSUER]
    } else {
        asked
    };
    if let Some(who) = auth.tokens.authenticate(&format!("Bearer {token}")) {
        return json!({"authenticated": true, "user": user_info(&who), "audiences": audiences});
    }
    let Some((who, claims)) =
        authenticate_service_account(auth.signer, auth.registry, token, &audiences).await
    else {
        return json!({"user": {}, "error": "invalid bearer token"});
    };
    let private = &claims.kubernetes;
    let mut extra =
        json!({"authentication.kubernetes.io/credential-id": [format!("JTI={}", claims.jti)]});
    if let Some(pod) = &private.pod {
        extra["authentication.kubernetes.io/pod-name"] = json!([pod.name]);
        extra["authentication.kubernetes.io/pod-uid"] = json!([pod.uid]);
    }
    if let Some(node) = &private.node {
        extra["authentication.kubernetes.io/node-name"] = json!([node.name]);
        extra["authentication.kubernetes.io/node-uid"] = json!([node.uid]);
    }
    let granted: Vec<&str> = audiences
        .iter()
        .copied()
        .filter(|a| claims.aud.iter().any(|t| t == a))
        .collect();
    let mut user = user_info(&who);
    user["uid"] = json!(private.serviceaccount.uid);
    user["extra"] = extra;
    json!({"authenticated": true, "user": user, "audiences": granted})
}
