//! Kernel tests of the image layout: an ext4 image on a loop device enforces DISKSPACE and
//! DISKINODES, shows them in statvfs, resizes, and leaves no loop device or mount behind.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

mod common;

use std::os::unix::fs::MetadataExt;

use common::{Fixture, dd, df, du_kb, in_mountinfo, loop_devices_of};
use vz_quota::{DiskInodes, DiskSpace, Layout, PrivateArea, QuotaError, SecondLevel, SoftLimits};
use vz_tests::Need;

const CAPSH: &str = "/usr/sbin/capsh";

fn space(mb: u64) -> DiskSpace {
    DiskSpace { soft_kb: mb * 1024, hard_kb: mb * 1024 }
}

fn make(fx: &Fixture, mb: u64, inodes: Option<DiskInodes>) -> PrivateArea {
    PrivateArea::create(&fx.private, Layout::Image, Some(space(mb)), inodes).expect("create image")
}

#[test]
fn writing_past_the_hard_limit_fails_with_enospc_and_the_host_is_untouched() {
    vz_tests::require!(Need::Root, Need::Loop);
    let fx = Fixture::new("img-enospc");
    let area = make(&fx, 64, None);
    assert_eq!(area.layout(), Layout::Image);
    assert_eq!(PrivateArea::open(&fx.private).unwrap().layout(), Layout::Image);
    area.mount(&fx.root).unwrap();
    assert!(PrivateArea::is_mounted(&fx.root).unwrap());

    // statvfs in the VE shows the limit, less ext4's own metadata.
    let (total_kb, _, _) = df(&fx.root);
    // ext4 keeps ~10% of a 64 MB filesystem for the journal and inode tables.
    assert!(total_kb <= 64 * 1024 && total_kb > 54 * 1024, "df total {total_kb} KB");

    let (ok, stderr) = dd(&fx.root.join("big"), 100);
    assert!(!ok, "dd of 100 MB into a 64 MB image succeeded");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    let written = std::fs::metadata(fx.root.join("big")).unwrap().len();
    assert!(written > 50 << 20 && written <= 64 << 20, "wrote {written} bytes");

    // The host's filesystem holds at most the image's size for it: the file stays sparse and capped.
    let image_meta = std::fs::metadata(fx.image()).unwrap();
    assert_eq!(image_meta.len(), 64 << 20, "image file size changed");
    assert!(image_meta.blocks() * 512 <= 64 << 20, "image allocates more than its size");

    // Usage reported within 1% of du.
    let stat = area.stat(&fx.root).unwrap();
    let du = du_kb(&fx.root);
    let diff = stat.blocks.usage.abs_diff(du);
    assert!(diff * 100 <= du, "stat {} KB vs du {du} KB", stat.blocks.usage);
    assert_eq!(stat.blocks.hard, 64 * 1024);
    assert!(stat.enforced);
    assert!(stat.to_string().contains("1k-blocks"), "{stat}");

    // Destroying a mounted area is refused; after umount nothing is left.
    let image = fx.image();
    PrivateArea::umount(&fx.root).unwrap();
    assert!(!PrivateArea::is_mounted(&fx.root).unwrap());
    assert!(!in_mountinfo(&fx.root));
    assert_eq!(loop_devices_of(&image), Vec::<String>::new());
    // Nothing went to the host's directory under the mount point.
    assert_eq!(std::fs::read_dir(&fx.root).unwrap().count(), 0);
    area.destroy().unwrap();
    assert!(!fx.private.exists());
}

