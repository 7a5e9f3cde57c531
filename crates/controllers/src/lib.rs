//! The controller manager: the control loops that make the cluster's state follow its
//! objects' specs, as upstream's kube-controller-manager runs them (`rudder
//! controller-manager --kubeconfig PATH` alone, or inside `rudder server`).
//!
//! Owns: reconciling workload, namespace, service-account, endpoint, storage (claims,
//! volumes, the built-in `local-path` provisioner), certificate-request objects and
//! aggregated ClusterRoles through the Kubernetes API (signing approved requests with the
//! cluster CA), as one elected instance among several (Lease
//! `kube-system/kube-controller-manager`). Must not: touch the store or the host, or reach
//! the API server other than through its `kube::Client`.
//!
//! Every controller has upstream's name (`deployment-controller`, ...; [`controllers`]), can
//! be turned off, and by default acts as its own service account (`credentials`). They
//! share one watch and cache per resource ([`runtime::Informers`]); each is a kube-runtime
//! `Controller` run by [`runtime::run`], which waits for the caches,
//! backs off per object on errors and survives a panicking reconcile. Start reading at
//! [`run`], then one controller module (`replicaset` is the simplest workload one).

mod certificates;
mod clusterrole_aggregation;
mod credentials;
mod cronjob;
mod csrapproving;
mod csrsigning;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod endpointslice;
mod endpointslice_mirroring;
mod ephemeral_volume;
pub mod events;
pub mod expectations;
mod garbage_collector;
mod job;
mod local_path;
mod namespace;
mod node_ipam;
mod node_lifecycle;
mod persistentvolume;
pub mod pod_control;
mod pod_gc;
pub mod pods;
mod pv_protection;
mod pvc_protection;
mod replicaset;
mod resource_quota;
mod root_ca;
pub mod runtime;

pub use runtime::{Error, Result};
mod serviceaccount;
mod servicelb;
mod statefulset;
#[cfg(test)]
pub(crate) mod testing;
mod ttl_after_finished;

use std::sync::Arc;

use futures::future::BoxFuture;

/// What the controller manager is told.
#[derive(Debug, Clone)]
pub struct Options {
    /// Controllers not to run, by name (with or without the `-controller` suffix).
    pub disabled: Vec<String>,
    /// The cluster CA certificate (PEM) that `kube-root-ca.crt` ConfigMaps publish.
    pub root_ca: Option<String>,
    /// The CA certificate and key (PEM) that sign approved CertificateSigningRequests
    /// (`--cluster-signing-cert-file`, `--cluster-signing-key-file`); without them the
    /// signing controller does not run.
    pub cluster_signing: Option<(String, String)>,
    /// The longest validity of the certificates signed (`--cluster-signing-duration`, a
    /// year); a request's `expirationSeconds` may ask for less.
    pub cluster_signing_duration: std::time::Duration,
    /// How long a node may go without a heartbeat before it is marked unknown
    /// (`--node-monitor-grace-period`, 50 s).
    pub node_monitor_grace_period: std::time::Duration,
    /// The pod network nodes get their `podCIDR` from (`--cluster-cidr`, 10.42.0.0/16).
    pub cluster_cidr: String,
    /// The prefix length of each node's `podCIDR` (`--node-cidr-mask-size`, 24).
    pub node_cidr_mask_size: u8,
    /// Finished pods kept before the oldest are deleted (`--terminated-pod-gc-threshold`,
    /// 12,500; 0 keeps them all).
    pub terminated_pod_gc_threshold: usize,
    /// The directory on nodes under which the `local-path` provisioner makes volumes
    /// (`--default-local-storage-path`, k3s' flag).
    pub local_storage_path: std::path::PathBuf,
    /// The image of the `local-path` provisioner's helper pods (a shell with `mkdir` and
    /// `rm`).
    pub local_path_helper_image: String,
    /// When set, each controller acts as its own service account (upstream's
    /// `--use-service-account-credentials`; [`credentials`]), reaching the server through
    /// this configuration, which has no user of its own. When not, every controller acts as
    /// the controller manager's client.
    pub service_account_credentials: Option<kube::Config>,
}

/// The default of [`Options::local_storage_path`] outside `rudder server`.
pub const DEFAULT_LOCAL_STORAGE_PATH: &str = "/var/lib/rudder/storage";

/// The default of [`Options::local_path_helper_image`], k3s' helper image.
pub const DEFAULT_LOCAL_PATH_HELPER_IMAGE: &str = "rancher/mirrored-library-busybox:1.36.1";

