//! Streaming into pods, the kubelet's `/exec` and `/portForward` endpoints that the API
//! server proxies `pods/exec` and `pods/portforward` to, in both of Kubernetes' transports:
//!
//! - WebSocket (kubectl 1.30+, kube-rs): exec with the `v5.channel.k8s.io` or
//!   `v4.channel.k8s.io` subprotocol, every message a channel byte then data (0 stdin, 1
//!   stdout, 2 stderr, 3 the final `Status`, 4 terminal resizes, 255 closes a channel in v5);
//!   the legacy `channel.k8s.io` (the error channel carries only a failure's message) and the
//!   `base64.` forms (text frames: the channel as a digit, the data in base64) as well;
//!   port-forward either tunnelled as SPDY inside binary messages
//!   (`SPDY/3.1+portforward.k8s.io`, kubectl) or over the channel protocol, two channels per
//!   port, each opened by a frame with the port number (kube-rs).
//! - SPDY/3.1 (kubectl 1.27 to 1.29, and every kubectl's fallback): exec with
//!   `v4.channel.k8s.io`, one stream per standard stream plus `error` and `resize`;
//!   port-forward with `portforward.k8s.io`, a `data` and an `error` stream per connection.
//!
//! Start at [`router`]; the process side is [`crate::exec`], the SPDY framing [`crate::spdy`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::server::Failure;
use crate::spdy;
use runtime::host::Host;
use runtime::session::{Exit, Request as ExecRequest, Session};

/// Where a pod's network is: its own namespace (the file it is bound to), or the host's.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Network {
    Pod(PathBuf),
    Host,
}

/// Finds a running container's id: `(namespace, pod, container)`.
pub(crate) type FindContainer = Arc<dyn Fn(&str, &str, &str) -> Option<String> + Send + Sync>;
/// Finds a running pod's UID and network: `(namespace, pod)`.
pub(crate) type FindPod = Arc<dyn Fn(&str, &str) -> Option<(String, Network)> + Send + Sync>;

/// What streaming needs from the agent.
pub(crate) struct Streaming {
    /// The machine: exec and attach sessions, connections into pods.
    pub(crate) host: Arc<dyn Host>,
    /// The agent's data directory: container bundles, and scratch space for exec sessions.
    pub(crate) data: PathBuf,
    /// The id of a running container.
    pub(crate) container: FindContainer,
    /// A running pod's UID and network.
    pub(crate) network: FindPod,
}

/// The streaming routes.
pub(crate) fn router(streaming: Arc<Streaming>) -> Router {
    Router::new()
        .route("/exec/{namespace}/{pod}/{container}", any(exec))
        .route("/attach/{namespace}/{pod}/{container}", any(attach))
        .route("/portForward/{namespace}/{pod}", any(port_forward))
        .with_state(streaming)
}

/// What a client's WebSocket message carries for the channels.
enum Frame {
    /// A channel byte and its data.
    Data(Bytes),
    /// The client closed.
    Close,
    /// Nothing for the channels (pings, empty frames).
    Skip,
}

/// Reads a message as upstream's wsstream does: text frames are bytes like binary ones (the
/// official Python client writes stdin as text frames).
fn payload(msg: Message) -> Frame {
    let data = match msg {
        Message::Binary(b) => b,
        Message::Text(t) => Bytes::from(t),
        Message::Close(_) => return Frame::Close,
        _ => return Frame::Skip,
    };
    if data.is_empty() {
        Frame::Skip
    } else {
        Frame::Data(data)
    }
}

/// Exec's WebSocket protocols, newest first: v5 and v4 (binary, a JSON `Status` on the error
/// channel), and the legacy ones upstream still serves (`channel.k8s.io`, and the `base64.`
/// forms whose text frames carry the channel as a digit and the data in base64).
const WS_EXEC: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "base64.v4.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];

/// How an exec WebSocket frames its channels, from the protocol agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Framing {
    /// Text frames: the channel as an ASCII digit, then the data in base64.
    base64: bool,
    /// The error channel carries a JSON `Status` (v4, v5), not the bare failure message.
    status: bool,
    /// Channel 255 closes a channel (v5).
    close: bool,
}

impl Framing {
    fn of(protocol: &str) -> Framing {
        let plain = protocol.trim_start_matches("base64.");
        Framing {
            base64: plain != protocol,
            status: matches!(plain, "v4.channel.k8s.io" | "v5.channel.k8s.io"),
            close: plain == "v5.channel.k8s.io",
        }
    }

