//! What `cargo xtask bench` reads of the host around N idle containers (kernel memory, host
//! processes, kernel threads), and the removal of everything the bench made.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::bench::Tree;
use crate::bench_stats::{is_kernel_thread, kernel_kib, per_item};

/// The host's counts at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    kernel_kib: u64,
    host_processes: u64,
    kernel_threads: u64,
    /// Kernel threads by name with the numbers masked (`jbd*/loop*-*`).
    thread_kinds: BTreeMap<String, u64>,
}

/// The per-container cost between two snapshots.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cost {
    /// Slab + KernelStack + PageTables, KiB per container.
    pub(crate) kernel_kib: f64,
    /// Processes in the host's pid namespace (not kernel threads) per container.
    pub(crate) host_processes: f64,
    /// Kernel threads per container.
    pub(crate) kernel_threads: f64,
}

impl Snapshot {
    /// Reads /proc/meminfo and every /proc/PID.
    ///
    /// # Errors
    /// /proc cannot be read.
    pub(crate) fn take() -> Result<Snapshot> {
        let meminfo = std::fs::read_to_string("/proc/meminfo").context("read /proc/meminfo")?;
        let kernel_kib =
            kernel_kib(&meminfo).context("/proc/meminfo lacks Slab/KernelStack/PageTables")?;
        let own_ns =
            std::fs::read_link("/proc/self/ns/pid").context("readlink /proc/self/ns/pid")?;
        let (mut host_processes, mut kernel_threads) = (0, 0);
        let mut thread_kinds = BTreeMap::new();
        for entry in std::fs::read_dir("/proc").context("read /proc")?.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            match is_kernel_thread(&stat) {
                Some(true) => {
                    kernel_threads += 1;
                    *thread_kinds.entry(thread_kind(&stat)).or_insert(0) += 1;
                }
                // A process of a container's own pid namespace is the container's.
                Some(false)
                    if std::fs::read_link(entry.path().join("ns/pid"))
                        .is_ok_and(|ns| ns == own_ns) =>
                {
                    host_processes += 1;
                }
                Some(false) => {}
                None => {}
            }
        }
        Ok(Snapshot { kernel_kib, host_processes, kernel_threads, thread_kinds })
    }

    /// The kinds of kernel threads that grew from `self` to `after`, most first:
    /// `("jbd*/loop*-*", 50)`.
    pub(crate) fn new_thread_kinds(&self, after: &Snapshot) -> Vec<(String, u64)> {
        let mut grown: Vec<(String, u64)> = after
            .thread_kinds
            .iter()
            .filter_map(|(kind, &n)| {
                let before = self.thread_kinds.get(kind).copied().unwrap_or(0);
                (n > before).then(|| (kind.clone(), n - before))
            })
            .collect();
        grown.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        grown
    }

    /// The cost per container of going from `self` to `after` with `n` containers.
    pub(crate) fn per_item(&self, after: &Snapshot, n: usize) -> Cost {
        Cost {
            kernel_kib: per_item(self.kernel_kib, after.kernel_kib, n),
            host_processes: per_item(self.host_processes, after.host_processes, n),
            kernel_threads: per_item(self.kernel_threads, after.kernel_threads, n),
        }
    }
}

/// The kind of a kernel thread from its /proc/PID/stat: its name with digit runs as `*`.
pub(crate) fn thread_kind(stat: &str) -> String {
    let name =
        stat.split_once(" (").and_then(|(_, rest)| rest.rsplit_once(") ")).map_or("", |(n, _)| n);
    let mut kind = String::new();
    for c in name.chars() {
        if c.is_ascii_digit() {
            if !kind.ends_with('*') {
                kind.push('*');
            }
        } else {
            kind.push(c);
        }
    }
    kind
}

/// Removes everything the bench made: VEs (stopped, destroyed), peers' containers, processes
/// left in the bench's cgroups (killed by pid), its cgroups, mounts and files.
pub(crate) fn cleanup(tree: &Tree) {
    for id in tree.ve_ids() {
        let _ = tree.vzctl(&["stop", &id, "--fast"]).stdin(Stdio::null()).output();
        let _ = tree.vzctl(&["destroy", &id]).stdin(Stdio::null()).output();
    }
    for program in ["crun", "runc"] {
        let state = tree.dir.join(format!("{program}-state"));
        for id in subdirs(&state) {
            let mut cmd = match program {
                "crun" => {
                    let mut c = Command::new("nsenter");
                    c.arg(format!("--mount={}", tree.dir.join("ns/mnt").display()))
                        .arg("--")
                        .arg("crun");
                    c
                }
                _ => Command::new(program),
            };
            let _ = cmd.arg("--root").arg(&state).args(["delete", "-f", &id]).output();
        }
    }
    for id in subdirs(&tree.dir.join("lxc")) {
        let _ = Command::new("lxc-stop")
            .arg("-P")
            .arg(tree.dir.join("lxc"))
            .args(["-n", &id, "-k"])
            .stdin(Stdio::null())
            .output();
    }
    for hierarchy in cgroup_mounts() {
        let Ok(entries) = std::fs::read_dir(&hierarchy) else { continue };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(tree.tag()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    unmount_under(&tree.dir);
    let tag = tree.tag().strip_prefix("vz-bench-").unwrap_or_default();
    let _ = std::fs::remove_file(std::env::temp_dir().join(format!("vz-bench-{tag}.stderr")));
    if let Err(e) = std::fs::remove_dir_all(&tree.dir) {
        eprintln!("bench: cannot remove {}: {e}", tree.dir.display());
    }
}

fn subdirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The mount points of every cgroup hierarchy.
fn cgroup_mounts() -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() > 2 && fields[2].starts_with("cgroup")).then(|| PathBuf::from(fields[1]))
        })
        .collect()
}

/// Kills the tasks of the cgroup `dir` and below (by pid) and removes the cgroups, deepest
/// first, retrying while the killed tasks are reaped.
fn remove_cgroup_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            remove_cgroup_tree(&entry.path());
        }
    }
    for _ in 0..100 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    eprintln!("bench: cannot remove the cgroup {}", dir.display());
}

/// Unmounts every mount at or below `dir`, deepest first (lazily).
fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        let _ = Command::new("umount").arg("-l").arg(&point).status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_thread_kinds_mask_numbers() {
        assert_eq!(thread_kind("812 (jbd2/loop12-8) S 2 0 0"), "jbd*/loop*-*");
        assert_eq!(thread_kind("9 (kworker/u17:3-loop4) I 2"), "kworker/u*:*-loop*");
        let snap = |kinds: &[(&str, u64)]| Snapshot {
            kernel_kib: 0,
            host_processes: 0,
            kernel_threads: 0,
            thread_kinds: kinds.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect(),
        };
        let before = snap(&[("jbd*/loop*-*", 2), ("kswapd*", 1)]);
        let after = snap(&[("jbd*/loop*-*", 7), ("kswapd*", 1), ("loop*", 5), ("a", 1)]);
        assert_eq!(
            before.new_thread_kinds(&after),
            [("jbd*/loop*-*".to_owned(), 5), ("loop*".to_owned(), 5), ("a".to_owned(), 1)]
        );
    }
}
