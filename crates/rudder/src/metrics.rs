//! A plain-HTTP `/metrics` endpoint for `rudder scheduler --metrics-bind-address` and
//! `rudder server --scheduler-metrics-bind-address`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming};

/// Listens on `addr` for [`serve`].
pub(crate) async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr} for metrics"))
}

/// Serves `metrics` at `http://<addr>/metrics` on `listener` until the future is dropped.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<scheduler::metrics::Metrics>,
) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let (status, body) = if req.uri().path() == "/metrics" {
                        (200, metrics.encode())
                    } else {
                        (404, "404 page not found\n".to_string())
                    };
                    Response::builder()
                        .status(status)
                        .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                        .body(Full::new(Bytes::from(body)))
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
