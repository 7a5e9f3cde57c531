//! The health check node ports: for each `LoadBalancer` Service with `externalTrafficPolicy:
//! Local`, an HTTP server on its `healthCheckNodePort` that tells a load balancer whether
//! this node has endpoints of it (200) or not (503), with upstream kube-proxy's JSON body.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

use crate::model::HealthCheck;

/// The checks by port, and whether the proxy's last rules went in.
type Checks = Arc<RwLock<(BTreeMap<u16, HealthCheck>, bool)>>;

/// The servers, one per health check node port, each answering from the latest counts.
#[derive(Default)]
pub struct Servers {
    checks: Checks,
    listening: BTreeMap<u16, JoinHandle<()>>,
}

impl Servers {
    /// Serves exactly `checks`: opens the ports that are new, closes the ones gone. While the
    /// proxy is not `healthy` (its rules did not go in), every port answers 503.
    pub fn update(&mut self, checks: BTreeMap<u16, HealthCheck>, healthy: bool) {
        self.listening.retain(|port, task| {
            let keep = checks.contains_key(port);
            if !keep {
                task.abort();
            }
            keep
        });
        for port in checks.keys() {
            if self.listening.contains_key(port) {
                continue;
            }
            match bind(*port) {
                Ok(listener) => {
                    let task = tokio::spawn(serve(listener, *port, self.checks.clone()));
                    self.listening.insert(*port, task);
                }
                Err(e) => tracing::warn!("health check node port {port}: {e}"),
            }
        }
        *self.checks.write().unwrap_or_else(|e| e.into_inner()) = (checks, healthy);
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for task in self.listening.values() {
            task.abort();
        }
    }
}

fn bind(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))?;
    socket.listen(128)
}

async fn serve(listener: tokio::net::TcpListener, port: u16, checks: Checks) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: wait rather than spin.
                tracing::debug!("health check node port {port}: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let checks = checks.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_request| {
                let answer = {
                    let checks = checks.read().unwrap_or_else(|e| e.into_inner());
                    checks.0.get(&port).map(|c| answer(c, checks.1))
                };
                async move { Ok::<_, Infallible>(answer.unwrap_or_else(gone)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!("health check node port {port}: {e}");
            }
        });
    }
}

/// Upstream's answer: the Service, its local endpoints and the proxy's health; 200 when
/// this node has a ready endpoint and its rules are in, else 503.
fn answer(check: &HealthCheck, healthy: bool) -> Response<Full<Bytes>> {
    let body = format!(
        r#"{{"service":{{"namespace":"{}","name":"{}"}},"localEndpoints":{},"serviceProxyHealthy":{healthy}}}"#,
        check.namespace, check.name, check.local_endpoints
    );
    let status = if check.local_endpoints > 0 && healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .header("X-Content-Type-Options", "nosniff")
        .header("X-Load-Balancing-Endpoint-Weight", check.local_endpoints)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

fn gone() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"")));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_with_endpoints_answers_ok_and_one_without_unavailable() {
        let mut check = HealthCheck {
            namespace: "default".into(),
            name: "web".into(),
            local_endpoints: 2,
        };
        let ok = answer(&check, true);
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()["X-Load-Balancing-Endpoint-Weight"], "2");
        let unhealthy = answer(&check, false);
        assert_eq!(unhealthy.status(), StatusCode::SERVICE_UNAVAILABLE);
        check.local_endpoints = 0;
        assert_eq!(
            answer(&check, true).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn ports_open_and_close_with_the_checks() {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let check = HealthCheck {
            namespace: "default".into(),
            name: "web".into(),
            local_endpoints: 1,
        };
        let mut servers = Servers::default();
        servers.update(BTreeMap::from([(port, check)]), true);
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(text.ends_with(r#"{"service":{"namespace":"default","name":"web"},"localEndpoints":1,"serviceProxyHealthy":true}"#), "{text}");
        servers.update(BTreeMap::new(), true);
        assert!(servers.listening.is_empty());
    }
}
