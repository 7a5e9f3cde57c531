//! Importing images from files: an OCI image layout directory, an OCI archive (a tar of
//! a layout) or a `docker save` tarball (plain, gzip or zstd). Every blob is checked
//! against its digest before anything is recorded.

use std::fs;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::Error;
use crate::digest::{self, HashReader};
use crate::layer::{self, remove_tree, tmp_path};
use crate::manifest::{self, Descriptor, Manifest};
use crate::reference::Reference;
use crate::store::{Image, Record, Store};

/// The annotation containerd names an image by in an OCI layout.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation: a full reference or only a tag.
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One layer to import: where its blob is, and its digest when the layout says it.
struct LayerFile {
    path: PathBuf,
    digest: Option<String>,
}

impl Store {
    /// Imports every image in `path`: an OCI image layout directory, an OCI archive, or a
    /// `docker save` tarball (or such a tarball unpacked). Names come from the layout's
    /// index annotations (`io.containerd.image.name`, else
    /// `org.opencontainers.image.ref.name` when it is a full reference rather than a bare
    /// tag) or from docker's `manifest.json` `RepoTags`; an image without a usable name is
    /// imported unnamed (find it by id).
    pub fn import(&self, path: &Path) -> crate::Result<Vec<Image>> {
        let importing = |e: Error| Error::Import {
            path: path.to_path_buf(),
            source: Box::new(e),
        };
        let meta = fs::metadata(path).map_err(|e| importing(e.into()))?;
        if meta.is_dir() {
            return self.import_dir(path).map_err(importing);
        }
        let work = tmp_path(&self.tmp(), "import");
        fs::create_dir(&work)?;
        let result = extract(path, &work).and_then(|()| self.import_dir(&work));
        remove_tree(&work);
        result.map_err(importing)
    }

    fn import_dir(&self, dir: &Path) -> crate::Result<Vec<Image>> {
        if dir.join("manifest.json").is_file() {
            self.import_docker(dir)
        } else if dir.join("index.json").is_file() {
            self.import_oci(dir)
        } else {
            Err(Error::invalid(
                "neither an OCI image layout (no index.json) nor a docker save archive (no manifest.json)",
            ))
        }
    }

    fn import_oci(&self, dir: &Path) -> crate::Result<Vec<Image>> {
        let index =
            fs::read(dir.join("index.json")).map_err(|e| Error::file("reading index.json", e))?;
        let Manifest::Index(list) = manifest::parse(&index).map_err(Error::Invalid)? else {
            return Err(Error::invalid("index.json is not an image index"));
        };
        let (arch, _) = manifest::host_platform();
        let mut out = Vec::new();
        for desc in &list {
            if let Some(p) = &desc.platform
                && (p.os != "linux" || p.architecture != arch)
            {
                tracing::debug!(digest = %desc.digest, "skipping another platform's image");
                continue;
            }
            let bytes = read_blob(dir, &desc.digest, "manifest")?;
            let (bytes, manifest_digest) = match manifest::parse(&bytes).map_err(Error::Invalid)? {
                Manifest::Image { .. } => (bytes, desc.digest.clone()),
                Manifest::Index(inner) => {
                    let Some(entry) = manifest::select_platform(&inner) else {
                        tracing::warn!(digest = %desc.digest, "no linux/{arch} image in this index; skipped");
                        continue;
                    };
                    (
                        read_blob(dir, &entry.digest, "manifest")?,
                        entry.digest.clone(),
                    )
                }
            };
            let Manifest::Image { config, layers } =
                manifest::parse(&bytes).map_err(Error::Invalid)?
            else {
                return Err(Error::invalid(format!(
                    "manifest {manifest_digest} is an index inside an index"
                )));
            };
            let config_bytes = read_blob(dir, &config.digest, "config")?;
            let files = layers
                .iter()
                .map(|l| {
                    Ok(LayerFile {
                        path: blob_path(dir, &l.digest)?,
                        digest: Some(l.digest.clone()),
                    })
                })
                .collect::<crate::Result<Vec<_>>>()?;
            let size = layers
                .iter()
                .map(|l: &Descriptor| l.size.max(0) as u64)
                .sum();
            let image = self.import_image(
                oci_names(desc),
                &config.digest,
                &config_bytes,
                files,
                size,
                Some((manifest_digest, bytes)),
            )?;
            out.push(image);
        }
        if out.is_empty() && !list.is_empty() {
            return Err(Error::invalid(format!(
                "no image for linux/{arch} in this layout"
            )));
        }
        Ok(out)
    }

