//! Pulling from a registry: resolve the reference on each endpoint in turn (mirrors
//! first), pick this platform's manifest from an index, fetch the config and the layers
//! (each checked against its digest, each downloaded and unpacked once), then record the
//! image.

use std::sync::Once;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use tokio::io::AsyncWriteExt as _;

use crate::Reference;
use crate::digest::{self, DigestMismatch, Hasher};
use crate::error::{PullError, PullErrorKind, chain};
use crate::layer::{remove_tree, tmp_path};
use crate::manifest::{self, Descriptor, Manifest};
use crate::registries::{Auth, Endpoint, Registries, Scheme};
use crate::store::{Image, Record, Store};

/// How many layers download at once.
const PARALLEL_LAYERS: usize = 3;

/// reqwest is built without a default TLS crypto provider (the workspace keeps aws-lc
/// out): install ring's, once, unless the process already chose one.
fn ensure_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}

fn client_for(ep: &Endpoint, scheme: Scheme) -> Result<oci_client::Client, OciDistributionError> {
    ensure_crypto_provider();
    let config = ClientConfig {
        protocol: match scheme {
            Scheme::Http => ClientProtocol::Http,
            Scheme::Https => ClientProtocol::Https,
        },
        accept_invalid_certificates: ep.skip_verify,
        extra_root_certificates: ep
            .ca_pem
            .iter()
            .map(|pem| Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem.clone(),
            })
            .collect(),
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(30)),
        read_timeout: Some(Duration::from_secs(120)),
        user_agent: concat!("rudder/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    };
    oci_client::Client::try_from(config)
}

