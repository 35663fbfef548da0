//! Fixtures shared by the kernel tests: a temporary tree with a private area and a root, whose
//! guard unmounts and removes everything also when the test fails.
#![allow(dead_code, reason = "each test binary uses part of the kit")]
#![allow(
    clippy::print_stderr,
    reason = "cleanup failures are reported, never panicked on, in Drop"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use vz_quota::PrivateArea;

/// A temporary directory holding `private/` (not yet created) and `root/` (created).
pub(crate) struct Fixture {
    pub(crate) private: PathBuf,
    pub(crate) root: PathBuf,
    dir: tempfile::TempDir,
}

impl Fixture {
    pub(crate) fn new(tag: &str) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix(&vz_tests::unique_name(tag))
            .tempdir()
            .expect("temporary directory");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("mkdir root");
        Fixture { private: dir.path().join("private"), root, dir }
    }

    pub(crate) fn image(&self) -> PathBuf {
        self.private.join("root.hdd/root.img")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if PrivateArea::is_mounted(&self.root).unwrap_or(false)
            && let Err(e) = PrivateArea::umount(&self.root)
        {
            eprintln!("cleanup: umount {}: {e}", self.root.display());
        }
        let image = self.image();
        if image.exists() && !loop_devices_of(&image).is_empty() {
            eprintln!("cleanup: loop device still attached to {}", image.display());
        }
    }
}

/// Loop devices whose backing file is `image`, from sysfs.
pub(crate) fn loop_devices_of(image: &Path) -> Vec<String> {
    let Ok(image) = image.canonicalize() else { return Vec::new() };
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/sys/block").expect("/sys/block").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Ok(b) = std::fs::read_to_string(entry.path().join("loop/backing_file"))
            && Path::new(b.trim_end()) == image
        {
            found.push(name);
        }
    }
    found
}

/// Whether `path` appears as a mount point in /proc/self/mountinfo.
pub(crate) fn in_mountinfo(path: &Path) -> bool {
    let path = path.canonicalize().expect("canonical path");
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    text.lines().any(|l| l.split(' ').nth(4).map(Path::new) == Some(path.as_path()))
}

/// `du -skx path` in KB.
pub(crate) fn du_kb(path: &Path) -> u64 {
    let out = Command::new("du").arg("-skx").arg(path).output().expect("run du");
    assert!(out.status.success(), "du failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du output")
}

/// Writes `mb` MiB of zeros to `path` with dd; returns (success, stderr).
pub(crate) fn dd(path: &Path, mb: u64) -> (bool, String) {
    let out = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", path.display()))
        .args(["bs=1M", &format!("count={mb}"), "conv=fsync"])
        .output()
        .expect("run dd");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// (total KB, free KB, total inodes) of the filesystem holding `path`.
pub(crate) fn df(path: &Path) -> (u64, u64, u64) {
    let s = nix::sys::statvfs::statvfs(path).expect("statvfs");
    (
        s.blocks() * s.fragment_size() / 1024,
        s.blocks_available() * s.fragment_size() / 1024,
        s.files(),
    )
}
