//! First-level soft limits and grace enforced by the kernel: ext4 project quota on the VE's
//! image. Every inode of the image belongs to project [`PROJECT_ID`] (directories carry
//! PROJINHERIT, so new files join it); the project's limits are DISKSPACE and DISKINODES and its
//! grace periods QUOTATIME, set with quotactl on the image's loop device.

use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::area::PrivateArea;
use crate::error::{QuotaError, Result};
use crate::image::{self, FsInfo};
use crate::limit::{Layout, UNLIMITED};
use crate::loopdev;
use crate::mount;
use crate::record::Record;
use crate::stat::Grace;
use crate::sys::{self, IdQuota};
use crate::ugid;

/// The ext4 project id that holds every file of a VE's image (each VE has its own
/// filesystem, so one fixed id serves all of them).
pub const PROJECT_ID: u32 = 1;

/// The mount option that makes ext4 enforce project quota limits.
pub(crate) const MOUNT_OPTION: &str = "prjquota";

/// Whether the first level's soft limits and grace (DISKSPACE and DISKINODES barriers,
/// QUOTATIME) are enforced by the kernel, or only reported by [`crate::PrivateArea::stat`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SoftLimits {
    /// The image is mounted with project quota, its tree is in project [`PROJECT_ID`], and the
    /// kernel holds the project's limits: past the soft limit writes succeed for QUOTATIME
    /// seconds, then fail with EDQUOT.
    Enforced,
    /// Reported with grace timers, not enforced; the hard limits may still be (image layout).
    Reported {
        /// Why the kernel does not enforce them.
        reason: String,
    },
}

impl PrivateArea {
    /// Whether the first level's soft limits and grace are enforced by the kernel for this
    /// area mounted at `root`, or only reported by [`Self::stat`], and why.
    ///
    /// # Errors
    /// When the record, the mount table, the image's superblock or the root cannot be read.
    ///
    /// # Privileges
    /// CAP_SYS_ADMIN to read the project's limits (quotactl).
    pub fn first_level_soft(&self, root: &Path) -> Result<SoftLimits> {
        let reported = |reason: String| Ok(SoftLimits::Reported { reason });
        if self.layout() == Layout::Simfs {
            return self.host_project_soft();
        }
        if !ugid::kernel_has_quota() {
            return reported(
                "this kernel has no quota format (CONFIG_QUOTA with QFMT_V2, module quota_v2); \
                 the hard limits hold (the image's size and inode count), soft limits and \
                 QUOTATIME are reported only"
                    .to_owned(),
            );
        }
        let Some(m) = self.mount_of_image(root)? else {
            return reported("the area is not mounted".to_owned());
        };
        let info = image::info(&self.image_path())?;
        if !fits(&info) {
            return reported(format!(
                "the image has {}-byte inodes, which have no room for a project id (tune2fs \
                 cannot enlarge them on a flex_bg filesystem); soft limits are reported only \
                 until the image is recreated",
                info.inode_size
            ));
        }
        if !m.super_options.split(',').any(|o| o == MOUNT_OPTION) {
            return reported(
                "the kernel refused to mount the image with project quota (prjquota)".to_owned(),
            );
        }
        if !root_in_project(root)? {
            return reported(format!(
                "the VE's root is not in project {PROJECT_ID} (setting it up failed at mount; \
                 see the log)"
            ));
        }
        let device = Path::new(&m.source);
        let have = sys::project_quota(device, PROJECT_ID)
            .map_err(|e| QuotaError::io("read project quota", device, e))?;
        if !same_limits(&have, &wanted(&self.record()?)) {
            return reported(format!(
                "the kernel's limits of project {PROJECT_ID} are not DISKSPACE and DISKINODES \
                 (setting them failed; see the log)"
            ));
        }
        Ok(SoftLimits::Enforced)
    }

    /// The project's usage and grace state from the kernel, when it enforces the soft limits
    /// on this area mounted at `root`. There, statvfs shows the project's limits and usage
    /// (ext4 does so for a directory with PROJINHERIT), not the filesystem's.
    pub(crate) fn kernel_usage(&self, root: &Path) -> Result<Option<IdQuota>> {
        let Some(m) = self.mount_of_image(root)? else { return Ok(None) };
        if !m.super_options.split(',').any(|o| o == MOUNT_OPTION) || !root_in_project(root)? {
            return Ok(None);
        }
        let device = Path::new(&m.source);
        sys::project_quota(device, PROJECT_ID)
            .map(Some)
            .map_err(|e| QuotaError::io("read project quota", device, e))
    }

