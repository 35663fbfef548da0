//! System calls of a VE's processes that the host answers (seccomp user notification).
//!
//! A VE's root lacks capabilities some of its administration needs on a stock kernel, e.g.
//! quotactl's Q_SETQUOTA on its own file system wants CAP_SYS_ADMIN in the host's user
//! namespace. With [`crate::InitSpec::quotactl_server`] (and the same field of
//! [`crate::EnterSpec`]) the VE's processes get a seccomp filter that stops at `quotactl(2)`
//! and notifies a [`SyscallListener`]; the listener is handed to a server process over a
//! unix socket ([`ListenerInbox`]). The server reads the call's arguments from the caller's
//! memory, decides, and answers: a result, an error, or "continue" (the kernel runs the call
//! with the caller's own privileges, as if there were no filter).
//!
//! When every process under a filter has exited, its listener reports a hang-up; when a
//! listener is closed, waiting and later calls fail with ENOSYS. Nothing hangs on a server
//! that is gone.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    AddressFamily, Backlog, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, accept4, bind,
    connect, getsockopt, listen, recvmsg, sendmsg, socket, sockopt::PeerCredentials,
};

use crate::error::{NsError, Result};
use crate::init::sync::received_fd;
use crate::sys;

/// The receiving end of a seccomp filter's notifications.
#[derive(Debug)]
pub struct SyscallListener {
    fd: OwnedFd,
}

/// One intercepted system call, waiting for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallRequest {
    /// The notification's id, for [`SyscallListener::reply`].
    pub id: u64,
    /// The caller's pid (in the listener's pid namespace: the host's for vz).
    pub pid: i32,
    /// The system call number.
    pub nr: i64,
    /// The six raw arguments.
    pub args: [u64; 6],
}

/// The answer to a [`SyscallRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallReply {
    /// The call returns this value.
    Value(i64),
    /// The call fails with this errno.
    Error(i32),
    /// The kernel runs the call as the caller, as if there were no filter.
    Continue,
}

impl SyscallListener {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        SyscallListener { fd }
    }

    /// Waits for the next call; `None` when it was cancelled before it could be read (its
    /// caller died or was interrupted by a signal).
    ///
    /// # Errors
    /// [`NsError::Sys`] when the listener fails.
    pub fn receive(&self) -> Result<Option<SyscallRequest>> {
        match sys::seccomp_notif_recv(self.fd.as_fd()) {
            Ok(n) => Ok(Some(SyscallRequest {
                id: n.id,
                pid: i32::try_from(n.pid).unwrap_or(0),
                nr: i64::from(n.data.nr),
                args: n.data.args,
            })),
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EINTR) => Ok(None),
            Err(e) => Err(NsError::sys("receive a seccomp notification", e)),
        }
    }

    /// Whether the call `id` still waits. Check it after opening the caller's `/proc/<pid>`
    /// files and before using them: then they are the waiting caller's, not those of a
    /// process that took its pid after it died.
    pub fn is_waiting(&self, id: u64) -> bool {
        sys::seccomp_notif_id_valid(self.fd.as_fd(), id)
    }

    /// Answers the call `id`. A caller that died meanwhile is not an error.
    ///
    /// # Errors
    /// [`NsError::Sys`] when the listener refuses the answer.
    pub fn reply(&self, id: u64, reply: SyscallReply) -> Result<()> {
        let (val, error, flags) = match reply {
            SyscallReply::Value(v) => (v, 0, 0),
            SyscallReply::Error(errno) => (0, -errno.abs(), 0),
            // The flag is 1; libc spells it as an unsigned long, the response field is a u32.
            SyscallReply::Continue => {
                (0, 0, u32::try_from(libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE).unwrap_or(1))
            }
        };
        let resp = libc::seccomp_notif_resp { id, val, error, flags };
        match sys::seccomp_notif_send(self.fd.as_fd(), resp) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(NsError::sys("answer a seccomp notification", e)),
        }
    }
}

