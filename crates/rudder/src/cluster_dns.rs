//! Cluster DNS in `rudder server`: the `kube-dns` Service in `kube-system` at the tenth
//! address of the service range (k3s' 10.43.0.10), that address on the node's loopback
//! device, and the `dns` crate's server listening on it, fed by watches. Each node answers its
//! own pods' queries locally, as NodeLocal DNSCache does on the same address.

use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};

/// Where cluster DNS serves.
pub(crate) struct Options {
    /// The `kube-dns` Service's address, where the server listens.
    pub(crate) address: Ipv4Addr,
    /// The cluster domain.
    pub(crate) domain: String,
}

/// Creates the Service if missing, takes the address, binds port 53 (UDP and TCP) and serves
/// until `stopped` changes; then gives the address back.
pub(crate) async fn start(
    client: kube::Client,
    options: Options,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    ensure_service(&client, options.address).await?;
    let address = options.address;
    runtime::address::add_local(address.into()).await?;
    let udp = tokio::net::UdpSocket::bind((address, 53))
        .await
        .with_context(|| format!("cluster DNS: binding {address}:53/udp"))?;
    let tcp = tokio::net::TcpListener::bind((address, 53))
        .await
        .with_context(|| format!("cluster DNS: binding {address}:53/tcp"))?;
    let records = dns::Records::new(&options.domain).map_err(anyhow::Error::msg)?;
    let records = Arc::new(RwLock::new(records));
    let resolv = std::path::Path::new("/etc/resolv.conf");
    let upstreams = dns::server::read_upstreams(resolv).unwrap_or_else(|e| {
        tracing::warn!(
            "cluster DNS forwards nothing: reading {}: {e}",
            resolv.display()
        );
        Vec::new()
    });
    tracing::info!(%address, domain = %options.domain, ?upstreams, "cluster DNS serving");
    let feeder = tokio::spawn(feed(client, records.clone()));
    Ok(tokio::spawn(async move {
        tokio::select! {
            () = dns::serve(udp, tcp, records, upstreams) => {}
            _ = stopped.changed() => {}
        }
        feeder.abort();
        if let Err(e) = runtime::address::remove_local(address.into()).await {
            tracing::warn!("cluster DNS: {e:#}");
        }
    }))
}

async fn feed(client: kube::Client, records: Arc<RwLock<dns::Records>>) {
    if let Err(e) = dns::feed(client, records).await {
        tracing::error!("cluster DNS stopped following the cluster: {e}");
    }
}

/// The `kube-dns` Service, without a selector: the server on each node holds its address.
async fn ensure_service(client: &kube::Client, address: Ipv4Addr) -> Result<()> {
    let api: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true"}},
        "spec": {
            "clusterIP": address.to_string(),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
        },
    }))?;
    match api.create(&PostParams::default(), &svc).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let current = api.get("kube-dns").await?;
            let ip = current.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
            if ip != address.to_string() {
                tracing::warn!(
                    "the kube-dns Service has address {ip}, not {address} where cluster DNS listens"
                );
            }
            Ok(())
        }
        Err(e) => Err(e).context("creating the kube-dns Service"),
    }
}
