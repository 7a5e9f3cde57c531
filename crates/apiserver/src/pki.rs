//! The cluster's certificates: a CA, the API server's serving certificate and the admin's
//! client certificate, created on first start under `<data-dir>/tls/` and reused after; and
//! the admin kubeconfig that points kubectl at them.
//!
//! As k3s': the CA is valid for ten years, what it issues for one, and a certificate with
//! less than [`RENEW_DAYS`] left is issued again at start ([`fresh`]; the serving certificate
//! is issued at every start). [`described`] and [`set_aside`] serve `rudder certificate`,
//! which lists them and sets them aside to be issued at the next start.

use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// What can go wrong with the certificates.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// Generating or parsing a certificate or key.
    #[error("certificate {what}: {source}")]
    Certificate {
        /// Which certificate.
        what: &'static str,
        /// The failure.
        #[source]
        source: rcgen::Error,
    },
}

/// How long a CA made here is valid, in days.
const CA_DAYS: i64 = 3650;
/// How long the certificates the CA issues here are valid, in days.
const LEAF_DAYS: i64 = 365;
/// A certificate with fewer days than this left is issued again at start.
pub const RENEW_DAYS: i64 = 90;

/// PEM-encoded certificates and keys of the cluster.
#[derive(Clone)]
pub struct Pki {
    /// The CA certificate.
    pub ca_cert: String,
    /// The serving certificate, valid for every name in `sans`.
    pub server_cert: String,
    /// The serving key.
    pub server_key: String,
    /// The admin client certificate (CN `system:admin`, O `system:masters`).
    pub admin_cert: String,
    /// The admin client key.
    pub admin_key: String,
}

fn read(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            path: path.into(),
            source,
        }),
    }
}

fn write(path: &Path, contents: &str, secret: bool) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| Error::Io {
        path: path.into(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 });
    std::io::Write::write_all(&mut opts.open(&tmp).map_err(io)?, contents.as_bytes())
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Makes `params` valid from an hour ago (clocks differ) for `days`.
fn valid_for(params: &mut CertificateParams, days: i64) -> Result<(), Error> {
    let now = jiff::Timestamp::now().as_second();
    let at = |secs: i64| {
        x509_parser::time::ASN1Time::from_timestamp(secs)
            .map(|t| t.to_datetime())
            .map_err(|e| Error::Io {
                path: PathBuf::new(),
                source: std::io::Error::other(format!("certificate validity: {e}")),
            })
    };
    params.not_before = at(now - 3600)?;
    params.not_after = at(now + days * 86_400)?;
    Ok(())
}

/// What a certificate file holds: its first certificate's subject, expiry (Unix seconds)
/// and whether it is a CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// The subject, as `CN=...` and the like.
    pub subject: String,
    /// When it expires, in Unix seconds.
    pub not_after: i64,
    /// Whether it may sign certificates.
    pub is_ca: bool,
}

/// The first certificate of `pem`, described.
pub fn described(pem: &str) -> Option<Described> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = block.parse_x509().ok()?;
    Some(Described {
        subject: cert.subject().to_string(),
        not_after: cert.validity().not_after.timestamp(),
        is_ca: cert.is_ca(),
    })
}

/// Moves the files of `names` that exist in `dir` into `<dir>/rotated-<unix seconds>/`, so
/// that the next start issues them anew; the directory and the names moved.
pub fn set_aside(dir: &Path, names: &[&str]) -> Result<(PathBuf, Vec<String>), Error> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let backup = dir.join(format!("rotated-{}", jiff::Timestamp::now().as_second()));
    let mut moved = Vec::new();
    for name in names {
        let from = dir.join(name);
        if !from.exists() {
            continue;
        }
        std::fs::create_dir_all(&backup).map_err(io(&backup))?;
        std::fs::rename(&from, backup.join(name)).map_err(io(&from))?;
        moved.push(name.to_string());
    }
    Ok((backup, moved))
}

/// Whether the certificate in `pem` has more than [`RENEW_DAYS`] left.
fn fresh(pem: &str) -> bool {
    let now = jiff::Timestamp::now().as_second();
    described(pem).is_some_and(|d| d.not_after - now > RENEW_DAYS * 86_400)
}

