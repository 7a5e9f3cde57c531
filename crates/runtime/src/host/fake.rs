//! A recording fake of [`Host`] for tests that run without root: it touches nothing on the
//! machine, remembers every call in order ([`Fake::calls`]) and keeps just enough state to
//! answer like a host would (containers created, started and exited; namespaces and mounts in
//! place). A test says when a container exits ([`Fake::exit_with`]); a signal sent with
//! [`Host::kill`] ends a started container at once (exit code 128 + the signal), unless
//! [`Fake::ignore_signals`] says otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Result, bail};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Create, ExecOutput, Host};
use crate::cgroups::Limits;
use crate::cni::{Attachment, PortMapping};
use crate::namespaces::{Own, Paths};
use crate::session::{Request, Session};
use crate::shim::Exit;
use tokio::net::TcpStream;

/// One call to the fake, with the arguments a test may check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// [`Host::create`].
    Create(Create),
    /// [`Host::start`].
    Start(String),
    /// [`Host::kill`]: id and signal.
    Kill(String, String),
    /// [`Host::delete`].
    Delete(String),
    /// [`Host::exec`]: id and command.
    Exec(String, Vec<String>),
    /// [`Host::mount_rootfs`]: the container's directory.
    MountRootfs(PathBuf),
    /// [`Host::remove_rootfs`].
    RemoveRootfs(PathBuf),
    /// [`Host::unmount_below`].
    UnmountBelow(PathBuf),
    /// [`Host::limit_cgroup`].
    LimitCgroup(String),
    /// [`Host::remove_cgroup`].
    RemoveCgroup(String),
    /// [`Host::create_namespaces`]: the pod's directory.
    CreateNamespaces(PathBuf),
    /// [`Host::remove_namespaces`].
    RemoveNamespaces(PathBuf),
    /// [`Host::network_add`]: the pod id.
    NetworkAdd(String),
    /// [`Host::network_del`].
    NetworkDel(String),
    /// [`Host::mount_tmpfs`].
    MountTmpfs(PathBuf),
    /// [`Host::unmount`].
    Unmount(PathBuf),
    /// [`Host::exec_session`]: id and command.
    ExecSession(String, Vec<String>),
    /// [`Host::attach`]: the container's bundle.
    Attach(PathBuf),
    /// [`Host::connect`]: the pod's network namespace and the port.
    Connect(Option<PathBuf>, u16),
}

/// A container as the fake knows it.
#[derive(Debug, Clone)]
struct Container {
    exit_file: PathBuf,
    started: bool,
    exit: Option<Exit>,
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<Call>,
    containers: BTreeMap<String, Container>,
    namespaces: BTreeSet<PathBuf>,
    mounts: BTreeSet<PathBuf>,
    ignore_signals: bool,
    pods: u8,
}

/// The recording fake host.
#[derive(Debug, Default)]
pub struct Fake {
    state: Mutex<State>,
}

/// The signal number of a name `kill` takes.
fn signal_number(signal: &str) -> i32 {
    match signal.trim_start_matches("SIG") {
        "KILL" => 9,
        "TERM" => 15,
        "INT" => 2,
        "HUP" => 1,
        other => other.parse().unwrap_or(15),
    }
}

impl Fake {
    /// A fake with nothing on it.
    pub fn new() -> Fake {
        Fake::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, call: Call) {
        self.state().calls.push(call);
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// The ids of the containers created so far, in order.
    pub fn created(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Create(c) => Some(c.id),
                _ => None,
            })
            .collect()
    }

    /// Ends container `id` with `code`, as if its process exited.
    pub fn exit_with(&self, id: &str, code: i32) {
        let mut st = self.state();
        if let Some(c) = st.containers.get_mut(id) {
            c.exit = Some(Exit {
                exit_code: code,
                signal: None,
                finished_at: jiff::Timestamp::now().to_string(),
            });
        }
    }

    /// Signals no longer end containers: they run until [`Fake::exit_with`].
    pub fn ignore_signals(&self) {
        self.state().ignore_signals = true;
    }
}

impl Host for Fake {
    fn runtime_name(&self) -> String {
        "runc".into()
    }

