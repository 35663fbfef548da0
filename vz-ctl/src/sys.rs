//! The few system calls vz-ctl makes that its dependencies offer only unsafely: the one
//! file of the crate allowed `unsafe` (house style), each block with its `// SAFETY:`.
//!
//! * [`pidfd_open`]: a pidfd of a process (nix has none), which the console server polls to
//!   learn at once that a VE's init ended, and which names that process even if its pid is
//!   reused;
//! * [`recv_fds`]: a message and the fds it carries (`SCM_RIGHTS`), as owned fds;
//! * [`pidfd_exit_status`] and [`pidfd_unreaped`]: how a VE's init ended (an in-VE reboot is
//!   restarted, `consoled/reboot.rs`);
//! * [`thread_cpu_time`]: the calling thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`, exact to
//!   the nanosecond: the kernel brings the running thread's time up to date when asked).
#![allow(unsafe_code, reason = "this file is the crate's one place for it")]

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

/// The most fds one message of [`recv_fds`] takes (more are closed).
pub(crate) const MAX_FDS: usize = 4;

/// A pidfd of the process `pid` (close-on-exec).
///
/// # Errors
/// ESRCH when there is no such process, or what else pidfd_open(2) returns.
pub(crate) fn pidfd_open(pid: i32) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags (0: a blocking, close-on-exec fd) and
    // touches no memory of ours.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if ret < 0 {
        return Err(nix::errno::Errno::last());
    }
    let raw = RawFd::try_from(ret).map_err(|_| nix::errno::Errno::EBADF)?;
    // SAFETY: the kernel just made `raw` for this process; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// `struct pidfd_info` of Linux 6.15 (`PIDFD_INFO_SIZE_VER0`, 64 bytes).
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    ids: [u32; 11],
    exit_code: i32,
}

/// `PIDFD_INFO_EXIT`: the exit status of a reaped process.
const PIDFD_INFO_EXIT: u64 = 1 << 3;

/// `PIDFD_GET_INFO`: `_IOWR(0xFF, 11, struct pidfd_info)`.
const PIDFD_GET_INFO: libc::c_ulong = (3 << 30) | (64 << 16) | (0xFF << 8) | 11;

/// The wait status of the process of `pidfd` once it has been reaped (PIDFD_GET_INFO's
/// PIDFD_INFO_EXIT, Linux 6.15+); `None` before the reaping or on older kernels.
pub(crate) fn pidfd_exit_status(pidfd: BorrowedFd<'_>) -> Option<i32> {
    let mut info = PidfdInfo { mask: PIDFD_INFO_EXIT, ..PidfdInfo::default() };
    // SAFETY: `info` is a writable `struct pidfd_info` of the size the request number names;
    // the kernel writes at most that many bytes into it.
    let ret = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO, &raw mut info) };
    (ret == 0 && info.mask & PIDFD_INFO_EXIT != 0).then_some(info.exit_code)
}

/// Whether the process of `pidfd` has not been reaped yet (a zombie counts): signal 0
/// through the pidfd.
pub(crate) fn pidfd_unreaped(pidfd: BorrowedFd<'_>) -> bool {
    // SAFETY: pidfd_send_signal with signal 0 and no siginfo only checks the target.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    ret == 0
}

/// The CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`); zero if the clock
/// cannot be read (it always can on Linux).
pub(crate) fn thread_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration; the clock id is a
    // constant the kernel knows.
    let ret = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    if ret != 0 {
        return std::time::Duration::ZERO;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
    std::time::Duration::new(secs, nanos)
}

/// Receives one message into `buf` on the socket `fd` with `flags`: its length and the fds
/// it carried (close-on-exec; at most [`MAX_FDS`]).
///
/// # Errors
/// What recvmsg(2) returns (EAGAIN for a non-blocking socket without a message).
pub(crate) fn recv_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: MsgFlags,
) -> nix::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let msg = recvmsg::<()>(
        fd.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        flags | MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raws) = cmsg {
            for raw in raws {
                // SAFETY: the kernel just installed `raw` in this process for this message;
                // nothing else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
    }
    Ok((msg.bytes, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_pidfd_polls_readable_when_its_process_ends() {
        let mut child = std::process::Command::new("sleep").arg("0.05").spawn().expect("sleep");
        let pid = i32::try_from(child.id()).expect("pid");
        let fd = pidfd_open(pid).expect("pidfd_open");
        let mut fds = [nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN)];
        assert_eq!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(0));
        let _ = child.wait();
        assert_eq!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000_u16)), Ok(1));
        assert_eq!(pidfd_open(i32::MAX).err(), Some(nix::errno::Errno::ESRCH));
    }

    #[test]
    fn the_thread_clock_counts_this_threads_work_only() {
        let start = thread_cpu_time();
        let other = std::thread::spawn(|| {
            let t = thread_cpu_time();
            while thread_cpu_time() < t + std::time::Duration::from_millis(30) {}
        });
        other.join().expect("join");
        let mut x = 0_u64;
        let t = thread_cpu_time();
        while thread_cpu_time() < t + std::time::Duration::from_micros(200) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let spent = thread_cpu_time() - start;
        assert!(spent >= std::time::Duration::from_micros(200), "{spent:?}");
        assert!(spent < std::time::Duration::from_millis(25), "the other thread's: {spent:?}");
    }

    #[test]
    fn fds_travel_with_their_message() {
        use nix::sys::socket::{
            AddressFamily, ControlMessage, SockFlag, SockType, sendmsg, socketpair,
        };
        let (a, b) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
                .expect("socketpair");
        let file = tempfile::tempfile().expect("tempfile");
        let raws = [file.as_raw_fd(), file.as_raw_fd()];
        let iov = [std::io::IoSlice::new(b"two")];
        sendmsg::<()>(
            a.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&raws)],
            MsgFlags::empty(),
            None,
        )
        .expect("sendmsg");
        let mut buf = [0_u8; 16];
        let (n, fds) = recv_fds(b.as_fd(), &mut buf, MsgFlags::empty()).expect("recv");
        assert_eq!((&buf[..n], fds.len()), (&b"two"[..], 2));
    }
}
