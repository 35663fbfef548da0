//! Running a program in a running VE ([`enter`]): join its cgroups and namespaces — the
//! user namespace first, so the process holds no host capability once anything of the VE
//! can see it — fork into its pid namespace, reduce capabilities, install the VE's seccomp
//! filter, exec with the given environment. The program's stdio are pipes or a pty of the
//! VE's own devpts, relayed by the caller ([`crate::relay`]), never the caller's files.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use crate::caps::{CapSet, last_cap};
use crate::error::{NsError, Result};
use crate::exec::ExecPlan;
use crate::init::sync::{Msg, Receiver, channel, send};
use crate::intercept::{connect_inbox, send_listener};
use crate::relay::{Input, Output, Relay};
use crate::rlimit::{Rlimit, RlimitPlan};
use crate::rootfs::StepResult;
use crate::seccomp::SeccompPolicy;
use crate::sys;
use crate::userns::{become_ve_root, has_own_userns};

/// The namespaces joined after the user namespace, in order; mount last so /proc/<pid>
/// stays the host's until then. The time namespace is the VE's own (its clocks count from
/// its start; after a restore, the one CRIU made to continue them), so an entered program
/// sees the VE's uptime and a daemon it leaves is dumped with the VE; it is skipped only
/// when it is the caller's own (a VE started on a kernel without time namespaces).
const JOIN_ORDER: [(&str, CloneFlags); 7] = [
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("time", crate::init::timens::CLONE_NEWTIME),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// How the entered program gets its stdin, stdout and stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtyMode {
    /// The caller's own fds, as they are. Only for callers whose fds the VE may hold (tests
    /// writing to files); a terminal among them is a way out of the VE (TIOCSTI).
    Inherit,
    /// Pipes: the caller's stdin is copied in, stdout and stderr copied out (`vzctl exec`,
    /// scripts run inside).
    Pipes,
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
    /// The VE's quotactl server, as [`crate::InitSpec::quotactl_server`]: the program's
    /// filter hands quotactl to it. `None` leaves quotactl to the kernel.
    pub quotactl_server: Option<PathBuf>,
    /// The seccomp policy of the VE (as its init got).
    pub seccomp: SeccompPolicy,
}

/// The program's end of its stdio, made before fork.
enum ChildStdio {
    Inherit,
    /// stdin's read end, stdout's and stderr's write ends.
    Pipes([OwnedFd; 3]),
    /// Opened in the VE by the entering child.
    Pty,
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
    let own_userns = has_own_userns(spec.init_pid)?;
    let seccomp = policy_for_entered(spec);
    let (child_stdio, mut relay) = match spec.tty {
        TtyMode::Inherit => (ChildStdio::Inherit, None),
        TtyMode::Pty => (ChildStdio::Pty, None),
        TtyMode::Pipes => {
            let (in_r, in_w) = crate::init::pipe()?;
            let (out_r, out_w) = crate::init::pipe()?;
            let (err_r, err_w) = crate::init::pipe()?;
            let outputs = vec![
                Output { from: out_r, to: sys::stdout() },
                Output { from: err_r, to: sys::stderr() },
            ];
            let relay = Relay { input: Some(Input::Pipe(in_w)), outputs };
            (ChildStdio::Pipes([in_r, out_w, err_w]), Some(relay))
        }
    };
    let (status_r, status_w) = channel()?;
    match sys::fork().map_err(|e| NsError::sys("fork to enter the VE", e))? {
        ForkResult::Child => {
            drop(status_r);
            drop(relay);
            let ctx = Joiner {
                spec,
                seccomp: &seccomp,
                ns_dir: &ns_dir,
                plan: &plan,
                rlimits: &rlimits,
                last_cap,
                own_userns,
            };
            ctx.run(status_w, child_stdio)
        }
        ForkResult::Parent { child } => {
            drop(status_w);
            drop(child_stdio);
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
                    Msg::Listener(fd) => hand_over(spec, &seccomp, &fd),
                    Msg::Terminal(master) if spec.tty == TtyMode::Pty => {
                        relay = Some(pty_relay(master)?);
                    }
                    _ => {}
                }
            }
            if let Some(err) = failure {
                let _ = waitpid(child, None);
                return Err(err);
            }
            match relay {
                Some(relay) => {
                    let _raw = (spec.tty == TtyMode::Pty)
                        .then(|| crate::pty::RawMode::enable(sys::stdin()))
                        .flatten();
                    relay.run(child)
                }
                None => wait_code(child),
            }
        }
    }
}

