//! `snapshot-switch`, `snapshot-delete`, `snapshot-mount`, `snapshot-umount`, and the repair
//! of a killed switch.

use std::path::{Path, PathBuf};

use super::{DUMP, IMAGE, Snapshot, Store, VE_CONF, braced, code, fail};
use crate::config::ConfigFile;
use crate::error::{CtlError, IoContext, Result, chain};
use crate::intent::{Intent, Record, crash_point, flag, step_error};
use crate::output::{say, warn};
use crate::ve::Ve;

/// Options of `vzctl snapshot-switch`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SwitchOptions {
    /// `--skip-resume`: leave the VE stopped even if the snapshot has a dump.
    pub skip_resume: bool,
    /// `--must-resume`: fail if the VE cannot be restored from the snapshot's dump.
    pub must_resume: bool,
    /// `--skip-config`: keep the current CTID.conf.
    pub skip_config: bool,
}

/// The temporary beside the image that the snapshot's copy is made in.
fn image_tmp(image: &Path) -> PathBuf {
    image.with_file_name("root.img.switch")
}

/// `vzctl snapshot-switch`: the VE's current state is replaced by snapshot `uuid`: a
/// running VE is killed, the image and (unless `--skip-config`) CTID.conf come back from
/// the snapshot, and a snapshot with a memory dump is restored (unless `--skip-resume`).
/// The caller holds the VE's lock.
///
/// # Errors
/// 20 for `--skip-resume` with `--must-resume`; 159 for the directory layout, an unknown
/// UUID, `--must-resume` without a dump or a failed restore, or a failing step.
pub fn switch(ve: &Ve, uuid: &str, opts: SwitchOptions) -> Result<()> {
    if opts.skip_resume && opts.must_resume {
        return Err(CtlError::Usage("--skip-resume and --must-resume are exclusive".into()));
    }
    let store = Store::of(ve, code::SWITCH)?;
    let snap = store.find(uuid, code::SWITCH)?;
    if opts.must_resume && !snap.dump {
        return Err(fail(code::SWITCH, "Error: no dump in snapshot, unable to resume"));
    }
    let mut intent = Intent::begin(
        &ve.global,
        ve.ctid,
        "snapshot-switch",
        &[
            ("uuid", uuid.to_owned()),
            ("phase", "stop".into()),
            ("skip_config", flag(opts.skip_config)),
        ],
    )?;
    say(format!("Switching to snapshot {}", braced(uuid)));
    let switched = (|| {
        if ve.cgroup()?.has_tasks() {
            let fast = super::super::stop::StopOptions { fast: true, skip_umount: false };
            super::super::stop::stop(ve, fast)?;
        } else if ve.is_mounted()? {
            super::super::mount::unmount_root(ve)?;
        }
        let image = store.image();
        let tmp = image_tmp(&image);
        if tmp.exists() {
            std::fs::remove_file(&tmp).op("remove", &tmp)?;
        }
        vz_quota::copy_image(&store.path(uuid).join(IMAGE), &tmp)
            .map_err(|e| fail(code::SWITCH, chain(&e)))?;
        crash_point("snapshot-switch:copied");
        intent.note("phase", "image")?;
        finish(ve, &store, &snap, opts.skip_config)
    })();
    if let Err(e) = switched {
        let _ = std::fs::remove_file(image_tmp(&store.image()));
        return Err(fail(code::SWITCH, chain(&e)));
    }
    drop(intent);
    if snap.dump && !opts.skip_resume {
        let ve = Ve::load(ve.global.clone(), ve.ctid)?;
        let restore = super::super::cpt::RestoreOptions {
            dumpfile: Some(store.path(uuid).join(DUMP)),
            lazy_pages: false,
        };
        if let Err(e) = super::super::cpt::restore(&ve, &restore) {
            if opts.must_resume {
                return Err(fail(
                    code::SWITCH,
                    format!("Error: failed to resume CT: {}", chain(&e)),
                ));
            }
            warn(format!(
                "Warning: failed to resume CT, ignoring (use --must-resume to treat as error): {}",
                chain(&e)
            ));
        }
    }
    say("Container has been successfully switched to another snapshot");
    Ok(())
}

/// The switch from the image copy on: the copy renamed over the image, CTID.conf back
/// (unless `skip_config` or the snapshot has none), `current` set. Each step may be run
/// again (the repair of a killed switch does).
fn finish(ve: &Ve, store: &Store, snap: &Snapshot, skip_config: bool) -> Result<()> {
    let image = store.image();
    let tmp = image_tmp(&image);
    if tmp.exists() {
        std::fs::rename(&tmp, &image).op("rename", &tmp)?;
    }
    crash_point("snapshot-switch:image-replaced");
    if snap.config && !skip_config {
        let saved =
            ConfigFile::load(&store.path(&snap.uuid).join(VE_CONF)).map_err(CtlError::Config)?;
        saved.write_atomic(&ve.config_path()).map_err(CtlError::SaveConfig)?;
    }
    store.set_current(&snap.uuid)
}

