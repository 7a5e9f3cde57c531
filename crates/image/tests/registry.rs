//! End to end against a real registry: Debian's `docker-registry` on 127.0.0.1, images
//! pushed with `skopeo` from an OCI layout built by `support/testimage.rs`.

#[path = "support/testimage.rs"]
mod testimage;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use rudder_image::{Auth, PullErrorKind, Registries, Store};
use testimage::{BUSYBOX_PATH, Registry, busybox_layout, busybox_layout_with_digests};

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).unwrap().count()
}

#[test]
fn sha256_of_the_support_file_is_right() {
    assert_eq!(
        testimage::sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        testimage::sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    let long = vec![b'a'; 1_000_000];
    assert_eq!(
        testimage::sha256_hex(&long),
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    );
}

#[test]
fn the_test_busybox_is_static() {
    assert!(testimage::has_interpreter(&fs::read("/bin/ls").unwrap()));
    assert!(!testimage::has_interpreter(
        &fs::read("/usr/bin/busybox").unwrap()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_busybox_from_a_registry() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let l = busybox_layout_with_digests(&layout, "1.0");
    let reference = registry.push_layout(&layout, "1.0", "busybox");
    assert_eq!(
        reference,
        format!("127.0.0.1:{}/busybox:1.0", registry.port)
    );

    let store = Store::open(&work.path().join("store")).unwrap();
    let none = Registries::default();
    // Two pulls of the same image at once.
    let (a, b) = tokio::join!(
        store.pull(&reference, &Auth::Anonymous, &none),
        store.pull(&reference, &Auth::Anonymous, &none)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.id, b.id);
    assert_eq!(a.id, l.config_digest);
    assert_eq!(a.references, [reference.as_str()]);
    assert_eq!(
        a.repo_digest,
        Some(format!("{}/busybox@{}", registry.host(), l.manifest_digest))
    );
    assert_eq!(a.size, l.layer_size);
    assert_eq!(a.layers.len(), 1);
    let layer = &a.layers[0];
    assert_eq!(
        layer,
        &store.root().join("layers").join(&l.layer_digest[7..])
    );
    assert_eq!(a.config.cmd, ["sh"]);
    assert_eq!(a.config.env, [BUSYBOX_PATH]);
    assert!(a.config.entrypoint.is_empty());

    // The unpacked layer.
    let busybox = layer.join("bin/busybox");
    assert_eq!(
        fs::metadata(&busybox).unwrap().len(),
        fs::metadata("/usr/bin/busybox").unwrap().len()
    );
    assert_eq!(
        fs::metadata(&busybox).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    for applet in ["sh", "echo", "httpd", "sleep", "cat", "tar"] {
        assert_eq!(
            fs::read_link(layer.join("bin").join(applet)).unwrap(),
            Path::new("busybox"),
            "{applet}"
        );
    }
    assert_eq!(
        fs::metadata(layer.join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );
    for dir in ["etc", "proc", "sys", "dev", "var/www"] {
        assert!(layer.join(dir).is_dir(), "{dir}");
    }

    // Looking it up.
    assert_eq!(store.get(&reference).unwrap().id, a.id);
    assert_eq!(store.get(&a.id).unwrap().id, a.id);
    assert_eq!(store.get(&a.id[7..19]).unwrap().id, a.id);
    assert_eq!(store.list().len(), 1);
    assert_eq!(count(&store.root().join("tmp")), 0);

    // Pulling again (and by digest) finds everything in place.
    let again = store
        .pull(&reference, &Auth::Anonymous, &none)
        .await
        .unwrap();
    assert_eq!(again, a);
    let by_digest = format!("{}/busybox@{}", registry.host(), l.manifest_digest);
    let d = store
        .pull(&by_digest, &Auth::Anonymous, &none)
        .await
        .unwrap();
    assert_eq!(d.id, a.id);
    assert_eq!(d.references, [reference.clone(), by_digest.clone()]);
    assert_eq!(store.get(&by_digest).unwrap().id, a.id);

    // Removing one name keeps the image; removing it by id deletes its layer.
    store.remove(&by_digest).unwrap();
    assert_eq!(
        store.get(&reference).unwrap().references,
        [reference.as_str()]
    );
    store.remove(&a.id).unwrap();
    assert!(store.get(&reference).is_none());
    assert!(!layer.exists());
    assert_eq!(count(&store.root().join("layers")), 0);
}

#[tokio::test]
async fn missing_image_reports_the_registry_error() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    busybox_layout(&layout, "1.0");
    registry.push_layout(&layout, "1.0", "busybox");
    let store = Store::open(&work.path().join("store")).unwrap();
    let none = Registries::default();

    let missing_repo = format!("{}/nope:latest", registry.host());
    let e = store
        .pull(&missing_repo, &Auth::Anonymous, &none)
        .await
        .unwrap_err();
    eprintln!("missing repository: {e}");
    assert_eq!(e.kind, PullErrorKind::NotFound, "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "failed to pull and unpack image \"{missing_repo}\": failed to resolve reference \"{missing_repo}\": {missing_repo}: not found"
        )),
        "{text}"
    );
    // The registry's own words.
    assert!(text.contains("manifest unknown"), "{text}");

    let missing_tag = format!("{}/busybox:2.0", registry.host());
    let e = store
        .pull(&missing_tag, &Auth::Anonymous, &none)
        .await
        .unwrap_err();
    eprintln!("missing tag: {e}");
    assert_eq!(e.kind, PullErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("manifest unknown"), "{e}");

    // Nothing listens: the connection error says so.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = store
        .pull(&format!("127.0.0.1:{closed}/x:1"), &Auth::Anonymous, &none)
        .await
        .unwrap_err();
    eprintln!("nothing listening: {e}");
    assert_eq!(e.kind, PullErrorKind::Registry, "{e}");
    assert!(e.to_string().contains("failed to do request"), "{e}");
    assert!(store.list().is_empty());
}

#[tokio::test]
async fn corrupted_blob_fails_with_a_digest_mismatch() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let l = busybox_layout_with_digests(&layout, "1.0");
    let reference = registry.push_layout(&layout, "1.0", "busybox");

    // Flip one byte of the layer in the registry's storage (same size, other content).
    let blob = registry.blob_path(&l.layer_digest);
    let mut bytes = fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&blob, &bytes).unwrap();

    let store = Store::open(&work.path().join("store")).unwrap();
    let e = store
        .pull(&reference, &Auth::Anonymous, &Registries::default())
        .await
        .unwrap_err();
    eprintln!("corrupted layer: {e}");
    assert_eq!(e.kind, PullErrorKind::DigestMismatch, "{e}");
    let text = e.to_string();
    assert!(text.contains(&l.layer_digest), "{text}");
    assert!(text.contains("digest mismatch"), "{text}");
    // Nothing half-stored.
    assert!(store.list().is_empty());
    assert_eq!(count(&store.root().join("layers")), 0);
    assert_eq!(count(&store.root().join("images")), 0);
    assert_eq!(count(&store.root().join("tmp")), 0);
}