    fn create<'a>(&'a self, c: &'a Create) -> BoxFuture<'a, Result<()>> {
        let mut st = self.state();
        st.calls.push(Call::Create(c.clone()));
        st.containers.insert(
            c.id.clone(),
            Container {
                exit_file: c.exit_file.clone(),
                started: false,
                exit: None,
            },
        );
        futures::future::ready(Ok(())).boxed()
    }

    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        let mut st = self.state();
        st.calls.push(Call::Start(id.into()));
        let result = match st.containers.get_mut(id) {
            Some(c) => {
                c.started = true;
                Ok(())
            }
            None => Err(crate::Error::Failed(format!(
                "container {id} does not exist"
            ))),
        };
        futures::future::ready(result).boxed()
    }

    fn kill<'a>(&'a self, id: &'a str, signal: &'a str) -> BoxFuture<'a, Result<()>> {
        let mut st = self.state();
        st.calls.push(Call::Kill(id.into(), signal.into()));
        let ignore = st.ignore_signals;
        let result = match st.containers.get_mut(id) {
            Some(c) if c.started && c.exit.is_none() => {
                if !ignore {
                    let n = signal_number(signal);
                    c.exit = Some(Exit {
                        exit_code: 128 + n,
                        signal: Some(n),
                        finished_at: jiff::Timestamp::now().to_string(),
                    });
                }
                Ok(())
            }
            _ => Err(crate::Error::Failed(format!(
                "container {id} is not running"
            ))),
        };
        futures::future::ready(result).boxed()
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.record(Call::Delete(id.into()));
        futures::future::ready(Ok(())).boxed()
    }

    fn pid<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<i32>> {
        let st = self.state();
        let pid = st
            .containers
            .get(id)
            .filter(|c| c.started && c.exit.is_none())
            .map(|_| 4242);
        futures::future::ready(pid).boxed()
    }

    fn exit(&self, exit_file: &Path) -> Option<Exit> {
        let st = self.state();
        st.containers
            .values()
            .find(|c| c.exit_file == exit_file)
            .and_then(|c| c.exit.clone())
    }

    fn oom_killed(&self, _cgroup: &str) -> bool {
        false
    }

    fn exec<'a>(
        &'a self,
        id: &'a str,
        command: &'a [String],
    ) -> BoxFuture<'a, std::io::Result<ExecOutput>> {
        self.record(Call::Exec(id.into(), command.to_vec()));
        futures::future::ready(Ok(ExecOutput {
            success: true,
            output: String::new(),
        }))
        .boxed()
    }

    fn mount_rootfs(&self, dir: &Path, layers: &[PathBuf]) -> Result<PathBuf> {
        self.record(Call::MountRootfs(dir.into()));
        if layers.is_empty() {
            bail!("an image without layers has no root filesystem");
        }
        Ok(dir.join("rootfs"))
    }

    fn remove_rootfs(&self, dir: &Path) -> Result<()> {
        self.record(Call::RemoveRootfs(dir.into()));
        Ok(())
    }

    fn unmount_below(&self, dir: &Path) -> Vec<PathBuf> {
        let mut st = self.state();
        st.calls.push(Call::UnmountBelow(dir.into()));
        let below: Vec<PathBuf> = st
            .mounts
            .iter()
            .filter(|m| m.starts_with(dir))
            .cloned()
            .collect();
        for m in &below {
            st.mounts.remove(m);
        }
        below
    }

    fn limit_cgroup(&self, path: &str, _limits: &Limits) -> std::io::Result<()> {
        self.record(Call::LimitCgroup(path.into()));
        Ok(())
    }

    fn remove_cgroup(&self, path: &str) {
        self.record(Call::RemoveCgroup(path.into()));
    }

    fn create_namespaces(&self, dir: &Path, own: Own, _hostname: &str) -> Result<Paths> {
        let mut st = self.state();
        st.calls.push(Call::CreateNamespaces(dir.into()));
        st.namespaces.insert(dir.into());
        Ok(Paths::under(dir, own))
    }

    fn namespaces_exist(&self, paths: &Paths) -> bool {
        let st = self.state();
        [&paths.net, &paths.uts, &paths.ipc]
            .into_iter()
            .flatten()
            .all(|p| {
                // `<pod dir>/ns/<kind>`.
                let dir = p.parent().and_then(Path::parent);
                dir.is_some_and(|d| st.namespaces.contains(d))
            })
    }

    fn remove_namespaces(&self, dir: &Path) -> Result<()> {
        let mut st = self.state();
        st.calls.push(Call::RemoveNamespaces(dir.into()));
        st.namespaces.remove(dir);
        Ok(())
    }

    fn network_add<'a>(
        &'a self,
        id: &'a str,
        _netns: &'a Path,
        _ports: &'a [PortMapping],
    ) -> BoxFuture<'a, Result<Attachment>> {
        let mut st = self.state();
        st.calls.push(Call::NetworkAdd(id.into()));
        st.pods = st.pods.wrapping_add(1);
        let ip = IpAddr::V4(Ipv4Addr::new(10, 88, 0, st.pods.max(2)));
        futures::future::ready(Ok(Attachment {
            ips: vec![ip],
            result: json!({"ips": [{"address": format!("{ip}/24")}]}),
        }))
        .boxed()
    }

    fn network_del<'a>(
        &'a self,
        id: &'a str,
        _netns: &'a Path,
        _ports: &'a [PortMapping],
        _result: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<()>> {
        self.record(Call::NetworkDel(id.into()));
        futures::future::ready(Ok(())).boxed()
    }

    fn mount_tmpfs(&self, dir: &Path, _options: &str) -> Result<()> {
        let mut st = self.state();
        st.calls.push(Call::MountTmpfs(dir.into()));
        st.mounts.insert(dir.into());
        Ok(())
    }

    fn is_mounted(&self, path: &Path) -> bool {
        self.state().mounts.contains(path)
    }

    fn unmount(&self, path: &Path) {
        let mut st = self.state();
        st.calls.push(Call::Unmount(path.into()));
        st.mounts.remove(path);
    }

    /// A session whose output is its command line and whose process exits 0.
    fn exec_session<'a>(
        &'a self,
        id: &'a str,
        req: &'a Request,
        _scratch: &'a Path,
    ) -> BoxFuture<'a, Result<Session>> {
        self.record(Call::ExecSession(id.into(), req.command.clone()));
        futures::future::ready(Ok(echo(req, req.command.join(" ") + "\n"))).boxed()
    }

    /// A session with no output whose container ends at once.
    fn attach<'a>(&'a self, bundle: &'a Path, req: &'a Request) -> BoxFuture<'a, Result<Session>> {
        self.record(Call::Attach(bundle.into()));
        futures::future::ready(Ok(echo(req, String::new()))).boxed()
    }

    /// Connects to `port` on the host's loopback, where a test listens.
    fn connect(
        &self,
        netns: Option<PathBuf>,
        port: u16,
    ) -> BoxFuture<'static, std::result::Result<TcpStream, String>> {
        self.record(Call::Connect(netns, port));
        TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .map(|r| r.map_err(|e| e.to_string()))
            .boxed()
    }
}

