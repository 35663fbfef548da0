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
//! With [`crate::SeccompPolicy::intercept_sysinfo`] the same filter (the kernel allows one
//! listener per process) also stops at `sysinfo(2)`, which has no namespace: a server
//! answers it with the VE's memory, load and uptime by writing the caller's `struct
//! sysinfo` ([`ProcessMemory`]).
//!
//! When every process under a filter has exited, its listener reports a hang-up; when a
//! listener is closed, waiting and later calls fail with ENOSYS. Nothing hangs on a server
//! that is gone.
//!
//! A caller waits for its answer asleep in the kernel (interruptibly: a signal or the freezer
//! withdraws the notification and the call is restarted later), so a server that stops reading
//! a listener for a while (vz-ctl's CPU budget of a VE's helpers) makes the VE's callers wait
//! without spending anyone's CPU; [`SyscallListener::receive`] then reports a withdrawn call
//! as `None`.
//!
//! An inbox also takes short questions ([`InboxMessage::Question`], answered on the same
//! connection; [`ask`] is the client), so the server's state (e.g. a VE's load average) can
//! be read without a second socket.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

impl SyscallListener {
    /// Hands this listener to the server whose [`ListenerInbox`] is at `socket`.
    ///
    /// # Errors
    /// [`NsError::Io`] when the server cannot be reached.
    pub fn hand_to(&self, socket: &Path) -> Result<()> {
        send_listener(socket, self.fd.as_fd())
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
    let conn = connect_inbox(socket)?;
    let fail = |e: nix::errno::Errno| NsError::io("hand the listener to", socket, e.into());
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

/// A connection to the [`ListenerInbox`] at `socket`.
///
/// # Errors
/// [`NsError::Io`] when no server listens there.
pub(crate) fn connect_inbox(socket: &Path) -> Result<OwnedFd> {
    let fail = |e: nix::errno::Errno| NsError::io("connect to", socket, e.into());
    let conn = socket_fd().map_err(fail)?;
    connect(conn.as_raw_fd(), &UnixAddr::new(socket).map_err(fail)?).map_err(fail)?;
    Ok(conn)
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
        // The umask is the process's: binds of two threads must not restore each other's.
        static UMASK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let guard = UMASK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = bind(socket.as_raw_fd(), &UnixAddr::new(path).map_err(fail)?);
        nix::sys::stat::umask(old);
        drop(guard);
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
        let Some(conn) = self.accept_root()? else { return Ok(None) };
        let mut byte = [0_u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg =
            recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
                .map_err(fail)?;
        Ok(received_fd(&msg).map_err(fail)?.map(SyscallListener::new))
    }

    /// Takes one connection and what it brought: a listener, or a question to answer (see
    /// [`ask`]); `None` for a connection that is not root's or sent nothing in time.
    ///
    /// # Errors
    /// [`NsError::Io`] when accepting fails.
    pub fn accept_message(&self) -> Result<Option<InboxMessage>> {
        let fail = |e: nix::errno::Errno| NsError::io("accept on", &self.path, e.into());
        let Some(conn) = self.accept_root()? else { return Ok(None) };
        // A client connects and sends at once; one that does not cannot hold the server.
        let timeout = nix::sys::time::TimeVal::new(1, 0);
        nix::sys::socket::setsockopt(&conn, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)
            .map_err(fail)?;
        let mut text = [0_u8; QUESTION_MAX];
        let mut iov = [IoSliceMut::new(&mut text)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let received =
            recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC);
        let msg = match received {
            Ok(msg) => msg,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return Ok(None),
            Err(e) => return Err(fail(e)),
        };
        let len = msg.bytes;
        if let Some(fd) = received_fd(&msg).map_err(fail)? {
            return Ok(Some(InboxMessage::Listener(SyscallListener::new(fd))));
        }
        if len == 0 {
            return Ok(None);
        }
        Ok(Some(InboxMessage::Question(InboxQuestion { conn, text: text[..len].to_vec() })))
    }

    /// Takes one connection; `None` when its peer is not root (closed at once).
    fn accept_root(&self) -> Result<Option<OwnedFd>> {
        let fail = |e: nix::errno::Errno| NsError::io("accept on", &self.path, e.into());
        let raw = accept4(self.socket.as_raw_fd(), SockFlag::SOCK_CLOEXEC).map_err(fail)?;
        let conn = sys::adopt_received_fd(raw);
        let peer = getsockopt(&conn, PeerCredentials).map_err(fail)?;
        Ok((peer.uid() == 0).then_some(conn))
    }
}

/// The longest question [`ListenerInbox::accept_message`] reads, and answer [`ask`] reads.
const QUESTION_MAX: usize = 256;

/// What a connection to a [`ListenerInbox`] brought.
#[derive(Debug)]
pub enum InboxMessage {
    /// A filter's listener, to serve.
    Listener(SyscallListener),
    /// A question of [`ask`].
    Question(InboxQuestion),
}

/// A question sent to a [`ListenerInbox`], waiting for its answer.
#[derive(Debug)]
pub struct InboxQuestion {
    conn: OwnedFd,
    text: Vec<u8>,
}

impl InboxQuestion {
    /// What was asked.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Sends `answer` (at most 256 bytes are read by [`ask`]) and closes the connection. A
    /// client that left is not an error.
    pub fn answer(self, answer: &[u8]) {
        if let Err(e) = nix::sys::socket::send(
            self.conn.as_raw_fd(),
            answer,
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        ) {
            tracing::debug!(error = %e, "an inbox question's asker left");
        }
    }
}

/// Asks the server whose [`ListenerInbox`] is at `socket` the `question` (a short text, not
/// empty) and returns its answer; waits at most `timeout` for it.
///
/// # Errors
/// [`NsError::Io`] when no server listens there or it does not answer in time.
pub fn ask(socket: &Path, question: &[u8], timeout: Duration) -> Result<Vec<u8>> {
    let fail = |e: nix::errno::Errno| NsError::io("ask", socket, e.into());
    let conn = connect_inbox(socket)?;
    let wait = nix::sys::time::TimeVal::new(
        i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        i64::from(timeout.subsec_micros()).max(1),
    );
    nix::sys::socket::setsockopt(&conn, nix::sys::socket::sockopt::ReceiveTimeout, &wait)
        .map_err(fail)?;
    nix::sys::socket::send(conn.as_raw_fd(), question, MsgFlags::MSG_NOSIGNAL).map_err(fail)?;
    let mut answer = [0_u8; QUESTION_MAX];
    let n =
        nix::sys::socket::recv(conn.as_raw_fd(), &mut answer, MsgFlags::empty()).map_err(fail)?;
    Ok(answer[..n].to_vec())
}

impl AsFd for ListenerInbox {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

fn socket_fd() -> nix::Result<OwnedFd> {
    socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)
}

/// Another process's memory, through `/proc/<pid>/mem` (needs ptrace access: root), and
/// its map (`/proc/<pid>/maps`, opened at the same time: both are that process's even if
/// its pid is reused later).
#[derive(Debug)]
pub struct ProcessMemory {
    file: File,
    maps: File,
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
        let maps_path = path.with_file_name("maps");
        let maps = File::open(&maps_path).map_err(|e| NsError::io("open", &maps_path, e))?;
        Ok(ProcessMemory { file, maps })
    }

    /// Whether `len` bytes at `addr` lie in mappings the process may write itself (`w` in
    /// its maps): what the kernel's `copy_to_user` would accept. [`ProcessMemory::write`]
    /// is forced (it would also write the process's read-only pages), so a server writing
    /// an answer for a caller checks this first.
    pub fn is_writable(&self, addr: u64, len: u64) -> bool {
        let mut maps = String::new();
        let mut reader = &self.maps;
        if std::io::Read::read_to_string(&mut reader, &mut maps).is_err() {
            return false;
        }
        addr.checked_add(len).is_some_and(|end| covered_writable(&maps, addr, end))
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

/// Whether `[start, end)` is covered by contiguous writable mappings of a `maps` text.
fn covered_writable(maps: &str, start: u64, end: u64) -> bool {
    let mut at = start;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { continue };
        let Some((lo, hi)) = range.split_once('-') else { continue };
        let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16)) else {
            continue;
        };
        if hi <= at {
            continue;
        }
        if lo > at || perms.as_bytes().get(1) != Some(&b'w') {
            return false;
        }
        at = hi;
        if at >= end {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_writable_contiguous_mappings_take_an_answer() {
        let maps = "1000-2000 r-xp 0 0:0 0 /bin/x\n2000-3000 rw-p 0 0:0 0\n\
                    3000-4000 rw-p 0 0:0 0\n5000-6000 rw-p 0 0:0 0\n";
        assert!(covered_writable(maps, 0x2000, 0x2070));
        assert!(covered_writable(maps, 0x2ff0, 0x3060), "across two mappings");
        assert!(!covered_writable(maps, 0x1ff0, 0x2060), "starts read-only");
        assert!(!covered_writable(maps, 0x3ff0, 0x4060), "runs into a hole");
        assert!(!covered_writable(maps, 0x8000, 0x8070), "unmapped");
        assert!(!covered_writable(maps, 0, 0x70), "NULL");
        if nix::unistd::geteuid().is_root() {
            let mut local = vec![0_u8; 112];
            let addr = local.as_mut_ptr() as u64;
            let me =
                ProcessMemory::open(std::process::id().try_into().expect("pid")).expect("open");
            assert!(me.is_writable(addr, 112));
            let code = covered_writable as fn(&str, u64, u64) -> bool as usize as u64;
            assert!(!me.is_writable(code, 16), "text is not writable");
            assert!(!me.is_writable(0, 112));
            local[0] = 1;
        }
    }

    #[test]
    fn an_inbox_answers_questions_and_takes_listeners() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("101.sysinfo");
        let inbox = ListenerInbox::bind(&path).expect("bind");
        let asker = {
            let path = path.clone();
            std::thread::spawn(move || ask(&path, b"loadavg", Duration::from_secs(5)))
        };
        match inbox.accept_message().expect("accept") {
            Some(InboxMessage::Question(q)) => {
                assert_eq!(q.text(), b"loadavg");
                q.answer(b"0.25 0.10 0.05");
            }
            other => panic!("expected a question, got {other:?}"),
        }
        assert_eq!(asker.join().expect("join").expect("answer"), b"0.25 0.10 0.05");
        let (_mine, sent) = std::os::unix::net::UnixStream::pair().expect("pair");
        send_listener(&path, sent.as_fd()).expect("send");
        assert!(matches!(inbox.accept_message().expect("accept"), Some(InboxMessage::Listener(_))));
        drop(inbox);
        assert!(ask(&path, b"loadavg", Duration::from_millis(200)).is_err(), "no server");
    }

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
