//! OIDC ID tokens from an external issuer, as upstream's `--oidc-*` flags configure them: a
//! bearer JWT signed by one of the issuer's keys (found through its discovery document,
//! `<issuer>/.well-known/openid-configuration`, then its `jwks_uri`; RSA and EC keys), issued
//! by exactly the configured issuer URL, for the client ID (`aud`), not expired. The user is
//! the `--oidc-username-claim` (`sub` by default), prefixed with `--oidc-username-prefix`
//! (by default the issuer URL and `#`, except for `email`; `-` for none); an `email` claim
//! counts only when `email_verified` is not false. Groups come from `--oidc-groups-claim` (a
//! string or a list), each prefixed with `--oidc-groups-prefix`.
//!
//! Keys are fetched at the first token and again when a token names a key not yet known (at
//! most every ten seconds), as upstream's verifier refreshes them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Uri, header};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::Identity;

/// What `--oidc-*` says.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The issuer's URL (`https://...`), which tokens' `iss` must equal.
    pub issuer_url: String,
    /// The client ID tokens must be for.
    pub client_id: String,
    /// The claim naming the user.
    pub username_claim: String,
    /// What goes before user names; `None` for upstream's default.
    pub username_prefix: Option<String>,
    /// The claim listing the groups, if any.
    pub groups_claim: Option<String>,
    /// What goes before group names.
    pub groups_prefix: String,
    /// The CA that signed the issuer's serving certificate; the system's otherwise.
    pub ca_file: Option<PathBuf>,
}

/// Where the system keeps its trusted CAs (Debian's `ca-certificates`).
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How often unknown keys send us back to the issuer, at most.
const REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// A verification key: its ID and algorithm, if the JWKS says.
struct Key {
    kid: Option<String>,
    key: DecodingKey,
}

/// The OIDC authenticator.
pub struct Oidc {
    opts: Options,
    tls: Arc<rustls::ClientConfig>,
    keys: tokio::sync::Mutex<(Vec<Key>, Option<Instant>)>,
}

impl Oidc {
    /// The authenticator `opts` describe; its issuer must be an `https` URL.
    pub fn new(opts: Options) -> Result<Oidc, String> {
        if !opts.issuer_url.starts_with("https://") {
            return Err(format!(
                "--oidc-issuer-url must be an https URL, not {:?}",
                opts.issuer_url
            ));
        }
        let path = opts.ca_file.clone().unwrap_or_else(|| SYSTEM_CAS.into());
        let pem = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let roots = tls::roots(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Oidc {
            opts,
            tls: Arc::new(tls),
            keys: tokio::sync::Mutex::new((Vec::new(), None)),
        })
    }

