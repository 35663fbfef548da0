//! Mounts at a VE root: reading `/proc/self/mountinfo`, bind and loop mounts, unmounting a tree.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags};

use crate::error::{QuotaError, Result};
use crate::loopdev;

/// One line of `/proc/self/mountinfo`, the fields vz-quota uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    /// Where it is mounted.
    pub(crate) mount_point: PathBuf,
    /// Filesystem type.
    pub(crate) fstype: String,
    /// Mount source (`/dev/loop3`, …).
    pub(crate) source: String,
    /// Per-superblock options (`rw,usrquota,…`).
    pub(crate) super_options: String,
}

/// Parses mountinfo text.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            Some(MountEntry {
                mount_point: PathBuf::from(unescape_mountinfo(mount_point)),
                fstype: right.next()?.to_owned(),
                source: unescape_mountinfo(right.next()?).to_string_lossy().into_owned(),
                super_options: right.next().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

/// Undoes the kernel's octal escapes of a `/proc/<pid>/mountinfo` field (`\040` for a
/// space, …).
pub fn unescape_mountinfo(field: &str) -> OsString {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    OsString::from_vec(out)
}

/// The mounts of this process's mount namespace.
pub(crate) fn mounts() -> Result<Vec<MountEntry>> {
    let path = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(path).map_err(|e| QuotaError::io("read", path, e))?;
    Ok(parse_mountinfo(&text))
}

/// `root` made absolute and free of symlinks, as mountinfo shows it.
pub(crate) fn canonical(root: &Path) -> Result<PathBuf> {
    root.canonicalize().map_err(|e| QuotaError::io("resolve", root, e))
}

/// The topmost mount exactly at `root`, if any. A `root` that is no mount's root is answered
/// by one statx, without reading the mount table: that read costs ~2.5 µs per mount (5 ms on
/// a host with 2,000 mounts, which 500 running VEs make) and a start or stop asks several
/// times.
pub(crate) fn mount_at(root: &Path) -> Result<Option<MountEntry>> {
    let root = canonical(root)?;
    if is_mount_point(&root)? == Some(false) {
        return Ok(None);
    }
    Ok(mounts()?.into_iter().rev().find(|m| m.mount_point == root))
}

/// Whether something is mounted at `root`: one statx, or the mount table on kernels whose
/// statx does not say.
pub(crate) fn is_mounted_at(root: &Path) -> Result<bool> {
    let root = canonical(root)?;
    match is_mount_point(&root)? {
        Some(mounted) => Ok(mounted),
        None => Ok(mounts()?.iter().any(|m| m.mount_point == root)),
    }
}

/// Whether something is mounted at `path` (it is the root of a mount), or `None` when this
/// kernel does not say (before Linux 5.8). Symlinks are not followed; a FUSE file system
/// mounted there is not asked anything.
///
/// # Errors
/// [`QuotaError::Io`] when `path` cannot be looked up.
pub fn is_mount_point(path: &Path) -> Result<Option<bool>> {
    Ok(stat(path)?.is_root)
}

/// Which mount is at `path`: the mount's id (never reused on Linux 6.8+) and its file
/// system's device, or `None` when nothing is mounted exactly there or this kernel does not
/// say. A cache of something read from the mount table stays true while its mount points
/// keep their identity.
///
/// # Errors
/// [`QuotaError::Io`] when `path` cannot be looked up.
pub fn mount_identity(path: &Path) -> Result<Option<(u64, u64)>> {
    let stat = stat(path)?;
    Ok(match (stat.is_root, stat.mount_id) {
        (Some(true), Some(id)) => Some((id, stat.dev)),
        _ => None,
    })
}

/// The block device of the file system mounted at `root` (`/dev/loop3`), from statx's device
/// number and the name sysfs gives it, without reading the mount table; `None` when this
/// kernel's statx does not identify the mount, nothing is mounted at `root` or its file
/// system has no block device (the caller reads the mount table then).
pub(crate) fn block_device_at(root: &Path) -> Result<Option<PathBuf>> {
    let Some((_, dev)) = mount_identity(&canonical(root)?)? else { return Ok(None) };
    let sysfs = format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev));
    Ok(std::fs::read_link(sysfs)
        .ok()
        .and_then(|link| link.file_name().map(|name| Path::new("/dev").join(name))))
}

fn stat(path: &Path) -> Result<crate::sys::MountStat> {
    crate::sys::mount_stat(path).map_err(|e| QuotaError::io("statx", path, e))
}

/// Bind-mounts `source` at `target`.
pub(crate) fn bind(source: &Path, target: &Path) -> Result<()> {
    nix::mount::mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| QuotaError::errno("bind mount", target, e))?;
    let shielded = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | HOST_SIDE;
    nix::mount::mount(None::<&str>, target, None::<&str>, shielded, None::<&str>)
        .map_err(|e| QuotaError::errno("remount nosuid,nodev", target, e))
}

/// The flags of a private area's mount as the host sees it: a set-uid file or device node
/// a VE's root made is nothing to a host user. (The VE sees its root through its own
/// idmapped copy, where set-uid works for its users.)
const HOST_SIDE: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);

