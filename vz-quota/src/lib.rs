//! Two-level disk quota and the VE's private area.
//!
//! A VE's files live in its **private area** (`VE_PRIVATE`), mounted at its root (`VE_ROOT`):
//!
//! - [`Layout::Image`] (shown as `ploop`): an ext4 filesystem in a sparse file
//!   `<private>/root.hdd/root.img`, attached to an auto-clearing loop device and mounted at the
//!   root. DISKSPACE's hard limit is the filesystem's size and DISKINODES' hard limit (rounded
//!   up to whole block groups) its inode count: the kernel enforces both (ENOSPC), and `df` in
//!   the VE shows them. A mounted image grows online (needs CAP_SYS_RESOURCE), an unmounted
//!   one grows and shrinks offline.
//! - [`Layout::Simfs`]: a plain directory, bind-mounted at the root. Where the host file
//!   system holding it enforces project quota (ext4 with the `project` and `quota` features
//!   mounted `prjquota`, or XFS mounted `pquota`), the tree is one project of that file system
//!   with an id of its own (kept in the area's record; unique on the file system, allocated
//!   under a lock, released at destroy) and the kernel holds DISKSPACE, DISKINODES and the
//!   grace periods, reports usage, and answers `df` in the VE with the limits — with no image,
//!   loop device or journal of the VE's own. Elsewhere usage is accounted by a walk of the
//!   tree and nothing is enforced ([`PrivateArea::first_level_soft`] says why).
//!
//! Soft limits and QUOTATIME are kept in a small record beside the area and reported with
//! their grace timers by [`PrivateArea::stat`], whose [`QuotaStat`] prints as `vzquota stat`.
//!
//! **Soft limits and grace in the kernel** (first level, image layout): on a kernel with quota
//! formats, images are made with 256-byte inodes, ext4's `project` feature and user, group and
//! project quota (`mkfs.ext4 -I 256 -O quota,project -E quotatype=usrquota:grpquota:prjquota`);
//! an older image gets them from tune2fs at mount. The image is mounted with `prjquota`; its
//! root directory is put in project [`PROJECT_ID`] with PROJINHERIT, so every file made in
//! the VE joins the project (the tree of a converted image is walked once; symlinks, special
//! and immutable files already there cannot take a project id and stay out). The project's limits
//! are DISKSPACE (1K blocks, barrier soft and limit hard) and DISKINODES, its block and inode
//! grace periods QUOTATIME, set with quotactl at every mount and whenever
//! [`PrivateArea::set_limits`] or [`PrivateArea::set_quota_time`] change them on a mounted
//! area. Past the soft limit writes succeed for QUOTATIME seconds, then fail with EDQUOT
//! (QUOTATIME 0: right after the write that crossed it); the block hard limit stays the
//! image's size, and DISKINODES holds exactly (not rounded up to block groups). There ext4
//! answers statvfs (`df` in the VE) with the project's soft limit as the size when that is
//! below the filesystem's, usage capped at it, and [`PrivateArea::stat`] takes usage (files
//! only, without ext4's quota files) and grace deadlines from the kernel.
//! [`PrivateArea::first_level_soft`] says whether that is in force or why not:
//!
//! | kernel / area | soft limits and QUOTATIME |
//! | --- | --- |
//! | quota formats (`quota_v2`), image with inodes > 128 bytes | enforced (EDQUOT after the grace) |
//! | quota formats, image with 128-byte inodes | reported: tune2fs cannot enlarge inodes of a flex_bg ext4 |
//! | no quota formats (e.g. a 6.18 kernel without CONFIG_QUOTA) | reported: images are made without quota features, which such a kernel refuses to mount read-write (an image that has them loses them at mount) |
//! | directory layout (simfs), host file system enforcing project quota | enforced (the file system's project grace periods: one QUOTATIME per file system) |
//! | directory layout (simfs), elsewhere | reported |
//!
//! Caveats: a process with CAP_SYS_RESOURCE ignores quota limits (the kernel's rule; vz-ns
//! leaves it out of a VE's bounding set by default). Root in a VE of its own user namespace (the
//! default) cannot change a file's project id or PROJINHERIT: the kernel allows that only
//! from the initial user namespace (EINVAL otherwise). Root of a privileged VE (no user
//! namespace) can, and may move usage out of the project, escaping the soft limits and the
//! project's accounting; on the image layout the hard limit, the filesystem's size, still
//! holds.
//!
//! The **second level** (per uid/gid inside the VE, QUOTAUGIDLIMIT > 0): on a kernel with
//! quota formats the image gets ext4's `quota` feature and is mounted with `usrquota,grpquota`,
//! and the kernel holds every user's and group's limits inside the VE. The limits are set from
//! the host ([`PrivateArea::set_ugid_limits`], `vzquota setlimit2`), or by root in the VE
//! with the standard tools (setquota, edquota, repquota): quotactl's Q_SETQUOTA, Q_SETINFO
//! and Q_GETQUOTA of other ids need CAP_SYS_ADMIN in the file system's user namespace (the
//! host's, for ext4), which a VE's root does not have, so a host process intercepts the VE's
//! quotactl calls and runs the ones [`QuotactlProxy`] allows (user and group quota of the
//! VE's own device, for root) on the host's node of the device. Users read their own usage
//! and limits with `quota` (vz-ctl makes the image's device node
//! in the VE's /dev for it to look up; the VE cannot open it). Elsewhere
//! [`PrivateArea::second_level`] says why it is unavailable and [`PrivateArea::ugid_usage`]
//! reports usage by accounting.
//!
//! # Privileges
//! Mounting, loop devices, resizing and quotactl need root (CAP_SYS_ADMIN); growing a mounted
//! image needs CAP_SYS_RESOURCE as well. Parsing and formatting need nothing.
#![deny(unsafe_code)]

mod area;
mod error;
mod hostproj;
mod image;
mod limit;
mod loopdev;
mod mount;
mod mount_opts;
mod project;
mod proxy;
mod record;
mod resize;
mod snapshot;
mod stat;
mod superblock;
#[allow(
    unsafe_code,
    reason = "loop device and project id ioctls, quotactl; every block has a SAFETY comment"
)]
mod sys;
mod ugid;
mod ugid_limits;

pub use area::{PrivateArea, has_cap_sys_resource};
pub use error::{QuotaError, Result};
pub use limit::{DiskInodes, DiskSpace, Layout, UNLIMITED};
pub use mount::{is_mount_point, mount_identity, unescape_mountinfo};
pub use mount_opts::ImageMountOptions;
pub use project::{PROJECT_ID, SoftLimits};
pub use proxy::{QuotactlAnswer, QuotactlCaller, QuotactlProxy};
pub use record::DEFAULT_QUOTATIME;
pub use snapshot::{
    FrozenFs, allocated_bytes, copy_image, copy_tree, freeze, mount_read_only, mounts_of_image,
    thaw, trim,
};
pub use stat::{Grace, QuotaStat, Usage};
pub use ugid::{SecondLevel, TreeUsage, UgidUsage, kernel_has_quota};
pub use ugid_limits::{QuotaOwner, UgidLimit};
