//! Waiting for a process to end without sleeping: a pidfd that polls readable when the
//! process exits ([`ExitWatch`]), and the start's settle check built on it
//! ([`wait_settled`]): a fresh init either dies at once (a broken `/sbin/init`) or goes to
//! sleep waiting for its children, and the caller wants to know which as soon as it shows.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::time::TimeSpec;
use nix::unistd::Pid;

use crate::error::{NsError, Result};
use crate::sys;

/// A pidfd of one process: [`ExitWatch::wait`] returns as soon as it exits.
#[derive(Debug)]
pub struct ExitWatch {
    fd: Option<OwnedFd>,
}

impl ExitWatch {
    /// Watches the process `pid` (a process that is already gone is reported exited).
    ///
    /// # Errors
    /// [`NsError::Sys`] when pidfd_open fails for another reason than a missing process.
    pub fn open(pid: i32) -> Result<ExitWatch> {
        match sys::pidfd_open(Pid::from_raw(pid)) {
            Ok(fd) => Ok(ExitWatch { fd: Some(fd) }),
            Err(Errno::ESRCH) => Ok(ExitWatch { fd: None }),
            Err(e) => Err(NsError::sys("pidfd_open", e)),
        }
    }

    /// Waits up to `timeout` for the process to exit (become a zombie or disappear);
    /// whether it has.
    ///
    /// # Errors
    /// [`NsError::Sys`] when poll fails.
    pub fn wait(&self, timeout: Duration) -> Result<bool> {
        let Some(fd) = &self.fd else { return Ok(true) };
        // ppoll: the timeout in nanoseconds (poll's milliseconds would round a short wait
        // of the settle check up to a whole millisecond).
        let timeout = TimeSpec::from_duration(timeout.min(Duration::from_secs(3600)));
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match ppoll(&mut fds, Some(timeout), None) {
            Ok(n) => Ok(n > 0),
            Err(Errno::EINTR) => Ok(false),
            Err(e) => Err(NsError::sys("poll a pidfd", e)),
        }
    }
}

/// How a freshly released process turned out within [`wait_settled`]'s limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// It exited.
    Exited,
    /// It was seen asleep for half a millisecond without running in between: it waits
    /// for something.
    Sleeping,
    /// Neither within the limit: it still runs.
    Running,
}

/// How long a process must be seen asleep without running in between to count as settled.
const SETTLE: Duration = Duration::from_micros(500);

/// How often [`wait_settled`] looks at the process.
const LOOK_EVERY: Duration = Duration::from_micros(250);

/// Waits until the process `pid` exits or settles asleep, at most `limit`: the first thing
/// a working init does is wait (for its boot script, for events), while a broken one exits.
///
/// Settled means asleep (state `S`) on looks 0.5 ms apart with no time on a CPU in between
/// (its schedstat's count of times it was scheduled in is unchanged), so a process briefly
/// blocked while starting up, or one that sleeps and wakes again and again, is not taken
/// for settled; where schedstat is missing, two sleeping looks 0.5 ms apart. The
/// exit is seen at once (a pidfd). A process already exiting (`PF_EXITING`) may sleep on
/// its way out (a pid namespace's init waits for the namespace to empty), and that is not
/// a settled init.
///
/// # Errors
/// Those of [`ExitWatch`].
pub fn wait_settled(pid: i32, limit: Duration) -> Result<Settled> {
    let watch = ExitWatch::open(pid)?;
    let Some(files) = Looker::open(pid) else { return Ok(Settled::Exited) };
    let begin = Instant::now();
    let deadline = begin + limit;
    // Since when, and at which schedule-in count, the process has been seen asleep.
    let mut asleep_since: Option<(Instant, Option<u64>)> = None;
    loop {
        let now = Instant::now();
        match files.look() {
            (Phase::Gone, _) => return Ok(Settled::Exited),
            (Phase::Busy, _) => asleep_since = None,
            (Phase::Asleep, count) => match asleep_since {
                Some((since, seen)) if seen == count => {
                    if now.duration_since(since) >= SETTLE {
                        return Ok(Settled::Sleeping);
                    }
                }
                _ => asleep_since = Some((now, count)),
            },
        }
        if now >= deadline {
            return Ok(Settled::Running);
        }
        if watch.wait(LOOK_EVERY)? {
            return Ok(Settled::Exited);
        }
    }
}

/// The process's /proc `stat` and `schedstat`, opened once and read again at offset 0 for
/// each look (two reads instead of opening the files each time: the looks compete for the
/// CPU with the process starting up). The open files stay bound to that process: once it
/// is reaped, reading fails, even if its pid is reused.
struct Looker {
    stat: std::fs::File,
    schedstat: Option<std::fs::File>,
}

