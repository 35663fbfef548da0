//! Black-box tests of the `vzctl set` options for capabilities, devices, features, block
//! I/O, NUMA nodes, moved network devices, boot order, stop timeout, netfilter and
//! `--applyconfig` (issue 18): each is set with `--save` on a running VE and observed inside
//! the VE or in the kernel's files, then after a restart.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]
#![allow(clippy::print_stderr, reason = "the measured rates are reported")]

use std::path::PathBuf;
use std::time::Instant;

use vz_tests::{Need, VzTree, ok, output_text, require, unique_ctid};

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// `vzctl exec2 CT sh -c script` → (exit code, output).
fn exec(tree: &VzTree, ctid: &str, script: &str) -> (i32, String) {
    let out = tree.run("vzctl", &["exec2", ctid, script]);
    (out.status.code().unwrap_or(-1), output_text(&out))
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn restart(tree: &VzTree, ctid: &str) {
    ok(tree.run("vzctl", &["restart", ctid, "--wait"]));
}

#[test]
fn devnodes_and_devices_go_through_the_allowlist() {
    // v1: the devices controller; v2: the BPF device program, which needs no controller.
    if vz_tests::is_cgroup_v2() {
        require!(Need::Root, Need::Program("/bin/busybox"));
    } else {
        require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("devices"));
    }
    // /dev/net/tun (10:200): opening it makes nothing, and the node lives in a directory.
    assert!(std::path::Path::new("/dev/net/tun").exists(), "the host needs /dev/net/tun (tun)");
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();
    let open_rw = "exec 3<>/dev/net/tun && echo opened-rw";
    let open_r = "exec 3</dev/net/tun && echo opened-r";
    // Without a grant there is no node.
    assert_ne!(exec(&tree, &ctid, "test -c /dev/net/tun").0, 0);

    let out = ok(tree.run("vzctl", &["set", &ctid, "--devnodes", "net/tun:r", "--save"]));
    assert!(out.contains("CT configuration saved"), "{out}");
    assert!(tree.ve_conf(&ctid).contains("DEVNODES=\"net/tun:r\""), "{}", tree.ve_conf(&ctid));
    let (rc, text) = exec(&tree, &ctid, "ls -ln /dev/net/tun");
    assert_eq!(rc, 0, "{text}");
    assert!(text.starts_with("crw") && text.contains(" 0 ") && text.contains("10,"), "{text}");
    let (rc, text) = exec(&tree, &ctid, open_r);
    assert!(rc == 0 && text.contains("opened-r"), "read access is granted: {text}");
    // The security boundary: the node is the VE root's (mode 0600 rw for it), but the
    // allowlist grants reading only, so opening it for writing is refused by the kernel.
    let (rc, text) = exec(&tree, &ctid, open_rw);
    assert!(rc != 0 && text.contains("not permitted"), "write access must be refused: {text}");
    if !vz_tests::is_cgroup_v2() {
        let list = read(&tree.cgroup_file(&ctid, "devices", "devices.list", ""));
        assert!(list.lines().any(|l| l == "c 10:200 r"), "{list}");
    }

    ok(tree.run("vzctl", &["set", &ctid, "--devnodes", "net/tun:rw", "--save"]));
    let (rc, text) = exec(&tree, &ctid, open_rw);
    assert!(rc == 0 && text.contains("opened-rw"), "{text}");
    // --devices takes the access away again, the node stays.
    ok(tree.run("vzctl", &["set", &ctid, "--devices", "c:10:200:none", "--save"]));
    assert!(tree.ve_conf(&ctid).contains("DEVICES=\"c:10:200:none\""));
    let (rc, text) = exec(&tree, &ctid, open_r);
    assert!(rc != 0 && text.contains("not permitted"), "{text}");
    ok(tree.run("vzctl", &["set", &ctid, "--devices", "c:10:200:rw", "--save"]));
    assert_eq!(exec(&tree, &ctid, open_rw).0, 0);

    // After a restart the saved grant is there from the start.
    restart(&tree, &ctid);
    let (rc, text) = exec(&tree, &ctid, open_rw);
    assert!(rc == 0 && text.contains("opened-rw"), "after restart: {text}");
    ok(tree.run("vzctl", &["set", &ctid, "--devnodes", "net/tun:none", "--save"]));
    ok(tree.run("vzctl", &["set", &ctid, "--devices", "c:10:200:none", "--save"]));
    assert_ne!(exec(&tree, &ctid, "test -e /dev/net/tun").0, 0, "the node is removed");
    assert_ne!(exec(&tree, &ctid, "mknod /dev/f c 10 200 && exec 3<>/dev/f").0, 0);

    // Bad values: 21 naming the option; a name that is no host device: 86.
    for (opt, value, want) in [
        ("--devices", "b:7:0:rw", 21),
        ("--devices", "a:all:all:rw", 21),
        ("--devices", "c:10:200:rwm", 21),
        ("--devnodes", "net/tun", 21),
        ("--devnodes", "../etc/passwd:rw", 86),
        ("--devnodes", "no-such-node:rw", 86),
    ] {
        let out = tree.run("vzctl", &["set", &ctid, opt, value, "--save"]);
        assert_eq!(code(&out), want, "{opt} {value}: {}", output_text(&out));
    }
}

