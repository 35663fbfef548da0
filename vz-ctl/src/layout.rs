//! Who on the host may reach a VE's files: the directories that hold every VE's root and
//! private area (`/vz/root`, `/vz/private` in OpenVZ's layout) are root's alone (0700), so
//! no host user walks into a VE's tree, whose ids are the VE's and may collide with host
//! users' (vz-quota mounts the trees themselves `nosuid,nodev`).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::{IoContext, Result};
use crate::ve::Ve;

/// Makes (0700) or tightens (group and other bits off) the directories that hold VE_ROOT
/// and VE_PRIVATE, when vz.conf names them per VE (`…/$VEID`, the VE's path being that one)
/// and the directory is root's: the directory of every VE's roots is vz's, while a host path
/// such as `/srv` that only happens to hold one VE's is left as it is.
///
/// # Errors
/// I/O errors creating or changing a directory.
pub fn shield_parents(ve: &Ve) -> Result<()> {
    for (key, path) in [("VE_ROOT", ve.root()?), ("VE_PRIVATE", ve.private()?)] {
        let per_ve = ve.global.get(key).is_some_and(|raw| {
            let last = raw.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
            (last == "$VEID" || last == "${VEID}")
                && Path::new(&crate::config::expand_veid(raw, ve.ctid.get())) == path
        });
        let Some(parent) = path.parent().filter(|_| per_ve) else { continue };
        shield(parent)?;
    }
    Ok(())
}

fn shield(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() && meta.uid() == 0 && meta.mode() & 0o077 != 0 => {
            let mode = meta.mode() & 0o700;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
                .op("restrict access to", dir)
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(up) = dir.parent() {
                std::fs::create_dir_all(up).op("create", up)?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e).op("create", dir),
                _ => Ok(()),
            }
        }
        Err(e) => Err(e).op("stat", dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_parent_is_made_0700_and_an_open_one_is_tightened() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let made = tmp.path().join("a/root");
        shield(&made).expect("made");
        assert_eq!(std::fs::metadata(&made).expect("stat").mode() & 0o777, 0o700);
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        shield(&open).expect("tightened");
        assert_eq!(std::fs::metadata(&open).expect("stat").mode() & 0o777, 0o700);
    }
}
