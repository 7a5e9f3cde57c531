//! The host seam: every operation on the machine the node agent's pod workers need (a
//! container's life through runc and its monitor, root filesystems, cgroups, a pod sandbox's
//! namespaces and CNI network, tmpfs volumes, exec, and the sessions of `kubectl exec`,
//! `attach` and `port-forward`) as one trait, [`Host`], so that the
//! agent's decisions can run against a fake. [`Local`] is the real machine, built on this
//! crate's modules; with the `fake` feature, [`fake::Fake`] records calls instead and lets a
//! test say when containers exit.
//!
//! The trait's methods are host operations only, each one call into a module here; what to
//! do, in which order, stays the agent's.

use std::path::{Path, PathBuf};

use crate::Result;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::cgroups::Limits;
use crate::cni::{Attachment, PortMapping};
use crate::namespaces::{Own, Paths};
use crate::session::{Request, Session};
use crate::shim::Exit;
use tokio::net::TcpStream;

#[cfg(feature = "fake")]
pub mod fake;

/// A container to create: its bundle (with `config.json` written) and how its monitor runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Create {
    /// The container id.
    pub id: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The CRI log file.
    pub log: PathBuf,
    /// Where the monitor writes the exit status.
    pub exit_file: PathBuf,
    /// It keeps a stdin clients attach to.
    pub stdin: bool,
    /// Its stdin closes when the first attached client lets go.
    pub stdin_once: bool,
    /// It runs on a terminal.
    pub tty: bool,
}

/// What a command run in a container gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// It exited with status 0.
    pub success: bool,
    /// Its stdout, then its stderr.
    pub output: String,
}

/// The machine's side of running pods.
pub trait Host: Send + Sync {
    /// The OCI runtime's name (`runc`, `crun`), as nodeInfo and RuntimeClass handlers say it.
    fn runtime_name(&self) -> String;

    /// Creates a container: starts its monitor, which runs the runtime's `create`.
    fn create<'a>(&'a self, c: &'a Create) -> BoxFuture<'a, Result<()>>;

    /// Starts a created container's process.
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Sends a signal (`TERM`, `KILL`) to the container's init process.
    fn kill<'a>(&'a self, id: &'a str, signal: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Deletes the container's runtime state, killing it if need be.
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;

    /// The host pid of the container's init process, while the runtime knows it.
    fn pid<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<i32>>;

    /// How the container ended, once its monitor has written `exit_file`; None while it runs.
    fn exit(&self, exit_file: &Path) -> Option<Exit>;

    /// Whether the kernel OOM-killed a process in the container's cgroup.
    fn oom_killed(&self, cgroup: &str) -> bool;

    /// Runs `command` in the running container, to its end (dropping the future kills it).
    fn exec<'a>(
        &'a self,
        id: &'a str,
        command: &'a [String],
    ) -> BoxFuture<'a, std::io::Result<ExecOutput>>;

    /// Mounts the container's root filesystem under its directory `dir` over `layers` (bottom
    /// first); the mounted root.
    fn mount_rootfs(&self, dir: &Path, layers: &[PathBuf]) -> Result<PathBuf>;

    /// Unmounts and removes the root filesystem under the container's directory `dir`.
    fn remove_rootfs(&self, dir: &Path) -> Result<()>;

    /// Unmounts whatever is still mounted below `dir`; what it unmounted.
    fn unmount_below(&self, dir: &Path) -> Vec<PathBuf>;

    /// Creates the cgroup `path` with `limits`.
    fn limit_cgroup(&self, path: &str, limits: &Limits) -> std::io::Result<()>;

    /// Removes the cgroup `path` and the empty groups below it.
    fn remove_cgroup(&self, path: &str);

    /// Creates a pod's namespaces under its directory `dir`, with `hostname` in its UTS one.
    fn create_namespaces(&self, dir: &Path, own: Own, hostname: &str) -> Result<Paths>;

    /// Whether every one of a pod's namespaces is in place.
    fn namespaces_exist(&self, paths: &Paths) -> bool;

    /// Removes the namespaces under the pod's directory `dir`.
    fn remove_namespaces(&self, dir: &Path) -> Result<()>;

    /// Attaches the network namespace `netns` of pod `id` to the pod network (CNI ADD).
    fn network_add<'a>(
        &'a self,
        id: &'a str,
        netns: &'a Path,
        ports: &'a [PortMapping],
    ) -> BoxFuture<'a, Result<Attachment>>;

    /// Detaches it again (CNI DEL), given what ADD gave.
    fn network_del<'a>(
        &'a self,
        id: &'a str,
        netns: &'a Path,
        ports: &'a [PortMapping],
        result: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<()>>;

    /// Mounts a tmpfs on `dir` with `options` (`mode=1777,size=...`), no suid, no devices.
    fn mount_tmpfs(&self, dir: &Path, options: &str) -> Result<()>;

    /// Whether something is mounted on `path`.
    fn is_mounted(&self, path: &Path) -> bool;

    /// Detaches the mount on `path`.
    fn unmount(&self, path: &Path);

    /// Starts `req.command` in the running container `id` for a client (`kubectl exec`), with
    /// `scratch` for its files; dropping the session before it ended kills the process.
    fn exec_session<'a>(
        &'a self,
        id: &'a str,
        req: &'a Request,
        scratch: &'a Path,
    ) -> BoxFuture<'a, Result<Session>>;

    /// Attaches a client to the own streams of the container whose bundle is `bundle`
    /// (`kubectl attach`).
    fn attach<'a>(&'a self, bundle: &'a Path, req: &'a Request) -> BoxFuture<'a, Result<Session>>;

    /// Connects to `port` on a pod's loopback, inside its network namespace `netns` (the
    /// host's with None), for `kubectl port-forward`; the error in the kubelet's words.
    fn connect(
        &self,
        netns: Option<PathBuf>,
        port: u16,
    ) -> BoxFuture<'static, std::result::Result<TcpStream, String>>;
}

