//! The sysctls of a running VE's own IPC namespace (`kernel.shm*`, `kernel.msg*`,
//! `kernel.sem`), written by the host for the beancounters (shmpages). In a VE with its own
//! user namespace only the VE's root may write them, so a child joins the VE's user and IPC
//! namespaces as the VE's root to write them.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::sched::{CloneFlags, setns};
use nix::unistd::ForkResult;

use crate::enter::wait_code;
use crate::error::{NsError, Result};
use crate::init::sync::{Msg, Receiver, channel, send};
use crate::rootfs::StepResult;
use crate::sys;
use crate::userns::{become_ve_root, has_own_userns};

/// Writes `values` (`/proc/sys/kernel/…` paths and their values) in the IPC namespace of the
/// VE whose init is `init_pid`.
///
/// # Errors
/// [`NsError::Io`] when the VE's namespaces cannot be opened, [`NsError::Setup`] naming the
/// file and the errno when a write fails.
///
/// # Privileges
/// Root with CAP_SYS_ADMIN in the initial namespaces.
pub fn set_ipc_sysctls(init_pid: i32, values: &[(&str, String)]) -> Result<()> {
    if values.is_empty() {
        return Ok(());
    }
    let own_userns = has_own_userns(init_pid)?;
    let open = |name: &str| {
        let path = format!("/proc/{init_pid}/ns/{name}");
        File::open(&path).map(OwnedFd::from).map_err(|e| NsError::io("open", &path, e))
    };
    let (userns, ipc) = (open("user")?, open("ipc")?);
    let (status_r, status_w) = channel()?;
    match sys::fork().map_err(|e| NsError::sys("fork to write the VE's sysctls", e))? {
        ForkResult::Child => {
            drop(status_r);
            let result = (|| -> StepResult {
                if own_userns {
                    become_ve_root(&userns)?;
                }
                setns(ipc.as_fd(), CloneFlags::CLONE_NEWIPC)
                    .map_err(|e| format!("join the VE's IPC namespace: {e}"))?;
                for (path, value) in values {
                    std::fs::write(Path::new(path), value)
                        .map_err(|e| format!("cannot write {value:?} to {path}: {e}"))?;
                }
                Ok(())
            })();
            match result {
                Ok(()) => sys::exit_now(0),
                Err(message) => {
                    send(&status_w, &Msg::SetupError(message));
                    sys::exit_now(1)
                }
            }
        }
        ForkResult::Parent { child } => {
            drop(status_w);
            let mut status = Receiver::new(status_r);
            let failure = match status.recv()? {
                Some(Msg::SetupError(message)) => Some(message),
                _ => None,
            };
            let code = wait_code(child)?;
            match (failure, code) {
                (Some(message), _) => Err(NsError::Setup { message }),
                (None, 0) => Ok(()),
                (None, code) => {
                    Err(NsError::Setup { message: format!("the sysctl writer exited with {code}") })
                }
            }
        }
    }
}
