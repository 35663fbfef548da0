//! `vzctl enter`'s terminal: a pty of the VE's own devpts instance, and the relay between it
//! and the caller's stdin/stdout (with the caller's terminal in raw mode meanwhile).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::{Pid, isatty};

use crate::enter::{exit_code, wait_code};
use crate::error::{NsError, Result};
use crate::sys;

/// End-of-file character sent to the pty when our stdin ends (VEOF, ^D).
const EOF_CHAR: u8 = 0x04;

/// A pty pair from the VE's devpts.
#[derive(Debug)]
pub(crate) struct Pty {
    master: OwnedFd,
    slave: Option<OwnedFd>,
}

impl Pty {
    /// Opens `/proc/<init_pid>/root/dev/ptmx`, unlocks it and opens the slave through the
    /// master (`TIOCGPTPEER`), so the VE cannot substitute another file for the slave.
    pub(crate) fn open(init_pid: i32) -> Result<Self> {
        let path = PathBuf::from(format!("/proc/{init_pid}/root/dev/ptmx"));
        let master = nix::fcntl::open(
            &path,
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| NsError::io("open the VE's pty master", &path, e.into()))?;
        sys::unlock_pty(master.as_fd()).map_err(|e| NsError::io("unlock pty", &path, e.into()))?;
        let slave = sys::open_pty_peer(master.as_fd())
            .map_err(|e| NsError::io("open pty slave of", &path, e.into()))?;
        if isatty(sys::stdin()).unwrap_or(false)
            && let Err(e) = sys::copy_winsize(sys::stdin(), master.as_fd())
        {
            tracing::debug!(error = %e, "copying the window size");
        }
        Ok(Pty { master, slave: Some(slave) })
    }

    /// The slave end, once.
    pub(crate) fn take_slave(&mut self) -> Option<OwnedFd> {
        self.slave.take()
    }

    /// Relays stdin → master and master → stdout until `child` exits; returns its exit code.
    pub(crate) fn relay(self, child: Pid) -> Result<i32> {
        let _raw = RawMode::enable(sys::stdin());
        let mut stdin_open = true;
        let mut buf = [0_u8; 4096];
        loop {
            let mut fds = vec![PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            if stdin_open {
                fds.push(PollFd::new(sys::stdin(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::from(100_u16)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(NsError::sys("poll the pty", e)),
            }
            let master_ev = fds[0].revents().unwrap_or(PollFlags::empty());
            let stdin_ev = fds.get(1).and_then(PollFd::revents).unwrap_or(PollFlags::empty());
            drop(fds);
            if !stdin_ev.is_empty() {
                match nix::unistd::read(sys::stdin(), &mut buf) {
                    Ok(0) | Err(_) => {
                        stdin_open = false;
                        let _ = write_all(self.master.as_fd(), &[EOF_CHAR]);
                    }
                    Ok(n) => write_all(self.master.as_fd(), &buf[..n])?,
                }
            }
            if !master_ev.is_empty() && !self.copy_out(&mut buf)? {
                return wait_code(child);
            }
            match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                Ok(status) => {
                    if let Some(code) = exit_code(status) {
                        self.drain(&mut buf);
                        return Ok(code);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(NsError::sys("wait for the entered program", e)),
            }
        }
    }

    /// Copies what the master has to stdout; `false` once every slave is closed.
    fn copy_out(&self, buf: &mut [u8]) -> Result<bool> {
        match nix::unistd::read(&self.master, buf) {
            Ok(0) | Err(Errno::EIO) => Ok(false),
            Ok(n) => {
                write_all(sys::stdout(), &buf[..n])?;
                Ok(true)
            }
            Err(Errno::EINTR | Errno::EAGAIN) => Ok(true),
            Err(e) => Err(NsError::sys("read the pty", e)),
        }
    }

    /// Copies what is left in the master after the program exited, without blocking.
    fn drain(&self, buf: &mut [u8]) {
        if fcntl(&self.master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).is_ok() {
            while matches!(self.copy_out(buf), Ok(true)) {
                if matches!(nix::unistd::read(&self.master, &mut []), Err(Errno::EAGAIN)) {
                    break;
                }
            }
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(NsError::sys("relay pty data", e)),
        }
    }
    Ok(())
}

/// The caller's terminal in raw mode, restored on drop (also on error paths).
struct RawMode {
    fd: BorrowedFd<'static>,
    saved: Termios,
}

impl RawMode {
    fn enable(fd: BorrowedFd<'static>) -> Option<Self> {
        if !isatty(fd).unwrap_or(false) {
            return None;
        }
        let saved = tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Err(e) = tcsetattr(self.fd, SetArg::TCSANOW, &self.saved) {
            tracing::warn!(error = %e, "restoring the terminal mode");
        }
    }
}
