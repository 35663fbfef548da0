//! The VE's own `sysinfo(2)`: `free`, `uptime`, `top` and glibc's
//! `sysconf(_SC_PHYS_PAGES)` in a VE show its memory limit, its swap, its load average and
//! its uptime, not the host's (sysinfo has no namespace on any kernel; Incus intercepts it
//! the same way, `security.syscalls.intercept.sysinfo`).
//!
//! Unless the VE's `MEMINFO` is `none` ([`intercepts`]), the seccomp filter of its init and
//! of every `vzctl exec`/`enter` hands sysinfo to a listener
//! ([`vz_ns::SeccompPolicy::intercept_sysinfo`]); the listeners go to the console server
//! (`vzctl __consoled`, one host process for every running VE of a tree, [`crate::consoled`]),
//! whose [`Service`] of the VE takes them on the socket `<VZ_RUN_DIR>/<CTID>.sysinfo` and
//! answers each call by writing the caller's `struct sysinfo` ([`answer`]). With a quotactl server (second-level quota), that server holds the
//! one listener the kernel allows a process and answers sysinfo with the same [`answer`]
//! ([`Answerer`]).
//!
//! The service also keeps the VE's load average: every [`LOAD_FREQ`] it counts the VE's
//! runnable and uninterruptible threads and folds them into the kernel's three exponential
//! averages ([`LoadAvg`], the kernel's fixed point). `vzlist -o laverage` asks for them on
//! the same socket ([`query_load`]).
//!
//! The answers are held to the VE's CPU budget in the server ([`crate::budget`]): a VE
//! calling sysinfo in a loop gets its answers at the pace of 5% of a CPU (after a burst of
//! 200 ms), its callers waiting in the kernel meanwhile; a single call does not wait, and
//! another VE's calls are not slowed.
//!
//! If the console server is gone (killed), the VEs' processes keep running and their
//! sysinfo fails with ENOSYS, the kernel's rule for a closed listener; `vzctl exec` then
//! leaves sysinfo to the kernel (the host's numbers) for the programs it starts. A restored
//! VE's processes see the host's numbers (vz-cpt rewrites their filters, CRIU restores no
//! listener) until the VE restarts; new `vzctl exec` programs get the VE's again.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};
use vz_ns::{
    InboxMessage, ListenerInbox, ProcessMemory, SyscallListener, SyscallReply, SyscallRequest,
};

use crate::cgroup::VeCgroup;
use crate::error::{CtlError, Result};
use crate::ve::Ve;

/// How often the load average is sampled (the kernel's `LOAD_FREQ`, 5 s).
pub const LOAD_FREQ: Duration = Duration::from_secs(5);

/// The question [`query_load`] asks.
const LOAD_QUESTION: &[u8] = b"loadavg";

/// How long `vzlist` waits for the console server's answer.
const QUERY_TIMEOUT: Duration = Duration::from_millis(500);

/// The size of x86-64's `struct sysinfo`.
const SYSINFO_SIZE: usize = 112;

/// The server's socket for the VE's listeners and questions.
pub fn socket_path(ve: &Ve) -> PathBuf {
    ve.global.run_dir().join(format!("{}.sysinfo", ve.ctid))
}

/// Whether the VE's sysinfo is its own: always but with `MEMINFO=none` (then, as for
/// /proc/meminfo, the VE sees the host's numbers).
pub fn intercepts(ve: &Ve) -> bool {
    let value = ve.get("MEMINFO").map(str::trim).filter(|v| !v.is_empty());
    value.is_none_or(|v| {
        crate::procview::Meminfo::parse(v).map_or(true, crate::procview::Meminfo::virtualised)
    })
}

/// The kernel's load average (kernel/sched/loadavg.c): three exponential averages of the
/// number of active tasks, in fixed point with [`FSHIFT`] fraction bits, decayed every
/// [`LOAD_FREQ`] by e^(-5s/1min), e^(-5s/5min), e^(-5s/15min).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadAvg {
    avenrun: [u64; 3],
}

/// Fraction bits of [`LoadAvg`].
pub const FSHIFT: u32 = 11;
const FIXED_1: u64 = 1 << FSHIFT;
/// 1/exp(5s/1min), 1/exp(5s/5min), 1/exp(5s/15min) in fixed point (the kernel's EXP_n).
const EXP: [u64; 3] = [1884, 2014, 2037];

