//! `vzctl stop`: ask the VE's init to power off, wait, then freeze and kill what remains;
//! remove the cgroup and unmount. Afterwards no process, cgroup or mount of the VE is left.

use std::time::{Duration, Instant};

use crate::error::{CtlError, Result};
use crate::intent::{self, Intent, crash_point};
use crate::output::say;
use crate::scripts::{self, DEFAULT_PATH};
use crate::ve::Ve;

/// How long the final kill may take before stop fails.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `vzctl stop`.
#[derive(Debug, Default, Clone, Copy)]
pub struct StopOptions {
    /// `--fast`: kill at once, no clean shutdown.
    pub fast: bool,
    /// `--skip-umount`: leave VE_ROOT mounted.
    pub skip_umount: bool,
}

/// Stops the VE. The caller holds its lock.
///
/// # Errors
/// 33 when the VE's tasks cannot be killed, 51 when unmounting fails.
pub fn stop(ve: &Ve, opts: StopOptions) -> Result<()> {
    ve.config()?;
    let _intent = Intent::begin(
        &ve.global,
        ve.ctid,
        "stop",
        &[("skip_umount", intent::flag(opts.skip_umount))],
    )?;
    let cgroup = ve.cgroup()?;
    if !cgroup.has_tasks() {
        say("Unable to stop: container is not running");
        return cleanup(ve, opts);
    }
    say("Stopping container ...");
    super::set_live::return_netdevs(ve);
    if !opts.fast
        && let Ok(pid) = ve.init_pid()
    {
        if let Err(e) = scripts::run_ve_script(ve, pid, "stop") {
            tracing::warn!("{e}");
        }
        request_halt(ve, pid);
        wait_empty(ve, pid, Duration::from_secs(ve.config()?.stop_timeout()));
    }
    if cgroup.has_tasks() {
        say("Killing container ...");
        let empty = cgroup.kill_all(KILL_TIMEOUT)?;
        if !empty {
            return Err(CtlError::Stop(
                format!("tasks {:?} of CT {} survived SIGKILL", cgroup.pids(), ve.ctid).into(),
            ));
        }
    }
    crash_point("stop:killed");
    say("Container was stopped");
    cleanup(ve, opts)
}

/// Runs `halt` in the VE, the way OpenVZ asks a VE to shut down. Its init then powers off,
/// which in a pid namespace ends the namespace.
fn request_halt(ve: &Ve, pid: i32) {
    let env = vec![("PATH".to_owned(), DEFAULT_PATH.to_owned())];
    let argv = vec!["/bin/sh".to_owned(), "-c".to_owned(), "exec halt".to_owned()];
    match scripts::run_inside(ve, pid, argv, env, vz_ns::TtyMode::Pipes) {
        Ok(0) => {}
        Ok(code) => tracing::warn!("halt in CT {} exited with {code}", ve.ctid),
        Err(e) => tracing::warn!("{e}"),
    }
}

/// Polls until the VE's cgroup has no tasks or `timeout` passes, or until its init `pid`
/// is the only task left and only pauses (asleep in nanosleep): the shutdown is done, and
/// busybox's init would sleep seconds before it exits. The caller kills what is left.
fn wait_empty(ve: &Ve, pid: i32, timeout: Duration) {
    let Ok(cgroup) = ve.cgroup() else { return };
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !cgroup.has_tasks() || (cgroup.pids() == [pid] && pausing(pid)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the process `pid` sleeps in nanosleep (its kernel wait channel), checked twice
/// 5 ms apart so a passing sleep is not taken for the final pause.
fn pausing(pid: i32) -> bool {
    let sleeping = || {
        std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("nanosleep"))
    };
    sleeping() && {
        std::thread::sleep(Duration::from_millis(5));
        sleeping()
    }
}

/// Removes the VE's cgroup and unmounts it (unless `--skip-umount`).
fn cleanup(ve: &Ve, opts: StopOptions) -> Result<()> {
    super::net::teardown(ve, &super::net::netifs(ve).unwrap_or_default());
    ve.cgroup()?.remove()?;
    crash_point("stop:cgroup-removed");
    if !opts.skip_umount && ve.is_mounted()? {
        super::mount::unmount_root(ve)?;
        say("Container is unmounted");
    }
    Ok(())
}
