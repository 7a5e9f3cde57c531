//! Streaming a response body over a WebSocket, as upstream's `wsstream` reader does for
//! `pods/{name}/log`: a client that asks to upgrade gets each chunk as a message, binary
//! (`binary.k8s.io`, or no protocol) or base64 text (`base64.binary.k8s.io`), then a normal
//! close.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The protocols served, in the order they are preferred.
const PROTOCOLS: &[&str] = &["binary.k8s.io", "base64.binary.k8s.io"];

/// Whether `headers` ask to upgrade to a WebSocket.
pub fn is_websocket(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Answers the upgrade of `req` with 101 and streams `body` to the client once it switched.
/// Without a protocol the client gets binary messages; with only unknown ones, 400.
pub fn stream(req: &mut axum::extract::Request, body: Body) -> Response {
    let offered: Vec<String> = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let protocol = PROTOCOLS
        .iter()
        .find(|p| offered.iter().any(|o| o == *p))
        .copied();
    if protocol.is_none() && !offered.is_empty() {
        let mut resp = Response::new(Body::from(format!(
            "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {PROTOCOLS:?}"
        )));
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return resp;
    }
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        let mut resp = Response::new(Body::from("missing Sec-WebSocket-Key"));
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return resp;
    };
    let on_upgrade = hyper::upgrade::on(&mut *req);
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    h.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&accept).expect("base64 is a header value"),
    );
    if let Some(p) = protocol {
        h.insert("sec-websocket-protocol", HeaderValue::from_static(p));
    }
    let base64 = protocol == Some("base64.binary.k8s.io");
    tokio::spawn(async move {
        let Ok(io) = on_upgrade.await else {
            return;
        };
        let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
        let mut body = body.into_data_stream();
        loop {
            tokio::select! {
                chunk = body.next() => match chunk {
                    Some(Ok(data)) => {
                        let msg = if base64 {
                            Message::text(base64::engine::general_purpose::STANDARD.encode(&data))
                        } else {
                            Message::binary(data)
                        };
                        if ws.send(msg).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "a streamed body failed");
                        break;
                    }
                    None => break,
                },
                // The client closed, or went away.
                incoming = ws.next() => match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                },
            }
        }
        let _ = ws.close(None).await;
    });
    resp
}
