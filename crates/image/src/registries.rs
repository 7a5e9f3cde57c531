//! Where and how to reach registries: credentials (`Auth`, Docker config JSON from
//! imagePullSecrets) and k3s-style `registries.yaml` (mirrors, per-host auth and TLS).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::Error;
use crate::reference::DEFAULT_REGISTRY;

/// Credentials for one registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No credentials (an anonymous bearer token is still fetched when the registry asks).
    #[default]
    Anonymous,
    /// A user name and password (or token), sent as HTTP basic auth or exchanged for a
    /// bearer token.
    Basic {
        /// The user name.
        username: String,
        /// The password or access token.
        password: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

impl Auth {
    pub(crate) fn to_oci(&self) -> oci_client::secrets::RegistryAuth {
        match self {
            Auth::Anonymous => oci_client::secrets::RegistryAuth::Anonymous,
            Auth::Basic { username, password } => {
                oci_client::secrets::RegistryAuth::Basic(username.clone(), password.clone())
            }
        }
    }
}

/// The credentials a `kubernetes.io/dockerconfigjson` (or legacy `.dockercfg`) secret
/// holds for `registry` (a host such as `docker.io` or `localhost:5000`).
///
/// An entry's key may be a host, a URL (`https://index.docker.io/v1/` is Docker Hub) or a
/// wildcard (`*.example.com`); its credentials come from `auth` (base64 `user:pass`) or
/// from `username` and `password`. Returns `None` when no entry matches.
pub fn auth_from_docker_config(json: &[u8], registry: &str) -> Option<Auth> {
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        auth: Option<String>,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<String>,
    }
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    // dockerconfigjson has {"auths": {...}}; the legacy .dockercfg is the map itself.
    let auths = match value.get("auths") {
        Some(a) => a.as_object()?.clone(),
        None => value.as_object()?.clone(),
    };
    let want = normalise_host(registry);
    let entry_auth = |v: &serde_json::Value| -> Option<Auth> {
        let e: Entry = serde_json::from_value(v.clone()).ok()?;
        if let Some(encoded) = e.auth.filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (username, password) = text.split_once(':')?;
            return Some(Auth::Basic {
                username: username.to_string(),
                password: password.to_string(),
            });
        }
        match (e.username, e.password) {
            (Some(u), Some(p)) if !u.is_empty() || !p.is_empty() => Some(Auth::Basic {
                username: u,
                password: p,
            }),
            _ => None,
        }
    };
    // An exact host match wins over a wildcard.
    for (key, v) in &auths {
        if normalise_host(key) == want
            && let Some(a) = entry_auth(v)
        {
            return Some(a);
        }
    }
    for (key, v) in &auths {
        if glob_host_matches(&normalise_host(key), &want)
            && let Some(a) = entry_auth(v)
        {
            return Some(a);
        }
    }
    None
}

/// `https://index.docker.io/v1/` -> `docker.io`; `http://h:5000/x` -> `h:5000`.
fn normalise_host(key: &str) -> String {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DEFAULT_REGISTRY.to_string()
        }
        _ => host,
    }
}

/// `*.example.com` matches `a.example.com` (one label per `*`), ports must be equal.
fn glob_host_matches(pattern: &str, host: &str) -> bool {
    if !pattern.contains('*') {
        return false;
    }
    let (p_host, p_port) = split_port(pattern);
    let (h_host, h_port) = split_port(host);
    if p_port != h_port {
        return false;
    }
    let p: Vec<&str> = p_host.split('.').collect();
    let h: Vec<&str> = h_host.split('.').collect();
    p.len() == h.len() && p.iter().zip(&h).all(|(p, h)| *p == "*" || p == h)
}

fn split_port(host: &str) -> (&str, Option<&str>) {
    if host.ends_with(']') {
        return (host, None);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => (h, Some(p)),
        _ => (host, None),
    }
}

/// Whether `host` (`name[:port]`, `[v6]:port`) is on the loopback interface.
pub(crate) fn is_loopback(host: &str) -> bool {
    let bare = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        split_port(host).0
    };
    if bare.eq_ignore_ascii_case("localhost") || bare.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// How to reach registries: mirrors, per-host credentials and TLS, and which hosts may
