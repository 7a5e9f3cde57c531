//! Joining a cluster with a join token, as the kubelet's TLS bootstrapping does it: the
//! agent asks the API server, as the token's bootstrapper, to sign a client certificate for
//! `system:node:<name>` (a CertificateSigningRequest for
//! `kubernetes.io/kube-apiserver-client-kubelet`, which the controller manager approves and
//! signs), then, as the node, a serving certificate for its HTTPS endpoint
//! (`kubernetes.io/kubelet-serving`).
//!
//! The token is not a trust anchor: the cluster CA comes from `--ca-file`, or, without one,
//! is taken from the server's TLS handshake on first use (its SHA-256 fingerprint is logged
//! for the operator to check) and kept. Everything lives under the agent's data directory:
//! `pki/ca.crt`, `pki/kubelet-client.{crt,key}`, `pki/kubelet-serving.{crt,key}` and the
//! node's `kubeconfig.yaml`; certificates still valid for the same node and CA are reused on
//! the next start, with no new request.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Context, Error, Result, bail};
use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::api::{Api, ObjectMeta, PostParams};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls::pki_types::CertificateDer;

/// The signer of node agents' client certificates.
const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The signer of node agents' serving certificates.
const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// How long a request may wait for its certificate.
const WAIT: Duration = Duration::from_secs(120);
/// A certificate with less validity left than this is replaced rather than reused (k3s'
/// 90 days, as the server's own certificates).
const RENEW_BEFORE_SECONDS: i64 = 90 * 86_400;

/// What a joined agent runs with.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The API server's URL.
    pub server: String,
    /// The node's name.
    pub node_name: String,
    /// The agent's data directory (certificates under `pki/`).
    pub dir: PathBuf,
    /// The names the serving certificate is for: the node's name and addresses.
    pub names: Vec<String>,
    /// The node's kubeconfig: the server, the cluster CA, the node's client certificate.
    pub kubeconfig: PathBuf,
    /// The cluster CA certificate (PEM).
    pub ca_cert: String,
    /// The serving certificate of the agent's HTTPS endpoint (PEM).
    pub serving_cert: String,
    /// Its key (PEM).
    pub serving_key: String,
}

/// Joins the cluster whose API server is at `server` (`https://host:port`) with the join
/// `token`, as node `node_name`, keeping credentials in `dir`. `ca` is the cluster CA (PEM)
/// when the operator gave one; `node_ips` go into the serving certificate besides the name.
pub async fn bootstrap(
    server: &str,
    token: &str,
    node_name: &str,
    dir: &Path,
    ca: Option<&str>,
    node_ips: &[IpAddr],
) -> Result<Credentials> {
    let server = server.trim_end_matches('/');
    crate::error::ensure!(
        server.starts_with("https://"),
        "the server URL {server:?} must start with https://"
    );
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).with_context(|| format!("creating {}", pki.display()))?;
    let files = Files::new(&pki);
    let stored_ca = read(&files.ca)?;
    let ca = match (ca, &stored_ca) {
        (Some(given), _) => {
            first_certificate(given).context("reading the cluster CA (--ca-file)")?;
            given.to_string()
        }
        (None, Some(stored)) => stored.clone(),
        (None, None) => trust_on_first_use(server).await?,
    };
    if stored_ca.as_deref().is_some_and(|s| s != ca) {
        tracing::warn!("the cluster CA changed: the node's certificates are requested anew");
        for f in [&files.client_cert, &files.serving_cert] {
            let _ = std::fs::remove_file(f);
        }
    }
    write(&files.ca, &ca, 0o644)?;

    let user = format!("system:node:{node_name}");
    let identity = match reusable(&files.client_cert, &files.client_key, &ca, &user, &[])? {
        Some(pair) => {
            tracing::info!(
                "reusing the node's client certificate {}",
                files.client_cert.display()
            );
            pair
        }
        None => {
            let bootstrap = client(&kubeconfig(server, &ca, User::Token(token)))
                .await
                .context("connecting with the join token")?;
            new_client_certificate(bootstrap, node_name, &files).await?
        }
    };
    let path = dir.join("kubeconfig.yaml");
    let text = kubeconfig(server, &ca, User::Certificate(&identity.0, &identity.1));
    write(&path, &text, 0o600)?;

    let mut names = vec![node_name.to_string()];
    names.extend(node_ips.iter().map(IpAddr::to_string));
    names.dedup();
    let serving = match reusable(&files.serving_cert, &files.serving_key, &ca, &user, &names)? {
        Some(pair) => {
            tracing::info!(
                "reusing the node's serving certificate {}",
                files.serving_cert.display()
            );
            pair
        }
        None => {
            let node = client(&text).await.context("connecting as the node")?;
            new_serving_certificate(node, node_name, &names, &files).await?
        }
    };
    Ok(Credentials {
        server: server.to_string(),
        node_name: node_name.to_string(),
        dir: dir.to_path_buf(),
        names,
        kubeconfig: path,
        ca_cert: ca,
        serving_cert: serving.0,
        serving_key: serving.1,
    })
}

