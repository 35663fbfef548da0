//! The console server: one host process per vz tree (`vzctl __consoled`, the way lxcfs serves
//! every container) that holds the console and the sysinfo service of every running VE of
//! the tree, so an idle VE costs no host process of its own.
//!
//! For each VE (`ve.rs`) it
//! * reads the console all the time, so writes in the VE never block on it, and keeps the
//!   last [`crate::console::LOG_KEEP`] bytes in `<VZ_RUN_DIR>/<CTID>.console.log`;
//! * serves `vzctl console CTID` clients on `<VZ_RUN_DIR>/<CTID>.console`;
//! * answers the `sysinfo(2)` calls of the VE's processes and keeps its load average
//!   ([`crate::sysinfo::Service`] on `<VZ_RUN_DIR>/<CTID>.sysinfo`);
//! * holds what the VE makes it do to the VE's own CPU budget ([`crate::budget`]: 5% of a
//!   CPU, 200 ms bursts, measured with the thread's CPU clock around that VE's work, the
//!   loop's own cost shared among the VEs it served; one epoll set for all fds, so a round
//!   costs the same whatever the number of VEs), so a VE flooding its console or its
//!   sysinfo waits for its own budget and slows no other VE;
//! * ends the VE's service when its init's pidfd says the init has exited, after reading
//!   what was left on its console, and starts the VE again when the init ended by an in-VE
//!   `reboot` (OpenVZ's vzeventd; `reboot.rs`).
//!
//! **Life cycle** (`control.rs`). `vzctl start` and `vzctl restore` register a VE under the
//! tree's lock `<VZ_RUN_DIR>/consoled.lock`: they connect to `<VZ_RUN_DIR>/consoled.sock`,
//! start the server when nobody answers there (a stale socket of a dead server is replaced),
//! and hand it the init's pidfd and the console's master (`SCM_RIGHTS`), waiting for its
//! answer. The server exits once no running VE is left and no start holds the lock, so a
//! host without VEs runs nothing.
//!
//! **A VE cannot hurt the server or the other VEs.** Everything the server does is
//! non-blocking (the consoles' masters too); one round of its loop reads at most 64 KiB of
//! each console and answers at most 8 calls per listener, while the VE's budget allows; what
//! a VE can make grow is bounded (the log file, each client's backlog, 16 clients); a VE's
//! fds are closed when its init ends; a panic while serving one VE drops that VE's service
//! (logged) instead of ending the server; and the server asks the OOM killer to pick other
//! processes first (`oom_score_adj` -900, where root may lower it).
//!
//! **If the server is killed anyway**, every running VE of the tree runs on, but loses what
//! the server held: its console's writes fail with EIO (no reader holds the master, which
//! cannot be opened again), `vzctl console` fails (3), sysinfo calls of its processes fail
//! with ENOSYS and new `vzctl exec` programs see the host's sysinfo, `vzlist -o laverage`
//! shows the instantaneous count. A VE's next start (or restore) starts a new server, which
//! serves it fully again; the other VEs get their console back at their next start.

mod control;
mod reboot;
mod ve;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::PollTimeout;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

pub use control::{SERVER_COMMAND, Starting, begin, lock_path, register, socket_path};

use crate::budget::thread_cpu;
use crate::config::GlobalConfig;
use crate::error::{CtlError, Result};
use ve::Served;

/// How long the server waits, without VEs, for a start holding the lock to register one.
const EMPTY_RETRY: Duration = Duration::from_millis(50);

/// The server's body (`vzctl __consoled`, started by [`register`]): binds the tree's control
/// socket, says "ready" on stdout, serves until no VE is left.
///
/// # Errors
/// When the socket or the epoll set cannot be made, or waiting fails.
pub fn serve(global: GlobalConfig) -> Result<()> {
    let _ = nix::unistd::setsid();
    // Sockets and logs are root's alone.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    raise_fd_limit();
    // Every VE's console goes with it: the OOM killer picks other processes first (its
    // memory is bounded per VE).
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "-900") {
        tracing::debug!(error = %e, "console server: oom_score_adj");
    }
    let control = control::Control::bind(&global)?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
        .map_err(|e| CtlError::Start(format!("console server: epoll: {e}").into()))?;
    control.watch(&epoll);
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready").and_then(|()| out.flush());
    }
    let grid = Instant::now();
    let mut server = Server {
        global,
        control,
        epoll,
        ves: BTreeMap::new(),
        next_key: 1,
        grid,
        restarts: Vec::new(),
    };
    server.run()
}

/// Each VE holds about six fds (more with clients and `vzctl exec` listeners): the soft
/// limit goes up to the hard one.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::debug!(error = %e, "console server: RLIMIT_NOFILE");
    }
}

/// The server's state: its control socket, its epoll set and the VEs it serves.
struct Server {
    global: GlobalConfig,
    control: control::Control,
    epoll: Epoll,
    /// The VEs, by the key of their fds' epoll tokens.
    ves: BTreeMap<u32, Served>,
    next_key: u32,
    /// When the server started: every VE's load samples fall on the 5-second grid from
    /// there, so an idle server wakes once per 5 s whatever the number of VEs.
    grid: Instant,
    /// `vzctl start` of VEs rebooted from inside, until they end.
    restarts: Vec<std::process::Child>,
}

/// One event of a wait: (kind, fd, flags), by the key of its VE (0: the server's own).
type Events = BTreeMap<u32, Vec<(u8, RawFd, EpollFlags)>>;

