//! The per-CT lock file, with OpenVZ's semantics (reference §1.2).
//!
//! `<LOCKDIR>/<CTID>.lck` holds `"<pid>\n<status>\n"`. It is made by writing a temporary file
//! and `link()`ing it into place, which is atomic; a lock whose pid no longer exists is stale
//! and removed. The lock is released (unlinked) when the guard drops.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ctid::Ctid;
use crate::error::{CtlError, IoContext, Result};

/// A held CT lock; dropping it removes the lock file.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

impl Lock {
    /// Takes the lock of `ctid` in `lock_dir` (created if missing).
    ///
    /// # Errors
    /// [`CtlError::Locked`] if a live process holds it, [`CtlError::LockFailed`] otherwise.
    pub fn acquire(lock_dir: &Path, ctid: Ctid) -> Result<Lock> {
        std::fs::create_dir_all(lock_dir).map_err(CtlError::LockFailed)?;
        let path = lock_dir.join(format!("{ctid}.lck"));
        for _ in 0..3 {
            let mut temp = tempfile::Builder::new()
                .prefix(&format!("{ctid}.lck"))
                .tempfile_in(lock_dir)
                .map_err(CtlError::LockFailed)?;
            writeln!(temp, "{}\n", std::process::id()).map_err(CtlError::LockFailed)?;
            match std::fs::hard_link(temp.path(), &path) {
                Ok(()) => return Ok(Lock { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(CtlError::LockFailed(e)),
            }
            match holder(&path) {
                Some(pid) if Path::new(&format!("/proc/{pid}")).exists() => {
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                        .unwrap_or_default();
                    tracing::info!("Locked by: pid {pid}, cmdline {}", cmdline.trim_end());
                    return Err(CtlError::Locked);
                }
                _ => {
                    tracing::info!("Removing stale lock file {}", path.display());
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(CtlError::LockFailed(e)),
                    }
                }
            }
        }
        Err(CtlError::LockFailed(std::io::Error::other("lock file keeps changing")))
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path).op("remove lock", &self.path) {
            tracing::warn!("{e}");
        }
    }
}

/// The pid recorded in a lock file, if it can be read.
fn holder(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.lines().next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_ct_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ctid: Ctid = "101".parse().unwrap();
        let lock = Lock::acquire(dir.path(), ctid).unwrap();
        assert!(matches!(Lock::acquire(dir.path(), ctid), Err(CtlError::Locked)));
        let other = Lock::acquire(dir.path(), "102".parse().unwrap()).unwrap();
        drop(lock);
        drop(other);
        assert!(!dir.path().join("101.lck").exists());
        Lock::acquire(dir.path(), ctid).unwrap();
    }

    #[test]
    fn a_stale_lock_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        // A pid above pid_max never exists.
        std::fs::write(dir.path().join("101.lck"), "99999999\n\n").unwrap();
        let lock = Lock::acquire(dir.path(), "101".parse().unwrap()).unwrap();
        assert_eq!(holder(lock.path()), Some(std::process::id()));
    }

    #[test]
    fn an_unparsable_lock_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("7.lck"), "garbage").unwrap();
        Lock::acquire(dir.path(), "7".parse().unwrap()).unwrap();
    }
}
