//! The OCI runtime configuration (`config.json`) of one container, from what the agent
//! decided: process, user, mounts, namespaces, cgroup and resources, capabilities, seccomp.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};
use oci_spec::runtime::{Linux, LinuxNamespace, Mount, Process, Spec};
use serde_json::json;

/// Capabilities a container gets unless it drops or adds some: the set containerd and CRI-O
/// grant by default.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// One mount into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Volume {
    /// A bind mount of a host path.
    Bind {
        /// On the host.
        source: PathBuf,
        /// In the container.
        destination: String,
        /// Mounted read-only.
        read_only: bool,
    },
    /// A tmpfs.
    Tmpfs {
        /// In the container.
        destination: String,
        /// Its size limit, bytes.
        size: Option<u64>,
    },
}

/// Resource limits, enforced through the container's cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// cpu.shares (v1) / converted weight (v2): from the cpu request.
    pub cpu_shares: Option<u64>,
    /// CFS quota per period, microseconds: from the cpu limit.
    pub cpu_quota: Option<i64>,
    /// CFS period, microseconds.
    pub cpu_period: Option<u64>,
    /// Memory limit, bytes.
    pub memory_limit: Option<i64>,
    /// Maximum number of processes.
    pub pids_limit: Option<i64>,
}

/// Everything that goes into one container's `config.json`.
#[derive(Debug, Clone, Default)]
pub struct Container {
    /// The command and its arguments, resolved.
    pub args: Vec<String>,
    /// `NAME=value` pairs.
    pub env: Vec<String>,
    /// The working directory.
    pub cwd: String,
    /// User and group ids, and supplementary groups.
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// The pod's hostname (used when the container has its own UTS namespace).
    pub hostname: String,
    /// The mounted root filesystem.
    pub rootfs: PathBuf,
    /// `readOnlyRootFilesystem`.
    pub read_only_rootfs: bool,
    /// Namespaces to join, by path; a kind absent here and not listed in `host` is new.
    pub join: Vec<(String, PathBuf)>,
    /// Namespace kinds shared with the host (`network`, `pid`, `ipc`, `uts`).
    pub host: Vec<String>,
    /// Mounts beyond the defaults.
    pub volumes: Vec<Volume>,
    /// The container's cgroup, e.g. `/rudder/besteffort/pod<uid>/<id>`.
    pub cgroups_path: String,
    /// Limits.
    pub resources: Resources,
    /// `privileged`: every capability, every device, nothing masked.
    pub privileged: bool,
    /// Capabilities added to the defaults.
    pub cap_add: Vec<String>,
    /// Capabilities dropped from the defaults (`ALL` drops every one).
    pub cap_drop: Vec<String>,
    /// `no_new_privs` (`allowPrivilegeEscalation: false`).
    pub no_new_privileges: bool,
    /// Runs on a terminal (`tty: true`; runc then needs a console socket).
    pub terminal: bool,
    /// The seccomp filter.
    pub seccomp: Seccomp,
    /// Kernel parameters set in the container's namespaces (`name` with dots, value).
    pub sysctls: Vec<(String, String)>,
}

/// A container's seccomp filter (`seccompProfile`).
#[derive(Debug, Clone, Default)]
pub enum Seccomp {
    /// None (`Unconfined`, and what a pod gets without a profile, as upstream's kubelet gives).
    #[default]
    Unconfined,
    /// The runtime's default ([`crate::seccomp::runtime_default`]).
    RuntimeDefault,
    /// A profile of one's own (`Localhost`): a `linux.seccomp` object.
    Profile(serde_json::Value),
}

/// The capability set after `add` and `drop` (Kubernetes names, without `CAP_`).
fn capabilities(add: &[String], drop: &[String], privileged: bool) -> Vec<String> {
    let norm = |c: &str| {
        let c = c.to_ascii_uppercase();
        if c.starts_with("CAP_") {
            c
        } else {
            format!("CAP_{c}")
        }
    };
    if privileged {
        return ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    }
    let drop_all = drop.iter().any(|d| d.eq_ignore_ascii_case("ALL"));
    let dropped: Vec<String> = drop.iter().map(|d| norm(d)).collect();
    let mut caps: Vec<String> = if drop_all {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !dropped.contains(c))
            .collect()
    };
    if add.iter().any(|a| a.eq_ignore_ascii_case("ALL")) {
        return ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    }
    for a in add {
        let a = norm(a);
        if !caps.contains(&a) {
            caps.push(a);
        }
    }
    caps
}

