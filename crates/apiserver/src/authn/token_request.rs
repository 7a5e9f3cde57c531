//! `serviceaccounts/token` (a TokenRequest, what `kubectl create token` sends): a token for the
//! account, for the audiences asked (the API server's by default), expiring after
//! `expirationSeconds` (an hour by default, ten minutes at least), optionally bound to a pod,
//! secret or node of the account's namespace, in upstream's words when refused.

use api::validation::FieldError;
use api::{Resource, Status};
use serde_json::{Value, json};

use super::serviceaccount::{Claims, ISSUER, Private, Ref, Signer};
use crate::podlogs::resource;
use crate::registry::Registry;

/// The default lifetime, in seconds.
const DEFAULT_SECONDS: i64 = 3600;

/// The shortest lifetime allowed.
const MIN_SECONDS: i64 = 600;

/// The longest lifetime allowed (2^32 seconds).
const MAX_SECONDS: i64 = 1 << 32;

fn meta_str<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj["metadata"][key].as_str().unwrap_or_default()
}

/// Answers the TokenRequest `request` for the account `name` in `ns`; `node` is the asking
/// node agent's node, if a node asks.
pub async fn issue(
    signer: &Signer,
    reg: &Registry,
    ns: &str,
    name: &str,
    node: Option<&str>,
    mut request: Value,
) -> Result<Value, Status> {
    let account = reg.get(resource("serviceaccounts"), Some(ns), name).await?;
    if let Some(node) = node {
        node_restriction(reg, ns, name, node, &request["spec"]["boundObjectRef"]).await?;
    }
    let spec = &mut request["spec"];
    let seconds = spec["expirationSeconds"]
        .as_i64()
        .unwrap_or(DEFAULT_SECONDS);
    let kind = "TokenRequest";
    let invalid = |detail: &str| {
        let e = FieldError::invalid("spec.expirationSeconds", &json!(seconds), detail);
        let r = Resource {
            group: "authentication.k8s.io".into(),
            kind: kind.into(),
            ..Resource::default()
        };
        Status::invalid(&r, "", &[e])
    };
    if seconds < MIN_SECONDS {
        return Err(invalid("may not specify a duration less than 10 minutes"));
    }
    if seconds > MAX_SECONDS {
        return Err(invalid(
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(list) if !list.is_empty() => list
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect(),
        _ => vec![ISSUER.to_string()],
    };
    let mut private = Private {
        namespace: ns.to_string(),
        serviceaccount: Ref {
            name: name.to_string(),
            uid: meta_str(&account, "uid").to_string(),
        },
        ..Private::default()
    };
    if let Some(bound) = spec["boundObjectRef"].as_object().cloned() {
        bind(reg, ns, name, &Value::Object(bound), &mut private).await?;
    }
    let now = jiff::Timestamp::now().as_second();
    let claims = Claims {
        aud: audiences.clone(),
        exp: now + seconds,
        iat: now,
        iss: ISSUER.to_string(),
        jti: uuid::Uuid::new_v4().to_string(),
        kubernetes: private,
        nbf: now,
        sub: format!("system:serviceaccount:{ns}:{name}"),
    };
    let token = signer.issue(&claims).map_err(Status::internal)?;
    spec["audiences"] = json!(audiences);
    spec["expirationSeconds"] = json!(seconds);
    let expires = jiff::Timestamp::from_second(now + seconds).map_err(Status::internal)?;
    request["metadata"] = json!({"name": name, "namespace": ns, "creationTimestamp": null});
    request["status"] = json!({"token": token, "expirationTimestamp": expires.to_string()});
    Ok(request)
}

/// Upstream's NodeRestriction for tokens: a node asks only for tokens bound to a pod of its
/// own.
async fn node_restriction(
    reg: &Registry,
    ns: &str,
    account: &str,
    node: &str,
    bound: &Value,
) -> Result<(), Status> {
    let refuse = |why: &str| {
        let message = format!("serviceaccounts {account:?} is forbidden: {why}");
        Err(Status::new(403, "Forbidden", message))
    };
    match bound["kind"].as_str() {
        None => return refuse("node requested token not bound to a pod"),
        Some("Pod") => {}
        Some(kind) => return refuse(&format!("node requested token bound to a {kind}")),
    }
    let name = bound["name"].as_str().unwrap_or_default();
    let pod = reg.get(resource("pods"), Some(ns), name).await?;
    if pod["spec"]["nodeName"].as_str() != Some(node) {
        return refuse("node requested token bound to a pod scheduled on a different node");
    }
    Ok(())
}

/// Binds the token to the object `bound` names (a pod running as the account, a secret or a
/// node), checking it exists with the UID given.
async fn bind(
    reg: &Registry,
    ns: &str,
    account: &str,
    bound: &Value,
    private: &mut Private,
) -> Result<(), Status> {
    let name = bound["name"].as_str().unwrap_or_default();
    let kind = bound["kind"].as_str().unwrap_or_default();
    let api_version = bound["apiVersion"].as_str().unwrap_or_default();
    let object = match (api_version, kind) {
        ("v1", "Pod") => reg.get(resource("pods"), Some(ns), name).await?,
        ("v1", "Secret") => reg.get(resource("secrets"), Some(ns), name).await?,
        ("v1", "Node") => reg.get(resource("nodes"), None, name).await?,
        _ => {
            let gvk = match api_version.split_once('/') {
                Some((group, version)) => format!("{group}/{version}, Kind={kind}"),
                None => format!("/{api_version}, Kind={kind}"),
            };
            return Err(Status::bad_request(format!(
                "cannot bind token to object of type {gvk}"
            )));
        }
    };
    let uid = meta_str(&object, "uid").to_string();
    if let Some(asked) = bound["uid"].as_str().filter(|u| !u.is_empty())
        && asked != uid
    {
        let message = format!(
            "Operation cannot be fulfilled on {kind} \"{name}\": the UID in the bound object reference ({asked}) does not match the UID in record. The object might have been deleted and then recreated"
        );
        return Err(Status::new(409, "Conflict", message));
    }
    let reference = Ref {
        name: name.to_string(),
        uid,
    };
    match kind {
        "Pod" => {
            if object["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default")
                != account
            {
                return Err(Status::bad_request(format!(
                    "cannot bind token for serviceaccount {account:?} to pod running with different serviceaccount name."
                )));
            }
            if let Some(node) = object["spec"]["nodeName"]
                .as_str()
                .filter(|n| !n.is_empty())
                && let Ok(node) = reg.get(resource("nodes"), None, node).await
            {
                private.node = Some(Ref {
                    name: meta_str(&node, "name").to_string(),
                    uid: meta_str(&node, "uid").to_string(),
                });
            }
            private.pod = Some(reference);
        }
        "Secret" => private.secret = Some(reference),
        _ => private.node = Some(reference),
    }
    Ok(())
}
