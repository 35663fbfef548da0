//! The only module with `unsafe`: fork, `_exit`, fd closing, capability and signal calls,
//! the pty ioctls, BPF and seccomp calls, each behind a small safe wrapper.
//!
//! Callers in a forked child rely on the process being single-threaded or on glibc's
//! fork-safe malloc: the child code only allocates, makes system calls and exits.
#![allow(unsafe_code, reason = "the crate's one module for raw system calls")]

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::ForkResult;

/// `fork(2)`.
///
/// The child must only make system calls, allocate, and end with [`exit_now`] or an exec:
/// it never returns into the caller's destructors.
pub(crate) fn fork() -> nix::Result<ForkResult> {
    // SAFETY: vz-ns' child paths are async-signal-safe in practice (glibc makes malloc safe
    // after fork) and leave only through exec or `_exit`, never by unwinding into the
    // parent's state.
    unsafe { nix::unistd::fork() }
}

/// `_exit(2)`: ends a forked child without running the parent's destructors or atexit hooks.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}

/// Closes every fd above 2 except those in `keep` (which stay open as they are).
///
/// Call only in a forked child that ends in exec or [`exit_now`]: the fds closed here may be
/// owned by objects of the parent's address space that are never used again in the child.
pub(crate) fn close_fds_except(keep: &[RawFd]) -> nix::Result<()> {
    let mut keep: Vec<u32> =
        keep.iter().filter_map(|fd| u32::try_from(*fd).ok()).filter(|fd| *fd > 2).collect();
    keep.sort_unstable();
    let mut first = 3_u32;
    for fd in keep {
        if fd > first {
            close_range(first, fd - 1)?;
        }
        first = fd.saturating_add(1);
    }
    close_range(first, u32::MAX)
}

fn close_range(first: u32, last: u32) -> nix::Result<()> {
    // SAFETY: close_range only closes descriptors; see `close_fds_except` for why closing
    // them cannot invalidate live Rust objects that are still used.
    let rc = unsafe { libc::close_range(first, last, 0) };
    Errno::result(rc).map(drop)
}

/// `dup2(old, new)`; `new` must be 0, 1 or 2 (stdio of a child about to exec).
pub(crate) fn dup_onto_stdio(old: BorrowedFd<'_>, new: RawFd) -> nix::Result<()> {
    debug_assert!((0..=2).contains(&new));
    // SAFETY: dup2 on a valid borrowed fd; replacing stdio is the point in a child.
    let rc = unsafe { libc::dup2(old.as_raw_fd(), new) };
    Errno::result(rc).map(drop)
}

/// Drops `cap` from the calling thread's capability bounding set.
pub(crate) fn capbset_drop(cap: u32) -> nix::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes an integer argument and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
    Errno::result(rc).map(drop)
}

/// Clears the ambient capability set.
pub(crate) fn ambient_clear_all() -> nix::Result<()> {
    // SAFETY: integer-only prctl.
    let rc = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    Errno::result(rc).map(drop)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The calling thread's capability sets (v3: two 32-bit halves each) and the header that
/// reads them.
fn capget() -> nix::Result<(CapHeader, [CapData; 2])> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget with a v3 header writes exactly two CapData structs.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    Errno::result(rc).map(|_| (header, data))
}

/// Whether capability `bit` is in the calling thread's effective set.
pub(crate) fn has_effective_cap(bit: u32) -> bool {
    capget().is_ok_and(|(_, data)| {
        let half = data[usize::from(bit >= 32)].effective;
        half & (1 << (bit % 32)) != 0
    })
}

/// Clears the inheritable set of the calling thread (effective and permitted unchanged).
pub(crate) fn clear_inheritable() -> nix::Result<()> {
    let (mut header, mut data) = capget()?;
    for d in &mut data {
        d.inheritable = 0;
    }
    // SAFETY: capset with a v3 header reads exactly two CapData structs.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    Errno::result(rc).map(drop)
}

/// Restores the default disposition of every signal and unblocks all of them, so that what
/// the Rust runtime ignores (SIGPIPE) is not inherited across exec.
pub(crate) fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: setting SIG_DFL installs no handler; invalid numbers just fail.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let set = nix::sys::signal::SigSet::empty();
    let _ =
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&set), None);
}

