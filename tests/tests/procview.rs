//! Black-box tests of the VE's own view of its resources (issue 18 item 3): with
//! `LXCFS_MOUNT` in vz.conf, `vzctl start` runs an lxcfs of the tree's own (pid file in the
//! tree's LOCKDIR, killed by pid at the end) and the VE's /proc/meminfo, cpuinfo, stat,
//! loadavg, swaps and online CPUs show its limits, its /proc/uptime (the kernel's, in the
//! VE's time namespace) counts from its start and goes on across a restore; the VE cannot
//! unmount them; a VE outlives its helper; a VE starts without one (warning); `--meminfo
//! none` keeps the host's /proc/meminfo. Never touches another lxcfs of the machine.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]
#![allow(clippy::print_stderr, reason = "a not-applicable skip is reported")]

use std::time::{Duration, Instant};

use vz_tests::{Need, TreeLxcfs, VzTree, ok, output_text, require, unique_ctid};

fn create(tree: &VzTree, extra: &[&str]) -> String {
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox"]));
    let mut args = vec!["set", &ctid, "--ram", "256M", "--swap", "128M", "--cpus", "1"];
    args.extend_from_slice(extra);
    args.push("--save");
    ok(tree.run("vzctl", &args));
    ctid
}

/// `sh -c script` in the VE: (success, stdout+stderr).
fn exec(tree: &VzTree, ctid: &str, script: &str) -> (bool, String) {
    let out = tree.run("vzctl", &["exec2", ctid, script]);
    (out.status.success(), output_text(&out))
}

/// The first field of the VE's /proc/uptime.
fn uptime(tree: &VzTree, ctid: &str) -> f64 {
    let (good, text) = exec(tree, ctid, "cat /proc/uptime");
    assert!(good, "{text}");
    let first = text.split_whitespace().next().unwrap_or_default();
    first.parse().unwrap_or_else(|_| panic!("{text:?}"))
}

/// A `Key: N kB` line of a meminfo text.
fn kb(meminfo: &str, key: &str) -> u64 {
    let line = meminfo.lines().find(|l| l.starts_with(&format!("{key}:"))).unwrap_or_else(|| {
        panic!("no {key} in {meminfo}");
    });
    let value = line.split_whitespace().nth(1).unwrap_or_default();
    value.parse().unwrap_or_else(|_| panic!("{key}: {line:?}"))
}

fn host_meminfo() -> String {
    std::fs::read_to_string("/proc/meminfo").expect("read the host's /proc/meminfo")
}

fn host_mem_total() -> u64 {
    kb(&host_meminfo(), "MemTotal")
}

/// What the VE's tools see: memory, swap, CPUs in every file, uptime since its start.
fn assert_own_view(tree: &VzTree, ctid: &str, started: Instant) {
    // One exec for every file (each exec is slow in the kernel lab); "@@" between them.
    let script = "cat /proc/meminfo; echo @@; top -bn1 | head -1; echo @@; \
                  cat /sys/devices/system/cpu/online; echo @@; grep -c ^processor /proc/cpuinfo; \
                  echo @@; grep -c '^cpu[0-9]' /proc/stat; echo @@; cat /proc/uptime; echo @@; \
                  cat /proc/loadavg; echo @@; cat /proc/swaps";
    let (good, all) = exec(tree, ctid, script);
    assert!(good, "{all}");
    let parts: Vec<&str> = all.split("@@\n").collect();
    let [meminfo, top, online, cpuinfo, stat, uptime, loadavg, swaps] = parts[..] else {
        panic!("eight parts expected: {all}");
    };
    assert_eq!(kb(meminfo, "MemTotal"), 256 * 1024, "{meminfo}");
    // lxcfs shows SWAPPAGES, bounded by the host's swap (none on some hosts).
    let host_swap = kb(&host_meminfo(), "SwapTotal");
    assert_eq!(kb(meminfo, "SwapTotal"), host_swap.min(128 * 1024), "{meminfo}");
    assert!(kb(meminfo, "MemFree") <= 256 * 1024, "{meminfo}");
    // busybox top reads /proc/meminfo ("Mem: 1028K used, 261116K free, …"); busybox free
    // asks sysinfo(2), which the VE's console server answers (tests/tests/sysinfo.rs).
    let kib = |word: &str| -> u64 { word.trim_end_matches('K').parse().unwrap_or(0) };
    let words: Vec<&str> = top.split([' ', ',']).filter(|w| w.ends_with('K')).collect();
    assert!(words.len() >= 2, "{top}");
    assert_eq!(kib(words[0]) + kib(words[1]), 256 * 1024, "{top}");

    assert_eq!(online.trim(), "0", "CPUS=1: one CPU online");
    assert_eq!(cpuinfo.trim(), "1", "{cpuinfo}");
    // lxcfs 5.0's per-CPU /proc/stat view needs v1's cpuacct.usage_all: on cgroup v2 it
    // lists the CPUs of the VE's cpuset (here the host's).
    let cpus = if vz_tests::is_cgroup_v2() {
        let host = std::fs::read_to_string("/proc/stat").expect("read the host's /proc/stat");
        host.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count()
    } else {
        1
    };
    assert_eq!(stat.trim(), cpus.to_string(), "{stat}");

    let first = uptime.split_whitespace().next().unwrap_or_default();
    let up: f64 = first.parse().unwrap_or_else(|_| panic!("{uptime:?}"));
    let since = started.elapsed().as_secs_f64();
    assert!(up <= since + 1.0, "VE uptime {up} s, started {since} s ago");
    assert_eq!(loadavg.split_whitespace().count(), 5, "{loadavg}");
    assert!(swaps.starts_with("Filename"), "{swaps}");
}

