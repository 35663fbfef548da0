//! Black-box tests of a VE's whole life: `vzctl create`, `start`, `exec`, `stop`, `destroy`,
//! against a temporary vz tree, on the real kernel.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

use vz_tests::{Need, VzTree, ok, output_text, require, unique_ctid};

fn created(tree: &VzTree) -> String {
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree
        .run("vzctl", &["create", &ctid, "--ostemplate", "busybox", "--hostname", "ve.example"]));
    ctid
}

/// `vzctl start --wait` sees a boot that signals before vzctl would look: a pause right after
/// the init's release (`VZ_TEST_PAUSE_AT`) lets busybox's rcS open the boot fifo first. The
/// fifo's read end is open before the init runs; opened after, it never sees the signal and
/// the start waited for its hour-long limit (CI under load once).
#[test]
fn start_wait_sees_a_boot_that_signals_before_vzctl_looks() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    let ctid = created(&tree);
    let mut start = tree
        .cmd("vzctl")
        .args(["start", &ctid, "--wait"])
        .env("VZ_TEST_PAUSE_AT", "start:released")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run vzctl start");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = start.try_wait().expect("wait for vzctl start") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = start.kill();
            let _ = start.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let stopped = tree.run("vzctl", &["stop", &ctid, "--fast"]);
    ok(tree.run("vzctl", &["destroy", &ctid]));
    assert!(status.is_some_and(|s| s.success()), "start --wait returned: {status:?}");
    ok(stopped);
}

#[test]
fn a_ve_lives_and_leaves_nothing_behind() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    let ctid = created(&tree);
    assert_eq!(
        ok(tree.run("vzctl", &["status", &ctid])).trim(),
        format!("CTID {ctid} exist unmounted down")
    );

    ok(tree.run("vzctl", &["start", &ctid, "--wait"]));
    assert_eq!(
        ok(tree.run("vzctl", &["status", &ctid])).trim(),
        format!("CTID {ctid} exist mounted running")
    );

    let ps = ok(tree.run("vzctl", &["exec", &ctid, "ps -o pid,comm"]));
    let pids: Vec<&str> = ps.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(pids.first(), Some(&"1"), "init is pid 1: {ps}");
    assert!(pids.len() < 6, "only the VE's processes are visible: {ps}");
    assert!(ps.lines().any(|l| l.trim_start().starts_with("1 ") && l.contains("init")), "{ps}");

    assert_eq!(ok(tree.run("vzctl", &["exec", &ctid, "hostname"])).trim(), "ve.example");
    let mounts = ok(tree.run("vzctl", &["exec", &ctid, "cat /proc/self/mountinfo"]));
    let tree_path = tree.path().to_string_lossy().into_owned();
    assert!(!mounts.contains(&tree_path), "no host path in the VE's mount table: {mounts}");
    let links = ok(tree.run("vzctl", &["exec", &ctid, "ls /sys/class/net"]));
    assert_eq!(links.split_whitespace().collect::<Vec<_>>(), ["lo"]);

    ok(tree.run("vzctl", &["stop", &ctid]));
    assert_eq!(
        ok(tree.run("vzctl", &["status", &ctid])).trim(),
        format!("CTID {ctid} exist unmounted down")
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let cgroup_mounts: Vec<&str> = mounts
        .lines()
        .filter(|l| l.split_whitespace().nth(2).is_some_and(|t| t.starts_with("cgroup")))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(!cgroup_mounts.is_empty());
    for mount in cgroup_mounts {
        let dir = format!("{mount}/{}/{ctid}", tree.cgroup_parent());
        assert!(!std::path::Path::new(&dir).exists(), "{dir} removed at stop");
    }
    ok(tree.run("vzctl", &["destroy", &ctid]));
    assert_eq!(
        ok(tree.run("vzctl", &["status", &ctid])).trim(),
        format!("CTID {ctid} deleted unmounted down")
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&tree_path), "no mount left under the tree");
}

