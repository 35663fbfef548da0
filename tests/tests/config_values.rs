//! What vzctl writes into CTID.conf reads back the same in sh (`. CTID.conf`, as action
//! scripts do) and in vz; what cannot be written is refused; a config that cannot be parsed
//! fails only its own VE.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

use std::process::Command;

use vz_tests::{Need, VzTree, ok, output_text, require, unique_ctid};

/// The values of `keys` when sh sources `conf`, one per line (none may hold a newline).
fn sourced(conf: &std::path::Path, keys: &[&str]) -> Vec<String> {
    let printf: String = keys.iter().map(|k| format!(" \"${k}\"")).collect();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(". \"$1\"; printf '%s\\n'{printf}"))
        .arg("sh")
        .arg(conf)
        .output()
        .expect("run sh");
    assert!(out.status.success(), "sh: {}", output_text(&out));
    String::from_utf8(out.stdout).expect("UTF-8").lines().map(str::to_owned).collect()
}

#[test]
fn hostile_values_round_trip_through_sh_and_vzctl() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    let description =
        r#"it's "quoted"; VE_ROOT=/etc; $(touch /tmp/vz-pwned) `id` \n \\ $HOME ${X}"#;
    ok(tree
        .run("vzctl", &["create", &ctid, "--ostemplate", "busybox", "--description", description]));
    let searchdomain = r#"a"b $(x) c\"#;
    ok(tree.run("vzctl", &["set", &ctid, "--searchdomain", searchdomain, "--save"]));
    let conf = tree.path().join(format!("conf/{ctid}.conf"));
    let root = tree.path().join(format!("root/{ctid}"));
    assert_eq!(
        sourced(&conf, &["DESCRIPTION", "SEARCHDOMAIN", "VE_ROOT"]),
        [description, searchdomain, &root.display().to_string()]
    );
    assert!(!std::path::Path::new("/tmp/vz-pwned").exists(), "no command ran");
    // vz reads the same values (vzlist's description field).
    let listed = ok(tree.run("vzlist", &["-H", "-o", "description", &ctid]));
    assert_eq!(listed.trim(), description);

    // A line break cannot be stored: refused with 21, naming the option, nothing saved.
    let before = std::fs::read_to_string(&conf).unwrap();
    let out = tree.run("vzctl", &["set", &ctid, "--description", "two\nlines", "--save"]);
    assert_eq!(out.status.code(), Some(21), "{}", output_text(&out));
    assert!(output_text(&out).contains("--description"), "{}", output_text(&out));
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), before);
    ok(tree.run("vzctl", &["destroy", &ctid]));
}

#[test]
fn relative_paths_are_refused_and_leave_nothing() {
    require!(Need::Root);
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    let out =
        tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox", "--private", "rel/p"]);
    assert_eq!(out.status.code(), Some(21), "{}", output_text(&out));
    assert!(output_text(&out).contains("--private"), "{}", output_text(&out));
    let out = tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox", "--root", "r"]);
    assert_eq!(out.status.code(), Some(21), "{}", output_text(&out));
    for dir in ["conf", "private", "root"] {
        let names: Vec<_> = std::fs::read_dir(tree.path().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&ctid))
            .collect();
        assert!(names.is_empty(), "{dir}: {names:?}");
    }
}

#[test]
fn a_config_that_cannot_be_parsed_fails_only_its_own_row() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let good = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &good, "--ostemplate", "busybox"]));
    let bad = unique_ctid().to_string();
    let bad_conf = tree.path().join(format!("conf/{bad}.conf"));
    std::fs::write(&bad_conf, b"HOSTNAME=\"ok\"\nDESCRIPTION=\"caf\xe9\"\n").unwrap();
    let out = tree.run("vzlist", &["-a", "-H", "-o", "ctid"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let listed: Vec<String> =
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect();
    assert_eq!(listed, std::slice::from_ref(&good));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2: invalid UTF-8", bad_conf.display())),
        "file, line and reason: {stderr}"
    );
    std::fs::remove_file(&bad_conf).unwrap();
    ok(tree.run("vzctl", &["destroy", &good]));
}
