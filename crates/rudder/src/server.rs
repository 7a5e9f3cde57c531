//! `rudder server`: starts the control plane and serves until SIGINT or SIGTERM.

use anyhow::{Context, Result};

use crate::cli::ServerArgs;

/// The default data directory: `/var/lib/rudder` for root, else `~/.local/share/rudder`.
pub(crate) fn default_data_dir() -> std::path::PathBuf {
    let root = is_root();
    match std::env::var_os("HOME") {
        Some(home) if !root => std::path::Path::new(&home).join(".local/share/rudder"),
        _ => "/var/lib/rudder".into(),
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The source address the host uses towards the outside (its default route), if any.
fn default_route_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

/// Runs the service proxy on the kernel until `stopped` changes; it then removes its table.
pub(crate) fn spawn_proxy(
    client: kube::Client,
    config: proxy::rules::Config,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.changed().await;
        };
        let host = std::sync::Arc::new(proxy::host::Nft);
        if let Err(e) = proxy::run(client, config, host, shutdown).await {
            tracing::error!("the service proxy stopped: {e:#}");
        }
    })
}

/// This host's name, lowercased, as a node's name by default.
pub(crate) fn host_name() -> Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading the host name (or name the node with a flag)")?;
    Ok(name.trim().to_lowercase())
}

/// The agent's configuration from its flags.
pub(crate) fn agent_config(
    args: &crate::cli::AgentArgs,
    data_dir: std::path::PathBuf,
    node_ip: Option<std::net::IpAddr>,
    control_plane: bool,
) -> Result<agent::Config> {
    let node_name = match &args.node_name {
        Some(n) => n.clone(),
        None => host_name()?,
    };
    let node_ip = match args.node_ip.or(node_ip) {
        Some(ip) => ip,
        None => default_route_ip().context("finding the node's address (pass --node-ip)")?,
    };
    let registries = match &args.private_registry {
        Some(p) => image::Registries::load(p)?,
        None => Default::default(),
    };
    Ok(agent::Config {
        node_name,
        data_dir,
        pod_log_dir: args.pod_log_dir.clone(),
        runtime: args.runtime.clone(),
        node_ip,
        port: args.kubelet_port,
        bridge: args.bridge.clone(),
        pod_cidr: args.pod_cidr.clone(),
        control_plane,
        max_pods: 110,
        registries,
        tls: None,
        image_gc: agent::ImageGc {
            high: args.image_gc_high_threshold,
            low: args
                .image_gc_low_threshold
                .min(args.image_gc_high_threshold),
            period: args.image_gc_period,
            min_age: args.image_gc_min_age,
        },
        allowed_unsafe_sysctls: args.allowed_unsafe_sysctls.clone(),
        cluster_dns: args.cluster_dns.map(|address| agent::ClusterDns {
            address,
            domain: args.cluster_domain.clone(),
        }),
    })
}

/// A kubeconfig with a node's client certificate.
fn node_kubeconfig(creds: &apiserver::pki::NodeCredentials, url: &str) -> String {
    let pair = (creds.client_cert.as_str(), creds.client_key.as_str());
    apiserver::pki::client_kubeconfig(url, &creds.ca_cert, pair, "node")
}

/// The scheduler's client certificate (file stem) and user, as k3s names them.
const SCHEDULER: (&str, &str) = ("client-scheduler", "system:kube-scheduler");
/// The service proxy's.
const KUBE_PROXY: (&str, &str) = ("client-kube-proxy", "system:kube-proxy");
/// The controller manager's.
const CONTROLLER_MANAGER: (&str, &str) = ("client-controller", "system:kube-controller-manager");

/// The kubeconfig of a control-plane component that acts as `user` with a client certificate
/// of its own (`tls/<stem>.crt`, as k3s' `client-scheduler` and `client-controller`), written
/// to `cred/<stem>.kubeconfig` in `data_dir`; its path.
fn component_kubeconfig(
    server: &apiserver::Server,
    data_dir: &std::path::Path,
    stem: &str,
    user: &str,
) -> Result<std::path::PathBuf> {
    let tls = data_dir.join("tls");
    let (cert, key) = apiserver::pki::component_client(&tls, stem, user, &[])?;
    let ca = std::fs::read_to_string(tls.join("ca.crt"))
        .with_context(|| format!("reading {}", tls.join("ca.crt").display()))?;
    let url = format!("https://127.0.0.1:{}", server.address.port());
    let text = apiserver::pki::client_kubeconfig(&url, &ca, (&cert, &key), user);
    let path = data_dir.join("cred").join(format!("{stem}.kubeconfig"));
    apiserver::pki::write_private(&path, &text)?;
    Ok(path)
}

