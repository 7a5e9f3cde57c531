//! Starting the server: certificates, the store, the default objects, the router, and the TLS
//! listener that tells the handlers who is calling.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;
use tokio::net::TcpListener;

use crate::authn::{self, Tokens};
use crate::handlers::{self, App, Connection, json_document};
use crate::registry::Registry;
use crate::{bootstrap, pki, podlogs};

/// The Kubernetes version Rudder's API reports.
pub const KUBERNETES_VERSION: &str = "v1.33.0";

/// How `rudder server` starts the API server (k3s' flag names where they exist).
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the certificates, the kubeconfig and the embedded database live.
    pub data_dir: PathBuf,
    /// The address to listen on.
    pub bind_address: IpAddr,
    /// The HTTPS port (0 picks a free one).
    pub port: u16,
    /// `--datastore-endpoint`: empty for the embedded SQLite store.
    pub datastore_endpoint: String,
    /// How to reach an `https://` etcd (`--datastore-cafile`, `--datastore-certfile`,
    /// `--datastore-keyfile`).
    pub datastore_tls: Option<store::EtcdTls>,
    /// Extra names and addresses for the serving certificate.
    pub tls_sans: Vec<String>,
    /// Where else to write the admin kubeconfig.
    pub write_kubeconfig: Option<PathBuf>,
    /// A static token file (`token,user,uid,"groups"` lines).
    pub token_auth_file: Option<PathBuf>,
    /// The join token's file: read, or made (mode 0600) when missing; node agents joining
    /// with the token authenticate as bootstrappers ([`authn::Tokens::add_bootstrap`]).
    pub join_token_file: Option<PathBuf>,
    /// How much history the store keeps for watches.
    pub compaction_window: Duration,
    /// Where ClusterIPs come from.
    pub service_cidr: crate::allocator::ServiceRange,
    /// The address pods reach this server at through the `kubernetes` Service (its
    /// Endpoints and EndpointSlice); none leaves them empty.
    pub advertise_address: Option<IpAddr>,
    /// Admission steps left out, by name (upstream's `--disable-admission-plugins`).
    pub disable_admission_plugins: Vec<String>,
    /// Admission steps off by default turned on, by name (`--enable-admission-plugins`).
    pub enable_admission_plugins: Vec<String>,
    /// An `AdmissionConfiguration` file configuring the admission steps (upstream's
    /// `--admission-control-config-file`; the `PodSecurity` step reads it).
    pub admission_control_config_file: Option<PathBuf>,
    /// ID tokens of an external OIDC issuer (upstream's `--oidc-*`), when set.
    pub oidc: Option<authn::oidc::Options>,
    /// Auditing (upstream's `--audit-*`), when a policy is given.
    pub audit: Option<crate::audit::Options>,
    /// An EncryptionConfiguration: encryption at rest (upstream's
    /// `--encryption-provider-config`).
    pub encryption_provider_config: Option<PathBuf>,
    /// Requests without credentials run as `system:anonymous` (upstream's
    /// `--anonymous-auth`); off, they get 401.
    pub anonymous_auth: bool,
    /// Files of further keys that verify service-account tokens (upstream's
    /// `--service-account-key-file`).
    pub service_account_key_files: Vec<PathBuf>,
    /// API Priority and Fairness over this many seats (upstream's in-flight flags); `None`
    /// turns it off (upstream's `--enable-priority-and-fairness=false`).
    pub flowcontrol: Option<crate::flowcontrol::Options>,
}

impl Config {
    /// A server on 127.0.0.1, on a port the system picks, over the embedded SQLite store in
    /// `data_dir`, with no token files and a five-minute compaction window, and without the
    /// ServiceAccount admission step (no controller makes the namespaces' accounts): what
    /// tests start.
    pub fn loopback(data_dir: &std::path::Path) -> Config {
        Config {
            data_dir: data_dir.to_path_buf(),
            bind_address: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            datastore_endpoint: String::new(),
            datastore_tls: None,
            tls_sans: Vec::new(),
            write_kubeconfig: None,
            token_auth_file: None,
            join_token_file: None,
            compaction_window: Duration::from_secs(300),
            service_cidr: Default::default(),
            advertise_address: None,
            disable_admission_plugins: vec!["ServiceAccount".into()],
            enable_admission_plugins: Vec::new(),
            admission_control_config_file: None,
            oidc: None,
            audit: None,
            encryption_provider_config: None,
            anonymous_auth: false,
            service_account_key_files: Vec::new(),
            flowcontrol: Some(Default::default()),
        }
    }
}

