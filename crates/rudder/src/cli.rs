//! Flags of every subcommand (k3s' split: flags here, actions elsewhere).

use clap::{Args, Parser, Subcommand};

/// Rudder: a Kubernetes-compatible container orchestrator in one binary.
#[derive(Debug, Parser)]
#[command(name = "rudder", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Log filter (tracing's EnvFilter syntax; RUST_LOG overrides it).
    #[arg(long, global = true, default_value = "info")]
    pub(crate) log_level: String,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the control plane: the API server on its store (embedded SQLite by default).
    Server(Box<ServerArgs>),
    /// Run the scheduler alone, against the API server of a kubeconfig.
    Scheduler(SchedulerArgs),
    /// Run the controllers (deployment, replicaset, garbage collector, ...) alone, against
    /// the API server of a kubeconfig.
    ControllerManager(ControllerManagerArgs),
    /// Run the service proxy alone (kube-proxy): program this node's nftables from the
    /// Services and EndpointSlices of the API server of a kubeconfig, until stopped (its
    /// table goes then).
    Proxy(ProxyArgs),
    /// Run simulated nodes (like KWOK): Node objects, leases and pods that turn Running, with
    /// no containers, for testing the control plane at scale.
    Simulate(SimulateArgs),
    /// Run a node agent (kubelet): register this host as a Node and run its pods as
    /// containers.
    Agent(AgentCommandArgs),
    /// List, import and remove the images of a node agent's image store.
    Images(ImagesArgs),
    /// Stop every container an agent started from a data directory and remove its mounts,
    /// cgroups, network namespaces and pod bridge (like k3s' killall script).
    Reset(ResetArgs),
    /// Measure a component's performance and print a table (or JSON).
    Bench(Bench),
    /// Show or change encryption at rest of a running server (k3s' command): `status`,
    /// `rotate-keys` (a fresh key first, then every value re-encrypted), `reencrypt`.
    SecretsEncrypt(SecretsEncryptArgs),
    /// Check the certificates of a server's or agent's data directory, or set them aside to be
    /// issued anew at the next start (k3s' command): `check`, `rotate`.
    Certificate(CertificateArgs),
    /// The per-container monitor the agent starts (not for direct use).
    #[command(hide = true)]
    Shim(ShimArgs),
}

/// Options of `rudder secrets-encrypt`.
#[derive(Debug, Args)]
pub(crate) struct SecretsEncryptArgs {
    /// What to do.
    #[arg(value_enum)]
    pub(crate) action: SecretsEncryptAction,

    /// The admin kubeconfig of the server [default: DATA_DIR/kubeconfig.yaml].
    #[arg(long)]
    pub(crate) kubeconfig: Option<std::path::PathBuf>,

    /// The server's data directory [default: /var/lib/rudder as root, else
    /// ~/.local/share/rudder].
    #[arg(long)]
    pub(crate) data_dir: Option<std::path::PathBuf>,
}

/// The actions of `rudder secrets-encrypt`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum SecretsEncryptAction {
    /// Whether encryption is on, the keys, and how many stored values each key wrote.
    Status,
    /// Add a fresh key in front, then rewrite every encrypted value with it.
    RotateKeys,
    /// Rewrite every value an older key or provider wrote with the current key.
    Reencrypt,
}

/// Options of `rudder certificate`.
#[derive(Debug, Args)]
pub(crate) struct CertificateArgs {
    /// What to do.
    #[command(subcommand)]
    pub(crate) action: CertificateAction,
}

/// The actions of `rudder certificate`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum CertificateAction {
    /// List each certificate with its subject, expiry, time left and status (OK; WARNING
    /// when it is issued anew at the next start; EXPIRED).
    Check(CertificateCheckArgs),
    /// Set certificates aside (in tls/rotated-<time>/) so that the next start issues new
    /// ones from the same CA, or replace the service-account signing key (tokens it signed
    /// stay valid until they expire). Stop the server or agent first, start it after.
    Rotate(CertificateRotateArgs),
}

/// Options of `rudder certificate check`.
#[derive(Debug, Args)]
pub(crate) struct CertificateCheckArgs {
    /// The data directory [default: /var/lib/rudder as root, else ~/.local/share/rudder].
    #[arg(long)]
    pub(crate) data_dir: Option<std::path::PathBuf>,

    /// `text` (a table) or `json`.
    #[arg(long, short, default_value = "text")]
    pub(crate) output: String,
}

/// Options of `rudder certificate rotate`.
#[derive(Debug, Args)]
pub(crate) struct CertificateRotateArgs {
    /// The data directory [default: /var/lib/rudder as root, else ~/.local/share/rudder].
    #[arg(long)]
    pub(crate) data_dir: Option<std::path::PathBuf>,

    /// What to rotate (repeatable or comma-separated): admin, api-server, controller-manager,
    /// kube-proxy, kubelet, scheduler, service-account [default: every one the data directory
    /// has].
    #[arg(long, value_delimiter = ',')]
    pub(crate) service: Vec<String>,
}

/// Options of `rudder proxy`.
#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// The kubeconfig to reach the API server with (it must read Services, EndpointSlices
    /// and Nodes, as upstream's `system:node-proxier`).
    #[arg(long)]
    pub(crate) kubeconfig: std::path::PathBuf,

    /// This node's name, for the `Local` traffic policies (the host name by default).
    #[arg(long)]
    pub(crate) hostname_override: Option<String>,

    #[command(flatten)]
    pub(crate) proxy: ProxyOptions,
}

