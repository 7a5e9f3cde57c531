//! Service-account tokens, as upstream's: JWTs signed RS256 with a key the server keeps
//! (`<data-dir>/tls/service-account.key`, made at first start, PKCS#1 or PKCS#8 PEM), scoped
//! to audiences, expiring, and bound to the service account (and a pod, secret or node) by
//! name and UID, so that deleting the account or the pod revokes them.
//!
//! [`Signer`] issues and checks them; [`Claims`] is their payload in upstream's layout
//! (`kubernetes.io` holds the namespace, the account, the bound object and the pod's node).
//! The TokenRequest subresource that hands them out is [`super::token_request`]; the checks
//! against live objects are [`super::authenticate_service_account`]'s.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, LineEnding};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest as _;

/// The issuer (`iss`) of the tokens and the audience the API server accepts by default: k3s'
/// (upstream's `--service-account-issuer` and `--api-audiences`).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The issuer of Secret-based tokens ([`LegacyClaims`]).
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

/// The key's file name in the TLS directory.
const KEY_FILE: &str = "service-account.key";

/// The key's size when the server makes one.
const KEY_BITS: usize = 2048;

/// An object a token names: the account, or what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Ref {
    /// The object's name.
    pub name: String,
    /// The object's UID.
    pub uid: String,
}

/// The Kubernetes part of the claims (`kubernetes.io`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Private {
    /// The account's namespace.
    pub namespace: String,
    /// The node of the bound pod, or the bound node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Ref>,
    /// The bound pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
    /// The bound secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Ref>,
    /// The account.
    pub serviceaccount: Ref,
}

/// A token's claims, in the order upstream writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The audiences.
    pub aud: Vec<String>,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// The issuer.
    pub iss: String,
    /// A unique ID: the credential ID the user's extra carries.
    pub jti: String,
    /// What the token is for.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: Private,
    /// Not before, Unix seconds.
    pub nbf: i64,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
}

/// A Secret-based token's claims, in upstream's layout: no audience, no expiry; valid while
/// the Secret holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyClaims {
    /// [`LEGACY_ISSUER`].
    pub iss: String,
    /// The account's namespace.
    #[serde(rename = "kubernetes.io/serviceaccount/namespace")]
    pub namespace: String,
    /// The Secret holding the token.
    #[serde(rename = "kubernetes.io/serviceaccount/secret.name")]
    pub secret: String,
    /// The account's name.
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.name")]
    pub account: String,
    /// The account's UID.
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.uid")]
    pub uid: String,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
}

/// Issues service-account tokens with one key, and checks them with it and the keys it
/// replaced (their public halves, kept in `<data-dir>/tls/service-account-retired/` by
/// [`rotate`]), so that tokens signed before a rotation stay valid until they expire.
pub struct Signer {
    encoding: EncodingKey,
    kid: String,
    /// The verification keys by key ID, the signing key's first, each with its JWK for
    /// `/openid/v1/jwks`.
    keys: Vec<(String, DecodingKey, Value)>,
}

/// The directory of retired keys' public halves, in the TLS directory.
const RETIRED_DIR: &str = "service-account-retired";

impl Signer {
    /// The signer of the key in `dir`, made (mode 0600) when there is none, checking with the
    /// retired keys too.
    pub fn ensure(dir: &Path) -> Result<Signer, String> {
        let key = signing_key(dir)?;
        let der = key.to_pkcs1_der().map_err(|e| e.to_string())?;
        let current = verification_key(&key.to_public_key())?;
        let mut signer = Signer {
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            kid: current.0.clone(),
            keys: vec![current],
        };
        let retired = dir.join(RETIRED_DIR);
        let mut files: Vec<_> = match std::fs::read_dir(&retired) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        for file in files.iter().rev() {
            let bad = |e: &dyn std::fmt::Display| format!("{}: {e}", file.display());
            let pem = std::fs::read_to_string(file).map_err(|e| bad(&e))?;
            let public = rsa::RsaPublicKey::from_public_key_pem(&pem).map_err(|e| bad(&e))?;
            signer
                .keys
                .push(verification_key(&public).map_err(|e| bad(&e))?);
        }
        Ok(signer)
    }

