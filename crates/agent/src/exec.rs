//! Processes started in a running container for `kubectl exec`: `runc exec` with pipes, or
//! `runc exec --tty` in front of a terminal of ours (runc makes the container's terminal and
//! copies between the two). The process enters
//! all of the container's namespaces and its cgroup, with the user, environment and working
//! directory of the container's own process (runc's defaults for `exec`).
//!
//! A [`Process`] that is dropped before it ended kills what it started: a client that goes
//! away leaves nothing running.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::error::{Context, Result};
use tokio::io::{AsyncRead, AsyncWrite};

/// What to run and which streams it has.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Request {
    pub(crate) command: Vec<String>,
    pub(crate) stdin: bool,
    pub(crate) stdout: bool,
    pub(crate) stderr: bool,
    pub(crate) tty: bool,
}

/// A process running in a container.
pub(crate) struct Process {
    child: Option<tokio::process::Child>,
    pid_file: PathBuf,
    log_file: PathBuf,
    _dir: tempfile::TempDir,
    /// Its standard input (a pipe, or the terminal).
    pub(crate) stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Its standard output (with a terminal: everything it writes).
    pub(crate) stdout: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// Its standard error (none with a terminal).
    pub(crate) stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// The terminal, for resizing.
    pub(crate) terminal: Option<Terminal>,
    ended: bool,
}

/// The terminal in front of `runc exec --tty`: runc copies between it and the container's own
/// terminal, and on SIGWINCH gives the container's terminal this one's size.
pub(crate) struct Terminal {
    master: OwnedFd,
    runc: Option<u32>,
}

impl Terminal {
    /// Sets the terminal's size; the process gets SIGWINCH.
    pub(crate) fn resize(&self, width: u16, height: u16) {
        if let Err(e) = runtime::attach::resize(&self.master, width, height) {
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

/// How a process ended: its exit code, and the runtime's own error when it could not start.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exit {
    pub(crate) code: i32,
    pub(crate) runtime_error: Option<String>,
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
pub(crate) async fn start(
    runc: &runtime::runc::Runc,
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
            process.stdin = child
                .stdin
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncWrite + Send + Unpin>);
            process.stdout = child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>);
            process.stderr = child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>);
        }
    }
    process.child = Some(child);
    Ok(process)
}

impl Process {
    /// Waits for the process to end. A process the runtime could not start reports the
    /// runtime's message and, as upstream's runtimes do, 127 when the command was not found and
    /// 126 when it could not be run.
    pub(crate) async fn wait(&mut self) -> Result<Exit> {
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
    pub(crate) fn kill(&mut self) {
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
