//! The `pods/log` subresource (`kubectl logs`): the API server checks the request, finds the
//! node running the pod, and streams the node agent's `/containerLogs/...` answer back, as
//! upstream's `LogREST` and `LogLocation` do.
//!
//! The API server's own checks, in upstream's words: the options (`PodLogOptions` validation),
//! the pod, its container (named, or the only one), its node and the node's address. A pod not
//! yet on a node has no logs: the answer is empty (204), as upstream's. What only the agent
//! knows (a container still waiting, no previous container) comes back as the agent words it,
//! wrapped in a `Status` the way upstream's `GenericHttpResponseChecker` wraps a kubelet's
//! error.
//!
//! The API server calls agents over HTTPS with its `kube-apiserver-kubelet-client` certificate
//! and trusts agent serving certificates signed by the cluster CA (or none, with
//! `insecureSkipTLSVerifyBackend=true`).

use std::sync::Arc;
use std::time::Duration;

use api::request::Query;
use api::validation::FieldError;
use api::{Resource, Status};
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};

use crate::registry::Registry;

/// The kubelet's port, for a node that reports none.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

/// Which node address the API server dials, in order of preference (k3s' and kubeadm's
/// `--kubelet-preferred-address-types`).
pub const PREFERRED_ADDRESS_TYPES: &[&str] = &["InternalIP", "ExternalIP", "Hostname"];

/// How much of an agent's error answer is read (upstream's `maxReadLength`).
pub(crate) const MAX_ERROR_BODY: usize = 50_000;

/// How long connecting to an agent and getting its answer's head may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The kind `PodLogOptions` validation errors are reported against.
fn pod_log_options() -> Resource {
    Resource {
        kind: "PodLogOptions".into(),
        version: "v1".into(),
        ..Resource::default()
    }
}

/// How the API server connects to node agents: TLS with its kubelet-client certificate,
/// verifying the agent's serving certificate against the cluster CA, or not at all.
#[derive(Clone)]
pub struct KubeletClient {
    pub(crate) verified: Arc<rustls::ClientConfig>,
    pub(crate) unverified: Arc<rustls::ClientConfig>,
    /// No client certificate and no verification: for HTTPS to pods (`pods/https:p:443/proxy`).
    pub(crate) anonymous: Arc<rustls::ClientConfig>,
}

impl KubeletClient {
    /// A client that presents `cert_pem`/`key_pem` and trusts servers signed by `ca_pem`.
    pub fn new(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<KubeletClient, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = tls::roots(ca_pem.as_bytes()).map_err(|e| format!("cluster CA: {e}"))?;
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("kubelet client certificate: {e}"))?;
        let key = || {
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|e| format!("kubelet client key: {e}"))
        };
        let builder = || {
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS versions: {e}"))
        };
        let mut verified = builder()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain.clone(), key()?)
            .map_err(|e| format!("kubelet client certificate: {e}"))?;
        let mut unverified = builder()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(tls::AnyServerCertificate::new(
                provider.clone(),
            )))
            .with_client_auth_cert(chain, key()?)
            .map_err(|e| format!("kubelet client certificate: {e}"))?;
        let mut anonymous = builder()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(tls::AnyServerCertificate::new(
                provider.clone(),
            )))
            .with_no_client_auth();
        // One HTTP/1.1 request per connection.
        for c in [&mut verified, &mut unverified, &mut anonymous] {
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
        }
        Ok(KubeletClient {
            verified: Arc::new(verified),
            unverified: Arc::new(unverified),
            anonymous: Arc::new(anonymous),
        })
    }
}

/// A `pods/log` request's options (upstream's `PodLogOptions`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    /// `container`.
    pub container: Option<String>,
    /// `follow`.
    pub follow: bool,
    /// `previous`.
    pub previous: bool,
    /// `timestamps`.
    pub timestamps: bool,
    /// `tailLines`.
    pub tail_lines: Option<i64>,
    /// `sinceSeconds`.
    pub since_seconds: Option<i64>,
    /// `sinceTime`.
    pub since_time: Option<jiff::Timestamp>,
    /// `limitBytes`.
    pub limit_bytes: Option<i64>,
    /// `insecureSkipTLSVerifyBackend`.
    pub insecure_skip_tls_verify_backend: bool,
}