/// Asks, through `client`, for a client certificate for node `node_name` and keeps it in
/// `files`. Returns (certificate, key) PEM.
async fn new_client_certificate(
    client: kube::Client,
    node_name: &str,
    files: &Files,
) -> Result<(String, String)> {
    let usages = ["digital signature", "client auth"];
    let pair = request(client, CLIENT_SIGNER, node_name, Vec::new(), &usages).await?;
    write(&files.client_key, &pair.1, 0o600)?;
    write(&files.client_cert, &pair.0, 0o644)?;
    Ok(pair)
}

/// Asks, through `client`, for a serving certificate for node `node_name` valid for `names`
/// and keeps it in `files`. Returns (certificate, key) PEM.
async fn new_serving_certificate(
    client: kube::Client,
    node_name: &str,
    names: &[String],
    files: &Files,
) -> Result<(String, String)> {
    let sans = names.iter().map(|n| san(n)).collect::<Result<Vec<_>>>()?;
    let usages = ["digital signature", "key encipherment", "server auth"];
    let pair = request(client, SERVING_SIGNER, node_name, sans, &usages).await?;
    write(&files.serving_key, &pair.1, 0o600)?;
    write(&files.serving_cert, &pair.0, 0o644)?;
    Ok(pair)
}

/// Renews the node's client certificate of `creds`, asking as the node through `client`:
/// the new certificate goes into its file and the node's kubeconfig. Returns a client on it.
pub(crate) async fn renew_client_certificate(
    creds: &Credentials,
    client: kube::Client,
) -> Result<kube::Client> {
    let files = Files::new(&creds.dir.join("pki"));
    let (cert, key) = new_client_certificate(client, &creds.node_name, &files).await?;
    let text = kubeconfig(
        &creds.server,
        &creds.ca_cert,
        User::Certificate(&cert, &key),
    );
    write(&creds.kubeconfig, &text, 0o600)?;
    let renewed = self::client(&text)
        .await
        .context("connecting as the node")?;
    Ok(renewed)
}

/// Renews the node's serving certificate of `creds`, asking as the node through `client`.
/// Returns (certificate, key) PEM.
pub(crate) async fn renew_serving_certificate(
    creds: &Credentials,
    client: kube::Client,
) -> Result<(String, String)> {
    let files = Files::new(&creds.dir.join("pki"));
    new_serving_certificate(client, &creds.node_name, &creds.names, &files).await
}

/// The validity of the first certificate in `pem`: (not before, not after), Unix seconds.
pub(crate) fn validity(pem: &str) -> Option<(i64, i64)> {
    let der = first_certificate(pem).ok()?;
    let (_, x) = x509_parser::parse_x509_certificate(&der).ok()?;
    let v = x.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Where the certificates live.
pub(crate) struct Files {
    ca: PathBuf,
    pub(crate) client_cert: PathBuf,
    client_key: PathBuf,
    pub(crate) serving_cert: PathBuf,
    serving_key: PathBuf,
}

impl Files {
    pub(crate) fn new(pki: &Path) -> Files {
        Files {
            ca: pki.join("ca.crt"),
            client_cert: pki.join("kubelet-client.crt"),
            client_key: pki.join("kubelet-client.key"),
            serving_cert: pki.join("kubelet-serving.crt"),
            serving_key: pki.join("kubelet-serving.key"),
        }
    }
}

fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes `contents` to `path` with `mode`, through a temporary file renamed into place.
fn write(path: &Path, contents: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::io::Write::write_all(&mut file, contents.as_bytes())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// The first certificate of a PEM bundle, DER.
fn first_certificate(pem: &str) -> Result<Vec<u8>> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| Error::Failed(format!("no PEM certificate: {e}")))?;
    crate::error::ensure!(
        block.label == "CERTIFICATE",
        "a PEM {:?} block, not a CERTIFICATE",
        block.label
    );
    block.parse_x509().context("not an X.509 certificate")?;
    Ok(block.contents)
}

