//! Serving certificates: the one each TLS client gets, picked by the name it asks for (SNI)
//! among our Ingresses' `spec.tls` entries, else a self-signed default made at start (as
//! Traefik's `TRAEFIK DEFAULT CERT`).
//!
//! [`Certs::build`] maps Ingresses and Secrets to a name → certificate map, parsing a Secret
//! only when it is new or changed ([`Loaded`] keeps the rest from the last build);
//! [`Resolver`] is what rustls asks during each handshake, and is swapped a new [`Certs`]
//! whenever the objects change.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::routes::normalize_host;

/// The common name of the certificate served when no Ingress has one for the name asked.
pub const DEFAULT_CERT_NAME: &str = "RUDDER INGRESS DEFAULT CERT";

/// The Secret type holding a certificate and its key.
const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// The certificates our Ingresses name, by host.
#[derive(Debug, Default)]
pub struct Certs {
    /// By exact host (lower case).
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the domain under a `*.` wildcard.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

/// The certificates loaded from Secrets by the last build, each with the Secret's
/// resourceVersion (empty for a missing one): what a build reuses instead of parsing again.
#[derive(Debug, Default)]
pub struct Loaded(HashMap<(String, String), Versioned>);

/// A Secret's resourceVersion and the certificate it gave, if it loaded.
type Versioned = (String, Option<Arc<CertifiedKey>>);

impl Certs {
    /// The certificates the `spec.tls` entries of `ingresses` (ours, oldest first: the oldest
    /// wins a host) name. A Secret that is missing, of another type, or whose certificate or
    /// key does not load is logged (when first seen so) and skipped; so is an entry without
    /// hosts. `loaded` is the last build's, kept for the next.
    pub fn build(
        ingresses: &[&Ingress],
        secrets: &[&Secret],
        provider: &CryptoProvider,
        loaded: &mut Loaded,
    ) -> Certs {
        let secrets: BTreeMap<(&str, &str), &Secret> = secrets
            .iter()
            .filter_map(|s| {
                let key = (
                    s.metadata.namespace.as_deref()?,
                    s.metadata.name.as_deref()?,
                );
                Some((key, *s))
            })
            .collect();
        let mut kept = Loaded::default();
        let mut certs = Certs::default();
        for ing in ingresses {
            let namespace = ing.metadata.namespace.as_deref().unwrap_or_default();
            for tls in ing.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
                let Some(name) = tls.secret_name.as_deref() else {
                    continue;
                };
                let hosts = tls.hosts.as_deref().unwrap_or_default();
                if hosts.is_empty() {
                    continue;
                }
                let secret = secrets.get(&(namespace, name)).copied();
                let key = (namespace.to_owned(), name.to_owned());
                let cert = kept.0.entry(key.clone()).or_insert_with(|| {
                    let version = secret
                        .and_then(|s| s.metadata.resource_version.clone())
                        .unwrap_or_default();
                    match loaded.0.remove(&key) {
                        Some((v, cert)) if v == version => (v, cert),
                        _ => (version, load(secret, namespace, name, provider)),
                    }
                });
                let Some(cert) = cert.1.clone() else { continue };
                for host in hosts {
                    certs.insert(host, &cert);
                }
            }
        }
        *loaded = kept;
        certs
    }

    fn insert(&mut self, host: &str, cert: &Arc<CertifiedKey>) {
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        let (map, key) = match host.strip_prefix("*.") {
            Some(domain) => (&mut self.wildcard, domain.to_owned()),
            None => (&mut self.exact, host),
        };
        map.entry(key).or_insert_with(|| cert.clone());
    }

    /// The certificate for a client asking for `name`: an exact host first, then a wildcard
    /// covering it.
    pub fn lookup(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = normalize_host(name);
        if let Some(cert) = self.exact.get(&name) {
            return Some(cert.clone());
        }
        let (label, domain) = name.split_once('.')?;
        if label.is_empty() {
            return None;
        }
        self.wildcard.get(domain).cloned()
    }