impl Default for Options {
    fn default() -> Options {
        Options {
            disabled: Vec::new(),
            root_ca: None,
            cluster_signing: None,
            cluster_signing_duration: std::time::Duration::from_secs(365 * 86_400),
            node_monitor_grace_period: std::time::Duration::from_secs(50),
            cluster_cidr: "10.42.0.0/16".into(),
            node_cidr_mask_size: 24,
            terminated_pod_gc_threshold: 12_500,
            local_storage_path: DEFAULT_LOCAL_STORAGE_PATH.into(),
            local_path_helper_image: DEFAULT_LOCAL_PATH_HELPER_IMAGE.into(),
            service_account_credentials: None,
        }
    }
}

/// A controller: its name and how to build it from the shared informers.
type Start = fn(&runtime::Shared, &mut runtime::Informers) -> BoxFuture<'static, ()>;

/// Every controller, under upstream's names, in start order, with the service account it
/// acts as ([`credentials`]).
const REGISTRY: &[(&str, &str, Start)] = &[
    (
        "deployment-controller",
        "deployment-controller",
        deployment::start,
    ),
    (
        "replicaset-controller",
        "replicaset-controller",
        replicaset::start_replicasets,
    ),
    (
        "daemonset-controller",
        "daemon-set-controller",
        daemonset::start,
    ),
    (
        "statefulset-controller",
        "statefulset-controller",
        statefulset::start,
    ),
    ("job-controller", "job-controller", job::start),
    ("cronjob-controller", "cronjob-controller", cronjob::start),
    (
        "ttl-after-finished-controller",
        "ttl-after-finished-controller",
        ttl_after_finished::start,
    ),
    ("node-ipam-controller", "node-controller", node_ipam::start),
    (
        "node-lifecycle-controller",
        "node-controller",
        node_lifecycle::start,
    ),
    (
        "taint-eviction-controller",
        "node-controller",
        node_lifecycle::start_eviction,
    ),
    (
        "pod-garbage-collector-controller",
        "pod-garbage-collector",
        pod_gc::start,
    ),
    (
        "disruption-controller",
        "disruption-controller",
        disruption::start,
    ),
    (
        "resourcequota-controller",
        "resourcequota-controller",
        resource_quota::start,
    ),
    (
        "replicationcontroller-controller",
        "replication-controller",
        replicaset::start_replication_controllers,
    ),
    (
        "garbage-collector-controller",
        "generic-garbage-collector",
        garbage_collector::start,
    ),
    (
        "namespace-controller",
        "namespace-controller",
        namespace::start,
    ),
    (
        "endpoints-controller",
        "endpoint-controller",
        endpoints::start,
    ),
    (
        "endpointslice-controller",
        "endpointslice-controller",
        endpointslice::start,
    ),
    (
        "endpointslice-mirroring-controller",
        "endpointslicemirroring-controller",
        endpointslice_mirroring::start,
    ),
    (
        "serviceaccount-controller",
        "service-account-controller",
        serviceaccount::start,
    ),
    (
        "root-ca-certificate-publisher-controller",
        "root-ca-cert-publisher",
        root_ca::start,
    ),
    (
        "service-lb-controller",
        "service-controller",
        servicelb::start,
    ),
    (
        "persistentvolume-binder-controller",
        "persistent-volume-binder",
        persistentvolume::start,
    ),
    (
        "local-path-provisioner",
        "local-path-provisioner",
        local_path::start,
    ),
    (
        "ephemeral-volume-controller",
        "ephemeral-volume-controller",
        ephemeral_volume::start,
    ),
    (
        "pvc-protection-controller",
        "pvc-protection-controller",
        pvc_protection::start,
    ),
    (
        "pv-protection-controller",
        "pv-protection-controller",
        pv_protection::start,
    ),
    (
        "certificatesigningrequest-approving-controller",
        "certificate-controller",
        csrapproving::start,
    ),
    (
        "certificatesigningrequest-signing-controller",
        "certificate-controller",
        csrsigning::start,
    ),
    (
        "clusterrole-aggregation-controller",
        "clusterrole-aggregation-controller",
        clusterrole_aggregation::start,
    ),
];

/// Upstream's older names of controllers (`--controllers csrsigning`, ...) whose new names
/// do not follow from them.
const ALIASES: &[(&str, &str)] = &[
    (
        "csrapproving",
        "certificatesigningrequest-approving-controller",
    ),
    ("csrsigning", "certificatesigningrequest-signing-controller"),
];

/// The names of the controllers this build runs.
pub fn controllers() -> Vec<&'static str> {
    REGISTRY.iter().map(|(name, _, _)| *name).collect()
}

