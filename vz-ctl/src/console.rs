//! A VE's console: the host side of the pty its init opened in the VE's own devpts (vz-ns,
//! `InitSpec::console`; /dev/console in the VE links to it and it is the init's stdio).
//!
//! `vzctl start` hands the pty's master to a small server of its own per running VE,
//! `vzctl __console CTID INITPID` (the master on its stdin), which
//! * reads the console all the time, so writes in the VE never block on it, and keeps the
//!   last [`LOG_KEEP`] bytes in `<VZ_RUN_DIR>/<CTID>.console.log` (root's, 0600; at most twice
//!   that on disk, trimmed by writing a new file and renaming it over the old one);
//! * serves `vzctl console CTID` clients on the socket `<VZ_RUN_DIR>/<CTID>.console` (root's,
//!   0600): what the console prints goes to every client, what a client sends goes to the
//!   console;
//! * answers the `sysinfo(2)` calls of the VE's processes and keeps the VE's load average
//!   ([`crate::sysinfo::Service`], on `<VZ_RUN_DIR>/<CTID>.sysinfo`), sampled every 5 s on
//!   the wake-ups it has anyway;
//! * ends when the VE's init is gone (its process ended), after reading what was left.
//!
//! What the VE makes it do (read its console, answer its sysinfo calls) is held to a CPU
//! budget ([`crate::budget`]: 5% of a CPU, bursts of 200 ms): beyond it the server stops
//! reading the console and the VE's listeners until the budget is back, so the VE's console
//! writes block on the full pty as on a slow serial line and its sysinfo callers wait in the
//! kernel. What the host asks (clients' input, load average questions) is served at once.
//!
//! A start whose init dies prints the log's last lines ([`ConsoleServer::last_lines`]).
//! A VE whose server is gone runs on: its console's slave then fails writes with EIO.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};

use crate::error::{CtlError, IoContext, Result};
use crate::ve::Ve;

/// The hidden vzctl command that runs the server.
pub const SERVER_COMMAND: &str = "__console";

/// How much of the console's latest output the log keeps (the file holds at most twice as
/// much, the server's memory as much again).
pub const LOG_KEEP: usize = 64 * 1024;

/// How often the server looks whether the init still runs while its console is quiet or
/// hung up (no slave open).
const LIVENESS_POLL: Duration = Duration::from_millis(250);

/// How much a slow client may fall behind before it is dropped.
const CLIENT_BACKLOG: usize = 256 * 1024;

/// The escape character of `vzctl console`: `Esc .` at the start of a line detaches.
const ESC: u8 = 0x1b;

/// The server's socket for the VE.
pub fn socket_path(ve: &Ve) -> PathBuf {
    ve.global.run_dir().join(format!("{}.console", ve.ctid))
}

/// The console log of the VE.
pub fn log_path(ve: &Ve) -> PathBuf {
    ve.global.run_dir().join(format!("{}.console.log", ve.ctid))
}

/// A started console server, as `vzctl start` holds it.
#[derive(Debug)]
pub struct ConsoleServer {
    child: Child,
    log: PathBuf,
}

impl ConsoleServer {
    /// Starts the server of `ve` on the console pty `master` of the init `init_pid`; waits
    /// until its socket is bound.
    ///
    /// # Errors
    /// [`CtlError::Start`] when it does not come up.
    pub fn start(ve: &Ve, master: OwnedFd, init_pid: i32) -> Result<ConsoleServer> {
        let fail = |what: String| CtlError::Start(what.into());
        let exe = std::env::current_exe().map_err(|e| fail(format!("find vzctl: {e}")))?;
        let mut child = Command::new(exe)
            .arg(SERVER_COMMAND)
            .arg(ve.ctid.to_string())
            .arg(init_pid.to_string())
            .current_dir("/")
            .stdin(Stdio::from(master))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("start the console server: {e}")))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            let why = if line.is_empty() { "it exited (see the log)" } else { line.trim() };
            return Err(fail(format!("the console server did not start: {why}")));
        }
        Ok(ConsoleServer { child, log: log_path(ve) })
    }

    /// The last `count` lines the console printed, once the server has read all of it (it
    /// ends when the init is gone; waited for up to `wait`).
    pub fn last_lines(mut self, count: usize, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                _ => break,
            }
        }
        let text = std::fs::read(&self.log).unwrap_or_default();
        tail_lines(&text, count)
    }
}