impl LoadAvg {
    /// Folds one sample of `active` tasks into the averages, as the kernel's `calc_load`.
    pub fn sample(&mut self, active: u64) {
        let active = active.saturating_mul(FIXED_1);
        for (load, exp) in self.avenrun.iter_mut().zip(EXP) {
            let mut new =
                load.saturating_mul(exp).saturating_add(active.saturating_mul(FIXED_1 - exp));
            if active >= *load {
                new = new.saturating_add(FIXED_1 - 1);
            }
            *load = new / FIXED_1;
        }
    }

    /// The averages as sysinfo gives them (`SI_LOAD_SHIFT`, 16 fraction bits).
    pub fn sysinfo_loads(&self) -> [u64; 3] {
        self.avenrun.map(|l| l << (16 - FSHIFT))
    }

    /// The averages as numbers.
    pub fn values(&self) -> [f64; 3] {
        self.avenrun.map(|l| l as f64 / FIXED_1 as f64)
    }

    /// The text [`query_load`] reads: the three fixed-point values.
    fn to_text(self) -> String {
        format!("{} {} {}", self.avenrun[0], self.avenrun[1], self.avenrun[2])
    }

    fn from_text(text: &str) -> Option<LoadAvg> {
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
        let avenrun = [fields.next()??, fields.next()??, fields.next()??];
        Some(LoadAvg { avenrun })
    }
}

/// The VE's load average from its console server, `None` when the server does not answer
/// (vzlist then shows the instantaneous count).
pub fn query_load(ve: &Ve) -> Option<[f64; 3]> {
    let answer = vz_ns::ask(&socket_path(ve), LOAD_QUESTION, QUERY_TIMEOUT)
        .inspect_err(|e| tracing::debug!(ctid = ve.ctid.get(), error = %e, "load average"))
        .ok()?;
    LoadAvg::from_text(std::str::from_utf8(&answer).ok()?).map(|l| l.values())
}

/// The number of the VE's threads that count for its load: runnable or in uninterruptible
/// sleep.
fn active_tasks(cgroup: &VeCgroup) -> u64 {
    u64::from(crate::list::row::active_threads(&cgroup.pids()))
}

/// The console server's sysinfo part: the inbox, the listeners it got, the load average.
pub struct Service {
    inbox: ListenerInbox,
    listeners: Vec<SyscallListener>,
    load: LoadAvg,
    sampled: Instant,
    cgroup: VeCgroup,
    /// The host's RAM and swap totals, read again at each load sample (not per call: the
    /// read of /proc/meminfo is most of a call's cost).
    host: HostMemory,
}

/// The host's totals in bytes: (MemTotal, SwapTotal).
type HostMemory = (u64, u64);

