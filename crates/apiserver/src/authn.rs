//! Who is calling: TLS client certificates (user = CN, groups = O) and bearer tokens from a
//! static token file (kube-apiserver's `--token-auth-file` CSV format), then the
//! authorization decision. Only `system:masters` and, until a Node authorizer exists, node
//! agents (`system:nodes`) are authorized for now; RBAC will slot in at [`authorize`].

use std::collections::HashMap;
use std::path::Path;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user name.
    pub user: String,
    /// The groups, including `system:authenticated`.
    pub groups: Vec<String>,
}

impl Identity {
    fn new(user: String, mut groups: Vec<String>) -> Identity {
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

    /// The identity behind an `Authorization` header value, if it is a known bearer token.
    pub fn authenticate(&self, header: &str) -> Option<Identity> {
        let token = header.strip_prefix("Bearer ")?.trim();
        self.0.get(token).cloned()
    }
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

/// Whether `who` may do anything at all. Members of `system:masters` may do everything; so,
/// for now, may node agents (`system:nodes`, as `system:node:<name>`).
pub fn authorize(who: &Identity) -> bool {
    // TODO: a Node authorizer that restricts `system:nodes` to their own Node and Lease, the
    // pods bound to them and what those pods use is not there yet: any node can do anything.
    who.groups
        .iter()
        .any(|g| g == "system:masters" || g == "system:nodes")
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
        assert!(authorize(&alice));
        let bob = t.authenticate("Bearer xyz").unwrap();
        assert!(!authorize(&bob));
        let node = Identity::new("system:node:n1".into(), vec!["system:nodes".into()]);
        assert!(authorize(&node));
        assert!(t.authenticate("Bearer nope").is_none());
        assert!(t.authenticate("Basic abc").is_none());
        assert!(Tokens::parse("onlytoken").is_err());
    }
}