/// What can stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The certificates could not be made or read.
    #[error(transparent)]
    Pki(#[from] pki::Error),
    /// Something else, described.
    #[error("{0}")]
    Other(String),
}

/// A running API server.
pub struct Server {
    /// The address it listens on.
    pub address: SocketAddr,
    /// The admin kubeconfig path.
    pub kubeconfig: PathBuf,
    app: Arc<App>,
    listener: tokio::task::JoinHandle<()>,
    /// What runs beside the listener: compaction, custom resources, priority and fairness'
    /// configuration, token Secrets.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Serves until the listener fails; then closes the store.
    pub async fn wait(self) {
        let _ = (&mut { self.listener }).await;
    }

    /// Stops accepting connections and closes the store, flushing pending writes.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.listener.abort();
        for task in &self.tasks {
            task.abort();
        }
        self.app.registry.store().close().await?;
        Ok(())
    }
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// Starts the API server: PKI, store, default objects, then the HTTPS listener.
pub async fn start(config: Config) -> Result<Server, Error> {
    let mut sans: Vec<String> = [
        "localhost",
        "127.0.0.1",
        "::1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sans.push(config.service_cidr.nth(1).to_string());
    sans.extend(host_name());
    if !config.bind_address.is_unspecified() {
        sans.push(config.bind_address.to_string());
    }
    sans.extend(config.tls_sans.iter().cloned());
    sans.dedup();
    let pki = pki::ensure(&config.data_dir.join("tls"), &sans)?;
    let (kubelet_cert, kubelet_key) = pki::kubelet_client(&config.data_dir.join("tls"))?;
    let service_accounts = authn::serviceaccount::Signer::ensure(&config.data_dir.join("tls"))
        .and_then(|s| s.verifying_also(&config.service_account_key_files))
        .map_err(Error::Other)?;
    let service_accounts = Arc::new(service_accounts);
    let oidc = match config.oidc.clone() {
        Some(opts) => Some(authn::oidc::Oidc::new(opts).map_err(Error::Other)?),
        None => None,
    };
    let audit = match &config.audit {
        Some(opts) => Some(Arc::new(
            crate::audit::Auditor::new(opts).map_err(Error::Other)?,
        )),
        None => None,
    };
    let kubelet = podlogs::KubeletClient::new(&pki.ca_cert, &kubelet_cert, &kubelet_key)
        .map_err(Error::Other)?;

    let mut tokens = match &config.token_auth_file {
        Some(path) => Tokens::load(path).map_err(Error::Other)?,
        None => Tokens::default(),
    };
    if let Some(path) = &config.join_token_file {
        let token = authn::ensure_join_token(path).map_err(Error::Other)?;
        tokens.add_bootstrap(&token).map_err(Error::Other)?;
    }

    let endpoint = store::Endpoint::parse(&config.datastore_endpoint, &config.data_dir)?;
    let store = store::open(
        &endpoint,
        Duration::from_secs(60),
        config.datastore_tls.as_ref(),
    )
    .await?;
    let (store, encryption) = match &config.encryption_provider_config {
        Some(file) => {
            let encrypted = crate::encryption::Encrypted::new(store, file).map_err(Error::Other)?;
            let encrypted = Arc::new(encrypted);
            (encrypted.clone() as Arc<dyn store::Store>, Some(encrypted))
        }
        None => (store, None),
    };
    tracing::info!(store = %store.describe(), "store ready");
    let compactor = store::compactor::spawn(store.clone(), config.compaction_window);
    let listener = TcpListener::bind((config.bind_address, config.port))
        .await
        .map_err(|e| {
            Error::Other(format!(
                "listening on {}:{}: {e}",
                config.bind_address, config.port
            ))
        })?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::Other(e.to_string()))?;
    let admission = match &config.admission_control_config_file {
        Some(file) => crate::admission::Chain::configured(file).map_err(Error::Other)?,
        None => crate::admission::Chain::default(),
    };
    let admission = admission
        .enabling(&config.enable_admission_plugins)
        .and_then(|chain| chain.without(&config.disable_admission_plugins))
        .map_err(Error::Other)?;
    let registry = Registry::new(store)
        .with_service_range(config.service_cidr)
        .with_admission(admission);
    bootstrap::ensure_defaults(&registry, address.port(), config.advertise_address)
        .await
        .map_err(|s| Error::Other(format!("creating default objects: {s}")))?;
    let custom_resources = crate::customresources::start(registry.clone()).await;
    let flowcontrol = flow_control(config.flowcontrol, &registry).await?;

    let url = format!("https://127.0.0.1:{}", address.port());
    let kubeconfig = config.data_dir.join("kubeconfig.yaml");
    let kc = pki::kubeconfig(&pki, &url);
    pki::write_private(&kubeconfig, &kc)?;
    if let Some(extra) = &config.write_kubeconfig {
        pki::write_private(extra, &kc)?;
    }

    let app = Arc::new(App {
        authorizer: crate::authz::Chain::new(registry.clone()),
        registry,
        tokens,
        service_accounts,
        oidc,
        kubelet,
        metrics: crate::metrics::Metrics::default(),
        audit,
        encryption,
        anonymous: config.anonymous_auth,
        flowcontrol,
        address: format!(
            "{}:{}",
            if config.bind_address.is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                config.bind_address
            },
            address.port()
        ),
    });
    let mut tasks = vec![compactor, custom_resources];
    tasks.extend(app.flowcontrol.as_ref().map(|fc| {
        tokio::spawn(crate::flowcontrol::maintain(
            fc.clone(),
            app.registry.clone(),
        ))
    }));
    tasks.push(tokio::spawn(authn::secret_token::maintain(
        app.service_accounts.clone(),
        app.registry.clone(),
        pki.ca_cert.clone(),
    )));
    let (serving, keeper) = serving_certificate(&pki, config.data_dir.join("tls"), sans)?;
    tasks.push(keeper);
    let tls = tls_config(&pki, serving)?;
    let router = router(app.clone());
    let listener = tokio::spawn(serve(
        listener,
        tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
        router,
    ));
    tracing::info!(%address, kubeconfig = %kubeconfig.display(), "API server listening");
    Ok(Server {
        address,
        kubeconfig,
        app,
        listener,
        tasks,
    })
}

