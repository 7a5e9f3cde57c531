//! `ServiceAccount`: a new pod runs as an account that exists (`default` when it names none),
//! and gets that account's API credentials, as upstream's plugin gives them:
//! - every container and init container mounts `/var/run/secrets/kubernetes.io/serviceaccount`
//!   (unless it mounts something there already) from a projected volume
//!   `kube-api-access-<random>`: a token from the TokenRequest API (`token`, an hour), the
//!   cluster CA (`ca.crt`, from the `kube-root-ca.crt` ConfigMap) and the namespace;
//!   unless `automountServiceAccountToken` is false on the pod, or on the account when the pod
//!   does not say;
//! - the account's `imagePullSecrets` when the pod has none.
//!
//! The account is read from a watch-fed copy; one that is not there yet is asked for again
//! from the store (for `default`, which the service account controller is about to make, up
//! to ten times), as upstream's plugin does. Servers that run without that controller (the
//! test kit's) leave the step out (`--disable-admission-plugins ServiceAccount`).

use std::time::Duration;

use api::Status;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Attributes, Mutating, Operation, forbidden, name_of};
use crate::registry::Registry;

/// Where the credentials are mounted.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The token's lifetime (upstream's: an hour and seven seconds, the mark of a token this step
/// asked for).
const TOKEN_SECONDS: i64 = 3607;

/// How often, and how far apart, a missing `default` account is asked for again.
const DEFAULT_ATTEMPTS: u32 = 10;
const RETRY_INTERVAL: Duration = Duration::from_millis(150);

/// The step; it reads the accounts from the registry's watched copy
/// ([`Registry::accounts`], which token authentication reads too).
pub(super) struct ServiceAccount;

impl Mutating for ServiceAccount {
    fn name(&self) -> &'static str {
        "ServiceAccount"
    }

    fn admit<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        pod: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            if !a.is_pod() || a.operation != Operation::Create || mirror(pod) {
                return Ok(());
            }
            let spec = &mut pod["spec"];
            if spec["serviceAccountName"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
            {
                spec["serviceAccountName"] = json!("default");
            }
            let name = spec["serviceAccountName"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let ns = a.namespace.unwrap_or("default");
            let Some(account) = self.account(reg, ns, &name).await? else {
                let why = format!(
                    "error looking up service account {ns}/{name}: serviceaccount {name:?} not found"
                );
                return Err(forbidden(&name_of(pod), why));
            };
            let automount = pod["spec"]["automountServiceAccountToken"]
                .as_bool()
                .or(account["automountServiceAccountToken"].as_bool())
                .unwrap_or(true);
            if automount {
                mount_credentials(pod);
            }
            let secrets = &account["imagePullSecrets"];
            let has_own = pod["spec"]["imagePullSecrets"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            if !has_own && secrets.as_array().is_some_and(|s| !s.is_empty()) {
                pod["spec"]["imagePullSecrets"] = secrets.clone();
            }
            Ok(())
        })
    }
}

/// Whether `pod` is a mirror pod (a node's static pod), which the step leaves alone.
fn mirror(pod: &Value) -> bool {
    pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string()
}

impl ServiceAccount {
    /// The account `ns/name`, from the copy or else the store.
    async fn account(&self, reg: &Registry, ns: &str, name: &str) -> Result<Option<Value>, Status> {
        let key = format!("/registry/serviceaccounts/{ns}/{name}");
        if let Some(account) = reg.accounts().get(reg.store(), &key).await? {
            return Ok(Some(account));
        }
        let r = crate::podlogs::resource("serviceaccounts");
        let attempts = if name == "default" {
            DEFAULT_ATTEMPTS
        } else {
            1
        };
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(RETRY_INTERVAL).await;
            }
            match reg.get(r, Some(ns), name).await {
                Ok(account) => return Ok(Some(account)),
                Err(s) if s.code == 404 => {}
                Err(s) => return Err(s),
            }
        }
        Ok(None)
    }
}

/// Mounts the credentials volume into every container that does not mount something at
/// [`MOUNT_PATH`] already, adding the volume when one does.
fn mount_credentials(pod: &mut Value) {
    let spec = &mut pod["spec"];
    let existing = spec["volumes"].as_array().and_then(|vs| {
        vs.iter()
            .filter_map(|v| v["name"].as_str())
            .find(|n| n.starts_with("kube-api-access-"))
            .map(str::to_string)
    });
    let volume = existing.clone().unwrap_or_else(volume_name);
    let mount = json!({"name": volume, "readOnly": true, "mountPath": MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            let mounts = c["volumeMounts"].as_array();
            if mounts.is_some_and(|ms| ms.iter().any(|m| m["mountPath"] == MOUNT_PATH)) {
                continue;
            }
            if !c["volumeMounts"].is_array() {
                c["volumeMounts"] = json!([]);
            }
            if let Some(ms) = c["volumeMounts"].as_array_mut() {
                ms.push(mount.clone());
            }
            needed = true;
        }
    }
    if needed && existing.is_none() {
        if !spec["volumes"].is_array() {
            spec["volumes"] = json!([]);
        }
        if let Some(vs) = spec["volumes"].as_array_mut() {
            vs.push(credentials_volume(&volume));
        }
    }
}

/// `kube-api-access-` and five random characters of upstream's name alphabet.
fn volume_name() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    let suffix: String = bytes[..5]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!("kube-api-access-{suffix}")
}

/// The projected volume of a token, the cluster CA and the namespace.
fn credentials_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_mounts_the_credentials_once() {
        let mut pod = json!({"spec": {
            "initContainers": [{"name": "i"}],
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "own", "mountPath": MOUNT_PATH}]}],
        }});
        mount_credentials(&mut pod);
        let volumes = pod["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 1);
        let name = volumes[0]["name"].as_str().unwrap();
        assert!(
            name.starts_with("kube-api-access-") && name.len() == 21,
            "{name}"
        );
        assert_eq!(
            volumes[0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        for c in ["initContainers", "containers"] {
            assert_eq!(
                pod["spec"][c][0]["volumeMounts"][0],
                json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH})
            );
        }
        assert_eq!(
            pod["spec"]["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let again = pod.clone();
        mount_credentials(&mut pod);
        assert_eq!(pod, again, "mounted once");
    }
}
