//! `vzctl mount` / `vzctl umount`: the private area at VE_ROOT, with the action scripts.

use crate::disk::DiskChanges;
use crate::error::{CtlError, IoContext, Result};
use crate::intent::{Intent, crash_point};
use crate::output::say;
use crate::scripts;
use crate::ve::Ve;

/// Mounts the private area at VE_ROOT (no-op with a message if already mounted), with
/// CTID.conf's QUOTATIME and QUOTAUGIDLIMIT.
/// Returns whether this call mounted it.
///
/// # Errors
/// 43 without a private area, 21 for a bad QUOTATIME or QUOTAUGIDLIMIT, 50 when mounting
/// fails, 79 when an action script fails (the mount is then undone).
pub fn mount(ve: &Ve) -> Result<bool> {
    ve.config()?;
    let root = ve.root()?;
    let private = ve.private()?;
    if !private.exists() {
        return Err(CtlError::NoPrivate(private));
    }
    if ve.is_mounted()? {
        say("Container is already mounted");
        return Ok(false);
    }
    // Nested in start or set, the outer operation's record covers this one.
    let _intent = Intent::begin(&ve.global, ve.ctid, "mount", &[])?;
    scripts::run_global_then_ct(ve, "premount")?;
    crate::layout::shield_parents(ve)?;
    let made_root = !root.exists();
    std::fs::create_dir_all(&root).op("create VE_ROOT", &root)?;
    let mounted = (|| {
        let area = vz_quota::PrivateArea::open(&private).map_err(CtlError::Mount)?;
        DiskChanges::from_config(ve)?.sync_unmounted(&area)?;
        area.mount_with(&root, &mount_options(ve)?).map_err(CtlError::Mount)
    })();
    if let Err(e) = mounted {
        if made_root {
            super::recover::remove_empty_dir(&root);
        }
        return Err(e);
    }
    crash_point("mount:mounted");
    if let Err(e) = scripts::run_global_then_ct(ve, "mount") {
        let _ = vz_quota::PrivateArea::umount(&root);
        return Err(e);
    }
    say("Container is mounted");
    Ok(true)
}

/// The image's extra mount options, `MOUNT_OPTS`.
///
/// # Errors
/// 21 for an option vz refuses (a config edited by hand; `vzctl set` checks them).
fn mount_options(ve: &Ve) -> Result<vz_quota::ImageMountOptions> {
    let value = ve.get(MOUNT_OPTS_KEY).unwrap_or_default();
    vz_quota::ImageMountOptions::parse(value).map_err(|e| CtlError::BadParameter {
        option: MOUNT_OPTS_KEY.to_owned(),
        value: value.to_owned(),
        reason: e.to_string(),
    })
}

/// CTID.conf: the image's extra mount options (`--mount_opts`).
pub(crate) const MOUNT_OPTS_KEY: &str = "MOUNT_OPTS";

/// Unmounts VE_ROOT (and everything below it).
///
/// # Errors
/// 40 when not mounted, 32 when running, 51 when unmounting fails.
pub fn umount(ve: &Ve) -> Result<()> {
    ve.config()?;
    if !ve.is_mounted()? {
        return Err(CtlError::NotMounted);
    }
    if ve.cgroup()?.has_tasks() {
        return Err(CtlError::Running);
    }
    let _intent = Intent::begin(&ve.global, ve.ctid, "umount", &[])?;
    unmount_root(ve)?;
    say("Container is unmounted");
    Ok(())
}

/// Runs the umount scripts, unmounts, then runs the postumount scripts.
///
/// # Errors
/// 51 when unmounting fails, 79 when a script fails.
pub fn unmount_root(ve: &Ve) -> Result<()> {
    let root = ve.root()?;
    scripts::run_ct_then_global(ve, "umount")?;
    vz_quota::PrivateArea::umount(&root).map_err(CtlError::Umount)?;
    scripts::run_ct_then_global(ve, "postumount")
}
