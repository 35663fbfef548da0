//! `vzctl convert CTID --layout ploop` (reference §1.3): a stopped simfs VE to the image
//! layout. A new private area of DISKSPACE's size (and DISKINODES) is made beside the old one,
//! mounted, and the VE's tree copied in with ownership (the ids on disk, so the VE's id
//! mapping holds), modes, times, hard links, ACLs and extended attributes (`cp -a`); then the
//! two are swapped by renames and VE_LAYOUT=ploop saved.
//!
//! Crash safety (intent record `convert`): before the copy is complete the new area is
//! removed (the VE is as it was); after, the swap is finished by the next command.

use std::path::{Path, PathBuf};

use crate::error::{CtlError, IoContext, Result, chain};
use crate::intent::{Intent, Record, crash_point};
use crate::output::say;
use crate::ve::Ve;

/// OpenVZ's "Error converting to ploop".
const CONVERT_FAILED: u8 = 155;

fn beside(private: &Path, suffix: &str) -> PathBuf {
    let mut name = private.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    private.with_file_name(name)
}

/// Checks `--layout`: `ploop` or `ploop:expanded|plain|raw` (OpenVZ's modes; vz's image
/// has one form). Anything else is refused with 21.
///
/// # Errors
/// [`CtlError::BadParameter`] (21).
pub fn check_layout(layout: Option<&str>) -> Result<()> {
    let layout = layout.unwrap_or("ploop");
    let (kind, mode) = layout.split_once(':').map_or((layout, None), |(k, m)| (k, Some(m)));
    if kind == "ploop" && mode.is_none_or(|m| matches!(m, "expanded" | "plain" | "raw")) {
        return Ok(());
    }
    Err(CtlError::BadParameter {
        option: "layout".into(),
        value: layout.into(),
        reason: "only conversion to ploop is supported".into(),
    })
}

/// Converts the stopped simfs VE to the image layout. The caller holds its lock.
///
/// # Errors
/// 21 for another layout or a VE already on the image layout; 32 running; 63 DISKSPACE not
/// set; 43 no private area; 155 when a step fails (the VE is left as it was).
pub fn convert(ve: &Ve, layout: Option<&str>) -> Result<()> {
    check_layout(layout)?;
    let config = ve.config()?;
    if ve.cgroup()?.has_tasks() {
        return Err(CtlError::Running);
    }
    let private = ve.private()?;
    let area =
        vz_quota::PrivateArea::open(&private).map_err(|_| CtlError::NoPrivate(private.clone()))?;
    if area.layout() == vz_quota::Layout::Image {
        return Err(CtlError::BadParameter {
            option: "layout".into(),
            value: "ploop".into(),
            reason: "the container already has the ploop (image) layout".into(),
        });
    }
    let get = |key: &str| config.get(key).map(str::trim).filter(|v| !v.is_empty());
    let space: vz_quota::DiskSpace = get("DISKSPACE")
        .ok_or(CtlError::KeyNotSet { key: "DISKSPACE", code: 63 })?
        .parse()
        .map_err(|e| bad("diskspace", get("DISKSPACE"), e))?;
    let inodes: Option<vz_quota::DiskInodes> = get("DISKINODES")
        .map(|v| v.parse().map_err(|e| bad("diskinodes", Some(v), e)))
        .transpose()?;
    if ve.is_mounted()? {
        super::mount::unmount_root(ve)?;
    }
    let new = beside(&private, ".convert");
    let mnt = beside(&private, ".convert-mnt");
    let mut intent = Intent::begin(
        &ve.global,
        ve.ctid,
        "convert",
        &[("phase", "copy".into()), ("private", private.display().to_string())],
    )?;
    say(format!("Converting container to ploop layout ({} KB)", space.hard_kb));
    let copied = (|| {
        undo_copy(&new, &mnt)?;
        let image =
            vz_quota::PrivateArea::create(&new, vz_quota::Layout::Image, Some(space), inodes)
                .map_err(|e| failed(&e))?;
        std::fs::create_dir_all(&mnt).op("create", &mnt)?;
        image.mount(&mnt).map_err(|e| failed(&e))?;
        let tree = vz_quota::copy_tree(&private, &mnt).map_err(|e| failed(&e));
        vz_quota::PrivateArea::umount(&mnt).map_err(|e| failed(&e))?;
        tree
    })();
    if let Err(e) = copied {
        let _ = undo_copy(&new, &mnt);
        return Err(e);
    }
    crash_point("convert:copied");
    intent.note("phase", "swap")?;
    finish(ve, &private).map_err(|e| failed(&e))?;
    say("Container was successfully converted to the ploop layout");
    Ok(())
}

