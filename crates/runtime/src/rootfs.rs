//! Container root filesystems: an overlayfs snapshot over the image's unpacked layers, with
//! the container's writes in a directory of its own, removed with the container.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result, bail};
use nix::mount::{MntFlags, MsFlags};

/// The directories of one container's snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The mounted root filesystem.
    pub rootfs: PathBuf,
    upper: PathBuf,
    work: PathBuf,
}

impl Snapshot {
    /// The snapshot of the container whose directory is `dir`.
    pub fn under(dir: &Path) -> Snapshot {
        Snapshot {
            rootfs: dir.join("rootfs"),
            upper: dir.join("upper"),
            work: dir.join("work"),
        }
    }

    /// Mounts the layers (bottom first) with a fresh upper directory.
    pub fn mount(&self, layers: &[PathBuf]) -> Result<()> {
        if layers.is_empty() {
            bail!("an image without layers has no root filesystem");
        }
        for d in [&self.rootfs, &self.upper, &self.work] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        // overlayfs lists the lower directories top first.
        let lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|l| l.display().to_string())
            .collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            self.upper.display(),
            self.work.display()
        );
        nix::mount::mount(
            Some("overlay"),
            &self.rootfs,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .with_context(|| {
            format!(
                "mounting the overlay root filesystem at {}",
                self.rootfs.display()
            )
        })
    }

    /// Unmounts the root filesystem (if mounted) and removes the snapshot's directories.
    pub fn remove(&self) -> Result<()> {
        match nix::mount::umount2(&self.rootfs, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("unmounting {}", self.rootfs.display()));
            }
        }
        for d in [&self.rootfs, &self.upper, &self.work] {
            match std::fs::remove_dir_all(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", d.display())),
            }
        }
        Ok(())
    }
}

/// The mount points of this process's mount namespace, from `/proc/self/mountinfo`.
fn mount_points() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(PathBuf::from))
        .collect()
}

/// Whether `path` is a mount point (a bind-mounted namespace file or a tmpfs volume is).
pub fn is_mounted(path: &Path) -> bool {
    all_mounted(&[path])
}

/// Whether every one of `paths` is a mount point (the mount table is read once: it grows with
/// the pods on the node).
pub fn all_mounted(paths: &[&Path]) -> bool {
    let points: std::collections::HashSet<PathBuf> = mount_points().into_iter().collect();
    paths.iter().all(|p| {
        p.canonicalize()
            .is_ok_and(|target| points.contains(&target))
    })
}

/// Unmounts everything mounted at or below `dir` (deepest first), for cleaning up after a
/// crash or on `rudder reset`. Returns the mount points it unmounted.
pub fn unmount_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let mut mounts: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(&dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    mounts.dedup();
    mounts
        .into_iter()
        .filter(|m| nix::mount::umount2(m, MntFlags::MNT_DETACH).is_ok())
        .collect()
}
