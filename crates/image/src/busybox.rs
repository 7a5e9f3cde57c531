//! A small image made on the spot from the host's statically linked busybox (Debian's
//! `busybox-static`): one layer with `/bin/busybox`, its common applets as symlinks and a
//! minimal `/etc`. Benchmarks import it to start containers without a registry.

use std::io::Write;
use std::path::Path;

use crate::Error;
use crate::digest::sha256;
use crate::{Image, Result, Store};

/// The applets linked into `/bin`.
const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "env", "hostname", "httpd", "id", "ls", "mkdir", "nc", "ps", "sleep",
    "tail", "tar", "true", "false", "wget",
];

fn layer(busybox: &[u8]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_704_067_200);
        h
    };
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("var", 0o755),
        ("var/www", 0o755),
    ] {
        b.append_data(
            &mut header(tar::EntryType::Directory, mode, 0),
            format!("{dir}/"),
            std::io::empty(),
        )?;
    }
    b.append_data(
        &mut header(tar::EntryType::Regular, 0o755, busybox.len() as u64),
        "bin/busybox",
        busybox,
    )?;
    for applet in APPLETS {
        b.append_link(
            &mut header(tar::EntryType::Symlink, 0o777, 0),
            format!("bin/{applet}"),
            "busybox",
        )?;
    }
    for (path, content) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ] {
        b.append_data(
            &mut header(tar::EntryType::Regular, 0o644, content.len() as u64),
            path,
            content.as_bytes(),
        )?;
    }
    Ok(b.into_inner()?)
}

/// Builds the image as an OCI layout in `dir`, named `name` (a full reference).
fn write_layout(dir: &Path, name: &str) -> Result<()> {
    let busybox = std::fs::read("/usr/bin/busybox").map_err(|e| {
        Error::file(
            "reading /usr/bin/busybox (Debian: apt-get install busybox-static)",
            e,
        )
    })?;
    let tar = layer(&busybox)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar)?;
    let gz = gz.finish()?;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put = |bytes: &[u8]| -> Result<String> {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), bytes)?;
        Ok(digest)
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&tar)]},
    })
    .to_string();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config.as_bytes())?, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(&gz)?, "size": gz.len()}],
    })
    .to_string();
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": put(manifest.as_bytes())?, "size": manifest.len(),
            "annotations": {"io.containerd.image.name": name}}],
    });
    std::fs::write(dir.join("index.json"), index.to_string())?;
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(())
}

/// Makes the busybox image and imports it into `store` as `name` (e.g.
/// `docker.io/library/busybox:local`).
pub fn import(store: &Store, name: &str) -> Result<Image> {
    let dir = store
        .root()
        .join("tmp")
        .join(format!("busybox-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = write_layout(&dir, name).and_then(|()| store.import(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    let mut images = result?;
    match images.pop() {
        Some(image) => Ok(image),
        None => Err(Error::NoBusybox),
    }
}
