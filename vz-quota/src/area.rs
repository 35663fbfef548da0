//! The private area of a VE: making it, finding it again, mounting it at the VE root,
//! unmounting, destroying, and measuring it.
//!
//! On disk:
//! - image layout: `<private>/root.hdd/root.img` (sparse file, ext4) and
//!   `<private>/root.hdd/vzquota.conf` (soft limits, QUOTATIME, QUOTAUGIDLIMIT, grace timers);
//! - directory layout: `<private>` is the VE's tree itself; its record is kept one level up as
//!   `quota.<name>` (where vzquota's `-R` keeps its file), so the VE cannot see or change it.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{QuotaError, Result};
use crate::hostproj;
use crate::image;
use crate::limit::{DiskInodes, DiskSpace, Layout, UNLIMITED};
use crate::loopdev::{self, LoopDevice};
use crate::mount;
use crate::mount_opts::ImageMountOptions;
use crate::project;
use crate::record::Record;
use crate::stat::{Grace, QuotaStat, Usage};
use crate::ugid::{self, SecondLevel, TreeUsage};

const IMAGE_DIR: &str = "root.hdd";
const IMAGE_FILE: &str = "root.img";
const RECORD_FILE: &str = "vzquota.conf";
const UGID_OPTIONS: &str = "usrquota,grpquota";

/// A VE's private area: its files, as a directory or as an ext4 image, plus its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateArea {
    private: PathBuf,
    layout: Layout,
}