/// The certificate and key in `cert` and `key`, if both exist, the certificate is signed by
/// `ca` for `user`, names every one of `names` and stays valid for a while yet.
fn reusable(
    cert: &Path,
    key: &Path,
    ca: &str,
    user: &str,
    names: &[String],
) -> Result<Option<(String, String)>> {
    let (Some(cert_pem), Some(key_pem)) = (read(cert)?, read(key)?) else {
        return Ok(None);
    };
    let ca_der = first_certificate(ca)?;
    let fits = || -> Option<bool> {
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).ok()?;
        let der = first_certificate(&cert_pem).ok()?;
        let (_, x) = x509_parser::parse_x509_certificate(&der).ok()?;
        x.verify_signature(Some(ca.public_key())).ok()?;
        let key = KeyPair::from_pem(&key_pem).ok()?;
        let same_key = x.public_key().subject_public_key.data.as_ref() == key.public_key_raw();
        let cn = x.subject().iter_common_name().next()?.as_str().ok()?;
        let left = x.validity().not_after.timestamp() - jiff::Timestamp::now().as_second();
        let sans: Vec<String> = x
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|s| {
                s.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                        x509_parser::extensions::GeneralName::IPAddress(o) => match o.len() {
                            4 => <[u8; 4]>::try_from(*o)
                                .ok()
                                .map(|a| IpAddr::from(a).to_string()),
                            16 => <[u8; 16]>::try_from(*o)
                                .ok()
                                .map(|a| IpAddr::from(a).to_string()),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(
            same_key
                && cn == user
                && left > RENEW_BEFORE_SECONDS
                && names.iter().all(|n| sans.contains(n)),
        )
    };
    Ok(fits().unwrap_or(false).then_some((cert_pem, key_pem)))
}

/// How a kubeconfig's user authenticates.
enum User<'a> {
    /// A bearer token.
    Token(&'a str),
    /// A client certificate and key (PEM).
    Certificate(&'a str, &'a str),
}

/// A kubeconfig for `server`, trusting `ca`, as `user`.
fn kubeconfig(server: &str, ca: &str, user: User<'_>) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let user = match user {
        User::Token(t) => format!("    token: {t}\n"),
        User::Certificate(cert, key) => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(cert),
            b64(key)
        ),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: rudder\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: node\n  user:\n{user}contexts:\n- name: node\n  context:\n    cluster: rudder\n    user: node\ncurrent-context: node\n",
        b64(ca)
    )
}

/// A client from kubeconfig text.
async fn client(kubeconfig: &str) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig).context("reading the kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .context("using the kubeconfig")?;
    kube::Client::try_from(config).context("building the API client")
}

/// A subject alternative name: an IP address where `name` is one, else a DNS name.
fn san(name: &str) -> Result<SanType> {
    Ok(match name.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(
            name.try_into()
                .map_err(|e| Error::Failed(format!("{name:?} is not a DNS name: {e}")))?,
        ),
    })
}

/// `n` random characters of `[a-z0-9]`.
fn random(n: usize) -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut f = std::fs::File::open("/dev/urandom").context("opening /dev/urandom")?;
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 32];
    while out.len() < n {
        std::io::Read::read_exact(&mut f, &mut buf).context("reading /dev/urandom")?;
        out.extend(
            buf.iter()
                .filter(|b| **b < 252)
                .map(|b| ALPHABET[usize::from(*b) % 36] as char)
                .take(n - out.len()),
        );
    }
    Ok(out)
}

