//! Rudder's middle test tier, between the in-file unit tests and the end-to-end tests that
//! start the `rudder` binary and drive the real kubectl.
//!
//! Owns: starting the real API server in-process ([`TestServer`]: `apiserver::start` on a free
//! loopback port, TLS as in production, a temporary data directory with the embedded SQLite
//! store, an admin `kube::Client`), and the waiting helpers every tier shares: [`eventually`]
//! for "this happens" and [`consistently`] for "this does not happen", async and
//! [`blocking`]. Must not: be a normal dependency of any crate (it is for `[dev-dependencies]`
//! only), run controllers, the scheduler or a node agent, or touch the host beyond its
//! temporary directory and a loopback port.
//!
//! Start reading at [`TestServer::start`], then [`consistently`]; `tests/kit.rs` shows a test
//! of this tier.

mod server;
mod wait;

pub use server::TestServer;
pub use wait::{EVENTUALLY_TIMEOUT, blocking, consistently, eventually};
