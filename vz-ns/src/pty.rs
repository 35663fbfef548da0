//! A terminal for a program entered into a VE (`vzctl enter`), and the VE's console (opened
//! by its init, see [`crate::init`]): a pty of the VE's own devpts,
//! opened by the entering process once it is the VE's root in the VE's mount namespace, so
//! nothing the VE points /dev/ptmx at is ever opened with host privileges; and the caller's
//! terminal in raw mode while the host side relays ([`crate::relay`]).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag, fstat, major, minor};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};
use nix::unistd::isatty;

use crate::rootfs::StepResult;
use crate::sys;

/// The device number of `/dev/ptmx` (5:2).
const PTMX: (u64, u64) = (5, 2);

/// Opens the VE's `/dev/ptmx` (run inside the VE, as its root), checks that it is a pty
/// multiplexer, unlocks it and opens the slave through the master (`TIOCGPTPEER`), so the
/// VE cannot substitute another file for either. Returns (master, slave).
pub(crate) fn open_in_ve() -> StepResult<(OwnedFd, OwnedFd)> {
    let master = nix::fcntl::open(
        "/dev/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| format!("open the VE's /dev/ptmx: {e}"))?;
    let stat = fstat(&master).map_err(|e| format!("stat the VE's /dev/ptmx: {e}"))?;
    let is_char = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    if !is_char || (major(stat.st_rdev), minor(stat.st_rdev)) != PTMX {
        return Err("the VE's /dev/ptmx is not a pty multiplexer".to_owned());
    }
    sys::unlock_pty(master.as_fd()).map_err(|e| format!("unlock the VE's pty: {e}"))?;
    let slave =
        sys::open_pty_peer(master.as_fd()).map_err(|e| format!("open the VE's pty slave: {e}"))?;
    Ok((master, slave))
}

/// Gives the pty `master` the window size of the caller's terminal, if stdin is one.
pub(crate) fn copy_caller_winsize(master: BorrowedFd<'_>) {
    if isatty(sys::stdin()).unwrap_or(false)
        && let Err(e) = sys::copy_winsize(sys::stdin(), master)
    {
        tracing::debug!(error = %e, "copying the window size");
    }
}

/// The caller's terminal in raw mode, restored on drop (also on error paths).
pub(crate) struct RawMode {
    fd: BorrowedFd<'static>,
    saved: Termios,
}

impl RawMode {
    /// Puts `fd` in raw mode if it is a terminal.
    pub(crate) fn enable(fd: BorrowedFd<'static>) -> Option<Self> {
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
