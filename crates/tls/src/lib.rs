//! TLS plumbing that Rudder's HTTPS servers (the API server, the node agent's endpoint) and
//! clients share, so each is written once.
//!
//! Owns: the accept loop that turns TLS connections into HTTP/1.1 or HTTP/2 service
//! ([`serve`]), and the verifier that accepts any server certificate while still checking the
//! handshake's signatures ([`AnyServerCertificate`]).
//! Must not: know about Kubernetes, identities or routes (callers map a client certificate to
//! a router), or depend on another Rudder crate.
//!
//! Start reading at [`serve`].

mod accept;
mod verify;

pub use accept::serve;
pub use verify::AnyServerCertificate;
