//! The VE's init: [`spawn_init`] makes it in new namespaces and holds it before exec
//! ([`PendingInit`]) so the caller can configure the VE's network; [`PendingInit::release`]
//! lets it exec.
//!
//! Shape (for checkpointing with CRIU): a first child joins the VE's cgroups, closes every fd
//! above 2, makes the VE's namespaces (for an unprivileged VE the user namespace first, see
//! [`crate::userns`]) and forks the VE's init (pid 1 of the new pid namespace), then exits.
//! The VE also gets a time namespace of its own whose monotonic and boot clocks start at
//! zero ([`timens`]), made just before init is forked. Init calls setsid(), builds its
//! mounts as host root, pivots into the root, becomes the root of the VE's user namespace
//! in a mount namespace of its own (the mounts are locked then), sets the hostname, installs the seccomp filter (with its listener, which
//! travels to the parent over the status channel, when quotactl or sysinfo is intercepted), says "ready" and waits for
//! "go"; then it reduces its capabilities, points stdio at the VE's console (or its
//! /dev/null) and execs with a clean environment.
//!
//! The console ([`InitSpec::console`]): before "ready" the init opens the first pty of the
//! VE's own devpts instance (`pts/0`, which /dev/console links to) from inside the VE, so no
//! host tty ever reaches VE code; the slave becomes its stdio, the master travels to the
//! parent ([`PendingInit::take_console`]), whose console server holds it.

pub(crate) mod child;
pub(crate) mod sync;
pub(crate) mod timens;
mod unprivileged;

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};

use crate::caps::{CapSet, last_cap};
use crate::devices::{DeviceRule, QuotaDevice};
use crate::error::{NsError, Result};
use crate::exec::ExecPlan;
use crate::rlimit::{Rlimit, RlimitPlan};
use crate::seccomp::SeccompPolicy;
use crate::sys;
use crate::userns::IdMap;
use sync::{Msg, Receiver};

/// What the VE's init is and where it runs.
#[derive(Debug, Clone)]
pub struct InitSpec {
    /// VE_ROOT, already mounted by the caller in the host mount namespace.
    pub root: PathBuf,
    /// The VE's hostname, set in its uts namespace.
    pub hostname: Option<String>,
    /// The program and its arguments, e.g. `["/sbin/init"]`.
    pub argv: Vec<String>,
    /// The complete, clean environment of init.
    pub env: Vec<(String, String)>,
    /// `cgroup.procs` files init joins before its namespaces exist.
    pub cgroup_procs: Vec<PathBuf>,
    /// The capability bounding set the VE keeps.
    pub caps: CapSet,
    /// The device allowlist of the VE (informational: the /dev init builds is the minimal
    /// one of [`crate::default_device_rules`]; the caller applies the allowlist to the cgroup).
    pub devices: Vec<DeviceRule>,
    /// The number of ptys the VE's devpts instance may hold (its `max=` mount option, from
    /// OpenVZ's numpty); `None` for the kernel's own bound. Values above the kernel's maximum
    /// (2^20) are that maximum.
    pub pty_max: Option<u64>,
    /// Resource limits set on init before exec, inherited by every process it starts. A hard
    /// limit above what the caller may set is lowered to the caller's hard limit (warning).
    pub rlimits: Vec<Rlimit>,
    /// The root file system's device, made as an inert node in the VE's /dev for the quota
    /// tools (the caller adds [`QuotaDevice::rule`] to the cgroup's allowlist).
    pub quota_device: Option<QuotaDevice>,
    /// A server's [`crate::ListenerInbox`] socket: the VE's seccomp filter hands the
    /// `quotactl(2)` calls of its processes to it (see [`crate::SyscallListener`]); `None`
    /// to leave quotactl to the kernel.
    pub quotactl_server: Option<PathBuf>,
    /// The VE's user namespace map: `Some` for an unprivileged VE (its root is a range of
    /// host ids, its root file system an idmapped mount of `root`); `None` for a privileged
    /// VE whose root is the host's root (no security boundary).
    pub id_map: Option<IdMap>,
    /// The seccomp policy of every process of the VE.
    pub seccomp: SeccompPolicy,
    /// A tmpfs on /run, /run/lock and /tmp, as systemd expects of a container manager.
    pub run_tmpfs: bool,
    /// The VE's own view of its resources: files of a running lxcfs bound over its /proc and
    /// /sys files before its mounts are locked; `None` leaves the kernel's (host-wide) files.
    pub proc_view: Option<crate::ProcView>,
    /// Give the VE a console of its own: a pty of its devpts (one more than `pty_max`) whose
    /// slave is /dev/console and the init's stdio; its master is
    /// [`PendingInit::take_console`]. `false`: stdio is the VE's /dev/null and /dev/console
    /// the host's node, which nothing in the VE may open.
    pub console: bool,
}

/// An init that is set up and waits for [`PendingInit::release`]. Dropping it unreleased
/// kills the init (SIGKILL by pid), and with it the whole VE pid namespace.
#[derive(Debug)]
pub struct PendingInit {
    pid: i32,
    go: Option<OwnedFd>,
    status: Receiver,
    released: bool,
    console: Option<OwnedFd>,
    listener: Option<OwnedFd>,
}

