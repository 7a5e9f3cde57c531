//! The providers of an EncryptionConfiguration and their stored forms, as upstream writes
//! them, so a store written by either can be read by the other:
//! - `aescbc`: `k8s:enc:aescbc:v1:<key>:` IV (16 bytes), AES-CBC with PKCS#7 padding;
//! - `aesgcm`: `k8s:enc:aesgcm:v1:<key>:` nonce (12 bytes), AES-GCM sealed with the storage
//!   key as authenticated data;
//! - `secretbox`: `k8s:enc:secretbox:v1:<key>:` nonce (24 bytes), XSalsa20-Poly1305;
//! - `identity`: the plaintext, no prefix.

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine as _;
use serde_json::Value;

/// One provider of a resource's list.
#[derive(Clone)]
pub(crate) enum Provider {
    Identity,
    AesCbc(Vec<Key>),
    AesGcm(Vec<Key>),
    Secretbox(Vec<Key>),
}

/// A named key.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) name: String,
    secret: Vec<u8>,
}

impl Provider {
    /// The provider an EncryptionConfiguration entry (`{"aescbc": {"keys": [...]}}`) names.
    pub(crate) fn parse(entry: &Value) -> Result<Provider, String> {
        let obj = entry.as_object().ok_or("a provider must be an object")?;
        let (kind, config) = match obj.iter().collect::<Vec<_>>().as_slice() {
            [(kind, config)] => (kind.as_str(), *config),
            _ => return Err("a provider names exactly one kind".into()),
        };
        let sizes: &[usize] = match kind {
            "identity" => return Ok(Provider::Identity),
            "aescbc" | "aesgcm" => &[16, 24, 32],
            "secretbox" => &[32],
            other => return Err(format!("unsupported provider {other:?}")),
        };
        let keys = keys(kind, config, sizes)?;
        Ok(match kind {
            "aescbc" => Provider::AesCbc(keys),
            "aesgcm" => Provider::AesGcm(keys),
            _ => Provider::Secretbox(keys),
        })
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Provider::Identity => "identity",
            Provider::AesCbc(_) => "aescbc",
            Provider::AesGcm(_) => "aesgcm",
            Provider::Secretbox(_) => "secretbox",
        }
    }

    pub(crate) fn keys(&self) -> &[Key] {
        match self {
            Provider::Identity => &[],
            Provider::AesCbc(k) | Provider::AesGcm(k) | Provider::Secretbox(k) => k,
        }
    }

    /// `plain` as this provider stores it under `key` (with its first key).
    pub(crate) fn seal(&self, key: &str, plain: &[u8]) -> Vec<u8> {
        let Some(k) = self.keys().first() else {
            return plain.to_vec();
        };
        let mut out = format!("k8s:enc:{}:v1:{}:", self.kind(), k.name).into_bytes();
        out.extend(match self {
            Provider::Identity => unreachable!("identity has no keys"),
            Provider::AesCbc(_) => cbc_seal(&k.secret, plain),
            Provider::AesGcm(_) => gcm_seal(&k.secret, key, plain),
            Provider::Secretbox(_) => secretbox_seal(&k.secret, plain),
        });
        out
    }

    /// The plaintext of `data` stored under `key`, if one of this provider's keys wrote it
    /// (`None` when none did), or why it cannot be read.
    pub(crate) fn open(&self, key: &str, data: &[u8]) -> Option<Result<Vec<u8>, String>> {
        self.keys().iter().find_map(|k| {
            let prefix = format!("k8s:enc:{}:v1:{}:", self.kind(), k.name);
            let sealed = data.strip_prefix(prefix.as_bytes())?;
            let opened = match self {
                Provider::Identity => unreachable!("identity has no keys"),
                Provider::AesCbc(_) => cbc_open(&k.secret, sealed),
                Provider::AesGcm(_) => gcm_open(&k.secret, key, sealed),
                Provider::Secretbox(_) => secretbox_open(&k.secret, sealed),
            };
            Some(opened.ok_or_else(|| format!("{prefix} could not decrypt the value")))
        })
    }
}

fn keys(kind: &str, config: &Value, sizes: &[usize]) -> Result<Vec<Key>, String> {
    let listed = config["keys"].as_array().filter(|k| !k.is_empty());
    let listed = listed.ok_or_else(|| format!("{kind}: keys: at least one key is required"))?;
    listed
        .iter()
        .map(|k| {
            let name = k["name"]
                .as_str()
                .filter(|n| !n.is_empty() && !n.contains(':'));
            let name = name.ok_or_else(|| format!("{kind}: a key needs a name without ':'"))?;
            let secret = base64::engine::general_purpose::STANDARD
                .decode(k["secret"].as_str().unwrap_or_default())
                .map_err(|e| format!("{kind}: key {name}: secret is not base64: {e}"))?;
            if !sizes.contains(&secret.len()) {
                return Err(format!(
                    "{kind}: key {name}: secret is {} bytes, not one of {sizes:?}",
                    secret.len()
                ));
            }
            Ok(Key {
                name: name.to_string(),
                secret,
            })
        })
        .collect()
}

/// An IV or nonce from the system's random source.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    use aes_gcm::aead::{OsRng, rand_core::RngCore};
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

macro_rules! with_aes {
    ($secret:expr, $mode:ident, |$c:ident| $body:expr) => {
        match $secret.len() {
            16 => $mode!(aes::Aes128, $secret, |$c| $body),
            24 => $mode!(aes::Aes192, $secret, |$c| $body),
            _ => $mode!(aes::Aes256, $secret, |$c| $body),
        }
    };
}

