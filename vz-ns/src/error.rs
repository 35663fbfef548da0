//! The crate's error type, [`NsError`].

use std::path::PathBuf;

/// Result of the vz-ns API.
pub type Result<T, E = NsError> = std::result::Result<T, E>;

/// Everything that can go wrong while isolating a VE.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NsError {
    /// A file operation on a named path failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (e.g. "write devices.allow").
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A cgroup file (the v1 devices allowlist) could not be written.
    #[error(transparent)]
    Cgroup(#[from] vz_cgroup::CgroupError),
    /// A system call that has no path failed (fork, pipe, poll …).
    #[error("{op}: {source}")]
    Sys {
        /// The call and its purpose.
        op: &'static str,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// A capability name that is not known.
    #[error("unknown capability name: {name}")]
    UnknownCapability {
        /// The name as given.
        name: String,
    },
    /// A CAPABILITY entry not in the form `NAME:on|off`.
    #[error("invalid capability setting {entry:?}: expected NAME:on or NAME:off")]
    BadCapability {
        /// The entry as given.
        entry: String,
    },
    /// A device rule not in the form `b|c|a:major|all:minor|all:perms`.
    #[error("invalid device rule {rule:?}: {reason}")]
    BadDeviceRule {
        /// The rule as given.
        rule: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A field of an [`crate::InitSpec`] or [`crate::EnterSpec`] cannot be used.
    #[error("invalid {field}: {reason}")]
    BadSpec {
        /// The field name (`argv`, `env`, `hostname` …).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Setting up the VE's process failed in the child; the text says which step and why.
    #[error("VE setup failed: {message}")]
    Setup {
        /// The child's report, e.g. `mount proc on /proc: Operation not permitted`.
        message: String,
    },
    /// The program could not be executed inside the VE.
    #[error("cannot execute {message}")]
    Exec {
        /// The child's report, e.g. `/sbin/init: No such file or directory`.
        message: String,
    },
    /// The child went away without saying why.
    #[error("the VE's process exited during setup without a report ({what})")]
    ChildVanished {
        /// Which stage was waited for.
        what: &'static str,
    },
    /// A netlink request on a network object failed (the errno is in the source).
    #[error("{op} {object}: {source}")]
    Netlink {
        /// What was being done (e.g. "add host route").
        op: &'static str,
        /// The device, address or namespace it was done to.
        object: String,
        /// The kernel's error.
        #[source]
        source: std::io::Error,
    },
    /// An IP address not in the form `IP[/mask]` (`--ipadd`, `IP_ADDRESS`).
    #[error("invalid IP address {value:?}: {reason}")]
    BadAddress {
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An address that is already routed to another device or assigned on the host.
    #[error("IP address {address} is already in use on {device}")]
    AddressInUse {
        /// The address.
        address: String,
        /// The device that has it.
        device: String,
    },
    /// A network device that must exist (a bridge, a VE's host end) does not.
    #[error("network device {name} does not exist")]
    NoSuchDevice {
        /// The device name.
        name: String,
    },
    /// A field of a `NETIF` record or a device name that cannot be used.
    #[error("invalid {field} {value:?}: {reason}")]
    BadNetif {
        /// The field (`ifname`, `mac`, `host_ifname` …).
        field: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl NsError {
    /// An [`NsError::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NsError::Io { op, path: path.into(), source }
    }

    /// An [`NsError::Sys`] for `op`.
    pub(crate) fn sys(op: &'static str, source: nix::Error) -> Self {
        NsError::Sys { op, source }
    }
}
