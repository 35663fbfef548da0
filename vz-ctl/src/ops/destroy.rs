//! `vzctl destroy`: removes the private area, renames the config to `.destroyed`, removes
//! VE_ROOT, the dump file and the name links.

use crate::ctid::remove_names;
use crate::error::{CtlError, IoContext, Result};
use crate::output::say;
use crate::ve::Ve;

/// Destroys a stopped, unmounted VE. The caller holds its lock.
///
/// # Errors
/// 32 running, 41 mounted, 52 when removal fails.
pub fn destroy(ve: &Ve) -> Result<()> {
    ve.config()?;
    let status = ve.status()?;
    if status.running {
        return Err(CtlError::Running);
    }
    if status.mounted {
        return Err(CtlError::Mounted);
    }
    let private = ve.private()?;
    if private.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(&private).op("remove private area link", &private)?;
    } else if private.exists() {
        let area =
            vz_quota::PrivateArea::open(&private).map_err(|e| CtlError::Destroy(e.into()))?;
        area.destroy().map_err(|e| CtlError::Destroy(e.into()))?;
    }
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
    let dump = ve.dump_file();
    if dump.is_dir() {
        // A CRIU images directory (vzctl chkpnt).
        std::fs::remove_dir_all(&dump).op("remove dump", &dump)?;
    } else if dump.exists() {
        std::fs::remove_file(&dump).op("remove dump file", &dump)?;
    }
    if let Ok(root) = ve.root()
        && root.exists()
    {
        std::fs::remove_dir(&root).op("remove VE_ROOT", &root)?;
    }
    say("Container private area was destroyed");
    Ok(())
}
