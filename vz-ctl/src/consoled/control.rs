//! How a VE gets to the console server: its control socket `<VZ_RUN_DIR>/consoled.sock`
//! (root's, 0600), the tree's lock `<VZ_RUN_DIR>/consoled.lock` that orders starts against a
//! server's exit, and the one request, `add CTID PID` with the init's pidfd and the
//! console's master as `SCM_RIGHTS`, answered `ok` or `error <why>`.
//!
//! A start ([`register`]) takes the lock, connects, starts the server if nobody answers,
//! sends the request and waits for the answer, then lets the lock go. A server with no VE
//! left exits only when it gets the lock without waiting, after removing its socket: so a
//! start either reaches a server that will serve its VE, or finds no server and starts one.
//! A start may look before it makes the VE's init ([`begin`]): if no server's socket is
//! there, it starts a server then and keeps the lock until it registers, so the server's
//! start overlaps the namespace build instead of following it.

use std::fs::File;
use std::io::{BufRead, BufReader, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::epoll::{Epoll, EpollFlags};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

use super::ve::{inode, kind, unwatch, watch};
use crate::config::GlobalConfig;
use crate::ctid::Ctid;
use crate::error::{CtlError, IoContext, Result};
use crate::ve::Ve;

/// The hidden vzctl command that runs the server.
pub const SERVER_COMMAND: &str = "__consoled";

/// How long a start waits for the server's answer (it binds two sockets and creates a file).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the server waits for the request of a connection (a start sends it at once).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How many connections may wait for their request at once (more are closed).
const MAX_PENDING: usize = 16;

/// The longest request.
const REQUEST_MAX: usize = 128;

/// The tree's console server socket.
pub fn socket_path(global: &GlobalConfig) -> PathBuf {
    global.run_dir().join("consoled.sock")
}

/// The lock that orders registrations against the server's exit.
pub fn lock_path(global: &GlobalConfig) -> PathBuf {
    global.run_dir().join("consoled.lock")
}

fn lock(global: &GlobalConfig, arg: FlockArg) -> Result<Option<Flock<File>>> {
    let path = lock_path(global);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .op("open", &path)?;
    match Flock::lock(file, arg) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(std::io::Error::from(e)).op("flock", &path),
    }
}

/// A console server being started by a start that found none ([`begin`]), before its VE's
/// init exists; [`register`] waits for it. It holds the tree's lock until then, so the new
/// server cannot exit before it serves the VE (dropped unused, the lock goes and the idle
/// server exits by itself).
#[derive(Debug)]
pub struct Starting {
    lock: Flock<File>,
    child: Child,
}

/// Starts the tree's console server now if there is none, without waiting for it: the
/// caller makes its VE's init meanwhile and hands the result to [`register`]. `None` when
/// the server's socket is there ([`register`] then connects, and starts a server if that
/// socket was a dead server's). Under the lock a missing socket means no server: a server
/// removes its socket only on its way out, holding the lock until it has exited.
///
/// # Errors
/// [`CtlError::Start`] when the lock cannot be had or the server cannot be started.
pub fn begin(global: &GlobalConfig) -> Result<Option<Starting>> {
    let run = global.run_dir();
    std::fs::create_dir_all(&run).op("create", &run)?;
    let Some(lock) = lock(global, FlockArg::LockExclusive)? else { return Ok(None) };
    if std::fs::symlink_metadata(socket_path(global)).is_ok() {
        return Ok(None);
    }
    Ok(Some(Starting { lock, child: spawn_server()? }))
}

