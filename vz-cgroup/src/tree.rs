//! A cgroup and the cgroups below it: its tasks, making a path level by level, removal.
//!
//! An init inside a VE (systemd) makes cgroups of its own below the VE's and moves its tasks
//! there, so a VE's tasks are those of its directory *and every directory below*, and
//! removing the VE's cgroup means removing those first.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{CgroupError, Result};
use crate::knob;

/// The pids in `dir`'s `cgroup.procs` and in those of every cgroup below it, sorted, without
/// repeats; empty when `dir` does not exist.
///
/// # Errors
/// [`CgroupError::Io`] when a `cgroup.procs` of an existing cgroup cannot be read.
pub fn tasks(dir: &Path) -> Result<Vec<i32>> {
    let mut dirs = vec![dir.to_owned()];
    subdirs_deepest_first(dir, &mut dirs);
    let mut pids = Vec::new();
    for dir in dirs {
        let procs = dir.join("cgroup.procs");
        match std::fs::read_to_string(&procs) {
            Ok(text) => pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
            // Removed between the listing and the read: it had no tasks left.
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(CgroupError::io("read", procs, e)),
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// Whether a cgroup2 cgroup or any cgroup below it has a task, from its `populated` flag: one
/// read the kernel answers for the whole subtree at once. A walk of the sub-cgroups ([`tasks`])
/// can miss a task an init inside moves during the walk (from a cgroup not yet read into one
/// already read), and so see an empty VE that is not. `Ok(false)` when
/// `dir` does not exist.
///
/// # Errors
/// [`CgroupError::Io`] when `cgroup.events` of an existing cgroup cannot be read (a v1
/// cgroup has none).
pub fn populated(dir: &Path) -> Result<bool> {
    let events = dir.join("cgroup.events");
    match std::fs::read_to_string(&events) {
        Ok(text) => Ok(text.lines().any(|l| l.trim() == "populated 1")),
        Err(e) if e.kind() == ErrorKind::NotFound && !dir.exists() => Ok(false),
        Err(e) => Err(CgroupError::io("read", events, e)),
    }
}

/// The cgroup at or below `dir` whose `cgroup.procs` lists `pid` (e.g. systemd's
/// `init.scope` below a VE's cgroup), if any.
pub fn holding(dir: &Path, pid: i32) -> Option<PathBuf> {
    let mut dirs = vec![dir.to_owned()];
    subdirs_deepest_first(dir, &mut dirs);
    dirs.into_iter().find(|d| {
        std::fs::read_to_string(d.join("cgroup.procs"))
            .is_ok_and(|t| t.lines().any(|l| l.trim().parse() == Ok(pid)))
    })
}

/// Appends every directory below `dir` to `out`, children before their parents (the order
/// they can be removed in); nothing when `dir` cannot be listed.
pub fn subdirs_deepest_first(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let path = entry.path();
            subdirs_deepest_first(&path, out);
            out.push(path);
        }
    }
}

/// Makes `mount`/`relative` and every missing level above it. In a v1 `cpuset` hierarchy
/// (`cpuset` true) each new level gets its parent's `cpuset.cpus` and `cpuset.mems`, since a
/// cpuset cgroup with empty sets refuses tasks: the one place that fills them.
///
/// # Errors
/// [`CgroupError::Io`] (`create`) or the knob's error naming the level that failed.
pub fn make_path(mount: &Path, relative: &Path, cpuset: bool) -> Result<()> {
    let mut parent = mount.to_path_buf();
    for part in relative.iter() {
        let child = parent.join(part);
        make_dir(&child)?;
        if cpuset {
            fill_cpuset(&parent, &child)?;
        }
        parent = child;
    }
    Ok(())
}

/// Makes the cgroup directory `dir` (its parent exists); one that exists already is fine.
///
/// # Errors
/// [`CgroupError::Io`] (`create`).
pub fn make_dir(dir: &Path) -> Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => Err(CgroupError::io("create", dir, e)),
        _ => Ok(()),
    }
}