#[tokio::test]
async fn a_mirror_serves_docker_hub_names() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let l = busybox_layout_with_digests(&layout, "mirrored");
    registry.push_layout(&layout, "mirrored", "library/busybox");
    let yaml = work.path().join("registries.yaml");
    fs::write(
        &yaml,
        format!(
            "mirrors:\n  docker.io:\n    endpoint:\n      - \"http://{}\"\n",
            registry.host()
        ),
    )
    .unwrap();
    let registries = Registries::load(&yaml).unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let image = store
        .pull("busybox:mirrored", &Auth::Anonymous, &registries)
        .await
        .unwrap();
    assert_eq!(image.references, ["docker.io/library/busybox:mirrored"]);
    assert_eq!(
        image.repo_digest,
        Some(format!("docker.io/library/busybox@{}", l.manifest_digest))
    );
    assert_eq!(store.get("busybox:mirrored").unwrap().id, l.config_digest);
}

#[test]
fn imports_archives_written_by_skopeo() {
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let l = busybox_layout_with_digests(&layout, "1.0");
    let skopeo = |dest: String| {
        let out = std::process::Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--quiet"])
            .arg(format!("oci:{}:1.0", layout.display()))
            .arg(&dest)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy to {dest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let docker_archive = work.path().join("docker.tar");
    skopeo(format!(
        "docker-archive:{}:example.com/tools/busybox:1.0",
        docker_archive.display()
    ));
    let oci_archive = work.path().join("oci.tar");
    skopeo(format!(
        "oci-archive:{}:localhost/busybox:2.0",
        oci_archive.display()
    ));

    let store = Store::open(&work.path().join("store")).unwrap();
    let images = store.import(&docker_archive).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].references, ["example.com/tools/busybox:1.0"]);
    assert_eq!(images[0].config.cmd, ["sh"]);
    assert!(images[0].layers[0].join("bin/busybox").is_file());

    let images = store.import(&oci_archive).unwrap();
    assert_eq!(images[0].id, l.config_digest);
    // skopeo keeps the config, so both archives hold the same image (by id).
    assert_eq!(
        images[0].references,
        ["example.com/tools/busybox:1.0", "localhost/busybox:2.0"]
    );

    // The layout directory itself: its bare tag names nothing, the image is found by id.
    let images = store.import(&layout).unwrap();
    assert_eq!(store.get(&images[0].id).unwrap().id, l.config_digest);
    assert_eq!(count(&store.root().join("tmp")), 0);
}

