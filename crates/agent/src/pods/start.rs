//! One attempt of a container: its environment, mounts, user, namespaces and OCI
//! configuration worked out from the pod, then the container created through the monitor
//! and started, and its postStart hook run.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, Pod, PodSecurityContext, SeccompProfile, SecurityContext, VolumeMount,
};
use kube::ResourceExt;

use super::resources::{pod_cgroup, resources};
use super::sandbox::{own_namespaces, pod_hostname};
use super::sysctl::sysctls;
use super::{Ctx, PodState, Waiting, ephemeral_containers, event};
use crate::containers::{self, Meta, Record};
use crate::env::Sources;
use crate::gate::Pass;
use crate::volumes::HostVolume;

/// One attempt of a container being made: what its events and errors are about.
struct Attempt<'a> {
    ctx: &'a Ctx,
    pod: &'a Pod,
    c: &'a Container,
    init: bool,
}

impl Attempt<'_> {
    /// Records an event about the container.
    fn event(&self, warning: bool, reason: &str, message: String) {
        event(
            self.ctx, self.pod, self.c, self.init, warning, reason, message,
        );
    }

    /// A configuration the container cannot run with: a `Failed` event, and the container
    /// waits in `CreateContainerConfigError`.
    fn config_error(&self, msg: String) -> Waiting {
        self.event(true, "Failed", format!("Error: {msg}"));
        Waiting {
            reason: "CreateContainerConfigError".into(),
            message: Some(msg),
        }
    }
}

/// The container could not be created on the host: it waits in `CreateContainerError`.
fn create_error(msg: String) -> Waiting {
    Waiting {
        reason: "CreateContainerError".into(),
        message: Some(msg),
    }
}

/// The container is on its way: it waits in `ContainerCreating`.
fn creating() -> Waiting {
    Waiting {
        reason: "ContainerCreating".into(),
        message: None,
    }
}

impl PodState {
    /// Creates and starts one attempt of container `c`.
    pub(super) async fn start(
        &mut self,
        ctx: &Ctx,
        pod: &Pod,
        c: &Container,
        init: bool,
        attempt: u32,
    ) -> Result<Record, Waiting> {
        let at = Attempt { ctx, pod, c, init };
        self.waiting.insert(c.name.clone(), creating());
        let img = self.image(ctx, pod, c, init).await?;
        let pass = ctx.gate.enter(self.arrival).await;
        let sandbox = self.sandbox.clone().ok_or_else(creating)?;
        let (env, vols) = self.environment(&at, &img, sandbox.ip()).await?;
        let vars = crate::env::as_map(&env);
        let args = command(c, &img, &vars);
        if args.is_empty() {
            return Err(at.config_error("no command specified".into()));
        }
        let (uid, gid, additional_gids) = user(pod, c, &img).map_err(|m| at.config_error(m))?;
        let id = containers::new_id();
        let dir = containers::dir(ctx.data(), &id);
        let record = Record::new(self.meta(&at, &img, &id, attempt));
        record
            .save(ctx.data())
            .map_err(|e| create_error(format!("{e:#}")))?;
        let rootfs = ctx
            .host
            .mount_rootfs(&dir, &img.layers)
            .map_err(|e| create_error(format!("{e:#}")))?;
        let volumes = self.mounts(&at, &dir, &vols, &vars)?;
        let join = self.namespaces_to_join(ctx, pod, c).await;
        let seccomp = seccomp(ctx, seccomp_profile(pod, c).as_ref()).map_err(create_error)?;
        let container = runtime::spec::Container {
            args,
            env,
            uid,
            gid,
            additional_gids,
            rootfs,
            join,
            volumes,
            cgroups_path: record.meta.cgroup.clone(),
            seccomp,
            ..oci_base(pod, c, &img)
        };
        container
            .write(&dir)
            .map_err(|e| create_error(format!("{e:#}")))?;
        self.launch(&at, record, &dir, pass, sandbox.ip()).await
    }

    /// The container's environment and the pod's volumes (set up or refreshed).
    async fn environment(
        &mut self,
        at: &Attempt<'_>,
        img: &image::Image,
        pod_ip: &str,
    ) -> Result<(Vec<String>, BTreeMap<String, HostVolume>), Waiting> {
        let (ctx, pod) = (at.ctx, at.pod);
        let sources = Sources::new(ctx.client.clone(), pod.namespace().unwrap_or_default());
        let host_ip = ctx.config.node_ip.to_string();
        let env = crate::env::build(
            pod,
            at.c,
            &img.config.env,
            &sources,
            pod_ip,
            &host_ip,
            ctx.capacity,
        )
        .await
        .map_err(|m| at.config_error(m))?;
        let downward = crate::volumes::Downward {
            pod_ip,
            host_ip: &host_ip,
            node: ctx.capacity,
        };
        match crate::volumes::ensure(&*ctx.host, pod, &ctx.pod_dir(&self.uid), &sources, downward)
            .await
        {
            Ok(vols) => {
                self.mount_error = None;
                Ok((env, vols))
            }
            Err(msg) => {
                self.mount_failed(ctx, pod, msg);
                Err(creating())
            }
        }
    }

