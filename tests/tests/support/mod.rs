//! Helpers shared by the crash and concurrency tests: what a VE may leave behind, checked
//! on the kernel and the file system after an operation, however it ended.
#![allow(dead_code, reason = "each test file uses part of it")]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::SystemTime;

use vz_tests::VzTree;

/// Whether the process was killed by SIGKILL (a `VZ_TEST_CRASH_AT` step, or the test).
pub(crate) fn killed(out: &Output) -> bool {
    out.status.signal() == Some(9)
}

/// Every mount point of this mount namespace at or below `dir`.
pub(crate) fn mounts_under(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect()
}

/// Loop devices whose backing file is below `dir`.
pub(crate) fn loops_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/sys/block").into_iter().flatten().flatten() {
        let backing = entry.path().join("loop/backing_file");
        if let Ok(file) = std::fs::read_to_string(&backing)
            && Path::new(file.trim()).starts_with(dir)
        {
            found.push(format!("{}: {}", entry.file_name().to_string_lossy(), file.trim()));
        }
    }
    found
}

/// The VE's cgroup directories that exist, on every mount of every cgroup hierarchy, and
/// were made before `since` (the start of the command that should have removed them).
///
/// A directory made after that is not vzctl's: on this shared machine another suite's CRIU
/// restore (`--manage-cgroups`) re-creates every cgroup directory that existed when it
/// dumped, ours included (seen here while the vz-cpt kernel tests ran).
pub(crate) fn cgroups_of(tree: &VzTree, ctid: &str, since: SystemTime) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter(|l| l.contains(" - cgroup"))
        .filter(|l| l.split(' ').nth(3) == Some("/"))
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| Path::new(p).join(tree.cgroup_parent()).join(ctid))
        .filter(|d| std::fs::metadata(d).and_then(|m| m.modified()).is_ok_and(|made| made < since))
        .collect()
}

/// What the VE `ctid` left that a VE which does not exist must not have: mounts, loop
/// devices, cgroups, lock and intent records, half-written configs, VE_ROOT and private
/// directories.
/// `since` is when the command that should have removed them started (see [`cgroups_of`]).
pub(crate) fn leftovers(tree: &VzTree, ctid: &str, since: SystemTime) -> Vec<String> {
    let mut left = Vec::new();
    let root = tree.path().join("root").join(ctid);
    let private = tree.path().join("private").join(ctid);
    left.extend(mounts_under(&root).into_iter().map(|m| format!("mount {m}")));
    left.extend(loops_under(&private).into_iter().map(|l| format!("loop {l}")));
    left.extend(
        cgroups_of(tree, ctid, since).into_iter().map(|c| format!("cgroup {}", c.display())),
    );
    left.extend(stale_records(tree, ctid));
    for file in [format!("conf/{ctid}.conf"), format!("root/{ctid}"), format!("private/{ctid}")] {
        if tree.path().join(&file).symlink_metadata().is_ok() {
            left.push(file);
        }
    }
    left
}

/// The lock and intent records and temporary files left while the VE itself still exists:
/// anything of the VE in the lock directory, and a half-written config.
pub(crate) fn stale_records(tree: &VzTree, ctid: &str) -> Vec<String> {
    let mut left: Vec<String> = std::fs::read_dir(tree.path().join("lock"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{ctid}.")))
        .map(|n| format!("lock/{n}"))
        .collect();
    if tree.path().join(format!("conf/{ctid}.conf.tmp")).exists() {
        left.push(format!("conf/{ctid}.conf.tmp"));
    }
    left
}

/// `vzctl status` of the VE, e.g. `exist unmounted down`.
pub(crate) fn status(tree: &VzTree, ctid: &str) -> String {
    let out = vz_tests::ok(tree.run("vzctl", &["status", ctid]));
    // `CTID <number> …`, also when asked by name.
    out.split_whitespace().skip(2).collect::<Vec<_>>().join(" ")
}
