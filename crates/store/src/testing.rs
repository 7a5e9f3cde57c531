//! Test support (feature `testing`): a real etcd process on loopback, and the conformance suite
//! that every backend must pass.
//!
//! The suite is written once, as functions over a [`Backend`]; [`store_suite!`](crate::store_suite)
//! expands to one `#[tokio::test]` per function for a given backend, the way upstream's storage
//! tests are run against etcd and kine alike.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::Store;
use crate::etcd::EtcdStore;
use crate::sqlite::{SqliteOptions, SqliteStore};

/// A backend under test: its store, and a way to restart it.
#[async_trait]
pub trait Backend: Send {
    /// The store to test.
    fn store(&self) -> Arc<dyn Store>;
    /// Stops the backend the hard way where that is possible (the etcd process gets SIGKILL)
    /// and starts it again on the same data.
    async fn restart(&mut self);
}

/// The embedded backend on a temporary directory.
pub struct SqliteBackend {
    dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
}

impl SqliteBackend {
    /// A fresh database in a new temporary directory.
    pub async fn start() -> SqliteBackend {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Self::open(dir.path()).await;
        SqliteBackend { dir, store }
    }

    async fn open(dir: &Path) -> Arc<SqliteStore> {
        let store = SqliteStore::open(dir.join("state.db"), SqliteOptions::default())
            .await
            .expect("open sqlite store");
        Arc::new(store)
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn restart(&mut self) {
        self.store.close().await.expect("close");
        self.store = Self::open(self.dir.path()).await;
    }
}

/// A real etcd server (Debian's `etcd-server` package) on loopback ports, with a temporary
/// data directory. Killed when dropped.
pub struct EtcdServer {
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    tls: Option<ServerTls>,
}

/// What an etcd serving over TLS is given: its CA, certificate and key files, and what its
/// own readiness check connects with.
struct ServerTls {
    files: [PathBuf; 3],
    client: crate::EtcdTls,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The etcd binary, or a panic that says which package provides it.
pub fn etcd_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .expect("the etcd binary is not on PATH: install Debian's etcd-server package (apt-get install etcd-server)")
}

impl EtcdServer {
    /// Starts etcd and waits until it answers.
    pub async fn start() -> EtcdServer {
        EtcdServer::start_with(None).await
    }

    /// Starts etcd serving clients over TLS only, with the certificate and key files `cert`
    /// and `key`, and asking for client certificates that chain to the CA file `ca`; `client`
    /// is what the readiness check connects with.
    pub async fn start_tls([ca, cert, key]: [&Path; 3], client: crate::EtcdTls) -> EtcdServer {
        let files = [ca.into(), cert.into(), key.into()];
        EtcdServer::start_with(Some(ServerTls { files, client })).await
    }

    async fn start_with(tls: Option<ServerTls>) -> EtcdServer {
        let mut server = EtcdServer {
            dir: tempfile::tempdir().expect("temp dir"),
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
            tls,
        };
        server.spawn().await;
        server
    }

    /// The client address: `127.0.0.1:PORT`, or `https://127.0.0.1:PORT` over TLS.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https://" } else { "" };
        format!("{scheme}127.0.0.1:{}", self.client_port)
    }