impl AsFd for SyscallListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Sends a filter's `listener` to the server listening at `socket` ([`ListenerInbox`]).
///
/// # Errors
/// [`NsError::Io`] when the server cannot be reached.
pub(crate) fn send_listener(socket: &Path, listener: BorrowedFd<'_>) -> Result<()> {
    let fail = |e: nix::errno::Errno| NsError::io("hand the listener to", socket, e.into());
    let conn = socket_fd().map_err(fail)?;
    connect(conn.as_raw_fd(), &UnixAddr::new(socket).map_err(fail)?).map_err(fail)?;
    let fds = [listener.as_raw_fd()];
    sendmsg::<()>(
        conn.as_raw_fd(),
        &[IoSlice::new(b"L")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(fail)?;
    Ok(())
}

/// A unix socket where a server receives the listeners of a VE's processes; only root's
/// connections are taken.
#[derive(Debug)]
pub struct ListenerInbox {
    socket: OwnedFd,
    path: PathBuf,
}

impl ListenerInbox {
    /// Binds a new socket at `path` (mode 0600; a stale file there is replaced).
    ///
    /// # Errors
    /// [`NsError::Io`] when the socket cannot be made.
    pub fn bind(path: &Path) -> Result<Self> {
        let fail = |e: nix::errno::Errno| NsError::io("bind", path, e.into());
        let socket = socket_fd().map_err(fail)?;
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(NsError::io("remove", path, e)),
        }
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = bind(socket.as_raw_fd(), &UnixAddr::new(path).map_err(fail)?);
        nix::sys::stat::umask(old);
        bound.map_err(fail)?;
        listen(&socket, Backlog::new(16).map_err(fail)?).map_err(fail)?;
        Ok(ListenerInbox { socket, path: path.to_owned() })
    }

    /// Where it is bound.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes one connection and the listener it carries; `None` for a connection that is
    /// not root's or carries none.
    ///
    /// # Errors
    /// [`NsError::Io`] when accepting fails.
    pub fn accept(&self) -> Result<Option<SyscallListener>> {
        let fail = |e: nix::errno::Errno| NsError::io("accept on", &self.path, e.into());
        let raw = accept4(self.socket.as_raw_fd(), SockFlag::SOCK_CLOEXEC).map_err(fail)?;
        let conn = sys::adopt_received_fd(raw);
        let peer = getsockopt(&conn, PeerCredentials).map_err(fail)?;
        if peer.uid() != 0 {
            return Ok(None);
        }
        let mut byte = [0_u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg =
            recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
                .map_err(fail)?;
        Ok(received_fd(&msg).map_err(fail)?.map(SyscallListener::new))
    }
}

impl AsFd for ListenerInbox {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

fn socket_fd() -> nix::Result<OwnedFd> {
    socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)
}

/// Another process's memory, through `/proc/<pid>/mem` (needs ptrace access: root).
#[derive(Debug)]
pub struct ProcessMemory {
    file: File,
}

impl ProcessMemory {
    /// Opens the memory of `pid` for reading and writing.
    ///
    /// # Errors
    /// [`NsError::Io`] when the process is gone or not ours to trace.
    pub fn open(pid: i32) -> Result<Self> {
        let path = PathBuf::from(format!("/proc/{pid}/mem"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| NsError::io("open", &path, e))?;
        Ok(ProcessMemory { file })
    }

    /// Exactly `len` bytes at `addr`.
    ///
    /// # Errors
    /// An I/O error (EIO, EFAULT-like short read) when the range is not mapped.
    pub fn read(&self, addr: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0_u8; len];
        self.file.read_exact_at(&mut buf, addr)?;
        Ok(buf)
    }

    /// A NUL-terminated string at `addr` of at most `max` bytes (without the NUL).
    ///
    /// # Errors
    /// An I/O error when it is not mapped, `InvalidData` when it is longer than `max`.
    pub fn read_c_string(&self, addr: u64, max: usize) -> std::io::Result<Vec<u8>> {
        let mut text = Vec::new();
        let mut chunk = [0_u8; 256];
        while text.len() <= max {
            let offset = addr + text.len() as u64;
            let n = self.file.read_at(&mut chunk, offset)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if let Some(end) = chunk[..n].iter().position(|&b| b == 0) {
                text.extend_from_slice(&chunk[..end]);
                return if text.len() <= max {
                    Ok(text)
                } else {
                    Err(std::io::ErrorKind::InvalidData.into())
                };
            }
            text.extend_from_slice(&chunk[..n]);
        }
        Err(std::io::ErrorKind::InvalidData.into())
    }

    /// Writes `data` at `addr`.
    ///
    /// # Errors
    /// An I/O error when the range is not mapped writable.
    pub fn write(&self, addr: u64, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(data, addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_reaches_the_inbox_with_its_fd() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("101.quotactl");
        let inbox = ListenerInbox::bind(&path).expect("bind");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("stat").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "only root may hand listeners over");
        // Any fd stands in for a seccomp listener: the inbox only carries it.
        let (mine, sent) = std::os::unix::net::UnixStream::pair().expect("pair");
        send_listener(&path, sent.as_fd()).expect("send");
        let got = inbox.accept().expect("accept");
        if nix::unistd::geteuid().is_root() {
            let got = got.expect("root's listener is taken");
            nix::unistd::write(&got, b"x").expect("write through the received fd");
            let mut byte = [0_u8; 1];
            std::io::Read::read_exact(&mut &mine, &mut byte).expect("read");
            assert_eq!(&byte, b"x");
        } else {
            assert!(got.is_none(), "only root's connections count");
        }
        // A second bind replaces the stale socket of a VE that stopped.
        drop(inbox);
        ListenerInbox::bind(&path).expect("bind again");
    }
}