/// The relay of a pty master: the caller's stdin typed into it, its output to stdout.
fn pty_relay(master: OwnedFd) -> Result<Relay> {
    crate::pty::copy_caller_winsize(master.as_fd());
    let input = master.try_clone().map_err(|e| NsError::io("dup", "the pty master", e))?;
    Ok(Relay {
        input: Some(Input::Pty(input)),
        outputs: vec![Output { from: master, to: sys::stdout() }],
    })
}

/// The policy the entered program gets: the spec's, less the sysinfo interception when no
/// server answers at its socket (checked before the program exists, with a connection that
/// sends nothing), so that a VE whose server is gone (or never ran) leaves sysinfo to the
/// kernel (the host's numbers) instead of failing it with ENOSYS. With a quotactl server,
/// that server takes the listener and answers sysinfo too.
fn policy_for_entered(spec: &EnterSpec) -> SeccompPolicy {
    let Some(server) = spec.seccomp.sysinfo_server() else { return spec.seccomp.clone() };
    if spec.quotactl_server.is_some() {
        return spec.seccomp.clone();
    }
    match connect_inbox(server) {
        Ok(_probe) => spec.seccomp.clone(),
        Err(e) => {
            tracing::debug!(error = %e, "no sysinfo server: the program sees the host's sysinfo");
            spec.seccomp.without_sysinfo()
        }
    }
}

/// Hands the entered program's seccomp listener to the VE's quotactl server, or else to the
/// sysinfo server of its `policy`. The program already runs: if the server is gone, its
/// intercepted calls fail with ENOSYS.
fn hand_over(spec: &EnterSpec, policy: &SeccompPolicy, listener: &OwnedFd) {
    let sent = match (&spec.quotactl_server, policy.sysinfo_server()) {
        (Some(server), _) => send_listener(server, listener.as_fd()),
        (None, Some(server)) => send_listener(server, listener.as_fd()),
        (None, None) => return,
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "intercepted calls of the entered program will fail (ENOSYS)");
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
    /// The policy to install (the spec's, less sysinfo when its server is unreachable).
    seccomp: &'a SeccompPolicy,
    ns_dir: &'a PathBuf,
    plan: &'a ExecPlan,
    rlimits: &'a RlimitPlan,
    last_cap: u32,
    own_userns: bool,
}

