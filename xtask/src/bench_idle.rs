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
    /// KiB held by each slab cache (/proc/slabinfo: slabs × pages per slab); empty where
    /// the file cannot be read.
    slab_caches: BTreeMap<String, u64>,
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
        let slab_caches = std::fs::read_to_string("/proc/slabinfo")
            .map(|text| slab_cache_kib(&text))
            .unwrap_or_default();
        Ok(Snapshot { kernel_kib, host_processes, kernel_threads, thread_kinds, slab_caches })
    }

    /// The slab caches that grew by at least `min_kib` KiB per container from `self` to
    /// `after` with `n` containers, most first: `("kmalloc-1k", 12.0)`. Which kernel objects
    /// a container's kernel memory is made of (caches of one object size may be merged by
    /// SLUB: the name is then the merged cache's).
    pub(crate) fn slab_growth(
        &self,
        after: &Snapshot,
        n: usize,
        min_kib: f64,
    ) -> Vec<(String, f64)> {
        let mut grown: Vec<(String, f64)> = after
            .slab_caches
            .iter()
            .map(|(name, &kib)| {
                let before = self.slab_caches.get(name).copied().unwrap_or(0);
                (name.clone(), per_item(before, kib, n))
            })
            .filter(|(_, kib)| *kib >= min_kib)
            .collect();
        grown.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        grown
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

/// Waits until the host's number of cgroups (every hierarchy's count in /proc/cgroups, which
/// holds the dying ones too) has not changed for a second, at most 10 s: the cgroups of the
/// containers measured before are freed in the background after their removal, and their
/// memory (a memory cgroup's per-shrinker state alone is 1 KiB per 64 shrinkers on the host)
/// would otherwise be returned inside the next runtime's window and taken off its cost.
pub(crate) fn wait_for_cgroups_to_settle() {
    let count = || {
        std::fs::read_to_string("/proc/cgroups").map_or(0, |text| {
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .filter_map(|line| line.split_whitespace().nth(2)?.parse::<u64>().ok())
                .sum::<u64>()
        })
    };
    let step = std::time::Duration::from_millis(200);
    let (mut last, mut still) = (count(), 0);
    for _ in 0..50 {
        std::thread::sleep(step);
        let now = count();
        still = if now == last { still + 1 } else { 0 };
        last = now;
        if still >= 5 {
            return;
        }
    }
}

/// KiB per slab cache from /proc/slabinfo's text (version 2.1: `name active num objsize
/// objperslab pagesperslab : tunables … : slabdata active_slabs num_slabs shared`).
pub(crate) fn slab_cache_kib(text: &str) -> BTreeMap<String, u64> {
    let page_kib = 4;
    text.lines()
        .filter(|line| !line.starts_with("slabinfo") && !line.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let pages_per_slab: u64 = fields.get(5)?.parse().ok()?;
            let data = fields.iter().position(|f| *f == "slabdata")?;
            let slabs: u64 = fields.get(data + 2)?.parse().ok()?;
            Some((fields[0].to_owned(), slabs * pages_per_slab * page_kib))
        })
        .collect()
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
            slab_caches: BTreeMap::new(),
        };
        let before = snap(&[("jbd*/loop*-*", 2), ("kswapd*", 1)]);
        let after = snap(&[("jbd*/loop*-*", 7), ("kswapd*", 1), ("loop*", 5), ("a", 1)]);
        assert_eq!(
            before.new_thread_kinds(&after),
            [("jbd*/loop*-*".to_owned(), 5), ("loop*".to_owned(), 5), ("a".to_owned(), 1)]
        );
    }

    #[test]
    fn slab_caches_are_counted_in_kib_and_their_growth_per_item() {
        let text = "slabinfo - version: 2.1\n\
            # name <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n\
            mnt_cache 1000 1050 320 25 2 : tunables 0 0 0 : slabdata 42 42 0\n\
            kmalloc-1k 64 64 1024 32 8 : tunables 0 0 0 : slabdata 2 2 0\n";
        let before = slab_cache_kib(text);
        assert_eq!(before.get("mnt_cache"), Some(&(42 * 2 * 4)));
        assert_eq!(before.get("kmalloc-1k"), Some(&(2 * 8 * 4)));
        let snap = |caches: BTreeMap<String, u64>| Snapshot {
            kernel_kib: 0,
            host_processes: 0,
            kernel_threads: 0,
            thread_kinds: BTreeMap::new(),
            slab_caches: caches,
        };
        let mut after = before.clone();
        after.insert("mnt_cache".into(), 42 * 8 + 400);
        after.insert("pid".into(), 30);
        let grown = snap(before).slab_growth(&snap(after), 10, 1.0);
        assert_eq!(grown, [("mnt_cache".to_owned(), 40.0), ("pid".to_owned(), 3.0)]);
    }
}