#[test]
fn creating_files_past_the_inode_limit_fails() {
    vz_tests::require!(Need::Root, Need::Loop, Need::Program(CAPSH));
    let fx = Fixture::new("img-inodes");
    let area = make(&fx, 64, Some(DiskInodes { soft: 1000, hard: 1000 }));
    area.mount(&fx.root).unwrap();
    let (_, _, total_inodes) = df(&fx.root);
    // ext4 rounds the inode count up to whole block groups (16 inodes per 4K table block).
    assert!((1000..1100).contains(&total_inodes), "inode count {total_inodes}");
    let stat = area.stat(&fx.root).unwrap();
    assert_eq!(stat.inodes.hard, total_inodes);
    let free = total_inodes - stat.inodes.usage;

    let dir = fx.root.join("many");
    std::fs::create_dir(&dir).unwrap();
    if area.first_level_soft(&fx.root).unwrap() == SoftLimits::Enforced {
        // Project quota holds DISKINODES exactly, also below the filesystem's inode count
        // (EDQUOT), for a process without CAP_SYS_RESOURCE (with it, quota is ignored). Above
        // it, the filesystem's own count is met first (ENOSPC), as on the host.
        let lowered = DiskInodes { soft: 500, hard: 500 };
        area.set_limits(&fx.root, space(64), lowered, true).unwrap();
        let stat = area.stat(&fx.root).unwrap();
        assert_eq!(stat.inodes.hard, 500);
        let script =
            format!("cd {} && i=0; while : > $i; do i=$((i+1)); done; echo $i", dir.display());
        let out = std::process::Command::new(CAPSH)
            .args(["--drop=cap_sys_resource", "--", "-c", &script])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("Disk quota exceeded"), "{stderr}");
        let created: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert_eq!(created, 500 - stat.inodes.usage);
        assert_eq!(area.stat(&fx.root).unwrap().inodes.usage, 500);
    } else {
        assert!(!vz_tests::required("quota"), "the kernel lab must enforce project quota");
        let mut created = 0u64;
        let err = loop {
            match std::fs::File::create(dir.join(created.to_string())) {
                Ok(_) => created += 1,
                Err(e) => break e,
            }
            assert!(created <= total_inodes, "created more files than the filesystem has inodes");
        };
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        assert_eq!(created, free - 1, "the directory took one inode");
        let stat = area.stat(&fx.root).unwrap();
        assert_eq!(stat.inodes.usage, total_inodes);
    }
    PrivateArea::umount(&fx.root).unwrap();
    assert!(loop_devices_of(&fx.image()).is_empty());
}

#[test]
fn offline_grow_and_shrink_keep_the_data_and_refuse_a_limit_below_usage() {
    vz_tests::require!(Need::Root, Need::Loop);
    let fx = Fixture::new("img-offline");
    let area = make(&fx, 64, None);
    area.mount(&fx.root).unwrap();
    let data: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(fx.root.join("data"), &data).unwrap();
    PrivateArea::umount(&fx.root).unwrap();
    let inodes = DiskInodes { soft: 1000, hard: 1000 };

    area.set_limits(&fx.root, space(128), inodes, false).unwrap();
    assert_eq!(std::fs::metadata(fx.image()).unwrap().len(), 128 << 20);
    area.mount(&fx.root).unwrap();
    let (total_kb, _, _) = df(&fx.root);
    assert!(total_kb > 112 * 1024 && total_kb <= 128 * 1024, "df total {total_kb} KB");
    assert!(std::fs::read(fx.root.join("data")).unwrap() == data, "data changed by growth");
    PrivateArea::umount(&fx.root).unwrap();

    area.set_limits(&fx.root, space(40), inodes, false).unwrap();
    assert_eq!(std::fs::metadata(fx.image()).unwrap().len(), 40 << 20);
    area.mount(&fx.root).unwrap();
    let (total_kb, _, _) = df(&fx.root);
    assert!(total_kb > 30 * 1024 && total_kb <= 40 * 1024, "df total {total_kb} KB");
    assert!(std::fs::read(fx.root.join("data")).unwrap() == data, "data changed by shrinking");
    assert_eq!(area.limits().unwrap().0, Some(space(40)));

    // Shrinking a mounted image is refused: ext4 shrinks offline only.
    let err = area.set_limits(&fx.root, space(32), inodes, true).unwrap_err();
    assert!(matches!(err, QuotaError::ShrinkNeedsOffline { .. }), "{err}");
    PrivateArea::umount(&fx.root).unwrap();

    // Below usage: refused with the numbers, and nothing changed.
    let err = area.set_limits(&fx.root, space(10), inodes, false).unwrap_err();
    match &err {
        QuotaError::BelowUsage { resource: "1k-blocks", limit, usage } => {
            assert_eq!(*limit, 10 * 1024);
            assert!(*usage >= 20 * 1024, "{err}");
        }
        other => panic!("expected BelowUsage, got {other}"),
    }
    assert!(err.to_string().contains("10240"), "{err}");
    assert_eq!(std::fs::metadata(fx.image()).unwrap().len(), 40 << 20);

    // More inodes than ext4 can give at this size: refused, saying why.
    let err = area
        .set_limits(&fx.root, space(40), DiskInodes { soft: 1, hard: 10_000_000 }, false)
        .unwrap_err();
    assert!(matches!(err, QuotaError::InodesFixed { requested: 10_000_000, .. }), "{err}");
    assert!(loop_devices_of(&fx.image()).is_empty());
}

