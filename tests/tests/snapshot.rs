//! Black-box tests of `vzctl snapshot`, `snapshot-switch`, `snapshot-delete`,
//! `snapshot-mount`, `snapshot-umount`, `snapshot-list` on the image layout: data written
//! after a snapshot is gone after a switch and the snapshot's data and CTID.conf are back; a
//! running VE's snapshot with its memory comes back running, its counter going on from the
//! snapshot without a gap; the list, the read-only mount, delete; the errors and exit codes.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]
#![allow(clippy::print_stderr, reason = "the test reports its times")]

use std::process::Output;

use vz_tests::{
    Need, VzTree, assert_no_gap, last_count, ok, output_text, require, start_working_ve,
    unique_ctid, wait_count,
};

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// A started busybox VE of the image layout.
fn started_ve(tree: &VzTree) -> String {
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--layout", "ploop", "--diskspace", "300M:300M"]));
    ok(tree.run("vzctl", &["start", &ctid, "--wait"]));
    ctid
}

fn in_ve(tree: &VzTree, ctid: &str, command: &str) -> String {
    ok(tree.run("vzctl", &["exec", ctid, command]))
}

/// The UUID in a `Snapshot {uuid} has been successfully created` line.
fn created_uuid(out: &str) -> String {
    let line = out.lines().find(|l| l.contains("successfully created")).expect(out);
    let start = line.find('{').expect(line) + 1;
    line[start..start + 36].to_owned()
}

#[test]
fn data_written_after_a_snapshot_is_gone_after_a_switch() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    let ctid = started_ve(&tree);
    in_ve(&tree, &ctid, "echo before > /data; sync");
    let out = ok(tree.run(
        "vzctl",
        &["snapshot", &ctid, "--skip-suspend", "--name", "first one", "--description", "d"],
    ));
    let uuid = created_uuid(&out);
    let snap_dir = tree.path().join(format!("private/{ctid}/snapshots/{uuid}"));
    assert!(snap_dir.join("root.img").is_file() && snap_dir.join("ve.conf").is_file());
    assert!(!snap_dir.join("dump").exists(), "--skip-suspend: no memory");
    assert_eq!(in_ve(&tree, &ctid, "cat /data"), "before\n", "the VE runs on");

    // The list: OpenVZ's default fields and widths, `*` on the current one.
    let list = ok(tree.run("vzctl", &["snapshot-list", &ctid]));
    let mut lines = list.lines();
    let header = lines.next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["PARENT_UUID", "C", "UUID", "DATE", "NAME"]
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with(&format!("{:<38} * {{{uuid}}} ", "")), "{list}");
    assert!(row.ends_with(" first one"), "{list}");
    let only = ok(tree.run("vzctl", &["snapshot-list", &ctid, "-H", "-o", "uuid,name,desc"]));
    assert_eq!(only, format!("{{{uuid}}} {:<32} d\n", "first one"));
    let fields = ok(tree.run("vzctl", &["snapshot-list", &ctid, "-L"]));
    assert!(fields.contains("parent_uuid") && fields.contains("TARGET"), "{fields}");

    // After the snapshot: new data, a changed file, a changed config.
    in_ve(&tree, &ctid, "echo after > /data; echo new > /new; sync");
    ok(tree.run("vzctl", &["set", &ctid, "--hostname", "after.example", "--save"]));
    let second = created_uuid(&ok(tree.run("vzctl", &["snapshot", &ctid, "--skip-suspend"])));
    let list =
        ok(tree.run("vzctl", &["snapshot-list", &ctid, "-H", "-o", "uuid,parent_uuid,current"]));
    assert!(list.contains(&format!("{{{second}}} {{{uuid}}} *")), "parent and current: {list}");

    // The read-only mount of the first snapshot shows its data.
    let target = tree.path().join("snapmnt");
    std::fs::create_dir(&target).unwrap();
    let t = target.to_str().unwrap();
    ok(tree.run("vzctl", &["snapshot-mount", &ctid, "--id", &uuid, "--target", t]));
    assert_eq!(std::fs::read_to_string(target.join("data")).unwrap(), "before\n");
    assert!(!target.join("new").exists());
    assert!(std::fs::write(target.join("x"), "x").is_err(), "read-only");
    let listed = ok(tree.run("vzctl", &["snapshot-list", &ctid, "-H", "-o", "uuid,device,target"]));
    assert!(listed.contains("/dev/loop") && listed.contains(t), "{listed}");
    let busy = tree.run("vzctl", &["snapshot-delete", &ctid, "--id", &uuid]);
    assert_eq!(code(&busy), Some(158), "a mounted snapshot stays: {}", output_text(&busy));
    assert_eq!(
        code(&tree.run("vzctl", &["snapshot-mount", &ctid, "--id", &uuid, "--target", t])),
        Some(160)
    );
    ok(tree.run("vzctl", &["snapshot-umount", &ctid, "--id", &uuid]));
    assert!(!target.join("data").exists());
    assert_eq!(code(&tree.run("vzctl", &["snapshot-umount", &ctid, "--id", &uuid])), Some(161));

    // The switch: the VE is stopped (no memory in the snapshot), image and config back.
    let out = ok(tree.run("vzctl", &["snapshot-switch", &ctid, "--id", &format!("{{{uuid}}}")]));
    assert!(out.contains("successfully switched"), "{out}");
    let status = ok(tree.run("vzctl", &["status", &ctid]));
    assert!(status.contains("down"), "{status}");
    assert!(!tree.ve_conf(&ctid).contains("after.example"), "CTID.conf is the snapshot's");
    ok(tree.run("vzctl", &["start", &ctid, "--wait"]));
    assert_eq!(in_ve(&tree, &ctid, "cat /data"), "before\n");
    assert_eq!(in_ve(&tree, &ctid, "test -e /new && echo yes || echo no"), "no\n");
    let list = ok(tree.run("vzctl", &["snapshot-list", &ctid, "-H", "-o", "uuid,current"]));
    assert!(list.contains(&format!("{{{uuid}}} *")), "current moved: {list}");

    // Delete: the second snapshot's parent is now the first's (none).
    ok(tree.run("vzctl", &["snapshot-delete", &ctid, "--id", &uuid]));
    let list = ok(tree.run("vzctl", &["snapshot-list", &ctid, "-H", "-o", "uuid,parent_uuid"]));
    assert_eq!(list.trim_end(), format!("{{{second}}}"), "{list}");
    ok(tree.run("vzctl", &["snapshot-delete", &ctid, "--id", &second]));
    assert_eq!(ok(tree.run("vzctl", &["snapshot-list", &ctid, "-H"])), "");
    let left: Vec<_> = std::fs::read_dir(tree.path().join(format!("private/{ctid}/snapshots")))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["current"], "nothing but the current marker is left");
}

