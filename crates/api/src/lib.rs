//! Kubernetes API machinery for Rudder, as pure functions over values.
//!
//! This crate owns what the API means, independent of how it is served or stored: the table of
//! built-in resources ([`resources`]), upstream's `Status` errors and their texts ([`status`]),
//! label and field selectors ([`selector`]), what a request URL addresses ([`request`]), name and label validation ([`validation`]), the
//! three patch types ([`patch`]), server-side table printing ([`table`]) and conversion between
//! the versions of a resource served from one storage ([`convert`]). It must not do I/O,
//! know about HTTP or storage, or depend on another Rudder crate, so everything here is tested
//! with plain unit tests. Objects are `serde_json::Value`s in their JSON wire form.
//!
//! Start reading at [`resources`], then [`status`].

pub mod convert;
pub mod crdschema;
pub mod patch;
pub mod protobuf;
pub mod quantity;
pub mod quota;
pub mod request;
pub mod resources;
pub mod selector;
pub mod status;
pub mod table;
pub mod validation;

pub use resources::Resource;
pub use status::Status;
