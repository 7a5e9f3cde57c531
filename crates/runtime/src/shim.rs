//! The per-container monitor (like conmon): a small process of its own, started by the agent
//! as `rudder shim ...`, that creates the container through the OCI runtime, stays its parent
//! (a child subreaper), copies its stdout and stderr into the CRI log file and writes the exit
//! status to a file when it ends. The agent can restart meanwhile: nothing here depends on it.

use std::io::{BufRead, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::attach;
use crate::logs::{Stream, Writer};

/// How one container is monitored.
#[derive(Debug, Clone)]
pub struct Args {
    /// The OCI runtime binary.
    pub runtime: PathBuf,
    /// Its state directory.
    pub root: PathBuf,
    /// The container id.
    pub id: String,
    /// The bundle (holds `config.json`).
    pub bundle: PathBuf,
    /// The CRI log file.
    pub log: PathBuf,
    /// Where the exit status goes.
    pub exit_file: PathBuf,
    /// The container keeps a stdin that clients attach to (`stdin: true`).
    pub stdin: bool,
    /// Its stdin closes when the first attached client lets go of it (`stdinOnce`).
    pub stdin_once: bool,
    /// It runs on a terminal (`tty: true`).
    pub tty: bool,
}

impl Args {
    /// The command-line arguments after `shim`.
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> = Vec::new();
        for (flag, value) in [
            ("--runtime", self.runtime.as_os_str()),
            ("--root", self.root.as_os_str()),
            ("--id", std::ffi::OsStr::new(&self.id)),
            ("--bundle", self.bundle.as_os_str()),
            ("--log", self.log.as_os_str()),
            ("--exit-file", self.exit_file.as_os_str()),
        ] {
            v.push(flag.into());
            v.push(value.into());
        }
        for (flag, on) in [
            ("--stdin", self.stdin),
            ("--stdin-once", self.stdin_once),
            ("--tty", self.tty),
        ] {
            if on {
                v.push(flag.into());
            }
        }
        v
    }
}

/// How a container ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Exit {
    /// The exit code, or 128 + the signal that killed it.
    pub exit_code: i32,
    /// The signal, if one killed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// When (RFC 3339).
    pub finished_at: String,
}

/// Reads a container's exit file, if it has ended.
pub fn read_exit(path: &Path) -> Option<Exit> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Log file size before rotation, and rotated files kept (the kubelet's defaults).
const LOG_MAX_SIZE: u64 = 10 << 20;
const LOG_MAX_FILES: usize = 5;

/// Output held back until the runtime has created the container: if it fails, that output
/// is its error message, not the container's log.
struct Sink {
    writer: Writer,
    held: Option<Vec<(Stream, Vec<u8>)>>,
    /// Attached clients: their connection, and whether they read stdout and stderr.
    clients: Vec<(UnixStream, bool, bool)>,
}

impl Sink {
    /// Writes output to the log and to the clients that want it (dropping those gone).
    fn write(&mut self, stream: Stream, bytes: &[u8]) {
        let _ = self.writer.write(stream, bytes);
        let kind = match stream {
            Stream::Stdout => attach::STDOUT,
            Stream::Stderr => attach::STDERR,
        };
        self.clients.retain_mut(|(conn, out, err)| {
            let wanted = if kind == attach::STDOUT { *out } else { *err };
            !wanted || attach::write_frame(conn, kind, bytes).is_ok()
        });
    }
}

/// The container's stdin, while it has one: a pipe, or its terminal.
type Stdin = Arc<Mutex<Option<Box<dyn Write + Send>>>>;

/// The monitor's body; returns the process exit code. Reports `created <pid>` or
/// `error <message>` as one line on stdout, then lets go of stdout.
pub fn main(args: Args) -> i32 {
    let _ = nix::unistd::setsid();
    let mut report = std::io::stdout();
    match monitor(&args, &mut report) {
        Ok(()) => 0,
        Err(e) => {
            // Too late to report to the agent once created; the exit file says it.
            let _ = writeln!(report, "error {}", format!("{e:#}").replace('\n', " "));
            let _ = report.flush();
            1
        }
    }
}

/// A created container, as the monitor holds it until it exits.
struct Created {
    /// The container's init process.
    pid: i32,
    /// Its stdin.
    stdin: Stdin,
    /// Its terminal, with a tty.
    master: Option<Arc<OwnedFd>>,
    /// The threads copying its output into the log.
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// Creates the container, serves attach clients, reports `created <pid>`, then waits for
/// the container to exit and writes its exit file.
fn monitor(args: &Args, report: &mut std::io::Stdout) -> Result<()> {
    let sink = prepare(args)?;
    let created = create(args, &sink)?;
    let listener = UnixListener::bind(attach::SOCKET).context("binding the attach socket")?;
    {
        let (sink, stdin, master) = (sink.clone(), created.stdin.clone(), created.master.clone());
        let once = args.stdin_once;
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (sink, stdin, master) = (sink.clone(), stdin.clone(), master.clone());
                std::thread::spawn(move || attached(conn, &sink, &stdin, master, once));
            }
        });
    }
    writeln!(report, "created {}", created.pid)?;
    report.flush()?;
    // Let go of the agent's pipe: it may go away while the container runs on.
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    nix::unistd::dup2_stdout(&null)?;
    {
        let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
        for (stream, bytes) in s.held.take().unwrap_or_default() {
            s.write(stream, &bytes);
        }
    }
    let exit = wait(created.pid);
    for r in created.readers {
        let _ = r.join();
    }
    {
        let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
        let _ = s.writer.flush();
        // Attached clients see the end.
        for (conn, _, _) in s.clients.drain(..) {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }
    let _ = std::fs::remove_file(attach::SOCKET);
    let tmp = args.exit_file.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&exit)?)?;
    std::fs::rename(&tmp, &args.exit_file)?;
    Ok(())
}

