//! sha256 digests: computing them over bytes and streams, checking them.

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use crate::reference::validate_digest;

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    format_digest(Sha256::digest(bytes).as_slice())
}

pub(crate) fn format_digest(hash: &[u8]) -> String {
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The hex part of a `sha256:<hex>` digest, which names files in the store.
pub(crate) fn hex(digest: &str) -> crate::Result<&str> {
    validate_digest(digest).map_err(crate::Error::Invalid)?;
    match digest.split_once(':') {
        Some(("sha256", h)) => Ok(h),
        _ => Err(crate::Error::Invalid(format!(
            "unsupported digest algorithm in {digest:?} (only sha256 is)"
        ))),
    }
}

/// Content that does not hash to the digest that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestMismatch {
    /// What the content should hash to.
    pub expected: String,
    /// What it hashes to.
    pub actual: String,
    /// What the content is: `layer`, `config`, `manifest`, `uncompressed layer`.
    pub what: &'static str,
}

impl fmt::Display for DigestMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: digest mismatch: content has digest {}",
            self.what, self.expected, self.actual
        )
    }
}

impl std::error::Error for DigestMismatch {}

/// Checks that `bytes` hash to `expected`.
pub(crate) fn verify(
    bytes: &[u8],
    expected: &str,
    what: &'static str,
) -> Result<(), DigestMismatch> {
    let actual = sha256(bytes);
    if actual == expected {
        Ok(())
    } else {
        Err(DigestMismatch {
            expected: expected.to_string(),
            actual,
            what,
        })
    }
}

/// A reader that hashes (and counts) what passes through it.
pub(crate) struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads the rest of the input, then returns its digest and length.
    pub(crate) fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((format_digest(self.hasher.finalize().as_slice()), self.count))
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Hashes an async download chunk by chunk.
pub(crate) struct Hasher {
    hasher: Sha256,
    pub(crate) count: u64,
}

impl Hasher {
    pub(crate) fn new() -> Self {
        Hasher {
            hasher: Sha256::new(),
            count: 0,
        }
    }
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.count += bytes.len() as u64;
    }
    pub(crate) fn finish(self) -> String {
        format_digest(self.hasher.finalize().as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        assert_eq!(
            sha256(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut r = HashReader::new(&b"abc"[..]);
        let mut first = [0u8; 1];
        r.read_exact(&mut first).unwrap();
        let (d, n) = r.finish().unwrap();
        assert_eq!(d, sha256(b"abc"));
        assert_eq!(n, 3);
        assert!(verify(b"abc", &sha256(b"abd"), "config").is_err());
        assert_eq!(hex(&sha256(b"")).unwrap().len(), 64);
        assert!(hex("sha256:zz").is_err());
    }
}
