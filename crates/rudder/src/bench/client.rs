//! A small HTTPS/2 client for the benchmarks: connects with the admin kubeconfig's
//! certificates, multiplexes requests on one connection, and streams watch responses.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// What a kubeconfig written by `rudder server` holds.
pub(crate) struct Credentials {
    server: String,
    tls: Arc<rustls::ClientConfig>,
}

fn field(config: &str, key: &str) -> Result<String> {
    config
        .lines()
        .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()))
        .with_context(|| format!("kubeconfig has no {key}"))
}

impl Credentials {
    /// Reads the admin kubeconfig of a Rudder server.
    pub(crate) fn load(path: &Path) -> Result<Credentials> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let b64 = |key| -> Result<Vec<u8>> {
            Ok(base64::engine::general_purpose::STANDARD.decode(field(&text, key)?)?)
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(&b64(
            "certificate-authority-data:",
        )?)?)?;
        let chain = CertificateDer::pem_slice_iter(&b64("client-certificate-data:")?)
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(&b64("client-key-data:")?)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        tls.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Credentials {
            server: field(&text, "server:")?,
            tls: Arc::new(tls),
        })
    }

    /// Opens one HTTP/2 connection.
    pub(crate) async fn connect(&self) -> Result<Client> {
        let hostport = self
            .server
            .strip_prefix("https://")
            .context("the server URL is not https")?;
        let tcp = tokio::net::TcpStream::connect(hostport)
            .await
            .with_context(|| format!("connecting to {hostport}"))?;
        tcp.set_nodelay(true)?;
        let host = hostport
            .rsplit_once(':')
            .map_or(hostport, |(h, _)| h)
            .to_string();
        let name = ServerName::try_from(host)?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await?;
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(Client { sender })
    }
}

/// One HTTP/2 connection to the API server; cheap to clone (requests multiplex).
#[derive(Clone)]
pub(crate) struct Client {
    sender: SendRequest<Full<Bytes>>,
}

impl Client {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        accept: &str,
    ) -> Result<hyper::Response<Incoming>> {
        let mut sender = self.sender.clone();
        sender.ready().await?;
        let content_type = if method == Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type)
            .header("accept", accept)
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        Ok(sender.send_request(req).await?)
    }

    /// A request whose whole answer is read; non-2xx answers are errors.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes> {
        self.call_as(method, path, body, "application/json").await
    }

    /// As [`Client::call`], asking for the answer as `accept` says (a Table, say).
    pub(crate) async fn call_as(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        accept: &str,
    ) -> Result<Bytes> {
        let resp = self.send(method, path, body, accept).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("{status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(bytes)
    }

    /// A streaming GET (a watch); returns the body to read events from.
    pub(crate) async fn stream(&self, path: &str) -> Result<Incoming> {
        let resp = self
            .send(Method::GET, path, None, "application/json")
            .await?;
        if resp.status() != StatusCode::OK {
            bail!("watch answered {}", resp.status());
        }
        Ok(resp.into_body())
    }
}
