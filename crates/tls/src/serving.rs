//! A serving certificate that can be replaced while the server runs: each handshake presents
//! the newest one, so a renewed certificate takes effect without a restart.

use std::sync::{Arc, PoisonError, RwLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use rustls::sign::CertifiedKey;

/// The certificate a TLS server presents, replaceable while it serves (a rustls
/// [`ResolvesServerCert`](rustls::server::ResolvesServerCert)).
#[derive(Debug)]
pub struct ServingCertificate {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServingCertificate {
    /// The certificate chain `chain_pem` (leaf first) with its key `key_pem`.
    pub fn new(chain_pem: &str, key_pem: &str) -> Result<Arc<ServingCertificate>, String> {
        Ok(Arc::new(ServingCertificate {
            current: RwLock::new(certified(chain_pem, key_pem)?),
        }))
    }

    /// Presents `chain_pem` and `key_pem` from the next handshake on.
    pub fn replace(&self, chain_pem: &str, key_pem: &str) -> Result<(), String> {
        let next = certified(chain_pem, key_pem)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next;
        Ok(())
    }

    /// The leaf certificate presented now (DER).
    pub fn leaf(&self) -> CertificateDer<'static> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current.cert[0].clone()
    }
}

impl rustls::server::ResolvesServerCert for ServingCertificate {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

fn certified(chain_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("reading the serving certificate: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in the serving certificate PEM".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("reading the serving key: {e}"))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider)
        .map(Arc::new)
        .map_err(|e| format!("the serving certificate: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(name: &str) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn a_replaced_certificate_is_the_one_presented() {
        let (first, key) = self_signed("a");
        let serving = ServingCertificate::new(&first, &key).unwrap();
        let before = serving.leaf();
        let (second, key) = self_signed("b");
        serving.replace(&second, &key).unwrap();
        assert_ne!(serving.leaf(), before);
        assert!(serving.replace("nonsense", &key).is_err());
        assert!(ServingCertificate::new("", &key).is_err());
    }
}