#[test]
fn root_in_a_ve_cannot_reach_the_host() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    let ctid = created(&tree);
    ok(tree.run("vzctl", &["start", &ctid]));
    let attempts = [
        ("mknod /tmp/sda b 8 0", "making device nodes"),
        // h only prints help, should the mask ever be missing.
        ("echo h > /proc/sysrq-trigger", "writing /proc/sysrq-trigger"),
        ("echo 1 > /proc/sys/kernel/panic", "writing /proc/sys/kernel"),
        ("insmod /lib/modules/none.ko || modprobe loop", "loading modules"),
        // Its own tmpfs it may mount (systemd does); what the host masked it may not undo.
        ("mkdir -p /mnt; mount -t sysfs none /mnt", "a sysfs beside the masked one"),
        ("umount /proc/kcore", "unmasking /proc/kcore"),
        ("mount -o remount,dev /", "device nodes on the root"),
        // /dev/console is the VE's own pty (tests/tests/console.rs); the host's (5:1) is
        // not reachable by any name.
        (
            "for c in /dev/console /dev/tty0 /dev/tty1; do \
             [ \"$(stat -L -c %t:%T $c 2>/dev/null)\" = 5:1 ] && echo escape > $c && exit 0; \
             done; exit 1",
            "writing to the host console",
        ),
    ];
    for (command, what) in attempts {
        let out = tree.run("vzctl", &["exec2", &ctid, command]);
        assert_ne!(out.status.code(), Some(0), "{what} must fail in a VE: {}", output_text(&out));
    }
    // What the VE's own namespaces own stays writable.
    ok(tree.run("vzctl", &["exec", &ctid, "hostname renamed"]));
    assert_eq!(ok(tree.run("vzctl", &["exec", &ctid, "hostname"])).trim(), "renamed");
    let fds = ok(tree.run("vzctl", &["exec", &ctid, "ls /proc/1/fd"]));
    assert_eq!(
        fds.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2"],
        "init holds no host fd"
    );
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
}

#[test]
fn exec_exit_codes_follow_openvz() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    let ctid = created(&tree);
    assert_eq!(
        tree.run("vzctl", &["exec", &ctid, "true"]).status.code(),
        Some(8),
        "exec on a stopped VE"
    );
    assert_eq!(
        tree.run("vzctl", &["exec2", &ctid, "true"]).status.code(),
        Some(31),
        "exec2 on a stopped VE"
    );
    ok(tree.run("vzctl", &["start", &ctid]));
    assert_eq!(tree.run("vzctl", &["exec", &ctid, "exit 3"]).status.code(), Some(8));
    assert_eq!(tree.run("vzctl", &["exec2", &ctid, "exit", "3"]).status.code(), Some(3));
    let mut child = tree
        .cmd("vzctl")
        .args(["exec", &ctid, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"echo from-stdin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "from-stdin");
    let entered = ok(tree.run("vzctl", &["enter", &ctid, "--exec", "echo on-a-pty; tty"]));
    assert!(entered.contains("on-a-pty"), "{entered}");
    assert!(entered.contains("/dev/pts/"), "enter gives a pty of the VE's devpts: {entered}");
    assert_eq!(
        tree.run("vzctl", &["destroy", &ctid]).status.code(),
        Some(32),
        "destroy of a running VE"
    );
    assert_eq!(
        tree.run("vzctl", &["start", &ctid]).status.code(),
        Some(32),
        "start of a running VE"
    );
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
    let again = ok(tree.run("vzctl", &["stop", &ctid]));
    assert!(again.contains("Unable to stop: container is not running"), "{again}");
}

#[test]
fn set_changes_a_running_ve_and_saves() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    let ctid = created(&tree);
    // A stopped VE gets its password through a brief, never-released init.
    ok(tree.run("vzctl", &["set", &ctid, "--userpasswd", "guest:first"]));
    assert_eq!(
        ok(tree.run("vzctl", &["status", &ctid])).trim(),
        format!("CTID {ctid} exist unmounted down")
    );
    ok(tree.run("vzctl", &["start", &ctid]));
    let guest = ok(tree.run("vzctl", &["exec", &ctid, "grep ^guest: /etc/shadow"]));
    assert!(guest.starts_with("guest:$"), "password of a new user set while stopped: {guest}");
    let out = ok(tree.run(
        "vzctl",
        &[
            "set",
            &ctid,
            "--hostname",
            "changed.example",
            "--nameserver",
            "192.0.2.53",
            "--searchdomain",
            "example",
            "--save",
        ],
    ));
    assert!(out.contains("CT configuration saved"), "{out}");
    assert_eq!(ok(tree.run("vzctl", &["exec", &ctid, "hostname"])).trim(), "changed.example");
    let resolv = ok(tree.run("vzctl", &["exec", &ctid, "cat /etc/resolv.conf"]));
    assert!(
        resolv.contains("nameserver 192.0.2.53") && resolv.contains("search example"),
        "{resolv}"
    );
    let conf = std::fs::read_to_string(tree.path().join(format!("conf/{ctid}.conf"))).unwrap();
    assert!(conf.contains("HOSTNAME=\"changed.example\""), "{conf}");
    let unsaved = ok(tree.run("vzctl", &["set", &ctid, "--hostname", "temp.example"]));
    assert!(unsaved.contains("Settings were not saved"), "{unsaved}");
    ok(tree.run("vzctl", &["set", &ctid, "--userpasswd", "root:secret"]));
    let shadow = ok(tree.run("vzctl", &["exec", &ctid, "grep ^root: /etc/shadow"]));
    assert!(
        !shadow.starts_with("root:!") && !shadow.starts_with("root::"),
        "password set: {shadow}"
    );
    ok(tree.run("vzctl", &["set", &ctid, "--name", "web", "--save"]));
    assert_eq!(
        ok(tree.run("vzctl", &["status", "web"])).split_whitespace().nth(1),
        Some(ctid.as_str())
    );
    ok(tree.run("vzctl", &["stop", "web", "--fast"]));
}

