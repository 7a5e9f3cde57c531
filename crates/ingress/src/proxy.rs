//! The reverse proxy: accepts HTTP/1.1 and HTTP/2 (over TLS too), routes each request by its
//! host and path through the current [`Table`], and forwards it to one endpoint of the backend
//! with a pooled HTTP/1.1 client, streaming both bodies. An HTTP/1.1 `Upgrade` (WebSocket)
//! that the endpoint accepts becomes a byte tunnel between the two connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tls::{connection_has, strip_hop_by_hop};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::routes::Table;

/// The body of every answer: an endpoint's, streamed, or one of ours.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to an endpoint may take before the answer is 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long idle connections to endpoints are kept for reuse.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// How long open connections get to finish their requests once listening stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to send a request's headers (a slow client holds a connection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per endpoint.
const POOL_MAX_IDLE: usize = 64;
/// TCP keepalive on connections to endpoints (a pod gone without a FIN is noticed).
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// How long to wait after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The routing table in use and the client to the endpoints, shared by every connection.
#[derive(Debug)]
pub struct Proxy {
    table: RwLock<Arc<Table>>,
    client: Client<HttpConnector, Incoming>,
}

/// What a request's connection says about it.
#[derive(Debug, Clone, Copy)]
struct Conn {
    /// The client's address.
    peer: SocketAddr,
    /// The port the client connected to.
    port: u16,
    /// `http` or `https`.
    scheme: &'static str,
}

impl Default for Proxy {
    fn default() -> Self {
        Proxy::new()
    }
}

impl Proxy {
    /// A proxy with an empty table (every request a 404).
    pub fn new() -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(TCP_KEEPALIVE));
        // The pool's timer: without one, idle connections would only expire when reused.
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(POOL_MAX_IDLE)
            .build(connector);
        Proxy {
            table: RwLock::new(Arc::new(Table::default())),
            client,
        }
    }

    /// Routes the requests that follow through `table`.
    pub fn set_table(&self, table: Table) {
        *self.table.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
    }

    /// The table in use.
    pub fn table(&self) -> Arc<Table> {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Accepts connections on `listener` (TLS ones when `tls` is given) and serves them until
    /// `shutdown`; then stops accepting and gives open connections a few seconds to finish.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        shutdown: impl Future<Output = ()>,
    ) {
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let scheme = if tls.is_some() { "https" } else { "http" };
        loop {
            let (tcp, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
            };
            let port = tcp.local_addr().map_or(0, |a| a.port());
            let conn = Conn { peer, port, scheme };
            let (proxy, watcher, tls) = (self.clone(), graceful.watcher(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => proxy.connection(tcp, conn, watcher).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => proxy.connection(stream, conn, watcher).await,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            });
        }
        drop(listener);
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::debug!("connections still open after {DRAIN_TIMEOUT:?}");
        }
    }

    /// Serves one connection, HTTP/1.1 (with upgrades) or HTTP/2.
    async fn connection<IO>(self: Arc<Self>, io: IO, conn: Conn, watcher: Watcher)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = hyper::service::service_fn(move |req| {
            let proxy = self.clone();
            async move { Ok::<_, Infallible>(proxy.handle(req, conn).await) }
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        builder.http2().timer(TokioTimer::new());
        let served = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        if let Err(e) = watcher.watch(served.into_owned()).await {
            tracing::debug!(peer = %conn.peer, error = %e, "connection ended with an error");
        }
    }

    /// The answer to one request.
    async fn handle(&self, mut req: Request<Incoming>, conn: Conn) -> Response<Body> {
        let host = request_host(&req);
        let table = self.table();
        let Some(backend) = table.route(host.as_deref(), req.uri().path()) else {
            return text(StatusCode::NOT_FOUND, "404 page not found\n");
        };
        let Some(endpoint) = backend.pick() else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "no available endpoints\n");
        };
        let upgrade = upgrade_protocol(&req);
        let client_side = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let outbound = match forwarded(req, endpoint, conn, host.as_deref(), upgrade) {
            Ok(outbound) => outbound,
            Err(e) => {
                tracing::debug!("unforwardable request: {e}");
                return text(StatusCode::BAD_REQUEST, "bad request\n");
            }
        };
        let mut resp = match self.client.request(outbound).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::debug!(%endpoint, service = %backend.service, "forwarding failed: {e}");
                return text(StatusCode::BAD_GATEWAY, "bad gateway\n");
            }
        };
        match client_side {
            Some(client_side) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                let endpoint_side = hyper::upgrade::on(&mut resp);
                tokio::spawn(tunnel(client_side, endpoint_side));
                let (parts, _) = resp.into_parts();
                Response::from_parts(parts, empty())
            }
            _ => {
                strip_hop_by_hop(resp.headers_mut());
                resp.map(BodyExt::boxed)
            }
        }
    }
}