#[test]
fn a_ve_sees_its_own_memory_cpus_and_uptime_and_cannot_unmount_them() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::Program("/usr/bin/lxcfs"));
    require!(Need::CgroupController("memory"), Need::CgroupController("cpu"));
    let tree = VzTree::new("");
    let helper = TreeLxcfs::configure(&tree, "");
    let ctid = create(&tree, &[]);
    let started = Instant::now();
    let out = tree.run("vzctl", &["start", &ctid, "--wait"]);
    assert!(output_text(&out).contains("Started lxcfs"), "{}", output_text(&out));
    assert!(helper.pid().is_some(), "the tree's lxcfs runs, its pid in LOCKDIR/lxcfs.pid");
    assert_own_view(&tree, &ctid, started);

    // The VE's root cannot take the binds away (its mounts are locked), nor mount a fresh
    // proc beside them: the host's totals are never visible.
    for attempt in ["umount /proc/meminfo", "umount -l /proc/meminfo", "umount /proc/stat"] {
        let (good, text) = exec(&tree, &ctid, attempt);
        assert!(!good, "{attempt} inside the VE must fail: {text}");
    }
    let (good, text) = exec(&tree, &ctid, "mkdir -p /mnt/p && mount -t proc proc /mnt/p");
    assert!(!good, "a second proc mount must be refused: {text}");
    let (_, meminfo) = exec(&tree, &ctid, "cat /proc/meminfo");
    assert_eq!(kb(&meminfo, "MemTotal"), 256 * 1024, "{meminfo}");
    assert_ne!(kb(&meminfo, "MemTotal"), host_mem_total());

    // A second VE shares the one helper.
    let second = create(&tree, &["--ram", "128M"]);
    let out = ok(tree.run("vzctl", &["start", &second, "--wait"]));
    assert!(!out.contains("Started lxcfs"), "one helper for every VE: {out}");
    let (_, meminfo) = exec(&tree, &second, "cat /proc/meminfo");
    assert_eq!(kb(&meminfo, "MemTotal"), 128 * 1024, "{meminfo}");
}

#[test]
fn a_privileged_ve_gets_the_same_view() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::Program("/usr/bin/lxcfs"));
    require!(Need::CgroupController("memory"), Need::CgroupController("cpu"));
    let tree = VzTree::new("LOCAL_UID=0\nLOCAL_GID=0\n");
    let _helper = TreeLxcfs::configure(&tree, "");
    let ctid = create(&tree, &[]);
    let started = Instant::now();
    ok(tree.run("vzctl", &["start", &ctid, "--wait"]));
    assert_own_view(&tree, &ctid, started);
}