    /// The user `token` stands for, when it is a valid ID token of the issuer.
    pub async fn authenticate(&self, token: &str) -> Option<Identity> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if !allowed(header.alg) {
            return None;
        }
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.opts.issuer_url]);
        v.set_audience(&[&self.opts.client_id]);
        let claims = self.verify(token, header.kid.as_deref(), &v).await?;
        self.identity(&claims)
    }

    /// The token's claims, checked with the key it names (fetching the issuer's keys when it
    /// is not known yet).
    async fn verify(&self, token: &str, kid: Option<&str>, v: &Validation) -> Option<Value> {
        let mut keys = self.keys.lock().await;
        let known = |keys: &[Key]| {
            keys.iter()
                .any(|k| kid.is_none() || k.kid.as_deref() == kid)
        };
        let due = keys.1.is_none_or(|t| t.elapsed() >= REFRESH_INTERVAL);
        if !known(&keys.0) && due {
            keys.1 = Some(Instant::now());
            match self.fetch_keys().await {
                Ok(fetched) => keys.0 = fetched,
                Err(e) => tracing::warn!(issuer = %self.opts.issuer_url, "OIDC keys: {e}"),
            }
        }
        keys.0
            .iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .find_map(|k| jsonwebtoken::decode::<Value>(token, &k.key, v).ok())
            .map(|data| data.claims)
    }

    /// The user and groups the claims name, as the options say.
    fn identity(&self, claims: &Value) -> Option<Identity> {
        let o = &self.opts;
        let name = claims[&o.username_claim].as_str()?;
        if o.username_claim == "email" && claims["email_verified"] == false {
            return None;
        }
        let prefix = match o.username_prefix.as_deref() {
            Some("-") => String::new(),
            Some(p) => p.to_string(),
            None if o.username_claim == "email" => String::new(),
            None => format!("{}#", o.issuer_url),
        };
        let groups = match o.groups_claim.as_deref().map(|c| &claims[c]) {
            Some(Value::String(g)) => vec![g.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        let groups = groups
            .into_iter()
            .map(|g| format!("{}{g}", o.groups_prefix))
            .collect();
        Some(Identity::new(format!("{prefix}{name}"), groups))
    }

    /// The issuer's keys: its discovery document, then its JWKS.
    async fn fetch_keys(&self) -> Result<Vec<Key>, String> {
        let base = self.opts.issuer_url.trim_end_matches('/');
        let discovery = self
            .get_json(&format!("{base}/.well-known/openid-configuration"))
            .await?;
        let jwks_uri = discovery["jwks_uri"]
            .as_str()
            .ok_or("the discovery document has no jwks_uri")?;
        let jwks = self.get_json(jwks_uri).await?;
        let keys = jwks["keys"].as_array().ok_or("the JWKS has no keys")?;
        Ok(keys.iter().filter_map(key_of).collect())
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(443);
        let mut send = crate::podlogs::connect(Some(self.tls.clone()), host, port).await?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let req = hyper::Request::get(path)
            .header(header::HOST, crate::podlogs::authority(host, port))
            .header(header::ACCEPT, "application/json")
            .body(axum::body::Body::empty())
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
            .await
            .map_err(|_| format!("{url}: timed out"))?
            .map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: {}", resp.status()));
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
    }
}

/// A JWK as a verification key: RSA (`n`, `e`) or EC (`x`, `y`) for signatures.
fn key_of(jwk: &Value) -> Option<Key> {
    if jwk["use"].as_str().is_some_and(|u| u != "sig") {
        return None;
    }
    let text = |k: &str| jwk[k].as_str();
    let key = match text("kty")? {
        "RSA" => DecodingKey::from_rsa_components(text("n")?, text("e")?).ok()?,
        "EC" => DecodingKey::from_ec_components(text("x")?, text("y")?).ok()?,
        _ => return None,
    };
    Some(Key {
        kid: text("kid").map(str::to_string),
        key,
    })
}

/// The algorithms ID tokens may be signed with (upstream's default list).
fn allowed(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn oidc(claim: &str, prefix: Option<&str>) -> Oidc {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        Oidc::new(Options {
            issuer_url: "https://issuer.example".into(),
            client_id: "rudder".into(),
            username_claim: claim.into(),
            username_prefix: prefix.map(str::to_string),
            groups_claim: Some("groups".into()),
            groups_prefix: "oidc:".into(),
            ca_file: Some(ca),
        })
        .unwrap()
    }

    #[test]
    fn users_and_groups_come_from_the_claims_as_configured() {
        let claims = json!({"sub": "u1", "email": "jane@example.com", "groups": ["devs", "ops"]});
        let by_sub = oidc("sub", None).identity(&claims).unwrap();
        assert_eq!(by_sub.user, "https://issuer.example#u1");
        assert_eq!(
            by_sub.groups,
            ["oidc:devs", "oidc:ops", "system:authenticated"]
        );
        let by_email = oidc("email", None).identity(&claims).unwrap();
        assert_eq!(by_email.user, "jane@example.com");
        let unverified = json!({"email": "jane@example.com", "email_verified": false});
        assert!(oidc("email", None).identity(&unverified).is_none());
        assert_eq!(oidc("sub", Some("-")).identity(&claims).unwrap().user, "u1");
        assert_eq!(
            oidc("sub", Some("corp:")).identity(&claims).unwrap().user,
            "corp:u1"
        );
        assert!(
            Oidc::new(Options {
                issuer_url: "http://plain".into(),
                ..Options::default()
            })
            .is_err()
        );
    }
}
