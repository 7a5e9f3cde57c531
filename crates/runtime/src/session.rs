//! Sessions with a running container's processes, for `kubectl exec`, `attach` and
//! `port-forward`: the host side of the agent's streaming server.
//!
//! - [`exec`]: a process started in the container, `runc exec` with pipes, or `runc exec
//!   --tty` in front of a terminal of ours (runc makes the container's terminal and copies
//!   between the two). The process enters all of the container's namespaces and its cgroup,
//!   with the user, environment and working directory of the container's own process (runc's
//!   defaults for `exec`). A session dropped before its process ended kills what it started:
//!   a client that goes away leaves nothing running.
//! - [`attach`]: the container's own streams, through its monitor's socket ([`crate::attach`]).
//! - [`connect`]: a TCP connection to a port on a pod's loopback, made inside its network
//!   namespace, as the kubelet's port-forward does.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::error::{Context, Result, bail};

/// What to run (for an exec) and which streams the client has.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// The command and its arguments (an exec's).
    pub command: Vec<String>,
    /// The client writes to stdin.
    pub stdin: bool,
    /// The client reads stdout.
    pub stdout: bool,
    /// The client reads stderr.
    pub stderr: bool,
    /// On a terminal.
    pub tty: bool,
}

/// How a process ended: its exit code, and the runtime's own error when it could not start.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    /// The exit code.
    pub code: i32,
    /// What the runtime said when it could not start the process.
    pub runtime_error: Option<String>,
}

/// A reader of one of a session's output streams.
pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// The writer of a session's input.
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A process's standard streams, from an exec or an attach.
pub struct Session {
    /// Its standard input, if the client writes to it.
    pub stdin: Option<Writer>,
    /// Its standard output (with a terminal: everything it writes).
    pub stdout: Option<Reader>,
    /// Its standard error (none with a terminal).
    pub stderr: Option<Reader>,
    /// Gives its terminal a new size (width, height), if it has one.
    pub resize: Option<Box<dyn Fn(u16, u16) + Send + Sync>>,
    /// Resolves once the process has ended (or, attached, the container). Dropping it before
    /// lets go: an exec'd process is killed, an attached container runs on.
    pub ended: BoxFuture<'static, Result<Exit>>,
}

/// Starts `req.command` in container `id` with `runc`; `scratch` is a directory for the
/// process's pid and log files.
pub async fn exec(
    runc: &crate::runc::Runc,
    id: &str,
    req: &Request,
    scratch: &Path,
) -> Result<Session> {
    let mut p = start(runc, id, req, scratch).await?;
    let terminal = p.terminal.take();
    Ok(Session {
        stdin: p.stdin.take(),
        stdout: p.stdout.take(),
        stderr: p.stderr.take(),
        resize: terminal.map(|t| Box::new(move |w, h| t.resize(w, h)) as Box<_>),
        ended: Box::pin(async move { p.wait().await }),
    })
}