#[test]
fn bad_and_unknown_ids_and_the_simfs_layout_get_openvz_exit_codes() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--layout", "ploop", "--diskspace", "200M:200M"]));
    let unknown = "0b5d2c3e-1111-4222-8333-944455556666";
    let target = tree.path().to_str().unwrap().to_owned();
    for (args, want) in [
        (vec!["snapshot-switch", &ctid, "--id", unknown], 159),
        (vec!["snapshot-delete", &ctid, "--id", unknown], 158),
        (vec!["snapshot-mount", &ctid, "--id", unknown, "--target", &target], 160),
        (vec!["snapshot-umount", &ctid, "--id", unknown], 161),
        (vec!["snapshot-list", &ctid, "--id", unknown], 21),
        (vec!["snapshot-switch", &ctid, "--id", "not-a-uuid"], 21),
        (vec!["snapshot", &ctid, "--id", "{123}"], 21),
        (vec!["snapshot-delete", &ctid], 21),
        (vec!["snapshot-list", &ctid, "-o", "uuid,bogus"], 21),
        (vec!["snapshot-switch", &ctid, "--id", unknown, "--skip-resume", "--must-resume"], 20),
    ] {
        let out = tree.run("vzctl", &args);
        assert_eq!(code(&out), Some(want), "{args:?}: {}", output_text(&out));
        assert!(!out.stderr.is_empty(), "{args:?}: a message");
    }
    // A stopped VE's snapshot has no memory: --must-resume refuses to switch to it.
    let uuid = created_uuid(&ok(tree.run("vzctl", &["snapshot", &ctid, "--skip-config"])));
    let out = tree.run("vzctl", &["snapshot-switch", &ctid, "--id", &uuid, "--must-resume"]);
    assert_eq!(code(&out), Some(159), "{}", output_text(&out));
    assert!(output_text(&out).contains("no dump"), "{}", output_text(&out));
    let dup = tree.run("vzctl", &["snapshot", &ctid, "--id", &uuid]);
    assert_eq!(code(&dup), Some(156), "{}", output_text(&dup));
    ok(tree.run("vzctl", &["snapshot-delete", &ctid, "--id", &uuid]));

    // simfs: "ploop only", with each command's code; compact is a note and 0.
    let simfs = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &simfs, "--layout", "simfs"]));
    for (args, want) in [
        (vec!["snapshot", &simfs], 156),
        (vec!["snapshot-switch", &simfs, "--id", unknown], 159),
        (vec!["snapshot-list", &simfs], 167),
    ] {
        let out = tree.run("vzctl", &args);
        assert_eq!(code(&out), Some(want), "{args:?}: {}", output_text(&out));
        assert!(output_text(&out).contains("ploop"), "{}", output_text(&out));
    }
    let out = ok(tree.run("vzctl", &["compact", &simfs]));
    assert!(out.contains("only supported for ploop"), "{out}");
}