/// Copies `cpuset.cpus`/`cpuset.mems` from `parent` into `child` where the child's are empty.
fn fill_cpuset(parent: &Path, child: &Path) -> Result<()> {
    for name in ["cpuset.cpus", "cpuset.mems"] {
        if knob::read(&child.join(name))?.trim().is_empty() {
            knob::write(&child.join(name), knob::read(&parent.join(name))?.trim())?;
        }
    }
    Ok(())
}

/// Removes the cgroups `dirs` and every cgroup below each, deepest first. A cgroup whose
/// exited tasks are not reaped yet is busy (`EBUSY`): that is retried until `timeout`.
/// Directories already gone are fine.
///
/// # Errors
/// [`CgroupError::Io`] (`remove`) for a directory that stays busy or cannot be removed.
pub fn remove(dirs: &[PathBuf], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut all = Vec::new();
    for dir in dirs {
        subdirs_deepest_first(dir, &mut all);
        all.push(dir.clone());
    }
    for dir in all {
        loop {
            match std::fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(CgroupError::io("remove", dir, e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain directory tree stands in for a cgroup tree: the walk and the file reads are
    /// the same (the kernel behaviour is tested in the crates' kernel tests).
    #[test]
    fn tasks_come_from_every_level_and_missing_dirs_have_none() {
        let root = tempfile::tempdir().unwrap();
        let ve = root.path().join("101");
        std::fs::create_dir_all(ve.join("init.scope/sub")).unwrap();
        std::fs::write(ve.join("cgroup.procs"), "7\n").unwrap();
        std::fs::write(ve.join("init.scope/cgroup.procs"), "1\n7\n").unwrap();
        std::fs::write(ve.join("init.scope/sub/cgroup.procs"), "30\n").unwrap();
        assert_eq!(tasks(&ve).unwrap(), vec![1, 7, 30]);
        assert_eq!(tasks(&root.path().join("102")).unwrap(), Vec::<i32>::new());
        assert_eq!(holding(&ve, 1), Some(ve.join("init.scope")));
        assert_eq!(holding(&ve, 30), Some(ve.join("init.scope/sub")));
        assert_eq!(holding(&ve, 31), None);
        let mut below = Vec::new();
        subdirs_deepest_first(&ve, &mut below);
        assert_eq!(below, vec![ve.join("init.scope/sub"), ve.join("init.scope")]);
    }

    #[test]
    fn populated_reads_the_flag_and_a_missing_cgroup_has_no_task() {
        let root = tempfile::tempdir().unwrap();
        let ve = root.path().join("101");
        std::fs::create_dir(&ve).unwrap();
        assert!(populated(&ve).is_err(), "a cgroup without cgroup.events (v1) has no answer");
        std::fs::write(ve.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert!(populated(&ve).unwrap());
        std::fs::write(ve.join("cgroup.events"), "populated 0\nfrozen 0\n").unwrap();
        assert!(!populated(&ve).unwrap());
        assert!(!populated(&root.path().join("102")).unwrap());
    }

    #[test]
    fn make_path_fills_each_new_cpuset_level_from_its_parent() {
        let mount = tempfile::tempdir().unwrap();
        std::fs::write(mount.path().join("cpuset.cpus"), "0-1\n").unwrap();
        std::fs::write(mount.path().join("cpuset.mems"), "0\n").unwrap();
        // A plain directory has no knobs: make them as the kernel would, empty.
        for level in ["vz", "vz/101"] {
            let dir = mount.path().join(level);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("cpuset.cpus"), "").unwrap();
            std::fs::write(dir.join("cpuset.mems"), "").unwrap();
        }
        make_path(mount.path(), Path::new("vz/101"), true).unwrap();
        assert_eq!(knob::read(&mount.path().join("vz/101/cpuset.cpus")).unwrap(), "0-1");
        assert_eq!(knob::read(&mount.path().join("vz/101/cpuset.mems")).unwrap(), "0");
    }
}
