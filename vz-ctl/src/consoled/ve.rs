//! One running VE inside the console server: its init's pidfd, its console's master, the
//! log, the attached `vzctl console` clients, its sysinfo [`Service`] and its CPU budget.
//!
//! Everything the VE can drive (its console output, its sysinfo calls, its load samples) is
//! done only while its budget allows, at most 64 KiB of its console and 8 answers per
//! listener per round of the server's loop, and timed: the CPU time is charged to the VE's
//! bucket as it goes, so a batch stops once the bucket is empty. Everything is non-blocking, and what the VE can make grow is bounded
//! (the log file, each client's backlog, the number of clients).

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags};

use crate::budget::{CpuBudget, thread_cpu};
use crate::console::log::Log;
use crate::console::{log_path, socket_path};
use crate::ctid::Ctid;
use crate::error::{IoContext, Result};
use crate::sysinfo::Service;
use crate::ve::Ve;

/// How long a console with no slave open (POLLHUP, which poll reports whatever it is asked)
/// is left out of the poll before it is looked at again.
const HUNG_UP_PAUSE: Duration = Duration::from_millis(250);

/// How much a slow client may fall behind before it is dropped.
const CLIENT_BACKLOG: usize = 256 * 1024;

/// How many `vzctl console` clients a VE's console takes at once (more are refused).
const MAX_CLIENTS: usize = 16;

/// How much of a busy console one round of the server reads at most.
const CONSOLE_ROUND: usize = 64 * 1024;

/// How much of a dead VE's console is read at its end (what its last processes wrote).
const DRAIN_MAX: usize = 1 << 20;

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

/// Where a VE's fds are in one poll of the server (see [`Served::poll_fds`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    /// How many fds the sysinfo service added (its inbox and listeners).
    sysinfo: usize,
    /// How many clients were polled.
    clients: usize,
    /// Whether the console's master was.
    master: bool,
}

impl Layout {
    /// How many fds of the poll are the VE's.
    pub(super) fn len(&self) -> usize {
        2 + self.sysinfo + self.clients + usize::from(self.master)
    }
}

/// A running VE as the server holds it.
pub(super) struct Served {
    ctid: Ctid,
    pid: i32,
    pidfd: OwnedFd,
    master: Option<OwnedFd>,
    listener: UnixListener,
    socket: PathBuf,
    bound: Option<u64>,
    clients: Vec<Client>,
    log: Log,
    sysinfo: Option<Service>,
    sysinfo_bound: Option<u64>,
    budget: CpuBudget,
    hung_until: Option<Instant>,
    /// The init has ended: the server finishes the VE.
    ended: bool,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("ctid", &self.ctid.get())
            .field("pid", &self.pid)
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

impl Served {
    /// Takes over the VE `ve` whose init `pid` is `pidfd`, with its console's `master`:
    /// creates the log, binds the console's socket and the sysinfo service's (its load
    /// samples on the server's 5-second `grid`).
    ///
    /// # Errors
    /// When the log or the console's socket cannot be made (without the sysinfo service the
    /// VE's sysinfo is the kernel's: logged, not an error).
    pub(super) fn new(
        ve: &Ve,
        pid: i32,
        pidfd: OwnedFd,
        master: Option<OwnedFd>,
        grid: Instant,
    ) -> Result<Served> {
        if let Some(master) = &master {
            // The server must never block on a VE's console (one that does not read its
            // input, or a full pty): the fd is its alone now.
            let flags = fcntl(master, FcntlArg::F_GETFL)
                .map_err(std::io::Error::from)
                .op("fcntl", Path::new("console"))?;
            let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
            fcntl(master, FcntlArg::F_SETFL(flags))
                .map_err(std::io::Error::from)
                .op("fcntl", Path::new("console"))?;
        }
        let log = Log::create(log_path(ve))?;
        let socket = socket_path(ve);
        match std::fs::remove_file(&socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).op("remove", &socket)?,
            _ => {}
        }
        let listener = UnixListener::bind(&socket).op("bind", &socket)?;
        listener.set_nonblocking(true).op("set non-blocking", &socket)?;
        let bound = inode(&socket);
        let mut sysinfo = Service::bind(ve)
            .inspect_err(|e| tracing::warn!(ctid = ve.ctid.get(), error = %e, "no sysinfo service"))
            .ok();
        if let Some(service) = &mut sysinfo {
            service.align(grid);
        }
        let sysinfo_bound = sysinfo.as_ref().and_then(|s| inode(s.path()));
        Ok(Served {
            ctid: ve.ctid,
            pid,
            pidfd,
            master,
            listener,
            socket,
            bound,
            clients: Vec::new(),
            log,
            sysinfo,
            sysinfo_bound,
            budget: CpuBudget::charged(),
            hung_until: None,
            ended: false,
        })
    }

