//! One running VE inside the console server: its init's pidfd, its console's master, the
//! log, the attached `vzctl console` clients, its sysinfo [`Service`] and its CPU budget.
//!
//! Everything the VE can drive (its console output, its sysinfo calls, its load samples) is
//! done only while its budget allows, at most 64 KiB of its console and 8 answers per
//! listener per round of the server's loop, and timed: the CPU time is charged to the VE's
//! bucket as it goes, so a batch stops once the bucket is empty, and the VE's console and
//! listeners leave the server's epoll set until the bucket holds enough again. Everything is
//! non-blocking, and what the VE can make grow is bounded (the log file, each client's
//! backlog, the number of clients).
//!
//! Every fd is in the server's epoll set under a token ([`token`]: the VE's key, the kind of
//! fd, the fd) and leaves it before it is closed (another process may hold the same open
//! file, which would keep a closed fd's registration alive).

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};

use crate::budget::{CpuBudget, thread_cpu};
use crate::console::log::Log;
use crate::console::{log_path, socket_path};
use crate::ctid::Ctid;
use crate::error::{IoContext, Result};
use crate::sysinfo::Service;
use crate::ve::Ve;

/// How long a console with no slave open (EPOLLHUP, which epoll reports whatever it is
/// asked) is left out of the epoll set before it is looked at again.
const HUNG_UP_PAUSE: Duration = Duration::from_millis(250);

/// How much a slow client may fall behind before it is dropped.
const CLIENT_BACKLOG: usize = 256 * 1024;

/// How many `vzctl console` clients a VE's console takes at once (more are refused).
const MAX_CLIENTS: usize = 16;

/// How much of a busy console one round of the server reads at most.
const CONSOLE_ROUND: usize = 64 * 1024;

/// How much of a dead VE's console is read at its end (what its last processes wrote).
const DRAIN_MAX: usize = 1 << 20;

/// The kinds of fd in the server's epoll set.
pub(super) mod kind {
    /// A VE's init's pidfd.
    pub(crate) const PIDFD: u8 = 1;
    /// A VE's console socket (`vzctl console` connects).
    pub(crate) const SOCKET: u8 = 2;
    /// A VE's sysinfo inbox.
    pub(crate) const INBOX: u8 = 3;
    /// A VE's console master.
    pub(crate) const MASTER: u8 = 4;
    /// A `vzctl console` client.
    pub(crate) const CLIENT: u8 = 5;
    /// A seccomp listener of the VE's processes.
    pub(crate) const CALL: u8 = 6;
    /// The server's control socket.
    pub(crate) const CONTROL: u8 = 7;
    /// A connection to the control socket.
    pub(crate) const REQUEST: u8 = 8;
}

/// The epoll token of `fd` of kind `kind` of the VE `key` (0: the server's own).
pub(super) fn token(key: u32, kind: u8, fd: RawFd) -> u64 {
    (u64::from(key) << 32) | (u64::from(kind) << 24) | (u64::from(fd.unsigned_abs()) & 0xff_ffff)
}

/// What a token names: (key, kind, fd).
pub(super) fn untoken(token: u64) -> (u32, u8, RawFd) {
    let key = u32::try_from(token >> 32).unwrap_or(0);
    let kind = u8::try_from((token >> 24) & 0xff).unwrap_or(0);
    let fd = RawFd::try_from(token & 0xff_ffff).unwrap_or(-1);
    (key, kind, fd)
}

/// Adds `fd` to `epoll` for `events` under its token; a failure is logged (the fd is then
/// not served, which only its VE notices).
pub(super) fn watch(epoll: &Epoll, fd: BorrowedFd<'_>, key: u32, kind: u8, events: EpollFlags) {
    let event = EpollEvent::new(events, token(key, kind, fd.as_raw_fd()));
    if let Err(e) = epoll.add(fd, event) {
        tracing::warn!(error = %e, kind, "console server: epoll add");
    }
}

/// Removes `fd` from `epoll` (before it is closed).
pub(super) fn unwatch(epoll: &Epoll, fd: BorrowedFd<'_>) {
    if let Err(e) = epoll.delete(fd) {
        tracing::debug!(error = %e, "console server: epoll delete");
    }
}