/// Attaches to a running container through its monitor's socket in `bundle`.
pub async fn attach(bundle: &Path, req: &Request) -> Result<Session> {
    use crate::attach;
    use std::os::fd::AsRawFd;
    // Through the directory's descriptor: the socket's full path may be too long to connect to.
    let dir =
        std::fs::File::open(bundle).with_context(|| format!("opening {}", bundle.display()))?;
    let path = format!("/proc/self/fd/{}/{}", dir.as_raw_fd(), attach::SOCKET);
    let socket = tokio::net::UnixStream::connect(&path)
        .await
        .context("connecting to the container's monitor")?;
    drop(dir);
    let (mut from_monitor, mut to_monitor) = socket.into_split();
    let hello = attach::Hello {
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
    };
    let mut line = serde_json::to_vec(&hello)?;
    line.push(b'\n');
    to_monitor.write_all(&line).await?;
    // Frames to the monitor: stdin as it comes, resizes, the close.
    let (frames, mut queue) = mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(async move {
        while let Some(frame) = queue.recv().await {
            if to_monitor.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    let stdin: Option<Writer> = if req.stdin {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let frames = frames.clone();
        tokio::spawn(async move {
            let (mut theirs, mut data) = (theirs, vec![0u8; 32 * 1024]);
            while let Ok(n @ 1..) = theirs.read(&mut data).await {
                if frames
                    .send(attach::encode(attach::STDIN, &data[..n]))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            let _ = frames.send(attach::encode(attach::CLOSE_STDIN, &[])).await;
        });
        Some(Box::new(ours))
    } else {
        None
    };
    let resize: Option<Box<dyn Fn(u16, u16) + Send + Sync>> = req.tty.then(|| {
        Box::new(move |w: u16, h: u16| {
            let size = json!({"Width": w, "Height": h}).to_string();
            let _ = frames.try_send(attach::encode(attach::RESIZE, size.as_bytes()));
        }) as Box<_>
    });
    // Frames from the monitor, to two pipes; the connection's end is the container's.
    let (out_ours, mut out_theirs) = tokio::io::duplex(64 * 1024);
    let (err_ours, mut err_theirs) = tokio::io::duplex(64 * 1024);
    let ended = async move {
        loop {
            let mut head = [0u8; 5];
            if from_monitor.read_exact(&mut head).await.is_err() {
                break;
            }
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            if len > attach::MAX_FRAME {
                bail!("an attach frame of {len} bytes");
            }
            let mut data = vec![0u8; len];
            from_monitor.read_exact(&mut data).await?;
            let pipe = match head[0] {
                attach::STDOUT => &mut out_theirs,
                attach::STDERR => &mut err_theirs,
                _ => continue,
            };
            // A reader that went away leaves the other stream going.
            let _ = pipe.write_all(&data).await;
        }
        let _ = out_theirs.shutdown().await;
        let _ = err_theirs.shutdown().await;
        Ok(Exit {
            code: 0,
            runtime_error: None,
        })
    };
    Ok(Session {
        stdin,
        stdout: req.stdout.then(|| Box::new(out_ours) as Box<_>),
        stderr: req.stderr.then(|| Box::new(err_ours) as Box<_>),
        resize,
        ended: Box::pin(ended),
    })
}

/// Connects to `port` on the loopback of the network namespace at `netns` (the host's with
/// None), as the kubelet does: 127.0.0.1, then ::1. The error is in the kubelet's words.
pub async fn connect(
    netns: Option<PathBuf>,
    port: u16,
) -> std::result::Result<tokio::net::TcpStream, String> {
    // Entering a namespace changes the calling thread only: a thread of its own, which ends
    // after connecting (the socket stays in the pod's namespace).
    let stream = tokio::task::spawn_blocking(move || match netns {
        Some(path) => {
            let name = path.display().to_string();
            crate::namespaces::in_network(&path, move || loopback(port, &name))
                .map_err(|e| format!("{e:#}"))?
        }
        None => loopback(port, "host"),
    });
    let stream = stream
        .await
        .map_err(|_| "the connecting thread failed".to_string())??;
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    let stream = tokio::net::TcpStream::from_std(stream).map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A connection to `port` on the calling thread's loopback (of namespace `netns`, named in
/// the error): 127.0.0.1, then ::1, in the kubelet's words.
fn loopback(port: u16, netns: &str) -> Result<std::net::TcpStream, String> {
    let timeout = Duration::from_secs(10);
    let v4 = std::net::TcpStream::connect_timeout(
        &(std::net::Ipv4Addr::LOCALHOST, port).into(),
        timeout,
    );
    v4.or_else(|e4| {
        std::net::TcpStream::connect_timeout(&(std::net::Ipv6Addr::LOCALHOST, port).into(), timeout)
            .map_err(|e6| {
                format!(
                    "failed to connect to localhost:{port} inside namespace {netns:?}, IPv4: dial tcp4 127.0.0.1:{port}: {e4} IPv6 dial tcp6 [::1]:{port}: {e6}"
                )
            })
    })
}

/// A process started by `runc exec`.
struct Process {
    child: Option<tokio::process::Child>,
    pid_file: PathBuf,
    log_file: PathBuf,
    _dir: tempfile::TempDir,
    /// Its standard input (a pipe, or the terminal).
    stdin: Option<Writer>,
    /// Its standard output (with a terminal: everything it writes).
    stdout: Option<Reader>,
    /// Its standard error (none with a terminal).
    stderr: Option<Reader>,
    /// The terminal, for resizing.
    terminal: Option<Terminal>,
    ended: bool,
}

/// The terminal in front of `runc exec --tty`: runc copies between it and the container's own
/// terminal, and on SIGWINCH gives the container's terminal this one's size.
struct Terminal {
    master: OwnedFd,
    runc: Option<u32>,
}

impl Terminal {
    /// Sets the terminal's size; the process gets SIGWINCH.
    fn resize(&self, width: u16, height: u16) {
        if let Err(e) = crate::attach::resize(&self.master, width, height) {
            tracing::debug!(error = %e, "resizing a terminal");
        }
        if let Some(pid) = self.runc.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGWINCH,
            );
        }
    }
}

/// A terminal pair in raw mode (bytes pass through as they are: the container's terminal is
/// the one that echoes and edits lines).
fn raw_terminal() -> Result<nix::pty::OpenptyResult> {
    use nix::sys::termios;
    let pty = nix::pty::openpty(None, None).context("opening a terminal")?;
    let mut attrs = termios::tcgetattr(&pty.slave).context("reading terminal attributes")?;
    termios::cfmakeraw(&mut attrs);
    termios::tcsetattr(&pty.slave, termios::SetArg::TCSANOW, &attrs)
        .context("setting terminal attributes")?;
    Ok(pty)
}

/// Starts `req.command` in container `id`. `scratch` is a directory for the pid and log files
/// (a fresh temporary directory is made inside it).
async fn start(
    runc: &crate::runc::Runc,
    id: &str,
    req: &Request,
    scratch: &Path,
) -> Result<Process> {
    std::fs::create_dir_all(scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("exec-")
        .tempdir_in(scratch)
        .context("a directory for the exec")?;
    let pid_file = dir.path().join("pid");
    let log_file = dir.path().join("log.json");
    let mut cmd = tokio::process::Command::new(&runc.binary);
    cmd.arg("--root")
        .arg(&runc.root)
        .arg("--log")
        .arg(&log_file)
        .arg("--log-format")
        .arg("json")
        .arg("exec")
        .arg("--pid-file")
        .arg(&pid_file);
    if req.tty {
        cmd.arg("--tty");
    }
    cmd.arg(id).args(&req.command).kill_on_drop(true);
    let mut master = None;
    if req.tty {
        let pty = raw_terminal()?;
        let slave = |fd: &OwnedFd| -> Result<Stdio> { Ok(Stdio::from(fd.try_clone()?)) };
        cmd.stdin(slave(&pty.slave)?)
            .stdout(slave(&pty.slave)?)
            .stderr(slave(&pty.slave)?);
        master = Some(pty.master);
    } else {
        let piped = |yes: bool| if yes { Stdio::piped() } else { Stdio::null() };
        cmd.stdin(piped(req.stdin))
            .stdout(piped(req.stdout))
            .stderr(piped(req.stderr));
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {}", runc.binary.display()))?;
    // The builder holds the terminal's other end: closing it lets reads end with the process.
    drop(cmd);
    let mut process = Process {
        stdin: None,
        stdout: None,
        stderr: None,
        terminal: None,
        pid_file,
        log_file,
        _dir: dir,
        ended: false,
        child: None,
    };
    match master {
        Some(master) => {
            let reader = std::fs::File::from(master.try_clone().context("dup")?);
            process.stdout = Some(Box::new(tokio::fs::File::from_std(reader)));
            if req.stdin {
                let writer = std::fs::File::from(master.try_clone().context("dup")?);
                process.stdin = Some(Box::new(tokio::fs::File::from_std(writer)));
            }
            process.terminal = Some(Terminal {
                master,
                runc: child.id(),
            });
        }
        None => {
            process.stdin = child.stdin.take().map(|s| Box::new(s) as Writer);
            process.stdout = child.stdout.take().map(|s| Box::new(s) as Reader);
            process.stderr = child.stderr.take().map(|s| Box::new(s) as Reader);
        }
    }
    process.child = Some(child);
    Ok(process)
}

impl Process {
    /// Waits for the process to end. A process the runtime could not start reports the
    /// runtime's message and, as upstream's runtimes do, 127 when the command was not found and
    /// 126 when it could not be run.
    async fn wait(&mut self) -> Result<Exit> {
        let child = self.child.as_mut().context("no process")?;
        let status = child.wait().await.context("waiting for runc exec")?;
        self.ended = true;
        let code = status.code().unwrap_or(128 + status_signal(&status));
        let runtime_error = std::fs::read_to_string(&self.log_file)
            .ok()
            .and_then(|log| runtime_error(&log));
        let code = match &runtime_error {
            Some(msg) if msg.contains("not found") || msg.contains("no such file") => 127,
            Some(_) => 126,
            None => code,
        };
        Ok(Exit {
            code,
            runtime_error,
        })
    }

    /// Kills the process (and runc's part) if it is still running.
    fn kill(&mut self) {
        if self.ended {
            return;
        }
        if let Some(pid) = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .filter(|p| *p > 1)
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn status_signal(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.signal().unwrap_or(0)
}

/// The last error runc logged (its JSON log lines: `{"level":"error","msg":...}`).
fn runtime_error(log: &str) -> Option<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "error" || v["level"] == "fatal")
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_error_is_the_last_error_it_logged() {
        let log = r#"{"level":"info","msg":"starting"}
{"level":"error","msg":"exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH","time":"2026-11-26T05:00:00Z"}
"#;
        assert_eq!(
            runtime_error(log).as_deref(),
            Some(
                "exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH"
            )
        );
        assert_eq!(runtime_error("{\"level\":\"warning\",\"msg\":\"x\"}"), None);
        assert_eq!(runtime_error("not json"), None);
    }
}