/// Unlocks the pty master (`unlockpt`).
pub(crate) fn unlock_pty(master: BorrowedFd<'_>) -> nix::Result<()> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer, which lives for the call.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &raw const unlock) };
    Errno::result(rc).map(drop)
}

/// Opens the slave of a pty master through the master's own devpts (`TIOCGPTPEER`).
pub(crate) fn open_pty_peer(master: BorrowedFd<'_>) -> nix::Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes the open flags by value and returns a new fd.
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    let fd = Errno::result(fd)?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes `tty` the controlling terminal of the calling session leader (`TIOCSCTTY`).
pub(crate) fn set_controlling_tty(tty: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: integer-argument ioctl.
    let rc = unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(rc).map(drop)
}

/// Copies the window size of `from` to `to` (both terminals).
pub(crate) fn copy_winsize(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> nix::Result<()> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let rc = unsafe { libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &raw mut ws) };
    Errno::result(rc)?;
    // SAFETY: TIOCSWINSZ reads one winsize from the struct we own.
    let rc = unsafe { libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &raw const ws) };
    Errno::result(rc).map(drop)
}

/// Our stdin, borrowed.
pub(crate) fn stdin() -> BorrowedFd<'static> {
    // SAFETY: fd 0 is open for the life of the process in every caller of vz-ns (vzctl); a
    // closed fd 0 only makes the calls on it fail with EBADF.
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// Our stdout, borrowed.
pub(crate) fn stdout() -> BorrowedFd<'static> {
    // SAFETY: as for `stdin`.
    unsafe { BorrowedFd::borrow_raw(1) }
}

/// Our stderr, borrowed.
pub(crate) fn stderr() -> BorrowedFd<'static> {
    // SAFETY: as for `stdin`.
    unsafe { BorrowedFd::borrow_raw(2) }
}

/// Takes ownership of an fd the kernel installed in this process for a received
/// `SCM_RIGHTS` message.
pub(crate) fn adopt_received_fd(raw: RawFd) -> OwnedFd {
    // SAFETY: the kernel just made `raw` for this process; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// The audit architecture of this build's system calls (what a seccomp filter checks).
#[cfg(target_arch = "x86_64")]
pub(crate) const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
pub(crate) const AUDIT_ARCH: u32 = 0xC000_00B7;

/// Installs the classic BPF seccomp `filter` on the calling thread; with `listener`, the
/// filter gets a user-notification listener, returned (CLOEXEC). Needs CAP_SYS_ADMIN in the
/// caller's user namespace or no_new_privs; with a listener, fails with EBUSY when the
/// thread already has a filter with one.
pub(crate) fn seccomp_install(
    filter: &[libc::sock_filter],
    listener: bool,
) -> nix::Result<Option<OwnedFd>> {
    let len = u16::try_from(filter.len()).map_err(|_| Errno::E2BIG)?;
    let program = libc::sock_fprog { len, filter: filter.as_ptr().cast_mut() };
    let flags = if listener { libc::SECCOMP_FILTER_FLAG_NEW_LISTENER } else { 0 };
    // SAFETY: `program` points at `filter`, both alive for the call; the kernel copies them
    // and never writes through the pointer.
    let rc = unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, &raw const program)
    };
    let rc = Errno::result(rc)?;
    if !listener {
        return Ok(None);
    }
    let fd = RawFd::try_from(rc).map_err(|_| Errno::EBADF)?;
    // SAFETY: a successful call with NEW_LISTENER returns a new fd that only we own.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

fn c_path(path: &std::path::Path) -> nix::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

