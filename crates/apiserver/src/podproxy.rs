//! `pods/{name}/proxy/{path}` and `services/{name}/proxy/{path}`: the API server forwards any
//! HTTP request to a pod's address, as upstream's proxy subresources do (`kubectl proxy`,
//! `kubectl get --raw .../services/web:80/proxy/`).
//!
//! The name may carry a scheme and a port: `[https:]web[:8080]`. A pod without a port goes to
//! its first container port; a service's port is chosen by name or number (or is its only
//! one), and the request goes to one of its ready endpoints, on the endpoint's port. The
//! request's method, path, query, headers (without hop-by-hop ones and the caller's
//! credentials) and body are passed on, and the answer comes back as the pod wrote it.

use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use serde_json::Value;

use crate::podlogs::{self, resource};
use crate::registry::Registry;
use api::Status;

/// `[scheme:]name[:port]`, as upstream's `SplitSchemeNamePort`.
fn split(id: &str) -> Result<(&str, &str, &str), Status> {
    let parts: Vec<&str> = id.split(':').collect();
    let bad = || Status::bad_request(format!("invalid request {id:?}"));
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] if ["http", "https"].contains(scheme) => (*scheme, *name, *port),
        _ => return Err(bad()),
    };
    if name.is_empty() {
        return Err(bad());
    }
    Ok((scheme, name, port))
}

/// Forwards `req` to the pod or service `id` in `ns` (`kind`: "pods" or "services").
pub async fn proxy(
    reg: &Registry,
    client: &podlogs::KubeletClient,
    kind: &str,
    ns: &str,
    id: &str,
    req: axum::extract::Request,
) -> Result<Response, Status> {
    let (scheme, name, port) = split(id)?;
    let (host, port) = match kind {
        "pods" => pod_location(&reg.get(resource("pods"), Some(ns), name).await?, port)?,
        _ => service_location(reg, ns, name, port).await?,
    };
    let path = podlogs::proxied_path(req.uri(), &format!("/{kind}/{id}/proxy"));
    let authority = podlogs::authority(&host, port);
    let mut forward = hyper::Request::builder()
        .method(req.method().clone())
        .uri(&path)
        .header(header::HOST, &authority);
    let mut headers = req.headers().clone();
    tls::strip_hop_by_hop(&mut headers);
    // The caller's credentials are for the API server, not the pod.
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::HOST);
    if let Some(h) = forward.headers_mut() {
        h.extend(headers);
    }
    let forward = forward
        .body(req.into_body())
        .map_err(|e| Status::internal(e.to_string()))?;
    let https = scheme == "https";
    let url = format!(
        "{}://{authority}{path}",
        if https { "https" } else { "http" }
    );
    let failed = |e: String| {
        Status::new(
            503,
            "ServiceUnavailable",
            format!("error trying to reach service: {e}"),
        )
    };
    let answer = tokio::time::timeout(podlogs::CONNECT_TIMEOUT, async {
        // HTTPS to pods is not verified, as upstream's proxy does not verify them either.
        let tls = https.then(|| client.anonymous.clone());
        let mut send = podlogs::connect(tls, &host, port).await?;
        send.send_request(forward).await.map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| failed(format!("Get {url:?}: timeout awaiting response headers")))?
    .map_err(failed)?;
    let (parts, body) = answer.into_parts();
    let mut out = Response::new(Body::new(body));
    *out.status_mut() = parts.status;
    let mut headers = parts.headers;
    tls::strip_hop_by_hop(&mut headers);
    *out.headers_mut() = headers;
    Ok(out)
}

/// A pod's address, and the port asked for or its first container port.
fn pod_location(pod: &Value, port: &str) -> Result<(String, u16), Status> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
    if ip.is_empty() {
        return Err(Status::bad_request(format!(
            "pod {name} does not have an IP address"
        )));
    }
    let port = if port.is_empty() {
        pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|c| c["ports"][0]["containerPort"].as_u64())
            .unwrap_or(80)
            .to_string()
    } else {
        port.to_string()
    };
    let port: u16 = port
        .parse()
        .map_err(|_| Status::bad_request(format!("invalid port {port:?}")))?;
    Ok((ip.to_string(), port))
}

/// One ready endpoint of the service's port `port` (a name or number; empty for its only one).
async fn service_location(
    reg: &Registry,
    ns: &str,
    name: &str,
    port: &str,
) -> Result<(String, u16), Status> {
    let svc = reg.get(resource("services"), Some(ns), name).await?;
    let ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
    let chosen = ports.iter().find(|p| {
        (port.is_empty() && ports.len() == 1)
            || p["name"].as_str() == Some(port)
            || p["port"].as_u64().map(|n| n.to_string()).as_deref() == Some(port)
    });
    let Some(chosen) = chosen else {
        return Err(Status::new(
            503,
            "ServiceUnavailable",
            format!("no service port {port:?} found for service {name:?}"),
        ));
    };
    let port_name = chosen["name"].as_str().unwrap_or_default();
    let none = || {
        Status::new(
            503,
            "ServiceUnavailable",
            format!("no endpoints available for service {name:?}"),
        )
    };
    let endpoints = reg
        .get(resource("endpoints"), Some(ns), name)
        .await
        .map_err(|_| none())?;
    for subset in endpoints["subsets"].as_array().into_iter().flatten() {
        let Some(p) = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or_default() == port_name)
            .and_then(|p| p["port"].as_u64())
        else {
            continue;
        };
        if let Some(ip) = subset["addresses"][0]["ip"].as_str() {
            return Ok((ip.to_string(), p as u16));
        }
    }
    Err(none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_a_scheme_and_a_port() {
        assert_eq!(split("web").unwrap(), ("", "web", ""));
        assert_eq!(split("web:8080").unwrap(), ("", "web", "8080"));
        assert_eq!(split("https:web:443").unwrap(), ("https", "web", "443"));
        assert!(split("ftp:web:21").is_err());
        assert!(split(":80").is_err());
    }

    #[test]
    fn pods_go_to_their_address_and_first_port() {
        let pod = serde_json::json!({"metadata": {"name": "p"}, "status": {"podIP": "10.1.0.5"},
            "spec": {"containers": [{"name": "a"}, {"name": "b", "ports": [{"containerPort": 8080}]}]}});
        assert_eq!(
            pod_location(&pod, "").unwrap(),
            ("10.1.0.5".to_string(), 8080)
        );
        assert_eq!(
            pod_location(&pod, "9000").unwrap(),
            ("10.1.0.5".to_string(), 9000)
        );
        let pending = serde_json::json!({"metadata": {"name": "p"}, "spec": {}});
        assert_eq!(
            pod_location(&pending, "").unwrap_err().message,
            "pod p does not have an IP address"
        );
    }
}
