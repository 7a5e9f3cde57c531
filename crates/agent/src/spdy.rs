//! SPDY/3.1, server side: the multiplexing transport of Kubernetes' streaming protocols on an
//! upgraded HTTP/1.1 connection (`kubectl exec`/`attach` up to 1.29, `kubectl port-forward`),
//! as spoken by the Go `spdystream` package in kubectl and client-go. The client opens every
//! stream; [`serve`] answers each SYN_STREAM with a SYN_REPLY and hands the stream out.
//!
//! Implemented: the frame codec (DATA, SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING,
//! GOAWAY, HEADERS, WINDOW_UPDATE), header blocks in one zlib stream per direction preset with
//! SPDY/3's dictionary, PING echo, FIN and RST_STREAM, GOAWAY on close or protocol error.
//!
//! Flow control is not used. spdystream ignores the WINDOW_UPDATE frames it receives, never
//! sends any, and writes DATA without looking at a window: honouring windows would stall every
//! transfer after 64 KiB, so none are tracked or sent. Memory is bounded without them: writes
//! share a 1 MiB queue budget, and once one stream holds 8 MiB unread the session stops reading
//! the socket until that stream is read or its reader dropped (TCP backpressure; spdystream
//! itself blocks its reader far sooner, after 50 unhandled frames).

use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;
const FLAG_FIN: u8 = 1;
/// RST_STREAM statuses.
const PROTOCOL_ERROR: u32 = 1;
const REFUSED_STREAM: u32 = 3;
/// GOAWAY statuses (PROTOCOL_ERROR is 1 there too).
const GOAWAY_OK: u32 = 0;
const GOAWAY_INTERNAL_ERROR: u32 = 2;

/// The largest DATA frame we send.
const MAX_DATA_CHUNK: usize = 32 * 1024;
/// Bytes of DATA queued for the socket across all streams before writers wait.
const WRITE_BUDGET: usize = 1 << 20;
/// Control frames (SYN_REPLY, PING echoes) queued before the reader waits.
const CONTROL_BUDGET: usize = 64;
/// Unread bytes one stream may hold before the session stops reading the socket.
const STREAM_BUFFER_CAP: usize = 8 << 20;
/// The largest control frame and decompressed header block accepted.
const MAX_CONTROL_LEN: usize = 1 << 20;
/// Streams open from the peer's side at once; more are refused.
const MAX_STREAMS: usize = 1024;
/// Bytes of frames gathered into one socket write.
const BATCH: usize = 256 * 1024;
/// How long closing waits to write GOAWAY, and then for the peer to close its side.
const LINGER: Duration = Duration::from_secs(5);

/// SPDY/3's preset zlib dictionary for header blocks (1423 bytes, Adler-32 0xe3c6a7c2).
const DICTIONARY: &[u8] = b"\
    \0\0\0\x07options\0\0\0\x04head\0\0\0\x04post\0\0\0\x03put\0\0\0\x06delete\0\0\0\x05trac\
    e\0\0\0\x06accept\0\0\0\x0eaccept-charset\0\0\0\x0faccept-encoding\0\0\0\x0faccept-langu\
    age\0\0\0\x0daccept-ranges\0\0\0\x03age\0\0\0\x05allow\0\0\0\x0dauthorization\0\0\0\x0dc\
    ache-control\0\0\0\x0aconnection\0\0\0\x0ccontent-base\0\0\0\x10content-encoding\0\0\0\
    \x10content-language\0\0\0\x0econtent-length\0\0\0\x10content-location\0\0\0\x0bcontent-\
    md5\0\0\0\x0dcontent-range\0\0\0\x0ccontent-type\0\0\0\x04date\0\0\0\x04etag\0\0\0\x06ex\
    pect\0\0\0\x07expires\0\0\0\x04from\0\0\0\x04host\0\0\0\x08if-match\0\0\0\x11if-modified\
    -since\0\0\0\x0dif-none-match\0\0\0\x08if-range\0\0\0\x13if-unmodified-since\0\0\0\x0dla\
    st-modified\0\0\0\x08location\0\0\0\x0cmax-forwards\0\0\0\x06pragma\0\0\0\x12proxy-authe\
    nticate\0\0\0\x13proxy-authorization\0\0\0\x05range\0\0\0\x07referer\0\0\0\x0bretry-afte\
    r\0\0\0\x06server\0\0\0\x02te\0\0\0\x07trailer\0\0\0\x11transfer-encoding\0\0\0\x07upgra\
    de\0\0\0\x0auser-agent\0\0\0\x04vary\0\0\0\x03via\0\0\0\x07warning\0\0\0\x10www-authenti\
    cate\0\0\0\x06method\0\0\0\x03get\0\0\0\x06status\0\0\0\x06200 OK\0\0\0\x07version\0\0\0\
    \x08HTTP/1.1\0\0\0\x03url\0\0\0\x06public\0\0\0\x0aset-cookie\0\0\0\x0akeep-alive\0\0\0\
    \x06origin100101201202205206300302303304305306307402405406407408409410411412413414415416\
    417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad \
    Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implem\
    ented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mo\
    n, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,appl\
    ication/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,d\
    eflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.\
";