/// Whether `name` is turned off by `disabled` (`deployment` and `deployment-controller`
/// both name the deployment controller).
fn is_disabled(name: &str, disabled: &[String]) -> bool {
    let short = name.strip_suffix("-controller").unwrap_or(name);
    disabled.iter().any(|d| {
        let d = ALIASES
            .iter()
            .find(|(alias, _)| alias == d)
            .map_or(d.as_str(), |(_, full)| full);
        let d = d.strip_suffix("-controller").unwrap_or(d);
        d == short || d.replace('-', "") == short.replace('-', "")
    })
}

/// Checks `disabled` names against [`controllers`].
pub fn check(options: &Options) -> Result<()> {
    node_ipam::check(options)?;
    let names = controllers();
    for d in &options.disabled {
        if !names
            .iter()
            .any(|c| is_disabled(c, std::slice::from_ref(d)))
        {
            return Err(Error::Options(format!(
                "unknown controller {d:?}; the controllers are: {}",
                names.join(", ")
            )));
        }
    }
    Ok(())
}

/// Runs every enabled controller against the API `client` reaches until `shutdown`
/// completes. With `election`, only while this process holds the election's Lease.
pub async fn run(
    client: kube::Client,
    options: Options,
    election: Option<election::Election>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    check(&options)?;
    let options = Arc::new(options);
    let work = async {
        loop {
            if let Some(e) = &election {
                election::acquire(&client, e).await;
            }
            let running = start(client.clone(), options.clone());
            match &election {
                Some(e) => tokio::select! {
                    () = running => return,
                    () = election::keep(&client, e) => {
                        tracing::warn!("lost the controller-manager lease; controllers stop");
                    }
                },
                None => return running.await,
            }
        }
    };
    tokio::select! {
        () = work => Ok(()),
        () = shutdown => Ok(()),
    }
}

/// Builds the enabled controllers over one set of informers and runs them all.
async fn start(client: kube::Client, options: Arc<Options>) {
    let enabled: Vec<&'static (&str, &str, Start)> = REGISTRY
        .iter()
        .filter(|(name, _, _)| !is_disabled(name, &options.disabled))
        .collect();
    let accounts = match &options.service_account_credentials {
        Some(connection) => {
            let names: Vec<&'static str> = enabled.iter().map(|(_, account, _)| *account).collect();
            match credentials::Accounts::new(&client, connection, names).await {
                Ok(accounts) => Some(accounts),
                Err(e) => {
                    tracing::error!("the controllers' service-account credentials: {e}");
                    return;
                }
            }
        }
        None => None,
    };
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    let shared = runtime::Shared::new(client.clone(), options.clone(), synced_rx);
    let mut informers = runtime::Informers::new(client);
    let mut running = Vec::new();
    for (_, account, start) in &enabled {
        let acting = match &accounts {
            Some(a) => shared.acting_as(a.client(account)),
            None => shared.clone(),
        };
        running.push(start(&acting, &mut informers));
    }
    let names: Vec<&str> = enabled.iter().map(|(name, _, _)| *name).collect();
    tracing::info!("controllers started: {}", names.join(", "));
    let (watches, ready) = informers.start();
    let signal = async move {
        ready.await;
        let _ = synced_tx.send(true);
        tracing::info!("controller caches filled");
        futures::future::pending::<()>().await;
    };
    let renewals = async {
        match &accounts {
            Some(a) => a.keep().await,
            None => futures::future::pending().await,
        }
    };
    tokio::select! {
        _ = futures::future::join_all(running) => {}
        () = watches => {}
        () = signal => {}
        () = renewals => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_are_named_with_or_without_their_suffix() {
        let off = |d: &[&str]| d.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_disabled("deployment-controller", &off(&["deployment"])));
        assert!(is_disabled(
            "deployment-controller",
            &off(&["deployment-controller"])
        ));
        assert!(is_disabled(
            "garbage-collector-controller",
            &off(&["garbagecollector"])
        ));
        assert!(is_disabled(
            "garbage-collector-controller",
            &off(&["garbage-collector"])
        ));
        assert!(!is_disabled("replicaset-controller", &off(&["deployment"])));
        assert!(is_disabled(
            "certificatesigningrequest-signing-controller",
            &off(&["csrsigning"])
        ));
        assert!(is_disabled(
            "certificatesigningrequest-approving-controller",
            &off(&["csrapproving"])
        ));
        assert!(!is_disabled(
            "certificatesigningrequest-approving-controller",
            &off(&["csrsigning"])
        ));
    }
}
