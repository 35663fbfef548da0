//! Black-box tests of `vzctl convert` (simfs to the image layout, the tree kept with its
//! ids, modes, links and extended attributes), `quotaon`/`quotaoff`/`quotainit` (OpenVZ's
//! wrapper codes and messages) and `exec3` (argv without a shell, exec2's exit codes).
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Output};

use vz_tests::{Need, VzTree, ok, output_text, require, unique_ctid};

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn python(script: &str, path: &std::path::Path) -> String {
    ok(Command::new("python3").args(["-c", script]).arg(path).output().expect("run python3"))
}

#[test]
fn convert_makes_an_image_of_a_simfs_tree_keeping_ids_modes_links_and_xattrs() {
    require!(
        Need::Root,
        Need::Loop,
        Need::Program("/bin/busybox"),
        Need::Program("/usr/bin/python3"),
        Need::CgroupController("pids")
    );
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--layout", "simfs", "--diskspace", "300M:300M"]));
    let private = tree.path().join(format!("private/{ctid}"));
    let file = private.join("srv-file");
    std::fs::write(&file, "payload\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    nix::unistd::chown(&file, Some(1234.into()), Some(5678.into())).unwrap();
    std::fs::hard_link(&file, private.join("hard-link")).unwrap();
    std::os::unix::fs::symlink("srv-file", private.join("sym-link")).unwrap();
    python("import os,sys; os.setxattr(sys.argv[1], 'trusted.vz', b'kept')", &file);

    let bad = tree.run("vzctl", &["convert", &ctid, "--layout", "simfs"]);
    assert_eq!(code(&bad), Some(21), "{}", output_text(&bad));
    // A running VE is refused before its layout is looked at (a busybox image VE here: a
    // simfs root on the kernel lab's tmpfs cannot be idmapped before Linux 6.3).
    let other = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &other, "--ostemplate", "busybox"]));
    ok(tree.run("vzctl", &["start", &other]));
    let running = tree.run("vzctl", &["convert", &other]);
    assert_eq!(code(&running), Some(32), "{}", output_text(&running));
    ok(tree.run("vzctl", &["stop", &other, "--fast"]));
    ok(tree.run("vzctl", &["destroy", &other]));

    let out = ok(tree.run("vzctl", &["convert", &ctid, "--layout", "ploop"]));
    assert!(out.contains("converted"), "{out}");
    assert!(private.join("root.hdd/root.img").is_file());
    assert!(tree.ve_conf(&ctid).contains("VE_LAYOUT=\"ploop\""), "{}", tree.ve_conf(&ctid));
    let parent = tree.path().join("private");
    let mut left: Vec<String> = std::fs::read_dir(&parent)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        std::slice::from_ref(&ctid),
        "no old tree, temporary or simfs quota record left"
    );
    let again = tree.run("vzctl", &["convert", &ctid]);
    assert_eq!(code(&again), Some(21), "{}", output_text(&again));

    ok(tree.run("vzctl", &["mount", &ctid]));
    let root = tree.path().join(format!("root/{ctid}"));
    let meta = std::fs::metadata(root.join("srv-file")).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (1234, 5678, 0o640));
    assert_eq!(meta.nlink(), 2, "the hard link is one");
    assert_eq!(std::fs::read_link(root.join("sym-link")).unwrap().to_str(), Some("srv-file"));
    let xattr = python(
        "import os,sys; print(os.getxattr(sys.argv[1], 'trusted.vz').decode())",
        &root.join("srv-file"),
    );
    assert_eq!(xattr, "kept\n");
    ok(tree.run("vzctl", &["umount", &ctid]));
    // The VE boots from its image and sees its files with their ids (its mapping kept).
    ok(tree.run("vzctl", &["start", &ctid, "--wait"]));
    let ls =
        ok(tree
            .run("vzctl", &["exec", &ctid, "ls -ln /srv-file; cat /srv-file; df -k / | tail -1"]));
    assert!(ls.contains(" 1234 ") && ls.contains(" 5678 ") && ls.contains("payload"), "{ls}");
    ok(tree.run("vzctl", &["stop", &ctid]));

    // DISKSPACE unset: 63.
    let other = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &other, "--layout", "simfs"]));
    let conf = tree.path().join(format!("conf/{other}.conf"));
    let text = std::fs::read_to_string(&conf).unwrap();
    let kept: String =
        text.lines().filter(|l| !l.starts_with("DISKSPACE=")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&conf, kept).unwrap();
    let unset = tree.run("vzctl", &["convert", &other]);
    assert_eq!(code(&unset), Some(63), "{}", output_text(&unset));
}