/// Copies bytes both ways between an upgraded client connection and endpoint connection.
async fn tunnel(client: hyper::upgrade::OnUpgrade, endpoint: hyper::upgrade::OnUpgrade) {
    let (client, endpoint) = match tokio::try_join!(client, endpoint) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!("upgrade failed: {e}");
            return;
        }
    };
    let (mut client, mut endpoint) = (TokioIo::new(client), TokioIo::new(endpoint));
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut endpoint).await {
        tracing::debug!("upgraded connection ended: {e}");
    }
}

/// The host a request is for: the URI's authority (HTTP/2 `:authority`, or an absolute-form
/// HTTP/1 target), else the `Host` header.
fn request_host<B>(req: &Request<B>) -> Option<String> {
    req.uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
}

/// The protocol an HTTP/1.1 request asks to upgrade to (`Connection: upgrade` and `Upgrade`).
fn upgrade_protocol<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 || !connection_has(req.headers(), "upgrade") {
        return None;
    }
    req.headers().get(header::UPGRADE).cloned()
}

/// The request to send `endpoint`: HTTP/1.1 to its address, the original `Host` kept,
/// hop-by-hop headers dropped (but for an upgrade's), HTTP/2's split cookies joined into one
/// header (RFC 9113 section 8.2.3), the `X-Forwarded-*` headers set. `X-Forwarded-For` is the
/// client's address alone, as ingress-nginx by default: what a client says there is not
/// trusted.
fn forwarded<B>(
    req: Request<B>,
    endpoint: SocketAddr,
    conn: Conn,
    host: Option<&str>,
    upgrade: Option<HeaderValue>,
) -> Result<Request<B>, hyper::http::Error> {
    let (mut parts, body) = req.into_parts();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = Uri::try_from(format!("http://{endpoint}{target}"))?;
    parts.version = Version::HTTP_11;
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    if let Some(host) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert(header::HOST, host.clone());
        headers.insert("x-forwarded-host", host);
    }
    let cookies: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if cookies.len() > 1 {
        let joined = HeaderValue::try_from(cookies.join("; "))?;
        headers.insert(header::COOKIE, joined);
    }
    let client_ip = conn.peer.ip().to_string();
    headers.insert(
        "x-forwarded-for",
        HeaderValue::try_from(client_ip.as_str())?,
    );
    headers.insert("x-forwarded-proto", HeaderValue::from_static(conn.scheme));
    headers.insert("x-forwarded-port", HeaderValue::from(conn.port));
    headers.insert("x-real-ip", HeaderValue::try_from(client_ip)?);
    Ok(Request::from_parts(parts, body))
}

/// A short plain-text answer of our own.
fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(never)
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn empty() -> Body {
    Full::new(Bytes::new()).map_err(never).boxed()
}

