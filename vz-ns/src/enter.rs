//! Running a program in a running VE ([`enter`]): join its cgroups and namespaces, fork into
//! its pid namespace, reduce capabilities, exec with the given environment.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use crate::caps::{CapSet, last_cap};
use crate::error::{NsError, Result};
use crate::exec::ExecPlan;
use crate::init::child::join_cgroups;
use crate::init::sync::{Msg, Receiver, channel, send};
use crate::intercept::{install_quotactl_filter, send_listener};
use crate::pty::Pty;
use crate::rlimit::{Rlimit, RlimitPlan};
use crate::rootfs::StepResult;
use crate::sys;

/// The namespaces joined, in order; mount last so /proc/<pid> stays the host's until then.
const JOIN_ORDER: [(&str, CloneFlags); 6] = [
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// How the entered program gets its terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtyMode {
    /// The caller's stdin, stdout and stderr.
    Inherit,
    /// A pty from the VE's own devpts; the caller's stdin/stdout are relayed to it, and the
    /// caller's terminal (if stdin is one) is in raw mode meanwhile (`vzctl enter`).
    Pty,
}

/// What to run in which VE.
#[derive(Debug, Clone)]
pub struct EnterSpec {
    /// Host pid of the VE's init.
    pub init_pid: i32,
    /// `cgroup.procs` files to join (the VE's cgroups).
    pub cgroup_procs: Vec<PathBuf>,
    /// Program and arguments; a program without `/` is searched in the PATH of `env`.
    pub argv: Vec<String>,
    /// The complete environment of the program.
    pub env: Vec<(String, String)>,
    /// The capability bounding set of the VE.
    pub caps: CapSet,
    /// Terminal handling.
    pub tty: TtyMode,
    /// Resource limits set on the program before exec (the same as the VE's init got, so an
    /// entered process is bound like the VE's own); fitted to the host as for
    /// [`crate::InitSpec::rlimits`].
    pub rlimits: Vec<Rlimit>,
    /// The VE's quotactl server, as [`crate::InitSpec::quotactl_server`]: the program gets
    /// the same kind of filter, its listener goes to the server. `None` for no filter.
    pub quotactl_server: Option<PathBuf>,
}

/// Runs `spec.argv` in the running VE and waits for it.
///
/// Returns the program's exit code, or 128 + the signal number if a signal killed it.
///
/// # Errors
/// [`NsError::Io`] if the VE's init is gone, [`NsError::Setup`] if joining a cgroup or
/// namespace failed, [`NsError::Exec`] if the program cannot be executed in the VE.
///
/// # Privileges
/// Root with CAP_SYS_ADMIN in the initial namespaces.
pub fn enter(spec: &EnterSpec) -> Result<i32> {
    let plan = ExecPlan::new(&spec.argv, &spec.env)?;
    let rlimits = RlimitPlan::new(&spec.rlimits)?;
    let last_cap = last_cap()?;
    let ns_dir = PathBuf::from(format!("/proc/{}/ns", spec.init_pid));
    std::fs::metadata(ns_dir.join("mnt"))
        .map_err(|e| NsError::io("find the VE's init", &ns_dir, e))?;
    let mut pty = match spec.tty {
        TtyMode::Pty => Some(Pty::open(spec.init_pid)?),
        TtyMode::Inherit => None,
    };
    let (status_r, status_w) = channel()?;
    match sys::fork().map_err(|e| NsError::sys("fork to enter the VE", e))? {
        ForkResult::Child => {
            drop(status_r);
            let slave = pty.as_mut().and_then(Pty::take_slave);
            drop(pty);
            let ctx = Joiner { spec, ns_dir: &ns_dir, plan: &plan, rlimits: &rlimits, last_cap };
            ctx.run(status_w, slave)
        }
        ForkResult::Parent { child } => {
            drop(status_w);
            if let Some(p) = pty.as_mut() {
                drop(p.take_slave());
            }
            let mut status = Receiver::new(status_r);
            let mut failure = None;
            while let Some(msg) = status.recv()? {
                match msg {
                    Msg::SetupError(message) => {
                        failure = failure.or(Some(NsError::Setup { message }))
                    }
                    Msg::ExecError(message) => {
                        failure = failure.or(Some(NsError::Exec { message }))
                    }
                    Msg::Listener(fd) => hand_over(spec, &fd),
                    Msg::Pid(_) | Msg::Ready => {}
                }
            }
            if let Some(err) = failure {
                let _ = waitpid(child, None);
                return Err(err);
            }
            match pty {
                Some(pty) => pty.relay(child),
                None => wait_code(child),
            }
        }
    }
}