#[test]
fn quota_wrappers_follow_disk_quota_and_the_layout() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let simfs = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &simfs, "--layout", "simfs", "--diskspace", "1G:2G"]));
    let init = ok(tree.run("vzctl", &["quotainit", &simfs]));
    assert!(init.contains("initialized") && init.contains("not enforced"), "{init}");
    let stat = ok(tree.run("vzquota", &["stat", &simfs]));
    assert!(stat.contains("1048576") && stat.contains("2097152"), "limits recorded: {stat}");
    ok(tree.run("vzctl", &["quotaon", &simfs]));
    ok(tree.run("vzctl", &["quotaoff", &simfs]));

    let conf = tree.path().join(format!("conf/{simfs}.conf"));
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("DISK_QUOTA=no\n");
    std::fs::write(&conf, text).unwrap();
    for (command, want) in [("quotaon", 60), ("quotaoff", 66), ("quotainit", 61)] {
        let out = tree.run("vzctl", &[command, &simfs]);
        assert_eq!(code(&out), Some(want), "{command}: {}", output_text(&out));
        assert!(output_text(&out).contains("Disk quota is not enabled, skipping operation"));
    }

    let ploop = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ploop, "--layout", "ploop", "--diskspace", "200M:200M"]));
    for command in ["quotaon", "quotaoff", "quotainit"] {
        let out = ok(tree.run("vzctl", &[command, &ploop]));
        assert!(out.contains("disk quota is obsoleted"), "{command}: {out}");
    }
}

#[test]
fn exec3_runs_argv_without_a_shell_with_exec2_exit_codes() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid]));
    let stopped = tree.run("vzctl", &["exec3", &ctid, "/bin/true"]);
    assert_eq!(code(&stopped), Some(31), "{}", output_text(&stopped));
    ok(tree.run("vzctl", &["start", &ctid, "--wait"]));
    // One argument with two spaces: a shell (exec, exec2) would split it, exec3 does not.
    let out = ok(tree.run("vzctl", &["exec3", &ctid, "echo", "a  b", "$HOME"]));
    assert_eq!(out, "a  b $HOME\n");
    let shell = ok(tree.run("vzctl", &["exec2", &ctid, "echo", "a  b"]));
    assert_eq!(shell, "a b\n", "exec2 goes through the shell");
    let seven = tree.run("vzctl", &["exec3", &ctid, "/bin/sh", "-c", "exit 7"]);
    assert_eq!(code(&seven), Some(7), "{}", output_text(&seven));
    let missing = tree.run("vzctl", &["exec3", &ctid, "/no/such/program"]);
    assert_ne!(code(&missing), Some(0), "{}", output_text(&missing));
    let none = tree.run("vzctl", &["exec3", &ctid]);
    assert_eq!(code(&none), Some(20), "{}", output_text(&none));
}

#[test]
fn a_killed_convert_or_compact_is_finished_or_undone_by_the_next_command() {
    use std::os::unix::process::ExitStatusExt;
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let crash = |step: &str, args: &[&str]| {
        let out = tree.cmd("vzctl").env("VZ_TEST_CRASH_AT", step).args(args).output();
        let out = out.expect("run vzctl");
        assert_eq!(out.status.signal(), Some(9), "{args:?} at {step}: {}", output_text(&out));
    };
    for (step, converted) in [("convert:copied", false), ("convert:old-aside", true)] {
        let ctid = unique_ctid().to_string();
        ok(tree.run("vzctl", &["create", &ctid, "--layout", "simfs", "--diskspace", "200M:200M"]));
        let private = tree.path().join(format!("private/{ctid}"));
        std::fs::write(private.join("mark"), "m").unwrap();
        crash(step, &["convert", &ctid]);
        let out = ok(tree.run("vzctl", &["mount", &ctid]));
        assert!(out.contains("Recovering from an interrupted convert"), "{step}: {out}");
        assert_eq!(private.join("root.hdd/root.img").is_file(), converted, "{step}");
        let root = tree.path().join(format!("root/{ctid}"));
        assert_eq!(std::fs::read_to_string(root.join("mark")).unwrap(), "m", "{step}");
        ok(tree.run("vzctl", &["umount", &ctid]));
        let names: Vec<String> = std::fs::read_dir(tree.path().join("private"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&ctid))
            .collect();
        assert_eq!(names, std::slice::from_ref(&ctid), "{step}: no temporaries left");
    }
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--layout", "ploop", "--diskspace", "200M:200M"]));
    crash("compact:trimmed", &["compact", &ctid]);
    ok(tree.run("vzctl", &["snapshot-list", &ctid]));
    let status = ok(tree.run("vzctl", &["status", &ctid]));
    assert!(status.contains("unmounted"), "compact's own mount is undone: {status}");
}
