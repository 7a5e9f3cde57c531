//! Secret-based service-account tokens, made only on request as upstream makes them since
//! 1.24: a Secret of type `kubernetes.io/service-account-token` whose
//! `kubernetes.io/service-account.name` annotation names an account gets a token that does
//! not expire (`data.token`), the cluster CA (`ca.crt`) and its namespace, and the account's
//! UID as an annotation. The token is valid while the Secret holds it, the account has that
//! UID and the Secret is not labelled `kubernetes.io/legacy-token-invalid-since`; a use is
//! noted once a day in its `kubernetes.io/legacy-token-last-used` label.
//!
//! [`maintain`] is upstream's tokens controller, run by the API server, which holds the
//! signing key: it fills such Secrets in, and deletes those whose account is gone or was
//! recreated (its own and the deleted account's). [`authenticate`] checks a token.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use serde_json::{Value, json};
use store::{RangeOptions, WatchEvent, WatchOptions};

use super::Identity;
use super::serviceaccount::{LEGACY_ISSUER, LegacyClaims, Signer};
use crate::registry::{Caller, DeleteOptions, Registry};

/// The Secret type of these tokens.
pub const TYPE: &str = "kubernetes.io/service-account-token";
/// The annotation naming the account.
pub const ACCOUNT_NAME: &str = "kubernetes.io/service-account.name";
/// The annotation holding the account's UID.
pub const ACCOUNT_UID: &str = "kubernetes.io/service-account.uid";
const LAST_USED: &str = "kubernetes.io/legacy-token-last-used";
const INVALID_SINCE: &str = "kubernetes.io/legacy-token-invalid-since";

/// The account `token` stands for, if it is a Secret-based token this server signed and
/// the Secret, holding it, and the account it names are still there.
pub async fn authenticate(signer: &Signer, reg: &Registry, token: &str) -> Option<Identity> {
    let claims = signer.verify_legacy(token)?;
    let ns = claims.namespace.as_str();
    let user = format!("system:serviceaccount:{ns}:{}", claims.account);
    if claims.sub != user {
        return None;
    }
    let secret = reg
        .get(
            crate::podlogs::resource("secrets"),
            Some(ns),
            &claims.secret,
        )
        .await
        .ok()?;
    let meta = &secret["metadata"];
    let held = secret["data"]["token"]
        .as_str()
        .and_then(|t| STANDARD.decode(t).ok());
    if secret["type"] != TYPE
        || held.as_deref() != Some(token.as_bytes())
        || !meta["deletionTimestamp"].is_null()
        || !meta["labels"][INVALID_SINCE].is_null()
        || meta["annotations"][ACCOUNT_UID] != claims.uid.as_str()
    {
        return None;
    }
    if !super::account_is(reg, ns, &claims.account, &claims.uid).await {
        return None;
    }
    note_use(reg, secret);
    Some(super::account_identity(ns, user))
}

/// Labels the Secret with today's date, unless it already says so (in the background: the
/// request does not wait for it).
fn note_use(reg: &Registry, mut secret: Value) {
    let today = jiff::Zoned::now().strftime("%Y-%m-%d").to_string();
    if secret["metadata"]["labels"][LAST_USED] == today.as_str() {
        return;
    }
    secret["metadata"]["labels"][LAST_USED] = json!(today);
    let reg = reg.clone();
    tokio::spawn(async move {
        let meta = &secret["metadata"];
        let (ns, name) = (meta["namespace"].as_str(), meta["name"].as_str());
        let (ns, name) = (ns.map(str::to_string), name.unwrap_or_default().to_string());
        let r = crate::podlogs::resource("secrets");
        // A conflict means someone wrote it meanwhile: the next use tries again.
        let _ = reg
            .update(r, ns.as_deref(), &name, secret, None, Caller::SERVER)
            .await;
    });
}

