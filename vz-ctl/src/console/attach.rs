//! `vzctl console CTID [TTYNUM]`: the caller's terminal attached to a VE's console through
//! the console server's socket for it (`<VZ_RUN_DIR>/<CTID>.console`, [`super::socket_path`]).

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};

use super::socket_path;
use crate::error::{CtlError, IoContext, Result};
use crate::ve::Ve;

/// The escape character of `vzctl console`: `Esc .` at the start of a line detaches.
const ESC: u8 = 0x1b;

/// `vzctl console CTID [TTYNUM]`: attaches the caller's terminal to the VE's console (tty 1,
/// the only one a VE has) until `Esc .` at the start of a line or the end of the input.
/// As OpenVZ's, the console is persistent: attached to a stopped VE it waits for the VE's
/// start, and it stays attached across a stop and the next start.
///
/// # Errors
/// 21 for a tty other than 1, 14 without a config, [`CtlError::Io`] (3) when a running VE's
/// console server cannot be reached.
pub fn attach(ve: &Ve, tty: Option<&str>) -> Result<()> {
    if let Some(tty) = tty.filter(|t| t.parse::<u32>().ok() != Some(1)) {
        return Err(CtlError::BadParameter {
            option: "ttynum".into(),
            value: tty.to_owned(),
            reason: "a container has one console, tty 1".into(),
        });
    }
    ve.config()?;
    let socket = socket_path(ve);
    let stdin = std::io::stdin();
    let mut session =
        Session { ve, socket: &socket, escape: Escape::default(), buf: vec![0; 16 * 1024] };
    // A running VE without a reachable server is an error before anything is attached.
    let mut stream = match ve.init_pid() {
        Ok(_) => Some(connect(&socket)?),
        Err(_) => None,
    };
    crate::output::warn(format!("Attached to CT {} tty1 (type ESC . to detach)", ve.ctid));
    let _raw = RawMode::enable(stdin.as_fd());
    loop {
        let current = match stream.take() {
            Some(current) => current,
            None => {
                crate::output::warn("\r\nThe container is not running: waiting for its start");
                match session.wait_for_start(stdin.as_fd())? {
                    Some(current) => current,
                    None => return Ok(()),
                }
            }
        };
        match session.relay(stdin.as_fd(), current)? {
            Ended::Detached | Ended::InputClosed => return Ok(()),
            Ended::ConsoleClosed if ve.init_pid().is_ok() => {
                crate::output::warn("\r\nThe container's console server ended");
                return Ok(());
            }
            Ended::ConsoleClosed => {}
        }
    }
}

/// How often a console attached to a stopped VE looks for its server.
const START_POLL: Duration = Duration::from_millis(200);

/// Why a relay between the terminal and a console server ended.
enum Ended {
    /// `Esc .`.
    Detached,
    /// The end of the caller's input.
    InputClosed,
    /// The server closed the connection (the VE stopped, or the server died).
    ConsoleClosed,
}

/// One `vzctl console` session: its VE, the server's socket, the escape state.
struct Session<'a> {
    ve: &'a Ve,
    socket: &'a Path,
    escape: Escape,
    buf: Vec<u8>,
}

impl Session<'_> {
    /// Waits until the VE runs and its server answers; `None` when the user detached or the
    /// input ended first (typed input is dropped: there is no console to take it).
    fn wait_for_start(&mut self, stdin: BorrowedFd<'_>) -> Result<Option<UnixStream>> {
        loop {
            if self.ve.init_pid().is_ok()
                && let Ok(stream) = UnixStream::connect(self.socket)
            {
                return Ok(Some(stream));
            }
            let mut fds = [PollFd::new(stdin, PollFlags::POLLIN)];
            let millis = u16::try_from(START_POLL.as_millis()).unwrap_or(u16::MAX);
            match poll(&mut fds, PollTimeout::from(millis)) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(self.poll_error(e)),
            }
            let n = nix::unistd::read(stdin, &mut self.buf).unwrap_or(0);
            if n == 0 {
                return Ok(None);
            }
            if self.escape.filter(&self.buf[..n]).1 {
                crate::output::warn("\r\nDetached from the container's console");
                return Ok(None);
            }
        }
    }

    /// Copies the console's output to stdout and the input to the console until one ends.
    fn relay(&mut self, stdin: BorrowedFd<'_>, mut stream: UnixStream) -> Result<Ended> {
        let socket = self.socket;
        let mut stdout = std::io::stdout().lock();
        loop {
            let mut fds = [
                PollFd::new(stdin, PollFlags::POLLIN),
                PollFd::new(stream.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(self.poll_error(e)),
            }
            let [input, output] = fds.map(|f| f.revents().unwrap_or(PollFlags::empty()));
            if output.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
                let n = stream.read(&mut self.buf).op("read the console", socket)?;
                if n == 0 {
                    return Ok(Ended::ConsoleClosed);
                }
                stdout
                    .write_all(&self.buf[..n])
                    .and_then(|()| stdout.flush())
                    .op("write", Path::new("stdout"))?;
            }
            if input.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
                let n = nix::unistd::read(stdin, &mut self.buf).unwrap_or(0);
                if n == 0 {
                    return Ok(Ended::InputClosed);
                }
                let (send, detach) = self.escape.filter(&self.buf[..n]);
                // A console that went away meanwhile shows as the end of its output.
                if stream.write_all(&send).is_err() {
                    return Ok(Ended::ConsoleClosed);
                }
                if detach {
                    crate::output::warn("\r\nDetached from the container's console");
                    return Ok(Ended::Detached);
                }
            }
        }
    }

    fn poll_error(&self, e: Errno) -> CtlError {
        CtlError::Io { op: "poll", path: self.socket.to_owned(), source: e.into() }
    }
}

/// Connects to a running VE's console server.
fn connect(socket: &Path) -> Result<UnixStream> {
    UnixStream::connect(socket).op("connect to the console server", socket)
}

/// The `Esc .` detach sequence, recognized at the start of a line (as OpenVZ's vzctl).
#[derive(Debug)]
struct Escape {
    line_start: bool,
    after_esc: bool,
}

impl Default for Escape {
    fn default() -> Self {
        Escape { line_start: true, after_esc: false }
    }
}

impl Escape {
    /// What of `input` goes to the console, and whether the user asked to detach.
    fn filter(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &byte in input {
            if self.after_esc {
                self.after_esc = false;
                if byte == b'.' {
                    return (out, true);
                }
                out.push(ESC);
            } else if byte == ESC && self.line_start {
                self.after_esc = true;
                continue;
            }
            out.push(byte);
            self.line_start = byte == b'\r' || byte == b'\n';
        }
        (out, false)
    }
}

/// The caller's terminal in raw mode, restored on drop.
struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> RawMode<'a> {
    fn enable(fd: BorrowedFd<'a>) -> Option<RawMode<'a>> {
        let saved = tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        let _ = tcsetattr(self.fd, SetArg::TCSANOW, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esc_dot_detaches_only_at_the_start_of_a_line() {
        let mut e = Escape::default();
        assert_eq!(e.filter(b"\x1b."), (Vec::new(), true));
        let mut e = Escape::default();
        assert_eq!(e.filter(b"ls\x1b.x"), (b"ls\x1b.x".to_vec(), false));
        assert_eq!(e.filter(b"\r"), (b"\r".to_vec(), false));
        assert_eq!(e.filter(b"\x1b"), (Vec::new(), false));
        assert_eq!(e.filter(b"."), (Vec::new(), true));
        let mut e = Escape::default();
        assert_eq!(e.filter(b"\x1bq"), (b"\x1bq".to_vec(), false));
    }
}
