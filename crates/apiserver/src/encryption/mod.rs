//! Encryption at rest (upstream's `--encryption-provider-config`): an
//! `apiserver.config.k8s.io/v1` `EncryptionConfiguration` names, per resource, a list of
//! providers ([`providers`]); the first writes, all of them read. [`Encrypted`] wraps the
//! store so that every value under a configured resource's prefix is sealed on its way in and
//! opened on its way out, whichever backend (SQLite, etcd) holds it: nothing above the store
//! sees ciphertext, nothing in the store sees plaintext.
//!
//! A value written with an older key or provider stays readable; [`Encrypted::reencrypt`]
//! rewrites such values with the current one, and [`Encrypted::rotate`] adds a fresh key in
//! front and then re-encrypts (k3s's `secrets-encrypt rotate-keys`).

mod providers;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use futures::StreamExt;
use serde_json::{Value, json};
use store::{
    Deleted, Error, KeyValue, RangeOptions, RangeResponse, Result, Revision, Store, WatchEvent,
    WatchOptions, WatchStream,
};

use providers::Provider;

/// Which providers guard which store prefixes, in the configuration's order.
struct Config {
    rules: Vec<(Vec<String>, Vec<Provider>)>,
}

impl Config {
    fn load(file: &Path) -> std::result::Result<Config, String> {
        let fail = |e: String| format!("{}: {e}", file.display());
        let text = std::fs::read_to_string(file).map_err(|e| fail(e.to_string()))?;
        let doc: Value = serde_saphyr::from_str(&text).map_err(|e| fail(e.to_string()))?;
        if doc["kind"] != "EncryptionConfiguration" {
            return Err(fail("not an EncryptionConfiguration".into()));
        }
        let mut rules = Vec::new();
        for entry in doc["resources"].as_array().into_iter().flatten() {
            let names = entry["resources"].as_array().into_iter().flatten();
            let prefixes: Vec<String> = names
                .filter_map(Value::as_str)
                .map(prefixes_of)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(fail)?
                .concat();
            let providers = entry["providers"].as_array().into_iter().flatten();
            let providers = providers
                .map(Provider::parse)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(fail)?;
            if providers.is_empty() {
                return Err(fail("a resource entry needs at least one provider".into()));
            }
            rules.push((prefixes, providers));
        }
        Ok(Config { rules })
    }

    /// The providers guarding `key`: those of the first entry naming its resource.
    fn providers(&self, key: &str) -> Option<&[Provider]> {
        let rule = self
            .rules
            .iter()
            .find(|(prefixes, _)| prefixes.iter().any(|p| key.starts_with(p.as_str())));
        rule.map(|(_, providers)| providers.as_slice())
    }
}

/// The store prefixes a resource name of the configuration covers: `secrets`,
/// `deployments.apps`, `*.apps` (a group's), `*.*` (everything).
fn prefixes_of(name: &str) -> std::result::Result<Vec<String>, String> {
    if name == "*.*" {
        return Ok(vec!["/registry/".into()]);
    }
    let (plural, group) = name.split_once('.').unwrap_or((name, ""));
    let found: Vec<String> = api::resources::builtin()
        .iter()
        .filter(|r| r.group == group && (plural == "*" || r.plural == plural))
        .map(|r| r.prefix(None))
        .collect();
    match found.is_empty() {
        true => Err(format!("resources: {name:?} is no resource served here")),
        false => Ok(found),
    }
}

/// The store, with values under configured prefixes encrypted.
pub struct Encrypted {
    inner: Arc<dyn Store>,
    file: PathBuf,
    sealer: Arc<Sealer>,
}

/// The configuration in use, shared with open watches so that a rotation reaches them.
struct Sealer {
    config: RwLock<Arc<Config>>,
}

impl Sealer {
    fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn seal(&self, key: &str, value: Vec<u8>) -> Vec<u8> {
        match self.config().providers(key).and_then(|p| p.first()) {
            Some(writer) => writer.seal(key, &value),
            None => value,
        }
    }

    /// The plaintext of a stored value, and whether the current writer would store it
    /// otherwise (an older key or provider wrote it).
    fn open(&self, key: &str, data: Vec<u8>) -> Result<(Vec<u8>, bool)> {
        let config = self.config();
        let Some(providers) = config.providers(key) else {
            return Ok((data, false));
        };
        for (i, p) in providers.iter().enumerate() {
            let current = |name: Option<&str>| {
                i == 0 && name.is_none_or(|n| p.keys().first().is_some_and(|k| k.name == n))
            };
            if let Provider::Identity = p {
                if !data.starts_with(b"k8s:enc:") {
                    return Ok((data, !current(None)));
                }
                continue;
            }
            if let Some(opened) = p.open(key, &data) {
                let plain = opened.map_err(|e| Error::Internal(format!("{key}: {e}")))?;
                let name = key_name(&data);
                return Ok((plain, !current(name.as_deref())));
            }
        }
        Err(Error::Internal(format!(
            "{key}: no configured provider can read this value"
        )))
    }