/// A query boolean as upstream's conversion reads it: present is true, unless it says false.
fn go_bool(v: Option<&str>) -> bool {
    v.is_some_and(|v| {
        !(v == "0"
            || ["f", "false", "n", "no"]
                .iter()
                .any(|f| v.eq_ignore_ascii_case(f)))
    })
}

/// A query integer, with Go's `strconv.ParseInt` error text.
fn go_int(v: Option<&str>) -> Result<Option<i64>, Status> {
    match v {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|e| {
            let why = match e.kind() {
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                    "value out of range"
                }
                _ => "invalid syntax",
            };
            Status::bad_request(format!("strconv.ParseInt: parsing {v:?}: {why}"))
        }),
    }
}

impl LogOptions {
    /// Reads and validates the options of a log request for pod `name`.
    pub fn parse(name: &str, query: &Query) -> Result<LogOptions, Status> {
        let since_time = match query.get("sinceTime") {
            None | Some("" | "null") => None,
            Some(v) => Some(v.parse::<jiff::Timestamp>().map_err(|e| {
                Status::bad_request(format!(
                    "parsing time {v:?} as \"2006-01-02T15:04:05Z07:00\": {e}"
                ))
            })?),
        };
        let opts = LogOptions {
            container: query
                .get("container")
                .filter(|c| !c.is_empty())
                .map(str::to_string),
            follow: go_bool(query.get("follow")),
            previous: go_bool(query.get("previous")),
            timestamps: go_bool(query.get("timestamps")),
            tail_lines: go_int(query.get("tailLines"))?,
            since_seconds: go_int(query.get("sinceSeconds"))?,
            since_time,
            limit_bytes: go_int(query.get("limitBytes"))?,
            insecure_skip_tls_verify_backend: go_bool(query.get("insecureSkipTLSVerifyBackend")),
        };
        let mut errors = Vec::new();
        if let Some(t) = opts.tail_lines.filter(|t| *t < 0) {
            errors.push(FieldError::invalid(
                "tailLines",
                &json!(t),
                "must be greater than or equal to 0",
            ));
        }
        if let Some(l) = opts.limit_bytes.filter(|l| *l < 1) {
            errors.push(FieldError::invalid(
                "limitBytes",
                &json!(l),
                "must be greater than 0",
            ));
        }
        match (opts.since_seconds, opts.since_time) {
            (Some(_), Some(_)) => errors.push(FieldError::forbidden(
                "",
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            )),
            (Some(s), None) if s < 1 => errors.push(FieldError::invalid(
                "sinceSeconds",
                &json!(s),
                "must be greater than 0",
            )),
            _ => {}
        }
        if !errors.is_empty() {
            return Err(Status::invalid(&pod_log_options(), name, &errors));
        }
        Ok(opts)
    }

    /// The query sent to the agent (what upstream's `LogLocation` passes on).
    fn agent_query(&self) -> String {
        let mut params: Vec<String> = Vec::new();
        for (key, on) in [
            ("follow", self.follow),
            ("previous", self.previous),
            ("timestamps", self.timestamps),
        ] {
            if on {
                params.push(format!("{key}=true"));
            }
        }
        for (key, value) in [
            ("sinceSeconds", self.since_seconds),
            ("tailLines", self.tail_lines),
            ("limitBytes", self.limit_bytes),
        ] {
            if let Some(v) = value {
                params.push(format!("{key}={v}"));
            }
        }
        if let Some(t) = self.since_time {
            // Whole seconds, as upstream formats it (RFC 3339); `:` escaped.
            params.push(format!(
                "sinceTime={}",
                format!("{t:.0}").replace(':', "%3A")
            ));
        }
        params.sort();
        params.join("&")
    }
}

fn names(pod: &Value, list: &str) -> Vec<String> {
    pod["spec"][list]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// The container a log request is for, as upstream's `validateContainer`: the one asked for,
/// which must be one of the pod's (init, regular or ephemeral); without one, the pod's only
/// regular container.
pub fn container(pod: &Value, asked: Option<&str>) -> Result<String, Status> {
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    let regular = names(pod, "containers");
    let mut all = names(pod, "initContainers");
    all.extend(regular.iter().cloned());
    all.extend(names(pod, "ephemeralContainers"));
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if all.iter().any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(Status::bad_request(format!(
            "container {c} is not valid for pod {pod_name}"
        ))),
        None => match regular.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(Status::bad_request(format!(
                "a container name must be specified for pod {pod_name}"
            ))),
            _ => Err(Status::bad_request(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                all.join(" ")
            ))),
        },
    }
}

