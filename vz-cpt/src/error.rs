//! The crate's error type, [`CptError`], and [`Refusal`]: why a VE cannot be checkpointed,
//! found before anything was frozen.

use std::fmt;
use std::path::PathBuf;

/// Result of the vz-cpt API.
pub type Result<T, E = CptError> = std::result::Result<T, E>;

/// Everything that can go wrong while suspending, dumping, restoring or killing a VE.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CptError {
    /// A file operation on a named path failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (e.g. "write freezer.state").
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A system call that has no path failed (socketpair, send, recv …).
    #[error("{op}: {source}")]
    Sys {
        /// The call and its purpose.
        op: &'static str,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// The VE cannot be checkpointed as it is; nothing was frozen or changed.
    #[error("cannot checkpoint the container: {0}")]
    Refused(Refusal),
    /// A field of a spec cannot be used.
    #[error("invalid {field}: {reason}")]
    BadSpec {
        /// The field name (`images_dir`, `root` …).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The CRIU binary could not be started.
    #[error("start {path}: {source}")]
    CriuSpawn {
        /// The binary.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The dump could not connect to the page server it was given.
    #[error("connect to the page server {address}: {source}")]
    PageServer {
        /// `ADDRESS:PORT`.
        address: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// CRIU's RPC conversation broke (a message that does not decode, an early close).
    #[error("CRIU RPC: {0}")]
    Rpc(String),
    /// CRIU answered that the request failed. `log` is CRIU's log of the request.
    #[error("{what} failed (CRIU: {message}); see {}", log.display())]
    CriuFailed {
        /// "dump" or "restore".
        what: &'static str,
        /// CRIU's error message, or the errno it reported.
        message: String,
        /// CRIU's log file of the request.
        log: PathBuf,
    },
    /// The caller's hook failed at a dump or restore stage; CRIU aborted.
    #[error("hook at {stage} failed: {message}; see {}", log.display())]
    Hook {
        /// The stage (`post-setup-namespaces` …).
        stage: String,
        /// The hook's error.
        message: String,
        /// CRIU's log file of the dump or restore.
        log: PathBuf,
    },
    /// A cgroup file of the VE (the freezer, a task list) could not be read or written, or
    /// the freezer did not reach the asked state in time.
    #[error(transparent)]
    Cgroup(#[from] vz_cgroup::CgroupError),
    /// Processes of the VE were still there after they were killed.
    #[error("{count} processes still in {} after kill", cgroup.display())]
    KillTimeout {
        /// The cgroup that did not empty.
        cgroup: PathBuf,
        /// How many processes were left.
        count: usize,
    },
}

impl CptError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CptError::Io { op, path: path.into(), source }
    }

    pub(crate) fn sys(op: &'static str, source: nix::Error) -> Self {
        CptError::Sys { op, source }
    }
}

/// Why a VE is refused a checkpoint: each is a case in which CRIU would fail, lose a process
/// or leave a VE that cannot be restored (criu-vz.md §3 and §6–§7).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The init pid given is not a running process.
    NoInit {
        /// The pid.
        pid: i32,
    },
    /// A process of the VE's cgroup is not a descendant of the VE's init (a `vzctl enter`
    /// shell, a running `vzctl exec` program, an orphan of one): CRIU would drop it.
    ForeignProcess {
        /// Its host pid.
        pid: i32,
        /// Its command name.
        comm: String,
    },
    /// A process is in another time namespace than the VE's init: the restore would fail.
    TimeNamespace {
        /// Its host pid.
        pid: i32,
        /// Its command name.
        comm: String,
    },
    /// A process has its session or process group outside the VE's pid namespace.
    OutsideSession {
        /// Its host pid.
        pid: i32,
        /// Its command name.
        comm: String,
    },
    /// The VE's init is not a session leader.
    InitNotSessionLeader {
        /// Its host pid.
        pid: i32,
    },
    /// A process of the VE holds a seccomp user-notification listener (CRIU cannot dump it).
    SeccompListenerInside {
        /// Its host pid.
        pid: i32,
        /// Its command name.
        comm: String,
    },
    /// The VE's system calls are served by a listener outside it (the quotactl server of
    /// second-level quota): a restored VE would get ENOSYS for them.
    SeccompListenerOutside,
    /// A host end of the VE's network is down: its routes would be dumped `linkdown`,
    /// which `ip route restore` rejects.
    HostInterfaceDown {
        /// The interface name.
        name: String,
    },
    /// The images directory already holds a dump.
    DumpExists {
        /// The directory.
        dir: PathBuf,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoInit { pid } => write!(f, "the init (pid {pid}) is not running"),
            Refusal::ForeignProcess { pid, comm } => write!(
                f,
                "process {pid} ({comm}) is not a descendant of the container's init \
                 (a vzctl enter or exec session?); close it first"
            ),
            Refusal::TimeNamespace { pid, comm } => write!(
                f,
                "process {pid} ({comm}) is in another time namespace than the container's init"
            ),
            Refusal::OutsideSession { pid, comm } => write!(
                f,
                "process {pid} ({comm}) has its session or process group outside the container \
                 (started without setsid?)"
            ),
            Refusal::InitNotSessionLeader { pid } => {
                write!(f, "the init (pid {pid}) is not a session leader")
            }
            Refusal::SeccompListenerInside { pid, comm } => {
                write!(f, "process {pid} ({comm}) holds a seccomp notification listener")
            }
            Refusal::SeccompListenerOutside => write!(
                f,
                "its system calls are served from the host (second-level quota): \
                 CRIU cannot restore the listener"
            ),
            Refusal::HostInterfaceDown { name } => {
                write!(f, "the host interface {name} is down (its routes would not restore)")
            }
            Refusal::DumpExists { dir } => write!(f, "a dump exists already in {}", dir.display()),
        }
    }
}
