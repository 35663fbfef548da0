//! `vzctl quotaon`, `quotaoff`, `quotainit` (reference §1.3): OpenVZ's wrappers of
//! `vzquota on/off/init` with CTID.conf's parameters. DISK_QUOTA other than yes: "Disk quota
//! is not enabled, skipping operation" and 60, 66, 61. The image layout: its quota is the
//! file system's own (size and project quota), "disk quota is obsoleted", exit 0. The
//! directory layout (simfs): vz-quota accounts usage by a walk and records DISKSPACE,
//! DISKINODES and QUOTATIME for `vzquota stat`, but enforces nothing there (no per-VE file
//! system): init records the limits and reports the usage, on and off say so.

use crate::error::{CtlError, Result, chain};
use crate::output::say;
use crate::ve::Ve;

/// Which wrapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaCmd {
    /// `quotaon` (vzquota on; failure 60).
    On,
    /// `quotaoff` (vzquota off; failure 66).
    Off,
    /// `quotainit` (vzquota init; failure 61).
    Init,
}

impl QuotaCmd {
    /// OpenVZ's exit code when this command fails.
    pub fn failure_code(self) -> u8 {
        match self {
            QuotaCmd::On => 60,
            QuotaCmd::Off => 66,
            QuotaCmd::Init => 61,
        }
    }
}

/// Runs the wrapper. The caller holds the VE's lock.
///
/// # Errors
/// 60/66/61 when DISK_QUOTA is not yes or the step fails; 43 without a private area.
pub fn run(ve: &Ve, cmd: QuotaCmd) -> Result<()> {
    ve.config()?;
    let fail = |message: String| CtlError::Param { code: cmd.failure_code(), message };
    let enabled = ve.get("DISK_QUOTA").is_none_or(|v| v.eq_ignore_ascii_case("yes"));
    if !enabled {
        return Err(fail("Disk quota is not enabled, skipping operation".into()));
    }
    let private = ve.private()?;
    let area =
        vz_quota::PrivateArea::open(&private).map_err(|_| CtlError::NoPrivate(private.clone()))?;
    if area.layout() == vz_quota::Layout::Image {
        say("Warning: the container has the ploop (image) layout: disk quota is obsoleted");
        return Ok(());
    }
    let root = ve.root()?;
    match cmd {
        QuotaCmd::Init => {
            let (space, inodes) = limits(ve)?;
            let (old_space, old_inodes) = area.limits().map_err(|e| fail(chain(&e)))?;
            let space = space.or(old_space).unwrap_or(vz_quota::DiskSpace {
                soft_kb: vz_quota::UNLIMITED,
                hard_kb: vz_quota::UNLIMITED,
            });
            let inodes = inodes.or(old_inodes).unwrap_or(vz_quota::DiskInodes {
                soft: vz_quota::UNLIMITED,
                hard: vz_quota::UNLIMITED,
            });
            area.set_limits(&root, space, inodes, false).map_err(|e| fail(chain(&e)))?;
            crate::disk::DiskChanges::from_config(ve)?
                .sync_unmounted(&area)
                .map_err(|e| fail(chain(&e)))?;
            let stat = area.stat(&root).map_err(|e| fail(chain(&e)))?;
            let how = if stat.enforced {
                "enforced by the host file system's project quota"
            } else {
                "accounted, not enforced"
            };
            say(format!(
                "Quota initialized: {} KB and {} inodes used (simfs: {how})",
                stat.blocks.usage, stat.inodes.usage
            ));
        }
        QuotaCmd::On => {
            let stat = area.stat(&root).map_err(|e| fail(chain(&e)))?;
            let how = if stat.enforced {
                "the host file system's project quota enforces its limits"
            } else {
                "its file system has no project quota, so its limits are reported, not enforced"
            };
            say(format!(
                "Quota accounting is on: {} KB and {} inodes used; the directory layout (simfs): \
                 {how}",
                stat.blocks.usage, stat.inodes.usage
            ));
        }
        QuotaCmd::Off => {
            say("Quota is off: nothing is enforced for the directory layout (simfs)");
        }
    }
    Ok(())
}

fn limits(ve: &Ve) -> Result<(Option<vz_quota::DiskSpace>, Option<vz_quota::DiskInodes>)> {
    let get = |key| ve.get(key).map(str::trim).filter(|v| !v.is_empty());
    let bad = |option: &str, value: &str, e: String| CtlError::BadParameter {
        option: option.into(),
        value: value.into(),
        reason: e,
    };
    let space = get("DISKSPACE")
        .map(|v| v.parse().map_err(|e: vz_quota::QuotaError| bad("diskspace", v, e.to_string())))
        .transpose()?;
    let inodes = get("DISKINODES")
        .map(|v| v.parse().map_err(|e: vz_quota::QuotaError| bad("diskinodes", v, e.to_string())))
        .transpose()?;
    Ok((space, inodes))
}