/// be reached over plain HTTP.
///
/// Loaded from a k3s-style `registries.yaml`:
///
/// ```yaml
/// mirrors:
///   docker.io:
///     endpoint: ["http://127.0.0.1:5000"]
/// configs:
///   "registry.example.com:5000":
///     auth: {username: user, password: secret}
///     tls: {insecure_skip_verify: true, ca_file: /etc/ssl/my-ca.pem}
/// ```
///
/// A mirror's endpoints are tried in order, then the registry itself (`"*"` mirrors every
/// registry). Plain HTTP is used only for an endpoint written with `http://`, and as a
/// fallback after HTTPS for hosts on loopback (`localhost`, 127.0.0.0/8, `::1`) or listed
/// as insecure (`tls.insecure_skip_verify`, or [`Registries::with_insecure`]); HTTPS to
/// those hosts does not verify the certificate.
#[derive(Default, Clone, Debug)]
pub struct Registries {
    mirrors: BTreeMap<String, Vec<String>>,
    configs: BTreeMap<String, HostConfig>,
    insecure: BTreeSet<String>,
}

#[derive(Default, Clone, Debug)]
struct HostConfig {
    auth: Option<Auth>,
    insecure_skip_verify: bool,
    ca_pem: Option<Vec<u8>>,
}

/// One place to try a pull from.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    /// `host[:port]`, as the registry part of the request URLs.
    pub(crate) host: String,
    /// The schemes to try, in order.
    pub(crate) schemes: Vec<Scheme>,
    /// Accept any certificate over HTTPS.
    pub(crate) skip_verify: bool,
    /// Extra CA certificate (PEM) to trust.
    pub(crate) ca_pem: Option<Vec<u8>>,
    /// Credentials from registries.yaml for this host.
    pub(crate) auth: Option<Auth>,
    /// Whether this is a mirror rather than the registry itself.
    pub(crate) mirror: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Scheme {
    Https,
    Http,
}