/// A connected `vzctl console` and what it has yet to be sent.
struct Client {
    stream: UnixStream,
    backlog: Vec<u8>,
    /// Whether the epoll set waits for it to take more (its backlog is not empty).
    out: bool,
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

/// A running VE as the server holds it.
pub(super) struct Served {
    key: u32,
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
    /// Whether the VE's requests (its console, its listeners) are in the epoll set: not
    /// while its budget is spent.
    armed: bool,
    /// Whether the console's master is in the epoll set (armed, and a slave open).
    master_in: bool,
    hung_until: Option<Instant>,
    /// The init has ended: the server finishes the VE.
    ended: bool,
    /// Serving it panicked: it is finished without reading its console.
    broken: bool,
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
    /// samples on the server's 5-second `grid`), and adds its fds to `epoll` under `key`.
    ///
    /// # Errors
    /// When the log or the console's socket cannot be made (without the sysinfo service the
    /// VE's sysinfo is the kernel's: logged, not an error).
    pub(super) fn new(
        ve: &Ve,
        key: u32,
        (pid, pidfd): (i32, OwnedFd),
        master: Option<OwnedFd>,
        grid: Instant,
        epoll: &Epoll,
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
        let mut served = Served {
            key,
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
            armed: false,
            master_in: false,
            hung_until: None,
            ended: false,
            broken: false,
        };
        watch(epoll, served.pidfd.as_fd(), key, kind::PIDFD, EpollFlags::EPOLLIN);
        watch(epoll, served.listener.as_fd(), key, kind::SOCKET, EpollFlags::EPOLLIN);
        if let Some(service) = &served.sysinfo {
            watch(epoll, service.inbox_fd(), key, kind::INBOX, EpollFlags::EPOLLIN);
        }
        served.arm(epoll);
        Ok(served)
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
        self.broken = true;
    }

    /// Charges `spent` of the server's CPU time to the VE (its share of a round's wait).
    pub(super) fn charge(&mut self, spent: Duration) {
        self.budget.charge(spent);
    }

    /// Puts the VE's requests (its console, its listeners) into the epoll set.
    fn arm(&mut self, epoll: &Epoll) {
        if self.armed {
            return;
        }
        self.armed = true;
        if let Some(service) = &self.sysinfo {
            for fd in service.listener_fds() {
                watch(epoll, fd, self.key, kind::CALL, EpollFlags::EPOLLIN);
            }
        }
        self.watch_master(epoll);
    }

    /// Takes the VE's requests out of the epoll set while its budget is spent.
    fn disarm(&mut self, epoll: &Epoll) {
        if !self.armed {
            return;
        }
        self.armed = false;
        if let Some(service) = &self.sysinfo {
            for fd in service.listener_fds() {
                unwatch(epoll, fd);
            }
        }
        self.unwatch_master(epoll);
    }

    fn watch_master(&mut self, epoll: &Epoll) {
        if let Some(master) = &self.master
            && !self.master_in
            && self.hung_until.is_none()
        {
            watch(epoll, master.as_fd(), self.key, kind::MASTER, EpollFlags::EPOLLIN);
            self.master_in = true;
        }
    }

    fn unwatch_master(&mut self, epoll: &Epoll) {
        if let Some(master) = &self.master
            && self.master_in
        {
            unwatch(epoll, master.as_fd());
            self.master_in = false;
        }
    }

