//! Fault injection: vzctl killed with SIGKILL in the middle of each multi-step operation,
//! then the next command on the VE finishes or undoes what was left, and nothing leaks
//! (mounts, loop devices, cgroups, network devices, lock and intent records, directories).
//!
//! Two ways of killing: at a named step (`VZ_TEST_CRASH_AT=<step>` makes vzctl SIGKILL itself
//! there; vz_ctl::intent documents it), and at arbitrary instants (the test kills its own
//! child after a delay), which lands between the named steps.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]
#![allow(clippy::print_stderr, reason = "reports timings to the person running the tests")]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use support::{killed, leftovers, stale_records, status};
use vz_tests::{Need, VzTree, ok, output_text, require, unique_ctid};

const CRASH_AT: &str = "VZ_TEST_CRASH_AT";

const CREATE_STEPS: &[&str] = &[
    "create:begin",
    "create:private-made",
    "create:mounted",
    "create:unpacked",
    "create:config-written",
];
const START_STEPS: &[&str] = &[
    "start:begin",
    "mount:begin",
    "mount:mounted",
    "start:console-begun",
    "start:released",
    "start:settled",
];
const STOP_STEPS: &[&str] = &["stop:begin", "stop:killed", "stop:cgroup-removed"];
const MOUNT_STEPS: &[&str] = &["mount:begin", "mount:mounted", "umount:begin"];
const SET_STEPS: &[&str] = &["set:begin", "set:name-linked", "set:saved"];
const DESTROY_STEPS: &[&str] =
    &["destroy:begin", "destroy:private-removed", "destroy:config-renamed"];

/// Runs `vzctl args` with a crash at `step` and asserts that it was killed there.
fn crash(tree: &VzTree, step: &str, args: &[&str]) {
    let out = tree.cmd("vzctl").env(CRASH_AT, step).args(args).output().expect("run vzctl");
    assert!(killed(&out), "{args:?} at {step} was not killed: {}", output_text(&out));
}

/// The network devices of the tree's network namespace other than `lo`.
fn host_links(tree: &VzTree) -> Vec<String> {
    let out = Command::new("ip").args(["-n", tree.netns(), "-o", "link"]).output().expect("ip");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| n != "lo")
        .collect()
}

fn cached_tree() -> VzTree {
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    tree
}

#[test]
fn a_create_killed_at_any_step_is_undone_by_the_next_command() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"));
    let tree = cached_tree();
    for (i, step) in CREATE_STEPS.iter().enumerate() {
        let ctid = unique_ctid().to_string();
        let name = format!("crashed{i}");
        let create = ["create", &ctid, "--ostemplate", "busybox", "--name", &name];
        crash(&tree, step, &create);
        // The next create finishes the job: the killed one is undone first.
        let out = ok(tree.run("vzctl", &create));
        assert!(out.contains("Recovering from an interrupted create"), "{step}: {out}");
        assert_eq!(status(&tree, &ctid), "exist unmounted down", "{step}");
        assert_eq!(status(&tree, &name), "exist unmounted down", "{step}: name resolves");
        let since = SystemTime::now();
        ok(tree.run("vzctl", &["destroy", &ctid]));
        assert_eq!(leftovers(&tree, &ctid, since), Vec::<String>::new(), "after {step}");
    }
    // A destroy as the next command leaves nothing either (there is no VE after the undo).
    let ctid = unique_ctid().to_string();
    crash(&tree, "create:unpacked", &["create", &ctid, "--ostemplate", "busybox"]);
    assert!(!support::mounts_under(&tree.path().join("root")).is_empty(), "killed while mounted");
    let since = SystemTime::now();
    let out = tree.run("vzctl", &["destroy", &ctid]);
    assert_eq!(out.status.code(), Some(14), "{}", output_text(&out));
    assert_eq!(leftovers(&tree, &ctid, since), Vec::<String>::new());
    assert_eq!(std::fs::read_dir(tree.path().join("names")).unwrap().count(), 0);
}