/// The last `count` non-empty lines of `text`, printable: carriage returns and other
/// control characters (escape sequences of the VE) are dropped.
fn tail_lines(text: &[u8], count: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(text);
    let mut lines: Vec<String> = text
        .split('\n')
        .map(|l| l.chars().filter(|c| !c.is_control() || *c == '\t').collect::<String>())
        .filter(|l| !l.trim().is_empty())
        .collect();
    let skip = lines.len().saturating_sub(count);
    lines.drain(..skip);
    lines
}

/// The server's body (`vzctl __console CTID INITPID`, the console's master on stdin):
/// binds the socket, says "ready" on stdout, then serves until the init `init_pid` is gone.
///
/// # Errors
/// When the log or the socket cannot be made, or polling fails.
pub fn serve(ve: &Ve, init_pid: i32) -> Result<()> {
    let _ = nix::unistd::setsid();
    // Socket and log are root's alone.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let init = InitWatch::new(init_pid)
        .ok_or_else(|| CtlError::Start(format!("no init {init_pid} to serve").into()))?;
    let run = ve.global.run_dir();
    std::fs::create_dir_all(&run).op("create", &run)?;
    let mut log = Log::create(log_path(ve))?;
    let socket = socket_path(ve);
    match std::fs::remove_file(&socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).op("remove", &socket)?,
        _ => {}
    }
    let listener = UnixListener::bind(&socket).op("bind", &socket)?;
    listener.set_nonblocking(true).op("set non-blocking", &socket)?;
    let bound = inode(&socket);
    // Without it the console still works; the VE's sysinfo is then the kernel's.
    let sysinfo = crate::sysinfo::Service::bind(ve)
        .inspect_err(|e| tracing::warn!(error = %e, "console server: no sysinfo service"))
        .ok();
    let sysinfo_bound = sysinfo.as_ref().and_then(|s| inode(s.path()));
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready").and_then(|()| out.flush());
    }
    let master = std::io::stdin().as_fd().try_clone_to_owned().op("take", Path::new("stdin"))?;
    let budget = crate::budget::CpuBudget::helper();
    let mut server = Server { master, listener, clients: Vec::new(), init, sysinfo, budget };
    let result = server.run(&mut log);
    // A newer server of a restarted VE may have taken the path: remove only our socket.
    if inode(&socket) == bound {
        let _ = std::fs::remove_file(&socket);
    }
    if let Some(sysinfo) = &server.sysinfo
        && inode(sysinfo.path()) == sysinfo_bound
    {
        let _ = std::fs::remove_file(sysinfo.path());
    }
    result
}

fn inode(path: &Path) -> Option<u64> {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).ok()?).into()
}

/// The init's process, known by pid and start time (a reused pid is another process).
struct InitWatch {
    pid: i32,
    start: u64,
}

impl InitWatch {
    fn new(pid: i32) -> Option<InitWatch> {
        let stat = procfs::process::Process::new(pid).and_then(|p| p.stat()).ok()?;
        Some(InitWatch { pid, start: stat.starttime })
    }

    fn alive(&self) -> bool {
        match procfs::process::Process::new(self.pid).and_then(|p| p.stat()) {
            Ok(s) => s.starttime == self.start && !matches!(s.state, 'Z' | 'X'),
            // Another failure to read it is not taken for its end.
            Err(procfs::ProcError::NotFound(_)) => false,
            Err(_) => Path::new(&format!("/proc/{}", self.pid)).exists(),
        }
    }
}

/// The bounded log file and its tail in memory.
struct Log {
    path: PathBuf,
    file: std::fs::File,
    tail: Vec<u8>,
    written: usize,
}

