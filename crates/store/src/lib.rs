//! Rudder's revisioned key-value store: what etcd is to upstream Kubernetes.
//!
//! The API server keeps every object here, as bytes under upstream's key layout
//! (`/registry/<resource>/<namespace>/<name>`). This crate owns the storage contract and its
//! backends; it must not decode objects or know resource names, and it depends on no other
//! Rudder crate.
//!
//! Where to start reading:
//! - [`kv`]: the [`Store`] trait (etcd v3's semantics: one cluster revision, compare-and-swap on
//!   `mod_revision`, reads at a revision, watch from a revision, compaction), its types and
//!   errors;
//! - [`sqlite`]: the embedded default, a kine-style log table with group commit;
//! - [`etcd`]: the adapter to a real etcd cluster;
//! - [`compactor`]: the background task that keeps a bounded history window;
//! - `testing` (feature `testing`): the conformance suite every backend runs, and a real etcd
//!   process for tests.
//!
//! Backends are picked by a k3s-style endpoint URL through [`open`].

pub mod compactor;
pub mod etcd;
pub mod kv;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use etcd::EtcdTls;
pub use kv::{
    Deleted, Error, KeyValue, MAX_VALUE_BYTES, RangeOptions, RangeResponse, Result, Revision,
    Store, WatchEvent, WatchOptions, WatchStream,
};

/// Where the data lives, parsed from a `--datastore-endpoint` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The embedded SQLite database in this file.
    Sqlite(PathBuf),
    /// An etcd cluster at these `host:port`, `http://host:port` or `https://host:port`
    /// addresses.
    Etcd(Vec<String>),
}

impl Endpoint {
    /// Parses a datastore URL the way k3s does: empty or `sqlite://` for the embedded database
    /// under `data_dir` (`sqlite:///path/file.db` for another file), `etcd://host:port[,...]`,
    /// `http://host:port[,...]` or `https://host:port[,...]` for etcd.
    pub fn parse(url: &str, data_dir: &Path) -> Result<Endpoint> {
        let invalid = |detail: &str| Error::InvalidEndpoint {
            endpoint: url.to_string(),
            detail: detail.to_string(),
        };
        let url = url.trim();
        if url.is_empty() {
            return Ok(Endpoint::Sqlite(Self::default_sqlite_path(data_dir)));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or_default();
            return Ok(Endpoint::Sqlite(if path.is_empty() {
                Self::default_sqlite_path(data_dir)
            } else {
                PathBuf::from(path)
            }));
        }
        if let Some(hosts) = url.strip_prefix("etcd://") {
            let hosts: Vec<String> = hosts
                .split(',')
                .map(|h| h.trim().trim_end_matches('/').to_string())
                .filter(|h| !h.is_empty())
                .collect();
            if hosts.is_empty() {
                return Err(invalid("no etcd host given"));
            }
            return Ok(Endpoint::Etcd(hosts));
        }
        for scheme in ["http://", "https://"] {
            if !url.starts_with(scheme) {
                continue;
            }
            let hosts: Vec<String> = url
                .split(',')
                .map(|h| h.trim().trim_end_matches('/').to_string())
                .collect();
            if let Some(bad) = hosts.iter().find(|h| !h.starts_with(scheme)) {
                return Err(invalid(&format!(
                    "{bad:?}: list every etcd address as {scheme}host:port"
                )));
            }
            return Ok(Endpoint::Etcd(hosts));
        }
        Err(invalid(
            "expected sqlite://, etcd://host:port or http://host:port",
        ))
    }

    /// `<data_dir>/db/state.db`, where k3s keeps its embedded database too.
    pub fn default_sqlite_path(data_dir: &Path) -> PathBuf {
        data_dir.join("db").join("state.db")
    }
}

/// Opens the store an endpoint names. etcd is retried with back-off for up to `wait`, over TLS
/// with `tls` (`https://` endpoints need it).
pub async fn open(
    endpoint: &Endpoint,
    wait: Duration,
    tls: Option<&EtcdTls>,
) -> Result<Arc<dyn Store>> {
    Ok(match endpoint {
        Endpoint::Sqlite(path) => Arc::new(
            sqlite::SqliteStore::open(path.clone(), sqlite::SqliteOptions::default()).await?,
        ),
        Endpoint::Etcd(hosts) => {
            let https = hosts.iter().any(|h| h.starts_with("https://"));
            if https && tls.is_none() {
                return Err(Error::InvalidEndpoint {
                    endpoint: hosts.join(","),
                    detail: "etcd over https:// needs the CA its certificate chains to \
                             (--datastore-cafile)"
                        .into(),
                });
            }
            Arc::new(etcd::EtcdStore::connect(hosts, wait, tls).await?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_https_etcd_without_a_ca_is_refused_at_once() {
        let endpoint = Endpoint::Etcd(vec!["https://127.0.0.1:1".into()]);
        let Err(e) = open(&endpoint, Duration::from_secs(60), None).await else {
            panic!("opened");
        };
        assert!(e.to_string().contains("--datastore-cafile"), "{e}");
    }

    #[test]
    fn endpoints_parse_like_k3s() {
        let dir = Path::new("/var/lib/rudder");
        let db = PathBuf::from("/var/lib/rudder/db/state.db");
        assert_eq!(
            Endpoint::parse("", dir).unwrap(),
            Endpoint::Sqlite(db.clone())
        );
        assert_eq!(
            Endpoint::parse("sqlite://", dir).unwrap(),
            Endpoint::Sqlite(db)
        );
        assert_eq!(
            Endpoint::parse("sqlite:///tmp/x.db?_journal=WAL", dir).unwrap(),
            Endpoint::Sqlite("/tmp/x.db".into())
        );
        assert_eq!(
            Endpoint::parse("etcd://a:2379,b:2379", dir).unwrap(),
            Endpoint::Etcd(vec!["a:2379".into(), "b:2379".into()])
        );
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:2379", dir).unwrap(),
            Endpoint::Etcd(vec!["http://127.0.0.1:2379".into()])
        );
        let err = Endpoint::parse("mysql://x", dir).unwrap_err().to_string();
        assert!(err.contains("mysql://x"), "{err}");
        assert!(Endpoint::parse("etcd://", dir).is_err());
        assert!(Endpoint::parse("http://a:1,b:2", dir).is_err());
        assert_eq!(
            Endpoint::parse("https://a:1,https://b:2", dir).unwrap(),
            Endpoint::Etcd(vec!["https://a:1".into(), "https://b:2".into()])
        );
        assert!(Endpoint::parse("https://a:1,http://b:2", dir).is_err());
    }
}
