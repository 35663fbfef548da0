//! Black-box tests of the per-VE disk limit: the ploop layout (an ext4 image on a loop
//! device) enforces DISKSPACE inside the VE, and `vzquota stat` reports it.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

use vz_tests::{Need, VzTree, ok, output_text, require, unique_ctid};

#[test]
fn diskspace_is_enforced_inside_the_ve_only() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--layout", "ploop", "--diskspace", "100M:120M"]));
    let stat = ok(tree.run("vzquota", &["stat", &ctid]));
    let blocks: Vec<&str> = stat.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&blocks[2..4], ["102400", "122880"], "{stat}");
    ok(tree.run("vzctl", &["start", &ctid]));
    // What the VE's writes can take from the host is what its image allocates (measured on
    // the image itself, not as the host's free space, which other work changes meanwhile).
    let image = tree.path().join(format!("private/{ctid}/root.hdd/root.img"));
    let allocated_before = allocated_bytes(&image);
    let dd = tree.run("vzctl", &["exec2", &ctid, "dd if=/dev/zero of=/fill bs=1M count=300"]);
    assert_ne!(dd.status.code(), Some(0), "writing past the limit fails");
    // Where the kernel enforces the soft limit, the sample's QUOTATIME 0 stops the writer at
    // DISKSPACE's barrier (EDQUOT); elsewhere the full file system stops it (ENOSPC).
    let stderr = String::from_utf8_lossy(&dd.stderr);
    assert!(stderr.contains("No space left") || stderr.contains("Disk quota exceeded"), "{stderr}");
    let df = ok(tree.run("vzctl", &["exec", &ctid, "df -k / | tail -1"]));
    let size_kb: u64 = df.split_whitespace().nth(1).unwrap().parse().unwrap();
    // ext4 keeps its journal and inode tables inside the image: df shows less than the limit.
    assert!((60_000..=122_880).contains(&size_kb), "df in the VE shows its limit: {df}");
    let allocated_after = allocated_bytes(&image);
    let image_size = std::fs::metadata(&image).unwrap().len();
    assert_eq!(image_size, 122_880 << 10, "the image is as large as the hard limit");
    assert!(
        allocated_after <= image_size + (1 << 20),
        "the host gives the VE no more than its image: {allocated_after} bytes allocated"
    );
    assert!(
        allocated_after.saturating_sub(allocated_before) < 160 << 20,
        "the 300 MB write stopped inside the image ({allocated_before} -> {allocated_after})"
    );
    let full = ok(tree.run("vzquota", &["stat", &ctid]));
    let used: u64 = full
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches('*')
        .parse()
        .unwrap();
    let df_used: u64 = df.split_whitespace().nth(2).unwrap().parse().unwrap();
    // Where the kernel enforces the soft limit (project quota), vzquota reports the project's
    // usage, which leaves out ext4's own quota files (a few KB), and df caps usage at the soft
    // limit when that is below the filesystem's size.
    let shown = used.min(size_kb);
    assert!(
        shown.abs_diff(df_used) <= 64,
        "vzquota reports what df in the VE reports: {full} {df}"
    );
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
    ok(tree.run("vzctl", &["destroy", &ctid]));
    let loops = std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("loop/backing_file")).ok());
    let tree_path = tree.path().to_string_lossy().into_owned();
    assert!(loops.into_iter().all(|f| !f.contains(&tree_path)), "no loop device left");
}

#[test]
fn quotatime_of_the_config_governs_the_soft_limit() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--layout", "ploop", "--diskspace", "20M:200M"]));
    // CTID.conf's QUOTATIME reaches the area when it is mounted, as with OpenVZ's vzquota on.
    ok(tree.run("vzctl", &["set", &ctid, "--quotatime", "0", "--save"]));
    ok(tree.run("vzctl", &["start", &ctid]));
    // Batch form: `usage soft hard grace expire`, expire being QUOTATIME.
    let batch = ok(tree.run("vzquota", &["-b", "stat", &ctid]));
    let expire: Vec<&str> = batch.lines().filter_map(|l| l.split_whitespace().last()).collect();
    assert_eq!(expire, ["0", "0"], "{batch}");
    let dd = tree.run("vzctl", &["exec2", &ctid, "dd if=/dev/zero of=/fill bs=1M count=60"]);
    let state = ok(tree.run("vzquota", &["stat", "-t", &ctid]));
    let enforced = state.contains("Soft limits and grace: enforced by the kernel");
    assert!(enforced || state.contains("Soft limits and grace: reported only ("), "{state}");
    assert!(enforced || !vz_tests::required("quota"), "this run requires quota: {state}");
    if enforced {
        // Project quota: no grace, so the write that crosses 20M is the last one allowed.
        assert_ne!(dd.status.code(), Some(0), "{}", output_text(&dd));
        assert!(output_text(&dd).contains("Disk quota exceeded"), "{}", output_text(&dd));
    } else {
        // No quota in this kernel: the soft limit is reported (`*`), only the hard one holds.
        assert_eq!(dd.status.code(), Some(0), "{}", output_text(&dd));
        let over = ok(tree.run("vzquota", &["stat", &ctid]));
        assert!(over.lines().nth(1).is_some_and(|l| l.contains('*')), "{over}");
    }
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
}

