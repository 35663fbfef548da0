//! The crate's error type: every failure of vz-quota, with the operation and path it concerns.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = QuotaError> = std::result::Result<T, E>;

/// Everything that can go wrong while making, mounting, resizing or measuring a private area.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// A configuration value (DISKSPACE, DISKINODES, VE_LAYOUT…) could not be parsed.
    #[error("bad value for {key}: {value:?}: {reason}")]
    BadValue {
        /// The config key or option, e.g. `DISKSPACE`.
        key: &'static str,
        /// The text as given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A system call or file operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done (`"mount"`, `"create image"`…).
        op: &'static str,
        /// The path it was done on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An e2fsprogs tool (mkfs.ext4, e2fsck, resize2fs, dumpe2fs, tune2fs) failed.
    #[error("{program} {args} failed ({status}): {stderr}")]
    Tool {
        /// The program run.
        program: &'static str,
        /// Its arguments, space-separated.
        args: String,
        /// Its exit status, or why it could not start.
        status: String,
        /// What it wrote to stderr (trimmed).
        stderr: String,
    },
    /// Second-level (per user/group) quota cannot be used on this VE.
    #[error("second-level quota is not available: {reason}")]
    SecondLevelUnavailable {
        /// Why (QUOTAUGIDLIMIT 0, no quota format in the kernel, the simfs layout…).
        reason: String,
    },
    /// The image layout needs a disk size (OpenVZ exit code 63, "DISKSPACE not set").
    #[error("DISKSPACE not set: the image layout needs a disk size")]
    DiskSpaceNotSet,
    /// The image layout cannot be unlimited: its size is the hard limit.
    #[error("DISKSPACE hard limit is unlimited: the image layout needs a finite size")]
    UnlimitedImage,
    /// `create` found something where the private area should be made.
    #[error("private area {} already exists and is not empty", path.display())]
    AreaExists {
        /// The private area path.
        path: PathBuf,
    },
    /// `open` found no private area.
    #[error("no private area at {}", path.display())]
    NoArea {
        /// The private area path.
        path: PathBuf,
    },
    /// The area is still in use (its image is attached to a loop device).
    #[error("private area {} is in use: {what}", path.display())]
    AreaBusy {
        /// The private area path.
        path: PathBuf,
        /// What holds it.
        what: String,
    },
    /// The root is already a mount point.
    #[error("{} is already mounted", root.display())]
    AlreadyMounted {
        /// The VE root.
        root: PathBuf,
    },
    /// The VE is said to be running but its root is not mounted.
    #[error("{} is not mounted", root.display())]
    NotMounted {
        /// The VE root.
        root: PathBuf,
    },
    /// A new limit is below what is already used.
    #[error("{resource} limit {limit} is below the current usage {usage}")]
    BelowUsage {
        /// `1k-blocks` or `inodes`.
        resource: &'static str,
        /// The requested hard limit.
        limit: u64,
        /// The current usage.
        usage: u64,
    },
    /// resize2fs cannot shrink the filesystem that far (metadata needs room too).
    #[error("cannot shrink {} to {requested_kb} KB: resize2fs needs at least {minimum_kb} KB", path.display())]
    BelowMinimum {
        /// The image.
        path: PathBuf,
        /// The requested size.
        requested_kb: u64,
        /// The smallest size resize2fs accepts.
        minimum_kb: u64,
    },
    /// Online growth of ext4 needs CAP_SYS_RESOURCE, which this process lacks.
    #[error(
        "cannot grow {} online: ext4 online resize needs CAP_SYS_RESOURCE, which this process \
         lacks (the kernel answered EPERM); stop the VE and resize offline, or run with the capability",
        path.display()
    )]
    OnlineGrowNeedsCapSysResource {
        /// The image.
        path: PathBuf,
    },
    /// ext4 shrinks offline only.
    #[error("cannot shrink {} while it is mounted: ext4 shrinks offline only; stop the VE first", path.display())]
    ShrinkNeedsOffline {
        /// The image.
        path: PathBuf,
    },
    /// ext4 fixes the inode count per block group at mkfs.
    #[error(
        "DISKINODES hard limit {requested} cannot be met: ext4 fixes the inode count at mkfs \
         ({available} inodes at this disk size); the inode limit of an image follows its size"
    )]
    InodesFixed {
        /// The requested inode hard limit.
        requested: u64,
        /// The inode count the filesystem will have.
        available: u64,
    },
    /// The record of limits kept beside the area is malformed.
    #[error("malformed quota record {}: line {line:?}", path.display())]
    BadRecord {
        /// The record file.
        path: PathBuf,
        /// The offending line.
        line: String,
    },
}

impl QuotaError {
    /// Builds an [`QuotaError::Io`] from an `io::Error`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        QuotaError::Io { op, path: path.into(), source }
    }

    /// Builds an [`QuotaError::Io`] from an errno.
    pub(crate) fn errno(op: &'static str, path: impl Into<PathBuf>, errno: nix::Error) -> Self {
        QuotaError::Io { op, path: path.into(), source: std::io::Error::from(errno) }
    }

    /// The OS error number behind this error, if it came from a system call.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            QuotaError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_name_op_and_path() {
        let e = QuotaError::errno("mount", "/vz/root/101", nix::Error::EBUSY);
        let text = e.to_string();
        assert_eq!(text, "mount /vz/root/101", "the errno is the source's");
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(e.raw_os_error(), Some(libc::EBUSY));
    }

    #[test]
    fn below_usage_names_the_numbers() {
        let e = QuotaError::BelowUsage { resource: "1k-blocks", limit: 100, usage: 250 };
        assert_eq!(e.to_string(), "1k-blocks limit 100 is below the current usage 250");
    }
}