/// Where the service proxy of `rudder agent` and `rudder proxy` puts its rules and what they must know of the
/// networks.
#[derive(Debug, Args)]
pub(crate) struct ProxyOptions {
    /// The pod network: Service traffic from elsewhere is masqueraded (none: all of it is).
    #[arg(long)]
    pub(crate) cluster_cidr: Option<String>,

    /// The service range: traffic to an address of it that no Service holds is rejected.
    #[arg(long, default_value = "10.43.0.0/16")]
    pub(crate) service_cidr: apiserver::allocator::ServiceRange,

    /// The nftables table (family ip) the proxy owns.
    #[arg(long, default_value = "rudder")]
    pub(crate) proxy_table: String,
}

impl ProxyOptions {
    /// The proxy's configuration for node `node`.
    pub(crate) fn config(&self, node: Option<String>) -> proxy::rules::Config {
        proxy::rules::Config {
            table: self.proxy_table.clone(),
            cluster_cidr: self.cluster_cidr.clone(),
            service_cidr: Some(self.service_cidr.to_string()),
            node,
        }
    }
}

/// Options of `rudder scheduler`.
#[derive(Debug, Args)]
pub(crate) struct SchedulerArgs {
    /// The kubeconfig to reach the API server with.
    #[arg(long)]
    pub(crate) kubeconfig: std::path::PathBuf,

    /// A KubeSchedulerConfiguration file (kubescheduler.config.k8s.io/v1): profiles, plugins
    /// enabled, disabled and weighted, plugin arguments.
    #[arg(long)]
    pub(crate) config: Option<std::path::PathBuf>,

    /// Serve Prometheus metrics over plain HTTP at this address (`/metrics`), e.g.
    /// 127.0.0.1:10251.
    #[arg(long)]
    pub(crate) metrics_bind_address: Option<std::net::SocketAddr>,

    #[command(flatten)]
    pub(crate) election: LeaderElectArgs,
}

/// Leader election on a Lease in kube-system, so that one of several processes is active.
#[derive(Debug, Args)]
pub(crate) struct LeaderElectArgs {
    /// Work only while holding the Lease (kube-system/kube-scheduler or
    /// kube-system/kube-controller-manager), so that one of several processes is active
    /// (`--leader-elect=false` to turn it off).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) leader_elect: bool,

    /// How long the Lease holds without renewal.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub(crate) leader_elect_lease_duration: std::time::Duration,

    /// How long the active process keeps trying to renew before it stops.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) leader_elect_renew_deadline: std::time::Duration,

    /// How often candidates try to take the Lease and the holder renews it.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub(crate) leader_elect_retry_period: std::time::Duration,
}

impl LeaderElectArgs {
    /// The election on Lease `kube-system/<lease>`, unless turned off.
    pub(crate) fn election(&self, lease: &str) -> Option<election::Election> {
        self.leader_elect.then(|| election::Election {
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
            ..election::Election::new(lease)
        })
    }
}

/// What the controllers are told, in `rudder server` and `rudder controller-manager`.
#[derive(Debug, Args)]
pub(crate) struct ControllerArgs {
    /// A controller not to run, by upstream's name (e.g. `deployment` or
    /// `deployment-controller`); repeatable or comma-separated.
    #[arg(long = "disable-controller", value_delimiter = ',')]
    pub(crate) disable_controller: Vec<String>,

    /// How long a node may go without a heartbeat (Lease or status) before it is marked
    /// Unknown and tainted unreachable.
    #[arg(long, default_value = "50s", value_parser = parse_duration)]
    pub(crate) node_monitor_grace_period: std::time::Duration,

    /// The pod network: each node gets a podCIDR from it.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub(crate) cluster_cidr: String,

    /// The prefix length of each node's podCIDR.
    #[arg(long, default_value_t = 24)]
    pub(crate) node_cidr_mask_size: u8,

    /// Finished pods kept before the oldest are deleted (0 keeps them all).
    #[arg(long, default_value_t = 12_500)]
    pub(crate) terminated_pod_gc_threshold: usize,

    /// The directory on nodes under which the `local-path` StorageClass makes volumes
    /// [default: DATA_DIR/storage in `rudder server`, else /var/lib/rudder/storage].
    #[arg(long)]
    pub(crate) default_local_storage_path: Option<std::path::PathBuf>,

    /// The image of the `local-path` provisioner's helper pods, which make and remove volume
    /// directories on nodes (needs `sh`, `mkdir` and `rm`).
    #[arg(long, default_value = controllers::DEFAULT_LOCAL_PATH_HELPER_IMAGE)]
    pub(crate) local_path_helper_image: String,

    /// The longest validity of the certificates the controller manager signs (node agents'
    /// included; they renew theirs at 70-84% of it); a request may ask for less.
    #[arg(long, default_value = "8760h", value_parser = parse_duration)]
    pub(crate) cluster_signing_duration: std::time::Duration,

    /// Each controller acts as its own service account in kube-system, bound to its
    /// `system:controller:*` role (as k3s sets it); with false, every controller acts as
    /// the kubeconfig's user.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub(crate) use_service_account_credentials: bool,
}

