//! Kernel tests of an unprivileged VE: init and entered programs in the VE's own user
//! namespace on an idmapped ext4 root, the mounts made for it locked against its root, and
//! set-uid programs working for its own users.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

mod common;

use std::os::unix::fs::MetadataExt;

use common::TestVe;
use vz_ns::IdMap;

/// The host ids of the tests' VE root (a range no real VE of a test tree uses).
const BASE: u32 = 3_000_000;

macro_rules! needs {
    () => {
        if !vz_tests::check_needs(module_path!(), &common::IDMAPPED_VE_NEEDS) {
            return Ok(());
        }
    };
}

fn start(name: &str) -> anyhow::Result<TestVe> {
    TestVe::start_userns(name, IdMap::new(BASE, BASE + 1)?)
}

fn status_field(pid: i32, field: &str) -> anyhow::Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_default();
    Ok(line.trim_start_matches(field).trim().to_owned())
}

#[test]
fn init_is_the_mapped_root_in_a_user_namespace_of_its_own() -> anyhow::Result<()> {
    needs!();
    let ve = start("vz-test-userns")?;
    let uids = status_field(ve.init_pid, "Uid:")?;
    assert!(uids.split_whitespace().all(|u| u == BASE.to_string()), "host sees Uid {uids}");
    let gids = status_field(ve.init_pid, "Gid:")?;
    assert!(gids.split_whitespace().all(|g| g == (BASE + 1).to_string()), "Gid {gids}");
    let theirs = std::fs::read_link(format!("/proc/{}/ns/user", ve.init_pid))?;
    assert_ne!(theirs, std::fs::read_link("/proc/self/ns/user")?, "own user namespace");
    let inside = ve.sh_ok("id -u; id -g; cat /proc/self/uid_map; stat -c %u:%g /bin/busybox")?;
    let lines: Vec<&str> = inside.lines().collect();
    assert_eq!(lines[0], "0", "{inside}");
    assert_eq!(lines[1], "0", "{inside}");
    assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["0", "3000000", "65536"]);
    assert_eq!(lines[3], "0:0", "the template's files are the VE root's: {inside}");
    // A file made by the VE's root is 0:0 on disk (portable), shown shifted only in the VE.
    ve.sh_ok("echo x > /root/made-inside && chown 1000:1000 /tmp")?;
    let made = std::fs::metadata(ve.root.path().join("root/made-inside"))?;
    assert_eq!((made.uid(), made.gid()), (0, 0));
    assert_eq!(std::fs::metadata(ve.root.path().join("tmp"))?.uid(), 1000);
    Ok(())
}

#[test]
fn an_entered_program_is_the_ves_root_not_the_hosts() -> anyhow::Result<()> {
    needs!();
    let ve = start("vz-test-userns-enter")?;
    // The entered shell reports its host-side view through the VE's own /proc: the uid map
    // it is under and its capability sets are the VE's.
    let text = ve.sh_ok("cat /proc/self/uid_map; grep -E '^(Uid|CapEff)' /proc/self/status")?;
    assert!(text.contains("3000000"), "entered process under the VE's map: {text}");
    // Host files stay out of reach even through the entered process's own fds: host root's
    // files (kuid 0) are unmapped in the VE, so not even their owner's rights apply.
    let (code, out) = ve.sh("mknod /tmp/disk b 7 0")?;
    assert_ne!(code, 0, "mknod of a block device: {out}");
    Ok(())
}

#[test]
fn the_ves_mounts_are_locked_against_its_root() -> anyhow::Result<()> {
    needs!();
    let ve = start("vz-test-userns-locked")?;
    for (what, script) in [
        ("unmask /proc/kcore", "umount /proc/kcore"),
        ("unmask /sys/firmware", "umount /sys/firmware"),
        ("unmask the loop devices", "umount /sys/devices/virtual/block"),
        ("unmask /proc/irq", "umount /proc/irq"),
        ("make /proc/sys writable", "mount -o remount,rw /proc/sys"),
        ("lift nodev of /", "mount -o remount,dev /"),
        ("a fresh proc beside the masked one", "mkdir -p /mnt && mount -t proc proc /mnt"),
    ] {
        let (code, out) = ve.sh(script)?;
        assert_ne!(code, 0, "{what} must fail: {out}");
    }
    // The VE may still mount its own file systems (systemd does).
    ve.sh_ok("mkdir -p /mnt && mount -t tmpfs t /mnt && umount /mnt")?;
    Ok(())
}

#[test]
fn set_uid_programs_work_for_the_ves_own_users() -> anyhow::Result<()> {
    needs!();
    let ve = start("vz-test-userns-suid")?;
    ve.sh_ok("ip link set lo up")?;
    // As nobody, busybox ping needs a raw socket: it gets one only as a set-uid root program.
    let (code, out) = ve.sh("su nobody -s /bin/sh -c 'ping -c1 -W2 127.0.0.1'")?;
    assert_ne!(code, 0, "without set-uid nobody cannot ping: {out}");
    ve.sh_ok("mkdir /tmp/suid && cp /bin/busybox /tmp/suid/ && chmod 4755 /tmp/suid/busybox")?;
    ve.sh_ok("su nobody -s /bin/sh -c '/tmp/suid/busybox ping -c1 -W2 127.0.0.1'")?;
    Ok(())
}

#[test]
fn a_systemd_ve_gets_its_own_run_lock_and_tmp() -> anyhow::Result<()> {
    needs!();
    let ve =
        TestVe::start_userns_with("vz-test-userns-run", IdMap::new(BASE, BASE + 1)?, |spec| {
            spec.run_tmpfs = true;
        })?;
    let mounts = ve.sh_ok("grep -E ' /(run|run/lock|tmp) ' /proc/mounts")?;
    for point in [" /run ", " /run/lock ", " /tmp "] {
        let line = mounts.lines().find(|l| l.contains(point)).unwrap_or_default();
        assert!(line.contains("tmpfs") && line.contains("nosuid"), "{point}: {mounts}");
    }
    // The VE's root owns them (systemd makes its runtime directories there).
    ve.sh_ok("mkdir /run/systemd && touch /run/lock/x /tmp/y && stat -c %u /run")?;
    Ok(())
}
