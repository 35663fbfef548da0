//! Kernel tests of the directory layout (simfs) on a host file system with project quota: an
//! ext4 of the test's own (`-O project,quota`, mounted `prjquota` on an auto-clearing loop
//! device). An existing tree joins a project of its own with its usage counted, the limits
//! hold for a writer without CAP_SYS_RESOURCE, and destroy frees the id. Where the kernel
//! has no quota format (this project's build host) the file system is a plain ext4 and the
//! test checks the "reported only" state and its reason instead.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::du_kb;
use vz_quota::{DiskInodes, DiskSpace, Layout, PrivateArea, SoftLimits};
use vz_tests::Need;

/// A test-made ext4 mounted at `<tmp>/fs`; unmounted (and its loop device freed) on drop.
struct QuotaFs {
    fs: PathBuf,
    enforcing: bool,
    _dir: tempfile::TempDir,
}

impl QuotaFs {
    fn new() -> QuotaFs {
        let dir = tempfile::Builder::new()
            .prefix(&vz_tests::unique_name("prjfs"))
            .tempdir()
            .expect("temporary directory");
        let image = dir.path().join("fs.img");
        let fs = dir.path().join("fs");
        std::fs::create_dir(&fs).expect("mkdir");
        let run = |cmd: &mut Command| cmd.output().expect("run a tool");
        let make = |features: &[&str], options: &str| {
            let _ = std::fs::remove_file(&image);
            let size = run(Command::new("truncate").arg("-s").arg("256M").arg(&image));
            assert!(size.status.success());
            let mkfs = run(Command::new("mkfs.ext4")
                .args(["-q", "-F", "-I", "256"])
                .args(features)
                .arg(&image));
            assert!(mkfs.status.success(), "{}", String::from_utf8_lossy(&mkfs.stderr));
            run(Command::new("mount").args(["-t", "ext4", "-o", options]).arg(&image).arg(&fs))
        };
        let quota = make(&["-O", "project,quota", "-E", "quotatype=prjquota"], "loop,prjquota");
        let enforcing = quota.status.success();
        assert!(
            enforcing || !vz_tests::required("quota"),
            "this run requires quota: {}",
            String::from_utf8_lossy(&quota.stderr)
        );
        if !enforcing {
            let plain = make(&[], "loop");
            assert!(plain.status.success(), "{}", String::from_utf8_lossy(&plain.stderr));
        }
        QuotaFs { fs, enforcing, _dir: dir }
    }
}

impl Drop for QuotaFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.fs).status();
    }
}

/// Runs `dd` writing `mb` MiB to `path` without CAP_SYS_RESOURCE (which ignores quota
/// limits); returns (success, stderr).
fn dd_without_cap_sys_resource(path: &Path, mb: u64) -> (bool, String) {
    let out = Command::new("setpriv")
        .args(["--inh-caps=-sys_resource", "--bounding-set=-sys_resource", "dd", "if=/dev/zero"])
        .arg(format!("of={}", path.display()))
        .args(["bs=1M", &format!("count={mb}"), "conv=fsync"])
        .output()
        .expect("run setpriv dd");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn an_existing_tree_joins_a_project_of_its_own_with_its_usage_counted() {
    vz_tests::require!(Need::Root, Need::Loop, Need::Program("/usr/bin/setpriv"));
    let qfs = QuotaFs::new();
    let private = qfs.fs.join("private/101");
    let root = qfs.fs.join("root");
    std::fs::create_dir_all(private.join("etc/sub")).unwrap();
    std::fs::create_dir(&root).unwrap();
    for i in 0..50 {
        std::fs::write(private.join(format!("etc/f{i}")), vec![7u8; 10_000]).unwrap();
    }
    std::os::unix::fs::symlink("etc/f1", private.join("link")).unwrap();
    // An area made before its file system had project quota: no record, no id.
    let area = PrivateArea::open(&private).unwrap();
    assert_eq!(area.layout(), Layout::Simfs);
    let space = DiskSpace { soft_kb: 4096, hard_kb: 4096 };
    let inodes = DiskInodes { soft: 1000, hard: 1000 };
    area.set_limits(&root, space, inodes, false).unwrap();
    area.mount(&root).unwrap();
    let soft = area.first_level_soft(&root).unwrap();
    let stat = area.stat(&root).unwrap();
    if !qfs.enforcing {
        let SoftLimits::Reported { reason } = soft else { panic!("{soft:?}") };
        assert!(reason.contains("has no project quota"), "{reason}");
        assert!(!stat.enforced);
        assert_eq!(stat.inodes.usage, 54, "a walk: 3 directories, 50 files, 1 symlink");
        let (written, _) = dd_without_cap_sys_resource(&root.join("big"), 8);
        assert!(written, "nothing holds the limits");
        PrivateArea::umount(&root).unwrap();
        return;
    }
    assert_eq!(soft, SoftLimits::Enforced);
    assert!(stat.enforced);
    // The kernel's count: directories and files moved into the project, the symlink (which
    // cannot be opened for the ioctl) stays out.
    assert_eq!(stat.inodes.usage, 53, "{stat:?}");
    let du = du_kb(&private);
    assert!(stat.blocks.usage <= du && stat.blocks.usage + 8 >= du, "{stat:?} vs du {du}");
    // Files made later inherit the project; the limit holds for a writer without
    // CAP_SYS_RESOURCE.
    let (written, stderr) = dd_without_cap_sys_resource(&root.join("big"), 8);
    assert!(!written && stderr.contains("Disk quota exceeded"), "{stderr}");
    let stat = area.stat(&root).unwrap();
    assert!(stat.blocks.usage <= 4096, "{stat:?}");
    std::fs::remove_file(root.join("big")).unwrap();
    // Live change: more room, and the same write passes.
    let more = DiskSpace { soft_kb: 20_000, hard_kb: 20_000 };
    area.set_limits(&root, more, inodes, true).unwrap();
    let (written, stderr) = dd_without_cap_sys_resource(&root.join("big"), 8);
    assert!(written, "{stderr}");
    PrivateArea::umount(&root).unwrap();
    area.destroy().unwrap();
    assert!(!private.exists());
    // The id is free again: a new area takes it.
    let again = PrivateArea::create(&qfs.fs.join("private/102"), Layout::Simfs, None, None)
        .expect("create");
    let record = std::fs::read_to_string(qfs.fs.join("private/quota.102")).unwrap();
    assert!(record.contains("PROJECT_ID=\"100000\""), "{record}");
    again.destroy().unwrap();
}
