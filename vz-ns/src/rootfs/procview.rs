//! The VE's own view of its resources: files of a lxcfs mount (one FUSE server on the host
//! for every VE, which answers each read from the reader's cgroups and pid namespace) bound
//! over the VE's /proc/meminfo, /proc/cpuinfo, /proc/stat, /proc/loadavg, /proc/diskstats,
//! /proc/swaps and /sys/devices/system/cpu/online — as LXC's lxcfs mount hook does, but made
//! by host root before the VE's mount namespace is locked, so the VE cannot unmount them to
//! see the host's files.
//!
//! /proc/uptime stays the kernel's: the VE's own time namespace ([`crate::init`]) makes it,
//! like sysinfo(2), count from the VE's start, and CRIU carries that clock across a
//! checkpoint; lxcfs's file counts the age of the VE's init process instead, which starts
//! again at 0 when a restore makes the processes anew (measured: 0.19 s after a restore
//! while the VE's clock went on from 3 s).
//!
//! A VE whose lxcfs dies keeps running: its reads of these files fail with ENOTCONN
//! ("Transport endpoint is not connected") at once, nothing hangs.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::{StepResult, mount_flags};

/// Where a lxcfs instance serves its files, and which of them a VE gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcView {
    /// The lxcfs mount directory (its `proc/` and `sys/` are bound into the VE).
    pub dir: PathBuf,
    /// Whether /proc/meminfo is the VE's (OpenVZ's `MEMINFO`; `none` leaves the host's).
    pub meminfo: bool,
}

/// The /proc files lxcfs renders per VE (/proc/slabinfo, root-only, and /proc/uptime, the
/// VE's own through its time namespace, stay the kernel's).
const PROC_FILES: [&str; 6] = ["meminfo", "cpuinfo", "stat", "loadavg", "diskstats", "swaps"];

/// The sysfs files lxcfs renders per VE (`nproc` reads the online CPUs).
const SYS_FILES: [&str; 1] = ["sys/devices/system/cpu/online"];

impl ProcView {
    /// The pairs (file of the lxcfs mount, path under the VE's root) this view binds.
    fn files(&self) -> impl Iterator<Item = (PathBuf, PathBuf)> + '_ {
        let proc = PROC_FILES
            .iter()
            .filter(|name| self.meminfo || **name != "meminfo")
            .map(|name| format!("proc/{name}"));
        proc.chain(SYS_FILES.iter().map(|name| (*name).to_owned()))
            .map(|rel| (self.dir.join(&rel), PathBuf::from(rel)))
    }
}

/// Binds the view's files over the VE's (under `root`, with its /proc and /sys mounted),
/// read-only, `nosuid,nodev,noexec`. A file this lxcfs does not serve, or the VE's kernel
/// lacks, is left as it is.
pub(super) fn bind(root: &Path, view: &ProcView) -> StepResult {
    for (source, rel) in view.files() {
        let target = root.join(&rel);
        if std::fs::symlink_metadata(&target).is_err() {
            continue;
        }
        match std::fs::symlink_metadata(&source) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("lxcfs file {}: {e}", source.display())),
        }
        mount_flags(Some(&source), &target, None, MsFlags::MS_BIND, None)?;
        mount_flags(None::<&Path>, &target, None, super::READ_ONLY_REMOUNT, None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_bound_unless_meminfo_is_none() {
        let mut view = ProcView { dir: "/var/lib/lxcfs".into(), meminfo: true };
        let files: Vec<_> = view.files().collect();
        assert_eq!(files.len(), 7);
        assert!(files.contains(&("/var/lib/lxcfs/proc/meminfo".into(), "proc/meminfo".into())));
        assert!(files.contains(&(
            "/var/lib/lxcfs/sys/devices/system/cpu/online".into(),
            "sys/devices/system/cpu/online".into()
        )));
        view.meminfo = false;
        let files: Vec<_> = view.files().map(|(_, rel)| rel).collect();
        assert_eq!(files.len(), 6);
        assert!(!files.contains(&PathBuf::from("proc/meminfo")));
        assert!(!files.contains(&PathBuf::from("proc/uptime")), "the kernel's, time-namespaced");
    }
}