    /// Before each wait: the console looked at again after a hang-up pause, the VE's
    /// requests back in the epoll set once its budget allows.
    pub(super) fn refresh(&mut self, epoll: &Epoll, now: Instant) {
        if self.hung_until.is_some_and(|t| now >= t) {
            self.hung_until = None;
            if self.armed {
                self.watch_master(epoll);
            }
        }
        if !self.armed && self.budget.check() {
            self.arm(epoll);
        }
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

    /// Whether a load sample is due.
    pub(super) fn sample_due(&self) -> bool {
        self.sysinfo.as_ref().is_some_and(|s| s.next_sample_in().is_zero())
    }

    /// Serves what the wait found for the VE (`events`: kind, fd, flags), charging the VE's
    /// budget with the CPU time spent on its own requests (its console output, its calls,
    /// its load sample); returns that time.
    pub(super) fn handle(
        &mut self,
        events: &[(u8, RawFd, EpollFlags)],
        epoll: &Epoll,
        buf: &mut [u8],
    ) -> Duration {
        let mut ve_work = Duration::ZERO;
        if events.iter().any(|(k, _, _)| *k == kind::PIDFD) {
            self.ended = true;
            return ve_work;
        }
        let has = |wanted: u8| events.iter().any(|(k, _, _)| *k == wanted);
        // New clients first, so one that connected before this output was read gets it;
        // then the clients' input; then the console (which drops clients that cannot keep
        // up).
        if has(kind::SOCKET) {
            self.accept(epoll);
        }
        let calls: Vec<(RawFd, EpollFlags)> = events
            .iter()
            .filter(|(k, _, _)| *k == kind::CALL)
            .map(|(_, fd, f)| (*fd, *f))
            .collect();
        if let Some(service) = &mut self.sysinfo {
            if service.next_sample_in().is_zero() || !calls.is_empty() {
                let started = thread_cpu();
                let budget = &mut self.budget;
                let mut last = started;
                // Charged as it goes: a listener's further calls wait once the budget is
                // spent.
                let mut more = || {
                    let now = thread_cpu();
                    budget.charge(now.saturating_sub(last));
                    last = now;
                    budget.check()
                };
                service.tick();
                for (fd, flags) in &calls {
                    if flags.contains(EpollFlags::EPOLLIN) {
                        if self.armed {
                            service.serve_listener(*fd, &mut more);
                        }
                    } else if let Some(gone) = service.remove_listener(*fd) {
                        unwatch(epoll, gone.as_fd());
                    }
                }
                let now = thread_cpu();
                self.budget.charge(now.saturating_sub(last));
                ve_work += now.saturating_sub(started);
            }
            // A new listener joins the epoll set now if the VE is served, else when it is
            // armed again.
            if has(kind::INBOX)
                && let Some(fd) = service.take_inbox()
                && self.armed
                && let Some(new) = service.listener_fds().into_iter().find(|l| l.as_raw_fd() == fd)
            {
                watch(epoll, new, self.key, kind::CALL, EpollFlags::EPOLLIN);
            }
        }
        for (_, fd, flags) in events.iter().filter(|(k, _, _)| *k == kind::CLIENT) {
            self.serve_client(*fd, *flags, epoll, buf);
        }
        if let Some((_, _, flags)) = events.iter().find(|(k, _, _)| *k == kind::MASTER) {
            if flags.contains(EpollFlags::EPOLLIN) && self.armed {
                let started = thread_cpu();
                let mut last = started;
                // Up to CONSOLE_ROUND bytes a round while the budget allows.
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
                self.update_clients(epoll);
            } else if flags.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
                self.unwatch_master(epoll);
                self.hung_until = Some(Instant::now() + HUNG_UP_PAUSE);
            }
        }
        if !self.budget.check() {
            self.disarm(epoll);
        }
        ve_work
    }

    /// Reads what the console printed (one read); logs it and sends it to every client
    /// (those that cannot keep up are dropped by [`Served::update_clients`]).
    fn read_console(&mut self, buf: &mut [u8]) -> usize {
        let Some(master) = &self.master else { return 0 };
        match nix::unistd::read(master, buf) {
            Ok(n) if n > 0 => {
                let data = &buf[..n];
                self.log.append(data);
                for client in &mut self.clients {
                    if !client.send(data) {
                        // Marked for removal: a backlog past the limit.
                        client.backlog.resize(CLIENT_BACKLOG + 1, 0);
                    }
                }
                n
            }
            _ => 0,
        }
    }

    /// Drops the clients that are gone or too far behind; waits for the others to take
    /// more when they have a backlog.
    fn update_clients(&mut self, epoll: &Epoll) {
        let key = self.key;
        self.clients.retain_mut(|client| {
            if client.backlog.len() > CLIENT_BACKLOG {
                unwatch(epoll, client.stream.as_fd());
                return false;
            }
            let out = !client.backlog.is_empty();
            if out != client.out {
                let mut events = EpollFlags::EPOLLIN;
                if out {
                    events |= EpollFlags::EPOLLOUT;
                }
                let fd = client.stream.as_fd();
                let mut event = EpollEvent::new(events, token(key, kind::CLIENT, fd.as_raw_fd()));
                if let Err(e) = epoll.modify(fd, &mut event) {
                    tracing::debug!(error = %e, "console server: epoll modify");
                }
                client.out = out;
            }
            true
        });
    }

