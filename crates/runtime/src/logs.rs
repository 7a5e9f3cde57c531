//! Container logs in the CRI log format: what a container's stdout and stderr look like on disk
//! under `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restartCount>.log`, written by
//! [`Writer`] (in the container's monitor process) and read back for `kubectl logs` by [`read`].
//!
//! One record per line: `<RFC 3339 timestamp, UTC, nanoseconds> <stdout|stderr> <tag> <content>`.
//! Tag `F` ends a line of the container's output; `P` is part of a longer one (a line over
//! [`MAX_RECORD`] bytes, or a last line without newline) that the next records of the same
//! stream continue. The kubelet, containerd and CRI-O read and write the same format.
//!
//! Like the kubelet's log manager, the writer rotates a file that grows past its size limit to
//! `<name>.<YYYYMMDD-HHMMSS>` and keeps a bounded number of rotated files; the reader shows the
//! current file only (as the kubelet does), and follows it across rotations.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;

/// The most content bytes one record carries; a longer line is cut into `P` records.
pub const MAX_RECORD: usize = 16 * 1024;

/// How often a follower looks for new records.
const POLL: Duration = Duration::from_millis(150);

/// Which of a container's output streams a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The stream's name in a record: `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Appends a container's output to its log file as CRI records, rotating the file when it
/// grows past its size limit.
///
/// Output arrives in arbitrary chunks; each stream keeps the start of a line until its newline
/// arrives (or until it is longer than [`MAX_RECORD`], when it goes out as `P` records).
/// [`Writer::flush`] (and dropping the writer) writes out what is left as a `P` record.
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: usize,
    pending: [Vec<u8>; 2],
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Appends one record for `content` to `out`.
fn record(out: &mut Vec<u8>, ts: &str, stream: Stream, partial: bool, content: &[u8]) {
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
}

impl Writer {
    /// Opens (creating it and its directory if needed) the log file at `path` for appending.
    /// When the file would grow past `max_size` bytes (0: never), it is rotated, and at most
    /// `max_files` rotated files are kept beside it.
    pub fn create(path: &Path, max_size: u64, max_files: usize) -> io::Result<Writer> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Writer {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a chunk of `stream`'s output: every line it completes becomes an `F` record (cut
    /// into `P` records first when longer than [`MAX_RECORD`]); the rest waits for its newline.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        let ts = format!("{:.9}", Timestamp::now());
        let pending = &mut self.pending[stream.index()];
        pending.extend_from_slice(data);
        let mut records = Vec::new();
        let mut done = 0;
        while let Some(nl) = pending[done..].iter().position(|b| *b == b'\n') {
            let mut line = &pending[done..done + nl];
            while line.len() > MAX_RECORD {
                records.push((true, &line[..MAX_RECORD]));
                line = &line[MAX_RECORD..];
            }
            records.push((false, line));
            done += nl + 1;
        }
        while pending.len() - done > MAX_RECORD {
            records.push((true, &pending[done..done + MAX_RECORD]));
            done += MAX_RECORD;
        }
        let encoded: Vec<Vec<u8>> = records
            .into_iter()
            .map(|(partial, content)| {
                let mut r = Vec::with_capacity(content.len() + 48);
                record(&mut r, &ts, stream, partial, content);
                r
            })
            .collect();
        pending.drain(..done);
        self.append(encoded)
    }

