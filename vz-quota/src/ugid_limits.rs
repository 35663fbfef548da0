//! Second-level limits: per user and group quota inside a VE's image, set from the host.
//!
//! As OpenVZ's `vzquota setlimit2`, the host sets them on the mounted image (quotactl); the
//! kernel enforces them for every process in the VE. Root inside the VE sets them with the
//! standard tools (setquota, edquota) through the VE's quotactl server
//! ([`crate::QuotactlProxy`]).

use std::path::Path;

use crate::area::PrivateArea;
use crate::error::{QuotaError, Result};
use crate::sys::{self, IdQuota};
use crate::ugid::SecondLevel;

/// Whose limits: a user or a group, by numeric id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaOwner {
    /// A user id.
    User(u32),
    /// A group id.
    Group(u32),
}

/// Limits of one user or group: 1K blocks and inodes, 0 = no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UgidLimit {
    /// Soft limit on 1K blocks.
    pub blocks_soft: u64,
    /// Hard limit on 1K blocks.
    pub blocks_hard: u64,
    /// Soft limit on inodes.
    pub inodes_soft: u64,
    /// Hard limit on inodes.
    pub inodes_hard: u64,
}

impl PrivateArea {
    /// Sets `owner`'s limits inside the VE's filesystem mounted at `root`.
    ///
    /// # Errors
    /// [`QuotaError::SecondLevelUnavailable`] when QUOTAUGIDLIMIT is 0 or the kernel cannot
    /// enforce it (with the reason), [`QuotaError::Io`] when quotactl fails.
    ///
    /// # Privileges
    /// CAP_SYS_ADMIN (quotactl).
    pub fn set_ugid_limits(&self, root: &Path, owner: QuotaOwner, limit: UgidLimit) -> Result<()> {
        match self.second_level(root)? {
            SecondLevel::Enforced => {}
            SecondLevel::Off => {
                return Err(QuotaError::SecondLevelUnavailable {
                    reason: "QUOTAUGIDLIMIT is 0: second-level quota is off".to_owned(),
                });
            }
            SecondLevel::Unavailable { reason } => {
                return Err(QuotaError::SecondLevelUnavailable { reason });
            }
        }
        let device = self
            .mounted_device(root)?
            .ok_or_else(|| QuotaError::NotMounted { root: root.to_owned() })?;
        let (qtype, id) = match owner {
            QuotaOwner::User(id) => (sys::USRQUOTA, id),
            QuotaOwner::Group(id) => (sys::GRPQUOTA, id),
        };
        let limits = IdQuota {
            blocks_soft: limit.blocks_soft,
            blocks_hard: limit.blocks_hard,
            inodes_soft: limit.inodes_soft,
            inodes_hard: limit.inodes_hard,
            ..IdQuota::default()
        };
        sys::set_limits(&device, qtype, id, &limits)
            .map_err(|e| QuotaError::io("set the quota limits on", &device, e))
    }
}