impl ControllerArgs {
    /// The controller manager's options, with the CA that `kube-root-ca.crt` publishes, for
    /// a controller manager reaching the server with the kubeconfig at `kubeconfig`.
    pub(crate) async fn options(
        &self,
        root_ca: String,
        kubeconfig: &std::path::Path,
    ) -> anyhow::Result<controllers::Options> {
        let service_account_credentials = match self.use_service_account_credentials {
            true => Some(crate::client::connection_of(kubeconfig).await?),
            false => None,
        };
        Ok(controllers::Options {
            disabled: self.disable_controller.clone(),
            root_ca: Some(root_ca),
            cluster_signing: None,
            cluster_signing_duration: self.cluster_signing_duration,
            node_monitor_grace_period: self.node_monitor_grace_period,
            cluster_cidr: self.cluster_cidr.clone(),
            node_cidr_mask_size: self.node_cidr_mask_size,
            terminated_pod_gc_threshold: self.terminated_pod_gc_threshold,
            local_storage_path: self
                .default_local_storage_path
                .clone()
                .unwrap_or_else(|| controllers::DEFAULT_LOCAL_STORAGE_PATH.into()),
            local_path_helper_image: self.local_path_helper_image.clone(),
            service_account_credentials,
        })
    }
}

/// Options of `rudder controller-manager`.
#[derive(Debug, Args)]
pub(crate) struct ControllerManagerArgs {
    /// The kubeconfig to reach the API server with.
    #[arg(long)]
    pub(crate) kubeconfig: std::path::PathBuf,

    #[command(flatten)]
    pub(crate) controllers: ControllerArgs,

    /// The cluster CA certificate (PEM) to publish as the `kube-root-ca.crt` ConfigMap in
    /// every namespace; by default the one in the kubeconfig.
    #[arg(long)]
    pub(crate) root_ca_file: Option<std::path::PathBuf>,

    /// The CA certificate (PEM) that signs approved CertificateSigningRequests (node agents
    /// joining with a token need it); with --cluster-signing-key-file.
    #[arg(long, requires = "cluster_signing_key_file")]
    pub(crate) cluster_signing_cert_file: Option<std::path::PathBuf>,

    /// The CA's key (PEM); with --cluster-signing-cert-file.
    #[arg(long, requires = "cluster_signing_cert_file")]
    pub(crate) cluster_signing_key_file: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub(crate) election: LeaderElectArgs,
}

impl ControllerManagerArgs {
    /// The signing CA's certificate and key (PEM), when given.
    pub(crate) fn cluster_signing(&self) -> anyhow::Result<Option<(String, String)>> {
        let (Some(cert), Some(key)) = (
            &self.cluster_signing_cert_file,
            &self.cluster_signing_key_file,
        ) else {
            return Ok(None);
        };
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
        };
        Ok(Some((read(cert)?, read(key)?)))
    }
}

/// Options of `rudder simulate`.
#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// The kubeconfig to reach the API server with.
    #[arg(long)]
    pub(crate) kubeconfig: std::path::PathBuf,

    /// How many nodes to simulate.
    #[arg(long, default_value_t = 1)]
    pub(crate) nodes: usize,

    /// The first node's index: the nodes are FIRST_INDEX to FIRST_INDEX + NODES - 1, named
    /// and addressed by it. Give processes sharing the work disjoint ranges.
    #[arg(long, default_value_t = 0)]
    pub(crate) first_index: usize,

    /// Node names are this prefix and the node's index.
    #[arg(long, default_value = "sim-")]
    pub(crate) name_prefix: String,

    /// CPU capacity of each node.
    #[arg(long, default_value = "4")]
    pub(crate) cpu: String,

    /// Memory capacity of each node.
    #[arg(long, default_value = "16Gi")]
    pub(crate) memory: String,

    /// Pod capacity of each node.
    #[arg(long, default_value_t = 110)]
    pub(crate) pods: u32,

    /// An extended resource on each node, NAME=QUANTITY (repeatable), e.g. example.com/gpu=2.
    #[arg(long = "extended-resource", value_parser = key_value)]
    pub(crate) extended: Vec<(String, String)>,

    /// Spread the nodes round-robin over this many zones (topology.kubernetes.io/zone).
    #[arg(long, default_value_t = 0)]
    pub(crate) zones: usize,

    /// A label on every node, KEY=VALUE (repeatable).
    #[arg(long = "label", value_parser = key_value)]
    pub(crate) labels: Vec<(String, String)>,

    /// A taint on every node, KEY[=VALUE]:EFFECT (repeatable).
    #[arg(long = "taint", value_parser = taint)]
    pub(crate) taints: Vec<(String, String, String)>,

    /// Seconds between renewals of each node's Lease.
    #[arg(long, default_value_t = 10)]
    pub(crate) lease_seconds: u64,

    /// How long the containers of a Job's pods run before they exit with code 0 (e.g. 1s,
    /// 500ms).
    #[arg(long, default_value = "1s", value_parser = simulator::parse_duration)]
    pub(crate) job_pod_duration: std::time::Duration,

    /// How long the containers of every other pod run before they exit with code 0 [default:
    /// until deleted].
    #[arg(long, value_parser = simulator::parse_duration)]
    pub(crate) pod_duration: Option<std::time::Duration>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

