//! Reading a request: which resource, namespace, name, subresource and verb a URL and method
//! address (upstream's `RequestInfo`), and the list/watch query options.

use std::collections::HashMap;
use std::sync::Arc;

use crate::Resource;
use crate::Status;
use crate::resources::Catalog;

/// What an API request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// The resource.
    pub resource: Arc<Resource>,
    /// The namespace in the URL.
    pub namespace: Option<String>,
    /// The object name, for requests on one object.
    pub name: Option<String>,
    /// The subresource (`status`, `scale`, ...).
    pub subresource: Option<String>,
    /// Upstream's verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: &'static str,
}

/// Where a URL points in the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`.
    ResourceList(String, String),
    /// A resource request.
    Resource(RequestInfo),
}

/// Subresources of namespaces, told apart from resources inside a namespace.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Parses an API path and method against the resources `served` now. `watch` is the `watch`
/// query parameter.
pub fn parse(path: &str, method: &str, watch: bool, served: &Catalog) -> Result<Target, Status> {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return Ok(Target::CoreVersions),
        ["apis"] => return Ok(Target::Groups),
        ["apis", g] => return Ok(Target::Group(g.to_string())),
        ["api", v] => return Ok(Target::ResourceList(String::new(), v.to_string())),
        ["apis", g, v] => return Ok(Target::ResourceList(g.to_string(), v.to_string())),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(Status::path_not_found()),
    };
    let mut rest = rest.to_vec();
    let mut watch = watch;
    if rest.first() == Some(&"watch") {
        watch = true;
        rest.remove(0);
    }
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = Some(rest[1].to_string());
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest.drain(..2);
        }
    }
    let (plural, name, subresource) = match rest.as_slice() {
        [r] => (*r, None, None),
        [r, n] => (*r, Some(n.to_string()), None),
        [r, n, s] => (*r, Some(n.to_string()), Some(s.to_string())),
        // `nodes|pods|services/<name>/proxy/<path...>`: the path goes to the target.
        [r, n, "proxy", ..] => (*r, Some(n.to_string()), Some("proxy".to_string())),
        _ => return Err(Status::path_not_found()),
    };
    let resource = served
        .find(group, version, plural)
        .ok_or_else(Status::path_not_found)?;
    if plural == "namespaces" {
        // `/api/v1/namespaces/x` names the namespace itself.
        namespace = None;
    }
    if let Some(sub) = &subresource
        && !resource.has_subresource(sub)
    {
        return Err(Status::path_not_found());
    }
    if namespace.is_some() && !resource.namespaced {
        return Err(Status::path_not_found());
    }
    let verb = match (method, name.is_some()) {
        ("GET" | "HEAD", true) if watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) if watch => "watch",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        // Any method goes through a proxy subresource.
        ("OPTIONS", true) if subresource.as_deref() == Some("proxy") => "options",
        _ => {
            return Err(Status::new(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ));
        }
    };
    // Streaming into a pod is `create` on the subresource whatever the method: a WebSocket
    // upgrade is a GET (upstream's AuthorizePodWebsocketUpgradeCreatePermission).
    let verb = match subresource.as_deref() {
        Some("exec" | "attach" | "portforward") if verb == "get" => "create",
        _ => verb,
    };
    // A watch on one name is a watch of the collection narrowed to it.
    let name = if verb == "watch" { None } else { name };
    Ok(Target::Resource(RequestInfo {
        resource,
        namespace,
        name,
        subresource,
        verb,
    }))
}

/// The query parameters of a request.
#[derive(Debug, Clone, Default)]
pub struct Query(pub HashMap<String, String>);