    /// What the agent records of the attempt before it is created.
    fn meta(&self, at: &Attempt<'_>, img: &image::Image, id: &str, attempt: u32) -> Meta {
        let (ctx, pod, c) = (at.ctx, at.pod, at.c);
        let log = ctx
            .config
            .pod_log_dir
            .join(format!(
                "{}_{}_{}",
                pod.namespace().unwrap_or_default(),
                pod.name_any(),
                self.uid
            ))
            .join(&c.name)
            .join(format!("{attempt}.log"));
        Meta {
            id: id.to_string(),
            pod_uid: self.uid.clone(),
            name: c.name.clone(),
            init: at.init,
            attempt,
            image: c.image.clone().unwrap_or_default(),
            image_id: img.repo_digest.clone().unwrap_or_else(|| img.id.clone()),
            created_at: Timestamp::now().to_string(),
            started_at: None,
            cgroup: format!("{}/{id}", pod_cgroup(pod, &self.uid)),
            log,
            start_error: None,
        }
    }

    /// The container's mounts: the pod's /etc files, its termination log (in the container's
    /// directory `dir`) and its volume mounts, subpaths resolved.
    fn mounts(
        &self,
        at: &Attempt<'_>,
        dir: &Path,
        vols: &BTreeMap<String, HostVolume>,
        vars: &BTreeMap<String, String>,
    ) -> Result<Vec<runtime::spec::Volume>, Waiting> {
        let c = at.c;
        let mut volumes = Vec::new();
        let pod_dir = at.ctx.pod_dir(&self.uid);
        for (file, dest) in [
            ("hosts", "/etc/hosts"),
            ("hostname", "/etc/hostname"),
            ("resolv.conf", "/etc/resolv.conf"),
        ] {
            volumes.push(runtime::spec::Volume::Bind {
                source: pod_dir.join(file),
                destination: dest.into(),
                read_only: false,
            });
        }
        // Mode 0666, as the kubelet makes it: a container running as any user can write it.
        let term = dir.join("termination-log");
        let _ = std::fs::write(&term, b"");
        let _ = std::fs::set_permissions(&term, std::fs::Permissions::from_mode(0o666));
        volumes.push(runtime::spec::Volume::Bind {
            source: term,
            destination: c
                .termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
            read_only: false,
        });
        for m in c.volume_mounts.iter().flatten() {
            let Some(v) = vols.get(&m.name) else {
                return Err(create_error(format!(
                    "volume {:?} not found in the pod",
                    m.name
                )));
            };
            let mut source = v.path.clone();
            if let Some(sub) = sub_path(m, vars).map_err(|msg| at.config_error(msg))? {
                source = source.join(sub);
                if !source.exists() {
                    let _ = std::fs::create_dir_all(&source);
                }
            }
            volumes.push(runtime::spec::Volume::Bind {
                source,
                destination: m.mount_path.clone(),
                read_only: m.read_only.unwrap_or(false) || v.read_only,
            });
        }
        Ok(volumes)
    }

    /// The namespaces the container joins: its target's processes (an ephemeral container
    /// with a target), the pod's network, UTS and IPC namespaces.
    async fn namespaces_to_join(
        &self,
        ctx: &Ctx,
        pod: &Pod,
        c: &Container,
    ) -> Vec<(String, PathBuf)> {
        let mut join = Vec::new();
        // An ephemeral container with a target shares the target's processes.
        if let Some(target) = ephemeral_containers(pod)
            .into_iter()
            .find(|(e, _)| e.name == c.name)
            .and_then(|(_, t)| t)
            && let Some(id) = self
                .latest(&target)
                .filter(|r| r.running())
                .map(|r| r.meta.id.clone())
            && let Some(pid) = ctx.host.pid(&id).await
        {
            join.push((
                "pid".to_string(),
                PathBuf::from(format!("/proc/{pid}/ns/pid")),
            ));
        }
        let paths = runtime::namespaces::Paths::under(&ctx.pod_dir(&self.uid), own_namespaces(pod));
        for (kind, p) in [
            ("network", &paths.net),
            ("uts", &paths.uts),
            ("ipc", &paths.ipc),
        ] {
            if let Some(p) = p {
                join.push((kind.to_string(), p.clone()));
            }
        }
        join
    }