#[test]
fn a_start_or_stop_killed_at_any_step_is_repaired_by_the_next_command() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = cached_tree();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox", "--ipadd", "192.0.2.77"]));
    for step in START_STEPS {
        crash(&tree, step, &["start", &ctid]);
        let again = tree.run("vzctl", &["start", &ctid]);
        // Killed after the init ran, the start is complete: the VE runs.
        let expected = if *step == "start:settled" { 32 } else { 0 };
        assert_eq!(again.status.code(), Some(expected), "{step}: {}", output_text(&again));
        assert_eq!(status(&tree, &ctid), "exist mounted running", "{step}");
        assert_eq!(ok(tree.run("vzctl", &["exec", &ctid, "echo", "up"])).trim(), "up");
        let since = SystemTime::now();
        ok(tree.run("vzctl", &["stop", &ctid]));
        assert_eq!(status(&tree, &ctid), "exist unmounted down", "{step}");
        assert_eq!(stale_records(&tree, &ctid), Vec::<String>::new(), "{step}");
        assert_eq!(support::cgroups_of(&tree, &ctid, since), Vec::<std::path::PathBuf>::new());
        assert_eq!(host_links(&tree), Vec::<String>::new(), "{step}: no venet left");
    }
    for step in STOP_STEPS {
        ok(tree.run("vzctl", &["start", &ctid]));
        crash(&tree, step, &["stop", &ctid]);
        // The next command (here a start) finishes the stop first.
        let out = ok(tree.run("vzctl", &["start", &ctid]));
        assert!(out.contains("Recovering from an interrupted stop"), "{step}: {out}");
        assert_eq!(status(&tree, &ctid), "exist mounted running", "{step}");
        ok(tree.run("vzctl", &["stop", &ctid]));
        assert_eq!(host_links(&tree), Vec::<String>::new(), "{step}: no venet left");
    }
    let since = SystemTime::now();
    ok(tree.run("vzctl", &["destroy", &ctid]));
    assert_eq!(leftovers(&tree, &ctid, since), Vec::<String>::new());
}

#[test]
fn mount_set_and_destroy_killed_at_any_step_are_repaired() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = cached_tree();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox"]));
    for step in MOUNT_STEPS {
        let command = if step.starts_with("umount") { "umount" } else { "mount" };
        if command == "umount" {
            ok(tree.run("vzctl", &["mount", &ctid]));
        }
        crash(&tree, step, &[command, &ctid]);
        // Either way the next command finds the VE unmounted (mount undone, umount done).
        let out = tree.run("vzctl", &["umount", &ctid]);
        assert_eq!(out.status.code(), Some(40), "{step}: {}", output_text(&out));
        assert_eq!(status(&tree, &ctid), "exist unmounted down", "{step}");
        assert!(support::mounts_under(tree.path()).is_empty(), "{step}");
    }
    for (i, step) in SET_STEPS.iter().enumerate() {
        let name = format!("setname{i}");
        crash(&tree, step, &["set", &ctid, "--name", &name, "--hostname", "h.example", "--save"]);
        ok(tree.run("vzctl", &["set", &ctid, "--description", "after", "--save"]));
        // The name links match the config's NAME, whatever it became.
        let conf = std::fs::read_to_string(tree.path().join(format!("conf/{ctid}.conf"))).unwrap();
        let links: Vec<String> = std::fs::read_dir(tree.path().join("names"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let named = conf.lines().find_map(|l| l.strip_prefix("NAME=\"")?.strip_suffix('"'));
        assert_eq!(links, named.into_iter().map(str::to_owned).collect::<Vec<_>>(), "{step}");
        if *step == "set:saved" {
            assert_eq!(named, Some(name.as_str()), "saved before the kill");
        }
        assert_eq!(stale_records(&tree, &ctid), Vec::<String>::new(), "{step}");
    }
    // A stale dump directory is no obstacle to destroy (reference: DUMPDIR/Dump.CTID).
    std::fs::create_dir_all(tree.path().join(format!("dump/Dump.{ctid}/images"))).unwrap();
    for (i, step) in DESTROY_STEPS.iter().enumerate() {
        let ctid = if i == 0 {
            ctid.clone()
        } else {
            let ctid = unique_ctid().to_string();
            ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox"]));
            ctid
        };
        let since = SystemTime::now();
        crash(&tree, step, &["destroy", &ctid]);
        let out = ok(tree.run("vzctl", &["destroy", &ctid]));
        assert!(out.contains("destroyed"), "{step}: {out}");
        assert_eq!(leftovers(&tree, &ctid, since), Vec::<String>::new(), "{step}");
        assert!(!tree.path().join(format!("dump/Dump.{ctid}")).exists(), "{step}");
    }
}

/// Runs `vzctl args` and kills it (SIGKILL, by its pid) after `delay`, unless it ended.
fn kill_after(tree: &VzTree, args: &[&str], delay: Duration) -> bool {
    let mut child = tree
        .cmd("vzctl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run vzctl");
    std::thread::sleep(delay);
    let ended = child.try_wait().expect("wait").is_some();
    if !ended {
        child.kill().expect("kill vzctl");
    }
    child.wait().expect("reap vzctl");
    !ended
}

#[test]
fn kills_at_arbitrary_instants_leave_a_ve_that_one_command_repairs_or_removes() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = cached_tree();
    let started = Instant::now();
    let mut interrupted = 0;
    for delay_ms in [2, 5, 10, 20, 35, 50, 80, 120, 200, 400] {
        let delay = Duration::from_millis(delay_ms);
        let ctid = unique_ctid().to_string();
        let create = ["create", &ctid, "--ostemplate", "busybox", "--ipadd", "192.0.2.78"];
        interrupted += usize::from(kill_after(&tree, &create, delay));
        // One command removes whatever the killed create left (14: nothing was left).
        let since = SystemTime::now();
        let out = tree.run("vzctl", &["destroy", &ctid]);
        assert!(matches!(out.status.code(), Some(0 | 14)), "{delay_ms} ms: {}", output_text(&out));
        let left = leftovers(&tree, &ctid, since);
        assert_eq!(left, Vec::<String>::new(), "create killed at {delay_ms} ms");

        ok(tree.run("vzctl", &create));
        interrupted += usize::from(kill_after(&tree, &["start", &ctid], delay));
        let out = tree.run("vzctl", &["start", &ctid]);
        assert!(matches!(out.status.code(), Some(0 | 32)), "{delay_ms} ms: {}", output_text(&out));
        assert_eq!(status(&tree, &ctid), "exist mounted running", "start killed at {delay_ms} ms");
        interrupted += usize::from(kill_after(&tree, &["stop", &ctid], delay));
        let out = tree.run("vzctl", &["stop", &ctid]);
        assert_eq!(out.status.code(), Some(0), "{delay_ms} ms: {}", output_text(&out));
        assert_eq!(status(&tree, &ctid), "exist unmounted down", "stop killed at {delay_ms} ms");
        assert_eq!(host_links(&tree), Vec::<String>::new(), "{delay_ms} ms: no venet left");
        let since = SystemTime::now();
        ok(tree.run("vzctl", &["destroy", &ctid]));
        assert_eq!(leftovers(&tree, &ctid, since), Vec::<String>::new(), "{delay_ms} ms");
    }
    // The delays must really interrupt operations, or this test proves nothing.
    assert!(interrupted >= 10, "only {interrupted} of 30 operations were interrupted");
    eprintln!("{interrupted} of 30 operations interrupted in {:?}", started.elapsed());
}