/// Priority and fairness over `options`' seats, with upstream's bootstrap objects in
/// place; `None` when it is off.
async fn flow_control(
    options: Option<crate::flowcontrol::Options>,
    registry: &Registry,
) -> Result<Option<Arc<crate::flowcontrol::FlowControl>>, Error> {
    let Some(options) = options else {
        return Ok(None);
    };
    crate::flowcontrol::ensure(registry).await.map_err(|s| {
        Error::Other(format!(
            "unable to initialize APF bootstrap configuration: {s}"
        ))
    })?;
    let fc = crate::flowcontrol::FlowControl::new(options).map_err(Error::Other)?;
    Ok(Some(Arc::new(fc)))
}

/// The serving certificate of `pki`, and the task that renews it (with the CA kept in `dir`,
/// for `sans`) while the server runs.
fn serving_certificate(
    pki: &pki::Pki,
    dir: PathBuf,
    sans: Vec<String>,
) -> Result<(Arc<tls::ServingCertificate>, tokio::task::JoinHandle<()>), Error> {
    // The chain ends with the CA, so that a node agent joining without `--ca-file` can see
    // (and trust on first use) the CA that signed the serving certificate.
    let chain = pki.server_cert.clone() + &pki.ca_cert;
    let serving = tls::ServingCertificate::new(&chain, &pki.server_key)
        .map_err(|e| Error::Other(format!("TLS {e}")))?;
    let current = (pki.server_cert.clone(), pki.ca_cert.clone());
    let keeper = tokio::spawn(keep_serving_fresh(dir, sans, current, serving.clone()));
    Ok((serving, keeper))
}