/// The address and port the API server reaches a node's agent at: the first address of the
/// preferred types, and the port the node reports (the kubelet's default otherwise).
pub fn node_address(node: &Value) -> Result<(String, u16), Status> {
    let addresses: Vec<(&str, &str)> = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| Some((a["type"].as_str()?, a["address"].as_str()?)))
        .collect();
    let host = PREFERRED_ADDRESS_TYPES
        .iter()
        .find_map(|t| addresses.iter().find(|(at, _)| at == t))
        .map(|(_, a)| a.to_string())
        .ok_or_else(|| {
            let known: Vec<String> = addresses
                .iter()
                .map(|(t, a)| format!("{{{t} {a}}}"))
                .collect();
            // Not a Status upstream: it surfaces as a 500 without a reason.
            Status::new(
                500,
                "",
                format!(
                    "no preferred addresses found; known addresses: [{}]",
                    known.join(" ")
                ),
            )
        })?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_i64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok((host, port))
}

/// An agent's error answer as a `Status`, as upstream's `GenericHttpResponseChecker` makes it.
pub fn agent_error(code: u16, body: &str, pod: &str) -> Status {
    match code {
        500 => Status {
            details: Some(json!({"causes": [{"message": body}]})),
            ..Status::internal(body)
        },
        400 => Status::bad_request(body),
        _ => {
            let (reason, message) = match code {
                409 => ("Conflict", "the server reported a conflict".to_string()),
                404 => (
                    "NotFound",
                    "the server could not find the requested resource".to_string(),
                ),
                401 => (
                    "Unauthorized",
                    "the server has asked for the client to provide credentials".to_string(),
                ),
                403 => ("Forbidden", body.to_string()),
                405 => (
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource".to_string(),
                ),
                406 if !body.is_empty() && body != "unknown" => ("NotAcceptable", body.to_string()),
                406 => (
                    "NotAcceptable",
                    "the server was unable to respond with a content type that the client supports"
                        .to_string(),
                ),
                415 => ("UnsupportedMediaType", body.to_string()),
                422 => (
                    "Invalid",
                    "the server rejected our request due to an error in our request".to_string(),
                ),
                429 => (
                    "TooManyRequests",
                    "the server has received too many requests and has asked us to try again later"
                        .to_string(),
                ),
                503 => (
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request".to_string(),
                ),
                504 => (
                    "Timeout",
                    "the server was unable to return a response in the time allotted, but may still be processing the request"
                        .to_string(),
                ),
                c if c >= 500 => (
                    "InternalError",
                    format!(
                        "an error on the server ({body:?}) has prevented the request from succeeding"
                    ),
                ),
                c => (
                    "",
                    format!(
                        "the server responded with the status code {c} but did not return more information"
                    ),
                ),
            };
            Status {
                details: Some(json!({"group": "", "kind": "pods/log", "name": pod})),
                // Upstream leaves the verb empty here, hence the space after the parenthesis.
                ..Status::new(code, reason, format!("{message} ( pods/log {pod})"))
            }
        }
    }
}

/// An HTTP/1.1 connection to `host:port` (one that may switch protocols), over TLS when
/// `tls` is given (always, to node agents; pods may be plain), driven in the background
/// until the answer is done with.
pub(crate) async fn connect(
    tls: Option<Arc<rustls::ClientConfig>>,
    host: &str,
    port: u16,
) -> Result<hyper::client::conn::http1::SendRequest<Body>, String> {
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("dial tcp {}: {e}", authority(host, port)))?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return handshake(tcp).await;
    };
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    handshake(stream).await
}

async fn handshake<IO>(io: IO) -> Result<hyper::client::conn::http1::SendRequest<Body>, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "a proxied connection ended with an error");
        }
    });
    Ok(send)
}