impl Joiner<'_> {
    /// Joins the VE's cgroups. On cgroup v2 a cgroup that hands controllers to cgroups of
    /// its own (an init inside, systemd, made them) takes no process (`EBUSY`: no internal
    /// processes): the entered process joins the cgroup of the VE's init there instead.
    fn join_cgroups(&self) -> StepResult {
        let pid = std::process::id().to_string();
        for file in &self.spec.cgroup_procs {
            let joined = match std::fs::write(file, &pid) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => file
                    .parent()
                    .and_then(|dir| vz_cgroup::tree::holding(dir, self.spec.init_pid))
                    .map(|leaf| std::fs::write(leaf.join("cgroup.procs"), &pid))
                    .unwrap_or(Err(e)),
                other => other,
            };
            joined.map_err(|e| format!("join cgroup {}: {e}", file.display()))?;
        }
        Ok(())
    }

    fn run(&self, status: OwnedFd, stdio: ChildStdio) -> ! {
        let result = (|| -> StepResult<Pid> {
            // A half-entered process must not be reachable by the VE's processes, through
            // ptrace or /proc/<pid>/exe (CVE-2019-5736): non-dumpable, its mm stays the
            // host user namespace's until exec.
            nix::sys::prctl::set_dumpable(false).map_err(|e| format!("PR_SET_DUMPABLE: {e}"))?;
            let mut keep = vec![status.as_raw_fd()];
            if let ChildStdio::Pipes(fds) = &stdio {
                keep.extend(fds.iter().map(AsRawFd::as_raw_fd));
            }
            sys::close_fds_except(&keep).map_err(|e| format!("close inherited fds: {e}"))?;
            self.join_cgroups()?;
            // Limits while still able to raise a hard limit to what the VE has.
            self.rlimits.apply()?;
            self.join_namespaces()?;
            let stdio = match stdio {
                ChildStdio::Pty => {
                    let (master, slave) = crate::pty::open_in_ve()?;
                    send(&status, &Msg::Terminal(master));
                    Some(vec![slave])
                }
                ChildStdio::Pipes(fds) => Some(fds.into()),
                ChildStdio::Inherit => None,
            };
            match sys::fork().map_err(|e| format!("fork into the VE: {e}"))? {
                ForkResult::Child => self.program(&status, stdio.as_deref()),
                ForkResult::Parent { child } => Ok(child),
            }
        })();
        match result {
            Ok(child) => {
                drop(status);
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
        let userns = self.open_ns("user")?;
        let mut files = Vec::with_capacity(JOIN_ORDER.len());
        for (name, flag) in JOIN_ORDER {
            let file = self.open_ns(name)?;
            if name == "time" && same_ns(&file, "/proc/self/ns/time") {
                continue;
            }
            files.push((name, flag, file));
        }
        if self.own_userns {
            become_ve_root(&userns.into())?;
        }
        for (name, flag, file) in files {
            setns(file.as_fd(), flag)
                .map_err(|e| format!("join the VE's {name} namespace: {e}"))?;
        }
        nix::unistd::fchdir(root.as_fd()).map_err(|e| format!("enter the VE's root: {e}"))?;
        nix::unistd::chroot(".").map_err(|e| format!("chroot to the VE's root: {e}"))?;
        nix::unistd::chdir("/").map_err(|e| format!("chdir / in the VE: {e}"))
    }

    fn open_ns(&self, name: &str) -> StepResult<File> {
        let path = self.ns_dir.join(name);
        File::open(&path).map_err(|e| format!("open {}: {e}", path.display()))
    }

    /// The program's process, in the VE's pid namespace: a session of its own (no terminal
    /// of the caller's is its controlling one), `stdio` on fds 0–2 (one fd: the pty slave,
    /// made its controlling terminal).
    fn program(&self, status: &OwnedFd, stdio: Option<&[OwnedFd]>) -> ! {
        let setup = (|| -> StepResult {
            nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
            match stdio {
                Some([tty]) => {
                    sys::set_controlling_tty(tty.as_fd()).map_err(|e| format!("TIOCSCTTY: {e}"))?;
                    for fd in 0..=2 {
                        sys::dup_onto_stdio(tty.as_fd(), fd)
                            .map_err(|e| format!("dup pty onto {fd}: {e}"))?;
                    }
                }
                Some(fds) => {
                    for (fd, target) in fds.iter().zip(0..) {
                        sys::dup_onto_stdio(fd.as_fd(), target)
                            .map_err(|e| format!("dup a pipe onto {target}: {e}"))?;
                    }
                }
                None => {}
            }
            let quotactl = self.spec.quotactl_server.is_some();
            if let Some(listener) = crate::seccomp::install(self.seccomp, quotactl)? {
                send(status, &Msg::Listener(listener));
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

/// Whether the namespace `file` is the one at `path`.
fn same_ns(file: &File, path: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}
