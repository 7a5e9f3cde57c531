//! A pod's shared namespaces (network, UTS, IPC), kept alive without a process by bind
//! mounting them onto files, as `ip netns add` does. Containers join them by path.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// Runs `f` on a thread of its own that has entered the network namespace at `path` (an
/// `ip netns` or pod namespace file), and returns its result. Only that thread changes
/// namespace; sockets it opens stay in the namespace after it ends.
pub fn in_network<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let path = path.to_path_buf();
    std::thread::spawn(move || -> Result<T> {
        nix::sched::setns(file, CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering {}", path.display()))?;
        Ok(f())
    })
    .join()
    .map_err(|_| crate::Error::Panicked("a thread in a network namespace panicked"))?
}

/// Which of the pod's namespaces are its own (the rest are the host's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Own {
    /// The network namespace (false for `hostNetwork`).
    pub net: bool,
    /// The UTS namespace, where the hostname is the pod's name (false with `hostNetwork`).
    pub uts: bool,
    /// The IPC namespace (false for `hostIPC`).
    pub ipc: bool,
}

/// The namespace files of one pod, under its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The network namespace, if the pod has its own.
    pub net: Option<PathBuf>,
    /// The UTS namespace.
    pub uts: Option<PathBuf>,
    /// The IPC namespace.
    pub ipc: Option<PathBuf>,
}

impl Paths {
    /// Where the namespaces of a pod with directory `dir` live (whether or not they exist).
    pub fn under(dir: &Path, own: Own) -> Paths {
        let at = |yes: bool, name: &str| yes.then(|| dir.join("ns").join(name));
        Paths {
            net: at(own.net, "net"),
            uts: at(own.uts, "uts"),
            ipc: at(own.ipc, "ipc"),
        }
    }

    /// Whether every namespace the pod should own is in place.
    pub fn exist(&self) -> bool {
        let paths: Vec<&Path> = [&self.net, &self.uts, &self.ipc]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect();
        crate::rootfs::all_mounted(&paths)
    }
}

/// Creates the pod's namespaces under `dir/ns`, setting `hostname` in its UTS namespace.
/// Runs in a thread of its own: unsharing changes the calling thread only.
pub fn create(dir: &Path, own: Own, hostname: &str) -> Result<Paths> {
    let paths = Paths::under(dir, own);
    std::fs::create_dir_all(dir.join("ns"))
        .with_context(|| format!("creating {}/ns", dir.display()))?;
    let (p, host) = (paths.clone(), hostname.to_string());
    std::thread::spawn(move || -> Result<()> {
        let mut flags = CloneFlags::empty();
        for (path, flag) in [
            (&p.net, CloneFlags::CLONE_NEWNET),
            (&p.uts, CloneFlags::CLONE_NEWUTS),
            (&p.ipc, CloneFlags::CLONE_NEWIPC),
        ] {
            if path.is_some() {
                flags |= flag;
            }
        }
        if flags.is_empty() {
            return Ok(());
        }
        nix::sched::unshare(flags).context("unshare")?;
        if p.uts.is_some() {
            nix::unistd::sethostname(&host).context("sethostname")?;
        }
        for (path, name) in [(&p.net, "net"), (&p.uts, "uts"), (&p.ipc, "ipc")] {
            if let Some(path) = path {
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                let source = format!("/proc/thread-self/ns/{name}");
                nix::mount::mount(
                    Some(source.as_str()),
                    path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .with_context(|| {
                    format!("bind mounting the {name} namespace onto {}", path.display())
                })?;
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| crate::Error::Panicked("the namespace thread panicked"))??;
    Ok(paths)
}

/// Unmounts and removes the namespace files under `dir/ns`; the namespaces go when their
/// last process does. Absent files are fine.
pub fn remove(dir: &Path) -> Result<()> {
    let ns = dir.join("ns");
    for name in ["net", "uts", "ipc"] {
        let path = ns.join(name);
        if !path.exists() {
            continue;
        }
        match nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(e).with_context(|| format!("unmounting {}", path.display())),
        }
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    let _ = std::fs::remove_dir(&ns);
    Ok(())
}
