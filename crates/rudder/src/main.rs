//! The `rudder` binary: command-line parsing and wiring, nothing else.
//!
//! Each subcommand's flags live in [`cli`]; what a subcommand does lives in the crate that owns
//! it, or for benchmarks in [`bench`]. Only subcommands that work are listed.

mod bench;
mod certificate;
mod cli;
mod client;
mod cluster_dns;
mod metrics;
mod secrets_encrypt;
mod server;

use anyhow::Context;
use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    // The container monitor is a small synchronous process: no async runtime.
    let command = match args.command {
        cli::Command::Shim(a) => return shim(a),
        command => command,
    };
    // One runtime for the whole process.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `e` and its causes on one line, as `{e:#}` writes them, less a cause whose text the one
/// before it already ends with: the libraries' errors write their source's text themselves.
fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut previous: Option<String> = None;
    for cause in e.chain() {
        let text = cause.to_string();
        if previous.as_ref().is_none_or(|p| !p.ends_with(&text)) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        previous = Some(text);
    }
    out
}

/// `rudder shim`: the container monitor, until the container exits; its exit code.
fn shim(a: cli::ShimArgs) -> std::process::ExitCode {
    let code = runtime::shim::main(runtime::shim::Args {
        runtime: a.runtime,
        root: a.root,
        id: a.id,
        bundle: a.bundle,
        log: a.log,
        exit_file: a.exit_file,
        stdin: a.stdin,
        stdin_once: a.stdin_once,
        tty: a.tty,
    });
    std::process::ExitCode::from(code as u8)
}

/// Runs every subcommand but `shim`, until it ends or a signal.
async fn run(command: cli::Command) -> anyhow::Result<()> {
    match command {
        cli::Command::Server(opts) => server::run(*opts).await,
        cli::Command::Scheduler(opts) => scheduler(opts).await,
        cli::Command::ControllerManager(opts) => controller_manager(opts).await,
        cli::Command::Proxy(opts) => service_proxy(opts).await,
        cli::Command::Simulate(opts) => simulate(opts).await,
        cli::Command::Agent(opts) => agent(opts).await,
        cli::Command::Images(opts) => images(opts),
        cli::Command::Reset(opts) => reset(opts).await,
        cli::Command::SecretsEncrypt(opts) => secrets_encrypt::run(opts).await,
        cli::Command::Certificate(opts) => certificate::run(opts),
        cli::Command::Shim(_) => unreachable!("handled before the runtime starts"),
        cli::Command::Bench(bench) => match bench.target {
            cli::BenchTarget::Store(opts) => bench::store::run(opts).await,
            cli::BenchTarget::Api(opts) => bench::api::run(opts).await,
            cli::BenchTarget::Authz(opts) => bench::authz::run(opts).await,
            cli::BenchTarget::Scheduler(opts) => bench::scheduler::run(opts).await,
            cli::BenchTarget::Controllers(opts) => bench::controllers::run(opts).await,
            cli::BenchTarget::Pods(opts) => bench::pods::run(opts).await,
            cli::BenchTarget::Streaming(opts) => bench::streaming::run(opts).await,
            cli::BenchTarget::Dns(opts) => bench::dns::run(opts).await,
            cli::BenchTarget::Services(opts) => bench::services::run(opts).await,
            cli::BenchTarget::Ingress(opts) => bench::ingress::run(opts).await,
        },
    }
}

/// `rudder scheduler`: the scheduler alone, with its metrics endpoint if asked.
async fn scheduler(opts: cli::SchedulerArgs) -> anyhow::Result<()> {
    let client = client::from_kubeconfig(&opts.kubeconfig).await?;
    let election = opts.election.election("kube-scheduler");
    let config = match &opts.config {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let metrics = std::sync::Arc::new(scheduler::metrics::Metrics::default());
    let run = scheduler::run(
        client,
        config.as_deref(),
        election,
        metrics.clone(),
        shutdown(),
    );
    match opts.metrics_bind_address {
        Some(addr) => {
            let listener = metrics::bind(addr).await?;
            tokio::select! {
                r = run => r.map_err(anyhow::Error::from),
                r = metrics::serve(listener, metrics) => r,
            }
        }
        None => Ok(run.await?),
    }
}

/// `rudder proxy`: the service proxy alone, until SIGINT or SIGTERM; it then removes its
/// table.
async fn service_proxy(opts: cli::ProxyArgs) -> anyhow::Result<()> {
    let client = client::from_kubeconfig(&opts.kubeconfig).await?;
    let node = match opts.hostname_override {
        Some(n) => n,
        None => server::host_name()?,
    };
    let config = opts.proxy.config(Some(node));
    let host = std::sync::Arc::new(proxy::host::Nft);
    Ok(proxy::run(client, config, host, shutdown()).await?)
}

/// `rudder controller-manager`: the controllers alone.
async fn controller_manager(opts: cli::ControllerManagerArgs) -> anyhow::Result<()> {
    let client = client::from_kubeconfig(&opts.kubeconfig).await?;
    let root_ca = match &opts.root_ca_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?,
        None => client::ca_of(&opts.kubeconfig)?,
    };
    let mut options = opts.controllers.options(root_ca, &opts.kubeconfig).await?;
    options.cluster_signing = opts.cluster_signing()?;
    let election = opts.election.election("kube-controller-manager");
    Ok(controllers::run(client, options, election, shutdown()).await?)
}

