//! A pod's volumes on the host, under `<pod dir>/volumes/<name>`: emptyDir (a directory, or a
//! tmpfs for `medium: Memory`), hostPath (with its type checks), and configMap, secret,
//! downwardAPI and projected volumes written with upstream's atomic-swap layout (files are
//! symlinks into `..data`, which points at a timestamped directory replaced whole on change).
//! A projected `serviceAccountToken` source is a token from the TokenRequest API, bound to the
//! pod, asked for again once 80% of its life is gone (the volumes are refreshed every ten
//! seconds).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, HostPathVolumeSource, KeyToPath, PersistentVolume, Pod,
    ServiceAccountTokenProjection, Volume,
};
use runtime::host::Host;

use crate::env::{Allocatable, Sources};

/// Where a volume is on the host, and whether it is read-only to containers anyway.
#[derive(Debug, Clone)]
pub(crate) struct HostVolume {
    pub(crate) path: PathBuf,
    pub(crate) read_only: bool,
}

fn volumes_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes")
}

/// Files of a projected volume: relative path -> (content, mode).
type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// What the files of a downwardAPI item may refer to besides the pod: its IPs and the node's
/// allocatable resources.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Downward<'a> {
    pub(crate) pod_ip: &'a str,
    pub(crate) host_ip: &'a str,
    pub(crate) node: Allocatable,
}

/// Group permissions upstream's `SetVolumeOwnership` adds (`pkg/volume/volume_linux.go`):
/// read and write (`rwMask`), read only for a read-only volume (`roMask`).
const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
/// Added to directories, with the setgid bit (new files inherit the group).
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// The mode upstream's `changeFilePermission` gives a file or directory of a volume owned by
/// the pod's fsGroup: the current mode with group read (and write unless the volume is
/// read-only) added; directories also get group search and the setgid bit.
fn fs_group_mode(mode: u32, is_dir: bool, read_only: bool) -> u32 {
    let mut mask = if read_only { RO_MASK } else { RW_MASK };
    if is_dir {
        mask |= SETGID | EXEC_MASK;
    }
    (mode & 0o7777) | mask
}

/// Gives everything under `dir` (itself included) to group `gid` with [`fs_group_mode`], as
/// upstream's `SetVolumeOwnership` walks a volume: symlinks are re-owned but never chmodded
/// (that would change their target's mode) nor followed.
fn set_ownership(path: &Path, gid: u32, read_only: bool) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    // Failures are logged and the walk goes on, as upstream's.
    if let Err(e) = std::os::unix::fs::lchown(path, None, Some(gid)) {
        tracing::warn!(path = %path.display(), "lchown failed: {e}");
    }
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = fs_group_mode(meta.permissions().mode(), meta.is_dir(), read_only);
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        tracing::warn!(path = %path.display(), "chmod failed: {e}");
    }
    if meta.is_dir() {
        for e in std::fs::read_dir(path)? {
            set_ownership(&e?.path(), gid, read_only)?;
        }
    }
    Ok(())
}

/// The pod's fsGroup, if it has one.
fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()?
        .security_context
        .as_ref()?
        .fs_group
        .map(|g| g as u32)
}

fn items(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    mode: u32,
    what: &str,
) -> Result<Files, String> {
    let mut files = Files::new();
    match items {
        Some(items) if !items.is_empty() => {
            for i in items {
                let Some(v) = data.get(&i.key) else {
                    return Err(
                        format!("configmap references non-existent config key: {}", i.key)
                            .replace("configmap", what),
                    );
                };
                let m = i.mode.map(|m| m as u32).unwrap_or(mode);
                files.insert(i.path.clone(), (v.clone(), m));
            }
        }
        _ => {
            for (k, v) in data {
                files.insert(k.clone(), (v.clone(), mode));
            }
        }
    }
    Ok(files)
}

