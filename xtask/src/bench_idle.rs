//! `cargo xtask bench`'s idle rows: N idle containers per runtime in rounds, what the bench
//! reads of the host around them (kernel memory, host processes, kernel threads), and the
//! removal of everything the bench made.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench::{BenchOptions, Tree};
use crate::bench_peers::{Op, Runtime};
use crate::bench_stats::{Table, Value, is_kernel_thread, kernel_kib, per_item};

/// The host's counts at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    kernel_kib: u64,
    host_processes: u64,
    kernel_threads: u64,
    /// Kernel threads by name with the numbers masked (`jbd*/loop*-*`).
    thread_kinds: BTreeMap<String, u64>,
    /// Bytes of the objects in use in each slab cache (/proc/slabinfo); empty where the
    /// file cannot be read.
    slab_caches: BTreeMap<String, u64>,
}

/// The per-container cost between two snapshots.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cost {
    /// Slab objects in use + KernelStack + PageTables, KiB per container.
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
        let (slab_kib, stacks_and_tables_kib) =
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
            .map(|text| slab_object_bytes(&text))
            .unwrap_or_default();
        // The objects in use, not meminfo's Slab: that counts whole slab pages, and how full
        // the pages already were (what ran before freed objects in them) moved a runtime's
        // figure by a factor of two between runs.
        let slab_kib = if slab_caches.is_empty() {
            slab_kib
        } else {
            slab_caches.values().sum::<u64>() / 1024
        };
        let kernel_kib = slab_kib + stacks_and_tables_kib;
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
            .map(|(name, &bytes)| {
                let before = self.slab_caches.get(name).copied().unwrap_or(0);
                (name.clone(), per_item(before, bytes, n) / 1024.0)
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

/// N idle containers per runtime: start time, kernel memory, host processes and kernel
/// threads per container, in `o.idle_rounds` rounds in which the runtimes take turns; the
/// medians go in the table. Host-wide kernel costs that come in steps (a memory cgroup's
/// per-shrinker arrays grow for every cgroup on the host when mounts pass a multiple of 64
/// shrinkers) land in whichever runtime's window they fall, so one round can be off by half.
pub(crate) fn idle_rows(
    o: &BenchOptions,
    tree: &Tree,
    table: &mut Table,
    all: &mut [Box<dyn Runtime>],
) -> Result<()> {
    let n = o.idle;
    if n == 0 {
        return Ok(());
    }
    let mut samples: Vec<(String, Vec<IdleSample>)> = Vec::new();
    for round in 0..o.idle_rounds {
        for r in all.iter_mut() {
            if !r.has(Op::Idle) || r.name() == "floor" {
                continue;
            }
            let last = round + 1 == o.idle_rounds;
            let sample = idle_round(tree, &o.layout, n, r.as_mut(), last)?;
            match samples.iter_mut().find(|(name, _)| name == r.name()) {
                Some((_, runs)) => runs.push(sample),
                None => samples.push((r.name().to_owned(), vec![sample])),
            }
        }
    }
    let median = |runs: &[IdleSample], f: &dyn Fn(&IdleSample) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let mut row = |work: String, f: &dyn Fn(&IdleSample) -> f64, value: fn(f64) -> Value| {
        let values: Vec<(&str, Option<Value>)> = samples
            .iter()
            .map(|(name, runs)| (name.as_str(), Some(value(median(runs, f)))))
            .collect();
        table.push(&work, &values);
    };
    row(format!("{n} idle containers: start per container"), &|s| s.start_ms, Value::Ms);
    row(
        format!(
            "{n} idle: kernel memory per container (slab objects in use + KernelStack + \
             PageTables)"
        ),
        &|s| s.cost.kernel_kib,
        Value::KiB,
    );
    row(
        format!("{n} idle: host processes per container (outside its pid namespace)"),
        &|s| s.cost.host_processes,
        Value::Count,
    );
    row(
        format!("{n} idle: kernel threads per container"),
        &|s| s.cost.kernel_threads,
        Value::Count,
    );
    Ok(())
}

/// One runtime's idle round.
struct IdleSample {
    start_ms: f64,
    cost: Cost,
}

/// Starts `n` idle containers of `r`, measures them a second later and stops them; with
/// `detail`, prints the kernel threads and slab caches that grew.
fn idle_round(
    tree: &Tree,
    layout: &str,
    n: usize,
    r: &mut dyn Runtime,
    detail: bool,
) -> Result<IdleSample> {
    let name = r.name().to_owned();
    let ids: Vec<String> =
        (0..n)
            .map(|i| {
                if name.starts_with("vz") {
                    (1000 + i).to_string()
                } else {
                    format!("vzb-idle-{i}")
                }
            })
            .collect();
    if name.starts_with("vz") {
        tree.create_many(&ids, layout)?;
    }
    wait_for_cgroups_to_settle();
    let before = Snapshot::take()?;
    let mut started = 0;
    let begin = Instant::now();
    let outcome = ids.iter().try_for_each(|id| {
        r.start_idle(id)?;
        started += 1;
        Ok::<_, anyhow::Error>(())
    });
    let took = begin.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let after = Snapshot::take()?;
    let begin_stop = Instant::now();
    for id in ids.iter().take(started) {
        r.stop_fast(id).with_context(|| format!("{name}: stop {id}"))?;
    }
    let stop_took = begin_stop.elapsed();
    outcome.with_context(|| format!("{name}: {started} of {n} idle containers started"))?;
    if name.starts_with("vz") {
        tree.destroy_many(&ids);
    }
    let cost = before.per_item(&after, n);
    println!(
        "bench: {name}: {n} idle containers started in {:.2} s, stopped in {:.2} s, {:.0} KiB \
         of kernel memory each",
        took.as_secs_f64(),
        stop_took.as_secs_f64(),
        cost.kernel_kib
    );
    if detail {
        let kinds: Vec<String> = before
            .new_thread_kinds(&after)
            .iter()
            .take(6)
            .map(|(kind, count)| format!("{kind} +{count}"))
            .collect();
        println!("bench: {name}: new kernel threads: {}", kinds.join(", "));
        let slabs: Vec<String> = before
            .slab_growth(&after, n, 1.0)
            .iter()
            .map(|(cache, kib)| format!("{cache} {kib:.1}"))
            .collect();
        println!("bench: {name}: slab caches grown, KiB per container: {}", slabs.join(", "));
    }
    #[allow(clippy::cast_precision_loss, reason = "n is small")]
    let start_ms = took.as_secs_f64() * 1e3 / n as f64;
    Ok(IdleSample { start_ms, cost })
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

/// Bytes of the objects in use per slab cache from /proc/slabinfo's text (version 2.1:
/// `name active_objs num_objs objsize …`): active objects × object size.
pub(crate) fn slab_object_bytes(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter(|line| !line.starts_with("slabinfo") && !line.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?;
            let active: u64 = fields.next()?.parse().ok()?;
            let size: u64 = fields.nth(1)?.parse().ok()?;
            Some((name.to_owned(), active * size))
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

/// Removes everything the bench made: the image floor's mount and loop device, VEs
/// (stopped, destroyed), peers' containers, processes left in the bench's cgroups (killed by
/// pid), its cgroups, mounts and files.
pub(crate) fn cleanup(tree: &Tree) {
    unmount_under(&tree.dir.join("floor-image"));
    detach_loops_under(&tree.dir);
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

/// Detaches the loop devices whose backing file is below `dir` (the image floor's, when a
/// cycle was cut short).
fn detach_loops_under(dir: &Path) {
    for entry in std::fs::read_dir("/sys/block").into_iter().flatten().flatten() {
        let backing = entry.path().join("loop/backing_file");
        let Ok(file) = std::fs::read_to_string(&backing) else { continue };
        if Path::new(file.trim_end()).starts_with(dir) {
            let device = Path::new("/dev").join(entry.file_name());
            let _ = Command::new("losetup").arg("-d").arg(&device).status();
        }
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
    fn slab_caches_count_their_objects_in_use_and_their_growth_per_item() {
        let text = "slabinfo - version: 2.1\n\
            # name <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n\
            mnt_cache 1000 1050 320 25 2 : tunables 0 0 0 : slabdata 42 42 0\n\
            kmalloc-1k 64 64 1024 32 8 : tunables 0 0 0 : slabdata 2 2 0\n";
        let before = slab_object_bytes(text);
        assert_eq!(before.get("mnt_cache"), Some(&(1000 * 320)));
        assert_eq!(before.get("kmalloc-1k"), Some(&(64 * 1024)));
        let snap = |caches: BTreeMap<String, u64>| Snapshot {
            kernel_kib: 0,
            host_processes: 0,
            kernel_threads: 0,
            thread_kinds: BTreeMap::new(),
            slab_caches: caches,
        };
        let mut after = before.clone();
        after.insert("mnt_cache".into(), 1000 * 320 + 400 * 1024);
        after.insert("pid".into(), 30 * 1024);
        let grown = snap(before).slab_growth(&snap(after), 10, 1.0);
        assert_eq!(grown, [("mnt_cache".to_owned(), 40.0), ("pid".to_owned(), 3.0)]);
    }
}