/// A running VE init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitHandle {
    /// Host pid of the VE's init (pid 1 inside).
    pub pid: i32,
}

/// Everything the children need, prepared before fork.
#[derive(Debug)]
pub(crate) struct ChildPlan {
    pub(crate) root: PathBuf,
    pub(crate) hostname: Option<String>,
    pub(crate) cgroup_procs: Vec<PathBuf>,
    pub(crate) caps: CapSet,
    pub(crate) last_cap: u32,
    pub(crate) exec: ExecPlan,
    pub(crate) pty_max: Option<u64>,
    pub(crate) rlimits: RlimitPlan,
    pub(crate) quota_device: Option<QuotaDevice>,
    pub(crate) intercept_quotactl: bool,
    pub(crate) id_map: Option<IdMap>,
    pub(crate) seccomp: SeccompPolicy,
    pub(crate) run_tmpfs: bool,
    pub(crate) proc_view: Option<crate::ProcView>,
    pub(crate) console: bool,
}

/// Makes the VE's init in new namespaces and waits until it is set up (mounts, pivot_root,
/// hostname); it then waits for [`PendingInit::release`].
///
/// # Errors
/// [`NsError::BadSpec`] for unusable fields, [`NsError::Io`] if the root is not a
/// directory, [`NsError::Setup`] with the child's report when a step failed (joining a
/// cgroup, unshare, a mount, pivot_root). Nothing is left running on error.
///
/// # Privileges
/// Root with CAP_SYS_ADMIN in the initial namespaces. The caller must be single-threaded
/// or tolerate fork in a threaded process (glibc).
pub fn spawn_init(spec: &InitSpec) -> Result<PendingInit> {
    let plan = prepare(spec)?;
    // The VE's root as a detached tree, idmapped by the intermediate child once the VE's
    // user namespace exists; taken here, from the host's mount namespace.
    let tree = match spec.id_map {
        Some(_) => Some(
            sys::open_tree_clone(&spec.root)
                .map_err(|e| NsError::io("clone the mount tree of", &spec.root, e.into()))?,
        ),
        None => None,
    };
    let (status_r, status_w) = sync::channel()?;
    let (go_r, go_w) = pipe()?;
    match sys::fork().map_err(|e| NsError::sys("fork the VE's init", e))? {
        ForkResult::Child => {
            drop(status_r);
            drop(go_w);
            child::intermediate(&plan, status_w, go_r, tree)
        }
        ForkResult::Parent { child } => {
            drop(status_w);
            drop(go_r);
            drop(tree);
            let mut status = Receiver::new(status_r);
            let server = spec.quotactl_server.as_deref();
            let mut console = None;
            let mut listener = None;
            let first = init_pid(&mut status, server, &mut console, &mut listener);
            let _ = waitpid(child, None);
            let (pid, ready) = first?;
            let mut pending =
                PendingInit { pid, go: Some(go_w), status, released: false, console, listener };
            if ready {
                Ok(pending)
            } else {
                pending.wait_ready(server)?;
                Ok(pending)
            }
        }
    }
}

/// Reads until the intermediate child's report of the init's pid; whether the init's
/// "ready" came first. Both children write to the channel, and the init may finish its
/// setup before the intermediate, descheduled after fork, sends the pid. The console's
/// master, when the init sends it, goes to `console`, its seccomp listener to the quotactl
/// `server` or else to `listener`.
fn init_pid(
    status: &mut Receiver,
    server: Option<&Path>,
    console: &mut Option<OwnedFd>,
    listener: &mut Option<OwnedFd>,
) -> Result<(i32, bool)> {
    let mut ready = false;
    loop {
        match status.recv()? {
            Some(Msg::Pid(pid)) => return Ok((pid, ready)),
            Some(Msg::Ready) => ready = true,
            Some(Msg::Listener(fd)) => *listener = deliver_listener(server, fd)?,
            Some(Msg::Terminal(master)) => *console = Some(master),
            Some(Msg::SetupError(message)) => return Err(NsError::Setup { message }),
            Some(Msg::ExecError(_) | Msg::Mount(_) | Msg::MountNamespace(_)) | None => {
                return Err(NsError::ChildVanished { what: "the init's pid" });
            }
        }
    }
}

/// Hands the init's seccomp listener to the quotactl server (which then answers sysinfo
/// too); without one it is the caller's ([`PendingInit::take_listener`]).
fn deliver_listener(server: Option<&Path>, fd: OwnedFd) -> Result<Option<OwnedFd>> {
    match server {
        Some(server) => crate::intercept::send_listener(server, fd.as_fd()).map(|()| None),
        None => Ok(Some(fd)),
    }
}

