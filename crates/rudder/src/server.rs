//! `rudder server`: starts the control plane and serves until SIGINT or SIGTERM.

use anyhow::{Context, Result};

use crate::cli::ServerArgs;

/// The default data directory: `/var/lib/rudder` for root, else `~/.local/share/rudder`.
fn default_data_dir() -> std::path::PathBuf {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    match std::env::var_os("HOME") {
        Some(home) if !root => std::path::Path::new(&home).join(".local/share/rudder"),
        _ => "/var/lib/rudder".into(),
    }
}

pub(crate) async fn run(opts: ServerArgs) -> Result<()> {
    let data_dir = opts.data_dir.unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let config = apiserver::Config {
        data_dir: data_dir.clone(),
        bind_address: opts.bind_address,
        port: opts.https_listen_port,
        datastore_endpoint: opts.datastore_endpoint,
        tls_sans: opts.tls_san,
        write_kubeconfig: opts.write_kubeconfig,
        token_auth_file: opts.token_auth_file,
        compaction_window: opts.etcd_compaction_interval,
    };
    let server = apiserver::start(config)
        .await
        .context("starting the API server")?;
    eprintln!(
        "Rudder is serving the Kubernetes API at https://127.0.0.1:{}\n  export KUBECONFIG={}\n  kubectl get namespaces",
        server.address.port(),
        server.kubeconfig.display()
    );
    if !opts.disable_agent {
        tracing::info!(
            "no node agent in this version: pods are scheduled but run only on simulated nodes (rudder simulate)"
        );
    }
    // The control-plane components are API clients of this server, as upstream's are.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut components = Vec::new();
    if !opts.disable_scheduler {
        let client = crate::client::from_kubeconfig(&server.kubeconfig).await?;
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
    }
    if !opts.disable_controller_manager {
        let client = crate::client::from_kubeconfig(&server.kubeconfig).await?;
        let options = opts
            .controllers
            .options(crate::client::ca_of(&server.kubeconfig)?);
        controllers::check(&options)?;
        let mut stopped = stopped.clone();
        components.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.changed().await;
            };
            let election = election::Election::new("kube-controller-manager");
            if let Err(e) = controllers::run(client, options, Some(election), shutdown).await {
                tracing::error!("the controller manager stopped: {e:#}");
            }
        }));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    let _ = stop.send(true);
    for c in components {
        let _ = c.await;
    }
    server.shutdown().await.context("closing the store")?;
    Ok(())
}