    fn encode(self, channel: u8, data: &[u8]) -> Message {
        use base64::Engine as _;
        if self.base64 {
            let text = base64::engine::general_purpose::STANDARD.encode(data);
            return Message::Text(format!("{}{text}", char::from(b'0' + channel)).into());
        }
        channel_message(channel, data)
    }

    /// A frame's channel byte and data; `None` for a frame that does not decode.
    fn decode(self, frame: Bytes) -> Option<Bytes> {
        use base64::Engine as _;
        if !self.base64 {
            return Some(frame);
        }
        let channel = frame[0].checked_sub(b'0')?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(&frame[1..])
            .ok()?;
        let mut out = Vec::with_capacity(data.len() + 1);
        out.push(channel);
        out.extend(data);
        Some(out.into())
    }
}
const SPDY_EXEC: &[&str] = &["v4.channel.k8s.io"];
const WS_PORT_FORWARD: &[&str] = &[
    "SPDY/3.1+portforward.k8s.io",
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
];
const SPDY_PORT_FORWARD: &[&str] = &["portforward.k8s.io"];
/// How long the kubelet waits for a SPDY client to open the streams it asked for.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// A refusal, in plain text as the kubelet writes them.
fn plain(code: StatusCode, message: impl Into<String>) -> Failure {
    Failure(code, message.into())
}

/// The transport a request upgrades to, and the subprotocol agreed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Transport {
    WebSocket(&'static str),
    Spdy(&'static str),
}

/// A header's comma-separated values, over all of its lines.
fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Agrees on a transport and subprotocol: the first of the client's protocols the server
/// speaks, as upstream's handshakes choose.
fn negotiate(
    headers: &HeaderMap,
    websocket: &[&'static str],
    spdy: &[&'static str],
) -> Result<Transport, Failure> {
    let upgrade = header_values(headers, "upgrade");
    let pick = |client: &[String], server: &[&'static str]| {
        client
            .iter()
            .find_map(|c| server.iter().find(|s| s.eq_ignore_ascii_case(c)).copied())
    };
    if upgrade.iter().any(|u| u.eq_ignore_ascii_case("websocket")) {
        let client = header_values(headers, "sec-websocket-protocol");
        return pick(&client, websocket)
            .map(Transport::WebSocket)
            .ok_or_else(|| {
                plain(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "requested protocol(s) are not supported: {client:?}; supports {websocket:?}"
                    ),
                )
            });
    }
    if upgrade.iter().any(|u| u.eq_ignore_ascii_case("SPDY/3.1")) {
        let client = header_values(headers, "x-stream-protocol-version");
        return pick(&client, spdy).map(Transport::Spdy).ok_or_else(|| {
            plain(
                StatusCode::FORBIDDEN,
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {client:?}, server supports {spdy:?}"
                ),
            )
        });
    }
    Err(plain(StatusCode::BAD_REQUEST, "Upgrade request required"))
}

/// The 101 answer for `transport`, and the connection once the client switched.
fn switch(
    req: &mut Request,
    transport: Transport,
) -> Result<(Response, hyper::upgrade::OnUpgrade), Failure> {
    let on_upgrade = hyper::upgrade::on(&mut *req);
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    match transport {
        Transport::WebSocket(protocol) => {
            let key = req
                .headers()
                .get("sec-websocket-key")
                .ok_or_else(|| plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key"))?;
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(
                "sec-websocket-accept",
                HeaderValue::from_str(&accept).expect("base64 is a header value"),
            );
            h.insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
        }
        Transport::Spdy(protocol) => {
            h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
            h.insert(
                "x-stream-protocol-version",
                HeaderValue::from_static(protocol),
            );
        }
    }
    Ok((resp, on_upgrade))
}

/// The query's values: repeated parameters keep every value, in order.
fn query_values(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (crate::server::unescape(k), crate::server::unescape(v))
        })
        .collect()
}

