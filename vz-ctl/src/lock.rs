//! The per-CT lock file, with OpenVZ's semantics (reference §1.2).
//!
//! `<LOCKDIR>/<CTID>.lck` holds `"<pid>\n<status>\n"`. It is made by writing a temporary file
//! and `link()`ing it into place, which is atomic; a lock whose pid no longer exists is stale
//! and removed. The lock is released (unlinked) when the guard drops.
//!
//! Two differences from OpenVZ, both about concurrency:
//! - a lock held by a live process is waited for, up to a bound (`LOCK_WAIT` seconds in
//!   vz.conf, default [`DEFAULT_WAIT`]), before `Container already locked` (exit 9): twenty
//!   `vzctl set --save` at once then all succeed, one after another, none losing an update;
//! - a stale lock is removed under an `flock` of the lock directory, after reading it again,
//!   so that two processes taking over the same dead holder's lock cannot remove each
//!   other's fresh lock.
//!
//! Taking over a dead holder's lock does not repair what it left: that is
//! [`crate::intent::recover`]'s job, run by the caller once the lock is held.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::ctid::Ctid;
use crate::error::{CtlError, IoContext, Result};

/// How long a lock held by a live process is waited for when vz.conf does not say.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// How old an empty temporary file without a pid in its name (an older vzctl's) must be
/// before another taker removes it as a killed one's.
const DEAD_TEMPORARY_AGE: Duration = Duration::from_secs(30);

/// A held CT lock; dropping it removes the lock file.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    took_over: bool,
}

