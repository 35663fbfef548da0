//! Parallel vzctl commands: on one VE (the lock around the whole read-modify-write keeps
//! every `set --save`), on fifty VEs at once (nothing shared interferes: names, cgroups,
//! locks), and with other mounts of the cgroup hierarchies present.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]
#![allow(clippy::print_stderr, reason = "reports timings to the person running the tests")]

mod support;

use std::process::Command;

use support::{leftovers, status};
use vz_tests::{Need, VzTree, ok, output_text, require, unique_ctid};

/// The value `key` has when sh sources the VE's config.
fn sourced(tree: &VzTree, ctid: &str, key: &str) -> String {
    let conf = tree.path().join(format!("conf/{ctid}.conf"));
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(". \"$1\"; printf %s \"${key}\""))
        .arg("sh")
        .arg(&conf)
        .output()
        .expect("run sh");
    assert!(out.status.success(), "sh: {}", output_text(&out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn twenty_parallel_set_saves_keep_every_value() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"));
    // Each set waits for the lock while the others run; on a loaded machine twenty of them
    // in a row may take longer than the default 10 s.
    let tree = VzTree::new("LOCK_WAIT=120");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox"]));
    let changes: Vec<(&str, String, &str, String)> = vec![
        ("--hostname", "par.example".into(), "HOSTNAME", "par.example".into()),
        (
            "--description",
            "it's \"$(parallel)\"".into(),
            "DESCRIPTION",
            "it's \"$(parallel)\"".into(),
        ),
        ("--nameserver", "192.0.2.53".into(), "NAMESERVER", "192.0.2.53".into()),
        ("--searchdomain", "example.org".into(), "SEARCHDOMAIN", "example.org".into()),
        ("--onboot", "yes".into(), "ONBOOT", "yes".into()),
        ("--disabled", "no".into(), "DISABLED", "no".into()),
        ("--cpuunits", "1234".into(), "CPUUNITS", "1234".into()),
        ("--quotatime", "600".into(), "QUOTATIME", "600".into()),
        ("--numproc", "101:102".into(), "NUMPROC", "101:102".into()),
        ("--numtcpsock", "102:103".into(), "NUMTCPSOCK", "102:103".into()),
        ("--numothersock", "103:104".into(), "NUMOTHERSOCK", "103:104".into()),
        ("--numfile", "1004:1005".into(), "NUMFILE", "1004:1005".into()),
        ("--numflock", "105:115".into(), "NUMFLOCK", "105:115".into()),
        ("--numsiginfo", "107:108".into(), "NUMSIGINFO", "107:108".into()),
        ("--numiptent", "109:110".into(), "NUMIPTENT", "109:110".into()),
        ("--numpty", "17:18".into(), "NUMPTY", "17:18".into()),
        ("--kmemsize", "14372700:14790164".into(), "KMEMSIZE", "14372700:14790164".into()),
        ("--tcpsndbuf", "1720320:2703360".into(), "TCPSNDBUF", "1720320:2703360".into()),
        ("--tcprcvbuf", "1720321:2703361".into(), "TCPRCVBUF", "1720321:2703361".into()),
        ("--dgramrcvbuf", "262145:262146".into(), "DGRAMRCVBUF", "262145:262146".into()),
    ];
    assert_eq!(changes.len(), 20);
    let children: Vec<_> = changes
        .iter()
        .map(|(option, value, _, _)| {
            tree.cmd("vzctl")
                .args(["set", &ctid, option, value, "--save"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run vzctl")
        })
        .collect();
    for (child, (option, ..)) in children.into_iter().zip(&changes) {
        let out = child.wait_with_output().expect("wait for vzctl");
        assert!(out.status.success(), "set {option}: {}", output_text(&out));
    }
    for (option, _, key, expected) in &changes {
        assert_eq!(&sourced(&tree, &ctid, key), expected, "{option} kept");
    }
    assert!(support::stale_records(&tree, &ctid).is_empty());
    ok(tree.run("vzctl", &["destroy", &ctid]));
}

#[test]
fn fifty_ves_live_their_whole_life_in_parallel() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctids: Vec<String> = (0..50).map(|_| unique_ctid().to_string()).collect();
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for (i, ctid) in ctids.iter().enumerate() {
            let tree = &tree;
            scope.spawn(move || {
                let name = format!("par{i}");
                let ip = format!("192.0.2.{}", 100 + i);
                let host = format!("ve{i}.example");
                ok(tree.run(
                    "vzctl",
                    &[
                        "create",
                        ctid,
                        "--ostemplate",
                        "busybox",
                        "--name",
                        &name,
                        "--ipadd",
                        &ip,
                        "--hostname",
                        &host,
                    ],
                ));
                let start = tree.run("vzctl", &["start", &name]);
                assert!(start.status.success(), "{}{}", output_text(&start), log_of(tree, ctid));
                assert_eq!(status(tree, ctid), "exist mounted running", "{name}");
                assert_eq!(ok(tree.run("vzctl", &["exec", ctid, "hostname"])).trim(), host);
                ok(tree.run("vzctl", &["set", &name, "--description", &name, "--save"]));
                let since = std::time::SystemTime::now();
                ok(tree.run("vzctl", &["stop", ctid]));
                ok(tree.run("vzctl", &["destroy", &name]));
                assert_eq!(leftovers(tree, ctid, since), Vec::<String>::new(), "{name}");
            });
        }
    });
    eprintln!("50 VEs created, started, stopped and destroyed in {:?}", started.elapsed());
    assert_eq!(std::fs::read_dir(tree.path().join("names")).unwrap().count(), 0);
}