    /// Writes out the start of a line either stream still holds, as a `P` record.
    pub fn flush(&mut self) -> io::Result<()> {
        let ts = format!("{:.9}", Timestamp::now());
        let mut encoded = Vec::new();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let pending = std::mem::take(&mut self.pending[stream.index()]);
            for chunk in pending.chunks(MAX_RECORD) {
                let mut r = Vec::with_capacity(chunk.len() + 48);
                record(&mut r, &ts, stream, true, chunk);
                encoded.push(r);
            }
        }
        self.append(encoded)?;
        self.file.flush()
    }

    /// Appends whole records, rotating first whenever the next one would take the file past
    /// its size limit. Records between rotations go out in one write.
    fn append(&mut self, records: Vec<Vec<u8>>) -> io::Result<()> {
        let mut batch: Vec<u8> = Vec::new();
        for r in records {
            let size = self.size + batch.len() as u64;
            if self.max_size > 0 && size > 0 && size + r.len() as u64 > self.max_size {
                self.file.write_all(&batch)?;
                self.size += batch.len() as u64;
                batch.clear();
                self.rotate()?;
            }
            batch.extend_from_slice(&r);
        }
        if !batch.is_empty() {
            self.file.write_all(&batch)?;
            self.size += batch.len() as u64;
        }
        Ok(())
    }

    /// Renames the file to `<name>.<YYYYMMDD-HHMMSS>`, opens a new one, and removes the oldest
    /// rotated files beyond `max_files`.
    fn rotate(&mut self) -> io::Result<()> {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stamp = Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string();
        // Rotations within one second get a counter, so that names still sort in order.
        let prefix = format!("{name}.{stamp}");
        let same_second = rotated_files(&self.path)?
            .into_iter()
            .filter_map(|p| {
                let file = p.file_name()?.to_string_lossy().into_owned();
                let rest = file.strip_prefix(&prefix)?;
                Some(
                    rest.strip_prefix('-')
                        .map_or(0, |n| n.parse::<u32>().unwrap_or(0)),
                )
            })
            .max();
        let target = match same_second {
            None => self.path.with_file_name(&prefix),
            Some(n) => self.path.with_file_name(format!("{prefix}-{:04}", n + 1)),
        };
        std::fs::rename(&self.path, &target)?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        let mut rotated = rotated_files(&self.path)?;
        while rotated.len() > self.max_files {
            let oldest = rotated.remove(0);
            match std::fs::remove_file(&oldest) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// The rotated files of the log file at `path`, oldest first.
pub fn rotated_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(Vec::new());
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let prefix = format!("{name}.");
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(stamp) = file.strip_prefix(&prefix)
            && stamp.len() >= 15
            && stamp.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        {
            found.push((stamp.to_string(), entry.path()));
        }
    }
    // `<stamp>` sorts before `<stamp>-0001`, which sorts before the next second's stamp.
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// The end of the log at `path` as text: its last `lines` lines, at most `max_bytes` of them
/// (the end kept). Only the file's last 64 KiB are read. For termination messages taken from
/// the log (`FallbackToLogsOnError`).
pub fn tail(path: &Path, lines: usize, max_bytes: usize) -> io::Result<String> {
    const WINDOW: u64 = 64 << 10;
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(WINDOW)))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    if len > WINDOW {
        // The window starts inside a record: drop that one.
        let first = buf
            .iter()
            .position(|b| *b == b'\n')
            .map_or(buf.len(), |i| i + 1);
        buf.drain(..first);
    }
    let mut text: Vec<Vec<u8>> = vec![Vec::new()];
    for r in buf.split(|b| *b == b'\n').filter_map(parse) {
        let line = text.last_mut().expect("never empty");
        line.extend_from_slice(r.content);
        if !r.partial {
            line.push(b'\n');
            text.push(Vec::new());
        }
    }
    let joined: Vec<u8> = text[text.len().saturating_sub(lines + 1)..].concat();
    let kept = &joined[joined.len().saturating_sub(max_bytes)..];
    Ok(String::from_utf8_lossy(kept).into_owned())
}

/// One parsed record; `content` excludes the line's newline.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record<'a> {
    ts: Timestamp,
    stream: Stream,
    partial: bool,
    content: &'a [u8],
}

/// Parses one record (a file line without its newline); `None` for a malformed line.
fn parse(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    // Tags may carry more than one value, `:`-separated; the first says full or partial.
    let tag = parts.next()?;
    let partial = tag.split(|b| *b == b':').next() == Some(b"P");
    let content = parts.next().unwrap_or(b"");
    Some(Record {
        ts,
        stream,
        partial,
        content,
    })
}

