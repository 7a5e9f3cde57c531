//! A kube-rs client from a kubeconfig file, for the subcommands that run as API clients.

use std::path::Path;

use anyhow::Context;

/// A client for the current context of the kubeconfig at `path`.
pub(crate) async fn from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    kube::Client::try_from(config_of(path).await?).context("building the API client")
}

/// How the current context of the kubeconfig at `path` reaches its server (address, CA),
/// without its user: for clients that bring their own credentials.
pub(crate) async fn connection_of(path: &Path) -> anyhow::Result<kube::Config> {
    let mut config = config_of(path).await?;
    config.auth_info = Default::default();
    Ok(config)
}

/// The client configuration of the current context of the kubeconfig at `path`.
async fn config_of(path: &Path) -> anyhow::Result<kube::Config> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("using kubeconfig {}", path.display()))
}

/// The CA certificate (PEM) the current context of the kubeconfig at `path` trusts.
pub(crate) fn ca_of(path: &Path) -> anyhow::Result<String> {
    use base64::Engine;
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let context = kubeconfig
        .current_context
        .as_deref()
        .and_then(|c| kubeconfig.contexts.iter().find(|x| x.name == c))
        .and_then(|c| c.context.as_ref())
        .with_context(|| format!("{} has no current context", path.display()))?;
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .with_context(|| format!("{} has no cluster {}", path.display(), context.cluster))?;
    if let Some(data) = &cluster.certificate_authority_data {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .context("decoding certificate-authority-data")?;
        return String::from_utf8(pem).context("certificate-authority-data is not PEM");
    }
    if let Some(file) = &cluster.certificate_authority {
        return std::fs::read_to_string(file).with_context(|| format!("reading {file}"));
    }
    anyhow::bail!(
        "{} names no certificate authority; give --root-ca-file",
        path.display()
    )
}