/// An exec request's query (`command` repeated; the kubelet's `input`/`output`/`error` names
/// or kubectl's `stdin`/`stdout`/`stderr`).
fn exec_request(raw: Option<&str>, kind: Kind) -> Result<ExecRequest, Failure> {
    let values = query_values(raw);
    let flag = |names: &[&str]| {
        values
            .iter()
            .find(|(k, _)| names.contains(&k.as_str()))
            .is_some_and(|(_, v)| matches!(v.as_str(), "1" | "true" | "True" | "TRUE" | "t"))
    };
    let req = ExecRequest {
        command: values
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect(),
        stdin: flag(&["stdin", "input"]),
        stdout: flag(&["stdout", "output"]),
        stderr: flag(&["stderr", "error"]),
        tty: flag(&["tty"]),
    };
    if !(req.stdin || req.stdout || req.stderr) {
        return Err(plain(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    if kind == Kind::Exec && req.command.is_empty() {
        return Err(plain(StatusCode::BAD_REQUEST, "you must specify a command"));
    }
    Ok(req)
}

async fn exec(
    State(s): State<Arc<Streaming>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Response {
    session(s, Kind::Exec, (ns, pod, container), raw, req).await
}

async fn attach(
    State(s): State<Arc<Streaming>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(raw): RawQuery,
    req: Request,
) -> Response {
    session(s, Kind::Attach, (ns, pod, container), raw, req).await
}

/// A new process, or the container's own.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Exec,
    Attach,
}

/// An exec or attach session: checks, the protocol switch, then the streams until the process
/// ends (exec) or either side lets go (attach).
async fn session(
    s: Arc<Streaming>,
    kind: Kind,
    (ns, pod, container): (String, String, String),
    raw: Option<String>,
    mut req: Request,
) -> Response {
    let mut wanted = match exec_request(raw.as_deref(), kind) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    // A terminal merges the error stream into the output.
    wanted.stderr &= !wanted.tty;
    let Some(id) = (s.container)(&ns, &pod, &container) else {
        return plain(
            StatusCode::NOT_FOUND,
            format!("container not found ({container:?})"),
        )
        .into_response();
    };
    let transport = match negotiate(req.headers(), WS_EXEC, SPDY_EXEC) {
        Ok(t) => t,
        Err(refusal) => return refusal.into_response(),
    };
    let (resp, on_upgrade) = match switch(&mut req, transport) {
        Ok(s) => s,
        Err(refusal) => return refusal.into_response(),
    };
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(io) => TokioIo::new(io),
            Err(e) => {
                tracing::debug!(error = %e, "exec: the client did not switch protocols");
                return;
            }
        };
        let started = async {
            let streams = match kind {
                Kind::Exec => {
                    let scratch = s.data.join("exec");
                    s.host.exec_session(&id, &wanted, &scratch).await
                }
                Kind::Attach => {
                    let bundle = crate::containers::dir(&s.data, &id);
                    s.host.attach(&bundle, &wanted).await
                }
            };
            streams.map_err(|e| format!("{e:#}"))
        };
        let outcome = match transport {
            Transport::WebSocket(protocol) => {
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                exec_websocket(ws, Framing::of(protocol), started, &wanted).await
            }
            Transport::Spdy(_) => exec_spdy(spdy::serve(io), started, &wanted).await,
        };
        if let Err(e) = outcome {
            tracing::debug!(%ns, %pod, %container, error = %e, "a streaming session ended early");
        }
    });
    resp
}

/// What the client sends a running process.
enum Input {
    Stdin(Bytes),
    CloseStdin,
    Resize(u16, u16),
}

/// A terminal size as clients send it: `{"Width":80,"Height":24}`.
fn resize(json: &[u8]) -> Option<Input> {
    runtime::attach::parse_resize(json).map(|(w, h)| Input::Resize(w, h))
}

/// Copies `from` to the client as `channel` messages until it ends.
async fn pump(from: Box<dyn AsyncRead + Send + Unpin>, channel: u8, to: mpsc::Sender<(u8, Bytes)>) {
    let mut from = chunks(from, 32 * 1024);
    while let Some(data) = from.next().await {
        if to.send((channel, data)).await.is_err() {
            return;
        }
    }
}

/// Runs a session: feeds the process `input`, sends its output to `output` as (channel,
/// bytes), and returns how it ended once it has and its output is drained. When `input` ends
/// (the client went away) the session is dropped: an exec'd process is killed.
async fn run(
    mut streams: Session,
    mut input: mpsc::Receiver<Input>,
    output: mpsc::Sender<(u8, Bytes)>,
    tty: bool,
) -> crate::Result<Exit> {
    let mut pumps = Vec::new();
    if let Some(out) = streams.stdout.take() {
        pumps.push(tokio::spawn(pump(out, 1, output.clone())));
    }
    if let Some(err) = streams.stderr.take() {
        // With a terminal, only the runtime's own complaints come this way.
        pumps.push(tokio::spawn(pump(
            err,
            if tty { 1 } else { 2 },
            output.clone(),
        )));
    }
    drop(output);
    let mut stdin = streams.stdin.take();
    let resize = streams.resize.take();
    let exit = loop {
        tokio::select! {
            exit = &mut streams.ended => break Some(exit),
            msg = input.recv() => match msg {
                Some(Input::Stdin(data)) => {
                    if let Some(s) = stdin.as_mut()
                        && (s.write_all(&data).await.is_err() || s.flush().await.is_err())
                    {
                        stdin = None;
                    }
                }
                Some(Input::CloseStdin) => {
                    if let Some(mut s) = stdin.take() {
                        let _ = s.shutdown().await;
                    }
                }
                Some(Input::Resize(w, h)) => {
                    if let Some(r) = &resize {
                        r(w, h);
                    }
                }
                None => break None,
            },
        }
    };
    let Some(exit) = exit else {
        drop(streams);
        for p in pumps {
            p.abort();
        }
        crate::error::bail!("the client went away");
    };
    let exit = exit?;
    drop(stdin);
    for p in pumps {
        let _ = p.await;
    }
    Ok(exit)
}