pub(crate) async fn run(mut opts: ServerArgs) -> Result<()> {
    let data_dir = opts.data_dir.take().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let advertise = advertise_address(opts.bind_address);
    let token_file = data_dir.join("token");
    if opts.secrets_encryption && opts.encryption_provider_config.is_none() {
        // k3s' file, made with a fresh key at first start.
        let file = data_dir.join("cred/encryption-config.json");
        apiserver::encryption::ensure_default_config(&file).map_err(anyhow::Error::msg)?;
        opts.encryption_provider_config = Some(file);
    }
    let config = api_config(&mut opts, &data_dir, advertise, &token_file)?;
    let server = apiserver::start(config)
        .await
        .context("starting the API server")?;
    print_banner(&server, advertise, &token_file);
    // The control-plane components are API clients of this server, as upstream's are.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut components = Vec::new();
    // The node this process runs, if any: the proxy's local endpoints are its, and cluster
    // DNS serves its pods at the range's tenth address.
    let mut node = None;
    let mut node_address = None;
    let cluster_dns = (!opts.disable_cluster_dns).then(|| opts.service_cidr.nth(10));
    if opts.disable_agent {
        tracing::info!("no node agent (--disable-agent): pods run on other nodes only");
    } else if !is_root() {
        tracing::warn!(
            "no node agent: running containers needs root (run as root, or pass --disable-agent to silence this)"
        );
    } else {
        let (name, address, agent) =
            start_agent(&opts, &data_dir, &server, cluster_dns, stopped.clone()).await?;
        node = Some(name);
        node_address = Some(address);
        components.push(agent);
    }
    if let (Some(address), true) = (cluster_dns, node.is_some()) {
        let client = crate::client::from_kubeconfig(&server.kubeconfig).await?;
        let dns = crate::cluster_dns::Options {
            address,
            domain: opts.agent.cluster_domain.clone(),
        };
        components.push(crate::cluster_dns::start(client, dns, stopped.clone()).await?);
    }
    if let Some(node) = node.filter(|_| !opts.disable_kube_proxy) {
        // The proxy reads every Service and EndpointSlice, as upstream's system:kube-proxy.
        let kubeconfig = component_kubeconfig(&server, &data_dir, KUBE_PROXY.0, KUBE_PROXY.1)?;
        let client = crate::client::from_kubeconfig(&kubeconfig).await?;
        let config = proxy::rules::Config {
            table: opts.proxy_table.clone(),
            cluster_cidr: Some(opts.controllers.cluster_cidr.clone()),
            service_cidr: Some(opts.service_cidr.to_string()),
            node: Some(node),
        };
        components.push(spawn_proxy(client, config, stopped.clone()));
    }
    if let Some(address) = node_address.filter(|_| !opts.disable_ingress) {
        components.push(start_ingress(&opts, &server, address, stopped.clone()).await?);
    }
    if !opts.disable_scheduler {
        components.extend(start_scheduler(&opts, &server, &data_dir, &stopped).await?);
    }
    if !opts.disable_controller_manager {
        components
            .push(start_controller_manager(&opts, &server, &data_dir, stopped.clone()).await?);
    }
    wait_for_signal().await?;
    tracing::info!("shutting down");
    let _ = stop.send(true);
    for c in components {
        let _ = c.await;
    }
    server.shutdown().await.context("closing the store")?;
    Ok(())
}

/// The address other nodes join at: the bind address, or the host's default route's.
fn advertise_address(bind_address: std::net::IpAddr) -> Option<std::net::IpAddr> {
    if bind_address.is_unspecified() {
        default_route_ip()
    } else {
        Some(bind_address)
    }
}

/// How to reach an `https://` etcd, from `--datastore-cafile`, `--datastore-certfile` and
/// `--datastore-keyfile`.
fn datastore_tls(opts: &ServerArgs) -> Result<Option<store::EtcdTls>> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    };
    let Some(ca) = &opts.datastore_cafile else {
        return Ok(None);
    };
    let identity = match (&opts.datastore_certfile, &opts.datastore_keyfile) {
        (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
        _ => None,
    };
    Ok(Some(store::EtcdTls {
        ca: read(ca)?,
        identity,
    }))
}