fn cert_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> Error {
    move |source| Error::Certificate { what, source }
}

fn subject(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

fn san(name: &str) -> SanType {
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(
            name.try_into()
                .unwrap_or_else(|_| "invalid".try_into().expect("valid name")),
        ),
    }
}

/// Loads the PKI from `dir`, creating what is missing. The CA and the admin certificate are
/// kept across restarts; the serving certificate is issued afresh on each start, so that a
/// new `--tls-san` takes effect.
pub fn ensure(dir: &Path, sans: &[String]) -> Result<Pki, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.into(),
        source,
    })?;
    let (ca_cert_path, ca_key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
    let (ca_cert, ca_key) = match (read(&ca_cert_path)?, read(&ca_key_path)?) {
        (Some(cert), Some(key)) => (cert, KeyPair::from_pem(&key).map_err(cert_err("CA key"))?),
        _ => {
            let key = KeyPair::generate().map_err(cert_err("CA key"))?;
            let mut params = CertificateParams::default();
            params.distinguished_name = subject("rudder-ca", None);
            valid_for(&mut params, CA_DAYS)?;
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let cert = params.self_signed(&key).map_err(cert_err("CA"))?;
            write(&ca_key_path, &key.serialize_pem(), true)?;
            write(&ca_cert_path, &cert.pem(), false)?;
            (cert.pem(), key)
        }
    };
    let issuer = Issuer::from_ca_cert_pem(&ca_cert, &ca_key).map_err(cert_err("CA"))?;

    let (server_cert, server_key) = serving(dir, &issuer, sans)?;

    let (admin_cert_path, admin_key_path) = (dir.join("admin.crt"), dir.join("admin.key"));
    let (admin_cert, admin_key) = match (read(&admin_cert_path)?, read(&admin_key_path)?) {
        (Some(cert), Some(key)) if fresh(&cert) => (cert, key),
        _ => {
            let (cert, key) = client_cert(&issuer, "system:admin", &["system:masters"])?;
            write(&admin_key_path, &key, true)?;
            write(&admin_cert_path, &cert, false)?;
            (cert, key)
        }
    };
    Ok(Pki {
        ca_cert,
        server_cert,
        server_key,
        admin_cert,
        admin_key,
    })
}