/// Hands the VE `ve`, whose init is `pid`, and its console's `master` to the tree's console
/// server, starting the server if none runs (or finishing the start [`begin`] made);
/// returns once the server serves the VE.
///
/// # Errors
/// [`CtlError::Start`] when the init is gone, the server cannot be started or refuses.
pub fn register(
    ve: &Ve,
    pid: i32,
    master: Option<OwnedFd>,
    starting: Option<Starting>,
) -> Result<()> {
    let fail = |what: String| CtlError::Start(what.into());
    let run = ve.global.run_dir();
    std::fs::create_dir_all(&run).op("create", &run)?;
    let pidfd =
        crate::sys::pidfd_open(pid).map_err(|e| fail(format!("pidfd of the init {pid}: {e}")))?;
    let socket = socket_path(&ve.global);
    let (_lock, mut conn) = match starting {
        Some(Starting { lock, child }) => {
            wait_ready(child)?;
            let conn = UnixStream::connect(&socket).op("connect to the console server", &socket)?;
            (Some(lock), conn)
        }
        None => {
            let lock = lock(&ve.global, FlockArg::LockExclusive)?;
            let conn = match UnixStream::connect(&socket) {
                Ok(conn) => conn,
                Err(_) => {
                    wait_ready(spawn_server()?)?;
                    UnixStream::connect(&socket).op("connect to the console server", &socket)?
                }
            };
            (lock, conn)
        }
    };
    let request = format!("add {} {pid}", ve.ctid);
    let mut fds = vec![pidfd.as_raw_fd()];
    fds.extend(master.as_ref().map(AsRawFd::as_raw_fd));
    sendmsg::<()>(
        conn.as_raw_fd(),
        &[IoSlice::new(request.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| fail(format!("hand the console to the console server: {e}")))?;
    drop(master);
    conn.set_read_timeout(Some(ANSWER_TIMEOUT)).op("set a timeout on", &socket)?;
    let mut answer = String::new();
    let _ = (&mut conn).take(512).read_to_string(&mut answer);
    match answer.trim() {
        "ok" => Ok(()),
        "" => Err(fail("the console server did not answer".to_owned())),
        other => Err(fail(format!(
            "the console server refused the container: {}",
            other.strip_prefix("error ").unwrap_or(other)
        ))),
    }
}

/// Starts `vzctl __consoled`, its stdout a pipe on which it says when it is ready.
fn spawn_server() -> Result<Child> {
    let fail = |what: String| CtlError::Start(what.into());
    let exe = std::env::current_exe().map_err(|e| fail(format!("find vzctl: {e}")))?;
    Command::new(exe)
        .arg(SERVER_COMMAND)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("start the console server: {e}")))
}

/// Waits until the started server says it is ready (its socket bound); one that does not is
/// killed.
fn wait_ready(mut child: Child) -> Result<()> {
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if line.trim() != "ready" {
        let _ = child.kill();
        let _ = child.wait();
        let why = if line.is_empty() { "it exited (see the log)" } else { line.trim() };
        return Err(CtlError::Start(format!("the console server did not start: {why}").into()));
    }
    Ok(())
}

/// The server's side: its socket and the connections whose request has yet to arrive.
pub(super) struct Control {
    global: GlobalConfig,
    listener: UnixListener,
    path: PathBuf,
    bound: Option<u64>,
    pending: Vec<(UnixStream, Instant)>,
}

/// A registration the server received.
pub(super) struct Request {
    /// Where the answer goes.
    pub(super) reply: Reply,
    /// The VE.
    pub(super) ctid: Ctid,
    /// Its init's pid.
    pub(super) pid: i32,
    /// Its init's pidfd.
    pub(super) pidfd: OwnedFd,
    /// Its console's master, if it has a console.
    pub(super) master: Option<OwnedFd>,
}

/// The connection of a [`Request`], for its answer.
pub(super) struct Reply {
    conn: UnixStream,
}

impl Reply {
    /// Sends `answer` to the start that asked; one that left is not an error.
    pub(super) fn answer(mut self, answer: &str) {
        if let Err(e) = self.conn.write_all(answer.as_bytes()) {
            tracing::debug!(error = %e, "console server: the start left");
        }
    }
}