fn prepare(spec: &InitSpec) -> Result<ChildPlan> {
    if let Some(name) = &spec.hostname {
        crate::uts::check_hostname(name)?;
    }
    if let Some(device) = spec.quota_device.as_ref().filter(|d| !d.has_plain_name()) {
        return Err(NsError::BadSpec {
            field: "quota_device",
            reason: format!("{:?} is not a name for a node in /dev", device.name),
        });
    }
    let meta =
        std::fs::metadata(&spec.root).map_err(|e| NsError::io("stat VE root", &spec.root, e))?;
    if !meta.is_dir() {
        let e = std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory");
        return Err(NsError::io("use as VE root", &spec.root, e));
    }
    Ok(ChildPlan {
        root: spec.root.clone(),
        hostname: spec.hostname.clone(),
        cgroup_procs: spec.cgroup_procs.clone(),
        caps: spec.caps,
        last_cap: last_cap()?,
        exec: ExecPlan::new(&spec.argv, &spec.env)?,
        // The console is not one of the VE's own ptys.
        pty_max: spec.pty_max.map(|max| max.saturating_add(u64::from(spec.console))),
        rlimits: RlimitPlan::new(&spec.rlimits)?,
        quota_device: spec.quota_device.clone(),
        intercept_quotactl: spec.quotactl_server.is_some(),
        id_map: spec.id_map,
        seccomp: spec.seccomp.clone(),
        run_tmpfs: spec.run_tmpfs,
        proc_view: spec.proc_view.clone(),
        console: spec.console,
    })
}

pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| NsError::sys("pipe2", e))
}

impl PendingInit {
    /// Host pid of the VE's init (pid 1 inside).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The master of the VE's console pty ([`InitSpec::console`]), once: the caller's to
    /// hold (a console server) while the VE runs. `None` without a console.
    pub fn take_console(&mut self) -> Option<OwnedFd> {
        self.console.take()
    }

    /// The listener of the init's seccomp filter when it notifies sysinfo
    /// ([`crate::SeccompPolicy::intercept_sysinfo`]) and no quotactl server took it, once:
    /// the caller hands it to the server that answers ([`crate::SyscallListener::hand_to`]) once
    /// that runs. Dropped unhanded, the VE's sysinfo fails with ENOSYS.
    pub fn take_listener(&mut self) -> Option<crate::SyscallListener> {
        self.listener.take().map(crate::SyscallListener::new)
    }

    fn wait_ready(&mut self, server: Option<&Path>) -> Result<()> {
        loop {
            match self.status.recv()? {
                Some(Msg::Ready) => return Ok(()),
                Some(Msg::Listener(fd)) => self.listener = deliver_listener(server, fd)?,
                Some(Msg::Terminal(master)) => self.console = Some(master),
                Some(Msg::SetupError(message)) => return Err(NsError::Setup { message }),
                _ => return Err(NsError::ChildVanished { what: "the init's setup" }),
            }
        }
    }

    /// Lets init reduce its capabilities and exec its program.
    ///
    /// # Errors
    /// [`NsError::Exec`] (e.g. `/sbin/init: No such file or directory`) or
    /// [`NsError::Setup`] if a last step failed; the init is gone then.
    pub fn release(mut self) -> Result<InitHandle> {
        let go = self.go.take().ok_or(NsError::ChildVanished { what: "release" })?;
        nix::unistd::write(&go, b"G").map_err(|e| NsError::sys("tell the VE's init to go", e))?;
        drop(go);
        loop {
            match self.status.recv()? {
                None => break,
                Some(Msg::ExecError(message)) => return Err(NsError::Exec { message }),
                Some(Msg::SetupError(message)) => return Err(NsError::Setup { message }),
                Some(_) => {}
            }
        }
        self.released = true;
        tracing::debug!(pid = self.pid, "VE init released");
        Ok(InitHandle { pid: self.pid })
    }
}

impl Drop for PendingInit {
    fn drop(&mut self) {
        if !self.released
            && let Err(e) = kill(Pid::from_raw(self.pid), Signal::SIGKILL)
        {
            tracing::debug!(pid = self.pid, error = %e, "killing the unreleased init");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::sync::send;

    fn channel(msgs: &[Msg]) -> Receiver {
        let (r, w) = sync::channel().expect("channel");
        for m in msgs {
            send(&w, m);
        }
        Receiver::new(r)
    }

    #[test]
    fn the_init_may_be_ready_before_its_pid_is_reported() {
        let (mut none, mut no_listener) = (None, None);
        let mut rx = channel(&[Msg::Ready, Msg::Pid(77)]);
        assert_eq!(init_pid(&mut rx, None, &mut none, &mut no_listener).expect("pid"), (77, true));
        let mut rx = channel(&[Msg::Pid(78), Msg::Ready]);
        assert_eq!(init_pid(&mut rx, None, &mut none, &mut no_listener).expect("pid"), (78, false));
    }

    #[test]
    fn a_setup_error_or_eof_before_the_pid_is_an_error() {
        let (mut none, mut l) = (None, None);
        let mut rx = channel(&[Msg::SetupError("unshare namespaces: EPERM".into())]);
        assert!(matches!(init_pid(&mut rx, None, &mut none, &mut l), Err(NsError::Setup { .. })));
        let mut rx = channel(&[]);
        assert!(matches!(
            init_pid(&mut rx, None, &mut none, &mut l),
            Err(NsError::ChildVanished { .. })
        ));
    }
}
