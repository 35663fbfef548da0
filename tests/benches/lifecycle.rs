//! Benchmark of a VE's life through the real binaries: `vzctl create` (ploop and simfs),
//! `start`, `exec`, `stop --fast`, and the start → `/bin/true` → stop cycle, beside the
//! floor of `unshare` + `chroot` into the same busybox tree. Medians over repeated runs.
//!
//! Run as root: `cargo bench -p vz-tests --bench lifecycle` (builds nothing itself: build the
//! binaries first, or let `cargo xtask bench` do it). Not a test: it asserts nothing.
#![allow(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::process::Command;
use std::time::{Duration, Instant};

use vz_tests::VzTree;

const ROUNDS: usize = 15;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn timed(tree: &VzTree, args: &[&str]) -> Duration {
    let start = Instant::now();
    let out = tree.run("vzctl", args);
    let took = start.elapsed();
    assert!(out.status.success(), "vzctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    took
}

fn row(what: &str, samples: Vec<Duration>) {
    println!("{what:<44} {:>9.2} ms", median(samples).as_secs_f64() * 1e3);
}

/// start, exec, stop and the whole cycle of the stopped VE `id`, medians of [`ROUNDS`].
fn cycle_rows(tree: &VzTree, id: &str, label: &str) {
    let (mut start, mut exec, mut stop, mut cycle) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        start.push(timed(tree, &["--quiet", "start", id]));
        exec.push(timed(tree, &["--quiet", "exec", id, "/bin/true"]));
        stop.push(timed(tree, &["--quiet", "stop", id, "--fast"]));
        let begin = Instant::now();
        timed(tree, &["--quiet", "start", id]);
        timed(tree, &["--quiet", "exec2", id, "/bin/true"]);
        timed(tree, &["--quiet", "stop", id, "--fast"]);
        cycle.push(begin.elapsed());
    }
    row(&format!("vzctl start{label}"), start);
    row(&format!("vzctl exec /bin/true{label}"), exec);
    row(&format!("vzctl stop --fast{label}"), stop);
    row(&format!("start -> exec /bin/true -> stop --fast{label}"), cycle);
}

fn main() {
    if !nix_is_root() {
        println!("lifecycle bench: needs root");
        return;
    }
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    println!("{:<44} {:>12}", "operation (median of 15)", "time");
    for layout in ["ploop", "simfs"] {
        let mut create = Vec::new();
        let mut destroy = Vec::new();
        for i in 0..ROUNDS {
            let id = (1_900_000 + i).to_string();
            create.push(timed(&tree, &["--quiet", "create", &id, "--layout", layout]));
            destroy.push(timed(&tree, &["--quiet", "destroy", &id]));
        }
        row(&format!("vzctl create ({layout})"), create);
        row(&format!("vzctl destroy ({layout})"), destroy);
    }
    let id = "1900100";
    timed(&tree, &["--quiet", "create", id]);
    cycle_rows(&tree, id, "");
    // The same VE kinds with root = host root (LOCAL_UID=0): the cost of the user namespace.
    let privileged = VzTree::new("LOCAL_UID=0\nLOCAL_GID=0\n");
    privileged.build_busybox_cache();
    timed(&privileged, &["--quiet", "create", "1900101"]);
    cycle_rows(&privileged, "1900101", " (privileged)");
    drop(privileged);
    let mut clean = Vec::new();
    for _ in 0..3 {
        timed(&tree, &["--quiet", "start", id, "--wait"]);
        clean.push(timed(&tree, &["--quiet", "stop", id]));
    }
    row("vzctl stop (clean shutdown of busybox init)", clean);
    timed(&tree, &["--quiet", "mount", id]);
    let root = tree.path().join(format!("root/{id}"));
    let mut floor = Vec::new();
    for _ in 0..ROUNDS {
        let begin = Instant::now();
        let status = Command::new("unshare")
            .args(["--pid", "--fork", "--mount", "--uts", "--ipc", "--net", "chroot"])
            .arg(&root)
            .arg("/bin/true")
            .status()
            .expect("run unshare");
        assert!(status.success());
        floor.push(begin.elapsed());
    }
    row("floor: unshare -pmuin + chroot /bin/true", floor);
    timed(&tree, &["--quiet", "umount", id]);
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