    /// How many host names have a certificate (wildcards included).
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// Whether no host has a certificate.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The certificate in Secret `namespace/name`, if it is there and loads.
fn load(
    secret: Option<&Secret>,
    namespace: &str,
    name: &str,
    provider: &CryptoProvider,
) -> Option<Arc<CertifiedKey>> {
    match secret
        .ok_or_else(|| "not found".to_owned())
        .and_then(|s| certified_key(s, provider))
    {
        Ok(cert) => Some(Arc::new(cert)),
        Err(e) => {
            tracing::warn!(secret = %format!("{namespace}/{name}"), "TLS secret skipped: {e}");
            None
        }
    }
}

/// The certificate chain and key of a `kubernetes.io/tls` Secret.
pub fn certified_key(secret: &Secret, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let kind = secret.type_.as_deref().unwrap_or("Opaque");
    if kind != TLS_SECRET_TYPE {
        return Err(format!("type {kind}, not {TLS_SECRET_TYPE}"));
    }
    let field = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.as_slice())
            .ok_or_else(|| format!("no {key}"))
    };
    let chain = CertificateDer::pem_slice_iter(field("tls.crt")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.crt: {e}"))?;
    if chain.is_empty() {
        return Err("tls.crt holds no certificate".into());
    }
    let key =
        PrivateKeyDer::from_pem_slice(field("tls.key")?).map_err(|e| format!("tls.key: {e}"))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| e.to_string())
}

/// A fresh self-signed certificate named [`DEFAULT_CERT_NAME`].
pub fn default_certificate(provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(Vec::new()).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, DEFAULT_CERT_NAME);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    CertifiedKey::from_der(vec![cert.der().clone()], der, provider).map_err(|e| e.to_string())
}

/// Picks each handshake's certificate from the current [`Certs`], else the default.
#[derive(Debug)]
pub struct Resolver {
    certs: RwLock<Arc<Certs>>,
    default: Arc<CertifiedKey>,
}

impl Resolver {
    /// A resolver with no Ingress certificates yet.
    pub fn new(default: CertifiedKey) -> Resolver {
        Resolver {
            certs: RwLock::new(Arc::new(Certs::default())),
            default: Arc::new(default),
        }
    }

    /// Replaces the certificates for the handshakes that follow.
    pub fn set(&self, certs: Certs) {
        *self.certs.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(certs);
    }

