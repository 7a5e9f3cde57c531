//! A kube-rs client from a kubeconfig file, for the subcommands that run as API clients.

use std::path::Path;

use anyhow::Context;

/// A client for the current context of the kubeconfig at `path`.
pub(crate) async fn from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("using kubeconfig {}", path.display()))?;
    kube::Client::try_from(config).context("building the API client")
}