/// The API server's configuration from the server's flags (it takes those only it reads).
fn api_config(
    opts: &mut ServerArgs,
    data_dir: &std::path::Path,
    advertise: Option<std::net::IpAddr>,
    token_file: &std::path::Path,
) -> Result<apiserver::Config> {
    // The serving certificate names the address other nodes join at.
    let mut tls_sans = std::mem::take(&mut opts.tls_san);
    if let Some(ip) = advertise.filter(|ip| !tls_sans.contains(&ip.to_string())) {
        tls_sans.push(ip.to_string());
    }
    Ok(apiserver::Config {
        data_dir: data_dir.to_path_buf(),
        bind_address: opts.bind_address,
        port: opts.https_listen_port,
        datastore_endpoint: std::mem::take(&mut opts.datastore_endpoint),
        datastore_tls: datastore_tls(opts)?,
        tls_sans,
        write_kubeconfig: opts.write_kubeconfig.take(),
        token_auth_file: opts.token_auth_file.take(),
        join_token_file: Some(token_file.to_path_buf()),
        compaction_window: opts.etcd_compaction_interval,
        service_cidr: opts.service_cidr,
        // Pods reach the API through the `kubernetes` Service; a loopback address is no use
        // to them, so a server bound to one leaves that Service without endpoints.
        advertise_address: advertise.filter(|ip| !ip.is_loopback()),
        disable_admission_plugins: std::mem::take(&mut opts.disable_admission_plugins),
        enable_admission_plugins: std::mem::take(&mut opts.enable_admission_plugins),
        admission_control_config_file: opts.admission_control_config_file.take(),
        oidc: opts
            .oidc_issuer_url
            .take()
            .map(|issuer_url| apiserver::authn::oidc::Options {
                issuer_url,
                client_id: opts.oidc_client_id.take().unwrap_or_default(),
                username_claim: std::mem::take(&mut opts.oidc_username_claim),
                username_prefix: opts.oidc_username_prefix.take(),
                groups_claim: opts.oidc_groups_claim.take(),
                groups_prefix: std::mem::take(&mut opts.oidc_groups_prefix),
                ca_file: opts.oidc_ca_file.take(),
            }),
        audit: audit_options(opts),
        encryption_provider_config: opts.encryption_provider_config.take(),
        anonymous_auth: opts.anonymous_auth,
        service_account_key_files: std::mem::take(&mut opts.service_account_key_file),
        flowcontrol: opts
            .enable_priority_and_fairness
            .then_some(apiserver::flowcontrol::Options {
                max_requests_inflight: opts.max_requests_inflight,
                max_mutating_requests_inflight: opts.max_mutating_requests_inflight,
            }),
    })
}

/// The `--audit-*` flags: auditing is on when a policy file is given.
fn audit_options(opts: &mut ServerArgs) -> Option<apiserver::audit::Options> {
    let policy_file = opts.audit_policy_file.take()?;
    let log = opts
        .audit_log_path
        .take()
        .map(|path| apiserver::audit::LogOptions {
            path,
            max_size_mb: opts.audit_log_maxsize,
            max_backups: opts.audit_log_maxbackup,
            max_age_days: opts.audit_log_maxage,
        });
    let webhook =
        opts.audit_webhook_config_file
            .take()
            .map(|config_file| apiserver::audit::WebhookOptions {
                config_file,
                batch_max_wait: opts.audit_webhook_batch_max_wait,
                batch_max_size: opts.audit_webhook_batch_max_size,
            });
    Some(apiserver::audit::Options {
        policy_file,
        log,
        webhook,
    })
}

/// Tells the user where the API is served and how a node joins.
fn print_banner(
    server: &apiserver::Server,
    advertise: Option<std::net::IpAddr>,
    token_file: &std::path::Path,
) {
    let join = std::net::SocketAddr::new(
        advertise.unwrap_or([127, 0, 0, 1].into()),
        server.address.port(),
    );
    eprintln!(
        "Rudder is serving the Kubernetes API at https://127.0.0.1:{}\n  export KUBECONFIG={}\n  kubectl get namespaces\nTo join a node to this cluster, run on it (as root):\n  rudder agent --server https://{join} --token-file {}  (copy the file over first)",
        server.address.port(),
        server.kubeconfig.display(),
        token_file.display()
    );
}

/// Starts the node agent of this host, with a client certificate of its own; returns the
/// node's name, its address and the agent's task.
async fn start_agent(
    opts: &ServerArgs,
    data_dir: &std::path::Path,
    server: &apiserver::Server,
    cluster_dns: Option<std::net::Ipv4Addr>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<(String, std::net::IpAddr, tokio::task::JoinHandle<()>)> {
    let node_ip = opts.agent.node_ip.unwrap_or_else(|| {
        if opts.bind_address.is_unspecified() {
            default_route_ip().unwrap_or(opts.bind_address)
        } else {
            opts.bind_address
        }
    });
    let mut config = agent_config(&opts.agent, data_dir.join("agent"), Some(node_ip), true)?;
    if config.cluster_dns.is_none() {
        config.cluster_dns = cluster_dns.map(|address| agent::ClusterDns {
            address: address.into(),
            domain: opts.agent.cluster_domain.clone(),
        });
    }
    let node = config.node_name.clone();
    let mut sans = vec![
        config.node_name.clone(),
        node_ip.to_string(),
        "localhost".to_string(),
    ];
    sans.dedup();
    let creds = apiserver::pki::node_credentials(&data_dir.join("tls"), &config.node_name, &sans)
        .context("issuing the node agent's certificates")?;
    let kubeconfig = data_dir.join("agent").join("kubeconfig.yaml");
    apiserver::pki::write_private(
        &kubeconfig,
        &node_kubeconfig(
            &creds,
            &format!("https://127.0.0.1:{}", server.address.port()),
        ),
    )?;
    let client = crate::client::from_kubeconfig(&kubeconfig).await?;
    let config = agent::Config {
        tls: Some((
            creds.ca_cert,
            agent::rotation::ServingCertificate::new(&creds.serving_cert, &creds.serving_key)
                .map_err(anyhow::Error::msg)?,
        )),
        ..config
    };
    let agent = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.changed().await;
        };
        if let Err(e) = agent::run(client, config, shutdown).await {
            tracing::error!("the node agent stopped: {e:#}");
        }
    });
    Ok((node, node_ip, agent))
}