    /// Creates the container through its monitor and starts it, then runs its postStart
    /// hook. A container the runtime cannot create or start is recorded with its error.
    async fn launch(
        &self,
        at: &Attempt<'_>,
        mut record: Record,
        dir: &Path,
        pass: Pass,
        pod_ip: &str,
    ) -> Result<Record, Waiting> {
        let (ctx, c) = (at.ctx, at.c);
        let id = record.meta.id.clone();
        let create = runtime::host::Create {
            id: id.clone(),
            bundle: dir.to_path_buf(),
            log: record.meta.log.clone(),
            exit_file: containers::exit_file(ctx.data(), &id),
            stdin: c.stdin == Some(true),
            stdin_once: c.stdin_once == Some(true),
            tty: c.tty == Some(true),
        };
        match ctx.host.create(&create).await {
            Ok(()) => {}
            Err(e) => {
                let msg = format!(
                    "failed to create containerd task: failed to create shim task: OCI runtime create failed: {e:#}: unknown"
                );
                at.event(true, "Failed", format!("Error: {msg}"));
                record.meta.start_error = Some(msg);
                record.meta.started_at = Some(Timestamp::now().to_string());
                let _ = record.save(ctx.data());
                return Ok(record);
            }
        }
        at.event(false, "Created", format!("Created container: {}", c.name));
        if let Err(e) = ctx.host.start(&id).await {
            let msg = format!("{e:#}");
            at.event(true, "Failed", format!("Error: {msg}"));
            let _ = ctx.host.delete(&id).await;
            record.meta.start_error = Some(msg);
            record.meta.started_at = Some(Timestamp::now().to_string());
            let _ = record.save(ctx.data());
            return Ok(record);
        }
        record.meta.started_at = Some(Timestamp::now().to_string());
        let _ = record.save(ctx.data());
        drop(pass);
        if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref())
            && let Err(msg) = crate::probe::hook(ctx, c, &id, pod_ip, h).await
        {
            at.event(
                true,
                "FailedPostStartHook",
                format!("PostStartHook failed: {msg}"),
            );
            let _ = ctx.host.kill(&id, "KILL").await;
        }
        at.event(false, "Started", format!("Started container {}", c.name));
        Ok(record)
    }
}

/// The command line: the container's command and args (with `$(VAR)` expanded from `vars`),
/// else the image's entrypoint and cmd.
fn command(c: &Container, img: &image::Image, vars: &BTreeMap<String, String>) -> Vec<String> {
    let expand = |v: &Vec<String>| {
        v.iter()
            .map(|s| crate::env::expand(s, vars))
            .collect::<Vec<_>>()
    };
    let (mut args, cmd) = match (&c.command, &c.args) {
        (Some(command), args) => (
            expand(command),
            args.as_ref().map(expand).unwrap_or_default(),
        ),
        (None, Some(args)) => (img.config.entrypoint.clone(), expand(args)),
        (None, None) => (img.config.entrypoint.clone(), img.config.cmd.clone()),
    };
    args.extend(cmd);
    args
}

/// The container's security context and its pod's.
fn security(pod: &Pod, c: &Container) -> (SecurityContext, PodSecurityContext) {
    let sec = c.security_context.clone().unwrap_or_default();
    let pod_sec = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    (sec, pod_sec)
}

/// The user, group and supplementary groups the container runs as; an error when it would
/// run as root against its `runAsNonRoot`.
fn user(pod: &Pod, c: &Container, img: &image::Image) -> Result<(u32, u32, Vec<u32>), String> {
    let (sec, pod_sec) = security(pod, c);
    let (image_uid, image_gid) = image_user(img.config.user.as_deref().unwrap_or(""), &img.layers);
    let uid = sec
        .run_as_user
        .or(pod_sec.run_as_user)
        .map(|u| u as u32)
        .unwrap_or(image_uid);
    let gid = sec
        .run_as_group
        .or(pod_sec.run_as_group)
        .map(|g| g as u32)
        .unwrap_or(image_gid);
    if sec.run_as_non_root.or(pod_sec.run_as_non_root) == Some(true) && uid == 0 {
        return Err("container has runAsNonRoot and image will run as root".into());
    }
    let mut extra_gids: Vec<u32> = pod_sec
        .supplemental_groups
        .iter()
        .flatten()
        .map(|g| *g as u32)
        .collect();
    if let Some(fs) = pod_sec.fs_group {
        extra_gids.push(fs as u32);
    }
    Ok((uid, gid, extra_gids))
}