/// Repairs a killed switch: before its image copy was complete, the VE is left stopped
/// with its image as it was; after, the switch is finished (the VE is left stopped).
pub(super) fn repair(ve: &Ve, store: &Store, record: &Record) -> Result<()> {
    super::super::recover::tear_down(ve, true)?;
    let image = store.image();
    let uuid = record.get("uuid").unwrap_or_default();
    if record.get("phase") == Some("image")
        && let Ok(snap) = store.find(uuid, code::SWITCH)
    {
        finish(ve, store, &snap, record.flag("skip_config", false))
            .map_err(|e| step_error("finish the switch", chain(&e)))?;
        crate::output::say(format!("Switch to snapshot {} finished; CT is stopped", braced(uuid)));
    }
    let tmp = image_tmp(&image);
    if tmp.exists() {
        std::fs::remove_file(&tmp).map_err(|e| step_error("remove the image copy", e))?;
    }
    Ok(())
}

/// `vzctl snapshot-delete`: removes snapshot `uuid`; its children descend from its parent
/// now, and if the current state descended from it, it descends from its parent.
///
/// # Errors
/// 158 for the directory layout, an unknown UUID, a mounted snapshot, or a failing step.
pub fn delete(ve: &Ve, uuid: &str) -> Result<()> {
    let store = Store::of(ve, code::DELETE)?;
    let snap = store.find(uuid, code::DELETE)?;
    let image = store.path(uuid).join(IMAGE);
    let mounted = vz_quota::mounts_of_image(&image).map_err(|e| fail(code::DELETE, chain(&e)))?;
    if let Some(target) = mounted.first() {
        return Err(fail(
            code::DELETE,
            format!(
                "Snapshot {} is mounted at {}; umount it first",
                braced(uuid),
                target.display()
            ),
        ));
    }
    let _intent = Intent::begin(&ve.global, ve.ctid, "snapshot-delete", &[("uuid", uuid.into())])?;
    say(format!("Deleting snapshot {}", braced(uuid)));
    let deleted = (|| {
        for mut child in store.all()?.into_iter().filter(|s| s.parent == uuid) {
            child.parent.clone_from(&snap.parent);
            store.save(&store.path(&child.uuid), &child)?;
        }
        if store.current() == uuid {
            store.set_current(&snap.parent)?;
        }
        let doomed = store.doomed(uuid);
        std::fs::rename(store.path(uuid), &doomed).op("rename", &doomed)?;
        crash_point("snapshot-delete:renamed");
        std::fs::remove_dir_all(&doomed).op("remove", &doomed)
    })();
    deleted.map_err(|e| fail(code::DELETE, chain(&e)))?;
    say(format!("Snapshot {} has been successfully deleted", braced(uuid)));
    Ok(())
}

/// `vzctl snapshot-mount`: mounts snapshot `uuid`'s image read-only at `target` (an
/// existing directory). One mount system call: nothing to repair if killed (the loop device
/// detaches by itself when unmounted).
///
/// # Errors
/// 160 for the directory layout, an unknown UUID, a missing target, a snapshot already
/// mounted, or a failing mount.
pub fn mount(ve: &Ve, uuid: &str, target: &Path) -> Result<()> {
    let store = Store::of(ve, code::MOUNT)?;
    store.find(uuid, code::MOUNT)?;
    if !target.is_dir() {
        return Err(fail(code::MOUNT, format!("Target {} is not a directory", target.display())));
    }
    let image = store.path(uuid).join(IMAGE);
    let mounted = vz_quota::mounts_of_image(&image).map_err(|e| fail(code::MOUNT, chain(&e)))?;
    if let Some(at) = mounted.first() {
        let message = format!("Snapshot {} is already mounted at {}", braced(uuid), at.display());
        return Err(fail(code::MOUNT, message));
    }
    say(format!("Mounting snapshot {} to {}", braced(uuid), target.display()));
    vz_quota::mount_read_only(&image, target).map_err(|e| fail(code::MOUNT, chain(&e)))
}

/// `vzctl snapshot-umount`: unmounts snapshot `uuid` wherever it is mounted.
///
/// # Errors
/// 161 for the directory layout, an unknown UUID, a snapshot not mounted, or a failing
/// unmount.
pub fn umount(ve: &Ve, uuid: &str) -> Result<()> {
    let store = Store::of(ve, code::UMOUNT)?;
    store.find(uuid, code::UMOUNT)?;
    let image = store.path(uuid).join(IMAGE);
    let mounted = vz_quota::mounts_of_image(&image).map_err(|e| fail(code::UMOUNT, chain(&e)))?;
    if mounted.is_empty() {
        return Err(fail(code::UMOUNT, format!("Snapshot {} is not mounted", braced(uuid))));
    }
    say(format!("Umounting snapshot {}", braced(uuid)));
    for target in mounted {
        vz_quota::PrivateArea::umount(&target).map_err(|e| fail(code::UMOUNT, chain(&e)))?;
    }
    Ok(())
}
