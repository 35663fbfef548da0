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

use crate::error::{NsError, Result};
use crate::rootfs::StepResult;
use crate::sys;
use crate::userns::IdMap;

/// The device number of `/dev/ptmx` (5:2).
const PTMX: (u64, u64) = (5, 2);

/// Opens the VE's `/dev/ptmx` (run inside the VE, as its root), checks that it is a pty
/// multiplexer, unlocks it and opens the slave through the master (`TIOCGPTPEER`), so the
/// VE cannot substitute another file for either. Returns (master, slave).
pub(crate) fn open_in_ve() -> StepResult<(OwnedFd, OwnedFd)> {
    open_pair(std::path::Path::new("/dev/ptmx"))
}

/// Opens the multiplexer `ptmx`, checks it, unlocks the new pty and opens its slave through
/// the master. Returns (master, slave).
fn open_pair(ptmx: &std::path::Path) -> StepResult<(OwnedFd, OwnedFd)> {
    let master = nix::fcntl::open(
        ptmx,
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

/// A restored VE's console ([`crate::InitSpec::console`]): mounts at `dir` (an empty
/// directory of the host) a new devpts instance as the VE's start makes it (`pty_max` is the
/// VE's own bound; the console comes on top) and opens its first pty, `pts/0`. CRIU binds
/// the instance as the VE's /dev/pts (an external mount), so /dev/console, a link to
/// `pts/0`, is this pty again; the slave is for CRIU's `--inherit-fd` (the VE's processes
/// had the console open), the master for the console server. The caller detaches `dir`
/// after the restore. Returns (master, slave).
///
/// # Errors
/// [`NsError::Setup`] naming the step that failed (also when the first pty is not `pts/0`).
///
/// # Privileges
/// Root with CAP_SYS_ADMIN in the initial namespaces.
pub fn open_console_for_restore(
    dir: &std::path::Path,
    pty_max: Option<u64>,
    id_map: Option<&IdMap>,
) -> Result<(OwnedFd, OwnedFd)> {
    let setup = || -> StepResult<(OwnedFd, OwnedFd)> {
        crate::rootfs::mount_devpts(dir, pty_max.map(|max| max.saturating_add(1)), id_map)?;
        let (master, slave) = open_pair(&dir.join("ptmx"))?;
        let stat = fstat(&slave).map_err(|e| format!("stat the console pty: {e}"))?;
        if minor(stat.st_rdev) != 0 {
            return Err(format!("the console pty is not pts/0 but {}", minor(stat.st_rdev)));
        }
        if let Some(map) = id_map {
            // As the VE's init would have opened it: its root's, in its tty group.
            let (uid, gid) = (map.host_uid(0), map.host_gid(crate::rootfs::TTY_GID));
            nix::unistd::fchown(
                &slave,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| format!("chown the console pty: {e}"))?;
        }
        Ok((master, slave))
    };
    setup().map_err(|message| NsError::Setup { message })
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
