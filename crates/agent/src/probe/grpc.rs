//! gRPC probes: one call of the standard health service (`grpc.health.v1.Health/Check`) over
//! HTTP/2 without TLS, as upstream's kubelet makes it, with its failure messages.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::GRPCAction;

/// `Ok` when the server answers SERVING for the probe's service.
pub(super) async fn check(ip: &str, g: &GRPCAction, timeout_secs: u64) -> Result<(), String> {
    let port = u16::try_from(g.port).map_err(|_| format!("invalid port {}", g.port))?;
    let addr = if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    };
    let unreachable = |e: &dyn std::fmt::Display| {
        format!("timeout: failed to connect service {addr:?} within {timeout_secs}s: {e}")
    };
    let tcp = tokio::net::TcpStream::connect((ip, port))
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .map_err(|e| unreachable(&e))?;
    tokio::spawn(conn);
    let req = hyper::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "kube-probe/1.33")
        .body(Full::new(Bytes::from(request(
            g.service.as_deref().unwrap_or_default(),
        ))))
        .map_err(|e| e.to_string())?;
    let failed = |e: &dyn std::fmt::Display| format!("error: health rpc probe failed: {e}");
    let resp = send.send_request(req).await.map_err(|e| failed(&e))?;
    if resp.status() != hyper::StatusCode::OK {
        return Err(failed(&format!(
            "rpc error: code = Unknown desc = unexpected HTTP status code received from server: {}",
            resp.status().as_u16()
        )));
    }
    let headers = resp.headers().clone();
    let collected = resp.into_body().collect().await.map_err(|e| failed(&e))?;
    // A "trailers-only" answer carries the status among the headers.
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let field = |name: &str| {
        trailers
            .get(name)
            .or_else(|| headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let code: u32 = field("grpc-status")
        .and_then(|c| c.parse().ok())
        .unwrap_or(2);
    if code != 0 {
        let message = field("grpc-message").unwrap_or_default();
        let name = CODES.get(code as usize).copied().unwrap_or("Unknown");
        let status = format!("rpc error: code = {name} desc = {message}");
        return Err(if name == "Unimplemented" {
            format!(
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {status}"
            )
        } else {
            failed(&status)
        });
    }
    match response(&collected.to_bytes()) {
        Some(1) => Ok(()),
        Some(s) => Err(format!(
            "service unhealthy (responded with {:?})",
            STATUSES.get(s as usize).copied().unwrap_or("UNKNOWN")
        )),
        None => Err(failed(
            &"rpc error: code = Internal desc = malformed health response",
        )),
    }
}

/// gRPC status codes by number.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// `HealthCheckResponse.ServingStatus` by number.
const STATUSES: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/// A length-prefixed `HealthCheckRequest { service }` message.
fn request(service: &str) -> Vec<u8> {
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a); // field 1, length-delimited
        varint(service.len() as u64, &mut msg);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut framed = vec![0]; // not compressed
    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    framed.extend(msg);
    framed
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The `status` of a length-prefixed `HealthCheckResponse` (0, UNKNOWN, when absent); `None`
/// when the message cannot be read.
fn response(body: &[u8]) -> Option<u64> {
    let (head, rest) = body.split_at_checked(5)?;
    if head[0] != 0 {
        return None; // compressed: never asked for
    }
    let len = u32::from_be_bytes(head[1..5].try_into().ok()?) as usize;
    let mut msg = rest.get(..len)?;
    let mut status = 0;
    while let Some((&key, rest)) = msg.split_first() {
        msg = rest;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let v = read_varint(&mut msg)?;
                if field == 1 {
                    status = v;
                }
            }
            2 => {
                let n = read_varint(&mut msg)? as usize;
                msg = msg.get(n..)?;
            }
            1 => msg = msg.get(8..)?,
            5 => msg = msg.get(4..)?,
            _ => return None,
        }
    }
    Some(status)
}

fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_length_prefixed_health_check_requests() {
        assert_eq!(request(""), vec![0, 0, 0, 0, 0]);
        assert_eq!(request("db"), vec![0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']);
    }

    #[test]
    fn responses_give_their_status() {
        assert_eq!(response(&[0, 0, 0, 0, 2, 0x08, 1]), Some(1));
        assert_eq!(response(&[0, 0, 0, 0, 2, 0x08, 2]), Some(2));
        // An empty message is the default, UNKNOWN; unknown fields are skipped.
        assert_eq!(response(&[0, 0, 0, 0, 0]), Some(0));
        assert_eq!(response(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 1]), Some(1));
        assert_eq!(response(&[0, 0, 0, 0, 2, 0x08]), None);
        assert_eq!(response(&[1, 0, 0, 0, 0]), None);
        assert_eq!(response(&[0, 0]), None);
    }
}
