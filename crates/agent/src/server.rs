//! The agent's HTTPS endpoint, the kubelet's port: `GET /containerLogs/{ns}/{pod}/{container}`
//! (what the API server proxies `kubectl logs` to), `GET /logs/...` (the node's `/var/log`),
//! `GET /stats/summary` and `GET /healthz`.
//!
//! Every caller presents a client certificate signed by the cluster CA ([`tls_config`]); only
//! the API server's (`kube-apiserver-kubelet-client`) and administrators' (`system:masters`)
//! are served, others get 403. Logs are read from the CRI log files the
//! containers' monitors write under `<root>/<namespace>_<pod>_<uid>/<container>/<restart>.log`,
//! with the kubelet's query parameters and error texts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::{SignedDuration, Timestamp};
use runtime::logs::ReadOptions;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Whether a container runs now: `(namespace, pod, container)`.
pub(crate) type Running = Arc<dyn Fn(&str, &str, &str) -> bool + Send + Sync>;

/// What the server needs from the agent.
pub(crate) struct Logs {
    /// Where the pods' log directories are, e.g. `/var/log/pods`.
    pub(crate) root: PathBuf,
    /// Whether a container runs now: `(namespace, pod, container)`. A follower ends once its
    /// container has stopped and its file is drained.
    pub(crate) running: Running,
    /// The kubelet's `/stats/summary` document, computed when asked.
    pub(crate) summary: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
    /// The node's own logs, served under `/logs/` (`/var/log`).
    pub(crate) node_logs: PathBuf,
}

/// The TLS configuration of the endpoint: serves the current certificate of `serving`, and
/// requires every client to present a certificate that chains to `ca_pem`.
pub(crate) fn tls_config(
    ca_pem: &str,
    serving: Arc<tls::ServingCertificate>,
) -> crate::Result<Arc<rustls::ServerConfig>> {
    use crate::error::Context;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(ca.context("reading the cluster CA")?)
            .context("adding the cluster CA")?;
    }
    crate::error::ensure!(!roots.is_empty(), "no certificate in the cluster CA PEM");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .context("client certificate verifier")?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(serving);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serves TLS connections on `listener` until the task is dropped. Only the API server (and
/// the cluster's administrators) may use the endpoint; other holders of cluster certificates,
/// such as other nodes, get 403.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tls::serve(listener, acceptor, move |cert, _| {
        let user = cert.map(|c| client_identity(c)).unwrap_or_default();
        if user.0 == API_SERVER_CLIENT || user.1.iter().any(|g| g == "system:masters") {
            app.clone()
        } else {
            tracing::debug!(user = %user.0, "refused a client of the node's endpoint");
            forbidden(user.0)
        }
    })
    .await
}

/// The common name of the API server's client certificate for node agents.
const API_SERVER_CLIENT: &str = "kube-apiserver-kubelet-client";

/// A client certificate's user (CN) and groups (O).
fn client_identity(der: &CertificateDer<'_>) -> (String, Vec<String>) {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Default::default();
    };
    let subject = cert.subject();
    let text = |a: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        a.as_str().map(str::to_string).unwrap_or_default()
    };
    (
        subject
            .iter_common_name()
            .next()
            .map(text)
            .unwrap_or_default(),
        subject.iter_organization().map(text).collect(),
    )
}

/// Every request refused, as the kubelet's authorizer refuses a user it does not allow.
fn forbidden(user: String) -> Router {
    Router::new().fallback(move |req: axum::extract::Request| {
        let user = user.clone();
        async move {
            let path = req.uri().path();
            let sub = match path.split('/').nth(1).unwrap_or_default() {
                "containerLogs" | "logs" => "log",
                "stats" => "stats",
                _ => "proxy",
            };
            text(
                StatusCode::FORBIDDEN,
                format!("Forbidden (user={user}, verb=get, resource=nodes, subresource={sub})"),
            )
        }
    })
}

/// The logs and stats routes.
pub(crate) fn router(logs: Arc<Logs>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/stats/summary",
            get(|State(logs): State<Arc<Logs>>| async move { axum::Json((logs.summary)()) }),
        )
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route(
            "/logs",
            get(|| async { axum::response::Redirect::permanent("/logs/") }),
        )
        .route("/logs/", get(node_log))
        .route("/logs/{*path}", get(node_log))
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") })
        .with_state(logs)
}

