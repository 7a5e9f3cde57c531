//! Trust anchors from PEM.

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The certificates of a PEM bundle (a cluster CA, or the system's bundle) as trust anchors.
/// A certificate rustls cannot use as an anchor is skipped, as system bundles hold some; a
/// bundle that is not PEM, or that leaves no anchor, is an error.
pub fn roots(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let _ = roots.add(cert.map_err(|e| e.to_string())?);
    }
    if roots.is_empty() {
        return Err("no CA certificate".into());
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pem_ca_is_an_anchor_and_garbage_is_an_error() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap();
        assert_eq!(super::roots(ca.cert.pem().as_bytes()).unwrap().len(), 1);
        assert!(super::roots(b"not pem").is_err());
    }
}
