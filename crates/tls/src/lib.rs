//! TLS and HTTP plumbing that Rudder's HTTPS servers (the API server, the node agent's
//! endpoint), clients and proxies share, so each is written once.
//!
//! Owns: the accept loop that turns TLS connections into HTTP/1.1 or HTTP/2 service
//! ([`serve`]), the verifier that accepts any server certificate while still checking the
//! handshake's signatures ([`AnyServerCertificate`]), trust anchors from PEM ([`roots`]), the
//! serving certificate replaceable while a server runs ([`ServingCertificate`]), and the
//! hop-by-hop headers a proxy drops ([`strip_hop_by_hop`]).
//! Must not: know about Kubernetes, identities or routes (callers map a client certificate to
//! a router), or depend on another Rudder crate.
//!
//! Start reading at [`serve`].

mod accept;
mod hop;
mod roots;
mod serving;
mod verify;

pub use accept::serve;
pub use hop::{connection_has, strip_hop_by_hop};
pub use roots::roots;
pub use serving::ServingCertificate;
pub use verify::AnyServerCertificate;
