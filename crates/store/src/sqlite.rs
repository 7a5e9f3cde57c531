//! The embedded backend: the whole history in one SQLite file, kine's log shape.
//!
//! Layout: one `log` table with a row per revision (`rev` is the revision; a delete is a
//! tombstone row) and a `meta` table holding the current and the compaction revision. A key's
//! state at revision R is its newest row at or below R, unless that row is a tombstone.
//!
//! Writes go through one writer thread that owns the only writing connection. It drains every
//! request waiting in its queue into one transaction and commits once (group commit), so 32
//! concurrent writers pay for one fsync instead of 32. After the commit it answers the callers
//! and broadcasts the batch's events to the watchers: since this process is the only writer,
//! watchers are fed directly instead of polling the table as kine must.
//!
//! Reads use a small pool of read-only connections; WAL mode lets them run beside the writer,
//! each read transaction seeing one snapshot.
//!
//! Compaction deletes, chunk by chunk between write batches, every row superseded by a newer
//! row at or below the compaction revision and every tombstone below it, then returns the freed
//! pages to the file system (`auto_vacuum = INCREMENTAL`), so the file does not grow without
//! bound under steady updates.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::kv::{
    Deleted, Error, KeyValue, RangeOptions, RangeResponse, Result, Revision, Store, WatchEvent,
    WatchOptions, WatchStream, check_value, prefix_end,
};

/// How many requests one write transaction takes at most.
const MAX_BATCH: usize = 1024;
/// How many revisions one compaction transaction covers.
const COMPACT_CHUNK: Revision = 5_000;
/// How many rows one watch catch-up read returns.
const HISTORY_PAGE: i64 = 1_000;
/// How many batches a watcher may fall behind before it re-reads history from the table.
const EVENT_BUFFER: usize = 4_096;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    rev        INTEGER PRIMARY KEY,
    key        BLOB    NOT NULL,
    deleted    INTEGER NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev   INTEGER,
    version    INTEGER NOT NULL,
    value      BLOB    NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS log_key_rev ON log (key, rev);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', 1), ('revision', 0), ('compact', 0);
";

/// Settings of the embedded backend.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// fsync every commit (the default). Turning it off keeps the data consistent across a
    /// process crash but may lose the latest writes on power loss; it is meant for tests.
    pub durable: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { durable: true }
    }
}

/// The embedded SQLite store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Taken away by `close`, so that watchers see the feed end with the writer.
    events: Mutex<Option<broadcast::Sender<Arc<Batch>>>>,
    readers: Mutex<Vec<Connection>>,
}

/// The events of one committed write transaction.
struct Batch {
    /// The first revision the transaction took.
    first: Revision,
    /// The last revision it took.
    last: Revision,
    events: Vec<WatchEvent>,
}