impl Lock {
    /// Takes the lock of `ctid` in `lock_dir` (created if missing), waiting up to `wait` while
    /// a live process holds it.
    ///
    /// # Errors
    /// [`CtlError::Locked`] if a live process holds it for longer, [`CtlError::LockFailed`]
    /// otherwise.
    pub fn acquire(lock_dir: &Path, ctid: Ctid, wait: Duration) -> Result<Lock> {
        std::fs::create_dir_all(lock_dir).map_err(CtlError::LockFailed)?;
        let path = lock_dir.join(format!("{ctid}.lck"));
        // The taker's pid is in the temporary's name from the moment it exists: one killed
        // before it wrote the pid into it is told dead at once ([`remove_dead_temporaries`]).
        let mut temp = tempfile::Builder::new()
            .prefix(&format!("{ctid}.lck{}.", std::process::id()))
            .tempfile_in(lock_dir)
            .map_err(CtlError::LockFailed)?;
        writeln!(temp, "{}\n", std::process::id()).map_err(CtlError::LockFailed)?;
        temp.flush().map_err(CtlError::LockFailed)?;
        let deadline = Instant::now() + wait;
        let mut took_over = false;
        let mut attempt: u64 = 0;
        loop {
            match std::fs::hard_link(temp.path(), &path) {
                Ok(()) => {
                    remove_dead_temporaries(lock_dir, ctid, temp.path());
                    return Ok(Lock { path, took_over });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(CtlError::LockFailed(e)),
            }
            match live_holder(&path) {
                Some(pid) => {
                    if Instant::now() >= deadline {
                        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                            .unwrap_or_default();
                        tracing::info!("Locked by: pid {pid}, cmdline {}", cmdline.trim_end());
                        return Err(CtlError::Locked);
                    }
                    // Spread the waiters out a little (pid-based jitter, no RNG needed).
                    attempt += 1;
                    let jitter = u64::from(std::process::id() % 7);
                    std::thread::sleep(Duration::from_millis(5 + jitter + attempt.min(20)));
                }
                None => took_over |= remove_stale(lock_dir, &path)?,
            }
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the lock was taken over from a holder that had died.
    pub fn took_over(&self) -> bool {
        self.took_over
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path).op("remove lock", &self.path) {
            tracing::warn!("{e}");
        }
    }
}

/// Removes the temporary files `<CTID>.lck<pid>.XXXXXX` of lock takers that were killed
/// before they could link them (a dead pid in the name; an older vzctl's `<CTID>.lckXXXXXX`
/// by the pid written in it, or by age while empty); `ours` is kept.
fn remove_dead_temporaries(lock_dir: &Path, ctid: Ctid, ours: &Path) {
    let prefix = format!("{ctid}.lck");
    let Ok(entries) = std::fs::read_dir(lock_dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let temporary = name.len() > prefix.len() && name.starts_with(&prefix);
        let named_pid = name
            .get(prefix.len()..)
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        let written = entry.metadata().and_then(|m| m.modified()).ok();
        // An empty temporary without a pid in its name may belong to a taker that has not
        // written its pid yet: it is a killed taker's only once it is old.
        let empty = entry.metadata().is_ok_and(|m| m.len() == 0);
        let old = written.is_some_and(|t| t.elapsed().is_ok_and(|age| age >= DEAD_TEMPORARY_AGE));
        let dead = match named_pid {
            Some(pid) => !alive_since(pid, written),
            None if empty => old,
            None => live_holder(&path).is_none(),
        };
        if temporary && path != ours && dead {
            tracing::debug!("removing {} of a killed lock taker", path.display());
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Removes the lock at `path` if it is (still) stale, holding an `flock` of `lock_dir` so
/// that no other process removes a lock taken meanwhile. Returns whether it removed one.
fn remove_stale(lock_dir: &Path, path: &Path) -> Result<bool> {
    let dir = std::fs::File::open(lock_dir).map_err(CtlError::LockFailed)?;
    let _guard = nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| CtlError::LockFailed(errno.into()))?;
    if !path.exists() || live_holder(path).is_some() {
        return Ok(false);
    }
    tracing::info!("Removing stale lock file {}", path.display());
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CtlError::LockFailed(e)),
    }
}

/// The pid in the lock file at `path` if that process is alive. A lock file being written
/// (the link is made only after the pid is written, so never) or unparsable counts as dead.
///
/// A process that started after the lock file was written is not its holder: the holder died
/// and its pid was reused.
fn live_holder(path: &Path) -> Option<u32> {
    let pid = holder(path)?;
    let written = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    alive_since(pid, written).then_some(pid)
}

/// Whether `pid` runs and is the process that wrote a file at `written` (not a later one
/// that reused the pid).
fn alive_since(pid: u32, written: Option<std::time::SystemTime>) -> bool {
    let alive = Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid);
    let reused = match (started_at(pid), written) {
        // Start times are known to the boot time's second: allow for it.
        (Some(started), Some(written)) => started > written + Duration::from_secs(2),
        _ => false,
    };
    alive && !reused
}

/// When the process `pid` started (boot time plus its start time in clock ticks).
pub(crate) fn started_at(pid: u32) -> Option<std::time::SystemTime> {
    let stat = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?.stat().ok()?;
    let boot = procfs::boot_time_secs().ok()?;
    let hz = procfs::ticks_per_second().max(1);
    let since_boot = Duration::from_millis(stat.starttime.saturating_mul(1000) / hz);
    Some(std::time::UNIX_EPOCH + Duration::from_secs(boot) + since_boot)
}

/// Whether `pid` is a zombie: it has exited and holds nothing any more.
fn is_zombie(pid: u32) -> bool {
    i32::try_from(pid)
        .ok()
        .and_then(|pid| procfs::process::Process::new(pid).ok()?.stat().ok())
        .is_some_and(|stat| stat.state == 'Z')
}

/// The pid recorded in a lock file, if it can be read.
fn holder(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.lines().next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_WAIT: Duration = Duration::ZERO;

    #[test]
    fn a_second_lock_on_the_same_ct_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ctid: Ctid = "101".parse().unwrap();
        let lock = Lock::acquire(dir.path(), ctid, NO_WAIT).unwrap();
        assert!(matches!(Lock::acquire(dir.path(), ctid, NO_WAIT), Err(CtlError::Locked)));
        let other = Lock::acquire(dir.path(), "102".parse().unwrap(), NO_WAIT).unwrap();
        drop(lock);
        drop(other);
        let mut names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        names.retain(|e| e.file_name().to_string_lossy().starts_with("101"));
        assert!(names.is_empty(), "no lock or temporary file left: {names:?}");
        Lock::acquire(dir.path(), ctid, NO_WAIT).unwrap();
    }