impl Registries {
    /// Reads a `registries.yaml`. A missing file is no configuration at all (like k3s).
    pub fn load(path: &Path) -> crate::Result<Registries> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Registries::default());
            }
            Err(e) => {
                return Err(e).map_err(|e| Error::file(format!("reading {}", path.display()), e));
            }
        };
        Registries::from_yaml(&text).map_err(|e| Error::Registries {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Parses the text of a `registries.yaml`.
    pub fn from_yaml(text: &str) -> crate::Result<Registries> {
        #[derive(Deserialize, Default)]
        struct File {
            #[serde(default)]
            mirrors: Option<BTreeMap<String, Mirror>>,
            #[serde(default)]
            configs: Option<BTreeMap<String, Config>>,
        }
        #[derive(Deserialize, Default)]
        struct Mirror {
            #[serde(default)]
            endpoint: Option<Vec<String>>,
        }
        #[derive(Deserialize, Default)]
        struct Config {
            #[serde(default)]
            auth: Option<AuthYaml>,
            #[serde(default)]
            tls: Option<Tls>,
        }
        #[derive(Deserialize, Default)]
        struct AuthYaml {
            #[serde(default)]
            username: Option<String>,
            #[serde(default)]
            password: Option<String>,
            #[serde(default)]
            auth: Option<String>,
        }
        #[derive(Deserialize, Default)]
        struct Tls {
            #[serde(default)]
            insecure_skip_verify: Option<bool>,
            #[serde(default)]
            ca_file: Option<PathBuf>,
        }
        if text.trim().is_empty() {
            return Ok(Registries::default());
        }
        let file: File = serde_saphyr::from_str(text)?;
        let mut out = Registries::default();
        for (registry, m) in file.mirrors.unwrap_or_default() {
            let registry = normalise_host_keep_star(&registry);
            out.mirrors.insert(registry, m.endpoint.unwrap_or_default());
        }
        for (host, c) in file.configs.unwrap_or_default() {
            let auth = match c.auth {
                Some(a) => {
                    if let Some(encoded) = a.auth.filter(|s| !s.is_empty()) {
                        let text = base64::engine::general_purpose::STANDARD
                            .decode(encoded.trim())
                            .map_err(|e| {
                                Error::Invalid(format!("configs: auth.auth is not base64: {e}"))
                            })?;
                        let text = String::from_utf8(text).map_err(|e| {
                            Error::Invalid(format!("configs: auth.auth is not UTF-8: {e}"))
                        })?;
                        let (u, p) = text.split_once(':').ok_or_else(|| {
                            Error::invalid("configs: auth.auth is not user:password")
                        })?;
                        Some(Auth::Basic {
                            username: u.to_string(),
                            password: p.to_string(),
                        })
                    } else {
                        match (a.username, a.password) {
                            (None, None) => None,
                            (u, p) => Some(Auth::Basic {
                                username: u.unwrap_or_default(),
                                password: p.unwrap_or_default(),
                            }),
                        }
                    }
                }
                None => None,
            };
            let tls = c.tls.unwrap_or_default();
            let ca_pem =
                match tls.ca_file {
                    Some(path) => Some(std::fs::read(&path).map_err(|e| {
                        Error::file(format!("reading ca_file {}", path.display()), e)
                    })?),
                    None => None,
                };
            out.configs.insert(
                normalise_host(&host),
                HostConfig {
                    auth,
                    insecure_skip_verify: tls.insecure_skip_verify.unwrap_or(false),
                    ca_pem,
                },
            );
        }
        Ok(out)
    }

    /// Adds a mirror endpoint (`http://127.0.0.1:5000`, `https://mirror.example`) for
    /// `registry` (`docker.io`, or `*` for all registries).
    pub fn with_mirror(mut self, registry: &str, endpoint: &str) -> Registries {
        self.mirrors
            .entry(normalise_host_keep_star(registry))
            .or_default()
            .push(endpoint.to_string());
        self
    }

    /// Marks `host` (`name[:port]`) insecure: HTTPS without certificate checks, then HTTP.
    pub fn with_insecure(mut self, host: &str) -> Registries {
        self.insecure.insert(normalise_host(host));
        self
    }

    /// Sets the credentials used for `host`.
    pub fn with_auth(mut self, host: &str, auth: Auth) -> Registries {
        self.configs.entry(normalise_host(host)).or_default().auth = Some(auth);
        self
    }

    fn insecure(&self, host: &str) -> bool {
        is_loopback(host)
            || self.insecure.contains(host)
            || self
                .configs
                .get(host)
                .is_some_and(|c| c.insecure_skip_verify)
    }

    /// The endpoints to try for `registry`, mirrors first.
    pub(crate) fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let registry = normalise_host(registry);
        let mirrors = self
            .mirrors
            .get(&registry)
            .or_else(|| self.mirrors.get("*"))
            .cloned()
            .unwrap_or_default();
        let mut out: Vec<Endpoint> = Vec::new();
        for url in mirrors {
            let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
                (Some(Scheme::Http), r)
            } else if let Some(r) = url.strip_prefix("https://") {
                (Some(Scheme::Https), r)
            } else {
                (None, url.as_str())
            };
            let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
            if host.is_empty() {
                continue;
            }
            let host = match host.as_str() {
                "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY.to_string(),
                _ => host,
            };
            let mirror = host != registry;
            out.push(self.endpoint(&host, scheme, mirror));
        }
        if !out.iter().any(|e| e.host == registry) {
            out.push(self.endpoint(&registry, None, false));
        }
        out
    }

    fn endpoint(&self, host: &str, scheme: Option<Scheme>, mirror: bool) -> Endpoint {
        let insecure = self.insecure(host);
        let config = self.configs.get(host).cloned().unwrap_or_default();
        let schemes = match scheme {
            Some(s) => vec![s],
            None if insecure => vec![Scheme::Https, Scheme::Http],
            None => vec![Scheme::Https],
        };
        Endpoint {
            host: host.to_string(),
            schemes,
            skip_verify: insecure,
            ca_pem: config.ca_pem,
            auth: config.auth,
            mirror,
        }
    }
}

