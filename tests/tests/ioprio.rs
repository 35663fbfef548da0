//! Black-box test of `vzctl set --ioprio` (issue 18): OpenVZ's I/O priority 0–7 becomes the
//! VE cgroup's I/O weight — `io.weight` (blk-iocost) or `io.bfq.weight` on cgroup v2,
//! `blkio.bfq.weight` or `blkio.weight` on v1 — at once on a running VE and again at the
//! next start; a host without any weight knob (this v1 host's blkio without BFQ) gets the
//! warning and the value is saved. The kernel lab (cgroup v2) has `io.weight`.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]
#![allow(clippy::print_stderr, reason = "which branch ran is reported")]

use std::path::PathBuf;

use vz_tests::{Need, VzTree, ok, output_text, require};

/// The VE's weight knobs in the order vzctl tries them (v1 name, v2 name).
const KNOBS: [(&str, &str); 2] =
    [("blkio.bfq.weight", "io.weight"), ("blkio.weight", "io.bfq.weight")];

/// The weight a knob shows: its `default N` line (v2, BFQ) or its one number.
fn weight(path: &PathBuf) -> String {
    let text = std::fs::read_to_string(path).expect("read the weight knob");
    let line = text.lines().find(|l| l.starts_with("default ")).or_else(|| text.lines().next());
    line.unwrap_or_default().split_whitespace().last().unwrap_or_default().to_owned()
}

#[test]
fn ioprio_sets_the_io_weight_or_says_the_host_has_none() {
    let controller = if vz_tests::is_cgroup_v2() { "io" } else { "blkio" };
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController(controller));
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();
    let knob = KNOBS
        .iter()
        .map(|(v1, v2)| tree.cgroup_file(&ctid, controller, v1, v2))
        .find(|path| path.exists());
    let out = tree.run("vzctl", &["set", &ctid, "--ioprio", "7", "--save"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = output_text(&out);
    assert!(tree.ve_conf(&ctid).contains("IOPRIO=\"7\""), "{}", tree.ve_conf(&ctid));
    let Some(knob) = knob else {
        assert!(out.contains("no I/O weight on this host"), "{out}");
        eprintln!("ioprio: no I/O weight knob on this host: saved with a warning (checked)");
        return;
    };
    assert!(!out.contains("Warning"), "{out}");
    assert_eq!(weight(&knob), "800", "ioprio 7 is the weight 800: {}", knob.display());
    ok(tree.run("vzctl", &["set", &ctid, "--ioprio", "0", "--save"]));
    assert_eq!(weight(&knob), "12", "ioprio 0 is the weight 12");
    // The saved priority is applied again at the next start (a fresh cgroup).
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
    ok(tree.run("vzctl", &["start", &ctid]));
    assert_eq!(weight(&knob), "12", "after a restart");
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
}
