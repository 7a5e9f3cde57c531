//! Unpacking one layer (a tar, plain, gzip or zstd) into a directory ready to be an
//! overlayfs lower layer: `.wh.<name>` becomes a 0/0 character device, `.wh..wh..opq`
//! the `trusted.overlay.opaque=y` xattr on its directory. Nothing is written outside the
//! directory.

use std::fs;
use std::io::{self, Cursor, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;
use crate::digest::{DigestMismatch, HashReader};

/// The xattr overlayfs reads to hide a lower directory's contents.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What unpacking saw.
#[derive(Debug)]
pub(crate) struct Unpacked {
    /// sha256 of the input as given (compressed).
    pub(crate) digest: String,
    /// sha256 of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub(crate) diff_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Unpacks the layer read from `src` into `dest` (an existing, empty directory). The
/// input is read to its end, so the digests cover all of it.
pub(crate) fn unpack(src: impl Read, dest: &Path) -> crate::Result<Unpacked> {
    let mut compressed = HashReader::new(src);
    let mut head = Vec::with_capacity(4);
    (&mut compressed).take(4).read_to_end(&mut head)?;
    let compression = sniff(&head);
    let diff_id = {
        let joined = Cursor::new(head).chain(&mut compressed);
        let decoder: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(joined),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(joined)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(joined)
                    .map_err(|e| Error::file("starting zstd decoder", e))?,
            ),
        };
        let mut tar_stream = HashReader::new(decoder);
        unpack_tar(&mut tar_stream, dest)?;
        tar_stream
            .finish()
            .map_err(|e| Error::file("reading the rest of the layer", e))?
            .0
    };
    let (digest, _) = compressed.finish()?;
    Ok(Unpacked { digest, diff_id })
}

/// The entry's path as plain components: leading `/` and `.` dropped, `..` rejected.
fn clean(path: &Path) -> crate::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(Error::invalid(format!(
                    "layer entry {:?} has a '..' component (path traversal)",
                    path
                )));
            }
        }
    }
    Ok(out)
}

fn unpack_tar(input: impl Read, dest: &Path) -> crate::Result<()> {
    let root = is_root();
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    // Owners and privileged xattrs (security.capability) can only be set by root; an
    // unprivileged unpack (tests) keeps the files as the current user.
    archive.set_preserve_ownerships(root);
    archive.set_unpack_xattrs(root);
    for entry in archive
        .entries()
        .map_err(|e| Error::file("reading layer tar", e))?
    {
        let mut entry = entry.map_err(|e| Error::file("reading layer tar entry", e))?;
        let raw = entry
            .path()
            .map_err(|e| Error::file("layer entry path", e))?
            .into_owned();
        let rel = clean(&raw)?;
        let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue; // the root directory itself
        };
        if let Some(target) = name.strip_prefix(".wh.") {
            let parent = rel.parent().unwrap_or(Path::new(""));
            let dir = safe_dir(dest, parent)?;
            if target == ".wh..opq" {
                xattr::set(&dir, OPAQUE_XATTR, b"y").map_err(|e| {
                    Error::file(
                        format!("marking {} opaque ({OPAQUE_XATTR})", dir.display()),
                        e,
                    )
                })?;
            } else if target.starts_with(".wh.") || target.is_empty() {
                // Other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not content.
            } else {
                whiteout(&dir.join(target))?;
            }
            continue;
        }
        if entry.header().entry_type().is_hard_link()
            && let Some(link) = entry
                .link_name()
                .map_err(|e| Error::file("hard link target", e))?
        {
            clean(&link)?;
        }
        let written = entry
            .unpack_in(dest)
            .map_err(|e| Error::file(format!("unpacking layer entry {}", raw.display()), e))?;
        if !written {
            return Err(Error::invalid(format!(
                "layer entry {} would be written outside the layer directory",
                raw.display()
            )));
        }
    }
    Ok(())
}