#[test]
fn a_start_fails_when_the_init_dies_during_boot() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = cached_tree();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox"]));
    let set_init = |script: &str| {
        ok(tree.run("vzctl", &["mount", &ctid]));
        let init = tree.path().join(format!("root/{ctid}/sbin/init"));
        let _ = std::fs::remove_file(&init);
        std::fs::write(&init, script).unwrap();
        let chmod = Command::new("chmod").arg("755").arg(&init).status().unwrap();
        assert!(chmod.success());
        ok(tree.run("vzctl", &["umount", &ctid]));
    };
    set_init("#!/bin/sh\necho dying\nexit 3\n");
    let out = tree.run("vzctl", &["start", &ctid]);
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    assert!(output_text(&out).contains("init exited"), "{}", output_text(&out));
    assert_eq!(status(&tree, &ctid), "exist unmounted down");
    // The failed start removed the cgroup it made.
    assert_eq!(
        support::cgroups_of(&tree, &ctid, SystemTime::now()),
        Vec::<std::path::PathBuf>::new()
    );

    // --wait returns as soon as the init is gone, not after its hour.
    set_init("#!/bin/sh\nsleep 1\nexit 4\n");
    let started = Instant::now();
    let out = tree.run("vzctl", &["start", &ctid, "--wait"]);
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    assert_eq!(status(&tree, &ctid), "exist unmounted down");
    let since = SystemTime::now();
    ok(tree.run("vzctl", &["destroy", &ctid]));
    assert_eq!(leftovers(&tree, &ctid, since), Vec::<String>::new());
}

#[test]
fn destroy_removes_a_running_mounted_ve_whose_config_is_gone() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = cached_tree();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox", "--ipadd", "192.0.2.79"]));
    ok(tree.run("vzctl", &["start", &ctid]));
    // The config is lost (an operator's rm, a disk error): the VE runs on, mounted.
    std::fs::remove_file(tree.path().join(format!("conf/{ctid}.conf"))).unwrap();
    assert_eq!(status(&tree, &ctid), "deleted mounted running");
    let since = SystemTime::now();
    let out = ok(tree.run("vzctl", &["destroy", &ctid]));
    assert!(out.contains("destroyed"), "{out}");
    assert_eq!(leftovers(&tree, &ctid, since), Vec::<String>::new());
    assert_eq!(status(&tree, &ctid), "deleted unmounted down");
    assert_eq!(host_links(&tree), Vec::<String>::new(), "no venet left");
    let proxy = Command::new("ip").args(["-n", tree.netns(), "neigh", "show", "proxy"]).output();
    let proxy = String::from_utf8_lossy(&proxy.expect("ip").stdout).into_owned();
    assert!(!proxy.contains("192.0.2.79"), "no proxy entry left: {proxy}");
    // Nothing left to destroy: OpenVZ's "does not exist" (14).
    assert_eq!(tree.run("vzctl", &["destroy", &ctid]).status.code(), Some(14));
}