/// Sends `GET path` to `host:port` over TLS; returns the answer once its head arrived.
async fn get(
    tls: Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
    path: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let mut send = connect(Some(tls), host, port).await?;
    let req = hyper::Request::get(path)
        .header(header::HOST, authority(host, port))
        .header(header::USER_AGENT, "rudder-apiserver")
        .body(Body::empty())
        .map_err(|e| e.to_string())?;
    send.send_request(req).await.map_err(|e| e.to_string())
}

pub(crate) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Fetches `path` from the agent at `host:port` and answers with its body, streamed as it
/// comes (a followed log ends only when the agent ends it or the client goes away), or with
/// the `Status` its error makes.
pub async fn proxy(
    client: &KubeletClient,
    insecure: bool,
    host: &str,
    port: u16,
    path: &str,
    pod: &str,
) -> Result<Response, Status> {
    let tls = if insecure {
        client.unverified.clone()
    } else {
        client.verified.clone()
    };
    let url = format!("https://{}{path}", authority(host, port));
    let failed = |e: String| Status::new(500, "", format!("Get {url:?}: {e}"));
    let resp = tokio::time::timeout(CONNECT_TIMEOUT, get(tls, host, port, path))
        .await
        .map_err(|_| failed("timeout awaiting response headers".into()))?
        .map_err(failed)?;
    let code = resp.status().as_u16();
    if !(200..=206).contains(&code) {
        let limited = http_body_util::Limited::new(resp.into_body(), MAX_ERROR_BODY);
        let body = match tokio::time::timeout(CONNECT_TIMEOUT, limited.collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Bytes::new(),
            Ok(Err(e)) => return Err(Status::internal(e)),
            Err(_) => return Err(Status::internal("timeout reading the node agent's answer")),
        };
        return Err(agent_error(code, &String::from_utf8_lossy(&body), pod));
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("text/plain"));
    let mut out = Response::new(Body::new(resp.into_body()));
    out.headers_mut().insert(header::CONTENT_TYPE, content_type);
    Ok(out)
}

/// `GET /api/v1/nodes/{name}/proxy/{path}`: the node agent's answer for `path` (e.g.
/// `stats/summary`, `healthz`), as upstream's node proxy gives it.
pub async fn node_proxy(
    reg: &Registry,
    client: &KubeletClient,
    name: &str,
    uri: &axum::http::Uri,
) -> Result<Response, Status> {
    let node = reg.get(resource("nodes"), None, name).await?;
    let (host, port) = node_address(&node)?;
    let path = proxied_path(uri, &format!("/nodes/{name}/proxy"));
    proxy(client, false, &host, port, &path, name).await
}

/// What follows `marker` (`/nodes/n1/proxy`) in a proxy subresource's URL, `/` when nothing
/// does, with the query: the path to ask the target for.
pub(crate) fn proxied_path(uri: &axum::http::Uri, marker: &str) -> String {
    let rest = uri
        .path()
        .split_once(marker)
        .map(|(_, rest)| rest)
        .unwrap_or("");
    let mut path = if rest.is_empty() { "/" } else { rest }.to_string();
    if let Some(q) = uri.query().filter(|q| !q.is_empty()) {
        path.push('?');
        path.push_str(q);
    }
    path
}

pub(crate) fn resource(plural: &str) -> &'static Resource {
    api::resources::find("", "v1", plural).expect("served resource")
}

