//! The content-addressed image store on disk:
//!
//! ```text
//! <dir>/blobs/sha256/<hex>   image configs and manifests, as fetched
//! <dir>/layers/<hex>/        one unpacked layer per compressed-layer digest
//! <dir>/images/<hex>.json    one record per image (named by its config digest)
//! <dir>/tmp/                 work in progress; emptied on open
//! ```
//!
//! Everything lands through `tmp/` and a rename, so a crash or a failed check never
//! leaves a half-written blob, layer or record in place. Records are also kept in memory
//! behind one mutex; layers and blobs that in-flight pulls or imports use are pinned so
//! that garbage collection (after `remove`) leaves them alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::digest::{self, hex};
use crate::layer::{remove_tree, tmp_path};
use crate::manifest::ImageConfig;
use crate::reference::{Reference, is_lower_hex};
use crate::registries::Scheme;

/// An image in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Normalised names pointing at it (`docker.io/library/busybox:latest`); empty for
    /// an image whose tags all moved elsewhere.
    pub references: Vec<String>,
    /// `sha256:<config digest>`.
    pub id: String,
    /// `<registry>/<repository>@sha256:<manifest digest>` of the last pull.
    pub repo_digest: Option<String>,
    /// Sum of the layers' compressed sizes.
    pub size: u64,
    /// Unpacked layer directories, bottom layer first (overlayfs wants `lowerdir` top
    /// first: reverse them).
    pub layers: Vec<PathBuf>,
    /// What the image config says about running it.
    pub config: ImageConfig,
}

/// The on-disk record of one image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) id: String,
    pub(crate) references: Vec<String>,
    pub(crate) repo_digest: Option<String>,
    pub(crate) size: u64,
    /// Compressed layer digests, bottom first.
    pub(crate) layers: Vec<String>,
    pub(crate) config: ImageConfig,
    /// The manifest's digest, when the image came with one.
    #[serde(default)]
    pub(crate) manifest: Option<String>,
}

/// The image store. Cloning is cheap and shares the state.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    images: Mutex<BTreeMap<String, Record>>,
    /// Digests in use by pulls and imports in flight, with a count.
    pins: Mutex<HashMap<String, usize>>,
    /// One async lock per digest being fetched, so a blob is downloaded once.
    fetches: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    /// The scheme that last worked for a registry host.
    pub(crate) schemes: Mutex<HashMap<String, Scheme>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The scheme cache: which of HTTPS or HTTP last worked for a host.
pub(crate) fn lock_schemes(store: &Store) -> MutexGuard<'_, HashMap<String, Scheme>> {
    lock(&store.inner.schemes)
}

/// Digests held by an operation in flight; dropping it releases them.
pub(crate) struct Pins {
    inner: Arc<Inner>,
    digests: Vec<String>,
}

