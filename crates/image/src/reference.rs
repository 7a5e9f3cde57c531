//! Image references with Docker's normalisation rules (`busybox` is
//! `docker.io/library/busybox:latest`).

use std::fmt;

use crate::Error;

/// The registry a reference without a domain lives on.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A parsed, normalised image reference: `registry/repository[:tag][@digest]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The registry host, with its port if any: `docker.io`, `localhost:5000`, `[::1]:5000`.
    pub registry: String,
    /// The repository path inside the registry: `library/busybox`.
    pub repository: String,
    /// The tag; `latest` when the reference named neither a tag nor a digest.
    pub tag: Option<String>,
    /// The manifest digest, `sha256:<hex>`.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalises a reference the way Docker does: a first path component
    /// that contains `.` or `:` or is `localhost` names the registry (`docker.io`
    /// otherwise, with `library/` in front of one-component names), `index.docker.io` is
    /// `docker.io`, and a reference with neither tag nor digest gets the tag `latest`.
    pub fn parse(s: &str) -> Result<Reference, Error> {
        let invalid = |why: &str| Error::InvalidReference {
            reference: s.to_string(),
            reason: why.to_string(),
        };
        if s.is_empty() {
            return Err(invalid("empty reference"));
        }
        if s.len() == 64 && is_lower_hex(s) {
            return Err(invalid(
                "cannot specify 64-byte hexadecimal strings (that is an image id)",
            ));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (s, None),
        };
        if let Some(d) = digest {
            validate_digest(d).map_err(|e| invalid(&e))?;
        }
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name_tag[..at], Some(&name_tag[at + 1..]))
            }
            None => (name_tag, None),
        };
        if let Some(t) = tag {
            validate_tag(t).map_err(|e| invalid(&e))?;
        }
        if name.is_empty() {
            return Err(invalid("missing repository name"));
        }
        let (registry, remainder) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        validate_registry(&registry).map_err(|e| invalid(&e))?;
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DEFAULT_REGISTRY.to_string()
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !remainder.contains('/') {
            format!("library/{remainder}")
        } else {
            remainder
        };
        validate_repository(&repository).map_err(|e| invalid(&e))?;
        if registry.len() + 1 + repository.len() > 255 {
            return Err(invalid(
                "repository name must not be more than 255 characters",
            ));
        }
        let tag = match (tag, digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest: digest.map(str::to_string),
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The familiar short form Docker prints: `busybox:latest` for
    /// `docker.io/library/busybox:latest`.
    pub fn familiar(&self) -> String {
        let mut name = if self.registry == DEFAULT_REGISTRY {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            self.name()
        };
        if let Some(t) = &self.tag {
            name = format!("{name}:{t}");
        }
        if let Some(d) = &self.digest {
            name = format!("{name}@{d}");
        }
        name
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Reference::parse(s)
    }
}

pub(crate) fn is_lower_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks `algorithm:hex`; sha256 (64 hex digits) and sha512 (128) are accepted.
pub(crate) fn validate_digest(d: &str) -> Result<(), String> {
    let Some((alg, hex)) = d.split_once(':') else {
        return Err(format!("invalid digest {d:?}: missing algorithm"));
    };
    let want = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "invalid digest {d:?}: unsupported digest algorithm"
            ));
        }
    };
    if hex.len() != want || !is_lower_hex(hex) {
        return Err(format!(
            "invalid digest {d:?}: invalid checksum digest format"
        ));
    }
    Ok(())
}

fn validate_tag(t: &str) -> Result<(), String> {
    let ok = !t.is_empty()
        && t.len() <= 128
        && t.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphanumeric() || c == '_' || (i > 0 && (c == '.' || c == '-'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!("invalid tag format {t:?}"))
    }
}