fn skopeo_push(args: &[&str], src: String, dest: String) {
    let out = std::process::Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
        ])
        .args(args)
        .arg(&src)
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy {src} {dest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn pulls_an_index_and_docker_media_types() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let l = busybox_layout_with_digests(&layout, "multi");

    // Wrap the manifest in an index after another platform's image (same layer, its own
    // config and manifest).
    let blobs = layout.join("blobs/sha256");
    let manifest = fs::read(blobs.join(&l.manifest_digest[7..])).unwrap();
    let config = fs::read_to_string(blobs.join(&l.config_digest[7..])).unwrap();
    let other_arch = if testimage::oci_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let other_config = config.replace(
        &format!(r#""architecture":"{}""#, testimage::oci_arch()),
        &format!(r#""architecture":"{other_arch}""#),
    );
    assert_ne!(other_config, config);
    let other_config_hex = testimage::sha256_hex(other_config.as_bytes());
    fs::write(blobs.join(&other_config_hex), &other_config).unwrap();
    let other_manifest = String::from_utf8(manifest.clone())
        .unwrap()
        .replace(&l.config_digest, &format!("sha256:{other_config_hex}"));
    let other_manifest_hex = testimage::sha256_hex(other_manifest.as_bytes());
    fs::write(blobs.join(&other_manifest_hex), &other_manifest).unwrap();
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
          {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{other_manifest_hex}","size":{os},"platform":{{"architecture":"{other_arch}","os":"linux"}}}},
          {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":{s},"platform":{{"architecture":"{arch}","os":"linux"}}}}]}}"#,
        os = other_manifest.len(),
        d = l.manifest_digest,
        s = manifest.len(),
        arch = testimage::oci_arch(),
    );
    let index_hex = testimage::sha256_hex(index.as_bytes());
    fs::write(layout.join("blobs/sha256").join(&index_hex), &index).unwrap();
    fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:{index_hex}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"multi"}}}}]}}"#,
            index.len()
        ),
    )
    .unwrap();
    let multi = format!("{}/busybox:multi", registry.host());
    skopeo_push(
        &["--all"],
        format!("oci:{}:multi", layout.display()),
        format!("docker://{multi}"),
    );

    let store = Store::open(&work.path().join("store")).unwrap();
    let none = Registries::default();
    let image = store.pull(&multi, &Auth::Anonymous, &none).await.unwrap();
    assert_eq!(image.id, l.config_digest);
    // The repo digest is the index's: what the tag points at.
    assert_eq!(
        image.repo_digest,
        Some(format!("{}/busybox@sha256:{index_hex}", registry.host()))
    );

    // Docker v2 schema 2 media types (skopeo converts on the way).
    let v2 = format!("{}/busybox:v2s2", registry.host());
    skopeo_push(
        &["--format", "v2s2"],
        format!("oci:{}:multi", layout.display()),
        format!("docker://{v2}"),
    );
    let image = store.pull(&v2, &Auth::Anonymous, &none).await.unwrap();
    assert_eq!(image.id, l.config_digest);
    assert!(image.layers[0].join("bin/busybox").is_file());
    assert_ne!(
        image.repo_digest,
        Some(format!("{}/busybox@{}", registry.host(), l.manifest_digest)),
        "a converted manifest has a digest of its own"
    );
}
