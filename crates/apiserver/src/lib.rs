//! Rudder's Kubernetes API server: what kube-apiserver is to upstream.
//!
//! It owns the HTTPS endpoint (TLS with client certificates and bearer tokens), discovery,
//! the REST semantics of every built-in resource over the revisioned store (create, get,
//! list with selectors and pagination, watch, update, the three patch types, graceful delete
//! with finalizers, the status, scale and binding subresources, dry-run), server-side
//! tables, `pods/log`, which it streams from the node agent running the pod ([`podlogs`]), and
//! how requests share the server (API Priority and Fairness, [`flowcontrol`]).
//! It depends on `api` (what the API means) and `store` (where objects live); it must not run
//! controllers or touch the host. Other components reach it only through the API.
//!
//! Where to start reading: [`server::start`] (start-up and the TLS listener), then
//! [`handlers::api`] (one request's path), then [`registry::Registry`] (the generic REST store,
//! upstream's `registry/generic`) with its per-resource [`strategy`].

pub mod admission;
pub mod allocator;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod bootstrap;
pub mod cacher;
mod connect;
pub mod customresources;
pub mod discovery;
pub mod encryption;
pub mod eviction;
pub mod fieldcheck;
pub mod flowcontrol;
pub mod handlers;
pub mod issuer;
pub mod metrics;
pub mod object;
pub mod openapi;
pub mod pki;
pub mod podlogs;
pub mod podproxy;
pub mod podstream;
pub mod registry;
pub mod scale;
pub mod server;
pub mod strategy;
pub mod typed;
pub mod warning;
mod watched;
pub mod wsstream;

pub use server::{Config, Server, start};