impl Log {
    /// A new, empty log at `path`: a new file renamed over an old one, which the server of
    /// the VE's previous run may still be finishing.
    fn create(path: PathBuf) -> Result<Log> {
        let temp = path.with_extension("log.new");
        let file = open_new(&temp)?;
        std::fs::rename(&temp, &path).op("rename", &temp)?;
        Ok(Log { path, file, tail: Vec::new(), written: 0 })
    }

    fn append(&mut self, data: &[u8]) {
        self.tail.extend_from_slice(data);
        if self.tail.len() > 2 * LOG_KEEP {
            let cut = self.tail.len() - LOG_KEEP;
            self.tail.drain(..cut);
        }
        self.written += data.len();
        if self.written > 2 * LOG_KEEP {
            if let Err(e) = self.rewrite() {
                tracing::warn!(error = %e, "console log: trimming");
            }
        } else if let Err(e) = self.file.write_all(data) {
            tracing::warn!(error = %e, "console log: write");
        }
    }

    /// Replaces the file with the last [`LOG_KEEP`] bytes: a new file renamed over it.
    fn rewrite(&mut self) -> Result<()> {
        let keep = &self.tail[self.tail.len().saturating_sub(LOG_KEEP)..];
        let temp = self.path.with_extension("log.new");
        let mut file = open_new(&temp)?;
        file.write_all(keep).op("write", &temp)?;
        std::fs::rename(&temp, &self.path).op("rename", &temp)?;
        self.file = file;
        self.written = keep.len();
        Ok(())
    }
}

/// Creates (or empties) `path` for writing, 0600, never through a link.
fn open_new(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .op("create", path)
}

/// A connected `vzctl console` and what it has yet to be sent.
struct Client {
    stream: UnixStream,
    backlog: Vec<u8>,
}

impl Client {
    /// Sends what it can without blocking; false when the client is gone or too far behind.
    fn send(&mut self, data: &[u8]) -> bool {
        self.backlog.extend_from_slice(data);
        self.flush() && self.backlog.len() <= CLIENT_BACKLOG
    }

