//! `vzctl destroy`: removes the private area, renames the config to `.destroyed`, removes
//! VE_ROOT, the dump (file or directory) and the name links.
//!
//! Destroy removes whatever a VE has, in whatever state: also without CTID.conf (vz.conf's
//! VE_PRIVATE/VE_ROOT then say where its files are, and a VE without a config cannot be
//! stopped, so its tasks are killed), with a half-made private area, or a stale dump. Its
//! intent record carries the paths, so a destroy killed after the config was renamed is
//! finished by the next command.

use crate::ctid::remove_names;
use crate::error::{CtlError, IoContext, Result};
use crate::intent::{self, Intent, Record, crash_point};
use crate::output::say;
use crate::ve::Ve;

/// Destroys a VE. The caller holds its lock. A VE with a config must be stopped and
/// unmounted first (as in OpenVZ).
///
/// # Errors
/// 32 running, 41 mounted, 52 when removal fails.
pub fn destroy(ve: &Ve) -> Result<()> {
    let status = ve.status()?;
    if ve.config.is_none() && !has_anything(ve)? {
        return Err(CtlError::NoConfig);
    }
    if ve.config.is_some() {
        if status.running {
            return Err(CtlError::Running);
        }
        if status.mounted {
            return Err(CtlError::Mounted);
        }
    }
    let private = ve.private()?;
    let root = ve.root()?;
    let _intent = Intent::begin(
        &ve.global,
        ve.ctid,
        "destroy",
        &[("private", private.display().to_string()), ("root", root.display().to_string())],
    )?;
    remove_all(ve, None)?;
    say("Container private area was destroyed");
    Ok(())
}

/// Removes everything of the VE: tasks and cgroup (only when it has no config: a VE with one
/// is stopped first), mounts, private area, config (renamed `.destroyed`), names, dump,
/// VE_ROOT. `record` gives the paths an interrupted destroy saw.
///
/// # Errors
/// [`CtlError::Destroy`] or the failing step.
pub(crate) fn remove_all(ve: &Ve, record: Option<&Record>) -> Result<()> {
    let private = record.and_then(|r| r.path("private")).map_or_else(|| ve.private(), Ok)?;
    let root = record.and_then(|r| r.path("root")).map_or_else(|| ve.root(), Ok)?;
    let cgroup = ve.cgroup()?;
    if cgroup.has_tasks() || cgroup.dirs().iter().any(|(_, d)| d.exists()) {
        super::recover::tear_down(ve, false)?;
    }
    if root.exists() && vz_quota::PrivateArea::is_mounted(&root).map_err(CtlError::Umount)? {
        vz_quota::PrivateArea::umount(&root).map_err(CtlError::Umount)?;
    }
    super::recover::remove_private(&private)
        .map_err(|e| CtlError::Destroy(intent::step_error("private area", e).into()))?;
    crash_point("destroy:private-removed");
    let conf = ve.config_path();
    remove_names(&ve.global.names_dir(), &conf)?;
    let conf_dir = ve.global.conf_dir();
    for suffix in ["conf", "mount", "umount", "premount", "postumount", "start", "stop"] {
        let file = conf_dir.join(format!("{}.{suffix}", ve.ctid));
        if file.exists() {
            let destroyed = conf_dir.join(format!("{}.{suffix}.destroyed", ve.ctid));
            std::fs::rename(&file, &destroyed).op("rename to .destroyed", &file)?;
        }
    }
    crash_point("destroy:config-renamed");
    let dump = ve.dump_file();
    match dump.symlink_metadata() {
        Ok(meta) if meta.is_dir() => {
            std::fs::remove_dir_all(&dump).op("remove dump directory", &dump)?;
        }
        Ok(_) => std::fs::remove_file(&dump).op("remove dump file", &dump)?,
        Err(_) => {}
    }
    if root.exists() {
        std::fs::remove_dir(&root).op("remove VE_ROOT", &root)?;
    }
    Ok(())
}

/// Whether a VE without a config still has something to remove.
fn has_anything(ve: &Ve) -> Result<bool> {
    let exists = |p: std::path::PathBuf| p.symlink_metadata().is_ok();
    Ok(ve.private().is_ok_and(exists)
        || ve.root().is_ok_and(exists)
        || exists(ve.dump_file())
        || ve.cgroup()?.dirs().into_iter().any(|(_, d)| d.exists()))
}