    #[test]
    fn a_lock_is_waited_for_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let ctid: Ctid = "101".parse().unwrap();
        let lock = Lock::acquire(dir.path(), ctid, NO_WAIT).unwrap();
        let released = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(lock);
        });
        let started = Instant::now();
        let second = Lock::acquire(dir.path(), ctid, Duration::from_secs(5)).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert!(!second.took_over());
        released.join().unwrap();
    }

    #[test]
    fn a_stale_lock_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        // A pid above pid_max never exists.
        std::fs::write(dir.path().join("101.lck"), "99999999\n\n").unwrap();
        let lock = Lock::acquire(dir.path(), "101".parse().unwrap(), NO_WAIT).unwrap();
        assert_eq!(holder(lock.path()), Some(std::process::id()));
        assert!(lock.took_over());
    }

    #[test]
    fn a_lock_of_a_reused_pid_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("5.lck");
        // Our pid, but in a lock file written long before this process started.
        std::fs::write(&path, format!("{}\n\n", std::process::id())).unwrap();
        assert_eq!(live_holder(&path), Some(std::process::id()));
        let old = std::time::SystemTime::now() - Duration::from_secs(86_400 * 365 * 20);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(old).unwrap();
        assert_eq!(live_holder(&path), None);
        assert!(Lock::acquire(dir.path(), "5".parse().unwrap(), NO_WAIT).unwrap().took_over());
    }

    #[test]
    fn temporaries_of_killed_lock_takers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("8.lckAbC123"), "99999999\n\n").unwrap();
        std::fs::write(dir.path().join("80.lck"), "99999999\n\n").unwrap();
        let lock = Lock::acquire(dir.path(), "8".parse().unwrap(), NO_WAIT).unwrap();
        assert!(!dir.path().join("8.lckAbC123").exists());
        assert!(dir.path().join("80.lck").exists(), "another CT's lock is not touched");
        drop(lock);
    }

    #[test]
    fn a_killed_takers_empty_temporary_is_removed_at_once_by_the_pid_in_its_name() {
        let dir = tempfile::tempdir().unwrap();
        // Killed between making its temporary and writing its pid into it.
        std::fs::write(dir.path().join("9.lck99999999.AbC123"), "").unwrap();
        // A live taker that has not written its pid yet.
        let live = format!("9.lck{}.XyZ789", std::process::id());
        std::fs::write(dir.path().join(&live), "").unwrap();
        let lock = Lock::acquire(dir.path(), "9".parse().unwrap(), NO_WAIT).unwrap();
        assert!(!dir.path().join("9.lck99999999.AbC123").exists(), "the dead one goes");
        assert!(dir.path().join(&live).exists(), "the live one stays");
        drop(lock);
    }

    #[test]
    fn an_unparsable_lock_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("7.lck"), "garbage").unwrap();
        Lock::acquire(dir.path(), "7".parse().unwrap(), NO_WAIT).unwrap();
    }

    #[test]
    fn many_threads_taking_over_a_stale_lock_never_share_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("9.lck"), "99999999\n\n").unwrap();
        let inside = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (dir, inside) = (dir.path().to_owned(), inside.clone());
                std::thread::spawn(move || {
                    // Threads share a pid: each holds the lock only while the file is its.
                    match Lock::acquire(&dir, "9".parse().unwrap(), NO_WAIT) {
                        Ok(lock) => {
                            let n = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                            inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                            drop(lock);
                            n
                        }
                        Err(CtlError::Locked) => 0,
                        Err(e) => panic!("{e}"),
                    }
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 0, "two holders at once");
        }
    }
}
