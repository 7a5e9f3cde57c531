//! What this crate's operations fail with: [`Error`], and [`Context`] to say what was being
//! done when a system call, a file, a command or a document failed.

/// A failed operation on the host: its message says what was being done and why it failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file, socket, directory or command could not be used.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, e.g. `opening /run/netns/x`.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A system call (namespaces, mounts, process control) failed.
    #[error("{what}: {source}")]
    System {
        /// What was being done, e.g. `unshare`.
        what: String,
        /// The error number.
        #[source]
        source: nix::Error,
    },
    /// A JSON document (a CNI configuration or result, a seccomp profile) is not valid.
    #[error("{what}: {source}")]
    Json {
        /// Which document.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The OCI configuration could not be built.
    #[error("{what}: {source}")]
    Spec {
        /// Which part.
        what: String,
        /// Why.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// A number (a pid) could not be read.
    #[error("{what}: {source}")]
    Number {
        /// Which number.
        what: String,
        /// Why.
        #[source]
        source: std::num::ParseIntError,
    },
    /// A file, socket or pipe failed, with nothing more to say than the system's error.
    #[error(transparent)]
    Os(#[from] std::io::Error),
    /// A system call failed, with nothing more to say than its error number.
    #[error(transparent)]
    Errno(#[from] nix::Error),
    /// A JSON document could not be written.
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    /// The CNI plugin directories cannot make a `PATH`.
    #[error(transparent)]
    Path(#[from] std::env::JoinPathsError),
    /// Something needed is not there: a program, a plugin, a pipe, a file's content.
    #[error("{0}")]
    Missing(String),
    /// A command (runc, a CNI plugin, iptables, ip, the shim) or a step refused or failed;
    /// the message says which and why.
    #[error("{0}")]
    Failed(String),
    /// A thread doing the work panicked.
    #[error("{0}")]
    Panicked(&'static str),
    /// One of this crate's errors, with what was being done.
    #[error("{what}: {source}")]
    Step {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: Box<Error>,
    },
}

/// This crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

crate::error_context!(
    Io: std::io::Error,
    System: nix::Error,
    Json: serde_json::Error,
    Spec: oci_spec::OciSpecError,
    Number: std::num::ParseIntError,
);

/// Returns early with [`Error::Failed`], its message formatted.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Failed(format!($($arg)*)))
    };
}
pub(crate) use bail;

/// Defines, in the calling module, `Context` (says what was being done when an operation
/// failed) and `Described` (an error that `Context` turns into the module's `Error`, giving
/// the variant for its kind), for a module that has `Error` with `Missing(String)` and
/// `Step { what, source: Box<Error> }` variants and a `Result` alias. `None` from an
/// `Option` becomes `Error::Missing`; one of the module's own errors becomes `Error::Step`;
/// each `Variant: Type` given makes a `Type` into `Error::Variant { what, source }`. This
/// crate and the agent each call it once.
#[macro_export]
macro_rules! error_context {
    ($($variant:ident: $source:ty),* $(,)?) => {
        $(impl Described for $source {
            fn described(self, what: String) -> Error {
                Error::$variant { what, source: self }
            }
        })*

        /// Says what was being done when an operation failed, giving the [`Error`] variant
        /// for its kind of failure (`None` from an `Option` is [`Error::Missing`]).
        pub(crate) trait Context<T> {
            /// The failure, described as `what`.
            fn context(self, what: impl Into<String>) -> Result<T>;

            /// The failure, described by `what()` (only called on failure).
            fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
        }

        /// An error that [`Context`] turns into an [`Error`].
        pub(crate) trait Described {
            /// `self`, as the variant for its kind, described as `what`.
            fn described(self, what: String) -> Error;
        }

        impl Described for Error {
            fn described(self, what: String) -> Error {
                Error::Step {
                    what,
                    source: Box::new(self),
                }
            }
        }

        impl<T, E: Described> Context<T> for std::result::Result<T, E> {
            fn context(self, what: impl Into<String>) -> Result<T> {
                self.map_err(|e| e.described(what.into()))
            }

            fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
                self.map_err(|e| e.described(what().into()))
            }
        }

        impl<T> Context<T> for Option<T> {
            fn context(self, what: impl Into<String>) -> Result<T> {
                self.ok_or_else(|| Error::Missing(what.into()))
            }

            fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
                self.ok_or_else(|| Error::Missing(what().into()))
            }
        }
    };
}