/// How often a running server looks at its serving certificate's expiry.
const SERVING_CHECK: Duration = Duration::from_secs(12 * 3600);

/// Renews the serving certificate `(current, ca)` (PEM) for `sans` with the CA kept in `dir`
/// once it has [`pki::RENEW_DAYS`] or less left, and serves the new one from the next
/// handshake on; looks every [`SERVING_CHECK`].
async fn keep_serving_fresh(
    dir: PathBuf,
    sans: Vec<String>,
    (mut current, ca): (String, String),
    serving: Arc<tls::ServingCertificate>,
) {
    loop {
        tokio::time::sleep(SERVING_CHECK).await;
        match renew_serving(&dir, &sans, &current, &ca, &serving) {
            Ok(Some(renewed)) => current = renewed,
            Ok(None) => {}
            Err(e) => tracing::warn!("renewing the serving certificate: {e}"),
        }
    }
}

/// One look of [`keep_serving_fresh`]: the new certificate (PEM) when it renewed `current`.
fn renew_serving(
    dir: &std::path::Path,
    sans: &[String],
    current: &str,
    ca: &str,
    serving: &tls::ServingCertificate,
) -> Result<Option<String>, String> {
    let Some((cert, key)) = pki::renewed_serving(dir, current, sans).map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    serving.replace(&(cert.clone() + ca), &key)?;
    tracing::info!("renewed the API server's serving certificate");
    Ok(Some(cert))
}

fn tls_config(
    pki: &pki::Pki,
    serving: Arc<tls::ServingCertificate>,
) -> Result<rustls::ServerConfig, Error> {
    let bad = |what: &str, e: &dyn std::fmt::Display| Error::Other(format!("TLS {what}: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(pki.ca_cert.as_bytes()).map_err(|e| bad("CA", &e))?;
    roots.add(ca).map_err(|e| bad("CA", &e))?;
    // Client certificates are optional (tokens work too), but one that is presented must chain
    // to the cluster CA or the handshake fails.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| bad("client verifier", &e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("versions", &e))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(serving);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The routes: public health and version endpoints, metrics, OpenAPI, and everything under
/// /api(s).
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/healthz", get(health))
        .route("/livez", get(health))
        .route("/readyz", get(health))
        .route("/metrics", get(crate::metrics::serve))
        .route(
            "/.well-known/openid-configuration",
            get(crate::issuer::configuration),
        )
        .route("/openid/v1/jwks", get(crate::issuer::jwks))
        .route(
            "/rudder/v1/secrets-encrypt/{action}",
            axum::routing::any(crate::encryption::endpoint),
        )
        .route("/openapi/v2", get(handlers::openapi))
        .route("/openapi/v3", get(handlers::openapi))
        .route("/openapi/v3/{*rest}", get(handlers::openapi))
        .route("/api", axum::routing::any(handlers::api))
        .route("/api/{*rest}", axum::routing::any(handlers::api))
        .route("/apis", axum::routing::any(handlers::api))
        .route("/apis/{*rest}", axum::routing::any(handlers::api))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(catch_panic))
        .with_state(app)
}

/// A panic while handling one request answers that request with a 500 `Status`; the server
/// and every other request go on.
async fn catch_panic(req: Request, next: axum::middleware::Next) -> Response {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(resp) => resp,
        Err(_) => {
            tracing::error!("a request handler panicked");
            handlers::status_response(&api::Status::internal("the request handler panicked"))
        }
    }
}

