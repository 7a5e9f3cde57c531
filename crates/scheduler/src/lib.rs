//! The scheduler: assigns pending pods to nodes, as a client of the Kubernetes API like every
//! other component (`rudder scheduler --kubeconfig PATH` alone, or inside `rudder server`).
//!
//! Owns: choosing a node for each pod whose `spec.nodeName` is empty and whose
//! `spec.schedulerName` is `default-scheduler`, binding it through `pods/binding`, and
//! reporting pods that fit nowhere (`PodScheduled=False`, `FailedScheduling` events).
//! Must not: touch the store or the host, or change pods beyond their binding and scheduling
//! condition.
//!
//! Shaped like upstream's framework: a [`queue`] (active, back-off, unschedulable), a
//! [`cache`] of nodes with what their pods take (assumed pods included while they bind), and
//! [`plugins`] at the Filter and Score extension points ([`framework`]), and [`preemption`]
//! when nothing fits. Start reading at [`scheduler`], the loop.

pub mod cache;
pub mod framework;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod scheduler;

use std::sync::Arc;

/// Runs the default profile against the API `client` reaches, until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let s = Arc::new(scheduler::Scheduler::new(
        client,
        plugins::default_profile(),
    ));
    tracing::info!("scheduler {} started", scheduler::SCHEDULER_NAME);
    tokio::select! {
        r = s.serve() => r,
        () = shutdown => Ok(()),
    }
}