/// Mounts the ext4 on `device` at `target` (`nosuid,nodev` and `flags`) with `options` (may
/// be empty).
pub(crate) fn mount_ext4(
    device: &Path,
    target: &Path,
    flags: MsFlags,
    options: &str,
) -> nix::Result<()> {
    let data = (!options.is_empty()).then_some(options);
    nix::mount::mount(Some(device), target, Some("ext4"), HOST_SIDE | flags, data)
}

/// Unmounts every mount at or below `root`, deepest first, then waits for the loop devices
/// they used, and no other mount uses, to auto-detach. Busy mounts are retried for a few seconds (exiting processes).
pub(crate) fn umount_tree(root: &Path) -> Result<()> {
    let root = canonical(root)?;
    let (mut below, others): (Vec<(usize, MountEntry)>, Vec<_>) =
        mounts()?.into_iter().enumerate().partition(|(_, m)| m.mount_point.starts_with(&root));
    // Deepest path first; among equal depths, the latest mount first.
    below.sort_by_key(|(order, m)| std::cmp::Reverse((m.mount_point.components().count(), *order)));
    let mut attached = Vec::new();
    for (_, m) in &below {
        let device = Path::new(&m.source);
        if let Some(image) = loopdev::backing_file(device) {
            attached.push((device.to_owned(), image));
        }
        umount_retrying(&m.mount_point)?;
        tracing::debug!(mount_point = %m.mount_point.display(), "unmounted");
    }
    // A device still mounted elsewhere stays attached: a directory-layout area bind-mounted
    // from a host file system that happens to live on a loop device (not the VE's own).
    for (device, image) in attached {
        if others.iter().any(|(_, m)| Path::new(&m.source) == device) {
            continue;
        }
        if !loopdev::wait_device_detached(&device, &image, Duration::from_secs(5)) {
            tracing::warn!(image = %image.display(), device = %device.display(),
                "loop device still attached after unmount (held by another mount namespace?)");
        }
    }
    Ok(())
}

fn umount_retrying(target: &Path) -> Result<()> {
    let start = Instant::now();
    loop {
        match nix::mount::umount2(target, MntFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(nix::Error::EBUSY) if start.elapsed() < Duration::from_secs(3) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(QuotaError::errno("umount", target, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 7:3 / /vz/root/101 rw,relatime shared:20 - ext4 /dev/loop3 rw,usrquota,grpquota
41 40 0:5 / /vz/root/101/with\\040space rw - tmpfs none rw,size=10k
";

    #[test]
    fn mountinfo_lines_are_parsed_and_unescaped() {
        let m = parse_mountinfo(SAMPLE);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].mount_point, Path::new("/vz/root/101"));
        assert_eq!(m[1].source, "/dev/loop3");
        assert_eq!(m[1].fstype, "ext4");
        assert!(m[1].super_options.contains("usrquota"));
        assert_eq!(m[2].mount_point, Path::new("/vz/root/101/with space"));
    }

    #[test]
    fn odd_escapes_are_kept() {
        assert_eq!(unescape_mountinfo("a\\9b"), OsString::from("a\\9b"));
        assert_eq!(unescape_mountinfo("end\\"), OsString::from("end\\"));
        assert_eq!(unescape_mountinfo("\\134x"), OsString::from("\\x"));
    }

    #[test]
    fn this_process_sees_its_root_mount() {
        assert!(mounts().unwrap().iter().any(|m| m.mount_point == Path::new("/")));
    }

    /// statx's answer agrees with the mount table: `/` and `/proc` are mount roots, a
    /// directory inside a file system and a symlink to a mount root are not.
    #[test]
    fn statx_tells_mount_points_as_the_mount_table_does() {
        let table = mounts().unwrap();
        let listed = |p: &str| table.iter().any(|m| m.mount_point == Path::new(p));
        let inside = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        for (path, mounted) in
            [("/", true), ("/proc", true), ("/proc/self", false), (inside, false)]
        {
            assert_eq!(listed(path), mounted, "{path} in the mount table");
            assert_eq!(is_mount_point(Path::new(path)).unwrap(), Some(mounted), "{path}");
        }
        assert!(is_mounted_at(Path::new("/proc")).unwrap());
        assert!(!is_mounted_at(Path::new(inside)).unwrap());
        assert!(mount_at(Path::new(inside)).unwrap().is_none());
        assert_eq!(mount_at(Path::new("/proc")).unwrap().unwrap().fstype, "proc");
        assert!(is_mount_point(Path::new("/no/such/dir")).is_err());
    }

    /// The device statx and sysfs name for a mount point is the source the mount table shows;
    /// a file system without a block device has none.
    #[test]
    fn the_block_device_at_a_mount_point_is_its_mount_table_source() {
        assert_eq!(block_device_at(Path::new("/proc")).unwrap(), None);
        let table = mounts().unwrap();
        let topmost =
            |m: &MountEntry| table.iter().rev().find(|t| t.mount_point == m.mount_point) == Some(m);
        for m in table.iter().filter(|m| m.source.starts_with("/dev/") && topmost(m)) {
            use std::os::unix::fs::MetadataExt;
            // A source such as /dev/root may name no node in /dev; a file system such as
            // btrfs shows an anonymous device, which the caller then looks up in the table.
            let Ok(source) = std::fs::metadata(&m.source) else { continue };
            let Some(device) = block_device_at(&m.mount_point).unwrap() else { continue };
            assert_eq!(std::fs::metadata(&device).unwrap().rdev(), source.rdev(), "{m:?}");
        }
    }
}
