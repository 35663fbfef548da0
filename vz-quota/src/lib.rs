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
//! - [`Layout::Simfs`]: a plain directory, bind-mounted at the root. Usage is accounted by a
//!   walk of the tree; nothing is enforced.
//!
//! Soft limits and QUOTATIME are kept in a small record beside the area and reported with
//! their grace timers by [`PrivateArea::stat`], whose [`QuotaStat`] prints as `vzquota stat`.
//!
//! The **second level** (per uid/gid inside the VE, QUOTAUGIDLIMIT > 0): on a kernel with
//! quota formats the image gets ext4's `quota` feature and is mounted with `usrquota,grpquota`,
//! so root in the VE uses the standard quota tools; elsewhere [`PrivateArea::second_level`]
//! says why it is unavailable and [`PrivateArea::ugid_usage`] reports usage by accounting.
//!
//! # Privileges
//! Mounting, loop devices and resizing need root (CAP_SYS_ADMIN); growing a mounted image
//! needs CAP_SYS_RESOURCE as well. Parsing and formatting need nothing.
#![deny(unsafe_code)]

mod area;
mod error;
mod image;
mod limit;
mod loopdev;
mod mount;
mod record;
mod resize;
mod stat;
#[allow(unsafe_code, reason = "loop device ioctls; every block has a SAFETY comment")]
mod sys;
mod ugid;
mod ugid_limits;

pub use area::{PrivateArea, has_cap_sys_resource};
pub use error::{QuotaError, Result};
pub use limit::{DiskInodes, DiskSpace, Layout, UNLIMITED};
pub use record::DEFAULT_QUOTATIME;
pub use stat::{Grace, QuotaStat, Usage};
pub use ugid::{SecondLevel, TreeUsage, UgidUsage, kernel_has_quota};
pub use ugid_limits::{QuotaOwner, UgidLimit};