impl Server {
    fn run(&mut self) -> Result<()> {
        let mut buf = vec![0_u8; 16 * 1024];
        let mut ready = vec![EpollEvent::empty(); 256];
        loop {
            if self.ves.is_empty() && self.control.idle() && self.control.try_exit() {
                tracing::info!("console server: no running VE left");
                return Ok(());
            }
            let round = thread_cpu();
            let now = Instant::now();
            let mut wait = if self.ves.is_empty() { EMPTY_RETRY } else { Duration::MAX };
            wait = wait.min(self.control.next_wake());
            for served in self.ves.values_mut() {
                served.refresh(&self.epoll, now);
                wait = wait.min(served.next_wake(now));
            }
            let timeout = PollTimeout::try_from(wait.saturating_add(Duration::from_micros(100)))
                .unwrap_or(PollTimeout::MAX);
            let count = match self.epoll.wait(&mut ready, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    return Err(CtlError::Start(format!("console server: epoll: {e}").into()));
                }
            };
            let mut events = Events::new();
            for event in &ready[..count] {
                let (key, kind, fd) = ve::untoken(event.data());
                events.entry(key).or_default().push((kind, fd, event.events()));
            }
            let own = events.remove(&0).unwrap_or_default();
            // VEs with a load sample due are served without an event.
            for (key, served) in &self.ves {
                if served.sample_due() {
                    events.entry(*key).or_default();
                }
            }
            let mut worked = Vec::with_capacity(events.len());
            let mut handled = Duration::ZERO;
            for (key, mine) in &events {
                let Some(served) = self.ves.get_mut(key) else { continue };
                let started = thread_cpu();
                let epoll = &self.epoll;
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    served.handle(mine, epoll, &mut buf)
                }));
                handled += thread_cpu().saturating_sub(started);
                match result {
                    Ok(spent) => worked.push((*key, spent)),
                    Err(_) => {
                        tracing::error!(ctid = served.ctid().get(), "console server: a panic");
                        // Its service ends; the VE runs on as with a killed server.
                        served.drop_service();
                    }
                }
            }
            self.share_overhead(round, handled, &worked);
            self.finish_ended(&mut buf);
            self.control_round(&own, &mut buf);
        }
    }

    /// Charges the round's CPU time that no VE's work was measured for (the wait, the loop)
    /// in equal parts to the VEs whose requests were served in it (their requests woke the
    /// server); a round with none is the host's.
    fn share_overhead(&mut self, round: Duration, handled: Duration, worked: &[(u32, Duration)]) {
        let busy: Vec<u32> = worked.iter().filter(|(_, w)| !w.is_zero()).map(|(k, _)| *k).collect();
        if busy.is_empty() {
            return;
        }
        // What the VEs' handling measured (their work, charged already, and the host's
        // requests among it, charged to nobody) is not shared out.
        let overhead = thread_cpu().saturating_sub(round).saturating_sub(handled);
        let share = overhead / u32::try_from(busy.len()).unwrap_or(u32::MAX);
        for key in busy {
            if let Some(served) = self.ves.get_mut(&key) {
                served.charge(share);
            }
        }
    }

    /// Finishes the VEs whose init ended.
    fn finish_ended(&mut self, buf: &mut [u8]) {
        let ended: Vec<u32> = self.ves.iter().filter(|(_, v)| v.ended()).map(|(k, _)| *k).collect();
        for key in ended {
            if let Some(served) = self.ves.remove(&key) {
                let ctid = served.ctid();
                if served.finish(&self.epoll, buf)
                    && let Some(child) = reboot::restart(&self.global, ctid)
                {
                    self.restarts.push(child);
                }
            }
        }
        reboot::reap(&mut self.restarts);
    }

    /// Takes new control connections and serves the registrations that arrived.
    fn control_round(&mut self, events: &[(u8, RawFd, EpollFlags)], buf: &mut [u8]) {
        for request in self.control.handle(events, &self.epoll) {
            let control::Request { reply, ctid, pid, pidfd, master } = request;
            let added = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.add(ctid, (pid, pidfd), master, buf)
            }));
            let answer = match added {
                Ok(Ok(())) => "ok".to_owned(),
                Ok(Err(e)) => format!("error {}", crate::error::chain(&e)),
                Err(_) => "error the console server failed to take the container".to_owned(),
            };
            reply.answer(&answer);
        }
    }

    /// Serves the VE `ctid` (a former run of it still held is finished first).
    fn add(
        &mut self,
        ctid: crate::Ctid,
        init: (i32, OwnedFd),
        master: Option<OwnedFd>,
        buf: &mut [u8],
    ) -> Result<()> {
        if let Some(key) = self.ves.iter().find(|(_, v)| v.ctid() == ctid).map(|(k, _)| *k)
            && let Some(old) = self.ves.remove(&key)
        {
            // A newer run of the VE is registering: no restart for the old one's end.
            let _ = old.finish(&self.epoll, buf);
        }
        let ve = crate::ve::Ve::load(self.global.clone(), ctid)?;
        let key = self.next_key;
        self.next_key = self.next_key.checked_add(1).unwrap_or(1);
        let pid = init.0;
        let served = Served::new(&ve, key, init, master, self.grid, &self.epoll)?;
        tracing::info!(ctid = ctid.get(), init = pid, "console server: serving");
        self.ves.insert(key, served);
        Ok(())
    }
}
