//! Killing a VE's processes (OpenVZ's `chkpnt --kill`): SIGKILL by pid to the init and to
//! every task of its cgroups, a thaw so frozen tasks can die, and a wait for them to go.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill as send_signal};
use nix::unistd::Pid;

use crate::check::{stat, tasks};
use crate::error::{CptError, Result};
use vz_cgroup::Freezer;

/// How long [`kill`] waits for the killed tasks to exit.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Kills the VE: its init (which ends its pid namespace) and every task listed in
/// `cgroup_procs` (or their sub-cgroups), thaws `freezer` so frozen tasks die, and waits
/// until no live task is left (zombies waiting for their reaper count as gone).
///
/// After a `leave_running` dump the VE's sockets are live again: killing the VE closes its
/// TCP connections (FIN/RST to the peers) unless the caller has cut the VE's network first
/// (vz-ctl removes the host ends before it kills).
///
/// # Errors
/// [`CptError::Cgroup`] when a `cgroup.procs` file cannot be read; [`CptError::KillTimeout`]
/// when tasks are still alive after 10 s.
///
/// # Privileges
/// Root (signals to the VE's processes, the freezer).
pub fn kill(init_pid: i32, cgroup_procs: &[PathBuf], freezer: Option<&Freezer>) -> Result<()> {
    let _ = send_signal(Pid::from_raw(init_pid), Signal::SIGKILL);
    for pid in tasks(cgroup_procs)? {
        let _ = send_signal(Pid::from_raw(pid), Signal::SIGKILL);
    }
    if let Some(freezer) = freezer {
        freezer.thaw()?;
    }
    let start = Instant::now();
    loop {
        let alive: Vec<i32> = tasks(cgroup_procs)?
            .into_iter()
            .filter(|&p| stat(p).is_some_and(|s| s.state != 'Z'))
            .collect();
        let init_alive = stat(init_pid).is_some_and(|s| s.state != 'Z');
        if alive.is_empty() && !init_alive {
            return Ok(());
        }
        if start.elapsed() > KILL_WAIT {
            let cgroup = cgroup_procs.first().cloned().unwrap_or_default();
            return Err(CptError::KillTimeout { cgroup, count: alive.len() });
        }
        for &pid in &alive {
            let _ = send_signal(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