    /// The VE's CTID.
    pub(super) fn ctid(&self) -> Ctid {
        self.ctid
    }

    /// Whether its init has ended (the server then calls [`Served::finish`]).
    pub(super) fn ended(&self) -> bool {
        self.ended
    }

    /// Ends the VE's service at once (after a panic while serving it): [`Served::finish`]
    /// then closes its fds without reading its console.
    pub(super) fn drop_service(&mut self) {
        self.ended = true;
        self.master = None;
    }

    /// Charges `spent` of the server's CPU time to the VE (its share of a round's poll).
    pub(super) fn charge(&mut self, spent: Duration) {
        self.budget.charge(spent);
    }

    /// What to poll for the VE, appended to `fds`: the init's pidfd, the console's socket,
    /// the sysinfo service's fds (its listeners only while the budget allows), the clients,
    /// and the console's master (while the budget allows and a slave is open).
    pub(super) fn poll_fds<'a>(&'a mut self, fds: &mut Vec<PollFd<'a>>, now: Instant) -> Layout {
        let serve_ve = self.budget.check();
        if self.hung_until.is_some_and(|t| now >= t) {
            self.hung_until = None;
        }
        fds.push(PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN));
        fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
        let sysinfo = self.sysinfo.as_ref().map(|s| s.poll_fds(serve_ve)).unwrap_or_default();
        let layout_sysinfo = sysinfo.len();
        fds.extend(sysinfo);
        for client in &self.clients {
            let mut events = PollFlags::POLLIN;
            if !client.backlog.is_empty() {
                events |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(client.stream.as_fd(), events));
        }
        let master = match &self.master {
            Some(m) if serve_ve && self.hung_until.is_none() => {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
                true
            }
            _ => false,
        };
        Layout { sysinfo: layout_sysinfo, clients: self.clients.len(), master }
    }

    /// How long until the VE needs the server without an fd waking it: its budget back,
    /// its console looked at again, its next load sample.
    pub(super) fn next_wake(&self, now: Instant) -> Duration {
        let mut wait = self.sysinfo.as_ref().map_or(Duration::MAX, Service::next_sample_in);
        if let Some(budget) = self.budget.wait() {
            wait = wait.min(budget);
        }
        if let Some(t) = self.hung_until {
            wait = wait.min(t.saturating_duration_since(now));
        }
        wait
    }

    /// Whether the poll found nothing for the VE (`revents`: its part) and no load sample is
    /// due: then the round has nothing to do for it.
    pub(super) fn quiet(&self, revents: &[PollFlags]) -> bool {
        revents.iter().all(PollFlags::is_empty)
            && self.sysinfo.as_ref().is_none_or(|s| !s.next_sample_in().is_zero())
    }

    /// Serves what the poll found (`revents`: the VE's part, as [`Served::poll_fds`] laid it
    /// out), charging the VE's budget with the CPU time spent on its own requests (its
    /// console output, its calls, its load sample); returns that time.
    pub(super) fn handle(
        &mut self,
        revents: &[PollFlags],
        layout: Layout,
        buf: &mut [u8],
    ) -> Duration {
        let mut ve_work = Duration::ZERO;
        if revents[0].intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            self.ended = true;
            return ve_work;
        }
        let sysinfo = &revents[2..2 + layout.sysinfo];
        let clients = &revents[2 + layout.sysinfo..2 + layout.sysinfo + layout.clients];
        let master = if layout.master { revents[layout.len() - 1] } else { PollFlags::empty() };
        // New clients first (appended: the others keep the indices of the poll), so one that
        // connected before this output was read gets it; then the clients' input while their
        // indices are still those of the poll; then the console (which drops clients that
        // cannot keep up).
        if revents[1].contains(PollFlags::POLLIN) {
            self.accept();
        }
        if let Some(service) = &mut self.sysinfo {
            let calls = sysinfo.get(1..).unwrap_or_default();
            // The CPU clock is read only around work (a read costs about a microsecond, and
            // the round looks at every VE).
            if service.next_sample_in().is_zero() || calls.iter().any(|f| !f.is_empty()) {
                let started = thread_cpu();
                let budget = &mut self.budget;
                let mut last = started;
                // Charged as it goes: a listener's further calls wait once the budget is spent.
                let mut more = || {
                    let now = thread_cpu();
                    budget.charge(now.saturating_sub(last));
                    last = now;
                    budget.check()
                };
                service.tick();
                service.serve_calls(calls, &mut more);
                let now = thread_cpu();
                self.budget.charge(now.saturating_sub(last));
                ve_work += now.saturating_sub(started);
            }
            if sysinfo.first().is_some_and(|f| f.contains(PollFlags::POLLIN)) {
                service.take_inbox();
            }
        }
        self.serve_clients(clients, buf);
        if master.contains(PollFlags::POLLIN) {
            let started = thread_cpu();
            let mut last = started;
            // Up to CONSOLE_ROUND bytes a round while the budget allows: a busy console costs
            // fewer rounds of the whole server.
            let mut read = 0;
            while read < CONSOLE_ROUND {
                match self.read_console(buf) {
                    0 => break,
                    n => read += n,
                }
                let now = thread_cpu();
                self.budget.charge(now.saturating_sub(last));
                last = now;
                if !self.budget.check() {
                    break;
                }
            }
            ve_work += last.saturating_sub(started);
        } else if master.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            self.hung_until = Some(Instant::now() + HUNG_UP_PAUSE);
        }
        ve_work
    }

    /// Reads what the console printed (one read); logs it and sends it to every client.
    fn read_console(&mut self, buf: &mut [u8]) -> usize {
        let Some(master) = &self.master else { return 0 };
        match nix::unistd::read(master, buf) {
            Ok(n) if n > 0 => {
                let data = &buf[..n];
                self.log.append(data);
                self.clients.retain_mut(|c| c.send(data));
                n
            }
            _ => 0,
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.clients.len() >= MAX_CLIENTS {
                        tracing::warn!(ctid = self.ctid.get(), "console: too many clients");
                        continue;
                    }
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
        for index in (0..revents.len().min(self.clients.len())).rev() {
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
                        if let Some(master) = &self.master
                            && let Err(e) = nix::unistd::write(master, &buf[..n])
                        {
                            tracing::debug!(error = %e, "console input dropped");
                        }
                        true
                    }
                    Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                };
            } else if flags.intersects(PollFlags::POLLERR | PollFlags::POLLNVAL) {
                keep = false;
            }
            if !keep {
                self.clients.swap_remove(index);
            }
        }
    }

    /// Ends the VE's service once its init is gone (or the server drops it): reads what is
    /// left on the console (at most [`DRAIN_MAX`]), then closes every fd and removes its
    /// sockets (only its own: a newer run's may have taken the paths).
    pub(super) fn finish(mut self, buf: &mut [u8]) {
        let mut drained = 0;
        while drained < DRAIN_MAX {
            match self.read_console(buf) {
                0 => break,
                n => drained += n,
            }
        }
        tracing::info!(ctid = self.ctid.get(), init = self.pid, "console server: the VE ended");
        if inode(&self.socket) == self.bound {
            let _ = std::fs::remove_file(&self.socket);
        }
        if let Some(sysinfo) = &self.sysinfo
            && inode(sysinfo.path()) == self.sysinfo_bound
        {
            let _ = std::fs::remove_file(sysinfo.path());
        }
    }
}

/// The inode of the file at `path`, to tell one's own socket from a newer one.
pub(super) fn inode(path: &Path) -> Option<u64> {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).ok()?).into()
}
