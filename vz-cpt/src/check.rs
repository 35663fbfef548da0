//! The checks made before anything is frozen (criu-vz.md §3 "Checks vz-cpt should make"):
//! each refusal stands for a case in which CRIU fails late, drops a process without a word,
//! or writes a dump that cannot be restored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nix::net::if_::InterfaceFlags;

use crate::error::{CptError, Refusal, Result};

/// What a process looks like in `/proc/<pid>/stat`.
#[derive(Debug, Clone)]
pub(crate) struct Stat {
    pub(crate) comm: String,
    pub(crate) state: char,
    pub(crate) ppid: i32,
    pub(crate) session: i32,
}

/// Reads `/proc/<pid>/stat`; `None` when the process is gone.
pub(crate) fn stat(pid: i32) -> Option<Stat> {
    let st = procfs::process::Process::new(pid).ok()?.stat().ok()?;
    Some(Stat { comm: st.comm, state: st.state, ppid: st.ppid, session: st.session })
}

/// The pids listed in `cgroup.procs` files (and the files of their sub-cgroups), sorted.
///
/// # Errors
/// [`CptError::Cgroup`] when a file cannot be read.
pub(crate) fn tasks(cgroup_procs: &[PathBuf]) -> Result<Vec<i32>> {
    let mut pids = Vec::new();
    for procs in cgroup_procs {
        pids.extend(vz_cgroup::tree::tasks(procs.parent().unwrap_or(Path::new("/")))?);
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// What [`precheck`] looks at.
#[derive(Debug)]
pub(crate) struct Subject<'a> {
    pub(crate) init_pid: i32,
    pub(crate) cgroup_procs: &'a [PathBuf],
    pub(crate) host_interfaces: &'a [String],
    pub(crate) syscall_listener_outside: bool,
}

/// Checks that the VE can be dumped and restored whole. `Ok(Err(refusal))` names the first
/// problem found; `Err` is a failure to look.
pub(crate) fn precheck(s: &Subject<'_>) -> Result<std::result::Result<(), Refusal>> {
    let init = s.init_pid;
    let Some(init_stat) = stat(init) else {
        return Ok(Err(Refusal::NoInit { pid: init }));
    };
    if init_stat.session != init {
        return Ok(Err(Refusal::InitNotSessionLeader { pid: init }));
    }
    if s.syscall_listener_outside {
        return Ok(Err(Refusal::SeccompListenerOutside));
    }
    let init_time = ns_link(init, "time");
    let mut stats: HashMap<i32, Stat> = HashMap::new();
    let pids = tasks(s.cgroup_procs)?;
    for &pid in &pids {
        if let Some(st) = stat(pid) {
            stats.insert(pid, st);
        }
    }
    for (&pid, st) in &stats {
        let comm = st.comm.clone();
        // A short-lived task may exit (or lose its parent) while its ancestry is read:
        // only one that is still there and still outside the tree is refused.
        if !descends_from(pid, init) && stat(pid).is_some() && !descends_from(pid, init) {
            return Ok(Err(Refusal::ForeignProcess { pid, comm }));
        }
        let time = ns_link(pid, "time");
        if time.is_some() && time != init_time {
            return Ok(Err(Refusal::TimeNamespace { pid, comm }));
        }
        if pid != init && outside_session(pid) && stat(pid).is_some() {
            return Ok(Err(Refusal::OutsideSession { pid, comm }));
        }
        if holds_seccomp_listener(pid) {
            return Ok(Err(Refusal::SeccompListenerInside { pid, comm }));
        }
    }
    if let Some(name) = down_interface(s.host_interfaces)? {
        return Ok(Err(Refusal::HostInterfaceDown { name }));
    }
    Ok(Ok(()))
}

/// Whether `pid` is `init` or a descendant of it (walking the parents by `/proc`).
fn descends_from(mut pid: i32, init: i32) -> bool {
    for _ in 0..4096 {
        if pid == init {
            return true;
        }
        match stat(pid) {
            Some(st) if st.ppid > 1 => pid = st.ppid,
            _ => return false,
        }
    }
    false
}

fn ns_link(pid: i32, ns: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok()
}

/// Whether the innermost session or process group id of `pid` is 0: a leader outside the
/// process's pid namespace (`NSsid`/`NSpgid` of `/proc/<pid>/status`).
fn outside_session(pid: i32) -> bool {
    let Ok(status) = procfs::process::Process::new(pid).and_then(|p| p.status()) else {
        return false;
    };
    [status.nssid, status.nspgid].iter().flatten().any(|ids| ids.last() == Some(&0))
}

fn holds_seccomp_listener(pid: i32) -> bool {
    let Ok(fds) = procfs::process::Process::new(pid).and_then(|p| p.fd()) else {
        return false;
    };
    fds.flatten().any(|fd| {
        matches!(&fd.target, procfs::process::FDTarget::AnonInode(name) if name == "seccomp notify")
    })
}

/// The first of `names` that is missing or not up in the caller's network namespace.
fn down_interface(names: &[String]) -> Result<Option<String>> {
    if names.is_empty() {
        return Ok(None);
    }
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| CptError::sys("getifaddrs", e))?;
    let up: Vec<String> = addrs
        .filter(|a| a.flags.contains(InterfaceFlags::IFF_UP))
        .map(|a| a.interface_name)
        .collect();
    Ok(names.iter().find(|n| !up.contains(n)).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_of_self_matches_the_kernels_answers() {
        // The session may be 0 (a task of the kernel's own session, as under some CI runners).
        let st = stat(nix::unistd::getpid().as_raw()).unwrap();
        assert_eq!(st.ppid, nix::unistd::getppid().as_raw());
        assert_eq!(st.session, nix::unistd::getsid(None).unwrap().as_raw());
    }

    #[test]
    fn a_process_descends_from_itself_and_not_from_a_child() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(descends_from(me, me));
        let child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let cpid = i32::try_from(child.id()).unwrap();
        assert!(descends_from(cpid, me));
        assert!(!descends_from(me, cpid));
        let mut child = child;
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn loopback_is_up_and_a_made_up_name_is_not() {
        assert_eq!(down_interface(&["lo".to_owned()]).unwrap(), None);
        let name = "vzcpt-none0".to_owned();
        assert_eq!(down_interface(std::slice::from_ref(&name)).unwrap(), Some(name));
    }
}