/// The `Status` the error channel carries at the end, as the kubelet writes it.
fn exit_status(command: &[String], exit: &Result<Exit, String>) -> Value {
    match exit {
        Ok(Exit { code: 0, .. }) => json!({"metadata": {}, "status": "Success"}),
        Ok(Exit { code, .. }) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(message) => json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "details": {"causes": [{"message": message}]},
            "code": 500,
        }),
    }
}

type Started = Result<Session, String>;

/// A channel protocol message: the channel's byte, then the data.
fn channel_message(channel: u8, data: &[u8]) -> Message {
    let mut frame = Vec::with_capacity(data.len() + 1);
    frame.push(channel);
    frame.extend_from_slice(data);
    Message::Binary(frame.into())
}

/// `from`'s bytes as they come, in chunks of up to `size`; ends at its end or first error.
fn chunks(
    from: impl AsyncRead + Send + Unpin,
    size: usize,
) -> impl futures::Stream<Item = Bytes> + Send + Unpin {
    let reader = tokio_util::io::ReaderStream::with_capacity(from, size);
    tokio_stream::StreamExt::map_while(reader, Result::ok)
}

/// A close frame with status 1000: clients read it as the end of every channel (one without a
/// status, 1005, is an error to them).
fn normal_close() -> Message {
    Message::Close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "".into(),
    }))
}

async fn exec_websocket<IO>(
    ws: WebSocketStream<IO>,
    framing: Framing,
    started: impl Future<Output = Started>,
    req: &ExecRequest,
) -> crate::Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (in_tx, in_rx) = mpsc::channel::<Input>(16);
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let data = match payload(msg) {
                Frame::Data(b) => b,
                Frame::Close => break,
                Frame::Skip => continue,
            };
            let Some(data) = framing.decode(data) else {
                continue;
            };
            let input = match data[0] {
                0 => Some(Input::Stdin(data.slice(1..))),
                4 => resize(&data[1..]),
                255 if framing.close && data.get(1) == Some(&0) => Some(Input::CloseStdin),
                _ => None,
            };
            if let Some(input) = input
                && in_tx.send(input).await.is_err()
            {
                break;
            }
        }
    });
    let exit = match started.await {
        Ok(streams) => {
            let (out_tx, mut out_rx) = mpsc::channel::<(u8, Bytes)>(16);
            let writer = async {
                while let Some((channel, data)) = out_rx.recv().await {
                    sink.send(framing.encode(channel, &data)).await?;
                }
                Ok::<(), crate::Error>(())
            };
            let (exit, written) = tokio::join!(run(streams, in_rx, out_tx, req.tty), writer);
            written?;
            exit.map_err(|e| e.to_string())
        }
        Err(e) => Err(e),
    };
    reader.abort();
    let status = exit_status(&req.command, &exit);
    if framing.status {
        sink.send(framing.encode(3, status.to_string().as_bytes()))
            .await?;
    } else if status["status"] != "Success" {
        // The legacy protocols carry only a failure's message.
        let message = status["message"].as_str().unwrap_or_default();
        sink.send(framing.encode(3, message.as_bytes())).await?;
    }
    sink.send(normal_close()).await?;
    sink.close().await?;
    Ok(())
}

/// Waits for the SPDY streams a request needs, by `streamtype`.
async fn spdy_streams(
    session: &mut spdy::Session,
    wanted: &[&str],
) -> crate::Result<HashMap<String, spdy::Stream>> {
    let mut got = HashMap::new();
    let collect = async {
        while !wanted.iter().all(|w| got.contains_key(*w)) {
            let Some(stream) = session.accept().await else {
                crate::error::bail!("the connection ended before the streams were opened");
            };
            let kind = stream.header("streamtype").unwrap_or("").to_string();
            if wanted.contains(&kind.as_str()) {
                got.insert(kind, stream);
            }
        }
        Ok(())
    };
    tokio::time::timeout(STREAM_CREATION_TIMEOUT, collect)
        .await
        .map_err(|_| {
            crate::Error::TimedOut("timed out waiting for client to create streams".into())
        })??;
    Ok(got)
}