fn taint(s: &str) -> Result<(String, String, String), String> {
    let (kv, effect) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not KEY[=VALUE]:EFFECT"))?;
    if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return Err(format!(
            "taint effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
    Ok((k.to_string(), v.to_string(), effect.to_string()))
}

#[derive(Debug, Args)]
pub(crate) struct Bench {
    #[command(subcommand)]
    pub(crate) target: BenchTarget,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchTarget {
    /// The API server: create throughput and latency, LIST, watch fan-out, memory. Starts its
    /// own `rudder server` on a temporary data directory.
    Api(ApiBench),
    /// Authorization and token checks: RBAC's cost per request with many RoleBindings, and
    /// service-account token checks per second. In process, over a scratch store.
    Authz(AuthzBench),
    /// The revisioned key-value store: writes, reads, ranges, watch latency, file growth.
    Store(StoreBench),
    /// The scheduler: pods/s from creation to binding on simulated nodes, attempt latency.
    /// Starts its own `rudder server` on a temporary data directory.
    Scheduler(SchedulerBench),
    /// The controllers: a big Deployment available, rolled out, many small ones, writes per
    /// pod. Starts its own `rudder server` on a temporary data directory.
    Controllers(ControllersBench),
    /// The node agent (as root): pod start latency, one at a time and in a burst, against a
    /// bare `runc run`; the agent's memory. Starts its own server and agent.
    Pods(PodsBench),
    /// Streaming (as root): exec round trips and port-forward throughput through the API
    /// server, against a direct connection to the pod. Starts its own server and agent.
    Streaming(StreamingBench),
    /// Cluster DNS: queries/s and latency under Debian's dnsperf, against Knot DNS serving the
    /// same records, in the same run.
    Dns(DnsBench),
    /// The service proxy (as root): ClusterIP throughput and connection latency against the
    /// pod address directly (Debian's iperf3), and rule updates with many Services against
    /// reloading the whole table; in network namespaces of its own.
    Services(ServicesBench),
    /// The Ingress controller's proxy: requests/s and latency under Debian's wrk, against
    /// Debian's nginx proxying to the same backend, in the same run.
    Ingress(IngressBench),
}

/// Options of `rudder bench ingress`.
#[derive(Debug, Args)]
pub(crate) struct IngressBench {
    /// Print one JSON object on the last line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// Connections wrk keeps open.
    #[arg(long, default_value_t = 50)]
    pub(crate) connections: usize,

    /// How long wrk loads each proxy, per run (seconds).
    #[arg(long, default_value_t = 5)]
    pub(crate) seconds: u64,
}

/// Options of `rudder bench services`.
#[derive(Debug, Args)]
pub(crate) struct ServicesBench {
    /// Print one JSON object on the last line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// Services in the proxy's table (one endpoint each).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) services: usize,

    /// Endpoint changes timed, one Service each.
    #[arg(long, default_value_t = 50)]
    pub(crate) updates: usize,

    /// Connections timed for latency, each way.
    #[arg(long, default_value_t = 2000)]
    pub(crate) connections: usize,

    /// How long iperf3 sends each way (seconds).
    #[arg(long, default_value_t = 5)]
    pub(crate) seconds: u64,
}

/// Options of `rudder bench dns`.
#[derive(Debug, Args)]
pub(crate) struct DnsBench {
    /// Print one JSON object on the last line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// Services (one A record each) both servers hold.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) services: usize,

    /// How long dnsperf asks each server (seconds).
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u64,
}

/// Options of `rudder bench streaming`.
#[derive(Debug, Args)]
pub(crate) struct StreamingBench {
    /// Print one JSON object on the last line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// Exec round trips measured.
    #[arg(long, default_value_t = 50)]
    pub(crate) execs: usize,

    /// The size of the file downloaded through each path (MB).
    #[arg(long, default_value_t = 200)]
    pub(crate) size_mb: u64,
}

/// Options of `rudder bench pods`.
#[derive(Debug, Args)]
pub(crate) struct PodsBench {
    /// Print one JSON object on the last line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// Pods started one at a time.
    #[arg(long, default_value_t = 20)]
    pub(crate) single: usize,

    /// Pods started at once.
    #[arg(long, default_value_t = 30)]
    pub(crate) burst: usize,
}

/// Options of `rudder images`.
#[derive(Debug, Args)]
pub(crate) struct ImagesArgs {
    /// The agent's data directory (its store is `<dir>/images`).
    #[arg(long, default_value = "/var/lib/rudder/agent", global = true)]
    pub(crate) data_dir: std::path::PathBuf,

    #[command(subcommand)]
    pub(crate) command: ImagesCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ImagesCommand {
    /// List the images: name, id, size.
    Ls,
    /// Import an OCI image layout directory, an OCI archive or a `docker save` tarball.
    Import {
        /// The file or directory.
        path: std::path::PathBuf,
    },
    /// Remove an image by name or id (its layers go when no image uses them).
    Rm {
        /// Names or ids.
        #[arg(required = true)]
        images: Vec<String>,
    },
}

/// Options of `rudder bench controllers`.
#[derive(Debug, Args)]
pub(crate) struct ControllersBench {
    /// Print one JSON object on the last line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// Simulated nodes.
    #[arg(long, default_value_t = 100)]
    pub(crate) nodes: usize,

    /// Replicas of the big Deployment.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) replicas: usize,

    /// Deployments of 10 replicas created at once.
    #[arg(long, default_value_t = 100)]
    pub(crate) deployments: usize,
}

/// Options of `rudder bench scheduler`.
#[derive(Debug, Args)]
pub(crate) struct SchedulerBench {
    /// Print one JSON object on the last line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// Simulated nodes.
    #[arg(long, default_value_t = 5_000)]
    pub(crate) nodes: usize,

    /// Pods per workload (plain, then spread with anti-affinity).
    #[arg(long, default_value_t = 30_000)]
    pub(crate) pods: usize,
}

/// Options of `rudder bench authz`.
#[derive(Debug, Args)]
pub(crate) struct AuthzBench {
    /// Print one JSON object on the last line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// RoleBindings added to the namespace asked about.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) bindings: usize,

    /// Authorizations timed per user and phase.
    #[arg(long, default_value_t = 2_000)]
    pub(crate) requests: usize,

    /// Seconds spent checking tokens, and again checking signatures alone.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) token_seconds: f64,
}

/// Options of `rudder bench store`.
#[derive(Debug, Args)]
pub(crate) struct StoreBench {
    /// The store to measure: empty for the embedded SQLite database (in a temporary
    /// directory), etcd://host:port or http://host:port for etcd. The benchmark writes under
    /// its own key prefix but compacts the whole store: point it at a scratch etcd.
    #[arg(long, default_value = "")]
    pub(crate) datastore_endpoint: String,

    /// Print one JSON object on the last line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// Size of each written value, in bytes.
    #[arg(long, default_value_t = 1024)]
    pub(crate) value_size: usize,

    /// Writes made one after another.
    #[arg(long, default_value_t = 2_000)]
    pub(crate) seq_writes: usize,

    /// Writes made by the concurrent writers, in all.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) concurrent_writes: usize,

    /// Number of concurrent writers.
    #[arg(long, default_value_t = 32)]
    pub(crate) writers: usize,

    /// Point reads, in all (from as many concurrent readers as writers).
    #[arg(long, default_value_t = 50_000)]
    pub(crate) reads: usize,

    /// Keys in the range read.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) range_keys: usize,

    /// Writes whose watch delivery latency is measured.
    #[arg(long, default_value_t = 2_000)]
    pub(crate) watch_events: usize,

    /// Updates in the file-growth run (spread over `--update-keys` keys).
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) updates: usize,

    /// Keys the file-growth run updates.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) update_keys: usize,

    /// During the file-growth run, compact every this many updates (as the background
    /// compactor would every few minutes under that load).
    #[arg(long, default_value_t = 50_000)]
    pub(crate) compact_every: usize,
}

/// Options of `rudder bench api`.
#[derive(Debug, Args)]
pub(crate) struct ApiBench {
    /// Print one JSON object on the last line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// Pods created (and listed).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) pods: usize,

    /// ConfigMaps created besides the pods, for the loaded memory figure.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) configmaps: usize,

    /// Concurrent clients creating objects (one HTTP/2 connection each).
    #[arg(long, default_value_t = 32)]
    pub(crate) clients: usize,

    /// Concurrent watchers of one object.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) watchers: usize,

    /// Updates of the watched object.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) updates: usize,
}

/// Options of `rudder server` (k3s' flag names).
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Where certificates, the admin kubeconfig and the embedded database live
    /// [default: /var/lib/rudder as root, else ~/.local/share/rudder].
    #[arg(long)]
    pub(crate) data_dir: Option<std::path::PathBuf>,

    /// The HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    pub(crate) https_listen_port: u16,

    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub(crate) bind_address: std::net::IpAddr,

    /// The store: empty for embedded SQLite, etcd://host:port[,host:port],
    /// http://host:port or https://host:port for etcd.
    #[arg(long, default_value = "")]
    pub(crate) datastore_endpoint: String,

    /// The CA (PEM file) an https:// etcd's serving certificate chains to.
    #[arg(long)]
    pub(crate) datastore_cafile: Option<std::path::PathBuf>,

    /// The client certificate (PEM file) to present to an https:// etcd.
    #[arg(long, requires_all = ["datastore_keyfile", "datastore_cafile"])]
    pub(crate) datastore_certfile: Option<std::path::PathBuf>,

    /// The key (PEM file) of --datastore-certfile.
    #[arg(long, requires = "datastore_certfile")]
    pub(crate) datastore_keyfile: Option<std::path::PathBuf>,

    /// An extra host name or IP address for the serving certificate (repeatable).
    #[arg(long = "tls-san")]
    pub(crate) tls_san: Vec<String>,

    /// Also write the admin kubeconfig here.
    #[arg(long)]
    pub(crate) write_kubeconfig: Option<std::path::PathBuf>,

    /// A static token file: `token,user,uid,"group1,group2"` per line.
    #[arg(long)]
    pub(crate) token_auth_file: Option<std::path::PathBuf>,

    /// Admission steps to leave out, by name (e.g. ServiceAccount), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub(crate) disable_admission_plugins: Vec<String>,

    /// Admission steps off by default to turn on, by name (AlwaysPullImages),
    /// comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub(crate) enable_admission_plugins: Vec<String>,

    /// An AdmissionConfiguration file (YAML or JSON) configuring admission steps: the
    /// PodSecurity defaults and exemptions.
    #[arg(long)]
    pub(crate) admission_control_config_file: Option<std::path::PathBuf>,

    /// Accept ID tokens of this OIDC issuer (an https URL, equal to the tokens' `iss`).
    #[arg(long, requires = "oidc_client_id")]
    pub(crate) oidc_issuer_url: Option<String>,

    /// The client ID OIDC ID tokens must be issued for (their `aud`).
    #[arg(long)]
    pub(crate) oidc_client_id: Option<String>,

    /// The ID token claim naming the user.
    #[arg(long, default_value = "sub")]
    pub(crate) oidc_username_claim: String,

    /// What goes before OIDC user names ("-" for nothing; by default the issuer URL and "#",
    /// except for the email claim).
    #[arg(long)]
    pub(crate) oidc_username_prefix: Option<String>,

    /// The ID token claim listing the user's groups.
    #[arg(long)]
    pub(crate) oidc_groups_claim: Option<String>,

    /// What goes before OIDC group names.
    #[arg(long, default_value = "")]
    pub(crate) oidc_groups_prefix: String,

    /// The CA that signed the OIDC issuer's serving certificate (the system's CAs otherwise).
    #[arg(long)]
    pub(crate) oidc_ca_file: Option<std::path::PathBuf>,

    /// Let requests without credentials in as `system:anonymous` (group
    /// `system:unauthenticated`), which RBAC lets read only /version and the health checks.
    /// Off, they are refused with 401 everywhere.
    #[arg(long)]
    pub(crate) anonymous_auth: bool,

    /// Encrypt Secrets at rest (k3s' flag): with a key made at first start, kept in
    /// DATA_DIR/cred/encryption-config.json.
    #[arg(long)]
    pub(crate) secrets_encryption: bool,

    /// An EncryptionConfiguration file: which resources are encrypted at rest, with which
    /// providers and keys (upstream's flag; overrides --secrets-encryption's file).
    #[arg(long)]
    pub(crate) encryption_provider_config: Option<std::path::PathBuf>,

    /// A PEM file of RSA keys (public or private) or certificates whose keys also verify
    /// service-account tokens (repeatable; upstream's flag). The server signs with
    /// DATA_DIR/tls/service-account.key, which always verifies.
    #[arg(long)]
    pub(crate) service_account_key_file: Vec<std::path::PathBuf>,

    /// API Priority and Fairness: FlowSchemas sort requests into priority levels that share
    /// the server's seats fairly among flows (upstream's flag; `false` turns it off).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) enable_priority_and_fairness: bool,

    /// Seats for requests, with --max-mutating-requests-inflight: priority and fairness
    /// shares out their sum.
    #[arg(long, default_value_t = 400)]
    pub(crate) max_requests_inflight: usize,

    /// Seats for requests that write (added to --max-requests-inflight).
    #[arg(long, default_value_t = 200)]
    pub(crate) max_mutating_requests_inflight: usize,

    /// The audit Policy file (audit.k8s.io/v1); without one nothing is audited.
    #[arg(long)]
    pub(crate) audit_policy_file: Option<std::path::PathBuf>,

    /// Where the audit log goes, one JSON event per line; `-` is standard output.
    #[arg(long)]
    pub(crate) audit_log_path: Option<std::path::PathBuf>,

    /// Rotate the audit log once it reaches this many megabytes (0: never).
    #[arg(long, default_value_t = 0)]
    pub(crate) audit_log_maxsize: u64,

    /// How many rotated audit logs to keep (0: all).
    #[arg(long, default_value_t = 0)]
    pub(crate) audit_log_maxbackup: usize,

    /// How many days to keep rotated audit logs (0: forever).
    #[arg(long, default_value_t = 0)]
    pub(crate) audit_log_maxage: u64,

    /// A kubeconfig naming the server audit events are POSTed to, in batches.
    #[arg(long)]
    pub(crate) audit_webhook_config_file: Option<std::path::PathBuf>,

    /// How long an audit webhook batch waits for more events before it is sent.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) audit_webhook_batch_max_wait: std::time::Duration,

    /// How many events an audit webhook batch holds at most.
    #[arg(long, default_value_t = apiserver::audit::DEFAULT_BATCH_SIZE)]
    pub(crate) audit_webhook_batch_max_size: usize,

    /// The range ClusterIPs come from; its first address is the `kubernetes` Service's, its
    /// tenth cluster DNS's.
    #[arg(long, default_value = "10.43.0.0/16")]
    pub(crate) service_cidr: apiserver::allocator::ServiceRange,

    /// How long the store keeps history for watches before compacting it (e.g. 300s, 5m).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub(crate) etcd_compaction_interval: std::time::Duration,

    /// Do not run the scheduler in this process (run `rudder scheduler` elsewhere).
    #[arg(long)]
    pub(crate) disable_scheduler: bool,

    /// Do not run the controller manager in this process (run `rudder controller-manager`
    /// elsewhere).
    #[arg(long)]
    pub(crate) disable_controller_manager: bool,

    #[command(flatten)]
    pub(crate) controllers: ControllerArgs,

    /// Serve the in-process scheduler's Prometheus metrics over plain HTTP at this address
    /// (`/metrics`), e.g. 127.0.0.1:10251, as `rudder scheduler --metrics-bind-address` does.
    #[arg(long)]
    pub(crate) scheduler_metrics_bind_address: Option<std::net::SocketAddr>,

    /// Do not run a node agent for this host (pods then run only on other nodes, or on
    /// simulated ones).
    #[arg(long)]
    pub(crate) disable_agent: bool,

    /// Do not run the service proxy beside the node agent (ClusterIPs and NodePorts then
    /// reach nothing on this node).
    #[arg(long)]
    pub(crate) disable_kube_proxy: bool,

    /// Do not serve cluster DNS (the `kube-dns` Service's address then answers nothing, and
    /// pods use the node's resolvers unless --cluster-dns names another server).
    #[arg(long)]
    pub(crate) disable_cluster_dns: bool,

    /// The nftables table (family ip) the service proxy owns; two clusters on one host need
    /// two names.
    #[arg(long, default_value = "rudder")]
    pub(crate) proxy_table: String,

    /// Do not run the Ingress controller beside the node agent (Ingresses of class `rudder`
    /// then route nothing).
    #[arg(long)]
    pub(crate) disable_ingress: bool,

    /// The port the Ingress controller serves HTTP on, on every address of the node.
    #[arg(long, default_value_t = 80)]
    pub(crate) ingress_http_port: u16,

    /// The port the Ingress controller serves HTTPS on, on every address of the node.
    #[arg(long, default_value_t = 443)]
    pub(crate) ingress_https_port: u16,

    #[command(flatten)]
    pub(crate) agent: AgentArgs,
}

/// How a node agent runs its host's pods (`rudder server` and `rudder agent`).
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// The Node's name [default: the host name].
    #[arg(long)]
    pub(crate) node_name: Option<String>,

    /// The node's address [default: the server's bind address, or the address of the
    /// host's default route].
    #[arg(long)]
    pub(crate) node_ip: Option<std::net::IpAddr>,

    /// The port of the agent's HTTPS endpoint (logs), as the kubelet's.
    #[arg(long, default_value_t = agent::DEFAULT_PORT)]
    pub(crate) kubelet_port: u16,

    /// Where container logs go.
    #[arg(long, default_value = "/var/log/pods")]
    pub(crate) pod_log_dir: std::path::PathBuf,

    /// The OCI runtime: runc, crun or a path [default: crun on cgroup v2 when installed,
    /// else runc].
    #[arg(long)]
    pub(crate) runtime: Option<String>,

    /// The name of the node's pod bridge.
    #[arg(long, default_value = agent::DEFAULT_BRIDGE)]
    pub(crate) bridge: String,

    /// The node's pod address range, when no node-IPAM controller assigns one.
    #[arg(long)]
    pub(crate) pod_cidr: Option<String>,

    /// A k3s-style registries.yaml: mirrors, credentials, plain-HTTP registries.
    #[arg(long)]
    pub(crate) private_registry: Option<std::path::PathBuf>,

    /// Disk use (percent of the image store's filesystem) above which unused images are
    /// removed, least recently pulled first (the kubelet's imageGCHighThresholdPercent).
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub(crate) image_gc_high_threshold: u8,

    /// Disk use the image garbage collector frees down to (imageGCLowThresholdPercent).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub(crate) image_gc_low_threshold: u8,

    /// How often disk use is checked (tests shorten it).
    #[arg(long, default_value = "5m", value_parser = parse_duration, hide = true)]
    pub(crate) image_gc_period: std::time::Duration,

    /// How long an image stays after it was pulled before it may be removed
    /// (imageMinimumGCAge).
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub(crate) image_gc_min_age: std::time::Duration,

    /// Sysctls pods may set beyond the safe set, comma-separated; a trailing `*` matches a
    /// prefix (`kernel.msg*,net.core.somaxconn`).
    #[arg(long, value_delimiter = ',')]
    pub(crate) allowed_unsafe_sysctls: Vec<String>,

    /// The cluster DNS address `ClusterFirst` pods resolve through [`rudder server`: the tenth
    /// address of --service-cidr, where its DNS listens; `rudder agent`: none, the node's
    /// resolvers].
    #[arg(long)]
    pub(crate) cluster_dns: Option<std::net::IpAddr>,

    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub(crate) cluster_domain: String,
}

/// Options of `rudder agent`: a kubeconfig with the node's credentials, or a server and a
/// join token to get them with.
#[derive(Debug, Args)]
pub(crate) struct AgentCommandArgs {
    /// The kubeconfig to reach the API server with (a node's credentials).
    #[arg(long, required_unless_present = "server", conflicts_with = "server")]
    pub(crate) kubeconfig: Option<std::path::PathBuf>,

    /// The API server to join, e.g. https://10.0.0.1:6443 (with --token or --token-file).
    #[arg(long, requires = "join_token")]
    pub(crate) server: Option<String>,

    /// The join token (`rudder server` writes it to <data-dir>/token).
    #[arg(long, group = "join_token", requires = "server")]
    pub(crate) token: Option<String>,

    /// A file holding the join token.
    #[arg(long, group = "join_token", requires = "server")]
    pub(crate) token_file: Option<std::path::PathBuf>,

    /// The cluster CA certificate (PEM) to trust the server with when joining [default: the
    /// CA the server presents, trusted on first use].
    #[arg(long, requires = "server")]
    pub(crate) ca_file: Option<std::path::PathBuf>,

    /// Where the agent keeps containers, images and pod state
    /// [default: /var/lib/rudder/agent].
    #[arg(long, default_value = "/var/lib/rudder/agent")]
    pub(crate) data_dir: std::path::PathBuf,

    /// Do not run the service proxy beside the agent (ClusterIPs and NodePorts then reach
    /// nothing on this node). It runs with the node's own credentials.
    #[arg(long)]
    pub(crate) disable_kube_proxy: bool,

    #[command(flatten)]
    pub(crate) proxy: ProxyOptions,

    #[command(flatten)]
    pub(crate) agent: AgentArgs,
}

impl AgentCommandArgs {
    /// The join token, from --token or --token-file.
    pub(crate) fn join_token(&self) -> anyhow::Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.trim().to_string());
        }
        let path = self
            .token_file
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("--server needs --token or --token-file"))?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Ok(text.trim().to_string())
    }

    /// The cluster CA from --ca-file, if given.
    pub(crate) fn ca(&self) -> anyhow::Result<Option<String>> {
        self.ca_file
            .as_ref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
            })
            .transpose()
    }
}

