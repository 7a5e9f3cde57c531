//! Error types: `Error` for local failures, `PullError` for pulls (its text reads like
//! containerd's, which kubelet shows in events and container statuses).

use std::fmt;
use std::path::PathBuf;

use crate::DigestMismatch;

/// A local failure: a reference that does not parse, a file of the store, a layout or an
/// archive that cannot be read or written, content that is malformed or does not match its
/// digest.
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
    /// A file or directory could not be read, written, created or removed.
    #[error("{what}: {source}")]
    File {
        /// What was being done, e.g. `reading index.json`.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A file operation failed, with nothing more to say than the system's error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// An overlayfs whiteout (a 0/0 character device) could not be made.
    #[error("creating overlayfs whiteout {} (a 0/0 character device; needs root): {source}", path.display())]
    Whiteout {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// A JSON document (`manifest.json`, an image record) could not be read or written.
    #[error("{what}: {source}")]
    Json {
        /// Which document, e.g. `parsing manifest.json`.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON document could not be written, with nothing more to say.
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    /// A `registries.yaml` is not valid YAML of the expected shape.
    #[error(transparent)]
    Yaml(#[from] serde_saphyr::Error),
    /// Content is malformed, unsupported or unsafe: a manifest, a layout, an archive, a
    /// layer entry, a `registries.yaml` entry. The message says what and why.
    #[error("{0}")]
    Invalid(String),
    /// Content does not hash to the digest that names it.
    #[error(transparent)]
    DigestMismatch(#[from] DigestMismatch),
    /// A layer's uncompressed content is not the image config's diff id.
    #[error("layer {digest} does not match the image config's diff id: {source}")]
    DiffId {
        /// The layer's (compressed) digest.
        digest: String,
        /// The uncompressed digests.
        #[source]
        source: DigestMismatch,
    },
    /// A layer could not be unpacked.
    #[error("unpacking layer {digest}: {source}")]
    Unpack {
        /// The layer's digest.
        digest: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// An image layout or archive could not be imported.
    #[error("importing {}: {source}", path.display())]
    Import {
        /// The layout or archive.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// A `registries.yaml` could not be parsed.
    #[error("parsing {}: {source}", path.display())]
    Registries {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// No image has that name or id.
    #[error("image {0:?}: not found")]
    NotFound(String),
    /// Importing the busybox image gave no image.
    #[error("importing the busybox image gave no image")]
    NoBusybox,
}

/// The image crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// [`Error::File`]: `what` failed with `source`.
    pub(crate) fn file(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::File {
            what: what.into(),
            source,
        }
    }

    /// [`Error::Invalid`] with this message.
    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid(message.into())
    }

    /// Whether content did not match its digest, here or in what this error wraps.
    pub fn is_digest_mismatch(&self) -> bool {
        match self {
            Error::DigestMismatch(_) | Error::DiffId { .. } => true,
            Error::Unpack { source, .. }
            | Error::Import { source, .. }
            | Error::Registries { source, .. } => source.is_digest_mismatch(),
            _ => false,
        }
    }
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
