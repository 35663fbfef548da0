//! The hostname of a running VE, set in its UTS namespace from the host: a thread of the
//! caller joins that namespace alone (setns(2) of a UTS namespace changes only the calling
//! thread) and calls sethostname(2), so nothing runs inside the VE and nothing forks.

use std::fs::File;
use std::os::fd::AsFd;

use nix::sched::{CloneFlags, setns};

use crate::error::{NsError, Result};

/// Refuses what is no host name for the kernel (empty, longer than 64 bytes, NUL, `/` or a
/// space in it).
pub(crate) fn check_hostname(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 64 || name.contains(['\0', '/', ' ']) {
        return Err(NsError::BadSpec {
            field: "hostname",
            reason: format!("{name:?} is not a host name"),
        });
    }
    Ok(())
}

/// Sets the kernel hostname of the VE whose init is `init_pid` (its UTS namespace).
///
/// # Errors
/// [`NsError::BadSpec`] for a name the kernel cannot hold, [`NsError::Io`] when the VE's
/// UTS namespace cannot be opened (no such init), [`NsError::Sys`] when joining it or
/// sethostname fails.
///
/// # Privileges
/// CAP_SYS_ADMIN over the VE's user namespace (host root).
pub fn set_hostname(init_pid: i32, name: &str) -> Result<()> {
    check_hostname(name)?;
    let path = format!("/proc/{init_pid}/ns/uts");
    let uts = File::open(&path).map_err(|e| NsError::io("open", &path, e))?;
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| -> Result<()> {
            setns(uts.as_fd(), CloneFlags::CLONE_NEWUTS)
                .map_err(|e| NsError::sys("join the VE's UTS namespace", e))?;
            nix::unistd::sethostname(name).map_err(|e| NsError::sys("sethostname", e))
        });
        worker.join().unwrap_or_else(|_| {
            Err(NsError::sys("set the VE's hostname (the thread panicked)", nix::Error::EIO))
        })
    })
}
