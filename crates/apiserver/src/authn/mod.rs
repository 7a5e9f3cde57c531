//! Who is calling: TLS client certificates (user = CN, groups = O), bearer tokens from a
//! static token file (kube-apiserver's `--token-auth-file` CSV format), the join token
//! (a bootstrap token, `<id>.<secret>`, as `system:bootstrap:<id>` in `system:bootstrappers`)
//! service-account tokens ([`serviceaccount`], handed out by [`token_request`]) and ID tokens
//! of an external OIDC issuer ([`oidc`]).
//! [`review`] answers TokenReviews and SelfSubjectReviews (`kubectl auth whoami`).
//! What an identity may do is [`crate::authz`]'s to decide.

pub mod impersonation;
pub mod oidc;
pub mod review;
pub mod secret_token;
pub mod serviceaccount;
pub mod token_request;

use std::collections::HashMap;
use std::path::Path;

use crate::registry::Registry;
use serviceaccount::{Claims, Signer};

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user name.
    pub user: String,
    /// The groups, including `system:authenticated`.
    pub groups: Vec<String>,
}

impl Identity {
    pub(crate) fn new(user: String, mut groups: Vec<String>) -> Identity {
        groups.push("system:authenticated".into());
        Identity { user, groups }
    }
}

/// The identity in a verified client certificate (DER): CN is the user, each O a group.
pub fn from_certificate(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(Identity::new(user, groups))
}

/// Bearer tokens and who they stand for.
#[derive(Debug, Clone, Default)]
pub struct Tokens(HashMap<String, Identity>);

impl Tokens {
    /// Reads a token file: one `token,user,uid[,"group1,group2"]` line per token; `#` starts a
    /// comment.
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Tokens::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn parse(text: &str) -> Result<Tokens, String> {
        let mut map = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            if fields.len() < 3 || fields[0].is_empty() || fields[1].is_empty() {
                return Err(format!(
                    "line {}: expected token,user,uid[,\"groups\"]",
                    n + 1
                ));
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            map.insert(fields[0].clone(), Identity::new(fields[1].clone(), groups));
        }
        Ok(Tokens(map))
    }

    /// Accepts the bootstrap token `token` (`<id>.<secret>`, see [`is_bootstrap_token`]) as
    /// user `system:bootstrap:<id>` in group `system:bootstrappers`.
    pub fn add_bootstrap(&mut self, token: &str) -> Result<(), String> {
        if !is_bootstrap_token(token) {
            return Err(format!(
                "{token:?} is not a bootstrap token (6 and 16 characters of [a-z0-9], joined by a dot)"
            ));
        }
        let id = &token[..6];
        self.0.insert(
            token.to_string(),
            Identity::new(
                format!("system:bootstrap:{id}"),
                vec![BOOTSTRAPPERS.to_string()],
            ),
        );
        Ok(())
    }

    /// The identity behind an `Authorization` header value, if it is a known bearer token.
    pub fn authenticate(&self, header: &str) -> Option<Identity> {
        self.0.get(bearer(header)?).cloned()
    }
}

/// The token of an `Authorization` header value `Bearer <token>`, the scheme in any case
/// (the Python client sends `bearer`), as upstream's bearer-token authenticator reads it: the
/// second space-separated word, not empty.
pub fn bearer(header: &str) -> Option<&str> {
    let mut parts = header.trim().splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next().filter(|t| !t.is_empty())?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// The account a service-account token stands for, with its claims, when the token is one
/// this server signed for one of `audiences` and what it names still exists with the UIDs it
/// names (the account, and the pod or secret it is bound to): upstream's checks, so deleting
/// the account or the pod revokes its tokens.
pub async fn authenticate_service_account(
    signer: &Signer,
    reg: &Registry,
    token: &str,
    audiences: &[&str],
) -> Option<(Identity, Claims)> {
    if !serviceaccount::is_jwt(token) {
        return None;
    }
    let claims = signer.verify(token, audiences)?;
    let private = &claims.kubernetes;
    let ns = private.namespace.as_str();
    let account = &private.serviceaccount;
    let user = format!("system:serviceaccount:{ns}:{}", account.name);
    if claims.sub != user {
        return None;
    }
    let uid_of = |plural: &'static str, name: &str| {
        let r = crate::podlogs::resource(plural);
        let name = name.to_string();
        async move {
            let obj = reg.get(r, Some(ns), &name).await.ok()?;
            obj["metadata"]["uid"].as_str().map(str::to_string)
        }
    };
    if !account_is(reg, ns, &account.name, &account.uid).await {
        return None;
    }
    for (plural, bound) in [("pods", &private.pod), ("secrets", &private.secret)] {
        if let Some(bound) = bound
            && uid_of(plural, &bound.name).await? != bound.uid
        {
            return None;
        }
    }
    Some((account_identity(ns, user), claims))
}