/// Every capability the kernel knows (as of Linux 5.9).
const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

impl Container {
    /// The OCI configuration.
    pub fn spec(&self) -> Result<Spec> {
        let caps = capabilities(&self.cap_add, &self.cap_drop, self.privileged);
        let process: Process = serde_json::from_value(json!({
            "terminal": self.terminal,
            "user": {"uid": self.uid, "gid": self.gid, "additionalGids": self.additional_gids},
            "args": self.args,
            "env": self.env,
            "cwd": if self.cwd.is_empty() { "/" } else { &self.cwd },
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            // Limits are inherited from the agent, as containerd's defaults leave them.
            "rlimits": [],
            "noNewPrivileges": self.no_new_privileges,
            "oomScoreAdj": 0,
        }))
        .context("building the process")?;
        let mut spec = Spec::default();
        spec.set_process(Some(process));
        // The host's UTS namespace keeps the host's name (runc refuses to set one there).
        let host_uts = self.host.iter().any(|h| h == "uts");
        spec.set_hostname((!host_uts).then(|| self.hostname.clone()));
        spec.set_root(Some(serde_json::from_value(
            json!({"path": self.rootfs, "readonly": self.read_only_rootfs}),
        )?));
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        if self.host.iter().any(|h| h == "network") {
            // /sys of the host's network namespace: mount it read-only, as runc's own default.
            mounts.retain(|m| m.destination() != Path::new("/sys"));
            mounts.push(serde_json::from_value(
                json!({"destination": "/sys", "type": "bind",
                "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}),
            )?);
        }
        for v in &self.volumes {
            let m: Mount = match v {
                Volume::Bind {
                    source,
                    destination,
                    read_only,
                } => {
                    let mut options = vec!["rbind", "rprivate"];
                    if *read_only {
                        options.push("ro");
                    }
                    serde_json::from_value(json!({"destination": destination, "type": "bind",
                        "source": source, "options": options}))?
                }
                Volume::Tmpfs { destination, size } => {
                    let mut options =
                        vec!["nosuid".to_string(), "nodev".into(), "mode=1777".into()];
                    if let Some(s) = size {
                        options.push(format!("size={s}"));
                    }
                    serde_json::from_value(json!({"destination": destination, "type": "tmpfs",
                        "source": "tmpfs", "options": options}))?
                }
            };
            mounts.retain(|old| old.destination() != m.destination());
            mounts.push(m);
        }
        spec.set_mounts(Some(mounts));

        let mut namespaces: Vec<LinuxNamespace> = Vec::new();
        for kind in ["pid", "network", "ipc", "uts", "mount"] {
            if self.host.iter().any(|h| h == kind) {
                continue;
            }
            let path = self
                .join
                .iter()
                .find(|(k, _)| k == kind)
                .map(|(_, p)| p.clone());
            namespaces.push(serde_json::from_value(json!({"type": kind, "path": path}))?);
        }
        let r = &self.resources;
        let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
        if self.privileged {
            resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
        }
        if r.cpu_shares.is_some() || r.cpu_quota.is_some() {
            resources["cpu"] =
                json!({"shares": r.cpu_shares, "quota": r.cpu_quota, "period": r.cpu_period});
        }
        if let Some(limit) = r.memory_limit {
            resources["memory"] = json!({"limit": limit, "swap": limit});
        }
        if let Some(limit) = r.pids_limit {
            resources["pids"] = json!({"limit": limit});
        }
        let mut linux: Linux = Linux::default();
        linux.set_namespaces(Some(namespaces));
        linux.set_cgroups_path(Some(PathBuf::from(&self.cgroups_path)));
        linux.set_resources(Some(serde_json::from_value(resources)?));
        if self.privileged {
            linux.set_masked_paths(None);
            linux.set_readonly_paths(None);
        }
        // Privileged containers run without a filter, as with containerd and CRI-O.
        let seccomp = match &self.seccomp {
            _ if self.privileged => None,
            Seccomp::Unconfined => None,
            Seccomp::RuntimeDefault => Some(crate::seccomp::runtime_default(&caps)),
            Seccomp::Profile(p) => Some(p.clone()),
        };
        if let Some(profile) = seccomp {
            linux.set_seccomp(Some(
                serde_json::from_value(profile).context("reading the seccomp profile")?,
            ));
        }
        if !self.sysctls.is_empty() {
            linux.set_sysctl(Some(self.sysctls.iter().cloned().collect()));
        }
        spec.set_linux(Some(linux));
        Ok(spec)
    }

    /// Writes the bundle's `config.json`.
    pub fn write(&self, bundle: &Path) -> Result<()> {
        let spec = self.spec()?;
        std::fs::create_dir_all(bundle)?;
        let text = serde_json::to_vec_pretty(&spec)?;
        let tmp = bundle.join("config.json.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, bundle.join("config.json"))?;
        Ok(())
    }
}

/// cpu.shares from a cpu request in millicores, as the kubelet converts it (2 minimum).
pub fn cpu_shares(millis: u64) -> u64 {
    (millis * 1024 / 1000).max(2)
}

/// The CFS quota for a cpu limit in millicores over a 100 ms period (1 ms minimum).
pub fn cpu_quota(millis: u64, period: u64) -> i64 {
    ((millis * period / 1000) as i64).max(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_follow_add_and_drop() {
        let caps = capabilities(
            &["NET_ADMIN".into()],
            &["chown".into(), "KILL".into()],
            false,
        );
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert!(!caps.contains(&"CAP_KILL".to_string()));
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len() - 1);
        assert_eq!(
            capabilities(&["SYS_TIME".into()], &["ALL".into()], false),
            ["CAP_SYS_TIME"]
        );
        assert_eq!(capabilities(&[], &[], true).len(), ALL_CAPABILITIES.len());
    }

    #[test]
    fn the_spec_joins_the_pod_namespaces_and_limits_the_container() {
        let c = Container {
            args: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["A=1".into()],
            rootfs: "/r".into(),
            join: vec![("network".into(), "/pod/ns/net".into())],
            host: vec!["ipc".into()],
            cgroups_path: "/rudder/pod1/c1".into(),
            resources: Resources {
                memory_limit: Some(64 << 20),
                cpu_shares: Some(cpu_shares(250)),
                ..Default::default()
            },
            volumes: vec![Volume::Tmpfs {
                destination: "/cache".into(),
                size: Some(1 << 20),
            }],
            ..Default::default()
        };
        let v = serde_json::to_value(c.spec().unwrap()).unwrap();
        assert_eq!(v["process"]["args"][2], "echo hi");
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(
            ns.iter()
                .any(|n| n["type"] == "network" && n["path"] == "/pod/ns/net")
        );
        assert!(!ns.iter().any(|n| n["type"] == "ipc"));
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(v["linux"]["resources"]["cpu"]["shares"], 256);
        assert!(
            v["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["destination"] == "/cache")
        );
        assert_eq!(cpu_quota(500, 100_000), 50_000);
        assert!(v["linux"].get("seccomp").is_none());
    }

    #[test]
    fn host_namespaces_keep_the_host_name_and_privileged_containers_are_unfiltered() {
        let mut c = Container {
            hostname: "web".into(),
            host: vec!["network".into(), "uts".into()],
            seccomp: Seccomp::RuntimeDefault,
            ..Default::default()
        };
        let v = serde_json::to_value(c.spec().unwrap()).unwrap();
        assert!(v.get("hostname").is_none(), "{v}");
        assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
        c.privileged = true;
        let v = serde_json::to_value(c.spec().unwrap()).unwrap();
        assert!(v["linux"].get("seccomp").is_none());
    }
}