    async fn spawn(&mut self) {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new(etcd_binary());
        if let Some(ServerTls {
            files: [ca, cert, key],
            ..
        }) = &self.tls
        {
            command
                .arg("--client-cert-auth")
                .arg(format!("--trusted-ca-file={}", ca.display()))
                .arg(format!("--cert-file={}", cert.display()))
                .arg(format!("--key-file={}", key.display()));
        }
        let child = command
            .arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("etcd").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--logger=zap")
            .arg("--log-level=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
        let tls = self.tls.as_ref().map(|t| &t.client);
        EtcdStore::connect(&[self.endpoint()], Duration::from_secs(30), tls)
            .await
            .expect("etcd did not come up");
    }

    /// SIGKILLs the process and starts it again on the same data and ports.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The etcd backend against its own [`EtcdServer`].
pub struct EtcdBackend {
    /// The server process.
    pub server: EtcdServer,
    store: Arc<EtcdStore>,
}

impl EtcdBackend {
    /// Starts a fresh etcd and connects to it.
    pub async fn start() -> EtcdBackend {
        let server = EtcdServer::start().await;
        let store = Self::connect(&server).await;
        EtcdBackend { server, store }
    }

    async fn connect(server: &EtcdServer) -> Arc<EtcdStore> {
        let store = EtcdStore::connect(&[server.endpoint()], Duration::from_secs(30), None)
            .await
            .expect("connect to etcd");
        Arc::new(store)
    }
}

#[async_trait]
impl Backend for EtcdBackend {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn restart(&mut self) {
        self.server.restart().await;
        self.store = Self::connect(&self.server).await;
    }
}

/// Expands to one test per conformance case, each on a fresh backend from `$start`
/// (an async expression yielding a [`Backend`]).
#[macro_export]
macro_rules! store_suite {
    ($start:expr) => {
        $crate::store_suite!(@cases $start;
            basics, create_if_absent_race, compare_and_swap, concurrent_counter,
            range_and_pagination, remaining_count, consistent_pagination_while_writing,
            read_at_past_revision,
            watch_order_no_gaps, watch_resume_and_replay, watch_from_now, watch_prefix_only,
            compaction, progress_notifications, values_near_the_limit, durable_across_restart);
    };
    (@cases $start:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let mut backend = $start;
                $crate::testing::suite::$case(&mut backend).await;
            }
        )*
    };
}

/// The conformance cases. Each starts from an empty store.
pub mod suite {
    use std::collections::{BTreeMap, HashSet};
    use std::time::Duration;

    use futures::StreamExt;

    use super::Backend;
    use crate::{
        Error, KeyValue, MAX_VALUE_BYTES, RangeOptions, WatchEvent, WatchOptions, WatchStream,
    };

    const WAIT: Duration = Duration::from_secs(30);

    async fn next_event(w: &mut WatchStream) -> crate::Result<WatchEvent> {
        tokio::time::timeout(WAIT, w.next())
            .await
            .expect("no watch event within 30 s")
            .expect("watch stream ended")
    }

    /// The next event that is not a progress notification.
    async fn next_change(w: &mut WatchStream) -> WatchEvent {
        loop {
            match next_event(w).await.expect("watch error") {
                WatchEvent::Progress { .. } => continue,
                ev => return ev,
            }
        }
    }

    fn put_value(ev: &WatchEvent) -> (&str, &[u8]) {
        match ev {
            WatchEvent::Put { kv, .. } => (&kv.key, &kv.value),
            other => panic!("expected a put, got {other:?}"),
        }
    }

    /// Create, read, update, delete: revisions, versions and returned states.
    pub async fn basics(b: &mut dyn Backend) {
        let s = b.store();
        let r0 = s.current_revision().await.unwrap();
        assert_eq!(s.get("/a").await.unwrap(), None);
        let created = s.create("/a", b"1".to_vec()).await.unwrap();
        assert_eq!(created.mod_revision, r0 + 1);
        assert_eq!(created.create_revision, r0 + 1);
        assert_eq!(created.version, 1);
        assert_eq!(s.get("/a").await.unwrap(), Some(created.clone()));
        assert_eq!(s.current_revision().await.unwrap(), r0 + 1);

        let updated = s
            .update("/a", b"2".to_vec(), created.mod_revision)
            .await
            .unwrap();
        assert_eq!(updated.mod_revision, r0 + 2);
        assert_eq!(updated.create_revision, r0 + 1);
        assert_eq!(updated.version, 2);
        assert_eq!(s.get("/a").await.unwrap().unwrap().value, b"2");

        let deleted = s.delete("/a", Some(updated.mod_revision)).await.unwrap();
        assert_eq!(deleted.revision, r0 + 3);
        assert_eq!(deleted.prev, updated);
        assert_eq!(s.get("/a").await.unwrap(), None);

        // Re-creating starts a new life: version 1, new create revision.
        let again = s.create("/a", b"3".to_vec()).await.unwrap();
        assert_eq!((again.create_revision, again.version), (r0 + 4, 1));
        let gone = s.delete("/a", None).await.unwrap();
        assert_eq!(gone.prev, again);
        assert_eq!(s.current_revision().await.unwrap(), r0 + 5);
    }