fn normalise_host_keep_star(registry: &str) -> String {
    if registry.trim() == "*" {
        "*".to_string()
    } else {
        normalise_host(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> Option<Auth> {
        Some(Auth::Basic {
            username: u.into(),
            password: p.into(),
        })
    }

    #[test]
    fn docker_config_auths() {
        // "alice:s3cret:with:colons"
        let json = br#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"YWxpY2U6czNjcmV0OndpdGg6Y29sb25z"},
            "localhost:5000":{"username":"bob","password":"pw"},
            "*.example.com":{"username":"carol","password":"x"},
            "http://registry.internal:8080/v2/":{"auth":"ZGF2ZTpwdw=="}
        }}"#;
        assert_eq!(
            auth_from_docker_config(json, "docker.io"),
            basic("alice", "s3cret:with:colons")
        );
        assert_eq!(
            auth_from_docker_config(json, "localhost:5000"),
            basic("bob", "pw")
        );
        assert_eq!(
            auth_from_docker_config(json, "a.example.com"),
            basic("carol", "x")
        );
        assert_eq!(auth_from_docker_config(json, "a.b.example.com"), None);
        assert_eq!(
            auth_from_docker_config(json, "registry.internal:8080"),
            basic("dave", "pw")
        );
        assert_eq!(auth_from_docker_config(json, "quay.io"), None);
        assert_eq!(auth_from_docker_config(b"not json", "docker.io"), None);
        // Legacy .dockercfg: the map itself.
        let legacy = br#"{"quay.io":{"auth":"ZGF2ZTpwdw==","email":"x@y"}}"#;
        assert_eq!(
            auth_from_docker_config(legacy, "quay.io"),
            basic("dave", "pw")
        );
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "[fe80::1]:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn registries_yaml() {
        let r = Registries::from_yaml(
            r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "https://mirror.example.com"
configs:
  "mirror.example.com":
    auth:
      username: u
      password: p
  "secure.example.com:5000":
    tls:
      insecure_skip_verify: true
"#,
        )
        .unwrap();
        let eps = r.endpoints("docker.io");
        let hosts: Vec<_> = eps.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(hosts, ["127.0.0.1:5000", "mirror.example.com", "docker.io"]);
        assert_eq!(eps[0].schemes, [Scheme::Http]);
        assert!(eps[0].mirror);
        assert_eq!(eps[1].schemes, [Scheme::Https]);
        assert_eq!(eps[1].auth, basic("u", "p"));
        assert!(!eps[1].skip_verify);
        assert_eq!(eps[2].schemes, [Scheme::Https]);
        assert!(!eps[2].mirror);

        let eps = r.endpoints("secure.example.com:5000");
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].schemes, [Scheme::Https, Scheme::Http]);
        assert!(eps[0].skip_verify);

        // Plain HTTP only for loopback, http:// endpoints and insecure hosts.
        let eps = Registries::default().endpoints("quay.io");
        assert_eq!(eps[0].schemes, [Scheme::Https]);
        let eps = Registries::default().endpoints("localhost:5000");
        assert_eq!(eps[0].schemes, [Scheme::Https, Scheme::Http]);
        let eps = Registries::default()
            .with_insecure("10.1.1.1:5000")
            .endpoints("10.1.1.1:5000");
        assert_eq!(eps[0].schemes, [Scheme::Https, Scheme::Http]);

        let star = Registries::default().with_mirror("*", "http://10.0.0.2:5000");
        let hosts: Vec<_> = star
            .endpoints("quay.io")
            .into_iter()
            .map(|e| e.host)
            .collect();
        assert_eq!(hosts, ["10.0.0.2:5000", "quay.io"]);

        assert!(Registries::from_yaml("").unwrap().mirrors.is_empty());
        assert!(Registries::from_yaml("mirrors: [").is_err());
    }

    #[test]
    fn load_missing_file_is_empty() {
        let r = Registries::load(Path::new("/nonexistent/registries.yaml")).unwrap();
        assert!(r.mirrors.is_empty() && r.configs.is_empty());
    }
}
