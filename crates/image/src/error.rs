//! Error types: `Error` for local failures, `PullError` for pulls (its text reads like
//! containerd's, which kubelet shows in events and container statuses).

use std::fmt;

/// A local failure: a reference that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The string is not a valid image reference.
    #[error("invalid reference format {reference:?}: {reason}")]
    InvalidReference {
        /// The string as given.
        reference: String,
        /// Why it was rejected.
        reason: String,
    },
}

/// What went wrong in a pull, for callers that react differently (kubelet reports all of
/// them as `ErrImagePull`, but back-off and events may differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullErrorKind {
    /// The reference does not parse.
    InvalidReference,
    /// The registry has no such repository, tag or manifest.
    NotFound,
    /// The registry refused the credentials (or demanded some).
    Unauthorized,
    /// A blob's content does not match its digest.
    DigestMismatch,
    /// The registry could not be reached, or failed.
    Registry,
    /// The image is not usable here: no manifest for this platform, unsupported media type.
    Unsupported,
    /// Storing or unpacking failed on this node.
    Local,
}

/// A failed pull. Its text is containerd's shape, e.g.
/// `failed to pull and unpack image "docker.io/library/nope:latest": failed to resolve
/// reference "docker.io/library/nope:latest": docker.io/library/nope:latest: not found:
/// manifest unknown`, and always carries the registry's own error text.
#[derive(Clone, Debug)]
pub struct PullError {
    /// The whole message.
    pub message: String,
    /// The kind of failure.
    pub kind: PullErrorKind,
}

impl PullError {
    pub(crate) fn new(reference: &str, kind: PullErrorKind, detail: impl fmt::Display) -> Self {
        PullError {
            message: format!("failed to pull and unpack image {reference:?}: {detail}"),
            kind,
        }
    }
}

impl fmt::Display for PullError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PullError {}

/// An error and its sources, joined by `: `.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