/// A volume mount's subpath (`subPathExpr` expanded from `vars`, else `subPath`), checked to
/// stay inside the volume; None without one.
fn sub_path(m: &VolumeMount, vars: &BTreeMap<String, String>) -> Result<Option<String>, String> {
    let sub = match (m.sub_path_expr.as_deref(), m.sub_path.as_deref()) {
        (Some(expr), _) if !expr.is_empty() => Some(crate::env::expand_sub_path(expr, vars)?),
        (_, Some(sub)) if !sub.is_empty() => Some(sub.to_string()),
        _ => None,
    };
    if let Some(sub) = &sub {
        if sub.starts_with('/') {
            return Err(format!(
                "error SubPath `{sub}` must not be an absolute path"
            ));
        }
        if sub.split('/').any(|p| p == "..") {
            return Err(format!(
                "unable to provision SubPath `{sub}`: must not contain '..'"
            ));
        }
    }
    Ok(sub)
}

/// The seccomp profile that applies: the container's, else the pod's.
fn seccomp_profile(pod: &Pod, c: &Container) -> Option<SeccompProfile> {
    let (sec, pod_sec) = security(pod, c);
    sec.seccomp_profile.or(pod_sec.seccomp_profile)
}

/// The parts of the container's OCI configuration read from the pod and the image alone:
/// working directory, hostname, the host namespaces it shares, resources, privileges,
/// terminal and sysctls. The rest is filled in as the attempt is made.
fn oci_base(pod: &Pod, c: &Container, img: &image::Image) -> runtime::spec::Container {
    let (sec, _) = security(pod, c);
    let spec = pod.spec.clone().unwrap_or_default();
    let mut host = Vec::new();
    if spec.host_network == Some(true) {
        host.extend(["network".to_string(), "uts".into()]);
    }
    if spec.host_ipc == Some(true) {
        host.push("ipc".into());
    }
    if spec.host_pid == Some(true) {
        host.push("pid".into());
    }
    let caps = sec.capabilities.clone().unwrap_or_default();
    runtime::spec::Container {
        cwd: c
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| img.config.working_dir.clone().unwrap_or_default()),
        hostname: pod_hostname(pod),
        read_only_rootfs: sec.read_only_root_filesystem.unwrap_or(false),
        host,
        resources: resources(c),
        privileged: sec.privileged.unwrap_or(false),
        cap_add: caps.add.unwrap_or_default(),
        cap_drop: caps.drop.unwrap_or_default(),
        no_new_privileges: sec.allow_privilege_escalation == Some(false),
        terminal: c.tty == Some(true),
        sysctls: sysctls(pod),
        ..Default::default()
    }
}

/// The image's `user` (`uid`, `uid:gid`, or a name looked up in its /etc/passwd).
fn image_user(user: &str, layers: &[PathBuf]) -> (u32, u32) {
    if user.is_empty() {
        return (0, 0);
    }
    let (u, g) = user
        .split_once(':')
        .map(|(u, g)| (u, Some(g)))
        .unwrap_or((user, None));
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        for l in layers.iter().rev() {
            if let Ok(text) = std::fs::read_to_string(l.join(file)) {
                for line in text.lines() {
                    let f: Vec<&str> = line.split(':').collect();
                    if f.len() >= 4 && f[0] == name {
                        return Some((f[2].parse().ok()?, f[3].parse().ok()?));
                    }
                }
            }
        }
        None
    };
    let (uid, mut gid) = match u.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) => lookup("etc/passwd", u).unwrap_or((0, 0)),
    };
    if let Some(g) = g {
        gid = g
            .parse()
            .ok()
            .or_else(|| lookup("etc/group", g).map(|x| x.0))
            .unwrap_or(gid);
    }
    (uid, gid)
}

/// The seccomp filter for a container's (or else its pod's) `seccompProfile`. `Localhost`
/// profiles are files under `<data-dir>/seccomp`, as the kubelet's under its root directory.
fn seccomp(ctx: &Ctx, profile: Option<&SeccompProfile>) -> Result<runtime::spec::Seccomp, String> {
    use runtime::spec::Seccomp;
    let Some(p) = profile else {
        return Ok(Seccomp::Unconfined);
    };
    match p.type_.as_str() {
        "RuntimeDefault" => Ok(Seccomp::RuntimeDefault),
        "Localhost" => {
            let path = ctx
                .data()
                .join("seccomp")
                .join(p.localhost_profile.as_deref().unwrap_or_default());
            let text = std::fs::read(&path)
                .map_err(|e| format!("cannot load seccomp profile {:?}: {e}", path.display()))?;
            serde_json::from_slice(&text)
                .map(Seccomp::Profile)
                .map_err(|e| format!("decoding seccomp profile {:?} failed: {e}", path.display()))
        }
        _ => Ok(Seccomp::Unconfined),
    }
}
