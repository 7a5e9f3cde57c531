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
    /// Measure a component's performance and print a table (or JSON).
    Bench(Bench),
}

#[derive(Debug, Args)]
pub(crate) struct Bench {
    #[command(subcommand)]
    pub(crate) target: BenchTarget,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchTarget {
    /// The revisioned key-value store: writes, reads, ranges, watch latency, file growth.
    Store(StoreBench),
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
