//! Pod logic that several API clients (controllers, scheduler, agent, simulator) share, as
//! pure functions over k8s-openapi types, each under the upstream helper it mirrors.
//!
//! Owns: where a pod is in its life ([`is_terminal`], [`is_terminating`], [`is_active`]),
//! whether tolerations tolerate a taint ([`tolerates`]), and whether a node matches node
//! selector terms and a pod's required node affinity ([`required_node_affinity_matches`]),
//! the claims a pod's volumes use ([`claim_names`], [`ephemeral_claim_name`], [`claim_is_for_pod`]),
//! and the status conditions a kubelet reports ([`kubelet_conditions`]: `Initialized`,
//! `ContainersReady`, `Ready` and the others, from the spec and the container statuses).
//! Must not: do I/O, talk to the API, or depend on another Rudder crate; logic only one
//! crate needs stays in that crate.
//!
//! Start reading at `lifecycle.rs` (the two meanings of "done": finished and being deleted),
//! then `taints.rs` and `node_affinity.rs`; `conditions.rs` for the kubelet's conditions.

mod conditions;
mod ephemeral;
mod lifecycle;
mod node_affinity;
mod taints;

pub use conditions::{
    CONTAINERS_NOT_INITIALIZED, CONTAINERS_NOT_READY, KUBELET_CONDITIONS, POD_COMPLETED,
    POD_FAILED, READINESS_GATES_NOT_READY, containers_ready_condition, initialized_condition,
    kubelet_conditions, pod_ready_condition, ready_to_start_containers_condition,
    with_transition_time,
};
pub use ephemeral::{claim_is_for_pod, claim_names, ephemeral_claim_name};
pub use lifecycle::{is_active, is_terminal, is_terminal_phase, is_terminating, phase};
pub use node_affinity::{required_node_affinity_matches, requirement_matches, term_matches};
pub use taints::{any_tolerates, tolerates};