#[test]
fn restart_and_mount_cycle() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    let ctid = created(&tree);
    // runscript on a stopped VE: its namespaces without its init; output shown, files kept,
    // nothing left running or mounted.
    let script = tree.path().join("script.sh");
    std::fs::write(&script, "echo in-$(hostname) pid-$$; echo kept > /root/from-script\n").unwrap();
    let out = ok(tree.run("vzctl", &["runscript", &ctid, script.to_str().unwrap()]));
    assert!(out.contains("in-ve.example"), "{out}");
    assert_eq!(
        ok(tree.run("vzctl", &["status", &ctid])).trim(),
        format!("CTID {ctid} exist unmounted down")
    );
    ok(tree.run("vzctl", &["mount", &ctid]));
    assert!(ok(tree.run("vzctl", &["status", &ctid])).contains("exist mounted down"));
    let kept = std::fs::read_to_string(tree.path().join(format!("root/{ctid}/root/from-script")));
    assert_eq!(kept.unwrap().trim(), "kept");
    assert!(tree.path().join(format!("root/{ctid}/bin/busybox")).exists());
    ok(tree.run("vzctl", &["umount", &ctid]));
    assert_eq!(tree.run("vzctl", &["umount", &ctid]).status.code(), Some(40));
    ok(tree.run("vzctl", &["start", &ctid]));
    ok(tree.run("vzctl", &["restart", &ctid, "--fast"]));
    assert!(ok(tree.run("vzctl", &["status", &ctid])).contains("running"));
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
}

/// The host's cgroup2 mount: (its mount options, its super options without `favordynmods`,
/// whether it has `favordynmods`).
fn cgroup2_mount() -> (String, Vec<String>, bool) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let conventional = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"].contains(&left[4]);
        if right[0] == "cgroup2" && left[3] == "/" && conventional {
            let supers: Vec<String> = right[2].split(',').map(str::to_owned).collect();
            let favoring = supers.iter().any(|o| o == "favordynmods");
            let others = supers.into_iter().filter(|o| o != "favordynmods").collect();
            return (left[5].to_owned(), others, favoring);
        }
    }
    panic!("no cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified:\n{text}");
}