/// `GET /api/v1/namespaces/{ns}/pods/{name}/log`.
pub async fn logs(
    reg: &Registry,
    client: &KubeletClient,
    ns: &str,
    name: &str,
    query: &Query,
) -> Result<Response, Status> {
    let opts = LogOptions::parse(name, query)?;
    let pod = reg.get(resource("pods"), Some(ns), name).await?;
    let container = container(&pod, opts.container.as_deref())?;
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if node_name.is_empty() {
        // Not on a node yet: no logs, and no error (upstream's empty location).
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        return Ok(resp);
    }
    let node = reg.get(resource("nodes"), None, node_name).await?;
    let (host, port) = node_address(&node)?;
    let mut path = format!("/containerLogs/{ns}/{name}/{container}");
    let q = opts.agent_query();
    if !q.is_empty() {
        path.push('?');
        path.push_str(&q);
    }
    proxy(
        client,
        opts.insecure_skip_tls_verify_backend,
        &host,
        port,
        &path,
        name,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(init: &[&str], regular: &[&str], ephemeral: &[&str]) -> Value {
        let list = |names: &[&str]| -> Value {
            names
                .iter()
                .map(|n| json!({"name": n, "image": "busybox"}))
                .collect()
        };
        json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "initContainers": list(init),
                "containers": list(regular),
                "ephemeralContainers": list(ephemeral),
            },
        })
    }

    #[test]
    fn the_container_is_the_named_one_or_the_only_one() {
        let one = pod(&["setup"], &["app"], &[]);
        assert_eq!(container(&one, None).unwrap(), "app");
        assert_eq!(container(&one, Some("")).unwrap(), "app");
        assert_eq!(container(&one, Some("setup")).unwrap(), "setup");
        let e = container(&one, Some("db")).unwrap_err();
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert_eq!(e.message, "container db is not valid for pod web");

        let many = pod(&["setup", "migrate"], &["app", "sidecar"], &["debugger"]);
        assert_eq!(container(&many, Some("debugger")).unwrap(), "debugger");
        assert_eq!(container(&many, Some("sidecar")).unwrap(), "sidecar");
        let e = container(&many, None).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "a container name must be specified for pod web, choose one of: [setup migrate app sidecar debugger]"
        );
        let two = pod(&[], &["app", "sidecar"], &[]);
        assert_eq!(
            container(&two, None).unwrap_err().message,
            "a container name must be specified for pod web, choose one of: [app sidecar]"
        );
        let none = json!({"metadata": {"name": "web"}, "spec": {}});
        assert_eq!(
            container(&none, None).unwrap_err().message,
            "a container name must be specified for pod web"
        );
    }

    #[test]
    fn options_are_read_and_validated_like_pod_log_options() {
        let q = Query::parse(Some(
            "container=app&follow=true&previous=1&timestamps=true&tailLines=20&limitBytes=100&sinceTime=2024-05-06T07%3A08%3A09.5Z&insecureSkipTLSVerifyBackend=true",
        ));
        let opts = LogOptions::parse("web", &q).unwrap();
        assert_eq!(
            opts,
            LogOptions {
                container: Some("app".into()),
                follow: true,
                previous: true,
                timestamps: true,
                tail_lines: Some(20),
                since_seconds: None,
                since_time: Some("2024-05-06T07:08:09.5Z".parse().unwrap()),
                limit_bytes: Some(100),
                insecure_skip_tls_verify_backend: true,
            }
        );
        // What goes to the agent: sorted, the time in whole seconds, no TLS option.
        assert_eq!(
            opts.agent_query(),
            "follow=true&limitBytes=100&previous=true&sinceTime=2024-05-06T07%3A08%3A09Z&tailLines=20&timestamps=true"
        );
        let plain =
            LogOptions::parse("web", &Query::parse(Some("follow=false&sinceSeconds=10"))).unwrap();
        assert!(!plain.follow);
        assert_eq!(plain.agent_query(), "sinceSeconds=10");
        assert_eq!(
            LogOptions::parse("web", &Query::default()).unwrap(),
            LogOptions::default()
        );

        let invalid = |q: &str| LogOptions::parse("web", &Query::parse(Some(q))).unwrap_err();
        let e = invalid("tailLines=-1");
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert_eq!(
            e.message,
            "The PodLogOptions \"web\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(e.details.as_ref().unwrap()["kind"], "PodLogOptions");
        assert_eq!(
            invalid("limitBytes=0").message,
            "The PodLogOptions \"web\" is invalid: limitBytes: Invalid value: 0: must be greater than 0"
        );
        assert_eq!(
            invalid("sinceSeconds=0").message,
            "The PodLogOptions \"web\" is invalid: sinceSeconds: Invalid value: 0: must be greater than 0"
        );
        assert_eq!(
            invalid("sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z").message,
            "The PodLogOptions \"web\" is invalid: : Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
        );
        let e = invalid("tailLines=ten");
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert_eq!(
            e.message,
            "strconv.ParseInt: parsing \"ten\": invalid syntax"
        );
        assert_eq!(
            invalid("limitBytes=99999999999999999999").message,
            "strconv.ParseInt: parsing \"99999999999999999999\": value out of range"
        );
        assert_eq!(invalid("sinceTime=yesterday").code, 400);
    }

    #[test]
    fn node_addresses_in_order_of_preference() {
        let node = |addresses: Value, port: Value| json!({"status": {"addresses": addresses, "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
        let n = node(
            json!([{"type": "Hostname", "address": "node-1"}, {"type": "InternalIP", "address": "10.0.0.5"}]),
            json!(10251),
        );
        assert_eq!(node_address(&n).unwrap(), ("10.0.0.5".to_string(), 10251));
        let n = node(
            json!([{"type": "Hostname", "address": "node-1"}, {"type": "ExternalIP", "address": "1.2.3.4"}]),
            json!(0),
        );
        assert_eq!(node_address(&n).unwrap(), ("1.2.3.4".to_string(), 10250));
        let n = node(
            json!([{"type": "Hostname", "address": "node-1"}]),
            Value::Null,
        );
        assert_eq!(node_address(&n).unwrap(), ("node-1".to_string(), 10250));
        let e = node_address(&node(
            json!([{"type": "InternalDNS", "address": "node-1.local"}]),
            json!(10250),
        ))
        .unwrap_err();
        assert_eq!((e.code, e.reason), (500, ""));
        assert_eq!(
            e.message,
            "no preferred addresses found; known addresses: [{InternalDNS node-1.local}]"
        );
    }

    #[test]
    fn agent_errors_become_statuses_like_upstream() {
        let e = agent_error(
            400,
            "container \"app\" in pod \"web\" is waiting to start: ContainerCreating",
            "web",
        );
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert_eq!(
            e.message,
            "container \"app\" in pod \"web\" is waiting to start: ContainerCreating"
        );
        let e = agent_error(404, "pod \"web\" does not exist", "web");
        assert_eq!((e.code, e.reason), (404, "NotFound"));
        assert_eq!(
            e.message,
            "the server could not find the requested resource ( pods/log web)"
        );
        let e = agent_error(500, "boom", "web");
        assert_eq!((e.code, e.reason), (500, "InternalError"));
        assert_eq!(e.message, "Internal error occurred: boom");
        let e = agent_error(403, "Forbidden (user=x, verb=get)", "web");
        assert_eq!(e.message, "Forbidden (user=x, verb=get) ( pods/log web)");
        let e = agent_error(502, "bad gateway", "web");
        assert_eq!(
            e.message,
            "an error on the server (\"bad gateway\") has prevented the request from succeeding ( pods/log web)"
        );
        assert_eq!(agent_error(418, "", "web").reason, "");
    }

    /// A stand-in agent: TLS with a serving certificate from the cluster CA, client
    /// certificates required.
    mod agent {
        use std::net::SocketAddr;

        use axum::Router;
        use axum::extract::RawQuery;
        use axum::routing::get;
        use futures::StreamExt;
        use hyper_util::rt::TokioExecutor;
        use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};

        use super::*;

        /// Issues an agent serving certificate for 127.0.0.1 from the CA in `tls_dir`.
        pub(super) fn serving_cert(tls_dir: &std::path::Path) -> (String, String) {
            let ca = std::fs::read_to_string(tls_dir.join("ca.crt")).unwrap();
            let ca_key =
                KeyPair::from_pem(&std::fs::read_to_string(tls_dir.join("ca.key")).unwrap())
                    .unwrap();
            let issuer = Issuer::from_ca_cert_pem(&ca, &ca_key).unwrap();
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::default();
            p.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let cert = p.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        }

        /// Serves: `/containerLogs/default/web/app` echoes its query then streams three
        /// lines a moment apart; `/containerLogs/default/web/waiting` fails like a kubelet.
        pub(super) async fn start(ca: &str, cert: &str, key: &str) -> SocketAddr {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
                .unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .unwrap();
            let tls = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(
                    vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
            let app = Router::new()
                .route(
                    "/containerLogs/default/web/app",
                    get(|RawQuery(q): RawQuery| async move {
                        let lines = futures::stream::iter(0..3).then(|i| async move {
                            if i > 0 {
                                tokio::time::sleep(Duration::from_millis(300)).await;
                            }
                            Ok::<_, std::convert::Infallible>(Bytes::from(format!("line {i}\n")))
                        });
                        let head = futures::stream::once(async move {
                            Ok(Bytes::from(format!("query: {}\n", q.unwrap_or_default())))
                        });
                        Body::from_stream(head.chain(lines))
                    }),
                )
                .route(
                    "/containerLogs/default/web/waiting",
                    get(|| async {
                        (
                            StatusCode::BAD_REQUEST,
                            "container \"waiting\" in pod \"web\" is waiting to start: ContainerCreating",
                        )
                    }),
                );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (acceptor, app) = (acceptor.clone(), app.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = hyper_util::service::TowerToHyperService::new(app);
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            });
            addr
        }
    }

    /// The admin as a client of the API server at `port`: the same TLS plumbing as towards
    /// agents, another certificate.
    struct Admin {
        tls: Arc<rustls::ClientConfig>,
        port: u16,
    }

    impl Admin {
        /// Sends one request on a new connection.
        async fn request(
            &self,
            method: &'static str,
            path: String,
            body: Option<Value>,
        ) -> hyper::Response<hyper::body::Incoming> {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .unwrap();
            let stream = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
                .await
                .unwrap();
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let body = body.map(|b| b.to_string()).unwrap_or_default();
            let req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header(header::HOST, "127.0.0.1")
                .header(
                    header::CONTENT_TYPE,
                    if method == "PATCH" {
                        "application/merge-patch+json"
                    } else {
                        "application/json"
                    },
                )
                .body(http_body_util::Full::new(Bytes::from(body)))
                .unwrap();
            send.send_request(req).await.unwrap()
        }

        /// A GET of `/api/v1/namespaces/default/pods/<path>`.
        async fn log(&self, path: &str) -> hyper::Response<hyper::body::Incoming> {
            self.request(
                "GET",
                format!("/api/v1/namespaces/default/pods/{path}"),
                None,
            )
            .await
        }
    }

    /// A response's status code and body.
    async fn text(resp: hyper::Response<hyper::body::Incoming>) -> (u16, String) {
        let code = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    /// A pod with containers `app` and `waiting`, on `node` if given.
    fn two_container_pod(name: &str, node: Option<&str>) -> Value {
        let mut p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "busybox"}, {"name": "waiting", "image": "busybox"}]},
        });
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    }

    /// The whole path by hand: a real API server, a Node pointing at a stand-in agent, a
    /// pod on it, and `pods/log` requests with the admin's certificate.
    #[tokio::test]
    async fn logs_are_proxied_from_the_node_agent_and_streamed() {
        let dir = tempfile::tempdir().unwrap();
        let server = crate::start(crate::Config::loopback(dir.path()))
            .await
            .unwrap();
        let tls_dir = dir.path().join("tls");
        let ca = std::fs::read_to_string(tls_dir.join("ca.crt")).unwrap();
        let (cert, key) = agent::serving_cert(&tls_dir);
        let agent = agent::start(&ca, &cert, &key).await;
        // The admin as a client of the API server: the same TLS plumbing, another certificate.
        let admin = KubeletClient::new(
            &ca,
            &std::fs::read_to_string(tls_dir.join("admin.crt")).unwrap(),
            &std::fs::read_to_string(tls_dir.join("admin.key")).unwrap(),
        )
        .unwrap();
        let admin = Admin {
            tls: admin.verified.clone(),
            port: server.address.port(),
        };
        register_node(&admin, agent.port()).await;
        create_pods(&admin).await;
        log_requests_are_checked(&admin).await;
        followed_log_streams(&admin).await;
        agent_certificates_are_verified_when_asked(&ca, &tls_dir).await;
        server.shutdown().await.unwrap();
    }

    /// Registers node n1 with the stand-in agent's address, as an agent would.
    async fn register_node(admin: &Admin, agent_port: u16) {
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n1"},
            "status": {
                "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": agent_port}},
            },
        });
        let (code, body) = text(
            admin
                .request("POST", "/api/v1/nodes".into(), Some(node))
                .await,
        )
        .await;
        assert_eq!(code, 201, "{body}");
        // The status is the node's to write: set it through the subresource as an agent would.
        let (code, body) = text(
            admin.request(
                "PATCH",
                "/api/v1/nodes/n1/status".into(),
                Some(json!({"status": {
                    "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "127.0.0.1"}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": agent_port}},
                }})),
            )
            .await,
        )
        .await;
        assert_eq!(code, 200, "{body}");
    }

    /// Pod web on n1 and pod pending on no node.
    async fn create_pods(admin: &Admin) {
        for (name, node) in [("web", Some("n1")), ("pending", None)] {
            let (code, body) = text(
                admin
                    .request(
                        "POST",
                        "/api/v1/namespaces/default/pods".into(),
                        Some(two_container_pod(name, node)),
                    )
                    .await,
            )
            .await;
            assert_eq!(code, 201, "{body}");
        }
    }

    /// Requests for no, a missing or a waiting container, or with a bad parameter, fail as
    /// upstream's do; a pod on no node has nothing to show.
    async fn log_requests_are_checked(admin: &Admin) {
        // Two containers and none named: upstream's message.
        let (code, body) = text(admin.log("web/log").await).await;
        assert_eq!(code, 400);
        assert!(
            body.contains(
                "a container name must be specified for pod web, choose one of: [app waiting]"
            ),
            "{body}"
        );
        let (code, body) = text(admin.log("web/log?container=nope").await).await;
        assert_eq!(code, 400);
        assert!(
            body.contains("container nope is not valid for pod web"),
            "{body}"
        );
        let (code, body) = text(admin.log("web/log?container=app&tailLines=-3").await).await;
        assert_eq!(code, 422, "{body}");
        // Not on a node: nothing to show.
        let (code, body) = text(admin.log("pending/log?container=app").await).await;
        assert_eq!((code, body.as_str()), (204, ""));
        // The agent's own refusal comes back in its words.
        let (code, body) = text(admin.log("web/log?container=waiting").await).await;
        assert_eq!(code, 400);
        let status: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status["reason"], "BadRequest");
        assert_eq!(
            status["message"],
            "container \"waiting\" in pod \"web\" is waiting to start: ContainerCreating"
        );
    }

    /// A followed log streams: the first line arrives well before the agent ends.
    async fn followed_log_streams(admin: &Admin) {
        use futures::StreamExt;

        let resp = admin
            .log("web/log?container=app&follow=true&tailLines=5&timestamps=true")
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/plain");
        let started = std::time::Instant::now();
        let mut body = Body::new(resp.into_body()).into_data_stream();
        let mut seen = String::new();
        while !seen.contains("line 0\n") {
            seen.push_str(std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap());
        }
        assert!(
            started.elapsed() < Duration::from_millis(550),
            "{:?}",
            started.elapsed()
        );
        while let Some(chunk) = body.next().await {
            seen.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
        assert_eq!(
            seen,
            "query: follow=true&tailLines=5&timestamps=true\nline 0\nline 1\nline 2\n"
        );
    }

    /// Without verification, a serving certificate from elsewhere is accepted; with it, not;
    /// an agent that is not there is a dial error.
    async fn agent_certificates_are_verified_when_asked(ca: &str, tls_dir: &std::path::Path) {
        // Without verification, a serving certificate from elsewhere is accepted; with it, not.
        let foreign = tempfile::tempdir().unwrap();
        let foreign_pki = crate::pki::ensure(foreign.path(), &["localhost".to_string()]).unwrap();
        let (fcert, fkey) = agent::serving_cert(foreign.path());
        let foreign_agent = agent::start(ca, &fcert, &fkey).await;
        drop(foreign_pki);
        let client = KubeletClient::new(
            ca,
            &std::fs::read_to_string(tls_dir.join("kubelet-client.crt")).unwrap(),
            &std::fs::read_to_string(tls_dir.join("kubelet-client.key")).unwrap(),
        )
        .unwrap();
        let path = "/containerLogs/default/web/app";
        let e = proxy(
            &client,
            false,
            "127.0.0.1",
            foreign_agent.port(),
            path,
            "web",
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, 500);
        assert!(
            e.message.starts_with(&format!(
                "Get \"https://127.0.0.1:{}/containerLogs/default/web/app\": tls: ",
                foreign_agent.port()
            )),
            "{}",
            e.message
        );
        let resp = proxy(
            &client,
            true,
            "127.0.0.1",
            foreign_agent.port(),
            path,
            "web",
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), 200);
        // An agent that is not there.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let e = proxy(&client, false, "127.0.0.1", port, path, "web")
            .await
            .unwrap_err();
        assert_eq!((e.code, e.reason), (500, ""));
        assert!(e.message.contains("dial tcp 127.0.0.1:"), "{}", e.message);
    }
}
