//! Changing the limits of an area: online growth of a mounted image, offline growth and
//! shrinking of an unmounted one, and the checks that keep a limit above current usage.

use std::fs::OpenOptions;
use std::path::Path;

use crate::area::{PrivateArea, has_cap_sys_resource};
use crate::error::{QuotaError, Result};
use crate::image::{self, BLOCK_SIZE};
use crate::limit::{DiskInodes, DiskSpace, Layout, UNLIMITED};
use crate::loopdev;

impl PrivateArea {
    /// Sets DISKSPACE and DISKINODES.
    ///
    /// Image layout: the image takes the new hard size. A mounted image (`running`, or mounted
    /// at `root`) grows online: file, loop device, then `resize2fs` on the mounted filesystem;
    /// without CAP_SYS_RESOURCE the kernel refuses and everything is put back as it was. An
    /// unmounted image is checked (`e2fsck -f`) and resized offline, up or down. ext4 fixes the
    /// inodes per block group at mkfs, so the filesystem's inode count can only follow the
    /// size. Where the image is mounted with project quota, the project takes the new soft and
    /// hard limits at once (DISKINODES then holds exactly, also below the inode count).
    /// Directory layout: the limits are recorded, and set on the VE's project of the host
    /// file system at once where that enforces project quota (the tree joins a project first
    /// if it is in none yet); reported only elsewhere.
    ///
    /// # Errors
    /// [`QuotaError::BelowUsage`] when a hard limit is below current usage,
    /// [`QuotaError::OnlineGrowNeedsCapSysResource`], [`QuotaError::ShrinkNeedsOffline`],
    /// [`QuotaError::InodesFixed`], [`QuotaError::BelowMinimum`], [`QuotaError::UnlimitedImage`],
    /// [`QuotaError::NotMounted`] when `running` but nothing is mounted at `root`; an I/O
    /// error when the kernel refuses the project's new limits.
    ///
    /// # Privileges
    /// CAP_SYS_ADMIN for the loop device; CAP_SYS_RESOURCE to grow a mounted image.
    pub fn set_limits(
        &self,
        root: &Path,
        space: DiskSpace,
        inodes: DiskInodes,
        running: bool,
    ) -> Result<()> {
        if self.layout() == Layout::Image {
            self.resize_image(root, space, inodes, running)?;
        }
        let mut record = self.record()?;
        record.space = Some(space);
        record.inodes = Some(inodes);
        record.save(&self.record_path())?;
        match self.layout() {
            // Also an area not yet in a project (made before its file system had project
            // quota) joins one now, mounted or not.
            Layout::Simfs => self.host_project_setup().map(drop),
            Layout::Image => self.reapply_project_limits(),
        }
    }

    fn resize_image(
        &self,
        root: &Path,
        space: DiskSpace,
        inodes: DiskInodes,
        running: bool,
    ) -> Result<()> {
        if space.hard_kb == UNLIMITED {
            return Err(QuotaError::UnlimitedImage);
        }
        let image = self.image_path();
        let mounted = self.mount_of_image(root)?.is_some();
        if running && !mounted {
            return Err(QuotaError::NotMounted { root: root.to_owned() });
        }
        if !mounted {
            image::check(&image)?;
        }
        let info = image::info(&image)?;
        let (used_kb, used_inodes, size_kb, _) = self.image_usage(root)?;
        let new_kb = space.hard_kb / (BLOCK_SIZE / 1024) * (BLOCK_SIZE / 1024);
        if space.hard_kb < used_kb {
            return Err(QuotaError::BelowUsage {
                resource: "1k-blocks",
                limit: space.hard_kb,
                usage: used_kb,
            });
        }
        if inodes.hard < used_inodes {
            return Err(QuotaError::BelowUsage {
                resource: "inodes",
                limit: inodes.hard,
                usage: used_inodes,
            });
        }
        let available = info.inodes_at(new_kb);
        if inodes.hard != UNLIMITED && inodes.hard > available {
            return Err(QuotaError::InodesFixed { requested: inodes.hard, available });
        }
        match (new_kb.cmp(&size_kb), mounted) {
            (std::cmp::Ordering::Equal, _) => Ok(()),
            (std::cmp::Ordering::Greater, true) => grow_online(&image, size_kb, new_kb),
            (std::cmp::Ordering::Less, true) => Err(QuotaError::ShrinkNeedsOffline { path: image }),
            (std::cmp::Ordering::Greater, false) => {
                set_file_size(&image, new_kb)?;
                image::resize(&image, new_kb)
            }
            (std::cmp::Ordering::Less, false) => {
                if let Err(e) = image::resize(&image, new_kb) {
                    let minimum_kb = image::minimum_kb(&image)?;
                    if new_kb < minimum_kb {
                        return Err(QuotaError::BelowMinimum {
                            path: image,
                            requested_kb: new_kb,
                            minimum_kb,
                        });
                    }
                    return Err(e);
                }
                set_file_size(&image, new_kb)
            }
        }
    }
}

fn set_file_size(image: &Path, size_kb: u64) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(image)
        .map_err(|e| QuotaError::io("open image", image, e))?;
    file.set_len(size_kb * 1024).map_err(|e| QuotaError::io("resize image file", image, e))
}

/// Grows the file and its loop device, then the mounted filesystem; on failure puts the file
/// and the device back to the old size (the filesystem never saw the new blocks).
fn grow_online(image: &Path, old_kb: u64, new_kb: u64) -> Result<()> {
    let device = loopdev::devices_backed_by(image)?
        .into_iter()
        .next()
        .ok_or_else(|| QuotaError::NotMounted { root: image.to_owned() })?;
    set_file_size(image, new_kb)?;
    loopdev::set_capacity(&device)?;
    let Err(err) = image::resize(&device, new_kb) else { return Ok(()) };
    let rollback = set_file_size(image, old_kb).and_then(|()| loopdev::set_capacity(&device));
    if let Err(e) = rollback {
        tracing::warn!(image = %image.display(), error = %e, "could not shrink the image file back");
    }
    let denied =
        matches!(&err, QuotaError::Tool { stderr, .. } if stderr.contains("Permission denied"));
    if denied || !has_cap_sys_resource() {
        return Err(QuotaError::OnlineGrowNeedsCapSysResource { path: image.to_owned() });
    }
    Err(err)
}