#[test]
fn a_running_ve_s_snapshot_with_memory_comes_back_running() {
    require!(
        Need::Root,
        Need::Loop,
        Need::Program("/bin/busybox"),
        Need::Program("/usr/local/sbin/criu"),
        if vz_tests::is_cgroup_v2() {
            Need::CgroupController("pids")
        } else {
            Need::CgroupController("freezer")
        }
    );
    let tree = VzTree::new("");
    // Host devices at the low indexes, as in the checkpoint tests (CRIU makes a VE's
    // interfaces from the host's namespace).
    for i in 0..6 {
        let name = format!("vzh{i}");
        ok(tree.in_netns("ip").args(["link", "add", &name, "type", "bridge"]).output().unwrap());
    }
    let ctid = unique_ctid().to_string();
    start_working_ve(&tree, &ctid, "198.51.100.78", &[]);
    let at_snapshot = wait_count(&tree, &ctid, 10);
    let t = std::time::Instant::now();
    let out = ok(tree.run("vzctl", &["snapshot", &ctid, "--name", "mem"]));
    let took = t.elapsed();
    let uuid = created_uuid(&out);
    let snap = tree.path().join(format!("private/{ctid}/snapshots/{uuid}"));
    assert!(snap.join("dump/inventory.img").is_file(), "the memory is in the snapshot");
    // The VE ran on: the counter goes past the snapshot.
    let later = wait_count(&tree, &ctid, last_count(&tree, &ctid) + 40);
    assert_no_gap(&tree, &ctid);
    let list = ok(tree.run("vzctl", &["snapshot-list", &ctid, "-H", "-o", "name,current"]));
    assert!(list.contains("mem") && list.contains('*'), "{list}");

    let t = std::time::Instant::now();
    let out = ok(tree.run("vzctl", &["snapshot-switch", &ctid, "--id", &uuid, "--must-resume"]));
    let switched = t.elapsed();
    assert!(out.contains("successfully switched"), "{out}");
    let status = ok(tree.run("vzctl", &["status", &ctid]));
    assert!(status.contains("running"), "{status}");
    // The counter's file is the snapshot's and its process goes on from there.
    let back = last_count(&tree, &ctid);
    assert!(back < later, "the counts after the snapshot are gone: {back} < {later}");
    assert!(back >= at_snapshot, "{back} >= {at_snapshot}");
    wait_count(&tree, &ctid, later + 10);
    assert_no_gap(&tree, &ctid);
    eprintln!("snapshot with memory: {took:?}; switch with restore: {switched:?}");
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
    ok(tree.run("vzctl", &["snapshot-delete", &ctid, "--id", &uuid]));
}