async fn exec_spdy(
    mut session: spdy::Session,
    started: impl Future<Output = Started>,
    req: &ExecRequest,
) -> crate::Result<()> {
    let mut wanted = vec!["error"];
    for (yes, name) in [
        (req.stdin, "stdin"),
        (req.stdout, "stdout"),
        (req.stderr, "stderr"),
        (req.tty, "resize"),
    ] {
        if yes {
            wanted.push(name);
        }
    }
    let mut streams = spdy_streams(&mut session, &wanted).await?;
    let (in_tx, in_rx) = mpsc::channel::<Input>(16);
    let mut tasks = Vec::new();
    if let Some(stdin) = streams.remove("stdin") {
        let tx = in_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut input = chunks(stdin.split().0, 32 * 1024);
            while let Some(data) = input.next().await {
                if tx.send(Input::Stdin(data)).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Input::CloseStdin).await;
        }));
    }
    if let Some(sizes) = streams.remove("resize") {
        let tx = in_tx.clone();
        tasks.push(tokio::spawn(async move {
            let (mut r, _w) = sizes.split();
            let mut pending = Vec::new();
            let mut buf = vec![0u8; 1024];
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&buf[..n]);
                let mut values =
                    serde_json::Deserializer::from_slice(&pending).into_iter::<Value>();
                let mut used = 0;
                while let Some(Ok(_)) = values.next() {
                    let start = used;
                    used = values.byte_offset();
                    if let Some(input) = resize(&pending[start..used])
                        && tx.send(input).await.is_err()
                    {
                        return;
                    }
                }
                pending.drain(..used);
            }
        }));
    }
    // `in_tx` lives to the end: the session's end is watched below, not through `input`.
    let mut writers: HashMap<u8, spdy::StreamWriter> = HashMap::new();
    for (channel, name) in [(1u8, "stdout"), (2, "stderr")] {
        if let Some(s) = streams.remove(name) {
            writers.insert(channel, s.split().1);
        }
    }
    let work = async {
        let streams = started.await?;
        let (out_tx, mut out_rx) = mpsc::channel::<(u8, Bytes)>(16);
        let writer = async {
            while let Some((channel, data)) = out_rx.recv().await {
                if let Some(w) = writers.get_mut(&channel) {
                    w.write_all(&data).await?;
                }
            }
            for w in writers.values_mut() {
                w.shutdown().await?;
            }
            Ok::<(), crate::Error>(())
        };
        let (exit, written) = tokio::join!(run(streams, in_rx, out_tx, req.tty), writer);
        written.map_err(|e| e.to_string())?;
        exit.map_err(|e| e.to_string())
    };
    // The connection's end is the client's: the session is dropped then (an exec'd process
    // is killed).
    let exit = tokio::select! {
        exit = work => exit,
        _ = async { while session.accept().await.is_some() {} } => {
            crate::error::bail!("the client went away");
        }
    };
    let status = exit_status(&req.command, &exit);
    if let Some(error) = streams.remove("error") {
        let (_r, mut w) = error.split();
        w.write_all(status.to_string().as_bytes()).await?;
        w.shutdown().await?;
    }
    for t in tasks {
        t.abort();
    }
    // Everything written reaches the client before the connection ends.
    let _ = tokio::time::timeout(Duration::from_secs(5), session.close()).await;
    Ok(())
}

