//! Kernel tests of the first level's soft limits and grace: enforced by ext4 project quota
//! where the kernel has quota formats (the kernel lab), honestly reported elsewhere.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Fixture, dd, df, loop_devices_of};
use vz_quota::{DiskInodes, DiskSpace, Grace, Layout, PrivateArea, SoftLimits};
use vz_tests::Need;

const CAPSH: &str = "/usr/sbin/capsh";
/// QUOTATIME of these tests, seconds.
const GRACE: u64 = 3;

fn mb(n: u64) -> u64 {
    n * 1024
}

/// Writes `mb` MiB to `path` with dd as root without CAP_SYS_RESOURCE (which lets a process
/// ignore quota limits); returns (success, stderr).
fn dd_unprivileged(path: &Path, mb: u64) -> (bool, String) {
    let script = format!("exec dd if=/dev/zero of={} bs=1M count={mb} conv=fsync", path.display());
    let out = Command::new(CAPSH)
        .args(["--drop=cap_sys_resource", "--", "-c", &script])
        .output()
        .expect("run capsh");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The project id `lsattr -p` shows for `path`.
fn project_of(path: &Path) -> u32 {
    let out = Command::new("lsattr").arg("-pd").arg(path).output().expect("run lsattr");
    assert!(out.status.success(), "lsattr: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().next().and_then(|n| n.parse().ok()).expect("lsattr -p output")
}

#[test]
fn soft_limits_and_grace_are_enforced_where_the_kernel_can_and_reported_elsewhere() {
    vz_tests::require!(Need::Root, Need::Loop, Need::Program(CAPSH));
    let fx = Fixture::new("img-soft");
    let space = DiskSpace { soft_kb: mb(8), hard_kb: mb(64) };
    let inodes = DiskInodes { soft: 500, hard: 1000 };
    let area = PrivateArea::create(&fx.private, Layout::Image, Some(space), Some(inodes)).unwrap();
    let state = area.first_level_soft(&fx.root).unwrap();
    assert!(matches!(state, SoftLimits::Reported { .. }), "unmounted: {state:?}");
    area.mount(&fx.root).unwrap();
    // QUOTATIME set on a mounted area reaches the kernel at once.
    area.set_quota_time(GRACE).unwrap();

    let lab = vz_tests::required("quota");
    match area.first_level_soft(&fx.root).unwrap() {
        SoftLimits::Reported { reason } => {
            assert!(!lab, "soft limits not enforced in the kernel lab: {reason}");
            assert!(!vz_quota::kernel_has_quota(), "kernel has quota, yet: {reason}");
            assert!(reason.contains("quota format"), "{reason}");
            // Nothing but the hard limit holds; the soft limit is reported with its timer.
            let (ok, stderr) = dd(&fx.root.join("past-soft"), 16);
            assert!(ok, "{stderr}");
            let stat = area.stat(&fx.root).unwrap();
            assert!(matches!(stat.blocks.grace, Grace::Remaining { .. }), "{stat}");
        }
        SoftLimits::Enforced => {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            assert!(mountinfo.contains("prjquota"), "{mountinfo}");
            assert_eq!(project_of(&fx.root), vz_quota::PROJECT_ID);
            let caps = Command::new(CAPSH)
                .args(["--drop=cap_sys_resource", "--", "-c", "grep CapEff /proc/self/status"])
                .output()
                .unwrap();
            let caps = String::from_utf8_lossy(&caps.stdout);
            let eff = u64::from_str_radix(caps.trim_start_matches("CapEff:").trim(), 16).unwrap();
            assert_eq!(eff & (1 << 24), 0, "the writer still has CAP_SYS_RESOURCE: {caps}");

            // Past the soft limit: allowed inside the grace period.
            let (ok, stderr) = dd_unprivileged(&fx.root.join("past-soft"), 16);
            assert!(ok, "write past the soft limit within the grace period failed: {stderr}");
            assert_eq!(project_of(&fx.root.join("past-soft")), vz_quota::PROJECT_ID);
            // Usage and the grace deadline come from the kernel's project quota.
            let stat = area.stat(&fx.root).unwrap();
            assert!((mb(16)..mb(17)).contains(&stat.blocks.usage), "{stat}");
            assert!(matches!(stat.blocks.grace, Grace::Remaining { .. }), "{stat}");
            assert_eq!((stat.blocks.soft, stat.blocks.hard), (mb(8), mb(64)), "{stat}");
            assert!(stat.inodes.hard >= 1000, "{stat}");
            // statvfs in the VE shows the project's soft limit as the size (ext4's rule).
            let (total_kb, _, _) = df(&fx.root);
            assert_eq!(total_kb, mb(8));
            // After the grace period: the soft limit acts as a hard one.
            std::thread::sleep(Duration::from_secs(GRACE + 1));
            let (ok, stderr) = dd_unprivileged(&fx.root.join("after-grace"), 1);
            assert!(!ok, "write after the grace period succeeded");
            assert!(stderr.contains("Disk quota exceeded"), "{stderr}");
            let stat = area.stat(&fx.root).unwrap();
            assert!(matches!(stat.blocks.grace, Grace::Expired { .. }), "{stat}");
            if vz_quota::has_cap_sys_resource() {
                // The kernel's rule: CAP_SYS_RESOURCE ignores quota limits.
                std::fs::write(fx.root.join("privileged"), vec![1u8; 1 << 20]).unwrap();
            }

            // New limits on a mounted area reach the kernel at once: a soft limit above usage
            // ends the grace state, and only the hard limit is left.
            let raised = DiskSpace { soft_kb: mb(64), hard_kb: mb(64) };
            area.set_limits(&fx.root, raised, inodes, true).unwrap();
            assert_eq!(area.first_level_soft(&fx.root).unwrap(), SoftLimits::Enforced);
            let (ok, stderr) = dd_unprivileged(&fx.root.join("after-raise"), 1);
            assert!(ok, "write below the raised soft limit failed: {stderr}");
            let (ok, stderr) = dd_unprivileged(&fx.root.join("past-hard"), 100);
            assert!(!ok, "write of 100 MB past the 64 MB hard limit succeeded");
            // The image is the hard limit's size, less ext4's metadata: whichever comes first.
            assert!(
                stderr.contains("Disk quota exceeded") || stderr.contains("No space left"),
                "{stderr}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    PrivateArea::umount(&fx.root).unwrap();
    assert!(loop_devices_of(&fx.image()).is_empty());
}

#[test]
fn existing_images_get_project_quota_when_their_inodes_can_hold_it() {
    vz_tests::require!(Need::Root, Need::Loop);
    let fx = Fixture::new("img-convert");
    let space = DiskSpace { soft_kb: mb(8), hard_kb: mb(32) };
    let area = PrivateArea::create(&fx.private, Layout::Image, Some(space), None).unwrap();
    let image = fx.image();
    let image_text = image.to_str().unwrap();
    // An image made before project quota: no quota features, files in place (written through
    // a plain loop mount, so none is in a project yet).
    let tune = Command::new("tune2fs").args(["-O", "^quota,^project", image_text]).output();
    assert!(tune.unwrap().status.success());
    let mount = Command::new("mount").args(["-o", "loop", image_text]).arg(&fx.root).output();
    assert!(mount.unwrap().status.success());
    std::fs::create_dir_all(fx.root.join("etc/deep")).unwrap();
    std::fs::write(fx.root.join("etc/deep/file"), b"old").unwrap();
    std::os::unix::fs::symlink("deep/file", fx.root.join("etc/link")).unwrap();
    std::fs::write(fx.root.join("etc/locked"), b"immutable").unwrap();
    let chattr = Command::new("chattr").arg("+i").arg(fx.root.join("etc/locked")).output();
    assert!(chattr.unwrap().status.success());
    PrivateArea::umount(&fx.root).unwrap();

    area.mount(&fx.root).unwrap();
    if vz_quota::kernel_has_quota() {
        assert_eq!(area.first_level_soft(&fx.root).unwrap(), SoftLimits::Enforced);
        for path in ["", "etc", "etc/deep", "etc/deep/file"] {
            assert_eq!(project_of(&fx.root.join(path)), vz_quota::PROJECT_ID, "{path}");
        }
        std::fs::write(fx.root.join("etc/deep/new"), b"new").unwrap();
        assert_eq!(project_of(&fx.root.join("etc/deep/new")), vz_quota::PROJECT_ID);
        // The kernel refuses a new project id on an immutable file: it stays out, the rest is in.
        assert_eq!(project_of(&fx.root.join("etc/locked")), 0);
    } else {
        assert!(matches!(area.first_level_soft(&fx.root).unwrap(), SoftLimits::Reported { .. }));
    }
    assert_eq!(std::fs::read(fx.root.join("etc/link")).unwrap(), b"old");
    PrivateArea::umount(&fx.root).unwrap();

    // 128-byte inodes have no room for a project id: mounted all the same, and said so.
    let mkfs = Command::new("mkfs.ext4").args(["-q", "-F", "-I", "128", image_text]).output();
    assert!(mkfs.unwrap().status.success());
    area.mount(&fx.root).unwrap();
    match area.first_level_soft(&fx.root).unwrap() {
        SoftLimits::Reported { reason } if vz_quota::kernel_has_quota() => {
            assert!(reason.contains("128-byte inodes"), "{reason}");
        }
        SoftLimits::Reported { reason } => assert!(reason.contains("quota format"), "{reason}"),
        other => panic!("unexpected {other:?}"),
    }
    std::fs::write(fx.root.join("usable"), b"yes").unwrap();
    PrivateArea::umount(&fx.root).unwrap();
    assert!(loop_devices_of(&image).is_empty());
}
