//! Black-box tests of `vzctl chkpnt` / `restore` / `start` from a dump on the real kernel
//! and CRIU: a VE whose boot started a counter and a TCP server keeps both across a
//! checkpoint, a client in the test tree's network namespace stays connected, `status` says
//! `suspended`, `start` restores a dump and removes it, `destroy` removes a dump.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]
#![allow(clippy::print_stderr, reason = "the test reports vzctl's times")]

use std::process::Command;
use std::time::{Duration, Instant};

use vz_tests::{
    LineClient, Need, VzTree, assert_no_gap, last_count, ok, require, start_working_ve,
    unique_ctid, wait_count,
};

const VE_IP: &str = "198.51.100.77";

/// A tree whose VEs share the host's user namespace (LOCAL_UID=0), the other kind.
const PRIVILEGED_VES: &str = "LOCAL_UID=0\nLOCAL_GID=0\n";

/// `vzctl restore`; a failure shows vzctl's output and the errors of CRIU's log.
fn restore(tree: &VzTree, ctid: &str) {
    let out = tree.run("vzctl", &["restore", ctid]);
    if !out.status.success() {
        let log = tree.path().join(format!("dump/Dump.{ctid}/restore.log"));
        let log = std::fs::read_to_string(log).unwrap_or_default();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("Error")).collect();
        panic!("{}\n{}", vz_tests::output_text(&out), errors.join("\n"));
    }
}

/// A loop device attached to a small file of the tree, detached by name on drop.
struct LoopHold(String);

impl LoopHold {
    fn take(tree: &VzTree) -> LoopHold {
        let file = tree.path().join("hold.img");
        std::fs::write(&file, vec![0u8; 1 << 20]).expect("write hold.img");
        let out = ok(Command::new("losetup")
            .arg("-f")
            .arg("--show")
            .arg(&file)
            .output()
            .expect("run losetup"));
        LoopHold(out.trim().to_owned())
    }
}