impl Control {
    /// Binds the tree's socket (a stale one of a dead server is replaced: only a start
    /// holding the lock, which found no server answering, starts a server).
    pub(super) fn bind(global: &GlobalConfig) -> Result<Control> {
        let run = global.run_dir();
        std::fs::create_dir_all(&run).op("create", &run)?;
        let path = socket_path(global);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).op("remove", &path)?,
            _ => {}
        }
        let listener = UnixListener::bind(&path).op("bind", &path)?;
        listener.set_nonblocking(true).op("set non-blocking", &path)?;
        let bound = inode(&path);
        Ok(Control { global: global.clone(), listener, path, bound, pending: Vec::new() })
    }

    /// Whether no connection waits for its request.
    pub(super) fn idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// With no VE left: whether the server may exit now, i.e. no start holds the lock. Its
    /// socket is then removed (if still its own) and the lock kept until the process ends.
    pub(super) fn try_exit(&mut self) -> bool {
        match lock(&self.global, FlockArg::LockExclusiveNonblock) {
            Ok(Some(lock)) => {
                if inode(&self.path) == self.bound {
                    let _ = std::fs::remove_file(&self.path);
                }
                // Held until the process exits, after the socket is gone.
                std::mem::forget(lock);
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "console server: the lock");
                false
            }
        }
    }

    /// Adds its socket to `epoll`.
    pub(super) fn watch(&self, epoll: &Epoll) {
        watch(epoll, self.listener.as_fd(), 0, kind::CONTROL, EpollFlags::EPOLLIN);
    }

    /// How long until the oldest connection's request is overdue (it is then dropped).
    pub(super) fn next_wake(&self) -> Duration {
        self.pending
            .iter()
            .map(|(_, since)| (*since + REQUEST_TIMEOUT).saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(Duration::MAX)
    }

    /// Serves the server's own events (`events`: kind, fd, flags): takes new connections
    /// (root's only), reads the requests that arrived; drops connections that sent nothing
    /// in time.
    pub(super) fn handle(
        &mut self,
        events: &[(u8, RawFd, EpollFlags)],
        epoll: &Epoll,
    ) -> Vec<Request> {
        let mut requests = Vec::new();
        for (_, fd, _) in events.iter().filter(|(k, _, _)| *k == kind::REQUEST) {
            let Some(index) = self.pending.iter().position(|(c, _)| c.as_raw_fd() == *fd) else {
                continue;
            };
            let (conn, _) = self.pending.swap_remove(index);
            unwatch(epoll, conn.as_fd());
            match read_request(conn) {
                Ok(request) => requests.push(request),
                Err(why) => tracing::warn!("console server: a bad request: {why}"),
            }
        }
        let now = Instant::now();
        self.pending.retain(|(conn, since)| {
            let keep = now.duration_since(*since) <= REQUEST_TIMEOUT;
            if !keep {
                unwatch(epoll, conn.as_fd());
            }
            keep
        });
        if events.iter().any(|(k, _, _)| *k == kind::CONTROL) {
            self.accept(epoll);
        }
        requests
    }

    fn accept(&mut self, epoll: &Epoll) {
        loop {
            match self.listener.accept() {
                Ok((conn, _)) => {
                    let root = nix::sys::socket::getsockopt(
                        &conn,
                        nix::sys::socket::sockopt::PeerCredentials,
                    )
                    .is_ok_and(|c| c.uid() == 0);
                    if root
                        && self.pending.len() < MAX_PENDING
                        && conn.set_nonblocking(true).is_ok()
                    {
                        watch(epoll, conn.as_fd(), 0, kind::REQUEST, EpollFlags::EPOLLIN);
                        self.pending.push((conn, Instant::now()));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

/// Reads and parses the request of `conn`: `add CTID PID`, the pidfd and maybe a master.
fn read_request(conn: UnixStream) -> std::result::Result<Request, String> {
    let mut buf = [0_u8; REQUEST_MAX];
    let (len, fds) = crate::sys::recv_fds(conn.as_fd(), &mut buf, MsgFlags::MSG_DONTWAIT)
        .map_err(|e| format!("receive: {e}"))?;
    let text = std::str::from_utf8(&buf[..len]).map_err(|_| "not text".to_owned())?;
    let mut words = text.split_whitespace();
    let (Some("add"), Some(ctid), Some(pid), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(format!("{text:?}"));
    };
    let ctid: Ctid = ctid.parse().map_err(|_| format!("a bad CTID {ctid:?}"))?;
    let pid: i32 = pid.parse().map_err(|_| format!("a bad pid {pid:?}"))?;
    let mut fds = fds.into_iter();
    let pidfd = fds.next().ok_or("no pidfd")?;
    let master = fds.next();
    Ok(Request { reply: Reply { conn }, ctid, pid, pidfd, master })
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").field("path", &self.path).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `text` with `fds` on one end of a socket pair; what the server reads of it.
    fn request(text: &str, fds: &[i32]) -> std::result::Result<Request, String> {
        let (client, server) = UnixStream::pair().expect("socketpair");
        let cmsgs: Vec<ControlMessage<'_>> =
            if fds.is_empty() { Vec::new() } else { vec![ControlMessage::ScmRights(fds)] };
        sendmsg::<()>(
            client.as_raw_fd(),
            &[IoSlice::new(text.as_bytes())],
            &cmsgs,
            MsgFlags::empty(),
            None,
        )
        .expect("sendmsg");
        read_request(server)
    }

    #[test]
    fn a_request_names_the_ve_and_carries_the_pidfd_and_the_master() {
        let me =
            crate::sys::pidfd_open(i32::try_from(std::process::id()).expect("pid")).expect("pidfd");
        let file = tempfile::tempfile().expect("tempfile");
        let r = request("add 101 42", &[me.as_raw_fd(), file.as_raw_fd()]).expect("a request");
        assert_eq!((r.ctid.get(), r.pid, r.master.is_some()), (101, 42, true));
        let r = request("add 101 42", &[me.as_raw_fd()]).expect("without a console");
        assert!(r.master.is_none());
        // Bad requests are refused, not served (and the server goes on).
        for bad in ["add 101", "add 101 42 x", "del 101 42", "add x 42", "add 101 -", ""] {
            assert!(request(bad, &[me.as_raw_fd()]).is_err(), "{bad:?}");
        }
        assert!(request("add 101 42", &[]).is_err(), "no pidfd");
        assert!(request("\u{fffd}\u{0}", &[me.as_raw_fd()]).is_err());
    }
}