/// A header block: lowercase names, one pair per value.
type Headers = Vec<(String, String)>;

/// One frame, header blocks decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Frame {
    /// DATA: stream, FIN, payload.
    Data(u32, bool, Bytes),
    /// SYN_STREAM, SYN_REPLY or HEADERS: type, stream, FIN, header block.
    Headed(u16, u32, bool, Headers),
    /// RST_STREAM (stream, status), GOAWAY (last stream, status), WINDOW_UPDATE (stream,
    /// delta) or PING (id, unused): type and the two words.
    Words(u16, u32, u32),
    /// SETTINGS (its entries only tune flow control) or another type: skipped.
    Other(u16),
}

fn be32(p: &[u8], at: usize) -> Result<u32, &'static str> {
    let b = p.get(at..at + 4).ok_or("short frame")?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The uncompressed header block: a u32 count, then per name a u32-length-prefixed lowercase
/// name and value, a name's several values joined by NUL (spdystream rejects repeated names).
fn encode_block(headers: &[(String, String)]) -> Vec<u8> {
    let mut names: Vec<String> = Vec::new();
    for (name, _) in headers {
        let name = name.to_ascii_lowercase();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let mut out = Vec::new();
    out.put_u32(names.len() as u32);
    for name in &names {
        let values = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let value = values
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join("\0");
        for field in [name.as_bytes(), value.as_bytes()] {
            out.put_u32(field.len() as u32);
            out.put_slice(field);
        }
    }
    out
}

fn parse_block(mut b: &[u8]) -> Result<Headers, &'static str> {
    fn take<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], &'static str> {
        let n = be32(b, 0)? as usize;
        let field = b.get(4..4 + n).ok_or("short header block")?;
        *b = &b[4 + n..];
        Ok(field)
    }
    let count = be32(b, 0)? as usize;
    b = &b[4..];
    if count > b.len() / 8 {
        return Err("bad header count");
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let name = String::from_utf8_lossy(take(&mut b)?).to_ascii_lowercase();
        for value in take(&mut b)?.split(|&c| c == 0) {
            headers.push((name.clone(), String::from_utf8_lossy(value).into_owned()));
        }
    }
    Ok(headers)
}

/// The sending direction's header compressor: one zlib stream for the whole connection, each
/// block ending in a sync flush so that the peer can decode it at once.
struct Deflater(Compress);

impl Deflater {
    fn new() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(DICTIONARY)
            .expect("a fresh zlib stream takes a dictionary");
        Deflater(z)
    }

    fn block(&mut self, headers: &[(String, String)]) -> io::Result<Vec<u8>> {
        let raw = encode_block(headers);
        let (mut out, mut used) = (Vec::with_capacity(raw.len() + 64), 0);
        loop {
            out.reserve(256);
            let before = self.0.total_in();
            let flushed = self
                .0
                .compress_vec(&raw[used..], &mut out, FlushCompress::Sync);
            flushed.map_err(io::Error::other)?;
            used += (self.0.total_in() - before) as usize;
            if used == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The receiving direction's header decompressor: the peer's zlib stream.
struct Inflater(Decompress);

impl Inflater {
    fn new() -> Self {
        Inflater(Decompress::new(true))
    }

    fn block(&mut self, input: &[u8]) -> Result<Headers, &'static str> {
        let (mut out, mut used) = (Vec::with_capacity(input.len() * 4 + 256), 0);
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_CONTROL_LEN {
                    return Err("header block too large");
                }
                out.reserve(out.len());
            }
            let (before, produced) = (self.0.total_in(), out.len());
            let mut progress = false;
            match self
                .0
                .decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    let set = self.0.set_dictionary(DICTIONARY);
                    set.map_err(|_| "wrong header dictionary")?;
                    progress = true;
                }
                Err(_) => return Err("corrupt header block"),
            }
            used += (self.0.total_in() - before) as usize;
            if used == input.len() && out.len() < out.capacity() {
                return parse_block(&out);
            }
            if !progress && self.0.total_in() == before && out.len() == produced {
                return Err("truncated header block");
            }
        }
    }
}

fn decode_control(kind: u16, flags: u8, p: &[u8], z: &mut Inflater) -> Result<Frame, &'static str> {
    let (fin, id) = (flags & FLAG_FIN != 0, be32(p, 0).map(|v| v & 0x7fff_ffff));
    let frame = match kind {
        SYN_STREAM | SYN_REPLY | HEADERS => {
            let skip = if kind == SYN_STREAM { 10 } else { 4 };
            let block = p.get(skip..).ok_or("short frame")?;
            Frame::Headed(kind, id?, fin, z.block(block)?)
        }
        RST_STREAM | GOAWAY | WINDOW_UPDATE if p.len() == 8 => Frame::Words(kind, id?, be32(p, 4)?),
        PING if p.len() == 4 => Frame::Words(kind, be32(p, 0)?, 0),
        SETTINGS if be32(p, 0)? as usize * 8 + 4 <= p.len() => Frame::Other(kind),
        RST_STREAM | GOAWAY | WINDOW_UPDATE | PING | SETTINGS => return Err("bad frame length"),
        _ => Frame::Other(kind),
    };
    match frame {
        Frame::Headed(_, 0, ..) | Frame::Words(RST_STREAM, 0, _) => Err("stream id 0"),
        frame => Ok(frame),
    }
}

