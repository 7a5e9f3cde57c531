//! The `rudder` binary: command-line parsing and wiring, nothing else.
//!
//! Each subcommand's flags live in [`cli`]; what a subcommand does lives in the crate that owns
//! it, or for benchmarks in [`bench`]. Only subcommands that work are listed.

mod bench;
mod cli;
mod client;
mod metrics;
mod server;

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
    let args = match args.command {
        cli::Command::Shim(a) => {
            let code = runtime::shim::main(runtime::shim::Args {
                runtime: a.runtime,
                root: a.root,
                id: a.id,
                bundle: a.bundle,
                log: a.log,
                exit_file: a.exit_file,
            });
            return std::process::ExitCode::from(code as u8);
        }
        command => cli::Cli { command, ..args },
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
    let result = runtime.block_on(async {
        match args.command {
            cli::Command::Server(opts) => server::run(opts).await,
            cli::Command::Scheduler(opts) => {
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
                            r = run => r,
                            r = metrics::serve(listener, metrics) => r,
                        }
                    }
                    None => run.await,
                }
            }
            cli::Command::ControllerManager(opts) => {
                let client = client::from_kubeconfig(&opts.kubeconfig).await?;
                let root_ca = match &opts.root_ca_file {
                    Some(path) => std::fs::read_to_string(path)
                        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?,
                    None => client::ca_of(&opts.kubeconfig)?,
                };
                let options = opts.controllers.options(root_ca);
                let election = opts.election.election("kube-controller-manager");
                controllers::run(client, options, election, shutdown()).await
            }
            cli::Command::Simulate(opts) => {
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
                simulator::run_with(client, sim, behaviour, shutdown()).await
            }
            cli::Command::Agent(opts) => {
                let client = client::from_kubeconfig(&opts.kubeconfig).await?;
                let config = server::agent_config(&opts.agent, opts.data_dir, None, false, None)?;
                agent::run(client, config, shutdown()).await
            }
            cli::Command::Reset(opts) => {
                for line in agent::reset(&opts.data_dir, &opts.bridge).await? {
                    println!("{line}");
                }
                Ok(())
            }
            cli::Command::Shim(_) => unreachable!("handled before the runtime starts"),
            cli::Command::Bench(bench) => match bench.target {
                cli::BenchTarget::Store(opts) => bench::store::run(opts).await,
                cli::BenchTarget::Api(opts) => bench::api::run(opts).await,
                cli::BenchTarget::Scheduler(opts) => bench::scheduler::run(opts).await,
                cli::BenchTarget::Controllers(opts) => bench::controllers::run(opts).await,
            },
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
