//! Headers that belong to one HTTP connection and are never forwarded by a proxy (RFC 9110
//! section 7.6.1), shared by the API server's pod and service proxy and the Ingress proxy.

use axum::http::{HeaderMap, HeaderName, header};

/// The hop-by-hop headers every proxy drops, whatever the `Connection` header says.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether the `Connection` header lists `token` (case-insensitively).
pub fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(token))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes the hop-by-hop headers, `Upgrade` and those the `Connection` header names. A proxy
/// that passes an upgrade on sets `Connection` and `Upgrade` again itself.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_listed_and_named_headers_only() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, X-Private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::ACCEPT, "*/*".parse().unwrap());
        assert!(connection_has(&h, "x-private"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["accept"]);
    }
}