async fn port_forward(
    State(s): State<Arc<Streaming>>,
    UrlPath((ns, pod)): UrlPath<(String, String)>,
    RawQuery(raw): RawQuery,
    mut req: Request,
) -> Response {
    let Some((uid, network)) = (s.network)(&ns, &pod) else {
        return plain(
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{pod} is not running on this node"),
        )
        .into_response();
    };
    let transport = match negotiate(req.headers(), WS_PORT_FORWARD, SPDY_PORT_FORWARD) {
        Ok(t) => t,
        Err(refusal) => return refusal.into_response(),
    };
    let ports: Vec<u16> = match transport {
        Transport::WebSocket(p) if p.starts_with('v') => {
            let ports: Result<Vec<u16>, _> = query_values(raw.as_deref())
                .into_iter()
                .filter(|(k, _)| k == "ports" || k == "port")
                .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
                .map(|p| p.trim().parse::<u16>().map_err(|_| p))
                .collect();
            match ports {
                Ok(p) if !p.is_empty() && !p.contains(&0) => p,
                Ok(_) => {
                    return plain(
                        StatusCode::BAD_REQUEST,
                        "query parameter \"port\" is required",
                    )
                    .into_response();
                }
                Err(p) => {
                    return plain(
                        StatusCode::BAD_REQUEST,
                        format!("unable to parse {p:?} as a port"),
                    )
                    .into_response();
                }
            }
        }
        _ => Vec::new(),
    };
    let (resp, on_upgrade) = match switch(&mut req, transport) {
        Ok(s) => s,
        Err(refusal) => return refusal.into_response(),
    };
    let target = Target {
        uid,
        network,
        streaming: s.clone(),
        ns,
        pod,
    };
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(io) => TokioIo::new(io),
            Err(e) => {
                tracing::debug!(error = %e, "port-forward: the client did not switch protocols");
                return;
            }
        };
        match transport {
            Transport::Spdy(_) => forward_spdy(spdy::serve(io), target).await,
            Transport::WebSocket("SPDY/3.1+portforward.k8s.io") => {
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                forward_spdy(spdy::serve(tunnel(ws)), target).await;
            }
            Transport::WebSocket(_) => {
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                forward_channels(ws, target, ports).await;
            }
        }
    });
    resp
}

/// The pod a port-forward reaches.
#[derive(Clone)]
struct Target {
    uid: String,
    network: Network,
    streaming: Arc<Streaming>,
    ns: String,
    pod: String,
}

impl Target {
    /// Resolves once the pod no longer runs here (checked every second).
    async fn gone(&self) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match (self.streaming.network)(&self.ns, &self.pod) {
                Some((uid, _)) if uid == self.uid => {}
                _ => return,
            }
        }
    }

    /// Connects to `port` on the pod's loopback, as the kubelet does: 127.0.0.1, then ::1.
    async fn connect(&self, port: u16) -> Result<tokio::net::TcpStream, String> {
        let netns = match &self.network {
            Network::Pod(path) => Some(path.clone()),
            Network::Host => None,
        };
        self.streaming.host.connect(netns, port).await
    }

    fn error(&self, port: u16, why: &str) -> String {
        format!(
            "error forwarding port {port} to pod {}, uid : {why}",
            self.uid
        )
    }
}

/// Port-forwarding over SPDY: each connection the client opens is a pair of streams, `error`
/// then `data`, with the same `requestID` and the `port`.
async fn forward_spdy(mut session: spdy::Session, target: Target) {
    let mut pending: HashMap<String, (Option<spdy::Stream>, Option<spdy::Stream>)> = HashMap::new();
    let gone = target.gone();
    tokio::pin!(gone);
    loop {
        let stream = tokio::select! {
            s = session.accept() => match s {
                Some(s) => s,
                None => return,
            },
            _ = &mut gone => {
                // The pod went away: the client hears the end of the session.
                let _ = tokio::time::timeout(Duration::from_secs(5), session.close()).await;
                return;
            }
        };
        let id = stream.header("requestid").unwrap_or("").to_string();
        let entry = pending.entry(id.clone()).or_default();
        match stream.header("streamtype") {
            Some("error") => entry.0 = Some(stream),
            Some("data") => entry.1 = Some(stream),
            _ => continue,
        }
        if let (Some(_), Some(_)) = entry {
            let Some((Some(error), Some(data))) = pending.remove(&id) else {
                continue;
            };
            let target = target.clone();
            tokio::spawn(async move {
                let port = data.header("port").and_then(|p| p.parse::<u16>().ok());
                let (_er, mut ew) = error.split();
                let Some(port) = port.filter(|p| *p > 0) else {
                    let _ = ew
                        .write_all(format!("invalid port: {:?}", data.header("port")).as_bytes())
                        .await;
                    let _ = ew.shutdown().await;
                    return;
                };
                match target.connect(port).await {
                    Ok(tcp) => {
                        let (dr, dw) = data.split();
                        splice(tcp, dr, dw).await;
                    }
                    Err(why) => {
                        tracing::debug!(stream = data.id(), port, "port-forward: {why}");
                        let _ = ew.write_all(target.error(port, &why).as_bytes()).await;
                    }
                }
                let _ = ew.shutdown().await;
            });
        }
    }
}