/// A session that writes `output` to stdout, takes (and drops) stdin, and has exited 0.
fn echo(req: &Request, output: String) -> Session {
    let stdin = req
        .stdin
        .then(|| Box::new(tokio::io::sink()) as crate::session::Writer);
    let stdout = req
        .stdout
        .then(|| Box::new(std::io::Cursor::new(output.into_bytes())) as crate::session::Reader);
    Session {
        stdin,
        stdout,
        stderr: None,
        resize: None,
        ended: futures::future::ready(Ok(crate::session::Exit {
            code: 0,
            runtime_error: None,
        }))
        .boxed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_fake_records_calls_and_ends_containers_when_told() {
        let fake = Fake::new();
        let create = Create {
            id: "c1".into(),
            bundle: "/b".into(),
            log: "/l".into(),
            exit_file: "/b/exit.json".into(),
            stdin: false,
            stdin_once: false,
            tty: false,
        };
        fake.create(&create).await.unwrap();
        fake.start("c1").await.unwrap();
        assert_eq!(fake.pid("c1").await, Some(4242));
        assert_eq!(fake.exit(Path::new("/b/exit.json")), None);
        fake.exit_with("c1", 3);
        assert_eq!(fake.exit(Path::new("/b/exit.json")).unwrap().exit_code, 3);
        assert!(fake.kill("c1", "TERM").await.is_err());
        assert_eq!(
            fake.calls(),
            [
                Call::Create(create),
                Call::Start("c1".into()),
                Call::Kill("c1".into(), "TERM".into())
            ]
        );
        let paths = fake
            .create_namespaces(
                Path::new("/pod"),
                Own {
                    net: true,
                    uts: true,
                    ipc: false,
                },
                "p",
            )
            .unwrap();
        assert!(fake.namespaces_exist(&paths));
        fake.remove_namespaces(Path::new("/pod")).unwrap();
        assert!(!fake.namespaces_exist(&paths));
    }
}
