//! The Ingress controller: serves the cluster's networking.k8s.io/v1 Ingresses of our class
//! with an in-process HTTP and HTTPS reverse proxy, as k3s ships Traefik but built in.
//!
//! Owns: which Ingresses are ours and the IngressClass naming us ([`class`]), the routing
//! table from Ingresses, Services and EndpointSlices ([`routes`], pure), the serving
//! certificates from the Ingresses' TLS Secrets with a self-signed default ([`tls`]), the proxy
//! itself (HTTP/1.1 and HTTP/2 in, pooled HTTP/1.1 out, upgrades tunnelled: [`proxy`]), and the
//! Ingresses' `status.loadBalancer` ([`status`]). Must not: talk to anything but the Kubernetes
//! API, its own listening sockets and the endpoints it forwards to; write any object but our
//! IngressClass (created once, never overwritten) and our Ingresses' status.
//!
//! Start reading at [`run`]; then [`routes::Table::build`] (where a request goes) and
//! [`proxy::Proxy::serve`] (how it gets there).

pub mod class;
pub mod proxy;
pub mod routes;
pub mod status;
pub mod tls;

mod follow;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What the controller serves and announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Our IngressClass's name: Ingresses naming it are ours (and those naming none, while
    /// the class is marked the default).
    pub class: String,
    /// Where plain HTTP is served, if anywhere.
    pub http: Option<SocketAddr>,
    /// Where HTTPS is served, if anywhere.
    pub https: Option<SocketAddr>,
    /// The addresses written to our Ingresses' `status.loadBalancer.ingress`; none leaves
    /// their status alone.
    pub status_addresses: Vec<IpAddr>,
}

impl Default for Config {
    /// Class `rudder` on ports 80 and 443 of every address, announcing none.
    fn default() -> Self {
        Config {
            class: "rudder".into(),
            http: Some(SocketAddr::from(([0, 0, 0, 0], 80))),
            https: Some(SocketAddr::from(([0, 0, 0, 0], 443))),
            status_addresses: Vec::new(),
        }
    }
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listening address could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The self-signed default certificate could not be made.
    #[error("making the default certificate: {0}")]
    DefaultCert(String),
    /// The TLS server configuration was refused.
    #[error("configuring TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// Binds the listeners, makes sure our IngressClass exists, then serves our Ingresses,
/// following every change to them, their Services, EndpointSlices and TLS Secrets, until
/// `shutdown`; then stops accepting and lets open connections finish for a few seconds.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let default = tls::default_certificate(&provider).map_err(Error::DefaultCert)?;
    let resolver = Arc::new(tls::Resolver::new(default));
    let tls_config = tls::server_config(provider.clone(), resolver.clone())?;
    let acceptor = TlsAcceptor::from(Arc::new(tls_config));
    let http = bind(config.http).await?;
    let https = bind(config.https).await?;
    let mut shutdown = std::pin::pin!(shutdown);
    if !ensure_class(&client, &config.class, &mut shutdown).await {
        return Ok(());
    }
    let proxy = Arc::new(proxy::Proxy::new());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let serve_http = http.map(|l| proxy.clone().serve(l, None, until_stopped()));
    let serve_https = https.map(|l| proxy.clone().serve(l, Some(acceptor), until_stopped()));
    let sinks = follow::Sinks {
        class: config.class.clone(),
        proxy,
        resolver,
        provider,
        status: status::Writer::new(client.clone(), &config.status_addresses),
        loaded: tls::Loaded::default(),
    };
    let follow = async {
        follow::follow(client, sinks, &mut shutdown).await;
        let _ = stop.send(true);
    };
    tokio::join!(follow, optional(serve_http), optional(serve_https));
    Ok(())
}

/// Makes sure our IngressClass exists, trying again (the API may be briefly away) until it
/// does, or until `shutdown` (false).
async fn ensure_class(
    client: &kube::Client,
    class: &str,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> bool {
    let mut pause = std::time::Duration::from_millis(500);
    loop {
        match class::ensure(client.clone(), class).await {
            Ok(()) => return true,
            Err(e) => tracing::warn!("ensuring the IngressClass {class}: {e}; trying again"),
        }
        tokio::select! {
            () = shutdown.as_mut() => return false,
            () = tokio::time::sleep(pause) => pause = (pause * 2).min(std::time::Duration::from_secs(30)),
        }
    }
}

/// A listener on `addr`, if one is wanted.
async fn bind(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, Error> {
    let Some(addr) = addr else { return Ok(None) };
    match TcpListener::bind(addr).await {
        Ok(listener) => {
            tracing::info!(%addr, "ingress listening");
            Ok(Some(listener))
        }
        Err(source) => Err(Error::Bind { addr, source }),
    }
}

async fn optional(future: Option<impl Future<Output = ()>>) {
    if let Some(future) = future {
        future.await;
    }
}