/// Issues a client certificate for `user` in `groups`; returns (certificate, key) as PEM.
pub fn client_cert(
    issuer: &Issuer<'_, impl rcgen::SigningKey>,
    user: &str,
    groups: &[&str],
) -> Result<(String, String), Error> {
    let key = KeyPair::generate().map_err(cert_err("client key"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, user);
    for g in groups {
        dn.push(DnType::OrganizationName, *g);
    }
    params.distinguished_name = dn;
    valid_for(&mut params, LEAF_DAYS)?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer).map_err(cert_err("client"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A node's credentials, signed by the cluster CA: a client certificate for the API
/// (CN `system:node:<name>`, O `system:nodes`) and a serving certificate for its agent's
/// HTTPS endpoint, valid for `sans`. All PEM.
#[derive(Clone)]
pub struct NodeCredentials {
    /// The cluster CA certificate.
    pub ca_cert: String,
    /// The client certificate.
    pub client_cert: String,
    /// The client key.
    pub client_key: String,
    /// The serving certificate.
    pub serving_cert: String,
    /// The serving key.
    pub serving_key: String,
}

/// The CA kept in `dir` (as [`ensure`] made it): its certificate (PEM), ready to issue.
fn stored_issuer(dir: &Path) -> Result<(String, Issuer<'static, KeyPair>), Error> {
    let (Some(ca_cert), Some(ca_key)) = (read(&dir.join("ca.crt"))?, read(&dir.join("ca.key"))?)
    else {
        return Err(Error::Io {
            path: dir.join("ca.key"),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no cluster CA"),
        });
    };
    let key = KeyPair::from_pem(&ca_key).map_err(cert_err("CA key"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert, key).map_err(cert_err("CA"))?;
    Ok((ca_cert, issuer))
}

/// Issues node `name`'s credentials with the CA kept in `dir` (as [`ensure`] made it).
pub fn node_credentials(dir: &Path, name: &str, sans: &[String]) -> Result<NodeCredentials, Error> {
    let (ca_cert, issuer) = stored_issuer(dir)?;
    let (client_cert, client_key) =
        client_cert(&issuer, &format!("system:node:{name}"), &["system:nodes"])?;
    let node = subject(&format!("system:node:{name}"), Some("system:nodes"));
    let (serving_cert, serving_key) = serving_cert(&issuer, node, sans)?;
    Ok(NodeCredentials {
        ca_cert,
        client_cert,
        client_key,
        serving_cert,
        serving_key,
    })
}

/// A serving certificate for `subject` and `sans` from `issuer`, on a new key. Returns
/// (certificate, key) PEM.
fn serving_cert(
    issuer: &Issuer<'_, impl rcgen::SigningKey>,
    subject: DistinguishedName,
    sans: &[String],
) -> Result<(String, String), Error> {
    let key = KeyPair::generate().map_err(cert_err("serving key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject;
    valid_for(&mut params, LEAF_DAYS)?;
    params.subject_alt_names = sans.iter().map(|s| san(s)).collect();
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .signed_by(&key, issuer)
        .map_err(cert_err("serving"))?
        .pem();
    Ok((cert, key.serialize_pem()))
}

/// Issues the API server's serving certificate for `sans` from `issuer` and writes it to
/// `server.crt` and `server.key` in `dir`. Returns (certificate, key) PEM.
fn serving(
    dir: &Path,
    issuer: &Issuer<'_, impl rcgen::SigningKey>,
    sans: &[String],
) -> Result<(String, String), Error> {
    let (cert, key) = serving_cert(issuer, subject("kube-apiserver", None), sans)?;
    write(&dir.join("server.crt"), &cert, false)?;
    write(&dir.join("server.key"), &key, true)?;
    Ok((cert, key))
}

/// A new serving certificate for `sans` from the CA kept in `dir` when `current` (PEM) has
/// [`RENEW_DAYS`] or less left, for a server that renews it while it runs; `None` while it
/// is fresh. Returns (certificate, key) PEM.
pub fn renewed_serving(
    dir: &Path,
    current: &str,
    sans: &[String],
) -> Result<Option<(String, String)>, Error> {
    if fresh(current) {
        return Ok(None);
    }
    let (_, issuer) = stored_issuer(dir)?;
    serving(dir, &issuer, sans).map(Some)
}

/// The admin kubeconfig for a server at `url` (e.g. `https://127.0.0.1:6443`).
pub fn kubeconfig(pki: &Pki, url: &str) -> String {
    client_kubeconfig(
        url,
        &pki.ca_cert,
        (&pki.admin_cert, &pki.admin_key),
        "rudder-admin",
    )
}

/// A kubeconfig for a server at `url` trusting `ca`, as the user `name` with the client
/// certificate and key `(cert, key)` (all PEM).
pub fn client_kubeconfig(url: &str, ca: &str, (cert, key): (&str, &str), name: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: rudder
  cluster:
    server: {url}
    certificate-authority-data: {}
users:
- name: {name}
  user:
    client-certificate-data: {}
    client-key-data: {}
contexts:
- name: rudder
  context:
    cluster: rudder
    user: {name}
current-context: rudder
preferences: {{}}
",
        b64(ca),
        b64(cert),
        b64(key)
    )
}

/// Writes `contents` to `path` readable only by its owner, creating parent directories.
pub fn write_private(path: &Path, contents: &str) -> Result<(), Error> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            path: parent.into(),
            source,
        })?;
    }
    write(path, contents, true)
}

/// The API server's client certificate for node agents (CN `kube-apiserver-kubelet-client`,
/// O `system:masters`; [`component_client`]'s `kubelet-client`).
pub fn kubelet_client(dir: &Path) -> Result<(String, String), Error> {
    let (cn, orgs) = ("kube-apiserver-kubelet-client", &["system:masters"]);
    component_client(dir, "kubelet-client", cn, orgs)
}

/// The client certificate of a component of the control plane, CN `cn` and O `orgs`, signed
/// by the CA kept in `dir` (as [`ensure`] made it): created as `<stem>.crt` and `<stem>.key`,
/// reused after while it has more than [`RENEW_DAYS`] left. Returns (certificate, key) PEM.
pub fn component_client(
    dir: &Path,
    stem: &str,
    cn: &str,
    orgs: &[&str],
) -> Result<(String, String), Error> {
    let (cert_path, key_path) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    if let (Some(cert), Some(key)) = (read(&cert_path)?, read(&key_path)?)
        && fresh(&cert)
    {
        return Ok((cert, key));
    }
    let (_, issuer) = stored_issuer(dir)?;
    let (cert, key) = client_cert(&issuer, cn, orgs)?;
    write(&key_path, &key, true)?;
    write(&cert_path, &cert, false)?;
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let first = ensure(dir.path(), &sans).unwrap();
        let second = ensure(dir.path(), &sans).unwrap();
        assert_eq!(first.ca_cert, second.ca_cert);
        assert_eq!(first.admin_cert, second.admin_cert);
        assert!(first.server_cert.starts_with("-----BEGIN CERTIFICATE-----"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("ca.key"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let kc = kubeconfig(&first, "https://127.0.0.1:6443");
        assert!(kc.contains("server: https://127.0.0.1:6443"));
    }

    #[test]
    fn certificates_last_a_year_and_are_issued_again_when_close_to_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let sans = ["localhost".to_string()];
        let first = ensure(dir.path(), &sans).unwrap();
        let now = jiff::Timestamp::now().as_second();
        let days = |pem: &str| (described(pem).unwrap().not_after - now + 43_200) / 86_400;
        assert_eq!(days(&first.admin_cert), LEAF_DAYS);
        assert_eq!(days(&first.ca_cert), CA_DAYS);
        assert!(described(&first.ca_cert).unwrap().is_ca);
        // An admin certificate with a month left is issued again.
        let ca_key =
            KeyPair::from_pem(&std::fs::read_to_string(dir.path().join("ca.key")).unwrap())
                .unwrap();
        let issuer = Issuer::from_ca_cert_pem(&first.ca_cert, &ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        valid_for(&mut params, 30).unwrap();
        let short = params.signed_by(&key, &issuer).unwrap().pem();
        write(&dir.path().join("admin.crt"), &short, false).unwrap();
        let second = ensure(dir.path(), &sans).unwrap();
        assert_eq!(days(&second.admin_cert), LEAF_DAYS);
        // A running server's serving certificate: kept while fresh, issued again when not.
        assert_eq!(
            renewed_serving(dir.path(), &second.server_cert, &sans).unwrap(),
            None
        );
        let (renewed, _) = renewed_serving(dir.path(), &short, &sans).unwrap().unwrap();
        assert_eq!(days(&renewed), LEAF_DAYS);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("server.crt")).unwrap(),
            renewed
        );
        let (moved_to, moved) = set_aside(dir.path(), &["admin.crt", "missing.crt"]).unwrap();
        assert_eq!(moved, ["admin.crt"]);
        assert!(moved_to.join("admin.crt").exists() && !dir.path().join("admin.crt").exists());
    }

    #[test]
    fn the_kubelet_client_certificate_is_made_once() {
        use rustls::pki_types::pem::PemObject;
        let dir = tempfile::tempdir().unwrap();
        assert!(kubelet_client(dir.path()).is_err(), "no CA yet");
        ensure(dir.path(), &["localhost".to_string()]).unwrap();
        let (cert, key) = kubelet_client(dir.path()).unwrap();
        assert_eq!(kubelet_client(dir.path()).unwrap(), (cert.clone(), key));
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let who = crate::authn::from_certificate(&der).unwrap();
        assert_eq!(who.user, "kube-apiserver-kubelet-client");
        assert!(who.groups.contains(&"system:masters".to_string()));
    }
}
