//! End-to-end harness: the real `rudder server` binary on a free port with a temporary data
//! directory, driven by the real kubectl.

#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `rudder server`, killed when dropped.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    extra: Vec<String>,
    /// The network number of the server's node agent, if it runs one: its pod bridge is
    /// `rdt<net>`, its service proxy's table `rudder-t<net>`.
    net: Option<u8>,
}

/// A port free now, never one this test process was handed before: the system may give the
/// same ephemeral port to two binds in a row once the first is closed, and two components of
/// one test then collide.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The result of one kubectl run.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Stdout, panicking with stderr if kubectl failed.
    pub fn out(&self) -> &str {
        assert!(self.ok, "kubectl failed: {}", self.stderr);
        &self.stdout
    }

    /// Stderr, panicking if kubectl succeeded.
    pub fn err(&self) -> &str {
        assert!(
            !self.ok,
            "kubectl should have failed, printed: {}",
            self.stdout
        );
        &self.stderr
    }
}

impl Cluster {
    /// Starts a server with the given extra flags and waits until it is ready.
    /// Without a node agent: pods run on simulated nodes only.
    pub fn start(extra: &[&str]) -> Cluster {
        let mut c = Cluster {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            child: None,
            extra: std::iter::once("--disable-agent")
                .chain(extra.iter().copied())
                .map(str::to_string)
                .collect(),
            net: None,
        };
        c.spawn();
        c
    }

    /// With the node agent (as root): node `node`, its own pod bridge and pod network
    /// `10.<net>.0.0/16` (distinct per test, so that tests running at once do not meet),
    /// logs under the data directory. `rudder reset` cleans the host up when dropped.
    pub fn start_with_agent(node: &str, net: u8, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let bridge = format!("rdt{net}");
        let mut args: Vec<String> = [
            "--node-name",
            node,
            "--bridge",
            &bridge,
            "--cluster-cidr",
            &format!("10.{net}.0.0/16"),
            "--kubelet-port",
            &free_port().to_string(),
            "--pod-log-dir",
            &dir.path().join("pod-logs").display().to_string(),
            // Clusters running side by side on this host: a service range and a proxy
            // table each.
            "--service-cidr",
            &format!("10.{}.0.0/16", u16::from(net) + 30),
            "--proxy-table",
            &format!("rudder-t{net}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Port 80 and 443 are one host's: only a test that asks gets an Ingress controller.
        if !extra.contains(&"--ingress-http-port") {
            args.push("--disable-ingress".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut c = Cluster {
            dir,
            port: free_port(),
            child: None,
            extra: args,
            net: Some(net),
        };
        c.spawn();
        c
    }

    /// The node agent's data directory.
    pub fn agent_dir(&self) -> PathBuf {
        self.dir.path().join("agent")
    }

    fn spawn(&mut self) {
        // Loopback only, unless the test says otherwise.
        let bind = if self.extra.iter().any(|a| a == "--bind-address") {
            &[][..]
        } else {
            &["--bind-address", "127.0.0.1"][..]
        };
        let child = Command::new(env!("CARGO_BIN_EXE_rudder"))
            .arg("server")
            .arg("--data-dir")
            .arg(self.dir.path())
            .arg("--https-listen-port")
            .arg(self.port.to_string())
            .args(bind)
            .args(&self.extra)
            .stdout(Stdio::null())
            // A file, not a pipe: a pipe nobody reads fills up and blocks the server's logging.
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("server.log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.kubeconfig().exists() && self.kubectl(&["get", "--raw", "/readyz"]).ok {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let err =
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                panic!("rudder server exited with {status}: {err}");
            }
            assert!(
                Instant::now() < deadline,
                "rudder server did not become ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server with SIGTERM and starts it again on the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// As [`Cluster::restart`], with more flags from now on.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.extra.extend(extra.iter().map(|a| a.to_string()));
        self.restart();
    }

    /// SIGTERM, then wait.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child);
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    /// A kube-rs client with the admin kubeconfig (inside a tokio runtime).
    pub async fn kube_client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// Runs kubectl against this cluster.
    pub fn kubectl(&self, args: &[&str]) -> Run {
        self.kubectl_in(args, None)
    }

    /// Runs kubectl with `stdin` as its standard input.
    pub fn kubectl_in(&self, args: &[&str], stdin: Option<&str>) -> Run {
        self.kubectl_with(&self.kubeconfig(), args, stdin)
    }

    /// Runs kubectl with another kubeconfig.
    pub fn kubectl_with(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Run {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl is installed");
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        Run::from(child.wait_with_output().unwrap())
    }

    /// `kubectl apply -f -` with `manifest`.
    pub fn apply(&self, manifest: &str) -> Run {
        self.kubectl_in(&["apply", "-f", "-"], Some(manifest))
    }

    /// Starts a long-running kubectl (e.g. `get -w`) with output to a file.
    pub fn kubectl_background(&self, args: &[&str], out: &Path) -> Child {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(args)
            .stdout(std::fs::File::create(out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // RUDDER_TEST_LOGS=DIR keeps every server's log there, named for its test.
        if let Some(keep) = std::env::var_os("RUDDER_TEST_LOGS") {
            let test = std::thread::current()
                .name()
                .unwrap_or("test")
                .replace("::", "-");
            let _ = std::fs::create_dir_all(&keep);
            let kept = Path::new(&keep).join(format!("{test}-{}.log", std::process::id()));
            let _ = std::fs::copy(self.dir.path().join("server.log"), kept);
        }
        // A failed test shows the end of the server's log.
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- the last lines of the server's log ---\n{}",
                lines[lines.len().saturating_sub(80)..].join("\n")
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(net) = self.net {
            let _ = Command::new(env!("CARGO_BIN_EXE_rudder"))
                .arg("reset")
                .arg("--data-dir")
                .arg(self.agent_dir())
                .arg("--bridge")
                .arg(format!("rdt{net}"))
                .arg("--proxy-table")
                .arg(format!("rudder-t{net}"))
                .arg("--cluster-dns")
                .arg(format!("10.{}.0.10", u16::from(net) + 30))
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// SIGTERM, then wait (SIGKILL after 20 s).
pub fn terminate(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `eventually(what, cond)` polls `cond` every 50 ms until it holds (panics after 60 s: a
/// hang, not a timing check). `consistently(what, period, cond)` is for "this does not
/// happen": it checks `cond` every 200 ms over `period` and panics at the first check where it
/// does not hold, where a sleep followed by one assert would look only once.
#[allow(unused_imports)] // Not every test file uses both.
pub use testkit::blocking::{consistently, eventually};

/// A running `rudder simulate`, killed when dropped; its log is printed if the test failed.
pub struct Simulator {
    child: Child,
    log: PathBuf,
}

impl Simulator {
    pub fn start(c: &Cluster, args: &[&str]) -> Simulator {
        let log = c.dir.path().join("simulate.log");
        let child = Command::new(env!("CARGO_BIN_EXE_rudder"))
            .arg("simulate")
            .arg("--kubeconfig")
            .arg(c.kubeconfig())
            .args(args)
            .env("RUST_LOG", "info,rudder_simulator=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Simulator { child, log }
    }

    /// Panics (with the log) if the simulator exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "rudder simulate exited with {status}:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "rudder simulate's log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}