    /// Sets the recorded limits and QUOTATIME on the project wherever the image is mounted
    /// with project quota (a running or mounted VE), or on the directory layout's project of
    /// the host file system; nothing otherwise.
    pub(crate) fn reapply_project_limits(&self) -> Result<()> {
        let Some(image) = self.image() else { return self.reapply_host_project() };
        let devices = loopdev::devices_backed_by(&image)?;
        if devices.is_empty() {
            return Ok(());
        }
        let record = self.record()?;
        let mut done: Vec<String> = Vec::new();
        for m in mount::mounts()? {
            let ours = devices.iter().any(|d| Path::new(&m.source) == d);
            let enforcing = m.super_options.split(',').any(|o| o == MOUNT_OPTION);
            if ours && enforcing && !done.contains(&m.source) {
                apply(Path::new(&m.source), &record)?;
                done.push(m.source);
            }
        }
        Ok(())
    }
}

/// The grace state of a kernel grace deadline (`dqb_btime`/`dqb_itime`, 0 = not over) at `now`.
pub(crate) fn grace(deadline: u64, now: u64) -> Grace {
    match deadline {
        0 => Grace::NotOver,
        d if now < d => Grace::Remaining { seconds: d - now, deadline: d },
        d => Grace::Expired { deadline: d },
    }
}

/// Whether `info`'s inodes have room for a project id (the extra space past 128 bytes).
pub(crate) fn fits(info: &FsInfo) -> bool {
    info.inode_size > 128
}

/// The project limits a record asks for, in 1K blocks and inodes (0 = none): soft limits are
/// the barriers, hard limits the limits, as vzquota's `-b/-B/-i/-I`.
pub(crate) fn wanted(record: &Record) -> IdQuota {
    let finite = |n: u64| if n == UNLIMITED { 0 } else { n };
    let (blocks_soft, blocks_hard) =
        record.space.map_or((0, 0), |s| (finite(s.soft_kb.min(s.hard_kb)), finite(s.hard_kb)));
    let (inodes_soft, inodes_hard) =
        record.inodes.map_or((0, 0), |i| (finite(i.soft.min(i.hard)), finite(i.hard)));
    IdQuota { blocks_soft, blocks_hard, inodes_soft, inodes_hard, ..IdQuota::default() }
}

/// Whether the kernel holds the limits `want` asks for.
pub(crate) fn same_limits(have: &IdQuota, want: &IdQuota) -> bool {
    (have.blocks_soft, have.blocks_hard, have.inodes_soft, have.inodes_hard)
        == (want.blocks_soft, want.blocks_hard, want.inodes_soft, want.inodes_hard)
}

/// Sets the record's limits and grace periods on the project of the filesystem on `device`.
pub(crate) fn apply(device: &Path, record: &Record) -> Result<()> {
    let limits = wanted(record);
    tracing::debug!(device = %device.display(), ?limits, grace = record.quota_time, "project quota");
    sys::set_limits(device, sys::PRJQUOTA, PROJECT_ID, &limits)
        .map_err(|e| QuotaError::io("set project quota limits", device, e))?;
    // The kernel keeps grace periods in 32 bits (quota format v2).
    let grace = record.quota_time.min(u64::from(u32::MAX));
    sys::set_project_grace(device, grace, grace)
        .map_err(|e| QuotaError::io("set project quota grace", device, e))
}

/// Makes the filesystem just mounted at `root` from `device` enforce the record: puts the
/// tree in the project (walking it when `adopt`, or when the root is not in it yet), then
/// sets the limits.
pub(crate) fn setup(root: &Path, device: &Path, record: &Record, adopt: bool) -> Result<()> {
    if adopt || !root_in_project(root)? {
        let skipped = adopt_tree(root, PROJECT_ID)?;
        if skipped > 0 {
            tracing::info!(root = %root.display(), skipped,
                "symlinks and special files already present stay outside the project");
        }
    }
    apply(device, record)
}

/// Whether the directory `root` is in the project and passes it on to new files.
pub(crate) fn root_in_project(root: &Path) -> Result<bool> {
    let dir = File::open(root).map_err(|e| QuotaError::io("open", root, e))?;
    let (projid, inherit) =
        sys::project_of(&dir).map_err(|e| QuotaError::io("read project id", root, e))?;
    Ok(projid == PROJECT_ID && inherit)
}