    fn opened(&self, mut kv: KeyValue) -> Result<KeyValue> {
        kv.value = self.open(&kv.key, std::mem::take(&mut kv.value))?.0;
        Ok(kv)
    }
}

impl Encrypted {
    /// `inner` with the configuration in `file`.
    pub fn new(inner: Arc<dyn Store>, file: &Path) -> std::result::Result<Encrypted, String> {
        let config = RwLock::new(Arc::new(Config::load(file)?));
        Ok(Encrypted {
            inner,
            file: file.to_path_buf(),
            sealer: Arc::new(Sealer { config }),
        })
    }

    /// Rewrites every value an older key or provider wrote with the current writer; says
    /// how many. A value written meanwhile is left to its writer.
    pub async fn reencrypt(&self) -> Result<usize> {
        let s = &self.sealer;
        let prefixes: Vec<String> = s.config().rules.iter().flat_map(|r| r.0.clone()).collect();
        let mut rewritten = 0;
        for prefix in prefixes {
            let listed = self.inner.range(&prefix, RangeOptions::default()).await?;
            for kv in listed.kvs {
                let (plain, stale) = s.open(&kv.key, kv.value)?;
                if !stale {
                    continue;
                }
                let sealed = s.seal(&kv.key, plain);
                match self.inner.update(&kv.key, sealed, kv.mod_revision).await {
                    Ok(_) => rewritten += 1,
                    Err(Error::Conflict { .. } | Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(rewritten)
    }

    /// Adds a fresh 32-byte `aescbc` key in front of the first entry's providers (k3s's
    /// `aescbckey-<time>` names), writes the configuration back, uses it, and re-encrypts.
    pub async fn rotate(&self) -> std::result::Result<usize, String> {
        let text = std::fs::read_to_string(&self.file).map_err(|e| e.to_string())?;
        let mut doc: Value = serde_saphyr::from_str(&text).map_err(|e| e.to_string())?;
        let secret: [u8; 32] = providers::random();
        let stamp = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let key = json!({
            "name": format!("aescbckey-{}", stamp.replace(':', "")),
            "secret": base64::engine::general_purpose::STANDARD.encode(secret),
        });
        let providers = doc["resources"][0]["providers"]
            .as_array_mut()
            .ok_or("the configuration has no providers to rotate")?;
        match providers
            .first_mut()
            .and_then(|p| p["aescbc"]["keys"].as_array_mut())
        {
            Some(keys) => keys.insert(0, key),
            None => providers.insert(0, json!({"aescbc": {"keys": [key]}})),
        }
        let written = serde_json::to_string_pretty(&doc).expect("JSON values encode");
        crate::pki::write_private(&self.file, &written).map_err(|e| e.to_string())?;
        let config = Config::load(&self.file)?;
        *self
            .sealer
            .config
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        self.reencrypt().await.map_err(|e| e.to_string())
    }

    /// What `rudder secrets-encrypt status` shows: the resources' writers and keys, and how
    /// many stored values each key wrote.
    pub async fn status(&self) -> Result<Value> {
        let config = self.sealer.config();
        let mut resources = Vec::new();
        for (prefixes, providers) in &config.rules {
            let mut written = std::collections::BTreeMap::<String, u64>::new();
            for prefix in prefixes {
                let listed = self.inner.range(prefix, RangeOptions::default()).await?;
                for kv in listed.kvs {
                    let name = key_name(&kv.value).unwrap_or_else(|| "identity".into());
                    *written.entry(name).or_default() += 1;
                }
            }
            let providers: Vec<Value> = providers
                .iter()
                .map(|p| {
                    let keys: Vec<&str> = p.keys().iter().map(|k| k.name.as_str()).collect();
                    json!({"type": p.kind(), "keys": keys})
                })
                .collect();
            resources
                .push(json!({"prefixes": prefixes, "providers": providers, "written": written}));
        }
        Ok(json!({"enabled": true, "file": self.file, "resources": resources}))
    }
}

/// Writes k3s' default configuration to `file` unless it exists: Secrets sealed with a fresh
/// 32-byte `aescbc` key `aescbckey`, plaintext still readable (`identity` second).
pub fn ensure_default_config(file: &Path) -> std::result::Result<(), String> {
    if file.exists() {
        return Ok(());
    }
    let secret = base64::engine::general_purpose::STANDARD.encode(providers::random::<32>());
    let doc = json!({
        "kind": "EncryptionConfiguration",
        "apiVersion": "apiserver.config.k8s.io/v1",
        "resources": [{
            "resources": ["secrets"],
            "providers": [
                {"aescbc": {"keys": [{"name": "aescbckey", "secret": secret}]}},
                {"identity": {}},
            ],
        }],
    });
    let text = serde_json::to_string_pretty(&doc).expect("JSON values encode");
    crate::pki::write_private(file, &text).map_err(|e| format!("{}: {e}", file.display()))
}

/// `/rudder/v1/secrets-encrypt/<action>` for callers the authorizers let use the path (k3s'
/// supervisor endpoints, for `rudder secrets-encrypt`): `GET status`, `POST reencrypt`,
/// `POST rotate-keys`.
pub async fn endpoint(
    State(app): State<Arc<crate::handlers::App>>,
    axum::extract::Path(action): axum::extract::Path<String>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use crate::handlers::{json_response, status_response};
    let method = req.method().clone();
    if let Err(refusal) = crate::handlers::allowed_path(&app, req).await {
        return refusal;
    }
    let Some(enc) = &app.encryption else {
        return match action.as_str() {
            "status" => json_response(StatusCode::OK, &json!({"enabled": false})),
            _ => status_response(&api::Status::bad_request(
                "encryption at rest is off: start the server with --secrets-encryption",
            )),
        };
    };
    let answer = match (method.as_str(), action.as_str()) {
        ("GET", "status") => enc.status().await.map_err(|e| e.to_string()),
        ("POST", "reencrypt") => enc
            .reencrypt()
            .await
            .map(rewritten)
            .map_err(|e| e.to_string()),
        ("POST", "rotate-keys") => enc.rotate().await.map(rewritten),
        _ => return status_response(&api::Status::path_not_found()),
    };
    match answer {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(e) => status_response(&api::Status::internal(e)),
    }
}

fn rewritten(n: usize) -> Value {
    json!({"reencrypted": n})
}

/// The key name of a sealed value (`k8s:enc:<provider>:v1:<name>:...`).
fn key_name(data: &[u8]) -> Option<String> {
    let rest = data.strip_prefix(b"k8s:enc:")?;
    let mut parts = rest.splitn(4, |b| *b == b':');
    let (_, _, name) = (parts.next()?, parts.next()?, parts.next()?);
    Some(String::from_utf8_lossy(name).into_owned())
}

#[async_trait]
impl Store for Encrypted {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner
            .get(key)
            .await?
            .map(|kv| self.sealer.opened(kv))
            .transpose()
    }

    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangeResponse> {
        let mut listed = self.inner.range(prefix, opts).await?;
        listed.kvs = listed
            .kvs
            .into_iter()
            .map(|kv| self.sealer.opened(kv))
            .collect::<Result<_>>()?;
        Ok(listed)
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let sealed = self.sealer.seal(key, value.clone());
        let mut kv = self.inner.create(key, sealed).await?;
        kv.value = value;
        Ok(kv)
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let sealed = self.sealer.seal(key, value.clone());
        let mut kv = self.inner.update(key, sealed, expected).await?;
        kv.value = value;
        Ok(kv)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted> {
        let mut deleted = self.inner.delete(key, expected).await?;
        deleted.prev = self.sealer.opened(deleted.prev)?;
        Ok(deleted)
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }

    async fn watch(&self, prefix: &str, from: Revision, opts: WatchOptions) -> Result<WatchStream> {
        let events = self.inner.watch(prefix, from, opts).await?;
        let sealer = self.sealer.clone();
        let open = move |kv: Option<KeyValue>| kv.map(|kv| sealer.opened(kv)).transpose();
        Ok(Box::pin(events.map(move |event| {
            Ok(match event? {
                WatchEvent::Put { kv, prev } => WatchEvent::Put {
                    kv: open(Some(kv))?.expect("given"),
                    prev: open(prev)?,
                },
                WatchEvent::Delete {
                    key,
                    revision,
                    prev,
                } => WatchEvent::Delete {
                    key,
                    revision,
                    prev: open(prev)?,
                },
                progress => progress,
            })
        })))
    }

    async fn db_size(&self) -> Result<u64> {
        self.inner.db_size().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }

    fn describe(&self) -> String {
        format!(
            "{} (encrypted per {})",
            self.inner.describe(),
            self.file.display()
        )
    }
}

#[cfg(test)]
mod tests;