    fn accept(&mut self, epoll: &Epoll) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.clients.len() >= MAX_CLIENTS {
                        tracing::warn!(ctid = self.ctid.get(), "console: too many clients");
                        continue;
                    }
                    if stream.set_nonblocking(true).is_ok() {
                        watch(epoll, stream.as_fd(), self.key, kind::CLIENT, EpollFlags::EPOLLIN);
                        self.clients.push(Client { stream, backlog: Vec::new(), out: false });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// A client's event: its backlog sent, its input to the console (dropped when the
    /// console does not take it: the VE is not reading), or its end.
    fn serve_client(&mut self, fd: RawFd, flags: EpollFlags, epoll: &Epoll, buf: &mut [u8]) {
        let Some(index) = self.clients.iter().position(|c| c.stream.as_raw_fd() == fd) else {
            return;
        };
        let client = &mut self.clients[index];
        let mut keep = true;
        if flags.contains(EpollFlags::EPOLLOUT) {
            keep = client.flush();
        }
        if keep && flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP) {
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
        } else if flags.contains(EpollFlags::EPOLLERR) {
            keep = false;
        }
        if keep {
            self.update_clients(epoll);
        } else {
            let client = self.clients.swap_remove(index);
            unwatch(epoll, client.stream.as_fd());
        }
    }

    /// Ends the VE's service once its init is gone (or the server drops it): reads what is
    /// left on the console (at most [`DRAIN_MAX`], not after a panic), then takes every fd
    /// out of the epoll set, closes them and removes its sockets (only its own: a newer run's
    /// may have taken the paths). Returns whether the init ended by an in-VE reboot
    /// ([`super::reboot`]).
    pub(super) fn finish(mut self, epoll: &Epoll, buf: &mut [u8]) -> bool {
        let mut drained = 0;
        while drained < DRAIN_MAX && !self.broken {
            match self.read_console(buf) {
                0 => break,
                n => drained += n,
            }
        }
        tracing::info!(ctid = self.ctid.get(), init = self.pid, "console server: the VE ended");
        self.disarm(epoll);
        unwatch(epoll, self.pidfd.as_fd());
        unwatch(epoll, self.listener.as_fd());
        for client in &self.clients {
            unwatch(epoll, client.stream.as_fd());
        }
        if let Some(service) = &self.sysinfo {
            unwatch(epoll, service.inbox_fd());
        }
        if inode(&self.socket) == self.bound {
            let _ = std::fs::remove_file(&self.socket);
        }
        if let Some(sysinfo) = &self.sysinfo
            && inode(sysinfo.path()) == self.sysinfo_bound
        {
            let _ = std::fs::remove_file(sysinfo.path());
        }
        self.rebooted()
    }

    /// Whether the ended init rebooted (false while it runs: a dropped service).
    fn rebooted(&self) -> bool {
        // Reaped between the pidfd read and the zombie's: by then the pidfd holds the status
        // (6.15+), so one more look, without waiting (the server serves every VE).
        let status = super::reboot::exit_status(self.pid, self.pidfd.as_fd())
            .or_else(|| crate::sys::pidfd_exit_status(self.pidfd.as_fd()));
        match status {
            Some(status) => super::reboot::is_reboot(status),
            None => {
                if !self.broken {
                    tracing::warn!(
                        ctid = self.ctid.get(),
                        "console server: how the VE's init \
                        ended is not known (reaped at once on a kernel before 6.15): an in-VE \
                        reboot leaves it stopped"
                    );
                }
                false
            }
        }
    }
}

/// The inode of the file at `path`, to tell one's own socket from a newer one.
pub(super) fn inode(path: &Path) -> Option<u64> {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).ok()?).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_ve_kind_and_fd() {
        let t = token(7, kind::CALL, 1234);
        assert_eq!(untoken(t), (7, kind::CALL, 1234));
        assert_eq!(
            untoken(token(u32::MAX, kind::REQUEST, 0xff_ffff)),
            (u32::MAX, kind::REQUEST, 0xff_ffff)
        );
    }
}