/// Hands the entered program's seccomp listener to the VE's quotactl server. The program
/// already runs: if the server is gone, its quotactl calls fail with ENOSYS.
fn hand_over(spec: &EnterSpec, listener: &OwnedFd) {
    if let Some(server) = &spec.quotactl_server
        && let Err(e) = send_listener(server, listener.as_fd())
    {
        tracing::warn!(error = %e, "quotactl calls of the entered program will fail (ENOSYS)");
    }
}

/// Waits for `child` and maps its status to an exit code (128 + signal when killed).
pub(crate) fn wait_code(child: Pid) -> Result<i32> {
    loop {
        match waitpid(child, None) {
            Ok(status) => {
                if let Some(code) = exit_code(status) {
                    return Ok(code);
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(NsError::sys("wait for the entered program", e)),
        }
    }
}

/// The exit code of a final wait status, `None` for stops and continues.
pub(crate) fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// The first child's work, all after fork.
struct Joiner<'a> {
    spec: &'a EnterSpec,
    ns_dir: &'a PathBuf,
    plan: &'a ExecPlan,
    rlimits: &'a RlimitPlan,
    last_cap: u32,
}

impl Joiner<'_> {
    fn run(&self, status: OwnedFd, slave: Option<OwnedFd>) -> ! {
        let result = (|| -> StepResult<Pid> {
            // A half-entered process must not be reachable through /proc/<pid>/exe by the
            // VE's processes (CVE-2019-5736).
            nix::sys::prctl::set_dumpable(false).map_err(|e| format!("PR_SET_DUMPABLE: {e}"))?;
            let mut keep = vec![status.as_raw_fd()];
            keep.extend(slave.as_ref().map(AsRawFd::as_raw_fd));
            sys::close_fds_except(&keep).map_err(|e| format!("close inherited fds: {e}"))?;
            join_cgroups(&self.spec.cgroup_procs)?;
            self.join_namespaces()?;
            match sys::fork().map_err(|e| format!("fork into the VE: {e}"))? {
                ForkResult::Child => self.program(&status, slave.as_ref()),
                ForkResult::Parent { child } => Ok(child),
            }
        })();
        match result {
            Ok(child) => {
                drop(status);
                drop(slave);
                let code = wait_code(child).unwrap_or(1);
                sys::exit_now(code)
            }
            Err(message) => {
                send(&status, &Msg::SetupError(message));
                sys::exit_now(1)
            }
        }
    }

    fn join_namespaces(&self) -> StepResult {
        // The init's root, opened before joining: setns(mnt) puts us at the root of the
        // namespace's mount tree, which is the VE's root only when the host's own root is
        // the root of its tree (not on a host that booted by chroot, like the kernel lab).
        let root_path = self.ns_dir.with_file_name("root");
        let root =
            File::open(&root_path).map_err(|e| format!("open {}: {e}", root_path.display()))?;
        let mut files = Vec::with_capacity(JOIN_ORDER.len());
        for (name, flag) in JOIN_ORDER {
            let path = self.ns_dir.join(name);
            let file = File::open(&path).map_err(|e| format!("open {}: {e}", path.display()))?;
            files.push((name, flag, file));
        }
        for (name, flag, file) in files {
            setns(file.as_fd(), flag)
                .map_err(|e| format!("join the VE's {name} namespace: {e}"))?;
        }
        nix::unistd::fchdir(root.as_fd()).map_err(|e| format!("enter the VE's root: {e}"))?;
        nix::unistd::chroot(".").map_err(|e| format!("chroot to the VE's root: {e}"))?;
        nix::unistd::chdir("/").map_err(|e| format!("chdir / in the VE: {e}"))
    }

    /// The program's process, in the VE's pid namespace.
    fn program(&self, status: &OwnedFd, slave: Option<&OwnedFd>) -> ! {
        let setup = (|| -> StepResult {
            if let Some(tty) = slave {
                nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
                sys::set_controlling_tty(tty.as_fd()).map_err(|e| format!("TIOCSCTTY: {e}"))?;
                for fd in 0..=2 {
                    sys::dup_onto_stdio(tty.as_fd(), fd)
                        .map_err(|e| format!("dup pty onto {fd}: {e}"))?;
                }
            }
            self.rlimits.apply()?;
            if self.spec.quotactl_server.is_some() {
                send(status, &Msg::Listener(install_quotactl_filter()?));
            }
            self.spec.caps.restrict_current(self.last_cap)?;
            sys::reset_signals();
            Ok(())
        })();
        if let Err(message) = setup {
            send(status, &Msg::SetupError(message));
            sys::exit_now(1);
        }
        let message = self.plan.exec();
        send(status, &Msg::ExecError(message));
        sys::exit_now(127)
    }
}