fn host_memory() -> HostMemory {
    crate::list::usage::host_memory().unwrap_or((0, 0))
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("inbox", &self.inbox.path())
            .field("listeners", &self.listeners.len())
            .field("load", &self.load)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Binds the VE's socket (root's, 0600) and takes a first load sample.
    ///
    /// # Errors
    /// [`CtlError::Start`] when the socket or the VE's cgroup cannot be had.
    pub fn bind(ve: &Ve) -> Result<Service> {
        let inbox = ListenerInbox::bind(&socket_path(ve)).map_err(|e| CtlError::Start(e.into()))?;
        let cgroup = ve.cgroup()?;
        let mut load = LoadAvg::default();
        load.sample(active_tasks(&cgroup));
        let host = host_memory();
        Ok(Service { inbox, listeners: Vec::new(), load, sampled: Instant::now(), cgroup, host })
    }

    /// Its socket.
    pub fn path(&self) -> &Path {
        self.inbox.path()
    }

    /// The inbox's fd (the host hands listeners and asks questions there).
    pub fn inbox_fd(&self) -> BorrowedFd<'_> {
        self.inbox.as_fd()
    }

    /// The fds of the listeners it serves (the VE's calls wait there).
    pub fn listener_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.listeners.iter().map(AsFd::as_fd).collect()
    }

    /// Answers the waiting calls of the listener whose fd is `fd`: one, and up to
    /// [`CALLS_PER_ROUND`] while `more` says the caller's budget allows.
    pub fn serve_listener(&mut self, fd: RawFd, more: &mut dyn FnMut() -> bool) {
        let Some(listener) = self.listeners.iter().find(|l| l.as_fd().as_raw_fd() == fd) else {
            return;
        };
        let (loads, host) = (self.load.sysinfo_loads(), self.host);
        serve_one(listener, &self.cgroup, loads, host);
        // More waiting calls of the same listener at once: the server's round is paid once
        // for several answers.
        for _ in 1..CALLS_PER_ROUND {
            if !more() || !ready(listener) {
                break;
            }
            serve_one(listener, &self.cgroup, loads, host);
        }
    }

    /// Gives up the listener whose fd is `fd` (all its processes ended), for the caller to
    /// stop watching before it is closed.
    pub fn remove_listener(&mut self, fd: RawFd) -> Option<SyscallListener> {
        let index = self.listeners.iter().position(|l| l.as_fd().as_raw_fd() == fd)?;
        Some(self.listeners.swap_remove(index))
    }

    /// The host's part: takes one connection of the inbox, a new listener (of `vzctl exec`)
    /// or a question (`vzlist`'s load average); the new listener's fd, if one came.
    pub fn take_inbox(&mut self) -> Option<RawFd> {
        match self.inbox.accept_message() {
            Ok(Some(InboxMessage::Listener(listener))) => {
                let fd = listener.as_fd().as_raw_fd();
                self.listeners.push(listener);
                return Some(fd);
            }
            Ok(Some(InboxMessage::Question(q))) if q.text() == LOAD_QUESTION => {
                q.answer(self.load.to_text().as_bytes());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sysinfo: a connection was lost"),
        }
        None
    }

    /// How many listeners it serves.
    pub fn listeners(&self) -> usize {
        self.listeners.len()
    }

    /// Takes a load sample when [`LOAD_FREQ`] has passed since the last one; call it at
    /// least that often.
    pub fn tick(&mut self) {
        if self.sampled.elapsed() >= LOAD_FREQ {
            // A server that was not scheduled for a while does not catch up sample by sample;
            // the samples stay on their 5-second grid.
            self.sampled += LOAD_FREQ * periods(self.sampled.elapsed());
            self.load.sample(active_tasks(&self.cgroup));
            self.host = host_memory();
        }
    }

    /// Puts the samples on the 5-second grid that starts at `grid` (the next sample is then
    /// due at its next point, in under [`LOAD_FREQ`]): a server of many VEs samples them all
    /// in one wake-up.
    pub fn align(&mut self, grid: Instant) {
        let now = Instant::now();
        if let Some(since) = now.checked_duration_since(grid) {
            self.sampled = grid + LOAD_FREQ * periods(since);
        }
    }

    /// How long until the next sample is due.
    pub fn next_sample_in(&self) -> Duration {
        LOAD_FREQ.saturating_sub(self.sampled.elapsed())
    }
}

/// How many whole [`LOAD_FREQ`]s `span` holds.
fn periods(span: Duration) -> u32 {
    u32::try_from(span.as_nanos() / LOAD_FREQ.as_nanos()).unwrap_or(u32::MAX)
}

/// Answers sysinfo for a server other than the console's (the quotactl server, which holds
/// the listener of a VE with second-level quota): the load average is asked of the console
/// server (zeros when it does not answer) and the host's totals read, at most once per
/// `LOAD_REASK` (1 s), so a VE calling sysinfo in a loop does not make the console server work
/// for it too.
#[derive(Debug)]
pub struct Answerer {
    cgroup: VeCgroup,
    console: PathBuf,
    /// The last answer of the console server, the host's totals, and when they were had.
    asked: std::cell::Cell<Option<(Instant, LoadAvg, HostMemory)>>,
}

/// How long the [`Answerer`] reuses the console server's load average (it changes every
/// [`LOAD_FREQ`]).
const LOAD_REASK: Duration = Duration::from_secs(1);

impl Answerer {
    /// The answerer of `ve`, `None` when its cgroup cannot be had (sysinfo is then the
    /// kernel's).
    pub fn for_ve(ve: &Ve) -> Option<Answerer> {
        let cgroup = ve.cgroup().inspect_err(|e| tracing::warn!(error = %e, "sysinfo")).ok()?;
        Some(Answerer { cgroup, console: socket_path(ve), asked: std::cell::Cell::new(None) })
    }

    /// The answer to `request` (see [`answer`]).
    pub fn answer(&self, listener: &SyscallListener, request: &SyscallRequest) -> SyscallReply {
        if request.nr != libc::SYS_sysinfo {
            return SyscallReply::Continue;
        }
        let (loads, host) = match self.asked.get() {
            Some((at, loads, host)) if at.elapsed() < LOAD_REASK => (loads, host),
            _ => {
                let loads = vz_ns::ask(&self.console, LOAD_QUESTION, QUERY_TIMEOUT)
                    .ok()
                    .and_then(|a| LoadAvg::from_text(std::str::from_utf8(&a).ok()?))
                    .unwrap_or_default();
                let host = host_memory();
                self.asked.set(Some((Instant::now(), loads, host)));
                (loads, host)
            }
        };
        answer(listener, request, &self.cgroup, loads.sysinfo_loads(), host)
    }
}