/// The registry's own words for an error, and what kind it is.
fn classify(e: &OciDistributionError) -> (PullErrorKind, String) {
    match e {
        OciDistributionError::RegistryError { envelope, .. } => {
            let not_found = envelope.errors.iter().any(|x| {
                matches!(
                    x.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            });
            let denied = envelope
                .errors
                .iter()
                .any(|x| matches!(x.code, OciErrorCode::Unauthorized | OciErrorCode::Denied));
            let text = envelope
                .errors
                .iter()
                .map(|x| {
                    if x.message.is_empty() {
                        format!("{:?}", x.code)
                    } else {
                        x.message.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join("; ");
            let kind = if not_found {
                PullErrorKind::NotFound
            } else if denied {
                PullErrorKind::Unauthorized
            } else {
                PullErrorKind::Registry
            };
            (kind, text)
        }
        OciDistributionError::ServerError { code, message, url } => {
            let kind = match code {
                404 => PullErrorKind::NotFound,
                401 | 403 => PullErrorKind::Unauthorized,
                _ => PullErrorKind::Registry,
            };
            let message = message.trim();
            let text = if message.is_empty() {
                format!("unexpected status {code} from GET {url}")
            } else {
                format!("unexpected status {code} from GET {url}: {message}")
            };
            (kind, text)
        }
        OciDistributionError::UnauthorizedError { url } => (
            PullErrorKind::Unauthorized,
            format!("unauthorized: authentication required ({url})"),
        ),
        OciDistributionError::AuthenticationFailure(m) => (
            PullErrorKind::Unauthorized,
            format!("authentication failed: {m}"),
        ),
        OciDistributionError::ImageManifestNotFoundError(m) => (PullErrorKind::NotFound, m.clone()),
        OciDistributionError::DigestError(d) => (PullErrorKind::DigestMismatch, d.to_string()),
        OciDistributionError::RequestError(r) => (
            PullErrorKind::Registry,
            format!("failed to do request: {}", chain(r)),
        ),
        other => (PullErrorKind::Registry, chain(other)),
    }
}

fn resolve_error(name: &str, e: &OciDistributionError) -> PullError {
    let (kind, text) = classify(e);
    let detail = match kind {
        PullErrorKind::NotFound => format!("{name}: not found: {text}"),
        PullErrorKind::Unauthorized => format!(
            "pull access denied, repository does not exist or may require authorization: \
             server message: {text}"
        ),
        _ => text,
    };
    PullError::new(
        name,
        kind,
        format!("failed to resolve reference {name:?}: {detail}"),
    )
}

fn local_error(name: &str, e: &crate::Error) -> PullError {
    let kind = if e.is_digest_mismatch() {
        PullErrorKind::DigestMismatch
    } else {
        PullErrorKind::Local
    };
    PullError::new(name, kind, e)
}

fn is_transport(e: &OciDistributionError) -> bool {
    matches!(e, OciDistributionError::RequestError(_))
}

/// One registry endpoint, with the client whose scheme answered.
struct Source {
    client: oci_client::Client,
    oref: oci_client::Reference,
}

/// The image manifest a pull settled on, and what it lists.
struct Picked {
    manifest_bytes: Vec<u8>,
    manifest_digest: String,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// The image manifest for this platform: the top manifest `bytes` itself, or the entry of
/// the index it is that matches this platform, fetched and checked against its digest.
async fn pick_manifest(
    name: &str,
    src: &Source,
    oauth: &oci_client::secrets::RegistryAuth,
    bytes: &[u8],
    top_digest: &str,
) -> Result<Picked, PullError> {
    let unsupported = |m: String| PullError::new(name, PullErrorKind::Unsupported, m);
    let (manifest_bytes, manifest_digest) = match manifest::parse(bytes).map_err(unsupported)? {
        Manifest::Image { .. } => (bytes.to_vec(), top_digest.to_string()),
        Manifest::Index(list) => {
            let Some(entry) = manifest::select_platform(&list) else {
                let (arch, _) = manifest::host_platform();
                return Err(unsupported(format!(
                    "no match for platform in manifest {top_digest}: linux/{arch} not found"
                )));
            };
            let child = src.oref.clone_with_digest(entry.digest.clone());
            let (b, _) = src
                .client
                .pull_manifest_raw(&child, oauth, manifest::ACCEPTED)
                .await
                .map_err(|e| resolve_error(name, &e))?;
            digest::verify(&b, &entry.digest, "manifest")
                .map_err(|m| PullError::new(name, PullErrorKind::DigestMismatch, m))?;
            (b.to_vec(), entry.digest.clone())
        }
    };
    let Manifest::Image { config, layers } =
        manifest::parse(&manifest_bytes).map_err(unsupported)?
    else {
        return Err(unsupported(format!(
            "manifest {manifest_digest} is an index inside an index"
        )));
    };
    for d in std::iter::once(&config).chain(&layers) {
        digest::hex(&d.digest).map_err(|e| unsupported(e.to_string()))?;
    }
    Ok(Picked {
        manifest_bytes,
        manifest_digest,
        config,
        layers,
    })
}

impl Store {
    /// Pulls `reference` (normalised: `busybox` is `docker.io/library/busybox:latest`)
    /// with `auth` (from an imagePullSecret; registries.yaml's per-host auth is used when
    /// this is anonymous, and for mirrors), trying `registries`' mirrors first.
    ///
    /// Layers already in the store are not fetched again; two pulls of the same image at
    /// once download each blob once. Every blob is checked against its digest.
    pub async fn pull(
        &self,
        reference: &str,
        auth: &Auth,
        registries: &Registries,
    ) -> Result<Image, PullError> {
        let r = Reference::parse(reference)
            .map_err(|e| PullError::new(reference, PullErrorKind::InvalidReference, e))?;
        let name = r.to_string();
        let mut last: Option<PullError> = None;
        for ep in registries.endpoints(&r.registry) {
            match self.pull_from(&r, &name, &ep, auth).await {
                Ok(image) => return Ok(image),
                Err(e) => {
                    tracing::debug!(endpoint = %ep.host, error = %e, "pull failed");
                    let fatal =
                        matches!(e.kind, PullErrorKind::DigestMismatch | PullErrorKind::Local);
                    if fatal {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            PullError::new(
                &name,
                PullErrorKind::Registry,
                "no registry endpoint to try",
            )
        }))
    }

    /// Pulls from one endpoint: resolves the reference, picks this platform's manifest,
    /// fetches the config and the layers, then records the image.
    async fn pull_from(
        &self,
        r: &Reference,
        name: &str,
        ep: &Endpoint,
        auth: &Auth,
    ) -> Result<Image, PullError> {
        let auth = if ep.mirror {
            ep.auth.clone().unwrap_or_else(|| auth.clone())
        } else if *auth != Auth::Anonymous {
            auth.clone()
        } else {
            ep.auth.clone().unwrap_or_default()
        };
        let oauth = auth.to_oci();
        let oref = match (&r.tag, &r.digest) {
            (_, Some(d)) => {
                oci_client::Reference::with_digest(ep.host.clone(), r.repository.clone(), d.clone())
            }
            (Some(t), None) => {
                oci_client::Reference::with_tag(ep.host.clone(), r.repository.clone(), t.clone())
            }
            (None, None) => unreachable!("a parsed reference has a tag or a digest"),
        };
        let (client, bytes) = self.resolve(name, ep, &oref, &oauth).await?;
        let top_digest = digest::sha256(&bytes);
        if let Some(want) = &r.digest
            && *want != top_digest
        {
            let m = DigestMismatch {
                expected: want.clone(),
                actual: top_digest,
                what: "manifest",
            };
            return Err(PullError::new(name, PullErrorKind::DigestMismatch, m));
        }
        let src = Source { client, oref };
        let picked = pick_manifest(name, &src, &oauth, &bytes, &top_digest).await?;
        let Picked {
            manifest_bytes,
            manifest_digest,
            config,
            layers,
        } = picked;

        let _pins = self.pin(
            std::iter::once(config.digest.clone())
                .chain(std::iter::once(manifest_digest.clone()))
                .chain(layers.iter().map(|l| l.digest.clone())),
        );
        self.put_blob(&manifest_digest, &manifest_bytes, "manifest")
            .map_err(|e| local_error(name, &e))?;
        let config_bytes = self.fetch_config(name, &src, &config).await?;
        let parsed = manifest::parse_config(&config_bytes)
            .map_err(|m| PullError::new(name, PullErrorKind::Unsupported, m))?;
        if !parsed.diff_ids.is_empty() && parsed.diff_ids.len() != layers.len() {
            return Err(PullError::new(
                name,
                PullErrorKind::Unsupported,
                format!(
                    "image config {} lists {} layers, the manifest {}",
                    config.digest,
                    parsed.diff_ids.len(),
                    layers.len()
                ),
            ));
        }

        // The layers, a few at a time. (The futures are made first: a closure inside the
        // stream would make the pull future lose `Send` to a higher-ranked lifetime.)
        let fetches: Vec<_> = layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                self.fetch_layer(name, &src, l, parsed.diff_ids.get(i).map(String::as_str))
            })
            .collect();
        futures::stream::iter(fetches)
            .buffer_unordered(PARALLEL_LAYERS)
            .try_collect::<Vec<()>>()
            .await?;

        let repo_digest = format!("{}@{}", r.name(), top_digest);
        let mut references = vec![name.to_string()];
        if r.tag.is_some() && r.digest.is_some() {
            // Also findable by its plain digest form.
            references.push(repo_digest.clone());
        }
        let record = Record {
            id: config.digest.clone(),
            references,
            repo_digest: Some(repo_digest),
            size: layers.iter().map(|l| l.size.max(0) as u64).sum(),
            layers: layers.iter().map(|l| l.digest.clone()).collect(),
            config: parsed.config,
            manifest: Some(manifest_digest),
        };
        self.commit(record).map_err(|e| local_error(name, &e))
    }

    /// Fetches the top manifest of `oref` from `ep`: with the scheme that worked last time
    /// first, then the others allowed. The client whose scheme answered, and the bytes.
    async fn resolve(
        &self,
        name: &str,
        ep: &Endpoint,
        oref: &oci_client::Reference,
        oauth: &oci_client::secrets::RegistryAuth,
    ) -> Result<(oci_client::Client, Vec<u8>), PullError> {
        let mut schemes = ep.schemes.clone();
        let known = crate::store::lock_schemes(self).get(&ep.host).copied();
        if let Some(known) = known
            && let Some(i) = schemes.iter().position(|s| *s == known)
        {
            schemes.swap(0, i);
        }
        for (i, scheme) in schemes.iter().enumerate() {
            let client = client_for(ep, *scheme).map_err(|e| {
                PullError::new(
                    name,
                    PullErrorKind::Local,
                    format!("creating HTTP client: {}", chain(&e)),
                )
            })?;
            match client
                .pull_manifest_raw(oref, oauth, manifest::ACCEPTED)
                .await
            {
                Ok((bytes, _)) => {
                    crate::store::lock_schemes(self).insert(ep.host.clone(), *scheme);
                    return Ok((client, bytes.to_vec()));
                }
                Err(e) if is_transport(&e) && i + 1 < schemes.len() => {
                    tracing::debug!(host = %ep.host, ?scheme, error = %chain(&e), "trying the next scheme");
                }
                Err(e) => return Err(resolve_error(name, &e)),
            }
        }
        Err(PullError::new(
            name,
            PullErrorKind::Registry,
            "no scheme to try",
        ))
    }

    /// The image config: from the store, else downloaded (once, whoever asks) and stored.
    async fn fetch_config(
        &self,
        name: &str,
        src: &Source,
        config: &Descriptor,
    ) -> Result<Vec<u8>, PullError> {
        if let Some(b) = self.read_blob(&config.digest) {
            return Ok(b);
        }
        let lock = self.fetch_lock(&config.digest);
        let _g = lock.lock().await;
        if let Some(b) = self.read_blob(&config.digest) {
            return Ok(b);
        }
        let mut buf = Vec::new();
        src.client
            .pull_blob(&src.oref, &config.to_oci(), &mut buf)
            .await
            .map_err(|e| blob_error(name, &config.digest, "config", &e))?;
        self.put_blob(&config.digest, &buf, "config")
            .map_err(|e| local_error(name, &e))?;
        Ok(buf)
    }

    /// Downloads one layer to `tmp/`, checking its digest as it comes, and unpacks it
    /// into `layers/` unless it is there already.
    async fn fetch_layer(
        &self,
        name: &str,
        src: &Source,
        layer: &Descriptor,
        diff_id: Option<&str>,
    ) -> Result<(), PullError> {
        let target = self
            .layer_path(&layer.digest)
            .map_err(|e| local_error(name, &e))?;
        if target.is_dir() {
            return Ok(());
        }
        let lock = self.fetch_lock(&layer.digest);
        let _g = lock.lock().await;
        if target.is_dir() {
            return Ok(());
        }
        let file = tmp_path(&self.tmp(), "download");
        let result = self.download(name, src, layer, &file).await;
        let result = match result {
            Ok(()) => {
                let (layers, tmp) = (self.layers_dir(), self.tmp());
                let (file2, digest) = (file.clone(), layer.digest.clone());
                let diff_id = diff_id.map(str::to_string);
                tokio::task::spawn_blocking(move || {
                    let f = std::fs::File::open(&file2)?;
                    crate::layer::install(
                        std::io::BufReader::new(f),
                        &layers,
                        &tmp,
                        &digest,
                        diff_id.as_deref(),
                    )
                    .map(|_| ())
                })
                .await
                .map_err(|e| PullError::new(name, PullErrorKind::Local, e))
                .and_then(|r| r.map_err(|e| local_error(name, &e)))
            }
            Err(e) => Err(e),
        };
        remove_tree(&file);
        result
    }

    async fn download(
        &self,
        name: &str,
        src: &Source,
        layer: &Descriptor,
        file: &std::path::Path,
    ) -> Result<(), PullError> {
        let digest = &layer.digest;
        let mut stream = src
            .client
            .pull_blob_stream(&src.oref, &layer.to_oci())
            .await
            .map_err(|e| blob_error(name, digest, "layer", &e))?;
        let mut out = tokio::fs::File::create(file)
            .await
            .map_err(|e| local_error(name, &crate::Error::file("creating download file", e)))?;
        let mut hasher = Hasher::new();
        let mut failed = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    hasher.update(&bytes);
                    out.write_all(&bytes).await.map_err(|e| {
                        local_error(name, &crate::Error::file("writing download file", e))
                    })?;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        out.flush()
            .await
            .map_err(|e| local_error(name, &crate::Error::file("writing download file", e)))?;
        drop(out);
        let verification_failed = failed.as_ref().is_some_and(|e| {
            e.get_ref()
                .and_then(|i| i.downcast_ref::<DigestError>())
                .is_some_and(|d| matches!(d, DigestError::VerificationError { .. }))
        });
        if let Some(e) = failed.filter(|_| !verification_failed) {
            return Err(PullError::new(
                name,
                PullErrorKind::Registry,
                format!("failed to copy layer {digest}: {}", chain(&e)),
            ));
        }
        let actual = hasher.finish();
        if actual != *digest {
            let m = DigestMismatch {
                expected: digest.clone(),
                actual,
                what: "layer",
            };
            return Err(PullError::new(
                name,
                PullErrorKind::DigestMismatch,
                format!("failed to copy: {m}"),
            ));
        }
        Ok(())
    }
}

fn blob_error(name: &str, digest: &str, what: &str, e: &OciDistributionError) -> PullError {
    let (kind, text) = classify(e);
    PullError::new(
        name,
        kind,
        format!("failed to fetch {what} {digest}: {text}"),
    )
}
