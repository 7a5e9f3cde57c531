//! The conformance suite on the embedded SQLite backend, plus what only a file-backed store has:
//! damaged files, a second process, a writer killed mid-stream, and bounded file growth.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use store::sqlite::{SqliteOptions, SqliteStore};
use store::testing::SqliteBackend;
use store::{Error, RangeOptions, Store};

store::store_suite!(SqliteBackend::start().await);

async fn open(path: &Path) -> store::Result<SqliteStore> {
    SqliteStore::open(path, SqliteOptions::default()).await
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(
        &path,
        b"this is not sqlite, just some text that is long enough",
    )
    .unwrap();
    let err = open(&path).await.err().expect("must refuse");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    // Never a silent reset: the file is untouched.
    assert!(
        std::fs::read(&path)
            .unwrap()
            .starts_with(b"this is not sqlite")
    );
}

#[tokio::test]
async fn a_truncated_database_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let s = open(&path).await.unwrap();
    for i in 0..2000 {
        s.create(&format!("/k/{i}"), vec![7; 512]).await.unwrap();
    }
    s.close().await.unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len > 100_000, "the database should span many pages: {len}");
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let err = open(&path).await.err().expect("must refuse");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn only_the_owner_may_read_the_database_and_its_journal() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = open(&path).await.unwrap();
    store.create("/k", b"secret".to_vec()).await.unwrap();
    for name in ["state.db", "state.db-wal"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}

#[tokio::test]
async fn another_sqlite_database_is_not_taken_for_ours() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE users (name TEXT)")
        .unwrap();
    drop(conn);
    let err = open(&path).await.err().expect("must refuse");
    assert!(err.to_string().contains("not a Rudder database"), "{err}");
}

#[tokio::test]
async fn a_second_opener_is_told_the_file_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let first = open(&path).await.unwrap();
    let err = open(&path).await.err().expect("must refuse");
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    first.close().await.unwrap();
    open(&path).await.expect("free again after close");
}

#[tokio::test]
async fn writes_after_close_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir.path().join("state.db")).await.unwrap();
    s.close().await.unwrap();
    let err = s.create("/x", b"x".to_vec()).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
}

/// Steady updates with compaction keep the file small: it reuses and returns freed pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_bounds_the_file_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let s = Arc::new(
        SqliteStore::open(&path, SqliteOptions { durable: false })
            .await
            .unwrap(),
    );
    let mut revs = Vec::new();
    for k in 0..100 {
        revs.push(
            s.create(&format!("/k/{k}"), vec![1; 1024])
                .await
                .unwrap()
                .mod_revision,
        );
    }
    for round in 0..200 {
        for (k, rev) in revs.iter_mut().enumerate() {
            *rev = s
                .update(&format!("/k/{k}"), vec![round as u8; 1024], *rev)
                .await
                .unwrap()
                .mod_revision;
        }
        if round % 20 == 19 {
            s.compact(s.current_revision().await.unwrap())
                .await
                .unwrap();
        }
    }
    // 20,000 updates of 1 KiB (20 MiB) went through; the live data is 100 KiB.
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(
        size < 512 * 1024,
        "database is {size} bytes after compaction"
    );
    let live = s.range("/k/", RangeOptions::default()).await.unwrap();
    assert_eq!(live.kvs.len(), 100);
    assert!(live.kvs.iter().all(|kv| kv.value == vec![199; 1024]));
}

const CHILD_ENV: &str = "RUDDER_STORE_TEST_CHILD_DB";

/// Not a test of its own: the body of the child process that
/// `sigkill_loses_no_acknowledged_write` starts and kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn child_writer_process() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let s = Arc::new(open(Path::new(&path)).await.unwrap());
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/acked/{t}/{i}");
                    s.create(&key, key.as_bytes().to_vec()).await.unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {key}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn sigkill_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writer_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 2000 {
        let line = lines.next().expect("child ended early").unwrap();
        if let Some(key) = line.strip_prefix("ACK ") {
            acked.push(key.to_string());
        }
    }
    child.kill().unwrap(); // SIGKILL, mid-stream: writers are still going.
    child.wait().unwrap();
    // Whatever the pipe still held was acknowledged before the kill too.
    for line in lines.map_while(Result::ok) {
        if let Some(key) = line.strip_prefix("ACK ") {
            acked.push(key.to_string());
        }
    }

    let s = open(&path)
        .await
        .expect("the database opens cleanly after SIGKILL");
    for key in &acked {
        let kv = s
            .get(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {key} was lost"));
        assert_eq!(kv.value, key.as_bytes());
    }
    let all = s.range("/acked/", RangeOptions::default()).await.unwrap();
    assert!(all.kvs.len() >= acked.len());
    assert_eq!(s.current_revision().await.unwrap(), all.kvs.len() as i64);
}