#[test]
fn capability_off_leaves_the_bounding_set_of_exec_and_init() {
    require!(Need::Root, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();
    let chown = "touch /tmp/c && chown 1 /tmp/c && echo chowned";
    let (rc, text) = exec(&tree, &ctid, chown);
    assert!(rc == 0 && text.contains("chowned"), "the default allows chown: {text}");

    let out = ok(tree.run("vzctl", &["set", &ctid, "--capability", "chown:off", "--save"]));
    assert!(out.contains("WARNING: Some of the parameters could not be applied"), "{out}");
    assert!(tree.ve_conf(&ctid).contains("CAPABILITY=\"CHOWN:off\""), "{}", tree.ve_conf(&ctid));
    // A process entered now has no CAP_CHOWN in its bounding set or effective set.
    let (rc, text) = exec(&tree, &ctid, "grep CapBnd /proc/self/status");
    assert_eq!(rc, 0, "{text}");
    let bnd = u64::from_str_radix(text.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(bnd & 1, 0, "CAP_CHOWN (bit 0) must be gone: {text}");
    let (rc, text) = exec(&tree, &ctid, chown);
    assert!(rc != 0 && text.contains("not permitted"), "chown must be refused: {text}");

    // After a restart the VE's init itself lacks it.
    restart(&tree, &ctid);
    let init = tree.init_pid(&ctid);
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("CapBnd:")).unwrap();
    let bnd = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(bnd & 1, 0, "init: {line}");
    assert_ne!(exec(&tree, &ctid, chown).0, 0);

    ok(tree.run("vzctl", &["set", &ctid, "--capability", "chown:on", "--save"]));
    assert!(tree.ve_conf(&ctid).contains("CAPABILITY=\"CHOWN:on\""));
    assert_eq!(exec(&tree, &ctid, chown).0, 0);
    let out = tree.run("vzctl", &["set", &ctid, "--capability", "sys_foo:on", "--save"]);
    assert_eq!(code(&out), 21, "{}", output_text(&out));
    // --setmode ignore refuses a restart-only change on a running VE: 32.
    let out = tree.run(
        "vzctl",
        &["set", &ctid, "--capability", "chown:off", "--setmode", "ignore", "--save"],
    );
    assert_eq!(code(&out), 32, "{}", output_text(&out));
    // --setmode restart restarts it with the new set.
    let before = tree.init_pid(&ctid);
    let out = ok(tree.run(
        "vzctl",
        &["set", &ctid, "--capability", "chown:off", "--setmode", "restart", "--save"],
    ));
    assert!(out.contains("Restarting container"), "{out}");
    assert_ne!(tree.init_pid(&ctid), before);
    assert_ne!(exec(&tree, &ctid, chown).0, 0);
}

/// Seconds a `dd` of `count` blocks of `bs` with `oflag=direct` takes inside the VE.
fn timed_dd(tree: &VzTree, ctid: &str, bs: &str, count: u32) -> f64 {
    let start = Instant::now();
    let script = format!("dd if=/dev/zero of=/io.test bs={bs} count={count} oflag=direct 2>&1");
    let (rc, text) = exec(tree, ctid, &script);
    assert_eq!(rc, 0, "{text}");
    start.elapsed().as_secs_f64()
}

#[test]
fn iolimit_and_iopslimit_hold_a_direct_dd_in_the_ve() {
    let io = if vz_tests::is_cgroup_v2() { "io" } else { "blkio" };
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController(io), Need::Loop);
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();
    let unlimited = timed_dd(&tree, &ctid, "1M", 8);

    let out = ok(tree.run("vzctl", &["set", &ctid, "--iolimit", "2M", "--save"]));
    assert!(out.contains("CT configuration saved"), "{out}");
    assert!(tree.ve_conf(&ctid).contains("IOLIMIT=\"2097152\""), "{}", tree.ve_conf(&ctid));
    let (file_v1, file_v2) = ("blkio.throttle.write_bps_device", "io.max");
    let knob = read(&tree.cgroup_file(&ctid, "blkio", file_v1, file_v2));
    assert!(knob.starts_with("7:") && knob.contains("2097152"), "the loop device: {knob}");
    let limited = timed_dd(&tree, &ctid, "1M", 8);
    let rate = 8.0 / limited;
    eprintln!("dd 8 MiB: unlimited {unlimited:.2}s, --iolimit 2M {limited:.2}s ({rate:.2} MiB/s)");
    assert!(limited > 3.0 && rate < 2.6, "held near 2 MiB/s: {limited:.2}s");

    ok(tree.run("vzctl", &["set", &ctid, "--iolimit", "0", "--iopslimit", "25", "--save"]));
    assert!(tree.ve_conf(&ctid).contains("IOPSLIMIT=\"25\""));
    let iops_secs = timed_dd(&tree, &ctid, "4k", 100);
    eprintln!("dd 100 x 4k with --iopslimit 25: {iops_secs:.2}s");
    assert!(iops_secs > 2.5, "100 writes at 25/s: {iops_secs:.2}s");

    // The saved limits are put on the disk again at start.
    restart(&tree, &ctid);
    let knob =
        read(&tree.cgroup_file(&ctid, "blkio", "blkio.throttle.write_iops_device", "io.max"));
    assert!(knob.contains("25"), "{knob}");
    ok(tree.run("vzctl", &["set", &ctid, "--iopslimit", "unlimited", "--save"]));
    // Lifted in the kernel (a timing would depend on the machine's load).
    let knob =
        read(&tree.cgroup_file(&ctid, "blkio", "blkio.throttle.write_iops_device", "io.max"));
    assert!(!knob.trim_end().ends_with("25"), "the IOPS limit stayed: {knob}");

    // --ioprio: saved; on a host without a weighing I/O scheduler vz says so.
    let out = tree.run("vzctl", &["set", &ctid, "--ioprio", "7", "--save"]);
    let out = if out.status.success() { output_text(&out) } else { ok(out) };
    assert!(tree.ve_conf(&ctid).contains("IOPRIO=\"7\""));
    let weight = ["blkio.bfq.weight", "blkio.weight"]
        .iter()
        .map(|f| tree.cgroup_file(&ctid, "blkio", f, "io.weight"))
        .find(|p| p.exists());
    match weight {
        Some(path) => assert!(read(&path).contains("800"), "{}", read(&path)),
        None => assert!(out.contains("no I/O weight on this host"), "{out}"),
    }
    for (opt, value) in [("--ioprio", "8"), ("--iolimit", "5X"), ("--iopslimit", "-1")] {
        let out = tree.run("vzctl", &["set", &ctid, opt, value]);
        assert_eq!(code(&out), 21, "{opt} {value}: {}", output_text(&out));
    }
}