#[test]
fn compact_gives_freed_blocks_back_to_the_host() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    let ctid = started_ve(&tree);
    let image = tree.path().join(format!("private/{ctid}/root.hdd/root.img"));
    let blocks = |p: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().blocks() * 512
    };
    in_ve(&tree, &ctid, "dd if=/dev/urandom of=/big bs=1M count=64 2>/dev/null; sync");
    let full = blocks(&image);
    in_ve(&tree, &ctid, "rm /big; sync");
    let out = ok(tree.run("vzctl", &["compact", &ctid]));
    let after = blocks(&image);
    assert!(full - after >= 48 << 20, "64 MiB freed, {full} -> {after} bytes: {out}");
    assert!(out.contains("Image allocation"), "{out}");
    // A stopped, unmounted VE is mounted for it and unmounted after.
    ok(tree.run("vzctl", &["stop", &ctid]));
    ok(tree.run("vzctl", &["compact", &ctid]));
    let status = ok(tree.run("vzctl", &["status", &ctid]));
    assert!(status.contains("unmounted"), "{status}");
}

/// Runs `vzctl args` with a SIGKILL at `step` and asserts that it died there.
fn crash(tree: &VzTree, step: &str, args: &[&str]) {
    use std::os::unix::process::ExitStatusExt;
    let out =
        tree.cmd("vzctl").env("VZ_TEST_CRASH_AT", step).args(args).output().expect("run vzctl");
    assert_eq!(out.status.signal(), Some(9), "{args:?} at {step}: {}", output_text(&out));
}

fn snapshot_dir_entries(tree: &VzTree, ctid: &str) -> Vec<String> {
    let dir = tree.path().join(format!("private/{ctid}/snapshots"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_killed_snapshot_or_switch_is_repaired_by_the_next_command() {
    require!(
        Need::Root,
        Need::Loop,
        Need::Program("/bin/busybox"),
        Need::CgroupController("pids"),
        if vz_tests::is_cgroup_v2() {
            Need::CgroupController("pids")
        } else {
            Need::CgroupController("freezer")
        }
    );
    let tree = VzTree::new("");
    let ctid = started_ve(&tree);
    in_ve(&tree, &ctid, "echo one > /data; sync");
    // Killed with the file system frozen: the next command thaws it and drops the half-made
    // snapshot.
    crash(&tree, "snapshot:fs-frozen", &["snapshot", &ctid, "--skip-suspend"]);
    let out = ok(tree.run("vzctl", &["snapshot-list", &ctid, "-H"]));
    assert!(out.contains("Recovering from an interrupted snapshot"), "{out}");
    assert_eq!(snapshot_dir_entries(&tree, &ctid), Vec::<String>::new());
    in_ve(&tree, &ctid, "echo two > /data; sync");
    // Killed with the VE suspended (before its dump): the next command resumes it.
    crash(&tree, "snapshot:suspended", &["snapshot", &ctid]);
    ok(tree.run("vzctl", &["snapshot-list", &ctid]));
    assert_eq!(in_ve(&tree, &ctid, "cat /data"), "two\n", "the VE runs again");

    let uuid = created_uuid(&ok(tree.run("vzctl", &["snapshot", &ctid, "--skip-suspend"])));
    in_ve(&tree, &ctid, "echo three > /data; sync");
    ok(tree.run("vzctl", &["set", &ctid, "--hostname", "later.example", "--save"]));
    // Killed before the image copy was complete: the VE is stopped, its image its own.
    crash(&tree, "snapshot-switch:copied", &["snapshot-switch", &ctid, "--id", &uuid]);
    ok(tree.run("vzctl", &["start", &ctid, "--wait"]));
    assert_eq!(in_ve(&tree, &ctid, "cat /data"), "three\n");
    assert!(!tree.path().join(format!("private/{ctid}/root.hdd/root.img.switch")).exists());
    // Killed after the image rename: the next command finishes the switch.
    crash(&tree, "snapshot-switch:image-replaced", &["snapshot-switch", &ctid, "--id", &uuid]);
    let out = ok(tree.run("vzctl", &["snapshot-list", &ctid, "-H", "-o", "uuid,current"]));
    assert!(out.contains(&format!("{{{uuid}}} *")), "{out}");
    assert!(!tree.ve_conf(&ctid).contains("later.example"), "the snapshot's config is back");
    ok(tree.run("vzctl", &["start", &ctid, "--wait"]));
    assert_eq!(in_ve(&tree, &ctid, "cat /data"), "two\n");
}
