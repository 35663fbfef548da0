//! Repairs after an interrupted operation: what [`crate::intent::recover`] runs for each kind
//! of intent record (the table is in [`crate::intent`]'s module doc). Every step tolerates
//! finding its work already done, so a repair interrupted in turn is simply run again.

use std::path::Path;
use std::time::Duration;

use crate::config::GlobalConfig;
use crate::ctid::{Ctid, remove_names, set_name};
use crate::error::Result;
use crate::intent::{Record, step_error};
use crate::ve::Ve;

/// Finishes or undoes the operation `record` describes on `ctid`.
///
/// # Errors
/// [`crate::CtlError::Recover`] naming the step that failed.
pub fn repair(global: &GlobalConfig, ctid: Ctid, record: &Record) -> Result<()> {
    // A config that cannot be read must not stop the repair: vz.conf's paths then apply,
    // and create/destroy recorded their own.
    let ve = Ve::load(global.clone(), ctid).unwrap_or_else(|_| Ve {
        ctid,
        global: global.clone(),
        config: None,
    });
    match record.op() {
        "create" => undo_create(&ve, record),
        "start" if record.flag("was_running", true) => Ok(()),
        "start" => tear_down(&ve, !record.flag("was_mounted", false)),
        "stop" => tear_down(&ve, !record.flag("skip_umount", false)),
        "mount" | "umount" => {
            if !ve.cgroup()?.has_tasks() {
                unmount(&ve)?;
            }
            Ok(())
        }
        "set" => {
            if !record.flag("was_running", true) {
                // A pending init that set made in the stopped VE for --userpasswd.
                tear_down(&ve, !record.flag("was_mounted", true))?;
            }
            sync_names(&ve)
        }
        "destroy" => super::destroy::remove_all(&ve, Some(record)),
        "snapshot" | "snapshot-switch" | "snapshot-delete" => super::snapshot::repair(&ve, record),
        "compact" => super::compact::repair(&ve, record),
        "convert" => super::convert::repair(&ve, record),
        other => {
            tracing::warn!("CT {ctid}: unknown interrupted operation {other:?}: record dropped");
            Ok(())
        }
    }
}

/// Kills every task of the VE, removes its network and cgroup, and unmounts it if `umount`.
///
/// # Errors
/// [`crate::CtlError::Recover`] naming the step that failed.
pub(crate) fn tear_down(ve: &Ve, umount: bool) -> Result<()> {
    let cgroup = ve.cgroup()?;
    if !cgroup.kill_all(Duration::from_secs(10))? {
        return Err(step_error("kill the tasks", format!("{:?} survive", cgroup.pids())));
    }
    super::net::teardown(ve, &super::net::netifs(ve).unwrap_or_default());
    cgroup.remove()?;
    if umount {
        unmount(ve)?;
    }
    Ok(())
}

/// Unmounts VE_ROOT (and what is below it) if mounted; no action scripts.
fn unmount(ve: &Ve) -> Result<()> {
    let Ok(root) = ve.root() else { return Ok(()) };
    if root.exists()
        && vz_quota::PrivateArea::is_mounted(&root).map_err(|e| step_error("read mounts", e))?
    {
        vz_quota::PrivateArea::umount(&root).map_err(|e| step_error("unmount", e))?;
    }
    Ok(())
}

/// Undoes a create: unmount, private area, VE_ROOT, the config (if create made it), names.
fn undo_create(ve: &Ve, record: &Record) -> Result<()> {
    let root = record.path("root").or_else(|| ve.root().ok());
    let private = record.path("private").or_else(|| ve.private().ok());
    if let Some(root) = &root
        && root.exists()
        && vz_quota::PrivateArea::is_mounted(root).map_err(|e| step_error("read mounts", e))?
    {
        vz_quota::PrivateArea::umount(root).map_err(|e| step_error("unmount", e))?;
    }
    if let Some(private) = &private {
        remove_private(private)?;
    }
    if let Some(root) = &root {
        remove_empty_dir(root);
    }
    let conf = ve.config_path();
    if !record.flag("conf_existed", true) {
        match std::fs::remove_file(&conf) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(step_error(&format!("remove {}", conf.display()), e));
            }
            _ => {}
        }
        remove_names(&ve.global.names_dir(), &conf)?;
    }
    Ok(())
}

/// Removes a private area in whatever state: a symlink, a complete area (image detached
/// first if still attached), or a half-made directory.
pub(crate) fn remove_private(private: &Path) -> Result<()> {
    let Ok(meta) = private.symlink_metadata() else { return Ok(()) };
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return std::fs::remove_file(private)
            .map_err(|e| step_error(&format!("remove {}", private.display()), e));
    }
    let destroyed = vz_quota::PrivateArea::open(private).and_then(vz_quota::PrivateArea::destroy);
    if let Err(e) = destroyed {
        tracing::info!("private area {}: {e}; removing the directory", private.display());
        std::fs::remove_dir_all(private)
            .map_err(|e| step_error(&format!("remove {}", private.display()), e))?;
    }
    Ok(())
}

/// Removes `dir` if it is an empty directory (a mount point vz made).
pub(crate) fn remove_empty_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::info!("leaving {}: {e}", dir.display());
    }
}

/// Makes the name links match NAME in CTID.conf (a set --name killed between link and save).
fn sync_names(ve: &Ve) -> Result<()> {
    let conf = ve.config_path();
    let Some(config) = &ve.config else { return remove_names(&ve.global.names_dir(), &conf) };
    let names = ve.global.names_dir();
    let Ok(entries) = std::fs::read_dir(&names) else {
        return match config.name() {
            Some(name) => set_name(&names, name, &conf),
            None => Ok(()),
        };
    };
    for entry in entries.flatten() {
        let link = entry.path();
        let ours = std::fs::read_link(&link).is_ok_and(|t| t == conf);
        let wanted = entry.file_name().to_str().is_some_and(|n| config.name() == Some(n));
        if ours && !wanted {
            std::fs::remove_file(&link)
                .map_err(|e| step_error(&format!("remove {}", link.display()), e))?;
        }
    }
    match config.name() {
        Some(name) => set_name(&names, name, &conf),
        None => Ok(()),
    }
}