/// Every path nothing else serves, as upstream's: a caller without credentials gets 401 and
/// one the authorizers refuse 403 (as Status objects, which is also how scanners such as
/// kube-hunter tell an API server); `/` lists the root paths; anything else is 404.
async fn not_found(State(app): State<Arc<App>>, req: Request) -> Response {
    let root = req.uri().path() == "/";
    if let Err(refusal) = handlers::allowed_path(&app, req).await {
        return refusal;
    }
    let served = app.registry.served();
    if !root {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    }
    let mut paths: Vec<String> = [
        "/.well-known/openid-configuration",
        "/api",
        "/api/v1",
        "/apis",
        "/healthz",
        "/livez",
        "/metrics",
        "/openapi/v2",
        "/openapi/v3",
        "/openid/v1/jwks",
        "/readyz",
        "/version",
    ]
    .map(String::from)
    .to_vec();
    for (group, versions) in served.groups().into_iter().filter(|(g, _)| !g.is_empty()) {
        paths.push(format!("/apis/{group}"));
        paths.extend(versions.iter().map(|v| format!("/apis/{group}/{v}")));
    }
    paths.sort();
    json_document(StatusCode::OK, &json!({ "paths": paths }))
}

/// `/version`, for callers the authorizers let `get` it (as [`health`]).
async fn version(State(app): State<Arc<App>>, req: Request) -> Response {
    if let Err(refusal) = handlers::allowed_path(&app, req).await {
        return refusal;
    }
    json_document(
        StatusCode::OK,
        &json!({
            "major": "1",
            "minor": "33",
            "gitVersion": format!("{KUBERNETES_VERSION}+rudder.{}", env!("CARGO_PKG_VERSION")),
            "gitCommit": "",
            "gitTreeState": "clean",
            "buildDate": "",
            "goVersion": "",
            "compiler": "rustc",
            "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
        }),
    )
}

/// `/livez`, `/readyz`, `/healthz`: `ok` once the store answers; `?verbose` lists the checks.
/// Like every path, for callers the authorizers let `get` it (upstream's
/// `system:public-info-viewer`: every authenticated user, and anonymous ones with
/// `--anonymous-auth`).
async fn health(State(app): State<Arc<App>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(String::from);
    if let Err(refusal) = handlers::allowed_path(&app, req).await {
        return refusal;
    }
    let store_ok = app.registry.store().current_revision().await.is_ok();
    let verbose = query.is_some_and(|q| {
        q.split('&')
            .any(|p| p == "verbose" || p.starts_with("verbose="))
    });
    let checks = [("ping", true), ("etcd", store_ok)];
    let all_ok = checks.iter().all(|(_, ok)| *ok);
    let code = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let body = if verbose {
        let mut s: String = checks
            .iter()
            .map(|(name, ok)| {
                if *ok {
                    format!("[+]{name} ok\n")
                } else {
                    format!("[-]{name} failed: reason withheld\n")
                }
            })
            .collect();
        s.push_str(&format!(
            "{} check {}\n",
            path.trim_start_matches('/'),
            if all_ok { "passed" } else { "failed" }
        ));
        s
    } else if all_ok {
        "ok".to_string()
    } else {
        format!(
            "[-]etcd failed: reason withheld\n{} check failed\n",
            path.trim_start_matches('/')
        )
    };
    (code, body).into_response()
}

/// Serves TLS connections, tagging every request with the identity of the client
/// certificate, if any.
async fn serve(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, router: Router) {
    tls::serve(listener, acceptor, move |cert, peer| {
        let identity = cert.and_then(|c| authn::from_certificate(c));
        let peer = Some(peer.ip());
        router
            .clone()
            .layer(Extension(Connection { identity, peer }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_router_keeps_serving() {
        async fn boom() -> Response {
            panic!("bug")
        }
        let app = Router::new()
            .route("/boom", get(boom))
            .route("/ok", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(catch_panic));
        let req = |path: &str| {
            Request::builder()
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let resp = app.clone().oneshot(req("/boom")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert!(
            String::from_utf8_lossy(&body)
                .contains("Internal error occurred: the request handler panicked")
        );
        assert_eq!(
            app.oneshot(req("/ok")).await.unwrap().status(),
            StatusCode::OK
        );
    }
}