/// Puts every directory and regular file under `root` (same filesystem) in project `id`,
/// directories with PROJINHERIT. Returns how many other inodes were left out: symlinks,
/// devices, FIFOs and sockets cannot be opened for the ioctl, and the kernel refuses it on
/// immutable or append-only files; only ones made before the project existed are concerned,
/// later ones inherit it at creation. Only a failure on `root` itself is an error.
///
/// The walk opens every entry relative to its parent's descriptor with `O_NOFOLLOW`, never
/// by path: the tree may be a running VE's, whose root can swap a directory for a symlink to
/// a host path between the listing and the open. Open descriptors are bounded by the depth.
pub(crate) fn adopt_tree(root: &Path, id: u32) -> Result<u64> {
    let top = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(root)
        .map_err(|e| QuotaError::io("open", root, e))?;
    let dev = top.metadata().map_err(|e| QuotaError::io("stat", root, e))?.dev();
    sys::set_project(&top, id, true).map_err(|e| QuotaError::io("set project id", root, e))?;
    let mut skipped = 0;
    let mut stack = vec![Frame::list(top, root.to_owned())?];
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.names.pop() else {
            stack.pop();
            continue;
        };
        let path = frame.path.join(std::ffi::OsStr::from_bytes(name.as_bytes()));
        let child = match open_entry(&frame.dir, &name) {
            Ok(child) => child,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "left out of the project");
                skipped += 1;
                continue;
            }
        };
        let Ok(meta) = child.metadata() else {
            skipped += 1;
            continue;
        };
        if meta.dev() != dev {
            continue;
        }
        let kind = meta.file_type();
        if !kind.is_dir() && !kind.is_file() {
            skipped += 1;
            continue;
        }
        if let Err(e) = sys::set_project(&child, id, kind.is_dir()) {
            tracing::debug!(path = %path.display(), error = %e, "left out of the project");
            skipped += 1;
            continue;
        }
        if kind.is_dir() {
            stack.push(Frame::list(child, path)?);
        }
    }
    Ok(skipped)
}

/// A directory of [`adopt_tree`]'s walk: its descriptor and the names still to visit.
struct Frame {
    dir: File,
    path: PathBuf,
    names: Vec<std::ffi::CString>,
}

impl Frame {
    /// Lists the directory open as `dir` (entries that are neither directories nor regular
    /// files by their type are not listed: a device node is never opened).
    fn list(dir: File, path: PathBuf) -> Result<Frame> {
        let listing = nix::dir::Dir::from_fd(
            dir.try_clone().map_err(|e| QuotaError::io("read directory", &path, e))?.into(),
        )
        .map_err(|e| QuotaError::errno("read directory", &path, e))?;
        let mut names = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|e| QuotaError::errno("read directory", &path, e))?;
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            use nix::dir::Type;
            if matches!(entry.file_type(), Some(Type::Directory | Type::File) | None) {
                names.push(name.to_owned());
            }
        }
        Ok(Frame { dir, path, names })
    }
}

/// Opens the entry `name` of `dir` without following a symlink (`O_NONBLOCK`: a FIFO
/// swapped in does not block; `O_NOCTTY`).
fn open_entry(dir: &File, name: &std::ffi::CStr) -> std::io::Result<File> {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    nix::fcntl::openat(dir, name, flags, nix::sys::stat::Mode::empty())
        .map(File::from)
        .map_err(std::io::Error::from)
}

/// Puts the directory or regular file at `path` in project `id` (`directory`: with
/// PROJINHERIT).
pub(crate) fn set(path: &Path, id: u32, directory: bool) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| QuotaError::io("open", path, e))?;
    sys::set_project(&file, id, directory).map_err(|e| QuotaError::io("set project id", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::{DiskInodes, DiskSpace};

    #[test]
    fn limits_follow_diskspace_diskinodes_and_unlimited_is_none() {
        let record = Record {
            space: Some(DiskSpace { soft_kb: 8192, hard_kb: 65536 }),
            inodes: Some(DiskInodes { soft: 900, hard: UNLIMITED }),
            ..Record::default()
        };
        let want = wanted(&record);
        assert_eq!((want.blocks_soft, want.blocks_hard), (8192, 65536));
        assert_eq!((want.inodes_soft, want.inodes_hard), (900, 0));
        // A barrier above the limit is capped, as `vzquota stat` shows it.
        let record =
            Record { space: Some(DiskSpace { soft_kb: 100, hard_kb: 50 }), ..Record::default() };
        assert_eq!((wanted(&record).blocks_soft, wanted(&record).blocks_hard), (50, 50));
        assert_eq!(wanted(&Record::default()), IdQuota::default());
    }

    #[test]
    fn usage_does_not_count_when_comparing_limits() {
        let want = IdQuota { blocks_soft: 1, blocks_hard: 2, ..IdQuota::default() };
        let have = IdQuota { space_bytes: 4096, inodes: 3, ..want };
        assert!(same_limits(&have, &want));
        assert!(!same_limits(&IdQuota::default(), &want));
    }

    #[test]
    fn kernel_deadlines_give_the_grace_state() {
        assert_eq!(grace(0, 100), Grace::NotOver);
        assert_eq!(grace(160, 100), Grace::Remaining { seconds: 60, deadline: 160 });
        assert_eq!(grace(100, 100), Grace::Expired { deadline: 100 });
    }

    #[test]
    fn only_inodes_past_128_bytes_hold_a_project_id() {
        assert!(!fits(&FsInfo { inode_size: 128, ..FsInfo::default() }));
        assert!(fits(&FsInfo { inode_size: 256, ..FsInfo::default() }));
    }
}