enum ReadError {
    Io(io::Error),
    Malformed(&'static str),
}

/// Reads one frame: 8 bytes (control bit and version and type, or the stream id; then flags
/// and a 24-bit length), then the payload.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, z: &mut Inflater) -> Result<Frame, ReadError> {
    let mut head = [0u8; 8];
    r.read_exact(&mut head).await.map_err(ReadError::Io)?;
    let (word, flags) = (be32(&head, 0).unwrap_or(0), head[4]);
    let len = (be32(&head, 4).unwrap_or(0) & 0xff_ffff) as usize;
    let control = word & 0x8000_0000 != 0;
    if control && len > MAX_CONTROL_LEN {
        return Err(ReadError::Malformed("control frame too large"));
    }
    let mut payload = BytesMut::zeroed(len);
    r.read_exact(&mut payload).await.map_err(ReadError::Io)?;
    match word & 0x7fff_ffff {
        0 if !control => Err(ReadError::Malformed("data on stream 0")),
        stream if !control => Ok(Frame::Data(stream, flags & FLAG_FIN != 0, payload.freeze())),
        _ if word >> 16 != 0x8000 | u32::from(VERSION) => Err(ReadError::Malformed("not SPDY/3")),
        _ => decode_control(word as u16, flags, &payload, z).map_err(ReadError::Malformed),
    }
}

/// Appends `frame` to `out`, compressing its header block: frames must be encoded in the order
/// they go on the wire.
fn encode(frame: &Frame, z: &mut Deflater, out: &mut BytesMut) -> io::Result<()> {
    let mut p = BytesMut::new();
    let (kind, fin) = match frame {
        Frame::Data(stream, fin, data) => {
            debug_assert!(data.len() < 1 << 24);
            out.put_u32(stream & 0x7fff_ffff);
            out.put_u32(u32::from(*fin) << 24 | data.len() as u32);
            out.put_slice(data);
            return Ok(());
        }
        Frame::Headed(kind, stream, fin, headers) => {
            p.put_u32(*stream);
            if *kind == SYN_STREAM {
                p.put_bytes(0, 6); // associated stream, priority, slot
            }
            p.put_slice(&z.block(headers)?);
            (*kind, *fin)
        }
        Frame::Words(kind, a, b) => {
            p.put_u32(*a);
            if *kind != PING {
                p.put_u32(*b);
            }
            (*kind, false)
        }
        Frame::Other(kind) => {
            if *kind == SETTINGS {
                p.put_u32(0);
            }
            (*kind, false)
        }
    };
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u32(u32::from(fin) << 24 | p.len() as u32); // FLAG_FIN is bit 0 of the flags
    out.put_slice(&p);
    Ok(())
}

/// What the writer task is sent, written in order.
enum Out {
    /// A frame, with the queue budget it holds until written.
    Frame(Frame, Option<OwnedSemaphorePermit>),
    /// Write GOAWAY after everything queued before, shut the socket down, then answer.
    Close(oneshot::Sender<()>),
}

/// Why the reader task stopped.
enum End {
    Closed,
    GoAway,
    Protocol,
}

/// A stream's receiving side, shared by the reader task and the stream's halves.
#[derive(Default)]
struct Shared(Mutex<Inbox>);

#[derive(Default)]
struct Inbox {
    chunks: VecDeque<Bytes>,
    buffered: usize,
    /// FIN, RST_STREAM or the connection gone.
    eof: bool,
    /// RST_STREAM: writes fail too.
    reset: bool,
    /// The StreamReader is gone: data is dropped.
    unread: bool,
    reader: Option<Waker>,
    space: Option<Waker>,
}