/// Options of `rudder reset`.
#[derive(Debug, Args)]
pub(crate) struct ResetArgs {
    /// The agent's data directory: `<server data dir>/agent` for `rudder server`'s agent (given
    /// a server's data directory, reset uses its `agent` subdirectory)
    /// [default: /var/lib/rudder/agent].
    #[arg(long, default_value = "/var/lib/rudder/agent")]
    pub(crate) data_dir: std::path::PathBuf,

    /// The node's pod bridge, deleted.
    #[arg(long, default_value = agent::DEFAULT_BRIDGE)]
    pub(crate) bridge: String,

    /// The service proxy's nftables table, deleted.
    #[arg(long, default_value = "rudder")]
    pub(crate) proxy_table: String,

    /// The cluster DNS address, taken off the loopback device.
    #[arg(long, default_value = "10.43.0.10")]
    pub(crate) cluster_dns: std::net::IpAddr,
}

/// Options of the container monitor (`rudder shim`), which the agent starts itself.
#[derive(Debug, Args)]
pub(crate) struct ShimArgs {
    /// The OCI runtime binary.
    #[arg(long)]
    pub(crate) runtime: std::path::PathBuf,
    /// Its state directory.
    #[arg(long)]
    pub(crate) root: std::path::PathBuf,
    /// The container id.
    #[arg(long)]
    pub(crate) id: String,
    /// The OCI bundle.
    #[arg(long)]
    pub(crate) bundle: std::path::PathBuf,
    /// The CRI log file.
    #[arg(long)]
    pub(crate) log: std::path::PathBuf,
    /// Where the exit status is written.
    #[arg(long)]
    pub(crate) exit_file: std::path::PathBuf,
    /// Keep the container's stdin open for attached clients.
    #[arg(long)]
    pub(crate) stdin: bool,
    /// Close the container's stdin once the first attached client lets go of it.
    #[arg(long)]
    pub(crate) stdin_once: bool,
    /// Run the container on a terminal.
    #[arg(long)]
    pub(crate) tty: bool,
}