/// Copies between a pod connection and a client stream; returns once the pod's side has
/// ended (clients wait for the error stream to end before they close their side), while the
/// client's side is copied on until it ends too.
async fn splice(
    tcp: tokio::net::TcpStream,
    mut from_client: impl AsyncRead + Unpin + Send + 'static,
    mut to_client: impl AsyncWrite + Unpin,
) {
    let (tr, mut tw) = tcp.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_client, &mut tw).await;
        let _ = tw.shutdown().await;
    });
    let mut tr = tokio::io::BufReader::with_capacity(64 << 10, tr);
    let _ = tokio::io::copy_buf(&mut tr, &mut to_client).await;
    let _ = to_client.shutdown().await;
}

/// A WebSocket whose binary messages carry a byte stream (the SPDY tunnel), as a byte stream.
fn tunnel<IO>(ws: WebSocketStream<IO>) -> tokio::io::DuplexStream
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut r, mut w) = tokio::io::split(theirs);
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move {
        let inbound = async {
            while let Some(Ok(msg)) = stream.next().await {
                match msg {
                    Message::Binary(b) if w.write_all(&b).await.is_err() => break,
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            let _ = w.shutdown().await;
        };
        let outbound = async {
            let mut output = chunks(&mut r, 64 * 1024);
            while let Some(data) = output.next().await {
                if sink.send(Message::Binary(data)).await.is_err() {
                    break;
                }
            }
            let _ = sink.send(normal_close()).await;
            let _ = sink.close().await;
        };
        // Either side ending ends the tunnel.
        tokio::select! {
            _ = inbound => {}
            _ = outbound => {}
        }
    });
    ours
}