/// Copies the host's `program` and the shared libraries ldd names for it into the VE whose
/// root is mounted at `root`, at the same paths.
fn install_host_program(root: &std::path::Path, program: &str) {
    let ldd = std::process::Command::new("ldd").arg(program).output().expect("run ldd");
    let text = String::from_utf8_lossy(&ldd.stdout);
    let libraries = text.lines().filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')));
    for file in libraries.chain([program]) {
        let target = root.join(file.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().expect("a parent")).expect("mkdir in the VE");
        std::fs::copy(file, &target).unwrap_or_else(|e| panic!("copy {file}: {e}"));
    }
}

/// Free bytes of the file system holding `path`, from `df`.
/// The bytes the host's file system allocated to `file` (its blocks, not its length).
fn allocated_bytes(file: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(file).unwrap_or_else(|e| panic!("stat {}: {e}", file.display()));
    meta.blocks() * 512
}

#[test]
fn diskspace_changes_on_a_stopped_and_a_running_ve() {
    require!(Need::Root, Need::Loop, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--layout", "ploop", "--diskspace", "100M:120M"]));
    // Stopped: the image is resized offline, and the config keeps OpenVZ's form.
    let unsaved = tree.run("vzctl", &["set", &ctid, "--diskspace", "150M:200M"]);
    assert_eq!(unsaved.status.code(), Some(31), "a stopped VE needs --save");
    ok(tree.run("vzctl", &["set", &ctid, "--diskspace", "150M:200M", "--save"]));
    let conf = std::fs::read_to_string(tree.path().join(format!("conf/{ctid}.conf"))).unwrap();
    assert!(conf.contains("DISKSPACE=\"153600:204800\""), "{conf}");
    let listed = ok(tree.run("vzlist", &["-a", "-H", "-o", "ctid,diskspace.s,diskspace.h", &ctid]));
    assert_eq!(listed.split_whitespace().collect::<Vec<_>>(), [ctid.as_str(), "153600", "204800"]);
    let bad = tree.run("vzctl", &["set", &ctid, "--diskspace", "lots", "--save"]);
    assert_eq!(bad.status.code(), Some(21));
    // The writer below may pass the soft limit while the image grows: give it a grace period
    // (the sample's QUOTATIME 0 makes the soft limit hard where the kernel enforces it).
    ok(tree.run("vzctl", &["set", &ctid, "--quotatime", "3600", "--save"]));
    ok(tree.run("vzctl", &["start", &ctid]));
    let df = ok(tree.run("vzctl", &["exec", &ctid, "df -k / | tail -1"]));
    let size_kb: u64 = df.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(size_kb > 122_880, "the VE sees the grown file system: {df}");
    // Running: the mounted image grows online, which needs CAP_SYS_RESOURCE (the kernel lab
    // has it; this project's development host does not).
    let online = has_cap_sys_resource();
    if online {
        // A writer that needs more than the current file system, 10 MB every 0.2 s: it can
        // only finish if the image grows under it.
        let chunks = size_kb / 10_240 + 3;
        let writer = format!(
            "i=0; while [ $i -lt {chunks} ]; do dd if=/dev/zero of=/fill bs=1M count=10 \
             seek=$((i*10)) conv=notrunc 2>/dev/null || exit 1; i=$((i+1)); sleep 0.2; done; \
             touch /writer.ok"
        );
        ok(tree.run("vzctl", &["exec", &ctid, &format!("({writer}) >/dev/null 2>&1 &")]));
    }
    let grow = tree.run("vzctl", &["set", &ctid, "--diskspace", "250M:250M", "--save"]);
    if online {
        ok(grow);
        let wait = "for i in $(seq 300); do [ -e /writer.ok ] && exit 0; \
                    pidof dd >/dev/null || sleep 0.1; sleep 0.1; done; exit 1";
        ok(tree.run("vzctl", &["exec", &ctid, wait]));
        let df = ok(tree.run("vzctl", &["exec", &ctid, "df -k / | tail -1"]));
        let grown: u64 = df.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(grown > size_kb, "online growth is visible at once: {df}");
    } else {
        assert_eq!(grow.status.code(), Some(62), "{}", output_text(&grow));
        assert!(output_text(&grow).contains("CAP_SYS_RESOURCE"), "{}", output_text(&grow));
        let conf = std::fs::read_to_string(tree.path().join(format!("conf/{ctid}.conf"))).unwrap();
        assert!(conf.contains("DISKSPACE=\"153600:204800\""), "nothing saved on failure: {conf}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&ok(tree.run("vzlist", &["-j", "-o", "ctid,diskspace", &ctid])))
            .unwrap();
    let quota = &json[0]["diskspace"];
    assert!(
        quota["usage"].as_u64().unwrap() > 0 && quota["hardlimit"].as_u64().unwrap() >= 204_800,
        "{json}"
    );
    assert_eq!(tree.run("vzlist", &["-j", "-o", "diskspace.h"]).status.code(), Some(1));
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
}

/// Whether this process has CAP_SYS_RESOURCE (bit 24 of CapEff).
fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let caps = status.lines().find_map(|l| l.strip_prefix("CapEff:")).expect("CapEff line");
    u64::from_str_radix(caps.trim(), 16).expect("hex caps") & (1 << 24) != 0
}

#[test]
fn second_level_limits_hold_for_a_user_inside_the_ve() {
    require!(
        Need::Root,
        Need::Loop,
        Need::Program("/bin/busybox"),
        Need::CgroupController("pids"),
        Need::Program("/usr/bin/quota"),
        Need::Program("/usr/sbin/setquota"),
        Need::Program("/usr/sbin/repquota"),
        Need::Program("/usr/sbin/edquota")
    );
    let tree = VzTree::new("");
    tree.build_busybox_cache();
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--layout", "ploop", "--diskspace", "200M:200M"]));
    ok(tree.run("vzctl", &["set", &ctid, "--quotaugidlimit", "100", "--save"]));
    ok(tree.run("vzctl", &["start", &ctid]));
    let limit =
        ["setlimit2", &ctid, "-u", "65534", "-b", "1000", "-B", "1000", "-i", "50", "-I", "50"];
    let set = tree.run("vzquota", &limit);
    let report = ok(tree.run("vzquota", &["stat", "-t", &ctid]));
    // Whether the kernel enforces it, as vzquota says (quota_v2 loads at the mount).
    let active = report.contains("User/group quota: on,active");
    assert!(active || !vz_tests::required("quota"), "this run requires quota: {report}");
    // Busybox's files belong to root (uid and gid 0): two ids of the hundred allowed.
    assert!(report.contains("Ugids: loaded 2, total 2, limit 100"), "{report}");
    assert!(report.contains("Ugid limit was exceeded: no"), "{report}");
    // The root file system's device is a node in the VE's /dev, for the quota tools to look
    // up; nobody in the VE can open it, root included.
    let device =
        ok(tree.run("vzctl", &["exec", &ctid, "awk '$2 == \"/\" {print $1; exit}' /proc/mounts"]));
    let device = device.trim();
    assert!(device.starts_with("/dev/loop"), "{device}");
    ok(tree.run("vzctl", &["exec", &ctid, &format!("test -b {device}")]));
    let open = tree.run("vzctl", &["exec2", &ctid, &format!("head -c 1 {device} >/dev/null")]);
    assert_ne!(open.status.code(), Some(0), "{}", output_text(&open));
    // Refused twice over: the node is host root's (0600, unmapped in the VE's user namespace:
    // EACCES) and the allowlist grants the device only mknod (EPERM, e.g. a privileged VE).
    let refused = output_text(&open);
    assert!(
        refused.contains("Permission denied") || refused.contains("Operation not permitted"),
        "{refused}"
    );
    if active {
        ok(set);
        // Debian's quota tool, run by the user inside the VE, shows the user's own limits.
        install_host_program(&tree.path().join(format!("root/{ctid}")), "/usr/bin/quota");
        let own = ok(tree.run("vzctl", &["exec", &ctid, "su -s /bin/sh nobody -c 'quota -v'"]));
        let row = own.lines().find(|l| l.contains(device)).unwrap_or_default();
        let numbers: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(numbers.get(2..4), Some(&["1000", "1000"][..]), "{own}");
        let write = |size: &str| {
            let script =
                format!("su -s /bin/sh nobody -c 'dd if=/dev/zero of=/tmp/f bs=1k count={size}'");
            tree.run("vzctl", &["exec2", &ctid, &script])
        };
        ok(write("500"));
        let over = write("2000");
        assert_ne!(over.status.code(), Some(0), "past the user's hard limit");
        assert!(output_text(&over).contains("quota exceeded"), "{}", output_text(&over));
        ok(tree.run("vzctl", &["exec", &ctid, "dd if=/dev/zero of=/root/big bs=1k count=2000"]));
        root_in_the_ve_uses_the_quota_tools(&tree, &ctid, device);
    } else {
        assert_eq!(set.status.code(), Some(9), "{}", output_text(&set));
        assert!(output_text(&set).contains("quota format"), "{}", output_text(&set));
        assert!(report.contains("User/group quota: on,inactive"), "{report}");
        assert!(!quotactl_socket(&tree, &ctid).exists(), "no quotactl server without quota");
    }
    ok(tree.run("vzctl", &["stop", &ctid, "--fast"]));
    // The server notices that the VE's processes are gone and ends, removing its socket.
    let gone =
        || !quotactl_socket(&tree, &ctid).exists() && quotactl_server_pids(&tree, &ctid).is_empty();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !gone() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if !gone() {
        // Not in the VE's cgroup, so nothing else would end it: kill ours by pid, then fail.
        for pid in quotactl_server_pids(&tree, &ctid) {
            let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        panic!("the quotactl server did not end with the VE");
    }
}

/// Root in the VE sets, copies and reports users' and groups' limits with Debian's tools
/// (through the VE's quotactl server); nobody else may, nor may root touch project quota.
fn root_in_the_ve_uses_the_quota_tools(tree: &VzTree, ctid: &str, device: &str) {
    let root = tree.path().join(format!("root/{ctid}"));
    for tool in ["/usr/sbin/setquota", "/usr/sbin/repquota", "/usr/sbin/edquota"] {
        install_host_program(&root, tool);
    }
    assert!(quotactl_socket(tree, ctid).exists(), "a running VE with quota has its server");
    assert_eq!(quotactl_server_pids(tree, ctid).len(), 1, "one quotactl server");
    let exec = |script: &str| tree.run("vzctl", &["exec", ctid, script]);
    // Above what nobody already uses (about 1000 blocks from the writes before).
    ok(exec("setquota -u nobody 3000 4000 30 40 /"));
    ok(exec("setquota -g nogroup 500 600 0 0 /"));
    ok(exec("edquota -g -p nogroup tty"));
    ok(exec("setquota -t 7200 3600 /"));
    let users = ok(exec("repquota -u /"));
    let nobody = users.lines().find(|l| l.starts_with("nobody")).unwrap_or_default();
    let numbers: Vec<&str> = nobody.split_whitespace().collect();
    assert_eq!(numbers.get(3..5), Some(&["3000", "4000"][..]), "{users}");
    assert!(users.contains("Block grace time: 02:00; Inode grace time: 01:00"), "{users}");
    // -v: also groups without usage (tty has limits only).
    let groups = ok(exec("repquota -v -g /"));
    for group in ["nogroup", "tty"] {
        let row = groups.lines().find(|l| l.starts_with(group)).unwrap_or_default();
        let numbers: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(numbers.get(3..5), Some(&["500", "600"][..]), "{group} in {groups}");
    }
    // The user sees what root set, and is held to it.
    let own = ok(exec("su -s /bin/sh nobody -c 'quota -v'"));
    let row = own.lines().find(|l| l.contains(device)).unwrap_or_default();
    let numbers: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(numbers.get(2..4), Some(&["3000", "4000"][..]), "{own}");
    let over = tree.run(
        "vzctl",
        &["exec2", ctid, "su -s /bin/sh nobody -c 'dd if=/dev/zero of=/tmp/g bs=1k count=4000'"],
    );
    assert!(output_text(&over).contains("quota exceeded"), "{}", output_text(&over));
    // Only root may set limits, and only users' and groups', never the VE's own project.
    let by_user = exec("su -s /bin/sh nobody -c 'setquota -u nobody 0 0 0 0 /'");
    assert_ne!(by_user.status.code(), Some(0), "{}", output_text(&by_user));
    let project = exec("setquota -P 1 1 1 1 1 /");
    assert_ne!(project.status.code(), Some(0), "{}", output_text(&project));
    ok(exec("dd if=/dev/zero of=/root/still-room bs=1k count=100"));
}

/// The VE's quotactl server socket in the tree's run directory.
fn quotactl_socket(tree: &VzTree, ctid: &str) -> std::path::PathBuf {
    tree.path().join(format!("run/{ctid}.quotactl"))
}

/// Pids of this tree's quotactl servers of `ctid`.
fn quotactl_server_pids(tree: &VzTree, ctid: &str) -> Vec<i32> {
    tree.helper_pids("__quotactl-server", ctid)
}