/// What `kubectl logs` asks for (upstream's `PodLogOptions`, as the kubelet applies them).
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Keep reading new records until the container stops.
    pub follow: bool,
    /// Only the last this many lines (negative: all).
    pub tail_lines: Option<i64>,
    /// Only lines whose first record is not older than this.
    pub since: Option<Timestamp>,
    /// Prefix each line with its timestamp (RFC 3339, nanoseconds) and a space.
    pub timestamps: bool,
    /// Stop after this many bytes of output (negative: no limit).
    pub limit_bytes: Option<i64>,
}

/// Streams the log file at `path` as `kubectl logs` shows it: each line's content (the `P`
/// records of a long line joined with the `F` record that ends it), prefixed by its timestamp
/// when asked, after applying `tail_lines`, `since` and `limit_bytes`. When following, the
/// file is polled for new records (and reopened when rotated) until `running()` answers false
/// and what was written before is drained.
///
/// The file is read on tokio's blocking pool, starting at the first poll of the stream (which
/// must be inside a tokio runtime); dropping the stream stops it.
pub fn read(
    path: PathBuf,
    opts: ReadOptions,
    running: impl Fn() -> bool + Send + 'static,
) -> impl futures::Stream<Item = io::Result<Bytes>> + Send {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
    let mut job = Some(move || {
        let mut sink = Sink::new(tx, opts.limit_bytes);
        let result = follow_file(&path, &opts, &running, &mut sink);
        let _ = sink.send();
        if let Err(e) = result {
            let _ = sink.tx.blocking_send(Err(e));
        }
    });
    futures::stream::poll_fn(move |cx| {
        if let Some(job) = job.take() {
            drop(tokio::task::spawn_blocking(job));
        }
        rx.poll_recv(cx)
    })
}

/// Whether to go on reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// Where output goes: batched into chunks, cut at the byte limit.
struct Sink {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    remaining: Option<u64>,
}

const CHUNK: usize = 32 * 1024;

impl Sink {
    fn new(tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>, limit: Option<i64>) -> Sink {
        Sink {
            tx,
            buf: Vec::with_capacity(CHUNK),
            remaining: limit.and_then(|l| u64::try_from(l).ok()),
        }
    }

    /// Whether nothing more may be written (the limit is reached or the reader is gone).
    fn done(&self) -> bool {
        self.remaining == Some(0) || self.tx.is_closed()
    }