/// How many calls of one listener [`Service::serve_listener`] answers at most in one round.
pub const CALLS_PER_ROUND: usize = 8;

/// Whether `listener` has a call waiting now.
fn ready(listener: &SyscallListener) -> bool {
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0)
        && fds[0].revents().is_some_and(|f| f.contains(PollFlags::POLLIN))
}

/// Receives and answers one call of `listener`.
fn serve_one(listener: &SyscallListener, cgroup: &VeCgroup, loads: [u64; 3], host: HostMemory) {
    let request = match listener.receive() {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "sysinfo: receive");
            return;
        }
    };
    let reply = answer(listener, &request, cgroup, loads, host);
    if let Err(e) = listener.reply(request.id, reply) {
        tracing::warn!(error = %e, "sysinfo: reply");
    }
}

/// The answer to an intercepted `sysinfo(info)` of a VE process whose cgroup is `cgroup`
/// (`loads` in sysinfo's fixed point, `host` the host's RAM and swap totals):
/// the VE's `struct sysinfo` written to `info` in the caller's memory and 0; EFAULT when
/// `info` is not the caller's writable memory (nothing is written then). Any other call, or
/// a caller whose memory cannot be opened, is left to the kernel.
///
/// The caller's memory is opened before the call is checked to be still waiting, so a
/// process that took a dead caller's pid is never written.
pub fn answer(
    listener: &SyscallListener,
    request: &SyscallRequest,
    cgroup: &VeCgroup,
    loads: [u64; 3],
    host: HostMemory,
) -> SyscallReply {
    if request.nr != libc::SYS_sysinfo {
        return SyscallReply::Continue;
    }
    let Ok(memory) = ProcessMemory::open(request.pid) else { return SyscallReply::Continue };
    let offsets = std::fs::read_to_string(format!("/proc/{}/timens_offsets", request.pid));
    if !listener.is_waiting(request.id) {
        return SyscallReply::Continue;
    }
    let addr = request.args[0];
    if !memory.is_writable(addr, SYSINFO_SIZE as u64) {
        return SyscallReply::Error(libc::EFAULT);
    }
    let offset = offsets.ok().as_deref().and_then(crate::list::row::boottime_offset).unwrap_or(0);
    let info = VeSysinfo::read(cgroup, offset, loads, host);
    match memory.write(addr, &info.to_bytes()) {
        Ok(()) => SyscallReply::Value(0),
        Err(e) => {
            tracing::debug!(pid = request.pid, error = %e, "sysinfo: write the answer");
            SyscallReply::Error(libc::EFAULT)
        }
    }
}

/// The fields of a VE's `struct sysinfo` (bytes; `mem_unit` 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct VeSysinfo {
    uptime: i64,
    loads: [u64; 3],
    totalram: u64,
    freeram: u64,
    sharedram: u64,
    bufferram: u64,
    totalswap: u64,
    freeswap: u64,
    procs: u16,
}

/// What the VE's memory cgroup says, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Memory {
    limit: Option<u64>,
    usage: u64,
    /// The swap limit alone (v1: memsw − memory), `None` unlimited or unknown.
    swap_limit: Option<u64>,
    swap_usage: u64,
    shmem: u64,
}

impl VeSysinfo {
    fn read(cgroup: &VeCgroup, offset_ns: i128, loads: [u64; 3], host: HostMemory) -> VeSysinfo {
        let (host_ram, host_swap) = host;
        let memory = read_memory(cgroup);
        let mut info = VeSysinfo::from_memory(memory, host_ram, host_swap);
        info.uptime = ve_uptime(offset_ns);
        info.loads = loads;
        info.procs = u16::try_from(threads(cgroup)).unwrap_or(u16::MAX);
        info
    }

    /// Totals and free amounts as lxcfs's /proc/meminfo in the VE shows them: the limits
    /// capped at the host's, free = limit − usage.
    fn from_memory(m: Memory, host_ram: u64, host_swap: u64) -> VeSysinfo {
        let totalram = m.limit.map_or(host_ram, |l| l.min(host_ram));
        let totalswap = m.swap_limit.map_or(host_swap, |l| l.min(host_swap));
        VeSysinfo {
            totalram,
            freeram: totalram.saturating_sub(m.usage),
            sharedram: m.shmem.min(totalram),
            bufferram: 0,
            totalswap,
            freeswap: totalswap.saturating_sub(m.swap_usage),
            ..VeSysinfo::default()
        }
    }

