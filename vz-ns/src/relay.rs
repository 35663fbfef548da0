//! The host side of an entered program's stdio: the caller's stdin copied into the VE and
//! the program's output copied out, through pipes or a pty master, so no VE process ever
//! holds one of the caller's files or terminals. Returns when the program's first process
//! (the entering child) exits, after taking what its output already holds: background
//! processes that keep the pipes or the pty open do not hold the caller up.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::Pid;

use crate::enter::wait_code;
use crate::error::{NsError, Result};
use crate::sys;

/// End-of-file character written to a pty when the caller's stdin ends (VEOF, ^D).
const EOF_CHAR: u8 = 0x04;

/// How much of a program's output is taken after it exited (what background processes
/// keep writing is left to them).
const DRAIN_LIMIT: usize = 1 << 20;

/// Where the caller's stdin goes.
#[derive(Debug)]
pub(crate) enum Input {
    /// The write end of the program's stdin pipe, closed at the caller's end of file.
    Pipe(OwnedFd),
    /// A pty master: input is typed into it; the caller's end of file becomes ^D.
    Pty(OwnedFd),
}

/// One output stream: read from `from` (a pipe's read end or a pty master), written to the
/// caller's fd `to`.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) from: OwnedFd,
    pub(crate) to: BorrowedFd<'static>,
}

/// The caller's side of an entered program.
#[derive(Debug)]
pub(crate) struct Relay {
    pub(crate) input: Option<Input>,
    pub(crate) outputs: Vec<Output>,
}

impl Relay {
    /// Relays until `child` exits; returns its exit code (128 + signal when killed).
    pub(crate) fn run(mut self, child: Pid) -> Result<i32> {
        let exited = sys::pidfd_open(child).map_err(|e| NsError::sys("pidfd_open", e))?;
        for out in &self.outputs {
            set_nonblocking(out.from.as_fd());
        }
        if let Some(Input::Pipe(fd) | Input::Pty(fd)) = &self.input {
            set_nonblocking(fd.as_fd());
        }
        let mut open_outputs: Vec<bool> = vec![true; self.outputs.len()];
        let mut stdin_open = self.input.is_some();
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0_u8; 16 * 1024];
        loop {
            let mut fds = vec![PollFd::new(exited.as_fd(), PollFlags::POLLIN)];
            let out_slots: Vec<usize> =
                (0..self.outputs.len()).filter(|i| open_outputs[*i]).collect();
            for i in &out_slots {
                fds.push(PollFd::new(self.outputs[*i].from.as_fd(), PollFlags::POLLIN));
            }
            let input_fd = self.input.as_ref().map(|i| match i {
                Input::Pipe(fd) | Input::Pty(fd) => fd.as_fd(),
            });
            let stdin_slot = (stdin_open && pending.is_empty()).then(|| {
                fds.push(PollFd::new(sys::stdin(), PollFlags::POLLIN));
                fds.len() - 1
            });
            let pending_slot = match (input_fd, pending.is_empty()) {
                (Some(fd), false) => {
                    fds.push(PollFd::new(fd, PollFlags::POLLOUT));
                    Some(fds.len() - 1)
                }
                _ => None,
            };
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(NsError::sys("poll the entered program's stdio", e)),
            }
            let ready = |slot: usize| fds[slot].revents().is_some_and(|r| !r.is_empty());
            let child_done = ready(0);
            let outs_ready: Vec<usize> = out_slots
                .iter()
                .enumerate()
                .filter(|(pos, _)| ready(pos + 1))
                .map(|(_, i)| *i)
                .collect();
            let stdin_ready = stdin_slot.is_some_and(ready);
            let input_writable = pending_slot.is_some_and(ready);
            drop(fds);
            for i in outs_ready {
                open_outputs[i] = self.copy_out(i, &mut buf, usize::MAX);
            }
            if stdin_ready {
                match nix::unistd::read(sys::stdin(), &mut buf) {
                    Ok(0) | Err(_) => {
                        stdin_open = false;
                        self.end_input(&mut pending);
                    }
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                }
            }
            if (input_writable || stdin_ready) && !pending.is_empty() {
                self.feed(&mut pending);
            }
            if child_done {
                for (i, open) in open_outputs.iter().enumerate() {
                    if *open {
                        self.copy_out(i, &mut buf, DRAIN_LIMIT);
                    }
                }
                return wait_code(child);
            }
        }
    }

    /// Copies what output `i` holds (up to `limit` bytes); `false` at its end of file.
    fn copy_out(&self, i: usize, buf: &mut [u8], limit: usize) -> bool {
        let out = &self.outputs[i];
        let mut copied = 0;
        while copied < limit {
            match nix::unistd::read(&out.from, buf) {
                // EIO: a pty master whose slaves are all closed.
                Ok(0) | Err(Errno::EIO) => return false,
                Ok(n) => {
                    write_all(out.to, &buf[..n]);
                    copied += n;
                }
                Err(Errno::EINTR) => {}
                Err(_) => return true,
            }
        }
        true
    }

    /// Writes what the program's input can take now.
    fn feed(&mut self, pending: &mut Vec<u8>) {
        let Some(Input::Pipe(fd) | Input::Pty(fd)) = &self.input else {
            pending.clear();
            return;
        };
        match nix::unistd::write(fd, pending) {
            Ok(n) => {
                pending.drain(..n);
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            // The program closed its stdin: what the caller types goes nowhere.
            Err(_) => {
                pending.clear();
                self.input = None;
            }
        }
    }

    /// The caller's stdin ended: close the pipe, or type ^D into the pty.
    fn end_input(&mut self, pending: &mut Vec<u8>) {
        match self.input.take() {
            Some(Input::Pty(fd)) => {
                pending.push(EOF_CHAR);
                self.input = Some(Input::Pty(fd));
            }
            Some(Input::Pipe(fd)) if !pending.is_empty() => {
                // Flush what is left, blocking, then close.
                let _ = fcntl(&fd, FcntlArg::F_SETFL(OFlag::empty()));
                write_all(fd.as_fd(), pending);
                pending.clear();
            }
            Some(Input::Pipe(_)) | None => {}
        }
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    let _ = fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
}

/// Writes all of `data`; a caller's fd that refuses (closed pipe, full disk) loses it.
fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::from(1000_u16));
            }
            Err(e) => {
                tracing::debug!(error = %e, "the caller's output refused data");
                return;
            }
        }
    }
}
