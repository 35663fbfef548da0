//! The two children that become the VE's init. They run after fork, report failures over
//! the status pipe as text and leave only through exec or `_exit`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sched::{CloneFlags, unshare};
use nix::unistd::ForkResult;

use super::ChildPlan;
use super::sync::{Msg, send};
use crate::rootfs::{self, StepResult};
use crate::sys;

/// The namespaces a VE gets.
pub(crate) const VE_NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWNS
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWIPC)
    .union(CloneFlags::CLONE_NEWNET)
    .union(CloneFlags::CLONE_NEWPID)
    .union(CloneFlags::CLONE_NEWCGROUP);

/// Writes our pid into each `cgroup.procs` file.
pub(crate) fn join_cgroups(files: &[std::path::PathBuf]) -> StepResult {
    let pid = std::process::id().to_string();
    for file in files {
        std::fs::write(file, &pid).map_err(|e| format!("join cgroup {}: {e}", file.display()))?;
    }
    Ok(())
}

/// The first child: cgroups, fds, namespaces, fork init, report its pid, exit.
///
/// A VE with an id map is made by [`super::unprivileged::spawn`]. Without one (a privileged
/// VE) this process unshares every namespace but the user one and forks the init, which
/// builds its own mounts.
pub(super) fn intermediate(
    plan: &ChildPlan,
    status: OwnedFd,
    go: OwnedFd,
    tree: Option<OwnedFd>,
) -> ! {
    let result = (|| -> StepResult<i32> {
        join_cgroups(&plan.cgroup_procs)?;
        let mut keep = vec![status.as_raw_fd(), go.as_raw_fd()];
        keep.extend(tree.as_ref().map(AsRawFd::as_raw_fd));
        sys::close_fds_except(&keep).map_err(|e| format!("close inherited fds: {e}"))?;
        if let (Some(map), Some(tree)) = (&plan.id_map, tree) {
            return super::unprivileged::spawn(plan, &status, &go, map, tree);
        }
        unshare(VE_NAMESPACES).map_err(|e| format!("unshare namespaces: {e}"))?;
        super::timens::clocks_from_zero()?;
        match sys::fork().map_err(|e| format!("fork init: {e}"))? {
            ForkResult::Child => privileged_init(plan, &status, &go),
            ForkResult::Parent { child } => Ok(child.as_raw()),
        }
    })();
    match result {
        Ok(pid) => {
            send(&status, &Msg::Pid(pid));
            sys::exit_now(0)
        }
        Err(message) => {
            send(&status, &Msg::SetupError(message));
            sys::exit_now(1)
        }
    }
}

/// A privileged VE's init: builds its mounts itself, then [`finish_init`].
fn privileged_init(plan: &ChildPlan, status: &OwnedFd, go: &OwnedFd) -> ! {
    let setup = (|| -> StepResult {
        nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
        let view = rootfs::RootView {
            root: &plan.root,
            tree: None,
            proc: None,
            id_map: None,
            pty_max: plan.pty_max,
            quota_device: plan.quota_device.as_ref(),
            run_tmpfs: plan.run_tmpfs,
            proc_view: plan.proc_view.as_ref(),
            console: plan.console,
        };
        rootfs::enter_root(view)?;
        plan.rlimits.apply()
    })();
    if let Err(message) = setup {
        send(status, &Msg::SetupError(message));
        sys::exit_now(1);
    }
    finish_init(plan, status, go)
}

/// The VE's init in its final namespaces and root: hostname, its console (the master to the
/// parent), the seccomp filter (its quotactl listener to the parent), "ready", wait for
/// "go", capabilities, stdio, exec.
pub(super) fn finish_init(plan: &ChildPlan, status: &OwnedFd, go: &OwnedFd) -> ! {
    let setup = (|| -> StepResult<(Option<OwnedFd>, Option<OwnedFd>)> {
        if let Some(name) = &plan.hostname {
            nix::unistd::sethostname(name).map_err(|e| format!("sethostname {name}: {e}"))?;
        }
        // The first pty of the VE's fresh devpts: pts/0, where /dev/console links to.
        let console = if plan.console {
            let (master, slave) = crate::pty::open_in_ve().map_err(|e| format!("console: {e}"))?;
            send(status, &Msg::Terminal(master));
            Some(slave)
        } else {
            None
        };
        // Installed while init still has CAP_SYS_ADMIN (in the VE's user namespace for an
        // unprivileged VE); every process of the VE inherits it. Init keeps no copy of the
        // listener.
        let listener = crate::seccomp::install(&plan.seccomp, plan.intercept_quotactl)?;
        Ok((console, listener))
    })();
    let console = match setup {
        Ok((console, listener)) => {
            if let Some(listener) = listener {
                send(status, &Msg::Listener(listener));
            }
            console
        }
        Err(message) => {
            send(status, &Msg::SetupError(message));
            sys::exit_now(1);
        }
    };
    send(status, &Msg::Ready);
    let mut byte = [0_u8; 1];
    if !matches!(nix::unistd::read(go, &mut byte), Ok(1)) || byte[0] != b'G' {
        // The parent went away or gave up: no VE.
        sys::exit_now(1);
    }
    if let Err(message) = before_exec(plan, console) {
        send(status, &Msg::SetupError(message));
        sys::exit_now(1);
    }
    let message = plan.exec.exec();
    send(status, &Msg::ExecError(message));
    sys::exit_now(127)
}

fn before_exec(plan: &ChildPlan, console: Option<OwnedFd>) -> StepResult {
    plan.caps.restrict_current(plan.last_cap)?;
    match console {
        Some(slave) => stdio_to(&slave, "the console")?,
        None => stdio_to_dev_null()?,
    }
    sys::reset_signals();
    Ok(())
}

/// Points fds 0, 1, 2 at the VE's own /dev/null.
fn stdio_to_dev_null() -> StepResult {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("open /dev/null in the VE: {e}"))?;
    stdio_to(&null, "/dev/null")
}

/// Points fds 0, 1, 2 at `file` (the original, close-on-exec, goes at exec).
fn stdio_to(file: &impl AsFd, what: &str) -> StepResult {
    for fd in 0..=2 {
        sys::dup_onto_stdio(file.as_fd(), fd).map_err(|e| format!("dup {what} onto {fd}: {e}"))?;
    }
    Ok(())
}
