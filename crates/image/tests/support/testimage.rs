//! Test images and a test registry, for end-to-end tests of this crate and of others
//! (include it with `#[path = "../../image/tests/support/testimage.rs"] mod testimage;`).
//!
//! - [`busybox_layout`] writes an OCI image layout holding a busybox image: one gzip
//!   layer with the statically linked `/usr/bin/busybox` as `/bin/busybox`, applet
//!   symlinks (`/bin/sh`, `/bin/echo`, `/bin/httpd`, ...), the usual top directories and
//!   a minimal `/etc/passwd` and `/etc/group`; config `Cmd ["sh"]` and the usual `PATH`.
//! - [`Registry`] runs Debian's `docker-registry` on 127.0.0.1 (plain HTTP, storage in a
//!   temporary directory) and pushes layouts to it with `skopeo`.
//!
//! Needs `/usr/bin/busybox` (busybox-static), `docker-registry` and `skopeo`. Uses only
//! std, `tempfile`, `flate2` and `tar`.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The PATH in the busybox image's config.
pub const BUSYBOX_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Applets linked to /bin/busybox.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh",
    "ash",
    "echo",
    "httpd",
    "sleep",
    "cat",
    "tar",
    "ls",
    "mkdir",
    "rm",
    "rmdir",
    "cp",
    "mv",
    "ln",
    "touch",
    "chmod",
    "chown",
    "env",
    "id",
    "hostname",
    "true",
    "false",
    "test",
    "[",
    "ps",
    "kill",
    "grep",
    "sed",
    "awk",
    "head",
    "tail",
    "wc",
    "sort",
    "uniq",
    "cut",
    "tr",
    "tee",
    "date",
    "uname",
    "pwd",
    "whoami",
    "printf",
    "seq",
    "expr",
    "basename",
    "dirname",
    "readlink",
    "realpath",
    "stat",
    "df",
    "du",
    "find",
    "xargs",
    "mount",
    "umount",
    "wget",
    "nc",
    "unshare",
    "nslookup",
    "ping",
    "ip",
    "ifconfig",
    "route",
    "netstat",
    "timeout",
    "yes",
    "md5sum",
    "sha256sum",
    "base64",
    "dd",
    "gzip",
    "gunzip",
    "zcat",
    "vi",
    "less",
    "more",
    "sync",
    "top",
    "free",
    "uptime",
    "nproc",
    "mktemp",
    "which",
    "diff",
    "od",
    "hexdump",
    "watch",
];

/// The host's architecture as OCI names it.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// What [`busybox_layout`] wrote.
#[derive(Clone, Debug)]
pub struct Layout {
    /// `sha256:<hex>` of the manifest.
    pub manifest_digest: String,
    /// `sha256:<hex>` of the config: the image id.
    pub config_digest: String,
    /// `sha256:<hex>` of the (gzip) layer.
    pub layer_digest: String,
    /// Size of the gzip layer in bytes.
    pub layer_size: u64,
    /// `sha256:<hex>` of the uncompressed layer tar.
    pub diff_id: String,
}

/// Writes an OCI image layout with a busybox image tagged `tag` into `dir` (created if
/// missing; an existing `index.json` is replaced). The layer is reproducible: the same
/// busybox binary always gives the same digests.
pub fn busybox_layout(dir: &Path, tag: &str) {
    busybox_layout_with_digests(dir, tag);
}

/// [`busybox_layout`], returning the digests it wrote.
pub fn busybox_layout_with_digests(dir: &Path, tag: &str) -> Layout {
    let busybox = std::fs::read("/usr/bin/busybox")
        .expect("/usr/bin/busybox (install busybox-static: it must be statically linked)");
    assert!(
        !has_interpreter(&busybox),
        "/usr/bin/busybox is dynamically linked: install busybox-static"
    );
    let layer_tar = busybox_tar(&busybox);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&layer_tar).unwrap();
    let layer = gz.finish().unwrap();

    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> String {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    };
    let layer_digest = put(&layer);
    let diff_id = format!("sha256:{}", sha256_hex(&layer_tar));
    let config = format!(
        concat!(
            r#"{{"architecture":"{arch}","os":"linux","created":"2024-01-01T00:00:00Z","#,
            r#""config":{{"Env":["{path}"],"Cmd":["sh"]}},"#,
            r#""rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}},"#,
            r#""history":[{{"created":"2024-01-01T00:00:00Z","created_by":"rudder testimage"}}]}}"#
        ),
        arch = oci_arch(),
        path = BUSYBOX_PATH,
        diff_id = diff_id,
    );
    let config_digest = put(config.as_bytes());
    let manifest = format!(
        concat!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
            r#""config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"#,
            r#""layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{ld}","size":{ls}}}]}}"#
        ),
        cd = config_digest,
        cs = config.len(),
        ld = layer_digest,
        ls = layer.len(),
    );
    let manifest_digest = put(manifest.as_bytes());
    let index = format!(
        concat!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":["#,
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{ms},"#,
            r#""annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#
        ),
        md = manifest_digest,
        ms = manifest.len(),
        tag = tag,
    );
    std::fs::write(dir.join("index.json"), index).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    Layout {
        manifest_digest,
        config_digest,
        layer_digest,
        layer_size: layer.len() as u64,
        diff_id,
    }
}

