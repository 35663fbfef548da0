//! Black-box tests of the boot service (`vz-ctl/etc/init.d/vz`, which the systemd unit runs):
//! run against a test tree through `VZ_CONFIG`, it starts the ONBOOT=yes VEs in BOOTORDER
//! (higher first, then by CTID) and those that were running at the last stop unless
//! ONBOOT=no, stops or checkpoints every running VE at stop per VE_STOP_MODE, and answers
//! `status` with LSB's exit codes.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

use std::process::Output;

use vz_tests::{Need, VzTree, bin_dir, ok, output_text, require, unique_ctid, workspace};

/// Runs the service script with `action` against the tree, in its network namespace.
fn service(tree: &VzTree, action: &str) -> Output {
    tree.in_netns("/bin/sh")
        .arg(workspace().join("vz-ctl/etc/init.d/vz"))
        .arg(action)
        .env("VZ_CONFIG", tree.vz_conf())
        .env("VZ_BIN_DIR", bin_dir())
        .output()
        .expect("run the service script")
}

/// Appends lines to the tree's vz.conf (its own reboot-marker directory first of all, so
/// that nothing is written to the host's /var/lib/vzctl).
fn configure(tree: &VzTree, lines: &str) {
    use std::io::Write;
    let mut f =
        std::fs::OpenOptions::new().append(true).open(tree.vz_conf()).expect("open vz.conf");
    let markers = tree.path().join("vzreboot");
    write!(f, "VZREBOOTDIR={}\n{lines}\n", markers.display()).expect("write vz.conf");
}

/// Appends `lines` to CTID.conf.
fn ve_conf(tree: &VzTree, ctid: &str, lines: &str) {
    use std::io::Write;
    let path = tree.path().join(format!("conf/{ctid}.conf"));
    let mut f = std::fs::OpenOptions::new().append(true).open(path).expect("open CTID.conf");
    writeln!(f, "{lines}").expect("write CTID.conf");
}

fn status_of(tree: &VzTree, ctid: &str) -> String {
    let out = ok(tree.run("vzlist", &["-a", "-H", "-o", "status", ctid]));
    out.trim().to_owned()
}

#[test]
fn service_starts_onboot_ves_in_bootorder_and_stops_them() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    configure(&tree, "VE_STOP_MODE=stop\nVE_PARALLEL=1");
    tree.build_busybox_cache();
    // a..d start at boot; e never does; f only when it ran at the last stop.
    let ids: Vec<String> = (0..6).map(|_| unique_ctid().to_string()).collect();
    let [a, b, c, d, e, f] = [0, 1, 2, 3, 4, 5].map(|i| ids[i].as_str());
    for id in &ids {
        ok(tree.run("vzctl", &["create", id]));
    }
    ve_conf(&tree, a, "ONBOOT=\"yes\"\nBOOTORDER=\"10\"");
    ve_conf(&tree, b, "ONBOOT=\"yes\"\nBOOTORDER=\"20\"");
    ve_conf(&tree, c, "ONBOOT=\"yes\"");
    ve_conf(&tree, d, "ONBOOT=\"yes\"\nBOOTORDER=\"10\"");
    ve_conf(&tree, e, "ONBOOT=\"no\"\nBOOTORDER=\"99\"");

    let stopped = service(&tree, "status");
    assert_eq!(stopped.status.code(), Some(3), "{}", output_text(&stopped));
    assert!(String::from_utf8_lossy(&stopped.stdout).contains("vz is stopped."));

    let started = ok(service(&tree, "start"));
    let order: Vec<&str> = started
        .lines()
        .filter_map(|l| l.strip_prefix("Starting CT "))
        .map(|l| l.trim_end_matches(": done"))
        .collect();
    assert_eq!(order, [b, a, d, c], "higher BOOTORDER first, then CTID, unset last: {started}");
    for id in [a, b, c, d] {
        assert_eq!(status_of(&tree, id), "running", "{id}");
    }
    for id in [e, f] {
        assert_eq!(status_of(&tree, id), "stopped", "{id}");
    }
    let running = service(&tree, "status");
    assert_eq!(running.status.code(), Some(0), "{}", output_text(&running));
    assert!(String::from_utf8_lossy(&running.stdout).contains("4 container(s) running"));

    // A second start starts nothing new; e and f run by hand until the host goes down.
    let again = ok(service(&tree, "start"));
    assert!(!again.contains("Starting CT"), "{again}");
    ok(tree.run("vzctl", &["start", e]));
    ok(tree.run("vzctl", &["start", f]));

    let down = ok(service(&tree, "stop"));
    for id in &ids {
        assert!(down.contains(&format!("Stopping CT {id}: done")), "{down}");
        assert_eq!(status_of(&tree, id), "stopped", "{id}");
        assert!(tree.path().join("vzreboot").join(id).exists(), "marker of {id}");
    }
    let after = service(&tree, "status");
    assert_eq!(after.status.code(), Some(3), "{}", output_text(&after));

    // Next boot: f ran before and has no ONBOOT, so it comes back; e has ONBOOT=no.
    let boot = ok(service(&tree, "restart"));
    assert!(boot.contains(&format!("Starting CT {f}: done")), "{boot}");
    assert!(!boot.contains(&format!("Starting CT {e}")), "{boot}");
    for id in [a, b, c, d, f] {
        assert_eq!(status_of(&tree, id), "running", "{id}");
        assert!(!tree.path().join("vzreboot").join(id).exists(), "marker of {id} removed");
    }
    assert_eq!(status_of(&tree, e), "stopped");
    ok(service(&tree, "stop"));
    for id in &ids {
        assert_eq!(status_of(&tree, id), "stopped", "{id}");
    }
}