#[test]
fn online_grow_works_with_cap_sys_resource_and_says_why_without() {
    vz_tests::require!(Need::Root, Need::Loop);
    let fx = Fixture::new("img-online");
    let area = make(&fx, 64, None);
    area.mount(&fx.root).unwrap();
    std::fs::write(fx.root.join("before"), b"kept").unwrap();
    let inodes = DiskInodes { soft: 100, hard: 100 };
    let result = area.set_limits(&fx.root, space(96), inodes, true);
    let (total_kb, _, _) = df(&fx.root);
    if vz_quota::has_cap_sys_resource() {
        result.expect("online grow with CAP_SYS_RESOURCE");
        assert!(total_kb > 82 * 1024 && total_kb <= 96 * 1024, "df total {total_kb} KB");
        assert_eq!(std::fs::metadata(fx.image()).unwrap().len(), 96 << 20);
    } else {
        let err = result.expect_err("online grow without CAP_SYS_RESOURCE");
        assert!(matches!(err, QuotaError::OnlineGrowNeedsCapSysResource { .. }), "{err}");
        assert!(err.to_string().contains("CAP_SYS_RESOURCE"), "{err}");
        // Everything is as before: size, limit record, and a working filesystem.
        assert!(total_kb <= 64 * 1024, "df total {total_kb} KB");
        assert_eq!(std::fs::metadata(fx.image()).unwrap().len(), 64 << 20);
        assert_eq!(area.limits().unwrap().0, Some(space(64)));
    }
    std::fs::write(fx.root.join("after"), b"ok").unwrap();
    assert_eq!(std::fs::read(fx.root.join("before")).unwrap(), b"kept");
    PrivateArea::umount(&fx.root).unwrap();
    assert!(loop_devices_of(&fx.image()).is_empty());
    // The image checks clean after the attempt.
    let fsck = std::process::Command::new("e2fsck").arg("-fn").arg(fx.image()).output().unwrap();
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
}

#[test]
fn bad_requests_are_refused_clearly() {
    vz_tests::require!(Need::Root, Need::Loop);
    let fx = Fixture::new("img-bad");
    let err = PrivateArea::create(&fx.private, Layout::Image, None, None).unwrap_err();
    assert!(matches!(err, QuotaError::DiskSpaceNotSet), "{err}");
    assert!(!fx.private.exists(), "a failed create left the private area");
    let area = make(&fx, 32, None);
    let err = PrivateArea::create(&fx.private, Layout::Image, Some(space(32)), None).unwrap_err();
    assert!(matches!(err, QuotaError::AreaExists { .. }), "{err}");
    area.mount(&fx.root).unwrap();
    let err = area.mount(&fx.root).unwrap_err();
    assert!(matches!(err, QuotaError::AlreadyMounted { .. }), "{err}");
    let err = area.clone().destroy().unwrap_err();
    assert!(matches!(err, QuotaError::AreaBusy { .. }), "{err}");
    PrivateArea::umount(&fx.root).unwrap();
    area.destroy().unwrap();
}

#[test]
fn second_level_is_enforced_where_the_kernel_can_and_accounted_everywhere() {
    vz_tests::require!(Need::Root, Need::Loop);
    let fx = Fixture::new("img-ugid");
    let area = make(&fx, 64, None);
    assert_eq!(area.second_level(&fx.root).unwrap(), SecondLevel::Off);
    area.set_ugid_limit(100).unwrap();
    area.mount(&fx.root).unwrap();
    // The kernel lab (VZ_TEST_REQUIRE=…quota…) has quota formats: there it must be enforced.
    let lab = vz_tests::required("quota");
    match area.second_level(&fx.root).unwrap() {
        SecondLevel::Enforced => {
            assert!(vz_quota::kernel_has_quota());
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            assert!(mountinfo.contains("usrquota"), "{mountinfo}");
        }
        SecondLevel::Unavailable { reason } => {
            assert!(!lab, "second level unavailable in the kernel lab: {reason}");
            assert!(reason.contains("quota"), "{reason}");
            // The area is usable all the same.
            assert!(PrivateArea::is_mounted(&fx.root).unwrap());
        }
        other => panic!("unexpected {other:?}"),
    }
    std::fs::write(fx.root.join("u"), vec![7u8; 256 * 1024]).unwrap();
    nix::unistd::chown(&fx.root.join("u"), Some(4242.into()), Some(4343.into())).unwrap();
    let usage = area.ugid_usage(&fx.root).unwrap();
    assert_eq!(usage.by_uid[&4242].inodes, 1);
    assert_eq!(usage.by_uid[&4242].blocks_kb, 256);
    assert_eq!(usage.by_gid[&4343].blocks_kb, 256);
    PrivateArea::umount(&fx.root).unwrap();
    assert!(loop_devices_of(&fx.image()).is_empty());
}
