//! The Ingress controller against the real API server in-process: two backend HTTP servers
//! on loopback behind hand-made EndpointSlices, Ingresses routing to them by host and path,
//! HTTPS with a certificate from a Secret, an upgraded connection, and the Ingress status.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, Patch, PatchParams, PostParams};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use testkit::{TestServer, eventually};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const NS: &str = "web";

/// Serves HTTP/1.1 on a free loopback port: each answer names `name` and echoes the Host,
/// `X-Forwarded-For` and `X-Forwarded-Proto` it got and the path; an `Upgrade` request is
/// switched and then echoes bytes.
async fn backend(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(name, req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    port
}

async fn answer(
    name: &'static str,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.headers().contains_key("upgrade") {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let mut io = TokioIo::new(upgrade.await.unwrap());
            let mut buf = [0; 1024];
            while let Ok(n @ 1..) = io.read(&mut buf).await {
                io.write_all(&buf[..n]).await.unwrap();
            }
        });
        let resp = Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(Full::default())
            .unwrap();
        return Ok(resp);
    }
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let body = format!(
        "{name} host={} xff={} proto={} path={}",
        header("host"),
        header("x-forwarded-for"),
        header("x-forwarded-proto"),
        req.uri().path()
    );
    Ok(Response::new(Full::from(body)))
}

/// One HTTP/1.1 request over `io`: its status and body.
async fn request_over<IO>(io: IO, host: &str, path: &str, extra: &[(&str, &str)]) -> (u16, String)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(path).header("host", host);
    for (name, value) in extra {
        req = req.header(*name, *value);
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A GET to `host` and `path`: status and body; status 0 when nothing listens yet.
async fn get(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    match TcpStream::connect(addr).await {
        Ok(tcp) => request_over(tcp, host, path, &[]).await,
        Err(e) => (0, e.to_string()),
    }
}

/// A loopback port nobody listens on (for the controller to bind).
async fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

async fn create<K>(client: &kube::Client, object: Value)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let object: K = serde_json::from_value(object).unwrap();
    Api::<K>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

/// A Service `name` with port 80 named `http`, and, given a port, a ready endpoint at
/// 127.0.0.1:`port`.
async fn service(client: &kube::Client, name: &str, port: Option<u16>) {
    create::<Service>(
        client,
        json!({
            "metadata": {"name": name},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }),
    )
    .await;
    let Some(port) = port else { return };
    create::<EndpointSlice>(
        client,
        json!({
            "metadata": {"name": format!("{name}-1"),
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
        }),
    )
    .await;
}

fn path(path: &str, service: &str) -> Value {
    json!({"path": path, "pathType": "Prefix",
           "backend": {"service": {"name": service, "port": {"number": 80}}}})
}

/// A self-signed certificate for `secure.test`, stored as the TLS Secret `secure-tls`.
async fn tls_secret(client: &kube::Client) -> CertificateDer<'static> {
    let made = rcgen::generate_simple_self_signed(vec!["secure.test".to_owned()]).unwrap();
    let mut secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "secure-tls", "namespace": NS},
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
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    made.cert.der().clone()
}

async fn objects(client: &kube::Client) -> CertificateDer<'static> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    service(client, "alpha", Some(backend("alpha").await)).await;
    service(client, "beta", Some(backend("beta").await)).await;
    service(client, "empty", None).await;
    let cert = tls_secret(client).await;
    create::<Ingress>(
        client,
        json!({
            "metadata": {"name": "site"},
            "spec": {
                "ingressClassName": "rudder",
                "tls": [{"hosts": ["secure.test"], "secretName": "secure-tls"}],
                "rules": [
                    {"host": "a.test", "http": {"paths": [path("/", "alpha"), path("/beta", "beta")]}},
                    {"host": "secure.test", "http": {"paths": [path("/", "alpha")]}},
                    {"host": "down.test", "http": {"paths": [path("/", "empty")]}},
                ],
            },
        }),
    )
    .await;
    // No class named: ours because the IngressClass the controller creates is the default.
    create::<Ingress>(
        client,
        json!({
            "metadata": {"name": "classless"},
            "spec": {"rules": [{"host": "b.test", "http": {"paths": [path("/", "beta")]}}]},
        }),
    )
    .await;
    // Another controller's.
    create::<Ingress>(
        client,
        json!({
            "metadata": {"name": "theirs"},
            "spec": {"ingressClassName": "nginx",
                     "rules": [{"host": "c.test", "http": {"paths": [path("/", "alpha")]}}]},
        }),
    )
    .await;
    cert
}