    fn flush(&mut self) -> bool {
        while !self.backlog.is_empty() {
            match self.stream.write(&self.backlog) {
                Ok(0) => return false,
                Ok(n) => drop(self.backlog.drain(..n)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

struct Server {
    master: OwnedFd,
    listener: UnixListener,
    clients: Vec<Client>,
    init: InitWatch,
    sysinfo: Option<crate::sysinfo::Service>,
    /// What the VE may make the server spend: its console output and sysinfo calls are read
    /// only while the budget allows.
    budget: crate::budget::CpuBudget,
}

impl Server {
    fn run(&mut self, log: &mut Log) -> Result<()> {
        let mut buf = vec![0_u8; 16 * 1024];
        // While no slave is open (POLLHUP, which poll reports whatever it is asked), the
        // master is left out of the poll for one LIVENESS_POLL.
        let mut hung_up = false;
        let mut checked = Instant::now();
        loop {
            // Looked at once per LIVENESS_POLL (not per read of a busy console), and at once
            // when the last slave closed (the init may be gone).
            if (hung_up || checked.elapsed() >= LIVENESS_POLL) && {
                checked = Instant::now();
                !self.init.alive()
            } {
                self.drain(log, &mut buf);
                tracing::info!(init = self.init.pid, "console server: the init is gone");
                return Ok(());
            }
            if let Some(sysinfo) = &mut self.sysinfo {
                sysinfo.tick();
            }
            // The VE's requests (its output, its sysinfo calls) wait while the budget is spent.
            let serve_ve = self.budget.check();
            let mut fds = vec![PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
            // The sysinfo service's fds come next, then the clients, then the console.
            let sysinfo_fds =
                self.sysinfo.as_ref().map(|s| s.poll_fds(serve_ve)).unwrap_or_default();
            let first_client = 1 + sysinfo_fds.len();
            fds.extend(sysinfo_fds);
            for client in &self.clients {
                let mut events = PollFlags::POLLIN;
                if !client.backlog.is_empty() {
                    events |= PollFlags::POLLOUT;
                }
                fds.push(PollFd::new(client.stream.as_fd(), events));
            }
            let read_master = !hung_up && serve_ve;
            if read_master {
                fds.push(PollFd::new(self.master.as_fd(), PollFlags::POLLIN));
            }
            let wait = self.budget.wait().map_or(LIVENESS_POLL, |w| w.min(LIVENESS_POLL));
            let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(CtlError::Start(format!("console server: poll: {e}").into())),
            }
            let mut revents: Vec<PollFlags> =
                fds.iter().map(|f| f.revents().unwrap_or(PollFlags::empty())).collect();
            drop(fds);
            let master = if read_master {
                revents.pop().unwrap_or(PollFlags::empty())
            } else {
                PollFlags::empty()
            };
            // New clients first (appended: the others keep the indices of the poll), so one
            // that connected before this output was read gets it; then the clients' input
            // while their indices are still those of the poll; then the console (which drops
            // clients that cannot keep up).
            if revents[0].contains(PollFlags::POLLIN) {
                self.accept();
            }
            if let Some(sysinfo) = &mut self.sysinfo {
                sysinfo.handle(&revents[1..first_client]);
            }
            self.serve_clients(&revents[first_client..], &mut buf);
            hung_up = false;
            if master.contains(PollFlags::POLLIN) {
                self.read_console(log, &mut buf);
            } else if master.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                hung_up = true;
            }
        }
    }

    /// Reads what the console printed; logs it and sends it to every client.
    fn read_console(&mut self, log: &mut Log, buf: &mut [u8]) -> usize {
        match nix::unistd::read(&self.master, buf) {
            Ok(n) if n > 0 => {
                let data = &buf[..n];
                log.append(data);
                self.clients.retain_mut(|c| c.send(data));
                n
            }
            _ => 0,
        }
    }

    /// Reads what is left on the console once the init is gone.
    fn drain(&mut self, log: &mut Log, buf: &mut [u8]) {
        while self.read_console(log, buf) > 0 {}
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        self.clients.push(Client { stream, backlog: Vec::new() });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Input of the clients to the console (dropped when the console does not take it: the
    /// VE is not reading); drops clients that left. `revents[i]` is client `i`'s; clients
    /// accepted after the poll come after them (and are not looked at).
    fn serve_clients(&mut self, revents: &[PollFlags], buf: &mut [u8]) {
        let mut index = revents.len();
        while index > 0 {
            index -= 1;
            let flags = revents[index];
            let client = &mut self.clients[index];
            let mut keep = true;
            if flags.contains(PollFlags::POLLOUT) {
                keep = client.flush();
            }
            if keep && flags.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
                keep = match client.stream.read(buf) {
                    Ok(0) => false,
                    Ok(n) => {
                        if let Err(e) = nix::unistd::write(&self.master, &buf[..n]) {
                            tracing::debug!(error = %e, "console input dropped");
                        }
                        true
                    }
                    Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                };
            } else if flags.contains(PollFlags::POLLERR) {
                keep = false;
            }
            if !keep {
                self.clients.swap_remove(index);
            }
        }
    }
}

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

    #[test]
    fn the_tail_keeps_the_last_printable_lines() {
        let text = b"one\r\ntwo\r\n\r\n\x1b[1mthree\x1b[0m\r\nfour";
        assert_eq!(tail_lines(text, 2), ["[1mthree[0m", "four"]);
        assert_eq!(tail_lines(text, 9), ["one", "two", "[1mthree[0m", "four"]);
        assert!(tail_lines(b"", 3).is_empty());
    }

    #[test]
    fn the_log_stays_bounded_and_keeps_the_latest_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("1.console.log");
        let mut log = Log::create(path.clone()).expect("log");
        for n in 0..20_000 {
            log.append(format!("line {n}\n").as_bytes());
        }
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.len() <= 2 * LOG_KEEP, "{}", text.len());
        assert!(text.len() >= LOG_KEEP / 2, "{}", text.len());
        assert!(text.ends_with("line 19999\n"));
        assert!(log.tail.len() <= 2 * LOG_KEEP);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("stat").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