fn wake(waker: &mut Option<Waker>) {
    if let Some(waker) = waker.take() {
        waker.wake();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues data; true when the stream now holds more than its cap unread.
    fn push(&self, data: Bytes, fin: bool) -> bool {
        let mut b = self.lock();
        if !b.unread && !data.is_empty() {
            b.buffered += data.len();
            b.chunks.push_back(data);
        }
        b.eof |= fin;
        wake(&mut b.reader);
        b.buffered > STREAM_BUFFER_CAP
    }

    fn finish(&self, reset: bool) {
        let mut b = self.lock();
        b.eof = true;
        b.reset |= reset;
        wake(&mut b.reader);
    }

    fn poll_space(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut b = self.lock();
        if b.buffered <= STREAM_BUFFER_CAP / 2 {
            return Poll::Ready(());
        }
        b.space = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Serves a SPDY/3.1 session on `io` (already upgraded: the HTTP 101 was sent by the caller).
pub(crate) fn serve<IO>(io: IO) -> Session
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let (out, out_rx) = mpsc::unbounded_channel();
    let (accept, streams) = mpsc::unbounded_channel();
    let (end_tx, end_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    let budgets = [WRITE_BUDGET, CONTROL_BUDGET].map(|n| Arc::new(Semaphore::new(n)));
    let last_id = Arc::new(AtomicU32::new(0));
    let reader = Reader {
        io: BufReader::with_capacity(64 * 1024, rd),
        z: Inflater::new(),
        streams: HashMap::new(),
        out: out.downgrade(),
        accept: Some(accept),
        budgets: budgets.clone(),
        last_id: last_id.clone(),
    };
    tokio::spawn(reader.run(end_tx, stop_rx));
    tokio::spawn(write_loop(wr, out_rx, end_rx, stop_tx, budgets, last_id));
    Session { streams, out }
}

/// The connection's reader task: routes frames to streams, answers SYN_STREAM and PING.
struct Reader<R> {
    io: BufReader<R>,
    z: Inflater,
    /// The streams the peer may still send on.
    streams: HashMap<u32, Arc<Shared>>,
    /// Weak, so that the Session and the streams alone keep the connection up.
    out: mpsc::WeakUnboundedSender<Out>,
    accept: Option<mpsc::UnboundedSender<Stream>>,
    /// The queue budgets of DATA (bytes) and of control frames.
    budgets: [Arc<Semaphore>; 2],
    last_id: Arc<AtomicU32>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    async fn run(mut self, end: oneshot::Sender<End>, stop: oneshot::Receiver<()>) {
        let reason = tokio::select! {
            reason = self.frames() => Some(reason),
            _ = stop => None,
        };
        for (_, stream) in self.streams.drain() {
            stream.finish(false);
        }
        self.accept = None;
        if let Some(reason) = reason {
            let _ = end.send(reason);
        }
        // Read on until the peer closes: closing a socket with unread input sends a TCP reset,
        // which can destroy our last frames before the peer has read them.
        let mut sink = [0u8; 8192];
        let drain = async { while matches!(self.io.read(&mut sink).await, Ok(n) if n > 0) {} };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }

    async fn frames(&mut self) -> End {
        loop {
            let frame = match read_frame(&mut self.io, &mut self.z).await {
                Ok(frame) => frame,
                Err(ReadError::Io(e)) => {
                    if e.kind() != io::ErrorKind::UnexpectedEof {
                        tracing::debug!(error = %e, "spdy: read failed");
                    }
                    return End::Closed;
                }
                Err(ReadError::Malformed(why)) => {
                    tracing::debug!(reason = why, "spdy: protocol error, ending the session");
                    return End::Protocol;
                }
            };
            let up = match frame {
                Frame::Data(id, fin, data) => self.data(id, fin, data).await,
                Frame::Headed(SYN_STREAM, id, fin, headers) => self.open(id, fin, headers).await,
                Frame::Words(RST_STREAM, id, _) => {
                    if let Some(stream) = self.streams.remove(&id) {
                        stream.finish(true);
                    }
                    true
                }
                // Odd ids are the client's pings; even ones would answer ours, and we send none.
                Frame::Words(PING, id, _) if !id.is_multiple_of(2) => {
                    self.send_control(Frame::Words(PING, id, 0)).await
                }
                Frame::Words(GOAWAY, ..) => return End::GoAway,
                // SETTINGS and WINDOW_UPDATE only tune flow control (see the module docs);
                // SYN_REPLY and HEADERS carry nothing for us (their blocks were decompressed).
                _ => true,
            };
            if !up {
                return End::Closed;
            }
        }
    }

    async fn data(&mut self, id: u32, fin: bool, data: Bytes) -> bool {
        let Some(stream) = self.streams.get(&id).cloned() else {
            return true;
        };
        if fin {
            self.streams.remove(&id);
        }
        if stream.push(data, fin) {
            poll_fn(|cx| stream.poll_space(cx)).await;
        }
        true
    }

    async fn open(&mut self, id: u32, fin: bool, headers: Headers) -> bool {
        let fresh = !id.is_multiple_of(2) && id > self.last_id.load(Relaxed);
        if fresh {
            self.last_id.store(id, Relaxed);
        }
        let room = self.streams.len() < MAX_STREAMS;
        let accept = self
            .accept
            .clone()
            .filter(|accept| room && !accept.is_closed());
        let (true, Some(accept), Some(out)) = (fresh, accept, self.out.upgrade()) else {
            let status = if fresh {
                REFUSED_STREAM
            } else {
                PROTOCOL_ERROR
            };
            return self
                .send_control(Frame::Words(RST_STREAM, id, status))
                .await;
        };
        let shared = Arc::new(Shared::default());
        if fin {
            shared.finish(false);
        } else {
            self.streams.insert(id, shared.clone());
        }
        if !self
            .send_control(Frame::Headed(SYN_REPLY, id, false, Vec::new()))
            .await
        {
            return false;
        }
        let budget = self.budgets[0].clone();
        let (reader_out, out, pending) = (out.clone(), Some(out), None);
        let writer = StreamWriter {
            id,
            shared: shared.clone(),
            out,
            budget,
            pending,
        };
        let reader = StreamReader {
            shared,
            _connection: reader_out,
        };
        let _ = accept.send(Stream {
            id,
            headers,
            reader,
            writer,
        });
        true
    }

    /// Queues a control frame; false once the connection is going.
    async fn send_control(&mut self, frame: Frame) -> bool {
        let Ok(permit) = self.budgets[1].clone().acquire_owned().await else {
            return false;
        };
        let out = self.out.upgrade();
        out.is_some_and(|out| out.send(Out::Frame(frame, Some(permit))).is_ok())
    }
}

async fn write_out<W: AsyncWrite + Unpin>(io: &mut W, buf: &mut BytesMut) -> io::Result<()> {
    let written = io.write_all(buf).await;
    buf.clear();
    written?;
    io.flush().await
}

/// The connection's writer task: encodes frames in queue order, batching what is ready into
/// one socket write. Ends when the Session and every stream writer are gone, on close, or when
/// the reader stops; then sends GOAWAY (unless the peer is gone) and shuts the socket down.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut io: W,
    mut rx: mpsc::UnboundedReceiver<Out>,
    mut end: oneshot::Receiver<End>,
    stop: oneshot::Sender<()>,
    budgets: [Arc<Semaphore>; 2],
    last_id: Arc<AtomicU32>,
) {
    let (mut z, mut buf, mut acks) = (Deflater::new(), BytesMut::new(), Vec::new());
    let goaway = 'run: loop {
        let next = tokio::select! {
            biased;
            reason = &mut end => Err(matches!(reason, Ok(End::Protocol))),
            next = rx.recv() => Ok(next),
        };
        let mut next = match next {
            Err(protocol) => break protocol.then_some(PROTOCOL_ERROR),
            Ok(None) => break Some(GOAWAY_OK),
            Ok(Some(out)) => Some(out),
        };
        let (mut permits, mut closing) = (Vec::new(), false);
        while let Some(out) = next.take() {
            match out {
                Out::Frame(frame, permit) => {
                    if let Err(e) = encode(&frame, &mut z, &mut buf) {
                        tracing::debug!(error = %e, "spdy: cannot encode a frame");
                        break 'run Some(GOAWAY_INTERNAL_ERROR);
                    }
                    permits.extend(permit);
                }
                Out::Close(ack) => {
                    acks.push(ack);
                    closing = true;
                    break;
                }
            }
            if buf.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if let Err(e) = write_out(&mut io, &mut buf).await {
            tracing::debug!(error = %e, "spdy: write failed");
            break None;
        }
        drop(permits);
        if closing {
            break Some(GOAWAY_OK);
        }
    };
    rx.close();
    budgets.iter().for_each(|budget| budget.close());
    let finish = async {
        if let Some(status) = goaway {
            let frame = Frame::Words(GOAWAY, last_id.load(Relaxed), status);
            if encode(&frame, &mut z, &mut buf).is_ok() {
                let _ = write_out(&mut io, &mut buf).await;
            }
        }
        let _ = io.shutdown().await;
    };
    let _ = tokio::time::timeout(LINGER, finish).await;
    let _ = stop.send(());
    for ack in acks {
        let _ = ack.send(());
    }
}

/// A SPDY session being served. Dropping it and every stream and stream half (or the peer
/// closing) ends the connection, with a GOAWAY when the peer is still there.
pub(crate) struct Session {
    streams: mpsc::UnboundedReceiver<Stream>,
    out: mpsc::UnboundedSender<Out>,
}

impl Session {
    /// The next stream the client opened (SYN_STREAM), already answered with a SYN_REPLY; None
    /// once the connection is gone.
    pub(crate) async fn accept(&mut self) -> Option<Stream> {
        self.streams.recv().await
    }

    /// Ends the session: every frame queued so far (data, FINs of dropped or shut-down
    /// writers) is written, then GOAWAY, then the socket is shut down. Later writes fail.
    pub(crate) async fn close(self) {
        let (ack, done) = oneshot::channel();
        if self.out.send(Out::Close(ack)).is_ok() {
            let _ = done.await;
        }
    }
}

/// A stream the client opened.
pub(crate) struct Stream {
    id: u32,
    headers: Headers,
    reader: StreamReader,
    writer: StreamWriter,
}

impl Stream {
    /// The stream's id (odd: the client's).
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// A header's value (names compared case-insensitively), e.g. `streamtype`, `port`,
    /// `requestid`; the first one when there are several.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        let found = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str())
    }

    /// The receiving and sending halves.
    pub(crate) fn split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }
}

