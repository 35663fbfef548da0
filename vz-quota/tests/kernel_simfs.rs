//! Kernel tests of the directory layout (simfs) on a file system without project quota: a
//! bind-mounted directory whose usage is accounted by a walk and whose limits are recorded
//! and reported, not enforced (`kernel_simfs_project.rs` has the file system that enforces).
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

mod common;

use common::{Fixture, du_kb, in_mountinfo};
use vz_quota::{DiskInodes, DiskSpace, Grace, Layout, PrivateArea, QuotaError, SecondLevel};
use vz_tests::Need;

#[test]
fn a_directory_area_is_bind_mounted_and_accounted_within_one_percent_of_du() {
    vz_tests::require!(Need::Root);
    let fx = Fixture::new("simfs");
    let space = DiskSpace { soft_kb: 1024, hard_kb: 100_000 };
    let inodes = DiskInodes { soft: 50, hard: 1000 };
    let area = PrivateArea::create(&fx.private, Layout::Simfs, Some(space), Some(inodes)).unwrap();
    assert_eq!(PrivateArea::open(&fx.private).unwrap().layout(), Layout::Simfs);
    area.mount(&fx.root).unwrap();
    assert!(in_mountinfo(&fx.root));
    let err = area.mount(&fx.root).unwrap_err();
    assert!(matches!(err, QuotaError::AlreadyMounted { .. }), "{err}");

    // Files written through the root land in the private area.
    for i in 0..100 {
        std::fs::write(fx.root.join(format!("f{i}")), vec![1u8; 1000 * (i + 1)]).unwrap();
    }
    std::fs::hard_link(fx.root.join("f99"), fx.root.join("link")).unwrap();
    nix::unistd::chown(&fx.root.join("f99"), Some(777.into()), None).unwrap();
    assert!(fx.private.join("f50").is_file());

    let stat = area.stat(&fx.root).unwrap();
    let du = du_kb(&fx.private);
    assert!(stat.blocks.usage.abs_diff(du) * 100 <= du, "stat {} vs du {du}", stat.blocks.usage);
    assert_eq!(stat.inodes.usage, 101, "100 files and the top directory, the link counted once");
    assert!(!stat.enforced);
    assert_eq!((stat.blocks.soft, stat.blocks.hard), (1024, 100_000));
    // Over both soft limits: marked, grace timers started with the default QUOTATIME.
    assert!(matches!(stat.blocks.grace, Grace::Remaining { seconds, .. } if seconds > 259_000));
    assert!(matches!(stat.inodes.grace, Grace::Remaining { .. }));
    let text = stat.to_string();
    assert!(text.lines().nth(1).unwrap().contains('*') && text.contains("3days"), "{text}");

    // A lower grace period shows in the next stat; the timer keeps its start.
    area.set_quota_time(0).unwrap();
    let stat = area.stat(&fx.root).unwrap();
    assert!(matches!(stat.blocks.grace, Grace::Expired { .. }), "{stat:?}");

    // Limits are recorded only.
    let bigger = DiskSpace { soft_kb: 200_000, hard_kb: 300_000 };
    area.set_limits(&fx.root, bigger, inodes, true).unwrap();
    let stat = area.stat(&fx.root).unwrap();
    assert_eq!(stat.blocks.hard, 300_000);
    assert_eq!(stat.blocks.grace, Grace::NotOver);

    // Per-uid accounting, and the second level says it is accounting only.
    area.set_ugid_limit(10).unwrap();
    let usage = area.ugid_usage(&fx.root).unwrap();
    assert_eq!(usage.by_uid[&777].inodes, 1);
    assert!(matches!(area.second_level(&fx.root).unwrap(), SecondLevel::Unavailable { .. }));

    PrivateArea::umount(&fx.root).unwrap();
    assert!(!in_mountinfo(&fx.root));
    assert_eq!(std::fs::read_dir(&fx.root).unwrap().count(), 0, "files left under the mount point");
    let record = fx.private.parent().unwrap().join("quota.private");
    assert!(record.is_file());
    area.destroy().unwrap();
    assert!(!fx.private.exists() && !record.exists());
}

#[test]
fn creating_over_a_non_empty_directory_is_refused() {
    vz_tests::require!(Need::Root);
    let fx = Fixture::new("simfs-exists");
    std::fs::create_dir(&fx.private).unwrap();
    std::fs::write(fx.private.join("x"), b"x").unwrap();
    let err = PrivateArea::create(&fx.private, Layout::Simfs, None, None).unwrap_err();
    assert!(matches!(err, QuotaError::AreaExists { .. }), "{err}");
    assert!(fx.private.join("x").is_file(), "create touched an existing area");
    let err = PrivateArea::open(&fx.root.join("nothing")).unwrap_err();
    assert!(matches!(err, QuotaError::NoArea { .. }), "{err}");
}