impl Query {
    /// Parses a query string.
    pub fn parse(q: Option<&str>) -> Query {
        let mut map = HashMap::new();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(decode(k), decode(v));
        }
        Query(map)
    }

    /// A parameter's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A boolean parameter, parsed as Go's `strconv.ParseBool` does (`1`, `t`, `true`,
    /// `True`, `TRUE`; the Python client sends `True`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.get(key),
            Some("1" | "t" | "T" | "true" | "True" | "TRUE")
        )
    }

    /// Whether `dryRun=All` was asked for.
    pub fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(path: &str, method: &str) -> RequestInfo {
        match parse(path, method, false, &Catalog::new()).unwrap() {
            Target::Resource(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paths_parse_like_upstream() {
        let r = info("/api/v1/namespaces/default/pods/web", "GET");
        assert_eq!(
            (
                r.resource.plural.as_str(),
                r.namespace.as_deref(),
                r.name.as_deref(),
                r.verb
            ),
            ("pods", Some("default"), Some("web"), "get")
        );
        let r = info("/api/v1/namespaces/default/pods", "GET");
        assert_eq!(r.verb, "list");
        let r = info("/api/v1/namespaces/kube-system", "GET");
        assert_eq!(
            (r.resource.plural.as_str(), r.name.as_deref(), r.namespace),
            ("namespaces", Some("kube-system"), None)
        );
        let r = info("/api/v1/namespaces/x/status", "PUT");
        assert_eq!(
            (r.resource.plural.as_str(), r.subresource.as_deref(), r.verb),
            ("namespaces", Some("status"), "update")
        );
        let r = info("/apis/apps/v1/namespaces/d/deployments/web/scale", "PATCH");
        assert_eq!(
            (r.resource.plural.as_str(), r.subresource.as_deref(), r.verb),
            ("deployments", Some("scale"), "patch")
        );
        let r = info("/api/v1/pods", "GET");
        assert_eq!((r.namespace, r.verb), (None, "list"));
        let r = info("/api/v1/watch/namespaces/d/pods", "GET");
        assert_eq!(r.verb, "watch");
        assert_eq!(info("/api/v1/nodes/n1", "DELETE").verb, "delete");
        assert_eq!(
            info("/api/v1/namespaces/d/configmaps", "DELETE").verb,
            "deletecollection"
        );
        assert!(parse("/api/v1/namespaces/d/nodes", "GET", false, &Catalog::new()).is_err());
        assert!(parse("/api/v1/widgets", "GET", false, &Catalog::new()).is_err());
        assert!(
            parse(
                "/api/v1/namespaces/d/pods/p/nonsense",
                "GET",
                false,
                &Catalog::new()
            )
            .is_err()
        );
        // Streaming is `create`, a WebSocket GET included; a node's proxy takes a path.
        let r = info("/api/v1/namespaces/d/pods/p/exec", "GET");
        assert_eq!((r.subresource.as_deref(), r.verb), (Some("exec"), "create"));
        let r = info("/api/v1/nodes/n1/proxy/stats/summary", "GET");
        assert_eq!(
            (r.name.as_deref(), r.subresource.as_deref(), r.verb),
            (Some("n1"), Some("proxy"), "get")
        );
        let r = info("/api/v1/namespaces/d/pods/p:80/proxy/x", "OPTIONS");
        assert_eq!(
            (r.name.as_deref(), r.subresource.as_deref(), r.verb),
            (Some("p:80"), Some("proxy"), "options")
        );
        assert!(
            parse(
                "/api/v1/namespaces/d/pods/p/logs/x",
                "GET",
                false,
                &Catalog::new()
            )
            .is_err()
        );
        assert_eq!(
            parse("/apis", "GET", false, &Catalog::new()).unwrap(),
            Target::Groups
        );
        assert_eq!(
            parse("/apis/apps/v1", "GET", false, &Catalog::new()).unwrap(),
            Target::ResourceList("apps".into(), "v1".into())
        );
    }

    #[test]
    fn resources_added_at_run_time_parse_until_removed() {
        let served = Catalog::new();
        let path = "/apis/example.com/v1/namespaces/d/widgets/w/scale";
        assert!(parse(path, "GET", false, &served).is_err());
        let mut widgets = crate::resources::find("apps", "v1", "deployments")
            .unwrap()
            .clone();
        (widgets.group, widgets.kind, widgets.plural) =
            ("example.com".into(), "Widget".into(), "widgets".into());
        served.add(widgets);
        let Target::Resource(r) = parse(path, "GET", false, &served).unwrap() else {
            panic!("a resource request");
        };
        assert_eq!((r.resource.kind.as_str(), r.verb), ("Widget", "get"));
        assert!(served.remove("example.com", "v1", "widgets"));
        assert!(parse(path, "GET", false, &served).is_err());
    }

    #[test]
    fn queries_decode() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&watch=true&limit=5",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert!(Query::parse(Some("watch=True")).flag("watch"));
        assert!(!Query::parse(Some("watch=false")).flag("watch"));
        assert_eq!(q.get("limit"), Some("5"));
        assert_eq!(Query::parse(Some("a=%zz%")).get("a"), Some("%zz%"));
    }
}