impl Drop for LoopHold {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// The VE's host side in the tree's network namespace: its host end's flags and sysctls, the
/// routes through it, the proxy entries and the nftables guard.
fn host_side(tree: &VzTree, ctid: &str) -> String {
    let dev = format!("venet{ctid}");
    let run = |args: &[&str]| {
        let out = tree.in_netns(args[0]).args(&args[1..]).output().expect("run in the netns");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let link = run(&["ip", "-o", "link", "show", "dev", &dev]);
    let flags = link.split_once('<').and_then(|(_, r)| r.split_once('>')).map(|(f, _)| f);
    // The bridged interface's host end: flags, bridge, MAC (the index and peer vary).
    let veth = run(&["ip", "-o", "link", "show", "dev", &format!("veth{ctid}.0")]);
    // Without the index, the peer's netns and the operational state (the VE's eth0 is down).
    let mut veth_words = Vec::new();
    let mut words = veth.split_whitespace().skip(2);
    while let Some(word) = words.next() {
        match word {
            "state" => drop(words.next()),
            w if w.starts_with("link-netns") => {}
            w => veth_words.push(w),
        }
    }
    let veth = veth_words.join(" ");
    [
        flags.unwrap_or("no link").to_owned(),
        veth,
        run(&["ip", "route", "show", "dev", &dev]),
        run(&["ip", "neigh", "show", "proxy"]),
        run(&["cat", &format!("/proc/sys/net/ipv4/conf/{dev}/rp_filter")]),
        run(&["cat", &format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6")]),
        run(&["nft", "list", "ruleset"]),
    ]
    .join("\n")
}

/// The VE's limits as the kernel holds them: processes, memory, CPU, and on cgroup v1 the
/// devices allowlist (on v2 a BPF program, not readable as text) without the quota node's
/// entry, and the I/O limits, without the image's loop device, whose number changes (the
/// test makes a restore use another).
fn limits(tree: &VzTree, ctid: &str) -> Vec<String> {
    let files: [(&str, &str, &str); 5] = [
        ("pids", "pids.max", "pids.max"),
        ("memory", "memory.limit_in_bytes", "memory.max"),
        ("cpu", "cpu.cfs_quota_us", "cpu.max"),
        ("devices", "devices.list", ""),
        ("blkio", "blkio.throttle.write_bps_device", "io.max"),
    ];
    let v2 = vz_tests::is_cgroup_v2();
    files
        .iter()
        .filter(|(_, _, f2)| !v2 || !f2.is_empty())
        .map(|(controller, f1, f2)| {
            let path = tree.cgroup_file(ctid, controller, f1, f2);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| format!("{}: {e}", path.display()));
            // The loop device's number changes (see above): its entries are compared without it.
            let lines: Vec<&str> =
                text.lines()
                    .filter(|l| !l.starts_with("b 7:"))
                    .map(|l| {
                        if l.starts_with("7:") {
                            l.split_once(' ').map_or(l, |(_, r)| r)
                        } else {
                            l
                        }
                    })
                    .collect();
            format!("{f1}|{f2}: {}", lines.join(" "))
        })
        .collect()
}

fn status(tree: &VzTree, ctid: &str) -> String {
    ok(tree.run("vzctl", &["status", ctid])).trim().to_owned()
}

/// A busybox VE whose boot starts the counter and the TCP server, started.
fn working_ve(tree: &VzTree) -> String {
    let ctid = unique_ctid().to_string();
    start_working_ve(tree, &ctid, VE_IP, &[]);
    ctid
}

/// A client of the working VE's line server, from the tree's network namespace.
fn client_of(tree: &VzTree) -> LineClient {
    LineClient::connect(|| {
        let mut nc = tree.in_netns("/bin/busybox");
        nc.args(["nc", VE_IP, "7000"]);
        nc
    })
}

fn needs() -> [Need; 4] {
    [
        Need::Root,
        Need::Program("/bin/busybox"),
        Need::Program(vz_cpt_criu()),
        // The v1 freezer, or on cgroup v2 `cgroup.freeze` (in every cgroup).
        if vz_tests::is_cgroup_v2() {
            Need::CgroupController("pids")
        } else {
            Need::CgroupController("freezer")
        },
    ]
}

/// The default kind: a VE of its own user namespace (restored on an idmapped view of its
/// root, images given to its root, /dev external).
#[test]
fn chkpnt_and_restore_keep_the_work_and_the_tcp_client() {
    keep_the_work_and_the_tcp_client("");
}

#[test]
fn a_privileged_ve_keeps_the_work_and_the_tcp_client_too() {
    keep_the_work_and_the_tcp_client(PRIVILEGED_VES);
}

fn keep_the_work_and_the_tcp_client(vz_conf: &str) {
    let [a, b, c, d] = needs();
    require!(a, b, c, d, Need::Loop);
    let tree = VzTree::new(vz_conf);
    // Host devices at the low indexes (as an ordinary host's eth0 is at 2): CRIU makes a
    // user-namespace VE's interfaces from the host's namespace, where an index a host device
    // has would turn the creation into a change of that device (EOPNOTSUPP).
    for i in 0..6 {
        let name = format!("vzh{i}");
        ok(tree
            .in_netns("ip")
            .args(["link", "add", &name, "type", "bridge"])
            .output()
            .expect("ip"));
    }
    let ctid = working_ve(&tree);
    let mut client = client_of(&tree);
    client.try_ping().expect("the client reaches the VE before the checkpoint");
    // A bridged interface beside the venet: its host end is on a bridge of the tree's netns.
    let bridge = format!("vzbr{ctid}");
    ok(tree.in_netns("ip").args(["link", "add", &bridge, "type", "bridge"]).output().expect("ip"));
    ok(tree.run("vzctl", &["set", &ctid, "--netif_add", &format!("eth0,,,,{bridge}"), "--save"]));
    let host_side_before = host_side(&tree, &ctid);
    assert!(host_side_before.contains(&format!("master {bridge}")), "{host_side_before}");
    let limit_args = ["--numproc", "77", "--physpages", "0:96M", "--cpulimit", "70", "--save"];
    ok(tree.run("vzctl", &["set", &ctid, "--devnodes", "net/tun:rw", "--iolimit", "3M", "--save"]));
    ok(tree.run("vzctl", &[&["set", ctid.as_str()][..], &limit_args].concat()));
    let limits_before = limits(&tree, &ctid);
    assert!(limits_before.iter().any(|l| l.ends_with(": 77")), "{limits_before:?}");

    // Full checkpoint: the VE is gone, unmounted, and `suspended`.
    let t = Instant::now();
    ok(tree.run("vzctl", &["chkpnt", &ctid]));
    let chkpnt_ms = t.elapsed().as_millis();
    assert_eq!(status(&tree, &ctid), format!("CTID {ctid} exist unmounted down suspended"));
    let out = tree.run("vzctl", &["chkpnt", &ctid]);
    assert_eq!(out.status.code(), Some(31), "chkpnt of a stopped VE");
    // CRIU took the kernel's features from its cache (vz-cpt's kdat.rs where /run is not a
    // tmpfs), not from a probe in the frozen time.
    let log = tree.path().join(format!("dump/Dump.{ctid}/dump.log"));
    let log = std::fs::read_to_string(&log).expect("the dump's log");
    assert!(log.contains("Loaded kdat cache from /run/criu.kdat"), "CRIU probed: {log:.600}");

    // Its loop device is taken meanwhile: the root comes back on another one, while the
    // dump's /dev holds the old one's node.
    let _taken = LoopHold::take(&tree);
    let t = Instant::now();
    restore(&tree, &ctid);
    eprintln!("TIMING vzctl chkpnt {chkpnt_ms} ms, vzctl restore {} ms", t.elapsed().as_millis());
    assert_eq!(status(&tree, &ctid), format!("CTID {ctid} exist mounted running"));
    let at = last_count(&tree, &ctid);
    wait_count(&tree, &ctid, at + 5);
    assert_no_gap(&tree, &ctid);
    client.try_ping().expect("the TCP client stayed connected");
    assert_eq!(host_side(&tree, &ctid), host_side_before, "the host side after restore");
    assert_eq!(limits(&tree, &ctid), limits_before, "the limits after restore");
    ok(tree.run("vzctl", &["exec", &ctid, "test -c /dev/net/tun"]));
    assert_eq!(ok(tree.run("vzctl", &["exec", &ctid, "echo in"])).trim(), "in");
    let out = tree.run("vzctl", &["restore", &ctid]);
    assert_eq!(out.status.code(), Some(32), "restore of a running VE");

    // `start` restores a default dump and removes it.
    ok(tree.run("vzctl", &["chkpnt", &ctid]));
    let out = ok(tree.run("vzctl", &["start", &ctid]));
    assert!(out.contains("trying to restore"), "{out}");
    assert!(!tree.path().join(format!("dump/Dump.{ctid}")).exists(), "start kept the dump");
    client.try_ping().expect("the TCP client stayed connected across start");
    assert_eq!(limits(&tree, &ctid), limits_before, "the limits after start from the dump");
    let at = last_count(&tree, &ctid);
    wait_count(&tree, &ctid, at + 3);
    assert_no_gap(&tree, &ctid);

    let snapshot = tree.path().join("dump/snapshot").to_string_lossy().into_owned();
    // Stages: suspend, resume.
    ok(tree.run("vzctl", &["chkpnt", &ctid, "--suspend"]));
    let frozen = last_count(&tree, &ctid);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(last_count(&tree, &ctid), frozen, "suspended VE counted");
    ok(tree.run("vzctl", &["chkpnt", &ctid, "--resume"]));
    wait_count(&tree, &ctid, frozen + 3);
    let out = tree.run("vzctl", &["chkpnt", &ctid, "--suspend", "--kill"]);
    assert_eq!(out.status.code(), Some(20), "two stages at once");

    // A suspended VE dumped (--dump) and resumed: it runs on, its network too.
    ok(tree.run("vzctl", &["chkpnt", &ctid, "--suspend"]));
    ok(tree.run("vzctl", &["chkpnt", &ctid, "--dump", "--dumpfile", &snapshot]));
    let link = ok(tree
        .in_netns("ip")
        .args(["-o", "link", "show", &format!("venet{ctid}")])
        .output()
        .expect("run ip link show"));
    assert!(!link.contains(",UP"), "a dumped suspended VE's host end is down: {link}");
    ok(tree.run("vzctl", &["chkpnt", &ctid, "--resume"]));
    client.try_ping().expect("the TCP client stayed connected across --dump and --resume");
    assert_eq!(host_side(&tree, &ctid), host_side_before, "the host side after --resume");
    assert!(std::path::Path::new(&snapshot).join("inventory.img").is_file());
    std::fs::remove_dir_all(&snapshot).expect("remove the snapshot");

    // The stages --dump (the VE stays suspended) and --kill, then restore.
    ok(tree.run("vzctl", &["chkpnt", &ctid, "--suspend"]));
    ok(tree.run("vzctl", &["chkpnt", &ctid, "--dump"]));
    assert_eq!(status(&tree, &ctid), format!("CTID {ctid} exist mounted running"));
    ok(tree.run("vzctl", &["chkpnt", &ctid, "--kill"]));
    assert_eq!(status(&tree, &ctid), format!("CTID {ctid} exist unmounted down suspended"));
    restore(&tree, &ctid);
    client.try_ping().expect("the TCP client stayed connected across the stages");
    let at = last_count(&tree, &ctid);
    wait_count(&tree, &ctid, at + 3);
    assert_no_gap(&tree, &ctid);

    // A restored VE stops cleanly (its restored init takes the halt) and leaves nothing.
    ok(tree.run("vzctl", &["stop", &ctid]));
    assert_eq!(status(&tree, &ctid), format!("CTID {ctid} exist unmounted down"));
    assert!(host_side(&tree, &ctid).starts_with("no link"), "the host end outlived the VE");
    ok(tree.run("vzctl", &["start", &ctid, "--wait"]));

    // A dump then destroy: the dump goes with the VE.
    ok(tree.run("vzctl", &["chkpnt", &ctid]));
    ok(tree.run("vzctl", &["destroy", &ctid]));
    assert!(!tree.path().join(format!("dump/Dump.{ctid}")).exists(), "destroy kept the dump");
}

/// The VE's iptables and ip6tables filter tables, listed in its network namespace.
fn ve_filter_rules(tree: &VzTree, ctid: &str) -> String {
    let pid = tree.init_pid(ctid);
    ["iptables", "ip6tables"]
        .iter()
        .map(|tool| {
            ok(Command::new("nsenter")
                .arg(format!("--net=/proc/{pid}/ns/net"))
                .args(["--", tool, "-w", "-S"])
                .output()
                .expect("run nsenter iptables"))
        })
        .collect()
}

/// `--dump`'s network lock does not outlive a failed dump (the VE runs on, reachable), and
/// `--resume` lifts it however many `--dump`s came before.
#[test]
fn a_failed_or_repeated_dump_leaves_no_network_lock_after_resume() {
    let [a, b, c, d] = needs();
    require!(a, b, c, d);
    let tree = VzTree::new("");
    let ctid = working_ve(&tree);
    let mut client = client_of(&tree);
    // A page server nobody listens on (a port of the loopback of the tree's netns): the
    // dump fails after the lock was started.
    let out = tree.run("vzctl", &["chkpnt", &ctid, "--dump", "--page-server", "127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(16), "{}", vz_tests::output_text(&out));
    let rules = ve_filter_rules(&tree, &ctid);
    assert!(!rules.contains("CRIU"), "a failed dump left its lock: {rules}");
    client.try_ping().expect("the VE is reachable after a failed dump");

    // Two dumps of the running VE (each leaves it locked for a --resume or --kill), then
    // one --resume: no lock is left.
    let snapshot = tree.path().join("dump/twice").to_string_lossy().into_owned();
    for _ in 0..2 {
        let _ = std::fs::remove_dir_all(&snapshot);
        ok(tree.run("vzctl", &["chkpnt", &ctid, "--dump", "--dumpfile", &snapshot]));
    }
    assert!(ve_filter_rules(&tree, &ctid).contains("-A INPUT -j CRIU"), "no lock while dumped");
    ok(tree.run("vzctl", &["chkpnt", &ctid, "--resume"]));
    let rules = ve_filter_rules(&tree, &ctid);
    assert!(!rules.contains("CRIU"), "--resume left a lock: {rules}");
    client.try_ping().expect("the client stayed connected across two dumps and --resume");
    let at = last_count(&tree, &ctid);
    wait_count(&tree, &ctid, at + 2);
}

#[test]
fn chkpnt_refuses_what_it_would_lose_and_the_ve_runs_on() {
    let [a, b, c, d] = needs();
    require!(a, b, c, d);
    let tree = VzTree::new("");
    let ctid = working_ve(&tree);
    let refused = |what: &str, expect: &str| {
        let out = tree.run("vzctl", &["chkpnt", &ctid]);
        let text = vz_tests::output_text(&out);
        assert_eq!(out.status.code(), Some(16), "{what}: {text}");
        assert!(text.contains(expect), "{what}: {text}");
        assert_eq!(status(&tree, &ctid), format!("CTID {ctid} exist mounted running"), "{what}");
        let at = last_count(&tree, &ctid);
        wait_count(&tree, &ctid, at + 3);
    };

    // A running `vzctl exec` program is not in the init's tree.
    let mut exec = tree.cmd("vzctl").args(["exec", &ctid, "sleep 3"]).spawn().unwrap();
    let start = Instant::now();
    while !ok(tree.run("vzctl", &["exec", &ctid, "ps"])).contains("sleep 3") {
        assert!(start.elapsed() < Duration::from_secs(10), "the exec'd sleep never showed");
        std::thread::sleep(Duration::from_millis(50));
    }
    refused("a running exec", "not a descendant");
    exec.wait().unwrap();

    // After a restore the VE has CRIU's time namespace; `vzctl exec` joins it, so a daemon
    // it starts is the VE's like any other and comes back from the next dump. (Before exec
    // joined it, such a daemon kept the host's and the dump had to be refused.)
    ok(tree.run("vzctl", &["chkpnt", &ctid]));
    restore(&tree, &ctid);
    let daemon =
        "setsid sh -c 'echo $$ > /daemon.pid; exec sleep 1000' </dev/null >/dev/null 2>&1 &";
    ok(tree.run("vzctl", &["exec", &ctid, daemon]));
    ok(tree.run("vzctl", &["chkpnt", &ctid]));
    restore(&tree, &ctid);
    ok(tree.run("vzctl", &["exec", &ctid, "kill -0 $(cat /daemon.pid)"]));
    assert_no_gap(&tree, &ctid);
    ok(tree.run("vzctl", &["stop", &ctid]));
    assert_eq!(status(&tree, &ctid), format!("CTID {ctid} exist unmounted down"));
}

fn vz_cpt_criu() -> &'static str {
    "/usr/local/sbin/criu"
}
