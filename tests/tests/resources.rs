//! Black-box tests of the resource parameters through the binaries: `vzctl set` with
//! beancounter and CPU options on a running VE (kernel values, enforcement inside the VE,
//! saved forms, bad values), `vzlist` beancounter fields, `vzubc`, `vzcfgvalidate` and
//! `vzcpucheck`, against a temporary vz tree on the real kernel.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

use std::path::PathBuf;

use vz_tests::{Need, VzTree, ok, output_text, require, unique_ctid};

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// `vzlist -H -o <field> <ctid>` as a number.
fn vzlist_num(tree: &VzTree, ctid: &str, field: &str) -> i64 {
    let out = ok(tree.run("vzlist", &["-H", "-o", field, ctid]));
    out.trim().parse().unwrap_or_else(|_| panic!("{field}: {out:?}"))
}

#[test]
fn numproc_stops_a_fork_loop_inside_the_ve_only() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();

    let out = ok(tree.run("vzctl", &["set", &ctid, "--numproc", "20:20", "--save"]));
    assert!(out.contains("CT configuration saved"), "{out}");
    assert_eq!(read(&tree.cgroup_file(&ctid, "pids", "pids.max", "pids.max")), "20");
    assert!(tree.ve_conf(&ctid).contains("NUMPROC=\"20\""), "{}", tree.ve_conf(&ctid));
    assert_eq!(vzlist_num(&tree, &ctid, "numproc.f"), 0);

    let forks = tree.run("vzctl", &["exec", &ctid, "for i in $(seq 40); do sleep 30 & done"]);
    assert!(
        output_text(&forks).contains("fork") || !forks.status.success(),
        "{}",
        output_text(&forks)
    );
    let current: u64 =
        read(&tree.cgroup_file(&ctid, "pids", "pids.current", "pids.current")).parse().unwrap();
    assert!(current <= 20, "pids.current {current}");
    assert!(vzlist_num(&tree, &ctid, "numproc.f") > 0, "failcnt counts the refused forks");
    assert_eq!(vzlist_num(&tree, &ctid, "numproc.l"), 20);
    // The host is not limited.
    let host: Vec<_> = (0..30).map(|_| std::process::Command::new("/bin/true").spawn()).collect();
    assert!(host.into_iter().all(|c| c.is_ok_and(|mut c| c.wait().is_ok_and(|s| s.success()))));

    // vzlist formats: %10s columns, one space between.
    let list = ok(tree.run("vzlist", &["-o", "ctid,numproc,numproc.l,physpages.b", &ctid]));
    let mut lines = list.lines();
    assert_eq!(lines.next(), Some("      CTID      NPROC    NPROC.L    PHYSP.B"));
    let row = lines.next().unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(row.len(), 43, "{row:?}");
    assert_eq!((cells[0], cells[2], cells[3]), (ctid.as_str(), "20", "0"), "{row}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(tree.run("vzlist", &["-j", "-o", "ctid,numproc", &ctid])))
            .unwrap();
    assert_eq!(json[0]["numproc"]["limit"], 20);
    assert!(json[0]["numproc"]["failcnt"].as_u64().unwrap() > 0, "{json}");

    // vzubc --proc: /proc/user_beancounters layout.
    let ubc = ok(tree.run("vzubc", &["--proc", &ctid]));
    let mut lines = ubc.lines();
    assert_eq!(lines.next(), Some("Version: 2.5"));
    let header = format!(
        "{:>10}  {:<12} {:>20} {:>20} {:>20} {:>20} {:>20}",
        "uid", "resource", "held", "maxheld", "barrier", "limit", "failcnt"
    );
    assert_eq!(lines.next(), Some(header.as_str()));
    let first = lines.next().unwrap();
    assert!(first.starts_with(&format!("{ctid:>10}: kmemsize ")), "{first:?}");
    let numproc = ubc.lines().find(|l| l.contains(" numproc ")).unwrap();
    let cols: Vec<&str> = numproc.split_whitespace().collect();
    assert_eq!(cols[cols.len() - 3..cols.len() - 1], ["20", "20"], "{numproc}");
    assert_eq!(ubc.lines().count(), 2 + 24, "{ubc}");
}