    fn import_docker(&self, dir: &Path) -> crate::Result<Vec<Image>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            #[serde(default)]
            layers: Vec<String>,
        }
        let entries: Vec<Entry> = serde_json::from_slice(
            &fs::read(dir.join("manifest.json"))
                .map_err(|e| Error::file("reading manifest.json", e))?,
        )
        .map_err(|source| Error::Json {
            what: "parsing manifest.json".into(),
            source,
        })?;
        let mut out = Vec::new();
        for e in entries {
            let config_path = inside(dir, &e.config)?;
            let config_bytes = fs::read(&config_path)
                .map_err(|err| Error::file(format!("reading {}", e.config), err))?;
            let config_digest = digest::sha256(&config_bytes);
            if let Some(named) = digest_from_blob_path(&e.config) {
                digest::verify(&config_bytes, &named, "config")?;
            }
            let mut files = Vec::new();
            let mut size = 0;
            for l in &e.layers {
                let path = inside(dir, l)?;
                size += fs::metadata(&path)
                    .map_err(|e| Error::file(format!("reading layer {l}"), e))?
                    .len();
                files.push(LayerFile {
                    path,
                    digest: digest_from_blob_path(l),
                });
            }
            let names = e
                .repo_tags
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| match Reference::parse(&t) {
                    Ok(r) => Some(r.to_string()),
                    Err(err) => {
                        tracing::warn!(tag = %t, error = %err, "ignoring a RepoTag");
                        None
                    }
                })
                .collect();
            out.push(self.import_image(names, &config_digest, &config_bytes, files, size, None)?);
        }
        Ok(out)
    }

    fn import_image(
        &self,
        names: Vec<String>,
        config_digest: &str,
        config_bytes: &[u8],
        files: Vec<LayerFile>,
        size: u64,
        manifest: Option<(String, Vec<u8>)>,
    ) -> crate::Result<Image> {
        let parsed = manifest::parse_config(config_bytes).map_err(Error::Invalid)?;
        if !parsed.diff_ids.is_empty() && parsed.diff_ids.len() != files.len() {
            return Err(Error::invalid(format!(
                "image config {config_digest} lists {} layers, the manifest {}",
                parsed.diff_ids.len(),
                files.len()
            )));
        }
        // Digests of layers the layout does not name (docker's `<id>/layer.tar`).
        let mut digests = Vec::new();
        for f in &files {
            digests.push(match &f.digest {
                Some(d) => d.clone(),
                None => {
                    let file = fs::File::open(&f.path)
                        .map_err(|e| Error::file(format!("reading {}", f.path.display()), e))?;
                    HashReader::new(BufReader::new(file)).finish()?.0
                }
            });
        }
        let mut pinned = digests.clone();
        pinned.push(config_digest.to_string());
        pinned.extend(manifest.iter().map(|(d, _)| d.clone()));
        let _pins = self.pin(pinned);
        self.put_blob(config_digest, config_bytes, "config")?;
        if let Some((d, bytes)) = &manifest {
            self.put_blob(d, bytes, "manifest")?;
        }
        for (i, (f, d)) in files.iter().zip(&digests).enumerate() {
            if self.layer_path(d)?.is_dir() {
                continue;
            }
            let file = fs::File::open(&f.path)
                .map_err(|e| Error::file(format!("reading layer {}", f.path.display()), e))?;
            layer::install(
                BufReader::new(file),
                &self.layers_dir(),
                &self.tmp(),
                d,
                parsed.diff_ids.get(i).map(String::as_str),
            )?;
        }
        self.commit(Record {
            id: config_digest.to_string(),
            references: names,
            repo_digest: None,
            size,
            layers: digests,
            config: parsed.config,
            manifest: manifest.map(|(d, _)| d),
        })
    }
}

/// The names an index entry gives its image.
fn oci_names(desc: &Descriptor) -> Vec<String> {
    let Some(a) = &desc.annotations else {
        return Vec::new();
    };
    let candidate = a.get(CONTAINERD_NAME).or_else(|| {
        // ref.name may be a whole reference or only a tag; only the former names an image.
        a.get(OCI_REF_NAME)
            .filter(|n| n.contains('/') || n.contains(':') || n.contains('@'))
    });
    match candidate.map(|n| Reference::parse(n)) {
        Some(Ok(r)) => vec![r.to_string()],
        Some(Err(e)) => {
            tracing::warn!(error = %e, "ignoring an image name in index.json");
            Vec::new()
        }
        None => Vec::new(),
    }
}

/// `blobs/<algorithm>/<hex>` in a layout.
fn blob_path(dir: &Path, digest: &str) -> crate::Result<PathBuf> {
    let hex = digest::hex(digest)?;
    Ok(dir.join("blobs/sha256").join(hex))
}

/// A small blob of a layout, checked against its digest.
fn read_blob(dir: &Path, digest: &str, what: &'static str) -> crate::Result<Vec<u8>> {
    let path = blob_path(dir, digest)?;
    let bytes = fs::read(&path).map_err(|e| Error::file(format!("reading {what} {digest}"), e))?;
    digest::verify(&bytes, digest, what)?;
    Ok(bytes)
}