fn never(e: Infallible) -> hyper::Error {
    match e {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::builder().uri("/path?q=1");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(()).unwrap()
    }

    #[test]
    fn an_upgrade_is_asked_for_with_both_headers_on_http_1_1() {
        let ws = request(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(upgrade_protocol(&ws).unwrap(), "websocket");
        assert!(upgrade_protocol(&request(&[("upgrade", "websocket")])).is_none());
        assert!(upgrade_protocol(&request(&[("connection", "upgrade")])).is_none());
        let mut http2 = request(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        *http2.version_mut() = Version::HTTP_2;
        assert!(upgrade_protocol(&http2).is_none());
    }

    #[test]
    fn the_host_comes_from_the_authority_else_the_host_header() {
        assert_eq!(
            request_host(&request(&[("host", "a.test:8080")])).as_deref(),
            Some("a.test:8080")
        );
        let absolute = Request::builder()
            .uri("http://b.test/x")
            .header("host", "a.test")
            .body(())
            .unwrap();
        assert_eq!(request_host(&absolute).as_deref(), Some("b.test"));
        assert_eq!(request_host(&request(&[])), None);
    }

    #[test]
    fn forwarded_requests_go_to_the_endpoint_with_the_original_host_and_who_asked() {
        let conn = Conn {
            peer: "192.0.2.7:40000".parse().unwrap(),
            port: 8443,
            scheme: "https",
        };
        let mut req = request(&[
            ("host", "a.test:8443"),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-proto", "gopher"),
            ("connection", "close"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
        ]);
        *req.version_mut() = Version::HTTP_2;
        let out = forwarded(
            req,
            "10.0.0.1:8080".parse().unwrap(),
            conn,
            Some("a.test:8443"),
            None,
        )
        .unwrap();
        assert_eq!(out.uri(), "http://10.0.0.1:8080/path?q=1");
        assert_eq!(out.version(), Version::HTTP_11);
        let h = out.headers();
        assert_eq!(h["host"], "a.test:8443");
        assert_eq!(h["x-forwarded-host"], "a.test:8443");
        // What the client claimed is replaced by its address; split cookies are joined.
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-port"], "8443");
        assert_eq!(h["x-real-ip"], "192.0.2.7");
        assert!(h.get("connection").is_none());
    }

    #[test]
    fn an_upgrade_keeps_its_connection_and_upgrade_headers() {
        let conn = Conn {
            peer: "127.0.0.1:1".parse().unwrap(),
            port: 80,
            scheme: "http",
        };
        let req = request(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        let protocol = upgrade_protocol(&req);
        let out = forwarded(req, "10.0.0.1:80".parse().unwrap(), conn, None, protocol).unwrap();
        assert_eq!(out.headers()["connection"], "upgrade");
        assert_eq!(out.headers()["upgrade"], "websocket");
        assert_eq!(out.headers()["x-forwarded-for"], "127.0.0.1");
        assert!(out.headers().get("host").is_none());
    }

    /// A proxy serving on a free loopback port whose table sends everything to `endpoint`'s
    /// Service (`None`: no Ingress at all).
    async fn serving(
        endpoint: Option<SocketAddr>,
    ) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let ing: crate::routes::Table = match endpoint {
            None => Table::default(),
            Some(ep) => {
                let ing = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": "i", "namespace": "web"},
                    "spec": {"defaultBackend": {"service": {"name": "s", "port": {"number": 80}}}},
                }))
                .unwrap();
                let svc = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": "s", "namespace": "web"},
                    "spec": {"ports": [{"port": 80}]},
                }))
                .unwrap();
                let slice = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": "s-1", "namespace": "web",
                                 "labels": {"kubernetes.io/service-name": "s"}},
                    "addressType": "IPv4",
                    "ports": [{"port": ep.port()}],
                    "endpoints": [{"addresses": [ep.ip().to_string()]}],
                }))
                .unwrap();
                Table::build(&[&ing], &[&svc], &[&slice])
            }
        };
        let proxy = Arc::new(Proxy::new());
        proxy.set_table(ing);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(proxy.serve(listener, None, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// The status line of a bodiless GET sent raw.
    async fn status_line(addr: SocketAddr) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        answer.lines().next().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn no_route_is_404_and_an_endpoint_that_refuses_is_502() {
        let (addr, _stop) = serving(None).await;
        assert_eq!(status_line(addr).await, "HTTP/1.1 404 Not Found");
        // A port just released: nothing listens there.
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let (addr, stop) = serving(Some(closed)).await;
        assert_eq!(status_line(addr).await, "HTTP/1.1 502 Bad Gateway");
        stop.send(()).unwrap();
    }

    #[tokio::test]
    async fn our_answers_are_short_texts() {
        let resp = text(StatusCode::NOT_FOUND, "404 page not found\n");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "404 page not found\n");
    }
}