/// Keeps every token Secret filled in or gone, for as long as it runs: all of them at start
/// (and whenever the watch must start over), then each as it changes, and an account's
/// when the account is deleted.
pub(crate) async fn maintain(signer: Arc<Signer>, reg: Registry, ca: String) {
    let store = reg.store().clone();
    loop {
        let listed = match store
            .range("/registry/secrets/", RangeOptions::default())
            .await
        {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = %e, "token secrets: listing");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        for kv in &listed.kvs {
            if let Ok(secret) = serde_json::from_slice::<Value>(&kv.value) {
                sync(&signer, &reg, &ca, secret).await;
            }
        }
        let from = listed.revision + 1;
        let opts = WatchOptions::default;
        let (Ok(secrets), Ok(accounts)) = (
            store.watch("/registry/secrets/", from, opts()).await,
            store
                .watch("/registry/serviceaccounts/", from, opts())
                .await,
        ) else {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        };
        let mut events = futures::stream::select(secrets, accounts);
        while let Some(Ok(event)) = events.next().await {
            match event {
                WatchEvent::Put { kv, .. } if kv.key.starts_with("/registry/secrets/") => {
                    if let Ok(secret) = serde_json::from_slice::<Value>(&kv.value) {
                        sync(&signer, &reg, &ca, secret).await;
                    }
                }
                WatchEvent::Delete { key, .. } => {
                    let account = key.strip_prefix("/registry/serviceaccounts/");
                    if let Some((ns, name)) = account.and_then(|a| a.split_once('/')) {
                        delete_tokens_of(&reg, ns, name).await;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Fills in a token Secret, or deletes it if its account is gone or is another by now.
async fn sync(signer: &Signer, reg: &Registry, ca: &str, secret: Value) {
    let meta = &secret["metadata"];
    if secret["type"] != TYPE || !meta["deletionTimestamp"].is_null() {
        return;
    }
    let ns = meta["namespace"].as_str().unwrap_or_default();
    let name = meta["name"].as_str().unwrap_or_default();
    let account_name = meta["annotations"][ACCOUNT_NAME]
        .as_str()
        .unwrap_or_default();
    let accounts = crate::podlogs::resource("serviceaccounts");
    let uid = match reg.get(accounts, Some(ns), account_name).await {
        Ok(account) => account["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        Err(s) if s.code == 404 => String::new(),
        Err(_) => return,
    };
    let recorded = meta["annotations"][ACCOUNT_UID].as_str();
    if uid.is_empty() || recorded.is_some_and(|r| r != uid) {
        delete_secret(reg, ns, name).await;
        return;
    }
    let Some(filled) = filled_in(signer, ca, &secret, &uid) else {
        return;
    };
    let r = crate::podlogs::resource("secrets");
    if let Err(s) = reg
        .update(r, Some(ns), name, filled, None, Caller::SERVER)
        .await
        && s.code != 409
        && s.code != 404
    {
        tracing::warn!(secret = name, namespace = ns, error = %s.message, "token secrets: filling in");
    }
}

/// `secret` with its account's UID, a token and the CA and namespace it lacks; `None` when
/// it lacks nothing.
fn filled_in(signer: &Signer, ca: &str, secret: &Value, uid: &str) -> Option<Value> {
    let meta = &secret["metadata"];
    let ns = meta["namespace"].as_str().unwrap_or_default();
    let data = &secret["data"];
    let complete = ["token", "ca.crt", "namespace"]
        .iter()
        .all(|k| data[k].is_string());
    if complete && meta["annotations"][ACCOUNT_UID] == uid {
        return None;
    }
    let account = meta["annotations"][ACCOUNT_NAME]
        .as_str()
        .unwrap_or_default();
    let mut out = secret.clone();
    out["metadata"]["annotations"][ACCOUNT_UID] = json!(uid);
    if !data["token"].is_string() {
        let claims = LegacyClaims {
            iss: LEGACY_ISSUER.into(),
            namespace: ns.into(),
            secret: meta["name"].as_str().unwrap_or_default().into(),
            account: account.into(),
            uid: uid.into(),
            sub: format!("system:serviceaccount:{ns}:{account}"),
        };
        let token = signer.issue(&claims).ok()?;
        out["data"]["token"] = json!(STANDARD.encode(token));
    }
    for (key, value) in [("ca.crt", ca), ("namespace", ns)] {
        if !data[key].is_string() {
            out["data"][key] = json!(STANDARD.encode(value));
        }
    }
    Some(out)
}

/// Deletes the token Secrets of the deleted account `ns/name`.
async fn delete_tokens_of(reg: &Registry, ns: &str, name: &str) {
    let r = crate::podlogs::resource("secrets");
    let opts = crate::registry::ListOptions::default();
    let Ok(secrets) = reg.list(r, Some(ns), &opts).await else {
        return;
    };
    for secret in secrets.items {
        if secret["type"] == TYPE && secret["metadata"]["annotations"][ACCOUNT_NAME] == name {
            delete_secret(
                reg,
                ns,
                secret["metadata"]["name"].as_str().unwrap_or_default(),
            )
            .await;
        }
    }
}

async fn delete_secret(reg: &Registry, ns: &str, name: &str) {
    let r = crate::podlogs::resource("secrets");
    let gone = reg
        .delete(r, Some(ns), name, &DeleteOptions::default(), Caller::SERVER)
        .await;
    if let Err(s) = gone
        && s.code != 404
    {
        tracing::warn!(secret = name, namespace = ns, error = %s.message, "token secrets: deleting");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        let dir = tempfile::tempdir().unwrap();
        Signer::ensure(dir.path()).unwrap()
    }

    #[test]
    fn a_secret_is_filled_in_once_with_a_token_for_its_account() {
        let signer = signer();
        let secret = json!({"type": TYPE, "metadata": {"name": "robot-token", "namespace": "team",
            "annotations": {ACCOUNT_NAME: "robot"}}});
        let filled = filled_in(&signer, "CA", &secret, "uid-1").unwrap();
        assert_eq!(filled["metadata"]["annotations"][ACCOUNT_UID], "uid-1");
        assert_eq!(filled["data"]["ca.crt"], STANDARD.encode("CA"));
        assert_eq!(filled["data"]["namespace"], STANDARD.encode("team"));
        let token = STANDARD
            .decode(filled["data"]["token"].as_str().unwrap())
            .unwrap();
        let claims = signer
            .verify_legacy(std::str::from_utf8(&token).unwrap())
            .unwrap();
        assert_eq!(claims.sub, "system:serviceaccount:team:robot");
        assert_eq!(
            (claims.secret.as_str(), claims.uid.as_str()),
            ("robot-token", "uid-1")
        );
        assert!(filled_in(&signer, "CA", &filled, "uid-1").is_none());
    }

    #[test]
    fn legacy_and_bound_tokens_are_not_taken_for_each_other() {
        let signer = signer();
        let legacy = LegacyClaims {
            iss: LEGACY_ISSUER.into(),
            namespace: "team".into(),
            secret: "s".into(),
            account: "robot".into(),
            uid: "u".into(),
            sub: "system:serviceaccount:team:robot".into(),
        };
        let token = signer.issue(&legacy).unwrap();
        assert!(
            signer
                .verify(&token, &[super::super::serviceaccount::ISSUER])
                .is_none()
        );
        assert_eq!(signer.verify_legacy(&token), Some(legacy));
    }
}