/// A TLS client asking for `sni`: trusting only `trusted`, or (without it) anything.
async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    trusted: Option<&CertificateDer<'static>>,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let mut config = match trusted {
        Some(cert) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(cert.clone()).unwrap();
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(tls::AnyServerCertificate::new(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// Upgrades a connection to `a.test` and checks that bytes come back through it.
async fn upgrade_round_trip(addr: SocketAddr) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET /chat HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo"),
        "{head}"
    );
    for message in [&b"hello"[..], b"again"] {
        tcp.write_all(message).await.unwrap();
        let mut echoed = vec![0; message.len()];
        tcp.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingresses_route_by_host_and_path_over_http_and_https() {
    let server = TestServer::start().await;
    let client = server.client();
    let trusted = objects(&client).await;
    let (http, https) = (free_port().await, free_port().await);
    let config = ingress::Config {
        class: "rudder".into(),
        http: Some(http),
        https: Some(https),
        status_addresses: vec!["192.0.2.10".parse().unwrap()],
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(ingress::run(client.clone(), config, async {
        let _ = stopped.await;
    }));

    eventually("the routes to be served", || async {
        get(http, "a.test", "/").await.0 == 200 && get(http, "b.test", "/").await.0 == 200
    })
    .await;
    let (status, body) = request_over(
        TcpStream::connect(http).await.unwrap(),
        "A.test:80",
        "/x",
        &[("x-forwarded-for", "203.0.113.9")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "alpha host=A.test:80 xff=127.0.0.1 proto=http path=/x"
    );
    assert!(get(http, "a.test", "/beta/1").await.1.starts_with("beta "));
    assert!(
        get(http, "a.test", "/betamax")
            .await
            .1
            .starts_with("alpha ")
    );
    assert!(get(http, "b.test", "/").await.1.starts_with("beta "));
    assert_eq!(get(http, "unknown.test", "/").await.0, 404);
    assert_eq!(
        get(http, "c.test", "/").await.0,
        404,
        "another class's Ingress"
    );
    assert_eq!(get(http, "down.test", "/").await.0, 503);
    upgrade_round_trip(http).await;

    // HTTPS: the Secret's certificate for its host, HTTP/1.1 and HTTP/2.
    let tls = tls_connect(https, "secure.test", Some(&trusted), b"http/1.1").await;
    let (status, body) = request_over(tls, "secure.test", "/", &[]).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("alpha host=secure.test "), "{body}");
    assert!(body.ends_with("proto=https path=/"), "{body}");
    let tls = tls_connect(https, "secure.test", Some(&trusted), b"h2").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("https://secure.test/h2")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"alpha host=secure.test "), "{body:?}");

    // Any other name, or none asked, gets the default certificate.
    let tls = tls_connect(https, "other.test", None, b"http/1.1").await;
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let name = b"RUDDER INGRESS DEFAULT CERT";
    assert!(presented.windows(name.len()).any(|w| w == name));
    assert_eq!(request_over(tls, "a.test", "/", &[]).await.0, 200);

    // The class the controller made, and the status of its Ingresses.
    let class = Api::<IngressClass>::all(client.clone())
        .get("rudder")
        .await
        .unwrap();
    assert_eq!(
        class.spec.unwrap().controller.as_deref(),
        Some("rudder.dev/ingress-controller")
    );
    let ingresses = Api::<Ingress>::namespaced(client.clone(), NS);
    eventually("the Ingress status to list the address", || async {
        let ips = |name: &'static str| {
            let ingresses = ingresses.clone();
            async move {
                let ing = ingresses.get(name).await.unwrap();
                let lb = ing
                    .status
                    .and_then(|s| s.load_balancer)
                    .and_then(|l| l.ingress);
                lb.unwrap_or_default()
                    .into_iter()
                    .map(|e| e.ip)
                    .collect::<Vec<_>>()
            }
        };
        ips("site").await == [Some("192.0.2.10".to_owned())]
            && ips("classless").await == [Some("192.0.2.10".to_owned())]
    })
    .await;
    let theirs = ingresses.get("theirs").await.unwrap();
    assert!(
        theirs
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .is_none()
    );
    // An Ingress handed to another class loses our address from its status.
    let to_nginx = json!({"spec": {"ingressClassName": "nginx"}});
    ingresses
        .patch(
            "classless",
            &PatchParams::default(),
            &Patch::Merge(&to_nginx),
        )
        .await
        .unwrap();
    eventually(
        "the address to leave the Ingress no longer ours",
        || async {
            let ing = ingresses.get("classless").await.unwrap();
            let lb = ing.status.and_then(|s| s.load_balancer);
            lb.and_then(|l| l.ingress).unwrap_or_default().is_empty()
        },
    )
    .await;

    let _ = stop.send(());
    controller.await.unwrap().unwrap();
    assert!(
        TcpStream::connect(http).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn an_address_in_use_is_an_error_naming_it() {
    let server = TestServer::start().await;
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let config = ingress::Config {
        http: Some(addr),
        https: None,
        ..ingress::Config::default()
    };
    let err = ingress::run(server.client(), config, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn an_existing_ingress_class_is_left_as_it_is() {
    let server = TestServer::start().await;
    let classes = Api::<IngressClass>::all(server.client());
    let theirs: IngressClass = serde_json::from_value(json!({
        "metadata": {"name": "shared"},
        "spec": {"controller": "example.com/other"},
    }))
    .unwrap();
    classes
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    let http = free_port().await;
    let config = ingress::Config {
        class: "shared".into(),
        http: Some(http),
        https: None,
        status_addresses: Vec::new(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(ingress::run(server.client(), config, async {
        let _ = stopped.await;
    }));
    // Serving starts once the class has been seen to.
    eventually("the controller to serve", || async {
        get(http, "x.test", "/").await.0 == 404
    })
    .await;
    let class = classes.get("shared").await.unwrap();
    assert_eq!(
        class.spec.unwrap().controller.as_deref(),
        Some("example.com/other")
    );
    assert!(class.metadata.annotations.unwrap_or_default().is_empty());
    let _ = stop.send(());
    controller.await.unwrap().unwrap();
}