    /// Sixteen tasks create the same key at once: exactly one succeeds.
    pub async fn create_if_absent_race(b: &mut dyn Backend) {
        let s = b.store();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.create("/race", format!("{i}").into_bytes()).await })
            })
            .collect();
        let mut won = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(kv) => won.push(kv),
                Err(Error::AlreadyExists { key }) => assert_eq!(key, "/race"),
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert_eq!(won.len(), 1, "exactly one create wins");
        assert_eq!(s.get("/race").await.unwrap(), Some(won.remove(0)));
    }

    /// Stale `mod_revision`s are refused with the current state; absent keys are NotFound.
    pub async fn compare_and_swap(b: &mut dyn Backend) {
        let s = b.store();
        let v1 = s.create("/cas", b"1".to_vec()).await.unwrap();
        let v2 = s
            .update("/cas", b"2".to_vec(), v1.mod_revision)
            .await
            .unwrap();
        match s.update("/cas", b"x".to_vec(), v1.mod_revision).await {
            Err(Error::Conflict {
                key,
                expected,
                current,
            }) => {
                assert_eq!((key.as_str(), expected), ("/cas", v1.mod_revision));
                assert_eq!(*current, v2);
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        match s.delete("/cas", Some(v1.mod_revision)).await {
            Err(Error::Conflict { current, .. }) => assert_eq!(*current, v2),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(s.get("/cas").await.unwrap(), Some(v2.clone()));
        assert!(matches!(
            s.update("/missing", b"x".to_vec(), 1).await,
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            s.delete("/missing", None).await,
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            s.delete("/missing", Some(3)).await,
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            s.create("/cas", b"x".to_vec()).await,
            Err(Error::AlreadyExists { .. })
        ));
    }

    /// Sixteen tasks increment one counter by read-modify-CAS: no increment is lost.
    pub async fn concurrent_counter(b: &mut dyn Backend) {
        let s = b.store();
        s.create("/counter", b"0".to_vec()).await.unwrap();
        const TASKS: u64 = 16;
        const EACH: u64 = 25;
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move {
                    let mut cur = s.get("/counter").await.unwrap().unwrap();
                    let mut done = 0;
                    while done < EACH {
                        let n: u64 = String::from_utf8_lossy(&cur.value).parse().unwrap();
                        match s
                            .update(
                                "/counter",
                                (n + 1).to_string().into_bytes(),
                                cur.mod_revision,
                            )
                            .await
                        {
                            Ok(kv) => {
                                cur = kv;
                                done += 1;
                            }
                            Err(Error::Conflict { current, .. }) => cur = *current,
                            Err(e) => panic!("unexpected error {e}"),
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let end = s.get("/counter").await.unwrap().unwrap();
        assert_eq!(end.value, (TASKS * EACH).to_string().into_bytes());
        assert_eq!(end.version, (TASKS * EACH + 1) as i64);
    }

    /// Prefixes select exactly their keys, in order; limit and `after` page through them.
    pub async fn range_and_pagination(b: &mut dyn Backend) {
        let s = b.store();
        for k in ["/r/b", "/r/a", "/r/c/x", "/r/d", "/q/a", "/r", "/rr/a"] {
            s.create(k, k.as_bytes().to_vec()).await.unwrap();
        }
        let all = s.range("/r/", RangeOptions::default()).await.unwrap();
        let keys: Vec<_> = all.kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["/r/a", "/r/b", "/r/c/x", "/r/d"]);
        assert!(!all.more);
        assert_eq!(all.revision, s.current_revision().await.unwrap());
        assert_eq!(all.kvs[0].value, b"/r/a");

        let page1 = s
            .range(
                "/r/",
                RangeOptions {
                    limit: 3,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(page1.kvs.len(), 3);
        assert!(page1.more);
        let page2 = s
            .range(
                "/r/",
                RangeOptions {
                    limit: 3,
                    after: Some(page1.kvs[2].key.clone()),
                    revision: page1.revision,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let keys: Vec<_> = page2.kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["/r/d"]);
        assert!(!page2.more);

        let exact = s.range("/r/b", RangeOptions::default()).await.unwrap();
        assert_eq!(exact.kvs.len(), 1);
        let everything = s.range("", RangeOptions::default()).await.unwrap();
        assert!(everything.kvs.len() >= 7);
        let none = s.range("/nothing/", RangeOptions::default()).await.unwrap();
        assert!(none.kvs.is_empty());
    }

    /// A page cut short by `limit` says how many keys of the range come after it, counted at the
    /// page's revision: keys outside the prefix, deleted keys and later writes do not count.
    // conformance: 154
    pub async fn remaining_count(b: &mut dyn Backend) {
        let s = b.store();
        for i in 0..10 {
            let key = format!("/c/{i:02}");
            s.create(&key, b"v".to_vec()).await.unwrap();
        }
        s.create("/c0", b"outside".to_vec()).await.unwrap();
        s.create("/b/x", b"outside".to_vec()).await.unwrap();
        let gone = s.create("/c/99", b"v".to_vec()).await.unwrap();
        s.delete("/c/99", Some(gone.mod_revision)).await.unwrap();
        let updated = s.get("/c/05").await.unwrap().unwrap();
        s.update("/c/05", b"w".to_vec(), updated.mod_revision)
            .await
            .unwrap();

        let limited = |limit, after: Option<&str>, revision| RangeOptions {
            limit,
            after: after.map(str::to_string),
            revision,
            ..Default::default()
        };
        let page1 = s.range("/c/", limited(3, None, 0)).await.unwrap();
        assert!(page1.more);
        assert_eq!(page1.remaining, 7);

        // Writes after the page's revision do not change what a page at that revision counts.
        s.create("/c/10", b"v".to_vec()).await.unwrap();
        let doomed = s.get("/c/08").await.unwrap().unwrap();
        s.delete("/c/08", Some(doomed.mod_revision)).await.unwrap();
        let page2 = s
            .range("/c/", limited(3, Some(&page1.kvs[2].key), page1.revision))
            .await
            .unwrap();
        let keys: Vec<_> = page2.kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["/c/03", "/c/04", "/c/05"]);
        assert_eq!(page2.remaining, 4);

        // The last page, and an unlimited read, have nothing after them.
        let last = s
            .range("/c/", limited(4, Some("/c/05"), page1.revision))
            .await
            .unwrap();
        assert!(!last.more);
        assert_eq!(last.remaining, 0);
        let all = s.range("/c/", RangeOptions::default()).await.unwrap();
        assert_eq!(all.remaining, 0);

        // At the current revision: /c/08 is gone and /c/10 is there.
        let now = s.range("/c/", limited(2, None, 0)).await.unwrap();
        assert_eq!(now.remaining, 8);
        // The whole keyspace counts too (an empty prefix has no range end).
        let everything = s.range("", limited(1, None, 0)).await.unwrap();
        assert_eq!(everything.remaining, 11);
    }

    /// Pages read at one revision form a consistent snapshot while writers keep changing,
    /// adding and removing keys.
    pub async fn consistent_pagination_while_writing(b: &mut dyn Backend) {
        let s = b.store();
        let mut expected = BTreeMap::new();
        for i in 0..300 {
            let key = format!("/p/{i:04}");
            s.create(&key, b"original".to_vec()).await.unwrap();
            expected.insert(key, b"original".to_vec());
        }
        let first = s
            .range(
                "/p/",
                RangeOptions {
                    limit: 50,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let at = first.revision;

        let writer = {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..300 {
                    let key = format!("/p/{i:04}");
                    let cur = s.get(&key).await.unwrap().unwrap();
                    if i % 3 == 0 {
                        s.delete(&key, Some(cur.mod_revision)).await.unwrap();
                    } else {
                        s.update(&key, b"changed".to_vec(), cur.mod_revision)
                            .await
                            .unwrap();
                    }
                    s.create(&format!("/p/{i:04}a"), b"new".to_vec())
                        .await
                        .unwrap();
                }
            })
        };

        let mut seen: Vec<KeyValue> = first.kvs;
        let mut more = first.more;
        while more {
            let page = s
                .range(
                    "/p/",
                    RangeOptions {
                        limit: 50,
                        after: seen.last().map(|kv| kv.key.clone()),
                        revision: at,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(page.revision, at);
            more = page.more;
            seen.extend(page.kvs);
        }
        writer.await.unwrap();
        let got: BTreeMap<_, _> = seen.into_iter().map(|kv| (kv.key, kv.value)).collect();
        assert_eq!(
            got, expected,
            "pages at one revision must show that revision's state"
        );
    }

    /// A read at a past revision shows that revision's values; the future is refused.
    pub async fn read_at_past_revision(b: &mut dyn Backend) {
        let s = b.store();
        let v1 = s.create("/h/k", b"1".to_vec()).await.unwrap();
        let v2 = s
            .update("/h/k", b"2".to_vec(), v1.mod_revision)
            .await
            .unwrap();
        s.create("/h/other", b"o".to_vec()).await.unwrap();
        s.delete("/h/k", None).await.unwrap();

        let at = |revision| RangeOptions {
            revision,
            ..Default::default()
        };
        let r1 = s.range("/h/", at(v1.mod_revision)).await.unwrap();
        assert_eq!(r1.kvs, vec![v1.clone()]);
        let r2 = s.range("/h/", at(v2.mod_revision)).await.unwrap();
        assert_eq!(r2.kvs, vec![v2]);
        let now = s.range("/h/", RangeOptions::default()).await.unwrap();
        assert_eq!(now.kvs.len(), 1);
        assert_eq!(now.kvs[0].key, "/h/other");
        let future = s.current_revision().await.unwrap() + 10;
        assert!(matches!(
            s.range("/h/", at(future)).await,
            Err(Error::FutureRevision { .. })
        ));
    }

    /// Concurrent writers; one watcher sees every event once, in strictly increasing order,
    /// with no revision skipped.
    pub async fn watch_order_no_gaps(b: &mut dyn Backend) {
        let s = b.store();
        let start = s.current_revision().await.unwrap() + 1;
        let mut w = s
            .watch("/w/", start, WatchOptions::default())
            .await
            .unwrap();
        const WRITERS: usize = 8;
        const EACH: usize = 40;
        let tasks: Vec<_> = (0..WRITERS)
            .map(|t| {
                let s = s.clone();
                tokio::spawn(async move {
                    for i in 0..EACH {
                        let key = format!("/w/{t}/{i}");
                        let kv = s.create(&key, b"v".to_vec()).await.unwrap();
                        if i % 2 == 0 {
                            s.update(&key, b"v2".to_vec(), kv.mod_revision)
                                .await
                                .unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let total = WRITERS * EACH * 3 / 2;
        let mut last = start - 1;
        let mut seen = HashSet::new();
        for _ in 0..total {
            let ev = next_change(&mut w).await;
            assert_eq!(ev.revision(), last + 1, "events must be contiguous: {ev:?}");
            last = ev.revision();
            assert!(seen.insert(ev.revision()));
        }
        assert_eq!(last, s.current_revision().await.unwrap());
    }

    /// A watch from a past revision replays history, with previous values, then goes live.
    pub async fn watch_resume_and_replay(b: &mut dyn Backend) {
        let s = b.store();
        let mut kv = s.create("/res/k", b"0".to_vec()).await.unwrap();
        let mut revs = vec![kv.mod_revision];
        for i in 1..50 {
            kv = s
                .update("/res/k", format!("{i}").into_bytes(), kv.mod_revision)
                .await
                .unwrap();
            revs.push(kv.mod_revision);
        }
        let from = revs[20];
        let mut w = s
            .watch("/res/", from, WatchOptions::default())
            .await
            .unwrap();
        for (i, rev) in revs.iter().enumerate().skip(20) {
            match next_change(&mut w).await {
                WatchEvent::Put { kv, prev } => {
                    assert_eq!(kv.mod_revision, *rev);
                    assert_eq!(kv.value, format!("{i}").into_bytes());
                    assert_eq!(
                        prev.expect("prev value").value,
                        format!("{}", i - 1).into_bytes()
                    );
                }
                other => panic!("expected a put, got {other:?}"),
            }
        }
        let d = s.delete("/res/k", None).await.unwrap();
        match next_change(&mut w).await {
            WatchEvent::Delete {
                key,
                revision,
                prev,
            } => {
                assert_eq!((key.as_str(), revision), ("/res/k", d.revision));
                assert_eq!(prev.expect("prev value").value, b"49");
            }
            other => panic!("expected a delete, got {other:?}"),
        }
        // Resuming right after the last seen revision delivers what came next, once.
        let again = s.create("/res/k", b"new".to_vec()).await.unwrap();
        let mut resumed = s
            .watch("/res/", d.revision + 1, WatchOptions::default())
            .await
            .unwrap();
        let ev = next_change(&mut resumed).await;
        assert_eq!(ev.revision(), again.mod_revision);
        assert_eq!(put_value(&ev), ("/res/k", &b"new"[..]));
    }

    /// From revision 0 a watch sees only what happens after it starts.
    pub async fn watch_from_now(b: &mut dyn Backend) {
        let s = b.store();
        s.create("/now/old", b"old".to_vec()).await.unwrap();
        let mut w = s.watch("/now/", 0, WatchOptions::default()).await.unwrap();
        s.create("/now/new", b"new".to_vec()).await.unwrap();
        let ev = next_change(&mut w).await;
        assert_eq!(put_value(&ev), ("/now/new", &b"new"[..]));
    }

    /// Events under other prefixes are not delivered.
    pub async fn watch_prefix_only(b: &mut dyn Backend) {
        let s = b.store();
        let start = s.current_revision().await.unwrap() + 1;
        let mut w = s
            .watch("/pods/", start, WatchOptions::default())
            .await
            .unwrap();
        s.create("/podsx", b"no".to_vec()).await.unwrap();
        s.create("/svc/a", b"no".to_vec()).await.unwrap();
        s.create("/pods/a", b"yes".to_vec()).await.unwrap();
        let ev = next_change(&mut w).await;
        assert_eq!(put_value(&ev), ("/pods/a", &b"yes"[..]));
    }

    /// Compaction: older revisions fail with `Compacted`, the compaction revision's state and
    /// everything after it survive, and watches resume only from there.
    pub async fn compaction(b: &mut dyn Backend) {
        let s = b.store();
        let a1 = s.create("/c/a", b"1".to_vec()).await.unwrap();
        let a2 = s
            .update("/c/a", b"2".to_vec(), a1.mod_revision)
            .await
            .unwrap();
        let gone = s.create("/c/gone", b"x".to_vec()).await.unwrap();
        s.delete("/c/gone", None).await.unwrap();
        let keep = s.create("/c/keep", b"k".to_vec()).await.unwrap();
        let at = keep.mod_revision;
        let a3 = s
            .update("/c/a", b"3".to_vec(), a2.mod_revision)
            .await
            .unwrap();

        s.compact(at).await.unwrap();

        let old = RangeOptions {
            revision: gone.mod_revision,
            ..Default::default()
        };
        match s.range("/c/", old).await {
            Err(Error::Compacted {
                compact_revision, ..
            }) => assert_eq!(compact_revision, at),
            other => panic!("expected Compacted, got {other:?}"),
        }
        let snapshot = s
            .range(
                "/c/",
                RangeOptions {
                    revision: at,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(snapshot.kvs, vec![a2, keep.clone()]);
        let now = s.range("/c/", RangeOptions::default()).await.unwrap();
        assert_eq!(now.kvs, vec![a3.clone(), keep]);

        let mut w = s
            .watch("/c/", a1.mod_revision, WatchOptions::default())
            .await
            .unwrap();
        match next_event(&mut w).await {
            Err(Error::Compacted {
                compact_revision, ..
            }) => assert_eq!(compact_revision, at),
            other => panic!("expected Compacted, got {other:?}"),
        }
        let mut w = s
            .watch("/c/", at + 1, WatchOptions::default())
            .await
            .unwrap();
        assert_eq!(next_change(&mut w).await.revision(), a3.mod_revision);

        assert!(matches!(s.compact(at).await, Err(Error::Compacted { .. })));
        let future = s.current_revision().await.unwrap() + 100;
        assert!(matches!(
            s.compact(future).await,
            Err(Error::FutureRevision { .. })
        ));
    }

    /// An idle watch with a progress interval receives bookmarks vouching for the current
    /// revision.
    pub async fn progress_notifications(b: &mut dyn Backend) {
        let s = b.store();
        s.create("/elsewhere/x", b"x".to_vec()).await.unwrap();
        let mut w = s
            .watch(
                "/quiet/",
                0,
                WatchOptions {
                    progress_interval: Some(Duration::from_millis(100)),
                },
            )
            .await
            .unwrap();
        s.create("/elsewhere/y", b"y".to_vec()).await.unwrap();
        let target = s.current_revision().await.unwrap();
        loop {
            match next_event(&mut w).await.unwrap() {
                WatchEvent::Progress { revision } if revision >= target => break,
                WatchEvent::Progress { .. } => continue,
                other => panic!("nothing matches the watch, yet got {other:?}"),
            }
        }
    }

    /// Values just under the limit round-trip intact; one byte over is refused.
    pub async fn values_near_the_limit(b: &mut dyn Backend) {
        let s = b.store();
        let big: Vec<u8> = (0..MAX_VALUE_BYTES - 4096)
            .map(|i| (i % 251) as u8)
            .collect();
        let kv = s.create("/big", big.clone()).await.unwrap();
        assert_eq!(s.get("/big").await.unwrap().unwrap().value, big);
        let mut bigger = big.clone();
        bigger.reverse();
        s.update("/big", bigger.clone(), kv.mod_revision)
            .await
            .unwrap();
        assert_eq!(s.get("/big").await.unwrap().unwrap().value, bigger);
        match s.create("/too-big", vec![0; MAX_VALUE_BYTES + 1]).await {
            Err(Error::ValueTooLarge { size, limit, .. }) => {
                assert_eq!((size, limit), (MAX_VALUE_BYTES + 1, MAX_VALUE_BYTES));
            }
            other => panic!("expected ValueTooLarge, got {other:?}"),
        }
        assert_eq!(s.get("/too-big").await.unwrap(), None);
    }

    /// Everything acknowledged survives a restart, and revisions continue where they were.
    pub async fn durable_across_restart(b: &mut dyn Backend) {
        let s = b.store();
        for i in 0..100 {
            s.create(&format!("/d/{i:03}"), format!("{i}").into_bytes())
                .await
                .unwrap();
        }
        let k = s.get("/d/007").await.unwrap().unwrap();
        s.update("/d/007", b"seven".to_vec(), k.mod_revision)
            .await
            .unwrap();
        s.delete("/d/050", None).await.unwrap();
        let before = s.current_revision().await.unwrap();
        let snapshot = s.range("/d/", RangeOptions::default()).await.unwrap();
        drop(s);

        b.restart().await;
        let s = b.store();
        assert_eq!(s.current_revision().await.unwrap(), before);
        let after = s.range("/d/", RangeOptions::default()).await.unwrap();
        assert_eq!(after.kvs, snapshot.kvs);
        assert_eq!(after.kvs.len(), 99);
        let next = s.create("/d/new", b"n".to_vec()).await.unwrap();
        assert_eq!(next.mod_revision, before + 1);
    }
}
