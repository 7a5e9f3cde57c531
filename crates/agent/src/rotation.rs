//! Renewing a joined node's certificates while the agent runs, as the kubelet's certificate
//! manager does: each certificate is asked for again through the CSR flow, as the node, once
//! 70 to 84% of its validity has passed (never sooner than a third of the way from when it
//! was written to its end, so that certificates a signer backdates and keeps short are not
//! asked for over and over). The new client certificate replaces the one the agent's API
//! client presents ([`NodeClient`]), the new serving certificate the one its HTTPS endpoint
//! presents ([`tls::ServingCertificate`]); both are written where the next start finds them.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

pub use tls::ServingCertificate;

use crate::bootstrap::{self, Files};
use crate::error::Result;

/// The longest wait between two looks at the certificates (clocks jump, machines sleep).
const LOOK_AGAIN: Duration = Duration::from_secs(3600);
/// The wait before asking again after a failed renewal.
const RETRY: Duration = Duration::from_secs(10);

/// The agent's API client as the node, following its renewed client certificate: every
/// request goes through the client built on the newest one.
#[derive(Clone)]
pub struct NodeClient {
    current: Arc<RwLock<kube::Client>>,
}

impl NodeClient {
    /// Starts with `client`.
    pub fn new(client: kube::Client) -> NodeClient {
        NodeClient {
            current: Arc::new(RwLock::new(client)),
        }
    }

    /// A client whose requests go through the newest inner client.
    pub fn client(&self) -> kube::Client {
        let current = self.current.clone();
        let service = tower::service_fn(move |req| {
            let inner = current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            async move { inner.send(req).await }
        });
        kube::client::ClientBuilder::new(service, "default").build()
    }

    fn replace(&self, client: kube::Client) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = client;
    }
}

/// What renewing a joined node's certificates needs.
pub struct Renewal {
    /// The joined agent's credentials, as [`bootstrap::bootstrap`] left them.
    pub credentials: bootstrap::Credentials,
    /// The client to swap the new client certificate into.
    pub client: NodeClient,
    /// The endpoint's certificate to swap the new serving certificate into.
    pub serving: Arc<ServingCertificate>,
}

/// Renews the node's client and serving certificates when due, for ever.
pub async fn keep_renewed(r: Renewal) {
    let files = Files::new(&r.credentials.dir.join("pki"));
    let jitter = jitter();
    loop {
        let due = [&files.client_cert, &files.serving_cert].map(|f| due(f, jitter));
        let now = jiff::Timestamp::now().as_second();
        let wait = (due.iter().min().copied().unwrap_or(0) - now).max(0);
        let wait = Duration::from_secs(u64::try_from(wait).unwrap_or(0)).min(LOOK_AGAIN);
        tokio::time::sleep(wait).await;
        let now = jiff::Timestamp::now().as_second();
        let result = async {
            if due[0] <= now {
                renew_client(&r).await?;
            }
            if due[1] <= now {
                renew_serving(&r).await?;
            }
            Ok::<_, crate::error::Error>(())
        };
        if let Err(e) = result.await {
            tracing::warn!("renewing the node's certificates: {e:#}");
            tokio::time::sleep(RETRY).await;
        }
    }
}

/// Asks for a new client certificate and moves the agent's client onto it.
async fn renew_client(r: &Renewal) -> Result<()> {
    let creds = &r.credentials;
    let client = bootstrap::renew_client_certificate(creds, r.client.client()).await?;
    r.client.replace(client);
    tracing::info!(
        "renewed the node's client certificate ({})",
        creds.kubeconfig.display()
    );
    Ok(())
}

/// Asks for a new serving certificate and serves it.
async fn renew_serving(r: &Renewal) -> Result<()> {
    let (cert, key) =
        bootstrap::renew_serving_certificate(&r.credentials, r.client.client()).await?;
    r.serving
        .replace(&cert, &key)
        .map_err(crate::error::Error::Failed)?;
    tracing::info!("renewed the node's serving certificate");
    Ok(())
}

/// When to renew the certificate in the file `path` (Unix seconds; 0, at once, when it
/// cannot be read).
fn due(path: &std::path::Path, jitter: f64) -> i64 {
    let written = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .map(|t| jiff::Timestamp::try_from(t).map_or(0, |t| t.as_second()));
    let pem = std::fs::read_to_string(path).ok();
    match (pem.and_then(|p| bootstrap::validity(&p)), written) {
        (Some(validity), Some(written)) => renew_at(validity, written, jitter),
        _ => 0,
    }
}

/// When to ask again for a certificate valid over `(not_before, not_after)` and written at
/// `written` (Unix seconds): after `0.7 + 0.14 × jitter` (jitter in 0..1) of its validity,
/// and not before a third of the way from `written` to its end.
fn renew_at((not_before, not_after): (i64, i64), written: i64, jitter: f64) -> i64 {
    let life = (not_after - not_before) as f64;
    let deadline = not_before + (life * (0.7 + 0.14 * jitter)) as i64;
    deadline.max(written + (not_after - written).max(0) / 3)
}

/// A number in 0..1 from the clock's nanoseconds: enough to spread nodes' renewals.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos) / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_at_70_to_84_percent_and_short_certificates_wait_a_third() {
        let year = 365 * 86_400;
        // A year's certificate, written when issued: at 70% with no jitter, 84% with all.
        assert_eq!(renew_at((0, year), 0, 0.0), year * 7 / 10);
        assert_eq!(renew_at((0, year), 0, 1.0), year * 84 / 100);
        // 90 s after a notBefore backdated by 5 minutes: 70% is already past, so a third of
        // the way from writing to the end.
        let written = 1_000;
        assert_eq!(
            renew_at((written - 300, written + 90), written, 0.5),
            written + 30
        );
    }
}