fn cbc_seal(secret: &[u8], plain: &[u8]) -> Vec<u8> {
    let iv: [u8; 16] = random();
    macro_rules! cbc {
        ($aes:ty, $s:expr, |$c:ident| $body:expr) => {{
            let $c = cbc::Encryptor::<$aes>::new_from_slices($s, &iv).expect("checked sizes");
            $body
        }};
    }
    let sealed = with_aes!(secret, cbc, |c| c.encrypt_padded_vec_mut::<Pkcs7>(plain));
    [iv.as_slice(), &sealed].concat()
}

fn cbc_open(secret: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let (iv, sealed) = (data.get(..16)?, data.get(16..)?);
    macro_rules! cbc {
        ($aes:ty, $s:expr, |$c:ident| $body:expr) => {{
            let $c = cbc::Decryptor::<$aes>::new_from_slices($s, iv).ok()?;
            $body
        }};
    }
    with_aes!(secret, cbc, |c| c
        .decrypt_padded_vec_mut::<Pkcs7>(sealed)
        .ok())
}

fn gcm_seal(secret: &[u8], key: &str, plain: &[u8]) -> Vec<u8> {
    let nonce: [u8; 12] = random();
    let payload = Payload {
        msg: plain,
        aad: key.as_bytes(),
    };
    macro_rules! gcm {
        ($aes:ty, $s:expr, |$c:ident| $body:expr) => {{
            let $c = aes_gcm::AesGcm::<$aes, aes_gcm::aead::consts::U12>::new_from_slice($s)
                .expect("checked sizes");
            $body
        }};
    }
    let sealed = with_aes!(secret, gcm, |c| c.encrypt((&nonce).into(), payload));
    [nonce.as_slice(), &sealed.expect("sealing cannot fail")].concat()
}

fn gcm_open(secret: &[u8], key: &str, data: &[u8]) -> Option<Vec<u8>> {
    let (nonce, sealed) = (data.get(..12)?, data.get(12..)?);
    let payload = Payload {
        msg: sealed,
        aad: key.as_bytes(),
    };
    macro_rules! gcm {
        ($aes:ty, $s:expr, |$c:ident| $body:expr) => {{
            let $c =
                aes_gcm::AesGcm::<$aes, aes_gcm::aead::consts::U12>::new_from_slice($s).ok()?;
            $body
        }};
    }
    with_aes!(secret, gcm, |c| c.decrypt(nonce.into(), payload).ok())
}

fn secretbox_seal(secret: &[u8], plain: &[u8]) -> Vec<u8> {
    use crypto_secretbox::{KeyInit as _, XSalsa20Poly1305};
    let nonce: [u8; 24] = random();
    let cipher = XSalsa20Poly1305::new_from_slice(secret).expect("checked sizes");
    let sealed = crypto_secretbox::aead::Aead::encrypt(&cipher, (&nonce).into(), plain);
    [nonce.as_slice(), &sealed.expect("sealing cannot fail")].concat()
}

fn secretbox_open(secret: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    use crypto_secretbox::{KeyInit as _, XSalsa20Poly1305};
    let (nonce, sealed) = (data.get(..24)?, data.get(24..)?);
    let cipher = XSalsa20Poly1305::new_from_slice(secret).ok()?;
    crypto_secretbox::aead::Aead::decrypt(&cipher, nonce.into(), sealed).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn provider(kind: &str, bytes: usize) -> Provider {
        let secret = base64::engine::general_purpose::STANDARD.encode(vec![7u8; bytes]);
        Provider::parse(&json!({kind: {"keys": [{"name": "k1", "secret": secret}]}})).unwrap()
    }

    #[test]
    fn each_provider_round_trips_under_its_prefix() {
        let plain = br#"{"kind":"Secret","data":{"password":"aHVudGVyMg=="}}"#;
        for (kind, bytes) in [
            ("aescbc", 32),
            ("aescbc", 16),
            ("aesgcm", 24),
            ("secretbox", 32),
        ] {
            let p = provider(kind, bytes);
            let sealed = p.seal("/registry/secrets/ns/s", plain);
            let prefix = format!("k8s:enc:{kind}:v1:k1:");
            assert!(sealed.starts_with(prefix.as_bytes()), "{kind}");
            assert!(!sealed.windows(8).any(|w| w == b"aHVudGVy"), "{kind}");
            let opened = p.open("/registry/secrets/ns/s", &sealed).unwrap().unwrap();
            assert_eq!(opened, plain, "{kind}");
        }
        let gcm = provider("aesgcm", 32);
        let sealed = gcm.seal("/registry/secrets/ns/s", plain);
        assert!(
            gcm.open("/registry/secrets/ns/other", &sealed)
                .unwrap()
                .is_err()
        );
        assert!(gcm.open("/registry/secrets/ns/s", plain).is_none());
    }

    #[test]
    fn bad_keys_are_refused() {
        let short = json!({"aescbc": {"keys": [{"name": "k", "secret": "c2hvcnQ="}]}});
        let refused = Provider::parse(&short).err().unwrap();
        assert!(refused.contains("5 bytes"), "{refused}");
        assert!(Provider::parse(&json!({"kms": {}})).is_err());
        assert!(Provider::parse(&json!({"aesgcm": {"keys": []}})).is_err());
    }
}