/// Parses `90s`, `5m`, `1h` or a plain number of seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 500ms, 90s, 5m, 1h"))?;
    let millis = match unit {
        "ms" => n,
        "" | "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => {
            return Err(format!(
                "invalid duration {s:?}: expected e.g. 500ms, 90s, 5m, 1h"
            ));
        }
    };
    if millis == 0 {
        return Err("the interval must be positive".into());
    }
    Ok(std::time::Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("5m").unwrap().as_secs(), 300);
        assert_eq!(parse_duration("2").unwrap().as_secs(), 2);
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("0").is_err());
    }

    #[test]
    fn agents_take_a_kubeconfig_or_a_server_and_a_token() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(
                std::iter::once("rudder")
                    .chain(["agent"])
                    .chain(args.iter().copied()),
            )
        };
        assert!(parse(&["--kubeconfig", "k"]).is_ok());
        assert!(parse(&["--server", "https://h:6443", "--token", "t"]).is_ok());
        assert!(
            parse(&[
                "--server",
                "https://h:6443",
                "--token-file",
                "f",
                "--ca-file",
                "c"
            ])
            .is_ok()
        );
        assert!(parse(&[]).is_err(), "neither");
        assert!(parse(&["--server", "https://h:6443"]).is_err(), "no token");
        assert!(parse(&["--token", "t"]).is_err(), "no server");
        assert!(
            parse(&[
                "--kubeconfig",
                "k",
                "--server",
                "https://h:6443",
                "--token",
                "t"
            ])
            .is_err()
        );
        assert!(
            parse(&[
                "--server",
                "https://h:6443",
                "--token",
                "t",
                "--token-file",
                "f"
            ])
            .is_err()
        );
        assert!(parse(&["--kubeconfig", "k", "--ca-file", "c"]).is_err());
    }
}
