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
    /// A cgroup file or directory could not be read, written, made or removed.
    #[error(transparent)]
    Cgroup(#[from] vz_cgroup::CgroupError),
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
    /// Repairing what an interrupted operation left failed (generic system error, 3).
    #[error("Unable to recover from an interrupted operation: {0}")]
    Recover(String),
    /// VE_ROOT or VE_PRIVATE is not an absolute path (22 / 23, as when unset).
    #[error("{key} must be an absolute path, not {path:?}")]
    NotAbsolute {
        /// The key.
        key: &'static str,
        /// Its value.
        path: String,
        /// The OpenVZ exit code for this key.
        code: u8,
    },
    /// A `vzctl set` parameter that could not be put into effect, with OpenVZ's code for
    /// it: 13 capability, 86 devices, 104 network device, 106 netfilter, 109 applyconfig,
    /// 148 I/O parameters.
    #[error("{message}")]
    Param {
        /// The exit code.
        code: u8,
        /// What failed and why.
        message: String,
    },
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
            CtlError::Start(_) | CtlError::Io { .. } | CtlError::Cgroup(_) => 3,
            CtlError::Stop(_) => 33,
            CtlError::Chkpnt(_) => 16,
            CtlError::Restore(_) => 17,
            CtlError::Wait(_) => 133,
            CtlError::Destroy(_) => 52,
            CtlError::Password(_) => 74,
            CtlError::Template(_) => 3,
            CtlError::SaveConfig(_) => 139,
            CtlError::Recover(_) => 3,
            CtlError::NotAbsolute { code, .. } => *code,
            CtlError::BadAddress(_) => 71,
            CtlError::AddressInUse { .. } | CtlError::AddressInUseOnHost { .. } => 78,
            CtlError::Net(_) => 34,
            CtlError::Veth(_) | CtlError::NoInterface { .. } => 130,
            // "vzquota setlimit failed".
            CtlError::DiskLimits(_) => 62,
            CtlError::Ubc(_) => 1,
            CtlError::SwapNotSet => 28,
            CtlError::Sched(_) => 2,
            CtlError::Param { code, .. } => *code,
        }
    }
}

/// Every exit code vzctl uses and its meaning, as `vzctl(8)` lists them (OpenVZ's
/// `vzerror.h`); a unit test checks that [`CtlError::exit_code`] gives no other number.
pub const EXIT_CODES: &[(u8, &str)] = &[
    (1, "failed to set a UBC parameter"),
    (2, "failed to set a fair scheduler (CPU) parameter"),
    (3, "generic system error"),
    (8, "the command run by vzctl exec failed"),
    (9, "the container is locked by another vzctl"),
    (10, "global configuration file vz.conf not found or not readable"),
    (14, "container configuration file not found or not readable"),
    (20, "invalid command line syntax"),
    (21, "invalid value for a command line parameter, or bad CTID"),
    (22, "VE_ROOT not set"),
    (23, "VE_PRIVATE not set"),
    (24, "TEMPLATE not set"),
    (28, "not all required UBC parameters are set (swap)"),
    (29, "OS template not specified"),
    (31, "container not running"),
    (32, "container already running"),
    (33, "unable to stop the container"),
    (34, "unable to add an IP address to the container"),
    (40, "container not mounted"),
    (41, "container already mounted"),
    (43, "container private area not found"),
    (44, "container private area already exists"),
    (47, "broken container (no init or shell)"),
    (48, "unable to create the private area"),
    (50, "unable to mount the container"),
    (51, "unable to unmount the container"),
    (52, "unable to delete the container"),
    (60, "vzquota on failed (quotaon: DISK_QUOTA is not yes)"),
    (61, "vzquota init failed (quotainit: DISK_QUOTA is not yes)"),
    (62, "unable to apply disk limits"),
    (63, "DISKSPACE not set"),
    (66, "vzquota off failed (quotaoff: DISK_QUOTA is not yes)"),
    (71, "incorrect IP address"),
    (74, "unable to change a password"),
    (78, "IP address already in use"),
    (79, "a container action script failed"),
    (82, "config file copying error"),
    (91, "OS template not found"),
    (86, "unable to set device access (--devices, --devnodes)"),
    (104, "unable to move a network device (--netdev_add, --netdev_del)"),
    (105, "container start disabled"),
    (109, "unable to apply a config (--applyconfig)"),
    (130, "unable to set up a veth interface"),
    (131, "unable to set the container name"),
    (133, "waiting for the container start failed"),
    (139, "unable to save the container configuration file"),
    (148, "unable to set I/O parameters (--iolimit, --iopslimit, --ioprio)"),
    (155, "unable to convert the container to the ploop (image) layout"),
    (156, "unable to create a snapshot"),
    (158, "unable to delete a snapshot"),
    (159, "unable to switch to a snapshot"),
    (160, "unable to mount a snapshot"),
    (161, "unable to unmount a snapshot"),
    (166, "unable to compact the image"),
    (167, "unable to list snapshots"),
];

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
///
/// Every cause is printed once: most error types of vz print their own context only and
/// chain their cause through `source()`; a cause whose text the line already ends with (an
/// error that does both, as `NsError`'s I/O, system call and netlink variants still do) is
/// not repeated.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !part.is_empty() && !text.ends_with(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