/// The files of a configMap, secret, downwardAPI or projected volume (written in `dir`), or
/// None for other kinds.
async fn projected_files(
    pod: &Pod,
    v: &Volume,
    dir: &Path,
    sources: &Sources,
    at: Downward<'_>,
) -> Result<Option<Files>, String> {
    if let Some(c) = &v.config_map {
        let mode = c.default_mode.unwrap_or(0o644) as u32;
        return match sources.config_map_files(&c.name).await? {
            Some(data) => items(&data, c.items.as_ref(), mode, "configmap").map(Some),
            None if c.optional == Some(true) => Ok(Some(Files::new())),
            None => Err(format!("configmap {:?} not found", c.name)),
        };
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let mode = s.default_mode.unwrap_or(0o644) as u32;
        return match sources.secret(&name).await? {
            Some(data) => items(&data, s.items.as_ref(), mode, "secret").map(Some),
            None if s.optional == Some(true) => Ok(Some(Files::new())),
            None => Err(format!("secret {name:?} not found")),
        };
    }
    if let Some(d) = &v.downward_api {
        let mode = d.default_mode.unwrap_or(0o644) as u32;
        let mut files = Files::new();
        for i in d.items.iter().flatten() {
            let value = if let Some(f) = &i.field_ref {
                crate::env::field(pod, &f.field_path, at.pod_ip, at.host_ip)?
            } else if let Some(r) = &i.resource_field_ref {
                let name = r.container_name.as_deref().unwrap_or_default();
                let spec = pod.spec.as_ref();
                let c = spec
                    .into_iter()
                    .flat_map(|s| {
                        s.containers
                            .iter()
                            .chain(s.init_containers.iter().flatten())
                    })
                    .find(|c| c.name == name)
                    .ok_or_else(|| format!("container {name} not found"))?;
                let divisor = r.divisor.as_ref().map(|d| d.0.as_str());
                crate::env::resource_field(c, &r.resource, divisor, at.node)?
            } else {
                continue;
            };
            files.insert(
                i.path.clone(),
                (value.into_bytes(), i.mode.map(|m| m as u32).unwrap_or(mode)),
            );
        }
        return Ok(Some(files));
    }
    if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(0o644) as u32;
        let mut files = Files::new();
        for src in p.sources.iter().flatten() {
            if let Some(t) = &src.service_account_token {
                let token = token(pod, t, &dir.join(&t.path), sources).await?;
                files.insert(t.path.clone(), (token.into_bytes(), mode));
                continue;
            }
            let sub = Volume {
                name: v.name.clone(),
                config_map: src.config_map.as_ref().map(|c| {
                    k8s_openapi::api::core::v1::ConfigMapVolumeSource {
                        name: c.name.clone(),
                        items: c.items.clone(),
                        optional: c.optional,
                        default_mode: Some(mode as i32),
                    }
                }),
                secret: src.secret.as_ref().map(|s| {
                    k8s_openapi::api::core::v1::SecretVolumeSource {
                        secret_name: Some(s.name.clone()),
                        items: s.items.clone(),
                        optional: s.optional,
                        default_mode: Some(mode as i32),
                    }
                }),
                downward_api: src.downward_api.as_ref().map(|d| {
                    k8s_openapi::api::core::v1::DownwardAPIVolumeSource {
                        items: d.items.clone(),
                        default_mode: Some(mode as i32),
                    }
                }),
                ..Default::default()
            };
            if let Some(f) = Box::pin(projected_files(pod, &sub, dir, sources, at)).await? {
                files.extend(f);
            }
        }
        return Ok(Some(files));
    }
    Ok(None)
}

/// The default lifetime of a projected token (upstream's `expirationSeconds` default).
const TOKEN_SECONDS: i64 = 3600;

/// A projected `serviceAccountToken` source's token: the one written at `current` while it
/// is younger than 80% of its life (the kubelet's token manager's rule), else a new one.
async fn token(
    pod: &Pod,
    t: &ServiceAccountTokenProjection,
    current: &Path,
    sources: &Sources,
) -> Result<String, String> {
    if let Ok(written) = std::fs::read_to_string(current)
        && fresh(&written, jiff::Timestamp::now().as_second())
    {
        return Ok(written);
    }
    let seconds = t.expiration_seconds.unwrap_or(TOKEN_SECONDS);
    sources
        .service_account_token(pod, t.audience.as_deref(), seconds)
        .await
}

/// Whether the JWT `token` is younger than 80% of its life at `now` (Unix seconds).
fn fresh(token: &str, now: i64) -> bool {
    use base64::Engine as _;
    let claims = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let Some(claims) = claims else {
        return false;
    };
    match (claims["iat"].as_i64(), claims["exp"].as_i64()) {
        (Some(iat), Some(exp)) => now < iat + (exp - iat) * 4 / 5,
        _ => false,
    }
}