/// `vzctl start` turns on cgroup2's `favordynmods` (no RCU grace period per cgroup move after
/// an idle spell) and keeps the mount's other options: a cgroup2 remount resets the super
/// options it is not given (`nsdelegate` …), and a remount's flags replace the mount's own.
/// (Another test may have turned it on first; the options must be kept either way. The
/// kernel lab mounts cgroup2 with nsdelegate, nosuid, nodev and noexec for this.)
#[test]
fn a_start_favors_dynamic_cgroup_changes_and_keeps_the_mounts_options() {
    require!(Need::Root, Need::Program("/bin/busybox"));
    let (mount_before, supers_before, _) = cgroup2_mount();
    let tree = VzTree::new("");
    let ctid = created(&tree);
    ok(tree.run("vzctl", &["start", &ctid]));
    let (mount_after, supers_after, favoring) = cgroup2_mount();
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
    assert!(favoring, "cgroup2 without favordynmods after a start: {supers_after:?}");
    assert_eq!(supers_after, supers_before, "the cgroup2 super options changed");
    assert_eq!(mount_after, mount_before, "the cgroup2 mount's flags changed");
}

/// `vzctl create --local_uid/--local_gid` (OpenVZ's LOCAL_UID/LOCAL_GID): the VE's root is
/// that host id range; a range overlapping another VE's is refused with 21 and nothing of
/// the new VE is left.
#[test]
fn create_takes_the_host_id_range_it_is_given_and_refuses_an_overlap() {
    require!(Need::Root, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    // A range far above the pool the other tests' VEs draw from (and below 2^31).
    let base = 1_500_000_000_u32 - 65_536 * (ctid.parse::<u32>().unwrap_or(0) % 1000);
    let (uid, gid) = (base.to_string(), (base + 65_536 * 2).to_string());
    let args =
        ["create", &ctid, "--ostemplate", "busybox", "--local_uid", &uid, "--local_gid", &gid];
    ok(tree.run("vzctl", &args));
    let conf = tree.ve_conf(&ctid);
    assert!(conf.contains(&format!("LOCAL_UID=\"{uid}\"")), "{conf}");
    assert!(conf.contains(&format!("LOCAL_GID=\"{gid}\"")), "{conf}");
    ok(tree.run("vzctl", &["start", &ctid]));
    let map = ok(tree.run("vzctl", &["exec", &ctid, "cat /proc/1/uid_map /proc/1/gid_map"]));
    let rows: Vec<Vec<&str>> = map.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows, [vec!["0", uid.as_str(), "65536"], vec!["0", gid.as_str(), "65536"]]);
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));

    let other = unique_ctid().to_string();
    let inside = (base + 100).to_string();
    let out =
        tree.run("vzctl", &["create", &other, "--ostemplate", "busybox", "--local_uid", &inside]);
    assert_eq!(out.status.code(), Some(21), "{}", output_text(&out));
    assert!(!tree.path().join(format!("conf/{other}.conf")).exists(), "its config is left");
    assert!(!tree.path().join(format!("private/{other}")).exists(), "its private area is left");
}

