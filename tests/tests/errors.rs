//! Black-box tests of vzctl's and vzlist's error paths: OpenVZ's messages and exit codes, and
//! nothing changed on disk by a refused command.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

use std::process::Output;

use vz_tests::{Need, VzTree, require, unique_ctid};

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn listing(tree: &VzTree) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(tree.path().join("conf"))
        .expect("read the config directory")
        .map(|e| e.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn bad_command_lines_get_openvz_exit_codes() {
    require!(Need::Root);
    let tree = VzTree::new("");
    assert_eq!(code(&tree.run("vzctl", &[])), Some(20));
    let bad = tree.run("vzctl", &["frobnicate", "101"]);
    assert_eq!(code(&bad), Some(20));
    assert!(stderr(&bad).contains("Bad command: frobnicate"));
    assert_eq!(code(&tree.run("vzctl", &["start"])), Some(21), "CT ID missing");
    assert_eq!(code(&tree.run("vzctl", &["start", "2147483645"])), Some(21));
    assert_eq!(code(&tree.run("vzctl", &["start", "no-such-name"])), Some(21));
    assert_eq!(code(&tree.run("vzctl", &["start", "101", "--bogus"])), Some(21));
    assert_eq!(code(&tree.run("vzctl", &["start", "101", "extra"])), Some(20));
    let version = tree.run("vzctl", &["--version"]);
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("vzctl version "));
    for args in [&["set", "--help"][..], &["set", "101", "--help"]] {
        let help = tree.run("vzctl", args);
        assert_eq!(code(&help), Some(0), "vzctl {args:?}: {}", stderr(&help));
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(text.starts_with("Usage: vzctl set ") && text.contains("--numproc"), "{text}");
    }
    // vzquota: a CTID out of range is a bad command line (2).
    let quota = tree.run("vzquota", &["stat", "2147483645"]);
    assert_eq!(code(&quota), Some(2), "{}", stderr(&quota));
}

#[test]
fn operations_on_a_missing_ve_change_nothing() {
    require!(Need::Root);
    let tree = VzTree::new("");
    let before = listing(&tree);
    let ctid = unique_ctid().to_string();
    let start = tree.run("vzctl", &["start", &ctid]);
    assert_eq!(code(&start), Some(14));
    assert!(stderr(&start).contains("Container config file does not exist"));
    assert_eq!(code(&tree.run("vzctl", &["set", &ctid, "--hostname", "x", "--save"])), Some(14));
    let status = tree.run("vzctl", &["status", &ctid]);
    assert_eq!(code(&status), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&status.stdout).trim(),
        format!("CTID {ctid} deleted unmounted down")
    );
    let missing = tree.run("vzctl", &["create", &ctid, "--ostemplate", "no-such-template"]);
    assert_eq!(code(&missing), Some(91), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("no-such-template.tar"), "{}", stderr(&missing));
    let sample = tree.run("vzctl", &["create", &ctid, "--config", "no-such-sample"]);
    assert_eq!(code(&sample), Some(82), "{}", stderr(&sample));
    assert_eq!(listing(&tree), before, "refused commands leave the config directory alone");
    assert!(!tree.path().join(format!("private/{ctid}")).exists());
    let without_vz_conf = tree
        .cmd("vzctl")
        .env("VZ_CONFIG", tree.path().join("missing.conf"))
        .args(["status", &ctid])
        .output()
        .unwrap();
    assert_eq!(code(&without_vz_conf), Some(10));
}

#[test]
fn create_refuses_an_existing_private_area_and_cleans_up_failures() {
    require!(Need::Root, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    let first = tree.run("vzctl", &["create", &ctid]);
    assert_eq!(code(&first), Some(0), "{}", stderr(&first));
    let conf = std::fs::read_to_string(tree.path().join(format!("conf/{ctid}.conf"))).unwrap();
    assert!(conf.contains("OSTEMPLATE=\"busybox\""), "DEF_OSTEMPLATE used: {conf}");
    assert!(conf.contains("ORIGIN_SAMPLE") || conf.contains("PHYSPAGES"), "sample copied: {conf}");
    assert!(conf.contains("VE_PRIVATE=\""), "{conf}");
    assert_eq!(code(&tree.run("vzctl", &["create", &ctid])), Some(44));
    assert_eq!(code(&tree.run("vzctl", &["destroy", &ctid])), Some(0));
    assert!(!tree.path().join(format!("private/{ctid}")).exists());
    assert!(tree.path().join(format!("conf/{ctid}.conf.destroyed")).exists());

    // A broken cache: the private area, config and name made so far are removed again.
    std::fs::write(tree.path().join("template/cache/broken.tar.gz"), b"\x1f\x8bnot really gzip")
        .unwrap();
    let other = unique_ctid().to_string();
    let before = listing(&tree);
    let broken =
        tree.run("vzctl", &["create", &other, "--ostemplate", "broken", "--name", "brokenve"]);
    assert_eq!(code(&broken), Some(48), "{}", stderr(&broken));
    assert_eq!(listing(&tree), before);
    assert!(!tree.path().join(format!("private/{other}")).exists());
    assert!(!tree.path().join(format!("private/{other}.tmp")).exists());
    assert!(!tree.path().join("names/brokenve").exists());
}

#[test]
fn a_held_lock_refuses_a_second_operation() {
    require!(Need::Root, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    assert_eq!(code(&tree.run("vzctl", &["create", &ctid])), Some(0));
    // A live process (this test) holds the lock.
    std::fs::write(
        tree.path().join(format!("lock/{ctid}.lck")),
        format!("{}\n\n", std::process::id()),
    )
    .unwrap();
    assert_eq!(code(&tree.run("vzctl", &["start", &ctid])), Some(9));
    // A dead holder's lock is stale and removed.
    std::fs::write(tree.path().join(format!("lock/{ctid}.lck")), "99999999\n\n").unwrap();
    assert_eq!(code(&tree.run("vzctl", &["mount", &ctid])), Some(0));
    assert_eq!(code(&tree.run("vzctl", &["umount", &ctid])), Some(0));
}
