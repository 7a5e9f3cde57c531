//! What the agent fails with: [`Error`], and [`Context`] to say what was being done when a
//! file, a system call, an API call, the host or the image store failed.

/// A failure of the agent: its message says what was being done and why it failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file, directory, socket or command could not be used.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, e.g. `creating /var/lib/rudder/pods`.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A system call (a terminal, a descriptor) failed.
    #[error("{what}: {source}")]
    System {
        /// What was being done.
        what: String,
        /// The error number.
        #[source]
        source: nix::Error,
    },
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done, e.g. `registering the node`.
        what: String,
        /// The API's answer.
        #[source]
        source: kube::Error,
    },
    /// The host (runc, namespaces, mounts, CNI) failed while doing `what`.
    #[error("{what}: {source}")]
    Host {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: runtime::Error,
    },
    /// The host failed, with nothing more to say.
    #[error(transparent)]
    Runtime(#[from] runtime::Error),
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] image::Error),
    /// Certificates, keys or TLS could not be made, read or used (joining, serving).
    #[error("{what}: {source}")]
    Tls {
        /// What was being done, e.g. `reading the cluster CA`.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Joining could not reach or wait on the API server: an address, a connection, a
    /// timeout, a certificate request's outcome.
    #[error("{what}: {source}")]
    Join {
        /// What was being done, e.g. `connecting: timed out`.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An HTTP connection (to the agent itself, for a probe of its server) failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// An HTTP request could not be built.
    #[error(transparent)]
    Request(#[from] hyper::http::Error),
    /// A WebSocket stream (exec, attach, port-forward) failed.
    #[error(transparent)]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// A name is not a valid DNS name for TLS.
    #[error(transparent)]
    DnsName(#[from] rustls::pki_types::InvalidDnsNameError),
    /// A file, socket or API call failed, with nothing more to say.
    #[error(transparent)]
    Os(#[from] std::io::Error),
    /// An API call failed, with nothing more to say.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// A JSON document could not be made or read.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A system call failed, with nothing more to say.
    #[error(transparent)]
    Errno(#[from] nix::Error),
    /// Something needed is not there; the message says what.
    #[error("{0}")]
    Missing(String),
    /// Something is not as it must be, or a peer refused or went away; the message says
    /// what.
    #[error("{0}")]
    Failed(String),
    /// Waiting timed out; the message says for what.
    #[error("{0}")]
    TimedOut(String),
    /// One of the agent's own errors, with what was being done.
    #[error("{what}: {source}")]
    Step {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: Box<Error>,
    },
}

/// The agent's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

runtime::error_context!(
    Io: std::io::Error,
    System: nix::Error,
    Api: kube::Error,
    Host: runtime::Error,
);

/// Errors described as one of the variants with a boxed source.
macro_rules! described {
    ($variant:ident: $($t:ty),* $(,)?) => {
        $(impl Described for $t {
            fn described(self, what: String) -> Error {
                Error::$variant { what, source: Box::new(self) }
            }
        })*
    };
}

described!(
    Join: hyper::http::uri::InvalidUri,
    tokio::time::error::Elapsed,
    kube::runtime::wait::Error,
);

described!(
    Tls: std::string::FromUtf8Error,
    rcgen::Error,
    rustls::Error,
    rustls::server::VerifierBuilderError,
    rustls::pki_types::InvalidDnsNameError,
    rustls::pki_types::pem::Error,
    x509_parser::nom::Err<x509_parser::error::PEMError>,
    x509_parser::nom::Err<x509_parser::error::X509Error>,
    kube::config::KubeconfigError,
);

/// Returns early with [`Error::Failed`], its message formatted.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Failed(format!($($arg)*)))
    };
}
pub(crate) use bail;

/// Returns early with [`Error::Failed`] unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::error::bail!($($arg)*);
        }
    };
}
pub(crate) use ensure;