/// `open_tree(path, OPEN_TREE_CLONE | AT_RECURSIVE | O_CLOEXEC)`: a detached copy of the
/// mount tree at `path`, to be changed and attached elsewhere.
pub(crate) fn open_tree_clone(path: &std::path::Path) -> nix::Result<OwnedFd> {
    let path = c_path(path)?;
    let flags = OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC.cast_unsigned();
    // SAFETY: `path` is a NUL-terminated string alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    let fd = RawFd::try_from(Errno::result(rc)?).map_err(|_| Errno::EBADF)?;
    // SAFETY: a successful open_tree returns a new fd that only we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes the detached tree `tree` (from [`open_tree_clone`]) show ids through the map of
/// the user namespace `userns`, recursively; every mount of it gets `nodev` and loses
/// `nosuid` (set-uid files work for the VE's own users, as the namespace's ids).
pub(crate) fn idmap_tree(tree: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> nix::Result<()> {
    let userns_fd = u64::try_from(userns.as_raw_fd()).map_err(|_| Errno::EBADF)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | MOUNT_ATTR_NODEV,
        attr_clr: MOUNT_ATTR_NOSUID,
        propagation: 0,
        userns_fd,
    };
    let flags = libc::AT_EMPTY_PATH.cast_unsigned() | AT_RECURSIVE;
    // SAFETY: the path is an empty NUL-terminated string and `attr` a `struct mount_attr`
    // of the size passed, both alive for the call; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &raw const attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(rc).map(drop)
}

/// `move_mount(tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`: attaches the detached
/// tree at `target` in the caller's mount namespace.
pub(crate) fn attach_tree(tree: BorrowedFd<'_>, target: &std::path::Path) -> nix::Result<()> {
    let target = c_path(target)?;
    // SAFETY: both paths are NUL-terminated strings alive for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    Errno::result(rc).map(drop)
}

const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// A new, detached proc mount (`nosuid,nodev,noexec`) of the caller's pid namespace, made
/// with fsopen/fsconfig/fsmount; attach it with [`attach_tree`].
pub(crate) fn fsmount_proc() -> nix::Result<OwnedFd> {
    let owned = |rc: libc::c_long| -> nix::Result<OwnedFd> {
        let fd = RawFd::try_from(Errno::result(rc)?).map_err(|_| Errno::EBADF)?;
        // SAFETY: a successful fsopen/fsmount returns a new fd that only we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    // SAFETY: a NUL-terminated string alive for the call and a flag.
    let fs = owned(unsafe { libc::syscall(libc::SYS_fsopen, c"proc".as_ptr(), FSMOUNT_CLOEXEC) })?;
    // SAFETY: the command takes no key, value or aux argument.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    Errno::result(rc)?;
    let attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    // SAFETY: plain integer arguments.
    owned(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })
}

/// `clock_gettime(clock)` in the caller's time namespace: (seconds, nanoseconds).
pub(crate) fn clock_now(clock: libc::clockid_t) -> nix::Result<(i64, i64)> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the struct we own.
    let rc = unsafe { libc::clock_gettime(clock, &raw mut ts) };
    Errno::result(rc).map(|_| (ts.tv_sec, ts.tv_nsec))
}

/// `pidfd_open(pid, 0)`: an fd that polls readable when the process `pid` exits.
pub(crate) fn pidfd_open(pid: nix::unistd::Pid) -> nix::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = RawFd::try_from(Errno::result(rc)?).map_err(|_| Errno::EBADF)?;
    // SAFETY: a successful pidfd_open returns a new fd that only we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `SECCOMP_IOCTL_NOTIF_RECV`: waits for the next notification on `listener`.
pub(crate) fn seccomp_notif_recv(listener: BorrowedFd<'_>) -> nix::Result<libc::seccomp_notif> {
    // SAFETY: all-zero is a valid seccomp_notif, and the kernel requires it zeroed.
    let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl fills a `struct seccomp_notif`, which `notif` is.
    let rc = unsafe {
        libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &raw mut notif)
    };
    Errno::result(rc).map(|_| notif)
}

/// `SECCOMP_IOCTL_NOTIF_SEND`: answers the notification `resp.id`.
pub(crate) fn seccomp_notif_send(
    listener: BorrowedFd<'_>,
    mut resp: libc::seccomp_notif_resp,
) -> nix::Result<()> {
    // SAFETY: the ioctl reads a `struct seccomp_notif_resp`, which `resp` is.
    let rc =
        unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &raw mut resp) };
    Errno::result(rc).map(drop)
}

/// `SECCOMP_IOCTL_NOTIF_ID_VALID`: whether the notification `id` still waits (its caller
/// has not died or been interrupted since it was received).
pub(crate) fn seccomp_notif_id_valid(listener: BorrowedFd<'_>, id: u64) -> bool {
    let mut id = id;
    // SAFETY: the ioctl reads a u64, which `id` is.
    let rc = unsafe {
        libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &raw mut id)
    };
    rc == 0
}