#[test]
fn ram_contains_a_memory_hog_inside_the_ve() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("memory"));
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();
    let out = ok(tree.run("vzctl", &["set", &ctid, "--ram", "64M", "--swap", "0"]));
    assert!(out.contains("WARNING: Settings were not saved to config (use --save flag)"), "{out}");
    let limit = read(&tree.cgroup_file(&ctid, "memory", "memory.limit_in_bytes", "memory.max"));
    assert_eq!(limit, (64u64 << 20).to_string());
    assert!(!tree.ve_conf(&ctid).contains("PHYSPAGES=\"0:16384\""), "not saved");

    let hog = tree.run("vzctl", &["exec", &ctid, "dd if=/dev/zero of=/dev/null bs=200M count=1"]);
    assert!(
        !hog.status.success(),
        "a 200 MiB buffer must not fit in 64 MiB: {}",
        output_text(&hog)
    );
    assert!(vzlist_num(&tree, &ctid, "physpages.f") > 0, "failcnt counts the OOM kill");
    // The VE still runs and the host can allocate the same.
    ok(tree.run("vzctl", &["exec", &ctid, "true"]));
    let host = std::process::Command::new("dd")
        .args(["if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"])
        .output()
        .unwrap();
    assert!(host.status.success(), "{}", output_text(&host));
}

#[test]
fn cpu_settings_reach_the_kernel_at_once() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("cpu"));
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();
    ok(tree.run("vzctl", &["set", &ctid, "--cpuunits", "500", "--cpulimit", "50", "--save"]));
    if vz_tests::is_cgroup_v2() {
        // OpenVZ 7's conversion: weight = units / 10.
        assert_eq!(read(&tree.cgroup_file(&ctid, "cpu", "", "cpu.weight")), "50");
        assert_eq!(read(&tree.cgroup_file(&ctid, "cpu", "", "cpu.max")), "50000 100000");
    } else {
        // vzctl 4.x's upstream backend: shares = units.
        assert_eq!(read(&tree.cgroup_file(&ctid, "cpu", "cpu.shares", "")), "500");
        assert_eq!(read(&tree.cgroup_file(&ctid, "cpu", "cpu.cfs_quota_us", "")), "50000");
        assert_eq!(read(&tree.cgroup_file(&ctid, "cpu", "cpu.cfs_period_us", "")), "100000");
    }
    let saved = tree.ve_conf(&ctid);
    assert!(saved.contains("CPUUNITS=\"500\"") && saved.contains("CPULIMIT=\"50\""), "{saved}");
    let list = ok(tree.run("vzlist", &["-H", "-o", "cpuunits,cpulimit", &ctid]));
    assert_eq!(list.split_whitespace().collect::<Vec<_>>(), ["500", "50"]);
    let bad = tree.run("vzctl", &["set", &ctid, "--cpuunits", "5"]);
    assert_eq!(bad.status.code(), Some(21), "{}", output_text(&bad));
}

/// `--cpuweight` is OpenVZ's raw fairsched weight (`MAXCPUUNITS / CPUUNITS`, lower gets more):
/// 250 stands for 2000 units at once; `--cpuunits` in the same command wins; 0 is refused.
#[test]
fn cpuweight_is_openvzs_raw_weight_and_cpuunits_wins() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("cpu"));
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();
    let units = || {
        if vz_tests::is_cgroup_v2() {
            read(&tree.cgroup_file(&ctid, "cpu", "", "cpu.weight")).parse::<u64>().unwrap() * 10
        } else {
            read(&tree.cgroup_file(&ctid, "cpu", "cpu.shares", "")).parse::<u64>().unwrap()
        }
    };
    ok(tree.run("vzctl", &["set", &ctid, "--cpuweight", "250", "--save"]));
    assert_eq!(units(), 2000);
    assert!(tree.ve_conf(&ctid).contains("CPUUWEIGHT=\"250\""), "{}", tree.ve_conf(&ctid));
    ok(tree.run("vzctl", &["set", &ctid, "--cpuunits", "700", "--cpuweight", "50"]));
    assert_eq!(units(), 700);
    let bad = tree.run("vzctl", &["set", &ctid, "--cpuweight", "0"]);
    assert_eq!(bad.status.code(), Some(21), "{}", output_text(&bad));
}

