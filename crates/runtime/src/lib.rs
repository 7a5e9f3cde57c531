//! The host side of running containers: everything the node agent does to the machine.
//!
//! This crate owns the OCI runtime binary's use ([`runc`]), the per-container monitor process
//! ([`shim`]), the OCI configuration ([`spec`]), overlay root filesystems ([`rootfs`]), the pod's
//! shared namespaces ([`namespaces`]), cgroup reads and clean-up ([`cgroups`]), seccomp profiles
//! ([`seccomp`]), CNI plugin invocation ([`cni`]) and the CRI log format ([`logs`]). It needs
//! root and a Linux host.
//!
//! [`host`] gathers the operations the agent's pod workers perform into one trait, with the
//! real machine behind it and, with the `fake` feature, a recording fake for tests without
//! root.
//!
//! It must not touch the Kubernetes API or know about pods as API objects: the agent
//! (`crates/agent`) turns pods into the plain values these modules take. Images come to it
//! as unpacked layer directories.
//!
//! Start reading at [`shim`], which shows a container's life from `runc create` to its exit
//! file, then [`spec`].

pub mod address;
pub mod attach;
pub mod cgroups;
pub mod cni;
mod error;
pub mod host;
pub mod logs;
pub mod namespaces;
pub mod rootfs;
pub mod runc;
pub mod seccomp;
pub mod session;
pub mod shim;
pub mod spec;

pub use error::{Error, Result};
