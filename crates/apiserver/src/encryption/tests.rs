//! The encrypting store over a real SQLite store: nothing configured reaches the database in
//! plaintext, reads and watches see plaintext, older keys stay readable and are rewritten.

use std::sync::Arc;

use futures::StreamExt;
use store::sqlite::{SqliteOptions, SqliteStore};
use store::{RangeOptions, Store, WatchEvent, WatchOptions};

use super::Encrypted;

const KEY: &str = "/registry/secrets/team/s";
const PLAIN: &[u8] = br#"{"data":{"password":"aHVudGVyMg=="}}"#;

fn config(dir: &std::path::Path, providers: &str) -> std::path::PathBuf {
    let file = dir.join("encryption.yaml");
    let text = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n{providers}"
    );
    std::fs::write(&file, text).unwrap();
    file
}

const AESCBC: &str = "  - aescbc:\n      keys:\n      - name: first\n        secret: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";
const IDENTITY: &str = "  - identity: {}\n";

async fn sqlite(dir: &std::path::Path) -> Arc<dyn Store> {
    let s = SqliteStore::open(dir.join("db"), SqliteOptions { durable: false });
    Arc::new(s.await.unwrap())
}

#[tokio::test]
async fn values_are_sealed_in_the_store_and_plain_above_it() {
    let dir = tempfile::tempdir().unwrap();
    let raw = sqlite(dir.path()).await;
    let file = config(dir.path(), &format!("{AESCBC}{IDENTITY}"));
    let enc = Encrypted::new(raw.clone(), &file).unwrap();
    let mut watch = enc
        .watch("/registry/secrets/", 0, WatchOptions::default())
        .await
        .unwrap();
    enc.create(KEY, PLAIN.to_vec()).await.unwrap();
    enc.create("/registry/configmaps/team/c", b"{}".to_vec())
        .await
        .unwrap();

    let stored = raw.get(KEY).await.unwrap().unwrap().value;
    assert!(stored.starts_with(b"k8s:enc:aescbc:v1:first:"));
    assert!(!stored.windows(8).any(|w| w == b"aHVudGVy"));
    assert_eq!(
        raw.get("/registry/configmaps/team/c")
            .await
            .unwrap()
            .unwrap()
            .value,
        b"{}"
    );
    assert_eq!(enc.get(KEY).await.unwrap().unwrap().value, PLAIN);
    let listed = enc
        .range("/registry/", RangeOptions::default())
        .await
        .unwrap();
    assert!(listed.kvs.iter().any(|kv| kv.value == PLAIN));
    match watch.next().await.unwrap().unwrap() {
        WatchEvent::Put { kv, .. } => assert_eq!(kv.value, PLAIN),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn plaintext_stays_readable_and_rotation_rewrites_everything() {
    let dir = tempfile::tempdir().unwrap();
    let raw = sqlite(dir.path()).await;
    raw.create(KEY, PLAIN.to_vec()).await.unwrap();
    let file = config(dir.path(), &format!("{AESCBC}{IDENTITY}"));
    let enc = Encrypted::new(raw.clone(), &file).unwrap();
    assert_eq!(enc.get(KEY).await.unwrap().unwrap().value, PLAIN);
    assert_eq!(enc.reencrypt().await.unwrap(), 1);
    assert_eq!(enc.reencrypt().await.unwrap(), 0);
    assert!(
        raw.get(KEY)
            .await
            .unwrap()
            .unwrap()
            .value
            .starts_with(b"k8s:enc:aescbc:v1:first:")
    );

    assert_eq!(enc.rotate().await.unwrap(), 1);
    let stored = raw.get(KEY).await.unwrap().unwrap().value;
    assert!(
        stored.starts_with(b"k8s:enc:aescbc:v1:aescbckey-"),
        "{}",
        String::from_utf8_lossy(&stored)
    );
    assert_eq!(enc.get(KEY).await.unwrap().unwrap().value, PLAIN);
    let status = enc.status().await.unwrap();
    assert_eq!(
        status["resources"][0]["providers"][0]["keys"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Without the keys that wrote it, a value cannot be read.
    let plain_only = config(dir.path(), IDENTITY);
    let identity = Encrypted::new(raw.clone(), &plain_only).unwrap();
    assert!(identity.get(KEY).await.is_err());
}
