//! Working inside a stopped VE without booting it: mount it, make its cgroup (with the
//! device allowlist) and namespaces with an init that is never released, run something in
//! there, and take it all down again. OpenVZ starts a CT briefly for `set --userpasswd` and
//! `runscript` on a stopped CT; this is that, minus running the CT's own init.

use std::time::Duration;

use crate::error::{CtlError, Result};
use crate::resources;
use crate::ve::Ve;

/// Runs `work` with the pid of a never-released init of the stopped VE; afterwards nothing
/// of it is left (init killed, cgroup removed, unmounted if this mounted it).
///
/// # Errors
/// Those of mounting and spawning, then those of `work`.
pub fn with_pending_init<T>(ve: &Ve, work: impl FnOnce(i32) -> Result<T>) -> Result<T> {
    let mounted_here = super::mount::mount(ve)?;
    let result = (|| {
        let cgroup = ve.cgroup()?;
        cgroup.create()?;
        let outcome = (|| {
            // The VE's own programs run here: under the same device allowlist as when started.
            let root = ve.root()?;
            let ubc = resources::ubc_at_start(|k| ve.get(k))?;
            let (mut spec, _, _) = super::start::prepare_init(ve, &root, &cgroup, &ubc)?;
            // No console: nothing reads it (no console server for an init that never runs),
            // and what runs here has its own stdio from the caller.
            spec.console = false;
            let pending = vz_ns::spawn_init(&spec).map_err(|e| CtlError::Start(e.into()))?;
            work(pending.pid())
            // Dropping `pending` kills the init that never ran.
        })();
        cgroup.kill_all(Duration::from_secs(5))?;
        cgroup.remove()?;
        outcome
    })();
    if mounted_here {
        super::mount::unmount_root(ve)?;
    }
    result
}