/// The lines of the tree's vzctl log that name `ctid` (what vzctl logged of a failure).
fn log_of(tree: &VzTree, ctid: &str) -> String {
    let log = std::fs::read_to_string(tree.path().join("vzctl.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(ctid)).collect();
    format!("\nvzctl.log of {ctid}:\n{}", lines.join("\n"))
}

/// A second mount of every v1 hierarchy (as CRIU's `.criu.cgyard` makes) and a bind of a
/// subtree of each, in a mount namespace of the test's own (the host's mount table stays
/// as it is for everyone else), around a whole VE life and parallel starts.
#[test]
fn other_mounts_of_the_cgroup_hierarchies_do_not_mislead_vzctl() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctids: Vec<String> = (0..5).map(|_| unique_ctid().to_string()).collect();
    let yard = tree.path().join(".criu.cgyard.test");
    let bin = vz_tests::bin_dir();
    let script = format!(
        r#"set -e
yard="{yard}"
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    mkdir -p "$yard/v2" "$yard/sub-v2" "/sys/fs/cgroup/{parent}-sub"
    mount -t cgroup2 cgroup2 "$yard/v2"
    mount --bind "/sys/fs/cgroup/{parent}-sub" "$yard/sub-v2"
else
    for h in /sys/fs/cgroup/*/; do
        opts=$(awk -v p="${{h%/}}" '$5 == p && $0 ~ / - cgroup / {{ print $NF }}' /proc/self/mountinfo | sed 's/^rw,//')
        [ -n "$opts" ] || continue
        n=$(basename "$h")
        mkdir -p "$yard/$n" "$yard/sub-$n"
        mount -t cgroup -o "$opts" cgroup "$yard/$n"
        mkdir -p "$h/{parent}-sub"
        mount --bind "$h/{parent}-sub" "$yard/sub-$n"
    done
fi
grep -c cgyard /proc/self/mountinfo
for c in {ctids}; do "{bin}/vzctl" create $c --ostemplate busybox >/dev/null; done
for c in {ctids}; do "{bin}/vzctl" start $c >/dev/null & done
wait
for c in {ctids}; do "{bin}/vzctl" status $c; "{bin}/vzctl" exec $c echo inside; done
for c in {ctids}; do echo "stopping $c $(date +%s.%N)"; "{bin}/vzctl" stop $c >/dev/null; "{bin}/vzctl" destroy $c >/dev/null; done
for h in /sys/fs/cgroup/*/; do rmdir "$h/{parent}-sub" 2>/dev/null || true; done
rmdir "/sys/fs/cgroup/{parent}-sub" 2>/dev/null || true
echo done
"#,
        yard = yard.display(),
        parent = tree.cgroup_parent(),
        ctids = ctids.join(" "),
        bin = bin.display(),
    );
    let out = tree
        .in_netns("unshare")
        .args(["-m", "--propagation", "slave", "sh", "-c", &script])
        .env("VZ_CONFIG", tree.vz_conf())
        .output()
        .expect("run unshare");
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    let mut lines = text.lines();
    let yards: usize = lines.next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    // v1: a second mount and a subtree bind of every hierarchy; pure v2: of the one tree.
    assert!(yards >= 2, "second mounts and binds were made: {text}");
    for ctid in &ctids {
        assert!(text.contains(&format!("CTID {ctid} exist mounted running")), "{ctid}: {text}");
    }
    assert_eq!(text.matches("inside").count(), ctids.len(), "{text}");
    assert!(text.trim_end().ends_with("done"), "{text}");
    for ctid in &ctids {
        let since = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("stopping {ctid} ")))
            .and_then(|t| t.trim().parse::<f64>().ok())
            .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(s))
            .expect("the script says when it stopped each VE");
        assert_eq!(leftovers(&tree, ctid, since), Vec::<String>::new(), "{ctid}");
    }
}

