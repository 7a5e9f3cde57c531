//! Servers on 127.0.0.1 that the agent's probes reach in the end-to-end tests (a host-network
//! pod's address is the node's, 127.0.0.1 there): the standard gRPC health service over plain
//! HTTP/2, and HTTPS with the cluster's serving certificate. Included with `#[path]`.

#![allow(unreachable_pub)]

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// `HealthCheckResponse.ServingStatus` values.
pub const SERVING: u8 = 1;
pub const NOT_SERVING: u8 = 2;

pub struct ProbeServers {
    _runtime: tokio::runtime::Runtime,
    /// The gRPC health service's port. It knows the service `rudder` (and the empty name).
    pub grpc_port: u16,
    /// What it answers for them.
    pub status: Arc<AtomicU8>,
    /// The HTTPS server's port: 200 on `/healthz`, 503 elsewhere.
    pub https_port: u16,
}

impl ProbeServers {
    /// Starts both; HTTPS presents `<tls_dir>/server.crt`.
    pub fn start(tls_dir: &Path) -> ProbeServers {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let status = Arc::new(AtomicU8::new(SERVING));
        let cert = std::fs::read(tls_dir.join("server.crt")).unwrap();
        let key = std::fs::read(tls_dir.join("server.key")).unwrap();
        let (grpc_port, https_port) = runtime.block_on(async {
            let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let https = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let ports = (
                grpc.local_addr().unwrap().port(),
                https.local_addr().unwrap().port(),
            );
            let st = status.clone();
            tokio::spawn(async move {
                while let Ok((tcp, _)) = grpc.accept().await {
                    let st = st.clone();
                    tokio::spawn(
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(
                                TokioIo::new(tcp),
                                service_fn(move |req| health(req, st.load(Ordering::SeqCst))),
                            ),
                    );
                }
            });
            let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(&cert).unwrap()],
                PrivateKeyDer::from_pem_slice(&key).unwrap(),
            )
            .unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
            tokio::spawn(async move {
                while let Ok((tcp, _)) = https.accept().await {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(
                                TokioIo::new(tls),
                                service_fn(|req: Request<Incoming>| async move {
                                    let code = if req.uri().path() == "/healthz" {
                                        200
                                    } else {
                                        503
                                    };
                                    Ok::<_, Infallible>(
                                        Response::builder()
                                            .status(code)
                                            .body(Full::new(Bytes::from_static(b"ok\n")))
                                            .unwrap(),
                                    )
                                }),
                            )
                            .await;
                    });
                }
            });
            ports
        });
        ProbeServers {
            _runtime: runtime,
            grpc_port,
            status,
            https_port,
        }
    }
}

type GrpcBody =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// `grpc.health.v1.Health/Check`: `status` for the known services, NotFound for others.
async fn health(req: Request<Incoming>, status: u8) -> Result<Response<GrpcBody>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    // Length prefix, then field 1 (tag 0x0a), a short length, the name.
    let service = match body.get(5..7) {
        Some([0x0a, len]) => body
            .get(7..7 + *len as usize)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let mut trailers = hyper::HeaderMap::new();
    let frames = if service.is_empty() || service == "rudder" {
        trailers.insert("grpc-status", "0".parse().unwrap());
        vec![
            Ok(Frame::data(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]))),
            Ok(Frame::trailers(trailers)),
        ]
    } else {
        trailers.insert("grpc-status", "5".parse().unwrap());
        trailers.insert("grpc-message", "unknown service".parse().unwrap());
        vec![Ok(Frame::trailers(trailers))]
    };
    Ok(Response::builder()
        .header("content-type", "application/grpc")
        .body(StreamBody::new(futures::stream::iter(frames)))
        .unwrap())
}
