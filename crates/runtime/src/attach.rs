//! Attaching to a running container's own standard streams, through its monitor (the
//! [`crate::shim`]): the monitor keeps the container's stdin (a pipe, or its terminal) and
//! copies its output to the log file and to every attached client.
//!
//! A client connects to `attach.sock` in the container's bundle, sends a [`Hello`] as one JSON
//! line, then frames both ways: a kind byte, a big-endian `u32` length, the data. The client
//! sends [`STDIN`], [`RESIZE`] (`{"Width":..,"Height":..}`) and [`CLOSE_STDIN`]; the monitor
//! sends [`STDOUT`] and [`STDERR`] and closes the connection when the container ends.

use std::io::{Read, Write};
use std::os::fd::AsFd;

use serde::{Deserialize, Serialize};

/// The attach socket's name in the bundle.
pub const SOCKET: &str = "attach.sock";
/// The console socket's name in the bundle (runc hands the terminal over it).
pub const CONSOLE: &str = "console.sock";

/// Data for the container's stdin.
pub const STDIN: u8 = 0;
/// The container's stdout (with a terminal, all of its output).
pub const STDOUT: u8 = 1;
/// The container's stderr.
pub const STDERR: u8 = 2;
/// A new terminal size.
pub const RESIZE: u8 = 4;
/// The client is done with stdin.
pub const CLOSE_STDIN: u8 = 255;

/// What a client attaches to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// It writes to stdin.
    pub stdin: bool,
    /// It reads stdout.
    pub stdout: bool,
    /// It reads stderr.
    pub stderr: bool,
}

/// One frame, encoded.
pub fn encode(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(5 + data.len());
    frame.push(kind);
    frame.extend_from_slice(&(data.len() as u32).to_be_bytes());
    frame.extend_from_slice(data);
    frame
}

/// Frames larger than this are refused (a client's stdin chunk or a resize is small).
pub const MAX_FRAME: usize = 1 << 20;

/// Reads one frame; None at the end of the stream.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("an attach frame of {len} bytes"),
        ));
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data)?;
    Ok(Some((head[0], data)))
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, kind: u8, data: &[u8]) -> std::io::Result<()> {
    w.write_all(&encode(kind, data))
}

/// A terminal size from a [`RESIZE`] frame: `(width, height)`.
pub fn parse_resize(data: &[u8]) -> Option<(u16, u16)> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    let dim = |k: &str| v[k].as_u64().and_then(|n| u16::try_from(n).ok());
    Some((dim("Width")?, dim("Height")?))
}

/// Sets a terminal's size (`TIOCSWINSZ`); its foreground processes get SIGWINCH.
pub fn resize(terminal: impl AsFd, width: u16, height: u16) -> std::io::Result<()> {
    let size = rustix::termios::Winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(terminal, size).map_err(std::io::Error::from)
}

/// Receives the terminal runc sends over the console socket (one descriptor, SCM_RIGHTS).
pub fn receive_terminal(
    socket: &std::os::unix::net::UnixStream,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut buf = [0u8; 4096];
    rustix::net::recvmsg(
        socket,
        &mut [std::io::IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::empty(),
    )?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err(std::io::Error::other(
        "runc sent no terminal over the console socket",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut wire = Vec::new();
        write_frame(&mut wire, STDOUT, b"hello").unwrap();
        write_frame(&mut wire, CLOSE_STDIN, b"").unwrap();
        let mut r = &wire[..];
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((STDOUT, b"hello".to_vec()))
        );
        assert_eq!(read_frame(&mut r).unwrap(), Some((CLOSE_STDIN, vec![])));
        assert_eq!(read_frame(&mut r).unwrap(), None);
        let huge = encode(STDIN, &[]);
        let mut bad = huge.clone();
        bad[1] = 0xff;
        assert!(read_frame(&mut &bad[..]).is_err());
    }

    #[test]
    fn resizes_are_read_from_json() {
        assert_eq!(parse_resize(br#"{"Width":80,"Height":24}"#), Some((80, 24)));
        assert_eq!(parse_resize(b"{}"), None);
    }

    #[test]
    fn a_terminal_passed_over_a_socket_arrives() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let pty = nix::pty::openpty(None, None).unwrap();
        let fds = [std::os::fd::AsFd::as_fd(&pty.master)];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
        assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)));
        rustix::net::sendmsg(
            &a,
            &[std::io::IoSlice::new(b"x")],
            &mut control,
            rustix::net::SendFlags::empty(),
        )
        .unwrap();
        let got = receive_terminal(&b).unwrap();
        resize(&got, 100, 30).unwrap();
        let size = rustix::termios::tcgetwinsize(&pty.slave).unwrap();
        assert_eq!((size.ws_col, size.ws_row), (100, 30));
    }
}
