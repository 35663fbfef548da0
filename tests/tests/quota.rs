//! Black-box tests of the per-VE disk limit: the ploop layout (an ext4 image on a loop
//! device) enforces DISKSPACE inside the VE, and `vzquota stat` reports it.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

use vz_tests::{Need, VzTree, ok, require, unique_ctid};

#[test]
fn diskspace_is_enforced_inside_the_ve_only() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--layout", "ploop", "--diskspace", "100M:120M"]));
    let stat = ok(tree.run("vzquota", &["stat", &ctid]));
    let blocks: Vec<&str> = stat.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&blocks[2..4], ["102400", "122880"], "{stat}");
    ok(tree.run("vzctl", &["start", &ctid]));
    let host_before = free_bytes(tree.path());
    let dd = tree.run("vzctl", &["exec2", &ctid, "dd if=/dev/zero of=/fill bs=1M count=300"]);
    assert_ne!(dd.status.code(), Some(0), "writing past the hard limit fails");
    assert!(
        String::from_utf8_lossy(&dd.stderr).contains("No space left"),
        "{}",
        String::from_utf8_lossy(&dd.stderr)
    );
    let df = ok(tree.run("vzctl", &["exec", &ctid, "df -k / | tail -1"]));
    let size_kb: u64 = df.split_whitespace().nth(1).unwrap().parse().unwrap();
    // ext4 keeps its journal and inode tables inside the image: df shows less than the limit.
    assert!((60_000..=122_880).contains(&size_kb), "df in the VE shows its limit: {df}");
    let host_after = free_bytes(tree.path());
    assert!(
        host_before.saturating_sub(host_after) < 160 << 20,
        "the host's file system is untouched"
    );
    let full = ok(tree.run("vzquota", &["stat", &ctid]));
    let used: u64 = full
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches('*')
        .parse()
        .unwrap();
    let df_used: u64 = df.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert_eq!(used, df_used, "vzquota reports what df in the VE reports: {full} {df}");
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
    ok(tree.run("vzctl", &["destroy", &ctid]));
    let loops = std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("loop/backing_file")).ok());
    let tree_path = tree.path().to_string_lossy().into_owned();
    assert!(loops.into_iter().all(|f| !f.contains(&tree_path)), "no loop device left");
}

/// Free bytes of the file system holding `path`, from `df`.
fn free_bytes(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .expect("run df");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df prints the free bytes")
}