    /// Adds the RSA keys of `files` to the verification keys (upstream's
    /// `--service-account-key-file`: PEM public or private keys, or certificates, several to a
    /// file), for tokens another server or an earlier key signed.
    pub fn verifying_also(mut self, files: &[std::path::PathBuf]) -> Result<Signer, String> {
        for file in files {
            let bad = |e: &dyn std::fmt::Display| format!("{}: {e}", file.display());
            let bytes = std::fs::read(file).map_err(|e| bad(&e))?;
            let mut found = false;
            for block in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
                let block = block.map_err(|e| bad(&e))?;
                let Some(public) =
                    public_key(&block.label, &block.contents).map_err(|e| bad(&e))?
                else {
                    continue;
                };
                let key = verification_key(&public).map_err(|e| bad(&e))?;
                if !self.keys.iter().any(|(kid, _, _)| *kid == key.0) {
                    self.keys.push(key);
                }
                found = true;
            }
            if !found {
                return Err(bad(&"no RSA key or certificate in it"));
            }
        }
        Ok(self)
    }

    /// The signed token carrying `claims`.
    pub fn issue<T: Serialize>(&self, claims: &T) -> Result<String, String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// The claims of `token` when this key signed it, it is ours (issuer), current (expiry and
    /// not-before, with upstream's minute of leeway) and meant for one of `audiences`.
    pub fn verify(&self, token: &str, audiences: &[&str]) -> Option<Claims> {
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&[ISSUER]);
        v.set_audience(audiences);
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        self.decode(token, &v)
    }

    /// The claims of `token` when one of the verification keys signed it (the one its header
    /// names, if it names one of them).
    fn decode<T: serde::de::DeserializeOwned>(&self, token: &str, v: &Validation) -> Option<T> {
        let kid = jsonwebtoken::decode_header(token).ok()?.kid;
        let named = self.keys.iter().find(|(k, _, _)| Some(k) == kid.as_ref());
        let candidates: Vec<_> = match named {
            Some(key) => vec![key],
            None => self.keys.iter().collect(),
        };
        candidates
            .into_iter()
            .find_map(|(_, key, _)| jsonwebtoken::decode::<T>(token, key, v).ok())
            .map(|data| data.claims)
    }

    /// The claims of a Secret-based `token` when this key signed it (what it names is checked
    /// by [`super::secret_token::authenticate`]).
    pub fn verify_legacy(&self, token: &str) -> Option<LegacyClaims> {
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&[LEGACY_ISSUER]);
        v.validate_exp = false;
        v.validate_aud = false;
        v.set_required_spec_claims(&["iss", "sub"]);
        self.decode(token, &v)
    }

    /// The verification keys, as `/openid/v1/jwks` serves them.
    pub fn jwks(&self) -> Value {
        let keys: Vec<&Value> = self.keys.iter().map(|(_, _, jwk)| jwk).collect();
        json!({"keys": keys})
    }
}

/// The signing key in `dir`, made (mode 0600) when there is none.
fn signing_key(dir: &Path) -> Result<rsa::RsaPrivateKey, String> {
    let path = dir.join(KEY_FILE);
    let bad = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    match std::fs::read_to_string(&path) {
        Ok(pem) => rsa::RsaPrivateKey::from_pkcs1_pem(&pem)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(&pem))
            .map_err(|e| bad(&e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => new_key(&path),
        Err(e) => Err(bad(&e)),
    }
}

/// The RSA public key of a PEM block: a public or private key, or a certificate's; `None`
/// for a block of another kind.
fn public_key(label: &str, der: &[u8]) -> Result<Option<rsa::RsaPublicKey>, String> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    let key = match label {
        "PUBLIC KEY" => rsa::RsaPublicKey::from_public_key_der(der).map_err(|e| e.to_string())?,
        "RSA PUBLIC KEY" => rsa::RsaPublicKey::from_pkcs1_der(der).map_err(|e| e.to_string())?,
        "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_der(der)
            .map_err(|e| e.to_string())?
            .to_public_key(),
        "PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs8_der(der)
            .map_err(|e| e.to_string())?
            .to_public_key(),
        "CERTIFICATE" => {
            let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
            rsa::RsaPublicKey::from_public_key_der(cert.public_key().raw)
                .map_err(|e| e.to_string())?
        }
        _ => return Ok(None),
    };
    Ok(Some(key))
}

/// A new signing key, written to `path`.
fn new_key(path: &Path) -> Result<rsa::RsaPrivateKey, String> {
    let bad = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, KEY_BITS).map_err(|e| bad(&e))?;
    let pem = key.to_pkcs1_pem(LineEnding::LF).map_err(|e| bad(&e))?;
    crate::pki::write_private(path, &pem).map_err(|e| bad(&e))?;
    Ok(key)
}

/// A public key's ID (upstream's: the unpadded base64url SHA-256 of the PKIX public key),
/// its decoding key and its JWK.
fn verification_key(public: &rsa::RsaPublicKey) -> Result<(String, DecodingKey, Value), String> {
    let pkix = public.to_public_key_der().map_err(|e| e.to_string())?;
    let kid = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(pkix.as_bytes()));
    let (n, e) = (
        URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
        URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
    );
    let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|e| e.to_string())?;
    let jwk = json!({"use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256", "n": n, "e": e});
    Ok((kid, decoding, jwk))
}