/// Asks `signer`, through `client`, for a certificate for node `node_name` (CN
/// `system:node:<name>`, O `system:nodes`) with `sans` and `usages`, on a new key; waits for
/// it. Returns (certificate, key) PEM.
async fn request(
    client: kube::Client,
    signer: &str,
    node_name: &str,
    sans: Vec<SanType>,
    usages: &[&str],
) -> Result<(String, String)> {
    let key = KeyPair::generate().context("generating a key")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("system:node:{node_name}"));
    dn.push(DnType::OrganizationName, "system:nodes");
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    let pem = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .context("making the certificate request")?;
    let name = format!("node-csr-{}", random(12)?);
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(pem.into_bytes()),
            signer_name: signer.into(),
            usages: Some(usages.iter().map(|u| u.to_string()).collect()),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    };
    let api: Api<CertificateSigningRequest> = Api::all(client);
    api.create(&PostParams::default(), &csr)
        .await
        .with_context(|| format!("creating CertificateSigningRequest {name}"))?;
    tracing::info!(
        signer,
        "CertificateSigningRequest {name} created; waiting for its certificate"
    );
    let decided = |c: Option<&CertificateSigningRequest>| {
        c.is_none_or(|c| {
            let status = c.status.as_ref();
            status
                .and_then(|s| s.certificate.as_ref())
                .is_some_and(|b| !b.0.is_empty())
                || status
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == "Denied" || c.type_ == "Failed")
                    })
        })
    };
    let outcome = tokio::time::timeout(
        WAIT,
        kube::runtime::wait::await_condition(api, &name, decided),
    )
    .await;
    let csr = match outcome {
        Err(_) => bail!(
            "CertificateSigningRequest {name} was not issued within {} s: is a controller manager with the cluster's signing key running? (kubectl get csr {name})",
            WAIT.as_secs()
        ),
        Ok(Err(e)) => {
            return Err(e).with_context(|| format!("waiting for CertificateSigningRequest {name}"));
        }
        Ok(Ok(None)) => bail!("CertificateSigningRequest {name} was deleted before it was issued"),
        Ok(Ok(Some(csr))) => csr,
    };
    let status = csr.status.unwrap_or_default();
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Denied" || c.type_ == "Failed")
    {
        let verb = if c.type_ == "Denied" {
            "denied"
        } else {
            "failed"
        };
        bail!(
            "CertificateSigningRequest {name} was {verb}: {}: {}",
            c.reason.as_deref().unwrap_or(""),
            c.message.as_deref().unwrap_or("")
        );
    }
    let cert = String::from_utf8(status.certificate.map(|c| c.0).unwrap_or_default())
        .with_context(|| format!("CertificateSigningRequest {name}'s certificate is not PEM"))?;
    let der = first_certificate(&cert)
        .with_context(|| format!("CertificateSigningRequest {name}'s certificate"))?;
    let (_, x) = x509_parser::parse_x509_certificate(&der).context("reading the certificate")?;
    crate::error::ensure!(
        x.public_key().subject_public_key.data.as_ref() == key.public_key_raw(),
        "CertificateSigningRequest {name}'s certificate is not for the requested key"
    );
    tracing::info!("CertificateSigningRequest {name} issued");
    Ok((cert, key.serialize_pem()))
}

/// The cluster CA as the server at `server` presents it at the end of its TLS chain, trusted
/// on first use: the fingerprint is logged for the operator to check.
async fn trust_on_first_use(server: &str) -> Result<String> {
    let uri: hyper::Uri = server
        .parse()
        .with_context(|| format!("the server URL {server:?}"))?;
    let host = uri
        .host()
        .with_context(|| format!("the server URL {server:?} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let chain = presented_chain(&host, port)
        .await
        .with_context(|| format!("reading the certificates {server} presents"))?;
    let leaf = chain
        .first()
        .context("the server presented no certificate")?;
    let (_, leaf) =
        x509_parser::parse_x509_certificate(leaf).context("reading the server's certificate")?;
    let ca = chain
        .iter()
        .skip(1)
        .rev()
        .find(|der| {
            x509_parser::parse_x509_certificate(der).is_ok_and(|(_, c)| {
                c.is_ca()
                    && c.subject() == c.issuer()
                    && leaf.verify_signature(Some(c.public_key())).is_ok()
            })
        })
        .with_context(|| {
            format!(
                "{server} does not present the CA that signed its certificate: give the cluster CA with --ca-file"
            )
        })?;
    let fingerprint = {
        use sha2::Digest as _;
        sha2::Sha256::digest(ca.as_ref())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    tracing::warn!(
        "no --ca-file: trusting the cluster CA that {server} presents, on first use; its SHA-256 \
         fingerprint is {fingerprint} (compare `openssl x509 -noout -fingerprint -sha256 -in \
         <server data dir>/tls/ca.crt` on the server)"
    );
    Ok(pem("CERTIFICATE", ca.as_ref()))
}

/// PEM text of one DER block.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The certificates a TLS server presents, without verifying them.
async fn presented_chain(host: &str, port: u16) -> Result<Vec<CertificateDer<'static>>> {
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .context("connecting: timed out")?
    .context("connecting")?;
    let name =
        rustls::pki_types::ServerName::try_from(host.to_string()).context("the server's name")?;
    let tls = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(unverified_client()).connect(name, tcp),
    )
    .await
    .context("the TLS handshake: timed out")?
    .context("the TLS handshake")?;
    Ok(tls
        .get_ref()
        .1
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.clone().into_owned())
        .collect())
}