#[test]
fn netdev_moves_a_host_device_into_the_ve_and_back() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::Program("/usr/sbin/ip"));
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();
    // A veth end (this kernel has no dummy driver); its peer stays on the host.
    let dev = format!("vzt{}d", unique_ctid());
    let peer = format!("{dev}p");
    let ip = |args: &[&str]| {
        std::process::Command::new("ip").args(["-n", tree.netns()]).args(args).output().unwrap()
    };
    assert!(ip(&["link", "add", &dev, "type", "veth", "peer", "name", &peer]).status.success());

    let out = ok(tree.run("vzctl", &["set", &ctid, "--netdev_add", &dev, "--save"]));
    assert!(out.contains("CT configuration saved"), "{out}");
    assert!(tree.ve_conf(&ctid).contains(&format!("NETDEV=\"{dev}\"")), "{}", tree.ve_conf(&ctid));
    assert!(!ip(&["link", "show", &dev]).status.success(), "gone from the host");
    let (rc, text) = exec(&tree, &ctid, &format!("ip link show {dev}"));
    assert!(rc == 0 && text.contains(&dev), "in the VE: {text}");

    ok(tree.run("vzctl", &["set", &ctid, "--netdev_del", &dev, "--save"]));
    assert!(tree.ve_conf(&ctid).contains("NETDEV=\"\""), "{}", tree.ve_conf(&ctid));
    assert!(ip(&["link", "show", &dev]).status.success(), "back on the host");
    assert_ne!(exec(&tree, &ctid, &format!("ip link show {dev}")).0, 0);

    // NETDEV is moved in at start.
    ok(tree.run("vzctl", &["set", &ctid, "--netdev_add", &dev, "--save"]));
    restart(&tree, &ctid);
    assert_eq!(exec(&tree, &ctid, &format!("ip link show {dev}")).0, 0, "after restart");
    ok(tree.run("vzctl", &["set", &ctid, "--netdev_del", &dev, "--save"]));
    assert!(ip(&["link", "show", &dev]).status.success());

    for bad in ["venet0", "lo", "tap0"] {
        let out = tree.run("vzctl", &["set", &ctid, "--netdev_add", bad, "--save"]);
        assert_eq!(code(&out), 21, "{bad}: {}", output_text(&out));
    }
    let out = tree.run("vzctl", &["set", &ctid, "--netdev_add", "vznosuchdev", "--save"]);
    assert_eq!(code(&out), 104, "{}", output_text(&out));
    assert!(!tree.ve_conf(&ctid).contains("vznosuchdev"), "nothing saved after a failure");
    ip(&["link", "del", &dev]);
}

