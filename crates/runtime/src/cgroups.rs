//! Which cgroup version the host runs, and the few reads, limits and removals the agent needs
//! beyond what the OCI runtime does itself (it creates and limits the containers' groups;
//! the agent limits the pods' groups above them).

use std::path::{Path, PathBuf};

/// The host's cgroup layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One hierarchy per controller.
    V1,
    /// v1 controllers, with an empty v2 hierarchy at `/sys/fs/cgroup/unified` (no systemd
    /// here; crun refuses this layout).
    Hybrid,
    /// The unified hierarchy.
    V2,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::V1 => "cgroup v1",
            Mode::Hybrid => "cgroup v1 (hybrid)",
            Mode::V2 => "cgroup v2",
        })
    }
}

/// Reads the host's layout from `/sys/fs/cgroup`.
pub fn detect() -> Mode {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        Mode::V2
    } else if root.join("unified/cgroup.controllers").exists() {
        Mode::Hybrid
    } else {
        Mode::V1
    }
}

/// The mount points of every cgroup hierarchy, v1 and v2, from `/proc/self/mountinfo`: read
/// once, as they do not change while the host runs (and the mount table grows with the pods).
fn hierarchies() -> Vec<PathBuf> {
    static HIERARCHIES: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();
    HIERARCHIES
        .get_or_init(|| {
            let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            info.lines()
                .filter_map(|l| {
                    let (left, right) = l.split_once(" - ")?;
                    let fstype = right.split_whitespace().next()?;
                    let mount = left.split_whitespace().nth(4)?;
                    (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mount))
                })
                .collect()
        })
        .clone()
}

/// The directories of the group `path` (e.g. `/rudder/pod123`) in every hierarchy that has it.
fn dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    hierarchies()
        .into_iter()
        .map(|h| h.join(rel))
        .filter(|d| d.is_dir())
        .collect()
}

/// The limits of a pod's group, the sums of its containers' (see the agent's `pod_limits`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes, when every container has a memory limit.
    pub memory: Option<u64>,
    /// CPU shares (v1; v2's weight is derived from them).
    pub cpu_shares: u64,
    /// CPU quota and period in microseconds, when every container has a CPU limit.
    pub cpu_quota: Option<(u64, u64)>,
}

/// Creates the group `path` in the memory and cpu hierarchies (v1) or the unified one (v2,
/// enabling the controllers on the way down) and sets `limits` on it.
pub fn limit(path: &str, limits: &Limits) -> std::io::Result<()> {
    let rel = path.trim_start_matches('/');
    for root in hierarchies() {
        let v2 = root.join("cgroup.controllers").exists();
        let v1_memory = root.join("memory.limit_in_bytes").exists();
        let v1_cpu = root.join("cpu.shares").exists();
        if v2 {
            let controllers = std::fs::read_to_string(root.join("cgroup.controllers"))?;
            if !controllers.contains("memory") {
                // Hybrid's unified hierarchy holds no controllers.
                continue;
            }
            let mut dir = root.clone();
            for part in rel.split('/') {
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+memory +cpu");
                dir = dir.join(part);
                std::fs::create_dir_all(&dir)?;
            }
            let memory = limits.memory.map_or("max".to_string(), |m| m.to_string());
            std::fs::write(dir.join("memory.max"), memory)?;
            // v1 shares 2..262144 onto v2 weights 1..10000, as the kubelet maps them.
            let weight = 1 + ((limits.cpu_shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
            std::fs::write(dir.join("cpu.weight"), weight.to_string())?;
            let max = match limits.cpu_quota {
                Some((quota, period)) => format!("{quota} {period}"),
                None => "max 100000".to_string(),
            };
            std::fs::write(dir.join("cpu.max"), max)?;
        } else if v1_memory {
            let dir = root.join(rel);
            std::fs::create_dir_all(&dir)?;
            let memory = limits.memory.map_or("-1".to_string(), |m| m.to_string());
            std::fs::write(dir.join("memory.limit_in_bytes"), memory)?;
        } else if v1_cpu {
            let dir = root.join(rel);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("cpu.shares"), limits.cpu_shares.to_string())?;
            if let Some((quota, period)) = limits.cpu_quota {
                std::fs::write(dir.join("cpu.cfs_period_us"), period.to_string())?;
                std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
            }
        }
    }
    Ok(())
}

/// Removes the group `path` and the empty groups below it from every hierarchy. Groups that
/// still hold processes stay (the kernel refuses), and are reported.
pub fn remove(path: &str) -> Vec<String> {
    let mut left = Vec::new();
    for dir in dirs(path) {
        remove_tree(&dir, &mut left);
    }
    left
}

/// Removes the group `path` itself if it is empty (no tasks, no child groups), in every
/// hierarchy, leaving its children alone: for parents that several agents share.
pub fn remove_if_empty(path: &str) {
    for dir in dirs(path) {
        let _ = std::fs::remove_dir(dir);
    }
}

fn remove_tree(dir: &Path, left: &mut Vec<String>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path(), left);
            }
        }
    }
    if let Err(e) = std::fs::remove_dir(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        left.push(format!("{}: {e}", dir.display()));
    }
}

/// Whether the kernel's OOM killer killed a process of the group `path`.
pub fn oom_killed(path: &str) -> bool {
    let count = |file: PathBuf, key: &str| {
        std::fs::read_to_string(file).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
        })
    };
    dirs(path).into_iter().any(|d| {
        count(d.join("memory.events"), "oom_kill ")
            .or_else(|| count(d.join("memory.oom_control"), "oom_kill "))
            .is_some_and(|n| n > 0)
    })
}

/// CPU and memory use of a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Total CPU time, nanoseconds.
    pub cpu_nanos: u64,
    /// Memory in use less inactive file pages (the kubelet's working set), bytes.
    pub working_set_bytes: u64,
}

/// Reads a group's CPU and memory use, v1 or v2.
pub fn usage(path: &str) -> Usage {
    let mut u = Usage::default();
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let stat = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
    };
    for d in dirs(path) {
        let v1_cpu = read(d.join("cpuacct.usage"));
        if let Ok(n) = v1_cpu.trim().parse::<u64>() {
            u.cpu_nanos = n;
        }
        if let Some(usec) = stat(&read(d.join("cpu.stat")), "usage_usec ") {
            u.cpu_nanos = usec * 1000;
        }
        let v1_mem = read(d.join("memory.usage_in_bytes"));
        if let Ok(n) = v1_mem.trim().parse::<u64>() {
            let inactive = stat(&read(d.join("memory.stat")), "total_inactive_file ").unwrap_or(0);
            u.working_set_bytes = n.saturating_sub(inactive);
        }
        let v2_mem = read(d.join("memory.current"));
        if let Ok(n) = v2_mem.trim().parse::<u64>() {
            let inactive = stat(&read(d.join("memory.stat")), "inactive_file ").unwrap_or(0);
            u.working_set_bytes = n.saturating_sub(inactive);
        }
    }
    u
}