/// `GET /logs/<path>`: a file of the node's log directory, or a directory's listing, as the
/// kubelet's file server gives them (`kubectl get --raw /api/v1/nodes/<node>/proxy/logs/`).
async fn node_log(
    State(logs): State<Arc<Logs>>,
    path: Option<UrlPath<String>>,
) -> Result<Response, Failure> {
    let rel = path.map(|UrlPath(p)| p).unwrap_or_default();
    let not_found = || text(StatusCode::NOT_FOUND, "404 page not found\n");
    if rel.split('/').any(|part| part == "..") {
        return Err(not_found());
    }
    let full = logs.node_logs.join(rel.trim_end_matches('/'));
    let meta = tokio::fs::metadata(&full).await.map_err(|_| not_found())?;
    if meta.is_dir() {
        let mut names = Vec::new();
        let mut dir = tokio::fs::read_dir(&full).await.map_err(|_| not_found())?;
        while let Ok(Some(entry)) = dir.next_entry().await {
            let mut name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
                name.push('/');
            }
            names.push(name);
        }
        names.sort();
        let mut page = String::from(
            "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n",
        );
        for n in names {
            let shown = n
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            page.push_str(&format!("<a href=\"{shown}\">{shown}</a>\n"));
        }
        page.push_str("</pre>\n");
        return Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response());
    }
    let file = tokio::fs::File::open(&full)
        .await
        .map_err(|_| not_found())?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}

/// A failed request: a plain-text error, as the kubelet writes them.
#[derive(Debug, PartialEq)]
pub(crate) struct Failure(pub(crate) StatusCode, pub(crate) String);

fn text(code: StatusCode, message: impl Into<String>) -> Failure {
    Failure(code, message.into())
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut resp = (self.0, self.1).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    }
}

/// The query of a `containerLogs` request (the kubelet's view of `PodLogOptions`).
#[derive(Debug, Default, PartialEq)]
struct LogQuery {
    follow: bool,
    previous: bool,
    timestamps: bool,
    tail_lines: Option<i64>,
    since_seconds: Option<i64>,
    since_time: Option<Timestamp>,
    limit_bytes: Option<i64>,
}

/// Percent-decoding of a query component (`+` is a space).
pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads the query like the kubelet: a bad value is 400 `Unable to decode query.`, options
/// that break `PodLogOptions`' validation are 422 `Invalid request.`.
fn parse_query(raw: Option<&str>) -> Result<LogQuery, Failure> {
    let mut values: Vec<(String, String)> = Vec::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = unescape(k);
        // The first value of a repeated parameter counts.
        if !values.iter().any(|(seen, _)| *seen == k) {
            values.push((k, unescape(v)));
        }
    }
    // `tail` is the kubelet's older name for `tailLines`; `all` means no limit.
    if let Some(tail) = values
        .iter()
        .find(|(k, _)| k == "tail")
        .map(|(_, v)| v.clone())
        && !tail.is_empty()
    {
        values.retain(|(k, _)| k != "tailLines");
        if tail != "all" {
            values.push(("tailLines".into(), tail));
        }
    }
    let get = |key: &str| {
        values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let undecodable = || {
        text(
            StatusCode::BAD_REQUEST,
            r#"{"message": "Unable to decode query."}"#,
        )
    };
    // Booleans as upstream's query conversion reads them: present means true, unless false.
    let flag = |key: &str| {
        get(key).is_some_and(|v| {
            !(v == "0"
                || ["f", "false", "n", "no"]
                    .iter()
                    .any(|f| v.eq_ignore_ascii_case(f)))
        })
    };
    let int = |key: &str| -> Result<Option<i64>, Failure> {
        match get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| undecodable()),
        }
    };
    let since_time = match get("sinceTime") {
        None | Some("") | Some("null") => None,
        Some(v) => Some(v.parse::<Timestamp>().map_err(|_| undecodable())?),
    };
    let q = LogQuery {
        follow: flag("follow"),
        previous: flag("previous"),
        timestamps: flag("timestamps"),
        tail_lines: int("tailLines")?,
        since_seconds: int("sinceSeconds")?,
        since_time,
        limit_bytes: int("limitBytes")?,
    };
    let invalid = q.tail_lines.is_some_and(|t| t < 0)
        || q.limit_bytes.is_some_and(|l| l < 1)
        || (q.since_seconds.is_some() && q.since_time.is_some())
        || q.since_seconds.is_some_and(|s| s < 1);
    if invalid {
        return Err(text(
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"message": "Invalid request."}"#,
        ));
    }
    Ok(q)
}

