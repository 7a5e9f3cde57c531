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
//! when nothing fits; the `election` crate elects one active scheduler among several processes. Start
//! reading at [`scheduler`], the loop.

pub mod cache;
pub mod config;
pub mod framework;
pub mod metrics;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod scheduler;

use std::sync::Arc;

/// What the scheduler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration document could not be read as YAML or JSON.
    #[error("reading the scheduler configuration: {0}")]
    Parse(String),
    /// The configuration is not valid; the message names the field and why.
    #[error("{0}")]
    Invalid(String),
    /// A watch or the scheduling loop panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// The scheduler's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the default profile against the API `client` reaches, until `shutdown` completes.
/// With `election`, only while this process holds the election's Lease: a process that
/// loses it stops scheduling and becomes a candidate again.
///
/// `config` is a KubeSchedulerConfiguration document, if any; `metrics` collects what
/// [`metrics`] describes.
pub async fn run(
    client: kube::Client,
    config: Option<&str>,
    election: Option<election::Election>,
    metrics: Arc<metrics::Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    // Refuse a bad configuration before taking part in any election.
    if let Some(text) = config {
        config::profiles(text)?;
    }
    let work = async {
        loop {
            if let Some(e) = &election {
                election::acquire(&client, e).await;
            }
            let profiles = match config {
                Some(text) => config::profiles(text)?,
                None => vec![config::Profile::default_profile()],
            };
            let names: Vec<String> = profiles.iter().map(|p| p.scheduler_name.clone()).collect();
            let s = Arc::new(scheduler::Scheduler::new(
                client.clone(),
                profiles,
                metrics.clone(),
            ));
            tracing::info!("scheduler started, profiles: {}", names.join(", "));
            match &election {
                Some(e) => tokio::select! {
                    r = s.serve() => return r,
                    () = election::keep(&client, e) => {}
                },
                None => return s.serve().await,
            }
        }
    };
    tokio::select! {
        r = work => r,
        () = shutdown => Ok(()),
    }
}
