//! The API server in-process. It runs on a thread and tokio runtime of its own, so it serves
//! a test whatever runtime the test uses (`#[tokio::test]`'s single thread included), and
//! dropping it can stop it, wait for the store to close, then remove its data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::oneshot;

/// How long stopping may take: closing the store, then the server's remaining tasks.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server thread reports once it listens: its address and admin kubeconfig.
type Started = Result<(SocketAddr, PathBuf), String>;

/// A running API server with the embedded SQLite store in a temporary directory, and a
/// client authenticated as the cluster admin (`system:admin`, group `system:masters`).
/// Dropping it stops the server and removes the directory.
pub struct TestServer {
    client: kube::Client,
    address: SocketAddr,
    kubeconfig: PathBuf,
    running: Option<Running>,
    dir: tempfile::TempDir,
}

/// The server's thread and the way to stop it.
struct Running {
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl TestServer {
    /// Starts a server on a free loopback port; panics saying why if it cannot.
    pub async fn start() -> TestServer {
        match TestServer::try_start().await {
            Ok(server) => server,
            Err(e) => panic!("starting the in-process API server: {e}"),
        }
    }

    /// Starts a server on a free loopback port.
    pub async fn try_start() -> Result<TestServer, String> {
        init_logging();
        let dir = tempfile::Builder::new()
            .prefix("rudder-testkit-")
            .tempdir()
            .map_err(|e| format!("making a temporary data directory: {e}"))?;
        let (started_tx, started) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel();
        // Without the ServiceAccount admission step: no controllers run here, so no
        // namespace gets its `default` account (upstream's integration tests leave it out too).
        let config = apiserver::Config::loopback(dir.path());
        let thread = std::thread::Builder::new()
            .name("testkit-apiserver".into())
            .spawn(move || serve(config, started_tx, stop_rx))
            .map_err(|e| format!("spawning the server thread: {e}"))?;
        let running = Running { stop, thread };
        let (address, kubeconfig) = match started.await {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => return Err(running.join_after(e)),
            Err(_) => return Err(running.join_after("the server thread ended early".into())),
        };
        let client = admin_client(&kubeconfig).await?;
        Ok(TestServer {
            client,
            address,
            kubeconfig,
            running: Some(running),
            dir,
        })
    }

    /// A client authenticated as the cluster admin (a cheap clone; clones share connections).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The address the server listens on (127.0.0.1 and a free port).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The server's URL, as the kubeconfig names it.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.address.port())
    }

    /// The admin kubeconfig (for kubectl, or a client of one's own).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The server's data directory: `tls/` (the CA and certificates), `db/`, the kubeconfig.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop();
        }
    }
}

impl Running {
    /// Stops the server and waits for its thread, reporting (not panicking on) a failure.
    fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            eprintln!("testkit: the API server's thread panicked while stopping");
        }
    }

    /// Waits for a thread that failed to start the server; returns its error.
    fn join_after(self, error: String) -> String {
        self.stop();
        error
    }
}

/// The server thread: starts the server, reports, serves until told to stop, then closes it.
fn serve(
    config: apiserver::Config,
    started: oneshot::Sender<Started>,
    stop: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("testkit-apiserver")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = started.send(Err(format!("building the server's runtime: {e}")));
            return;
        }
    };
    runtime.block_on(async move {
        let server = match apiserver::start(config).await {
            Ok(server) => server,
            Err(e) => {
                let _ = started.send(Err(e.to_string()));
                return;
            }
        };
        let _ = started.send(Ok((server.address, server.kubeconfig.clone())));
        // A dropped sender stops the server too.
        let _ = stop.await;
        match tokio::time::timeout(STOP_TIMEOUT, server.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("testkit: closing the API server's store: {e}"),
            Err(_) => eprintln!("testkit: the store did not close within {STOP_TIMEOUT:?}"),
        }
    });
    // Open connections' tasks end here.
    runtime.shutdown_timeout(STOP_TIMEOUT);
}

/// A client from the admin kubeconfig the server wrote.
async fn admin_client(kubeconfig: &Path) -> Result<kube::Client, String> {
    let shown = kubeconfig.display();
    let file = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| format!("reading the admin kubeconfig {shown}: {e}"))?;
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .map_err(|e| format!("using the admin kubeconfig {shown}: {e}"))?;
    kube::Client::try_from(config).map_err(|e| format!("building the admin client: {e}"))
}

/// Logs to the test's output when `RUST_LOG` is set (once per test binary).
fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
