//! Encryption at rest end to end: with `--secrets-encryption` a Secret's data is nowhere in
//! the database files (SQLite) or the raw etcd value, kubectl reads it back as written,
//! `rudder secrets-encrypt status` and `rotate-keys` show and change the key, and a restart
//! keeps everything readable.

mod support;

use std::process::Command;

use support::Cluster;

const PASSWORD_B64: &str = "aHVudGVyMg==";

fn create_secret(c: &Cluster, name: &str) {
    c.kubectl(&[
        "create",
        "secret",
        "generic",
        name,
        "--from-literal=password=hunter2",
    ])
    .out();
}

fn read_back(c: &Cluster, name: &str) -> String {
    let path = "jsonpath={.data.password}";
    c.kubectl(&["get", "secret", name, "-o", path])
        .out()
        .to_string()
}

/// Every byte of the files under `dir` (the database, its journal).
fn raw_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_file() {
            all.extend(std::fs::read(entry.path()).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn secrets_encrypt(c: &Cluster, action: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args(["secrets-encrypt", action, "--data-dir"])
        .arg(c.dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "secrets-encrypt {action}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// The words of the status line of key `name`.
fn key_line(status: &str, name: &str) -> Vec<String> {
    let line = status
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == name));
    let line = line.unwrap_or_else(|| panic!("no key {name} in:\n{status}"));
    line.split_whitespace().map(String::from).collect()
}

#[test]
fn secrets_are_sealed_in_sqlite_and_keys_rotate() {
    let mut c = Cluster::start(&["--secrets-encryption"]);
    create_secret(&c, "s");
    assert_eq!(read_back(&c, "s"), PASSWORD_B64);
    let db = raw_bytes(&c.dir.path().join("db"));
    assert!(
        contains(&db, "k8s:enc:aescbc:v1:aescbckey:"),
        "no sealed value in the database"
    );
    assert!(
        !contains(&db, "hunter2") && !contains(&db, "aHVudGVyMg"),
        "plaintext in the database"
    );

    let status = secrets_encrypt(&c, "status");
    assert!(
        status.starts_with("Encryption Status: Enabled\n"),
        "{status}"
    );
    let active = key_line(&status, "aescbckey");
    assert_eq!(active[..3], ["*", "AES-CBC", "aescbckey"]);

    let rotated = secrets_encrypt(&c, "rotate-keys");
    assert!(rotated.starts_with("rotate-keys: "), "{rotated}");
    let status = secrets_encrypt(&c, "status");
    assert_eq!(
        key_line(&status, "aescbckey")[..3],
        ["AES-CBC", "aescbckey", "0"]
    );
    let newest = status
        .lines()
        .find(|l| l.trim_start().starts_with('*'))
        .unwrap();
    assert!(newest.contains("aescbckey-"), "{status}");
    assert_eq!(
        secrets_encrypt(&c, "reencrypt"),
        "reencrypt: 0 values re-encrypted\n"
    );

    c.restart();
    assert_eq!(read_back(&c, "s"), PASSWORD_B64);
    create_secret(&c, "t");
    assert_eq!(read_back(&c, "t"), PASSWORD_B64);
}

#[test]
fn secrets_are_sealed_in_etcd() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let etcd = rt.block_on(store::testing::EtcdServer::start());
    let endpoint = format!("etcd://{}", etcd.endpoint());
    let c = Cluster::start(&["--datastore-endpoint", &endpoint, "--secrets-encryption"]);
    create_secret(&c, "s");
    assert_eq!(read_back(&c, "s"), PASSWORD_B64);
    let raw = rt.block_on(async {
        let parsed = store::Endpoint::parse(&endpoint, c.dir.path()).unwrap();
        let raw = store::open(&parsed, std::time::Duration::from_secs(10), None)
            .await
            .unwrap();
        raw.get("/registry/secrets/default/s")
            .await
            .unwrap()
            .unwrap()
            .value
    });
    assert!(raw.starts_with(b"k8s:enc:aescbc:v1:aescbckey:"));
    assert!(!contains(&raw, "hunter2") && !contains(&raw, "aHVudGVyMg"));
    drop(c);
    drop(etcd);
}
