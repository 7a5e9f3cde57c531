//! Connect subresources (upstream's `rest.Connecter`): requests that end in a stream to, or
//! through, a node's agent instead of in the store: `nodes/proxy`, `pods/proxy`,
//! `services/proxy`, `pods/log`, and `pods/exec`, `pods/attach`, `pods/portforward`. [`of`]
//! is the one place that says which resource has which; the work is in `podlogs`,
//! `podproxy` and `podstream`.

use api::{Resource, Status};
use axum::extract::Request;
use axum::response::Response;

use crate::admission::{Attributes, Operation};
use crate::authn::Identity;
use crate::handlers::App;

/// A connect subresource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connect {
    /// `nodes/<name>/proxy/<path>`: to the node's agent.
    NodeProxy,
    /// `pods|services/<name>/proxy/<path>`: to a pod's or a Service's endpoint.
    Proxy,
    /// `pods/<name>/log`.
    Log,
    /// `pods/<name>/exec|attach|portforward`: a stream to the container.
    Stream,
}

/// The connect subresource `verb` on `r`'s `sub` is, if it is one.
pub(crate) fn of(r: &Resource, verb: &str, sub: &str) -> Option<Connect> {
    match (r.group_plural(), verb, sub) {
        (("", "nodes"), "get", "proxy") => Some(Connect::NodeProxy),
        (("", "pods" | "services"), _, "proxy") => Some(Connect::Proxy),
        (("", "pods"), "get", "log") => Some(Connect::Log),
        (("", "pods"), "create", "exec" | "attach" | "portforward") => Some(Connect::Stream),
        _ => None,
    }
}

/// What a connect request names.
pub(crate) struct Target<'a> {
    /// The resource.
    pub r: &'a Resource,
    /// Its namespace (`default` for a namespaced resource addressed without one).
    pub ns: Option<&'a str>,
    /// The object's name (with `scheme:name:port` for a proxy).
    pub name: &'a str,
    /// The subresource.
    pub sub: &'a str,
    /// The query parameters.
    pub query: &'a api::request::Query,
    /// Who asks.
    pub who: &'a Identity,
}

/// Serves a connect request.
pub(crate) async fn serve(
    app: &App,
    kind: Connect,
    t: Target<'_>,
    mut req: Request,
) -> Result<Response, Status> {
    let reg = &app.registry;
    let ns = t.ns.unwrap_or("default");
    if kind != Connect::Log {
        admit(reg, &t).await?;
    }
    match kind {
        Connect::NodeProxy => {
            crate::podlogs::node_proxy(reg, &app.kubelet, t.name, req.uri()).await
        }
        Connect::Proxy => {
            crate::podproxy::proxy(reg, &app.kubelet, &t.r.plural, ns, t.name, req).await
        }
        Connect::Log => {
            let logs = crate::podlogs::logs(reg, &app.kubelet, ns, t.name, t.query).await?;
            if crate::wsstream::is_websocket(req.headers()) {
                return Ok(crate::wsstream::stream(&mut req, logs.into_body()));
            }
            Ok(logs)
        }
        Connect::Stream => crate::podstream::proxy(reg, &app.kubelet, ns, t.name, t.sub, req).await,
    }
}

/// Passes a connect request through admission, as upstream does (`pods/log` is a read, not a
/// connect): the object is the request's options, its query parameters under the kind of
/// upstream's options (`PodExecOptions`, ...).
async fn admit(reg: &crate::registry::Registry, t: &Target<'_>) -> Result<(), Status> {
    let kind = match (t.r.plural.as_str(), t.sub) {
        ("pods", "exec") => "PodExecOptions",
        ("pods", "attach") => "PodAttachOptions",
        ("pods", "portforward") => "PodPortForwardOptions",
        ("pods", _) => "PodProxyOptions",
        ("services", _) => "ServiceProxyOptions",
        _ => "NodeProxyOptions",
    };
    let mut options =
        serde_json::json!({"kind": kind, "apiVersion": "v1", "metadata": {"name": t.name}});
    for (k, v) in &t.query.0 {
        options[k] = serde_json::json!(v);
    }
    let attributes = Attributes {
        operation: Operation::Connect,
        resource: t.r,
        subresource: Some(t.sub),
        namespace: t.ns,
        old: None,
        user: Some(t.who),
        dry_run: false,
    };
    reg.admit_request(&attributes, &options).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_subresources_are_where_upstream_serves_them() {
        let find = |p| api::resources::find("", "v1", p).unwrap();
        assert_eq!(of(find("nodes"), "get", "proxy"), Some(Connect::NodeProxy));
        assert_eq!(of(find("nodes"), "create", "proxy"), None);
        assert_eq!(
            of(find("services"), "options", "proxy"),
            Some(Connect::Proxy)
        );
        assert_eq!(of(find("pods"), "get", "log"), Some(Connect::Log));
        assert_eq!(of(find("pods"), "create", "exec"), Some(Connect::Stream));
        assert_eq!(of(find("pods"), "get", "status"), None);
        assert_eq!(of(find("configmaps"), "get", "proxy"), None);
    }
}