/// `dest/rel` as a directory, created if missing, refusing to leave `dest` through a
/// symlink (symlinks that stay inside are followed).
fn safe_dir(dest: &Path, rel: &Path) -> crate::Result<PathBuf> {
    let root = dest.canonicalize()?;
    let mut cur = root.clone();
    for c in rel.components() {
        let next = cur.join(c);
        match fs::symlink_metadata(&next) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&next)
                .map_err(|e| Error::file(format!("creating {}", next.display()), e))?,
            Err(e) => {
                return Err(e)
                    .map_err(|e| Error::file(format!("inspecting {}", next.display()), e));
            }
        }
        let canon = next
            .canonicalize()
            .map_err(|e| Error::file(format!("resolving {}", next.display()), e))?;
        if !canon.starts_with(&root) {
            return Err(Error::invalid(format!(
                "layer entry under {} resolves outside the layer directory",
                rel.display()
            )));
        }
        if !canon.is_dir() {
            return Err(Error::invalid(format!(
                "{} is not a directory",
                next.display()
            )));
        }
        cur = canon;
    }
    Ok(cur)
}

/// Replaces whatever is at `path` by an overlayfs whiteout: a character device 0/0.
fn whiteout(path: &Path) -> crate::Result<()> {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path)?,
        Ok(_) => fs::remove_file(path)?,
        Err(_) => {}
    }
    mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(|source| {
        Error::Whiteout {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(())
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh name under `tmp` for work in progress.
pub(crate) fn tmp_path(tmp: &Path, what: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    tmp.join(format!("{what}-{}-{n}-{nanos}", std::process::id()))
}

/// Unpacks `src` into `layers/<hex>` through a directory under `tmp`, checking the
/// compressed digest (always) and the diff id (when known). Another process or task
/// that got there first wins; the loser's copy is thrown away.
pub(crate) fn install(
    src: impl Read,
    layers: &Path,
    tmp: &Path,
    digest: &str,
    diff_id: Option<&str>,
) -> crate::Result<Unpacked> {
    let hex = crate::digest::hex(digest)?;
    let work = tmp_path(tmp, &format!("layer-{}", &hex[..12]));
    fs::create_dir(&work).map_err(|e| Error::file(format!("creating {}", work.display()), e))?;
    let result = (|| {
        let unpacked = unpack(src, &work).map_err(|e| Error::Unpack {
            digest: digest.to_string(),
            source: Box::new(e),
        })?;
        if unpacked.digest != digest {
            return Err(Error::DigestMismatch(DigestMismatch {
                expected: digest.to_string(),
                actual: unpacked.digest.clone(),
                what: "layer",
            }));
        }
        if let Some(want) = diff_id
            && unpacked.diff_id != want
        {
            return Err(Error::DiffId {
                digest: digest.to_string(),
                source: DigestMismatch {
                    expected: want.to_string(),
                    actual: unpacked.diff_id.clone(),
                    what: "uncompressed layer",
                },
            });
        }
        let target = layers.join(hex);
        if let Err(e) = fs::rename(&work, &target) {
            if target.is_dir() {
                // Someone else installed it meanwhile: same content, keep theirs.
                remove_tree(&work);
            } else {
                return Err(e).map_err(|e| {
                    Error::file(format!("moving layer into {}", target.display()), e)
                });
            }
        }
        Ok(unpacked)
    })();
    if result.is_err() {
        remove_tree(&work);
    }
    result
}

/// Removes a file or directory tree, ignoring errors (best effort clean-up).
pub(crate) fn remove_tree(path: &Path) {
    let r = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    };
    if let Err(e) = r {
        tracing::warn!(path = %path.display(), error = %e, "could not remove");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write as _;
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};

    /// A tar entry: path, kind, content or link target, mode.
    pub(crate) enum E<'a> {
        Dir(&'a str, u32),
        File(&'a str, &'a [u8], u32),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
    }

    pub(crate) fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            match *e {
                E::Dir(p, mode) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(mode);
                    h.set_size(0);
                    b.append_data(&mut h, p, io::empty()).unwrap();
                }
                E::File(p, data, mode) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(mode);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, p, data).unwrap();
                }
                E::Symlink(p, target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, p, target).unwrap();
                }
                E::Hardlink(p, target) => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_mode(0o644);
                    h.set_size(0);
                    b.append_link(&mut h, p, target).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    /// A tar with one raw header whose path is written as-is (no checks by the builder).
    fn tar_with_raw_path(path: &str) -> Vec<u8> {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_mode(0o644);
        h.set_size(1);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        let mut block = [0u8; 512];
        block[0] = b'x';
        out.extend_from_slice(&block);
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn unpacks_plain_gzip_and_zstd() {
        let tar = tar_of(&[
            E::Dir("bin/", 0o755),
            E::File("bin/tool", b"#!/bin/sh\n", 0o4755),
            E::Symlink("bin/sh", "tool"),
            E::Symlink("bin/abs", "/etc/passwd"),
            E::Hardlink("bin/tool2", "bin/tool"),
            E::Dir("tmp/", 0o1777),
            E::File("etc/motd", b"hi", 0o600),
        ]);
        let zst = zstd::stream::encode_all(&tar[..], 3).unwrap();
        for (what, data) in [("plain", tar.clone()), ("gzip", gzip(&tar)), ("zstd", zst)] {
            let dir = tempfile::tempdir().unwrap();
            let u = unpack(&data[..], dir.path()).unwrap();
            assert_eq!(u.digest, crate::digest::sha256(&data), "{what}");
            assert_eq!(u.diff_id, crate::digest::sha256(&tar), "{what}");
            let d = dir.path();
            assert_eq!(fs::read(d.join("bin/tool")).unwrap(), b"#!/bin/sh\n");
            let mode = fs::metadata(d.join("bin/tool"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o7777, 0o4755, "{what}: setuid kept");
            assert_eq!(fs::read_link(d.join("bin/sh")).unwrap(), Path::new("tool"));
            assert_eq!(
                fs::read_link(d.join("bin/abs")).unwrap(),
                Path::new("/etc/passwd")
            );
            assert_eq!(
                fs::metadata(d.join("bin/tool2")).unwrap().ino(),
                fs::metadata(d.join("bin/tool")).unwrap().ino(),
                "{what}: hard link"
            );
            let tmp_mode = fs::metadata(d.join("tmp")).unwrap().permissions().mode();
            assert_eq!(tmp_mode & 0o7777, 0o1777);
            assert_eq!(
                fs::metadata(d.join("etc/motd"))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn keeps_owners_and_xattrs_as_root() {
        if !is_root() {
            eprintln!("skipped: setting owners needs root");
            return;
        }
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("SCHILY.xattr.user.origin", &b"layer"[..])])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o640);
        h.set_uid(1234);
        h.set_gid(5678);
        h.set_size(2);
        b.append_data(&mut h, "owned", &b"hi"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        unpack(&tar[..], dir.path()).unwrap();
        let m = fs::metadata(dir.path().join("owned")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
        assert_eq!(m.permissions().mode() & 0o7777, 0o640);
        assert_eq!(
            xattr::get(dir.path().join("owned"), "user.origin")
                .unwrap()
                .as_deref(),
            Some(&b"layer"[..])
        );
    }

    #[test]
    fn converts_whiteouts_for_overlayfs() {
        if !is_root() {
            eprintln!("skipped: whiteouts are character devices, which need root");
            return;
        }
        let tar = tar_of(&[
            E::Dir("etc/", 0o755),
            E::File("etc/.wh.passwd", b"", 0o644),
            E::File("var/lib/.wh..wh..opq", b"", 0o644),
            E::File("var/lib/new", b"n", 0o644),
            E::File(".wh.gone-dir", b"", 0o644),
            E::File(".wh..wh.plnk", b"", 0o644),
        ]);
        let dir = tempfile::tempdir().unwrap();
        unpack(&gzip(&tar)[..], dir.path()).unwrap();
        let d = dir.path();
        for w in ["etc/passwd", "gone-dir"] {
            let m = fs::symlink_metadata(d.join(w)).unwrap();
            assert!(m.file_type().is_char_device(), "{w} is a whiteout device");
            assert_eq!(m.rdev(), 0, "{w} is device 0/0");
        }
        assert!(!d.join("etc/.wh.passwd").exists());
        assert!(!d.join(".wh..wh.plnk").exists());
        assert_eq!(
            xattr::get(d.join("var/lib"), OPAQUE_XATTR)
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
        assert!(!d.join("var/lib/.wh..wh..opq").exists());
        assert_eq!(fs::read(d.join("var/lib/new")).unwrap(), b"n");
        assert_eq!(xattr::get(d.join("etc"), OPAQUE_XATTR).unwrap(), None);
    }

    #[test]
    fn rejects_path_traversal() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().join("layer");
        fs::create_dir(&layer).unwrap();

        let e = unpack(&tar_with_raw_path("../evil")[..], &layer).unwrap_err();
        assert!(format!("{e:#}").contains("traversal"), "{e:#}");
        assert!(!dir.path().join("evil").exists());

        // A symlink to outside, then a file (or whiteout) through it.
        let target = outside.path().to_str().unwrap();
        for through in ["escape/file", "escape/.wh.file"] {
            let tar = tar_of(&[E::Symlink("escape", target), E::File(through, b"x", 0o644)]);
            let fresh = dir.path().join(through.replace('/', "_"));
            fs::create_dir(&fresh).unwrap();
            let e = unpack(&tar[..], &fresh).unwrap_err();
            assert!(format!("{e:#}").contains("outside"), "{through}: {e:#}");
            assert_eq!(
                fs::read_dir(outside.path()).unwrap().count(),
                0,
                "{through}"
            );
        }
        // A hard link to a file outside.
        let tar = tar_of(&[E::Hardlink("h", "../../etc/passwd")]);
        let fresh = dir.path().join("hard");
        fs::create_dir(&fresh).unwrap();
        assert!(unpack(&tar[..], &fresh).is_err());
    }

    #[test]
    fn install_checks_digests_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let layers = dir.path().join("layers");
        let tmp = dir.path().join("tmp");
        fs::create_dir(&layers).unwrap();
        fs::create_dir(&tmp).unwrap();
        let blob = gzip(&tar_of(&[E::File("a", b"a", 0o644)]));
        let good = crate::digest::sha256(&blob);
        let wrong = crate::digest::sha256(b"something else");

        let e = install(&blob[..], &layers, &tmp, &wrong, None).unwrap_err();
        let crate::Error::DigestMismatch(m) = &e else {
            panic!("a DigestMismatch: {e:?}")
        };
        assert_eq!(m.expected, wrong);
        assert_eq!(m.actual, good);
        assert!(format!("{e:#}").contains(&wrong), "{e:#}");
        assert_eq!(fs::read_dir(&layers).unwrap().count(), 0);
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);

        let e = install(&blob[..], &layers, &tmp, &good, Some(&wrong)).unwrap_err();
        assert!(format!("{e:#}").contains("diff id"), "{e:#}");
        assert_eq!(fs::read_dir(&layers).unwrap().count(), 0);

        install(&blob[..], &layers, &tmp, &good, None).unwrap();
        // A second install of the same layer keeps the first.
        install(&blob[..], &layers, &tmp, &good, None).unwrap();
        let hex = crate::digest::hex(&good).unwrap();
        assert_eq!(fs::read(layers.join(hex).join("a")).unwrap(), b"a");
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }
}