enum Op {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

enum Outcome {
    Put(KeyValue),
    Deleted(Deleted),
}

enum Request {
    Write(Op, oneshot::Sender<Result<Outcome>>),
    /// Raise the compaction revision; answers the previous one.
    SetCompact(Revision, oneshot::Sender<Result<Revision>>),
    /// Delete superseded rows between two revisions (see [`compact_chunk`]).
    CompactChunk {
        from: Revision,
        to: Revision,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Give freed pages back to the file system.
    Vacuum(oneshot::Sender<Result<()>>),
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`. A damaged file, or one that is not a
    /// Rudder database, is an [`Error::Corrupt`] naming it: never silently reset.
    pub async fn open(path: impl Into<PathBuf>, opts: SqliteOptions) -> Result<SqliteStore> {
        let path = path.into();
        tokio::task::spawn_blocking(move || open_blocking(path, opts))
            .await
            .map_err(|e| Error::Internal(format!("opening the database: {e}")))?
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn write(&self, op: Op) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        self.shared.send(Request::Write(op, reply)).await?;
        answer.await.map_err(|_| self.shared.closed())?
    }

    async fn maintenance<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Request,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.shared.send(make(reply)).await?;
        answer.await.map_err(|_| self.shared.closed())?
    }
}

impl Shared {
    async fn send(&self, req: Request) -> Result<()> {
        let sender = self.requests.lock().expect("poisoned").clone();
        match sender {
            Some(s) => s.send(req).await.map_err(|_| self.closed()),
            None => Err(self.closed()),
        }
    }

    fn closed(&self) -> Error {
        Error::Unavailable {
            endpoint: self.path.display().to_string(),
            detail: "the store is closed".into(),
        }
    }

    /// Runs `f` on a pooled read connection on the blocking thread pool.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = this.readers.lock().expect("poisoned").pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => open_reader(&this.path)?,
            };
            let out = f(&mut conn);
            this.readers.lock().expect("poisoned").push(conn);
            out
        })
        .await
        .map_err(|e| Error::Internal(format!("read task failed: {e}")))?
    }
}

fn sql_error(path: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => Error::Corrupt {
            path: path.display().to_string(),
            detail: e.to_string(),
        },
        _ => Error::Internal(format!("{}: {e}", path.display())),
    }
}

/// Makes the database file readable by its owner only (mode 0600), creating it empty if it is
/// missing: it holds every Secret. SQLite gives its journal files the same mode.
fn owner_only(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let failed = |e: std::io::Error| Error::Unavailable {
        endpoint: path.display().to_string(),
        detail: format!("restricting {} to its owner: {e}", path.display()),
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(failed)?;
    let mode = file.metadata().map_err(failed)?.permissions().mode();
    if mode & 0o077 != 0 {
        let owner = std::fs::Permissions::from_mode(mode & 0o700);
        file.set_permissions(owner).map_err(failed)?;
    }
    Ok(())
}

fn open_blocking(path: PathBuf, opts: SqliteOptions) -> Result<SqliteStore> {
    let err = |e| sql_error(&path, e);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::Unavailable {
            endpoint: path.display().to_string(),
            detail: format!("creating {}: {e}", dir.display()),
        })?;
    }
    let lock = lock_file(&path)?;
    owner_only(&path)?;
    let existing = std::fs::metadata(&path)
        .map(|m| m.len() > 0)
        .unwrap_or(false);
    if existing {
        check_header(&path)?;
    }
    let conn = Connection::open(&path).map_err(err)?;
    if existing {
        let verdict: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(err)?;
        if verdict != "ok" {
            return Err(Error::Corrupt {
                path: path.display().to_string(),
                detail: format!("integrity check failed: {verdict}"),
            });
        }
        let has_meta: bool = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'meta'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(err)?;
        if !has_meta {
            return Err(Error::Corrupt {
                path: path.display().to_string(),
                detail: "not a Rudder database (no meta table)".into(),
            });
        }
    } else {
        // Must precede the first table: it decides the file's page bookkeeping.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
            .map_err(err)?;
    }
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(
        None,
        "synchronous",
        if opts.durable { "FULL" } else { "OFF" },
    )
    .map_err(err)?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .map_err(err)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
    conn.execute_batch(SCHEMA).map_err(err)?;
    let revision = meta(&conn, "revision").map_err(err)?;

    let (requests, queue) = mpsc::channel(MAX_BATCH * 4);
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let writer = Writer {
        path: path.clone(),
        conn,
        revision,
        events: events.clone(),
        _lock: lock,
    };
    let handle = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || writer.run(queue))
        .map_err(|e| Error::Internal(format!("starting the writer thread: {e}")))?;
    tracing::debug!(path = %path.display(), revision, "opened sqlite store");
    Ok(SqliteStore {
        shared: Arc::new(Shared {
            path,
            requests: Mutex::new(Some(requests)),
            writer: Mutex::new(Some(handle)),
            events: Mutex::new(Some(events)),
            readers: Mutex::new(Vec::new()),
        }),
    })
}

/// Takes the lock that keeps a second process off the same database.
fn lock_file(path: &Path) -> Result<File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let file = File::create(&name).map_err(|e| Error::Unavailable {
        endpoint: path.display().to_string(),
        detail: format!("creating lock file: {e}"),
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked {
            path: path.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Unavailable {
            endpoint: path.display().to_string(),
            detail: format!("locking: {e}"),
        }),
    }
}

/// A file that is not SQLite at all gets a plain answer before SQLite's own.
fn check_header(path: &Path) -> Result<()> {
    let mut header = [0u8; 16];
    let mut file = File::open(path).map_err(|e| Error::Unavailable {
        endpoint: path.display().to_string(),
        detail: e.to_string(),
    })?;
    let n = file.read(&mut header).unwrap_or(0);
    if n < 16 || &header != b"SQLite format 3\0" {
        return Err(Error::Corrupt {
            path: path.display().to_string(),
            detail: "not a SQLite database (bad header)".into(),
        });
    }
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql_error(path, e))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(|e| sql_error(path, e))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| sql_error(path, e))?;
    Ok(conn)
}

fn meta(conn: &Connection, name: &str) -> rusqlite::Result<Revision> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
}

/// The newest row of a key, tombstone or not.
struct Latest {
    rev: Revision,
    deleted: bool,
    create_rev: Revision,
    version: i64,
    value: Vec<u8>,
}

impl Latest {
    fn into_kv(self, key: &str) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: self.value,
            create_revision: self.create_rev,
            mod_revision: self.rev,
            version: self.version,
        }
    }
}

fn latest(conn: &Connection, key: &str) -> rusqlite::Result<Option<Latest>> {
    conn.prepare_cached(
        "SELECT rev, deleted, create_rev, version, value FROM log
         WHERE key = ?1 ORDER BY rev DESC LIMIT 1",
    )?
    .query_row([key.as_bytes()], |r| {
        Ok(Latest {
            rev: r.get(0)?,
            deleted: r.get(1)?,
            create_rev: r.get(2)?,
            version: r.get(3)?,
            value: r.get(4)?,
        })
    })
    .optional()
}

fn live(conn: &Connection, key: &str) -> rusqlite::Result<Option<Latest>> {
    Ok(latest(conn, key)?.filter(|l| !l.deleted))
}

struct Writer {
    path: PathBuf,
    conn: Connection,
    revision: Revision,
    events: broadcast::Sender<Arc<Batch>>,
    /// Held until the connection is closed; see [`lock_file`].
    _lock: File,
}

type WriteRequest = (Op, oneshot::Sender<Result<Outcome>>);

impl Writer {
    fn run(mut self, mut queue: mpsc::Receiver<Request>) {
        while let Some(first) = queue.blocking_recv() {
            let mut writes: Vec<WriteRequest> = Vec::new();
            let mut next = Some(first);
            while let Some(req) = next {
                match req {
                    Request::Write(op, reply) => writes.push((op, reply)),
                    other => {
                        self.commit(std::mem::take(&mut writes));
                        self.maintain(other);
                    }
                }
                next = if writes.len() < MAX_BATCH {
                    queue.try_recv().ok()
                } else {
                    None
                };
            }
            self.commit(writes);
        }
        tracing::debug!(path = %self.path.display(), "sqlite writer stopped");
    }

    /// Applies a batch of writes in one transaction and answers every caller after the commit.
    fn commit(&mut self, writes: Vec<WriteRequest>) {
        if writes.is_empty() {
            return;
        }
        let first = self.revision + 1;
        let mut events = Vec::new();
        let outcome = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut results = Vec::with_capacity(writes.len());
            let mut rev = self.revision;
            for (op, _) in &writes {
                results.push(apply(&tx, &mut rev, op, &mut events)?);
            }
            if rev != self.revision {
                tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'revision'")?
                    .execute([rev])?;
            }
            tx.commit()?;
            Ok((results, rev))
        })();
        match outcome {
            Ok((results, rev)) => {
                self.revision = rev;
                for ((_, reply), result) in writes.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
                if !events.is_empty() {
                    // No receivers is fine: nobody is watching.
                    let _ = self.events.send(Arc::new(Batch {
                        first,
                        last: rev,
                        events,
                    }));
                }
            }
            Err(e) => {
                let err = sql_error(&self.path, e);
                tracing::error!(error = %err, "write transaction failed");
                for (_, reply) in writes {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }

    fn maintain(&mut self, req: Request) {
        let path = self.path.clone();
        let err = |e| sql_error(&path, e);
        match req {
            Request::Write(..) => unreachable!("writes are batched by the caller"),
            Request::SetCompact(target, reply) => {
                let result = (|| {
                    let current = meta(&self.conn, "compact").map_err(err)?;
                    if target <= current {
                        return Err(Error::Compacted {
                            requested: target,
                            compact_revision: current,
                        });
                    }
                    if target > self.revision {
                        return Err(Error::FutureRevision {
                            requested: target,
                            current: self.revision,
                        });
                    }
                    self.conn
                        .execute(
                            "UPDATE meta SET value = ?1 WHERE name = 'compact'",
                            [target],
                        )
                        .map_err(err)?;
                    Ok(current)
                })();
                let _ = reply.send(result);
            }
            Request::CompactChunk { from, to, reply } => {
                let _ = reply.send(compact_chunk(&mut self.conn, from, to).map_err(err));
            }
            Request::Vacuum(reply) => {
                let result = incremental_vacuum(&self.conn)
                    .and_then(|()| {
                        // Folds the WAL back so the freed pages leave the main file too. A
                        // reader holding an old snapshot may keep part of it; that is fine.
                        self.conn
                            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    })
                    .map_err(err);
                let _ = reply.send(result);
            }
        }
    }
}

/// Applies one write inside the batch's transaction. The outer `Result` is a database failure
/// (it aborts the whole batch); the inner one is this request's own answer.
fn apply(
    tx: &Connection,
    rev: &mut Revision,
    op: &Op,
    events: &mut Vec<WatchEvent>,
) -> rusqlite::Result<Result<Outcome>> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO log (rev, key, deleted, create_rev, prev_rev, version, value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    match op {
        Op::Create { key, value } => {
            if live(tx, key)?.is_some() {
                return Ok(Err(Error::AlreadyExists { key: key.clone() }));
            }
            let r = *rev + 1;
            insert.execute(params![r, key.as_bytes(), false, r, None::<i64>, 1, value])?;
            *rev = r;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: r,
                mod_revision: r,
                version: 1,
            };
            events.push(WatchEvent::Put {
                kv: kv.clone(),
                prev: None,
            });
            Ok(Ok(Outcome::Put(kv)))
        }
        Op::Update {
            key,
            value,
            expected,
        } => {
            let Some(cur) = live(tx, key)? else {
                return Ok(Err(Error::NotFound { key: key.clone() }));
            };
            if cur.rev != *expected {
                return Ok(Err(Error::Conflict {
                    key: key.clone(),
                    expected: *expected,
                    current: Box::new(cur.into_kv(key)),
                }));
            }
            let r = *rev + 1;
            let version = cur.version + 1;
            insert.execute(params![
                r,
                key.as_bytes(),
                false,
                cur.create_rev,
                cur.rev,
                version,
                value
            ])?;
            *rev = r;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: cur.create_rev,
                mod_revision: r,
                version,
            };
            events.push(WatchEvent::Put {
                kv: kv.clone(),
                prev: Some(cur.into_kv(key)),
            });
            Ok(Ok(Outcome::Put(kv)))
        }
        Op::Delete { key, expected } => {
            let Some(cur) = live(tx, key)? else {
                return Ok(Err(Error::NotFound { key: key.clone() }));
            };
            if let Some(expected) = expected.filter(|e| *e != cur.rev) {
                return Ok(Err(Error::Conflict {
                    key: key.clone(),
                    expected,
                    current: Box::new(cur.into_kv(key)),
                }));
            }
            let r = *rev + 1;
            insert.execute(params![
                r,
                key.as_bytes(),
                true,
                cur.create_rev,
                cur.rev,
                0,
                &[] as &[u8]
            ])?;
            *rev = r;
            let prev = cur.into_kv(key);
            events.push(WatchEvent::Delete {
                key: key.clone(),
                revision: r,
                prev: Some(prev.clone()),
            });
            Ok(Ok(Outcome::Deleted(Deleted { revision: r, prev })))
        }
    }
}

/// Deletes what a compaction discards among revisions `from..=to`: the rows that a row in that
/// range supersedes (its `prev_rev`), and the tombstones in `from..to`. Run over consecutive
/// ranges from the previous compaction revision to the new one, this leaves, for every key,
/// exactly its newest row at or below the new compaction revision (unless that is a tombstone
/// below it) plus everything after it.
fn compact_chunk(conn: &mut Connection, from: Revision, to: Revision) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "DELETE FROM log WHERE rev IN
           (SELECT prev_rev FROM log WHERE rev >= ?1 AND rev <= ?2 AND prev_rev IS NOT NULL)",
        [from, to],
    )?;
    tx.execute(
        "DELETE FROM log WHERE rev >= ?1 AND rev < ?2 AND deleted = 1",
        [from, to],
    )?;
    tx.commit()
}

/// Returns every free page to the file system. The pragma frees pages as it is stepped, so
/// it must be stepped to the end.
fn incremental_vacuum(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

/// Reads the store's current and compaction revisions inside the caller's transaction.
fn revisions(conn: &Connection) -> rusqlite::Result<(Revision, Revision)> {
    Ok((meta(conn, "revision")?, meta(conn, "compact")?))
}

fn key_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The smallest key greater than `key`.
fn key_after(key: &str) -> Vec<u8> {
    let mut next = key.as_bytes().to_vec();
    next.push(0);
    next
}

/// A query of `columns` over the keys live at revision `?2` (their latest version at or
/// before it, not a deletion), from key `?1` on and, given the parameter number `end`, below
/// that key; `tail` orders or limits.
fn live_keys(columns: &str, end: Option<u8>, tail: &str) -> String {
    let below = end.map(|i| format!("AND l.key < ?{i}")).unwrap_or_default();
    format!(
        "SELECT {columns} FROM log l
         WHERE l.key >= ?1 {below} AND l.rev <= ?2 AND l.deleted = 0
           AND NOT EXISTS (SELECT 1 FROM log n WHERE n.key = l.key AND n.rev > l.rev AND n.rev <= ?2)
         {tail}"
    )
}

fn range_blocking(
    conn: &mut Connection,
    path: &Path,
    prefix: &str,
    opts: &RangeOptions,
) -> Result<RangeResponse> {
    let err = |e| sql_error(path, e);
    let tx = conn.transaction().map_err(err)?;
    let (current, compact) = revisions(&tx).map_err(err)?;
    let at = if opts.revision == 0 {
        current
    } else {
        opts.revision
    };
    if at < compact {
        return Err(Error::Compacted {
            requested: at,
            compact_revision: compact,
        });
    }
    if at > current {
        return Err(Error::FutureRevision {
            requested: at,
            current,
        });
    }
    let mut start = prefix.as_bytes().to_vec();
    if let Some(after) = &opts.after {
        start = start.max(key_after(after));
    }
    let end = prefix_end(prefix.as_bytes());
    let limit = if opts.limit == 0 {
        -1
    } else {
        opts.limit as i64 + 1
    };
    let sql = live_keys(
        "l.key, l.rev, l.create_rev, l.version, l.value",
        end.is_some().then_some(4),
        "ORDER BY l.key LIMIT ?3",
    );
    let mut stmt = tx.prepare_cached(&sql).map_err(err)?;
    let map = |r: &rusqlite::Row<'_>| {
        Ok(KeyValue {
            key: key_string(r.get(0)?),
            mod_revision: r.get(1)?,
            create_revision: r.get(2)?,
            version: r.get(3)?,
            value: r.get(4)?,
        })
    };
    let rows = match &end {
        Some(end) => stmt.query_map(params![start, at, limit, end], map),
        None => stmt.query_map(params![start, at, limit], map),
    }
    .map_err(err)?;
    let mut kvs = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(err)?;
    drop(stmt);
    let more = opts.limit > 0 && kvs.len() > opts.limit;
    kvs.truncate(if opts.limit > 0 {
        opts.limit
    } else {
        kvs.len()
    });
    // Only a page cut short pays for the count, in the same transaction and so at `at`.
    let remaining = match kvs.last() {
        Some(last) if more && !opts.skip_count => {
            let from = key_after(&last.key);
            let sql = live_keys("count(*)", end.is_some().then_some(3), "");
            let mut stmt = tx.prepare_cached(&sql).map_err(err)?;
            let count: i64 = match &end {
                Some(end) => stmt.query_row(params![from, at, end], |r| r.get(0)),
                None => stmt.query_row(params![from, at], |r| r.get(0)),
            }
            .map_err(err)?;
            count.max(0) as usize
        }
        _ => 0,
    };
    Ok(RangeResponse {
        kvs,
        revision: at,
        more,
        remaining,
    })
}

/// One page of a watch's catch-up read.
struct HistoryPage {
    events: Vec<WatchEvent>,
    /// The store's revision when the page was read.
    current: Revision,
    /// Whether the page reached `current`.
    complete: bool,
}

fn history_page(
    conn: &mut Connection,
    path: &Path,
    prefix: &str,
    from: Revision,
) -> Result<HistoryPage> {
    let err = |e| sql_error(path, e);
    let tx = conn.transaction().map_err(err)?;
    let (current, compact) = revisions(&tx).map_err(err)?;
    if from < compact {
        return Err(Error::Compacted {
            requested: from,
            compact_revision: compact,
        });
    }
    let end = prefix_end(prefix.as_bytes());
    let sql = format!(
        "SELECT l.rev, l.key, l.deleted, l.create_rev, l.version, l.value,
                p.rev, p.create_rev, p.version, p.value
         FROM log l LEFT JOIN log p ON p.rev = l.prev_rev
         WHERE l.rev >= ?1 AND l.rev <= ?2 AND l.key >= ?3 {}
         ORDER BY l.rev LIMIT ?4",
        if end.is_some() { "AND l.key < ?5" } else { "" }
    );
    let mut stmt = tx.prepare_cached(&sql).map_err(err)?;
    let map = |r: &rusqlite::Row<'_>| {
        let key = key_string(r.get(1)?);
        let rev: Revision = r.get(0)?;
        let prev = match r.get::<_, Option<Revision>>(6)? {
            Some(prev_rev) => Some(KeyValue {
                key: key.clone(),
                mod_revision: prev_rev,
                create_revision: r.get(7)?,
                version: r.get(8)?,
                value: r.get(9)?,
            }),
            None => None,
        };
        Ok(if r.get::<_, bool>(2)? {
            WatchEvent::Delete {
                key,
                revision: rev,
                prev,
            }
        } else {
            WatchEvent::Put {
                kv: KeyValue {
                    key,
                    mod_revision: rev,
                    create_revision: r.get(3)?,
                    version: r.get(4)?,
                    value: r.get(5)?,
                },
                prev,
            }
        })
    };
    let rows = match &end {
        Some(end) => stmt.query_map(
            params![from, current, prefix.as_bytes(), HISTORY_PAGE, end],
            map,
        ),
        None => stmt.query_map(params![from, current, prefix.as_bytes(), HISTORY_PAGE], map),
    }
    .map_err(err)?;
    let events = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(err)?;
    let complete = (events.len() as i64) < HISTORY_PAGE;
    Ok(HistoryPage {
        events,
        current,
        complete,
    })
}

/// Feeds one watcher: history from the table first, then the writer's broadcast; back to the
/// table whenever the watcher falls more than [`EVENT_BUFFER`] batches behind.
async fn run_watch(
    shared: Arc<Shared>,
    prefix: String,
    from: Revision,
    opts: WatchOptions,
    out: mpsc::Sender<Result<WatchEvent>>,
) {
    // The next revision this watcher has not yet accounted for.
    let mut next = from;
    loop {
        // Subscribe before reading history, so nothing committed in between is missed.
        let subscription = shared
            .events
            .lock()
            .expect("poisoned")
            .as_ref()
            .map(|s| s.subscribe());
        let Some(mut live) = subscription else {
            let _ = out.send(Err(shared.closed())).await;
            return;
        };
        loop {
            let (p, f) = (prefix.clone(), next);
            let path = shared.path.clone();
            let page = shared.read(move |c| history_page(c, &path, &p, f)).await;
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    let _ = out.send(Err(e)).await;
                    return;
                }
            };
            for ev in page.events {
                next = ev.revision() + 1;
                if out.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            if page.complete {
                next = next.max(page.current + 1);
                break;
            }
        }

        let interval = opts.progress_interval.unwrap_or(Duration::from_secs(3600));
        let idle = tokio::time::sleep(interval);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                () = out.closed() => return,
                batch = live.recv() => match batch {
                    Ok(batch) => {
                        if batch.last < next {
                            continue;
                        }
                        debug_assert!(batch.first <= next, "gap in the event feed");
                        for ev in batch.events.iter().filter(|e| e.revision() >= next) {
                            let (WatchEvent::Put { kv: KeyValue { key, .. }, .. }
                            | WatchEvent::Delete { key, .. }) = ev else { continue };
                            if key.starts_with(&prefix) {
                                if out.send(Ok(ev.clone())).await.is_err() {
                                    return;
                                }
                                idle.as_mut().reset(tokio::time::Instant::now() + interval);
                            }
                        }
                        next = batch.last + 1;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => {
                        let _ = out.send(Err(shared.closed())).await;
                        return;
                    }
                },
                () = &mut idle, if opts.progress_interval.is_some() => {
                    if out.send(Ok(WatchEvent::Progress { revision: next - 1 })).await.is_err() {
                        return;
                    }
                    idle.as_mut().reset(tokio::time::Instant::now() + interval);
                }
            }
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let (key, path) = (key.to_string(), self.shared.path.clone());
        self.shared
            .read(move |c| {
                let found = live(c, &key).map_err(|e| sql_error(&path, e))?;
                Ok(found.map(|l| l.into_kv(&key)))
            })
            .await
    }

    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangeResponse> {
        let (prefix, path) = (prefix.to_string(), self.shared.path.clone());
        self.shared
            .read(move |c| range_blocking(c, &path, &prefix, &opts))
            .await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        check_value(key, &value)?;
        let op = Op::Create {
            key: key.to_string(),
            value,
        };
        match self.write(op).await? {
            Outcome::Put(kv) => Ok(kv),
            Outcome::Deleted(_) => unreachable!("a create answers with the new state"),
        }
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        check_value(key, &value)?;
        let op = Op::Update {
            key: key.to_string(),
            value,
            expected,
        };
        match self.write(op).await? {
            Outcome::Put(kv) => Ok(kv),
            Outcome::Deleted(_) => unreachable!("an update answers with the new state"),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted> {
        let op = Op::Delete {
            key: key.to_string(),
            expected,
        };
        match self.write(op).await? {
            Outcome::Deleted(d) => Ok(d),
            Outcome::Put(_) => unreachable!("a delete answers with the deleted state"),
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        let path = self.shared.path.clone();
        self.shared
            .read(move |c| meta(c, "revision").map_err(|e| sql_error(&path, e)))
            .await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let previous = self
            .maintenance(|reply| Request::SetCompact(revision, reply))
            .await?;
        let mut from = previous;
        while from < revision {
            let to = (from + COMPACT_CHUNK).min(revision);
            self.maintenance(|reply| Request::CompactChunk { from, to, reply })
                .await?;
            from = to;
        }
        self.maintenance(Request::Vacuum).await
    }

    async fn watch(&self, prefix: &str, from: Revision, opts: WatchOptions) -> Result<WatchStream> {
        // "From now" is fixed here, so a write made right after this call is never missed.
        let from = if from > 0 {
            from
        } else {
            self.current_revision().await? + 1
        };
        let (out, stream) = mpsc::channel(256);
        tokio::spawn(run_watch(
            self.shared.clone(),
            prefix.to_string(),
            from,
            opts,
            out,
        ));
        Ok(Box::pin(ReceiverStream::new(stream)))
    }

    async fn db_size(&self) -> Result<u64> {
        let mut total = 0;
        for suffix in ["", "-wal"] {
            let mut name = self.shared.path.as_os_str().to_owned();
            name.push(suffix);
            total += std::fs::metadata(&name).map(|m| m.len()).unwrap_or(0);
        }
        Ok(total)
    }

    async fn close(&self) -> Result<()> {
        // Dropping the queue's sender stops the writer once it has drained the queue.
        drop(self.shared.requests.lock().expect("poisoned").take());
        drop(self.shared.events.lock().expect("poisoned").take());
        self.shared.readers.lock().expect("poisoned").clear();
        let writer = self.shared.writer.lock().expect("poisoned").take();
        if let Some(handle) = writer {
            tokio::task::spawn_blocking(move || handle.join())
                .await
                .map_err(|e| Error::Internal(e.to_string()))?
                .map_err(|_| Error::Internal("the writer thread panicked".into()))?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("sqlite {}", self.shared.path.display())
    }
}