/// Starts the Ingress controller, listening on every address and reporting `address`.
async fn start_ingress(
    opts: &ServerArgs,
    server: &apiserver::Server,
    address: std::net::IpAddr,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let client = crate::client::from_kubeconfig(&server.kubeconfig).await?;
    let config = ingress::Config {
        class: "rudder".into(),
        http: Some(std::net::SocketAddr::from((
            [0, 0, 0, 0],
            opts.ingress_http_port,
        ))),
        https: Some(std::net::SocketAddr::from((
            [0, 0, 0, 0],
            opts.ingress_https_port,
        ))),
        status_addresses: vec![address],
    };
    Ok(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.changed().await;
        };
        if let Err(e) = ingress::run(client, config, shutdown).await {
            tracing::error!("the Ingress controller stopped: {e}");
        }
    }))
}

/// Starts the scheduler and, when asked for, its metrics endpoint; returns their tasks.
async fn start_scheduler(
    opts: &ServerArgs,
    server: &apiserver::Server,
    data_dir: &std::path::Path,
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut components = Vec::new();
    // As upstream's system:kube-scheduler, with its bootstrap roles.
    let kubeconfig = component_kubeconfig(server, data_dir, SCHEDULER.0, SCHEDULER.1)?;
    let client = crate::client::from_kubeconfig(&kubeconfig).await?;
    let metrics = std::sync::Arc::new(scheduler::metrics::Metrics::default());
    if let Some(addr) = opts.scheduler_metrics_bind_address {
        // Bind before going on, so a taken address stops the start-up with its reason.
        let listener = crate::metrics::bind(addr).await?;
        let (metrics, mut stopped) = (metrics.clone(), stopped.clone());
        components.push(tokio::spawn(async move {
            tokio::select! {
                r = crate::metrics::serve(listener, metrics) => {
                    if let Err(e) = r {
                        tracing::error!("the scheduler's metrics endpoint stopped: {e:#}");
                    }
                }
                _ = stopped.changed() => {}
            }
        }));
    }
    let mut stopped = stopped.clone();
    components.push(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.changed().await;
        };
        let election = election::Election::new("kube-scheduler");
        if let Err(e) = scheduler::run(client, None, Some(election), metrics, shutdown).await {
            tracing::error!("the scheduler stopped: {e:#}");
        }
    }));
    Ok(components)
}

/// Starts the controller manager, which signs joining nodes' certificates with the cluster CA.
async fn start_controller_manager(
    opts: &ServerArgs,
    server: &apiserver::Server,
    data_dir: &std::path::Path,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    // As upstream's system:kube-controller-manager when each controller acts as its own
    // account; as the admin when they all act as the controller manager.
    let kubeconfig = match opts.controllers.use_service_account_credentials {
        true => component_kubeconfig(server, data_dir, CONTROLLER_MANAGER.0, CONTROLLER_MANAGER.1)?,
        false => server.kubeconfig.clone(),
    };
    let client = crate::client::from_kubeconfig(&kubeconfig).await?;
    let root_ca = crate::client::ca_of(&kubeconfig)?;
    let mut options = opts.controllers.options(root_ca, &kubeconfig).await?;
    if opts.controllers.default_local_storage_path.is_none() {
        options.local_storage_path = data_dir.join("storage");
    }
    // The cluster CA signs the certificates node agents ask for when they join.
    let tls = data_dir.join("tls");
    let read = |f: &str| {
        std::fs::read_to_string(tls.join(f))
            .with_context(|| format!("reading {}", tls.join(f).display()))
    };
    options.cluster_signing = Some((read("ca.crt")?, read("ca.key")?));
    controllers::check(&options)?;
    Ok(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.changed().await;
        };
        let election = election::Election::new("kube-controller-manager");
        if let Err(e) = controllers::run(client, options, Some(election), shutdown).await {
            tracing::error!("the controller manager stopped: {e:#}");
        }
    }))
}

/// Waits for SIGINT or SIGTERM.
async fn wait_for_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}