/// Whether the account `ns/name` exists with `uid`: read from the watched copy (upstream reads
/// an informer), from the store only for an account too new for the copy, or recreated since.
pub(crate) async fn account_is(reg: &Registry, ns: &str, name: &str, uid: &str) -> bool {
    let accounts = crate::podlogs::resource("serviceaccounts");
    let key = accounts.key(Some(ns), name);
    let cached = reg.accounts().get(reg.store(), &key).await.ok().flatten();
    if cached.as_ref().and_then(|a| a["metadata"]["uid"].as_str()) == Some(uid) {
        return true;
    }
    let stored = reg.get(accounts, Some(ns), name).await;
    stored.is_ok_and(|a| a["metadata"]["uid"] == uid)
}

/// The identity of service account `user` of namespace `ns`, in upstream's groups.
pub(crate) fn account_identity(ns: &str, user: String) -> Identity {
    let groups = vec![
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{ns}"),
    ];
    Identity::new(user, groups)
}

/// Splits one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// The group of bootstrap tokens' users.
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";

/// Whether `token` has a bootstrap token's shape: `<id>.<secret>`, 6 and 16 characters of
/// `[a-z0-9]` (upstream's `[a-z0-9]{6}\.[a-z0-9]{16}`).
pub fn is_bootstrap_token(token: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    token
        .split_once('.')
        .is_some_and(|(id, secret)| ok(id, 6) && ok(secret, 16))
}

/// A new random bootstrap token, from the kernel's random source.
pub fn generate_bootstrap_token() -> std::io::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut random = std::fs::File::open("/dev/urandom")?;
    let mut out = String::with_capacity(23);
    let mut buf = [0u8; 64];
    while out.len() < 23 {
        std::io::Read::read_exact(&mut random, &mut buf)?;
        // 252 = 7 * 36: bytes above it are dropped so every character is equally likely.
        for b in buf.iter().filter(|b| **b < 252) {
            if out.len() == 6 {
                out.push('.');
            }
            if out.len() == 23 {
                break;
            }
            out.push(ALPHABET[usize::from(*b) % 36] as char);
        }
    }
    Ok(out)
}

/// The join token kept in `path`: read if the file exists, else made and written (mode 0600).
pub fn ensure_join_token(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_string();
            if !is_bootstrap_token(&token) {
                return Err(format!(
                    "{}: not a join token (expected 6 and 16 characters of [a-z0-9], joined by a dot)",
                    path.display()
                ));
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token =
                generate_bootstrap_token().map_err(|e| format!("generating a join token: {e}"))?;
            crate::pki::write_private(path, &format!("{token}\n")).map_err(|e| e.to_string())?;
            Ok(token)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_parse_like_kube_apiserver() {
        let t =
            Tokens::parse("# comment\nabc,alice,1,\"system:masters,dev\"\nxyz,bob,2\n").unwrap();
        let alice = t.authenticate("Bearer abc").unwrap();
        assert_eq!(alice.user, "alice");
        assert_eq!(
            alice.groups,
            ["system:masters", "dev", "system:authenticated"]
        );
        let bob = t.authenticate("Bearer xyz").unwrap();
        assert_eq!(bob.groups, ["system:authenticated"]);
        assert!(t.authenticate("Bearer nope").is_none());
        assert!(t.authenticate("Basic abc").is_none());
        assert_eq!(t.authenticate("bearer abc").unwrap().user, "alice");
        assert_eq!(bearer("BEARER  abc"), None, "an empty second word");
        assert_eq!(bearer(" Bearer xyz extra "), Some("xyz"));
        assert!(Tokens::parse("onlytoken").is_err());
    }

    #[test]
    fn bootstrap_tokens_have_their_shape() {
        assert!(is_bootstrap_token("abcdef.0123456789abcdef"));
        for bad in [
            "abcdef0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde",
            "ABCDEF.0123456789abcdef",
            "abcdef.0123456789abcdef ",
            "abc-ef.0123456789abcdef",
        ] {
            assert!(!is_bootstrap_token(bad), "{bad}");
        }
        let a = generate_bootstrap_token().unwrap();
        let b = generate_bootstrap_token().unwrap();
        assert!(is_bootstrap_token(&a), "{a}");
        assert_ne!(a, b);
        let mut t = Tokens::default();
        assert!(t.add_bootstrap("not.a-token").is_err());
    }

    #[test]
    fn the_join_token_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let first = ensure_join_token(&path).unwrap();
        assert_eq!(ensure_join_token(&path).unwrap(), first);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{first}\n")
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "garbage\n").unwrap();
        assert!(ensure_join_token(&path).is_err());
    }
}