fn bad(option: &str, value: Option<&str>, e: impl std::fmt::Display) -> CtlError {
    CtlError::BadParameter {
        option: option.into(),
        value: value.unwrap_or_default().into(),
        reason: e.to_string(),
    }
}

fn failed(e: &dyn std::error::Error) -> CtlError {
    CtlError::Param { code: CONVERT_FAILED, message: format!("Conversion failed: {}", chain(e)) }
}

/// Removes a half-made new area and its mount point.
fn undo_copy(new: &Path, mnt: &Path) -> Result<()> {
    if mnt.exists() && vz_quota::PrivateArea::is_mounted(mnt).unwrap_or(false) {
        vz_quota::PrivateArea::umount(mnt).map_err(CtlError::Umount)?;
    }
    super::recover::remove_empty_dir(mnt);
    if new.exists() {
        super::recover::remove_private(new)?;
    }
    Ok(())
}

/// The swap, each step safe to run again: the old tree aside, the new area in its place,
/// VE_LAYOUT=ploop saved, the old tree and its quota record removed.
fn finish(ve: &Ve, private: &Path) -> Result<()> {
    let new = beside(private, ".convert");
    let old = beside(private, ".simfs");
    let mnt = beside(private, ".convert-mnt");
    if new.exists() {
        if private.exists() {
            std::fs::rename(private, &old).op("rename", private)?;
        }
        crash_point("convert:old-aside");
        std::fs::rename(&new, private).op("rename", &new)?;
    }
    let path = ve.config_path();
    let mut config = crate::config::ConfigFile::load(&path).map_err(CtlError::Config)?;
    config.set("VE_LAYOUT", "ploop");
    config.write_atomic(&path).map_err(CtlError::SaveConfig)?;
    if old.exists() {
        std::fs::remove_dir_all(&old).op("remove", &old)?;
    }
    // The directory layout's record, one level up (vz-quota keeps it as quota.<name>).
    let name = private.file_name().unwrap_or_default().to_string_lossy();
    let record = private.with_file_name(format!("quota.{name}"));
    if record.exists() {
        std::fs::remove_file(&record).op("remove", &record)?;
    }
    super::recover::remove_empty_dir(&mnt);
    Ok(())
}

/// Repairs a killed convert: before the swap the new area is removed; from the swap on the
/// swap is finished.
///
/// # Errors
/// [`CtlError::Recover`] naming the step that failed.
pub fn repair(ve: &Ve, record: &Record) -> Result<()> {
    let Some(private) = record.path("private") else { return Ok(()) };
    let step = |what: &str, e: CtlError| crate::intent::step_error(what, chain(&e));
    if record.get("phase") == Some("swap") {
        finish(ve, &private).map_err(|e| step("finish the conversion", e))
    } else {
        undo_copy(&beside(&private, ".convert"), &beside(&private, ".convert-mnt"))
            .map_err(|e| step("remove the new area", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ploop_is_a_target() {
        for ok in [None, Some("ploop"), Some("ploop:expanded"), Some("ploop:raw")] {
            assert!(check_layout(ok).is_ok(), "{ok:?}");
        }
        for bad in ["simfs", "ploop:bogus", "image"] {
            assert_eq!(check_layout(Some(bad)).unwrap_err().exit_code(), 21, "{bad}");
        }
    }
}