    /// x86-64's `struct sysinfo` with `mem_unit` 1.
    fn to_bytes(self) -> [u8; SYSINFO_SIZE] {
        let mut b = [0_u8; SYSINFO_SIZE];
        let mut put = |off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        put(0, self.uptime.cast_unsigned());
        for (i, l) in self.loads.iter().enumerate() {
            put(8 + 8 * i, *l);
        }
        put(32, self.totalram);
        put(40, self.freeram);
        put(48, self.sharedram);
        put(56, self.bufferram);
        put(64, self.totalswap);
        put(72, self.freeswap);
        // totalhigh, freehigh (88, 96): 0.
        b[80..82].copy_from_slice(&self.procs.to_ne_bytes());
        b[104..108].copy_from_slice(&1_u32.to_ne_bytes());
        b
    }
}

/// The VE's uptime as the kernel's sysinfo computes it in the VE's time namespace: its
/// CLOCK_BOOTTIME (the host's plus the namespace's boottime offset), whole seconds rounded
/// up.
fn ve_uptime(offset_ns: i128) -> i64 {
    let host = std::fs::read_to_string("/proc/uptime").ok().and_then(|t| {
        let secs = t.split_whitespace().next()?;
        let (whole, frac) = secs.split_once('.').unwrap_or((secs, "0"));
        let whole: i128 = whole.parse().ok()?;
        let frac: i128 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
        Some(whole * 1_000_000_000 + frac)
    });
    let ns = host.unwrap_or(0) + offset_ns;
    let secs = ns.div_euclid(1_000_000_000) + i128::from(ns.rem_euclid(1_000_000_000) != 0);
    i64::try_from(secs.max(0)).unwrap_or(i64::MAX)
}

/// The VE's memory numbers from its cgroup (v1 memory controller or v2's unified files).
fn read_memory(cgroup: &VeCgroup) -> Memory {
    let num = |dir: &Path, file: &str| -> Option<u64> {
        let text = std::fs::read_to_string(dir.join(file)).ok()?;
        let text = text.trim();
        if text == "max" { Some(u64::MAX) } else { text.parse().ok() }
    };
    let limited = |v: Option<u64>| v.filter(|v| *v < (1 << 62));
    let stat = |dir: &Path, key: &str| -> u64 {
        let text = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
        let value = text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' '));
        value.and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    if cgroup.is_v2() {
        let Some(dir) = cgroup.dir_of("") else { return Memory::default() };
        Memory {
            limit: limited(num(&dir, "memory.max")),
            usage: num(&dir, "memory.current").unwrap_or(0),
            swap_limit: limited(num(&dir, "memory.swap.max")),
            swap_usage: num(&dir, "memory.swap.current").unwrap_or(0),
            shmem: stat(&dir, "shmem"),
        }
    } else {
        let Some(dir) = cgroup.dir_of("memory") else { return Memory::default() };
        let limit = limited(num(&dir, "memory.limit_in_bytes"));
        let usage = num(&dir, "memory.usage_in_bytes").unwrap_or(0);
        let memsw = limited(num(&dir, "memory.memsw.limit_in_bytes"));
        let memsw_usage = num(&dir, "memory.memsw.usage_in_bytes").unwrap_or(usage);
        Memory {
            limit,
            usage,
            swap_limit: match (memsw, limit) {
                (Some(sw), Some(l)) => Some(sw.saturating_sub(l)),
                // No swap accounting: the VE can swap what the host has.
                _ => None,
            },
            swap_usage: memsw_usage.saturating_sub(usage),
            shmem: stat(&dir, "total_shmem"),
        }
    }
}