#[test]
fn nodemask_sets_the_memory_nodes() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("cpuset"));
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();
    let mems = tree.cgroup_file(&ctid, "cpuset", "cpuset.mems", "cpuset.mems");
    ok(tree.run("vzctl", &["set", &ctid, "--cpumask", "all", "--nodemask", "0", "--save"]));
    assert_eq!(read(&mems), "0");
    assert!(tree.ve_conf(&ctid).contains("NODEMASK=\"0\""), "{}", tree.ve_conf(&ctid));
    restart(&tree, &ctid);
    assert_eq!(read(&mems), "0");
    ok(tree.run("vzctl", &["set", &ctid, "--cpumask", "all", "--nodemask", "all", "--save"]));
    assert!(!read(&mems).is_empty() || vz_tests::is_cgroup_v2());
    // auto: the CPUs of the nodes.
    let cpus = tree.cgroup_file(&ctid, "cpuset", "cpuset.cpus", "cpuset.cpus");
    ok(tree.run("vzctl", &["set", &ctid, "--cpumask", "auto", "--nodemask", "0", "--save"]));
    let node0 = std::fs::read_to_string("/sys/devices/system/node/node0/cpulist").unwrap();
    assert_eq!(read(&cpus), node0.trim());
    assert!(tree.ve_conf(&ctid).contains("CPUMASK=\"auto\""), "{}", tree.ve_conf(&ctid));
    restart(&tree, &ctid);
    assert_eq!(read(&cpus), node0.trim(), "after restart");
    let out = tree.run("vzctl", &["set", &ctid, "--cpumask", "auto"]);
    assert_eq!(code(&out), 20, "auto needs --nodemask: {}", output_text(&out));
    let out = tree.run("vzctl", &["set", &ctid, "--nodemask", "0"]);
    assert_eq!(code(&out), 20, "--nodemask needs --cpumask: {}", output_text(&out));
    let out = tree.run("vzctl", &["set", &ctid, "--cpumask", "all", "--nodemask", "4095"]);
    assert_eq!(code(&out), 21, "{}", output_text(&out));
}