    fn put(&mut self, mut data: &[u8]) -> Flow {
        if let Some(r) = &mut self.remaining {
            let n = (*r).min(data.len() as u64) as usize;
            data = &data[..n];
            *r -= n as u64;
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK && self.send() == Flow::Stop {
            return Flow::Stop;
        }
        if self.done() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    /// Sends what is buffered.
    fn send(&mut self) -> Flow {
        if self.buf.is_empty() {
            return if self.tx.is_closed() {
                Flow::Stop
            } else {
                Flow::Continue
            };
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        match self.tx.blocking_send(Ok(chunk)) {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }
}

/// Turns records into output lines.
struct Lines<'o> {
    opts: &'o ReadOptions,
    /// Per stream: whether a line is open (its last record was `P`) and whether it is skipped.
    open: [(bool, bool); 2],
}

impl Lines<'_> {
    fn record(&mut self, line: &[u8], sink: &mut Sink) -> Flow {
        let Some(r) = parse(line) else {
            return Flow::Continue;
        };
        let (open, skip) = &mut self.open[r.stream.index()];
        if !*open {
            *skip = self.opts.since.is_some_and(|since| r.ts < since);
            if !*skip
                && self.opts.timestamps
                && sink.put(format!("{:.9} ", r.ts).as_bytes()) == Flow::Stop
            {
                return Flow::Stop;
            }
        }
        *open = r.partial;
        if *skip {
            return Flow::Continue;
        }
        if sink.put(r.content) == Flow::Stop {
            return Flow::Stop;
        }
        if r.partial {
            Flow::Continue
        } else {
            sink.put(b"\n")
        }
    }
}

/// Where the last `n` lines of the file start (a long line's `P` records and its `F` record
/// count as one line).
fn tail_start(file: &mut File, n: u64) -> io::Result<u64> {
    if n == 0 {
        return file.seek(SeekFrom::End(0));
    }
    let mut reader = BufReader::new(file);
    let mut starts: VecDeque<u64> = VecDeque::new();
    let mut open = [false; 2];
    let (mut offset, mut line) = (0u64, Vec::new());
    loop {
        line.clear();
        let len = reader.read_until(b'\n', &mut line)?;
        if len == 0 {
            break;
        }
        let content = line.strip_suffix(b"\n").unwrap_or(&line);
        if let Some(r) = parse(content) {
            let i = r.stream.index();
            if !open[i] {
                starts.push_back(offset);
                if starts.len() as u64 > n {
                    starts.pop_front();
                }
            }
            open[i] = r.partial;
        }
        offset += len as u64;
    }
    Ok(starts.front().copied().unwrap_or(offset))
}

/// The identity of a file, to notice that the path now names another one (rotation).
fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

/// The file written after the one with identity `current`: the next rotated file, or the
/// log file itself.
fn successor(path: &Path, current: (u64, u64)) -> io::Result<PathBuf> {
    let rotated = rotated_files(path)?;
    let at = rotated
        .iter()
        .position(|p| std::fs::metadata(p).is_ok_and(|m| identity(&m) == current));
    Ok(match at.and_then(|i| rotated.get(i + 1)) {
        Some(next) => next.clone(),
        None => path.to_path_buf(),
    })
}

fn follow_file(
    path: &Path,
    opts: &ReadOptions,
    running: &dyn Fn() -> bool,
    sink: &mut Sink,
) -> io::Result<()> {
    let mut file = File::open(path)?;
    if sink.done() {
        return Ok(());
    }
    let start = match opts.tail_lines {
        Some(n) if n >= 0 => tail_start(&mut file, n as u64)?,
        _ => 0,
    };
    file.seek(SeekFrom::Start(start))?;
    let mut lines = Lines {
        opts,
        open: [(false, false); 2],
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Both are looked at before draining: whatever was written before the container
        // stopped, or before the file was rotated, is read before either is acted on.
        let alive = opts.follow && running();
        let rotated = opts.follow
            && match std::fs::metadata(path) {
                Ok(now) => identity(&now) != identity(&file.metadata()?),
                Err(_) => false,
            };
        loop {
            let n = file.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            pending.extend_from_slice(&chunk[..n]);
            let mut done = 0;
            while let Some(nl) = pending[done..].iter().position(|b| *b == b'\n') {
                let flow = lines.record(&pending[done..done + nl], sink);
                done += nl + 1;
                if flow == Flow::Stop {
                    return Ok(());
                }
            }
            pending.drain(..done);
        }
        if !opts.follow {
            // A last record without its newline is shown all the same.
            if !pending.is_empty() {
                lines.record(&pending, sink);
            }
            return Ok(());
        }
        if sink.send() == Flow::Stop {
            return Ok(());
        }
        if rotated {
            match File::open(successor(path, identity(&file.metadata()?))?) {
                Ok(f) => {
                    file = f;
                    pending.clear();
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if !alive {
            return Ok(());
        }
        // Wait, noticing a reader that went away.
        let step = POLL / 3;
        for _ in 0..3 {
            if sink.tx.is_closed() {
                return Ok(());
            }
            std::thread::sleep(step);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures::StreamExt;

    use super::*;

    /// A directory removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            use std::sync::atomic::AtomicU64;
            static N: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "rudder-logs-{}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed),
                Timestamp::now().as_nanosecond()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_tail_joins_partial_records_and_keeps_the_end() {
        let dir = TempDir::new();
        let path = dir.0.join("0.log");
        std::fs::write(
            &path,
            "2026-11-26T08:00:00.000000001Z stdout F one\n\
             2026-11-26T08:00:00.000000002Z stderr P tw\n\
             2026-11-26T08:00:00.000000003Z stderr F o\n\
             2026-11-26T08:00:00.000000004Z stdout F three\n",
        )
        .unwrap();
        assert_eq!(tail(&path, 80, 2048).unwrap(), "one\ntwo\nthree\n");
        assert_eq!(tail(&path, 2, 2048).unwrap(), "two\nthree\n");
        assert_eq!(tail(&path, 80, 4).unwrap(), "ree\n");
    }

    async fn collect(path: &Path, opts: ReadOptions) -> String {
        let out: Vec<io::Result<Bytes>> = read(path.to_path_buf(), opts, || false).collect().await;
        let mut all = Vec::new();
        for chunk in out {
            all.extend_from_slice(&chunk.unwrap());
        }
        String::from_utf8(all).unwrap()
    }

    fn file_lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[tokio::test]
    async fn writer_round_trip() {
        let dir = TempDir::new();
        let path = dir.0.join("pod/c/0.log");
        let mut w = Writer::create(&path, 0, 0).unwrap();
        w.write(Stream::Stdout, b"hello\nwor").unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        w.write(Stream::Stdout, b"ld\n\n").unwrap();
        drop(w);
        let lines = file_lines(&path);
        assert_eq!(lines.len(), 4, "{lines:?}");
        let parsed: Vec<Record<'_>> = lines.iter().map(|l| parse(l.as_bytes()).unwrap()).collect();
        let shape: Vec<(Stream, bool, &[u8])> = parsed
            .iter()
            .map(|r| (r.stream, r.partial, r.content))
            .collect();
        assert_eq!(
            shape,
            [
                (Stream::Stdout, false, &b"hello"[..]),
                (Stream::Stderr, false, &b"oops"[..]),
                (Stream::Stdout, false, &b"world"[..]),
                (Stream::Stdout, false, &b""[..]),
            ]
        );
        // `<RFC 3339 with nanoseconds, UTC> <stream> <tag> <content>`.
        let ts = lines[0].split(' ').next().unwrap();
        assert_eq!(ts.len(), "2024-01-02T03:04:05.123456789Z".len(), "{ts}");
        assert!(ts.ends_with('Z'));
        assert!((Timestamp::now() - parsed[0].ts).get_seconds() < 60);
        assert_eq!(
            collect(&path, ReadOptions::default()).await,
            "hello\noops\nworld\n\n"
        );
        // Reopening appends.
        let mut w = Writer::create(&path, 0, 0).unwrap();
        w.write(Stream::Stdout, b"again\n").unwrap();
        drop(w);
        assert_eq!(file_lines(&path).len(), 5);
    }

    #[tokio::test]
    async fn long_and_unfinished_lines_become_partial_records() {
        let dir = TempDir::new();
        let path = dir.0.join("0.log");
        let mut w = Writer::create(&path, 0, 0).unwrap();
        let long: Vec<u8> = (0..40 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
        // Written in pieces: the writer cuts at 16 KiB whatever the chunks were.
        for piece in long.chunks(5000) {
            w.write(Stream::Stdout, piece).unwrap();
        }
        w.write(Stream::Stdout, b"\nno newline").unwrap();
        w.flush().unwrap();
        let lines = file_lines(&path);
        let tags: Vec<(bool, usize)> = lines
            .iter()
            .map(|l| {
                let r = parse(l.as_bytes()).unwrap();
                (r.partial, r.content.len())
            })
            .collect();
        assert_eq!(
            tags,
            [
                (true, MAX_RECORD),
                (true, MAX_RECORD),
                (false, 40 * 1024 - 2 * MAX_RECORD),
                (true, 10),
            ]
        );
        let mut expected = long.clone();
        expected.extend_from_slice(b"\nno newline");
        let out = collect(&path, ReadOptions::default()).await;
        assert_eq!(out.as_bytes(), expected.as_slice());
        // With timestamps, one prefix per line, not per record.
        let out = collect(
            &path,
            ReadOptions {
                timestamps: true,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(out.lines().count(), 2);
        assert_eq!(out.len(), expected.len() + 2 * 31);
        // Flushing with nothing pending writes nothing; the partial line's end comes later.
        drop(w);
        assert_eq!(file_lines(&path).len(), 4);
    }

    /// Writes records by hand, one per `(seconds after 2024-01-01T00:00:00Z, stream, tag, text)`.
    fn handmade(path: &Path, records: &[(i64, &str, &str, &str)]) {
        let base: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let mut text = String::new();
        for (secs, stream, tag, content) in records {
            let ts = base + jiff::SignedDuration::from_secs(*secs);
            text.push_str(&format!("{ts:.9} {stream} {tag} {content}\n"));
        }
        std::fs::write(path, text).unwrap();
    }

    #[tokio::test]
    async fn tail_counts_lines_not_records() {
        let dir = TempDir::new();
        let path = dir.0.join("0.log");
        handmade(
            &path,
            &[
                (0, "stdout", "F", "one"),
                (1, "stdout", "F", "two"),
                (2, "stdout", "P", "thr"),
                (2, "stdout", "F", "ee"),
                (3, "stderr", "F", "four"),
                (4, "stdout", "F", "five"),
            ],
        );
        let tail = |n| ReadOptions {
            tail_lines: Some(n),
            ..Default::default()
        };
        assert_eq!(collect(&path, tail(2)).await, "four\nfive\n");
        assert_eq!(collect(&path, tail(3)).await, "three\nfour\nfive\n");
        assert_eq!(collect(&path, tail(0)).await, "");
        assert_eq!(
            collect(&path, tail(100)).await,
            "one\ntwo\nthree\nfour\nfive\n"
        );
        assert_eq!(
            collect(&path, tail(-1)).await,
            "one\ntwo\nthree\nfour\nfive\n"
        );
    }

    #[tokio::test]
    async fn since_timestamps_and_limit_bytes() {
        let dir = TempDir::new();
        let path = dir.0.join("0.log");
        handmade(
            &path,
            &[
                (0, "stdout", "F", "old"),
                (10, "stdout", "F", "new"),
                (20, "stderr", "F", "newer"),
                (30, "stdout", "F", "with spaces  kept "),
            ],
        );
        let since = |s: &str| ReadOptions {
            since: Some(s.parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(
            collect(&path, since("2024-01-01T00:00:10Z")).await,
            "new\nnewer\nwith spaces  kept \n"
        );
        assert_eq!(collect(&path, since("2024-01-01T00:00:31Z")).await, "");
        let out = collect(
            &path,
            ReadOptions {
                timestamps: true,
                tail_lines: Some(2),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            out,
            "2024-01-01T00:00:20.000000000Z newer\n2024-01-01T00:00:30.000000000Z with spaces  kept \n"
        );
        let limit = |n| ReadOptions {
            limit_bytes: Some(n),
            ..Default::default()
        };
        assert_eq!(collect(&path, limit(6)).await, "old\nne");
        assert_eq!(collect(&path, limit(4)).await, "old\n");
        assert_eq!(collect(&path, limit(0)).await, "");
        assert_eq!(
            collect(
                &path,
                ReadOptions {
                    timestamps: true,
                    limit_bytes: Some(33),
                    ..Default::default()
                }
            )
            .await,
            "2024-01-01T00:00:00.000000000Z ol"
        );
        // Timestamps from other writers (fewer digits, offsets) are read too.
        std::fs::write(
            &path,
            "2024-01-01T01:00:00.5+01:00 stdout F a\ngarbage\n2024-01-01T00:00:01Z stdout F:x b\n",
        )
        .unwrap();
        let out = collect(
            &path,
            ReadOptions {
                timestamps: true,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            out,
            "2024-01-01T00:00:00.500000000Z a\n2024-01-01T00:00:01.000000000Z b\n"
        );
    }

    #[tokio::test]
    async fn a_missing_file_is_an_error() {
        let dir = TempDir::new();
        let out: Vec<io::Result<Bytes>> =
            read(dir.0.join("nope.log"), ReadOptions::default(), || false)
                .collect()
                .await;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].as_ref().unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn rotation_keeps_at_most_max_files() {
        let dir = TempDir::new();
        let path = dir.0.join("0.log");
        let mut w = Writer::create(&path, 200, 2).unwrap();
        for i in 0..40 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        drop(w);
        let rotated = rotated_files(&path).unwrap();
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        assert!(std::fs::metadata(&path).unwrap().len() <= 200);
        for r in &rotated {
            assert!(std::fs::metadata(r).unwrap().len() <= 200);
        }
        // The newest rotated file ends where the current one starts.
        let last_rotated = file_lines(&rotated[1]);
        let current = file_lines(&path);
        let number = |l: &str| -> u32 { l.rsplit(' ').next().unwrap().parse().unwrap() };
        assert_eq!(
            number(last_rotated.last().unwrap()) + 1,
            number(&current[0])
        );
        assert_eq!(number(current.last().unwrap()), 39);
        // Everything in the directory is the current file or one of the rotated ones.
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 3);
    }

    #[tokio::test]
    async fn follow_ends_when_the_container_stops_and_the_file_is_drained() {
        let dir = TempDir::new();
        let path = dir.0.join("0.log");
        // Small files: the follower has to go with the rotations.
        let mut w = Writer::create(&path, 300, 100).unwrap();
        w.write(Stream::Stdout, b"before\n").unwrap();
        let running = Arc::new(AtomicBool::new(true));
        let alive = running.clone();
        let mut stream = Box::pin(read(
            path.clone(),
            ReadOptions {
                follow: true,
                ..Default::default()
            },
            move || alive.load(Ordering::SeqCst),
        ));
        let mut seen = String::new();
        let wait = Duration::from_secs(10);
        while !seen.contains("before\n") {
            let chunk = tokio::time::timeout(wait, stream.next())
                .await
                .expect("output in time");
            seen.push_str(std::str::from_utf8(&chunk.unwrap().unwrap()).unwrap());
        }
        let writer = std::thread::spawn(move || {
            for i in 0..30 {
                w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                    .unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
            w.write(Stream::Stderr, b"last words").unwrap();
            drop(w);
            running.store(false, Ordering::SeqCst);
        });
        while let Some(chunk) = tokio::time::timeout(wait, stream.next())
            .await
            .expect("the stream ends in time")
        {
            seen.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
        writer.join().unwrap();
        let mut expected = String::from("before\n");
        for i in 0..30 {
            expected.push_str(&format!("line {i}\n"));
        }
        expected.push_str("last words");
        assert_eq!(seen, expected);
        assert!(!rotated_files(&path).unwrap().is_empty());
    }

    #[tokio::test]
    async fn follow_with_tail_and_limit() {
        let dir = TempDir::new();
        let path = dir.0.join("0.log");
        let mut w = Writer::create(&path, 0, 0).unwrap();
        w.write(Stream::Stdout, b"a\nb\nc\n").unwrap();
        let running = Arc::new(AtomicBool::new(true));
        let alive = running.clone();
        let stream = read(
            path.clone(),
            ReadOptions {
                follow: true,
                tail_lines: Some(1),
                limit_bytes: Some(5),
                ..Default::default()
            },
            move || alive.load(Ordering::SeqCst),
        );
        let reader = tokio::spawn(async move {
            let chunks: Vec<io::Result<Bytes>> = stream.collect().await;
            chunks
                .into_iter()
                .map(|c| String::from_utf8(c.unwrap().to_vec()).unwrap())
                .collect::<String>()
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        w.write(Stream::Stdout, b"dd\neeeee\n").unwrap();
        // The byte limit ends the stream although the container still runs.
        let out = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("ends at the byte limit")
            .unwrap();
        assert_eq!(out, "c\ndd\n");
        assert!(running.load(Ordering::SeqCst));
    }
}