/// Replaces the signing key in `dir` with a new one, keeping the old one's public half in
/// `service-account-retired/` so that the tokens it signed stay valid until they expire
/// (the server reads both at its next start). The new key's ID.
pub fn rotate(dir: &Path) -> Result<String, String> {
    let old = signing_key(dir)?.to_public_key();
    let retired = dir.join(RETIRED_DIR);
    std::fs::create_dir_all(&retired).map_err(|e| format!("{}: {e}", retired.display()))?;
    let pem = old
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| e.to_string())?;
    let stamp = jiff::Timestamp::now().as_second();
    let file = retired.join(format!("{stamp}.pub"));
    std::fs::write(&file, pem).map_err(|e| format!("{}: {e}", file.display()))?;
    let key = new_key(&dir.join(KEY_FILE))?;
    Ok(verification_key(&key.to_public_key())?.0)
}

/// Whether `token` looks like a JWT (three base64url parts), so that other kinds of bearer
/// token are not parsed as one.
pub fn is_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Upstream's OIDC discovery document, for `/.well-known/openid-configuration`; `jwks_uri`
/// points at this server's `/openid/v1/jwks`.
pub fn openid_configuration(jwks_uri: &str) -> Value {
    json!({
        "issuer": ISSUER,
        "jwks_uri": jwks_uri,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64, aud: &str) -> Claims {
        Claims {
            aud: vec![aud.into()],
            exp: now + 600,
            iat: now,
            iss: ISSUER.into(),
            jti: "j".into(),
            kubernetes: Private {
                namespace: "d".into(),
                serviceaccount: Ref {
                    name: "robot".into(),
                    uid: "u1".into(),
                },
                ..Private::default()
            },
            nbf: now,
            sub: "system:serviceaccount:d:robot".into(),
        }
    }

    #[test]
    fn keys_given_in_files_verify_what_they_signed() {
        let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let now = jiff::Timestamp::now().as_second();
        let other = Signer::ensure(theirs.path()).unwrap();
        let token = other.issue(&claims(now, ISSUER)).unwrap();
        assert_eq!(
            Signer::ensure(ours.path())
                .unwrap()
                .verify(&token, &[ISSUER]),
            None
        );
        let key = theirs.path().join(KEY_FILE);
        let signer = Signer::ensure(ours.path())
            .unwrap()
            .verifying_also(&[key])
            .unwrap();
        assert_eq!(signer.verify(&token, &[ISSUER]), Some(claims(now, ISSUER)));
        let not_a_key = ours.path().join("empty.pem");
        std::fs::write(&not_a_key, "nothing").unwrap();
        let refused = Signer::ensure(ours.path())
            .unwrap()
            .verifying_also(&[not_a_key]);
        assert!(
            refused
                .err()
                .unwrap()
                .ends_with("no RSA key or certificate in it")
        );
    }

    #[test]
    fn a_rotated_key_still_verifies_what_it_signed() {
        let dir = tempfile::tempdir().unwrap();
        let now = jiff::Timestamp::now().as_second();
        let old = Signer::ensure(dir.path()).unwrap();
        let token = old.issue(&claims(now, ISSUER)).unwrap();
        let kid = rotate(dir.path()).unwrap();
        let new = Signer::ensure(dir.path()).unwrap();
        assert_eq!(new.kid, kid);
        assert_ne!(new.kid, old.kid);
        assert_eq!(new.verify(&token, &[ISSUER]), Some(claims(now, ISSUER)));
        let fresh = new.issue(&claims(now, ISSUER)).unwrap();
        assert_eq!(
            old.verify(&fresh, &[ISSUER]),
            None,
            "the old signer knows no new key"
        );
        assert_eq!(new.jwks()["keys"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn tokens_verify_only_with_the_key_audience_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer::ensure(dir.path()).unwrap();
        let again = Signer::ensure(dir.path()).unwrap();
        assert_eq!(signer.kid, again.kid, "the key is kept");
        let now = jiff::Timestamp::now().as_second();
        let token = signer.issue(&claims(now, ISSUER)).unwrap();
        assert!(is_jwt(&token));
        assert_eq!(again.verify(&token, &[ISSUER]), Some(claims(now, ISSUER)));
        assert_eq!(signer.verify(&token, &["vault"]), None);
        let old = signer.issue(&claims(now - 7200, ISSUER)).unwrap();
        assert_eq!(signer.verify(&old, &[ISSUER]), None, "expired");
        let other = tempfile::tempdir().unwrap();
        assert_eq!(
            Signer::ensure(other.path())
                .unwrap()
                .verify(&token, &[ISSUER]),
            None
        );
        let jwks = signer.jwks();
        assert_eq!(jwks["keys"][0]["kid"], signer.kid.as_str());
        assert_eq!(jwks["keys"][0]["e"], "AQAB");
    }
}