impl Looker {
    /// Opens the files of `pid`; `None` when it is gone.
    fn open(pid: i32) -> Option<Looker> {
        let stat = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
        let schedstat = std::fs::File::open(format!("/proc/{pid}/schedstat")).ok();
        Some(Looker { stat, schedstat })
    }

    /// The process's phase, and while asleep the number of times it was scheduled in so
    /// far (`None` without schedstat).
    fn look(&self) -> (Phase, Option<u64>) {
        use procfs::FromRead;
        let mut buf = [0_u8; 1024];
        let Ok(n) = std::os::unix::fs::FileExt::read_at(&self.stat, &mut buf, 0) else {
            return (Phase::Gone, None);
        };
        let Ok(stat) = procfs::process::Stat::from_read(&buf[..n]) else {
            return (Phase::Gone, None);
        };
        match phase_of(&stat) {
            Phase::Asleep => (Phase::Asleep, self.schedule_ins()),
            phase => (phase, None),
        }
    }

    /// How many times the process was scheduled in (the third field of schedstat).
    fn schedule_ins(&self) -> Option<u64> {
        let mut buf = [0_u8; 128];
        let n = std::os::unix::fs::FileExt::read_at(self.schedstat.as_ref()?, &mut buf, 0).ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.split_whitespace().nth(2)?.parse().ok()
    }
}

/// The phase of a process from its stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Sleeping interruptibly (`S`) and not on its way out.
    Asleep,
    /// Running, in uninterruptible sleep, or exiting.
    Busy,
    /// A zombie, or no longer there.
    Gone,
}

fn phase_of(stat: &procfs::process::Stat) -> Phase {
    use procfs::process::{ProcState, StatFlags};
    let exiting = stat.flags().is_ok_and(|f| f.contains(StatFlags::PF_EXITING));
    match stat.state() {
        Ok(ProcState::Zombie | ProcState::Dead) | Err(_) => Phase::Gone,
        Ok(ProcState::Sleeping) if !exiting => Phase::Asleep,
        Ok(_) => Phase::Busy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn stat(line: &str) -> procfs::process::Stat {
        use procfs::FromRead;
        procfs::process::Stat::from_read(line.as_bytes()).unwrap()
    }

    /// A stat line of pid 42 named `a) b` in `state` with `flags`.
    fn line(state: char, flags: u32) -> String {
        let rest = "0 ".repeat(44);
        format!("42 (a) b) {state} 1 42 42 0 -1 {flags} {rest}")
    }

    #[test]
    fn a_sleeper_on_its_way_out_is_not_settled() {
        assert_eq!(phase_of(&stat(&line('S', 0x40_0000))), Phase::Asleep);
        assert_eq!(phase_of(&stat(&line('S', 0x40_0004))), Phase::Busy);
        assert_eq!(phase_of(&stat(&line('D', 0))), Phase::Busy);
        assert_eq!(phase_of(&stat(&line('R', 0))), Phase::Busy);
        assert_eq!(phase_of(&stat(&line('Z', 0x40_0004))), Phase::Gone);
    }

    #[test]
    fn an_exit_is_seen_at_once_and_a_sleeper_settles() {
        let mut quick = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        let pid = i32::try_from(quick.id()).unwrap();
        let begin = Instant::now();
        assert_eq!(wait_settled(pid, Duration::from_secs(5)).unwrap(), Settled::Exited);
        assert!(begin.elapsed() < Duration::from_secs(5));
        quick.wait().unwrap();
        let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = i32::try_from(sleeper.id()).unwrap();
        assert_eq!(wait_settled(pid, Duration::from_secs(5)).unwrap(), Settled::Sleeping);
        let watch = ExitWatch::open(pid).unwrap();
        assert!(!watch.wait(Duration::from_millis(1)).unwrap());
        sleeper.kill().unwrap();
        assert!(watch.wait(Duration::from_secs(5)).unwrap());
        sleeper.wait().unwrap();
        // A process that keeps running never settles.
        let mut busy = Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap();
        let pid = i32::try_from(busy.id()).unwrap();
        assert_eq!(wait_settled(pid, Duration::from_millis(300)).unwrap(), Settled::Running);
        busy.kill().unwrap();
        busy.wait().unwrap();
        // A process that is gone is reported exited.
        assert!(ExitWatch::open(pid).unwrap().wait(Duration::ZERO).unwrap());
    }
}