/// `ip netns exec` mounts a fresh sysfs over /sys: no cgroup is mounted there. vzctl mounts
/// what it needs in that namespace and sees the VE as it is.
#[test]
fn vzctl_under_a_fresh_sys_finds_the_hierarchies() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox"]));
    ok(tree.run("vzctl", &["start", &ctid]));
    let vzctl = vz_tests::bin_dir().join("vzctl");
    let script = format!(
        "umount -l /sys && mount -t sysfs sysfs /sys && ls /sys/fs/cgroup | wc -l && \
         \"{v}\" status {ctid} && \"{v}\" exec {ctid} echo inside",
        v = vzctl.display()
    );
    let out = tree
        .in_netns("unshare")
        .args(["-m", "--propagation", "slave", "sh", "-c", &script])
        .env("VZ_CONFIG", tree.vz_conf())
        .output()
        .expect("run unshare");
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.lines().next().map(str::trim), Some("0"), "nothing mounted at first: {text}");
    assert!(text.contains(&format!("CTID {ctid} exist mounted running")), "{text}");
    assert!(text.contains("inside"), "{text}");
    ok(tree.run("vzctl", &["stop", &ctid]));
    ok(tree.run("vzctl", &["destroy", &ctid]));
}

/// The names directory is shared: of several VEs claiming one name at once, exactly one gets
/// it, the others are told it is taken (131).
#[test]
fn one_name_claimed_by_many_ves_at_once_goes_to_one() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctids: Vec<String> = (0..8).map(|_| unique_ctid().to_string()).collect();
    for ctid in &ctids {
        ok(tree.run("vzctl", &["create", ctid, "--ostemplate", "busybox", "--layout", "simfs"]));
    }
    let children: Vec<_> = ctids
        .iter()
        .map(|ctid| {
            tree.cmd("vzctl")
                .args(["set", ctid, "--name", "contested", "--save"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run vzctl")
        })
        .collect();
    let codes: Vec<Option<i32>> =
        children.into_iter().map(|c| c.wait_with_output().expect("wait").status.code()).collect();
    assert_eq!(codes.iter().filter(|c| **c == Some(0)).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|c| matches!(c, Some(0 | 131))), "{codes:?}");
    let winner = status(&tree, "contested");
    assert_eq!(winner, "exist unmounted down");
    let named: Vec<&String> = ctids
        .iter()
        .filter(|c| {
            std::fs::read_to_string(tree.path().join(format!("conf/{c}.conf")))
                .unwrap()
                .contains("NAME=\"contested\"")
        })
        .collect();
    assert_eq!(named.len(), 1, "only the winner saved the name");
    for ctid in &ctids {
        ok(tree.run("vzctl", &["destroy", ctid]));
    }
}