/// Writes `files` into `dir` with the atomic-swap layout, unless they are already there. With
/// an fsGroup, the whole volume is given to that group (read-only) once the new files are
/// written, before they become visible, as upstream's atomic writer calls `SetVolumeOwnership`.
fn write_atomic(dir: &Path, files: &Files, fs_group: Option<u32>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let data = dir.join("..data");
    // Unchanged: nothing to do.
    if let Ok(current) = std::fs::read_link(&data) {
        let cur = dir.join(&current);
        let same = files
            .iter()
            .all(|(p, (content, _))| std::fs::read(cur.join(p)).is_ok_and(|c| &c == content))
            && count_files(&cur) == files.len();
        if same {
            return Ok(());
        }
    }
    let stamp = format!(
        "..{}",
        jiff::Timestamp::now().strftime("%Y_%m_%d_%H_%M_%S.%f")
    );
    let fresh = dir.join(&stamp);
    std::fs::create_dir_all(&fresh)?;
    for (p, (content, mode)) in files {
        let path = fresh.join(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, content)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
    }
    if let Some(gid) = fs_group {
        set_ownership(dir, gid, true)?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp)?;
    let old = std::fs::read_link(&data).ok();
    std::fs::rename(&tmp, &data)?;
    // Top-level names point into ..data.
    let tops: std::collections::BTreeSet<String> = files
        .keys()
        .map(|p| p.split('/').next().unwrap_or(p).to_string())
        .collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{top}"), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !tops.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => n += count_files(&e.path()),
            Ok(_) => n += 1,
            Err(_) => {}
        }
    }
    n
}

/// Sets up (or refreshes) every volume of the pod; returns them by name. An error is the
/// message of a `FailedMount` event, as the kubelet words it (`MountVolume.SetUp failed for
/// volume "x" : ...`): the pod's containers wait in `ContainerCreating` until every volume
/// can be provided. A volume of a type this agent cannot provide is an error, never replaced
/// by an empty directory: the pod must not run believing its data is kept.
pub(crate) async fn ensure(
    host: &dyn Host,
    pod: &Pod,
    pod_dir: &Path,
    sources: &Sources,
    at: Downward<'_>,
) -> Result<BTreeMap<String, HostVolume>, String> {
    let mut out = BTreeMap::new();
    let base = volumes_dir(pod_dir);
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        let volume = ensure_one(host, pod, v, &base.join(&v.name), sources, at)
            .await
            .map_err(|e| format!("MountVolume.SetUp failed for volume {:?} : {e}", v.name))?;
        out.insert(v.name.clone(), volume);
    }
    Ok(out)
}

/// Sets up one volume in `dir` (emptyDir and projected kinds) or checks its host path.
async fn ensure_one(
    host: &dyn Host,
    pod: &Pod,
    v: &Volume,
    dir: &Path,
    sources: &Sources,
    at: Downward<'_>,
) -> Result<HostVolume, String> {
    let io = |e: std::io::Error| e.to_string();
    if let Some(e) = &v.empty_dir {
        return empty_dir(host, e, dir, fs_group(pod));
    }
    if let Some(h) = &v.host_path {
        return host_path(h);
    }
    if let Some(c) = &v.persistent_volume_claim {
        let volume = sources.claimed_volume(&c.claim_name, None).await?;
        return claimed(&volume, c.read_only == Some(true));
    }
    if v.ephemeral.is_some() {
        // A generic ephemeral volume: the claim the ephemeral volume controller made for it.
        let name = pod::ephemeral_claim_name(pod, v);
        let volume = sources.claimed_volume(&name, Some(pod)).await?;
        return claimed(&volume, false);
    }
    match projected_files(pod, v, dir, sources, at).await? {
        Some(files) => {
            write_atomic(dir, &files, fs_group(pod)).map_err(io)?;
            Ok(HostVolume {
                path: dir.to_path_buf(),
                read_only: true,
            })
        }
        None => Err(format!(
            "volume type {} is not supported by this node",
            source_kind(v)
        )),
    }
}

/// The name of a volume's source (`persistentVolumeClaim`, `nfs`, ...), as the API spells it.
fn source_kind(v: &Volume) -> String {
    let json = serde_json::to_value(v).unwrap_or_default();
    json.as_object()
        .and_then(|o| o.keys().find(|k| *k != "name").cloned())
        .unwrap_or_else(|| "(none)".into())
}