/// The real machine: the OCI runtime, the container monitor binary and the CNI network.
#[derive(Debug, Clone)]
pub struct Local {
    /// The OCI runtime.
    pub runc: crate::runc::Runc,
    /// The binary that runs `shim` (the agent's own).
    pub monitor: PathBuf,
    /// The pod network.
    pub network: crate::cni::Network,
}

impl Host for Local {
    fn runtime_name(&self) -> String {
        self.runc.name()
    }

    fn create<'a>(&'a self, c: &'a Create) -> BoxFuture<'a, Result<()>> {
        let args = crate::shim::Args {
            runtime: self.runc.binary.clone(),
            root: self.runc.root.clone(),
            id: c.id.clone(),
            bundle: c.bundle.clone(),
            log: c.log.clone(),
            exit_file: c.exit_file.clone(),
            stdin: c.stdin,
            stdin_once: c.stdin_once,
            tty: c.tty,
        };
        async move { crate::shim::spawn(&self.monitor, &args).await.map(drop) }.boxed()
    }

    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.runc.start(id).boxed()
    }

    fn kill<'a>(&'a self, id: &'a str, signal: &'a str) -> BoxFuture<'a, Result<()>> {
        self.runc.kill(id, signal).boxed()
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.runc.delete(id).boxed()
    }

    fn pid<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<i32>> {
        async move { self.runc.state(id).await.map(|s| s.pid) }.boxed()
    }

    fn exit(&self, exit_file: &Path) -> Option<Exit> {
        crate::shim::read_exit(exit_file)
    }

    fn oom_killed(&self, cgroup: &str) -> bool {
        crate::cgroups::oom_killed(cgroup)
    }

    fn exec<'a>(
        &'a self,
        id: &'a str,
        command: &'a [String],
    ) -> BoxFuture<'a, std::io::Result<ExecOutput>> {
        async move {
            let out = tokio::process::Command::new(&self.runc.binary)
                .arg("--root")
                .arg(&self.runc.root)
                .arg("exec")
                .arg(id)
                .args(command)
                .kill_on_drop(true)
                .output()
                .await?;
            Ok(ExecOutput {
                success: out.status.success(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            })
        }
        .boxed()
    }

    fn mount_rootfs(&self, dir: &Path, layers: &[PathBuf]) -> Result<PathBuf> {
        let snapshot = crate::rootfs::Snapshot::under(dir);
        snapshot.mount(layers)?;
        Ok(snapshot.rootfs)
    }

    fn remove_rootfs(&self, dir: &Path) -> Result<()> {
        crate::rootfs::Snapshot::under(dir).remove()
    }

    fn unmount_below(&self, dir: &Path) -> Vec<PathBuf> {
        crate::rootfs::unmount_below(dir)
    }

    fn limit_cgroup(&self, path: &str, limits: &Limits) -> std::io::Result<()> {
        crate::cgroups::limit(path, limits)
    }

    fn remove_cgroup(&self, path: &str) {
        crate::cgroups::remove(path);
    }

    fn create_namespaces(&self, dir: &Path, own: Own, hostname: &str) -> Result<Paths> {
        crate::namespaces::create(dir, own, hostname)
    }

    fn namespaces_exist(&self, paths: &Paths) -> bool {
        paths.exist()
    }

    fn remove_namespaces(&self, dir: &Path) -> Result<()> {
        crate::namespaces::remove(dir)
    }

    fn network_add<'a>(
        &'a self,
        id: &'a str,
        netns: &'a Path,
        ports: &'a [PortMapping],
    ) -> BoxFuture<'a, Result<Attachment>> {
        self.network.add(id, netns, ports).boxed()
    }

    fn network_del<'a>(
        &'a self,
        id: &'a str,
        netns: &'a Path,
        ports: &'a [PortMapping],
        result: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<()>> {
        self.network.del(id, netns, ports, result).boxed()
    }

    fn mount_tmpfs(&self, dir: &Path, options: &str) -> Result<()> {
        use nix::mount::MsFlags;
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options),
        )?;
        Ok(())
    }

    fn is_mounted(&self, path: &Path) -> bool {
        crate::rootfs::is_mounted(path)
    }

    fn unmount(&self, path: &Path) {
        let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
    }

    fn exec_session<'a>(
        &'a self,
        id: &'a str,
        req: &'a Request,
        scratch: &'a Path,
    ) -> BoxFuture<'a, Result<Session>> {
        crate::session::exec(&self.runc, id, req, scratch).boxed()
    }

    fn attach<'a>(&'a self, bundle: &'a Path, req: &'a Request) -> BoxFuture<'a, Result<Session>> {
        crate::session::attach(bundle, req).boxed()
    }

    fn connect(
        &self,
        netns: Option<PathBuf>,
        port: u16,
    ) -> BoxFuture<'static, std::result::Result<TcpStream, String>> {
        crate::session::connect(netns, port).boxed()
    }
}