/// The small tools of vz-ctl, whose exit codes differ for the same kind of failure (vzctl's
/// own are [`CtlError::exit_code`]'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `vzlist` (reference §4): 1 for every failure.
    Vzlist,
    /// `vzquota` (reference §5): 1 system error, 2 usage, 9 ugid quota inactive, 11 no quota.
    Vzquota,
    /// `vzubc`: 1 failure, 2 usage.
    Vzubc,
    /// `vzcfgvalidate` (reference §3.4): 1 program error or usage, 2 validation failed.
    Vzcfgvalidate,
    /// `vzcpucheck` (reference §6): 1 failure, 2 usage.
    Vzcpucheck,
    /// `vzpid` (reference §10): 1 for every failure.
    Vzpid,
    /// `vzmemcheck` (reference §10): 1 for every failure.
    Vzmemcheck,
    /// `vzoversell`: 1 for every failure.
    Vzoversell,
    /// `vzmetrics`: 1 failure, 2 usage.
    Vzmetrics,
    /// `vzsplit` (reference §10): 1 for every failure.
    Vzsplit,
    /// `vzcalc` (reference §10): 1 for every failure.
    Vzcalc,
}

/// Why one of the small tools failed. The tool prints it once with its causes ([`chain`])
/// and exits with [`ToolError::exit_code`]: the numbers of all tools are in that one match.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The command line is wrong; the text says how, and may carry the usage.
    #[error("{0}")]
    Usage(String),
    /// A CTID or name that is not valid or not known.
    #[error("CT ID {0} is invalid.")]
    BadCtid(String),
    /// The tool must run as root.
    #[error("This program can only be run under root.")]
    NotRoot,
    /// A failure the tool states in its own words (`Container(s) not found`, `Unknown field`).
    #[error("{0}")]
    Failed(String),
    /// A vz-ctl operation failed (the configuration, a VE's state).
    #[error(transparent)]
    Ctl(#[from] CtlError),
    /// A configuration file could not be read or written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A beancounter value could not be read.
    #[error(transparent)]
    Ubc(#[from] vz_ubc::UbcError),
    /// A CPU value could not be read.
    #[error(transparent)]
    Sched(#[from] vz_sched::SchedError),
    /// A disk quota operation failed.
    #[error(transparent)]
    Quota(#[from] vz_quota::QuotaError),
    /// The VE has no private area or quota record to open (vzquota's "quota file missing").
    #[error("no disk quota for CT {ctid}")]
    NoQuota {
        /// The CT as given.
        ctid: String,
        /// Why it could not be opened.
        #[source]
        source: vz_quota::QuotaError,
    },
    /// `vzcfgvalidate`: the configuration breaks a rule (the findings are printed already).
    #[error("Validation failed")]
    Invalid,
}

impl ToolError {
    /// The exit code of this failure in `tool` (OpenVZ's numbers for each tool).
    pub fn exit_code(&self, tool: Tool) -> u8 {
        use vz_quota::QuotaError::SecondLevelUnavailable;
        match (self, tool) {
            (
                ToolError::Usage(_),
                Tool::Vzlist
                | Tool::Vzcfgvalidate
                | Tool::Vzpid
                | Tool::Vzmemcheck
                | Tool::Vzoversell
                | Tool::Vzsplit
                | Tool::Vzcalc,
            ) => 1,
            (
                ToolError::Usage(_),
                Tool::Vzquota | Tool::Vzubc | Tool::Vzcpucheck | Tool::Vzmetrics,
            ) => 2,
            (ToolError::BadCtid(_), Tool::Vzquota) => 2,
            (ToolError::Quota(SecondLevelUnavailable { .. }), Tool::Vzquota) => 9,
            (ToolError::NoQuota { .. }, Tool::Vzquota) => 11,
            (ToolError::Invalid, _) => 2,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_prints_each_cause_once() {
        let ns = vz_ns::NsError::Netlink {
            op: "add host route",
            object: "10.0.0.1".into(),
            source: std::io::Error::from_raw_os_error(libc::EEXIST),
        };
        let text = chain(&CtlError::Net(ns));
        assert_eq!(text.matches("File exists").count(), 1, "{text}");
        assert!(text.starts_with("Unable to add IP address to container: add host route 10.0.0.1"));
        let quota = vz_quota::QuotaError::SecondLevelUnavailable { reason: "off".into() };
        let tool = ToolError::Quota(quota);
        assert_eq!(chain(&tool), "second-level quota is not available: off");
        assert_eq!(tool.exit_code(Tool::Vzquota), 9);
        assert_eq!(tool.exit_code(Tool::Vzlist), 1);
    }

    #[test]
    fn every_exit_code_is_documented() {
        let io = || std::io::Error::from_raw_os_error(libc::EIO);
        let samples = [
            CtlError::Usage(String::new()),
            CtlError::BadCtid(String::new()),
            CtlError::NoConfig,
            CtlError::KeyNotSet { key: "VE_ROOT", code: 22 },
            CtlError::KeyNotSet { key: "VE_PRIVATE", code: 23 },
            CtlError::KeyNotSet { key: "TEMPLATE", code: 24 },
            CtlError::KeyNotSet { key: "DISKSPACE", code: 63 },
            CtlError::Locked,
            CtlError::LockFailed(io()),
            CtlError::NotRunning,
            CtlError::AlreadyRunning,
            CtlError::Mounted,
            CtlError::NotMounted,
            CtlError::Disabled,
            CtlError::NoPrivate(PathBuf::new()),
            CtlError::PrivateExists(PathBuf::new()),
            CtlError::BrokenVe(String::new()),
            CtlError::NoOsTemplate,
            CtlError::TemplateNotFound(String::new()),
            CtlError::ConfigCopy(String::new()),
            CtlError::Name(String::new()),
            CtlError::Exec(String::new()),
            CtlError::Start(io().into()),
            CtlError::Stop(io().into()),
            CtlError::Wait(String::new()),
            CtlError::Destroy(io().into()),
            CtlError::Password(String::new()),
            CtlError::SwapNotSet,
            CtlError::BadAddress(String::new()),
            CtlError::CreatePrivate(io().into()),
            CtlError::Param { code: 86, message: String::new() },
            CtlError::Param { code: 104, message: String::new() },
            CtlError::Param { code: 109, message: String::new() },
            CtlError::Param { code: 148, message: String::new() },
            CtlError::Param { code: 60, message: String::new() },
            CtlError::Param { code: 61, message: String::new() },
            CtlError::Param { code: 66, message: String::new() },
            CtlError::Param { code: 155, message: String::new() },
            CtlError::Param { code: 156, message: String::new() },
            CtlError::Param { code: 158, message: String::new() },
            CtlError::Param { code: 159, message: String::new() },
            CtlError::Param { code: 160, message: String::new() },
            CtlError::Param { code: 161, message: String::new() },
            CtlError::Param { code: 166, message: String::new() },
            CtlError::Param { code: 167, message: String::new() },
        ];
        for e in &samples {
            let code = e.exit_code();
            assert!(EXIT_CODES.iter().any(|(c, _)| *c == code), "{code} ({e:?}) is not listed");
        }
        for code in [1, 2, 10, 14, 34, 50, 51, 62, 78, 79, 130, 139] {
            assert!(EXIT_CODES.iter().any(|(c, _)| *c == code), "{code}");
        }
    }

    #[test]
    fn usage_codes_follow_each_tool() {
        let usage = ToolError::Usage("bad".into());
        let codes: Vec<u8> =
            [Tool::Vzlist, Tool::Vzquota, Tool::Vzubc, Tool::Vzcfgvalidate, Tool::Vzcpucheck]
                .iter()
                .map(|t| usage.exit_code(*t))
                .collect();
        assert_eq!(codes, [1, 2, 2, 1, 2]);
        assert_eq!(ToolError::BadCtid("x".into()).exit_code(Tool::Vzquota), 2);
        assert_eq!(ToolError::BadCtid("x".into()).exit_code(Tool::Vzlist), 1);
        assert_eq!(ToolError::Invalid.exit_code(Tool::Vzcfgvalidate), 2);
    }
}
