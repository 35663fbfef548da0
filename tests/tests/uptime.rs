//! Black-box tests of a VE's own clocks (issue 18): in a busybox VE, `uptime` (sysinfo(2))
//! and the kernel's /proc/uptime count from the VE's start, not the host's boot; a later
//! `vzctl exec` shows more; `date` is the host's wall clock. (That the uptime goes on across
//! a checkpoint and restore is checked with CRIU in procview.rs's restore test, which runs
//! alone.)
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vz_tests::{Need, VzTree, ok, require, unique_ctid};

/// The first field of a /proc/uptime text.
fn seconds(text: &str) -> f64 {
    let first = text.split_whitespace().next().unwrap_or_default();
    first.parse().unwrap_or_else(|_| panic!("not an uptime: {text:?}"))
}

/// `/proc/uptime`, busybox `uptime` and `date +%s` in the VE, in one exec.
fn clocks(tree: &VzTree, ctid: &str) -> (f64, String, u64) {
    let out = ok(tree.run("vzctl", &["exec", ctid, "cat /proc/uptime; uptime; date +%s"]));
    let lines: Vec<&str> = out.lines().collect();
    let [proc_uptime, busybox, date] = lines[..] else { panic!("three lines expected: {out}") };
    let date = date.trim().parse().unwrap_or_else(|_| panic!("date: {out}"));
    (seconds(proc_uptime), busybox.to_owned(), date)
}

#[test]
fn a_ves_uptime_counts_from_its_start_and_its_wall_clock_is_the_hosts() {
    require!(Need::Root, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox"]));
    let started = Instant::now();
    ok(tree.run("vzctl", &["start", &ctid, "--wait"]));

    let host_before = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let (first, busybox, date) = clocks(&tree, &ctid);
    let host_after = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let since = started.elapsed().as_secs_f64();
    assert!(first <= since + 0.02, "VE uptime {first} s, started {since} s ago");
    let host = seconds(&std::fs::read_to_string("/proc/uptime").expect("read /proc/uptime"));
    assert!(first < host, "VE uptime {first} s, the host's {host} s");
    // busybox uptime asks sysinfo(2): " 05:50:01 up 0 min,  load average: …".
    assert!(busybox.contains(" up 0 min"), "{busybox}");
    // The VE's wall clock is the host's: its reading falls between the host's around it.
    assert!(
        (host_before..=host_after).contains(&date),
        "VE {date}, host {host_before}..{host_after}"
    );

    std::thread::sleep(Duration::from_millis(1100));
    let (second, _, _) = clocks(&tree, &ctid);
    assert!(second >= first + 1.0, "{first} s, then {second} s");
    assert!(second <= started.elapsed().as_secs_f64() + 0.02, "{second} s");
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
}