/// A TLS client that accepts any server certificate (the handshake's signatures are still
/// checked). For reading the chain a server presents before trusting it, and for HTTPS probes
/// and hooks, which upstream's kubelet makes without verification too.
/// Built once: probes ask for it every period.
pub(crate) fn unverified_client() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            Arc::new(
                rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default TLS versions")
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(tls::AnyServerCertificate::new(
                        provider,
                    )))
                    .with_no_client_auth(),
            )
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, IsCa, Issuer, KeyUsagePurpose};

    fn ca() -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        (params.self_signed(&key).unwrap().pem(), key)
    }

    fn issue(ca: &(String, KeyPair), cn: &str, sans: &[&str], days: i64) -> (String, String) {
        let issuer = Issuer::from_ca_cert_pem(&ca.0, &ca.1).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        let now = jiff::Timestamp::now().as_second();
        params.not_before = x509_parser::time::ASN1Time::from_timestamp(now - 60)
            .unwrap()
            .to_datetime();
        params.not_after = x509_parser::time::ASN1Time::from_timestamp(now + days * 86400)
            .unwrap()
            .to_datetime();
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn certificates_are_reused_only_while_they_fit() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.crt"), dir.path().join("c.key"));
        let ca = ca();
        let user = "system:node:n1";
        let names = ["n1".to_string(), "10.0.0.1".to_string()];
        let check = |pair: &(String, String), names: &[String]| {
            write(&cert, &pair.0, 0o644).unwrap();
            write(&key, &pair.1, 0o600).unwrap();
            reusable(&cert, &key, &ca.0, user, names).unwrap().is_some()
        };
        assert!(
            reusable(&cert, &key, &ca.0, user, &names)
                .unwrap()
                .is_none(),
            "no files"
        );
        let good = issue(&ca, user, &["n1", "10.0.0.1"], 365);
        assert!(check(&good, &names));
        assert!(check(&good, &[]));
        assert!(
            !check(&good, &["n1".into(), "10.0.0.2".into()]),
            "a new address"
        );
        assert!(!check(
            &issue(&ca, "system:node:n2", &["n1", "10.0.0.1"], 365),
            &names
        ));
        assert!(
            !check(&issue(&ca, user, &["n1", "10.0.0.1"], 0), &names),
            "expiring"
        );
        assert!(
            !check(&issue(&self::ca(), user, &["n1", "10.0.0.1"], 365), &names),
            "another CA"
        );
        assert!(
            !check(&(good.0.clone(), issue(&ca, user, &[], 365).1), &names),
            "another key"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&key).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn kubeconfigs_name_the_server_the_ca_and_the_user() {
        let ca = ca().0;
        let text = kubeconfig(
            "https://10.0.0.1:6443",
            &ca,
            User::Token("abcdef.0123456789abcdef"),
        );
        let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(
            kc.clusters[0].cluster.as_ref().unwrap().server.as_deref(),
            Some("https://10.0.0.1:6443")
        );
        assert!(text.contains("    token: abcdef.0123456789abcdef\n"));
        let (cert, key) = issue(&(ca.clone(), KeyPair::generate().unwrap()), "x", &[], 1);
        let text = kubeconfig("https://h:1", &ca, User::Certificate(&cert, &key));
        let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert!(
            kc.auth_infos[0]
                .auth_info
                .as_ref()
                .unwrap()
                .client_certificate_data
                .is_some()
        );
        assert_eq!(
            first_certificate(&pem("CERTIFICATE", &first_certificate(&ca).unwrap())).unwrap(),
            first_certificate(&ca).unwrap()
        );
        let r = random(12).unwrap();
        assert_eq!(r.len(), 12);
        assert!(
            r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
    }
}