impl Drop for Pins {
    fn drop(&mut self) {
        let mut pins = lock(&self.inner.pins);
        for d in &self.digests {
            if let Some(n) = pins.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    pins.remove(d);
                }
            }
        }
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, emptying its `tmp/`, and loads the
    /// image records, dropping any whose layers or config are missing.
    pub fn open(dir: &Path) -> crate::Result<Store> {
        for sub in ["blobs/sha256", "layers", "images", "tmp"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p)
                .map_err(|e| Error::file(format!("creating {}", p.display()), e))?;
        }
        let root = dir
            .canonicalize()
            .map_err(|e| Error::file(format!("resolving {}", dir.display()), e))?;
        for entry in fs::read_dir(root.join("tmp"))? {
            remove_tree(&entry?.path());
        }
        let mut images = BTreeMap::new();
        for entry in fs::read_dir(root.join("images"))? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let record: Record = match fs::read(&path)
                .map_err(Error::from)
                .and_then(|b| Ok(serde_json::from_slice(&b)?))
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "dropping unreadable image record");
                    remove_tree(&path);
                    continue;
                }
            };
            let complete = record
                .layers
                .iter()
                .all(|l| hex(l).is_ok_and(|h| root.join("layers").join(h).is_dir()));
            if !complete {
                tracing::warn!(id = %record.id, "dropping image record whose layers are missing");
                remove_tree(&path);
                continue;
            }
            images.insert(record.id.clone(), record);
        }
        let store = Store {
            inner: Arc::new(Inner {
                root,
                images: Mutex::new(images),
                pins: Mutex::new(HashMap::new()),
                fetches: Mutex::new(HashMap::new()),
                schemes: Mutex::new(HashMap::new()),
            }),
        };
        Ok(store)
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub(crate) fn tmp(&self) -> PathBuf {
        self.inner.root.join("tmp")
    }

    pub(crate) fn layers_dir(&self) -> PathBuf {
        self.inner.root.join("layers")
    }

    pub(crate) fn layer_path(&self, digest: &str) -> crate::Result<PathBuf> {
        Ok(self.layers_dir().join(hex(digest)?))
    }

    pub(crate) fn blob_path(&self, digest: &str) -> crate::Result<PathBuf> {
        Ok(self.inner.root.join("blobs/sha256").join(hex(digest)?))
    }

    /// Pins `digests` against garbage collection until the guard drops.
    pub(crate) fn pin(&self, digests: impl IntoIterator<Item = String>) -> Pins {
        let digests: Vec<String> = digests.into_iter().collect();
        let mut pins = lock(&self.inner.pins);
        for d in &digests {
            *pins.entry(d.clone()).or_default() += 1;
        }
        Pins {
            inner: self.inner.clone(),
            digests,
        }
    }

    /// The async lock for fetching `digest`.
    pub(crate) fn fetch_lock(&self, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = lock(&self.inner.fetches);
        if let Some(l) = map.get(digest).and_then(Weak::upgrade) {
            return l;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let l = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(digest.to_string(), Arc::downgrade(&l));
        l
    }

    /// Stores a small blob (config, manifest) after checking its digest.
    pub(crate) fn put_blob(
        &self,
        digest: &str,
        bytes: &[u8],
        what: &'static str,
    ) -> crate::Result<()> {
        digest::verify(bytes, digest, what)?;
        let path = self.blob_path(digest)?;
        if path.is_file() {
            return Ok(());
        }
        let tmp = tmp_path(&self.tmp(), "blob");
        fs::write(&tmp, bytes).map_err(|e| Error::file(format!("writing {}", tmp.display()), e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::file(format!("storing blob {digest}"), e))?;
        Ok(())
    }

    /// A stored blob, checked against its digest (a damaged file is removed).
    pub(crate) fn read_blob(&self, digest: &str) -> Option<Vec<u8>> {
        let path = self.blob_path(digest).ok()?;
        let bytes = fs::read(&path).ok()?;
        if digest::verify(&bytes, digest, "blob").is_err() {
            tracing::warn!(%digest, "stored blob is damaged; removing it");
            remove_tree(&path);
            return None;
        }
        Some(bytes)
    }

    fn to_image(&self, r: &Record) -> Image {
        Image {
            references: r.references.clone(),
            id: r.id.clone(),
            repo_digest: r.repo_digest.clone(),
            size: r.size,
            layers: r
                .layers
                .iter()
                .map(|l| self.layers_dir().join(hex(l).unwrap_or(l)))
                .collect(),
            config: r.config.clone(),
        }
    }

    /// When the image with `id` was last pulled or imported (its record written).
    pub fn stored_at(&self, id: &str) -> Option<std::time::SystemTime> {
        let path = self
            .inner
            .root
            .join("images")
            .join(format!("{}.json", hex(id).ok()?));
        fs::metadata(path).and_then(|m| m.modified()).ok()
    }

    fn write_record(&self, r: &Record) -> crate::Result<()> {
        let path = self
            .inner
            .root
            .join("images")
            .join(format!("{}.json", hex(&r.id)?));
        let tmp = tmp_path(&self.tmp(), "record");
        fs::write(&tmp, serde_json::to_vec_pretty(r)?)
            .map_err(|e| Error::file(format!("writing {}", tmp.display()), e))?;
        fs::rename(&tmp, &path)
            .map_err(|e| Error::file(format!("writing {}", path.display()), e))?;
        Ok(())
    }

    /// Records an image (its layers and config already stored): names it by
    /// `record.references`, taking those names from any other image.
    pub(crate) fn commit(&self, record: Record) -> crate::Result<Image> {
        let mut images = lock(&self.inner.images);
        let mut changed = Vec::new();
        for (id, other) in images.iter_mut() {
            if *id == record.id {
                continue;
            }
            let before = other.references.len();
            other.references.retain(|r| !record.references.contains(r));
            if other.references.len() != before {
                changed.push(other.clone());
            }
        }
        for r in &changed {
            self.write_record(r)?;
        }
        let merged = match images.get(&record.id) {
            Some(old) => {
                let mut refs = old.references.clone();
                for r in &record.references {
                    if !refs.contains(r) {
                        refs.push(r.clone());
                    }
                }
                // The same config may come with other layer blobs (another compression):
                // the content is the same (the config's diff ids say so), and containers
                // may be using the layers already recorded, so those stay.
                Record {
                    references: refs,
                    repo_digest: record
                        .repo_digest
                        .clone()
                        .or_else(|| old.repo_digest.clone()),
                    manifest: record.manifest.clone().or_else(|| old.manifest.clone()),
                    layers: old.layers.clone(),
                    size: old.size,
                    ..record
                }
            }
            None => record,
        };
        self.write_record(&merged)?;
        let image = self.to_image(&merged);
        images.insert(merged.id.clone(), merged);
        Ok(image)
    }

    fn find<'a>(images: &'a BTreeMap<String, Record>, key: &str) -> Option<&'a Record> {
        if let Ok(r) = Reference::parse(key) {
            let name = r.to_string();
            let by_digest = r.digest.as_ref().map(|d| format!("{}@{d}", r.name()));
            if let Some(rec) = images.values().find(|rec| {
                rec.references.contains(&name)
                    || (by_digest.is_some() && rec.repo_digest == by_digest)
            }) {
                return Some(rec);
            }
        }
        let prefix = key.strip_prefix("sha256:").unwrap_or(key);
        if prefix.is_empty() || !is_lower_hex(prefix) {
            return None;
        }
        let mut found = images.values().filter(|rec| {
            rec.id
                .strip_prefix("sha256:")
                .is_some_and(|h| h.starts_with(prefix))
        });
        let first = found.next()?;
        if found.next().is_some() {
            return None; // ambiguous
        }
        Some(first)
    }

    /// The image a reference (normalised: `busybox` finds
    /// `docker.io/library/busybox:latest`), a repo digest, or an image id (`sha256:<hex>`
    /// or a unique prefix of the hex) names.
    pub fn get(&self, reference: &str) -> Option<Image> {
        let images = lock(&self.inner.images);
        Self::find(&images, reference).map(|r| self.to_image(r))
    }

    /// All images, in id order.
    pub fn list(&self) -> Vec<Image> {
        let images = lock(&self.inner.images);
        images.values().map(|r| self.to_image(r)).collect()
    }

    /// Removes a name; with an image id, or the image's last name, removes the image.
    /// Then deletes layers and blobs no image uses any more. The caller makes sure no
    /// container still uses the image.
    pub fn remove(&self, reference_or_id: &str) -> crate::Result<()> {
        let mut images = lock(&self.inner.images);
        let Some(record) = Self::find(&images, reference_or_id).cloned() else {
            return Err(Error::NotFound(reference_or_id.to_string()));
        };
        let name = Reference::parse(reference_or_id)
            .ok()
            .map(|r| r.to_string());
        let by_name = name.as_ref().is_some_and(|n| record.references.contains(n));
        let keep = if by_name {
            let mut r = record.clone();
            r.references.retain(|x| Some(x) != name.as_ref());
            (!r.references.is_empty()).then_some(r)
        } else {
            None
        };
        match keep {
            Some(r) => {
                self.write_record(&r)?;
                images.insert(r.id.clone(), r);
            }
            None => {
                let path = self
                    .inner
                    .root
                    .join("images")
                    .join(format!("{}.json", hex(&record.id)?));
                fs::remove_file(&path)
                    .map_err(|e| Error::file(format!("removing {}", path.display()), e))?;
                images.remove(&record.id);
                self.collect_garbage(&images);
            }
        }
        Ok(())
    }

    /// Deletes layers and blobs that no image and no operation in flight uses.
    fn collect_garbage(&self, images: &BTreeMap<String, Record>) {
        let mut used: BTreeSet<String> = BTreeSet::new();
        for r in images.values() {
            used.extend(
                r.layers
                    .iter()
                    .filter_map(|l| hex(l).ok().map(str::to_string)),
            );
            used.extend(hex(&r.id).ok().map(str::to_string));
            if let Some(m) = &r.manifest {
                used.extend(hex(m).ok().map(str::to_string));
            }
        }
        // Victims move into tmp/ while the pins are locked (a pull pins before it looks),
        // and are deleted afterwards.
        let mut victims = Vec::new();
        {
            let pins = lock(&self.inner.pins);
            let pinned: BTreeSet<&str> = pins.keys().filter_map(|d| hex(d).ok()).collect();
            for dir in [self.layers_dir(), self.inner.root.join("blobs/sha256")] {
                let Ok(entries) = fs::read_dir(&dir) else {
                    continue;
                };
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if used.contains(&name) || pinned.contains(name.as_str()) {
                        continue;
                    }
                    let to = tmp_path(&self.tmp(), "gc");
                    match fs::rename(e.path(), &to) {
                        Ok(()) => victims.push(to),
                        Err(err) => tracing::warn!(path = %e.path().display(), error = %err, "gc"),
                    }
                }
            }
        }
        for v in victims {
            remove_tree(&v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id_seed: &[u8], refs: &[&str], layers: &[String]) -> Record {
        Record {
            id: digest::sha256(id_seed),
            references: refs.iter().map(|s| s.to_string()).collect(),
            repo_digest: None,
            size: 1,
            layers: layers.to_vec(),
            config: ImageConfig::default(),
            manifest: None,
        }
    }

    #[test]
    fn names_move_and_removal_collects_layers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let l1 = digest::sha256(b"l1");
        let l2 = digest::sha256(b"l2");
        for l in [&l1, &l2] {
            fs::create_dir(store.layer_path(l).unwrap()).unwrap();
        }
        let a = store
            .commit(record(
                b"a",
                &["docker.io/library/app:latest", "docker.io/library/app:1"],
                std::slice::from_ref(&l1),
            ))
            .unwrap();
        assert_eq!(a.layers, [store.layer_path(&l1).unwrap()]);
        // The :latest tag moves to a new image; the old keeps :1.
        let b = store
            .commit(record(
                b"b",
                &["docker.io/library/app:latest"],
                &[l1.clone(), l2.clone()],
            ))
            .unwrap();
        assert_eq!(store.get("app").unwrap().id, b.id);
        assert_eq!(store.get("app:1").unwrap().id, a.id);
        assert_eq!(store.get("docker.io/library/app:1").unwrap().id, a.id);
        assert_eq!(store.get(&a.id).unwrap().id, a.id);
        assert_eq!(store.get(&a.id[7..19]).unwrap().id, a.id);
        assert!(store.get("nope").is_none());
        assert_eq!(store.list().len(), 2);

        // Reopening reads the same records.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.get("app:1").unwrap().references,
            ["docker.io/library/app:1"]
        );

        store.remove("app:1").unwrap();
        assert!(store.get(&a.id).is_none());
        assert!(store.layer_path(&l1).unwrap().exists(), "still used by b");
        store.remove(&b.id).unwrap();
        assert!(!store.layer_path(&l1).unwrap().exists());
        assert!(!store.layer_path(&l2).unwrap().exists());
        assert!(store.list().is_empty());
        assert!(store.remove("app").is_err());
        assert_eq!(fs::read_dir(store.tmp()).unwrap().count(), 0);
    }

    #[test]
    fn open_cleans_tmp_and_drops_broken_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::write(store.tmp().join("leftover"), b"x").unwrap();
        fs::create_dir(store.tmp().join("half-layer")).unwrap();
        store
            .commit(record(
                b"x",
                &["docker.io/library/x:latest"],
                &[digest::sha256(b"missing")],
            ))
            .unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(store.tmp()).unwrap().count(), 0);
        assert!(
            store.list().is_empty(),
            "a record whose layer is missing is dropped"
        );
    }

    #[test]
    fn store_and_pull_can_move_between_threads() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        send_sync(&store);
        let registries = crate::Registries::default();
        let pull = store.pull("busybox", &crate::Auth::Anonymous, &registries);
        send(&pull);
    }

    #[test]
    fn pinned_layers_survive_collection() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let l = digest::sha256(b"in flight");
        fs::create_dir(store.layer_path(&l).unwrap()).unwrap();
        let a = store
            .commit(record(b"a", &["docker.io/library/a:latest"], &[]))
            .unwrap();
        let pins = store.pin([l.clone()]);
        store.remove(&a.id).unwrap();
        assert!(store.layer_path(&l).unwrap().exists());
        drop(pins);
        let a = store
            .commit(record(b"a", &["docker.io/library/a:latest"], &[]))
            .unwrap();
        store.remove(&a.id).unwrap();
        assert!(!store.layer_path(&l).unwrap().exists());
    }
}