    /// The certificate for a client asking for `name` (or nothing).
    pub fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let certs = self
            .certs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        name.and_then(|n| certs.lookup(n))
            .unwrap_or_else(|| self.default.clone())
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// The TLS server configuration: certificates from `resolver`, ALPN `h2` and `http/1.1`.
pub fn server_config(
    provider: Arc<CryptoProvider>,
    resolver: Arc<Resolver>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use serde_json::json;

    use super::*;

    fn provider() -> CryptoProvider {
        rustls::crypto::ring::default_provider()
    }

    /// A self-signed certificate for `hosts` as a TLS Secret, and its DER.
    fn secret(name: &str, hosts: &[&str]) -> (Secret, CertificateDer<'static>) {
        let made = rcgen::generate_simple_self_signed(
            hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        let mut secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "web"},
            "type": "kubernetes.io/tls",
        }))
        .unwrap();
        secret.data = Some(BTreeMap::from([
            ("tls.crt".into(), ByteString(made.cert.pem().into_bytes())),
            (
                "tls.key".into(),
                ByteString(made.signing_key.serialize_pem().into_bytes()),
            ),
        ]));
        (secret, made.cert.der().clone())
    }

    fn ingress(name: &str, tls: serde_json::Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "web"},
            "spec": {"tls": tls},
        }))
        .unwrap()
    }

    fn der(cert: Option<Arc<CertifiedKey>>) -> Option<CertificateDer<'static>> {
        cert.map(|c| c.cert[0].clone())
    }

    #[test]
    fn hosts_get_their_secret_exact_before_wildcard() {
        let (exact, exact_der) = secret("exact", &["foo.example.com"]);
        let (wild, wild_der) = secret("wild", &["*.example.com"]);
        let ing = ingress(
            "i",
            json!([
                {"hosts": ["*.example.com"], "secretName": "wild"},
                {"hosts": ["Foo.Example.com"], "secretName": "exact"},
            ]),
        );
        let certs = Certs::build(
            &[&ing],
            &[&exact, &wild],
            &provider(),
            &mut Loaded::default(),
        );
        assert_eq!(certs.len(), 2);
        assert_eq!(der(certs.lookup("foo.example.com")), Some(exact_der));
        assert_eq!(der(certs.lookup("BAR.example.com")), Some(wild_der));
        assert_eq!(der(certs.lookup("example.com")), None);
        assert_eq!(der(certs.lookup("a.b.example.com")), None);
    }

    #[test]
    fn the_oldest_ingress_wins_a_host() {
        let (first, first_der) = secret("first", &["x.test"]);
        let (second, _) = secret("second", &["x.test"]);
        let old = ingress("old", json!([{"hosts": ["x.test"], "secretName": "first"}]));
        let new = ingress(
            "new",
            json!([{"hosts": ["x.test"], "secretName": "second"}]),
        );
        let certs = Certs::build(
            &[&old, &new],
            &[&first, &second],
            &provider(),
            &mut Loaded::default(),
        );
        assert_eq!(der(certs.lookup("x.test")), Some(first_der));
    }

    #[test]
    fn bad_missing_or_foreign_secrets_are_skipped() {
        let (mut opaque, _) = secret("opaque", &["a.test"]);
        opaque.type_ = Some("Opaque".into());
        let (mut garbled, _) = secret("garbled", &["b.test"]);
        garbled
            .data
            .as_mut()
            .unwrap()
            .insert("tls.key".into(), ByteString(b"nonsense".to_vec()));
        let (mut elsewhere, _) = secret("elsewhere", &["c.test"]);
        elsewhere.metadata.namespace = Some("other".into());
        let (good, good_der) = secret("good", &["d.test"]);
        let ing = ingress(
            "i",
            json!([
                {"hosts": ["a.test"], "secretName": "opaque"},
                {"hosts": ["b.test"], "secretName": "garbled"},
                {"hosts": ["c.test"], "secretName": "elsewhere"},
                {"hosts": ["e.test"], "secretName": "missing"},
                {"hosts": ["d.test"], "secretName": "good"},
                {"secretName": "good"},
            ]),
        );
        let certs = Certs::build(
            &[&ing],
            &[&opaque, &garbled, &elsewhere, &good],
            &provider(),
            &mut Loaded::default(),
        );
        assert_eq!(certs.len(), 1);
        assert_eq!(der(certs.lookup("d.test")), Some(good_der));
    }

    #[test]
    fn a_secret_is_parsed_again_only_when_its_version_changes() {
        let (mut good, good_der) = secret("good", &["d.test"]);
        good.metadata.resource_version = Some("1".into());
        let ing = ingress("i", json!([{"hosts": ["d.test"], "secretName": "good"}]));
        let mut loaded = Loaded::default();
        let build = |s: &Secret, loaded: &mut Loaded| {
            Certs::build(&[&ing], &[s], &provider(), loaded).lookup("d.test")
        };
        assert_eq!(der(build(&good, &mut loaded)), Some(good_der.clone()));
        // The same version with a broken key: what was loaded is used, not parsed again.
        let mut broken = good.clone();
        let data = broken.data.as_mut().unwrap();
        data.insert("tls.key".into(), ByteString(b"nonsense".to_vec()));
        assert_eq!(der(build(&broken, &mut loaded)), Some(good_der));
        broken.metadata.resource_version = Some("2".into());
        assert!(build(&broken, &mut loaded).is_none());
    }

    #[test]
    fn a_key_that_does_not_match_its_certificate_is_refused() {
        let (mut mixed, _) = secret("mixed", &["a.test"]);
        let (other, _) = secret("other", &["a.test"]);
        mixed.data.as_mut().unwrap().insert(
            "tls.key".into(),
            other.data.as_ref().unwrap()["tls.key"].clone(),
        );
        assert!(certified_key(&mixed, &provider()).is_err());
    }

    #[test]
    fn unknown_or_missing_names_get_the_default_certificate() {
        let provider = provider();
        let default = default_certificate(&provider).unwrap();
        let default_der = default.cert[0].clone();
        let resolver = Resolver::new(default);
        let (good, good_der) = secret("good", &["d.test"]);
        let ing = ingress("i", json!([{"hosts": ["d.test"], "secretName": "good"}]));
        resolver.set(Certs::build(
            &[&ing],
            &[&good],
            &provider,
            &mut Loaded::default(),
        ));
        assert_eq!(resolver.pick(Some("d.test")).cert[0], good_der);
        assert_eq!(resolver.pick(Some("e.test")).cert[0], default_der);
        assert_eq!(resolver.pick(None).cert[0], default_der);
    }

    #[test]
    fn the_default_certificate_carries_its_name() {
        let cert = default_certificate(&provider()).unwrap();
        let der = cert.cert[0].as_ref();
        let name = DEFAULT_CERT_NAME.as_bytes();
        assert!(der.windows(name.len()).any(|w| w == name));
    }
}