/// Whether a 64-bit little-endian ELF file asks for a dynamic loader (PT_INTERP).
pub fn has_interpreter(elf: &[u8]) -> bool {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false; // not ELF64 LE: don't guess
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        elf.get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap()) == 3)
    })
}

fn busybox_tar(busybox: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_704_067_200); // 2024-01-01
        h
    };
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("var", 0o755),
        ("var/www", 0o755),
    ] {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        b.append_data(&mut h, format!("{dir}/"), std::io::empty())
            .unwrap();
    }
    let mut h = header(tar::EntryType::Regular, 0o755, busybox.len() as u64);
    b.append_data(&mut h, "bin/busybox", busybox).unwrap();
    for applet in BUSYBOX_APPLETS {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    let files: [(&str, &str); 3] = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("var/www/index.html", "hello from busybox\n"),
    ];
    for (path, content) in files {
        let mut h = header(tar::EntryType::Regular, 0o644, content.len() as u64);
        b.append_data(&mut h, path, content.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

/// A `docker-registry` serving plain HTTP on 127.0.0.1; stopped, and its storage
/// removed, on drop.
pub struct Registry {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
    /// The user and password it asks for, if it does.
    pub creds: Option<(&'static str, &'static str)>,
}

/// The one account of [`Registry::start_with_basic_auth`].
pub const REGISTRY_USER: &str = "puller";
/// Its password.
pub const REGISTRY_PASSWORD: &str = "s3cret";
/// Its htpasswd line (bcrypt, the only hash docker-registry reads; made with Python's
/// `crypt.crypt(REGISTRY_PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))`).
const REGISTRY_HTPASSWD: &str =
    "puller:$2b$04$M7zkXd4UZTYXThJu29iO0ecTOyQJ1lNcqFlxc9R4c3qsghatL0z3u";

impl Registry {
    /// Starts a registry on a free port and waits until it answers `GET /v2/`.
    pub fn start() -> Registry {
        Registry::start_with(false)
    }

    /// A registry that asks for basic authentication ([`REGISTRY_USER`], [`REGISTRY_PASSWORD`]).
    pub fn start_with_basic_auth() -> Registry {
        Registry::start_with(true)
    }

    fn start_with(basic_auth: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n{}",
                dir.path().join("data").display(),
                if basic_auth {
                    format!(
                        "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                        dir.path().join("htpasswd").display()
                    )
                } else {
                    String::new()
                }
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("htpasswd"), REGISTRY_HTPASSWD).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry (Debian package docker-registry)");
        let creds = basic_auth.then_some((REGISTRY_USER, REGISTRY_PASSWORD));
        let mut registry = Registry {
            port,
            child,
            dir,
            creds,
        };
        // Without credentials, an authenticating registry answers 401.
        let ready = if basic_auth { 401 } else { 200 };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = registry.child.try_wait().unwrap() {
                panic!("docker-registry exited ({status}): {}", registry.log());
            }
            if http_get_status(port, "/v2/") == Some(ready) {
                return registry;
            }
            if Instant::now() > deadline {
                panic!("docker-registry did not answer in 30s: {}", registry.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes the image tagged `tag` in the OCI layout `dir` as `name:tag`; returns the
    /// reference `127.0.0.1:<port>/<name>:<tag>`.
    pub fn push_layout(&self, dir: &Path, tag: &str, name: &str) -> String {
        let reference = format!("{}/{name}:{tag}", self.host());
        let mut skopeo = Command::new("skopeo");
        skopeo.args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
        ]);
        if let Some((user, password)) = self.creds {
            skopeo.arg(format!("--dest-creds={user}:{password}"));
        }
        let out = skopeo
            .arg(format!("oci:{}:{tag}", dir.display()))
            .arg(format!("docker://{reference}"))
            .stdin(Stdio::null())
            .output()
            .expect("running skopeo (Debian package skopeo)");
        assert!(
            out.status.success(),
            "skopeo copy to {reference} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        reference
    }

    /// Where the registry keeps the blob `sha256:<hex>` (to damage it in tests).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The status code of a plain HTTP GET to 127.0.0.1:`port`, or `None` if it fails.
fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = std::str::from_utf8(&buf[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// SHA-256 (FIPS 180-4) as lowercase hex, so this file needs no hashing crate.
pub fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for (k, wi) in K.iter().zip(w) {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(*k)
                .wrapping_add(wi);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}