/// `rudder simulate`: simulated nodes.
async fn simulate(opts: cli::SimulateArgs) -> anyhow::Result<()> {
    let client = client::from_kubeconfig(&opts.kubeconfig).await?;
    let sim = simulator::Options {
        nodes: opts.nodes,
        first_index: opts.first_index,
        name_prefix: opts.name_prefix,
        cpu: opts.cpu,
        memory: opts.memory,
        pods: opts.pods,
        extended: opts.extended,
        zones: opts.zones,
        labels: opts.labels,
        taints: opts.taints,
        lease_interval: std::time::Duration::from_secs(opts.lease_seconds),
    };
    let behaviour = simulator::Behaviour {
        job_pod_duration: opts.job_pod_duration,
        pod_duration: opts.pod_duration,
    };
    Ok(simulator::run_with(client, sim, behaviour, shutdown()).await?)
}

/// `rudder agent`: a node agent, with a kubeconfig or joining with a token.
async fn agent(opts: cli::AgentCommandArgs) -> anyhow::Result<()> {
    let config = server::agent_config(&opts.agent, opts.data_dir.clone(), None, false)?;
    let proxy =
        (!opts.disable_kube_proxy).then(|| opts.proxy.config(Some(config.node_name.clone())));
    match (&opts.kubeconfig, &opts.server) {
        (Some(kubeconfig), _) => {
            let client = client::from_kubeconfig(kubeconfig).await?;
            with_proxy(client, config, proxy).await
        }
        (None, Some(url)) => {
            // Join with the token: the node's own certificates, then its endpoint.
            let creds = agent::bootstrap::bootstrap(
                url,
                &opts.join_token()?,
                &config.node_name,
                &opts.data_dir,
                opts.ca()?.as_deref(),
                &[config.node_ip],
            )
            .await
            .context("joining the cluster")?;
            // Renewed while the agent runs: the client follows the node's newest client
            // certificate, the endpoint presents its newest serving certificate.
            let node =
                agent::rotation::NodeClient::new(client::from_kubeconfig(&creds.kubeconfig).await?);
            let serving =
                agent::rotation::ServingCertificate::new(&creds.serving_cert, &creds.serving_key)
                    .map_err(anyhow::Error::msg)?;
            let config = agent::Config {
                tls: Some((creds.ca_cert.clone(), serving.clone())),
                ..config
            };
            let renewal = agent::rotation::Renewal {
                credentials: creds,
                client: node.clone(),
                serving,
            };
            tokio::select! {
                r = with_proxy(node.client(), config, proxy) => r,
                () = agent::rotation::keep_renewed(renewal) => Ok(()),
            }
        }
        (None, None) => {
            anyhow::bail!("give --kubeconfig, or --server with --token or --token-file")
        }
    }
}

/// `rudder reset`: what an agent left on the host, removed.
async fn reset(opts: cli::ResetArgs) -> anyhow::Result<()> {
    // Given a server's data directory, its agent's (`<data dir>/agent`).
    let (data_dir, note) = agent::reset_dir(&opts.data_dir);
    if let Some(note) = note {
        eprintln!("rudder reset: {note}");
    }
    for line in agent::reset(&data_dir, &opts.bridge).await? {
        println!("{line}");
    }
    if runtime::address::remove_local(opts.cluster_dns).await? {
        println!("removed {} from lo", opts.cluster_dns);
    }
    let table = proxy::rules::remove(&opts.proxy_table);
    match proxy::host::Host::apply(&proxy::host::Nft, &table).await {
        Ok(()) => println!("removed the nftables table ip {}", opts.proxy_table),
        Err(e) => eprintln!("rudder reset: {e}"),
    }
    Ok(())
}

/// `rudder images ...` on an agent's image store.
fn images(opts: cli::ImagesArgs) -> anyhow::Result<()> {
    let store = image::Store::open(&opts.data_dir.join("images"))?;
    match opts.command {
        cli::ImagesCommand::Ls => {
            println!("{:<60} {:<20} {:>10}", "IMAGE", "IMAGE ID", "SIZE");
            for img in store.list() {
                let id = img.id.trim_start_matches("sha256:");
                let size = format!("{:.1}MB", img.size as f64 / 1e6);
                let names = if img.references.is_empty() {
                    vec!["<none>".to_string()]
                } else {
                    img.references.clone()
                };
                for name in names {
                    println!("{name:<60} {:<20} {size:>10}", &id[..id.len().min(13)]);
                }
            }
        }
        cli::ImagesCommand::Import { path } => {
            for img in store.import(&path)? {
                let name = img
                    .references
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "<none>".into());
                println!("imported {name} ({})", img.id);
            }
        }
        cli::ImagesCommand::Rm { images } => {
            for i in images {
                store.remove(&i)?;
                println!("removed {i}");
            }
        }
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
/// Runs the node agent and, if configured, the service proxy beside it with the same
/// credentials, until a signal or the agent ends; the proxy then removes its table.
async fn with_proxy(
    client: kube::Client,
    config: agent::Config,
    proxy: Option<proxy::rules::Config>,
) -> anyhow::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let proxy = proxy.map(|c| server::spawn_proxy(client.clone(), c, stopped));
    let result = agent::run(client, config, shutdown()).await;
    let _ = stop.send(true);
    if let Some(proxy) = proxy {
        let _ = proxy.await;
    }
    result.map_err(anyhow::Error::from)
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::report;

    /// A library's error: its source's text in its own, as well as its source.
    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "reading x: {}", self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn report_writes_a_source_once() {
        let io = || std::io::Error::other("gone");
        let e = anyhow::Error::from(Wrapped(io())).context("starting");
        assert_eq!(report(&e), "starting: reading x: gone");
        let e = anyhow::Error::from(io()).context("reading y");
        assert_eq!(report(&e), "reading y: gone");
    }
}