fn validate_registry(r: &str) -> Result<(), String> {
    let bad = || Err(format!("invalid registry {r:?}"));
    let host = if let Some(rest) = r.strip_prefix('[') {
        // [ipv6]:port
        let Some((addr, port)) = rest.split_once(']') else {
            return bad();
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return bad();
        }
        if !port.is_empty() {
            let Some(p) = port.strip_prefix(':') else {
                return bad();
            };
            if p.parse::<u16>().is_err() {
                return bad();
            }
        }
        return Ok(());
    } else {
        match r.rsplit_once(':') {
            Some((h, p)) => {
                if p.parse::<u16>().is_err() {
                    return bad();
                }
                h
            }
            None => r,
        }
    };
    let ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok { Ok(()) } else { bad() }
}

fn validate_repository(repo: &str) -> Result<(), String> {
    if repo.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("repository name must be lowercase".to_string());
    }
    for component in repo.split('/') {
        if !valid_path_component(component) {
            return Err(format!("invalid repository name component {component:?}"));
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // A separator: '.', '_', '__' or one or more '-'.
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == b.len() {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalisation_follows_docker() {
        let d = D;
        let cases: Vec<(String, &str)> = vec![
            ("busybox".into(), "docker.io/library/busybox:latest"),
            ("busybox:1.36".into(), "docker.io/library/busybox:1.36"),
            ("library/busybox".into(), "docker.io/library/busybox:latest"),
            (
                "docker.io/busybox".into(),
                "docker.io/library/busybox:latest",
            ),
            (
                "docker.io/library/busybox:latest".into(),
                "docker.io/library/busybox:latest",
            ),
            (
                "index.docker.io/library/busybox:1".into(),
                "docker.io/library/busybox:1",
            ),
            (
                "index.docker.io/busybox".into(),
                "docker.io/library/busybox:latest",
            ),
            ("user/app".into(), "docker.io/user/app:latest"),
            ("user/app:v1.0-rc_1".into(), "docker.io/user/app:v1.0-rc_1"),
            ("localhost/app".into(), "localhost/app:latest"),
            ("localhost:5000/x".into(), "localhost:5000/x:latest"),
            ("127.0.0.1:5000/x/y:v1".into(), "127.0.0.1:5000/x/y:v1"),
            ("[::1]:5000/x".into(), "[::1]:5000/x:latest"),
            (
                "quay.io/coreos/etcd:v3.5".into(),
                "quay.io/coreos/etcd:v3.5",
            ),
            (
                "registry.k8s.io/pause:3.10".into(),
                "registry.k8s.io/pause:3.10",
            ),
            ("gcr.io/a/b/c".into(), "gcr.io/a/b/c:latest"),
            (
                "my-registry.local:443/a__b/c-d.e".into(),
                "my-registry.local:443/a__b/c-d.e:latest",
            ),
            (
                format!("busybox@{d}"),
                "docker.io/library/busybox@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                format!("busybox:1@{d}"),
                "docker.io/library/busybox:1@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                format!("localhost:5000/x@{d}"),
                "localhost:5000/x@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        ];
        for (input, want) in cases {
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), want, "{input}");
            // Normalisation is idempotent.
            assert_eq!(Reference::parse(want).unwrap(), r, "{want}");
        }
    }

    #[test]
    fn fields() {
        let r = Reference::parse("localhost:5000/team/app:v2").unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v2"));
        assert_eq!(r.digest, None);
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.familiar(), format!("busybox@{D}"));
        assert_eq!(
            Reference::parse("busybox").unwrap().familiar(),
            "busybox:latest"
        );
        assert_eq!(r.name(), "docker.io/library/busybox");
    }

    #[test]
    fn rejects_invalid() {
        let hex64 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        for bad in [
            "",
            "Busybox",
            "docker.io/Library/busybox",
            "busybox:",
            ":tag",
            "busybox:bad tag",
            "busybox:-tag",
            "a/../b",
            "a//b",
            "-x",
            "x-",
            "x@sha256:abc",
            "x@md5:d41d8cd98f00b204e9800998ecf8427e",
            "x@",
            "host:notaport/x",
            hex64,
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let e = Reference::parse("Busybox").unwrap_err().to_string();
        assert!(e.contains("lowercase"), "{e}");
    }
}
