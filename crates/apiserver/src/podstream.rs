//! The `pods/exec`, `pods/attach` and `pods/portforward` subresources: the API server checks
//! the request (the pod, its container, its node), then hands the connection to the node
//! agent's `/exec`, `/attach` or `/portForward` endpoint and, once the agent switches
//! protocols, copies bytes both ways until either side closes, as upstream's
//! `UpgradeAwareHandler` does. The streaming protocols themselves (WebSocket channels, SPDY)
//! are the agent's business; an agent that refuses answers the client directly.

use api::request::Query;
use api::{Resource, Status};
use axum::body::Body;
use axum::http::{HeaderName, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

use crate::podlogs::{self, KubeletClient};
use crate::registry::Registry;

/// The request headers that carry the protocol switch to the agent.
const UPGRADE_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

fn pods() -> &'static Resource {
    api::resources::find("", "v1", "pods").expect("served resource")
}

/// Proxies `sub` (`exec`, `attach` or `portforward`) of pod `ns/name` to its node's agent.
pub async fn proxy(
    reg: &Registry,
    client: &KubeletClient,
    ns: &str,
    name: &str,
    sub: &str,
    mut req: axum::extract::Request,
) -> Result<Response, Status> {
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let query = Query::parse(Some(&raw_query));
    let pod = reg.get(pods(), Some(ns), name).await?;
    let mut path = match sub {
        "portforward" => format!("/portForward/{ns}/{name}"),
        _ => {
            let container = podlogs::container(&pod, query.get("container"))?;
            format!("/{sub}/{ns}/{name}/{container}")
        }
    };
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if node_name.is_empty() {
        return Err(Status::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let node = reg.get(podlogs::resource("nodes"), None, node_name).await?;
    let (host, port) = podlogs::node_address(&node)?;
    if !raw_query.is_empty() {
        path.push('?');
        path.push_str(&raw_query);
    }
    let tls = if query.flag("insecureSkipTLSVerifyBackend") {
        client.unverified.clone()
    } else {
        client.verified.clone()
    };
    let url = format!("https://{}{path}", podlogs::authority(&host, port));
    let failed = |e: String| Status::internal(format!("error dialing backend: {url}: {e}"));
    let mut forward = hyper::Request::builder()
        .method(req.method().clone())
        .uri(&path)
        .header(header::HOST, podlogs::authority(&host, port))
        .header(header::USER_AGENT, "rudder-apiserver");
    for name in UPGRADE_HEADERS {
        for value in req.headers().get_all(*name) {
            forward = forward.header(HeaderName::from_static(name), value.clone());
        }
    }
    let forward = forward
        .body(Body::empty())
        .map_err(|e| Status::internal(e.to_string()))?;
    let answer = tokio::time::timeout(podlogs::CONNECT_TIMEOUT, async {
        let mut send = podlogs::connect(Some(tls), &host, port).await?;
        send.send_request(forward).await.map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| failed("timeout awaiting response headers".into()))?
    .map_err(failed)?;
    let code = answer.status();
    let mut out = Response::new(Body::empty());
    *out.status_mut() = code;
    for (k, v) in answer.headers() {
        if k != header::CONTENT_LENGTH && k != header::TRANSFER_ENCODING {
            out.headers_mut().append(k.clone(), v.clone());
        }
    }
    if code != StatusCode::SWITCHING_PROTOCOLS {
        // The agent's refusal goes to the client as it was written.
        let limited = http_body_util::Limited::new(answer.into_body(), podlogs::MAX_ERROR_BODY);
        let body = match tokio::time::timeout(podlogs::CONNECT_TIMEOUT, limited.collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            _ => bytes::Bytes::new(),
        };
        *out.body_mut() = Body::from(body);
        return Ok(out);
    }
    let client_side = hyper::upgrade::on(&mut req);
    let agent_side = hyper::upgrade::on(answer);
    tokio::spawn(async move {
        let (client_io, agent_io) = match tokio::join!(client_side, agent_side) {
            (Ok(c), Ok(a)) => (c, a),
            (c, a) => {
                tracing::debug!(client = ?c.err(), agent = ?a.err(), "a streaming upgrade failed");
                return;
            }
        };
        let (mut client_io, mut agent_io) = (TokioIo::new(client_io), TokioIo::new(agent_io));
        // Larger buffers than the default 8 KiB: port-forwards move bulk data.
        let copied = tokio::io::copy_bidirectional_with_sizes(
            &mut client_io,
            &mut agent_io,
            64 << 10,
            64 << 10,
        )
        .await;
        if let Err(e) = copied {
            tracing::debug!(error = %e, "a streaming connection ended with an error");
        }
    });
    Ok(out)
}