#[test]
fn saved_only_settings_features_and_applyconfig() {
    require!(Need::Root, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox", "--hostname", "keep"]));

    let out = ok(tree.run(
        "vzctl",
        &[
            "set",
            &ctid,
            "--stop-timeout",
            "7",
            "--bootorder",
            "3",
            "--netfilter",
            "full",
            "--features",
            "fuse:on,bridge:on",
            "--save",
        ],
    ));
    assert!(out.contains("CT configuration saved"), "{out}");
    let text = tree.ve_conf(&ctid);
    for want in [
        "STOP_TIMEOUT=\"7\"",
        "BOOTORDER=\"3\"",
        "NETFILTER=\"full\"",
        "FEATURES=\"fuse:on bridge:on\"",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    let out = ok(tree.run("vzlist", &["-H", "-o", "bootorder", &ctid]));
    assert_eq!(out.trim(), "3");
    for (args, want) in [
        (&["--stop-timeout", "5"][..], 20),
        (&["--features", "nfs:on", "--save"][..], 21),
        (&["--features", "nfsd:on", "--save"][..], 21),
        (&["--netfilter", "some", "--save"][..], 21),
        (&["--bootorder", "x", "--save"][..], 21),
        (&["--applyconfig", "nosuchsample", "--save"][..], 109),
        (&["--applyconfig_map", "group", "--save"][..], 21),
    ] {
        let out = tree.run("vzctl", &[&["set", ctid.as_str()][..], args].concat());
        assert_eq!(code(&out), want, "{args:?}: {}", output_text(&out));
    }

    // The fuse feature gives the VE /dev/fuse at start; a host without it is told so.
    let start = tree.run("vzctl", &["start", &ctid, "--wait"]);
    assert!(start.status.success(), "{}", output_text(&start));
    if std::path::Path::new("/dev/fuse").exists() {
        let (rc, text) = exec(&tree, &ctid, "exec 3<>/dev/fuse && echo fuse-ok");
        assert!(rc == 0 && text.contains("fuse-ok"), "{text}");
    } else {
        let text = output_text(&start);
        assert!(text.contains("feature fuse: the host has no /dev/fuse"), "{text}");
        assert_ne!(exec(&tree, &ctid, "test -e /dev/fuse").0, 0);
    }

    // --applyconfig: the sample's parameters, not its host name; live on the running VE.
    std::fs::write(
        tree.path().join("conf/ve-tiny.conf-sample"),
        "NUMPROC=\"50:50\"\nONBOOT=\"yes\"\nHOSTNAME=\"sample\"\nLOCAL_UID=\"0\"\n",
    )
    .unwrap();
    ok(tree.run("vzctl", &["set", &ctid, "--applyconfig", "tiny", "--save"]));
    let text = tree.ve_conf(&ctid);
    assert!(text.contains("NUMPROC=\"50\"") && text.contains("ONBOOT=\"yes\""), "{text}");
    assert!(text.contains("HOSTNAME=\"keep\"") && !text.contains("LOCAL_UID=\"0\""), "{text}");
    let pids = tree.cgroup_file(&ctid, "pids", "pids.max", "pids.max");
    assert_eq!(read(&pids), "50");

    // --applyconfig_map name: the name link of NAME comes back.
    let name = format!("so{ctid}");
    ok(tree.run("vzctl", &["set", &ctid, "--name", &name, "--save"]));
    let link = tree.path().join("names").join(&name);
    std::fs::remove_file(&link).expect("the name link");
    ok(tree.run(
        "vzctl",
        &["set", &ctid, "--applyconfig", "tiny", "--applyconfig_map", "name", "--save"],
    ));
    assert!(link.symlink_metadata().is_ok(), "{} is back", link.display());

    // create --config over an existing config: 82 (before the private area is looked at).
    let out = tree.run("vzctl", &["create", &ctid, "--config", "tiny"]);
    assert_eq!(code(&out), 82, "{}", output_text(&out));
}

/// Copies the host's `nft` with its libraries and loader into the VE's root at `/nft`; the
/// command line that runs it there.
fn nft_in_ve(tree: &VzTree, ctid: &str) -> String {
    let dir = tree.path().join(format!("root/{ctid}/nft"));
    std::fs::create_dir_all(&dir).expect("make /nft in the VE");
    let ldd = std::process::Command::new("ldd").arg("/usr/sbin/nft").output().expect("run ldd");
    let text = String::from_utf8_lossy(&ldd.stdout).into_owned();
    let mut files: Vec<String> =
        text.split_whitespace().filter(|w| w.starts_with('/')).map(str::to_owned).collect();
    files.push("/usr/sbin/nft".to_owned());
    let mut loader = String::new();
    for file in &files {
        let name = std::path::Path::new(file)
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        std::fs::copy(file, dir.join(&name)).unwrap_or_else(|e| panic!("copy {file}: {e}"));
        if name.starts_with("ld-linux") {
            loader = name;
        }
    }
    assert!(!loader.is_empty(), "no loader in {text}");
    format!("/nft/{loader} --library-path /nft /nft/nft list ruleset && echo nft-ok")
}

#[test]
fn netfilter_disabled_leaves_the_ve_no_firewall_calls() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::Program("/usr/sbin/nft"));
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();
    let nft = nft_in_ve(&tree, &ctid);
    let (rc, text) = exec(&tree, &ctid, &nft);
    assert!(rc == 0 && text.contains("nft-ok"), "the VE's own nftables: {text}");

    let out = tree.run("vzctl", &["set", &ctid, "--netfilter", "disabled", "--save"]);
    assert!(output_text(&out).contains("WARNING: Some of the parameters"), "{}", output_text(&out));
    assert!(tree.ve_conf(&ctid).contains("NETFILTER=\"disabled\""));
    // A process entered now, and after a restart every process, is refused netfilter.
    let (rc, text) = exec(&tree, &ctid, &nft);
    assert!(rc != 0 && text.contains("Operation not permitted"), "{text}");
    restart(&tree, &ctid);
    let (rc, text) = exec(&tree, &ctid, &nft);
    assert!(rc != 0 && text.contains("Operation not permitted"), "after restart: {text}");
    // Other netlink sockets still work (the VE's own routes).
    let (rc, text) = exec(&tree, &ctid, "ip route show table all >/dev/null && echo route-ok");
    assert!(rc == 0 && text.contains("route-ok"), "{text}");

    ok(tree.run("vzctl", &["set", &ctid, "--netfilter", "full", "--save"]));
    let (rc, text) = exec(&tree, &ctid, &nft);
    assert!(rc == 0 && text.contains("nft-ok"), "{text}");
}

