//! The webhook backend: events POSTed as an `audit.k8s.io/v1` `EventList` to the server a
//! kubeconfig names (upstream's `--audit-webhook-config-file`), in batches sent when full or
//! after `--audit-webhook-batch-max-wait` (upstream's batch mode), from a task of their own,
//! so a slow receiver never holds up a request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Uri, header};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// How the webhook backend is reached and batches.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// A kubeconfig: its current context's cluster is the receiver (`server`, its CA), its
    /// user the credentials (client certificate or token).
    pub config_file: PathBuf,
    /// How long a batch waits for more events.
    pub batch_max_wait: Duration,
    /// How many events a batch holds at most.
    pub batch_max_size: usize,
}

/// How to reach the receiver.
struct Receiver {
    uri: Uri,
    tls: Option<Arc<rustls::ClientConfig>>,
    token: Option<String>,
}

/// The queue to the sending task.
pub(crate) struct Webhook {
    queue: mpsc::UnboundedSender<Vec<Value>>,
}

impl Webhook {
    /// Reads the kubeconfig and starts the sending task.
    pub(crate) fn new(opts: WebhookOptions) -> Result<Webhook, String> {
        let receiver = Arc::new(receiver(&opts.config_file)?);
        let (queue, events) = mpsc::unbounded_channel();
        tokio::spawn(batches(receiver, events, opts));
        Ok(Webhook { queue })
    }

    /// Queues one request's events.
    pub(crate) fn send(&self, events: Vec<Value>) {
        let _ = self.queue.send(events);
    }
}

/// Gathers events into batches and sends each; a batch the receiver refuses is dropped, as
/// upstream drops it after its retries.
async fn batches(
    receiver: Arc<Receiver>,
    mut events: mpsc::UnboundedReceiver<Vec<Value>>,
    opts: WebhookOptions,
) {
    let mut batch: Vec<Value> = Vec::new();
    loop {
        let more = if batch.is_empty() {
            events.recv().await
        } else {
            match tokio::time::timeout(opts.batch_max_wait, events.recv()).await {
                Ok(more) => more,
                Err(_) => Some(Vec::new()),
            }
        };
        let closed = more.is_none();
        let timed_out = more.as_ref().is_some_and(Vec::is_empty);
        batch.extend(more.unwrap_or_default());
        if closed || timed_out || batch.len() >= opts.batch_max_size {
            let n = batch.len().min(opts.batch_max_size.max(1));
            let sent: Vec<Value> = batch.drain(..n).collect();
            if let Err(e) = post(&receiver, sent).await {
                tracing::warn!(error = %e, "sending audit events to the webhook");
            }
        }
        if closed && batch.is_empty() {
            return;
        }
    }
}

async fn post(r: &Receiver, items: Vec<Value>) -> Result<(), String> {
    if items.is_empty() {
        return Ok(());
    }
    let host = r.uri.host().ok_or("the webhook's server has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let https = r.uri.scheme_str() == Some("https");
    let port = r.uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let list = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items});
    let mut req = hyper::Request::post(r.uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(header::HOST, crate::podlogs::authority(host, port))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = &r.token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req
        .body(Body::from(
            serde_json::to_vec(&list).expect("JSON values encode"),
        ))
        .map_err(|e| e.to_string())?;
    let tls = if https { r.tls.clone() } else { None };
    let mut send = crate::podlogs::connect(tls, host, port).await?;
    let resp = tokio::time::timeout(Duration::from_secs(30), send.send_request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    match resp.status().is_success() {
        true => Ok(()),
        false => Err(format!("the webhook answered {}", resp.status())),
    }
}

/// The receiver a kubeconfig names: its current context's cluster and user (or the first).
fn receiver(file: &Path) -> Result<Receiver, String> {
    let fail = |e: String| format!("{}: {e}", file.display());
    let text = std::fs::read_to_string(file).map_err(|e| fail(e.to_string()))?;
    let config: Value = serde_saphyr::from_str(&text).map_err(|e| fail(e.to_string()))?;
    let named = |list: &str, name: &Value| {
        let items = config[list].as_array().cloned().unwrap_or_default();
        let found = items.iter().find(|i| i["name"] == *name).or(items.first());
        found.cloned().unwrap_or(Value::Null)
    };
    let contexts = config["contexts"].as_array().cloned().unwrap_or_default();
    let current = &config["current-context"];
    let context = contexts
        .iter()
        .find(|c| c["name"] == *current)
        .or(contexts.first())
        .map(|c| c["context"].clone())
        .unwrap_or(Value::Null);
    let cluster = named("clusters", &context["cluster"])["cluster"].clone();
    let user = named("users", &context["user"])["user"].clone();
    let server = cluster["server"]
        .as_str()
        .ok_or_else(|| fail("no cluster server".into()))?;
    let uri: Uri = server.parse().map_err(|e| fail(format!("{server}: {e}")))?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let tls = client_tls(&cluster, &user, dir).map_err(fail)?;
    Ok(Receiver {
        uri,
        tls: Some(Arc::new(tls)),
        token: user["token"].as_str().map(String::from),
    })
}

/// PEM from `<field>-data` (base64) or the file `<field>` names (relative to the kubeconfig).
fn pem(section: &Value, field: &str, dir: &Path) -> Result<Option<Vec<u8>>, String> {
    use base64::Engine as _;
    if let Some(data) = section[format!("{field}-data")].as_str() {
        let decoded = base64::engine::general_purpose::STANDARD.decode(data.trim());
        return decoded.map(Some).map_err(|e| format!("{field}-data: {e}"));
    }
    match section[field].as_str() {
        Some(path) => std::fs::read(dir.join(path))
            .map(Some)
            .map_err(|e| format!("{path}: {e}")),
        None => Ok(None),
    }
}

/// TLS trusting the cluster's CA (or the system's), with the user's client certificate.
fn client_tls(cluster: &Value, user: &Value, dir: &Path) -> Result<rustls::ClientConfig, String> {
    let ca = match pem(cluster, "certificate-authority", dir)? {
        Some(ca) => ca,
        None => std::fs::read("/etc/ssl/certs/ca-certificates.crt").map_err(|e| e.to_string())?,
    };
    let roots = tls::roots(&ca)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let cert = pem(user, "client-certificate", dir)?;
    let key = pem(user, "client-key", dir)?;
    let mut tls = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&cert).collect();
            let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| e.to_string())?;
            builder
                .with_client_auth_cert(chain.map_err(|e| e.to_string())?, key)
                .map_err(|e| e.to_string())?
        }
        _ => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}