impl PrivateArea {
    /// Makes a new private area at `private` (which must not exist, or be an empty directory).
    ///
    /// Directory layout: makes the directory. Image layout: makes a sparse file of DISKSPACE's
    /// hard limit with an ext4 in it, with at least DISKINODES' hard limit inodes (ext4 rounds
    /// up to whole block groups) and no reserved blocks.
    ///
    /// # Errors
    /// [`QuotaError::AreaExists`]; for the image layout [`QuotaError::DiskSpaceNotSet`] without
    /// DISKSPACE, [`QuotaError::UnlimitedImage`], or a failing mkfs.ext4.
    pub fn create(
        private: &Path,
        layout: Layout,
        space: Option<DiskSpace>,
        inodes: Option<DiskInodes>,
    ) -> Result<Self> {
        if layout == Layout::Image {
            let space = space.ok_or(QuotaError::DiskSpaceNotSet)?;
            if space.hard_kb == UNLIMITED {
                return Err(QuotaError::UnlimitedImage);
            }
        }
        let existed = match std::fs::read_dir(private) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(QuotaError::AreaExists { path: private.to_owned() });
                }
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(QuotaError::io("read directory", private, e)),
        };
        std::fs::create_dir_all(private).map_err(|e| QuotaError::io("mkdir", private, e))?;
        let area = PrivateArea { private: private.to_owned(), layout };
        let made = area.make(space, inodes);
        if made.is_err() {
            let cleanup = if existed {
                std::fs::read_dir(private).map(|entries| {
                    for e in entries.flatten() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                })
            } else {
                std::fs::remove_dir_all(private)
            };
            if let Err(e) = cleanup {
                tracing::warn!(private = %private.display(), error = %e, "cleanup after failed create");
            }
            let _ = std::fs::remove_file(area.record_path());
        }
        made.map(|()| area)
    }

    fn make(&self, space: Option<DiskSpace>, inodes: Option<DiskInodes>) -> Result<()> {
        if let (Layout::Image, Some(space)) = (self.layout, space) {
            let dir = self.private.join(IMAGE_DIR);
            std::fs::create_dir(&dir).map_err(|e| QuotaError::io("mkdir", &dir, e))?;
            let inode_count = inodes.map(|i| i.hard).filter(|&n| n != UNLIMITED);
            image::create(
                &self.image_path(),
                space.hard_kb,
                inode_count,
                ugid::kernel_has_quota(),
            )?;
        }
        Record { space, inodes, ..Record::default() }.save(&self.record_path())?;
        // An empty directory joins its project before anything is unpacked into it, so every
        // file of the VE, symlinks and device nodes included, inherits the id.
        self.host_project_setup().map(drop)
    }

    /// Finds the private area at `private` and its layout.
    ///
    /// # Errors
    /// [`QuotaError::NoArea`] when there is no directory there.
    pub fn open(private: &Path) -> Result<Self> {
        let layout = if private.join(IMAGE_DIR).join(IMAGE_FILE).is_file() {
            Layout::Image
        } else if private.is_dir() {
            Layout::Simfs
        } else {
            return Err(QuotaError::NoArea { path: private.to_owned() });
        };
        Ok(PrivateArea { private: private.to_owned(), layout })
    }

    /// The layout of this area.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The private area path.
    pub fn private(&self) -> &Path {
        &self.private
    }

    /// The image file of the image layout.
    pub fn image(&self) -> Option<PathBuf> {
        (self.layout == Layout::Image).then(|| self.image_path())
    }

    pub(crate) fn image_path(&self) -> PathBuf {
        self.private.join(IMAGE_DIR).join(IMAGE_FILE)
    }

    pub(crate) fn record_path(&self) -> PathBuf {
        match self.layout {
            Layout::Image => self.private.join(IMAGE_DIR).join(RECORD_FILE),
            Layout::Simfs => {
                let name = self.private.file_name().map(|n| n.to_string_lossy().into_owned());
                let parent = self.private.parent().unwrap_or(Path::new("/"));
                parent.join(format!("quota.{}", name.unwrap_or_default()))
            }
        }
    }

    pub(crate) fn record(&self) -> Result<Record> {
        Record::load(&self.record_path())
    }

    /// The recorded DISKSPACE and DISKINODES.
    ///
    /// # Errors
    /// When the record cannot be read.
    pub fn limits(&self) -> Result<(Option<DiskSpace>, Option<DiskInodes>)> {
        self.record().map(|r| (r.space, r.inodes))
    }

    /// Sets QUOTATIME, the grace period in seconds; a mounted image with project quota gets it
    /// at once. The same value again changes nothing.
    ///
    /// # Errors
    /// When the record cannot be written, or the kernel refuses the new grace period.
    pub fn set_quota_time(&self, seconds: u64) -> Result<()> {
        let mut record = self.record()?;
        if record.quota_time == seconds {
            return Ok(());
        }
        record.quota_time = seconds;
        record.save(&self.record_path())?;
        self.reapply_project_limits()
    }

    /// Sets QUOTAUGIDLIMIT (0 turns the second level off). Takes effect at the next mount, as
    /// in OpenVZ (switching it on a running VE needs a restart). The same value again changes
    /// nothing.
    ///
    /// # Errors
    /// When the record cannot be written.
    pub fn set_ugid_limit(&self, limit: u64) -> Result<()> {
        let mut record = self.record()?;
        if record.ugid_limit == limit {
            return Ok(());
        }
        record.ugid_limit = limit;
        record.save(&self.record_path())
    }

    /// QUOTAUGIDLIMIT as the area keeps it: the number of distinct uids and gids the second
    /// level is for (0: off).
    ///
    /// # Errors
    /// When the record cannot be read.
    pub fn ugid_limit(&self) -> Result<u64> {
        Ok(self.record()?.ugid_limit)
    }

    /// Mounts the area at `root` (an existing directory): a bind mount of the directory, or
    /// the image on an auto-clearing loop device.
    ///
    /// On a kernel with quota support the image gets what it lacks of ext4's `project` feature
    /// and project quota (if its inodes are over 128 bytes), and of user and group quota (with
    /// QUOTAUGIDLIMIT > 0), and is mounted with `prjquota` (and `usrquota,grpquota`); its tree
    /// is put in project [`crate::PROJECT_ID`] (walked once when the feature is new) and the
    /// project gets DISKSPACE, DISKINODES and QUOTATIME. Where the kernel refuses the quota
    /// options, the image loses its quota features and is mounted without:
    /// [`Self::first_level_soft`] and [`Self::second_level`] say so.
    ///
    /// # Errors
    /// [`QuotaError::AlreadyMounted`], or the failing mount step. A failure to set the project
    /// up after the mount is logged and reported by [`Self::first_level_soft`], not returned.
    ///
    /// # Privileges
    /// CAP_SYS_ADMIN.
    pub fn mount(&self, root: &Path) -> Result<()> {
        self.mount_with(root, &ImageMountOptions::default())
    }

    /// [`Self::mount`] with the image mounted with `extra` options too (`MOUNT_OPTS`; the
    /// directory layout has no mount of its own and ignores them).
    ///
    /// # Errors
    /// As [`Self::mount`].
    ///
    /// # Privileges
    /// CAP_SYS_ADMIN.
    pub fn mount_with(&self, root: &Path, extra: &ImageMountOptions) -> Result<()> {
        if mount::is_mounted_at(root)? {
            return Err(QuotaError::AlreadyMounted { root: root.to_owned() });
        }
        if self.layout == Layout::Simfs {
            if let Err(e) = self.host_project_setup() {
                tracing::warn!(private = %self.private.display(), error = %e,
                    "host project quota not set up: limits are reported only");
            }
            return mount::bind(&self.private, root);
        }
        let image = self.image_path();
        let record = self.record()?;
        let info = image::info(&image)?;
        let kernel_quota = ugid::kernel_has_quota();
        let want_ugid = kernel_quota && record.ugid_limit > 0;
        let want_project = kernel_quota && project::fits(&info);
        if kernel_quota && !want_project {
            tracing::info!(image = %image.display(), inode_size = info.inode_size,
                "inodes too small for a project id: soft limits are reported, not enforced");
        }
        let tune = image::quota_tune_args(&info, want_ugid, want_project);
        if !tune.is_empty() {
            image::tune(&image, &tune)?;
        }
        let options = with_extra(mount_options(want_ugid, want_project), extra);
        let device = LoopDevice::attach(&image)?;
        match mount::mount_ext4(device.path(), root, extra.flags, &options) {
            Ok(()) => {
                if want_project {
                    let adopt = !info.project_feature;
                    if let Err(e) = project::setup(root, device.path(), &record, adopt) {
                        tracing::warn!(image = %image.display(), error = %e,
                            "project quota not set up: soft limits are reported only");
                    }
                }
                Ok(())
            }
            Err(e) if !options.is_empty() || info.quota_feature || info.project_feature => {
                // The kernel lacks a quota format after all: mount without quota.
                tracing::warn!(image = %image.display(), error = %e,
                    "mount with quota failed; mounting without quota");
                drop(device);
                loopdev::wait_detached(&image, std::time::Duration::from_secs(5))?;
                image::clear_quota_features(&image)?;
                let device = LoopDevice::attach(&image)?;
                mount::mount_ext4(
                    device.path(),
                    root,
                    extra.flags,
                    &with_extra(String::new(), extra),
                )
                .map_err(|e| QuotaError::errno("mount ext4", root, e))
            }
            Err(e) => Err(QuotaError::errno("mount ext4", root, e)),
        }
    }

    /// Whether something is mounted at `root`.
    ///
    /// # Errors
    /// When `root` or the mount table cannot be read.
    pub fn is_mounted(root: &Path) -> Result<bool> {
        mount::is_mounted_at(root)
    }

    /// Unmounts everything at and below `root`, deepest first; loop devices detach by
    /// themselves (this waits up to 5 s for that).
    ///
    /// # Errors
    /// When a mount stays busy.
    pub fn umount(root: &Path) -> Result<()> {
        mount::umount_tree(root)
    }

    /// Removes the area: the directory tree, or the image and its directory, and the record.
    ///
    /// # Errors
    /// [`QuotaError::AreaBusy`] while the image is attached to a loop device (mounted).
    pub fn destroy(self) -> Result<()> {
        if self.layout == Layout::Image {
            let devices = loopdev::devices_backed_by(&self.image_path())?;
            if !devices.is_empty() {
                let what = format!("attached to {devices:?}; unmount it first");
                return Err(QuotaError::AreaBusy { path: self.private, what });
            }
        }
        let record = self.record_path();
        let project = match self.layout {
            Layout::Simfs => self.record().ok().and_then(|r| r.project),
            Layout::Image => None,
        };
        std::fs::remove_dir_all(&self.private)
            .map_err(|e| QuotaError::io("remove private area", &self.private, e))?;
        if let (Some(id), Some(parent)) = (project, self.private.parent()) {
            hostproj::release(parent, id);
        }
        match std::fs::remove_file(&record) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(QuotaError::io("remove quota record", record, e))
            }
            _ => Ok(()),
        }
    }

    /// The state of the second-level quota for this area mounted at `root`.
    ///
    /// # Errors
    /// When the record or the mount table cannot be read.
    pub fn second_level(&self, root: &Path) -> Result<SecondLevel> {
        if self.record()?.ugid_limit == 0 {
            return Ok(SecondLevel::Off);
        }
        let reason = match (self.layout, self.mount_of_image(root)?) {
            (Layout::Simfs, _) => "the directory layout (simfs) has no per-VE file system to \
                hold uid/gid quota (the host file system's user and group quota would mix the \
                VE's ids with the host's and other VEs'); usage is accounted only"
                .to_owned(),
            (Layout::Image, Some(m)) if m.super_options.split(',').any(|o| o == "usrquota") => {
                return Ok(SecondLevel::Enforced);
            }
            (Layout::Image, _) if !ugid::kernel_has_quota() => "this kernel has no ext4 quota \
                format (CONFIG_QUOTA with QFMT_V2, module quota_v2); usage per uid/gid is \
                accounted only"
                .to_owned(),
            (Layout::Image, Some(_)) => "the kernel refused to mount the image with user and \
                group quota; usage per uid/gid is accounted only"
                .to_owned(),
            (Layout::Image, None) => "the area is not mounted".to_owned(),
        };
        Ok(SecondLevel::Unavailable { reason })
    }

    /// The block device this area's image is mounted from at `root` (e.g. `/dev/loop3`, the
    /// name /proc/mounts shows); `None` for the directory layout or when not mounted there.
    ///
    /// # Errors
    /// When the mount table cannot be read.
    pub fn mounted_device(&self, root: &Path) -> Result<Option<PathBuf>> {
        if self.layout != Layout::Image || !root.exists() {
            return Ok(None);
        }
        let Some(device) = mount::block_device_at(root)? else {
            return Ok(self.mount_of_image(root)?.map(|m| PathBuf::from(m.source)));
        };
        let image = self.image_path().canonicalize().ok();
        Ok((image.is_some() && loopdev::backing_file(&device) == image).then_some(device))
    }

    /// The mount of this area's image at `root`, if that is what is mounted there.
    pub(crate) fn mount_of_image(&self, root: &Path) -> Result<Option<mount::MountEntry>> {
        if self.layout != Layout::Image || !root.exists() {
            return Ok(None);
        }
        let image = self.image_path().canonicalize().ok();
        Ok(mount::mount_at(root)?
            .filter(|m| image.is_some() && loopdev::backing_file(Path::new(&m.source)) == image))
    }

    /// Usage per uid and gid, by accounting: a walk of the mounted root (image), or of the
    /// private directory (directory layout).
    ///
    /// # Errors
    /// [`QuotaError::NotMounted`] for an image not mounted at `root`; I/O errors of the walk.
    pub fn ugid_usage(&self, root: &Path) -> Result<TreeUsage> {
        match self.layout {
            Layout::Simfs => ugid::walk(&self.private),
            Layout::Image => match self.mount_of_image(root)? {
                Some(_) => ugid::walk(root),
                None => Err(QuotaError::NotMounted { root: root.to_owned() }),
            },
        }
    }

    /// Usage against the limits: from the kernel's project quota where it enforces the soft
    /// limits (usage and grace deadlines as the kernel keeps them), else from statvfs of the
    /// mounted image (or its superblock when not mounted), or from a walk of the directory.
    /// Starts and clears the record's grace timers as usage crosses the soft limits.
    ///
    /// # Errors
    /// I/O errors, a failing dumpe2fs.
    pub fn stat(&self, root: &Path) -> Result<QuotaStat> {
        let mut record = self.record()?;
        let space = record.space.unwrap_or(DiskSpace { soft_kb: 0, hard_kb: 0 });
        let inodes = record.inodes.unwrap_or(DiskInodes { soft: 0, hard: 0 });
        let (used_kb, used_inodes, space, inodes) = match self.layout {
            Layout::Simfs => match self.host_project_usage()? {
                Some(q) => (q.space_bytes.div_ceil(1024), q.inodes, space, inodes),
                None => {
                    let usage = ugid::walk(&self.private)?;
                    (usage.blocks_kb, usage.inodes, space, inodes)
                }
            },
            Layout::Image => {
                let (used_kb, used_inodes, size_kb, inode_count) = self.image_usage(root)?;
                let hard_kb = record.space.map_or(size_kb, |s| s.hard_kb);
                let soft_kb = record.space.map_or(size_kb, |s| s.soft_kb.min(hard_kb));
                let soft = record.inodes.map_or(inode_count, |i| i.soft.min(inode_count));
                let space = DiskSpace { soft_kb, hard_kb };
                (used_kb, used_inodes, space, DiskInodes { soft, hard: inode_count })
            }
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let over = |usage: u64, soft: u64| soft != 0 && usage > soft;
        let blocks_since =
            over(used_kb, space.soft_kb).then(|| record.blocks_over_since.unwrap_or(now));
        let inodes_since =
            over(used_inodes, inodes.soft).then(|| record.inodes_over_since.unwrap_or(now));
        if (blocks_since, inodes_since) != (record.blocks_over_since, record.inodes_over_since) {
            record.blocks_over_since = blocks_since;
            record.inodes_over_since = inodes_since;
            record.save(&self.record_path())?;
        }
        let qt = record.quota_time;
        let kernel = match self.layout {
            Layout::Image => self.kernel_usage(root)?,
            Layout::Simfs => self.host_project_usage()?,
        };
        let (blocks_grace, inodes_grace) = match kernel {
            Some(q) => {
                (project::grace(q.blocks_grace_end, now), project::grace(q.inodes_grace_end, now))
            }
            None => (Grace::at(blocks_since, qt, now), Grace::at(inodes_since, qt, now)),
        };
        Ok(QuotaStat {
            blocks: Usage::new(used_kb, space.soft_kb, space.hard_kb, blocks_grace),
            inodes: Usage::new(used_inodes, inodes.soft, inodes.hard, inodes_grace),
            quota_time: qt,
            enforced: self.layout == Layout::Image || kernel.is_some(),
        })
    }

    /// (used KB, used inodes, size KB, inode limit) of the image: the project's usage and
    /// inode limit where the kernel enforces project quota, else statvfs when mounted at
    /// `root`, the superblock otherwise.
    pub(crate) fn image_usage(&self, root: &Path) -> Result<(u64, u64, u64, u64)> {
        if self.mount_of_image(root)?.is_some() {
            if let Some(q) = self.kernel_usage(root)? {
                let info = image::info(&self.image_path())?;
                let used_kb = q.space_bytes.div_ceil(1024);
                // The project's inode limit is exact; the filesystem rounds up to whole groups.
                let inodes = match q.inodes_hard {
                    0 => info.inode_count,
                    limit => limit.min(info.inode_count),
                };
                return Ok((used_kb, q.inodes, info.size_kb(), inodes));
            }
            let s = nix::sys::statvfs::statvfs(root)
                .map_err(|e| QuotaError::errno("statvfs", root, e))?;
            let frsize = s.fragment_size();
            let used_kb = (s.blocks() - s.blocks_free()) * frsize / 1024;
            let info = image::info(&self.image_path())?;
            return Ok((used_kb, s.files() - s.files_free(), info.size_kb(), s.files()));
        }
        let info = image::info(&self.image_path())?;
        let used_kb = (info.block_count - info.free_blocks) * info.block_size / 1024;
        // Offline, the superblock counts metadata (journal, tables) as used: subtract the
        // overhead of an empty filesystem of the same geometry is not known here, so report
        // the superblock's view.
        Ok((used_kb, info.inode_count - info.free_inodes, info.size_kb(), info.inode_count))
    }
}

/// ext4 mount options for the wanted quota: user and group (second level), project (first).
fn mount_options(ugid: bool, project: bool) -> String {
    let wanted = [(ugid, UGID_OPTIONS), (project, project::MOUNT_OPTION)];
    wanted.iter().filter(|(on, _)| *on).map(|(_, o)| *o).collect::<Vec<_>>().join(",")
}

/// Quota `options` and the `extra` ext4 options, comma-separated.
fn with_extra(options: String, extra: &ImageMountOptions) -> String {
    let all = std::iter::once(options).chain(extra.data.iter().cloned()).filter(|o| !o.is_empty());
    all.collect::<Vec<_>>().join(",")
}

/// Whether this process has CAP_SYS_RESOURCE (needed to grow a mounted ext4).
pub fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    procfs::process::Process::myself()
        .and_then(|me| me.status())
        .is_ok_and(|status| status.capeff & (1 << CAP_SYS_RESOURCE) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_name_each_wanted_quota() {
        assert_eq!(mount_options(false, false), "");
        assert_eq!(mount_options(true, false), "usrquota,grpquota");
        assert_eq!(mount_options(false, true), "prjquota");
        assert_eq!(mount_options(true, true), "usrquota,grpquota,prjquota");
    }
}