/// An emptyDir, set up once (later calls leave it as the containers made it): mode 0777, or a
/// tmpfs mounted with mode 1777; then given to the pod's fsGroup, read-write.
fn empty_dir(
    host: &dyn Host,
    e: &EmptyDirVolumeSource,
    dir: &Path,
    fs_group: Option<u32>,
) -> Result<HostVolume, String> {
    let io = |e: std::io::Error| e.to_string();
    let created = !dir.exists();
    std::fs::create_dir_all(dir).map_err(io)?;
    let memory = e.medium.as_deref() == Some("Memory");
    let fresh = if memory {
        !host.is_mounted(dir)
    } else {
        created
    };
    if memory && fresh {
        let size = e
            .size_limit
            .as_ref()
            .and_then(|q| api::quantity::Quantity::parse(&q.0).ok())
            .map(|q| format!(",size={}", q.units()))
            .unwrap_or_default();
        host.mount_tmpfs(dir, &format!("mode=1777{size}"))
            .map_err(|e| format!("mounting tmpfs: {e}"))?;
    } else if fresh {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).map_err(io)?;
    }
    if fresh && let Some(gid) = fs_group {
        set_ownership(dir, gid, false).map_err(io)?;
    }
    Ok(HostVolume {
        path: dir.to_path_buf(),
        read_only: false,
    })
}

fn host_path(h: &HostPathVolumeSource) -> Result<HostVolume, String> {
    let io = |e: std::io::Error| e.to_string();
    let path = PathBuf::from(&h.path);
    let meta = std::fs::metadata(&path);
    let fail = |what: &str| {
        Err(format!(
            "hostPath type check failed: {} is not a {what}",
            h.path
        ))
    };
    match h.type_.as_deref().unwrap_or("") {
        "DirectoryOrCreate" if meta.is_err() => {
            std::fs::create_dir_all(&path).map_err(io)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
        }
        "FileOrCreate" if meta.is_err() => {
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p).map_err(io)?;
            }
            std::fs::write(&path, b"").map_err(io)?;
        }
        "Directory" if !meta.as_ref().is_ok_and(|m| m.is_dir()) => return fail("directory"),
        "File" if !meta.as_ref().is_ok_and(|m| m.is_file()) => return fail("file"),
        "Socket" | "CharDevice" | "BlockDevice" if meta.is_err() => {
            return Err(format!(
                "hostPath type check failed: {} does not exist",
                h.path
            ));
        }
        _ => {}
    }
    Ok(HostVolume {
        path,
        read_only: false,
    })
}

/// A claim's volume on this node: a hostPath or local volume's directory (read-only when the
/// pod's volume says so). Other kinds of volumes are an error: this node cannot mount them.
fn claimed(pv: &PersistentVolume, read_only: bool) -> Result<HostVolume, String> {
    let spec = pv.spec.as_ref();
    let mut volume = if let Some(h) = spec.and_then(|s| s.host_path.as_ref()) {
        host_path(h)?
    } else if let Some(l) = spec.and_then(|s| s.local.as_ref()) {
        let path = PathBuf::from(&l.path);
        if !path.exists() {
            return Err(format!("path {:?} does not exist", l.path));
        }
        HostVolume {
            path,
            read_only: false,
        }
    } else {
        let name = pv.metadata.name.as_deref().unwrap_or_default();
        return Err(format!(
            "persistent volume {name:?} is of a type this node cannot mount (hostPath and local only)"
        ));
    };
    volume.read_only = read_only;
    Ok(volume)
}