/// Port-forwarding over the WebSocket channel protocol (kube-rs): port `i` of the request has
/// data channel `2i` and error channel `2i+1`, each opened by the server with the port number
/// (two bytes, little-endian). One connection per port, made when the session starts.
async fn forward_channels<IO>(ws: WebSocketStream<IO>, target: Target, ports: Vec<u16>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Bytes)>(16);
    let mut to_pod: HashMap<u8, tokio::net::tcp::OwnedWriteHalf> = HashMap::new();
    for (i, port) in ports.iter().enumerate() {
        let (data, error) = ((2 * i) as u8, (2 * i + 1) as u8);
        for ch in [data, error] {
            let _ = out_tx
                .send((ch, Bytes::copy_from_slice(&port.to_le_bytes())))
                .await;
        }
        match target.connect(*port).await {
            Ok(tcp) => {
                let (r, w) = tcp.into_split();
                to_pod.insert(data, w);
                tokio::spawn(pump(Box::new(r), data, out_tx.clone()));
            }
            Err(why) => {
                let _ = out_tx
                    .send((error, Bytes::from(target.error(*port, &why))))
                    .await;
            }
        }
    }
    drop(out_tx);
    let writer = async {
        while let Some((channel, data)) = out_rx.recv().await {
            if sink.send(channel_message(channel, &data)).await.is_err() {
                break;
            }
        }
        let _ = sink.send(normal_close()).await;
        let _ = sink.close().await;
    };
    let reader = async {
        while let Some(Ok(msg)) = stream.next().await {
            let data = match payload(msg) {
                Frame::Data(b) => b,
                Frame::Close => break,
                Frame::Skip => continue,
            };
            match data[0] {
                255 => {
                    if let Some(mut w) = data.get(1).and_then(|ch| to_pod.remove(ch)) {
                        let _ = w.shutdown().await;
                    }
                }
                ch => {
                    if let Some(w) = to_pod.get_mut(&ch)
                        && w.write_all(&data[1..]).await.is_err()
                    {
                        to_pod.remove(&ch);
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
        _ = target.gone() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn legacy_protocols_frame_channels_as_upstream() {
        let b64 = Framing::of("base64.channel.k8s.io");
        assert_eq!(
            b64,
            Framing {
                base64: true,
                status: false,
                close: false
            }
        );
        assert_eq!(b64.encode(1, b"hi"), Message::Text("1aGk=".into()));
        assert_eq!(
            b64.decode(Bytes::from_static(b"0aGk=")).unwrap().as_ref(),
            b"\0hi"
        );
        assert!(b64.decode(Bytes::from_static(b"0!!")).is_none());
        let v1 = Framing::of("channel.k8s.io");
        assert_eq!(
            v1.encode(2, b"x"),
            Message::Binary(Bytes::from_static(b"\x02x"))
        );
        assert!(!v1.status);
        assert!(Framing::of("v4.channel.k8s.io").status);
        assert!(Framing::of("v5.channel.k8s.io").close);
    }

    #[test]
    fn text_and_binary_frames_carry_channel_data_alike() {
        let text = Message::Text("\u{0}hello".into());
        assert!(matches!(payload(text), Frame::Data(b) if b.as_ref() == b"\0hello"));
        let binary = Message::Binary(Bytes::from_static(b"\x04{}"));
        assert!(matches!(payload(binary), Frame::Data(b) if b[0] == 4));
        assert!(matches!(payload(Message::Text("".into())), Frame::Skip));
        assert!(matches!(payload(Message::Close(None)), Frame::Close));
    }

    #[test]
    fn the_first_protocol_of_the_client_that_the_server_speaks_is_chosen() {
        let ws = headers(&[
            ("upgrade", "websocket"),
            (
                "sec-websocket-protocol",
                "v5.channel.k8s.io, v4.channel.k8s.io, v3.channel.k8s.io",
            ),
        ]);
        assert_eq!(
            negotiate(&ws, WS_EXEC, SPDY_EXEC).ok(),
            Some(Transport::WebSocket("v5.channel.k8s.io"))
        );
        let spdy = headers(&[
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
            ("x-stream-protocol-version", "v3.channel.k8s.io"),
        ]);
        assert_eq!(
            negotiate(&spdy, WS_EXEC, SPDY_EXEC).ok(),
            Some(Transport::Spdy("v4.channel.k8s.io"))
        );
        let old = headers(&[
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v2.channel.k8s.io"),
        ]);
        let refused = negotiate(&old, WS_EXEC, SPDY_EXEC).unwrap_err();
        assert_eq!(refused.0, StatusCode::FORBIDDEN);
        let plain_get = headers(&[]);
        assert_eq!(
            negotiate(&plain_get, WS_EXEC, SPDY_EXEC).unwrap_err().0,
            StatusCode::BAD_REQUEST
        );
    }

    /// An exec over WebSocket reaches the host's session for the container the agent names,
    /// and the client reads its output, then the final status (the host is the fake).
    #[tokio::test]
    async fn an_exec_session_runs_through_the_host() {
        use runtime::host::fake::{Call, Fake};
        let fake = Arc::new(Fake::new());
        let data = std::env::temp_dir();
        let streaming = Arc::new(Streaming {
            host: fake.clone(),
            data,
            container: Arc::new(|_: &str, _: &str, c: &str| Some(format!("id-{c}"))),
            network: Arc::new(|_: &str, _: &str| None),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(streaming)).await });
        let url = format!("ws://{addr}/exec/default/p/c?command=echo&command=hi&stdout=1");
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
                .unwrap();
        req.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
        let mut frames = Vec::new();
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Binary(b) = m {
                frames.push(b.to_vec());
            }
        }
        assert_eq!(frames[0], b"\x01echo hi\n");
        let status: Value = serde_json::from_slice(&frames.last().unwrap()[1..]).unwrap();
        assert_eq!(status["status"], "Success");
        assert_eq!(
            fake.calls(),
            [Call::ExecSession(
                "id-c".into(),
                vec!["echo".into(), "hi".into()]
            )]
        );
    }

    #[test]
    fn an_exec_query_keeps_every_command_word() {
        let req = exec_request(
            Some("command=sh&command=-c&command=echo%20hi&stdout=true&stderr=1"),
            Kind::Exec,
        )
        .ok()
        .unwrap();
        assert_eq!(req.command, ["sh", "-c", "echo hi"]);
        assert!(req.stdout && req.stderr && !req.stdin && !req.tty);
        assert!(exec_request(Some("command=ls"), Kind::Exec).is_err());
        assert!(exec_request(Some("stdout=1"), Kind::Exec).is_err());
        assert!(exec_request(Some("stdout=1"), Kind::Attach).is_ok());
    }

    #[test]
    fn the_final_status_is_the_kubelets() {
        let ok = exit_status(
            &[],
            &Ok(Exit {
                code: 0,
                runtime_error: None,
            }),
        );
        assert_eq!(ok, json!({"metadata": {}, "status": "Success"}));
        let cmd = ["sh".to_string(), "-c".into(), "exit 3".into()];
        let failed = exit_status(
            &cmd,
            &Ok(Exit {
                code: 3,
                runtime_error: None,
            }),
        );
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(
            failed["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
        assert_eq!(
            failed["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
    }

    #[test]
    fn resizes_are_read_from_json() {
        assert!(matches!(
            resize(br#"{"Width":120,"Height":40}"#),
            Some(Input::Resize(120, 40))
        ));
        assert!(resize(b"{}").is_none());
    }
}