#[test]
fn a_ve_outlives_its_helper_and_the_next_start_brings_a_new_one() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::Program("/usr/bin/lxcfs"));
    require!(Need::CgroupController("memory"), Need::CgroupController("cpu"));
    let tree = VzTree::new("");
    let helper = TreeLxcfs::configure(&tree, "");
    let ctid = create(&tree, &[]);
    ok(tree.run("vzctl", &["start", &ctid, "--wait"]));
    let first = helper.pid().expect("the helper runs");
    helper.kill("-KILL");
    assert!(helper.pid().is_none());

    // Reads fail at once; nothing hangs; the VE works.
    let t = Instant::now();
    let (good, text) = exec(&tree, &ctid, "cat /proc/meminfo");
    assert!(!good && text.contains("not connected"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    let (good, text) = exec(&tree, &ctid, "echo alive; cat /proc/version >/dev/null");
    assert!(good && text.contains("alive"), "{text}");

    // The next start replaces the dead mount with a new helper, which serves new starts.
    let second = create(&tree, &[]);
    let started = Instant::now();
    let out = ok(tree.run("vzctl", &["start", &second, "--wait"]));
    assert!(out.contains("Started lxcfs"), "{out}");
    assert_ne!(helper.pid(), Some(first));
    assert_own_view(&tree, &second, started);
    // The first VE keeps its dead binds until it is restarted; a restart brings the view.
    let started = Instant::now();
    ok(tree.run("vzctl", &["restart", &ctid, "--wait"]));
    assert_own_view(&tree, &ctid, started);
    ok(tree.run("vzctl", &["stop", &ctid]));
}

#[test]
fn a_ve_starts_without_a_helper_with_a_warning() {
    require!(Need::Root, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    let helper = TreeLxcfs::configure(&tree, "LXCFS_START=no\n");
    let ctid = create(&tree, &[]);
    let out = tree.run("vzctl", &["start", &ctid, "--wait"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let text = output_text(&out);
    assert!(text.contains("Warning: no lxcfs at") && text.contains("LXCFS_START=no"), "{text}");
    assert!(helper.pid().is_none(), "no helper was started");
    let (good, meminfo) = exec(&tree, &ctid, "cat /proc/meminfo");
    assert!(good, "{meminfo}");
    assert_eq!(kb(&meminfo, "MemTotal"), host_mem_total(), "the kernel's file");
}

#[test]
fn meminfo_none_keeps_the_hosts_meminfo_and_bad_values_are_refused() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::Program("/usr/bin/lxcfs"));
    require!(Need::CgroupController("memory"), Need::CgroupController("cpu"));
    let tree = VzTree::new("");
    let _helper = TreeLxcfs::configure(&tree, "");
    let ctid = create(&tree, &["--meminfo", "none"]);
    let conf = std::fs::read_to_string(tree.path().join(format!("conf/{ctid}.conf"))).unwrap();
    assert!(conf.contains("MEMINFO=\"none\""), "{conf}");
    for bad in ["pages:0", "all", "privvmpages:x"] {
        let out = tree.run("vzctl", &["set", &ctid, "--meminfo", bad, "--save"]);
        assert_eq!(out.status.code(), Some(21), "{bad}: {}", output_text(&out));
    }
    ok(tree.run("vzctl", &["start", &ctid, "--wait"]));
    let (_, meminfo) = exec(&tree, &ctid, "cat /proc/meminfo");
    assert_eq!(kb(&meminfo, "MemTotal"), host_mem_total(), "{meminfo}");
    let (_, online) = exec(&tree, &ctid, "cat /sys/devices/system/cpu/online");
    assert_eq!(online.trim(), "0", "the other files stay the VE's");

    ok(tree.run("vzctl", &["set", &ctid, "--meminfo", "pages:65536", "--save"]));
    let out = tree.run("vzctl", &["restart", &ctid, "--wait"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(output_text(&out).contains("pre-VSwap setting"), "{}", output_text(&out));
    let (_, meminfo) = exec(&tree, &ctid, "cat /proc/meminfo");
    assert_eq!(kb(&meminfo, "MemTotal"), 256 * 1024, "{meminfo}");
}

/// CRIU dumps the view's binds as external mounts and binds them again from the host's
/// lxcfs directory at restore: the restore starts the helper when none runs.
#[test]
fn a_restored_ve_keeps_its_view_and_the_restore_starts_the_helper() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::Program("/usr/bin/lxcfs"));
    require!(Need::CgroupController("memory"), Need::Program("/usr/local/sbin/criu"));
    let tree = VzTree::new("");
    let helper = TreeLxcfs::configure(&tree, "");
    let ctid = create(&tree, &[]);
    let started = Instant::now();
    ok(tree.run("vzctl", &["start", &ctid, "--wait"]));
    let (_, meminfo) = exec(&tree, &ctid, "cat /proc/meminfo");
    assert_eq!(kb(&meminfo, "MemTotal"), 256 * 1024, "{meminfo}");
    // The VE's uptime goes on across the restore (CRIU restores its clocks); lxcfs's
    // /proc/uptime would start again at 0 with the restored init.
    std::thread::sleep(Duration::from_secs(2));
    let before = uptime(&tree, &ctid);
    let read_before = Instant::now();
    let since = started.elapsed().as_secs_f64();
    assert!((2.0..=since + 0.02).contains(&before), "{before} s, started {since} s ago");
    let out = ok(tree.run("vzctl", &["chkpnt", &ctid]));
    assert!(out.contains("Checkpointing completed successfully"), "{out}");
    helper.kill("-TERM");
    assert!(helper.pid().is_none());
    let out = tree.run("vzctl", &["restore", &ctid]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Started lxcfs") && text.contains("Restoring completed"), "{text}");
    let (_, meminfo) = exec(&tree, &ctid, "cat /proc/meminfo");
    assert_eq!(kb(&meminfo, "MemTotal"), 256 * 1024, "{meminfo}");
    let after = uptime(&tree, &ctid);
    let between = read_before.elapsed().as_secs_f64();
    assert!(after >= before, "VE uptime {before} s before the checkpoint, {after} s after");
    assert!(after <= before + between + 0.02, "{before} s, {after} s, {between} s between");
    // vzlist reads the same clock from the host (the VE's boottime offset), not the age of
    // the restored init.
    let listed = ok(tree.run("vzlist", &["-j", "-o", "uptime", &ctid]));
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("vzlist -j");
    let listed = listed[0]["uptime"].as_f64().unwrap_or_else(|| panic!("{listed}"));
    assert!(listed + 1.0 >= after.floor(), "vzlist says {listed} s, the VE {after} s");
    let (_, mounts) = exec(&tree, &ctid, "grep -c fuse.lxcfs /proc/self/mountinfo");
    assert_eq!(mounts.trim(), "7", "{mounts}");
}