/// A stream's incoming data: EOF on the peer's FIN or RST_STREAM, or when the connection ends.
pub(crate) struct StreamReader {
    shared: Arc<Shared>,
    /// Keeps the connection up while the reader is.
    _connection: mpsc::UnboundedSender<Out>,
}

impl AsyncRead for StreamReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut b = self.shared.lock();
        let mut copied = 0;
        while let Some(front) = b.chunks.front_mut().filter(|_| buf.remaining() > 0) {
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front.split_to(n));
            if front.is_empty() {
                b.chunks.pop_front();
            }
            copied += n;
        }
        b.buffered -= copied;
        if b.buffered <= STREAM_BUFFER_CAP / 2 {
            wake(&mut b.space);
        }
        if copied > 0 || b.eof || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        b.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        let mut b = self.shared.lock();
        b.unread = true;
        b.buffered = 0;
        b.chunks.clear();
        wake(&mut b.space);
    }
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A stream's outgoing data: each write becomes DATA frames of at most 32 KiB; shutting down
/// (or dropping) sends FIN. Writes fail with BrokenPipe after the peer's RST_STREAM, after
/// shutdown, and once the connection is gone.
pub(crate) struct StreamWriter {
    id: u32,
    shared: Arc<Shared>,
    /// None once FIN is sent.
    out: Option<mpsc::UnboundedSender<Out>>,
    budget: Arc<Semaphore>,
    /// A write waiting for queue budget: its size and the wait.
    pending: Option<(usize, Acquire)>,
}

