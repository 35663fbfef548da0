//! `CtlError`: every way a vz-ctl operation fails, and the OpenVZ exit code of each.
//!
//! Exit codes are an interface (scripts test them): the numbers are OpenVZ's
//! (`include/vzerror.h` of vzctl 4.x, mirrored in `shared/reference/openvz.md` §1.7).

use std::path::PathBuf;

use crate::config::ConfigError;

/// Result of a vz-ctl operation.
pub type Result<T, E = CtlError> = std::result::Result<T, E>;

/// An error of a vz-ctl operation, carrying its OpenVZ exit code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CtlError {
    /// Invalid command line syntax (unknown command, missing argument, extra arguments).
    #[error("{0}")]
    Usage(String),
    /// A command line option has a value vzctl cannot accept.
    #[error("Bad parameter for --{option}: {value}{}", reason_suffix(.reason))]
    BadParameter {
        /// The option, without dashes.
        option: String,
        /// The value given.
        value: String,
        /// Why it is refused, if more can be said.
        reason: String,
    },
    /// A CTID or CT name that is not valid or not known.
    #[error("Bad CT ID {0}")]
    BadCtid(String),
    /// The command needs an argument that was not given.
    #[error("{0}")]
    MissingArgument(String),
    /// The global configuration could not be read.
    #[error("global configuration")]
    GlobalConfig(#[source] ConfigError),
    /// A CT configuration could not be read or written.
    #[error("CT configuration")]
    Config(#[source] ConfigError),
    /// The CT configuration file does not exist.
    #[error("Container config file does not exist")]
    NoConfig,
    /// A configuration key needed for the operation is not set.
    #[error("{key} is not set")]
    KeyNotSet {
        /// The key (VE_ROOT, VE_PRIVATE, TEMPLATE…).
        key: &'static str,
        /// The OpenVZ exit code for this key.
        code: u8,
    },
    /// Another vzctl holds the CT's lock.
    #[error("Container already locked")]
    Locked,
    /// The lock could not be taken for another reason.
    #[error("Unable to lock container")]
    LockFailed(#[source] std::io::Error),
    /// The CT is not running.
    #[error("Container is not running")]
    NotRunning,
    /// The CT is running and the operation needs it stopped.
    #[error("Container is currently running. Stop it first.")]
    Running,
    /// `start` of a running CT.
    #[error("Container is already running")]
    AlreadyRunning,
    /// The CT is mounted and the operation needs it unmounted.
    #[error("Container is mounted. Unmount it first.")]
    Mounted,
    /// The CT is not mounted.
    #[error("Container is not mounted")]
    NotMounted,
    /// `DISABLED=yes` and no `--force`.
    #[error("Container start disabled")]
    Disabled,
    /// The private area is missing.
    #[error("Container private area {0} does not exist")]
    NoPrivate(PathBuf),
    /// The private area already exists (create).
    #[error("Private area already exists in {0}")]
    PrivateExists(PathBuf),
    /// The CT's root has no init or shell.
    #[error("{0}")]
    BrokenVe(String),
    /// No OS template given and none configured.
    #[error("OS template is not specified, unable to create container")]
    NoOsTemplate,
    /// The template cache was not found.
    #[error("{0}")]
    TemplateNotFound(String),
    /// Copying a sample config failed.
    #[error("{0}")]
    ConfigCopy(String),
    /// Setting the CT name failed.
    #[error("{0}")]
    Name(String),
    /// An action script failed.
    #[error("action script {path} failed with {status}")]
    ActionScript {
        /// The script.
        path: PathBuf,
        /// How it ended.
        status: String,
    },
    /// `vzctl exec` could not run the command, or it failed.
    #[error("{0}")]
    Exec(String),
    /// Mounting the CT failed.
    #[error("Unable to mount container")]
    Mount(#[source] vz_quota::QuotaError),
    /// Unmounting the CT failed.
    #[error("Unable to unmount container")]
    Umount(#[source] vz_quota::QuotaError),
    /// Creating the private area failed.
    #[error("Creation of container private area failed")]
    CreatePrivate(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Starting the CT failed.
    #[error("Unable to start container")]
    Start(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Checkpointing the CT failed or was refused (OpenVZ 16).
    #[error("Checkpointing failed")]
    Chkpnt(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Restoring the CT failed (OpenVZ 17).
    #[error("Restoring failed")]
    Restore(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stopping the CT failed.
    #[error("Unable to stop container")]
    Stop(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Waiting for the CT to finish booting (`start --wait`) failed.
    #[error("Waiting for container start failed")]
    Wait(String),
    /// Destroying the CT failed.
    #[error("Unable to delete container")]
    Destroy(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Changing a password in the CT failed.
    #[error("Unable to change password")]
    Password(String),
    /// A template operation failed.
    #[error("template")]
    Template(#[source] vz_template::TemplateError),
    /// A system call or file operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A cgroup operation failed.
    #[error("cgroup {op} {}", path.display())]
    Cgroup {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A beancounter parameter could not be read or put into effect (OpenVZ exit 1).
    #[error("Unable to set UBC parameters")]
    Ubc(#[source] vz_ubc::UbcError),
    /// A VSwap config (PHYSPAGES with a finite limit) without SWAPPAGES (OpenVZ exit 28).
    #[error("Error: required UB parameter (swap) not set")]
    SwapNotSet,
    /// A CPU (fair scheduler) parameter could not be read or put into effect (OpenVZ exit 2).
    #[error("Unable to set CPU parameters")]
    Sched(#[source] vz_sched::SchedError),
    /// A malformed IP address.
    #[error("Invalid IP address: {0}")]
    BadAddress(String),
    /// An address another VE has.
    #[error("IP address {address} is already used by CT {ctid}")]
    AddressInUse {
        /// The address.
        address: String,
        /// The CT that has it.
        ctid: crate::ctid::Ctid,
    },
    /// An address the host already routes elsewhere or has itself.
    #[error("IP address {address} is already in use on the host ({device})")]
    AddressInUseOnHost {
        /// The address.
        address: String,
        /// Where it is in use.
        device: String,
    },
    /// Setting up the VE's venet failed.
    #[error("Unable to add IP address to container")]
    Net(#[source] vz_ns::NsError),
    /// `--netif_del` of an interface the VE does not have.
    #[error("CT {ctid} has no interface {ifname}")]
    NoInterface {
        /// The interface named.
        ifname: String,
        /// The CT.
        ctid: crate::ctid::Ctid,
    },
    /// Setting up a veth interface failed.
    #[error("Unable to set up the veth interface")]
    Veth(#[source] vz_ns::NsError),
    /// Changing the disk limits of a VE failed.
    #[error("Unable to apply disk limits")]
    DiskLimits(#[source] vz_quota::QuotaError),
    /// Saving the CT configuration failed.
    #[error("Error saving container configuration file")]
    SaveConfig(#[source] ConfigError),
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() { String::new() } else { format!(" ({reason})") }
}

impl CtlError {
    /// The OpenVZ exit code of this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => 20,
            CtlError::BadParameter { .. } | CtlError::BadCtid(_) | CtlError::MissingArgument(_) => {
                21
            }
            CtlError::GlobalConfig(_) => 10,
            CtlError::Config(_) => 14,
            CtlError::NoConfig => 14,
            CtlError::KeyNotSet { code, .. } => *code,
            CtlError::Locked => 9,
            CtlError::LockFailed(_) => 3,
            CtlError::NotRunning => 31,
            CtlError::Running | CtlError::AlreadyRunning => 32,
            CtlError::Mounted => 41,
            CtlError::NotMounted => 40,
            CtlError::Disabled => 105,
            CtlError::NoPrivate(_) => 43,
            CtlError::PrivateExists(_) => 44,
            CtlError::BrokenVe(_) => 47,
            CtlError::NoOsTemplate => 29,
            CtlError::TemplateNotFound(_) => 91,
            CtlError::ConfigCopy(_) => 82,
            CtlError::Name(_) => 131,
            CtlError::ActionScript { .. } => 79,
            CtlError::Exec(_) => 8,
            CtlError::Mount(_) => 50,
            CtlError::Umount(_) => 51,
            CtlError::CreatePrivate(_) => 48,
            CtlError::Start(_) | CtlError::Io { .. } | CtlError::Cgroup { .. } => 3,
            CtlError::Stop(_) => 33,
            CtlError::Chkpnt(_) => 16,
            CtlError::Restore(_) => 17,
            CtlError::Wait(_) => 133,
            CtlError::Destroy(_) => 52,
            CtlError::Password(_) => 74,
            CtlError::Template(_) => 3,
            CtlError::SaveConfig(_) => 139,
            CtlError::BadAddress(_) => 71,
            CtlError::AddressInUse { .. } | CtlError::AddressInUseOnHost { .. } => 78,
            CtlError::Net(_) => 34,
            CtlError::Veth(_) | CtlError::NoInterface { .. } => 130,
            // "vzquota setlimit failed".
            CtlError::DiskLimits(_) => 62,
            CtlError::Ubc(_) => 1,
            CtlError::SwapNotSet => 28,
            CtlError::Sched(_) => 2,
        }
    }
}

/// Attaches an operation and a path to an `io::Error` (`.op("mkdir", &dir)?`).
pub(crate) trait IoContext<T> {
    /// Wraps the error as [`CtlError::Io`].
    fn op(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn op(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| CtlError::Io { op, path: path.to_owned(), source })
    }
}

/// An error and its sources as one line, `outer: inner: …`, the way the binaries print it.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
