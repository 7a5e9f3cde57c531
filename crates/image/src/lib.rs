//! Container images for a Rudder node: image references (Docker's normalisation rules),
//! pulls from OCI/Docker registries (mirrors, credentials, TLS and plain-HTTP rules from a
//! k3s-style `registries.yaml`), imports of OCI layouts, OCI archives and `docker save`
//! tarballs, and the content-addressed store on disk: image configs and manifests by
//! digest, and each layer unpacked once, whiteouts converted for overlayfs, ready to be
//! an overlayfs lower directory.
//!
//! It must not run containers, mount anything or talk to the Kubernetes API: the node
//! agent (`crates/agent`) decides what to pull and when, and `crates/runtime` turns an
//! [`Image`]'s layer directories and config into a running container.
//!
//! Start reading at [`Store`] (`store.rs`: the layout on disk, naming and garbage
//! collection), then `pull.rs` (one pull, end to end) and `layer.rs` (unpacking a layer
//! safely); [`Reference`] is in `reference.rs`, [`Registries`] and [`Auth`] in
//! `registries.rs`. `tests/registry.rs` pulls from a real registry, and
//! `tests/support/testimage.rs` builds a busybox image and runs that registry for other
//! crates' end-to-end tests too.

pub mod busybox;
mod digest;
mod error;
mod import;
mod layer;
mod manifest;
mod pull;
mod reference;
mod registries;
mod store;

pub use digest::DigestMismatch;
pub use error::{Error, PullError, PullErrorKind, Result};
pub use manifest::ImageConfig;
pub use reference::{DEFAULT_REGISTRY, Reference};
pub use registries::{Auth, Registries, auth_from_docker_config};
pub use store::{Image, Store};
