//! `vzctl compact` (reference §1.3): gives the free blocks of an image-layout VE back to the
//! host. OpenVZ runs `ploop balloon discard`; vz's image is an ext4 on a loop device, so
//! FITRIM on the mounted VE_ROOT makes ext4 discard its free blocks and the loop device
//! punches them out of `root.img` (mounting the VE first if needed, unmounting after).

use crate::error::{CtlError, Result, chain};
use crate::intent::{Intent, Record, flag};
use crate::output::say;
use crate::ve::Ve;

/// OpenVZ's "Error compacting ploop image".
const COMPACT_FAILED: u8 = 166;

/// The image file's allocation before and after a compaction, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Bytes allocated to `root.img` on the host before.
    pub before: u64,
    /// Bytes allocated after.
    pub after: u64,
    /// Bytes the file system discarded.
    pub trimmed: u64,
}

/// Compacts the VE's image; `None` for the directory layout (a note is printed: there is
/// nothing to compact). The caller holds the VE's lock.
///
/// # Errors
/// 43 without a private area, 50 when it cannot be mounted, 166 when the trim fails.
pub fn compact(ve: &Ve) -> Result<Option<Compacted>> {
    ve.config()?;
    let private = ve.private()?;
    let area = vz_quota::PrivateArea::open(&private).map_err(|_| CtlError::NoPrivate(private))?;
    let Some(image) = area.image() else {
        say("Compacting is only supported for ploop-based containers; nothing to do");
        return Ok(None);
    };
    let fail = |e: &dyn std::error::Error| CtlError::Param {
        code: COMPACT_FAILED,
        message: format!("Error compacting the image: {}", chain(e)),
    };
    let was_mounted = ve.is_mounted()?;
    let _intent =
        Intent::begin(&ve.global, ve.ctid, "compact", &[("was_mounted", flag(was_mounted))])?;
    let before = vz_quota::allocated_bytes(&image).map_err(|e| fail(&e))?;
    if !was_mounted {
        super::mount::mount(ve)?;
    }
    say(format!("Compacting {}", image.display()));
    let trimmed = vz_quota::trim(&ve.root()?).map_err(|e| fail(&e));
    crate::intent::crash_point("compact:trimmed");
    if !was_mounted {
        super::mount::unmount_root(ve)?;
    }
    let trimmed = trimmed?;
    let after = vz_quota::allocated_bytes(&image).map_err(|e| fail(&e))?;
    say(format!(
        "Image allocation {} KB -> {} KB ({} KB discarded by the file system)",
        before / 1024,
        after / 1024,
        trimmed / 1024
    ));
    Ok(Some(Compacted { before, after, trimmed }))
}

/// Repairs a killed compact: the VE unmounted again if compact mounted it (and it does not
/// run).
///
/// # Errors
/// [`CtlError::Recover`] when the unmount fails.
pub fn repair(ve: &Ve, record: &Record) -> Result<()> {
    if record.flag("was_mounted", true) || ve.cgroup()?.has_tasks() || !ve.is_mounted()? {
        return Ok(());
    }
    vz_quota::PrivateArea::umount(&ve.root()?)
        .map_err(|e| crate::intent::step_error("unmount", chain(&e)))
}