/// Becomes the subreaper, opens the log (output held until `created` is reported) and
/// enters the bundle, clearing the sockets a previous monitor left.
fn prepare(args: &Args) -> Result<Arc<Mutex<Sink>>> {
    nix::sys::prctl::set_child_subreaper(true).context("becoming a child subreaper")?;
    if let Some(dir) = args.log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let writer = Writer::create(&args.log, LOG_MAX_SIZE, LOG_MAX_FILES)
        .with_context(|| format!("opening {}", args.log.display()))?;
    let sink = Arc::new(Mutex::new(Sink {
        writer,
        held: Some(Vec::new()),
        clients: Vec::new(),
    }));
    let _ = std::fs::remove_file(args.bundle.join(PID_FILE));
    // Sockets by relative names in the bundle: an absolute path may be too long for one.
    std::env::set_current_dir(&args.bundle)
        .with_context(|| format!("entering {}", args.bundle.display()))?;
    for name in [attach::SOCKET, attach::CONSOLE] {
        let _ = std::fs::remove_file(name);
    }
    Ok(sink)
}

/// The file `runtime create` writes the container's pid to, in the bundle.
const PID_FILE: &str = "init.pid";

/// Runs `runtime create`, copying its output into `sink`; the container's pid, stdin and
/// terminal once it is created, or the runtime's message if it fails.
fn create(args: &Args, sink: &Arc<Mutex<Sink>>) -> Result<Created> {
    let pid_file = args.bundle.join(PID_FILE);
    let mut create = std::process::Command::new(&args.runtime);
    create
        .arg("--root")
        .arg(&args.root)
        .arg("create")
        .arg("--bundle")
        .arg(&args.bundle)
        .arg("--pid-file")
        .arg(&pid_file);
    // runc hands the container's terminal over the console socket.
    let terminal = if args.tty {
        let listener = UnixListener::bind(attach::CONSOLE).context("binding the console socket")?;
        create.arg("--console-socket").arg(attach::CONSOLE);
        Some(std::thread::spawn(move || -> std::io::Result<OwnedFd> {
            let (conn, _) = listener.accept()?;
            attach::receive_terminal(&conn)
        }))
    } else {
        None
    };
    let stdin_pipe = args.stdin && !args.tty;
    let mut create = create
        .arg(&args.id)
        .stdin(if stdin_pipe {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", args.runtime.display()))?;
    let stdin: Stdin = Arc::new(Mutex::new(
        create
            .stdin
            .take()
            .map(|p| Box::new(p) as Box<dyn Write + Send>),
    ));
    let mut readers: Vec<_> = [
        (
            Stream::Stdout,
            create
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            Stream::Stderr,
            create
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ]
    .into_iter()
    .filter_map(|(stream, pipe)| {
        let pipe = pipe?;
        let sink = sink.clone();
        Some(std::thread::spawn(move || copy(stream, pipe, &sink)))
    })
    .collect();
    let status = create.wait().context("waiting for the runtime")?;
    if !status.success() {
        // The runtime's message went to its stderr; the pipes close as it exits.
        for r in readers {
            let _ = r.join();
        }
        let held = sink
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .held
            .take()
            .unwrap_or_default();
        let text: String = held
            .iter()
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .collect();
        bail!("{}", runtime_error(&text));
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .context("reading the container's pid file")?
        .trim()
        .parse()
        .context("the container's pid file")?;
    let master = match terminal {
        Some(t) => Some(take_terminal(args, t, sink, &stdin, &mut readers)?),
        None => None,
    };
    Ok(Created {
        pid,
        stdin,
        master,
        readers,
    })
}

/// The container's terminal, from the thread that received it: its output copied into
/// `sink`, and with stdin, it is the container's stdin.
fn take_terminal(
    args: &Args,
    received: std::thread::JoinHandle<std::io::Result<OwnedFd>>,
    sink: &Arc<Mutex<Sink>>,
    stdin: &Stdin,
    readers: &mut Vec<std::thread::JoinHandle<()>>,
) -> Result<Arc<OwnedFd>> {
    let master = received
        .join()
        .map_err(|_| crate::Error::Panicked("the console thread panicked"))?
        .context("receiving the container's terminal")?;
    let output = std::fs::File::from(master.try_clone()?);
    let sink = sink.clone();
    readers.push(std::thread::spawn(move || {
        copy(Stream::Stdout, Box::new(output), &sink)
    }));
    if args.stdin {
        *stdin.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Box::new(std::fs::File::from(master.try_clone()?)));
    }
    Ok(Arc::new(master))
}

/// Copies one pipe into the log, line by line as it comes.
fn copy(stream: Stream, pipe: Box<dyn Read + Send>, sink: &Mutex<Sink>) {
    let mut reader = std::io::BufReader::with_capacity(64 << 10, pipe);
    loop {
        let buf = match reader.fill_buf() {
            Ok([]) | Err(_) => break,
            Ok(b) => b.to_vec(),
        };
        reader.consume(buf.len());
        let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
        match &mut s.held {
            Some(held) => held.push((stream, buf)),
            None => s.write(stream, &buf),
        }
    }
}

/// Serves one attached client: registers it for the output it wants, and feeds what it sends
/// to the container's stdin until it lets go (which closes stdin for good with `stdinOnce`).
fn attached(
    conn: UnixStream,
    sink: &Mutex<Sink>,
    stdin: &Stdin,
    terminal: Option<Arc<OwnedFd>>,
    stdin_once: bool,
) {
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = std::io::BufReader::new(read_half);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let Ok(hello) = serde_json::from_str::<attach::Hello>(&line) else {
        return;
    };
    if (hello.stdout || hello.stderr)
        && let Ok(out) = conn.try_clone()
    {
        let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
        s.clients.push((out, hello.stdout, hello.stderr));
    }
    while let Ok(Some((kind, data))) = attach::read_frame(&mut reader) {
        match kind {
            attach::STDIN if hello.stdin => {
                let mut w = stdin.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(pipe) = w.as_mut()
                    && (pipe.write_all(&data).is_err() || pipe.flush().is_err())
                {
                    *w = None;
                }
            }
            attach::RESIZE => {
                if let (Some(t), Some((width, height))) = (&terminal, attach::parse_resize(&data)) {
                    let _ = attach::resize(t.as_ref(), width, height);
                }
            }
            attach::CLOSE_STDIN => break,
            _ => {}
        }
    }
    if hello.stdin && stdin_once {
        stdin.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Waits for the container's init process (reaping anything else reparented to us).
fn wait(pid: i32) -> Exit {
    use nix::sys::wait::{WaitStatus, waitpid};
    let target = nix::unistd::Pid::from_raw(pid);
    let (exit_code, signal) = loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p == target => break (code, None),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == target => {
                break (128 + sig as i32, Some(sig as i32));
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            // No children left: the process is gone without our seeing it.
            Err(_) => break (255, None),
        }
    };
    Exit {
        exit_code,
        signal,
        finished_at: jiff::Timestamp::now().to_string(),
    }
}

/// The useful part of what the runtime printed when create failed: its last `msg`, or the text.
fn runtime_error(text: &str) -> String {
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("the OCI runtime failed without a message")
        .trim();
    // runc logs as `time="..." level=error msg="..."`.
    match line.split_once("msg=\"") {
        Some((_, rest)) => rest.trim_end_matches('"').replace("\\\"", "\""),
        None => line.to_string(),
    }
}

/// Starts a monitor for `args` with `exe shim ...` and waits for its report: the container's
/// pid once created, or the runtime's error.
pub async fn spawn(exe: &Path, args: &Args) -> Result<i32> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(args.bundle.join("shim.log"))
        .with_context(|| format!("creating {}/shim.log", args.bundle.display()))?;
    let mut child = tokio::process::Command::new(exe)
        .arg("shim")
        .args(args.to_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {} shim", exe.display()))?;
    let stdout = child.stdout.take().context("shim stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout);
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line).await?;
    // The child is reaped by tokio in the background once it exits.
    drop(child);
    let line = line.trim();
    if let Some(pid) = line.strip_prefix("created ") {
        return pid.parse().context("the shim's report");
    }
    match line.strip_prefix("error ") {
        Some(msg) => bail!("{msg}"),
        None => bail!(
            "the container monitor ended without a report (see {}/shim.log)",
            args.bundle.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_keep_runcs_message() {
        let text = "time=\"2026-11-26T02:00:00Z\" level=error msg=\"runc create failed: unable to start container process: exec: \\\"nope\\\": executable file not found in $PATH\"\n";
        assert_eq!(
            runtime_error(text),
            "runc create failed: unable to start container process: exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(runtime_error("plain\n\n"), "plain");
    }
}