/// `blobs/sha256/<hex>` names its digest.
fn digest_from_blob_path(rel: &str) -> Option<String> {
    let hex = rel.strip_prefix("blobs/sha256/")?;
    let d = format!("sha256:{hex}");
    digest::hex(&d).is_ok().then_some(d)
}

/// `dir/rel`, refusing paths that leave `dir`.
fn inside(dir: &Path, rel: &str) -> crate::Result<PathBuf> {
    let p = Path::new(rel);
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(Error::invalid(format!(
            "path {rel:?} in manifest.json leaves the archive"
        )));
    }
    Ok(dir.join(p))
}

/// Unpacks an archive (tar, optionally gzip or zstd compressed) into `dest`.
fn extract(archive: &Path, dest: &Path) -> crate::Result<()> {
    let mut file = BufReader::new(
        fs::File::open(archive)
            .map_err(|e| Error::file(format!("opening {}", archive.display()), e))?,
    );
    let mut head = Vec::with_capacity(4);
    (&mut file).take(4).read_to_end(&mut head)?;
    let joined = std::io::Cursor::new(head.clone()).chain(file);
    let reader: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(joined))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::new(joined)?)
    } else {
        Box::new(joined)
    };
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(false);
    tar.set_preserve_ownerships(false);
    tar.unpack(dest)
        .map_err(|e| Error::file("unpacking the archive", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::tests::{E, gzip, tar_of};
    use serde_json::json;

    /// Writes an OCI layout with one image of the given layers; returns (manifest
    /// digest, config digest, layer digests).
    fn write_layout(
        dir: &Path,
        ref_name: &str,
        layers: &[Vec<u8>],
    ) -> (String, String, Vec<String>) {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        let put = |bytes: &[u8]| {
            let d = digest::sha256(bytes);
            fs::write(blobs.join(&d[7..]), bytes).unwrap();
            d
        };
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        let mut digests = Vec::new();
        for tar in layers {
            let gz = gzip(tar);
            let d = put(&gz);
            diff_ids.push(digest::sha256(tar));
            descs.push(json!({"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":d,"size":gz.len()}));
            digests.push(d);
        }
        let (arch, _) = manifest::host_platform();
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "config": {"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/w","User":"1000","ExposedPorts":{"8080/tcp":{}},"Labels":{"k":"v"}},
            "rootfs": {"type":"layers","diff_ids": diff_ids},
        }))
        .unwrap();
        let config_digest = put(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_MANIFEST,
            "config": {"mediaType":"application/vnd.oci.image.config.v1+json","digest":config_digest,"size":config.len()},
            "layers": descs,
        }))
        .unwrap();
        let manifest_digest = put(&manifest);
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": manifest::OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len(),
                           "annotations": {OCI_REF_NAME: ref_name}}],
        });
        fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        (manifest_digest, config_digest, digests)
    }

    fn two_layers() -> Vec<Vec<u8>> {
        vec![
            tar_of(&[
                E::Dir("bin/", 0o755),
                E::File("bin/hello", b"hello", 0o755),
                E::File("etc/conf", b"1", 0o644),
            ]),
            tar_of(&[
                E::File("etc/conf", b"2", 0o644),
                E::Symlink("bin/hi", "hello"),
            ]),
        ]
    }

    #[test]
    fn imports_an_oci_layout_and_archive() {
        let work = tempfile::tempdir().unwrap();
        let layout = work.path().join("layout");
        let (_, config_digest, layer_digests) =
            write_layout(&layout, "localhost/test:v1", &two_layers());
        let store = Store::open(&work.path().join("store")).unwrap();

        let images = store.import(&layout).unwrap();
        assert_eq!(images.len(), 1);
        let img = &images[0];
        assert_eq!(img.references, ["localhost/test:v1"]);
        assert_eq!(img.id, config_digest);
        assert_eq!(img.repo_digest, None);
        assert_eq!(img.layers.len(), 2);
        assert_eq!(img.layers[0], store.layer_path(&layer_digests[0]).unwrap());
        assert_eq!(fs::read(img.layers[0].join("bin/hello")).unwrap(), b"hello");
        assert_eq!(fs::read(img.layers[1].join("etc/conf")).unwrap(), b"2");
        assert_eq!(img.config.cmd, ["sh"]);
        assert_eq!(img.config.env, ["PATH=/bin"]);
        assert_eq!(img.config.user.as_deref(), Some("1000"));
        assert_eq!(img.config.working_dir.as_deref(), Some("/w"));
        assert_eq!(img.config.exposed_ports, ["8080/tcp"]);
        assert_eq!(img.config.labels.get("k").map(String::as_str), Some("v"));
        assert_eq!(store.get("localhost/test:v1").unwrap(), *img);

        // The same layout as an OCI archive (tar), under another name.
        let layout2 = work.path().join("layout2");
        write_layout(&layout2, "docker.io/library/test:v2", &two_layers());
        let archive = work.path().join("test.tar");
        let mut b = tar::Builder::new(fs::File::create(&archive).unwrap());
        b.append_dir_all(".", &layout2).unwrap();
        b.finish().unwrap();
        drop(b);
        let images = store.import(&archive).unwrap();
        assert_eq!(images[0].id, config_digest, "same content, same id");
        let img = store.get("test:v2").unwrap();
        assert_eq!(
            img.references,
            ["localhost/test:v1", "docker.io/library/test:v2"]
        );
        assert_eq!(store.list().len(), 1);
        assert_eq!(fs::read_dir(store.tmp()).unwrap().count(), 0);

        // A bare tag in ref.name names nothing; the image is still there by id.
        let layout3 = work.path().join("layout3");
        write_layout(&layout3, "v3", &[tar_of(&[E::File("x", b"x", 0o644)])]);
        let images = store.import(&layout3).unwrap();
        assert!(images[0].references.is_empty());
        assert!(store.get(&images[0].id).is_some());
    }

    #[test]
    fn digest_mismatch_fails_and_stores_nothing() {
        let work = tempfile::tempdir().unwrap();
        let layout = work.path().join("layout");
        let (_, _, layer_digests) = write_layout(&layout, "localhost/bad:v1", &two_layers());
        // Replace the top layer's blob with other (valid) content.
        let other = gzip(&tar_of(&[E::File("evil", b"evil", 0o644)]));
        fs::write(
            layout.join("blobs/sha256").join(&layer_digests[1][7..]),
            &other,
        )
        .unwrap();

        let store = Store::open(&work.path().join("store")).unwrap();
        let e = store.import(&layout).unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains(&layer_digests[1]), "{text}");
        assert!(text.contains("digest mismatch"), "{text}");
        assert!(store.list().is_empty());
        assert!(store.get("localhost/bad:v1").is_none());
        assert!(!store.layer_path(&layer_digests[1]).unwrap().exists());
        assert_eq!(fs::read_dir(store.tmp()).unwrap().count(), 0);
        assert_eq!(
            fs::read_dir(store.root().join("images")).unwrap().count(),
            0
        );
    }

    #[test]
    fn imports_a_docker_save_tarball() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("save");
        let layers = two_layers();
        fs::create_dir_all(dir.join("l0")).unwrap();
        fs::create_dir_all(dir.join("l1")).unwrap();
        fs::write(dir.join("l0/layer.tar"), &layers[0]).unwrap();
        fs::write(dir.join("l1/layer.tar"), &layers[1]).unwrap();
        let config = serde_json::to_vec(&json!({
            "architecture":"amd64","os":"linux","config":{"Cmd":["/bin/hello"]},
            "rootfs":{"type":"layers","diff_ids":[digest::sha256(&layers[0]), digest::sha256(&layers[1])]}
        }))
        .unwrap();
        let config_digest = digest::sha256(&config);
        fs::write(dir.join(format!("{}.json", &config_digest[7..])), &config).unwrap();
        fs::write(
            dir.join("manifest.json"),
            serde_json::to_vec(&json!([{
                "Config": format!("{}.json", &config_digest[7..]),
                "RepoTags": ["hello:1", "example.com/team/hello:latest"],
                "Layers": ["l0/layer.tar", "l1/layer.tar"],
            }]))
            .unwrap(),
        )
        .unwrap();
        let archive = work.path().join("save.tar.gz");
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            fs::File::create(&archive).unwrap(),
            flate2::Compression::fast(),
        ));
        b.append_dir_all(".", &dir).unwrap();
        b.into_inner().unwrap().finish().unwrap();

        let store = Store::open(&work.path().join("store")).unwrap();
        let images = store.import(&archive).unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].id, config_digest);
        assert_eq!(
            images[0].references,
            ["docker.io/library/hello:1", "example.com/team/hello:latest"]
        );
        assert_eq!(images[0].size, (layers[0].len() + layers[1].len()) as u64);
        assert_eq!(
            fs::read_link(images[0].layers[1].join("bin/hi")).unwrap(),
            Path::new("hello")
        );
        assert_eq!(images[0].config.cmd, ["/bin/hello"]);

        // A path escaping the archive is refused.
        fs::write(
            dir.join("manifest.json"),
            br#"[{"Config":"../x.json","RepoTags":[],"Layers":[]}]"#,
        )
        .unwrap();
        assert!(store.import(&dir).is_err());
    }
}