/// `vzctl set --private/--root` points a stopped, unmounted VE at an area moved by hand
/// (OpenVZ: the admin moves it; refused with 32 while the VE runs, 41 while mounted, 21 for
/// a relative path).
#[test]
fn set_private_and_root_follow_an_area_moved_by_hand() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    let ctid = created(&tree);
    let moved = tree.path().join(format!("private/moved-{ctid}"));
    std::fs::rename(tree.path().join(format!("private/{ctid}")), &moved).expect("move the area");
    let new_root = tree.path().join(format!("root/moved-{ctid}"));
    let (private, root) = (moved.display().to_string(), new_root.display().to_string());
    ok(tree.run("vzctl", &["set", &ctid, "--private", &private, "--root", &root, "--save"]));
    assert_eq!(
        ok(tree.run("vzctl", &["status", &ctid])).trim(),
        format!("CTID {ctid} exist unmounted down")
    );
    ok(tree.run("vzctl", &["start", &ctid]));
    assert!(new_root.join("bin/busybox").exists(), "the VE runs from the new VE_ROOT");
    let out = tree.run("vzctl", &["set", &ctid, "--root", "/tmp/elsewhere", "--save"]);
    assert_eq!(out.status.code(), Some(32), "{}", output_text(&out));
    ok(tree.run("vzctl", &["stop", &ctid, "--skip-umount"]));
    let out = tree.run("vzctl", &["set", &ctid, "--root", "/tmp/elsewhere", "--save"]);
    assert_eq!(out.status.code(), Some(41), "{}", output_text(&out));
    ok(tree.run("vzctl", &["umount", &ctid]));
    let out = tree.run("vzctl", &["set", &ctid, "--private", "relative/path", "--save"]);
    assert_eq!(out.status.code(), Some(21), "{}", output_text(&out));
    ok(tree.run("vzctl", &["destroy", &ctid]));
    assert!(!moved.exists(), "destroy removed the moved area");
}

/// A VE whose tasks an init inside moves between cgroups of its own (systemd does as it
/// starts and shuts down) runs throughout: `vzctl status` says `running` and `vzctl exec`
/// finds the init at every try. A read of the VE's cgroups that raced a move saw no task:
/// on v2 a walk that read the cgroup a task went to before the one it left (the kernel lab:
/// `exec` failed "not running" within a second, and `stop` killed a Debian VE's systemd in
/// the middle of its clean shutdown), on v1 a `cgroup.procs` read of the `pids` cgroup while
/// the task moved in systemd's named hierarchy (seen once in ~50 runs here).
#[test]
fn a_ve_whose_init_moves_its_tasks_between_its_own_cgroups_stays_running() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    let ctid = created(&tree);
    ok(tree.run("vzctl", &["start", &ctid]));
    let mount = if vz_tests::is_cgroup_v2() {
        "mount -t cgroup2 none /tmp/cg"
    } else {
        "mount -t cgroup -o none,name=systemd none /tmp/cg"
    };
    // The init and the mover itself go back and forth between two cgroups, with nothing
    // left in the VE's own: only builtins, so no task is made in between. Each move takes
    // the kernel's cgroup locks that every fork in the machine needs: the mover ends when
    // told, or by itself after a bounded number of rounds (a test killed by its time limit
    // never stops its VE, and a mover left running slowed the kernel lab to a halt).
    let mover = "i=0; while [ $i -lt 100000 ] && [ ! -e /tmp/mover.stop ]; do \
                 echo 1 > a/cgroup.procs; echo $$ > a/cgroup.procs; \
                 echo 1 > b/cgroup.procs; echo $$ > b/cgroup.procs; i=$((i + 1)); done";
    let script = format!(
        "mkdir -p /tmp/cg && {mount} && cd /tmp/cg && mkdir a b && \
         (sh -c '{mover}' </dev/null >/dev/null 2>&1 &)"
    );
    ok(tree.run("vzctl", &["exec", &ctid, &script]));
    let running = format!("CTID {ctid} exist mounted running");
    for round in 0..150 {
        let status = ok(tree.run("vzctl", &["status", &ctid]));
        assert_eq!(status.trim(), running, "status, round {round}");
        if round % 15 == 0 {
            ok(tree.run("vzctl", &["exec", &ctid, "true"]));
        }
    }
    // The mover did move the init (the test could not fail without it).
    let cgroups = ok(tree.run("vzctl", &["exec", &ctid, "cat /proc/1/cgroup"]));
    assert!(cgroups.lines().any(|l| l.ends_with(":/a") || l.ends_with(":/b")), "{cgroups}");
    ok(tree.run("vzctl", &["exec", &ctid, "touch /tmp/mover.stop"]));
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
    assert_eq!(
        ok(tree.run("vzctl", &["status", &ctid])).trim(),
        format!("CTID {ctid} exist unmounted down")
    );
}