/// The VE's threads (sysinfo's `procs` counts threads): its pids controller's count, else
/// the threads of its processes.
fn threads(cgroup: &VeCgroup) -> u64 {
    let dir = if cgroup.is_v2() { cgroup.dir_of("") } else { cgroup.dir_of("pids") };
    let counted = dir
        .and_then(|d| std::fs::read_to_string(d.join("pids.current")).ok())
        .and_then(|t| t.trim().parse().ok());
    counted.unwrap_or_else(|| {
        cgroup
            .pids()
            .iter()
            .map(|p| std::fs::read_dir(format!("/proc/{p}/task")).map_or(0, |d| d.count() as u64))
            .sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_average_follows_the_kernels_fixed_point() {
        let mut load = LoadAvg::default();
        // One busy task for a minute: the 1-minute average reaches 1 - 1/e (0.63).
        for _ in 0..12 {
            load.sample(1);
        }
        let [one, five, fifteen] = load.values();
        assert!((0.62..0.66).contains(&one), "{one}");
        assert!((0.17..0.20).contains(&five), "{five}");
        assert!((0.06..0.08).contains(&fifteen), "{fifteen}");
        // Long at 2: all three converge there; then idle: they decay, 1 min fastest.
        for _ in 0..2000 {
            load.sample(2);
        }
        assert_eq!(load.values().map(|v| (v * 100.0).round()), [200.0; 3]);
        for _ in 0..12 {
            load.sample(0);
        }
        let [one, five, fifteen] = load.values();
        assert!(one < five && five < fifteen && fifteen < 2.0, "{:?}", load.values());
        assert_eq!(load.sysinfo_loads()[0], load.avenrun[0] << 5);
        assert_eq!(LoadAvg::from_text(&load.to_text()), Some(load));
        assert_eq!(LoadAvg::from_text("1 2"), None);
    }

    #[test]
    fn load_samples_stay_on_their_grid() {
        assert_eq!(periods(Duration::from_millis(4999)), 0);
        assert_eq!(periods(Duration::from_millis(5000)), 1);
        assert_eq!(periods(Duration::from_secs(17)), 3);
    }

    #[test]
    fn memory_is_the_limit_capped_at_the_hosts() {
        let gib = 1 << 30;
        let m = Memory {
            limit: Some(256 << 20),
            usage: 10 << 20,
            swap_limit: Some(128 << 20),
            swap_usage: 1 << 20,
            shmem: 1 << 20,
        };
        let info = VeSysinfo::from_memory(m, 24 * gib, 4 * gib);
        assert_eq!(info.totalram, 256 << 20);
        assert_eq!(info.freeram, 246 << 20);
        assert_eq!(info.totalswap, 128 << 20);
        assert_eq!(info.freeswap, 127 << 20);
        assert_eq!(info.sharedram, 1 << 20);
        // A host without swap gives none; an unlimited VE gets the host's totals.
        let info = VeSysinfo::from_memory(m, 24 * gib, 0);
        assert_eq!((info.totalswap, info.freeswap), (0, 0));
        let open = Memory { limit: None, swap_limit: None, ..m };
        let info = VeSysinfo::from_memory(open, 24 * gib, 4 * gib);
        assert_eq!((info.totalram, info.totalswap), (24 * gib, 4 * gib));
        // Usage above a lowered limit: nothing free, not an underflow.
        let over = Memory { usage: 300 << 20, ..m };
        assert_eq!(VeSysinfo::from_memory(over, 24 * gib, 0).freeram, 0);
    }

    #[test]
    fn the_struct_has_the_x86_64_layout() {
        assert_eq!(std::mem::size_of::<libc::sysinfo>(), SYSINFO_SIZE);
        let info = VeSysinfo {
            uptime: 42,
            loads: [1 << 16, 2, 3],
            totalram: 256 << 20,
            freeram: 5,
            sharedram: 6,
            bufferram: 7,
            totalswap: 8,
            freeswap: 9,
            procs: 10,
        };
        let b = info.to_bytes();
        let word = |off: usize| u64::from_ne_bytes(b[off..off + 8].try_into().expect("8"));
        assert_eq!(word(0), 42);
        assert_eq!(word(8), 1 << 16);
        assert_eq!(word(32), 256 << 20);
        assert_eq!(word(72), 9);
        assert_eq!(u16::from_ne_bytes([b[80], b[81]]), 10);
        assert_eq!(u32::from_ne_bytes(b[104..108].try_into().expect("4")), 1);
    }

    #[test]
    fn uptime_rounds_up_like_the_kernels() {
        let now = ve_uptime(0);
        let host = std::fs::read_to_string("/proc/uptime").expect("read /proc/uptime");
        let whole: i64 = host.split('.').next().expect("field").parse().expect("number");
        assert!((whole..=whole + 2).contains(&now), "{now} vs {host}");
        // A namespace started 100 s ago, an offset of -(host - 100 s).
        let offset = -(i128::from(whole - 100) * 1_000_000_000);
        let ve = ve_uptime(offset);
        assert!((100..=103).contains(&ve), "{ve}");
    }
}
