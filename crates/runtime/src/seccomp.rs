//! Seccomp profiles for `config.json`: the runtime's default (`seccompProfile: RuntimeDefault`)
//! and profiles read from files (`Localhost`).
//!
//! The default profile refuses, with EPERM, the system calls Docker's and containerd's default
//! profiles refuse: those that reach outside the container (kernel modules, the clock, keyrings,
//! mounts, namespaces, tracing other processes, BPF, reboot and the like). A call that one of the
//! container's capabilities grants stays allowed, as in those profiles. It is written as a deny
//! list over an allowing default, so every other system call, including ones newer than this
//! list, works; the filter also covers the 32-bit ABIs, which would otherwise bypass it.

use serde_json::{Value, json};

/// Calls refused unless the container holds the capability (`None`: always refused).
const REFUSED: &[(Option<&str>, &[&str])] = &[
    (
        None,
        &[
            "create_module",
            "get_kernel_syms",
            "query_module",
            "nfsservctl",
            "uselib",
            "ustat",
            "sysfs",
            "_sysctl",
            "vm86",
            "vm86old",
            "kexec_file_load",
            "kexec_load",
            "userfaultfd",
            "add_key",
            "keyctl",
            "request_key",
            "lookup_dcookie",
        ],
    ),
    (
        Some("CAP_SYS_ADMIN"),
        &[
            "mount",
            "umount",
            "umount2",
            "unshare",
            "setns",
            "pivot_root",
            "swapon",
            "swapoff",
            "quotactl",
            "quotactl_fd",
            "name_to_handle_at",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "open_tree",
            "move_mount",
            "mount_setattr",
            "fanotify_init",
        ],
    ),
    (
        Some("CAP_SYS_MODULE"),
        &["init_module", "finit_module", "delete_module"],
    ),
    (Some("CAP_SYS_BOOT"), &["reboot"]),
    (Some("CAP_SYS_PACCT"), &["acct"]),
    (Some("CAP_SYS_RAWIO"), &["iopl", "ioperm"]),
    (
        Some("CAP_SYS_TIME"),
        &[
            "settimeofday",
            "stime",
            "clock_settime",
            "clock_settime64",
            "adjtimex",
            "clock_adjtime",
            "clock_adjtime64",
        ],
    ),
    (
        Some("CAP_SYS_PTRACE"),
        &[
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "kcmp",
            "pidfd_getfd",
        ],
    ),
    (
        Some("CAP_SYS_NICE"),
        &["mbind", "set_mempolicy", "get_mempolicy", "move_pages"],
    ),
    (Some("CAP_DAC_READ_SEARCH"), &["open_by_handle_at"]),
    (Some("CAP_SYSLOG"), &["syslog"]),
    (Some("CAP_BPF"), &["bpf"]),
    (Some("CAP_PERFMON"), &["perf_event_open"]),
];

/// The `clone` flags that make new namespaces.
const NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The architectures a filter covers on this host: its own and the ones it can also run.
fn architectures() -> Vec<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64" => vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "x86" => vec!["SCMP_ARCH_X86"],
        "arm" => vec!["SCMP_ARCH_ARM"],
        "riscv64" => vec!["SCMP_ARCH_RISCV64"],
        "s390x" => vec!["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
        "powerpc64" => vec!["SCMP_ARCH_PPC64LE"],
        _ => vec![],
    }
}

/// The default profile for a container holding `capabilities` (`CAP_` names), as the
/// `linux.seccomp` object of `config.json`.
pub fn runtime_default(capabilities: &[String]) -> Value {
    let holds = |cap: &str| capabilities.iter().any(|c| c == cap);
    let mut names: Vec<&str> = REFUSED
        .iter()
        .filter(|(cap, _)| cap.is_none_or(|c| !holds(c)))
        .flat_map(|(_, calls)| calls.iter().copied())
        .collect();
    names.sort_unstable();
    let mut syscalls = vec![json!({"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM})];
    if !holds("CAP_SYS_ADMIN") {
        // New namespaces through clone: refused flag by flag (a rule's arguments all have to
        // match, so one rule per flag). clone3 passes its flags in memory a filter cannot read,
        // so it gets ENOSYS, on which C libraries fall back to clone.
        for flag in NAMESPACE_FLAGS {
            syscalls.push(json!({
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [{"index": clone_flags_index(), "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }));
        }
        syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": syscalls,
    })
}

/// Which argument of `clone` holds the flags (s390 swaps the first two).
fn clone_flags_index() -> u32 {
    if std::env::consts::ARCH == "s390x" {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(profile: &Value) -> Vec<String> {
        profile["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_default_profile_refuses_what_the_capabilities_do_not_grant() {
        let defaults: Vec<String> = crate::spec::DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .collect();
        let p = runtime_default(&defaults);
        assert_eq!(p["defaultAction"], "SCMP_ACT_ALLOW");
        let names = refused(&p);
        for call in [
            "mount",
            "unshare",
            "keyctl",
            "ptrace",
            "bpf",
            "reboot",
            "init_module",
        ] {
            assert!(names.contains(&call.to_string()), "{call}");
        }
        // One rule per namespace flag, and clone3.
        assert_eq!(
            p["syscalls"].as_array().unwrap().len(),
            1 + NAMESPACE_FLAGS.len() + 1
        );

        let mut admin = defaults.clone();
        admin.extend(["CAP_SYS_ADMIN".to_string(), "CAP_SYS_PTRACE".to_string()]);
        let p = runtime_default(&admin);
        let names = refused(&p);
        assert!(!names.contains(&"mount".to_string()));
        assert!(!names.contains(&"ptrace".to_string()));
        // Never granted by a capability.
        assert!(names.contains(&"keyctl".to_string()));
        assert_eq!(p["syscalls"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn profiles_fit_the_oci_configuration() {
        let p = runtime_default(&[]);
        let parsed: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(p).unwrap();
        assert!(!parsed.syscalls().as_ref().unwrap().is_empty());
    }
}