#[test]
fn bad_values_exit_21_and_save_nothing() {
    require!(Need::Root, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox"]));
    let before = tree.ve_conf(&ctid);
    for (opt, val) in [("--numproc", "10M"), ("--kmemsize", "1:2:3"), ("--cpulimit", "x")] {
        let out = tree.run("vzctl", &["set", &ctid, opt, val, "--hostname", "h", "--save"]);
        assert_eq!(out.status.code(), Some(21), "{}", output_text(&out));
        assert!(
            output_text(&out).contains(&format!("Bad parameter for {opt}: {val}")),
            "{}",
            output_text(&out)
        );
        assert_eq!(tree.ve_conf(&ctid), before, "nothing saved");
    }
    let force = tree.run("vzctl", &["set", &ctid, "--force", "--numproc", "100"]);
    assert_eq!(force.status.code(), Some(20), "--force without --save: {}", output_text(&force));
    ok(tree.run("vzctl", &["set", &ctid, "--force", "--numproc", "100", "--save"]));
    assert!(tree.ve_conf(&ctid).contains("NUMPROC=\"100\""), "{}", tree.ve_conf(&ctid));
    // A stopped VE: --save writes the saved forms; without --save it needs a running VE.
    ok(tree.run("vzctl", &["set", &ctid, "--privvmpages", "5M:6M", "--save"]));
    let page = 4096;
    assert!(
        tree.ve_conf(&ctid).contains(&format!(
            "PRIVVMPAGES=\"{}:{}\"",
            (5 << 20) / page,
            (6 << 20) / page
        )),
        "{}",
        tree.ve_conf(&ctid)
    );
    let out = tree.run("vzctl", &["set", &ctid, "--numproc", "30"]);
    assert_eq!(out.status.code(), Some(31), "{}", output_text(&out));
    // A stopped VE shows configured bounds and '-' for usage.
    let list = ok(tree.run("vzlist", &["-a", "-H", "-o", "numproc,numproc.l,numproc.f", &ctid]));
    assert_eq!(list.split_whitespace().collect::<Vec<_>>()[0], "-");
    assert_eq!(list.split_whitespace().collect::<Vec<_>>()[2], "-");
}

#[test]
fn vzcfgvalidate_passes_the_shipped_samples_and_fails_broken_configs() {
    require!(Need::Root);
    let tree = VzTree::new("");
    for sample in ["ve-basic.conf-sample", "ve-light.conf-sample"] {
        let path = tree.path().join("conf").join(sample);
        let out = tree.run("vzcfgvalidate", &[path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{sample}: {}", output_text(&out));
        assert!(
            output_text(&out).contains("Validation completed: success"),
            "{}",
            output_text(&out)
        );
    }
    let broken = tree.path().join("broken.conf");
    let basic = std::fs::read_to_string(tree.path().join("conf/ve-basic.conf-sample")).unwrap();
    std::fs::write(&broken, basic.replace("NUMPROC=\"240:240\"", "NUMPROC=\"240:300\"")).unwrap();
    let out = tree.run("vzcfgvalidate", &[broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(output_text(&out).contains("for numproc"), "{}", output_text(&out));
    let out = tree.run("vzcfgvalidate", &["-r", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = tree.run("vzcfgvalidate", &[broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "repaired in the file: {}", output_text(&out));
    let missing = tree.run("vzcfgvalidate", &["/nonexistent/x.conf"]);
    assert_eq!(missing.status.code(), Some(1), "{}", output_text(&missing));
}

#[test]
fn vzcpucheck_reports_the_node_and_the_host_share() {
    require!(Need::Root);
    let tree = VzTree::new("VE0CPUUNITS=1500");
    let out = ok(tree.run("vzcpucheck", &["-v"]));
    assert!(out.contains("0\t\t1500"), "{out}");
    assert!(out.contains("Current CPU utilization: 1500"), "{out}");
    let power: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("Power of the node: "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(power > 0);
    assert_eq!(tree.run("vzcpucheck", &["-x"]).status.code(), Some(2));
}

#[test]
fn numpty_shmpages_and_per_process_limits_hold_inside_the_ve() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid]));
    let limits = ["--numpty", "2:2", "--numfile", "200:200", "--shmpages", "1000:1000", "--save"];
    ok(tree.run("vzctl", &[["set", ctid.as_str()].as_slice(), &limits].concat()));
    ok(tree.run("vzctl", &["start", &ctid]));
    for pid in ["1", "self"] {
        let limits = ok(tree.run("vzctl", &["exec", &ctid, &format!("cat /proc/{pid}/limits")]));
        let files = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
        assert_eq!(
            files.split_whitespace().skip(3).take(2).collect::<Vec<_>>(),
            ["200", "200"],
            "{pid}: {files}"
        );
    }
    // shmpages: the VE's own IPC namespace caps all shared memory at 1000 pages.
    let shm =
        ok(tree
            .run("vzctl", &["exec", &ctid, "cat /proc/sys/kernel/shmall /proc/sys/kernel/shmmax"]));
    let page = 4096 * 1000;
    assert_eq!(shm.split_whitespace().collect::<Vec<_>>(), ["1000", &page.to_string()], "{shm}");
    let host = std::fs::read_to_string("/proc/sys/kernel/shmall").unwrap();
    assert_ne!(host.trim(), "1000", "the host's IPC namespace is untouched");
    let two = tree.run("vzctl", &["exec2", &ctid, "exec 3<>/dev/ptmx 4<>/dev/ptmx"]);
    assert_eq!(two.status.code(), Some(0), "numpty 2 allows two ptys: {}", output_text(&two));
    let three = tree.run("vzctl", &["exec2", &ctid, "exec 3<>/dev/ptmx 4<>/dev/ptmx 5<>/dev/ptmx"]);
    assert_ne!(three.status.code(), Some(0), "the third pty is refused");
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
}

#[test]
fn reset_ub_short_options_and_the_vswap_check() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();
    let pids_max = tree.cgroup_file(&ctid, "pids", "pids.max", "pids.max");

    if vz_tests::is_cgroup_v2() {
        // The parent passes memory protection on, so a VE's memory.low/min take effect.
        let parent = PathBuf::from(format!("/sys/fs/cgroup/{}", tree.cgroup_parent()));
        assert_eq!(read(&parent.join("memory.low")), "max");
        assert_eq!(read(&parent.join("memory.min")), "max");
    }
    // A running VE shows the bounds its start applied: the VSwap sample's derived lockedpages
    // (= ram, 256M) though CTID.conf has no LOCKEDPAGES.
    assert_eq!(vzlist_num(&tree, &ctid, "lockedpages.l"), (256 << 20) / 4096);
    // `-p` is `--numproc`, `-n` `--numfile` (OpenVZ's short options).
    ok(tree.run("vzctl", &["set", &ctid, "-p", "25", "-n200", "--save"]));
    assert_eq!(read(&pids_max), "25");
    assert!(tree.ve_conf(&ctid).contains("NUMPROC=\"25\""), "{}", tree.ve_conf(&ctid));
    assert!(tree.ve_conf(&ctid).contains("NUMFILE=\"200\""), "{}", tree.ve_conf(&ctid));

    // The kernel value drifts (someone wrote the cgroup by hand); --reset_ub restores CTID.conf's.
    std::fs::write(&pids_max, "max").expect("write pids.max");
    let out = ok(tree.run("vzctl", &["set", &ctid, "--reset_ub"]));
    assert!(out.contains("UB limits were set successfully"), "{out}");
    assert_eq!(read(&pids_max), "25");
    let out = tree.run("vzctl", &["set", &ctid, "--reset_ub", "--save"]);
    assert_eq!(out.status.code(), Some(20), "{}", output_text(&out));

    // A VSwap config (finite PHYSPAGES limit) without SWAPPAGES: set and start refuse, exit 28.
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
    let out = tree.run("vzctl", &["set", &ctid, "--reset_ub"]);
    assert_eq!(out.status.code(), Some(31), "{}", output_text(&out));
    let path = tree.path().join(format!("conf/{ctid}.conf"));
    let without_swap: String = tree
        .ve_conf(&ctid)
        .lines()
        .filter(|l| !l.starts_with("SWAPPAGES="))
        .map(|l| l.to_owned() + "\n")
        .collect();
    std::fs::write(&path, &without_swap).expect("write the CT config");
    let out = tree.run("vzctl", &["set", &ctid, "--physpages", "0:128M", "--save"]);
    assert_eq!(out.status.code(), Some(28), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("required UB parameter (swap) not set"),
        "{}",
        output_text(&out)
    );
    assert_eq!(tree.ve_conf(&ctid), without_swap, "nothing saved");
    let out = tree.run("vzctl", &["start", &ctid]);
    assert_eq!(out.status.code(), Some(28), "{}", output_text(&out));
    ok(tree.run("vzctl", &["set", &ctid, "--swap", "64M", "--save"]));
    ok(tree.run("vzctl", &["start", &ctid]));
}

#[test]
fn numtcpsock_refuses_a_socket_past_the_limit_inside_the_ve() {
    require!(Need::Root, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();
    ok(tree.run("vzctl", &["set", &ctid, "--numtcpsock", "3"]));
    // Three listeners hold the three TCP sockets; the fourth socket() is refused with EPERM.
    let script = "for p in 1 2 3; do nc -l -p 1000$p >/dev/null 2>&1 & done; \
                  for i in $(seq 100); do \
                  [ $(netstat -ltn | grep -c ':1000[123] ') -ge 3 ] && break; sleep 0.1; done; \
                  timeout 2 nc -l -p 10004 2>&1; echo rc=$?";
    let out = ok(tree.run("vzctl", &["exec", &ctid, script]));
    assert!(out.contains("Operation not permitted") && !out.contains("rc=0"), "{out}");
    assert!(vzlist_num(&tree, &ctid, "numtcpsock.f") >= 1, "the refusal is counted");
    assert_eq!(vzlist_num(&tree, &ctid, "numtcpsock.l"), 3, "the limit in force, though unsaved");
    // Raised at runtime, the same socket is allowed (timeout ends the idle listener: 143).
    ok(tree.run("vzctl", &["set", &ctid, "--numtcpsock", "10"]));
    let out = ok(tree.run("vzctl", &["exec", &ctid, "timeout 1 nc -l -p 10004 2>&1; echo rc=$?"]));
    assert!(!out.contains("Operation not permitted"), "{out}");
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
}