#[test]
fn service_checkpoints_at_stop_and_restores_at_start() {
    require!(
        Need::Root,
        Need::Program("/bin/busybox"),
        Need::CgroupController("pids"),
        Need::Program("/usr/local/sbin/criu")
    );
    // Privileged, as the cpt tests (issue 14: the user-namespace path is intermittent).
    let tree = VzTree::new("LOCAL_UID=0\nLOCAL_GID=0\n");
    configure(&tree, "VE_STOP_MODE=suspend");
    tree.build_busybox_cache();
    let (kept, stopped) = (unique_ctid().to_string(), unique_ctid().to_string());
    for id in [&kept, &stopped] {
        ok(tree.run("vzctl", &["create", id]));
        ve_conf(&tree, id, "ONBOOT=\"yes\"");
    }
    // A VE's own VE_STOP_MODE wins over vz.conf's.
    ve_conf(&tree, &stopped, "VE_STOP_MODE=\"stop\"");
    ok(service(&tree, "start"));
    let sleep = "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!";
    let pid = ok(tree.run("vzctl", &["exec", &kept, sleep])).trim().to_owned();
    assert!(pid.parse::<u32>().is_ok(), "{pid}");

    let down = ok(service(&tree, "stop"));
    assert!(down.contains(&format!("Checkpointing CT {kept}: done")), "{down}");
    assert!(down.contains(&format!("Stopping CT {stopped}: done")), "{down}");
    assert!(tree.path().join(format!("dump/Dump.{kept}")).exists(), "{down}");
    assert_ne!(status_of(&tree, &kept), "running");

    let up = ok(service(&tree, "start"));
    assert!(up.contains(&format!("Starting CT {kept}: done")), "{up}");
    assert_eq!(status_of(&tree, &kept), "running");
    // Restored, not booted again: the process started before the checkpoint is there.
    let comm = ok(tree.run("vzctl", &["exec", &kept, &format!("cat /proc/{pid}/comm")]));
    assert_eq!(comm.trim(), "sleep");
    assert!(!tree.path().join(format!("dump/Dump.{kept}")).exists(), "the dump is used up");
    ve_conf(&tree, &kept, "VE_STOP_MODE=\"stop\"");
    ok(service(&tree, "stop"));
}

#[test]
fn service_usage_missing_config_and_disabled() {
    require!(Need::Root);
    let tree = VzTree::new("");
    configure(&tree, "VIRTUOZZO=no");
    let bad = service(&tree, "bogus");
    assert_eq!(bad.status.code(), Some(2), "{}", output_text(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Usage:"));
    let disabled = ok(service(&tree, "start"));
    assert!(disabled.contains("disabled"), "{disabled}");
    assert!(!tree.path().join("run/vz.service").exists());

    let missing = tree
        .in_netns("/bin/sh")
        .arg(workspace().join("vz-ctl/etc/init.d/vz"))
        .arg("status")
        .env("VZ_CONFIG", tree.path().join("absent.conf"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(4), "LSB: status unknown");
    let start = tree
        .in_netns("/bin/sh")
        .arg(workspace().join("vz-ctl/etc/init.d/vz"))
        .arg("start")
        .env("VZ_CONFIG", tree.path().join("absent.conf"))
        .output()
        .unwrap();
    assert_eq!(start.status.code(), Some(6), "LSB: not configured");
}

#[test]
fn systemd_unit_runs_the_script() {
    let unit = std::fs::read_to_string(workspace().join("vz-ctl/etc/systemd/vz.service")).unwrap();
    for line in [
        "Type=oneshot",
        "RemainAfterExit=yes",
        "ExecStart=/etc/init.d/vz start",
        "ExecStop=/etc/init.d/vz stop",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}");
    }
}