impl StreamWriter {
    fn fin(&mut self) {
        if let Some(out) = self.out.take() {
            let _ = out.send(Out::Frame(Frame::Data(self.id, true, Bytes::new()), None));
        }
    }
}

impl AsyncWrite for StreamWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let broken = || Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        let Some(out) = this.out.as_ref().filter(|out| !out.is_closed()) else {
            return broken();
        };
        if this.shared.lock().reset {
            return broken();
        } else if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let (size, acquire) = this.pending.get_or_insert_with(|| {
            let size = buf.len().min(MAX_DATA_CHUNK);
            (
                size,
                Box::pin(this.budget.clone().acquire_many_owned(size as u32)),
            )
        });
        let Poll::Ready(permit) = acquire.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        let n = (*size).min(buf.len());
        this.pending = None;
        let Ok(permit) = permit else { return broken() };
        let data = Frame::Data(this.id, false, Bytes::copy_from_slice(&buf[..n]));
        match out.send(Out::Frame(data, Some(permit))) {
            Ok(()) => Poll::Ready(Ok(n)),
            Err(_) => broken(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().fin();
        Poll::Ready(Ok(()))
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        self.fin();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{DuplexStream, ReadHalf, WriteHalf};
    use tokio::time::timeout;

    const WAIT: Duration = Duration::from_secs(10);
    const BROKEN: io::ErrorKind = io::ErrorKind::BrokenPipe;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn syn(id: u32, pairs: &[(&str, &str)]) -> Frame {
        Frame::Headed(SYN_STREAM, id, false, h(pairs))
    }

    fn data(id: u32, fin: bool, bytes: &[u8]) -> Frame {
        Frame::Data(id, fin, Bytes::copy_from_slice(bytes))
    }

    /// The client's halves, each with its own zlib stream.
    struct Tx(WriteHalf<DuplexStream>, Deflater);
    struct Rx(BufReader<ReadHalf<DuplexStream>>, Inflater);

    impl Tx {
        async fn send(&mut self, frame: Frame) {
            let mut buf = BytesMut::new();
            encode(&frame, &mut self.1, &mut buf).unwrap();
            self.0.write_all(&buf).await.unwrap();
        }
    }

    impl Rx {
        /// The next frame; None once the server has closed the connection.
        async fn recv(&mut self) -> Option<Frame> {
            let frame = timeout(WAIT, read_frame(&mut self.0, &mut self.1)).await;
            frame.expect("no frame").ok()
        }
    }

    /// A session whose client opened `n` streams (ids 1, 3, …) and got their SYN_REPLYs.
    async fn open(pipe: usize, n: u32) -> (Session, Tx, Rx, Vec<Stream>) {
        let (server, client) = tokio::io::duplex(pipe);
        let (rd, wr) = tokio::io::split(client);
        let (mut session, mut streams) = (serve(server), Vec::new());
        let (mut tx, mut rx) = (
            Tx(wr, Deflater::new()),
            Rx(BufReader::new(rd), Inflater::new()),
        );
        for id in (1..2 * n).step_by(2) {
            tx.send(syn(
                id,
                &[("streamType", "data"), ("Port", &format!("{}", 8000 + id))],
            ))
            .await;
            streams.push(session.accept().await.unwrap());
            assert_eq!(
                rx.recv().await,
                Some(Frame::Headed(SYN_REPLY, id, false, Vec::new()))
            );
        }
        (session, tx, rx, streams)
    }

    /// Streams 1 and 3.
    fn pair(mut streams: Vec<Stream>) -> (Stream, Stream) {
        let three = streams.pop().unwrap();
        (streams.pop().unwrap(), three)
    }

    async fn read_all(r: &mut StreamReader) -> Vec<u8> {
        let mut all = Vec::new();
        timeout(WAIT, r.read_to_end(&mut all))
            .await
            .expect("no EOF")
            .unwrap();
        all
    }

    #[test]
    fn frames_and_header_blocks_have_the_spdy3_layout() {
        assert_eq!(DICTIONARY.len(), 1423);
        let mut z = Compress::new(Compression::default(), true);
        assert_eq!(z.set_dictionary(DICTIONARY).unwrap(), 0xe3c6_a7c2);
        let block = encode_block(&h(&[("Port", "80"), ("x", "a"), ("X", "b")]));
        assert_eq!(
            block,
            b"\0\0\0\x02\0\0\0\x04port\0\0\0\x0280\0\0\0\x01x\0\0\0\x03a\0b"
        );
        let (mut buf, mut z) = (BytesMut::new(), Deflater::new());
        for frame in [
            data(5, true, b"hi"),
            Frame::Words(PING, 1, 0),
            Frame::Words(GOAWAY, 3, 1),
        ] {
            encode(&frame, &mut z, &mut buf).unwrap();
        }
        let want: &[&[u8]] = &[
            &[0, 0, 0, 5, 1, 0, 0, 2, b'h', b'i'],
            &[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1],
            &[0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 1],
        ];
        assert_eq!(&buf[..], &want.concat()[..]);
    }

    #[test]
    fn header_blocks_share_one_zlib_stream_per_direction() {
        let (mut deflate, mut inflate) = (Deflater::new(), Inflater::new());
        let sent = h(&[
            ("StreamType", "stdout"),
            ("port", "8080"),
            ("x", "a"),
            ("X", "b"),
        ]);
        let first = deflate.block(&sent).unwrap();
        let second = deflate.block(&sent).unwrap();
        assert!(
            second.len() < first.len(),
            "the second block refers back to the first"
        );
        assert!(
            Inflater::new().block(&second).is_err(),
            "a later block alone is undecodable"
        );
        let want = h(&[
            ("streamtype", "stdout"),
            ("port", "8080"),
            ("x", "a"),
            ("x", "b"),
        ]);
        assert_eq!(inflate.block(&first).unwrap(), want);
        assert_eq!(inflate.block(&second).unwrap(), want);
        assert_eq!(
            inflate.block(&deflate.block(&[]).unwrap()).unwrap(),
            Vec::new()
        );
        assert!(inflate.block(&[0xff; 16]).is_err());
    }

    #[tokio::test]
    async fn streams_carry_headers_data_and_fin() {
        let (_session, mut tx, mut rx, streams) = open(64 * 1024, 2).await;
        let (one, three) = pair(streams);
        assert_eq!(
            (one.id(), one.header("STREAMTYPE"), one.header("port")),
            (1, Some("data"), Some("8001"))
        );
        assert_eq!((three.id(), three.header("port")), (3, Some("8003")));
        tx.send(data(1, false, b"hel")).await;
        tx.send(data(1, true, b"lo")).await;
        let ((mut r1, w1), (_r3, mut w3)) = (one.split(), three.split());
        assert_eq!(read_all(&mut r1).await, b"hello");
        w3.write_all(b"world").await.unwrap();
        w3.shutdown().await.unwrap();
        assert_eq!(rx.recv().await, Some(data(3, false, b"world")));
        assert_eq!(rx.recv().await, Some(data(3, true, b"")));
        assert_eq!(w3.write(b"more").await.unwrap_err().kind(), BROKEN);
        drop(w1);
        assert_eq!(
            rx.recv().await,
            Some(data(1, true, b"")),
            "dropping a writer sends FIN"
        );
    }

    #[tokio::test]
    async fn pings_are_echoed_and_other_frames_ignored() {
        let (mut session, mut tx, mut rx, _streams) = open(64 * 1024, 1).await;
        tx.send(Frame::Other(SETTINGS)).await;
        tx.send(Frame::Words(WINDOW_UPDATE, 0, 1000)).await;
        tx.send(Frame::Other(10)).await;
        tx.send(Frame::Headed(HEADERS, 9, false, h(&[("a", "b")])))
            .await;
        tx.send(data(11, false, b"nobody's")).await;
        tx.send(Frame::Words(PING, 2, 0)).await;
        tx.send(Frame::Words(PING, 1, 0)).await;
        assert_eq!(rx.recv().await, Some(Frame::Words(PING, 1, 0)));
        // The HEADERS block above went through the shared zlib stream too.
        tx.send(syn(13, &[("streamtype", "error")])).await;
        assert_eq!(
            session.accept().await.unwrap().header("streamType"),
            Some("error")
        );
        // Client stream ids are odd and increase.
        tx.send(syn(5, &[])).await;
        assert_eq!(
            rx.recv().await,
            Some(Frame::Headed(SYN_REPLY, 13, false, Vec::new()))
        );
        assert_eq!(rx.recv().await, Some(data(13, true, b"")));
        assert_eq!(
            rx.recv().await,
            Some(Frame::Words(RST_STREAM, 5, PROTOCOL_ERROR))
        );
    }

    #[tokio::test]
    async fn big_transfers_both_ways_without_window_updates() {
        let (_session, mut tx, mut rx, mut streams) = open(64 * 1024, 1).await;
        let (mut r, mut w) = streams.pop().unwrap().split();
        let payload: Vec<u8> = (0..5 << 20).map(|i| (i % 251) as u8).collect();
        let (up, down) = (payload.clone(), payload.clone());
        let upload = tokio::spawn(async move {
            for chunk in up.chunks(16 * 1024) {
                tx.send(data(1, false, chunk)).await;
            }
            tx.send(data(1, true, b"")).await;
        });
        let download =
            tokio::spawn(async move { w.write_all(&down).await.and(w.shutdown().await) });
        let uploaded = tokio::spawn(async move { read_all(&mut r).await });
        let mut got = Vec::new();
        while let Some(Frame::Data(1, fin, data)) = rx.recv().await {
            assert!(data.len() <= MAX_DATA_CHUNK);
            got.extend_from_slice(&data);
            if fin {
                break;
            }
        }
        assert!(got == payload, "download differs");
        assert!(uploaded.await.unwrap() == payload, "upload differs");
        download.await.unwrap().unwrap();
        upload.await.unwrap();
    }

    #[tokio::test]
    async fn malformed_frames_end_the_session_with_goaway() {
        let cases: [&[u8]; 4] = [
            &[0x80, 3, 0, 6, 0, 0, 0, 2, 0, 1], // a PING of 2 bytes
            &[
                0x80, 3, 0, 1, 0, 0, 0, 14, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4,
            ], // no zlib
            &[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1], // SPDY/2
            &[0, 0, 0, 0, 0, 0, 0, 1, 0],       // DATA on stream 0
        ];
        for case in cases {
            let (mut session, mut tx, mut rx, mut streams) = open(64 * 1024, 1).await;
            let (mut r, mut w) = streams.pop().unwrap().split();
            tx.0.write_all(case).await.unwrap();
            assert_eq!(
                rx.recv().await,
                Some(Frame::Words(GOAWAY, 1, PROTOCOL_ERROR))
            );
            assert_eq!(rx.recv().await, None, "the socket is shut down");
            assert!(session.accept().await.is_none());
            assert_eq!(read_all(&mut r).await, b"");
            assert_eq!(w.write(b"x").await.unwrap_err().kind(), BROKEN);
        }
    }

    #[tokio::test]
    async fn close_writes_everything_queued_then_goaway() {
        let (session, _tx, mut rx, streams) = open(1024, 2).await;
        let (one, three) = pair(streams);
        let ((_r1, mut w1), (_r3, w3)) = (one.split(), three.split());
        w1.write_all(&[7; 100_000]).await.unwrap();
        drop(w3);
        let closing = tokio::spawn(session.close());
        let mut frames = Vec::new();
        while let Some(frame) = rx.recv().await {
            frames.push(frame);
        }
        closing.await.unwrap();
        let sent = frames.iter().map(|f| {
            if let Frame::Data(1, _, d) = f {
                d.len()
            } else {
                0
            }
        });
        assert_eq!(sent.sum::<usize>(), 100_000);
        let last = [data(3, true, b""), Frame::Words(GOAWAY, 3, GOAWAY_OK)];
        assert_eq!(frames[frames.len() - 2..], last);
        assert_eq!(w1.write(b"x").await.unwrap_err().kind(), BROKEN);
    }

    #[tokio::test]
    async fn dropping_everything_sends_goaway() {
        let (session, _tx, mut rx, mut streams) = open(64 * 1024, 1).await;
        let (r, w) = streams.pop().unwrap().split();
        drop((session, w));
        assert_eq!(rx.recv().await, Some(data(1, true, b"")));
        let early = timeout(Duration::from_millis(100), rx.recv()).await;
        assert!(early.is_err(), "a stream's reader keeps the connection up");
        drop(r);
        assert_eq!(rx.recv().await, Some(Frame::Words(GOAWAY, 1, GOAWAY_OK)));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn reset_ends_a_stream_and_peer_close_ends_the_session() {
        let (mut session, mut tx, rx, streams) = open(64 * 1024, 2).await;
        let (one, three) = pair(streams);
        let ((mut r1, mut w1), (mut r3, _w3)) = (one.split(), three.split());
        tx.send(data(1, false, b"abc")).await;
        tx.send(Frame::Words(RST_STREAM, 1, 5)).await;
        assert_eq!(read_all(&mut r1).await, b"abc");
        assert_eq!(w1.write(b"x").await.unwrap_err().kind(), BROKEN);
        drop((tx, rx));
        assert!(session.accept().await.is_none());
        assert_eq!(read_all(&mut r3).await, b"", "the connection's end is EOF");
    }

    #[tokio::test]
    async fn an_unread_stream_pauses_the_session_until_its_reader_goes() {
        let (_session, mut tx, mut rx, streams) = open(64 * 1024, 2).await;
        let (one, three) = pair(streams);
        let ((r1, _w1), (mut r3, _w3)) = (one.split(), three.split());
        let flood = tokio::spawn(async move {
            let chunk = vec![0u8; 64 * 1024];
            for _ in 0..STREAM_BUFFER_CAP / chunk.len() + 2 {
                tx.send(data(1, false, &chunk)).await;
            }
            tx.send(data(3, true, b"late")).await;
            tx.send(Frame::Words(PING, 1, 0)).await;
        });
        let mut early = Vec::new();
        let paused = timeout(Duration::from_millis(300), r3.read_to_end(&mut early)).await;
        assert!(
            paused.is_err() && early.is_empty(),
            "stream 1 holds the session"
        );
        drop(r1);
        assert_eq!(read_all(&mut r3).await, b"late");
        assert_eq!(rx.recv().await, Some(Frame::Words(PING, 1, 0)));
        flood.await.unwrap();
    }
}