/// Whether `s` can be a namespace, pod or container name (and so is safe in a path).
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// The container's log directory: `<root>/<ns>_<pod>_<uid>/<container>`, the most recently
/// changed one when pods of that name came and went.
fn container_dir(root: &Path, ns: &str, pod: &str, container: &str) -> Option<PathBuf> {
    let prefix = format!("{ns}_{pod}_");
    std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .is_some_and(|uid| !uid.is_empty() && !uid.contains('_'))
        })
        .map(|e| e.path().join(container))
        .filter_map(|dir| {
            let meta = std::fs::metadata(&dir).ok().filter(|m| m.is_dir())?;
            Some((meta.modified().ok(), dir))
        })
        .max()
        .map(|(_, dir)| dir)
}

/// The `<restart>.log` files in a container's directory, by restart number.
fn log_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let n = name.to_str()?.strip_suffix(".log")?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((n.parse().ok()?, e.path()))
        })
        .collect();
    files.sort();
    files
}

/// Which file a request reads: the current container's log, or with `previous` the one
/// before it.
fn choose_file(
    root: &Path,
    ns: &str,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<PathBuf, Failure> {
    let not_found = || {
        text(
            StatusCode::NOT_FOUND,
            format!("no logs of container {container:?} in pod \"{ns}/{pod}\" on this node"),
        )
    };
    if ![ns, pod, container].iter().all(|s| plain_name(s)) {
        return Err(not_found());
    }
    let dir = container_dir(root, ns, pod, container).ok_or_else(not_found)?;
    let mut files = log_files(&dir);
    let (_, current) = files.pop().ok_or_else(not_found)?;
    if !previous {
        return Ok(current);
    }
    match files.pop() {
        Some((_, earlier)) => Ok(earlier),
        None => Err(text(
            StatusCode::BAD_REQUEST,
            format!("previous terminated container {container:?} in pod {pod:?} not found"),
        )),
    }
}

/// `GET /containerLogs/{namespace}/{pod}/{container}`.
async fn container_logs(
    State(logs): State<Arc<Logs>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = match parse_query(raw.as_deref()) {
        Ok(q) => q,
        Err(failure) => return failure.into_response(),
    };
    let path = match choose_file(&logs.root, &ns, &pod, &container, q.previous) {
        Ok(p) => p,
        Err(failure) => return failure.into_response(),
    };
    // As the kubelet: `sinceSeconds` counts back from now; a later `sinceTime` wins.
    let mut since = q
        .since_seconds
        .map(|s| Timestamp::now() - SignedDuration::from_secs(s));
    if let Some(t) = q.since_time
        && since.is_none_or(|s| t > s)
    {
        since = Some(t);
    }
    let opts = ReadOptions {
        follow: q.follow,
        tail_lines: q.tail_lines,
        since,
        timestamps: q.timestamps,
        limit_bytes: q.limit_bytes,
    };
    // A previous container has stopped for good: following it ends at the end of its file.
    let running = (!q.previous).then(|| logs.running.clone());
    let body = runtime::logs::read(path, opts, move || {
        running
            .as_ref()
            .is_some_and(|running| running(&ns, &pod, &container))
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use hyper_util::rt::TokioIo;

    use futures::StreamExt;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };
    use runtime::logs::{Stream, Writer};

    use super::*;

    #[test]
    fn queries_read_like_the_kubelet() {
        let q = parse_query(Some(
            "follow=true&previous=0&timestamps=&tailLines=10&limitBytes=5&sinceTime=2024-01-01T00%3A00%3A00Z",
        ))
        .unwrap();
        assert_eq!(
            q,
            LogQuery {
                follow: true,
                previous: false,
                timestamps: true,
                tail_lines: Some(10),
                since_seconds: None,
                since_time: Some("2024-01-01T00:00:00Z".parse().unwrap()),
                limit_bytes: Some(5),
            }
        );
        assert_eq!(parse_query(None).unwrap(), LogQuery::default());
        assert_eq!(
            parse_query(Some("follow=False&tail=3")).unwrap(),
            LogQuery {
                tail_lines: Some(3),
                ..Default::default()
            }
        );
        assert_eq!(
            parse_query(Some("tail=all&tailLines=3"))
                .unwrap()
                .tail_lines,
            None
        );
        let code = |q: &str| parse_query(Some(q)).unwrap_err().0;
        assert_eq!(code("tailLines=x"), StatusCode::BAD_REQUEST);
        assert_eq!(code("sinceTime=yesterday"), StatusCode::BAD_REQUEST);
        assert_eq!(code("tailLines=-1"), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(code("limitBytes=0"), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(code("sinceSeconds=0"), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            code("sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z"),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(unescape("a%2Fb+c%zz%"), "a/b c%zz%");
    }

    async fn body_text(resp: Response) -> String {
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn log_file(root: &Path, pod_dir: &str, container: &str, n: u32, lines: &[&str]) {
        let path = root.join(pod_dir).join(container).join(format!("{n}.log"));
        let mut w = Writer::create(&path, 0, 0).unwrap();
        for l in lines {
            w.write(Stream::Stdout, format!("{l}\n").as_bytes())
                .unwrap();
        }
    }

    #[tokio::test]
    async fn current_and_previous_files() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        log_file(root, "ns_web_uid1", "app", 0, &["first run"]);
        log_file(root, "ns_web_uid1", "app", 1, &["second run"]);
        log_file(root, "ns_web_uid1", "app", 10, &["eleventh run"]);
        log_file(root, "ns_web-2_uid9", "app", 0, &["another pod"]);
        let chosen = |pod: &str, c: &str, previous| choose_file(root, "ns", pod, c, previous);
        assert!(
            chosen("web", "app", false)
                .unwrap()
                .ends_with("ns_web_uid1/app/10.log")
        );
        assert!(
            chosen("web", "app", true)
                .unwrap()
                .ends_with("ns_web_uid1/app/1.log")
        );
        assert!(chosen("web-2", "app", false).unwrap().ends_with("0.log"));
        assert_eq!(
            chosen("web-2", "app", true).unwrap_err(),
            text(
                StatusCode::BAD_REQUEST,
                r#"previous terminated container "app" in pod "web-2" not found"#
            )
        );
        assert_eq!(
            chosen("web", "db", false).unwrap_err(),
            text(
                StatusCode::NOT_FOUND,
                r#"no logs of container "db" in pod "ns/web" on this node"#
            )
        );
        assert_eq!(
            chosen("we", "app", false).unwrap_err().0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            chosen("..", "app", false).unwrap_err().0,
            StatusCode::NOT_FOUND
        );
        // The same pod name again, under a new uid: the newer directory is read.
        std::thread::sleep(Duration::from_millis(20));
        log_file(root, "ns_web_uid2", "app", 0, &["new pod"]);
        assert!(
            chosen("web", "app", false)
                .unwrap()
                .ends_with("ns_web_uid2/app/0.log")
        );
    }

    struct Pki {
        ca: String,
        server: (String, String),
        client: (String, String),
        /// Another node's client certificate, from the same CA.
        other_node: (String, String),
    }

    fn pki() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name.push(DnType::CommonName, "test-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key).unwrap();
        let leaf = |cn: &str, usage| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::default();
            p.distinguished_name = DistinguishedName::new();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
            p.extended_key_usages = vec![usage];
            let cert = p.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        Pki {
            server: leaf("node", ExtendedKeyUsagePurpose::ServerAuth),
            client: leaf(
                "kube-apiserver-kubelet-client",
                ExtendedKeyUsagePurpose::ClientAuth,
            ),
            other_node: leaf("system:node:other", ExtendedKeyUsagePurpose::ClientAuth),
            ca: ca_pem,
        }
    }

    fn client_config(pki: &Pki, with_cert: bool) -> Arc<rustls::ClientConfig> {
        client_config_as(pki, with_cert.then_some(&pki.client))
    }

    fn client_config_as(pki: &Pki, cert: Option<&(String, String)>) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap())
            .unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        Arc::new(if let Some((cert, key)) = cert {
            let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        } else {
            builder.with_no_client_auth()
        })
    }

    async fn get(
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
        path: &str,
    ) -> crate::Result<hyper::Response<hyper::body::Incoming>> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header(header::HOST, addr.to_string())
            .body(Body::empty())?;
        Ok(send.send_request(req).await?)
    }

    async fn text_of(resp: hyper::Response<hyper::body::Incoming>) -> (StatusCode, String) {
        let status = resp.status();
        (status, body_text(resp.map(Body::new)).await)
    }

    #[tokio::test]
    async fn serves_logs_over_tls_to_clients_of_the_cluster_ca() {
        let pki = pki();
        let root = tempfile::tempdir().unwrap();
        log_file(
            root.path(),
            "default_web_u1",
            "app",
            0,
            &["one", "two", "three"],
        );
        let running = Arc::new(AtomicBool::new(true));
        let alive = running.clone();
        let logs = Logs {
            summary: Arc::new(|| serde_json::json!({})),
            root: root.path().to_path_buf(),
            running: Arc::new(move |ns, pod, c| {
                (ns, pod, c) == ("default", "web", "app") && alive.load(Ordering::SeqCst)
            }),
            node_logs: root.path().to_path_buf(),
        };
        let serving = tls::ServingCertificate::new(&pki.server.0, &pki.server.1).unwrap();
        let tls = tls_config(&pki.ca, serving).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, tls, router(Arc::new(logs))));
        let client = client_config(&pki, true);

        let (code, body) = text_of(get(addr, client.clone(), "/healthz").await.unwrap()).await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, "ok"));
        let resp = get(
            addr,
            client.clone(),
            "/containerLogs/default/web/app?tailLines=2",
        )
        .await
        .unwrap();
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/plain");
        assert_eq!(text_of(resp).await, (StatusCode::OK, "two\nthree\n".into()));
        let (code, body) = text_of(
            get(
                addr,
                client.clone(),
                "/containerLogs/default/web/app?previous=true",
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            r#"previous terminated container "app" in pod "web" not found"#
        );
        let (code, _) = text_of(
            get(addr, client.clone(), "/containerLogs/default/web/db")
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        let (code, _) = text_of(get(addr, client.clone(), "/pods").await.unwrap()).await;
        assert_eq!(code, StatusCode::NOT_FOUND);

        // Another holder of a cluster certificate, such as another node, is refused.
        let (code, body) = text_of(
            get(
                addr,
                client_config_as(&pki, Some(&pki.other_node)),
                "/healthz",
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(code, StatusCode::FORBIDDEN);
        assert_eq!(
            body,
            "Forbidden (user=system:node:other, verb=get, resource=nodes, subresource=proxy)"
        );

        // The node's log directory: listings and files, nothing above it.
        let (code, listing) = text_of(get(addr, client.clone(), "/logs/").await.unwrap()).await;
        assert_eq!(code, StatusCode::OK);
        assert!(
            listing.contains("<a href=\"default_web_u1/\">default_web_u1/</a>"),
            "{listing}"
        );
        let (code, file) = text_of(
            get(addr, client.clone(), "/logs/default_web_u1/app/0.log")
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        assert!(file.contains("stdout F one"), "{file}");
        let (code, _) = text_of(
            get(addr, client.clone(), "/logs/../etc/passwd")
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(code, StatusCode::NOT_FOUND);

        // Following streams what is written, and ends when the container stops.
        let resp = get(
            addr,
            client.clone(),
            "/containerLogs/default/web/app?follow=true&tailLines=1",
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = Body::new(resp.into_body()).into_data_stream();
        let mut seen = String::new();
        let wait = Duration::from_secs(10);
        while !seen.contains("three\n") {
            let chunk = tokio::time::timeout(wait, body.next())
                .await
                .unwrap()
                .unwrap();
            seen.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
        let path = root.path().join("default_web_u1/app/0.log");
        let mut w = Writer::create(&path, 0, 0).unwrap();
        w.write(Stream::Stderr, b"four\n").unwrap();
        while !seen.contains("four\n") {
            let chunk = tokio::time::timeout(wait, body.next())
                .await
                .unwrap()
                .unwrap();
            seen.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
        w.write(Stream::Stdout, b"five\n").unwrap();
        running.store(false, Ordering::SeqCst);
        while let Some(chunk) = tokio::time::timeout(wait, body.next()).await.unwrap() {
            seen.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
        assert_eq!(seen, "three\nfour\nfive\n");

        // No client certificate, no connection.
        assert!(
            get(addr, client_config(&pki, false), "/healthz")
                .await
                .is_err()
        );
        server.abort();
    }
}
