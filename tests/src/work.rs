//! A busybox VE that works: its boot starts a counter that appends 1, 2, 3, … to
//! `/var/count` every 50 ms (going on from the last line after a restart) and a line server
//! on TCP port 7000 (answers each line `L` with `N L`, see [`crate::LineClient`]). The
//! checkpoint and migration tests check that the work goes on without a gap.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::{VzTree, ok};

const WORK: &str = "#!/bin/sh\n\
setsid sh -c 'i=$(tail -n 1 /var/count 2>/dev/null || echo 0); exec 3>>/var/count; \
while :; do i=$((i+1)); echo $i >&3; usleep 50000; done' </dev/null >/dev/null 2>&1 &\n\
setsid nc -ll -p 7000 -e /srv.sh </dev/null >/dev/null 2>&1 &\n";

const LINE_SERVER: &str = "#!/bin/sh\nn=0\nwhile read l; do n=$((n+1)); echo \"$n $l\"; done\n";

/// Creates VE `ctid` on `tree` from the busybox cache with the address `ip` (and `create`'s
/// further options), installs the work, starts it and waits until it has counted to 5.
///
/// # Panics
/// When a step fails.
pub fn start_working_ve(tree: &VzTree, ctid: &str, ip: &str, create: &[&str]) {
    tree.build_busybox_cache();
    let mut args = vec!["create", ctid, "--ostemplate", "busybox", "--ipadd", ip];
    args.extend_from_slice(create);
    ok(tree.run("vzctl", &args));
    ok(tree.run("vzctl", &["mount", ctid]));
    let root = tree.path().join(format!("root/{ctid}"));
    for (path, text) in [("etc/init.d/S50work", WORK), ("srv.sh", LINE_SERVER)] {
        let path = root.join(path);
        std::fs::write(&path, text).expect("write the work");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    ok(tree.run("vzctl", &["start", ctid, "--wait"]));
    wait_count(tree, ctid, 5);
}

/// The counter's log of VE `ctid` (empty while it has none).
pub fn counts(tree: &VzTree, ctid: &str) -> Vec<u64> {
    let path = tree.path().join(format!("root/{ctid}/var/count"));
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The counter's last value (0 before the first).
pub fn last_count(tree: &VzTree, ctid: &str) -> u64 {
    counts(tree, ctid).last().copied().unwrap_or(0)
}

/// Waits (up to 30 s) until the counter reaches `n`; returns its value then.
///
/// # Panics
/// When it does not.
pub fn wait_count(tree: &VzTree, ctid: &str, n: u64) -> u64 {
    let start = Instant::now();
    loop {
        let last = last_count(tree, ctid);
        if last >= n {
            return last;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "counter stuck at {last}, wanted {n}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that the counter's log is 1, 2, 3, … without a gap or a repeat.
///
/// # Panics
/// At the first line that breaks it.
pub fn assert_no_gap(tree: &VzTree, ctid: &str) {
    for (i, c) in counts(tree, ctid).iter().enumerate() {
        assert_eq!(*c, i as u64 + 1, "the counter's log breaks at line {}", i + 1);
    }
}
