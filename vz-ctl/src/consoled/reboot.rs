//! An in-VE `reboot`: OpenVZ's vzeventd starts such a VE again, and so does the console
//! server, which learns first that a VE's init ended (its pidfd).
//!
//! A reboot(2) with RESTART in a VE's pid namespace ends its init as if killed by SIGHUP
//! (POWER_OFF and HALT: SIGINT; `vzctl stop`: SIGINT or SIGKILL), so the init's wait status
//! tells a reboot from every other end. The server is not the init's parent, so it reads the
//! status where the kernel keeps it for others: in the pidfd once the init is reaped
//! (PIDFD_INFO_EXIT, Linux 6.15+), or while it is still a zombie in `/proc/PID/stat`
//! (field 52), trusted only if the pidfd still names an unreaped process after the read (so
//! the pid was not reused). Where neither tells (a kernel before 6.15 whose pid 1 reaped the
//! init at once), the VE stays stopped, as before, and a warning says so.

use std::os::fd::BorrowedFd;
use std::process::{Child, Command, Stdio};

use crate::Ctid;
use crate::config::GlobalConfig;

/// The wait status of an init that ended (`pid`, its `pidfd`), if the kernel still tells.
pub(super) fn exit_status(pid: i32, pidfd: BorrowedFd<'_>) -> Option<i32> {
    if let Some(status) = crate::sys::pidfd_exit_status(pidfd) {
        return Some(status);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = zombie_exit_code(&stat)?;
    crate::sys::pidfd_unreaped(pidfd).then_some(status)
}

/// Whether a wait status is an in-VE reboot's (killed by SIGHUP).
pub(super) fn is_reboot(status: i32) -> bool {
    status & 0x7f == libc::SIGHUP
}

/// The exit code (field 52) of a zombie's `/proc/PID/stat` line; `None` for a live process.
fn zombie_exit_code(stat: &str) -> Option<i32> {
    // Fields after the command name, which may hold spaces and parentheses: state is
    // field 3, exit_code field 52.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() != Some(&"Z") {
        return None;
    }
    fields.get(52 - 3)?.parse().ok()
}

/// Starts the VE `ctid` again (`vzctl start`, detached from the server's loop: the start
/// registers with the server like any other); the child is reaped by [`reap`].
pub(super) fn restart(global: &GlobalConfig, ctid: Ctid) -> Option<Child> {
    let exe = std::env::current_exe().ok()?;
    let started = Command::new(exe)
        .args(["start", &ctid.get().to_string()])
        .env(crate::config::VZ_CONFIG_ENV, global.path())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match started {
        Ok(child) => {
            tracing::info!(ctid = ctid.get(), "console server: rebooted in the VE; starting it");
            Some(child)
        }
        Err(e) => {
            tracing::warn!(ctid = ctid.get(), error = %e, "console server: cannot restart");
            None
        }
    }
}

/// Reaps the restarts that finished.
pub(super) fn reap(children: &mut Vec<Child>) {
    children.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombies_exit_code_is_field_52_and_a_live_process_has_none() {
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[0] = "Z".to_owned();
        fields[52 - 3] = "1".to_owned();
        let line = format!("42 (in (it) x) {}", fields.join(" "));
        assert_eq!(zombie_exit_code(&line), Some(1));
        fields[0] = "S".to_owned();
        let line = format!("42 (init) {}", fields.join(" "));
        assert_eq!(zombie_exit_code(&line), None);
    }

    #[test]
    fn only_sighup_is_a_reboot() {
        assert!(is_reboot(libc::SIGHUP));
        assert!(!is_reboot(libc::SIGINT));
        assert!(!is_reboot(libc::SIGKILL));
        assert!(!is_reboot(0));
        assert!(!is_reboot(1 << 8));
    }
}