/// Unmounts the pod's tmpfs volumes; the directory itself goes with the pod's.
pub(crate) fn teardown(host: &dyn Host, pod_dir: &Path) {
    for e in std::fs::read_dir(volumes_dir(pod_dir))
        .into_iter()
        .flatten()
        .flatten()
    {
        if host.is_mounted(&e.path()) {
            host.unmount(&e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_asked_for_again_at_four_fifths_of_their_life() {
        use base64::Engine as _;
        let claims = serde_json::json!({"iat": 1000, "exp": 2000});
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
        let token = format!("h.{payload}.s");
        assert!(fresh(&token, 1799));
        assert!(!fresh(&token, 1800));
        assert!(!fresh("not a token", 0));
    }

    #[test]
    fn projected_files_swap_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Files::new();
        files.insert("a".into(), (b"1".to_vec(), 0o644));
        files.insert("sub/b".into(), (b"2".to_vec(), 0o600));
        write_atomic(dir.path(), &files, None).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"1");
        assert_eq!(std::fs::read(dir.path().join("sub/b")).unwrap(), b"2");
        let first = std::fs::read_link(dir.path().join("..data")).unwrap();
        write_atomic(dir.path(), &files, None).unwrap();
        assert_eq!(
            std::fs::read_link(dir.path().join("..data")).unwrap(),
            first
        );
        files.remove("sub/b");
        files.insert("a".into(), (b"changed".to_vec(), 0o644));
        write_atomic(dir.path(), &files, None).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"changed");
        assert!(!dir.path().join("sub").exists());
        assert!(!dir.path().join(first).exists());
    }

    #[test]
    fn fs_group_modes_are_set_volume_ownerships() {
        // A 0440 secret file stays 0440; 0400 and 0644 gain group read (read-only volume).
        assert_eq!(fs_group_mode(0o440, false, true), 0o440);
        assert_eq!(fs_group_mode(0o400, false, true), 0o440);
        assert_eq!(fs_group_mode(0o644, false, true), 0o644);
        assert_eq!(fs_group_mode(0o755, true, true), 0o2755);
        // Read-write (emptyDir): group read and write; directories setgid and searchable.
        assert_eq!(fs_group_mode(0o600, false, false), 0o660);
        assert_eq!(fs_group_mode(0o777, true, false), 0o2777);
        assert_eq!(fs_group_mode(0o700, true, false), 0o2770);
        // File type bits never leak into the mode.
        assert_eq!(fs_group_mode(0o100_400, false, true), 0o440);
    }

    #[test]
    fn atomic_volumes_are_given_to_the_fs_group() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("v");
        // Our own group: a change any user may make.
        let gid = nix::unistd::getegid().as_raw();
        let mut files = Files::new();
        files.insert("key".into(), (b"s".to_vec(), 0o400));
        files.insert("sub/other".into(), (b"o".to_vec(), 0o600));
        write_atomic(&vol, &files, Some(gid)).unwrap();
        let mode = |p: &str| {
            let m = std::fs::metadata(vol.join(p)).unwrap();
            assert_eq!(m.gid(), gid);
            m.permissions().mode() & 0o7777
        };
        assert_eq!(mode("key"), 0o440);
        assert_eq!(mode("sub/other"), 0o640);
        assert_eq!(mode("sub"), 0o2755);
        assert_eq!(mode("..data"), 0o2755);
        assert_eq!(mode("") & 0o2550, 0o2550);
    }

    #[test]
    fn unsupported_sources_are_named_as_the_api_spells_them() {
        let v: Volume = serde_json::from_value(serde_json::json!({
            "name": "data", "csi": {"driver": "x"}}))
        .unwrap();
        assert_eq!(source_kind(&v), "csi");
        let v: Volume = serde_json::from_value(serde_json::json!({
            "name": "share", "nfs": {"server": "10.0.0.1", "path": "/x"}}))
        .unwrap();
        assert_eq!(source_kind(&v), "nfs");
    }

    #[test]
    fn a_claims_volume_is_its_host_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().display().to_string();
        let pv = |source: serde_json::Value| -> PersistentVolume {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "v"}, "spec": source}))
                .unwrap()
        };
        let local = claimed(&pv(serde_json::json!({"local": {"path": path}})), true).unwrap();
        assert_eq!((local.path.as_path(), local.read_only), (dir.path(), true));
        let host = pv(serde_json::json!({"hostPath": {"path": path, "type": "Directory"}}));
        assert!(!claimed(&host, false).unwrap().read_only);
        let gone = pv(serde_json::json!({"local": {"path": "/nonexistent/x"}}));
        assert_eq!(
            claimed(&gone, false).unwrap_err(),
            r#"path "/nonexistent/x" does not exist"#
        );
        let nfs = pv(serde_json::json!({"nfs": {"server": "10.0.0.1", "path": "/x"}}));
        assert!(claimed(&nfs, false).unwrap_err().contains("cannot mount"));
    }
}