/// The mountinfo line of the mount at `point`.
fn mountinfo_of(point: &std::path::Path) -> String {
    let point = point.canonicalize().expect("canonical VE_ROOT");
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    text.lines()
        .rfind(|l| l.split(' ').nth(4) == Some(point.to_str().unwrap_or_default()))
        .unwrap_or_else(|| panic!("nothing mounted at {}", point.display()))
        .to_owned()
}

/// `--mount_opts` (OpenVZ's MOUNT_OPTS, restart-required): the image is mounted with them at
/// the next start; options that would reach the host or that vz owns are refused with 21.
#[test]
fn mount_opts_reach_the_images_mount_and_unsafe_ones_are_refused() {
    require!(Need::Root, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    let ctid = tree.running_busybox_ve();
    let set = ok(tree.run("vzctl", &["set", &ctid, "--mount_opts", "noatime,commit=30", "--save"]));
    assert!(set.contains("--setmode"), "the restart-required warning: {set}");
    let root = tree.path().join(format!("root/{ctid}"));
    assert!(!mountinfo_of(&root).contains("commit=30"), "applied before the restart");
    restart(&tree, &ctid);
    let line = mountinfo_of(&root);
    let (mount, sup) = line.split_once(" - ").expect("mountinfo separator");
    assert!(mount.split(' ').nth(5).unwrap_or_default().contains("noatime"), "{line}");
    assert!(sup.contains("commit=30"), "{line}");
    for bad in ["errors=panic", "journal_path=/etc/passwd", "usrquota", "debug"] {
        let out = tree.run("vzctl", &["set", &ctid, "--mount_opts", bad, "--save"]);
        assert_eq!(code(&out), 21, "{bad}: {}", output_text(&out));
    }
    assert!(tree.ve_conf(&ctid).contains("MOUNT_OPTS=\"noatime,commit=30\""));
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
}

/// OpenVZ's obsolete `--iptables` is kept (IPTABLES) and saved as the NETFILTER level its
/// modules need; an unknown module is refused with 21 and nothing is saved.
#[test]
fn iptables_modules_are_saved_with_their_netfilter_level() {
    require!(Need::Root, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox"]));
    let args = ["set", &ctid, "--iptables", "iptable_filter,ipt_state", "--save"];
    ok(tree.run("vzctl", &args));
    let conf = tree.ve_conf(&ctid);
    assert!(conf.contains("IPTABLES=\"iptable_filter ipt_state\""), "{conf}");
    assert!(conf.contains("NETFILTER=\"stateful\""), "{conf}");
    let out = tree.run("vzctl", &["set", &ctid, "--iptables", "iptable_nat,xt_bogus", "--save"]);
    assert_eq!(code(&out), 21, "{}", output_text(&out));
    assert_eq!(tree.ve_conf(&ctid), conf, "nothing saved");
}

/// `--offline-resize` resizes the image of a stopped, unmounted VE now (20 without
/// `--diskspace`, 41 mounted, 32 running); `--diskquota` is saved as DISK_QUOTA.
#[test]
fn offline_resize_and_diskquota() {
    require!(Need::Root, Need::Program("/bin/busybox"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox"]));
    let image = tree.path().join(format!("private/{ctid}/root.hdd/root.img"));
    let size = || std::fs::metadata(&image).expect("the image").len();
    let before = size();
    let set = |args: &[&str]| {
        let mut all = vec!["set", ctid.as_str()];
        all.extend_from_slice(args);
        tree.run("vzctl", &all)
    };
    ok(set(&["--diskspace", "3G", "--offline-resize", "--save"]));
    assert_eq!(size(), 3 << 30, "resized now (was {before})");
    assert_eq!(code(&set(&["--offline-resize", "--save"])), 20, "without --diskspace");
    ok(tree.run("vzctl", &["mount", &ctid]));
    assert_eq!(code(&set(&["--diskspace", "4G", "--offline", "--save"])), 41, "mounted");
    ok(tree.run("vzctl", &["start", &ctid]));
    assert_eq!(code(&set(&["--diskspace", "4G", "--offline-resize", "--save"])), 32, "running");
    assert_eq!(size(), 3 << 30, "left as it was");
    ok(set(&["--diskquota", "no", "--save"]));
    assert!(tree.ve_conf(&ctid).contains("DISK_QUOTA=\"no\""), "{}", tree.ve_conf(&ctid));
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
}
